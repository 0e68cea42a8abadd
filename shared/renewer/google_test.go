package renewer

import (
	"context"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
)

// Google's behaviour in production that RenewChannels meets (issue 14).

// One 404 from events.watch (a calendar just shared, still propagating)
// does not disable the calendar: the next run gives it its channel.
func TestOne404OnWatch(t *testing.T) {
	e := newEnv(t, calendaremu.Options{})
	r := e.renewer(nil)
	id := e.newCalendar("just shared")
	key := e.register(store.Calendar{CalendarID: id, AuthMode: store.AuthADC}, time.Now())
	e.emu.AddFault(calendaremu.Fault{Method: "events.watch", Count: 1, Code: 404, Reason: "notFound"})
	if _, err := r.Run(e.ctx); err != nil {
		t.Fatal(err)
	}
	if c, _ := e.st.GetCalendar(e.ctx, key); c.Status != store.StatusActive {
		t.Fatalf("one 404 on watch: status %s, want active", c.Status)
	}
	if sum, _ := r.Run(e.ctx); sum.Created != 1 {
		t.Fatalf("second run: %+v", sum)
	}
	if len(e.live()[id]) != 1 {
		t.Errorf("live channels %v", e.live())
	}
}

// A not_found calendar is tried again daily and comes back by itself.
func TestNotFoundReprobedDaily(t *testing.T) {
	e := newEnv(t, calendaremu.Options{})
	r := e.renewer(func(c *config.RenewChannels) { c.NotFoundReprobe = 24 * time.Hour })
	id := e.newCalendar("back again")
	gone := e.register(store.Calendar{CalendarID: "still-gone@x.test", AuthMode: store.AuthADC}, time.Now())
	key := e.register(store.Calendar{CalendarID: id, AuthMode: store.AuthADC}, time.Now())
	dayAgo := time.Now().Add(-25 * time.Hour)
	for _, k := range []string{key, gone} {
		if _, err := e.st.CalendarRef(k).Update(e.ctx, []firestore.Update{{Path: "status", Value: store.StatusNotFound},
			{Path: "lastProbeAt", Value: dayAgo}}); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := r.Run(e.ctx)
	if err != nil || sum.Probed != 2 || sum.Reactivated != 1 || sum.Created != 1 {
		t.Fatalf("summary %+v %v", sum, err)
	}
	if c, _ := e.st.GetCalendar(e.ctx, key); c.Status != store.StatusActive {
		t.Errorf("found again: %s", c.Status)
	}
	c, _ := e.st.GetCalendar(e.ctx, gone)
	if c.Status != store.StatusNotFound || time.Since(c.LastProbeAt) > time.Minute {
		t.Errorf("still gone: %s, last probe %v", c.Status, c.LastProbeAt)
	}
	if got := e.received(10*time.Second, 1); len(got) < 1 || got[0].CalendarKey != key {
		t.Errorf("no sync asked for the calendar back: %+v", got)
	}
	// Probed a moment ago: not again until a day has passed.
	if sum, _ := r.Run(e.ctx); sum.Probed != 0 {
		t.Errorf("probed again at once: %+v", sum)
	}
}

// Calendars Google will not watch: a holiday calendar (watch answers 400
// pushNotSupportedForRequestedResource) and a birthday calendar (deletions
// not reported) get no channel, no failure, and syncs on POLL_INTERVAL.
func TestUnwatchableCalendarsArePolled(t *testing.T) {
	e := newEnv(t, calendaremu.Options{})
	r := e.renewer(func(c *config.RenewChannels) { c.PollInterval, c.PollMinInterval = time.Minute, time.Minute })
	const holiday = "en.usa#holiday@group.v.calendar.google.com"
	if err := e.emu.AddCalendar(calendaremu.CalendarSpec{ID: holiday, Kind: calendaremu.KindHoliday}); err != nil {
		t.Fatal(err)
	}
	if err := e.emu.AddCalendar(calendaremu.CalendarSpec{ID: calendaremu.BirthdaysCalendarID, Kind: calendaremu.KindBirthdays}); err != nil {
		t.Fatal(err)
	}
	hk := e.register(store.Calendar{CalendarID: holiday, AuthMode: store.AuthADC}, time.Now())
	bk := e.register(store.Calendar{CalendarID: calendaremu.BirthdaysCalendarID, AuthMode: store.AuthADC}, time.Now())
	sum, err := r.Run(e.ctx)
	if err != nil || sum.Failed != 0 || sum.PollOnly != 2 || sum.Created != 0 || sum.Reconciles != 2 {
		t.Fatalf("first run: %+v %v", sum, err)
	}
	h, _ := e.st.GetCalendar(e.ctx, hk)
	b, _ := e.st.GetCalendar(e.ctx, bk)
	if h.Status != store.StatusActive || h.PollMode != store.PollIncremental || b.PollMode != store.PollFull {
		t.Fatalf("poll modes: holiday %s %q, birthdays %q", h.Status, h.PollMode, b.PollMode)
	}
	if got := e.received(10*time.Second, 2); len(got) != 2 {
		t.Fatalf("first syncs asked: %+v", got)
	}
	watches := e.emu.Stats().Requests["events.watch"]
	if watches != 1 {
		t.Errorf("events.watch calls %d, want 1 (the holiday calendar's refused one)", watches)
	}
	// Later runs neither watch nor fail; they poll when due.
	if sum, _ := r.Run(e.ctx); sum.Failed != 0 || sum.Polls != 0 || e.emu.Stats().Requests["events.watch"] != watches {
		t.Errorf("second run: %+v, watches %d", sum, e.emu.Stats().Requests["events.watch"])
	}
	old := time.Now().Add(-2 * time.Minute)
	for _, k := range []string{hk, bk} {
		if _, err := e.st.CalendarRef(k).Update(e.ctx, []firestore.Update{{Path: "lastSyncedAt", Value: old}}); err != nil {
			t.Fatal(err)
		}
	}
	psum, err := r.Poll(e.ctx)
	if err != nil || psum.Polls != 2 || psum.PollOnly != 2 {
		t.Fatalf("poll run: %+v %v", psum, err)
	}
	got := e.received(10*time.Second, 2)
	if len(got) != 2 || got[0].ResourceState != messages.StateReconcile {
		t.Errorf("poll requests: %+v", got)
	}
}

// The poll cost guard: poll runs every minute, but one poll-only calendar is
// synced at most once per POLL_MIN_INTERVAL (1h by default), counted from
// its last sync's start too (a sync that keeps failing is not asked for at
// every run); the poll_run line counts those held back.
func TestPollMinInterval(t *testing.T) {
	e := newEnv(t, calendaremu.Options{})
	r := e.renewer(func(c *config.RenewChannels) { c.PollInterval = time.Minute })
	now := time.Now()
	mk := func(id string, synced, started time.Time) string {
		k := e.register(store.Calendar{CalendarID: id, AuthMode: store.AuthADC}, synced)
		if _, err := e.st.CalendarRef(k).Update(e.ctx, []firestore.Update{{Path: "pollMode", Value: store.PollIncremental},
			{Path: "lastSyncedAt", Value: synced}, {Path: "lastSyncStartedAt", Value: started}}); err != nil {
			t.Fatal(err)
		}
		return k
	}
	mk("recent@group.v.calendar.google.com", now.Add(-10*time.Minute), now.Add(-10*time.Minute))
	mk("failing@group.v.calendar.google.com", now.Add(-5*time.Hour), now.Add(-3*time.Minute))
	due := mk("due@group.v.calendar.google.com", now.Add(-2*time.Hour), now.Add(-2*time.Hour))
	psum, err := r.Poll(e.ctx)
	if err != nil || psum.PollOnly != 3 || psum.Polls != 1 || psum.PollsDeferred != 2 {
		t.Fatalf("poll run: %+v %v", psum, err)
	}
	if got := e.received(10*time.Second, 1); len(got) != 1 || got[0].CalendarKey != due {
		t.Fatalf("poll requests: %+v", got)
	}
	var line map[string]any
	for _, l := range e.logs.Lines() {
		if l["event"] == "poll_run" {
			line = l
		}
	}
	if line["pollsDeferred"] != 2.0 {
		t.Fatalf("poll_run line %v", line)
	}
	// The hourly run holds them back too (the due one has not synced yet).
	if sum, _ := r.Run(e.ctx); sum.Polls != 1 {
		t.Fatalf("renew run polled: %+v", sum)
	}
}

// Channel ids are unique per project and deployment, and never repeat: two
// deployments in one project watching the same calendar, or a deployment
// whose Firestore was emptied while its old channels live, make new ids
// (Google answers a live id 400 channelIdNotUnique).
func TestChannelIDsUniqueAcrossDeployments(t *testing.T) {
	e := newEnv(t, calendaremu.Options{})
	id := e.newCalendar("shared by two deployments")
	e.register(store.Calendar{CalendarID: id, AuthMode: store.AuthADC}, time.Now())
	if sum, _ := e.renewer(nil).Run(e.ctx); sum.Created != 1 {
		t.Fatalf("deployment a: %+v", sum)
	}
	// Another deployment (its own Firestore database) in the same project.
	other := e.otherDatabase("b")
	other.register(store.Calendar{CalendarID: id, AuthMode: store.AuthADC}, time.Now())
	if sum, _ := other.renewer(func(c *config.RenewChannels) { c.Deployment = "calsync-b" }).Run(e.ctx); sum.Created != 1 || sum.Failed != 0 {
		t.Fatalf("deployment b: %+v", sum)
	}
	// Deployment a again, with an empty database: its old channel lives on.
	fresh := e.otherDatabase("a2")
	fresh.register(store.Calendar{CalendarID: id, AuthMode: store.AuthADC}, time.Now())
	if sum, _ := fresh.renewer(nil).Run(e.ctx); sum.Created != 1 || sum.Failed != 0 {
		t.Fatalf("deployment a, fresh database: %+v", sum)
	}
	if n := len(e.live()[id]); n != 3 {
		t.Errorf("live channels %d, want 3 distinct", n)
	}
}

// otherDatabase is e on another Firestore database (a project id of its
// own at the emulator) with the same Calendar emulator and Pub/Sub.
func (e *env) otherDatabase(suffix string) *env {
	e.t.Helper()
	fs, err := firestore.NewClient(context.Background(), e.project+"-"+suffix)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { fs.Close() })
	o := *e
	o.fs, o.st = fs, store.New(fs)
	return &o
}
