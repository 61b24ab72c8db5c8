# Edges and processors on Kubernetes. Every process gets a stable TIDINGS_NODE_ID from its pod
# name (StatefulSet), so a restarted processor takes its partitions back at once and fences
# its previous incarnation.

resource "kubernetes_namespace" "tidings" {
  metadata { name = var.namespace }
}

resource "kubernetes_secret" "tidings" {
  metadata {
    name      = "tidings"
    namespace = kubernetes_namespace.tidings.metadata[0].name
  }
  data = { jwt_secret = var.jwt_secret }
}

locals {
  common_env = {
    TIDINGS_KAFKA_BROKERS = var.kafka_brokers_for_pods
    TIDINGS_CASSANDRA     = var.cassandra_contact_points
    TIDINGS_LOG_FORMAT    = "json"
  }
}

resource "kubernetes_job" "migrate" {
  depends_on = [kafka_topic.tidings]
  metadata {
    name      = "tidings-migrate"
    namespace = kubernetes_namespace.tidings.metadata[0].name
  }
  spec {
    template {
      metadata {}
      spec {
        restart_policy = "OnFailure"
        container {
          name  = "migrate"
          image = var.image
          args  = ["migrate"]
          dynamic "env" {
            for_each = local.common_env
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
}

resource "kubernetes_stateful_set" "processor" {
  for_each   = var.processor_replicas
  depends_on = [kubernetes_job.migrate]
  metadata {
    name      = "tidings-${each.key}"
    namespace = kubernetes_namespace.tidings.metadata[0].name
  }
  spec {
    service_name = "tidings-${each.key}"
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
          liveness_probe {
            http_get {
              path = "/healthz"
              port = 9100
            }
            period_seconds = 10
          }
          readiness_probe {
            http_get {
              path = "/readyz"
              port = 9100
            }
            period_seconds = 5
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

resource "kubernetes_stateful_set" "edge" {
  depends_on = [kubernetes_job.migrate]
  metadata {
    name      = "tidings-edge"
    namespace = kubernetes_namespace.tidings.metadata[0].name
  }
  spec {
    service_name = "tidings-edge"
    replicas     = var.edge_replicas.min
    selector { match_labels = { app = "tidings-edge" } }
    template {
      metadata { labels = { app = "tidings-edge" } }
      spec {
        termination_grace_period_seconds = 30
        container {
          name  = "edge"
          image = var.image
          args  = ["edge"]
          port { container_port = 8080 }
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
                name = kubernetes_secret.tidings.metadata[0].name
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
          liveness_probe {
            http_get {
              path = "/healthz"
              port = 8080
            }
          }
          readiness_probe {
            http_get {
              path = "/readyz"
              port = 8080
            }
          }
          resources {
            requests = { cpu = "500m", memory = "256Mi" }
            limits   = { memory = "1Gi" }
          }
        }
      }
    }
  }
}

resource "kubernetes_service" "edge" {
  metadata {
    name      = "tidings-edge"
    namespace = kubernetes_namespace.tidings.metadata[0].name
  }
  spec {
    selector = { app = "tidings-edge" }
    port {
      port        = 80
      target_port = 8080
    }
  }
}

resource "kubernetes_horizontal_pod_autoscaler_v2" "edge" {
  metadata {
    name      = "tidings-edge"
    namespace = kubernetes_namespace.tidings.metadata[0].name
  }
  spec {
    min_replicas = var.edge_replicas.min
    max_replicas = var.edge_replicas.max
    scale_target_ref {
      api_version = "apps/v1"
      kind        = "StatefulSet"
      name        = kubernetes_stateful_set.edge.metadata[0].name
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
    namespace = kubernetes_namespace.tidings.metadata[0].name
  }
  spec {
    max_unavailable = "1"
    selector { match_labels = { app = "tidings-edge" } }
  }
}
