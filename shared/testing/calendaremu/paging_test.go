package calendaremu

import (
	"testing"
	"time"

	"google.golang.org/api/calendar/v3"
)

// Pages may be short or empty and still carry a nextPageToken; a client
// that follows the tokens gets every item once, full and incremental.
func TestShortAndEmptyPages(t *testing.T) {
	srv, _, svc := startTest(t, Options{})
	srv.SetPaging(Paging{ShortPages: 1}) // every page that has a successor
	start := time.Now().Add(time.Hour).Truncate(time.Second)
	var ids []string
	for i := range 7 {
		ev, err := svc.Events.Insert("primary", timed("e", start.Add(time.Duration(i)*time.Hour), time.Hour)).Do()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.Id)
	}
	empty := 0
	follow := func(call func(pt string) (*calendar.Events, error)) ([]string, string, int) {
		t.Helper()
		var got []string
		short := 0
		pt := ""
		for range 100 {
			res, err := call(pt)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range res.Items {
				got = append(got, e.Id)
			}
			if res.NextPageToken == "" {
				return got, res.NextSyncToken, short
			}
			if len(res.Items) < 2 {
				short++
			}
			if len(res.Items) == 0 {
				empty++
			}
			pt = res.NextPageToken
		}
		t.Fatal("no last page after 100 pages")
		return nil, "", 0
	}
	got, sync, short := follow(func(pt string) (*calendar.Events, error) {
		return svc.Events.List("primary").MaxResults(2).PageToken(pt).Do()
	})
	if len(got) != 7 || short == 0 || sync == "" {
		t.Fatalf("full listing: %d items, %d short pages, sync token %q", len(got), short, sync)
	}
	seen := map[string]bool{}
	for _, id := range got {
		if seen[id] {
			t.Errorf("%s listed twice", id)
		}
		seen[id] = true
	}
	for _, id := range ids[:5] {
		if _, err := svc.Events.Patch("primary", id, &calendar.Event{Summary: "changed"}).Do(); err != nil {
			t.Fatal(err)
		}
	}
	got, _, short = follow(func(pt string) (*calendar.Events, error) {
		return svc.Events.List("primary").SyncToken(sync).MaxResults(2).PageToken(pt).Do()
	})
	if len(got) != 5 || short == 0 || empty == 0 {
		t.Errorf("incremental: %d items, %d short pages, %d empty pages in all", len(got), short, empty)
	}
}

// Page tokens expire: an old one answers 410 fullSyncRequired (location
// pageToken), so the listing starts again.
func TestPageTokensExpire(t *testing.T) {
	_, base, svc := startTest(t, Options{})
	if code, _ := ctl(t, "PUT", base+controlPath+"paging", Paging{TokenTTL: 50 * time.Millisecond}); code != 200 {
		t.Fatalf("control: %d", code)
	}
	for range 3 {
		if _, err := svc.Events.Insert("primary", timed("e", time.Now().Add(time.Hour), time.Hour)).Do(); err != nil {
			t.Fatal(err)
		}
	}
	first, err := svc.Events.List("primary").MaxResults(1).Do()
	if err != nil || first.NextPageToken == "" {
		t.Fatalf("first page: %v", err)
	}
	if _, err := svc.Events.List("primary").MaxResults(1).PageToken(first.NextPageToken).Do(); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	_, err = svc.Events.List("primary").MaxResults(1).PageToken(first.NextPageToken).Do()
	wantErr(t, err, 410, "fullSyncRequired")
	if it := errItem(t, err); it["location"] != "pageToken" {
		t.Errorf("error item: %v", it)
	}
}

// calendarList.list pages the same way: short and empty pages with a
// nextPageToken, every entry once.
func TestShortCalendarListPages(t *testing.T) {
	srv, _, svc := startTest(t, Options{})
	srv.SetPaging(Paging{ShortPages: 1})
	for range 6 {
		if _, err := svc.Calendars.Insert(&calendar.Calendar{Summary: "c"}).Do(); err != nil {
			t.Fatal(err)
		}
	}
	seen, short, pt := map[string]bool{}, 0, ""
	for range 100 {
		res, err := svc.CalendarList.List().MaxResults(2).PageToken(pt).Do()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range res.Items {
			if seen[e.Id] {
				t.Errorf("%s listed twice", e.Id)
			}
			seen[e.Id] = true
		}
		if pt = res.NextPageToken; pt == "" {
			if res.NextSyncToken == "" {
				t.Error("last page without nextSyncToken")
			}
			break
		}
		if len(res.Items) < 2 {
			short++
		}
	}
	if len(seen) != 7 || short == 0 {
		t.Errorf("%d entries (want 7), %d short pages", len(seen), short)
	}
}
