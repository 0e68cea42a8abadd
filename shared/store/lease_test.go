package store

import (
	"math"
	"slices"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	before, after := now.Add(-time.Minute), now.Add(time.Minute)
	active := Calendar{Status: StatusActive, SyncToken: "tok", LastCompletedSyncStartedAt: now.Add(-time.Second)}
	leased := active
	leased.LeaseOwner, leased.LeaseUntil = "w1", after
	dirty := leased
	dirty.Dirty = true
	anchored := leased
	anchored.LeaseMessageID = "m1"
	expired := dirty
	expired.LeaseUntil = before
	noToken := active
	noToken.SyncToken = ""
	inactive := active
	inactive.Status = StatusAuthRevoked
	unwatched := active
	unwatched.Status = StatusUnwatched
	seen := func(c Calendar) Calendar { // channel ch-1: messages 5 and 7 admitted
		c.ChannelMessages = map[string]ChannelMessage{"ch-1": {Numbers: []int64{5, 7}, At: before}}
		return c
	}
	legacy := func(c Calendar) Calendar { // the older shape: {n: 7}
		c.ChannelMessages = map[string]ChannelMessage{"ch-1": {Number: 7, At: before}}
		return c
	}
	forged := func(c Calendar) Calendar { // a replay numbered MaxInt64 was admitted
		c.ChannelMessages = map[string]ChannelMessage{"ch-1": {Numbers: []int64{7, math.MaxInt64}, At: before}}
		return c
	}
	push := func(n int64) Request {
		return Request{ReceivedAt: now, ChannelID: "ch-1", MessageNumber: n, MessageID: "m9"}
	}
	for _, tc := range []struct {
		name string
		c    Calendar
		r    Request
		want Outcome
	}{
		{"quiet calendar syncs", active, Request{ReceivedAt: now}, OutcomeSync},
		{"received before a completed sync started", active, Request{ReceivedAt: before}, OutcomeCovered},
		{"no receivedAt is never covered", active, Request{}, OutcomeSync},
		{"full resync is never covered", active, Request{ReceivedAt: before, FullResync: true}, OutcomeSync},
		{"sync message, token present", active, Request{InitialOnly: true, ReceivedAt: now}, OutcomeNothingToDo},
		{"sync message, never synced", noToken, Request{InitialOnly: true, ReceivedAt: now}, OutcomeSync},
		{"leased: mark dirty", leased, Request{ReceivedAt: now}, OutcomeMarkedDirty},
		{"leased and dirty: no write", dirty, Request{ReceivedAt: now}, OutcomeAlreadyDirty},
		{"leased and dirty, full resync asks for its flag", dirty, Request{ReceivedAt: now, FullResync: true}, OutcomeMarkedDirty},
		{"crashed holder: take over even if covered", expired, Request{ReceivedAt: before}, OutcomeSync},
		{"the holder's own message again, not yet covered: retry later", anchored, Request{ReceivedAt: now, MessageID: "m1"}, OutcomeRetryLater},
		{"the holder's own message again, covered by a completed round", anchored, Request{ReceivedAt: before, MessageID: "m1"}, OutcomeCovered},
		{"another message for the held calendar", anchored, Request{ReceivedAt: now, MessageID: "m2"}, OutcomeMarkedDirty},
		{"the holder's message once its lease ran out: take over", func() Calendar { c := anchored; c.LeaseUntil = before; c.Dirty = true; return c }(), Request{ReceivedAt: before, MessageID: "m1"}, OutcomeSync},
		{"inactive", inactive, Request{ReceivedAt: now}, OutcomeInactive},
		{"replay of an admitted push", seen(active), push(7), OutcomeDuplicate},
		{"an earlier push arriving late costs a sync", seen(active), push(3), OutcomeSync},
		{"an earlier admitted push", seen(active), push(5), OutcomeDuplicate},
		{"after a forged huge number, a real push syncs", forged(active), push(8), OutcomeSync},
		{"after a forged huge number, a real push marks dirty", forged(leased), push(8), OutcomeMarkedDirty},
		{"the forged number again", forged(active), push(math.MaxInt64), OutcomeDuplicate},
		{"older shape: its number is a duplicate", legacy(active), push(7), OutcomeDuplicate},
		{"older shape: not a maximum", legacy(active), push(6), OutcomeSync},
		{"the next push", seen(active), push(8), OutcomeSync},
		{"another channel's push", seen(active), Request{ReceivedAt: now, ChannelID: "ch-2", MessageNumber: 1}, OutcomeSync},
		{"a sync request is never a duplicate", seen(active), Request{ReceivedAt: now}, OutcomeSync},
		{"replay while a sync runs: no write", seen(leased), push(7), OutcomeDuplicate},
		{"the holder's own message again, though recorded: retry later", seen(anchored), Request{ReceivedAt: now, ChannelID: "ch-1", MessageNumber: 7, MessageID: "m1"}, OutcomeRetryLater},
		{"replay when a crashed holder left it dirty: take over", seen(expired), push(7), OutcomeSync},
		{"replay covered by a completed round", seen(active), Request{ReceivedAt: before, ChannelID: "ch-1", MessageNumber: 7}, OutcomeCovered},
		{"purge of an unwatched calendar", unwatched, Request{Purge: true}, OutcomeSync},
		{"purge of an unwatched calendar a sync holds: retry later", func() Calendar { c := unwatched; c.LeaseOwner, c.LeaseUntil = "w1", after; return c }(), Request{Purge: true}, OutcomeRetryLater},
		{"purge of an active calendar", active, Request{Purge: true}, OutcomeInactive},
	} {
		if got := decide(tc.c, tc.r, now); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
	// A purge is taken only for an unenrolled (unwatched) calendar: never for
	// one still followed, whatever its problem. The Webhook's account may
	// publish on the notifications topic, so a purge there proves nothing.
	for _, status := range []string{StatusAuthRevoked, StatusNotFound, StatusError, StatusDelegationUnauthorized,
		StatusScopeMissing, StatusAPIDisabled, StatusAdminPolicy, StatusClientDisabled, StatusUnenrolled, ""} {
		c := active
		c.Status = status
		if got := decide(c, Request{Purge: true}, now); got != OutcomeInactive {
			t.Errorf("purge of a %q calendar: got %s, want %s (mirror kept)", status, got, OutcomeInactive)
		}
	}
}

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
