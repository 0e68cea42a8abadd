package e2e

import (
	"context"
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
