package messages

import (
	"errors"
	"strings"
	"testing"
)

const goodKey = "c0123456789abcdefghijklmnop" // c + 26 base32hex

func TestParseNotification(t *testing.T) {
	n, err := ParseNotification([]byte(`{"calendarKey":"` + goodKey + `","resourceState":"exists","channelId":"ch","messageNumber":7}`))
	if err != nil || n.CalendarKey != goodKey || n.ResourceState != StateExists || n.ChannelID != "ch" || n.MessageNumber != 7 {
		t.Fatalf("valid notification: %+v, %v", n, err)
	}
	for _, state := range []string{StateSync, StateExists, StateNotExists, StateReconcile, StateFullResync} {
		if _, err := ParseNotification([]byte(`{"calendarKey":"` + goodKey + `","resourceState":"` + state + `"}`)); err != nil {
			t.Errorf("state %s: %v", state, err)
		}
	}
}

func TestParseNotificationRefuses(t *testing.T) {
	for _, tc := range []struct{ name, data, reason string }{
		{"not JSON", `not json`, ReasonNotJSON},
		{"empty", ``, ReasonNotJSON},
		{"array", `[1]`, ReasonNotJSON},
		{"key of the wrong type", `{"calendarKey":7,"resourceState":"exists"}`, ReasonNotJSON},
		{"null", `null`, ReasonNoCalendarKey},
		{"no key", `{"resourceState":"exists"}`, ReasonNoCalendarKey},
		{"path traversal", `{"calendarKey":"../../x","resourceState":"exists"}`, ReasonBadCalendarKey},
		{"slash", `{"calendarKey":"c0123456789abcdefghijklmn/p","resourceState":"exists"}`, ReasonBadCalendarKey},
		{"upper case", `{"calendarKey":"C0123456789ABCDEFGHIJKLMNOP","resourceState":"exists"}`, ReasonBadCalendarKey},
		{"outside base32hex", `{"calendarKey":"c0123456789abcdefghijklmnow","resourceState":"exists"}`, ReasonBadCalendarKey},
		{"one short", `{"calendarKey":"c0123456789abcdefghijklmno","resourceState":"exists"}`, ReasonBadCalendarKey},
		{"one long", `{"calendarKey":"` + goodKey + `0","resourceState":"exists"}`, ReasonBadCalendarKey},
		{"wrong prefix", `{"calendarKey":"d0123456789abcdefghijklmnop","resourceState":"exists"}`, ReasonBadCalendarKey},
		{"unknown state", `{"calendarKey":"` + goodKey + `","resourceState":"bogus"}`, ReasonUnknownResourceState},
		{"no state", `{"calendarKey":"` + goodKey + `"}`, ReasonUnknownResourceState},
	} {
		_, err := ParseNotification([]byte(tc.data))
		if !errors.Is(err, ErrInvalid) || InvalidReason(err) != tc.reason {
			t.Errorf("%s: err %v (reason %q), want reason %q", tc.name, err, InvalidReason(err), tc.reason)
		}
	}
}

func TestInvalidReason(t *testing.T) {
	if InvalidReason(nil) != "" || InvalidReason(errors.New("x")) != "" {
		t.Fatal("a reason for an error that is not an InvalidError")
	}
	err := &InvalidError{Reason: "r", Detail: "d"}
	if !strings.Contains(err.Error(), "r: d") || InvalidReason(errors.Join(errors.New("ctx"), err)) != "r" {
		t.Fatalf("wrapped reason lost: %v", err)
	}
}

func TestValidCalendarKey(t *testing.T) {
	z := strings.Repeat
	for _, k := range []string{goodKey, "c" + z("0", 26), "c" + z("v", 26)} {
		if !ValidCalendarKey(k) {
			t.Errorf("%q refused", k)
		}
	}
	for _, k := range []string{"", "c", "../../x", "c" + z("0", 25), "c" + z("0", 27), "c" + z("0", 25) + "w", "x" + z("0", 26),
		"c" + z("0", 25) + "\x00", "c" + z("0", 24) + "é", "c" + z("0", 25) + "A", "c" + z("0", 25) + "/"} {
		if ValidCalendarKey(k) {
			t.Errorf("%q accepted", k)
		}
	}
}
