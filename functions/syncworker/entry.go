package syncworker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"cloud.google.com/go/firestore"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
)

// FromConfig builds a Worker and its clients (Firestore, Pub/Sub publisher
// with ordering on the changes topic, Calendar clients from shared/calclient).
// The returned stop flushes and closes them.
func FromConfig(ctx context.Context, cfg config.SyncWorker, logger *slog.Logger) (*Worker, func(), error) {
	fs, err := firestore.NewClientWithDatabase(ctx, cfg.ProjectID, cfg.FirestoreDatabase)
	if err != nil {
		return nil, nil, fmt.Errorf("firestore: %w", err)
	}
	cipher, err := credentials.ParseCipher(cfg.CredentialKeys)
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
	tokens := &credentials.Store{FS: fs, Cipher: cipher}
	factory := calclient.New(calclient.FromConfig(cfg.Calendar, tokens))
	w := New(syncer.Options{
		Store:         store.New(fs),
		Services:      Services{Factory: factory},
		Publisher:     syncer.PubSub{P: pub},
		Revoker:       revoker{fs: fs, factory: factory},
		AuthRevoked:   func(err error) bool { return errors.Is(err, credentials.ErrRevoked) || calclient.IsAuthRevoked(err) },
		Logger:        logger,
		LeaseDuration: cfg.LeaseDuration,
		RerunInterval: cfg.RerunInterval,
		QuietPeriod:   cfg.QuietPeriod,
		RetryBudget:   cfg.RetryBudget,
	})
	return w, func() { pub.Stop(); ps.Close(); fs.Close() }, nil
}

var (
	once    sync.Once
	worker  *Worker
	initErr error
)

// Handle is the SyncWorker entry point (Eventarc Pub/Sub CloudEvent). The
// worker is built on the first event, not in init. Broken config returns an
// error (Pub/Sub redelivers while an operator fixes it) and logs CRITICAL.
func Handle(ctx context.Context, e event.Event) error {
	once.Do(func() {
		logger := logging.Default()
		cfg, err := config.Load[config.SyncWorker](context.Background(), nil)
		if err == nil {
			worker, _, err = FromConfig(context.Background(), cfg, logger)
		}
		if err != nil {
			initErr = err
			logger.Log(context.Background(), logging.LevelCritical, fmt.Sprintf("SyncWorker cannot start: %v", err))
		}
	})
	if initErr != nil {
		return fmt.Errorf("SyncWorker misconfigured: %w", initErr)
	}
	return worker.HandleCloudEvent(ctx, e)
}
