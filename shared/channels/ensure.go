package channels

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/store"
)

// ExpiringSoonWindow: a kept channel closer than this to its expiry and not
// renewed is reported (summary field expiringSoon).
const ExpiringSoonWindow = 6 * time.Hour

// Outcome says what Ensure did for one calendar.
type Outcome struct {
	Created      bool // a calendar without a live channel got one (ask for a catch-up sync)
	Renewed      bool // the kept channel was replaced (new first, then old stopped)
	Rekeyed      bool // ... because its token was signed with another key than the signing one (key rotation)
	Stopped      int  // channels stopped: orphans, duplicates (not counting a renewal's old channel)
	Expired      int  // records found expired (or abandoned pending) and closed
	ExpiringSoon bool // the kept (pre-existing) channel expires within ExpiringSoonWindow and was not renewed
	Busy         bool // another run holds the calendar's next channel
	// PollOnly: Google will not push for the calendar (or not usefully):
	// it has no channel and is synced on a schedule (Calendar.PollMode;
	// PollMode says how, set by this call when PollModeSet).
	PollOnly    bool
	PollMode    string
	PollModeSet bool
}

// birthdaysSuffix ends the id of every user's birthday calendar
// (addressbook#contacts@group.v.calendar.google.com), whose deletions Google
// does not report in incremental lists.
const birthdaysSuffix = "#contacts@group.v.calendar.google.com"

// KnownPollMode is the poll mode a calendar id calls for before any watch:
// birthday calendars are polled with full syncs. "" for others.
func KnownPollMode(calendarID string) (mode, reason string) {
	if strings.HasSuffix(calendarID, birthdaysSuffix) {
		return store.PollFull, store.PollReasonNoDeletions
	}
	return "", ""
}

// Ensure brings one calendar's channels to the wanted state: cal == nil or
// not active: no live channel (orphans stopped); active: exactly one live
// channel, renewed when it expires within renewBefore. chans are the
// calendar's records (any states; ones read at the start of a run are fine:
// the chain ids make stale views harmless). Dead records are closed.
// Errors of one step do not stop the others; they are joined.
func (m *Manager) Ensure(ctx context.Context, key string, cal *store.Calendar, chans []store.Channel, renewBefore time.Duration) (Outcome, error) {
	var t *target
	if cal != nil {
		et := eventsTarget(*cal)
		t = &et
	}
	return m.ensure(ctx, t, chans, renewBefore)
}

// ensure is Ensure for a calendar's events or an identity's list (lists.go):
// t nil (gone) or not active: no live channel; active: exactly one.
func (m *Manager) ensure(ctx context.Context, t *target, chans []store.Channel, renewBefore time.Duration) (Outcome, error) {
	// Poll mode is for calendars' events (cal), not lists.
	var cal *store.Calendar
	var grant store.Grant
	key, active := "", false
	if t != nil {
		cal, grant, key, active = t.cal, t.grant, t.key, t.active
	}
	var out Outcome
	now := m.now()
	var live []store.Channel
	var latest *store.Channel
	resourceID := ""
	busy := false
	var errs []error
	for i := range chans {
		ch := chans[i]
		if latest == nil || ch.CreatedAt.After(latest.CreatedAt) || (ch.CreatedAt.Equal(latest.CreatedAt) && ch.ChannelID > latest.ChannelID) {
			latest = &chans[i]
		}
		if ch.ResourceID != "" {
			resourceID = ch.ResourceID
		}
		switch ch.State {
		case store.ChannelActive:
			if ch.Expiration.After(now) {
				live = append(live, ch)
				continue
			}
			if err := m.end(ctx, ch, store.ChannelExpired); err != nil {
				errs = append(errs, err)
			} else {
				out.Expired++
			}
		case store.ChannelPending:
			if now.Sub(ch.CreatedAt) < m.pendingTimeout() {
				busy = true
			}
		}
	}
	// Abandoned pending records: their watch may have succeeded before the
	// run died, so try to stop them (Google's resourceId is per calendar).
	for _, ch := range chans {
		if ch.State != store.ChannelPending || now.Sub(ch.CreatedAt) < m.pendingTimeout() {
			continue
		}
		ch.ResourceID = resourceID
		if t == nil || m.Stop(ctx, grant, ch) != nil {
			if err := m.end(ctx, ch, store.ChannelExpired); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		out.Expired++
	}
	if cal != nil && active && cal.PollMode == "" {
		if mode, reason := KnownPollMode(cal.CalendarID); mode != "" {
			if err := m.setPollMode(ctx, key, cal, mode, reason); err != nil {
				return out, errors.Join(append(errs, err)...)
			}
			out.PollModeSet = true
		}
	}
	if cal != nil && active && cal.PollMode != "" {
		// Polled, not pushed: no channel wanted (any left is stopped).
		out.PollOnly, out.PollMode = true, cal.PollMode
	}
	if !active || out.PollOnly {
		for _, ch := range live {
			if err := m.Stop(ctx, grant, ch); err != nil {
				errs = append(errs, err)
				continue
			}
			out.Stopped++
		}
		return out, errors.Join(errs...)
	}
	if busy {
		out.Busy = true
		return out, errors.Join(errs...)
	}
	if len(live) == 0 {
		after := ""
		if latest != nil {
			after = latest.ChannelID
		}
		_, err := m.watch(ctx, *t, after)
		switch {
		case errors.Is(err, ErrBusy):
			out.Busy = true
		case cal != nil && calclient.IsPushNotSupported(err):
			// Google will not watch it (a holiday calendar, say): poll it.
			if perr := m.setPollMode(ctx, key, cal, store.PollIncremental, store.PollReasonPushNotSupported); perr != nil {
				errs = append(errs, perr)
			} else {
				out.PollOnly, out.PollMode, out.PollModeSet = true, store.PollIncremental, true
			}
		case err != nil:
			errs = append(errs, err)
		default:
			out.Created = true
		}
		return out, errors.Join(errs...)
	}
	// Keep the newest (latest in its chain); stop the others.
	sort.Slice(live, func(i, j int) bool {
		if !live[i].CreatedAt.Equal(live[j].CreatedAt) {
			return live[i].CreatedAt.After(live[j].CreatedAt)
		}
		return live[i].ChannelID > live[j].ChannelID
	})
	keep := live[0]
	for _, ch := range live[1:] {
		if err := m.Stop(ctx, grant, ch); err != nil {
			errs = append(errs, err)
			continue
		}
		out.Stopped++
	}
	left := keep.Expiration.Sub(now)
	// A channel whose token another key signed (or one minted before key
	// ids were recorded, a version 1 token) is renewed now, whatever its
	// expiry: that is step 3 of a key rotation (README.md), done by the
	// first run after the new key signs.
	rekey := keep.TokenKeyID != m.Tokens.SigningKeyID()
	if left >= renewBefore && !rekey {
		// Not due; still at risk when the window is shorter than 6 h.
		out.ExpiringSoon = left < ExpiringSoonWindow
		return out, errors.Join(errs...)
	}
	nc, err := m.watch(ctx, *t, keep.ChannelID)
	switch {
	case errors.Is(err, ErrBusy):
		out.Busy = true
	case err != nil:
		errs = append(errs, err)
		out.ExpiringSoon = left < ExpiringSoonWindow
	default:
		if m.afterWatch != nil {
			m.afterWatch(keep, nc)
		}
		if err := m.Stop(ctx, grant, keep); err != nil {
			errs = append(errs, err)
		}
		out.Renewed = true
		out.Rekeyed = rekey
	}
	return out, errors.Join(errs...)
}

// setPollMode has the lifecycle owner record a calendar's poll mode (it
// logs it once).
func (m *Manager) setPollMode(ctx context.Context, key string, cal *store.Calendar, mode, reason string) error {
	res, err := m.lifecycle().Poll(ctx, lifecycle.Calendar(key, *cal), mode, reason)
	if err != nil {
		return fmt.Errorf("channels: poll mode of %s: %w", key, err)
	}
	if res.Changed {
		cal.PollMode, cal.PollReason = mode, reason
	}
	return nil
}
