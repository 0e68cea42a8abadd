package calendaremu

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/option"
)

func TestOAuthFlow(t *testing.T) {
	srv, base, _ := startTest(t, Options{})
	ctx := context.Background()
	cfg := &oauth2.Config{ClientID: "cid", ClientSecret: "secret", RedirectURL: "http://127.0.0.1:1/callback",
		Scopes:   []string{"https://www.googleapis.com/auth/calendar"},
		Endpoint: oauth2.Endpoint{AuthURL: base + "/authorize", TokenURL: base + "/token", AuthStyle: oauth2.AuthStyleInParams}}
	verifier := oauth2.GenerateVerifier()
	authURL := cfg.AuthCodeURL("st4te", oauth2.AccessTypeOffline, oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("login_hint", "alice@calsync.test"), oauth2.SetAuthURLParam(AutoApproveParam, "true"))
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound || loc.Query().Get("state") != "st4te" || loc.Path != "/callback" {
		t.Fatalf("authorize: %d %v", resp.StatusCode, resp.Header.Get("Location"))
	}
	code := loc.Query().Get("code")
	if _, err := cfg.Exchange(ctx, code, oauth2.VerifierOption("wrong")); err == nil {
		t.Fatal("wrong PKCE verifier accepted")
	}
	// The failed exchange consumed the code (single use): get a new one.
	resp, _ = noFollow.Get(authURL)
	resp.Body.Close()
	loc, _ = url.Parse(resp.Header.Get("Location"))
	tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.Expiry.Before(time.Now().Add(50*time.Minute)) {
		t.Fatalf("token: %+v", tok)
	}
	svc, err := NewService(ctx, base, option.WithTokenSource(cfg.TokenSource(ctx, tok)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := svc.Calendars.Get("primary").Do()
	if err != nil || c.Id != "alice@calsync.test" {
		t.Fatalf("as alice: %v %+v", err, c)
	}
	// Refresh works while the grant lives.
	expired := &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Hour)}
	fresh, err := cfg.TokenSource(ctx, expired).Token()
	if err != nil || fresh.AccessToken == "" || fresh.AccessToken == tok.AccessToken {
		t.Fatalf("refresh: %v %+v", err, fresh)
	}
	if err := srv.RevokeGrant("alice@calsync.test"); err != nil {
		t.Fatal(err)
	}
	_, err = cfg.TokenSource(ctx, expired).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || re.ErrorDescription != "Token has been expired or revoked." || re.Response.StatusCode != 400 {
		t.Fatalf("refresh after revoke: %T %v", err, err)
	}
	_, err = svc.Calendars.Get("primary").Do()
	wantErr(t, err, 401, "authError")
	// Unknown tokens: 401, or the default user when allowed.
	other, err := NewService(ctx, base, option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "not-ours"})))
	if err != nil {
		t.Fatal(err)
	}
	_, err = other.Calendars.Get("primary").Do()
	wantErr(t, err, 401, "authError")
	// Seeded users and IssueToken.
	if err := srv.CreateUser("bob@calsync.test", "1//bob-refresh"); err != nil {
		t.Fatal(err)
	}
	bt, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: "1//bob-refresh"}).Token()
	if err != nil || bt.AccessToken == "" {
		t.Fatalf("seeded refresh: %v", err)
	}
	it := srv.IssueToken("carol@calsync.test")
	carol, _ := NewService(ctx, base, option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: it.AccessToken})))
	if c, err := carol.Calendars.Get("primary").Do(); err != nil || c.Id != "carol@calsync.test" {
		t.Fatalf("carol: %v", err)
	}
	// Calendars of other users are invisible.
	_, err = carol.Events.List("alice@calsync.test").Do()
	wantErr(t, err, 404, "notFound")
	_, err = cfg.Exchange(ctx, "bogus")
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("bogus code: %v", err)
	}
}

func TestAllowUnknownTokens(t *testing.T) {
	_, base, _ := startTest(t, Options{AllowUnknownTokens: true})
	svc, err := NewService(context.Background(), base, option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "sa-token"})))
	if err != nil {
		t.Fatal(err)
	}
	c, err := svc.Calendars.Get("primary").Do()
	if err != nil || c.Id != DefaultUser {
		t.Fatalf("%v %+v", err, c)
	}
}
