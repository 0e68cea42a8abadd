package syncer_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"golang.org/x/oauth2"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/option"

	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/testlog"
)

// A list call fails beyond the retry budget on the 2nd page: no token is
// committed, the lease is let go, and the next sync is exact.
func TestCrashBetweenPages(t *testing.T) {
	e := newEnv(t)
	var armed atomic.Bool
	var lists atomic.Int32
	svcs := e.serviceWith(func(r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/events") && r.Method == http.MethodGet && lists.Add(1) == 1 && armed.Load() {
			e.srv.FailNext("events.list", 1000, 503, "backendError")
		}
	})
	s := e.syncer(func(o *syncer.Options) { o.Services = svcs; o.PageSize = 3; o.RetryBudget = 300 * time.Millisecond })
	var ids []string
	for i := 0; i < 10; i++ {
		ids = append(ids, e.insert("e").Id)
	}
	// Full sync crashes after page 1.
	armed.Store(true)
	if err := e.notify(s, messages.StateSync); err == nil {
		t.Fatal("want an error (redeliver) when the 2nd page fails beyond the budget")
	}
	c := e.calendar()
	if c.SyncToken != "" || c.LeaseOwner != "" || !c.LastCompletedSyncStartedAt.IsZero() {
		t.Fatalf("after the crash: token %q lease %q completed %v", c.SyncToken, c.LeaseOwner, c.LastCompletedSyncStartedAt)
	}
	if n := len(e.rec.Changes()); n != 3 {
		t.Fatalf("page 1 published %d changes, want 3", n)
	}
	e.clearFaults()
	armed.Store(false)
	e.mustNotify(s, messages.StateSync) // the redelivery
	e.assertMirror()
	e.wantCounts(10, 0, 0)

	// Incremental sync crashes after page 1.
	e.rec.Reset()
	token := e.calendar().SyncToken
	for _, id := range ids[:4] {
		e.update(id, "u")
	}
	for _, id := range ids[4:7] {
		e.remove(id)
	}
	lists.Store(0)
	armed.Store(true)
	if err := e.notify(s, messages.StateExists); err == nil {
		t.Fatal("want an error")
	}
	if got := e.calendar().SyncToken; got != token {
		t.Fatal("token committed after a failed incremental sync")
	}
	e.clearFaults()
	armed.Store(false)
	e.mustNotify(s, messages.StateExists)
	e.assertMirror()
	got := e.rec.Changes()
	// Page 1 (3 updates) went out twice at most; dedup on (eventId, etag).
	seen := map[[2]string]bool{}
	for _, ch := range got {
		seen[[2]string{ch.EventID, ch.Etag}] = true
	}
	if len(seen) != 7 {
		t.Fatalf("distinct changes %d, want 7 (%v)", len(seen), got)
	}
}

// 410 mid-life: events deleted while the token was dead are removed by the
// full resync's mark and sweep.
func TestSyncTokenGone(t *testing.T) {
	e := newEnv(t)
	logs := &testlog.Buffer{}
	s := e.syncer(func(o *syncer.Options) { o.Logger = logging.New(logs, slog.LevelInfo); o.PageSize = 4 })
	var ids []string
	for i := 0; i < 9; i++ {
		ids = append(ids, e.insert("e").Id)
	}
	e.mustNotify(s, messages.StateSync)
	e.rec.Reset()
	e.remove(ids[0])
	e.remove(ids[1])
	e.update(ids[2], "u")
	e.insert("new")
	// A document the calendar never had (e.g. left by an old bug) is swept too.
	stray, _ := store.EventDoc(&calendar.Event{Id: "stray0001", Etag: `"1"`, Status: "confirmed"}, nil, time.Now())
	if _, err := e.st.Events(e.key).Doc("stray0001").Set(e.ctx, stray); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.InvalidateSyncTokens(e.calID); err != nil {
		t.Fatal(err)
	}
	e.mustNotify(s, messages.StateExists)
	e.assertMirror()
	e.wantCounts(1, 1, 3)
	c := e.calendar()
	if c.FullSyncCount != 2 || c.EventCount != 8 || c.SyncToken == "" {
		t.Fatalf("after 410: %+v", c)
	}
	if n := logs.Count("WARNING", logging.EventFullResync); n != 1 {
		t.Fatalf("%d full_resync warnings, want 1", n)
	}
	if n := logs.Count("INFO", logging.EventSync); n != 2 {
		t.Fatalf("%d sync lines, want 2", n)
	}
	// And an explicit full_resync request.
	e.rec.Reset()
	e.mustNotify(s, messages.StateFullResync)
	e.assertMirror()
	e.wantCounts(0, 0, 0)
	if c := e.calendar(); c.FullSyncCount != 3 {
		t.Fatalf("full_resync: %+v", c)
	}
}

func TestRecurringSeries(t *testing.T) {
	e := newEnv(t)
	s := e.syncer(nil)
	master, err := e.svc.Events.Insert(e.calID, &calendar.Event{
		Summary:    "weekly",
		Start:      &calendar.EventDateTime{DateTime: "2026-12-07T09:00:00", TimeZone: "Europe/Paris"},
		End:        &calendar.EventDateTime{DateTime: "2026-12-07T10:00:00", TimeZone: "Europe/Paris"},
		Recurrence: []string{"RRULE:FREQ=WEEKLY;COUNT=10"},
	}).Context(e.ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	other := e.insert("single")
	e.mustNotify(s, messages.StateSync)
	inst, err := e.svc.Events.Instances(e.calID, master.Id).Context(e.ctx).Do()
	if err != nil || len(inst.Items) < 4 {
		t.Fatalf("instances: %v %d", err, len(inst.Items))
	}
	moved := inst.Items[1]
	if _, err := e.svc.Events.Patch(e.calID, moved.Id, &calendar.Event{Summary: "moved"}).Context(e.ctx).Do(); err != nil {
		t.Fatal(err)
	}
	e.remove(inst.Items[2].Id)
	e.mustNotify(s, messages.StateExists)
	e.assertMirror()
	snap, err := e.st.Events(e.key).Doc(inst.Items[2].Id).Get(e.ctx)
	if err != nil {
		t.Fatal("cancelled occurrence not kept:", err)
	}
	if st, _ := snap.DataAt("status"); st != "cancelled" {
		t.Fatalf("cancelled occurrence status %v", st)
	}
	if c := e.calendar(); c.EventCount != 4 {
		t.Fatalf("eventCount %d, want 4 (master, single, 2 exceptions)", c.EventCount)
	}
	// The series goes: the master and both exceptions leave the mirror.
	e.rec.Reset()
	e.remove(master.Id)
	e.mustNotify(s, messages.StateExists)
	e.assertMirror()
	e.wantCounts(0, 0, 3)
	got, _ := e.st.GetEvents(e.ctx, e.key, []string{master.Id, moved.Id, inst.Items[2].Id, other.Id})
	if got[master.Id].Exists || got[moved.Id].Exists || got[inst.Items[2].Id].Exists || !got[other.Id].Exists {
		t.Fatalf("after series delete: %+v", got)
	}
	// A full resync agrees.
	e.mustNotify(s, messages.StateFullResync)
	e.assertMirror()
}

// Two workers, one calendar: one syncs, the other marks dirty and acks; the
// syncing one goes round exactly once more.
func TestTwoWorkersCoalesce(t *testing.T) {
	e := newEnv(t)
	e.insert("first")
	release := make(chan struct{})
	var calls atomic.Int32
	entered := make(chan struct{})
	blocking := syncer.ServicesFunc(func(ctx context.Context, _ store.Grant) (*calendar.Service, error) {
		if calls.Add(1) == 1 {
			close(entered) // the round has started: StartRound is behind us
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return e.svc, nil
	})
	var rounds atomic.Int32
	a := e.syncer(func(o *syncer.Options) { o.Services = blocking; o.OnSync = func(syncer.Report) { rounds.Add(1) } })
	b := e.syncer(nil)
	errc := make(chan error, 1)
	go func() { errc <- e.notify(a, messages.StateSync) }()
	waitClosed(t, entered)
	e.insert("during")
	for i := 0; i < 5; i++ { // the first marks dirty, the others find it marked
		if err := e.notify(b, messages.StateExists); err != nil {
			t.Fatal(err)
		}
	}
	if c := e.calendar(); !c.Dirty || c.DirtySince.IsZero() {
		t.Fatalf("not dirty: %+v", c)
	}
	// The holder's own process: marked or found dirty, then no Firestore call.
	for i := 0; i < 5; i++ {
		if err := e.notify(a, messages.StateExists); err != nil {
			t.Fatal(err)
		}
	}
	lists := e.lists()
	close(release)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if rounds.Load() != 2 || b.Stats().Rounds != 0 {
		t.Fatalf("rounds: a %d b %d, want 2 and 0", rounds.Load(), b.Stats().Rounds)
	}
	if e.lists()-lists != 2 {
		t.Fatalf("%d list calls, want 2", e.lists()-lists)
	}
	c := e.calendar()
	if c.Dirty || c.LeaseOwner != "" || c.SyncCount != 2 {
		t.Fatalf("after: %+v", c)
	}
	e.assertMirror()
}

func waitClosed(t *testing.T, c <-chan struct{}) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatal("not reached in 10s")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Redelivered and duplicated messages cost nothing once covered.
func TestRedeliveredAndDuplicated(t *testing.T) {
	e := newEnv(t)
	s := e.syncer(func(o *syncer.Options) { o.RerunInterval = 200 * time.Millisecond })
	e.insert("a")
	n := messages.Notification{CalendarKey: e.key, ResourceState: messages.StateExists, ReceivedAt: time.Now().UTC()}
	if err := s.HandleNotification(e.ctx, n); err != nil {
		t.Fatal(err)
	}
	lists := e.lists()
	if err := s.HandleNotification(e.ctx, n); err != nil { // redelivery of a handled message
		t.Fatal(err)
	}
	if e.lists() != lists {
		t.Fatal("a covered redelivery listed events")
	}
	// 20 duplicates of a new notification at once: a couple of syncs at most.
	e.insert("b")
	n.ReceivedAt = time.Now().UTC()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- s.HandleNotification(e.ctx, n) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if d := e.lists() - lists; d < 1 || d > 2 {
		t.Fatalf("%d list calls for 20 duplicates, want 1 or 2", d)
	}
	e.assertMirror()
	e.wantCounts(2, 0, 0)
}

func TestTransientErrorsRecovered(t *testing.T) {
	e := newEnv(t)
	s := e.syncer(func(o *syncer.Options) { o.RetryBudget = 20 * time.Second })
	e.insert("a")
	e.srv.FailNext("events.list", 2, 503, "backendError")
	e.srv.FailNext("events.list", 1, 429, "rateLimitExceeded")
	e.srv.FailNext("events.list", 1, 403, "userRateLimitExceeded")
	e.mustNotify(s, messages.StateSync)
	if got := e.srv.Stats().Requests["events.list"]; got != 5 {
		t.Fatalf("%d list calls, want 5 (4 failures, 1 success)", got)
	}
	e.assertMirror()
	// quotaExceeded: no quick retries; redeliver, lease let go.
	e.insert("b")
	e.srv.FailNext("events.list", 1, 403, "quotaExceeded")
	lists := e.lists()
	if err := e.notify(s, messages.StateExists); err == nil {
		t.Fatal("quotaExceeded: want an error for redelivery")
	}
	if e.lists()-lists != 1 || e.calendar().LeaseOwner != "" {
		t.Fatal("quotaExceeded was retried in process or kept the lease")
	}
	e.mustNotify(s, messages.StateExists)
	e.assertMirror()
}

func TestAuthRevokedAndNotFound(t *testing.T) {
	e := newEnv(t)
	const alice = "alice@calsync.test"
	tok := e.srv.IssueToken(alice)
	logs := &testlog.Buffer{}
	conf := &oauth2.Config{ClientID: "c", ClientSecret: "s", Endpoint: oauth2.Endpoint{TokenURL: e.base + "/token"}}
	svcs := syncer.ServicesFunc(func(ctx context.Context, cal store.Grant) (*calendar.Service, error) {
		ts := conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken})
		return calendaremu.NewService(ctx, e.base, option.WithTokenSource(ts))
	})
	s := e.syncer(func(o *syncer.Options) { o.Services = svcs; o.Logger = logging.New(logs, slog.LevelInfo) })
	key, err := lifecycle.Register(e.ctx, e.st, store.Calendar{CalendarID: alice, AuthMode: store.AuthOAuth, CredentialID: "cred1"})
	if err != nil {
		t.Fatal(err)
	}
	n := messages.Notification{CalendarKey: key, ResourceState: messages.StateSync, ReceivedAt: time.Now().UTC()}
	if err := s.HandleNotification(e.ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.RevokeGrant(alice); err != nil {
		t.Fatal(err)
	}
	n.ResourceState, n.ReceivedAt = messages.StateExists, time.Now().UTC()
	if err := s.HandleNotification(e.ctx, n); err != nil {
		t.Fatalf("invalid_grant must be acknowledged: %v", err)
	}
	c, _ := e.st.GetCalendar(e.ctx, key)
	if c.Status != store.StatusAuthRevoked || c.LeaseOwner != "" {
		t.Fatalf("after invalid_grant: %+v", c)
	}
	var errorLines []map[string]any
	for _, m := range logs.Lines() {
		if m["severity"] == "ERROR" {
			errorLines = append(errorLines, m)
		}
	}
	if len(errorLines) != 1 || errorLines[0]["event"] != logging.EventAuthRevoked || errorLines[0]["credentialId"] != "cred1" || errorLines[0]["calendarKey"] != key {
		t.Fatalf("want exactly one auth_revoked ERROR line with calendarKey and credentialId, got %v", errorLines)
	}

	// A calendar that does not exist (404) starts a 404 streak; only a
	// persistent one sets not_found (TestOne404DoesNotDisable).
	s2 := e.syncer(func(o *syncer.Options) {
		o.Lifecycle = &lifecycle.Owner{Store: e.st, Logger: quietLogger(), NotFound: store.NotFoundPolicy{Attempts: 2, After: time.Nanosecond}}
	})
	key2, _ := lifecycle.Register(e.ctx, e.st, store.Calendar{CalendarID: "gone@calsync.test", AuthMode: store.AuthADC})
	for range 2 {
		if err := s2.HandleNotification(e.ctx, messages.Notification{CalendarKey: key2, ResourceState: messages.StateSync}); err != nil {
			t.Fatal(err)
		}
	}
	if c, _ := e.st.GetCalendar(e.ctx, key2); c.Status != store.StatusNotFound {
		t.Fatalf("status %q, want not_found", c.Status)
	}
}

// Losing the lease aborts the sync without committing its token.
func TestLeaseLostAborts(t *testing.T) {
	e := newEnv(t)
	e.insert("a")
	stolen := make(chan struct{})
	svcs := syncer.ServicesFunc(func(ctx context.Context, _ store.Grant) (*calendar.Service, error) {
		<-stolen
		<-ctx.Done() // the heartbeat notices and cancels
		return nil, ctx.Err()
	})
	s := e.syncer(func(o *syncer.Options) { o.Services = svcs; o.LeaseDuration = 300 * time.Millisecond })
	errc := make(chan error, 1)
	go func() { errc <- e.notify(s, messages.StateSync) }()
	waitFor(t, func() bool { return e.calendar().LeaseOwner != "" })
	if _, err := e.st.CalendarRef(e.key).Update(e.ctx, []firestore.Update{{Path: "leaseOwner", Value: "thief"}}); err != nil {
		t.Fatal(err)
	}
	close(stolen)
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("lease lost: want ack, got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sync did not stop after losing its lease")
	}
	if c := e.calendar(); c.SyncToken != "" || c.LeaseOwner != "thief" {
		t.Fatalf("after lease loss: %+v", c)
	}
}

// A crashed holder's lease expires; the next message takes over even if it
// is covered, because the calendar is dirty.
func TestCrashedHolderTakenOver(t *testing.T) {
	e := newEnv(t)
	s := e.syncer(nil)
	e.insert("a")
	e.mustNotify(s, messages.StateSync)
	e.insert("b")
	old := time.Now().Add(-time.Minute).UTC()
	if _, err := e.st.CalendarRef(e.key).Update(e.ctx, []firestore.Update{
		{Path: "leaseOwner", Value: "dead"}, {Path: "leaseUntil", Value: time.Now().Add(-time.Second)},
		{Path: "dirty", Value: true}, {Path: "dirtySince", Value: old},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.HandleNotification(e.ctx, messages.Notification{CalendarKey: e.key, ResourceState: messages.StateExists, ReceivedAt: old}); err != nil {
		t.Fatal(err)
	}
	e.assertMirror()
	if c := e.calendar(); c.Dirty || c.LeaseOwner != "" {
		t.Fatalf("after takeover: %+v", c)
	}
}

// A full_resync request that arrives during a sync makes the rerun full.
func TestFullResyncDuringSync(t *testing.T) {
	e := newEnv(t)
	e.insert("a")
	s0 := e.syncer(nil)
	e.mustNotify(s0, messages.StateSync)
	release := make(chan struct{})
	var calls atomic.Int32
	entered := make(chan struct{})
	blocking := syncer.ServicesFunc(func(ctx context.Context, _ store.Grant) (*calendar.Service, error) {
		if calls.Add(1) == 1 {
			close(entered) // the round has started: StartRound is behind us
			<-release
		}
		return e.svc, nil
	})
	var reports []syncer.Report
	var mu sync.Mutex
	a := e.syncer(func(o *syncer.Options) {
		o.Services = blocking
		o.OnSync = func(r syncer.Report) { mu.Lock(); reports = append(reports, r); mu.Unlock() }
	})
	errc := make(chan error, 1)
	go func() { errc <- e.notify(a, messages.StateExists) }()
	waitClosed(t, entered)
	e.mustNotify(s0, messages.StateExists)     // dirty
	e.mustNotify(s0, messages.StateFullResync) // dirty already, but needs its flag
	if c := e.calendar(); !c.Dirty || !c.FullResyncRequested {
		t.Fatalf("flags: %+v", c)
	}
	close(release)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reports) != 2 || reports[0].Full || !reports[1].Full || reports[1].RerunReason != messages.StateFullResync {
		t.Fatalf("rounds: %+v", reports)
	}
	if c := e.calendar(); c.FullResyncRequested || c.FullSyncCount != 2 {
		t.Fatalf("after: %+v", c)
	}
	e.assertMirror()
}

// The heartbeat keeps the lease of a sync that outlives LeaseDuration.
func TestHeartbeatKeepsLongSync(t *testing.T) {
	e := newEnv(t)
	e.insert("a")
	slow := syncer.ServicesFunc(func(ctx context.Context, _ store.Grant) (*calendar.Service, error) {
		time.Sleep(7 * time.Second) // over two lease lengths
		return e.svc, nil
	})
	// (The lease leaves a heartbeat about a second to get through: far
	// shorter leases are shorter than a Firestore transaction on a loaded
	// machine under -race, and the holder would rightly give them up.)
	s := e.syncer(func(o *syncer.Options) { o.Services = slow; o.LeaseDuration = 3 * time.Second })
	e.mustNotify(s, messages.StateSync)
	if c := e.calendar(); c.SyncToken == "" || c.LeaseOwner != "" {
		t.Fatalf("long sync did not complete: %+v", c)
	}
	e.assertMirror()
}

// Pacing: a rerun waits RerunInterval from the previous round's start, unless
// this process saw the burst end (quiet for QuietPeriod).
func TestPacing(t *testing.T) {
	for _, local := range []bool{false, true} {
		t.Run(map[bool]string{false: "other_instance", true: "same_instance"}[local], func(t *testing.T) {
			e := newEnv(t)
			e.insert("a")
			release := make(chan struct{})
			var calls atomic.Int32
			entered := make(chan struct{})
			blocking := syncer.ServicesFunc(func(ctx context.Context, _ store.Grant) (*calendar.Service, error) {
				if calls.Add(1) == 1 {
					close(entered) // the round has started: StartRound is behind us
					<-release
				}
				return e.svc, nil
			})
			var mu sync.Mutex
			var starts []time.Time
			a := e.syncer(func(o *syncer.Options) {
				o.Services = blocking
				o.RerunInterval = 1500 * time.Millisecond
				o.QuietPeriod = 100 * time.Millisecond
				o.OnSync = func(r syncer.Report) { mu.Lock(); starts = append(starts, r.StartedAt); mu.Unlock() }
			})
			other := e.syncer(nil)
			errc := make(chan error, 1)
			t0 := time.Now()
			go func() { errc <- e.notify(a, messages.StateSync) }()
			waitClosed(t, entered)
			if time.Since(t0) > time.Second {
				t.Fatal("the first notification of a quiet calendar did not sync at once")
			}
			via := other
			if local {
				via = a
			}
			e.mustNotify(via, messages.StateExists)
			close(release)
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(starts) != 2 {
				t.Fatalf("%d rounds, want 2", len(starts))
			}
			gap := starts[1].Sub(starts[0])
			if !local && gap < 1500*time.Millisecond {
				t.Fatalf("rerun %v after the previous start, want ≥ 1.5s", gap)
			}
			if local && gap >= 1500*time.Millisecond {
				t.Fatalf("rerun %v after the previous start: the quiet period should have ended the wait", gap)
			}
		})
	}
}

// After MaxSession the holder lets the lease go with the calendar still
// dirty and asks for the continuation; the next message takes over. With
// no request publisher to ask with, the message is redelivered instead:
// acknowledged, the dirty calendar would wait for a notification that may
// never come.
func TestMaxSessionHandsOver(t *testing.T) {
	for _, withRequests := range []bool{true, false} {
		t.Run(map[bool]string{true: "continuation asked", false: "redelivered"}[withRequests], func(t *testing.T) {
			testMaxSessionHandsOver(t, withRequests)
		})
	}
}

func testMaxSessionHandsOver(t *testing.T, withRequests bool) {
	e := newEnv(t)
	e.insert("a")
	release := make(chan struct{})
	var calls atomic.Int32
	entered := make(chan struct{})
	blocking := syncer.ServicesFunc(func(ctx context.Context, _ store.Grant) (*calendar.Service, error) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
		return e.svc, nil
	})
	reqs := &requestLog{}
	a := e.syncer(func(o *syncer.Options) {
		o.Services, o.MaxSession = blocking, time.Nanosecond
		if withRequests {
			o.Requests = reqs
		}
	})
	b := e.syncer(nil)
	errc := make(chan error, 1)
	go func() { errc <- e.notify(a, messages.StateSync) }()
	waitClosed(t, entered)
	e.insert("during")
	e.mustNotify(b, messages.StateExists) // marks dirty
	close(release)
	if err := <-errc; (err == nil) != withRequests || (reqs.count() == 1) != withRequests {
		t.Fatalf("answer %v with %d continuation requests", err, reqs.count())
	}
	if c := e.calendar(); !c.Dirty || c.LeaseOwner != "" || c.SyncCount != 1 {
		t.Fatalf("after hand-over: %+v", c)
	}
	// A redelivered (covered) message takes over the dirty, free calendar.
	if err := b.HandleNotification(e.ctx, messages.Notification{CalendarKey: e.key, ResourceState: messages.StateExists,
		ReceivedAt: time.Now().Add(-time.Hour).UTC()}); err != nil {
		t.Fatal(err)
	}
	if c := e.calendar(); c.Dirty || c.SyncCount != 2 {
		t.Fatalf("after take-over: %+v", c)
	}
	e.assertMirror()
}

// The full-resync cooldown (a cost guard) coalesces requested resyncs
// only: a full_resync request within the cooldown of the last full sync is
// an incremental sync; after it, it is full again. A 410 within the
// cooldown still gets its resync at once (the token is dead: deferring
// left the mirror stale for the whole cooldown).
func TestFullResyncCooldown(t *testing.T) {
	e := newEnv(t)
	logs := &testlog.Buffer{}
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	s := e.syncer(func(o *syncer.Options) {
		o.Logger = logging.New(logs, slog.LevelInfo)
		o.FullResyncCooldown = 10 * time.Minute
		o.Requests = &requestLog{}
		o.Now = now
	})
	notify := func(state string) {
		t.Helper()
		if err := s.HandleNotification(e.ctx, messages.Notification{CalendarKey: e.key, ResourceState: state, ReceivedAt: now().UTC()}); err != nil {
			t.Fatal(err)
		}
	}
	e.insert("a")
	notify(messages.StateSync) // the first, full, sync
	cooldownLines := func(outcome string) int {
		n := 0
		for _, l := range logs.Lines() {
			if l["event"] == logging.EventFullResyncCooldown && l["outcome"] == outcome && l["severity"] == "WARNING" {
				n++
			}
		}
		return n
	}
	// The token dies within the cooldown: resynced at once all the same.
	e.insert("b")
	if err := e.srv.InvalidateSyncTokens(e.calID); err != nil {
		t.Fatal(err)
	}
	notify(messages.StateExists)
	e.assertMirror()
	if c := e.calendar(); c.FullSyncCount != 2 || logs.Count("WARNING", logging.EventFullResync) != 1 {
		t.Fatalf("410 in the cooldown: %d full syncs, %d full_resync lines", c.FullSyncCount, logs.Count("WARNING", logging.EventFullResync))
	}
	// A full_resync request right after: an incremental sync instead.
	e.insert("c")
	notify(messages.StateFullResync)
	e.assertMirror()
	if c := e.calendar(); c.FullSyncCount != 2 || cooldownLines("coalesced") != 1 || cooldownLines("deferred") != 0 {
		t.Fatalf("request in the cooldown: %d full syncs, %d coalesced lines", c.FullSyncCount, cooldownLines("coalesced"))
	}
	offset.Store(int64(22 * time.Minute))
	notify(messages.StateFullResync)
	if c := e.calendar(); c.FullSyncCount != 3 {
		t.Fatalf("request after the cooldown: %d full syncs", c.FullSyncCount)
	}
	// An operator's request (calsync resync --full) right after: full all
	// the same.
	if err := s.HandleNotification(e.ctx, messages.Notification{CalendarKey: e.key, ResourceState: messages.StateFullResync,
		ReceivedAt: now().UTC(), Operator: true}); err != nil {
		t.Fatal(err)
	}
	if c := e.calendar(); c.FullSyncCount != 4 {
		t.Fatalf("operator's request in the cooldown: %d full syncs", c.FullSyncCount)
	}
	// An operator's request that only marks the calendar (another session
	// holds it): the holder's next round is full all the same. The flag
	// alone was coalesced, and the operator's resync was lost.
	other, err := e.st.Admit(e.ctx, e.key, store.Request{ReceivedAt: now().UTC()}, store.Lease{Owner: "other/1", Duration: time.Minute, Now: now}, syncer.Coalesce)
	if err != nil || other.Outcome != store.OutcomeSync {
		t.Fatalf("another session takes the calendar: %v %v", other.Outcome, err)
	}
	if err := s.HandleNotification(e.ctx, messages.Notification{CalendarKey: e.key, ResourceState: messages.StateFullResync,
		ReceivedAt: now().UTC(), Operator: true}); err != nil {
		t.Fatal(err)
	}
	if c := e.calendar(); !c.FullResyncRequested || !c.FullResyncByOperator {
		t.Fatalf("the operator's request under another's lease was not recorded: %+v", c)
	}
	if err := e.st.Release(e.ctx, e.key, other.Lease, true); err != nil {
		t.Fatal(err)
	}
	notify(messages.StateExists)
	if c := e.calendar(); c.FullSyncCount != 5 || c.FullResyncByOperator {
		t.Fatalf("operator's request recorded under another's lease: %d full syncs (want 5), flag left %v", c.FullSyncCount, c.FullResyncByOperator)
	}
}
