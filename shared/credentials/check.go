package credentials

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calsync/calsync/shared/sealed"
	"github.com/calsync/calsync/shared/store"
)

// Errors of AddSealed.
var (
	// ErrCredentialTaken: the credential id already holds another grant.
	ErrCredentialTaken = errors.New("credentials: the credential id holds another sealed token")
	// ErrCredentialRevoked: the credential id's grant was revoked and the
	// same box came again; a new grant of the same user (a reconnect)
	// replaces it.
	ErrCredentialRevoked = errors.New("credentials: the credential was revoked; send the user's new grant (a reconnect)")
)

// AddSealed stores a box a product backend sealed (a control message's
// enroll), after checking that it opens with this deployment's keys for
// that credential id, so a box that can never be used is refused before
// anything is written. Storing the same box again is a no-op (Pub/Sub may
// deliver the message twice); another box under the same id is the same
// user's new grant (a reconnect: subject equal to the stored one, case
// folded) which replaces the old one, or ErrCredentialTaken. With Granted set, the grant's scopes are checked first
// (calclient.ErrScopesMissing) and recorded. created says whether this call
// stored it. The refresh token is never kept, logged or returned.
func (s *Vault) AddSealed(ctx context.Context, id, subject, box string) (created bool, err error) {
	if s.Keys == nil {
		return false, ErrNoPrivateKey
	}
	pt, err := s.Keys.Open(box, AAD(id))
	if err != nil {
		return false, fmt.Errorf("credentials: sealed token of %s: %w", id, err)
	}
	defer clear(pt)
	// A redelivery or a taken id is answered before Google is asked.
	if c, gerr := s.Store.GetCredential(ctx, id); !errors.Is(gerr, store.ErrNotFound) {
		if gerr != nil {
			return false, gerr
		}
		if c.Sealed != box && subject != "" && strings.EqualFold(c.Subject, subject) {
			// The same user's new grant (a reconnect): it replaces the old
			// one, dead or alive, once Google confirms its scopes.
			return false, s.replace(ctx, id, box, string(pt))
		}
		return false, stored(c, id, box)
	}
	var scopes []string
	if s.Granted != nil {
		// A grant whose user unticked a scope would only ever answer 403:
		// refused before it is stored.
		if scopes, err = s.Granted(ctx, string(pt)); err != nil {
			return false, fmt.Errorf("credentials: grant of %s: %w", id, err)
		}
	}
	err = s.PutSealed(ctx, id, subject, box, scopes...)
	if status.Code(err) != codes.AlreadyExists { // wrapped Status errors count
		return err == nil, err
	}
	c, gerr := s.Store.GetCredential(ctx, id) // stored meanwhile (a concurrent delivery)
	if gerr != nil {
		return false, gerr
	}
	return false, stored(c, id, box)
}

// replace stores a new grant of a stored credential's user under its id.
func (s *Vault) replace(ctx context.Context, id, box, refreshToken string) error {
	var scopes []string
	if s.Granted != nil {
		var err error
		if scopes, err = s.Granted(ctx, refreshToken); err != nil {
			return fmt.Errorf("credentials: grant of %s: %w", id, err)
		}
	}
	keyID, err := sealed.KeyID(box)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	return s.Store.ReplaceCredential(ctx, id, box, keyID, scopes)
}

// stored answers for a credential id already stored: the same box is a
// no-op, another box ErrCredentialTaken, a revoked grant ErrCredentialRevoked.
func stored(c store.Credential, id, box string) error {
	if c.Sealed != box {
		return fmt.Errorf("%w: %s", ErrCredentialTaken, id)
	}
	if c.Status == store.StatusAuthRevoked {
		// The same grant again after it was revoked: still dead.
		return fmt.Errorf("%w: %s", ErrCredentialRevoked, id)
	}
	return nil
}
