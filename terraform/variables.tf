variable "kafka_bootstrap_servers" {
  description = "Kafka brokers Terraform talks to when it creates the topics."
  type        = list(string)
}

variable "kafka_tls" {
  type    = bool
  default = false
}

variable "kafka_brokers_for_pods" {
  description = "TIDINGS_KAFKA_BROKERS as the pods see it (comma-separated)."
  type        = string
}

variable "cassandra_contact_points" {
  description = "TIDINGS_CASSANDRA as the pods see it: comma-separated host:port of Scylla/Cassandra."
  type        = string
}

variable "replication_factor" {
  description = "Replication factor of every topic (3 in production); min.insync.replicas is this, at most 2. The migrate job creates topics with the same (TIDINGS_KAFKA_REPLICATION_FACTOR)."
  type        = number
  default     = 3
  validation {
    condition     = var.replication_factor >= 1 && floor(var.replication_factor) == var.replication_factor
    error_message = "replication_factor must be a whole number, 1 or more."
  }
}

variable "topic_retention_ms" {
  description = "Retention in milliseconds (-1: for ever) of the topics named, replacing their defaults (terraform/topics.tf.json); e.g. { \"tidings.client-events\" = 259200000 }. The migrate job gets the same as TIDINGS_TOPIC_RETENTION. The room log is kept for ever by default: see OPERATIONS.md before shortening it."
  type        = map(number)
  default     = {}
  validation {
    condition     = alltrue([for ms in values(var.topic_retention_ms) : ms == -1 || (ms >= 60000 && floor(ms) == ms)])
    error_message = "Each retention must be -1 (for ever) or a whole number of milliseconds, at least 60000."
  }
}

variable "adopt_existing_topics" {
  description = "Import the Tidings topics that exist already (e.g. made by `tidings migrate`) instead of creating them: see the import block in topics.tf. Every topic must exist while this is on."
  type        = bool
  default     = false
}

variable "cassandra_replication" {
  description = "Replication of the keyspace the migrate job creates (TIDINGS_CASSANDRA_REPLICATION): SimpleStrategy:N, or NetworkTopologyStrategy:DC=N,DC=N with datacenter names as the cluster's snitch reports them. Applies when the keyspace is created; an existing keyspace keeps its replication."
  type        = string
  default     = "SimpleStrategy:3"
  validation {
    condition     = can(regex("^(SimpleStrategy:[1-9][0-9]*|NetworkTopologyStrategy:[A-Za-z0-9_.-]+=[1-9][0-9]*(,[A-Za-z0-9_.-]+=[1-9][0-9]*)*)$", var.cassandra_replication))
    error_message = "cassandra_replication must look like SimpleStrategy:3 or NetworkTopologyStrategy:dc1=3,dc2=3."
  }
}

variable "kubeconfig" {
  type    = string
  default = "~/.kube/config"
}

variable "kube_context" {
  type    = string
  default = null
}

variable "namespace" {
  type    = string
  default = "tidings"
}

variable "image" {
  description = "The tidings container image (see the Dockerfile)."
  type        = string
  default     = "tidings:latest"
}

variable "jwt_secret" {
  description = "HS256 key of client tokens."
  type        = string
  sensitive   = true
}

variable "edge_replicas" {
  description = "Bounds of the edges' autoscaler; min is also the StatefulSet's first size (the HPA owns it from then on)."
  type        = object({ min = number, max = number })
  default     = { min = 2, max = 10 }
}

variable "edge_session_affinity_timeout_seconds" {
  description = "How long the edge service keeps sending a client address to the same edge after its last request (ClientIP affinity, for Socket.IO long polling)."
  type        = number
  default     = 10800
  validation {
    condition     = var.edge_session_affinity_timeout_seconds >= 1 && var.edge_session_affinity_timeout_seconds <= 86400
    error_message = "edge_session_affinity_timeout_seconds must be from 1 to 86400 (Kubernetes' bounds)."
  }
}

variable "processor_replicas" {
  description = "Replicas per processor; each scales on its own through its consumer group (presence reads one partition: more than 1 only stands by)."
  type        = map(number)
  default     = { sequencer = 2, persistence = 2, fanout = 2, typing = 1, presence = 1, inbox = 2 }
}
