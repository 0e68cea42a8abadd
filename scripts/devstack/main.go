// Command devstack runs the whole of calsync on one machine: the Firestore and
// Pub/Sub emulators, the Calendar API emulator and the three functions, wired
// as in production (see README.md). Ctrl-C or SIGTERM stops everything it
// started.
//
//	go run ./scripts/devstack [--state-file .devstack/state.json] [--demo]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/calsync/calsync/scripts/devstack/stack"
	"github.com/calsync/calsync/shared/logging"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		stop()
		os.Exit(1)
	}
}

type flags struct {
	stateFile    string
	project      string
	webhooks     int
	syncWorkers  int
	frontsPort   int
	pushShards   int
	race         bool
	runDir       string
	keepLogs     bool
	echoLogs     bool
	calendarAddr string
	renewEvery   time.Duration
	channelTTL   time.Duration
	renewBefore  time.Duration
	logLevel     string
	demo         bool
	demoEvents   int
	demoEvery    time.Duration
}

func parseFlags(args []string, stderr io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("devstack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.stateFile, "state-file", "", "write the stack's endpoints and environment as JSON to this file")
	fs.StringVar(&f.project, "project", stack.DefaultProjectID, "project id of the emulated project")
	fs.IntVar(&f.webhooks, "webhooks", 1, "Webhook processes")
	fs.IntVar(&f.syncWorkers, "sync-workers", 2, "SyncWorker processes")
	fs.IntVar(&f.frontsPort, "fronts-port", 0, "fixed ports for the fronts: Webhook on N, SyncWorker on N+1, RenewChannels on N+2, Connect on N+3 (0: free ones)")
	fs.IntVar(&f.pushShards, "push-shards", 4, "push subscriptions the notifications are spread over (1: Terraform's single subscription; the emulator pushes two at a time per subscription)")
	fs.BoolVar(&f.race, "race", false, "build the function binary with the race detector")
	fs.StringVar(&f.runDir, "run-dir", "", "directory for the function binary and the per-process logs (default: a temporary one, removed on exit unless --keep-logs)")
	fs.BoolVar(&f.keepLogs, "keep-logs", false, "keep the run directory (build and logs) on exit")
	fs.BoolVar(&f.echoLogs, "echo-logs", false, "also print every function process's output, line by line behind [Function-i]")
	fs.StringVar(&f.calendarAddr, "calendar-addr", "127.0.0.1:0", "listen address of the Calendar API emulator")
	fs.DurationVar(&f.renewEvery, "renew-interval", 20*time.Second, "how often the stand-in for Cloud Scheduler calls RenewChannels (0: never)")
	fs.DurationVar(&f.channelTTL, "channel-ttl", 2*time.Minute, "CHANNEL_TTL asked for each push channel")
	fs.DurationVar(&f.renewBefore, "renew-before", time.Minute, "RENEW_BEFORE: renew channels expiring within this window")
	fs.StringVar(&f.logLevel, "log-level", "warning", "LOG_LEVEL of the functions and the stack (debug, info, warning, error)")
	fs.BoolVar(&f.demo, "demo", false, "create a calendar of a few hundred events, watch it, keep changing it and print the change feed")
	fs.IntVar(&f.demoEvents, "demo-events", 300, "events the demo calendar starts with")
	fs.DurationVar(&f.demoEvery, "demo-interval", 2*time.Second, "pause between the demo's bursts of changes")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if f.webhooks < 1 || f.syncWorkers < 1 {
		return f, fmt.Errorf("--webhooks and --sync-workers must be at least 1")
	}
	if _, ok := logging.ParseLevel(f.logLevel); !ok {
		return f, fmt.Errorf("--log-level %q is not one of debug, info, warning, error", f.logLevel)
	}
	return f, nil
}

func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	lvl, _ := logging.ParseLevel(f.logLevel)
	logger := logging.New(stderr, lvl)
	renew := f.renewEvery
	if renew <= 0 {
		renew = -1
	}
	fmt.Fprintln(stdout, "devstack: building the function binary and starting the emulators and the functions...")
	var echo io.Writer
	if f.echoLogs {
		echo = stderr
	}
	st, err := stack.Start(ctx, stack.Options{
		ProjectID:     f.project,
		Webhooks:      f.webhooks,
		SyncWorkers:   f.syncWorkers,
		FrontsPort:    f.frontsPort,
		Push:          stack.PushOptions{Shards: f.pushShards},
		Race:          f.race,
		RunDir:        f.runDir,
		KeepRunDir:    f.keepLogs,
		EchoLogs:      echo,
		Progress:      stdout,
		CalendarAddr:  f.calendarAddr,
		ChannelTTL:    f.channelTTL,
		RenewBefore:   f.renewBefore,
		RenewInterval: renew,
		Env:           map[string]string{"LOG_LEVEL": f.logLevel},
		Tenants:       stack.DemoTenants(),
		Logger:        logger.With("component", "devstack"),
	})
	if err != nil {
		return err
	}
	defer st.Stop()

	if f.stateFile != "" {
		if dir := filepath.Dir(f.stateFile); dir != "" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		if err := st.WriteState(f.stateFile); err != nil {
			return fmt.Errorf("state file: %w", err)
		}
		defer os.Remove(f.stateFile)
	}
	if err := seedWorkspace(ctx, st); err != nil && ctx.Err() == nil { // else: stopped meanwhile
		return fmt.Errorf("demo tenants' Workspace: %w", err)
	}
	printEndpoints(stdout, st, f.stateFile)
	if err := printConnect(stdout, st, f.stateFile); err != nil {
		return fmt.Errorf("connect link: %w", err)
	}
	fmt.Fprintln(stdout, "Ctrl-C stops everything.")

	if f.demo {
		if err := runDemo(ctx, st, demoOptions{events: f.demoEvents, every: f.demoEvery}, stdout); err != nil && ctx.Err() == nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "devstack: stopping")
	return nil
}

func printEndpoints(w io.Writer, st *stack.Stack, stateFile string) {
	fmt.Fprintf(w, `devstack: calsync is running (project %s)
  Webhook front (channel address)  %s
  SyncWorker front (Pub/Sub push)  %s
  RenewChannels front (scheduler)  %s
  Connect front (CONNECT_URL)      %s   (users come back to %s)
  Calendar API emulator            %s   (control: %s/emulator/v1/)
  Firestore emulator               %s
  Pub/Sub emulator                 %s
  topics                           %s -> push %v -> %s
                                   dead letters: %s (kept in %s); changes: %s
`, st.ProjectID, st.WebhookURL, st.SyncWorkerURL, st.RenewChannelsURL, st.ConnectURL, st.ProductURL, st.CalendarEndpoint, st.CalendarBaseURL,
		st.FirestoreHost, st.PubSubHost, st.NotificationsTopic, st.PushSubscriptions, st.SyncWorkerPushEndpoint,
		st.DeadLetterTopic, st.DeadLetterSubscription, st.ChangesTopic)
	fmt.Fprintln(w, "  processes (FUNCTION_TARGET, pid, port, log):")
	for _, fn := range st.Functions() {
		for _, in := range fn.Infos() {
			fmt.Fprintf(w, "    %-15s pid %-7d port %-5d %s\n", fmt.Sprintf("%s-%d", in.Function, in.Index), in.PID, in.Port, in.LogPath)
		}
	}
	if stateFile != "" {
		fmt.Fprintf(w, "  state file                       %s\n", stateFile)
	}
	fmt.Fprintln(w, "To point the CLI or a client at this stack:")
	for _, kv := range st.EnvList() {
		fmt.Fprintf(w, "  export %s\n", kv)
	}
	printControl(w, st, stateFile)
}
