//! Fan-out: every message of the room log becomes one delivery per edge hosting its room.
//!
//! The room directory is loaded from the subscriptions topic at start (and again whenever
//! our partitions move), then follows the `host`/`unhost` markers in room-log order, so a
//! message after a host marker reaches that edge (gapless resume, ARCHITECTURE.md).
//!
//! Deliveries of a batch go out with `produce_batch`, which keeps room-log order for each
//! edge (seq 5 must never land before seq 4: the edge drops what is below what it already
//! passed on), and only then are the offsets committed. At least once is enough: after a
//! crash the edge drops the deliveries it already passed on by seq. No transaction on this
//! hop: a Kafka transaction costs tens of milliseconds, and readers of its output wait for
//! the commit marker too.

use crate::dead_letter::decode_or_dead_letter;
use crate::directory::Directory;
use crate::runtime::{self, delivery, valid_node};
use crate::{Backfill, Context, Processor, ProcessorError};
use async_trait::async_trait;
use std::collections::BTreeMap;
use tidings_log::topics::{DEAD_LETTERS, DELIVERIES, ROOM_LOG};
use tidings_log::{Checkpoint, ConsumerOptions, OutRecord};
use tidings_schemas::{Delivery, LogRecord, RoomEvent};
use tokio_util::sync::CancellationToken;

pub const GROUP: &str = "tidings-fanout";
/// Room events per poll.
const BATCH: usize = 500;
/// Most deliveries held before they are appended (G7): a batch to many edges is appended and
/// committed in several steps, each ending on a whole room event.
const MAX_PENDING: usize = 10_000;

pub struct Fanout;

#[async_trait]
impl Processor for Fanout {
    fn name(&self) -> &'static str {
        "fanout"
    }

    fn consumes(&self) -> &'static [&'static str] {
        &[ROOM_LOG]
    }

    fn produces(&self) -> &'static [&'static str] {
        &[DELIVERIES, DEAD_LETTERS]
    }

    fn backfill(&self) -> Backfill {
        Backfill::Refused(
            "fan-out delivers the room log to the edges: run over history, it would deliver old messages to live clients again",
        )
    }

    async fn session(
        &self,
        ctx: &Context,
        shutdown: &CancellationToken,
    ) -> Result<(), ProcessorError> {
        session(ctx, shutdown).await
    }
}

async fn session(ctx: &Context, shutdown: &CancellationToken) -> Result<(), ProcessorError> {
    let mut consumer = ctx
        .log
        .consumer(GROUP, &[ROOM_LOG], ConsumerOptions::default())
        .await?;
    let mut epoch = consumer.assignment_epoch();
    let (mut directory, _) = Directory::load(&*ctx.log, false).await?;
    crate::health::set_ready("fanout", true);
    loop {
        let records = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            polled = consumer.poll(BATCH, runtime::POLL_WAIT) => polled?,
        };
        if consumer.assignment_epoch() != epoch {
            // New partitions resume where another instance left them; our directory missed
            // their markers since it was loaded.
            epoch = consumer.assignment_epoch();
            directory = Directory::load(&*ctx.log, false).await?.0;
        }
        if records.is_empty() {
            continue;
        }
        let batch_started = std::time::Instant::now();
        let mut pending: Vec<OutRecord> = Vec::new();
        let mut done: BTreeMap<u32, Checkpoint> = BTreeMap::new();
        for record in &records {
            // A dead letter joins the deliveries: appended before the offsets move past it.
            if let Some(event) = decode_or_dead_letter::<RoomEvent>("fanout", record, &mut pending)
            {
                route(ctx, &mut directory, &event, &mut pending)?;
            }
            done.insert(record.partition, record.next_checkpoint());
            if pending.len() >= MAX_PENDING {
                let checkpoints: Vec<_> = done.values().cloned().collect();
                ctx.log.produce_batch(std::mem::take(&mut pending)).await?;
                consumer.commit(&checkpoints).await?;
            }
        }
        let checkpoints: Vec<_> = done.into_values().collect();
        ctx.log.produce_batch(pending).await?;
        consumer.commit(&checkpoints).await?;
        crate::health::batch("fanout", &records, batch_started.elapsed());
    }
}

/// Applies a marker to the directory, or turns a message or a deletion into deliveries.
fn route(
    ctx: &Context,
    directory: &mut Directory,
    event: &RoomEvent,
    out: &mut Vec<OutRecord>,
) -> Result<(), ProcessorError> {
    let Some(room) = event.room.as_deref() else {
        return Ok(());
    };
    match event.kind.as_str() {
        "host" | "unhost" if valid_node(&event.origin_node) => {
            directory.apply(&event.kind, room, &event.origin_node)
        }
        "message" => {
            for edge in directory.edges(room) {
                let message = Delivery {
                    room: Some(room.to_string()),
                    user: event.user.clone(),
                    seq: Some(event.seq),
                    client_id: Some(event.client_id.clone()),
                    text: Some(event.text.clone()),
                    msg_ts: Some(event.ts),
                    ..delivery("message", edge, &ctx.node, &event.trace_id)
                };
                out.push(OutRecord::new(DELIVERIES, edge, message.encode()?));
            }
        }
        // Every member learns of a deletion, so a message already shown can be taken away.
        "delete" => {
            for edge in directory.edges(room) {
                let deleted = Delivery {
                    room: Some(room.to_string()),
                    user: event.user.clone(),
                    seq: Some(event.seq),
                    ..delivery("deleted", edge, &ctx.node, &event.trace_id)
                };
                out.push(OutRecord::new(DELIVERIES, edge, deleted.encode()?));
            }
        }
        _ => {}
    }
    Ok(())
}
