package credentials

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/sealed"
	"github.com/calsync/calsync/shared/store"
)

// Vault reads and writes users' refresh tokens; it implements
// calclient.RefreshTokens.
type Vault struct {
	Store *store.Store
	// Seal is the deployment's current public key: Put and Reseal seal to
	// it. Nil: they fail (the SyncWorker never writes credentials).
	Seal *sealed.PublicKey
	// Keys open sealed credentials (CREDENTIAL_PRIVATE_KEYS). Nil: only an
	// enroller, which never reads them back.
	Keys *sealed.PrivateKeys
	// Legacy opens credentials stored with AES-256-GCM before sealing
	// existed (CREDENTIAL_KEYS), until they are migrated. Nil afterwards.
	Legacy *Cipher
	// Granted, if set, returns the scopes Google granted a refresh token,
	// or an error when one calsync needs is missing
	// (calclient.Factory.GrantedScopes): AddSealed checks a product's
	// grant with it.
	Granted func(ctx context.Context, refreshToken string) ([]string, error)
}

// Errors naming what configuration a credential needs.
var (
	ErrNoSealKey    = errors.New("credentials: no public key to seal to (CREDENTIAL_PUBLIC_KEY, or CREDENTIAL_PRIVATE_KEYS)")
	ErrNoPrivateKey = errors.New("credentials: sealed credential and no CREDENTIAL_PRIVATE_KEYS to open it")
	ErrNoLegacyKey  = errors.New("credentials: legacy AES-GCM credential and no CREDENTIAL_KEYS to open it (migrate before dropping them)")
)

var idRE = regexp.MustCompile(`^cred-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// NewID returns a new credential id: "cred-" and a random UUID. An enroller
// that seals elsewhere picks the id first, since the box is bound to it.
func NewID() string { return "cred-" + uuid.NewString() }

// AAD is the context a credential's box is sealed with: it binds the box to
// its credential id, so a box copied onto another credential does not open.
func AAD(credentialID string) []byte { return []byte("calsync/credential/v1\n" + credentialID) }

// Put seals a refresh token for subject (the user's email, for operators)
// under a new credential id, stores it with the scopes Google granted it,
// and returns the id.
func (s *Vault) Put(ctx context.Context, subject, refreshToken string, scopes ...string) (string, error) {
	if strings.TrimSpace(refreshToken) == "" {
		return "", errors.New("credentials: empty refresh token")
	}
	if s.Seal == nil {
		return "", ErrNoSealKey
	}
	id := NewID()
	box, err := s.Seal.Seal(AAD(id), []byte(refreshToken))
	if err != nil {
		return "", err
	}
	return id, s.PutSealed(ctx, id, subject, box, scopes...)
}

// PutSealed stores a box an enroller sealed itself (a product backend with
// only the public key): for credential id (from NewID), with AAD(id) as its
// context. It cannot check that the box opens, only its form. scopes are
// those Google granted, recorded on the credential.
func (s *Vault) PutSealed(ctx context.Context, id, subject, box string, scopes ...string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("credentials: id %q is not cred-UUID", id)
	}
	keyID, err := sealed.KeyID(box)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	now := time.Now().UTC()
	err = s.Store.CreateCredential(ctx, id, store.Credential{
		Subject: subject, Sealed: box, SealedKeyID: keyID, Status: store.CredentialActive, Scopes: scopes, CreatedAt: now, UpdatedAt: now,
	})
	if err != nil {
		return fmt.Errorf("credentials: store: %w", err)
	}
	return nil
}

// RefreshToken returns the refresh token of a credential, opened in memory;
// an error matching calclient.IsAuthRevoked when it was marked auth_revoked.
func (s *Vault) RefreshToken(ctx context.Context, credentialID string) (string, error) {
	c, err := s.Store.GetCredential(ctx, credentialID)
	if err != nil {
		return "", err
	}
	if c.Status == store.StatusAuthRevoked {
		return "", fmt.Errorf("credential %s: %w", credentialID, calclient.ErrAuthRevoked)
	}
	pt, err := s.open(credentialID, c)
	if err != nil {
		return "", fmt.Errorf("credential %s: %w", credentialID, err)
	}
	return string(pt), nil
}

// open opens a stored credential of either format.
func (s *Vault) open(id string, c store.Credential) ([]byte, error) {
	switch {
	case c.Sealed != "":
		if s.Keys == nil {
			return nil, ErrNoPrivateKey
		}
		return s.Keys.Open(c.Sealed, AAD(id))
	case s.Legacy == nil:
		return nil, ErrNoLegacyKey
	default:
		return s.Legacy.Open(id, c.KeyID, c.Ciphertext)
	}
}

// Migrate seals every legacy (AES-256-GCM) credential to the public key,
// so CREDENTIAL_KEYS can then be dropped. It needs Legacy and Seal, not the
// private keys. progress, if set, is called after each credential.
func (s *Vault) Migrate(ctx context.Context, progress func(done, total int)) (int, error) {
	if s.Legacy == nil {
		return 0, ErrNoLegacyKey
	}
	ids, err := s.Store.LegacyCredentials(ctx)
	if err != nil {
		return 0, err
	}
	return s.reseal(ctx, ids, progress)
}

// Reseal seals every credential not sealed to the current public key:
// legacy ones (with Legacy) and those sealed to an older key (with Keys),
// so the old key can then be dropped. RenewChannels runs it every hour.
func (s *Vault) Reseal(ctx context.Context, progress func(done, total int)) (int, error) {
	if s.Seal == nil {
		return 0, ErrNoSealKey
	}
	ids, err := s.Store.CredentialsNotSealedTo(ctx, s.Seal.ID())
	if err != nil {
		return 0, err
	}
	return s.reseal(ctx, ids, progress)
}

// reseal rewrites each credential under Seal, one transaction each; one
// that cannot be opened is an error named by id and the others go on.
func (s *Vault) reseal(ctx context.Context, ids []string, progress func(done, total int)) (int, error) {
	if s.Seal == nil {
		return 0, ErrNoSealKey
	}
	n := 0
	var errs []error
	for i, id := range ids {
		err := s.Store.Reseal(ctx, id, func(c store.Credential) (string, string, bool, error) {
			if c.Sealed != "" && c.SealedKeyID == s.Seal.ID() {
				return "", "", false, nil // done meanwhile
			}
			pt, err := s.open(id, c)
			if err != nil {
				return "", "", false, err
			}
			box, err := s.Seal.Seal(AAD(id), pt)
			return box, s.Seal.ID(), err == nil, err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("credential %s: %w", id, err))
		} else {
			n++
		}
		if progress != nil {
			progress(i+1, len(ids))
		}
	}
	return n, errors.Join(errs...)
}
