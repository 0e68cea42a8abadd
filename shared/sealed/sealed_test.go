package sealed

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

var aad = []byte("calsync/credential/v1\ncred-1")

func newKeys(t testing.TB, ids ...string) (*PrivateKeys, []string) {
	t.Helper()
	var lines []string
	for _, id := range ids {
		priv, _, err := GenerateKey(id)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, priv)
	}
	keys, err := ParsePrivateKeys(strings.Join(lines, ","))
	if err != nil {
		t.Fatal(err)
	}
	return keys, lines
}

func TestSealOpen(t *testing.T) {
	keys, _ := newKeys(t, "h1")
	pub, err := ParsePublicKey(keys.Public().String()) // what an enroller is given
	if err != nil {
		t.Fatal(err)
	}
	box, err := pub.Seal(aad, []byte("1//refresh"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(box, "sealed:v1:h1:") || strings.Contains(box, "refresh") {
		t.Fatalf("box %q", box)
	}
	if id, err := KeyID(box); id != "h1" || err != nil {
		t.Fatalf("KeyID = %q, %v", id, err)
	}
	pt, err := keys.Open(box, aad)
	if err != nil || string(pt) != "1//refresh" {
		t.Fatalf("Open = %q, %v", pt, err)
	}
	again, _ := pub.Seal(aad, []byte("1//refresh"))
	if again == box {
		t.Fatal("two boxes of one plaintext are equal: the ephemeral key must be fresh")
	}
}

func TestOpenRefuses(t *testing.T) {
	keys, _ := newKeys(t, "h1", "h2")
	other, _ := newKeys(t, "h1") // same id, another key
	box, _ := keys.Public().Seal(aad, []byte("1//refresh"))
	parts := strings.Split(box, ":")
	flip := func(s string) string { // one base64url character changed
		c := byte('A')
		if s[3] == 'A' {
			c = 'B'
		}
		return s[:3] + string(c) + s[4:]
	}
	h2box, _ := (&PublicKey{id: "h2", pk: keys.byID["h2"].PublicKey()}).Seal(aad, []byte("x"))
	for _, tc := range []struct {
		name string
		keys *PrivateKeys
		box  string
		aad  []byte
		want error
	}{
		{"another credential's context", keys, box, []byte("calsync/credential/v1\ncred-2"), ErrOpen},
		{"no context", keys, box, nil, ErrOpen},
		{"same key id, another key", other, box, aad, ErrOpen},
		{"ciphertext tampered", keys, strings.Join([]string{parts[0], parts[1], parts[2], parts[3], flip(parts[4])}, ":"), aad, ErrOpen},
		{"ephemeral key tampered", keys, strings.Join([]string{parts[0], parts[1], parts[2], flip(parts[3]), parts[4]}, ":"), aad, ErrOpen},
		{"relabelled to another key id", keys, strings.Replace(box, ":h1:", ":h2:", 1), aad, ErrOpen},
		{"relabelled h2 box", keys, strings.Replace(h2box, ":h2:", ":h1:", 1), aad, ErrOpen},
		{"unknown key id", keys, strings.Replace(box, ":h1:", ":h9:", 1), aad, ErrUnknownKey},
		{"empty", keys, "", aad, ErrMalformed},
		{"wrong version", keys, strings.Replace(box, "sealed:v1:", "sealed:v2:", 1), aad, ErrMalformed},
		{"extra part", keys, box + ":x", aad, ErrMalformed},
		{"padded base64", keys, box + "=", aad, ErrMalformed},
		{"short enc", keys, strings.Join([]string{parts[0], parts[1], parts[2], parts[3][:10], parts[4]}, ":"), aad, ErrMalformed},
		{"bad key id", keys, strings.Replace(box, ":h1:", ":h.1:", 1), aad, ErrMalformed},
		{"legacy AES record text", keys, "c1:" + parts[4], aad, ErrMalformed},
	} {
		if _, err := tc.keys.Open(tc.box, tc.aad); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := keys.Open(h2box, aad); err != nil {
		t.Errorf("every key opens, not only the first: %v", err)
	}
}

func TestKeys(t *testing.T) {
	keys, lines := newKeys(t, "h2", "h1")
	if keys.Public().ID() != "h2" {
		t.Fatal("the first key is the current one")
	}
	h1, _ := ParsePrivateKeys(lines[1])
	if !keys.Has(h1.Public()) || !keys.Has(keys.Public()) {
		t.Fatal("Has: both public halves")
	}
	stranger, _ := newKeys(t, "h1")
	if keys.Has(stranger.Public()) {
		t.Fatal("Has: a key with a known id but other material")
	}
	for _, bad := range []string{
		"", "pubkey:v1:h1", "pubkey:v2:h1:" + strings.Repeat("A", 43), "pubkey:v1:h.1:" + strings.Repeat("A", 43),
		"pubkey:v1:h1:" + strings.Repeat("A", 42), "pubkey:v1:h1:" + strings.Repeat("A", 43) + "=",
	} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("ParsePublicKey(%q): want error", bad)
		}
	}
	if _, err := ParsePrivateKeys("h1:" + strings.Repeat("A", 64)); err == nil { // 48 bytes
		t.Error("a private key that is not 32 bytes must be refused")
	}
	if _, err := ParsePrivateKeys(lines[0] + "," + lines[0]); err == nil {
		t.Error("a repeated key id must be refused")
	}
	if _, _, err := GenerateKey("bad id"); err == nil {
		t.Error("GenerateKey with a bad id")
	}
	pub := keys.Public()
	if _, err := pub.Seal(aad, nil); err == nil {
		t.Error("empty plaintext sealed")
	}
	if _, err := pub.Seal(aad, bytes.Repeat([]byte("x"), MaxPlaintext+1)); err == nil {
		t.Error("plaintext over MaxPlaintext sealed")
	}
	if strings.Contains(pub.String(), strings.SplitN(lines[0], ":", 2)[1]) {
		t.Error("the public key's text holds the private key")
	}
}

// A box made by this version must open with every later one: the format is
// a contract with enrollers (README.md). testdata/vector_v1.json was sealed
// once and is never regenerated.
func TestVectorV1(t *testing.T) {
	raw, err := os.ReadFile("testdata/vector_v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ PrivateKeys, PublicKey, AAD, Plaintext, Box string }
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	keys, err := ParsePrivateKeys(v.PrivateKeys)
	if err != nil {
		t.Fatal(err)
	}
	if keys.Public().String() != v.PublicKey {
		t.Fatalf("public key %s, vector says %s", keys.Public(), v.PublicKey)
	}
	pt, err := keys.Open(v.Box, []byte(v.AAD))
	if err != nil || string(pt) != v.Plaintext {
		t.Fatalf("vector: %q, %v", pt, err)
	}
}

func FuzzOpen(f *testing.F) {
	keys, _ := newKeys(f, "h1")
	box, _ := keys.Public().Seal(aad, []byte("1//refresh"))
	f.Add(box)
	f.Add("sealed:v1:h1::")
	f.Fuzz(func(t *testing.T, s string) {
		pt, err := keys.Open(s, aad)
		if err == nil && string(pt) != "1//refresh" {
			t.Fatalf("opened %q to %q", s, pt)
		}
	})
}
