package e2e

import (
	"context"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/calsync/calsync/shared/store"
)

// watchCalendar registers a calendar (auth mode adc: with the emulator
// endpoint the functions act as its default user) and lets RenewChannels'
// repair step make its channel, as the scheduler's next run would.
func watchCalendar(t *testing.T, ctx context.Context, calID string) {
	t.Helper()
	now := time.Now().UTC()
	_, err := firestoreClient(t).Collection(store.CollCalendars).Doc(store.CalendarKey(calID)).Set(ctx, store.Calendar{
		CalendarID: calID, AuthMode: store.AuthADC, Status: store.StatusActive, CreatedAt: now, UpdatedAt: now,
	})
	if err != nil {
		t.Fatalf("register %s: %v", calID, err)
	}
	renew(t, ctx)
	if len(liveChannels(calID)) == 0 {
		t.Fatalf("RenewChannels made no channel for %s: %+v", calID, sys.Calendar.Channels())
	}
}

// unwatchCalendar marks the calendar unwatched; RenewChannels stops its channels.
func unwatchCalendar(t *testing.T, ctx context.Context, calID string) {
	t.Helper()
	_, err := firestoreClient(t).Collection(store.CollCalendars).Doc(store.CalendarKey(calID)).Update(ctx, []firestore.Update{
		{Path: "status", Value: store.StatusUnwatched}, {Path: "updatedAt", Value: time.Now().UTC()},
	})
	if err != nil {
		t.Fatalf("unwatch %s: %v", calID, err)
	}
	renew(t, ctx)
}
