# Identities. One service account per function plus one per caller, each
# granted on the one resource it needs (topics, secrets and services carry
# their own bindings in pubsub.tf, secrets.tf and functions.tf). Firestore's
# roles can only be granted on the project, so roles/datastore.user carries an
# IAM condition limiting it to calsync's database. The only project-level
# grants are Firestore's and the build account's.

# One account per runtime and per caller, by key (google_service_account.this):
#   webhook, sync, renew  the three functions' runtimes;
#   sync_pusher           Pub/Sub pushes notifications and control messages to
#                         the SyncWorker with an OIDC token of it (the trigger
#                         identity): run.invoker on the SyncWorker, nothing else;
#   scheduler             Cloud Scheduler calls RenewChannels with an OIDC token
#                         of it: run.invoker on RenewChannels only;
#   build                 Cloud Build builds the function images as it instead
#                         of the project's default compute account;
#   calendar              the domain-wide delegation identity (below).
locals {
  service_accounts = {
    webhook = {
      display_name = "calsync Webhook runtime"
      description  = "Publishes verified push notifications to the notifications topic."
    }
    sync = {
      display_name = "calsync SyncWorker runtime"
      description  = "Syncs calendars into Firestore and publishes changes."
    }
    renew = {
      display_name = "calsync RenewChannels runtime"
      description  = "Renews push channels and asks for reconcile syncs."
    }
    sync_pusher = {
      display_name = "calsync SyncWorker trigger"
      description  = "Identity of the notifications push subscription; run.invoker on the SyncWorker only."
    }
    scheduler = {
      display_name = "calsync RenewChannels scheduler"
      description  = "Identity of the hourly Cloud Scheduler job; run.invoker on RenewChannels only."
    }
    build = {
      display_name = "calsync function builds"
      description  = "Builds the calsync functions (Cloud Build)."
    }
    calendar = {
      display_name = "calsync Calendar identity (domain-wide delegation)"
      description  = "Impersonated by SyncWorker and RenewChannels to read Workspace users' calendars."
    }
  }
}

resource "google_service_account" "this" {
  for_each = local.service_accounts

  project = var.project_id
  # The key with dashes: sync_pusher is PREFIX-sync-pusher.
  account_id   = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  display_name = each.value.display_name
  description  = each.value.description
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
  member  = google_service_account.this["build"].member
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

# The two functions that read and write the mirror.
resource "google_project_iam_member" "firestore" {
  for_each = toset(["sync", "renew"])

  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.this[each.key].member

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
  service_account_id = google_service_account.this["sync_pusher"].name
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
resource "google_service_account_iam_member" "calendar_impersonators" {
  for_each = {
    sync  = google_service_account.this["sync"].member
    renew = google_service_account.this["renew"].member
  }

  service_account_id = google_service_account.this["calendar"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = each.value
}
