package syncer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/syncer"
	"github.com/calsync/calsync/shared/testing/faultproxy"
	"github.com/calsync/calsync/shared/testing/syncertest"
	"github.com/calsync/calsync/shared/testing/testenv"
)

// Publishing whose outcome is unknown (issue 21, item 4). Change messages go
// to the real Pub/Sub emulator through the fault proxy, and the feed is read
// back from an ordered subscription, in the order Pub/Sub stored it.

// feedTap is a topic with an ordered subscription, a publisher that talks
// to it through a fault proxy, and the messages read back in order.
type feedTap struct {
	proxy *faultproxy.Proxy
	pub   *pubsubx.Publisher
	mu    sync.Mutex
	feed  []messages.Change
}

func newFeedTap(t *testing.T, e *env) *feedTap {
	t.Helper()
	emu := testenv.PubSub(t)
	direct, err := pubsubx.NewClient(e.ctx, e.project, emu)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close() })
	topic := fmt.Sprintf("changes-%d", time.Now().UnixNano())
	if err := pubsubx.EnsureTopic(e.ctx, direct, topic); err != nil {
		t.Fatal(err)
	}
	if err := pubsubx.EnsureSubscription(e.ctx, direct, topic, topic+"-sub", true); err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.Start("127.0.0.1:0", emu, faultproxy.Options{Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	via, err := faultproxy.PubSubClient(e.ctx, e.project, p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { via.Close() })
	ft := &feedTap{proxy: p, pub: pubsubx.NewPublisher(via, topic, true)}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	sub := direct.Subscriber(topic + "-sub")
	go func() {
		defer close(done)
		err := sub.Receive(ctx, func(_ context.Context, m *pubsub.Message) {
			var c messages.Change
			if err := json.Unmarshal(m.Data, &c); err != nil {
				t.Errorf("change message %q: %v", m.Data, err)
			}
			ft.mu.Lock()
			ft.feed = append(ft.feed, c)
			ft.mu.Unlock()
			m.Ack()
		})
		if err != nil && ctx.Err() == nil {
			t.Errorf("receive: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ft
}

// settled waits until no message has arrived for quiet, and returns the feed.
func (ft *feedTap) settled(t *testing.T, quiet time.Duration) []messages.Change {
	t.Helper()
	n, since := -1, time.Now()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ft.mu.Lock()
		cur := len(ft.feed)
		ft.mu.Unlock()
		if cur != n {
			n, since = cur, time.Now()
		} else if time.Since(since) >= quiet {
			ft.mu.Lock()
			defer ft.mu.Unlock()
			return append([]messages.Change(nil), ft.feed...)
		}
	}
	t.Fatal("the feed never went quiet")
	return nil
}

// assertFeedEndsOnMirror: replayed in Pub/Sub's order, the feed gives the
// mirror, which equals the calendar: no event missing, none left on an older
// version or alive after its deletion. Returns the number of duplicates.
func assertFeedEndsOnMirror(t *testing.T, e *env, feed []messages.Change) int {
	t.Helper()
	syncertest.AssertMirror(t, e.ctx, e.st, e.svc, e.calID)
	mirror, err := syncertest.Mirror(e.ctx, e.st, e.key)
	if err != nil {
		t.Fatal(err)
	}
	if replay := syncertest.Replay(feed); !maps.Equal(replay, mirror) {
		t.Fatalf("the feed, in Pub/Sub's order, gives %v; the mirror is %v", replay, mirror)
	}
	seen, dups := map[string]bool{}, 0
	for _, c := range feed {
		k := c.EventID + "/" + c.Etag + "/" + c.Change
		if seen[k] {
			dups++
		}
		seen[k] = true
	}
	return dups
}

// A page's publish that Pub/Sub stored but whose answer was lost (the
// client retries it: a duplicate), answered late, or refused before the
// service: the feed still ends on every event's final version.
func TestPublishOutcomeUnknownLeavesTheFeedWhole(t *testing.T) {
	for _, k := range []faultproxy.Kind{faultproxy.LostUnavailable, faultproxy.LostDeadline, faultproxy.LateAnswer, faultproxy.Unavailable} {
		t.Run(string(k), func(t *testing.T) {
			e := newEnv(t)
			ft := newFeedTap(t, e)
			s := e.syncer(func(o *syncer.Options) { o.Publisher = ft.pub })
			var ids []string
			for range 4 {
				ids = append(ids, e.insert("v1").Id)
			}
			e.deliver(s, messages.StateExists)
			ft.proxy.FailNext(faultproxy.PubSubPublish, 1, k)
			e.update(ids[0], "v2")
			e.remove(ids[1])
			e.insert("new")
			e.deliver(s, messages.StateExists)
			e.update(ids[0], "v3")
			e.update(ids[2], "v2")
			e.deliver(s, messages.StateExists)
			dups := assertFeedEndsOnMirror(t, e, ft.settled(t, time.Second))
			c := ft.proxy.Counts()
			if c.Total(k) != 1 {
				t.Fatalf("the fault was not injected: %v", c.Faults)
			}
			t.Logf("%s: %d publishes, %d duplicate messages", k, c.Calls[faultproxy.PubSubPublish], dups)
		})
	}
}

// A holder's publish that reaches Pub/Sub after its deadline (its session
// stops: the lease could have run out) and the next holder, which publishes
// a newer version of the same event. The late message must land before the
// next holder publishes; if it landed after, it would be the event's last
// message while the mirror holds the newer version. Pub/Sub cannot be
// fenced: the stopping session lets its lease go only once its publish can
// no longer land (its deadline plus the lease's margin), as if it had died.
// Before that wait, the lease was released at once and the next holder
// published within milliseconds, before the late message.
func TestLatePublishLandsBeforeTheNextHolder(t *testing.T) {
	e := newEnv(t)
	ft := newFeedTap(t, e)
	const lease = 8 * time.Second // margin: 2 s
	late := 1500 * time.Millisecond
	a := e.syncer(func(o *syncer.Options) { o.Publisher = ft.pub; o.LeaseDuration = lease; o.Instance = "a" })
	b := e.syncer(func(o *syncer.Options) { o.Publisher = ft.pub; o.LeaseDuration = lease; o.Instance = "b" })
	id := e.insert("v1").Id
	e.deliver(a, messages.StateExists)

	e.update(id, "v2")
	before := ft.proxy.Counts().Calls[faultproxy.PubSubPublish]
	ft.proxy.LandAfterDeadline(faultproxy.PubSubPublish, late)
	aDone := make(chan error, 1)
	go func() { aDone <- e.notify(a, messages.StateExists) }()
	for ft.proxy.Counts().Calls[faultproxy.PubSubPublish] == before {
		time.Sleep(10 * time.Millisecond) // a listed v2 and is publishing it
	}
	final := e.update(id, "v3")
	aErr := <-aDone
	stopped := time.Now()
	e.deliver(b, messages.StateExists)
	t.Logf("a stopped (%v); b synced %s later", aErr, time.Since(stopped).Round(time.Millisecond))

	feed := ft.settled(t, late+time.Second)
	if n := ft.proxy.Counts().Total(faultproxy.LateApplied); n != 1 {
		t.Fatalf("a's publish did not land after its deadline (%d late-applied): the case was not tested", n)
	}
	var last messages.Change
	for _, c := range feed {
		if c.EventID == id {
			last = c
		}
	}
	if last.Etag != final.Etag {
		t.Errorf("the event's last message is %s %s, its final version is %s (feed: %+v)", last.Change, last.Etag, final.Etag, feed)
	}
	assertFeedEndsOnMirror(t, e, feed)
}
