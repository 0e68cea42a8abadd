package enroll_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/google/uuid"
	"golang.org/x/oauth2"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/tenant"
	"github.com/calsync/calsync/shared/testing/calendaremu"
)

// fresh is what every control message must carry: a request id (a new one
// each call) and its issue time (now), to splice after the opening brace.
func fresh() string {
	return `"requestId":"` + uuid.NewString() + `","issuedAt":"` + time.Now().UTC().Format(time.RFC3339Nano) + `",`
}

func (v *env) control(t *testing.T, data string) error {
	t.Helper()
	c, err := messages.ParseControl([]byte(data))
	if err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	return v.e.HandleControl(v.ctx, tenant.Tenant{Name: tenant.Default, OAuth: true}, c, v.creds)
}

// What a product backend does: enroll a Workspace user by subject and an
// OAuth user by a refresh token sealed to the deployment's public key;
// resync; unenroll. Messages that cannot be done are *InvalidError with
// their reason, and change nothing.
func TestControlMessages(t *testing.T) {
	v := newEnv(t)
	if err := v.emu.CreateDomain("corp.test", "admin@corp.test"); err != nil {
		t.Fatal(err)
	}
	_ = v.emu.AddDomainUser("ann@corp.test", false)
	_ = v.emu.AddDomainUser("gone@corp.test", false)
	_ = v.emu.DeleteDomainUser("gone@corp.test")

	if err := v.control(t, `{"version":1,`+fresh()+`"action":"enroll","subject":"ann@corp.test"}`); err != nil {
		t.Fatal(err)
	}
	annKey := store.Grant{AuthMode: store.AuthDelegation, Subject: "ann@corp.test"}.IdentityKey()
	if id, err := v.st.GetIdentity(v.ctx, annKey); err != nil || id.Status != store.StatusActive || id.Calendars != 1 {
		t.Fatalf("ann: %+v %v", id, err)
	}

	// An OAuth user: the product seals the refresh token with the public key.
	tok := v.emu.IssueToken("bob@gmail.test")
	credID := credentials.NewID()
	box, err := v.creds.Seal.Seal(credentials.AAD(credID), []byte(tok.RefreshToken))
	if err != nil {
		t.Fatal(err)
	}
	enrollBob := `{"version":1,` + fresh() + `"action":"enroll","credentialId":"` + credID + `","sealedRefreshToken":"` + box + `","email":"bob@gmail.test"}`
	if err := v.control(t, enrollBob); err != nil {
		t.Fatal(err)
	}
	// Delivered twice (at least once): the same request again is known by
	// its requestId and done once.
	var dup *enroll.DuplicateError
	if err := v.control(t, enrollBob); !errors.As(err, &dup) || dup.Outcome != enroll.OutcomeAccepted {
		t.Fatalf("redelivered enroll: %v, want a duplicate of an accepted request", err)
	}
	bobKey := store.Grant{AuthMode: store.AuthOAuth, CredentialID: credID}.IdentityKey()
	if c := v.calendars()["bob@gmail.test"]; c.Status != store.StatusActive || c.CredentialID != credID || c.EnrolledBy != bobKey {
		t.Fatalf("bob's calendar: %+v", c)
	}
	v.req.reset()
	if err := v.control(t, `{"version":1,`+fresh()+`"action":"resync","credentialId":"`+credID+`","full":true}`); err != nil {
		t.Fatal(err)
	}
	if st := v.req.states(); len(st[store.CalendarKey("bob@gmail.test")]) != 1 || st[store.CalendarKey("bob@gmail.test")][0] != messages.StateFullResync || len(st[bobKey]) != 1 {
		t.Fatalf("resync asked %v", st)
	}

	// Refused, with nothing changed.
	otherID := credentials.NewID()
	nothing := func(name string) {
		t.Helper()
		if len(v.calendars()) != 2 {
			t.Fatalf("%s changed the calendars: %v", name, v.calendars())
		}
		if _, err := v.st.GetCredential(v.ctx, otherID); err == nil {
			t.Fatalf("%s stored a credential", name)
		}
	}
	for _, tc := range []struct{ name, data, reason string }{
		{"a box sealed for another credential id", `{"version":1,` + fresh() + `"action":"enroll","credentialId":"` + otherID + `","sealedRefreshToken":"` + box + `"}`, messages.ReasonSealedNotOpening},
		{"another box under a taken id", `{"version":1,` + fresh() + `"action":"enroll","credentialId":"` + credID + `","sealedRefreshToken":"` + mustSeal(t, v, credID, "1//other") + `"}`, messages.ReasonCredentialTaken},
		{"a credential never stored", `{"version":1,` + fresh() + `"action":"enroll","credentialId":"` + otherID + `"}`, messages.ReasonNoCredential},
		{"a deleted user", `{"version":1,` + fresh() + `"action":"enroll","subject":"gone@corp.test"}`, messages.ReasonNotAuthorized},
		{"unenroll of someone never enrolled", `{"version":1,` + fresh() + `"action":"unenroll","subject":"nobody@corp.test"}`, messages.ReasonUnknownIdentity},
		{"resync of someone never enrolled", `{"version":1,` + fresh() + `"action":"resync","subject":"nobody@corp.test"}`, messages.ReasonUnknownIdentity},
	} {
		err := v.control(t, tc.data)
		if messages.InvalidReason(err) != tc.reason {
			t.Errorf("%s: %v, want reason %s", tc.name, err, tc.reason)
		}
		nothing(tc.name)
	}
	// A sealed token whose grant does not work: refused, and the credential
	// it would have stored is gone again.
	dead := credentials.NewID()
	deadBox := mustSeal(t, v, dead, "1//never-issued")
	if err := v.control(t, `{"version":1,`+fresh()+`"action":"enroll","credentialId":"`+dead+`","sealedRefreshToken":"`+deadBox+`"}`); messages.InvalidReason(err) != messages.ReasonNotAuthorized {
		t.Fatalf("dead grant: %v", err)
	}
	if _, err := v.st.GetCredential(v.ctx, dead); err == nil {
		t.Fatal("a refused enrollment left its credential")
	}

	if err := v.control(t, `{"version":1,`+fresh()+`"action":"unenroll","subject":"ann@corp.test","deleteMirror":true}`); err != nil {
		t.Fatal(err)
	}
	if c := v.calendars()["ann@corp.test"]; c.Status != store.StatusUnwatched {
		t.Fatalf("ann after unenroll: %+v", c)
	}
	if n := len(v.logLines("control")); n != 4 { // the duplicate is logged by the worker
		t.Fatalf("%d control lines, want 4", n)
	}
}

func mustSeal(t *testing.T, v *env, id, token string) string {
	t.Helper()
	box, err := v.creds.Seal.Seal(credentials.AAD(id), []byte(token))
	if err != nil {
		t.Fatal(err)
	}
	return box
}

// A product's sealed grant is checked for the scopes Google granted (a
// refresh at the token endpoint): one whose user unticked a scope on the
// consent screen is refused (scopes_missing) and nothing is stored; a full
// grant is stored with its scopes.
func TestControlChecksGrantedScopes(t *testing.T) {
	v := newEnv(t)
	const user = "dee@gmail.test"
	if err := v.emu.CreateUser(user, ""); err != nil {
		t.Fatal(err)
	}
	enrollWith := func(unticked ...string) (string, error) {
		v.emu.UntickScopes(unticked...)
		tok, _, err := calendaremu.Consent(v.ctx, v.base, user, calclient.ConnectScopes...)
		if err != nil {
			t.Fatal(err)
		}
		id := credentials.NewID()
		return id, v.control(t, `{"version":1,`+fresh()+`"action":"enroll","credentialId":"`+id+`","sealedRefreshToken":"`+mustSeal(t, v, id, tok.RefreshToken)+`","email":"`+user+`"}`)
	}
	id, err := enrollWith(calclient.ListScope)
	if messages.InvalidReason(err) != messages.ReasonScopesMissing || !strings.Contains(err.Error(), calclient.ListScope) {
		t.Fatalf("grant without %s: %v, want reason %s naming it", calclient.ListScope, err, messages.ReasonScopesMissing)
	}
	if _, err := v.st.GetCredential(v.ctx, id); !errors.Is(err, store.ErrNotFound) || len(v.calendars()) != 0 {
		t.Fatalf("a refused grant was stored: %v, calendars %v", err, v.calendars())
	}
	id, err = enrollWith()
	if err != nil {
		t.Fatal(err)
	}
	if c, err := v.st.GetCredential(v.ctx, id); err != nil || !slices.Equal(c.Scopes, calclient.ConnectScopes) {
		t.Fatalf("stored scopes %q, want %q (%v)", c.Scopes, calclient.ConnectScopes, err)
	}
}

// Disconnect: an OAuth user is unenrolled, their grant revoked at Google
// (its refresh token stops working there) and its credential deleted; a
// redelivery of the request is done once, and a second disconnect of the
// gone identity changes nothing.
func TestDisconnect(t *testing.T) {
	v := newEnv(t)
	tok := v.emu.IssueToken("erin@gmail.test")
	credID := credentials.NewID()
	if err := v.control(t, `{"version":1,`+fresh()+`"action":"enroll","credentialId":"`+credID+`","sealedRefreshToken":"`+
		mustSeal(t, v, credID, tok.RefreshToken)+`","email":"erin@gmail.test"}`); err != nil {
		t.Fatal(err)
	}
	key := store.Grant{AuthMode: store.AuthOAuth, CredentialID: credID}.IdentityKey()
	if err := v.control(t, `{"version":1,`+fresh()+`"action":"disconnect","credentialId":"`+credID+`"}`); err != nil {
		t.Fatal(err)
	}
	if id, err := v.st.GetIdentity(v.ctx, key); err != nil || id.Status != store.StatusUnenrolled {
		t.Fatalf("identity after disconnect: %+v %v", id, err)
	}
	if _, err := v.st.GetCredential(v.ctx, credID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("credential after disconnect: %v", err)
	}
	if c := v.calendars()["erin@gmail.test"]; c.Status != store.StatusUnwatched {
		t.Fatalf("calendar after disconnect: %+v", c)
	}
	// Google no longer honours the refresh token.
	cfg := oauth2.Config{ClientID: "cid", ClientSecret: "secret", Endpoint: oauth2.Endpoint{TokenURL: v.base + "/token", AuthStyle: oauth2.AuthStyleInParams}}
	if _, err := cfg.TokenSource(v.ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
		t.Fatal("the refresh token still works at Google after disconnect")
	}
	if u := v.ann.Of(messages.LifecycleIdentityUnenrolled); len(u) != 1 || u[0].IdentityKey != key {
		t.Fatalf("identity.unenrolled: %+v", u)
	}
	if err := v.control(t, `{"version":1,`+fresh()+`"action":"disconnect","credentialId":"`+credID+`"}`); err != nil {
		t.Fatalf("a second disconnect: %v", err)
	}
	// A tenant whose policy deletes mirrors on disconnect: the purge is
	// asked although the message did not ask for it.
	acme := tenant.Tenant{Name: "acme", OAuth: true, DeleteMirrorOnDisconnect: true}
	tok2 := v.emu.IssueToken("gus@gmail.test")
	cred2 := credentials.NewID()
	for _, body := range []string{
		`"action":"enroll","credentialId":"` + cred2 + `","sealedRefreshToken":"` + mustSeal(t, v, cred2, tok2.RefreshToken) + `","email":"gus@gmail.test"`,
		`"action":"disconnect","credentialId":"` + cred2 + `"`,
	} {
		c, err := messages.ParseControl([]byte(`{"version":1,` + fresh() + body + `}`))
		if err != nil {
			t.Fatal(err)
		}
		if err := v.e.HandleControl(v.ctx, acme, c, v.creds); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
	}
	if st := v.req.states()[store.CalendarKeyIn("acme", "gus@gmail.test")]; !slices.Contains(st, messages.StatePurge) {
		t.Fatalf("requests for gus's calendar %v: no purge under the tenant's policy", st)
	}
}

// Reconnect: a user whose grant was revoked connects again. The new grant,
// sealed under the same credential id for the same user, replaces the dead
// one: the identity and its calendar are active again, and the calendar,
// which kept its sync token, catches up incrementally (no full resync).
func TestReconnect(t *testing.T) {
	v := newEnv(t)
	const user = "fay@gmail.test"
	tok := v.emu.IssueToken(user)
	credID := credentials.NewID()
	enrollWith := func(refresh string) error {
		return v.control(t, `{"version":1,`+fresh()+`"action":"enroll","credentialId":"`+credID+`","sealedRefreshToken":"`+
			mustSeal(t, v, credID, refresh)+`","email":"`+user+`"}`)
	}
	if err := enrollWith(tok.RefreshToken); err != nil {
		t.Fatal(err)
	}
	key := store.Grant{AuthMode: store.AuthOAuth, CredentialID: credID}.IdentityKey()
	calKey := store.CalendarKey(user)
	// The calendar was synced once: it has a token.
	if _, err := v.st.CalendarRef(calKey).Update(v.ctx, []firestore.Update{{Path: "syncToken", Value: "tok-1"}}); err != nil {
		t.Fatal(err)
	}
	// The user revokes calsync's access at Google; the next listing meets it.
	if err := v.emu.RevokeGrant(user); err != nil {
		t.Fatal(err)
	}
	if _, err := v.e.Discover(v.ctx, key); err != nil {
		t.Fatal(err)
	}
	if id, _ := v.st.GetIdentity(v.ctx, key); id.Status != store.StatusAuthRevoked {
		t.Fatalf("identity after the revocation: %s", id.Status)
	}
	if p := v.ann.Of(messages.LifecycleIdentityAuthProblem); len(p) != 1 || p[0].UserAction != messages.UserReconnect {
		t.Fatalf("identity.auth_problem: %+v", p)
	}

	// The same box again is still dead; the user's new grant reconnects.
	v.req.reset()
	if err := v.control(t, `{"version":1,`+fresh()+`"action":"enroll","credentialId":"`+credID+`"}`); messages.InvalidReason(err) != messages.ReasonRevokedCredential {
		t.Fatalf("enroll of the dead credential: %v", err)
	}
	if err := enrollWith(v.emu.IssueToken(user).RefreshToken); err != nil {
		t.Fatalf("reconnect: %v", err)
	}
	if id, _ := v.st.GetIdentity(v.ctx, key); id.Status != store.StatusActive {
		t.Fatalf("identity after the reconnect: %s", id.Status)
	}
	if cr, _ := v.st.GetCredential(v.ctx, credID); cr.Status != store.CredentialActive || !cr.RevokedAt.IsZero() {
		t.Fatalf("credential after the reconnect: %+v", cr)
	}
	c := v.calendars()[user]
	if c.Status != store.StatusActive || c.SyncToken != "tok-1" {
		t.Fatalf("calendar after the reconnect: %+v", c)
	}
	if st := v.req.states()[calKey]; len(st) != 1 || st[0] != messages.StateReconcile {
		t.Fatalf("sync asked after the reconnect: %v, want one incremental (reconcile)", st)
	}
	// Another user's grant under that id is still refused.
	if err := v.control(t, `{"version":1,`+fresh()+`"action":"enroll","credentialId":"`+credID+`","sealedRefreshToken":"`+
		mustSeal(t, v, credID, v.emu.IssueToken("mallory@gmail.test").RefreshToken)+`","email":"mallory@gmail.test"}`); messages.InvalidReason(err) != messages.ReasonCredentialTaken {
		t.Fatalf("another user's grant under the id: %v", err)
	}
}
