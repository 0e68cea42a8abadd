output "webhook_url" {
  description = "The Webhook's URL (WEBHOOK_URL of RenewChannels): the address Google Calendar pushes notifications to."
  value       = google_cloudfunctions2_function.public["webhook"].url
}

output "connect_url" {
  description = "The Connect function's public base URL (CONNECT_URL; connect_url, or its cloudfunctions.net address): where connect links point."
  value       = local.connect_url
}

output "oauth_redirect_uri" {
  description = "The Connect function's redirect URI (CONNECT_URL/callback): add it to the OAuth client oauth_client_id as an authorized redirect URI. That client must be of type \"Web application\" (Google Auth Platform > Clients): only a web client takes redirect URIs (a Desktop client redirects to loopback addresses only), and the same client refreshes every user's token in the SyncWorker and RenewChannels."
  value       = "${local.connect_url}/callback"
}

output "function_names" {
  description = "Names of the four functions (and of their Cloud Run services, the service_name label of their logs)."
  value       = local.fn
}

output "function_uris" {
  description = "Cloud Run (run.app) URIs of the functions. Only the Webhook and Connect answer unauthenticated callers."
  value = {
    webhook = google_cloudfunctions2_function.public["webhook"].service_config[0].uri
    connect = google_cloudfunctions2_function.public["connect"].service_config[0].uri
    sync    = google_cloudfunctions2_function.calendar["sync"].service_config[0].uri
    renew   = google_cloudfunctions2_function.calendar["renew"].service_config[0].uri
  }
}

output "topics" {
  description = "Pub/Sub topic ids: notifications (Webhook, RenewChannels -> SyncWorker), its dead-letter topic, and changes (one message per changed event, ordered per calendar; subscribe with enable_message_ordering)."
  value = {
    notifications = google_pubsub_topic.notifications.id
    dead_letter   = google_pubsub_topic.dead_letter.id
    changes       = google_pubsub_topic.changes.id
  }
}

output "control_topic" {
  description = "The control topic product backends publish control messages to (enroll, unenroll, resync; grant them with control_publishers)."
  value       = google_pubsub_topic.control.id
}

output "tenant_control_topics" {
  description = "Each tenant's control topic, by tenant: where that tenant's publishers (tenants[NAME].publishers) publish its control messages."
  value       = { for name, t in google_pubsub_topic.tenant_control : name => t.id }
}

output "lifecycle_topic" {
  description = "The lifecycle topic: one message per transition of an identity or calendar and a reply to every control message, with tenant and identityKey attributes (subscribe through consumers)."
  value       = google_pubsub_topic.lifecycle.id
}

output "consumer_subscriptions" {
  description = "Each consumer's subscription id, by consumer name: what its subscribers pull from (or what pushes to its endpoint)."
  value       = { for name, s in google_pubsub_subscription.consumer : name => s.id }
}

output "consumer_dead_letter_subscriptions" {
  description = "Each consumer's dead-letter subscription id, by consumer name: messages its subscription failed to deliver max_delivery_attempts times, kept 7 days (gcloud pubsub subscriptions pull ID --auto-ack=false)."
  value       = { for name, s in google_pubsub_subscription.consumer_dead_letter_hold : name => s.id }
}

output "dead_letter_subscription" {
  description = "Subscription that keeps dead-lettered notifications for inspection (gcloud pubsub subscriptions pull)."
  value       = google_pubsub_subscription.dead_letter_hold.id
}

output "secrets" {
  description = "Secret Manager secret ids to add versions to (gcloud secrets versions add ID --data-file=-)."
  value       = { for k, s in google_secret_manager_secret.this : k => s.secret_id }
}

output "service_accounts" {
  description = "Service account emails: one per function, the SyncWorker's push identity, the scheduler's identity and the build account."
  value = {
    webhook     = google_service_account.this["webhook"].email
    sync        = google_service_account.this["sync"].email
    renew       = google_service_account.this["renew"].email
    connect     = google_service_account.this["connect"].email
    sync_pusher = google_service_account.this["sync_pusher"].email
    scheduler   = google_service_account.this["scheduler"].email
    build       = google_service_account.this["build"].email
    calendar    = google_service_account.this["calendar"].email
  }
}

output "calendar_service_account" {
  description = "The Calendar identity for domain-wide delegation: a Workspace admin authorises client_id for delegation_scopes.calendar, and nothing else (Admin console: Security > Access and data control > API controls > Domain-wide delegation)."
  value = {
    email     = google_service_account.this["calendar"].email
    client_id = google_service_account.this["calendar"].unique_id
  }
}

output "directory_service_account" {
  description = "The Directory identity for domain-wide delegation (domains enrolled with enroll --domain): a Workspace admin authorises client_id for delegation_scopes.directory, and nothing else. DIRECTORY_DELEGATION_SERVICE_ACCOUNT of the operator CLI's enroll --domain."
  value = {
    email     = google_service_account.this["directory"].email
    client_id = google_service_account.this["directory"].unique_id
  }
}

# The scopes calsync's delegated tokens carry, per API: exactly the code's
# lists (shared/calclient Scopes, shared/enroll DirectoryScopes; scopes_test.go
# compares them). Google checks delegated scopes exactly: authorising others,
# even broader ones, fails every call with unauthorized_client.
locals {
  delegation_scopes = {
    calendar = [
      "https://www.googleapis.com/auth/calendar.events.readonly",
      "https://www.googleapis.com/auth/calendar.calendarlist.readonly",
    ]
    directory = [
      "https://www.googleapis.com/auth/admin.directory.user.readonly",
      "https://www.googleapis.com/auth/admin.directory.resource.calendar.readonly",
    ]
  }
}

output "delegation_scopes" {
  description = "What a Workspace admin authorises for each delegation account's client id (Admin console: Security > Access and data control > API controls > Domain-wide delegation > Add new), comma-separated as the console's OAuth scopes field takes them: calendar for calendar_service_account.client_id (every delegated calendar), directory for directory_service_account.client_id (a domain enrolled with enroll --domain). Never both for one client id."
  value = {
    calendar  = join(",", local.delegation_scopes.calendar)
    directory = join(",", local.delegation_scopes.directory)
  }
}

output "firestore_database" {
  description = "Firestore database id (FIRESTORE_DATABASE); the functions' Firestore grants are limited to it."
  value       = google_firestore_database.this.name
}

output "credential_public_key" {
  description = "The public key users' refresh tokens are sealed to (CREDENTIAL_PUBLIC_KEY of `calsync connect`, and what a product backend enrolling users needs). Not secret."
  value       = var.credential_public_key
}

output "scheduler_job" {
  description = "Cloud Scheduler job that runs RenewChannels (gcloud scheduler jobs run NAME --location=REGION to run it now)."
  value       = google_cloud_scheduler_job.renew.name
}

output "dashboard_url" {
  description = "The calsync dashboard in the Cloud console."
  value       = "https://console.cloud.google.com/monitoring/dashboards/builder/${element(split("/", google_monitoring_dashboard.calsync.id), 3)}?project=${var.project_id}"
}
