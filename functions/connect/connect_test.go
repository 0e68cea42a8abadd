package connect_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/calsync/calsync/functions/connect"
	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/connectlink"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/syncertest"
	"github.com/calsync/calsync/shared/testing/testenv"
	"github.com/calsync/calsync/shared/testing/testlog"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	privKeys = "h1:" + "aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg=" // 32 × 'h'
	tenants  = `[{"name":"acme","controlSubscription":"acme-push","domains":["acme.test"],"oauth":true,
  "displayName":"Acme CRM","returnUrls":["https://app.acme.test/calendar/"]}]`
	returnURL = "https://app.acme.test/calendar/done?session=7"
)

var linkKey = connectlink.Key{ID: "l1", Secret: []byte(strings.Repeat("L", 32))}

type env struct {
	t    *testing.T
	ctx  context.Context
	emu  *calendaremu.Server
	base string
	st   *store.Store
	srv  *httptest.Server
	ann  *syncertest.Announcements
	logs *testlog.Buffer
	// controlDown makes the control topic refuse publishes (Pub/Sub down).
	controlDown *atomic.Bool
}

func newEnv(t *testing.T) *env { return newEnvWith(t, true, tenants) }

// newEnvWith: auto (the emulator approves as login_hint says, no page) and
// the tenants' JSON.
func newEnvWith(t *testing.T, auto bool, tenantsJSON string) *env {
	t.Helper()
	testenv.Firestore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	// The user's choices at Google's consent are made by login_hint here
	// (the emulator's auto-approval); the browser test clicks its page.
	emu, base := calendaremu.Start(t, calendaremu.Options{AutoApprove: auto})
	st := store.New(testenv.FirestoreClient(t))
	logs := &testlog.Buffer{}
	logger := logging.New(logs, slog.LevelDebug)
	cal := config.Calendar{CalendarEndpoint: base, CredentialPrivateKeys: privKeys, Tenants: tenantsJSON,
		OAuthClientID: "cid", OAuthClientSecret: "secret", OAuthTokenURL: base + "/token", OAuthAuthURL: base + "/authorize", OAuthRevokeURL: base + "/revoke", CalendarRateLimit: 600}
	access, err := credentials.NewAccess(cal, st, logger)
	if err != nil {
		t.Fatal(err)
	}
	ann := &syncertest.Announcements{}
	access.Lifecycle.Announcer = ann
	set, err := cal.TenantSet("")
	if err != nil {
		t.Fatal(err)
	}
	down := &atomic.Bool{}
	enroller := &enroll.Enroller{Store: st, Calendars: access.Calendars, Requests: nopPublisher{}, Lifecycle: access.Lifecycle, Logger: logger,
		Revoker: access.Calendars}
	h := &connect.Handler{Store: st, Seal: access.Credentials.Seal, Tenants: set, Logger: logger,
		// What the SyncWorker does with the message on the tenant's control
		// topic (functions/syncworker), in process.
		Control: func(ctx context.Context, tn string, data []byte, attrs map[string]string) error {
			if down.Load() {
				return errors.New("pubsub: unavailable")
			}
			if err := syncertest.ValidateControl(data); err != nil {
				t.Error(err)
			}
			c, err := messages.ParseControl(data)
			if err != nil {
				t.Errorf("the Connect function's control message: %v", err)
				return nil
			}
			tt, _ := set.Get(tn)
			err = enroller.HandleControl(ctx, tt, c, access.Credentials)
			enroller.AnswerControl(ctx, tt, c, err)
			return nil
		},
		Links: func(tn string) map[string][]byte {
			if tn == "acme" {
				return map[string][]byte{linkKey.ID: linkKey.Secret}
			}
			return nil
		},
		OAuth: &oauth2.Config{ClientID: "cid", ClientSecret: "secret", Scopes: calclient.ConnectScopes,
			Endpoint: oauth2.Endpoint{AuthURL: base + "/authorize", TokenURL: base + "/token", AuthStyle: oauth2.AuthStyleInParams}},
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	h.OAuth.RedirectURL = srv.URL + "/callback"
	return &env{t: t, ctx: ctx, emu: emu, base: base, st: st, srv: srv, ann: ann, logs: logs, controlDown: down}
}

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, []byte, map[string]string, string) error { return nil }

var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// get fetches u without following redirects: the status, the body and
// where it sends the user.
func (e *env) do(req *http.Request) (int, string, string) {
	e.t.Helper()
	resp, err := noFollow.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header.Get("Location")
}

func (e *env) get(u string) (int, string, string) {
	req, _ := http.NewRequestWithContext(e.ctx, http.MethodGet, u, nil)
	return e.do(req)
}

func (e *env) post(u string, form url.Values) (int, string, string) {
	req, _ := http.NewRequestWithContext(e.ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return e.do(req)
}

func (e *env) link(externalID, ret string, ttl time.Duration) string {
	e.t.Helper()
	l, err := connectlink.New(linkKey, "acme", externalID, ret, ttl, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

// consent goes from a link's page to Google's consent as user (who picks
// their account: login_hint) and back to the callback; it returns the
// callback's answer.
func (e *env) consent(link, user string) (int, string, string) {
	e.t.Helper()
	code, body, _ := e.get(e.srv.URL + "/?link=" + url.QueryEscape(link))
	if code != http.StatusOK || !strings.Contains(body, "Continue with Google") || !strings.Contains(body, "Acme CRM") {
		e.t.Fatalf("link page: %d %s", code, body)
	}
	code, body, loc := e.post(e.srv.URL+"/start", url.Values{"link": {link}})
	if code != http.StatusSeeOther || !strings.HasPrefix(loc, e.base+"/authorize?") {
		e.t.Fatalf("start: %d %s %q", code, body, loc)
	}
	auth, _ := url.Parse(loc)
	q := auth.Query()
	if q.Get("access_type") != "offline" || q.Get("prompt") != "consent" || q.Get("code_challenge_method") != "S256" ||
		q.Get("redirect_uri") != e.srv.URL+"/callback" || q.Get("state") == "" || q.Get("include_granted_scopes") != "true" ||
		q.Get("scope") != strings.Join(calclient.ConnectScopes, " ") {
		e.t.Fatalf("authorization request: %v", q)
	}
	q.Set("login_hint", user)
	auth.RawQuery = q.Encode()
	code, _, loc = e.get(auth.String())
	if code != http.StatusFound || !strings.HasPrefix(loc, e.srv.URL+"/callback?") {
		e.t.Fatalf("consent: %d %q", code, loc)
	}
	return e.get(loc)
}

// An end user opens a connect link, consents, and lands on the product's
// return URL connected: the grant stored sealed, the identity enrolled for
// the tenant with the product's externalId, the answer on the lifecycle
// topic. Reused, expired, tampered and foreign links, a replayed callback,
// an unticked scope and a refusal at Google each get a clear page or
// answer and change nothing.
func TestConnectLink(t *testing.T) {
	e := newEnv(t)
	link := e.link("crm-user-1", returnURL, time.Hour)
	code, body, loc := e.consent(link, "carol@gmail.test")
	back, _ := url.Parse(loc)
	if code != http.StatusSeeOther || !strings.HasPrefix(loc, "https://app.acme.test/calendar/done?") ||
		back.Query().Get("calsync_status") != connect.StatusConnected || back.Query().Get("session") != "7" {
		t.Fatalf("callback: %d %s %q", code, body, loc)
	}
	key := back.Query().Get("calsync_identity")
	id, err := e.st.GetIdentity(e.ctx, key)
	if err != nil || id.Tenant != "acme" || id.ExternalID != "crm-user-1" || id.Status != store.StatusActive || id.Email != "carol@gmail.test" {
		t.Fatalf("identity %s: %+v %v", key, id, err)
	}
	cr, err := e.st.GetCredential(e.ctx, id.CredentialID)
	if err != nil || cr.Sealed == "" || !strings.HasPrefix(cr.Sealed, "sealed:v1:") || cr.Status != store.CredentialActive {
		t.Fatalf("credential: %+v %v", cr, err)
	}
	if e.ann.Err != nil {
		t.Fatal(e.ann.Err)
	}
	if a := e.ann.Of(messages.LifecycleControlAccepted); len(a) != 1 || !strings.HasPrefix(a[0].Control.RequestID, "connect:") || a[0].ExternalID != "crm-user-1" || a[0].Tenant != "acme" {
		t.Fatalf("control.accepted: %+v", a)
	}
	if en := e.ann.Of(messages.LifecycleIdentityEnrolled); len(en) != 1 || en[0].IdentityKey != key {
		t.Fatalf("identity.enrolled: %+v", en)
	}

	// The same user connects again (a reconnect): the same identity and
	// credential, no new ones.
	_, _, loc = e.consent(e.link("crm-user-1", returnURL, time.Hour), "carol@gmail.test")
	if again := mustParse(t, loc).Query(); again.Get("calsync_status") != connect.StatusConnected || again.Get("calsync_identity") != key {
		t.Fatalf("reconnect: %q, want identity %s again", loc, key)
	}
	if cr2, err := e.st.GetCredential(e.ctx, id.CredentialID); err != nil || cr2.Sealed == cr.Sealed {
		t.Fatalf("reconnect: the credential's grant was not replaced (%v)", err)
	}

	identities := func() int {
		ids, err := e.st.AllIdentities(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(ids)
	}
	// The link again: used.
	if code, body, _ := e.get(e.srv.URL + "/?link=" + url.QueryEscape(link)); code != http.StatusBadRequest || !strings.Contains(body, "used already") {
		t.Fatalf("reused link's page: %d %s", code, body)
	}
	if code, body, _ := e.post(e.srv.URL+"/start", url.Values{"link": {link}}); code != http.StatusBadRequest || !strings.Contains(body, "used already") {
		t.Fatalf("reused link: %d %s", code, body)
	}
	for name, tc := range map[string]struct{ link, want string }{
		"expired":         {e.expired(), "expired"},
		"tampered":        {strings.Replace(link, link[10:14], "AAAA", 1), "not valid"},
		"another's key":   {mustLink(t, connectlink.Key{ID: "l1", Secret: []byte(strings.Repeat("X", 32))}, "acme", returnURL), "not valid"},
		"not on the list": {e.link("u2", "https://evil.test/phish", time.Hour), "not valid for this service"},
		"another tenant":  {mustLink(t, linkKey, "globex", returnURL), "not valid"},
		"garbage":         {"hello", "not valid"},
	} {
		if code, body, _ := e.get(e.srv.URL + "/?link=" + url.QueryEscape(tc.link)); code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s", name, code, body)
		}
		if code, _, loc := e.post(e.srv.URL+"/start", url.Values{"link": {tc.link}}); code != http.StatusBadRequest || loc != "" {
			t.Errorf("%s started: %d %q", name, code, loc)
		}
	}
	// A callback nobody started, or one taken already: nothing happens.
	if code, body, _ := e.get(e.srv.URL + "/callback?state=forged&code=4/x"); code != http.StatusBadRequest || !strings.Contains(body, "not recognised") {
		t.Fatalf("forged callback: %d %s", code, body)
	}

	// The user unticks the Calendar scope: a clear page, nothing stored.
	e.emu.UntickScopes(calclient.Scopes...)
	code, body, _ = e.consent(e.link("crm-user-2", returnURL, time.Hour), "dan@gmail.test")
	if code != http.StatusBadRequest || !strings.Contains(body, "permission was not given") || !strings.Contains(body, "calsync_reason=scopes_missing") {
		t.Fatalf("unticked scope: %d %s", code, body)
	}
	e.emu.UntickScopes()
	if n := identities(); n != 1 {
		t.Fatalf("%d identities after refusals, want 1", n)
	}
	if creds, _ := e.st.CredentialKeyCounts(e.ctx); sum(creds) != 1 {
		t.Fatalf("credentials after refusals: %v", creds)
	}

	// The user cancels at Google: back to the product, "denied".
	l := e.link("crm-user-3", returnURL, time.Hour)
	_, _, loc = e.post(e.srv.URL+"/start", url.Values{"link": {l}})
	state := mustParse(t, loc).Query().Get("state")
	code, _, loc = e.get(e.srv.URL + "/callback?error=access_denied&state=" + url.QueryEscape(state))
	if back := mustParse(t, loc); code != http.StatusSeeOther || back.Query().Get("calsync_status") != connect.StatusDenied {
		t.Fatalf("denied: %d %q", code, loc)
	}
	if n := identities(); n != 1 {
		t.Fatalf("%d identities after a refusal at Google", n)
	}
	// A disconnect link: its page, then the identity disconnected (the
	// grant revoked, the credential deleted) and the user back at the
	// product. A disconnect link cannot start a consent, nor a connect
	// link disconnect.
	dl, err := connectlink.NewFor(connectlink.ActionDisconnect, linkKey, "acme", "crm-user-1", returnURL, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if code, body, _ := e.get(e.srv.URL + "/?link=" + url.QueryEscape(dl)); code != http.StatusOK || !strings.Contains(body, "Disconnect your Google Calendar from Acme CRM") {
		t.Fatalf("disconnect page: %d %s", code, body)
	}
	if code, _, loc := e.post(e.srv.URL+"/start", url.Values{"link": {dl}}); code != http.StatusBadRequest || loc != "" {
		t.Fatalf("a disconnect link started a consent: %d %q", code, loc)
	}
	if code, _, loc := e.post(e.srv.URL+"/disconnect", url.Values{"link": {e.link("crm-user-1", returnURL, time.Hour)}}); code != http.StatusBadRequest || loc != "" {
		t.Fatalf("a connect link disconnected: %d %q", code, loc)
	}
	// Pub/Sub down: "try again", and the link still works afterwards.
	e.controlDown.Store(true)
	if code, body, _ := e.post(e.srv.URL+"/disconnect", url.Values{"link": {dl}}); code != http.StatusServiceUnavailable || !strings.Contains(body, "try again") {
		t.Fatalf("disconnect with Pub/Sub down: %d %s", code, body)
	}
	e.controlDown.Store(false)
	code, _, loc = e.post(e.srv.URL+"/disconnect", url.Values{"link": {dl}})
	if back := mustParse(t, loc); code != http.StatusSeeOther || back.Query().Get("calsync_status") != connect.StatusDisconnected {
		t.Fatalf("disconnect: %d %q", code, loc)
	}
	if gone, err := e.st.GetIdentity(e.ctx, key); err != nil || gone.Status != store.StatusUnenrolled {
		t.Fatalf("identity after the disconnect link: %+v %v", gone, err)
	}
	if _, err := e.st.GetCredential(e.ctx, id.CredentialID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("credential after the disconnect link: %v", err)
	}
	if code, body, _ := e.post(e.srv.URL+"/disconnect", url.Values{"link": {dl}}); code != http.StatusBadRequest || !strings.Contains(body, "used already") {
		t.Fatalf("disconnect link reused: %d %s", code, body)
	}
	if strings.Contains(e.logs.String(), "1//") || strings.Contains(e.logs.String(), "ya29") {
		t.Fatal("a token was logged")
	}
}

func (e *env) expired() string { return e.expiredFor(returnURL) }

func (e *env) expiredFor(ret string) string {
	l, err := connectlink.New(linkKey, "acme", "u", ret, time.Minute, time.Now().Add(-time.Hour))
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

func mustLink(t *testing.T, k connectlink.Key, tn, ret string) string {
	t.Helper()
	l, err := connectlink.New(k, tn, "u", ret, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func mustParse(t *testing.T, u string) *url.URL {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
