package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// holdLease registers calendarID and takes its lease.
func holdLease(t *testing.T, s *Store, calendarID string) Lease {
	t.Helper()
	ctx := context.Background()
	key, err := s.RegisterCalendar(ctx, Calendar{CalendarID: calendarID, AuthMode: AuthADC}, activate)
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Admit(ctx, key, Request{ReceivedAt: time.Now()}, Lease{Owner: "test/" + calendarID, Duration: time.Minute}, Coalesce)
	if err != nil || a.Outcome != OutcomeSync {
		t.Fatalf("admit: %v %v", a.Outcome, err)
	}
	return a.Lease
}

func doc(id, etag string) map[string]any { return map[string]any{"id": id, "etag": etag} }

// A holder paused past its lease resumes after another worker took over:
// none of its writes (events, counters, announcing record, token) lands, and
// the newer holder's data stays. Two Store values stand for two processes:
// they share nothing but Firestore.
func TestFenceStopsAPausedHolder(t *testing.T) {
	ctx := context.Background()
	a, b := testStore(t), &Store{}
	*b = Store{Client: a.Client}
	key, _ := a.RegisterCalendar(ctx, Calendar{CalendarID: "cal@x", AuthMode: AuthADC}, activate)
	now := time.Now()
	clockA := func() time.Time { return now }
	admA, err := a.Admit(ctx, key, Request{ReceivedAt: now}, Lease{Owner: "A/1", Duration: time.Second, Now: clockA}, Coalesce)
	if err != nil || admA.Outcome != OutcomeSync {
		t.Fatalf("A admit: %v %v", admA.Outcome, err)
	}
	la := admA.Lease
	if _, err := a.WriteEvents(ctx, key, la, []EventWrite{{ID: "e1", Doc: doc("e1", `"1"`), Delta: 1}}); err != nil {
		t.Fatal(err)
	}
	// A pauses; its lease expires; B takes over and writes v3.
	later := func() time.Time { return now.Add(2 * time.Second) }
	admB, err := b.Admit(ctx, key, Request{ReceivedAt: later()}, Lease{Owner: "B/1", Duration: time.Minute, Now: later}, Coalesce)
	if err != nil || admB.Outcome != OutcomeSync || admB.Lease.Fence.Gen != la.Fence.Gen+1 {
		t.Fatalf("B admit: %v %+v %v", admB.Outcome, admB.Lease.Fence, err)
	}
	lb := admB.Lease
	if _, err := b.WriteEvents(ctx, key, lb, []EventWrite{{ID: "e1", Doc: doc("e1", `"3"`)}, {ID: "e2", Doc: doc("e2", `"3"`), Delta: 1}}); err != nil {
		t.Fatal(err)
	}
	// A resumes: every write is refused with ErrLeaseLost.
	_, err = a.WriteEvents(ctx, key, la, []EventWrite{{ID: "e1", Doc: doc("e1", `"2"`)}, {ID: "e3", Doc: doc("e3", `"2"`), Delta: 1}})
	if !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("old holder's write: %v, want ErrLeaseLost", err)
	}
	if err := a.MarkAnnouncing(ctx, key, la, []string{"e3"}); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("old holder's announcing record: %v", err)
	}
	if _, err := a.Heartbeat(ctx, key, la); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("old holder's heartbeat: %v", err)
	}
	if _, err := a.Complete(ctx, key, la, Completion{Token: "old"}); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("old holder's token commit: %v", err)
	}
	m, _ := a.GetEvents(ctx, key, []string{"e1", "e2", "e3"})
	if m["e1"].Etag != `"3"` || !m["e2"].Exists || m["e3"].Exists {
		t.Errorf("mirror after the old holder resumed: %+v", m)
	}
	c, _ := a.GetCalendar(ctx, key)
	if c.EventCount != 2 || c.ChangeCount != 3 || c.SyncToken != "" {
		t.Errorf("counters %d events, %d changes, token %q; want 2, 3, empty", c.EventCount, c.ChangeCount, c.SyncToken)
	}
	if ids, _ := a.Announcing(ctx, key); len(ids) != 0 {
		t.Errorf("announcing record %v", ids)
	}
}

// A holder's own parallel batches never trip each other's fence, and the
// counters add up exactly.
func TestFencedBatchesInParallel(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	l := holdLease(t, s, "many@x")
	key := CalendarKey("many@x")
	var ws []EventWrite
	for i := range 2300 {
		ws = append(ws, EventWrite{ID: fmt.Sprintf("e%04d", i), Doc: doc("x", `"1"`), Delta: 1})
	}
	if rej, err := s.WriteEvents(ctx, key, l, ws); err != nil || len(rej) > 0 {
		t.Fatalf("%v %v", rej, err)
	}
	var dels []EventWrite
	for i := range 300 {
		dels = append(dels, EventWrite{ID: fmt.Sprintf("e%04d", i), Delta: -1})
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for j := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[j] = s.WriteEvents(ctx, key, l, dels[j*100:(j+1)*100])
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	c, _ := s.GetCalendar(ctx, key)
	if c.EventCount != 2000 || c.ChangeCount != 2600 {
		t.Errorf("eventCount %d changeCount %d, want 2000 and 2600", c.EventCount, c.ChangeCount)
	}
	n := 0
	_ = s.ForEachEvent(ctx, key, func(string, string) error { n++; return nil })
	if n != 2000 {
		t.Errorf("%d documents", n)
	}
}

// A document Firestore refuses comes back rejected; the rest of its batch is
// written and counted.
func TestRejectedWriteIsolated(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	l := holdLease(t, s, "bad@x")
	key := CalendarKey("bad@x")
	bad := doc("bad", `"1"`)
	bad[strings.Repeat("k", 1600)] = 1 // a field name over Firestore's 1,500 bytes
	ws := []EventWrite{{ID: "ok1", Doc: doc("ok1", `"1"`), Delta: 1}, {ID: "bad", Doc: bad, Delta: 1}, {ID: "ok2", Doc: doc("ok2", `"1"`), Delta: 1}}
	rej, err := s.WriteEvents(ctx, key, l, ws)
	if err != nil || len(rej) != 1 || rej[0].ID != "bad" {
		t.Fatalf("rejected %v, err %v", rej, err)
	}
	m, _ := s.GetEvents(ctx, key, []string{"ok1", "ok2", "bad"})
	c, _ := s.GetCalendar(ctx, key)
	if !m["ok1"].Exists || !m["ok2"].Exists || m["bad"].Exists || c.EventCount != 2 {
		t.Errorf("after a rejected write: %+v, eventCount %d", m, c.EventCount)
	}
}
