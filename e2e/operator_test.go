package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/calsync/calsync/shared/store"
)

// watchCalendar registers a calendar (auth mode adc: with the emulator
// endpoint the functions act as its default user) and lets RenewChannels'
// repair step make its channel, as the scheduler's next run would.
func watchCalendar(t *testing.T, ctx context.Context, calID string) {
	t.Helper()
	if _, err := store.RegisterCalendar(ctx, firestoreClient(t), store.Calendar{CalendarID: calID, AuthMode: store.AuthADC}, time.Now().UTC()); err != nil {
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
	if err := store.SetCalendarStatus(ctx, firestoreClient(t), store.CalendarKey(calID), store.StatusUnwatched, "e2e unwatch", time.Now().UTC()); err != nil {
		t.Fatalf("unwatch %s: %v", calID, err)
	}
	renew(t, ctx)
}
