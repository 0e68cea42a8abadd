# Firestore: calsync's own named database (its IAM grants are limited to it,
# iam.tf), the composite indexes the code's queries need, the TTL policies that
# delete stopped channel rows and old control-request records, and deny-all
# security rules.
#
# The list of required indexes lives with the code, in shared/store/indexes.json;
# terraform_test.go fails if one of them has no google_firestore_index here.

resource "google_firestore_database" "this" {
  project     = var.project_id
  name        = var.firestore_database
  location_id = local.firestore_location
  type        = "FIRESTORE_NATIVE"

  # Point-in-time recovery: 7 days of versions to undo a bad sync or deploy.
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"

  # `terraform destroy` leaves the database and its data (see README:
  # removing it all). Delete it by hand when you mean it.
  deletion_policy = "ABANDON"

  depends_on = [google_project_service.this]
}

# channels where calendarKey == X and state == "active": the live channels of
# one calendar (RenewChannels, before creating or stopping one).
resource "google_firestore_index" "channels_by_calendar_state" {
  project    = var.project_id
  database   = google_firestore_database.this.name
  collection = "channels"

  fields {
    field_path = "calendarKey"
    order      = "ASCENDING"
  }
  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
}

# channels where state == "active" and expiration < T: the channels to renew.
resource "google_firestore_index" "channels_by_state_expiration" {
  project    = var.project_id
  database   = google_firestore_database.this.name
  collection = "channels"

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
  fields {
    field_path = "expiration"
    order      = "ASCENDING"
  }
}

# calendars where status == "active" and lastSyncedAt < T: the quiet calendars
# that get a reconcile sync.
resource "google_firestore_index" "calendars_by_status_last_synced" {
  project    = var.project_id
  database   = google_firestore_database.this.name
  collection = "calendars"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "lastSyncedAt"
    order      = "ASCENDING"
  }
}

# calendars where credentialId == X needs only the automatic single-field index.

# TTL: Firestore deletes a channels document some time (typically within a
# day) after its expireAt timestamp. The code sets expireAt on stopped or
# expired channels, so their rows do not pile up. The field is not queried, so
# its single-field indexes are turned off (empty index_config): indexing a
# monotonically growing timestamp only costs writes.
resource "google_firestore_field" "channels_expire_at_ttl" {
  project    = var.project_id
  database   = google_firestore_database.this.name
  collection = "channels"
  field      = "expireAt"

  ttl_config {}

  index_config {}
}

# TTL: the control path's records (shared/store control.go) expire at
# their expireAt, set past the window in which an old message is still
# accepted (CONTROL_MAX_AGE), so they do not pile up: controlRequests (a
# control message delivered twice is done once) and controlOrder (per
# identity, the last message applied and the one being applied). Not
# queried: no single-field indexes, as for channels.
resource "google_firestore_field" "control_requests_expire_at_ttl" {
  project    = var.project_id
  database   = google_firestore_database.this.name
  collection = "controlRequests"
  field      = "expireAt"

  ttl_config {}

  index_config {}
}

resource "google_firestore_field" "control_order_expire_at_ttl" {
  project    = var.project_id
  database   = google_firestore_database.this.name
  collection = "controlOrder"
  field      = "expireAt"

  ttl_config {}

  index_config {}
}

# Security rules: deny everything. calsync's functions use the server client
# libraries, which IAM governs and rules do not; rules govern the mobile and
# web SDKs, and no such client may read the mirror or the sealed
# credentials, or write anything. A release names the database it applies
# to: cloud.firestore/DATABASE_ID (gcloud firebase security-rules release).
resource "google_firebaserules_ruleset" "deny_all" {
  project = var.project_id

  source {
    files {
      name    = "firestore.rules"
      content = <<-EOT
        rules_version = '2';
        service cloud.firestore {
          match /databases/{database}/documents {
            match /{document=**} {
              allow read, write: if false;
            }
          }
        }
      EOT
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_firebaserules_release" "firestore" {
  project      = var.project_id
  name         = "cloud.firestore/${google_firestore_database.this.name}"
  ruleset_name = "projects/${var.project_id}/rulesets/${google_firebaserules_ruleset.deny_all.name}"

  lifecycle {
    # A release only changes by pointing at a new ruleset.
    replace_triggered_by = [google_firebaserules_ruleset.deny_all]
  }
}
