package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/option"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
)

// asUser is the official client acting as a user of the emulated Workspace.
func asUser(t *testing.T, ctx context.Context, email string) *calendar.Service {
	t.Helper()
	tok := sys.Calendar.IssueToken(email)
	svc, err := calendaremu.NewService(ctx, sys.CalendarBaseURL, option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok.AccessToken})))
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func addEvents(t *testing.T, ctx context.Context, svc *calendar.Service, calID string, n int) {
	t.Helper()
	for i := range n {
		start := time.Date(2026, 12, 1+i, 9, 0, 0, 0, time.UTC)
		if _, err := svc.Events.Insert(calID, &calendar.Event{Summary: fmt.Sprintf("%s #%d", calID, i),
			Start: &calendar.EventDateTime{DateTime: start.Format(time.RFC3339)},
			End:   &calendar.EventDateTime{DateTime: start.Add(time.Hour).Format(time.RFC3339)}}).Context(ctx).Do(); err != nil {
			t.Fatal(err)
		}
	}
}

// waitEmpty polls until a calendar's mirror holds no event.
func waitEmpty(t *testing.T, ctx context.Context, calID string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, err := gotMirror(ctx, firestoreClient(t), store.CalendarKey(calID))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("mirror of %s still holds %d events after %s", calID, len(got), timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestWorkspaceEnrollment: a Workspace of 20 users and 5 rooms enrolled
// with one command (calsync enroll --domain --rooms); then a user added, a
// user suspended (RenewChannels' directory diff), a calendar shared to a
// user later (the user's calendarList push, through the Webhook, to the
// SyncWorker) and a room deleted (the diff again): each time the mirror
// follows within seconds, and no other calendar's mirror, status or change
// feed moves.
func TestWorkspaceEnrollment(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	const domain = "e2e-corp.test"
	admin := "admin@" + domain
	emu := sys.Calendar
	if err := emu.CreateDomain(domain, admin); err != nil {
		t.Fatal(err)
	}
	users := []string{admin}
	for i := 1; i < 20; i++ {
		u := fmt.Sprintf("user%02d@%s", i, domain)
		if err := emu.AddDomainUser(u, false); err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	svcs := map[string]*calendar.Service{} // who can read each calendar
	for _, u := range users {
		svcs[u] = asUser(t, ctx, u)
		addEvents(t, ctx, svcs[u], u, 3)
	}
	adminSvc := svcs[admin]
	var rooms []calendaremu.Room
	for i := range 5 {
		r, err := emu.AddRoom(domain, fmt.Sprintf("Room %d", i))
		if err != nil {
			t.Fatal(err)
		}
		rooms = append(rooms, r)
		svcs[r.Email] = adminSvc
		addEvents(t, ctx, adminSvc, r.Email, 2)
	}

	start := time.Now()
	out := cli(t, ctx, "enroll", "--domain", domain, "--admin", admin, "--rooms", "--delete-mirror-on-remove")
	// RenewChannels runs meanwhile: its diff of the domain just enrolled
	// may begin after the CLI's and apply the rooms first (the later
	// reading wins); the rooms are followed either way (checked below).
	byCLI := strings.Contains(out, "5 rooms: 5 enrolled") && strings.Contains(out, "25 calendars enrolled; 0 failed")
	byLaterDiff := strings.Contains(out, "5 rooms listed, applied by a directory diff of the customer that began after this one") &&
		strings.Contains(out, "20 calendars enrolled; 0 failed")
	if !strings.Contains(out, "20 users in the directory, 20 active: 20 enrolled") || !(byCLI || byLaterDiff) {
		t.Fatalf("calsync enroll --domain: %s", out)
	}
	for id, svc := range svcs {
		waitConverged(t, ctx, svc, id, 90*time.Second)
	}
	t.Logf("20 users and 5 rooms enrolled and mirrored in %s (one command)", time.Since(start).Round(time.Millisecond))
	for id := range svcs {
		if n := len(liveChannels(id)); n != 1 {
			t.Fatalf("%s: %d live channels", id, n)
		}
	}

	// The state of everything, to show later that nothing else moved.
	before := map[string]map[string]string{}
	status := map[string]string{}
	for id := range svcs {
		m, err := gotMirror(ctx, firestoreClient(t), store.CalendarKey(id))
		if err != nil {
			t.Fatal(err)
		}
		before[id] = m
		c, _ := store.New(firestoreClient(t)).GetCalendar(ctx, store.CalendarKey(id))
		status[id] = c.Status
	}
	feed := subscribe(t, ctx, sys.ChangesTopic)

	// 1. A user added: the next directory diff (RenewChannels) enrolls them.
	newUser := "newcomer@" + domain
	if err := emu.AddDomainUser(newUser, false); err != nil {
		t.Fatal(err)
	}
	svcs[newUser] = asUser(t, ctx, newUser)
	addEvents(t, ctx, svcs[newUser], newUser, 2)
	t0 := time.Now()
	renew(t, ctx)
	waitConverged(t, ctx, svcs[newUser], newUser, 30*time.Second)
	addedIn := time.Since(t0)

	// 2. A user suspended: unenrolled, its mirror deleted (the domain says so).
	suspended := users[5]
	if err := emu.SuspendUser(suspended, true); err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	renew(t, ctx)
	waitEmpty(t, ctx, suspended, 30*time.Second)
	suspendedIn := time.Since(t0)
	// Its channels are closed: a suspended subject cannot be impersonated to
	// stop them (only a channel's creator can), so their records are ended
	// and whatever Google still delivers on them finds the calendar inactive.
	for _, key := range []string{store.CalendarKey(suspended), store.Grant{AuthMode: store.AuthDelegation, Subject: suspended}.IdentityKey()} {
		chans, err := store.New(firestoreClient(t)).ChannelsOfCalendar(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range chans {
			if ch.State == store.ChannelActive || ch.State == store.ChannelPending {
				t.Fatalf("a channel of the suspended user is still %s: %+v", ch.State, ch)
			}
		}
	}

	// 3. A calendar shared to a user later: the user's list push enrolls it.
	partner := asUser(t, ctx, "partner@elsewhere.test")
	sharedCal, err := partner.Calendars.Insert(&calendar.Calendar{Summary: "joint project"}).Context(ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	addEvents(t, ctx, partner, sharedCal.Id, 4)
	svcs[sharedCal.Id] = partner
	t0 = time.Now()
	if err := emu.Share(sharedCal.Id, users[7], "reader", true); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ctx, partner, sharedCal.Id, 30*time.Second)
	sharedIn := time.Since(t0)
	if len(liveChannels(sharedCal.Id)) != 1 {
		t.Fatalf("the shared calendar is not watched: %+v", liveChannels(sharedCal.Id))
	}

	// 4. A room deleted: the diff unenrolls it and deletes its mirror.
	gone := rooms[2]
	if err := emu.DeleteRoom(domain, gone.ResourceID); err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	renew(t, ctx)
	waitEmpty(t, ctx, gone.Email, 30*time.Second)
	roomIn := time.Since(t0)
	t.Logf("mirror followed: user added %s, user suspended %s, calendar shared %s, room deleted %s",
		addedIn.Round(time.Millisecond), suspendedIn.Round(time.Millisecond), sharedIn.Round(time.Millisecond), roomIn.Round(time.Millisecond))

	// Nothing else touched: the other mirrors and statuses as they were, and
	// the change feed speaks only of the four calendars that changed.
	touched := map[string]bool{newUser: true, suspended: true, sharedCal.Id: true, gone.Email: true}
	st := store.New(firestoreClient(t))
	for id, m := range before {
		if touched[id] {
			continue
		}
		now, err := gotMirror(ctx, firestoreClient(t), store.CalendarKey(id))
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(now, m) {
			t.Errorf("%s's mirror changed: %s", id, diff(m, now))
		}
		if c, _ := st.GetCalendar(ctx, store.CalendarKey(id)); c.Status != status[id] {
			t.Errorf("%s's status moved from %s to %s", id, status[id], c.Status)
		}
	}
	for id, want := range map[string]string{newUser: store.StatusActive, suspended: store.StatusUnwatched,
		sharedCal.Id: store.StatusActive, gone.Email: store.StatusUnwatched} {
		if c, _ := st.GetCalendar(ctx, store.CalendarKey(id)); c.Status != want {
			t.Errorf("%s: status %s, want %s", id, c.Status, want)
		}
	}
	waitQuiet(t, 2*time.Second, time.Minute)
	keys := map[string]string{}
	for id := range touched {
		keys[store.CalendarKey(id)] = id
	}
	byCal := map[string]map[string]int{}
drain:
	for {
		select {
		case m := <-feed.ch:
			var c messages.Change
			if err := json.Unmarshal(m.Data, &c); err != nil {
				t.Fatal(err)
			}
			id, ok := keys[c.CalendarKey]
			if !ok {
				t.Errorf("a change of a calendar nobody touched: %s %s %s", c.CalendarID, c.EventID, c.Change)
				continue
			}
			if byCal[id] == nil {
				byCal[id] = map[string]int{}
			}
			byCal[id][c.Change]++
		case <-time.After(2 * time.Second):
			break drain
		}
	}
	want := map[string]map[string]int{newUser: {"created": 2}, suspended: {"deleted": 3}, sharedCal.Id: {"created": 4}, gone.Email: {"deleted": 2}}
	var ids []string
	for id := range want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if !maps.Equal(byCal[id], want[id]) {
			t.Errorf("change feed of %s: %v, want %v", id, byCal[id], want[id])
		}
	}
}
