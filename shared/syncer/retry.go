package syncer

// Errors: how each is classified, retried in process, and finally answered.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/logging"
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
	// KindSyncTokenGone: 410 fullSyncRequired: do a full resync.
	KindSyncTokenGone
	// KindNotFound: the calendar itself is gone (404, 410 deleted): status not_found, ack.
	KindNotFound
	// KindAuthRevoked: invalid_grant or 401: status auth_revoked, ack.
	KindAuthRevoked
	// KindLeaseLost: another worker took the calendar over: stop, ack.
	KindLeaseLost
)

func (k Kind) String() string {
	return [...]string{"other", "transient", "quota", "sync_token_gone", "not_found", "auth_revoked", "lease_lost"}[k]
}

// Classify sorts an error from the Calendar API, OAuth, Firestore or Pub/Sub.
// Calendar and OAuth errors are read with shared/calclient's classifiers, so
// the worker and RenewChannels agree on what is transient or permanent.
func Classify(err error) Kind {
	var ge *googleapi.Error
	var re *oauth2.RetrieveError
	switch {
	case err == nil:
		return KindOther
	case errors.Is(err, store.ErrLeaseLost):
		return KindLeaseLost
	case calclient.IsAuthRevoked(err):
		return KindAuthRevoked
	case calclient.IsGone(err) && calclient.Reason(err) == "fullSyncRequired":
		return KindSyncTokenGone
	case calclient.IsGone(err), calclient.IsNotFound(err):
		return KindNotFound
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

// fail handles a round that could not complete. It returns nil (ack) for
// permanent conditions and an error (redeliver) otherwise.
func (s *Syncer) fail(ctx context.Context, log *slog.Logger, key string, cal store.Calendar, lease store.Lease, err error) error {
	// The request context may be done: clean up on a short one of our own
	// that keeps its values (the logger).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	kind := Classify(err)
	switch kind {
	case KindLeaseLost:
		// Another worker took over after our lease expired (or will: we
		// could not renew it in time); its sync starts after this
		// notification, so it covers it. Nothing of ours was written after
		// the takeover: every write is fenced.
		log.Warn("lease lost during sync; the next holder covers this notification", logging.KeyEvent, logging.EventLeaseLost,
			logging.KeyReason, kind.String(), logging.KeyError, err.Error())
		return nil
	case KindAuthRevoked:
		rerr := s.o.Revoker.Revoked(ctx, cal, err)
		if lerr := s.o.Store.Release(ctx, key, lease, false); lerr != nil {
			rerr = errors.Join(rerr, lerr)
		}
		if rerr != nil {
			log.Error("could not record a revoked grant; Pub/Sub will redeliver", logging.KeyEvent, logging.EventSyncError,
				logging.KeyReason, kind.String(), logging.KeyError, rerr.Error())
			return fmt.Errorf("record auth_revoked: %w", rerr)
		}
		return nil
	case KindNotFound:
		serr := s.o.Store.SetStatus(ctx, key, store.StatusNotFound, err.Error(), lease.Owner)
		log.Error("calendar not found; calendar set to not_found", logging.KeyEvent, logging.EventSyncError,
			logging.KeyReason, kind.String(), logging.KeyError, err.Error())
		if serr != nil {
			return fmt.Errorf("record not_found: %w", serr)
		}
		return nil
	}
	if rerr := s.o.Store.Release(ctx, key, lease, false); rerr != nil {
		err = errors.Join(err, fmt.Errorf("release lease: %w", rerr))
	}
	log.Error("sync failed; Pub/Sub will redeliver", logging.KeyEvent, logging.EventSyncError,
		logging.KeyReason, kind.String(), logging.KeyError, err.Error())
	return fmt.Errorf("sync %s: %w", key, err)
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
		if err != nil && Classify(err) != KindTransient {
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
