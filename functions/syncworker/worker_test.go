package syncworker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/sethvargo/go-envconfig"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/syncertest"
	"github.com/calsync/calsync/shared/testing/testenv"
	"github.com/calsync/calsync/shared/testing/testlog"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is a Worker on the emulators: the real syncer, Firestore and
// calendaremu, and one registered calendar (the emulator's default user's).
type env struct {
	ctx    context.Context
	cal    *calendaremu.Server
	base   string
	svc    *calendar.Service
	st     *store.Store
	key    string
	logs   *testlog.Buffer
	worker *Worker
}

// retryBudget is short so a failing Calendar API fails a delivery quickly.
const retryBudget = 300 * time.Millisecond

func newEnv(t *testing.T, pub syncer.Publisher) *env {
	t.Helper()
	testenv.Firestore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	e := &env{ctx: ctx, logs: &testlog.Buffer{}}
	e.cal, e.base = calendaremu.Start(t, calendaremu.Options{})
	var err error
	if e.svc, err = calendaremu.NewService(ctx, e.base); err != nil {
		t.Fatal(err)
	}
	project := testenv.ProjectID(t)
	fs, err := firestore.NewClient(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	e.st = store.New(fs)
	if e.key, err = lifecycle.Register(ctx, e.st, store.Calendar{CalendarID: calendaremu.DefaultUser, AuthMode: store.AuthADC}); err != nil {
		t.Fatal(err)
	}
	logger := logging.New(e.logs, slog.LevelInfo)
	e.worker = &Worker{Logger: logger, ProjectID: project, Subscriptions: []string{testSubscription}, Syncer: syncer.New(syncer.Options{
		Store:       e.st,
		Services:    calclient.New(calclient.Options{Endpoint: e.base}),
		Publisher:   pub,
		Logger:      logger,
		RetryBudget: retryBudget,
	})}
	return e
}

func (e *env) insertEvents(t *testing.T, n int) []string {
	t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		ev, err := e.svc.Events.Insert(calendaremu.DefaultUser, &calendar.Event{Summary: "e",
			Start: &calendar.EventDateTime{Date: "2026-05-01"}, End: &calendar.EventDateTime{Date: "2026-05-02"}}).Do()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.Id)
	}
	return ids
}

// failLists makes every events.list fail with 503 backendError until
// clearFaults: more than the syncer retries within retryBudget.
func (e *env) failLists() {
	e.cal.FailNext("events.list", 100000, http.StatusServiceUnavailable, "backendError")
}

func (e *env) clearFaults(t *testing.T) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, e.base+"/emulator/v1/faults", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("DELETE faults: %d", resp.StatusCode)
	}
}

func (e *env) notification(state string) []byte {
	data, _ := json.Marshal(messages.Notification{CalendarKey: e.key, ResourceState: state, ReceivedAt: time.Now().UTC()})
	return data
}

// waitMirror polls until the mirror equals the calendar.
func (e *env) waitMirror(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		d, err := syncertest.Diff(e.ctx, e.st, e.svc, calendaremu.DefaultUser)
		if err != nil {
			t.Fatal(err)
		}
		if d == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("mirror not exact after %s: %s\n%s", within, d, e.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const testSubscription = "projects/calsync-test/subscriptions/calsync-sync-worker-push"

// googlePush is a push body as Google documents it (both spellings of the
// id and time), with deliveryAttempt as a dead-letter policy adds it.
func googlePush(data []byte, attrs map[string]string, messageID string, attempt int) []byte {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	msg := map[string]any{
		"data": base64.StdEncoding.EncodeToString(data), "messageId": messageID, "message_id": messageID,
		"publishTime": now, "publish_time": now, "orderingKey": "",
	}
	if attrs != nil {
		msg["attributes"] = attrs
	}
	body, _ := json.Marshal(map[string]any{"message": msg, "subscription": testSubscription, "deliveryAttempt": attempt})
	return body
}

func post(h http.Handler, body []byte, header http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/projects/calsync-test/topics/calsync-notifications", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// End to end the way production runs: a push subscription on the Pub/Sub
// emulator (Terraform's shape: retry policy, dead-letter policy) POSTs to the
// worker; the first delivery meets a failing Calendar API and is answered
// 503, Pub/Sub redelivers it and the mirror becomes exact; then a change,
// and the change feed on the emulator (ordered by calendar key) carries the
// right kinds and etags.
func TestPushSubscriptionToMirrorAndChangeFeed(t *testing.T) {
	testenv.PubSub(t)
	project := testenv.ProjectID(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ps, err := pubsubx.NewClient(ctx, project, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	for _, topic := range []string{"changes", "notifications", "dead-letters"} {
		if err := pubsubx.EnsureTopic(ctx, ps, topic); err != nil {
			t.Fatal(err)
		}
	}
	if err := pubsubx.EnsureSubscription(ctx, ps, "changes", "consumer", true); err != nil {
		t.Fatal(err)
	}
	changes := pubsubx.NewPublisher(ps, "changes", true)
	defer changes.Stop()
	e := newEnv(t, changes)
	e.worker.Subscriptions = append(e.worker.Subscriptions, pubsubx.SubscriptionName(project, "sync-worker-push"))
	ids := e.insertEvents(t, 3)

	var mu sync.Mutex
	var answers []int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		e.worker.ServeHTTP(rec, r)
		if rec.Code == http.StatusServiceUnavailable {
			e.clearFaults(t) // the Calendar API recovers; the redelivery succeeds
		}
		mu.Lock() // recorded after the faults are cleared: the test lists next
		answers = append(answers, rec.Code)
		mu.Unlock()
		w.WriteHeader(rec.Code)
	}))
	defer srv.Close()
	_, err = ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name:               pubsubx.SubscriptionName(project, "sync-worker-push"),
		Topic:              pubsubx.TopicName(project, "notifications"),
		AckDeadlineSeconds: 60,
		// Any path is accepted (Terraform's endpoint once had this one).
		PushConfig:       &pubsubpb.PushConfig{PushEndpoint: srv.URL + "/projects/" + project + "/topics/notifications"},
		RetryPolicy:      &pubsubpb.RetryPolicy{MinimumBackoff: durationpb.New(100 * time.Millisecond), MaximumBackoff: durationpb.New(time.Second)},
		DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: pubsubx.TopicName(project, "dead-letters"), MaxDeliveryAttempts: 5},
	})
	if err != nil {
		t.Fatal(err)
	}
	notify := pubsubx.NewPublisher(ps, "notifications", false)
	defer notify.Stop()
	publish := func(state string) {
		n := messages.Notification{CalendarKey: e.key, ResourceState: state}
		if err := notify.Publish(ctx, e.notification(state), n.Attributes(), ""); err != nil {
			t.Fatal(err)
		}
	}

	answered := func(want int) {
		deadline := time.Now().Add(time.Minute)
		for {
			mu.Lock()
			n := len(answers)
			mu.Unlock()
			if n >= want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d answers after a minute, want %d", n, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	e.failLists()
	publish(messages.StateSync)
	answered(1) // the 503; the faults are cleared (the mirror check lists too)
	e.waitMirror(t, time.Minute)
	upd, err := e.svc.Events.Patch(calendaremu.DefaultUser, ids[0], &calendar.Event{Summary: "changed"}).Do()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Events.Delete(calendaremu.DefaultUser, ids[1]).Do(); err != nil {
		t.Fatal(err)
	}
	publish(messages.StateExists)
	e.waitMirror(t, time.Minute)

	// The change feed: 3 created, 1 updated, 1 deleted, in order.
	var got []messages.Change
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	_ = ps.Subscriber("consumer").Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		var c messages.Change
		if err := json.Unmarshal(m.Data, &c); err != nil {
			t.Error(err)
		}
		if m.OrderingKey != e.key || m.Attributes[messages.AttrEventID] != c.EventID {
			t.Errorf("message key %q attrs %v", m.OrderingKey, m.Attributes)
		}
		mu.Lock()
		got = append(got, c)
		if len(got) >= 5 {
			rcancel()
		}
		mu.Unlock()
		m.Ack()
	})
	mu.Lock()
	defer mu.Unlock()
	counts := syncertest.Counts(got)
	if len(got) != 5 || counts[messages.ChangeCreated] != 3 || counts[messages.ChangeUpdated] != 1 || counts[messages.ChangeDeleted] != 1 {
		t.Fatalf("change feed: %v (%d messages)", counts, len(got))
	}
	for _, c := range got {
		if c.Change == messages.ChangeUpdated && (c.EventID != ids[0] || c.Etag != upd.Etag || c.Sequence != upd.Sequence) {
			t.Errorf("updated change %+v", c)
		}
		if c.Change == messages.ChangeDeleted && c.EventID != ids[1] {
			t.Errorf("deleted change %+v", c)
		}
		if c.Change == messages.ChangeCreated {
			var ev calendar.Event
			if err := json.Unmarshal(c.Event, &ev); err != nil || ev.Id != c.EventID || ev.Start == nil || ev.Start.Date != "2026-05-01" {
				t.Errorf("created change event %s: %v", c.Event, err)
			}
		}
	}
	// One 503 (the failing Calendar API), then a 204 per notification.
	if len(answers) != 3 || answers[0] != http.StatusServiceUnavailable || answers[1] != http.StatusNoContent || answers[2] != http.StatusNoContent {
		t.Errorf("answers %v, want [503 204 204]", answers)
	}
	if n := e.logs.Count("INFO", logging.EventSync); n != 2 {
		t.Errorf("%d sync log lines, want 2:\n%s", n, e.logs.String())
	}
	var warned []map[string]any
	for _, l := range e.logs.Lines() {
		if l["severity"] == "WARNING" {
			warned = append(warned, l)
		}
	}
	if len(warned) != 1 || warned[0][logging.KeyMessageID] == "" || warned[0][logging.KeySubscription] != pubsubx.SubscriptionName(project, "sync-worker-push") ||
		warned[0][logging.KeyCalendarKey] != e.key {
		t.Errorf("want one WARNING line (the 503) naming the message, subscription and calendar:\n%s", e.logs.String())
	}
}

// Google's documented push body with deliveryAttempt: a transient failure
// (the Calendar API answers 503 beyond the retry budget) is answered 503,
// its line carries the delivery and the trace, nothing is acknowledged;
// the redelivery (attempt 2) is answered 204 and syncs.
func TestTransientFailureAnswered503(t *testing.T) {
	rec := &syncertest.Recorder{}
	e := newEnv(t, rec)
	e.insertEvents(t, 2)
	n := messages.Notification{CalendarKey: e.key, ResourceState: messages.StateSync}
	trace := http.Header{"X-Cloud-Trace-Context": {"105445aa7843bc8bf206b12000100000/1;o=1"}}

	e.failLists()
	w := post(e.worker, googlePush(e.notification(messages.StateSync), n.Attributes(), "9001", 1), trace)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("transient failure answered %d, want 503", w.Code)
	}
	var warned []map[string]any
	for _, l := range e.logs.Lines() {
		if l["severity"] == "WARNING" {
			warned = append(warned, l)
		}
	}
	if len(warned) != 1 || warned[0][logging.KeyMessageID] != "9001" || warned[0][logging.KeyDeliveryAttempt] != 1.0 ||
		warned[0][logging.KeySubscription] != testSubscription || warned[0][logging.KeyCalendarKey] != e.key ||
		warned[0][logging.FieldTrace] != "projects/"+e.worker.ProjectID+"/traces/105445aa7843bc8bf206b12000100000" {
		t.Fatalf("want one WARNING line naming message 9001, attempt 1, the subscription, the calendar and the trace:\n%s", e.logs.String())
	}
	if e.logs.Count("ERROR", logging.EventSyncError) != 1 || len(rec.All()) != 0 {
		t.Fatalf("want the syncer's one sync_error and no change:\n%s", e.logs.String())
	}

	e.clearFaults(t)
	if w := post(e.worker, googlePush(e.notification(messages.StateSync), n.Attributes(), "9001", 2), trace); w.Code != http.StatusNoContent {
		t.Fatalf("redelivery answered %d, want 204", w.Code)
	}
	syncertest.AssertMirror(t, e.ctx, e.st, e.svc, calendaremu.DefaultUser)
	if c := syncertest.Counts(rec.All()); c[messages.ChangeCreated] != 2 || len(rec.All()) != 2 {
		t.Fatalf("changes %v", c)
	}
}

// Every message that can never be processed is acknowledged (200) with
// exactly one ERROR invalid_message line naming the reason and the delivery,
// never the body; nothing reaches Firestore or the change feed.
func TestInvalidMessagesAcknowledged(t *testing.T) {
	rec := &syncertest.Recorder{}
	e := newEnv(t, rec)
	e.insertEvents(t, 1)
	const marker = "BODY-MARKER-never-logged"
	attrs := map[string]string{messages.AttrCalendarKey: e.key, messages.AttrResourceState: messages.StateExists}
	data := func(v string) []byte { return []byte(v) }
	long := strings.Repeat("k", 10000)
	huge := googlePush(e.notification(messages.StateExists), map[string]string{"pad": strings.Repeat(marker, MaxBodyBytes/len(marker)+1)}, "m-huge", 3)

	for _, tc := range []struct {
		name, reason, messageID, key string
		body                         []byte
		noDelivery                   bool // the body says nothing of the delivery
	}{
		{name: "body not JSON", reason: ReasonNotPushRequest, body: data("not json " + marker), noDelivery: true},
		{name: "no message", reason: ReasonNotPushRequest, body: data(`{"subscription":"` + testSubscription + `","deliveryAttempt":3,"x":"` + marker + `"}`)},
		{name: "message of the wrong type", reason: ReasonNotPushRequest, messageID: "m-type",
			body: data(`{"message":{"data":7,"messageId":"m-type"},"subscription":"` + testSubscription + `","deliveryAttempt":3}`)},
		{name: "empty data", reason: ReasonEmptyData, messageID: "m-empty", key: e.key, body: googlePush(nil, attrs, "m-empty", 3)},
		{name: "bad base64", reason: ReasonBadBase64, messageID: "m-b64", key: e.key,
			body: bytes.Replace(googlePush(data(marker), attrs, "m-b64", 3), data(`"data":"`), data(`"data":"!!`), 1)},
		{name: "data not JSON", reason: messages.ReasonNotJSON, messageID: "m-json", key: e.key, body: googlePush(data("not json "+marker), attrs, "m-json", 3)},
		{name: "no calendar key", reason: messages.ReasonNoCalendarKey, messageID: "m-nokey",
			body: googlePush(data(`{"resourceState":"exists","channelId":"`+marker+`"}`), nil, "m-nokey", 3)},
		{name: "path in the calendar key", reason: messages.ReasonBadCalendarKey, messageID: "m-path", key: "../../x",
			body: googlePush(data(`{"calendarKey":"../../x","resourceState":"exists","channelId":"`+marker+`"}`), nil, "m-path", 3)},
		{name: "long calendar key", reason: messages.ReasonBadCalendarKey, messageID: "m-long", key: logging.Clip(long),
			body: googlePush(data(`{"calendarKey":"`+long+`","resourceState":"exists"}`), nil, "m-long", 3)},
		{name: "unknown resourceState", reason: messages.ReasonUnknownResourceState, messageID: "m-state", key: e.key,
			body: googlePush(data(`{"calendarKey":"`+e.key+`","resourceState":"bogus","channelId":"`+marker+`"}`), attrs, "m-state", 3)},
		{name: "body over MaxBodyBytes", reason: ReasonBodyTooLarge, body: huge, noDelivery: true},
	} {
		before := len(e.logs.Lines())
		w := post(e.worker, tc.body, nil)
		if w.Code != http.StatusOK {
			t.Errorf("%s: answered %d, want 200 (acknowledged)", tc.name, w.Code)
		}
		lines := e.logs.Lines()[before:]
		if len(lines) != 1 {
			t.Errorf("%s: %d log lines, want 1:\n%s", tc.name, len(lines), e.logs.String())
			continue
		}
		l := lines[0]
		wantSub, wantAttempt := testSubscription, 3.0
		if tc.noDelivery {
			wantSub, wantAttempt = "", 0
		}
		if l["severity"] != "ERROR" || l[logging.KeyEvent] != logging.EventInvalidMessage || l[logging.KeyReason] != tc.reason ||
			l[logging.KeyMessageID] != tc.messageID || l[logging.KeySubscription] != wantSub || l[logging.KeyDeliveryAttempt] != wantAttempt {
			t.Errorf("%s: log line %v, want ERROR invalid_message reason %s message %q", tc.name, l, tc.reason, tc.messageID)
		}
		if got, _ := l[logging.KeyCalendarKey].(string); got != tc.key {
			t.Errorf("%s: logged calendarKey %q, want %q", tc.name, got, tc.key)
		}
	}
	all := e.logs.String()
	if strings.Contains(all, marker) || strings.Contains(all, strings.Repeat("k", logging.MaxValueBytes+1)) {
		t.Errorf("a body or an unclipped value reached the log:\n%.2000s", all)
	}
	if n := e.logs.Count("ERROR", logging.EventInvalidMessage); n != 11 {
		t.Errorf("%d invalid_message lines, want 11", n)
	}
	// Nothing reached the sync engine: no list, no write, no change.
	if lists := e.cal.Stats().Requests["events.list"]; lists != 0 {
		t.Errorf("%d events.list calls for invalid messages", lists)
	}
	c, err := e.st.GetCalendar(e.ctx, e.key)
	if err != nil || !c.LastSyncStartedAt.IsZero() || c.SyncCount != 0 || c.Dirty || c.LeaseOwner != "" {
		t.Errorf("calendar touched by invalid messages: %+v %v", c, err)
	}
	if m, err := syncertest.Mirror(e.ctx, e.st, e.key); err != nil || len(m) != 0 {
		t.Errorf("mirror %v %v, want empty", m, err)
	}
	if len(rec.All()) != 0 {
		t.Errorf("changes published: %v", rec.All())
	}
}

// neverSyncer fails the test if a request reaches the sync engine.
type neverSyncer struct{ t *testing.T }

func (s neverSyncer) HandleNotification(context.Context, messages.Notification) error {
	s.t.Error("HandleNotification called")
	return nil
}

// Pub/Sub only POSTs: anything else is 405 with Allow, and is not logged.
func TestOnlyPost(t *testing.T) {
	var logs testlog.Buffer
	w := &Worker{Syncer: neverSyncer{t}, Logger: logging.New(&logs, slog.LevelDebug), Subscriptions: []string{testSubscription}}
	for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodHead} {
		r := httptest.NewRequest(method, "/", strings.NewReader(`{}`))
		rw := httptest.NewRecorder()
		w.ServeHTTP(rw, r)
		if rw.Code != http.StatusMethodNotAllowed || rw.Header().Get("Allow") != http.MethodPost {
			t.Errorf("%s: %d Allow=%q, want 405 Allow=POST", method, rw.Code, rw.Header().Get("Allow"))
		}
	}
	if logs.String() != "" {
		t.Errorf("logged: %s", logs.String())
	}
}

// The same handler takes Eventarc's binary-mode Pub/Sub CloudEvent (Ce-*
// headers, the push body's message and subscription as data): a valid one
// syncs; for an invalid one without a message id, Ce-Id names it.
func TestEventarcCloudEvent(t *testing.T) {
	rec := &syncertest.Recorder{}
	e := newEnv(t, rec)
	e.insertEvents(t, 2)
	ce := func(id string, data []byte, withMessageID bool) []byte {
		msg := map[string]any{"data": base64.StdEncoding.EncodeToString(data), "publishTime": time.Now().UTC().Format(time.RFC3339Nano)}
		if withMessageID {
			msg["messageId"] = id
		}
		body, _ := json.Marshal(map[string]any{"message": msg, "subscription": testSubscription})
		return body
	}
	header := func(id string) http.Header {
		return http.Header{"Ce-Id": {id}, "Ce-Specversion": {"1.0"}, "Ce-Type": {"google.cloud.pubsub.topic.v1.messagePublished"},
			"Ce-Source": {"//pubsub.googleapis.com/projects/calsync-test/topics/calsync-notifications"}, "Ce-Time": {time.Now().UTC().Format(time.RFC3339)}}
	}
	if w := post(e.worker, ce("ce-1", e.notification(messages.StateSync), true), header("ce-1")); w.Code != http.StatusNoContent {
		t.Fatalf("CloudEvent answered %d, want 204", w.Code)
	}
	syncertest.AssertMirror(t, e.ctx, e.st, e.svc, calendaremu.DefaultUser)
	if len(rec.All()) != 2 {
		t.Fatalf("%d changes, want 2", len(rec.All()))
	}
	if w := post(e.worker, ce("ce-2", []byte(`{"calendarKey":"../../x","resourceState":"exists"}`), false), header("ce-2")); w.Code != http.StatusOK {
		t.Fatalf("invalid CloudEvent answered %d, want 200", w.Code)
	}
	lines := e.logs.Lines()
	last := lines[len(lines)-1]
	if last[logging.KeyEvent] != logging.EventInvalidMessage || last[logging.KeyMessageID] != "ce-2" || last[logging.KeyReason] != messages.ReasonBadCalendarKey {
		t.Fatalf("invalid CloudEvent line %v", last)
	}
}

func TestConfigDefaultsAndNew(t *testing.T) {
	testenv.Firestore(t)
	testenv.PubSub(t)
	key := "k1:MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="
	cfg, err := config.Load[config.SyncWorker](context.Background(), envconfig.MapLookuper(map[string]string{
		"PROJECT_ID": testenv.ProjectID(t), "CREDENTIAL_KEYS": key,
	}))
	if err != nil {
		t.Fatal(err)
	}
	w, stop, err := New(context.Background(), cfg, logging.New(io.Discard, slog.LevelInfo))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if w.Syncer == nil || w.ProjectID != cfg.ProjectID {
		t.Fatalf("worker %+v", w)
	}
}

// The entry point is an HTTP handler that answers 503 while the function
// cannot start (here: no PROJECT_ID), so Pub/Sub redelivers.
func TestEntryPointUnavailableWhileItCannotStart(t *testing.T) {
	t.Setenv("PROJECT_ID", "")
	rw := httptest.NewRecorder()
	Handle(rw, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{}`)))
	if rw.Code != http.StatusServiceUnavailable {
		t.Fatalf("answered %d, want 503", rw.Code)
	}
}
