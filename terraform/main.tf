# calsync on Google Cloud. Resources live one file per concern (see README.md);
# this file holds the names shared by several of them. The function names are
# also the names of their Cloud Run services and the service_name of their logs.
locals {
  fn = {
    webhook = "${var.name_prefix}-webhook"
    sync    = "${var.name_prefix}-sync-worker"
    renew   = "${var.name_prefix}-renew-channels"
    connect = "${var.name_prefix}-connect"
  }

  # The Connect function's public base URL (CONNECT_URL): a custom domain
  # (var.connect_url) or the function's own cloudfunctions.net address, which
  # Cloud Functions (2nd gen) derives from region, project and name. Computed
  # here, not read from the function's url, which it is given: a function
  # cannot take its own attribute.
  connect_url = var.connect_url != "" ? var.connect_url : "https://${var.region}-${var.project_id}.cloudfunctions.net/${local.fn.connect}"

  topic = {
    notifications = "${var.name_prefix}-notifications"
    dead_letter   = "${var.name_prefix}-notifications-dead-letter"
    changes       = "${var.name_prefix}-changes"
    control       = "${var.name_prefix}-control"
    lifecycle     = "${var.name_prefix}-lifecycle"
  }

  # The push subscriptions to the SyncWorker, named here: the SyncWorker is
  # told their names (CONTROL_SUBSCRIPTION, NOTIFICATION_SUBSCRIPTIONS: it
  # accepts pushes of these only) and they push to the SyncWorker, so a
  # reference either way would be a cycle.
  control_subscription       = "${var.name_prefix}-control-push"
  notifications_subscription = "${local.fn.sync}-push"

  # Each tenant's control topic and its push subscription to the SyncWorker
  # (named in TENANTS for the same reason).
  tenant_control = {
    for name in keys(var.tenants) : name => {
      topic        = "${var.name_prefix}-control-${name}"
      subscription = "${var.name_prefix}-control-${name}-push"
    }
  }

  firestore_location = coalesce(var.firestore_location, var.region)

  labels = merge(var.labels, { app = "calsync" })

  # Log-based metrics and alerts read the functions' structured logs: gen2
  # functions log as Cloud Run revisions named after the function.
  log_resource = {
    webhook = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.fn.webhook}\""
    sync    = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.fn.sync}\""
    renew   = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.fn.renew}\""
    connect = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.fn.connect}\""
    any     = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(\"${local.fn.webhook}\" OR \"${local.fn.sync}\" OR \"${local.fn.renew}\" OR \"${local.fn.connect}\")"
  }
}
