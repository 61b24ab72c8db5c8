//! What each processor says about itself: whether a session has its consumer (readiness),
//! its batches (count, records, duration) and its failed sessions. The metrics live in
//! Prometheus's default registry, which `/metrics` of every process shows.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tidings_log::{Log, Record};
use tokio_util::sync::CancellationToken;

/// How often consumer lag is sampled.
pub const LAG_EVERY: Duration = Duration::from_secs(5);

struct Metrics {
    ready: IntGaugeVec,
    batch_records: HistogramVec,
    batch_seconds: HistogramVec,
    session_failures: IntCounterVec,
    lag: IntGaugeVec,
    /// (processor, topic, partition) → the next offset it will handle.
    positions: Mutex<HashMap<(&'static str, String, u32), i64>>,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let label = &["processor"];
        let metrics = Metrics {
            ready: IntGaugeVec::new(
                Opts::new(
                    "tidings_processor_ready",
                    "1 while a session of the processor has its consumer open, else 0",
                ),
                label,
            )
            .expect("valid metric"),
            batch_records: HistogramVec::new(
                HistogramOpts::new(
                    "tidings_processor_batch_records",
                    "Records per batch a processor handled",
                )
                .buckets(vec![1.0, 5.0, 20.0, 50.0, 100.0, 250.0, 500.0, 1000.0]),
                label,
            )
            .expect("valid metric"),
            batch_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "tidings_processor_batch_seconds",
                    "Time from a batch's poll to its commit",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
                label,
            )
            .expect("valid metric"),
            session_failures: IntCounterVec::new(
                Opts::new(
                    "tidings_processor_session_failures_total",
                    "Sessions that ended on an error (each is replaced after a backoff)",
                ),
                label,
            )
            .expect("valid metric"),
            lag: IntGaugeVec::new(
                Opts::new(
                    "tidings_processor_lag_records",
                    "Offsets in a partition after the last batch a processor (its consumer \
                     group) handled, sampled every 5 s (on Kafka a transaction's commit \
                     marker counts as one)",
                ),
                &["processor", "topic", "partition"],
            )
            .expect("valid metric"),
            positions: Mutex::new(HashMap::new()),
        };
        for collector in [
            Box::new(metrics.ready.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.batch_records.clone()),
            Box::new(metrics.batch_seconds.clone()),
            Box::new(metrics.session_failures.clone()),
            Box::new(metrics.lag.clone()),
        ] {
            // Registered once per process; a failure only loses the metric, never the work.
            if let Err(error) = prometheus::register(collector) {
                tracing::warn!(%error, "processor metric not registered");
            }
        }
        metrics
    })
}

/// A session of `processor` has opened its consumer (`true`) or ended (`false`).
pub fn set_ready(processor: &str, ready: bool) {
    metrics()
        .ready
        .with_label_values(&[processor])
        .set(i64::from(ready));
}

/// Whether a session of `processor` has its consumer open now.
pub fn is_ready(processor: &str) -> bool {
    metrics().ready.with_label_values(&[processor]).get() == 1
}

/// One batch of `records` handled, from poll to commit, in `elapsed`.
pub(crate) fn batch(processor: &'static str, records: &[Record], elapsed: Duration) {
    let m = metrics();
    m.batch_records
        .with_label_values(&[processor])
        .observe(records.len() as f64);
    {
        let mut positions = m.positions.lock().unwrap_or_else(|e| e.into_inner());
        for r in records {
            let next = positions
                .entry((processor, r.topic.clone(), r.partition))
                .or_insert(0);
            *next = (*next).max(r.offset + 1);
        }
    }
    m.batch_seconds
        .with_label_values(&[processor])
        .observe(elapsed.as_secs_f64());
}

pub(crate) fn session_failed(processor: &str) {
    metrics()
        .session_failures
        .with_label_values(&[processor])
        .inc();
}

/// Samples every known position's lag (end offset − next offset) every [`LAG_EVERY`] until
/// `stop`.
pub async fn sample_lag(log: Arc<dyn Log>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(LAG_EVERY) => {}
        }
        let m = metrics();
        let positions: Vec<_> = m
            .positions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for ((processor, topic, partition), next) in positions {
            if let Ok(end) = log.end_offset(&topic, partition).await {
                m.lag
                    .with_label_values(&[processor, &topic, &partition.to_string()])
                    .set((end - next).max(0));
            }
        }
    }
}
