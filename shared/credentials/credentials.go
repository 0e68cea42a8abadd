package credentials

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/google/uuid"

	"github.com/calsync/calsync/shared/store"
)

// ErrRevoked: the credential is marked auth_revoked; it is not used again.
var ErrRevoked = errors.New("credentials: grant revoked")

// Store reads and writes encrypted credentials; it implements
// calclient.RefreshTokens.
type Store struct {
	FS     *firestore.Client
	Cipher *Cipher
	Now    func() time.Time
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
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
	now := s.now()
	err = store.CreateCredential(ctx, s.FS, id, store.Credential{
		Subject: subject, KeyID: keyID, Ciphertext: ct, Status: store.CredentialActive, CreatedAt: now, UpdatedAt: now,
	})
	if err != nil {
		return "", fmt.Errorf("credentials: store: %w", err)
	}
	return id, nil
}

// RefreshToken returns the decrypted refresh token of a credential;
// ErrRevoked when it was marked auth_revoked.
func (s *Store) RefreshToken(ctx context.Context, credentialID string) (string, error) {
	c, err := store.GetCredential(ctx, s.FS, credentialID)
	if err != nil {
		return "", err
	}
	if c.Status == store.StatusAuthRevoked {
		return "", fmt.Errorf("credential %s: %w", credentialID, ErrRevoked)
	}
	pt, err := s.Cipher.Open(credentialID, c.KeyID, c.Ciphertext)
	if err != nil {
		return "", fmt.Errorf("credential %s: %w", credentialID, err)
	}
	return string(pt), nil
}
