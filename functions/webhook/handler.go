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
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"golang.org/x/time/rate"
)

// Publisher stores one message durably before returning nil.
type Publisher interface {
	Publish(ctx context.Context, data []byte, attrs map[string]string, orderingKey string) error
}

// Verifier checks a channel token and returns what it claims
// (channeltoken.Keys).
type Verifier interface {
	Verify(channelID, token string) (channeltoken.Claims, error)
}

// Handler serves Google's push POSTs.
type Handler struct {
	ProjectID      string
	Verifier       Verifier
	Publisher      Publisher
	PublishTimeout time.Duration
	Logger         *slog.Logger
	Now            func() time.Time
	// ExpiryGrace: pushes whose token expired longer ago than this are
	// answered 200 and not published (zero: no grace).
	ExpiryGrace time.Duration
	// TokenV1Until: version 1 tokens (no expiration) are accepted before
	// this instant only (zero: never).
	TokenV1Until time.Time
	// UnknownKeyRetry: how long after first seeing a key id of KeyHistory
	// that the Verifier lacks it is answered 503 (Google retries) rather
	// than 403 (zero: 403 at once).
	UnknownKeyRetry time.Duration
	// KeyHistory: the ids of keys this deployment used or is about to use
	// that the Verifier does not hold (config CHANNEL_TOKEN_KEY_HISTORY).
	// Any other key id a token names is a forger's choice.
	KeyHistory []string

	seen        *seen // nil: no replay window (New sets one)
	unknownKeys unknownKeys
	// rejectLines bounds the lines of rejected pushes an instance writes
	// (nil: one per push): a flood costs bounded log volume; the lines not
	// written are counted in the next one's suppressed.
	rejectLines *rate.Limiter
	suppressed  atomic.Int64
}

// Rejection lines an instance writes a second at most, and in a burst.
const (
	RejectLinesPerSecond = 20
	RejectLinesBurst     = 100
)

// Answers to a push that is not published. Google retries 5xx only; a 200
// for a push that needs nothing stops its retries.
const (
	reasonMalformed     = "malformed_headers"
	reasonTokenMissing  = "token_missing"
	reasonTokenInvalid  = "token_malformed"
	reasonTokenKey      = "token_unknown_key"
	reasonTokenSig      = "token_signature"
	reasonTokenV1       = "token_v1_retired"
	reasonExpired       = "channel_expired"
	reasonAlreadyPublic = "already_published"
)

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
		h.reject(r, push.ChannelID, reasonMalformed, err)
		http.Error(w, "malformed notification", http.StatusBadRequest)
		return
	}
	claims, err := h.Verifier.Verify(push.ChannelID, push.Token)
	switch {
	case errors.Is(err, channeltoken.ErrMissing):
		h.reject(r, push.ChannelID, reasonTokenMissing, err)
		http.Error(w, "channel token required", http.StatusUnauthorized)
		return
	case errors.Is(err, channeltoken.ErrUnknownKey):
		h.unknownKey(w, r, push.ChannelID, claims.KeyID, start, err)
		return
	case errors.Is(err, channeltoken.ErrSignature):
		h.reject(r, push.ChannelID, reasonTokenSig, err)
		http.Error(w, "channel token invalid", http.StatusForbidden)
		return
	case err != nil:
		h.reject(r, push.ChannelID, reasonTokenInvalid, err)
		http.Error(w, "channel token invalid", http.StatusForbidden)
		return
	case claims.Version == 1 && !start.Before(h.TokenV1Until):
		h.reject(r, push.ChannelID, reasonTokenV1, errors.New("version 1 channel token (no expiration) after CHANNEL_TOKEN_V1_UNTIL"))
		http.Error(w, "channel token invalid", http.StatusForbidden)
		return
	}
	calendarKey := claims.CalendarKey
	if !claims.Expiration.IsZero() && start.After(claims.Expiration.Add(h.ExpiryGrace)) {
		// A replay of a push of an ended channel (or a very late retry):
		// nothing to sync. 200 so Google, if it was Google, stops.
		h.refuse(w, r, slog.LevelWarn, "push for a channel past its expiration and grace; answered 200, not published",
			logging.EventNotificationExpired, reasonExpired, push, calendarKey, start,
			slog.Time(logging.KeyExpiration, claims.Expiration))
		return
	}
	if h.seen != nil && h.seen.published(push.ChannelID, push.MessageNumber) {
		// This exact (channel, number) was published by this instance, and
		// the sync it caused covers this push.
		h.refuse(w, r, slog.LevelInfo, "push already published by this instance (a replay or a duplicate delivery); answered 200",
			logging.EventNotificationDuplicate, reasonAlreadyPublic, push, calendarKey, start)
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
	if claims.Resource == channeltoken.ResourceCalendarList {
		// An identity's calendar list changed: the token's key is the
		// identity's (the SyncWorker looks at the list again).
		n.Resource, n.IdentityKey, n.CalendarKey = messages.ResourceCalendarList, calendarKey, ""
	}
	data, _ := json.Marshal(n) // cannot fail: plain strings and numbers
	ctx, cancel := context.WithTimeout(r.Context(), h.PublishTimeout)
	defer cancel()
	err = h.Publisher.Publish(ctx, data, n.Attributes(), "")
	if err != nil {
		http.Error(w, "try again", http.StatusServiceUnavailable)
	} else {
		if h.seen != nil {
			h.seen.record(push.ChannelID, push.MessageNumber)
		}
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

// refuse answers 200 to a verified push that needs no publish, and logs it
// once: expired channels and replays are counted by log-based metrics.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, level slog.Level, msg, event, reason string, push Push, calendarKey string, start time.Time, extra ...slog.Attr) {
	w.Header()["Content-Length"] = zeroLength
	w.WriteHeader(http.StatusOK)
	attrs := append(logging.TraceAttrList(h.ProjectID, r),
		slog.String(logging.KeyEvent, event), slog.String(logging.KeyReason, reason),
		slog.String(logging.KeyChannelID, push.ChannelID), slog.String(logging.KeyCalendarKey, calendarKey),
		slog.String(logging.KeyResourceState, push.ResourceState), slog.Int64(logging.KeyMessageNumber, push.MessageNumber),
		slog.String(logging.KeyRemoteAddr, remoteAddr(r)), slog.Int64(logging.KeyLatencyUs, h.now().Sub(start).Microseconds()))
	h.Logger.LogAttrs(r.Context(), level, msg, append(attrs, extra...)...)
}

// unknownKeyID is what logs and metric labels say for a key id outside the
// deployment's key history: the id itself is whatever a forger wrote.
const unknownKeyID = "unknown"

// unknownKey answers a token that names a key id the Verifier lacks. Only an
// id of the deployment's key history can be a rotation step rolled out of
// order: 503 for UnknownKeyRetry after first seeing it, so Google retries
// and nothing is lost, with an ERROR line an alert watches; 403 after. Any
// other id is refused like a bad signature and logged as unknownKeyID, so
// forgers naming 600 ids make neither 600 lines nor 600 label values.
func (h *Handler) unknownKey(w http.ResponseWriter, r *http.Request, channelID, keyID string, start time.Time, err error) {
	if !slices.Contains(h.KeyHistory, keyID) {
		h.reject(r, channelID, reasonTokenKey, err, slog.String(logging.KeyKeyID, unknownKeyID))
		http.Error(w, "channel token invalid", http.StatusForbidden)
		return
	}
	first := h.unknownKeys.firstSeen(keyID, start)
	if start.Sub(first) >= h.UnknownKeyRetry {
		h.reject(r, channelID, reasonTokenKey, err, slog.String(logging.KeyKeyID, keyID))
		http.Error(w, "channel token invalid", http.StatusForbidden)
		return
	}
	// A forger can name a known id too: these lines share the budget.
	if suppressed, ok := h.lineAllowed(); ok {
		h.Logger.LogAttrs(r.Context(), slog.LevelError, "channel token signed with a key id of this deployment that this instance does not have; answered 503 so Google retries (add the key to CHANNEL_TOKEN_KEYS)",
			append(logging.TraceAttrList(h.ProjectID, r),
				slog.String(logging.KeyEvent, logging.EventTokenKeyUnknown), slog.String(logging.KeyKeyID, keyID),
				slog.String(logging.KeyChannelID, logging.Untrusted(channelID)), slog.String(logging.KeyRemoteAddr, remoteAddr(r)),
				slog.Int64(logging.KeyRetryForMs, (h.UnknownKeyRetry-start.Sub(first)).Milliseconds()),
				suppressedAttr(suppressed))...)
	}
	http.Error(w, "try again", http.StatusServiceUnavailable)
}

// reject logs a forged or malformed push at WARNING, with the caller's
// address and never the token. reason is one of a few fixed codes (a metric
// label); every value in the line a client wrote is escaped and clipped
// (logging.Untrusted), so a forged push gets one bounded line.
func (h *Handler) reject(r *http.Request, channelID, reason string, err error, extra ...slog.Attr) {
	suppressed, ok := h.lineAllowed()
	if !ok {
		return
	}
	attrs := append(logging.TraceAttrList(h.ProjectID, r),
		slog.String(logging.KeyEvent, logging.EventNotificationRejected), slog.String(logging.KeyReason, reason),
		slog.String(logging.KeyError, logging.Untrusted(err.Error())),
		slog.String(logging.KeyChannelID, logging.Untrusted(channelID)), slog.String(logging.KeyRemoteAddr, remoteAddr(r)),
		suppressedAttr(suppressed))
	h.Logger.LogAttrs(r.Context(), slog.LevelWarn, "push notification rejected", append(attrs, extra...)...)
}

// lineAllowed spends one of the lines an instance may write about refused
// pushes. Past RejectLinesPerSecond it writes no more of them (ok false);
// the next line it writes says how many it left out (suppressed).
func (h *Handler) lineAllowed() (suppressed int64, ok bool) {
	if h.rejectLines != nil && !h.rejectLines.Allow() {
		h.suppressed.Add(1)
		return 0, false
	}
	return h.suppressed.Swap(0), true
}

// suppressedAttr is the suppressed field, empty (not written) when zero.
func suppressedAttr(n int64) slog.Attr {
	if n == 0 {
		return slog.Attr{}
	}
	return slog.Int64(logging.KeySuppressed, n)
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// remoteAddr is the caller as Google's front end saw it: the LAST
// X-Forwarded-For hop, the one the front end appends for the peer it
// accepted the connection from. Every hop before it is whatever the caller
// chose to send. Without the header (tests, local runs): the socket peer.
func remoteAddr(r *http.Request) string {
	if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		last := xff[len(xff)-1]
		if i := strings.LastIndexByte(last, ','); i >= 0 {
			last = last[i+1:]
		}
		return logging.Untrusted(strings.TrimSpace(last))
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return logging.Untrusted(r.RemoteAddr)
}

// zeroLength is shared by every 200: net/http only reads header values.
var zeroLength = []string{"0"}
