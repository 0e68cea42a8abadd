package syncer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
	"github.com/calsync/calsync/shared/testing/testlog"
)

// gate stalls every Firestore call and publish of one worker while closed,
// the way a paused instance stalls: nothing it sends arrives.
type gate struct {
	mu     sync.Mutex
	closed chan struct{} // nil: open
}

func (g *gate) close() { g.mu.Lock(); g.closed = make(chan struct{}); g.mu.Unlock() }
func (g *gate) open() {
	g.mu.Lock()
	if g.closed != nil {
		close(g.closed)
		g.closed = nil
	}
	g.mu.Unlock()
}

func (g *gate) isClosed() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.closed != nil }

func (g *gate) wait(ctx context.Context) error {
	g.mu.Lock()
	c := g.closed
	g.mu.Unlock()
	if c == nil {
		return nil
	}
	select {
	case <-c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) client(t *testing.T, ctx context.Context, project string) *firestore.Client {
	t.Helper()
	return interceptedClient(t, ctx, project, func(ctx context.Context, method string, req any, call func() error) error {
		if err := g.wait(ctx); err != nil {
			return err
		}
		return call()
	})
}

// interceptedClient is a Firestore client (on the emulator) whose every call
// goes through around: one worker's view of the network.
func interceptedClient(t testing.TB, ctx context.Context, project string, around func(ctx context.Context, method string, req any, call func() error) error) *firestore.Client {
	return interceptedStreams(t, ctx, project, around, nil)
}

// interceptedStreams is interceptedClient whose streams also pass through wrap.
func interceptedStreams(t testing.TB, ctx context.Context, project string, around func(ctx context.Context, method string, req any, call func() error) error,
	wrap func(method string, s grpc.ClientStream) grpc.ClientStream) *firestore.Client {
	t.Helper()
	return interceptedAt(t, ctx, project, os.Getenv("FIRESTORE_EMULATOR_HOST"), around, wrap)
}

// interceptedAt is interceptedStreams talking to addr (a fault proxy, say)
// instead of the emulator.
func interceptedAt(t testing.TB, ctx context.Context, project, addr string, around func(ctx context.Context, method string, req any, call func() error) error,
	wrap func(method string, s grpc.ClientStream) grpc.ClientStream) *firestore.Client {
	t.Helper()
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(emulatorOwner{}),
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return around(ctx, method, req, func() error { return invoker(ctx, method, req, reply, cc, opts...) })
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			var s grpc.ClientStream
			err := around(ctx, method, nil, func() error {
				var err error
				s, err = streamer(ctx, desc, cc, method, opts...)
				return err
			})
			if err == nil && wrap != nil {
				s = wrap(method, s)
			}
			return s, err
		}))
	if err != nil {
		t.Fatal(err)
	}
	fs, err := firestore.NewClient(ctx, project, option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	return fs
}

// emulatorOwner is what the Firestore client sends the emulator: full rights.
type emulatorOwner struct{}

func (emulatorOwner) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer owner"}, nil
}
func (emulatorOwner) RequireTransportSecurity() bool { return false }

// gatedPublisher publishes through the gate.
type gatedPublisher struct {
	g    *gate
	next syncer.Publisher
}

func (p gatedPublisher) PublishAll(ctx context.Context, key string, msgs []pubsubx.Message) error {
	if err := p.g.wait(ctx); err != nil {
		return err
	}
	return p.next.PublishAll(ctx, key, msgs)
}

// A worker stalls in the middle of a sync (its Firestore calls and publishes
// stop getting through, as when its instance is paused). It stops acting on
// the lease before the lease can be taken over (WARNING lease_lost); the next
// worker takes over and syncs; when the stalled one resumes it publishes
// nothing and writes nothing, and the feed's last word on each event is its
// current version.
func TestStalledHolderStopsBeforeTakeover(t *testing.T) {
	e := newEnv(t)
	ev := e.insert("v1")
	e.mustNotify(e.syncer(nil), messages.StateSync)

	g := &gate{}
	var logs testlog.Buffer
	stalled := e.syncer(func(o *syncer.Options) {
		o.Store = store.New(g.client(t, e.ctx, e.project))
		o.Publisher = gatedPublisher{g: g, next: e.rec}
		o.LeaseDuration = 2 * time.Second
		o.Logger = logging.New(&logs, slog.LevelDebug)
		o.Services = e.serviceWith(func(r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/events") {
				g.close() // stall right after the listing, before anything is written
			}
		})
	})
	e.update(ev.Id, "v2")
	done := make(chan error, 1)
	go func() { done <- e.notify(stalled, messages.StateExists) }()
	waitFor(t, func() bool { return logs.Count("WARNING", logging.EventLeaseLost) >= 1 })
	// Its lease runs out; another worker takes over and syncs v3.
	waitFor(t, func() bool { return !e.calendar().LeaseUntil.After(time.Now()) })
	v3 := e.update(ev.Id, "v3")
	e.mustNotify(e.syncer(nil), messages.StateExists)
	g.open() // the stalled worker resumes
	if err := <-done; err != nil {
		t.Fatalf("the stalled worker's message: %v (want ack: the new holder covered it)", err)
	}
	e.assertMirror()
	last := map[string]messages.Change{}
	for _, c := range e.rec.Changes() {
		last[c.EventID] = c
	}
	if c := last[ev.Id]; c.Etag != v3.Etag {
		t.Fatalf("the feed's last message for the event is %s %s, want v3 %s", c.Change, c.Etag, v3.Etag)
	}
	if n := strings.Count(logs.String(), `"event":"sync"`); n != 0 {
		t.Errorf("the stalled worker completed %d rounds", n)
	}
}

// stubCalendar answers events.list with the given items (one page): a
// Calendar that returns what Google's documented API never would in this
// order, to test the guard. (Everything else runs on the emulators.)
func stubCalendar(t *testing.T, items []*calendar.Event) syncer.Services {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(calendar.Events{Kind: "calendar#events", Items: items, NextSyncToken: "stub-token", TimeZone: "UTC"})
	}))
	t.Cleanup(srv.Close)
	svc, err := calendar.NewService(context.Background(), option.WithEndpoint(srv.URL+"/calendar/v3/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	return syncer.ServicesFunc(func(context.Context, store.Grant) (*calendar.Service, error) { return svc, nil })
}

// A listing that returns an older version of an event than the mirror holds
// (or an older tombstone) changes nothing and announces nothing: the mirror
// and the feed never go back.
func TestOlderVersionNeverWritten(t *testing.T) {
	e := newEnv(t)
	ev := e.insert("v1")
	gone := e.insert("kept")
	e.mustNotify(e.syncer(nil), messages.StateSync)
	v2 := e.update(ev.Id, "v2")
	e.mustNotify(e.syncer(nil), messages.StateExists)
	e.rec.Reset()

	old := *ev // v1: older updated, older etag
	oldTomb := &calendar.Event{Id: gone.Id, Etag: `"1"`, Status: "cancelled", Updated: "2000-01-01T00:00:00.000Z"}
	var rep syncer.Report
	s := e.syncer(func(o *syncer.Options) {
		o.Services = stubCalendar(t, []*calendar.Event{&old, oldTomb})
		o.OnSync = func(r syncer.Report) { rep = r }
	})
	e.mustNotify(s, messages.StateReconcile)
	if rep.Stale != 2 || rep.Written != 0 || rep.Deleted != 0 || len(e.rec.Changes()) != 0 {
		t.Fatalf("report %+v, %d changes announced", rep, len(e.rec.Changes()))
	}
	m, _ := e.st.GetEvents(e.ctx, e.key, []string{ev.Id, gone.Id})
	if m[ev.Id].Etag != v2.Etag || !m[gone.Id].Exists {
		t.Fatalf("mirror after an older listing: %+v", m)
	}
}

// Events Firestore cannot hold as Google sent them are stored as far as they
// can be, flagged, logged at ERROR with their id and counted; the rest of the
// page is synced, the change feed carries the whole events, and eventCount
// counts them.
func TestUnstorableEventsIsolated(t *testing.T) {
	e := newEnv(t)
	var logs testlog.Buffer
	var rep syncer.Report
	s := e.syncer(func(o *syncer.Options) {
		o.Logger = logging.New(&logs, slog.LevelDebug)
		o.OnSync = func(r syncer.Report) { rep = r }
	})
	e.insert("fine")
	// Valid for Google (year 9999 in its zone), year 10000 in UTC: past
	// Firestore's last timestamp.
	late, err := e.svc.Events.Insert(e.calID, &calendar.Event{Summary: "the end of time",
		Start: &calendar.EventDateTime{DateTime: "9999-12-31T22:00:00-05:00"},
		End:   &calendar.EventDateTime{DateTime: "9999-12-31T23:30:00-05:00"}}).Do()
	if err != nil {
		t.Fatal(err)
	}
	early, err := e.svc.Events.Insert(e.calID, &calendar.Event{Summary: "the dawn of time",
		Start: &calendar.EventDateTime{DateTime: "0001-01-01T05:00:00+09:00"},
		End:   &calendar.EventDateTime{DateTime: "0001-01-01T06:00:00+09:00"}}).Do()
	if err != nil {
		t.Fatal(err)
	}
	e.mustNotify(s, messages.StateSync)
	if rep.Problems != 2 || logs.Count("ERROR", logging.EventUnstorable) != 2 {
		t.Fatalf("report %+v; logs:\n%s", rep, logs.String())
	}
	for _, id := range []string{late.Id, early.Id} {
		snap, err := e.st.Events(e.key).Doc(id).Get(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if snap.Data()[store.FieldProblem] != store.ProblemTimeOutOfRange || snap.Data()["etag"] == nil {
			t.Errorf("%s stored as %v", id, snap.Data())
		}
		if !strings.Contains(logs.String(), `"eventId":"`+id+`"`) {
			t.Errorf("no ERROR line names %s", id)
		}
	}
	e.assertMirror() // every event, by id and etag; the feed replays to it
	for _, c := range e.rec.Changes() {
		if c.EventID == late.Id && !strings.Contains(string(c.Event), "9999-12-31T22:00:00-05:00") {
			t.Errorf("the change message lost the event: %s", c.Event)
		}
	}
	if c := e.calendar(); c.EventCount != 3 {
		t.Errorf("eventCount %d, want 3", c.EventCount)
	}

	// A document Firestore refuses outright (a property key over its limit)
	// is stored in its minimal form, flagged "rejected"; the page goes on.
	weird := &calendar.Event{Id: "weird00001", Etag: `"5"`, Status: "confirmed", Summary: "weird", Updated: "2026-11-01T00:00:00.000Z",
		Start: &calendar.EventDateTime{DateTime: "2026-12-01T10:00:00Z"}, End: &calendar.EventDateTime{DateTime: "2026-12-01T11:00:00Z"},
		ExtendedProperties: &calendar.EventExtendedProperties{Private: map[string]string{strings.Repeat("k", 1600): "v"}}}
	plain := &calendar.Event{Id: "plain00001", Etag: `"6"`, Status: "confirmed", Summary: "plain", Updated: "2026-11-01T00:00:00.000Z",
		Start: &calendar.EventDateTime{DateTime: "2026-12-01T10:00:00Z"}, End: &calendar.EventDateTime{DateTime: "2026-12-01T11:00:00Z"}}
	logs = testlog.Buffer{}
	stub := e.syncer(func(o *syncer.Options) {
		o.Services = stubCalendar(t, []*calendar.Event{weird, plain})
		o.Logger = logging.New(&logs, slog.LevelDebug)
		o.OnSync = func(r syncer.Report) { rep = r }
	})
	e.mustNotify(stub, messages.StateReconcile)
	m, _ := e.st.GetEvents(e.ctx, e.key, []string{weird.Id, plain.Id})
	snap, _ := e.st.Events(e.key).Doc(weird.Id).Get(e.ctx)
	if !m[plain.Id].Exists || !m[weird.Id].Exists || m[weird.Id].Etag != weird.Etag ||
		!strings.HasPrefix(fmt.Sprint(snap.Data()[store.FieldProblem]), store.ProblemRejected) {
		t.Fatalf("after a refused document: %+v %v", m, snap.Data())
	}
	if rep.Problems != 1 || logs.Count("ERROR", logging.EventUnstorable) != 1 {
		t.Errorf("report %+v; logs:\n%s", rep, logs.String())
	}
	if c := e.calendar(); c.EventCount != 5 {
		t.Errorf("eventCount %d, want 5", c.EventCount)
	}
}

// A deletion's tombstone carries no `updated` and no `sequence` (Google
// promises its id and status only): it still deletes an event whose stored
// version has a sequence (its time was moved). Found by the multi-process
// chaos test.
func TestTombstoneDeletesAMovedEvent(t *testing.T) {
	e := newEnv(t)
	s := e.syncer(nil)
	ev := e.insert("moved, then deleted")
	e.mustNotify(s, messages.StateSync)
	moved, err := e.svc.Events.Patch(e.calID, ev.Id, &calendar.Event{
		Start: &calendar.EventDateTime{DateTime: "2026-12-02T10:00:00Z"}, End: &calendar.EventDateTime{DateTime: "2026-12-02T11:00:00Z"}}).Do()
	if err != nil || moved.Sequence == 0 {
		t.Fatalf("move: sequence %d, %v", moved.Sequence, err)
	}
	e.mustNotify(s, messages.StateExists)
	e.remove(ev.Id)
	e.mustNotify(s, messages.StateExists)
	e.assertMirror()
	e.wantCounts(1, 1, 1)
}
