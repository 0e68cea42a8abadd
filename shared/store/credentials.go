package store

// Credential records: credentials/{credentialId}. The sealed box (or the
// legacy ciphertext) is made and opened by shared/credentials; nothing here
// sees a token in clear.

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

// DeleteCredential removes a credential record (one a refused enrollment
// had just stored). A missing one is not an error.
func (s *Store) DeleteCredential(ctx context.Context, id string) error {
	_, err := s.CredentialRef(id).Delete(ctx)
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

// ReplaceCredential gives a stored credential a new sealed grant (its user
// connected again: a reconnect), active again, with the scopes Google
// granted it.
func (s *Store) ReplaceCredential(ctx context.Context, id, box, keyID string, scopes []string) error {
	now := s.now()
	_, err := s.CredentialRef(id).Update(ctx, []firestore.Update{
		{Path: "sealed", Value: box},
		{Path: "sealedKeyId", Value: keyID},
		{Path: "status", Value: CredentialActive},
		{Path: "revokedAt", Value: firestore.Delete},
		{Path: "scopes", Value: scopes},
		{Path: "updatedAt", Value: now},
	})
	return wrapNotFound(err, "credential "+id)
}

// LegacyCredentials lists the ids of credentials still encrypted with
// AES-256-GCM (a keyId field), the ones the migration seals.
func (s *Store) LegacyCredentials(ctx context.Context) ([]string, error) {
	return s.credentialIDs(ctx, s.Client.Collection(CollCredentials).Where("keyId", "!=", ""))
}

// CredentialsNotSealedTo lists the ids of credentials that are not sealed to
// keyID: legacy ones and those sealed to another key (rotation).
func (s *Store) CredentialsNotSealedTo(ctx context.Context, keyID string) ([]string, error) {
	legacy, err := s.LegacyCredentials(ctx)
	if err != nil {
		return nil, err
	}
	other, err := s.credentialIDs(ctx, s.Client.Collection(CollCredentials).Where("sealedKeyId", "!=", keyID))
	if err != nil {
		return nil, err
	}
	return append(legacy, other...), nil
}

func (s *Store) credentialIDs(ctx context.Context, q firestore.Query) ([]string, error) {
	snaps, err := q.Select().Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	ids := make([]string, len(snaps))
	for i, snap := range snaps {
		ids[i] = snap.Ref.ID
	}
	return ids, nil
}

// Reseal rewrites one credential in a transaction: reseal gets the stored
// record and returns its new sealed box and key id, or ok=false to leave it
// as it is. The legacy fields go in the same write.
func (s *Store) Reseal(ctx context.Context, id string, reseal func(Credential) (box, keyID string, ok bool, err error)) error {
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
		box, keyID, ok, err := reseal(c)
		if err != nil || !ok {
			return err
		}
		return tx.Update(ref, []firestore.Update{
			{Path: "sealed", Value: box}, {Path: "sealedKeyId", Value: keyID},
			{Path: "keyId", Value: firestore.Delete}, {Path: "ciphertext", Value: firestore.Delete},
			{Path: "updatedAt", Value: s.now()},
		})
	})
}

// CredentialKeyCounts counts stored credentials by the key that opens them:
// the sealing key id, or "aes:KEYID" for a legacy one (key rotation and the
// migration are done when an old key's count is 0).
func (s *Store) CredentialKeyCounts(ctx context.Context) (map[string]int, error) {
	snaps, err := s.Client.Collection(CollCredentials).Select("sealedKeyId", "keyId").Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	out := map[string]int{}
	for _, snap := range snaps {
		var c Credential
		if err := snap.DataTo(&c); err != nil {
			return nil, err
		}
		switch {
		case c.SealedKeyID != "":
			out[c.SealedKeyID]++
		case c.KeyID != "":
			out["aes:"+c.KeyID]++
		default:
			out["(none)"]++
		}
	}
	return out, nil
}
