package webhook

import (
	"context"
	"log/slog"
	"time"

	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/startup"
	"golang.org/x/time/rate"
)

// PublishHold is how long a notification may wait to share a publish request
// with others. Google waits for our answer, so it is short: under load many
// notifications still share a request, and alone one costs at most this.
const PublishHold = time.Millisecond

// New builds the function from its config: the token keys and a Pub/Sub
// publisher of its own. close flushes and closes it.
func New(ctx context.Context, cfg config.Webhook, logger *slog.Logger) (h *Handler, close func(), err error) {
	keys, err := channeltoken.Parse(cfg.ChannelTokenKeys)
	if err != nil {
		return nil, nil, err
	}
	client, err := pubsubx.NewClient(ctx, cfg.ProjectID, "")
	if err != nil {
		return nil, nil, err
	}
	pub := pubsubx.NewPublisher(client, cfg.NotificationsTopic, false).HoldAtMost(PublishHold)
	h = &Handler{
		ProjectID:       cfg.ProjectID,
		Verifier:        keys,
		Publisher:       pub,
		PublishTimeout:  cfg.PublishTimeout,
		Logger:          logger,
		ExpiryGrace:     cfg.ExpiryGrace,
		TokenV1Until:    cfg.TokenV1Until,
		UnknownKeyRetry: cfg.UnknownKeyRetry,
		KeyHistory:      cfg.KeyHistory,
		seen:            newSeen(),
		rejectLines:     rate.NewLimiter(RejectLinesPerSecond, RejectLinesBurst),
	}
	return h, func() { pub.Stop(); client.Close() }, nil
}

// Handle is the Webhook entry point: built on the first request (no work in
// init). While it cannot start (broken config, say) it answers 503, so Google
// keeps retrying, logs CRITICAL naming the problem, and tries again later.
var Handle = startup.HTTP(startup.Function("Webhook", New))
