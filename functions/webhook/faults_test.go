package webhook

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/sethvargo/go-envconfig"

	"github.com/calsync/calsync/shared/app"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/testing/faultproxy"
	"github.com/calsync/calsync/shared/testing/testenv"
	"github.com/calsync/calsync/shared/testing/testlog"
)

// faultedWebhook is the Webhook as production builds it (config.Load,
// app.Build, NewHandler) whose Pub/Sub client goes through a fault proxy to
// the emulator; a subscriber at the emulator itself records what the topic
// really holds.
type faultedWebhook struct {
	proxy *faultproxy.Proxy
	srv   *httptest.Server
	logs  *testlog.Buffer

	mu  sync.Mutex
	got map[int64]int // message number -> deliveries
}

const faultPublishTimeout = time.Second

func newFaultedWebhook(t *testing.T) *faultedWebhook {
	t.Helper()
	ctx := context.Background()
	host := testenv.PubSub(t)
	project := testenv.ProjectID(t)
	// Latency spikes outlast the publish deadline: the answer is unknown.
	proxy, err := faultproxy.Start("127.0.0.1:0", host, faultproxy.Options{
		MinLatency: 2 * faultPublishTimeout, MaxLatency: 2 * faultPublishTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)

	direct, err := pubsubx.NewClient(ctx, project, host)
	if err != nil {
		t.Fatal(err)
	}
	if err := pubsubx.EnsureTopic(ctx, direct, "faulted-notifications"); err != nil {
		t.Fatal(err)
	}
	if err := pubsubx.EnsureSubscription(ctx, direct, "faulted-notifications", "faulted-worker", false); err != nil {
		t.Fatal(err)
	}
	viaProxy, err := faultproxy.PubSubClient(ctx, project, proxy.Addr())
	if err != nil {
		t.Fatal(err)
	}

	cfg, err := config.Load[config.Webhook](ctx, envconfig.MapLookuper(map[string]string{
		"PROJECT_ID":          project,
		"CHANNEL_TOKEN_KEYS":  "k1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)), // testKeys
		"NOTIFICATIONS_TOPIC": "faulted-notifications",
		"PUBLISH_TIMEOUT":     faultPublishTimeout.String(),
	}))
	if err != nil {
		t.Fatal(err)
	}
	w := &faultedWebhook{proxy: proxy, logs: &testlog.Buffer{}, got: map[int64]int{}}
	logger := logging.New(w.logs, slog.LevelInfo)
	a, err := app.Build(ctx, cfg, app.WithPubSub(viaProxy), app.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	w.srv = httptest.NewServer(NewHandler(cfg, a, logger))

	rctx, cancel := context.WithCancel(ctx)
	var done sync.WaitGroup
	done.Add(1)
	go func() {
		defer done.Done()
		_ = direct.Subscriber("faulted-worker").Receive(rctx, func(_ context.Context, m *pubsub.Message) {
			n, err := messages.ParseNotification(m.Data)
			if err != nil {
				t.Errorf("bad message %s: %v", m.Data, err)
			}
			w.mu.Lock()
			w.got[n.MessageNumber]++
			w.mu.Unlock()
			m.Ack()
		})
	}()
	// Cleanups run last-in first-out: the server, then the publisher and
	// the clients, while the emulator is still up.
	t.Cleanup(func() {
		w.srv.Close()
		a.Close()
		viaProxy.Close()
		cancel()
		done.Wait()
		direct.Close()
	})
	return w
}

func (w *faultedWebhook) post(t *testing.T, n int64) int {
	t.Helper()
	return post(t, w.srv.URL, googleHeaders(t, "exists", strconv.FormatInt(n, 10)))
}

func (w *faultedWebhook) deliveries() map[int64]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[int64]int, len(w.got))
	for k, v := range w.got {
		out[k] = v
	}
	return out
}

// TestPublishFaultsAnswer503UnlessConfirmed: with each fault Pub/Sub
// produces between the Webhook and the emulator, a push is answered 200
// only once Pub/Sub confirmed it, 503 when the publish failed or its outcome
// is still unknown at the publish deadline; Google's retries of the 503s are
// answered 200 once Pub/Sub is back; every push answered 200 is on the
// topic. A lost answer the client library retried, or a 503 whose publish
// was in fact applied, puts a message there twice: the SyncWorker's replay
// record (store.Admit) absorbs it.
func TestPublishFaultsAnswer503UnlessConfirmed(t *testing.T) {
	w := newFaultedWebhook(t)
	p := faultproxy.PubSubPublish
	cases := []struct {
		name   string
		inject func()
		heal   func()
		want   int
		// applied: the topic holds the message once the case is over,
		// before any retry by Google (a lost or late answer).
		applied bool
	}{
		{name: "healthy", inject: func() {}, want: 200, applied: true},
		// The client library retries UNAVAILABLE within the deadline.
		{name: "unavailable once", inject: func() { w.proxy.FailNext(p, 1, faultproxy.Unavailable) }, want: 200, applied: true},
		// Its retry meets the applied first attempt: a duplicate.
		{name: "lost answer, unavailable", inject: func() { w.proxy.FailNext(p, 1, faultproxy.LostUnavailable) }, want: 200, applied: true},
		{name: "lost answer, deadline exceeded", inject: func() { w.proxy.FailNext(p, 1, faultproxy.LostDeadline) }, want: 200, applied: true},
		// Past the publish deadline nothing is confirmed: 503 although
		// the write reaches (latency) or reached (late answer) the service.
		{name: "latency past the deadline", inject: func() { w.proxy.FailNext(p, 1, faultproxy.Latency) }, want: 503, applied: true},
		{name: "answer past the deadline", inject: func() { w.proxy.FailNext(p, 1, faultproxy.LateAnswer) }, want: 503, applied: true},
		// Pub/Sub unreachable for longer than the deadline: a failure.
		{name: "unavailable throughout",
			inject: func() { w.proxy.SetRates(faultproxy.Rates{Before: 1}) },
			heal:   func() { w.proxy.SetRates(faultproxy.Rates{}) },
			want:   503},
	}
	answered200 := map[int64]bool{}
	answered503 := 0
	for i, c := range cases {
		n := int64(100 + i)
		c.inject()
		start := time.Now()
		code := w.post(t, n)
		took := time.Since(start)
		if c.heal != nil {
			c.heal()
		}
		t.Logf("%-32s message %d: %d in %v", c.name, n, code, took.Round(time.Millisecond))
		if code != c.want {
			t.Errorf("%s: message %d answered %d, want %d", c.name, n, code, c.want)
		}
		if code == 200 {
			answered200[n] = true
		} else {
			answered503++
		}
		if c.applied {
			waitFor(t, c.name+": the applied publish on the topic", func() bool { return w.deliveries()[n] > 0 })
		}
		// Google retries a 503 (with backoff) until it is answered 2xx.
		for code == 503 {
			time.Sleep(100 * time.Millisecond)
			code = w.post(t, n)
			if code != 200 && code != 503 {
				t.Fatalf("%s: retry of message %d answered %d", c.name, n, code)
			}
			answered200[n] = code == 200
			if code == 503 {
				answered503++
			}
		}
	}
	waitFor(t, "every push answered 200 on the topic", func() bool {
		got := w.deliveries()
		for n := range answered200 {
			if got[n] == 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second) // late duplicates, for the figures only
	got := w.deliveries()
	for i, c := range cases {
		t.Logf("%-32s message %d delivered %d time(s)", c.name, 100+i, got[int64(100+i)])
	}
	if got[100] != 1 {
		t.Errorf("healthy publish delivered %d times, want 1", got[100])
	}
	counts := w.proxy.Counts()
	for _, k := range []faultproxy.Kind{faultproxy.Unavailable, faultproxy.LostUnavailable, faultproxy.LostDeadline, faultproxy.Latency, faultproxy.LateAnswer} {
		if counts.Total(k) == 0 {
			t.Errorf("no %s fault was injected: %+v", k, counts)
		}
	}
	failed := 0
	for _, l := range w.logs.Lines() {
		if l[logging.KeyEvent] == logging.EventPublishFailed {
			failed++
		}
	}
	if failed != answered503 {
		t.Errorf("%d publish_failed lines for %d pushes answered 503", failed, answered503)
	}
	if code := w.post(t, 100); code != http.StatusOK {
		t.Errorf("a replay of a confirmed push: %d", code)
	}
}
