package enroll_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
)

// twoDomains is a customer with two domains (one.test, its primary, and
// two.test), a user in each, rooms and one piece of equipment; both
// domains enrolled with rooms.
func twoDomains(t *testing.T, v *env, rooms int) []calendaremu.Room {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(v.emu.CreateDomain("one.test", "admin@one.test"))
	must(v.emu.CreateSecondaryDomain("two.test", "admin@two.test", "one.test"))
	must(v.emu.AddDomainUser("ann@one.test", false))
	must(v.emu.AddDomainUser("bob@two.test", false))
	var out []calendaremu.Room
	for i := range rooms {
		r, err := v.emu.AddRoom("one.test", fmt.Sprintf("Room %d", i))
		must(err)
		out = append(out, r)
	}
	_, err := v.emu.AddResource("two.test", "Beamer", calendaremu.CategoryOther)
	must(err)
	return out
}

// Two domains of one customer: Google lists the same rooms (customer-wide)
// to both; each room is enrolled once, by the customer, with one channel
// and one first sync, and remembers both domains; the equipment is never
// enrolled.
func TestRoomsOfTwoDomainsOnce(t *testing.T) {
	v := newEnv(t)
	rooms := twoDomains(t, v, 3)
	one, err := v.e.EnrollDomain(v.ctx, enroll.DomainSpec{Domain: "one.test", Admin: "admin@one.test", Rooms: true}, nil)
	if err != nil || one.Rooms != 3 || one.RoomsEnrolled != 3 || one.NotRooms != 1 || one.Failed != 0 {
		t.Fatalf("one.test: %+v %v", one, err)
	}
	two, err := v.e.EnrollDomain(v.ctx, enroll.DomainSpec{Domain: "two.test", Admin: "admin@two.test", Rooms: true}, nil)
	if err != nil || two.Rooms != 3 || two.RoomsEnrolled != 0 || two.Failed != 0 {
		t.Fatalf("two.test: %+v %v", two, err)
	}
	// Once more each: nothing changes.
	for _, dom := range []string{"one.test", "two.test"} {
		if res, err := v.e.SyncDirectory(v.ctx, dom, nil); err != nil || res.RoomsEnrolled != 0 || res.RoomsUnenrolled != 0 {
			t.Fatalf("%s again: %+v %v", dom, res, err)
		}
	}
	d, _ := v.st.GetDomain(v.ctx, "one.test")
	d2, _ := v.st.GetDomain(v.ctx, "two.test")
	if d.CustomerID == "" || d2.CustomerID != d.CustomerID {
		t.Fatalf("customers %q and %q", d.CustomerID, d2.CustomerID)
	}
	cals := v.calendars()
	// 2 admins, 2 users, 3 rooms: no equipment.
	if len(cals) != 7 {
		t.Fatalf("%d calendars registered, want 7 (equipment enrolled?): %v", len(cals), slices.Collect(func(yield func(string) bool) {
			for id := range cals {
				yield(id)
			}
		}))
	}
	live := v.liveChannels()
	refs, err := v.st.RoomsOfCustomer(v.ctx, d.CustomerID)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rooms {
		c := cals[r.Email]
		key := store.CalendarKey(r.Email)
		if c.Status != store.StatusActive || c.EnrolledBy != store.CustomerKey(d.CustomerID) {
			t.Fatalf("room %s: %s enrolled by %s", r.Name, c.Status, c.EnrolledBy)
		}
		if live[r.Email] != 1 {
			t.Fatalf("room %s has %d live channels", r.Name, live[r.Email])
		}
		if syncs := v.req.states()[key]; len(syncs) != 1 {
			t.Fatalf("room %s: first syncs asked %v", r.Name, syncs)
		}
		if got := refs[key].Domains; fmt.Sprint(got) != "[one.test two.test]" {
			t.Fatalf("room %s listed by %v", r.Name, got)
		}
	}
	if cu, err := v.st.GetCustomer(v.ctx, d.CustomerID); err != nil || cu.Calendars != 3 {
		t.Fatalf("customer %+v %v", cu, err)
	}
	// two.test enrolled again without rooms: one.test still lists them.
	if res, err := v.e.EnrollDomain(v.ctx, enroll.DomainSpec{Domain: "two.test", Admin: "admin@two.test"}, nil); err != nil || res.RoomsUnenrolled != 0 {
		t.Fatalf("two.test without rooms: %+v %v", res, err)
	}
	refs, _ = v.st.RoomsOfCustomer(v.ctx, d.CustomerID)
	for _, r := range rooms {
		if got := refs[store.CalendarKey(r.Email)].Domains; fmt.Sprint(got) != "[one.test]" || v.calendars()[r.Email].Status != store.StatusActive {
			t.Fatalf("room %s listed by %v, %s", r.Name, got, v.calendars()[r.Email].Status)
		}
	}
	// one.test too: no domain follows rooms any more.
	if res, err := v.e.EnrollDomain(v.ctx, enroll.DomainSpec{Domain: "one.test", Admin: "admin@one.test"}, nil); err != nil || res.RoomsUnenrolled != 3 {
		t.Fatalf("one.test without rooms: %+v %v", res, err)
	}
	for _, r := range rooms {
		if c := v.calendars()[r.Email]; c.Status != store.StatusUnwatched {
			t.Fatalf("room %s %s with no domain following rooms", r.Name, c.Status)
		}
	}
}

// Unenrolling one domain keeps the rooms the other still lists (no channel
// stopped, no mirror purged); unenrolling the last one unenrolls them.
func TestUnenrollOneDomainKeepsItsCustomersRooms(t *testing.T) {
	v := newEnv(t)
	rooms := twoDomains(t, v, 2)
	for _, sp := range []enroll.DomainSpec{{Domain: "one.test", Admin: "admin@one.test", Rooms: true},
		{Domain: "two.test", Admin: "admin@two.test", Rooms: true}} {
		if _, err := v.e.EnrollDomain(v.ctx, sp, nil); err != nil {
			t.Fatal(err)
		}
	}
	v.req.reset()
	res, err := v.e.UnenrollDomain(v.ctx, "one.test", true)
	if err != nil || res.RoomsUnenrolled != 0 || res.RoomsKept != 2 || res.Failed != 0 {
		t.Fatalf("unenroll one.test: %+v %v", res, err)
	}
	check := func(want string, live int) {
		t.Helper()
		cals, chans := v.calendars(), v.liveChannels()
		for _, r := range rooms {
			if cals[r.Email].Status != want || chans[r.Email] != live {
				t.Fatalf("room %s: %s with %d live channels, want %s with %d", r.Name, cals[r.Email].Status, chans[r.Email], want, live)
			}
		}
	}
	check(store.StatusActive, 1)
	for _, r := range rooms {
		if s := v.req.states()[store.CalendarKey(r.Email)]; slices.Contains(s, messages.StatePurge) {
			t.Fatalf("room %s purged while two.test lists it", r.Name)
		}
	}
	// two.test's next diff keeps them as they are.
	if res, err := v.e.SyncDirectory(v.ctx, "two.test", nil); err != nil || res.RoomsEnrolled != 0 || res.RoomsUnenrolled != 0 {
		t.Fatalf("two.test diff: %+v %v", res, err)
	}
	check(store.StatusActive, 1)
	// The last domain of the customer leaves: its rooms go.
	res, err = v.e.UnenrollDomain(v.ctx, "two.test", true)
	if err != nil || res.RoomsUnenrolled != 2 || res.Failed != 0 {
		for _, l := range v.logs.Lines() {
			if l["severity"] == "ERROR" {
				t.Log(l)
			}
		}
		t.Fatalf("unenroll two.test: %+v %v", res, err)
	}
	check(store.StatusUnwatched, 0)
	for _, r := range rooms {
		if s := v.req.states()[store.CalendarKey(r.Email)]; !slices.Contains(s, messages.StatePurge) {
			t.Fatalf("room %s not purged: %v", r.Name, s)
		}
	}
	// Enrolled again: the rooms come back.
	if res, err := v.e.EnrollDomain(v.ctx, enroll.DomainSpec{Domain: "one.test", Admin: "admin@one.test", Rooms: true}, nil); err != nil || res.RoomsEnrolled != 2 {
		t.Fatalf("one.test again: %+v %v", res, err)
	}
	check(store.StatusActive, 1)
}

// Rooms are under the directory shrink guard: a listing that lost more
// than DIRECTORY_MAX_UNENROLL_SHARE of the rooms followed unenrolls none
// (ERROR directory_shrink_refused, target rooms), a single deleted room
// goes, and the operator's override applies a real shrink.
func TestRoomsShrinkRefused(t *testing.T) {
	v := newEnv(t)
	if err := v.emu.CreateDomain("corp.test", "admin@corp.test"); err != nil {
		t.Fatal(err)
	}
	var rooms []calendaremu.Room
	for i := range 10 {
		r, err := v.emu.AddRoom("corp.test", fmt.Sprintf("Room %d", i))
		if err != nil {
			t.Fatal(err)
		}
		rooms = append(rooms, r)
	}
	sp := enroll.DomainSpec{Domain: "corp.test", Admin: "admin@corp.test", Rooms: true}
	if res, err := v.e.EnrollDomain(v.ctx, sp, nil); err != nil || res.RoomsEnrolled != 10 {
		t.Fatalf("enroll: %+v %v", res, err)
	}
	// One room deleted: within the share (at least one), unenrolled.
	_ = v.emu.DeleteRoom("corp.test", rooms[0].ResourceID)
	if res, err := v.e.SyncDirectory(v.ctx, "corp.test", nil); err != nil || res.RoomsUnenrolled != 1 || res.RoomsShrinkRefused != 0 {
		t.Fatalf("one room deleted: %+v %v", res, err)
	}
	// Five more gone at once: refused.
	for _, r := range rooms[1:6] {
		_ = v.emu.DeleteRoom("corp.test", r.ResourceID)
	}
	v.req.reset()
	res, err := v.e.SyncDirectory(v.ctx, "corp.test", nil)
	if err != nil || res.RoomsUnenrolled != 0 || res.RoomsShrinkRefused != 5 {
		t.Fatalf("five rooms gone: %+v %v", res, err)
	}
	cals := v.calendars()
	for _, r := range rooms[1:] {
		if cals[r.Email].Status != store.StatusActive {
			t.Fatalf("room %s is %s after a refused shrink", r.Name, cals[r.Email].Status)
		}
	}
	if n := len(v.req.states()); n != 0 {
		t.Fatalf("a refused diff asked for %d requests: %v", n, v.req.states())
	}
	lines := v.logLines("directory_shrink_refused")
	if len(lines) != 1 || lines[0]["severity"] != "ERROR" || lines[0]["target"] != "rooms" || lines[0]["wouldUnenroll"] != 5.0 ||
		lines[0]["rooms"] != 9.0 || lines[0]["allowed"] != 1.0 {
		t.Fatalf("refusal lines %v", lines)
	}
	sp.AllowShrink = true
	if res, err := v.e.EnrollDomain(v.ctx, sp, nil); err != nil || res.RoomsUnenrolled != 5 || res.RoomsShrinkRefused != 0 {
		t.Fatalf("shrink with override: %+v %v", res, err)
	}
}

// A domain whose directory Google refuses gets a status (shared/lifecycle):
// one ERROR line per transition, nothing unenrolled, the diff answered
// ErrDirectoryRefused; the next diff that reads the directory clears it.
func TestDomainDirectoryRefused(t *testing.T) {
	v := newEnv(t)
	if err := v.emu.CreateDomain("corp.test", "admin@corp.test"); err != nil {
		t.Fatal(err)
	}
	_ = v.emu.AddDomainUser("ann@corp.test", false)
	if _, err := v.e.EnrollDomain(v.ctx, enroll.DomainSpec{Domain: "corp.test", Admin: "admin@corp.test"}, nil); err != nil {
		t.Fatal(err)
	}
	before := v.calendars()
	_ = v.emu.DisableAPI(calendaremu.ServiceDirectory, true)
	for range 2 {
		res, err := v.e.SyncDirectory(v.ctx, "corp.test", nil)
		if !errors.Is(err, enroll.ErrDirectoryRefused) || res.Status != store.StatusAPIDisabled {
			t.Fatalf("API disabled: %+v %v", res, err)
		}
	}
	d, _ := v.st.GetDomain(v.ctx, "corp.test")
	if d.Status != store.StatusAPIDisabled || d.StatusReason == "" {
		t.Fatalf("domain %+v", d)
	}
	lines := v.logLines("api_disabled")
	if len(lines) != 1 || lines[0]["severity"] != "ERROR" || lines[0]["domain"] != "corp.test" || lines[0]["advice"] == "" {
		t.Fatalf("api_disabled lines: %v", lines)
	}
	for id, c := range v.calendars() {
		if c.Status != before[id].Status {
			t.Fatalf("%s went %s -> %s on a refused directory", id, before[id].Status, c.Status)
		}
	}
	// Still enrolled: the scheduled diff goes on trying it.
	_ = v.emu.DisableAPI(calendaremu.ServiceDirectory, false)
	res, err := v.e.SyncDirectory(v.ctx, "corp.test", nil)
	if err != nil || res.Status != store.StatusActive || res.Kept != 2 {
		t.Fatalf("read again: %+v %v", res, err)
	}
	if d, _ := v.st.GetDomain(v.ctx, "corp.test"); d.Status != store.StatusActive || d.StatusReason != "" {
		t.Fatalf("domain %+v", d)
	}
	if back := v.logLines("domain_back"); len(back) != 1 || back[0]["previousStatus"] != store.StatusAPIDisabled {
		t.Fatalf("domain_back lines: %v", back)
	}
	if res, err := v.e.SyncDirectory(v.ctx, "corp.test", nil); err != nil || len(v.logLines("domain_back")) != 1 {
		t.Fatalf("a second read logged again: %+v %v", res, err)
	}
}

// Rooms a domain enrolled before rooms were its customer's (enrolledBy the
// domain's key, no customer recorded, equipment enrolled too): the next
// diff moves the rooms to the customer without a new channel or first
// sync, and unenrolls the equipment, which the shrink guard does not hold
// back (the listing shows it is not a room).
func TestLegacyRoomsAdopted(t *testing.T) {
	v := newEnv(t)
	if err := v.emu.CreateDomain("corp.test", "admin@corp.test"); err != nil {
		t.Fatal(err)
	}
	var rooms []calendaremu.Room
	for i := range 2 {
		r, err := v.emu.AddRoom("corp.test", fmt.Sprintf("Room %d", i))
		if err != nil {
			t.Fatal(err)
		}
		rooms = append(rooms, r)
	}
	beamer, err := v.emu.AddResource("corp.test", "Beamer", calendaremu.CategoryOther)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.e.EnrollDomain(v.ctx, enroll.DomainSpec{Domain: "corp.test", Admin: "admin@corp.test", Rooms: true}, nil); err != nil {
		t.Fatal(err)
	}
	d, _ := v.st.GetDomain(v.ctx, "corp.test")
	customer := d.CustomerID
	// The state an earlier version left: rooms and equipment the domain's.
	if _, err := lifecycle.Register(v.ctx, v.st, store.Calendar{CalendarID: beamer.Email, AuthMode: store.AuthDelegation, Subject: "admin@corp.test"}); err != nil {
		t.Fatal(err)
	}
	legacy := map[string]any{}
	for _, id := range []string{rooms[0].Email, rooms[1].Email, beamer.Email} {
		if _, err := v.st.CalendarRef(store.CalendarKey(id)).Update(v.ctx, []firestore.Update{{Path: "enrolledBy", Value: store.DomainKey("corp.test")}}); err != nil {
			t.Fatal(err)
		}
		legacy[id] = true
	}
	if _, err := v.st.CustomerRef(customer).Delete(v.ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range rooms {
		if _, err := v.st.Client.Collection(store.CollRooms).Doc(store.RoomKey(customer, r.Email)).Delete(v.ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.st.DomainRef(store.DomainKey("corp.test")).Update(v.ctx, []firestore.Update{{Path: "customerId", Value: firestore.Delete}}); err != nil {
		t.Fatal(err)
	}
	v.req.reset()
	res, err := v.e.SyncDirectory(v.ctx, "corp.test", nil)
	if err != nil || res.RoomsEnrolled != 0 || res.RoomsUnenrolled != 1 || res.RoomsShrinkRefused != 0 || res.Failed != 0 {
		t.Fatalf("diff after the upgrade: %+v %v", res, err)
	}
	cals, live := v.calendars(), v.liveChannels()
	for _, r := range rooms {
		c := cals[r.Email]
		if c.Status != store.StatusActive || c.EnrolledBy != store.CustomerKey(customer) || live[r.Email] != 1 {
			t.Fatalf("room %s: %s by %s, %d live channels", r.Name, c.Status, c.EnrolledBy, live[r.Email])
		}
		if s := v.req.states()[store.CalendarKey(r.Email)]; len(s) != 0 {
			t.Fatalf("room %s asked %v: adopted rooms keep their sync state", r.Name, s)
		}
	}
	if c := cals[beamer.Email]; c.Status != store.StatusUnwatched {
		t.Fatalf("equipment %s", c.Status)
	}
	if cu, err := v.st.GetCustomer(v.ctx, customer); err != nil || cu.Calendars != 2 {
		t.Fatalf("customer %+v %v", cu, err)
	}
	if d, _ := v.st.GetDomain(v.ctx, "corp.test"); d.CustomerID != customer {
		t.Fatalf("domain's customer %q, want %q", d.CustomerID, customer)
	}
}

// A directory diff of the customer that began later (RenewChannels' diff of
// a domain enrolled meanwhile) applies its rooms first: the earlier diff's
// rooms change nothing, and its result says so (RoomsSuperseded) instead
// of counting the rooms as followed before.
func TestRoomsOfASupersededDiff(t *testing.T) {
	v := newEnv(t)
	twoDomains(t, v, 2)
	if _, err := v.e.EnrollDomain(v.ctx, enroll.DomainSpec{Domain: "one.test", Admin: "admin@one.test", Rooms: true}, nil); err != nil {
		t.Fatal(err)
	}
	earlier := v.otherInstance()
	earlier.Now = func() time.Time { return time.Now().Add(-time.Hour) } // its diff began before the one applied
	res, err := earlier.SyncDirectory(v.ctx, "one.test", nil)
	if err != nil || !res.RoomsSuperseded || res.RoomsEnrolled != 0 || res.Rooms != 2 {
		t.Fatalf("the earlier diff: %+v %v; want its rooms superseded", res, err)
	}
	res, err = v.e.SyncDirectory(v.ctx, "one.test", nil)
	if err != nil || res.RoomsSuperseded {
		t.Fatalf("a diff that began after: %+v %v", res, err)
	}
}
