package calendaremu

import (
	"slices"
	"sort"
	"testing"
	"time"

	"google.golang.org/api/calendar/v3"
)

// Event types: focusTime, outOfOffice, workingLocation, birthday and
// fromGmail next to default, with Google's creation rules, the type kept
// for good, and events.list's eventTypes filter (full and incremental).
func TestEventTypes(t *testing.T) {
	srv, _, svc := startTest(t, Options{})
	start := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	typed := func(typ string, ev *calendar.Event) *calendar.Event { ev.EventType = typ; return ev }
	allDay := func(day time.Time) *calendar.Event {
		return &calendar.Event{Summary: "day", Start: &calendar.EventDateTime{Date: day.Format("2006-01-02")},
			End: &calendar.EventDateTime{Date: day.AddDate(0, 0, 1).Format("2006-01-02")}}
	}
	ids := map[string]string{}
	for _, typ := range []string{"default", "focusTime", "outOfOffice", "workingLocation"} {
		ev := typed(typ, timed(typ, start, time.Hour))
		if typ == "focusTime" {
			ev.FocusTimeProperties = &calendar.EventFocusTimeProperties{ChatStatus: "doNotDisturb"}
		}
		got, err := svc.Events.Insert("primary", ev).Do()
		if err != nil || got.EventType != typ {
			t.Fatalf("insert %s: %v %+v", typ, err, got)
		}
		ids[typ] = got.Id
		if typ == "focusTime" && (got.FocusTimeProperties == nil || got.FocusTimeProperties.ChatStatus != "doNotDisturb") {
			t.Errorf("focusTimeProperties not kept: %+v", got.FocusTimeProperties)
		}
	}
	bday := typed("birthday", allDay(start))
	bday.Recurrence = []string{"RRULE:FREQ=YEARLY"}
	b, err := svc.Events.Insert("primary", bday).Do()
	if err != nil {
		t.Fatalf("birthday: %v", err)
	}
	ids["birthday"] = b.Id
	gmail, err := srv.InsertFromGmail(DefaultUser, "Flight", start, start.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ids["fromGmail"] = gmail

	other, _ := svc.Calendars.Insert(&calendar.Calendar{Summary: "team"}).Do()
	for what, ins := range map[string]struct {
		cal string
		ev  *calendar.Event
	}{
		"fromGmail through the API":   {"primary", typed("fromGmail", timed("x", start, time.Hour))},
		"focusTime on a secondary":    {other.Id, typed("focusTime", timed("x", start, time.Hour))},
		"all-day outOfOffice":         {"primary", typed("outOfOffice", allDay(start))},
		"timed birthday":              {"primary", typed("birthday", timed("x", start, time.Hour))},
		"birthday without recurrence": {"primary", typed("birthday", allDay(start))},
		"unknown type":                {"primary", typed("meeting", timed("x", start, time.Hour))},
	} {
		_, err := svc.Events.Insert(ins.cal, ins.ev).Do()
		if c, r := reasonOf(t, err); c != 400 || r != "invalid" {
			t.Errorf("%s: %d %s", what, c, r)
		}
	}
	_, err = svc.Events.Patch("primary", ids["focusTime"], &calendar.Event{EventType: "default"}).Do()
	wantErr(t, err, 400, "invalid")
	if got, err := svc.Events.Patch("primary", ids["focusTime"], &calendar.Event{Summary: "deep work"}).Do(); err != nil || got.EventType != "focusTime" {
		t.Errorf("patch keeps the type: %v %+v", err, got)
	}

	listed := func(call *calendar.EventsListCall) []string {
		t.Helper()
		res, err := call.Do()
		if err != nil {
			t.Fatal(err)
		}
		var types []string
		for _, e := range res.Items {
			types = append(types, e.EventType)
		}
		sort.Strings(types)
		return types
	}
	if got := listed(svc.Events.List("primary")); len(got) != 6 {
		t.Errorf("no filter: %v", got)
	}
	if got := listed(svc.Events.List("primary").EventTypes("focusTime", "fromGmail")); !slices.Equal(got, []string{"focusTime", "fromGmail"}) {
		t.Errorf("eventTypes=focusTime,fromGmail: %v", got)
	}
	_, err = svc.Events.List("primary").EventTypes("meeting").Do()
	wantErr(t, err, 400, "invalid")
	full, _ := svc.Events.List("primary").Do()
	if err := svc.Events.Delete("primary", ids["outOfOffice"]).Do(); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Events.Patch("primary", ids["default"], &calendar.Event{Summary: "changed"}).Do(); err != nil {
		t.Fatal(err)
	}
	inc := svc.Events.List("primary").SyncToken(full.NextSyncToken).EventTypes("outOfOffice")
	if res, err := inc.Do(); err != nil || len(res.Items) != 1 || res.Items[0].Id != ids["outOfOffice"] || res.Items[0].Status != "cancelled" {
		t.Errorf("incremental eventTypes=outOfOffice: %v %+v", err, res)
	}

	// The contacts' birthday calendar holds birthday events only.
	if err := srv.AddCalendar(CalendarSpec{ID: BirthdaysCalendarID, Kind: KindBirthdays}); err != nil {
		t.Fatal(err)
	}
	if got, err := svc.Events.Insert(BirthdaysCalendarID, allDay(start)).Do(); err != nil || got.EventType != "birthday" {
		t.Errorf("birthday calendar: %v %+v", err, got)
	}
	_, err = svc.Events.Insert(BirthdaysCalendarID, typed("focusTime", timed("x", start, time.Hour))).Do()
	wantErr(t, err, 400, "invalid")
}

// events.watch with eventTypes pushes the changes of those types only.
func TestWatchEventTypes(t *testing.T) {
	_, _, svc := startTest(t, Options{})
	rc := newReceiver(t)
	for id, types := range map[string][]string{"focus-only": {"focusTime"}, "all": nil} {
		if _, err := svc.Events.Watch("primary", &calendar.Channel{Id: id, Type: "web_hook", Address: rc.URL}).EventTypes(types...).Do(); err != nil {
			t.Fatal(err)
		}
	}
	_, err := svc.Events.Watch("primary", &calendar.Channel{Id: "bad", Type: "web_hook", Address: rc.URL}).EventTypes("meeting").Do()
	wantErr(t, err, 400, "invalid")
	start := time.Now().Add(time.Hour)
	ft := timed("focus", start, time.Hour)
	ft.EventType = "focusTime"
	for _, ev := range []*calendar.Event{timed("plain", start, time.Hour), ft} {
		if _, err := svc.Events.Insert("primary", ev).Do(); err != nil {
			t.Fatal(err)
		}
	}
	rc.waitFor(t, 5) // 2 sync + 3 exists
	time.Sleep(100 * time.Millisecond)
	perChannel := map[string]int{}
	for _, m := range rc.waitFor(t, 5) {
		if m.h.Get("X-Goog-Resource-State") == "exists" {
			perChannel[m.h.Get("X-Goog-Channel-Id")]++
		}
	}
	if perChannel["focus-only"] != 1 || perChannel["all"] != 2 {
		t.Errorf("exists messages per channel: %v", perChannel)
	}
}
