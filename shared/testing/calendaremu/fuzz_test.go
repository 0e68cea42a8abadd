package calendaremu

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// Bad input must answer as Google would (a 4xx with a JSON error body), never a
// 5xx or a panic. The seeds run in plain `go test`.

func call(t *testing.T, srv *Server, method, target string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, "http://emu/", bytes.NewReader(body))
	u, err := url.Parse(target)
	if err != nil {
		t.Skip("not a URL")
	}
	req.URL = u
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code >= 500 {
		t.Fatalf("%s %s %q: %d %s", method, target, body, rec.Code, rec.Body.String())
	}
	if rec.Body.Len() > 0 && !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("%s %s: invalid JSON response %q", method, target, rec.Body.String())
	}
	if rec.Code >= 400 {
		var eb errorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error.Code != rec.Code || len(eb.Error.Errors) != 1 || eb.Error.Errors[0].Reason == "" {
			t.Fatalf("%s %s: bad error body %q", method, target, rec.Body.String())
		}
	}
	return rec
}

const evPath = "/calendar/v3/calendars/primary/events"

func FuzzEventBody(f *testing.F) {
	seeds := []string{
		`{"summary":"a","start":{"dateTime":"2026-01-01T10:00:00Z"},"end":{"dateTime":"2026-01-01T11:00:00Z"}}`,
		`{"id":"abcdefg","start":{"date":"2026-01-01"},"end":{"date":"2026-01-02"},"recurrence":["RRULE:FREQ=WEEKLY;BYDAY=MO,TU;COUNT=10"]}`,
		`{"start":{"dateTime":"2026-01-01T10:00:00","timeZone":"Europe/Paris"},"end":{"dateTime":"2026-01-01T11:00:00","timeZone":"Europe/Paris"},"recurrence":["RRULE:FREQ=MONTHLY;BYMONTHDAY=31;BYMONTH=2","EXDATE;TZID=Europe/Paris:20260101T100000"]}`,
		`{"start":{"dateTime":"2026-01-01T10:00:00Z","timeZone":"Nowhere/City"},"end":{"dateTime":"2026-01-01T11:00:00Z"}}`,
		`{"summary":5}`, `{"start":{"date":"2026-13-01"},"end":{"date":"2026-01-02"}}`, `null`, `[]`, `{`, ``,
		`{"start":{"dateTime":"2026-01-01T10:00:00Z"},"end":{"dateTime":"2026-01-01T11:00:00Z"},"attendees":[{}],"sequence":99999999999}`,
		`{"start":{"dateTime":"2026-01-01T10:00:00Z"},"end":{"dateTime":"2026-01-01T11:00:00Z"},"extendedProperties":{"private":{"a.b/c":"x"}},"reminders":{"useDefault":false,"overrides":[{"method":"sms","minutes":-1}]}}`,
		`{"start":{"date":"2026-01-01"},"end":{"date":"2026-01-02"},"recurrence":["RRULE:FREQ=YEARLY;INTERVAL=10000;BYMONTH=2;BYMONTHDAY=30"]}`,
		`{"start":{"dateTime":"0001-01-01T00:00:00Z","timeZone":"UTC"},"end":{"dateTime":"9999-12-31T23:59:59Z"},"recurrence":["RRULE:FREQ=DAILY;UNTIL=99991231"]}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	srv := New(Options{})
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := call(t, srv, "POST", evPath, body)
		if rec.Code != 200 {
			return
		}
		var ev eventBody
		if err := json.Unmarshal(rec.Body.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		// Whatever was accepted must answer with a schema-valid Event.
		dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
		dec.UseNumber()
		var v any
		_ = dec.Decode(&v)
		if errs := fuzzDiscovery(t).check(&jschema{Ref: "Event"}, v, "Event"); len(errs) > 0 {
			t.Fatalf("schema: %v for body %q", errs, body)
		}
		p := evPath + "/" + url.PathEscape(ev.ID)
		call(t, srv, "PATCH", p, body)
		call(t, srv, "PUT", p, body)
		call(t, srv, "GET", p+"/instances?maxResults=50", nil)
		call(t, srv, "GET", evPath+"?singleEvents=true&maxResults=20&timeMin=2026-01-01T00:00:00Z", nil)
		call(t, srv, "DELETE", p, nil)
	})
}

func FuzzListQuery(f *testing.F) {
	for _, s := range []string{
		"", "maxResults=0", "maxResults=99999999999999999999", "maxResults=-1", "showDeleted=yes",
		"singleEvents=true&orderBy=startTime", "orderBy=startTime", "orderBy=bogus", "timeMin=2026-01-01",
		"timeMin=2026-01-02T00:00:00Z&timeMax=2026-01-01T00:00:00Z", "q=%00%ff", "privateExtendedProperty=noequals",
		"syncToken=AQ&q=x", "syncToken=%%%", "pageToken=AgEAAAAAAAAAAAAAAAAAAAAAAAA", "updatedMin=2026-01-01T00:00:00%2B01:00",
		"iCalUID=x@google.com&maxAttendees=1", "eventTypes=focusTime&eventTypes=default",
	} {
		f.Add(s)
	}
	srv := New(Options{})
	seed := []string{
		`{"summary":"a","start":{"dateTime":"2026-01-01T10:00:00Z"},"end":{"dateTime":"2026-01-01T11:00:00Z"},"attendees":[{"email":"x@y"},{"email":"z@y"}]}`,
		`{"summary":"r","start":{"dateTime":"2026-01-01T10:00:00Z","timeZone":"UTC"},"end":{"dateTime":"2026-01-01T11:00:00Z","timeZone":"UTC"},"recurrence":["RRULE:FREQ=DAILY"]}`,
	}
	for _, b := range seed {
		req := httptest.NewRequest("POST", evPath, strings.NewReader(b))
		srv.ServeHTTP(httptest.NewRecorder(), req)
	}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		u := &url.URL{Path: evPath, RawQuery: rawQuery}
		if _, err := url.ParseQuery(rawQuery); err != nil {
			u.RawQuery = url.Values{"q": {rawQuery}}.Encode()
		}
		call(t, srv, "GET", u.String(), nil)
		call(t, srv, "GET", evPath+"/"+url.PathEscape(rawQuery), nil)
	})
}

func FuzzTokens(f *testing.F) {
	srv := New(Options{})
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", evPath+"?maxResults=1", nil))
	var res listResponse
	_ = json.Unmarshal(rec.Body.Bytes(), &res)
	f.Add(res.NextSyncToken, "", "Bearer x")
	f.Add("", pageToken{mode: modeFull}.encode(), "")
	f.Add("AQAAAAAAAAAA/////w==", "Ag", "Basic abc")
	f.Add("", "", "Bearer ")
	f.Fuzz(func(t *testing.T, syncTok, pageTok, auth string) {
		q := url.Values{}
		if syncTok != "" {
			q.Set("syncToken", syncTok)
		}
		if pageTok != "" {
			q.Set("pageToken", pageTok)
		}
		req := httptest.NewRequest("GET", evPath+"?"+q.Encode(), nil)
		if auth != "" && !strings.ContainsAny(auth, "\r\n\x00") {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code >= 500 || (rec.Code >= 400 && !json.Valid(rec.Body.Bytes())) {
			t.Fatalf("%d %s", rec.Code, rec.Body.String())
		}
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {syncTok}, "code": {pageTok}}
		treq := httptest.NewRequest("POST", "/token", strings.NewReader(form.Encode()))
		treq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		trec := httptest.NewRecorder()
		srv.ServeHTTP(trec, treq)
		if trec.Code != http.StatusBadRequest {
			t.Fatalf("token endpoint with junk: %d", trec.Code)
		}
	})
}

func FuzzWatchBody(f *testing.F) {
	for _, s := range []string{
		`{"id":"c1","type":"web_hook","address":"http://127.0.0.1:1/h","params":{"ttl":"10"}}`,
		`{"id":"c2","type":"web_hook","address":"http://127.0.0.1:1/h","expiration":"1"}`,
		`{"id":"c3","type":"web_hook","address":"http://127.0.0.1:1/h","expiration":"99999999999999999999"}`,
		`{"id":"c4","type":"web_hook","address":"::bad"}`, `{"id":"c5","type":"web_hook","address":"http://x","params":{"ttl":"-5"}}`,
		`{"id":"","resourceId":""}`, `{`,
	} {
		f.Add([]byte(s))
	}
	srv := New(Options{PushMaxAttempts: 1})
	defer srv.Close()
	f.Fuzz(func(t *testing.T, body []byte) {
		call(t, srv, "POST", evPath+"/watch", body)
		call(t, srv, "POST", "/calendar/v3/channels/stop", body)
	})
}

var (
	discOnce sync.Once
	disc     *discovery
)

func fuzzDiscovery(t *testing.T) *discovery {
	discOnce.Do(func() { disc = loadDiscovery(t) })
	if disc == nil {
		t.Fatal("discovery document not loaded")
	}
	return disc
}
