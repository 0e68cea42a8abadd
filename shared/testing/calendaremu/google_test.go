package calendaremu

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/googleapi"
)

// A change is pushed at once but listed incrementally only after the
// visibility delay; no sync token passes it meanwhile.
func TestVisibilityDelay(t *testing.T) {
	srv, _, svc := startTest(t, Options{})
	first, err := svc.Events.List("primary").Do()
	if err != nil {
		t.Fatal(err)
	}
	srv.SetVisibilityDelay(300 * time.Millisecond)
	ev, err := svc.Events.Insert("primary", timed("late", time.Now(), time.Hour)).Do()
	if err != nil {
		t.Fatal(err)
	}
	early, err := svc.Events.List("primary").SyncToken(first.NextSyncToken).Do()
	if err != nil || len(early.Items) != 0 {
		t.Fatalf("listed before it is visible: %v %d", err, len(early.Items))
	}
	// The early token does not skip it: it is listed once visible.
	time.Sleep(350 * time.Millisecond)
	late, err := svc.Events.List("primary").SyncToken(early.NextSyncToken).Do()
	if err != nil || len(late.Items) != 1 || late.Items[0].Id != ev.Id {
		t.Fatalf("after the delay: %v %+v", err, late)
	}
	// Full listings are not delayed.
	if _, err := svc.Events.Insert("primary", timed("b", time.Now(), time.Hour)).Do(); err != nil {
		t.Fatal(err)
	}
	full, _ := svc.Events.List("primary").Do()
	if len(full.Items) != 2 {
		t.Errorf("full list: %d items", len(full.Items))
	}
}

func TestHolidayAndBirthdayCalendars(t *testing.T) {
	srv, base, svc := startTest(t, Options{})
	const holiday = "en.usa#holiday@group.v.calendar.google.com"
	if err := srv.AddCalendar(CalendarSpec{ID: holiday, Kind: KindHoliday}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Events.List(holiday).Do(); err != nil {
		t.Fatal(err)
	}
	_, err := svc.Events.Watch(holiday, &calendar.Channel{Id: "h1", Type: "web_hook", Address: "https://example.com/hook"}).Do()
	wantErr(t, err, 400, "pushNotSupportedForRequestedResource")

	if code, _ := ctl(t, "POST", base+controlPath+"calendars", CalendarSpec{ID: BirthdaysCalendarID, Kind: KindBirthdays}); code != 200 {
		t.Fatalf("control: %d", code)
	}
	a, _ := svc.Events.Insert(BirthdaysCalendarID, &calendar.Event{Summary: "Ann", Start: &calendar.EventDateTime{Date: "2030-03-01"}, End: &calendar.EventDateTime{Date: "2030-03-02"}}).Do()
	b, _ := svc.Events.Insert(BirthdaysCalendarID, &calendar.Event{Summary: "Ben", Start: &calendar.EventDateTime{Date: "2030-04-01"}, End: &calendar.EventDateTime{Date: "2030-04-02"}}).Do()
	_, err = svc.Events.Watch(BirthdaysCalendarID, &calendar.Channel{Id: "b1", Type: "web_hook", Address: "https://example.com/hook"}).Do()
	wantErr(t, err, 400, "pushNotSupportedForRequestedResource")
	const weeks = "e_2_en#weeknum@group.v.calendar.google.com"
	if err := srv.AddCalendar(CalendarSpec{ID: weeks, Kind: KindWeekNumbers}); err != nil {
		t.Fatal(err)
	}
	_, err = svc.Events.Watch(weeks, &calendar.Channel{Id: "w1", Type: "web_hook", Address: "https://example.com/hook"}).Do()
	wantErr(t, err, 400, "pushNotSupportedForRequestedResource")
	tok, err := svc.Events.List(BirthdaysCalendarID).ShowDeleted(true).Do()
	if err != nil || len(tok.Items) != 2 {
		t.Fatalf("full: %v", err)
	}
	if err := svc.Events.Delete(BirthdaysCalendarID, a.Id).Do(); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Events.Patch(BirthdaysCalendarID, b.Id, &calendar.Event{Summary: "Ben!"}).Do(); err != nil {
		t.Fatal(err)
	}
	inc, err := svc.Events.List(BirthdaysCalendarID).SyncToken(tok.NextSyncToken).Do()
	if err != nil || len(inc.Items) != 1 || inc.Items[0].Id != b.Id {
		t.Fatalf("incremental after a delete and an update: want only the update, got %v %+v", err, inc.Items)
	}
	full, _ := svc.Events.List(BirthdaysCalendarID).ShowDeleted(true).Do()
	if len(full.Items) != 1 || full.Items[0].Id != b.Id {
		t.Fatalf("full listing: want the live event only, got %d", len(full.Items))
	}
}

// Google answers a plain http address 400 push.webhookUrlNotHttps; the
// emulator lets loopback ones through (local stacks).
func TestWatchNeedsHTTPS(t *testing.T) {
	_, _, svc := startTest(t, Options{})
	_, err := svc.Events.Watch("primary", &calendar.Channel{Id: "w1", Type: "web_hook", Address: "http://hooks.example.com/x"}).Do()
	wantErr(t, err, 400, "push.webhookUrlNotHttps")
	var ge *googleapi.Error
	if !errors.As(err, &ge) || !strings.Contains(ge.Message, "WebHook callback must be HTTPS") {
		t.Errorf("message: %v", err)
	}
	for i, addr := range []string{"https://hooks.example.com/x", "http://127.0.0.1:1/x", "http://[::1]:1/x", "http://localhost:1/x"} {
		ch, err := svc.Events.Watch("primary", &calendar.Channel{Id: "ok" + string(rune('a'+i)), Type: "web_hook", Address: addr}).Do()
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		_ = svc.Channels.Stop(ch).Do()
	}
}

// Injected faults can carry the bodies Google's front ends send instead of
// JSON: googleapi still reports the status.
func TestFaultBodyShapes(t *testing.T) {
	srv, base, svc := startTest(t, Options{})
	for _, shape := range []string{"html", "malformed", "noreason", "empty"} {
		srv.AddFault(Fault{Method: "events.list", Code: 502, Shape: shape})
		_, err := svc.Events.List("primary").Do()
		var ge *googleapi.Error
		if !errors.As(err, &ge) || ge.Code != 502 || len(ge.Errors) != 0 {
			t.Errorf("%s: %T %v", shape, err, err)
		}
	}
	srv.AddFault(Fault{Method: "events.list", Code: 502, Shape: "html"})
	resp, err := http.Get(base + APIPath + "calendars/primary/events")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 502 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(body), "<title>Error 502") {
		t.Errorf("html page: %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}
