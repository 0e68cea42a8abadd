package credentials

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func key(id, fill string) string {
	return id + ":" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat(fill, 32)))
}

func mustCipher(t *testing.T, list string) *Cipher {
	t.Helper()
	c, err := ParseCipher(list)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCipher(t *testing.T) {
	secret := []byte("1//refresh-token-secret")
	c := mustCipher(t, key("k1", "a"))
	kid, ct, err := c.Seal("cred-1", secret)
	if err != nil || kid != "k1" {
		t.Fatalf("seal: %v %q", err, kid)
	}
	if bytes.Contains(ct, secret) || bytes.Contains(ct, []byte("refresh")) {
		t.Fatal("ciphertext contains the plaintext")
	}
	if pt, err := c.Open("cred-1", kid, ct); err != nil || string(pt) != string(secret) {
		t.Fatalf("open: %v %q", err, pt)
	}
	_, ct2, _ := c.Seal("cred-1", secret)
	if bytes.Equal(ct, ct2) {
		t.Error("two seals of one plaintext are equal (nonce reused?)")
	}
	// Wrong key with the same id.
	if _, err := mustCipher(t, key("k1", "b")).Open("cred-1", kid, ct); !errors.Is(err, ErrDecrypt) {
		t.Errorf("wrong key: %v", err)
	}
	// Without the key at all.
	if _, err := mustCipher(t, key("k9", "a")).Open("cred-1", kid, ct); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("unknown key: %v", err)
	}
	// AAD: the ciphertext of one credential does not open as another's.
	if _, err := c.Open("cred-2", kid, ct); !errors.Is(err, ErrDecrypt) {
		t.Errorf("AAD mismatch: %v", err)
	}
	// Tampered, truncated.
	bad := append([]byte{}, ct...)
	bad[len(bad)-1] ^= 1
	if _, err := c.Open("cred-1", kid, bad); !errors.Is(err, ErrDecrypt) {
		t.Errorf("tampered: %v", err)
	}
	if _, err := c.Open("cred-1", kid, ct[:5]); !errors.Is(err, ErrDecrypt) {
		t.Errorf("truncated: %v", err)
	}
	// Rotation: new key first seals, old still opens.
	rot := mustCipher(t, key("k2", "c")+","+key("k1", "a"))
	if pt, err := rot.Open("cred-1", kid, ct); err != nil || string(pt) != string(secret) {
		t.Errorf("rotated open: %v", err)
	}
	if kid2, _, _ := rot.Seal("cred-1", secret); kid2 != "k2" {
		t.Errorf("rotated seal used %s", kid2)
	}
	// Errors never carry key material or plaintext.
	if _, err := NewCipher([]config.Key{{ID: "s", Material: []byte("short-key-material")}}); err == nil || strings.Contains(err.Error(), "short-key") {
		t.Errorf("short key: %v", err)
	}
	if _, err := ParseCipher(""); err == nil {
		t.Error("empty key list accepted")
	}
}

func newStore(t *testing.T) *store.Store {
	t.Helper()
	testenv.Firestore(t)
	fs, err := firestore.NewClient(context.Background(), testenv.ProjectID(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	return store.New(fs)
}

func TestStoreEncryptedAtRest(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	s := &Store{Store: st, Cipher: mustCipher(t, key("k1", "a"))}
	id, err := s.Put(ctx, "alice@x.test", "1//alice-refresh")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := st.CredentialRef(id).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range snap.Data() {
		if b, ok := v.([]byte); ok && bytes.Contains(b, []byte("alice-refresh")) {
			t.Errorf("field %s holds the token in clear", k)
		}
		if s, ok := v.(string); ok && strings.Contains(s, "alice-refresh") {
			t.Errorf("field %s holds the token in clear", k)
		}
	}
	if tok, err := s.RefreshToken(ctx, id); err != nil || tok != "1//alice-refresh" {
		t.Fatalf("RefreshToken: %q %v", tok, err)
	}
	other := &Store{Store: st, Cipher: mustCipher(t, key("k1", "z"))}
	if _, err := other.RefreshToken(ctx, id); !errors.Is(err, ErrDecrypt) {
		t.Errorf("wrong key: %v", err)
	}
	if _, err := s.RefreshToken(ctx, "cred-missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
	if _, err := s.Put(ctx, "a", " "); err == nil {
		t.Error("empty token accepted")
	}
	if changed, err := st.RevokeCredential(ctx, id); err != nil || !changed {
		t.Fatal(changed, err)
	}
	if _, err := s.RefreshToken(ctx, id); !errors.Is(err, calclient.ErrAuthRevoked) {
		t.Errorf("revoked: %v", err)
	}
}

type stopRecorder struct{ keys []string }

func (s *stopRecorder) StopCalendar(_ context.Context, cal store.Calendar, _ string) (int, error) {
	s.keys = append(s.keys, store.CalendarKey(cal.CalendarID))
	return 0, errors.New("401: grant revoked")
}

func TestRevoked(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	s := &Store{Store: st, Cipher: mustCipher(t, key("k1", "a"))}
	credX, _ := s.Put(ctx, "x@x.test", "1//x")
	credY, _ := s.Put(ctx, "y@x.test", "1//y")
	now := time.Now().UTC()
	regs := []store.Calendar{
		{CalendarID: "x1", AuthMode: store.AuthOAuth, CredentialID: credX},
		{CalendarID: "x2", AuthMode: store.AuthOAuth, CredentialID: credX},
		{CalendarID: "y1", AuthMode: store.AuthOAuth, CredentialID: credY},
	}
	for _, c := range regs {
		key, err := st.RegisterCalendar(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.CreateChannel(ctx, store.Channel{ChannelID: "ch-" + c.CalendarID, CalendarKey: key, CalendarID: c.CalendarID,
			State: store.ChannelActive, ResourceID: "r", Expiration: now.Add(time.Hour), CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	stopper := &stopRecorder{}
	r := &Revoker{Store: st, Stopper: stopper, Logger: slog.New(slog.NewJSONHandler(&buf, nil))}
	for range 2 { // the second call changes nothing and logs nothing
		if err := r.Revoked(ctx, regs[0], errors.New("oauth2: \"invalid_grant\"")); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(buf.String(), `"event":"auth_revoked"`); n != 1 {
		t.Errorf("auth_revoked logged %d times: %s", n, buf.String())
	}
	if !strings.Contains(buf.String(), `"level":"ERROR"`) {
		t.Errorf("not an ERROR: %s", buf.String())
	}
	for _, c := range regs {
		got, err := st.GetCalendar(ctx, store.CalendarKey(c.CalendarID))
		if err != nil {
			t.Fatal(err)
		}
		ch, _ := st.GetChannel(ctx, "ch-"+c.CalendarID)
		revoked := c.CredentialID == credX
		if (got.Status == store.StatusAuthRevoked) != revoked {
			t.Errorf("%s: status %s", c.CalendarID, got.Status)
		}
		if (ch.State == store.ChannelStopped) != revoked || (revoked && ch.ExpireAt.IsZero()) {
			t.Errorf("%s: channel %+v", c.CalendarID, ch)
		}
	}
	if cr, _ := st.GetCredential(ctx, credX); cr.Status != store.StatusAuthRevoked || cr.RevokedAt.IsZero() {
		t.Errorf("credential: %+v", cr)
	}
	if cr, _ := st.GetCredential(ctx, credY); cr.Status != store.CredentialActive {
		t.Errorf("other credential touched: %+v", cr)
	}
	if len(stopper.keys) == 0 {
		t.Error("stopper not asked")
	}
	// Without a stopper the records are closed all the same.
	if err := (&Revoker{Store: st}).Revoked(ctx, regs[2], nil); err != nil {
		t.Fatal(err)
	}
	if ch, _ := st.GetChannel(ctx, "ch-y1"); ch.State != store.ChannelStopped {
		t.Errorf("y1 channel %s", ch.State)
	}
}

func TestResealRotatesKeys(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	old := &Store{Store: st, Cipher: mustCipher(t, key("k1", "a"))}
	id1, _ := old.Put(ctx, "a@x", "1//a")
	id2, _ := old.Put(ctx, "b@x", "1//b")
	rotated := &Store{Store: st, Cipher: mustCipher(t, key("k2", "b")+","+key("k1", "a"))}
	id3, _ := rotated.Put(ctx, "c@x", "1//c") // already under k2
	n, err := rotated.Reseal(ctx)
	if err != nil || n != 2 {
		t.Fatalf("resealed %d: %v", n, err)
	}
	// The old key can go now.
	only := &Store{Store: st, Cipher: mustCipher(t, key("k2", "b"))}
	for id, want := range map[string]string{id1: "1//a", id2: "1//b", id3: "1//c"} {
		if got, err := only.RefreshToken(ctx, id); err != nil || got != want {
			t.Errorf("%s: %q %v", id, got, err)
		}
	}
	if n, err := only.Reseal(ctx); err != nil || n != 0 {
		t.Errorf("second reseal: %d %v", n, err)
	}
	// A credential under a key the cipher lacks is named, the rest goes on.
	lost := &Store{Store: st, Cipher: mustCipher(t, key("k9", "z"))}
	lostID, _ := lost.Put(ctx, "d@x", "1//d")
	if _, err := only.Reseal(ctx); err == nil || !strings.Contains(err.Error(), lostID) {
		t.Errorf("unknown key: %v", err)
	}
}
