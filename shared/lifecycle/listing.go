package lifecycle

// What one listing of an identity's calendar list (or a domain's rooms)
// changes: PlanListing, pure, registered with shared/store, which reads
// and writes in one transaction around it.

import (
	"maps"
	"slices"

	"github.com/calsync/calsync/shared/store"
)

// roleRank orders the access roles of calendar list entries. A role not
// known ("": a domain's rooms, read as the admin) ranks as a writer: it
// was read that way before roles were recorded.
var roleRank = map[string]int{"freeBusyReader": 1, "reader": 2, "": 3, "writer": 3, "owner": 4}

// BestReader is the reader of most access (owner, writer, reader,
// freeBusyReader); ties go to the smallest key, so every instance chooses
// the same one.
func BestReader(readers map[string]store.Reader) (string, store.Reader, bool) {
	best, found := "", false
	for _, k := range slices.Sorted(maps.Keys(readers)) {
		if !found || roleRank[readers[k].AccessRole] > roleRank[readers[best].AccessRole] {
			best, found = k, true
		}
	}
	return best, readers[best], found
}

// PlanListing decides what a listing changes (store.ListingPlanner). A
// listed calendar gets the lister as a reader, a calendar it lost loses
// it; each is then read with its best reader (BestReader): a change of
// reader drops the sync token (another reader sees other details: a full
// resync, never another reader's token); no reader left: unwatched; a
// best reader of free/busy only: free_busy_only, not synced. Calendars an
// operator registered (enrolledBy unset) and active are left alone.
func PlanListing(s store.ListingState) store.ListingPlan {
	p := store.ListingPlan{Counts: map[string]int{}}
	if s.Status != store.StatusActive || s.Listing.StartedAt.Before(s.ListedAt) {
		p.Stale = true
		return p
	}
	me := s.Owner
	for _, want := range s.Listing.Enroll {
		key := want.Key()
		r := store.ReaderOf(want, want.AccessRole)
		c, exists := s.Stored[key]
		if !exists {
			c = store.Calendar{CalendarID: want.CalendarID, Tenant: want.Tenant}
			settle(&p, key, me, c, map[string]store.Reader{me: r}, "", true)
			continue
		}
		if c.EnrolledBy == "" && c.Status == store.StatusActive {
			p.Shared++ // an operator's: read as the operator said
			continue
		}
		readers := readersOf(c)
		if problem(c.Status) && c.EnrolledBy != me {
			// Its reader's grant failed: not chosen again until its own
			// listing has the calendar again.
			delete(readers, c.EnrolledBy)
		}
		readers[me] = r
		settle(&p, key, me, c, readers, "", false)
	}
	for _, key := range s.Listing.Unenroll {
		c, exists := s.Stored[key]
		if !exists {
			continue
		}
		readers := readersOf(c)
		if _, reads := readers[me]; !reads && c.EnrolledBy != me {
			continue // not ours: another's or an operator's
		}
		delete(readers, me)
		reason := s.Listing.UnenrollReason
		if reason == "" {
			reason = "left the calendar list of " + me
		}
		settle(&p, key, me, c, readers, reason, false)
	}
	return p
}

// readersOf is a copy of c's readers; a calendar enrolled before readers
// were recorded has its enroller as one (role unknown) while it is followed.
func readersOf(c store.Calendar) map[string]store.Reader {
	out := maps.Clone(c.Readers)
	if out == nil {
		out = map[string]store.Reader{}
	}
	if len(out) == 0 && c.EnrolledBy != "" && c.Status != store.StatusUnwatched {
		out[c.EnrolledBy] = store.ReaderOf(c, c.AccessRole)
	}
	return out
}

// settle plans calendar c (key) with its new readers: who reads it, its
// status (through Decide), and what the lister's engine must do about it.
// reason is set when the lister lost the calendar (the status reason if
// nobody reads it any more).
func settle(p *store.ListingPlan, key, me string, c store.Calendar, readers map[string]store.Reader, reason string, create bool) {
	next := c
	next.Readers = readers
	counted := !create && c.EnrolledBy != "" && c.Status != store.StatusUnwatched
	bestKey, best, ok := BestReader(readers)
	var d Decision
	if ok {
		next.ReadWith(bestKey, best)
		a := AnswerEnroll
		if best.AccessRole == "freeBusyReader" {
			a = AnswerFreeBusyOnly
		}
		d = Decide(KindCalendar, c.Status, OpListList, a)
	} else {
		next.Readers = nil
		d = Decide(KindCalendar, c.Status, OpOperator, AnswerUnenroll)
	}
	switch d.Effect {
	case EffectActivate:
		next.Status, next.StatusReason = store.StatusActive, ""
	case EffectFreeBusy:
		next.Status, next.StatusReason = store.StatusFreeBusyOnly, "the grants that list it see free/busy only ("+bestKey+")"
	case EffectUnwatch:
		next.Status, next.StatusReason = store.StatusUnwatched, reason
	}
	if create && next.Status == "" {
		return // nothing to read it with
	}
	handover := !create && c.Status != store.StatusUnwatched && next.Status != store.StatusUnwatched && c.Grant() != next.Grant()
	// A token is never used with another grant than the one that made it
	// (an unwatched calendar enrolled again by another lister too): the
	// next sync is a full one.
	dropToken := !create && c.Grant() != next.Grant()
	if dropToken {
		next.SyncToken = ""
	}
	if create || !same(c, next) {
		p.Writes = append(p.Writes, store.CalendarWrite{Key: key, Create: create, Cal: next, DropToken: dropToken,
			MarkDirty: handover && !c.Dirty && next.Status == store.StatusActive})
	}
	if counted {
		p.Counts[c.EnrolledBy]--
	}
	if next.Status != store.StatusUnwatched {
		p.Counts[next.EnrolledBy]++
	}
	switch {
	case d.Effect == EffectUnwatch:
		p.Unenrolled = append(p.Unenrolled, next)
	case next.Status == store.StatusFreeBusyOnly:
		if d.Effect == EffectFreeBusy {
			stop := next
			if c.Status == store.StatusActive {
				stop = c // its channels are its former reader's
			}
			p.FreeBusyOnly = append(p.FreeBusyOnly, stop)
		}
	case handover && c.Status == store.StatusActive:
		p.HandedOver = append(p.HandedOver, store.Handover{From: c, To: next})
	case d.Effect == EffectActivate || handover:
		p.Enrolled = append(p.Enrolled, next)
	case reason == "" && next.Status == store.StatusActive && next.EnrolledBy != me:
		p.Shared++ // listed, read by another
	}
}

// same: nothing of what a listing writes changed.
func same(a, b store.Calendar) bool {
	return a.Grant() == b.Grant() && a.EnrolledBy == b.EnrolledBy && a.Status == b.Status && a.StatusReason == b.StatusReason &&
		a.AccessRole == b.AccessRole && maps.Equal(a.Readers, b.Readers)
}

// problem: a status found on the calendar's reader (not chosen by anyone).
func problem(status string) bool {
	switch status {
	case store.StatusActive, store.StatusUnwatched, store.StatusFreeBusyOnly, "":
		return false
	}
	return true
}

// otherReaders are c's readers besides the one it is read with.
func otherReaders(c store.Calendar) map[string]store.Reader {
	rs := readersOf(c)
	delete(rs, c.EnrolledBy)
	return rs
}

// PlanReaderLost decides what happens to calendar c (key) when its reader
// lost is refused or told it is not there: the next best reader takes over
// (a full resync), or, when none is left, nothing changes (Stale: the
// answer's usual path decides).
func PlanReaderLost(key string, c store.Calendar, lost, reason string) store.ListingPlan {
	p := store.ListingPlan{Counts: map[string]int{}}
	readers := readersOf(c)
	delete(readers, lost)
	if _, ok := readersOf(c)[lost]; !ok || len(readers) == 0 || !followed(c.Status) {
		p.Stale = true
		return p
	}
	settle(&p, key, lost, c, readers, reason, false)
	return p
}

func followed(status string) bool {
	return status != store.StatusUnwatched && status != store.StatusUnenrolled
}
