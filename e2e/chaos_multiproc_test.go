package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/iterator"

	"github.com/calsync/calsync/scripts/devstack/calgen"
	"github.com/calsync/calsync/scripts/devstack/stack"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/faultproxy"
	"github.com/calsync/calsync/shared/testing/syncertest"
)

// The multi-process chaos test's shape.
const (
	mpCalendars    = 4
	mpEvents       = 100 // per calendar, before the storm
	mpMutations    = 600 // over all calendars
	mpRate         = 40  // mutations a second, over all calendars
	mpKillEvery    = 10 * time.Second
	mpPauses       = 2
	mpPauseFor     = leaseDuration + 3*time.Second // past the lease
	mpSampleEvery  = 300 * time.Millisecond
	mpDefaultSeeds = 2
	mpShow         = 12 // violations shown per invariant
)

// Production's shape under production's faults: 3 SyncWorker and 2 Webhook
// processes behind their fronts, Pub/Sub push from the emulator, 4 calendars
// of ~100 events (timed, all-day, recurring) and ~600 random mutations at
// ~40/s. Meanwhile a SyncWorker is killed (SIGKILL) about every 10 s and
// restarted, a Webhook once; twice a SyncWorker that the front counts as
// serving a request is paused (SIGSTOP) in the middle of a sync for longer
// than the lease, then continued: once right after Pub/Sub answered its
// publish of a page's change messages, before it wrote the page (the
// stack's Pub/Sub tap), once right after the Calendar API answered its
// incremental listing (the stack's Calendar hook). The SyncWorker front
// duplicates, delays and rejects deliveries. And Google Cloud misbehaves: a
// fault proxy between each function process and the Firestore and Pub/Sub
// emulators answers a share of the calls UNAVAILABLE before the service,
// applies a share of the writes (Commit, Publish) and loses their answer
// (UNAVAILABLE or DEADLINE_EXCEEDED), and delays a share by 0.2-2 s
// (CHAOS_FAULT_RATE, default 5% each; servicefaults_test.go); every fault is
// counted in the report. Checked, per seed:
//
//	(a) after quiet, the mirror equals the calendar by (id, etag);
//	(b) the last change message of every event is its final version
//	    (live: final etag, not deleted; gone but announced: deleted);
//	(c) polled every 300 ms and followed by Firestore listeners, no mirrored
//	    event ever goes back to an older version (updated, then sequence,
//	    then etag as a number) or comes back after its deletion;
//	(d) every notification a Webhook answered 2xx reached a SyncWorker that
//	    answered 2xx (none lost, none dead-lettered);
//	(e) each calendar's eventCount equals its mirrored documents;
//	(q) the system settles once the faults stop.
//
// Every violation is reported with its calendar, event and versions.
func TestChaosMultiProcess(t *testing.T) {
	if len(sys.SyncWorker.Instances) < 3 || len(sys.Webhook.Instances) < 2 {
		t.Fatalf("needs ≥3 SyncWorker and ≥2 Webhook processes, the stack has %d and %d", len(sys.SyncWorker.Instances), len(sys.Webhook.Instances))
	}
	for _, seed := range chaosSeedsOr(t, mpDefaultSeeds) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { chaosMultiProcess(t, seed) })
	}
}

// mpCal is one calendar of the run.
type mpCal struct {
	id, key string
	gen     *calgen.Gen
}

func chaosMultiProcess(t *testing.T, seed uint64) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	rng := mrand.New(mrand.NewPCG(seed, 0x3a11ce))
	svc := newService(t, ctx)

	// Calendars, filled in parallel.
	cals := make([]*mpCal, mpCalendars)
	var fill sync.WaitGroup
	fillErrs := make(chan error, mpCalendars)
	for i := range cals {
		id := newCalendar(t, ctx, svc, fmt.Sprintf("multiproc %d/%d", seed, i))
		cals[i] = &mpCal{id: id, key: store.CalendarKey(id), gen: calgen.New(svc, id, seed*100+uint64(i))}
		fill.Add(1)
		go func(c *mpCal) {
			defer fill.Done()
			if err := c.gen.Seed(ctx, mpEvents); err != nil {
				fillErrs <- fmt.Errorf("seed %s: %w", c.id, err)
			}
		}(cals[i])
	}
	fill.Wait()
	close(fillErrs)
	for err := range fillErrs {
		t.Fatal(err)
	}
	feed := newOrderedFeed(t, cals)
	for _, c := range cals {
		watchCalendar(t, ctx, c.id)
	}
	for _, c := range cals {
		waitConverged(t, ctx, svc, c.id, 90*time.Second)
	}
	t.Logf("seed %d: %d calendars of %d events watched and mirrored in %s", seed, mpCalendars, mpEvents, time.Since(start).Round(time.Millisecond))

	// Invariant (c) is sampled from now on.
	sampler := startSampler(ctx, t, cals)
	defer sampler.stop()

	// Faults.
	procs := newProcChaos(t)
	pauses := newPauser(t, procs, cals)
	sys.SetCalendarHook(pauses.hook)
	sys.SetPubSubHook(pauses.hookPubSub)
	front0 := sys.SyncWorker.Front.Stats()
	rates := serviceFaultRates(t)
	faults0 := sys.ServiceFaultCounts()
	sys.SetServiceFaults(rates)
	sys.SyncWorker.Front.SetFaults(stack.FrontFaults{DuplicateProbability: 0.15, DelayProbability: 0.15, Delay: time.Second,
		RejectProbability: 0.1, Seed: seed})
	cleanup := func() {
		sys.SetCalendarHook(nil)
		sys.SetPubSubHook(nil)
		sys.SyncWorker.Front.SetFaults(stack.FrontFaults{})
		sys.SetServiceFaults(faultproxy.Rates{})
		pauses.wait()
		procs.wait()
	}
	defer cleanup()
	stormCtx, stopStorm := context.WithCancel(ctx)
	var chaos sync.WaitGroup
	var kills []string
	var killMu sync.Mutex
	chaos.Add(1)
	go func() { // a SyncWorker killed about every 10s, a Webhook once
		defer chaos.Done()
		krng := mrand.New(mrand.NewPCG(seed, 0x6b111))
		next := 5*time.Second + time.Duration(krng.IntN(2000))*time.Millisecond
		webhookAt := 3*time.Second + time.Duration(krng.IntN(6000))*time.Millisecond
		t0 := time.Now()
		for stormCtx.Err() == nil {
			if webhookAt > 0 && time.Since(t0) >= webhookAt {
				webhookAt = 0
				w := krng.IntN(len(sys.Webhook.Instances))
				if in := sys.Webhook.Instances[w]; in.Kill() == nil {
					killMu.Lock()
					kills = append(kills, fmt.Sprintf("%s at %s", in.Name(), time.Since(t0).Round(100*time.Millisecond)))
					killMu.Unlock()
					if err := in.Restart(ctx); err != nil {
						procs.fail(err)
					}
				}
			}
			if time.Since(t0) >= next {
				next += mpKillEvery - 2*time.Second + time.Duration(krng.IntN(4000))*time.Millisecond
				if i, ok := pickUp(krng); ok {
					name := sys.SyncWorker.Instances[i].Name()
					if procs.killAndRestart(ctx, i, time.Duration(300+krng.IntN(1200))*time.Millisecond) {
						killMu.Lock()
						kills = append(kills, fmt.Sprintf("%s at %s", name, time.Since(t0).Round(100*time.Millisecond)))
						killMu.Unlock()
					}
				}
			}
			select {
			case <-stormCtx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	chaos.Add(1)
	go func() { // two pauses, the second armed while the first may still hold
		defer chaos.Done()
		for _, kind := range []string{"publish", "listing"} {
			select {
			case <-stormCtx.Done():
				return
			case <-time.After(time.Duration(1000+rng.IntN(1500)) * time.Millisecond):
			}
			pauses.pauseOne(stormCtx, kind, 4*time.Second)
		}
	}()

	// The storm: each calendar changed by its own goroutine, together ~40/s.
	stormStart := time.Now()
	per := mpMutations / mpCalendars
	every := time.Second * mpCalendars / mpRate
	var storm sync.WaitGroup
	stormErrs := make(chan error, mpCalendars)
	for _, c := range cals {
		storm.Add(1)
		go func(c *mpCal) {
			defer storm.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for i := 0; i < per; i++ {
				if _, err := c.gen.Step(ctx); err != nil {
					stormErrs <- fmt.Errorf("%s step %d: %w", c.id, i, err)
					return
				}
				<-tick.C
			}
		}(c)
	}
	storm.Wait()
	stormTook := time.Since(stormStart)
	close(stormErrs)
	for err := range stormErrs {
		t.Fatal(err)
	}
	// The kills go on until the pauses have run their course (a pause armed
	// late still happens) and the paused workers continued.
	pauses.waitDone(mpPauses, 30*time.Second)
	pauses.wait()
	stopStorm()
	chaos.Wait()
	procs.wait()
	sys.SetCalendarHook(nil)
	sys.SetPubSubHook(nil)
	sys.SyncWorker.Front.SetFaults(stack.FrontFaults{})
	sys.SetServiceFaults(faultproxy.Rates{})
	front := sys.SyncWorker.Front.Stats()
	serviceFaults := faultReport(faults0, sys.ServiceFaultCounts())
	t.Logf("seed %d: storm of %d mutations in %s (%.0f/s), faults over after %s",
		seed, per*mpCalendars, stormTook.Round(time.Millisecond), float64(per*mpCalendars)/stormTook.Seconds(), time.Since(stormStart).Round(time.Millisecond))

	// Quiet, the scheduler's safety net, quiet again. A system that does not
	// settle is a finding too; the checks still run.
	var found []string // every violation, by invariant
	report := map[string]string{}
	if err := quietWithin(3500*time.Millisecond, 2*time.Minute); err != nil {
		found = append(found, "(q) "+err.Error())
	}
	renew(t, ctx)
	if err := quietWithin(3500*time.Millisecond, time.Minute); err != nil {
		found = append(found, "(q) after RenewChannels: "+err.Error())
	}
	t.Logf("seed %d: quiet after %s", seed, time.Since(stormStart).Round(time.Millisecond))

	// (a) The mirror equals the calendar.
	wants := map[string]map[string]string{}
	aBad := 0
	for _, c := range cals {
		want, d := converge(ctx, t, svc, c.id, 30*time.Second)
		wants[c.key] = want
		if d != "" {
			aBad++
			found = append(found, fmt.Sprintf("(a) mirror of %s (%s) differs from the calendar after quiet: %s", c.id, c.key, d))
			for _, line := range explainDiff(ctx, t, svc, c, want, feed) {
				found = append(found, "(a)   "+line)
			}
		}
	}
	report["a"] = fmt.Sprintf("%d/%d calendars equal", mpCalendars-aBad, mpCalendars)

	// (b) The change feed ends on each event's final version.
	bProblems, bEvents := feed.lastVersionProblems(wants, 10*time.Second)
	for _, p := range bProblems {
		found = append(found, "(b) "+p)
	}
	report["b"] = fmt.Sprintf("%d events checked, %d end on another version", bEvents, len(bProblems))

	// (c) No event went back to an older version.
	sampler.stop()
	regressions, polls, snapshots, sampleErrs := sampler.result()
	for _, r := range regressions {
		found = append(found, "(c) "+r)
	}
	if len(sampleErrs) > 0 {
		t.Errorf("reading the mirrors during the run failed %d times: %v", len(sampleErrs), head(sampleErrs))
	}
	report["c"] = fmt.Sprintf("%d polls of the 4 mirrors and %d listener snapshots, %d times an event went back", polls, snapshots, len(regressions))

	// (d) Nothing a Webhook acknowledged was lost.
	dProblems, dStats := lostNotifications(cals, 10*time.Second)
	for _, p := range dProblems {
		found = append(found, "(d) "+p)
	}
	report["d"] = dStats

	// (e) eventCount is the number of mirrored documents.
	eBad := 0
	for _, c := range cals {
		got, err := gotMirror(ctx, firestoreClient(t), c.key)
		if err != nil {
			t.Fatal(err)
		}
		if n := calendarDoc(t, ctx, c.key).EventCount; n != int64(len(got)) {
			eBad++
			found = append(found, fmt.Sprintf("(e) %s (%s): eventCount %d, %d documents mirrored", c.id, c.key, n, len(got)))
		}
	}
	report["e"] = fmt.Sprintf("%d/%d calendars exact", mpCalendars-eBad, mpCalendars)

	// The faults that happened, as Pub/Sub and the front saw them.
	notes := seedNotifications(cals)
	redeliveries, deadLettered := 0, 0
	for _, n := range notes {
		if n.Attempts > 1 {
			redeliveries += n.Attempts - 1
		}
		if n.DeadLettered {
			deadLettered++
		}
	}
	t.Logf("seed %d faults: %d SyncWorker/Webhook kills %v; %d pauses %v; SyncWorker front: %d forwarded, %d duplicated, %d delayed, %d rejected, %d unavailable (503), %d timed out; Pub/Sub: %d notifications (Webhook, RenewChannels, CLI), %d redeliveries, %d dead letters",
		seed, len(kills), kills, len(pauses.done()), pauses.report(), front.Forwarded-front0.Forwarded, front.Duplicated-front0.Duplicated,
		front.Delayed-front0.Delayed, front.Rejected-front0.Rejected, front.Unavailable-front0.Unavailable, front.TimedOut-front0.TimedOut,
		len(notes), redeliveries, deadLettered)
	t.Logf("seed %d service faults (rates: before %.2f, lost %.2f, contention %.2f, latency %.2f): %s", seed, rates.Before, rates.Lost, rates.Contention, rates.Latency, serviceFaults)
	t.Logf("seed %d invariants: (a) %s; (b) %s; (c) %s; (d) %s; (e) %s; %s in all",
		seed, report["a"], report["b"], report["c"], report["d"], report["e"], time.Since(start).Round(time.Millisecond))
	if len(pauses.done()) < mpPauses {
		t.Errorf("only %d of %d pauses happened: %v", len(pauses.done()), mpPauses, pauses.report())
	}
	for _, c := range cals {
		unwatchCalendar(t, ctx, c.id)
	}
	if len(found) > 0 {
		sort.Strings(found)
		t.Errorf("seed %d: %d invariant violations (at most %d of each shown):\n  %s", seed, len(found), mpShow, strings.Join(firstOfEach(found, mpShow), "\n  "))
	}
}

// firstOfEach keeps the first n lines of each invariant ("(a) ...", "(b) ...").
func firstOfEach(lines []string, n int) []string {
	var out []string
	count := map[string]int{}
	for _, l := range lines {
		inv := l[:min(3, len(l))]
		count[inv]++
		if count[inv] <= n {
			out = append(out, l)
		} else if count[inv] == n+1 {
			out = append(out, inv+" …")
		}
	}
	return out
}

// chaosSeedsOr is chaosSeeds with another default count.
func chaosSeedsOr(t *testing.T, n int) []uint64 {
	seeds := chaosSeeds(t)
	if v := envOr("CHAOS_SEEDS", ""); v == "" && len(seeds) > n {
		seeds = seeds[:n]
	}
	return seeds
}

// pickUp chooses a SyncWorker to kill among those up (not paused).
func pickUp(rng *mrand.Rand) (int, bool) {
	var up []int
	for i, in := range sys.SyncWorker.Instances {
		if in.State() == stack.StateUp {
			up = append(up, i)
		}
	}
	if len(up) == 0 {
		return 0, false
	}
	return up[rng.IntN(len(up))], true
}

// converge waits until the mirror equals the calendar and returns what the
// mirror must hold, or the last difference after timeout.
func converge(ctx context.Context, t *testing.T, svc *calendar.Service, calID string, timeout time.Duration) (map[string]string, string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		want, err := syncertest.Expected(ctx, svc, calID)
		if err != nil {
			t.Fatalf("list calendar: %v", err)
		}
		got, err := gotMirror(ctx, firestoreClient(t), store.CalendarKey(calID))
		if err != nil {
			t.Fatalf("read mirror: %v", err)
		}
		d := diff(want, got)
		if d == "" || time.Now().After(deadline) {
			return want, d
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// pauser SIGSTOPs SyncWorkers in the middle of a sync and SIGCONTs them
// after mpPauseFor.
type pauser struct {
	t     *testing.T
	procs *procChaos
	cals  map[string]bool // calendar ids of the run
	wg    sync.WaitGroup

	mu     sync.Mutex
	armed  chan struct{} // non-nil while a pause is wanted; closed once done
	kind   string        // what the armed pause waits for: "publish" or "listing"
	events []pauseEvent
	t0     time.Time
}

type pauseEvent struct {
	Instance string
	PID      int
	At       time.Duration // since the pauser started
	Trigger  string        // what the instance was doing
	InFlight int64
	Oldest   time.Duration // its oldest request in flight
}

func newPauser(t *testing.T, procs *procChaos, cals []*mpCal) *pauser {
	p := &pauser{t: t, procs: procs, cals: map[string]bool{}, t0: time.Now()}
	for _, c := range cals {
		p.cals[c.id] = true
	}
	return p
}

// hook runs for every Calendar API call: while a pause is armed, the first
// SyncWorker whose incremental events.list of one of the run's calendars was
// answered with events, and that the front counts as serving a request, is
// stopped there, before it has the answer: when it continues, its listing
// is older than the calendar and the lease it held has passed to another.
func (p *pauser) hook(c stack.CalendarCall) {
	p.mu.Lock()
	kind := p.kind
	p.mu.Unlock()
	if kind != "listing" || c.Status != 200 || c.Bytes < 1000 || c.Request.Method != "GET" || c.Request.URL.Query().Get("syncToken") == "" {
		return
	}
	calID, ok := listedCalendar(c.Request.URL.Path)
	if !ok || !p.cals[calID] {
		return
	}
	fn, i, err := sys.CallerOf(c.Request)
	if err != nil || fn != stack.SyncWorker {
		return
	}
	p.pause(i, "right after its incremental events.list of "+calID+" was answered ("+strconv.Itoa(c.Bytes)+" bytes)")
}

// hookPubSub runs for every chunk of the Pub/Sub emulator's answers to a
// SyncWorker: while a "publish" pause is armed, the first SyncWorker that
// the front counts as serving a request and that gets an answer the size of
// a Publish response (not an HTTP/2 ping or settings frame) is stopped
// before it has it: it has published a page's change messages and not
// written them; when it continues, they are older than the calendar and the
// lease has passed to another instance.
func (p *pauser) hookPubSub(a stack.PubSubAnswer) {
	p.mu.Lock()
	kind := p.kind
	p.mu.Unlock()
	if kind != "publish" || a.Bytes < 40 || a.Instance == nil {
		return
	}
	p.pause(a.Instance.Index, fmt.Sprintf("right after Pub/Sub answered its publish (%d bytes), before its writes", a.Bytes))
}

// listedCalendar reads the calendar id of /calendar/v3/calendars/{id}/events.
func listedCalendar(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/calendar/v3/calendars/")
	if !ok {
		return "", false
	}
	id, ok := strings.CutSuffix(rest, "/events")
	if !ok || strings.Contains(id, "/") {
		return "", false
	}
	if u, err := url.PathUnescape(id); err == nil {
		id = u
	}
	return id, true
}

// pause stops SyncWorker i if a pause is armed and i is free and serving a
// request; it is continued after mpPauseFor.
func (p *pauser) pause(i int, trigger string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.armed == nil {
		return false
	}
	in := sys.SyncWorker.Instances[i]
	info := in.Info()
	if info.State != stack.StateUp || info.InFlight == 0 || !p.procs.claim(i) {
		return false
	}
	if err := in.Pause(); err != nil {
		p.procs.release(i)
		p.procs.fail(err)
		return false
	}
	p.events = append(p.events, pauseEvent{Instance: in.Name(), PID: info.PID, At: time.Since(p.t0).Round(100 * time.Millisecond),
		Trigger: trigger, InFlight: info.InFlight, Oldest: info.OldestInFlight.Round(time.Millisecond)})
	close(p.armed)
	p.armed, p.kind = nil, ""
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer p.procs.release(i)
		time.Sleep(mpPauseFor)
		if err := in.Resume(); err != nil {
			p.procs.fail(err)
		}
	}()
	return true
}

// pauseOne arms a pause of a kind ("publish": hookPubSub, "listing": hook)
// and waits for the hook to make it; if none qualifies within patience, it
// pauses the SyncWorker whose request has been in flight longest (the
// front's counters).
func (p *pauser) pauseOne(ctx context.Context, kind string, patience time.Duration) {
	done := make(chan struct{})
	p.mu.Lock()
	p.armed, p.kind = done, kind
	p.mu.Unlock()
	select {
	case <-done:
		return
	case <-ctx.Done():
	case <-time.After(patience):
	}
	for deadline := time.Now().Add(patience); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		best, oldest := -1, time.Duration(0)
		for i, info := range sys.SyncWorker.Infos() {
			if info.State == stack.StateUp && info.InFlight > 0 && info.OldestInFlight > oldest {
				best, oldest = i, info.OldestInFlight
			}
		}
		if best >= 0 && p.pause(best, fmt.Sprintf("serving a request for %s (no %s qualified within %s)", oldest.Round(time.Millisecond), kind, patience)) {
			return
		}
	}
	p.mu.Lock()
	p.armed, p.kind = nil, ""
	p.mu.Unlock()
}

// waitDone waits until n pauses have happened (or timeout).
func (p *pauser) waitDone(n int, timeout time.Duration) {
	for deadline := time.Now().Add(timeout); len(p.done()) < n && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *pauser) done() []pauseEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]pauseEvent(nil), p.events...)
}

// wait lets every paused instance continue.
func (p *pauser) wait() { p.wg.Wait() }

func (p *pauser) report() []string {
	var out []string
	for _, e := range p.done() {
		out = append(out, fmt.Sprintf("%s (pid %d) at %s for %s, %s, %d request(s) in flight, oldest %s",
			e.Instance, e.PID, e.At, mpPauseFor, e.Trigger, e.InFlight, e.Oldest))
	}
	return out
}

// orderedFeed records the changes topic per calendar in publish order (an
// ordered subscription: the SyncWorker publishes with the calendar key as
// ordering key).
type orderedFeed struct {
	mu     sync.Mutex
	byKey  map[string][]messages.Change
	bad    []string
	cancel context.CancelFunc
	done   chan struct{}
}

func newOrderedFeed(t *testing.T, cals []*mpCal) *orderedFeed {
	t.Helper()
	ctx := context.Background()
	id := "e2e-ordered-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := pubsubx.EnsureSubscription(ctx, sys.PubSub, sys.ChangesTopic, id, true); err != nil {
		t.Fatal(err)
	}
	f := &orderedFeed{byKey: map[string][]messages.Change{}, done: make(chan struct{})}
	keys := map[string]bool{}
	for _, c := range cals {
		keys[c.key] = true
	}
	rctx, cancel := context.WithCancel(ctx)
	f.cancel = cancel
	go func() {
		defer close(f.done)
		_ = sys.PubSub.Subscriber(id).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			if !keys[m.Attributes[messages.AttrCalendarKey]] {
				return
			}
			var c messages.Change
			f.mu.Lock()
			defer f.mu.Unlock()
			if err := json.Unmarshal(m.Data, &c); err != nil || c.EventID == "" || m.OrderingKey != c.CalendarKey {
				f.bad = append(f.bad, fmt.Sprintf("bad change message (ordering key %q): %s", m.OrderingKey, m.Data))
				return
			}
			if err := syncertest.ValidateChange(m.Data); err != nil {
				f.bad = append(f.bad, err.Error())
				return
			}
			f.byKey[c.CalendarKey] = append(f.byKey[c.CalendarKey], c)
		})
	}()
	t.Cleanup(func() { cancel(); <-f.done })
	return f
}

// lastVersionProblems checks (b) until it holds or timeout, and returns the
// problems left and how many events were checked.
func (f *orderedFeed) lastVersionProblems(wants map[string]map[string]string, timeout time.Duration) ([]string, int) {
	deadline := time.Now().Add(timeout)
	for {
		problems, n := f.check(wants)
		if len(problems) == 0 || time.Now().After(deadline) {
			return problems, n
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (f *orderedFeed) check(wants map[string]map[string]string) ([]string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	problems := append([]string(nil), f.bad...)
	n := 0
	for key, want := range wants {
		last := map[string]messages.Change{}
		history := map[string][]string{}
		for _, c := range f.byKey[key] {
			last[c.EventID] = c
			history[c.EventID] = append(history[c.EventID], c.Change+" "+c.Etag)
		}
		for id, etag := range want {
			n++
			c, ok := last[id]
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("%s event %s: final version %s never announced", key, id, etag))
			case c.Change == messages.ChangeDeleted || c.Etag != etag:
				problems = append(problems, fmt.Sprintf("%s event %s: last message %s %s, final version %s (history %v)", key, id, c.Change, c.Etag, etag, tail(history[id], 5)))
			}
		}
		for id, c := range last {
			if _, live := want[id]; live {
				continue
			}
			n++
			if c.Change != messages.ChangeDeleted {
				problems = append(problems, fmt.Sprintf("%s event %s: gone from the calendar, last message %s %s (history %v)", key, id, c.Change, c.Etag, tail(history[id], 5)))
			}
		}
	}
	sort.Strings(problems)
	return problems, n
}

func tail(s []string, n int) []string {
	if len(s) > n {
		return append([]string{"…"}, s[len(s)-n:]...)
	}
	return s
}

// version orders an event's stored versions: updated, then sequence, then
// the etag as a number (Google's etags are quoted decimals). A cancelled
// occurrence carries no updated (nor a meaningful sequence): when either
// side lacks updated, the etags decide.
type version struct {
	updated  time.Time
	sequence int64
	etag     string
	etagNum  uint64
}

func (v version) String() string {
	if v.updated.IsZero() {
		return fmt.Sprintf("(no updated) sequence %d etag %s", v.sequence, v.etag)
	}
	return fmt.Sprintf("updated %s sequence %d etag %s", v.updated.Format("15:04:05.000"), v.sequence, v.etag)
}

func (v version) less(o version) bool {
	if v.updated.IsZero() || o.updated.IsZero() {
		return v.etagNum < o.etagNum
	}
	if !v.updated.Equal(o.updated) {
		return v.updated.Before(o.updated)
	}
	if v.sequence != o.sequence {
		return v.sequence < o.sequence
	}
	return v.etagNum < o.etagNum
}

func versionOf(d map[string]any) version {
	v := version{}
	if s, ok := d["updated"].(string); ok {
		v.updated, _ = time.Parse(time.RFC3339Nano, s)
	}
	switch n := d["sequence"].(type) {
	case int64:
		v.sequence = n
	case float64:
		v.sequence = int64(n)
	}
	v.etag, _ = d["etag"].(string)
	v.etagNum, _ = strconv.ParseUint(strings.Trim(v.etag, `"`), 10, 64)
	return v
}

// sampler records every time an event's stored version goes back (c),
// deletions and re-appearances included, from two views of the mirrors: a
// poll of every calendar's documents every mpSampleEvery, and a Firestore
// listener per calendar (each snapshot it delivers, within milliseconds of
// a commit, so short-lived regressions between two polls are seen too). Each
// view compares a document with its own previous observation.
type sampler struct {
	mu          sync.Mutex
	views       map[string]*view // "poll" or "listen" + calendar key
	regressions []string
	reported    map[string]bool // one line per (event, before, after)
	polls       int
	snapshots   int
	errs        []string
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	once        sync.Once
}

type view struct {
	seen map[string]version // id → version in the last observation
	gone map[string]version // id → version before it disappeared
}

func startSampler(ctx context.Context, t *testing.T, cals []*mpCal) *sampler {
	s := &sampler{views: map[string]*view{}, reported: map[string]bool{}}
	ctx, s.cancel = context.WithCancel(ctx)
	fs := firestoreClient(t)
	t0 := time.Now()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for ctx.Err() == nil {
			for _, c := range cals {
				s.poll(ctx, fs, c, t0)
			}
			select {
			case <-ctx.Done():
			case <-time.After(mpSampleEvery):
			}
		}
	}()
	for _, c := range cals {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.listen(ctx, fs, c, t0)
		}()
	}
	return s
}

func (s *sampler) events(fs *firestore.Client, c *mpCal) firestore.Query {
	return fs.Collection(store.CollCalendars).Doc(c.key).Collection(store.CollEvents).Query
}

func (s *sampler) poll(ctx context.Context, fs *firestore.Client, c *mpCal, t0 time.Time) {
	now := map[string]version{}
	it := s.events(fs, c).Select("updated", "sequence", "etag").Documents(ctx)
	defer it.Stop()
	for {
		snap, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			s.fail(ctx, "poll", err)
			return
		}
		now[snap.Ref.ID] = versionOf(snap.Data())
	}
	s.observe("poll", c, now, time.Since(t0))
}

// listen follows a calendar's events with a snapshot listener, restarting it
// if the stream breaks (the first snapshot of a new stream holds every
// document, compared like any other).
func (s *sampler) listen(ctx context.Context, fs *firestore.Client, c *mpCal, t0 time.Time) {
	for ctx.Err() == nil {
		it := s.events(fs, c).Snapshots(ctx)
		for {
			qs, err := it.Next()
			if err != nil {
				s.fail(ctx, "listen", err)
				break
			}
			now := map[string]version{}
			for _, d := range mustDocs(qs) {
				now[d.Ref.ID] = versionOf(d.Data())
			}
			s.observe("listen", c, now, time.Since(t0))
		}
		it.Stop()
	}
}

func mustDocs(qs *firestore.QuerySnapshot) []*firestore.DocumentSnapshot {
	docs, _ := qs.Documents.GetAll() // in memory: cannot fail
	return docs
}

func (s *sampler) fail(ctx context.Context, source string, err error) {
	if ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, source+": "+err.Error())
}

func (s *sampler) observe(source string, c *mpCal, now map[string]version, at time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if source == "poll" {
		s.polls++
	} else {
		s.snapshots++
	}
	v := s.views[source+c.key]
	if v == nil {
		v = &view{seen: map[string]version{}, gone: map[string]version{}}
		s.views[source+c.key] = v
	}
	report := func(id, what string, before, after version) {
		k := id + before.etag + after.etag
		if s.reported[k] {
			return
		}
		s.reported[k] = true
		s.regressions = append(s.regressions, fmt.Sprintf("at +%s (%s) %s (%s) event %s %s: %s -> %s",
			at.Round(time.Millisecond), source, c.id, c.key, id, what, before, after))
	}
	for id, cur := range now {
		if old, ok := v.seen[id]; ok && cur.less(old) {
			report(id, "went back", old, cur)
		}
		if old, ok := v.gone[id]; ok {
			// Deleted from the mirror, then back: the deletion stood for a
			// newer version of the event (Google never reuses an id).
			report(id, "came back after it was deleted (before the deletion -> now)", old, cur)
			delete(v.gone, id)
		}
		v.seen[id] = cur
	}
	for id, old := range v.seen {
		if _, still := now[id]; !still {
			v.gone[id] = old
			delete(v.seen, id)
		}
	}
}

func (s *sampler) stop() {
	s.once.Do(func() { s.cancel(); s.wg.Wait() })
}

// result returns the regressions, and how many polls (of all calendars) and
// listener snapshots were compared.
func (s *sampler) result() (regressions []string, polls, snapshots int, errs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.regressions...), s.polls / mpCalendars, s.snapshots, append([]string(nil), s.errs...)
}

// seedNotifications are the notifications of the run's calendars that reached
// the SyncWorker front.
func seedNotifications(cals []*mpCal) []stack.NotificationRecord {
	keys := map[string]bool{}
	for _, c := range cals {
		keys[c.key] = true
	}
	var out []stack.NotificationRecord
	for _, n := range sys.Notifications() {
		if keys[n.Notification.CalendarKey] {
			out = append(out, n)
		}
	}
	return out
}

// lostNotifications checks (d): every push a Webhook answered 2xx on one of
// the run's channels was delivered to a SyncWorker that answered 2xx, and
// none was dead-lettered. It waits up to timeout for stragglers.
func lostNotifications(cals []*mpCal, timeout time.Duration) ([]string, string) {
	ours := map[string]bool{}
	for _, c := range cals {
		ours[c.id] = true
	}
	channels := map[string]bool{}
	for _, ch := range sys.Calendar.Channels() {
		if ours[ch.Calendar] {
			channels[ch.ID] = true
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		type nk struct {
			ch  string
			num int64
		}
		acked := map[nk]bool{}
		for _, a := range sys.WebhookAcks() {
			if channels[a.ChannelID] {
				acked[nk{a.ChannelID, a.MessageNumber}] = true
			}
		}
		delivered := map[nk]bool{}
		var problems []string
		notes := seedNotifications(cals)
		for _, n := range notes {
			k := nk{n.Notification.ChannelID, n.Notification.MessageNumber}
			if n.Acked {
				delivered[k] = true
			}
			if n.DeadLettered {
				problems = append(problems, fmt.Sprintf("notification %s (channel %s message %d, %s) dead-lettered after %d attempts %v",
					n.MessageID, k.ch, k.num, n.Notification.ResourceState, n.Attempts, n.Statuses))
			}
		}
		for k := range acked {
			if !delivered[k] {
				problems = append(problems, fmt.Sprintf("channel %s message %d: answered 2xx by a Webhook, never acknowledged by a SyncWorker", k.ch, k.num))
			}
		}
		sort.Strings(problems)
		stats := fmt.Sprintf("%d pushes acknowledged by a Webhook, %d of them acknowledged by a SyncWorker",
			len(acked), len(acked)-countMissing(acked, delivered))
		if len(problems) == 0 || time.Now().After(deadline) {
			return problems, stats
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func countMissing[K comparable](want, got map[K]bool) int {
	n := 0
	for k := range want {
		if !got[k] {
			n++
		}
	}
	return n
}

// explainDiff says, for each event the mirror got wrong (at most 5), what
// the mirror, the calendar and the feed hold of it and of its series master:
// what a failed seed needs to be understood without rerunning it.
func explainDiff(ctx context.Context, t *testing.T, svc *calendar.Service, c *mpCal, want map[string]string, feed *orderedFeed) []string {
	st := store.New(firestoreClient(t))
	got, err := gotMirror(ctx, st.Client, c.key)
	if err != nil {
		return []string{"read mirror: " + err.Error()}
	}
	var ids []string
	for id, etag := range want {
		if got[id] != etag {
			ids = append(ids, id)
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	var out []string
	describe := func(id string) string {
		var b strings.Builder
		if m, err := st.GetEvents(ctx, c.key, []string{id}); err != nil {
			fmt.Fprintf(&b, "mirror: %v", err)
		} else if e := m[id]; e.Exists {
			fmt.Fprintf(&b, "mirror {%s etag %s updated %s seq %d series %v written %s}", e.Status, e.Etag, e.Updated, e.Sequence, e.Series, e.UpdateTime.Format(time.RFC3339Nano))
		} else {
			b.WriteString("mirror: none")
		}
		if ev, err := svc.Events.Get(c.id, id).Context(ctx).Do(); err != nil {
			fmt.Fprintf(&b, "; calendar: %v", err)
		} else {
			fmt.Fprintf(&b, "; calendar {%s etag %s updated %s seq %d}", ev.Status, ev.Etag, ev.Updated, ev.Sequence)
		}
		feed.mu.Lock()
		var msgs []string
		for _, m := range feed.byKey[c.key] {
			if m.EventID == id {
				msgs = append(msgs, fmt.Sprintf("%s %s@%s", m.Change, m.Etag, m.SyncedAt.Format("15:04:05.000")))
			}
		}
		feed.mu.Unlock()
		fmt.Fprintf(&b, "; feed %v", msgs)
		return b.String()
	}
	for _, id := range ids[:min(5, len(ids))] {
		line := id + ": " + describe(id)
		if master, _, ok := strings.Cut(id, "_"); ok {
			line += " | master " + master + ": " + describe(master)
		}
		out = append(out, line)
	}
	return out
}
