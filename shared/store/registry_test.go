package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/calsync/calsync/shared/testenv"
)

func registryFS(t *testing.T) *firestore.Client {
	t.Helper()
	testenv.Firestore(t)
	fs, err := firestore.NewClient(context.Background(), testenv.ProjectID(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	return fs
}

func TestRegistryKeepsSyncState(t *testing.T) {
	ctx := context.Background()
	fs := registryFS(t)
	now := time.Now().UTC()
	key, err := RegisterCalendar(ctx, fs, Calendar{CalendarID: "a@x", AuthMode: AuthDelegation, Subject: "boss@x"}, now)
	if err != nil || key != CalendarKey("a@x") {
		t.Fatal(key, err)
	}
	c, err := RegisteredCalendar(ctx, fs, key)
	if err != nil || c.Status != StatusActive || c.Subject != "boss@x" || c.CreatedAt.IsZero() {
		t.Fatalf("%+v %v", c, err)
	}
	// Sync state written by the SyncWorker survives a re-registration.
	fs.Collection(CollCalendars).Doc(key).Update(ctx, []firestore.Update{{Path: "syncToken", Value: "tok"}, {Path: "eventCount", Value: 7}})
	if err := SetCalendarStatus(ctx, fs, key, StatusUnwatched, "operator", now); err != nil {
		t.Fatal(err)
	}
	if _, err := RegisterCalendar(ctx, fs, Calendar{CalendarID: "a@x", AuthMode: AuthOAuth, CredentialID: "cred-1"}, now); err != nil {
		t.Fatal(err)
	}
	c, _ = RegisteredCalendar(ctx, fs, key)
	if c.Status != StatusActive || c.StatusReason != "" || c.AuthMode != AuthOAuth || c.Subject != "" || c.CredentialID != "cred-1" ||
		c.SyncToken != "tok" || c.EventCount != 7 {
		t.Fatalf("re-registered %+v", c)
	}
	RegisterCalendar(ctx, fs, Calendar{CalendarID: "b@x", AuthMode: AuthOAuth, CredentialID: "cred-1"}, now)
	RegisterCalendar(ctx, fs, Calendar{CalendarID: "c@x", AuthMode: AuthADC}, now)
	SetCalendarStatus(ctx, fs, CalendarKey("c@x"), StatusError, "x", now)
	if m, _ := CalendarsWithCredential(ctx, fs, "cred-1"); len(m) != 2 {
		t.Errorf("with credential: %d", len(m))
	}
	if m, _ := ActiveCalendars(ctx, fs); len(m) != 2 {
		t.Errorf("active: %d", len(m))
	}
	if m, _ := AllCalendars(ctx, fs); len(m) != 3 {
		t.Errorf("all: %d", len(m))
	}
	if err := SetCalendarStatus(ctx, fs, "cmissing", StatusError, "", now); !errors.Is(err, ErrCalendarNotRegistered) {
		t.Errorf("missing calendar: %v", err)
	}
	if _, err := RegisteredCalendar(ctx, fs, "cmissing"); !errors.Is(err, ErrCalendarNotRegistered) {
		t.Errorf("missing calendar: %v", err)
	}
}

func TestChannelAndCredentialRecords(t *testing.T) {
	ctx := context.Background()
	fs := registryFS(t)
	now := time.Now().UTC()
	ch := Channel{ChannelID: "ch1", CalendarKey: "ck", State: ChannelPending, CreatedAt: now}
	if err := CreateChannel(ctx, fs, ch); err != nil {
		t.Fatal(err)
	}
	if err := CreateChannel(ctx, fs, ch); !errors.Is(err, ErrChannelExists) {
		t.Fatalf("second create: %v", err)
	}
	exp := now.Add(time.Hour)
	if err := ActivateChannel(ctx, fs, "ch1", "res", "uri", exp, exp.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := ActivateChannel(ctx, fs, "nope", "res", "uri", exp, exp); !errors.Is(err, ErrChannelNotFound) {
		t.Errorf("activate missing: %v", err)
	}
	CreateChannel(ctx, fs, Channel{ChannelID: "ch2", CalendarKey: "ck", State: ChannelPending, CreatedAt: now})
	if l, _ := ChannelsInStates(ctx, fs, ChannelActive); len(l) != 1 || l[0].ResourceID != "res" || !l[0].Expiration.Equal(exp.Truncate(time.Microsecond)) {
		t.Errorf("active: %+v", l)
	}
	if l, _ := ChannelsInStates(ctx, fs, ChannelActive, ChannelPending); len(l) != 2 {
		t.Errorf("open: %d", len(l))
	}
	if err := EndChannel(ctx, fs, "ch1", ChannelStopped, now, now.Add(72*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := EndChannel(ctx, fs, "gone", ChannelStopped, now, now); err != nil {
		t.Errorf("end missing: %v", err)
	}
	got, _ := GetChannel(ctx, fs, "ch1")
	if got.State != ChannelStopped || got.StoppedAt.IsZero() || got.ExpireAt.IsZero() {
		t.Errorf("stopped %+v", got)
	}
	if l, _ := ChannelsOfCalendar(ctx, fs, "ck"); len(l) != 2 {
		t.Errorf("of calendar: %d", len(l))
	}
	if _, err := GetChannel(ctx, fs, "nope"); !errors.Is(err, ErrChannelNotFound) {
		t.Errorf("get missing: %v", err)
	}

	if err := CreateCredential(ctx, fs, "cred", Credential{Subject: "a@x", KeyID: "k", Ciphertext: []byte{1}, Status: CredentialActive}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false} {
		changed, err := RevokeCredential(ctx, fs, "cred", now)
		if err != nil || changed != want {
			t.Errorf("revoke %d: %v %v", i, changed, err)
		}
	}
	if _, err := RevokeCredential(ctx, fs, "nope", now); !errors.Is(err, ErrCredentialNotFound) {
		t.Errorf("revoke missing: %v", err)
	}
	if c, _ := GetCredential(ctx, fs, "cred"); c.Status != StatusAuthRevoked || c.RevokedAt.IsZero() {
		t.Errorf("credential %+v", c)
	}
}
