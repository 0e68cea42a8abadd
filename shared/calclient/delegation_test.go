package calclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"syscall"

	"golang.org/x/oauth2"
	admin "google.golang.org/api/admin/directory/v1"
	"google.golang.org/api/option"

	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/calsync/calsync/shared/testing/calendaremu"

	"github.com/calsync/calsync/shared/store"
)

// Delegation without DELEGATION_SERVICE_ACCOUNT: a JWT from the ADC service
// account key with sub = the calendar's subject, exchanged at the key's
// token_uri (a local server here).
func TestDelegationJWTFromServiceAccountKey(t *testing.T) {
	var gotSub, gotScope string
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		parts := strings.Split(r.Form.Get("assertion"), ".")
		if len(parts) == 3 {
			raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
			var claims map[string]any
			json.Unmarshal(raw, &claims)
			gotSub, _ = claims["sub"].(string)
			gotScope, _ = claims["scope"].(string)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"access_token":"ya29.delegated","token_type":"Bearer","expires_in":3600}`))
	}))
	defer tokenSrv.Close()
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	sa, _ := json.Marshal(map[string]string{
		"type": "service_account", "client_email": "renew@p.iam.gserviceaccount.com", "private_key_id": "kid",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "token_uri": tokenSrv.URL,
	})
	dir := t.TempDir()
	saFile := filepath.Join(dir, "sa.json")
	os.WriteFile(saFile, sa, 0o600)
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", saFile)

	f := New(Options{})
	ts, err := f.tokenSource(context.Background(), store.Grant{AuthMode: store.AuthDelegation, Subject: "boss@corp.test"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ts.token(false, "")
	if err != nil || tok.AccessToken != "ya29.delegated" {
		t.Fatalf("token %v %v", tok, err)
	}
	if gotSub != "boss@corp.test" || gotScope != strings.Join(Scopes, " ") {
		t.Errorf("assertion sub %q scope %q", gotSub, gotScope)
	}

	// ADC that is not a service-account key would silently ignore the
	// subject: refused with a clear error.
	user, _ := json.Marshal(map[string]string{"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r"})
	userFile := filepath.Join(dir, "user.json")
	os.WriteFile(userFile, user, 0o600)
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", userFile)
	if _, err := f.tokenSource(context.Background(), store.Grant{AuthMode: store.AuthDelegation, Subject: "boss@corp.test"}); err == nil || !strings.Contains(err.Error(), "DELEGATION_SERVICE_ACCOUNT") {
		t.Errorf("user ADC for delegation: %v", err)
	}
}

const testDelegationSA = "calsync-sync@p.iam.gserviceaccount.com"

// newDelegationFactory is a Factory doing domain-wide delegation the keyless
// way (signJwt + JWT-bearer grant) against the emulator.
func newDelegationFactory(base string) *Factory {
	f := newFactory(base, 6000, 100, nil)
	f.opts.DelegationServiceAccount = testDelegationSA
	return f
}

// The delegation path end to end against the emulator: the token acts as the
// subject (the default user could not see its calendar), and the two
// permanent refusals Google gives — a suspended or deleted subject
// (invalid_grant) and a revoked delegation (unauthorized_client) — are dead
// grants, never retried; only a real network failure is.
func TestDelegationThroughEmulator(t *testing.T) {
	ctx := context.Background()
	srv, base := calendaremu.Start(t, calendaremu.Options{})
	const boss = "boss@corp.test"
	// Google delegates only to users of a Workspace domain.
	if err := srv.CreateDomain("corp.test", boss); err != nil {
		t.Fatal(err)
	}
	cal := store.Calendar{CalendarID: boss, AuthMode: store.AuthDelegation, Subject: boss}
	list := func(f *Factory) error {
		svc, err := f.Service(ctx, cal.Grant())
		if err != nil {
			return err
		}
		_, err = svc.Events.List(boss).Do()
		return err
	}
	f := newDelegationFactory(base)
	if err := list(f); err != nil {
		t.Fatalf("delegated list: %v", err)
	}
	if n := srv.Stats().Requests["iam.signJwt"]; n != 1 {
		t.Errorf("signJwt calls %d, want 1", n)
	}
	// Without credentials (no token URL: nothing to delegate with) the
	// default user answers, and cannot see the subject's calendar.
	if err := list(New(Options{Endpoint: base, RatePerMinute: 6000, Burst: 100})); !IsNotFound(err) {
		t.Fatalf("undelegated: want 404, got %v", err)
	}

	permanent := func(what string, err error) {
		t.Helper()
		if !IsAuthRevoked(err) || IsRetryable(err) || IsNetworkError(err) {
			t.Errorf("%s: want a dead grant, not retryable: revoked=%v retryable=%v %v", what, IsAuthRevoked(err), IsRetryable(err), err)
		}
	}
	srv.SuspendAccount(boss)
	// The cached token now gets 401; the refresh is refused invalid_grant.
	permanent("suspended, warm client", list(f))
	permanent("suspended, cold client", list(newDelegationFactory(base)))
	srv.ResumeAccount(boss)
	if err := list(newDelegationFactory(base)); err != nil {
		t.Fatalf("resumed: %v", err)
	}
	srv.DeleteAccount("gone@corp.test")
	gone := newDelegationFactory(base)
	svc, _ := gone.Service(ctx, store.Grant{AuthMode: store.AuthDelegation, Subject: "gone@corp.test"})
	_, err := svc.Events.List("gone@corp.test").Do()
	permanent("deleted subject", err)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || re.Response.StatusCode != 400 {
		t.Errorf("deleted subject: want a 400 invalid_grant RetrieveError, got %v", err)
	}

	srv.RevokeDelegation(testDelegationSA)
	err = list(newDelegationFactory(base))
	permanent("delegation revoked", err)
	if !errors.As(err, &re) || re.ErrorCode != "unauthorized_client" || re.Response.StatusCode != 401 {
		t.Errorf("revoked delegation: want a 401 unauthorized_client RetrieveError, got %v", err)
	}
	// Authorised for another scope only: the same refusal.
	srv.AuthorizeDelegation(testDelegationSA, "https://www.googleapis.com/auth/gmail.readonly")
	permanent("scope not authorised", list(newDelegationFactory(base)))
	srv.AuthorizeDelegation(testDelegationSA, Scopes...)
	if err := list(newDelegationFactory(base)); err != nil {
		t.Fatalf("re-authorised: %v", err)
	}

	// No Token Creator role on the service account: IAM's 403 is a
	// deployment problem, neither a dead grant nor worth retrying.
	srv.DenySignJwt(testDelegationSA, true)
	err = list(newDelegationFactory(base))
	if err == nil || IsAuthRevoked(err) || IsRetryable(err) {
		t.Errorf("signJwt denied: revoked=%v retryable=%v %v", IsAuthRevoked(err), IsRetryable(err), err)
	}
	srv.DenySignJwt(testDelegationSA, false)

	// The token endpoint unreachable: a network failure, retried.
	dead := newDelegationFactory(base)
	dead.opts.OAuth.Endpoint.TokenURL = "http://127.0.0.1:1/token"
	if err := list(dead); !IsRetryable(err) || !IsNetworkError(err) || IsAuthRevoked(err) {
		t.Errorf("token endpoint down: want retryable, got %v", err)
	}
}

// What google.golang.org/api/impersonate returned for a refused exchange (a
// plain string error), inside the *url.Error net/http wraps transport errors
// in, was classified as a network failure and retried into the dead-letter
// topic. A *url.Error alone is no network failure.
func TestURLErrorAloneIsNotNetwork(t *testing.T) {
	refused := &url.Error{Op: "Get", URL: "https://www.googleapis.com/calendar/v3/calendars/x/events",
		Err: errors.New(`impersonate: status code 400: {"error":"invalid_grant","error_description":"Invalid email or User ID"}`)}
	if IsRetryable(refused) || IsNetworkError(refused) {
		t.Errorf("a refused token exchange is not a network failure: %v", refused)
	}
	for _, e := range []error{
		&url.Error{Op: "Get", URL: "u", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}},
		&url.Error{Op: "Get", URL: "u", Err: io.ErrUnexpectedEOF},
		&url.Error{Op: "Get", URL: "u", Err: syscall.ECONNRESET},
		fmt.Errorf("x: %w", &net.DNSError{Err: "no such host", Name: "h"}),
	} {
		if !IsRetryable(e) {
			t.Errorf("network failure not retryable: %v", e)
		}
	}
}

// Each API has its own delegation account, authorised in the Admin console
// for that API's scopes only: the Directory's scopes are signed by the
// directory account, the Calendar's by the calendar account. The emulator
// checks, as Google does, the signing client's authorised scopes, so a
// directory token signed by the calendar account is refused
// (unauthorized_client), and so is a token mixing both APIs' scopes.
func TestDelegationAccountPerAPI(t *testing.T) {
	ctx := context.Background()
	srv, base := calendaremu.Start(t, calendaremu.Options{})
	const boss = "boss@corp.test"
	const calendarSA, directorySA = "calsync-calendar@p.iam.gserviceaccount.com", "calsync-directory@p.iam.gserviceaccount.com"
	if err := srv.CreateDomain("corp.test", boss); err != nil {
		t.Fatal(err)
	}
	directoryScopes := []string{admin.AdminDirectoryUserReadonlyScope, admin.AdminDirectoryResourceCalendarReadonlyScope}
	srv.AuthorizeDelegation(calendarSA, Scopes...)
	srv.AuthorizeDelegation(directorySA, directoryScopes...)

	factory := func(directory string) *Factory {
		f := newFactory(base, 6000, 100, nil)
		f.opts.DelegationServiceAccount, f.opts.DirectoryDelegationServiceAccount = calendarSA, directory
		return f
	}
	users := func(f *Factory) error {
		ts, err := f.DelegatedTokenSource(ctx, boss, directoryScopes...)
		if err != nil {
			return err
		}
		svc, err := admin.NewService(ctx, option.WithTokenSource(ts), option.WithEndpoint(base+"/"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = svc.Users.List().Domain("corp.test").Do()
		return err
	}
	events := func(f *Factory) error {
		svc, err := f.Service(ctx, store.Grant{AuthMode: store.AuthDelegation, Subject: boss})
		if err != nil {
			return err
		}
		_, err = svc.Events.List(boss).Do()
		return err
	}
	before := srv.Stats().RequestsByUser
	both := factory(directorySA)
	if err := users(both); err != nil {
		t.Fatalf("directory through the directory account: %v", err)
	}
	if err := events(both); err != nil {
		t.Fatalf("calendar through the calendar account: %v", err)
	}
	after := srv.Stats().RequestsByUser
	for _, sa := range []string{calendarSA, directorySA} {
		if after[sa]-before[sa] != 1 {
			t.Errorf("signJwt as %s: %d calls, want 1", sa, after[sa]-before[sa])
		}
	}

	// One account for both (DIRECTORY_DELEGATION_SERVICE_ACCOUNT unset),
	// authorised for the Calendar's scopes only: Google refuses the
	// directory token, a permanent refusal.
	var re *oauth2.RetrieveError
	err := users(factory(""))
	if !errors.As(err, &re) || re.ErrorCode != "unauthorized_client" {
		t.Fatalf("directory scopes signed by the calendar account: want unauthorized_client, got %v", err)
	}
	// And the directory account cannot read calendars.
	swapped := factory("")
	swapped.opts.DelegationServiceAccount = directorySA
	if err := events(swapped); !errors.As(err, &re) || re.ErrorCode != "unauthorized_client" {
		t.Fatalf("calendar scopes signed by the directory account: want unauthorized_client, got %v", err)
	}
	// A token for both APIs' scopes would need one account authorised for
	// both: refused before any call.
	if _, err := both.DelegatedTokenSource(ctx, boss, append(append([]string{}, Scopes...), directoryScopes...)...); err == nil ||
		!strings.Contains(err.Error(), "each API has its own delegation account") {
		t.Fatalf("mixed scopes: %v", err)
	}
}
