package credentials

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calsync/calsync/shared/store"
)

// Errors of AddSealed.
var (
	// ErrCredentialTaken: the credential id already holds another grant.
	ErrCredentialTaken = errors.New("credentials: the credential id holds another sealed token")
	// ErrCredentialRevoked: the credential id's grant was revoked; a new
	// grant needs a new id.
	ErrCredentialRevoked = errors.New("credentials: the credential was revoked; a new grant needs a new credential id")
)

// AddSealed stores a box a product backend sealed (a control message's
// enroll), after checking that it opens with this deployment's keys for
// that credential id, so a box that can never be used is refused before
// anything is written. Storing the same box again is a no-op (Pub/Sub may
// deliver the message twice); another box under the same id is
// ErrCredentialTaken. created says whether this call stored it. The refresh
// token is never kept, logged or returned.
func (s *Store) AddSealed(ctx context.Context, id, subject, box string) (created bool, err error) {
	if s.Keys == nil {
		return false, ErrNoPrivateKey
	}
	pt, err := s.Keys.Open(box, AAD(id))
	if err != nil {
		return false, fmt.Errorf("credentials: sealed token of %s: %w", id, err)
	}
	clear(pt)
	err = s.PutSealed(ctx, id, subject, box)
	if status.Code(err) != codes.AlreadyExists { // wrapped Status errors count
		return err == nil, err
	}
	c, gerr := s.Store.GetCredential(ctx, id)
	if gerr != nil {
		return false, gerr
	}
	if c.Sealed != box {
		return false, fmt.Errorf("%w: %s", ErrCredentialTaken, id)
	}
	if c.Status == store.StatusAuthRevoked {
		// The same grant again after it was revoked: still dead.
		return false, fmt.Errorf("%w: %s", ErrCredentialRevoked, id)
	}
	return false, nil
}
