package syncer

// Errors: how each is classified, retried in process, and finally answered.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/cenkalti/backoff/v5"
)

// ErrRetryLater: the notification cannot be settled now (see
// store.OutcomeRetryLater); have Pub/Sub deliver it again.
var ErrRetryLater = errors.New("syncer: the calendar's lease is held for this very message; retry later")

// Kind is how the worker reacts to an error.
type Kind int

// Error kinds.
const (
	// KindOther: unexpected (a bug, a 400): redelivered by Pub/Sub, then dead-lettered.
	KindOther Kind = iota
	// KindTransient: retried in process with jittered exponential backoff up
	// to the retry budget, then redelivered by Pub/Sub.
	KindTransient
	// KindQuota: 403 quotaExceeded; quick retries do not cure it: redelivered.
	KindQuota
	// KindSyncTokenGone: any 410 (fullSyncRequired or not): drop the token,
	// full resync with the sweep. Only a full listing that still gets one
	// counts as the calendar being gone.
	KindSyncTokenGone
	// KindNotFound: 404. One 404 is not proof (Google answers some for a
	// while after a calendar is shared): a streak is counted and only a
	// persistent one sets not_found (shared/lifecycle); acknowledged.
	KindNotFound
	// KindAuthDenied: a refusal Google documents (invalid_grant, 401,
	// unauthorized_client, a scope missing, an API disabled, an admin
	// policy): shared/lifecycle sets its status and the message is
	// acknowledged, or (a fresh delegation) the sync is deferred; never
	// dead-lettered.
	KindAuthDenied
	// KindLeaseLost: the lease was taken, or could not be renewed in time:
	// stop; ack only if a sync covers the message (see leaseLost).
	KindLeaseLost
	// KindRateLimited: Google said slow down (403 rateLimitExceeded /
	// userRateLimitExceeded, 429), or calsync's shared call budget is spent:
	// backed off in process, then the sync is deferred (a delayed request;
	// the message is acknowledged, so nothing is ever dead-lettered for it).
	KindRateLimited
)

func (k Kind) String() string {
	return [...]string{"other", "transient", "quota", "sync_token_gone", "not_found", "auth_denied", "lease_lost", "rate_limited"}[k]
}

// Classify sorts an error from the Calendar API, OAuth, Firestore or Pub/Sub.
// Calendar and OAuth errors are read with shared/calclient's classifiers, so
// the worker and RenewChannels agree on what is transient or permanent.
// Bodies Google's front ends send instead of JSON (an HTML 502 page, a body
// without a reason) are googleapi.Errors with the status and no reason: the
// status decides.
func Classify(err error) Kind {
	var ge *googleapi.Error
	var re *oauth2.RetrieveError
	switch {
	case err == nil:
		return KindOther
	case errors.Is(err, store.ErrLeaseLost):
		return KindLeaseLost
	case calclient.DenialOf(err) != "", calclient.IsFreeBusyOnly(err):
		// Every refusal Google documents (scope, API, policy, delegation):
		// the lifecycle owner decides, never a dead letter.
		return KindAuthDenied
	case calclient.IsGone(err):
		return KindSyncTokenGone
	case calclient.IsNotFound(err):
		return KindNotFound
	case calclient.IsRateLimited(err):
		return KindRateLimited
	case calclient.IsQuotaExceeded(err):
		return KindQuota
	case calclient.IsRetryable(err):
		return KindTransient
	case errors.As(err, &ge), errors.As(err, &re):
		return KindOther // any other API or token-endpoint answer is not cured by retrying
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// Our own context ended (or a server deadline passed): worth another try
		// if there is time left; the retry loop stops when the context is done.
		return KindTransient
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.OK && s.Code() != codes.Unknown {
		switch s.Code() {
		case codes.Aborted, codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Internal:
			return KindTransient
		}
		return KindOther
	}
	return KindOther
}

// fail handles a session that stops before its work is done. Nothing is
// acknowledged unless a sync covers it, as Firestore says (store.LetGo): a
// completed round, or a live holder that took the calendar over and goes
// round for the dirty flag, or a sync this worker asked for itself.
// Otherwise the error makes Pub/Sub redeliver the message; LetGo left the
// calendar dirty, so the redelivery syncs even if its push was recorded.
func (s *Syncer) fail(ctx context.Context, log *slog.Logger, key string, cal store.Calendar, hl *sessionLease, err error) error {
	s.letRunOut(log, hl)
	lease := hl.lease
	// The request context may be done: clean up on a short one of our own
	// that keeps its values (the logger, the session).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	kind := Classify(err)
	log = log.With(logging.KeyStatus, calclient.HTTPStatus(err))
	switch kind {
	case KindAuthDenied:
		if serr := s.settle(ctx, log, key, cal, lease, kind, err); !errors.Is(serr, errDeferred) {
			return serr
		}
		// A fresh delegation Google may not have yet: deferred below.
	case KindNotFound, KindSyncTokenGone:
		// A 410 reaching here came from a full listing (an incremental one
		// turns into a full one): the calendar itself is gone, like a 404.
		return s.settle(ctx, log, key, cal, lease, kind, err)
	}
	n := sessionOf(ctx)
	cv, lerr := retry(ctx, s, func() (store.Cover, error) { return s.o.Store.LetGo(ctx, key, lease, requestOf(n)) })
	switch {
	case lerr != nil:
		err = errors.Join(err, lerr)
	case kind == KindLeaseLost:
		return s.leaseLost(ctx, log, key, n, cv, err)
	case (kind == KindRateLimited || kind == KindAuthDenied) && !cv.Held:
		derr := s.deferSync(ctx, log, key, kind, err)
		if derr == nil {
			return nil
		}
		err = errors.Join(err, derr)
	}
	log.Error("sync failed; Pub/Sub will redeliver", logging.KeyEvent, logging.EventSyncError,
		logging.KeyReason, kind.String(), logging.KeyError, err.Error())
	return fmt.Errorf("sync %s: %w", key, err)
}

// leaseLost answers for a session stopped because its lease ran out (the
// heartbeat was late) or was taken. A lease that merely ran out is no new
// holder: only a completed round, a live holder of another message (the
// calendar is left dirty for it) or a sync asked for here covers the message.
func (s *Syncer) leaseLost(ctx context.Context, log *slog.Logger, key string, n messages.Notification, cv store.Cover, cause error) error {
	attrs := []any{logging.KeyEvent, logging.EventLeaseLost, logging.KeyReason, KindLeaseLost.String(), logging.KeyError, cause.Error()}
	switch {
	case !cv.Pending:
		log.Warn("lease lost during sync; a completed round covers this notification; acknowledged", append(attrs, logging.KeyCoveredBy, "completed_round")...)
		return nil
	case cv.Holder != "":
		log.Warn("lease lost during sync to a live holder; the calendar is left dirty, so it goes round for this notification; acknowledged",
			append(attrs, logging.KeyCoveredBy, "live_holder")...)
		return nil
	case cv.Held:
		// Acknowledging would acknowledge that session's message too.
		log.Warn("lease lost during sync to a duplicate delivery of this message; Pub/Sub will redeliver it",
			append(attrs, logging.KeyCoveredBy, "redelivery")...)
		return fmt.Errorf("sync %s stopped: %w", key, cause)
	case n.ResourceState != messages.StatePurge && s.o.Requests != nil:
		err := s.askSync(ctx, key)
		if err == nil {
			log.Warn("lease lost during sync and no other holder; the calendar is left dirty and a sync asked for; acknowledged",
				append(attrs, logging.KeyCoveredBy, "sync_asked")...)
			return nil
		}
		cause = errors.Join(cause, fmt.Errorf("ask for a sync: %w", err))
		attrs[len(attrs)-1] = cause.Error()
	}
	log.Warn("lease lost during sync and no other holder; the calendar is left dirty; Pub/Sub will redeliver",
		append(attrs, logging.KeyCoveredBy, "redelivery")...)
	return fmt.Errorf("sync %s stopped: %w", key, cause)
}

// settle hands an answer that decides the calendar's fate (a dead grant, a
// 404, a 410 on a full listing) to the lifecycle owner, which records the
// transition and logs it; the lease is let go. A 404 that starts a streak
// asks for a re-probe a little later (RenewChannels asks every run while the
// streak lasts). Acknowledged unless the transition could not be written.
func (s *Syncer) settle(ctx context.Context, log *slog.Logger, key string, cal store.Calendar, lease store.Lease, kind Kind, err error) error {
	t := lifecycle.Calendar(key, cal)
	t.LeaseOwner = lease.Owner
	res, lerr := s.o.Lifecycle.Report(ctx, t, lifecycle.OpEventsList, err)
	if lerr == nil && res.Next == lifecycle.Defer {
		return errDeferred // the caller lets the lease go and defers
	}
	if res.Effect != lifecycle.EffectCountNotFound || lerr != nil {
		// Recording a 404 lets the lease go with it; nothing else does.
		if rerr := s.o.Store.Release(ctx, key, lease, false); rerr != nil {
			lerr = errors.Join(lerr, rerr)
		}
	}
	if lerr == nil && res.Next == lifecycle.RetryLater {
		lerr = err
	}
	if lerr != nil {
		log.Error("could not settle what Google answered; Pub/Sub will redeliver", logging.KeyEvent, logging.EventSyncError,
			logging.KeyReason, kind.String(), logging.KeyError, errors.Join(err, lerr).Error())
		return fmt.Errorf("settle %s of %s: %w", kind, key, lerr)
	}
	if res.Next == lifecycle.Probe && res.Streak.Count == 1 && s.o.Requests != nil {
		if perr := s.ask(ctx, messages.Delayed(key, s.now().Add(s.o.NotFoundRetry), false, 0)); perr != nil {
			log.Warn("could not ask for a re-probe; RenewChannels will", logging.KeyError, perr.Error())
		}
	}
	return nil
}

// errDeferred: settle met an answer to defer (lifecycle.Defer).
var errDeferred = errors.New("deferred")

// deferSync hands a rate-limited calendar (or one whose fresh delegation
// Google does not have yet) over to a delayed request: the
// lease was let go with the calendar dirty (fail), and a reconcile request that waits
// until the budget has room (or an exponential backoff, for Google's 403/429)
// is published; the message is acknowledged. Pub/Sub never sees a failure,
// so nothing is dead-lettered however long the quota stays spent.
func (s *Syncer) deferSync(ctx context.Context, log *slog.Logger, key string, kind Kind, cause error) error {
	if s.o.Requests == nil {
		return errors.New("no request publisher to defer with")
	}
	attempt := sessionOf(ctx).Attempt + 1
	now := s.now()
	at, budget := calclient.IsBudgetExhausted(cause)
	if !budget {
		at = now.Add(min(s.o.MaxDefer, 10*time.Second<<min(attempt-1, 6)))
	}
	// Spread the deferred calendars, wider at each deferral: many deferred
	// at once (a burst over the quota) would otherwise all come back in the
	// instant the budget frees and be deferred again, together.
	at = at.Add(rand.N(min(s.o.MaxDefer/4, 5*time.Second<<min(attempt-1, 6))))
	if limit := now.Add(s.o.MaxDefer); at.After(limit) {
		at = limit // asked again then, and deferred again if need be
	}
	if err := s.ask(ctx, messages.Delayed(key, at, false, attempt)); err != nil {
		return err
	}
	log.Warn(kind.String()+"; sync deferred, message acknowledged", logging.KeyEvent, logging.EventSyncDeferred,
		logging.KeyReason, kind.String(), logging.KeyRetryInMs, at.Sub(now).Milliseconds(), logging.KeyAttempt, attempt,
		logging.KeyError, cause.Error())
	return nil
}

// askSync asks for a sync of the calendar now (a reconcile request): the
// continuation of a session, or a session's cover when it stopped.
func (s *Syncer) askSync(ctx context.Context, key string) error {
	return s.ask(ctx, messages.Notification{ResourceState: messages.StateReconcile, CalendarKey: key, ReceivedAt: s.now()})
}

// ask publishes one of calsync's own requests (continuation, deferral,
// follow-up, re-probe) on the notifications topic.
func (s *Syncer) ask(ctx context.Context, n messages.Notification) error {
	data, attrs, err := n.Encode()
	if err != nil {
		return err
	}
	return s.try(ctx, func() error { return s.o.Requests.Publish(ctx, data, attrs, "") })
}

type sessionKey struct{}

// sessionOf is the notification whose session ctx belongs to.
func sessionOf(ctx context.Context) messages.Notification {
	n, _ := ctx.Value(sessionKey{}).(messages.Notification)
	return n
}

// retry runs op with jittered exponential backoff while it fails with a
// transient error, within the retry budget.
func retry[T any](ctx context.Context, s *Syncer, op func() (T, error)) (T, error) {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     s.o.RetryInitial,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         30 * time.Second,
	}
	return backoff.Retry(ctx, func() (T, error) {
		v, err := op()
		if err == nil {
			return v, nil
		}
		switch Classify(err) {
		case KindTransient:
		case KindRateLimited:
			if _, own := calclient.IsBudgetExhausted(err); own {
				// calsync's budget says when: no point asking before.
				return v, backoff.Permanent(err)
			}
		default:
			return v, backoff.Permanent(err)
		}
		return v, err
	}, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(s.o.RetryBudget))
}

// try is retry for operations without a result.
func (s *Syncer) try(ctx context.Context, op func() error) error {
	_, err := retry(ctx, s, func() (struct{}, error) { return struct{}{}, op() })
	return err
}
