package credentials

import (
	"log/slog"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/store"
)

// Access is what reading users' calendars takes, built once from a
// function's Calendar config: the stored credentials, the Calendar client
// factory (per-user rate limits, token caches) and the one Revoker for dead
// grants. SyncWorker, RenewChannels and the CLI all build it here.
type Access struct {
	Credentials *Store
	Calendars   *calclient.Factory
	Revoker     *Revoker
}

// NewAccess builds the Access of cfg on st. The Revoker stops no channels
// until its Stopper is set (RenewChannels sets its channel manager).
func NewAccess(cfg config.Calendar, st *store.Store, logger *slog.Logger) (*Access, error) {
	cipher, err := ParseCipher(cfg.CredentialKeys)
	if err != nil {
		return nil, err
	}
	creds := &Store{Store: st, Cipher: cipher}
	factory := calclient.New(calclient.FromConfig(cfg, creds))
	return &Access{
		Credentials: creds,
		Calendars:   factory,
		Revoker:     &Revoker{Store: st, Clients: factory, Logger: logger},
	}, nil
}
