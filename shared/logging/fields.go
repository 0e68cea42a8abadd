package logging

// Log field names shared by the functions, the Terraform log-based metrics and
// the alerts: change one here and the Terraform check test tells you which
// metric filter to change with it.
const (
	// KeyEvent names what a line reports; metrics filter on it.
	KeyEvent = "event"

	KeyCalendarKey   = "calendarKey"
	KeyCalendarID    = "calendarId"
	KeyChannelID     = "channelId"
	KeyResourceState = "resourceState"
	KeyMessageNumber = "messageNumber"
	KeyLatencyUs     = "latencyUs" // integer µs: slog writes floats through encoding/json, slowly
	KeyRemoteAddr    = "remoteAddr"
	KeySuppressed    = "suppressed" // rejection lines an instance left out since its last one
	KeyKeyID         = "keyId"      // a key id (channel-token or credential key), never key material
	KeyRetryForMs    = "retryForMs" // Webhook: how much longer an unknown key id is answered 503
	KeyReason        = "reason"
	KeyAdvice        = "advice" // what a person must do about a refused grant
	KeyError         = "error"
	KeyCredentialID  = "credentialId"
	KeyMessageID     = "messageId" // a Pub/Sub message id
	KeyTenant        = "tenant"    // the tenant an identity, a calendar or a control message is of
	KeyType          = "type"      // a lifecycle message's type

	KeySyncKind          = "syncKind" // full or incremental
	KeyPages             = "pages"
	KeyListed            = "listed"
	KeyWritten           = "written"
	KeyDeleted           = "deleted"
	KeyUnchanged         = "unchanged"
	KeyDurationMs        = "durationMs"
	KeyRerunReason       = "rerunReason"
	KeyLagMs             = "lagMs"
	KeyStale             = "stale"    // listed versions older than the mirror's, left alone
	KeyProblems          = "problems" // events stored only in part (calsyncProblem)
	KeyEventID           = "eventId"
	KeyInvocations       = "invocations" // invocations a long round has taken
	KeyResumed           = "resumed"     // the round continued one stopped at a checkpoint
	KeyMidRound          = "midRound"    // a session handed over inside a round (at a checkpoint)
	KeyContinuationAsked = "continuationAsked"
	KeyCoveredBy         = "coveredBy"     // lease_lost: what covers the stopped session's message (completed_round, live_holder, sync_asked) or redelivery
	KeyStatus            = "status"        // the HTTP status of a Calendar or token-endpoint error (0: none)
	KeyNotFoundCount     = "notFoundCount" // 404s in a calendar's current streak
	KeyAttempt           = "attempt"       // how often a rate-limited sync was deferred
	KeyPollMode          = "pollMode"
	KeyPollOnly          = "pollOnly"       // renew_run: calendars polled, not pushed
	KeyPolls             = "polls"          // renew_run: poll syncs asked for
	KeyOutcome           = "outcome"        // full_resync_cooldown: coalesced (a request) or deferred (a 410)
	KeyLastFullSyncAt    = "lastFullSyncAt" // full_resync_cooldown: the full sync the cooldown runs from
	KeyCooldownMs        = "cooldownMs"     // full_resync_cooldown: FULL_RESYNC_COOLDOWN
	KeyPollsDeferred     = "pollsDeferred"  // poll_run: poll-only calendars held back by POLL_MIN_INTERVAL
	KeyProbed            = "probed"         // renew_run: not_found calendars tried again
	KeyReactivated       = "reactivated"    // renew_run: ... found again

	KeyRenewed    = "renewed"
	KeyRekeyed    = "rekeyed"  // renewed because another key than the signing one signed their token
	KeyResealed   = "resealed" // credentials sealed to the current key by a run
	KeyCreated    = "created"
	KeyStopped    = "stopped"
	KeyReconciles = "reconciles"
	KeyFailed     = "failed"

	// RenewChannels and credentials.
	KeyExpiringSoon = "expiringSoon" // channels expiring within 6 h that were not renewed
	KeyExpired      = "expired"      // channel records found expired and closed
	KeyBusy         = "busy"         // calendars skipped: another run holds them
	KeyCalendars    = "calendars"
	KeyAuthMode     = "authMode"
	KeySubject      = "subject"
	KeyExpiration   = "expiration"
	KeyStep         = "step"
	KeyOperation    = "operation" // the Google call whose answer a lifecycle line reports (shared/lifecycle)
	KeyTarget       = "target"    // what a lifecycle line is about: calendar, identity, domain
	KeyRetryInMs    = "retryInMs" // a failed start: when the next try is

	// Enrollment (shared/enroll): identities, domains, control messages.
	KeyIdentityKey = "identityKey"
	KeyDomain      = "domain"
	KeyAction      = "action"
	KeyRequestID   = "requestId"
	KeyEnrolled    = "enrolled"   // calendars (or identities) enrolled
	KeyUnenrolled  = "unenrolled" // calendars (or identities) unenrolled
	KeyShared      = "shared"     // listed calendars another identity enrolled
	KeyListCalls   = "listCalls"  // calendarList.list (or Directory) pages read
	KeyUsers       = "users"
	KeyRooms       = "rooms"
	// RenewChannels' enrollment part.
	KeyIdentities     = "identities"     // identities whose list channels a run ensured
	KeyListReconciles = "listReconciles" // quiet calendar lists looked at again
	KeyDirectories    = "directories"    // domains whose directory a run diffed

	// SyncWorker: the Pub/Sub push delivery a line is about.
	KeyDeliveryAttempt = "deliveryAttempt" // Pub/Sub's (approximate) count, this delivery included; 0: not sent (no dead-letter policy)
	KeySubscription    = "subscription"
)

// Values of KeyEvent.
const (
	EventNotification         = "notification"          // Webhook: accepted and published
	EventNotificationRejected = "notification_rejected" // Webhook: forged or malformed
	EventPublishFailed        = "publish_failed"        // Webhook: answered 503
	EventNotificationExpired  = "notification_expired"  // Webhook: token's channel expiration plus grace is past; 200, not published (WARNING)
	// EventNotificationDuplicate: a push already published (Webhook: its
	// replay window; SyncWorker: the calendar's recorded message numbers);
	// acknowledged, no sync.
	EventNotificationDuplicate = "notification_duplicate"
	EventTokenKeyUnknown       = "token_key_unknown"    // Webhook: a key id of the deployment's key history it lacks, answered 503 within UNKNOWN_KEY_RETRY_WINDOW (ERROR, alerted; other ids: notification_rejected, keyId "unknown")
	EventSync                  = "sync"                 // SyncWorker: one sync done
	EventSyncError             = "sync_error"           // SyncWorker: a sync failed
	EventFullResync            = "full_resync"          // SyncWorker: 410, token dead
	EventFullResyncCooldown    = "full_resync_cooldown" // SyncWorker: a full resync asked within FULL_RESYNC_COOLDOWN of the last full sync: coalesced into an incremental sync (a request) or deferred (a 410) (WARNING)
	EventLeaseLost             = "lease_lost"           // SyncWorker: a sync stopped because its lease was taken or could not be renewed (WARNING)
	EventUnstorable            = "event_unstorable"     // SyncWorker: an event stored only in part (ERROR)
	EventAuthRevoked           = "auth_revoked"         // any: invalid_grant
	EventRenewRun              = "renew_run"            // RenewChannels: run summary
	EventRenewFailure          = "renew_failure"        // RenewChannels: one item failed
	// Google refuses a grant for another documented reason: the event is
	// the status the grant's calendars get; the line's advice says what to do (ERROR).
	EventDelegationUnauthorized = "delegation_unauthorized" // unauthorized_client after the grace period
	EventScopeMissing           = "auth_scope_missing"      // access_denied, invalid_scope, 403 insufficientPermissions
	EventAPIDisabled            = "api_disabled"            // 403 accessNotConfigured / SERVICE_DISABLED
	EventAdminPolicy            = "admin_policy"            // admin_policy_enforced, org_internal
	EventClientDisabled         = "client_disabled"         // disabled_client
	EventDelegationPending      = "delegation_pending"      // unauthorized_client within a fresh delegation's grace: deferred (WARNING)
	EventChannelRenewed         = "channel_renewed"
	EventChannelCreated         = "channel_created" // RenewChannels/CLI: a calendar got a new channel
	EventChannelStopped         = "channel_stopped" // RenewChannels/CLI: a channel was stopped
	EventStartFailed            = "start_failed"    // any function: config, secret or client failed at start (CRITICAL)
	EventInvalidMessage         = "invalid_message" // SyncWorker: a message that can never be processed, acknowledged (ERROR)
	EventSyncDeferred           = "sync_deferred"   // SyncWorker: rate limited (Google's, or the shared budget's); a delayed request will sync (WARNING)
	EventNotFoundOnce           = "not_found_once"  // SyncWorker/RenewChannels: a 404 that does not (yet) make the calendar not_found (WARNING)
	EventFollowUp               = "follow_up"       // SyncWorker: a push's sync found nothing; one delayed sync asked for
	EventPollOnly               = "poll_only"       // RenewChannels/CLI: a calendar Google will not watch is polled
	EventReaderChanged          = "reader_changed"  // enrollment: a calendar is read with another grant (full resync)
	EventFreeBusyOnly           = "free_busy_only"  // enrollment: a calendar readable as free/busy only: not synced
	EventCalendarBack           = "calendar_back"   // RenewChannels: a not_found calendar answered again: active
	EventPollRun                = "poll_run"        // RenewChannels ?mode=poll: summary
	EventMirrorPurged           = "mirror_purged"   // SyncWorker: an unenrolled calendar's mirror deleted
	EventMirrorExpired          = "mirror_expired"  // RenewChannels: an unwatched calendar's mirror past RETAIN_UNWATCHED_MIRRORS: purge asked
	EventInvalidControl         = "invalid_control" // SyncWorker: a control message refused, acknowledged, nothing changed (ERROR)
	EventControl                = "control"         // SyncWorker: a control message done
	EventDiscovery              = "discovery"       // an identity's calendar list applied (enrolled, unenrolled)
	EventIdentityUnenrolled     = "identity_unenrolled"
	EventDirectorySync          = "directory_sync"           // a Workspace domain's directory diff (users, rooms)
	EventEnrollFailure          = "enroll_failure"           // one enrollment step failed (ERROR)
	EventCalendarCapReached     = "calendar_cap_reached"     // an identity's list keeps more calendars than MAX_CALENDARS_PER_IDENTITY: the rest not enrolled (WARNING)
	EventDirectoryShrinkRefused = "directory_shrink_refused" // a directory diff would unenroll more than DIRECTORY_MAX_UNENROLL_SHARE of a domain's identities: none unenrolled (ERROR, alerted)
	EventNotFound               = "calendar_not_found"       // shared/lifecycle: a persistent 404 streak set a calendar not_found (ERROR)
	EventUnwatched              = "unwatched"                // shared/lifecycle: a calendar nobody follows any more
	EventUnenrolled             = "unenrolled"               // shared/lifecycle: an identity or a domain left enrollment (field target)
	EventDirectoryForbidden     = "directory_forbidden"      // shared/lifecycle: a domain's admin may not read its directory (403 forbidden): the domain's status (ERROR)
	EventDomainBack             = "domain_back"              // shared/lifecycle: a refused domain's directory read again: active
	EventLifecyclePublishFailed = "lifecycle_publish_failed" // a lifecycle message could not be published; its transition is recorded (ERROR, alerted)
	EventConnect                = "connect"                  // Connect: a step of an end user's connect link (outcome: connected, denied, error, bad_link, link_used, unavailable)
)
