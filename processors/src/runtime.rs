//! What every processor's loop shares: supervision with backoff, reading a partition to its
//! end, checkpoints of a batch. (Bad records: [`crate::dead_letter`].)

use crate::ProcessorError;
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tidings_log::{Checkpoint, Log, LogError, PartitionReader, Record};
use tidings_schemas::Delivery;
use tokio_util::sync::CancellationToken;

/// How long a consumer poll waits before the loop checks for shutdown again.
pub(crate) const POLL_WAIT: Duration = Duration::from_millis(500);
/// First and longest pause between sessions after a backend error.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A session that lived this long was healthy: its failure restarts the backoff.
const HEALTHY_SESSION: Duration = Duration::from_secs(30);

/// Longest node id accepted from a record: it becomes part of keys (`room@edge`, at most
/// 128 + 1 + 120 bytes, under the log's 256-byte key limit).
const MAX_NODE_LEN: usize = 120;

pub(crate) use tidings_log::now_ms;

/// Whether a node id from a record can address an edge (and key a record).
pub(crate) fn valid_node(node: &str) -> bool {
    !node.is_empty() && node.len() <= MAX_NODE_LEN && !node.contains('\0')
}

/// Doubling pause, capped.
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self { next: BACKOFF_MIN }
    }

    pub(crate) fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }

    /// Sleeps the next delay; false if shutdown came first.
    pub(crate) async fn sleep(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

/// Runs sessions until shutdown. A session opens its consumer, works, and returns `Ok` only
/// on shutdown; on an error it is dropped whole (consumer and in-memory state, as the
/// `commit_with` contract asks) and a new one starts after a bounded backoff.
pub(crate) async fn supervise<'a, F>(
    name: &'static str,
    shutdown: &CancellationToken,
    mut session: F,
) -> Result<(), ProcessorError>
where
    F: FnMut() -> BoxFuture<'a, Result<(), ProcessorError>>,
{
    let mut backoff = Backoff::new();
    tracing::info!(processor = name, "processor starting");
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let started = Instant::now();
        let ended = session().await;
        crate::health::set_ready(name, false);
        match ended {
            Ok(()) => break,
            Err(error) => {
                crate::health::session_failed(name);
                if started.elapsed() >= HEALTHY_SESSION {
                    backoff.reset();
                }
                tracing::warn!(processor = name, %error, "session failed; reopening after backoff");
                if !backoff.sleep(shutdown).await {
                    break;
                }
            }
        }
    }
    tracing::info!(processor = name, "processor stopped");
    Ok(())
}

/// Records per poll when reading a partition to its end.
const SCAN_BATCH: usize = 1000;

/// How long a [`Scan`] waits for records before it takes a partition's end as reached.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Patience {
    /// One poll's wait.
    pub wait: Duration,
    /// Empty polls in a row that end a scan short of `end - 1`: offsets there belong to
    /// markers or aborted transactions, which read-committed readers skip silently.
    pub polls: u32,
}

/// Start-up scans (the sequencer's tail, the directory): a processor waits on them.
pub(crate) const RECOVERY: Patience = Patience {
    wait: Duration::from_millis(300),
    polls: 10,
};

/// Reads one partition from an offset up to an end fixed beforehand, in batches.
pub(crate) struct Scan {
    reader: Box<dyn PartitionReader>,
    next: i64,
    end: i64,
    patience: Patience,
    done: bool,
}

impl Scan {
    pub(crate) async fn open(
        log: &dyn Log,
        topic: &str,
        partition: u32,
        from: i64,
        end: i64,
        patience: Patience,
    ) -> Result<Self, LogError> {
        Ok(Self {
            reader: log.reader(topic, partition, from).await?,
            next: from,
            end,
            patience,
            done: false,
        })
    }

    /// The next batch of up to `max` records, `None` once the end is reached. The last batch
    /// may hold records at or past the end, appended since: scans that follow on use them,
    /// bounded ones drop them.
    pub(crate) async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Record>>, LogError> {
        let mut quiet = 0;
        while !self.done && self.next < self.end {
            let records = self.reader.poll(max, self.patience.wait).await?;
            if let Some(last) = records.last() {
                self.next = last.offset + 1;
                return Ok(Some(records));
            }
            quiet += 1;
            // On Kafka the last offset is usually a transaction marker, never returned.
            if self.next >= self.end - 1 || quiet >= self.patience.polls {
                break;
            }
        }
        self.done = true;
        Ok(None)
    }

    /// One past the last record read.
    pub(crate) fn next(&self) -> i64 {
        self.next
    }

    /// The reader, to follow the partition on, and the next offset it gives.
    pub(crate) fn into_reader(self) -> (Box<dyn PartitionReader>, i64) {
        (self.reader, self.next)
    }
}

/// Reads `topic`/`partition` from `from` up to the end it had when called, handing every
/// record to `each`. Returns the reader (to follow on) and the next offset.
pub(crate) async fn read_to_end(
    log: &dyn Log,
    topic: &str,
    partition: u32,
    from: i64,
    mut each: impl FnMut(&Record),
) -> Result<(Box<dyn PartitionReader>, i64), LogError> {
    let end = log.end_offset(topic, partition).await?;
    let mut scan = Scan::open(log, topic, partition, from, end, RECOVERY).await?;
    while let Some(records) = scan.next_batch(SCAN_BATCH).await? {
        records.iter().for_each(&mut each);
    }
    Ok(scan.into_reader())
}

/// The checkpoints saying "all of these records are done": per partition, the last + 1.
pub(crate) fn checkpoints_of(records: &[Record]) -> Vec<Checkpoint> {
    let mut last: BTreeMap<(&str, u32), i64> = BTreeMap::new();
    for r in records {
        let slot = last
            .entry((r.topic.as_str(), r.partition))
            .or_insert(r.offset);
        *slot = (*slot).max(r.offset);
    }
    last.into_iter()
        .map(|((topic, partition), offset)| Checkpoint {
            topic: topic.to_string(),
            partition,
            next_offset: offset + 1,
        })
        .collect()
}

/// A delivery of `kind` to `edge` from this processor, every optional field empty.
pub(crate) fn delivery(kind: &str, edge: &str, node: &str, trace_id: &str) -> Delivery {
    Delivery::new(
        uuid::Uuid::new_v4().to_string(),
        kind,
        edge,
        node,
        trace_id,
        now_ms(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: u32, offset: i64) -> Record {
        Record {
            topic: "t".into(),
            partition,
            offset,
            key: "k".into(),
            value: Vec::new(),
            headers: Vec::new(),
            timestamp_ms: 0,
        }
    }

    #[test]
    fn checkpoints_are_last_plus_one_per_partition() {
        let cps = checkpoints_of(&[record(1, 4), record(0, 7), record(1, 9), record(0, 8)]);
        let got: Vec<_> = cps.iter().map(|c| (c.partition, c.next_offset)).collect();
        assert_eq!(got, [(0, 9), (1, 10)]);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let mut b = Backoff::new();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        assert_eq!(b.next_delay(), Duration::from_millis(200));
        for _ in 0..20 {
            b.next_delay();
        }
        assert_eq!(b.next_delay(), BACKOFF_MAX);
        b.reset();
        assert_eq!(b.next_delay(), BACKOFF_MIN);
    }

    #[test]
    fn node_ids_are_checked() {
        assert!(valid_node("edge-a"));
        assert!(!valid_node(""));
        assert!(!valid_node(&"x".repeat(121)));
        assert!(!valid_node("a\0b"));
    }
}
