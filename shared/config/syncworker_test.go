package config

import (
	"context"
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
		cfg.QuietPeriod != 300*time.Millisecond || cfg.RetryBudget != 120*time.Second {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
}

func TestSyncWorkerReportsEveryProblem(t *testing.T) {
	_, err := Load[SyncWorker](context.Background(), envconfig.MapLookuper(map[string]string{
		"PROJECT_ID": "p", "CREDENTIAL_KEYS": testKey,
		"CHANGES_TOPIC":  "a b",
		"LEASE_DURATION": "2s",
		"RERUN_INTERVAL": "1s",
		"QUIET_PERIOD":   "2s",
		"RETRY_BUDGET":   "0s",
	}))
	if err == nil {
		t.Fatal("want error")
	}
	for _, want := range []string{"CHANGES_TOPIC", "LEASE_DURATION", "QUIET_PERIOD (2s) must be shorter than RERUN_INTERVAL", "RERUN_INTERVAL (1s) must be shorter than a third", "RETRY_BUDGET"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}
