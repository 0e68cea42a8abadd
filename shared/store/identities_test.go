package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestIdentityAndDomainKeys(t *testing.T) {
	a := Grant{AuthMode: AuthDelegation, Subject: "Ann@Corp.test"}.IdentityKey()
	if a != (Grant{AuthMode: AuthDelegation, Subject: "ann@corp.test"}).IdentityKey() || len(a) != 27 || a[0] != 'i' {
		t.Fatalf("subject keys: %q", a)
	}
	// Only A-Z fold: a Kelvin sign (U+212A), which Unicode lower-cases to
	// "k", does not name its ASCII twin's identity.
	if (Grant{AuthMode: AuthDelegation, Subject: "\u212Aate@corp.test"}).IdentityKey() == (Grant{AuthMode: AuthDelegation, Subject: "kate@corp.test"}).IdentityKey() ||
		SubjectName("\u212Aate@Corp.test") != "subject:\u212Aate@corp.test" {
		t.Fatal("a non-ASCII subject folds onto its ASCII twin")
	}
	if (Grant{AuthMode: AuthOAuth, CredentialID: "cred-1"}).IdentityKey() == (Grant{AuthMode: AuthOAuth, CredentialID: "cred-2"}).IdentityKey() || DomainKey("Corp.test") != DomainKey("corp.test") {
		t.Fatal("keys do not tell identities or domains apart")
	}
	if k := DomainKey("corp.test"); k[0] != 'd' || len(k) != 27 {
		t.Fatalf("domain key %q", k)
	}
}

// ApplyListing: a listing enrolls what it lists, unenrolls what this
// identity enrolled and the list lost, leaves others' calendars alone, and a
// listing that began before the last applied one changes nothing.
func TestApplyListing(t *testing.T) {
	ctx := context.Background()
	st := testStore(t)
	key, err := st.PutIdentity(ctx, Identity{AuthMode: AuthDelegation, Subject: "ann@corp.test"})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := st.RegisterCalendar(ctx, Calendar{CalendarID: "ops@corp.test", AuthMode: AuthADC})
	as := func(id string) Calendar {
		return Calendar{CalendarID: id, AuthMode: AuthDelegation, Subject: "ann@corp.test"}
	}
	t0 := time.Now()
	got, err := st.ApplyListing(ctx, key, Listing{StartedAt: t0, Enroll: []Calendar{as("ann@corp.test"), as("team@corp.test"), as("ops@corp.test")}})
	if err != nil || got.Stale || len(got.Enrolled) != 2 || got.Shared != 1 || got.Calendars != 2 {
		t.Fatalf("first listing: %+v %v", got, err)
	}
	if c, _ := st.GetCalendar(ctx, other); c.EnrolledBy != "" || c.AuthMode != AuthADC {
		t.Fatalf("an operator's calendar was taken over: %+v", c)
	}
	c, err := st.GetCalendar(ctx, CalendarKey("team@corp.test"))
	if err != nil || c.EnrolledBy != key || c.Status != StatusActive || c.Subject != "ann@corp.test" {
		t.Fatalf("enrolled calendar: %+v %v", c, err)
	}
	// A stale listing (began before the applied one) changes nothing.
	got, err = st.ApplyListing(ctx, key, Listing{StartedAt: t0.Add(-time.Second), Unenroll: []string{CalendarKey("team@corp.test")}})
	if err != nil || !got.Stale {
		t.Fatalf("stale listing: %+v %v", got, err)
	}
	if c, _ := st.GetCalendar(ctx, CalendarKey("team@corp.test")); c.Status != StatusActive {
		t.Fatal("a stale listing unenrolled a calendar")
	}
	// A newer one unenrolls it (and only ours: ops is not ann's).
	got, err = st.ApplyListing(ctx, key, Listing{StartedAt: t0.Add(time.Second), UnenrollReason: "left the list",
		Unenroll: []string{CalendarKey("team@corp.test"), other}})
	if err != nil || got.Stale || len(got.Unenrolled) != 1 || got.Unenrolled[0].CalendarID != "team@corp.test" || got.Calendars != 1 {
		t.Fatalf("newer listing: %+v %v", got, err)
	}
	c, _ = st.GetCalendar(ctx, CalendarKey("team@corp.test"))
	if c.Status != StatusUnwatched || c.StatusReason != "left the list" || c.EnrolledBy != key {
		t.Fatalf("unenrolled calendar: %+v", c)
	}
	if c, _ := st.GetCalendar(ctx, other); c.Status != StatusActive {
		t.Fatal("another's calendar was unenrolled")
	}
	// Back in the list: re-activated (its sync state kept), counted again.
	got, err = st.ApplyListing(ctx, key, Listing{StartedAt: t0.Add(2 * time.Second), Enroll: []Calendar{as("team@corp.test")}})
	if err != nil || len(got.Enrolled) != 1 || got.Calendars != 2 {
		t.Fatalf("re-enrolled: %+v %v", got, err)
	}
	// An identity no longer active applies nothing.
	if err := st.SetIdentityStatus(ctx, key, StatusUnenrolled, "by test"); err != nil {
		t.Fatal(err)
	}
	got, err = st.ApplyListing(ctx, key, Listing{StartedAt: t0.Add(3 * time.Second), Unenroll: []string{CalendarKey("team@corp.test")}})
	if err != nil || !got.Stale {
		t.Fatalf("listing of an unenrolled identity: %+v %v", got, err)
	}
	// Re-enrolling keeps the listing history.
	if _, err := st.PutIdentity(ctx, Identity{AuthMode: AuthDelegation, Subject: "ann@corp.test", Domain: "corp.test"}); err != nil {
		t.Fatal(err)
	}
	id, _ := st.GetIdentity(ctx, key)
	if id.Status != StatusActive || id.ListedAt.IsZero() || id.Domain != "corp.test" || id.Calendars != 2 {
		t.Fatalf("re-enrolled identity: %+v", id)
	}
	byDomain, err := st.IdentitiesOfDomain(ctx, "corp.test")
	if err != nil || len(byDomain) != 1 {
		t.Fatalf("identities of the domain: %v %v", byDomain, err)
	}
	mine, err := st.CalendarsEnrolledBy(ctx, key)
	if err != nil || len(mine) != 2 {
		t.Fatalf("calendars enrolled by ann: %v %v", mine, err)
	}
}

// A problem found while (or after) a calendar is unwatched does not replace
// unwatched; the lease still goes back; telling a calendar to watch again
// does; an identity's grant failing after it was unenrolled leaves it
// unenrolled.
func TestProblemsDoNotReplaceUnwatched(t *testing.T) {
	ctx := context.Background()
	st := testStore(t)
	key, err := st.RegisterCalendar(ctx, Calendar{CalendarID: "gone@corp.test", AuthMode: AuthDelegation, Subject: "gone@corp.test"})
	if err != nil {
		t.Fatal(err)
	}
	adm, err := st.Admit(ctx, key, Request{ReceivedAt: time.Now()}, Lease{Owner: "worker/1", Duration: time.Minute}, Coalesce)
	if err != nil || adm.Outcome != OutcomeSync {
		t.Fatalf("admit: %+v %v", adm, err)
	}
	lease := adm.Lease
	if err := st.SetStatus(ctx, key, StatusUnwatched, "left the list", ""); err != nil {
		t.Fatal(err)
	}
	for _, problem := range []string{StatusAuthRevoked, StatusNotFound} {
		if err := st.SetStatus(ctx, key, problem, "found late", lease.Owner); err != nil {
			t.Fatal(err)
		}
		c, _ := st.GetCalendar(ctx, key)
		if c.Status != StatusUnwatched || c.StatusReason != "left the list" || c.LeaseOwner != "" {
			t.Fatalf("after %s: %+v", problem, c)
		}
	}
	if err := st.SetStatus(ctx, key, StatusActive, "", ""); err != nil {
		t.Fatal(err)
	}
	if err := st.SetStatus(ctx, key, StatusNotFound, "404", ""); err != nil {
		t.Fatal(err)
	}
	if c, _ := st.GetCalendar(ctx, key); c.Status != StatusNotFound {
		t.Fatalf("an active calendar's problem not recorded: %+v", c)
	}

	id, err := st.PutIdentity(ctx, Identity{AuthMode: AuthDelegation, Subject: "gone@corp.test"})
	if err != nil {
		t.Fatal(err)
	}
	if did, err := st.RevokeIdentity(ctx, id, "invalid_grant"); err != nil || !did {
		t.Fatalf("an active identity not revoked: %v %v", did, err)
	}
	if got, _ := st.GetIdentity(ctx, id); got.Status != StatusAuthRevoked {
		t.Fatalf("identity %+v", got)
	}
	if err := st.SetIdentityStatus(ctx, id, StatusUnenrolled, "suspended"); err != nil {
		t.Fatal(err)
	}
	if did, err := st.RevokeIdentity(ctx, id, "invalid_grant"); err != nil || did {
		t.Fatalf("an unenrolled identity revoked: %v %v", did, err)
	}
	if got, _ := st.GetIdentity(ctx, id); got.Status != StatusUnenrolled || got.StatusReason != "suspended" {
		t.Fatalf("identity %+v", got)
	}
	if _, err := st.RevokeIdentity(ctx, "i-missing", "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing identity: %v", err)
	}
}
