package calclient

import (
	"context"
	"errors"
	"testing"

	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/tenant"
	"github.com/calsync/calsync/shared/testing/calendaremu"
)

// A delegation token is signed only for a subject the calendar's tenant may
// read (TENANTS): a tenant's calendar of another domain's user is refused
// before IAM is asked, as a denial no retry cures; the default tenant's and
// the tenant's own are delegated.
func TestDelegationWithinTheTenant(t *testing.T) {
	ctx := context.Background()
	srv, base := calendaremu.Start(t, calendaremu.Options{})
	for _, d := range []string{"acme.test", "globex.test"} {
		if err := srv.CreateDomain(d, "boss@"+d); err != nil {
			t.Fatal(err)
		}
	}
	f := newDelegationFactory(base)
	var err error
	if f.opts.Tenants, err = tenant.Parse(`[{"name":"acme","controlSubscription":"acme-push","domains":["acme.test"]}]`, ""); err != nil {
		t.Fatal(err)
	}
	list := func(tenantName, subject string) error {
		svc, err := f.Service(ctx, store.Grant{AuthMode: store.AuthDelegation, Subject: subject, Tenant: tenantName})
		if err != nil {
			return err
		}
		_, err = svc.Events.List(subject).Do()
		return err
	}
	if err := list("acme", "boss@acme.test"); err != nil {
		t.Fatalf("acme's own user: %v", err)
	}
	if err := list("", "boss@globex.test"); err != nil {
		t.Fatalf("the default tenant: %v", err)
	}
	signed := srv.Stats().Requests["iam.signJwt"]
	for _, g := range [][2]string{{"acme", "boss@globex.test"}, {"unknown", "boss@acme.test"}} {
		err := list(g[0], g[1])
		if !errors.Is(err, ErrTenantForbidden) || DenialOf(err) != DeniedAdminPolicy || IsRetryable(err) {
			t.Errorf("tenant %s reading %s: %v (denial %q), want ErrTenantForbidden, a denial", g[0], g[1], err, DenialOf(err))
		}
	}
	if n := srv.Stats().Requests["iam.signJwt"]; n != signed {
		t.Errorf("signJwt asked %d more times for refused tenants", n-signed)
	}
}
