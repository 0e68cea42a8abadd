package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/calsync/calsync/shared/tenant"
)

// Firestore names the Firestore database.
type Firestore struct {
	FirestoreDatabase string `env:"FIRESTORE_DATABASE, default=(default)"`
}

// Calendar says how to reach the Calendar API and read user credentials.
type Calendar struct {
	// CalendarEndpoint overrides Google's endpoint (the local emulator).
	CalendarEndpoint string `env:"CALENDAR_ENDPOINT"`
	// Tenants (TENANTS, a JSON array of shared/tenant.Tenant): the products
	// sharing the deployment, the subjects each may have read by
	// delegation (the client factory refuses to sign others) and their
	// control subscriptions. Empty: the default tenant alone.
	Tenants string `env:"TENANTS"`
	// LifecycleTopic is where lifecycle messages are published.
	LifecycleTopic string `env:"LIFECYCLE_TOPIC, default=calsync-lifecycle"`
	// CredentialPrivateKeys open stored refresh tokens, sealed to the
	// deployment's public key (shared/sealed): KEYID:BASE64 list of 32-byte
	// X25519 keys, the first the current one (reseals go to it).
	CredentialPrivateKeys string `env:"CREDENTIAL_PRIVATE_KEYS"`
	// CredentialKeys open legacy refresh tokens, stored with AES-256-GCM
	// before sealing existed, until they are migrated: KEYID:BASE64 list.
	CredentialKeys string `env:"CREDENTIAL_KEYS"`
	// CredentialPublicKey (pubkey:v1:...) is what enrollers seal to. The CLI
	// seals with it; RenewChannels, given it, checks it is one of its
	// private keys' public halves.
	CredentialPublicKey string `env:"CREDENTIAL_PUBLIC_KEY"`
	OAuthClientID       string `env:"OAUTH_CLIENT_ID"`
	OAuthClientSecret   string `env:"OAUTH_CLIENT_SECRET"`
	OAuthTokenURL       string `env:"OAUTH_TOKEN_URL, default=https://oauth2.googleapis.com/token"`
	OAuthAuthURL        string `env:"OAUTH_AUTH_URL, default=https://accounts.google.com/o/oauth2/auth"`
	// OAuthRevokeURL is where a disconnected user's grant is revoked.
	OAuthRevokeURL string `env:"OAUTH_REVOKE_URL, default=https://oauth2.googleapis.com/revoke"`
	// CalendarRateLimit is each user's calls a minute (Google's per-user
	// quota: 600 unless Google raised it for the project; then this may go
	// as high, up to the project's limit).
	CalendarRateLimit int `env:"CALENDAR_USER_RATE_LIMIT, default=500"`
	// CalendarProjectRateLimit is the deployment's calls a minute, all users
	// together (Google's per-project quota: 10,000 unless raised).
	CalendarProjectRateLimit int `env:"CALENDAR_PROJECT_RATE_LIMIT, default=9000"`
	// CalendarDailyLimit is the deployment's calls in any 24 hours, all users
	// together: Google's daily threshold is 1,000,000 a project, past which
	// charges apply. 0: no daily limit (pay for what goes past it).
	CalendarDailyLimit int `env:"CALENDAR_DAILY_LIMIT, default=950000"`
	// CalendarBudget: "shared" (both limits held across every process of the
	// deployment, through Firestore) or "local" (a per-process limiter of
	// the user limit only: one process, or tests).
	CalendarBudget string `env:"CALENDAR_BUDGET, default=shared"`
	// CalendarProcesses is the most processes that call Calendar at once
	// (SyncWorker instances, RenewChannels, a spare): each may then make a
	// share of a fifth of each limit without a Firestore lease. 0: none.
	CalendarProcesses int `env:"CALENDAR_PROCESSES, default=0"`
	// DelegationServiceAccount is impersonated (IAM signJwt) with a calendar's
	// subject for domain-wide delegation with the Calendar's scopes; empty:
	// ADC must be a service-account key.
	DelegationServiceAccount string `env:"DELEGATION_SERVICE_ACCOUNT"`
	// DirectoryDelegationServiceAccount is impersonated for the Directory
	// API's scopes (a domain's admin, for its users and rooms), a separate
	// account whose client id a Workspace admin authorises for those scopes
	// only: whoever may sign as the Calendar account cannot read the
	// directory, and the other way round. Empty: DELEGATION_SERVICE_ACCOUNT
	// signs for both (one account authorised for both, as before).
	DirectoryDelegationServiceAccount string `env:"DIRECTORY_DELEGATION_SERVICE_ACCOUNT"`
	// DelegationGrace is how long after a delegated identity or calendar was
	// enrolled an unauthorized_client is taken for a delegation Google does
	// not have yet (Google: up to 24 h): the sync is deferred, not given
	// the delegation_unauthorized status. 0: none.
	DelegationGrace time.Duration `env:"DELEGATION_GRACE, default=24h"`
	// IAMEndpoint overrides where signJwt goes (IAM Credentials; Google's
	// when empty, or CALENDAR_ENDPOINT's when that is set: the emulator).
	IAMEndpoint string `env:"IAM_CREDENTIALS_ENDPOINT"`
	// MaxCalendarsPerIdentity caps the calendars one identity's list may
	// enroll (a cost guard: an OAuth end user controls that list); past it
	// the rest of the list is left out, logged as calendar_cap_reached.
	MaxCalendarsPerIdentity int `env:"MAX_CALENDARS_PER_IDENTITY, default=500"`
}

// Validate reports every problem of a function's Calendar settings: those
// of ValidateEnrollment, and the keys that open stored credentials.
func (c Calendar) Validate() error {
	errs := []error{c.ValidateEnrollment()}
	if c.DelegationGrace < 0 || c.DelegationGrace > 7*24*time.Hour {
		errs = append(errs, fmt.Errorf("DELEGATION_GRACE must be 0-168h, got %s", c.DelegationGrace))
	}
	if c.CredentialPrivateKeys == "" && c.CredentialKeys == "" {
		errs = append(errs, errors.New("CREDENTIAL_PRIVATE_KEYS must be set (or, in a deployment whose credentials are not migrated yet, CREDENTIAL_KEYS)"))
	}
	errs = append(errs, exactKeys("CREDENTIAL_PRIVATE_KEYS", c.CredentialPrivateKeys, "X25519"),
		exactKeys("CREDENTIAL_KEYS", c.CredentialKeys, "AES-256"))
	return errors.Join(errs...)
}

// TenantSet is TENANTS, with the default tenant on controlSubscription.
func (c Calendar) TenantSet(controlSubscription string) (tenant.Set, error) {
	return tenant.Parse(c.Tenants, controlSubscription)
}

// exactKeys checks an optional KEYID:BASE64 list of 32-byte keys.
func exactKeys(name, list, what string) error {
	if list == "" {
		return nil
	}
	keys, err := ParseKeys(list)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	var errs []error
	for _, k := range keys {
		if len(k.Material) != 32 {
			errs = append(errs, fmt.Errorf("%s: key %s must be exactly 32 bytes (%s)", name, k.ID, what))
		}
	}
	return errors.Join(errs...)
}

// ValidateEnrollment reports the problems of what enrolling a user takes
// (the CLI's connect): endpoints, the OAuth client, the public key's form.
func (c Calendar) ValidateEnrollment() error {
	_, terr := c.TenantSet("")
	errs := []error{terr, validTopic("LIFECYCLE_TOPIC", c.LifecycleTopic)}
	if c.CalendarEndpoint != "" {
		errs = append(errs, secureURL("CALENDAR_ENDPOINT", c.CalendarEndpoint))
	}
	if c.IAMEndpoint != "" {
		errs = append(errs, secureURL("IAM_CREDENTIALS_ENDPOINT", c.IAMEndpoint))
	}
	if c.CredentialPublicKey != "" && !strings.HasPrefix(strings.TrimSpace(c.CredentialPublicKey), "pubkey:v1:") {
		errs = append(errs, errors.New("CREDENTIAL_PUBLIC_KEY must be a pubkey:v1:KEYID:BASE64URL public key"))
	}
	errs = append(errs, secureURL("OAUTH_TOKEN_URL", c.OAuthTokenURL), secureURL("OAUTH_AUTH_URL", c.OAuthAuthURL))
	if (c.OAuthClientID == "") != (c.OAuthClientSecret == "") {
		errs = append(errs, errors.New("OAUTH_CLIENT_ID and OAUTH_CLIENT_SECRET must be set together"))
	}
	errs = append(errs, serviceAccount("DELEGATION_SERVICE_ACCOUNT", c.DelegationServiceAccount),
		serviceAccount("DIRECTORY_DELEGATION_SERVICE_ACCOUNT", c.DirectoryDelegationServiceAccount))
	if sa := c.DirectoryDelegationServiceAccount; sa != "" && strings.EqualFold(sa, c.DelegationServiceAccount) {
		errs = append(errs, errors.New("DIRECTORY_DELEGATION_SERVICE_ACCOUNT must be another account than DELEGATION_SERVICE_ACCOUNT (leave it unset for one account signing both)"))
	}
	if c.MaxCalendarsPerIdentity < 1 || c.MaxCalendarsPerIdentity > 10000 {
		errs = append(errs, fmt.Errorf("MAX_CALENDARS_PER_IDENTITY must be 1-10000, got %d", c.MaxCalendarsPerIdentity))
	}
	if c.CalendarProjectRateLimit <= 0 {
		errs = append(errs, fmt.Errorf("CALENDAR_PROJECT_RATE_LIMIT must be a positive number of requests a minute, got %d", c.CalendarProjectRateLimit))
	}
	// Above Google's default 600 is allowed (Google raises the per-user
	// quota on request); above the project's limit it would mean nothing.
	if c.CalendarRateLimit <= 0 || c.CalendarProjectRateLimit > 0 && c.CalendarRateLimit > c.CalendarProjectRateLimit {
		errs = append(errs, fmt.Errorf("CALENDAR_USER_RATE_LIMIT must be 1 to CALENDAR_PROJECT_RATE_LIMIT (%d) requests a minute, got %d", c.CalendarProjectRateLimit, c.CalendarRateLimit))
	}
	if c.CalendarDailyLimit < 0 {
		errs = append(errs, fmt.Errorf("CALENDAR_DAILY_LIMIT must be 0 (none) or a positive number of requests a day, got %d", c.CalendarDailyLimit))
	}
	if c.CalendarProcesses < 0 || c.CalendarProcesses > 10000 {
		errs = append(errs, fmt.Errorf("CALENDAR_PROCESSES must be 0-10000, got %d", c.CalendarProcesses))
	}
	if c.CalendarBudget != "shared" && c.CalendarBudget != "local" {
		errs = append(errs, fmt.Errorf("CALENDAR_BUDGET must be shared or local, got %q", c.CalendarBudget))
	}
	return errors.Join(errs...)
}

// serviceAccount checks an optional service account email (NAME@PROJECT.iam.gserviceaccount.com).
func serviceAccount(name, sa string) error {
	if sa != "" && (!strings.Contains(sa, "@") || strings.ContainsAny(sa, " /")) {
		return fmt.Errorf("%s %q is not a service account email", name, sa)
	}
	return nil
}

// NotFound says when Google's 404s mean a calendar is gone (SyncWorker
// and RenewChannels): a streak of NOT_FOUND_ATTEMPTS 404s spanning at least
// NOT_FOUND_AFTER. One 404 is not enough: Google answers some for a while
// after a calendar is shared.
type NotFound struct {
	NotFoundAttempts int           `env:"NOT_FOUND_ATTEMPTS, default=3"`
	NotFoundAfter    time.Duration `env:"NOT_FOUND_AFTER, default=1h"`
}

func (n NotFound) validate() error {
	var errs []error
	if n.NotFoundAttempts < 1 || n.NotFoundAttempts > 100 {
		errs = append(errs, fmt.Errorf("NOT_FOUND_ATTEMPTS must be 1-100, got %d", n.NotFoundAttempts))
	}
	if n.NotFoundAfter < 0 {
		errs = append(errs, fmt.Errorf("NOT_FOUND_AFTER must not be negative, got %s", n.NotFoundAfter))
	}
	return errors.Join(errs...)
}

// SyncWorker configures the SyncWorker function.
type SyncWorker struct {
	Common
	Firestore
	Calendar
	NotFound
	ChangesTopic string `env:"CHANGES_TOPIC, default=calsync-changes"`
	// LeaseDuration is how long a sync holds a calendar before another worker may
	// take over; the running sync extends it.
	LeaseDuration time.Duration `env:"LEASE_DURATION, default=60s"`
	// RerunInterval paces reruns during a burst, measured from the previous
	// sync's start (see shared/syncer/README.md: tuned on the burst benchmark).
	RerunInterval time.Duration `env:"RERUN_INTERVAL, default=1500ms"`
	// QuietPeriod: once no notification arrived for this long, the burst is
	// over and the final sync goes without waiting for RerunInterval.
	QuietPeriod time.Duration `env:"QUIET_PERIOD, default=300ms"`
	// RetryBudget bounds in-process retries before Pub/Sub redelivers.
	RetryBudget time.Duration `env:"RETRY_BUDGET, default=120s"`
	// MaxSession bounds one invocation's work on a calendar, under the
	// function's timeout: a longer sync stops at a checkpoint and asks for
	// its continuation on NOTIFICATIONS_TOPIC.
	MaxSession         time.Duration `env:"MAX_SESSION, default=5m"`
	NotificationsTopic string        `env:"NOTIFICATIONS_TOPIC, default=calsync-notifications"`
	// FollowUpDelay: a push whose incremental sync listed nothing gets one
	// more sync this much later (Google does not promise a change is listed
	// when its push arrives); 0 turns it off. At most 2 minutes: the
	// SyncWorker waits that long for the request, in its invocation.
	FollowUpDelay time.Duration `env:"FOLLOW_UP_DELAY, default=15s"`
	// FullResyncCooldown: a full resync asked for within this long of a
	// calendar's last full sync is coalesced (a request) or deferred (a
	// 410) until it ends; a cost guard against a 410 loop. 0 turns it off.
	FullResyncCooldown time.Duration `env:"FULL_RESYNC_COOLDOWN, default=10m"`
	// Enrollment (shared/enroll): the SyncWorker applies calendarList pushes
	// and control messages. With CHANNEL_TOKEN_KEYS and WEBHOOK_URL both set
	// it watches the calendars it enrolls itself, within seconds; otherwise
	// RenewChannels gives them channels in its next run.
	ChannelTokenKeys string        `env:"CHANNEL_TOKEN_KEYS"`
	WebhookURL       string        `env:"WEBHOOK_URL"`
	ChannelTTL       time.Duration `env:"CHANNEL_TTL, default=168h"`
	RenewBefore      time.Duration `env:"RENEW_BEFORE, default=26h"`
	// ControlSubscription is the id of the control topic's push
	// subscription: pushes of that subscription are control messages
	// (messages.Control), all others notifications. Empty: no control path.
	ControlSubscription string `env:"CONTROL_SUBSCRIPTION"`
	// ControlMaxAge: a control message issued longer ago than this (its
	// issuedAt), or more than a minute ahead, is refused (a replay); its
	// requestId is remembered this long twice over (controlRequests).
	ControlMaxAge time.Duration `env:"CONTROL_MAX_AGE, default=10m"`
	// NotificationSubscriptions are the ids of the notifications topic's
	// push subscriptions: pushes of these (by full name, in PROJECT_ID) are
	// notifications; a push of any other subscription is refused. The
	// default is Terraform's name with the default prefix.
	NotificationSubscriptions []string `env:"NOTIFICATION_SUBSCRIPTIONS, default=calsync-sync-worker-push"`
	// Deployment names this deployment in the ids of the channels the
	// SyncWorker opens for what it enrolls (as RenewChannels' DEPLOYMENT).
	Deployment string `env:"DEPLOYMENT, default=calsync"`
}

// subscriptionIDRE is Pub/Sub's subscription id syntax (not a full name: the
// project is PROJECT_ID's).
var subscriptionIDRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$`)

// Validate reports every problem with the SyncWorker config.
func (c SyncWorker) Validate() error {
	errs := []error{
		c.Common.validate(), c.Calendar.Validate(),
		validTopic("CHANGES_TOPIC", c.ChangesTopic),
		positive("LEASE_DURATION", c.LeaseDuration),
		positive("RERUN_INTERVAL", c.RerunInterval),
		positive("QUIET_PERIOD", c.QuietPeriod),
		positive("RETRY_BUDGET", c.RetryBudget),
		positive("MAX_SESSION", c.MaxSession),
		validTopic("NOTIFICATIONS_TOPIC", c.NotificationsTopic),
		c.NotFound.validate(),
		positive("CHANNEL_TTL", c.ChannelTTL),
		positive("RENEW_BEFORE", c.RenewBefore),
		validDeployment(c.Deployment),
		positive("CONTROL_MAX_AGE", c.ControlMaxAge),
	}
	if _, err := c.TenantSet(c.ControlSubscription); err != nil {
		errs = append(errs, err)
	}
	if c.FullResyncCooldown < 0 || c.FullResyncCooldown > 24*time.Hour {
		errs = append(errs, fmt.Errorf("FULL_RESYNC_COOLDOWN must be 0 (off) to 24h, got %s", c.FullResyncCooldown))
	}
	if c.FollowUpDelay < 0 || c.FollowUpDelay > 2*time.Minute {
		errs = append(errs, fmt.Errorf("FOLLOW_UP_DELAY must be 0 (off) to 2m, got %s", c.FollowUpDelay))
	}
	if c.ChannelTokenKeys != "" {
		errs = append(errs, validKeys("CHANNEL_TOKEN_KEYS", c.ChannelTokenKeys))
	}
	if c.WebhookURL != "" {
		errs = append(errs, WebhookAddress(c.WebhookURL))
	}
	if c.ControlSubscription != "" && !subscriptionIDRE.MatchString(c.ControlSubscription) {
		errs = append(errs, fmt.Errorf("CONTROL_SUBSCRIPTION %q is not a subscription id", c.ControlSubscription))
	}
	if len(c.NotificationSubscriptions) == 0 {
		errs = append(errs, errors.New("NOTIFICATION_SUBSCRIPTIONS must name the notifications topic's push subscription(s)"))
	}
	for _, s := range c.NotificationSubscriptions {
		if !subscriptionIDRE.MatchString(s) || s == c.ControlSubscription {
			errs = append(errs, fmt.Errorf("NOTIFICATION_SUBSCRIPTIONS: %q is not a subscription id other than CONTROL_SUBSCRIPTION", s))
		}
	}
	if c.QuietPeriod > 0 && c.RerunInterval > 0 && c.QuietPeriod >= c.RerunInterval {
		errs = append(errs, fmt.Errorf("QUIET_PERIOD (%s) must be shorter than RERUN_INTERVAL (%s)", c.QuietPeriod, c.RerunInterval))
	}
	if c.LeaseDuration > 0 && c.RerunInterval >= c.LeaseDuration/3 {
		errs = append(errs, fmt.Errorf("RERUN_INTERVAL (%s) must be shorter than a third of LEASE_DURATION (%s)", c.RerunInterval, c.LeaseDuration))
	}
	if c.LeaseDuration > 0 && c.LeaseDuration < 5*time.Second {
		errs = append(errs, fmt.Errorf("LEASE_DURATION %s is too short (at least 5s)", c.LeaseDuration))
	}
	return errors.Join(errs...)
}

// RenewChannels configures the RenewChannels function.
type RenewChannels struct {
	Common
	Firestore
	Calendar
	NotFound
	NotificationsTopic string `env:"NOTIFICATIONS_TOPIC, default=calsync-notifications"`
	ChannelTokenKeys   string `env:"CHANNEL_TOKEN_KEYS, required"`
	WebhookURL         string `env:"WEBHOOK_URL, required"`
	// ChannelTTL is asked of Google; Google may grant less.
	ChannelTTL time.Duration `env:"CHANNEL_TTL, default=168h"`
	// RenewBefore renews channels expiring within this window.
	RenewBefore time.Duration `env:"RENEW_BEFORE, default=26h"`
	// ReconcileAfter asks for a sync of calendars quiet for this long.
	ReconcileAfter time.Duration `env:"RECONCILE_AFTER, default=6h"`
	// RetainUnwatched: an unwatched calendar's mirror is purged this long
	// after its last sync (0: kept for ever).
	RetainUnwatched time.Duration `env:"RETAIN_UNWATCHED_MIRRORS, default=720h"`
	Concurrency     int           `env:"RENEW_CONCURRENCY, default=8"`
	// Deployment names this deployment in its channel ids, with the
	// project: Google wants channel ids unique per Google Cloud project,
	// and two deployments may share one (Terraform's name prefix).
	Deployment string `env:"DEPLOYMENT, default=calsync"`
	// PollInterval: calendars Google will not push for (holiday calendars,
	// birthday calendars) are synced when their last sync is older than
	// this, by the poll runs (RenewChannels with ?mode=poll, a Scheduler job
	// on the same interval).
	PollInterval time.Duration `env:"POLL_INTERVAL, default=5m"`
	// PollMinInterval: one poll-only calendar is synced at most once per
	// this long, whatever POLL_INTERVAL (the poll runs' cadence) says: a
	// cost guard, polling has no news to wait for.
	PollMinInterval time.Duration `env:"POLL_MIN_INTERVAL, default=1h"`
	// NotFoundReprobe: a not_found calendar is tried again this long after
	// its last try, and active again if it is back.
	NotFoundReprobe time.Duration `env:"NOT_FOUND_REPROBE, default=24h"`
	// DirectorySyncInterval: each enrolled Workspace domain's directory is
	// diffed again (users added, suspended or deleted; rooms) when its last
	// diff is older than this.
	DirectorySyncInterval time.Duration `env:"DIRECTORY_SYNC_INTERVAL, default=24h"`
	// DirectoryMaxUnenrollShare: a directory diff that would unenroll more
	// than this share of a domain's enrolled identities (at least one is
	// always allowed) unenrolls none: a listing that succeeds but covers one
	// organisational unit must not unenroll everyone else. An operator
	// applies a real shrink with `calsync enroll --domain ... --allow-shrink`.
	DirectoryMaxUnenrollShare float64 `env:"DIRECTORY_MAX_UNENROLL_SHARE, default=0.1"`
}

// Validate reports every problem with the RenewChannels config.
func (c RenewChannels) Validate() error {
	errs := []error{
		nonNegative("RETAIN_UNWATCHED_MIRRORS", c.RetainUnwatched),
		c.Common.validate(), c.Calendar.Validate(),
		validTopic("NOTIFICATIONS_TOPIC", c.NotificationsTopic),
		validKeys("CHANNEL_TOKEN_KEYS", c.ChannelTokenKeys),
		WebhookAddress(c.WebhookURL),
		positive("CHANNEL_TTL", c.ChannelTTL),
		positive("RENEW_BEFORE", c.RenewBefore),
		positive("RECONCILE_AFTER", c.ReconcileAfter),
		positive("POLL_INTERVAL", c.PollInterval),
		positive("POLL_MIN_INTERVAL", c.PollMinInterval),
		positive("NOT_FOUND_REPROBE", c.NotFoundReprobe),
		positive("DIRECTORY_SYNC_INTERVAL", c.DirectorySyncInterval),
		c.NotFound.validate(),
		validDeployment(c.Deployment),
	}
	if c.ChannelTTL > 0 && c.RenewBefore >= c.ChannelTTL {
		errs = append(errs, fmt.Errorf("RENEW_BEFORE (%s) must be shorter than CHANNEL_TTL (%s)", c.RenewBefore, c.ChannelTTL))
	}
	if c.Concurrency < 1 || c.Concurrency > 64 {
		errs = append(errs, fmt.Errorf("RENEW_CONCURRENCY must be 1-64, got %d", c.Concurrency))
	}
	if !(c.DirectoryMaxUnenrollShare > 0 && c.DirectoryMaxUnenrollShare <= 1) {
		errs = append(errs, fmt.Errorf("DIRECTORY_MAX_UNENROLL_SHARE must be above 0 and at most 1, got %v", c.DirectoryMaxUnenrollShare))
	}
	return errors.Join(errs...)
}

// validDeployment checks DEPLOYMENT, a part of channel ids.
func validDeployment(d string) error {
	if d = strings.TrimSpace(d); d == "" || len(d) > 64 || strings.ContainsAny(d, "/ \n") {
		return fmt.Errorf("DEPLOYMENT %q must be a short name (1-64 characters, no spaces or slashes)", d)
	}
	return nil
}

func validURL(name, v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s %q is not an http(s) URL", name, v)
	}
	return nil
}

// WebhookAddress checks the address Google pushes to (WEBHOOK_URL): Google
// accepts only HTTPS (with a certificate a public CA signed) and answers an
// http address 400 push.webhookUrlNotHttps, channel by channel. http is
// allowed on loopback addresses only, for local stacks and emulators.
func WebhookAddress(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("WEBHOOK_URL %q is not an https URL", v)
	}
	if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		return fmt.Errorf("WEBHOOK_URL %q: Google pushes only to https addresses (with a certificate a public CA signed); http is allowed on a loopback address only (127.0.0.0/8, ::1, localhost)", v)
	}
	return nil
}

// secureURL is validURL for an endpoint that is sent secrets (bearer tokens,
// the OAuth client secret, refresh tokens) or sends users to sign in:
// https, or http on a loopback address only (the local emulators). Plain
// http to any other host would hand those secrets to the network.
func secureURL(name, v string) error {
	if err := validURL(name, v); err != nil {
		return err
	}
	u, _ := url.Parse(v)
	if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		return fmt.Errorf("%s %q: http is only allowed on a loopback address (127.0.0.0/8, ::1, localhost); use https", name, v)
	}
	return nil
}

// loopbackHost reports whether host is a loopback IP literal or localhost.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// Enrollment configures enrollment run where no channel keys are: the
// operator CLI's enroll and unenroll without CHANNEL_TOKEN_KEYS. Calendars
// it enrolls get their channels from RenewChannels; it reads Calendar with
// whatever credential keys are set (delegation needs none).
type Enrollment struct {
	Common
	Firestore
	Calendar
	NotificationsTopic string `env:"NOTIFICATIONS_TOPIC, default=calsync-notifications"`
	// RenewBefore is the channels' renewal window, as RenewChannels has it.
	RenewBefore time.Duration `env:"RENEW_BEFORE, default=26h"`
}

// Validate reports every problem with the Enrollment config: the Calendar
// settings as ValidateEnrollment checks them (no credential key required).
// Connect configures the Connect function (functions/connect): public
// pages, so it holds no private key: it seals users' refresh tokens to
// CREDENTIAL_PUBLIC_KEY and hands them to the SyncWorker on the tenant's
// control topic.
type Connect struct {
	Common
	Firestore
	Calendar
	// ConnectURL is the function's public base URL: Google sends users
	// back to ConnectURL + "/callback" (an authorised redirect URI of the
	// web OAuth client).
	ConnectURL string `env:"CONNECT_URL, required"`
	// ConnectLinkKeys are the tenants' connect-link keys: a JSON object
	// {"tenant": "KEYID:BASE64[,KEYID:BASE64]"} (32 bytes or more each; the
	// tenant's backend signs with one, every one listed verifies).
	ConnectLinkKeys string `env:"CONNECT_LINK_KEYS, required"`
}

// LinkKeys parses CONNECT_LINK_KEYS: per tenant, key id to secret.
func (c Connect) LinkKeys() (map[string]map[string][]byte, error) {
	lists, err := c.linkKeyLists()
	if err != nil {
		return nil, err
	}
	out := map[string]map[string][]byte{}
	for tenantName, keys := range lists {
		out[tenantName] = map[string][]byte{}
		for _, k := range keys {
			out[tenantName][k.ID] = k.Material
		}
	}
	return out, nil
}

// SigningLinkKey is the key a tenant's links are signed with: the first of
// its CONNECT_LINK_KEYS.
func (c Connect) SigningLinkKey(tenantName string) (Key, error) {
	lists, err := c.linkKeyLists()
	if err != nil {
		return Key{}, err
	}
	if len(lists[tenantName]) == 0 {
		return Key{}, fmt.Errorf("CONNECT_LINK_KEYS has no key for tenant %s", tenantName)
	}
	return lists[tenantName][0], nil
}

// linkKeyLists parses CONNECT_LINK_KEYS, each tenant's keys in order, each
// of 32 bytes or more.
func (c Connect) linkKeyLists() (map[string][]Key, error) {
	var raw map[string]string
	if err := json.Unmarshal([]byte(c.ConnectLinkKeys), &raw); err != nil {
		return nil, errors.New("CONNECT_LINK_KEYS is not a JSON object of tenant to key list")
	}
	out := map[string][]Key{}
	for tenantName, list := range raw {
		keys, err := ParseKeys(list)
		if err != nil {
			return nil, fmt.Errorf("CONNECT_LINK_KEYS[%s]: %w", tenantName, err)
		}
		for _, k := range keys {
			if len(k.Material) < 32 {
				return nil, fmt.Errorf("CONNECT_LINK_KEYS[%s]: key %s is shorter than 32 bytes", tenantName, k.ID)
			}
		}
		out[tenantName] = keys
	}
	return out, nil
}

// Validate reports every problem with the Connect config.
func (c Connect) Validate() error {
	errs := []error{c.Common.validate(), c.Calendar.ValidateEnrollment(), secureURL("CONNECT_URL", c.ConnectURL)}
	if _, err := c.LinkKeys(); err != nil {
		errs = append(errs, err)
	}
	if c.CredentialPublicKey == "" {
		errs = append(errs, errors.New("CREDENTIAL_PUBLIC_KEY must be set: Connect seals users' refresh tokens to it"))
	}
	if c.CredentialPrivateKeys != "" || c.CredentialKeys != "" {
		errs = append(errs, errors.New("CREDENTIAL_PRIVATE_KEYS and CREDENTIAL_KEYS must not be given to Connect: a public function never holds the keys that open users' tokens"))
	}
	if c.OAuthClientID == "" || c.OAuthClientSecret == "" {
		errs = append(errs, errors.New("OAUTH_CLIENT_ID and OAUTH_CLIENT_SECRET (a web OAuth client) must be set"))
	}
	return errors.Join(errs...)
}

func (c Enrollment) Validate() error {
	return errors.Join(c.Common.validate(), c.Calendar.ValidateEnrollment(),
		validTopic("NOTIFICATIONS_TOPIC", c.NotificationsTopic), positive("RENEW_BEFORE", c.RenewBefore))
}
