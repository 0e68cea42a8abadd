# Secret Manager: the secrets exist here, their values do not. Terraform
# creates the empty secrets and who may read each one; an operator adds the
# versions with gcloud (README: deploying from zero), so no key ever lands in
# the Terraform state.
#
# Format of both key lists: KEYID:BASE64[,KEYID:BASE64...] (ids 1-16 of
# [A-Za-z0-9_-], at least 32 bytes of key; credential keys exactly 32). The
# first key signs or encrypts, every key verifies or decrypts. Rotation (README):
#   channel-token-keys: add a version "new,old"; roll it out; wait one channel
#     TTL (7 days) so every live channel token was issued under "new"; add a
#     version "new"; roll it out.
#   credential-keys: add "new,old"; roll it out; re-encrypt the stored
#     credentials (each is rewritten under the first key); add "new".
#   oauth-client-secret: add the new secret in the OAuth client, add a version,
#     roll it out, then delete the old secret in the OAuth client.
# "Roll it out" = set secret_versions to the new version number and apply
# (a new revision starts at once) or, with "latest", wait for new instances.

locals {
  secrets = {
    channel_token_keys  = "${var.name_prefix}-channel-token-keys"
    credential_keys     = "${var.name_prefix}-credential-keys"
    oauth_client_secret = "${var.name_prefix}-oauth-client-secret"
  }
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

# Who reads what, secret by secret:
#   Webhook:       channel-token-keys (verifies the token of every notification)
#   SyncWorker:    credential-keys, oauth-client-secret (refreshes user tokens)
#   RenewChannels: channel-token-keys (signs new channels), credential-keys,
#                  oauth-client-secret (calls events.watch as the user)
locals {
  secret_readers = {
    webhook_channel_token_keys = { secret = "channel_token_keys", member = google_service_account.webhook.member }
    sync_credential_keys       = { secret = "credential_keys", member = google_service_account.sync.member }
    sync_oauth_client_secret   = { secret = "oauth_client_secret", member = google_service_account.sync.member }
    renew_channel_token_keys   = { secret = "channel_token_keys", member = google_service_account.renew.member }
    renew_credential_keys      = { secret = "credential_keys", member = google_service_account.renew.member }
    renew_oauth_client_secret  = { secret = "oauth_client_secret", member = google_service_account.renew.member }
  }
}

resource "google_secret_manager_secret_iam_member" "readers" {
  for_each = local.secret_readers

  project   = var.project_id
  secret_id = google_secret_manager_secret.this[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value.member
}
