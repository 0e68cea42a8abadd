package lifecycle_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/syncertest"
	"github.com/calsync/calsync/shared/testing/testenv"
	"github.com/calsync/calsync/shared/testing/testlog"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newStore(t *testing.T) *store.Store {
	t.Helper()
	return store.New(testenv.FirestoreClient(t))
}

type stopRecorder struct{ keys []string }

func (s *stopRecorder) StopCalendar(_ context.Context, cal store.Calendar, _ string) (int, error) {
	s.keys = append(s.keys, store.CalendarKey(cal.CalendarID))
	return 0, errors.New("401: grant revoked")
}

// A dead grant: its credential, its enrolled identity and every calendar
// read with it become auth_revoked, their channels end, and one ERROR line
// says so however many times (and for whichever target) it is reported.
func TestRevokedGrant(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	now := time.Now().UTC()
	for _, id := range []string{"credX", "credY"} {
		if err := st.CreateCredential(ctx, id, store.Credential{Subject: id + "@x.test", Status: store.CredentialActive}); err != nil {
			t.Fatal(err)
		}
	}
	idX := store.Identity{AuthMode: store.AuthOAuth, CredentialID: "credX", Tenant: "acme", ExternalID: "user-x"}
	idKey, _, err := lifecycle.EnrollIdentity(ctx, st, idX)
	if err != nil {
		t.Fatal(err)
	}
	regs := []store.Calendar{
		{CalendarID: "x1", AuthMode: store.AuthOAuth, CredentialID: "credX", Status: store.StatusActive},
		{CalendarID: "x2", AuthMode: store.AuthOAuth, CredentialID: "credX", Status: store.StatusActive},
		{CalendarID: "y1", AuthMode: store.AuthOAuth, CredentialID: "credY", Status: store.StatusActive},
	}
	for _, c := range regs {
		key, err := lifecycle.Register(ctx, st, c)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.CreateChannel(ctx, store.Channel{ChannelID: "ch-" + c.CalendarID, Key: key, CalendarID: c.CalendarID,
			State: store.ChannelActive, ResourceID: "r", Expiration: now.Add(time.Hour), CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	logs := &testlog.Buffer{}
	stopper := &stopRecorder{}
	ann := &syncertest.Announcements{}
	o := &lifecycle.Owner{Store: st, Stopper: stopper, Logger: logging.New(logs, slog.LevelDebug), Announcer: ann}
	// The SyncWorker meets it on a calendar, then an enrollment on the
	// identity's list: still one line, and one lifecycle message that tells
	// the identity's tenant its user must reconnect.
	res, err := o.Report(ctx, lifecycle.Calendar(store.CalendarKey("x1"), regs[0]), lifecycle.OpEventsList, revokedErr())
	if err != nil || res.Effect != lifecycle.EffectRevoke || res.Next != lifecycle.Skip || !res.Changed {
		t.Fatalf("first report: %+v %v", res, err)
	}
	if res, err := o.Report(ctx, lifecycle.Calendar(store.CalendarKey("x2"), regs[1]), lifecycle.OpEventsWatch, revokedErr()); err != nil || res.Changed {
		t.Fatalf("second report changed something: %+v %v", res, err)
	}
	if res, err := o.Report(ctx, lifecycle.Identity(idKey, idX), lifecycle.OpListList, revokedErr()); err != nil || res.Changed || res.Next != lifecycle.Stop {
		t.Fatalf("identity report: %+v %v", res, err)
	}
	if n := logs.Count("ERROR", logging.EventAuthRevoked); n != 1 || len(logs.Lines()) != 1 {
		t.Errorf("want exactly one line, an ERROR auth_revoked; got %d of %d:\n%s", n, len(logs.Lines()), logs.String())
	}
	if ann.Err != nil {
		t.Fatal(ann.Err)
	}
	if p := ann.Of(messages.LifecycleIdentityAuthProblem); len(p) != 1 || p[0].IdentityKey != idKey || p[0].Tenant != "acme" ||
		p[0].ExternalID != "user-x" || p[0].Reason != store.StatusAuthRevoked || p[0].UserAction != messages.UserReconnect {
		t.Errorf("identity.auth_problem: %+v, want one for %s (acme, user-x) to reconnect", p, idKey)
	}
	for _, c := range regs {
		got, err := st.GetCalendar(ctx, store.CalendarKey(c.CalendarID))
		if err != nil {
			t.Fatal(err)
		}
		ch, _ := st.GetChannel(ctx, "ch-"+c.CalendarID)
		revoked := c.CredentialID == "credX"
		if (got.Status == store.StatusAuthRevoked) != revoked {
			t.Errorf("%s: status %s", c.CalendarID, got.Status)
		}
		if (ch.State == store.ChannelStopped) != revoked || (revoked && ch.ExpireAt.IsZero()) {
			t.Errorf("%s: channel %+v", c.CalendarID, ch)
		}
	}
	if cr, _ := st.GetCredential(ctx, "credX"); cr.Status != store.StatusAuthRevoked || cr.RevokedAt.IsZero() {
		t.Errorf("credential: %+v", cr)
	}
	if cr, _ := st.GetCredential(ctx, "credY"); cr.Status != store.CredentialActive {
		t.Errorf("other credential touched: %+v", cr)
	}
	if id, _ := st.GetIdentity(ctx, idKey); id.Status != store.StatusAuthRevoked {
		t.Errorf("identity: %s", id.Status)
	}
	if len(stopper.keys) == 0 {
		t.Error("stopper not asked")
	}
	// Without a stopper the records are closed all the same.
	if _, err := (&lifecycle.Owner{Store: st, Logger: logging.New(logs, slog.LevelDebug)}).Report(ctx,
		lifecycle.Calendar(store.CalendarKey("y1"), regs[2]), lifecycle.OpEventsList, revokedErr()); err != nil {
		t.Fatal(err)
	}
	if ch, _ := st.GetChannel(ctx, "ch-y1"); ch.State != store.ChannelStopped {
		t.Errorf("y1 channel %s", ch.State)
	}
}

// An identity unenrolled while its grant failed stays unenrolled, and its
// calendars are not touched.
func TestRevokedAfterUnenroll(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	id := store.Identity{AuthMode: store.AuthDelegation, Subject: "sus@corp.test"}
	key, _, err := lifecycle.EnrollIdentity(ctx, st, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lifecycle.Register(ctx, st, store.Calendar{CalendarID: "sus@corp.test", AuthMode: store.AuthDelegation, Subject: "sus@corp.test"}); err != nil {
		t.Fatal(err)
	}
	logs := &testlog.Buffer{}
	o := &lifecycle.Owner{Store: st, Logger: logging.New(logs, slog.LevelDebug)}
	if _, err := o.Unenroll(ctx, lifecycle.Identity(key, id), "suspended"); err != nil {
		t.Fatal(err)
	}
	id.Status = store.StatusActive // as read before the unenrollment
	res, err := o.Report(ctx, lifecycle.Identity(key, id), lifecycle.OpListList, revokedErr())
	if err != nil || res.Changed {
		t.Fatalf("%+v %v", res, err)
	}
	got, _ := st.GetIdentity(ctx, key)
	cal, _ := st.GetCalendar(ctx, store.CalendarKey("sus@corp.test"))
	if got.Status != store.StatusUnenrolled || cal.Status != store.StatusActive {
		t.Errorf("identity %s, calendar %s", got.Status, cal.Status)
	}
	if n := logs.Count("ERROR", logging.EventAuthRevoked); n != 0 {
		t.Errorf("%d auth_revoked lines:\n%s", n, logs.String())
	}
}

func revokedErr() error {
	return &oauth2.RetrieveError{Response: &http.Response{StatusCode: 400}, ErrorCode: "invalid_grant"}
}

// A domain's directory refused: the domain records the refusal (one ERROR
// whose event is the status, however often and by however many runs it is
// met), a different refusal replaces it (its own line), the next read
// clears it (one INFO domain_back), and an unenrolled domain is left alone.
func TestDomainStatus(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	if err := st.PutDomain(ctx, store.Domain{Domain: "corp.test", Admin: "admin@corp.test"}); err != nil {
		t.Fatal(err)
	}
	logs := &testlog.Buffer{}
	o := &lifecycle.Owner{Store: st, Logger: logging.New(logs, slog.LevelDebug)}
	read := func() store.Domain {
		t.Helper()
		d, err := st.GetDomain(ctx, "corp.test")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	policy := &oauth2.RetrieveError{Response: &http.Response{StatusCode: 400}, ErrorCode: "admin_policy_enforced"}
	unauthorized := &oauth2.RetrieveError{Response: &http.Response{StatusCode: 401}, ErrorCode: "unauthorized_client"}
	stale := read() // two runs that read it active
	for range 2 {
		res, err := o.Report(ctx, lifecycle.Domain(stale), lifecycle.OpDirectoryList, policy)
		if err != nil || res.Next != lifecycle.Stop {
			t.Fatalf("admin policy: %+v %v", res, err)
		}
	}
	if res, err := o.Report(ctx, lifecycle.Domain(read()), lifecycle.OpDirectoryList, policy); err != nil || res.Changed {
		t.Fatalf("the same refusal again: %+v %v", res, err)
	}
	if d := read(); d.Status != store.StatusAdminPolicy || d.StatusReason == "" {
		t.Fatalf("domain after admin_policy_enforced: %+v", d)
	}
	if n := logs.Count("ERROR", logging.EventAdminPolicy); n != 1 || len(logs.Lines()) != 1 {
		t.Fatalf("want one ERROR admin_policy line; got %d of %d:\n%s", n, len(logs.Lines()), logs.String())
	}
	if res, err := o.Report(ctx, lifecycle.Domain(read()), lifecycle.OpDirectoryList, unauthorized); err != nil || !res.Changed {
		t.Fatalf("another refusal: %+v %v", res, err)
	}
	if d := read(); d.Status != store.StatusDelegationUnauthorized {
		t.Fatalf("domain after unauthorized_client: %+v", d)
	}
	// Read again: active, once.
	stale = read()
	for range 2 {
		if _, err := o.Report(ctx, lifecycle.Domain(stale), lifecycle.OpDirectoryList, nil); err != nil {
			t.Fatal(err)
		}
	}
	if d := read(); d.Status != store.StatusActive || d.StatusReason != "" {
		t.Fatalf("domain read again: %+v", d)
	}
	if n := logs.Count("INFO", logging.EventDomainBack); n != 1 || logs.Count("ERROR", logging.EventDelegationUnauthorized) != 1 || len(logs.Lines()) != 3 {
		t.Fatalf("want one line per transition (3):\n%s", logs.String())
	}
	// Unenrolled, then refused (a run that read it before): stays unenrolled.
	before := read()
	if _, err := o.Unenroll(ctx, lifecycle.Domain(before), "operator"); err != nil {
		t.Fatal(err)
	}
	if res, err := o.Report(ctx, lifecycle.Domain(before), lifecycle.OpDirectoryList, policy); err != nil || res.Changed {
		t.Fatalf("refusal after the unenrollment: %+v %v", res, err)
	}
	if d := read(); d.Status != store.StatusUnenrolled {
		t.Fatalf("unenrolled domain became %s", d.Status)
	}
}
