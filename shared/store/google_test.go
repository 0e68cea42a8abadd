package store

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/calsync/calsync/shared/testing/testenv"
)

// Many processes leasing from one budget at once never hold more than its
// limit between them (no transactions: increment, read, give back), and
// what was given back is leasable again.
func TestLeaseQuotaNeverOverLimit(t *testing.T) {
	testenv.Firestore(t)
	ctx := context.Background()
	project := testenv.ProjectID(t)
	const limit = 40
	var granted atomic.Int64
	var wg sync.WaitGroup
	for range 4 { // processes: a client (and a Store) each
		fs, err := firestore.NewClient(ctx, project)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fs.Close() })
		st := New(fs)
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 10 {
					n, retryAt, err := st.LeaseQuota(ctx, "user-x", 3, limit, time.Minute)
					if err != nil {
						t.Error(err)
						return
					}
					if n == 0 && retryAt.Before(time.Now()) {
						t.Errorf("full bucket, but free again at %v", retryAt)
					}
					granted.Add(int64(n))
				}
			}()
		}
	}
	wg.Wait()
	if g := granted.Load(); g > limit || g < limit-6 {
		t.Errorf("granted %d calls of a %d budget (at most %d, and nearly all of it)", g, limit, limit)
	}
	st := New(firestoreClient(t, project))
	if n, _, _ := st.LeaseQuota(ctx, "user-x", 1, limit, time.Minute); n != 0 && granted.Load() == limit {
		t.Error("a full bucket granted more")
	}
	// Another bucket is independent.
	if n, _, err := st.LeaseQuota(ctx, "project", 5, 10, time.Minute); err != nil || n != 5 {
		t.Errorf("project bucket: %d %v", n, err)
	}
}

// The 404 streak: counted, set not_found only when persistent, cleared by
// ClearNotFound; a not_found calendar's probe reactivates it.
func TestNotFoundStreakAndProbe(t *testing.T) {
	st := testStore(t)
	ctx := context.Background()
	key, err := st.RegisterCalendar(ctx, Calendar{CalendarID: "streak@x.test", AuthMode: AuthADC}, activate)
	if err != nil {
		t.Fatal(err)
	}
	// The store's clock, moved by hand: a loaded machine's pauses between
	// calls must not count as the streak's time.
	now := time.Now()
	st.Now = func() time.Time { return now }
	p := NotFoundPolicy{Attempts: 2, After: time.Hour}
	if s, err := st.RecordNotFound(ctx, key, "", "events.list", streak(p)); err != nil || s.Count != 1 || s.Marked {
		t.Fatalf("first: %+v %v", s, err)
	}
	if err := st.ClearNotFound(ctx, key); err != nil {
		t.Fatal(err)
	}
	st.RecordNotFound(ctx, key, "", "events.list", streak(p))
	now = now.Add(59 * time.Minute)
	if s, _ := st.RecordNotFound(ctx, key, "", "events.list", streak(p)); s.Marked {
		t.Fatalf("two 404s within the hour marked it: %+v", s)
	}
	now = now.Add(2 * time.Minute)
	s, _ := st.RecordNotFound(ctx, key, "", "events.list", streak(p))
	c, _ := st.GetCalendar(ctx, key)
	if !s.Marked || c.Status != StatusNotFound || c.LastProbeAt.IsZero() {
		t.Fatalf("persistent: %+v, %s", s, c.Status)
	}
	if back, err := st.ProbeResult(ctx, key, false); err != nil || back {
		t.Fatalf("probe not found: %v %v", back, err)
	}
	if back, err := st.ProbeResult(ctx, key, true); err != nil || !back {
		t.Fatalf("probe found: %v %v", back, err)
	}
	if c, _ := st.GetCalendar(ctx, key); c.Status != StatusActive || c.NotFoundCount != 0 || c.StatusReason != "" {
		t.Errorf("after a found probe: %+v", c)
	}
}

// Channel epochs: claimed against the value read, later each time.
func TestClaimChannelEpoch(t *testing.T) {
	st := testStore(t)
	ctx := context.Background()
	key, _ := st.RegisterCalendar(ctx, Calendar{CalendarID: "epoch@x.test", AuthMode: AuthADC}, activate)
	e1, err := st.ClaimChannelEpoch(ctx, key, "")
	if err != nil || e1 == "" {
		t.Fatal(e1, err)
	}
	if _, err := st.ClaimChannelEpoch(ctx, key, ""); err == nil {
		t.Fatal("a stale claim succeeded")
	}
	st.Now = func() time.Time { return time.Now().Add(-time.Hour) } // a clock behind
	e2, err := st.ClaimChannelEpoch(ctx, key, e1)
	if err != nil || e2 == e1 || e2 < e1 {
		t.Fatalf("second epoch %q after %q: %v", e2, e1, err)
	}
}

func firestoreClient(t *testing.T, project string) *firestore.Client {
	t.Helper()
	fs, err := firestore.NewClient(context.Background(), project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	return fs
}
