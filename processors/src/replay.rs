//! Rebuilding the store from the room log (`tidings replay store`): after a lost keyspace or
//! store file, the log, kept for ever, still holds every message, read marker and mention.
//! Each partition is read from its first record to the end it had when the replay began,
//! through the same logic as the live processors: persistence's stored form for history,
//! the inbox's derivation for the inbox tables, read markers as they were. Every write is
//! idempotent, so a replay may run beside live processors, be interrupted, and run again.

use std::time::{Duration, Instant};

use futures::future::try_join_all;
use std::collections::BTreeMap;
use std::sync::Arc;
use tidings_log::topics::ROOM_LOG;
use tidings_log::Log;
use tidings_schemas::{LogRecord, RoomEvent};
use tidings_store::{Store, StoredMessage};
use tokio_util::sync::CancellationToken;

use crate::inbox::derive::Derived;
use crate::{persistence, ProcessorError, PERSISTENCE_CHECKPOINT};

/// Records per read and per store write.
const BATCH: usize = 1000;
/// How long a read waits for records; a partition whose end is a transaction marker ends
/// after [`IDLE_POLLS`] empty reads.
const POLL_WAIT: Duration = Duration::from_secs(2);
const IDLE_POLLS: u32 = 3;
/// Tries per batch before the replay gives up (backing off 1, 2, 4, 8 s in between).
const WRITE_ATTEMPTS: u32 = 5;

/// What one replay did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReplayStats {
    pub records: u64,
    pub messages: u64,
    pub read_markers: u64,
    /// Records that do not decode (the live processors dead-letter them).
    pub undecodable: u64,
    pub seconds: f64,
}

impl ReplayStats {
    fn add(&mut self, other: &ReplayStats) {
        self.records += other.records;
        self.messages += other.messages;
        self.read_markers += other.read_markers;
        self.undecodable += other.undecodable;
    }
}

/// Replays every partition of the room log into `store`, all partitions at once; then sets
/// persistence's checkpoints to where the replay ended, so the sequencer trusts the store
/// up to there.
pub async fn rebuild_store(
    log: Arc<dyn Log>,
    store: Arc<dyn Store>,
    stop: CancellationToken,
) -> Result<ReplayStats, ProcessorError> {
    let started = Instant::now();
    let partitions = log.partitions(ROOM_LOG).await?;
    let work = (0..partitions).map(|partition| {
        let (log, store, stop) = (log.clone(), store.clone(), stop.clone());
        async move { replay_partition(&*log, &*store, partition, &stop).await }
    });
    let mut total = ReplayStats::default();
    for stats in try_join_all(work).await? {
        total.add(&stats);
    }
    total.seconds = started.elapsed().as_secs_f64();
    Ok(total)
}

async fn replay_partition(
    log: &dyn Log,
    store: &dyn Store,
    partition: u32,
    stop: &CancellationToken,
) -> Result<ReplayStats, ProcessorError> {
    let end = log.end_offset(ROOM_LOG, partition).await?;
    let mut stats = ReplayStats::default();
    if end == 0 {
        return Ok(stats);
    }
    let mut reader = log.reader(ROOM_LOG, partition, 0).await?;
    let mut idle = 0;
    let mut next = 0;
    while next < end && idle < IDLE_POLLS {
        if stop.is_cancelled() {
            return Err(ProcessorError::Internal("replay interrupted"));
        }
        let records = reader.poll(BATCH, POLL_WAIT).await?;
        if records.is_empty() {
            idle += 1;
            continue;
        }
        idle = 0;
        let mut events = Vec::with_capacity(records.len());
        for record in records.iter().filter(|r| r.offset < end) {
            stats.records += 1;
            match RoomEvent::decode(&record.value) {
                Ok(event) => events.push(event),
                Err(_) => stats.undecodable += 1,
            }
        }
        next = records.last().map_or(next, |r| r.offset + 1);
        // A busy store times out now and then; every write is idempotent, so try again.
        let mut attempt = 0;
        loop {
            let error = match write(store, &events).await {
                Ok((messages, markers)) => {
                    stats.messages += messages;
                    stats.read_markers += markers;
                    break;
                }
                Err(error) => error,
            };
            attempt += 1;
            if attempt == WRITE_ATTEMPTS || stop.is_cancelled() {
                return Err(error);
            }
            tracing::warn!(partition, attempt, %error, "replay write failed; retrying");
            tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
        }
    }
    store
        .set_checkpoint(PERSISTENCE_CHECKPOINT, partition, next.min(end))
        .await?;
    tracing::info!(
        partition,
        records = stats.records,
        "room log partition replayed"
    );
    Ok(stats)
}

/// What a stretch of the room log puts in the store: history, the inbox rows, markers.
/// Returns how many messages and read markers it wrote.
async fn write(store: &dyn Store, events: &[RoomEvent]) -> Result<(u64, u64), ProcessorError> {
    let messages: Vec<StoredMessage> = events
        .iter()
        .filter(|e| e.kind == "message")
        .filter_map(|e| persistence::stored(e.clone()))
        .collect();
    store.append(&messages).await?;
    persistence::moderate(store, events).await?;

    let mut derived = Derived::default();
    for event in events.iter().filter(|e| e.kind == "message") {
        derived.message(event);
    }
    let update = derived.update();
    if !update.is_empty() {
        store.update_inbox(&update).await?;
    }

    // The highest marker per user and room in this stretch; the store never moves one back.
    let mut markers: BTreeMap<(String, String), i64> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == "read" && e.seq >= 0) {
        let (Some(user), Some(room)) = (e.user.as_deref(), e.room.as_deref()) else {
            continue;
        };
        if user.is_empty() || !tidings_store::valid_room(room) {
            continue;
        }
        let marker = markers
            .entry((user.to_string(), room.to_string()))
            .or_insert(e.seq);
        *marker = (*marker).max(e.seq);
    }
    for ((user, room), seq) in &markers {
        store.set_read_marker(user, room, *seq).await?;
    }
    Ok((messages.len() as u64, markers.len() as u64))
}
