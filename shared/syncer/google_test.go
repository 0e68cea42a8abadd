package syncer_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"golang.org/x/oauth2"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/testlog"
)

// Tests of how the syncer meets Google's behaviour in production (issue 14):
// any 410, passing 404s, rate limits, pushes ahead of the listing, calendars
// whose deletions are not reported, error bodies that are not JSON.

// Any 410 on an incremental list means: drop the token, full sync, sweep.
// (A 410 whose reason was not fullSyncRequired used to set not_found.)
func TestAny410MeansFullResync(t *testing.T) {
	for _, reason := range []string{"deleted", "gone", ""} {
		t.Run("reason="+reason, func(t *testing.T) {
			e := newEnv(t)
			s := e.syncer(nil)
			a := e.insert("a")
			e.insert("b")
			e.mustNotify(s, messages.StateSync)
			e.remove(a.Id)
			e.insert("c")
			shape := ""
			if reason == "" {
				shape = "noreason"
			}
			e.srv.AddFault(calendaremu.Fault{Method: "events.list", Count: 1, Code: 410, Reason: reason, Shape: shape})
			e.mustNotify(s, messages.StateExists)
			c := e.calendar()
			if c.Status != store.StatusActive || c.FullSyncCount != 2 {
				t.Fatalf("after a 410 %q: status %s, full syncs %d; want active and a second full sync", reason, c.Status, c.FullSyncCount)
			}
			e.assertMirror()
		})
	}
}

// One 404 does not disable a calendar: Google answers some while a newly
// shared calendar propagates. The streak is counted, a re-probe asked for,
// and a success ends it; only a persistent streak sets not_found.
func TestOne404DoesNotDisable(t *testing.T) {
	e := newEnv(t)
	reqs := &requestLog{}
	s := e.syncer(func(o *syncer.Options) {
		o.Requests = reqs
		o.Lifecycle = &lifecycle.Owner{Store: e.st, Logger: quietLogger(), NotFound: store.NotFoundPolicy{Attempts: 3, After: 300 * time.Millisecond}}
	})
	e.insert("a")
	e.mustNotify(s, messages.StateSync)
	e.srv.FailNext("events.list", 1, 404, "notFound")
	e.insert("b")
	e.mustNotify(s, messages.StateExists)
	c := e.calendar()
	if c.Status != store.StatusActive || c.NotFoundCount != 1 || c.LeaseOwner != "" {
		t.Fatalf("after one 404: status %s, streak %d, lease %q", c.Status, c.NotFoundCount, c.LeaseOwner)
	}
	probe, ok := reqs.take()
	if !ok || probe.NotBefore.IsZero() || probe.CalendarKey != e.key {
		t.Fatalf("want a delayed re-probe request, got %+v %v", probe, ok)
	}
	// The next sync works and ends the streak.
	e.mustNotify(s, messages.StateExists)
	if c := e.calendar(); c.Status != store.StatusActive || c.NotFoundCount != 0 {
		t.Fatalf("after a good sync: %s, streak %d", c.Status, c.NotFoundCount)
	}
	e.assertMirror()

	// A persistent 404: three over at least the policy's span.
	e.srv.FailNext("events.list", 100, 404, "notFound")
	for i := range 3 {
		e.mustNotify(s, messages.StateExists)
		if i < 2 {
			if c := e.calendar(); c.Status != store.StatusActive {
				t.Fatalf("404 #%d: %s already", i+1, c.Status)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if c := e.calendar(); c.Status != store.StatusNotFound || c.NotFoundCount != 3 {
		t.Fatalf("after a persistent 404: %s, streak %d", c.Status, c.NotFoundCount)
	}
}

// Rate limited beyond the retry budget (Google's 403 or 429, or calsync's
// own spent budget): the sync is deferred with a delayed request and the
// message acknowledged, never answered with an error (which Pub/Sub counts
// towards the dead-letter topic).
func TestRateLimitedSyncIsDeferred(t *testing.T) {
	for _, tc := range []struct {
		code   int
		reason string
	}{{403, "rateLimitExceeded"}, {403, "userRateLimitExceeded"}, {429, "rateLimitExceeded"}} {
		t.Run(tc.reason+"/"+string(rune('0'+tc.code/100)), func(t *testing.T) {
			e := newEnv(t)
			reqs := &requestLog{}
			logs := &testlog.Buffer{}
			s := e.syncer(func(o *syncer.Options) {
				o.Requests, o.RetryBudget, o.MaxDefer = reqs, 300*time.Millisecond, 500*time.Millisecond
				o.Logger = logging.New(logs, slog.LevelInfo)
			})
			e.insert("a")
			e.mustNotify(s, messages.StateSync)
			e.insert("b")
			e.srv.FailNext("events.list", 1000, tc.code, tc.reason)
			if err := e.notify(s, messages.StateExists); err != nil {
				t.Fatalf("rate limited: want the message acknowledged (deferred), got %v", err)
			}
			c := e.calendar()
			if !c.Dirty || c.LeaseOwner != "" {
				t.Fatalf("deferred: dirty %v lease %q; want dirty, lease free", c.Dirty, c.LeaseOwner)
			}
			later, ok := reqs.take()
			if !ok || later.Attempt != 1 || !later.NotBefore.After(time.Now()) || later.NotBefore.After(time.Now().Add(2*time.Second)) {
				t.Fatalf("want a delayed request, attempt 1, due within MaxDefer: %+v", later)
			}
			if !hasLine(logs, logging.EventSyncDeferred, e.key) {
				t.Errorf("no sync_deferred line with the calendar key: %v", logs.Lines())
			}
			e.clearFaults()
			wait := time.Until(later.NotBefore)
			start := time.Now()
			if err := s.HandleNotification(e.ctx, later); err != nil {
				t.Fatal(err)
			}
			if time.Since(start) < wait-20*time.Millisecond {
				t.Errorf("the delayed request did not wait for its time (%s)", wait)
			}
			e.assertMirror()
		})
	}
}

// A push may arrive before its change is listed: a push whose incremental
// sync lists nothing gets one delayed follow-up sync, which catches the
// change; the follow-up asks for no other.
func TestPushBeforeVisibleGetsOneFollowUp(t *testing.T) {
	e := newEnv(t)
	reqs := &requestLog{}
	s := e.syncer(func(o *syncer.Options) { o.Requests, o.FollowUpDelay = reqs, 600*time.Millisecond })
	e.insert("a")
	e.mustNotify(s, messages.StateSync)
	e.srv.SetVisibilityDelay(400 * time.Millisecond)
	late := e.insert("late")
	lists := e.lists()
	e.mustNotify(s, messages.StateExists) // the push, ahead of the listing
	if got, _ := e.st.GetEvents(e.ctx, e.key, []string{late.Id}); got[late.Id].Exists {
		t.Fatal("listed before visible: the emulator's delay did not apply")
	}
	follow, ok := reqs.take()
	if !ok || !follow.FollowUp || follow.NotBefore.IsZero() {
		t.Fatalf("want one follow-up request, got %+v %v", follow, ok)
	}
	if err := s.HandleNotification(e.ctx, follow); err != nil {
		t.Fatal(err)
	}
	if n := e.lists() - lists; n != 2 {
		t.Errorf("list calls: %d, want 2 (the push's and the follow-up's)", n)
	}
	e.assertMirror()
	if extra, ok := reqs.take(); ok {
		t.Errorf("the follow-up asked for another: %+v", extra)
	}
	// A push whose sync lists something needs none.
	e.srv.SetVisibilityDelay(0)
	e.insert("b")
	e.mustNotify(s, messages.StateExists)
	if extra, ok := reqs.take(); ok {
		t.Errorf("follow-up after a sync that listed the change: %+v", extra)
	}
}

// A calendar whose deletions Google does not report incrementally (a
// birthday calendar) is polled with full syncs and the sweep: a deletion
// reaches the mirror.
func TestPollFullCalendarSweepsDeletions(t *testing.T) {
	e := newEnv(t)
	if err := e.srv.AddCalendar(calendaremu.CalendarSpec{ID: calendaremu.BirthdaysCalendarID, Kind: calendaremu.KindBirthdays}); err != nil {
		t.Fatal(err)
	}
	e.calID = calendaremu.BirthdaysCalendarID
	key, err := lifecycle.Register(e.ctx, e.st, store.Calendar{CalendarID: e.calID, AuthMode: store.AuthADC})
	if err != nil {
		t.Fatal(err)
	}
	e.key = key
	if _, err := e.st.CalendarRef(key).Update(e.ctx, []firestore.Update{{Path: "pollMode", Value: "full"}}); err != nil {
		t.Fatal(err)
	}
	s := e.syncer(nil)
	a := e.insert("Ann")
	e.insert("Ben")
	e.mustNotify(s, messages.StateReconcile)
	e.remove(a.Id)
	e.mustNotify(s, messages.StateReconcile)
	e.assertMirror()
	if c := e.calendar(); c.FullSyncCount != 2 {
		t.Errorf("full syncs %d, want 2", c.FullSyncCount)
	}
}

// Error bodies Google's front ends send instead of JSON, or JSON without a
// reason: classified by status without a panic, and logged with the
// calendar key and the status.
func TestBadErrorBodies(t *testing.T) {
	e := newEnv(t)
	logs := &testlog.Buffer{}
	s := e.syncer(func(o *syncer.Options) {
		o.RetryBudget = 200 * time.Millisecond
		o.Logger = logging.New(logs, slog.LevelInfo)
	})
	e.insert("a")
	e.mustNotify(s, messages.StateSync)
	for _, tc := range []struct {
		code  int
		shape string
		retry bool // retried in process (so it takes several calls)
	}{
		{502, "html", true}, {503, "malformed", true}, {500, "empty", true}, {403, "noreason", false}, {400, "html", false},
	} {
		e.clearFaults()
		e.srv.AddFault(calendaremu.Fault{Method: "events.list", Count: 1000, Code: tc.code, Shape: tc.shape})
		lists := e.lists()
		logs.Reset()
		err := e.notify(s, messages.StateExists)
		if err == nil {
			t.Errorf("%d %s: acknowledged; want it redelivered", tc.code, tc.shape)
		}
		if n := e.lists() - lists; (n > 1) != tc.retry {
			t.Errorf("%d %s: %d calls; retried: want %v", tc.code, tc.shape, n, tc.retry)
		}
		found := false
		for _, l := range logs.Lines() {
			if l["event"] == logging.EventSyncError && l["calendarKey"] == e.key && l["status"] == float64(tc.code) {
				found = true
			}
		}
		if !found {
			t.Errorf("%d %s: no sync_error line with calendarKey and status: %v", tc.code, tc.shape, logs.Lines())
		}
	}
	e.clearFaults()
	e.mustNotify(s, messages.StateExists)
	e.assertMirror()
}

func hasLine(logs *testlog.Buffer, event, key string) bool {
	for _, l := range logs.Lines() {
		if l["event"] == event && l["calendarKey"] == key {
			return true
		}
	}
	return false
}

// Domain-wide delegation end to end: a suspended subject is a dead grant
// (auth_revoked); a revoked delegation (unauthorized_client) is
// delegation_unauthorized once the grace period is over, and within it the
// sync is deferred (a delayed request). Each message is acknowledged (it
// used to look like a network failure: retried until dead-lettered).
func TestDelegationRefusedIsAuthRevoked(t *testing.T) {
	for _, refuse := range []string{"suspended", "delegation revoked", "fresh delegation"} {
		t.Run(refuse, func(t *testing.T) {
			e := newEnv(t)
			const boss = "boss@corp.test"
			const sa = "calsync-sync@p.iam.gserviceaccount.com"
			if err := e.srv.CreateDomain("corp.test", boss); err != nil { // Google delegates within Workspace domains only
				t.Fatal(err)
			}
			factory := calclient.New(calclient.Options{Endpoint: e.base, DelegationServiceAccount: sa,
				OAuth: &oauth2.Config{Endpoint: oauth2.Endpoint{TokenURL: e.base + "/token"}}})
			key, err := lifecycle.Register(e.ctx, e.st, store.Calendar{CalendarID: boss, AuthMode: store.AuthDelegation, Subject: boss})
			if err != nil {
				t.Fatal(err)
			}
			reqs := &requestLog{}
			grace := time.Duration(-1) // none: the delegation is old
			if refuse == "fresh delegation" {
				grace = 0 // the default 24 h: the calendar was enrolled a moment ago
			}
			opts := func(o *syncer.Options) {
				o.Requests = reqs
				o.Lifecycle = &lifecycle.Owner{Store: e.st, Logger: o.Logger, DelegationGrace: grace}
			}
			s := e.syncer(func(o *syncer.Options) { o.Services = factory; opts(o) })
			n := messages.Notification{CalendarKey: key, ResourceState: messages.StateSync, ReceivedAt: time.Now().UTC()}
			if err := s.HandleNotification(e.ctx, n); err != nil {
				t.Fatalf("first sync as the subject: %v", err)
			}
			want := store.StatusDelegationUnauthorized
			if refuse == "suspended" {
				e.srv.SuspendAccount(boss) // its issued tokens stop working too
				want = store.StatusAuthRevoked
			} else {
				// Tokens already issued live on until they expire: a new
				// instance (no cached token) meets the refusal.
				e.srv.RevokeDelegation(sa)
				s = e.syncer(func(o *syncer.Options) {
					o.Services = calclient.New(calclient.Options{Endpoint: e.base, DelegationServiceAccount: sa,
						OAuth: &oauth2.Config{Endpoint: oauth2.Endpoint{TokenURL: e.base + "/token"}}})
					opts(o)
				})
			}
			if refuse == "fresh delegation" {
				want = store.StatusActive
			}
			reqs.msgs = nil // only what the refusal asks for
			n.ResourceState, n.ReceivedAt = messages.StateExists, time.Now().UTC()
			if err := s.HandleNotification(e.ctx, n); err != nil {
				t.Fatalf("%s: want the message acknowledged, got %v", refuse, err)
			}
			if c, _ := e.st.GetCalendar(e.ctx, key); c.Status != want {
				t.Fatalf("%s: status %s, want %s", refuse, c.Status, want)
			}
			deferred, ok := reqs.take()
			if got := ok && deferred.CalendarKey == key && deferred.NotBefore.After(time.Now()); got != (refuse == "fresh delegation") {
				t.Errorf("%s: deferred sync asked for: %v (%+v)", refuse, got, deferred)
			}
		})
	}
}

// An API not enabled in the project (403 accessNotConfigured /
// SERVICE_DISABLED) makes the calendar api_disabled, and the message is
// acknowledged: no redelivery, no dead letter.
func TestAPIDisabledIsAStatus(t *testing.T) {
	e := newEnv(t)
	s := e.syncer(nil)
	e.mustNotify(s, messages.StateSync)
	if err := e.srv.DisableAPI(calendaremu.ServiceCalendar, true); err != nil {
		t.Fatal(err)
	}
	n := messages.Notification{CalendarKey: e.key, ResourceState: messages.StateExists, ReceivedAt: time.Now().UTC()}
	if err := s.HandleNotification(e.ctx, n); err != nil {
		t.Fatalf("want the message acknowledged, got %v", err)
	}
	if c, _ := e.st.GetCalendar(e.ctx, e.key); c.Status != store.StatusAPIDisabled {
		t.Fatalf("status %q, want %s", c.Status, store.StatusAPIDisabled)
	}
}

// failingRequests is a request publisher whose publishes all fail.
type failingRequests struct{}

func (failingRequests) Publish(context.Context, []byte, map[string]string, string) error {
	return errors.New("pubsub unavailable")
}

// A push whose sync lists nothing, and whose follow-up cannot be asked for:
// not acknowledged, and the calendar left dirty, so that the redelivery
// syncs (a completed round covers the message: a clean calendar would drop
// it) and lists the late change. Acknowledged, the change waited for the
// reconcile.
func TestFollowUpNotAskedIsRedelivered(t *testing.T) {
	e := newEnv(t)
	s := e.syncer(func(o *syncer.Options) { o.Requests, o.FollowUpDelay = failingRequests{}, 600*time.Millisecond })
	e.insert("a")
	e.mustNotify(s, messages.StateSync)
	const visible = 3 * time.Second // long enough for a loaded machine's push sync
	e.srv.SetVisibilityDelay(visible)
	late := e.insert("late")
	push := messages.Notification{CalendarKey: e.key, ResourceState: messages.StateExists, ReceivedAt: time.Now().UTC(), MessageID: "m1"}
	err := s.HandleNotification(e.ctx, push)
	if got, _ := e.st.GetEvents(e.ctx, e.key, []string{late.Id}); got[late.Id].Exists {
		t.Fatal("listed before visible: the emulator's delay did not apply")
	}
	if err == nil {
		t.Fatal("acknowledged although the follow-up could not be asked for")
	}
	if c := e.calendar(); !c.Dirty {
		t.Fatal("the calendar was not left dirty: the redelivery would be dropped as covered")
	}
	time.Sleep(visible) // Pub/Sub's redelivery backoff
	if err := s.HandleNotification(e.ctx, push); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.st.GetEvents(e.ctx, e.key, []string{late.Id}); !got[late.Id].Exists {
		t.Fatal("the redelivery did not sync the late change")
	}
	e.assertMirror()
}
