package calendaremu

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/api/calendar/v3"
)

func TestRRuleExpansion(t *testing.T) {
	paris, _ := time.LoadLocation("Europe/Paris")
	cases := []struct {
		rule  string
		start time.Time
		want  []string
	}{
		{"RRULE:FREQ=DAILY;COUNT=3", time.Date(2026, 3, 28, 10, 0, 0, 0, paris),
			// DST starts 2026-03-29 in Paris: the wall clock stays at 10:00.
			[]string{"2026-03-28T10:00:00+01:00", "2026-03-29T10:00:00+02:00", "2026-03-30T10:00:00+02:00"}},
		{"RRULE:FREQ=WEEKLY;BYDAY=MO,WE;COUNT=4", time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC),
			[]string{"2026-03-04T09:00:00Z", "2026-03-09T09:00:00Z", "2026-03-11T09:00:00Z", "2026-03-16T09:00:00Z"}},
		{"RRULE:FREQ=WEEKLY;INTERVAL=2;UNTIL=20260331T000000Z", time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC),
			[]string{"2026-03-02T09:00:00Z", "2026-03-16T09:00:00Z", "2026-03-30T09:00:00Z"}},
		{"RRULE:FREQ=MONTHLY;COUNT=3", time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC),
			[]string{"2026-01-31T09:00:00Z", "2026-03-31T09:00:00Z", "2026-05-31T09:00:00Z"}},
		{"RRULE:FREQ=MONTHLY;BYDAY=-1FR;COUNT=2", time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC),
			[]string{"2026-01-30T09:00:00Z", "2026-02-27T09:00:00Z"}},
		{"RRULE:FREQ=YEARLY;COUNT=2", time.Date(2024, 2, 29, 9, 0, 0, 0, time.UTC),
			[]string{"2024-02-29T09:00:00Z", "2028-02-29T09:00:00Z"}},
	}
	for _, c := range cases {
		r, err := parseRecurrence([]string{c.rule}, c.start.Location())
		if err != nil {
			t.Fatalf("%s: %v", c.rule, err)
		}
		var got []string
		for occ := range r.occurrences(c.start, false, c.start.Location(), time.Time{}, c.start.AddDate(10, 0, 0)) {
			got = append(got, occ.Format(time.RFC3339))
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s:\n got %v\nwant %v", c.rule, got, c.want)
		}
	}
	for _, bad := range []string{"RRULE:FREQ=HOURLY", "RRULE:COUNT=2", "RDATE:20260101T000000Z", "RRULE:FREQ=DAILY;BYSETPOS=1", "nonsense"} {
		if _, err := parseRecurrence([]string{bad}, time.UTC); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestRecurringExceptions(t *testing.T) {
	_, _, svc := startTest(t, Options{})
	master, err := svc.Events.Insert("primary", &calendar.Event{Summary: "daily",
		Start:      &calendar.EventDateTime{DateTime: "2026-03-02T09:00:00Z", TimeZone: "UTC"},
		End:        &calendar.EventDateTime{DateTime: "2026-03-02T09:30:00Z", TimeZone: "UTC"},
		Recurrence: []string{"RRULE:FREQ=DAILY;COUNT=5"}}).Do()
	if err != nil {
		t.Fatal(err)
	}
	// A timed series needs a time zone, as at Google.
	_, err = svc.Events.Insert("primary", &calendar.Event{Start: &calendar.EventDateTime{DateTime: "2026-03-02T09:00:00Z"},
		End: &calendar.EventDateTime{DateTime: "2026-03-02T09:30:00Z"}, Recurrence: []string{"RRULE:FREQ=DAILY"}}).Do()
	wantErr(t, err, 400, "required")
	_, err = svc.Events.Insert("primary", &calendar.Event{Start: master.Start, End: master.End, Recurrence: []string{"RRULE:FREQ=SECONDLY"}}).Do()
	wantErr(t, err, 400, "invalid")

	full, _, _ := listAll(t, func(pt string) (*calendar.Events, error) { return svc.Events.List("primary").PageToken(pt).Do() })
	token := ""
	{
		res, err := svc.Events.List("primary").Do()
		if err != nil {
			t.Fatal(err)
		}
		token = res.NextSyncToken
	}
	if len(full) != 1 || len(full[0].Recurrence) != 1 {
		t.Fatalf("master list: %+v", full)
	}
	inst, err := svc.Events.Instances("primary", master.Id).Do()
	if err != nil || len(inst.Items) != 5 {
		t.Fatalf("instances: %v %d", err, len(inst.Items))
	}
	second := inst.Items[1]
	if second.Id != master.Id+"_20260303T090000Z" || second.RecurringEventId != master.Id || second.OriginalStartTime.DateTime != "2026-03-03T09:00:00Z" {
		t.Fatalf("instance: %+v %+v", second, second.OriginalStartTime)
	}
	// Modify the 2nd, cancel the 3rd occurrence.
	mod, err := svc.Events.Patch("primary", second.Id, &calendar.Event{Summary: "moved",
		Start: &calendar.EventDateTime{DateTime: "2026-03-03T11:00:00Z", TimeZone: "UTC"},
		End:   &calendar.EventDateTime{DateTime: "2026-03-03T11:30:00Z", TimeZone: "UTC"}}).Do()
	if err != nil {
		t.Fatal(err)
	}
	if mod.Id != second.Id || mod.RecurringEventId != master.Id || mod.OriginalStartTime.DateTime != "2026-03-03T09:00:00Z" {
		t.Fatalf("exception: %+v", mod)
	}
	third := inst.Items[2].Id
	if err := svc.Events.Delete("primary", third).Do(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, svc.Events.Delete("primary", third).Do(), 410, "deleted")
	_, err = svc.Events.Get("primary", master.Id+"_20260303T093000Z").Do()
	wantErr(t, err, 404, "notFound")

	inc, err := svc.Events.List("primary").SyncToken(token).Do()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, it := range inc.Items {
		got[it.Id] = it.Status + "/" + it.RecurringEventId
	}
	want := map[string]string{second.Id: "confirmed/" + master.Id, third: "cancelled/" + master.Id}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("incremental after exceptions: %v want %v", got, want)
	}
	// singleEvents: 4 instances (one cancelled), the modified one with its new time.
	single, err := svc.Events.List("primary").SingleEvents(true).OrderBy("startTime").Do()
	if err != nil || len(single.Items) != 4 {
		t.Fatalf("singleEvents: %v %d", err, len(single.Items))
	}
	if single.Items[1].Summary != "moved" || single.Items[1].Start.DateTime != "2026-03-03T11:00:00Z" {
		t.Fatalf("singleEvents exception: %+v", single.Items[1])
	}
	// Plain list: master + modified exception (cancelled one hidden).
	plain, err := svc.Events.List("primary").Do()
	if err != nil || len(plain.Items) != 2 {
		t.Fatalf("plain: %v %d", err, len(plain.Items))
	}
	inst, err = svc.Events.Instances("primary", master.Id).Do()
	if err != nil || len(inst.Items) != 4 {
		t.Fatalf("instances after exceptions: %v %d", err, len(inst.Items))
	}
	// Deleting the series cancels the master and its exceptions.
	if err := svc.Events.Delete("primary", master.Id).Do(); err != nil {
		t.Fatal(err)
	}
	inc2, err := svc.Events.List("primary").SyncToken(inc.NextSyncToken).Do()
	if err != nil {
		t.Fatal(err)
	}
	got = map[string]string{}
	for _, it := range inc2.Items {
		got[it.Id] = it.Status
	}
	want = map[string]string{master.Id: "cancelled", second.Id: "cancelled"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after series delete: %v want %v", got, want)
	}
	single, err = svc.Events.List("primary").SingleEvents(true).Do()
	if err != nil || len(single.Items) != 0 {
		t.Fatalf("singleEvents after delete: %v %d", err, len(single.Items))
	}
}

func TestAllDaySeries(t *testing.T) {
	_, _, svc := startTest(t, Options{})
	m, err := svc.Events.Insert("primary", &calendar.Event{Summary: "weekly",
		Start: &calendar.EventDateTime{Date: "2026-03-02"}, End: &calendar.EventDateTime{Date: "2026-03-03"},
		Recurrence: []string{"RRULE:FREQ=WEEKLY;COUNT=3", "EXDATE;VALUE=DATE:20260309"}}).Do()
	if err != nil {
		t.Fatal(err)
	}
	inst, err := svc.Events.Instances("primary", m.Id).Do()
	if err != nil || len(inst.Items) != 2 {
		t.Fatalf("instances: %v %+v", err, inst)
	}
	if inst.Items[1].Id != m.Id+"_20260316" || inst.Items[1].Start.Date != "2026-03-16" || inst.Items[1].End.Date != "2026-03-17" {
		t.Fatalf("all-day instance: %+v", inst.Items[1])
	}
	res, err := svc.Events.List("primary").SingleEvents(true).TimeMin("2026-03-10T00:00:00Z").Do()
	if err != nil || len(res.Items) != 1 {
		t.Fatalf("window: %v %d", err, len(res.Items))
	}
}

func TestSingleEventsIncremental(t *testing.T) {
	_, _, svc := startTest(t, Options{})
	m, err := svc.Events.Insert("primary", &calendar.Event{Summary: "s",
		Start:      &calendar.EventDateTime{DateTime: "2026-03-02T09:00:00Z", TimeZone: "UTC"},
		End:        &calendar.EventDateTime{DateTime: "2026-03-02T09:30:00Z", TimeZone: "UTC"},
		Recurrence: []string{"RRULE:FREQ=DAILY;COUNT=3"}}).Do()
	if err != nil {
		t.Fatal(err)
	}
	full, err := svc.Events.List("primary").SingleEvents(true).Do()
	if err != nil || len(full.Items) != 3 {
		t.Fatalf("full: %v %d", err, len(full.Items))
	}
	if _, err := svc.Events.Patch("primary", m.Id, &calendar.Event{Summary: "s2"}).Do(); err != nil {
		t.Fatal(err)
	}
	inc, err := svc.Events.List("primary").SingleEvents(true).SyncToken(full.NextSyncToken).Do()
	if err != nil || len(inc.Items) != 3 || inc.Items[0].Summary != "s2" || inc.Items[0].RecurringEventId != m.Id {
		t.Fatalf("changed master as instances: %v %+v", err, inc.Items)
	}
	if err := svc.Events.Delete("primary", full.Items[1].Id).Do(); err != nil {
		t.Fatal(err)
	}
	inc2, err := svc.Events.List("primary").SingleEvents(true).SyncToken(inc.NextSyncToken).Do()
	if err != nil || len(inc2.Items) != 1 || inc2.Items[0].Status != "cancelled" || inc2.Items[0].Id != full.Items[1].Id {
		t.Fatalf("cancelled occurrence: %v %+v", err, inc2.Items)
	}
}
