# The three functions (Cloud Run functions, gen2), built from one zip of the
# repository root. Google's Go buildpack builds the package at the root of the
# upload (calsync.go registers Webhook, SyncWorker and RenewChannels), and
# FUNCTION_TARGET (entry_point) picks the one each function serves.

# The source zip is made from an include list, so nothing new leaks in by
# default (tests, test data, the test wing shared/testing, scripts, Terraform):
# go.mod, go.sum, the root registration file, and the non-test Go files of the
# packages the root package is built from. terraform_test.go checks that this
# list is exactly `go list -deps` of the root package and that no deployed
# package imports shared/testing; add a package here when the build needs it.
locals {
  source_packages = [
    "functions/connect",
    "functions/renewchannels",
    "functions/syncworker",
    "functions/webhook",
    "shared/app",
    "shared/calclient",
    "shared/channels",
    "shared/channeltoken",
    "shared/config",
    "shared/connectlink",
    "shared/credentials",
    "shared/enroll",
    "shared/lifecycle",
    "shared/logging",
    "shared/messages",
    "shared/oauthgrant",
    "shared/pubsubx",
    "shared/renewer",
    "shared/sealed",
    "shared/startup",
    "shared/store",
    "shared/syncer",
    "shared/tenant",
  ]
  # fileset, not literal names: a copy of terraform/ alone (validate in a
  # hook) has no files around it.
  source_files = toset(concat(
    tolist(fileset("${path.module}/..", "{go.mod,go.sum,calsync.go}")),
    flatten([
      for p in local.source_packages : [
        for f in fileset("${path.module}/..", "${p}/*.go") : f if !endswith(f, "_test.go")
      ]
    ]),
  ))
}

data "archive_file" "source" {
  type        = "zip"
  output_path = "${path.module}/function-source.zip"

  # The zip's own list of files, for whoever unpacks it; also what keeps the
  # archive valid where terraform/ stands alone (it always has one source).
  source {
    content  = join("\n", sort(local.source_files))
    filename = "SOURCE_FILES.txt"
  }

  dynamic "source" {
    for_each = local.source_files
    content {
      content  = file("${path.module}/../${source.value}")
      filename = source.value
    }
  }
}

resource "google_storage_bucket" "source" {
  project                     = var.project_id
  name                        = "${var.project_id}-${var.name_prefix}-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
  labels                      = local.labels

  depends_on = [google_project_service.this]
}

# Named by the zip's MD5: a code change is a new object name, which changes
# every function's build source, which rebuilds and redeploys them. The
# functions name its generation too (storage_source.generation), so a build
# reads exactly the object Terraform uploaded, not whatever was written under
# that name later by someone else with write access to the bucket.
resource "google_storage_bucket_object" "source" {
  bucket = google_storage_bucket.source.name
  name   = "source-${data.archive_file.source.output_md5}.zip"
  source = data.archive_file.source.output_path
}

# The functions' images, in a repository of calsync's own
# (build_config.docker_repository), so the build account's Artifact Registry
# write is on this repository only (iam.tf), not the project's gcf-artifacts
# or any other.
resource "google_artifact_registry_repository" "functions" {
  project       = var.project_id
  location      = var.region
  repository_id = "${var.name_prefix}-functions"
  format        = "DOCKER"
  description   = "calsync's function images (Cloud Run functions builds)."
  labels        = local.labels

  depends_on = [google_project_service.this]
}

locals {
  common_env = {
    PROJECT_ID = var.project_id
    LOG_LEVEL  = var.log_level
  }

  calendar_env = merge({
    FIRESTORE_DATABASE       = var.firestore_database
    CALENDAR_USER_RATE_LIMIT = tostring(var.calendar_user_rate_limit)
    # Google's per-project quota, held across every instance (the budget is
    # shared through Firestore: CALENDAR_BUDGET stays "shared").
    CALENDAR_PROJECT_RATE_LIMIT = tostring(var.calendar_project_rate_limit)
    CALENDAR_DAILY_LIMIT        = tostring(var.calendar_daily_limit)
    # The most processes calling Calendar at once: every SyncWorker
    # instance, RenewChannels, and one spare (an operator's CLI). Each may
    # then make its share of a fifth of each limit without a Firestore lease.
    CALENDAR_PROCESSES = tostring(var.sync_worker_max_instances + 2)
    NOT_FOUND_ATTEMPTS = tostring(var.not_found_attempts)
    NOT_FOUND_AFTER    = var.not_found_after
    # A cost guard: calendars one identity's list may enroll.
    MAX_CALENDARS_PER_IDENTITY = tostring(var.max_calendars_per_identity)
    # CALENDAR_ENDPOINT stays unset in production (Google's endpoint); it
    # points at the local emulator in development. OAUTH_TOKEN_URL and
    # OAUTH_AUTH_URL keep their defaults (Google's).
    # Domain-wide delegation with the Calendar's scopes signs as this
    # account (iam.tf); the Directory's has its own, RenewChannels' only.
    DELEGATION_SERVICE_ACCOUNT = google_service_account.this["calendar"].email
    # A new delegation can take Google up to 24 h: its unauthorized_client
    # is deferred this long after enrollment before it is a status.
    DELEGATION_GRACE = var.delegation_grace
    },
    # Set together with OAUTH_CLIENT_SECRET (see the functions), or neither.
    { for k, v in { OAUTH_CLIENT_ID = var.oauth_client_id } : k => v if v != "" },
  )
}

# Tenants (issue 23), for the SyncWorker and RenewChannels alike: which
# control subscription speaks for which tenant and what each may enroll
# (TENANTS; the operator's "default" tenant keeps CONTROL_SUBSCRIPTION,
# unrestricted) and where transitions and control replies go
# (LIFECYCLE_TOPIC). How old a control message may be (CONTROL_MAX_AGE) is
# the SyncWorker's alone: it acts on them.
locals {
  tenancy_env = {
    TENANTS = jsonencode([
      for name, t in var.tenants : {
        name                = name
        controlSubscription = local.tenant_control[name].subscription
        domains             = t.domains
        subjects            = t.subjects
        oauth               = t.oauth
      }
    ])
    LIFECYCLE_TOPIC = google_pubsub_topic.lifecycle.name
  }
}

# Secrets mounted as environment variables: which variable, from which
# google_secret_manager_secret.this key (version: var.secret_versions). Lists,
# not maps, so each function keeps its order of mounts.
locals {
  token_keys_secret = { env = "CHANNEL_TOKEN_KEYS", secret = "channel_token_keys" }

  # SyncWorker and RenewChannels both sign channels and open users' grants.
  calendar_secrets = concat(
    [local.token_keys_secret, { env = "CREDENTIAL_PRIVATE_KEYS", secret = "credential_private_keys" }],
    # Legacy AES keys, only until the credentials are migrated (variables.tf).
    var.legacy_credential_keys ? [{ env = "CREDENTIAL_KEYS", secret = "credential_keys" }] : [],
    # OAUTH_CLIENT_ID and OAUTH_CLIENT_SECRET go together (config validation).
    var.oauth_client_id == "" ? [] : [{ env = "OAUTH_CLIENT_SECRET", secret = "oauth_client_secret" }],
  )
}

# The three functions, by key (also the keys of local.fn, of their service
# accounts and of their invokers). What differs between them is here; the
# resources below are the same for all.
locals {
  functions = {
    # Webhook: public HTTP, answers Google's push deliveries. Light and I/O
    # bound (verify an HMAC, publish, wait for the ack), so one vCPU serves 80
    # requests at once in 256Mi; 60s is ample for a publish bounded by
    # PUBLISH_TIMEOUT (10s); 20 instances x 80 = 1,600 deliveries in flight
    # before Google sees 429s and retries.
    webhook = {
      entry_point   = "Webhook"
      description   = "calsync: verifies Google Calendar push notifications and publishes them."
      memory        = "256Mi"
      timeout       = 60
      concurrency   = 80
      min_instances = var.webhook_min_instances
      max_instances = var.webhook_max_instances
      ingress       = "ALLOW_ALL" # Google's push servers are on the internet
      env = merge(local.common_env, {
        NOTIFICATIONS_TOPIC      = google_pubsub_topic.notifications.name
        PUBLISH_TIMEOUT          = var.publish_timeout
        CHANNEL_EXPIRY_GRACE     = var.channel_expiry_grace
        UNKNOWN_KEY_RETRY_WINDOW = var.unknown_key_retry_window
        },
        # Set only when given (variables.tf): the V1 window only during an
        # upgrade's transition; the key history once keys have rotated.
        { for k, v in {
          CHANNEL_TOKEN_V1_UNTIL    = var.channel_token_v1_until
          CHANNEL_TOKEN_KEY_HISTORY = join(",", var.channel_token_key_history)
        } : k => v if v != "" },
      )
      secrets = [local.token_keys_secret]
    }

    # SyncWorker: request concurrency 8 on one vCPU. Syncing is I/O-bound,
    # and a calendar's burst then lands mostly on the instance already
    # syncing it, where the quiet-period check and the in-process dirty flag
    # end the burst's last round early: in the burst benchmark this is the
    # difference between a lag of ~0.5 s and ~1.4 s (shared/syncer/README.md).
    # The Firestore lease still keeps one sync per calendar. 1Gi holds eight
    # syncs' pages (a 100,000-event full sync peaks at ~130 MB). 540s timeout:
    # a full resync of a large calendar with backoff, under the push
    # subscription's 600s ack deadline. 50 instances bound the load on
    # Firestore and the Calendar API (10,000 requests a minute per project).
    # Invoked only by the push subscriptions (pubsub.tf).
    sync = {
      entry_point   = "SyncWorker"
      description   = "calsync: syncs a calendar into Firestore and publishes its changed events."
      memory        = "1Gi"
      timeout       = 540
      concurrency   = var.sync_worker_concurrency
      min_instances = 0
      max_instances = var.sync_worker_max_instances
      # Internal ingress: Cloud Run admits Pub/Sub push (and Cloud Scheduler,
      # Eventarc, Cloud Tasks, Workflows) from the same project when it calls
      # the default run.app URL, as pubsub.tf's push_endpoint does, and
      # refuses the internet ("Restrict network ingress for Cloud Run",
      # Internal: https://cloud.google.com/run/docs/securing/ingress#settings).
      # Cloud Run's IAM check (run.invoker for sync-pusher only) applies on top.
      ingress = "ALLOW_INTERNAL_ONLY"
      env = merge(local.common_env, local.calendar_env, local.tenancy_env, {
        CHANGES_TOPIC   = google_pubsub_topic.changes.name
        CONTROL_MAX_AGE = var.control_max_age
        LEASE_DURATION  = var.lease_duration
        RERUN_INTERVAL  = var.rerun_interval
        QUIET_PERIOD    = var.quiet_period
        RETRY_BUDGET    = var.retry_budget
        MAX_SESSION     = var.sync_max_session
        # Where a sync that used up MAX_SESSION asks for its continuation, a
        # rate-limited one for its deferral, an empty push sync for its follow-up.
        NOTIFICATIONS_TOPIC = google_pubsub_topic.notifications.name
        FOLLOW_UP_DELAY     = var.follow_up_delay
        # A cost guard: one requested full resync per calendar per cooldown.
        FULL_RESYNC_COOLDOWN = var.full_resync_cooldown
        # Enrollment: calendarList pushes and control messages (pubsub.tf)
        # enroll calendars, which the SyncWorker watches at once (hence the
        # channel-token keys, secrets.tf, and WEBHOOK_URL, set below).
        CONTROL_SUBSCRIPTION = local.control_subscription
        CHANNEL_TTL          = var.channel_ttl
        RENEW_BEFORE         = var.renew_before
        DEPLOYMENT           = var.name_prefix
        # Pushes of any other subscription are refused.
        NOTIFICATION_SUBSCRIPTIONS = local.notifications_subscription
      })
      secrets = local.calendar_secrets
    }

    # RenewChannels: one run an hour. A single instance with concurrency 1
    # means two runs never overlap (a Scheduler retry while a run is going
    # gets 429 and retries later); the run's own parallelism is
    # RENEW_CONCURRENCY. 1800s is Cloud Scheduler's longest attempt deadline
    # for HTTP targets, so a longer timeout (gen2 HTTP allows 3600s) would
    # only let a run outlive its caller.
    renew = {
      entry_point   = "RenewChannels"
      description   = "calsync: renews push channels, repairs missing ones, asks for reconcile syncs."
      memory        = "512Mi"
      timeout       = 1800
      concurrency   = 1
      min_instances = 0
      max_instances = 1
      # Internal ingress: reached only by Cloud Scheduler (same project, the
      # default run.app URL, which Cloud Run admits with internal ingress:
      # https://cloud.google.com/run/docs/securing/ingress#settings), with an
      # OIDC token of the scheduler account, the one run.invoker. An operator
      # runs it with `gcloud scheduler jobs run`, not by calling it.
      ingress = "ALLOW_INTERNAL_ONLY"
      env = merge(local.common_env, local.calendar_env, local.tenancy_env, {
        NOTIFICATIONS_TOPIC = google_pubsub_topic.notifications.name
        CHANNEL_TTL         = var.channel_ttl
        RENEW_BEFORE        = var.renew_before
        RECONCILE_AFTER     = var.reconcile_after
        RENEW_CONCURRENCY   = tostring(var.renew_concurrency)
        # Channel ids are unique per project and deployment: two deployments
        # in one project never compute the same id.
        DEPLOYMENT        = var.name_prefix
        POLL_INTERVAL     = var.poll_interval
        POLL_MIN_INTERVAL = var.poll_min_interval
        NOT_FOUND_REPROBE = var.not_found_reprobe
        # Each enrolled Workspace domain's directory is diffed this often.
        DIRECTORY_SYNC_INTERVAL = var.directory_sync_interval
        # A diff never unenrolls more than this share of a domain's identities.
        DIRECTORY_MAX_UNENROLL_SHARE = tostring(var.directory_max_unenroll_share)
        # The diffs read the directory as this account (iam.tf): the only
        # function that may sign as it.
        DIRECTORY_DELEGATION_SERVICE_ACCOUNT = google_service_account.this["directory"].email
        },
        # The public key enrollers seal to: RenewChannels refuses to start if it
        # is not the public half of one of its private keys.
        { for k, v in { CREDENTIAL_PUBLIC_KEY = var.credential_public_key } : k => v if v != "" },
      )
      secrets = local.calendar_secrets
    }
  }
}

# The Webhook has a resource of its own: the other two are given its URL
# (WEBHOOK_URL, the address in every events.watch), and a resource cannot read
# its own instances. Its body is the same as google_cloudfunctions2_function.calendar's.
resource "google_cloudfunctions2_function" "webhook" {
  project     = var.project_id
  location    = var.region
  name        = local.fn.webhook
  description = local.functions.webhook.description
  labels      = local.labels

  build_config {
    runtime         = var.go_runtime
    entry_point     = local.functions.webhook.entry_point
    service_account = google_service_account.this["build"].id
    source {
      storage_source {
        bucket     = google_storage_bucket.source.name
        object     = google_storage_bucket_object.source.name
        generation = google_storage_bucket_object.source.generation
      }
    }
    docker_repository = google_artifact_registry_repository.functions.id
  }

  service_config {
    available_memory                 = local.functions.webhook.memory
    available_cpu                    = "1"
    timeout_seconds                  = local.functions.webhook.timeout
    max_instance_request_concurrency = local.functions.webhook.concurrency
    min_instance_count               = local.functions.webhook.min_instances
    max_instance_count               = local.functions.webhook.max_instances
    ingress_settings                 = local.functions.webhook.ingress
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.this["webhook"].email
    environment_variables            = local.functions.webhook.env

    dynamic "secret_environment_variables" {
      for_each = local.functions.webhook.secrets
      content {
        key        = secret_environment_variables.value.env
        project_id = var.project_id
        secret     = google_secret_manager_secret.this[secret_environment_variables.value.secret].secret_id
        version    = var.secret_versions[secret_environment_variables.value.secret]
      }
    }
  }

  depends_on = [
    google_project_iam_member.build,
    google_project_iam_member.build_reads_sources,
    google_artifact_registry_repository_iam_member.build_pushes_images,
    google_secret_manager_secret_iam_member.readers,
  ]
}

# SyncWorker and RenewChannels: the functions that call Calendar.
resource "google_cloudfunctions2_function" "calendar" {
  for_each = { for k, f in local.functions : k => f if k != "webhook" }

  project     = var.project_id
  location    = var.region
  name        = local.fn[each.key]
  description = each.value.description
  labels      = local.labels

  build_config {
    runtime         = var.go_runtime
    entry_point     = each.value.entry_point
    service_account = google_service_account.this["build"].id
    source {
      storage_source {
        bucket     = google_storage_bucket.source.name
        object     = google_storage_bucket_object.source.name
        generation = google_storage_bucket_object.source.generation
      }
    }
    docker_repository = google_artifact_registry_repository.functions.id
  }

  service_config {
    available_memory                 = each.value.memory
    available_cpu                    = "1"
    timeout_seconds                  = each.value.timeout
    max_instance_request_concurrency = each.value.concurrency
    min_instance_count               = each.value.min_instances
    max_instance_count               = each.value.max_instances
    ingress_settings                 = each.value.ingress
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.this[each.key].email
    # The Webhook's URL, given to Google in every events.watch.
    environment_variables = merge(each.value.env, { WEBHOOK_URL = google_cloudfunctions2_function.webhook.url })

    dynamic "secret_environment_variables" {
      for_each = each.value.secrets
      content {
        key        = secret_environment_variables.value.env
        project_id = var.project_id
        secret     = google_secret_manager_secret.this[secret_environment_variables.value.secret].secret_id
        version    = var.secret_versions[secret_environment_variables.value.secret]
      }
    }
  }

  depends_on = [
    google_project_iam_member.build,
    google_project_iam_member.build_reads_sources,
    google_artifact_registry_repository_iam_member.build_pushes_images,
    google_project_iam_member.firestore,
    google_secret_manager_secret_iam_member.readers,
  ]
}

# Invokers (run.invoker on each function's Cloud Run service, which has the
# function's name). Only the Webhook is public: Google's push servers carry no
# Google identity, and the channel token (an HMAC the Webhook verifies) is its
# authentication. The push subscriptions invoke the SyncWorker as sync_pusher,
# the Scheduler jobs RenewChannels as scheduler.
locals {
  # Every function resource by key, for what applies to all three.
  function_resources = merge({ webhook = google_cloudfunctions2_function.webhook }, google_cloudfunctions2_function.calendar)

  invokers = {
    webhook = "allUsers"
    sync    = google_service_account.this["sync_pusher"].member
    renew   = google_service_account.this["scheduler"].member
  }
}

resource "google_cloud_run_service_iam_member" "invoker" {
  for_each = local.invokers

  project  = var.project_id
  location = local.function_resources[each.key].location
  service  = local.function_resources[each.key].name
  role     = "roles/run.invoker"
  member   = each.value
}
