// Package renewchannels is the RenewChannels function: Cloud Scheduler calls
// it hourly (OIDC), and each call runs the renewal engine (shared/renewer)
// once and answers its summary.
package renewchannels

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/calsync/calsync/shared/app"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/renewer"
	"github.com/calsync/calsync/shared/startup"
)

// Handler runs one renewal per request.
type Handler struct {
	Renewer *renewer.Renewer
	Logger  *slog.Logger
}

// New builds the function from its config with its own Firestore and Pub/Sub
// clients (shared/app; ADC, or the emulators named by
// FIRESTORE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST). close releases them.
func New(ctx context.Context, cfg config.RenewChannels, logger *slog.Logger) (h *Handler, close func(), err error) {
	return app.Function(ctx, cfg, logger, func(_ config.RenewChannels, a *app.App, logger *slog.Logger) *Handler {
		return &Handler{Renewer: a.Renewer, Logger: logger}
	})
}

// ServeHTTP runs one renewal (or, with ?mode=poll, one poll run: syncs of the
// calendars Google will not push for) and answers its Summary as JSON: 200 when the
// run happened (single failures are in the summary and logged as
// renew_failure), 500 when it could not run at all (Scheduler retries;
// overlapping runs are safe).
func (h *Handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost && req.Method != http.MethodGet {
		w.Header().Set("Allow", "POST, GET")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	run := *h.Renewer // a copy per request: its logger carries the request's trace
	run.Logger = h.Logger.With(logging.TraceAttrs(run.ProjectID, req)...)
	var sum renewer.Summary
	var err error
	switch mode := req.URL.Query().Get("mode"); mode {
	case "", "renew":
		sum, err = run.Run(req.Context())
	case "poll":
		// The poll Scheduler job: only the calendars Google will not push for.
		sum, err = run.Poll(req.Context())
	default:
		http.Error(w, "unknown mode", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		run.Logger.ErrorContext(req.Context(), "renew run failed", logging.KeyEvent, logging.EventRenewFailure,
			logging.KeyStep, "run", logging.KeyError, err.Error())
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "renewal run failed"})
		return
	}
	_ = json.NewEncoder(w).Encode(sum)
}

// Handle is the RenewChannels entry point: built on the first request (no
// work in init); while it cannot start it answers 503 and retries later.
var Handle = startup.HTTP(startup.Function("RenewChannels", New))
