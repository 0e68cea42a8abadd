package syncworker

import (
	"context"
	"fmt"
	"log/slog"

	"cloud.google.com/go/firestore"

	"github.com/calsync/calsync/shared/channels"
	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/messages"
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
	en, err := newEnroller(cfg, st, access, requests, logger)
	if err != nil {
		pub.Stop()
		requests.Stop()
		ps.Close()
		fs.Close()
		return nil, nil, err
	}
	w = &Worker{Logger: logger, ProjectID: cfg.ProjectID, Enroll: en, ControlSubscription: cfg.ControlSubscription,
		Subscriptions: cfg.NotificationSubscriptions, Syncer: syncer.New(syncer.Options{
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

// enroller is the enrollment engine of the SyncWorker: calendarList pushes
// and control messages. With CHANNEL_TOKEN_KEYS it watches what it enrolls.
type enroller struct {
	*enroll.Enroller
	creds *credentials.Store
}

// HandleControl does a control message, storing sealed credentials with the
// function's credential store.
func (e enroller) HandleControl(ctx context.Context, c messages.Control) error {
	return e.Enroller.HandleControl(ctx, c, e.creds)
}

func newEnroller(cfg config.SyncWorker, st *store.Store, access *credentials.Access, requests *pubsubx.Publisher, logger *slog.Logger) (enroller, error) {
	en := &enroll.Enroller{Store: st, Calendars: access.Calendars, Requests: requests, Revoker: access.Revoker,
		Directory:   enroll.DirectoryClients{Tokens: access.Calendars, Endpoint: cfg.CalendarEndpoint},
		RenewBefore: cfg.RenewBefore, Logger: logger}
	if cfg.ChannelTokenKeys != "" && cfg.WebhookURL != "" {
		tokens, err := channeltoken.Parse(cfg.ChannelTokenKeys)
		if err != nil {
			return enroller{}, err
		}
		en.Channels = &channels.Manager{Store: st, Calendars: access.Calendars, Tokens: tokens, WebhookURL: cfg.WebhookURL,
			TTL: cfg.ChannelTTL, Logger: logger, Namespace: channels.Namespace(cfg.ProjectID, cfg.Deployment)}
	}
	return enroller{Enroller: en, creds: access.Credentials}, nil
}

// Handle is the SyncWorker entry point (an HTTP function behind the push
// subscription). The worker is built on the first request (no work in init);
// while it cannot start, every request is answered 503 (Pub/Sub redelivers,
// nothing is acknowledged unprocessed) and the start is tried again after a
// backoff.
var Handle = startup.HTTP(startup.Function("SyncWorker", New))
