package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/testing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// emulatorSetup creates a topic and subscription on the emulator at host and
// returns a Handler publishing there plus a function returning what arrived.
func emulatorSetup(t *testing.T, host string, timeout time.Duration) (*Handler, func() map[int64]messages.Notification, func()) {
	t.Helper()
	ctx := context.Background()
	project := testenv.ProjectID(t)
	client, err := pubsubx.NewClient(ctx, project, host)
	if err != nil {
		t.Fatal(err)
	}
	ensure := func() {
		if err := pubsubx.EnsureTopic(ctx, client, "notifications"); err != nil {
			t.Fatal(err)
		}
		if err := pubsubx.EnsureSubscription(ctx, client, "notifications", "worker", false); err != nil {
			t.Fatal(err)
		}
	}
	ensure()
	pub := pubsubx.NewPublisher(client, "notifications", false)
	h := newTestHandler(t, pub, nil)
	h.PublishTimeout = timeout

	var mu sync.Mutex
	got := map[int64]messages.Notification{}
	received := func() map[int64]messages.Notification {
		mu.Lock()
		defer mu.Unlock()
		out := map[int64]messages.Notification{}
		for k, v := range got {
			out[k] = v
		}
		return out
	}
	rctx, cancel := context.WithCancel(ctx)
	var extra []*pubsub.Client // receivers made after restarts
	var once sync.Once
	var done sync.WaitGroup
	// shutdown must run while the emulator is still up, or the client's
	// shutdown waits for it.
	shutdown := func() {
		once.Do(func() {
			cancel()
			done.Wait()
			pub.Stop()
			client.Close()
			for _, c := range extra {
				c.Close()
			}
		})
	}
	t.Cleanup(shutdown)
	// A receive whose stream (and connection) met the stopped emulator may
	// back off for longer than the test waits: a restart begins a fresh
	// receive on a client of its own (restart).
	var rmu sync.Mutex
	var current context.CancelFunc
	receiver := client
	restart := func() {
		fresh, err := pubsubx.NewClient(ctx, project, host)
		if err != nil {
			t.Error(err)
			return
		}
		rmu.Lock()
		defer rmu.Unlock()
		receiver = fresh
		extra = append(extra, fresh)
		if current != nil {
			current()
		}
	}
	done.Add(1)
	go func() {
		defer done.Done()
		for rctx.Err() == nil {
			ictx, icancel := context.WithCancel(rctx)
			rmu.Lock()
			current = icancel
			rc := receiver
			rmu.Unlock()
			_ = rc.Subscriber("worker").Receive(ictx, func(_ context.Context, m *pubsub.Message) {
				n, err := messages.ParseNotification(m.Data)
				if err != nil || m.Attributes["calendarKey"] != n.CalendarKey || m.Attributes["resourceState"] != n.ResourceState {
					t.Errorf("bad message %s %v: %v", m.Data, m.Attributes, err)
				}
				mu.Lock()
				got[n.MessageNumber] = n
				mu.Unlock()
				m.Ack()
			})
			icancel()
			time.Sleep(100 * time.Millisecond) // the emulator was stopped: try again
		}
	}()
	t.Cleanup(func() { ensureAgain = nil })
	ensureAgain = func() { ensure(); restart() }
	return h, received, shutdown
}

// ensureAgain recreates the topic and subscription after an emulator restart.
var ensureAgain func()

// waitFor waits for cond, long enough for a receiver that reconnects after
// the emulator restarted.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPublishedToEmulator(t *testing.T) {
	h, received, shutdown := emulatorSetup(t, testenv.PubSub(t), 10*time.Second)
	defer shutdown()
	srv := httptest.NewServer(h)
	defer srv.Close()
	for i, n := range []string{"1", "3", "5", "5"} { // the second 5 is not published (replay window)
		state := "exists"
		if i == 0 {
			state = "sync"
		}
		if code := post(t, srv.URL, googleHeaders(t, state, n)); code != 200 {
			t.Fatalf("message %s: %d", n, code)
		}
	}
	waitFor(t, "3 distinct messages", func() bool { return len(received()) == 3 })
	got := received()
	if got[1].ResourceState != "sync" || got[5].ResourceState != "exists" || got[3].CalendarKey != calKey {
		t.Fatalf("received %+v", got)
	}
}

// TestEmulatorStoppedMidTest: while Pub/Sub is down every notification is
// answered 503; once it is back Google's retries are answered 200 and every
// notification answered 200 reaches the subscription. None is acknowledged
// without being published.
func TestEmulatorStoppedMidTest(t *testing.T) {
	emu := testenv.NewPubSub(t, 0)
	h, received, shutdown := emulatorSetup(t, emu.Host, 1500*time.Millisecond)
	defer shutdown()
	srv := httptest.NewServer(h)
	defer srv.Close()

	for n := 1; n <= 5; n++ {
		if code := post(t, srv.URL, googleHeaders(t, "exists", strconv.Itoa(n))); code != 200 {
			t.Fatalf("before stop, message %d: %d", n, code)
		}
	}
	waitFor(t, "messages 1-5", func() bool { return len(received()) == 5 })

	emu.Stop()
	var failed []int
	for n := 6; n <= 8; n++ {
		code := post(t, srv.URL, googleHeaders(t, "exists", strconv.Itoa(n)))
		if code != http.StatusServiceUnavailable {
			t.Fatalf("with Pub/Sub down, message %d answered %d, want 503", n, code)
		}
		failed = append(failed, n)
	}

	// Pub/Sub comes back on the same address; Google retries the 503s.
	emu2 := testenv.NewPubSub(t, emu.Port())
	_ = emu2
	ensureAgain()
	for _, n := range failed {
		// The publisher's gRPC connection met the stopped emulator and
		// reconnects with backoff (up to 2 minutes): 503 until it does.
		deadline := time.Now().Add(150 * time.Second)
		for {
			code := post(t, srv.URL, googleHeaders(t, "exists", strconv.Itoa(n)))
			if code == 200 {
				break
			}
			if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
				t.Fatalf("retry of message %d: %d", n, code)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitFor(t, "the retried messages", func() bool {
		got := received()
		for _, n := range failed {
			if _, ok := got[int64(n)]; !ok {
				return false
			}
		}
		return true
	})
}

func post(t testing.TB, url string, h http.Header) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
