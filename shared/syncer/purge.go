package syncer

import (
	"context"
	"errors"
	"log/slog"

	"github.com/google/uuid"

	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
)

// Purging an unenrolled calendar's mirror (a "purge" request, published by
// shared/enroll when a calendar is unenrolled with its mirror deleted). It
// runs under the calendar's lease like a sync, with every write fenced: the
// sweep of a full round with nothing listed, so each event document is
// deleted and its "deleted" change published first (consumers see the
// calendar empty out, as the feed's contract says: one message per event
// written to or deleted from the mirror). The sync token goes too, so a
// calendar enrolled again starts with a full sync. Only an unwatched calendar
// is purged: one active again, or still followed with a problem status, is
// left as it is; one a sync still holds is retried later.
func (s *Syncer) purge(ctx context.Context, n messages.Notification) error {
	key := n.CalendarKey
	log := s.o.Logger.With(logging.KeyCalendarKey, key)
	lease := store.Lease{Owner: s.o.Instance + "/" + uuid.NewString(), Duration: s.o.LeaseDuration, Now: s.o.Now}
	ctx = context.WithValue(ctx, sessionKey{}, n) // fail lets go for this request
	adm, err := retry(ctx, s, func() (store.Admission, error) { return s.o.Store.Admit(ctx, key, requestOf(n), lease, Coalesce) })
	if err != nil {
		log.Error("purge not admitted; Pub/Sub will redeliver", logging.KeyEvent, logging.EventSyncError, logging.KeyError, err.Error())
		return err
	}
	switch adm.Outcome {
	case store.OutcomeSync:
	case store.OutcomeRetryLater:
		log.Info("purge waits for the sync holding the calendar; Pub/Sub will retry it", logging.KeyReason, string(adm.Outcome))
		return ErrRetryLater
	case store.OutcomeInactive:
		if adm.Calendar.Status == store.StatusActive {
			log.Info("purge of a calendar enrolled again; its mirror is kept", logging.KeyReason, "active")
			return nil
		}
		// Only an unenrolled (unwatched) calendar is purged: a purge for one
		// still followed is not what unenrolling asks for.
		log.Warn("purge refused: only an unwatched calendar's mirror is purged; its mirror is kept", logging.KeyReason, adm.Calendar.Status)
		return nil
	default:
		log.Warn("purge of a calendar that is not registered; acknowledged", logging.KeyReason, string(adm.Outcome))
		return nil
	}
	log = log.With(logging.KeyCalendarID, adm.Calendar.CalendarID)
	hl := newHolding(key, adm.Lease)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	hbDone := make(chan struct{})
	go s.keepLease(ctx, cancel, log, hl, hbDone)
	defer func() { cancel(nil); <-hbDone }()

	err = s.purgeUnderLease(ctx, log, key, adm.Calendar, hl)
	if err != nil {
		if c := context.Cause(ctx); c != nil && errors.Is(c, store.ErrLeaseLost) {
			err = c
		}
		return s.fail(ctx, log, key, adm.Calendar, hl, err)
	}
	return nil
}

func (s *Syncer) purgeUnderLease(ctx context.Context, log *slog.Logger, key string, cal store.Calendar, hl *sessionLease) error {
	lease := hl.lease
	rd, err := retry(ctx, s, func() (store.Round, error) { return s.o.Store.StartRound(ctx, key, lease, true) })
	if err != nil {
		return err
	}
	leftover, err := retry(ctx, s, func() ([]string, error) { return s.o.Store.Announcing(ctx, key) })
	if err != nil {
		return err
	}
	st := &roundState{key: key, calendarID: cal.CalendarID, h: hl, startedAt: rd.StartedAt, full: true, purge: true,
		by: cal.Attribution(), listed: map[string]struct{}{}, invocations: 1, res: &result{full: true}}
	st.log = log
	if err := s.sweep(ctx, st); err != nil {
		return err
	}
	if err := s.resolveGhosts(ctx, st, leftover); err != nil {
		return err
	}
	_, err = retry(ctx, s, func() (bool, error) {
		return s.o.Store.Complete(ctx, key, lease, store.Completion{Round: store.Round{StartedAt: rd.StartedAt, Full: true},
			EventCount: 0, HandOver: true})
	})
	if err != nil {
		return err
	}
	log.Info("mirror purged: every event deleted and announced", logging.KeyEvent, logging.EventMirrorPurged,
		logging.KeyDeleted, st.res.deleted, logging.KeyDurationMs, s.now().Sub(rd.StartedAt).Milliseconds())
	return nil
}
