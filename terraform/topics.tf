# The topics, from topics.tf.json (the copy of log/src/topics.rs that a test keeps equal).
resource "kafka_topic" "tidings" {
  for_each           = local.topics
  name               = each.key
  partitions         = each.value.partitions
  replication_factor = var.replication_factor
  config = {
    "retention.ms"        = tostring(each.value.retention_ms)
    "cleanup.policy"      = each.value.compacted ? "compact" : "delete"
    "min.insync.replicas" = tostring(min(2, var.replication_factor))
  }
}
