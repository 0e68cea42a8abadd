// Command worker is one process of the fleet benchmark (scripts/bench/fleet):
// the SyncWorker (--role sync) or the Webhook (--role webhook) built as
// deployed (functions/syncworker's Worker on the sync engine and the
// enrollment engine; functions/webhook's Handler), configured from the
// environment as the functions are, but with counting clients
// (scripts/bench/fleet/count): Firestore operations, Pub/Sub publishes,
// invocations, busy time and CPU, served at /stats and zeroed at /reset. It
// prints "listening on http://ADDR" once it serves.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/calsync/calsync/functions/syncworker"
	"github.com/calsync/calsync/functions/webhook"
	"github.com/calsync/calsync/scripts/bench/fleet/count"
	"github.com/calsync/calsync/shared/app"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/logging"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := realMain(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context) error {
	role := flag.String("role", "sync", "sync (the SyncWorker) or webhook")
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	c := count.New()
	var h http.Handler
	var err error
	switch *role {
	case "sync":
		h, err = syncWorker(ctx, c)
	case "webhook":
		h, err = webhookHandler(ctx, c)
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: c.Handler(h), ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func logger() *slog.Logger {
	lvl, _ := logging.ParseLevel(os.Getenv("LOG_LEVEL"))
	return logging.New(os.Stderr, lvl)
}

// syncWorker is functions/syncworker.New with counting clients: the same
// app.Build, given the counting Firestore client and publishers as options.
func syncWorker(ctx context.Context, c *count.Counters) (*syncworker.Worker, error) {
	cfg, err := config.Load[config.SyncWorker](ctx, nil)
	if err != nil {
		return nil, err
	}
	fs, err := c.Firestore(ctx, os.Getenv("FIRESTORE_EMULATOR_HOST"), cfg.ProjectID)
	if err != nil {
		return nil, err
	}
	log := logger()
	a, err := app.Build(ctx, cfg, app.WithLogger(log), app.WithFirestore(fs), app.WithPublishers(c.Wrap))
	if err != nil {
		return nil, err
	}
	c.Extra("listCalls", func() int64 { return a.Syncer.Stats().ListCalls })
	c.Extra("rounds", func() int64 { return a.Syncer.Stats().Rounds })
	c.Extra("changes", func() int64 { return a.Syncer.Stats().Changes })
	return syncworker.NewWorker(cfg, a, log), nil
}

// webhookHandler is functions/webhook.New with a counting publisher.
func webhookHandler(ctx context.Context, c *count.Counters) (*webhook.Handler, error) {
	cfg, err := config.Load[config.Webhook](ctx, nil)
	if err != nil {
		return nil, err
	}
	log := logger()
	a, err := app.Build(ctx, cfg, app.WithLogger(log), app.WithPublishers(c.Wrap))
	if err != nil {
		return nil, err
	}
	return webhook.NewHandler(cfg, a, log), nil
}
