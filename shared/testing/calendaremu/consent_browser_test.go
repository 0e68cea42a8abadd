package calendaremu

import (
	"context"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp/kb"
	"golang.org/x/oauth2"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/option"

	"github.com/calsync/calsync/shared/testing/browser"
)

// calsync's scopes when a user connects (calclient.ConnectScopes).
var connectScopes = []string{calendar.CalendarEventsReadonlyScope, calendar.CalendarCalendarlistReadonlyScope, "openid", "email"}

// callbackApp is the app's redirect_uri handler: it shows and records
// what the emulator redirected the browser with.
type callbackApp struct {
	*httptest.Server
	mu   sync.Mutex
	hits []string // request URIs
}

func newCallbackApp(t *testing.T) *callbackApp {
	a := &callbackApp{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/favicon.ico" { // Chromium asks on its own, at any time
			http.NotFound(w, r)
			return
		}
		a.mu.Lock()
		a.hits = append(a.hits, r.URL.RequestURI())
		a.mu.Unlock()
		fmt.Fprintf(w, `<!DOCTYPE html><html lang="en"><title>app</title><p id="result">%s</p>`, html.EscapeString(r.URL.RawQuery))
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *callbackApp) hitPaths() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.hits)
}

// shotDir keeps the screenshots: a temporary directory, or
// $SCREENSHOT_DIR to look at them after the run.
func shotDir(t *testing.T) string {
	if d := os.Getenv("SCREENSHOT_DIR"); d != "" {
		return d
	}
	return t.TempDir()
}

// The consent page in real headless Chromium, as an end user meets it:
// choose an account, Allow (the code gives a refresh token with every
// scope; a wrong PKCE verifier is refused), untick a scope (the token
// lacks it), Cancel (access_denied), and a redirect_uri the client did not
// register (an error page, no redirect).
func TestConsentPageInBrowser(t *testing.T) {
	srv, base, _ := startTest(t, Options{})
	app := newCallbackApp(t)
	ctx := context.Background()
	shots := shotDir(t)
	for _, u := range []string{"ann@calsync.test", "bob@calsync.test"} {
		if err := srv.CreateUser(u, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.RegisterClient(OAuthClient{ID: "calsync-web", Name: "Calsync Test App", Secret: "s3cret",
		RedirectURIs: []string{app.URL + "/callback"}}); err != nil {
		t.Fatal(err)
	}
	cfg := &oauth2.Config{ClientID: "calsync-web", ClientSecret: "s3cret", RedirectURL: app.URL + "/callback", Scopes: connectScopes,
		Endpoint: oauth2.Endpoint{AuthURL: base + "/o/oauth2/v2/auth", TokenURL: base + "/token", AuthStyle: oauth2.AuthStyleInParams}}
	b := browser.Start(t)
	verifier := oauth2.GenerateVerifier()
	authURL := func(state string, opts ...oauth2.AuthCodeOption) string {
		return cfg.AuthCodeURL(state, append([]oauth2.AuthCodeOption{oauth2.AccessTypeOffline, oauth2.S256ChallengeOption(verifier)}, opts...)...)
	}
	// landed reads the redirect the browser followed to the app.
	landed := func(state string) url.Values {
		t.Helper()
		u, err := url.Parse(b.URL())
		if err != nil || !strings.HasPrefix(u.String(), app.URL+"/callback?") || u.Query().Get("state") != state {
			t.Fatalf("browser at %q, want the app's callback with state %s", b.URL(), state)
		}
		return u.Query()
	}

	// 1. The page: the app's name, the accounts, every scope ticked.
	if code := b.Open(authURL("st1")); code != 200 {
		t.Fatalf("consent page: %d", code)
	}
	b.Screenshot(filepath.Join(shots, "consent.png"))
	if got := b.Text("#title"); got != "Calsync Test App wants to access your Google Account" {
		t.Errorf("title %q", got)
	}
	for _, acct := range []string{"ann@calsync.test", "bob@calsync.test", DefaultUser} {
		if b.Checked(`input[name=account][value="` + acct + `"]`) {
			t.Errorf("%s chosen before the user chose", acct)
		}
	}
	for _, sc := range []string{calendar.CalendarEventsReadonlyScope, calendar.CalendarCalendarlistReadonlyScope} {
		if !b.Checked(`input[name=scope][value="` + sc + `"]`) {
			t.Errorf("%s not ticked by default", sc)
		}
	}
	// Allow without an account: the page again, saying so.
	if code := b.Submit("#allow"); code != 400 || !strings.Contains(b.Text("#error"), "Choose an account") {
		t.Fatalf("allow without an account: %d", code)
	}
	b.Click(`input[name=account][value="bob@calsync.test"]`)
	if code := b.Submit("#allow"); code != 200 {
		t.Fatalf("allow: the app answered %d", code)
	}
	q := landed("st1")
	if q.Get("code") == "" || q.Get("error") != "" {
		t.Fatalf("allow: redirect %v", q)
	}
	// PKCE: a wrong verifier is refused (and uses up the code).
	_, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier()))
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || re.ErrorDescription != "Invalid code verifier." {
		t.Fatalf("wrong code_verifier: %v", err)
	}

	// 2. Again, with the right verifier: a refresh token with every scope.
	b.Open(authURL("st2"))
	b.Click(`input[name=account][value="bob@calsync.test"]`)
	b.Submit("#allow")
	tok, err := cfg.Exchange(ctx, landed("st2").Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if granted, _ := tok.Extra("scope").(string); tok.RefreshToken == "" || !sameScopes(granted, connectScopes) {
		t.Fatalf("allow: refresh %q, scope %q, want %q", tok.RefreshToken, granted, connectScopes)
	}
	svc, err := NewService(ctx, base, option.WithTokenSource(cfg.TokenSource(ctx, tok)))
	if err != nil {
		t.Fatal(err)
	}
	if l, err := svc.CalendarList.List().Do(); err != nil || len(l.Items) == 0 || l.Items[0].Id != "bob@calsync.test" {
		t.Fatalf("the token does not act as bob: %v", err)
	}

	// 3. Another account, typed, with one scope unticked, allowed with
	// the keyboard (Enter in the email field).
	b.Open(authURL("st3", oauth2.ApprovalForce))
	b.SetChecked(`input[name=scope][value="`+calendar.CalendarCalendarlistReadonlyScope+`"]`, false)
	b.Click("#account-other")
	b.Type("#other-email", "carol@calsync.test")
	b.Screenshot(filepath.Join(shots, "consent-unticked.png"))
	if code := b.TypeSubmit("#other-email", kb.Enter); code != 200 {
		t.Fatalf("Enter: the app answered %d", code)
	}
	tok, err = cfg.Exchange(ctx, landed("st3").Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{calendar.CalendarEventsReadonlyScope, "openid", "email"}
	if granted, _ := tok.Extra("scope").(string); !sameScopes(granted, want) || tok.RefreshToken == "" {
		t.Fatalf("unticked: scope %q (want %q), refresh %q", granted, want, tok.RefreshToken)
	}
	carolSvc, err := NewService(ctx, base, option.WithTokenSource(cfg.TokenSource(ctx, tok)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := carolSvc.Events.List("carol@calsync.test").Do(); err != nil {
		t.Fatalf("events with the granted scope: %v", err)
	}
	_, err = carolSvc.CalendarList.List().Do()
	wantErr(t, err, 403, "insufficientPermissions")
	srv.mu.Lock()
	carol := srv.users["carol@calsync.test"]
	srv.mu.Unlock()
	if carol == nil {
		t.Fatal("the typed account was not created")
	}

	// 4. Cancel: access_denied and the state, no code.
	b.Open(authURL("st4"))
	b.Submit("#cancel")
	if q := landed("st4"); q.Get("error") != "access_denied" || q.Has("code") {
		t.Fatalf("cancel: redirect %v", q)
	}

	// 5. A redirect_uri the client did not register: an error page, no redirect.
	before := len(app.hitPaths())
	evil := *cfg
	evil.RedirectURL = app.URL + "/elsewhere"
	if code := b.Open(evil.AuthCodeURL("st5", oauth2.AccessTypeOffline)); code != 400 {
		t.Fatalf("wrong redirect_uri: %d", code)
	}
	b.Screenshot(filepath.Join(shots, "redirect-mismatch.png"))
	if got := b.Text("#error-code"); got != "redirect_uri_mismatch" || !strings.HasPrefix(b.URL(), base) {
		t.Fatalf("wrong redirect_uri: %q at %s", got, b.URL())
	}
	if hits := app.hitPaths(); len(hits) != before {
		t.Fatalf("the app was called after a mismatch: %v", hits[before:])
	}
	t.Logf("screenshots in %s", shots)
}

func sameScopes(got string, want []string) bool {
	g := strings.Fields(got)
	slices.Sort(g)
	w := slices.Clone(want)
	slices.Sort(w)
	return slices.Equal(g, w)
}
