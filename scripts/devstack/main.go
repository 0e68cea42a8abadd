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
	stateFile     string
	project       string
	functionsPort int
	calendarAddr  string
	renewEvery    time.Duration
	channelTTL    time.Duration
	renewBefore   time.Duration
	logLevel      string
	demo          bool
	demoEvents    int
	demoEvery     time.Duration
}

func parseFlags(args []string, stderr io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("devstack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.stateFile, "state-file", "", "write the stack's endpoints and environment as JSON to this file")
	fs.StringVar(&f.project, "project", stack.DefaultProjectID, "project id of the emulated project")
	fs.IntVar(&f.functionsPort, "functions-port", 0, "port of the functions server (0: a free one)")
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
	fmt.Fprintln(stdout, "devstack: starting the emulators and the functions...")
	st, err := stack.Start(ctx, stack.Options{
		ProjectID:     f.project,
		FunctionsPort: f.functionsPort,
		CalendarAddr:  f.calendarAddr,
		ChannelTTL:    f.channelTTL,
		RenewBefore:   f.renewBefore,
		RenewInterval: renew,
		Env:           map[string]string{"LOG_LEVEL": f.logLevel},
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
	printEndpoints(stdout, st, f.stateFile)

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
  Webhook (channel address)  %s
  SyncWorker (Pub/Sub push)  %s
  RenewChannels              %s
  Calendar API emulator      %s   (control: %s/emulator/v1/)
  Firestore emulator         %s
  Pub/Sub emulator           %s
  topics                     %s -> SyncWorker (subscription %s), changes: %s
`, st.ProjectID, st.WebhookURL, st.SyncWorkerURL, st.RenewChannelsURL, st.CalendarEndpoint, st.CalendarBaseURL,
		st.FirestoreHost, st.PubSubHost, st.NotificationsTopic, st.Subscription, st.ChangesTopic)
	if stateFile != "" {
		fmt.Fprintf(w, "  state file                 %s\n", stateFile)
	}
	fmt.Fprintln(w, "To point the CLI or a client at this stack:")
	for _, kv := range st.EnvList() {
		fmt.Fprintf(w, "  export %s\n", kv)
	}
	fmt.Fprintln(w, "Ctrl-C stops everything.")
}
