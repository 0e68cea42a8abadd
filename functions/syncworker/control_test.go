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
	"github.com/google/uuid"

	"github.com/calsync/calsync/shared/app"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/tenant"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/testenv"
	"github.com/calsync/calsync/shared/testing/testlog"
)

// fresh is what every control message must carry: a request id (a new one
// each call) and its issue time (now), to splice after the opening brace.
func fresh() string {
	return `"requestId":"` + uuid.NewString() + `","issuedAt":"` + time.Now().UTC().Format(time.RFC3339Nano) + `",`
}

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
			OAuthTokenURL: base + "/token", CalendarRateLimit: 600}, RenewBefore: time.Minute, ControlSubscription: "control-push",
		NotificationSubscriptions: []string{testSubscription}}
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
		`{"version":2,` + fresh() + `"action":"enroll","subject":"ann@corp.test"}`,
		`{"version":1,` + fresh() + `"action":"enroll","subject":"ann@corp.test","deleteMirrors":true}`,
		`{"version":1,` + fresh() + `"action":"unenroll","subject":"nobody@corp.test"}`,
		`{"version":1,` + fresh() + `"action":"enroll","subject":"ghost@corp.test"}`,
	}
	for _, data := range append([]string{`{"version":1,` + fresh() + `"action":"enroll","subject":"ann@corp.test"}`}, bad...) {
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
	ctl := []byte(`{"version":1,` + fresh() + `"action":"unenroll","subject":"ann@corp.test","deleteMirror":true}`)
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
	w := &Worker{Logger: logging.New(&testlog.Buffer{}, slog.LevelInfo), Enroll: fakeEnroll{got}, Subscriptions: []string{testSubscription},
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
	w = &Worker{Logger: logging.New(logs, slog.LevelInfo), Subscriptions: []string{testSubscription}}
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

func (f fakeEnroll) HandleControl(context.Context, tenant.Tenant, messages.Control) error { return nil }

func (f fakeEnroll) AnswerControl(context.Context, tenant.Tenant, messages.Control, error) {}

func pushFrom(data []byte, subscription string) []byte {
	body, _ := json.Marshal(map[string]any{"message": map[string]any{"data": base64.StdEncoding.EncodeToString(data),
		"messageId": "x1"}, "subscription": subscription})
	return body
}

// A refused control message's values are the product's: its line shows
// terminal escapes and bidi overrides as escapes, never the raw bytes, and
// at most logging.MaxValueBytes of each.
func TestControlValuesEscaped(t *testing.T) {
	logs := &testlog.Buffer{}
	w := &Worker{Logger: logging.New(logs, slog.LevelInfo), ProjectID: "p", ControlSubscription: "control-push", Enroll: fakeEnroll{}}
	hostile := "\x1b[31mred\u202eexe.txt" + strings.Repeat("x", 300)
	ctl, _ := json.Marshal(map[string]any{"version": 1, "action": hostile, "requestId": hostile, "subject": "a@b.c",
		"issuedAt": time.Now().UTC().Format(time.RFC3339Nano)})
	if rec := post(w, pushFrom(ctl, "projects/p/subscriptions/control-push"), nil); rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	lines := logs.Lines()
	if len(lines) != 1 || lines[0]["event"] != logging.EventInvalidControl {
		t.Fatalf("want one invalid_control line:\n%s", logs.String())
	}
	want := logging.Untrusted(hostile)
	for _, k := range []string{logging.KeyAction, logging.KeyRequestID} {
		v, _ := lines[0][k].(string)
		if v != want || strings.ContainsAny(v, "\x1b\u202e") || len(v) > logging.MaxValueBytes {
			t.Errorf("%s logged as %q, want %q", k, v, want)
		}
	}
}

// Only the configured subscriptions, by full name: a notification pushed by
// any other subscription (another project's of the same id, one someone
// else pointed here) is refused, and the control path is not reached by a
// name that merely ends like the control subscription's.
func TestOnlyConfiguredSubscriptions(t *testing.T) {
	var synced, controls int
	logs := &testlog.Buffer{}
	w := &Worker{Logger: logging.New(logs, slog.LevelInfo), ProjectID: "p", ControlSubscription: "control-push",
		Subscriptions: []string{"calsync-sync-worker-push"}, Enroll: countingEnroll{&controls},
		Syncer: syncerFunc(func(context.Context, messages.Notification) error { synced++; return nil })}
	note, _ := json.Marshal(messages.Notification{CalendarKey: "c0123456789abcdefghijklmnop", ResourceState: messages.StateExists})
	ctl := []byte(`{"version":1,` + fresh() + `"action":"resync","subject":"ann@corp.test"}`)
	if rec := post(w, pushFrom(note, "projects/p/subscriptions/calsync-sync-worker-push"), nil); rec.Code != http.StatusNoContent || synced != 1 {
		t.Fatalf("the configured subscription: %d, synced %d", rec.Code, synced)
	}
	if rec := post(w, pushFrom(ctl, "projects/p/subscriptions/control-push"), nil); rec.Code != http.StatusNoContent || controls != 1 {
		t.Fatalf("the control subscription: %d, controls %d", rec.Code, controls)
	}
	for _, sub := range []string{"projects/other/subscriptions/calsync-sync-worker-push", "projects/p/subscriptions/someone-elses", "", "calsync-sync-worker-push"} {
		if rec := post(w, pushFrom(note, sub), nil); rec.Code != http.StatusOK {
			t.Errorf("notification from %q: %d, want 200 (acknowledged, refused)", sub, rec.Code)
		}
	}
	if rec := post(w, pushFrom(ctl, "projects/evil/subscriptions/control-push"), nil); rec.Code != http.StatusOK {
		t.Errorf("control message from another project's control-push: %d", rec.Code)
	}
	// A name that merely ends like the control subscription's is not it
	// (the suffix match this replaced), and a control message published on
	// the notifications topic (the Webhook's account may publish there) is
	// read as a notification, which it is not: refused, no action taken.
	if rec := post(w, pushFrom(ctl, "projects/p/subscriptions/evil-control-push"), nil); rec.Code != http.StatusOK {
		t.Errorf("control message from a subscription named like control-push: %d", rec.Code)
	}
	if rec := post(w, pushFrom(ctl, "projects/p/subscriptions/calsync-sync-worker-push"), nil); rec.Code != http.StatusOK {
		t.Errorf("control message on the notifications subscription: %d, want 200 (acknowledged, refused)", rec.Code)
	}
	if synced != 1 || controls != 1 {
		t.Fatalf("synced %d, controls %d after pushes of other subscriptions: want 1 and 1", synced, controls)
	}
	n, notNotes := 0, 0
	for _, l := range logs.Lines() {
		if l["event"] == logging.EventInvalidMessage && l[logging.KeyReason] == ReasonUnknownSubscription {
			n++
		}
		if l["event"] == logging.EventInvalidMessage && l[logging.KeyReason] == messages.ReasonNoCalendarKey {
			notNotes++ // the three control bodies of other subscriptions, read as notifications
		}
	}
	if n != 4 || notNotes != 3 {
		t.Fatalf("%d invalid_message lines with reason %s (want 4), %d with %s (want 3):\n%s", n, ReasonUnknownSubscription,
			notNotes, messages.ReasonNoCalendarKey, logs.String())
	}
}

type countingEnroll struct{ n *int }

func (countingEnroll) HandleListNotification(context.Context, messages.Notification) error {
	return nil
}
func (c countingEnroll) HandleControl(context.Context, tenant.Tenant, messages.Control) error {
	*c.n++
	return nil
}

func (countingEnroll) AnswerControl(context.Context, tenant.Tenant, messages.Control, error) {}
