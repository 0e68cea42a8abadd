package syncworker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/calsync/calsync/shared/app"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/testenv"
	"github.com/calsync/calsync/shared/testing/testlog"
)

const testPrivKeys = "h1:aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg="

// A product publishes control messages on its topic; the control push
// subscription (Terraform's shape) delivers them to the worker, which
// enrolls a Workspace user and acknowledges each bad message with one ERROR
// invalid_control line (the metric's source), changing nothing. A push of
// the notifications subscription is never taken for a control message, nor
// the other way round.
func TestControlTopicToWorker(t *testing.T) {
	testenv.Firestore(t)
	testenv.PubSub(t)
	project := testenv.ProjectID(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ps, err := pubsubx.NewClient(ctx, project, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	for _, topic := range []string{"control", "notifications"} {
		if err := pubsubx.EnsureTopic(ctx, ps, topic); err != nil {
			t.Fatal(err)
		}
	}
	if err := pubsubx.EnsureSubscription(ctx, ps, "notifications", "requests", false); err != nil {
		t.Fatal(err)
	}
	fs, err := firestore.NewClient(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	st := store.New(fs)
	emu, base := calendaremu.Start(t, calendaremu.Options{})
	if err := emu.CreateDomain("corp.test", "admin@corp.test"); err != nil {
		t.Fatal(err)
	}
	_ = emu.AddDomainUser("ann@corp.test", false)
	logs := &testlog.Buffer{}
	logger := logging.New(logs, slog.LevelInfo)
	cfg := config.SyncWorker{Common: config.Common{ProjectID: project}, NotificationsTopic: "notifications", ChangesTopic: "changes",
		Calendar: config.Calendar{CalendarEndpoint: base, CredentialPrivateKeys: testPrivKeys,
			OAuthTokenURL: base + "/token", CalendarRateLimit: 600}, RenewBefore: time.Minute, ControlSubscription: "control-push"}
	a, err := app.Build(ctx, cfg, app.WithLogger(logger), app.WithFirestore(fs), app.WithPubSub(ps))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	w := NewWorker(cfg, a, logger)
	w.Syncer = syncerFunc(func(context.Context, messages.Notification) error { return nil })

	var mu sync.Mutex
	var answers []int
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, r)
		mu.Lock()
		answers = append(answers, rec.Code)
		mu.Unlock()
		rw.WriteHeader(rec.Code)
	}))
	defer srv.Close()
	if _, err := ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: pubsubx.SubscriptionName(project, "control-push"), Topic: pubsubx.TopicName(project, "control"),
		AckDeadlineSeconds: 60, PushConfig: &pubsubpb.PushConfig{PushEndpoint: srv.URL},
	}); err != nil {
		t.Fatal(err)
	}
	product := pubsubx.NewPublisher(ps, "control", false)
	defer product.Stop()
	bad := []string{
		`not json`,
		`{"version":2,"action":"enroll","subject":"ann@corp.test"}`,
		`{"version":1,"action":"enroll","subject":"ann@corp.test","deleteMirrors":true}`,
		`{"version":1,"action":"unenroll","subject":"nobody@corp.test"}`,
		`{"version":1,"action":"enroll","subject":"ghost@corp.test"}`,
	}
	for _, data := range append([]string{`{"version":1,"action":"enroll","subject":"ann@corp.test"}`}, bad...) {
		if err := product.Publish(ctx, []byte(data), nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		mu.Lock()
		n := len(answers)
		mu.Unlock()
		if n >= 1+len(bad) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d answers, want %d:\n%s", n, 1+len(bad), logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	codes := map[int]int{}
	for _, c := range answers {
		codes[c]++
	}
	mu.Unlock()
	if codes[http.StatusNoContent] != 1 || codes[http.StatusOK] != len(bad) {
		t.Fatalf("answers %v, want one 204 and %d 200", codes, len(bad))
	}
	ids, _ := st.AllIdentities(ctx)
	if len(ids) != 1 {
		t.Fatalf("%d identities, want ann only", len(ids))
	}
	if c, err := st.GetCalendar(ctx, store.CalendarKey("ann@corp.test")); err != nil || c.Status != store.StatusActive {
		t.Fatalf("ann's calendar: %+v %v", c, err)
	}
	reasons := map[string]bool{}
	for _, l := range logs.Lines() {
		if l["event"] == logging.EventInvalidControl {
			if l["severity"] != "ERROR" || l[logging.KeySubscription] != pubsubx.SubscriptionName(project, "control-push") || l[logging.KeyMessageID] == "" {
				t.Errorf("invalid_control line %v", l)
			}
			reasons[l[logging.KeyReason].(string)] = true
		}
	}
	for _, r := range []string{messages.ReasonNotJSON, messages.ReasonUnsupportedVersion, messages.ReasonUnknownField,
		messages.ReasonUnknownIdentity, messages.ReasonNotAuthorized} {
		if !reasons[r] {
			t.Errorf("no invalid_control line with reason %s: %v", r, reasons)
		}
	}
	// A notification-shaped body from the control subscription is a bad
	// control message, and a control message from the notifications
	// subscription is a bad notification: neither changes anything.
	note, _ := json.Marshal(messages.Notification{CalendarKey: store.CalendarKey("ann@corp.test"), ResourceState: "full_resync"})
	if rec := post(w, pushFrom(note, "projects/"+project+"/subscriptions/control-push"), nil); rec.Code != http.StatusOK {
		t.Fatalf("notification on the control subscription: %d", rec.Code)
	}
	ctl := []byte(`{"version":1,"action":"unenroll","subject":"ann@corp.test","deleteMirror":true}`)
	if rec := post(w, pushFrom(ctl, testSubscription), nil); rec.Code != http.StatusOK {
		t.Fatalf("control message on the notifications subscription: %d", rec.Code)
	}
	if c, _ := st.GetCalendar(ctx, store.CalendarKey("ann@corp.test")); c.Status != store.StatusActive {
		t.Fatal("a control message on the wrong subscription was obeyed")
	}
	if !strings.Contains(logs.String(), logging.EventInvalidMessage) {
		t.Error("no invalid_message line for the control message on the notifications subscription")
	}
}

// A calendarList notification goes to the enrollment engine, not the syncer.
func TestListNotificationRouted(t *testing.T) {
	got := make(chan messages.Notification, 1)
	w := &Worker{Logger: logging.New(&testlog.Buffer{}, slog.LevelInfo), Enroll: fakeEnroll{got},
		Syncer: syncerFunc(func(context.Context, messages.Notification) error { t.Error("syncer called"); return nil })}
	data, attrs, _ := messages.ListRequest("i0123456789abcdefghijklmnop", messages.StateExists, time.Now())
	if rec := post(w, googlePush(data, attrs, "m1", 1), nil); rec.Code != http.StatusNoContent {
		t.Fatalf("status %d", rec.Code)
	}
	if n := <-got; n.IdentityKey != "i0123456789abcdefghijklmnop" || n.MessageID != "m1" {
		t.Fatalf("enroller got %+v", n)
	}
	// Without an enrollment engine: acknowledged as invalid, one ERROR.
	logs := &testlog.Buffer{}
	w = &Worker{Logger: logging.New(logs, slog.LevelInfo)}
	if rec := post(w, googlePush(data, attrs, "m2", 1), nil); rec.Code != http.StatusOK || logs.Count("ERROR", logging.EventInvalidMessage) != 1 {
		t.Fatalf("status %d\n%s", rec.Code, logs.String())
	}
}

type syncerFunc func(context.Context, messages.Notification) error

func (f syncerFunc) HandleNotification(ctx context.Context, n messages.Notification) error {
	return f(ctx, n)
}

type fakeEnroll struct{ got chan messages.Notification }

func (f fakeEnroll) HandleListNotification(_ context.Context, n messages.Notification) error {
	f.got <- n
	return nil
}

func (f fakeEnroll) HandleControl(context.Context, messages.Control) error { return nil }

func pushFrom(data []byte, subscription string) []byte {
	body, _ := json.Marshal(map[string]any{"message": map[string]any{"data": base64.StdEncoding.EncodeToString(data),
		"messageId": "x1"}, "subscription": subscription})
	return body
}
