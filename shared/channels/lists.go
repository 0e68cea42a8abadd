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
// identity's key (store.IdentityKey: "i…", never a calendar key "c…", so
// the two kinds of chains never share an id), record Resource
// "calendarList", token resource channeltoken.ResourceCalendarList.

// target is what a channel watches, and as whom.
type target struct {
	key, label string         // record's calendarKey and calendarId
	resource   string         // channeltoken resource ("" events, "calendarList")
	auth       store.Calendar // credentials (and status: active or not)
}

func eventsTarget(cal store.Calendar) target {
	return target{key: store.CalendarKey(cal.CalendarID), label: cal.CalendarID, auth: cal}
}

func listTarget(key string, id store.Identity) target {
	return target{key: key, label: id.Label(), resource: channeltoken.ResourceCalendarList, auth: id.AsCalendar()}
}

// call is the watch call of the target's resource.
func (t target) call(ctx context.Context, svc *calendar.Service, ch *calendar.Channel) (*calendar.Channel, error) {
	if t.resource == channeltoken.ResourceCalendarList {
		return svc.CalendarList.Watch(ch).Context(ctx).Do()
	}
	return svc.Events.Watch(t.auth.CalendarID, ch).Context(ctx).Do()
}

// keyAttr names the key in log lines.
func (t target) keyAttr() string {
	if t.resource == channeltoken.ResourceCalendarList {
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
