package syncer

// Holding a lease: how long this process may still act on it, the heartbeat
// that extends it, and the writes that must end before it does.
//
// Firestore writes under the lease are fenced (store/fence.go): a holder that
// lost its lease cannot write, whenever it resumes. A Pub/Sub publish cannot
// be fenced, so it is bounded in time instead: a change is published only
// with a deadline at validUntil = leaseUntil - margin (this holder's clock),
// and another worker takes the lease only after leaseUntil (its clock). So
// every publish of a holder is over before the next holder can publish, as
// long as the clocks of two instances differ by less than the margin
// (Google's instances keep theirs within milliseconds; the margin is a
// quarter of the lease). A heartbeat that cannot renew the lease in time
// cancels the sync at validUntil, so a holder never acts on a lease it may
// have lost.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
)

// errLeaseExpired: heartbeats failed until the lease's safe end.
var errLeaseExpired = fmt.Errorf("%w: could not renew it before it ran out", store.ErrLeaseLost)

// sessionLease is one session's lease.
type sessionLease struct {
	key        string
	lease      store.Lease // with its fence
	margin     time.Duration
	validUntil atomic.Int64 // unix nanos: the lease's end minus the margin
	// inDoubt (unix nanos, 0 if none): a publish of this session ended with
	// its context, without Pub/Sub's answer, so it may still land until this
	// time: its deadline plus the margin (see letRunOut).
	inDoubt atomic.Int64
}

func newHolding(key string, l store.Lease) *sessionLease {
	h := &sessionLease{key: key, lease: l, margin: l.Duration / 4}
	h.extend(l.Until)
	return h
}

// extend records a new end of the lease (written by Admit or Heartbeat).
func (h *sessionLease) extend(until time.Time) {
	h.validUntil.Store(until.Add(-h.margin).UnixNano())
}

// deadline is when this process must have stopped acting on the lease.
func (h *sessionLease) deadline() time.Time { return time.Unix(0, h.validUntil.Load()) }

// keepLease renews the lease every third of its duration until ctx ends. A
// lost lease, or one it could not renew before its deadline, cancels the
// session at once (WARNING lease_lost, which a log-based metric counts).
func (s *Syncer) keepLease(ctx context.Context, cancel context.CancelCauseFunc, log *slog.Logger, h *sessionLease, done chan<- struct{}) {
	defer close(done)
	every := h.lease.Duration / 3
	next := s.o.Now().Add(every)
	for {
		wake := min(next.Sub(s.o.Now()), h.deadline().Sub(s.o.Now()))
		t := time.NewTimer(max(wake, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if !s.o.Now().Before(h.deadline()) {
			log.Warn("lease could not be renewed in time; sync stopped", logging.KeyEvent, logging.EventLeaseLost,
				logging.KeyReason, "heartbeat_failed")
			cancel(errLeaseExpired)
			return
		}
		if s.o.Now().Before(next) {
			continue
		}
		hctx, hcancel := context.WithDeadline(ctx, h.deadline())
		until, err := s.o.Store.Heartbeat(hctx, h.key, h.lease)
		hcancel()
		switch {
		case err == nil:
			h.extend(until)
			next = s.o.Now().Add(every)
		case errors.Is(err, store.ErrLeaseLost):
			log.Warn("lease taken by another worker; sync stopped", logging.KeyEvent, logging.EventLeaseLost,
				logging.KeyReason, "taken_over")
			cancel(store.ErrLeaseLost)
			return
		default:
			// Try again soon; the deadline above ends it if this goes on.
			log.Debug("heartbeat failed; retrying", logging.KeyError, err.Error())
			next = s.o.Now().Add(min(time.Second, every))
		}
	}
}

// publish publishes a page's change messages, done before the lease's
// deadline or not at all (ErrLeaseLost): see the top of this file.
func (s *Syncer) publish(ctx context.Context, st *roundState, msgs []pubsubx.Message) error {
	if len(msgs) == 0 || s.o.Publisher == nil {
		return nil
	}
	deadline := st.h.deadline()
	if !s.o.Now().Before(deadline) {
		return errLeaseExpired
	}
	pctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	err := s.o.Publisher.PublishAll(pctx, st.key, msgs)
	if err != nil && pctx.Err() != nil {
		// Sent, maybe, and unanswered: Pub/Sub may still store it.
		st.h.inDoubt.Store(deadline.Add(st.h.margin).UnixNano())
	}
	if err != nil && errors.Is(pctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		return errLeaseExpired
	}
	return err
}

// letRunOut waits, before a stopping session lets its lease go, until no
// publish of it can still land. A publish that ended with its context (its
// deadline, or the session cancelled) may have reached Pub/Sub and be stored
// a little later; the next holder, taking a released lease at once, could
// publish a newer version first, and the late message would then be the
// event's last. The lease's end is that publish's deadline plus the margin,
// so the wait is what the next holder would have waited had this session
// died, whether or not the request's context is still live.
func (s *Syncer) letRunOut(log *slog.Logger, h *sessionLease) {
	if h == nil || h.inDoubt.Load() == 0 {
		return
	}
	wait := time.Unix(0, h.inDoubt.Load()).Sub(s.o.Now())
	if wait <= 0 {
		return
	}
	log.Warn("a change publish ended unanswered; the lease is let go once it can no longer land",
		logging.KeyReason, "publish_in_doubt", logging.KeyDurationMs, wait.Milliseconds())
	time.Sleep(wait) // at most the margin; the request's context is not ours to end it
}
