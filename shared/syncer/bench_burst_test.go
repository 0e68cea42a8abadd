package syncer_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/google/uuid"
	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/syncertest"
	"github.com/calsync/calsync/shared/testing/testenv"
)

// burstVariant is one way of handling notifications.
type burstVariant struct {
	name string
	// setup returns the notification handler and a function reporting the
	// Firestore event writes so far.
	setup func(b *testing.B, e *env) (handle func(context.Context, messages.Notification) error, writes func() int64)
}

const (
	burstSeed      = 500  // events before the burst
	burstChanges   = 1000 // distinct events changed in the burst: 500 updates, 500 inserts
	burstRate      = 200  // changes per second
	burstConsumers = 8    // notifications handled at once (like 8 function instances)
)

// BenchmarkBurst: 1,000 changes to one calendar at about 200 changes/s with
// push delivery on (calendaremu → httptest webhook → handler, at most 8
// notifications handled at once, as 8 function instances would). calsync
// (one process handling up to 8 at once), calsync with function concurrency
// 1 (8 single-request instances), against a sync per notification without coalescing and the "forum answer"
// (list every event on each notification, compare sequence). Figures per
// burst: events.list calls, Firestore event writes, write amplification
// (writes / distinct changed events), lag from the last change to the mirror
// being exact (-1: never exact within 20 s of the last notification).
//
//	go test -run '^$' -bench Burst -benchtime 3x -timeout 30m ./shared/syncer/
func BenchmarkBurst(b *testing.B) {
	variants := []burstVariant{
		{"calsync", func(b *testing.B, e *env) (func(context.Context, messages.Notification) error, func() int64) {
			s := e.syncer(func(o *syncer.Options) {
				o.RerunInterval = benchRerunInterval
				o.QuietPeriod = benchQuietPeriod
				o.RetryBudget = 30 * time.Second
				o.LeaseDuration = 30 * time.Second
				o.Publisher = nil
				o.OnSync = func(r syncer.Report) {
					if benchDebug {
						b.Logf("round start %s dur %v written %d lag %v reason %s", r.StartedAt.Format("05.000"), r.CompletedAt.Sub(r.StartedAt), r.Written, r.Lag, r.RerunReason)
					}
				}
			})
			return s.HandleNotification, func() int64 { st := s.Stats(); return st.EventWrites + st.EventDels }
		}},
		{"calsync_conc1", func(b *testing.B, e *env) (func(context.Context, messages.Notification) error, func() int64) {
			// Function concurrency 1: 8 instances, each handling one
			// notification at a time, so the lease holder never sees the
			// others' notifications (no in-process quiet detection or fast
			// path). They share one store.Store, i.e. one in-process
			// transaction lock: separate clients would only trip the
			// emulator's pessimistic locking, which real Firestore does not have.
			pool := make(chan *syncer.Syncer, burstConsumers)
			var all []*syncer.Syncer
			for i := 0; i < burstConsumers; i++ {
				s := e.syncer(func(o *syncer.Options) {
					o.RerunInterval = benchRerunInterval
					o.QuietPeriod = benchQuietPeriod
					o.RetryBudget = 30 * time.Second
					o.LeaseDuration = 30 * time.Second
					o.Publisher = nil
				})
				all = append(all, s)
				pool <- s
			}
			return func(ctx context.Context, n messages.Notification) error {
					s := <-pool
					defer func() { pool <- s }()
					return s.HandleNotification(ctx, n)
				}, func() int64 {
					var n int64
					for _, s := range all {
						st := s.Stats()
						n += st.EventWrites + st.EventDels
					}
					return n
				}
		}},
		{"per_notification", naiveVariant},
		{"forum", forumVariant},
	}
	type agg struct {
		lists, writes []float64
		lags          []float64
	}
	res := make([]agg, len(variants))
	for n := 0; n < b.N; n++ {
		for k := range variants {
			i := (n + k) % len(variants)
			l, w, lag := runBurst(b, variants[i])
			res[i].lists = append(res[i].lists, float64(l))
			res[i].writes = append(res[i].writes, float64(w))
			ms := float64(lag.Microseconds()) / 1000
			if lag < 0 {
				ms = -1 // never exact
			}
			res[i].lags = append(res[i].lags, ms)
		}
	}
	median := func(v []float64) float64 {
		s := slices.Clone(v)
		slices.Sort(s)
		return s[len(s)/2]
	}
	for i, v := range variants {
		b.ReportMetric(median(res[i].lists), v.name+"_lists")
		b.ReportMetric(median(res[i].writes), v.name+"_writes")
		b.ReportMetric(median(res[i].writes)/burstChanges, v.name+"_write_amp")
		b.ReportMetric(median(res[i].lags), v.name+"_lag_ms")
		fmt.Fprintf(os.Stderr, "burst %s: lists %v writes %v lag_ms %.0f\n", v.name, res[i].lists, res[i].writes, res[i].lags)
	}
	b.ReportMetric(0, "ns/op")
}

var (
	benchDebug         = os.Getenv("BENCH_DEBUG") != ""
	benchRerunInterval = syncer.DefaultRerunInterval
	benchQuietPeriod   = syncer.DefaultQuietPeriod
)

func runBurst(b *testing.B, v burstVariant) (lists int, writes int64, lag time.Duration) {
	b.Helper()
	e := newEnv(b)
	ctx := e.ctx
	// Seed and sync (not measured).
	seed := make([]string, 0, burstSeed)
	for i := 0; i < burstSeed; i++ {
		seed = append(seed, e.insert(fmt.Sprintf("seed %d", i)).Id)
	}
	handle, writeCount := v.setup(b, e)
	if err := handle(ctx, messages.Notification{CalendarKey: e.key, ResourceState: messages.StateSync, ReceivedAt: time.Now().UTC()}); err != nil {
		b.Fatal(err)
	}

	// Push: emulator → webhook → handler, at most burstConsumers at once.
	sem := make(chan struct{}, burstConsumers)
	var inflight sync.WaitGroup
	var handled, failed atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := messages.Notification{CalendarKey: e.key, ResourceState: r.Header.Get("X-Goog-Resource-State"), ReceivedAt: time.Now().UTC()}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := handle(ctx, n); err != nil {
				failed.Add(1)
			}
			handled.Add(1)
		}()
		w.WriteHeader(http.StatusOK)
	}))
	defer hook.Close()
	if _, err := e.svc.Events.Watch(e.calID, &calendar.Channel{Id: uuid.NewString(), Type: "web_hook", Address: hook.URL}).Context(ctx).Do(); err != nil {
		b.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the channel's "sync" message
	inflight.Wait()

	lists0, writes0 := e.lists(), writeCount()
	tick := time.NewTicker(time.Second / burstRate)
	for i := 0; i < burstChanges; i++ {
		<-tick.C
		if i%2 == 0 {
			e.update(seed[i/2], fmt.Sprintf("changed %d", i))
		} else {
			e.insert(fmt.Sprintf("new %d", i))
		}
	}
	tick.Stop()
	last := time.Now()
	if benchDebug {
		b.Logf("last change %s", last.Format("05.000"))
	}

	// The mirror must become exactly the calendar: poll it.
	want, err := syncertest.Expected(ctx, e.svc, e.calID)
	if err != nil {
		b.Fatal(err)
	}
	expectedLists := 1
	lag = -1
	deadline := time.Time{}
	for {
		got, err := syncertest.Mirror(ctx, e.st, e.key)
		if err != nil {
			b.Fatal(err)
		}
		if maps.Equal(got, want) {
			lag = time.Since(last)
			break
		}
		sent := e.srv.Stats().Notifications.Sent
		if deadline.IsZero() && handled.Load() >= int64(sent) && len(sem) == 0 {
			deadline = time.Now().Add(20 * time.Second)
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // a poll reads the whole mirror: keep it light
	}
	if benchDebug {
		b.Logf("exact at %s", time.Now().Format("05.000"))
	}
	inflight.Wait()
	if failed.Load() > 0 {
		b.Logf("%s: %d notifications failed", v.name, failed.Load())
	}
	return e.lists() - lists0 - expectedLists, writeCount() - writes0, lag
}

// naiveVariant: every notification runs an incremental sync from the stored
// token (etag-checked writes, token stored after), with no lease and no
// coalescing.
func naiveVariant(b *testing.B, e *env) (func(context.Context, messages.Notification) error, func() int64) {
	var writes atomic.Int64
	return func(ctx context.Context, _ messages.Notification) error {
		c, err := e.st.GetCalendar(ctx, e.key)
		if err != nil {
			return err
		}
		token, pageToken := c.SyncToken, ""
		for {
			call := e.svc.Events.List(e.calID).ShowDeleted(true).MaxResults(2500).Context(ctx)
			if token != "" {
				call.SyncToken(token)
			}
			if pageToken != "" {
				call.PageToken(pageToken)
			}
			page, err := call.Do()
			if err != nil {
				return err
			}
			n, err := writeChanged(ctx, e.st, e.key, page.Items, func(m store.EventMeta, ev *calendar.Event) bool { return !m.Exists || m.Etag != ev.Etag })
			writes.Add(n)
			if err != nil {
				return err
			}
			if page.NextPageToken == "" {
				_, err := e.st.CalendarRef(e.key).Update(ctx, []firestore.Update{{Path: "syncToken", Value: page.NextSyncToken}})
				return err
			}
			pageToken = page.NextPageToken
		}
	}, writes.Load
}

// forumVariant: every notification lists every event and writes those whose
// sequence differs from the stored one (kept in memory here, which favours
// the baseline).
func forumVariant(b *testing.B, e *env) (func(context.Context, messages.Notification) error, func() int64) {
	var writes atomic.Int64
	var mu sync.Mutex
	seq := map[string]int64{}
	return func(ctx context.Context, _ messages.Notification) error {
		return e.svc.Events.List(e.calID).MaxResults(2500).Pages(ctx, func(page *calendar.Events) error {
			var changed []*calendar.Event
			mu.Lock()
			for _, ev := range page.Items {
				if s, ok := seq[ev.Id]; !ok || s != ev.Sequence {
					changed = append(changed, ev)
					seq[ev.Id] = ev.Sequence
				}
			}
			mu.Unlock()
			n, err := writeChanged(ctx, e.st, e.key, changed, nil)
			writes.Add(n)
			return err
		})
	}, writes.Load
}

// writeChanged writes the items that need it (all when need is nil).
func writeChanged(ctx context.Context, st *store.Store, key string, items []*calendar.Event, need func(store.EventMeta, *calendar.Event) bool) (int64, error) {
	var existing map[string]store.EventMeta
	if need != nil {
		ids := make([]string, len(items))
		for i, ev := range items {
			ids[i] = ev.Id
		}
		var err error
		if existing, err = st.GetEvents(ctx, key, ids); err != nil {
			return 0, err
		}
	}
	var ws []store.EventWrite
	for _, ev := range items {
		if need != nil && !need(existing[ev.Id], ev) {
			continue
		}
		if ev.Status == "cancelled" && ev.RecurringEventId == "" {
			ws = append(ws, store.EventWrite{ID: ev.Id})
			continue
		}
		doc, err := store.EventDoc(ev, nil, time.Now())
		if err != nil {
			return 0, err
		}
		ws = append(ws, store.EventWrite{ID: ev.Id, Doc: doc})
	}
	// The baselines write as a naive syncer would: plain batches, no lease.
	for i := 0; i < len(ws); i += 500 {
		batch := st.Client.Batch()
		for _, w := range ws[i:min(i+500, len(ws))] {
			if w.Doc == nil {
				batch.Delete(st.Events(key).Doc(w.ID))
			} else {
				batch.Set(st.Events(key).Doc(w.ID), w.Doc)
			}
		}
		if _, err := batch.Commit(ctx); err != nil {
			return 0, err
		}
	}
	return int64(len(ws)), nil
}

var _ = testenv.ProjectID
var _ = calendaremu.DefaultUser
