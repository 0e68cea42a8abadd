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
    uri         = google_cloudfunctions2_function.calendar["renew"].service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.this["scheduler"].email
      audience              = google_cloudfunctions2_function.calendar["renew"].service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_service_iam_member.invoker]
}

# The poll job: calendars Google will not push for (holiday calendars answer
# events.watch 400 pushNotSupportedForRequestedResource; birthday calendars do
# not report deletions) have no channel and are synced on poll_interval.
# RenewChannels with ?mode=poll only asks for those syncs (one query, one
# request each): seconds. While an hourly run holds the single instance this
# request gets 429 and the job retries; the hourly run asks for the due polls
# itself.
resource "google_cloud_scheduler_job" "poll" {
  project     = var.project_id
  region      = var.region
  name        = "${local.fn.renew}-poll"
  description = "calsync: sync the calendars Google will not push for."
  schedule    = var.poll_schedule
  time_zone   = var.scheduler_time_zone

  # A poll run takes seconds; the deadline still covers the function's
  # timeout, so Scheduler never gives up on a request the function still runs.
  attempt_deadline = "1800s"

  retry_config {
    retry_count          = 2
    min_backoff_duration = "30s"
    max_backoff_duration = "120s"
  }

  http_target {
    http_method = "POST"
    uri         = "${google_cloudfunctions2_function.calendar["renew"].service_config[0].uri}?mode=poll"

    oidc_token {
      service_account_email = google_service_account.this["scheduler"].email
      audience              = google_cloudfunctions2_function.calendar["renew"].service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_service_iam_member.invoker]
}
