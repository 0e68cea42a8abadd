package syncer_test

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore/apiv1/firestorepb"

	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
	"github.com/calsync/calsync/shared/testing/testlog"
)

// Nothing is acknowledged without a sync that covers it: a worker that stops
// (its heartbeat late, its lease taken, an error) acknowledges its message
// only when Firestore shows a completed round, a live holder that took the
// calendar over, or when it asked for a sync itself.

// lateWorker is a worker whose heartbeats are late while armed (each waits
// past the lease's safe end, as on a loaded machine) and whose listing then
// never ends by itself: the sync is still running when the heartbeat gives
// up. Nothing else of it is slowed.
type lateWorker struct {
	*syncer.Syncer
	armed atomic.Bool
	logs  testlog.Buffer
}

func (e *env) lateWorker(t *testing.T, instance string, reqs *requestLog) *lateWorker {
	t.Helper()
	w := &lateWorker{}
	fs := interceptedClient(t, e.ctx, e.project, func(ctx context.Context, _ string, req any, call func() error) error {
		if w.armed.Load() && isHeartbeat(req) {
			<-ctx.Done() // its deadline is the lease's safe end
			return ctx.Err()
		}
		return call()
	})
	w.Syncer = e.syncer(func(o *syncer.Options) {
		o.Store = store.New(fs)
		o.Instance = instance
		o.LeaseDuration = 2 * time.Second
		o.Logger = logging.New(&w.logs, slog.LevelDebug)
		o.Services = e.serviceWith(func(r *http.Request) {
			if w.armed.Load() && strings.Contains(r.URL.Path, "/events") {
				<-r.Context().Done() // until the sync is stopped
			}
		})
		if reqs != nil {
			o.Requests = reqs
		}
	})
	return w
}

// isHeartbeat: the commit of store.Heartbeat (leaseUntil and the
// transaction's leaseOp).
func isHeartbeat(req any) bool {
	c, ok := req.(*firestorepb.CommitRequest)
	if !ok || len(c.Writes) != 1 {
		return false
	}
	m := c.Writes[0].GetUpdateMask()
	paths := slices.Sorted(slices.Values(m.GetFieldPaths()))
	return m != nil && slices.Equal(paths, []string{"leaseOp", "leaseUntil"})
}

// stopLate runs one late session for n and says how it was answered. (It
// may run in a goroutine of its own: Errorf, not Fatalf.)
func (w *lateWorker) stopLate(t *testing.T, ctx context.Context, n messages.Notification) error {
	t.Helper()
	w.armed.Store(true)
	err := w.HandleNotification(ctx, n)
	w.armed.Store(false) // the late heartbeat was a one-off
	// Under load the heartbeat's transaction can run out of time before its
	// commit is even sent (the hook never sees it): the stop is what counts.
	if !strings.Contains(w.logs.String(), `"reason":"heartbeat_failed"`) {
		t.Errorf("no late heartbeat stopped the session (answer %v):\n%s", err, w.logs.String())
	}
	return err
}

// deliver plays Pub/Sub: every outstanding message is delivered until it is
// acknowledged (an error is a redelivery), and so are the sync requests the
// workers publish, until nothing is outstanding.
func deliver(t *testing.T, ctx context.Context, reqs *requestLog, outstanding []messages.Notification, workers ...*syncer.Syncer) {
	t.Helper()
	for i := 0; ; i++ {
		if n, ok := reqs.take(); ok {
			outstanding = append(outstanding, n)
		}
		if len(outstanding) == 0 {
			return
		}
		if i == 50 {
			t.Fatalf("still outstanding after 50 deliveries: %+v", outstanding)
		}
		n := outstanding[0]
		outstanding = outstanding[1:]
		if err := workers[i%len(workers)].HandleNotification(ctx, n); err != nil {
			t.Logf("delivery of %s (%s) answered %v: redelivered", n.MessageID, n.ResourceState, err)
			outstanding = append(outstanding, n)
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func (r *requestLog) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// A calendar's first full sync, whose heartbeat is late with no other worker
// anywhere: the lease merely ran out. Answered for redelivery (no request
// publisher) or acknowledged with a sync asked for; either way the calendar
// ends synced. (Before, the worker acknowledged "the next holder covers
// this notification", and the first full sync never happened.)
func TestLateHeartbeatAloneIsNoCover(t *testing.T) {
	for _, withRequests := range []bool{false, true} {
		t.Run(map[bool]string{false: "redelivered", true: "sync asked"}[withRequests], func(t *testing.T) {
			e := newEnv(t)
			for _, s := range []string{"a", "b", "c"} {
				e.insert(s)
			}
			reqs := &requestLog{}
			var opt *requestLog
			if withRequests {
				opt = reqs
			}
			w := e.lateWorker(t, "A", opt)
			m := messages.Notification{CalendarKey: e.key, ResourceState: messages.StateSync, ReceivedAt: time.Now().UTC(), MessageID: "m-1"}
			err := w.stopLate(t, e.ctx, m)
			var outstanding []messages.Notification
			switch {
			case err != nil:
				outstanding = append(outstanding, m)
			case reqs.count() == 0:
				t.Fatalf("acknowledged with no sync covering it:\n%s", w.logs.String())
			}
			if withRequests != (err == nil) {
				t.Errorf("answer %v; want an ack with a sync asked for exactly when there is a request publisher", err)
			}
			deliver(t, e.ctx, reqs, outstanding, w.Syncer)
			e.assertMirror()
			if c := e.calendar(); c.SyncToken == "" || c.Dirty || c.LeaseOwner != "" {
				t.Fatalf("calendar after delivery: %+v", c)
			}
		})
	}
}

// Two workers whose heartbeats are late one after the other on one
// calendar, the second after taking the calendar over from the first, with a
// notification acknowledged in between for the first to go round: the last
// changes still reach the mirror.
func TestLateHeartbeatsOneAfterAnother(t *testing.T) {
	e := newEnv(t)
	a := e.insert("a1")
	b := e.insert("b1")
	e.mustNotify(e.syncer(nil), messages.StateSync)
	reqs := &requestLog{}
	wa, wb := e.lateWorker(t, "A", reqs), e.lateWorker(t, "B", reqs)
	push := func(id string) messages.Notification {
		return messages.Notification{CalendarKey: e.key, ResourceState: messages.StateExists, ReceivedAt: time.Now().UTC(), MessageID: id}
	}

	e.update(a.Id, "a2")
	m1 := push("m-1")
	errA := make(chan error, 1)
	go func() { errA <- wa.stopLate(t, e.ctx, m1) }()
	waitFor(t, func() bool { return strings.HasPrefix(e.calendar().LeaseOwner, "A/") })
	e.update(b.Id, "b2")
	if err := wb.HandleNotification(e.ctx, push("m-2")); err != nil { // marks dirty for A
		t.Fatal(err)
	}
	var outstanding []messages.Notification
	if err := <-errA; err != nil {
		outstanding = append(outstanding, m1)
	}
	waitFor(t, func() bool { return !e.calendar().LeaseUntil.After(time.Now()) })

	e.update(a.Id, "a3")
	m3 := push("m-3")
	if err := wb.stopLate(t, e.ctx, m3); err != nil {
		outstanding = append(outstanding, m3)
	}
	deliver(t, e.ctx, reqs, outstanding, wa.Syncer, wb.Syncer)
	e.assertMirror()
}

// The lease genuinely taken over: a worker paused past its lease resumes
// while the worker that took over is still syncing. The calendar is left
// dirty for that live holder, which goes round once more, and the paused
// worker's message is acknowledged: no needless redelivery.
func TestLeaseTakenByLiveHolderAcks(t *testing.T) {
	e := newEnv(t)
	ev := e.insert("v1")
	e.mustNotify(e.syncer(nil), messages.StateSync)

	g := &gate{}
	t.Cleanup(g.open)
	var logsA testlog.Buffer
	wa := e.syncer(func(o *syncer.Options) {
		o.Store = store.New(g.client(t, e.ctx, e.project))
		o.Publisher = gatedPublisher{g: g, next: e.rec}
		o.Instance, o.LeaseDuration = "A", 2*time.Second
		o.Logger = logging.New(&logsA, slog.LevelDebug)
		o.Services = e.serviceWith(func(r *http.Request) {
			if strings.Contains(r.URL.Path, "/events") {
				g.close() // paused right after listing
			}
		})
	})
	e.update(ev.Id, "v2")
	errA := make(chan error, 1)
	go func() {
		errA <- wa.HandleNotification(e.ctx, messages.Notification{CalendarKey: e.key, ResourceState: messages.StateExists,
			ReceivedAt: time.Now().UTC(), MessageID: "m-1"})
	}()
	waitFor(t, func() bool { return logsA.Count("WARNING", logging.EventLeaseLost) >= 1 })
	waitFor(t, func() bool { return !e.calendar().LeaseUntil.After(time.Now()) })

	// B takes over and is still listing when A resumes.
	listing, release := make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	wb := e.syncer(func(o *syncer.Options) {
		o.Instance = "B"
		o.Services = e.serviceWith(func(r *http.Request) {
			if strings.Contains(r.URL.Path, "/events") && once.CompareAndSwap(false, true) {
				close(listing)
				<-release
			}
		})
	})
	e.update(ev.Id, "v3")
	errB := make(chan error, 1)
	go func() {
		errB <- wb.HandleNotification(e.ctx, messages.Notification{CalendarKey: e.key, ResourceState: messages.StateExists,
			ReceivedAt: time.Now().UTC(), MessageID: "m-2"})
	}()
	waitClosed(t, listing)
	g.open() // A resumes
	if err := <-errA; err != nil {
		t.Fatalf("A's message: %v; want an ack (B holds the calendar and goes round for it)\n%s", err, logsA.String())
	}
	if c := e.calendar(); !c.Dirty || !strings.HasPrefix(c.LeaseOwner, "B/") {
		t.Fatalf("after A let go: dirty %v, lease %q; want dirty under B's lease", c.Dirty, c.LeaseOwner)
	}
	if !strings.Contains(logsA.String(), `"coveredBy":"live_holder"`) {
		t.Errorf("A's log does not say the calendar was taken over:\n%s", logsA.String())
	}
	close(release)
	if err := <-errB; err != nil {
		t.Fatal(err)
	}
	e.assertMirror()
	if c := e.calendar(); c.Dirty || c.LeaseOwner != "" {
		t.Fatalf("calendar after B: %+v", c)
	}
}

// A push whose sync fails (the Calendar API down past the retry budget) is
// answered for redelivery, and the redelivery syncs, although the push's
// message number was recorded at its first admission. (Before, the lease
// was released with the calendar clean and the redelivery was taken for a
// duplicate of an admitted push: acknowledged, never synced.)
func TestFailedPushSyncsOnRedelivery(t *testing.T) {
	e := newEnv(t)
	ev := e.insert("v1")
	s := e.syncer(func(o *syncer.Options) { o.RetryBudget = 300 * time.Millisecond })
	e.mustNotify(s, messages.StateSync)
	e.update(ev.Id, "v2")
	e.srv.FailNext("events.list", 1000, http.StatusServiceUnavailable, "backendError")
	m := messages.Notification{CalendarKey: e.key, ResourceState: messages.StateExists, ReceivedAt: time.Now().UTC(),
		MessageID: "m-7", ChannelID: "ch-1", MessageNumber: 7}
	if err := s.HandleNotification(e.ctx, m); err == nil {
		t.Fatal("a failed sync was acknowledged")
	}
	e.clearFaults()
	if err := s.HandleNotification(e.ctx, m); err != nil {
		t.Fatal(err)
	}
	e.assertMirror()
}
