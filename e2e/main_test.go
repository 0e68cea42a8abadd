// Package e2e drives the whole of calsync from outside: one local stack
// (scripts/devstack/stack) per test binary, reached only through the Calendar
// API, the functions' fronts, the CLI, Firestore and the changes topic, with
// the stack's process control and fault injection.
package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/calsync/calsync/scripts/devstack/stack"
	"github.com/calsync/calsync/shared/testing/calendaremu"
)

// Channels live 40s and are renewed when 30s or less remain, so a renewal
// is due 10s after a channel is made; the stand-in for Cloud Scheduler runs
// RenewChannels every 10s, and a calendar not synced for 3s is reconciled.
const (
	channelTTL  = 40 * time.Second
	renewBefore = 30 * time.Second
	renewEvery  = 10 * time.Second
	// leaseDuration is the SyncWorker's LEASE_DURATION.
	leaseDuration = 10 * time.Second
	// The processes every test runs against: enough for the multi-process
	// chaos test (≥2 Webhooks, ≥3 SyncWorkers).
	webhooks    = 2
	syncWorkers = 3
)

// sys is the stack shared by every test of this package (starting one builds
// the function binary and starts two emulators: once is enough).
var sys *stack.Stack

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	var progress, echo io.Writer
	if os.Getenv("E2E_VERBOSE") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		progress, echo = os.Stderr, os.Stderr
	}
	start := time.Now()
	var err error
	sys, err = stack.Start(ctx, stack.Options{
		ProjectID:   fmt.Sprintf("e2e-%d", time.Now().UnixNano()%1e9),
		Webhooks:    webhooks,
		SyncWorkers: syncWorkers,
		Race:        raceEnabled,
		// The multi-process chaos test pauses a SyncWorker between its
		// publish and its writes: it needs to see Pub/Sub's answers.
		PubSubTaps: true,
		// And it injects Google Cloud's faults between the functions and
		// the emulators (servicefaults_test.go).
		ServiceFaults: true,
		RenewInterval: renewEvery,
		// Two products beside the operator (tenants_test.go).
		Tenants:     stack.DemoTenants(),
		ChannelTTL:  channelTTL,
		RenewBefore: renewBefore,
		Calendar:    calendaremu.Options{PushRetryBaseDelay: 200 * time.Millisecond},
		// A 60s function timeout (production: 540s): a stuck delivery frees
		// its push loop within a test's patience.
		SyncWorkerTimeout: 60 * time.Second,
		Env: map[string]string{
			"LOG_LEVEL":       envOr("E2E_LOG_LEVEL", "warning"),
			"LEASE_DURATION":  leaseDuration.String(),
			"RERUN_INTERVAL":  "600ms",
			"QUIET_PERIOD":    "200ms",
			"RETRY_BUDGET":    "20s",
			"RECONCILE_AFTER": "3s",
			// Every RenewChannels call diffs enrolled directories (enroll_test.go).
			"DIRECTORY_SYNC_INTERVAL": "1s",
		},
		EchoLogs: echo,
		Progress: progress,
		Logger:   logger,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: the local stack did not start:", err)
		return 1
	}
	defer sys.Stop()
	fmt.Fprintf(os.Stderr, "e2e: stack up in %s (function binary built in %s, race %v; %d Webhook, %d SyncWorker, 1 RenewChannels, 1 Connect processes; logs in %s)\n",
		time.Since(start).Round(time.Millisecond), sys.Build.Duration.Round(time.Millisecond), sys.Build.Race, webhooks, syncWorkers, sys.RunDir)
	code := m.Run()
	// A function process that raced, panicked or crashed fails the run.
	problems, err := sys.ProcessProblems()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: reading the function logs:", err)
		code = 1
	}
	if len(problems) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: the function processes reported %d problems:\n%s\n", len(problems), strings.Join(firstN(problems, 40), "\n"))
		code = 1
	}
	if code == 0 && os.Getenv("E2E_KEEP_LOGS") != "" {
		sys.KeepRunDir()
		fmt.Fprintf(os.Stderr, "e2e: the function processes' logs are kept in %s\n", sys.RunDir)
	}
	if code != 0 {
		sys.KeepRunDir()
		fmt.Fprintf(os.Stderr, "e2e: failed; the function processes' logs are kept in %s. Their tails:\n%s", sys.RunDir, sys.LogTail(15))
	}
	return code
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
