// Package credentials keeps users' OAuth refresh tokens: encrypted with
// AES-256-GCM (credential id as additional data, key id stored for rotation)
// in credentials/{id}, decrypted only in memory to refresh access tokens, and
// marked auth_revoked, with their calendars, when Google answers invalid_grant.
package credentials

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/calsync/calsync/shared/config"
)

// Errors of Open. They never include key material or plaintext.
var (
	ErrUnknownKey = errors.New("credentials: ciphertext under an unknown key id")
	ErrDecrypt    = errors.New("credentials: ciphertext does not open (wrong key, wrong credential id, or tampered)")
)

// Cipher seals and opens refresh tokens. The first key encrypts; every key
// decrypts, so keys rotate by putting a new key first (old records still open;
// they are re-encrypted under the new key whenever rewritten).
type Cipher struct {
	sealID string
	aeads  map[string]cipher.AEAD
}

// NewCipher builds a Cipher from keys of exactly 32 bytes.
func NewCipher(keys []config.Key) (*Cipher, error) {
	if len(keys) == 0 {
		return nil, errors.New("credentials: no keys")
	}
	c := &Cipher{sealID: keys[0].ID, aeads: map[string]cipher.AEAD{}}
	for _, k := range keys {
		if len(k.Material) != 32 {
			return nil, fmt.Errorf("credentials: key %s must be 32 bytes (AES-256)", k.ID)
		}
		block, err := aes.NewCipher(k.Material)
		if err != nil {
			return nil, fmt.Errorf("credentials: key %s: %w", k.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		c.aeads[k.ID] = aead
	}
	return c, nil
}

// ParseCipher builds a Cipher from the CREDENTIAL_KEYS list (KEYID:BASE64,...).
func ParseCipher(list string) (*Cipher, error) {
	keys, err := config.ParseKeys(list)
	if err != nil {
		return nil, fmt.Errorf("credentials: CREDENTIAL_KEYS: %w", err)
	}
	return NewCipher(keys)
}

func aad(credentialID string) []byte { return []byte("calsync/credential/v1\n" + credentialID) }

// Seal encrypts plaintext for credentialID: nonce || GCM ciphertext, and the
// id of the key used.
func (c *Cipher) Seal(credentialID string, plaintext []byte) (keyID string, ciphertext []byte, err error) {
	aead := c.aeads[c.sealID]
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", nil, err
	}
	return c.sealID, aead.Seal(nonce, nonce, plaintext, aad(credentialID)), nil
}

// Open decrypts what Seal made for the same credential id.
func (c *Cipher) Open(credentialID, keyID string, ciphertext []byte) ([]byte, error) {
	aead, ok := c.aeads[keyID]
	if !ok {
		return nil, ErrUnknownKey
	}
	n := aead.NonceSize()
	if len(ciphertext) < n+aead.Overhead() {
		return nil, ErrDecrypt
	}
	pt, err := aead.Open(nil, ciphertext[:n], ciphertext[n:], aad(credentialID))
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}
