package syncer_test

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/option"

	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/syncertest"
	"github.com/calsync/calsync/shared/testing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type env struct {
	t       testing.TB
	ctx     context.Context
	srv     *calendaremu.Server
	base    string
	svc     *calendar.Service
	fs      *firestore.Client
	st      *store.Store
	rec     *syncertest.Recorder
	calID   string
	key     string
	project string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	testenv.Firestore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	srv, base := calendaremu.Start(t, calendaremu.Options{})
	svc, err := calendaremu.NewService(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	project := testenv.ProjectID(t)
	fs, err := firestore.NewClient(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	e := &env{t: t, ctx: ctx, srv: srv, base: base, svc: svc, fs: fs, st: store.New(fs), rec: &syncertest.Recorder{},
		calID: calendaremu.DefaultUser, project: project}
	e.key, err = lifecycle.Register(ctx, e.st, store.Calendar{CalendarID: e.calID, AuthMode: store.AuthADC})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func quietLogger() *slog.Logger { return logging.New(io.Discard, slog.LevelDebug) }

func (e *env) syncer(mod func(*syncer.Options)) *syncer.Syncer {
	o := syncer.Options{
		Store:         e.st,
		Services:      syncer.ServicesFunc(func(context.Context, store.Grant) (*calendar.Service, error) { return e.svc, nil }),
		Publisher:     e.rec,
		Logger:        quietLogger(),
		LeaseDuration: 10 * time.Second,
		RerunInterval: 50 * time.Millisecond,
		RetryBudget:   2 * time.Second,
		RetryInitial:  20 * time.Millisecond,
	}
	if mod != nil {
		mod(&o)
	}
	return syncer.New(o)
}

func (e *env) notify(s *syncer.Syncer, state string) error {
	return s.HandleNotification(e.ctx, messages.Notification{CalendarKey: e.key, ResourceState: state, ReceivedAt: time.Now().UTC()})
}

func (e *env) mustNotify(s *syncer.Syncer, state string) {
	e.t.Helper()
	if err := e.notify(s, state); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) insert(summary string) *calendar.Event {
	e.t.Helper()
	ev, err := e.svc.Events.Insert(e.calID, &calendar.Event{
		Summary: summary,
		Start:   &calendar.EventDateTime{DateTime: "2026-12-01T10:00:00Z"},
		End:     &calendar.EventDateTime{DateTime: "2026-12-01T11:00:00Z"},
	}).Context(e.ctx).Do()
	if err != nil {
		e.t.Fatal(err)
	}
	return ev
}

func (e *env) update(id, summary string) *calendar.Event {
	e.t.Helper()
	ev, err := e.svc.Events.Patch(e.calID, id, &calendar.Event{Summary: summary}).Context(e.ctx).Do()
	if err != nil {
		e.t.Fatal(err)
	}
	return ev
}

func (e *env) remove(id string) {
	e.t.Helper()
	if err := e.svc.Events.Delete(e.calID, id).Context(e.ctx).Do(); err != nil {
		e.t.Fatal(err)
	}
}

// assertMirror checks the mirror against the calendar, and that replaying
// the whole change feed gives the mirror.
func (e *env) assertMirror() {
	e.t.Helper()
	syncertest.AssertMirror(e.t, e.ctx, e.st, e.svc, e.calID)
	mirror, err := syncertest.Mirror(e.ctx, e.st, e.key)
	if err != nil {
		e.t.Fatal(err)
	}
	if replay := syncertest.Replay(e.rec.All()); !maps.Equal(replay, mirror) {
		e.t.Fatalf("replaying the change feed gives %d events, the mirror has %d:\nreplay %v\nmirror %v", len(replay), len(mirror), replay, mirror)
	}
}

func (e *env) calendar() store.Calendar {
	e.t.Helper()
	c, err := e.st.GetCalendar(e.ctx, e.key)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) lists() int { return e.srv.Stats().Requests["events.list"] }

func (e *env) wantCounts(created, updated, deleted int) {
	e.t.Helper()
	got := syncertest.Counts(e.rec.Changes())
	if got[messages.ChangeCreated] != created || got[messages.ChangeUpdated] != updated || got[messages.ChangeDeleted] != deleted {
		e.t.Fatalf("changes: got %v, want created %d updated %d deleted %d", got, created, updated, deleted)
	}
}

func (e *env) clearFaults() {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, e.base+"/emulator/v1/faults", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
}

// serviceWith returns Services whose HTTP transport calls hook after each
// response (tests inject faults between pages).
func (e *env) serviceWith(hook func(req *http.Request)) syncer.Services {
	hc := &http.Client{Transport: hookTransport{hook: hook}}
	svc, err := calendaremu.NewService(e.ctx, e.base, option.WithHTTPClient(hc))
	if err != nil {
		e.t.Fatal(err)
	}
	return syncer.ServicesFunc(func(context.Context, store.Grant) (*calendar.Service, error) { return svc, nil })
}

type hookTransport struct{ hook func(*http.Request) }

func (h hookTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil {
		h.hook(r)
	}
	return resp, err
}
