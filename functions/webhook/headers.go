package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/calsync/calsync/shared/messages"
)

// Google's push headers (guide: "Push notifications").
const (
	HeaderChannelID         = "X-Goog-Channel-Id"
	HeaderChannelToken      = "X-Goog-Channel-Token"
	HeaderChannelExpiration = "X-Goog-Channel-Expiration"
	HeaderMessageNumber     = "X-Goog-Message-Number"
	HeaderResourceID        = "X-Goog-Resource-Id"
	HeaderResourceState     = "X-Goog-Resource-State"
	HeaderResourceURI       = "X-Goog-Resource-Uri"
)

// maxHeaderValue bounds every value we copy into a message.
const maxHeaderValue = 2048

// ErrMalformed is returned for a push whose headers are missing or ill-formed.
var ErrMalformed = errors.New("malformed push notification")

var errMessageNumber = errors.New("message number too long")

// Push is a parsed Google push notification, token not yet verified.
type Push struct {
	ChannelID         string
	Token             string
	ChannelExpiration string
	MessageNumber     int64
	ResourceID        string
	ResourceState     string
	ResourceURI       string
}

// ParsePush reads and checks Google's push headers. Values are trimmed: Google's
// own example carries stray spaces.
func ParsePush(h http.Header) (Push, error) {
	// The names are canonical and net/http canonicalizes what it receives, so
	// a plain map lookup does what h.Get would, minus the key rewriting.
	get := func(name string) string {
		if v := h[name]; len(v) > 0 {
			return strings.TrimSpace(v[0])
		}
		return ""
	}
	p := Push{
		ChannelID:         get(HeaderChannelID),
		Token:             get(HeaderChannelToken),
		ChannelExpiration: get(HeaderChannelExpiration),
		ResourceID:        get(HeaderResourceID),
		ResourceState:     get(HeaderResourceState),
		ResourceURI:       get(HeaderResourceURI),
	}
	var errs []error
	switch {
	case p.ChannelID == "":
		errs = append(errs, errors.New("channel id missing"))
	case len(p.ChannelID) > 64 || !printable(p.ChannelID):
		errs = append(errs, errors.New("channel id longer than 64 or not printable"))
	}
	num := get(HeaderMessageNumber)
	var n int64
	err := errMessageNumber
	// Length first: ParseInt's error copies its whole input, and a forged
	// header can be 60 KB (an int64 has at most 19 digits).
	if len(num) <= 19 {
		n, err = strconv.ParseInt(num, 10, 64)
	}
	if err != nil || n <= 0 || strings.HasPrefix(num, "+") {
		errs = append(errs, fmt.Errorf(`message number "%s" is not a positive integer`, clip(num)))
	}
	p.MessageNumber = n
	switch p.ResourceState {
	case messages.StateSync, messages.StateExists, messages.StateNotExists:
	default:
		errs = append(errs, fmt.Errorf(`resource state "%s" is not sync, exists or not_exists`, clip(p.ResourceState)))
	}
	if p.ResourceID == "" {
		errs = append(errs, errors.New("resource id missing"))
	}
	if p.ResourceURI == "" {
		errs = append(errs, errors.New("resource uri missing"))
	}
	for _, v := range []string{p.ResourceID, p.ResourceURI, p.ChannelExpiration} {
		if len(v) > maxHeaderValue || !printable(v) {
			errs = append(errs, errors.New("header value too long or not printable"))
			break
		}
	}
	if len(errs) > 0 {
		return p, fmt.Errorf("%w: %w", ErrMalformed, errors.Join(errs...))
	}
	return p, nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// clip keeps a rejected value short enough to quote in an error; the log
// line escapes the whole error (logging.Untrusted).
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
