package calclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
)

type mapTokens map[string]string

func (m mapTokens) RefreshToken(_ context.Context, id string) (string, error) {
	if t, ok := m[id]; ok {
		return t, nil
	}
	return "", errors.New("no such credential")
}

func newFactory(base string, rpm, burst int, tokens RefreshTokens) *Factory {
	return New(Options{
		Endpoint:      base,
		RatePerMinute: rpm,
		Burst:         burst,
		Tokens:        tokens,
		OAuth: &oauth2.Config{ClientID: "cid", ClientSecret: "secret",
			Endpoint: oauth2.Endpoint{AuthURL: base + "/authorize", TokenURL: base + "/token", AuthStyle: oauth2.AuthStyleInParams}},
	})
}

func TestADCAgainstEmulator(t *testing.T) {
	ctx := context.Background()
	srv, base := calendaremu.Start(t, calendaremu.Options{})
	// Google delegates only to users of a Workspace domain.
	if srv.CreateDomain("calsync.test", calendaremu.DefaultUser) != nil || srv.CreateDomain("x", "bob@x") != nil {
		t.Fatal("workspace domains")
	}
	f := newFactory(base, 0, 0, nil)
	cal := store.Calendar{CalendarID: calendaremu.DefaultUser, AuthMode: store.AuthADC}
	svc, err := f.Service(ctx, cal)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Events.List(calendaremu.DefaultUser).Do(); err != nil {
		t.Fatal(err)
	}
	svc2, _ := f.Service(ctx, store.Calendar{CalendarID: "other", AuthMode: store.AuthADC})
	if svc2 != svc {
		t.Error("two adc calendars should share one client")
	}
	// delegation against the emulator acts as the subject (a JWT bearer
	// grant at the emulator's token endpoint): its own calendar, not another's
	sd, err := f.Service(ctx, store.Calendar{CalendarID: calendaremu.DefaultUser, AuthMode: store.AuthDelegation, Subject: calendaremu.DefaultUser})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sd.Events.List(calendaremu.DefaultUser).Do(); err != nil {
		t.Fatal(err)
	}
	sb, err := f.Service(ctx, store.Calendar{CalendarID: "bob@x", AuthMode: store.AuthDelegation, Subject: "Bob@x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Events.List(calendaremu.DefaultUser).Do(); !IsNotFound(err) {
		t.Fatalf("bob reading the default user's calendar: %v, want 404", err)
	}
	if _, err := f.Service(ctx, store.Calendar{AuthMode: store.AuthDelegation}); err == nil {
		t.Error("delegation without subject: want error")
	}
	if _, err := f.Service(ctx, store.Calendar{AuthMode: "magic"}); err == nil {
		t.Error("unknown auth mode: want error")
	}
}

func TestOAuthRefreshAndRevoke(t *testing.T) {
	ctx := context.Background()
	srv, base := calendaremu.Start(t, calendaremu.Options{})
	if err := srv.CreateUser("alice@x.test", "1//alice"); err != nil {
		t.Fatal(err)
	}
	f := newFactory(base, 0, 0, mapTokens{"cred-a": "1//alice"})
	cal := store.Calendar{CalendarID: "alice@x.test", AuthMode: store.AuthOAuth, CredentialID: "cred-a"}
	svc, err := f.Service(ctx, cal)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Events.Insert("alice@x.test", &calendar.Event{Summary: "x",
		Start: &calendar.EventDateTime{Date: "2030-01-01"}, End: &calendar.EventDateTime{Date: "2030-01-02"}}).Do(); err != nil {
		t.Fatal(err)
	}
	// The default user cannot see alice's calendar: the token was used.
	if _, err := svc.Events.List("alice@x.test").Do(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Service(ctx, store.Calendar{AuthMode: store.AuthOAuth, CredentialID: "missing"}); err == nil {
		t.Error("unknown credential: want error")
	}

	// Revoked: the cached access token gets 401, the transport refreshes, the
	// token endpoint answers invalid_grant.
	if err := srv.RevokeGrant("alice@x.test"); err != nil {
		t.Fatal(err)
	}
	_, err = svc.Events.List("alice@x.test").Do()
	if !IsAuthRevoked(err) {
		t.Fatalf("want auth revoked, got %v", err)
	}
	if IsRetryable(err) {
		t.Errorf("revoked grant must not be retryable: %v", err)
	}
	// A new client (cold token cache) fails the same way.
	f.Forget(cal)
	svc, _ = f.Service(ctx, cal)
	if _, err := svc.Events.List("alice@x.test").Do(); !IsAuthRevoked(err) {
		t.Fatalf("cold: want auth revoked, got %v", err)
	}
}

func TestLimiterSharedPerUser(t *testing.T) {
	ctx := context.Background()
	srv, base := calendaremu.Start(t, calendaremu.Options{})
	srv.CreateUser("bob@x.test", "1//bob")
	// 600/min = 10/s, burst 1: 8 requests over two calendars of one user
	// take at least 0.7 s whatever the goroutines.
	f := newFactory(base, 600, 1, mapTokens{"cred-b": "1//bob"})
	cals := []store.Calendar{
		{CalendarID: "bob@x.test", AuthMode: store.AuthOAuth, CredentialID: "cred-b"},
		{CalendarID: "bob-second", AuthMode: store.AuthOAuth, CredentialID: "cred-b"},
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			svc, err := f.Service(ctx, cals[i%2])
			if err != nil {
				t.Error(err)
				return
			}
			svc.Events.List("bob@x.test").Do()
		}()
	}
	wg.Wait()
	if el := time.Since(start); el < 650*time.Millisecond {
		t.Errorf("8 requests of one user at 10/s took %s, want >= 0.7s", el)
	}
	if f.Limiter("credential:cred-b") != f.Limiter(Identity(cals[1])) {
		t.Error("limiter not shared")
	}
	// Another user is not slowed by bob's budget.
	start = time.Now()
	svc, _ := f.Service(ctx, store.Calendar{AuthMode: store.AuthADC})
	svc.Events.List(calendaremu.DefaultUser).Do()
	if el := time.Since(start); el > 300*time.Millisecond {
		t.Errorf("adc request waited %s on bob's limiter", el)
	}
	// Context cancellation ends the wait.
	cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	svc, _ = f.Service(ctx, cals[0])
	for range 3 {
		_, err := svc.Events.List("bob@x.test").Context(cctx).Do()
		if err != nil && IsRetryable(err) {
			t.Errorf("context end must not be retryable: %v", err)
		}
	}
}

func TestClassifiers(t *testing.T) {
	ctx := context.Background()
	srv, base := calendaremu.Start(t, calendaremu.Options{})
	f := newFactory(base, 6000, 100, nil)
	svc, _ := f.Service(ctx, store.Calendar{AuthMode: store.AuthADC})
	list := func() error { _, err := svc.Events.List(calendaremu.DefaultUser).Do(); return err }

	cases := []struct {
		code                               int
		reason                             string
		retry, quota, notFound, gone, auth bool
	}{
		{403, "userRateLimitExceeded", true, false, false, false, false},
		{403, "rateLimitExceeded", true, false, false, false, false},
		{429, "rateLimitExceeded", true, false, false, false, false},
		{503, "backendError", true, false, false, false, false},
		{500, "backendError", true, false, false, false, false},
		{403, "quotaExceeded", false, true, false, false, false},
		{403, "forbidden", false, false, false, false, false},
		{404, "notFound", false, false, true, false, false},
		{410, "fullSyncRequired", false, false, false, true, false},
		{400, "invalid", false, false, false, false, false},
	}
	for _, c := range cases {
		srv.FailNext("events.list", 1, c.code, c.reason)
		err := list()
		if err == nil {
			t.Fatalf("%d %s: no error", c.code, c.reason)
		}
		got := [5]bool{IsRetryable(err), IsQuotaExceeded(err), IsNotFound(err), IsGone(err), IsAuthRevoked(err)}
		want := [5]bool{c.retry, c.quota, c.notFound, c.gone, c.auth}
		if got != want {
			t.Errorf("%d %s: got retry/quota/notFound/gone/auth %v, want %v (%v)", c.code, c.reason, got, want, err)
		}
		if Reason(err) != c.reason {
			t.Errorf("Reason = %q, want %q", Reason(err), c.reason)
		}
	}
	// Real 404 and 410 from the API.
	if _, err := svc.Events.List("nobody@x").Do(); !IsNotFound(err) {
		t.Errorf("unknown calendar: want not found, got %v", err)
	}
	r, err := svc.Events.List(calendaremu.DefaultUser).Do()
	if err != nil {
		t.Fatal(err)
	}
	srv.InvalidateSyncTokens(calendaremu.DefaultUser)
	if _, err := svc.Events.List(calendaremu.DefaultUser).SyncToken(r.NextSyncToken).Do(); !IsGone(err) {
		t.Errorf("dead sync token: want gone, got %v", err)
	}
	// Network failure: nothing listens.
	dead := newFactory("http://127.0.0.1:1", 0, 0, nil)
	dsvc, _ := dead.Service(ctx, store.Calendar{AuthMode: store.AuthADC})
	if _, err := dsvc.Events.List("x").Do(); !IsRetryable(err) {
		t.Errorf("connection refused: want retryable, got %v", err)
	}
	for _, e := range []error{nil, context.Canceled, fmt.Errorf("wrapped: %w", context.DeadlineExceeded), errors.New("plain")} {
		if IsRetryable(e) || IsAuthRevoked(e) || IsNotFound(e) {
			t.Errorf("%v: classified", e)
		}
	}
	if !IsAuthRevoked(fmt.Errorf("x: %w", &oauth2.RetrieveError{ErrorCode: "invalid_grant", Response: &http.Response{StatusCode: 400}})) {
		t.Error("wrapped RetrieveError invalid_grant not revoked")
	}
	if IsAuthRevoked(&oauth2.RetrieveError{ErrorCode: "invalid_client"}) {
		t.Error("invalid_client is not a revoked grant")
	}
}

// A 401 on a cached access token (the server forgot it) is retried once with
// a refreshed token, body included; the caller never sees it.
func TestStale401RefreshedAndRetried(t *testing.T) {
	ctx := context.Background()
	srv, base := calendaremu.Start(t, calendaremu.Options{})
	srv.CreateUser("dave@x.test", "1//dave")
	f := newFactory(base, 0, 0, mapTokens{"cred-d": "1//dave"})
	cal := store.Calendar{CalendarID: "dave@x.test", AuthMode: store.AuthOAuth, CredentialID: "cred-d"}
	svc, _ := f.Service(ctx, cal)
	if _, err := svc.Events.List("dave@x.test").Do(); err != nil {
		t.Fatal(err)
	}
	srv.Reset() // access tokens forgotten
	srv.CreateUser("dave@x.test", "1//dave")
	issued := srv.Stats().Tokens
	ev, err := svc.Events.Insert("dave@x.test", &calendar.Event{Summary: "after 401",
		Start: &calendar.EventDateTime{Date: "2030-01-01"}, End: &calendar.EventDateTime{Date: "2030-01-02"}}).Do()
	if err != nil || ev.Summary != "after 401" {
		t.Fatalf("insert after a stale token: %v", err)
	}
	if srv.Stats().Tokens != issued+1 {
		t.Errorf("tokens issued %d, want one refresh", srv.Stats().Tokens-issued)
	}
	// Revoked: a request with a body (events.watch) also ends as auth revoked.
	srv.RevokeGrant("dave@x.test")
	_, err = svc.Events.Watch("dave@x.test", &calendar.Channel{Id: "w1", Type: "web_hook", Address: "http://127.0.0.1:1/x"}).Do()
	if !IsAuthRevoked(err) {
		t.Fatalf("watch with a revoked grant: %v", err)
	}
}

// The request timeout counts from when the call leaves, not from when it
// started waiting for the budget (minutes when a quota is spent); a slow
// server is still a retryable timeout.
func TestTimeoutExcludesBudgetWait(t *testing.T) {
	ctx := context.Background()
	_, base := calendaremu.Start(t, calendaremu.Options{})
	f := New(Options{Endpoint: base, Timeout: 200 * time.Millisecond, Budget: slowBudget(400 * time.Millisecond)})
	svc, _ := f.Service(ctx, store.Calendar{AuthMode: store.AuthADC})
	if _, err := svc.Events.List(calendaremu.DefaultUser).Do(); err != nil {
		t.Fatalf("a call that waited longer than the timeout for its budget: %v", err)
	}
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(500 * time.Millisecond)
	}))
	defer slow.Close()
	f = New(Options{Endpoint: slow.URL, Timeout: 100 * time.Millisecond})
	svc, _ = f.Service(ctx, store.Calendar{AuthMode: store.AuthADC})
	if _, err := svc.Events.List("x").Do(); err == nil || !IsRetryable(err) {
		t.Fatalf("slow server: want a retryable timeout, got %v", err)
	}
}

type slowBudget time.Duration

func (d slowBudget) Take(ctx context.Context, _ string) error {
	time.Sleep(time.Duration(d))
	return nil
}
