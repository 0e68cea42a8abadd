package channels

import (
	"context"
	"errors"
	"fmt"
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
// t nil (gone) or not active: no live channel; active: exactly one. The
// records are sorted and the plan made by decide.go; this does the calls.
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
	r := sortRecords(chans, now, m.pendingTimeout())
	var errs []error
	for _, ch := range r.expired {
		if err := m.end(ctx, ch, store.ChannelExpired); err != nil {
			errs = append(errs, err)
		} else {
			out.Expired++
		}
	}
	// Abandoned pending records: their watch may have succeeded before the
	// run died, so try to stop them.
	for _, ch := range r.abandoned {
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
	p := planChannels(r, wanted{active: active, pollOnly: out.PollOnly, renewBefore: renewBefore, signingKey: m.Tokens.SigningKeyID()}, now)
	out.Busy = p.busy
	for _, ch := range p.stop {
		if err := m.Stop(ctx, grant, ch); err != nil {
			errs = append(errs, err)
			continue
		}
		out.Stopped++
	}
	switch p.watch {
	case watchNone:
		// Not due; still at risk when the window is shorter than 6 h.
		out.ExpiringSoon = p.expiringSoon
	case watchCreate:
		errs = append(errs, m.create(ctx, *t, p.after, &out))
	case watchRenew:
		errs = append(errs, m.renew(ctx, *t, p, &out))
	}
	return out, errors.Join(errs...)
}

// create watches a target that has no live channel, the next in its chain
// after after; a calendar Google will not watch is polled instead.
func (m *Manager) create(ctx context.Context, t target, after string, out *Outcome) error {
	_, err := m.watch(ctx, t, after)
	switch {
	case errors.Is(err, ErrBusy):
		out.Busy = true
	case t.cal != nil && calclient.IsPushNotSupported(err):
		// Google will not watch it (a holiday calendar, say): poll it.
		if err := m.setPollMode(ctx, t.key, t.cal, store.PollIncremental, store.PollReasonPushNotSupported); err != nil {
			return err
		}
		out.PollOnly, out.PollMode, out.PollModeSet = true, store.PollIncremental, true
	case err != nil:
		return err
	default:
		out.Created = true
	}
	return nil
}

// renew replaces the kept channel: its successor first, then it is stopped.
func (m *Manager) renew(ctx context.Context, t target, p channelPlan, out *Outcome) error {
	nc, err := m.watch(ctx, t, p.after)
	switch {
	case errors.Is(err, ErrBusy):
		out.Busy = true
	case err != nil:
		out.ExpiringSoon = p.expiringSoon
		return err
	default:
		if m.afterWatch != nil {
			m.afterWatch(p.keep, nc)
		}
		out.Renewed, out.Rekeyed = true, p.rekey
		return m.Stop(ctx, t.grant, p.keep)
	}
	return nil
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
