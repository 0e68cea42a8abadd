package credentials

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/store"
)

// ChannelStopper stops a calendar's live channels (channels.Manager). With a
// revoked grant Google's channels.stop usually fails too; the records are
// marked stopped anyway.
type ChannelStopper interface {
	StopCalendar(ctx context.Context, cal store.Calendar, reason string) (stopped int, err error)
}

// ClientCache drops the cached Calendar client of a calendar's identity
// (calclient.Factory), so a dead grant's token is not used again.
type ClientCache interface {
	Forget(cal store.Calendar)
}

// Revoker handles a dead grant: the one place that does, for the SyncWorker,
// RenewChannels and the CLI alike.
type Revoker struct {
	Store *store.Store
	// Clients, if set, forgets the grant's cached client first.
	Clients ClientCache
	// Stopper stops the calendars' channels; nil: only the records are marked
	// stopped (store.EndChannel), no Calendar API call.
	Stopper ChannelStopper
	Logger  *slog.Logger // nil: logging.FromContext(ctx)
	// Retention is how long stopped records are kept (default 3 days).
	Retention time.Duration
}

// Revoked handles a dead grant (calclient.IsAuthRevoked) seen while reading
// cal. For an oauth calendar, its credential and every calendar using it
// (credentialId == X) become auth_revoked; for delegation, every calendar of
// the subject; for adc, cal alone. Their channels are stopped. Exactly one
// caller (the one that flips the credential, or the calendar) logs one ERROR
// with event auth_revoked. Safe to call many times, concurrently.
func (r *Revoker) Revoked(ctx context.Context, cal store.Calendar, cause error) error {
	if r.Clients != nil {
		r.Clients.Forget(cal)
	}
	now := time.Now().UTC()
	log := r.Logger
	if log == nil {
		log = logging.FromContext(ctx)
	}
	key := store.CalendarKey(cal.CalendarID)
	var (
		cals    map[string]store.Calendar
		err     error
		changed bool
	)
	switch cal.AuthMode {
	case store.AuthOAuth:
		changed, err = r.Store.RevokeCredential(ctx, cal.CredentialID)
		if errors.Is(err, store.ErrNotFound) {
			changed, err = true, nil
		}
		if err != nil {
			return fmt.Errorf("credentials: revoke %s: %w", cal.CredentialID, err)
		}
		cals, err = r.Store.CalendarsWithCredential(ctx, cal.CredentialID)
	case store.AuthDelegation:
		cals, err = r.Store.CalendarsWithSubject(ctx, cal.Subject)
	default:
		cals = map[string]store.Calendar{}
	}
	if err != nil {
		return fmt.Errorf("credentials: calendars of the grant: %w", err)
	}
	if _, ok := cals[key]; !ok && cal.CalendarID != "" {
		cals[key] = cal
	}
	reason := "invalid_grant"
	if cause != nil {
		reason = "invalid_grant: " + cause.Error()
	}
	var errs []error
	flipped := 0
	for k, c := range cals {
		if c.Status == store.StatusUnwatched {
			continue // nobody follows it: its channels are stopped already
		}
		if c.Status != store.StatusAuthRevoked {
			if err := r.Store.SetStatus(ctx, k, store.StatusAuthRevoked, reason, ""); err != nil && !errors.Is(err, store.ErrNotFound) {
				errs = append(errs, err)
				continue
			}
			flipped++
		}
		if err := r.stop(ctx, k, c, now); err != nil {
			errs = append(errs, err)
		}
	}
	// Log when this call changed anything: the credential or a calendar.
	changed = changed || flipped > 0
	if changed {
		log.ErrorContext(ctx, "calendar grant revoked: calendars marked auth_revoked, channels stopped; reconnect the user",
			logging.KeyEvent, logging.EventAuthRevoked,
			logging.KeyCalendarKey, key,
			logging.KeyCalendarID, cal.CalendarID,
			logging.KeyAuthMode, cal.AuthMode,
			logging.KeyCredentialID, cal.CredentialID,
			logging.KeySubject, cal.Subject,
			logging.KeyCalendars, len(cals),
			logging.KeyError, errString(cause))
	}
	return errors.Join(errs...)
}

func (r *Revoker) stop(ctx context.Context, key string, c store.Calendar, now time.Time) error {
	if r.Stopper != nil {
		if _, err := r.Stopper.StopCalendar(ctx, c, "auth_revoked"); err == nil {
			return nil
		}
		// Fall through: with a dead grant the API stop fails; end the records.
	}
	chans, err := r.Store.ChannelsOfCalendar(ctx, key)
	if err != nil {
		return err
	}
	ret := r.Retention
	if ret <= 0 {
		ret = 72 * time.Hour
	}
	for _, ch := range chans {
		if ch.State == store.ChannelActive || ch.State == store.ChannelPending {
			if err := r.Store.EndChannel(ctx, ch.ChannelID, store.ChannelStopped, now, now.Add(ret)); err != nil {
				return err
			}
		}
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
