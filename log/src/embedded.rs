//! The embedded log: topics, partitions, offsets and consumer groups in one redb file.
//!
//! Every append goes through one writer thread that gathers whatever is queued into a single
//! redb transaction and commits it with fsync (group commit): a produce returns only after
//! the commit that holds it is durable. Consumer-group offsets live in the same file, so
//! [`Consumer::commit_with`] writes outputs and offsets in one atomic transaction, which is
//! this backend's exactly-once read-process-write.
//!
//! After a disk fault the database reopens itself ([`tidings_embedded::Db`]) at its last durable
//! commit. Commits without fsync (topics whose `TopicSpec::durable` is false) made since then
//! are lost, and their offsets are never given out again: readers and consumers keep their
//! positions across the reopen and must not find other records there. So the writer keeps
//! the highest end it committed per partition in memory and never appends below it.

use crate::now_ms;
use crate::{
    partition_for, validate, Checkpoint, Consumer, ConsumerOptions, Log, LogError, OutRecord,
    PartitionReader, Position, Record, Result, StartAt, TopicSpec,
};
use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tidings_embedded::{Db, DbError};
use tokio::sync::{mpsc, oneshot, watch};

/// (topic, partition, offset).
type RecordKey<'a> = (&'a str, u32, i64);
/// (append ms, key, value, headers as JSON).
type RecordValue<'a> = (i64, &'a str, &'a [u8], &'a str);
const RECORDS: TableDefinition<RecordKey, RecordValue> = TableDefinition::new("records");
/// topic → (partitions, retention ms or -1, compacted).
const TOPICS: TableDefinition<&str, (u32, i64, bool)> = TableDefinition::new("topics");
/// (topic, partition) → next offset. Kept apart from RECORDS so retention cannot rewind it.
const ENDS: TableDefinition<(&str, u32), i64> = TableDefinition::new("ends");
/// (group, topic, partition) → next offset to read.
const GROUP_OFFSETS: TableDefinition<(&str, &str, u32), i64> =
    TableDefinition::new("group_offsets");

/// Appends waiting for the writer; a full queue makes producers wait (backpressure).
const WRITE_QUEUE: usize = 4096;
/// Most requests folded into one transaction.
const MAX_BATCH: usize = 1024;
/// How often the writer applies retention.
const RETENTION_EVERY: Duration = Duration::from_secs(30);

fn redb_err(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(format!("embedded log: {e}"))
}

fn db_err(e: DbError) -> LogError {
    redb_err(e)
}

struct GroupCommit {
    group: String,
    generation: u64,
    checkpoints: Vec<Checkpoint>,
}

struct WriteRequest {
    records: Vec<OutRecord>,
    commit: Option<GroupCommit>,
    reply: oneshot::Sender<Result<Vec<Position>>>,
}

struct Shared {
    db: Db,
    /// (topic, partition) → end after the last commit this process made. At least the ENDS
    /// table's value; above it after a reopen lost commits made without fsync.
    high_water: Mutex<HashMap<(String, u32), i64>>,
    /// Topic name → partition count, cached from TOPICS.
    topics: Mutex<HashMap<String, u32>>,
    /// Topics whose appends need no fsync (`TopicSpec::durable` false), as last ensured.
    lazy: Mutex<HashSet<String>>,
    /// Consumer group → generation of its current member; a newer member fences older ones.
    generations: Mutex<HashMap<String, u64>>,
    /// Bumped after every commit; readers wait on it instead of polling.
    committed: watch::Sender<u64>,
}

/// A durable log in one file, for one machine.
#[derive(Clone)]
pub struct EmbeddedLog {
    shared: Arc<Shared>,
    writer: mpsc::Sender<WriteRequest>,
}

impl EmbeddedLog {
    /// Opens (or creates) the log at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Db::create(path).map_err(db_err)?;
        let topics = db
            .run(|db| {
                let txn = db.begin_write()?;
                let mut topics = HashMap::new();
                {
                    txn.open_table(RECORDS)?;
                    txn.open_table(ENDS)?;
                    txn.open_table(GROUP_OFFSETS)?;
                    let table = txn.open_table(TOPICS)?;
                    for entry in table.iter()? {
                        let (name, spec) = entry?;
                        topics.insert(name.value().to_string(), spec.value().0);
                    }
                }
                txn.commit()?;
                Ok(topics)
            })
            .map_err(db_err)?;

        let (committed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            db,
            high_water: Mutex::new(HashMap::new()),
            topics: Mutex::new(topics),
            lazy: Mutex::new(HashSet::new()),
            generations: Mutex::new(HashMap::new()),
            committed,
        });
        let (writer, queue) = mpsc::channel(WRITE_QUEUE);
        let for_thread = shared.clone();
        std::thread::Builder::new()
            .name("embedded-log-writer".into())
            .spawn(move || write_loop(for_thread, queue))
            .map_err(redb_err)?;
        Ok(Self { shared, writer })
    }

    /// How many times the database was reopened after a disk fault.
    pub fn reopens(&self) -> u64 {
        self.shared.db.reopens()
    }

    async fn write(
        &self,
        records: Vec<OutRecord>,
        commit: Option<GroupCommit>,
    ) -> Result<Vec<Position>> {
        for record in &records {
            validate(record)?;
            self.partition_count(&record.topic)?;
        }
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(WriteRequest {
                records,
                commit,
                reply,
            })
            .await
            .map_err(|_| LogError::Closed)?;
        answer.await.map_err(|_| LogError::Closed)?
    }

    fn partition_count(&self, topic: &str) -> Result<u32> {
        self.shared
            .topics
            .lock()
            .map_err(redb_err)?
            .get(topic)
            .copied()
            .ok_or_else(|| LogError::UnknownTopic(topic.to_string()))
    }

    fn read_partition(
        &self,
        topic: &str,
        partition: u32,
        from: i64,
        max: usize,
    ) -> Result<Vec<Record>> {
        self.shared
            .db
            .run(|db| {
                let txn = db.begin_read()?;
                let table = txn.open_table(RECORDS)?;
                let mut out = Vec::new();
                for entry in table
                    .range((topic, partition, from)..=(topic, partition, i64::MAX))?
                    .take(max)
                {
                    let (k, v) = entry?;
                    let (_, _, offset) = k.value();
                    let (ts, key, value, headers) = v.value();
                    out.push(Record {
                        topic: topic.to_string(),
                        partition,
                        offset,
                        key: key.to_string(),
                        value: value.to_vec(),
                        headers: serde_json::from_str(headers).unwrap_or_default(),
                        timestamp_ms: ts,
                    });
                }
                Ok(out)
            })
            .map_err(db_err)
    }

    fn group_offset(&self, group: &str, topic: &str, partition: u32) -> Result<Option<i64>> {
        self.shared
            .db
            .run(|db| {
                let txn = db.begin_read()?;
                let table = txn.open_table(GROUP_OFFSETS)?;
                let value = table.get((group, topic, partition))?;
                Ok(value.map(|v| v.value()))
            })
            .map_err(db_err)
    }

    /// The first offset appended at or after `ts_ms`, if any. Append times follow the wall
    /// clock, which may step back, so every record is looked at rather than a binary search
    /// trusted: the answer is Kafka's (the earliest offset whose timestamp is at least
    /// `ts_ms`). Only operator commands ask; values are borrowed, never copied.
    fn first_at_or_after(&self, topic: &str, partition: u32, ts_ms: i64) -> Result<Option<i64>> {
        self.shared
            .db
            .run(|db| {
                let txn = db.begin_read()?;
                let table = txn.open_table(RECORDS)?;
                for entry in table.range((topic, partition, 0)..=(topic, partition, i64::MAX))? {
                    let (k, v) = entry?;
                    if v.value().0 >= ts_ms {
                        return Ok(Some(k.value().2));
                    }
                }
                Ok(None)
            })
            .map_err(db_err)
    }

    fn check_partition(&self, topic: &str, partition: u32) -> Result<()> {
        if partition >= self.partition_count(topic)? {
            return Err(LogError::UnknownPartition {
                topic: topic.to_string(),
                partition,
            });
        }
        Ok(())
    }

    fn end(&self, topic: &str, partition: u32) -> Result<i64> {
        let stored = self
            .shared
            .db
            .run(|db| {
                let txn = db.begin_read()?;
                let table = txn.open_table(ENDS)?;
                let value = table.get((topic, partition))?;
                Ok(value.map(|v| v.value()).unwrap_or(0))
            })
            .map_err(db_err)?;
        Ok(stored.max(high_water(&self.shared, topic, partition)))
    }
}

/// The writer thread: drain the queue, write one transaction, fsync, answer everyone.
fn write_loop(shared: Arc<Shared>, mut queue: mpsc::Receiver<WriteRequest>) {
    let mut last_retention = std::time::Instant::now();
    while let Some(first) = queue.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let results = write_batch(&shared, &batch);
        for (request, result) in batch.into_iter().zip(results) {
            let _ = request.reply.send(result);
        }
        shared.committed.send_modify(|n| *n += 1);
        if last_retention.elapsed() >= RETENTION_EVERY {
            last_retention = std::time::Instant::now();
            if let Err(e) = apply_retention(&shared) {
                tracing::warn!(error = %e, "embedded log retention failed");
            }
        }
    }
}

/// The end this process last committed in a partition (0 if none).
fn high_water(shared: &Shared, topic: &str, partition: u32) -> i64 {
    // A panic elsewhere cannot leave this plain map inconsistent: use it anyway, since
    // forgetting a mark could give an offset out twice.
    let marks = shared
        .high_water
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    marks
        .get(&(topic.to_string(), partition))
        .copied()
        .unwrap_or(0)
}

fn write_batch(shared: &Shared, batch: &[WriteRequest]) -> Vec<Result<Vec<Position>>> {
    // Fencing is decided before the transaction so one fenced request cannot sink the rest.
    let generations = match shared.generations.lock() {
        Ok(g) => g.clone(),
        Err(e) => return batch.iter().map(|_| Err(redb_err(&e))).collect(),
    };
    let fenced = |request: &WriteRequest| {
        request
            .commit
            .as_ref()
            .is_some_and(|c| generations.get(&c.group) != Some(&c.generation))
    };
    let topics = match shared.topics.lock() {
        Ok(t) => t.clone(),
        Err(e) => return batch.iter().map(|_| Err(redb_err(&e))).collect(),
    };
    // No fsync when every record may be lost in a crash and no offsets are committed; a
    // later durable commit makes it durable too (redb orders commits).
    let durable = match shared.lazy.lock() {
        Ok(lazy) => batch.iter().any(|request| {
            request.commit.is_some() || request.records.iter().any(|r| !lazy.contains(&r.topic))
        }),
        Err(_) => true,
    };

    type Written = (Vec<Option<Vec<Position>>>, HashMap<(String, u32), i64>);
    let attempt = |db: &redb::Database| -> Result<Written, redb::Error> {
        let mut txn = db.begin_write()?;
        if !durable {
            txn.set_durability(redb::Durability::None)?;
        }
        let mut answers = Vec::with_capacity(batch.len());
        let mut next: HashMap<(String, u32), i64> = HashMap::new();
        {
            let mut records = txn.open_table(RECORDS)?;
            let mut ends = txn.open_table(ENDS)?;
            let mut offsets = txn.open_table(GROUP_OFFSETS)?;
            let now = now_ms();
            for request in batch {
                if fenced(request) {
                    answers.push(None);
                    continue;
                }
                let mut positions = Vec::with_capacity(request.records.len());
                for record in &request.records {
                    let partitions = topics.get(&record.topic).copied().unwrap_or(1);
                    let partition = partition_for(&record.key, partitions);
                    let slot = (record.topic.clone(), partition);
                    let offset = match next.get(&slot) {
                        Some(o) => *o,
                        None => {
                            let stored = ends
                                .get((record.topic.as_str(), partition))?
                                .map(|v| v.value())
                                .unwrap_or(0);
                            // Above what the file says after a reopen lost unsynced commits.
                            stored.max(high_water(shared, &record.topic, partition))
                        }
                    };
                    let headers = serde_json::to_string(&record.headers).unwrap_or_default();
                    records.insert(
                        (record.topic.as_str(), partition, offset),
                        (
                            now,
                            record.key.as_str(),
                            record.value.as_slice(),
                            headers.as_str(),
                        ),
                    )?;
                    next.insert(slot, offset + 1);
                    positions.push(Position { partition, offset });
                }
                if let Some(commit) = &request.commit {
                    for c in &commit.checkpoints {
                        offsets.insert(
                            (commit.group.as_str(), c.topic.as_str(), c.partition),
                            c.next_offset,
                        )?;
                    }
                }
                answers.push(Some(positions));
            }
            for ((topic, partition), offset) in &next {
                ends.insert((topic.as_str(), *partition), *offset)?;
            }
        }
        txn.commit()?;
        Ok((answers, next))
    };

    match shared.db.run(attempt) {
        Ok((answers, next)) => {
            // Only committed ends count: offsets of a failed commit were never seen.
            shared
                .high_water
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(next);
            answers
                .into_iter()
                .map(|a| {
                    a.ok_or_else(|| LogError::Fenced("a newer member joined the group".into()))
                })
                .collect()
        }
        Err(e) => {
            let message = format!("embedded log: {e}");
            batch
                .iter()
                .map(|_| Err(LogError::Unavailable(message.clone())))
                .collect()
        }
    }
}

/// Drops records older than their topic's retention.
fn apply_retention(shared: &Shared) -> Result<()> {
    shared
        .db
        .run(|db| {
            let txn = db.begin_write()?;
            {
                let topics = txn.open_table(TOPICS)?;
                let mut records = txn.open_table(RECORDS)?;
                let cutoff_now = now_ms();
                let mut expiring = Vec::new();
                for entry in topics.iter()? {
                    let (name, spec) = entry?;
                    let (partitions, retention_ms, _) = spec.value();
                    if retention_ms >= 0 {
                        expiring.push((
                            name.value().to_string(),
                            partitions,
                            cutoff_now - retention_ms,
                        ));
                    }
                }
                for (topic, partitions, cutoff) in expiring {
                    for partition in 0..partitions {
                        // Records are in append order, so the expired ones are a prefix.
                        let mut last_expired = None;
                        for entry in records.range(
                            (topic.as_str(), partition, 0)..=(topic.as_str(), partition, i64::MAX),
                        )? {
                            let (k, v) = entry?;
                            if v.value().0 >= cutoff {
                                break;
                            }
                            last_expired = Some(k.value().2);
                        }
                        if let Some(last) = last_expired {
                            records.retain_in(
                                (topic.as_str(), partition, 0)..=(topic.as_str(), partition, last),
                                |_, _| false,
                            )?;
                        }
                    }
                }
            }
            txn.commit()?;
            Ok(())
        })
        .map_err(db_err)
}

#[async_trait]
impl Log for EmbeddedLog {
    async fn ensure_topics(&self, specs: &[TopicSpec]) -> Result<()> {
        let shared = self.shared.clone();
        let specs = specs.to_vec();
        tokio::task::spawn_blocking(move || {
            let table = shared
                .db
                .run(|db| {
                    let txn = db.begin_write()?;
                    {
                        let mut table = txn.open_table(TOPICS)?;
                        for spec in &specs {
                            // A topic made earlier keeps its partitions but takes the
                            // retention and compaction asked for now.
                            let partitions = table
                                .get(spec.name.as_str())?
                                .map_or(spec.partitions, |old| old.value().0);
                            table.insert(
                                spec.name.as_str(),
                                (partitions, spec.retention_ms.unwrap_or(-1), spec.compacted),
                            )?;
                        }
                    }
                    txn.commit()?;
                    let txn = db.begin_read()?;
                    let table = txn.open_table(TOPICS)?;
                    let mut all = HashMap::new();
                    for entry in table.iter()? {
                        let (name, spec) = entry?;
                        all.insert(name.value().to_string(), spec.value().0);
                    }
                    Ok(all)
                })
                .map_err(db_err)?;
            *shared.topics.lock().map_err(redb_err)? = table;
            let mut lazy = shared.lazy.lock().map_err(redb_err)?;
            for spec in &specs {
                if spec.durable {
                    lazy.remove(&spec.name);
                } else {
                    lazy.insert(spec.name.clone());
                }
            }
            Ok(())
        })
        .await
        .map_err(redb_err)?
    }

    /// No I/O while healthy; after a disk fault, `unavailable` until the database is back.
    async fn writable(&self) -> Result<()> {
        self.shared.db.writable().map_err(db_err)
    }

    async fn produce(&self, record: OutRecord) -> Result<Position> {
        let positions = self.write(vec![record], None).await?;
        positions.into_iter().next().ok_or(LogError::Closed)
    }

    /// One transaction: in order, and here even atomic.
    async fn produce_batch(&self, records: Vec<OutRecord>) -> Result<Vec<Position>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.write(records, None).await
    }

    async fn consumer(
        &self,
        group: &str,
        topics: &[&str],
        options: ConsumerOptions,
    ) -> Result<Box<dyn Consumer>> {
        let mut positions = Vec::new();
        for topic in topics {
            let partitions = self.partition_count(topic)?;
            for partition in 0..partitions {
                let next = match self.group_offset(group, topic, partition)? {
                    Some(offset) => offset,
                    None => match options.start_at {
                        StartAt::Earliest => 0,
                        StartAt::Latest => self.end(topic, partition)?,
                    },
                };
                positions.push(((*topic).to_string(), partition, next));
            }
        }
        let generation = {
            let mut generations = self.shared.generations.lock().map_err(redb_err)?;
            let g = generations.entry(group.to_string()).or_insert(0);
            *g += 1;
            *g
        };
        Ok(Box::new(EmbeddedConsumer {
            log: self.clone(),
            group: group.to_string(),
            generation,
            transactional: options.transactional_id.is_some(),
            positions,
            next_partition: 0,
            committed: self.shared.committed.subscribe(),
        }))
    }

    async fn reader(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> Result<Box<dyn PartitionReader>> {
        self.check_partition(topic, partition)?;
        Ok(Box::new(EmbeddedReader {
            log: self.clone(),
            topic: topic.to_string(),
            partition,
            next: offset,
            committed: self.shared.committed.subscribe(),
        }))
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<i64> {
        self.partition_count(topic)?;
        self.end(topic, partition)
    }

    async fn partitions(&self, topic: &str) -> Result<u32> {
        self.partition_count(topic)
    }

    async fn offset_for_time(&self, topic: &str, partition: u32, ts_ms: i64) -> Result<i64> {
        self.check_partition(topic, partition)?;
        let log = self.clone();
        let topic = topic.to_string();
        // A scan of a long partition is blocking work: off the async threads.
        tokio::task::spawn_blocking(move || {
            match log.first_at_or_after(&topic, partition, ts_ms)? {
                Some(offset) => Ok(offset),
                None => log.end(&topic, partition),
            }
        })
        .await
        .map_err(redb_err)?
    }

    async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<i64>> {
        self.check_partition(topic, partition)?;
        self.group_offset(group, topic, partition)
    }
}

/// Waits for the next commit, at most until `deadline`; false once the deadline passed.
async fn wait_for_commit(
    committed: &mut watch::Receiver<u64>,
    deadline: tokio::time::Instant,
) -> bool {
    matches!(
        tokio::time::timeout_at(deadline, committed.changed()).await,
        Ok(Ok(()))
    )
}

struct EmbeddedConsumer {
    log: EmbeddedLog,
    group: String,
    generation: u64,
    transactional: bool,
    /// (topic, partition, next offset to read) for every partition of the subscribed topics.
    positions: Vec<(String, u32, i64)>,
    /// Where the next poll starts, so one busy partition cannot starve the others.
    next_partition: usize,
    committed: watch::Receiver<u64>,
}

impl EmbeddedConsumer {
    fn check_generation(&self) -> Result<()> {
        let generations = self.log.shared.generations.lock().map_err(redb_err)?;
        if generations.get(&self.group) != Some(&self.generation) {
            return Err(LogError::Fenced(format!(
                "a newer member joined group {}",
                self.group
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.check_generation()?;
            self.committed.borrow_and_update();
            let mut out = Vec::new();
            let count = self.positions.len();
            for i in 0..count {
                if out.len() >= max {
                    break;
                }
                let index = (self.next_partition + i) % count;
                let (topic, partition, next) = &mut self.positions[index];
                let records = self
                    .log
                    .read_partition(topic, *partition, *next, max - out.len())?;
                if let Some(last) = records.last() {
                    *next = last.offset + 1;
                }
                out.extend(records);
            }
            self.next_partition = (self.next_partition + 1) % count.max(1);
            if !out.is_empty() || !wait_for_commit(&mut self.committed, deadline).await {
                return Ok(out);
            }
        }
    }

    async fn commit(&mut self, checkpoints: &[Checkpoint]) -> Result<()> {
        self.log
            .write(
                Vec::new(),
                Some(GroupCommit {
                    group: self.group.clone(),
                    generation: self.generation,
                    checkpoints: checkpoints.to_vec(),
                }),
            )
            .await
            .map(|_| ())
    }

    async fn commit_with(
        &mut self,
        outputs: Vec<OutRecord>,
        checkpoints: &[Checkpoint],
    ) -> Result<()> {
        if !self.transactional {
            return Err(LogError::NotTransactional);
        }
        self.log
            .write(
                outputs,
                Some(GroupCommit {
                    group: self.group.clone(),
                    generation: self.generation,
                    checkpoints: checkpoints.to_vec(),
                }),
            )
            .await
            .map(|_| ())
    }

    /// An embedded member owns every partition for its whole life.
    fn assignment_epoch(&self) -> u64 {
        self.generation
    }
}

struct EmbeddedReader {
    log: EmbeddedLog,
    topic: String,
    partition: u32,
    next: i64,
    committed: watch::Receiver<u64>,
}

#[async_trait]
impl PartitionReader for EmbeddedReader {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.committed.borrow_and_update();
            let records = self
                .log
                .read_partition(&self.topic, self.partition, self.next, max)?;
            if let Some(last) = records.last() {
                self.next = last.offset + 1;
            }
            if !records.is_empty() || !wait_for_commit(&mut self.committed, deadline).await {
                return Ok(records);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records_in(log: &EmbeddedLog, topic: &str) -> usize {
        let topic = topic.to_string();
        log.shared
            .db
            .run(move |db| {
                let txn = db.begin_read()?;
                let records = txn.open_table(RECORDS)?;
                let count = records
                    .range((topic.as_str(), 0, 0)..=(topic.as_str(), u32::MAX, i64::MAX))?
                    .count();
                Ok(count)
            })
            .expect("reading the records")
    }

    /// Ensuring a topic again changes its retention (what `TIDINGS_TOPIC_RETENTION` relies
    /// on) but never its partitions.
    #[tokio::test]
    async fn ensuring_a_topic_again_takes_its_new_retention_and_keeps_its_partitions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(&dir.path().join("log.redb")).expect("open");
        let forever = TopicSpec::new("t", 2);
        log.ensure_topics(std::slice::from_ref(&forever))
            .await
            .expect("ensure");
        for key in ["a", "b", "c"] {
            log.produce(OutRecord::new("t", key, b"v".to_vec()))
                .await
                .expect("produce");
        }
        apply_retention(&log.shared).expect("retention");
        assert_eq!(records_in(&log, "t"), 3, "kept for ever");

        let none_kept = TopicSpec {
            retention_ms: Some(0),
            ..TopicSpec::new("t", 4)
        };
        log.ensure_topics(&[none_kept]).await.expect("ensure again");
        assert_eq!(log.partitions("t").await.expect("partitions"), 2);
        tokio::time::sleep(Duration::from_millis(5)).await;
        apply_retention(&log.shared).expect("retention");
        assert_eq!(records_in(&log, "t"), 0, "the new retention applies");
    }
}
