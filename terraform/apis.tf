# The Google APIs calsync needs: those the functions and the operator CLI call,
# and those Terraform manages resources through (apis_test.go holds this list
# against the Go client packages, the addresses in the code and the resource
# types). disable_on_destroy = false: removing calsync must never switch off an
# API something else in the project may use. Service Usage itself must already
# be on for Terraform to enable the others; it is in every new project.
locals {
  services = toset([
    "admin.googleapis.com",                # Admin SDK Directory: users and rooms of an enrolled Workspace domain
    "artifactregistry.googleapis.com",     # the functions' container images
    "calendar-json.googleapis.com",        # Google Calendar API (events.list, events.watch)
    "cloudbuild.googleapis.com",           # builds the function source
    "cloudfunctions.googleapis.com",       # Cloud Run functions (gen2)
    "cloudresourcemanager.googleapis.com", # project-level IAM grants (iam.tf)
    "cloudscheduler.googleapis.com",       # the hourly RenewChannels job
    "eventarc.googleapis.com",             # required by the Cloud Functions gen2 API itself
    "firebaserules.googleapis.com",        # the deny-all Firestore security rules (firestore.tf)
    "firestore.googleapis.com",            # the mirror, channels, leases
    "iam.googleapis.com",                  # service accounts
    "iamcredentials.googleapis.com",       # signJwt: domain-wide delegation without a key file
    "logging.googleapis.com",              # log-based metrics
    "monitoring.googleapis.com",           # alerts and the dashboard
    "pubsub.googleapis.com",               # notifications, changes, dead letters
    "run.googleapis.com",                  # gen2 functions run on Cloud Run
    "secretmanager.googleapis.com",        # keys and the OAuth client secret
    "serviceusage.googleapis.com",         # enabling these (on by default)
    "storage.googleapis.com",              # the source bucket
  ])
}

resource "google_project_service" "this" {
  for_each = local.services

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
