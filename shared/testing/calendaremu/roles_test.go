package calendaremu

import (
	"context"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/option"
)

// What a user reads depends on their access role: a freeBusyReader sees
// busy blocks only, a reader does not see private events' details, the
// owner sees everything; events.list answers the caller's accessRole.
func TestRoleLimitedReads(t *testing.T) {
	srv, base, _ := startTest(t, Options{})
	const cal = "team@group.calendar.google.com"
	if err := srv.AddCalendar(CalendarSpec{ID: cal, Owner: "olga@calsync.test"}); err != nil {
		t.Fatal(err)
	}
	as := func(user string) *calendar.Service {
		tok := srv.IssueToken(user)
		svc, _ := NewService(context.Background(), base, option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok.AccessToken})))
		return svc
	}
	owner := as("olga@calsync.test")
	start := time.Now().Add(time.Hour).Truncate(time.Second)
	open, err := owner.Events.Insert(cal, timed("standup", start, time.Hour)).Do()
	if err != nil {
		t.Fatal(err)
	}
	secret := timed("doctor", start.Add(2*time.Hour), time.Hour)
	secret.Visibility, secret.Description = "private", "details"
	private, err := owner.Events.Insert(cal, secret).Do()
	if err != nil {
		t.Fatal(err)
	}
	for user, role := range map[string]string{"rita@calsync.test": "reader", "fred@calsync.test": "freeBusyReader"} {
		if err := srv.Share(cal, user, role, false); err != nil {
			t.Fatal(err)
		}
	}
	summaries := func(svc *calendar.Service, wantRole string) map[string]string {
		t.Helper()
		res, err := svc.Events.List(cal).Q("").Do()
		if err != nil {
			t.Fatal(err)
		}
		if res.AccessRole != wantRole {
			t.Errorf("accessRole %q, want %q", res.AccessRole, wantRole)
		}
		out := map[string]string{}
		for _, e := range res.Items {
			if e.Start == nil || e.End == nil {
				t.Errorf("%s: no times for %s", wantRole, e.Id)
			}
			out[e.Id] = e.Summary + "|" + e.Description
		}
		return out
	}
	if got := summaries(owner, "owner"); got[open.Id] != "standup|" || got[private.Id] != "doctor|details" {
		t.Errorf("owner: %v", got)
	}
	if got := summaries(as("rita@calsync.test"), "reader"); got[open.Id] != "standup|" || got[private.Id] != "|" {
		t.Errorf("reader: %v", got)
	}
	// A busy block keeps its visibility (how a reader tells it from an
	// event without a summary), as Google's does.
	if e, err := as("rita@calsync.test").Events.Get(cal, private.Id).Do(); err != nil || e.Visibility != "private" || e.Summary != "" {
		t.Errorf("reader's busy block: %v %+v", err, e)
	}
	fred := as("fred@calsync.test")
	if got := summaries(fred, "freeBusyReader"); len(got) != 2 || got[open.Id] != "|" || got[private.Id] != "|" {
		t.Errorf("freeBusyReader: %v", got)
	}
	if e, err := fred.Events.Get(cal, open.Id).Do(); err != nil || e.Summary != "" || e.Start == nil {
		t.Errorf("freeBusyReader get: %v %+v", err, e)
	}
	// Hidden details are not searchable either.
	if res, err := fred.Events.List(cal).Q("standup").Do(); err != nil || len(res.Items) != 0 {
		t.Errorf("freeBusyReader search: %v %d", err, len(res.Items))
	}
}
