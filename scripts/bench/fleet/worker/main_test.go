package main

import (
	"context"
	"encoding/base64"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/calsync/calsync/functions/syncworker"
	"github.com/calsync/calsync/functions/webhook"
	"github.com/calsync/calsync/scripts/bench/fleet/count"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
	"github.com/calsync/calsync/shared/testing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fleetEnv sets the environment the fleet benchmark gives its processes
// (scripts/bench/fleet, startProcesses), production defaults for the rest.
func fleetEnv(t *testing.T) {
	testenv.Firestore(t)
	testenv.PubSub(t)
	key := func(id, fill string) string {
		return id + ":" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat(fill, 32)))
	}
	for k, v := range map[string]string{
		"PROJECT_ID": testenv.ProjectID(t), "NOTIFICATIONS_TOPIC": "notifications", "CHANGES_TOPIC": "changes",
		"CHANNEL_TOKEN_KEYS": key("k1", "t"), "CREDENTIAL_PRIVATE_KEYS": key("f1", "h"),
		"CALENDAR_ENDPOINT": "http://127.0.0.1:1/calendar/v3", "OAUTH_TOKEN_URL": "http://127.0.0.1:1/token",
		"OAUTH_AUTH_URL": "http://127.0.0.1:1/authorize", "WEBHOOK_URL": "http://127.0.0.1:2/", "CALENDAR_PROCESSES": "5",
		"LOG_LEVEL": "error",
	} {
		t.Setenv(k, v)
	}
}

// The fleet benchmark measures the SyncWorker that ships: its worker is
// built by app.Build from the same config as functions/syncworker.New, with
// counting clients as the only difference. Every setting of the sync engine
// (FOLLOW_UP_DELAY and the 404 policy among them) and of the enrollment
// engine must match production's, with the fleet's environment and with
// settings that are not the defaults (a worker wired by hand that drops one
// fails there).
func TestSyncWorkerBuiltAsDeployed(t *testing.T) {
	for name, vars := range map[string]map[string]string{
		"fleet":    nil,
		"settings": {"FOLLOW_UP_DELAY": "0", "NOT_FOUND_ATTEMPTS": "4", "NOT_FOUND_AFTER": "2h", "RERUN_INTERVAL": "2s", "RENEW_BEFORE": "30h"},
	} {
		t.Run(name, func(t *testing.T) {
			fleetEnv(t)
			for k, v := range vars {
				t.Setenv(k, v)
			}
			sameSyncWorker(t, vars == nil)
		})
	}
}

func sameSyncWorker(t *testing.T, defaults bool) {
	got, err := syncWorker(context.Background(), count.New())
	if err != nil {
		t.Fatal(err)
	}
	want := deployed(t, syncworker.New)

	g, w := got.Syncer.(*syncer.Syncer).Options(), want.Syncer.(*syncer.Syncer).Options()
	if !reflect.DeepEqual(g.Settings(), w.Settings()) {
		t.Errorf("the fleet's sync engine differs from production's:\nfleet      %+v\nproduction %+v", g.Settings(), w.Settings())
	}
	if defaults && (g.FollowUpDelay != 15*time.Second || g.NotFound != store.DefaultNotFoundPolicy) {
		t.Errorf("follow-up %s, 404 policy %+v: not production's defaults", g.FollowUpDelay, g.NotFound)
	}
	if !defaults && (g.FollowUpDelay >= 0 || g.NotFound.Attempts != 4) {
		t.Errorf("follow-up %s, 404 policy %+v: not the config's", g.FollowUpDelay, g.NotFound)
	}
	// The counting clients are in place: what the engine publishes is counted.
	if _, ok := g.Publisher.(count.Publisher); !ok {
		t.Errorf("change feed publisher %T, want count.Publisher", g.Publisher)
	}
	if _, ok := g.Requests.(count.Publisher); !ok {
		t.Errorf("request publisher %T, want count.Publisher", g.Requests)
	}

	ge, we := enrollerOf(t, got), enrollerOf(t, want)
	gd, _ := ge.Directory.(enroll.DirectoryClients)
	wd, _ := we.Directory.(enroll.DirectoryClients)
	if ge.RenewBefore != we.RenewBefore || ge.Concurrency != we.Concurrency || gd.Endpoint != wd.Endpoint || gd.Tokens == nil ||
		(ge.Channels == nil) != (we.Channels == nil) {
		t.Errorf("the fleet's enrollment engine differs from production's:\nfleet      %+v\nproduction %+v", ge, we)
	}
	if ge.Channels != nil && (ge.Channels.Namespace != we.Channels.Namespace || ge.Channels.TTL != we.Channels.TTL ||
		ge.Channels.WebhookURL != we.Channels.WebhookURL) {
		t.Errorf("channel manager: fleet %+v, production %+v", ge.Channels, we.Channels)
	}
	if got.ProjectID != want.ProjectID || got.ControlSubscription != want.ControlSubscription {
		t.Errorf("worker: fleet %+v, production %+v", got, want)
	}
}

// The fleet's Webhook is functions/webhook's, with a counting publisher.
func TestWebhookBuiltAsDeployed(t *testing.T) {
	fleetEnv(t)
	got, err := webhookHandler(context.Background(), count.New())
	if err != nil {
		t.Fatal(err)
	}
	want := deployed(t, webhook.New)
	if _, ok := got.Publisher.(count.Publisher); !ok {
		t.Errorf("publisher %T, want count.Publisher", got.Publisher)
	}
	if got.PublishTimeout != want.PublishTimeout || got.ExpiryGrace != want.ExpiryGrace ||
		got.UnknownKeyRetry != want.UnknownKeyRetry || !got.TokenV1Until.Equal(want.TokenV1Until) || got.Verifier == nil {
		t.Errorf("webhook: fleet %+v, production %+v", got, want)
	}
}

// deployed is what a function's New builds from the environment, as the
// function is deployed.
func deployed[C interface{ Validate() error }, T any](t *testing.T, newFn func(context.Context, C, *slog.Logger) (T, func(), error)) T {
	t.Helper()
	ctx := context.Background()
	cfg, err := config.Load[C](ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, closeFn, err := newFn(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeFn)
	return v
}

// enrollerOf is the enrollment engine inside a Worker's Enroll.
func enrollerOf(t *testing.T, w *syncworker.Worker) *enroll.Enroller {
	t.Helper()
	v := reflect.ValueOf(w.Enroll)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	f := v.FieldByName("Enroller")
	if !f.IsValid() {
		t.Fatalf("Enroll %T holds no enrollment engine", w.Enroll)
	}
	return f.Interface().(*enroll.Enroller)
}
