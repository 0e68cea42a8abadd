package store

import (
	"context"
	"slices"
	"testing"

	"cloud.google.com/go/firestore"

	"github.com/calsync/calsync/shared/testing/testenv"
)

func TestAnnouncingRecord(t *testing.T) {
	testenv.Firestore(t)
	ctx := context.Background()
	fs, err := firestore.NewClient(ctx, testenv.ProjectID(t))
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	s := New(fs)
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
