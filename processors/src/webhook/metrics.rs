//! Webhook counters per endpoint, on the default Prometheus registry (every `/metrics`).

use prometheus::{IntCounterVec, Opts};
use std::sync::LazyLock;

pub(crate) struct Metrics {
    pub delivered: IntCounterVec,
    pub failed: IntCounterVec,
    pub dead_lettered: IntCounterVec,
}

pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let counter = |name: &str, help: &str| {
        let c = IntCounterVec::new(Opts::new(name, help), &["endpoint"])
            // Constant names and labels: a failure is a defect the tests catch.
            .expect("valid metric definition");
        if let Err(error) = prometheus::register(Box::new(c.clone())) {
            // Still counts; only /metrics misses it.
            tracing::warn!(%error, name, "webhook metric not registered");
        }
        c
    };
    Metrics {
        delivered: counter(
            "tidings_webhook_delivered_total",
            "Room events a webhook endpoint accepted (2xx)",
        ),
        failed: counter(
            "tidings_webhook_failed_attempts_total",
            "POSTs to a webhook endpoint that failed (error, timeout or non-2xx); each is retried until the last attempt",
        ),
        dead_lettered: counter(
            "tidings_webhook_dead_lettered_total",
            "Room events given up on after the last attempt and copied to tidings.webhook-dead-letters",
        ),
    }
});

/// How many events `endpoint` accepted, failed and dead-lettered in this process.
pub fn counts(endpoint: &str) -> (u64, u64, u64) {
    let m = &*METRICS;
    (
        m.delivered.with_label_values(&[endpoint]).get(),
        m.failed.with_label_values(&[endpoint]).get(),
        m.dead_lettered.with_label_values(&[endpoint]).get(),
    )
}
