package store

import (
	"testing"
	"time"
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
	} {
		if got := decide(tc.c, tc.r, now); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}
