package calendaremu

import (
	"context"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/option"
)

// userService is an official client acting as email (a grant issued by the emulator).
func userService(t *testing.T, srv *Server, base, email string) *calendar.Service {
	t.Helper()
	tok := srv.IssueToken(email)
	svc, err := NewService(context.Background(), base, option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok.AccessToken})))
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func listIDs(t *testing.T, call *calendar.CalendarListListCall) (ids []string, roles map[string]string, token string) {
	t.Helper()
	roles = map[string]string{}
	pt := ""
	for {
		if pt != "" {
			call.PageToken(pt)
		}
		res, err := call.Do()
		if err != nil {
			t.Fatalf("calendarList.list: %v", err)
		}
		for _, e := range res.Items {
			id := e.Id
			if e.Deleted {
				id = "-" + id
			}
			ids = append(ids, id)
			roles[e.Id] = e.AccessRole
		}
		if res.NextPageToken == "" {
			if res.NextSyncToken == "" {
				t.Fatal("last calendarList page without nextSyncToken")
			}
			return ids, roles, res.NextSyncToken
		}
		if res.NextSyncToken != "" {
			t.Fatal("nextSyncToken on a page that is not the last")
		}
		pt = res.NextPageToken
	}
}

func TestCalendarListOwnedSharedIncremental(t *testing.T) {
	srv, base, alice := startTest(t, Options{})
	ctx := context.Background()
	bob := userService(t, srv, base, "bob@x.test")
	team, err := alice.Calendars.Insert(&calendar.Calendar{Summary: "team"}).Do()
	if err != nil {
		t.Fatal(err)
	}
	// Alice's list: her primary first, then the calendar she created.
	ids, roles, _ := listIDs(t, alice.CalendarList.List())
	if len(ids) != 2 || ids[0] != DefaultUser || ids[1] != team.Id || roles[team.Id] != "owner" {
		t.Fatalf("alice's list %v %v", ids, roles)
	}
	ids, _, bobTok := listIDs(t, bob.CalendarList.List())
	if len(ids) != 1 || ids[0] != "bob@x.test" {
		t.Fatalf("bob's list %v", ids)
	}
	// Not shared yet: bob can neither read nor add it (Google's 404 for calendars you cannot see).
	_, err = bob.CalendarList.Insert(&calendar.CalendarListEntry{Id: team.Id}).Do()
	wantErr(t, err, 404, "notFound")
	_, err = bob.Events.List(team.Id).Do()
	wantErr(t, err, 404, "notFound")
	if err := srv.Share(team.Id, "bob@x.test", "reader", false); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Events.List(team.Id).Do(); err != nil {
		t.Fatalf("shared calendar not readable: %v", err)
	}
	e, err := bob.CalendarList.Insert(&calendar.CalendarListEntry{Id: team.Id}).Do()
	if err != nil || e.AccessRole != "reader" || e.Primary {
		t.Fatalf("insert: %+v %v", e, err)
	}
	// Incremental: only the new entry.
	res, err := bob.CalendarList.List().SyncToken(bobTok).Do()
	if err != nil || len(res.Items) != 1 || res.Items[0].Id != team.Id || res.NextSyncToken == "" {
		t.Fatalf("incremental after insert: %+v %v", res, err)
	}
	tok2 := res.NextSyncToken
	// minAccessRole filters; it is refused with a sync token.
	ids, _, _ = listIDs(t, bob.CalendarList.List().MinAccessRole("writer"))
	if len(ids) != 1 || ids[0] != "bob@x.test" {
		t.Fatalf("minAccessRole writer: %v", ids)
	}
	_, err = bob.CalendarList.List().SyncToken(tok2).MinAccessRole("reader").Do()
	wantErr(t, err, 400, "invalid")
	_, err = bob.CalendarList.List().MinAccessRole("admin").Do()
	wantErr(t, err, 400, "invalid")
	// Delete: a tombstone in incremental lists and with showDeleted, 404 for get.
	if err := bob.CalendarList.Delete(team.Id).Do(); err != nil {
		t.Fatal(err)
	}
	res, err = bob.CalendarList.List().SyncToken(tok2).Do()
	if err != nil || len(res.Items) != 1 || !res.Items[0].Deleted || res.Items[0].Id != team.Id {
		t.Fatalf("incremental after delete: %+v %v", res, err)
	}
	_, err = bob.CalendarList.Get(team.Id).Do()
	wantErr(t, err, 404, "notFound")
	err = bob.CalendarList.Delete(team.Id).Do()
	wantErr(t, err, 404, "notFound")
	ids, _, _ = listIDs(t, bob.CalendarList.List().ShowDeleted(true))
	if strings.Join(ids, ",") != "bob@x.test,-"+team.Id {
		t.Fatalf("showDeleted: %v", ids)
	}
	// The primary calendar stays; a dead token is 410; pages of one.
	err = bob.CalendarList.Delete("primary").Do()
	wantErr(t, err, 403, "forbidden")
	_, err = bob.CalendarList.List().SyncToken("bm90IGEgdG9rZW4").Do()
	wantErr(t, err, 410, "fullSyncRequired")
	if err := srv.InvalidateListSyncTokens("bob@x.test"); err != nil {
		t.Fatal(err)
	}
	_, err = bob.CalendarList.List().SyncToken(res.NextSyncToken).Do()
	wantErr(t, err, 410, "fullSyncRequired")
	ids, _, _ = listIDs(t, alice.CalendarList.List().MaxResults(1))
	if len(ids) != 2 {
		t.Fatalf("paged list: %v", ids)
	}
	_, err = alice.CalendarList.List().MaxResults(0).Do()
	wantErr(t, err, 400, "invalid")
	// A shared user cannot delete the calendar; the owner's delete removes it
	// from every list (incremental: deleted).
	_ = srv.Share(team.Id, "bob@x.test", "writer", true)
	res, _ = bob.CalendarList.List().Do()
	err = bob.Calendars.Delete(team.Id).Do()
	wantErr(t, err, 403, "requiredAccessLevel")
	if err := alice.Calendars.Delete(team.Id).Context(ctx).Do(); err != nil {
		t.Fatal(err)
	}
	res, err = bob.CalendarList.List().SyncToken(res.NextSyncToken).Do()
	if err != nil || len(res.Items) != 1 || !res.Items[0].Deleted {
		t.Fatalf("incremental after the owner deleted it: %+v %v", res, err)
	}
}

func TestCalendarListWatch(t *testing.T) {
	srv, base, alice := startTest(t, Options{Seed: 3})
	bob := userService(t, srv, base, "bob@x.test")
	rc := newReceiver(t)
	ch, err := bob.CalendarList.Watch(&calendar.Channel{Id: "list-1", Type: "web_hook", Address: rc.URL, Token: "tok"}).Do()
	if err != nil {
		t.Fatal(err)
	}
	if ch.Kind != "api#channel" || ch.ResourceId == "" || ch.ResourceUri != "https://www.googleapis.com/calendar/v3/users/me/calendarList?alt=json" || ch.Expiration == 0 {
		t.Fatalf("watch reply %+v", ch)
	}
	msgs := rc.waitFor(t, 1)
	if h := msgs[0].h; h.Get("X-Goog-Resource-State") != "sync" || h.Get("X-Goog-Message-Number") != "1" ||
		h.Get("X-Goog-Resource-Id") != ch.ResourceId || h.Get("X-Goog-Channel-Token") != "tok" ||
		h.Get("X-Goog-Resource-Uri") != ch.ResourceUri {
		t.Fatalf("sync message %v", h)
	}
	// The same id again is refused while the channel lives.
	_, err = bob.CalendarList.Watch(&calendar.Channel{Id: "list-1", Type: "web_hook", Address: rc.URL}).Do()
	wantErr(t, err, 400, "channelIdNotUnique")
	_, err = bob.CalendarList.Watch(&calendar.Channel{Id: "list-2", Type: "carrier_pigeon", Address: rc.URL}).Do()
	wantErr(t, err, 400, "invalid")

	// Changes of bob's list: a calendar shared and added, bob creating one,
	// the shared one deleted by its owner. Alice's changes to her own list
	// and event changes are not bob's list's business.
	team, _ := alice.Calendars.Insert(&calendar.Calendar{Summary: "team"}).Do()
	if _, err := alice.Events.Insert(team.Id, timed("x", time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC), time.Hour)).Do(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Share(team.Id, "bob@x.test", "reader", true); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, 2)
	if _, err := bob.Calendars.Insert(&calendar.Calendar{Summary: "mine"}).Do(); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, 3)
	if err := alice.Calendars.Delete(team.Id).Do(); err != nil {
		t.Fatal(err)
	}
	msgs = rc.waitFor(t, 4)
	for _, m := range msgs[1:] {
		if m.h.Get("X-Goog-Resource-State") != "exists" || m.h.Get("X-Goog-Channel-Id") != "list-1" {
			t.Fatalf("change message %v", m.h)
		}
	}
	if err := bob.Channels.Stop(&calendar.Channel{Id: "list-1", ResourceId: ch.ResourceId}).Do(); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Calendars.Insert(&calendar.Calendar{Summary: "after stop"}).Do(); err != nil {
		t.Fatal(err)
	}
	if n := rc.count(); n != 4 {
		t.Fatalf("%d messages, want 4 (nothing after stop)", n)
	}
	err = alice.Channels.Stop(&calendar.Channel{Id: "list-1", ResourceId: ch.ResourceId}).Do()
	wantErr(t, err, 404, "notFound")
}
