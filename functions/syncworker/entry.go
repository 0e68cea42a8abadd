package syncworker

import (
	"context"
	"log/slog"

	"github.com/calsync/calsync/shared/app"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/startup"
	"github.com/calsync/calsync/shared/tenant"
)

// New builds the function from its config with its own clients
// (shared/app: Firestore, Pub/Sub publishers with ordering on the changes
// topic, the Calendar access of shared/credentials). close flushes and
// closes them.
func New(ctx context.Context, cfg config.SyncWorker, logger *slog.Logger) (w *Worker, close func(), err error) {
	return app.Function(ctx, cfg, logger, NewWorker)
}

// NewWorker is the function's handler on the engines a built (the fleet
// benchmark builds a with counting clients and calls this too).
func NewWorker(cfg config.SyncWorker, a *app.App, logger *slog.Logger) *Worker {
	tenants, _ := cfg.TenantSet(cfg.ControlSubscription) // config.Load validated it
	return &Worker{Logger: logger, ProjectID: cfg.ProjectID, ControlSubscription: cfg.ControlSubscription, Tenants: tenants,
		Subscriptions: cfg.NotificationSubscriptions, Syncer: a.Syncer,
		Enroll: enroller{Enroller: a.Enroller, creds: a.Access.Credentials}}
}

// enroller is the enrollment engine of the SyncWorker: calendarList pushes
// and control messages. With CHANNEL_TOKEN_KEYS it watches what it enrolls.
type enroller struct {
	*enroll.Enroller
	creds *credentials.Vault
}

// HandleControl does a control message, storing sealed credentials with the
// function's credential store.
func (e enroller) HandleControl(ctx context.Context, t tenant.Tenant, c messages.Control) error {
	return e.Enroller.HandleControl(ctx, t, c, e.creds)
}

// Handle is the SyncWorker entry point (an HTTP function behind the push
// subscription). The worker is built on the first request (no work in init);
// while it cannot start, every request is answered 503 (Pub/Sub redelivers,
// nothing is acknowledged unprocessed) and the start is tried again after a
// backoff.
var Handle = startup.HTTP(startup.Function("SyncWorker", New))
