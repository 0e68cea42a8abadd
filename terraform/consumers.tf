# Consumers (var.consumers): the subscriptions of products that read the
# changes or lifecycle topic, so an adopter does not write its own
# subscription, dead letters and IAM. Per consumer: a subscription
# PREFIX-consumer-NAME (pull, or HTTPS push with an OIDC token), filtered to
# one tenant's messages when tenant is set; a dead-letter topic of its own
# with a subscription that keeps its dead letters; the Pub/Sub service
# agent's rights to forward them; the consumer's subscribers on its
# subscription only.

locals {
  consumer_topics = {
    changes   = google_pubsub_topic.changes.id
    lifecycle = google_pubsub_topic.lifecycle.id
  }

  # The subscription's filter: the tenant attribute every change and
  # lifecycle message carries, and the consumer's own filter, both when
  # given. Pub/Sub cannot change a filter in place (a change recreates the
  # subscription) and allows at most 256 bytes.
  consumer_filters = {
    for name, c in var.consumers : name => join(" AND ", concat(
      c.tenant == null ? [] : ["attributes.tenant = \"${c.tenant}\""],
      c.filter == null ? [] : ["(${c.filter})"],
    ))
  }

  # Who may pull from which consumer subscription (key CONSUMER/MEMBER).
  consumer_subscribers = merge([
    for name, c in var.consumers : {
      for member in c.subscribers : "${name}/${member}" => { consumer = name, member = member }
    }
  ]...)
}

resource "google_pubsub_topic" "consumer_dead_letter" {
  for_each = var.consumers

  project = var.project_id
  name    = "${var.name_prefix}-consumer-${each.key}-dead-letter"
  labels  = local.labels

  depends_on = [google_project_service.this]
}

# Dead letters are kept (a topic stores nothing) for the consumer's owner to
# inspect: gcloud pubsub subscriptions pull NAME --auto-ack=false.
resource "google_pubsub_subscription" "consumer_dead_letter_hold" {
  for_each = var.consumers

  project = var.project_id
  name    = "${google_pubsub_topic.consumer_dead_letter[each.key].name}-hold"
  topic   = google_pubsub_topic.consumer_dead_letter[each.key].id
  labels  = local.labels

  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription" "consumer" {
  for_each = var.consumers

  project = var.project_id
  name    = "${var.name_prefix}-consumer-${each.key}"
  topic   = local.consumer_topics[each.value.topic]
  labels  = local.labels

  filter                     = local.consumer_filters[each.key]
  enable_message_ordering    = each.value.ordering
  ack_deadline_seconds       = each.value.ack_deadline_seconds
  message_retention_duration = "604800s"

  dynamic "push_config" {
    for_each = each.value.push_endpoint == null ? [] : [each.value]
    content {
      push_endpoint = push_config.value.push_endpoint

      oidc_token {
        service_account_email = push_config.value.push_service_account
        audience              = push_config.value.push_audience
      }
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.consumer_dead_letter[each.key].id
    max_delivery_attempts = each.value.max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # never expire, however quiet the feed is
  }

  lifecycle {
    # Terraform 1.5 validates a variable without the others: the tenant is
    # checked against var.tenants here.
    precondition {
      condition     = contains(concat(["default"], keys(var.tenants)), coalesce(each.value.tenant, "default"))
      error_message = "consumers[\"${each.key}\"].tenant must be \"default\" or a key of tenants."
    }
    precondition {
      condition     = length(local.consumer_filters[each.key]) <= 256
      error_message = "consumers[\"${each.key}\"]: the subscription filter (tenant and filter) is longer than Pub/Sub's 256 bytes (counted here in characters)."
    }
  }

  depends_on = [google_pubsub_topic_iam_member.pubsub_agent_publishes_consumer_dead_letters]
}

# The Pub/Sub service agent forwards undeliverable messages: publisher on the
# consumer's dead-letter topic, subscriber (to acknowledge) on its subscription.
resource "google_pubsub_topic_iam_member" "pubsub_agent_publishes_consumer_dead_letters" {
  for_each = var.consumers

  project = var.project_id
  topic   = google_pubsub_topic.consumer_dead_letter[each.key].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_acks_consumer_dead_letters" {
  for_each = var.consumers

  project      = var.project_id
  subscription = google_pubsub_subscription.consumer[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "consumer_subscribers" {
  for_each = local.consumer_subscribers

  project      = var.project_id
  subscription = google_pubsub_subscription.consumer[each.value.consumer].name
  role         = "roles/pubsub.subscriber"
  member       = each.value.member
}
