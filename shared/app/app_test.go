package app_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/sethvargo/go-envconfig"

	"github.com/calsync/calsync/shared/app"
	"github.com/calsync/calsync/shared/channels"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
	"github.com/calsync/calsync/shared/testing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var (
	tokenKeys = "k1:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("t", 32)))
	privKeys  = "h1:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("h", 32)))
)

// load reads a function's config as config.Load does in production, from
// vars over a project id and the credential key.
func load[C interface{ Validate() error }](t *testing.T, vars map[string]string) C {
	t.Helper()
	env := map[string]string{"PROJECT_ID": testenv.ProjectID(t), "CREDENTIAL_PRIVATE_KEYS": privKeys}
	for k, v := range vars {
		env[k] = v
	}
	cfg, err := config.Load[C](context.Background(), envconfig.MapLookuper(env))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func build[C app.Config](t *testing.T, cfg C, opts ...app.Option) *app.App {
	t.Helper()
	a, err := app.Build(context.Background(), cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// The SyncWorker's engines carry its config: FOLLOW_UP_DELAY (0 is off,
// not the syncer's default), the 404 policy, the pacing; the enrollment
// engine watches what it enrolls only with channel keys and an address.
func TestBuildSyncWorker(t *testing.T) {
	testenv.Firestore(t)
	testenv.PubSub(t)
	a := build(t, load[config.SyncWorker](t, map[string]string{"FOLLOW_UP_DELAY": "0", "NOT_FOUND_ATTEMPTS": "5",
		"NOT_FOUND_AFTER": "2h", "RERUN_INTERVAL": "2s", "RENEW_BEFORE": "30h"}))
	o := a.Syncer.Options()
	if o.FollowUpDelay >= 0 {
		t.Errorf("FOLLOW_UP_DELAY=0 gave FollowUpDelay %s, want off (negative)", o.FollowUpDelay)
	}
	if o.Lifecycle.NotFound != (store.NotFoundPolicy{Attempts: 5, After: 2 * time.Hour}) || o.RerunInterval != 2*time.Second ||
		o.LeaseDuration != 60*time.Second || o.MaxSession != 5*time.Minute || o.FullResyncCooldown != 10*time.Minute {
		t.Errorf("syncer options %+v", o.Settings())
	}
	if o.Publisher != a.Changes || o.Requests != a.Notifications || o.Lifecycle != a.Access.Lifecycle || o.Services != a.Access.Calendars {
		t.Error("the syncer does not use the App's clients")
	}
	if a.Enroller.RenewBefore != 30*time.Hour || a.Enroller.Channels != nil || a.Enroller.Requests != a.Notifications {
		t.Errorf("enroller without channel keys: %+v", a.Enroller)
	}
	if a.Renewer != nil || a.Access.Lifecycle.Stopper != nil {
		t.Error("the SyncWorker got RenewChannels' parts")
	}

	cfg := load[config.SyncWorker](t, map[string]string{"CHANNEL_TOKEN_KEYS": tokenKeys,
		"WEBHOOK_URL": "https://hook.example.com/", "DEPLOYMENT": "blue"})
	a = build(t, cfg)
	if a.Syncer.Options().FollowUpDelay != 15*time.Second {
		t.Errorf("default FollowUpDelay %s, want 15s", a.Syncer.Options().FollowUpDelay)
	}
	if a.Enroller.Channels == nil || a.Enroller.Channels != a.Channels ||
		a.Channels.Namespace != channels.Namespace(cfg.ProjectID, "blue") || a.Channels.TTL != 168*time.Hour {
		t.Errorf("enroller with channel keys: %+v", a.Channels)
	}
}

// RenewChannels: the renewer and its enrollment engine share one channel
// manager, and a dead grant's channels are stopped through it.
func TestBuildRenewChannels(t *testing.T) {
	testenv.Firestore(t)
	testenv.PubSub(t)
	a := build(t, load[config.RenewChannels](t, map[string]string{"CHANNEL_TOKEN_KEYS": tokenKeys,
		"WEBHOOK_URL": "https://hook.example.com/", "RENEW_CONCURRENCY": "3", "POLL_INTERVAL": "7m"}))
	r := a.Renewer
	if r.Channels != a.Channels || r.Enroll != a.Enroller || a.Enroller.Channels != a.Channels || r.Access != a.Access {
		t.Fatal("the renewer's parts are not the App's")
	}
	if a.Access.Lifecycle.Stopper != a.Channels || a.Channels.Lifecycle != a.Access.Lifecycle || a.Enroller.Lifecycle != a.Access.Lifecycle {
		t.Error("the lifecycle owner is not the App's one, or does not stop channels through the manager")
	}
	if r.Concurrency != 3 || a.Enroller.Concurrency != 3 || r.PollInterval != 7*time.Minute || r.RenewBefore != 26*time.Hour ||
		a.Access.Lifecycle.NotFound != store.DefaultNotFoundPolicy || r.DirectorySyncInterval != 24*time.Hour {
		t.Errorf("renewer %+v", r)
	}
	// The cost guards reach the engines.
	if r.PollMinInterval != time.Hour || a.Enroller.MaxUnenrollShare != 0.1 || a.Enroller.MaxCalendarsPerIdentity != 500 {
		t.Errorf("guards: poll %s, share %v, cap %d", r.PollMinInterval, a.Enroller.MaxUnenrollShare, a.Enroller.MaxCalendarsPerIdentity)
	}
	if a.Syncer != nil || a.Changes != nil {
		t.Error("RenewChannels got the SyncWorker's parts")
	}
}

// The CLI's enrollment without channel keys renews as RenewChannels does:
// RENEW_BEFORE from its config, not a number of its own.
func TestBuildEnrollment(t *testing.T) {
	testenv.Firestore(t)
	testenv.PubSub(t)
	a := build(t, load[config.Enrollment](t, map[string]string{"RENEW_BEFORE": "40h"}))
	if a.Enroller.RenewBefore != 40*time.Hour || a.Enroller.Channels != nil || a.Renewer != nil || a.Syncer != nil {
		t.Errorf("enrollment: %+v", a.Enroller)
	}
}

// Close closes what Build opened and nothing the caller passed in; a Build
// that fails closes what it opened so far and returns no App.
func TestCloseOwnsWhatBuildOpened(t *testing.T) {
	testenv.Firestore(t)
	host := testenv.PubSub(t)
	ctx := context.Background()
	cfg := load[config.RenewChannels](t, map[string]string{"CHANNEL_TOKEN_KEYS": tokenKeys, "WEBHOOK_URL": "https://hook.example.com/"})
	project := cfg.ProjectID
	fs, err := firestore.NewClient(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	ps, err := pubsubx.NewClient(ctx, project, host)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	if err := pubsubx.EnsureTopic(ctx, ps, "calsync-notifications"); err != nil {
		t.Fatal(err)
	}

	mine, err := app.Build(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := mine.Notifications.Publish(ctx, []byte("x"), nil, ""); err != nil {
		t.Fatalf("publish before Close: %v", err)
	}
	mine.Close()
	mine.Close() // twice is safe
	if _, err := mine.Store.GetCalendar(ctx, "k"); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("the Firestore client Build opened still answers after Close: %v", err)
	}

	theirs, err := app.Build(ctx, cfg, app.WithFirestore(fs), app.WithPubSub(ps))
	if err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	if _, err := store.New(fs).GetCalendar(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Close closed the caller's Firestore client: %v", err)
	}
	if err := pubsubx.NewPublisher(ps, "calsync-notifications", false).Publish(ctx, []byte("x"), nil, ""); err != nil {
		t.Errorf("Close closed the caller's Pub/Sub client: %v", err)
	}

	bad := cfg
	bad.ChannelTokenKeys = "not keys"
	if a, err := app.Build(ctx, bad); err == nil || a != nil {
		t.Errorf("Build with broken keys: %v, %v", a, err)
	}
}

// The Webhook gets its token keys and one publisher, held at most
// PublishHold; WithPublishers wraps it (the fleet benchmark's counter).
func TestBuildWebhook(t *testing.T) {
	testenv.PubSub(t)
	var wrapped int
	a := build(t, load[config.Webhook](t, map[string]string{"CHANNEL_TOKEN_KEYS": tokenKeys}),
		app.WithPublishers(func(p *pubsubx.Publisher) app.Publisher { wrapped++; return counted{p} }))
	if _, ok := a.Notifications.(counted); !ok || wrapped != 1 || a.Tokens == nil {
		t.Errorf("webhook: publisher %T wrapped %d times, tokens %v", a.Notifications, wrapped, a.Tokens)
	}
	if a.Store != nil || a.Access != nil || a.Syncer != nil {
		t.Error("the Webhook got Firestore or Calendar parts")
	}
}

type counted struct{ *pubsubx.Publisher }

var _ syncer.Publisher = counted{}
