# Pub/Sub: notifications (Webhook and RenewChannels -> SyncWorker), its
# dead-letter topic, and changes (SyncWorker -> consumers).
#
# How the SyncWorker is triggered, and why not with an Eventarc trigger
# (event_trigger in google_cloudfunctions2_function): Eventarc creates and owns
# the Pub/Sub subscription behind the trigger. Neither the Cloud Functions nor
# the Eventarc API lets Terraform set a dead-letter policy or ack deadline on
# it, and its name is only known after creation, so the Pub/Sub service agent's
# subscriber right and the dead-letter policy would need an out-of-band
# `gcloud pubsub subscriptions update` that Eventarc may undo. Granting the
# agent subscriber on the whole project does not help: the policy itself is
# still missing. So this module uses Google's "direct Pub/Sub trigger": a push
# subscription it owns, pushing to the SyncWorker's URL with an OIDC token of
# its own identity (sync_pusher, run.invoker on that one service), with
# exponential-backoff retries and a dead-letter policy, all in Terraform.
#
# The SyncWorker is an HTTP function that reads the push request
# ({"message":{"data","attributes","messageId","publishTime","orderingKey"},
# "subscription":...,"deliveryAttempt":N}) itself, on any path: 204 acks,
# 503 (a failed sync) nacks, so Pub/Sub redelivers with the retry policy below;
# a message that can never be processed is acked (200) with an ERROR
# invalid_message line, counted and alerted on in monitoring.tf, instead of
# being redelivered until it is dead-lettered. (As a CloudEvent function the
# Functions Framework's conversion dropped deliveryAttempt and orderingKey and
# needed the topic in the endpoint's path; the bare URI is enough now.)

resource "google_pubsub_topic" "notifications" {
  project = var.project_id
  name    = local.topic.notifications
  labels  = local.labels

  # Keep a day of messages even if the subscription is recreated.
  message_retention_duration = "86400s"

  depends_on = [google_project_service.this]
}

resource "google_pubsub_topic" "dead_letter" {
  project = var.project_id
  name    = local.topic.dead_letter
  labels  = local.labels

  depends_on = [google_project_service.this]
}

# Dead letters need a subscription to be kept (a topic stores nothing) and to
# be counted: the dead-letter alert watches its num_undelivered_messages.
# Inspect with `gcloud pubsub subscriptions pull ... --auto-ack=false`.
resource "google_pubsub_subscription" "dead_letter_hold" {
  project = var.project_id
  name    = "${local.topic.dead_letter}-hold"
  topic   = google_pubsub_topic.dead_letter.id
  labels  = local.labels

  message_retention_duration = "604800s" # the maximum: 7 days to look at them
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = "" # never expire
  }
}

resource "google_pubsub_subscription" "sync_worker" {
  project = var.project_id
  name    = local.notifications_subscription
  topic   = google_pubsub_topic.notifications.id
  labels  = local.labels

  # Longer than the SyncWorker's 540s timeout, so Pub/Sub never redelivers a
  # message whose sync is still running (600s is Pub/Sub's maximum).
  ack_deadline_seconds       = 600
  message_retention_duration = "604800s"

  push_config {
    # The bare URI: the function serves any path (see the top of this file).
    push_endpoint = google_cloudfunctions2_function.calendar["sync"].service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.this["sync_pusher"].email
      audience              = google_cloudfunctions2_function.calendar["sync"].service_config[0].uri
    }
  }

  # RETRY with exponential backoff (the RETRY_POLICY_RETRY of an Eventarc trigger).
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.dead_letter_max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # never expire, however quiet the calendars are
  }

  depends_on = [
    google_cloud_run_service_iam_member.invoker,
    google_pubsub_topic_iam_member.pubsub_agent_publishes_dead_letters,
  ]
}

# The Pub/Sub service agent forwards undeliverable messages: it must publish
# to the dead-letter topic and subscribe (acknowledge) on the source subscription.
resource "google_pubsub_topic_iam_member" "pubsub_agent_publishes_dead_letters" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_acks_dead_letters" {
  project      = var.project_id
  subscription = google_pubsub_subscription.sync_worker.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

resource "google_pubsub_topic" "changes" {
  project = var.project_id
  name    = local.topic.changes
  labels  = local.labels

  # Consumers that fall behind (or subscribe late) can seek back a week.
  message_retention_duration = "604800s"

  depends_on = [google_project_service.this]
}

# Consumers create their own subscriptions to the changes topic with
# enable_message_ordering = true: the SyncWorker publishes with the calendar
# key as ordering key, so each calendar's changes arrive in order (delivery is
# at least once: deduplicate on eventId and etag). This one is an example,
# created only when changes_example_subscription is set.
resource "google_pubsub_subscription" "changes_example" {
  count = var.changes_example_subscription == "" ? 0 : 1

  project = var.project_id
  name    = var.changes_example_subscription
  topic   = google_pubsub_topic.changes.id
  labels  = local.labels

  enable_message_ordering    = true
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }
}

# Who publishes where: the Webhook and RenewChannels to notifications, the
# SyncWorker to changes (and to notifications: a SyncWorker whose session ran
# out asks for its own continuation), the SyncWorker and RenewChannels to
# lifecycle (both decide transitions). Nothing else.
locals {
  publishers = {
    webhook_notifications = { topic = google_pubsub_topic.notifications.name, account = "webhook" }
    renew_notifications   = { topic = google_pubsub_topic.notifications.name, account = "renew" }
    sync_notifications    = { topic = google_pubsub_topic.notifications.name, account = "sync" }
    sync_changes          = { topic = google_pubsub_topic.changes.name, account = "sync" }
    sync_lifecycle        = { topic = google_pubsub_topic.lifecycle.name, account = "sync" }
    renew_lifecycle       = { topic = google_pubsub_topic.lifecycle.name, account = "renew" }
  }
}

resource "google_pubsub_topic_iam_member" "publishers" {
  for_each = local.publishers

  project = var.project_id
  topic   = each.value.topic
  role    = "roles/pubsub.publisher"
  member  = google_service_account.this[each.value.account].member
}

# The control topic: product backends publish control messages here
# (shared/messages.Control: enroll, unenroll, resync for a subject or a
# sealed credential), with a publisher grant on this topic only
# (var.control_publishers). Its push subscription delivers them to the same
# SyncWorker as notifications; the worker tells them apart by the
# subscription named in the push body (CONTROL_SUBSCRIPTION), which Pub/Sub
# writes, so a product can neither publish notifications nor have a
# notification taken for a control message. A bad message is acknowledged
# with an ERROR invalid_control line (metric and alert in monitoring.tf); one
# that failed for a reason that may pass is redelivered, then dead-lettered.
resource "google_pubsub_topic" "control" {
  project = var.project_id
  name    = local.topic.control
  labels  = local.labels

  message_retention_duration = "604800s"

  depends_on = [google_project_service.this]
}

resource "google_pubsub_subscription" "control" {
  project = var.project_id
  name    = local.control_subscription
  topic   = google_pubsub_topic.control.id
  labels  = local.labels

  ack_deadline_seconds       = 600
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = google_cloudfunctions2_function.calendar["sync"].service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.this["sync_pusher"].email
      audience              = google_cloudfunctions2_function.calendar["sync"].service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.dead_letter_max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_service_iam_member.invoker,
    google_pubsub_topic_iam_member.pubsub_agent_publishes_dead_letters,
  ]
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_acks_control_dead_letters" {
  project      = var.project_id
  subscription = google_pubsub_subscription.control.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

resource "google_pubsub_topic_iam_member" "control_publishers" {
  for_each = toset(var.control_publishers)

  project = var.project_id
  topic   = google_pubsub_topic.control.name
  role    = "roles/pubsub.publisher"
  member  = each.value
}

# Tenants (var.tenants): each has a control topic of its own, which only its
# publishers may publish to, pushed to the SyncWorker exactly as the control
# topic above (same push identity, retries and dead letters). The SyncWorker
# knows a tenant by the subscription named in the push body (TENANTS, set in
# functions.tf, pairs each tenant with its subscription and what it may
# enroll), which Pub/Sub writes: a tenant cannot speak for another, nor for
# the operator's default tenant (the control topic above). The subscription
# repeats google_pubsub_subscription.control's body rather than taking it
# over with a move, so a deployment keeps that subscription (and its
# backlog) untouched; tenants_test.go holds every push subscription to the
# SyncWorker to the same settings.
resource "google_pubsub_topic" "tenant_control" {
  for_each = local.tenant_control

  project = var.project_id
  name    = each.value.topic
  labels  = local.labels

  message_retention_duration = "604800s"

  depends_on = [google_project_service.this]
}

resource "google_pubsub_subscription" "tenant_control" {
  for_each = local.tenant_control

  project = var.project_id
  name    = each.value.subscription
  topic   = google_pubsub_topic.tenant_control[each.key].id
  labels  = local.labels

  ack_deadline_seconds       = 600
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = google_cloudfunctions2_function.calendar["sync"].service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.this["sync_pusher"].email
      audience              = google_cloudfunctions2_function.calendar["sync"].service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.dead_letter_max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_service_iam_member.invoker,
    google_pubsub_topic_iam_member.pubsub_agent_publishes_dead_letters,
  ]
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_acks_tenant_control_dead_letters" {
  for_each = local.tenant_control

  project      = var.project_id
  subscription = google_pubsub_subscription.tenant_control[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# Each tenant's publishers, on that tenant's topic only (key TENANT/MEMBER).
locals {
  tenant_publishers = merge([
    for name, t in var.tenants : {
      for member in t.publishers : "${name}/${member}" => { tenant = name, member = member }
    }
  ]...)
}

resource "google_pubsub_topic_iam_member" "tenant_control_publishers" {
  for_each = local.tenant_publishers

  project = var.project_id
  topic   = google_pubsub_topic.tenant_control[each.value.tenant].name
  role    = "roles/pubsub.publisher"
  member  = each.value.member
}

# The Connect function publishes the enroll of each user who connects through
# a tenant's link on that tenant's control topic (TENANTS' controlTopic), so
# the SyncWorker applies the tenant's own rules to it. Every tenant's topic,
# and no other: not the operator's control topic, nor any other topic.
resource "google_pubsub_topic_iam_member" "connect_publishes_tenant_control" {
  for_each = local.tenant_control

  project = var.project_id
  topic   = google_pubsub_topic.tenant_control[each.key].name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.this["connect"].member
}

# The lifecycle topic: one message per transition of an identity or calendar
# (enrolled, calendar added or removed, initial sync complete, auth problem,
# not found, unenrolled) and a reply to every control message (accepted or
# rejected, with its requestId), attributed with tenant and identityKey like
# change messages. The SyncWorker and RenewChannels publish (local.publishers
# above); products subscribe through var.consumers.
resource "google_pubsub_topic" "lifecycle" {
  project = var.project_id
  name    = local.topic.lifecycle
  labels  = local.labels

  message_retention_duration = "604800s"

  depends_on = [google_project_service.this]
}
