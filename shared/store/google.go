package store

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
)

// What Google does that a calendar's state must absorb: 404s that pass
// (a 404 streak, not one 404, makes a calendar not_found; not_found calendars
// are probed again), and calendars Google will not push for (poll mode).

// NotFoundPolicy says when a streak of 404s means the calendar is gone.
type NotFoundPolicy struct {
	Attempts int           // at least this many 404s in a row (default 3)
	After    time.Duration // spanning at least this long
}

// DefaultNotFoundPolicy: three 404s over at least an hour.
var DefaultNotFoundPolicy = NotFoundPolicy{Attempts: 3, After: time.Hour}

// NotFoundStreak is what RecordNotFound did.
type NotFoundStreak struct {
	Count  int       // 404s in the streak, this one included
	Since  time.Time // the streak's first
	Marked bool      // the streak is long enough: status set to not_found
}

// NotFoundRule is the 404 streak rule, a pure function: what one more 404
// makes of calendar c's streak (zero: c does not count, its streak is left
// alone). It is shared/lifecycle's (lifecycle.NextStreak).
type NotFoundRule func(c Calendar, now time.Time) NotFoundStreak

// RecordNotFound counts a 404 for calendar key (events.list or events.watch)
// as next says, and sets status not_found when next marks it. If leaseOwner
// holds the calendar's lease, it is released (the calendar's dirty flag
// stays).
func (s *Store) RecordNotFound(ctx context.Context, key, leaseOwner, what string, next NotFoundRule) (NotFoundStreak, error) {
	ref := s.CalendarRef(key)
	var out NotFoundStreak
	defer s.lockCalendar(key)()
	err := s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		out = NotFoundStreak{}
		c, err := calendarTx(tx, ref)
		if err != nil {
			return err
		}
		now := s.now()
		var ups []firestore.Update
		if leaseOwner != "" && c.LeaseOwner == leaseOwner {
			ups = append(ups, firestore.Update{Path: "leaseOwner", Value: firestore.Delete},
				firestore.Update{Path: "leaseMessageId", Value: firestore.Delete},
				firestore.Update{Path: "leaseUntil", Value: now})
		}
		if out = next(c, now); out.Count > 0 {
			ups = append(ups, firestore.Update{Path: "notFoundCount", Value: out.Count},
				firestore.Update{Path: "notFoundSince", Value: out.Since})
			if out.Marked {
				ups = append(ups, firestore.Update{Path: "status", Value: StatusNotFound},
					firestore.Update{Path: "statusReason", Value: fmt.Sprintf("%s: 404 %d times since %s", what, out.Count, out.Since.Format(time.RFC3339))},
					firestore.Update{Path: "lastProbeAt", Value: now})
			}
		}
		if len(ups) == 0 {
			return nil
		}
		return tx.Update(ref, append(ups, firestore.Update{Path: "updatedAt", Value: now}))
	})
	return out, err
}

// ClearNotFound ends a 404 streak (a call on the calendar succeeded).
func (s *Store) ClearNotFound(ctx context.Context, key string) error {
	_, err := s.CalendarRef(key).Update(ctx, clearNotFound)
	return wrapNotFound(err, "calendar "+key)
}

var clearNotFound = []firestore.Update{
	{Path: "notFoundCount", Value: firestore.Delete},
	{Path: "notFoundSince", Value: firestore.Delete},
}

// ProbeResult records a probe of a not_found calendar: found, it is active
// again (the streak and the reason cleared); not found, lastProbeAt moves on.
// Only a calendar still not_found is changed. It reports whether the
// calendar was re-activated.
func (s *Store) ProbeResult(ctx context.Context, key string, found bool) (bool, error) {
	ref := s.CalendarRef(key)
	reactivated := false
	defer s.lockCalendar(key)()
	err := s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		reactivated = false
		snap, err := tx.Get(ref)
		if err != nil {
			return wrapNotFound(err, "calendar "+key)
		}
		if st, _ := snap.DataAt("status"); st != StatusNotFound {
			return nil
		}
		now := s.now()
		ups := []firestore.Update{{Path: "lastProbeAt", Value: now}, {Path: "updatedAt", Value: now}}
		if found {
			reactivated = true
			ups = append(ups, append([]firestore.Update{{Path: "status", Value: StatusActive},
				{Path: "statusReason", Value: firestore.Delete}}, clearNotFound...)...)
		}
		return tx.Update(ref, ups)
	})
	return reactivated, err
}

// SetPollMode records that a calendar is synced by polling (mode
// PollIncremental or PollFull, with why), or by push again (mode "").
func (s *Store) SetPollMode(ctx context.Context, key, mode, reason string) error {
	_, err := s.CalendarRef(key).Update(ctx, []firestore.Update{
		optional("pollMode", mode), optional("pollReason", reason), {Path: "updatedAt", Value: s.now()}})
	return wrapNotFound(err, "calendar "+key)
}

// PolledCalendars returns the calendars synced by polling (any status), by key.
func (s *Store) PolledCalendars(ctx context.Context) (map[string]Calendar, error) {
	return readAll[Calendar](s.Client.Collection(CollCalendars).Where("pollMode", "in", []string{PollIncremental, PollFull}).Documents(ctx), "calendar")
}
