package store

// Credential records: credentials/{credentialId}. The ciphertext is made and
// opened by shared/credentials; nothing here sees a token in clear.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Credential statuses (besides StatusAuthRevoked).
const CredentialActive = "active"

// ErrCredentialNotFound: no such credential record.
var ErrCredentialNotFound = errors.New("store: credential not found")

// CredentialRef is credentials/{id}.
func CredentialRef(fs *firestore.Client, id string) *firestore.DocumentRef {
	return fs.Collection(CollCredentials).Doc(id)
}

// CreateCredential writes a new credential record (fails if id exists).
func CreateCredential(ctx context.Context, fs *firestore.Client, id string, c Credential) error {
	_, err := CredentialRef(fs, id).Create(ctx, c)
	return err
}

// GetCredential reads one credential record.
func GetCredential(ctx context.Context, fs *firestore.Client, id string) (Credential, error) {
	var c Credential
	snap, err := CredentialRef(fs, id).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return c, fmt.Errorf("credential %s: %w", id, ErrCredentialNotFound)
	}
	if err != nil {
		return c, err
	}
	err = snap.DataTo(&c)
	return c, err
}

// RevokeCredential marks a credential auth_revoked in a transaction and
// reports whether this call made the change (false: already revoked), so
// exactly one caller reports a revocation.
func RevokeCredential(ctx context.Context, fs *firestore.Client, id string, now time.Time) (changed bool, err error) {
	ref := CredentialRef(fs, id)
	err = fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		changed = false
		snap, err := tx.Get(ref)
		if status.Code(err) == codes.NotFound {
			return fmt.Errorf("credential %s: %w", id, ErrCredentialNotFound)
		}
		if err != nil {
			return err
		}
		if s, _ := snap.DataAt("status"); s == StatusAuthRevoked {
			return nil
		}
		changed = true
		return tx.Update(ref, []firestore.Update{
			{Path: "status", Value: StatusAuthRevoked},
			{Path: "revokedAt", Value: now},
			{Path: "updatedAt", Value: now},
		})
	})
	return changed, err
}
