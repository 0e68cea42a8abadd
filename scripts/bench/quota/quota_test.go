// Package quota is the quota benchmark: several SyncWorker processes and a
// RenewChannels run against the Calendar emulator with Google's per-user
// (600/min) and per-project (10,000/min) quotas on, one user's calendars all
// notified at once. See scripts/bench/quota/README.md.
package quota

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"github.com/sethvargo/go-envconfig"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/option"

	"github.com/calsync/calsync/functions/webhook"
	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/channels"
	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/renewer"
	"github.com/calsync/calsync/shared/sealed"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/testenv"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	testenv.Main(m)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkQuota: QUOTA_BENCH_CALENDARS (2,000) calendars of one user, each
// with a push channel and a first full sync done before the clock starts.
// Then, with the emulator's quotas at Google's figures (600 a minute per
// user, 10,000 per project, sliding), RenewChannels renews every channel
// (a watch and a stop each) while every calendar gets a new event at once:
// QUOTA_BENCH_WORKERS (3) SyncWorker processes sync them. Reported: the
// busiest sliding minute per user and per project, Google's rejections, the
// time until every mirror holds its new event and the renewal is done,
// against the floor (the Calendar calls made ÷ 600 a minute), deferrals,
// and messages dead-lettered (delivered 5 times without success).
// QUOTA_BENCH_BASELINE=1 adds the same run with a limiter per process
// (CALENDAR_BUDGET=local), the design before issue 14.
func BenchmarkQuota(b *testing.B) {
	variants := []string{"calsync"}
	if os.Getenv("QUOTA_BENCH_BASELINE") == "1" {
		variants = append(variants, "per_process")
	}
	for range b.N {
		for _, v := range variants {
			r := runQuota(b, v, envInt("QUOTA_BENCH_CALENDARS", 2000), envInt("QUOTA_BENCH_WORKERS", 3))
			for k, x := range r {
				b.ReportMetric(x, v+"_"+k)
			}
		}
	}
}

// bench is one run's world.
type bench struct {
	tb       testing.TB
	ctx      context.Context
	project  string
	emu      *calendaremu.Server
	base     string
	hookURL  string
	fs       *firestore.Client
	ps       *pubsub.Client
	env      []string // the functions' environment
	workers  []string // SyncWorker base URLs
	bridge   *bridge
	tmp      string
	children []*exec.Cmd
}

func runQuota(tb testing.TB, variant string, n, nWorkers int) map[string]float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	testenv.Firestore(tb)
	psHost := testenv.PubSub(tb)
	w := &bench{tb: tb, ctx: ctx, project: testenv.ProjectID(tb), tmp: tb.TempDir()}
	defer w.stopChildren()
	var err error
	w.emu = calendaremu.New(calendaremu.Options{PushRetryBaseDelay: 500 * time.Millisecond, MessageNumberJump: 2})
	var stopEmu func()
	w.base, stopEmu, err = w.emu.Listen(ctx, "127.0.0.1:0")
	must(tb, err)
	defer func() { stopEmu(); w.emu.Close() }()
	w.fs, err = firestore.NewClient(ctx, w.project)
	must(tb, err)
	defer w.fs.Close()
	w.ps, err = pubsubx.NewClient(ctx, w.project, psHost)
	must(tb, err)
	defer w.ps.Close()
	for _, t := range []string{"notifications", "changes"} {
		must(tb, pubsubx.EnsureTopic(ctx, w.ps, t))
	}
	priv, _, err := sealed.GenerateKey("h1")
	must(tb, err)
	tokenKeys := "k1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("q"), 32))
	budget := "shared"
	if variant == "per_process" {
		budget = "local"
	}
	// The Webhook, in this process: Google's pushes to Pub/Sub.
	w.hookURL = w.startWebhook(tokenKeys)
	w.env = append(os.Environ(),
		"PROJECT_ID="+w.project, "LOG_LEVEL=warning", "FIRESTORE_EMULATOR_HOST="+os.Getenv("FIRESTORE_EMULATOR_HOST"),
		"PUBSUB_EMULATOR_HOST="+psHost, "CALENDAR_ENDPOINT="+w.base, "OAUTH_TOKEN_URL="+w.base+"/token",
		"OAUTH_AUTH_URL="+w.base+"/authorize", "CREDENTIAL_PRIVATE_KEYS="+priv, "CHANNEL_TOKEN_KEYS="+tokenKeys,
		"NOTIFICATIONS_TOPIC=notifications", "CHANGES_TOPIC=changes", "WEBHOOK_URL="+w.hookURL,
		"CALENDAR_BUDGET="+budget, "CALENDAR_USER_RATE_LIMIT=500", "CALENDAR_PROJECT_RATE_LIMIT=9000",
		"CALENDAR_PROCESSES="+strconv.Itoa(nWorkers+2), // as Terraform sets it
		"CHANNEL_TTL=3h", "RENEW_BEFORE=150m", "RENEW_CONCURRENCY=64", "FOLLOW_UP_DELAY=15s", // every channel (2 h) is due
		"NOTIFICATION_SUBSCRIPTIONS="+bridgeSubscription) // the bridge's, which the SyncWorkers accept
	// Setup, in this process and without quotas or budget (it is not what is
	// measured): n calendars of the default user, an event each, a channel
	// each, every first full sync done.
	setupStart := time.Now()
	svc, err := calendaremu.NewService(ctx, w.base)
	must(tb, err)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-%04d@group.calendar.google.com", i)
		must(tb, w.emu.AddCalendar(calendaremu.CalendarSpec{ID: ids[i]}))
	}
	st := store.New(w.fs)
	keys, err := channeltoken.Parse(tokenKeys)
	must(tb, err)
	unlimited := calclient.New(calclient.Options{Endpoint: w.base, RatePerMinute: 1_000_000, Burst: 10_000})
	mgr := &channels.Manager{Store: st, Calendars: unlimited, Tokens: keys, WebhookURL: w.hookURL, TTL: 2 * time.Hour,
		Namespace: channels.Namespace(w.project, "calsync"), Logger: slog.New(slog.DiscardHandler)}
	first := syncer.New(syncer.Options{Store: st, Services: unlimited, Logger: slog.New(slog.DiscardHandler), FollowUpDelay: -1})
	w.parallel(n, 16, func(i int) error {
		if _, err := svc.Events.Insert(ids[i], event("first")).Do(); err != nil {
			return err
		}
		key, err := lifecycle.Register(ctx, st, store.Calendar{CalendarID: ids[i], AuthMode: store.AuthADC})
		if err != nil {
			return err
		}
		cal, err := st.GetCalendar(ctx, key)
		if err != nil {
			return err
		}
		if out, err := mgr.Ensure(ctx, key, &cal, nil, 30*time.Minute); err != nil || !out.Created {
			return fmt.Errorf("channel of %s: %+v %v", ids[i], out, err)
		}
		return first.HandleNotification(ctx, messages.Notification{CalendarKey: key, ResourceState: messages.StateFullResync, ReceivedAt: time.Now()})
	})
	tb.Logf("%s: setup of %d calendars in %s", variant, n, time.Since(setupStart).Round(time.Second))

	// The deployment: SyncWorker processes behind the notifications
	// subscription (made now: the setup's pushes are not delivered).
	for range nWorkers {
		w.workers = append(w.workers, w.startWorker())
	}
	w.bridge = newBridge(ctx, w.ps, w.project, w.workers)
	defer w.bridge.stop()

	// The measured run.
	w.emu.SetQuotas(calendaremu.Quotas{PerUser: 600, PerProject: 10000})
	before := w.emu.Stats()
	bridgeBefore := w.bridge.counts()
	start := time.Now()
	renewDone := make(chan renewer.Summary, 1)
	go func() { renewDone <- w.renew() }()
	// The user's own edits (another quota project: not calsync's calls).
	user, err := calendaremu.NewService(ctx, w.base, option.WithoutAuthentication(), option.WithQuotaProject("users-own-edits"))
	must(tb, err)
	newIDs := make([]string, n)
	w.parallel(n, 64, func(i int) error {
		ev, err := user.Events.Insert(ids[i], event("second")).Do()
		if err == nil {
			newIDs[i] = ev.Id
		}
		return err
	})
	mirrored := w.waitFor("mirrors", 40*time.Minute, func() (int, int) {
		refs := make([]*firestore.DocumentRef, n)
		for i := range ids {
			refs[i] = st.Events(store.CalendarKey(ids[i])).Doc(newIDs[i])
		}
		snaps, err := w.fs.GetAll(ctx, refs)
		must(tb, err)
		done := 0
		for _, s := range snaps {
			if s.Exists() {
				done++
			}
		}
		return done, n
	})
	var sum renewer.Summary
	select {
	case sum = <-renewDone:
	case <-time.After(40 * time.Minute):
		tb.Fatal("the renewal run did not end")
	}
	converged := time.Since(start)
	w.waitQuiet()
	after := w.emu.Stats()
	calls := 0
	for m, c := range after.Requests {
		if !strings.HasPrefix(m, "iam.") {
			calls += c - before.Requests[m]
		}
	}
	calls -= n // the user's own inserts
	bc := w.bridge.counts()
	if sum.Renewed != n {
		tb.Errorf("%s: %d channels renewed of %d: %+v", variant, sum.Renewed, n, sum)
	}
	floor := time.Duration(float64(calls) / 600 * float64(time.Minute))
	minFloor := time.Duration(float64(3*n) / 600 * float64(time.Minute))
	res := map[string]float64{
		"peak_user_per_min":    float64(after.Peaks.User[calendaremu.DefaultUser]),
		"peak_project_per_min": float64(after.Peaks.Project),
		"quota_rejected":       float64(after.QuotaRejected - before.QuotaRejected),
		"calendar_calls":       float64(calls),
		"mirrors_s":            mirrored.Seconds(),
		"converge_s":           converged.Seconds(),
		"floor_s":              floor.Seconds(),
		"min_floor_s":          minFloor.Seconds(),
		"converge_vs_floor":    converged.Seconds() / floor.Seconds(),
		"deliveries":           float64(bc.delivered - bridgeBefore.delivered),
		"deferrals":            float64(w.countLogs("sync_deferred")),
		"nacked":               float64(bc.nacked - bridgeBefore.nacked),
		"dead_lettered":        float64(bc.deadLettered - bridgeBefore.deadLettered),
	}
	tb.Logf("%s: %v; renewal %+v", variant, res, sum)
	if reasons := w.failureReasons(); len(reasons) > 0 {
		tb.Logf("%s: SyncWorker answers other than 2xx, by error: %v", variant, reasons)
	}
	return res
}

func event(summary string) *calendar.Event {
	return &calendar.Event{Summary: summary, Start: &calendar.EventDateTime{Date: "2031-05-01"}, End: &calendar.EventDateTime{Date: "2031-05-02"}}
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// parallel runs f(0..n-1) on k goroutines; the first error fails the benchmark.
func (w *bench) parallel(n, k int, f func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var first atomic.Value
	for range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if err := f(i); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		w.tb.Fatal(err)
	}
}

// waitFor polls progress until done == total; it returns the time taken.
func (w *bench) waitFor(what string, limit time.Duration, progress func() (done, total int)) time.Duration {
	start := time.Now()
	last := time.Now()
	for {
		done, total := progress()
		if done >= total {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			w.tb.Fatalf("%s: %d of %d after %s; bridge %+v", what, done, total, limit, w.bridge.counts())
		}
		if time.Since(last) > 30*time.Second {
			w.tb.Logf("%s: %d of %d after %s", what, done, total, time.Since(start).Round(time.Second))
			last = time.Now()
		}
		time.Sleep(time.Second)
	}
}

// waitQuiet waits until the bridge has delivered nothing for 20 s (delayed
// follow-ups and deferrals included) and holds no message.
func (w *bench) waitQuiet() {
	for {
		c := w.bridge.counts()
		if c.inFlight == 0 && time.Since(time.Unix(0, c.lastActivity)) > 20*time.Second {
			return
		}
		time.Sleep(2 * time.Second)
	}
}

func (w *bench) startWebhook(tokenKeys string) string {
	cfg, err := config.Load[config.Webhook](w.ctx, envconfig.MapLookuper(map[string]string{
		"PROJECT_ID": w.project, "CHANNEL_TOKEN_KEYS": tokenKeys, "NOTIFICATIONS_TOPIC": "notifications"}))
	must(w.tb, err)
	h, closeH, err := webhook.New(w.ctx, cfg, logging.New(io.Discard, slog.LevelError))
	must(w.tb, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(w.tb, err)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	w.tb.Cleanup(func() { srv.Close(); closeH() })
	return "http://" + ln.Addr().String() + "/Webhook"
}

// startWorker starts a SyncWorker process and returns its base URL.
func (w *bench) startWorker() string {
	i := len(w.workers)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(w.env, roleEnv+"=syncworker")
	logf, err := os.Create(filepath.Join(w.tmp, fmt.Sprintf("syncworker-%d.log", i)))
	must(w.tb, err)
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	must(w.tb, err)
	must(w.tb, cmd.Start())
	w.children = append(w.children, cmd)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "listening on ") {
		logs, _ := os.ReadFile(logf.Name())
		w.tb.Fatalf("syncworker %d did not start: %q %v\n%s", i, line, err, logs)
	}
	go io.Copy(io.Discard, out)
	return strings.TrimSpace(strings.TrimPrefix(line, "listening on "))
}

// renew runs one RenewChannels run in a process of its own.
func (w *bench) renew() renewer.Summary {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append([]string{}, w.env...), roleEnv+"=renew")
	logf, err := os.Create(filepath.Join(w.tmp, fmt.Sprintf("renew-%d.log", time.Now().UnixNano())))
	must(w.tb, err)
	cmd.Stderr = logf
	out, err := cmd.Output()
	var sum renewer.Summary
	if err != nil || json.Unmarshal(out, &sum) != nil {
		logs, _ := os.ReadFile(logf.Name())
		w.tb.Errorf("renew: %v %q\n%s", err, out, tail(logs, 4000))
	}
	return sum
}

// countLogs counts the lines with the event in the workers' logs.
func (w *bench) countLogs(event string) int {
	n := 0
	files, _ := filepath.Glob(filepath.Join(w.tmp, "*.log"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		n += bytes.Count(data, []byte(`"event":"`+event+`"`))
	}
	return n
}

// failureReasons counts the SyncWorkers' 503 answers by the start of their error.
func (w *bench) failureReasons() map[string]int {
	out := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(w.tmp, "syncworker-*.log"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		for _, line := range bytes.Split(data, []byte("\n")) {
			var m map[string]any
			if json.Unmarshal(line, &m) != nil || !strings.Contains(fmt.Sprint(m["message"]), "answered 503") {
				continue
			}
			e := fmt.Sprint(m["error"])
			if len(e) > 80 {
				e = e[:80]
			}
			out[e]++
		}
	}
	return out
}

func (w *bench) stopChildren() {
	for _, c := range w.children {
		if c.Process != nil {
			c.Process.Signal(os.Interrupt)
		}
	}
	for _, c := range w.children {
		done := make(chan struct{})
		go func() { c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			c.Process.Kill()
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// bridge stands in for the notifications push subscription: it pulls and
// POSTs each message to a SyncWorker process (round robin) in Pub/Sub's
// push format; 2xx acks, anything else nacks (redelivered). A message that
// failed 5 deliveries counts as dead-lettered (terraform's
// dead_letter_max_delivery_attempts) and is acked.
type bridge struct {
	cancel   context.CancelFunc
	done     chan struct{}
	http     *http.Client
	sub      string
	workers  []string
	next     atomic.Int64
	mu       sync.Mutex
	attempts map[string]int

	delivered, nacked, deadLettered, inFlight, lastActivity atomic.Int64
}

type bridgeCounts struct{ delivered, nacked, deadLettered, inFlight, lastActivity int64 }

func (b *bridge) counts() bridgeCounts {
	return bridgeCounts{b.delivered.Load(), b.nacked.Load(), b.deadLettered.Load(), b.inFlight.Load(), b.lastActivity.Load()}
}

// bridgeSubscription is the subscription the bridge pulls and names in its pushes.
const bridgeSubscription = "bench-syncworker"

func newBridge(ctx context.Context, ps *pubsub.Client, project string, workers []string) *bridge {
	const subID = bridgeSubscription
	if err := pubsubx.EnsureSubscription(ctx, ps, "notifications", subID, false); err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	b := &bridge{cancel: cancel, done: make(chan struct{}), http: &http.Client{Timeout: 540 * time.Second},
		sub: pubsubx.SubscriptionName(project, subID), workers: workers, attempts: map[string]int{}}
	b.lastActivity.Store(time.Now().UnixNano())
	s := ps.Subscriber(subID)
	// Like SyncWorker instances with request concurrency: 64 per process.
	s.ReceiveSettings.MaxOutstandingMessages = 64 * len(workers)
	s.ReceiveSettings.NumGoroutines = 4
	go func() {
		defer close(b.done)
		_ = s.Receive(ctx, b.handle)
	}()
	return b
}

func (b *bridge) handle(ctx context.Context, m *pubsub.Message) {
	b.inFlight.Add(1)
	defer b.inFlight.Add(-1)
	defer b.lastActivity.Store(time.Now().UnixNano())
	b.mu.Lock()
	b.attempts[m.ID]++
	attempt := b.attempts[m.ID]
	b.mu.Unlock()
	body, _ := json.Marshal(map[string]any{
		"message": map[string]any{"data": base64.StdEncoding.EncodeToString(m.Data), "attributes": m.Attributes,
			"messageId": m.ID, "publishTime": m.PublishTime.UTC().Format(time.RFC3339Nano)},
		"subscription": b.sub, "deliveryAttempt": attempt,
	})
	url := b.workers[int(b.next.Add(1))%len(b.workers)]
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	b.delivered.Add(1)
	resp, err := b.http.Do(req)
	ok := err == nil && resp.StatusCode/100 == 2
	if resp != nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if ok {
		m.Ack()
		return
	}
	if attempt >= 5 {
		b.deadLettered.Add(1)
		m.Ack()
		return
	}
	b.nacked.Add(1)
	time.Sleep(time.Second) // the subscription's retry backoff, shortened
	m.Nack()
}

func (b *bridge) stop() { b.cancel(); <-b.done }
