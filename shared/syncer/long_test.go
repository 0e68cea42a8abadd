package syncer_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/syncer"
	"github.com/calsync/calsync/shared/testing/syncertest"
	"github.com/calsync/calsync/shared/testing/testlog"
)

// requestLog records the continuation requests a Syncer publishes.
type requestLog struct {
	mu   sync.Mutex
	msgs []messages.Notification
}

func (r *requestLog) Publish(_ context.Context, data []byte, _ map[string]string, _ string) error {
	n, err := messages.ParseNotification(data)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, n)
	r.mu.Unlock()
	return nil
}

func (r *requestLog) take() (messages.Notification, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.msgs) == 0 {
		return messages.Notification{}, false
	}
	n := r.msgs[0]
	r.msgs = r.msgs[1:]
	return n, true
}

// seed inserts n timed events through the Calendar API, 16 at a time.
func (e *env) seed(n int) {
	e.t.Helper()
	work := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				start := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour)
				_, err := e.svc.Events.Insert(e.calID, &calendar.Event{Summary: fmt.Sprintf("event %d", i),
					Start: &calendar.EventDateTime{DateTime: start.Format(time.RFC3339)},
					End:   &calendar.EventDateTime{DateTime: start.Add(time.Hour).Format(time.RFC3339)}}).Context(e.ctx).Do()
				if err != nil {
					once.Do(func() { firstErr = err })
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		e.t.Fatal(firstErr)
	}
}

// A full sync far longer than one invocation may run (here MaxSession is 1 s,
// against 20,000 events in 8 pages) stops at a
// checkpoint, asks for its continuation, and each next invocation goes on
// where the last stopped, until the mirror is exact and eventCount true.
// LONG_SYNC_EVENTS changes the size (100000 was measured: 41 invocations);
// the default keeps the test well inside its deadline on a loaded CI machine,
// where 100,000 took 4.5 of the 5 minutes before reading the mirror back.
func TestLongSyncContinuesAcrossInvocations(t *testing.T) {
	n := 20_000
	if v, err := strconv.Atoi(os.Getenv("LONG_SYNC_EVENTS")); err == nil && v > 0 {
		n = v
	}
	e := newEnv(t)
	// Its own deadline, longer than newEnv's: seeding, syncing and reading back
	// n events each take time proportional to n.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute+time.Duration(n)*3*time.Millisecond)
	defer cancel()
	e.ctx = ctx
	t0 := time.Now()
	e.seed(n)
	t.Logf("seeded %d events in %s", n, time.Since(t0).Round(time.Millisecond))
	requests := &requestLog{}
	var logs testlog.Buffer
	var reports []syncer.Report
	s := e.syncer(func(o *syncer.Options) {
		o.Publisher = nil // 100,000 change messages in memory would only measure the recorder
		o.Requests = requests
		o.MaxSession = time.Second
		o.Logger = logging.New(&logs, slog.LevelInfo)
		o.OnSync = func(r syncer.Report) { reports = append(reports, r) }
	})
	t0 = time.Now()
	e.mustNotify(s, messages.StateSync)
	invocations := 1
	for {
		n, ok := requests.take()
		if !ok {
			break
		}
		if n.CalendarKey != e.key || n.ResourceState != messages.StateReconcile {
			t.Fatalf("continuation request %+v", n)
		}
		if err := s.HandleNotification(e.ctx, n); err != nil {
			t.Fatal(err)
		}
		invocations++
		if invocations > 1000 {
			t.Fatal("no end in sight")
		}
	}
	t.Logf("%d events synced in %d invocations, %s", n, invocations, time.Since(t0).Round(time.Millisecond))
	if invocations < 2 {
		t.Errorf("%d invocation: the sync did not stop and continue", invocations)
	}
	if diff, err := syncertest.Diff(e.ctx, e.st, e.svc, e.calID); err != nil || diff != "" {
		t.Fatalf("mirror: %v %s", err, diff)
	}
	c := e.calendar()
	if c.EventCount != int64(n) || c.SyncToken == "" || c.Dirty || c.LeaseOwner != "" {
		t.Errorf("calendar after the long sync: eventCount %d (want %d), token %q, dirty %v, lease %q", c.EventCount, n, c.SyncToken, c.Dirty, c.LeaseOwner)
	}
	if len(reports) == 0 || !reports[0].Full || reports[0].Listed != n || reports[0].Written != n || reports[0].Invocations < invocations-1 {
		t.Errorf("the full round's report: %+v", reports)
	}
	if snap, err := e.st.CalendarRef(e.key).Collection("syncstate").Doc("checkpoint").Get(e.ctx); err == nil && snap.Exists() {
		t.Error("checkpoint left behind")
	}
}
