package syncworker

import (
	"context"
	"errors"
	"fmt"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
)

// Services adapts a calclient.Factory to syncer.Services.
type Services struct{ Factory *calclient.Factory }

// ForCalendar returns the calendar's client. A credential already marked
// revoked reads as syncer.ErrAuthRevoked.
func (s Services) ForCalendar(ctx context.Context, cal store.Calendar) (*calendar.Service, error) {
	svc, err := s.Factory.Service(ctx, cal)
	if err != nil && errors.Is(err, credentials.ErrRevoked) {
		return nil, fmt.Errorf("%w: %w", syncer.ErrAuthRevoked, err)
	}
	return svc, err
}

// revoker records a dead grant with shared/credentials (which logs the one
// auth_revoked ERROR line) and drops the cached client.
type revoker struct {
	fs      *firestore.Client
	factory *calclient.Factory
}

func (r revoker) Revoked(ctx context.Context, cal store.Calendar, cause error) error {
	r.factory.Forget(cal)
	return credentials.Revoked(ctx, r.fs, cal, cause)
}
