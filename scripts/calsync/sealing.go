package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/sealed"
)

// credsConfig is what the credential commands read: the project, Firestore
// and the Calendar settings, of which each command needs different keys
// (connect: the public key only; migrate-credentials: CREDENTIAL_KEYS and
// the public key; reseal: the private keys).
type credsConfig struct {
	config.Common
	config.Firestore
	config.Calendar
}

// Validate reports every problem of what enrolling and resealing share; the
// commands then say which key they miss.
func (c credsConfig) Validate() error {
	var errs []error
	if strings.TrimSpace(c.ProjectID) == "" {
		errs = append(errs, errors.New("PROJECT_ID must not be empty"))
	}
	return errors.Join(append(errs, c.ValidateEnrollment())...)
}

// credentials opens the credential store with whatever keys are configured.
func (c *cli) credentials(ctx context.Context) (*credentials.Vault, error) {
	cfg, err := config.Load[credsConfig](ctx, c.lookup)
	if err != nil {
		return nil, fmt.Errorf("%w (set it in the environment or --state-file)", err)
	}
	st, err := c.openStore(ctx, cfg.ProjectID, cfg.FirestoreDatabase)
	if err != nil {
		return nil, err
	}
	return credentials.NewVault(cfg.Calendar, st)
}

// cmdMigrateCredentials seals every legacy AES-GCM credential to the
// deployment's public key. It needs CREDENTIAL_KEYS (to open them, one last
// time) and the public key, not the private keys. RenewChannels does the
// same in every run while CREDENTIAL_KEYS is set for it.
func cmdMigrateCredentials(ctx context.Context, c *cli, args []string) error {
	fs := c.flagSet("migrate-credentials")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	creds, err := c.credentials(ctx)
	if err != nil {
		return err
	}
	if creds.Legacy == nil {
		return errors.New("migrate-credentials needs CREDENTIAL_KEYS, the AES keys the legacy credentials were stored with")
	}
	if creds.Seal == nil {
		return errors.New("migrate-credentials needs CREDENTIAL_PUBLIC_KEY (pubkey:v1:..., terraform output credential_public_key)")
	}
	p := newProgressOf(c, "migrate-credentials", "credentials")
	n, err := creds.Migrate(ctx, p.set2)
	p.done()
	fmt.Fprintf(c.stdout, "sealed %d legacy credential(s) to key %s", n, creds.Seal.ID())
	if err != nil {
		fmt.Fprintln(c.stdout)
		return fmt.Errorf("some credentials could not be migrated (keep CREDENTIAL_KEYS until they are): %w", err)
	}
	fmt.Fprintln(c.stdout, "; none is left: CREDENTIAL_KEYS can be dropped (terraform: legacy_credential_keys = false)")
	return nil
}

// cmdKeygen makes a deployment key pair for sealed credentials: the
// private key line goes to stdout only (pipe it into Secret Manager), the
// public key to stderr (or --public-out) for terraform.tfvars and enrollers.
func cmdKeygen(ctx context.Context, c *cli, args []string) error {
	fs := c.flagSet("keygen")
	id := fs.String("id", "", "key id (1-16 of A-Za-z0-9_-), e.g. h1; a new one for each rotation")
	out := fs.String("public-out", "", "also write the public key to this file")
	if err := c.parseFlags(fs, args); err != nil {
		return err
	}
	if *id == "" {
		return usagef("--id is required")
	}
	priv, pub, err := sealed.GenerateKey(*id)
	if err != nil {
		return usagef("%v", err)
	}
	if *out != "" {
		if err := os.WriteFile(*out, []byte(pub.String()+"\n"), 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintln(c.stdout, priv)
	fmt.Fprintf(c.stderr, "public key (not secret: terraform.tfvars credential_public_key, and whoever enrolls users):\n%s\n"+
		"The line on stdout is the PRIVATE key: pipe it into 'gcloud secrets versions add PREFIX-credential-private-keys --data-file=-' "+
		"(put it before the current key for a rotation) and keep no copy.\n", pub)
	return nil
}
