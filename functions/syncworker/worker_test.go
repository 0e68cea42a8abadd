package syncworker

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/sethvargo/go-envconfig"
	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/config"
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

func cloudEvent(t *testing.T, data []byte) event.Event {
	t.Helper()
	body, _ := json.Marshal(MessagePublishedData{Message: PubSubMessage{Data: data, MessageID: "m1", PublishTime: time.Now()},
		Subscription: "projects/p/subscriptions/s"})
	e := event.New()
	e.SetID("ce1")
	e.SetSource("//pubsub.googleapis.com/projects/p/topics/calsync-notifications")
	e.SetType("google.cloud.pubsub.topic.v1.messagePublished")
	if err := e.SetData("application/json", body); err != nil {
		t.Fatal(err)
	}
	return e
}

// End to end on the emulators: a CloudEvent in, the mirror exact, the change
// feed on the Pub/Sub emulator (ordered by calendar key) with the right kinds
// and etags.
func TestCloudEventToMirrorAndChangeFeed(t *testing.T) {
	testenv.Firestore(t)
	testenv.PubSub(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	project := testenv.ProjectID(t)
	srv, base := calendaremu.Start(t, calendaremu.Options{})
	_ = srv
	svc, err := calendaremu.NewService(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := firestore.NewClient(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	ps, err := pubsubx.NewClient(ctx, project, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	if err := pubsubx.EnsureTopic(ctx, ps, "changes"); err != nil {
		t.Fatal(err)
	}
	if err := pubsubx.EnsureSubscription(ctx, ps, "changes", "consumer", true); err != nil {
		t.Fatal(err)
	}
	pub := pubsubx.NewPublisher(ps, "changes", true)
	defer pub.Stop()
	st := store.New(fs)
	key, err := st.RegisterCalendar(ctx, store.Calendar{CalendarID: calendaremu.DefaultUser, AuthMode: store.AuthADC})
	if err != nil {
		t.Fatal(err)
	}
	var logs testlog.Buffer
	logger := logging.New(&logs, slog.LevelInfo)
	w := &Worker{Logger: logger, Syncer: syncer.New(syncer.Options{
		Store:     st,
		Services:  calclient.New(calclient.Options{Endpoint: base}),
		Publisher: pub,
		Logger:    logger,
	})}

	var ids []string
	for i := 0; i < 3; i++ {
		ev, err := svc.Events.Insert(calendaremu.DefaultUser, &calendar.Event{Summary: "e",
			Start: &calendar.EventDateTime{Date: "2026-05-01"}, End: &calendar.EventDateTime{Date: "2026-05-02"}}).Do()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.Id)
	}
	send := func(state string) {
		data, _ := json.Marshal(messages.Notification{CalendarKey: key, ResourceState: state, ReceivedAt: time.Now().UTC()})
		if err := w.HandleCloudEvent(ctx, cloudEvent(t, data)); err != nil {
			t.Fatal(err)
		}
	}
	send(messages.StateSync)
	upd, err := svc.Events.Patch(calendaremu.DefaultUser, ids[0], &calendar.Event{Summary: "changed"}).Do()
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Events.Delete(calendaremu.DefaultUser, ids[1]).Do(); err != nil {
		t.Fatal(err)
	}
	send(messages.StateExists)
	syncertest.AssertMirror(t, ctx, st, svc, calendaremu.DefaultUser)

	// Invalid messages are acknowledged with a WARNING.
	for _, bad := range [][]byte{[]byte("not json"), []byte(`{"calendarKey":"x","resourceState":"bogus"}`)} {
		if err := w.HandleCloudEvent(ctx, cloudEvent(t, bad)); err != nil {
			t.Fatalf("invalid message must be acked: %v", err)
		}
	}
	garbage := event.New()
	_ = garbage.SetData("application/json", []byte("{{{"))
	if err := w.HandleCloudEvent(ctx, garbage); err != nil {
		t.Fatal(err)
	}

	// The change feed: 3 created, 1 updated, 1 deleted, in order.
	var mu sync.Mutex
	var got []messages.Change
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	go func() {
		for {
			mu.Lock()
			n := len(got)
			mu.Unlock()
			if n >= 5 {
				rcancel()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	_ = ps.Subscriber("consumer").Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		var c messages.Change
		if err := json.Unmarshal(m.Data, &c); err != nil {
			t.Error(err)
		}
		if m.OrderingKey != key || m.Attributes[messages.AttrEventID] != c.EventID {
			t.Errorf("message key %q attrs %v", m.OrderingKey, m.Attributes)
		}
		mu.Lock()
		got = append(got, c)
		mu.Unlock()
		m.Ack()
	})
	rcancel()
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
	if n := strings.Count(logs.String(), `"event":"sync"`); n != 2 {
		t.Errorf("%d sync log lines, want 2:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), `"severity":"WARNING"`); n != 3 {
		t.Errorf("%d WARNING lines for 3 invalid messages:\n%s", n, logs.String())
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
	if w.Syncer == nil {
		t.Fatal("no syncer")
	}
}
