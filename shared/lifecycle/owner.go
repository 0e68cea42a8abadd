package lifecycle

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
)

// ChannelStopper stops a calendar's live channels (channels.Manager). With a
// revoked grant Google's channels.stop usually fails too; the records are
// ended anyway.
type ChannelStopper interface {
	StopCalendar(ctx context.Context, cal store.Calendar, reason string) (stopped int, err error)
}

// ClientCache drops the cached Calendar client of a grant
// (calclient.Factory), so a dead grant's token is not used again.
type ClientCache interface {
	Forget(g store.Grant)
}

// Owner decides and records every state transition of calendars,
// identities and domains: the one place that does, for the SyncWorker,
// RenewChannels, enrollment and the CLI alike. Safe for concurrent use;
// every write is idempotent, so reports may repeat and race.
type Owner struct {
	Store *store.Store
	// Clients, if set, forgets a dead grant's cached client.
	Clients ClientCache
	// Stopper stops the channels of calendars that stop being followed; nil:
	// only the records are ended (store.EndChannel), no Calendar API call.
	Stopper ChannelStopper
	// NotFound says when a 404 streak means a calendar is gone (zero:
	// store.DefaultNotFoundPolicy).
	NotFound store.NotFoundPolicy
	Logger   *slog.Logger // nil: logging.FromContext(ctx)
	// Announcer publishes each transition on the lifecycle topic (nil: none).
	Announcer Announcer
	// Retention is how long stopped channel records are kept (default 3 days).
	Retention time.Duration
	// DelegationGrace is how long after a delegated identity (or its
	// calendar) was enrolled an unauthorized_client is taken for a
	// delegation Google does not have yet (it takes up to 24 h) and
	// deferred, not made a status (zero: DefaultDelegationGrace; negative:
	// none).
	DelegationGrace time.Duration
}

// DefaultDelegationGrace is Google's "up to 24 hours" for a change of
// domain-wide delegation to take effect.
const DefaultDelegationGrace = 24 * time.Hour

// Target is what a report is about. Build it with Calendar, Identity or
// Domain.
type Target struct {
	Kind Kind
	Key  string
	// Calendar (KindCalendar) or Identity (KindIdentity) as the caller read
	// it: its status is the transition's starting point.
	Calendar store.Calendar
	Identity store.Identity
	Domain   string // KindDomain: the domain name
	// DomainStatus (KindDomain) is the domain's status as the caller read
	// it ("": active).
	DomainStatus string
	// LeaseOwner, if it holds the calendar's lease, has it released with
	// the transition (the SyncWorker's).
	LeaseOwner string
}

// Calendar is the target of a calendar's events.
func Calendar(key string, c store.Calendar) Target {
	return Target{Kind: KindCalendar, Key: key, Calendar: c}
}

// Identity is the target of an identity's calendar list.
func Identity(key string, id store.Identity) Target {
	return Target{Kind: KindIdentity, Key: key, Identity: id}
}

// Domain is the target of a Workspace domain's directory.
func Domain(d store.Domain) Target {
	return Target{Kind: KindDomain, Key: store.DomainKey(d.Domain), Domain: d.Domain, DomainStatus: d.Status}
}

func (t Target) status() string {
	switch t.Kind {
	case KindCalendar:
		return t.Calendar.Status
	case KindIdentity:
		return t.Identity.Status
	}
	if t.DomainStatus != "" {
		return t.DomainStatus
	}
	return store.StatusActive
}

// Result is what a report did.
type Result struct {
	Decision
	Changed bool                 // a status (or the streak) was written
	Streak  store.NotFoundStreak // EffectCountNotFound: the streak now
}

// Report records what Google answered on op for t (err nil: success): it
// decides the transition, writes it, logs it once and says what to do next.
// An error means the transition could not be written: retry later.
func (o *Owner) Report(ctx context.Context, t Target, op Op, err error) (Result, error) {
	a := Classify(err)
	if a == AnswerUnauthorized && o.fresh(ctx, t) {
		a = AnswerUnauthorizedFresh
	}
	if (a == AnswerDenied || a == AnswerNotFound) && op != OpProbe && t.Kind == KindCalendar && len(otherReaders(t.Calendar)) > 0 {
		// Another grant lists it: no need to wait out a 404 streak or a
		// 403 with this one.
		a = AnswerReaderLost
	}
	return o.apply(ctx, t, op, a, err, "")
}

// fresh: t is read with a delegation enrolled less than DelegationGrace
// ago (its identity's enrollment; else the calendar's).
func (o *Owner) fresh(ctx context.Context, t Target) bool {
	grace := o.DelegationGrace
	if grace == 0 {
		grace = DefaultDelegationGrace
	}
	g := grantOf(t)
	if grace < 0 || g.AuthMode != store.AuthDelegation {
		return false
	}
	since := t.Identity.CreatedAt
	if t.Kind != KindIdentity {
		since = t.Calendar.CreatedAt
		if id, err := o.Store.GetIdentity(ctx, g.IdentityKey()); err == nil && !id.CreatedAt.IsZero() {
			since = id.CreatedAt
		}
	}
	return !since.IsZero() && time.Since(since) < grace
}

// Unwatch records that nobody follows a calendar any more (an operator's
// unwatch), with why.
func (o *Owner) Unwatch(ctx context.Context, t Target, reason string) (Result, error) {
	return o.apply(ctx, t, OpOperator, AnswerUnwatch, nil, reason)
}

// Unenroll records that an identity or a domain (or a calendar one of
// them enrolled) left enrollment, with why.
func (o *Owner) Unenroll(ctx context.Context, t Target, reason string) (Result, error) {
	return o.apply(ctx, t, OpOperator, AnswerUnenroll, nil, reason)
}

// Poll records that a calendar is polled: pushNotSupported (reported as
// an events.watch answer) or mode store.PollFull for a calendar whose
// deletions Google does not report incrementally.
func (o *Owner) Poll(ctx context.Context, t Target, mode, reason string) (Result, error) {
	a := AnswerPushNotSupported
	if mode == store.PollFull {
		a = AnswerNoDeletions
	}
	return o.apply(ctx, t, OpEventsWatch, a, nil, reason)
}

func (o *Owner) apply(ctx context.Context, t Target, op Op, a Answer, cause error, reason string) (Result, error) {
	res := Result{Decision: Decide(t.Kind, t.status(), op, a)}
	log := o.log(ctx).With(logging.KeyOperation, string(op))
	switch t.Kind {
	case KindCalendar:
		log = log.With(logging.KeyCalendarKey, t.Key, logging.KeyCalendarID, t.Calendar.CalendarID)
	case KindIdentity:
		log = log.With(logging.KeyIdentityKey, t.Key)
	case KindDomain:
		log = log.With(logging.KeyDomain, t.Domain)
	}
	var err error
	switch res.Effect {
	case EffectRevoke:
		res.Changed, err = o.revoke(ctx, t, op, cause)
		o.retryHandedOver(ctx, t, &res)
	case EffectDeny:
		if t.Kind == KindDomain {
			if res.Changed, err = o.denyDomain(ctx, log, t, op, cause, DomainStatusOf(a)); err == nil && res.Changed {
				o.announceAuthProblem(ctx, t, "", DomainStatusOf(a), reasonOf(op, cause))
			}
			break
		}
		res.Changed, err = o.markGrant(ctx, t, op, cause, StatusOf(a))
		o.retryHandedOver(ctx, t, &res)
	case EffectClear:
		if res.Changed, err = o.Store.ClearDomainStatus(ctx, t.Domain); err == nil && res.Changed {
			log.InfoContext(ctx, "domain's directory read again; active", logging.KeyEvent, logging.EventDomainBack,
				logging.KeyTarget, t.Kind.String(), "previousStatus", t.status())
			o.announceTarget(ctx, t, messages.LifecycleDomainRestored, messages.Lifecycle{Status: store.StatusActive})
		}
	case EffectCountNotFound:
		res.Streak, err = o.Store.RecordNotFound(ctx, t.Key, t.LeaseOwner, string(op), func(c store.Calendar, now time.Time) store.NotFoundStreak {
			return NextStreak(o.policy(), c, now)
		})
		if err == nil {
			res.Changed = true
			o.logStreak(ctx, log, res.Streak, cause)
			if res.Streak.Marked {
				res.Next = Skip // gone now: probed again daily
				o.announceTarget(ctx, t, messages.LifecycleCalendarNotFound, messages.Lifecycle{Status: store.StatusNotFound,
					Detail: "Google answers 404 for this calendar (deleted, or no longer shared with the grant); tried again daily"})
			}
		}
	case EffectReactivate:
		res.Changed, err = o.Store.ProbeResult(ctx, t.Key, true)
		switch {
		case err != nil:
		case res.Changed:
			log.InfoContext(ctx, "not_found calendar found again; active", logging.KeyEvent, logging.EventCalendarBack)
			o.announceTarget(ctx, t, messages.LifecycleCalendarRestored, messages.Lifecycle{Status: store.StatusActive})
		default:
			res.Next = Skip // no longer not_found: another run got there first
		}
	case EffectProbeMissed:
		// Not a transition (it stays not_found): only lastProbeAt moves on.
		_, err = o.Store.ProbeResult(ctx, t.Key, false)
	case EffectPoll:
		mode, why := store.PollIncremental, store.PollReasonPushNotSupported
		if a == AnswerNoDeletions {
			mode, why = store.PollFull, store.PollReasonNoDeletions
		}
		if reason != "" {
			why = reason
		}
		if err = o.Store.SetPollMode(ctx, t.Key, mode, why); err == nil {
			res.Changed = true
			log.InfoContext(ctx, "Google will not push for this calendar usefully; it is polled", logging.KeyEvent, logging.EventPollOnly,
				logging.KeyPollMode, mode, logging.KeyReason, why)
			o.announceTarget(ctx, t, messages.LifecycleCalendarPolled, messages.Lifecycle{Status: t.status(), Reason: why})
		}
	case EffectUnwatch:
		if err = o.Store.SetStatus(ctx, t.Key, store.StatusUnwatched, reason, t.LeaseOwner); err == nil {
			res.Changed = true
			log.InfoContext(ctx, "calendar no longer followed; unwatched", logging.KeyEvent, logging.EventUnwatched, logging.KeyReason, reason)
			o.announceTarget(ctx, t, messages.LifecycleCalendarRemoved, messages.Lifecycle{Status: store.StatusUnwatched, Detail: reason})
		}
	case EffectHandOver:
		var handed bool
		if handed, err = o.handOver(ctx, t.Key, t.Calendar, reasonOf(op, cause)); err == nil && !handed {
			res.Next = RetryLater // nobody else reads it (any more): the answer's usual path next time
		}
		res.Changed = handed
	case EffectFreeBusy:
		why := reason
		if why == "" {
			why = string(op) + ": the grant sees free/busy only"
		}
		if err = o.Store.SetStatus(ctx, t.Key, store.StatusFreeBusyOnly, why, t.LeaseOwner); err == nil {
			res.Changed = true
			err = o.stopChannels(ctx, t.Key, t.Calendar, store.StatusFreeBusyOnly)
			log.WarnContext(ctx, "calendar readable as free/busy only; not synced (busy blocks are not events)", logging.KeyEvent,
				logging.EventFreeBusyOnly, logging.KeyReason, why)
			o.announceTarget(ctx, t, messages.LifecycleCalendarFreeBusy, messages.Lifecycle{Status: store.StatusFreeBusyOnly, Detail: why})
		}
	case EffectUnenroll:
		err = o.unenroll(ctx, t, reason)
		if err == nil {
			res.Changed = true
			log.InfoContext(ctx, t.Kind.String()+" unenrolled", logging.KeyEvent, logging.EventUnenrolled, logging.KeyTarget, t.Kind.String(),
				logging.KeyReason, reason)
			o.announceUnenrolled(ctx, t, reason)
		}
	}
	if a == AnswerUnauthorizedFresh && res.Next == Defer {
		log.WarnContext(ctx, "delegation not authorised (yet): Google may take up to 24 h to apply a new delegation; deferred, a status only after the grace period",
			logging.KeyEvent, logging.EventDelegationPending, logging.KeySubject, grantOf(t).Subject, logging.KeyError, errString(cause))
	}
	if err != nil {
		return res, fmt.Errorf("lifecycle: %s %s after %s %s: %w", res.Effect, t.Key, op, a, err)
	}
	return res, nil
}

// denyDomain records why a domain's directory cannot be read. Only the run
// that changed the status logs its ERROR (event: the status, with the
// advice); the same refusal again, in any instance, is silent.
func (o *Owner) denyDomain(ctx context.Context, log *slog.Logger, t Target, op Op, cause error, status string) (bool, error) {
	changed, err := o.Store.DenyDomain(ctx, t.Domain, status, reasonOf(op, cause))
	if err == nil && changed {
		log.ErrorContext(ctx, "Google refuses the domain's directory: domain marked "+status+" (its users and rooms stay as they are; the next directory run tries again); "+Advice(status),
			logging.KeyEvent, status, logging.KeyAdvice, Advice(status), logging.KeyTarget, t.Kind.String(), logging.KeyError, errString(cause))
	}
	return changed, err
}

func (o *Owner) unenroll(ctx context.Context, t Target, reason string) error {
	if t.Kind == KindDomain {
		return o.Store.SetDomainStatus(ctx, t.Domain, store.StatusUnenrolled)
	}
	return o.Store.SetIdentityStatus(ctx, t.Key, store.StatusUnenrolled, reason)
}

// logStreak logs a counted 404: ERROR once the streak set not_found.
func (o *Owner) logStreak(ctx context.Context, log *slog.Logger, s store.NotFoundStreak, cause error) {
	if s.Marked {
		log.ErrorContext(ctx, "calendar not found, persistently; set to not_found (probed again daily)", logging.KeyEvent, logging.EventNotFound,
			logging.KeyNotFoundCount, s.Count, logging.KeyError, errString(cause))
		return
	}
	log.WarnContext(ctx, "calendar answered 404; still active until the 404s persist", logging.KeyEvent, logging.EventNotFoundOnce,
		logging.KeyNotFoundCount, s.Count, logging.KeyError, errString(cause))
}

func calendarKey(t Target) string {
	if t.Kind == KindCalendar {
		return t.Key
	}
	return ""
}

func (o *Owner) log(ctx context.Context) *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return logging.FromContext(ctx)
}

// policy is the 404 policy, DefaultNotFoundPolicy when unset.
func (o *Owner) policy() store.NotFoundPolicy {
	if o.NotFound == (store.NotFoundPolicy{}) {
		return store.DefaultNotFoundPolicy
	}
	return o.NotFound
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// reasonOf is the status reason of a dead grant met on op.
func reasonOf(op Op, cause error) string {
	switch {
	case cause == nil:
		return string(op) + ": invalid_grant"
	case calclient.Reason(cause) != "":
		return fmt.Sprintf("%s: %s: %v", op, calclient.Reason(cause), cause)
	}
	return fmt.Sprintf("%s: %v", op, cause)
}
