package store

import (
	"context"
	"testing"
	"time"
)

// A channel says what it watches in Kind; records written before Kind was
// stored (an identity key in calendarKey, resource "calendarList") read the
// same.
func TestChannelKinds(t *testing.T) {
	ctx := context.Background()
	st := testStore(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	idKey := Grant{AuthMode: AuthDelegation, Subject: "ann@corp.test"}.IdentityKey()
	calKey := CalendarKey("ann@corp.test")
	old := map[string]any{"channelId": "old-list", "calendarKey": idKey, "calendarId": "ann@corp.test", "resource": "calendarList",
		"state": ChannelActive, "expiration": now.Add(time.Hour), "createdAt": now}
	if _, err := st.ChannelRef("old-list").Set(ctx, old); err != nil {
		t.Fatal(err)
	}
	oldEvents := map[string]any{"channelId": "old-events", "calendarKey": calKey, "calendarId": "ann@corp.test",
		"state": ChannelActive, "expiration": now.Add(time.Hour), "createdAt": now}
	if _, err := st.ChannelRef("old-events").Set(ctx, oldEvents); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateChannel(ctx, Channel{ChannelID: "new-list", Kind: WatchesCalendarList, Key: idKey, CalendarID: "subject:ann@corp.test",
		Resource: "calendarList", State: ChannelActive, Expiration: now.Add(time.Hour), CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		kind ChannelKind
		key  string
	}{"old-list": {WatchesCalendarList, idKey}, "old-events": {WatchesEvents, calKey}, "new-list": {WatchesCalendarList, idKey}}
	for id, w := range want {
		ch, err := st.GetChannel(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if ch.Watches() != w.kind || ch.Key != w.key {
			t.Errorf("%s: watches %s of %s, want %s of %s", id, ch.Watches(), ch.Key, w.kind, w.key)
		}
	}
	snap, err := st.ChannelRef("new-list").Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := snap.DataAt("kind"); k != string(WatchesCalendarList) {
		t.Errorf("stored kind %v", k)
	}
	if k, _ := snap.DataAt("calendarKey"); k != idKey {
		t.Errorf("stored calendarKey %v: the field name older instances read", k)
	}
	lists, err := st.ChannelsOfCalendar(ctx, idKey)
	if err != nil || len(lists) != 2 {
		t.Errorf("the identity's channels: %d %v", len(lists), err)
	}
}
