// Package stack runs the whole of calsync on one machine in production's
// shape: the Firestore and Pub/Sub emulators (shared/testing/emulators), the
// Calendar API emulator (shared/testing/calendaremu), and each Cloud Function
// as several OS processes of the binary Google's Go buildpack would build
// from the deployed zip, each function behind a front that stands in for
// Cloud Run's load balancer. Pub/Sub push (a real push subscription in the
// emulator, configured like terraform/pubsub.tf) delivers the notifications
// topic to the SyncWorker front; a ticker stands in for Cloud Scheduler
// calling the RenewChannels front; push channels point at the Webhook front.
//
// Tests drive faults through it: the SyncWorker front duplicates, delays and
// rejects deliveries; instances can be killed, restarted, paused and resumed.
//
// Start sets FIRESTORE_EMULATOR_HOST and PUBSUB_EMULATOR_HOST in the calling
// process too, so its own clients reach the stack's emulators.
package stack

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/sethvargo/go-envconfig"

	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/sealed"
	"github.com/calsync/calsync/shared/tenant"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/emulators"
)

// Options configure a Stack. The zero value is a usable local stack.
type Options struct {
	// ProjectID of the emulated project (default "calsync-local").
	ProjectID string
	// FirestoreHost / PubSubHost: use this running emulator. Empty: the
	// FIRESTORE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST variable if set, else
	// start one on a free port (stopped by Stop).
	FirestoreHost string
	PubSubHost    string
	// Webhooks and SyncWorkers are how many processes run each (defaults 1
	// and 2); RenewChannels runs one (Terraform: max_instance_count 1).
	Webhooks    int
	SyncWorkers int
	// FrontsPort, if not 0, puts the fronts on fixed ports: Webhook on
	// FrontsPort, SyncWorker on FrontsPort+1, RenewChannels on FrontsPort+2,
	// Connect on FrontsPort+3.
	FrontsPort int
	// SyncWorkerTimeout is the SyncWorker's request timeout, enforced by its
	// front (Terraform: 540s, the default); the Webhook's is 60s and
	// RenewChannels' 1800s, as deployed.
	SyncWorkerTimeout time.Duration
	// Push configures the notifications push subscription.
	Push PushOptions
	// PubSubTaps puts a TCP relay between each SyncWorker process and the
	// Pub/Sub emulator (its PUBSUB_EMULATOR_HOST is the relay), so that
	// SetPubSubHook sees each answer coming back to a process before the
	// process does: a test can pause a SyncWorker that has just published
	// its change messages and not yet written them.
	PubSubTaps bool
	// ServiceFaults puts a fault proxy (shared/testing/faultproxy) between
	// each SyncWorker process and the Firestore and Pub/Sub emulators, and
	// between each Webhook process and Pub/Sub (after the tap, if any), with
	// no faults until SetServiceFaults; FaultSeed seeds their draws.
	ServiceFaults bool
	FaultSeed     uint64
	// Race builds the function binary with the race detector.
	Race bool
	// ModuleDir is the calsync checkout to build (default: the module of the
	// current directory).
	ModuleDir string
	// RunDir holds the build, one log file per instance and nothing else
	// (default: a new temporary directory). Stop removes a directory it made,
	// unless KeepRunDir.
	RunDir     string
	KeepRunDir bool
	// EchoLogs, if set, also receives every function process's output, each
	// line behind [Function-i].
	EchoLogs io.Writer
	// Progress, if set, receives a line per start-up step (build, processes).
	Progress io.Writer
	// CalendarAddr is the Calendar emulator's listen address (default 127.0.0.1:0).
	CalendarAddr string
	// Calendar configures the Calendar emulator (Logger defaults to Logger).
	Calendar calendaremu.Options
	// Topics (defaults: the functions' defaults, calsync-notifications and calsync-changes).
	NotificationsTopic string
	ChangesTopic       string
	// ControlTopic is the operator's control topic (default
	// calsync-control); each tenant's is ControlTopic-NAME, as Terraform
	// names them. LifecycleTopic defaults to calsync-lifecycle.
	ControlTopic   string
	LifecycleTopic string
	// Tenants share the stack besides the operator's default tenant
	// (TENANTS; DemoTenants for devstack and the e2e tests): each gets a
	// control topic and a push subscription to the SyncWorker of its own
	// (ControlSubscription is set from ControlTopic). None by default.
	Tenants []tenant.Tenant
	// ChannelTTL and RenewBefore: short so renewal is visible (defaults 2m and 1m).
	ChannelTTL  time.Duration
	RenewBefore time.Duration
	// RenewInterval is how often the stand-in for Cloud Scheduler calls
	// RenewChannels (0: default 20s; negative: never, call RunRenew yourself).
	RenewInterval time.Duration
	// Env holds extra or overriding environment variables for the functions
	// (e.g. LEASE_DURATION, RERUN_INTERVAL, QUIET_PERIOD, RECONCILE_AFTER,
	// LOG_LEVEL). Start checks the result against shared/config.
	Env map[string]string
	// Logger receives the stack's own log lines (default: discard).
	Logger *slog.Logger
}

func (opts Options) withDefaults() Options {
	if opts.ProjectID == "" {
		opts.ProjectID = DefaultProjectID
	}
	if opts.NotificationsTopic == "" {
		opts.NotificationsTopic = DefaultNotifications
	}
	if opts.ChangesTopic == "" {
		opts.ChangesTopic = DefaultChanges
	}
	if opts.ControlTopic == "" {
		opts.ControlTopic = DefaultControl
	}
	if opts.LifecycleTopic == "" {
		opts.LifecycleTopic = DefaultLifecycle
	}
	if opts.Webhooks == 0 {
		opts.Webhooks = 1
	}
	if opts.SyncWorkers == 0 {
		opts.SyncWorkers = 2
	}
	if opts.SyncWorkerTimeout == 0 {
		opts.SyncWorkerTimeout = 540 * time.Second
	}
	opts.Push = opts.Push.withDefaults()
	if opts.ChannelTTL == 0 {
		opts.ChannelTTL = 2 * time.Minute
	}
	if opts.RenewBefore == 0 {
		opts.RenewBefore = time.Minute
	}
	if opts.RenewInterval == 0 {
		opts.RenewInterval = 20 * time.Second
	}
	if opts.CalendarAddr == "" {
		opts.CalendarAddr = "127.0.0.1:0"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Calendar.Logger == nil {
		opts.Calendar.Logger = opts.Logger
	}
	return opts
}

func (opts Options) validate() error {
	var errs []error
	if opts.Webhooks < 1 || opts.SyncWorkers < 1 {
		errs = append(errs, fmt.Errorf("want at least one Webhook and one SyncWorker, got %d and %d", opts.Webhooks, opts.SyncWorkers))
	}
	if opts.SyncWorkerTimeout < 0 {
		errs = append(errs, fmt.Errorf("SyncWorkerTimeout %s is negative", opts.SyncWorkerTimeout))
	}
	errs = append(errs, opts.Push.validate())
	return errors.Join(errs...)
}

// Stack is a running local calsync.
type Stack struct {
	ProjectID string
	// The fronts' URLs: the channels' address, Pub/Sub push's and Cloud
	// Scheduler's targets.
	WebhookURL       string
	SyncWorkerURL    string
	RenewChannelsURL string
	// SyncWorkerPushEndpoint is the push subscription's endpoint:
	// SyncWorkerURL + /projects/P/topics/T, as in Terraform.
	SyncWorkerPushEndpoint string
	CalendarBaseURL        string // the Calendar emulator's root (control API at /emulator/v1/)
	CalendarEndpoint       string // CalendarBaseURL + "/calendar/v3/"
	FirestoreHost          string
	PubSubHost             string
	NotificationsTopic     string
	ChangesTopic           string
	DeadLetterTopic        string
	// LifecycleTopic carries lifecycle messages and control answers.
	LifecycleTopic string
	// Tenants: the default tenant first (CONTROL_SUBSCRIPTION), then
	// Options.Tenants (TENANTS), each with its control topic.
	Tenants []tenant.Tenant
	// PushSubscriptions deliver the notifications topic to SyncWorkerPushEndpoint.
	PushSubscriptions []string
	// DeadLetterSubscription keeps the dead letters (like Terraform's -hold).
	DeadLetterSubscription string
	// RunDir holds the build and the instances' logs.
	RunDir string
	// Build is the function binary every instance runs.
	Build *Build
	// Env is what every function process gets, besides FUNCTION_TARGET and
	// PORT (secrets included: local only).
	Env map[string]string

	// ConnectURL is the Connect function's public base URL (its front,
	// CONNECT_URL); ProductURL is the stand-in product's page every tenant
	// with OAuth may send its users back to (product.go).
	ConnectURL string
	ProductURL string
	// ConnectEnv is the Connect process's environment: Env without the
	// private keys (a public function never holds them).
	ConnectEnv map[string]string

	// The four functions: instances and fronts.
	Webhook, SyncWorker, RenewChannels, Connect *Function
	// Calendar is the in-process Calendar emulator (faults, stats, channels).
	Calendar *calendaremu.Server
	// PubSub is a client of the stack's Pub/Sub emulator.
	PubSub *pubsub.Client

	log       *slog.Logger
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	procs     []*emulators.Process
	prevEnv   map[string]*string // the emulator variables Start replaced (nil: unset)
	calStop   func()
	product   *product
	calSrv    *http.Server
	calHook   func(CalendarCall)
	psHook    func(PubSubAnswer)
	taps      []*tap
	faults    serviceFaults
	calMu     sync.Mutex
	ownRunDir bool
	keepRun   bool
	stopOnce  sync.Once
	renewMu   sync.Mutex
	renewRuns int
	http      *http.Client
	ledger    *ledger
}

// Default names.
const (
	DefaultProjectID     = "calsync-local"
	DefaultNotifications = "calsync-notifications"
	DefaultChanges       = "calsync-changes"
)

// Start builds the function binary, brings the stack up and returns once
// every part answers. On error everything already started is stopped.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s := &Stack{
		prevEnv:            map[string]*string{},
		ProjectID:          opts.ProjectID,
		NotificationsTopic: opts.NotificationsTopic,
		ChangesTopic:       opts.ChangesTopic,
		DeadLetterTopic:    opts.NotificationsTopic + DeadLetterTopicSuffix,
		LifecycleTopic:     opts.LifecycleTopic,
		log:                opts.Logger,
		cancel:             cancel,
		keepRun:            opts.KeepRunDir,
		http:               &http.Client{Timeout: 35 * time.Minute},
		ledger:             newLedger(),
	}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	// The product page first: the tenants' return URLs name it.
	if s.product, err = startProduct(); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	s.ProductURL = s.product.url
	if s.Tenants, err = tenantControls(opts.ControlTopic, withProductReturn(opts.Tenants, s.ProductURL)); err != nil {
		return nil, err
	}

	s.RunDir = opts.RunDir
	if s.RunDir == "" {
		if s.RunDir, err = os.MkdirTemp("", "calsync-devstack-"); err != nil {
			return nil, fmt.Errorf("stack: %w", err)
		}
		s.ownRunDir = true
	} else if err = os.MkdirAll(s.RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}

	// The build and the emulators' start are independent: overlap them.
	type built struct {
		b   *Build
		err error
	}
	buildDone := make(chan built, 1)
	go func() {
		b, err := BuildFunctions(ctx, BuildOptions{ModuleDir: opts.ModuleDir, OutDir: filepath.Join(s.RunDir, "build"), Race: opts.Race, Progress: progress})
		buildDone <- built{b, err}
	}()
	waitBuild := func() error {
		r := <-buildDone
		buildDone <- r
		s.Build = r.b
		return r.err
	}
	defer func() { _ = waitBuild() }() // never leave the build running

	// Emulators: the given host, else the environment's, else our own.
	fmt.Fprintln(progress, "stack: starting the Firestore and Pub/Sub emulators")
	if s.FirestoreHost, err = s.emulator(ctx, emulators.Firestore, opts.FirestoreHost); err != nil {
		return nil, err
	}
	if s.PubSubHost, err = s.emulator(ctx, emulators.PubSub, opts.PubSubHost); err != nil {
		return nil, err
	}

	// Calendar API emulator, in process, behind a hook that lets tests see
	// which function process made each call.
	s.Calendar = calendaremu.New(opts.Calendar)
	if err = s.listenCalendar(opts.CalendarAddr); err != nil {
		return nil, err
	}
	s.CalendarEndpoint = s.CalendarBaseURL + calendaremu.APIPath

	// This process's own clients (tests, the demo, the CLI code) reach the
	// same emulators.
	for k, v := range map[string]string{"FIRESTORE_EMULATOR_HOST": s.FirestoreHost, "PUBSUB_EMULATOR_HOST": s.PubSubHost} {
		// Stop puts the old values back: a later Start in this process must
		// not take this stack's stopped emulators for running ones.
		if old, ok := os.LookupEnv(k); ok {
			s.prevEnv[k] = &old
		} else {
			s.prevEnv[k] = nil
		}
		if err = os.Setenv(k, v); err != nil {
			return nil, fmt.Errorf("stack: %w", err)
		}
	}
	if s.PubSub, err = pubsubx.NewClient(ctx, s.ProjectID, s.PubSubHost); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	for _, t := range []string{s.NotificationsTopic, s.ChangesTopic} {
		if err = pubsubx.EnsureTopic(ctx, s.PubSub, t); err != nil {
			return nil, fmt.Errorf("stack: %w", err)
		}
	}
	if err = s.ensureControlTopics(ctx); err != nil {
		return nil, err
	}

	// Fronts first: their URLs go into the functions' environment.
	s.Webhook = &Function{Name: Webhook}
	s.SyncWorker = &Function{Name: SyncWorker}
	s.RenewChannels = &Function{Name: RenewChannels}
	s.Connect = &Function{Name: Connect}
	timeouts := map[string]time.Duration{Webhook: 60 * time.Second, SyncWorker: opts.SyncWorkerTimeout, RenewChannels: 1800 * time.Second, Connect: 60 * time.Second}
	for i, fn := range s.Functions() {
		fn.Front = newFront(fn, timeouts[fn.Name])
		addr := "127.0.0.1:0"
		if opts.FrontsPort != 0 {
			addr = "127.0.0.1:" + strconv.Itoa(opts.FrontsPort+i)
		}
		if err = fn.Front.listen(addr); err != nil {
			return nil, fmt.Errorf("stack: %w", err)
		}
	}
	s.Webhook.Front.setObserver(s.ledger.webhookDelivery)
	s.SyncWorker.Front.setObserver(s.ledger.syncWorkerDelivery)
	s.WebhookURL = s.Webhook.Front.URL
	s.SyncWorkerURL = s.SyncWorker.Front.URL
	s.RenewChannelsURL = s.RenewChannels.Front.URL
	s.ConnectURL = s.Connect.Front.URL
	if s.Env, s.ConnectEnv, err = s.environment(opts); err != nil {
		return nil, err
	}
	// Google's console: the web client's authorised redirect URI is
	// CONNECT_URL/callback. The client is not registered with the emulator,
	// which then accepts any redirect URI for it: `calsync connect` uses the
	// same client with a loopback one.

	if err = waitBuild(); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	counts := map[string]int{Webhook: opts.Webhooks, SyncWorker: opts.SyncWorkers, RenewChannels: 1, Connect: 1}
	for _, fn := range s.Functions() {
		for i := 0; i < counts[fn.Name]; i++ {
			port, err := emulators.FreePort()
			if err != nil {
				return nil, fmt.Errorf("stack: %w", err)
			}
			env := s.Env
			if fn.Name == Connect {
				env = s.ConnectEnv
			}
			var t *tap
			if opts.PubSubTaps && fn.Name == SyncWorker {
				if t, err = newTap(s.PubSubHost, s.pubSubHook); err != nil {
					return nil, fmt.Errorf("stack: %w", err)
				}
				s.taps = append(s.taps, t)
				env = maps.Clone(s.Env)
				env["PUBSUB_EMULATOR_HOST"] = t.addr()
			}
			if opts.ServiceFaults && (fn.Name == Webhook || fn.Name == SyncWorker) {
				if env, err = s.proxyEnv(fn.Name, i, env, opts.FaultSeed); err != nil {
					return nil, fmt.Errorf("stack: %w", err)
				}
			}
			in := &Instance{
				Function: fn.Name, Index: i,
				LogPath: filepath.Join(s.RunDir, fmt.Sprintf("%s-%d.log", fn.Name, i)),
				bin:     s.Build.Binary, fnEnv: env, echo: opts.EchoLogs,
				spawn: processSpawner, state: StateDown,
				onCrash: func(in *Instance, status string) {
					s.log.Error("function process ended by itself", "instance", in.Name(), "status", status, "log", in.LogPath)
				},
			}
			in.setPort(port)
			if t != nil {
				t.setInstance(in)
			}
			fn.Instances = append(fn.Instances, in)
		}
	}
	fmt.Fprintf(progress, "stack: starting %d Webhook, %d SyncWorker, 1 RenewChannels and 1 Connect processes (logs in %s)\n", opts.Webhooks, opts.SyncWorkers, s.RunDir)
	var startErrs []error
	var startMu sync.Mutex
	var starts sync.WaitGroup
	for _, fn := range s.Functions() {
		for _, in := range fn.Instances {
			starts.Add(1)
			go func() {
				defer starts.Done()
				if err := in.start(ctx); err != nil {
					startMu.Lock()
					startErrs = append(startErrs, err)
					startMu.Unlock()
				}
			}()
		}
	}
	starts.Wait()
	if err = errors.Join(startErrs...); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}

	// Pub/Sub push to the SyncWorker front, as Terraform configures it.
	if err = s.setupPush(ctx, opts.Push); err != nil {
		return nil, err
	}
	// And each control topic, the default tenant's and every tenant's.
	if err = s.setupControl(ctx, opts.Push); err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.watchDeadLetters(runCtx)
	}()

	// Cloud Scheduler's part.
	if opts.RenewInterval > 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.scheduler(runCtx, opts.RenewInterval)
		}()
	}
	fmt.Fprintln(progress, "stack: up")
	s.log.Info("stack started", "webhook", s.WebhookURL, "syncWorker", s.SyncWorkerURL, "renewChannels", s.RenewChannelsURL, "connect", s.ConnectURL,
		"calendar", s.CalendarBaseURL, "firestore", s.FirestoreHost, "pubsub", s.PubSubHost, "project", s.ProjectID, "runDir", s.RunDir)
	return s, nil
}

// Functions returns Webhook, SyncWorker, RenewChannels and Connect.
func (s *Stack) Functions() []*Function {
	return []*Function{s.Webhook, s.SyncWorker, s.RenewChannels, s.Connect}
}

// Function returns the function of that name.
func (s *Stack) Function(name string) (*Function, error) {
	for _, fn := range s.Functions() {
		if fn != nil && fn.Name == name {
			return fn, nil
		}
	}
	return nil, fmt.Errorf("stack: no function %q (Webhook, SyncWorker, RenewChannels, Connect)", name)
}

// Instances describes the instances of a function.
func (s *Stack) Instances(function string) ([]InstanceInfo, error) {
	fn, err := s.Function(function)
	if err != nil {
		return nil, err
	}
	return fn.Infos(), nil
}

func (s *Stack) instance(function string, i int) (*Instance, error) {
	fn, err := s.Function(function)
	if err != nil {
		return nil, err
	}
	return fn.Instance(i)
}

// Kill SIGKILLs instance i of a function.
func (s *Stack) Kill(function string, i int) error {
	in, err := s.instance(function, i)
	if err != nil {
		return err
	}
	s.log.Info("kill", "instance", in.Name(), "pid", in.PID())
	return in.Kill()
}

// Restart starts instance i again (killing it first if it runs).
func (s *Stack) Restart(ctx context.Context, function string, i int) error {
	in, err := s.instance(function, i)
	if err != nil {
		return err
	}
	s.log.Info("restart", "instance", in.Name())
	return in.Restart(ctx)
}

// Pause SIGSTOPs instance i.
func (s *Stack) Pause(function string, i int) error {
	in, err := s.instance(function, i)
	if err != nil {
		return err
	}
	s.log.Info("pause", "instance", in.Name(), "pid", in.PID())
	return in.Pause()
}

// Resume SIGCONTs instance i.
func (s *Stack) Resume(function string, i int) error {
	in, err := s.instance(function, i)
	if err != nil {
		return err
	}
	s.log.Info("resume", "instance", in.Name(), "pid", in.PID())
	return in.Resume()
}

// ProcessProblems lists the lines of the function processes' logs that
// report a data race, a panic or a fatal error ("" markers of a broken process).
func (s *Stack) ProcessProblems() ([]string, error) {
	return scanLogs(s.RunDir, "WARNING: DATA RACE", "panic:", "fatal error:")
}

// Logs returns each instance's log path.
func (s *Stack) Logs() []string {
	var out []string
	for _, fn := range s.Functions() {
		if fn == nil {
			continue
		}
		for _, in := range fn.Instances {
			out = append(out, in.LogPath)
		}
	}
	return out
}

// LogTail returns the last n lines of every instance's log, for a failing test.
func (s *Stack) LogTail(n int) string {
	var out string
	for _, p := range s.Logs() {
		out += "--- " + p + "\n" + tailFile(p, n) + "\n"
	}
	return out
}

func (s *Stack) emulator(ctx context.Context, kind emulators.Kind, host string) (string, error) {
	if host == "" {
		host = os.Getenv(kind.EnvVar())
	}
	if host != "" {
		return host, nil
	}
	p, err := emulators.Start(ctx, kind, 0)
	if err != nil {
		return "", fmt.Errorf("stack: %w", err)
	}
	s.procs = append(s.procs, p)
	s.log.Info("emulator started", "kind", string(kind), "host", p.Host)
	return p.Host, nil
}

// environment is what the deployed functions get from Terraform, pointed at
// the local emulators, with keys generated for this run: env for every
// function but Connect, connectEnv for Connect (env without the private
// keys, as terraform/functions.tf gives it).
func (s *Stack) environment(opts Options) (env, connectEnv map[string]string, err error) {
	tokenKey, err := randomKey("dev1")
	if err != nil {
		return nil, nil, err
	}
	// Refresh tokens are sealed to this pair, as in a deployment: the CLI
	// (calsync connect --state-file) and the Connect function need only the
	// public key.
	credPriv, credPub, err := sealed.GenerateKey("dev1")
	if err != nil {
		return nil, nil, err
	}
	linkKeys, err := s.connectLinkKeys()
	if err != nil {
		return nil, nil, err
	}
	env = map[string]string{
		"PROJECT_ID":              s.ProjectID,
		"GOOGLE_CLOUD_PROJECT":    s.ProjectID,
		"LOG_LEVEL":               "warning",
		"FIRESTORE_EMULATOR_HOST": s.FirestoreHost,
		"PUBSUB_EMULATOR_HOST":    s.PubSubHost,
		"NOTIFICATIONS_TOPIC":     s.NotificationsTopic,
		"CHANGES_TOPIC":           s.ChangesTopic,
		"CHANNEL_TOKEN_KEYS":      tokenKey,
		"CREDENTIAL_PRIVATE_KEYS": credPriv,
		"CREDENTIAL_PUBLIC_KEY":   credPub.String(),
		"CALENDAR_ENDPOINT":       s.CalendarEndpoint,
		"OAUTH_TOKEN_URL":         s.CalendarBaseURL + "/token",
		"OAUTH_AUTH_URL":          s.CalendarBaseURL + "/authorize",
		"OAUTH_REVOKE_URL":        s.CalendarBaseURL + "/revoke",
		"OAUTH_CLIENT_ID":         "devstack",
		"OAUTH_CLIENT_SECRET":     "devstack-secret",
		"WEBHOOK_URL":             s.WebhookURL,
		"CONNECT_URL":             s.ConnectURL,
		"CONNECT_LINK_KEYS":       linkKeys,
		"CHANNEL_TTL":             opts.ChannelTTL.String(),
		"RENEW_BEFORE":            opts.RenewBefore.String(),
		"RECONCILE_AFTER":         "10m",
		"LEASE_DURATION":          "20s",
		"RETRY_BUDGET":            "30s",
		// The SyncWorker refuses pushes of any other subscription.
		"NOTIFICATION_SUBSCRIPTIONS": strings.Join(opts.Push.subscriptions(), ","),
	}
	// The control path (terraform/functions.tf's tenancy_env and the
	// SyncWorker's CONTROL_SUBSCRIPTION); Start always sets both.
	if s.LifecycleTopic != "" {
		env["LIFECYCLE_TOPIC"] = s.LifecycleTopic
	}
	if len(s.Tenants) > 0 {
		env["CONTROL_SUBSCRIPTION"] = s.Tenants[0].ControlSubscription
		env["TENANTS"] = tenantsJSON(s.Tenants)
	}
	for k, v := range opts.Env {
		env[k] = v
	}
	connectEnv = maps.Clone(env)
	delete(connectEnv, "CREDENTIAL_PRIVATE_KEYS")
	delete(connectEnv, "CREDENTIAL_KEYS")
	// The functions would only say so on their first request: check now.
	lookup := envconfig.MapLookuper(env)
	ctx := context.Background()
	var errs []error
	if _, err := config.Load[config.Webhook](ctx, lookup); err != nil {
		errs = append(errs, fmt.Errorf("Webhook %w", err))
	}
	if _, err := config.Load[config.SyncWorker](ctx, lookup); err != nil {
		errs = append(errs, fmt.Errorf("SyncWorker %w", err))
	}
	if _, err := config.Load[config.RenewChannels](ctx, lookup); err != nil {
		errs = append(errs, fmt.Errorf("RenewChannels %w", err))
	}
	if _, err := config.Load[config.Connect](ctx, envconfig.MapLookuper(connectEnv)); err != nil {
		errs = append(errs, fmt.Errorf("Connect %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, fmt.Errorf("stack: the functions' environment is invalid: %w", err)
	}
	return env, connectEnv, nil
}

func randomKey(id string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return id + ":" + base64.StdEncoding.EncodeToString(b), nil
}

// Stop stops what Start started: the scheduler, the function processes
// (SIGTERM, then SIGKILL), the fronts, the Calendar emulator and the emulator
// processes (their Java processes included), and removes the run directory
// it made unless KeepRunDir.
func (s *Stack) Stop() {
	s.stopOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		var stops sync.WaitGroup
		for _, fn := range s.Functions() {
			if fn == nil {
				continue
			}
			for _, in := range fn.Instances {
				stops.Add(1)
				go func() { defer stops.Done(); in.stop(3 * time.Second) }()
			}
		}
		stops.Wait()
		s.closeFaultProxies()
		if s.product != nil {
			s.product.close()
		}
		for _, t := range s.taps {
			t.close()
		}
		for _, fn := range s.Functions() {
			if fn != nil && fn.Front != nil {
				fn.Front.close()
			}
		}
		if s.PubSub != nil {
			s.PubSub.Close()
		}
		if s.calStop != nil {
			s.calStop()
		}
		if s.Calendar != nil {
			s.Calendar.Close()
		}
		for _, p := range s.procs {
			p.Stop()
		}
		for k, v := range s.prevEnv {
			if v == nil {
				os.Unsetenv(k)
			} else {
				os.Setenv(k, *v)
			}
		}
		s.calMu.Lock()
		keep := s.keepRun
		s.calMu.Unlock()
		if s.ownRunDir && !keep && s.RunDir != "" {
			_ = os.RemoveAll(s.RunDir)
		}
	})
}

// KeepRunDir makes Stop leave the run directory (build and logs) in place,
// e.g. because a test failed.
func (s *Stack) KeepRunDir() {
	s.calMu.Lock()
	defer s.calMu.Unlock()
	s.keepRun = true
}

// EnvList returns Env as sorted KEY=VALUE lines.
func (s *Stack) EnvList() []string {
	out := make([]string, 0, len(s.Env))
	for k, v := range s.Env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// CalendarCall is one request the Calendar emulator answered.
type CalendarCall struct {
	Request *http.Request // read-only; its body is consumed
	Status  int
	Bytes   int // size of the answer's body
}

// SetCalendarHook installs fn, called after the Calendar emulator has made
// its answer to each request and before the caller can have all of it
// (net/http sends the rest when the handler returns): a test can act on the
// caller at that moment, e.g. pause the SyncWorker whose listing was just
// made, so that it goes on with it later. nil removes it.
func (s *Stack) SetCalendarHook(fn func(CalendarCall)) {
	s.calMu.Lock()
	defer s.calMu.Unlock()
	s.calHook = fn
}

// SetPubSubHook installs fn, called with each chunk of the Pub/Sub
// emulator's answers to a SyncWorker process before the process gets it
// (Options.PubSubTaps). nil removes it.
func (s *Stack) SetPubSubHook(fn func(PubSubAnswer)) {
	s.calMu.Lock()
	defer s.calMu.Unlock()
	s.psHook = fn
}

func (s *Stack) pubSubHook() func(PubSubAnswer) {
	s.calMu.Lock()
	defer s.calMu.Unlock()
	return s.psHook
}

// CallerOf names the function instance that sent r to the Calendar emulator
// (from /proc: the process holding the connection's socket).
func (s *Stack) CallerOf(r *http.Request) (function string, index int, err error) {
	byPID := map[int]*Instance{}
	var pids []int
	for _, fn := range s.Functions() {
		for _, in := range fn.Instances {
			if pid := in.PID(); pid != 0 {
				byPID[pid] = in
				pids = append(pids, pid)
			}
		}
	}
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return "", 0, errors.New("stack: request without a local address")
	}
	pid, err := socketOwner(r.RemoteAddr, local.String(), pids)
	if err != nil {
		return "", 0, err
	}
	in := byPID[pid]
	return in.Function, in.Index, nil
}

func (s *Stack) listenCalendar(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("stack: calendar emulator: %w", err)
	}
	s.CalendarBaseURL = "http://" + ln.Addr().String()
	s.calSrv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calMu.Lock()
		hook := s.calHook
		s.calMu.Unlock()
		if hook == nil {
			s.Calendar.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		s.Calendar.ServeHTTP(sw, r)
		hook(CalendarCall{Request: r, Status: sw.status, Bytes: sw.bytes})
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.calSrv.Serve(ln)
	}()
	s.calStop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.calSrv.Shutdown(ctx); err != nil {
			_ = s.calSrv.Close()
		}
		<-done
	}
	return nil
}

type statusWriter struct {
	http.ResponseWriter
	status, bytes int
}

func (w *statusWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
