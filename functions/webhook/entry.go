package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/pubsubx"
)

// PublishHold is how long a notification may wait to share a publish request
// with others. Google waits for our answer, so it is short: under load many
// notifications still share a request, and alone one costs at most this.
const PublishHold = time.Millisecond

// FromConfig builds a Handler and its Pub/Sub publisher from config. The
// returned stop flushes the publisher.
func FromConfig(ctx context.Context, cfg config.Webhook, logger *slog.Logger) (*Handler, func(), error) {
	keys, err := channeltoken.Parse(cfg.ChannelTokenKeys)
	if err != nil {
		return nil, nil, err
	}
	client, err := pubsubx.NewClient(ctx, cfg.ProjectID, "")
	if err != nil {
		return nil, nil, err
	}
	pub := pubsubx.NewPublisher(client, cfg.NotificationsTopic, false).HoldAtMost(PublishHold)
	h := &Handler{
		ProjectID:      cfg.ProjectID,
		Verifier:       keys,
		Publisher:      pub,
		PublishTimeout: cfg.PublishTimeout,
		Logger:         logger,
	}
	return h, func() { pub.Stop(); client.Close() }, nil
}

var (
	once    sync.Once
	handler http.Handler
)

// Handle is the Webhook entry point. The handler is built on the first request
// (no work in init). Broken config answers 503, so Google keeps retrying while
// an operator fixes it, and logs CRITICAL naming the variable.
func Handle(w http.ResponseWriter, r *http.Request) {
	once.Do(func() {
		logger := logging.Default()
		cfg, err := config.Load[config.Webhook](context.Background(), nil)
		if err == nil {
			handler, _, err = FromConfig(context.Background(), cfg, logger)
		}
		if err != nil {
			logger.Log(context.Background(), logging.LevelCritical, fmt.Sprintf("Webhook cannot start: %v", err))
			handler = unavailable{}
		}
	})
	handler.ServeHTTP(w, r)
}

type unavailable struct{}

func (unavailable) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, "misconfigured", http.StatusServiceUnavailable)
}
