package credentials

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/store"
)

// Store reads and writes encrypted credentials; it implements
// calclient.RefreshTokens.
type Store struct {
	Store  *store.Store
	Cipher *Cipher
}

// Put stores a refresh token for subject (the user's email, for operators)
// under a new credential id, which it returns.
func (s *Store) Put(ctx context.Context, subject, refreshToken string) (string, error) {
	if strings.TrimSpace(refreshToken) == "" {
		return "", errors.New("credentials: empty refresh token")
	}
	id := "cred-" + uuid.NewString()
	keyID, ct, err := s.Cipher.Seal(id, []byte(refreshToken))
	if err != nil {
		return "", err
	}
	now := time.Now().UTC()
	err = s.Store.CreateCredential(ctx, id, store.Credential{
		Subject: subject, KeyID: keyID, Ciphertext: ct, Status: store.CredentialActive, CreatedAt: now, UpdatedAt: now,
	})
	if err != nil {
		return "", fmt.Errorf("credentials: store: %w", err)
	}
	return id, nil
}

// RefreshToken returns the decrypted refresh token of a credential; an error
// matching calclient.IsAuthRevoked when it was marked auth_revoked.
func (s *Store) RefreshToken(ctx context.Context, credentialID string) (string, error) {
	c, err := s.Store.GetCredential(ctx, credentialID)
	if err != nil {
		return "", err
	}
	if c.Status == store.StatusAuthRevoked {
		return "", fmt.Errorf("credential %s: %w", credentialID, calclient.ErrAuthRevoked)
	}
	pt, err := s.Cipher.Open(credentialID, c.KeyID, c.Ciphertext)
	if err != nil {
		return "", fmt.Errorf("credential %s: %w", credentialID, err)
	}
	return string(pt), nil
}

// Reseal re-encrypts every credential sealed under a key other than the
// first one of the Cipher, so the old key can then be dropped from
// CREDENTIAL_KEYS. It returns how many were rewritten. Each rewrite is a
// transaction; a credential sealed under a key the Cipher lacks is an error
// (named by id) and the others go on.
func (s *Store) Reseal(ctx context.Context) (int, error) {
	ids, err := s.Store.CredentialsNotSealedWith(ctx, s.Cipher.sealID)
	if err != nil {
		return 0, fmt.Errorf("credentials: %w", err)
	}
	n := 0
	var errs []error
	for _, id := range ids {
		err := s.Store.Reseal(ctx, id, func(c store.Credential) (string, []byte, bool, error) {
			if c.KeyID == s.Cipher.sealID {
				return "", nil, false, nil // resealed meanwhile
			}
			pt, err := s.Cipher.Open(id, c.KeyID, c.Ciphertext)
			if err != nil {
				return "", nil, false, err
			}
			keyID, ct, err := s.Cipher.Seal(id, pt)
			return keyID, ct, err == nil, err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("credential %s: %w", id, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
