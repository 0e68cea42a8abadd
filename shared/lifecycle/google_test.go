package lifecycle_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"google.golang.org/api/option"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/testlog"
)

// consentList lists user's primary calendar with a token of the emulated
// consent screen (where the user may have unticked scopes): Google's answer.
func consentList(t *testing.T, base, user string) error {
	t.Helper()
	ctx := context.Background()
	tok, cfg, err := calendaremu.Consent(ctx, base, user, calclient.Scopes...)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := calendaremu.NewService(ctx, base, option.WithTokenSource(cfg.TokenSource(ctx, tok)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = svc.Events.List("primary").Do()
	return err
}

// Google's refusals as the emulator answers them, each to its own status
// with one ERROR line that says what to do; none is retried.
func TestRefusalsFromGoogle(t *testing.T) {
	ctx := context.Background()
	srv, base := calendaremu.Start(t, calendaremu.Options{})
	const user = "hana@calsync.test"
	if err := srv.CreateUser(user, ""); err != nil {
		t.Fatal(err)
	}
	srv.UntickScopes(calclient.Scope) // granular consent: events unticked
	scopeErr := consentList(t, base, user)
	srv.UntickScopes()
	if err := srv.DisableAPI(calendaremu.ServiceCalendar, true); err != nil {
		t.Fatal(err)
	}
	apiErr := consentList(t, base, user)
	if err := srv.DisableAPI(calendaremu.ServiceCalendar, false); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, status string
		err          error
	}{
		{"scope unticked", store.StatusScopeMissing, scopeErr},
		{"API disabled", store.StatusAPIDisabled, apiErr},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := newStore(t)
			cal := store.Calendar{CalendarID: user, AuthMode: store.AuthOAuth, CredentialID: "cred-" + c.status, Status: store.StatusActive}
			key, err := lifecycle.Register(ctx, st, cal)
			if err != nil {
				t.Fatal(err)
			}
			logs := &testlog.Buffer{}
			o := &lifecycle.Owner{Store: st, Logger: logging.New(logs, slog.LevelDebug)}
			res, err := o.Report(ctx, lifecycle.Calendar(key, cal), lifecycle.OpEventsList, c.err)
			if err != nil || res.Effect != lifecycle.EffectDeny || res.Next != lifecycle.Skip || !res.Changed {
				t.Fatalf("report of %v: %+v %v", c.err, res, err)
			}
			if got, _ := st.GetCalendar(ctx, key); got.Status != c.status {
				t.Errorf("status %q, want %q", got.Status, c.status)
			}
			lines := logs.Lines()
			if len(lines) != 1 || lines[0]["event"] != c.status || lines[0]["severity"] != "ERROR" || lines[0]["advice"] != lifecycle.Advice(c.status) ||
				!strings.Contains(lines[0]["message"].(string), lifecycle.Advice(c.status)) {
				t.Errorf("want one ERROR %s line with the advice, got %v", c.status, lines)
			}
		})
	}
}

// A delegation Google answers unauthorized_client for: within the grace
// period after enrollment the sync is deferred and nothing is written;
// after it, the grant's calendars become delegation_unauthorized.
func TestDelegationUnauthorizedGrace(t *testing.T) {
	ctx := context.Background()
	srv, base := calendaremu.Start(t, calendaremu.Options{})
	const boss, sa = "boss@corp.test", "calsync-sync@p.iam.gserviceaccount.com"
	if err := srv.CreateDomain("corp.test", boss); err != nil {
		t.Fatal(err)
	}
	srv.RevokeDelegation(sa)
	factory := calclient.New(calclient.Options{Endpoint: base, DelegationServiceAccount: sa,
		OAuth: &oauth2.Config{Endpoint: oauth2.Endpoint{TokenURL: base + "/token"}}})
	g := store.Grant{AuthMode: store.AuthDelegation, Subject: boss}
	svc, gerr := factory.Service(ctx, g)
	if gerr == nil {
		_, gerr = svc.Events.List(boss).Do()
	}
	if lifecycle.Classify(gerr) != lifecycle.AnswerUnauthorized {
		t.Fatalf("want unauthorized_client from the emulator, got %v", gerr)
	}
	st := newStore(t)
	key, err := lifecycle.Register(ctx, st, store.Calendar{CalendarID: boss, AuthMode: store.AuthDelegation, Subject: boss, Status: store.StatusActive})
	if err != nil {
		t.Fatal(err)
	}
	cal, err := st.GetCalendar(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testlog.Buffer{}
	o := &lifecycle.Owner{Store: st, Logger: logging.New(logs, slog.LevelDebug)} // default grace: 24 h
	res, err := o.Report(ctx, lifecycle.Calendar(key, cal), lifecycle.OpEventsList, gerr)
	if err != nil || res.Next != lifecycle.Defer || res.Changed {
		t.Fatalf("within the grace period: %+v %v, want deferred, nothing written", res, err)
	}
	if got, _ := st.GetCalendar(ctx, key); got.Status != store.StatusActive {
		t.Errorf("within the grace period: status %q", got.Status)
	}
	if lines := logs.Lines(); len(lines) != 1 || lines[0]["event"] != logging.EventDelegationPending || lines[0]["severity"] != "WARNING" {
		t.Errorf("want one WARN delegation_pending line, got %v", lines)
	}
	o.DelegationGrace = -1 // the grace period is over
	res, err = o.Report(ctx, lifecycle.Calendar(key, cal), lifecycle.OpEventsList, gerr)
	if err != nil || res.Effect != lifecycle.EffectDeny || res.Next != lifecycle.Skip || !res.Changed {
		t.Fatalf("after the grace period: %+v %v", res, err)
	}
	if got, _ := st.GetCalendar(ctx, key); got.Status != store.StatusDelegationUnauthorized {
		t.Errorf("after the grace period: status %q", got.Status)
	}
}
