package syncworker

import (
	"context"
	"fmt"
	"log/slog"

	"cloud.google.com/go/firestore"

	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/startup"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
)

// New builds the function from its config with its own clients: Firestore,
// a Pub/Sub publisher with ordering on the changes topic, and the Calendar
// access of shared/credentials. close flushes and closes them.
func New(ctx context.Context, cfg config.SyncWorker, logger *slog.Logger) (w *Worker, close func(), err error) {
	fs, err := firestore.NewClientWithDatabase(ctx, cfg.ProjectID, cfg.FirestoreDatabase)
	if err != nil {
		return nil, nil, fmt.Errorf("firestore: %w", err)
	}
	st := store.New(fs)
	access, err := credentials.NewAccess(cfg.Calendar, st, logger)
	if err != nil {
		fs.Close()
		return nil, nil, err
	}
	ps, err := pubsubx.NewClient(ctx, cfg.ProjectID, "")
	if err != nil {
		fs.Close()
		return nil, nil, err
	}
	pub := pubsubx.NewPublisher(ps, cfg.ChangesTopic, true)
	requests := pubsubx.NewPublisher(ps, cfg.NotificationsTopic, false)
	followUp := cfg.FollowUpDelay
	if followUp == 0 {
		followUp = -1 // FOLLOW_UP_DELAY=0: off
	}
	w = &Worker{Logger: logger, ProjectID: cfg.ProjectID, Syncer: syncer.New(syncer.Options{
		Store:         st,
		Services:      access.Calendars,
		Publisher:     pub,
		Requests:      requests,
		MaxSession:    cfg.MaxSession,
		Revoker:       access.Revoker,
		Logger:        logger,
		LeaseDuration: cfg.LeaseDuration,
		RerunInterval: cfg.RerunInterval,
		QuietPeriod:   cfg.QuietPeriod,
		RetryBudget:   cfg.RetryBudget,
		FollowUpDelay: followUp,
		NotFound:      store.NotFoundPolicy{Attempts: cfg.NotFoundAttempts, After: cfg.NotFoundAfter},
	})}
	return w, func() { pub.Stop(); requests.Stop(); ps.Close(); fs.Close() }, nil
}

// Handle is the SyncWorker entry point (an HTTP function behind the push
// subscription). The worker is built on the first request (no work in init);
// while it cannot start, every request is answered 503 (Pub/Sub redelivers,
// nothing is acknowledged unprocessed) and the start is tried again after a
// backoff.
var Handle = startup.HTTP(startup.Function("SyncWorker", New))
