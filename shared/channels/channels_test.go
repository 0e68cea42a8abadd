package channels

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const tokenKeys = "k1:c3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3M="

// push is one notification received by the test webhook.
type push struct {
	channel, state, token string
	recordFound           bool
}

// hook is a webhook that records pushes and checks the channel record exists.
type hook struct {
	mu    sync.Mutex
	got   []push
	st    *store.Store
	srv   *httptest.Server
	keys  *channeltoken.Keys
	badTk int
}

func newHook(t *testing.T, st *store.Store) *hook {
	h := &hook{st: st}
	h.keys, _ = channeltoken.Parse(tokenKeys)
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Goog-Channel-ID")
		_, err := h.st.GetChannel(r.Context(), id)
		p := push{channel: id, state: r.Header.Get("X-Goog-Resource-State"), token: r.Header.Get("X-Goog-Channel-Token"), recordFound: err == nil}
		h.mu.Lock()
		if _, err := h.keys.Verify(id, p.token); err != nil {
			h.badTk++
		}
		h.got = append(h.got, p)
		h.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) count(channel, state string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, p := range h.got {
		if p.channel == channel && p.state == state {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type fixture struct {
	fs   *firestore.Client
	st   *store.Store
	emu  *calendaremu.Server
	base string
	hook *hook
	m    *Manager
	cal  store.Calendar
}

func setup(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	testenv.Firestore(t)
	fs, err := firestore.NewClient(ctx, testenv.ProjectID(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	emu, base := calendaremu.Start(t, calendaremu.Options{PushRetryBaseDelay: 50 * time.Millisecond})
	st := store.New(fs)
	h := newHook(t, st)
	keys, _ := channeltoken.Parse(tokenKeys)
	m := &Manager{Store: st, Calendars: calclient.New(calclient.Options{Endpoint: base}), Tokens: keys,
		WebhookURL: h.srv.URL, TTL: time.Hour, Logger: slog.New(slog.DiscardHandler), Namespace: Namespace("p", "calsync")}
	cal := store.Calendar{CalendarID: calendaremu.DefaultUser, AuthMode: store.AuthADC, Status: store.StatusActive}
	if _, err := lifecycle.Register(ctx, st, cal); err != nil {
		t.Fatal(err)
	}
	return &fixture{fs: fs, st: st, emu: emu, base: base, hook: h, m: m, cal: cal}
}

func (f *fixture) insertEvent(t *testing.T) {
	t.Helper()
	svc, _ := calendaremu.NewService(context.Background(), f.base)
	if _, err := svc.Events.Insert(f.cal.CalendarID, &calendar.Event{Summary: "e",
		Start: &calendar.EventDateTime{Date: "2031-01-01"}, End: &calendar.EventDateTime{Date: "2031-01-02"}}).Do(); err != nil {
		t.Fatal(err)
	}
}

func emuChannel(emu *calendaremu.Server, id string) (calendaremu.ChannelInfo, bool) {
	for _, c := range emu.Channels() {
		if c.ID == id {
			return c, true
		}
	}
	return calendaremu.ChannelInfo{}, false
}

func TestWatchAndStop(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	key := store.CalendarKey(f.cal.CalendarID)
	ch, err := f.m.Watch(ctx, f.cal, "")
	if err != nil {
		t.Fatal(err)
	}
	epoch := calendarOf(t, f.st, key).ChannelEpoch
	if epoch == "" || ch.ChannelID != RootID(f.m.Namespace, key, epoch) || ch.State != store.ChannelActive || ch.ResourceID == "" || ch.ResourceURI == "" {
		t.Fatalf("channel %+v (epoch %q)", ch, epoch)
	}
	rec, err := f.st.GetChannel(ctx, ch.ChannelID)
	if err != nil || rec.State != store.ChannelActive || rec.Key != key || !rec.Expiration.Equal(ch.Expiration) || rec.ExpireAt.Before(rec.Expiration) {
		t.Fatalf("record %+v %v", rec, err)
	}
	if d := time.Until(rec.Expiration); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("expiration in %s, want the 1h TTL asked", d)
	}
	// The first message (sync) found the record already written.
	waitFor(t, "sync message", func() bool { return f.hook.count(ch.ChannelID, "sync") == 1 })
	f.hook.mu.Lock()
	if !f.hook.got[0].recordFound || f.hook.badTk != 0 {
		t.Errorf("sync push: record found %v, bad tokens %d", f.hook.got[0].recordFound, f.hook.badTk)
	}
	f.hook.mu.Unlock()

	// The next id is taken by a live channel: busy.
	if _, err := f.m.Watch(ctx, f.cal, ""); !errors.Is(err, ErrBusy) {
		t.Fatalf("second watch from root: %v", err)
	}

	if err := f.m.Stop(ctx, f.cal.Grant(), ch); err != nil {
		t.Fatal(err)
	}
	if c, _ := emuChannel(f.emu, ch.ChannelID); !c.Stopped {
		t.Error("not stopped at the emulator")
	}
	rec, _ = f.st.GetChannel(ctx, ch.ChannelID)
	if rec.State != store.ChannelStopped || rec.StoppedAt.IsZero() || time.Until(rec.ExpireAt) < 71*time.Hour {
		t.Errorf("stopped record %+v", rec)
	}
	// Stopping again: 404 counts as stopped.
	if err := f.m.Stop(ctx, f.cal.Grant(), ch); err != nil {
		t.Errorf("second stop: %v", err)
	}
	// A run that read the calendar before the chain started finds its
	// epoch moved: busy. Watching after the stopped root continues the chain.
	if _, err := f.m.Watch(ctx, f.cal, ""); !errors.Is(err, ErrBusy) {
		t.Fatalf("new chain from a stale read: %v", err)
	}
	ch2, err := f.m.Watch(ctx, f.cal, ch.ChannelID)
	if err != nil || ch2.ChannelID != SuccessorID(ch.ChannelID) {
		t.Fatalf("re-watch: %v %+v", err, ch2)
	}
	// A failed watch spends its id (record expired).
	f.emu.FailNext("events.watch", 1, 400, "invalid")
	if _, err := f.m.Watch(ctx, f.cal, ch2.ChannelID); err == nil {
		t.Fatal("want watch error")
	}
	if rec, _ := f.st.GetChannel(ctx, SuccessorID(ch2.ChannelID)); rec.State != store.ChannelExpired {
		t.Errorf("failed watch left %s", rec.State)
	}
	// Retryable errors are retried.
	f.emu.FailNext("channels.stop", 2, 503, "backendError")
	if err := f.m.Stop(ctx, f.cal.Grant(), ch2); err != nil {
		t.Errorf("stop after 2x503: %v", err)
	}
}

func TestRenewOverlap(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	key := store.CalendarKey(f.cal.CalendarID)
	old, err := f.m.Watch(ctx, f.cal, "")
	if err != nil {
		t.Fatal(err)
	}
	var newID string
	f.m.afterWatch = func(o, n store.Channel) {
		newID = n.ChannelID
		// The new channel is active and the old one still live: a change now
		// reaches the webhook through both.
		if rec, _ := f.st.GetChannel(ctx, n.ChannelID); rec.State != store.ChannelActive {
			t.Errorf("new channel %s during overlap", rec.State)
		}
		if c, _ := emuChannel(f.emu, o.ChannelID); c.Stopped {
			t.Error("old channel stopped before the new one was active")
		}
		f.insertEvent(t)
		waitFor(t, "exists on both channels", func() bool {
			return f.hook.count(o.ChannelID, "exists") == 1 && f.hook.count(n.ChannelID, "exists") == 1
		})
	}
	chans, _ := f.st.ChannelsOfCalendar(ctx, key)
	out, err := f.m.Ensure(ctx, key, &f.cal, chans, 2*time.Hour) // 1h TTL < 2h window: renew now
	if err != nil || !out.Renewed || out.Created || out.Stopped != 0 {
		t.Fatalf("ensure: %+v %v", out, err)
	}
	if newID != SuccessorID(old.ChannelID) {
		t.Fatalf("new id %s", newID)
	}
	f.m.afterWatch = nil
	if c, _ := emuChannel(f.emu, old.ChannelID); !c.Stopped {
		t.Error("old channel not stopped after renewal")
	}
	f.insertEvent(t)
	waitFor(t, "exists on the new channel", func() bool { return f.hook.count(newID, "exists") == 2 })
	time.Sleep(100 * time.Millisecond)
	if n := f.hook.count(old.ChannelID, "exists"); n != 1 {
		t.Errorf("old channel delivered %d after its stop", n)
	}
	// Nothing to do on a fresh channel (1 h left: not due in a 30 min
	// window, but inside the 6 h at-risk window, so reported).
	chans, _ = f.st.ChannelsOfCalendar(ctx, key)
	if out, err := f.m.Ensure(ctx, key, &f.cal, chans, 30*time.Minute); err != nil || out != (Outcome{ExpiringSoon: true}) {
		t.Errorf("second ensure: %+v %v", out, err)
	}
	f.m.TTL = 7 * time.Hour
	if out, err := f.m.Ensure(ctx, key, &f.cal, chans, 2*time.Hour); err != nil || !out.Renewed || out.ExpiringSoon {
		t.Errorf("renewal to 7 h: %+v %v", out, err)
	}
	chans, _ = f.st.ChannelsOfCalendar(ctx, key)
	if out, err := f.m.Ensure(ctx, key, &f.cal, chans, 2*time.Hour); err != nil || out != (Outcome{}) {
		t.Errorf("7 h channel: %+v %v", out, err)
	}
}

func TestEnsureRepairsAndStopsOrphans(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	key := store.CalendarKey(f.cal.CalendarID)
	short := *f.m
	short.TTL = time.Second
	first, err := short.Watch(ctx, f.cal, "")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	chans, _ := f.st.ChannelsOfCalendar(ctx, key)
	out, err := f.m.Ensure(ctx, key, &f.cal, chans, 10*time.Minute)
	if err != nil || !out.Created || out.Expired != 1 {
		t.Fatalf("repair: %+v %v", out, err)
	}
	if rec, _ := f.st.GetChannel(ctx, first.ChannelID); rec.State != store.ChannelExpired || rec.ExpireAt.IsZero() {
		t.Errorf("expired record %+v", rec)
	}
	// A duplicate live channel (made outside the chain) is stopped, the newest kept.
	chans, _ = f.st.ChannelsOfCalendar(ctx, key)
	dup, err := f.m.Watch(ctx, f.cal, "dup-seed")
	if err != nil {
		t.Fatal(err)
	}
	// Make the chained one the newest by timestamps: the duplicate is older.
	f.fs.Collection(store.CollChannels).Doc(dup.ChannelID).Update(ctx, []firestore.Update{{Path: "createdAt", Value: time.Now().Add(-time.Hour)}})
	chans, _ = f.st.ChannelsOfCalendar(ctx, key)
	out, err = f.m.Ensure(ctx, key, &f.cal, chans, 10*time.Minute)
	if err != nil || out.Stopped != 1 || out.Created || out.Renewed {
		t.Fatalf("duplicate: %+v %v", out, err)
	}
	if c, _ := emuChannel(f.emu, dup.ChannelID); !c.Stopped {
		t.Error("duplicate not stopped")
	}
	// Unwatched calendar: its channel is an orphan.
	f.cal.Status = store.StatusUnwatched
	chans, _ = f.st.ChannelsOfCalendar(ctx, key)
	out, err = f.m.Ensure(ctx, key, &f.cal, chans, 10*time.Minute)
	if err != nil || out.Stopped != 1 {
		t.Fatalf("orphan: %+v %v", out, err)
	}
	for _, c := range f.emu.Channels() {
		if !c.Stopped && !c.Expired {
			t.Errorf("live channel left: %+v", c)
		}
	}
	// A pending record of a run that died is closed (and its id skipped).
	f.cal.Status = store.StatusActive
	chans, _ = f.st.ChannelsOfCalendar(ctx, key)
	latest := chans[0]
	for _, c := range chans {
		if c.CreatedAt.After(latest.CreatedAt) {
			latest = c
		}
	}
	dead := store.Channel{ChannelID: SuccessorID(latest.ChannelID), Key: key, CalendarID: f.cal.CalendarID,
		State: store.ChannelPending, CreatedAt: time.Now().Add(-time.Hour)}
	if err := f.st.CreateChannel(ctx, dead); err != nil {
		t.Fatal(err)
	}
	chans, _ = f.st.ChannelsOfCalendar(ctx, key)
	out, err = f.m.Ensure(ctx, key, &f.cal, chans, 10*time.Minute)
	if err != nil || !out.Created || out.Expired != 1 {
		t.Fatalf("abandoned pending: %+v %v", out, err)
	}
	// A young pending record means another run is at work: busy.
	young := store.Channel{ChannelID: "young-" + strings.Repeat("x", 4), Key: key, State: store.ChannelPending, CreatedAt: time.Now()}
	f.st.CreateChannel(ctx, young)
	chans, _ = f.st.ChannelsOfCalendar(ctx, key)
	if out, _ := f.m.Ensure(ctx, key, &f.cal, chans, 2*time.Hour); !out.Busy || out.Renewed {
		t.Errorf("young pending: %+v", out)
	}
}

func calendarOf(t *testing.T, st *store.Store, key string) store.Calendar {
	t.Helper()
	c, err := st.GetCalendar(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
