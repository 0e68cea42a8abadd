package calendaremu

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"google.golang.org/api/option"
)

var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// testConfig is an OAuth config of client id at the emulator.
func testConfig(base, id, redirect string, scopes ...string) *oauth2.Config {
	return &oauth2.Config{ClientID: id, ClientSecret: "secret", RedirectURL: redirect, Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: base + "/authorize", TokenURL: base + "/token", AuthStyle: oauth2.AuthStyleInParams}}
}

// authorizeAuto runs /authorize on the auto-approve path and returns the
// redirect's query.
func authorizeAuto(t *testing.T, cfg *oauth2.Config, user string, opts ...oauth2.AuthCodeOption) url.Values {
	t.Helper()
	opts = append(opts, oauth2.SetAuthURLParam("login_hint", user), oauth2.SetAuthURLParam(AutoApproveParam, "true"))
	resp, err := noFollow.Get(cfg.AuthCodeURL("st", opts...))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound || loc.Query().Get("code") == "" {
		t.Fatalf("authorize: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc.Query()
}

func revoke(t *testing.T, base, token string) (int, string) {
	t.Helper()
	resp, err := http.PostForm(base+"/revoke", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error string `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Error
}

// Google's revoke endpoint: an access token or a refresh token ends the
// grant (refresh invalid_grant, API calls 401); the user's other grants to
// the same client go with it, other clients' stay; an unknown or already
// revoked token is 400 invalid_token.
func TestRevokeEndpoint(t *testing.T) {
	_, base, _ := startTest(t, Options{})
	ctx := context.Background()
	cfg := testConfig(base, "app", "http://127.0.0.1:1/cb", "https://www.googleapis.com/auth/calendar")
	other := testConfig(base, "other-app", "http://127.0.0.1:1/cb", "https://www.googleapis.com/auth/calendar")
	grant := func(c *oauth2.Config) *oauth2.Token {
		q := authorizeAuto(t, c, "ann@calsync.test", oauth2.AccessTypeOffline, oauth2.ApprovalForce)
		tok, err := c.Exchange(ctx, q.Get("code"))
		if err != nil || tok.RefreshToken == "" {
			t.Fatalf("exchange: %v %+v", err, tok)
		}
		return tok
	}
	works := func(c *oauth2.Config, tok *oauth2.Token) error {
		svc, err := NewService(ctx, base, option.WithTokenSource(c.TokenSource(ctx, tok)))
		if err != nil {
			t.Fatal(err)
		}
		_, err = svc.Calendars.Get("primary").Do()
		return err
	}
	refreshes := func(c *oauth2.Config, tok *oauth2.Token) error {
		_, err := c.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		return err
	}

	// By access token: the grant ends, and so does the app's other grant.
	first, second, kept := grant(cfg), grant(cfg), grant(other)
	if code, e := revoke(t, base, first.AccessToken); code != 200 || e != "" {
		t.Fatalf("revoke access token: %d %q", code, e)
	}
	for _, tok := range []*oauth2.Token{first, second} {
		wantErr(t, works(cfg, tok), 401, "authError")
		var re *oauth2.RetrieveError
		if err := refreshes(cfg, tok); !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
			t.Fatalf("refresh after revoke: %v", err)
		}
	}
	if err := works(other, kept); err != nil {
		t.Fatalf("another client's grant: %v", err)
	}
	// Again: already revoked.
	if code, e := revoke(t, base, first.AccessToken); code != 400 || e != "invalid_token" {
		t.Fatalf("revoke twice: %d %q", code, e)
	}
	// By refresh token.
	if code, e := revoke(t, base, kept.RefreshToken); code != 200 || e != "" {
		t.Fatalf("revoke refresh token: %d %q", code, e)
	}
	wantErr(t, works(other, kept), 401, "authError")
	if err := refreshes(other, kept); err == nil {
		t.Fatal("refresh after revoking the refresh token")
	}
	// Unknown and missing tokens.
	if code, e := revoke(t, base, "ya29.never-issued"); code != 400 || e != "invalid_token" {
		t.Fatalf("unknown token: %d %q", code, e)
	}
	if code, e := revoke(t, base, ""); code != 400 || e != "invalid_request" {
		t.Fatalf("no token: %d %q", code, e)
	}
}

// A refresh token only with access_type=offline; a second authorization
// of the same client gives none unless prompt=consent (then a new one), as
// Google's web-server guide says. include_granted_scopes adds the
// client's earlier scopes.
func TestOfflineAccessAndIncrementalScopes(t *testing.T) {
	_, base, _ := startTest(t, Options{})
	ctx := context.Background()
	exchange := func(cfg *oauth2.Config, opts ...oauth2.AuthCodeOption) *oauth2.Token {
		t.Helper()
		tok, err := cfg.Exchange(ctx, authorizeAuto(t, cfg, "ann@calsync.test", opts...).Get("code"))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	events := "https://www.googleapis.com/auth/calendar.events.readonly"
	list := "https://www.googleapis.com/auth/calendar.calendarlist.readonly"
	cfg := testConfig(base, "app", "http://127.0.0.1:1/cb", events)
	if tok := exchange(cfg); tok.RefreshToken != "" || tok.AccessToken == "" {
		t.Fatalf("online access: refresh token given %v, access token given %v", tok.RefreshToken != "", tok.AccessToken != "")
	}
	first := exchange(cfg, oauth2.AccessTypeOffline)
	if first.RefreshToken == "" {
		t.Fatal("first offline authorization: no refresh token")
	}
	if tok := exchange(cfg, oauth2.AccessTypeOffline); tok.RefreshToken != "" {
		t.Fatal("second offline authorization without prompt=consent: a refresh token")
	}
	again := exchange(cfg, oauth2.AccessTypeOffline, oauth2.ApprovalForce)
	if again.RefreshToken == "" || again.RefreshToken == first.RefreshToken {
		t.Fatalf("prompt=consent: refresh %q (first %q)", again.RefreshToken, first.RefreshToken)
	}
	more := testConfig(base, "app", "http://127.0.0.1:1/cb", list)
	tok := exchange(more, oauth2.AccessTypeOffline, oauth2.ApprovalForce, oauth2.SetAuthURLParam("include_granted_scopes", "true"))
	if got, _ := tok.Extra("scope").(string); !sameScopes(got, []string{events, list}) {
		t.Fatalf("include_granted_scopes: scope %q", got)
	}
	if tok := exchange(more, oauth2.AccessTypeOffline, oauth2.ApprovalForce); tok.Extra("scope") != list {
		t.Fatalf("without include_granted_scopes: scope %v", tok.Extra("scope"))
	}
}

// Bad requests get Google's error page, never a redirect, on both paths.
func TestAuthorizeRefusesBadRequests(t *testing.T) {
	srv, base, _ := startTest(t, Options{AutoApprove: true})
	if err := srv.RegisterClient(OAuthClient{ID: "web", RedirectURIs: []string{"https://app.test/cb"}}); err != nil {
		t.Fatal(err)
	}
	good := url.Values{"client_id": {"web"}, "redirect_uri": {"https://app.test/cb"}, "response_type": {"code"},
		"scope": {"openid"}, "login_hint": {"ann@calsync.test"}}
	for _, c := range []struct {
		name, param, value, code string
	}{
		{"no client_id", "client_id", "", "invalid_request"},
		{"no redirect_uri", "redirect_uri", "", "invalid_request"},
		{"relative redirect_uri", "redirect_uri", "/cb", "invalid_request"},
		{"unregistered redirect_uri", "redirect_uri", "https://evil.test/cb", "redirect_uri_mismatch"},
		{"no response_type", "response_type", "", "invalid_request"},
		{"implicit flow", "response_type", "token", "unsupported_response_type"},
		{"bad access_type", "access_type", "forever", "invalid_request"},
		{"bad PKCE method", "code_challenge_method", "S512", "invalid_request"},
	} {
		q := url.Values{}
		for k, v := range good {
			q[k] = v
		}
		q.Set(c.param, c.value)
		if c.param == "code_challenge_method" {
			q.Set("code_challenge", "abc")
		}
		resp, err := noFollow.Get(base + "/authorize?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || resp.Header.Get("Location") != "" || !strings.Contains(string(body), `<span id="error-code">`+c.code+`</span>`) {
			t.Errorf("%s: %d %q, want an error page %s", c.name, resp.StatusCode, resp.Header.Get("Location"), c.code)
		}
	}
	resp, err := noFollow.Get(base + "/authorize?" + good.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("the good request: %d", resp.StatusCode)
	}
}

// Auto-approval needs both login_hint and the switch; without either, the
// consent page. A page's answer works once.
func TestAutoApprovalNeedsHintAndSwitch(t *testing.T) {
	_, base, _ := startTest(t, Options{})
	cfg := testConfig(base, "app", "http://127.0.0.1:1/cb", "openid")
	for name, opts := range map[string][]oauth2.AuthCodeOption{
		"login_hint only": {oauth2.SetAuthURLParam("login_hint", "ann@calsync.test")},
		"switch only":     {oauth2.SetAuthURLParam(AutoApproveParam, "true")},
	} {
		resp, err := noFollow.Get(cfg.AuthCodeURL("st", opts...))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), `<button type="submit" name="action" value="allow"`) {
			t.Fatalf("%s: %d, want the consent page", name, resp.StatusCode)
		}
		if name != "login_hint only" {
			continue
		}
		// The hinted account is chosen; answering twice fails the second time.
		if !strings.Contains(string(body), `id="account-other" value="other" checked>`) || !strings.Contains(string(body), `id="other-email" value="ann@calsync.test"`) {
			t.Errorf("the hinted account (not known yet) is not preselected")
		}
		id := regexp.MustCompile(`name="request" value="([^"]+)"`).FindStringSubmatch(string(body))[1]
		answer := url.Values{"request": {id}, "account": {"other"}, "other_email": {"ann@calsync.test"}, "action": {"allow"}}
		for i, want := range []int{http.StatusSeeOther, http.StatusBadRequest} {
			resp, err := noFollow.PostForm(base+"/authorize", answer)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Fatalf("answer %d: %d, want %d", i+1, resp.StatusCode, want)
			}
		}
	}
}

// A client registered through the control API: its secret is checked at
// /token and its codes work only for it.
func TestRegisteredClientSecret(t *testing.T) {
	srv, base, _ := startTest(t, Options{})
	req, _ := http.NewRequest(http.MethodPut, base+"/emulator/v1/clients/web", strings.NewReader(`{"secret":"right","redirectUris":["http://127.0.0.1:1/cb"]}`))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("register through the control API: %v %v", err, resp)
	}
	cfg := testConfig(base, "web", "http://127.0.0.1:1/cb", "openid")
	cfg.ClientSecret = "wrong"
	_, err := cfg.Exchange(context.Background(), authorizeAuto(t, cfg, "ann@calsync.test").Get("code"))
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_client" || re.Response.StatusCode != 401 {
		t.Fatalf("wrong secret: %v", err)
	}
	cfg.ClientSecret = "right"
	code := authorizeAuto(t, cfg, "ann@calsync.test").Get("code")
	thief := testConfig(base, "someone-else", "http://127.0.0.1:1/cb", "openid")
	if _, err := thief.Exchange(context.Background(), code); !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("another client's code: %v", err)
	}
	if srv.RegisterClient(OAuthClient{ID: "bad", RedirectURIs: []string{"not a uri"}}) == nil || srv.RegisterClient(OAuthClient{ID: "none"}) == nil {
		t.Fatal("bad registrations accepted")
	}
}
