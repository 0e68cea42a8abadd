// Package stack runs the whole of calsync on one machine: the Firestore and
// Pub/Sub emulators (shared/emulators), the Calendar API emulator
// (shared/calendaremu), and the three Cloud Functions served by
// functions-framework-go exactly as deployed (the root package registers them),
// wired together the way Google wires them in production: the Webhook's URL is
// the push channels' address, a bridge delivers the notifications topic to
// SyncWorker as Pub/Sub push requests (the push subscription of
// terraform/pubsub.tf), and a ticker stands in for Cloud Scheduler calling
// RenewChannels.
//
// The functions read their configuration from the environment once, on their
// first request, and functions-framework-go's server cannot be stopped, so a
// process runs at most one Stack; Start sets the environment variables the
// functions need (and FIRESTORE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST, so the
// process's own clients reach the same emulators).
package stack

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"
	"github.com/sethvargo/go-envconfig"

	// Registers Webhook, SyncWorker and RenewChannels, as the deployed build does.
	_ "github.com/calsync/calsync"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/pubsubx"
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
	// FunctionsPort serves the three functions (0: a free port).
	FunctionsPort int
	// CalendarAddr is the Calendar emulator's listen address (default 127.0.0.1:0).
	CalendarAddr string
	// Calendar configures the Calendar emulator (Logger defaults to Logger at warning).
	Calendar calendaremu.Options
	// Topics (defaults: the functions' defaults, calsync-notifications and calsync-changes).
	NotificationsTopic string
	ChangesTopic       string
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
	// Bridge tunes the notifications → SyncWorker delivery.
	Bridge BridgeOptions
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

// Stack is a running local calsync.
type Stack struct {
	ProjectID          string
	FunctionsURL       string // http://127.0.0.1:PORT; each function at /<Name>
	WebhookURL         string
	SyncWorkerURL      string
	RenewChannelsURL   string
	CalendarBaseURL    string // the Calendar emulator's root (control API at /emulator/v1/)
	CalendarEndpoint   string // CalendarBaseURL + "/calendar/v3/"
	FirestoreHost      string
	PubSubHost         string
	NotificationsTopic string
	ChangesTopic       string
	// Subscription is the pull subscription the bridge delivers to SyncWorker.
	Subscription string
	// Env is every variable set for the functions (secrets included: local only).
	Env map[string]string

	// Calendar is the in-process Calendar emulator (faults, stats, channels).
	Calendar *calendaremu.Server
	// Bridge delivers the notifications topic to SyncWorker.
	Bridge *Bridge
	// PubSub is a client of the stack's Pub/Sub emulator.
	PubSub *pubsub.Client

	log       *slog.Logger
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	procs     []*emulators.Process
	calStop   func()
	stopOnce  sync.Once
	renewMu   sync.Mutex
	renewRuns int
	http      *http.Client
}

// Default names.
const (
	DefaultProjectID     = "calsync-local"
	DefaultNotifications = "calsync-notifications"
	DefaultChanges       = "calsync-changes"
	SyncWorkerSub        = "devstack-syncworker"
)

var (
	funcMu      sync.Mutex
	funcRunning string // the functions server's URL once started
)

// Start brings the stack up and returns once every part answers. On error
// everything already started is stopped.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	opts = opts.withDefaults()

	funcMu.Lock()
	defer funcMu.Unlock()
	if funcRunning != "" {
		return nil, fmt.Errorf("stack: this process already served the functions at %s (their config is read once per process): run one Stack per process", funcRunning)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	s := &Stack{
		ProjectID:          opts.ProjectID,
		NotificationsTopic: opts.NotificationsTopic,
		ChangesTopic:       opts.ChangesTopic,
		Subscription:       SyncWorkerSub,
		log:                opts.Logger,
		cancel:             cancel,
		http:               &http.Client{Timeout: 5 * time.Minute},
	}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()

	// Emulators: the given host, else the environment's, else our own.
	if s.FirestoreHost, err = s.emulator(ctx, emulators.Firestore, opts.FirestoreHost); err != nil {
		return nil, err
	}
	if s.PubSubHost, err = s.emulator(ctx, emulators.PubSub, opts.PubSubHost); err != nil {
		return nil, err
	}

	// Calendar API emulator, in process.
	s.Calendar = calendaremu.New(opts.Calendar)
	if s.CalendarBaseURL, s.calStop, err = s.Calendar.Listen(runCtx, opts.CalendarAddr); err != nil {
		return nil, fmt.Errorf("stack: calendar emulator: %w", err)
	}
	s.CalendarEndpoint = s.CalendarBaseURL + calendaremu.APIPath

	// Topics and the subscription behind SyncWorker's trigger.
	if s.PubSub, err = pubsubx.NewClient(ctx, s.ProjectID, s.PubSubHost); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	for _, t := range []string{s.NotificationsTopic, s.ChangesTopic} {
		if err = pubsubx.EnsureTopic(ctx, s.PubSub, t); err != nil {
			return nil, fmt.Errorf("stack: %w", err)
		}
	}
	if err = pubsubx.EnsureSubscription(ctx, s.PubSub, s.NotificationsTopic, s.Subscription, false); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}

	// The functions, through functions-framework-go.
	port := opts.FunctionsPort
	if port == 0 {
		if port, err = emulators.FreePort(); err != nil {
			return nil, fmt.Errorf("stack: %w", err)
		}
	}
	s.FunctionsURL = "http://127.0.0.1:" + strconv.Itoa(port)
	s.WebhookURL = s.FunctionsURL + "/Webhook"
	s.SyncWorkerURL = s.FunctionsURL + "/SyncWorker"
	s.RenewChannelsURL = s.FunctionsURL + "/RenewChannels"
	if s.Env, err = s.environment(opts); err != nil {
		return nil, err
	}
	for k, v := range s.Env {
		if err = os.Setenv(k, v); err != nil {
			return nil, fmt.Errorf("stack: setenv %s: %w", k, err)
		}
	}
	// Without FUNCTION_TARGET the framework serves every function at /<Name>.
	_ = os.Unsetenv("FUNCTION_TARGET")
	serveErr := make(chan error, 1)
	go func() { serveErr <- funcframework.StartHostPort("127.0.0.1", strconv.Itoa(port)) }()
	if err = waitListening(ctx, "127.0.0.1:"+strconv.Itoa(port), serveErr, 30*time.Second); err != nil {
		return nil, fmt.Errorf("stack: functions server: %w", err)
	}
	funcRunning = s.FunctionsURL

	// The push subscription's part: notifications topic → SyncWorker.
	s.Bridge = newBridge(s, opts.Bridge)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.Bridge.run(runCtx)
	}()

	// Cloud Scheduler's part.
	if opts.RenewInterval > 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.scheduler(runCtx, opts.RenewInterval)
		}()
	}
	s.log.Info("stack started", "functions", s.FunctionsURL, "calendar", s.CalendarBaseURL,
		"firestore", s.FirestoreHost, "pubsub", s.PubSubHost, "project", s.ProjectID)
	return s, nil
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
// the local emulators, with keys generated for this run.
func (s *Stack) environment(opts Options) (map[string]string, error) {
	tokenKey, err := randomKey("dev1")
	if err != nil {
		return nil, err
	}
	credKey, err := randomKey("dev1")
	if err != nil {
		return nil, err
	}
	env := map[string]string{
		"PROJECT_ID":              s.ProjectID,
		"GOOGLE_CLOUD_PROJECT":    s.ProjectID,
		"LOG_LEVEL":               "warning",
		"FIRESTORE_EMULATOR_HOST": s.FirestoreHost,
		"PUBSUB_EMULATOR_HOST":    s.PubSubHost,
		"NOTIFICATIONS_TOPIC":     s.NotificationsTopic,
		"CHANGES_TOPIC":           s.ChangesTopic,
		"CHANNEL_TOKEN_KEYS":      tokenKey,
		"CREDENTIAL_KEYS":         credKey,
		"CALENDAR_ENDPOINT":       s.CalendarEndpoint,
		"OAUTH_TOKEN_URL":         s.CalendarBaseURL + "/token",
		"OAUTH_AUTH_URL":          s.CalendarBaseURL + "/authorize",
		"OAUTH_CLIENT_ID":         "devstack",
		"OAUTH_CLIENT_SECRET":     "devstack-secret",
		"WEBHOOK_URL":             s.WebhookURL,
		"CHANNEL_TTL":             opts.ChannelTTL.String(),
		"RENEW_BEFORE":            opts.RenewBefore.String(),
		"RECONCILE_AFTER":         "10m",
		"LEASE_DURATION":          "20s",
		"RETRY_BUDGET":            "30s",
	}
	for k, v := range opts.Env {
		env[k] = v
	}
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
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("stack: the functions' environment is invalid: %w", err)
	}
	return env, nil
}

func randomKey(id string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return id + ":" + base64.StdEncoding.EncodeToString(b), nil
}

func waitListening(ctx context.Context, addr string, serveErr <-chan error, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-serveErr:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("not listening after " + timeout.String())
		}
	}
}

// Stop stops what Start started: the bridge, the scheduler, the Calendar
// emulator and the emulator processes (their Java processes included). The
// functions' HTTP server lives until the process exits (functions-framework-go
// has no shutdown), so Stop is meant for the end of a process.
func (s *Stack) Stop() {
	s.stopOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
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
	})
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
