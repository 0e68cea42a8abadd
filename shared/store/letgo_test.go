package store

import (
	"context"
	"testing"
	"time"
)

// LetGo, on the Firestore emulator: a stopping holder learns from what
// Firestore holds whether a sync still covers its notification, and leaves
// the calendar dirty whenever one is owed.
func TestLetGo(t *testing.T) {
	ctx := context.Background()
	st := testStore(t)
	t0 := time.Now().UTC()
	at := func(d time.Duration) func() time.Time { return func() time.Time { return t0.Add(d) } }
	// admit takes the lease for message msg, as seen at t0+d.
	admit := func(key, owner, msg string, d time.Duration) Lease {
		t.Helper()
		a, err := st.Admit(ctx, key, Request{ReceivedAt: t0.Add(d), MessageID: msg}, Lease{Owner: owner, Duration: time.Second, Now: at(d)}, Coalesce)
		if err != nil || a.Outcome != OutcomeSync {
			t.Fatalf("admit %s: %v %v", owner, a.Outcome, err)
		}
		return a.Lease
	}
	register := func(id string) string {
		t.Helper()
		key, err := st.RegisterCalendar(ctx, Calendar{CalendarID: id, AuthMode: AuthADC}, activate)
		if err != nil {
			t.Fatal(err)
		}
		return key
	}
	letGo := func(key string, l Lease, r Request, d time.Duration) (Cover, Calendar) {
		t.Helper()
		l.Now = at(d)
		cv, err := st.LetGo(ctx, key, l, r)
		if err != nil {
			t.Fatal(err)
		}
		c, err := st.GetCalendar(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return cv, c
	}
	m1 := Request{ReceivedAt: t0, MessageID: "m1"}

	t.Run("lease ran out, nobody else", func(t *testing.T) {
		key := register("ran-out@x")
		la := admit(key, "A/1", "m1", 0)
		// A's heartbeat was late: its lease is past, nobody took it.
		cv, c := letGo(key, la, m1, 2*time.Second)
		if !cv.Pending || cv.Holder != "" || cv.Held {
			t.Fatalf("cover %+v, want pending with no holder", cv)
		}
		if !c.Dirty || c.LeaseOwner != "" || c.LeaseMessageID != "" {
			t.Fatalf("calendar %+v, want dirty and released", c)
		}
		// So the redelivery of m1 takes over, though its push was recorded.
		a, err := st.Admit(ctx, key, m1, Lease{Owner: "B/1", Duration: time.Second, Now: at(3 * time.Second)}, Coalesce)
		if err != nil || a.Outcome != OutcomeSync {
			t.Fatalf("redelivery: %v %v", a.Outcome, err)
		}
	})

	t.Run("taken over by a live holder of another message", func(t *testing.T) {
		key := register("taken@x")
		la := admit(key, "A/1", "m1", 0)
		admit(key, "B/1", "m2", 2*time.Second)
		cv, c := letGo(key, la, m1, 2500*time.Millisecond)
		if !cv.Pending || cv.Holder != "B/1" || cv.Held {
			t.Fatalf("cover %+v, want B as the holder", cv)
		}
		if !c.Dirty || c.LeaseOwner != "B/1" {
			t.Fatalf("calendar %+v, want dirty and still B's", c)
		}
	})

	t.Run("taken over by a duplicate delivery of the same message", func(t *testing.T) {
		key := register("held@x")
		la := admit(key, "A/1", "m1", 0)
		admit(key, "B/1", "m1", 2*time.Second)
		if cv, _ := letGo(key, la, m1, 2500*time.Millisecond); !cv.Held || cv.Holder != "" {
			t.Fatalf("cover %+v, want held (the other session holds m1)", cv)
		}
	})

	t.Run("the other holder's lease ran out too", func(t *testing.T) {
		key := register("both@x")
		la := admit(key, "A/1", "m1", 0)
		admit(key, "B/1", "m2", 2*time.Second)
		cv, c := letGo(key, la, m1, 4*time.Second)
		if !cv.Pending || cv.Holder != "" || !c.Dirty || c.LeaseOwner != "B/1" {
			t.Fatalf("cover %+v, calendar %+v: want pending, no holder, B's expired lease left to B", cv, c)
		}
	})

	t.Run("covered by a completed round, clean", func(t *testing.T) {
		key := register("covered@x")
		la := admit(key, "A/1", "m1", 0)
		lb := admit(key, "B/1", "m2", 2*time.Second)
		lb.Now = at(2 * time.Second)
		rd, err := st.StartRound(ctx, key, lb, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Complete(ctx, key, lb, Completion{Round: rd, Token: "tok"}); err != nil {
			t.Fatal(err)
		}
		cv, c := letGo(key, la, m1, 3*time.Second)
		if cv.Pending || c.Dirty {
			t.Fatalf("cover %+v, dirty %v: want nothing owed", cv, c.Dirty)
		}
	})

	t.Run("a rerun started and not completed", func(t *testing.T) {
		key := register("rerun@x")
		la := admit(key, "A/1", "m1", 0)
		la.Now = at(100 * time.Millisecond)
		rd, err := st.StartRound(ctx, key, la, false)
		if err != nil {
			t.Fatal(err)
		}
		// A notification during the round, acknowledged for A's rerun.
		if a, err := st.Admit(ctx, key, Request{ReceivedAt: t0.Add(200 * time.Millisecond)}, Lease{Owner: "C/1", Duration: time.Second, Now: at(200 * time.Millisecond)}, Coalesce); err != nil || a.Outcome != OutcomeMarkedDirty {
			t.Fatalf("admit during the round: %v %v", a.Outcome, err)
		}
		la.Now = at(300 * time.Millisecond)
		if again, err := st.Complete(ctx, key, la, Completion{Round: rd, Token: "tok"}); err != nil || !again {
			t.Fatalf("complete: %v %v", again, err)
		}
		la.Now = at(400 * time.Millisecond)
		if _, err := st.StartRound(ctx, key, la, false); err != nil { // clears the flag
			t.Fatal(err)
		}
		// m1 is covered by the first round; the rerun owes the second notification.
		cv, c := letGo(key, la, m1, 500*time.Millisecond)
		if !cv.Pending || !c.Dirty || c.LeaseOwner != "" {
			t.Fatalf("cover %+v, calendar %+v: want pending, dirty, released", cv, c)
		}
	})

	t.Run("inactive calendar", func(t *testing.T) {
		key := register("gone@x")
		la := admit(key, "A/1", "m1", 0)
		if err := st.SetStatus(ctx, key, StatusAuthRevoked, "test", ""); err != nil {
			t.Fatal(err)
		}
		if cv, c := letGo(key, la, m1, 100*time.Millisecond); cv.Pending || c.Dirty || c.LeaseOwner != "" {
			t.Fatalf("cover %+v, calendar %+v: want nothing owed, released", cv, c)
		}
	})
}
