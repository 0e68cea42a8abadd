package connect_test

import (
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calsync/calsync/functions/connect"
	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/connectlink"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/browser"
)

// product is the product's return page: it shows what calsync sent back.
type product struct {
	*httptest.Server
	mu   sync.Mutex
	last url.Values
}

func newProduct(t *testing.T) *product {
	p := &product{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/favicon.ico" {
			http.NotFound(w, r)
			return
		}
		p.mu.Lock()
		p.last = r.URL.Query()
		p.mu.Unlock()
		fmt.Fprintf(w, `<!doctype html><html lang="en"><title>Acme CRM</title><p id="status">%s</p>`, html.EscapeString(r.URL.Query().Get("calsync_status")))
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *product) got() url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// shots is where the screenshots go: $SCREENSHOT_DIR (the README's are
// taken with SCREENSHOT_DIR=functions/connect/screenshots), else a
// temporary directory.
func shots(t *testing.T) string {
	if d := os.Getenv("SCREENSHOT_DIR"); d != "" {
		return d
	}
	return t.TempDir()
}

// An end user connects in real headless Chromium: the link's page, "Continue
// with Google", the consent page (choose an account, Allow), and back on the
// product's page, connected. Then: a scope unticked (calsync's error page,
// nothing stored), Cancel (back to the product, denied), a reused and an
// expired link (their pages).
func TestConnectInBrowser(t *testing.T) {
	app := newProduct(t)
	e := newEnvWith(t, false, `[{"name":"acme","controlSubscription":"acme-push","oauth":true,"displayName":"Acme CRM","returnUrls":["`+app.URL+`/back"]}]`)
	for _, u := range []string{"carol@gmail.test", "dan@gmail.test"} {
		if err := e.emu.CreateUser(u, ""); err != nil {
			t.Fatal(err)
		}
	}
	dir := shots(t)
	b := browser.Start(t)
	start := func(externalID string) string {
		t.Helper()
		link := e.link(externalID, app.URL+"/back?from=calendar-settings", time.Hour)
		if code := b.Open(e.srv.URL + "/?link=" + url.QueryEscape(link)); code != http.StatusOK {
			t.Fatalf("link page: %d", code)
		}
		if !strings.Contains(b.Text("h1"), "Acme CRM") {
			t.Fatalf("link page title %q", b.Text("h1"))
		}
		return link
	}

	// Connected.
	link := start("crm-carol")
	b.Screenshot(filepath.Join(dir, "1-connect.png"))
	if code := b.Submit("button[type=submit]"); code != http.StatusOK || !strings.Contains(b.Text("#title"), "wants to access your Google Account") {
		t.Fatalf("consent page: %d %q", code, b.Text("#title"))
	}
	b.Screenshot(filepath.Join(dir, "2-consent.png"))
	b.Click(`input[name=account][value="carol@gmail.test"]`)
	if code := b.Submit("#allow"); code != http.StatusOK || b.Text("#status") != connect.StatusConnected {
		t.Fatalf("after Allow: %d at %s (%q)", code, b.URL(), b.Text("body"))
	}
	got := app.got()
	if got.Get("from") != "calendar-settings" || got.Get("calsync_identity") == "" {
		t.Fatalf("back at the product with %v", got)
	}
	id, err := e.st.GetIdentity(e.ctx, got.Get("calsync_identity"))
	if err != nil || id.ExternalID != "crm-carol" || id.Email != "carol@gmail.test" || id.Tenant != "acme" {
		t.Fatalf("identity: %+v %v", id, err)
	}

	// Carol disconnects through a disconnect link.
	dl, err := connectlink.NewFor(connectlink.ActionDisconnect, linkKey, "acme", "crm-carol", app.URL+"/back", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if code := b.Open(e.srv.URL + "/?link=" + url.QueryEscape(dl)); code != http.StatusOK || !strings.Contains(b.Text("h1"), "Disconnect") {
		t.Fatalf("disconnect page: %d %q", code, b.Text("h1"))
	}
	b.Screenshot(filepath.Join(dir, "6-disconnect.png"))
	if code := b.Submit("button[type=submit]"); code != http.StatusOK || b.Text("#status") != connect.StatusDisconnected {
		t.Fatalf("after Disconnect: %d %q", code, b.Text("body"))
	}
	if gone, _ := e.st.GetIdentity(e.ctx, got.Get("calsync_identity")); gone.Status != store.StatusUnenrolled {
		t.Fatalf("identity after the disconnect: %s", gone.Status)
	}

	// The same link again.
	b.Open(e.srv.URL + "/?link=" + url.QueryEscape(link))
	if !strings.Contains(b.Text("body"), "used already") {
		t.Fatalf("reused link: %q", b.Text("body"))
	}
	b.Screenshot(filepath.Join(dir, "5-link-used.png"))

	// A scope unticked at Google: calsync's page says so, nothing stored.
	start("crm-dan")
	b.Submit("button[type=submit]")
	b.Click(`input[name=account][value="dan@gmail.test"]`)
	b.SetChecked(`input[name=scope][value="`+calclient.Scopes[0]+`"]`, false)
	if code := b.Submit("#allow"); code != http.StatusBadRequest || !strings.Contains(b.Text("body"), "permission was not given") {
		t.Fatalf("unticked scope: %d %q", code, b.Text("body"))
	}
	b.Screenshot(filepath.Join(dir, "3-permission-needed.png"))
	// Its button goes back to the product, which learns why.
	if code := b.Submit("a.button"); code != http.StatusOK || b.Text("#status") != connect.StatusError || app.got().Get("calsync_reason") != messages.ReasonScopesMissing {
		t.Fatalf("back link: %d %q %v", code, b.Text("#status"), app.got())
	}

	// Cancel at Google: back to the product, denied.
	start("crm-erin")
	b.Submit("button[type=submit]")
	if code := b.Submit("#cancel"); code != http.StatusOK || b.Text("#status") != connect.StatusDenied {
		t.Fatalf("cancel: %d %q", code, b.Text("body"))
	}

	// An expired link.
	b.Open(e.srv.URL + "/?link=" + url.QueryEscape(e.expiredFor(app.URL+"/back")))
	if !strings.Contains(b.Text("body"), "expired") {
		t.Fatalf("expired link: %q", b.Text("body"))
	}
	b.Screenshot(filepath.Join(dir, "4-link-expired.png"))

	ids, err := e.st.AllIdentities(e.ctx)
	if err != nil || len(ids) != 1 {
		t.Fatalf("identities: %d %v, want carol's alone (unenrolled)", len(ids), err)
	}
	if e.ann.Err != nil {
		t.Fatal(e.ann.Err)
	}
	if r := e.ann.Of(messages.LifecycleControlAccepted); len(r) != 2 { // connect, disconnect
		t.Fatalf("control answers: %+v", r)
	}
}
