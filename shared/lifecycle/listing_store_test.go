package lifecycle_test

import (
	"context"
	"testing"
	"time"

	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/store"
)

// ApplyListing: a listing enrolls what it lists, unenrolls what this
// identity enrolled and the list lost, leaves others' calendars alone, and a
// listing that began before the last applied one changes nothing.
func TestApplyListing(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	key, _, err := lifecycle.EnrollIdentity(ctx, st, store.Identity{AuthMode: store.AuthDelegation, Subject: "ann@corp.test"})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := lifecycle.Register(ctx, st, store.Calendar{CalendarID: "ops@corp.test", AuthMode: store.AuthADC})
	as := func(id string) store.Calendar {
		return store.Calendar{CalendarID: id, AuthMode: store.AuthDelegation, Subject: "ann@corp.test"}
	}
	t0 := time.Now()
	got, err := st.ApplyListing(ctx, key, store.Listing{StartedAt: t0, Enroll: []store.Calendar{as("ann@corp.test"), as("team@corp.test"), as("ops@corp.test")}}, lifecycle.PlanListing)
	if err != nil || got.Stale || len(got.Enrolled) != 2 || got.Shared != 1 || got.Calendars != 2 {
		t.Fatalf("first listing: %+v %v", got, err)
	}
	if c, _ := st.GetCalendar(ctx, other); c.EnrolledBy != "" || c.AuthMode != store.AuthADC {
		t.Fatalf("an operator's calendar was taken over: %+v", c)
	}
	c, err := st.GetCalendar(ctx, store.CalendarKey("team@corp.test"))
	if err != nil || c.EnrolledBy != key || c.Status != store.StatusActive || c.Subject != "ann@corp.test" {
		t.Fatalf("enrolled calendar: %+v %v", c, err)
	}
	// A stale listing (began before the applied one) changes nothing.
	got, err = st.ApplyListing(ctx, key, store.Listing{StartedAt: t0.Add(-time.Second), Unenroll: []string{store.CalendarKey("team@corp.test")}}, lifecycle.PlanListing)
	if err != nil || !got.Stale {
		t.Fatalf("stale listing: %+v %v", got, err)
	}
	if c, _ := st.GetCalendar(ctx, store.CalendarKey("team@corp.test")); c.Status != store.StatusActive {
		t.Fatal("a stale listing unenrolled a calendar")
	}
	// A newer one unenrolls it (and only ours: ops is not ann's).
	got, err = st.ApplyListing(ctx, key, store.Listing{StartedAt: t0.Add(time.Second), UnenrollReason: "left the list",
		Unenroll: []string{store.CalendarKey("team@corp.test"), other}}, lifecycle.PlanListing)
	if err != nil || got.Stale || len(got.Unenrolled) != 1 || got.Unenrolled[0].CalendarID != "team@corp.test" || got.Calendars != 1 {
		t.Fatalf("newer listing: %+v %v", got, err)
	}
	c, _ = st.GetCalendar(ctx, store.CalendarKey("team@corp.test"))
	if c.Status != store.StatusUnwatched || c.StatusReason != "left the list" || c.EnrolledBy != key {
		t.Fatalf("unenrolled calendar: %+v", c)
	}
	if c, _ := st.GetCalendar(ctx, other); c.Status != store.StatusActive {
		t.Fatal("another's calendar was unenrolled")
	}
	// Back in the list: re-activated (its sync state kept), counted again.
	got, err = st.ApplyListing(ctx, key, store.Listing{StartedAt: t0.Add(2 * time.Second), Enroll: []store.Calendar{as("team@corp.test")}}, lifecycle.PlanListing)
	if err != nil || len(got.Enrolled) != 1 || got.Calendars != 2 {
		t.Fatalf("re-enrolled: %+v %v", got, err)
	}
	// An identity no longer active applies nothing.
	if err := st.SetIdentityStatus(ctx, key, store.StatusUnenrolled, "by test"); err != nil {
		t.Fatal(err)
	}
	got, err = st.ApplyListing(ctx, key, store.Listing{StartedAt: t0.Add(3 * time.Second), Unenroll: []string{store.CalendarKey("team@corp.test")}}, lifecycle.PlanListing)
	if err != nil || !got.Stale {
		t.Fatalf("listing of an unenrolled identity: %+v %v", got, err)
	}
	// Re-enrolling keeps the listing history.
	if _, _, err := lifecycle.EnrollIdentity(ctx, st, store.Identity{AuthMode: store.AuthDelegation, Subject: "ann@corp.test", Domain: "corp.test"}); err != nil {
		t.Fatal(err)
	}
	id, _ := st.GetIdentity(ctx, key)
	if id.Status != store.StatusActive || id.ListedAt.IsZero() || id.Domain != "corp.test" || id.Calendars != 2 {
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
