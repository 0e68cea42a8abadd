package calendaremu

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"google.golang.org/api/calendar/v3"
)

func ctl(t *testing.T, method, u string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, u, r)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func TestControlHTTP(t *testing.T) {
	srv, base, svc := startTest(t, Options{PushRetryBaseDelay: time.Millisecond})
	cp := base + "/emulator/v1/"
	if code, _ := ctl(t, "POST", cp+"faults", Fault{Method: "events.insert", Count: 1, Code: 500, Reason: "backendError"}); code != 200 {
		t.Fatalf("faults: %d", code)
	}
	_, err := svc.Events.Insert("primary", timed("x", t0, time.Hour)).Do()
	wantErr(t, err, 500, "backendError")
	ev, err := svc.Events.Insert("primary", timed("x", t0, time.Hour)).Do()
	if err != nil {
		t.Fatal(err)
	}
	res, err := svc.Events.List("primary").Do()
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := ctl(t, "POST", cp+"calendars/"+url.PathEscape(DefaultUser)+"/invalidateSyncTokens", nil); code != 200 {
		t.Fatalf("invalidate: %d", code)
	}
	_, err = svc.Events.List("primary").SyncToken(res.NextSyncToken).Do()
	wantErr(t, err, 410, "fullSyncRequired")
	// Channels: create, list, expire over HTTP.
	rc := newReceiver(t)
	if code, _ := ctl(t, "PUT", cp+"notificationFaults", map[string]any{"delayCount": 1, "delay": "50ms"}); code != 200 {
		t.Fatalf("notificationFaults: %d", code)
	}
	ch, err := svc.Events.Watch("primary", &calendar.Channel{Id: "h1", Type: "web_hook", Address: rc.URL}).Do()
	if err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, 1)
	if srv.Stats().Notifications.Delayed != 1 {
		t.Fatalf("delay not applied: %+v", srv.Stats().Notifications)
	}
	code, body := ctl(t, "GET", cp+"channels", nil)
	var infos []ChannelInfo
	if err := json.Unmarshal(body, &infos); code != 200 || err != nil || len(infos) != 1 || infos[0].ResourceID != ch.ResourceId || infos[0].Calendar != DefaultUser {
		t.Fatalf("channels: %d %s", code, body)
	}
	if code, _ := ctl(t, "POST", cp+"channels/h1/expire", nil); code != 200 {
		t.Fatalf("expire: %d", code)
	}
	if code, _ := ctl(t, "PUT", cp+"maxTTL", map[string]int{"seconds": 60}); code != 200 {
		t.Fatalf("maxTTL: %d", code)
	}
	ch2, err := svc.Events.Watch("primary", &calendar.Channel{Id: "h2", Type: "web_hook", Address: rc.URL}).Do()
	if err != nil || time.Until(time.UnixMilli(ch2.Expiration)) > time.Minute {
		t.Fatalf("maxTTL not applied: %v", err)
	}
	// Users and grants.
	if code, _ := ctl(t, "POST", cp+"users", map[string]string{"email": "dave@calsync.test", "refreshToken": "1//dave"}); code != 200 {
		t.Fatalf("users: %d", code)
	}
	code, body = ctl(t, "POST", cp+"users/dave@calsync.test/token", nil)
	var tok Token
	if err := json.Unmarshal(body, &tok); code != 200 || err != nil || tok.AccessToken == "" {
		t.Fatalf("token: %d %s", code, body)
	}
	if code, _ := ctl(t, "POST", cp+"users/dave@calsync.test/revoke", nil); code != 200 {
		t.Fatalf("revoke: %d", code)
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"1//dave"}}
	resp, err := http.PostForm(base+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	var oe map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&oe)
	resp.Body.Close()
	if resp.StatusCode != 400 || oe["error"] != "invalid_grant" || oe["error_description"] != "Token has been expired or revoked." {
		t.Fatalf("revoked refresh: %d %v", resp.StatusCode, oe)
	}
	if code, _ := ctl(t, "PUT", cp+"quota", map[string]int{"perMinute": 1}); code != 200 {
		t.Fatalf("quota: %d", code)
	}
	_, _ = svc.Events.Get("primary", ev.Id).Do()
	_, err = svc.Events.Get("primary", ev.Id).Do()
	wantErr(t, err, 403, "rateLimitExceeded")
	// Stats and reset.
	code, body = ctl(t, "GET", cp+"stats", nil)
	var st Stats
	if err := json.Unmarshal(body, &st); code != 200 || err != nil || st.Requests["events.insert"] != 2 || st.FaultsInjected != 1 {
		t.Fatalf("stats: %d %s", code, body)
	}
	if code, _ := ctl(t, "POST", cp+"reset", nil); code != 200 {
		t.Fatalf("reset: %d", code)
	}
	res, err = svc.Events.List("primary").Do()
	if err != nil || len(res.Items) != 0 || len(srv.Channels()) != 0 {
		t.Fatalf("after reset: %v %+v", err, res)
	}
	if code, _ := ctl(t, "GET", cp+"nope", nil); code != 404 {
		t.Fatalf("unknown endpoint: %d", code)
	}
}

func TestStartHelper(t *testing.T) {
	srv, base := Start(t, Options{})
	svc, err := NewService(t.Context(), base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Events.Insert("primary", timed("x", t0, time.Hour)).Do(); err != nil {
		t.Fatal(err)
	}
	if srv.Stats().Requests["events.insert"] != 1 || srv.DefaultUser() != DefaultUser {
		t.Fatal("stats")
	}
}
