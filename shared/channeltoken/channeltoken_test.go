package channeltoken

import (
	"bytes"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/calsync/calsync/shared/config"
)

func testKeys(t testing.TB, ids ...string) *Keys {
	t.Helper()
	var keys []config.Key
	for _, id := range ids {
		keys = append(keys, config.Key{ID: id, Material: bytes.Repeat([]byte(id[:1]), 32)})
	}
	k, err := New(keys)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestMintVerify(t *testing.T) {
	k := testKeys(t, "k1")
	tok, err := k.Mint("chan-1", "cal_abc")
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) > MaxLen || !strings.Contains(tok, "v=1") || !strings.Contains(tok, "k=k1") || !strings.Contains(tok, "c=cal_abc") {
		t.Fatalf("unexpected token form %q", tok)
	}
	got, err := k.Verify("chan-1", tok)
	if err != nil || got != "cal_abc" {
		t.Fatalf("Verify = %q, %v", got, err)
	}
}

func TestVerifyRejects(t *testing.T) {
	k := testKeys(t, "k1")
	tok, _ := k.Mint("chan-1", "cal")
	other := testKeys(t, "x9")
	foreign, _ := other.Mint("chan-1", "cal")
	sameIDOtherKey, _ := (func() (string, error) {
		k2, _ := New([]config.Key{{ID: "k1", Material: bytes.Repeat([]byte("z"), 32)}})
		return k2.Mint("chan-1", "cal")
	})()
	for _, tc := range []struct {
		name, channel, token string
		want                 error
	}{
		{"missing", "chan-1", "", ErrMissing},
		{"other channel", "chan-2", tok, ErrSignature},
		{"calendar swapped", "chan-1", strings.Replace(tok, "c=cal", "c=evil", 1), ErrSignature},
		{"unknown key", "chan-1", foreign, ErrUnknownKey},
		{"forged with same key id", "chan-1", sameIDOtherKey, ErrSignature},
		{"garbage", "chan-1", "%zz", ErrMalformed},
		{"no signature", "chan-1", "v=1&k=k1&c=cal", ErrMalformed},
		{"version", "chan-1", strings.Replace(tok, "v=1", "v=2", 1), ErrMalformed},
		{"repeated field", "chan-1", tok + "&c=evil", ErrMalformed},
		{"too long", "chan-1", tok + "&x=" + strings.Repeat("a", 300), ErrMalformed},
		{"semicolon", "chan-1", strings.Replace(tok, "&", ";", 1), ErrMalformed},
		{"empty calendar", "chan-1", strings.Replace(tok, "c=cal", "c=", 1), ErrMalformed},
		{"signature respelled", "chan-1", respell(tok), ErrSignature},
		{"signature truncated", "chan-1", truncate(tok), ErrSignature},
		{"signature too long", "chan-1", strings.Replace(tok, "s=", "s=AA", 1), ErrSignature},
	} {
		if _, err := k.Verify(tc.channel, tc.token); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

// respell changes the unused low bits of the signature's last character:
// the same bytes for a lax base64 decoder, a different token for Mint.
func respell(tok string) string {
	q, _ := url.ParseQuery(tok)
	sig := q.Get("s")
	i := strings.IndexByte(base64URL, sig[len(sig)-1])
	q.Set("s", sig[:len(sig)-1]+string(base64URL[i^1]))
	return q.Encode()
}

// truncate drops the signature's last character.
func truncate(tok string) string {
	q, _ := url.ParseQuery(tok)
	q.Set("s", q.Get("s")[1:])
	return q.Encode()
}

const base64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func TestVerifyAcceptsEquivalentSpellings(t *testing.T) {
	k := testKeys(t, "k1")
	tok, _ := k.Mint("chan-1", "cal/é x")
	for _, variant := range []string{
		tok,
		"&" + tok + "&&",                        // empty parts, as url.ParseQuery skips them
		tok + "&extra=ignored",                  // unknown parts ignored
		strings.Replace(tok, "v=1", "%76=1", 1), // escaped name
	} {
		if cal, err := k.Verify("chan-1", variant); err != nil || cal != "cal/é x" {
			t.Errorf("Verify(%q) = %q, %v", variant, cal, err)
		}
	}
}

// FuzzParseFields holds the hand-written parser to url.ParseQuery: it accepts
// exactly the tokens where ParseQuery finds each field once and non-empty,
// and reads the same values.
func FuzzParseFields(f *testing.F) {
	f.Add("v=1&k=k1&c=cal&s=AAAA")
	f.Add("v=1&k=k1&c=a%2Fb+c&s=AAAA&x=y")
	f.Add("v=1;k=k1")
	f.Add("%76=1&k=k&c=c&s=s&s=t")
	f.Fuzz(func(t *testing.T, token string) {
		got, ok := parseFields(token)
		q, err := url.ParseQuery(token)
		want := err == nil
		for _, name := range []string{"v", "k", "c", "s"} {
			want = want && len(q[name]) == 1 && q[name][0] != ""
		}
		if ok != want {
			t.Fatalf("parseFields(%q) ok=%v, url.ParseQuery says %v (%v)", token, ok, want, err)
		}
		if ok && (got != fields{q.Get("v"), q.Get("k"), q.Get("c"), q.Get("s")}) {
			t.Fatalf("parseFields(%q) = %+v, url.ParseQuery = %v", token, got, q)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	k := testKeys(b, "k1")
	tok, _ := k.Mint("4ba78bf0-6a47-11e2-bcfd-0800200c9a66", "cal_1")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Verify("4ba78bf0-6a47-11e2-bcfd-0800200c9a66", tok); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRotation(t *testing.T) {
	old := testKeys(t, "k1")
	tok, _ := old.Mint("c", "cal")
	rotated := testKeys(t, "k2", "k1") // new key signs, old still verifies
	if _, err := rotated.Verify("c", tok); err != nil {
		t.Fatalf("old token must verify during rotation: %v", err)
	}
	newTok, _ := rotated.Mint("c", "cal")
	if !strings.Contains(newTok, "k=k2") {
		t.Fatalf("new key must sign: %q", newTok)
	}
	if _, err := testKeys(t, "k2").Verify("c", tok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("dropped key must not verify: %v", err)
	}
}

func TestNewRefusesDuplicateKeyIDs(t *testing.T) {
	_, err := New([]config.Key{{ID: "k1", Material: []byte("a")}, {ID: "k1", Material: []byte("b")}})
	if err == nil || !strings.Contains(err.Error(), `"k1" appears twice`) {
		t.Fatalf("New with a repeated key id: %v", err)
	}
}

func TestMintTooLong(t *testing.T) {
	if _, err := testKeys(t, "k1").Mint("c", strings.Repeat("x", 250)); err == nil {
		t.Fatal("want error for a token over 256 chars")
	}
}

func FuzzVerify(f *testing.F) {
	k := testKeys(f, "k1")
	tok, _ := k.Mint("chan-1", "cal")
	f.Add("chan-1", tok)
	f.Add("chan-1", "v=1&k=k1&c=cal&s=AAAA")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, channel, token string) {
		cal, err := k.Verify(channel, token)
		if err != nil {
			return
		}
		// Whatever verified must be exactly what the key would mint.
		want, mintErr := k.Mint(channel, cal)
		if mintErr != nil {
			t.Fatalf("verified a token that cannot be minted: %q", token)
		}
		if _, err := k.Verify(channel, want); err != nil {
			t.Fatal(err)
		}
		if k.byID["k1"].signature(channel, cal) == "" {
			t.Fatal("empty signature")
		}
	})
}
