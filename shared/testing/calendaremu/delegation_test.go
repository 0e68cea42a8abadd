package calendaremu

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iamcredentials/v1"
	"google.golang.org/api/option"
)

const testSA = "sync@p.iam.gserviceaccount.com"

// signAssertion asks the emulator's IAM signJwt for an assertion, as the
// delegation path does (the generated iamcredentials client).
func signAssertion(t *testing.T, base string, claims map[string]any) (string, error) {
	t.Helper()
	iam, err := iamcredentials.NewService(context.Background(), option.WithEndpoint(base+"/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	out, err := iam.Projects.ServiceAccounts.SignJwt("projects/-/serviceAccounts/"+testSA,
		&iamcredentials.SignJwtRequest{Payload: string(payload)}).Do()
	if err != nil {
		return "", err
	}
	return out.SignedJwt, nil
}

func delegationClaims(sub, scope string) map[string]any {
	now := time.Now()
	return map[string]any{"iss": testSA, "sub": sub, "scope": scope, "aud": GoogleTokenAudience,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

// exchange posts a JWT-bearer grant and returns the status and the JSON body.
func exchange(t *testing.T, base string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(base+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

func TestDelegationSignJwtAndJWTBearer(t *testing.T) {
	srv, base, _ := startTest(t, Options{})
	const boss = "boss@corp.test"
	if err := srv.CreateDomain("corp.test", boss); err != nil {
		t.Fatal(err)
	}
	scope := "https://www.googleapis.com/auth/calendar.events.readonly"
	jwt, err := signAssertion(t, base, delegationClaims(boss, scope))
	if err != nil {
		t.Fatal(err)
	}
	// The RFC 7523 grant and the legacy one google.golang.org/api/impersonate sends.
	for _, form := range []url.Values{
		{"grant_type": {jwtBearerGrant}, "assertion": {jwt}},
		{"grant_type": {"assertion"}, "assertion_type": {legacyAssertionType}, "assertion": {jwt}},
	} {
		code, out := exchange(t, base, form)
		if code != 200 || out["access_token"] == "" || out["token_type"] != "Bearer" {
			t.Fatalf("exchange %v: %d %v", form.Get("grant_type"), code, out)
		}
		svc, _ := NewService(context.Background(), base, option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: out["access_token"].(string)})))
		if _, err := svc.Events.List("primary").Do(); err != nil {
			t.Fatalf("list as the subject: %v", err)
		}
		c, err := svc.CalendarList.Get("primary").Do()
		wantErr(t, err, 403, "insufficientPermissions") // events.readonly does not cover calendarList
		_ = c
	}

	refused := func(what string, form url.Values, code int, errCode, desc string) {
		t.Helper()
		c, out := exchange(t, base, form)
		if c != code || out["error"] != errCode || (desc != "" && out["error_description"] != desc) {
			t.Errorf("%s: got %d %v, want %d %s %q", what, c, out, code, errCode, desc)
		}
	}
	grant := func(jwt string) url.Values { return url.Values{"grant_type": {jwtBearerGrant}, "assertion": {jwt}} }
	// A subject no emulated Workspace domain holds: no administrator there
	// authorised this client.
	outsider, _ := signAssertion(t, base, delegationClaims("someone@gmail.com", scope))
	refused("subject outside every domain", grant(outsider), 401, "unauthorized_client", descUnauthorized)
	srv.SuspendAccount(boss)
	refused("suspended subject", grant(jwt), 400, "invalid_grant", descInvalidSubject)
	srv.ResumeAccount(boss)
	srv.DeleteAccount("gone@corp.test")
	gone, _ := signAssertion(t, base, delegationClaims("gone@corp.test", scope))
	refused("deleted subject", grant(gone), 400, "invalid_grant", descInvalidSubject)
	srv.RevokeDelegation(testSA)
	refused("revoked delegation", grant(jwt), 401, "unauthorized_client", descUnauthorized)
	srv.AuthorizeDelegation(testSA, "https://www.googleapis.com/auth/calendar.readonly")
	refused("scope not authorised", grant(jwt), 401, "unauthorized_client", descUnauthorized)
	srv.AuthorizeDelegation(testSA, scope)
	if c, _ := exchange(t, base, grant(jwt)); c != 200 {
		t.Errorf("authorised again: %d", c)
	}
	// Forged or stale assertions.
	parts := strings.Split(jwt, ".")
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"x","sub":"boss@corp.test","scope":"s","aud":"`+GoogleTokenAudience+`"}`)) + "." + parts[2]
	refused("forged", grant(forged), 400, "invalid_grant", descBadSignature)
	old := delegationClaims(boss, scope)
	old["iat"], old["exp"] = time.Now().Add(-3*time.Hour).Unix(), time.Now().Add(-2*time.Hour).Unix()
	stale, _ := signAssertion(t, base, old)
	refused("expired", grant(stale), 400, "invalid_grant", descBadTime)
	wrongAud := delegationClaims(boss, scope)
	wrongAud["aud"] = "https://example.com/token"
	wa, _ := signAssertion(t, base, wrongAud)
	refused("audience", grant(wa), 400, "invalid_grant", "")
	noScope, _ := signAssertion(t, base, delegationClaims(boss, ""))
	refused("no scope", grant(noScope), 400, "invalid_scope", "")

	// signJwt denied: IAM's error body (google.rpc.Status), not Calendar's.
	srv.DenySignJwt(testSA, true)
	_, err = signAssertion(t, base, delegationClaims(boss, scope))
	if err == nil || !strings.Contains(err.Error(), "iam.serviceAccounts.signJwt") || !strings.Contains(err.Error(), "403") {
		t.Errorf("denied signJwt: %v", err)
	}
	// Control API: the same switches.
	for _, p := range []struct{ path, body string }{
		{"users/boss@corp.test/suspend", ""}, {"users/boss@corp.test/resume", ""}, {"users/x@corp.test/delete", ""},
		{"delegations/" + testSA + "/revoke", ""}, {"delegations/" + testSA, `{"scopes":["` + scope + `"]}`},
		{"serviceAccounts/" + testSA + "/signJwt", `{"deny":false}`},
	} {
		resp, err := http.Post(base+controlPath+p.path, "application/json", bytes.NewBufferString(p.body))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("control %s: %v %v", p.path, err, resp.Status)
		}
		resp.Body.Close()
	}
	if _, err := signAssertion(t, base, delegationClaims(boss, scope)); err != nil {
		t.Errorf("signJwt allowed again: %v", err)
	}
	if srv.Stats().Requests["iam.signJwt"] == 0 {
		t.Error("signJwt not counted")
	}
}

// Tokens carry scopes, and each method takes the ones its discovery document
// lists; the openid and email scopes give an ID token with the email.
func TestScopesAndIDToken(t *testing.T) {
	srv, base, _ := startTest(t, Options{})
	ctx := context.Background()
	tok, svc := consent(t, base, "erin@calsync.test", scopePrefix+"calendar.events.readonly", "openid", "email")
	idt, _ := tok.Extra("id_token").(string)
	parts := strings.Split(idt, ".")
	if len(parts) != 3 {
		t.Fatalf("id_token %q", idt)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	_ = json.Unmarshal(raw, &claims)
	if claims["email"] != "erin@calsync.test" || claims["aud"] != "cid" || claims["iss"] != "https://accounts.google.com" {
		t.Errorf("id token claims %v", claims)
	}
	if _, err := svc.Events.List("primary").Do(); err != nil {
		t.Fatal(err)
	}
	w, err := svc.Events.Watch("primary", &calendar.Channel{Id: "scoped-1", Type: "web_hook", Address: "https://127.0.0.1:1/hook"}).Do()
	if err != nil {
		t.Fatalf("watch with events.readonly: %v", err)
	}
	if err := svc.Channels.Stop(w).Do(); err != nil {
		t.Fatalf("stop with events.readonly: %v", err)
	}
	_, err = svc.Events.Insert("primary", timed("x", time.Now(), time.Hour)).Do()
	wantErr(t, err, 403, "insufficientPermissions")
	_, err = svc.Calendars.Get("primary").Do()
	wantErr(t, err, 403, "insufficientPermissions")
	var ge *googleapi.Error
	if !errors.As(err, &ge) || ge.Message != "Request had insufficient authentication scopes." {
		t.Errorf("insufficient scope message: %v", err)
	}
	// Seeded grants (IssueToken) keep every scope.
	it := srv.IssueToken("frank@calsync.test")
	full, _ := NewService(ctx, base, option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: it.AccessToken})))
	if _, err := full.Calendars.Get("primary").Do(); err != nil {
		t.Errorf("full scope: %v", err)
	}
}
