package calclient

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// Google's daily threshold counts the project's calls over 24 hours. Three
// processes (a Firestore client each, on the emulator) calling for five
// users, one call every ten minutes of a shared clock, make at most the
// daily limit between them; then every one is refused with a daily
// BudgetError saying when a call is free again (a day after the first),
// still refused half a day later, and served again then. The day's
// document holds a counter per 24-minute slot, not one per second.
func TestDailyLimitAcrossProcesses(t *testing.T) {
	testenv.Firestore(t)
	ctx := context.Background()
	project := testenv.ProjectID(t)
	var mu sync.Mutex
	clock := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }

	const processes, daily = 3, 30
	var fs *firestore.Client
	budgets := make([]*SharedBudget, processes)
	for i := range budgets {
		var err error
		fs, err = firestore.NewClient(ctx, project)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fs.Close() })
		st := store.New(fs)
		st.Now = now
		budgets[i] = &SharedBudget{Store: st, UserPerMinute: 600, ProjectPerMinute: 9000, ProjectPerDay: daily, Processes: processes, Now: now}
	}
	ctx = WithMaxWait(ctx, time.Minute)
	first := now()

	calls := 0
	var refused *BudgetError
	for i := 0; refused == nil; i++ {
		err := budgets[i%processes].Take(ctx, fmt.Sprintf("user%d@corp.test", i%5))
		switch {
		case err == nil:
			calls++
		case errors.As(err, &refused):
		default:
			t.Fatal(err)
		}
		if calls > 2*daily {
			t.Fatalf("%d calls against a daily limit of %d: never refused", calls, daily)
		}
		advance(10 * time.Minute)
	}
	if calls != daily {
		t.Errorf("%d calls before the first refusal, want the daily limit %d", calls, daily)
	}
	if refused.Bucket != "daily" || refused.RetryAt.Before(first.Add(24*time.Hour)) || refused.RetryAt.After(first.Add(25*time.Hour)) {
		t.Errorf("refusal %v: want the daily bucket, free again a day after the first call (%v)", refused, first)
	}
	for _, b := range budgets {
		if _, ok := IsBudgetExhausted(b.Take(ctx, "other@corp.test")); !ok {
			t.Error("another process, another user: not refused")
		}
	}
	advance(12 * time.Hour)
	if _, ok := IsBudgetExhausted(budgets[0].Take(ctx, "user0@corp.test")); !ok {
		t.Error("half a day later: not refused (the per-minute limits have long recovered; the day has not)")
	}

	var doc struct {
		Used map[string]int64 `firestore:"used"`
	}
	snap, err := fs.Collection(store.CollQuota).Doc(DailyBucket).Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.DataTo(&doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Used) == 0 || len(doc.Used) > 15 {
		t.Errorf("the day's document holds %d counters for %d calls over 5 hours; want one per 24-minute slot (13)", len(doc.Used), daily)
	}

	mu.Lock()
	clock = refused.RetryAt.Add(time.Second)
	mu.Unlock()
	if err := budgets[1].Take(ctx, "user1@corp.test"); err != nil {
		t.Errorf("a day after the first call: %v", err)
	}
}
