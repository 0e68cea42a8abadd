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
	for k, c := range cals {
		if c.Status == store.StatusUnwatched {
			continue // nobody follows it: its channels are stopped already
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
			logging.KeyError, errString(cause))
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
