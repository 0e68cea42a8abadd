package syncer

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
)

// Unit tests of the round's pure core (plan.go): no emulator, the inputs
// are what GetAll would have read.

var planAt = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

var planCtx = planContext{key: "k1", calendarID: "cal@example.com", syncedAt: planAt, announce: true}

// event is version v of event id: etag, updated and the summary follow v.
func event(id string, v int, mods ...func(*calendar.Event)) *calendar.Event {
	ev := &calendar.Event{Id: id, Etag: fmt.Sprintf(`"%d"`, 1000+v), Status: "confirmed",
		Updated: planAt.Add(time.Duration(v) * time.Minute).Format(time.RFC3339Nano), Summary: fmt.Sprintf("%s v%d", id, v),
		Start: &calendar.EventDateTime{DateTime: "2026-12-07T09:00:00Z"}, End: &calendar.EventDateTime{DateTime: "2026-12-07T10:00:00Z"}}
	for _, m := range mods {
		m(ev)
	}
	return ev
}

func cancelled(ev *calendar.Event) { ev.Status, ev.Summary = "cancelled", "" }
func weekly(ev *calendar.Event)    { ev.Recurrence = []string{"RRULE:FREQ=WEEKLY"} }
func exceptionOf(master string) func(*calendar.Event) {
	return func(ev *calendar.Event) {
		ev.RecurringEventId = master
		ev.OriginalStartTime = &calendar.EventDateTime{DateTime: "2026-12-14T09:00:00Z"}
	}
}
func moved(room string) func(*calendar.Event) { return func(ev *calendar.Event) { ev.Location = room } }

// inMirror is the mirror's version of ev, as GetEventsKeeping reads it (with its
// document: the previous version a diff compares with).
func inMirror(t *testing.T, ev *calendar.Event) store.EventMeta {
	t.Helper()
	doc, err := store.EventDoc(ev, nil, planAt.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return store.EventMeta{ID: ev.Id, Exists: true, Etag: ev.Etag, Updated: ev.Updated, Sequence: ev.Sequence, Status: ev.Status,
		RecurringEventID: ev.RecurringEventId, Series: len(ev.Recurrence) > 0, UpdateTime: planAt.Add(-time.Hour), Doc: doc}
}

func mirror(ms ...store.EventMeta) map[string]store.EventMeta {
	out := map[string]store.EventMeta{}
	for _, m := range ms {
		out[m.ID] = m
	}
	return out
}

// outcome is a plan in short: writes as "id set+1" / "id set" / "id del-1",
// messages as "id kind", and the announced-created ids.
type outcome struct {
	writes, messages, created []string
	written, deleted          int
	unchanged, stale          int
}

func summarize(t *testing.T, p plan) (outcome, map[string]messages.Change) {
	t.Helper()
	var o outcome
	for _, w := range p.writes {
		op := "set"
		if w.Doc == nil {
			op = "del"
		}
		if w.Delta != 0 {
			op += fmt.Sprintf("%+d", w.Delta)
		}
		o.writes = append(o.writes, w.ID+" "+op)
	}
	changes := map[string]messages.Change{}
	for _, m := range p.messages {
		var c messages.Change
		if err := json.Unmarshal(m.Data, &c); err != nil {
			t.Fatal(err)
		}
		if c.CalendarKey != planCtx.key || c.CalendarID != planCtx.calendarID || !c.SyncedAt.Equal(planAt) ||
			m.Attributes["eventId"] != c.EventID || m.Attributes["change"] != c.Change {
			t.Errorf("message of %s: %+v %v", c.EventID, c, m.Attributes)
		}
		o.messages = append(o.messages, c.EventID+" "+c.Change)
		changes[c.EventID] = c
	}
	o.created = p.created
	o.written, o.deleted, o.unchanged, o.stale = p.written, p.deleted, p.unchanged, p.stale
	if p.changes != len(p.messages) {
		t.Errorf("tally says %d changes, plan has %d messages", p.changes, len(p.messages))
	}
	return o, changes
}

func TestPlanPage(t *testing.T) {
	master := event("m", 1, weekly)
	for _, tc := range []struct {
		name       string
		items      []*calendar.Event
		stored     []*calendar.Event
		series     map[string]bool
		exceptions map[string][]*calendar.Event
		full       bool
		quiet      bool // no publisher
		want       outcome
		orphans    []string
		missing    []string
		check      func(t *testing.T, c map[string]messages.Change)
	}{{
		name:  "creation",
		items: []*calendar.Event{event("a", 1)},
		want:  outcome{writes: []string{"a set+1"}, messages: []string{"a created"}, created: []string{"a"}, written: 1},
		check: func(t *testing.T, c map[string]messages.Change) {
			if c["a"].Etag != `"1001"` || c["a"].PreviousEtag != "" || c["a"].ChangedFields != nil || !strings.Contains(string(c["a"].Event), `"a v1"`) {
				t.Errorf("created: %+v", c["a"])
			}
		},
	}, {
		name:   "update with changed fields and previous values",
		items:  []*calendar.Event{event("a", 2, moved("Room 2"))},
		stored: []*calendar.Event{event("a", 1, moved("Room 1"))},
		want:   outcome{writes: []string{"a set"}, messages: []string{"a updated"}, written: 1},
		check: func(t *testing.T, c map[string]messages.Change) {
			u := c["a"]
			if u.PreviousEtag != `"1001"` || u.Etag != `"1002"` ||
				!slices.Equal(u.ChangedFields, []string{"etag", "location", "summary", "updated"}) ||
				u.Previous == nil || u.Previous.Location != "Room 1" || u.Previous.Summary != "a v1" {
				t.Errorf("updated: %+v %+v", u, u.Previous)
			}
		},
	}, {
		name:   "deletion",
		items:  []*calendar.Event{event("a", 2, cancelled)},
		stored: []*calendar.Event{event("a", 1)},
		want:   outcome{writes: []string{"a del-1"}, messages: []string{"a deleted"}, deleted: 1},
		check: func(t *testing.T, c map[string]messages.Change) {
			if d := c["a"]; d.PreviousEtag != `"1001"` || d.Etag != `"1002"` || d.ChangedFields != nil {
				t.Errorf("deleted: %+v", d)
			}
		},
	}, {
		name:  "tombstone of an event the mirror never held",
		items: []*calendar.Event{event("a", 2, cancelled)},
	}, {
		name:  "created and deleted within the page",
		items: []*calendar.Event{event("a", 1), event("a", 2, cancelled)},
	}, {
		name:   "older version arriving: never backwards",
		items:  []*calendar.Event{event("a", 1, moved("Room 1"))},
		stored: []*calendar.Event{event("a", 2, moved("Room 2"))},
		want:   outcome{stale: 1},
	}, {
		name:   "older tombstone: the newer stored version stays",
		items:  []*calendar.Event{event("a", 1, cancelled)},
		stored: []*calendar.Event{event("a", 2)},
		want:   outcome{stale: 1},
	}, {
		name:   "the stored version again: no write, no message",
		items:  []*calendar.Event{event("a", 3)},
		stored: []*calendar.Event{event("a", 3)},
		want:   outcome{unchanged: 1},
	}, {
		name:  "two versions in one page: the newer wins, the older is stale",
		items: []*calendar.Event{event("a", 2), event("a", 1)},
		want:  outcome{writes: []string{"a set+1"}, messages: []string{"a created"}, created: []string{"a"}, written: 1, stale: 1},
		check: func(t *testing.T, c map[string]messages.Change) {
			if c["a"].Etag != `"1002"` {
				t.Errorf("not the newer version: %+v", c["a"])
			}
		},
	}, {
		name:   "a cancelled occurrence of a live series: cancelled, announced as new",
		items:  []*calendar.Event{event("x1", 1, exceptionOf("m"), cancelled)},
		stored: []*calendar.Event{master},
		want:   outcome{writes: []string{"x1 set+1"}, messages: []string{"x1 cancelled"}, created: []string{"x1"}, written: 1},
	}, {
		name:   "a moved occurrence, then cancelled: cancelled, no diff",
		items:  []*calendar.Event{event("x1", 2, exceptionOf("m"), cancelled)},
		stored: []*calendar.Event{master, event("x1", 1, exceptionOf("m"), moved("Room 9"))},
		want:   outcome{writes: []string{"x1 set"}, messages: []string{"x1 cancelled"}, written: 1},
		check: func(t *testing.T, c map[string]messages.Change) {
			if c["x1"].ChangedFields != nil || c["x1"].Previous != nil {
				t.Errorf("a cancelled occurrence carries a diff: %+v", c["x1"])
			}
		},
	}, {
		name:   "a cancelled occurrence of a series this round listed live (full listing)",
		items:  []*calendar.Event{event("x1", 1, exceptionOf("m"), cancelled)},
		series: map[string]bool{"m": true},
		full:   true,
		want:   outcome{writes: []string{"x1 set+1"}, messages: []string{"x1 cancelled"}, created: []string{"x1"}, written: 1},
	}, {
		name:    "a cancelled occurrence of a series not seen yet: held as an orphan",
		items:   []*calendar.Event{event("x1", 1, exceptionOf("m"), cancelled)},
		stored:  []*calendar.Event{master},
		full:    true, // the mirror may be stale: only the listing counts
		orphans: []string{"x1"},
	}, {
		name:   "a cancelled occurrence of a deleted series: removed",
		items:  []*calendar.Event{event("x1", 2, exceptionOf("m"), cancelled)},
		stored: []*calendar.Event{event("x1", 1, exceptionOf("m"))},
		series: map[string]bool{"m": false},
		want:   outcome{writes: []string{"x1 del-1"}, messages: []string{"x1 deleted"}, deleted: 1},
	}, {
		name:    "a deleted series: its stored exceptions are asked for",
		items:   []*calendar.Event{event("m", 2, weekly, cancelled)},
		stored:  []*calendar.Event{master},
		missing: []string{"m"},
	}, {
		name:       "a deleted series with its stored exceptions: all deleted",
		items:      []*calendar.Event{event("x2", 1, exceptionOf("m")), event("m", 2, weekly, cancelled)},
		stored:     []*calendar.Event{master, event("x1", 1, exceptionOf("m"))},
		exceptions: map[string][]*calendar.Event{"m": {event("x1", 1, exceptionOf("m")), event("x3", 1, exceptionOf("m"))}},
		want: outcome{writes: []string{"m del-1", "x1 del-1", "x3 del-1"}, messages: []string{"m deleted", "x1 deleted", "x3 deleted"},
			deleted: 3},
		check: func(t *testing.T, c map[string]messages.Change) {
			if !strings.Contains(string(c["x3"].Event), `"status":"cancelled"`) || c["x3"].PreviousEtag != `"1001"` {
				t.Errorf("an exception removed with its series: %+v", c["x3"])
			}
		},
	}, {
		name:   "no publisher: written, nothing announced, no announcing marker",
		items:  []*calendar.Event{event("a", 1), event("b", 2)},
		stored: []*calendar.Event{event("b", 1)},
		quiet:  true,
		want:   outcome{writes: []string{"a set+1", "b set"}, written: 2},
	}, {
		name:   "announcing markers: creations only, in page order",
		items:  []*calendar.Event{event("a", 1), event("b", 2), event("c", 2, cancelled), event("d", 1)},
		stored: []*calendar.Event{event("b", 1), event("c", 1)},
		want: outcome{writes: []string{"a set+1", "b set", "c del-1", "d set+1"},
			messages: []string{"a created", "b updated", "c deleted", "d created"}, created: []string{"a", "d"}, written: 3, deleted: 1},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var ms []store.EventMeta
			for _, ev := range tc.stored {
				ms = append(ms, inMirror(t, ev))
			}
			stored := mirror(ms...)
			before := maps.Clone(stored)
			in := pageInput{items: tc.items, stored: stored, series: tc.series, full: tc.full}
			if tc.exceptions != nil {
				in.exceptions = map[string][]store.EventMeta{}
				for m, excs := range tc.exceptions {
					for _, ev := range excs {
						in.exceptions[m] = append(in.exceptions[m], inMirror(t, ev))
					}
				}
			}
			pc := planCtx
			pc.announce = !tc.quiet
			p, err := planPage(pc, in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.missing, tc.missing) {
				t.Fatalf("missing %v, want %v", p.missing, tc.missing)
			}
			var orphans []string
			for _, ev := range p.orphans {
				orphans = append(orphans, ev.Id)
			}
			if !slices.Equal(orphans, tc.orphans) {
				t.Errorf("orphans %v, want %v", orphans, tc.orphans)
			}
			got, changes := summarize(t, p)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("plan\n got %+v\nwant %+v", got, tc.want)
			}
			if tc.check != nil {
				tc.check(t, changes)
			}
			if len(stored) != len(before) {
				t.Errorf("planning changed its input: %d stored versions, %d before", len(stored), len(before))
			}
		})
	}
}

// A replacement is planned over the version it was planned from, and a
// document Firestore refuses falls back to the event stored in part.
func TestPlanReplacesAndFallsBack(t *testing.T) {
	old := inMirror(t, event("b", 1))
	p, err := planPage(planCtx, pageInput{items: []*calendar.Event{event("a", 1), event("b", 2)}, stored: mirror(old)})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.writes) != 2 || p.writes[0].Replaces.Exists || !p.writes[1].Replaces.UpdateTime.Equal(old.UpdateTime) {
		t.Fatalf("writes %+v", p.writes)
	}
	for _, tc := range []struct {
		id    string
		delta int64
	}{{"a", 1}, {"b", 0}} {
		w, ok := p.fallback(tc.id)
		if !ok || w.Delta != tc.delta || w.Doc[store.FieldProblem] != store.ProblemRejected || w.Replaces.Exists != (tc.id == "b") {
			t.Errorf("fallback of %s: %v %+v", tc.id, ok, w)
		}
	}
	if _, ok := p.fallback("zz"); ok {
		t.Error("a fallback for an id the plan does not write")
	}
}

func TestPlanOrphans(t *testing.T) {
	x1 := event("x1", 2, exceptionOf("m"), cancelled)
	for _, tc := range []struct {
		name   string
		series map[string]bool
		stored []*calendar.Event
		full   bool
		want   outcome
	}{{
		name:   "series listed live later in the round",
		series: map[string]bool{"m": true},
		full:   true,
		want:   outcome{writes: []string{"x1 set+1"}, messages: []string{"x1 cancelled"}, created: []string{"x1"}, written: 1},
	}, {
		name:   "incremental round: the mirror's live master counts",
		stored: []*calendar.Event{event("m", 1, weekly)},
		want:   outcome{writes: []string{"x1 set+1"}, messages: []string{"x1 cancelled"}, created: []string{"x1"}, written: 1},
	}, {
		name:   "full round: a series the listing never returned is gone, and its stored occurrence with it",
		stored: []*calendar.Event{event("m", 1, weekly), event("x1", 1, exceptionOf("m"))},
		full:   true,
		want:   outcome{writes: []string{"x1 del-1"}, messages: []string{"x1 deleted"}, deleted: 1},
	}, {
		name:   "an older cancellation than the stored occurrence: left alone",
		stored: []*calendar.Event{event("x1", 3, exceptionOf("m"))},
		series: map[string]bool{"m": false},
		want:   outcome{stale: 1},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var ms []store.EventMeta
			for _, ev := range tc.stored {
				ms = append(ms, inMirror(t, ev))
			}
			p, err := planOrphans(planCtx, pageInput{items: []*calendar.Event{x1}, stored: mirror(ms...), series: tc.series, full: tc.full})
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := summarize(t, p); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("plan\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
	if ids := orphanReads([]*calendar.Event{x1}); !slices.Equal(ids, []string{"x1", "m"}) {
		t.Errorf("orphan reads %v", ids)
	}
}

func TestPlanSweepAndGhosts(t *testing.T) {
	stored := mirror(inMirror(t, event("a", 1)), inMirror(t, event("b", 1)))
	p, err := planSweep(planCtx, []string{"a", "gone-meanwhile", "b"}, stored)
	if err != nil {
		t.Fatal(err)
	}
	want := outcome{writes: []string{"a del-1", "b del-1"}, messages: []string{"a deleted", "b deleted"}, deleted: 2}
	if got, _ := summarize(t, p); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sweep\n got %+v\nwant %+v", got, want)
	}
	// A dead sync announced a, g1 and g2 as created: a was written since,
	// the mirror lacks g1 and g2, so they are announced deleted.
	msgs, err := planGhosts(planCtx, []string{"a", "g1", "g2"}, stored)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := summarize(t, plan{messages: msgs, tally: tally{changes: len(msgs)}})
	if !slices.Equal(got.messages, []string{"g1 deleted", "g2 deleted"}) {
		t.Errorf("ghosts: %v", got.messages)
	}
	quiet := planCtx
	quiet.announce = false
	if msgs, _ := planGhosts(quiet, []string{"g1"}, stored); msgs != nil {
		t.Errorf("ghosts announced without a publisher: %d", len(msgs))
	}
}

func TestPageReads(t *testing.T) {
	items := []*calendar.Event{event("a", 1), event("x1", 1, exceptionOf("m"), cancelled), event("a", 2), event("x2", 1, exceptionOf("m")),
		event("d", 1, cancelled)}
	if ids := pageReads(items); !slices.Equal(ids, []string{"a", "x1", "m", "x2", "d"}) {
		t.Errorf("reads %v", ids)
	}
	// Diffs only for what may be an update (its listed etag); a
	// cancellation, later ones included, keeps the stored document ("")
	// for its message's lastKnown.
	items = append(items, event("x2", 2, exceptionOf("m"), cancelled))
	if got := diffCandidates(items); !maps.Equal(got, map[string]string{"a": `"1002"`, "x1": "", "x2": "", "d": ""}) {
		t.Errorf("diff candidates %v", got)
	}
}
