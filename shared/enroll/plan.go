package enroll

import (
	"slices"
	"strings"

	admin "google.golang.org/api/admin/directory/v1"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
)

// RoomCategory is the resourceCategory of the calendar resources calsync
// follows: conference rooms (equipment and the like are OTHER, legacy
// resources CATEGORY_UNKNOWN).
const RoomCategory = "CONFERENCE_ROOM"

// directoryState is what a directory diff read: the directory's listings
// and what the domain (and its customer) enrolled. The input of planDirectory.
type directoryState struct {
	Domain     store.Domain
	Users      []*admin.User             // users.list of the domain
	Identities map[string]store.Identity // the identities the domain enrolled, by key

	// Rooms: with ListedRooms set, resources.calendars.list of the
	// customer (every category) was read.
	ListedRooms bool
	Resources   []*admin.CalendarResource
	// RoomCalendars: the room calendars the customer enrolled, by key.
	RoomCalendars map[string]store.Calendar
	// RoomDomains: by room calendar key, the domains whose last diff listed
	// the room (this one's earlier diffs included).
	RoomDomains map[string][]string
	// EnrollingDomains: the customer's enrolled domains that follow rooms
	// (not unenrolled), this one included.
	EnrollingDomains map[string]bool

	MaxUnenrollShare float64 // zero: DefaultMaxUnenrollShare
	AllowShrink      bool
}

// directoryPlan is what the diff is to do (planDirectory): pure data.
type directoryPlan struct {
	Active   int            // active users listed
	Enroll   []IdentitySpec // users to enroll (new, back, or with new settings)
	Kept     int            // users already enrolled as asked
	Unenroll []string       // identity keys of suspended or deleted users
	// Following: identities followed before the diff; Allowed: how many of
	// them one diff may unenroll; ShrinkRefused: more were to go, so none do.
	Following, Allowed, ShrinkRefused int

	Rooms         []store.Calendar // the customer's rooms, read as the domain's admin
	RoomEmails    []string         // their resource emails: what this domain lists now
	NotRooms      int              // resources listed that are not rooms (not followed)
	RoomsUnenroll []string         // room calendar keys no enrolling domain lists any more (or listed as not rooms)
	// RoomsFollowing, RoomsAllowed, RoomsShrinkRefused: the same guard for rooms.
	RoomsFollowing, RoomsAllowed, RoomsShrinkRefused int
}

// planDirectory decides a directory diff: which users to enroll and which
// identities to unenroll, which rooms to enroll and unenroll, and whether
// the shrink guard refuses the unenrollments (more than MaxUnenrollShare of
// what the domain follows, unless AllowShrink: a partial listing). Pure.
func planDirectory(st directoryState) directoryPlan {
	var p directoryPlan
	d := st.Domain
	active := map[string]bool{}
	for _, u := range st.Users {
		if u.Suspended || u.Archived {
			continue
		}
		email := strings.ToLower(u.PrimaryEmail)
		if active[email] {
			continue
		}
		active[email] = true
		sp := IdentitySpec{AuthMode: store.AuthDelegation, Subject: email, Filters: d.Filters,
			DeleteMirrorOnRemove: d.DeleteMirrorOnRemove, Domain: d.Domain}
		if id, ok := st.Identities[sp.Key()]; ok && id.Status == store.StatusActive && sameFilters(id.Filters, d.Filters) &&
			id.DeleteMirrorOnRemove == d.DeleteMirrorOnRemove {
			p.Kept++
			continue
		}
		p.Enroll = append(p.Enroll, sp)
	}
	p.Active = len(active)
	for key, id := range st.Identities {
		if id.Status == store.StatusUnenrolled {
			continue
		}
		p.Following++
		// auth_revoked too: a suspended user's grant often fails (a list
		// push, a reconcile) before the diff sees the suspension.
		if !active[strings.ToLower(id.Subject)] {
			p.Unenroll = append(p.Unenroll, key)
		}
	}
	slices.Sort(p.Unenroll)
	p.Allowed = unenrollAllowance(st.MaxUnenrollShare, p.Following)
	if len(p.Unenroll) > p.Allowed && !st.AllowShrink {
		p.ShrinkRefused, p.Unenroll = len(p.Unenroll), nil
	}
	if st.ListedRooms {
		planRooms(st, &p)
	}
	return p
}

// planRooms: the customer's rooms this domain lists are enrolled (once,
// by the customer); a room the customer enrolled is unenrolled only when no
// domain of the customer that follows rooms lists it any more.
func planRooms(st directoryState, p *directoryPlan) {
	d := st.Domain
	listed, notRoom := map[string]bool{}, map[string]bool{}
	for _, r := range st.Resources {
		if r.ResourceEmail == "" {
			continue
		}
		if r.ResourceCategory != RoomCategory {
			p.NotRooms++
			notRoom[store.CalendarKey(strings.ToLower(r.ResourceEmail))] = true
			continue
		}
		email := strings.ToLower(r.ResourceEmail)
		key := store.CalendarKey(email)
		if listed[key] {
			continue
		}
		listed[key] = true
		p.RoomEmails = append(p.RoomEmails, email)
		p.Rooms = append(p.Rooms, store.Calendar{CalendarID: email, AuthMode: store.AuthDelegation, Subject: d.Admin})
	}
	// Listed, but not a room (equipment enrolled before calsync told them
	// apart): unenrolled whatever the guard says, as the listing shows it.
	var notRooms []string
	for key, c := range st.RoomCalendars {
		if c.Status == store.StatusUnwatched {
			continue
		}
		switch {
		case notRoom[key]:
			notRooms = append(notRooms, key)
			continue
		case listed[key] || slices.ContainsFunc(st.RoomDomains[key], func(o string) bool { return o != d.Domain && st.EnrollingDomains[o] }):
		default:
			p.RoomsUnenroll = append(p.RoomsUnenroll, key)
		}
		p.RoomsFollowing++
	}
	p.RoomsAllowed = unenrollAllowance(st.MaxUnenrollShare, p.RoomsFollowing)
	if len(p.RoomsUnenroll) > p.RoomsAllowed && !st.AllowShrink {
		p.RoomsShrinkRefused, p.RoomsUnenroll = len(p.RoomsUnenroll), nil
	}
	p.RoomsUnenroll = append(p.RoomsUnenroll, notRooms...)
	slices.Sort(p.RoomsUnenroll)
}

// unenrollAllowance is how many of n followed identities (or rooms) one
// diff may unenroll: share of them (DefaultMaxUnenrollShare when not
// positive), rounded down, and at least one (a small domain's single
// departure is no sign of a partial listing).
func unenrollAllowance(share float64, n int) int {
	if share <= 0 {
		share = DefaultMaxUnenrollShare
	}
	return max(int(share*float64(n)+1e-9), 1)
}

func sameFilters(a, b messages.Filters) bool {
	return a.MinAccessRole == b.MinAccessRole && a.PrimaryOnly == b.PrimaryOnly &&
		slices.Equal(a.Include, b.Include) && slices.Equal(a.Exclude, b.Exclude)
}
