//! Presence: who is online, per room and per user, on every edge.
//!
//! Consumes `tidings.presence`, where edges append connection lifecycle events (`online`,
//! `join`, `leave`, `offline`), their own `edge-start` and a `heartbeat` every few seconds,
//! and the questions `presence` and `status`. Produces, through the deliveries path to the
//! edges with members in the room: `presence` (a user's first connection entered a room, or
//! their last one left), `occupancy` (the count, for rooms over
//! [`PresenceConfig::events_max`] users, at most once a second per room and only when it
//! changed), and the answers. Keeps `last_seen` in the store.
//!
//! The topic has one partition, so every question is answered after every change appended
//! before it, by whichever edge. An edge silent for [`PresenceConfig::edge_timeout`] is dead:
//! its users go offline as of its last heartbeat; an edge that restarts says so first.
//!
//! Recovery: every 10 seconds the state (connections and edges, and the offset it
//! includes) is saved to the store as a snapshot, then the group's offsets are committed. A
//! new session loads the snapshot and replays the log after it, skipping what the snapshot
//! already has, so no connection is forgotten (no user missing) and none that closed comes
//! back (no phantom). Changes replayed after the snapshot are announced again: members may
//! hear the same `presence` twice, never a wrong one.

mod metrics;
mod state;

use crate::dead_letter::decode_or_dead_letter;
use crate::runtime::{self, delivery, now_ms};
use crate::{Backfill, Context, Processor, ProcessorError};
use async_trait::async_trait;
use state::{Change, Presence};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tidings_log::topics::{DEAD_LETTERS, DELIVERIES, PRESENCE};
use tidings_log::{Checkpoint, ConsumerOptions, OutRecord, StartAt};
use tidings_schemas::{ClientEvent, Delivery, LogRecord, PresenceEntry};
use tidings_store::MAX_USERS_PER_CALL;
use tokio_util::sync::CancellationToken;

pub const GROUP: &str = "tidings-presence";
/// The store snapshot's name.
pub const SNAPSHOT: &str = "presence";
/// Most users in a `presence` answer (then `truncated`).
pub const MAX_ANSWER_USERS: usize = 1000;
/// Records per poll.
const BATCH: usize = 1000;
/// How long a poll waits: also the resolution of the occupancy and liveness clocks.
const POLL_WAIT: Duration = Duration::from_millis(200);
/// How often the state is saved (when it changed). Each save writes the whole state; at
/// 10,000 connections that is ~1 KB of memory per connection held by the embedded store
/// after each write (BENCHMARKS.md), so not more often: a restart replays at most this long.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(10);
/// Occupancy goes out at most this often per room.
const OCCUPANCY_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceConfig {
    /// Rooms with more users online send `occupancy` instead of per-user events
    /// (`TIDINGS_PRESENCE_EVENTS_MAX`).
    pub events_max: usize,
    /// An edge without a heartbeat for this long is dead. Edges beat every 5 s.
    pub edge_timeout: Duration,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            events_max: 500,
            edge_timeout: Duration::from_secs(15),
        }
    }
}

pub struct PresenceProcessor;

#[async_trait]
impl Processor for PresenceProcessor {
    fn name(&self) -> &'static str {
        "presence"
    }

    fn consumes(&self) -> &'static [&'static str] {
        &[PRESENCE]
    }

    fn produces(&self) -> &'static [&'static str] {
        &[DELIVERIES, DEAD_LETTERS]
    }

    fn backfill(&self) -> Backfill {
        Backfill::Refused(
            "presence tracks who is online now and tells live clients: old connection events would corrupt its state and announce stale presence",
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

/// When each large room last had its occupancy sent, and what it said.
#[derive(Default)]
struct Occupancy {
    sent: HashMap<String, (Instant, usize)>,
    due: HashSet<String>,
}

/// A `status` question waiting for `last_seen` from the store.
struct StatusQuestion {
    event: ClientEvent,
    users: Vec<(String, bool)>,
}

async fn load(ctx: &Context) -> Result<Presence, ProcessorError> {
    let state = match ctx.store.snapshot(SNAPSHOT, 0).await? {
        Some((_, bytes)) => Presence::from_snapshot(&bytes).unwrap_or_else(|error| {
            tracing::error!(%error, "presence snapshot unreadable; starting from the log");
            Presence::default()
        }),
        None => Presence::default(),
    };
    tracing::info!(
        connections = state.connections(),
        rooms = state.rooms(),
        position = state.positions.get(&0).copied().unwrap_or(0),
        "presence state loaded"
    );
    Ok(state)
}

async fn session(ctx: &Context, shutdown: &CancellationToken) -> Result<(), ProcessorError> {
    let options = ConsumerOptions {
        start_at: StartAt::Earliest,
        ..Default::default()
    };
    let mut consumer = ctx.log.consumer(GROUP, &[PRESENCE], options).await?;
    let mut epoch = consumer.assignment_epoch();
    let mut state = load(ctx).await?;
    metrics::observe(&state);
    let mut occupancy = Occupancy::default();
    let mut changed_since_snapshot = false;
    let mut last_snapshot = Instant::now();
    crate::health::set_ready("presence", true);
    loop {
        let records = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            polled = consumer.poll(BATCH, POLL_WAIT) => polled?,
        };
        if consumer.assignment_epoch() != epoch {
            epoch = consumer.assignment_epoch();
            state = load(ctx).await?;
            occupancy = Occupancy::default();
        }
        let batch_started = Instant::now();
        let mut out = Vec::new();
        let mut changes = Vec::new();
        let mut questions = Vec::new();
        for record in &records {
            let next = state.positions.get(&record.partition).copied().unwrap_or(0);
            if record.offset < next {
                continue; // already in the snapshot
            }
            state.positions.insert(record.partition, record.offset + 1);
            changed_since_snapshot = true;
            let Some(event) = decode_or_dead_letter::<ClientEvent>("presence", record, &mut out)
            else {
                continue;
            };
            apply(
                ctx,
                &mut state,
                event,
                &mut changes,
                &mut questions,
                &mut out,
            )?;
        }
        // Only once the log is read to its end can silence mean death.
        if records.len() < BATCH {
            let deadline = now_ms() - ctx.presence.edge_timeout.as_millis() as i64;
            let expired = state.expire_edges(deadline);
            changed_since_snapshot |= !expired.is_empty();
            changes.extend(expired);
        }
        let mut seen = Vec::new();
        announce(ctx, &state, &mut occupancy, changes, &mut seen, &mut out)?;
        occupancy_due(ctx, &state, &mut occupancy, &mut out)?;
        answer_status(ctx, questions, &mut out).await?;
        if !out.is_empty() {
            ctx.log.produce_batch(out).await?;
        }
        for chunk in seen.chunks(MAX_USERS_PER_CALL) {
            ctx.store.set_last_seen(chunk).await?;
        }
        if !records.is_empty() {
            crate::health::batch("presence", &records, batch_started.elapsed());
        }
        metrics::observe(&state);
        if changed_since_snapshot && last_snapshot.elapsed() >= SNAPSHOT_EVERY {
            save(ctx, &state).await?;
            let checkpoints: Vec<Checkpoint> = state
                .positions
                .iter()
                .map(|(&partition, &next_offset)| Checkpoint {
                    topic: PRESENCE.to_string(),
                    partition,
                    next_offset,
                })
                .collect();
            consumer.commit(&checkpoints).await?;
            changed_since_snapshot = false;
            last_snapshot = Instant::now();
        }
    }
}

async fn save(ctx: &Context, state: &Presence) -> Result<(), ProcessorError> {
    let bytes = state
        .snapshot()
        .map_err(|_| ProcessorError::Internal("presence snapshot does not encode"))?;
    match ctx
        .store
        .save_snapshot(
            SNAPSHOT,
            0,
            state.positions.get(&0).copied().unwrap_or(0),
            &bytes,
        )
        .await
    {
        Ok(()) => Ok(()),
        // Too big to save: keep serving; a restart replays more of the log.
        Err(error @ tidings_store::StoreError::TooLarge { .. }) => {
            tracing::error!(%error, "presence snapshot not saved");
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

fn apply(
    ctx: &Context,
    state: &mut Presence,
    event: ClientEvent,
    changes: &mut Vec<Change>,
    questions: &mut Vec<StatusQuestion>,
    out: &mut Vec<OutRecord>,
) -> Result<(), ProcessorError> {
    if !runtime::valid_node(&event.node) {
        return Ok(());
    }
    let node = event.node.as_str();
    let user = event.user.as_deref().unwrap_or("");
    if event.kind != "presence" && event.kind != "status" {
        state.seen_edge(node, event.ts);
    }
    match (event.kind.as_str(), event.room.as_deref()) {
        ("heartbeat", _) => {}
        ("edge-start", _) => changes.extend(state.edge_started(node, event.ts)),
        ("online", _) if !user.is_empty() => {
            state.online(node, &event.conn, user, event.user_name.clone())
        }
        ("offline", _) => changes.extend(state.offline(node, &event.conn, event.ts)),
        ("join", Some(room)) if !user.is_empty() => {
            changes.extend(state.join(node, &event.conn, user, event.user_name.clone(), room))
        }
        ("leave", Some(room)) => changes.extend(state.leave(node, &event.conn, room)),
        ("presence", Some(room)) => {
            let users = state.room_users(room, MAX_ANSWER_USERS);
            let count = state.room_count(room);
            let answer = Delivery {
                room: Some(room.to_string()),
                conn: Some(event.conn.clone()),
                client_id: event.client_id.clone(),
                count: Some(count as i64),
                truncated: Some(count > users.len()),
                users: Some(
                    users
                        .into_iter()
                        .map(|(user, name)| PresenceEntry {
                            user,
                            name,
                            online: Some(true),
                            last_seen: None,
                        })
                        .collect(),
                ),
                ..delivery("presence-answer", node, &ctx.node, &event.trace_id)
            };
            out.push(OutRecord::new(DELIVERIES, node, answer.encode()?));
        }
        ("status", _) => {
            // Online as of this point in the log; last_seen is read after the batch.
            let users = event
                .users
                .clone()
                .unwrap_or_default()
                .into_iter()
                .take(MAX_USERS_PER_CALL)
                .map(|u| {
                    let online = state.is_online(&u);
                    (u, online)
                })
                .collect();
            questions.push(StatusQuestion { event, users });
        }
        (kind, _) => {
            tracing::debug!(kind, "presence event skipped");
        }
    }
    Ok(())
}

/// Turns changes into `presence` deliveries (or due occupancy, for large rooms) and
/// `last_seen` writes.
fn announce(
    ctx: &Context,
    state: &Presence,
    occupancy: &mut Occupancy,
    changes: Vec<Change>,
    seen: &mut Vec<(String, i64)>,
    out: &mut Vec<OutRecord>,
) -> Result<(), ProcessorError> {
    let max = ctx.presence.events_max;
    for change in changes {
        let (room, user, name, online) = match change {
            Change::UserOffline { user, ts } => {
                seen.push((user, ts));
                continue;
            }
            Change::RoomOnline { room, user, name } => (room, user, name, true),
            Change::RoomOffline { room, user } => (room, user, None, false),
        };
        let count = state.room_count(&room);
        // Past the limit (or just back from it), per-user events would flood the room.
        if count > max || (!online && count == max) || occupancy.sent.contains_key(&room) {
            occupancy.due.insert(room);
            continue;
        }
        for node in state.room_nodes(&room) {
            let event = Delivery {
                room: Some(room.clone()),
                user: Some(user.clone()),
                user_name: name.clone(),
                on: Some(online),
                ..delivery("presence", &node, &ctx.node, "")
            };
            out.push(OutRecord::new(DELIVERIES, &node, event.encode()?));
        }
    }
    Ok(())
}

/// `occupancy` for large rooms whose count changed, at most once a second each; a room
/// stays due until its latest count went out.
fn occupancy_due(
    ctx: &Context,
    state: &Presence,
    occupancy: &mut Occupancy,
    out: &mut Vec<OutRecord>,
) -> Result<(), ProcessorError> {
    let now = Instant::now();
    let due: Vec<String> = occupancy.due.iter().cloned().collect();
    for room in due {
        let count = state.room_count(&room);
        match occupancy.sent.get(&room) {
            Some((at, _)) if now.duration_since(*at) < OCCUPANCY_EVERY => continue,
            Some((_, sent)) if *sent == count => {}
            _ => {
                for node in state.room_nodes(&room) {
                    let event = Delivery {
                        room: Some(room.clone()),
                        count: Some(count as i64),
                        ..delivery("occupancy", &node, &ctx.node, "")
                    };
                    out.push(OutRecord::new(DELIVERIES, &node, event.encode()?));
                }
            }
        }
        occupancy.due.remove(&room);
        if count <= ctx.presence.events_max {
            // Small again: per-user events resume after this last count.
            occupancy.sent.remove(&room);
        } else {
            occupancy.sent.insert(room, (now, count));
        }
    }
    Ok(())
}

async fn answer_status(
    ctx: &Context,
    questions: Vec<StatusQuestion>,
    out: &mut Vec<OutRecord>,
) -> Result<(), ProcessorError> {
    for question in questions {
        let users: Vec<String> = question.users.iter().map(|(u, _)| u.clone()).collect();
        let last_seen = ctx.store.last_seen(&users).await?;
        let entries = question
            .users
            .into_iter()
            .zip(last_seen)
            .map(|((user, online), last_seen)| PresenceEntry {
                user,
                name: None,
                online: Some(online),
                last_seen,
            })
            .collect();
        let event = &question.event;
        let answer = Delivery {
            conn: Some(event.conn.clone()),
            client_id: event.client_id.clone(),
            users: Some(entries),
            ..delivery("status-answer", &event.node, &ctx.node, &event.trace_id)
        };
        out.push(OutRecord::new(DELIVERIES, &event.node, answer.encode()?));
    }
    Ok(())
}
