package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
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
	"golang.org/x/time/rate"
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
		ProjectID:       "proj",
		Verifier:        testKeys(t),
		Publisher:       pub,
		PublishTimeout:  2 * time.Second,
		Logger:          logging.New(logs, slog.LevelDebug),
		ExpiryGrace:     time.Hour,
		UnknownKeyRetry: time.Hour,
		seen:            newSeen(),
	}
}

// testExpiration is when the test channels end: the tokens googleHeaders
// mints are valid (with the grace) until then.
var testExpiration = time.Now().Add(24 * time.Hour)

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
	tok, err := testKeys(t).Mint(googleChannelID, calKey, testExpiration)
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
	other, _ := testKeys(t).Mint("another-channel", calKey, testExpiration)
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
		{"message number the largest int64", http.MethodPost, with("X-Goog-Message-Number", "9223372036854775807"), 200},
		{"message number 20 digits", http.MethodPost, with("X-Goog-Message-Number", "10000000000000000000"), 400},
		{"message number 60 KB", http.MethodPost, with("X-Goog-Message-Number", strings.Repeat("9", 60000)), 400},
		{"bad state", http.MethodPost, with("X-Goog-Resource-State", "deleted"), 400},
		// The state header is not signed: a captured push edited to carry one
		// of calsync's own request states is refused, never published (a
		// purge, a full resync or a reconcile is not Google's to ask).
		{"purge state", http.MethodPost, with("X-Goog-Resource-State", messages.StatePurge), 400},
		{"full resync state", http.MethodPost, with("X-Goog-Resource-State", messages.StateFullResync), 400},
		{"reconcile state", http.MethodPost, with("X-Goog-Resource-State", messages.StateReconcile), 400},
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

// Duplicates are answered 200 (Google must not retry them) and not
// published again: a message number this instance published is covered by
// that publish's sync. A late arrival of a lower number is published (one
// extra sync at most): numbers are not signed, so never a maximum.
func TestDuplicateAndOutOfOrder(t *testing.T) {
	pub := &recordingPublisher{}
	var logs bytes.Buffer
	h := newTestHandler(t, pub, &logs)
	for _, n := range []string{"7", "7", "3", "12", "7"} {
		if w := do(h, http.MethodPost, googleHeaders(t, "exists", n), ""); w.Code != 200 {
			t.Fatalf("message %s: %d", n, w.Code)
		}
	}
	nums := publishedNumbers(pub)
	if fmt.Sprint(nums) != "[7 3 12]" {
		t.Fatalf("published %v, want [7 3 12]", nums)
	}
	if c := strings.Count(logs.String(), `"event":"notification_duplicate"`); c != 2 {
		t.Fatalf("%d notification_duplicate lines, want 2:\n%s", c, logs.String())
	}
	// A failed publish is not remembered: Google's retry of it goes out.
	pub.err = errors.New("down")
	if w := do(h, http.MethodPost, googleHeaders(t, "exists", "13"), ""); w.Code != 503 {
		t.Fatalf("publish failure: %d", w.Code)
	}
	pub.err = nil
	if w := do(h, http.MethodPost, googleHeaders(t, "exists", "13"), ""); w.Code != 200 || len(pub.msgs) != 4 {
		t.Fatalf("the retry of a push answered 503 was not published: %d, %d published", w.Code, len(pub.msgs))
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

// TestRejectedPushLogBounded: what a forger writes reaches the log clipped
// and escaped, and the address logged is the one Google's front end appends
// (the last X-Forwarded-For hop), not the first, which the caller chose.
func TestRejectedPushLogBounded(t *testing.T) {
	var logs bytes.Buffer
	h := newTestHandler(t, &recordingPublisher{}, &logs)
	huge := strings.Repeat("A", 60000)
	cases := []http.Header{}
	for _, mod := range []func(http.Header){
		func(h http.Header) { h.Set(HeaderChannelID, huge) },                              // 400: too long
		func(h http.Header) { h.Set(HeaderChannelID, huge+"\n{\"severity\":\"ERROR\"}") }, // 400, with a forged line
		func(h http.Header) { h.Set(HeaderChannelToken, "v=1&k=k1&c=x&s="+huge) },         // 403
		func(h http.Header) { h.Set(HeaderMessageNumber, huge) },                          // 400, quoted in the reason
		func(h http.Header) { h.Set(HeaderResourceState, "\x1b[2J"+huge) },                // 400, terminal escape
	} {
		hdr := googleHeaders(t, "exists", "5")
		mod(hdr)
		hdr.Set("X-Forwarded-For", "6.6.6.6, "+huge+"\u202e, 203.0.113.7")
		cases = append(cases, hdr)
	}
	spoofedOnly := googleHeaders(t, "exists", "5")
	spoofedOnly.Set(HeaderChannelToken, "v=1&k=k1&c=x&s=forged")
	spoofedOnly["X-Forwarded-For"] = []string{"6.6.6.6", "198.51.100.4"} // two header lines: the last one's last hop
	cases = append(cases, spoofedOnly)
	for i := range 20 {
		hdr := cases[i%len(cases)]
		if w := do(h, http.MethodPost, hdr, ""); w.Code < 400 || w.Code >= 500 {
			t.Fatalf("forged push %d answered %d", i, w.Code)
		}
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 20 {
		t.Fatalf("%d log lines for 20 forged pushes", len(lines))
	}
	for i, line := range lines {
		if len(line) > 1024 {
			t.Errorf("line %d is %d bytes: %.200s...", i, len(line), line)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d is not one JSON object: %v", i, err)
		}
		want := "203.0.113.7"
		if i%len(cases) == len(cases)-1 {
			want = "198.51.100.4"
		}
		if m["remoteAddr"] != want {
			t.Errorf("line %d: remoteAddr %q, want %q (the hop Google's front end appends)", i, m["remoteAddr"], want)
		}
		for _, k := range []string{"channelId", "reason", "remoteAddr"} {
			v, _ := m[k].(string)
			if len(v) > logging.MaxValueBytes {
				t.Errorf("line %d: %s is %d bytes", i, k, len(v))
			}
			for _, c := range []byte(strings.TrimSuffix(v, "…")) {
				if c < 0x20 || c >= 0x7f {
					t.Errorf("line %d: %s keeps byte %#x: %q", i, k, c, v)
					break
				}
			}
		}
	}
	if strings.Contains(logs.String(), "6.6.6.6") {
		t.Error("the caller-written first X-Forwarded-For hop reached the log")
	}
}

// logEvents counts the log lines of each event.
func logEvents(logs *bytes.Buffer) map[string]int {
	out := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out[fmt.Sprint(m["event"])]++
		}
	}
	return out
}

// A push carries its channel's expiration in the signed token: once that is
// past by more than the grace, the push is answered 200 (Google would not
// retry anyway) and not published, with a WARNING line a metric counts.
func TestExpiredChannelRefused(t *testing.T) {
	pub := &recordingPublisher{}
	var logs bytes.Buffer
	h := newTestHandler(t, pub, &logs)
	expired := time.Now().Add(-2 * time.Hour) // grace is 1h
	hdr := googleHeaders(t, "exists", "5")
	tok, _ := testKeys(t).Mint(googleChannelID, calKey, expired)
	hdr.Set(HeaderChannelToken, tok)
	if w := do(h, http.MethodPost, hdr, ""); w.Code != 200 || len(pub.msgs) != 0 {
		t.Fatalf("expired channel: status %d, %d published; want 200 and none", w.Code, len(pub.msgs))
	}
	if !strings.Contains(logs.String(), `"severity":"WARNING"`) || logEvents(&logs)["notification_expired"] != 1 ||
		!strings.Contains(logs.String(), `"reason":"channel_expired"`) {
		t.Fatalf("no WARNING notification_expired line: %s", logs.String())
	}
	// Within the grace (a retry of a push Google sent just before the end).
	late, _ := testKeys(t).Mint(googleChannelID, calKey, time.Now().Add(-30*time.Minute))
	hdr.Set(HeaderChannelToken, late)
	hdr.Set(HeaderMessageNumber, "6")
	if w := do(h, http.MethodPost, hdr, ""); w.Code != 200 || len(pub.msgs) != 1 {
		t.Fatalf("within the grace: status %d, %d published; want 200 and 1", w.Code, len(pub.msgs))
	}
	// The X-Goog-Channel-Expiration header is not signed: it changes nothing.
	hdr.Set(HeaderChannelToken, tok)
	hdr.Set(HeaderChannelExpiration, time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
	hdr.Set(HeaderMessageNumber, "7")
	if w := do(h, http.MethodPost, hdr, ""); w.Code != 200 || len(pub.msgs) != 1 {
		t.Fatalf("expired token with a fresh expiration header: %d, %d published", w.Code, len(pub.msgs))
	}
}

// mintV1 makes a version 1 token (no expiration) as calsync did before
// version 2: HMAC over "v1\n" + channel + "\n" + calendar key.
func mintV1(channelID, calendarKey string) string {
	mac := hmac.New(sha256.New, bytes.Repeat([]byte{7}, 32)) // testKeys' k1
	mac.Write([]byte("v1\n" + channelID + "\n" + calendarKey))
	return "v=1&k=k1&c=" + calendarKey + "&s=" + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// Version 1 tokens bind no expiration: they are accepted only until
// CHANNEL_TOKEN_V1_UNTIL (the transition), then refused with 403.
func TestVersion1TokensDuringTransitionOnly(t *testing.T) {
	pub := &recordingPublisher{}
	var logs bytes.Buffer
	h := newTestHandler(t, pub, &logs)
	hdr := googleHeaders(t, "exists", "5")
	hdr.Set(HeaderChannelToken, mintV1(googleChannelID, calKey))
	if w := do(h, http.MethodPost, hdr, ""); w.Code != 403 || len(pub.msgs) != 0 {
		t.Fatalf("v1 token without a transition: %d, %d published; want 403", w.Code, len(pub.msgs))
	}
	if !strings.Contains(logs.String(), `"reason":"token_v1_retired"`) {
		t.Fatalf("no token_v1_retired line: %s", logs.String())
	}
	now := time.Now()
	h.Now = func() time.Time { return now }
	h.TokenV1Until = now.Add(time.Minute)
	if w := do(h, http.MethodPost, hdr, ""); w.Code != 200 || len(pub.msgs) != 1 {
		t.Fatalf("v1 token during the transition: %d, %d published; want 200, 1", w.Code, len(pub.msgs))
	}
	h.TokenV1Until = now
	hdr.Set(HeaderMessageNumber, "6")
	if w := do(h, http.MethodPost, hdr, ""); w.Code != 403 {
		t.Fatalf("v1 token at the end of the transition: %d, want 403", w.Code)
	}
}

// A token signed with a key id of the deployment's key history that the
// Webhook does not have is answered 503 (Google retries) for UnknownKeyRetry
// after the key id was first seen, with an ERROR line the alert watches; then
// 403. Adding the key makes Google's retries verify. A key id outside the
// history is a forger's: 403 at once, logged as "unknown".
func TestUnknownKeyAnswered503WithinWindow(t *testing.T) {
	pub := &recordingPublisher{}
	var logs bytes.Buffer
	h := newTestHandler(t, pub, &logs)
	h.KeyHistory = []string{"k2"}
	now := time.Now()
	h.Now = func() time.Time { return now }
	k2, _ := channeltoken.New([]config.Key{{ID: "k2", Material: bytes.Repeat([]byte{9}, 32)}, {ID: "k1", Material: bytes.Repeat([]byte{7}, 32)}})
	tok, _ := k2.Mint(googleChannelID, calKey, testExpiration)
	hdr := googleHeaders(t, "exists", "5")
	hdr.Set(HeaderChannelToken, tok)
	if w := do(h, http.MethodPost, hdr, ""); w.Code != 503 || len(pub.msgs) != 0 {
		t.Fatalf("unknown key id: %d, want 503", w.Code)
	}
	line := strings.TrimSpace(logs.String())
	if !strings.Contains(line, `"severity":"ERROR"`) || !strings.Contains(line, `"event":"token_key_unknown"`) || !strings.Contains(line, `"keyId":"k2"`) ||
		strings.Contains(line, "s=") {
		t.Fatalf("want one ERROR token_key_unknown line naming k2 and no token: %s", line)
	}
	now = now.Add(59 * time.Minute)
	if w := do(h, http.MethodPost, hdr, ""); w.Code != 503 {
		t.Fatalf("still within the window: %d, want 503", w.Code)
	}
	// The operator adds k2 (a new instance with both keys): the retry verifies.
	fixed := newTestHandler(t, pub, nil)
	fixed.Verifier = k2
	if w := do(fixed, http.MethodPost, hdr, ""); w.Code != 200 || len(pub.msgs) != 1 {
		t.Fatalf("with the key added: %d, %d published", w.Code, len(pub.msgs))
	}
	now = now.Add(2 * time.Minute) // past the hour since first seen
	logs.Reset()
	if w := do(h, http.MethodPost, hdr, ""); w.Code != 403 {
		t.Fatalf("past the window: %d, want 403", w.Code)
	}
	if !strings.Contains(logs.String(), `"reason":"token_unknown_key"`) {
		t.Fatalf("past the window, want a rejection line: %s", logs.String())
	}
	if !strings.Contains(logs.String(), `"keyId":"k2"`) {
		t.Fatalf("a key id of the history is named: %s", logs.String())
	}
	logs.Reset()
	other, _ := channeltoken.New([]config.Key{{ID: "k3", Material: bytes.Repeat([]byte{3}, 32)}})
	tok3, _ := other.Mint(googleChannelID, calKey, testExpiration)
	hdr.Set(HeaderChannelToken, tok3)
	if w := do(h, http.MethodPost, hdr, ""); w.Code != 403 {
		t.Fatalf("a key id outside the history: %d, want 403 at once", w.Code)
	}
	if l := logs.String(); !strings.Contains(l, `"keyId":"unknown"`) || strings.Contains(l, "k3") {
		t.Fatalf("a key id outside the history must be logged as unknown: %s", l)
	}
	h.KeyHistory, h.UnknownKeyRetry = []string{"k3"}, 0
	if w := do(h, http.MethodPost, hdr, ""); w.Code != 403 {
		t.Fatalf("window 0: %d, want 403 at once", w.Code)
	}
}

// 600 forged pushes naming 600 different unknown key ids: every one refused
// 403 (not 503: the ids are not the deployment's), within the rejection-line
// budget, and the key id in the lines (a metric label) only ever "unknown".
// A retired key id of the history still gets 503 within its window.
func TestUnknownKeyIDsFlood(t *testing.T) {
	pub := &recordingPublisher{}
	var logs bytes.Buffer
	h := newTestHandler(t, pub, &logs)
	h.rejectLines = rate.NewLimiter(RejectLinesPerSecond, RejectLinesBurst)
	h.KeyHistory = []string{"k0"}
	start := time.Now()
	for i := range 600 {
		hdr := googleHeaders(t, "exists", "5")
		hdr.Set(HeaderChannelToken, fmt.Sprintf("v=2&k=forged%d&c=%s&e=%d&s=%s", i, calKey, testExpiration.Unix(), strings.Repeat("A", 43)))
		if w := do(h, http.MethodPost, hdr, ""); w.Code != 403 {
			t.Fatalf("forged key id %d: %d, want 403", i, w.Code)
		}
	}
	budget := RejectLinesBurst + int(time.Since(start).Seconds()*RejectLinesPerSecond) + 1
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	keyIDs := map[string]int{}
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		keyIDs[fmt.Sprint(m["keyId"])]++
	}
	if len(lines) > budget || len(keyIDs) != 1 || keyIDs[unknownKeyID] != len(lines) {
		t.Fatalf("%d lines (budget %d), key ids %v: want the budget and only %q", len(lines), budget, keyIDs, unknownKeyID)
	}
	if ev := logEvents(&logs); ev[logging.EventTokenKeyUnknown] != 0 {
		t.Fatalf("forged ids raised the alert's event: %v", ev)
	}
	// The retired key k0 (a channel still signed with it): 503, Google retries.
	retired, _ := channeltoken.New([]config.Key{{ID: "k0", Material: bytes.Repeat([]byte{5}, 32)}})
	tok, _ := retired.Mint(googleChannelID, calKey, testExpiration)
	hdr := googleHeaders(t, "exists", "6")
	hdr.Set(HeaderChannelToken, tok)
	h.rejectLines.SetLimit(rate.Inf)
	logs.Reset()
	if w := do(h, http.MethodPost, hdr, ""); w.Code != 503 || len(pub.msgs) != 0 {
		t.Fatalf("retired key id of the history: %d, want 503", w.Code)
	}
	var m map[string]any
	if err := json.Unmarshal(logs.Bytes(), &m); err != nil || m["event"] != logging.EventTokenKeyUnknown || m["keyId"] != "k0" || m["suppressed"] == nil {
		t.Fatalf("want the token_key_unknown line naming k0 and counting the suppressed lines: %s", logs.String())
	}
}

// One captured push replayed 1,000 times at one instance: published once,
// the rest answered 200 and counted (notification_duplicate).
func TestReplaysOfOneCapturedPush(t *testing.T) {
	pub := &recordingPublisher{}
	var logs bytes.Buffer
	h := newTestHandler(t, pub, &logs)
	captured := googleHeaders(t, "exists", "41")
	for i := range 1001 {
		if w := do(h, http.MethodPost, captured, ""); w.Code != 200 {
			t.Fatalf("replay %d: %d", i, w.Code)
		}
	}
	if len(pub.msgs) != 1 {
		t.Fatalf("published %d times, want 1", len(pub.msgs))
	}
	if ev := logEvents(&logs); ev["notification_duplicate"] != 1000 || ev["notification"] != 1 {
		t.Fatalf("log events %v, want 1 notification and 1000 notification_duplicate", ev)
	}
}

// publishedNumbers lists the message numbers pub received, in order.
func publishedNumbers(pub *recordingPublisher) []int64 {
	var nums []int64
	for _, m := range pub.msgs {
		var n messages.Notification
		_ = json.Unmarshal(m.data, &n)
		nums = append(nums, n.MessageNumber)
	}
	return nums
}

// One captured valid push replayed with the largest message number is
// published once; the channel's real pushes that follow, with ordinary
// numbers, are still published (they were "already published" before).
func TestForgedMessageNumberDoesNotSilence(t *testing.T) {
	pub := &recordingPublisher{}
	h := newTestHandler(t, pub, nil)
	for _, n := range []string{"5", "9223372036854775807", "9223372036854775807", "6", "7"} {
		if w := do(h, http.MethodPost, googleHeaders(t, "exists", n), ""); w.Code != 200 {
			t.Fatalf("message %s: %d", n, w.Code)
		}
	}
	nums := publishedNumbers(pub)
	if fmt.Sprint(nums) != "[5 9223372036854775807 6 7]" {
		t.Fatalf("published %v, want 5, the forged number once, 6 and 7", nums)
	}
}

func TestSeenWindowEvictsOldest(t *testing.T) {
	s := newSeen()
	s.record("first", 5)
	for i := range seenCapacity {
		s.record(fmt.Sprint("c", i), 1)
	}
	if !s.published("first", 5) {
		t.Fatal("the previous generation must still answer")
	}
	s.record("first", 6) // carried over to the current generation
	for i := range seenCapacity {
		s.record(fmt.Sprint("d", i), 1)
	}
	if !s.published("first", 6) || !s.published("first", 5) || s.published("c0", 1) {
		t.Fatal("a channel seen again must survive one more generation with its numbers, an old one must go")
	}
	for n := int64(10); n < 10+seenNumbers; n++ {
		s.record("first", n)
	}
	if s.published("first", 6) || !s.published("first", 10) {
		t.Fatalf("the last %d numbers of a channel are kept, older ones go", seenNumbers)
	}
}

// A flood of forged pushes writes a bounded number of lines per instance:
// past the limit nothing is written, and the next line written says how
// many were left out. Every push is still answered and nothing published.
func TestRejectionLinesBounded(t *testing.T) {
	var logs bytes.Buffer
	pub := &recordingPublisher{}
	h := newTestHandler(t, pub, &logs)
	h.rejectLines = rate.NewLimiter(rate.Every(time.Hour), 2)
	forged := googleHeaders(t, "exists", "5")
	forged.Set("X-Goog-Channel-Token", "v=1&k=k1&c="+calKey+"&s=SECRETFORGERY")
	for range 10 {
		if rec := do(h, http.MethodPost, forged, ""); rec.Code/100 != 4 {
			t.Fatalf("forged push answered %d", rec.Code)
		}
	}
	if n := strings.Count(logs.String(), "\n"); n != 2 {
		t.Fatalf("%d lines for 10 forged pushes, want 2 (the burst):\n%s", n, logs.String())
	}
	h.rejectLines.SetLimit(rate.Inf)
	do(h, http.MethodPost, forged, "")
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	var last map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last["suppressed"] != 8.0 {
		t.Fatalf("the line after the limit: %v %v, want suppressed 8", last, err)
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if len(pub.msgs) != 0 {
		t.Fatal("a forged push was published")
	}
}
