# Identities. One service account per function plus one per caller, each
# granted on the one resource it needs (topics, secrets and services carry
# their own bindings in pubsub.tf, secrets.tf and functions.tf). Firestore's
# roles can only be granted on the project, so roles/datastore.user carries an
# IAM condition limiting it to calsync's database. The only project-level
# grants are Firestore's and the build account's.

resource "google_service_account" "webhook" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-webhook"
  display_name = "calsync Webhook runtime"
  description  = "Publishes verified push notifications to the notifications topic."
  depends_on   = [google_project_service.this]
}

resource "google_service_account" "sync" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-sync"
  display_name = "calsync SyncWorker runtime"
  description  = "Syncs calendars into Firestore and publishes changes."
  depends_on   = [google_project_service.this]
}

resource "google_service_account" "renew" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-renew"
  display_name = "calsync RenewChannels runtime"
  description  = "Renews push channels and asks for reconcile syncs."
  depends_on   = [google_project_service.this]
}

# Pub/Sub pushes notifications to the SyncWorker with an OIDC token of this
# account (the trigger identity); it may invoke the SyncWorker and nothing else.
resource "google_service_account" "sync_pusher" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-sync-pusher"
  display_name = "calsync SyncWorker trigger"
  description  = "Identity of the notifications push subscription; run.invoker on the SyncWorker only."
  depends_on   = [google_project_service.this]
}

# Cloud Scheduler calls RenewChannels with an OIDC token of this account.
resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "calsync RenewChannels scheduler"
  description  = "Identity of the hourly Cloud Scheduler job; run.invoker on RenewChannels only."
  depends_on   = [google_project_service.this]
}

# Cloud Build builds the function images as this account instead of the
# project's default compute account.
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-build"
  display_name = "calsync function builds"
  description  = "Builds the calsync functions (Cloud Build)."
  depends_on   = [google_project_service.this]
}

# The minimum a Cloud Run functions build needs: read the staged source (in
# the gcf-v2-sources bucket Cloud Functions manages, hence project level),
# push the image to the gcf-artifacts repository it creates, write build logs.
resource "google_project_iam_member" "build" {
  for_each = toset([
    "roles/artifactregistry.writer",
    "roles/logging.logWriter",
    "roles/storage.objectViewer",
  ])

  project = var.project_id
  role    = each.value
  member  = google_service_account.build.member
}

# Firestore: roles are granted on the project, but an IAM condition on the
# database's resource name limits them to calsync's database (Google's
# per-database access: "Manage databases", Firestore docs, IAM Conditions with
# resource.name == "projects/PROJECT_ID/databases/DATABASE_ID"). Requests for
# documents are checked against the database, and the startsWith clause
# covers a check made against a name below it. Other databases of the
# project (and the (default) one when calsync has its own) stay out of reach.
locals {
  firestore_resource  = "projects/${var.project_id}/databases/${google_firestore_database.this.name}"
  firestore_condition = "resource.name == \"${local.firestore_resource}\" || resource.name.startsWith(\"${local.firestore_resource}/\")"
}

resource "google_project_iam_member" "sync_firestore" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.sync.member

  condition {
    title       = "${var.name_prefix}-firestore-database-only"
    description = "Only calsync's Firestore database."
    expression  = local.firestore_condition
  }
}

resource "google_project_iam_member" "renew_firestore" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.renew.member

  condition {
    title       = "${var.name_prefix}-firestore-database-only"
    description = "Only calsync's Firestore database."
    expression  = local.firestore_condition
  }
}

# Pub/Sub mints the push subscription's OIDC tokens as the service agent. Only
# needed for projects created before April 2021, harmless after, and granted on
# the one account rather than the project.
resource "google_service_account_iam_member" "pubsub_agent_mints_pusher_tokens" {
  service_account_id = google_service_account.sync_pusher.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# The Pub/Sub service agent is named by the project number. It is read from
# the source bucket (which reports it) rather than a google_project data
# source, so `terraform plan` makes no call to Google (CI plans offline).
locals {
  pubsub_agent = "serviceAccount:service-${google_storage_bucket.source.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

# The Calendar identity for domain-wide delegation (calendars with authMode
# "delegation"): SyncWorker and RenewChannels both impersonate this one account
# (IAM Credentials signJwt, no key file) with the Workspace user as subject, so
# a Workspace admin authorises a single client id (output
# calendar_service_account.client_id) for the scopes of output delegation_scopes.
# Token Creator is granted on this account only, to the two functions.
# The functions read it from DELEGATION_SERVICE_ACCOUNT (functions.tf).
resource "google_service_account" "calendar" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-calendar"
  display_name = "calsync Calendar identity (domain-wide delegation)"
  description  = "Impersonated by SyncWorker and RenewChannels to read Workspace users' calendars."
  depends_on   = [google_project_service.this]
}

resource "google_service_account_iam_member" "calendar_impersonators" {
  for_each = {
    sync  = google_service_account.sync.member
    renew = google_service_account.renew.member
  }

  service_account_id = google_service_account.calendar.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = each.value
}
