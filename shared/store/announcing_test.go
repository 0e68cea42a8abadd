package store

import (
	"context"
	"slices"
	"testing"
)

func TestAnnouncingRecord(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	l := holdLease(t, s, "k@x")
	k := CalendarKey("k@x")
	if ids, err := s.Announcing(ctx, k); err != nil || ids != nil {
		t.Fatalf("empty: %v %v", ids, err)
	}
	if err := s.UnmarkAnnouncing(ctx, k, l, []string{"a"}); err != nil {
		t.Fatalf("unmark with no record: %v", err)
	}
	if err := s.MarkAnnouncing(ctx, k, l, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkAnnouncing(ctx, k, l, []string{"b", "c"}); err != nil {
		t.Fatal(err)
	}
	if err := s.UnmarkAnnouncing(ctx, k, l, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	ids, err := s.Announcing(ctx, k)
	slices.Sort(ids)
	if err != nil || !slices.Equal(ids, []string{"b", "c"}) {
		t.Fatalf("got %v %v, want [b c]", ids, err)
	}
}
