package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/calsync/calsync/shared/testing/testenv"
)

// activate is what shared/lifecycle's table gives an enrollment of an
// active or new target (this package's tests cannot import it).
func activate(string) string { return StatusActive }

func testStore(t *testing.T) *Store {
	t.Helper()
	return New(testenv.FirestoreClient(t))
}

func TestRegisterKeepsSyncState(t *testing.T) {
	ctx := context.Background()
	st := testStore(t)
	key, err := st.RegisterCalendar(ctx, Calendar{CalendarID: "a@x", AuthMode: AuthDelegation, Subject: "boss@x"}, activate)
	if err != nil || key != CalendarKey("a@x") {
		t.Fatal(key, err)
	}
	c, err := st.GetCalendar(ctx, key)
	if err != nil || c.Status != StatusActive || c.Subject != "boss@x" || c.CreatedAt.IsZero() {
		t.Fatalf("%+v %v", c, err)
	}
	// Sync state written by the SyncWorker survives a re-registration.
	st.CalendarRef(key).Update(ctx, []firestore.Update{{Path: "syncToken", Value: "tok"}, {Path: "eventCount", Value: 7}})
	if err := st.SetStatus(ctx, key, StatusUnwatched, "operator", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RegisterCalendar(ctx, Calendar{CalendarID: "a@x", AuthMode: AuthOAuth, CredentialID: "cred-1"}, activate); err != nil {
		t.Fatal(err)
	}
	c, _ = st.GetCalendar(ctx, key)
	if c.Status != StatusActive || c.StatusReason != "" || c.AuthMode != AuthOAuth || c.Subject != "" || c.CredentialID != "cred-1" ||
		c.SyncToken != "tok" || c.EventCount != 7 {
		t.Fatalf("re-registered %+v", c)
	}
	st.RegisterCalendar(ctx, Calendar{CalendarID: "b@x", AuthMode: AuthOAuth, CredentialID: "cred-1"}, activate)
	st.RegisterCalendar(ctx, Calendar{CalendarID: "c@x", AuthMode: AuthADC}, activate)
	st.SetStatus(ctx, CalendarKey("c@x"), StatusError, "x", "")
	if m, _ := st.CalendarsWithCredential(ctx, "cred-1"); len(m) != 2 {
		t.Errorf("with credential: %d", len(m))
	}
	if m, _ := st.ActiveCalendars(ctx); len(m) != 2 {
		t.Errorf("active: %d", len(m))
	}
	if m, _ := st.AllCalendars(ctx); len(m) != 3 {
		t.Errorf("all: %d", len(m))
	}
	if err := st.SetStatus(ctx, "cmissing", StatusError, "", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing calendar: %v", err)
	}
	if _, err := st.GetCalendar(ctx, "cmissing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing calendar: %v", err)
	}
}

func TestChannelAndCredentialRecords(t *testing.T) {
	ctx := context.Background()
	st := testStore(t)
	now := time.Now().UTC()
	ch := Channel{ChannelID: "ch1", Key: "ck", State: ChannelPending, CreatedAt: now}
	if err := st.CreateChannel(ctx, ch); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateChannel(ctx, ch); !errors.Is(err, ErrChannelExists) {
		t.Fatalf("second create: %v", err)
	}
	exp := now.Add(time.Hour)
	if err := st.ActivateChannel(ctx, "ch1", "res", "uri", exp, exp.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := st.ActivateChannel(ctx, "nope", "res", "uri", exp, exp); !errors.Is(err, ErrNotFound) {
		t.Errorf("activate missing: %v", err)
	}
	st.CreateChannel(ctx, Channel{ChannelID: "ch2", Key: "ck", State: ChannelPending, CreatedAt: now})
	if l, _ := st.ChannelsInStates(ctx, ChannelActive); len(l) != 1 || l[0].ResourceID != "res" || !l[0].Expiration.Equal(exp.Truncate(time.Microsecond)) {
		t.Errorf("active: %+v", l)
	}
	if l, _ := st.ChannelsInStates(ctx, ChannelActive, ChannelPending); len(l) != 2 {
		t.Errorf("open: %d", len(l))
	}
	if err := st.EndChannel(ctx, "ch1", ChannelStopped, now, now.Add(72*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := st.EndChannel(ctx, "gone", ChannelStopped, now, now); err != nil {
		t.Errorf("end missing: %v", err)
	}
	got, _ := st.GetChannel(ctx, "ch1")
	if got.State != ChannelStopped || got.StoppedAt.IsZero() || got.ExpireAt.IsZero() {
		t.Errorf("stopped %+v", got)
	}
	if l, _ := st.ChannelsOfCalendar(ctx, "ck"); len(l) != 2 {
		t.Errorf("of calendar: %d", len(l))
	}
	if _, err := st.GetChannel(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("get missing: %v", err)
	}

	if err := st.CreateCredential(ctx, "cred", Credential{Subject: "a@x", KeyID: "k", Ciphertext: []byte{1}, Status: CredentialActive}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false} {
		changed, err := st.RevokeCredential(ctx, "cred")
		if err != nil || changed != want {
			t.Errorf("revoke %d: %v %v", i, changed, err)
		}
	}
	if _, err := st.RevokeCredential(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoke missing: %v", err)
	}
	if c, _ := st.GetCredential(ctx, "cred"); c.Status != StatusAuthRevoked || c.RevokedAt.IsZero() {
		t.Errorf("credential %+v", c)
	}
}
