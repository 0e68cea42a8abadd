package syncer_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/syncer"
)

// sizer is a change-feed publisher that keeps only the messages' sizes.
type sizer struct {
	mu    sync.Mutex
	sizes []int
}

func (s *sizer) PublishAll(_ context.Context, _ string, msgs []pubsubx.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.sizes = append(s.sizes, len(m.Data))
	}
	return nil
}

func (s *sizer) take() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.sizes
	s.sizes = nil
	slices.Sort(out)
	return out
}

func pct(sorted []int, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return float64(sorted[min(len(sorted)-1, int(p*float64(len(sorted))))])
}

// BenchmarkDiffs: what changedFields and previous cost. A calendar of N
// events (DIFF_BENCH_EVENTS, default 5,000) is mirrored; then every event
// is changed (summary, location, moved an hour) and a full resync writes
// them all as "updated", once with diffs and once without (Options.NoDiffs),
// the order alternating. Reported: events/s of each and their ratio (the
// target is at least 0.9), and the change messages' size p50/p99. The
// Firestore reads are the same with and without (TestDiffsCostNoRead).
//
//	go test -run '^$' -bench Diffs -benchtime 2x -timeout 30m ./shared/syncer/
func BenchmarkDiffs(b *testing.B) {
	n := 5000
	if v, err := strconv.Atoi(os.Getenv("DIFF_BENCH_EVENTS")); err == nil && v > 0 {
		n = v
	}
	e := newEnv(b)
	e.seed(n)
	sz := &sizer{}
	s := map[bool]*syncer.Syncer{
		false: e.syncer(func(o *syncer.Options) { o.Publisher = sz }),
		true:  e.syncer(func(o *syncer.Options) { o.Publisher = sz; o.NoDiffs = true }),
	}
	e.mustNotify(s[false], messages.StateSync)
	sz.take()
	ids := e.eventIDs(n)
	rates := map[bool][]float64{}
	sizes := map[bool][]int{}
	round := 0
	for i := 0; i < b.N; i++ {
		for _, noDiffs := range []bool{i%2 == 1, i%2 == 0} {
			round++
			e.changeAll(ids, round)
			t0 := time.Now()
			e.mustNotify(s[noDiffs], messages.StateFullResync)
			rates[noDiffs] = append(rates[noDiffs], float64(n)/time.Since(t0).Seconds())
			got := sz.take()
			if len(got) != n {
				b.Fatalf("round %d: %d change messages, want %d", round, len(got), n)
			}
			sizes[noDiffs] = append(sizes[noDiffs], got...)
		}
	}
	med := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	slices.Sort(sizes[false])
	slices.Sort(sizes[true])
	b.ReportMetric(med(rates[false]), "diffs_events/s")
	b.ReportMetric(med(rates[true]), "nodiffs_events/s")
	b.ReportMetric(med(rates[false])/med(rates[true]), "diffs_vs_nodiffs")
	b.ReportMetric(pct(sizes[false], 0.5), "diffs_msgbytes_p50")
	b.ReportMetric(pct(sizes[false], 0.99), "diffs_msgbytes_p99")
	b.ReportMetric(pct(sizes[true], 0.5), "nodiffs_msgbytes_p50")
	b.ReportMetric(pct(sizes[true], 0.99), "nodiffs_msgbytes_p99")
	b.ReportMetric(0, "ns/op")
}

// changeAll renames, relocates and moves every event (16 at a time).
func (e *env) changeAll(ids []string, round int) {
	e.t.Helper()
	work := make(chan string)
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				ev, err := e.svc.Events.Get(e.calID, id).Context(e.ctx).Do()
				if err == nil {
					start, _ := time.Parse(time.RFC3339, ev.Start.DateTime)
					start = start.Add(time.Hour)
					_, err = e.svc.Events.Patch(e.calID, id, &calendar.Event{Summary: fmt.Sprintf("%s (round %d)", id, round),
						Location: fmt.Sprintf("Room %d", round),
						Start:    &calendar.EventDateTime{DateTime: start.Format(time.RFC3339)},
						End:      &calendar.EventDateTime{DateTime: start.Add(time.Hour).Format(time.RFC3339)}}).Context(e.ctx).Do()
				}
				if err != nil {
					once.Do(func() { firstErr = err })
				}
			}
		}()
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		e.t.Fatal(firstErr)
	}
}
