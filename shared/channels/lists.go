package channels

import (
	"context"
	"errors"
	"time"

	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/store"
)

// Channels on an identity's calendar list (calendarList.watch): the same
// chain of ids, records and renewal as a calendar's channels, keyed by the
// identity's key (store.Grant.IdentityKey: "i…", never a calendar key "c…", so
// the two kinds of chains never share an id), record Kind
// store.WatchesCalendarList, token resource channeltoken.ResourceCalendarList.

// target is what a channel watches, and with which grant.
type target struct {
	kind       store.ChannelKind
	key, label string // record's key and calendarId
	resource   string // channeltoken resource ("" events, "calendarList")
	grant      store.Grant
	active     bool   // the calendar or identity is followed: it wants a channel
	epoch      string // the current chain's epoch (ClaimChannelEpoch)
	// cal is the calendar of an events target (poll mode); nil for a list.
	cal *store.Calendar
}

func eventsTarget(cal store.Calendar) target {
	return target{kind: store.WatchesEvents, key: cal.Key(), label: cal.CalendarID, grant: cal.Grant(),
		active: cal.Status == store.StatusActive, epoch: cal.ChannelEpoch, cal: &cal}
}

func listTarget(key string, id store.Identity) target {
	return target{kind: store.WatchesCalendarList, key: key, label: id.Grant().Key(), resource: channeltoken.ResourceCalendarList, grant: id.Grant(),
		active: id.Status == store.StatusActive, epoch: id.ChannelEpoch}
}

// call is the watch call of the target's resource.
func (t target) call(ctx context.Context, svc *calendar.Service, ch *calendar.Channel) (*calendar.Channel, error) {
	if t.resource == channeltoken.ResourceCalendarList {
		return svc.CalendarList.Watch(ch).Context(ctx).Do()
	}
	return svc.Events.Watch(t.label, ch).Context(ctx).Do()
}

// keyAttr names the key of what a channel of kind k watches in log lines.
func keyAttr(k store.ChannelKind) string {
	if k == store.WatchesCalendarList {
		return logging.KeyIdentityKey
	}
	return logging.KeyCalendarKey
}

// EnsureList brings an identity's calendar-list channels to the wanted
// state, as Ensure does a calendar's: active identity, exactly one live
// channel renewed within renewBefore; id nil or not active, none. chans are
// the records with calendarKey == key.
func (m *Manager) EnsureList(ctx context.Context, key string, id *store.Identity, chans []store.Channel, renewBefore time.Duration) (Outcome, error) {
	var t *target
	if id != nil {
		lt := listTarget(key, *id)
		t = &lt
	}
	return m.ensure(ctx, t, chans, renewBefore)
}

// EnsureListNow reads the identity's channel records and ensures them
// (EnsureList); ErrBusy is not an error here (another run is at it).
func (m *Manager) EnsureListNow(ctx context.Context, key string, id *store.Identity, renewBefore time.Duration) (Outcome, error) {
	chans, err := m.Store.ChannelsOfCalendar(ctx, key)
	if err != nil {
		return Outcome{}, err
	}
	out, err := m.EnsureList(ctx, key, id, chans, renewBefore)
	if errors.Is(err, ErrBusy) {
		err = nil
	}
	return out, err
}
