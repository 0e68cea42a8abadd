package tenant_test

import (
	"strings"
	"testing"

	"github.com/calsync/calsync/shared/tenant"
)

func TestParse(t *testing.T) {
	s, err := tenant.Parse(`[{"name":"acme","controlSubscription":"acme-push","domains":["ACME.test"],"subjects":["Guest@Other.test"],"oauth":false}]`, "control-push")
	if err != nil {
		t.Fatal(err)
	}
	acme, ok := s.BySubscription("acme-push")
	if !ok || acme.Name != "acme" || acme.OAuth {
		t.Fatalf("acme: %+v %v", acme, ok)
	}
	if d, ok := s.BySubscription("control-push"); !ok || d.Name != tenant.Default || !d.OAuth {
		t.Fatalf("default: %+v %v", d, ok)
	}
	if _, ok := s.BySubscription("other-push"); ok {
		t.Fatal("an unknown subscription is a tenant's")
	}
	for subject, want := range map[string]bool{"ann@acme.test": true, "Ann@ACME.test": true, "guest@other.test": true,
		"ann@sub.acme.test": false, "ann@acme.test.evil": false, "acme.test": false, "bob@other.test": false} {
		if got := acme.MayDelegate(subject); got != want {
			t.Errorf("acme may read %s: %v, want %v", subject, got, want)
		}
	}
	if d, _ := s.Get(""); !d.MayDelegate("anyone@anywhere.test") {
		t.Error("the default tenant is restricted")
	}
	if _, ok := s.Get("globex"); ok {
		t.Error("an unconfigured tenant found")
	}
	// The zero Set (no TENANTS) is the default tenant alone.
	var zero tenant.Set
	if d, ok := zero.Get(tenant.Default); !ok || !d.MayDelegate("a@b.test") {
		t.Error("zero Set: no default tenant")
	}
	if _, ok := zero.Get("acme"); ok {
		t.Error("zero Set: acme found")
	}
}

func TestParseRefuses(t *testing.T) {
	for name, tc := range map[string]struct{ json, want string }{
		"not JSON":        {`{`, "not a JSON array"},
		"unknown field":   {`[{"name":"a","controlSubscription":"a-push","domain":["x"]}]`, "unknown field"},
		"bad name":        {`[{"name":"Acme","controlSubscription":"a-push"}]`, "name \"Acme\""},
		"default":         {`[{"name":"default","controlSubscription":"a-push"}]`, "name \"default\""},
		"twice":           {`[{"name":"a","controlSubscription":"a-push"},{"name":"a","controlSubscription":"b-push"}]`, "\"a\" twice"},
		"no subscription": {`[{"name":"a"}]`, "no controlSubscription"},
		"shared":          {`[{"name":"a","controlSubscription":"control-push"}]`, "share the control subscription"},
		"domain wildcard": {`[{"name":"a","controlSubscription":"a-push","domains":["*.x"]}]`, "not a domain name"},
		"subject no @":    {`[{"name":"a","controlSubscription":"a-push","subjects":["x"]}]`, "not an email address"},
	} {
		if _, err := tenant.Parse(tc.json, "control-push"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	if s, err := tenant.Parse("", ""); err != nil || len(s.Names()) != 1 {
		t.Errorf("no TENANTS: %v %v", s.Names(), err)
	}
}

// A connect link may send its user back only to the tenant's listed
// places: same scheme and host, under the listed path (no open redirect).
func TestReturnAllowed(t *testing.T) {
	s, err := tenant.Parse(`[{"name":"acme","controlSubscription":"a-push","returnUrls":["https://app.acme.test/calendar/"]}]`, "")
	if err != nil {
		t.Fatal(err)
	}
	acme, _ := s.Get("acme")
	for u, want := range map[string]bool{
		"https://app.acme.test/calendar/done?x=1": true,
		"https://app.acme.test/calendar/":         true,
		"https://app.acme.test/other":             false,
		"http://app.acme.test/calendar/":          false,
		"https://app.acme.test.evil/calendar/":    false,
		"https://user@app.acme.test/calendar/":    false,
		"https://app.acme.test/calendar/#frag":    false,
		"//app.acme.test/calendar/":               false,
		"javascript:alert(1)":                     false,
	} {
		if got := acme.ReturnAllowed(u); got != want {
			t.Errorf("%s: %v, want %v", u, got, want)
		}
	}
	if _, err := tenant.Parse(`[{"name":"a","controlSubscription":"a-push","returnUrls":["http://evil.test/"]}]`, ""); err == nil {
		t.Error("an http return URL accepted")
	}
}
