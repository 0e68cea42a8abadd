package config

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
)

var credKey = "c1:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("c", 32)))

func renewEnv(extra map[string]string) envconfig.Lookuper {
	m := map[string]string{
		"PROJECT_ID":         "p",
		"CHANNEL_TOKEN_KEYS": testKey,
		"CREDENTIAL_KEYS":    credKey,
		"WEBHOOK_URL":        "https://example.com/webhook",
	}
	for k, v := range extra {
		m[k] = v
	}
	return envconfig.MapLookuper(m)
}

func TestRenewChannelsDefaults(t *testing.T) {
	cfg, err := Load[RenewChannels](context.Background(), renewEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ChannelTTL != 168*time.Hour || cfg.RenewBefore != 26*time.Hour || cfg.ReconcileAfter != 6*time.Hour ||
		cfg.Concurrency != 8 || cfg.CalendarRateLimit != 500 || cfg.NotificationsTopic != "calsync-notifications" ||
		cfg.FirestoreDatabase != "(default)" || cfg.DelegationServiceAccount != "" || cfg.CalendarEndpoint != "" ||
		cfg.DirectoryMaxUnenrollShare != 0.1 || cfg.PollMinInterval != time.Hour ||
		cfg.MaxCalendarsPerIdentity != 500 {
		t.Fatalf("defaults: %+v", cfg)
	}
	cfg, err = Load[RenewChannels](context.Background(), renewEnv(map[string]string{
		"DELEGATION_SERVICE_ACCOUNT": "renew@p.iam.gserviceaccount.com",
		"CALENDAR_ENDPOINT":          "http://127.0.0.1:8085",
		"OAUTH_CLIENT_ID":            "id", "OAUTH_CLIENT_SECRET": "secret",
	}))
	if err != nil || cfg.DelegationServiceAccount != "renew@p.iam.gserviceaccount.com" || cfg.DirectoryDelegationServiceAccount != "" {
		t.Fatalf("%+v %v", cfg, err)
	}
	cfg, err = Load[RenewChannels](context.Background(), renewEnv(map[string]string{
		"DELEGATION_SERVICE_ACCOUNT":           "calsync-calendar@p.iam.gserviceaccount.com",
		"DIRECTORY_DELEGATION_SERVICE_ACCOUNT": "calsync-directory@p.iam.gserviceaccount.com",
	}))
	if err != nil || cfg.DirectoryDelegationServiceAccount != "calsync-directory@p.iam.gserviceaccount.com" {
		t.Fatalf("%+v %v", cfg, err)
	}
}

// The Directory's delegation account is checked like the Calendar's, and
// is another account (the point of having two).
func TestDirectoryDelegationAccount(t *testing.T) {
	for env, want := range map[[2]string]string{
		{"", "not an email"}: `DIRECTORY_DELEGATION_SERVICE_ACCOUNT "not an email" is not a service account email`,
		{"a@p.iam.gserviceaccount.com", "A@p.iam.gserviceaccount.com"}: "DIRECTORY_DELEGATION_SERVICE_ACCOUNT must be another account than DELEGATION_SERVICE_ACCOUNT",
		{"a@p.iam.gserviceaccount.com", "a/b@p"}:                       "is not a service account email",
	} {
		_, err := Load[RenewChannels](context.Background(), renewEnv(map[string]string{
			"DELEGATION_SERVICE_ACCOUNT": env[0], "DIRECTORY_DELEGATION_SERVICE_ACCOUNT": env[1]}))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: want %q, got %v", env, want, err)
		}
	}
}

func TestRenewChannelsReportsEveryProblem(t *testing.T) {
	_, err := Load[RenewChannels](context.Background(), renewEnv(map[string]string{
		"WEBHOOK_URL":                  "ftp://x",
		"CHANNEL_TTL":                  "1h",
		"RENEW_BEFORE":                 "2h",
		"RECONCILE_AFTER":              "-1s",
		"RENEW_CONCURRENCY":            "0",
		"CALENDAR_USER_RATE_LIMIT":     "20000",
		"CREDENTIAL_KEYS":              "c1:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 40))),
		"DELEGATION_SERVICE_ACCOUNT":   "not an email",
		"OAUTH_CLIENT_ID":              "only-id",
		"CALENDAR_ENDPOINT":            "localhost:1",
		"NOTIFICATIONS_TOPIC":          "a/b",
		"DIRECTORY_MAX_UNENROLL_SHARE": "1.5",
		"POLL_MIN_INTERVAL":            "0s",
		"MAX_CALENDARS_PER_IDENTITY":   "0",
	}))
	if err == nil {
		t.Fatal("want error")
	}
	for _, want := range []string{"WEBHOOK_URL", "RENEW_BEFORE", "RECONCILE_AFTER", "RENEW_CONCURRENCY", "CALENDAR_USER_RATE_LIMIT",
		"CREDENTIAL_KEYS", "DELEGATION_SERVICE_ACCOUNT", "OAUTH_CLIENT_SECRET", "CALENDAR_ENDPOINT", "NOTIFICATIONS_TOPIC",
		"DIRECTORY_MAX_UNENROLL_SHARE", "POLL_MIN_INTERVAL", "MAX_CALENDARS_PER_IDENTITY"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), strings.Repeat("k", 8)) {
		t.Errorf("key material leaked: %v", err)
	}
}

// Endpoints that are sent secrets take http only on loopback addresses.
func TestHTTPOnlyOnLoopback(t *testing.T) {
	for v, ok := range map[string]bool{
		"https://calendar.example.com":  true,
		"http://127.0.0.1:8085":         true,
		"http://127.8.9.10/calendar/v3": true,
		"http://[::1]:9000":             true,
		"http://localhost:1234":         true,
		"http://LOCALHOST:1234":         true,
		"http://[::ffff:127.0.0.1]:1":   true,
		"http://10.0.0.5:8085":          false,
		"http://calendar.example.com":   false,
		"http://localhost.evil.com":     false,
		"http://127.0.0.1.nip.io":       false,
		"http://0.0.0.0:80":             false,
	} {
		for _, name := range []string{"CALENDAR_ENDPOINT", "OAUTH_TOKEN_URL", "OAUTH_AUTH_URL"} {
			_, err := Load[RenewChannels](context.Background(), renewEnv(map[string]string{name: v}))
			if (err == nil) != ok {
				t.Errorf("%s=%s: err %v, want ok=%v", name, v, err, ok)
			}
			if err != nil && !strings.Contains(err.Error(), name) {
				t.Errorf("%s=%s: error does not name the variable: %v", name, v, err)
			}
		}
	}
}

// Google pushes only to https addresses (400 push.webhookUrlNotHttps,
// channel by channel): WEBHOOK_URL is refused at start unless https, or
// http on a loopback address (local stacks).
func TestWebhookURLMustBeHTTPS(t *testing.T) {
	for v, ok := range map[string]bool{
		"https://hooks.example.com/Webhook": true,
		"http://127.0.0.1:8080/Webhook":     true,
		"http://[::1]:8080/Webhook":         true,
		"http://localhost:8080/Webhook":     true,
		"http://hooks.example.com/Webhook":  false,
		"http://10.0.0.8:8080/Webhook":      false,
		"ftp://hooks.example.com/Webhook":   false,
		"hooks.example.com/Webhook":         false,
	} {
		_, err := Load[RenewChannels](context.Background(), renewEnv(map[string]string{"WEBHOOK_URL": v}))
		if (err == nil) != ok {
			t.Errorf("WEBHOOK_URL %s: accepted %v, want %v (%v)", v, err == nil, ok, err)
		}
		if err != nil && !strings.Contains(err.Error(), "WEBHOOK_URL") {
			t.Errorf("%s: error does not name WEBHOOK_URL: %v", v, err)
		}
	}
}

func TestGoogleBehaviourSettings(t *testing.T) {
	cfg, err := Load[RenewChannels](context.Background(), renewEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NotFoundAttempts != 3 || cfg.NotFoundAfter != time.Hour || cfg.NotFoundReprobe != 24*time.Hour ||
		cfg.PollInterval != 5*time.Minute || cfg.Deployment != "calsync" || cfg.CalendarBudget != "shared" || cfg.CalendarProjectRateLimit != 9000 {
		t.Fatalf("defaults: %+v", cfg)
	}
	_, err = Load[RenewChannels](context.Background(), renewEnv(map[string]string{
		"NOT_FOUND_ATTEMPTS": "0", "POLL_INTERVAL": "0s", "DEPLOYMENT": "a b", "CALENDAR_BUDGET": "maybe",
		"CALENDAR_PROJECT_RATE_LIMIT": "0", "IAM_CREDENTIALS_ENDPOINT": "http://iam.example.com",
	}))
	for _, want := range []string{"NOT_FOUND_ATTEMPTS", "POLL_INTERVAL", "DEPLOYMENT", "CALENDAR_BUDGET", "CALENDAR_PROJECT_RATE_LIMIT", "IAM_CREDENTIALS_ENDPOINT"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
	sw, err := Load[SyncWorker](context.Background(), envconfig.MapLookuper(map[string]string{"PROJECT_ID": "p", "CREDENTIAL_KEYS": credKey}))
	if err != nil || sw.FollowUpDelay != 15*time.Second || sw.NotFoundAttempts != 3 {
		t.Fatalf("syncworker: %+v %v", sw, err)
	}
	if _, err := Load[SyncWorker](context.Background(), envconfig.MapLookuper(map[string]string{"PROJECT_ID": "p", "CREDENTIAL_KEYS": credKey, "FOLLOW_UP_DELAY": "10m"})); err == nil {
		t.Error("FOLLOW_UP_DELAY 10m accepted")
	}
}

// Google raises the per-user quota on request: calsync follows above 600,
// up to the project's own limit; the daily limit defaults under Google's
// 1,000,000 threshold and 0 switches it off.
func TestCalendarQuotaSettings(t *testing.T) {
	ctx := context.Background()
	cfg, err := Load[RenewChannels](ctx, renewEnv(map[string]string{"CALENDAR_USER_RATE_LIMIT": "1200", "CALENDAR_PROJECT_RATE_LIMIT": "20000"}))
	if err != nil || cfg.CalendarRateLimit != 1200 || cfg.CalendarDailyLimit != 950000 {
		t.Fatalf("a raised per-user quota: %+v %v", cfg.Calendar, err)
	}
	if cfg, err := Load[RenewChannels](ctx, renewEnv(map[string]string{"CALENDAR_DAILY_LIMIT": "0"})); err != nil || cfg.CalendarDailyLimit != 0 {
		t.Fatalf("no daily limit: %v", err)
	}
	_, err = Load[RenewChannels](ctx, renewEnv(map[string]string{"CALENDAR_USER_RATE_LIMIT": "1200", "CALENDAR_PROJECT_RATE_LIMIT": "1000", "CALENDAR_DAILY_LIMIT": "-1"}))
	for _, want := range []string{"CALENDAR_USER_RATE_LIMIT", "CALENDAR_DAILY_LIMIT"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}
