package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"github.com/sethvargo/go-envconfig"
	"golang.org/x/oauth2"

	"github.com/calsync/calsync/shared/app"
	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/renewer"
	"github.com/calsync/calsync/shared/sealed"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var (
	tokenKeys = "k1:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("t", 32)))
	// credKeys is a legacy AES-GCM key (credentials stored before sealing).
	credKeys = "c1:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("c", 32)))
	// privKeys and pubKey are the deployment's sealing key pair: the
	// functions hold privKeys, enrollers only pubKey.
	privKeys, pubKey = func() (string, string) {
		priv, pub, err := sealed.GenerateKey("h1")
		if err != nil {
			panic(err)
		}
		return priv, pub.String()
	}()
)

// functionsCreds is the credential store as the functions have it (the
// private keys): what a test uses to check what the CLI stored.
func functionsCreds(t *testing.T, fs *firestore.Client) *credentials.Vault {
	t.Helper()
	cs, err := credentials.NewVault(config.Calendar{CredentialPrivateKeys: privKeys, CredentialKeys: credKeys}, store.New(fs))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func run(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = realMain(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

func TestUsageErrors(t *testing.T) {
	t.Setenv("PROJECT_ID", "p")
	cases := []struct {
		args []string
		want string
	}{
		{nil, "usage: calsync"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"watch"}, "--calendar is required"},
		{[]string{"watch", "--calendar", "a@x", "--credential", "c", "--subject", "s@x"}, "not both"},
		{[]string{"watch", "--calendar", "a@x", "--subject", "not an email"}, "is not an email address"},
		{[]string{"watch", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"unwatch"}, "--calendar is required"},
		{[]string{"resync"}, "give --calendar ID or --all"},
		{[]string{"resync", "--all", "--calendar", "x"}, "give --calendar ID or --all"},
		{[]string{"list", "--status", "sleepy"}, `--status "sleepy" is not one of`},
		{[]string{"list", "extra"}, `unexpected argument "extra"`},
		{[]string{"connect", "--timeout", "-1s"}, "--timeout must be positive"},
		{[]string{"list", "--state-file", "/nonexistent/state.json"}, "--state-file"},
		{[]string{"watch", "--calendar", "   "}, "--calendar is required"},
		{[]string{"watch", "--calendar", "primary"}, `"primary" is an alias`},
		{[]string{"watch", "--calendar", "alice@x.test\nbob@x.test"}, `alice@x.test\nbob@x.test contains spaces, control or invisible characters`},
		{[]string{"watch", "--calendar", "al ice@x.test"}, "contains spaces"},
		{[]string{"watch", "--calendar", "alice\u202e@x.test"}, `alice\u202e@x.test contains`},
		{[]string{"watch", "--calendar", "alice"}, "is not a calendar id"},
		{[]string{"watch", "--calendar", strings.Repeat("a", 600) + "@x"}, "bytes long"},
		{[]string{"unwatch", "--calendar", "\t"}, "--calendar is required"},
		{[]string{"resync", "--calendar", "a\x1b[2J@x.test"}, `a\x1b[2J@x.test contains`},
		{[]string{"keys", "extra"}, `unexpected argument "extra"`},
	}
	for _, c := range cases {
		code, _, stderr := run(c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, stderr, c.want)
		}
	}
	if code, out, _ := run("watch", "-h"); code != 0 || !strings.Contains(out, "-calendar") {
		t.Errorf("watch -h: %d %q", code, out)
	}
	if code, out, _ := run("help"); code != 0 || !strings.Contains(out, "commands:") {
		t.Errorf("help: %d %q", code, out)
	}
}

func TestConfigErrorsNamed(t *testing.T) {
	t.Setenv("PROJECT_ID", "")
	t.Setenv("CHANNEL_TOKEN_KEYS", "")
	t.Setenv("CALSYNC_STATE_FILE", "")
	code, _, stderr := run("renew")
	if code != 1 || !strings.Contains(stderr, "missing required value") {
		t.Errorf("renew without config: %d %q", code, stderr)
	}
	bad := filepath.Join(t.TempDir(), "state.json")
	os.WriteFile(bad, []byte("[1,2]"), 0o600)
	if code, _, stderr := run("list", "--state-file", bad); code != 2 || !strings.Contains(stderr, "not a JSON object") {
		t.Errorf("bad state file: %d %q", code, stderr)
	}
}

// stack is the emulators and a state file as the devstack writes it.
type stack struct {
	emu       *calendaremu.Server
	base      string
	project   string
	stateFile string
	fs        *firestore.Client
	ps        *pubsub.Client
}

func newStack(t *testing.T) *stack {
	t.Helper()
	ctx := context.Background()
	fsHost := testenv.Firestore(t)
	psHost := testenv.PubSub(t)
	project := testenv.ProjectID(t)
	emu, base := calendaremu.Start(t, calendaremu.Options{AutoApprove: true}) // connect runs without a browser
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	t.Cleanup(hook.Close)
	ps, err := pubsubx.NewClient(ctx, project, psHost)
	if err != nil {
		t.Fatal(err)
	}
	pubsubx.EnsureTopic(ctx, ps, "notifications")
	if err := pubsubx.EnsureSubscription(ctx, ps, "notifications", "worker", false); err != nil {
		t.Fatal(err)
	}
	fs, err := firestore.NewClient(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close(); ps.Close() })
	// As the devstack writes it: named keys and the functions' "env".
	state, _ := json.Marshal(map[string]any{
		"webhookUrl": hook.URL, "calendarEndpoint": base + calendaremu.APIPath, "firestoreEmulatorHost": fsHost,
		"pubsubEmulatorHost": psHost, "projectId": project, "changesTopic": "changes", "notificationsTopic": "notifications",
		"pid": 1234, "env": map[string]string{"CHANNEL_TOKEN_KEYS": tokenKeys, "RENEW_BEFORE": "30m"},
	})
	file := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(file, state, 0o600); err != nil {
		t.Fatal(err)
	}
	// The operator's machine: the public key, no secret key at all. (The
	// functions' private keys are given where a test plays RenewChannels.)
	t.Setenv("CREDENTIAL_PUBLIC_KEY", pubKey)
	t.Setenv("CREDENTIAL_PRIVATE_KEYS", "")
	t.Setenv("CREDENTIAL_KEYS", "")
	t.Setenv("OAUTH_CLIENT_ID", "calsync-test")
	t.Setenv("OAUTH_CLIENT_SECRET", "secret")
	t.Setenv("CALSYNC_STATE_FILE", file)
	for _, v := range []string{"CHANNEL_TOKEN_KEYS", "PROJECT_ID", "WEBHOOK_URL", "CALENDAR_ENDPOINT", "OAUTH_AUTH_URL", "OAUTH_TOKEN_URL", "PUBSUB_EMULATOR_HOST", "NOTIFICATIONS_TOPIC"} {
		if _, ok := os.LookupEnv(v); ok {
			t.Setenv(v, "")
			os.Unsetenv(v)
		}
	}
	return &stack{emu: emu, base: base, project: project, stateFile: file, fs: fs, ps: ps}
}

func (s *stack) received(t *testing.T, want int) []messages.Notification {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got []messages.Notification
	s.ps.Subscriber("worker").Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		n, _ := messages.ParseNotification(m.Data)
		mu.Lock()
		got = append(got, n)
		if len(got) >= want {
			cancel()
		}
		mu.Unlock()
	})
	return got
}

// The connect flow against the emulator: /authorize answers at once with a
// code on the loopback address; the code is exchanged (PKCE) and the refresh
// token stored encrypted.
func connectAlice(t *testing.T, s *stack) string {
	t.Helper()
	ctx := context.Background()
	if err := s.emu.CreateUser("alice@x.test", ""); err != nil {
		t.Fatal(err)
	}
	pub, _ := sealed.ParsePublicKey(pubKey)
	cs := &credentials.Vault{Store: store.New(s.fs), Seal: pub} // an enroller: seals only
	var consent string
	var out bytes.Buffer
	if err := connectAndStore(ctx, connectOpts(s, "alice@x.test", &consent), cs, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"access_type=offline", "prompt=consent", "code_challenge_method=S256", "redirect_uri=http%3A%2F%2F127.0.0.1%3A", "login_hint=alice"} {
		if !strings.Contains(consent, want) {
			t.Errorf("consent URL lacks %s: %s", want, consent)
		}
	}
	var id string
	fmt.Sscanf(strings.Split(out.String(), "\n")[1], "credential %s", &id)
	if !strings.HasPrefix(out.String(), "connected alice@x.test") || id == "" {
		t.Fatalf("output %q", out.String())
	}
	if _, err := cs.RefreshToken(ctx, id); err == nil {
		t.Fatal("the enroller opened what it sealed: it must not hold the private key")
	}
	refresh, err := functionsCreds(t, s.fs).RefreshToken(ctx, id)
	if err != nil || !strings.HasPrefix(refresh, "1//") {
		t.Fatalf("stored token: %v", err)
	}
	if c, err := cs.Store.GetCredential(ctx, id); err != nil || !slices.Equal(c.Scopes, calclient.ConnectScopes) {
		t.Fatalf("stored scopes %q, want what Google granted, %q (%v)", c.Scopes, calclient.ConnectScopes, err)
	}
	return id
}

// connectOpts drive the connect flow against the emulator for user; the
// consent URL is kept in *consent when not nil.
func connectOpts(s *stack, user string, consent *string) connectOptions {
	return connectOptions{
		OAuth: &oauth2.Config{ClientID: "calsync-test", ClientSecret: "secret", Scopes: calclient.ConnectScopes,
			Endpoint: oauth2.Endpoint{AuthURL: s.base + "/authorize", TokenURL: s.base + "/token"}},
		LoginHint: user,
		Timeout:   10 * time.Second,
		Open: func(u string) error {
			if consent != nil {
				*consent = u
			}
			resp, err := http.Get(u) // follows the redirect to the loopback callback
			if err != nil {
				return err
			}
			resp.Body.Close()
			return nil
		},
	}
}

// Granular consent: a user who unticks one of calsync's scopes is refused
// by connect with an error naming it, and nothing is stored.
func TestConnectRefusesPartialConsent(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	if err := s.emu.CreateUser("bob@x.test", ""); err != nil {
		t.Fatal(err)
	}
	s.emu.UntickScopes(calclient.ListScope)
	pub, _ := sealed.ParsePublicKey(pubKey)
	st := store.New(s.fs)
	var out bytes.Buffer
	err := connectAndStore(ctx, connectOpts(s, "bob@x.test", nil), &credentials.Vault{Store: st, Seal: pub}, &out)
	if !errors.Is(err, calclient.ErrScopesMissing) || !strings.Contains(err.Error(), calclient.ListScope) || !strings.Contains(err.Error(), "tick every box") {
		t.Fatalf("connect with %s unticked: %v", calclient.ListScope, err)
	}
	if out.Len() != 0 {
		t.Errorf("refused connect printed %q", out.String())
	}
	if docs, err := s.fs.Collection(store.CollCredentials).Where("subject", "==", "bob@x.test").Documents(ctx).GetAll(); err != nil || len(docs) != 0 {
		t.Errorf("refused connect stored %d credentials (%v)", len(docs), err)
	}
}

// A request to the loopback callback with a wrong state (an attacker's
// link with its own code, a stale tab) is answered 400 and ignored: the
// flow neither aborts nor exchanges that code, and the user's real answer,
// arriving after it, completes the flow.
func TestConnectFlowIgnoresForeignState(t *testing.T) {
	ctx := context.Background()
	emu, base := calendaremu.Start(t, calendaremu.Options{AutoApprove: true}) // connect runs without a browser
	if err := emu.CreateUser("bob@x.test", ""); err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	var forgedStatus []int
	res, err := connectFlow(ctx, connectOptions{
		OAuth: &oauth2.Config{ClientID: "c", ClientSecret: "s", Scopes: calclient.ConnectScopes,
			Endpoint: oauth2.Endpoint{AuthURL: base + "/authorize", TokenURL: base + "/token"}},
		LoginHint: "bob@x.test",
		Timeout:   10 * time.Second,
		Progress:  &progress,
		Open: func(u string) error {
			i := strings.Index(u, "redirect_uri=")
			redirect := u[i+len("redirect_uri="):]
			redirect = redirect[:strings.Index(redirect, "&")]
			redirect = strings.NewReplacer("%3A", ":", "%2F", "/").Replace(redirect)
			// First an attacker's redirects with their own state and code
			// (and one with no state, and one saying the user refused).
			for _, q := range []string{"?code=evil&state=forged", "?code=evil", "?error=access_denied&state=forged"} {
				resp, err := http.Get(redirect + q)
				if err != nil {
					return err
				}
				resp.Body.Close()
				forgedStatus = append(forgedStatus, resp.StatusCode)
			}
			// Then the user's real consent.
			resp, err := http.Get(u)
			if err != nil {
				return err
			}
			resp.Body.Close()
			return nil
		},
	})
	if err != nil {
		t.Fatalf("the real answer after forged ones: %v", err)
	}
	if res.Email != "bob@x.test" || !strings.HasPrefix(res.RefreshToken, "1//") {
		t.Fatalf("result %+v", res)
	}
	if fmt.Sprint(forgedStatus) != "[400 400 400]" || strings.Count(progress.String(), "ignored a request") != 3 {
		t.Fatalf("forged answers: %v; progress %q", forgedStatus, progress.String())
	}
	_, err = connectFlow(ctx, connectOptions{
		OAuth:   &oauth2.Config{ClientID: "c", ClientSecret: "s", Endpoint: oauth2.Endpoint{AuthURL: base + "/authorize", TokenURL: base + "/token"}},
		Timeout: 500 * time.Millisecond,
		Open: func(u string) error { // only a forged answer comes: the flow keeps waiting, then times out
			i := strings.Index(u, "redirect_uri=")
			redirect := strings.NewReplacer("%3A", ":", "%2F", "/").Replace(u[i+len("redirect_uri="):][:strings.Index(u[i+len("redirect_uri="):], "&")])
			resp, err := http.Get(redirect + "?code=evil&state=forged")
			if err == nil {
				resp.Body.Close()
			}
			return nil
		},
	})
	if err == nil || !strings.Contains(err.Error(), "no authorization answer") {
		t.Fatalf("only a forged answer: %v", err)
	}
	_, err = connectFlow(ctx, connectOptions{
		OAuth:   &oauth2.Config{ClientID: "c", Endpoint: oauth2.Endpoint{AuthURL: base + "/authorize", TokenURL: base + "/token"}},
		Timeout: 200 * time.Millisecond,
		Open:    func(string) error { return nil },
	})
	if err == nil || !strings.Contains(err.Error(), "no authorization answer") {
		t.Fatalf("timeout: %v", err)
	}
}

func TestCommandsEndToEnd(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	cred := connectAlice(t, s)
	// This operator also holds the functions' keys (channel keys come from
	// the state file), so watch makes the channel itself, as alice.
	t.Setenv("CREDENTIAL_PRIVATE_KEYS", privKeys)

	code, out, errOut := run("watch", "--calendar", "alice@x.test", "--credential", cred)
	if code != 0 || !strings.Contains(out, "watching alice@x.test: channel ") || !strings.Contains(out, "asked for a full sync") {
		t.Fatalf("watch: %d %q %q", code, out, errOut)
	}
	live := 0
	for _, c := range s.emu.Channels() {
		if c.Calendar == "alice@x.test" && !c.Stopped && c.User == "alice@x.test" {
			live++
		}
	}
	if live != 1 {
		t.Fatalf("live channels at the emulator: %d (%+v)", live, s.emu.Channels())
	}
	key := store.CalendarKey("alice@x.test")
	if got := s.received(t, 1); len(got) != 1 || got[0].ResourceState != messages.StateFullResync || got[0].CalendarKey != key {
		t.Fatalf("watch published %+v", got)
	}
	// Watching again is idempotent: same channel; the id is trimmed (a
	// stray space would otherwise be another calendar key).
	if code, _, e := run("watch", "--calendar", " alice@x.test\n", "--credential", " "+cred+" ", "--no-sync"); code != 0 {
		t.Fatalf("second watch: %s", e)
	}
	if n := len(s.emu.Channels()); n != 1 {
		t.Errorf("second watch made a channel: %d", n)
	}
	// Unknown calendar: clear error; one 404 is not proof (a calendar
	// shared a moment ago), so it stays registered, its 404 counted, and is
	// unwatched here so the counts below stay alice's.
	if code, _, e := run("watch", "--calendar", "nobody@x.test", "--no-sync"); code != 1 || !strings.Contains(e, "not visible") {
		t.Errorf("unknown calendar: %d %q", code, e)
	}
	if c, _ := store.New(s.fs).GetCalendar(ctx, store.CalendarKey("nobody@x.test")); c.Status != store.StatusActive || c.NotFoundCount != 1 {
		t.Errorf("unknown calendar after one 404: %s, streak %d", c.Status, c.NotFoundCount)
	}
	if code, _, e := run("unwatch", "--calendar", "nobody@x.test"); code != 0 {
		t.Errorf("unwatch: %q", e)
	}
	if code, _, e := run("watch", "--calendar", "b@x.test", "--credential", "cred-nope"); code != 1 || !strings.Contains(e, "cred-nope") {
		t.Errorf("unknown credential: %d %q", code, e)
	}

	code, out, _ = run("list", "--json")
	var rows []listRow
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil {
		t.Fatalf("list: %d %q", code, out)
	}
	found := false
	for _, r := range rows {
		if r.CalendarID == "alice@x.test" {
			found = true
			if r.Status != store.StatusActive || r.ChannelExpiry.IsZero() || r.AuthMode != store.AuthOAuth {
				t.Errorf("row %+v", r)
			}
		}
	}
	if !found || len(rows) != 2 {
		t.Errorf("rows %+v", rows)
	}
	if code, out, _ := run("list"); code != 0 || !strings.Contains(out, "CHANNEL EXPIRES") || !strings.Contains(out, "alice@x.test") {
		t.Errorf("list table: %q", out)
	}
	// Whatever is in Firestore, list prints no terminal control sequence:
	// a calendar id with an OSC title sequence and a bidi override, a
	// status with a screen clear.
	evilID := "evil\x1b]0;pwned\x07\u202e@x.test\ttab"
	if _, err := s.fs.Collection(store.CollCalendars).Doc(store.CalendarKey(evilID)).Set(ctx, store.Calendar{
		CalendarID: evilID, AuthMode: store.AuthADC, Status: "active\x1b[2J"}); err != nil {
		t.Fatal(err)
	}
	code, out, _ = run("list")
	if code != 0 || strings.ContainsAny(out, "\x1b\x07\u202e") || !strings.Contains(out, `evil\x1b]0;pwned\a\u202e@x.test\ttab`) ||
		!strings.Contains(out, `active\x1b[2J`) {
		t.Errorf("list printed a control sequence or lost the evidence: %q", out)
	}
	if _, err := s.fs.Collection(store.CollCalendars).Doc(store.CalendarKey(evilID)).Delete(ctx); err != nil {
		t.Fatal(err)
	}

	// keys: the one live channel is signed with k1, the signing key.
	code, out, e := run("keys", "--json")
	var kr keysReport
	if code != 0 || json.Unmarshal([]byte(out), &kr) != nil || kr.Live != 1 || len(kr.Keys) != 1 || kr.Keys[0].KeyID != "k1" ||
		kr.Keys[0].Live != 1 || kr.Keys[0].Role != "signs" || kr.Keys[0].LastExpiry.IsZero() || kr.Credentials["h1"] != 1 || len(kr.Credentials) != 1 {
		t.Fatalf("keys --json: %d %q %q", code, out, e)
	}
	if code, out, _ := run("keys"); code != 0 || !strings.Contains(out, "KEY ID") || !strings.Contains(out, "Every one is signed with the signing key k1") {
		t.Errorf("keys table: %q", out)
	}

	if code, out, e := run("resync", "--calendar", "alice@x.test"); code != 0 || !strings.Contains(out, "reconcile of 1") {
		t.Fatalf("resync: %d %q %q", code, out, e)
	}
	if code, out, _ := run("resync", "--all", "--full"); code != 0 || !strings.Contains(out, "full_resync of 1") {
		t.Fatalf("resync --all: %d %q", code, out)
	}
	got := s.received(t, 2)
	states := map[string]bool{}
	for _, n := range got {
		states[n.ResourceState] = n.CalendarKey == key
	}
	if !states[messages.StateReconcile] || !states[messages.StateFullResync] {
		t.Errorf("resync published %+v", got)
	}
	if code, _, e := run("resync", "--calendar", "nobody@x.test"); code != 1 || !strings.Contains(e, "status unwatched") {
		t.Errorf("resync of an inactive calendar: %d %q", code, e)
	}

	code, out, e = run("renew", "--json")
	var sum map[string]int
	if code != 0 || json.Unmarshal([]byte(out), &sum) != nil || sum["failed"] != 0 {
		t.Fatalf("renew: %d %q %q", code, out, e)
	}

	if code, out, e := run("unwatch", "--calendar", "alice@x.test"); code != 0 || !strings.Contains(out, "1 channel(s) stopped") {
		t.Fatalf("unwatch: %d %q %q", code, out, e)
	}
	for _, c := range s.emu.Channels() {
		if !c.Stopped {
			t.Errorf("channel left live: %+v", c)
		}
	}
	if cal, _ := store.New(s.fs).GetCalendar(ctx, key); cal.Status != store.StatusUnwatched {
		t.Errorf("status %s", cal.Status)
	}
	if code, _, e := run("unwatch", "--calendar", "never@x.test"); code != 1 || !strings.Contains(e, "not registered") {
		t.Errorf("unwatch unknown: %d %q", code, e)
	}

	// Rotation of the sealing key: a new private key first, reseal, then
	// the old key can go.
	newPriv, newPub, _ := sealed.GenerateKey("h2")
	t.Setenv("CREDENTIAL_PRIVATE_KEYS", newPriv+","+privKeys)
	if code, out, e := run("reseal"); code != 0 || !strings.Contains(out, "resealed 1 credential(s) to key h2") {
		t.Fatalf("reseal: %d %q %q", code, out, e)
	}
	h2, _ := credentials.NewVault(config.Calendar{CredentialPrivateKeys: newPriv}, store.New(s.fs))
	if tok, err := h2.RefreshToken(ctx, cred); err != nil || tok == "" {
		t.Errorf("after reseal, the new key alone: %v", err)
	}
	if c, _ := store.New(s.fs).GetCredential(ctx, cred); c.SealedKeyID != "h2" || !strings.HasPrefix(c.Sealed, "sealed:v1:h2:") {
		t.Errorf("record after reseal: key %q", c.SealedKeyID)
	}
	_ = newPub
}

// Enrolling a user and watching their calendar take no secret: connect seals
// to the public key, watch and unwatch without CHANNEL_TOKEN_KEYS only
// register and leave channels to RenewChannels, whose next run (with the
// keys, as deployed) makes the channel as the user and later stops it.
func TestEnrollAndWatchWithoutSecrets(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	// The state file without the channel keys: nothing secret anywhere.
	state, _ := json.Marshal(map[string]any{
		"webhookUrl": "http://127.0.0.1:1/hook", "calendarEndpoint": s.base + calendaremu.APIPath, "firestoreEmulatorHost": os.Getenv("FIRESTORE_EMULATOR_HOST"),
		"pubsubEmulatorHost": testenv.PubSub(t), "projectId": s.project, "notificationsTopic": "notifications",
		"credentialPublicKey": pubKey,
	})
	os.WriteFile(s.stateFile, state, 0o600)
	t.Setenv("CREDENTIAL_PUBLIC_KEY", "") // restored after the test
	os.Unsetenv("CREDENTIAL_PUBLIC_KEY")  // from the state file only
	if err := s.emu.CreateUser("carol@x.test", ""); err != nil {
		t.Fatal(err)
	}
	browser = func(u string) error { // the user consents in their browser
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	t.Cleanup(func() { browser = openBrowser })
	code, out, e := run("connect", "--login-hint", "carol@x.test", "--timeout", "20s")
	var cred string
	if lines := strings.Split(out, "\n"); len(lines) > 1 {
		fmt.Sscanf(lines[1], "credential %s", &cred)
	}
	if code != 0 || cred == "" {
		t.Fatalf("connect with the public key only: %d %q %q", code, out, e)
	}
	if tok, err := functionsCreds(t, s.fs).RefreshToken(ctx, cred); err != nil || !strings.HasPrefix(tok, "1//") {
		t.Fatalf("the functions cannot open what connect stored: %v", err)
	}

	code, out, e = run("watch", "--calendar", "carol@x.test", "--credential", cred)
	if code != 0 || !strings.Contains(out, "RenewChannels creates its push channel") || !strings.Contains(out, "asked for a full sync") {
		t.Fatalf("watch without keys: %d %q %q", code, out, e)
	}
	if n := len(s.emu.Channels()); n != 0 {
		t.Fatalf("watch without keys made %d channel(s)", n)
	}
	if got := s.received(t, 1); len(got) != 1 || got[0].ResourceState != messages.StateFullResync {
		t.Fatalf("watch published %+v", got)
	}
	// RenewChannels, as deployed: the channel keys and the private keys.
	r := deployedRenewer(t, s)
	if sum, err := r.Run(ctx); err != nil || sum.Created != 1 || sum.Failed != 0 {
		t.Fatalf("RenewChannels run: %+v %v", sum, err)
	}
	chans := s.emu.Channels()
	if len(chans) != 1 || chans[0].User != "carol@x.test" || chans[0].Stopped {
		t.Fatalf("channels after the run: %+v", chans)
	}

	code, out, e = run("unwatch", "--calendar", "carol@x.test")
	if code != 0 || !strings.Contains(out, "RenewChannels stops its channels") {
		t.Fatalf("unwatch without keys: %d %q %q", code, out, e)
	}
	if sum, err := r.Run(ctx); err != nil || sum.Stopped != 1 {
		t.Fatalf("RenewChannels run after unwatch: %+v %v", sum, err)
	}
	if chans := s.emu.Channels(); !chans[0].Stopped {
		t.Fatalf("channel left live: %+v", chans)
	}
	// Without the public key, connect says what it needs.
	os.WriteFile(s.stateFile, []byte(`{"projectId":"`+s.project+`"}`), 0o600)
	if code, _, e := run("connect", "--timeout", "1s"); code != 1 || !strings.Contains(e, "CREDENTIAL_PUBLIC_KEY") {
		t.Errorf("connect without a public key: %d %q", code, e)
	}
}

// deployedRenewer is RenewChannels with the deployment's secrets.
func deployedRenewer(t *testing.T, s *stack) *renewer.Renewer {
	t.Helper()
	cfg, err := config.Load[config.RenewChannels](context.Background(), envconfig.MapLookuper(map[string]string{
		"PROJECT_ID": s.project, "CHANNEL_TOKEN_KEYS": tokenKeys, "CREDENTIAL_PRIVATE_KEYS": privKeys, "CREDENTIAL_PUBLIC_KEY": pubKey,
		"WEBHOOK_URL": "http://127.0.0.1:1/hook", "CALENDAR_ENDPOINT": s.base + calendaremu.APIPath, "NOTIFICATIONS_TOPIC": "notifications",
		"OAUTH_CLIENT_ID": "calsync-test", "OAUTH_CLIENT_SECRET": "secret", "OAUTH_TOKEN_URL": s.base + "/token", "OAUTH_AUTH_URL": s.base + "/authorize",
	}))
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.Build(context.Background(), cfg, app.WithFirestore(s.fs), app.WithPubSub(s.ps),
		app.WithLogger(logging.New(io.Discard, slog.LevelInfo)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a.Renewer
}

// Credentials stored before sealing (AES-256-GCM) are migrated with the
// AES keys and the public key only; afterwards the private keys alone open
// them and nothing of the legacy form is left in the record.
func TestMigrateLegacyCredentials(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	st := store.New(s.fs)
	ciph, _ := credentials.ParseCipher(credKeys)
	var ids []string
	for i := range 3 {
		id := credentials.NewID()
		keyID, ct, err := ciph.Seal(id, []byte(fmt.Sprintf("1//legacy-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.CreateCredential(ctx, id, store.Credential{Subject: "u@x.test", KeyID: keyID, Ciphertext: ct, Status: store.CredentialActive}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if code, _, e := run("migrate-credentials"); code != 1 || !strings.Contains(e, "needs CREDENTIAL_KEYS") {
		t.Fatalf("migrate without the AES keys: %d %q", code, e)
	}
	if code, out, _ := run("keys"); code != 0 || !strings.Contains(out, "CREDENTIALS BY KEY: aes:c1 3 ") {
		t.Errorf("keys before the migration: %d %q", code, out)
	}
	t.Setenv("CREDENTIAL_KEYS", credKeys) // and CREDENTIAL_PUBLIC_KEY; no private key
	code, out, e := run("migrate-credentials")
	if code != 0 || !strings.Contains(out, "sealed 3 legacy credential(s) to key h1; none is left") {
		t.Fatalf("migrate-credentials: %d %q %q", code, out, e)
	}
	sealedOnly, _ := credentials.NewVault(config.Calendar{CredentialPrivateKeys: privKeys}, st)
	for i, id := range ids {
		tok, err := sealedOnly.RefreshToken(ctx, id)
		if err != nil || tok != fmt.Sprintf("1//legacy-%d", i) {
			t.Errorf("%s after migration, private keys only: %q %v", id, tok, err)
		}
		snap, _ := st.CredentialRef(id).Get(ctx)
		data := snap.Data()
		if _, ok := data["keyId"]; ok || data["ciphertext"] != nil || data["sealedKeyId"] != "h1" {
			t.Errorf("%s record after migration: %v", id, data)
		}
	}
	if code, out, _ := run("migrate-credentials"); code != 0 || !strings.Contains(out, "sealed 0") {
		t.Errorf("second migration: %d %q", code, out)
	}
	if code, out, _ := run("keys"); code != 0 || !strings.Contains(out, "CREDENTIALS BY KEY: h1 3 ") {
		t.Errorf("keys after the migration: %d %q", code, out)
	}
}

func TestProgress(t *testing.T) {
	var errb bytes.Buffer
	c := &cli{stderr: &errb}
	p := newProgress(c, "renew", 3)
	p.step()
	p.step()
	p.step()
	p.done()
	if errb.Len() != 0 {
		t.Errorf("short run printed %q", errb.String())
	}
	p = newProgress(c, "renew", 3)
	p.last = time.Now().Add(-time.Second) // a long run
	p.step()
	p.step()
	p.done()
	if got := errb.String(); !strings.Contains(got, "renew: 1/3 calendars") || !strings.HasSuffix(got, "\rrenew: 2/3 calendars\n") {
		t.Errorf("long run printed %q", got)
	}
}
