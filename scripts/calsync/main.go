// Command calsync is the operator CLI: connect a user (OAuth), watch and
// unwatch calendars, list them, ask for syncs, and run a renewal now. It works
// against Google Cloud with Application Default Credentials and against the
// local emulators (FIRESTORE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST,
// CALENDAR_ENDPOINT, or a devstack --state-file). See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: calsync <command> [flags]

commands:
  connect   authorize a user (OAuth loopback flow) and store the refresh token sealed to the public key
  connect-link  print a connect link for a tenant's user (what a product's backend makes with shared/connectlink)
  watch     register a calendar, create its push channel, ask for its first full sync
  unwatch   stop watching a calendar (status unwatched, channels stopped)
  enroll    follow an identity's calendar list (--subject or --credential), or a Workspace domain's users and rooms (--domain)
  unenroll  stop following an identity or a domain (--delete-mirror: delete the mirrors too)
  list      list calendars: status, channel expiry, last sync, event count
  resync    ask for a sync of one calendar or all (--full: drop the sync token)
  renew     run one channel renewal now (what the scheduler does hourly)
  keys      live channels per channel-token key id (key rotation: is the old key still used?)
  reseal    seal every stored credential to the first CREDENTIAL_PRIVATE_KEYS key (rotation; RenewChannels does it hourly)
  migrate-credentials   seal the legacy AES-GCM credentials to CREDENTIAL_PUBLIC_KEY (needs CREDENTIAL_KEYS)
  keygen    make a key pair for sealed credentials (private key on stdout, public key on stderr)
  control   publish a control message for a tenant (enroll, unenroll, resync), as a product does; --wait for its answer
  smoke     prove push → mirror → feed: write a test event to a watched calendar, wait for its change messages
  scopes    the scopes a Workspace admin authorises for domain-wide delegation, per API

Run 'calsync <command> -h' for the flags of a command. Commands read the same
environment as RenewChannels (PROJECT_ID, WEBHOOK_URL, ...); none needs a
secret to enroll users or register calendars: connect takes the public key
(CREDENTIAL_PUBLIC_KEY), and without CHANNEL_TOKEN_KEYS watch and unwatch leave
the channels to RenewChannels. --state-file (or CALSYNC_STATE_FILE) supplies
defaults from a devstack state file; flags override the environment.
`

// errUsage marks a usage error (exit code 2); the message says what is wrong.
var errUsage = errors.New("usage")

type usageError struct{ msg string }

func (e usageError) Error() string   { return e.msg }
func (e usageError) Is(t error) bool { return t == errUsage }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// realMain runs one command and returns the exit code: 0 ok, 1 failed, 2 usage.
func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func(context.Context, *cli, []string) error{
		"connect":             cmdConnect,
		"connect-link":        cmdConnectLink,
		"watch":               cmdWatch,
		"unwatch":             cmdUnwatch,
		"enroll":              cmdEnroll,
		"unenroll":            cmdUnenroll,
		"list":                cmdList,
		"resync":              cmdResync,
		"renew":               cmdRenew,
		"keys":                cmdKeys,
		"reseal":              cmdReseal,
		"keygen":              cmdKeygen,
		"scopes":              cmdScopes,
		"smoke":               cmdSmoke,
		"control":             cmdControl,
		"migrate-credentials": cmdMigrateCredentials,
	}
	name := args[0]
	if name == "-h" || name == "--help" || name == "help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	run, ok := cmds[name]
	if !ok {
		fmt.Fprintf(stderr, "calsync: unknown command %q\n\n%s", name, usage)
		return 2
	}
	c := &cli{name: name, stdout: stdout, stderr: stderr}
	err := run(ctx, c, args[1:])
	defer c.close()
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "calsync %s: %v\n", name, err)
		if c.flags != nil {
			fmt.Fprintf(stderr, "\nflags of calsync %s:\n", name)
			c.flags.SetOutput(stderr)
			c.flags.PrintDefaults()
		}
		return 2
	default:
		fmt.Fprintf(stderr, "calsync %s: %v\n", name, err)
		return 1
	}
}
