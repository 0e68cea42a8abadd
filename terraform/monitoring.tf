# Monitoring: log-based metrics from the functions' structured logs, alert
# policies, and a dashboard (dashboard.json.tftpl).
#
# The functions write one JSON line per thing that happened, with "event"
# naming it (shared/logging/fields.go holds every field and event name; the Go
# test in this directory fails if a filter below names one the code does not
# write). Gen2 functions log as Cloud Run revisions named after the function.

locals {
  # Counters: one point per matching line.
  counter_metrics = {
    notifications = {
      description = "Push notifications accepted by the Webhook and published, by X-Goog-Resource-State (sync, exists)."
      filter      = "${local.log_resource.webhook} AND jsonPayload.event=\"notification\""
      labels      = { resource_state = "EXTRACT(jsonPayload.resourceState)" }
    }
    notifications_rejected = {
      description = "Notifications the Webhook refused (forged or malformed: bad channel token, missing headers, a retired version 1 token), by reason (a fixed code: malformed_headers, token_missing, token_malformed, token_unknown_key, token_signature, token_v1_retired). An instance logs at most 20 a second: under a flood this counts lines, and each line's suppressed field the pushes left out."
      filter      = "${local.log_resource.webhook} AND jsonPayload.event=\"notification_rejected\""
      labels      = { reason = "EXTRACT(jsonPayload.reason)" }
    }
    notifications_expired = {
      description = "Verified pushes of channels past their signed expiration plus CHANNEL_EXPIRY_GRACE: answered 200, not published. A steady rate is someone replaying captured pushes of ended channels."
      filter      = "${local.log_resource.webhook} AND jsonPayload.event=\"notification_expired\""
      labels      = {}
    }
    notifications_duplicate = {
      description = "Pushes already published (Webhook: its in-memory window) or already admitted for the calendar (SyncWorker: message numbers recorded in Firestore), acknowledged without a sync, by service. Duplicate deliveries are normal; a burst is a replay."
      filter      = "(${local.log_resource.webhook} OR ${local.log_resource.sync}) AND jsonPayload.event=\"notification_duplicate\""
      labels      = { service = "EXTRACT(resource.labels.service_name)" }
    }
    token_key_unknown = {
      description = "Pushes whose channel token names a key id of the deployment's key history (channel_token_key_history) that the Webhook does not have, answered 503 (Google retries) within UNKNOWN_KEY_RETRY_WINDOW, by key id: a key rotation step rolled out out of order, or a forger naming a known id. Only history ids ever reach this label (other ids are refused 403 and logged as \"unknown\"), and the lines share the Webhook's rejection-line budget (20 a second)."
      filter      = "${local.log_resource.webhook} AND jsonPayload.event=\"token_key_unknown\""
      labels      = { key_id = "EXTRACT(jsonPayload.keyId)" }
    }
    directory_shrink_refused = {
      description = "Directory diffs that would have unenrolled more than DIRECTORY_MAX_UNENROLL_SHARE of a domain's identities and unenrolled none of them, by domain."
      filter      = "${local.log_resource.renew} AND jsonPayload.event=\"directory_shrink_refused\""
      labels      = { domain = "EXTRACT(jsonPayload.domain)" }
    }
    calendar_cap_reached = {
      description = "Listings of an identity's calendar list that kept more calendars than MAX_CALENDARS_PER_IDENTITY: the rest were not enrolled (the line names the identity), by service."
      filter      = "(${local.log_resource.sync} OR ${local.log_resource.renew}) AND jsonPayload.event=\"calendar_cap_reached\""
      labels      = { service = "EXTRACT(resource.labels.service_name)" }
    }
    full_resync_cooldown = {
      description = "Full resyncs held back by FULL_RESYNC_COOLDOWN, by outcome: coalesced (a full_resync request within the cooldown synced incrementally; a 410 always resyncs at once)."
      filter      = "${local.log_resource.sync} AND jsonPayload.event=\"full_resync_cooldown\""
      labels      = { outcome = "EXTRACT(jsonPayload.outcome)" }
    }
    syncs_deferred = {
      description = "Syncs deferred because Google said slow down (403 rateLimitExceeded / userRateLimitExceeded, 429) or the shared call budget was spent: the message was acknowledged and a delayed request will sync. A steady rate means the quotas are too small for the load."
      filter      = "${local.log_resource.sync} AND jsonPayload.event=\"sync_deferred\""
      labels      = {}
    }
    publish_failures = {
      description = "Notifications the Webhook could not publish (answered 503, Google retries)."
      filter      = "${local.log_resource.webhook} AND jsonPayload.event=\"publish_failed\""
      labels      = {}
    }
    syncs = {
      description = "Sync attempts by kind (full, incremental) and outcome (sync = done, sync_error = failed)."
      filter      = "${local.log_resource.sync} AND (jsonPayload.event=\"sync\" OR jsonPayload.event=\"sync_error\")"
      labels = {
        outcome   = "EXTRACT(jsonPayload.event)"
        sync_kind = "EXTRACT(jsonPayload.syncKind)"
      }
    }
    connects = {
      description = "Steps of end users' connect and disconnect links (Connect), by outcome: connected, denied (cancelled at Google), error (a scope not granted, an answer Google's token endpoint refused), bad_link, link_used, disconnected, unavailable (Firestore or Pub/Sub failed: the user saw \"try again\")."
      filter      = "${local.log_resource.connect} AND jsonPayload.event=\"connect\""
      labels      = { outcome = "EXTRACT(jsonPayload.outcome)" }
    }
    connect_unavailable = {
      description = "Steps of end users' links that Connect could not complete (Firestore or Pub/Sub failed; the user saw \"try again\")."
      filter      = "${local.log_resource.connect} AND jsonPayload.event=\"connect\" AND jsonPayload.outcome=\"unavailable\""
      labels      = {}
    }
    sync_errors = {
      description = "Sync errors by reason (most send the message back to Pub/Sub; lease_lost is acknowledged only when a completed round, a live holder or a sync it asked for covers the message)."
      filter      = "${local.log_resource.sync} AND jsonPayload.event=\"sync_error\""
      labels      = { reason = "EXTRACT(jsonPayload.reason)" }
    }
    invalid_messages = {
      description = "Notification messages the SyncWorker can never process (not a push request, bad base64, not JSON, malformed calendar key, unknown resourceState, too large, a push of a subscription not in NOTIFICATION_SUBSCRIPTIONS), acknowledged, by reason."
      filter      = "${local.log_resource.sync} AND jsonPayload.event=\"invalid_message\""
      labels      = { reason = "EXTRACT(jsonPayload.reason)" }
    }
    invalid_controls = {
      description = "Control messages the SyncWorker refused (not JSON, an unknown version, action or field, a bad identity, filter or sealed token, an identity never enrolled, a grant that does not work), acknowledged, nothing changed, by reason."
      filter      = "${local.log_resource.sync} AND jsonPayload.event=\"invalid_control\""
      labels      = { reason = "EXTRACT(jsonPayload.reason)" }
    }
    lifecycle_publish_failures = {
      description = "Lifecycle messages (transitions, control answers) that could not be published on the lifecycle topic; their transitions are recorded, the products were not told, by type."
      filter      = "(${local.log_resource.sync} OR ${local.log_resource.renew}) AND jsonPayload.event=\"lifecycle_publish_failed\""
      labels      = { type = "EXTRACT(jsonPayload.type)" }
    }
    controls = {
      description = "Control messages done, by action (enroll, unenroll, resync)."
      filter      = "${local.log_resource.sync} AND jsonPayload.event=\"control\""
      labels      = { action = "EXTRACT(jsonPayload.action)" }
    }
    discoveries = {
      description = "Calendar lists applied (an identity's calendars enrolled and unenrolled), by service."
      filter      = "(${local.log_resource.sync} OR ${local.log_resource.renew}) AND jsonPayload.event=\"discovery\""
      labels      = { service = "EXTRACT(resource.labels.service_name)" }
    }
    enroll_failures = {
      description = "Enrollment steps that failed (a calendar's channel or first sync, a list channel, a user of a directory), by step and reason; RenewChannels repairs channels in its next run."
      filter      = "(${local.log_resource.sync} OR ${local.log_resource.renew}) AND jsonPayload.event=\"enroll_failure\""
      labels = {
        step   = "EXTRACT(jsonPayload.step)"
        reason = "EXTRACT(jsonPayload.reason)"
      }
    }
    directory_syncs = {
      description = "Workspace directory diffs done (RenewChannels, daily per domain; or calsync enroll --domain), by domain."
      filter      = "${local.log_resource.any} AND jsonPayload.event=\"directory_sync\""
      labels      = { domain = "EXTRACT(jsonPayload.domain)" }
    }
    leases_lost = {
      description = "Syncs stopped because their lease was taken over or could not be renewed in time (a paused or overloaded SyncWorker), by reason. Nothing was written after the takeover (fenced); a steady rate means LEASE_DURATION is too short for the instances."
      filter      = "${local.log_resource.sync} AND jsonPayload.event=\"lease_lost\""
      labels      = { reason = "EXTRACT(jsonPayload.reason)" }
    }
    events_unstorable = {
      description = "Events Firestore could not hold as Google sent them: stored in part with calsyncProblem, by reason (time_out_of_range, too_large, rejected)."
      filter      = "${local.log_resource.sync} AND jsonPayload.event=\"event_unstorable\""
      labels      = { reason = "EXTRACT(jsonPayload.reason)" }
    }
    full_resyncs = {
      description = "410 Gone from events.list: the sync token died and the calendar was fully resynced."
      filter      = "${local.log_resource.sync} AND jsonPayload.event=\"full_resync\""
      labels      = {}
    }
    auth_revoked = {
      description = "invalid_grant: a user's Calendar grant is gone (revoked or expired); the calendar stops syncing until re-authorised."
      filter      = "${local.log_resource.any} AND jsonPayload.event=\"auth_revoked\""
      labels      = {}
    }
    grants_refused = {
      description = "Google refuses a grant for a documented reason no retry cures (scope missing, API disabled, admin policy, client disabled, delegation not authorised): its calendars stop syncing until someone acts (the line's advice says what to do)."
      filter      = "${local.log_resource.any} AND ${local.grant_refused}"
      labels      = { status = "EXTRACT(jsonPayload.event)" }
    }
    renew_runs = {
      description = "RenewChannels runs that finished (one renew_run summary each)."
      filter      = "${local.log_resource.renew} AND jsonPayload.event=\"renew_run\""
      labels      = {}
    }
    renew_runs_expiring_soon = {
      description = "RenewChannels runs that found active channels within 6 hours of expiry (jsonPayload.expiringSoon > 0): renewal is failing."
      filter      = "${local.log_resource.renew} AND jsonPayload.event=\"renew_run\" AND jsonPayload.expiringSoon>0"
      labels      = {}
    }
    renew_failures = {
      description = "RenewChannels failures by step (renew, create, stop, ... or run: the whole run failed) and reason."
      filter      = "${local.log_resource.renew} AND jsonPayload.event=\"renew_failure\""
      labels = {
        step   = "EXTRACT(jsonPayload.step)"
        reason = "EXTRACT(jsonPayload.reason)"
      }
    }
    channels_renewed = {
      description = "Push channels renewed (a new channel made before the old one expired)."
      filter      = "${local.log_resource.renew} AND jsonPayload.event=\"channel_renewed\""
      labels      = {}
    }
    channels_created = {
      description = "Push channels created for calendars that had none (new or repaired)."
      filter      = "${local.log_resource.renew} AND jsonPayload.event=\"channel_created\""
      labels      = {}
    }
    channels_stopped = {
      description = "Push channels stopped (replaced, orphaned or unwatched)."
      filter      = "${local.log_resource.renew} AND jsonPayload.event=\"channel_stopped\""
      labels      = {}
    }
  }

  # Distributions: one value per matching line, extracted from a field.
  distribution_metrics = {
    sync_lag = {
      description = "Sync lag: from the notification (or the change) to the end of the sync that wrote it, in ms."
      filter      = "${local.log_resource.sync} AND jsonPayload.event=\"sync\""
      value       = "EXTRACT(jsonPayload.lagMs)"
      unit        = "ms"
      labels      = { sync_kind = "EXTRACT(jsonPayload.syncKind)" }
      # 10 ms x 1.5^40: up to about 30 hours.
      buckets = { count = 40, growth = 1.5, scale = 10 }
    }
    sync_duration = {
      description = "Duration of one sync, in ms."
      filter      = "${local.log_resource.sync} AND jsonPayload.event=\"sync\""
      value       = "EXTRACT(jsonPayload.durationMs)"
      unit        = "ms"
      labels      = { sync_kind = "EXTRACT(jsonPayload.syncKind)" }
      buckets     = { count = 40, growth = 1.5, scale = 10 }
    }
    events_written = {
      description = "Events changed (created or updated) in Firestore by one sync, each one a change message."
      filter      = "${local.log_resource.sync} AND jsonPayload.event=\"sync\""
      value       = "EXTRACT(jsonPayload.written)"
      unit        = "1"
      labels      = {}
      buckets     = { count = 24, growth = 2, scale = 1 }
    }
    events_deleted = {
      description = "Events deleted from the mirror by one sync, each one a change message."
      filter      = "${local.log_resource.sync} AND jsonPayload.event=\"sync\""
      value       = "EXTRACT(jsonPayload.deleted)"
      unit        = "1"
      labels      = {}
      buckets     = { count = 24, growth = 2, scale = 1 }
    }
    polls_deferred = {
      description = "Poll-only calendars (holiday, birthday) a poll run held back because their last sync is within POLL_MIN_INTERVAL: the cost guard at work, per run."
      filter      = "${local.log_resource.renew} AND jsonPayload.event=\"poll_run\""
      value       = "EXTRACT(jsonPayload.pollsDeferred)"
      unit        = "1"
      labels      = {}
      buckets     = { count = 24, growth = 2, scale = 1 }
    }
    notification_latency = {
      description = "Webhook time to verify and publish one notification, in µs."
      filter      = "${local.log_resource.webhook} AND jsonPayload.event=\"notification\""
      value       = "EXTRACT(jsonPayload.latencyUs)"
      unit        = "us"
      labels      = {}
      buckets     = { count = 30, growth = 1.5, scale = 100 }
    }
  }

  # metric.type of each log-based metric, by key.
  metric_type = merge(
    { for k, m in google_logging_metric.counter : k => "logging.googleapis.com/user/${m.name}" },
    { for k, m in google_logging_metric.distribution : k => "logging.googleapis.com/user/${m.name}" },
  )
}

resource "google_logging_metric" "counter" {
  for_each = local.counter_metrics

  project     = var.project_id
  name        = "${var.name_prefix}/${each.key}"
  description = each.value.description
  filter      = each.value.filter

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "calsync ${replace(each.key, "_", " ")}"

    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.key
        value_type = "STRING"
      }
    }
  }

  label_extractors = each.value.labels

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "distribution" {
  for_each = local.distribution_metrics

  project         = var.project_id
  name            = "${var.name_prefix}/${each.key}"
  description     = each.value.description
  filter          = each.value.filter
  value_extractor = each.value.value

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = each.value.unit
    display_name = "calsync ${replace(each.key, "_", " ")}"

    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.key
        value_type = "STRING"
      }
    }
  }

  label_extractors = each.value.labels

  bucket_options {
    exponential_buckets {
      num_finite_buckets = each.value.buckets.count
      growth_factor      = each.value.buckets.growth
      scale              = each.value.buckets.scale
    }
  }

  depends_on = [google_project_service.this]
}

# --- Alerts ----------------------------------------------------------------
# Every condition sums across time series first (no group_by): a new revision
# starts new series, which must not look like the old ones going absent.

resource "google_monitoring_alert_policy" "dead_letters" {
  project               = var.project_id
  display_name          = "calsync: notifications dead-lettered"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "Messages waiting in ${google_pubsub_subscription.dead_letter_hold.name}"
    condition_threshold {
      filter          = "resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${google_pubsub_subscription.dead_letter_hold.name}\" AND metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_MAX"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      A notification failed ${var.dead_letter_max_delivery_attempts} deliveries to the SyncWorker and was moved to the dead-letter topic.
      Look at the SyncWorker's sync_error lines, then at the messages:
      `gcloud pubsub subscriptions pull ${google_pubsub_subscription.dead_letter_hold.name} --limit=10 --project=${var.project_id}`.
      Once fixed, the next reconcile (RenewChannels) syncs the calendar anyway; ack or seek the dead letters away.
    EOT
  }
}

resource "google_monitoring_alert_policy" "sync_error_rate" {
  project               = var.project_id
  display_name          = "calsync: sync error rate"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "Failed syncs above ${var.sync_error_ratio_threshold * 100}% over 15 minutes"
    condition_threshold {
      # Errors over all attempts (sync + sync_error) from the same metric, so
      # the ratio is defined even when every sync fails.
      filter             = "resource.type=\"cloud_run_revision\" AND metric.type=\"${local.metric_type["syncs"]}\" AND metric.labels.outcome=\"sync_error\""
      denominator_filter = "resource.type=\"cloud_run_revision\" AND metric.type=\"${local.metric_type["syncs"]}\""
      comparison         = "COMPARISON_GT"
      threshold_value    = var.sync_error_ratio_threshold
      duration           = "0s"
      aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
      denominator_aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "SyncWorker syncs are failing. Read the sync_error lines of ${local.fn.sync} in Logging (field error, calendarKey). Calendar quota (403/429) and Firestore contention show there too."
  }
}

# Alerts that fire when a log-based metric counts anything in a period: one
# line of these events is already worth a look. By key: the alert's title,
# its condition's name, the metric (local.metric_type key), the alignment
# period and what to do (documentation).
locals {
  log_metric_alerts = {
    invalid_messages = {
      display_name = "calsync: invalid notification messages"
      condition    = "invalid_message logged by the SyncWorker"
      metric       = "invalid_messages"
      period       = "300s"
      content      = "Only calsync publishes to the notifications topic, so a message the SyncWorker cannot process is a bug or a foreign publisher. It was acknowledged (never redelivered) and not synced. Read the invalid_message lines of ${local.fn.sync} in Logging (reason, messageId, subscription, calendarKey); if a calendar's notification was lost, `go run ./scripts/calsync resync --calendar ID` or the next reconcile syncs it."
    }
    invalid_controls = {
      display_name = "calsync: invalid control messages"
      condition    = "invalid_control logged by the SyncWorker"
      metric       = "invalid_controls"
      period       = "300s"
      content      = "A product backend published a control message calsync cannot do; it was acknowledged and changed nothing. Read the invalid_control lines of ${local.fn.sync} in Logging (reason, action, requestId, subject or credentialId) and tell the product's owners: the reasons are listed in shared/messages/README.md."
    }
    lifecycle_publish_failures = {
      display_name = "calsync: lifecycle messages not published"
      condition    = "lifecycle_publish_failed logged by the SyncWorker or RenewChannels"
      metric       = "lifecycle_publish_failures"
      period       = "300s"
      content      = "A transition (an identity enrolled or in an auth problem, a calendar added, removed or synced for the first time, a control message answered) was recorded but its lifecycle message could not be published, so the products subscribed to the lifecycle topic were not told. Read the lifecycle_publish_failed lines (type, tenant, identityKey, calendarKey, error): check the lifecycle topic exists and the function's service account may publish to it, then tell the product's owners which identities to look at."
    }
    connect_unavailable = {
      display_name = "calsync: end users could not connect"
      condition    = "Connect answered an end user \"try again\" (outcome unavailable)"
      metric       = "connect_unavailable"
      period       = "300s"
      content      = "The Connect function could not complete a step of an end user's connect or disconnect link because Firestore or Pub/Sub failed; the user saw \"Please try again\" and their link may be spent (the product must give them a new one). Read the connect lines of ${local.fn.connect} with outcome unavailable (error) in Logging."
    }
    events_unstorable = {
      display_name = "calsync: events stored only in part"
      condition    = "event_unstorable logged by the SyncWorker"
      metric       = "events_unstorable"
      period       = "300s"
      content      = "An event could not be stored in Firestore as Google sent it. It is in the mirror in part, flagged with the field calsyncProblem (the change feed carried it whole), and the calendar keeps syncing. Read the event_unstorable lines of ${local.fn.sync} (calendarKey, eventId, reason)."
    }
    token_key_unknown = {
      display_name = "calsync: channel tokens signed with a key the Webhook does not have"
      condition    = "token_key_unknown logged by the Webhook"
      metric       = "token_key_unknown"
      period       = "300s"
      content      = "The Webhook received pushes whose channel token names a key id of this deployment's key history (channel_token_key_history, label key_id) that it does not have, and answers them 503, so Google retries, for ${var.unknown_key_retry_window} after it first saw that id; after that they are refused (403) and lost until the next reconcile. A rotation step went out of order: put the key back into the channel-token-keys secret and roll it out (README: Rotating keys); `go run ./scripts/calsync keys` shows which key ids live channels use. If no live channel uses that id, someone is forging tokens with a known id: they are refused either way. Key ids outside the history never raise this alert (403, notifications_rejected, key id \"unknown\")."
    }
    directory_shrink_refused = {
      display_name = "calsync: a directory diff refused to unenroll a domain's users"
      condition    = "directory_shrink_refused logged by RenewChannels"
      metric       = "directory_shrink_refused"
      period       = "3600s"
      content      = "A domain's directory listing succeeded but left out more than ${var.directory_max_unenroll_share * 100}% of the users calsync follows there, so RenewChannels unenrolled none of them (it still enrolls new users, and retries every ${var.directory_sync_interval}). Usually the impersonated admin's rights were narrowed (an admin role limited to one organisational unit): restore them. Read the directory_shrink_refused line of ${local.fn.renew} (domain, wouldUnenroll, identities, allowed, users). If the directory really shrank, apply it once: `go run ./scripts/calsync enroll --domain DOMAIN --admin ADMIN --allow-shrink`."
    }
    channels_expiring = {
      display_name = "calsync: push channels within 6 hours of expiry"
      condition    = "A renew run reported channels expiring within 6 hours"
      metric       = "renew_runs_expiring_soon"
      period       = "3600s"
      content      = "Channels are normally renewed ${var.renew_before} before they expire; some are now within 6 hours of it, so renewals have been failing for most of a day. Read the renew_failure lines of ${local.fn.renew} (step, reason, calendarKey). When a channel expires its calendar only syncs on reconciles."
    }
  }
}

resource "google_monitoring_alert_policy" "log_metric_above_zero" {
  for_each = local.log_metric_alerts

  project               = var.project_id
  display_name          = each.value.display_name
  combiner              = "OR"
  notification_channels = var.alert_notification_channels
  user_labels           = local.labels

  conditions {
    display_name = each.value.condition
    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND metric.type=\"${local.metric_type[each.value.metric]}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = each.value.period
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = each.value.content
  }
}

resource "google_monitoring_alert_policy" "renew_not_running" {
  project               = var.project_id
  display_name          = "calsync: no RenewChannels run in 3 hours"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "No renew_run summary logged for 3 hours"
    condition_absent {
      filter   = "resource.type=\"cloud_run_revision\" AND metric.type=\"${local.metric_type["renew_runs"]}\""
      duration = "10800s"
      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "RenewChannels has not finished a run for 3 hours: channels will expire silently. Check the Cloud Scheduler job ${google_cloud_scheduler_job.renew.name} (last attempt, status) and the function's logs (${local.fn.renew})."
  }
}

locals {
  # The refusals shared/lifecycle gives their own status (the event is the
  # status; a domain's directory refused too, directory_forbidden its own).
  grant_refused = join("", [
    "(jsonPayload.event=\"delegation_unauthorized\" OR jsonPayload.event=\"auth_scope_missing\" OR ",
    "jsonPayload.event=\"api_disabled\" OR jsonPayload.event=\"admin_policy\" OR jsonPayload.event=\"client_disabled\" OR ",
    "jsonPayload.event=\"directory_forbidden\")",
  ])
}

resource "google_monitoring_alert_policy" "grant_refused" {
  project               = var.project_id
  display_name          = "calsync: Google refuses a grant (scope, API, policy, delegation)"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "a grant refusal logged"
    condition_matched_log {
      filter = "${local.log_resource.any} AND ${local.grant_refused}"
      label_extractors = {
        status       = "EXTRACT(jsonPayload.event)"
        calendar_key = "EXTRACT(jsonPayload.calendarKey)"
        advice       = "EXTRACT(jsonPayload.advice)"
      }
    }
  }

  alert_strategy {
    notification_rate_limit {
      period = "3600s"
    }
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Google refused the grant of calendar $${log.extracted_label.calendar_key}: status $${log.extracted_label.status}. What to do: $${log.extracted_label.advice} Its calendars stop syncing until then; a delegation_pending WARNING before it means a new delegation Google did not apply within DELEGATION_GRACE."
  }
}

resource "google_monitoring_alert_policy" "auth_revoked" {
  project               = var.project_id
  display_name          = "calsync: a user's Calendar grant was revoked"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "auth_revoked logged"
    condition_matched_log {
      filter = "${local.log_resource.any} AND jsonPayload.event=\"auth_revoked\""
      label_extractors = {
        calendar_key  = "EXTRACT(jsonPayload.calendarKey)"
        credential_id = "EXTRACT(jsonPayload.credentialId)"
      }
    }
  }

  # Log-match conditions need a rate limit; one notification an hour is enough
  # to send someone to the logs.
  alert_strategy {
    notification_rate_limit {
      period = "3600s"
    }
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "OAuth returned invalid_grant for calendar $${log.extracted_label.calendar_key} (credential $${log.extracted_label.credential_id}): the user revoked access (or an app in Testing mode let a 7-day token lapse). Its calendars stop syncing until the user authorises again."
  }
}

resource "google_monitoring_dashboard" "calsync" {
  project = var.project_id
  dashboard_json = templatefile("${path.module}/dashboard.json.tftpl", {
    title        = "calsync (${var.name_prefix})"
    metric       = local.metric_type
    fn           = local.fn
    push_sub     = google_pubsub_subscription.sync_worker.name
    dead_letters = google_pubsub_subscription.dead_letter_hold.name
  })
}
