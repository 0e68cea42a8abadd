package enroll_test

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

	"github.com/calsync/calsync/shared/channels"
	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/syncertest"
	"github.com/calsync/calsync/shared/testing/testenv"
	"github.com/calsync/calsync/shared/testing/testlog"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var (
	tokenKeys = "k1:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("t", 32)))
	privKeys  = "h1:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("h", 32)))
)

// requests records what the Enroller publishes on the notifications topic.
type requests struct {
	mu   sync.Mutex
	msgs []messages.Notification
}

func (r *requests) Publish(_ context.Context, data []byte, _ map[string]string, _ string) error {
	n, err := messages.ParseNotification(data)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, n)
	r.mu.Unlock()
	return nil
}

// states returns, per calendar key, the states asked for.
func (r *requests) states() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]string{}
	for _, n := range r.msgs {
		k := n.CalendarKey
		if n.Resource == messages.ResourceCalendarList {
			k = n.IdentityKey
		}
		out[k] = append(out[k], n.ResourceState)
	}
	return out
}

func (r *requests) reset() {
	r.mu.Lock()
	r.msgs = nil
	r.mu.Unlock()
}

// hook is the webhook of the test's channels: it records the pushes.
type hook struct {
	mu     sync.Mutex
	pushes []http.Header
	*httptest.Server
}

func (h *hook) count(channelID, state string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, p := range h.pushes {
		if p.Get("X-Goog-Channel-Id") == channelID && (state == "" || p.Get("X-Goog-Resource-State") == state) {
			n++
		}
	}
	return n
}

type env struct {
	t     *testing.T
	ctx   context.Context
	emu   *calendaremu.Server
	base  string
	st    *store.Store
	creds *credentials.Vault
	req   *requests
	hook  *hook
	logs  *testlog.Buffer
	e     *enroll.Enroller
	// ann records the lifecycle messages (each checked against its schema).
	ann *syncertest.Announcements
}

func newEnv(t *testing.T, with ...func(*config.Calendar)) *env {
	t.Helper()
	testenv.Firestore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	fs, err := firestore.NewClient(ctx, testenv.ProjectID(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	emu, base := calendaremu.Start(t, calendaremu.Options{PushRetryBaseDelay: 20 * time.Millisecond})
	st := store.New(fs)
	logs := &testlog.Buffer{}
	logger := logging.New(logs, slog.LevelDebug)
	access := newAccess(t, base, st, logger, with...)
	ann := &syncertest.Announcements{}
	access.Lifecycle.Announcer = ann
	h := &hook{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.pushes = append(h.pushes, r.Header.Clone())
		h.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(h.Close)
	keys, err := channeltoken.Parse(tokenKeys)
	if err != nil {
		t.Fatal(err)
	}
	mgr := &channels.Manager{Store: st, Calendars: access.Calendars, Tokens: keys, WebhookURL: h.URL, TTL: time.Hour, Logger: logger}
	access.Lifecycle.Stopper = mgr
	req := &requests{}
	e := &enroll.Enroller{Store: st, Calendars: access.Calendars, Channels: mgr, Requests: req, Lifecycle: access.Lifecycle, Revoker: access.Calendars,
		Directory: enroll.DirectoryClients{Tokens: access.Calendars, Endpoint: base}, RenewBefore: 10 * time.Minute, Logger: logger}
	return &env{t: t, ctx: ctx, emu: emu, base: base, st: st, creds: access.Credentials, req: req, hook: h, logs: logs, e: e, ann: ann}
}

// newAccess is one process's Calendar clients and lifecycle owner (its own token
// cache: another instance's).
func newAccess(t *testing.T, base string, st *store.Store, logger *slog.Logger, with ...func(*config.Calendar)) *credentials.Access {
	t.Helper()
	cfg := config.Calendar{CalendarEndpoint: base, CredentialPrivateKeys: privKeys,
		OAuthClientID: "cid", OAuthClientSecret: "secret", OAuthTokenURL: base + "/token", OAuthRevokeURL: base + "/revoke", CalendarRateLimit: 600}
	for _, f := range with {
		f(&cfg)
	}
	access, err := credentials.NewAccess(cfg, st, logger)
	if err != nil {
		t.Fatal(err)
	}
	return access
}

// otherInstance is the Enroller as another instance runs it: the same
// store, channels and topic, its own Calendar clients (no cached token).
func (v *env) otherInstance() *enroll.Enroller {
	access := newAccess(v.t, v.base, v.st, v.e.Logger)
	access.Lifecycle.Stopper = v.e.Channels
	other := *v.e
	other.Calendars, other.Lifecycle = access.Calendars, access.Lifecycle
	return &other
}

// calendars returns the registered calendars by calendar id.
func (v *env) calendars() map[string]store.Calendar {
	v.t.Helper()
	all, err := v.st.AllCalendars(v.ctx)
	if err != nil {
		v.t.Fatal(err)
	}
	out := map[string]store.Calendar{}
	for _, c := range all {
		out[c.CalendarID] = c
	}
	return out
}

// liveChannels returns the emulator's live channels by calendar (or list) id.
func (v *env) liveChannels() map[string]int {
	out := map[string]int{}
	for _, c := range v.emu.Channels() {
		if !c.Stopped && !c.Expired {
			out[c.Calendar]++
		}
	}
	return out
}

// listChannelID is the channel id of an identity's live list channel.
func (v *env) listChannelID(key string) string {
	v.t.Helper()
	chans, err := v.st.ChannelsOfCalendar(v.ctx, key)
	if err != nil {
		v.t.Fatal(err)
	}
	for _, c := range chans {
		if c.State == store.ChannelActive && c.Resource == channeltoken.ResourceCalendarList {
			return c.ChannelID
		}
	}
	return ""
}

// listPush waits for a push on the list channel after the n-th and hands
// the notification the Webhook would publish to the Enroller.
func (v *env) listPush(key, channelID string, after int) {
	v.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for v.hook.count(channelID, "exists") <= after {
		if time.Now().After(deadline) {
			v.t.Fatalf("no push on the list channel %s (had %d)", channelID, after)
		}
		time.Sleep(10 * time.Millisecond)
	}
	n := messages.Notification{Resource: messages.ResourceCalendarList, IdentityKey: key, ChannelID: channelID,
		ResourceState: messages.StateExists, ReceivedAt: time.Now().UTC()}
	if err := v.e.HandleListNotification(v.ctx, n); err != nil {
		v.t.Fatal(err)
	}
}

func (v *env) logLines(event string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(v.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["event"] == event {
			out = append(out, m)
		}
	}
	return out
}
