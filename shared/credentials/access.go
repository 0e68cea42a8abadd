package credentials

import (
	"fmt"
	"log/slog"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/sealed"
	"github.com/calsync/calsync/shared/store"
)

// Access is what reading users' calendars takes, built once from a
// function's Calendar config: the stored credentials, the Calendar client
// factory (per-user rate limits, token caches) and the lifecycle owner that
// records what Google's answers do to calendars and identities (it forgets a
// dead grant's cached client). SyncWorker, RenewChannels and the CLI all
// build it here.
type Access struct {
	Credentials *Vault
	Calendars   *calclient.Factory
	Lifecycle   *lifecycle.Owner
}

// NewAccess builds the Access of cfg on st. The lifecycle owner stops no
// channels until its Stopper is set (RenewChannels sets its channel
// manager); callers set its 404 policy from their config.
// Credentials open with CREDENTIAL_PRIVATE_KEYS (sealed) and, while set,
// CREDENTIAL_KEYS (legacy); reseals go to the first private key's public
// half, which CREDENTIAL_PUBLIC_KEY, when set, must be one of: otherwise
// enrollers would seal to a key these functions cannot open.
func NewAccess(cfg config.Calendar, st *store.Store, logger *slog.Logger) (*Access, error) {
	creds, err := NewVault(cfg, st)
	if err != nil {
		return nil, err
	}
	opts := calclient.FromConfig(cfg, creds)
	if cfg.CalendarBudget != "local" {
		// Google's quotas are per user and per project across every process
		// of the deployment: the budget is shared through Firestore.
		opts.Budget = &calclient.SharedBudget{Store: st, UserPerMinute: cfg.CalendarRateLimit, ProjectPerMinute: cfg.CalendarProjectRateLimit,
			ProjectPerDay: cfg.CalendarDailyLimit, Processes: cfg.CalendarProcesses}
	}
	factory := calclient.New(opts)
	creds.Granted = factory.GrantedScopes
	grace := cfg.DelegationGrace
	if grace == 0 {
		grace = -1 // configured to none (the owner's zero is its default)
	}
	return &Access{
		Credentials: creds,
		Calendars:   factory,
		Lifecycle:   &lifecycle.Owner{Store: st, Clients: factory, Logger: logger, DelegationGrace: grace},
	}, nil
}

// NewVault builds the credential Vault of cfg on st (see NewAccess).
func NewVault(cfg config.Calendar, st *store.Store) (*Vault, error) {
	creds := &Vault{Store: st}
	if cfg.CredentialPrivateKeys != "" {
		keys, err := sealed.ParsePrivateKeys(cfg.CredentialPrivateKeys)
		if err != nil {
			return nil, fmt.Errorf("credentials: CREDENTIAL_PRIVATE_KEYS: %w", err)
		}
		creds.Keys, creds.Seal = keys, keys.Public()
	}
	if cfg.CredentialPublicKey != "" {
		pub, err := sealed.ParsePublicKey(cfg.CredentialPublicKey)
		if err != nil {
			return nil, fmt.Errorf("credentials: CREDENTIAL_PUBLIC_KEY: %w", err)
		}
		switch {
		case creds.Keys == nil:
			creds.Seal = pub // an enroller: seals, never opens
		case !creds.Keys.Has(pub):
			return nil, fmt.Errorf("credentials: CREDENTIAL_PUBLIC_KEY (key id %s) is not the public half of any CREDENTIAL_PRIVATE_KEYS key: credentials sealed to it could not be opened", pub.ID())
		}
	}
	if cfg.CredentialKeys != "" {
		legacy, err := ParseCipher(cfg.CredentialKeys)
		if err != nil {
			return nil, err
		}
		creds.Legacy = legacy
	}
	return creds, nil
}
