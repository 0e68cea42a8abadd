package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/testenv"
)

func TestEnrollUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"enroll"}, "exactly one of --subject, --credential, --domain"},
		{[]string{"enroll", "--subject", "a@x", "--domain", "x"}, "exactly one"},
		{[]string{"enroll", "--subject", "not an email"}, "is not an email address"},
		{[]string{"enroll", "--subject", "a@x", "--rooms"}, "--admin, --rooms and --allow-shrink go with --domain"},
		{[]string{"enroll", "--subject", "a@x", "--allow-shrink"}, "--allow-shrink go with --domain"},
		{[]string{"enroll", "--subject", "a@x", "--include", "[a-"}, "not a shell pattern"},
		{[]string{"enroll", "--subject", "a@x", "--min-access-role", "admin"}, "minAccessRole"},
		{[]string{"unenroll"}, "exactly one of"},
	} {
		code, _, e := run(tc.args...)
		if code != 2 || !strings.Contains(e, tc.want) {
			t.Errorf("%v: %d %q, want 2 and %q", tc.args, code, e, tc.want)
		}
	}
}

// enroll --domain against the emulators: one command enrolls every active
// user's list and every room, shows progress and ends with a summary; a
// second run after the directory changed applies the difference;
// unenroll --subject stops a user.
func TestEnrollDomainCommand(t *testing.T) {
	s := newStack(t)
	t.Setenv("CREDENTIAL_PRIVATE_KEYS", privKeys)
	if err := s.emu.CreateDomain("corp.test", "admin@corp.test"); err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		_ = s.emu.AddDomainUser(fmt.Sprintf("u%02d@corp.test", i), false)
	}
	_, _ = s.emu.AddRoom("corp.test", "Board room")
	_, _ = s.emu.AddResource("corp.test", "Beamer", calendaremu.CategoryOther)
	code, out, errOut := run("enroll", "--domain", "corp.test", "--admin", "admin@corp.test", "--rooms", "--exclude", "*#holiday@*")
	if code != 0 || !strings.Contains(out, "enrolled corp.test: 13 users in the directory, 13 active: 13 enrolled") ||
		!strings.Contains(out, "1 rooms: 1 enrolled") || !strings.Contains(out, "1 other resources of the customer (equipment...) not followed") ||
		!strings.Contains(out, "14 calendars enrolled; 0 failed") {
		t.Fatalf("enroll --domain: %d\n%s\n%s", code, out, errOut)
	}
	live := 0
	for _, c := range s.emu.Channels() {
		if !c.Stopped {
			live++
		}
	}
	if live != 13+13+1 { // 13 primary calendars, 13 lists, 1 room
		t.Fatalf("%d live channels", live)
	}
	if got := s.received(t, 14); len(got) != 14 {
		t.Fatalf("%d first syncs asked", len(got))
	}
	_ = s.emu.SuspendUser("u03@corp.test", true)
	code, out, _ = run("enroll", "--domain", "corp.test", "--admin", "admin@corp.test", "--rooms", "--exclude", "*#holiday@*", "--json")
	var res enroll.DomainResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Unenrolled != 1 || res.Kept != 12 || res.Enrolled != 0 {
		t.Fatalf("second run: %d %s", code, out)
	}
	code, out, _ = run("unenroll", "--subject", "u04@corp.test", "--delete-mirror")
	if code != 0 || !strings.Contains(out, "1 calendars unwatched, 1 mirrors being deleted") {
		t.Fatalf("unenroll: %d %q", code, out)
	}
	if got := s.received(t, 1); len(got) != 1 || got[0].ResourceState != messages.StatePurge {
		t.Fatalf("unenroll asked %+v", got)
	}
	st := store.New(s.fs)
	c, _ := st.GetCalendar(context.Background(), store.CalendarKey("u04@corp.test"))
	if c.Status != store.StatusUnwatched {
		t.Fatalf("u04's calendar %+v", c)
	}
	if code, _, e := run("unenroll", "--subject", "never@corp.test"); code != 1 || !strings.Contains(e, "is not enrolled") {
		t.Fatalf("unenroll of a stranger: %d %q", code, e)
	}
	// A second domain of the customer: the same room, followed already;
	// unenrolled, it leaves the room to corp.test.
	if err := s.emu.CreateSecondaryDomain("two.test", "admin@two.test", "corp.test"); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = run("enroll", "--domain", "two.test", "--admin", "admin@two.test", "--rooms")
	if code != 0 || !strings.Contains(out, "1 rooms: 0 enrolled, 1 already followed") {
		t.Fatalf("enroll --domain two.test: %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut := run("unenroll", "--domain", "two.test"); code != 0 || !strings.Contains(out, "0 rooms (1 rooms kept") {
		t.Fatalf("unenroll --domain two.test: %d\n%s\n%s", code, out, errOut)
	}
	// A non-admin cannot enroll the domain; nothing is written.
	if code, _, e := run("enroll", "--domain", "corp.test", "--admin", "u05@corp.test"); code != 1 || !strings.Contains(e, "does not allow") {
		t.Fatalf("enroll as a non-admin: %d %q", code, e)
	}
}

// The progress line of a long enrollment (the generic progress helper,
// driven here as enroll --domain drives it) names the unit and ends with a
// newline once printed.
func TestEnrollProgressLine(t *testing.T) {
	var o, e strings.Builder
	c := &cli{stdout: &o, stderr: &e}
	p := newProgressOf(c, "enroll corp.test", "users")
	p.last = time.Now().Add(-time.Second) // a long run
	p.set2(3, 20)
	p.done()
	if got := e.String(); !strings.Contains(got, "enroll corp.test: 3/20 users") || !strings.HasSuffix(got, "\n") {
		t.Fatalf("progress %q", got)
	}
}

// Without channel keys, enroll builds its engine with app.Build from the
// Enrollment config: the renewal window is RENEW_BEFORE (26 h by default),
// as RenewChannels has it, and no channel manager.
func TestEnrollerWithoutChannelKeys(t *testing.T) {
	testenv.Firestore(t)
	testenv.PubSub(t)
	t.Setenv("PROJECT_ID", testenv.ProjectID(t))
	t.Setenv("CHANNEL_TOKEN_KEYS", "")
	for renew, want := range map[string]time.Duration{"": 26 * time.Hour, "30h": 30 * time.Hour} {
		t.Setenv("RENEW_BEFORE", renew) // restored after the test
		if renew == "" {
			os.Unsetenv("RENEW_BEFORE")
		}
		c := &cli{name: "enroll", stdout: io.Discard, stderr: io.Discard}
		if err := c.setupEnv(); err != nil {
			t.Fatal(err)
		}
		e, withChannels, err := c.enroller(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if withChannels || e.Channels != nil || e.RenewBefore != want {
			t.Errorf("RENEW_BEFORE=%q: channels %v/%v, renew before %s, want %s", renew, withChannels, e.Channels, e.RenewBefore, want)
		}
		c.close()
	}
}
