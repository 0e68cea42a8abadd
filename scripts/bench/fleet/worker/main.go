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
	"github.com/calsync/calsync/shared/channels"
	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
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

// syncWorker is functions/syncworker.New with counting clients.
func syncWorker(ctx context.Context, c *count.Counters) (http.Handler, error) {
	cfg, err := config.Load[config.SyncWorker](ctx, nil)
	if err != nil {
		return nil, err
	}
	log := logger()
	fs, err := c.Firestore(ctx, os.Getenv("FIRESTORE_EMULATOR_HOST"), cfg.ProjectID)
	if err != nil {
		return nil, err
	}
	st := store.New(fs)
	access, err := credentials.NewAccess(cfg.Calendar, st, log)
	if err != nil {
		return nil, err
	}
	ps, err := pubsubx.NewClient(ctx, cfg.ProjectID, "")
	if err != nil {
		return nil, err
	}
	changes := count.Publisher{Publisher: pubsubx.NewPublisher(ps, cfg.ChangesTopic, true), C: c}
	requests := count.Publisher{Publisher: pubsubx.NewPublisher(ps, cfg.NotificationsTopic, false), C: c}
	en := &enroll.Enroller{Store: st, Calendars: access.Calendars, Requests: requests, Revoker: access.Revoker,
		Directory:   enroll.DirectoryClients{Tokens: access.Calendars, Endpoint: cfg.CalendarEndpoint},
		RenewBefore: cfg.RenewBefore, Logger: log}
	if cfg.ChannelTokenKeys != "" && cfg.WebhookURL != "" {
		tokens, err := channeltoken.Parse(cfg.ChannelTokenKeys)
		if err != nil {
			return nil, err
		}
		en.Channels = &channels.Manager{Store: st, Calendars: access.Calendars, Tokens: tokens, WebhookURL: cfg.WebhookURL, TTL: cfg.ChannelTTL, Logger: log,
			Namespace: channels.Namespace(cfg.ProjectID, cfg.Deployment)}
	}
	s := syncer.New(syncer.Options{Store: st, Services: access.Calendars, Publisher: changes, Requests: requests,
		MaxSession: cfg.MaxSession, Revoker: access.Revoker, Logger: log, LeaseDuration: cfg.LeaseDuration,
		RerunInterval: cfg.RerunInterval, QuietPeriod: cfg.QuietPeriod, RetryBudget: cfg.RetryBudget})
	c.Extra("listCalls", func() int64 { return s.Stats().ListCalls })
	c.Extra("rounds", func() int64 { return s.Stats().Rounds })
	c.Extra("changes", func() int64 { return s.Stats().Changes })
	return &syncworker.Worker{Syncer: s, Logger: log, ProjectID: cfg.ProjectID, ControlSubscription: cfg.ControlSubscription,
		Subscriptions: cfg.NotificationSubscriptions,
		Enroll:        enroller{en, access.Credentials}}, nil
}

type enroller struct {
	*enroll.Enroller
	creds *credentials.Store
}

func (e enroller) HandleControl(ctx context.Context, c messages.Control) error {
	return e.Enroller.HandleControl(ctx, c, e.creds)
}

// webhookHandler is functions/webhook.New with a counting publisher.
func webhookHandler(ctx context.Context, c *count.Counters) (http.Handler, error) {
	cfg, err := config.Load[config.Webhook](ctx, nil)
	if err != nil {
		return nil, err
	}
	h, _, err := webhook.New(ctx, cfg, logger())
	if err != nil {
		return nil, err
	}
	pub, ok := h.Publisher.(*pubsubx.Publisher)
	if !ok {
		return nil, errors.New("webhook: unexpected publisher")
	}
	h.Publisher = count.Publisher{Publisher: pub, C: c}
	return h, nil
}
