package calclient

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckScopes(t *testing.T) {
	events, list := Scope, ListScope
	cases := []struct {
		granted string
		missing []string
	}{
		{events + " " + list, nil},
		{"openid " + list + " https://www.googleapis.com/auth/userinfo.email " + events, nil},
		{"https://www.googleapis.com/auth/calendar", nil},
		{"https://www.googleapis.com/auth/calendar.readonly", nil},
		{"https://www.googleapis.com/auth/calendar.events " + list, nil},
		{events, []string{list}},
		{list, []string{events}},
		{"https://www.googleapis.com/auth/calendar.events.owned " + list, []string{events}}, // only the calendars it owns
		{"", []string{events, list}},
	}
	for _, c := range cases {
		got, err := CheckScopes(c.granted)
		if len(c.missing) == 0 {
			if err != nil || len(got) != len(strings.Fields(c.granted)) {
				t.Errorf("CheckScopes(%q) = %q, %v; want it accepted", c.granted, got, err)
			}
			continue
		}
		if !errors.Is(err, ErrScopesMissing) {
			t.Errorf("CheckScopes(%q): %v, want ErrScopesMissing", c.granted, err)
			continue
		}
		for _, m := range c.missing {
			if !strings.Contains(err.Error(), m+",") && !strings.Contains(err.Error(), m+" (") {
				t.Errorf("CheckScopes(%q): %v does not name %s", c.granted, err, m)
			}
		}
	}
}
