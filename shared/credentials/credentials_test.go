package credentials

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"cloud.google.com/go/firestore"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/sealed"
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
	return store.New(testenv.FirestoreClient(t))
}

// sealing returns the functions' credential store with private keys ids
// (the first is current) and an enroller's store with only the public key.
func sealing(t *testing.T, st *store.Store, ids ...string) (functions, enroller *Vault, privateList string) {
	t.Helper()
	var lines []string
	for _, id := range ids {
		priv, _, err := sealed.GenerateKey(id)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, priv)
	}
	privateList = strings.Join(lines, ",")
	functions, err := NewVault(config.Calendar{CredentialPrivateKeys: privateList}, st)
	if err != nil {
		t.Fatal(err)
	}
	enroller, err = NewVault(config.Calendar{CredentialPublicKey: functions.Seal.String()}, st)
	if err != nil {
		t.Fatal(err)
	}
	return functions, enroller, privateList
}

func TestStoreSealedAtRest(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	fn, enroller, _ := sealing(t, st, "h1")
	id, err := enroller.Put(ctx, "alice@x.test", "1//alice-refresh")
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
	if d := snap.Data(); d["sealedKeyId"] != "h1" || !strings.HasPrefix(d["sealed"].(string), "sealed:v1:h1:") || d["keyId"] != nil || d["ciphertext"] != nil {
		t.Errorf("record %v", d)
	}
	if tok, err := fn.RefreshToken(ctx, id); err != nil || tok != "1//alice-refresh" {
		t.Fatalf("RefreshToken: %q %v", tok, err)
	}
	if _, err := enroller.RefreshToken(ctx, id); !errors.Is(err, ErrNoPrivateKey) {
		t.Errorf("the enroller opened it: %v", err)
	}
	stranger, _, _ := sealing(t, st, "h1") // same key id, another key
	if _, err := stranger.RefreshToken(ctx, id); !errors.Is(err, sealed.ErrOpen) {
		t.Errorf("wrong key: %v", err)
	}
	// A box copied onto another credential does not open there (the id is
	// its context).
	other, _ := enroller.Put(ctx, "mallory@x.test", "1//mallory")
	if _, err := st.CredentialRef(other).Update(ctx, []firestore.Update{{Path: "sealed", Value: snap.Data()["sealed"]}}); err != nil {
		t.Fatal(err)
	}
	if _, err := fn.RefreshToken(ctx, other); !errors.Is(err, sealed.ErrOpen) {
		t.Errorf("moved box: %v", err)
	}
	if _, err := fn.RefreshToken(ctx, "cred-missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
	if _, err := enroller.Put(ctx, "a", " "); err == nil {
		t.Error("empty token accepted")
	}
	if _, err := (&Vault{Store: st}).Put(ctx, "a", "1//x"); !errors.Is(err, ErrNoSealKey) {
		t.Errorf("no key to seal to: %v", err)
	}
	if changed, err := st.RevokeCredential(ctx, id); err != nil || !changed {
		t.Fatal(changed, err)
	}
	if _, err := fn.RefreshToken(ctx, id); !errors.Is(err, calclient.ErrAuthRevoked) {
		t.Errorf("revoked: %v", err)
	}
}

// A product backend enrolls a user with nothing but the public key: it
// picks the id, seals with AAD(id) (any RFC 9180 library), and stores.
func TestPutSealedByAnEnroller(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	fn, _, _ := sealing(t, st, "h1")
	pub, err := sealed.ParsePublicKey(fn.Seal.String()) // all the product has
	if err != nil {
		t.Fatal(err)
	}
	id := NewID()
	box, _ := pub.Seal(AAD(id), []byte("1//product-user"))
	enroller := &Vault{Store: st}
	if err := enroller.PutSealed(ctx, id, "user@product.test", box); err != nil {
		t.Fatal(err)
	}
	if tok, err := fn.RefreshToken(ctx, id); err != nil || tok != "1//product-user" {
		t.Fatalf("RefreshToken: %q %v", tok, err)
	}
	for _, bad := range []struct{ id, box string }{
		{"cred-1", box}, {"../x", box}, {NewID(), "1//clear-token"}, {NewID(), ""},
	} {
		if err := enroller.PutSealed(ctx, bad.id, "u", bad.box); err == nil {
			t.Errorf("PutSealed(%q, %.20q) accepted", bad.id, bad.box)
		}
	}
	if err := enroller.PutSealed(ctx, id, "u", box); err == nil {
		t.Error("an existing id was overwritten")
	}
}

func TestNewStoreKeys(t *testing.T) {
	st := newStore(t)
	fn, _, priv := sealing(t, st, "h1")
	other, _, _ := sealing(t, st, "h1")
	if _, err := NewVault(config.Calendar{CredentialPrivateKeys: priv, CredentialPublicKey: other.Seal.String()}, st); err == nil ||
		!strings.Contains(err.Error(), "not the public half") || strings.Contains(err.Error(), strings.SplitN(priv, ":", 2)[1]) {
		t.Errorf("a public key that is not ours: %v", err)
	}
	if s, err := NewVault(config.Calendar{CredentialPrivateKeys: priv, CredentialPublicKey: fn.Seal.String(), CredentialKeys: key("c1", "a")}, st); err != nil ||
		s.Keys == nil || s.Legacy == nil || s.Seal.ID() != "h1" {
		t.Errorf("both formats during a migration: %+v %v", s, err)
	}
	if _, err := NewVault(config.Calendar{CredentialPublicKey: "pubkey:v1:h1:short"}, st); err == nil {
		t.Error("a malformed public key accepted")
	}
}

// legacyPut stores a credential the way calsync did before sealing.
func legacyPut(t *testing.T, st *store.Store, c *Cipher, token string) string {
	t.Helper()
	id := NewID()
	keyID, ct, err := c.Seal(id, []byte(token))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateCredential(context.Background(), id, store.Credential{Subject: "u@x", KeyID: keyID, Ciphertext: ct, Status: store.CredentialActive}); err != nil {
		t.Fatal(err)
	}
	return id
}

// During a migration both formats open; Migrate needs only the AES keys and
// the public key, and leaves nothing of the legacy form.
func TestMigrateLegacy(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	aes := mustCipher(t, key("c1", "a"))
	fn, _, priv := sealing(t, st, "h1")
	legacy1, legacy2 := legacyPut(t, st, aes, "1//l1"), legacyPut(t, st, aes, "1//l2")
	sealedID, _ := fn.Put(ctx, "s@x", "1//s")
	both, _ := NewVault(config.Calendar{CredentialPrivateKeys: priv, CredentialKeys: key("c1", "a")}, st)
	for id, want := range map[string]string{legacy1: "1//l1", legacy2: "1//l2", sealedID: "1//s"} {
		if got, err := both.RefreshToken(ctx, id); err != nil || got != want {
			t.Errorf("during the migration %s: %q %v", id, got, err)
		}
	}
	if _, err := fn.RefreshToken(ctx, legacy1); !errors.Is(err, ErrNoLegacyKey) {
		t.Errorf("legacy without CREDENTIAL_KEYS: %v", err)
	}
	migrator := &Vault{Store: st, Seal: fn.Seal, Legacy: aes} // no private key
	var progress []int
	n, err := migrator.Migrate(ctx, func(done, total int) { progress = append(progress, done, total) })
	if err != nil || n != 2 || len(progress) != 4 || progress[3] != 2 {
		t.Fatalf("migrated %d, %v, progress %v", n, err, progress)
	}
	for id, want := range map[string]string{legacy1: "1//l1", legacy2: "1//l2", sealedID: "1//s"} {
		if got, err := fn.RefreshToken(ctx, id); err != nil || got != want {
			t.Errorf("after the migration, private keys only, %s: %q %v", id, got, err)
		}
	}
	if ids, _ := st.LegacyCredentials(ctx); len(ids) != 0 {
		t.Errorf("legacy records left: %v", ids)
	}
	if _, err := fn.Migrate(ctx, nil); !errors.Is(err, ErrNoLegacyKey) {
		t.Errorf("Migrate without CREDENTIAL_KEYS: %v", err)
	}
}

// Rotation of the sealing key: the new private key first, Reseal (what
// RenewChannels runs hourly) seals everything to it, legacy records too;
// then the old key can go. A box no key opens is named, the rest goes on.
func TestResealRotatesKeys(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	old, _, oldPriv := sealing(t, st, "h1")
	id1, _ := old.Put(ctx, "a@x", "1//a")
	id2, _ := old.Put(ctx, "b@x", "1//b")
	legacy := legacyPut(t, st, mustCipher(t, key("c1", "a")), "1//legacy")
	_, _, newLine := sealing(t, st, "h2")
	// The h2 private key first, h1's after it: h2 is current.
	rotated, err := NewVault(config.Calendar{CredentialPrivateKeys: newLine + "," + oldPriv, CredentialKeys: key("c1", "a")}, st)
	if err != nil {
		t.Fatal(err)
	}
	id3, _ := rotated.Put(ctx, "c@x", "1//c") // already to h2
	n, err := rotated.Reseal(ctx, nil)
	if err != nil || n != 3 {
		t.Fatalf("resealed %d: %v", n, err)
	}
	only, _ := NewVault(config.Calendar{CredentialPrivateKeys: newLine}, st)
	for id, want := range map[string]string{id1: "1//a", id2: "1//b", id3: "1//c", legacy: "1//legacy"} {
		if got, err := only.RefreshToken(ctx, id); err != nil || got != want {
			t.Errorf("%s: %q %v", id, got, err)
		}
	}
	if n, err := only.Reseal(ctx, nil); err != nil || n != 0 {
		t.Errorf("second reseal: %d %v", n, err)
	}
	stranger, _, _ := sealing(t, st, "h9")
	lostID, _ := stranger.Put(ctx, "d@x", "1//d")
	if _, err := only.Reseal(ctx, nil); err == nil || !strings.Contains(err.Error(), lostID) {
		t.Errorf("unknown key: %v", err)
	}
}
