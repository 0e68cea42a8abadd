// Package sealed is calsync's sealed-box format: a secret (a user's OAuth
// refresh token) encrypted to a deployment's public key with HPKE (RFC 9180,
// Go's crypto/hpke), so whoever seals needs only the public key and only the
// holders of the private key can open. The format is specified in README.md;
// another program (a product backend enrolling its users) can produce it
// with any RFC 9180 implementation.
//
//	public key:  pubkey:v1:KEYID:BASE64URL(32-byte X25519 public key)
//	sealed box:  sealed:v1:KEYID:BASE64URL(enc):BASE64URL(ciphertext)
//	suite v1:    DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM (ids 0x0020, 0x0001, 0x0002)
//	info:        "calsync sealed v1" 0x00 KEYID
//	aad:         the caller's context, e.g. "calsync/credential/v1\n" + credentialId
//
// Private keys are a KEYID:BASE64 list (the 32-byte X25519 private keys, as
// config.ParseKeys reads them); the first one is the current key.
package sealed

import (
	"crypto/ecdh"
	"crypto/hpke"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/calsync/calsync/shared/config"
)

// Format markers.
const (
	boxPrefix = "sealed:v1:"
	pubPrefix = "pubkey:v1:"
	infoLabel = "calsync sealed v1\x00"
)

// MaxPlaintext bounds what is sealed: refresh tokens are a few hundred bytes.
const MaxPlaintext = 4096

// Errors of Open and the parsers; none includes key material or plaintext.
var (
	ErrMalformed  = errors.New("sealed: not a sealed:v1 box")
	ErrUnknownKey = errors.New("sealed: sealed to a key id that is not among the private keys")
	ErrOpen       = errors.New("sealed: box does not open (wrong key, wrong context, or tampered)")
)

var keyIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,16}$`)

// The v1 suite.
func kem() hpke.KEM   { return hpke.DHKEM(ecdh.X25519()) }
func kdf() hpke.KDF   { return hpke.HKDFSHA256() }
func aead() hpke.AEAD { return hpke.AES256GCM() }

func info(keyID string) []byte { return []byte(infoLabel + keyID) }

var b64 = base64.RawURLEncoding

// PublicKey seals to one deployment key.
type PublicKey struct {
	id string
	pk hpke.PublicKey
}

// ID is the key id boxes sealed to this key carry.
func (p *PublicKey) ID() string { return p.id }

// String is the public key's text form, pubkey:v1:KEYID:BASE64URL.
func (p *PublicKey) String() string { return pubPrefix + p.id + ":" + b64.EncodeToString(p.pk.Bytes()) }

// ParsePublicKey reads the pubkey:v1 text form.
func ParsePublicKey(s string) (*PublicKey, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), pubPrefix)
	id, enc, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || !keyIDRE.MatchString(id) {
		return nil, errors.New("sealed: public key is not pubkey:v1:KEYID:BASE64URL")
	}
	raw, err := b64.Strict().DecodeString(enc)
	if err != nil || len(raw) != 32 {
		return nil, fmt.Errorf("sealed: public key %s: not 32 bytes of base64url", id)
	}
	pk, err := kem().NewPublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("sealed: public key %s: %w", id, err)
	}
	return &PublicKey{id: id, pk: pk}, nil
}

// Seal encrypts plaintext to the key, bound to aad (which Open must be given
// again), and returns the sealed:v1 box. Every box has a fresh ephemeral key.
func (p *PublicKey) Seal(aad, plaintext []byte) (string, error) {
	if len(plaintext) == 0 || len(plaintext) > MaxPlaintext {
		return "", fmt.Errorf("sealed: plaintext of %d bytes (1 to %d)", len(plaintext), MaxPlaintext)
	}
	enc, s, err := hpke.NewSender(p.pk, kdf(), aead(), info(p.id))
	if err != nil {
		return "", fmt.Errorf("sealed: %w", err)
	}
	ct, err := s.Seal(aad, plaintext)
	if err != nil {
		return "", fmt.Errorf("sealed: %w", err)
	}
	return boxPrefix + p.id + ":" + b64.EncodeToString(enc) + ":" + b64.EncodeToString(ct), nil
}

// box is a parsed sealed:v1 box.
type box struct {
	keyID   string
	enc, ct []byte
}

func parseBox(s string) (box, error) {
	rest, ok := strings.CutPrefix(s, boxPrefix)
	parts := strings.Split(rest, ":")
	if !ok || len(parts) != 3 || !keyIDRE.MatchString(parts[0]) {
		return box{}, ErrMalformed
	}
	enc, err1 := b64.Strict().DecodeString(parts[1])
	ct, err2 := b64.Strict().DecodeString(parts[2])
	// enc is the 32-byte X25519 ephemeral key; ct holds at least the tag.
	if err1 != nil || err2 != nil || len(enc) != 32 || len(ct) < 17 || len(ct) > MaxPlaintext+16 {
		return box{}, ErrMalformed
	}
	return box{keyID: parts[0], enc: enc, ct: ct}, nil
}

// KeyID returns the key id a box was sealed to (ErrMalformed if s is not a
// box). It needs no key: rotation uses it to find boxes of an old key.
func KeyID(s string) (string, error) {
	b, err := parseBox(s)
	return b.keyID, err
}

// PrivateKeys opens boxes sealed to any of them. The first is the current
// key: Public is its public half.
type PrivateKeys struct {
	current string
	byID    map[string]hpke.PrivateKey
}

// NewPrivateKeys builds PrivateKeys from parsed keys (exactly 32 bytes each).
func NewPrivateKeys(keys []config.Key) (*PrivateKeys, error) {
	if len(keys) == 0 {
		return nil, errors.New("sealed: no private keys")
	}
	p := &PrivateKeys{current: keys[0].ID, byID: map[string]hpke.PrivateKey{}}
	for _, k := range keys {
		if len(k.Material) != 32 {
			return nil, fmt.Errorf("sealed: private key %s must be 32 bytes (X25519)", k.ID)
		}
		if _, dup := p.byID[k.ID]; dup {
			return nil, fmt.Errorf("sealed: private key id %q appears twice", k.ID)
		}
		sk, err := kem().NewPrivateKey(k.Material)
		if err != nil {
			return nil, fmt.Errorf("sealed: private key %s: %w", k.ID, err)
		}
		p.byID[k.ID] = sk
	}
	return p, nil
}

// ParsePrivateKeys reads a KEYID:BASE64 list (CREDENTIAL_PRIVATE_KEYS).
func ParsePrivateKeys(list string) (*PrivateKeys, error) {
	keys, err := config.ParseKeys(list)
	if err != nil {
		return nil, fmt.Errorf("sealed: %w", err)
	}
	return NewPrivateKeys(keys)
}

// Public is the public half of the current key.
func (p *PrivateKeys) Public() *PublicKey {
	return &PublicKey{id: p.current, pk: p.byID[p.current].PublicKey()}
}

// Has reports whether pub is the public half of one of the keys.
func (p *PrivateKeys) Has(pub *PublicKey) bool {
	sk, ok := p.byID[pub.id]
	return ok && string(sk.PublicKey().Bytes()) == string(pub.pk.Bytes())
}

// Open decrypts a box sealed to one of the keys with the same aad.
func (p *PrivateKeys) Open(s string, aad []byte) ([]byte, error) {
	b, err := parseBox(s)
	if err != nil {
		return nil, err
	}
	sk, ok := p.byID[b.keyID]
	if !ok {
		return nil, ErrUnknownKey
	}
	r, err := hpke.NewRecipient(b.enc, sk, kdf(), aead(), info(b.keyID))
	if err != nil {
		return nil, ErrOpen
	}
	pt, err := r.Open(aad, b.ct)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// GenerateKey makes a new key pair with id: the private key as a KEYID:BASE64
// list entry (for the secret) and its public key.
func GenerateKey(id string) (private string, public *PublicKey, err error) {
	if !keyIDRE.MatchString(id) {
		return "", nil, errors.New("sealed: key id must be 1-16 of [A-Za-z0-9_-]")
	}
	sk, err := kem().GenerateKey()
	if err != nil {
		return "", nil, err
	}
	raw, err := sk.Bytes()
	if err != nil {
		return "", nil, err
	}
	return id + ":" + base64.StdEncoding.EncodeToString(raw), &PublicKey{id: id, pk: sk.PublicKey()}, nil
}
