package store

// Credential records: credentials/{credentialId}. The ciphertext is made and
// opened by shared/credentials; nothing here sees a token in clear.

import (
	"context"
	"fmt"

	"cloud.google.com/go/firestore"
)

// Credential statuses (besides StatusAuthRevoked).
const CredentialActive = "active"

// CreateCredential writes a new credential record (fails if id exists).
func (s *Store) CreateCredential(ctx context.Context, id string, c Credential) error {
	_, err := s.CredentialRef(id).Create(ctx, c)
	return err
}

// GetCredential reads one credential record; ErrNotFound when there is none.
func (s *Store) GetCredential(ctx context.Context, id string) (Credential, error) {
	return getDoc[Credential](ctx, s.CredentialRef(id), "credential "+id)
}

// RevokeCredential marks a credential auth_revoked in a transaction and
// reports whether this call made the change (false: already revoked), so
// exactly one caller reports a revocation. ErrNotFound when there is none.
func (s *Store) RevokeCredential(ctx context.Context, id string) (changed bool, err error) {
	ref := s.CredentialRef(id)
	err = s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		changed = false
		snap, err := tx.Get(ref)
		if err != nil {
			return wrapNotFound(err, "credential "+id)
		}
		if st, _ := snap.DataAt("status"); st == StatusAuthRevoked {
			return nil
		}
		changed = true
		now := s.now()
		return tx.Update(ref, []firestore.Update{
			{Path: "status", Value: StatusAuthRevoked},
			{Path: "revokedAt", Value: now},
			{Path: "updatedAt", Value: now},
		})
	})
	return changed, err
}

// CredentialsNotSealedWith lists the ids of credentials sealed under a key
// other than keyID (the ones a key rotation must reseal).
func (s *Store) CredentialsNotSealedWith(ctx context.Context, keyID string) ([]string, error) {
	snaps, err := s.Client.Collection(CollCredentials).Where("keyId", "!=", keyID).Select().Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("credentials sealed with another key than %s: %w", keyID, err)
	}
	ids := make([]string, len(snaps))
	for i, snap := range snaps {
		ids[i] = snap.Ref.ID
	}
	return ids, nil
}

// Reseal rewrites one credential's ciphertext in a transaction: reseal gets
// the stored record and returns the new key id and ciphertext, or ok=false to
// leave it as it is.
func (s *Store) Reseal(ctx context.Context, id string, reseal func(Credential) (keyID string, ciphertext []byte, ok bool, err error)) error {
	ref := s.CredentialRef(id)
	return s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(ref)
		if err != nil {
			return wrapNotFound(err, "credential "+id)
		}
		var c Credential
		if err := snap.DataTo(&c); err != nil {
			return err
		}
		keyID, ct, ok, err := reseal(c)
		if err != nil || !ok {
			return err
		}
		return tx.Update(ref, []firestore.Update{
			{Path: "keyId", Value: keyID}, {Path: "ciphertext", Value: ct}, {Path: "updatedAt", Value: s.now()},
		})
	})
}
