package enroll

import (
	"fmt"
	"slices"
	"testing"

	admin "google.golang.org/api/admin/directory/v1"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
)

// The pure diff, without emulators: a directory listing against what is
// enrolled gives what to enroll, what to unenroll, and when the shrink
// guard refuses.

func user(email string, suspended bool) *admin.User {
	return &admin.User{PrimaryEmail: email, Suspended: suspended, CustomerId: "C1"}
}

func identity(email, status string) (string, store.Identity) {
	sp := IdentitySpec{AuthMode: store.AuthDelegation, Subject: email, Domain: "corp.test"}
	return sp.Key(), store.Identity{AuthMode: store.AuthDelegation, Subject: email, Status: status, Domain: "corp.test"}
}

func TestPlanUsers(t *testing.T) {
	d := store.Domain{Domain: "corp.test", Admin: "admin@corp.test"}
	ids := map[string]store.Identity{}
	for i := range 20 {
		k, id := identity(fmt.Sprintf("u%02d@corp.test", i), store.StatusActive)
		ids[k] = id
	}
	kOld, old := identity("old@corp.test", store.StatusUnenrolled)
	ids[kOld] = old
	kRev, rev := identity("rev@corp.test", store.StatusAuthRevoked)
	ids[kRev] = rev
	var users []*admin.User
	for i := range 20 {
		users = append(users, user(fmt.Sprintf("U%02d@corp.test", i), false)) // case differs: the same users
	}
	users = append(users, user("new@corp.test", false), user("sus@corp.test", true), user("rev@corp.test", false))

	p := planDirectory(directoryState{Domain: d, Users: users, Identities: ids})
	if p.Active != 22 || p.Kept != 20 || len(p.Enroll) != 2 || p.Enroll[0].Subject != "new@corp.test" || p.Enroll[1].Subject != "rev@corp.test" {
		t.Fatalf("enroll: active %d kept %d enroll %+v", p.Active, p.Kept, p.Enroll)
	}
	if len(p.Unenroll) != 0 || p.Following != 21 || p.ShrinkRefused != 0 {
		t.Fatalf("nothing to unenroll: %+v", p)
	}
	// New filters: everyone enrolled again with them.
	d2 := d
	d2.Filters = messages.Filters{PrimaryOnly: true}
	if p := planDirectory(directoryState{Domain: d2, Users: users, Identities: ids}); p.Kept != 0 || len(p.Enroll) != 22 {
		t.Fatalf("new filters: kept %d enroll %d", p.Kept, len(p.Enroll))
	}
	// Two of 21 followed gone: 10% of 21 is 2, allowed.
	short := slices.Delete(slices.Clone(users), 0, 2)
	p = planDirectory(directoryState{Domain: d, Users: short, Identities: ids})
	if len(p.Unenroll) != 2 || p.Allowed != 2 || p.ShrinkRefused != 0 {
		t.Fatalf("two departures: %+v", p)
	}
	// Three gone: more than the share, none unenrolled; unless the operator says so.
	shorter := slices.Delete(slices.Clone(users), 0, 3)
	p = planDirectory(directoryState{Domain: d, Users: shorter, Identities: ids})
	if len(p.Unenroll) != 0 || p.ShrinkRefused != 3 || len(p.Enroll) != 2 {
		t.Fatalf("three departures: %+v", p)
	}
	p = planDirectory(directoryState{Domain: d, Users: shorter, Identities: ids, AllowShrink: true})
	if len(p.Unenroll) != 3 || p.ShrinkRefused != 0 {
		t.Fatalf("three departures, allowed: %+v", p)
	}
	p = planDirectory(directoryState{Domain: d, Users: shorter, Identities: ids, MaxUnenrollShare: 0.5})
	if len(p.Unenroll) != 3 {
		t.Fatalf("three departures, share 0.5: %+v", p)
	}
	// A small domain: one departure is always allowed.
	k, one := identity("solo@corp.test", store.StatusActive)
	if p := planDirectory(directoryState{Domain: d, Identities: map[string]store.Identity{k: one}}); len(p.Unenroll) != 1 {
		t.Fatalf("a single departure: %+v", p)
	}
}

func resource(email, category string) *admin.CalendarResource {
	return &admin.CalendarResource{ResourceEmail: email, ResourceCategory: category}
}

func TestPlanRooms(t *testing.T) {
	d := store.Domain{Domain: "one.test", Admin: "admin@one.test", Rooms: true, CustomerID: "C1"}
	followed := func(emails ...string) map[string]store.Calendar {
		out := map[string]store.Calendar{}
		for _, e := range emails {
			out[store.CalendarKey(e)] = store.Calendar{CalendarID: e, Status: store.StatusActive}
		}
		return out
	}
	listing := []*admin.CalendarResource{
		resource("r1@resource.calendar.google.com", RoomCategory),
		resource("R1@resource.calendar.google.com", RoomCategory), // listed twice: once
		resource("r2@resource.calendar.google.com", RoomCategory),
		resource("beamer@resource.calendar.google.com", "OTHER"),
		resource("legacy@resource.calendar.google.com", "CATEGORY_UNKNOWN"),
		resource("", RoomCategory),
	}
	st := directoryState{Domain: d, ListedRooms: true, Resources: listing, RoomCalendars: followed(),
		EnrollingDomains: map[string]bool{"one.test": true}}
	p := planDirectory(st)
	var got []string
	for _, c := range p.Rooms {
		if c.Subject != "admin@one.test" || c.AuthMode != store.AuthDelegation {
			t.Fatalf("room read as %+v", c)
		}
		got = append(got, c.CalendarID)
	}
	if fmt.Sprint(got) != "[r1@resource.calendar.google.com r2@resource.calendar.google.com]" || p.NotRooms != 2 ||
		fmt.Sprint(p.RoomEmails) != fmt.Sprint(got) {
		t.Fatalf("rooms %v (emails %v), not rooms %d", got, p.RoomEmails, p.NotRooms)
	}
	// Without rooms listed, nothing about rooms is decided.
	if p := planDirectory(directoryState{Domain: d, Resources: listing}); len(p.Rooms) != 0 || p.RoomsFollowing != 0 {
		t.Fatalf("rooms planned without a listing: %+v", p)
	}

	// The customer follows r1, r2, r3 and r4. This domain lists r1 and r2;
	// two.test (enrolled, with rooms) listed r3 last; r4 was listed by
	// three.test, unenrolled since, and by this domain before.
	r3, r4 := "r3@resource.calendar.google.com", "r4@resource.calendar.google.com"
	st.RoomCalendars = followed("r1@resource.calendar.google.com", "r2@resource.calendar.google.com", r3, r4)
	st.RoomDomains = map[string][]string{store.CalendarKey(r3): {"one.test", "two.test"}, store.CalendarKey(r4): {"one.test", "three.test"}}
	st.EnrollingDomains = map[string]bool{"one.test": true, "two.test": true}
	p = planDirectory(st)
	if fmt.Sprint(p.RoomsUnenroll) != fmt.Sprint([]string{store.CalendarKey(r4)}) || p.RoomsFollowing != 4 {
		t.Fatalf("rooms to unenroll %v (following %d), want r4 only", p.RoomsUnenroll, p.RoomsFollowing)
	}
	// An unwatched room is not followed: nothing to unenroll.
	c := st.RoomCalendars[store.CalendarKey(r4)]
	c.Status = store.StatusUnwatched
	st.RoomCalendars[store.CalendarKey(r4)] = c
	if p := planDirectory(st); len(p.RoomsUnenroll) != 0 || p.RoomsFollowing != 3 {
		t.Fatalf("unwatched room: %+v", p)
	}
	// two.test unenrolled as well: r3 goes too.
	st.EnrollingDomains = map[string]bool{"one.test": true}
	c.Status = store.StatusActive
	st.RoomCalendars[store.CalendarKey(r4)] = c
	st.MaxUnenrollShare = 0.5
	if p := planDirectory(st); len(p.RoomsUnenroll) != 2 || p.RoomsShrinkRefused != 0 {
		t.Fatalf("two rooms listed by no enrolling domain: %+v", p)
	}
}

// Rooms are under the shrink guard as users are: a listing that loses more
// than the share of the rooms followed unenrolls none of them.
func TestPlanRoomsShrinkRefused(t *testing.T) {
	d := store.Domain{Domain: "one.test", Admin: "admin@one.test", Rooms: true, CustomerID: "C1"}
	cals := map[string]store.Calendar{}
	var listing []*admin.CalendarResource
	for i := range 20 {
		e := fmt.Sprintf("r%02d@resource.calendar.google.com", i)
		cals[store.CalendarKey(e)] = store.Calendar{CalendarID: e, Status: store.StatusActive}
		listing = append(listing, resource(e, RoomCategory))
	}
	st := directoryState{Domain: d, ListedRooms: true, RoomCalendars: cals, EnrollingDomains: map[string]bool{"one.test": true}}
	st.Resources = listing[:18] // two gone: 10% of 20, allowed
	if p := planDirectory(st); len(p.RoomsUnenroll) != 2 || p.RoomsShrinkRefused != 0 || p.RoomsAllowed != 2 {
		t.Fatalf("two rooms gone: %+v", p)
	}
	st.Resources = listing[:5] // fifteen gone: refused
	p := planDirectory(st)
	if len(p.RoomsUnenroll) != 0 || p.RoomsShrinkRefused != 15 || len(p.Rooms) != 5 {
		t.Fatalf("fifteen rooms gone: %+v", p)
	}
	st.AllowShrink = true
	if p := planDirectory(st); len(p.RoomsUnenroll) != 15 || p.RoomsShrinkRefused != 0 {
		t.Fatalf("fifteen rooms gone, allowed: %+v", p)
	}
	st.AllowShrink, st.Resources = false, slices.Clone(listing)
	// Equipment enrolled before calsync told rooms apart: listed as OTHER,
	// it goes whatever the guard says (it is no sign of a partial listing).
	for i := range 5 {
		e := fmt.Sprintf("beamer%d@resource.calendar.google.com", i)
		cals[store.CalendarKey(e)] = store.Calendar{CalendarID: e, Status: store.StatusActive}
		st.Resources = append(st.Resources, resource(e, "OTHER"))
	}
	if p := planDirectory(st); len(p.RoomsUnenroll) != 5 || p.RoomsShrinkRefused != 0 || p.RoomsFollowing != 20 {
		t.Fatalf("equipment followed before: %+v", p)
	}
	for i := range 5 {
		delete(cals, store.CalendarKey(fmt.Sprintf("beamer%d@resource.calendar.google.com", i)))
	}
	// An empty listing (a resources scope narrowed?) is the extreme case.
	st.AllowShrink, st.Resources = false, nil
	if p := planDirectory(st); len(p.RoomsUnenroll) != 0 || p.RoomsShrinkRefused != 20 {
		t.Fatalf("no rooms listed: %+v", p)
	}
}
