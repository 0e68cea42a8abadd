package enroll_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/tenant"
)

const twoTenants = `[{"name":"acme","controlSubscription":"acme-push","domains":["acme.test"],"oauth":false},
 {"name":"globex","controlSubscription":"globex-push","domains":["globex.test"],"subjects":["ann@acme.test"],"oauth":true}]`

// Two tenants share a deployment: each enrolls only its own users, a
// calendar both reach has a mirror for each (never shared), and every
// transition is announced, attributed, on the lifecycle topic. The control
// path refuses what a tenant may not do, a stale or superseded message,
// and does a redelivered request once.
func TestTenantsControlPath(t *testing.T) {
	v := newEnv(t, func(c *config.Calendar) { c.Tenants = twoTenants })
	set, err := tenant.Parse(twoTenants, "")
	if err != nil {
		t.Fatal(err)
	}
	acme, _ := set.Get("acme")
	globex, _ := set.Get("globex")
	for _, d := range []string{"acme.test", "globex.test"} {
		if err := v.emu.CreateDomain(d, "admin@"+d); err != nil {
			t.Fatal(err)
		}
	}
	_ = v.emu.AddDomainUser("ann@acme.test", false)
	_ = v.emu.AddDomainUser("bob@globex.test", false)
	// Ann's calendar is shared with Bob: it is on both tenants' lists.
	if err := v.emu.Share("ann@acme.test", "bob@globex.test", "reader", true); err != nil {
		t.Fatal(err)
	}
	send := func(tn tenant.Tenant, issued time.Time, requestID, body string) (messages.Control, error) {
		t.Helper()
		c, err := messages.ParseControl([]byte(`{"version":1,"requestId":"` + requestID + `","issuedAt":"` +
			issued.UTC().Format(time.RFC3339Nano) + `",` + body + `}`))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		err = v.e.HandleControl(v.ctx, tn, c, v.creds)
		v.e.AnswerControl(v.ctx, tn, c, err)
		return c, err
	}
	must := func(tn tenant.Tenant, body string) {
		t.Helper()
		if _, err := send(tn, time.Now(), uuid.NewString(), body); err != nil {
			t.Fatalf("%s %s: %v", tn.Name, body, err)
		}
	}
	refused := func(name string, err error, reason string) {
		t.Helper()
		if got := messages.InvalidReason(err); got != reason {
			t.Errorf("%s: %v, want reason %s", name, err, reason)
		}
	}

	must(acme, `"action":"enroll","subject":"ann@acme.test","externalId":"acme-ann"`)
	must(globex, `"action":"enroll","subject":"bob@globex.test","externalId":"globex-bob"`)

	annCal := store.CalendarKeyIn("acme", "ann@acme.test")
	sharedCal := store.CalendarKeyIn("globex", "ann@acme.test")
	if annCal == sharedCal || annCal == store.CalendarKey("ann@acme.test") {
		t.Fatalf("tenant keys: %s %s", annCal, sharedCal)
	}
	annKey := store.Grant{AuthMode: store.AuthDelegation, Subject: "ann@acme.test"}.IdentityKey()
	bobKey := store.Grant{AuthMode: store.AuthDelegation, Subject: "bob@globex.test"}.IdentityKey()
	for key, want := range map[string]store.Calendar{
		annCal:    {Tenant: "acme", EnrolledBy: annKey, ExternalID: "acme-ann"},
		sharedCal: {Tenant: "globex", EnrolledBy: bobKey, ExternalID: "globex-bob"},
	} {
		c, err := v.st.GetCalendar(v.ctx, key)
		if err != nil || c.Tenant != want.Tenant || c.EnrolledBy != want.EnrolledBy || c.ExternalID != want.ExternalID || c.Status != store.StatusActive {
			t.Fatalf("calendar %s: %+v %v; want %+v", key, c, err, want)
		}
	}

	// What a tenant may not do changes nothing, and is answered.
	_, err = send(acme, time.Now(), "r-bob", `"action":"enroll","subject":"bob@globex.test"`)
	refused("acme enrolls a globex user", err, messages.ReasonOutsideTenant)
	_, err = send(globex, time.Now(), "r-ann", `"action":"unenroll","subject":"ann@acme.test"`)
	refused("globex unenrolls acme's identity", err, messages.ReasonOtherTenant)
	_, err = send(acme, time.Now(), "r-oauth", `"action":"enroll","credentialId":"cred-00000000-0000-4000-8000-000000000000"`)
	refused("acme enrolls an OAuth grant", err, messages.ReasonOutsideTenant)
	_, err = send(acme, time.Now().Add(-11*time.Minute), "r-old", `"action":"resync","subject":"ann@acme.test"`)
	refused("a message issued 11 minutes ago", err, messages.ReasonStaleRequest)
	if id, err := v.st.GetIdentity(v.ctx, annKey); err != nil || id.Status != store.StatusActive || tenant.Of(id.Tenant) != "acme" {
		t.Fatalf("ann after refusals: %+v %v", id, err)
	}
	if _, err := v.st.GetIdentity(v.ctx, store.Grant{AuthMode: store.AuthDelegation, Subject: "bob@globex.test"}.IdentityKey()); err != nil {
		t.Fatal(err)
	}

	// Ordering: an enroll issued before an unenroll, delivered after it,
	// changes nothing; the redelivered unenroll is done once.
	enrollAt := time.Now().Add(-time.Minute)
	_, err = send(acme, time.Now(), "r-unenroll", `"action":"unenroll","subject":"ann@acme.test"`)
	if err != nil {
		t.Fatal(err)
	}
	_, err = send(acme, enrollAt, "r-late-enroll", `"action":"enroll","subject":"ann@acme.test"`)
	refused("an enroll issued before the unenroll", err, messages.ReasonSuperseded)
	var dup *enroll.DuplicateError
	if _, err = send(acme, time.Now(), "r-unenroll", `"action":"unenroll","subject":"ann@acme.test"`); !errors.As(err, &dup) || dup.Outcome != enroll.OutcomeAccepted {
		t.Fatalf("redelivered unenroll: %v", err)
	}
	if id, err := v.st.GetIdentity(v.ctx, annKey); err != nil || id.Status != store.StatusUnenrolled {
		t.Fatalf("ann after the late enroll: %+v %v", id, err)
	}
	if c, _ := v.st.GetCalendar(v.ctx, sharedCal); c.Status != store.StatusActive {
		t.Fatalf("globex's mirror of ann's calendar followed acme's unenroll: %+v", c)
	}

	// A request claimed 20 minutes ago whose first attempt failed half way
	// (Pub/Sub's backoff brings it back late): judged by its record (here:
	// an identity never enrolled), not refused for its age.
	issued := time.Now().Add(-20 * time.Minute).UTC()
	cyKey := store.Grant{AuthMode: store.AuthDelegation, Subject: "cy@globex.test"}.IdentityKey()
	if claim, _, err := v.st.ClaimControl(v.ctx, store.ControlRequest{Tenant: "globex", RequestID: "r-retried", IdentityKey: cyKey,
		Action: messages.ActionResync, IssuedAt: issued}, time.Millisecond, time.Hour); err != nil || claim != store.ClaimGo {
		t.Fatal(claim, err)
	}
	time.Sleep(5 * time.Millisecond) // its hold over: the worker that claimed it died
	_, err = send(globex, issued, "r-retried", `"action":"resync","subject":"cy@globex.test"`)
	refused("a late redelivery of a claimed request", err, messages.ReasonUnknownIdentity)

	// Another message of the identity being applied: this one waits.
	if _, _, err := v.st.ClaimControl(v.ctx, store.ControlRequest{Tenant: "globex", RequestID: "held", IdentityKey: bobKey,
		Action: messages.ActionResync, IssuedAt: time.Now().UTC()}, time.Minute, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := send(globex, time.Now(), "r-busy", `"action":"resync","subject":"bob@globex.test"`); !errors.Is(err, enroll.ErrControlBusy) {
		t.Fatalf("while another is applied: %v, want ErrControlBusy", err)
	}

	// The lifecycle topic said each of it once, attributed.
	if v.ann.Err != nil {
		t.Fatal(v.ann.Err)
	}
	enrolled := v.ann.Of(messages.LifecycleIdentityEnrolled)
	if len(enrolled) != 2 || enrolled[0].Tenant != "acme" || enrolled[0].ExternalID != "acme-ann" || enrolled[1].Tenant != "globex" || enrolled[1].ExternalID != "globex-bob" {
		t.Fatalf("identity.enrolled: %+v", enrolled)
	}
	added := map[string]string{}
	for _, m := range v.ann.Of(messages.LifecycleCalendarAdded) {
		added[m.CalendarKey] = m.Tenant + "/" + m.ExternalID
	}
	if added[annCal] != "acme/acme-ann" || added[sharedCal] != "globex/globex-bob" {
		t.Fatalf("calendar.added: %v", added)
	}
	if u := v.ann.Of(messages.LifecycleIdentityUnenrolled); len(u) != 1 || u[0].IdentityKey != annKey || u[0].Tenant != "acme" || u[0].ExternalID != "acme-ann" {
		t.Fatalf("identity.unenrolled: %+v", u)
	}
	if r := v.ann.Of(messages.LifecycleCalendarRemoved); len(r) != 1 || r[0].CalendarKey != annCal {
		t.Fatalf("calendar.removed: %+v", r)
	}
	rejected := map[string]string{}
	for _, m := range v.ann.Of(messages.LifecycleControlRejected) {
		rejected[m.Control.RequestID] = m.Tenant + "/" + m.Reason
	}
	for id, want := range map[string]string{"r-bob": "acme/outside_tenant", "r-ann": "globex/other_tenant", "r-oauth": "acme/outside_tenant",
		"r-old": "acme/stale_request", "r-late-enroll": "acme/superseded", "r-retried": "globex/unknown_identity"} {
		if rejected[id] != want {
			t.Errorf("control.rejected %s: %q, want %q", id, rejected[id], want)
		}
	}
	accepted := v.ann.Of(messages.LifecycleControlAccepted)
	if len(accepted) != 4 || !accepted[3].Control.Duplicate || accepted[3].Control.RequestID != "r-unenroll" || accepted[3].ExternalID != "acme-ann" {
		t.Fatalf("control.accepted: %+v", accepted)
	}
}
