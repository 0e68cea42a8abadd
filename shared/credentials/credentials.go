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

// Reseal re-encrypts every credential sealed under a key other than the
// first one of the Cipher, so the old key can then be dropped from
// CREDENTIAL_KEYS. It returns how many were rewritten. Each rewrite is a
// transaction; a credential sealed under a key the Cipher lacks is an error
// (named by id) and the others go on.
func (s *Store) Reseal(ctx context.Context) (int, error) {
	it := s.FS.Collection(store.CollCredentials).Where("keyId", "!=", s.Cipher.sealID).Documents(ctx)
	snaps, err := it.GetAll()
	if err != nil {
		return 0, fmt.Errorf("credentials: list: %w", err)
	}
	n := 0
	var errs []error
	for _, snap := range snaps {
		id := snap.Ref.ID
		err := s.FS.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
			cur, err := tx.Get(snap.Ref)
			if err != nil {
				return err
			}
			var c store.Credential
			if err := cur.DataTo(&c); err != nil {
				return err
			}
			if c.KeyID == s.Cipher.sealID {
				return nil
			}
			pt, err := s.Cipher.Open(id, c.KeyID, c.Ciphertext)
			if err != nil {
				return err
			}
			keyID, ct, err := s.Cipher.Seal(id, pt)
			if err != nil {
				return err
			}
			return tx.Update(snap.Ref, []firestore.Update{
				{Path: "keyId", Value: keyID}, {Path: "ciphertext", Value: ct}, {Path: "updatedAt", Value: s.now()},
			})
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("credential %s: %w", id, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
