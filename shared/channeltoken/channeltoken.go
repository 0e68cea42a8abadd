// Package channeltoken mints and verifies the token calsync gives each push
// channel. Google echoes it in X-Goog-Channel-Token; it proves the channel is
// ours and says which calendar it serves. Form (Google's suggested URL query):
//
//	v=1&k=KEYID&c=CALENDARKEY&s=BASE64URL(HMAC-SHA256(key, "v1\n"+channelID+"\n"+calendarKey))
//
// The first key signs; every configured key verifies, so keys rotate by adding
// the new key first, waiting one channel TTL, then dropping the old one.
package channeltoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"strings"
	"sync"

	"github.com/calsync/calsync/shared/config"
)

// MaxLen is Google's limit on a channel token.
const MaxLen = 256

// Errors returned by Verify. They say what failed, never the token.
var (
	ErrMissing    = errors.New("channel token missing")
	ErrMalformed  = errors.New("channel token malformed")
	ErrUnknownKey = errors.New("channel token signed with an unknown key")
	ErrSignature  = errors.New("channel token signature does not match")
)

// Keys signs and verifies channel tokens.
type Keys struct {
	signingID string
	byID      map[string]*macKey
}

// macKey pools keyed HMAC states: the Webhook verifies one token per request,
// and a fresh HMAC costs two SHA-256 states and a key schedule each time.
type macKey struct{ pool sync.Pool }

func newMACKey(material []byte) *macKey {
	m := &macKey{}
	m.pool.New = func() any { return hmac.New(sha256.New, material) }
	return m
}

// sum returns the HMAC of the token's signed text, appended to dst.
func (m *macKey) sum(dst []byte, channelID, calendarKey string) []byte {
	h := m.pool.Get().(hash.Hash)
	defer m.pool.Put(h)
	h.Reset()
	io.WriteString(h, "v1\n")
	io.WriteString(h, channelID)
	io.WriteString(h, "\n")
	io.WriteString(h, calendarKey)
	return h.Sum(dst)
}

// New builds Keys from a parsed key list; the first key signs.
func New(keys []config.Key) (*Keys, error) {
	if len(keys) == 0 {
		return nil, errors.New("channeltoken: no keys")
	}
	k := &Keys{signingID: keys[0].ID, byID: map[string]*macKey{}}
	for _, key := range keys {
		if k.byID[key.ID] != nil {
			return nil, fmt.Errorf("channeltoken: key id %q appears twice", key.ID)
		}
		k.byID[key.ID] = newMACKey(key.Material)
	}
	return k, nil
}

// Parse builds Keys from the KEYID:BASE64 list of the config.
func Parse(list string) (*Keys, error) {
	keys, err := config.ParseKeys(list)
	if err != nil {
		return nil, fmt.Errorf("channeltoken: %w", err)
	}
	return New(keys)
}

// Mint returns the token for a channel serving calendarKey.
func (k *Keys) Mint(channelID, calendarKey string) (string, error) {
	tok := url.Values{
		"v": {"1"},
		"k": {k.signingID},
		"c": {calendarKey},
		"s": {k.byID[k.signingID].signature(channelID, calendarKey)},
	}.Encode()
	if len(tok) > MaxLen {
		return "", fmt.Errorf("channeltoken: token of %d chars exceeds Google's %d (calendar key too long)", len(tok), MaxLen)
	}
	return tok, nil
}

// Verify checks a token for channelID and returns the calendar key it names.
// Nothing else in the token is trusted.
func (k *Keys) Verify(channelID, token string) (calendarKey string, err error) {
	if token == "" {
		return "", ErrMissing
	}
	if len(token) > MaxLen {
		return "", ErrMalformed
	}
	f, ok := parseFields(token)
	if !ok || f.v != "1" {
		return "", ErrMalformed
	}
	key, ok := k.byID[f.k]
	if !ok {
		return "", ErrUnknownKey
	}
	var got, want [sha256.Size]byte
	// Length first: Decode writes past got for a longer text. Strict: one
	// signature has exactly one spelling, the one Mint wrote.
	if len(f.s) != base64.RawURLEncoding.EncodedLen(len(got)) {
		return "", ErrSignature
	}
	if n, err := base64.RawURLEncoding.Strict().Decode(got[:], []byte(f.s)); err != nil || n != len(got) {
		return "", ErrSignature
	}
	if !hmac.Equal(key.sum(want[:0], channelID, f.c), got[:]) {
		return "", ErrSignature
	}
	return f.c, nil
}

// fields are the four parts of a token, unescaped.
type fields struct{ v, k, c, s string }

// parseFields reads the query form as url.ParseQuery would (same escapes,
// semicolons refused, unknown parts ignored) but requires each of v, k, c, s
// exactly once and non-empty, and allocates only for escaped values.
func parseFields(token string) (fields, bool) {
	if strings.Contains(token, ";") {
		return fields{}, false
	}
	var f fields
	seen := 0
	for part := range strings.SplitSeq(token, "&") {
		if part == "" {
			continue
		}
		name, value, _ := strings.Cut(part, "=")
		name, err1 := url.QueryUnescape(name)
		value, err2 := url.QueryUnescape(value)
		if err1 != nil || err2 != nil {
			return fields{}, false
		}
		var dst *string
		var bit int
		switch name {
		case "v":
			dst, bit = &f.v, 1
		case "k":
			dst, bit = &f.k, 2
		case "c":
			dst, bit = &f.c, 4
		case "s":
			dst, bit = &f.s, 8
		default:
			continue
		}
		if seen&bit != 0 || value == "" {
			return fields{}, false
		}
		seen |= bit
		*dst = value
	}
	return f, seen == 15
}

// signature is the s field Mint writes.
func (m *macKey) signature(channelID, calendarKey string) string {
	return base64.RawURLEncoding.EncodeToString(m.sum(nil, channelID, calendarKey))
}
