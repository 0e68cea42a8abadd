// Command calendar-emulator serves the Google Calendar API v3 emulator
// (shared/calendaremu) for local development and end-to-end tests.
//
//	go run ./scripts/calendar-emulator --addr 127.0.0.1:0
//
// It prints "listening on http://HOST:PORT" on stdout and logs JSON lines on stderr.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/testing/calendaremu"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := realMain(ctx, os.Args[1:], os.Stdout, logging.New(os.Stderr, slog.LevelInfo)); err != nil {
		fmt.Fprintln(os.Stderr, "calendar-emulator:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("calendar-emulator", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8085", "listen address; port 0 picks a free port")
	maxTTL := fs.Duration("max-ttl", 604800*time.Second, "maximum channel lifetime")
	quota := fs.Bool("quota", false, "enforce Google's quotas (see --quota-per-minute, --project-quota-per-minute)")
	perMinute := fs.Int("quota-per-minute", 600, "requests per user per sliding minute when --quota is set")
	perProject := fs.Int("project-quota-per-minute", 10000, "requests per project per sliding minute when --quota is set (0: none)")
	quota429 := fs.Bool("quota-429", false, "answer quota rejections 429 rateLimitExceeded instead of 403")
	defaultUser := fs.String("default-user", calendaremu.DefaultUser, "identity of requests without Authorization")
	anyToken := fs.Bool("allow-unknown-tokens", false, "map bearer tokens the emulator did not issue to the default user")
	retryBase := fs.Duration("push-retry-base", time.Second, "first retry delay of a failed notification")
	timeZone := fs.String("time-zone", "UTC", "time zone of primary calendars")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts := calendaremu.Options{Logger: log, DefaultUser: *defaultUser, AllowUnknownTokens: *anyToken,
		MaxTTL: *maxTTL, PushRetryBaseDelay: *retryBase, TimeZone: *timeZone}
	if *quota {
		opts.QuotaPerMinute, opts.ProjectQuotaPerMinute, opts.QuotaTooManyRequests = *perMinute, *perProject, *quota429
	}
	srv := calendaremu.New(opts)
	defer srv.Close()
	base, stopServe, err := srv.Listen(ctx, *addr)
	if err != nil {
		return err
	}
	defer stopServe()
	fmt.Fprintf(stdout, "listening on %s\n", base)
	log.Info("calendar emulator listening", "url", base, "calendar_endpoint", base+calendaremu.APIPath,
		"default_user", opts.DefaultUser, "max_ttl", maxTTL.String(), "quota_per_minute", opts.QuotaPerMinute,
		"project_quota_per_minute", opts.ProjectQuotaPerMinute)
	<-ctx.Done()
	log.Info("calendar emulator stopping")
	return nil
}
