package webhook

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calsync/calsync/shared/app"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/testing/testenv"
)

// BenchmarkWebhookVsBaselines compares, in one run over loopback HTTP with 64
// concurrent senders and the Pub/Sub emulator: the Webhook, (a) the minimal
// correct handler (publish, wait, 200) and (b) a bare 200. Target: Webhook
// throughput at least 0.9x of (a), p99 at most 1 ms above (a).
//
//	go test -run '^$' -bench WebhookVsBaselines -benchtime 1x ./functions/webhook
//
// One iteration is 25 rounds (about 30 s); each round measures two ways, in
// time boxes of 0.3 s:
//
//   - alone: each handler in turn has the machine (order rotated). This shows
//     the Webhook's whole cost, its CPU included, but the p99 of a box also
//     carries whatever the emulator's JVM did during it.
//
//   - paired: the Webhook and (a) at once, 64 senders each, same publisher, so
//     every GC pause and batch flush lands on both: the p99 difference is the
//     handler's own, while its CPU cost is shared by both and hidden.
func BenchmarkWebhookVsBaselines(b *testing.B) {
	const senders, rounds, box = 64, 25, 300 * time.Millisecond
	ctx := context.Background()
	client, err := pubsubx.NewClient(ctx, testenv.ProjectID(b), testenv.PubSub(b))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	if err := pubsubx.EnsureTopic(ctx, client, "notifications"); err != nil {
		b.Fatal(err)
	}
	pub := pubsubx.NewPublisher(client, "notifications", false).HoldAtMost(app.PublishHold) // as deployed
	defer pub.Stop()

	webhook := newTestHandler(b, pub, nil)
	webhook.Logger = logging.New(io.Discard, slog.LevelInfo)
	// (a) publishes the very bytes and attributes the Webhook publishes for
	// these headers (computed once), so the two differ only in handler work.
	headers := googleHeaders(b, "exists", "10")
	same := captureNotification(b, webhook, headers)
	minimal := minimalHandler(pub, same)
	bare := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })

	names := []string{"webhook", "minimal", "bare"}
	urls := make([]string, len(names))
	for i, h := range []http.Handler{webhook, minimal, bare} {
		srv := httptest.NewServer(h)
		defer srv.Close()
		urls[i] = srv.URL
	}
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders, MaxConnsPerHost: senders}}
	alone := make([][]time.Duration, len(names))
	paired := make([][]time.Duration, 2)
	round := func(n int, record bool) {
		keep := func(into [][]time.Duration, i int, l []time.Duration) {
			if record {
				into[i] = append(into[i], l...)
			}
		}
		for k := range names {
			i := (n + k) % len(names) // rotate who goes first
			keep(alone, i, load(b, httpClient, urls[i], headers, senders, box))
		}
		var wg sync.WaitGroup
		for i := range paired { // each goroutine keeps into its own paired[i]
			wg.Go(func() { keep(paired, i, load(b, httpClient, urls[i], headers, senders, box)) })
		}
		wg.Wait()
	}
	// Warm up first: the emulator is a JVM, and its first seconds of JIT
	// compiling would otherwise weigh on the first rounds.
	for n := range 5 {
		round(n, false)
	}
	b.ResetTimer()
	for n := range b.N * rounds {
		round(n, true)
	}
	b.StopTimer()
	rps := func(l []time.Duration) float64 { return float64(len(l)) / (box * time.Duration(b.N*rounds)).Seconds() }
	p99 := func(l []time.Duration) float64 {
		slices.Sort(l)
		return float64(l[len(l)*99/100].Microseconds()) / 1000
	}
	for i, name := range names {
		b.ReportMetric(rps(alone[i]), name+"_req/s")
		b.ReportMetric(p99(alone[i]), name+"_p99_ms")
	}
	b.ReportMetric(rps(alone[0])/rps(alone[1]), "throughput_ratio_vs_minimal")
	b.ReportMetric(p99(alone[0])-p99(alone[1]), "added_p99_ms_vs_minimal")
	b.ReportMetric(rps(paired[0])/rps(paired[1]), "paired_throughput_ratio")
	b.ReportMetric(p99(paired[0])-p99(paired[1]), "paired_added_p99_ms")
}

// load sends requests from senders goroutines for the time box and returns
// the latency of every request that started within it. Any non-200 fails the
// benchmark.
func load(b *testing.B, c *http.Client, url string, h http.Header, senders int, box time.Duration) []time.Duration {
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	deadline := time.Now().Add(box)
	for i := range senders {
		wg.Go(func() {
			hdr := senderHeaders(b, h, i)
			var mine []time.Duration
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest(http.MethodPost, url, nil)
				req.Header = hdr.Clone()
				// Each push a new message number, as Google numbers them:
				// a repeated one is a replay the Webhook does not publish.
				req.Header[HeaderMessageNumber] = []string{strconv.FormatInt(messageNumbers.Add(1), 10)}
				t0 := time.Now()
				resp, err := c.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return lat
}

// messageNumbers numbers the benchmarks' pushes.
var messageNumbers atomic.Int64

// senderHeaders gives sender i a channel of its own (id and token), as
// Google's pushes for many calendars come from many channels: one channel's
// numbers then grow in the order its pushes are sent. (Concurrent senders
// on one channel would overtake each other, and the Webhook rightly does
// not publish a number below one it already published.)
func senderHeaders(b *testing.B, base http.Header, i int) http.Header {
	h := base.Clone()
	id := "bench-sender-" + strconv.Itoa(i)
	tok, err := testKeys(b).Mint(id, calKey, testExpiration)
	if err != nil {
		b.Fatal(err)
	}
	h.Set(HeaderChannelID, id)
	h.Set(HeaderChannelToken, tok)
	return h
}

// minimalHandler is baseline (a): publish the given message, wait, 200.
func minimalHandler(pub Publisher, msg published) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := pub.Publish(r.Context(), msg.data, msg.attrs, ""); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
}

// captureNotification runs the Webhook once against a recording publisher and
// returns what it would publish.
func captureNotification(b *testing.B, h *Handler, headers http.Header) published {
	rec := &recordingPublisher{}
	c := &Handler{ProjectID: h.ProjectID, Verifier: h.Verifier, Publisher: rec, PublishTimeout: h.PublishTimeout,
		Logger: h.Logger, ExpiryGrace: h.ExpiryGrace}
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.Header = headers.Clone()
	c.ServeHTTP(httptest.NewRecorder(), r)
	if len(rec.msgs) != 1 {
		b.Fatal("the Webhook published nothing for the benchmark headers")
	}
	return rec.msgs[0]
}
