// Package app is calsync's composition root: Build turns a function's config
// into its clients and engines, the same way for the deployed functions, the
// operator CLI, the benchmarks and the test harnesses. A benchmark that counts
// what a process costs passes its counting clients as options; it does not
// wire the engines again.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"

	"github.com/calsync/calsync/shared/channels"
	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/renewer"
	"github.com/calsync/calsync/shared/sealed"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
)

// Config is what Build builds from: a function's config, or the CLI's
// enrollment without channel keys.
type Config interface {
	config.Webhook | config.SyncWorker | config.RenewChannels | config.Enrollment | config.Connect
}

// PublishHold is how long a Webhook notification may wait to share a
// publish request with others. Google waits for the Webhook's answer, so it
// is short: under load many notifications still share a request, and alone
// one costs at most this.
const PublishHold = time.Millisecond

// Publisher is a topic's publisher as the engines use it (pubsubx.Publisher,
// or an instrumented one wrapping it).
type Publisher interface {
	Publish(ctx context.Context, data []byte, attrs map[string]string, orderingKey string) error
	PublishAll(ctx context.Context, orderingKey string, msgs []pubsubx.Message) error
}

// App is what Build made. Fields a config does not call for are nil:
// the Webhook has Tokens and Notifications only.
type App struct {
	Store  *store.Store
	Access *credentials.Access // Calendar clients and budget, credentials, the lifecycle owner
	Tokens *channeltoken.Keys  // channel-token keys (nil without CHANNEL_TOKEN_KEYS)
	// Channels watches calendars (nil without channel keys and a webhook address).
	Channels *channels.Manager
	// Notifications publishes on NOTIFICATIONS_TOPIC (sync requests, pushes);
	// Changes on CHANGES_TOPIC with ordering (the SyncWorker's change feed).
	Notifications Publisher
	Changes       Publisher

	// Controls publish on each tenant's control topic, by tenant name, and
	// Seal is the deployment's public key (the Connect function).
	Controls map[string]Publisher
	Seal     *sealed.PublicKey

	Syncer   *syncer.Syncer   // SyncWorker
	Enroller *enroll.Enroller // SyncWorker, RenewChannels (Renewer.Enroll), Enrollment
	Renewer  *renewer.Renewer // RenewChannels

	closers []func()
}

// Option changes how Build makes the clients.
type Option func(*settings)

type settings struct {
	logger *slog.Logger
	fs     *firestore.Client
	ps     *pubsub.Client
	psHost string
	wrap   func(*pubsubx.Publisher) Publisher
}

// WithLogger sets the logger of every engine (default logging.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *settings) { s.logger = l } }

// WithFirestore has Build use fs (a counting client, a test's) instead of
// opening one; the caller keeps it and closes it.
func WithFirestore(fs *firestore.Client) Option { return func(s *settings) { s.fs = fs } }

// WithPubSub has Build use ps instead of opening one; the caller closes it.
func WithPubSub(ps *pubsub.Client) Option { return func(s *settings) { s.ps = ps } }

// WithPubSubEmulator names the Pub/Sub emulator when the process
// environment does not (the CLI's state file).
func WithPubSubEmulator(host string) Option { return func(s *settings) { s.psHost = host } }

// WithPublishers wraps every publisher Build makes (a counting one); Close
// still stops the wrapped one.
func WithPublishers(wrap func(*pubsubx.Publisher) Publisher) Option {
	return func(s *settings) { s.wrap = wrap }
}

// Build makes what cfg's function runs on: Firestore's store, Pub/Sub
// publishers, the Calendar access of shared/credentials and the engines, with
// the settings cfg holds (config.Load read and validated it). On error it
// closes what it opened. Close the App when done with it.
func Build[C Config](ctx context.Context, cfg C, opts ...Option) (a *App, err error) {
	s := settings{logger: logging.Default()}
	for _, o := range opts {
		o(&s)
	}
	a = &App{}
	defer func() {
		if err != nil {
			a.Close()
			a = nil
		}
	}()
	switch c := any(cfg).(type) {
	case config.Webhook:
		err = a.webhook(ctx, c, s)
	case config.SyncWorker:
		err = a.syncWorker(ctx, c, s)
	case config.RenewChannels:
		err = a.renewChannels(ctx, c, s)
	case config.Enrollment:
		err = a.enrollment(ctx, c, s)
	case config.Connect:
		err = a.connect(ctx, c, s)
	}
	return a, err
}

// Function is a function's New: Build from cfg with logger, then the
// function's handler on the App with handler. close is the App's Close.
func Function[C Config, T any](ctx context.Context, cfg C, logger *slog.Logger, handler func(C, *App, *slog.Logger) T) (h T, close func(), err error) {
	a, err := Build(ctx, cfg, WithLogger(logger))
	if err != nil {
		return h, nil, err
	}
	return handler(cfg, a, logger), a.Close, nil
}

// Close stops the publishers and closes the clients Build opened, in the
// reverse order of their opening. Safe to call more than once.
func (a *App) Close() {
	for _, c := range slices.Backward(a.closers) {
		c()
	}
	a.closers = nil
}

// onClose registers what Close undoes.
func (a *App) onClose(f func()) { a.closers = append(a.closers, f) }

func (a *App) webhook(ctx context.Context, cfg config.Webhook, s settings) (err error) {
	if a.Tokens, err = channeltoken.Parse(cfg.ChannelTokenKeys); err != nil {
		return err
	}
	ps, err := a.pubsub(ctx, cfg.ProjectID, s)
	if err != nil {
		return err
	}
	a.Notifications = a.publisher(pubsubx.NewPublisher(ps, cfg.NotificationsTopic, false).HoldAtMost(PublishHold), s)
	return nil
}

func (a *App) syncWorker(ctx context.Context, cfg config.SyncWorker, s settings) error {
	ps, err := a.clients(ctx, cfg.Common, cfg.Firestore, cfg.Calendar, cfg.NotificationsTopic, s)
	if err != nil {
		return err
	}
	a.Changes = a.publisher(pubsubx.NewPublisher(ps, cfg.ChangesTopic, true), s)
	if cfg.ChannelTokenKeys != "" && cfg.WebhookURL != "" {
		// It watches what it enrolls; otherwise RenewChannels does.
		if err := a.channels(cfg.ChannelTokenKeys, cfg.WebhookURL, cfg.ChannelTTL, cfg.ProjectID, cfg.Deployment, s); err != nil {
			return err
		}
	}
	a.Access.Lifecycle.NotFound = notFound(cfg.NotFound)
	a.enroller(cfg.Calendar, cfg.RenewBefore, 0, s)
	a.Enroller.ControlMaxAge = cfg.ControlMaxAge
	followUp := cfg.FollowUpDelay
	if followUp == 0 {
		followUp = -1 // FOLLOW_UP_DELAY=0: off (the syncer's 0 is its default)
	}
	a.Syncer = syncer.New(syncer.Options{
		Store:         a.Store,
		Services:      a.Access.Calendars,
		Publisher:     a.Changes,
		Requests:      a.Notifications,
		Lifecycle:     a.Access.Lifecycle,
		Logger:        s.logger,
		MaxSession:    cfg.MaxSession,
		LeaseDuration: cfg.LeaseDuration,
		RerunInterval: cfg.RerunInterval,
		QuietPeriod:   cfg.QuietPeriod,
		RetryBudget:   cfg.RetryBudget,
		FollowUpDelay: followUp,
		// A cost guard: full resyncs of one calendar at most once a cooldown.
		FullResyncCooldown: cfg.FullResyncCooldown,
	})
	return nil
}

func (a *App) renewChannels(ctx context.Context, cfg config.RenewChannels, s settings) error {
	if _, err := a.clients(ctx, cfg.Common, cfg.Firestore, cfg.Calendar, cfg.NotificationsTopic, s); err != nil {
		return err
	}
	if err := a.channels(cfg.ChannelTokenKeys, cfg.WebhookURL, cfg.ChannelTTL, cfg.ProjectID, cfg.Deployment, s); err != nil {
		return err
	}
	// RenewChannels stops a dead grant's channels through the Calendar API.
	a.Access.Lifecycle.Stopper = a.Channels
	a.Access.Lifecycle.NotFound = notFound(cfg.NotFound)
	a.enroller(cfg.Calendar, cfg.RenewBefore, cfg.Concurrency, s)
	a.Enroller.MaxUnenrollShare = cfg.DirectoryMaxUnenrollShare
	a.Renewer = &renewer.Renewer{ProjectID: cfg.ProjectID, Store: a.Store, Access: a.Access, Channels: a.Channels,
		Publisher: a.Notifications, RenewBefore: cfg.RenewBefore, ReconcileAfter: cfg.ReconcileAfter,
		Concurrency: cfg.Concurrency, Logger: s.logger, PollInterval: cfg.PollInterval, PollMinInterval: cfg.PollMinInterval, NotFoundReprobe: cfg.NotFoundReprobe,
		Enroll: a.Enroller, DirectorySyncInterval: cfg.DirectorySyncInterval, RetainUnwatched: cfg.RetainUnwatched}
	return nil
}

func (a *App) enrollment(ctx context.Context, cfg config.Enrollment, s settings) error {
	if _, err := a.clients(ctx, cfg.Common, cfg.Firestore, cfg.Calendar, cfg.NotificationsTopic, s); err != nil {
		return err
	}
	a.enroller(cfg.Calendar, cfg.RenewBefore, 0, s)
	return nil
}

// connect opens what the Connect function needs: the store (links and
// consent sessions), the public key it seals users' tokens to, and a
// publisher on each tenant's control topic. No Calendar access and no
// private key: it is public.
func (a *App) connect(ctx context.Context, cfg config.Connect, s settings) error {
	if err := a.firestore(ctx, cfg.Common, cfg.Firestore, s); err != nil {
		return err
	}
	vault, err := credentials.NewVault(cfg.Calendar, a.Store)
	if err != nil {
		return err
	}
	a.Seal = vault.Seal
	tenants, err := cfg.TenantSet("")
	if err != nil {
		return err
	}
	ps, err := a.pubsub(ctx, cfg.ProjectID, s)
	if err != nil {
		return err
	}
	a.Controls = map[string]Publisher{}
	for _, name := range tenants.Names() {
		if t, _ := tenants.Get(name); t.ControlTopic != "" {
			a.Controls[name] = a.publisher(pubsubx.NewPublisher(ps, t.ControlTopic, false), s)
		}
	}
	return nil
}

// firestore opens the store (or uses the caller's client).
func (a *App) firestore(ctx context.Context, common config.Common, db config.Firestore, s settings) error {
	fs := s.fs
	if fs == nil {
		var err error
		if fs, err = firestore.NewClientWithDatabase(ctx, common.ProjectID, db.FirestoreDatabase); err != nil {
			return fmt.Errorf("firestore: %w", err)
		}
		a.onClose(func() { fs.Close() })
	}
	a.Store = store.New(fs)
	return nil
}

// clients opens what every engine needs: the store, the Calendar access on
// it, and the notifications topic's publisher. It returns the Pub/Sub
// client, for more publishers.
func (a *App) clients(ctx context.Context, common config.Common, db config.Firestore, cal config.Calendar, notifications string, s settings) (*pubsub.Client, error) {
	if err := a.firestore(ctx, common, db, s); err != nil {
		return nil, err
	}
	access, err := credentials.NewAccess(cal, a.Store, s.logger)
	if err != nil {
		return nil, err
	}
	a.Access = access
	ps, err := a.pubsub(ctx, common.ProjectID, s)
	if err != nil {
		return nil, err
	}
	a.Notifications = a.publisher(pubsubx.NewPublisher(ps, notifications, false), s)
	// Every engine's transitions are announced on the lifecycle topic.
	a.Access.Lifecycle.Announcer = a.publisher(pubsubx.NewPublisher(ps, cal.LifecycleTopic, false), s)
	return ps, nil
}

// pubsub returns the caller's Pub/Sub client, or opens one.
func (a *App) pubsub(ctx context.Context, project string, s settings) (*pubsub.Client, error) {
	if s.ps != nil {
		return s.ps, nil
	}
	ps, err := pubsubx.NewClient(ctx, project, s.psHost)
	if err != nil {
		return nil, err
	}
	a.onClose(func() { ps.Close() })
	return ps, nil
}

// publisher registers p's Stop and wraps it as the options ask.
func (a *App) publisher(p *pubsubx.Publisher, s settings) Publisher {
	a.onClose(p.Stop)
	if s.wrap != nil {
		return s.wrap(p)
	}
	return p
}

// channels makes the channel manager: tokens signed with keys, channel ids
// named by the project and the deployment.
func (a *App) channels(keys, webhookURL string, ttl time.Duration, project, deployment string, s settings) (err error) {
	if a.Tokens, err = channeltoken.Parse(keys); err != nil {
		return err
	}
	a.Channels = &channels.Manager{Store: a.Store, Calendars: a.Access.Calendars, Lifecycle: a.Access.Lifecycle, Tokens: a.Tokens, WebhookURL: webhookURL,
		TTL: ttl, Logger: s.logger, Namespace: channels.Namespace(project, deployment)}
	return nil
}

// enroller makes the enrollment engine on the clients made so far.
func (a *App) enroller(cal config.Calendar, renewBefore time.Duration, concurrency int, s settings) {
	a.Enroller = &enroll.Enroller{Store: a.Store, Calendars: a.Access.Calendars, Channels: a.Channels,
		Requests: a.Notifications, Lifecycle: a.Access.Lifecycle, MaxCalendarsPerIdentity: cal.MaxCalendarsPerIdentity, Revoker: a.Access.Calendars,
		Directory:   enroll.DirectoryClients{Tokens: a.Access.Calendars, Endpoint: cal.CalendarEndpoint},
		RenewBefore: renewBefore, Concurrency: concurrency, Logger: s.logger}
}

func notFound(n config.NotFound) store.NotFoundPolicy {
	return store.NotFoundPolicy{Attempts: n.NotFoundAttempts, After: n.NotFoundAfter}
}
