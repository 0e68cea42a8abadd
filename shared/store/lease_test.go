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
		{"inactive", inactive, Request{ReceivedAt: now}, OutcomeInactive},
	} {
		if got := decide(tc.c, tc.r, now); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}
