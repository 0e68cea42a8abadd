package calclient

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeLeaser is a shared quota store in memory: it grants what the bucket's
// limit leaves in the span, and counts leases.
type fakeLeaser struct {
	mu     sync.Mutex
	now    func() time.Time
	grants map[string][]grant
	leases int
}

type grant struct {
	at time.Time
	n  int
}

func (f *fakeLeaser) LeaseQuota(_ context.Context, bucket string, want, limit int, span time.Duration) (int, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leases++
	now := f.now()
	used := 0
	for _, g := range f.grants[bucket] {
		if g.at.After(now.Add(-span)) {
			used += g.n
		}
	}
	n := min(want, limit-used)
	if n <= 0 {
		return 0, now.Add(time.Second), nil
	}
	f.grants[bucket] = append(f.grants[bucket], grant{now, n})
	return n, time.Time{}, nil
}

// A user who calls rarely costs no lease: each process spends its share of
// the local allowance first. And however the processes call, together they
// never take more than the limit in a window.
func TestLocalAllowance(t *testing.T) {
	var mu sync.Mutex
	clock := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	leaser := &fakeLeaser{now: now, grants: map[string][]grant{}}
	const processes, limit = 4, 100 // each process: 100/5/4 = 5 calls a minute free
	budgets := make([]*SharedBudget, processes)
	for i := range budgets {
		budgets[i] = &SharedBudget{Store: leaser, UserPerMinute: limit, Processes: processes, Now: now}
	}
	ctx := WithMaxWait(context.Background(), 0)

	for range 5 {
		if err := budgets[0].Take(ctx, "ann"); err != nil {
			t.Fatal(err)
		}
	}
	if leaser.leases != 0 {
		t.Fatalf("%d leases for 5 calls within the allowance, want 0", leaser.leases)
	}
	if err := budgets[0].Take(ctx, "ann"); err != nil || leaser.leases != 1 {
		t.Fatalf("the 6th call: %v, %d leases, want one lease", err, leaser.leases)
	}

	// A minute later, every process calls for ben until refused: the sum
	// stays within the limit (a slice spent late counts for the window
	// plus its TTL, so the fake's span covers it).
	mu.Lock()
	clock = clock.Add(2 * time.Minute)
	mu.Unlock()
	total := 0
	for _, b := range budgets {
		for b.Take(ctx, "ben") == nil {
			total++
			if total > 2*limit {
				t.Fatal("no refusal")
			}
		}
	}
	if total > limit || total < limit-processes*5 {
		t.Fatalf("%d calls in one window from %d processes, want at most %d (and most of it)", total, processes, limit)
	}
}
