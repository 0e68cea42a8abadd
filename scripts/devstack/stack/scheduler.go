package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/calsync/calsync/shared/tenant"
)

// RenewResult is one call of RenewChannels.
type RenewResult struct {
	Status   int
	Body     string
	Duration time.Duration
}

// RunRenew calls RenewChannels once, as Cloud Scheduler does (POST, no body).
func (s *Stack) RunRenew(ctx context.Context) (RenewResult, error) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.RenewChannelsURL, nil)
	if err != nil {
		return RenewResult{}, err
	}
	req.Header.Set("User-Agent", "Google-Cloud-Scheduler")
	resp, err := s.http.Do(req)
	if err != nil {
		return RenewResult{}, fmt.Errorf("RenewChannels: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	s.renewMu.Lock()
	s.renewRuns++
	s.renewMu.Unlock()
	return RenewResult{Status: resp.StatusCode, Body: strings.TrimSpace(string(body)), Duration: time.Since(start)}, nil
}

// RenewRuns is how many times RenewChannels was called.
func (s *Stack) RenewRuns() int {
	s.renewMu.Lock()
	defer s.renewMu.Unlock()
	return s.renewRuns
}

func (s *Stack) scheduler(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Cloud Scheduler's attempt deadline is the function's timeout.
		cctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		r, err := s.RunRenew(cctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.log.Warn("scheduler: RenewChannels call failed", "error", err)
		case r.Status/100 != 2:
			s.log.Warn("scheduler: RenewChannels failed", "status", r.Status, "body", r.Body)
		default:
			s.log.Info("scheduler: RenewChannels ran", "status", r.Status, "ms", r.Duration.Milliseconds())
		}
	}
}

// State is what --state-file holds: every endpoint of the stack and the
// environment that points a program (the CLI, a test) at it.
type State struct {
	PID                    int       `json:"pid"`
	StartedAt              time.Time `json:"startedAt"`
	ProjectID              string    `json:"projectId"`
	WebhookURL             string    `json:"webhookUrl"`
	SyncWorkerURL          string    `json:"syncWorkerUrl"`
	SyncWorkerPushEndpoint string    `json:"syncWorkerPushEndpoint"`
	RenewChannelsURL       string    `json:"renewChannelsUrl"`
	// The Connect function's front (CONNECT_URL), the tenants' link keys
	// (CONNECT_LINK_KEYS: `calsync connect-link` signs with them) and the
	// product page connect links return to.
	ConnectURL            string `json:"connectUrl"`
	ConnectLinkKeys       string `json:"connectLinkKeys"`
	ProductURL            string `json:"productUrl"`
	CalendarBaseURL       string `json:"calendarBaseUrl"`
	CalendarEndpoint      string `json:"calendarEndpoint"`
	CalendarControlURL    string `json:"calendarControlUrl"`
	FirestoreEmulatorHost string `json:"firestoreEmulatorHost"`
	PubSubEmulatorHost    string `json:"pubsubEmulatorHost"`
	NotificationsTopic    string `json:"notificationsTopic"`
	ChangesTopic          string `json:"changesTopic"`
	DeadLetterTopic       string `json:"deadLetterTopic"`
	// The control path: the lifecycle topic, and each tenant's control
	// topic and push subscription ("default" first: CONTROL_SUBSCRIPTION).
	LifecycleTopic         string          `json:"lifecycleTopic"`
	ControlTopic           string          `json:"controlTopic"`
	Tenants                []tenant.Tenant `json:"tenants"`
	PushSubscriptions      []string        `json:"pushSubscriptions"`
	DeadLetterSubscription string          `json:"deadLetterSubscription"`
	RunDir                 string          `json:"runDir"`
	// Instances are the function processes (pid, port, log file).
	Instances []InstanceInfo `json:"instances"`
	// The functions' secrets and OAuth settings, so the CLI
	// (scripts/calsync --state-file) can act as RenewChannels does.
	ChannelTokenKeys      string `json:"channelTokenKeys"`
	CredentialPrivateKeys string `json:"credentialPrivateKeys"`
	CredentialPublicKey   string `json:"credentialPublicKey"`
	OAuthClientID         string `json:"oauthClientId"`
	OAuthClientSecret     string `json:"oauthClientSecret"`
	OAuthAuthURL          string `json:"oauthAuthUrl"`
	OAuthTokenURL         string `json:"oauthTokenUrl"`
	ChannelTTL            string `json:"channelTtl"`
	RenewBefore           string `json:"renewBefore"`
	// Env is every variable the functions run with (besides FUNCTION_TARGET and PORT).
	Env map[string]string `json:"env"`
}

// State describes the running stack.
func (s *Stack) State() State {
	env := make(map[string]string, len(s.Env))
	for k, v := range s.Env {
		env[k] = v
	}
	controlTopic, _ := s.ControlTopicOf(tenant.Default)
	var instances []InstanceInfo
	for _, fn := range s.Functions() {
		instances = append(instances, fn.Infos()...)
	}
	return State{
		PID: os.Getpid(), StartedAt: time.Now().UTC(), ProjectID: s.ProjectID,
		WebhookURL: s.WebhookURL, SyncWorkerURL: s.SyncWorkerURL, SyncWorkerPushEndpoint: s.SyncWorkerPushEndpoint,
		RenewChannelsURL: s.RenewChannelsURL, CalendarBaseURL: s.CalendarBaseURL,
		ConnectURL: s.ConnectURL, ConnectLinkKeys: env["CONNECT_LINK_KEYS"], ProductURL: s.ProductURL,
		CalendarEndpoint: s.CalendarEndpoint, CalendarControlURL: s.CalendarBaseURL + "/emulator/v1/",
		FirestoreEmulatorHost: s.FirestoreHost, PubSubEmulatorHost: s.PubSubHost,
		NotificationsTopic: s.NotificationsTopic, ChangesTopic: s.ChangesTopic, DeadLetterTopic: s.DeadLetterTopic,
		LifecycleTopic: s.LifecycleTopic, ControlTopic: controlTopic, Tenants: s.Tenants,
		PushSubscriptions: s.PushSubscriptions, DeadLetterSubscription: s.DeadLetterSubscription,
		RunDir: s.RunDir, Instances: instances, Env: env,
		ChannelTokenKeys: env["CHANNEL_TOKEN_KEYS"], CredentialPrivateKeys: env["CREDENTIAL_PRIVATE_KEYS"],
		CredentialPublicKey: env["CREDENTIAL_PUBLIC_KEY"],
		OAuthClientID:       env["OAUTH_CLIENT_ID"], OAuthClientSecret: env["OAUTH_CLIENT_SECRET"],
		OAuthAuthURL: env["OAUTH_AUTH_URL"], OAuthTokenURL: env["OAUTH_TOKEN_URL"],
		ChannelTTL: env["CHANNEL_TTL"], RenewBefore: env["RENEW_BEFORE"],
	}
}

// WriteState writes State as JSON to path (atomically: temp file, rename).
func (s *Stack) WriteState(path string) error {
	b, err := json.MarshalIndent(s.State(), "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ReadState reads a state file written by WriteState.
func ReadState(path string) (State, error) {
	var st State
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	err = json.Unmarshal(b, &st)
	return st, err
}
