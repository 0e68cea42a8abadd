package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"cloud.google.com/go/firestore"
	"github.com/sethvargo/go-envconfig"

	"github.com/calsync/calsync/shared/app"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/renewer"
	"github.com/calsync/calsync/shared/store"
)

// stateKeys maps devstack state-file keys to the environment variables they
// default.
var stateKeys = map[string]string{
	"projectId":             "PROJECT_ID",
	"webhookUrl":            "WEBHOOK_URL",
	"connectUrl":            "CONNECT_URL",
	"connectLinkKeys":       "CONNECT_LINK_KEYS",
	"calendarEndpoint":      "CALENDAR_ENDPOINT",
	"firestoreEmulatorHost": "FIRESTORE_EMULATOR_HOST",
	"pubsubEmulatorHost":    "PUBSUB_EMULATOR_HOST",
	"notificationsTopic":    "NOTIFICATIONS_TOPIC",
	"changesTopic":          "CHANGES_TOPIC",
	"controlTopic":          "CONTROL_TOPIC",
	"lifecycleTopic":        "LIFECYCLE_TOPIC",
	"channelTokenKeys":      "CHANNEL_TOKEN_KEYS",
	"credentialKeys":        "CREDENTIAL_KEYS",
	"credentialPrivateKeys": "CREDENTIAL_PRIVATE_KEYS",
	"credentialPublicKey":   "CREDENTIAL_PUBLIC_KEY",
	"oauthClientId":         "OAUTH_CLIENT_ID",
	"oauthClientSecret":     "OAUTH_CLIENT_SECRET",
	"oauthAuthUrl":          "OAUTH_AUTH_URL",
	"oauthTokenUrl":         "OAUTH_TOKEN_URL",
	"channelTtl":            "CHANNEL_TTL",
	"renewBefore":           "RENEW_BEFORE",
}

// cli is one command's context: flags, the layered environment and the
// clients it opened.
type cli struct {
	name           string
	stdout, stderr io.Writer
	flags          *flag.FlagSet

	stateFile string
	project   string
	verbose   bool

	lookup  envconfig.Lookuper
	closers []func()
}

// flagSet returns the command's flag set with the common flags.
func (c *cli) flagSet(synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("calsync "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // realMain prints errors and defaults once
	fs.Usage = func() {}
	fs.StringVar(&c.stateFile, "state-file", os.Getenv("CALSYNC_STATE_FILE"), "devstack state file (JSON) supplying defaults")
	fs.StringVar(&c.project, "project", "", "Google Cloud project id (overrides PROJECT_ID)")
	fs.BoolVar(&c.verbose, "v", false, "log progress details (JSON lines on stderr)")
	c.flags = fs
	_ = synopsis
	return fs
}

// parse parses args and layers the environment; -h prints the flags and
// stops; positional arguments are usage errors.
func (c *cli) parse(fs *flag.FlagSet, args []string) error {
	if err := c.parseFlags(fs, args); err != nil {
		return err
	}
	return c.setupEnv()
}

// parseFlags is parse for a command that reads no environment.
func (c *cli) parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(c.stdout, "flags of calsync %s:\n", c.name)
			fs.SetOutput(c.stdout)
			fs.PrintDefaults()
			return flag.ErrHelp
		}
		return usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (flags go before nothing else; see -h)", fs.Arg(0))
	}
	return nil
}

// setupEnv layers flags over the environment over the state file.
func (c *cli) setupEnv() error {
	state := map[string]string{}
	if c.stateFile != "" {
		raw, err := os.ReadFile(c.stateFile)
		if err != nil {
			return usagef("--state-file: %v", err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			return usagef("--state-file %s: not a JSON object: %v", c.stateFile, err)
		}
		// "env": every variable the stack's functions run with (lowest
		// precedence), then the named keys.
		if env, ok := m["env"].(map[string]any); ok {
			for k, v := range env {
				if s, ok := v.(string); ok && s != "" {
					state[k] = s
				}
			}
		}
		for k, v := range m {
			if env, ok := stateKeys[k]; ok {
				if s, ok := v.(string); ok && s != "" {
					state[env] = s
				}
			}
		}
		if ep := state["CALENDAR_ENDPOINT"]; ep != "" {
			// The emulator serves OAuth next to the API.
			base := strings.TrimSuffix(strings.TrimRight(ep, "/"), "/calendar/v3")
			if state["OAUTH_AUTH_URL"] == "" {
				state["OAUTH_AUTH_URL"] = base + "/authorize"
			}
			if state["OAUTH_TOKEN_URL"] == "" {
				state["OAUTH_TOKEN_URL"] = base + "/token"
			}
		}
	}
	flags := map[string]string{}
	if c.project != "" {
		flags["PROJECT_ID"] = c.project
	}
	c.lookup = envconfig.MultiLookuper(envconfig.MapLookuper(flags), envconfig.OsLookuper(), envconfig.MapLookuper(state))
	// The Firestore client reads its emulator from the process environment.
	if os.Getenv("FIRESTORE_EMULATOR_HOST") == "" && state["FIRESTORE_EMULATOR_HOST"] != "" {
		os.Setenv("FIRESTORE_EMULATOR_HOST", state["FIRESTORE_EMULATOR_HOST"])
	}
	return nil
}

func (c *cli) get(name string) string {
	v, _ := c.lookup.Lookup(name)
	return v
}

// basic is what commands without Calendar access need.
type basic struct {
	config.Common
	config.Firestore
	NotificationsTopic string `env:"NOTIFICATIONS_TOPIC, default=calsync-notifications"`
}

// Validate reports every problem of the basic config.
func (b basic) Validate() error {
	var errs []error
	if strings.TrimSpace(b.ProjectID) == "" {
		errs = append(errs, errors.New("PROJECT_ID must not be empty"))
	}
	if b.NotificationsTopic == "" || strings.ContainsAny(b.NotificationsTopic, "/ ") {
		errs = append(errs, fmt.Errorf("NOTIFICATIONS_TOPIC %q is not a topic id", b.NotificationsTopic))
	}
	return errors.Join(errs...)
}

func (c *cli) basicConfig(ctx context.Context) (basic, error) {
	cfg, err := config.Load[basic](ctx, c.lookup)
	if err != nil {
		return cfg, fmt.Errorf("%w (set it in the environment, --project or --state-file)", err)
	}
	return cfg, nil
}

func (c *cli) renewConfig(ctx context.Context) (config.RenewChannels, error) {
	cfg, err := config.Load[config.RenewChannels](ctx, c.lookup)
	if err != nil {
		return cfg, fmt.Errorf("%w (set it in the environment or --state-file)", err)
	}
	return cfg, nil
}

func (c *cli) logger() *slog.Logger {
	if c.verbose {
		return logging.New(c.stderr, slog.LevelInfo)
	}
	return logging.New(c.stderr, slog.LevelWarn)
}

func (c *cli) openStore(ctx context.Context, project, db string) (*store.Store, error) {
	fs, err := firestore.NewClientWithDatabase(ctx, project, db)
	if err != nil {
		return nil, fmt.Errorf("firestore: %w", err)
	}
	c.closers = append(c.closers, func() { fs.Close() })
	return store.New(fs), nil
}

func (c *cli) publisher(ctx context.Context, project, topic string) (*pubsubx.Publisher, error) {
	ps, err := pubsubx.NewClient(ctx, project, c.get("PUBSUB_EMULATOR_HOST"))
	if err != nil {
		return nil, err
	}
	pub := pubsubx.NewPublisher(ps, topic, false)
	c.closers = append(c.closers, func() { pub.Stop(); ps.Close() })
	return pub, nil
}

// renewer builds the RenewChannels machinery on the CLI's clients.
func (c *cli) renewer(ctx context.Context, cfg config.RenewChannels) (*renewer.Renewer, error) {
	a, err := build(ctx, c, cfg)
	if err != nil {
		return nil, err
	}
	return a.Renewer, nil
}

// build is app.Build with the CLI's logger and Pub/Sub emulator; the App is
// closed with the command.
func build[C app.Config](ctx context.Context, c *cli, cfg C) (*app.App, error) {
	a, err := app.Build(ctx, cfg, app.WithLogger(c.logger()), app.WithPubSubEmulator(c.get("PUBSUB_EMULATOR_HOST")))
	if err != nil {
		return nil, err
	}
	c.closers = append(c.closers, a.Close)
	return a, nil
}

func (c *cli) close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
	c.closers = nil
}
