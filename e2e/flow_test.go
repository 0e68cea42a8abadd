package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/calsync/calsync/scripts/devstack/calgen"
	"github.com/calsync/calsync/shared/store"
)

// Watch, change, converge, renew, unwatch: the life of one calendar, driven
// from outside.
func TestWatchChangeConvergeRenewUnwatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	svc := newService(t, ctx)
	calID := newCalendar(t, ctx, svc, "e2e flow")
	key := store.CalendarKey(calID)
	gen := calgen.New(svc, calID, 1)
	if err := gen.Seed(ctx, 80); err != nil {
		t.Fatal(err)
	}
	changes := watchChanges(t, key)

	// Watch: the first sync mirrors the whole calendar.
	watchCalendar(t, ctx, calID)
	want := waitConverged(t, ctx, svc, calID, 60*time.Second)
	changes.wait(t, want, 30*time.Second)
	t.Logf("initial sync: %d events mirrored, %d changes", len(want), changes.count())

	// Change: every kind of mutation, in bursts.
	for i := 0; i < 40; i++ {
		if _, err := gen.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	want = waitConverged(t, ctx, svc, calID, 45*time.Second)
	changes.wait(t, want, 30*time.Second)

	// The operator's view, and a full resync that finds nothing new: no
	// event is rewritten, no change announced.
	if out := cli(t, ctx, "list"); !strings.Contains(out, calID) || !strings.Contains(out, "active") {
		t.Fatalf("calsync list does not show %s active:\n%s", calID, out)
	}
	before := changes.count()
	full0 := calendarDoc(t, ctx, key).FullSyncCount
	cli(t, ctx, "resync", "--calendar", calID, "--full")
	deadline := time.Now().Add(45 * time.Second)
	for calendarDoc(t, ctx, key).FullSyncCount == full0 {
		if time.Now().After(deadline) {
			t.Fatal("the full resync asked by calsync resync --full did not run")
		}
		time.Sleep(300 * time.Millisecond)
	}
	waitConverged(t, ctx, svc, calID, 30*time.Second)
	time.Sleep(time.Second) // let any (wrong) change message arrive
	if n := changes.count(); n != before {
		t.Fatalf("a full resync of an unchanged calendar announced %d changes", n-before)
	}

	// Renew: a channel within RENEW_BEFORE of its expiry is replaced (new
	// first, old stopped) and changes keep flowing through the new one.
	old := liveChannels(calID)
	if len(old) != 1 {
		t.Fatalf("want one live channel, got %+v", old)
	}
	if wait := time.Until(old[0].Expiration.Add(-renewBefore)); wait > 0 {
		time.Sleep(wait + 200*time.Millisecond)
	}
	renew(t, ctx)
	now := liveChannels(calID)
	if len(now) != 1 || now[0].ID == old[0].ID {
		t.Fatalf("after renewal want one new live channel, got %+v (old %s)", now, old[0].ID)
	}
	for i := 0; i < 10; i++ {
		if _, err := gen.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	want = waitConverged(t, ctx, svc, calID, 45*time.Second)
	changes.wait(t, want, 30*time.Second)

	// Unwatch: the channel is stopped; Google sends nothing more.
	unwatchCalendar(t, ctx, calID)
	if ch := liveChannels(calID); len(ch) != 0 {
		t.Fatalf("after unwatch live channels remain: %+v", ch)
	}
}

// calendarDoc reads calendars/{key}.
func calendarDoc(t *testing.T, ctx context.Context, key string) store.Calendar {
	t.Helper()
	c, err := store.New(firestoreClient(t)).GetCalendar(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
