package store

import (
	"slices"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
)

func TestRecordMessageKeepsFewRecentChannels(t *testing.T) {
	now := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	c := Calendar{ChannelMessages: map[string]ChannelMessage{
		"old":  {Number: 9, At: now.Add(-9 * 24 * time.Hour)}, // past the TTL
		"a":    {Number: 1, At: now.Add(-4 * time.Hour)},
		"b":    {Number: 1, At: now.Add(-3 * time.Hour)},
		"c":    {Number: 1, At: now.Add(-2 * time.Hour)},
		"d":    {Number: 1, At: now.Add(-1 * time.Hour)},
		"mine": {Number: 12, At: now.Add(-time.Minute)},
	}}
	ups := recordMessage(c, Request{ChannelID: "mine", MessageNumber: 10}, now)
	got := map[string]any{}
	for _, u := range ups {
		got[u.FieldPath[1]] = u.Value
	}
	if m, ok := got["mine"].(ChannelMessage); !ok || !slices.Equal(m.Numbers, []int64{12, 10}) || m.Number != 0 || !m.At.Equal(now) {
		t.Errorf("mine: %v (the older {n} migrated into the exact numbers, the time moves)", got["mine"])
	}
	for _, id := range []string{"old", "a"} { // past the TTL; the oldest beyond 4 entries
		if got[id] != firestore.Delete {
			t.Errorf("%s: %v, want deleted", id, got[id])
		}
	}
	if len(got) != 3 {
		t.Errorf("updates %v: want mine set, old and a deleted, b, c and d kept", got)
	}
	if recordMessage(c, Request{ReceivedAt: now}, now) != nil {
		t.Error("a sync request records nothing")
	}
}

// The numbers kept per channel are the most recently admitted, bounded: a
// flood of forged numbers ages out like anything else.
func TestRecordMessageKeepsRecentNumbers(t *testing.T) {
	now := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	var c Calendar
	for n := int64(1); n <= channelNumbersKept+5; n++ {
		ups := recordMessage(c, Request{ChannelID: "ch", MessageNumber: n}, now)
		c.ChannelMessages = map[string]ChannelMessage{"ch": ups[0].Value.(ChannelMessage)}
	}
	ns := c.ChannelMessages["ch"].Numbers
	if len(ns) != channelNumbersKept || ns[0] != 6 || ns[len(ns)-1] != channelNumbersKept+5 {
		t.Errorf("numbers kept %v, want the last %d admitted", ns, channelNumbersKept)
	}
	ups := recordMessage(c, Request{ChannelID: "ch", MessageNumber: 10}, now)
	if got := ups[0].Value.(ChannelMessage).Numbers; !slices.Equal(got, ns) {
		t.Errorf("a number already kept is not added twice: %v", got)
	}
}
