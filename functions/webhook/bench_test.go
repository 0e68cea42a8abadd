package webhook

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/testenv"
)

// BenchmarkWebhookVsBaselines runs, side by side in one run over loopback HTTP
// with 64 concurrent senders and the Pub/Sub emulator: the Webhook, (a) the
// minimal correct handler (publish, wait, 200) and (b) a bare 200. Rounds are
// interleaved, and their order rotated, so all three see the same machine. Target: Webhook throughput at
// least 0.9x of (a), p99 at most 1 ms above (a).
//
//	go test -run '^$' -bench WebhookVsBaselines -benchtime 30x ./functions/webhook
func BenchmarkWebhookVsBaselines(b *testing.B) {
	const senders, perRound = 64, 1280
	ctx := context.Background()
	client, err := pubsubx.NewClient(ctx, testenv.ProjectID(b), testenv.PubSub(b))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	if err := pubsubx.EnsureTopic(ctx, client, "notifications"); err != nil {
		b.Fatal(err)
	}
	pub := pubsubx.NewPublisher(client, "notifications", false)
	defer pub.Stop()

	webhook := newTestHandler(b, pub, nil)
	webhook.Logger = logging.New(io.Discard, slog.LevelInfo)
	// (a) publishes the very bytes and attributes the Webhook publishes for
	// these headers (computed once), so the two differ only in handler work.
	headers := googleHeaders(b, "exists", "10")
	same := captureNotification(b, webhook, headers)
	minimal := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := pub.Publish(r.Context(), same.data, same.attrs, ""); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	bare := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })

	variants := []struct {
		name string
		h    http.Handler
	}{{"webhook", webhook}, {"minimal", minimal}, {"bare", bare}}
	lat := make([][]time.Duration, len(variants))
	elapsed := make([]time.Duration, len(variants))
	servers := make([]*httptest.Server, len(variants))
	for i, v := range variants {
		servers[i] = httptest.NewServer(v.h)
		defer servers[i].Close()
	}
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders, MaxConnsPerHost: senders}}

	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for k := range variants {
			i := (n + k) % len(variants) // rotate who goes first
			d, l := load(b, httpClient, servers[i].URL, headers, senders, perRound)
			elapsed[i] += d
			lat[i] = append(lat[i], l...)
		}
	}
	b.StopTimer()
	rps := func(i int) float64 { return float64(len(lat[i])) / elapsed[i].Seconds() }
	p99 := func(i int) float64 {
		slices.Sort(lat[i])
		return float64(lat[i][len(lat[i])*99/100].Microseconds()) / 1000
	}
	for i, v := range variants {
		b.ReportMetric(rps(i), v.name+"_req/s")
		b.ReportMetric(p99(i), v.name+"_p99_ms")
	}
	b.ReportMetric(rps(0)/rps(1), "throughput_ratio_vs_minimal")
	b.ReportMetric(p99(0)-p99(1), "added_p99_ms_vs_minimal")
}

// load sends total requests from senders goroutines and returns the wall time
// and every request's latency. Any non-200 fails the benchmark.
func load(b *testing.B, c *http.Client, url string, h http.Header, senders, total int) (time.Duration, []time.Duration) {
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	work := make(chan struct{}, total)
	for i := 0; i < total; i++ {
		work <- struct{}{}
	}
	close(work)
	start := time.Now()
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, total/senders+1)
			for range work {
				req, _ := http.NewRequest(http.MethodPost, url, nil)
				req.Header = h.Clone()
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
		}()
	}
	wg.Wait()
	return time.Since(start), lat
}

// captureNotification runs the Webhook once against a recording publisher and
// returns what it would publish.
func captureNotification(b *testing.B, h *Handler, headers http.Header) published {
	rec := &recordingPublisher{}
	c := *h
	c.Publisher = rec
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.Header = headers.Clone()
	c.ServeHTTP(httptest.NewRecorder(), r)
	if len(rec.msgs) != 1 {
		b.Fatal("the Webhook published nothing for the benchmark headers")
	}
	return rec.msgs[0]
}
