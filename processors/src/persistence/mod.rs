//! Persistence: the room log's messages into the store, at least once.
//!
//! Per batch: append the messages (idempotent by (room, seq), so a replay after a crash
//! changes nothing), then save the store checkpoint of every partition in the batch (the
//! sequencer trusts the store to be complete up to it), then commit the group offsets.
//! Markers (`host`, `unhost`) are not messages and are only passed over.
//!
//! Over history (`tidings replay processor persistence`) it writes the same rows and leaves
//! the checkpoints to the live processor: a stretch from a time says nothing about the
//! records before it.

use crate::dead_letter::decode_or_dead_letter;
use crate::replay::{self, Writes};
use crate::runtime::{self, checkpoints_of};
use crate::{
    Backfill, BackfillJob, Context, Processor, ProcessorError, ReplayStats, Stretch,
    PERSISTENCE_CHECKPOINT,
};
use async_trait::async_trait;
use tidings_log::topics::{DEAD_LETTERS, ROOM_LOG};
use tidings_log::ConsumerOptions;
use tidings_schemas::RoomEvent;
use tidings_store::{Mute, Store, StoredMessage};
use tokio_util::sync::CancellationToken;

pub const GROUP: &str = "tidings-persistence";
/// Room events per poll, hence per store append (and the memory one batch holds).
const BATCH: usize = 1000;

pub struct Persistence;

#[async_trait]
impl Processor for Persistence {
    fn name(&self) -> &'static str {
        "persistence"
    }

    fn consumes(&self) -> &'static [&'static str] {
        &[ROOM_LOG]
    }

    fn produces(&self) -> &'static [&'static str] {
        &[DEAD_LETTERS]
    }

    async fn session(
        &self,
        ctx: &Context,
        shutdown: &CancellationToken,
    ) -> Result<(), ProcessorError> {
        session(ctx, shutdown).await
    }

    /// Appends by (room, seq) are idempotent: history written again changes nothing.
    fn backfill(&self) -> Backfill {
        Backfill::Allowed { live_group: GROUP }
    }

    async fn run_backfill(
        &self,
        ctx: &Context,
        _job: &BackfillJob,
        stretches: &[Stretch],
        stop: &CancellationToken,
    ) -> Result<ReplayStats, ProcessorError> {
        let (stats, _) =
            replay::into_store(&ctx.log, &ctx.store, stretches, Writes::HISTORY, stop).await?;
        Ok(stats)
    }
}

async fn session(ctx: &Context, shutdown: &CancellationToken) -> Result<(), ProcessorError> {
    let mut consumer = ctx
        .log
        .consumer(GROUP, &[ROOM_LOG], ConsumerOptions::default())
        .await?;
    crate::health::set_ready("persistence", true);
    loop {
        let records = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            polled = consumer.poll(BATCH, runtime::POLL_WAIT) => polled?,
        };
        if records.is_empty() {
            continue;
        }
        let batch_started = std::time::Instant::now();
        let mut dead_letters = Vec::new();
        let events: Vec<RoomEvent> = records
            .iter()
            .filter_map(|r| decode_or_dead_letter::<RoomEvent>("persistence", r, &mut dead_letters))
            .collect();
        let messages = write(&*ctx.store, &events).await?;
        let checkpoints = checkpoints_of(&records);
        for c in &checkpoints {
            ctx.store
                .set_checkpoint(PERSISTENCE_CHECKPOINT, c.partition, c.next_offset)
                .await?;
        }
        // Before the offsets move past them (at least once: a crash in between copies them
        // again on restart).
        if !dead_letters.is_empty() {
            ctx.log.produce_batch(dead_letters).await?;
        }
        consumer.commit(&checkpoints).await?;
        crate::health::batch("persistence", &records, batch_started.elapsed());
        tracing::debug!(messages, "persisted");
    }
}

/// Appends the messages among `events` to the store (idempotent by (room, seq)), then
/// applies their deletions and mutes; returns how many messages. The live session and
/// replays write through here.
pub(crate) async fn write(store: &dyn Store, events: &[RoomEvent]) -> Result<u64, ProcessorError> {
    let messages: Vec<StoredMessage> = events
        .iter()
        .filter(|e| e.kind == "message")
        .filter_map(stored)
        .collect();
    store.append(&messages).await?;
    moderate(store, events).await?;
    Ok(messages.len() as u64)
}

/// Applies a stretch's deletions and mutes, after its messages are appended (a deletion
/// follows its message in the log; written again on a replay, it still wins).
async fn moderate(store: &dyn Store, events: &[RoomEvent]) -> Result<(), ProcessorError> {
    let mut deleted = Vec::new();
    let mut mutes = Vec::new();
    for e in events {
        let Some(room) = e.room.as_deref().filter(|r| tidings_store::valid_room(r)) else {
            continue;
        };
        match (e.kind.as_str(), e.target.as_deref(), e.until) {
            ("delete", _, _) if e.seq >= 1 => deleted.push((room.to_string(), e.seq)),
            ("mute", Some(user), Some(until))
                if !user.is_empty() && user.len() <= tidings_store::MAX_USER_LEN =>
            {
                mutes.push(Mute {
                    room: room.to_string(),
                    user: user.to_string(),
                    until,
                })
            }
            _ => {}
        }
    }
    if !deleted.is_empty() {
        store.delete_messages(&deleted).await?;
    }
    if !mutes.is_empty() {
        store.set_mutes(&mutes).await?;
    }
    Ok(())
}

/// The stored form, or `None` (logged) for a message the store would refuse: one bad record
/// must not block the batch, since the store validates a batch as a whole.
fn stored(event: &RoomEvent) -> Option<StoredMessage> {
    let message = StoredMessage {
        room: event.room.clone().unwrap_or_default(),
        seq: event.seq,
        client_id: event.client_id.clone(),
        from: event.user.clone().unwrap_or_default(),
        text: event.text.clone(),
        ts: event.ts,
        deleted: false,
    };
    match tidings_store::validate(&message) {
        Ok(()) => Some(message),
        Err(error) => {
            tracing::error!(room = %message.room, seq = message.seq, %error, "room-log message the store refuses; skipped");
            None
        }
    }
}
