package config

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
)

func TestSyncWorkerDefaults(t *testing.T) {
	cfg, err := Load[SyncWorker](context.Background(), envconfig.MapLookuper(map[string]string{
		"PROJECT_ID": "p", "CREDENTIAL_KEYS": testKey,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ChangesTopic != "calsync-changes" || cfg.LeaseDuration != 60*time.Second || cfg.RerunInterval != 1500*time.Millisecond ||
		cfg.QuietPeriod != 300*time.Millisecond || cfg.RetryBudget != 120*time.Second || cfg.FullResyncCooldown != 10*time.Minute ||
		cfg.MaxCalendarsPerIdentity != 500 {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
}

func TestSyncWorkerReportsEveryProblem(t *testing.T) {
	_, err := Load[SyncWorker](context.Background(), envconfig.MapLookuper(map[string]string{
		"PROJECT_ID": "p", "CREDENTIAL_KEYS": testKey,
		"CHANGES_TOPIC":        "a b",
		"LEASE_DURATION":       "2s",
		"RERUN_INTERVAL":       "1s",
		"QUIET_PERIOD":         "2s",
		"RETRY_BUDGET":         "0s",
		"FULL_RESYNC_COOLDOWN": "-1m",
	}))
	if err == nil {
		t.Fatal("want error")
	}
	for _, want := range []string{"CHANGES_TOPIC", "LEASE_DURATION", "QUIET_PERIOD (2s) must be shorter than RERUN_INTERVAL", "RERUN_INTERVAL (1s) must be shorter than a third", "RETRY_BUDGET",
		"FULL_RESYNC_COOLDOWN"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}

// Stored credentials open with the sealing keys (CREDENTIAL_PRIVATE_KEYS)
// or, before a deployment is migrated, the legacy AES keys: one of them.
func TestCredentialKeys(t *testing.T) {
	priv := "h1:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("h", 32)))
	load := func(env map[string]string) error {
		env["PROJECT_ID"] = "p"
		_, err := Load[SyncWorker](context.Background(), envconfig.MapLookuper(env))
		return err
	}
	if err := load(map[string]string{}); err == nil || !strings.Contains(err.Error(), "CREDENTIAL_PRIVATE_KEYS must be set") {
		t.Errorf("no key: %v", err)
	}
	for _, ok := range []map[string]string{
		{"CREDENTIAL_PRIVATE_KEYS": priv},
		{"CREDENTIAL_KEYS": testKey},
		{"CREDENTIAL_PRIVATE_KEYS": priv, "CREDENTIAL_KEYS": testKey, "CREDENTIAL_PUBLIC_KEY": "pubkey:v1:h1:x"},
	} {
		if err := load(ok); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
	long := "h1:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("h", 40)))
	err := load(map[string]string{"CREDENTIAL_PRIVATE_KEYS": long, "CREDENTIAL_PUBLIC_KEY": "h1:abc"})
	if err == nil || !strings.Contains(err.Error(), "CREDENTIAL_PRIVATE_KEYS: key h1 must be exactly 32 bytes") ||
		!strings.Contains(err.Error(), "CREDENTIAL_PUBLIC_KEY must be a pubkey:v1") || strings.Contains(err.Error(), strings.Repeat("h", 8)) {
		t.Errorf("bad keys: %v", err)
	}
}

// The SyncWorker's enrollment settings are optional: without both
// CHANNEL_TOKEN_KEYS and WEBHOOK_URL it enrolls and leaves channels to
// RenewChannels; what is set is checked.
func TestSyncWorkerEnrollmentSettings(t *testing.T) {
	base := map[string]string{"PROJECT_ID": "p", "CREDENTIAL_KEYS": "k1:" + strings.Repeat("A", 43) + "="}
	load := func(extra map[string]string) error {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		_, err := Load[SyncWorker](context.Background(), envconfig.MapLookuper(env))
		return err
	}
	if err := load(nil); err != nil {
		t.Fatalf("without enrollment settings: %v", err)
	}
	var cfg SyncWorker
	if err := envconfig.ProcessWith(context.Background(), &envconfig.Config{Target: &cfg, Lookuper: envconfig.MapLookuper(base)}); err != nil ||
		len(cfg.NotificationSubscriptions) != 1 || cfg.NotificationSubscriptions[0] != "calsync-sync-worker-push" {
		t.Fatalf("NOTIFICATION_SUBSCRIPTIONS default (Terraform's name): %v %v", cfg.NotificationSubscriptions, err)
	}
	if err := load(map[string]string{"NOTIFICATION_SUBSCRIPTIONS": "p-sync-worker-push-0, p-sync-worker-push-1"}); err != nil {
		t.Fatalf("two notification subscriptions: %v", err)
	}
	if err := load(map[string]string{"CHANNEL_TOKEN_KEYS": "k1:" + strings.Repeat("A", 43) + "="}); err != nil {
		t.Fatalf("keys without a webhook URL: %v", err)
	}
	for _, bad := range []map[string]string{
		{"CHANNEL_TOKEN_KEYS": "not keys"},
		{"WEBHOOK_URL": "ftp://x"},
		{"CONTROL_SUBSCRIPTION": "a b"},
		{"CONTROL_SUBSCRIPTION": "projects/p/subscriptions/x"}, // an id, not a full name
		{"NOTIFICATION_SUBSCRIPTIONS": "projects/p/subscriptions/x"},
		{"NOTIFICATION_SUBSCRIPTIONS": "ctl", "CONTROL_SUBSCRIPTION": "ctl"},
		{"CHANNEL_TTL": "0s"},
	} {
		if err := load(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
