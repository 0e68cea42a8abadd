package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"cloud.google.com/go/firestore"
)

// ErrLeaseLost: another worker holds the calendar's lease now (ours expired
// and was taken). The sync must stop without committing its token.
var ErrLeaseLost = errors.New("store: lease lost")

// Lease identifies one holder of a calendar's lease and how long it lasts.
type Lease struct {
	Owner    string        // unique per acquisition ("instance/uuid")
	Duration time.Duration // leaseUntil = now + Duration, renewed by Heartbeat
	Now      func() time.Time
	// Fence is set by Admit when the lease is taken; every write under the
	// lease carries it (fence.go).
	Fence Fence
	// Until is leaseUntil as this holder last wrote it (Admit, Heartbeat).
	Until time.Time
}

func (l Lease) now() time.Time {
	if l.Now != nil {
		return l.Now().UTC()
	}
	return time.Now().UTC()
}

// Outcome is what a notification leads to.
type Outcome string

// Outcomes of Admit. Only OutcomeSync gives the caller the lease; every other
// outcome means: acknowledge the message.
const (
	OutcomeSync         Outcome = "sync"          // the caller holds the lease and must sync
	OutcomeCovered      Outcome = "covered"       // a completed sync started after the notification
	OutcomeNothingToDo  Outcome = "nothing_to_do" // "sync" state for a calendar that has a token
	OutcomeMarkedDirty  Outcome = "marked_dirty"  // a sync runs; it will go round once more
	OutcomeAlreadyDirty Outcome = "already_dirty" // a sync runs and is already marked (no write)
	OutcomeInactive     Outcome = "inactive"      // status is not active
	OutcomeUnknown      Outcome = "unknown"       // no such calendar registered
	// OutcomeDuplicate: the push's exact (channel, message number) is one
	// this calendar recently admitted with a write (lease taken or dirty
	// set), so a round that starts after that admission covers it: a replay
	// or a duplicate delivery. Never a comparison with a maximum: the number
	// is not signed, and a forged huge one must cost one sync at most, not
	// silence the channel.
	OutcomeDuplicate Outcome = "duplicate"
	// OutcomeRetryLater: this is a redelivery of the message whose session
	// holds the lease. Its holder died or is still at it; either way
	// acknowledging it now could leave a change unsynced until the next
	// notification. The caller has Pub/Sub redeliver it: once the holder is
	// done it is covered, once the lease has run out it takes over.
	OutcomeRetryLater Outcome = "retry_later"
)

// Request is the part of a notification Admit needs.
type Request struct {
	ReceivedAt  time.Time // zero: never considered covered
	FullResync  bool      // drop the token and list everything
	InitialOnly bool      // Google's "sync" message: only a never-synced calendar needs work
	MessageID   string    // the Pub/Sub message id, when known
	// ChannelID and MessageNumber identify a Google push (empty and 0 for
	// sync requests): Admit records the recent numbers admitted per channel
	// and answers OutcomeDuplicate for one of them.
	ChannelID     string
	MessageNumber int64
	// Purge asks for the lease to delete an unenrolled calendar's mirror:
	// admitted only while the calendar is unwatched (what unenrolling sets),
	// and retried later while a sync holds it. Any other status answers
	// OutcomeInactive, nothing purged: an active calendar was enrolled again,
	// and one with a problem (auth_revoked, not_found, ...) is still
	// followed, its mirror kept until someone fixes it. The notifications
	// topic has several publishers (the Webhook among them), so a purge is
	// only ever taken for what an unenrollment already gave up.
	Purge bool
	// Operator: an operator asked for this full resync (calsync resync
	// --full): recorded with the flag when another session holds the
	// calendar, so the cooldown does not turn it into an incremental sync.
	Operator bool
}

// Admission is Admit's answer.
type Admission struct {
	Outcome  Outcome
	Calendar Calendar // as read
	Lease    Lease    // OutcomeSync: the caller's lease with its fence
}

// CoalescingRule is what a notification leads to, given the calendar
// document as read: a pure function. The rule is the syncer's
// (syncer.Coalesce); Admit only reads, applies it and writes what it says.
type CoalescingRule func(c Calendar, r Request, now time.Time) Outcome

// channelMessagesKept bounds the channels calendars/{key}.channelMessages
// remembers (a calendar has one live channel, two while one is renewed);
// entries older than channelMessagesTTL go too: by then the channel has
// ended (the Webhook refuses its pushes), and dropping an entry early only
// costs one sync for a replay. channelNumbersKept bounds the numbers kept
// per channel, the most recently admitted: Google's and Pub/Sub's duplicate
// deliveries come soon after the original, and a number forgotten costs one
// sync, while a forger's numbers age out like any other.
const (
	channelMessagesKept = 4
	channelMessagesTTL  = 8 * 24 * time.Hour
	channelNumbersKept  = 16
)

// recordMessage returns the updates that note r's message number as
// admitted, and drop entries that are too old or too many. The entry is
// written whole, in the current shape (an older {n, at} is migrated).
func recordMessage(c Calendar, r Request, now time.Time) []firestore.Update {
	if r.ChannelID == "" || r.MessageNumber <= 0 {
		return nil
	}
	old := c.ChannelMessages[r.ChannelID]
	var ns []int64
	if old.Number > 0 {
		ns = append(ns, old.Number)
	}
	ns = append(ns, old.Numbers...)
	if !slices.Contains(ns, r.MessageNumber) {
		ns = append(ns, r.MessageNumber)
	}
	ns = ns[max(0, len(ns)-channelNumbersKept):]
	ups := []firestore.Update{{FieldPath: firestore.FieldPath{"channelMessages", r.ChannelID}, Value: ChannelMessage{Numbers: ns, At: now}}}
	var others []string
	for id, m := range c.ChannelMessages {
		if id == r.ChannelID {
			continue
		}
		if now.Sub(m.At) > channelMessagesTTL {
			ups = append(ups, firestore.Update{FieldPath: firestore.FieldPath{"channelMessages", id}, Value: firestore.Delete})
			continue
		}
		others = append(others, id)
	}
	// Keep the most recently admitted others.
	slices.SortFunc(others, func(a, b string) int { return c.ChannelMessages[b].At.Compare(c.ChannelMessages[a].At) })
	for _, id := range others[min(len(others), channelMessagesKept-1):] {
		ups = append(ups, firestore.Update{FieldPath: firestore.FieldPath{"channelMessages", id}, Value: firestore.Delete})
	}
	return ups
}

// Admit applies the coalescing rule to one notification. It reads the
// calendar first without a transaction and only opens one when it has to
// write (take the lease, or set the dirty flag), so a burst of notifications
// for a calendar under sync costs one read each and a single write.
func (s *Store) Admit(ctx context.Context, key string, r Request, l Lease, decide CoalescingRule) (Admission, error) {
	if a, done, err := s.admitRead(ctx, key, r, l, decide); done || err != nil {
		return a, err
	}
	defer s.lockCalendar(key)()
	// Others of this process may have written while we queued: read again.
	if a, done, err := s.admitRead(ctx, key, r, l, decide); done || err != nil {
		return a, err
	}
	var a Admission
	ref := s.CalendarRef(key)
	var gen int64
	var until time.Time
	err := s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		a = Admission{}
		snap, err := tx.Get(ref)
		if isNotFound(err) {
			a.Outcome = OutcomeUnknown
			return nil
		}
		if err != nil {
			return err
		}
		if err := snap.DataTo(&a.Calendar); err != nil {
			return err
		}
		now := l.now()
		if ownLease(a.Calendar, l, now) { // an earlier attempt of this call took it
			a.Outcome, gen, until = OutcomeSync, a.Calendar.LeaseGen, a.Calendar.LeaseUntil
			return nil
		}
		a.Outcome = decide(a.Calendar, r, now)
		switch a.Outcome {
		case OutcomeSync:
			// A new generation; the fence document moves with it, which
			// fences out every earlier holder's writes.
			gen, until = a.Calendar.LeaseGen+1, now.Add(l.Duration)
			if !s.Unfenced {
				if err := tx.Set(s.fenceRef(key), map[string]any{"gen": gen, "owner": l.Owner, "takenAt": now}); err != nil {
					return err
				}
			}
			return tx.Update(ref, append([]firestore.Update{
				{Path: "leaseOwner", Value: l.Owner},
				{Path: "leaseGen", Value: gen},
				{Path: "leaseUntil", Value: until},
				optional("leaseMessageId", r.MessageID),
				{Path: "updatedAt", Value: now},
			}, recordMessage(a.Calendar, r, now)...))
		case OutcomeMarkedDirty:
			ups := []firestore.Update{{Path: "dirty", Value: true}, {Path: "updatedAt", Value: now}}
			if !a.Calendar.Dirty {
				since := r.ReceivedAt
				if since.IsZero() {
					since = now
				}
				ups = append(ups, firestore.Update{Path: "dirtySince", Value: since.UTC()})
			}
			ups = append(ups, fullResyncAsked(a.Calendar, r)...)
			return tx.Update(ref, append(ups, recordMessage(a.Calendar, r, now)...))
		}
		return nil
	})
	if err != nil && canReadBack(ctx) {
		// The commit may have applied: what Firestore holds now settles the
		// notification (the lease is ours, or a no-write outcome), or the
		// caller tries again.
		if a, done, rerr := s.admitRead(ctx, key, r, l, decide); rerr == nil && done {
			return a, nil
		}
	}
	if err != nil {
		return Admission{}, fmt.Errorf("admit %s: %w", key, err)
	}
	if a.Outcome == OutcomeSync {
		if a.Lease, err = s.granted(ctx, key, l, gen, until); err != nil {
			return Admission{}, err
		}
	}
	return a, nil
}

// ownLease reports whether l's acquisition holds c's lease: an earlier
// attempt of the same Admit (its commit applied, its answer lost) took it.
// Owners are unique per acquisition.
func ownLease(c Calendar, l Lease, now time.Time) bool {
	return l.Owner != "" && c.LeaseOwner == l.Owner && c.LeaseUntil.After(now)
}

// granted completes a lease taken at generation gen with its fence.
func (s *Store) granted(ctx context.Context, key string, l Lease, gen int64, until time.Time) (Lease, error) {
	if s.Unfenced {
		l.Fence = Fence{Gen: gen}
	} else {
		f, err := s.readFence(ctx, key, l, gen)
		if err != nil {
			return Lease{}, err
		}
		l.Fence = f
	}
	l.Until = until
	return l, nil
}

// admitRead decides from a plain read; done is false when a write is needed.
func (s *Store) admitRead(ctx context.Context, key string, r Request, l Lease, decide CoalescingRule) (Admission, bool, error) {
	c, err := s.GetCalendar(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return Admission{Outcome: OutcomeUnknown}, true, nil
	}
	if err != nil {
		return Admission{}, false, err
	}
	if ownLease(c, l, l.now()) {
		gl, err := s.granted(ctx, key, l, c.LeaseGen, c.LeaseUntil)
		if err != nil {
			return Admission{}, false, err
		}
		return Admission{Outcome: OutcomeSync, Calendar: c, Lease: gl}, true, nil
	}
	switch o := decide(c, r, l.now()); o {
	case OutcomeSync, OutcomeMarkedDirty:
		return Admission{}, false, nil
	default:
		return Admission{Outcome: o, Calendar: c}, true, nil
	}
}

// Round is one sync of a calendar under a lease.
type Round struct {
	StartedAt  time.Time
	Full       bool      // list without a token (and sweep)
	Token      string    // the stored sync token ("" when Full)
	DirtySince time.Time // oldest notification this round covers because the calendar was dirty (zero if not dirty)
	Calendar   Calendar  // as read at the start
	// Resume, when set, is the checkpoint of a round an earlier holder
	// stopped between pages: this round continues it. StartedAt is then the
	// original round's start (what the round covers), and the calendar stays
	// dirty, so a fresh round follows and covers what came since.
	Resume *Checkpoint
	// FullCoalesced: a full round was asked for within the full-resync
	// cooldown (StartRoundCooled): this round is incremental instead.
	FullCoalesced bool
}

// StartRound begins a sync round under the lease: it clears the dirty flag
// (every notification received before now is covered by this round), records
// lastSyncStartedAt and extends the lease. forceFull asks for a full sync.
func (s *Store) StartRound(ctx context.Context, key string, l Lease, forceFull bool) (Round, error) {
	return s.StartRoundCooled(ctx, key, l, forceFull, 0)
}

// StartRoundCooled is StartRound with a full-resync cooldown (a cost
// guard): a full round asked for (forceFull, or a full_resync request's
// flag) while the calendar has a sync token and its last full sync is
// younger than cooldown runs incremental instead (Round.FullCoalesced): the
// recent full sync and this incremental one cover what was asked. A
// calendar without a token, or polled full, is listed whole all the same.
func (s *Store) StartRoundCooled(ctx context.Context, key string, l Lease, forceFull bool, cooldown time.Duration) (Round, error) {
	defer s.lockCalendar(key)()
	var rd Round
	ref := s.CalendarRef(key)
	err := s.leaseTx(ctx, key, func(ctx context.Context, tx *firestore.Transaction, op string) error {
		c, err := s.leasedOp(tx, ref, l, op)
		if err != nil {
			return err
		}
		cp, err := s.readCheckpoint(tx, key, c)
		if err != nil {
			return err
		}
		now := l.now()
		rd = Round{StartedAt: now, Calendar: c, Token: c.SyncToken}
		// PollFull: Google does not report this calendar's deletions in
		// incremental lists, so every round lists it whole and sweeps.
		asked := forceFull || c.FullResyncRequested
		if asked && cooldown > 0 && !c.FullResyncByOperator && c.SyncToken != "" && c.PollMode != PollFull && now.Sub(c.LastFullSyncAt) < cooldown {
			asked, rd.FullCoalesced = false, true
		}
		rd.Full = asked || c.SyncToken == "" || c.PollMode == PollFull
		if rd.Full {
			rd.Token = ""
		}
		if c.Dirty {
			rd.DirtySince = c.DirtySince
		}
		ups := []firestore.Update{
			{Path: "fullResyncRequested", Value: firestore.Delete},
			{Path: "fullResyncByOperator", Value: firestore.Delete},
			{Path: "lastSyncStartedAt", Value: now},
			{Path: "leaseUntil", Value: now.Add(l.Duration)},
			{Path: "updatedAt", Value: now},
			leaseOpUpdate(op),
		}
		switch {
		case cp != nil && (cp.Full || !rd.Full):
			// Continue the stopped round. It covers only what came before
			// its start: stay dirty so that a fresh round follows.
			rd.Resume, rd.StartedAt, rd.Full, rd.Token = cp, cp.StartedAt, cp.Full, cp.Token
			ups = append(ups, firestore.Update{Path: "dirty", Value: true})
			if !c.Dirty {
				ups = append(ups, firestore.Update{Path: "dirtySince", Value: cp.StartedAt})
			}
		default:
			// A full resync was asked for and the stopped round was not
			// full: start over.
			if err := s.deleteCheckpoint(tx, key, c); err != nil {
				return err
			}
			if cp != nil {
				ups = append(ups, clearCheckpoint...)
			}
			ups = append(ups, firestore.Update{Path: "dirty", Value: false}, firestore.Update{Path: "dirtySince", Value: firestore.Delete})
		}
		return tx.Update(ref, ups)
	})
	if err != nil {
		return Round{}, fmt.Errorf("start sync of %s: %w", key, err)
	}
	return rd, nil
}

// fullResyncAsked records a full resync asked for while another session
// holds the calendar, and whether an operator asked.
func fullResyncAsked(c Calendar, r Request) []firestore.Update {
	var ups []firestore.Update
	if r.FullResync && !c.FullResyncRequested {
		ups = append(ups, firestore.Update{Path: "fullResyncRequested", Value: true})
	}
	if r.FullResync && r.Operator && !c.FullResyncByOperator {
		ups = append(ups, firestore.Update{Path: "fullResyncByOperator", Value: true})
	}
	return ups
}

// leased reads the calendar in tx and checks that l still holds its lease.
func (s *Store) leased(tx *firestore.Transaction, ref *firestore.DocumentRef, l Lease) (Calendar, error) {
	return s.leasedOp(tx, ref, l, "")
}

// leasedOp is leased for transaction op of leaseTx: errLanded if this is a
// rerun whose earlier attempt was applied.
func (s *Store) leasedOp(tx *firestore.Transaction, ref *firestore.DocumentRef, l Lease, op string) (Calendar, error) {
	var c Calendar
	snap, err := tx.Get(ref)
	if err != nil {
		return c, wrapNotFound(err, "calendar "+ref.ID)
	}
	if err := snap.DataTo(&c); err != nil {
		return c, err
	}
	if op != "" && c.LeaseOp == op {
		return c, errLanded
	}
	if c.LeaseOwner != l.Owner || c.LeaseGen != l.Fence.Gen {
		return c, ErrLeaseLost
	}
	return c, nil
}

// Heartbeat extends the lease while a long sync runs and returns its new
// end; ErrLeaseLost if another worker holds it.
func (s *Store) Heartbeat(ctx context.Context, key string, l Lease) (time.Time, error) {
	defer s.lockCalendar(key)()
	ref := s.CalendarRef(key)
	var until time.Time
	err := s.leaseTx(ctx, key, func(ctx context.Context, tx *firestore.Transaction, op string) error {
		if _, err := s.leasedOp(tx, ref, l, op); err != nil {
			return err
		}
		until = l.now().Add(l.Duration)
		return tx.Update(ref, []firestore.Update{{Path: "leaseUntil", Value: until}, leaseOpUpdate(op)})
	})
	return until, err
}

// Completion is what a finished round reports.
type Completion struct {
	Round Round
	Token string // nextSyncToken of the last page
	// EventCount, for full rounds, is the number of documents after the
	// sweep (eventCount is otherwise kept by the fenced event batches).
	EventCount int64
	// HandOver releases the lease even if the calendar is dirty (the flag
	// stays): the holder has run long enough; the next message takes over.
	HandOver bool
}

// Complete records a finished round in one transaction: the new sync token,
// lastSyncedAt, lastCompletedSyncStartedAt, the counters, and the removal of
// the round's checkpoint. again is true if the calendar became dirty during
// the round: the lease is then kept (extended) and the caller must run
// another round, unless HandOver, which releases it all the same (the dirty
// flag stays for the next holder).
func (s *Store) Complete(ctx context.Context, key string, l Lease, done Completion) (again bool, err error) {
	defer s.lockCalendar(key)()
	ref := s.CalendarRef(key)
	err = s.leaseTx(ctx, key, func(ctx context.Context, tx *firestore.Transaction, op string) error {
		c, err := s.leasedOp(tx, ref, l, op)
		if err != nil {
			return err
		}
		if err := s.deleteCheckpoint(tx, key, c); err != nil {
			return err
		}
		now := l.now()
		again = c.Dirty
		token := any(done.Token)
		if read := done.Round.Calendar; read.AuthMode != "" && c.Grant() != read.Grant() {
			// Another grant reads the calendar since the round began (a
			// listing handed it over): its token is not the new reader's,
			// whose first round must be a full one.
			token, again = firestore.Delete, true
		}
		ups := []firestore.Update{
			{Path: "syncToken", Value: token},
			{Path: "lastSyncedAt", Value: now},
			{Path: "lastCompletedSyncStartedAt", Value: done.Round.StartedAt},
			{Path: "syncCount", Value: firestore.Increment(1)},
			{Path: "updatedAt", Value: now},
			leaseOpUpdate(op),
		}
		if c.Checkpointed {
			ups = append(ups, clearCheckpoint...)
		}
		if c.NotFoundCount > 0 {
			ups = append(ups, clearNotFound...) // listed: the calendar is there
		}
		if done.Round.Full {
			ups = append(ups,
				firestore.Update{Path: "lastFullSyncAt", Value: now},
				firestore.Update{Path: "fullSyncCount", Value: firestore.Increment(1)},
				firestore.Update{Path: "eventCount", Value: done.EventCount})
		}
		if again && !done.HandOver {
			ups = append(ups, firestore.Update{Path: "leaseUntil", Value: now.Add(l.Duration)})
		} else {
			ups = append(ups,
				firestore.Update{Path: "leaseOwner", Value: firestore.Delete},
				firestore.Update{Path: "leaseMessageId", Value: firestore.Delete},
				firestore.Update{Path: "leaseUntil", Value: now}) // released: expired now (queries can compare it)
		}
		return tx.Update(ref, ups)
	})
	if err != nil {
		return false, fmt.Errorf("complete sync of %s: %w", key, err)
	}
	return again, nil
}

// Release gives the lease up after a failed round (the dirty flag stays, so
// whoever syncs next goes round for it), or, with markDirty, to hand a round
// stopped at a checkpoint over to the next invocation (the calendar is marked
// dirty, so the next message takes over even if it is covered). No-op if l no
// longer holds it.
func (s *Store) Release(ctx context.Context, key string, l Lease, markDirty bool) error {
	defer s.lockCalendar(key)()
	ref := s.CalendarRef(key)
	return s.leaseTx(ctx, key, func(ctx context.Context, tx *firestore.Transaction, op string) error {
		c, err := s.leasedOp(tx, ref, l, op)
		if err != nil {
			if errors.Is(err, ErrLeaseLost) {
				return nil
			}
			return err
		}
		now := l.now()
		ups := []firestore.Update{
			{Path: "leaseOwner", Value: firestore.Delete},
			{Path: "leaseMessageId", Value: firestore.Delete},
			{Path: "leaseUntil", Value: now}, // released: expired now (queries can compare it)
			leaseOpUpdate(op),
		}
		if markDirty && !c.Dirty {
			ups = append(ups, firestore.Update{Path: "dirty", Value: true}, firestore.Update{Path: "dirtySince", Value: now})
		}
		return tx.Update(ref, ups)
	})
}
