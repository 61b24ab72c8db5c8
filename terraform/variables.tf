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
  description = "Replication factor of every topic (3 in production)."
  type        = number
  default     = 3
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
  type    = object({ min = number, max = number })
  default = { min = 2, max = 10 }
}

variable "processor_replicas" {
  description = "Replicas per processor; each scales on its own through its consumer group (presence reads one partition: more than 1 only stands by)."
  type        = map(number)
  default     = { sequencer = 2, persistence = 2, fanout = 2, typing = 1, presence = 1, inbox = 2 }
}
