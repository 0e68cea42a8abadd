package calendaremu

import (
	"testing"

	"google.golang.org/api/calendar/v3"
)

// calendarList's writes and watch take the scopes the discovery document
// lists, not any token: events.readonly opens none of them.
func TestCalendarListScopes(t *testing.T) {
	srv, base, _ := startTest(t, Options{})
	const other = "team@group.calendar.google.com"
	if err := srv.AddCalendar(CalendarSpec{ID: other, Owner: "owner@calsync.test"}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Share(other, "gina@calsync.test", "reader", false); err != nil {
		t.Fatal(err)
	}
	_, svc := consent(t, base, "gina@calsync.test", scopePrefix+"calendar.events.readonly")
	_, err := svc.CalendarList.Watch(&calendar.Channel{Id: "l1", Type: "web_hook", Address: "https://127.0.0.1:1/hook"}).Do()
	wantErr(t, err, 403, "insufficientPermissions")
	_, err = svc.CalendarList.Insert(&calendar.CalendarListEntry{Id: other}).Do()
	wantErr(t, err, 403, "insufficientPermissions")
	err = svc.CalendarList.Delete(other).Do()
	wantErr(t, err, 403, "insufficientPermissions")
	// The list's read-only scope opens watch, not the writes.
	_, ro := consent(t, base, "gina@calsync.test", scopePrefix+"calendar.calendarlist.readonly")
	if _, err := ro.CalendarList.Watch(&calendar.Channel{Id: "l2", Type: "web_hook", Address: "https://127.0.0.1:1/hook"}).Do(); err != nil {
		t.Fatalf("watch with calendarlist.readonly: %v", err)
	}
	_, err = ro.CalendarList.Insert(&calendar.CalendarListEntry{Id: other}).Do()
	wantErr(t, err, 403, "insufficientPermissions")
}
