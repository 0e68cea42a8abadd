package renewer

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/channels"
	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/testenv"
	"github.com/calsync/calsync/shared/testing/testlog"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var (
	tokenKeys = "k1:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("t", 32)))
	// privKeys: the deployment's sealing key (CREDENTIAL_PRIVATE_KEYS).
	privKeys = "h1:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("h", 32)))
	// credKeys: a legacy AES-GCM key (CREDENTIAL_KEYS), for migrations.
	credKeys = "c1:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("c", 32)))
)

type env struct {
	t       testing.TB
	ctx     context.Context
	project string
	fs      *firestore.Client
	st      *store.Store
	ps      *pubsub.Client
	pub     *pubsubx.Publisher
	emu     *calendaremu.Server
	base    string
	hookURL string
	logs    *testlog.Buffer
	cfg     config.RenewChannels
}

// newEnv starts what a run needs: Firestore and Pub/Sub emulators (a topic
// and a subscription "worker"), calendaremu and a webhook that answers 200.
func newEnv(t testing.TB, emuOpts calendaremu.Options) *env {
	t.Helper()
	ctx := context.Background()
	testenv.Firestore(t)
	host := testenv.PubSub(t)
	project := testenv.ProjectID(t)
	fs, err := firestore.NewClient(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := pubsubx.NewClient(ctx, project, host)
	if err != nil {
		t.Fatal(err)
	}
	if err := pubsubx.EnsureTopic(ctx, ps, "notifications"); err != nil {
		t.Fatal(err)
	}
	if err := pubsubx.EnsureSubscription(ctx, ps, "notifications", "worker", false); err != nil {
		t.Fatal(err)
	}
	pub := pubsubx.NewPublisher(ps, "notifications", false)
	t.Cleanup(func() { pub.Stop(); ps.Close(); fs.Close() })
	emu, base := calendaremu.Start(t, emuOpts)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(hook.Close)
	e := &env{t: t, ctx: ctx, project: project, fs: fs, st: store.New(fs), ps: ps, pub: pub, emu: emu, base: base, hookURL: hook.URL, logs: &testlog.Buffer{}}
	e.cfg = config.RenewChannels{
		Common:             config.Common{ProjectID: project, LogLevel: "info"},
		Firestore:          config.Firestore{FirestoreDatabase: "(default)"},
		Calendar:           config.Calendar{CalendarEndpoint: base, CredentialPrivateKeys: privKeys, OAuthClientID: "cid", OAuthClientSecret: "sec", OAuthTokenURL: base + "/token", OAuthAuthURL: base + "/authorize", CalendarRateLimit: 6000},
		NotificationsTopic: "notifications",
		ChannelTokenKeys:   tokenKeys,
		WebhookURL:         hook.URL,
		ChannelTTL:         time.Hour,
		RenewBefore:        10 * time.Minute,
		ReconcileAfter:     6 * time.Hour,
		Concurrency:        8,
	}
	return e
}

func (e *env) renewer(mod func(*config.RenewChannels)) *Renewer {
	e.t.Helper()
	cfg := e.cfg
	if mod != nil {
		mod(&cfg)
	}
	// Wired as shared/app wires RenewChannels (that package imports this
	// one, so these tests cannot call it).
	logger := slog.New(slog.NewJSONHandler(e.logs, nil))
	tokens, err := channeltoken.Parse(cfg.ChannelTokenKeys)
	if err != nil {
		e.t.Fatal(err)
	}
	access, err := credentials.NewAccess(cfg.Calendar, e.st, logger)
	if err != nil {
		e.t.Fatal(err)
	}
	mgr := &channels.Manager{Store: e.st, Calendars: access.Calendars, Lifecycle: access.Lifecycle, Tokens: tokens, WebhookURL: cfg.WebhookURL,
		TTL: cfg.ChannelTTL, Logger: logger, Namespace: channels.Namespace(cfg.ProjectID, cfg.Deployment)}
	access.Lifecycle.Stopper = mgr
	access.Lifecycle.NotFound = store.NotFoundPolicy{Attempts: cfg.NotFoundAttempts, After: cfg.NotFoundAfter}
	return &Renewer{ProjectID: cfg.ProjectID, Store: e.st, Access: access, Channels: mgr, Publisher: e.pub,
		RenewBefore: cfg.RenewBefore, ReconcileAfter: cfg.ReconcileAfter, Concurrency: cfg.Concurrency, Logger: logger,
		PollInterval: cfg.PollInterval, PollMinInterval: cfg.PollMinInterval, NotFoundReprobe: cfg.NotFoundReprobe,
		Enroll: &enroll.Enroller{Store: e.st, Calendars: access.Calendars, Channels: mgr, Requests: e.pub, Lifecycle: access.Lifecycle,
			Directory:   enroll.DirectoryClients{Tokens: access.Calendars, Endpoint: cfg.CalendarEndpoint},
			RenewBefore: cfg.RenewBefore, Concurrency: cfg.Concurrency, Logger: logger},
		DirectorySyncInterval: cfg.DirectorySyncInterval, RetainUnwatched: cfg.RetainUnwatched}
}

// register adds a calendar (synced just now unless told otherwise).
func (e *env) register(c store.Calendar, lastSynced time.Time) string {
	e.t.Helper()
	key, err := lifecycle.Register(e.ctx, e.st, c)
	if err != nil {
		e.t.Fatal(err)
	}
	if !lastSynced.IsZero() {
		if _, err := e.st.CalendarRef(key).Update(e.ctx, []firestore.Update{{Path: "lastSyncedAt", Value: lastSynced}}); err != nil {
			e.t.Fatal(err)
		}
	}
	return key
}

// newCalendar makes a secondary calendar of the default user at the emulator.
func (e *env) newCalendar(name string) string {
	e.t.Helper()
	svc, _ := calendaremu.NewService(e.ctx, e.base)
	c, err := svc.Calendars.Insert(&calendar.Calendar{Summary: name}).Do()
	if err != nil {
		e.t.Fatal(err)
	}
	return c.Id
}

// received collects the notifications on subscription "worker" for wait.
func (e *env) received(wait time.Duration, want int) []messages.Notification {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, wait)
	defer cancel()
	var mu sync.Mutex
	var got []messages.Notification
	_ = e.ps.Subscriber("worker").Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		n, err := messages.ParseNotification(m.Data)
		if err != nil {
			e.t.Errorf("bad message: %v", err)
			return
		}
		mu.Lock()
		got = append(got, n)
		if len(got) >= want {
			cancel()
		}
		mu.Unlock()
	})
	mu.Lock()
	defer mu.Unlock()
	return got
}

// live lists the emulator's live channels by calendar id.
func (e *env) live() map[string][]string {
	out := map[string][]string{}
	for _, c := range e.emu.Channels() {
		if !c.Stopped && !c.Expired {
			out[c.Calendar] = append(out[c.Calendar], c.ID)
		}
	}
	return out
}
