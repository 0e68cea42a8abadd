# Cloud Scheduler: RenewChannels every hour, authenticated with an OIDC token of
# its own service account (run.invoker on RenewChannels only, functions.tf).
resource "google_cloud_scheduler_job" "renew" {
  project     = var.project_id
  region      = var.region
  name        = local.fn.renew
  description = "calsync: renew push channels, repair, reconcile."
  schedule    = var.renew_schedule
  time_zone   = var.scheduler_time_zone

  # Cloud Scheduler's maximum for HTTP targets, equal to the function timeout.
  attempt_deadline = "1800s"

  # A failed run (5xx, timeout) is retried a few times with backoff; the next
  # hourly run comes anyway, and renew_before (26h) spans many runs.
  retry_config {
    retry_count          = 3
    min_backoff_duration = "60s"
    max_backoff_duration = "600s"
    max_doublings        = 3
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.renew.service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.renew.service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_service_iam_member.scheduler_invokes_renew]
}
