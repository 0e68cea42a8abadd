package enroll_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
)

// A domain: every active user's list and every room enrolled in one call;
// the next directory diff enrolls a user added, unenrolls a suspended one
// and a deleted room, and touches nothing else.
func TestEnrollDomainAndDiff(t *testing.T) {
	v := newEnv(t)
	if err := v.emu.CreateDomain("corp.test", "admin@corp.test"); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := v.emu.AddDomainUser(fmt.Sprintf("u%d@corp.test", i), false); err != nil {
			t.Fatal(err)
		}
	}
	_ = v.emu.AddDomainUser("old@corp.test", false)
	_ = v.emu.SuspendUser("old@corp.test", true)
	var rooms []calendaremu.Room
	for i := range 2 {
		r, err := v.emu.AddRoom("corp.test", fmt.Sprintf("Room %d", i))
		if err != nil {
			t.Fatal(err)
		}
		rooms = append(rooms, r)
	}
	var mu sync.Mutex
	var seen []enroll.Progress
	sp := enroll.DomainSpec{Domain: "corp.test", Admin: "admin@corp.test", Rooms: true}
	res, err := v.e.EnrollDomain(v.ctx, sp, func(p enroll.Progress) {
		mu.Lock()
		seen = append(seen, p)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	// 6 active users (the admin included), each with a primary calendar; 2 rooms.
	if res.Users != 7 || res.Active != 6 || res.Enrolled != 6 || res.Rooms != 2 || res.RoomsEnrolled != 2 || res.Calendars != 8 || res.Failed != 0 {
		t.Fatalf("enroll domain: %+v", res)
	}
	if len(seen) != 6 || seen[5].Done != 6 || seen[5].Total != 6 {
		t.Fatalf("progress: %+v", seen)
	}
	cals := v.calendars()
	if len(cals) != 8 {
		t.Fatalf("%d calendars registered", len(cals))
	}
	dom, err := v.st.GetDomain(v.ctx, "corp.test")
	if err != nil || dom.CustomerID == "" {
		t.Fatalf("domain record without its customer: %+v %v", dom, err)
	}
	for _, r := range rooms {
		c := cals[r.Email]
		if c.Status != store.StatusActive || c.Subject != "admin@corp.test" || c.EnrolledBy != store.CustomerKey(dom.CustomerID) {
			t.Fatalf("room %s: %+v", r.Email, c)
		}
	}
	if _, ok := cals["old@corp.test"]; ok {
		t.Fatal("a suspended user was enrolled")
	}
	// Nothing changed: the diff reads the directory and does nothing else.
	v.req.reset()
	res, err = v.e.SyncDirectory(v.ctx, "corp.test", nil)
	if err != nil || res.Enrolled != 0 || res.Kept != 6 || res.Unenrolled != 0 || res.RoomsEnrolled != 0 || len(v.req.states()) != 0 {
		t.Fatalf("idle diff: %+v %v, requests %v", res, err, v.req.states())
	}
	// A user added, a user suspended, a room deleted.
	_ = v.emu.AddDomainUser("new@corp.test", false)
	_ = v.emu.SuspendUser("u1@corp.test", true)
	if err := v.emu.DeleteRoom("corp.test", rooms[0].ResourceID); err != nil {
		t.Fatal(err)
	}
	before := v.calendars()
	res, err = v.e.SyncDirectory(v.ctx, "corp.test", nil)
	if err != nil || res.Enrolled != 1 || res.Unenrolled != 1 || res.RoomsUnenrolled != 1 || res.Kept != 5 {
		t.Fatalf("diff: %+v %v", res, err)
	}
	after := v.calendars()
	changed := map[string]string{}
	for id, c := range after {
		if b, ok := before[id]; !ok || b.Status != c.Status {
			changed[id] = c.Status
		}
	}
	want := map[string]string{"new@corp.test": store.StatusActive, "u1@corp.test": store.StatusUnwatched, rooms[0].Email: store.StatusUnwatched}
	if fmt.Sprint(changed) != fmt.Sprint(want) {
		t.Fatalf("changed %v, want %v (nothing else touched)", changed, want)
	}
	if id, _ := v.st.GetIdentity(v.ctx, store.Grant{AuthMode: store.AuthDelegation, Subject: "u1@corp.test"}.IdentityKey()); id.Status != store.StatusUnenrolled {
		t.Fatalf("suspended user's identity: %+v", id)
	}
	d, _ := v.st.GetDomain(v.ctx, "corp.test")
	if d.LastDirectorySyncAt.IsZero() || d.Users != 6 || d.RoomCount != 1 {
		t.Fatalf("domain record %+v", d)
	}
	// The admin must be an admin: a plain user cannot enroll the domain, and nothing is written.
	_, err = v.e.EnrollDomain(v.ctx, enroll.DomainSpec{Domain: "corp.test", Admin: "u2@corp.test"}, nil)
	if !errors.Is(err, enroll.ErrNotAuthorized) {
		t.Fatalf("domain enrolled by a non-admin: %v", err)
	}
	if d2, _ := v.st.GetDomain(v.ctx, "corp.test"); d2.Admin != "admin@corp.test" {
		t.Fatalf("a refused enrollment changed the domain: %+v", d2)
	}
	// Unenrolling the domain stops every identity and room, mirrors purged.
	v.req.reset()
	ures, err := v.e.UnenrollDomain(v.ctx, "corp.test", true)
	if err != nil || ures.Unenrolled < 6 || ures.RoomsUnenrolled != 1 {
		t.Fatalf("unenroll domain: %+v %v", ures, err)
	}
	purges := 0
	for _, st := range v.req.states() {
		for _, s := range st {
			if s == messages.StatePurge {
				purges++
			}
		}
	}
	if purges != len(v.calendars()) {
		t.Fatalf("%d purges for %d calendars", purges, len(v.calendars()))
	}
	if live := v.liveChannels(); len(live) != 0 {
		t.Fatalf("live channels after the domain left: %v", live)
	}
}

// gated holds the Calendar client of one subject until released: a
// discovery that read its identity before a directory diff and calls
// Google after it.
type gated struct {
	enroll.Services
	subject string
	reached chan struct{}
	release chan struct{}
}

func (g *gated) Service(ctx context.Context, gr store.Grant) (*calendar.Service, error) {
	if gr.Subject == g.subject {
		close(g.reached)
		<-g.release
	}
	return g.Services.Service(ctx, gr)
}

// A suspended user's grant fails (invalid_grant) wherever calsync meets it
// first: a discovery (a list push, a reconcile) before or after the
// directory diff unenrolls the user. Either way the user ends unenrolled,
// its calendar unwatched (not auth_revoked: nobody is asked to reconnect a
// suspended user) and its mirror purged as the domain says.
func TestSuspendedUserEitherOrder(t *testing.T) {
	v := newEnv(t)
	if err := v.emu.CreateDomain("corp.test", "admin@corp.test"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"first@corp.test", "later@corp.test", "stays@corp.test"} {
		if err := v.emu.AddDomainUser(u, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.e.EnrollDomain(v.ctx, enroll.DomainSpec{Domain: "corp.test", Admin: "admin@corp.test", DeleteMirrorOnRemove: true}, nil); err != nil {
		t.Fatal(err)
	}
	key := func(u string) string { return store.Grant{AuthMode: store.AuthDelegation, Subject: u}.IdentityKey() }
	check := func(u string) {
		t.Helper()
		if id, _ := v.st.GetIdentity(v.ctx, key(u)); id.Status != store.StatusUnenrolled {
			t.Fatalf("%s: identity %s, want unenrolled", u, id.Status)
		}
		if c := v.calendars()[u]; c.Status != store.StatusUnwatched {
			t.Fatalf("%s: calendar %s (%s), want unwatched", u, c.Status, c.StatusReason)
		}
		purged := false
		for _, s := range v.req.states()[store.CalendarKey(u)] {
			purged = purged || s == messages.StatePurge
		}
		if !purged {
			t.Fatalf("%s: no purge asked (%v)", u, v.req.states())
		}
	}

	// The grant fails first (in another instance: this one's token for the
	// user is still cached): auth_revoked until the diff, which unenrolls it.
	_ = v.emu.SuspendUser("first@corp.test", true)
	if _, err := v.otherInstance().Discover(v.ctx, key("first@corp.test")); err != nil {
		t.Fatal(err)
	}
	if c := v.calendars()["first@corp.test"]; c.Status != store.StatusAuthRevoked {
		t.Fatalf("a failed grant: calendar %s", c.Status)
	}
	v.req.reset()
	res, err := v.e.SyncDirectory(v.ctx, "corp.test", nil)
	if err != nil || res.Unenrolled != 1 {
		t.Fatalf("diff: %+v %v", res, err)
	}
	check("first@corp.test")

	// The diff first, while a discovery that read the identity as active
	// waits to call Google: its failure afterwards changes nothing.
	_ = v.emu.SuspendUser("later@corp.test", true)
	racing := v.otherInstance()
	g := &gated{Services: racing.Calendars, subject: "later@corp.test", reached: make(chan struct{}), release: make(chan struct{})}
	racing.Calendars = g
	done := make(chan error, 1)
	go func() {
		_, err := racing.Discover(v.ctx, key("later@corp.test"))
		done <- err
	}()
	<-g.reached
	v.req.reset()
	if res, err := v.e.SyncDirectory(v.ctx, "corp.test", nil); err != nil || res.Unenrolled != 1 {
		t.Fatalf("diff: %+v %v", res, err)
	}
	close(g.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	check("later@corp.test")
	if c := v.calendars()["stays@corp.test"]; c.Status != store.StatusActive {
		t.Fatalf("an active user's calendar moved: %s", c.Status)
	}
}

// A partial directory: the admin's rights narrowed to one organisational
// unit, the listing still succeeds but covers 3 of 12 users. The diff
// unenrolls no one (ERROR directory_shrink_refused with counts); a genuine
// single departure still goes through, and the operator's override
// (AllowShrink, the CLI's --allow-shrink) applies the shrink.
func TestDirectoryShrinkRefused(t *testing.T) {
	v := newEnv(t)
	if err := v.emu.CreateDomain("ou.test", "admin@ou.test"); err != nil {
		t.Fatal(err)
	}
	_ = v.emu.SetOrgUnit("admin@ou.test", "/it")
	for i := range 11 {
		email := fmt.Sprintf("u%02d@ou.test", i)
		if err := v.emu.AddDomainUser(email, false); err != nil {
			t.Fatal(err)
		}
		ou := "/sales"
		if i < 2 {
			ou = "/it/desk"
		}
		_ = v.emu.SetOrgUnit(email, ou)
	}
	sp := enroll.DomainSpec{Domain: "ou.test", Admin: "admin@ou.test"}
	if res, err := v.e.EnrollDomain(v.ctx, sp, nil); err != nil || res.Enrolled != 12 {
		t.Fatalf("enroll domain: %+v %v", res, err)
	}
	if err := v.emu.NarrowListing("ou.test", "/it"); err != nil {
		t.Fatal(err)
	}
	before := v.calendars()
	v.req.reset()
	res, err := v.e.SyncDirectory(v.ctx, "ou.test", nil)
	if err != nil || res.Unenrolled != 0 || res.ShrinkRefused != 9 || res.Kept != 3 {
		t.Fatalf("partial directory diff: %+v %v", res, err)
	}
	for id, c := range v.calendars() {
		if c.Status != before[id].Status {
			t.Fatalf("%s went %s -> %s on a partial listing", id, before[id].Status, c.Status)
		}
	}
	ids, _ := v.st.IdentitiesOfDomain(v.ctx, "ou.test")
	for k, id := range ids {
		if id.Status != store.StatusActive {
			t.Fatalf("identity %s is %s after a partial listing", k, id.Status)
		}
	}
	if n := len(v.req.states()); n != 0 {
		t.Fatalf("a refused diff asked for %d requests (purges?): %v", n, v.req.states())
	}
	lines := v.logLines("directory_shrink_refused")
	if len(lines) != 1 || lines[0]["severity"] != "ERROR" || lines[0]["wouldUnenroll"] != 9.0 ||
		lines[0]["identities"] != 12.0 || lines[0]["allowed"] != 1.0 || lines[0]["domain"] != "ou.test" {
		t.Fatalf("refusal lines %v", lines)
	}
	// The full listing back: one user really left; within the share, applied.
	_ = v.emu.NarrowListing("ou.test", "")
	_ = v.emu.DeleteDomainUser("u05@ou.test")
	if res, err := v.e.SyncDirectory(v.ctx, "ou.test", nil); err != nil || res.Unenrolled != 1 || res.ShrinkRefused != 0 {
		t.Fatalf("one departure: %+v %v", res, err)
	}
	// The directory really shrank: refused until the operator says so.
	for i := 6; i < 11; i++ {
		_ = v.emu.DeleteDomainUser(fmt.Sprintf("u%02d@ou.test", i))
	}
	if res, err := v.e.SyncDirectory(v.ctx, "ou.test", nil); err != nil || res.Unenrolled != 0 || res.ShrinkRefused != 5 {
		t.Fatalf("shrink without override: %+v %v", res, err)
	}
	sp.AllowShrink = true
	if res, err := v.e.EnrollDomain(v.ctx, sp, nil); err != nil || res.Unenrolled != 5 || res.ShrinkRefused != 0 {
		t.Fatalf("shrink with override: %+v %v", res, err)
	}
}
