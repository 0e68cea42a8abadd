package calendaremu

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

type received struct {
	h    http.Header
	body int64
}

// receiver is a webhook that records messages and answers with codes from a script.
type receiver struct {
	mu    sync.Mutex
	msgs  []received
	codes []int // answered in order; 200 once exhausted
	got   chan struct{}
	*httptest.Server
}

func newReceiver(t *testing.T, codes ...int) *receiver {
	rc := &receiver{codes: codes, got: make(chan struct{}, 1000)}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.mu.Lock()
		code := 200
		if len(rc.codes) > 0 {
			code, rc.codes = rc.codes[0], rc.codes[1:]
		}
		if code == 200 {
			rc.msgs = append(rc.msgs, received{r.Header.Clone(), r.ContentLength})
		}
		rc.mu.Unlock()
		w.WriteHeader(code)
		rc.got <- struct{}{}
	}))
	t.Cleanup(rc.Close)
	return rc
}

// waitFor waits until n messages were accepted.
func (rc *receiver) waitFor(t *testing.T, n int) []received {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		rc.mu.Lock()
		if len(rc.msgs) >= n {
			out := append([]received(nil), rc.msgs...)
			rc.mu.Unlock()
			return out
		}
		rc.mu.Unlock()
		select {
		case <-rc.got:
		case <-deadline:
			t.Fatalf("timed out waiting for %d messages, have %d", n, len(rc.msgs))
		}
	}
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.msgs)
}

func TestWatchNotifications(t *testing.T) {
	srv, _, svc := startTest(t, Options{Seed: 7})
	rc := newReceiver(t)
	ch, err := svc.Events.Watch("primary", &calendar.Channel{Id: "chan-1", Type: "web_hook", Address: rc.URL,
		Token: "cal=abc&v=1", Params: map[string]string{"ttl": "3600"}}).Do()
	if err != nil {
		t.Fatal(err)
	}
	if ch.Kind != "api#channel" || ch.Id != "chan-1" || ch.ResourceId == "" || ch.Token != "cal=abc&v=1" ||
		ch.ResourceUri != "https://www.googleapis.com/calendar/v3/calendars/primary/events?alt=json" {
		t.Fatalf("reply: %+v", ch)
	}
	if d := time.Until(time.UnixMilli(ch.Expiration)); d < 3590*time.Second || d > 3600*time.Second {
		t.Fatalf("expiration %v from now", d)
	}
	msgs := rc.waitFor(t, 1)
	h := msgs[0].h
	want := map[string]string{"X-Goog-Channel-Id": "chan-1", "X-Goog-Channel-Token": "cal=abc&v=1",
		"X-Goog-Message-Number": "1", "X-Goog-Resource-Id": ch.ResourceId, "X-Goog-Resource-State": "sync",
		"X-Goog-Resource-Uri":       ch.ResourceUri,
		"X-Goog-Channel-Expiration": time.UnixMilli(ch.Expiration).UTC().Format(http.TimeFormat)}
	for k, v := range want {
		if h.Get(k) != v {
			t.Errorf("header %s = %q, want %q", k, h.Get(k), v)
		}
	}
	var goog []string
	for k := range h {
		if strings.HasPrefix(k, "X-Goog-") {
			goog = append(goog, k)
		}
	}
	if len(goog) != len(want) {
		t.Errorf("X-Goog headers %v, want exactly %d", goog, len(want))
	}
	if msgs[0].body != 0 {
		t.Errorf("body length %d", msgs[0].body)
	}
	if _, err := time.Parse(time.RFC1123, h.Get("X-Goog-Channel-Expiration")); err != nil {
		t.Errorf("expiration header: %v", err)
	}
	for i := range 3 {
		if _, err := svc.Events.Insert("primary", timed("e"+strconv.Itoa(i), t0, time.Hour)).Do(); err != nil {
			t.Fatal(err)
		}
	}
	msgs = rc.waitFor(t, 4)
	last := int64(1)
	for _, m := range msgs[1:] {
		if m.h.Get("X-Goog-Resource-State") != "exists" {
			t.Errorf("state %q", m.h.Get("X-Goog-Resource-State"))
		}
		n, _ := strconv.ParseInt(m.h.Get("X-Goog-Message-Number"), 10, 64)
		if n <= last {
			t.Errorf("message numbers not increasing: %d after %d", n, last)
		}
		last = n
	}
	// resourceId is stable across channels of the same calendar.
	ch2, err := svc.Events.Watch("primary", &calendar.Channel{Id: "chan-2", Type: "web_hook", Address: rc.URL}).Do()
	if err != nil || ch2.ResourceId != ch.ResourceId {
		t.Fatalf("second channel: %v %+v", err, ch2)
	}
	if d := time.Until(time.UnixMilli(ch2.Expiration)); d < 604790*time.Second {
		t.Fatalf("default ttl: %v", d)
	}
	rc.waitFor(t, 5)
	// Duplicate id, bad input.
	_, err = svc.Events.Watch("primary", &calendar.Channel{Id: "chan-1", Type: "web_hook", Address: rc.URL}).Do()
	wantErr(t, err, 400, "channelIdNotUnique")
	_, err = svc.Events.Watch("primary", &calendar.Channel{Id: strings.Repeat("x", 65), Type: "web_hook", Address: rc.URL}).Do()
	wantErr(t, err, 400, "invalid")
	_, err = svc.Events.Watch("primary", &calendar.Channel{Id: "chan-3", Type: "web_hook"}).Do()
	wantErr(t, err, 400, "required")
	// Stop: wrong resource 404, right one 204, then nothing more is sent.
	wantErr(t, svc.Channels.Stop(&calendar.Channel{Id: "chan-1", ResourceId: "nope"}).Do(), 404, "notFound")
	if err := svc.Channels.Stop(&calendar.Channel{Id: "chan-1", ResourceId: ch.ResourceId}).Do(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, svc.Channels.Stop(&calendar.Channel{Id: "chan-1", ResourceId: ch.ResourceId}).Do(), 404, "notFound")
	if err := srv.ExpireChannel("chan-2"); err != nil {
		t.Fatal(err)
	}
	before := rc.count()
	if _, err := svc.Events.Insert("primary", timed("after stop", t0, time.Hour)).Do(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if rc.count() != before {
		t.Fatalf("stopped/expired channels still deliver")
	}
	infos := srv.Channels()
	if len(infos) != 2 || !infos[0].Stopped || !infos[1].Expired {
		t.Fatalf("channels: %+v", infos)
	}
	// Max TTL caps the grant.
	srv.SetMaxTTL(time.Minute)
	ch3, err := svc.Events.Watch("primary", &calendar.Channel{Id: "chan-4", Type: "web_hook", Address: rc.URL,
		Expiration: time.Now().Add(24 * time.Hour).UnixMilli()}).Do()
	if err != nil || time.Until(time.UnixMilli(ch3.Expiration)) > time.Minute {
		t.Fatalf("max ttl: %v %+v", err, ch3)
	}
}

func TestPushRetryAndFaults(t *testing.T) {
	srv, _, svc := startTest(t, Options{PushRetryBaseDelay: 5 * time.Millisecond, PushMaxAttempts: 3})
	rc := newReceiver(t, 503, 503) // sync message answered 503 twice, then 200
	if _, err := svc.Events.Watch("primary", &calendar.Channel{Id: "r1", Type: "web_hook", Address: rc.URL}).Do(); err != nil {
		t.Fatal(err)
	}
	msgs := rc.waitFor(t, 1)
	if msgs[0].h.Get("X-Goog-Resource-State") != "sync" {
		t.Fatal("sync not delivered after retries")
	}
	waitStats(t, srv, func(n NotificationStats) bool { return n.Retried == 2 && n.Sent == 1 })
	// 404 is not retried.
	rc.mu.Lock()
	rc.codes = []int{404}
	rc.mu.Unlock()
	if _, err := svc.Events.Insert("primary", timed("x", t0, time.Hour)).Do(); err != nil {
		t.Fatal(err)
	}
	waitStats(t, srv, func(n NotificationStats) bool { return n.Failed == 1 })
	// Drop one, duplicate one.
	srv.SetNotificationFaults(NotificationFaults{DropCount: 1, DuplicateCount: 1})
	for i := range 2 {
		if _, err := svc.Events.Insert("primary", timed("f"+strconv.Itoa(i), t0, time.Hour)).Do(); err != nil {
			t.Fatal(err)
		}
	}
	msgs = rc.waitFor(t, 3)
	if msgs[1].h.Get("X-Goog-Message-Number") != msgs[2].h.Get("X-Goog-Message-Number") {
		t.Fatalf("duplicate not identical")
	}
	waitStats(t, srv, func(n NotificationStats) bool { return n.Dropped == 1 && n.Duplicated == 1 && n.Sent == 3 })
}

func TestFaultInjectionAndQuota(t *testing.T) {
	srv, _, svc := startTest(t, Options{})
	srv.FailNext("events.list", 2, 503, "backendError")
	for range 2 {
		_, err := svc.Events.List("primary").Do()
		wantErr(t, err, 503, "backendError")
	}
	if _, err := svc.Events.List("primary").Do(); err != nil {
		t.Fatal(err)
	}
	srv.AddFault(Fault{Method: "*", Count: 1, Code: 403, Reason: "rateLimitExceeded", User: "someone@else"})
	if _, err := svc.Events.List("primary").Do(); err != nil {
		t.Fatal("fault for another user applied")
	}
	srv.AddFault(Fault{Method: "*", Count: 1, Code: 429, Reason: "rateLimitExceeded"})
	_, err := svc.Calendars.Get("primary").Do()
	wantErr(t, err, 429, "rateLimitExceeded")
	srv.SetQuota(3)
	for range 3 {
		if _, err := svc.Events.List("primary").Do(); err != nil {
			t.Fatal(err)
		}
	}
	_, err = svc.Events.List("primary").Do()
	wantErr(t, err, 403, "rateLimitExceeded")
	st := srv.Stats()
	if st.Requests["events.list"] != 8 || st.QuotaRejected != 1 || st.RequestsByUser[DefaultUser] != 9 {
		t.Fatalf("stats: %+v", st)
	}
}

// wantQuotaBody checks the body Google's quota system sends over a limit.
func wantQuotaBody(t *testing.T, err error, limit string) {
	t.Helper()
	var ge *googleapi.Error
	want := "Quota exceeded for quota metric 'Queries' and limit '" + limit +
		"' of service 'calendar-json.googleapis.com' for consumer 'project_number:" + ProjectNumber + "'."
	if !errors.As(err, &ge) || ge.Message != want {
		t.Errorf("quota message: %v", err)
	}
	if it := errItem(t, err); it["domain"] != "usageLimits" || it["message"] != want {
		t.Errorf("quota error item: %v", it)
	}
}

func waitStats(t *testing.T, srv *Server, ok func(NotificationStats) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(srv.Stats().Notifications) {
		if time.Now().After(deadline) {
			t.Fatalf("notification stats: %+v", srv.Stats().Notifications)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHeaderSpelling reads the raw request: header names are Google's exact spelling.
func TestHeaderSpelling(t *testing.T) {
	_, _, svc := startTest(t, Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	raw := make(chan string, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		req, err := http.ReadRequest(bufio.NewReader(io.TeeReader(conn, &headBuf{ch: raw})))
		if err == nil {
			req.Body.Close()
		}
		_, _ = conn.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
	}()
	if _, err := svc.Events.Watch("primary", &calendar.Channel{Id: "raw", Type: "web_hook", Address: "http://" + ln.Addr().String() + "/hook"}).Do(); err != nil {
		t.Fatal(err)
	}
	select {
	case head := <-raw:
		for _, name := range []string{"X-Goog-Channel-ID: raw", "X-Goog-Resource-ID: ", "X-Goog-Resource-URI: ", "X-Goog-Resource-State: sync", "X-Goog-Message-Number: 1", "Content-Length: 0"} {
			if !strings.Contains(head, "\r\n"+name) {
				t.Errorf("raw request lacks %q:\n%s", name, head)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no request")
	}
}

// headBuf collects bytes until the end of the header block and sends them once.
type headBuf struct {
	b    []byte
	ch   chan string
	sent bool
}

func (h *headBuf) Write(p []byte) (int, error) {
	h.b = append(h.b, p...)
	if !h.sent && strings.Contains(string(h.b), "\r\n\r\n") {
		h.sent = true
		h.ch <- string(h.b)
	}
	return len(p), nil
}

func TestStopByAnotherUser(t *testing.T) {
	srv, base, svc := startTest(t, Options{})
	rc := newReceiver(t)
	ch, err := svc.Events.Watch("primary", &calendar.Channel{Id: "mine", Type: "web_hook", Address: rc.URL}).Do()
	if err != nil {
		t.Fatal(err)
	}
	tok := srv.IssueToken("mallory@calsync.test")
	other, err := NewService(t.Context(), base, option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok.AccessToken})))
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, other.Channels.Stop(&calendar.Channel{Id: ch.Id, ResourceId: ch.ResourceId}).Do(), 403, "forbidden")
	if err := svc.Channels.Stop(&calendar.Channel{Id: ch.Id, ResourceId: ch.ResourceId}).Do(); err != nil {
		t.Fatal(err)
	}
}

func TestSeededDropProbability(t *testing.T) {
	run := func() int {
		srv := New(Options{})
		defer srv.Close()
		srv.SetNotificationFaults(NotificationFaults{DropProbability: 0.5, Seed: 99})
		srv.mu.Lock()
		defer srv.mu.Unlock()
		ch := &channel{wake: make(chan struct{}, 1), halt: make(chan struct{})}
		for range 100 {
			srv.enqueueLocked(ch, "exists", 1)
		}
		return len(ch.queue)
	}
	a, b := run(), run()
	if a != b || a < 25 || a > 75 {
		t.Fatalf("seeded drops not reproducible or off: %d %d", a, b)
	}
}

// Both of Google's quotas, per user and per project, with Google's bodies;
// the peaks count accepted calls in the busiest sliding minute.
func TestProjectAndUserQuotas(t *testing.T) {
	srv, base, svc := startTest(t, Options{})
	other := srv.IssueToken("other@calsync.test")
	osvc, _ := NewService(context.Background(), base, option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: other.AccessToken})))
	srv.SetQuotas(Quotas{PerUser: 3, PerProject: 5})
	for range 3 {
		if _, err := svc.Events.List("primary").Do(); err != nil {
			t.Fatal(err)
		}
	}
	_, err := svc.Events.List("primary").Do()
	wantErr(t, err, 403, "rateLimitExceeded")
	wantQuotaBody(t, err, "Queries per minute per user")
	for range 2 {
		if _, err := osvc.Events.List("primary").Do(); err != nil {
			t.Fatal(err)
		}
	}
	// The other user is under its own quota, the project is not.
	_, err = osvc.Events.List("primary").Do()
	wantErr(t, err, 403, "rateLimitExceeded")
	wantQuotaBody(t, err, "Queries per minute")
	srv.SetQuotas(Quotas{PerUser: 1, TooManyRequests: true})
	if _, err := osvc.Events.List("primary").Do(); err != nil {
		t.Fatal(err)
	}
	_, err = osvc.Events.List("primary").Do()
	wantErr(t, err, 429, "rateLimitExceeded")
	wantQuotaBody(t, err, "Queries per minute per user")
	st := srv.Stats()
	if st.Peaks.Project != 1 || st.Peaks.User["other@calsync.test"] != 1 || st.QuotaRejected != 3 {
		t.Errorf("peaks after SetQuotas: %+v rejected %d", st.Peaks, st.QuotaRejected)
	}
	// The control API takes the same, and the older {"perMinute": n}.
	code, _ := ctl(t, "PUT", base+controlPath+"quota", map[string]any{"perUser": 0, "perProject": 2})
	if code != 200 {
		t.Fatalf("quota control: %d", code)
	}
	for range 2 {
		if _, err := svc.Events.List("primary").Do(); err != nil {
			t.Fatal(err)
		}
	}
	_, err = osvc.Events.List("primary").Do()
	wantErr(t, err, 403, "rateLimitExceeded")
	if p := srv.Stats().Peaks; p.Project != 2 || p.User[DefaultUser] != 2 {
		t.Errorf("peaks: %+v", p)
	}
}

// Google's quota-project header puts a request on another project's quotas:
// the default project's windows and peaks do not see it.
func TestQuotaProjectHeader(t *testing.T) {
	srv, base, svc := startTest(t, Options{})
	srv.SetQuotas(Quotas{PerUser: 2, PerProject: 2})
	ui, _ := NewService(context.Background(), base, option.WithoutAuthentication(), option.WithQuotaProject("users-own-edits"))
	for range 5 {
		if _, err := ui.Events.List("primary").Do(); err != nil {
			t.Fatalf("another quota project is not limited: %v", err)
		}
	}
	for range 2 {
		if _, err := svc.Events.List("primary").Do(); err != nil {
			t.Fatalf("default project: %v", err)
		}
	}
	if p := srv.Stats().Peaks; p.Project != 2 || p.User[DefaultUser] != 2 {
		t.Errorf("peaks %+v", p)
	}
}
