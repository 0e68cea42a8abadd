package stack

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/testenv"
	"github.com/sethvargo/go-envconfig"
)

// Every control topic (the operator's and each tenant's, named as
// Terraform names them) has a push subscription to the SyncWorker front
// with the notifications' settings; a control message published on a
// tenant's topic reaches the SyncWorker named by that tenant's
// subscription, which is how the SyncWorker knows whose it is; and the
// stack's ledger of notifications does not take it for one.
func TestControlTopicsPushToTheSyncWorker(t *testing.T) {
	host := testenv.PubSub(t)
	project := testenv.ProjectID(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := pubsubx.NewClient(ctx, project, host)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	worker := fakeFunction(t, time.Minute, newBackend(t, 204))
	s := &Stack{ProjectID: project, NotificationsTopic: "notif", DeadLetterTopic: "notif-dead-letter", LifecycleTopic: "life",
		SyncWorkerURL: worker.Front.URL, PubSub: client, log: slog.New(slog.DiscardHandler), ledger: newLedger(), SyncWorker: worker}
	if s.Tenants, err = tenantControls("ctl", DemoTenants()); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	bySub := map[string][]string{} // subscription → message data
	worker.Front.setObserver(func(d Delivery) {
		s.ledger.syncWorkerDelivery(d)
		if p, ok := parsePush(d.Body); ok && d.Answered {
			mu.Lock()
			bySub[p.Subscription] = append(bySub[p.Subscription], string(p.Message.Data))
			mu.Unlock()
		}
	})
	if err := pubsubx.EnsureTopic(ctx, client, "notif"); err != nil {
		t.Fatal(err)
	}
	if err := s.ensureControlTopics(ctx); err != nil {
		t.Fatal(err)
	}
	o := PushOptions{Shards: 2}.withDefaults()
	if err := s.setupPush(ctx, o); err != nil {
		t.Fatal(err)
	}
	if err := s.setupControl(ctx, o); err != nil {
		t.Fatal(err)
	}

	want := map[string]string{"default": "ctl", "acme": "ctl-acme", "globex": "ctl-globex"}
	if len(s.Tenants) != len(want) {
		t.Fatalf("tenants %+v", s.Tenants)
	}
	for _, tc := range s.Tenants {
		if tc.ControlTopic != want[tc.Name] || tc.ControlSubscription != want[tc.Name]+"-push" {
			t.Fatalf("tenant %+v: want topic %s", tc, want[tc.Name])
		}
		sub, err := client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: pubsubx.SubscriptionName(project, tc.ControlSubscription)})
		if err != nil {
			t.Fatal(err)
		}
		if sub.GetTopic() != pubsubx.TopicName(project, tc.ControlTopic) || sub.GetPushConfig().GetPushEndpoint() != worker.Front.URL+"/" ||
			sub.GetAckDeadlineSeconds() != 600 || sub.GetDeadLetterPolicy().GetMaxDeliveryAttempts() != 10 ||
			sub.GetDeadLetterPolicy().GetDeadLetterTopic() != pubsubx.TopicName(project, "notif-dead-letter") {
			t.Fatalf("control subscription of %s: %v", tc.Name, sub)
		}
	}
	if _, err := client.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: pubsubx.TopicName(project, "life")}); err != nil {
		t.Fatalf("lifecycle topic: %v", err)
	}

	topic, err := s.ControlTopicOf("acme")
	if err != nil {
		t.Fatal(err)
	}
	control := `{"version":1,"action":"resync","requestId":"r-1","issuedAt":"2026-12-03T10:00:00Z","subject":"ann@acme.test"}`
	pub := pubsubx.NewPublisher(client, topic, false)
	defer pub.Stop()
	if err := pub.Publish(ctx, []byte(control), nil, ""); err != nil {
		t.Fatal(err)
	}
	n := messages.Notification{ResourceState: "exists", CalendarKey: store.CalendarKey("cal"), ChannelID: "ch", MessageNumber: 1}
	npub := pubsubx.NewPublisher(client, "notif", false)
	defer npub.Stop()
	if err := npub.Publish(ctx, mustJSON(t, n), n.Attributes(), ""); err != nil {
		t.Fatal(err)
	}
	acmeSub := pubsubx.SubscriptionName(project, "ctl-acme-push")
	waitFor(t, 30*time.Second, "control message at the SyncWorker and acked notification", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(bySub[acmeSub]) == 1 && len(s.Notifications()) == 1 && s.PendingNotifications() == 0
	})
	mu.Lock()
	got := bySub[acmeSub][0]
	mu.Unlock()
	if got != control {
		t.Fatalf("pushed %q, want %q", got, control)
	}
	if r := s.Notifications()[0]; r.Notification.CalendarKey != n.CalendarKey {
		t.Fatalf("ledger: %+v (a control push recorded as a notification?)", s.Notifications())
	}
	if _, err := s.ControlTopicOf("initech"); err == nil {
		t.Fatal("ControlTopicOf: want an error for an unknown tenant")
	}
}

// The functions' environment carries the control path: the default
// tenant's CONTROL_SUBSCRIPTION, TENANTS with each tenant's subscription
// and LIFECYCLE_TOPIC, which the SyncWorker reads as Terraform's; and a
// tenant list the functions would refuse fails at start.
func TestEnvironmentHasTheControlPath(t *testing.T) {
	s := &Stack{ProjectID: "p", NotificationsTopic: "n-topic", ChangesTopic: "c-topic", LifecycleTopic: "l-topic", FirestoreHost: "127.0.0.1:1",
		PubSubHost: "127.0.0.1:2", CalendarBaseURL: "http://127.0.0.1:3", CalendarEndpoint: "http://127.0.0.1:3/calendar/v3/",
		WebhookURL: "http://127.0.0.1:4", ConnectURL: "http://127.0.0.1:5"}
	var err error
	if s.Tenants, err = tenantControls(DefaultControl, DemoTenants()); err != nil {
		t.Fatal(err)
	}
	env, _, err := s.environment(Options{}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	if env["CONTROL_SUBSCRIPTION"] != "calsync-control-push" || env["LIFECYCLE_TOPIC"] != "l-topic" {
		t.Fatalf("env %v", env)
	}
	cfg, err := config.Load[config.SyncWorker](context.Background(), envconfig.MapLookuper(env))
	if err != nil {
		t.Fatal(err)
	}
	set, err := cfg.TenantSet(cfg.ControlSubscription)
	if err != nil {
		t.Fatal(err)
	}
	for sub, want := range map[string]string{"calsync-control-push": "default", "calsync-control-acme-push": "acme", "calsync-control-globex-push": "globex"} {
		if tn, ok := set.BySubscription(sub); !ok || tn.Name != want {
			t.Errorf("subscription %s: tenant %+v, want %s", sub, tn, want)
		}
	}
	acme, _ := set.Get("acme")
	globex, _ := set.Get("globex")
	if !acme.MayDelegate("ann@acme.test") || acme.MayDelegate("bob@globex.test") || acme.OAuth || !globex.OAuth ||
		acme.ControlTopic != "calsync-control-acme" || globex.ControlTopic != "calsync-control-globex" {
		t.Fatalf("tenants %+v %+v", acme, globex)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(env["TENANTS"]), &list); err != nil || len(list) != 2 {
		t.Fatalf("TENANTS %s: %v", env["TENANTS"], err)
	}
	if _, err := tenantControls(DefaultControl, append(DemoTenants(), DemoTenants()[0])); err == nil {
		t.Fatal("want an error for a tenant listed twice")
	}
}

// The Connect process gets what Terraform gives the Connect function: the
// public key and not the private ones, CONNECT_URL (its front), a link key
// for each tenant with OAuth grants and none for the others, TENANTS with
// globex's display name and the product page among its return URLs; the
// other functions get OAUTH_REVOKE_URL (the emulator's /revoke), so that a
// disconnect revokes there.
func TestConnectEnvironment(t *testing.T) {
	s := &Stack{ProjectID: "p", NotificationsTopic: "n-topic", ChangesTopic: "c-topic", LifecycleTopic: "l-topic", FirestoreHost: "127.0.0.1:1",
		PubSubHost: "127.0.0.1:2", CalendarBaseURL: "http://127.0.0.1:3", CalendarEndpoint: "http://127.0.0.1:3/calendar/v3/",
		WebhookURL: "http://127.0.0.1:4", ConnectURL: "http://127.0.0.1:5", ProductURL: "http://127.0.0.1:6/product/"}
	var err error
	if s.Tenants, err = tenantControls(DefaultControl, withProductReturn(DemoTenants(), s.ProductURL)); err != nil {
		t.Fatal(err)
	}
	env, connectEnv, err := s.environment(Options{}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	if env["OAUTH_REVOKE_URL"] != "http://127.0.0.1:3/revoke" || env["CREDENTIAL_PRIVATE_KEYS"] == "" {
		t.Fatalf("env: OAUTH_REVOKE_URL %q, private keys set %v", env["OAUTH_REVOKE_URL"], env["CREDENTIAL_PRIVATE_KEYS"] != "")
	}
	if _, ok := connectEnv["CREDENTIAL_PRIVATE_KEYS"]; ok {
		t.Fatal("the Connect process gets the private keys")
	}
	if connectEnv["CREDENTIAL_PUBLIC_KEY"] != env["CREDENTIAL_PUBLIC_KEY"] || connectEnv["CONNECT_URL"] != s.ConnectURL {
		t.Fatalf("Connect env: public key %q, CONNECT_URL %q", connectEnv["CREDENTIAL_PUBLIC_KEY"], connectEnv["CONNECT_URL"])
	}
	cfg, err := config.Load[config.Connect](context.Background(), envconfig.MapLookuper(connectEnv))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := cfg.LinkKeys()
	if err != nil || len(keys) != 1 || len(keys["globex"]) != 1 {
		t.Fatalf("CONNECT_LINK_KEYS %v %v, want one key, globex's", keys, err)
	}
	set, err := cfg.TenantSet("")
	if err != nil {
		t.Fatal(err)
	}
	globex, _ := set.Get("globex")
	acme, _ := set.Get("acme")
	if globex.Display() != "Globex CRM" || !globex.ReturnAllowed(s.ProductURL+"?from=demo") || acme.ReturnAllowed(s.ProductURL) {
		t.Fatalf("globex %+v, acme %+v", globex, acme)
	}
	s.Env = env
	link, err := s.ConnectLink("globex", "demo-user", time.Hour)
	if err != nil || !strings.HasPrefix(link, s.ConnectURL+"/?link=") {
		t.Fatalf("ConnectLink: %q %v", link, err)
	}
	if _, err := s.ConnectLink("acme", "demo-user", time.Hour); err == nil {
		t.Fatal("ConnectLink for acme, a tenant without OAuth: want an error")
	}
}
