package config

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
)

var testKey = "k1:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("s", 32)))

func TestWebhookDefaults(t *testing.T) {
	cfg, err := Load[Webhook](context.Background(), envconfig.MapLookuper(map[string]string{
		"PROJECT_ID":         "p",
		"CHANNEL_TOKEN_KEYS": testKey,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NotificationsTopic != "calsync-notifications" || cfg.PublishTimeout != 10*time.Second || cfg.LogLevel != "info" ||
		cfg.ExpiryGrace != time.Hour || cfg.UnknownKeyRetry != 24*time.Hour || !cfg.TokenV1Until.IsZero() {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	cfg, err = Load[Webhook](context.Background(), envconfig.MapLookuper(map[string]string{
		"PROJECT_ID": "p", "CHANNEL_TOKEN_KEYS": testKey, "CHANNEL_TOKEN_V1_UNTIL": "2026-12-01T00:00:00Z",
		"UNKNOWN_KEY_RETRY_WINDOW": "0s", "CHANNEL_TOKEN_KEY_HISTORY": "k0, old_1",
	}))
	if err != nil || !cfg.TokenV1Until.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) || cfg.UnknownKeyRetry != 0 ||
		fmt.Sprint(cfg.KeyHistory) != "[k0 old_1]" {
		t.Fatalf("CHANNEL_TOKEN_V1_UNTIL, UNKNOWN_KEY_RETRY_WINDOW, CHANNEL_TOKEN_KEY_HISTORY: %+v %v", cfg, err)
	}
}

func TestWebhookReportsEveryProblem(t *testing.T) {
	_, err := Load[Webhook](context.Background(), envconfig.MapLookuper(map[string]string{
		"PROJECT_ID":                " ",
		"CHANNEL_TOKEN_KEYS":        "k1:short",
		"NOTIFICATIONS_TOPIC":       "a/b",
		"PUBLISH_TIMEOUT":           "-1s",
		"LOG_LEVEL":                 "loud",
		"CHANNEL_EXPIRY_GRACE":      "0s",
		"UNKNOWN_KEY_RETRY_WINDOW":  "-1h",
		"CHANNEL_TOKEN_KEY_HISTORY": "k0,not an id!",
	}))
	if err == nil {
		t.Fatal("want error")
	}
	// The windows in which tokens stay valid are bounded.
	_, bounds := Load[Webhook](context.Background(), envconfig.MapLookuper(map[string]string{
		"PROJECT_ID": "p", "CHANNEL_TOKEN_KEYS": testKey,
		"CHANNEL_EXPIRY_GRACE":   "25h",
		"CHANNEL_TOKEN_V1_UNTIL": time.Now().Add(9 * 24 * time.Hour).Format(time.RFC3339),
		// Unbounded, a forged key id of the history would be answered 503
		// (and retried by Google) for as long as it is configured.
		"UNKNOWN_KEY_RETRY_WINDOW": "169h",
	}))
	for _, want := range []string{"CHANNEL_EXPIRY_GRACE must be at most", "CHANNEL_TOKEN_V1_UNTIL must be at most",
		"UNKNOWN_KEY_RETRY_WINDOW must be 0 (refuse at once) to 168h0m0s (one channel TTL), got 169h0m0s"} {
		if bounds == nil || !strings.Contains(bounds.Error(), want) {
			t.Errorf("want %q: %v", want, bounds)
		}
	}
	for _, want := range []string{"PROJECT_ID", "CHANNEL_TOKEN_KEYS", "NOTIFICATIONS_TOPIC", "PUBLISH_TIMEOUT", "LOG_LEVEL",
		"CHANNEL_EXPIRY_GRACE", "UNKNOWN_KEY_RETRY_WINDOW", "CHANNEL_TOKEN_KEY_HISTORY: id 2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "short") {
		t.Errorf("error leaks key material: %v", err)
	}
}

func TestMissingRequiredNamed(t *testing.T) {
	_, err := Load[Webhook](context.Background(), envconfig.MapLookuper(map[string]string{}))
	if err == nil || !strings.Contains(err.Error(), "PROJECT_ID") {
		t.Fatalf("want error naming PROJECT_ID, got %v", err)
	}
}

func TestParseKeys(t *testing.T) {
	k2 := "k2:" + base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("t", 40)))
	keys, err := ParseKeys(testKey + ", " + k2)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].ID != "k1" || keys[1].ID != "k2" || len(keys[1].Material) != 40 {
		t.Fatalf("got %+v", keys)
	}
	for _, bad := range []string{"", "nokey", "k1:%%%", testKey + "," + testKey, "bad id!:" + strings.Repeat("A", 44)} {
		if _, err := ParseKeys(bad); err == nil {
			t.Errorf("ParseKeys(%q): want error", bad)
		}
	}
}
