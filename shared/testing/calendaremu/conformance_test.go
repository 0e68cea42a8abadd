package calendaremu

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func TestEventCRUD(t *testing.T) {
	_, _, svc := startTest(t, Options{})
	ctx := context.Background()
	ev, err := svc.Events.Insert("primary", &calendar.Event{
		Summary: "standup", Location: "room 1",
		Start:              &calendar.EventDateTime{DateTime: "2026-03-02T10:00:00+01:00", TimeZone: "Europe/Paris"},
		End:                &calendar.EventDateTime{DateTime: "2026-03-02T10:15:00+01:00", TimeZone: "Europe/Paris"},
		ExtendedProperties: &calendar.EventExtendedProperties{Private: map[string]string{"calsync.source": "a.b:c"}},
		Attendees:          []*calendar.EventAttendee{{Email: "x@example.com"}},
	}).Context(ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[a-v0-9]{26}$`).MatchString(ev.Id) {
		t.Errorf("generated id %q is not base32hex", ev.Id)
	}
	if !regexp.MustCompile(`^"\d{16}"$`).MatchString(ev.Etag) {
		t.Errorf("etag %q", ev.Etag)
	}
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`).MatchString(ev.Updated) || ev.Created == "" {
		t.Errorf("updated %q created %q", ev.Updated, ev.Created)
	}
	if ev.Kind != "calendar#event" || ev.Status != "confirmed" || ev.ICalUID != ev.Id+"@google.com" || ev.HtmlLink == "" {
		t.Errorf("fields: %+v", ev)
	}
	if ev.Organizer == nil || ev.Organizer.Email != DefaultUser || !ev.Organizer.Self || ev.Creator.Email != DefaultUser {
		t.Errorf("organizer/creator: %+v %+v", ev.Organizer, ev.Creator)
	}
	if ev.ExtendedProperties.Private["calsync.source"] != "a.b:c" || ev.Attendees[0].ResponseStatus != "needsAction" {
		t.Errorf("extended/attendees: %+v", ev)
	}
	got, err := svc.Events.Get(DefaultUser, ev.Id).Do()
	if err != nil || got.Etag != ev.Etag || got.Summary != "standup" {
		t.Fatalf("get: %v %+v", err, got)
	}
	// patch merges extendedProperties and changes the etag.
	p, err := svc.Events.Patch("primary", ev.Id, &calendar.Event{Summary: "standup v2",
		ExtendedProperties: &calendar.EventExtendedProperties{Private: map[string]string{"k2": "v"}}}).Do()
	if err != nil {
		t.Fatal(err)
	}
	if p.Etag == ev.Etag || p.Summary != "standup v2" || p.Location != "room 1" || p.ExtendedProperties.Private["calsync.source"] != "a.b:c" || p.ExtendedProperties.Private["k2"] != "v" {
		t.Errorf("patch: %+v %+v", p, p.ExtendedProperties)
	}
	// update replaces; changing the time bumps sequence.
	u := timed("moved", t0.Add(24*time.Hour), time.Hour)
	up, err := svc.Events.Update("primary", ev.Id, u).Do()
	if err != nil {
		t.Fatal(err)
	}
	if up.Location != "" || up.Sequence != 1 || up.Etag == p.Etag || up.Created != ev.Created {
		t.Errorf("update: %+v", up)
	}
	// client ids
	_, err = svc.Events.Insert("primary", &calendar.Event{Id: "abcxyz", Start: u.Start, End: u.End}).Do()
	wantErr(t, err, 400, "invalid")
	_, err = svc.Events.Insert("primary", &calendar.Event{Id: "abc", Start: u.Start, End: u.End}).Do()
	wantErr(t, err, 400, "invalid")
	if _, err = svc.Events.Insert("primary", &calendar.Event{Id: "abcdef0123", Start: u.Start, End: u.End}).Do(); err != nil {
		t.Fatal(err)
	}
	_, err = svc.Events.Insert("primary", &calendar.Event{Id: "abcdef0123", Start: u.Start, End: u.End}).Do()
	wantErr(t, err, 409, "duplicate")
	// delete, then the tombstone
	if err := svc.Events.Delete("primary", "abcdef0123").Do(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, svc.Events.Delete("primary", "abcdef0123").Do(), 410, "deleted")
	g, err := svc.Events.Get("primary", "abcdef0123").Do()
	if err != nil || g.Status != "cancelled" {
		t.Fatalf("get deleted: %v %+v", err, g)
	}
	_, err = svc.Events.Insert("primary", &calendar.Event{Id: "abcdef0123", Start: u.Start, End: u.End}).Do()
	wantErr(t, err, 409, "duplicate")
	// An update without status restores a deleted event.
	restored, err := svc.Events.Update("primary", "abcdef0123", &calendar.Event{Summary: "back", Start: u.Start, End: u.End}).Do()
	if err != nil || restored.Status != "confirmed" {
		t.Fatalf("restore: %v %+v", err, restored)
	}
	_, err = svc.Events.Get("primary", "nosuchevent").Do()
	wantErr(t, err, 404, "notFound")
	_, err = svc.Events.List("nobody@example.com").Do()
	wantErr(t, err, 404, "notFound")
	// validation
	_, err = svc.Events.Insert("primary", &calendar.Event{Summary: "x", Start: u.Start}).Do()
	wantErr(t, err, 400, "required")
	_, err = svc.Events.Insert("primary", &calendar.Event{Start: u.End, End: u.Start}).Do()
	wantErr(t, err, 400, "timeRangeEmpty")
	_, err = svc.Events.Insert("primary", &calendar.Event{Start: &calendar.EventDateTime{DateTime: "2026-01-01T10:00:00"}, End: u.End}).Do()
	wantErr(t, err, 400, "required")
}

func TestCalendars(t *testing.T) {
	_, _, svc := startTest(t, Options{})
	c, err := svc.Calendars.Insert(&calendar.Calendar{Summary: "team", TimeZone: "Europe/Berlin"}).Do()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Calendars.Get(c.Id).Do(); err != nil {
		t.Fatal(err)
	}
	pc, err := svc.Calendars.Get("primary").Do()
	if err != nil || pc.Id != DefaultUser {
		t.Fatalf("primary: %v %+v", err, pc)
	}
	l, err := svc.CalendarList.List().Do()
	if err != nil || len(l.Items) != 2 || !l.Items[0].Primary || l.Items[0].Id != DefaultUser {
		t.Fatalf("calendarList: %v %+v", err, l)
	}
	if _, err := svc.CalendarList.Get(c.Id).Do(); err != nil {
		t.Fatal(err)
	}
	if err := svc.Calendars.Delete(c.Id).Do(); err != nil {
		t.Fatal(err)
	}
	_, err = svc.Calendars.Get(c.Id).Do()
	wantErr(t, err, 404, "notFound")
	_, err = svc.Calendars.Insert(&calendar.Calendar{}).Do()
	wantErr(t, err, 400, "required")
}

func TestFullThenIncrementalSync(t *testing.T) {
	_, _, svc := startTest(t, Options{})
	var ids []string
	for i := range 25 {
		ev, err := svc.Events.Insert("primary", timed(fmt.Sprintf("e%02d", i), t0.Add(time.Duration(i)*time.Hour), 30*time.Minute)).Do()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.Id)
	}
	if err := svc.Events.Delete("primary", ids[3]).Do(); err != nil {
		t.Fatal(err)
	}
	// Full sync in pages of 10, with a change between pages.
	var pages int
	first := true
	items, token, pages := listAll(t, func(pt string) (*calendar.Events, error) {
		res, err := svc.Events.List("primary").MaxResults(10).PageToken(pt).Do()
		if first {
			first = false
			// Changed mid-sync: must come back in the incremental list.
			if _, err := svc.Events.Patch("primary", ids[0], &calendar.Event{Summary: "changed mid-sync"}).Do(); err != nil {
				t.Fatal(err)
			}
		}
		return res, err
	})
	if len(items) != 24 || pages != 3 {
		t.Fatalf("full sync: %d items in %d pages", len(items), pages)
	}
	seen := map[string]bool{}
	for _, it := range items {
		if seen[it.Id] || it.Status == "cancelled" {
			t.Fatalf("duplicate or cancelled item in plain list: %+v", it)
		}
		seen[it.Id] = true
	}
	// Changes after the sync token.
	if _, err := svc.Events.Patch("primary", ids[1], &calendar.Event{Summary: "changed"}).Do(); err != nil {
		t.Fatal(err)
	}
	if err := svc.Events.Delete("primary", ids[2]).Do(); err != nil {
		t.Fatal(err)
	}
	nw, err := svc.Events.Insert("primary", timed("new", t0, time.Hour)).Do()
	if err != nil {
		t.Fatal(err)
	}
	inc, token2, _ := listAll(t, func(pt string) (*calendar.Events, error) {
		if pt != "" {
			// Later pages need only the page token.
			return svc.Events.List("primary").MaxResults(2).PageToken(pt).Do()
		}
		return svc.Events.List("primary").SyncToken(token).MaxResults(2).Do()
	})
	got := map[string]string{}
	for _, it := range inc {
		got[it.Id] = it.Status
	}
	want := map[string]string{ids[0]: "confirmed", ids[1]: "confirmed", ids[2]: "cancelled", nw.Id: "confirmed"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("incremental: got %v want %v", got, want)
	}
	// Nothing changed since: empty incremental list, token still valid.
	res, err := svc.Events.List("primary").SyncToken(token2).Do()
	if err != nil || len(res.Items) != 0 || res.NextSyncToken == "" {
		t.Fatalf("empty incremental: %v %+v", err, res)
	}
	// showDeleted lists the tombstones too.
	all, _, _ := listAll(t, func(pt string) (*calendar.Events, error) {
		return svc.Events.List("primary").ShowDeleted(true).PageToken(pt).Do()
	})
	if len(all) != 26 {
		t.Fatalf("showDeleted: %d", len(all))
	}
}

func TestSyncTokenErrors(t *testing.T) {
	srv, _, svc := startTest(t, Options{})
	if _, err := svc.Events.Insert("primary", timed("a", t0, time.Hour)).Do(); err != nil {
		t.Fatal(err)
	}
	res, err := svc.Events.List("primary").Do()
	if err != nil {
		t.Fatal(err)
	}
	tok := res.NextSyncToken
	forbidden := map[string]func(*calendar.EventsListCall) *calendar.EventsListCall{
		"iCalUID":                 func(c *calendar.EventsListCall) *calendar.EventsListCall { return c.ICalUID("x@google.com") },
		"orderBy":                 func(c *calendar.EventsListCall) *calendar.EventsListCall { return c.OrderBy("updated") },
		"privateExtendedProperty": func(c *calendar.EventsListCall) *calendar.EventsListCall { return c.PrivateExtendedProperty("a=b") },
		"q":                       func(c *calendar.EventsListCall) *calendar.EventsListCall { return c.Q("x") },
		"sharedExtendedProperty":  func(c *calendar.EventsListCall) *calendar.EventsListCall { return c.SharedExtendedProperty("a=b") },
		"timeMin":                 func(c *calendar.EventsListCall) *calendar.EventsListCall { return c.TimeMin(t0.Format(time.RFC3339)) },
		"timeMax":                 func(c *calendar.EventsListCall) *calendar.EventsListCall { return c.TimeMax(t0.Format(time.RFC3339)) },
		"updatedMin": func(c *calendar.EventsListCall) *calendar.EventsListCall {
			return c.UpdatedMin(t0.Format(time.RFC3339))
		},
		"showDeleted=false": func(c *calendar.EventsListCall) *calendar.EventsListCall { return c.ShowDeleted(false) },
	}
	for name, f := range forbidden {
		_, err := f(svc.Events.List("primary").SyncToken(tok)).Do()
		if err == nil {
			t.Errorf("%s with syncToken: no error", name)
			continue
		}
		if c, r := reasonOf(t, err); c != 400 || r != "invalid" {
			t.Errorf("%s with syncToken: %d %s", name, c, r)
		}
	}
	if _, err := svc.Events.List("primary").SyncToken(tok).ShowDeleted(true).Do(); err != nil {
		t.Fatalf("showDeleted=true with token: %v", err)
	}
	_, err = svc.Events.List("primary").SyncToken("garbage").Do()
	wantErr(t, err, 410, "fullSyncRequired")
	if err := srv.InvalidateSyncTokens(DefaultUser); err != nil {
		t.Fatal(err)
	}
	_, err = svc.Events.List("primary").SyncToken(tok).Do()
	wantErr(t, err, 410, "fullSyncRequired")
	if it := errItem(t, err); it["domain"] != "calendar" || it["locationType"] != "parameter" || it["location"] != "syncToken" {
		t.Errorf("410 error item: %v", it)
	}
	var ge *googleapi.Error
	if errorsAs(err, &ge) && ge.Message != "Sync token is no longer valid, a full sync is required." {
		t.Errorf("message %q", ge.Message)
	}
	_, err = svc.Events.List("primary").OrderBy("startTime").Do()
	wantErr(t, err, 400, "badRequest")
	_, err = svc.Events.List("primary").TimeMin(t0.Format(time.RFC3339)).TimeMax(t0.Format(time.RFC3339)).Do()
	wantErr(t, err, 400, "timeRangeEmpty")
	_, err = svc.Events.List("primary").PageToken("bogus").Do()
	wantErr(t, err, 400, "invalid")
	// maxResults above 2500 clamps.
	if _, err := svc.Events.List("primary").MaxResults(100000).Do(); err != nil {
		t.Fatal(err)
	}
}

func TestListFilters(t *testing.T) {
	_, _, svc := startTest(t, Options{})
	for i := range 5 {
		ev := timed(fmt.Sprintf("Meeting %d", i), t0.Add(time.Duration(i)*24*time.Hour), time.Hour)
		ev.ExtendedProperties = &calendar.EventExtendedProperties{Shared: map[string]string{"n": fmt.Sprint(i % 2)}}
		if _, err := svc.Events.Insert("primary", ev).Do(); err != nil {
			t.Fatal(err)
		}
	}
	res, err := svc.Events.List("primary").TimeMin(t0.Add(24 * time.Hour).Format(time.RFC3339)).TimeMax(t0.Add(72 * time.Hour).Format(time.RFC3339)).Do()
	if err != nil || len(res.Items) != 2 {
		t.Fatalf("time window: %v %d", err, len(res.Items))
	}
	res, err = svc.Events.List("primary").Q("meeting 3").Do()
	if err != nil || len(res.Items) != 1 {
		t.Fatalf("q: %v %d", err, len(res.Items))
	}
	res, err = svc.Events.List("primary").SharedExtendedProperty("n=1").Do()
	if err != nil || len(res.Items) != 2 {
		t.Fatalf("shared: %v %d", err, len(res.Items))
	}
	res, err = svc.Events.List("primary").SingleEvents(true).OrderBy("startTime").Do()
	if err != nil || len(res.Items) != 5 || !sort.SliceIsSorted(res.Items, func(i, j int) bool {
		return res.Items[i].Start.DateTime < res.Items[j].Start.DateTime
	}) {
		t.Fatalf("orderBy startTime: %v", err)
	}
	res, err = svc.Events.List("primary").ICalUID(res.Items[2].ICalUID).Do()
	if err != nil || len(res.Items) != 1 {
		t.Fatalf("iCalUID: %v %d", err, len(res.Items))
	}
}

func TestConditionalRequests(t *testing.T) {
	_, _, svc := startTest(t, Options{})
	ev, err := svc.Events.Insert("primary", timed("x", t0, time.Hour)).Do()
	if err != nil {
		t.Fatal(err)
	}
	_, err = svc.Events.Get("primary", ev.Id).IfNoneMatch(ev.Etag).Do()
	if !googleapi.IsNotModified(err) {
		t.Fatalf("If-None-Match: %v", err)
	}
	call := svc.Events.Patch("primary", ev.Id, &calendar.Event{Summary: "y"})
	call.Header().Set("If-Match", `"1"`)
	_, err = call.Do()
	wantErr(t, err, 412, "conditionNotMet")
	call = svc.Events.Patch("primary", ev.Id, &calendar.Event{Summary: "y"})
	call.Header().Set("If-Match", ev.Etag)
	if _, err := call.Do(); err != nil {
		t.Fatal(err)
	}
}

// TestPagesStableUnderChanges: untouched events appear exactly once however the
// calendar changes between pages, and the next incremental list returns every
// change made during the pagination.
func TestPagesStableUnderChanges(t *testing.T) {
	_, _, svc := startTest(t, Options{})
	var ids []string
	for i := range 100 {
		ev, err := svc.Events.Insert("primary", timed(fmt.Sprint(i), t0.Add(time.Duration(i)*time.Hour), time.Hour)).Do()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.Id)
	}
	touched := map[string]bool{}
	count := map[string]int{}
	page := 0
	_, token, _ := listAll(t, func(pt string) (*calendar.Events, error) {
		res, err := svc.Events.List("primary").MaxResults(10).PageToken(pt).Do()
		if err != nil {
			return nil, err
		}
		for _, it := range res.Items {
			count[it.Id]++
		}
		page++
		// Between pages: delete a later event, patch an earlier one, insert one.
		if del := ids[99-page]; !touched[del] {
			touched[del] = true
			if err := svc.Events.Delete("primary", del).Do(); err != nil {
				t.Fatal(err)
			}
		}
		touched[ids[page]] = true
		if _, err := svc.Events.Patch("primary", ids[page], &calendar.Event{Summary: "p"}).Do(); err != nil {
			t.Fatal(err)
		}
		nw, err := svc.Events.Insert("primary", timed("new", t0, time.Hour)).Do()
		if err != nil {
			t.Fatal(err)
		}
		touched[nw.Id] = true
		return res, nil
	})
	for _, id := range ids {
		if !touched[id] && count[id] != 1 {
			t.Errorf("untouched %s listed %d times", id, count[id])
		}
	}
	inc, _, _ := listAll(t, func(pt string) (*calendar.Events, error) {
		return svc.Events.List("primary").SyncToken(token).PageToken(pt).Do()
	})
	got := map[string]bool{}
	for _, it := range inc {
		got[it.Id] = true
	}
	for id := range touched {
		if !got[id] {
			t.Errorf("change to %s missing from the incremental list", id)
		}
	}
}

func TestAccessTokenExpiry(t *testing.T) {
	srv, base, _ := startTest(t, Options{AccessTokenTTL: 20 * time.Millisecond})
	tok := srv.IssueToken("erin@calsync.test")
	svc, err := NewService(t.Context(), base, option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok.AccessToken})))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Calendars.Get("primary").Do(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	_, err = svc.Calendars.Get("primary").Do()
	wantErr(t, err, 401, "authError")
}
