package webhook

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/calsync/calsync/shared/logging"
)

// BenchmarkHandlerCPU is the Webhook's own work per notification (parse,
// verify, encode, log) with a publisher that stores nothing, beside the
// minimal handler's work on the same request: the difference is what the
// Webhook adds on a busy instance.
//
//	go test -run '^$' -bench HandlerCPU -benchmem ./functions/webhook
func BenchmarkHandlerCPU(b *testing.B) {
	headers := googleHeaders(b, "exists", "10")
	noop := discardPublisher{}
	webhook := newTestHandler(b, noop, nil)
	webhook.Logger = logging.New(io.Discard, slog.LevelInfo)
	same := captureNotification(b, webhook, headers)
	minimal := minimalHandler(noop, same)
	for _, v := range []struct {
		name string
		h    http.Handler
	}{{"webhook", webhook}, {"minimal", minimal}} {
		b.Run(v.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			r.RemoteAddr = "203.0.113.9:4567"
			r.Header = headers.Clone()
			b.ReportAllocs()
			var n int64
			num := []string{""}
			r.Header[HeaderMessageNumber] = num
			for b.Loop() {
				// A new message number each time, as Google sends them (a
				// repeated one is a replay the Webhook does not publish).
				n++
				num[0] = strconv.FormatInt(n, 10)
				w := httptest.NewRecorder()
				v.h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}

// discardPublisher accepts every message and keeps nothing, so a benchmark
// measures the handler and not the fake.
type discardPublisher struct{}

func (discardPublisher) Publish(context.Context, []byte, map[string]string, string) error { return nil }
