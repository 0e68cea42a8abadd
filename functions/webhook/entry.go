package webhook

import (
	"context"
	"log/slog"

	"github.com/calsync/calsync/shared/app"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/startup"
	"golang.org/x/time/rate"
)

// New builds the function from its config: the token keys and a Pub/Sub
// publisher of its own (shared/app). close flushes and closes it.
func New(ctx context.Context, cfg config.Webhook, logger *slog.Logger) (h *Handler, close func(), err error) {
	return app.Function(ctx, cfg, logger, NewHandler)
}

// NewHandler is the function's handler on the keys and publisher a built
// (the fleet benchmark builds a with a counting publisher and calls this
// too).
func NewHandler(cfg config.Webhook, a *app.App, logger *slog.Logger) *Handler {
	return &Handler{
		ProjectID:       cfg.ProjectID,
		Verifier:        a.Tokens,
		Publisher:       a.Notifications,
		PublishTimeout:  cfg.PublishTimeout,
		Logger:          logger,
		ExpiryGrace:     cfg.ExpiryGrace,
		TokenV1Until:    cfg.TokenV1Until,
		UnknownKeyRetry: cfg.UnknownKeyRetry,
		seen:            newSeen(),
		rejectLines:     rate.NewLimiter(RejectLinesPerSecond, RejectLinesBurst),
	}
}

// Handle is the Webhook entry point: built on the first request (no work in
// init). While it cannot start (broken config, say) it answers 503, so Google
// keeps retrying, logs CRITICAL naming the problem, and tries again later.
var Handle = startup.HTTP(startup.Function("Webhook", New))
