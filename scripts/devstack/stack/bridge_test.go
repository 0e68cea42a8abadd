package stack

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/testing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// pushBody is Pub/Sub's push request as the bridge sends it.
type pushBody struct {
	Message struct {
		Data           string            `json:"data"`
		Attributes     map[string]string `json:"attributes"`
		MessageID      string            `json:"messageId"`
		MessageIDSnake string            `json:"message_id"`
		PublishTime    time.Time         `json:"publishTime"`
	} `json:"message"`
	Subscription    string `json:"subscription"`
	DeliveryAttempt int    `json:"deliveryAttempt"`
}

// The bridge POSTs each message in Pub/Sub's push format (with
// deliveryAttempt, as a subscription with a dead-letter policy sends it),
// acks on 2xx, and nacks (so Pub/Sub redelivers) otherwise.
func TestBridgeDeliversPushRequestsAndRedelivers(t *testing.T) {
	host := testenv.PubSub(t)
	project := testenv.ProjectID(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var mu sync.Mutex
	var got []pushBody
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p pushBody
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&p) != nil {
			t.Errorf("not a push request: %s %v", r.Method, r.Header)
			w.WriteHeader(400)
			return
		}
		if r.Header.Get("Ce-Id") != "" || r.Header.Get("Ce-Type") != "" {
			t.Errorf("CloudEvent headers on a push request: %v", r.Header)
		}
		mu.Lock()
		defer mu.Unlock()
		got = append(got, p)
		if len(got) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // first delivery fails: redelivered
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	client, err := pubsubx.NewClient(ctx, project, host)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	s := &Stack{ProjectID: project, NotificationsTopic: "notif", Subscription: "notif-sub", SyncWorkerURL: srv.URL,
		PubSub: client, log: slog.New(slog.DiscardHandler)}
	if err := pubsubx.EnsureTopic(ctx, client, "notif"); err != nil {
		t.Fatal(err)
	}
	if err := pubsubx.EnsureSubscription(ctx, client, "notif", "notif-sub", false); err != nil {
		t.Fatal(err)
	}
	b := newBridge(s, BridgeOptions{RetryDelay: 50 * time.Millisecond})
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { b.run(rctx); close(done) }()
	defer func() { rcancel(); <-done }()

	pub := pubsubx.NewPublisher(client, "notif", false)
	defer pub.Stop()
	const data = `{"calendarKey":"c1","resourceState":"exists"}`
	if err := pub.Publish(ctx, []byte(data), map[string]string{"calendarKey": "c1"}, ""); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for b.Stats().Acked < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("not acked: %+v", b.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("deliveries = %d, want 2 (one failure, one redelivery)", len(got))
	}
	for i, p := range got {
		raw, _ := base64.StdEncoding.DecodeString(p.Message.Data)
		if string(raw) != data || p.Message.Attributes["calendarKey"] != "c1" || p.Message.MessageID == "" || p.Message.MessageIDSnake != p.Message.MessageID ||
			p.Message.MessageID != got[0].Message.MessageID || p.Subscription != "projects/"+project+"/subscriptions/notif-sub" ||
			p.Message.PublishTime.IsZero() || p.DeliveryAttempt != i+1 {
			t.Fatalf("delivery %d: %+v (%s)", i+1, p, raw)
		}
	}
	if st := b.Stats(); st.Failed != 1 || st.Nacked != 1 || st.Acked != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// The environment Start gives the functions passes their config checks, and
// Env overrides reach them.
func TestEnvironmentIsValidForEveryFunction(t *testing.T) {
	s := &Stack{ProjectID: "p", NotificationsTopic: "n-topic", ChangesTopic: "c-topic", FirestoreHost: "127.0.0.1:1",
		PubSubHost: "127.0.0.1:2", CalendarBaseURL: "http://127.0.0.1:3", CalendarEndpoint: "http://127.0.0.1:3/calendar/v3/",
		WebhookURL: "http://127.0.0.1:4/Webhook"}
	env, err := s.environment(Options{}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	if env["CHANNEL_TTL"] != "2m0s" || env["RENEW_BEFORE"] != "1m0s" || env["CALENDAR_ENDPOINT"] != s.CalendarEndpoint || env["OAUTH_TOKEN_URL"] != "http://127.0.0.1:3/token" {
		t.Fatalf("env %v", env)
	}
	again, _ := s.environment(Options{}.withDefaults())
	if again["CHANNEL_TOKEN_KEYS"] == env["CHANNEL_TOKEN_KEYS"] || again["CREDENTIAL_KEYS"] == env["CREDENTIAL_KEYS"] {
		t.Fatal("keys are not random per run")
	}
	if _, err := s.environment(Options{Env: map[string]string{"LEASE_DURATION": "1s"}}.withDefaults()); err == nil {
		t.Fatal("want an error for LEASE_DURATION=1s")
	}
}
