# Edges and processors on Kubernetes. Every process gets a stable TIDINGS_NODE_ID from its pod
# name (StatefulSet), so a restarted processor takes its partitions back at once and fences
# its previous incarnation.
#
# Resource types are the `_v1` ones: the unversioned names are deprecated in the provider
# version versions.tf pins.

resource "kubernetes_namespace_v1" "tidings" {
  metadata { name = var.namespace }
}

resource "kubernetes_secret_v1" "tidings" {
  metadata {
    name      = "tidings"
    namespace = kubernetes_namespace_v1.tidings.metadata[0].name
  }
  data = { jwt_secret = var.jwt_secret }
}

locals {
  common_env = {
    TIDINGS_KAFKA_BROKERS = var.kafka_brokers_for_pods
    TIDINGS_CASSANDRA     = var.cassandra_contact_points
    TIDINGS_LOG_FORMAT    = "json"
  }
  # What only `migrate` reads: how many replicas the topics and the keyspace it creates get,
  # and the topics' retention.
  # The topics' factor is the one kafka_topic.tidings uses, so a topic made by either has the
  # same settings (`infra/check-terraform.sh --kafka` checks it).
  migrate_env = merge(local.common_env, {
    TIDINGS_KAFKA_REPLICATION_FACTOR = tostring(var.replication_factor)
    TIDINGS_CASSANDRA_REPLICATION    = var.cassandra_replication
    TIDINGS_TOPIC_RETENTION          = join(",", [for name, ms in var.topic_retention_ms : "${name}=${ms}"])
  })
  # Probe timings shared by every process. /readyz checks the log and the store within 3 s,
  # so its timeout must be longer than that (Kubernetes' default is 1 s). A process serves its
  # probes only once it has reached Kafka and Cassandra, which it keeps retrying: the startup
  # probe gives it 5 minutes before liveness applies.
  probe = {
    startup_period    = 5
    startup_failures  = 60
    liveness_period   = 10
    liveness_timeout  = 2
    liveness_failures = 3
    readiness_period  = 5
    readiness_timeout = 4
  }
}

resource "kubernetes_job_v1" "migrate" {
  depends_on = [kafka_topic.tidings]
  metadata {
    name      = "tidings-migrate"
    namespace = kubernetes_namespace_v1.tidings.metadata[0].name
  }
  spec {
    backoff_limit = 10
    template {
      metadata {}
      spec {
        restart_policy = "OnFailure"
        # A one-shot command: no probes; it retries Kafka and Cassandra until they answer, and
        # the job fails after backoff_limit restarts or wait_for_completion's timeout.
        container {
          name  = "migrate"
          image = var.image
          args  = ["migrate"]
          dynamic "env" {
            for_each = local.migrate_env
            content {
              name  = env.key
              value = env.value
            }
          }
        }
      }
    }
  }
  wait_for_completion = true
  timeouts {
    create = "10m"
    update = "10m"
  }
}

# The headless services that give each StatefulSet's pods their DNS names
# (tidings-sequencer-0.tidings-sequencer.<namespace>.svc): a StatefulSet's service_name must
# name one. Not-ready pods are published too, so a stuck processor can still be reached on
# its ops port (/readyz says why, /metrics shows its lag).
resource "kubernetes_service_v1" "processor" {
  for_each = var.processor_replicas
  metadata {
    name      = "tidings-${each.key}"
    namespace = kubernetes_namespace_v1.tidings.metadata[0].name
  }
  spec {
    cluster_ip                  = "None"
    publish_not_ready_addresses = true
    selector                    = { app = "tidings-${each.key}" }
    port {
      name        = "ops"
      port        = 9100
      target_port = "ops"
    }
  }
}

resource "kubernetes_stateful_set_v1" "processor" {
  for_each   = var.processor_replicas
  depends_on = [kubernetes_job_v1.migrate]
  metadata {
    name      = "tidings-${each.key}"
    namespace = kubernetes_namespace_v1.tidings.metadata[0].name
  }
  spec {
    service_name = kubernetes_service_v1.processor[each.key].metadata[0].name
    replicas     = each.value
    selector { match_labels = { app = "tidings-${each.key}" } }
    template {
      metadata { labels = { app = "tidings-${each.key}" } }
      spec {
        container {
          name  = each.key
          image = var.image
          args  = ["processor", each.key]
          # Processors never see a client token: only edges get the JWT secret.
          env {
            name = "TIDINGS_NODE_ID"
            value_from {
              field_ref { field_path = "metadata.name" }
            }
          }
          dynamic "env" {
            for_each = local.common_env
            content {
              name  = env.key
              value = env.value
            }
          }
          # Probes and metrics on a port of their own (edges serve them on the client port).
          env {
            name  = "TIDINGS_OPS_LISTEN"
            value = "0.0.0.0:9100"
          }
          port {
            name           = "ops"
            container_port = 9100
          }
          startup_probe {
            http_get {
              path = "/healthz"
              port = "ops"
            }
            period_seconds    = local.probe.startup_period
            failure_threshold = local.probe.startup_failures
          }
          liveness_probe {
            http_get {
              path = "/healthz"
              port = "ops"
            }
            period_seconds    = local.probe.liveness_period
            timeout_seconds   = local.probe.liveness_timeout
            failure_threshold = local.probe.liveness_failures
          }
          readiness_probe {
            http_get {
              path = "/readyz"
              port = "ops"
            }
            period_seconds  = local.probe.readiness_period
            timeout_seconds = local.probe.readiness_timeout
          }
          resources {
            requests = { cpu = "250m", memory = "128Mi" }
            limits   = { memory = "512Mi" }
          }
        }
      }
    }
  }
}

# The edges' headless service (the StatefulSet's service_name): pod DNS names only. Clients
# go through kubernetes_service_v1.edge.
resource "kubernetes_service_v1" "edge_pods" {
  metadata {
    name      = "tidings-edge-pods"
    namespace = kubernetes_namespace_v1.tidings.metadata[0].name
  }
  spec {
    cluster_ip                  = "None"
    publish_not_ready_addresses = true
    selector                    = { app = "tidings-edge" }
    port {
      name        = "http"
      port        = 8080
      target_port = "http"
    }
  }
}

resource "kubernetes_stateful_set_v1" "edge" {
  depends_on = [kubernetes_job_v1.migrate]
  metadata {
    name      = "tidings-edge"
    namespace = kubernetes_namespace_v1.tidings.metadata[0].name
  }
  spec {
    service_name = kubernetes_service_v1.edge_pods.metadata[0].name
    # The initial count only: from then on the HPA owns it (see lifecycle below).
    replicas = var.edge_replicas.min
    selector { match_labels = { app = "tidings-edge" } }
    template {
      metadata { labels = { app = "tidings-edge" } }
      spec {
        # TIDINGS_DRAIN_TIMEOUT_MS (10 s by default) fits well within it.
        termination_grace_period_seconds = 30
        container {
          name  = "edge"
          image = var.image
          args  = ["edge"]
          port {
            name           = "http"
            container_port = 8080
          }
          env {
            name  = "TIDINGS_LISTEN"
            value = "0.0.0.0:8080"
          }
          env {
            name = "TIDINGS_NODE_ID"
            value_from {
              field_ref { field_path = "metadata.name" }
            }
          }
          env {
            name = "TIDINGS_JWT_SECRET"
            value_from {
              secret_key_ref {
                name = kubernetes_secret_v1.tidings.metadata[0].name
                key  = "jwt_secret"
              }
            }
          }
          dynamic "env" {
            for_each = local.common_env
            content {
              name  = env.key
              value = env.value
            }
          }
          startup_probe {
            http_get {
              path = "/healthz"
              port = "http"
            }
            period_seconds    = local.probe.startup_period
            failure_threshold = local.probe.startup_failures
          }
          liveness_probe {
            http_get {
              path = "/healthz"
              port = "http"
            }
            period_seconds    = local.probe.liveness_period
            timeout_seconds   = local.probe.liveness_timeout
            failure_threshold = local.probe.liveness_failures
          }
          # Fails while the log or the store refuses writes, and at once on SIGTERM (drain).
          readiness_probe {
            http_get {
              path = "/readyz"
              port = "http"
            }
            period_seconds  = local.probe.readiness_period
            timeout_seconds = local.probe.readiness_timeout
          }
          resources {
            requests = { cpu = "500m", memory = "256Mi" }
            limits   = { memory = "1Gi" }
          }
        }
      }
    }
  }
  lifecycle {
    # The HPA scales the edges; an apply must not set them back to edge_replicas.min.
    ignore_changes = [spec[0].replicas]
  }
}

# Clients' entry point. Socket.IO's long-polling transport sends each request of a session
# as a separate HTTP request, and every one must reach the edge that holds the session (a
# WebSocket stays on its one connection). ClientIP affinity pins a client address to one
# edge. It fails where many clients share one address (carrier NAT, a proxy in front of the
# cluster that does not preserve source addresses: then also set external_traffic_policy =
# "Local" on a LoadBalancer service). An ingress controller can pin by cookie instead, which
# is per browser; with ingress-nginx, for example, annotate the Ingress with
#   nginx.ingress.kubernetes.io/affinity            = "cookie"
#   nginx.ingress.kubernetes.io/session-cookie-name = "tidings-edge"
# and route it to this service.
resource "kubernetes_service_v1" "edge" {
  metadata {
    name      = "tidings-edge"
    namespace = kubernetes_namespace_v1.tidings.metadata[0].name
  }
  spec {
    selector         = { app = "tidings-edge" }
    session_affinity = "ClientIP"
    session_affinity_config {
      client_ip {
        timeout_seconds = var.edge_session_affinity_timeout_seconds
      }
    }
    port {
      name        = "http"
      port        = 80
      target_port = "http"
    }
  }
}

resource "kubernetes_horizontal_pod_autoscaler_v2" "edge" {
  metadata {
    name      = "tidings-edge"
    namespace = kubernetes_namespace_v1.tidings.metadata[0].name
  }
  spec {
    min_replicas = var.edge_replicas.min
    max_replicas = var.edge_replicas.max
    scale_target_ref {
      api_version = "apps/v1"
      kind        = "StatefulSet"
      name        = kubernetes_stateful_set_v1.edge.metadata[0].name
    }
    metric {
      type = "Resource"
      resource {
        name = "cpu"
        target {
          type                = "Utilization"
          average_utilization = 70
        }
      }
    }
  }
}

resource "kubernetes_pod_disruption_budget_v1" "edge" {
  metadata {
    name      = "tidings-edge"
    namespace = kubernetes_namespace_v1.tidings.metadata[0].name
  }
  spec {
    max_unavailable = "1"
    selector { match_labels = { app = "tidings-edge" } }
  }
}
