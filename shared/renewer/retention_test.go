package renewer

import (
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
)

// An unwatched calendar's mirror is purged once its last sync is older than
// RETAIN_UNWATCHED_MIRRORS; a recent one, an empty (purged) one and an
// active one are left alone; 0 keeps every mirror.
func TestMirrorsExpire(t *testing.T) {
	e := newEnv(t, calendaremu.Options{})
	old := time.Now().Add(-31 * 24 * time.Hour)
	mk := func(id, status string, synced time.Time, events int) string {
		key := e.register(store.Calendar{CalendarID: id, AuthMode: store.AuthADC}, synced)
		if _, err := e.st.CalendarRef(key).Update(e.ctx, []firestore.Update{{Path: "status", Value: status}, {Path: "eventCount", Value: events}}); err != nil {
			t.Fatal(err)
		}
		return key
	}
	expired := mk("gone-long-ago@x.test", store.StatusUnwatched, old, 12)
	mk("gone-yesterday@x.test", store.StatusUnwatched, time.Now().Add(-24*time.Hour), 3)
	mk("purged@x.test", store.StatusUnwatched, old, 0)
	mk("quiet@x.test", store.StatusAuthRevoked, old, 7)

	keep := e.renewer(func(c *config.RenewChannels) { c.RetainUnwatched = 0 })
	if sum, err := keep.Run(e.ctx); err != nil || sum.MirrorsExpired != 0 {
		t.Fatalf("retention off: %+v %v", sum, err)
	}
	r := e.renewer(func(c *config.RenewChannels) { c.RetainUnwatched = 30 * 24 * time.Hour })
	sum, err := r.Run(e.ctx)
	if err != nil || sum.MirrorsExpired != 1 {
		t.Fatalf("run: %+v %v, want one mirror expired", sum, err)
	}
	var purges []string
	for _, n := range e.received(3*time.Second, 100) {
		if n.ResourceState == messages.StatePurge {
			purges = append(purges, n.CalendarKey)
		}
	}
	if len(purges) != 1 || purges[0] != expired {
		t.Fatalf("purges asked %v, want [%s]", purges, expired)
	}
}
