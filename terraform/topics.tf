# The topics, from topics.tf.json (the copy of log/src/topics.rs that a test keeps equal).
# The settings are the ones `tidings migrate` creates a topic with (topics::kafka_config in
# log/src/topics.rs), so whichever of the two creates a topic, the other finds nothing to
# change; `infra/check-terraform.sh --kafka HOST:PORT` checks both orders on a real Kafka.
# var.topic_retention_ms replaces the default retention of the topics it names; the migrate
# job gets the same as TIDINGS_TOPIC_RETENTION (deployment.tf), so both set the same value.
locals {
  retention_ms = { for name, topic in local.topics : name => lookup(var.topic_retention_ms, name, topic.retention_ms) }
}

resource "kafka_topic" "tidings" {
  for_each           = local.topics
  name               = each.key
  partitions         = each.value.partitions
  replication_factor = var.replication_factor
  config = {
    "retention.ms"        = tostring(local.retention_ms[each.key])
    "cleanup.policy"      = each.value.compacted ? "compact" : "delete"
    "min.insync.replicas" = tostring(min(local.min_insync_replicas_cap, var.replication_factor))
  }
  lifecycle {
    # What `tidings migrate` refuses too (topics::RetentionSettings in log/src/topics.rs).
    precondition {
      condition     = alltrue([for name in keys(var.topic_retention_ms) : contains(keys(local.topics), name) && !local.topics[name].compacted])
      error_message = "topic_retention_ms names a topic that is not a Tidings topic, or a compacted one (retention does not apply to it)."
    }
  }
}

# Adopting topics that exist already, e.g. made by `tidings migrate` before Terraform managed
# them (a plain apply would fail on them: "topic already exists"). With
# adopt_existing_topics = true, plan imports every topic of local.topics that is not in the
# state yet and then finds nothing to change, as long as the topic has the settings above.
# Every topic must exist while it is on: importing a missing one fails. Once they are in
# the state their imports do nothing, but turn it off after the apply that adopted them, so
# that a topic added later is created rather than imported. (For one topic,
# `terraform import 'kafka_topic.tidings["NAME"]' NAME` does the same.)
import {
  for_each = { for name, topic in local.topics : name => topic if var.adopt_existing_topics }
  to       = kafka_topic.tidings[each.key]
  id       = each.key
}
