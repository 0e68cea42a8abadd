package e2e

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/calsync/calsync/scripts/devstack/calgen"
	"github.com/calsync/calsync/scripts/devstack/stack"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
)

// chaosSeeds: CHAOS_SEEDS seeds (default 3, what CI runs) from CHAOS_SEED (default 1).
func chaosSeeds(t *testing.T) []uint64 {
	n, first := 3, uint64(1)
	if v := os.Getenv("CHAOS_SEEDS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("CHAOS_SEEDS=%q: want a positive number", v)
		}
	}
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		var err error
		if first, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("CHAOS_SEED=%q: want a number", v)
		}
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = first + uint64(i)
	}
	return out
}

// Random mutations of a calendar (events, series, occurrences) while every
// fault we know of is injected: dropped, duplicated and delayed notifications,
// 410 on sync tokens, 403/429 rate limits, 5xx, SyncWorker processes killed
// mid-sync and restarted, deliveries rejected (Pub/Sub redelivers),
// duplicated and delayed by the SyncWorker front, a channel expiring
// unrenewed. Once the system is quiet and RenewChannels has run (the
// scheduler's safety net), the mirror must equal the calendar event by event
// and every change must have been announced on the changes topic.
func TestChaos(t *testing.T) {
	for _, seed := range chaosSeeds(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { chaos(t, seed) })
	}
}

func chaos(t *testing.T, seed uint64) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rng := mrand.New(mrand.NewPCG(seed, 0xc4a05))
	svc := newService(t, ctx)
	calID := newCalendar(t, ctx, svc, fmt.Sprintf("chaos %d", seed))
	key := store.CalendarKey(calID)
	gen := calgen.New(svc, calID, seed)
	if err := gen.Seed(ctx, 15+rng.IntN(30)); err != nil {
		t.Fatal(err)
	}
	changes := watchChanges(t, key)
	faults := map[string]int{}
	front0 := sys.SyncWorker.Front.Stats()
	procs := newProcChaos(t)
	defer func() {
		clearCalendarFaults(t)
		sys.SyncWorker.Front.SetFaults(stack.FrontFaults{})
		procs.wait()
	}()

	watchCalendar(t, ctx, calID)

	// Faults for the whole storm: notifications and the SyncWorker front.
	sys.Calendar.SetNotificationFaults(calendaremu.NotificationFaults{
		DropProbability: 0.15, DuplicateProbability: 0.15, DelayProbability: 0.15,
		Delay: time.Duration(50+rng.IntN(400)) * time.Millisecond, Seed: seed,
	})
	sys.SyncWorker.Front.SetFaults(stack.FrontFaults{RejectProbability: 0.1, DuplicateProbability: 0.1,
		DelayProbability: 0.1, Delay: 400 * time.Millisecond, Seed: seed})

	steps := 30 + rng.IntN(40)
	for i := 0; i < steps; i++ {
		if rng.IntN(100) < 15 {
			// The channel may expire only in the second half, so the first
			// half always runs on notifications.
			faults[inject(t, rng, calID, i > steps/2)]++
		}
		if rng.IntN(100) < 8 {
			// An instance dies mid-sync (its requests fail, Pub/Sub
			// redelivers) and a new one starts a moment later.
			procs.killAndRestart(ctx, rng.IntN(len(sys.SyncWorker.Instances)), time.Duration(rng.IntN(500))*time.Millisecond)
		}
		if _, err := gen.Step(ctx); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		time.Sleep(time.Duration(rng.IntN(60)) * time.Millisecond)
	}

	t.Logf("seed %d: storm over: %d steps, faults %v", seed, steps, faults)

	// Quiet: faults off, nothing in flight, then the scheduler's safety net.
	clearCalendarFaults(t)
	sys.SyncWorker.Front.SetFaults(stack.FrontFaults{})
	procs.wait()
	waitQuiet(t, 3500*time.Millisecond, 90*time.Second)
	renew(t, ctx)
	want := waitConverged(t, ctx, svc, calID, 90*time.Second)
	changes.wait(t, want, 30*time.Second)
	unwatchCalendar(t, ctx, calID)
	f := sys.SyncWorker.Front.Stats()
	t.Logf("seed %d: %d steps, %d events mirrored, %d change messages, faults %v; SyncWorker front: %d forwarded, %d ok, %d rejected, %d duplicated, %d delayed, %d unavailable; %d processes killed and restarted; %s",
		seed, steps, len(want), changes.count(), faults, f.Forwarded-front0.Forwarded, f.OK-front0.OK, f.Rejected-front0.Rejected,
		f.Duplicated-front0.Duplicated, f.Delayed-front0.Delayed, f.Unavailable-front0.Unavailable, procs.kills(), time.Since(start).Round(time.Millisecond))
}

// inject adds one fault of a random kind and names it.
func inject(t *testing.T, rng *mrand.Rand, calID string, mayExpire bool) string {
	t.Helper()
	n := 1 + rng.IntN(3)
	switch k := rng.IntN(8); k {
	case 0:
		sys.Calendar.AddFault(calendaremu.Fault{Method: "events.list", Count: n, Code: 403, Reason: "rateLimitExceeded", Calendar: calID})
		return "403-rateLimitExceeded"
	case 1:
		sys.Calendar.AddFault(calendaremu.Fault{Method: "events.list", Count: n, Code: 403, Reason: "userRateLimitExceeded", Calendar: calID})
		return "403-userRateLimitExceeded"
	case 2:
		sys.Calendar.AddFault(calendaremu.Fault{Method: "events.list", Count: n, Code: 429, Reason: "rateLimitExceeded", Calendar: calID})
		return "429"
	case 3:
		code := []int{500, 502, 503}[rng.IntN(3)]
		sys.Calendar.AddFault(calendaremu.Fault{Method: "events.list", Count: n, Code: code, Reason: "backendError", Calendar: calID})
		return "5xx"
	case 4:
		if err := sys.Calendar.InvalidateSyncTokens(calID); err != nil {
			t.Fatal(err)
		}
		return "410-invalidated"
	case 5:
		if !mayExpire {
			return "none"
		}
		for _, ch := range liveChannels(calID) {
			if err := sys.Calendar.ExpireChannel(ch.ID); err != nil {
				t.Fatal(err)
			}
		}
		return "channel-expired"
	case 6:
		// A worker died holding the lease (the process, not just its request):
		// its lease stays until LEASE_DURATION passes; a sync running now loses
		// its lease and must not commit. Notifications meanwhile only mark the
		// calendar dirty; the next holder or RenewChannels' reconcile of a dirty
		// calendar with an expired lease picks it up.
		_, err := firestoreClient(t).Collection(store.CollCalendars).Doc(store.CalendarKey(calID)).Update(context.Background(), []firestore.Update{
			{Path: "leaseOwner", Value: "chaos-dead-worker"},
			{Path: "leaseUntil", Value: time.Now().UTC().Add(leaseDuration)},
		})
		if err != nil {
			t.Fatal(err)
		}
		return "lease-orphaned"
	default:
		sys.Calendar.AddFault(calendaremu.Fault{Method: "events.watch", Count: 1, Code: 503, Reason: "backendError", Calendar: calID})
		return "watch-5xx"
	}
}
