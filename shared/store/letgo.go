package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
)

// A holder whose session stops before its work is done (a failed round, a
// lease that ran out or was taken) may acknowledge its message only if a sync
// still covers what it was to cover. That is read from Firestore in the
// transaction that lets the calendar go, never assumed: a lease that merely
// ran out is no new holder.

// Cover is what LetGo found and left.
type Cover struct {
	// Pending: a sync is still owed: the stopping session's notification is
	// not covered by a completed round, the calendar is dirty (notifications
	// were acknowledged for a holder to go round once more), or the latest
	// round started was never completed (it cleared the dirty flag). The
	// calendar is left dirty (a purge: as it is).
	Pending bool
	// Holder is another lease, live when read, held for another message
	// than the stopping one's: it goes round for the dirty flag, and if it
	// dies its own message, not yet acknowledged, is redelivered and takes
	// over. Empty if there is none.
	Holder string
	// Held: a live lease of another session holds the stopping session's
	// very message (a duplicate delivery took over). Acknowledging would
	// acknowledge that session's message too: redeliver instead.
	Held bool
}

// LetGo ends a session of lease l that stops before its work is done, for
// the notification r: in one transaction it releases the lease if l still
// holds it, leaves the calendar dirty if a sync is owed, and says who, if
// anyone, holds the calendar now.
func (s *Store) LetGo(ctx context.Context, key string, l Lease, r Request) (Cover, error) {
	defer s.lockCalendar(key)()
	ref := s.CalendarRef(key)
	var cv Cover
	// leaseTx: a release whose answer was lost is recognised (leaseOp); the
	// other outcomes write nothing of the holder's and are read again by a
	// retry, which finds the same cover.
	err := s.leaseTx(ctx, key, func(ctx context.Context, tx *firestore.Transaction, op string) error {
		c, err := s.leasedOp(tx, ref, l, op)
		if err != nil && !errors.Is(err, ErrLeaseLost) {
			return err // errLanded: the cover the applied attempt found stands
		}
		cv = Cover{}
		now := l.now()
		var ups []firestore.Update
		if ours := err == nil; ours {
			ups = append(ups,
				firestore.Update{Path: "leaseOwner", Value: firestore.Delete},
				firestore.Update{Path: "leaseMessageId", Value: firestore.Delete},
				firestore.Update{Path: "leaseUntil", Value: now}, // released: expired now
				leaseOpUpdate(op))
		} else if c.LeaseOwner != "" && c.LeaseUntil.After(now) {
			if r.MessageID != "" && r.MessageID == c.LeaseMessageID {
				cv.Held = true
			} else {
				cv.Holder = c.LeaseOwner
			}
		}
		covered := !r.FullResync && !r.ReceivedAt.IsZero() && r.ReceivedAt.Before(c.LastCompletedSyncStartedAt)
		if r.Purge {
			// Owed while the calendar stays unenrolled; never for a holder to
			// cover (a live one may be a sync), and the dirty flag is a sync's.
			cv.Pending = c.Status != StatusActive && !covered
			cv.Holder = ""
		} else if c.Status == StatusActive {
			covered = covered || (r.InitialOnly && c.SyncToken != "")
			unfinished := c.LastSyncStartedAt.After(c.LastCompletedSyncStartedAt)
			cv.Pending = c.Dirty || unfinished || !covered
			if cv.Pending && !c.Dirty {
				since := r.ReceivedAt
				if since.IsZero() || since.After(now) {
					since = now
				}
				ups = append(ups, firestore.Update{Path: "dirty", Value: true}, firestore.Update{Path: "dirtySince", Value: since.UTC()})
			}
			ups = append(ups, fullResyncAsked(c, r)...)
		}
		if len(ups) == 0 {
			return nil
		}
		return tx.Update(ref, append(ups, firestore.Update{Path: "updatedAt", Value: now}))
	})
	if err != nil {
		return Cover{}, fmt.Errorf("let go of %s: %w", key, err)
	}
	return cv, nil
}

// MarkDirty leaves an active calendar dirty, owed a sync since since, when a
// sync it needs could not be asked for otherwise (a follow-up request that
// could not be published): the redelivery of the message then finds it
// dirty and syncs, although a completed round covers the message. Applied
// twice it changes nothing more, so a lost answer needs no read-back.
func (s *Store) MarkDirty(ctx context.Context, key string, since time.Time) error {
	ref := s.CalendarRef(key)
	err := s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(ref)
		if err != nil {
			return err
		}
		var c Calendar
		if err := snap.DataTo(&c); err != nil {
			return err
		}
		if c.Status != StatusActive || c.Dirty {
			return nil
		}
		if since.IsZero() {
			since = s.now()
		}
		return tx.Update(ref, []firestore.Update{{Path: "dirty", Value: true}, {Path: "dirtySince", Value: since.UTC()},
			{Path: "updatedAt", Value: s.now()}})
	})
	if err != nil {
		return fmt.Errorf("mark %s dirty: %w", key, err)
	}
	return nil
}
