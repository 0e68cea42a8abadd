package syncer

import (
	"math"
	"testing"
	"time"

	"github.com/calsync/calsync/shared/store"
)

// The coalescing rule's table (pure; store.Admit applies it on the emulator:
// shared/store's tests).
func TestCoalesce(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	before, after := now.Add(-time.Minute), now.Add(time.Minute)
	active := store.Calendar{Status: store.StatusActive, SyncToken: "tok", LastCompletedSyncStartedAt: now.Add(-time.Second)}
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
	inactive.Status = store.StatusAuthRevoked
	seen := func(c store.Calendar) store.Calendar { // channel ch-1: messages 5 and 7 admitted
		c.ChannelMessages = map[string]store.ChannelMessage{"ch-1": {Numbers: []int64{5, 7}, At: before}}
		return c
	}
	legacy := func(c store.Calendar) store.Calendar { // the older shape: {n: 7}
		c.ChannelMessages = map[string]store.ChannelMessage{"ch-1": {Number: 7, At: before}}
		return c
	}
	forged := func(c store.Calendar) store.Calendar { // a replay numbered MaxInt64 was admitted
		c.ChannelMessages = map[string]store.ChannelMessage{"ch-1": {Numbers: []int64{7, math.MaxInt64}, At: before}}
		return c
	}
	push := func(n int64) store.Request {
		return store.Request{ReceivedAt: now, ChannelID: "ch-1", MessageNumber: n, MessageID: "m9"}
	}
	for _, tc := range []struct {
		name string
		c    store.Calendar
		r    store.Request
		want store.Outcome
	}{
		{"quiet calendar syncs", active, store.Request{ReceivedAt: now}, store.OutcomeSync},
		{"received before a completed sync started", active, store.Request{ReceivedAt: before}, store.OutcomeCovered},
		{"no receivedAt is never covered", active, store.Request{}, store.OutcomeSync},
		{"full resync is never covered", active, store.Request{ReceivedAt: before, FullResync: true}, store.OutcomeSync},
		{"sync message, token present", active, store.Request{InitialOnly: true, ReceivedAt: now}, store.OutcomeNothingToDo},
		{"sync message, never synced", noToken, store.Request{InitialOnly: true, ReceivedAt: now}, store.OutcomeSync},
		{"leased: mark dirty", leased, store.Request{ReceivedAt: now}, store.OutcomeMarkedDirty},
		{"leased and dirty: no write", dirty, store.Request{ReceivedAt: now}, store.OutcomeAlreadyDirty},
		{"leased and dirty, full resync asks for its flag", dirty, store.Request{ReceivedAt: now, FullResync: true}, store.OutcomeMarkedDirty},
		{"crashed holder: take over even if covered", expired, store.Request{ReceivedAt: before}, store.OutcomeSync},
		{"the holder's own message again, not yet covered: retry later", anchored, store.Request{ReceivedAt: now, MessageID: "m1"}, store.OutcomeRetryLater},
		{"the holder's own message again, covered by a completed round", anchored, store.Request{ReceivedAt: before, MessageID: "m1"}, store.OutcomeCovered},
		{"another message for the held calendar", anchored, store.Request{ReceivedAt: now, MessageID: "m2"}, store.OutcomeMarkedDirty},
		{"the holder's message once its lease ran out: take over", func() store.Calendar { c := anchored; c.LeaseUntil = before; c.Dirty = true; return c }(), store.Request{ReceivedAt: before, MessageID: "m1"}, store.OutcomeSync},
		{"inactive", inactive, store.Request{ReceivedAt: now}, store.OutcomeInactive},
		{"replay of an admitted push", seen(active), push(7), store.OutcomeDuplicate},
		{"an earlier push arriving late costs a sync", seen(active), push(3), store.OutcomeSync},
		{"an earlier admitted push", seen(active), push(5), store.OutcomeDuplicate},
		{"after a forged huge number, a real push syncs", forged(active), push(8), store.OutcomeSync},
		{"after a forged huge number, a real push marks dirty", forged(leased), push(8), store.OutcomeMarkedDirty},
		{"the forged number again", forged(active), push(math.MaxInt64), store.OutcomeDuplicate},
		{"older shape: its number is a duplicate", legacy(active), push(7), store.OutcomeDuplicate},
		{"older shape: not a maximum", legacy(active), push(6), store.OutcomeSync},
		{"the next push", seen(active), push(8), store.OutcomeSync},
		{"another channel's push", seen(active), store.Request{ReceivedAt: now, ChannelID: "ch-2", MessageNumber: 1}, store.OutcomeSync},
		{"a sync request is never a duplicate", seen(active), store.Request{ReceivedAt: now}, store.OutcomeSync},
		{"replay while a sync runs: no write", seen(leased), push(7), store.OutcomeDuplicate},
		{"the holder's own message again, though recorded: retry later", seen(anchored), store.Request{ReceivedAt: now, ChannelID: "ch-1", MessageNumber: 7, MessageID: "m1"}, store.OutcomeRetryLater},
		{"replay when a crashed holder left it dirty: take over", seen(expired), push(7), store.OutcomeSync},
		{"purge of a calendar enrolled again: nothing to purge", active, store.Request{Purge: true}, store.OutcomeInactive},
		{"purge while a sync holds it: retry later", func() store.Calendar { c := leased; c.Status = store.StatusUnwatched; return c }(), store.Request{Purge: true}, store.OutcomeRetryLater},
		{"purge of an unwatched calendar: take the lease", func() store.Calendar { c := expired; c.Status = store.StatusUnwatched; return c }(), store.Request{Purge: true}, store.OutcomeSync},
		{"replay covered by a completed round", seen(active), store.Request{ReceivedAt: before, ChannelID: "ch-1", MessageNumber: 7}, store.OutcomeCovered},
	} {
		if got := Coalesce(tc.c, tc.r, now); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
	// A purge is taken only for an unenrolled (unwatched) calendar: never for
	// one still followed, whatever its problem.
	for _, status := range []string{store.StatusAuthRevoked, store.StatusNotFound, store.StatusError, store.StatusDelegationUnauthorized,
		store.StatusScopeMissing, store.StatusAPIDisabled, store.StatusAdminPolicy, store.StatusClientDisabled, store.StatusUnenrolled, ""} {
		c := active
		c.Status = status
		if got := Coalesce(c, store.Request{Purge: true}, now); got != store.OutcomeInactive {
			t.Errorf("purge of a %q calendar: got %s, want %s (mirror kept)", status, got, store.OutcomeInactive)
		}
	}
}
