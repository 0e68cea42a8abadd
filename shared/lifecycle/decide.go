// Package lifecycle owns the state of calendars, identities and domains:
// every engine reports what Google answered (or what an operator or a
// listing decided), for which target and which operation; Decide says what
// that means (the transition table, pure), and Owner writes it through
// shared/store, logs it once and tells the caller what to do next.
// See README.md.
package lifecycle

import (
	"net/http"
	"time"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/store"
)

// Kind is what a report is about.
type Kind int

// Target kinds.
const (
	KindCalendar Kind = iota // a calendar's events (calendars/{key})
	KindIdentity             // an identity's calendar list (identities/{key})
	KindDomain               // a Workspace domain's directory (domains/{key})
)

func (k Kind) String() string { return [...]string{"calendar", "identity", "domain"}[k] }

// Op is the operation Google answered. A failed token refresh is reported
// with the call that needed the token.
type Op string

// Operations.
const (
	OpEventsList    Op = "events.list"
	OpEventsWatch   Op = "events.watch"
	OpProbe         Op = "events.list probe" // a not_found calendar tried again
	OpListList      Op = "calendarList.list"
	OpListWatch     Op = "calendarList.watch"
	OpDirectoryList Op = "directory list"
	// OpOperator: no Google call; an operator, a listing or the directory
	// decided (Unwatch, Unenroll).
	OpOperator Op = "operator"
)

// Answer is what Google said, sorted by what it means for the target.
type Answer int

// Answers. The refusals Google documents (token endpoint and API 403s)
// each have their own: each becomes its own status, with its own advice.
const (
	AnswerOK       Answer = iota
	AnswerRevoked         // invalid_grant, 401: the grant is dead
	AnswerDenied          // another 401/403 that no retry cures and Google does not name
	AnswerNotFound        // 404 (or a 410 on a full listing): perhaps gone, perhaps not yet shared
	AnswerPushNotSupported
	AnswerNoDeletions // Google does not report its deletions incrementally (birthdays)
	AnswerUnwatch     // an operator stopped following a calendar
	AnswerUnenroll    // an identity, a domain or a calendar left enrollment
	AnswerFailed      // anything else: transient or unknown, the caller's retry path
	// AnswerUnauthorized: unauthorized_client (the client is not
	// authorised for delegation or for a scope), once the grace period of
	// a fresh delegation is over (Owner decides which).
	AnswerUnauthorized
	// AnswerUnauthorizedFresh: unauthorized_client within the grace
	// period: Google may not have the new delegation yet (up to 24 h).
	AnswerUnauthorizedFresh
	AnswerScopeMissing   // access_denied, invalid_scope, 403 insufficientPermissions
	AnswerAPIDisabled    // 403 accessNotConfigured / SERVICE_DISABLED
	AnswerAdminPolicy    // admin_policy_enforced, org_internal
	AnswerClientDisabled // disabled_client
	// AnswerEnroll: a listing has the calendar (or an operator enrolls an
	// identity): a grant reads it in full.
	AnswerEnroll
	// AnswerFreeBusyOnly: the best grant that lists the calendar sees
	// free/busy only (accessRole freeBusyReader): busy blocks, no events.
	AnswerFreeBusyOnly
	// AnswerReaderLost: the calendar's reader was refused (403) or told
	// it is not there (404), and another grant lists it: the next best
	// reader takes over (Owner.Report decides which answers become it).
	AnswerReaderLost
)

func (a Answer) String() string {
	return [...]string{"ok", "revoked", "denied", "not_found", "push_not_supported", "no_deletions", "unwatch", "unenroll", "failed",
		"unauthorized", "unauthorized_fresh", "scope_missing", "api_disabled", "admin_policy", "client_disabled", "enroll",
		"free_busy_only", "reader_lost"}[a]
}

// Classify sorts a Calendar, Directory or token-endpoint error.
// unauthorized_client is AnswerUnauthorized: Owner.Report makes it
// AnswerUnauthorizedFresh within a fresh delegation's grace period.
func Classify(err error) Answer {
	switch calclient.DenialOf(err) {
	case calclient.DeniedRevoked:
		return AnswerRevoked
	case calclient.DeniedUnauthorizedClient:
		return AnswerUnauthorized
	case calclient.DeniedScope:
		return AnswerScopeMissing
	case calclient.DeniedAPIDisabled:
		return AnswerAPIDisabled
	case calclient.DeniedAdminPolicy:
		return AnswerAdminPolicy
	case calclient.DeniedClientDisabled:
		return AnswerClientDisabled
	}
	switch {
	case err == nil:
		return AnswerOK
	case calclient.IsFreeBusyOnly(err):
		return AnswerFreeBusyOnly
	case calclient.IsPushNotSupported(err):
		return AnswerPushNotSupported
	case calclient.IsNotFound(err), calclient.IsGone(err):
		return AnswerNotFound
	case calclient.IsRetryable(err), calclient.IsRateLimited(err), calclient.IsQuotaExceeded(err):
		return AnswerFailed
	}
	if code := calclient.HTTPStatus(err); code == http.StatusUnauthorized || code == http.StatusForbidden {
		return AnswerDenied
	}
	return AnswerFailed
}

// IsAuth: the grant does not let calsync read (revoked, refused, or not
// yet authorised).
func (a Answer) IsAuth() bool {
	return a == AnswerDenied || a == AnswerUnauthorizedFresh || StatusOf(a) != ""
}

// StatusOf is the status a refusal gives the grant's identity and
// calendars ("" for an answer that sets none).
func StatusOf(a Answer) string {
	switch a {
	case AnswerRevoked:
		return store.StatusAuthRevoked
	case AnswerUnauthorized:
		return store.StatusDelegationUnauthorized
	case AnswerScopeMissing:
		return store.StatusScopeMissing
	case AnswerAPIDisabled:
		return store.StatusAPIDisabled
	case AnswerAdminPolicy:
		return store.StatusAdminPolicy
	case AnswerClientDisabled:
		return store.StatusClientDisabled
	}
	return ""
}

// DomainStatusOf is the status a refusal of its directory gives a domain
// ("" for an answer that sets none): the grant's (StatusOf), and for any
// other 401/403 directory_forbidden (the admin may not read the directory).
func DomainStatusOf(a Answer) string {
	if a == AnswerDenied {
		return store.StatusDirectoryForbidden
	}
	return StatusOf(a)
}

// again: what brings the grant's calendars back once a person has acted
// (both set them active again).
const again = "; then enroll or watch them again (calsync enroll / watch)"

// Advice is what a person must do about a refusal's status, for its log
// line.
func Advice(status string) string {
	switch status {
	case store.StatusAuthRevoked:
		return "the grant is revoked or expired: reconnect the user (calsync connect), or restore the suspended or deleted delegation subject"
	case store.StatusDelegationUnauthorized:
		return "the client is not authorised for domain-wide delegation with these scopes: in the Admin console (Security > Access and data control > API controls > Domain-wide delegation) authorise the client ID with exactly the scopes calsync asks for" + again
	case store.StatusScopeMissing:
		return "a scope calsync needs was not granted: reconnect the user and tick every scope on the consent screen, or (delegation) authorise exactly calsync's scopes in the Admin console" + again
	case store.StatusAPIDisabled:
		return "a Google API is not enabled in the project: enable it (terraform apply, or gcloud services enable)" + again
	case store.StatusAdminPolicy:
		return "a Workspace admin policy blocks the app: have the admin trust it (Admin console > Security > API controls > App access control), or use an account of the app's organisation; or the deployment's TENANTS no longer lets the identity's tenant read this subject" + again
	case store.StatusClientDisabled:
		return "the OAuth client is disabled: re-enable it (Google Cloud console > APIs & Services > Credentials) or configure another" + again
	case store.StatusDirectoryForbidden:
		return "the domain's admin may not read the directory (no longer a super admin, or its role lost the Users or Calendar resources read privilege): restore the role, or enroll the domain with another admin (calsync enroll --domain D --admin A)"
	}
	return ""
}

// Next is what the caller does after a report.
type Next int

// Nexts.
const (
	// Continue with the target: nothing stands in the way.
	Continue Next = iota
	// Skip the target: its state says it is not to be worked on now
	// (acknowledge, move on to the next).
	Skip
	// Probe: skip it now and have it tried again later (a 404 streak that
	// is not yet proof: a sync request, a reconcile).
	Probe
	// RetryLater: the answer settles nothing; the caller's retry path
	// (redelivery, the next run).
	RetryLater
	// Stop the whole operation on the grant (an identity's listing, a
	// domain's diff): nothing more can be read with it.
	Stop
	// Defer: not now, and not a failure: try again later with a growing
	// backoff, and never dead-letter (a fresh delegation Google does not
	// have yet).
	Defer
)

func (n Next) String() string {
	return [...]string{"continue", "skip", "probe", "retry_later", "stop", "defer"}[n]
}

// Effect is the write a decision asks for.
type Effect int

// Effects.
const (
	EffectNone          Effect = iota
	EffectRevoke               // the grant is dead: its identity, credential and calendars auth_revoked
	EffectCountNotFound        // one more 404 in the streak; a persistent streak sets not_found
	EffectReactivate           // a not_found calendar answered: active again
	EffectProbeMissed          // a not_found calendar still 404s: lastProbeAt moves on
	EffectPoll                 // Google will not push usefully: poll mode
	EffectUnwatch              // a calendar nobody follows: unwatched
	EffectUnenroll             // an identity or a domain: unenrolled
	EffectDeny                 // Google refuses the grant: its identity and calendars get StatusOf(answer); a domain DomainStatusOf(answer)
	EffectClear                // a domain whose directory was refused answered: active again
	EffectActivate             // listed (or enrolled) and readable in full: active
	EffectFreeBusy             // readable as free/busy only: free_busy_only, not synced
	EffectHandOver             // its reader lost it: the next best reader takes over (full resync)
)

func (e Effect) String() string {
	return [...]string{"none", "revoke", "count_not_found", "reactivate", "probe_missed", "poll", "unwatch", "unenroll", "deny", "clear", "activate", "free_busy", "hand_over"}[e]
}

// Decision is a transition: what to write and what the caller does next.
type Decision struct {
	Effect Effect
	Next   Next
}

// Decide is the transition table: a target of kind k in status, answered a
// on op. Pure: Owner does the writing.
func Decide(k Kind, status string, op Op, a Answer) Decision {
	followed := status != store.StatusUnwatched && status != store.StatusUnenrolled
	switch a {
	case AnswerUnwatch:
		if k != KindCalendar || status == store.StatusUnwatched {
			return Decision{EffectNone, Skip}
		}
		return Decision{EffectUnwatch, Continue}
	case AnswerEnroll:
		if status == store.StatusActive {
			return Decision{EffectNone, Continue}
		}
		// Whatever it was (unwatched, left, a problem another grant had):
		// a grant that lists it reads it now.
		return Decision{EffectActivate, Continue}
	case AnswerFreeBusyOnly:
		if k != KindCalendar || !followed || status == store.StatusFreeBusyOnly {
			return Decision{EffectNone, Skip}
		}
		// Never mirrored as if complete: busy blocks are not events.
		return Decision{EffectFreeBusy, Skip}
	case AnswerReaderLost:
		if k != KindCalendar || !followed {
			return Decision{EffectNone, Skip}
		}
		// Retried at once with the new reader (a redelivery, the next run).
		return Decision{EffectHandOver, RetryLater}
	case AnswerUnenroll:
		switch {
		case k == KindCalendar && status != store.StatusUnwatched:
			return Decision{EffectUnwatch, Continue}
		case k != KindCalendar && status != store.StatusUnenrolled:
			return Decision{EffectUnenroll, Continue}
		}
		return Decision{EffectNone, Skip}
	}
	if !followed {
		// Nobody follows it: whatever Google says changes nothing (a
		// revocation racing an unenrollment leaves it unenrolled).
		return Decision{EffectNone, Skip}
	}
	switch k {
	case KindCalendar:
		return decideCalendar(status, op, a)
	case KindIdentity:
		switch {
		case a == AnswerUnauthorizedFresh:
			return Decision{EffectNone, Defer}
		case a == AnswerRevoked, a == AnswerDenied:
			// Reading its list is what an identity is for: any refusal ends it.
			return Decision{EffectRevoke, Stop}
		case a.IsAuth():
			return Decision{EffectDeny, Stop}
		}
	case KindDomain:
		switch {
		case a == AnswerUnauthorizedFresh:
			return Decision{EffectNone, RetryLater} // the next directory run tries again
		case a.IsAuth() && DomainStatusOf(a) == status:
			return Decision{EffectNone, Stop} // refused as before: nothing new to record
		case a.IsAuth():
			// The admin's grant: nothing to diff with; the domain records
			// why until a diff reads the directory again.
			return Decision{EffectDeny, Stop}
		case a == AnswerOK && status != store.StatusActive:
			return Decision{EffectClear, Continue}
		}
	}
	if a == AnswerOK {
		return Decision{EffectNone, Continue}
	}
	return Decision{EffectNone, RetryLater}
}

func decideCalendar(status string, op Op, a Answer) Decision {
	switch a {
	case AnswerRevoked:
		return Decision{EffectRevoke, Skip}
	case AnswerUnauthorized, AnswerScopeMissing, AnswerAPIDisabled, AnswerAdminPolicy, AnswerClientDisabled:
		// Acknowledged, never retried fast: a person must act first.
		return Decision{EffectDeny, Skip}
	case AnswerUnauthorizedFresh:
		return Decision{EffectNone, Defer}
	case AnswerOK:
		if status == store.StatusNotFound && op == OpProbe {
			return Decision{EffectReactivate, Continue}
		}
		if status != store.StatusActive {
			return Decision{EffectNone, Skip}
		}
		return Decision{EffectNone, Continue}
	case AnswerNotFound:
		switch {
		case status == store.StatusNotFound && op == OpProbe:
			return Decision{EffectProbeMissed, Skip}
		case status == store.StatusActive:
			// One 404 is not proof (a calendar shared a moment ago): the
			// streak decides, whichever call met it.
			return Decision{EffectCountNotFound, Probe}
		}
		return Decision{EffectNone, Skip}
	case AnswerPushNotSupported:
		if op == OpEventsWatch && status == store.StatusActive {
			return Decision{EffectPoll, Continue}
		}
	case AnswerNoDeletions:
		if status == store.StatusActive {
			return Decision{EffectPoll, Continue}
		}
		return Decision{EffectNone, Skip}
	}
	return Decision{EffectNone, RetryLater}
}

// NextStreak is the 404 streak rule: what one more 404 makes of calendar c's
// streak under policy p. Only an active calendar counts (zero otherwise: its
// streak is left alone); the first 404 starts the streak, and a streak of
// p.Attempts 404s spanning p.After makes the calendar not_found.
// store.RecordNotFound writes what it says.
func NextStreak(p store.NotFoundPolicy, c store.Calendar, now time.Time) store.NotFoundStreak {
	if c.Status != store.StatusActive {
		return store.NotFoundStreak{}
	}
	if p.Attempts <= 0 {
		p.Attempts = store.DefaultNotFoundPolicy.Attempts
	}
	out := store.NotFoundStreak{Count: c.NotFoundCount + 1, Since: c.NotFoundSince}
	if c.NotFoundCount == 0 || out.Since.IsZero() {
		out.Since = now
	}
	out.Marked = out.Count >= p.Attempts && now.Sub(out.Since) >= p.After
	return out
}
