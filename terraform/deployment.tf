# Edges and processors on Kubernetes. Every process gets a stable TIDINGS_NODE_ID from its pod
# name (StatefulSet), so a restarted processor takes its partitions back at once and fences
# its previous incarnation.
#
# Resource types are the `_v1` ones: the unversioned names are deprecated in the provider
# version versions.tf pins.

resource "kubernetes_namespace_v1" "tidings" {
  metadata { name = var.namespace }
}

# The passwords, given to the pods as env from here (local.secret_env).
resource "kubernetes_secret_v1" "tidings" {
  metadata {
    name      = "tidings"
    namespace = kubernetes_namespace_v1.tidings.metadata[0].name
  }
  data = merge(
    { jwt_secret = var.jwt_secret },
    var.kafka_sasl_username == "" ? {} : { kafka_sasl_password = var.kafka_sasl_password },
    var.cassandra_username == "" ? {} : { cassandra_password = var.cassandra_password },
  )
}

# CA certificates (and the Cassandra client key) for TLS to the backends, as files: mounted
# at local.backend_tls_dir in every pod, named by the TIDINGS_*_FILE settings.
resource "kubernetes_secret_v1" "backend_tls" {
  count = length(local.backend_tls_files) > 0 ? 1 : 0
  metadata {
    name      = "tidings-backend-tls"
    namespace = kubernetes_namespace_v1.tidings.metadata[0].name
  }
  data = merge(
    var.kafka_ca_pem == "" ? {} : { "kafka-ca.pem" = var.kafka_ca_pem },
    var.cassandra_tls == null ? {} : { "cassandra-ca.pem" = var.cassandra_tls.ca_pem },
    local.cassandra_client_cert ? {
      "cassandra-client.pem" = var.cassandra_tls.client_cert_pem
      "cassandra-client.key" = var.cassandra_client_key_pem
    } : {},
  )
}

locals {
  backend_tls_dir       = "/etc/tidings/backend-tls"
  cassandra_client_cert = var.cassandra_tls != null && try(var.cassandra_tls.client_cert_pem, "") != ""
  # Which files the backend TLS Secret holds: decided from settings that are not secret, so
  # counts and env may depend on it.
  backend_tls_files = concat(
    var.kafka_ca_pem == "" ? [] : ["kafka-ca.pem"],
    var.cassandra_tls == null ? [] : ["cassandra-ca.pem"],
    local.cassandra_client_cert ? ["cassandra-client.pem", "cassandra-client.key"] : [],
  )
  common_env = merge(
    {
      TIDINGS_KAFKA_BROKERS           = var.kafka_brokers_for_pods
      TIDINGS_KAFKA_SECURITY_PROTOCOL = var.kafka_security_protocol
      TIDINGS_CASSANDRA               = var.cassandra_contact_points
      TIDINGS_LOG_FORMAT              = "json"
    },
    var.kafka_sasl_username == "" ? {} : {
      TIDINGS_KAFKA_SASL_MECHANISM = var.kafka_sasl_mechanism
      TIDINGS_KAFKA_SASL_USERNAME  = var.kafka_sasl_username
    },
    var.kafka_ca_pem == "" ? {} : { TIDINGS_KAFKA_CA_FILE = "${local.backend_tls_dir}/kafka-ca.pem" },
    var.cassandra_username == "" ? {} : { TIDINGS_CASSANDRA_USERNAME = var.cassandra_username },
    var.cassandra_tls == null ? {} : { TIDINGS_CASSANDRA_CA_FILE = "${local.backend_tls_dir}/cassandra-ca.pem" },
    local.cassandra_client_cert ? {
      TIDINGS_CASSANDRA_CERT_FILE = "${local.backend_tls_dir}/cassandra-client.pem"
      TIDINGS_CASSANDRA_KEY_FILE  = "${local.backend_tls_dir}/cassandra-client.key"
    } : {},
  )
  # Env from the tidings Secret (variable => key), for every process: never in plain env.
  secret_env = merge(
    var.kafka_sasl_username == "" ? {} : { TIDINGS_KAFKA_SASL_PASSWORD = "kafka_sasl_password" },
    var.cassandra_username == "" ? {} : { TIDINGS_CASSANDRA_PASSWORD = "cassandra_password" },
  )
  # The edges' own certificate (var.edge_tls_secret), mounted whole so a renewal reaches the
  # files, which the edge reloads; probes then speak HTTPS (the kubelet checks no certificate).
  edge_tls_dir = "/etc/tidings/edge-tls"
  edge_tls_env = var.edge_tls_secret == null ? {} : {
    TIDINGS_TLS_CERT = "${local.edge_tls_dir}/tls.crt"
    TIDINGS_TLS_KEY  = "${local.edge_tls_dir}/tls.key"
  }
  edge_scheme = var.edge_tls_secret == null ? "HTTP" : "HTTPS"
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
        dynamic "volume" {
          for_each = length(local.backend_tls_files) > 0 ? [1] : []
          content {
            name = "backend-tls"
            secret {
              secret_name = kubernetes_secret_v1.backend_tls[0].metadata[0].name
            }
          }
        }
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
          dynamic "env" {
            for_each = local.secret_env
            content {
              name = env.key
              value_from {
                secret_key_ref {
                  name = kubernetes_secret_v1.tidings.metadata[0].name
                  key  = env.value
                }
              }
            }
          }
          dynamic "volume_mount" {
            for_each = length(local.backend_tls_files) > 0 ? [1] : []
            content {
              name       = "backend-tls"
              mount_path = local.backend_tls_dir
              read_only  = true
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
        dynamic "volume" {
          for_each = length(local.backend_tls_files) > 0 ? [1] : []
          content {
            name = "backend-tls"
            secret {
              secret_name = kubernetes_secret_v1.backend_tls[0].metadata[0].name
            }
          }
        }
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
          dynamic "env" {
            for_each = local.secret_env
            content {
              name = env.key
              value_from {
                secret_key_ref {
                  name = kubernetes_secret_v1.tidings.metadata[0].name
                  key  = env.value
                }
              }
            }
          }
          dynamic "volume_mount" {
            for_each = length(local.backend_tls_files) > 0 ? [1] : []
            content {
              name       = "backend-tls"
              mount_path = local.backend_tls_dir
              read_only  = true
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
        dynamic "volume" {
          for_each = length(local.backend_tls_files) > 0 ? [1] : []
          content {
            name = "backend-tls"
            secret {
              secret_name = kubernetes_secret_v1.backend_tls[0].metadata[0].name
            }
          }
        }
        dynamic "volume" {
          for_each = var.edge_tls_secret == null ? [] : [var.edge_tls_secret]
          content {
            name = "edge-tls"
            secret {
              secret_name = volume.value
            }
          }
        }
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
          dynamic "env" {
            for_each = local.edge_tls_env
            content {
              name  = env.key
              value = env.value
            }
          }
          dynamic "volume_mount" {
            for_each = var.edge_tls_secret == null ? [] : [1]
            content {
              name       = "edge-tls"
              mount_path = local.edge_tls_dir
              read_only  = true
            }
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
          dynamic "env" {
            for_each = local.secret_env
            content {
              name = env.key
              value_from {
                secret_key_ref {
                  name = kubernetes_secret_v1.tidings.metadata[0].name
                  key  = env.value
                }
              }
            }
          }
          dynamic "volume_mount" {
            for_each = length(local.backend_tls_files) > 0 ? [1] : []
            content {
              name       = "backend-tls"
              mount_path = local.backend_tls_dir
              read_only  = true
            }
          }
          startup_probe {
            http_get {
              path   = "/healthz"
              port   = "http"
              scheme = local.edge_scheme
            }
            period_seconds    = local.probe.startup_period
            failure_threshold = local.probe.startup_failures
          }
          liveness_probe {
            http_get {
              path   = "/healthz"
              port   = "http"
              scheme = local.edge_scheme
            }
            period_seconds    = local.probe.liveness_period
            timeout_seconds   = local.probe.liveness_timeout
            failure_threshold = local.probe.liveness_failures
          }
          # Fails while the log or the store refuses writes, and at once on SIGTERM (drain).
          readiness_probe {
            http_get {
              path   = "/readyz"
              port   = "http"
              scheme = local.edge_scheme
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
    # 443 when the edges speak TLS themselves (var.edge_tls_secret).
    port {
      name        = "http"
      port        = var.edge_tls_secret == null ? 80 : 443
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
