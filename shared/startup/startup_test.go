package startup

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/calsync/calsync/shared/logging"
)

// A failed start is logged CRITICAL once per attempt, answered 503 (nothing
// is handled unready), not retried within the backoff, retried after it, and
// once built the value is kept.
func TestRetriesAFailedStartAfterBackoff(t *testing.T) {
	var logs bytes.Buffer
	now := time.Unix(1000, 0)
	attempts := 0
	fail := true
	l := New("Demo", func(context.Context, *slog.Logger) (http.Handler, error) {
		attempts++
		if fail {
			return nil, errors.New("CHANNEL_TOKEN_KEYS: bad")
		}
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }), nil
	})
	l.Logger = logging.New(&logs, slog.LevelInfo)
	l.FirstRetry, l.MaxRetry = time.Second, 4*time.Second
	l.Now = func() time.Time { return now }
	h := HTTP(l)
	serve := func() int {
		rec := httptest.NewRecorder()
		h(rec, httptest.NewRequest(http.MethodPost, "/", nil))
		return rec.Code
	}
	if c := serve(); c != http.StatusServiceUnavailable || attempts != 1 {
		t.Fatalf("first request: %d after %d attempts", c, attempts)
	}
	now = now.Add(400 * time.Millisecond) // within the first backoff (0.5-1.5 s)
	if c := serve(); c != http.StatusServiceUnavailable || attempts != 1 {
		t.Fatalf("within the backoff: %d after %d attempts", c, attempts)
	}
	if _, err := l.Get(); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "CHANNEL_TOKEN_KEYS") {
		t.Errorf("error %v", err)
	}
	now = now.Add(2 * time.Second)
	if c := serve(); c != http.StatusServiceUnavailable || attempts != 2 {
		t.Fatalf("after the backoff: %d after %d attempts", c, attempts)
	}
	fail = false
	now = now.Add(10 * time.Second)
	if c := serve(); c != http.StatusNoContent || attempts != 3 {
		t.Fatalf("fixed: %d after %d attempts", c, attempts)
	}
	if c := serve(); c != http.StatusNoContent || attempts != 3 {
		t.Fatalf("built once: %d after %d attempts", c, attempts)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one CRITICAL line per failed attempt, got:\n%s", logs.String())
	}
	for _, ln := range lines {
		if !strings.Contains(ln, `"severity":"CRITICAL"`) || !strings.Contains(ln, `"event":"start_failed"`) || !strings.Contains(ln, "Demo cannot start") {
			t.Errorf("log line %s", ln)
		}
	}
}
