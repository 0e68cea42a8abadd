package store

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
)

// One captured valid push replayed with the largest message number costs one
// sync, and the channel's real pushes that follow, with ordinary numbers,
// still sync (they were "duplicates" of the forged maximum before). On the
// Firestore emulator, through Admit, StartRound and Complete.
func TestForgedMessageNumberDoesNotSilence(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	key, err := s.RegisterCalendar(ctx, Calendar{CalendarID: "forged@x", AuthMode: AuthADC}, activate)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	step := func() time.Time { now = now.Add(time.Second); return now }
	clock := func() time.Time { return now }
	push := func(n int64) Outcome {
		t.Helper()
		a, err := s.Admit(ctx, key, Request{ReceivedAt: step(), ChannelID: "ch-1", MessageNumber: n}, Lease{Owner: "w/1", Duration: time.Minute, Now: clock}, Coalesce)
		if err != nil {
			t.Fatal(err)
		}
		if a.Outcome == OutcomeSync {
			step()
			rd, err := s.StartRound(ctx, key, a.Lease, false)
			if err != nil {
				t.Fatal(err)
			}
			step()
			if _, err := s.Complete(ctx, key, a.Lease, Completion{Round: rd, Token: "tok"}); err != nil {
				t.Fatal(err)
			}
		}
		return a.Outcome
	}
	for _, p := range []struct {
		n    int64
		want Outcome
	}{
		{5, OutcomeSync},
		{5, OutcomeDuplicate},             // Google's or Pub/Sub's duplicate delivery
		{math.MaxInt64, OutcomeSync},      // the forged replay: one extra sync
		{math.MaxInt64, OutcomeDuplicate}, // and no more
		{6, OutcomeSync},                  // the real pushes still sync
		{9, OutcomeSync},
	} {
		if got := push(p.n); got != p.want {
			t.Errorf("push %d: %s, want %s", p.n, got, p.want)
		}
	}
}

// A calendar document written in the older shape ({n, at}: a maximum) keeps
// working: its number is read as one admitted number, not as a maximum, and
// the next admission rewrites the entry in the current shape.
func TestChannelMessagesOlderShape(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	key, err := s.RegisterCalendar(ctx, Calendar{CalendarID: "legacy@x", AuthMode: AuthADC}, activate)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if _, err := s.CalendarRef(key).Update(ctx, []firestore.Update{{Path: "syncToken", Value: "tok"},
		{FieldPath: firestore.FieldPath{"channelMessages", "ch-1"}, Value: map[string]any{"n": int64(math.MaxInt64), "at": now}}}); err != nil {
		t.Fatal(err)
	}
	admit := func(n int64) Outcome {
		t.Helper()
		a, err := s.Admit(ctx, key, Request{ReceivedAt: now, ChannelID: "ch-1", MessageNumber: n}, Lease{Owner: "w/1", Duration: time.Minute}, Coalesce)
		if err != nil {
			t.Fatal(err)
		}
		return a.Outcome
	}
	if got := admit(math.MaxInt64); got != OutcomeDuplicate {
		t.Errorf("the older entry's own number: %s, want duplicate", got)
	}
	if got := admit(7); got != OutcomeSync {
		t.Errorf("a real push below the older maximum: %s, want sync", got)
	}
	snap, err := s.CalendarRef(key).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := snap.DataAt("channelMessages.ch-1")
	entry, _ := raw.(map[string]any)
	if _, old := entry["n"]; old {
		t.Errorf("entry %v still has the older n", entry)
	}
	var c Calendar
	if err := snap.DataTo(&c); err != nil {
		t.Fatal(err)
	}
	if ns := c.ChannelMessages["ch-1"].Numbers; !slices.Equal(ns, []int64{math.MaxInt64, 7}) {
		t.Errorf("numbers %v, want the older one and 7", ns)
	}
}
