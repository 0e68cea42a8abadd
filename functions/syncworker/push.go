package syncworker

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
)

// MaxBodyBytes bounds a push request's body. Our notifications are under
// 4 KiB; Pub/Sub allows 10 MB messages, but none that big comes from our
// publishers.
const MaxBodyBytes = 1 << 20

// Reasons a push request can never be processed, besides those of
// messages.ParseNotification (the reason field of invalid_message lines).
const (
	ReasonBodyTooLarge   = "body_too_large"
	ReasonNotPushRequest = "not_push_request" // not JSON, or no "message" object
	ReasonEmptyData      = "empty_data"
	ReasonBadBase64      = "bad_base64"
	// ReasonUnknownSubscription: a push of a subscription that is neither
	// the notifications' nor the control topic's (by full name).
	ReasonUnknownSubscription = "unknown_subscription"
)

// PushRequest is the body of a Pub/Sub push request. Eventarc's binary-mode
// Pub/Sub CloudEvent (google.cloud.pubsub.topic.v1.messagePublished) carries
// the same object, without deliveryAttempt, as its data.
type PushRequest struct {
	Message      *PushMessage `json:"message"`
	Subscription string       `json:"subscription"`
	// DeliveryAttempt is sent only when the subscription has a dead-letter
	// policy (ours does); 0 when absent.
	DeliveryAttempt int `json:"deliveryAttempt"`
}

// PushMessage is the Pub/Sub message inside a push request. Google sends
// both spellings of the id and time; Data is base64.
type PushMessage struct {
	Data           string            `json:"data"`
	Attributes     map[string]string `json:"attributes"`
	MessageID      string            `json:"messageId"`
	MessageIDSnake string            `json:"message_id"`
	PublishTime    string            `json:"publishTime"`
	OrderingKey    string            `json:"orderingKey"`
}

// Delivery is one decoded push request.
type Delivery struct {
	MessageID       string
	Subscription    string
	DeliveryAttempt int
	Attributes      map[string]string
	Notification    messages.Notification
}

// DecodePush decodes a push request body. ceID is the Ce-Id header of an
// Eventarc CloudEvent ("" for a push), the message id when the body lacks
// one. Every error is a *messages.InvalidError; d then holds whatever could
// be read, for the log line.
func DecodePush(body []byte, ceID string) (d Delivery, err error) {
	var req PushRequest
	jerr := json.Unmarshal(body, &req)
	d.Subscription, d.DeliveryAttempt = req.Subscription, req.DeliveryAttempt
	d.MessageID = ceID
	if m := req.Message; m != nil {
		d.Attributes = m.Attributes
		switch {
		case m.MessageID != "":
			d.MessageID = m.MessageID
		case m.MessageIDSnake != "":
			d.MessageID = m.MessageIDSnake
		}
	}
	if jerr != nil {
		return d, &messages.InvalidError{Reason: ReasonNotPushRequest, Detail: jerr.Error()}
	}
	if req.Message == nil {
		return d, &messages.InvalidError{Reason: ReasonNotPushRequest, Detail: `no "message" object`}
	}
	if req.Message.Data == "" {
		return d, &messages.InvalidError{Reason: ReasonEmptyData, Detail: "message data is empty"}
	}
	data, err := decodeBase64(req.Message.Data)
	if err != nil {
		return d, &messages.InvalidError{Reason: ReasonBadBase64, Detail: err.Error()}
	}
	d.Notification, err = messages.ParseNotification(data)
	return d, err
}

// decodeBase64 reads standard base64 (what Pub/Sub sends) and, like
// Google's own JSON parsers, the URL-safe alphabet and missing padding.
func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	enc := base64.RawStdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	return enc.DecodeString(s)
}

// ServeHTTP answers one push request, whatever its path (a push endpoint
// may have one): 204 once the notification is handled, 503 when the
// sync engine failed (Pub/Sub redelivers with the subscription's backoff),
// 200 for a message that can never be processed (acknowledged, one ERROR
// invalid_message line), 405 for anything but POST.
func (w *Worker) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		http.Error(rw, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	log := w.Logger
	if trace := logging.TraceAttrs(w.ProjectID, r); len(trace) > 0 {
		log = log.With(trace...)
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			// Only Pub/Sub may call us (OIDC), so this is a message on our
			// topic that no retry will shrink: a 4xx would be a nack and
			// loop until dead-lettered. Acknowledge it, loudly.
			w.invalid(rw, withDelivery(log, Delivery{}), Delivery{}, &messages.InvalidError{Reason: ReasonBodyTooLarge,
				Detail: fmt.Sprintf("body over %d bytes", MaxBodyBytes)})
			return
		}
		// The connection failed, not the message: let Pub/Sub send it again.
		log.Warn("push body could not be read; answered 503", logging.KeyError, logging.Clip(err.Error()))
		http.Error(rw, "try again", http.StatusServiceUnavailable)
		return
	}
	sub := subscriptionOf(body)
	if t, ok := w.controlTenant(sub); ok {
		w.serveControl(rw, r, log.With(logging.KeyTenant, t.Name), t, body) // control.go
		return
	}
	d, err := DecodePush(body, r.Header.Get("Ce-Id"))
	if err == nil && !w.isNotifications(sub) {
		// Not ours: acknowledged (a retry comes from the same subscription).
		err = &messages.InvalidError{Reason: ReasonUnknownSubscription,
			Detail: "the push's subscription is not one of this deployment's (NOTIFICATION_SUBSCRIPTIONS, CONTROL_SUBSCRIPTION)"}
	}
	log = withDelivery(log, d)
	if err != nil {
		w.invalid(rw, log, d, err)
		return
	}
	n := d.Notification
	n.MessageID = d.MessageID
	if err := w.HandleNotification(logging.WithLogger(r.Context(), log), n); errors.Is(err, messages.ErrInvalid) {
		w.invalid(rw, log, d, err)
		return
	} else if err != nil {
		log.Warn("notification not handled; answered 503 so Pub/Sub redelivers it", logging.KeyCalendarKey, n.CalendarKey,
			logging.KeyResourceState, n.ResourceState, logging.KeyError, logging.Clip(err.Error()))
		http.Error(rw, "try again", http.StatusServiceUnavailable)
		return
	}
	rw.WriteHeader(http.StatusNoContent)
}

// withDelivery names the delivery on every line about it: message id,
// subscription, delivery attempt (0: Pub/Sub sent none), escaped and clipped.
func withDelivery(log *slog.Logger, d Delivery) *slog.Logger {
	return log.With(logging.KeyMessageID, logging.Untrusted(d.MessageID), logging.KeySubscription, logging.Untrusted(d.Subscription),
		logging.KeyDeliveryAttempt, d.DeliveryAttempt)
}

// invalid acknowledges a message that can never be processed, with one
// ERROR line naming why. The body is never logged; client-controlled values
// are escaped and clipped (logging.Untrusted).
func (w *Worker) invalid(rw http.ResponseWriter, log *slog.Logger, d Delivery, err error) {
	attrs := []any{logging.KeyEvent, logging.EventInvalidMessage, logging.KeyReason, messages.InvalidReason(err),
		logging.KeyError, logging.Untrusted(err.Error())}
	key := d.Notification.CalendarKey
	if key == "" {
		key = d.Attributes[messages.AttrCalendarKey] // the Webhook sets it too
	}
	if key != "" {
		attrs = append(attrs, logging.KeyCalendarKey, logging.Untrusted(key))
	}
	log.Error("invalid notification message; acknowledged, it can never be processed", attrs...)
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rw.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(rw, "invalid message; acknowledged\n")
}
