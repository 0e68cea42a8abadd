package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/store"
)

// revoke handles a dead grant met on op for t. The grant's identity (if
// enrolled and active), its credential (oauth) and every calendar read with
// it (oauth: credentialId; delegation: subject; adc: the calendar alone)
// become auth_revoked, and the calendars' channels are stopped. The call
// that changed anything logs the one ERROR auth_revoked line, whichever
// engine met the grant first; later ones (other calendars of the grant,
// other instances) change nothing and stay silent.
func (o *Owner) revoke(ctx context.Context, t Target, op Op, cause error) (bool, error) {
	return o.markGrant(ctx, t, op, cause, store.StatusAuthRevoked)
}

// markGrant gives a refused grant's identity and calendars status (see
// revoke; only a dead grant's credential is marked: another refusal is
// cured by a person, and the same credential may work again). The ERROR
// line's event is the status, with the advice of what to do.
func (o *Owner) markGrant(ctx context.Context, t Target, op Op, cause error, status string) (bool, error) {
	g := grantOf(t)
	if o.Clients != nil {
		o.Clients.Forget(g)
	}
	reason := reasonOf(op, cause)
	changed := false
	idKey := ""
	if g.AuthMode == store.AuthOAuth || g.AuthMode == store.AuthDelegation {
		idKey = g.IdentityKey()
		did, err := o.Store.DenyIdentity(ctx, idKey, status, reason)
		switch {
		case errors.Is(err, store.ErrNotFound):
			idKey = "" // not enrolled: a grant of operator-registered calendars
		case err != nil:
			return false, err
		}
		changed = did
		if t.Kind == KindIdentity && !did {
			id, err := o.Store.GetIdentity(ctx, t.Key)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return false, err
			}
			if id.Status != status {
				// Unenrolled since it was read (a suspended user's
				// directory diff): its calendars are unwatched, not
				// auth_revoked.
				o.log(ctx).InfoContext(ctx, "identity's grant failed after it was unenrolled; nothing changed",
					logging.KeyEvent, logging.EventDiscovery, logging.KeyIdentityKey, t.Key, logging.KeyOperation, string(op),
					logging.KeyReason, reason)
				return false, nil
			}
		}
	}
	if g.AuthMode == store.AuthOAuth && status == store.StatusAuthRevoked {
		did, err := o.Store.RevokeCredential(ctx, g.CredentialID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return changed, fmt.Errorf("revoke credential %s: %w", g.CredentialID, err)
		}
		changed = changed || did
	}
	cals, err := o.grantCalendars(ctx, g)
	if err != nil {
		return changed, fmt.Errorf("calendars of the grant: %w", err)
	}
	if t.Kind == KindCalendar && t.Calendar.CalendarID != "" {
		if _, ok := cals[t.Key]; !ok {
			cals[t.Key] = t.Calendar
		}
	}
	var errs []error
	if idKey != "" {
		// Calendars it only could read: it is no reader of them any more.
		read, err := o.Store.CalendarsReadBy(ctx, idKey)
		if err != nil {
			return changed, fmt.Errorf("calendars the grant reads: %w", err)
		}
		for k, c := range read {
			if c.EnrolledBy == idKey {
				continue
			}
			if _, err := o.Store.ReplanCalendar(ctx, k, func(cur store.Calendar) store.ListingPlan {
				return PlanReaderLost(k, cur, idKey, reason)
			}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	handed := 0
	for k, c := range cals {
		if c.Status == store.StatusUnwatched {
			continue // nobody follows it: its channels are stopped already
		}
		if len(otherReaders(c)) > 0 {
			// Another grant lists it: it reads the calendar from now on.
			did, err := o.handOver(ctx, k, c, reason)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if did {
				handed++
				changed = true
				continue
			}
		}
		if c.Status != status {
			if err := o.Store.SetStatus(ctx, k, status, reason, ""); err != nil && !errors.Is(err, store.ErrNotFound) {
				errs = append(errs, err)
				continue
			}
			changed = true
		}
		if err := o.stopChannels(ctx, k, c, status); err != nil {
			errs = append(errs, err)
		}
	}
	if changed {
		msg := "grant revoked: its identity, credential and calendars marked auth_revoked, channels stopped; reconnect the user"
		if status != store.StatusAuthRevoked {
			msg = "Google refuses the grant: its identity and calendars marked " + status + ", channels stopped; " + Advice(status)
		}
		o.log(ctx).ErrorContext(ctx, msg,
			logging.KeyEvent, status, // the event is the status (logging.EventAuthRevoked, EventScopeMissing, ...)
			logging.KeyAdvice, Advice(status),
			logging.KeyCalendarKey, calendarKey(t),
			logging.KeyCalendarID, t.Calendar.CalendarID,
			logging.KeyIdentityKey, idKey,
			logging.KeyOperation, string(op),
			logging.KeyAuthMode, g.AuthMode,
			logging.KeyCredentialID, g.CredentialID,
			logging.KeySubject, g.Subject,
			logging.KeyCalendars, len(cals),
			"handedOver", handed,
			logging.KeyError, errString(cause))
		o.announceAuthProblem(ctx, t, idKey, status, reason)
	}
	return changed, errors.Join(errs...)
}

// grantOf is the grant a target is read with.
func grantOf(t Target) store.Grant {
	if t.Kind == KindIdentity {
		return t.Identity.Grant()
	}
	return t.Calendar.Grant()
}

// grantCalendars are the calendars read with grant g, by key.
func (o *Owner) grantCalendars(ctx context.Context, g store.Grant) (map[string]store.Calendar, error) {
	switch g.AuthMode {
	case store.AuthOAuth:
		return o.Store.CalendarsWithCredential(ctx, g.CredentialID)
	case store.AuthDelegation:
		return o.Store.CalendarsWithSubject(ctx, g.Subject)
	}
	return map[string]store.Calendar{}, nil
}

// stopChannels stops a calendar's live channels through the Stopper, or,
// without one or when the API stop fails (a dead grant's usually does),
// ends their records.
func (o *Owner) stopChannels(ctx context.Context, key string, c store.Calendar, status string) error {
	if o.Stopper != nil {
		if _, err := o.Stopper.StopCalendar(ctx, c, status); err == nil {
			return nil
		}
	}
	chans, err := o.Store.ChannelsOfCalendar(ctx, key)
	if err != nil {
		return err
	}
	ret := o.Retention
	if ret <= 0 {
		ret = 72 * time.Hour
	}
	now := time.Now().UTC()
	for _, ch := range chans {
		if ch.State == store.ChannelActive || ch.State == store.ChannelPending {
			if err := o.Store.EndChannel(ctx, ch.ChannelID, store.ChannelStopped, now, now.Add(ret)); err != nil {
				return err
			}
		}
	}
	return nil
}

// handOver hands calendar c (key) from its reader, which lost it, to its
// next best reader: the former reader's channels are stopped, the token
// dropped (the next sync is full, with the new reader) and the calendar
// marked dirty. false: no other reader (nothing changed).
func (o *Owner) handOver(ctx context.Context, key string, c store.Calendar, reason string) (bool, error) {
	lost := c.EnrolledBy
	p, err := o.Store.ReplanCalendar(ctx, key, func(cur store.Calendar) store.ListingPlan {
		if cur.EnrolledBy != lost {
			return store.ListingPlan{Stale: true} // handed over meanwhile
		}
		return PlanReaderLost(key, cur, lost, reason)
	})
	if err != nil || p.Stale || len(p.Writes) == 0 {
		return false, err
	}
	to := p.Writes[0].Cal
	if err := o.stopChannels(ctx, key, c, "reader_changed"); err != nil {
		return true, err
	}
	o.log(ctx).InfoContext(ctx, "calendar's reader lost it; read with the next best reader, full resync", logging.KeyEvent, logging.EventReaderChanged,
		logging.KeyCalendarKey, key, logging.KeyCalendarID, c.CalendarID, "from", lost, "to", to.EnrolledBy, "toRole", to.AccessRole,
		logging.KeyStatus, to.Status, logging.KeyReason, reason)
	return true, nil
}

// retryHandedOver: a calendar target whose dead grant handed it to another
// reader is retried at once (with that reader), not skipped.
func (o *Owner) retryHandedOver(ctx context.Context, t Target, res *Result) {
	if t.Kind != KindCalendar || len(otherReaders(t.Calendar)) == 0 {
		return
	}
	if c, err := o.Store.GetCalendar(ctx, t.Key); err == nil && c.Status == store.StatusActive && c.Grant() != t.Calendar.Grant() {
		res.Next = RetryLater
	}
}
