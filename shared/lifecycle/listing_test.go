package lifecycle_test

import (
	"testing"
	"time"

	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/store"
)

// Two identities and what each reads with.
var (
	ritaGrant = store.Grant{AuthMode: store.AuthDelegation, Subject: "rita@corp.test"}
	olgaGrant = store.Grant{AuthMode: store.AuthDelegation, Subject: "olga@corp.test"}
	rita      = ritaGrant.IdentityKey()
	olga      = olgaGrant.IdentityKey()
)

const team = "team@group.calendar.google.com"

func listed(g store.Grant, role string) store.Calendar {
	return store.Calendar{CalendarID: team, AuthMode: g.AuthMode, Subject: g.Subject, CredentialID: g.CredentialID, AccessRole: role}
}

func reader(g store.Grant, role string) store.Reader {
	return store.Reader{AuthMode: g.AuthMode, Subject: g.Subject, CredentialID: g.CredentialID, AccessRole: role}
}

// stored is the team calendar as a listing finds it.
func stored(status, readBy string, readers map[string]store.Reader) map[string]store.Calendar {
	c := store.Calendar{CalendarID: team, Status: status, Readers: readers}
	if r, ok := readers[readBy]; ok {
		c.ReadWith(readBy, r)
	}
	return map[string]store.Calendar{store.CalendarKey(team): c}
}

func plan(owner string, stored map[string]store.Calendar, enroll []store.Calendar, unenroll ...string) store.ListingPlan {
	return lifecycle.PlanListing(store.ListingState{Owner: owner, Status: store.StatusActive, Stored: stored, Now: time.Now(),
		Listing: store.Listing{StartedAt: time.Now(), Enroll: enroll, Unenroll: unenroll, UnenrollReason: "left"}})
}

// The pure diff of a listing against what is stored: who reads each
// calendar, its status, and what the engine must do.
func TestPlanListing(t *testing.T) {
	key := store.CalendarKey(team)
	type want struct {
		readBy, status, role                        string
		enrolled, unenrolled, handed, freeBusy, shd int
		drop                                        bool
		counts                                      map[string]int
		noWrite                                     bool
	}
	cases := []struct {
		name string
		p    store.ListingPlan
		want want
	}{
		{"new calendar, read by its lister", plan(rita, nil, []store.Calendar{listed(ritaGrant, "reader")}),
			want{readBy: rita, status: store.StatusActive, role: "reader", enrolled: 1, counts: map[string]int{rita: 1}}},
		{"owner lists a calendar a reader reads: handed over, token dropped",
			plan(olga, stored(store.StatusActive, rita, map[string]store.Reader{rita: reader(ritaGrant, "reader")}),
				[]store.Calendar{listed(olgaGrant, "owner")}),
			want{readBy: olga, status: store.StatusActive, role: "owner", handed: 1, drop: true, counts: map[string]int{rita: -1, olga: 1}}},
		{"reader lists a calendar the owner reads: shared, reader recorded",
			plan(rita, stored(store.StatusActive, olga, map[string]store.Reader{olga: reader(olgaGrant, "owner")}),
				[]store.Calendar{listed(ritaGrant, "reader")}),
			want{readBy: olga, status: store.StatusActive, role: "owner", shd: 1, counts: map[string]int{olga: 0}}},
		{"owner's list lost it: the reader takes over with a full resync",
			plan(olga, stored(store.StatusActive, olga, map[string]store.Reader{olga: reader(olgaGrant, "owner"), rita: reader(ritaGrant, "reader")}),
				nil, key),
			want{readBy: rita, status: store.StatusActive, role: "reader", handed: 1, drop: true, counts: map[string]int{olga: -1, rita: 1}}},
		{"a non-reading lister lost it: readers only",
			plan(rita, stored(store.StatusActive, olga, map[string]store.Reader{olga: reader(olgaGrant, "owner"), rita: reader(ritaGrant, "reader")}),
				nil, key),
			want{readBy: olga, status: store.StatusActive, role: "owner", counts: map[string]int{}}},
		{"the last reader lost it: unwatched",
			plan(rita, stored(store.StatusActive, rita, map[string]store.Reader{rita: reader(ritaGrant, "reader")}), nil, key),
			want{readBy: rita, status: store.StatusUnwatched, role: "reader", unenrolled: 1, counts: map[string]int{rita: -1}}},
		{"only free/busy: never synced as if complete", plan(rita, nil, []store.Calendar{listed(ritaGrant, "freeBusyReader")}),
			want{readBy: rita, status: store.StatusFreeBusyOnly, role: "freeBusyReader", freeBusy: 1, counts: map[string]int{rita: 1}}},
		{"the reader left; free/busy is all that is left",
			plan(olga, stored(store.StatusActive, olga, map[string]store.Reader{olga: reader(olgaGrant, "owner"), rita: reader(ritaGrant, "freeBusyReader")}),
				nil, key),
			want{readBy: rita, status: store.StatusFreeBusyOnly, role: "freeBusyReader", freeBusy: 1, drop: true, counts: map[string]int{olga: -1, rita: 1}}},
		{"a reader's grant failed (auth_revoked): another lister takes over",
			plan(olga, stored(store.StatusAuthRevoked, rita, map[string]store.Reader{rita: reader(ritaGrant, "owner")}),
				[]store.Calendar{listed(olgaGrant, "reader")}),
			want{readBy: olga, status: store.StatusActive, role: "reader", enrolled: 1, drop: true, counts: map[string]int{rita: -1, olga: 1}}},
		{"listed again, unchanged: nothing written",
			plan(rita, stored(store.StatusActive, rita, map[string]store.Reader{rita: reader(ritaGrant, "reader")}), []store.Calendar{listed(ritaGrant, "reader")}),
			want{readBy: rita, status: store.StatusActive, role: "reader", noWrite: true, counts: map[string]int{rita: 0}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, w := tc.p, tc.want
			if p.Stale {
				t.Fatal("stale")
			}
			if w.noWrite {
				if len(p.Writes) != 0 {
					t.Fatalf("writes %+v", p.Writes)
				}
			} else {
				if len(p.Writes) != 1 {
					t.Fatalf("writes %+v", p.Writes)
				}
				c := p.Writes[0].Cal
				if c.EnrolledBy != w.readBy || c.Status != w.status || c.AccessRole != w.role || p.Writes[0].DropToken != w.drop {
					t.Errorf("wrote %+v drop=%v; want read by %s, %s, %s, drop=%v", c, p.Writes[0].DropToken, w.readBy, w.status, w.role, w.drop)
				}
				if r, ok := c.Readers[c.EnrolledBy]; w.status != store.StatusUnwatched && (!ok || c.Grant() != r.Grant()) {
					t.Errorf("read with %+v, not its reader %+v", c.Grant(), r)
				}
			}
			if len(p.Enrolled) != w.enrolled || len(p.Unenrolled) != w.unenrolled || len(p.HandedOver) != w.handed ||
				len(p.FreeBusyOnly) != w.freeBusy || p.Shared != w.shd {
				t.Errorf("enrolled %d unenrolled %d handed over %d free/busy %d shared %d; want %+v", len(p.Enrolled), len(p.Unenrolled),
					len(p.HandedOver), len(p.FreeBusyOnly), p.Shared, w)
			}
			for k, n := range w.counts {
				if p.Counts[k] != n {
					t.Errorf("count of %s: %d, want %d (%v)", k, p.Counts[k], n, p.Counts)
				}
			}
		})
	}
}

// A token is never used with another grant than the one that made it: an
// unwatched calendar enrolled again by another lister has its token dropped
// (the engine asks for a full sync), one enrolled again by its own reader
// keeps it (and catches up incrementally).
func TestTokenOfAnotherGrantDropped(t *testing.T) {
	key := store.CalendarKey(team)
	unwatched := func() map[string]store.Calendar {
		c := stored(store.StatusUnwatched, rita, map[string]store.Reader{rita: reader(ritaGrant, "reader")})
		cal := c[key]
		cal.SyncToken, cal.Readers = "rita-token", nil
		c[key] = cal
		return c
	}
	for name, tc := range map[string]struct {
		lister string
		g      store.Grant
		drop   bool
	}{"another lister": {olga, olgaGrant, true}, "its own reader": {rita, ritaGrant, false}} {
		p := plan(tc.lister, unwatched(), []store.Calendar{listed(tc.g, "reader")})
		if len(p.Writes) != 1 || len(p.Enrolled) != 1 {
			t.Fatalf("%s: writes %+v enrolled %+v", name, p.Writes, p.Enrolled)
		}
		if p.Writes[0].DropToken != tc.drop || (p.Enrolled[0].SyncToken == "") != tc.drop {
			t.Errorf("%s: drop %v, enrolled with token %q; want drop %v", name, p.Writes[0].DropToken, p.Enrolled[0].SyncToken, tc.drop)
		}
	}
}

// Stale listings and those of identities no longer active change nothing;
// an operator's active calendar is left to the operator.
func TestPlanListingGuards(t *testing.T) {
	now := time.Now()
	st := store.ListingState{Owner: rita, Status: store.StatusActive, ListedAt: now, Listing: store.Listing{StartedAt: now.Add(-time.Second),
		Enroll: []store.Calendar{listed(ritaGrant, "owner")}}}
	if p := lifecycle.PlanListing(st); !p.Stale || len(p.Writes) != 0 {
		t.Fatalf("stale listing: %+v", p)
	}
	st.Listing.StartedAt, st.Status = now.Add(time.Second), store.StatusUnenrolled
	if p := lifecycle.PlanListing(st); !p.Stale {
		t.Fatalf("listing of an unenrolled identity: %+v", p)
	}
	st.Status = store.StatusActive
	st.Stored = map[string]store.Calendar{store.CalendarKey(team): {CalendarID: team, AuthMode: store.AuthADC, Status: store.StatusActive}}
	if p := lifecycle.PlanListing(st); len(p.Writes) != 0 || p.Shared != 1 {
		t.Fatalf("an operator's calendar: %+v", p)
	}
}

// The best reader: most access first, ties by key, whatever the map order.
func TestBestReader(t *testing.T) {
	rs := map[string]store.Reader{"b": {AccessRole: "writer"}, "a": {AccessRole: "writer"}, "c": {AccessRole: "reader"},
		"d": {AccessRole: "freeBusyReader"}}
	for range 20 {
		if k, _, _ := lifecycle.BestReader(rs); k != "a" {
			t.Fatalf("best %q, want a", k)
		}
	}
	rs["z"] = store.Reader{AccessRole: "owner"}
	if k, _, _ := lifecycle.BestReader(rs); k != "z" {
		t.Fatalf("best %q, want the owner", k)
	}
	if _, _, ok := lifecycle.BestReader(nil); ok {
		t.Fatal("a best reader of none")
	}
}
