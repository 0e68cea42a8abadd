package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Unknown outcomes. Firestore documents that a commit answered with an
// error may have been applied, and its client retries a Commit by itself on
// UNAVAILABLE: the retry of a transaction's commit then finds the
// transaction closed (the emulator: INVALID_ARGUMENT "Transaction is invalid
// or closed"), and the retry of a batch applies it a second time unless a
// precondition stops it. So the writes under a lease never take an error for
// "not written": on the error path only (no cost when commits succeed), they
// read back what Firestore holds and decide whether their write landed.

// ambiguous reports whether err leaves a commit's outcome unknown: worth
// committing an idempotent write again (commitIdempotent).
func ambiguous(err error) bool {
	if err == nil || errors.Is(err, ErrLeaseLost) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.Internal, codes.Unknown, codes.Canceled,
		codes.ResourceExhausted:
		return true
	}
	return false
}

// retryAmbiguous runs an idempotent write again while its outcome is
// unknown, so it ends known: applied, or refused. A few tries: the caller's
// own retries take over.
func retryAmbiguous(ctx context.Context, write func() error) error {
	for attempt := 0; ; attempt++ {
		err := write()
		if !ambiguous(err) || attempt == 2 {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(100<<attempt) * time.Millisecond):
		}
	}
}

// canReadBack: the read-back runs on the caller's context, never past its
// deadline (a heartbeat must give up at the lease's safe end); a caller whose
// context is done is stopping and keeps the error.
func canReadBack(ctx context.Context) bool { return ctx.Err() == nil }

// errLanded: a transaction's rerun found its own earlier attempt applied.
var errLanded = errors.New("store: this operation's earlier attempt was applied")

// newOp returns the id a lease holder's transaction records in
// calendars/{key}.leaseOp, by which it recognises its own commit.
func newOp() string { return fmt.Sprintf("%016x", rand.Uint64()) }

// leaseTx runs a lease holder's transaction on the calendar document. f
// writes op to leaseOp along with its updates (leaseOpUpdate) and checks
// it with leasedOp, which stops a rerun that finds it applied. When the commit's
// outcome is unknown, the calendar is read back: leaseOp == op means it
// landed, and what f computed in its last attempt stands. Callers hold the
// calendar's process lock, so no other transaction of this process writes
// leaseOp in between; another process writes it only by taking the lease
// over, and then the write is reported as not landed, which is true of
// everything after the takeover.
func (s *Store) leaseTx(ctx context.Context, key string, f func(ctx context.Context, tx *firestore.Transaction, op string) error) error {
	op := newOp()
	err := s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error { return f(ctx, tx, op) })
	if errors.Is(err, errLanded) {
		return nil
	}
	// Any other error is read back, not only the ambiguous ones: what the
	// service answers a retried commit of a committed transaction is not
	// documented (the emulator says INVALID_ARGUMENT).
	if err == nil || errors.Is(err, ErrLeaseLost) || !canReadBack(ctx) {
		return err
	}
	if c, rerr := s.GetCalendar(ctx, key); rerr == nil && c.LeaseOp == op {
		return nil
	}
	return err
}

func leaseOpUpdate(op string) firestore.Update { return firestore.Update{Path: "leaseOp", Value: op} }
