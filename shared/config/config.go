// Package config reads each function's settings from the environment with
// go-envconfig and checks them all at once, so a broken deployment fails at
// start with one message naming every bad variable.
package config

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/calsync/calsync/shared/logging"
	"github.com/sethvargo/go-envconfig"
)

// Common holds settings every function shares.
type Common struct {
	ProjectID string `env:"PROJECT_ID, required"`
	LogLevel  string `env:"LOG_LEVEL, default=info"`
}

func (c Common) validate() error {
	var errs []error
	if strings.TrimSpace(c.ProjectID) == "" {
		errs = append(errs, errors.New("PROJECT_ID must not be empty"))
	}
	if _, ok := logging.ParseLevel(c.LogLevel); !ok {
		errs = append(errs, fmt.Errorf("LOG_LEVEL %q is not one of debug, info, warning, error", c.LogLevel))
	}
	return errors.Join(errs...)
}

// Webhook configures the Webhook function.
type Webhook struct {
	Common
	NotificationsTopic string        `env:"NOTIFICATIONS_TOPIC, default=calsync-notifications"`
	ChannelTokenKeys   string        `env:"CHANNEL_TOKEN_KEYS, required"`
	PublishTimeout     time.Duration `env:"PUBLISH_TIMEOUT, default=10s"`
	// ExpiryGrace: a push whose token's expiration is further in the past
	// than this is answered 200 and not published (a replay, or a retry of a
	// push Google sent before the channel ended and kept retrying).
	ExpiryGrace time.Duration `env:"CHANNEL_EXPIRY_GRACE, default=1h"`
	// TokenV1Until: version 1 tokens (no expiration, minted before version
	// 2) are accepted until this instant (RFC 3339), none after. Unset: none.
	// Set it for one channel TTL when upgrading a deployment with live
	// channels (RenewChannels renews them all with version 2 tokens within
	// its next run).
	TokenV1Until time.Time `env:"CHANNEL_TOKEN_V1_UNTIL"`
	// UnknownKeyRetry: a token signed with a key id this instance does not
	// know is answered 503 (Google retries) for this long after the instance
	// first saw that key id, with an ERROR line an alert watches, then 403.
	// Covers a rotation step rolled out to RenewChannels before the Webhook.
	UnknownKeyRetry time.Duration `env:"UNKNOWN_KEY_RETRY_WINDOW, default=24h"`
	// KeyHistory: ids (never material) of channel-token keys this
	// deployment used or is about to use that CHANNEL_TOKEN_KEYS does not
	// hold: retired ones, and a new one whose rotation steps may roll out
	// out of order. Only these and the configured ids are answered 503
	// within UNKNOWN_KEY_RETRY_WINDOW and named in logs and metric labels;
	// any other key id is a forger's choice: 403, logged as "unknown".
	KeyHistory []string `env:"CHANNEL_TOKEN_KEY_HISTORY"`
}

// Upper bounds of the Webhook's windows for tokens that would otherwise
// stay valid: a replayed push of an ended channel is refused once
// MaxExpiryGrace is past, and version 1 tokens (no signed expiration) are
// needed for one channel TTL (7 days, Google's default) after an upgrade,
// not more: until then every captured version 1 push replays.
//
// MaxUnknownKeyRetry bounds UNKNOWN_KEY_RETRY_WINDOW: a channel lives at
// most 7 days (Google's default and longest TTL, calsync's CHANNEL_TTL), so
// a key of the history missing for longer signs no live channel, and its
// pushes would be answered 503 (and retried by Google) for nothing.
const (
	MaxExpiryGrace     = 24 * time.Hour
	MaxTokenV1Ahead    = 8 * 24 * time.Hour
	MaxUnknownKeyRetry = 7 * 24 * time.Hour
)

// Validate reports every problem with the Webhook config.
func (c Webhook) Validate() error {
	errs := []error{
		c.Common.validate(),
		validTopic("NOTIFICATIONS_TOPIC", c.NotificationsTopic),
		validKeys("CHANNEL_TOKEN_KEYS", c.ChannelTokenKeys),
		positive("PUBLISH_TIMEOUT", c.PublishTimeout),
		positive("CHANNEL_EXPIRY_GRACE", c.ExpiryGrace),
	}
	if c.ExpiryGrace > MaxExpiryGrace {
		errs = append(errs, fmt.Errorf("CHANNEL_EXPIRY_GRACE must be at most %s, got %s", MaxExpiryGrace, c.ExpiryGrace))
	}
	if limit := time.Now().Add(MaxTokenV1Ahead); c.TokenV1Until.After(limit) {
		errs = append(errs, fmt.Errorf("CHANNEL_TOKEN_V1_UNTIL must be at most %s ahead (one channel TTL and a day), got %s", MaxTokenV1Ahead, c.TokenV1Until.Format(time.RFC3339)))
	}
	if c.UnknownKeyRetry < 0 || c.UnknownKeyRetry > MaxUnknownKeyRetry {
		errs = append(errs, fmt.Errorf("UNKNOWN_KEY_RETRY_WINDOW must be 0 (refuse at once) to %s (one channel TTL), got %s", MaxUnknownKeyRetry, c.UnknownKeyRetry))
	}
	for i, id := range c.KeyHistory {
		if !keyIDRE.MatchString(id) {
			errs = append(errs, fmt.Errorf("CHANNEL_TOKEN_KEY_HISTORY: id %d must be 1-16 of [A-Za-z0-9_-]", i+1))
		}
	}
	return errors.Join(errs...)
}

// Load reads a config struct from the environment (or from lookuper when not
// nil, for tests) and validates it.
func Load[T interface{ Validate() error }](ctx context.Context, lookuper envconfig.Lookuper) (T, error) {
	var cfg T
	if lookuper == nil {
		lookuper = envconfig.OsLookuper()
	}
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &cfg, Lookuper: lookuper}); err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

func validTopic(name, v string) error {
	if v == "" || strings.ContainsAny(v, "/ ") || len(v) > 255 {
		return fmt.Errorf("%s %q is not a topic id (no slashes or spaces, 1-255 chars)", name, v)
	}
	return nil
}

// nonNegative: d is 0 (off) or more.
func nonNegative(name string, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("%s must not be negative, got %s", name, d)
	}
	return nil
}

func positive(name string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%s must be a positive duration, got %s", name, d)
	}
	return nil
}

// validKeys checks the KEYID:BASE64 list format shared by channel-token and
// credential keys, without revealing the key material in the message.
func validKeys(name, v string) error {
	if _, err := ParseKeys(v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
