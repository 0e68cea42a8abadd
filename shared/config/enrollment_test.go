package config

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
)

// The CLI's enrollment without channel keys renews as RenewChannels does
// (RENEW_BEFORE, default 26 h) and needs no credential key.
func TestEnrollmentConfig(t *testing.T) {
	cfg, err := Load[Enrollment](context.Background(), envconfig.MapLookuper(map[string]string{"PROJECT_ID": "p"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RenewBefore != 26*time.Hour || cfg.NotificationsTopic != "calsync-notifications" || cfg.CalendarBudget != "shared" {
		t.Fatalf("defaults: %+v", cfg)
	}
	cfg, err = Load[Enrollment](context.Background(), envconfig.MapLookuper(map[string]string{"PROJECT_ID": "p", "RENEW_BEFORE": "30h"}))
	if err != nil || cfg.RenewBefore != 30*time.Hour {
		t.Fatalf("RENEW_BEFORE=30h: %+v %v", cfg, err)
	}
	_, err = Load[Enrollment](context.Background(), envconfig.MapLookuper(map[string]string{
		"PROJECT_ID": "p", "RENEW_BEFORE": "-1h", "NOTIFICATIONS_TOPIC": "a/b", "CALENDAR_BUDGET": "x"}))
	for _, want := range []string{"RENEW_BEFORE", "NOTIFICATIONS_TOPIC", "CALENDAR_BUDGET"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}
