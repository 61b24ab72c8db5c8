terraform {
  # 1.7: import blocks with for_each (topics.tf).
  required_version = ">= 1.7"
  required_providers {
    # Exactly the versions infra/check-terraform.sh builds and validates against.
    kafka = {
      source  = "Mongey/kafka"
      version = "0.13.1"
    }
    # The check builds this from Go module version v1.13.4-0.20260821094251-3a33fb6cc605
    # (the module path has no /v3 suffix, so its 3.x tags have no Go version of their own):
    # the 3.2.1 tag plus a gRPC dependency update, the same resources and schema as 3.2.1.
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "3.2.1"
    }
  }
}

provider "kafka" {
  bootstrap_servers = var.kafka_bootstrap_servers
  tls_enabled       = var.kafka_tls
  ca_cert           = var.kafka_ca_pem == "" ? null : var.kafka_ca_pem
  # The pods' SASL user, if any, creates the topics too.
  sasl_username  = var.kafka_sasl_username == "" ? null : var.kafka_sasl_username
  sasl_password  = var.kafka_sasl_username == "" ? null : var.kafka_sasl_password
  sasl_mechanism = var.kafka_sasl_username == "" ? null : lower(replace(var.kafka_sasl_mechanism, "SCRAM-SHA-", "scram-sha"))
}

provider "kubernetes" {
  config_path    = var.kubeconfig
  config_context = var.kube_context
}
