package syncworker

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/calsync/calsync/functions/webhook"
	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/channels"
	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/testenv"
	"github.com/calsync/calsync/shared/testing/testlog"
)

// TestReplayedPushCostsAtMostOneList: a push Google really sent (calendaremu,
// through a channel made by channels.Manager) is captured and replayed 1,000
// times, spread over four Webhook instances (each with its own replay
// window), through a Pub/Sub emulator push subscription to the SyncWorker,
// as in production. Every replay is answered 200; at most one events.list
// call follows (the bound; the original push's admission already
// recorded its message number, so none is expected); and each replay is
// counted exactly once by a notification_duplicate line, Webhook's or
// SyncWorker's, which the notifications_duplicate log-based metric counts.
// On the code before replay protection, 300 replays cost 8 events.list calls.
func TestReplayedPushCostsAtMostOneList(t *testing.T) {
	testenv.PubSub(t)
	project := testenv.ProjectID(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ps, err := pubsubx.NewClient(ctx, project, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	for _, topic := range []string{"changes", "notifications"} {
		if err := pubsubx.EnsureTopic(ctx, ps, topic); err != nil {
			t.Fatal(err)
		}
	}
	changes := pubsubx.NewPublisher(ps, "changes", true)
	defer changes.Stop()
	e := newEnv(t, changes)
	e.worker.Subscriptions = append(e.worker.Subscriptions, pubsubx.SubscriptionName(project, "sync-worker-push"))
	e.insertEvents(t, 2)

	// The SyncWorker behind a push subscription, counting its deliveries.
	var delivered atomic.Int64
	worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.worker.ServeHTTP(w, r)
		delivered.Add(1)
	}))
	defer worker.Close()
	if _, err := ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: pubsubx.SubscriptionName(project, "sync-worker-push"), Topic: pubsubx.TopicName(project, "notifications"),
		AckDeadlineSeconds: 60, PushConfig: &pubsubpb.PushConfig{PushEndpoint: worker.URL},
		RetryPolicy: &pubsubpb.RetryPolicy{MinimumBackoff: durationpb.New(100 * time.Millisecond), MaximumBackoff: durationpb.New(time.Second)},
	}); err != nil {
		t.Fatal(err)
	}

	// Four Webhook instances behind one front, round robin; the front keeps
	// the headers of the last "exists" push Google sent.
	tokenKeys := "k1:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("r", 32)))
	hookLogs := &testlog.Buffer{}
	var hooks []http.Handler
	for range 4 {
		h, closeHook, err := webhook.New(ctx, config.Webhook{Common: config.Common{ProjectID: project}, NotificationsTopic: "notifications",
			ChannelTokenKeys: tokenKeys, PublishTimeout: 10 * time.Second, ExpiryGrace: time.Hour}, logging.New(hookLogs, slog.LevelInfo))
		if err != nil {
			t.Fatal(err)
		}
		defer closeHook()
		hooks = append(hooks, h)
	}
	var next atomic.Int64
	var mu sync.Mutex
	var captured http.Header
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.TrimSpace(r.Header.Get(webhook.HeaderResourceState)) == "exists" && r.Header.Get("X-Replay") == "" {
			mu.Lock()
			captured = r.Header.Clone()
			mu.Unlock()
		}
		hooks[next.Add(1)%int64(len(hooks))].ServeHTTP(w, r)
	}))
	defer front.Close()

	keys, err := channeltoken.Parse(tokenKeys)
	if err != nil {
		t.Fatal(err)
	}
	mgr := &channels.Manager{Store: e.st, Calendars: calclient.New(calclient.Options{Endpoint: e.base}), Tokens: keys,
		WebhookURL: front.URL, TTL: time.Hour}
	cal := store.Calendar{CalendarID: calendaremu.DefaultUser, AuthMode: store.AuthADC, Status: store.StatusActive}
	if _, err := mgr.Watch(ctx, cal, ""); err != nil {
		t.Fatal(err)
	}
	e.waitMirror(t, time.Minute) // the "sync" push: the first full sync
	if _, err := e.svc.Events.Insert(calendaremu.DefaultUser, &calendar.Event{Summary: "changed",
		Start: &calendar.EventDateTime{Date: "2026-05-03"}, End: &calendar.EventDateTime{Date: "2026-05-04"}}).Do(); err != nil {
		t.Fatal(err)
	}
	e.waitMirror(t, time.Minute) // the "exists" push: an incremental sync
	waitQuiet := func(what string) {
		t.Helper()
		last, since := int64(-1), time.Now()
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
			if d := delivered.Load(); d != last {
				last, since = d, time.Now()
			}
			if time.Since(since) > 3*time.Second && e.logs.Count("INFO", logging.EventSync) > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: deliveries never settled", what)
			}
		}
	}
	waitQuiet("original pushes")
	mu.Lock()
	replay := captured
	mu.Unlock()
	if replay == nil {
		t.Fatal("no exists push was captured")
	}
	replay.Set("X-Replay", "1")
	listsBefore := e.cal.Stats().Requests["events.list"]
	syncsBefore := e.logs.Count("INFO", logging.EventSync)

	// 1,000 replays from 16 senders.
	var wg sync.WaitGroup
	var non200 atomic.Int64
	var sent atomic.Int64
	for range 16 {
		wg.Go(func() {
			for sent.Add(1) <= 1000 {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, front.URL, nil)
				req.Header = replay.Clone()
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					non200.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if non200.Load() != 0 {
		t.Fatalf("%d replays not answered 200", non200.Load())
	}
	countDup := func() (hook, worker int) {
		return hookLogs.Count("INFO", logging.EventNotificationDuplicate), e.logs.Count("INFO", logging.EventNotificationDuplicate)
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if h, w := countDup(); h+w >= 1000 {
			break
		}
		if time.Now().After(deadline) {
			h, w := countDup()
			t.Fatalf("duplicates counted: %d by the Webhooks, %d by the SyncWorker; want 1000 together", h, w)
		}
	}
	waitQuiet("replays")
	lists := e.cal.Stats().Requests["events.list"] - listsBefore
	h, w := countDup()
	t.Logf("1,000 replays: %d events.list calls, %d syncs; duplicates counted by the Webhooks %d, by the SyncWorker %d",
		lists, e.logs.Count("INFO", logging.EventSync)-syncsBefore, h, w)
	if lists > 1 {
		t.Errorf("1,000 replays cost %d events.list calls, want at most 1", lists)
	}
	// Replays racing at one instance may all pass its window before the
	// first publish is recorded (it is checked before, recorded after a
	// confirmed publish); the SyncWorker catches those.
	if h+w != 1000 || h < 900 {
		t.Errorf("duplicates counted: %d by the Webhooks, %d by the SyncWorker; want 1000, most at the Webhooks", h, w)
	}
	if n := hookLogs.Count("WARNING", logging.EventNotificationRejected); n != 0 {
		t.Errorf("%d replays were rejected, want answered 200:\n%s", n, hookLogs.String())
	}
}
