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

// A problem found while (or after) a calendar is unwatched does not replace
// unwatched; the lease still goes back; telling a calendar to watch again
// does; an identity's grant failing after it was unenrolled leaves it
// unenrolled.
func TestProblemsDoNotReplaceUnwatched(t *testing.T) {
	ctx := context.Background()
	st := testStore(t)
	key, err := st.RegisterCalendar(ctx, Calendar{CalendarID: "gone@corp.test", AuthMode: AuthDelegation, Subject: "gone@corp.test"}, activate)
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

	id, _, err := st.PutIdentity(ctx, Identity{AuthMode: AuthDelegation, Subject: "gone@corp.test"}, activate)
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
