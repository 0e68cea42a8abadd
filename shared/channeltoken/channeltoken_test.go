package channeltoken

import (
	"bytes"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

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

// exp is a channel expiration with a fraction of a second, as Google grants.
var exp = time.Date(2030, 1, 2, 3, 4, 5, 600_000_000, time.UTC)

// mintV1 is the version 1 token a key made before expirations were bound
// (the code that minted it is gone; tokens of live channels remain).
func mintV1(k *Keys, channelID, calendarKey string) string {
	return url.Values{"v": {"1"}, "k": {k.signingID}, "c": {calendarKey},
		"s": {k.byID[k.signingID].signature(1, channelID, calendarKey, "", "")}}.Encode()
}

func TestMintVerify(t *testing.T) {
	k := testKeys(t, "k1")
	tok, err := k.Mint("chan-1", "cal_abc", exp)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) > MaxLen || !strings.Contains(tok, "v=2") || !strings.Contains(tok, "k=k1") || !strings.Contains(tok, "c=cal_abc") ||
		!strings.Contains(tok, "e=1893553446") {
		t.Fatalf("unexpected token form %q", tok)
	}
	got, err := k.Verify("chan-1", tok)
	want := Claims{Version: 2, KeyID: "k1", CalendarKey: "cal_abc", Expiration: time.Unix(1893553446, 0).UTC()}
	if err != nil || got != want {
		t.Fatalf("Verify = %+v, %v; want %+v", got, err, want)
	}
	if got.Expiration.Before(exp) {
		t.Fatal("the token ends before the channel")
	}
	if _, err := k.Mint("chan-1", "cal", time.Time{}); err == nil {
		t.Fatal("Mint without an expiration must fail")
	}
	whole, _ := k.Mint("c", "cal", time.Unix(1893553446, 0))
	if !strings.Contains(whole, "e=1893553446") {
		t.Fatalf("a whole second was rounded up: %q", whole)
	}
}

// A version 1 token still verifies (and says it is one): channels minted
// before the upgrade live until renewed.
func TestVersion1StillVerifies(t *testing.T) {
	k := testKeys(t, "k1")
	got, err := k.Verify("chan-1", mintV1(k, "chan-1", "cal"))
	if err != nil || got != (Claims{Version: 1, KeyID: "k1", CalendarKey: "cal"}) {
		t.Fatalf("Verify(v1) = %+v, %v", got, err)
	}
	// A v1 signature cannot be dressed up as a v2 token with an expiration,
	// nor a v2 token stripped of its expiration.
	v1 := mintV1(k, "chan-1", "cal")
	if _, err := k.Verify("chan-1", strings.Replace(v1, "v=1", "v=2", 1)+"&e=1893553446"); !errors.Is(err, ErrSignature) {
		t.Fatalf("v1 signature as v2: %v", err)
	}
	v2, _ := k.Mint("chan-1", "cal", exp)
	q, _ := url.ParseQuery(v2)
	q.Del("e")
	q.Set("v", "1")
	if _, err := k.Verify("chan-1", q.Encode()); !errors.Is(err, ErrSignature) {
		t.Fatalf("v2 signature as v1: %v", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	k := testKeys(t, "k1")
	tok, _ := k.Mint("chan-1", "cal", exp)
	other := testKeys(t, "x9")
	foreign, _ := other.Mint("chan-1", "cal", exp)
	sameIDOtherKey, _ := (func() (string, error) {
		k2, _ := New([]config.Key{{ID: "k1", Material: bytes.Repeat([]byte("z"), 32)}})
		return k2.Mint("chan-1", "cal", exp)
	})()
	for _, tc := range []struct {
		name, channel, token string
		want                 error
	}{
		{"missing", "chan-1", "", ErrMissing},
		{"other channel", "chan-2", tok, ErrSignature},
		{"calendar swapped", "chan-1", strings.Replace(tok, "c=cal", "c=evil", 1), ErrSignature},
		{"expiration extended", "chan-1", strings.Replace(tok, "e=1893553446", "e=1993553446", 1), ErrSignature},
		{"expiration respelled", "chan-1", strings.Replace(tok, "e=1893553446", "e=01893553446", 1), ErrMalformed},
		{"expiration signed", "chan-1", strings.Replace(tok, "e=1893553446", "e=%2B1893553446", 1), ErrMalformed},
		{"expiration not a number", "chan-1", strings.Replace(tok, "e=1893553446", "e=soon", 1), ErrMalformed},
		{"expiration zero", "chan-1", strings.Replace(tok, "e=1893553446", "e=0", 1), ErrMalformed},
		{"expiration missing", "chan-1", strings.Replace(tok, "e=1893553446&", "", 1), ErrMalformed},
		{"expiration twice", "chan-1", tok + "&e=1", ErrMalformed},
		{"unknown key", "chan-1", foreign, ErrUnknownKey},
		{"unknown key of bad syntax", "chan-1", strings.Replace(foreign, "k=x9", "k=x.9", 1), ErrMalformed},
		{"forged with same key id", "chan-1", sameIDOtherKey, ErrSignature},
		{"garbage", "chan-1", "%zz", ErrMalformed},
		{"no signature", "chan-1", "v=2&k=k1&c=cal&e=1", ErrMalformed},
		{"version", "chan-1", strings.Replace(tok, "v=2", "v=3", 1), ErrMalformed},
		{"v1 with expiration", "chan-1", strings.Replace(tok, "v=2", "v=1", 1), ErrMalformed},
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
	if c, err := k.Verify("chan-1", foreign); c != (Claims{KeyID: "x9"}) || !errors.Is(err, ErrUnknownKey) {
		t.Errorf("unknown key: claims %+v (want only the key id), %v", c, err)
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
	tok, _ := k.Mint("chan-1", "cal/é x", exp)
	for _, variant := range []string{
		tok,
		"&" + tok + "&&",                        // empty parts, as url.ParseQuery skips them
		tok + "&extra=ignored",                  // unknown parts ignored
		strings.Replace(tok, "v=2", "%76=2", 1), // escaped name
	} {
		if c, err := k.Verify("chan-1", variant); err != nil || c.CalendarKey != "cal/é x" {
			t.Errorf("Verify(%q) = %+v, %v", variant, c, err)
		}
	}
}

// FuzzParseFields holds the hand-written parser to url.ParseQuery: it accepts
// exactly the tokens where ParseQuery finds v, k, c and s once and non-empty
// and e at most once and non-empty, and reads the same values.
func FuzzParseFields(f *testing.F) {
	f.Add("v=1&k=k1&c=cal&s=AAAA")
	f.Add("v=2&k=k1&c=cal&e=1893553446&s=AAAA")
	f.Add("v=1&k=k1&c=a%2Fb+c&s=AAAA&x=y")
	f.Add("v=1;k=k1")
	f.Add("%76=1&k=k&c=c&s=s&s=t")
	f.Add("v=2&k=k&c=c&s=s&e=&e=1")
	f.Add("v=2&k=k1&c=ikey&e=1893553446&r=calendarList&s=AAAA")
	f.Add("v=2&k=k&c=c&e=1&r=&s=s")
	f.Fuzz(func(t *testing.T, token string) {
		got, ok := parseFields(token)
		q, err := url.ParseQuery(token)
		want := err == nil
		for _, name := range []string{"v", "k", "c", "s"} {
			want = want && len(q[name]) == 1 && q[name][0] != ""
		}
		_, hasE := q["e"]
		want = want && (!hasE || len(q["e"]) == 1 && q["e"][0] != "")
		_, hasR := q["r"]
		want = want && (!hasR || len(q["r"]) == 1 && q["r"][0] != "")
		if ok != want {
			t.Fatalf("parseFields(%q) ok=%v, url.ParseQuery says %v (%v)", token, ok, want, err)
		}
		if ok && (got != fields{q.Get("v"), q.Get("k"), q.Get("c"), q.Get("e"), q.Get("s"), q.Get("r"), hasE, hasR}) {
			t.Fatalf("parseFields(%q) = %+v, url.ParseQuery = %v", token, got, q)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	k := testKeys(b, "k1")
	tok, _ := k.Mint("4ba78bf0-6a47-11e2-bcfd-0800200c9a66", "cal_1", exp)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Verify("4ba78bf0-6a47-11e2-bcfd-0800200c9a66", tok); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRotation(t *testing.T) {
	old := testKeys(t, "k1")
	tok, _ := old.Mint("c", "cal", exp)
	added := testKeys(t, "k1", "k2") // step 1: k2 verifies, k1 still signs
	if c, err := added.Verify("c", tok); err != nil || c.KeyID != "k1" {
		t.Fatalf("old token must verify once the new key is added: %+v %v", c, err)
	}
	if added.SigningKeyID() != "k1" {
		t.Fatal("adding a key must not change the signing key")
	}
	rotated := testKeys(t, "k2", "k1") // step 2: k2 signs, k1 still verifies
	if _, err := rotated.Verify("c", tok); err != nil {
		t.Fatalf("old token must verify during rotation: %v", err)
	}
	newTok, _ := rotated.Mint("c", "cal", exp)
	if c, err := added.Verify("c", newTok); !strings.Contains(newTok, "k=k2") || rotated.SigningKeyID() != "k2" || err != nil || c.KeyID != "k2" {
		t.Fatalf("new key must sign, and verify where step 1 is deployed: %q %v", newTok, err)
	}
	if _, err := testKeys(t, "k2").Verify("c", tok); !errors.Is(err, ErrUnknownKey) { // step 4
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
	if _, err := testKeys(t, "k1").Mint("c", strings.Repeat("x", 230), exp); err == nil {
		t.Fatal("want error for a token over 256 chars")
	}
	// The longest real token: a 16-char key id, a calendar key (27 chars),
	// a 13-digit expiration.
	tok, err := testKeys(t, "k234567890123456").Mint("c", "c0123456789abcdefghijklmnop", time.Unix(1<<40, 0))
	if err != nil || len(tok) > 150 {
		t.Fatalf("longest real token: %d chars, %v", len(tok), err)
	}
}

func FuzzVerify(f *testing.F) {
	k := testKeys(f, "k1")
	tok, _ := k.Mint("chan-1", "cal", exp)
	f.Add("chan-1", tok)
	f.Add("chan-1", mintV1(k, "chan-1", "cal"))
	f.Add("chan-1", "v=1&k=k1&c=cal&s=AAAA")
	f.Add("chan-1", "v=2&k=k1&c=cal&e=12&s=AAAA")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, channel, token string) {
		c, err := k.Verify(channel, token)
		if err != nil {
			return
		}
		// Whatever verified must be exactly what the key would mint.
		var want string
		if c.Version == 1 {
			want = mintV1(k, channel, c.CalendarKey)
		} else {
			var mintErr error
			if want, mintErr = k.Mint(channel, c.CalendarKey, c.Expiration); mintErr != nil {
				t.Fatalf("verified a token that cannot be minted: %q", token)
			}
		}
		if again, err := k.Verify(channel, want); err != nil || again != c {
			t.Fatalf("re-minted token: %+v, %v (first %+v)", again, err, c)
		}
	})
}

// A calendarList channel's token says so (r=calendarList, signed): it
// verifies with its resource, and r can be neither added to an events token,
// removed from a list token, nor changed to a kind this code does not know.
func TestCalendarListTokens(t *testing.T) {
	k := testKeys(t, "k1")
	const idKey = "iabcdefghijklmnopqrstuv0123"
	tok, err := k.MintFor("chan-1", ResourceCalendarList, idKey, exp)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) > 160 {
		t.Errorf("list token of %d chars (Google allows 256; real ones about 140)", len(tok))
	}
	c, err := k.Verify("chan-1", tok)
	if err != nil || c.Resource != ResourceCalendarList || c.CalendarKey != idKey || c.Version != 2 || c.Expiration.IsZero() {
		t.Fatalf("verify list token: %+v %v", c, err)
	}
	evTok, _ := k.Mint("chan-1", idKey, exp)
	if c, err := k.Verify("chan-1", evTok); err != nil || c.Resource != ResourceEvents {
		t.Fatalf("events token: %+v %v", c, err)
	}
	q, _ := url.ParseQuery(tok)
	q.Del("r")
	if _, err := k.Verify("chan-1", q.Encode()); !errors.Is(err, ErrSignature) {
		t.Errorf("list token without r: %v, want ErrSignature", err)
	}
	q, _ = url.ParseQuery(evTok)
	q.Set("r", ResourceCalendarList)
	if _, err := k.Verify("chan-1", q.Encode()); !errors.Is(err, ErrSignature) {
		t.Errorf("events token with r added: %v, want ErrSignature", err)
	}
	q.Set("r", "acl")
	if _, err := k.Verify("chan-1", q.Encode()); !errors.Is(err, ErrMalformed) {
		t.Errorf("unknown resource: %v, want ErrMalformed", err)
	}
	if _, err := k.Verify("chan-2", tok); !errors.Is(err, ErrSignature) {
		t.Errorf("list token on another channel: %v", err)
	}
	if _, err := k.MintFor("c", "acl", idKey, exp); err == nil {
		t.Error("MintFor an unknown resource: want an error")
	}
	v1 := "v=1&k=k1&c=" + idKey + "&r=calendarList&s=" + strings.Repeat("A", 43)
	if _, err := k.Verify("chan-1", v1); !errors.Is(err, ErrMalformed) {
		t.Errorf("version 1 with r: %v, want ErrMalformed", err)
	}
}
