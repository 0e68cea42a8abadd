package store

import (
	"regexp"
	"testing"
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
