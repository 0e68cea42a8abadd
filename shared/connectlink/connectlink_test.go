package connectlink_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/calsync/calsync/shared/connectlink"
)

var (
	k1   = connectlink.Key{ID: "k1", Secret: []byte(strings.Repeat("a", 32))}
	k2   = connectlink.Key{ID: "k2", Secret: []byte(strings.Repeat("b", 32))}
	now  = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	keys = func(tenant string) map[string][]byte {
		if tenant == "acme" {
			return map[string][]byte{k1.ID: k1.Secret, k2.ID: k2.Secret} // k2 added for a rotation
		}
		return nil
	}
)

func TestRoundTripAndRefusals(t *testing.T) {
	tok, err := connectlink.New(k1, "acme", "user-1", "https://app.acme.test/back?x=1", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	l, err := connectlink.Verify(tok, keys, now.Add(59*time.Minute))
	if err != nil || l.Tenant != "acme" || l.ExternalID != "user-1" || l.ReturnURL != "https://app.acme.test/back?x=1" || l.Nonce == "" || l.KeyID != "k1" {
		t.Fatalf("verify: %+v %v", l, err)
	}
	other, _ := connectlink.New(k1, "acme", "user-1", "https://app.acme.test/back?x=1", time.Hour, now)
	if other == tok {
		t.Fatal("two links for one user are the same: their nonces must differ")
	}
	if _, err := connectlink.Verify(tok, keys, now.Add(time.Hour)); !errors.Is(err, connectlink.ErrExpired) {
		t.Errorf("at its expiry: %v", err)
	}
	body, sig, _ := strings.Cut(strings.TrimPrefix(tok, "cl1."), ".")
	for name, bad := range map[string]string{
		"another signature":    "cl1." + body + "." + strings.Repeat("A", len(sig)),
		"another body":         "cl1." + strings.Replace(body, body[5:9], "AAAA", 1) + "." + sig,
		"signed by a stranger": mustNew(t, connectlink.Key{ID: "k1", Secret: []byte(strings.Repeat("z", 32))}, "acme"),
		"an unknown tenant":    mustNew(t, k1, "globex"),
	} {
		if _, err := connectlink.Verify(bad, keys, now); !errors.Is(err, connectlink.ErrSignature) && !errors.Is(err, connectlink.ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, bad := range []string{"", "cl1.", "cl1.x", "cl2." + body + "." + sig, "cl1.!!!." + sig, tok + strings.Repeat("A", 5000)} {
		if _, err := connectlink.Verify(bad, keys, now); err == nil {
			t.Errorf("%q verified", bad)
		}
	}
	dl, err := connectlink.NewFor(connectlink.ActionDisconnect, k1, "acme", "user-1", "https://app.acme.test/", time.Hour, now)
	if l, verr := connectlink.Verify(dl, keys, now); err != nil || verr != nil || l.Action != connectlink.ActionDisconnect {
		t.Errorf("disconnect link: %+v %v %v", l, err, verr)
	}
	if _, err := connectlink.NewFor("delete-everything", k1, "acme", "u", "https://app.acme.test/", time.Hour, now); err == nil {
		t.Error("a link of an unknown action made")
	}
	if _, err := connectlink.Verify(mustNew(t, k2, "acme"), keys, now); err != nil {
		t.Errorf("the tenant's second key: %v", err)
	}
}

func TestNewRefuses(t *testing.T) {
	for name, f := range map[string]func() error{
		"too long": func() error {
			_, err := connectlink.New(k1, "acme", "u", "https://a.test/", 8*24*time.Hour, now)
			return err
		},
		"short key": func() error {
			_, err := connectlink.New(connectlink.Key{ID: "k", Secret: []byte("short")}, "acme", "u", "https://a.test/", time.Hour, now)
			return err
		},
		"http return":   func() error { _, err := connectlink.New(k1, "acme", "u", "http://a.test/", time.Hour, now); return err },
		"no externalId": func() error { _, err := connectlink.New(k1, "acme", "", "https://a.test/", time.Hour, now); return err },
		"javascript: URL": func() error {
			_, err := connectlink.New(k1, "acme", "u", "javascript:alert(1)", time.Hour, now)
			return err
		},
	} {
		if f() == nil {
			t.Errorf("%s: made a link", name)
		}
	}
}

func mustNew(t *testing.T, k connectlink.Key, tenant string) string {
	t.Helper()
	tok, err := connectlink.New(k, tenant, "u", "https://app.acme.test/", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
