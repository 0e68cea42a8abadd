package syncer_test

import (
	"testing"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
)

func TestFullThenIncrementalThenIdle(t *testing.T) {
	e := newEnv(t)
	s := e.syncer(nil)
	var evs []string
	for i := 0; i < 7; i++ {
		evs = append(evs, e.insert("event").Id)
	}
	e.mustNotify(s, messages.StateSync)
	e.assertMirror()
	e.wantCounts(7, 0, 0)
	c := e.calendar()
	if c.SyncToken == "" || c.LastFullSyncAt.IsZero() || c.EventCount != 7 || c.SyncCount != 1 || c.LeaseOwner != "" || c.Dirty {
		t.Fatalf("after full sync: %+v", c)
	}
	// A second "sync" message for a synced calendar does nothing.
	lists := e.lists()
	e.mustNotify(s, messages.StateSync)
	if e.lists() != lists {
		t.Fatal("sync message for a synced calendar listed events")
	}

	e.rec.Reset()
	upd := e.update(evs[0], "changed")
	e.remove(evs[1])
	e.insert("new")
	e.mustNotify(s, messages.StateExists)
	e.assertMirror()
	e.wantCounts(1, 1, 1)
	for _, ch := range e.rec.Changes() {
		if ch.Change == messages.ChangeUpdated && (ch.Etag != upd.Etag || ch.PreviousEtag == "" || ch.EventID != evs[0]) {
			t.Fatalf("update change: %+v", ch)
		}
	}
	if c := e.calendar(); c.EventCount != 7 || c.SyncCount != 2 || c.FullSyncCount != 1 {
		t.Fatalf("counters: %+v", c)
	}

	// Idle incremental sync: one list call, zero writes, no changes.
	e.rec.Reset()
	lists, before := e.lists(), s.Stats()
	e.mustNotify(s, messages.StateReconcile)
	after := s.Stats()
	if e.lists()-lists != 1 || after.EventWrites != before.EventWrites || after.EventDels != before.EventDels || len(e.rec.Changes()) != 0 {
		t.Fatalf("idle sync: %d list calls, %d writes, %d changes", e.lists()-lists, after.EventWrites-before.EventWrites, len(e.rec.Changes()))
	}
	e.assertMirror()
}

func TestUnknownAndInactiveCalendarsAreAcknowledged(t *testing.T) {
	e := newEnv(t)
	s := e.syncer(nil)
	if err := s.HandleNotification(e.ctx, messages.Notification{CalendarKey: "cnothere", ResourceState: messages.StateExists}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetStatus(e.ctx, e.key, store.StatusAuthRevoked, "test", ""); err != nil {
		t.Fatal(err)
	}
	lists := e.lists()
	e.mustNotify(s, messages.StateExists)
	if e.lists() != lists {
		t.Fatal("inactive calendar was synced")
	}
}
