package renewchannels

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/renewer"
	"github.com/calsync/calsync/shared/startup"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/testenv"
	"github.com/calsync/calsync/shared/testing/testlog"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func testConfig(t *testing.T) config.RenewChannels {
	t.Helper()
	testenv.Firestore(t)
	testenv.PubSub(t)
	project := testenv.ProjectID(t)
	_, base := calendaremu.Start(t, calendaremu.Options{})
	ps, err := pubsubx.NewClient(context.Background(), project, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	if err := pubsubx.EnsureTopic(context.Background(), ps, "notifications"); err != nil {
		t.Fatal(err)
	}
	key := func(id, c string) string {
		return id + ":" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat(c, 32)))
	}
	return config.RenewChannels{
		Common:             config.Common{ProjectID: project, LogLevel: "info"},
		Firestore:          config.Firestore{FirestoreDatabase: "(default)"},
		Calendar:           config.Calendar{CalendarEndpoint: base, CredentialPrivateKeys: key("h1", "c"), OAuthTokenURL: base + "/token", OAuthAuthURL: base + "/authorize", CalendarRateLimit: 6000},
		NotificationsTopic: "notifications",
		ChannelTokenKeys:   key("k1", "t"),
		WebhookURL:         "https://hook.example/",
		ChannelTTL:         time.Hour,
		RenewBefore:        10 * time.Minute,
		ReconcileAfter:     6 * time.Hour,
		Concurrency:        4,
	}
}

// The function built by New, as deployed: one run per request, its summary
// as JSON, the request's trace on its log lines; other methods refused.
func TestServeHTTP(t *testing.T) {
	cfg := testConfig(t)
	var logs testlog.Buffer
	h, closeFn, err := New(context.Background(), cfg, logging.New(&logs, slog.LevelInfo))
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	if _, err := lifecycle.Register(context.Background(), h.Renewer.Store, store.Calendar{CalendarID: calendaremu.DefaultUser, AuthMode: store.AuthADC}); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/", nil)
	req.Header.Set("X-Cloud-Trace-Context", "0123456789abcdef0123456789abcdef/42;o=1")
	h.ServeHTTP(rec, req)
	var sum renewer.Summary
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &sum) != nil || sum.Created != 1 || sum.Failed != 0 {
		t.Fatalf("answer %d %s", rec.Code, rec.Body)
	}
	if l := logs.String(); !strings.Contains(l, `"event":"renew_run"`) || !strings.Contains(l, "/traces/0123456789abcdef0123456789abcdef") {
		t.Errorf("logs: %s", l)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE answered %d", rec.Code)
	}
}

// A start that fails (here: a bad key list) answers 503 and logs CRITICAL;
// the next request after the backoff tries again and, the cause fixed, runs.
func TestFailedStartIsRetried(t *testing.T) {
	cfg := testConfig(t)
	good := cfg.ChannelTokenKeys
	cfg.ChannelTokenKeys = "not a key list"
	var logs testlog.Buffer
	lazy := startup.New("RenewChannels", func(ctx context.Context, logger *slog.Logger) (*Handler, error) {
		h, _, err := New(ctx, cfg, logger)
		return h, err
	})
	lazy.Logger = logging.New(&logs, slog.LevelInfo)
	lazy.FirstRetry = 50 * time.Millisecond
	// A clock of the test's own: the second request comes within the
	// backoff however slowly the machine builds (a loaded one took longer
	// than the jittered 25-75 ms).
	clock := time.Now()
	lazy.Now = func() time.Time { return clock }
	handle := startup.HTTP(lazy)
	for range 2 {
		rec := httptest.NewRecorder()
		handle(rec, httptest.NewRequest(http.MethodPost, "/", nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("broken start answered %d", rec.Code)
		}
	}
	if n := strings.Count(logs.String(), `"severity":"CRITICAL"`); n != 1 {
		t.Errorf("%d CRITICAL lines, want 1 (the second request came within the backoff): %s", n, logs.String())
	}
	cfg.ChannelTokenKeys = good
	clock = clock.Add(120 * time.Millisecond)
	rec := httptest.NewRecorder()
	handle(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("after the fix: %d %s", rec.Code, rec.Body)
	}
}
