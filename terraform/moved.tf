# Where resources written out one by one before issue 20 now live (a map and
# for_each): Terraform moves them in the state on the next plan, so a
# deployment made before keeps every resource, none destroyed or recreated.
# Keep these blocks: removing one makes a deployment that has not applied
# since destroy that resource and create it again. moves_check.py (CI) proves
# the plan against the previous layout is only these moves.

moved {
  from = google_service_account.webhook
  to   = google_service_account.this["webhook"]
}

moved {
  from = google_service_account.sync
  to   = google_service_account.this["sync"]
}

moved {
  from = google_service_account.renew
  to   = google_service_account.this["renew"]
}

moved {
  from = google_service_account.sync_pusher
  to   = google_service_account.this["sync_pusher"]
}

moved {
  from = google_service_account.scheduler
  to   = google_service_account.this["scheduler"]
}

moved {
  from = google_service_account.build
  to   = google_service_account.this["build"]
}

moved {
  from = google_service_account.calendar
  to   = google_service_account.this["calendar"]
}

moved {
  from = google_project_iam_member.sync_firestore
  to   = google_project_iam_member.firestore["sync"]
}

moved {
  from = google_project_iam_member.renew_firestore
  to   = google_project_iam_member.firestore["renew"]
}

moved {
  from = google_cloudfunctions2_function.sync
  to   = google_cloudfunctions2_function.calendar["sync"]
}

moved {
  from = google_cloudfunctions2_function.renew
  to   = google_cloudfunctions2_function.calendar["renew"]
}

moved {
  from = google_cloud_run_service_iam_member.webhook_public
  to   = google_cloud_run_service_iam_member.invoker["webhook"]
}

moved {
  from = google_cloud_run_service_iam_member.sync_pusher_invokes_sync
  to   = google_cloud_run_service_iam_member.invoker["sync"]
}

moved {
  from = google_cloud_run_service_iam_member.scheduler_invokes_renew
  to   = google_cloud_run_service_iam_member.invoker["renew"]
}

moved {
  from = google_pubsub_topic_iam_member.webhook_publishes_notifications
  to   = google_pubsub_topic_iam_member.publishers["webhook_notifications"]
}

moved {
  from = google_pubsub_topic_iam_member.renew_publishes_notifications
  to   = google_pubsub_topic_iam_member.publishers["renew_notifications"]
}

moved {
  from = google_pubsub_topic_iam_member.sync_publishes_notifications
  to   = google_pubsub_topic_iam_member.publishers["sync_notifications"]
}

moved {
  from = google_pubsub_topic_iam_member.sync_publishes_changes
  to   = google_pubsub_topic_iam_member.publishers["sync_changes"]
}

moved {
  from = google_monitoring_alert_policy.invalid_messages
  to   = google_monitoring_alert_policy.log_metric_above_zero["invalid_messages"]
}

moved {
  from = google_monitoring_alert_policy.invalid_controls
  to   = google_monitoring_alert_policy.log_metric_above_zero["invalid_controls"]
}

moved {
  from = google_monitoring_alert_policy.events_unstorable
  to   = google_monitoring_alert_policy.log_metric_above_zero["events_unstorable"]
}

moved {
  from = google_monitoring_alert_policy.token_key_unknown
  to   = google_monitoring_alert_policy.log_metric_above_zero["token_key_unknown"]
}

moved {
  from = google_monitoring_alert_policy.channels_expiring
  to   = google_monitoring_alert_policy.log_metric_above_zero["channels_expiring"]
}

# Issue 24: the Webhook shares a resource with the other public function,
# Connect.
moved {
  from = google_cloudfunctions2_function.webhook
  to   = google_cloudfunctions2_function.public["webhook"]
}
