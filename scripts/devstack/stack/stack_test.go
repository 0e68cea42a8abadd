package stack

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"log/slog"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/sealed"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if built != nil {
		os.RemoveAll(filepath.Dir(built.Binary))
	}
	testenv.StopAll()
	os.Exit(code)
}

var (
	buildOnce sync.Once
	built     *Build
	buildErr  error
)

// functionBinary builds the function binary once for this test binary
// (with -race under -race).
func functionBinary(t *testing.T) *Build {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "stack-test-build-")
		if err != nil {
			buildErr = err
			return
		}
		built, buildErr = BuildFunctions(context.Background(), BuildOptions{OutDir: dir, Race: raceEnabled})
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// The binary is built from exactly the deployed zip's files (the module's
// packages the root package needs, no tests, no test wing, no scripts), and
// serves the function FUNCTION_TARGET names at "/", on $PORT.
func TestBuildFunctionsLikeTheBuildpack(t *testing.T) {
	b := functionBinary(t)
	t.Logf("function binary built in %s (race %v)", b.Duration.Round(time.Millisecond), b.Race)
	for _, must := range []string{"go.mod", "go.sum", "calsync.go", "functions/syncworker/worker.go", "shared/syncer/round.go"} {
		if !slices.Contains(b.Files, must) {
			t.Errorf("upload lacks %s", must)
		}
	}
	var onDisk []string
	err := filepath.WalkDir(b.SourceDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(b.SourceDir, p)
		onDisk = append(onDisk, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(onDisk)
	if !slices.Equal(onDisk, b.Files) {
		t.Fatalf("source tree %v\nwant exactly %v", onDisk, b.Files)
	}
	for _, f := range b.Files {
		if strings.HasSuffix(f, "_test.go") || strings.HasPrefix(f, "shared/testing/") || strings.HasPrefix(f, "scripts/") || strings.HasPrefix(f, "e2e/") {
			t.Errorf("the upload holds %s", f)
		}
	}

	// FUNCTION_TARGET=Webhook on $PORT: the Webhook answers a push without
	// Google's headers with 400, at any path.
	port := freePort(t)
	in := testInstance(t, b, Webhook, port, map[string]string{"PROJECT_ID": "p", "CHANNEL_TOKEN_KEYS": testTokenKey, "PUBSUB_EMULATOR_HOST": testenv.PubSub(t)})
	if err := in.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer in.stop(time.Second)
	resp, err := http.Post(in.URL()+"/anything", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("POST to the Webhook process: %d, want 400", resp.StatusCode)
	}

	// An unknown target: the process exits and says why.
	bad := testInstance(t, b, "Nope", freePort(t), nil)
	err = bad.start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no matching function") {
		t.Fatalf("FUNCTION_TARGET=Nope: %v", err)
	}
}

var testTokenKey = "k1:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, p, _ := strings.Cut(l.Addr().String(), ":")
	n, _ := strconv.Atoi(p)
	return n
}

func testInstance(t *testing.T, b *Build, target string, port int, env map[string]string) *Instance {
	t.Helper()
	in := &Instance{Function: target, Index: 0, LogPath: filepath.Join(t.TempDir(), target+".log"), bin: b.Binary,
		fnEnv: env, spawn: processSpawner, state: StateDown}
	in.setPort(port)
	return in
}

// Instances are real processes in their own process groups: Pause stops one
// (the front sends elsewhere), Resume continues it, Kill ends it (the front
// answers 503 when none is up), Restart brings a new process on the same
// port, stop ends them all.
func TestInstancesAreProcessesUnderControl(t *testing.T) {
	b := functionBinary(t)
	fn := &Function{Name: Webhook}
	for i := 0; i < 2; i++ {
		in := testInstance(t, b, Webhook, freePort(t), map[string]string{"PROJECT_ID": "p", "CHANNEL_TOKEN_KEYS": testTokenKey, "PUBSUB_EMULATOR_HOST": testenv.PubSub(t)})
		in.Index = i
		fn.Instances = append(fn.Instances, in)
		if err := in.start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, in := range fn.Instances {
			in.stop(time.Second)
		}
	}()
	fn.Front = newFront(fn, 5*time.Second)
	if err := fn.Front.listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer fn.Front.close()

	a := fn.Instances[0]
	pid := a.PID()
	if pgid, err := syscall.Getpgid(pid); err != nil || pgid != pid {
		t.Fatalf("pgid of %d = %d, %v: want its own group", pid, pgid, err)
	}
	if err := a.Pause(); err != nil {
		t.Fatal(err)
	}
	if st := procStateOf(pid); st != "T" {
		t.Fatalf("paused process state %q, want T", st)
	}
	served := fn.Instances[1].served.Load()
	for i := 0; i < 5; i++ {
		if code := statusOf(t, fn.Front.URL); code != http.StatusBadRequest {
			t.Fatalf("with one instance paused: %d", code)
		}
	}
	if got := fn.Instances[1].served.Load() - served; got != 5 {
		t.Fatalf("the up instance served %d of 5", got)
	}
	if err := a.Resume(); err != nil {
		t.Fatal(err)
	}
	if st := procStateOf(pid); st == "T" || st == "" {
		t.Fatalf("resumed process state %q", st)
	}
	if err := a.Pause(); err != nil { // killed while paused
		t.Fatal(err)
	}
	for _, in := range fn.Instances {
		if err := in.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	if st := procStateOf(pid); st != "" {
		t.Fatalf("killed process still there (%s)", st)
	}
	if code := statusOf(t, fn.Front.URL); code != http.StatusServiceUnavailable {
		t.Fatalf("all killed: %d, want 503", code)
	}
	if err := a.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a.PID() == pid || a.PID() == 0 || a.Info().Starts != 2 {
		t.Fatalf("after restart: %+v (old pid %d)", a.Info(), pid)
	}
	if code := statusOf(t, fn.Front.URL); code != http.StatusBadRequest {
		t.Fatalf("after restart: %d", code)
	}
	newPID := a.PID()
	a.stop(time.Second)
	if st := procStateOf(newPID); st != "" {
		t.Fatalf("stopped process still there (%s)", st)
	}
	log, _ := os.ReadFile(a.LogPath)
	if strings.Count(string(log), "=== devstack: Webhook-0 process #") != 4 { // two starts, two ends
		t.Fatalf("log:\n%s", log)
	}
}

func statusOf(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Post(url, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// The push subscription is Terraform's (endpoint path, ack deadline,
// dead-letter policy; no retry policy, see PushOptions); the emulator pushes
// each message to the front, forwarded under exactly one shard; a delivery
// answered non-2xx comes again, and after MaxDeliveryAttempts the message is
// dead-lettered, kept in the hold subscription and counted.
func TestPushSubscriptionDeliversRetriesAndDeadLetters(t *testing.T) {
	host := testenv.PubSub(t)
	project := testenv.ProjectID(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client, err := pubsubx.NewClient(ctx, project, host)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ok, failing := newBackend(t, 200), newBackend(t, 500)
	worker := fakeFunction(t, time.Minute, ok, failing)
	setState(worker.Instances[1], StateDown) // the failing one, until the dead-letter part
	s := &Stack{ProjectID: project, NotificationsTopic: "notif", DeadLetterTopic: "notif-dead-letter",
		SyncWorkerURL: worker.Front.URL, PubSub: client, log: slog.New(slog.DiscardHandler), ledger: newLedger(), SyncWorker: worker}
	worker.Front.setObserver(s.ledger.syncWorkerDelivery)
	if err := pubsubx.EnsureTopic(ctx, client, "notif"); err != nil {
		t.Fatal(err)
	}
	o := PushOptions{Shards: 3, MaxDeliveryAttempts: 5}.withDefaults()
	if err := s.setupPush(ctx, o); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() { s.watchDeadLetters(wctx); close(watched) }()
	defer func() { wcancel(); <-watched }()

	sub, err := client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: pubsubx.SubscriptionName(project, PushSubscription+"-1")})
	if err != nil {
		t.Fatal(err)
	}
	if ep := sub.GetPushConfig().GetPushEndpoint(); ep != worker.Front.URL+"/projects/"+project+"/topics/notif?shard=1&shards=3" ||
		sub.GetAckDeadlineSeconds() != 600 || sub.GetRetryPolicy() != nil ||
		sub.GetDeadLetterPolicy().GetMaxDeliveryAttempts() != 5 || sub.GetDeadLetterPolicy().GetDeadLetterTopic() != pubsubx.TopicName(project, "notif-dead-letter") {
		t.Fatalf("subscription %v", sub)
	}

	pub := pubsubx.NewPublisher(client, "notif", false)
	defer pub.Stop()
	for i := 0; i < 6; i++ {
		n := messages.Notification{ResourceState: "exists", CalendarKey: store.CalendarKey(fmt.Sprintf("cal%d", i)), ChannelID: "ch", MessageNumber: int64(i + 1)}
		if err := pub.Publish(ctx, mustJSON(t, n), n.Attributes(), ""); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 60*time.Second, "6 notifications acked", func() bool { return s.PendingNotifications() == 0 && len(s.Notifications()) == 6 })
	if got := ok.hits.Load(); got != 6 {
		t.Fatalf("6 messages over 3 shards reached the instance %d times", got)
	}

	// Now only the failing instance is up: redelivered until dead-lettered.
	setState(worker.Instances[0], StateDown)
	setState(worker.Instances[1], StateUp)
	bad := store.CalendarKey("bad")
	n := messages.Notification{ResourceState: "exists", CalendarKey: bad, ChannelID: "ch", MessageNumber: 99}
	if err := pub.Publish(ctx, mustJSON(t, n), n.Attributes(), ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "a dead letter", func() bool { return len(s.DeadLetters()) == 1 })
	var rec NotificationRecord
	for _, r := range s.Notifications() {
		if r.Notification.CalendarKey == bad {
			rec = r
		}
	}
	if rec.Attempts != 5 || rec.Acked || !rec.DeadLettered || failing.hits.Load() != 5 {
		t.Fatalf("record %+v, failing instance hit %d times; want 5 attempts, dead-lettered", rec, failing.hits.Load())
	}
	if dl := s.DeadLetters()[0]; dl.Notification.MessageNumber != 99 || dl.Attributes["CloudPubSubDeadLetterSourceDeliveryCount"] != "5" {
		t.Fatalf("dead letter %+v", dl)
	}
	// The hold subscription keeps it for operators.
	got := make(chan *pubsub.Message, 1)
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	_ = client.Subscriber(s.DeadLetterSubscription).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		select {
		case got <- m:
			rcancel()
		default:
		}
	})
	select {
	case m := <-got:
		if !strings.Contains(string(m.Data), `"calendarKey":"`+bad+`"`) {
			t.Fatalf("held dead letter %s", m.Data)
		}
	default:
		t.Fatal("the hold subscription has no dead letter")
	}
}

func mustJSON(t *testing.T, n messages.Notification) []byte {
	t.Helper()
	b, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %s", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The environment Start gives the functions passes their config checks, and
// Env overrides reach them.
func TestEnvironmentIsValidForEveryFunction(t *testing.T) {
	s := &Stack{ProjectID: "p", NotificationsTopic: "n-topic", ChangesTopic: "c-topic", FirestoreHost: "127.0.0.1:1",
		PubSubHost: "127.0.0.1:2", CalendarBaseURL: "http://127.0.0.1:3", CalendarEndpoint: "http://127.0.0.1:3/calendar/v3/",
		WebhookURL: "http://127.0.0.1:4", ConnectURL: "http://127.0.0.1:5"}
	env, _, err := s.environment(Options{}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	if env["CHANNEL_TTL"] != "2m0s" || env["RENEW_BEFORE"] != "1m0s" || env["CALENDAR_ENDPOINT"] != s.CalendarEndpoint ||
		env["OAUTH_TOKEN_URL"] != "http://127.0.0.1:3/token" || env["NOTIFICATIONS_TOPIC"] != "n-topic" || env["WEBHOOK_URL"] != s.WebhookURL {
		t.Fatalf("env %v", env)
	}
	again, _, _ := s.environment(Options{}.withDefaults())
	if again["CHANNEL_TOKEN_KEYS"] == env["CHANNEL_TOKEN_KEYS"] || again["CREDENTIAL_PRIVATE_KEYS"] == env["CREDENTIAL_PRIVATE_KEYS"] {
		t.Fatal("keys are not random per run")
	}
	// Refresh tokens are sealed to the stack's public key and open with its
	// private one, as in a deployment (the CLI's connect needs the public key).
	priv, err := sealed.ParsePrivateKeys(env["CREDENTIAL_PRIVATE_KEYS"])
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sealed.ParsePublicKey(env["CREDENTIAL_PUBLIC_KEY"])
	if err != nil || !priv.Has(pub) {
		t.Fatalf("CREDENTIAL_PUBLIC_KEY %q is not the public half of CREDENTIAL_PRIVATE_KEYS: %v", env["CREDENTIAL_PUBLIC_KEY"], err)
	}
	if _, _, err := s.environment(Options{Env: map[string]string{"LEASE_DURATION": "1s"}}.withDefaults()); err == nil {
		t.Fatal("want an error for LEASE_DURATION=1s")
	}
	procEnv := processEnv(env, SyncWorker, 8123)
	if !slices.Contains(procEnv, "FUNCTION_TARGET=SyncWorker") || !slices.Contains(procEnv, "PORT=8123") || !slices.Contains(procEnv, "NOTIFICATIONS_TOPIC=n-topic") {
		t.Fatalf("process env %v", procEnv)
	}
	for _, kv := range procEnv {
		if strings.HasPrefix(kv, "FIRESTORE_EMULATOR_HOST=") && kv != "FIRESTORE_EMULATOR_HOST=127.0.0.1:1" {
			t.Fatalf("process env leaks this process's %s", kv)
		}
	}
	if err := (Options{Push: PushOptions{Shards: 100}}.withDefaults()).validate(); err == nil {
		t.Fatal("want an error for 100 shards")
	}
}

// A Pub/Sub tap relays a client's traffic to the emulator unchanged and
// shows the hook each answer before the client gets it: a publish's answer
// is bigger than HTTP/2's own frames, and the client waits while the hook
// holds it.
func TestPubSubTapShowsAnswersFirst(t *testing.T) {
	host := testenv.PubSub(t)
	project := testenv.ProjectID(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var mu sync.Mutex
	var sizes []int
	hold := 300 * time.Millisecond
	holding := false
	tp, err := newTap(host, func() func(PubSubAnswer) {
		return func(a PubSubAnswer) {
			mu.Lock()
			sizes = append(sizes, a.Bytes)
			// Hold the first chunk once holding: TCP keeps the order, so
			// whatever that chunk is, the publish's answer comes after it.
			h := holding
			holding = false
			mu.Unlock()
			if h {
				time.Sleep(hold)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.close()
	tp.setInstance(&Instance{Function: SyncWorker, Index: 2})
	client, err := pubsubx.NewClient(ctx, project, tp.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := pubsubx.EnsureTopic(ctx, client, "tapped"); err != nil {
		t.Fatal(err)
	}
	pub := pubsubx.NewPublisher(client, "tapped", false)
	defer pub.Stop()
	if err := pub.Publish(ctx, []byte("warm"), nil, ""); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	holding, sizes = true, nil
	mu.Unlock()
	start := time.Now()
	if err := pub.Publish(ctx, []byte("held"), nil, ""); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < hold {
		t.Fatalf("the publish returned after %s, before the hook let its answer go (%s)", took, hold)
	}
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, n := range sizes {
		total += n
	}
	if total < 40 { // a Publish answer (headers, the message id, trailers) is larger
		t.Fatalf("answers seen for one publish: %v, want the answer to have passed the hook", sizes)
	}
}

// A port taken between the stack's choice and the process's bind (another
// program's connection got it) does not fail the start: the instance moves
// to another port.
func TestInstanceMovesOffATakenPort(t *testing.T) {
	b := functionBinary(t)
	taken, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.Addr().(*net.TCPAddr).Port
	in := testInstance(t, b, Webhook, port, map[string]string{"PROJECT_ID": "p", "CHANNEL_TOKEN_KEYS": testTokenKey, "PUBSUB_EMULATOR_HOST": testenv.PubSub(t)})
	if err := in.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer in.stop(time.Second)
	if in.Port() == port || in.Info().Starts != 2 {
		t.Fatalf("instance %+v: want it moved off port %d after one failed start", in.Info(), port)
	}
	if code := statusOf(t, in.URL()); code != http.StatusBadRequest {
		t.Fatalf("moved instance answers %d", code)
	}
}
