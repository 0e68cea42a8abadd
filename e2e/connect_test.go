package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/sealed"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/browser"
	"github.com/calsync/calsync/shared/testing/syncertest"
)

// TestConnectEndToEnd is issue 24's proof on the multi-process stack, in
// real headless Chromium: an end user of globex opens a connect link made
// by `calsync connect-link` (as globex's backend would make one), sees
// "Globex CRM" on the Connect function's page, continues to the Calendar
// emulator's consent page, chooses their account, allows, and lands on the
// product page connected. From outside, through the topics: the enroll the
// Connect function published (request "connect:...") accepted, the
// identity enrolled as globex's user, its calendar's first changes
// ("initial", attributed to globex and the user's externalId) and
// calendar.initial_sync_complete. Then globex disconnects the user
// (`calsync control --action disconnect`): accepted, identity.unenrolled,
// the credential deleted from Firestore and the grant revoked at the
// emulator (the refresh token the user granted, opened with the stack's
// private key before, is refused after). Every message matches its schema.
func TestConnectEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	const user, externalID = "dora@gmail.test", "globex-dora"
	if err := sys.Calendar.CreateUser(user, ""); err != nil {
		t.Fatal(err)
	}
	addEvents(t, ctx, asUser(t, ctx, user), user, 2)
	calKey := store.CalendarKeyIn("globex", user)

	feed := tenantRecorder(t, ctx, sys.ChangesTopic, "globex")
	life := tenantRecorder(t, ctx, sys.LifecycleTopic, "globex")
	everyChange := record(t, ctx, sys.ChangesTopic, "", nil)
	everyLifecycle := record(t, ctx, sys.LifecycleTopic, "", nil)
	controlTopic, err := sys.ControlTopicOf("globex")
	if err != nil {
		t.Fatal(err)
	}
	control := record(t, ctx, controlTopic, "", nil)

	// The link, as globex's backend makes one.
	link := strings.TrimSpace(cli(t, ctx, "connect-link", "--tenant", "globex", "--external-id", externalID,
		"--return", sys.ProductURL+"?from=e2e", "--ttl", "10m"))
	if !strings.HasPrefix(link, sys.ConnectURL+"/?link=") {
		t.Fatalf("calsync connect-link printed %q, want a link to %s", link, sys.ConnectURL)
	}

	// The user's part, in the browser.
	b := browser.Start(t)
	if code := b.Open(link); code != http.StatusOK || !strings.Contains(b.Text("h1"), "Globex CRM") {
		t.Fatalf("link page: %d %q", code, b.Text("body"))
	}
	if code := b.Submit("button[type=submit]"); code != http.StatusOK || !strings.Contains(b.Text("#title"), "wants to access your Google Account") {
		t.Fatalf("consent page: %d at %s %q", code, b.URL(), b.Text("body"))
	}
	b.Click(`input[name=account][value="` + user + `"]`)
	if code := b.Submit("#allow"); code != http.StatusOK || b.Text("#status") != "connected" {
		t.Fatalf("after Allow: %d at %s (%q)", code, b.URL(), b.Text("body"))
	}
	landed, err := url.Parse(b.URL())
	if err != nil || !strings.HasPrefix(b.URL(), sys.ProductURL) || landed.Query().Get("from") != "e2e" {
		t.Fatalf("landed on %s, want the product page %s with its own query kept", b.URL(), sys.ProductURL)
	}
	identity, requestID := b.Text("#identity"), b.Text("#request")
	if identity == "" || !strings.HasPrefix(requestID, "connect:") {
		t.Fatalf("the product page got identity %q, request %q", identity, requestID)
	}
	connectedAt := time.Since(start)

	// calsync's part, from the topics.
	life.waitUntil(t, 60*time.Second, "the enroll accepted, the identity enrolled, the first sync complete", func(ms []*pubsub.Message) bool {
		var accepted, enrolled, initial bool
		for _, l := range lifecycles(t, ms) {
			switch {
			case l.Control != nil && l.Control.RequestID == requestID:
				accepted = l.Type == messages.LifecycleControlAccepted
			case l.Type == messages.LifecycleIdentityEnrolled && l.IdentityKey == identity:
				enrolled = l.Tenant == "globex" && l.ExternalID == externalID
			case l.Type == messages.LifecycleInitialSyncComplete && l.CalendarKey == calKey:
				initial = l.Events != nil && *l.Events == 2
			}
		}
		return accepted && enrolled && initial
	})
	feed.waitUntil(t, 30*time.Second, "the calendar's first changes", func(ms []*pubsub.Message) bool {
		ids := map[string]bool{}
		for _, c := range changes(t, ms) {
			if c.CalendarKey == calKey {
				ids[c.EventID] = true
			}
		}
		return len(ids) == 2
	})
	for i, c := range changes(t, feed.all()) {
		if c.CalendarKey != calKey {
			continue
		}
		m := feed.all()[i]
		if c.Origin != messages.OriginInitial || c.Tenant != "globex" || c.IdentityKey != identity || c.ExternalID != externalID ||
			m.Attributes[messages.AttrExternalID] != externalID || m.Attributes[messages.AttrIdentityKey] != identity {
			t.Errorf("change %s: origin %q, attribution %+v, attributes %v; want initial, globex, %s, %s", c.EventID, c.Origin, c.Attribution, m.Attributes, identity, externalID)
		}
	}

	// The grant stored: its refresh token, opened with the stack's private
	// key, refreshes at the emulator.
	st := store.New(firestoreClient(t))
	id, err := st.GetIdentity(ctx, identity)
	if err != nil || id.AuthMode != store.AuthOAuth || id.Email != user || id.CredentialID == "" {
		t.Fatalf("identity %s: %+v %v", identity, id, err)
	}
	cred, err := st.GetCredential(ctx, id.CredentialID)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := sealed.ParsePrivateKeys(sys.Env["CREDENTIAL_PRIVATE_KEYS"])
	if err != nil {
		t.Fatal(err)
	}
	refreshToken, err := keys.Open(cred.Sealed, credentials.AAD(id.CredentialID))
	if err != nil {
		t.Fatal(err)
	}
	if code, body := refresh(t, ctx, string(refreshToken)); code != http.StatusOK {
		t.Fatalf("refreshing the user's grant before the disconnect: %d %s", code, body)
	}

	// globex disconnects the user.
	disconnect, a := controlCLI(t, ctx, messages.LifecycleControlAccepted, "--tenant", "globex", "--action", "disconnect", "--credential", id.CredentialID)
	if a.Tenant != "globex" || a.IdentityKey != identity || a.ExternalID != externalID {
		t.Fatalf("the disconnect answered %+v", a)
	}
	life.waitUntil(t, 30*time.Second, "identity.unenrolled and calendar.removed", func(ms []*pubsub.Message) bool {
		var unenrolled, removed bool
		for _, l := range lifecycles(t, ms) {
			switch {
			case l.Type == messages.LifecycleIdentityUnenrolled && l.IdentityKey == identity:
				unenrolled = l.ExternalID == externalID
			case l.Type == messages.LifecycleCalendarRemoved && l.CalendarKey == calKey:
				removed = true
			}
		}
		return unenrolled && removed
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := st.GetCredential(ctx, id.CredentialID)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the credential after the disconnect: %v, want it deleted", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, body := refresh(t, ctx, string(refreshToken)); code != http.StatusBadRequest || !strings.Contains(body, "invalid_grant") {
		t.Fatalf("refreshing the user's grant after the disconnect: %d %s, want 400 invalid_grant (revoked)", code, body)
	}
	time.Sleep(time.Second) // stragglers of at-least-once delivery

	// Every message of the run matches its schema; the control topic got
	// the Connect function's enroll and the disconnect.
	var n [3]int
	for _, m := range everyChange.all() {
		n[0]++
		if err := syncertest.ValidateChange(m.Data); err != nil {
			t.Error(err)
		}
	}
	for _, m := range everyLifecycle.all() {
		n[1]++
		if err := syncertest.ValidateLifecycle(m.Data); err != nil {
			t.Error(err)
		}
	}
	sent := map[string]string{}
	for _, m := range control.all() {
		n[2]++
		if err := syncertest.ValidateControl(m.Data); err != nil {
			t.Error(err)
		}
		var c messages.Control
		if json.Unmarshal(m.Data, &c) == nil {
			sent[c.RequestID] = c.Action
		}
	}
	if want := fmt.Sprint(map[string]string{requestID: messages.ActionEnroll, disconnect: messages.ActionDisconnect}); fmt.Sprint(sent) != want {
		t.Errorf("globex's control topic carried %v, want %s", sent, want)
	}
	t.Logf("connected in the browser %s after start; %s in all; schemas checked: %d change, %d lifecycle, %d control messages",
		connectedAt.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), n[0], n[1], n[2])
}

// refresh asks the emulator's token endpoint for an access token with a
// refresh token, as the SyncWorker does (the stack's OAuth client): its
// status and body.
func refresh(t *testing.T, ctx context.Context, refreshToken string) (int, string) {
	t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken},
		"client_id": {sys.Env["OAUTH_CLIENT_ID"]}, "client_secret": {sys.Env["OAUTH_CLIENT_SECRET"]}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sys.Env["OAUTH_TOKEN_URL"], strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}
