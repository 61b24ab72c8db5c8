//! [`Metered`]: any [`Store`] with each operation timed and its failures counted, for
//! `/metrics`. Wrapping here, rather than inside each backend, keeps both backends' figures
//! comparable and the backends free of metrics code.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts};

use crate::{InboxRoom, InboxUpdate, Mute, Result, SeqRange, Store, StoredMessage};

/// From 100 µs (an embedded read from cache) to 5 s (a Cassandra timeout).
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

struct Families {
    seconds: HistogramVec,
    errors: IntCounterVec,
}

/// Registered once per process in the default registry, whatever the number of stores.
fn families() -> &'static Families {
    static FAMILIES: OnceLock<Families> = OnceLock::new();
    FAMILIES.get_or_init(|| {
        let seconds = HistogramVec::new(
            HistogramOpts::new(
                "tidings_store_op_seconds",
                "Store operation latency, by backend and operation",
            )
            .buckets(BUCKETS.to_vec()),
            &["backend", "op"],
        )
        .expect("valid histogram options");
        let errors = IntCounterVec::new(
            Opts::new(
                "tidings_store_errors_total",
                "Failed store operations, by backend, operation and error code",
            ),
            &["backend", "op", "code"],
        )
        .expect("valid counter options");
        for collector in [
            Box::new(seconds.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
        ] {
            if let Err(error) = prometheus::register(collector) {
                tracing::warn!(%error, "store metric not registered");
            }
        }
        Families { seconds, errors }
    })
}

/// One operation's name and histogram.
struct Timer {
    op: &'static str,
    seconds: Histogram,
}

macro_rules! ops {
    ($($op:ident),* $(,)?) => {
        /// One histogram per operation, looked up once rather than on every call.
        struct Timers { $($op: Timer,)* }
        impl Timers {
            fn new(backend: &str) -> Self {
                Self { $($op: Timer {
                    op: stringify!($op),
                    seconds: families().seconds.with_label_values(&[backend, stringify!($op)]),
                },)* }
            }
        }
    };
}

ops!(
    append,
    read,
    head,
    seq_of,
    checkpoint,
    set_checkpoint,
    snapshot,
    save_snapshot,
    last_seen,
    set_last_seen,
    update_inbox,
    read_marker,
    set_read_marker,
    inbox_rooms,
    last_message,
    counts_after,
    delete_messages,
    set_mutes,
    mutes,
    writable,
);

/// A store whose operations are timed (`tidings_store_op_seconds`) and whose failures are
/// counted by code (`tidings_store_errors_total`).
pub struct Metered {
    inner: Arc<dyn Store>,
    backend: &'static str,
    timers: Timers,
}

impl Metered {
    /// `backend` labels the series: `embedded` or `cassandra`.
    pub fn new(inner: Arc<dyn Store>, backend: &'static str) -> Self {
        Self {
            inner,
            backend,
            timers: Timers::new(backend),
        }
    }

    async fn timed<T>(&self, timer: &Timer, call: impl Future<Output = Result<T>>) -> Result<T> {
        let start = Instant::now();
        let result = call.await;
        timer.seconds.observe(start.elapsed().as_secs_f64());
        if let Err(error) = &result {
            families()
                .errors
                .with_label_values(&[self.backend, timer.op, error.code()])
                .inc();
        }
        result
    }
}

#[async_trait]
impl Store for Metered {
    async fn append(&self, messages: &[StoredMessage]) -> Result<()> {
        let t = &self.timers.append;
        self.timed(t, self.inner.append(messages)).await
    }

    async fn read(&self, room: &str, range: SeqRange) -> Result<Vec<StoredMessage>> {
        let t = &self.timers.read;
        self.timed(t, self.inner.read(room, range)).await
    }

    async fn head(&self, room: &str) -> Result<i64> {
        let t = &self.timers.head;
        self.timed(t, self.inner.head(room)).await
    }

    async fn seq_of(&self, room: &str, client_id: &str) -> Result<Option<i64>> {
        let t = &self.timers.seq_of;
        self.timed(t, self.inner.seq_of(room, client_id)).await
    }

    async fn checkpoint(&self, name: &str, partition: u32) -> Result<Option<i64>> {
        let t = &self.timers.checkpoint;
        self.timed(t, self.inner.checkpoint(name, partition)).await
    }

    async fn set_checkpoint(&self, name: &str, partition: u32, next_offset: i64) -> Result<()> {
        let t = &self.timers.set_checkpoint;
        let call = self.inner.set_checkpoint(name, partition, next_offset);
        self.timed(t, call).await
    }

    async fn snapshot(&self, name: &str, partition: u32) -> Result<Option<(i64, Vec<u8>)>> {
        let t = &self.timers.snapshot;
        self.timed(t, self.inner.snapshot(name, partition)).await
    }

    async fn save_snapshot(
        &self,
        name: &str,
        partition: u32,
        next_offset: i64,
        state: &[u8],
    ) -> Result<()> {
        let t = &self.timers.save_snapshot;
        let call = self
            .inner
            .save_snapshot(name, partition, next_offset, state);
        self.timed(t, call).await
    }

    async fn last_seen(&self, users: &[String]) -> Result<Vec<Option<i64>>> {
        let t = &self.timers.last_seen;
        self.timed(t, self.inner.last_seen(users)).await
    }

    async fn set_last_seen(&self, seen: &[(String, i64)]) -> Result<()> {
        let t = &self.timers.set_last_seen;
        self.timed(t, self.inner.set_last_seen(seen)).await
    }

    async fn update_inbox(&self, update: &InboxUpdate) -> Result<()> {
        let t = &self.timers.update_inbox;
        self.timed(t, self.inner.update_inbox(update)).await
    }

    async fn read_marker(&self, user: &str, room: &str) -> Result<Option<i64>> {
        let t = &self.timers.read_marker;
        self.timed(t, self.inner.read_marker(user, room)).await
    }

    async fn set_read_marker(&self, user: &str, room: &str, seq: i64) -> Result<()> {
        let t = &self.timers.set_read_marker;
        let call = self.inner.set_read_marker(user, room, seq);
        self.timed(t, call).await
    }

    async fn inbox_rooms(&self, user: &str) -> Result<Vec<InboxRoom>> {
        let t = &self.timers.inbox_rooms;
        self.timed(t, self.inner.inbox_rooms(user)).await
    }

    async fn last_message(&self, room: &str) -> Result<Option<StoredMessage>> {
        let t = &self.timers.last_message;
        self.timed(t, self.inner.last_message(room)).await
    }

    async fn counts_after(&self, user: &str, room: &str, after: i64) -> Result<(i64, i64)> {
        let t = &self.timers.counts_after;
        let call = self.inner.counts_after(user, room, after);
        self.timed(t, call).await
    }

    async fn delete_messages(&self, targets: &[(String, i64)]) -> Result<()> {
        let t = &self.timers.delete_messages;
        self.timed(t, self.inner.delete_messages(targets)).await
    }

    async fn set_mutes(&self, mutes: &[Mute]) -> Result<()> {
        let t = &self.timers.set_mutes;
        self.timed(t, self.inner.set_mutes(mutes)).await
    }

    async fn mutes(&self, room: &str) -> Result<Vec<Mute>> {
        let t = &self.timers.mutes;
        self.timed(t, self.inner.mutes(room)).await
    }

    async fn writable(&self) -> Result<()> {
        let t = &self.timers.writable;
        self.timed(t, self.inner.writable()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::EmbeddedStore;

    fn sample(name: &str, labels: &[(&str, &str)]) -> f64 {
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
                    m.get_histogram().get_sample_count() as f64
                } else {
                    m.get_counter().value()
                }
            })
            .sum()
    }

    #[tokio::test]
    async fn times_every_operation_and_counts_failures_by_code() {
        let dir = tempfile::tempdir().expect("temp dir");
        let embedded = EmbeddedStore::open(&dir.path().join("store.redb")).expect("store");
        let store = Metered::new(Arc::new(embedded), "metered-test");
        let message = StoredMessage {
            room: "general".into(),
            seq: 1,
            client_id: "c1".into(),
            from: "ada".into(),
            text: "hi".into(),
            ts: 1,
            deleted: false,
        };
        store.append(&[message]).await.expect("append");
        assert_eq!(store.head("general").await.expect("head"), 1);
        assert!(store.head("bad room").await.is_err());

        let append = [("backend", "metered-test"), ("op", "append")];
        let head = [("backend", "metered-test"), ("op", "head")];
        assert_eq!(sample("tidings_store_op_seconds", &append), 1.0);
        assert_eq!(sample("tidings_store_op_seconds", &head), 2.0);
        let failed = [
            ("backend", "metered-test"),
            ("op", "head"),
            ("code", "invalid"),
        ];
        assert_eq!(sample("tidings_store_errors_total", &failed), 1.0);
        assert_eq!(sample("tidings_store_errors_total", &append), 0.0);
    }
}
