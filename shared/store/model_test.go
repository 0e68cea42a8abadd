package store

import (
	"regexp"
	"testing"

	"github.com/calsync/calsync/shared/messages"
)

func TestCalendarKey(t *testing.T) {
	a := CalendarKey("user@example.com")
	if a != CalendarKey("user@example.com") {
		t.Fatal("not stable")
	}
	if a == CalendarKey("user@example.org") {
		t.Fatal("collision on different ids")
	}
	safe := regexp.MustCompile(`^c[0-9a-v]{26}$`)
	for _, id := range []string{"primary", "en.usa#holiday@group.v.calendar.google.com", "a/b/../c", "ünï©ødé", ""} {
		if k := CalendarKey(id); !safe.MatchString(k) {
			t.Errorf("CalendarKey(%q) = %q is not a safe document id", id, k)
		}
	}
}

// FuzzCalendarKeyPassesMessages: every key CalendarKey makes passes the
// check the SyncWorker applies to notifications (messages.ValidCalendarKey),
// so no real calendar's notification is ever refused as malformed.
func FuzzCalendarKeyPassesMessages(f *testing.F) {
	for _, id := range []string{"", "primary", "user@example.com", "en.usa#holiday@group.v.calendar.google.com", "a/b/../c", "ünï©ødé", "\x00\xff"} {
		f.Add(id)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if k := CalendarKey(id); !messages.ValidCalendarKey(k) {
			t.Fatalf("CalendarKey(%q) = %q fails messages.ValidCalendarKey", id, k)
		}
	})
}
