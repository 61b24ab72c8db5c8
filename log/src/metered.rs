//! [`Metered`]: any [`Log`] with its appends and commits timed and their failures counted,
//! for `/metrics`. Polls are not timed: they wait for records by design.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts};

use crate::{
    Checkpoint, Consumer, ConsumerOptions, Log, OutRecord, PartitionReader, Position, Record,
    Result, TopicSpec,
};

/// From 100 µs (an embedded append without fsync) to 10 s (a Kafka transaction timing out).
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

struct Families {
    seconds: HistogramVec,
    errors: IntCounterVec,
}

/// Registered once per process in the default registry, whatever the number of logs.
fn families() -> &'static Families {
    static FAMILIES: OnceLock<Families> = OnceLock::new();
    FAMILIES.get_or_init(|| {
        let seconds = HistogramVec::new(
            HistogramOpts::new(
                "tidings_log_op_seconds",
                "Log append and commit latency, by backend and operation",
            )
            .buckets(BUCKETS.to_vec()),
            &["backend", "op"],
        )
        .expect("valid histogram options");
        let errors = IntCounterVec::new(
            Opts::new(
                "tidings_log_errors_total",
                "Failed log appends and commits, by backend, operation and error code",
            ),
            &["backend", "op", "code"],
        )
        .expect("valid counter options");
        for collector in [
            Box::new(seconds.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
        ] {
            if let Err(error) = prometheus::register(collector) {
                tracing::warn!(%error, "log metric not registered");
            }
        }
        Families { seconds, errors }
    })
}

/// One operation's name, backend and histogram.
#[derive(Clone)]
struct Timer {
    backend: &'static str,
    op: &'static str,
    seconds: Histogram,
}

impl Timer {
    fn new(backend: &'static str, op: &'static str) -> Self {
        Self {
            backend,
            op,
            seconds: families().seconds.with_label_values(&[backend, op]),
        }
    }

    async fn time<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        let start = Instant::now();
        let result = call.await;
        self.seconds.observe(start.elapsed().as_secs_f64());
        if let Err(error) = &result {
            families()
                .errors
                .with_label_values(&[self.backend, self.op, error.code()])
                .inc();
        }
        result
    }
}

/// A log whose appends (`produce`, `produce_batch`), commits (`commit`, and `commit_with`:
/// a Kafka transaction) and probes are timed (`tidings_log_op_seconds`), and whose failures
/// are counted by code (`tidings_log_errors_total`).
pub struct Metered {
    inner: Arc<dyn Log>,
    produce: Timer,
    produce_batch: Timer,
    end_offset: Timer,
    writable: Timer,
    commit: Timer,
    commit_with: Timer,
}

impl Metered {
    /// `backend` labels the series: `embedded` or `kafka`.
    pub fn new(inner: Arc<dyn Log>, backend: &'static str) -> Self {
        Self {
            inner,
            produce: Timer::new(backend, "produce"),
            produce_batch: Timer::new(backend, "produce_batch"),
            end_offset: Timer::new(backend, "end_offset"),
            writable: Timer::new(backend, "writable"),
            commit: Timer::new(backend, "commit"),
            commit_with: Timer::new(backend, "commit_with"),
        }
    }
}

#[async_trait]
impl Log for Metered {
    async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<()> {
        self.inner.ensure_topics(topics).await
    }

    async fn produce(&self, record: OutRecord) -> Result<Position> {
        self.produce.time(self.inner.produce(record)).await
    }

    async fn produce_batch(&self, records: Vec<OutRecord>) -> Result<Vec<Position>> {
        self.produce_batch
            .time(self.inner.produce_batch(records))
            .await
    }

    async fn consumer(
        &self,
        group: &str,
        topics: &[&str],
        options: ConsumerOptions,
    ) -> Result<Box<dyn Consumer>> {
        let inner = self.inner.consumer(group, topics, options).await?;
        Ok(Box::new(MeteredConsumer {
            inner,
            commit: self.commit.clone(),
            commit_with: self.commit_with.clone(),
        }))
    }

    async fn reader(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> Result<Box<dyn PartitionReader>> {
        self.inner.reader(topic, partition, offset).await
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<i64> {
        self.end_offset
            .time(self.inner.end_offset(topic, partition))
            .await
    }

    async fn partitions(&self, topic: &str) -> Result<u32> {
        self.inner.partitions(topic).await
    }

    // Not timed: operator look-ups (`tidings replay processor`), not the serving path.
    async fn offset_for_time(&self, topic: &str, partition: u32, ts_ms: i64) -> Result<i64> {
        self.inner.offset_for_time(topic, partition, ts_ms).await
    }

    async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<i64>> {
        self.inner.committed_offset(group, topic, partition).await
    }

    async fn writable(&self) -> Result<()> {
        self.writable.time(self.inner.writable()).await
    }
}

struct MeteredConsumer {
    inner: Box<dyn Consumer>,
    commit: Timer,
    commit_with: Timer,
}

#[async_trait]
impl Consumer for MeteredConsumer {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>> {
        self.inner.poll(max, wait).await
    }

    async fn commit(&mut self, checkpoints: &[Checkpoint]) -> Result<()> {
        self.commit.time(self.inner.commit(checkpoints)).await
    }

    async fn commit_with(
        &mut self,
        outputs: Vec<OutRecord>,
        checkpoints: &[Checkpoint],
    ) -> Result<()> {
        let call = self.inner.commit_with(outputs, checkpoints);
        self.commit_with.time(call).await
    }

    fn assignment_epoch(&self) -> u64 {
        self.inner.assignment_epoch()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::EmbeddedLog;

    fn count(name: &str, labels: &[(&str, &str)]) -> u64 {
        prometheus::gather()
            .iter()
            .filter(|family| family.name() == name)
            .flat_map(|family| {
                let histogram = family.get_field_type() == prometheus::proto::MetricType::HISTOGRAM;
                family.get_metric().iter().map(move |m| (histogram, m))
            })
            .filter(|(_, m)| {
                labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
            })
            .map(|(histogram, m)| {
                if histogram {
                    m.get_histogram().get_sample_count()
                } else {
                    m.get_counter().value() as u64
                }
            })
            .sum()
    }

    #[tokio::test]
    async fn times_appends_and_commits_and_counts_failures_by_code() {
        let dir = tempfile::tempdir().expect("temp dir");
        let embedded = EmbeddedLog::open(&dir.path().join("log.redb")).expect("log");
        let log = Metered::new(Arc::new(embedded), "metered-test");
        log.ensure_topics(&[TopicSpec::new("t", 1)])
            .await
            .expect("topic");
        log.produce(OutRecord::new("t", "k", b"v".to_vec()))
            .await
            .expect("produce");
        assert!(log
            .produce(OutRecord::new("t", "", b"v".to_vec()))
            .await
            .is_err());
        let mut consumer = log
            .consumer("g", &["t"], ConsumerOptions::default())
            .await
            .expect("consumer");
        let records = consumer
            .poll(10, Duration::from_secs(5))
            .await
            .expect("poll");
        assert_eq!(records.len(), 1);
        let checkpoints: Vec<Checkpoint> = records.iter().map(Record::next_checkpoint).collect();
        consumer.commit(&checkpoints).await.expect("commit");

        let produce = [("backend", "metered-test"), ("op", "produce")];
        let commit = [("backend", "metered-test"), ("op", "commit")];
        assert_eq!(count("tidings_log_op_seconds", &produce), 2);
        assert_eq!(count("tidings_log_op_seconds", &commit), 1);
        let invalid = [
            ("backend", "metered-test"),
            ("op", "produce"),
            ("code", "invalid"),
        ];
        assert_eq!(count("tidings_log_errors_total", &invalid), 1);
    }
}
