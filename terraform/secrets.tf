# Secret Manager: the secrets exist here, their values do not. Terraform
# creates the empty secrets and who may read each one; an operator adds the
# versions with gcloud (README: deploying from zero), so no key ever lands in
# the Terraform state.
#
# Formats: KEYID:BASE64[,KEYID:BASE64...] (ids 1-16 of [A-Za-z0-9_-]).
#   channel-token-keys: HMAC keys, at least 32 bytes; the first signs, all
#     verify.
#   credential-private-keys: 32-byte X25519 private keys that open users'
#     sealed refresh tokens (shared/sealed); the first is the current one.
#     Only the SyncWorker and RenewChannels may read it. Enrollers get the
#     public half (var.credential_public_key), never this.
#   credential-keys (legacy_credential_keys only): the AES-256 keys of
#     credentials stored before sealing existed, until they are migrated.
#   oauth-client-secret: the OAuth client's secret.
#   connect-link-keys: each tenant's connect-link HMAC keys, a JSON object
#     {"TENANT": "KEYID:BASE64[,KEYID:BASE64...]"} (keys of at least 32
#     bytes; the tenant's backend signs its links with one, all verify). The
#     operator gives each tenant's backend its own keys; {} while no tenant
#     has connect links.
# Rotation: README.md, "Rotating keys". "Roll it out" = set secret_versions
# to the new version number and apply (a new revision starts at once) or,
# with "latest", wait for new instances.

locals {
  secrets = merge({
    channel_token_keys      = "${var.name_prefix}-channel-token-keys"
    credential_private_keys = "${var.name_prefix}-credential-private-keys"
    oauth_client_secret     = "${var.name_prefix}-oauth-client-secret"
    connect_link_keys       = "${var.name_prefix}-connect-link-keys"
    },
    var.legacy_credential_keys ? { credential_keys = "${var.name_prefix}-credential-keys" } : {},
  )
}

resource "google_secret_manager_secret" "this" {
  for_each = local.secrets

  project   = var.project_id
  secret_id = each.value
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}

# Who reads what, secret by secret (per-secret IAM, nothing project-wide):
#   Webhook:       channel-token-keys (verifies the token of every notification)
#   SyncWorker:    credential-private-keys, oauth-client-secret (refreshes
#                  user tokens); channel-token-keys (signs the channels of
#                  calendars it enrolls from calendarList pushes and control
#                  messages, within seconds instead of at the next hourly
#                  RenewChannels run; it already holds the private keys that
#                  open every user's grant, so this widens nothing that
#                  matters); credential-keys while legacy
#   RenewChannels: channel-token-keys (signs new channels),
#                  credential-private-keys, oauth-client-secret (calls
#                  events.watch as the user; reseals credentials);
#                  credential-keys while legacy (migrates them)
#   Connect:       connect-link-keys (verifies connect links),
#                  oauth-client-secret (exchanges the consent's code); no
#                  private key: it seals to the public one
# Nobody else, operators included: enrolling users takes the public key only.
locals {
  secret_readers = merge({
    webhook_channel_token_keys    = { secret = "channel_token_keys", member = google_service_account.this["webhook"].member }
    sync_credential_private_keys  = { secret = "credential_private_keys", member = google_service_account.this["sync"].member }
    sync_channel_token_keys       = { secret = "channel_token_keys", member = google_service_account.this["sync"].member }
    sync_oauth_client_secret      = { secret = "oauth_client_secret", member = google_service_account.this["sync"].member }
    renew_channel_token_keys      = { secret = "channel_token_keys", member = google_service_account.this["renew"].member }
    renew_credential_private_keys = { secret = "credential_private_keys", member = google_service_account.this["renew"].member }
    renew_oauth_client_secret     = { secret = "oauth_client_secret", member = google_service_account.this["renew"].member }
    connect_connect_link_keys     = { secret = "connect_link_keys", member = google_service_account.this["connect"].member }
    connect_oauth_client_secret   = { secret = "oauth_client_secret", member = google_service_account.this["connect"].member }
    },
    var.legacy_credential_keys ? {
      sync_credential_keys  = { secret = "credential_keys", member = google_service_account.this["sync"].member }
      renew_credential_keys = { secret = "credential_keys", member = google_service_account.this["renew"].member }
    } : {},
  )
}

resource "google_secret_manager_secret_iam_member" "readers" {
  for_each = local.secret_readers

  project   = var.project_id
  secret_id = google_secret_manager_secret.this[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value.member
}
