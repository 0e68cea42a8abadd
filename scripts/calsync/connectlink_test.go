package main

import (
	"encoding/base64"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/calsync/calsync/shared/connectlink"
)

// connect-link prints a link the Connect function verifies: the tenant's
// first key signs it.
func TestConnectLinkCommand(t *testing.T) {
	k1, k0 := []byte(strings.Repeat("1", 32)), []byte(strings.Repeat("0", 32))
	t.Setenv("CALSYNC_STATE_FILE", "")
	t.Setenv("CONNECT_URL", "https://connect.example.test/")
	t.Setenv("CONNECT_LINK_KEYS", `{"acme":"k1:`+base64.StdEncoding.EncodeToString(k1)+`,k0:`+base64.StdEncoding.EncodeToString(k0)+`"}`)
	code, out, errOut := run("connect-link", "--tenant", "acme", "--external-id", "u-9", "--return", "https://app.acme.test/back", "--ttl", "2h")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	u, err := url.Parse(strings.TrimSpace(out))
	if err != nil || !strings.HasPrefix(out, "https://connect.example.test/?link=") {
		t.Fatalf("printed %q", out)
	}
	l, err := connectlink.Verify(u.Query().Get("link"), func(string) map[string][]byte { return map[string][]byte{"k1": k1} }, time.Now())
	if err != nil || l.Tenant != "acme" || l.ExternalID != "u-9" || l.KeyID != "k1" || time.Until(l.Expires) > 2*time.Hour {
		t.Fatalf("link: %+v %v", l, err)
	}
	code, out, _ = run("connect-link", "--disconnect", "--tenant", "acme", "--external-id", "u-9", "--return", "https://app.acme.test/back")
	u, _ = url.Parse(strings.TrimSpace(out))
	if l, err := connectlink.Verify(u.Query().Get("link"), func(string) map[string][]byte { return map[string][]byte{"k1": k1} }, time.Now()); code != 0 || err != nil || l.Action != connectlink.ActionDisconnect {
		t.Fatalf("disconnect link: %d %+v %v", code, l, err)
	}
	if code, _, errOut := run("connect-link", "--tenant", "globex", "--external-id", "u", "--return", "https://a.test/"); code == 0 || !strings.Contains(errOut, "no key") {
		t.Fatalf("a tenant without a key: %d %s", code, errOut)
	}
}

// A devstack state file's connectUrl and connectLinkKeys are enough for
// connect-link (devstack prints this command to make more links).
func TestConnectLinkFromStateFile(t *testing.T) {
	k := []byte(strings.Repeat("s", 32))
	t.Setenv("CONNECT_URL", "")
	t.Setenv("CONNECT_LINK_KEYS", "")
	os.Unsetenv("CONNECT_URL")
	os.Unsetenv("CONNECT_LINK_KEYS")
	state := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(state, []byte(`{"connectUrl":"http://127.0.0.1:9/","connectLinkKeys":"{\"globex\":\"link1:`+base64.StdEncoding.EncodeToString(k)+`\"}"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run("connect-link", "--state-file", state, "--tenant", "globex", "--external-id", "demo-user", "--return", "http://127.0.0.1:10/product/")
	if code != 0 || !strings.HasPrefix(out, "http://127.0.0.1:9/?link=") {
		t.Fatalf("exit %d, printed %q: %s", code, out, errOut)
	}
	u, _ := url.Parse(strings.TrimSpace(out))
	if l, err := connectlink.Verify(u.Query().Get("link"), func(string) map[string][]byte { return map[string][]byte{"link1": k} }, time.Now()); err != nil || l.Tenant != "globex" {
		t.Fatalf("link: %+v %v", l, err)
	}
}
