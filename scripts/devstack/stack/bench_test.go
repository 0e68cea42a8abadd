package stack

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/syncertest"
)

// BenchmarkBurstProcesses: the burst benchmark of shared/syncer (1,000
// changes to one calendar at 200 a second: 500 updates of existing events,
// 500 inserts) on the whole system as deployed: push from the Calendar
// emulator to the Webhook process, Pub/Sub push to the SyncWorker
// processes behind their front, the SyncWorkers' configuration as Terraform
// sets it (RERUN_INTERVAL 1500ms, QUIET_PERIOD 300ms). Side by side, one run:
// 1 SyncWorker process against 3. Reports events.list calls per burst and
// the lag from the last change to the mirror being exact.
//
//	go test -run '^$' -bench BurstProcesses -benchtime 1x -timeout 30m ./scripts/devstack/stack/
func BenchmarkBurstProcesses(b *testing.B) {
	for i := 0; i < b.N; i++ {
		for _, workers := range []int{1, 3} {
			lists, lag := burstOnStack(b, workers)
			name := fmt.Sprintf("workers%d", workers)
			b.ReportMetric(float64(lists), name+"_lists")
			b.ReportMetric(float64(lag.Milliseconds()), name+"_lag_ms")
		}
	}
	b.ReportMetric(0, "ns/op")
}

func burstOnStack(b *testing.B, workers int) (lists int, lag time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	st, err := Start(ctx, Options{SyncWorkers: workers, Webhooks: 1, RenewInterval: -1,
		Env:    map[string]string{"RERUN_INTERVAL": "1500ms", "QUIET_PERIOD": "300ms", "LEASE_DURATION": "60s", "LOG_LEVEL": "warning"},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Stop()
	svc, err := calendaremu.NewService(ctx, st.CalendarBaseURL)
	if err != nil {
		b.Fatal(err)
	}
	cal, err := svc.Calendars.Insert(&calendar.Calendar{Summary: "burst"}).Do()
	if err != nil {
		b.Fatal(err)
	}
	var ids []string
	for i := range 500 {
		ev, err := svc.Events.Insert(cal.Id, burstEvent(i)).Do()
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, ev.Id)
	}
	fs, err := firestore.NewClient(ctx, st.ProjectID)
	if err != nil {
		b.Fatal(err)
	}
	defer fs.Close()
	s := store.New(fs)
	if _, err := lifecycle.Register(ctx, s, store.Calendar{CalendarID: cal.Id, AuthMode: store.AuthADC}); err != nil {
		b.Fatal(err)
	}
	if r, err := st.RunRenew(ctx); err != nil || r.Status/100 != 2 {
		b.Fatalf("renew: %v %v", r, err)
	}
	waitExact(b, ctx, s, svc, cal.Id, 2*time.Minute)

	// Count the SyncWorkers' listings only (the benchmark's own polls list too).
	var counted sync.Mutex
	st.SetCalendarHook(func(c CalendarCall) {
		r := c.Request
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/events") {
			return
		}
		if fn, _, err := st.CallerOf(r); err == nil && fn == SyncWorker {
			counted.Lock()
			lists++
			counted.Unlock()
		}
	})
	defer st.SetCalendarHook(nil)
	// The burst: 1,000 changes at 200/s, 8 writers (as people and apps would).
	work := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				var err error
				if i%2 == 0 {
					_, err = svc.Events.Patch(cal.Id, ids[i/2], &calendar.Event{Summary: fmt.Sprintf("changed %d", i)}).Do()
				} else {
					_, err = svc.Events.Insert(cal.Id, burstEvent(1000+i)).Do()
				}
				if err != nil {
					b.Error(err)
				}
			}
		}()
	}
	tick := time.NewTicker(5 * time.Millisecond)
	for i := range 1000 {
		<-tick.C
		work <- i
	}
	tick.Stop()
	close(work)
	wg.Wait()
	last := time.Now()
	waitExact(b, ctx, s, svc, cal.Id, 2*time.Minute)
	lag = time.Since(last)
	// A last look: the rounds still under way once it is exact count too.
	time.Sleep(3 * time.Second)
	counted.Lock()
	defer counted.Unlock()
	return lists, lag
}

func burstEvent(i int) *calendar.Event {
	start := time.Date(2027, 1, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour)
	return &calendar.Event{Summary: fmt.Sprintf("event %d", i),
		Start: &calendar.EventDateTime{DateTime: start.Format(time.RFC3339)},
		End:   &calendar.EventDateTime{DateTime: start.Add(time.Hour).Format(time.RFC3339)}}
}

// waitExact polls the mirror every 100 ms until it equals the calendar.
func waitExact(b *testing.B, ctx context.Context, s *store.Store, svc *calendar.Service, calID string, within time.Duration) {
	b.Helper()
	deadline := time.Now().Add(within)
	for {
		d, err := syncertest.Diff(ctx, s, svc, calID)
		if err == nil && d == "" {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("mirror not exact within %s: %v %s", within, err, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
