package webhook

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calsync/calsync/shared/app"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/testing/testenv"
)

// BenchmarkForgedFlood: 10,000 forged pushes, each with 60 KB of headers
// (a 60,000-byte channel id, token, message number or X-Forwarded-For),
// sent by 32 senders while 16 senders push legitimate notifications, over
// loopback HTTP with the Pub/Sub emulator, logging real JSON lines into a
// byte counter. Side by side in one run, rounds rotating the order of:
//
//   - alone: the legitimate senders only, for a 0.5 s box;
//   - flood: the legitimate senders while a tenth of the flood goes out;
//   - bare flood (baseline): the same forged requests answered 400 by a
//     front before the Webhook sees them, so only net/http's reading of 60 KB
//     of headers (and the flood's own CPU, on the same machine) weighs on the
//     legitimate pushes.
//
// Reported: the log bytes the forged pushes wrote (in total, per push, the
// longest line), publishes caused by forged pushes (must be 0: every publish
// is a legitimate 200), the legitimate p99 alone, with the flood, with the
// bare flood, and the ratios flood/alone and flood/bare flood (the share
// the Webhook's own handling of forged pushes adds).
//
//	go test -run '^$' -bench ForgedFlood -benchtime 1x ./functions/webhook
func BenchmarkForgedFlood(b *testing.B) {
	const (
		legitSenders, floodSenders = 16, 32
		forged, rounds             = 10000, 10
		headerBytes                = 60000
		box                        = 500 * time.Millisecond
	)
	ctx := context.Background()
	client, err := pubsubx.NewClient(ctx, testenv.ProjectID(b), testenv.PubSub(b))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	if err := pubsubx.EnsureTopic(ctx, client, "notifications"); err != nil {
		b.Fatal(err)
	}
	pub := &countingPublisher{Publisher: pubsubx.NewPublisher(client, "notifications", false).HoldAtMost(app.PublishHold)} // as deployed
	defer pub.Publisher.(*pubsubx.Publisher).Stop()

	logs := &logCounter{}
	h := newTestHandler(b, pub, nil)
	h.Logger = logging.New(logs, slog.LevelInfo)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, bare := r.Header["X-Bench-Bare"]; bare {
			w.WriteHeader(http.StatusBadRequest) // the baseline: headers read, nothing else
			return
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	legitClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: legitSenders, MaxConnsPerHost: legitSenders}}
	floodClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: floodSenders, MaxConnsPerHost: floodSenders}}
	legit := googleHeaders(b, "exists", "1")
	forgeries := forgedHeaders(b, headerBytes)

	var legitOK atomic.Int64
	// legitLoad pushes fresh notifications until stop is closed.
	legitLoad := func(stop <-chan struct{}) []time.Duration {
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		for i := range legitSenders {
			wg.Go(func() {
				hdr := senderHeaders(b, legit, i)
				var mine []time.Duration
				for {
					select {
					case <-stop:
						mu.Lock()
						lat = append(lat, mine...)
						mu.Unlock()
						return
					default:
					}
					req, _ := http.NewRequest(http.MethodPost, srv.URL, nil)
					req.Header = hdr.Clone()
					req.Header[HeaderMessageNumber] = []string{strconv.FormatInt(messageNumbers.Add(1), 10)}
					t0 := time.Now()
					resp, err := legitClient.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("legitimate push answered %d", resp.StatusCode)
						return
					}
					legitOK.Add(1)
					mine = append(mine, time.Since(t0))
				}
			})
		}
		wg.Wait()
		return lat
	}
	// flood sends n forged pushes from floodSenders goroutines.
	var floodSent, floodNon4xx atomic.Int64
	flood := func(n int, bare bool) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range floodSenders {
			wg.Go(func() {
				for i := next.Add(1); i <= int64(n); i = next.Add(1) {
					req, _ := http.NewRequest(http.MethodPost, srv.URL, nil)
					req.Header = forgeries[int(i)%len(forgeries)].Clone()
					if bare {
						req.Header["X-Bench-Bare"] = []string{"1"}
					}
					resp, err := floodClient.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if !bare {
						floodSent.Add(1)
					}
					if resp.StatusCode/100 != 4 {
						floodNon4xx.Add(1)
					}
				}
			})
		}
		wg.Wait()
	}
	const (
		phaseAlone = iota
		phaseFlood
		phaseBare
	)
	measure := func(phase int) []time.Duration {
		stop := make(chan struct{})
		done := make(chan []time.Duration)
		go func() { done <- legitLoad(stop) }()
		switch phase {
		case phaseAlone:
			time.Sleep(box)
		default:
			flood(forged/rounds, phase == phaseBare)
		}
		close(stop)
		return <-done
	}
	// Warm up the emulator's JVM, then start counting.
	for range 3 {
		measure(phaseAlone)
	}
	lat := make([][]time.Duration, 3)
	b.ResetTimer()
	for range b.N {
		floodSent.Store(0)
		logs.reset()
		legitOK.Store(0)
		pub.n.Store(0)
		for r := range rounds {
			for k := range 3 { // rotate who goes first
				p := (r + k) % 3
				lat[p] = append(lat[p], measure(p)...)
			}
		}
	}
	b.StopTimer()
	alone, flooded, bare := lat[phaseAlone], lat[phaseFlood], lat[phaseBare]
	if floodNon4xx.Load() != 0 {
		b.Fatalf("%d forged pushes were not answered 4xx", floodNon4xx.Load())
	}
	forgedPublishes := pub.n.Load() - legitOK.Load()
	if forgedPublishes != 0 {
		b.Fatalf("%d publishes beyond the legitimate pushes' 200s", forgedPublishes)
	}
	rejBytes, rejLines, maxLine := logs.rejected()
	if rejLines != floodSent.Load() {
		b.Fatalf("%d rejection lines for %d forged pushes", rejLines, floodSent.Load())
	}
	p99 := func(l []time.Duration) float64 {
		slices.Sort(l)
		return float64(l[len(l)*99/100].Microseconds()) / 1000
	}
	b.ReportMetric(float64(floodSent.Load()), "forged_pushes")
	b.ReportMetric(float64(headerBytes), "forged_header_bytes")
	b.ReportMetric(float64(rejBytes), "forged_log_bytes")
	b.ReportMetric(float64(rejBytes)/float64(rejLines), "log_bytes/forged")
	b.ReportMetric(float64(maxLine), "max_log_line_bytes")
	b.ReportMetric(float64(forgedPublishes), "forged_publishes")
	b.ReportMetric(p99(alone), "legit_p99_alone_ms")
	b.ReportMetric(p99(flooded), "legit_p99_flood_ms")
	b.ReportMetric(p99(bare), "legit_p99_bare_flood_ms")
	b.ReportMetric(p99(flooded)/p99(alone), "p99_ratio_flood/alone")
	b.ReportMetric(p99(flooded)/p99(bare), "p99_ratio_flood/bare_flood")
	b.ReportMetric(float64(len(alone)), "legit_pushes_alone")
	b.ReportMetric(float64(len(flooded)), "legit_pushes_flood")
	b.ReportMetric(float64(len(bare)), "legit_pushes_bare_flood")
}

// forgedHeaders are the flood's pushes: Google's header set with 60 KB in
// one header each (the channel id, the token, the message number, a
// resource state with a bidi override, X-Forwarded-For before a forged
// signature), every one refused before anything is published.
func forgedHeaders(b *testing.B, n int) []http.Header {
	big := strings.Repeat("A", n)
	var out []http.Header
	for _, mod := range []func(http.Header){
		func(h http.Header) { h.Set(HeaderChannelID, big) },
		func(h http.Header) { h.Set(HeaderChannelToken, "v=2&k=k1&c="+calKey+"&e=1&s="+big) },
		func(h http.Header) { h.Set(HeaderMessageNumber, big) },
		func(h http.Header) { h.Set(HeaderResourceState, "\u202e"+big) }, // a bidi override (net/http refuses control bytes)
		func(h http.Header) {
			h.Set("X-Forwarded-For", big+", 203.0.113.7")
			h.Set(HeaderChannelToken, "v=2&k=k1&c="+calKey+"&e=1893553446&s=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
		},
	} {
		h := googleHeaders(b, "exists", "1")
		mod(h)
		out = append(out, h)
	}
	return out
}

// countingPublisher counts successful publishes.
type countingPublisher struct {
	Publisher
	n atomic.Int64
}

func (p *countingPublisher) Publish(ctx context.Context, data []byte, attrs map[string]string, key string) error {
	err := p.Publisher.Publish(ctx, data, attrs, key)
	if err == nil {
		p.n.Add(1)
	}
	return err
}

// logCounter counts the bytes of rejection lines (slog writes one line per
// Write) and keeps the longest.
type logCounter struct {
	mu                    sync.Mutex
	rejBytes, rej, maxLen int64
}

var rejectedMark = []byte(`"event":"notification_rejected"`)

func (l *logCounter) Write(p []byte) (int, error) {
	if bytes.Contains(p, rejectedMark) {
		l.mu.Lock()
		l.rejBytes += int64(len(p))
		l.rej++
		l.maxLen = max(l.maxLen, int64(len(p)))
		l.mu.Unlock()
	}
	return len(p), nil
}

func (l *logCounter) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rejBytes, l.rej, l.maxLen = 0, 0, 0
}

func (l *logCounter) rejected() (bytes, lines, maxLen int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rejBytes, l.rej, l.maxLen
}
