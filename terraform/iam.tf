# Identities. One service account per function plus one per caller, each
# granted on the one resource it needs (topics, secrets and services carry
# their own bindings in pubsub.tf, secrets.tf and functions.tf). Firestore's
# roles can only be granted on the project, so roles/datastore.user carries an
# IAM condition limiting it to calsync's database. The only project-level
# grants are Firestore's and the build account's (its source read likewise
# conditioned on the source buckets).

# One account per runtime and per caller, by key (google_service_account.this):
#   webhook, sync, renew, connect
#                         the four functions' runtimes;
#   sync_pusher           Pub/Sub pushes notifications and control messages to
#                         the SyncWorker with an OIDC token of it (the trigger
#                         identity): run.invoker on the SyncWorker, nothing else;
#   scheduler             Cloud Scheduler calls RenewChannels with an OIDC token
#                         of it: run.invoker on RenewChannels only;
#   build                 Cloud Build builds the function images as it instead
#                         of the project's default compute account;
#   calendar, directory   the domain-wide delegation identities, one per API
#                         (below).
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
    connect = {
      display_name = "calsync Connect runtime"
      description  = "Serves the connect pages; publishes end users' sealed grants to their tenant's control topic."
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
    directory = {
      display_name = "calsync Directory identity (domain-wide delegation)"
      description  = "Impersonated by RenewChannels to read enrolled Workspace domains' users and rooms."
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

# The minimum a Cloud Run functions build needs, each limited to what it
# is for: read the function source, push the image to calsync's own
# repository (build_config.docker_repository, functions.tf) and write build
# logs (logs can only be granted on the project). Nothing project-wide to
# read or write in Cloud Storage or Artifact Registry.
resource "google_project_iam_member" "build" {
  for_each = toset([
    "roles/logging.logWriter",
  ])

  project = var.project_id
  role    = each.value
  member  = google_service_account.this["build"].member
}

# The source: Cloud Functions copies the zip from calsync's source bucket into
# a staging bucket of its own, gcf-v2-sources-PROJECT_NUMBER-REGION, created
# on the first deploy, and the build fetches it from there (Google's build
# error when it cannot: "Access to bucket gcf-v2-sources-... denied. You must
# grant Storage Object Viewer permission to <the build account>"). A bucket
# that may not exist yet cannot carry a binding, so this is a project-level
# grant with an IAM condition naming the two source buckets (as Firestore's,
# below): their objects, no other bucket's.
locals {
  build_source_buckets = [
    google_storage_bucket.source.name,
    "gcf-v2-sources-${google_storage_bucket.source.project_number}-${var.region}",
  ]
  build_source_condition = join(" || ", flatten([
    for b in local.build_source_buckets : [
      "resource.name == \"projects/_/buckets/${b}\"",
      "resource.name.startsWith(\"projects/_/buckets/${b}/\")",
    ]
  ]))
}

resource "google_project_iam_member" "build_reads_sources" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = google_service_account.this["build"].member

  condition {
    title       = "${var.name_prefix}-build-sources-only"
    description = "Only the function source buckets: calsync's and the one Cloud Functions stages builds in."
    expression  = local.build_source_condition
  }
}

resource "google_artifact_registry_repository_iam_member" "build_pushes_images" {
  project    = var.project_id
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.this["build"].member
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

# The functions that read and write the mirror, and Connect (its links'
# nonces and its consent sessions: connectLinks, connectSessions).
resource "google_project_iam_member" "firestore" {
  for_each = toset(["sync", "renew", "connect"])

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

# Domain-wide delegation (calendars with authMode "delegation", domains
# enrolled with enroll --domain), one account per API, each impersonated by
# the functions that need its API only and authorised by a Workspace admin for
# its API's scopes only (outputs calendar_service_account and
# directory_service_account, delegation_scopes; terraform/README.md,
# "Domain-wide delegation"):
#   calendar   the Calendar's scopes; SyncWorker and RenewChannels sign as
#              it (DELEGATION_SERVICE_ACCOUNT);
#   directory  the Directory's scopes; only RenewChannels signs as it (the
#              daily directory diffs, DIRECTORY_DELEGATION_SERVICE_ACCOUNT).
# The SyncWorker, which handles messages from the internet-facing Webhook and
# product backends, thereby never reads a directory.
#
# The grant is the custom role below, on the account itself, never the
# project: signJwt is all keyless delegation calls (calclient), while Service
# Account Token Creator also mints the account's own access and ID tokens and
# signs blobs, which would reach the account's IAM rights, not only its
# delegation.
resource "google_project_iam_custom_role" "delegation_signer" {
  project     = var.project_id
  role_id     = "${replace(var.name_prefix, "-", "_")}_delegationSigner"
  title       = "calsync delegation signer"
  description = "Sign JWTs as a domain-wide delegation account (IAM Credentials signJwt), nothing else."
  permissions = ["iam.serviceAccounts.signJwt"]

  depends_on = [google_project_service.this]
}

# Who signs as which delegation account (the account's key, the function's).
locals {
  delegation_signers = {
    calendar_sync   = { account = "calendar", signer = "sync" }
    calendar_renew  = { account = "calendar", signer = "renew" }
    directory_renew = { account = "directory", signer = "renew" }
  }
}

resource "google_service_account_iam_member" "delegation_signers" {
  for_each = local.delegation_signers

  service_account_id = google_service_account.this[each.value.account].name
  role               = google_project_iam_custom_role.delegation_signer.name
  member             = google_service_account.this[each.value.signer].member
}
