package syncworker

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"

	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/tenant"
)

// Control messages: a product backend publishes messages.Control JSON on
// the control topic (its only grant: publisher there); the control topic's
// push subscription delivers them here, to the same function, in Pub/Sub's
// push format. Which subscription a push comes from is in its body, written
// by Pub/Sub (only Pub/Sub may call the function, with OIDC), so a product
// cannot pass a control message for a notification or the other way round.
//
// Answers: 204 done; 200 for a message that can never be done (not a
// control message, a version or option this deployment does not know, an
// identity never enrolled, a sealed token that does not open, a grant that
// does not work): one ERROR line event=invalid_control with its reason (a
// metric label, alerted), acknowledged, nothing changed; 503 when it failed
// for a reason that may pass (Pub/Sub redelivers).

// subscriptionOf reads which subscription a push body says it comes from
// ("" when it is not JSON).
func subscriptionOf(body []byte) string {
	var env struct {
		Subscription string `json:"subscription"`
	}
	_ = json.Unmarshal(body, &env)
	return env.Subscription
}

func (w *Worker) serveControl(rw http.ResponseWriter, r *http.Request, log *slog.Logger, t tenant.Tenant, body []byte) {
	var req PushRequest
	_ = json.Unmarshal(body, &req) // subscriptionOf read it
	d := Delivery{Subscription: req.Subscription, DeliveryAttempt: req.DeliveryAttempt}
	var data []byte
	var err error
	if m := req.Message; m == nil || m.Data == "" {
		err = &messages.InvalidError{Reason: ReasonEmptyData, Detail: "no message data"}
	} else {
		d.MessageID = m.MessageID
		if d.MessageID == "" {
			d.MessageID = m.MessageIDSnake
		}
		if data, err = decodeBase64(m.Data); err != nil {
			err = &messages.InvalidError{Reason: ReasonBadBase64, Detail: err.Error()}
		}
	}
	log = withDelivery(log, d)
	var c messages.Control
	if err == nil {
		c, err = messages.ParseControl(data)
	}
	if err == nil && w.Enroll == nil {
		err = errors.New("no enrollment configured")
	}
	ctx := logging.WithLogger(r.Context(), log)
	if err == nil {
		err = w.Enroll.HandleControl(ctx, t, c)
	}
	if w.Enroll != nil {
		w.Enroll.AnswerControl(ctx, t, c, err)
	}
	var dup *enroll.DuplicateError
	switch {
	case errors.As(err, &dup):
		log.Info("control message done before (its requestId); acknowledged, nothing done again", logging.KeyEvent, logging.EventControl,
			logging.KeyAction, logging.Untrusted(c.Action), logging.KeyRequestID, logging.Untrusted(c.RequestID), logging.KeyOutcome, dup.Outcome)
		rw.WriteHeader(http.StatusNoContent)
	case err == nil:
		rw.WriteHeader(http.StatusNoContent)
	case errors.Is(err, messages.ErrInvalid):
		// Every value here is the product's: escaped and clipped (terminal
		// escapes, bidi overrides and bad UTF-8 shown as escapes, not bytes).
		attrs := []any{logging.KeyEvent, logging.EventInvalidControl, logging.KeyReason, messages.InvalidReason(err),
			logging.KeyError, logging.Untrusted(err.Error()), logging.KeyAction, logging.Untrusted(c.Action),
			logging.KeyRequestID, logging.Untrusted(c.RequestID)}
		if c.Subject != "" {
			attrs = append(attrs, logging.KeySubject, logging.Untrusted(c.Subject))
		}
		if c.CredentialID != "" {
			attrs = append(attrs, logging.KeyCredentialID, logging.Untrusted(c.CredentialID))
		}
		// Never the body: it may hold a sealed token.
		log.Error("invalid control message; acknowledged, nothing changed", attrs...)
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(rw, "invalid control message; acknowledged\n")
	default:
		log.Warn("control message not done; answered 503 so Pub/Sub redelivers it", logging.KeyAction, logging.Untrusted(c.Action),
			logging.KeyRequestID, logging.Untrusted(c.RequestID), logging.KeyError, logging.Untrusted(err.Error()))
		http.Error(rw, "try again", http.StatusServiceUnavailable)
	}
}
