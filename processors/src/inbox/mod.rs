//! The inbox: read markers, the DM and mention index, and what reaches users outside the
//! rooms they joined.
//!
//! Consumes the room log (its own group). For each message it records, in the store, the
//! sender's own message, the DM room in both users' inboxes, the mentions of users who may
//! read the room, and the room's newest message; the DM peer or the mentioned user gets a
//! `notify` on every edge that has their connections. For each `read` marker (which the
//! sequencer ordered and checked against the head), a marker above the stored one is stored,
//! the user's other connections get `read` and the room's edges a `receipt`; an older or
//! equal marker changes nothing.
//!
//! Unread and mention counts are not kept as counters: an inbox reader counts, at query
//! time, the messages after the marker (head − read) minus the user's own, and the mention
//! rows after it. Every row is keyed by what it describes (user, room, seq), so writing a
//! batch twice changes nothing: after a crash the batch since the last commit is simply
//! processed again. Deliveries go out before the rows and offsets, so a crash repeats a
//! notice rather than losing it.
//!
//! Which edges have a user's connections: the users edges announce on the subscriptions
//! topic (`user-host`, `user-unhost`), followed live like typing follows room hosts.
//!
//! Over history (`tidings replay processor inbox`, `tidings replay store`) it writes the same
//! rows and markers ([`write_index`]) and delivers nothing: old notices must not reach
//! today's clients.

pub(crate) mod derive;
mod metrics;

pub use derive::{mentions, MAX_MENTIONS};

use crate::dead_letter::decode_or_dead_letter;
use crate::directory::Directory;
use crate::replay::{self, Writes};
use crate::runtime::{self, checkpoints_of, delivery};
use crate::{Backfill, BackfillJob, Context, Processor, ProcessorError, ReplayStats, Stretch};
use async_trait::async_trait;
use derive::{Derived, Notice};
use futures::{StreamExt, TryStreamExt};
use std::collections::{BTreeMap, HashMap};
use tidings_log::topics::{DEAD_LETTERS, DELIVERIES, ROOM_LOG, SUBSCRIPTIONS};
use tidings_log::{ConsumerOptions, OutRecord};
use tidings_schemas::{Delivery, LogRecord, RoomEvent};
use tidings_store::Store;
use tokio_util::sync::CancellationToken;

pub const GROUP: &str = "tidings-inbox";
/// Room events per poll. With at most 16 mentions per message, a batch's rows stay under the
/// store's 10,000 per update.
const BATCH: usize = 500;
/// Marker look-ups in flight at once.
const LOOKUPS_IN_FLIGHT: usize = 32;

pub struct Inbox;

#[async_trait]
impl Processor for Inbox {
    fn name(&self) -> &'static str {
        "inbox"
    }

    fn consumes(&self) -> &'static [&'static str] {
        &[ROOM_LOG, SUBSCRIPTIONS]
    }

    fn produces(&self) -> &'static [&'static str] {
        &[DELIVERIES, DEAD_LETTERS]
    }

    async fn session(
        &self,
        ctx: &Context,
        shutdown: &CancellationToken,
    ) -> Result<(), ProcessorError> {
        session(ctx, shutdown).await
    }

    /// Rows are keyed by what they describe and markers only rise: writing them again
    /// changes nothing, and a backfill sends no notice.
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
            replay::into_store(&ctx.log, &ctx.store, stretches, Writes::INBOX, stop).await?;
        Ok(stats)
    }
}

/// Writes what `events` (a stretch of one partition, in order) mean for the inbox tables:
/// the index rows of each message and, per user and room, the highest read marker (the
/// store never moves one back). Delivers nothing: for replays, where no look-up of the
/// stored marker is needed to decide on a `read` or `receipt`. Returns how many messages
/// were indexed and markers written.
pub(crate) async fn write_index(
    store: &dyn Store,
    events: &[RoomEvent],
) -> Result<(u64, u64), ProcessorError> {
    let mut derived = Derived::default();
    let mut messages = 0;
    for event in events.iter().filter(|e| e.kind == "message") {
        derived.message(event);
        messages += 1;
    }
    let update = derived.update();
    if !update.is_empty() {
        store.update_inbox(&update).await?;
    }
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
    Ok((messages, markers.len() as u64))
}

/// A read marker that moved forward.
struct Advanced {
    user: String,
    room: String,
    seq: i64,
    /// The connection that set it (it needs no `read` of its own).
    conn: String,
    trace_id: String,
}

async fn session(ctx: &Context, shutdown: &CancellationToken) -> Result<(), ProcessorError> {
    let followers = shutdown.child_token();
    let _stop_followers = followers.clone().drop_guard();
    let directory = Directory::followed(&ctx.log, true, &followers).await?;
    let mut consumer = ctx
        .log
        .consumer(GROUP, &[ROOM_LOG], ConsumerOptions::default())
        .await?;
    metrics::register();
    crate::health::set_ready("inbox", true);
    loop {
        let records = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            polled = consumer.poll(BATCH, runtime::POLL_WAIT) => polled?,
        };
        if records.is_empty() {
            continue;
        }
        let batch_started = std::time::Instant::now();
        let mut out = Vec::new();
        let events: Vec<RoomEvent> = records
            .iter()
            .filter_map(|r| decode_or_dead_letter::<RoomEvent>("inbox", r, &mut out))
            .collect();
        let mut derived = Derived::default();
        for event in events.iter().filter(|e| e.kind == "message") {
            derived.message(event);
        }
        let advanced = advanced_markers(ctx, &events).await?;
        {
            let directory = directory.lock();
            for notice in &derived.notices {
                notify(ctx, &directory, notice, &mut out)?;
            }
            for marker in &advanced {
                read(ctx, &directory, marker, &mut out)?;
            }
        }
        // Deliveries first: a crash before the rows are written repeats them, never loses them.
        if !out.is_empty() {
            ctx.log.produce_batch(out).await?;
        }
        let update = derived.update();
        if !update.is_empty() {
            ctx.store.update_inbox(&update).await?;
        }
        for m in &advanced {
            ctx.store.set_read_marker(&m.user, &m.room, m.seq).await?;
        }
        consumer.commit(&checkpoints_of(&records)).await?;
        crate::health::batch("inbox", &records, batch_started.elapsed());
        metrics::batch(derived.notices.iter().map(|n| n.reason), advanced.len());
        tracing::debug!(
            events = events.len(),
            notices = derived.notices.len(),
            markers = advanced.len(),
            "inbox batch"
        );
    }
}

/// The batch's read markers that move a user's marker forward, in log order.
async fn advanced_markers(
    ctx: &Context,
    events: &[RoomEvent],
) -> Result<Vec<Advanced>, ProcessorError> {
    let reads: Vec<&RoomEvent> = events
        .iter()
        .filter(|e| e.kind == "read" && e.seq >= 0)
        .filter(|e| e.user.as_deref().is_some_and(|u| !u.is_empty()))
        .filter(|e| e.room.as_deref().is_some_and(tidings_store::valid_room))
        .collect();
    if reads.is_empty() {
        return Ok(Vec::new());
    }
    let key = |e: &RoomEvent| {
        (
            e.user.clone().unwrap_or_default(),
            e.room.clone().unwrap_or_default(),
        )
    };
    let mut keys: Vec<(String, String)> = reads.iter().map(|e| key(e)).collect();
    keys.sort();
    keys.dedup();
    let lookups: Vec<_> = keys
        .iter()
        .map(|(user, room)| ctx.store.read_marker(user, room))
        .collect();
    let stored: Vec<Option<i64>> = futures::stream::iter(lookups)
        .buffered(LOOKUPS_IN_FLIGHT)
        .try_collect()
        .await?;
    let mut current: HashMap<(String, String), i64> = keys
        .into_iter()
        .zip(stored)
        .map(|(k, v)| (k, v.unwrap_or(-1)))
        .collect();
    let mut advanced = Vec::new();
    for e in reads {
        let k = key(e);
        let Some(marker) = current.get_mut(&k) else {
            continue;
        };
        if e.seq > *marker {
            *marker = e.seq;
            advanced.push(Advanced {
                user: k.0,
                room: k.1,
                seq: e.seq,
                conn: e.origin_conn.clone(),
                trace_id: e.trace_id.clone(),
            });
        }
    }
    Ok(advanced)
}

/// A `notify` to every edge with connections of the notice's user.
fn notify(
    ctx: &Context,
    directory: &Directory,
    notice: &Notice,
    out: &mut Vec<OutRecord>,
) -> Result<(), ProcessorError> {
    let m = &notice.message;
    for edge in directory.user_edges(&notice.to) {
        let d = Delivery {
            room: Some(m.room.clone()),
            user: Some(m.from.clone()),
            seq: Some(m.seq),
            client_id: Some(m.client_id.clone()),
            text: Some(m.text.clone()),
            msg_ts: Some(m.ts),
            to: Some(notice.to.clone()),
            reason: Some(notice.reason.to_string()),
            ..delivery("notify", edge, &ctx.node, "")
        };
        out.push(OutRecord::new(DELIVERIES, edge, d.encode()?));
    }
    Ok(())
}

/// `read` to every edge with connections of the reader, `receipt` to every edge hosting the
/// room.
fn read(
    ctx: &Context,
    directory: &Directory,
    marker: &Advanced,
    out: &mut Vec<OutRecord>,
) -> Result<(), ProcessorError> {
    for edge in directory.user_edges(&marker.user) {
        let d = Delivery {
            room: Some(marker.room.clone()),
            seq: Some(marker.seq),
            to: Some(marker.user.clone()),
            conn: Some(marker.conn.clone()),
            ..delivery("read", edge, &ctx.node, &marker.trace_id)
        };
        out.push(OutRecord::new(DELIVERIES, edge, d.encode()?));
    }
    for edge in directory.edges(&marker.room) {
        let d = Delivery {
            room: Some(marker.room.clone()),
            user: Some(marker.user.clone()),
            seq: Some(marker.seq),
            ..delivery("receipt", edge, &ctx.node, &marker.trace_id)
        };
        out.push(OutRecord::new(DELIVERIES, edge, d.encode()?));
    }
    Ok(())
}
