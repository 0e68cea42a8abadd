// Package e2e drives the whole of calsync from outside: one local stack
// (scripts/devstack/stack) per test binary, reached only through the Calendar
// API, the functions' URLs, the CLI, Firestore and the changes topic.
package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
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
)

// sys is the stack shared by every test of this package (the functions read
// their config once per process).
var sys *stack.Stack

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("E2E_VERBOSE") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var err error
	sys, err = stack.Start(ctx, stack.Options{
		ProjectID:     fmt.Sprintf("e2e-%d", time.Now().UnixNano()%1e9),
		RenewInterval: renewEvery,
		ChannelTTL:    channelTTL,
		RenewBefore:   renewBefore,
		Calendar:      calendaremu.Options{PushRetryBaseDelay: 200 * time.Millisecond},
		// A 60s function timeout (production: 540s) frees the slot of a
		// delivery parked by cloudevents/sdk-go#1224 (see waitQuiet).
		Bridge: stack.BridgeOptions{RetryDelay: 300 * time.Millisecond, Timeout: 60 * time.Second},
		Env: map[string]string{
			"LOG_LEVEL":       envOr("E2E_LOG_LEVEL", "error"),
			"LEASE_DURATION":  leaseDuration.String(),
			"RERUN_INTERVAL":  "600ms",
			"QUIET_PERIOD":    "200ms",
			"RETRY_BUDGET":    "20s",
			"RECONCILE_AFTER": "3s",
			// Every RenewChannels call diffs enrolled directories (enroll_test.go).
			"DIRECTORY_SYNC_INTERVAL": "1s",
		},
		Logger: logger,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: the local stack did not start:", err)
		return 1
	}
	defer sys.Stop()
	return m.Run()
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
