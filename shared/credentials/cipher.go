// Package credentials keeps users' OAuth refresh tokens in credentials/{id}:
// sealed to the deployment's public key (shared/sealed, HPKE; the credential
// id bound as context), opened only in memory by the functions that hold the
// private key to refresh access tokens, and marked auth_revoked, with their
// calendars, when Google answers invalid_grant. Credentials stored before
// sealing existed are AES-256-GCM (this file) until migrated.
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

// Cipher opens the legacy AES-256-GCM credentials (CREDENTIAL_KEYS) until
// they are migrated to sealed boxes; new credentials are never written with
// it. (Seal remains for tests that make legacy records.)
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
