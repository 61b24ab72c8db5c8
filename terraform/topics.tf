# The topics, from topics.tf.json (the copy of log/src/topics.rs that a test keeps equal).
# The settings are the ones `tidings migrate` creates a topic with (topics::kafka_config in
# log/src/topics.rs), so whichever of the two creates a topic, the other finds nothing to
# change; `infra/check-terraform.sh --kafka HOST:PORT` checks both orders on a real Kafka.
resource "kafka_topic" "tidings" {
  for_each           = local.topics
  name               = each.key
  partitions         = each.value.partitions
  replication_factor = var.replication_factor
  config = {
    "retention.ms"        = tostring(each.value.retention_ms)
    "cleanup.policy"      = each.value.compacted ? "compact" : "delete"
    "min.insync.replicas" = tostring(min(local.min_insync_replicas_cap, var.replication_factor))
  }
}

