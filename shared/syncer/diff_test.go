package syncer_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
	"github.com/calsync/calsync/shared/testing/syncertest"
)

func (e *env) lastChange(id string) messages.Change {
	e.t.Helper()
	cs := e.rec.Changes()
	for i := len(cs) - 1; i >= 0; i-- {
		if cs[i].EventID == id {
			return cs[i]
		}
	}
	e.t.Fatalf("no change message for %s", id)
	return messages.Change{}
}

// An updated event's change message says which fields changed and what the
// asked-about ones were.
func TestChangedFieldsAndPreviousValues(t *testing.T) {
	e := newEnv(t)
	s := e.syncer(nil)
	ev, err := e.svc.Events.Insert(e.calID, &calendar.Event{Summary: "Standup", Location: "Room 1",
		Start:              &calendar.EventDateTime{DateTime: "2026-12-01T10:00:00Z"},
		End:                &calendar.EventDateTime{DateTime: "2026-12-01T10:15:00Z"},
		Attendees:          []*calendar.EventAttendee{{Email: "ann@x.test"}, {Email: "bob@x.test", ResponseStatus: "tentative"}},
		ExtendedProperties: &calendar.EventExtendedProperties{Private: map[string]string{"k": "v"}},
	}).Context(e.ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	e.mustNotify(s, messages.StateSync)
	if c := e.lastChange(ev.Id); c.Change != messages.ChangeCreated || c.ChangedFields != nil || c.Previous != nil {
		t.Fatalf("created: %+v", c)
	}
	// Moved, renamed, ann accepted, carol invited, bob removed, a description added.
	up, err := e.svc.Events.Patch(e.calID, ev.Id, &calendar.Event{Summary: "Daily standup", Description: "notes",
		Start:     &calendar.EventDateTime{DateTime: "2026-12-01T11:00:00Z"},
		End:       &calendar.EventDateTime{DateTime: "2026-12-01T11:15:00Z"},
		Attendees: []*calendar.EventAttendee{{Email: "ann@x.test", ResponseStatus: "accepted"}, {Email: "carol@x.test"}},
	}).Context(e.ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	e.mustNotify(s, messages.StateExists)
	c := e.lastChange(ev.Id)
	if c.Change != messages.ChangeUpdated || c.Etag != up.Etag {
		t.Fatalf("update: %+v", c)
	}
	want := []string{"attendees", "description", "end", "etag", "sequence", "start", "summary", "updated"}
	if !slices.Equal(c.ChangedFields, want) {
		t.Fatalf("changedFields %v, want %v", c.ChangedFields, want)
	}
	p := c.Previous
	if p == nil || p.Summary != "Standup" || p.Location != "" || p.Status != "" || p.Incomplete {
		t.Fatalf("previous %+v", p)
	}
	var start calendar.EventDateTime
	if err := json.Unmarshal(p.Start, &start); err != nil || start.DateTime != "2026-12-01T10:00:00Z" || !strings.Contains(string(p.End), "10:15:00Z") {
		t.Fatalf("previous start %s end %s (%v)", p.Start, p.End, err)
	}
	if wantR := map[string]string{"ann@x.test": "needsAction", "bob@x.test": "tentative", "carol@x.test": ""}; len(p.AttendeeResponses) != 3 ||
		p.AttendeeResponses["ann@x.test"] != wantR["ann@x.test"] || p.AttendeeResponses["bob@x.test"] != wantR["bob@x.test"] ||
		p.AttendeeResponses["carol@x.test"] != "" {
		t.Fatalf("attendee responses %v, want %v", p.AttendeeResponses, wantR)
	}
	// The location cleared: changed, previous value given; unchanged start absent.
	cleared := &calendar.Event{NullFields: []string{"Location"}}
	if _, err := e.svc.Events.Patch(e.calID, ev.Id, cleared).Context(e.ctx).Do(); err != nil {
		t.Fatal(err)
	}
	e.mustNotify(s, messages.StateExists)
	c = e.lastChange(ev.Id)
	if !slices.Equal(c.ChangedFields, []string{"etag", "location", "updated"}) || c.Previous == nil ||
		c.Previous.Location != "Room 1" || c.Previous.Start != nil || c.Previous.Summary != "" {
		t.Fatalf("location cleared: %v %+v", c.ChangedFields, c.Previous)
	}
	// Cancelled: a deletion, no diff.
	e.remove(ev.Id)
	e.mustNotify(s, messages.StateExists)
	if c := e.lastChange(ev.Id); c.Change != messages.ChangeDeleted || c.ChangedFields != nil {
		t.Fatalf("deleted: %+v", c)
	}
	e.assertMirror()
}

// A cancelled occurrence of a recurring event is announced as "cancelled",
// never as an "updated" event without a summary; restoring one is "updated".
func TestCancelledOccurrence(t *testing.T) {
	e := newEnv(t)
	s := e.syncer(nil)
	series, err := e.svc.Events.Insert(e.calID, &calendar.Event{Summary: "Weekly",
		Start:      &calendar.EventDateTime{DateTime: "2026-12-07T09:00:00Z", TimeZone: "UTC"},
		End:        &calendar.EventDateTime{DateTime: "2026-12-07T10:00:00Z", TimeZone: "UTC"},
		Recurrence: []string{"RRULE:FREQ=WEEKLY;COUNT=6"}}).Context(e.ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	e.mustNotify(s, messages.StateSync)
	inst, err := e.svc.Events.Instances(e.calID, series.Id).Context(e.ctx).Do()
	if err != nil || len(inst.Items) < 3 {
		t.Fatalf("instances: %v", err)
	}
	// One occurrence cancelled outright.
	e.remove(inst.Items[1].Id)
	e.mustNotify(s, messages.StateExists)
	c := e.lastChange(inst.Items[1].Id)
	if c.Change != messages.ChangeCancelled {
		t.Fatalf("cancelled occurrence announced as %q", c.Change)
	}
	var body calendar.Event
	if err := json.Unmarshal(c.Event, &body); err != nil || body.RecurringEventId != series.Id || body.Status != "cancelled" {
		t.Fatalf("cancelled occurrence's event: %s %v", c.Event, err)
	}
	// Another one first edited (an exception: created), then cancelled.
	edited := inst.Items[2]
	edited.Summary = "Weekly (moved)"
	if _, err := e.svc.Events.Update(e.calID, edited.Id, edited).Context(e.ctx).Do(); err != nil {
		t.Fatal(err)
	}
	e.mustNotify(s, messages.StateExists)
	if c := e.lastChange(edited.Id); c.Change != messages.ChangeCreated {
		t.Fatalf("edited occurrence: %q", c.Change)
	}
	e.remove(edited.Id)
	e.mustNotify(s, messages.StateExists)
	if c := e.lastChange(edited.Id); c.Change != messages.ChangeCancelled || c.PreviousEtag == "" || c.ChangedFields != nil {
		t.Fatalf("edited then cancelled: %+v", c)
	}
	for _, c := range e.rec.Changes() {
		if c.Change == messages.ChangeUpdated && strings.Contains(string(c.Event), `"cancelled"`) {
			t.Fatalf("a cancellation announced as updated: %s", c.Event)
		}
	}
	e.assertMirror()
	// The whole series deleted: its exceptions leave with it ("deleted").
	e.remove(series.Id)
	e.mustNotify(s, messages.StateExists)
	if c := e.lastChange(inst.Items[1].Id); c.Change != messages.ChangeDeleted {
		t.Fatalf("series deleted, its cancelled occurrence: %q", c.Change)
	}
	e.assertMirror()
}

// A purge deletes an unenrolled calendar's mirror, announcing each event,
// and drops its token; an active calendar is never purged.
func TestPurgeUnenrolledMirror(t *testing.T) {
	e := newEnv(t)
	s := e.syncer(nil)
	for i := range 30 {
		e.insert("event " + string(rune('a'+i%26)))
	}
	e.mustNotify(s, messages.StateSync)
	if c := e.calendar(); c.EventCount != 30 {
		t.Fatalf("eventCount %d", c.EventCount)
	}
	e.rec.Reset()
	e.mustNotify(s, messages.StatePurge) // active: refused
	if n, _ := countDocs(e); n != 30 || len(e.rec.Changes()) != 0 {
		t.Fatalf("purge of an active calendar: %d documents left, %d changes", n, len(e.rec.Changes()))
	}
	// Still followed, with a problem: refused too (only unenrolling gives a
	// mirror up, and any publisher of the notifications topic may ask).
	for _, status := range []string{store.StatusNotFound, store.StatusAuthRevoked} {
		if err := e.st.SetStatus(e.ctx, e.key, status, "test", ""); err != nil {
			t.Fatal(err)
		}
		e.mustNotify(s, messages.StatePurge)
		if n, _ := countDocs(e); n != 30 || len(e.rec.Changes()) != 0 {
			t.Fatalf("purge of a %s calendar: %d documents left, %d changes", status, n, len(e.rec.Changes()))
		}
	}
	if err := e.st.SetStatus(e.ctx, e.key, store.StatusUnwatched, "unenrolled", ""); err != nil {
		t.Fatal(err)
	}
	e.mustNotify(s, messages.StatePurge)
	if n, _ := countDocs(e); n != 0 {
		t.Fatalf("%d documents left after the purge", n)
	}
	e.wantCounts(0, 0, 30)
	c := e.calendar()
	if c.SyncToken != "" || c.EventCount != 0 || c.Status != store.StatusUnwatched || c.LeaseOwner != "" {
		t.Fatalf("calendar after the purge: %+v", c)
	}
	// Replaying the whole feed gives the (empty) mirror.
	if replay := len(syncertest.Replay(e.rec.All())); replay != 0 {
		t.Fatalf("replaying the feed leaves %d events", replay)
	}
	// Enrolled again: a full sync brings everything back.
	if _, err := lifecycle.Register(e.ctx, e.st, store.Calendar{CalendarID: e.calID, AuthMode: store.AuthADC}); err != nil {
		t.Fatal(err)
	}
	e.mustNotify(s, messages.StateReconcile)
	e.assertMirror()
}

func countDocs(e *env) (int, error) {
	n := 0
	err := e.st.ForEachEvent(e.ctx, e.key, func(string, string) error { n++; return nil })
	return n, err
}

// Diffs cost no Firestore read: the same changes synced with and without
// them read exactly the same documents.
func TestDiffsCostNoRead(t *testing.T) {
	var reads [2]int64
	for i, noDiffs := range []bool{false, true} {
		e := newEnv(t)
		e.seed(200)
		c := &opCounter{}
		st := store.New(interceptedStreams(t, e.ctx, e.project, c.around, c.stream))
		s := e.syncer(func(o *syncer.Options) { o.Store = st; o.NoDiffs = noDiffs })
		e.mustNotify(s, messages.StateSync)
		ids := e.eventIDs(100)
		c.reset()
		for _, id := range ids {
			e.update(id, "changed at "+time.Now().Format(time.RFC3339Nano))
		}
		e.mustNotify(s, messages.StateExists)
		_, reads[i], _ = c.reset()
		withDiff := 0
		for _, ch := range e.rec.Changes() {
			if ch.Change == messages.ChangeUpdated && slices.Contains(ch.ChangedFields, "summary") {
				withDiff++
			}
		}
		if want := map[bool]int{false: 100, true: 0}[noDiffs]; withDiff != want {
			t.Fatalf("noDiffs=%v: %d updated messages with a diff, want %d", noDiffs, withDiff, want)
		}
	}
	if reads[0] != reads[1] || reads[0] == 0 {
		t.Fatalf("document reads with diffs %d, without %d: want equal", reads[0], reads[1])
	}
}
