package store

import (
	"context"
	"testing"
)

// A round read with a grant that no longer reads the calendar (a listing
// or a lost reader handed it over mid-round) stores no token and goes round
// again: the new reader's first sync is a full one, never with the former
// reader's token.
func TestCompleteKeepsNoTokenOfAFormerReader(t *testing.T) {
	ctx := context.Background()
	st := testStore(t)
	l := holdLease(t, st, "handed@x")
	key := CalendarKey("handed@x")
	rd, err := st.StartRound(ctx, key, l, false)
	if err != nil {
		t.Fatal(err)
	}
	// Mid-round, another grant reads it (the plan a hand-over makes).
	_, err = st.ReplanCalendar(ctx, key, func(c Calendar) ListingPlan {
		c.ReadWith("iolga", Reader{AuthMode: AuthDelegation, Subject: "olga@x", AccessRole: "owner"})
		c.Readers = map[string]Reader{"iolga": {AuthMode: AuthDelegation, Subject: "olga@x", AccessRole: "owner"}}
		return ListingPlan{Writes: []CalendarWrite{{Key: key, Cal: c, DropToken: true}}}
	})
	if err != nil {
		t.Fatal(err)
	}
	again, err := st.Complete(ctx, key, l, Completion{Round: rd, Token: "former-reader-token"})
	if err != nil || !again {
		t.Fatalf("complete: again=%v %v; want another round", again, err)
	}
	c, err := st.GetCalendar(ctx, key)
	if err != nil || c.SyncToken != "" || c.Subject != "olga@x" || c.ReaderKeys[0] != "iolga" {
		t.Fatalf("calendar: %+v %v", c, err)
	}
	rd, err = st.StartRound(ctx, key, l, false)
	if err != nil || !rd.Full || rd.Calendar.Subject != "olga@x" {
		t.Fatalf("next round: full=%v as %q, %v; want a full one as the new reader", rd.Full, rd.Calendar.Subject, err)
	}
	if _, err := st.Complete(ctx, key, l, Completion{Round: rd, Token: "olga-token"}); err != nil {
		t.Fatal(err)
	}
	if c, _ := st.GetCalendar(ctx, key); c.SyncToken != "olga-token" {
		t.Fatalf("the new reader's token: %q", c.SyncToken)
	}
}
