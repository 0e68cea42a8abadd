package main

import (
	"os"
	"strings"
	"testing"

	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
)

// calsync watch on calendars Google will not watch: the holiday calendar's
// watch answers 400 pushNotSupportedForRequestedResource, the birthday
// calendar reports no deletions. Both are registered, polled, and watch
// succeeds (it used to exit 1 and leave an active calendar never synced).
func TestWatchUnwatchableCalendars(t *testing.T) {
	s := newStack(t)
	t.Setenv("CREDENTIAL_PRIVATE_KEYS", privKeys)
	const holiday = "en.usa#holiday@group.v.calendar.google.com"
	for _, spec := range []calendaremu.CalendarSpec{{ID: holiday, Kind: calendaremu.KindHoliday}, {ID: calendaremu.BirthdaysCalendarID, Kind: calendaremu.KindBirthdays}} {
		if err := s.emu.AddCalendar(spec); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := run("watch", "--calendar", spec.ID)
		if code != 0 || !strings.Contains(out, "polling "+spec.ID) || !strings.Contains(out, "asked for a full sync") {
			t.Fatalf("watch %s: %d %q %q", spec.ID, code, out, errOut)
		}
	}
	if n := len(s.emu.Channels()); n != 0 {
		t.Errorf("channels made: %d", n)
	}
	if got := s.received(t, 2); len(got) != 2 {
		t.Errorf("first syncs asked: %+v", got)
	}
	code, out, _ := run("list")
	if code != 0 || !strings.Contains(out, "polled (incremental)") || !strings.Contains(out, "polled (full)") {
		t.Errorf("list: %q", out)
	}
}

// WEBHOOK_URL must be https (Google answers http 400
// push.webhookUrlNotHttps, channel by channel): the CLI refuses it before
// any watch call, naming the variable; loopback http stays allowed.
func TestWatchRefusesHTTPWebhook(t *testing.T) {
	s := newStack(t)
	t.Setenv("CREDENTIAL_PRIVATE_KEYS", privKeys)
	t.Setenv("WEBHOOK_URL", "http://hooks.example.com/Webhook")
	code, _, errOut := run("watch", "--calendar", calendaremu.DefaultUser, "--no-sync")
	if code == 0 || !strings.Contains(errOut, "WEBHOOK_URL") || !strings.Contains(errOut, "https") {
		t.Fatalf("http WEBHOOK_URL: %d %q", code, errOut)
	}
	if n := s.emu.Stats().Requests["events.watch"]; n != 0 {
		t.Errorf("%d watch calls made with an http address", n)
	}
	os.Unsetenv("WEBHOOK_URL") // the state file's loopback address again
	if code, _, errOut := run("watch", "--calendar", calendaremu.DefaultUser, "--no-sync"); code != 0 {
		t.Fatalf("loopback webhook: %d %q", code, errOut)
	}
	if c, err := store.New(s.fs).GetCalendar(t.Context(), store.CalendarKey(calendaremu.DefaultUser)); err != nil || c.Status != store.StatusActive {
		t.Errorf("calendar %+v %v", c, err)
	}
}
