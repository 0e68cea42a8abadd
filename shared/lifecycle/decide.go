// Package lifecycle owns the state of calendars, identities and domains:
// every engine reports what Google answered (or what an operator or a
// listing decided), for which target and which operation; Decide says what
// that means (the transition table, pure), and Owner writes it through
// shared/store, logs it once and tells the caller what to do next.
// See README.md.
package lifecycle

import (
	"net/http"

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

// Answers. A later issue splits AnswerDenied into scope missing, API
// disabled and admin policy; each then gets its own rows in Decide.
const (
	AnswerOK       Answer = iota
	AnswerRevoked         // invalid_grant, unauthorized_client, 401: the grant is dead
	AnswerDenied          // another 401/403 that no retry cures (a scope, a policy, an API off)
	AnswerNotFound        // 404 (or a 410 on a full listing): perhaps gone, perhaps not yet shared
	AnswerPushNotSupported
	AnswerNoDeletions // Google does not report its deletions incrementally (birthdays)
	AnswerUnwatch     // an operator stopped following a calendar
	AnswerUnenroll    // an identity, a domain or a calendar left enrollment
	AnswerFailed      // anything else: transient or unknown, the caller's retry path
)

func (a Answer) String() string {
	return [...]string{"ok", "revoked", "denied", "not_found", "push_not_supported", "no_deletions", "unwatch", "unenroll", "failed"}[a]
}

// Classify sorts a Calendar, Directory or token-endpoint error.
func Classify(err error) Answer {
	switch {
	case err == nil:
		return AnswerOK
	case calclient.IsAuthRevoked(err):
		return AnswerRevoked
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

// IsAuth: the grant does not let calsync read (revoked or denied).
func (a Answer) IsAuth() bool { return a == AnswerRevoked || a == AnswerDenied }

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
)

func (n Next) String() string {
	return [...]string{"continue", "skip", "probe", "retry_later", "stop"}[n]
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
)

func (e Effect) String() string {
	return [...]string{"none", "revoke", "count_not_found", "reactivate", "probe_missed", "poll", "unwatch", "unenroll"}[e]
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
		if a.IsAuth() {
			// Reading its list is what an identity is for: any refusal ends it.
			return Decision{EffectRevoke, Stop}
		}
	case KindDomain:
		if a.IsAuth() {
			return Decision{EffectNone, Stop} // the admin's grant: nothing to diff with
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
