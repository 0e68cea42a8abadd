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
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"

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
	signing config.Key
	byID    map[string][]byte
}

// New builds Keys from a parsed key list; the first key signs.
func New(keys []config.Key) (*Keys, error) {
	if len(keys) == 0 {
		return nil, errors.New("channeltoken: no keys")
	}
	k := &Keys{signing: keys[0], byID: map[string][]byte{}}
	for _, key := range keys {
		k.byID[key.ID] = key.Material
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
		"k": {k.signing.ID},
		"c": {calendarKey},
		"s": {sign(k.signing.Material, channelID, calendarKey)},
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
	q, err := url.ParseQuery(token)
	if err != nil {
		return "", ErrMalformed
	}
	for _, f := range []string{"v", "k", "c", "s"} {
		if len(q[f]) != 1 || q[f][0] == "" {
			return "", ErrMalformed
		}
	}
	if q.Get("v") != "1" {
		return "", ErrMalformed
	}
	key, ok := k.byID[q.Get("k")]
	if !ok {
		return "", ErrUnknownKey
	}
	want := sign(key, channelID, q.Get("c"))
	if subtle.ConstantTimeCompare([]byte(want), []byte(q.Get("s"))) != 1 {
		return "", ErrSignature
	}
	return q.Get("c"), nil
}

func sign(key []byte, channelID, calendarKey string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("v1\n" + channelID + "\n" + calendarKey))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
