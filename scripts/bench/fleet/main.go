// Command fleet is the fleet benchmark: a Workspace of calendars across
// identities enrolled with the enrollment engine, a Poisson stream of
// changes for a while, several SyncWorker OS processes behind a Pub/Sub
// bridge, the Webhook in a process of its own; it measures per notification
// and per change the Calendar API calls, Firestore reads, writes and
// deletes, function invocations, Pub/Sub bytes, busy and CPU time, the lag
// from a change to its message on the change feed, and prices it all in
// dollars per 1,000 calendars per month at Google's list prices, next to the
// floor. See README.md.
//
//	go run ./scripts/bench/fleet [--calendars 1000] [--identities 100] [--duration 5m] [--rate 5] [--workers 3]
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"github.com/sethvargo/go-envconfig"
	"golang.org/x/oauth2"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/option"

	"github.com/calsync/calsync/scripts/bench/fleet/count"
	"github.com/calsync/calsync/shared/app"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/renewer"
	"github.com/calsync/calsync/shared/sealed"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/emulators"
	"github.com/calsync/calsync/shared/testing/faultproxy"
)

type options struct {
	calendars, identities, workers, events int
	duration                               time.Duration
	rate                                   float64
	out                                    string
	seed                                   uint64
	verbose                                bool
	costLoad                               float64
	faultRate                              float64
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var o options
	flag.IntVar(&o.calendars, "calendars", 1000, "calendars in the fleet (a multiple of --identities)")
	flag.IntVar(&o.identities, "identities", 100, "Workspace users the calendars belong to (each: a primary calendar and secondary ones)")
	flag.IntVar(&o.workers, "workers", 3, "SyncWorker processes")
	flag.IntVar(&o.events, "events", 10, "events per calendar before the stream")
	flag.DurationVar(&o.duration, "duration", 5*time.Minute, "how long the stream of changes lasts")
	flag.Float64Var(&o.rate, "rate", 5, "changes per second across the fleet (Poisson arrivals, uniform over calendars)")
	flag.StringVar(&o.out, "out", ".devstack/bench", "directory for fleet.md and fleet.json")
	flag.Uint64Var(&o.seed, "seed", 1, "random seed")
	flag.BoolVar(&o.verbose, "v", false, "show the workers' logs (warnings and errors)")
	flag.Float64Var(&o.costLoad, "cost-load", 20, "changes a calendar a day the cost table is computed for")
	flag.Float64Var(&o.faultRate, "fault-rate", 0, "during the stream, this share of the functions' Firestore and Pub/Sub calls each get every kind of Google Cloud fault (refused before the service, a write applied with its answer lost, 0.2-2 s late: shared/testing/faultproxy)")
	from := flag.String("from", "", "write the report again from a fleet.json (with --cost-load and --out), without running")
	flag.Parse()
	if *from != "" {
		if err := rewrite(*from, o); err != nil {
			fmt.Fprintln(os.Stderr, "fleet:", err)
			os.Exit(1)
		}
		return
	}
	if o.identities < 1 || o.calendars < o.identities || o.calendars%o.identities != 0 || o.workers < 1 || o.rate <= 0 || o.faultRate < 0 || o.faultRate > 0.3 {
		fmt.Fprintln(os.Stderr, "fleet: --calendars must be a positive multiple of --identities; --workers and --rate positive; --fault-rate 0 to 0.3")
		os.Exit(2)
	}
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		stop()
		os.Exit(1)
	}
}

func say(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s fleet: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

// fleet is the running system.
type fleet struct {
	o        options
	project  string
	emu      *calendaremu.Server
	base     string
	ps       *pubsub.Client
	fs       *firestore.Client // the harness's counting client
	st       *store.Store
	harness  *count.Counters     // the harness's own Firestore client (enrollment, RenewChannels run, directory diff)
	workers  []string            // SyncWorker base URLs
	proxies  []*faultproxy.Proxy // between the functions and Firestore and Pub/Sub (--fault-rate)
	webhook  string
	procs    []*exec.Cmd
	env      map[string]string
	delivers atomic.Int64 // SyncWorker invocations through the bridge (retries included)
	lastMove atomic.Int64 // unix nanos of the bridge's last delivery
	owners   map[string]*calendar.Service
	events   map[string][]string // calendar id → event ids
	calIDs   []string
}

func run(ctx context.Context, o options) (err error) {
	f := &fleet{o: o, project: fmt.Sprintf("fleet-%d", time.Now().Unix()), harness: count.New(),
		owners: map[string]*calendar.Service{}, events: map[string][]string{}}
	defer f.stop()
	for _, k := range []emulators.Kind{emulators.Firestore, emulators.PubSub} {
		if os.Getenv(k.EnvVar()) != "" {
			continue
		}
		p, err := emulators.Start(ctx, k, 0)
		if err != nil {
			return err
		}
		defer p.Stop()
		os.Setenv(k.EnvVar(), p.Host)
	}
	f.emu = calendaremu.New(calendaremu.Options{PushRetryBaseDelay: 200 * time.Millisecond, QuotaPerMinute: 600})
	var stopCal func()
	if f.base, stopCal, err = f.emu.Listen(ctx, "127.0.0.1:0"); err != nil {
		return err
	}
	defer func() { stopCal(); f.emu.Close() }()
	if f.ps, err = pubsubx.NewClient(ctx, f.project, ""); err != nil {
		return err
	}
	defer f.ps.Close()
	for _, t := range []string{"notifications", "changes"} {
		if err := pubsubx.EnsureTopic(ctx, f.ps, t); err != nil {
			return err
		}
	}
	if err := pubsubx.EnsureSubscription(ctx, f.ps, "notifications", "bridge", false); err != nil {
		return err
	}
	if err := pubsubx.EnsureSubscription(ctx, f.ps, "changes", "feed", true); err != nil {
		return err
	}
	fs, err := f.harness.Firestore(ctx, os.Getenv("FIRESTORE_EMULATOR_HOST"), f.project)
	if err != nil {
		return err
	}
	defer fs.Close()
	f.fs, f.st = fs, store.New(fs)
	if err := f.startProcesses(ctx); err != nil {
		return err
	}
	bridgeCtx, stopBridge := context.WithCancel(ctx)
	defer stopBridge()
	go f.bridge(bridgeCtx)

	say("building the Workspace: %d identities, %d calendars, %d events each", o.identities, o.calendars, o.events)
	if err := f.buildWorkspace(ctx); err != nil {
		return err
	}
	// Enrollment as RenewChannels (or the CLI) has it, twice its default
	// concurrency: the Workspace's setup, not what is measured per change.
	enrolling, err := f.build(ctx, map[string]string{"RENEW_CONCURRENCY": "16"})
	if err != nil {
		return err
	}
	defer enrolling.Close()
	en := enrolling.Enroller
	t0 := time.Now()
	res, err := en.EnrollDomain(ctx, enroll.DomainSpec{Domain: "fleet.test", Admin: "user000@fleet.test"}, nil)
	if err != nil {
		return err
	}
	say("enrolled %d identities and %d calendars in %s (one call); waiting for the first syncs", res.Enrolled, res.Calendars, time.Since(t0).Round(time.Millisecond))
	if err := f.waitSynced(ctx, 15*time.Minute); err != nil {
		return err
	}
	enrollTime := time.Since(t0)
	say("every calendar mirrored %s after enrolling; settling", enrollTime.Round(time.Second))
	f.waitIdle(ctx, 5*time.Second, 5*time.Minute)

	m, err := f.stream(ctx)
	if err != nil {
		return err
	}
	m.EnrollSeconds = enrollTime.Seconds()
	say("measuring the background: a reconcile of every calendar, a RenewChannels run, a directory diff")
	if err := f.background(ctx, en, m); err != nil {
		return err
	}
	stopBridge()
	return m.write(o)
}

// startProcesses builds the worker binary and starts the Webhook and the SyncWorkers.
func (f *fleet) startProcesses(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "fleet-")
	if err != nil {
		return err
	}
	bin := filepath.Join(dir, "worker")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./scripts/bench/fleet/worker").CombinedOutput(); err != nil {
		return fmt.Errorf("go build worker: %v\n%s", err, out)
	}
	tokenKey := make([]byte, 32)
	for i := range tokenKey {
		tokenKey[i] = byte(rand.IntN(256))
	}
	priv, _, err := sealed.GenerateKey("f1")
	if err != nil {
		return err
	}
	f.env = map[string]string{
		"PROJECT_ID": f.project, "FIRESTORE_EMULATOR_HOST": os.Getenv("FIRESTORE_EMULATOR_HOST"),
		"PUBSUB_EMULATOR_HOST": os.Getenv("PUBSUB_EMULATOR_HOST"), "NOTIFICATIONS_TOPIC": "notifications", "CHANGES_TOPIC": "changes",
		"NOTIFICATION_SUBSCRIPTIONS": "bridge",
		"CHANNEL_TOKEN_KEYS":         "k1:" + base64.StdEncoding.EncodeToString(tokenKey), "CREDENTIAL_PRIVATE_KEYS": priv,
		"CALENDAR_ENDPOINT": f.base + calendaremu.APIPath, "OAUTH_TOKEN_URL": f.base + "/token", "OAUTH_AUTH_URL": f.base + "/authorize",
		"LOG_LEVEL": "error",
		// As Terraform sets it: the SyncWorkers, RenewChannels and a spare.
		"CALENDAR_PROCESSES": strconv.Itoa(f.o.workers + 2),
	}
	if f.o.verbose {
		f.env["LOG_LEVEL"] = "warning"
	}
	if f.o.faultRate > 0 {
		// The functions talk to the emulators through fault proxies, quiet
		// until the stream; the harness talks to them directly.
		for i, name := range []string{"FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"} {
			p, err := faultproxy.Start("127.0.0.1:0", f.env[name], faultproxy.Options{Seed: f.o.seed*10 + uint64(i)})
			if err != nil {
				return err
			}
			f.proxies = append(f.proxies, p)
			f.env[name] = p.Addr()
		}
	}
	if f.webhook, err = f.start(ctx, bin, "webhook"); err != nil {
		return err
	}
	f.env["WEBHOOK_URL"] = f.webhook
	for range f.o.workers {
		u, err := f.start(ctx, bin, "sync")
		if err != nil {
			return err
		}
		f.workers = append(f.workers, u)
	}
	return nil
}

func (f *fleet) start(ctx context.Context, bin, role string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, "--role", role)
	cmd.Env = os.Environ()
	for k, v := range f.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stderr = io.Discard
	if f.o.verbose {
		cmd.Stderr = os.Stderr
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	f.procs = append(f.procs, cmd)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("%s did not start: %w", role, err)
	}
	return strings.TrimSpace(strings.TrimPrefix(line, "listening on ")), nil
}

// setFaults sets the rate of every fault kind on every proxy.
func (f *fleet) setFaults(rate float64) {
	for _, p := range f.proxies {
		p.SetRates(faultproxy.Rates{Before: rate, Lost: rate, Contention: rate, Latency: rate})
	}
}

// faultCounts sums the proxies' injected faults by kind.
func (f *fleet) faultCounts() map[string]int {
	out := map[string]int{}
	for _, p := range f.proxies {
		c := p.Counts()
		for k := range c.Faults {
			out[string(k)] += c.Total(k)
		}
		for _, n := range c.Calls {
			out["calls"] += n
		}
	}
	return out
}

func (f *fleet) stop() {
	for _, p := range f.proxies {
		defer p.Close()
	}
	for _, p := range f.procs {
		if p.Process != nil {
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGTERM)
		}
	}
	for _, p := range f.procs {
		_ = p.Wait()
	}
}

// bridge delivers the notifications topic to the SyncWorkers as Pub/Sub's
// push subscription does (its JSON, one message per request, 2xx acks),
// round-robin over the processes. A failed delivery is nacked after a
// short pause and comes back.
func (f *fleet) bridge(ctx context.Context) {
	sub := f.ps.Subscriber("bridge")
	sub.ReceiveSettings.MaxOutstandingMessages = 16 * len(f.workers)
	sub.ReceiveSettings.NumGoroutines = 2
	var next atomic.Int64
	client := &http.Client{Timeout: 9 * time.Minute}
	_ = sub.Receive(ctx, func(ctx context.Context, m *pubsub.Message) {
		w := f.workers[int(next.Add(1))%len(f.workers)]
		body, _ := json.Marshal(map[string]any{"message": map[string]any{"data": base64.StdEncoding.EncodeToString(m.Data),
			"attributes": m.Attributes, "messageId": m.ID, "publishTime": m.PublishTime.Format(time.RFC3339Nano)},
			"subscription": pubsubx.SubscriptionName(f.project, "bridge"), "deliveryAttempt": 1})
		f.delivers.Add(1)
		f.lastMove.Store(time.Now().UnixNano())
		resp, err := client.Post(w, "application/json", bytes.NewReader(body))
		f.lastMove.Store(time.Now().UnixNano())
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				m.Ack()
				return
			}
		}
		time.Sleep(300 * time.Millisecond)
		m.Nack()
	})
}

// waitIdle waits until the bridge delivered nothing for quiet.
func (f *fleet) waitIdle(ctx context.Context, quiet, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if time.Since(time.Unix(0, f.lastMove.Load())) >= quiet {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// buildWorkspace makes the domain, its users, their calendars and events.
func (f *fleet) buildWorkspace(ctx context.Context) error {
	if err := f.emu.CreateDomain("fleet.test", "user000@fleet.test"); err != nil {
		return err
	}
	perUser := f.o.calendars / f.o.identities
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	work := make(chan string)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range work {
				if err := f.buildUser(ctx, u, perUser); err != nil {
					mu.Lock()
					firstErr = errors.Join(firstErr, err)
					mu.Unlock()
				}
			}
		}()
	}
	for i := range f.o.identities {
		u := fmt.Sprintf("user%03d@fleet.test", i)
		if i > 0 {
			if err := f.emu.AddDomainUser(u, false); err != nil {
				return err
			}
		}
		work <- u
	}
	close(work)
	wg.Wait()
	slices.Sort(f.calIDs)
	return firstErr
}

func (f *fleet) buildUser(ctx context.Context, user string, perUser int) error {
	tok := f.emu.IssueToken(user)
	svc, err := calendaremu.NewService(ctx, f.base, option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok.AccessToken})))
	if err != nil {
		return err
	}
	ids := []string{user}
	for i := 1; i < perUser; i++ {
		c, err := svc.Calendars.Insert(&calendar.Calendar{Summary: fmt.Sprintf("%s #%d", user, i)}).Context(ctx).Do()
		if err != nil {
			return err
		}
		ids = append(ids, c.Id)
	}
	for _, id := range ids {
		var evs []string
		for j := range f.o.events {
			start := time.Date(2026, 12, 1, 8+j%10, 0, 0, 0, time.UTC).AddDate(0, 0, j/10)
			ev, err := svc.Events.Insert(id, &calendar.Event{Summary: fmt.Sprintf("event %d", j),
				Start: &calendar.EventDateTime{DateTime: start.Format(time.RFC3339)},
				End:   &calendar.EventDateTime{DateTime: start.Add(30 * time.Minute).Format(time.RFC3339)}}).Context(ctx).Do()
			if err != nil {
				return err
			}
			evs = append(evs, ev.Id)
		}
		f.record(id, svc, evs)
	}
	return nil
}

var recordMu sync.Mutex

func (f *fleet) record(id string, svc *calendar.Service, evs []string) {
	recordMu.Lock()
	defer recordMu.Unlock()
	f.owners[id] = svc
	f.events[id] = evs
	f.calIDs = append(f.calIDs, id)
}

// build is RenewChannels as deployed (app.Build from the functions'
// environment, production defaults for the rest) on the harness's counting
// Firestore client; extra overrides variables of the environment.
func (f *fleet) build(ctx context.Context, extra map[string]string) (*app.App, error) {
	env := maps.Clone(f.env)
	maps.Copy(env, extra)
	cfg, err := config.Load[config.RenewChannels](ctx, envconfig.MapLookuper(env))
	if err != nil {
		return nil, err
	}
	return app.Build(ctx, cfg, app.WithFirestore(f.fs), app.WithPubSub(f.ps), app.WithLogger(slog.New(slog.DiscardHandler)))
}

// waitSynced waits until every calendar has its first sync done.
func (f *fleet) waitSynced(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := -1
	for {
		cals, err := f.st.ActiveCalendars(ctx)
		if err != nil {
			return err
		}
		done := 0
		for _, c := range cals {
			if c.SyncToken != "" && c.EventCount == int64(f.o.events) {
				done++
			}
		}
		if done != last {
			say("first syncs: %d/%d calendars", done, f.o.calendars)
			last = done
		}
		if done >= f.o.calendars {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d calendars synced after %s", done, f.o.calendars, timeout)
		}
		time.Sleep(2 * time.Second)
	}
}

// measured is what the stream and the background measurements found.
type measured struct {
	Options        map[string]any     `json:"options"`
	Changes        int                `json:"changes"`          // changes made to calendars
	Bursts         int                `json:"bursts"`           // runs of changes to one calendar less than 2 s apart
	Seen           int                `json:"seen"`             // of the changes, found on the change feed
	FeedMessages   int                `json:"feedMessages"`     // change messages received
	Lag            []float64          `json:"-"`                // seconds, change made → its message received
	LagP           map[string]float64 `json:"lagSeconds"`       // p50, p90, p99, max
	Calendar       map[string]int     `json:"calendarRequests"` // requests per method (the emulator's counters)
	Webhook        count.Snapshot     `json:"webhook"`
	Sync           count.Snapshot     `json:"syncWorkers"` // summed
	Deliveries     int64              `json:"deliveries"`  // SyncWorker invocations through the bridge
	StreamSeconds  float64            `json:"streamSeconds"`
	Faults         map[string]int     `json:"faults,omitempty"` // injected during the stream, by kind (--fault-rate), and the proxied calls
	ReconcileSweep background         `json:"reconcileSweep"`
	RenewRun       background         `json:"renewRun"`
	DirectoryDiff  background         `json:"directoryDiff"`
	EnrollSeconds  float64            `json:"enrollSeconds"` // enrolling the domain until every calendar was mirrored
	RunAt          string             `json:"runAt"`
	Machine        string             `json:"machine"`
}

type background struct {
	Calendar    map[string]int `json:"calendarRequests"`
	Directory   int            `json:"directoryRequests"`
	Sync        count.Snapshot `json:"syncWorkers"`
	Harness     count.Snapshot `json:"harness"`
	Deliveries  int64          `json:"deliveries"`
	Seconds     float64        `json:"seconds"`
	Units       int            `json:"units"` // calendars reconciled, runs, diffs
	Description string         `json:"description"`
}

func (f *fleet) resetAll(ctx context.Context) (map[string]int, error) {
	for _, u := range append([]string{f.webhook}, f.workers...) {
		resp, err := http.Post(u+"/reset", "", nil)
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
	}
	f.harness.Reset()
	f.delivers.Store(0)
	return f.emu.Stats().Requests, nil
}

func (f *fleet) snapshots(ctx context.Context) (webhook count.Snapshot, sync count.Snapshot, err error) {
	get := func(u string) (count.Snapshot, error) {
		var s count.Snapshot
		resp, err := http.Get(u + "/stats")
		if err != nil {
			return s, err
		}
		defer resp.Body.Close()
		return s, json.NewDecoder(resp.Body).Decode(&s)
	}
	if webhook, err = get(f.webhook); err != nil {
		return
	}
	sync = count.Snapshot{Answers: map[int]int64{}, Extra: map[string]int64{}}
	for _, u := range f.workers {
		s, err := get(u)
		if err != nil {
			return webhook, sync, err
		}
		sync = sum(sync, s)
	}
	return webhook, sync, nil
}

func sum(a, b count.Snapshot) count.Snapshot {
	a.FirestoreRPCs += b.FirestoreRPCs
	a.DocReads += b.DocReads
	a.DocWrites += b.DocWrites
	a.DocDeletes += b.DocDeletes
	a.PublishRequests += b.PublishRequests
	a.PublishMessages += b.PublishMessages
	a.PublishBytes += b.PublishBytes
	a.PublishBilled += b.PublishBilled
	a.Invocations += b.Invocations
	a.BusySeconds += b.BusySeconds
	a.CPUSeconds += b.CPUSeconds
	for k, v := range b.Answers {
		a.Answers[k] += v
	}
	for k, v := range b.Extra {
		a.Extra[k] += v
	}
	return a
}

func delta(after, before map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// stream makes Poisson changes for the duration and follows them to the feed.
func (f *fleet) stream(ctx context.Context) (*measured, error) {
	m := &measured{Options: map[string]any{"calendars": f.o.calendars, "identities": f.o.identities, "workers": f.o.workers,
		"eventsPerCalendar": f.o.events, "duration": f.o.duration.String(), "ratePerSecond": f.o.rate, "seed": f.o.seed, "costLoad": f.o.costLoad, "faultRate": f.o.faultRate}}
	before, err := f.resetAll(ctx)
	if err != nil {
		return nil, err
	}
	type key struct{ id, etag string }
	var mu sync.Mutex
	made := map[key]time.Time{}
	var lags []float64
	feedCtx, stopFeed := context.WithCancel(ctx)
	defer stopFeed()
	feedDone := make(chan struct{})
	var feedMsgs atomic.Int64
	go func() {
		defer close(feedDone)
		_ = f.ps.Subscriber("feed").Receive(feedCtx, func(_ context.Context, msg *pubsub.Message) {
			msg.Ack()
			now := time.Now()
			feedMsgs.Add(1)
			var c messages.Change
			if json.Unmarshal(msg.Data, &c) != nil {
				return
			}
			mu.Lock()
			if t, ok := made[key{c.EventID, c.Etag}]; ok {
				lags = append(lags, now.Sub(t).Seconds())
				delete(made, key{c.EventID, c.Etag})
			}
			mu.Unlock()
		})
	}()
	rng := rand.New(rand.NewPCG(f.o.seed, f.o.seed^0x5bd1e995))
	lastChange := map[string]time.Time{}
	work := make(chan [2]string, 1024)
	var wg sync.WaitGroup
	var changes, failed atomic.Int64
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range work {
				calID, evID := w[0], w[1]
				ev, err := f.owners[calID].Events.Patch(calID, evID, &calendar.Event{Summary: fmt.Sprintf("changed %d", rand.Uint32())}).Context(ctx).Do()
				if err != nil {
					failed.Add(1)
					continue
				}
				changes.Add(1)
				mu.Lock()
				made[key{ev.Id, ev.Etag}] = time.Now()
				mu.Unlock()
			}
		}()
	}
	say("stream: %.1f changes/s for %s over %d calendars", f.o.rate, f.o.duration, f.o.calendars)
	faultsBefore := f.faultCounts()
	f.setFaults(f.o.faultRate)
	start := time.Now()
	next := start
	bursts := 0
	progress := time.Now()
	for time.Since(start) < f.o.duration && ctx.Err() == nil {
		next = next.Add(time.Duration(rng.ExpFloat64() / f.o.rate * float64(time.Second)))
		time.Sleep(time.Until(next))
		calID := f.calIDs[rng.IntN(len(f.calIDs))]
		evs := f.events[calID]
		if t, ok := lastChange[calID]; !ok || time.Since(t) > 2*time.Second {
			bursts++
		}
		lastChange[calID] = time.Now()
		work <- [2]string{calID, evs[rng.IntN(len(evs))]}
		if time.Since(progress) > 30*time.Second {
			mu.Lock()
			say("stream: %s, %d changes made, %d in flight", time.Since(start).Round(time.Second), changes.Load(), len(made))
			mu.Unlock()
			progress = time.Now()
		}
	}
	close(work)
	wg.Wait()
	f.setFaults(0)
	m.StreamSeconds = time.Since(start).Seconds()
	if f.o.faultRate > 0 {
		m.Faults = delta(f.faultCounts(), faultsBefore)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		mu.Lock()
		left := len(made)
		mu.Unlock()
		if left == 0 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	f.waitIdle(ctx, 3*time.Second, time.Minute)
	time.Sleep(time.Second)
	stopFeed()
	<-feedDone
	mu.Lock()
	m.Changes, m.Seen, m.Lag = int(changes.Load()), len(lags), lags
	mu.Unlock()
	if failed.Load() > 0 {
		say("stream: %d changes could not be made (emulator errors)", failed.Load())
	}
	m.Bursts, m.FeedMessages = bursts, int(feedMsgs.Load())
	m.Calendar = delta(f.emu.Stats().Requests, before)
	if m.Webhook, m.Sync, err = f.snapshots(ctx); err != nil {
		return nil, err
	}
	m.Deliveries = f.delivers.Load()
	slices.Sort(m.Lag)
	m.LagP = map[string]float64{"p50": pctl(m.Lag, 0.5), "p90": pctl(m.Lag, 0.9), "p99": pctl(m.Lag, 0.99), "max": pctl(m.Lag, 1)}
	say("stream done: %d changes, %d on the feed, lag p50 %.2fs p99 %.2fs", m.Changes, m.Seen, m.LagP["p50"], m.LagP["p99"])
	return m, nil
}

func pctl(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// background measures what runs without changes: a reconcile of every
// calendar (RenewChannels asks one of a calendar not synced for
// RECONCILE_AFTER, 6 h), one hourly RenewChannels run, one directory diff.
func (f *fleet) background(ctx context.Context, en *enroll.Enroller, m *measured) error {
	// RenewChannels as deployed, on the harness's counting client: it asks
	// for the reconciles, then runs once.
	renew, err := f.build(ctx, nil)
	if err != nil {
		return err
	}
	defer renew.Close()
	before, err := f.resetAll(ctx)
	if err != nil {
		return err
	}
	t0 := time.Now()
	for _, id := range f.calIDs {
		if err := renewer.Ask(ctx, renew.Notifications, store.CalendarKey(id), messages.StateReconcile, time.Now()); err != nil {
			return err
		}
	}
	f.waitIdle(ctx, 3*time.Second, 5*time.Minute)
	m.ReconcileSweep = background{Calendar: delta(f.emu.Stats().Requests, before), Seconds: time.Since(t0).Seconds(),
		Units: len(f.calIDs), Description: "one reconcile sync of every calendar"}
	if _, m.ReconcileSweep.Sync, err = f.snapshots(ctx); err != nil {
		return err
	}
	m.ReconcileSweep.Deliveries = f.delivers.Load()

	// One run, nothing due (a week-long channel TTL).
	before, _ = f.resetAll(ctx)
	t0 = time.Now()
	if _, err := renew.Renewer.Run(ctx); err != nil {
		return err
	}
	m.RenewRun = background{Calendar: delta(f.emu.Stats().Requests, before), Seconds: time.Since(t0).Seconds(), Units: 1,
		Harness: f.harness.Snapshot(), Description: "one hourly RenewChannels run (no channel due)"}
	f.waitIdle(ctx, 2*time.Second, time.Minute)

	before, _ = f.resetAll(ctx)
	t0 = time.Now()
	res, err := en.SyncDirectory(ctx, "fleet.test", nil)
	if err != nil {
		return err
	}
	m.DirectoryDiff = background{Calendar: delta(f.emu.Stats().Requests, before), Directory: res.DirectoryRequests,
		Seconds: time.Since(t0).Seconds(), Units: 1, Harness: f.harness.Snapshot(), Description: "one daily directory diff (nothing changed)"}
	return nil
}

// rewrite writes the report again from a saved fleet.json: the run's own
// options, this call's --cost-load and --out.
func rewrite(file string, o options) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var m measured
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	num := func(k string) float64 { v, _ := m.Options[k].(float64); return v }
	o.calendars, o.identities, o.workers, o.events = int(num("calendars")), int(num("identities")), int(num("workers")), int(num("eventsPerCalendar"))
	o.rate, o.seed = num("ratePerSecond"), uint64(num("seed"))
	o.duration, _ = time.ParseDuration(fmt.Sprint(m.Options["duration"]))
	m.Options["costLoad"] = o.costLoad
	return m.write(o)
}
