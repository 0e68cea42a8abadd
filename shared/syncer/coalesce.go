package syncer

// In-process coalescing: what this process knows of the leases it holds and
// of the notifications it has seen, so a burst costs few Firestore calls and
// few listings. An optimisation only: the lease and the dirty flag in
// Firestore are what make it correct across instances.

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/calsync/calsync/shared/store"
)

// Coalesce is the coalescing rule (shared/store/README.md, "The coalescing
// rule"): what a notification leads to, a pure function of the calendar
// document as read. store.Admit applies it, on a plain read and again
// inside the transaction that writes what it says.
func Coalesce(c store.Calendar, r store.Request, now time.Time) store.Outcome {
	if r.Purge {
		switch {
		case c.Status != store.StatusUnwatched:
			// Only an unenrolled calendar's mirror is purged: never one still
			// followed, whatever its problem (the Webhook's account may
			// publish on the notifications topic: a purge there proves
			// nothing).
			return store.OutcomeInactive
		case c.LeaseOwner != "" && c.LeaseUntil.After(now):
			return store.OutcomeRetryLater
		}
		return store.OutcomeSync
	}
	if c.Status != store.StatusActive {
		return store.OutcomeInactive
	}
	if r.InitialOnly && c.SyncToken != "" {
		return store.OutcomeNothingToDo
	}
	leased := c.LeaseOwner != "" && c.LeaseUntil.After(now)
	// Covered: a sync that started after this notification was received has
	// completed. Unless a crashed holder left the calendar dirty: take over.
	if !r.FullResync && !r.ReceivedAt.IsZero() && r.ReceivedAt.Before(c.LastCompletedSyncStartedAt) && !(c.Dirty && !leased) {
		return store.OutcomeCovered
	}
	duplicate := r.ChannelID != "" && c.ChannelMessages[r.ChannelID].Admitted(r.MessageNumber)
	if leased {
		if r.MessageID != "" && r.MessageID == c.LeaseMessageID {
			return store.OutcomeRetryLater
		}
		if duplicate {
			return store.OutcomeDuplicate
		}
		if c.Dirty && (!r.FullResync || c.FullResyncRequested) {
			return store.OutcomeAlreadyDirty
		}
		return store.OutcomeMarkedDirty
	}
	if duplicate && !c.Dirty { // dirty and unleased: a crashed holder's work, take over
		return store.OutcomeDuplicate
	}
	return store.OutcomeSync
}

// localDirty is this process's knowledge of a lease it holds. dirty is true only
// while the calendar document's dirty flag is known to be set and no round
// has started since: a notification arriving then is covered by the next
// round without reading Firestore. mu is localDirty across a round's start (the
// transaction that clears the flag), and gen counts round starts, so a
// notification can never record a flag that a round start already cleared.
type localDirty struct {
	mu    sync.Mutex
	gen   uint64
	dirty bool
}

func (s *Syncer) localDirtyOf(key string) *localDirty {
	if v, ok := s.localDirty.Load(key); ok {
		return v.(*localDirty)
	}
	return nil
}

// heldDirty says whether this process knows the calendar's dirty flag is
// set under its lease, and otherwise returns the round generation to pass to
// noteDirty.
func (h *localDirty) check() (dirty bool, gen uint64) {
	if h == nil {
		return false, 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dirty, h.gen
}

// noteDirty records that the flag was found set (or was set), unless a round
// started since gen was read.
func (h *localDirty) noteDirty(gen uint64) {
	if h == nil {
		return
	}
	h.mu.Lock()
	if h.gen == gen {
		h.dirty = true
	}
	h.mu.Unlock()
}

func (s *Syncer) markSeen(key string) {
	v, _ := s.seen.LoadOrStore(key, new(atomic.Int64))
	v.(*atomic.Int64).Store(s.o.Now().UnixNano())
}

func (s *Syncer) lastSeen(key string) time.Time {
	if v, ok := s.seen.Load(key); ok {
		return time.Unix(0, v.(*atomic.Int64).Load())
	}
	return time.Time{}
}

// pace waits before a round: until RerunInterval after the previous round's
// start, or less once the burst is over (quiet for QuietPeriod).
func (s *Syncer) pace(ctx context.Context, key string, prevStart time.Time) error {
	deadline := prevStart.Add(s.o.RerunInterval)
	step := max(s.o.QuietPeriod/4, 5*time.Millisecond)
	for {
		now := s.o.Now()
		if !now.Before(deadline) {
			return nil
		}
		if ls := s.lastSeen(key); ls.After(prevStart) && now.Sub(ls) >= s.o.QuietPeriod {
			return nil
		}
		t := time.NewTimer(min(step, deadline.Sub(now)))
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
	}
}
