//! The log: the record of truth every edge and processor talks through.
//!
//! One interface ([`Log`], [`Consumer`], [`PartitionReader`]) with two backends:
//! [`kafka::KafkaLog`] for the distributed deployment and [`embedded::EmbeddedLog`] (on redb)
//! for `tidings standalone`. Both pick partitions with the same function ([`partition_for`])
//! and refuse the same bad input ([`validate`]).

pub mod embedded;
pub mod kafka;
pub mod metered;
mod partitioner;
pub mod topics;

use async_trait::async_trait;
use std::time::Duration;

pub use partitioner::partition_for;
pub use topics::TopicSpec;

/// Milliseconds since the Unix epoch: the unit of every timestamp in records and envelopes.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Largest record value either backend accepts (Kafka's default `message.max.bytes` is ~1 MiB).
pub const MAX_VALUE_BYTES: usize = 1_000_000;
/// Keys are room names, edge ids and the like: short, non-empty text.
pub const MAX_KEY_BYTES: usize = 256;

/// A record to append.
#[derive(Debug, Clone, PartialEq)]
pub struct OutRecord {
    pub topic: String,
    pub key: String,
    pub value: Vec<u8>,
    /// Carried as Kafka headers (trace ids and the like).
    pub headers: Vec<(String, String)>,
}

impl OutRecord {
    pub fn new(topic: impl Into<String>, key: impl Into<String>, value: Vec<u8>) -> Self {
        Self {
            topic: topic.into(),
            key: key.into(),
            value,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub key: String,
    pub value: Vec<u8>,
    pub headers: Vec<(String, String)>,
    /// Append time in ms since the epoch.
    pub timestamp_ms: i64,
}

impl Record {
    /// The checkpoint that says "everything up to and including this record is done".
    pub fn next_checkpoint(&self) -> Checkpoint {
        Checkpoint {
            topic: self.topic.clone(),
            partition: self.partition,
            next_offset: self.offset + 1,
        }
    }
}

/// Where a record landed once it is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub partition: u32,
    pub offset: i64,
}

/// A consumer group's progress in one partition: the next offset it will read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    pub topic: String,
    pub partition: u32,
    pub next_offset: i64,
}

/// How a consumer group starts in a partition it has no committed offset for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    #[default]
    Earliest,
    Latest,
}

#[derive(Debug, Clone, Default)]
pub struct ConsumerOptions {
    pub start_at: StartAt,
    /// Set to use [`Consumer::commit_with`]: a stable id per consumer instance, which fences
    /// a previous incarnation of the same instance (Kafka `transactional.id`).
    pub transactional_id: Option<String>,
}

/// Why a log operation failed. `code()` is what reaches a client.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("record value of {size} bytes exceeds the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("partition {partition} does not exist in {topic:?}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("consumer has no transactional id; commit_with needs one")]
    NotTransactional,
    #[error("another instance took over this consumer's work: {0}")]
    Fenced(String),
    #[error("log unavailable: {0}")]
    Unavailable(String),
    /// The brokers refused this process's credentials: retrying will not help.
    #[error("log refused our credentials: {0}")]
    Unauthenticated(String),
    #[error("log is shut down")]
    Closed,
}

impl LogError {
    /// The client-facing error code (see PROTOCOL.md).
    pub fn code(&self) -> &'static str {
        match self {
            LogError::TooLarge { .. } => "too_large",
            LogError::InvalidKey(_) => "invalid",
            _ => "unavailable",
        }
    }
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// Checks what both backends refuse, before anything is sent.
pub fn validate(record: &OutRecord) -> Result<()> {
    if record.key.is_empty() {
        return Err(LogError::InvalidKey("empty"));
    }
    if record.key.len() > MAX_KEY_BYTES {
        return Err(LogError::InvalidKey("longer than 256 bytes"));
    }
    if record.key.contains('\0') {
        return Err(LogError::InvalidKey("contains NUL"));
    }
    let size = record.value.len()
        + record
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    if size > MAX_VALUE_BYTES {
        return Err(LogError::TooLarge {
            size,
            max: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// The log as edges and processors see it.
#[async_trait]
pub trait Log: Send + Sync + 'static {
    /// Creates the topics that do not exist yet (idempotent).
    async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<()>;

    /// Appends `record` to the partition its key maps to; returns once it is durable
    /// (Kafka: acknowledged by all in-sync replicas; embedded: fsynced, except on topics
    /// whose [`TopicSpec::durable`] is false: there it is committed and readable, and
    /// reaches disk with the next durable commit).
    async fn produce(&self, record: OutRecord) -> Result<Position>;

    /// Appends `records` and returns once all are durable. Records of one partition keep
    /// the order they have here, even across retries. Not atomic: after an error some may
    /// have been appended (use [`Consumer::commit_with`] for all-or-nothing).
    async fn produce_batch(&self, records: Vec<OutRecord>) -> Result<Vec<Position>>;

    /// Joins consumer group `group` on `topics`, resuming from the group's committed offsets.
    async fn consumer(
        &self,
        group: &str,
        topics: &[&str],
        options: ConsumerOptions,
    ) -> Result<Box<dyn Consumer>>;

    /// Reads one partition from `offset` on, outside any group.
    async fn reader(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> Result<Box<dyn PartitionReader>>;

    /// The offset the next record appended to the partition will get.
    async fn end_offset(&self, topic: &str, partition: u32) -> Result<i64>;

    /// Number of partitions of an existing topic.
    async fn partitions(&self, topic: &str) -> Result<u32>;

    /// The offset of the first record in the partition appended at or after `ts_ms` (ms
    /// since the epoch), or the end offset if none was: where reading "from that time"
    /// starts (`tidings replay processor --from`).
    async fn offset_for_time(&self, topic: &str, partition: u32, ts_ms: i64) -> Result<i64>;

    /// The offset `group` committed in the partition (the next one it will read), `None` if
    /// it never committed there. Only reads: the group is not joined, nothing of it changes.
    async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<i64>>;

    /// `Ok` when appends can be taken now, else why not (`unavailable`). Cheap enough for a
    /// readiness probe every few seconds: Kafka answers one metadata round trip within a
    /// short timeout; embedded does no I/O unless it is recovering from a disk fault.
    async fn writable(&self) -> Result<()>;
}

/// A member of a consumer group.
#[async_trait]
pub trait Consumer: Send {
    /// Up to `max` records, waiting at most `wait` for the first. Records of a partition come
    /// in offset order.
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>>;

    /// Stores the group's progress (at-least-once processing).
    async fn commit(&mut self, checkpoints: &[Checkpoint]) -> Result<()>;

    /// Appends `outputs` and stores `checkpoints` atomically: either all become visible or
    /// none does (exactly-once read-process-write). After an error, drop this consumer and
    /// open a new one: it resumes from the last committed checkpoints.
    async fn commit_with(
        &mut self,
        outputs: Vec<OutRecord>,
        checkpoints: &[Checkpoint],
    ) -> Result<()>;

    /// Changes whenever this member's partitions are assigned or revoked. A processor that
    /// keeps per-partition state reloads it when this moves.
    fn assignment_epoch(&self) -> u64;
}

/// One partition, read from an offset, outside any consumer group.
#[async_trait]
pub trait PartitionReader: Send {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>>;
}
