// Package channeltoken mints and verifies the token calsync gives each push
// channel. Google echoes it in X-Goog-Channel-Token; it proves the channel is
// ours, says which calendar it serves and until when it may be used. Form
// (Google's suggested URL query):
//
//	v=2&k=KEYID&c=CALENDARKEY&e=EXPIRATION&s=SIG
//	SIG = BASE64URL(HMAC-SHA256(key, "v2\n"+channelID+"\n"+calendarKey+"\n"+EXPIRATION))
//
// EXPIRATION is the channel's expiration in Unix seconds, the one asked of
// Google in events.watch (Google grants that or less), so a captured push
// cannot be replayed after the channel is over.
//
// A channel on something other than a calendar's events says so in an
// optional, signed field r (version 2 only): r=calendarList is the channel of
// an identity's calendar list (calendarList.watch), whose c is then the
// identity key (store.Grant.IdentityKey), not a calendar key:
//
//	v=2&k=KEYID&c=IDENTITYKEY&e=EXPIRATION&r=calendarList&s=SIG
//	SIG = BASE64URL(HMAC-SHA256(key, "v2\n"+channelID+"\n"+key+"\n"+EXPIRATION+"\nr="+r))
//
// Tokens without r sign exactly what they signed before r existed, so every
// live channel's token still verifies; r cannot be added to or removed from a
// token (the signed text changes), and an r this code does not know is
// refused (malformed), so a newer kind never passes for an older one. Version 1 tokens (no
// expiration, minted before version 2 existed) still verify, and say so in
// Claims.Version: whether to accept one is the caller's decision (the Webhook
// does during a transition, see README.md).
//
// The first key signs; every configured key verifies, so keys rotate by
// adding the new key, signing with it, renewing every channel signed with the
// old one, then dropping it (README.md, "Rotation").
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
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

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

// Resources a channel can watch (the r field; "" is a calendar's events).
const (
	ResourceEvents       = ""
	ResourceCalendarList = "calendarList"
)

// Claims is what a verified token says. On ErrUnknownKey only KeyID is set
// (unverified, but of the key id syntax): the caller may want to name it.
type Claims struct {
	Version int    // 2, or 1 for a token minted before expirations were bound
	KeyID   string // the key that signed it
	// Resource is what the channel watches: ResourceEvents (CalendarKey is a
	// calendar key) or ResourceCalendarList (CalendarKey is an identity key).
	Resource    string
	CalendarKey string
	// Expiration is the latest instant the channel can live (version 2);
	// zero for version 1.
	Expiration time.Time
}

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

// sum returns the HMAC of a token's signed text, appended to dst: version 1
// signs the channel id and calendar key, version 2 the expiration as well,
// and the resource when it is not a calendar's events.
func (m *macKey) sum(dst []byte, version int, channelID, calendarKey, expiration, resource string) []byte {
	h := m.pool.Get().(hash.Hash)
	defer m.pool.Put(h)
	h.Reset()
	if version == 1 {
		io.WriteString(h, "v1\n")
	} else {
		io.WriteString(h, "v2\n")
	}
	io.WriteString(h, channelID)
	io.WriteString(h, "\n")
	io.WriteString(h, calendarKey)
	if version != 1 {
		io.WriteString(h, "\n")
		io.WriteString(h, expiration)
		if resource != "" {
			io.WriteString(h, "\nr=")
			io.WriteString(h, resource)
		}
	}
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

// SigningKeyID is the id of the key new tokens are signed with; channel
// records keep it, so rotation knows which channels still need the old key.
func (k *Keys) SigningKeyID() string { return k.signingID }

// Mint returns the token for a channel serving calendarKey that Google will
// end at expiration at the latest. The expiration is signed in whole seconds,
// rounded up, so the token never ends before the channel.
func (k *Keys) Mint(channelID, calendarKey string, expiration time.Time) (string, error) {
	return k.MintFor(channelID, ResourceEvents, calendarKey, expiration)
}

// MintFor is Mint for a channel on resource (ResourceEvents: a calendar's
// events, key a calendar key; ResourceCalendarList: an identity's calendar
// list, key the identity key).
func (k *Keys) MintFor(channelID, resource, key string, expiration time.Time) (string, error) {
	if resource != ResourceEvents && resource != ResourceCalendarList {
		return "", fmt.Errorf("channeltoken: unknown resource %q", resource)
	}
	calendarKey := key
	if expiration.IsZero() {
		return "", errors.New("channeltoken: a token needs the channel's expiration")
	}
	secs := expiration.Unix()
	if expiration.After(time.Unix(secs, 0)) {
		secs++
	}
	exp := strconv.FormatInt(secs, 10)
	v := url.Values{
		"v": {"2"},
		"k": {k.signingID},
		"c": {calendarKey},
		"e": {exp},
		"s": {k.byID[k.signingID].signature(2, channelID, calendarKey, exp, resource)},
	}
	if resource != "" {
		v["r"] = []string{resource}
	}
	tok := v.Encode()
	if len(tok) > MaxLen {
		return "", fmt.Errorf("channeltoken: token of %d chars exceeds Google's %d (calendar key too long)", len(tok), MaxLen)
	}
	return tok, nil
}

// keyIDRE is config's key id syntax: an unknown key id is only reported
// (Claims.KeyID) when it has it.
var keyIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,16}$`)

// Verify checks a token for channelID and returns what it claims. Nothing
// else in the token is trusted. It does not judge the expiration: the
// caller knows the time and its grace period.
func (k *Keys) Verify(channelID, token string) (Claims, error) {
	if token == "" {
		return Claims{}, ErrMissing
	}
	if len(token) > MaxLen {
		return Claims{}, ErrMalformed
	}
	f, ok := parseFields(token)
	if !ok {
		return Claims{}, ErrMalformed
	}
	var c Claims
	switch {
	case f.v == "2" && f.e != "":
		secs, err := strconv.ParseInt(f.e, 10, 64)
		if err != nil || secs <= 0 || strconv.FormatInt(secs, 10) != f.e {
			return Claims{}, ErrMalformed // one spelling only, the one Mint writes
		}
		c = Claims{Version: 2, Expiration: time.Unix(secs, 0).UTC()}
	case f.v == "1" && !f.hasE && !f.hasR:
		c = Claims{Version: 1}
	default:
		return Claims{}, ErrMalformed
	}
	switch f.r {
	case ResourceEvents, ResourceCalendarList:
		c.Resource = f.r
	default:
		return Claims{}, ErrMalformed // a kind this code does not know
	}
	key, ok := k.byID[f.k]
	if !ok {
		if keyIDRE.MatchString(f.k) {
			return Claims{KeyID: f.k}, ErrUnknownKey
		}
		return Claims{}, ErrMalformed
	}
	var got, want [sha256.Size]byte
	// Length first: Decode writes past got for a longer text. Strict: one
	// signature has exactly one spelling, the one Mint wrote.
	if len(f.s) != base64.RawURLEncoding.EncodedLen(len(got)) {
		return Claims{}, ErrSignature
	}
	if n, err := base64.RawURLEncoding.Strict().Decode(got[:], []byte(f.s)); err != nil || n != len(got) {
		return Claims{}, ErrSignature
	}
	if !hmac.Equal(key.sum(want[:0], c.Version, channelID, f.c, f.e, f.r), got[:]) {
		return Claims{}, ErrSignature
	}
	c.KeyID, c.CalendarKey = f.k, f.c
	return c, nil
}

// fields are the parts of a token, unescaped.
type fields struct {
	v, k, c, e, s, r string
	hasE, hasR       bool // e, r were present (a version 1 token has neither)
}

// parseFields reads the query form as url.ParseQuery would (same escapes,
// semicolons refused, unknown parts ignored) but requires each of v, k, c, s
// exactly once and non-empty, e and r at most once and non-empty, and
// allocates only for escaped values.
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
		case "e":
			dst, bit = &f.e, 16
		case "r":
			dst, bit = &f.r, 32
		default:
			continue
		}
		if seen&bit != 0 || value == "" {
			return fields{}, false
		}
		seen |= bit
		*dst = value
	}
	f.hasE, f.hasR = seen&16 != 0, seen&32 != 0
	return f, seen&15 == 15
}

// signature is the s field Mint writes.
func (m *macKey) signature(version int, channelID, calendarKey, expiration, resource string) string {
	return base64.RawURLEncoding.EncodeToString(m.sum(nil, version, channelID, calendarKey, expiration, resource))
}
