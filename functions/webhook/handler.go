// Package webhook is the Webhook function: it receives Google Calendar push
// notifications, verifies the channel token, publishes the notification to the
// notifications topic and answers 200 only once Pub/Sub has it. If publishing
// fails it answers 503 so that Google retries: nothing acknowledged is lost.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
)

// Publisher stores one message durably before returning nil.
type Publisher interface {
	Publish(ctx context.Context, data []byte, attrs map[string]string, orderingKey string) error
}

// Verifier checks a channel token and returns the calendar key it names.
type Verifier interface {
	Verify(channelID, token string) (calendarKey string, err error)
}

// Handler serves Google's push POSTs.
type Handler struct {
	ProjectID      string
	Verifier       Verifier
	Publisher      Publisher
	PublishTimeout time.Duration
	Logger         *slog.Logger
	Now            func() time.Time
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	// The body is never read: Google sends none, and a caller sending one gets
	// no more of our time for it.
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	push, err := ParsePush(r.Header)
	if err != nil {
		h.reject(r, push.ChannelID, err.Error())
		http.Error(w, "malformed notification", http.StatusBadRequest)
		return
	}
	calendarKey, err := h.Verifier.Verify(push.ChannelID, push.Token)
	if err != nil {
		h.reject(r, push.ChannelID, err.Error())
		if errors.Is(err, channeltoken.ErrMissing) {
			http.Error(w, "channel token required", http.StatusUnauthorized)
		} else {
			http.Error(w, "channel token invalid", http.StatusForbidden)
		}
		return
	}
	n := messages.Notification{
		ChannelID:         push.ChannelID,
		ResourceID:        push.ResourceID,
		ResourceURI:       push.ResourceURI,
		ResourceState:     push.ResourceState,
		MessageNumber:     push.MessageNumber,
		CalendarKey:       calendarKey,
		ChannelExpiration: push.ChannelExpiration,
		ReceivedAt:        start.UTC(),
	}
	data, _ := json.Marshal(n) // cannot fail: plain strings and numbers
	ctx, cancel := context.WithTimeout(r.Context(), h.PublishTimeout)
	defer cancel()
	err = h.Publisher.Publish(ctx, data, n.Attributes(), "")
	if err != nil {
		http.Error(w, "try again", http.StatusServiceUnavailable)
	} else {
		// A complete, empty answer flushed now: Google has it before we log.
		w.Header()["Content-Length"] = zeroLength
		w.WriteHeader(http.StatusOK)
		_ = http.NewResponseController(w).Flush()
	}
	// One line per notification, written after the answer so it adds no
	// latency; typed attributes keep it cheap on this hot path.
	attrs := make([]slog.Attr, 0, 10) // one allocation, room for all below
	attrs = append(attrs, logging.TraceAttrList(h.ProjectID, r)...)
	attrs = append(attrs,
		slog.String(logging.KeyChannelID, push.ChannelID), slog.String(logging.KeyCalendarKey, calendarKey),
		slog.String(logging.KeyResourceState, push.ResourceState), slog.Int64(logging.KeyMessageNumber, push.MessageNumber),
		slog.Int64(logging.KeyLatencyUs, h.now().Sub(start).Microseconds()))
	if err != nil {
		h.Logger.LogAttrs(r.Context(), slog.LevelError, "notification not published; answered 503 so Google retries",
			append(attrs, slog.String(logging.KeyEvent, logging.EventPublishFailed), slog.String(logging.KeyError, err.Error()))...)
		return
	}
	h.Logger.LogAttrs(r.Context(), slog.LevelInfo, "notification published",
		append(attrs, slog.String(logging.KeyEvent, logging.EventNotification))...)
}

// reject logs a forged or malformed push at WARNING, with the caller's
// address and never the token.
func (h *Handler) reject(r *http.Request, channelID, reason string) {
	h.Logger.LogAttrs(r.Context(), slog.LevelWarn, "push notification rejected", append(logging.TraceAttrList(h.ProjectID, r),
		slog.String(logging.KeyEvent, logging.EventNotificationRejected), slog.String(logging.KeyReason, reason),
		slog.String(logging.KeyChannelID, channelID), slog.String(logging.KeyRemoteAddr, remoteAddr(r)))...)
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// remoteAddr is the caller: the first X-Forwarded-For hop (Cloud Run's front
// end sets it), else the socket peer.
func remoteAddr(r *http.Request) string {
	if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
		first, _, _ := strings.Cut(xff, ",")
		return clip(strings.TrimSpace(first))
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// zeroLength is shared by every 200: net/http only reads header values.
var zeroLength = []string{"0"}
