package lifecycle

import (
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/store"
)

func TestDecide(t *testing.T) {
	const (
		active     = store.StatusActive
		notFound   = store.StatusNotFound
		revoked    = store.StatusAuthRevoked
		unwatched  = store.StatusUnwatched
		unenrolled = store.StatusUnenrolled
	)
	cases := []struct {
		name   string
		kind   Kind
		status string
		op     Op
		a      Answer
		want   Decision
	}{
		{"calendar synced", KindCalendar, active, OpEventsList, AnswerOK, Decision{EffectNone, Continue}},
		{"dead grant on a sync", KindCalendar, active, OpEventsList, AnswerRevoked, Decision{EffectRevoke, Skip}},
		{"dead grant on a watch", KindCalendar, active, OpEventsWatch, AnswerRevoked, Decision{EffectRevoke, Skip}},
		{"dead grant on a probe", KindCalendar, notFound, OpProbe, AnswerRevoked, Decision{EffectRevoke, Skip}},
		{"dead grant again", KindCalendar, revoked, OpEventsList, AnswerRevoked, Decision{EffectRevoke, Skip}},
		{"dead grant of an unwatched calendar", KindCalendar, unwatched, OpEventsList, AnswerRevoked, Decision{EffectNone, Skip}},
		{"403 on a calendar is not a revocation", KindCalendar, active, OpEventsList, AnswerDenied, Decision{EffectNone, RetryLater}},
		{"404 on a sync counts", KindCalendar, active, OpEventsList, AnswerNotFound, Decision{EffectCountNotFound, Probe}},
		{"404 on a watch counts the same", KindCalendar, active, OpEventsWatch, AnswerNotFound, Decision{EffectCountNotFound, Probe}},
		{"404 of a calendar already not_found", KindCalendar, notFound, OpEventsList, AnswerNotFound, Decision{EffectNone, Skip}},
		{"404 of an unwatched calendar", KindCalendar, unwatched, OpEventsWatch, AnswerNotFound, Decision{EffectNone, Skip}},
		{"probe missed", KindCalendar, notFound, OpProbe, AnswerNotFound, Decision{EffectProbeMissed, Skip}},
		{"probe found", KindCalendar, notFound, OpProbe, AnswerOK, Decision{EffectReactivate, Continue}},
		{"probe failed otherwise", KindCalendar, notFound, OpProbe, AnswerFailed, Decision{EffectNone, RetryLater}},
		{"success on a revoked calendar", KindCalendar, revoked, OpEventsList, AnswerOK, Decision{EffectNone, Skip}},
		{"holiday calendar", KindCalendar, active, OpEventsWatch, AnswerPushNotSupported, Decision{EffectPoll, Continue}},
		{"pushNotSupported on a list", KindCalendar, active, OpEventsList, AnswerPushNotSupported, Decision{EffectNone, RetryLater}},
		{"birthdays", KindCalendar, active, OpEventsWatch, AnswerNoDeletions, Decision{EffectPoll, Continue}},
		{"birthdays, not followed", KindCalendar, revoked, OpEventsWatch, AnswerNoDeletions, Decision{EffectNone, Skip}},
		{"transient", KindCalendar, active, OpEventsList, AnswerFailed, Decision{EffectNone, RetryLater}},
		{"operator unwatch", KindCalendar, active, OpOperator, AnswerUnwatch, Decision{EffectUnwatch, Continue}},
		{"operator unwatch of a revoked calendar", KindCalendar, revoked, OpOperator, AnswerUnwatch, Decision{EffectUnwatch, Continue}},
		{"unwatch twice", KindCalendar, unwatched, OpOperator, AnswerUnwatch, Decision{EffectNone, Skip}},
		{"calendar left the list", KindCalendar, notFound, OpOperator, AnswerUnenroll, Decision{EffectUnwatch, Continue}},
		{"listed: a new calendar", KindCalendar, "", OpListList, AnswerEnroll, Decision{EffectActivate, Continue}},
		{"listed again: unwatched before", KindCalendar, unwatched, OpListList, AnswerEnroll, Decision{EffectActivate, Continue}},
		{"listed: another's grant had failed", KindCalendar, revoked, OpListList, AnswerEnroll, Decision{EffectActivate, Continue}},
		{"listed, active", KindCalendar, active, OpListList, AnswerEnroll, Decision{EffectNone, Continue}},
		{"free/busy only", KindCalendar, active, OpListList, AnswerFreeBusyOnly, Decision{EffectFreeBusy, Skip}},
		{"free/busy only on a sync", KindCalendar, active, OpEventsList, AnswerFreeBusyOnly, Decision{EffectFreeBusy, Skip}},
		{"free/busy only again", KindCalendar, store.StatusFreeBusyOnly, OpEventsList, AnswerFreeBusyOnly, Decision{EffectNone, Skip}},
		{"free/busy only, unwatched", KindCalendar, unwatched, OpEventsList, AnswerFreeBusyOnly, Decision{EffectNone, Skip}},
		{"synced as free/busy only: not active", KindCalendar, store.StatusFreeBusyOnly, OpEventsList, AnswerOK, Decision{EffectNone, Skip}},
		{"reader lost it, another lists it", KindCalendar, active, OpEventsList, AnswerReaderLost, Decision{EffectHandOver, RetryLater}},
		{"reader lost an unwatched calendar", KindCalendar, unwatched, OpEventsList, AnswerReaderLost, Decision{EffectNone, Skip}},
		{"identity enrolled again", KindIdentity, unenrolled, OpOperator, AnswerEnroll, Decision{EffectActivate, Continue}},
		{"identity's list read", KindIdentity, active, OpListList, AnswerOK, Decision{EffectNone, Continue}},
		{"identity's grant dead", KindIdentity, active, OpListList, AnswerRevoked, Decision{EffectRevoke, Stop}},
		{"identity's list refused", KindIdentity, active, OpListList, AnswerDenied, Decision{EffectRevoke, Stop}},
		{"identity's watch refused", KindIdentity, active, OpListWatch, AnswerRevoked, Decision{EffectRevoke, Stop}},
		{"unenrolled identity's grant dead", KindIdentity, unenrolled, OpListWatch, AnswerRevoked, Decision{EffectNone, Skip}},
		{"identity's list 404", KindIdentity, active, OpListList, AnswerNotFound, Decision{EffectNone, RetryLater}},
		{"identity unenrolled", KindIdentity, active, OpOperator, AnswerUnenroll, Decision{EffectUnenroll, Continue}},
		{"revoked identity unenrolled", KindIdentity, revoked, OpOperator, AnswerUnenroll, Decision{EffectUnenroll, Continue}},
		{"identity unenrolled twice", KindIdentity, unenrolled, OpOperator, AnswerUnenroll, Decision{EffectNone, Skip}},
		{"identity cannot be unwatched", KindIdentity, active, OpOperator, AnswerUnwatch, Decision{EffectNone, Skip}},
		{"domain's admin refused", KindDomain, active, OpDirectoryList, AnswerRevoked, Decision{EffectDeny, Stop}},
		{"domain's directory failed", KindDomain, active, OpDirectoryList, AnswerFailed, Decision{EffectNone, RetryLater}},
		{"domain unenrolled", KindDomain, active, OpOperator, AnswerUnenroll, Decision{EffectUnenroll, Continue}},
		{"scope missing on a sync", KindCalendar, active, OpEventsList, AnswerScopeMissing, Decision{EffectDeny, Skip}},
		{"API disabled on a watch", KindCalendar, active, OpEventsWatch, AnswerAPIDisabled, Decision{EffectDeny, Skip}},
		{"admin policy on a probe", KindCalendar, notFound, OpProbe, AnswerAdminPolicy, Decision{EffectDeny, Skip}},
		{"client disabled", KindCalendar, active, OpEventsList, AnswerClientDisabled, Decision{EffectDeny, Skip}},
		{"delegation unauthorized after the grace", KindCalendar, active, OpEventsList, AnswerUnauthorized, Decision{EffectDeny, Skip}},
		{"delegation unauthorized within the grace", KindCalendar, active, OpEventsList, AnswerUnauthorizedFresh, Decision{EffectNone, Defer}},
		{"scope missing again", KindCalendar, store.StatusScopeMissing, OpEventsList, AnswerScopeMissing, Decision{EffectDeny, Skip}},
		{"API disabled for an unwatched calendar", KindCalendar, unwatched, OpEventsList, AnswerAPIDisabled, Decision{EffectNone, Skip}},
		{"identity's scope missing", KindIdentity, active, OpListList, AnswerScopeMissing, Decision{EffectDeny, Stop}},
		{"identity's API disabled", KindIdentity, active, OpListWatch, AnswerAPIDisabled, Decision{EffectDeny, Stop}},
		{"identity's fresh delegation", KindIdentity, active, OpListList, AnswerUnauthorizedFresh, Decision{EffectNone, Defer}},
		{"identity's delegation unauthorized", KindIdentity, active, OpListList, AnswerUnauthorized, Decision{EffectDeny, Stop}},
		{"unenrolled identity's scope missing", KindIdentity, unenrolled, OpListList, AnswerScopeMissing, Decision{EffectNone, Skip}},
		{"domain's admin policy", KindDomain, active, OpDirectoryList, AnswerAdminPolicy, Decision{EffectDeny, Stop}},
		{"domain's fresh delegation", KindDomain, active, OpDirectoryList, AnswerUnauthorizedFresh, Decision{EffectNone, RetryLater}},
		// A domain's status: the refusal recorded once, cleared by the next
		// directory read, never set on an unenrolled domain.
		{"domain's delegation unauthorized", KindDomain, active, OpDirectoryList, AnswerUnauthorized, Decision{EffectDeny, Stop}},
		{"domain's API disabled", KindDomain, active, OpDirectoryList, AnswerAPIDisabled, Decision{EffectDeny, Stop}},
		{"domain's admin no longer an admin", KindDomain, active, OpDirectoryList, AnswerDenied, Decision{EffectDeny, Stop}},
		{"domain's admin policy again", KindDomain, store.StatusAdminPolicy, OpDirectoryList, AnswerAdminPolicy, Decision{EffectNone, Stop}},
		{"domain forbidden again", KindDomain, store.StatusDirectoryForbidden, OpDirectoryList, AnswerDenied, Decision{EffectNone, Stop}},
		{"domain's refusal changes", KindDomain, store.StatusAdminPolicy, OpDirectoryList, AnswerAPIDisabled, Decision{EffectDeny, Stop}},
		{"refused domain read again", KindDomain, store.StatusAPIDisabled, OpDirectoryList, AnswerOK, Decision{EffectClear, Continue}},
		{"refused domain, a transient failure", KindDomain, store.StatusAPIDisabled, OpDirectoryList, AnswerFailed, Decision{EffectNone, RetryLater}},
		{"active domain read", KindDomain, active, OpDirectoryList, AnswerOK, Decision{EffectNone, Continue}},
		{"domain read, no status recorded", KindDomain, "", OpDirectoryList, AnswerOK, Decision{EffectClear, Continue}},
		{"unenrolled domain refused", KindDomain, unenrolled, OpDirectoryList, AnswerAdminPolicy, Decision{EffectNone, Skip}},
		{"refused domain unenrolled", KindDomain, store.StatusAdminPolicy, OpOperator, AnswerUnenroll, Decision{EffectUnenroll, Continue}},
	}
	for _, c := range cases {
		if got := Decide(c.kind, c.status, c.op, c.a); got != c.want {
			t.Errorf("%s: Decide(%s, %q, %s, %s) = {%s %s}, want {%s %s}", c.name, c.kind, c.status, c.op, c.a,
				got.Effect, got.Next, c.want.Effect, c.want.Next)
		}
	}
}

func TestClassify(t *testing.T) {
	// golang.org/x/oauth2/jwt leaves ErrorCode empty: the body says it.
	tok := func(code int, e, desc string) error {
		body := `{"error":"` + e + `","error_description":"` + desc + `"}`
		return &url.Error{Op: "Post", URL: "https://oauth2.googleapis.com/token",
			Err: &oauth2.RetrieveError{Response: &http.Response{StatusCode: code}, Body: []byte(body), ErrorDescription: desc}}
	}
	api := func(code int, reason string) error {
		return &googleapi.Error{Code: code, Errors: []googleapi.ErrorItem{{Reason: reason}}}
	}
	cases := []struct {
		err  error
		want Answer
	}{
		{nil, AnswerOK},
		{&url.Error{Op: "Get", URL: "https://www.googleapis.com/calendar/v3/calendars/x/events", Err: calclient.ErrFreeBusyOnly}, AnswerFreeBusyOnly},
		{&oauth2.RetrieveError{Response: &http.Response{StatusCode: 400}, ErrorCode: "invalid_grant"}, AnswerRevoked},
		{tok(400, "invalid_grant", "Invalid JWT Signature."), AnswerFailed}, // ours to fix, not the grant's
		{tok(401, "unauthorized_client", ""), AnswerUnauthorized},
		{tok(400, "access_denied", ""), AnswerScopeMissing},
		{tok(400, "invalid_scope", ""), AnswerScopeMissing},
		{tok(400, "admin_policy_enforced", ""), AnswerAdminPolicy},
		{tok(401, "org_internal", ""), AnswerAdminPolicy},
		{tok(401, "disabled_client", ""), AnswerClientDisabled},
		{tok(400, "invalid_request", ""), AnswerFailed},
		{api(401, "authError"), AnswerRevoked},
		{api(403, "insufficientPermissions"), AnswerScopeMissing},
		{api(403, "accessNotConfigured"), AnswerAPIDisabled},
		{&googleapi.Error{Code: 403, Details: []any{map[string]any{"reason": "SERVICE_DISABLED"}}}, AnswerAPIDisabled},
		{api(403, "forbidden"), AnswerDenied},
		{api(403, "rateLimitExceeded"), AnswerFailed},
		{api(403, "quotaExceeded"), AnswerFailed},
		{api(404, "notFound"), AnswerNotFound},
		{api(410, "deleted"), AnswerNotFound},
		{api(400, "pushNotSupportedForRequestedResource"), AnswerPushNotSupported},
		{api(503, "backendError"), AnswerFailed},
		{errors.New("boom"), AnswerFailed},
	}
	for _, c := range cases {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

// Every refusal that sets a status says what to do about it.
func TestStatusOfAndAdvice(t *testing.T) {
	seen := map[string]bool{}
	for a := AnswerOK; a <= AnswerClientDisabled; a++ {
		st := StatusOf(a)
		if st == "" {
			continue
		}
		if seen[st] {
			t.Errorf("%s: status %s given twice", a, st)
		}
		seen[st] = true
		if Advice(st) == "" {
			t.Errorf("%s: status %s has no advice", a, st)
		}
		if !a.IsAuth() {
			t.Errorf("%s sets %s but is not an auth answer", a, st)
		}
	}
	if len(seen) != 6 {
		t.Errorf("statuses: %v", seen)
	}
	// A domain's: every auth answer gives one, with advice.
	for a := AnswerOK; a <= AnswerClientDisabled; a++ {
		st := DomainStatusOf(a)
		if a.IsAuth() && a != AnswerUnauthorizedFresh && (st == "" || Advice(st) == "") {
			t.Errorf("domain refused with %s: status %q, advice %q", a, st, Advice(st))
		}
		if !a.IsAuth() && st != "" {
			t.Errorf("domain answered %s: status %q", a, st)
		}
	}
}

// The 404 streak rule: only active calendars count; the first 404 starts the
// streak; not_found takes both enough 404s and enough time.
func TestNextStreak(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	p := store.NotFoundPolicy{Attempts: 3, After: time.Hour}
	streak := func(n int, since time.Time) store.Calendar {
		return store.Calendar{Status: store.StatusActive, NotFoundCount: n, NotFoundSince: since}
	}
	for _, tc := range []struct {
		name string
		p    store.NotFoundPolicy
		c    store.Calendar
		want store.NotFoundStreak
	}{
		{"first 404 starts the streak", p, streak(0, time.Time{}), store.NotFoundStreak{Count: 1, Since: now}},
		{"a stale since of a cleared streak is not kept", p, streak(0, now.Add(-48*time.Hour)), store.NotFoundStreak{Count: 1, Since: now}},
		{"a streak without its start starts now", p, streak(2, time.Time{}), store.NotFoundStreak{Count: 3, Since: now}},
		{"enough 404s, too soon", p, streak(5, now.Add(-59*time.Minute)), store.NotFoundStreak{Count: 6, Since: now.Add(-59 * time.Minute)}},
		{"long enough, too few", p, streak(1, now.Add(-48*time.Hour)), store.NotFoundStreak{Count: 2, Since: now.Add(-48 * time.Hour)}},
		{"persistent: not_found", p, streak(2, now.Add(-time.Hour)), store.NotFoundStreak{Count: 3, Since: now.Add(-time.Hour), Marked: true}},
		{"no attempts set: the default's", store.NotFoundPolicy{After: time.Minute}, streak(2, now.Add(-time.Hour)),
			store.NotFoundStreak{Count: 3, Since: now.Add(-time.Hour), Marked: true}},
		{"no attempts set, below the default", store.NotFoundPolicy{After: time.Minute}, streak(1, now.Add(-time.Hour)),
			store.NotFoundStreak{Count: 2, Since: now.Add(-time.Hour)}},
		{"not active: left alone", p, store.Calendar{Status: store.StatusNotFound, NotFoundCount: 3, NotFoundSince: now.Add(-time.Hour)}, store.NotFoundStreak{}},
		{"unwatched: left alone", p, store.Calendar{Status: store.StatusUnwatched}, store.NotFoundStreak{}},
	} {
		if got := NextStreak(tc.p, tc.c, now); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
