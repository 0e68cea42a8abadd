package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
)

// recordingPublisher is a small fake for the handler's logic tests; the real
// Pub/Sub path is covered by pubsub_test.go against the emulator.
type recordingPublisher struct {
	mu   sync.Mutex
	msgs []published
	err  error
}

type published struct {
	data  []byte
	attrs map[string]string
}

func (p *recordingPublisher) Publish(_ context.Context, data []byte, attrs map[string]string, _ string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.msgs = append(p.msgs, published{data, attrs})
	return nil
}

func testKeys(t testing.TB) *channeltoken.Keys {
	t.Helper()
	k, err := channeltoken.New([]config.Key{{ID: "k1", Material: bytes.Repeat([]byte{7}, 32)}})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newTestHandler(t testing.TB, pub Publisher, logs *bytes.Buffer) *Handler {
	if logs == nil {
		logs = &bytes.Buffer{}
	}
	return &Handler{
		ProjectID:      "proj",
		Verifier:       testKeys(t),
		Publisher:      pub,
		PublishTimeout: 2 * time.Second,
		Logger:         logging.New(logs, slog.LevelDebug),
	}
}

const googleChannelID = "4ba78bf0-6a47-11e2-bcfd-0800200c9a66"

// Calendar keys of the form store.CalendarKey gives (the SyncWorker refuses
// any other, and pubsub_test.go reads the published messages as it does).
const (
	calKey      = "c0123456789abcdefghijklmnop"
	otherCalKey = "c0123456789abcdefghijklmnoq"
)

// googleHeaders is the header set of the example in Google's push guide,
// stray spaces included, with our token in place of the example's.
func googleHeaders(t testing.TB, state, number string) http.Header {
	tok, err := testKeys(t).Mint(googleChannelID, calKey)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json; utf-8")
	h.Set("X-Goog-Channel-ID", googleChannelID)
	h.Set("X-Goog-Channel-Token", tok)
	h.Set("X-Goog-Channel-Expiration", "Tue, 19 Nov 2013 01:13:52 GMT")
	h.Set("X-Goog-Resource-ID", " ret08u3rv24htgh289g")
	h.Set("X-Goog-Resource-URI", "https://www.googleapis.com/calendar/v3/calendars/my_calendar@gmail.com/events")
	h.Set("X-Goog-Resource-State", " "+state)
	h.Set("X-Goog-Message-Number", number)
	return h
}

func do(h http.Handler, method string, headers http.Header, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "/", strings.NewReader(body))
	r.RemoteAddr = "203.0.113.9:4567"
	for k, v := range headers {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestGoogleExamplesPublished(t *testing.T) {
	pub := &recordingPublisher{}
	h := newTestHandler(t, pub, nil)
	for _, tc := range []struct{ state, number string }{{"sync", "1"}, {"exists", "10"}} {
		w := do(h, http.MethodPost, googleHeaders(t, tc.state, tc.number), "")
		if w.Code != http.StatusOK {
			t.Fatalf("%s: status %d", tc.state, w.Code)
		}
	}
	if len(pub.msgs) != 2 {
		t.Fatalf("published %d, want 2", len(pub.msgs))
	}
	var n messages.Notification
	if err := json.Unmarshal(pub.msgs[1].data, &n); err != nil {
		t.Fatal(err)
	}
	want := messages.Notification{
		ChannelID: googleChannelID, ResourceID: "ret08u3rv24htgh289g",
		ResourceURI:   "https://www.googleapis.com/calendar/v3/calendars/my_calendar@gmail.com/events",
		ResourceState: "exists", MessageNumber: 10, CalendarKey: calKey,
		ChannelExpiration: "Tue, 19 Nov 2013 01:13:52 GMT", ReceivedAt: n.ReceivedAt,
	}
	if n != want || n.ReceivedAt.IsZero() {
		t.Fatalf("published %+v\nwant %+v", n, want)
	}
	if a := pub.msgs[1].attrs; a["calendarKey"] != calKey || a["resourceState"] != "exists" || len(a) != 2 {
		t.Fatalf("attributes %v", a)
	}
	var raw map[string]any
	_ = json.Unmarshal(pub.msgs[0].data, &raw)
	for _, k := range []string{"channelId", "resourceId", "resourceUri", "resourceState", "messageNumber", "calendarKey", "channelExpiration", "receivedAt"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("published JSON lacks %s: %s", k, pub.msgs[0].data)
		}
	}
}

func TestStatuses(t *testing.T) {
	base := func() http.Header { return googleHeaders(t, "exists", "42") }
	with := func(k, v string) http.Header {
		h := base()
		if v == "" {
			h.Del(k)
		} else {
			h.Set(k, v)
		}
		return h
	}
	other, _ := testKeys(t).Mint("another-channel", calKey)
	cases := []struct {
		name    string
		method  string
		headers http.Header
		want    int
	}{
		{"get", http.MethodGet, base(), 405},
		{"put", http.MethodPut, base(), 405},
		{"ok", http.MethodPost, base(), 200},
		{"not_exists state", http.MethodPost, with("X-Goog-Resource-State", "not_exists"), 200},
		{"no expiration header", http.MethodPost, with("X-Goog-Channel-Expiration", ""), 200},
		{"no channel id", http.MethodPost, with("X-Goog-Channel-ID", ""), 400},
		{"channel id 65 chars", http.MethodPost, with("X-Goog-Channel-ID", strings.Repeat("a", 65)), 400},
		{"message number zero", http.MethodPost, with("X-Goog-Message-Number", "0"), 400},
		{"message number negative", http.MethodPost, with("X-Goog-Message-Number", "-3"), 400},
		{"message number text", http.MethodPost, with("X-Goog-Message-Number", "ten"), 400},
		{"message number missing", http.MethodPost, with("X-Goog-Message-Number", ""), 400},
		{"bad state", http.MethodPost, with("X-Goog-Resource-State", "deleted"), 400},
		{"no resource id", http.MethodPost, with("X-Goog-Resource-ID", ""), 400},
		{"no resource uri", http.MethodPost, with("X-Goog-Resource-URI", ""), 400},
		{"no token", http.MethodPost, with("X-Goog-Channel-Token", ""), 401},
		{"token of another channel", http.MethodPost, with("X-Goog-Channel-Token", other), 403},
		{"forged token", http.MethodPost, with("X-Goog-Channel-Token", "v=1&k=k1&c="+calKey+"&s=forged"), 403},
		{"garbage token", http.MethodPost, with("X-Goog-Channel-Token", "%%%"), 403},
	}
	for _, tc := range cases {
		pub := &recordingPublisher{}
		w := do(newTestHandler(t, pub, nil), tc.method, tc.headers, "")
		if w.Code != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, w.Code, tc.want)
		}
		if published := len(pub.msgs); (tc.want == 200) != (published == 1) {
			t.Errorf("%s: %d published with status %d", tc.name, published, w.Code)
		}
		if tc.want == 405 && w.Header().Get("Allow") != "POST" {
			t.Errorf("%s: no Allow header", tc.name)
		}
	}
}

func TestDuplicateAndOutOfOrderAllPublished(t *testing.T) {
	pub := &recordingPublisher{}
	h := newTestHandler(t, pub, nil)
	for _, n := range []string{"7", "7", "3", "12", "7"} {
		if w := do(h, http.MethodPost, googleHeaders(t, "exists", n), ""); w.Code != 200 {
			t.Fatalf("message %s: %d", n, w.Code)
		}
	}
	if len(pub.msgs) != 5 {
		t.Fatalf("published %d of 5: deduplication is the worker's job", len(pub.msgs))
	}
}

func TestPublishFailureIs503(t *testing.T) {
	pub := &recordingPublisher{err: errors.New("unavailable")}
	var logs bytes.Buffer
	w := do(newTestHandler(t, pub, &logs), http.MethodPost, googleHeaders(t, "exists", "5"), "")
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", w.Code)
	}
	if !strings.Contains(logs.String(), `"severity":"ERROR"`) || !strings.Contains(logs.String(), `"event":"publish_failed"`) {
		t.Fatalf("no ERROR line: %s", logs.String())
	}
}

func TestLargeBodyIgnored(t *testing.T) {
	pub := &recordingPublisher{}
	body := strings.Repeat("x", 1<<20)
	r := httptest.NewRequest(http.MethodPost, "/", &countingReader{r: strings.NewReader(body)})
	for k, v := range googleHeaders(t, "exists", "9") {
		r.Header[k] = v
	}
	cr := r.Body.(*countingReader)
	w := httptest.NewRecorder()
	newTestHandler(t, pub, nil).ServeHTTP(w, r)
	if w.Code != 200 || len(pub.msgs) != 1 {
		t.Fatalf("status %d, published %d", w.Code, len(pub.msgs))
	}
	if cr.n > 0 {
		t.Fatalf("handler read %d bytes of the body", cr.n)
	}
}

type countingReader struct {
	r *strings.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func (c *countingReader) Close() error { return nil }

func TestLogLines(t *testing.T) {
	var logs bytes.Buffer
	h := newTestHandler(t, &recordingPublisher{}, &logs)
	hdr := googleHeaders(t, "exists", "77")
	hdr.Set("X-Cloud-Trace-Context", "105445aa7843bc8bf206b12000100000/1;o=1")
	do(h, http.MethodPost, hdr, "")
	token := hdr.Get("X-Goog-Channel-Token")
	forged := googleHeaders(t, "exists", "78")
	forged.Set("X-Goog-Channel-Token", "v=1&k=k1&c="+calKey+"&s=SECRETFORGERY")
	do(h, http.MethodPost, forged, "")

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one line per notification, got %d:\n%s", len(lines), logs.String())
	}
	var ok, warn map[string]any
	_ = json.Unmarshal([]byte(lines[0]), &ok)
	_ = json.Unmarshal([]byte(lines[1]), &warn)
	for k, v := range map[string]any{"severity": "INFO", "event": "notification", "channelId": googleChannelID,
		"calendarKey": calKey, "resourceState": "exists", "messageNumber": 77.0,
		logging.FieldTrace: "projects/proj/traces/105445aa7843bc8bf206b12000100000"} {
		if ok[k] != v {
			t.Errorf("accepted line: %s = %v, want %v", k, ok[k], v)
		}
	}
	if _, has := ok["latencyUs"]; !has {
		t.Error("accepted line lacks latencyUs")
	}
	if warn["severity"] != "WARNING" || warn["remoteAddr"] != "203.0.113.9" || warn["event"] != "notification_rejected" {
		t.Errorf("forged line: %v", warn)
	}
	if strings.Contains(logs.String(), token) || strings.Contains(logs.String(), "SECRETFORGERY") || strings.Contains(logs.String(), "s=") {
		t.Errorf("a token reached the logs:\n%s", logs.String())
	}
}

// ParsePush looks headers up by these names directly, which is only right
// while they are in the canonical form net/http stores received headers in.
func TestHeaderNamesCanonical(t *testing.T) {
	for _, name := range []string{HeaderChannelID, HeaderChannelToken, HeaderChannelExpiration,
		HeaderMessageNumber, HeaderResourceID, HeaderResourceState, HeaderResourceURI} {
		if c := http.CanonicalHeaderKey(name); c != name {
			t.Errorf("%q is not canonical (%q)", name, c)
		}
	}
}
