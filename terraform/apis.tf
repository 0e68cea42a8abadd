# The Google APIs calsync needs. disable_on_destroy = false: removing calsync
# must never switch off an API something else in the project may use.
locals {
  services = toset([
    "admin.googleapis.com",            # Admin SDK Directory: users and rooms of an enrolled Workspace domain
    "artifactregistry.googleapis.com", # the functions' container images
    "calendar-json.googleapis.com",    # Google Calendar API (events.list, events.watch)
    "cloudbuild.googleapis.com",       # builds the function source
    "cloudfunctions.googleapis.com",   # Cloud Run functions (gen2)
    "cloudscheduler.googleapis.com",   # the hourly RenewChannels job
    "eventarc.googleapis.com",         # required by the Cloud Functions gen2 API itself
    "firebaserules.googleapis.com",    # the deny-all Firestore security rules (firestore.tf)
    "firestore.googleapis.com",        # the mirror, channels, leases
    "iam.googleapis.com",              # service accounts
    "logging.googleapis.com",          # log-based metrics
    "monitoring.googleapis.com",       # alerts and the dashboard
    "pubsub.googleapis.com",           # notifications, changes, dead letters
    "run.googleapis.com",              # gen2 functions run on Cloud Run
    "secretmanager.googleapis.com",    # keys and the OAuth client secret
  ])
}

resource "google_project_service" "this" {
  for_each = local.services

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
