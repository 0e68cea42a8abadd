package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"golang.org/x/oauth2"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var (
	tokenKeys = "k1:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("t", 32)))
	credKeys  = "c1:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("c", 32)))
)

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
	emu, base := calendaremu.Start(t, calendaremu.Options{})
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
	t.Setenv("CREDENTIAL_KEYS", credKeys)
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
	ciph, _ := credentials.ParseCipher(credKeys)
	cs := &credentials.Store{Store: store.New(s.fs), Cipher: ciph}
	var consent string
	var out bytes.Buffer
	err := connectAndStore(ctx, connectOptions{
		OAuth: &oauth2.Config{ClientID: "calsync-test", ClientSecret: "secret", Scopes: []string{calclient.Scope},
			Endpoint: oauth2.Endpoint{AuthURL: s.base + "/authorize", TokenURL: s.base + "/token"}},
		LoginHint:        "alice@x.test",
		CalendarEndpoint: s.base,
		Timeout:          10 * time.Second,
		Open: func(u string) error {
			consent = u
			resp, err := http.Get(u) // follows the redirect to the loopback callback
			if err != nil {
				return err
			}
			resp.Body.Close()
			return nil
		},
	}, cs, &out)
	if err != nil {
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
	refresh, err := cs.RefreshToken(ctx, id)
	if err != nil || !strings.HasPrefix(refresh, "1//") {
		t.Fatalf("stored token: %v", err)
	}
	return id
}

// A request to the loopback callback with a wrong state (an attacker's
// link with its own code, a stale tab) is answered 400 and ignored: the
// flow neither aborts nor exchanges that code, and the user's real answer,
// arriving after it, completes the flow.
func TestConnectFlowIgnoresForeignState(t *testing.T) {
	ctx := context.Background()
	emu, base := calendaremu.Start(t, calendaremu.Options{})
	if err := emu.CreateUser("bob@x.test", ""); err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	var forgedStatus []int
	res, err := connectFlow(ctx, connectOptions{
		OAuth: &oauth2.Config{ClientID: "c", ClientSecret: "s", Scopes: []string{calclient.Scope},
			Endpoint: oauth2.Endpoint{AuthURL: base + "/authorize", TokenURL: base + "/token"}},
		LoginHint:        "bob@x.test",
		CalendarEndpoint: base,
		Timeout:          10 * time.Second,
		Progress:         &progress,
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
	// Unknown calendar: clear error, status not_found.
	if code, _, e := run("watch", "--calendar", "nobody@x.test", "--no-sync"); code != 1 || !strings.Contains(e, "not visible") {
		t.Errorf("unknown calendar: %d %q", code, e)
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
		kr.Keys[0].Live != 1 || kr.Keys[0].Role != "signs" || kr.Keys[0].LastExpiry.IsZero() {
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
	if code, _, e := run("resync", "--calendar", "nobody@x.test"); code != 1 || !strings.Contains(e, "status not_found") {
		t.Errorf("resync of not_found: %d %q", code, e)
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

	// Key rotation: a new key first, reseal, then the old key can go.
	newKey := "c2:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("n", 32)))
	t.Setenv("CREDENTIAL_KEYS", newKey+","+credKeys)
	if code, out, e := run("reseal"); code != 0 || !strings.Contains(out, "resealed 1 credential(s)") {
		t.Fatalf("reseal: %d %q %q", code, out, e)
	}
	ciph, _ := credentials.ParseCipher(newKey)
	if tok, err := (&credentials.Store{Store: store.New(s.fs), Cipher: ciph}).RefreshToken(ctx, cred); err != nil || tok == "" {
		t.Errorf("after reseal, the new key alone: %v", err)
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
