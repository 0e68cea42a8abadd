# Inputs. Every variable is described and validated where a rule exists; the
# Go duration ones use Go's time.ParseDuration syntax because the functions
# read them with go-envconfig (see shared/config).

variable "project_id" {
  description = "Google Cloud project id that hosts calsync (PROJECT_ID of every function)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id: 6-30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region of the functions, the Cloud Scheduler job and (unless firestore_location says otherwise) the Firestore database, e.g. europe-west1."
  type        = string
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must look like europe-west1 or us-central1."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name: functions (PREFIX-webhook, PREFIX-sync-worker, PREFIX-renew-channels), topics, service accounts, metrics."
  type        = string
  default     = "calsync"

  validation {
    # Service account ids are at most 30 characters and the longest suffix
    # used is "-sync-pusher" (12), so the prefix may have at most 18.
    condition     = can(regex("^[a-z][a-z0-9-]{0,16}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 2-18 lowercase letters, digits or hyphens, start with a letter and not end with a hyphen."
  }
}

variable "labels" {
  description = "Labels added to every resource that takes labels."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))])
    error_message = "labels keys must start with a lowercase letter; keys and values may hold lowercase letters, digits, _ and - (at most 63)."
  }
}

variable "go_runtime" {
  description = "Cloud Run functions runtime; must match the go directive of go.mod (go 1.26 -> go126)."
  type        = string
  default     = "go126"

  validation {
    condition     = can(regex("^go1[0-9]{2}$", var.go_runtime))
    error_message = "go_runtime must look like go126."
  }
}

variable "firestore_database" {
  description = "Firestore database id (FIRESTORE_DATABASE): calsync's own database, to which its service accounts' Firestore grants are limited (IAM condition). A deployment made before calsync had its own database keeps using its data by setting \"(default)\" (the grants are then limited to that one)."
  type        = string
  default     = "calsync"

  validation {
    condition     = var.firestore_database == "(default)" || can(regex("^[a-z][a-z0-9-]{2,61}[a-z0-9]$", var.firestore_database))
    error_message = "firestore_database must be \"(default)\" or 4-63 lowercase letters, digits or hyphens starting with a letter."
  }
}

variable "firestore_location" {
  description = "Firestore location (a region such as europe-west1, or a multi-region such as eur3 or nam5). Null means the same as region. Cannot change after creation."
  type        = string
  default     = null

  validation {
    condition     = var.firestore_location == null || can(regex("^([a-z]+-[a-z]+[0-9]+|eur3|nam5|nam7)$", coalesce(var.firestore_location, "x")))
    error_message = "firestore_location must be a region (europe-west1) or a multi-region (eur3, nam5, nam7)."
  }
}

variable "log_level" {
  description = "LOG_LEVEL of every function: debug, info, warning or error."
  type        = string
  default     = "info"

  validation {
    condition     = contains(["debug", "info", "warning", "error"], var.log_level)
    error_message = "log_level must be one of debug, info, warning, error."
  }
}

variable "alert_notification_channels" {
  description = "Monitoring notification channels (projects/P/notificationChannels/ID) every alert policy notifies. Empty: alerts open incidents without notifying anyone."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.alert_notification_channels : can(regex("^projects/[^/]+/notificationChannels/[0-9]+$", c))])
    error_message = "alert_notification_channels entries must be full names: projects/PROJECT/notificationChannels/ID."
  }
}

# --- Webhook ---------------------------------------------------------------

variable "publish_timeout" {
  description = "PUBLISH_TIMEOUT of the Webhook: how long it waits for Pub/Sub before answering 503 so Google retries (Go duration)."
  type        = string
  default     = "10s"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.publish_timeout))
    error_message = "publish_timeout must be a Go duration such as 10s."
  }
}

variable "webhook_max_instances" {
  description = "Maximum Webhook instances. Each serves 80 concurrent requests, so 20 instances absorb 1,600 requests in flight."
  type        = number
  default     = 20

  validation {
    condition     = var.webhook_max_instances >= 1 && var.webhook_max_instances <= 1000 && floor(var.webhook_max_instances) == var.webhook_max_instances
    error_message = "webhook_max_instances must be a whole number from 1 to 1000."
  }
}

variable "webhook_min_instances" {
  description = "Minimum (warm) Webhook instances. 0 costs nothing when idle; 1 removes cold starts from Google's push deliveries."
  type        = number
  default     = 0

  validation {
    condition     = var.webhook_min_instances >= 0 && var.webhook_min_instances <= 10 && floor(var.webhook_min_instances) == var.webhook_min_instances
    error_message = "webhook_min_instances must be a whole number from 0 to 10."
  }
}

variable "channel_expiry_grace" {
  description = "CHANNEL_EXPIRY_GRACE of the Webhook: pushes whose signed channel expiration is further in the past than this are answered 200 and not published (replays of ended channels; Google's late retries within it still count). Go duration, at most 24h (the Webhook refuses to start otherwise)."
  type        = string
  default     = "1h"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.channel_expiry_grace))
    error_message = "channel_expiry_grace must be a Go duration such as 1h."
  }
}

variable "channel_token_v1_until" {
  description = "CHANNEL_TOKEN_V1_UNTIL of the Webhook: version 1 channel tokens (no signed expiration, minted before this release) are accepted until this RFC 3339 instant. Empty (the default, and right for a new deployment): refused. When upgrading a deployment with live channels, set it about a day ahead (at most 8 days: the Webhook refuses to start otherwise): RenewChannels renews every such channel in its next hourly run (check with `calsync keys`), then clear it."
  type        = string
  default     = ""

  validation {
    condition     = var.channel_token_v1_until == "" || can(formatdate("YYYY", var.channel_token_v1_until))
    error_message = "channel_token_v1_until must be empty or an RFC 3339 timestamp such as 2026-12-01T00:00:00Z."
  }
}

variable "unknown_key_retry_window" {
  description = "UNKNOWN_KEY_RETRY_WINDOW of the Webhook: a channel token signed with a key id of channel_token_key_history that the Webhook does not have is answered 503 (Google retries) for this long after an instance first sees that id, with an alert, then 403 (ids outside the history: 403 at once). Gives an operator time to repair a key rotation done out of order. Go duration, 0s (refuses at once) to 168h (one channel TTL: the Webhook refuses to start above it)."
  type        = string
  default     = "24h"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.unknown_key_retry_window))
    error_message = "unknown_key_retry_window must be a Go duration such as 24h."
  }
}

variable "channel_token_key_history" {
  description = "CHANNEL_TOKEN_KEY_HISTORY of the Webhook: ids (never material) of channel-token keys this deployment used or is about to use that the channel-token-keys secret does not hold: add a key's id when it is dropped (rotation step 4), and a new key's id before its rotation starts. Only these ids (and the secret's) are answered 503 within unknown_key_retry_window and named in logs and the token_key_unknown metric's key_id label; any other key id a token names is refused 403 and logged as \"unknown\"."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.channel_token_key_history : can(regex("^[A-Za-z0-9_-]{1,16}$", id))])
    error_message = "channel_token_key_history ids must each be 1-16 of [A-Za-z0-9_-]."
  }
}

# --- SyncWorker ------------------------------------------------------------

variable "sync_worker_max_instances" {
  description = "Maximum SyncWorker instances (one sync each). Bounds Firestore and Calendar API load: the project quota is 10,000 Calendar requests a minute."
  type        = number
  default     = 50

  validation {
    condition     = var.sync_worker_max_instances >= 1 && var.sync_worker_max_instances <= 1000 && floor(var.sync_worker_max_instances) == var.sync_worker_max_instances
    error_message = "sync_worker_max_instances must be a whole number from 1 to 1000."
  }
}

variable "lease_duration" {
  description = "LEASE_DURATION: how long a sync holds a calendar before another worker may take over; the running sync extends it (Go duration, at least 5s)."
  type        = string
  default     = "60s"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.lease_duration))
    error_message = "lease_duration must be a Go duration such as 60s."
  }
}

variable "rerun_interval" {
  description = "RERUN_INTERVAL: pause between reruns of one calendar during a burst of notifications (Go duration; 1500ms keeps a 5 s burst at about 5 events.list calls)."
  type        = string
  default     = "1500ms"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.rerun_interval))
    error_message = "rerun_interval must be a Go duration such as 1s."
  }
}

variable "quiet_period" {
  description = "QUIET_PERIOD: a burst is over when no notification came for this long; the final sync then starts without waiting out RERUN_INTERVAL (Go duration, shorter than rerun_interval)."
  type        = string
  default     = "300ms"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.quiet_period))
    error_message = "quiet_period must be a Go duration such as 300ms."
  }
}

variable "sync_worker_concurrency" {
  description = "Requests one SyncWorker instance serves at once. Above 1, a calendar's burst mostly reaches the instance already syncing it, which ends the burst sooner (lower lag)."
  type        = number
  default     = 8

  validation {
    condition     = var.sync_worker_concurrency >= 1 && var.sync_worker_concurrency <= 32 && floor(var.sync_worker_concurrency) == var.sync_worker_concurrency
    error_message = "sync_worker_concurrency must be a whole number from 1 to 32."
  }
}

variable "retry_budget" {
  description = "RETRY_BUDGET: in-process retries of one sync before the message is handed back to Pub/Sub (Go duration; keep well under the 540s function timeout)."
  type        = string
  default     = "120s"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.retry_budget))
    error_message = "retry_budget must be a Go duration such as 120s."
  }
}

variable "full_resync_cooldown" {
  description = "FULL_RESYNC_COOLDOWN: a cost guard: a full resync asked for within this long of a calendar's last full sync is coalesced into an incremental sync (full_resync requests; a 410 always resyncs at once: the token is dead). WARNING full_resync_cooldown, metric full_resync_cooldown by outcome. \"0s\" turns it off; at most 24h (Go duration)."
  type        = string
  default     = "10m"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.full_resync_cooldown))
    error_message = "full_resync_cooldown must be a Go duration such as 10m."
  }
}

variable "follow_up_delay" {
  description = "FOLLOW_UP_DELAY: a push whose incremental sync listed nothing gets one more sync this much later (Google does not promise a change is listed when its push arrives). \"0s\" turns it off; at most 2m (Go duration)."
  type        = string
  default     = "15s"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.follow_up_delay))
    error_message = "follow_up_delay must be a Go duration such as 15s."
  }
}

variable "sync_max_session" {
  description = "MAX_SESSION: how long one SyncWorker invocation works on a calendar. A longer sync (a full sync of a large calendar) stops at a checkpoint and asks for its continuation on the notifications topic (Go duration; keep well under the 540s function timeout)."
  type        = string
  default     = "5m"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.sync_max_session))
    error_message = "sync_max_session must be a Go duration such as 5m."
  }
}

variable "calendar_user_rate_limit" {
  description = "CALENDAR_USER_RATE_LIMIT: Calendar API requests a minute per user the functions allow themselves (Google's default is 600; set more only if Google raised the project's per-user quota, and never more than calendar_project_rate_limit: the functions refuse to start)."
  type        = number
  default     = 500

  validation {
    condition     = var.calendar_user_rate_limit >= 1 && floor(var.calendar_user_rate_limit) == var.calendar_user_rate_limit
    error_message = "calendar_user_rate_limit must be a positive whole number."
  }
}

variable "calendar_project_rate_limit" {
  description = "CALENDAR_PROJECT_RATE_LIMIT: Calendar API requests a minute the whole deployment allows itself, all users together (Google's per-project quota is 10,000 unless raised). Held across every function instance through Firestore (quota/{bucket})."
  type        = number
  default     = 9000

  validation {
    condition     = var.calendar_project_rate_limit >= 1 && floor(var.calendar_project_rate_limit) == var.calendar_project_rate_limit
    error_message = "calendar_project_rate_limit must be a positive whole number."
  }
}

variable "calendar_daily_limit" {
  description = "CALENDAR_DAILY_LIMIT: Calendar API requests the whole deployment allows itself in any 24 hours (Google bills past 1,000,000 a day per project); 0 turns the daily budget off. Held across every function instance through Firestore (quota/project-day)."
  type        = number
  default     = 950000

  validation {
    condition     = var.calendar_daily_limit >= 0 && floor(var.calendar_daily_limit) == var.calendar_daily_limit
    error_message = "calendar_daily_limit must be 0 (none) or a positive whole number."
  }
}

variable "max_calendars_per_identity" {
  description = "MAX_CALENDARS_PER_IDENTITY: a cost guard: the most calendars one identity's calendar list enrolls (an OAuth end user controls that list; each calendar costs a channel and syncs). Past it the calendars already followed are kept and no more enrolled; WARNING calendar_cap_reached (identityKey, cap, listed, leftOut), metric calendar_cap_reached."
  type        = number
  default     = 500

  validation {
    condition     = var.max_calendars_per_identity >= 1 && var.max_calendars_per_identity <= 10000 && floor(var.max_calendars_per_identity) == var.max_calendars_per_identity
    error_message = "max_calendars_per_identity must be a whole number from 1 to 10000."
  }
}

variable "not_found_attempts" {
  description = "NOT_FOUND_ATTEMPTS: 404s in a row (events.list or events.watch) before a calendar is not_found; with not_found_after. Google answers some 404s for a while after a calendar is shared."
  type        = number
  default     = 3

  validation {
    condition     = var.not_found_attempts >= 1 && var.not_found_attempts <= 100 && floor(var.not_found_attempts) == var.not_found_attempts
    error_message = "not_found_attempts must be a whole number from 1 to 100."
  }
}

variable "delegation_grace" {
  description = "DELEGATION_GRACE: how long after an identity or calendar was enrolled a domain-wide delegation answering unauthorized_client is deferred (Google takes up to 24 h to apply a delegation) before its calendars are delegation_unauthorized (Go duration, 0 to 168h)."
  type        = string
  default     = "24h"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.delegation_grace))
    error_message = "delegation_grace must be a Go duration, e.g. 24h."
  }
}

variable "not_found_after" {
  description = "NOT_FOUND_AFTER: how long a streak of 404s must last before a calendar is not_found (Go duration)."
  type        = string
  default     = "1h"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.not_found_after))
    error_message = "not_found_after must be a Go duration such as 1h."
  }
}

variable "oauth_client_id" {
  description = "OAUTH_CLIENT_ID of the OAuth client users grant Calendar access to. When set, the oauth-client-secret secret must hold its secret; when empty, neither is given to the functions."
  type        = string
  default     = ""

  validation {
    condition     = var.oauth_client_id == "" || can(regex("^[0-9A-Za-z-]+\\.apps\\.googleusercontent\\.com$", var.oauth_client_id))
    error_message = "oauth_client_id must be empty or an OAuth client id ending in .apps.googleusercontent.com."
  }
}

variable "connect_url" {
  description = "CONNECT_URL of the Connect function: its public base URL, where connect links point and Google sends users back (CONNECT_URL/callback, the oauth_redirect_uri output). Empty: the function's own address, https://REGION-PROJECT_ID.cloudfunctions.net/PREFIX-connect. Set it when a custom domain (a load balancer or Firebase Hosting in front of the function) serves it: https, no query, no trailing slash."
  type        = string
  default     = ""

  validation {
    condition     = var.connect_url == "" || can(regex("^https://[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[^\\s?#]*[^\\s?#/])?$", var.connect_url))
    error_message = "connect_url must be empty or an https URL without query, fragment or trailing slash, such as https://connect.example.com."
  }
}

variable "dead_letter_max_delivery_attempts" {
  description = "Deliveries of one notification to the SyncWorker before Pub/Sub moves it to the dead-letter topic (Pub/Sub allows 5-100)."
  type        = number
  default     = 10

  validation {
    condition     = var.dead_letter_max_delivery_attempts >= 5 && var.dead_letter_max_delivery_attempts <= 100 && floor(var.dead_letter_max_delivery_attempts) == var.dead_letter_max_delivery_attempts
    error_message = "dead_letter_max_delivery_attempts must be a whole number from 5 to 100."
  }
}

variable "changes_example_subscription" {
  description = "If not empty, the name of an example ordered pull subscription on the changes topic (enable_message_ordering). Real consumers create their own."
  type        = string
  default     = ""

  validation {
    condition     = var.changes_example_subscription == "" || can(regex("^[a-zA-Z][a-zA-Z0-9-_.~+%]{2,254}$", var.changes_example_subscription))
    error_message = "changes_example_subscription must be empty or a Pub/Sub subscription id (3-255 chars, starting with a letter)."
  }
}

# --- RenewChannels ---------------------------------------------------------

variable "renew_schedule" {
  description = "Cron schedule (Cloud Scheduler syntax, in scheduler_time_zone) of the RenewChannels run. Hourly by default; the renew_before window must span several runs."
  type        = string
  default     = "0 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.renew_schedule))) == 5
    error_message = "renew_schedule must be a five-field cron expression such as \"0 * * * *\"."
  }
}

variable "poll_schedule" {
  description = "Cron schedule of the poll job: RenewChannels with ?mode=poll asks for a sync of every calendar Google will not push for (holiday calendars, birthday calendars) whose last sync is poll_interval old. Keep it as frequent as poll_interval."
  type        = string
  default     = "*/5 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.poll_schedule))) == 5
    error_message = "poll_schedule must be a five-field cron expression such as \"*/5 * * * *\"."
  }
}

variable "poll_interval" {
  description = "POLL_INTERVAL: calendars Google will not push for are synced when their last sync is this old (Go duration)."
  type        = string
  default     = "5m"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.poll_interval))
    error_message = "poll_interval must be a Go duration such as 5m."
  }
}

variable "poll_min_interval" {
  description = "POLL_MIN_INTERVAL: a cost guard: one poll-only calendar (holiday, birthday) is synced at most once per this long, however often the poll runs (poll_interval) come; the poll_run line counts those held back (metric polls_deferred). Go duration."
  type        = string
  default     = "1h"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.poll_min_interval))
    error_message = "poll_min_interval must be a Go duration such as 1h."
  }
}

variable "not_found_reprobe" {
  description = "NOT_FOUND_REPROBE: a not_found calendar is tried again this long after its last try, and active again when it answers (Go duration)."
  type        = string
  default     = "24h"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.not_found_reprobe))
    error_message = "not_found_reprobe must be a Go duration such as 24h."
  }
}

variable "scheduler_time_zone" {
  description = "Time zone of renew_schedule (tz database name)."
  type        = string
  default     = "Etc/UTC"

  validation {
    condition     = can(regex("^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", var.scheduler_time_zone))
    error_message = "scheduler_time_zone must be a tz database name such as Etc/UTC or Europe/Paris."
  }
}

variable "channel_ttl" {
  description = "CHANNEL_TTL asked of Google for each push channel (Go duration). Google's default and usual maximum is 168h (7 days); it may grant less."
  type        = string
  default     = "168h"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.channel_ttl))
    error_message = "channel_ttl must be a Go duration such as 168h."
  }
}

variable "renew_before" {
  description = "RENEW_BEFORE: channels expiring within this window are renewed (Go duration, shorter than channel_ttl). 26h leaves a day of hourly retries."
  type        = string
  default     = "26h"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.renew_before))
    error_message = "renew_before must be a Go duration such as 26h."
  }
}

variable "retain_unwatched_mirrors" {
  description = "RETAIN_UNWATCHED_MIRRORS of RenewChannels: a calendar nobody follows any more (its identity unenrolled or disconnected, it left a calendar list, an operator unwatched it) keeps its mirror this long after its last sync, then the mirror is purged (each event announced deleted, origin purge). \"0s\" keeps mirrors for ever. Go duration."
  type        = string
  default     = "720h"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.retain_unwatched_mirrors))
    error_message = "retain_unwatched_mirrors must be a Go duration such as 720h (0s: keep for ever)."
  }
}

variable "reconcile_after" {
  description = "RECONCILE_AFTER: calendars not synced for this long get a reconcile sync (Google drops a small share of notifications). Go duration."
  type        = string
  default     = "6h"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.reconcile_after))
    error_message = "reconcile_after must be a Go duration such as 6h."
  }
}

variable "directory_sync_interval" {
  description = "DIRECTORY_SYNC_INTERVAL: RenewChannels diffs each enrolled Workspace domain's directory (users added, suspended or deleted; rooms) when its last diff is older than this. Go duration."
  type        = string
  default     = "24h"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.directory_sync_interval))
    error_message = "directory_sync_interval must be a Go duration such as 24h."
  }
}

variable "directory_max_unenroll_share" {
  description = "DIRECTORY_MAX_UNENROLL_SHARE: a directory diff that would unenroll more than this share of a domain's enrolled identities, or of its customer's rooms (at least one is always allowed), unenrolls none and logs ERROR directory_shrink_refused (alerted): a listing that succeeds but covers only one organisational unit, after an admin's rights narrowed, must not unenroll everyone else. A real shrink is applied by an operator: `go run ./scripts/calsync enroll --domain D --admin A --allow-shrink`."
  type        = number
  default     = 0.1

  validation {
    condition     = var.directory_max_unenroll_share > 0 && var.directory_max_unenroll_share <= 1
    error_message = "directory_max_unenroll_share must be above 0 and at most 1 (0.1 is 10%)."
  }
}

variable "control_publishers" {
  description = "Who may publish control messages (enroll, unenroll, resync; shared/messages.Control) to the control topic: IAM members of product backends, e.g. \"serviceAccount:product@PROJECT.iam.gserviceaccount.com\". roles/pubsub.publisher on that topic only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.control_publishers : can(regex("^(serviceAccount|user|group|principal|principalSet):.+", m))])
    error_message = "control_publishers must be IAM members such as serviceAccount:product@PROJECT.iam.gserviceaccount.com."
  }
}

variable "renew_concurrency" {
  description = "RENEW_CONCURRENCY: calendars RenewChannels works on at once inside its single instance."
  type        = number
  default     = 8

  validation {
    condition     = var.renew_concurrency >= 1 && var.renew_concurrency <= 64 && floor(var.renew_concurrency) == var.renew_concurrency
    error_message = "renew_concurrency must be a whole number from 1 to 64."
  }
}

# --- Secrets ---------------------------------------------------------------

variable "secret_versions" {
  description = "Secret Manager version each function mounts: \"latest\" (read when an instance starts) or a version number. Pinning a number and changing it rolls out a new revision at once, which is how a rotation is pushed (see README)."
  type = object({
    channel_token_keys      = optional(string, "latest")
    credential_private_keys = optional(string, "latest")
    credential_keys         = optional(string, "latest")
    oauth_client_secret     = optional(string, "latest")
    connect_link_keys       = optional(string, "latest")
  })
  default = {}

  validation {
    condition     = alltrue([for v in values(var.secret_versions) : v == "latest" || can(regex("^[1-9][0-9]*$", v))])
    error_message = "secret_versions values must be \"latest\" or a version number."
  }
}

variable "credential_public_key" {
  description = "The public half of the first key in the credential-private-keys secret (pubkey:v1:KEYID:BASE64URL, from `calsync keygen`): what `calsync connect` and product backends seal users' refresh tokens to. Not secret; output as credential_public_key. When set, RenewChannels checks at start that it matches one of its private keys."
  type        = string
  default     = ""

  validation {
    condition     = var.credential_public_key == "" || can(regex("^pubkey:v1:[A-Za-z0-9_-]{1,16}:[A-Za-z0-9_-]{43}$", var.credential_public_key))
    error_message = "credential_public_key must be empty or pubkey:v1:KEYID:BASE64URL (43 characters) as calsync keygen prints it."
  }
}

variable "legacy_credential_keys" {
  description = "Keep the credential-keys secret (AES keys of refresh tokens stored before sealing) and give it to the SyncWorker and RenewChannels as CREDENTIAL_KEYS. Only for a deployment made before sealed credentials: set true when upgrading, let RenewChannels (or `calsync migrate-credentials`) seal them, then set false, which deletes the secret and its keys. New deployments: false."
  type        = bool
  default     = false
}

# --- Alerts ----------------------------------------------------------------

variable "sync_error_ratio_threshold" {
  description = "Alert when sync errors exceed this share of syncs over 15 minutes (0-1)."
  type        = number
  default     = 0.1

  validation {
    condition     = var.sync_error_ratio_threshold > 0 && var.sync_error_ratio_threshold <= 1
    error_message = "sync_error_ratio_threshold must be in (0, 1]."
  }
}

# --- Tenants and consumers -------------------------------------------------

variable "tenants" {
  description = <<-EOT
    Tenants (TENANTS of the SyncWorker, RenewChannels and Connect): each a product, or one customer of a product, that enrolls identities through a control topic of its own. The key is the tenant's name (it is also the `tenant` attribute of every message about its identities); "default" is the operator's tenant (control_publishers on the control topic, unrestricted) and cannot be listed here. Per tenant: a topic PREFIX-control-NAME that only its publishers (IAM members, roles/pubsub.publisher on that topic alone) and the Connect function may publish to, pushed to the SyncWorker like the operator's; the identities it may enroll are Workspace users of its domains (lower-case DNS names), the listed subjects (email addresses), and OAuth grants when oauth is true. Connect links (the tenant's users connecting their Google account themselves): display_name is the product's name on the Connect pages (default: the key); return_urls are where a link may send its user back (https URLs; a link's return URL must have one's scheme and host and start with its path); none: the tenant has no connect links. delete_mirror_on_disconnect: every disconnect of its users deletes their mirrors (each event announced deleted, origin purge), whatever the message says. Its link keys are in the connect-link-keys secret.
  EOT
  type = map(object({
    publishers                  = list(string)
    domains                     = optional(list(string), [])
    subjects                    = optional(list(string), [])
    oauth                       = optional(bool, true)
    display_name                = optional(string, "")
    return_urls                 = optional(list(string), [])
    delete_mirror_on_disconnect = optional(bool, false)
  }))
  default = {}

  validation {
    condition     = alltrue([for name in keys(var.tenants) : can(regex("^[a-z][a-z0-9-]{0,29}$", name)) && name != "default"])
    error_message = "tenants keys must be 1-30 lowercase letters, digits or hyphens starting with a letter, and not \"default\" (the operator's tenant)."
  }

  validation {
    condition     = alltrue(flatten([for t in values(var.tenants) : [for m in t.publishers : can(regex("^(serviceAccount|user|group|principal|principalSet):.+", m))]]))
    error_message = "tenants publishers must be IAM members such as serviceAccount:product@PROJECT.iam.gserviceaccount.com."
  }

  validation {
    condition     = alltrue(flatten([for t in values(var.tenants) : [for d in t.domains : can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", d))]]))
    error_message = "tenants domains must be lower-case DNS names such as example.com."
  }

  validation {
    condition     = alltrue(flatten([for t in values(var.tenants) : [for s in t.subjects : can(regex("^[a-z0-9._%+'-]+@([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", s))]]))
    error_message = "tenants subjects must be lower-case email addresses such as room-admin@example.com."
  }
  validation {
    # No user info, query or fragment: the Connect function compares scheme,
    # host and path only, and refuses return URLs with a fragment.
    condition     = alltrue(flatten([for t in values(var.tenants) : [for u in t.return_urls : can(regex("^https://[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[^\\s?#]*)?$", u))]]))
    error_message = "tenants return_urls must be https URLs with a lower-case host and no query or fragment, such as https://app.example.com/calsync/done."
  }

  validation {
    # A connect link enrolls an OAuth grant, which the SyncWorker refuses
    # for a tenant without oauth.
    condition     = alltrue([for t in values(var.tenants) : t.oauth || length(t.return_urls) == 0])
    error_message = "tenants with return_urls (connect links) must have oauth = true: connect links enroll OAuth grants."
  }
}

variable "control_max_age" {
  description = "CONTROL_MAX_AGE of the SyncWorker: a control message whose issuedAt is older than this (or this far in the future) is refused and answered on the lifecycle topic, so a replayed old message changes nothing (Go duration)."
  type        = string
  default     = "10m"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$", var.control_max_age))
    error_message = "control_max_age must be a Go duration such as 10m."
  }
}

variable "consumers" {
  description = <<-EOT
    Subscriptions of consuming products, by name (subscription PREFIX-consumer-NAME). topic: "changes" (one message per changed event) or "lifecycle" (enrollments, initial syncs, auth problems, control replies). tenant: only that tenant's messages ("default" for the operator's; a key of tenants otherwise), by a subscription filter on the tenant attribute; filter: a Pub/Sub filter ANDed with it (attributes tenant, identityKey, externalId, origin). push_endpoint: an HTTPS URL Pub/Sub pushes to with an OIDC token of push_service_account (an email; audience push_audience, default the endpoint); without it, a pull subscription. ordering: enable_message_ordering (messages of one calendar in order). subscribers: IAM members given roles/pubsub.subscriber on this subscription only. Each consumer gets a dead-letter topic PREFIX-consumer-NAME-dead-letter (after max_delivery_attempts, 5-100) and a pull subscription PREFIX-consumer-NAME-dead-letter-hold that keeps its dead letters 7 days.
  EOT
  type = map(object({
    topic                 = string
    tenant                = optional(string)
    filter                = optional(string)
    push_endpoint         = optional(string)
    push_service_account  = optional(string)
    push_audience         = optional(string)
    ordering              = optional(bool, false)
    subscribers           = optional(list(string), [])
    ack_deadline_seconds  = optional(number, 60)
    max_delivery_attempts = optional(number, 10)
  }))
  default = {}

  validation {
    # "dead-letter" would let one consumer's name be another's dead-letter subscription.
    condition     = alltrue([for name in keys(var.consumers) : can(regex("^[a-z][a-z0-9-]{0,39}$", name)) && !strcontains(name, "dead-letter")])
    error_message = "consumers keys must be 1-40 lowercase letters, digits or hyphens starting with a letter, without \"dead-letter\"."
  }

  validation {
    condition     = alltrue([for c in values(var.consumers) : contains(["changes", "lifecycle"], c.topic)])
    error_message = "consumers topic must be \"changes\" or \"lifecycle\"."
  }

  validation {
    condition     = alltrue([for c in values(var.consumers) : c.tenant == null || can(regex("^[a-z][a-z0-9-]{0,29}$", c.tenant))])
    error_message = "consumers tenant must be \"default\" or a key of tenants (checked again when the subscription is planned)."
  }

  validation {
    condition     = alltrue([for c in values(var.consumers) : c.filter == null || trimspace(coalesce(c.filter, " ")) != ""])
    error_message = "consumers filter must be left out or a Pub/Sub filter such as attributes.origin != \"initial\"."
  }

  validation {
    condition     = alltrue([for c in values(var.consumers) : c.push_endpoint == null || can(regex("^https://[^/?#\\s]+[^\\s]*$", c.push_endpoint))])
    error_message = "consumers push_endpoint must be an https:// URL."
  }

  validation {
    # Pushing without a token would let anyone who learns the URL post forged messages.
    condition     = alltrue([for c in values(var.consumers) : (c.push_endpoint == null) == (c.push_service_account == null)])
    error_message = "consumers push_endpoint and push_service_account go together: a push consumer gets an OIDC token of that account, a pull consumer has neither."
  }

  validation {
    condition     = alltrue([for c in values(var.consumers) : c.push_service_account == null || can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9.-]+\\.gserviceaccount\\.com$", c.push_service_account))])
    error_message = "consumers push_service_account must be a service account email (NAME@PROJECT.iam.gserviceaccount.com), without the serviceAccount: prefix."
  }

  validation {
    condition     = alltrue([for c in values(var.consumers) : c.push_audience == null || c.push_service_account != null])
    error_message = "consumers push_audience needs push_service_account (it is the audience of that account's OIDC token)."
  }

  validation {
    condition     = alltrue(flatten([for c in values(var.consumers) : [for m in c.subscribers : can(regex("^(serviceAccount|user|group|principal|principalSet):.+", m))]]))
    error_message = "consumers subscribers must be IAM members such as serviceAccount:consumer@PROJECT.iam.gserviceaccount.com."
  }

  validation {
    condition     = alltrue([for c in values(var.consumers) : c.ack_deadline_seconds >= 10 && c.ack_deadline_seconds <= 600 && floor(c.ack_deadline_seconds) == c.ack_deadline_seconds])
    error_message = "consumers ack_deadline_seconds must be a whole number from 10 to 600."
  }

  validation {
    condition     = alltrue([for c in values(var.consumers) : c.max_delivery_attempts >= 5 && c.max_delivery_attempts <= 100 && floor(c.max_delivery_attempts) == c.max_delivery_attempts])
    error_message = "consumers max_delivery_attempts must be a whole number from 5 to 100 (Pub/Sub's range)."
  }
}
