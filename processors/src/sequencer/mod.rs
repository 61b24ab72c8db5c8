//! The sequencer: client events in, the room log out, exactly once.
//!
//! Per room, in the order the room's client events arrive (one partition, keyed by room):
//! - `send`: dedupe by (room, client id) (G4) → moderation (G5) → the pre-send hook, if
//!   configured (approve, reject, rewrite; then moderation again) → the next seq (G2). The
//!   message goes to the room log and its `ack` to the sender's edge in one transaction with
//!   the consumer offsets, so an ack exists only once the message is durable (G1). A
//!   duplicate gets an `ack` with the original seq and ts and nothing else; a rejection a
//!   `reject` and no seq.
//! - `join`: a `host` marker carrying the head `H`, a `host` subscription and a `joined`
//!   delivery with `H`, in one transaction (see ARCHITECTURE.md, gapless resume).
//! - `unhost`: an `unhost` marker and an `unhost` subscription.
//! - `head`: a `head` delivery with the room's head, for `history` to read its writes.
//! - `read`: a marker at most the head goes to the room log as a `read` event (the inbox
//!   processor keeps it) with an `ack`; one past the head gets a `reject` (`invalid`).
//! - `delete`: by a moderator or admin, or by the message's sender: a `delete` record naming
//!   the seq (which stays taken) and an audit record, with an `ack`; else `forbidden`.
//! - `mute`: by a moderator or admin: a `mute` record and an audit record, with an `ack`.
//!   From there on in the room's order, that user's sends get `forbidden` until it ends:
//!   sends already in flight when it was sequenced included.
//!
//! Recovery: the room log is the truth. After (re)start or reassignment all memory is
//! dropped; a room's head and client ids come from the store, which is complete up to
//! persistence's checkpoint, plus the room-log tail after that checkpoint, read once per
//! partition (after opening the consumer, which fences any older instance so the tail cannot
//! grow behind our back).

mod hook;
mod moderation;
mod mutes;
mod state;

pub use hook::PresendConfig;

use crate::dead_letter::{decode_or_dead_letter, skip};
use crate::runtime::{self, checkpoints_of, delivery, now_ms, read_to_end, valid_node};
use crate::{Backfill, Context, Processor, ProcessorError, PERSISTENCE_CHECKPOINT};
use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::StreamExt;
use hook::{Hook, Verdict};
use moderation::Moderator;
use state::State;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tidings_log::topics::{
    AUDIT, CLIENT_EVENTS, DEAD_LETTERS, DELIVERIES, ROOM_LOG, SUBSCRIPTIONS,
};
use tidings_log::{partition_for, ConsumerOptions, OutRecord, Record};
use tidings_schemas::{ClientEvent, LogRecord, ModeratorAction, RoomEvent, Subscription};
use tidings_store::{Direction, SeqRange, Store, StoreError, MAX_CLIENT_ID_LEN, MAX_USER_LEN};
use tokio_util::sync::CancellationToken;

pub const GROUP: &str = "tidings-sequencer";

/// Store look-ups in flight at once while preparing a batch.
const LOOKUPS_IN_FLIGHT: usize = 64;
/// Pause while waiting for persistence to catch up when memory is at its cap.
const SATURATED_PAUSE: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct SequencerConfig {
    /// Room heads kept in memory (G7). Beyond it, heads the store already has are evicted.
    pub max_rooms: usize,
    /// Client ids kept in memory (G7). Beyond it, ids the store already has are evicted.
    pub max_ids: usize,
    /// Client events per poll, hence per transaction.
    pub batch: usize,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        Self {
            max_rooms: 100_000,
            max_ids: 1_000_000,
            batch: 500,
        }
    }
}

#[derive(Default)]
pub struct Sequencer {
    config: SequencerConfig,
}

impl Sequencer {
    pub fn new(config: SequencerConfig) -> Self {
        Self { config }
    }
}

#[async_trait]
impl Processor for Sequencer {
    fn name(&self) -> &'static str {
        "sequencer"
    }

    fn consumes(&self) -> &'static [&'static str] {
        &[CLIENT_EVENTS]
    }

    fn produces(&self) -> &'static [&'static str] {
        &[ROOM_LOG, SUBSCRIPTIONS, DELIVERIES, DEAD_LETTERS, AUDIT]
    }

    fn backfill(&self) -> Backfill {
        Backfill::Refused(
            "the sequencer assigns seqs: run over client events again, it would sequence sends a second time (new seqs for ids it no longer remembers, duplicate messages in the room log) and answer requests long answered",
        )
    }

    async fn session(
        &self,
        ctx: &Context,
        shutdown: &CancellationToken,
    ) -> Result<(), ProcessorError> {
        self.run_session(ctx, shutdown).await
    }
}

/// What the store knows of a client id: (seq, ts if the message could be read).
type Known = HashMap<(String, String), Option<(i64, Option<i64>)>>;
/// The pre-send hook's verdict per (room, client id) of a batch's new sends.
type Verdicts = HashMap<(String, String), Verdict>;
/// The sender of each (room, seq) a batch deletes, when memory or the store knows it.
type Authors = HashMap<(String, i64), String>;

impl Sequencer {
    async fn run_session(
        &self,
        ctx: &Context,
        shutdown: &CancellationToken,
    ) -> Result<(), ProcessorError> {
        let options = ConsumerOptions {
            transactional_id: Some(format!("tidings-sequencer-{}", ctx.node)),
            ..Default::default()
        };
        // Open first: this fences a previous instance, so the room log stops moving under
        // the recovery scan below.
        let mut consumer = ctx.log.consumer(GROUP, &[CLIENT_EVENTS], options).await?;
        let room_partitions = ctx.log.partitions(ROOM_LOG).await?;
        let moderator = Moderator::new(&ctx.moderation);
        let hook =
            match &ctx.presend {
                Some(config) => Some(Hook::new(config.clone()).map_err(|_| {
                    ProcessorError::Internal("cannot build the pre-send hook client")
                })?),
                None => None,
            };
        let mut epoch = consumer.assignment_epoch();
        let mut state = State::new(self.config.max_rooms, self.config.max_ids);
        crate::health::set_ready("sequencer", true);
        loop {
            while state.over_cap() {
                state.evict(&*ctx.store).await?;
                if state.over_cap() {
                    tracing::warn!("sequencer memory at its cap with unpersisted entries; waiting for persistence");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(SATURATED_PAUSE) => {}
                    }
                }
            }
            let records = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                polled = consumer.poll(self.config.batch, runtime::POLL_WAIT) => polled?,
            };
            if consumer.assignment_epoch() != epoch {
                // Partitions moved: what we knew may be stale (another instance sequenced
                // our new rooms meanwhile). Start over from the log and the store.
                epoch = consumer.assignment_epoch();
                state = State::new(self.config.max_rooms, self.config.max_ids);
                tracing::info!(epoch, "assignment changed; sequencer state reset");
            }
            if records.is_empty() {
                continue;
            }
            let started = std::time::Instant::now();
            let outputs = self
                .sequence(
                    ctx,
                    &moderator,
                    hook.as_ref(),
                    &mut state,
                    room_partitions,
                    &records,
                )
                .await?;
            let sequenced = started.elapsed();
            consumer
                .commit_with(outputs, &checkpoints_of(&records))
                .await?;
            crate::health::batch("sequencer", &records, started.elapsed());
            tracing::debug!(
                events = records.len(),
                sequence_ms = sequenced.as_secs_f64() * 1e3,
                commit_ms = (started.elapsed() - sequenced).as_secs_f64() * 1e3,
                "batch"
            );
        }
    }

    /// Turns a batch into its outputs, updating `state` as if they were committed (if the
    /// commit fails the session ends and `state` goes with it). Records that do not decode
    /// become dead letters in the same outputs, so they are copied exactly once.
    async fn sequence(
        &self,
        ctx: &Context,
        moderator: &Moderator,
        hook: Option<&Hook>,
        state: &mut State,
        room_partitions: u32,
        records: &[Record],
    ) -> Result<Vec<OutRecord>, ProcessorError> {
        let mut out = Vec::new();
        let events: Vec<ClientEvent> = records
            .iter()
            .filter_map(|r| decode_or_dead_letter("sequencer", r, &mut out))
            .collect();
        let rooms: HashSet<&str> = events
            .iter()
            .filter_map(|e| e.room.as_deref())
            .filter(|r| tidings_store::valid_room(r))
            .collect();

        // 1. The unpersisted tail of every room-log partition this batch touches.
        for room in &rooms {
            let partition = partition_for(room, room_partitions);
            if !state.scanned.contains(&partition) {
                fold_tail(ctx, state, partition).await?;
                state.scanned.insert(partition);
            }
        }

        // 2. Heads of rooms not in memory: the store has them (nothing of theirs is in an
        // unpersisted tail, or step 1 would have put them in memory).
        let missing: Vec<&str> = rooms
            .iter()
            .copied()
            .filter(|r| !state.heads.contains(&r.to_string()))
            .collect();
        let lookups: Vec<BoxFuture<'_, _>> =
            missing.iter().map(|room| ctx.store.head(room)).collect();
        let heads = bounded_all(lookups).await;
        for (room, head) in missing.iter().zip(heads) {
            let head = head?;
            state.heads.insert(room.to_string(), head);
            if head == 0 {
                // Never written to: every id it will see is new or in memory.
                state.complete.insert(room.to_string());
            }
        }

        // 3. What the store knows of client ids not in memory (rooms whose ids are all in
        // memory need no look-up: that is every room created since this state began).
        let mut wanted: HashSet<(String, String)> = HashSet::new();
        for e in &events {
            if let (Some(room), Some(id)) = (e.room.as_deref(), e.client_id.as_deref()) {
                let key = (room.to_string(), id.to_string());
                if e.kind == "send"
                    && rooms.contains(room)
                    && valid_client_id(id)
                    && !state.ids.contains(&key)
                    && !state.complete.contains(room)
                {
                    wanted.insert(key);
                }
            }
        }
        let wanted: Vec<_> = wanted.into_iter().collect();
        let lookups: Vec<BoxFuture<'_, _>> = wanted
            .iter()
            .map(|(room, id)| Box::pin(lookup_id(&*ctx.store, room, id)) as BoxFuture<'_, _>)
            .collect();
        let found = bounded_all(lookups).await;
        let mut known = Known::new();
        for (key, found) in wanted.into_iter().zip(found) {
            known.insert(key, found?);
        }

        // 3b. The stored mutes of rooms with sends or mutes, read once per room.
        let now = now_ms();
        // One pass over the batch, not one per room.
        let unloaded: HashSet<&str> = events
            .iter()
            .filter(|e| e.kind == "send" || e.kind == "mute")
            .filter_map(|e| e.room.as_deref())
            .filter(|room| rooms.contains(room) && state.mutes.needs_load(room))
            .collect();
        let unloaded: Vec<&str> = unloaded.into_iter().collect();
        let lookups: Vec<BoxFuture<'_, _>> =
            unloaded.iter().map(|room| ctx.store.mutes(room)).collect();
        for (room, stored) in unloaded.iter().zip(bounded_all(lookups).await) {
            state.mutes.load(room, stored?, now);
        }

        // 3c. Who sent each message a delete names: memory, else the store.
        let mut wanted: HashSet<(String, i64)> = HashSet::new();
        for e in events.iter().filter(|e| e.kind == "delete") {
            if let (Some(room), Some(seq)) = (e.room.as_deref(), e.seq) {
                let key = (room.to_string(), seq);
                if rooms.contains(room) && seq >= 1 && !state.authors.contains(&key) {
                    wanted.insert(key);
                }
            }
        }
        let wanted: Vec<_> = wanted.into_iter().collect();
        let lookups: Vec<BoxFuture<'_, _>> = wanted
            .iter()
            .map(|(room, seq)| Box::pin(lookup_author(&*ctx.store, room, *seq)) as BoxFuture<'_, _>)
            .collect();
        let found = bounded_all(lookups).await;
        let mut authors = Authors::new();
        for (key, found) in wanted.into_iter().zip(found) {
            if let Some(author) = found? {
                authors.insert(key, author);
            }
        }

        // 4. The pre-send hook, for the sends that would take a seq, all at once (bounded),
        // so the batch waits for the slowest answer rather than for their sum. A retry of a
        // sequenced send is answered from memory or the store and never asks again.
        let verdicts = match hook {
            Some(hook) => ask_hook(hook, moderator, state, &known, &events, now).await,
            None => Verdicts::new(),
        };

        // 5. In order.
        let looked_up = Lookups {
            known: &known,
            verdicts: &verdicts,
            authors: &authors,
        };
        for event in &events {
            self.apply(ctx, moderator, state, &looked_up, event, &mut out)?;
        }
        Ok(out)
    }

    fn apply(
        &self,
        ctx: &Context,
        moderator: &Moderator,
        state: &mut State,
        looked_up: &Lookups<'_>,
        event: &ClientEvent,
        out: &mut Vec<OutRecord>,
    ) -> Result<(), ProcessorError> {
        let Lookups {
            known,
            verdicts,
            authors,
        } = looked_up;
        if !valid_node(&event.node) {
            tracing::warn!(event_id = %event.event_id, "client event without a usable edge node; skipped");
            return Ok(());
        }
        let room = match event
            .room
            .as_deref()
            .filter(|r| tidings_store::valid_room(r))
        {
            Some(room) => room,
            None => {
                if event.kind == "send" || event.kind == "join" {
                    out.push(reject(ctx, event, "invalid", "invalid room name")?);
                }
                return Ok(());
            }
        };
        let Some(head) = state.heads.get(&room.to_string()).copied() else {
            return Err(ProcessorError::Internal("room head not loaded"));
        };
        match event.kind.as_str() {
            "send" => {
                let client_id = event.client_id.as_deref().unwrap_or("");
                if !valid_client_id(client_id) {
                    out.push(reject(
                        ctx,
                        event,
                        "invalid",
                        "message id must be 1 to 64 characters",
                    )?);
                    return Ok(());
                }
                let key = (room.to_string(), client_id.to_string());
                // Dedupe before moderation: a retry gets its original answer.
                if let Some(&(seq, ts)) = state.ids.get(&key) {
                    out.push(ack(ctx, event, room, seq, Some(ts))?);
                    state.ids.touch(&key);
                    return Ok(());
                }
                if let Some(Some((seq, ts))) = known.get(&key) {
                    out.push(ack(ctx, event, room, *seq, *ts)?);
                    if let Some(ts) = ts {
                        state.ids.insert(key, (*seq, *ts));
                    }
                    return Ok(());
                }
                let user = event.user.as_deref().unwrap_or("");
                if let Some(until) = state.mutes.muted_until(room, user, now_ms()) {
                    let message =
                        format!("you are muted in {room} until {until} (ms since the epoch)");
                    out.push(reject(ctx, event, "forbidden", &message)?);
                    return Ok(());
                }
                let raw = match verdicts.get(&key) {
                    None | Some(Verdict::Approve) => event.text.as_deref().unwrap_or(""),
                    Some(Verdict::Rewrite(text)) => text.as_str(),
                    Some(Verdict::Reject(reason)) => {
                        out.push(reject(ctx, event, "rejected", reason)?);
                        return Ok(());
                    }
                    Some(Verdict::Unavailable(why)) => {
                        out.push(reject(ctx, event, "unavailable", why)?);
                        return Ok(());
                    }
                };
                let text = match moderator.check(raw) {
                    Ok(text) => text,
                    Err(rejection) => {
                        out.push(reject(ctx, event, rejection.code, &rejection.message)?);
                        return Ok(());
                    }
                };
                let seq = head + 1;
                let ts = now_ms();
                let message = RoomEvent {
                    role: None,
                    target: None,
                    until: None,
                    event_id: uuid::Uuid::new_v4().to_string(),
                    kind: "message".into(),
                    room: Some(room.to_string()),
                    user: event.user.clone(),
                    ts,
                    trace_id: event.trace_id.clone(),
                    node: ctx.node.clone(),
                    seq,
                    client_id: client_id.to_string(),
                    text,
                    origin_node: event.node.clone(),
                    origin_conn: event.conn.clone(),
                };
                out.push(OutRecord::new(ROOM_LOG, room, message.encode()?));
                out.push(ack(ctx, event, room, seq, Some(ts))?);
                state.heads.insert(room.to_string(), seq);
                state.ids.insert(key, (seq, ts));
                state.authored(room, seq, user);
            }
            "join" | "unhost" => {
                let kind = if event.kind == "join" {
                    "host"
                } else {
                    "unhost"
                };
                let marker = RoomEvent {
                    role: None,
                    target: None,
                    until: None,
                    event_id: uuid::Uuid::new_v4().to_string(),
                    kind: kind.into(),
                    room: Some(room.to_string()),
                    user: event.user.clone(),
                    ts: now_ms(),
                    trace_id: event.trace_id.clone(),
                    node: ctx.node.clone(),
                    seq: head,
                    client_id: String::new(),
                    text: String::new(),
                    origin_node: event.node.clone(),
                    origin_conn: event.conn.clone(),
                };
                let subscription = Subscription {
                    event_id: uuid::Uuid::new_v4().to_string(),
                    kind: kind.into(),
                    room: Some(room.to_string()),
                    user: None,
                    ts: now_ms(),
                    trace_id: event.trace_id.clone(),
                    node: event.node.clone(),
                    conn: None,
                };
                out.push(OutRecord::new(ROOM_LOG, room, marker.encode()?));
                out.push(OutRecord::new(
                    SUBSCRIPTIONS,
                    format!("{room}@{}", event.node),
                    subscription.encode()?,
                ));
                if event.kind == "join" {
                    let joined = tidings_schemas::Delivery {
                        room: Some(room.to_string()),
                        user: event.user.clone(),
                        conn: Some(event.conn.clone()),
                        seq: Some(head),
                        ..delivery("joined", &event.node, &ctx.node, &event.trace_id)
                    };
                    out.push(OutRecord::new(DELIVERIES, &event.node, joined.encode()?));
                }
                state.heads.touch(&room.to_string());
            }
            "head" => {
                // History's read-your-writes barrier: behind every send acked before it.
                let answer = tidings_schemas::Delivery {
                    room: Some(room.to_string()),
                    user: event.user.clone(),
                    conn: Some(event.conn.clone()),
                    client_id: event.client_id.clone(),
                    seq: Some(head),
                    ..delivery("head", &event.node, &ctx.node, &event.trace_id)
                };
                out.push(OutRecord::new(DELIVERIES, &event.node, answer.encode()?));
                state.heads.touch(&room.to_string());
            }
            "read" => {
                let seq = event.seq.unwrap_or(-1);
                let user = event.user.clone().filter(|u| !u.is_empty());
                if seq < 0 || seq > head || user.is_none() {
                    let message = format!("seq must be from 0 to the room's head ({head})");
                    out.push(reject(ctx, event, "invalid", &message)?);
                    return Ok(());
                }
                let marker = RoomEvent {
                    role: None,
                    target: None,
                    until: None,
                    event_id: uuid::Uuid::new_v4().to_string(),
                    kind: "read".into(),
                    room: Some(room.to_string()),
                    user,
                    ts: now_ms(),
                    trace_id: event.trace_id.clone(),
                    node: ctx.node.clone(),
                    seq,
                    client_id: String::new(),
                    text: String::new(),
                    origin_node: event.node.clone(),
                    origin_conn: event.conn.clone(),
                };
                out.push(OutRecord::new(ROOM_LOG, room, marker.encode()?));
                out.push(ack(ctx, event, room, seq, None)?);
                state.heads.touch(&room.to_string());
            }
            "delete" => {
                let seq = event.seq.unwrap_or(0);
                if seq < 1 || seq > head {
                    let message = format!("no message {seq} in {room} (its head is {head})");
                    out.push(reject(ctx, event, "invalid", &message)?);
                    return Ok(());
                }
                let key = (room.to_string(), seq);
                let author = state
                    .authors
                    .get(&key)
                    .or_else(|| authors.get(&key))
                    .cloned();
                let role = event.role.as_deref().unwrap_or("member");
                let actor = event.user.as_deref().unwrap_or("");
                if !moderates(role) {
                    match &author {
                        Some(author) if author == actor && !actor.is_empty() => {}
                        Some(_) => {
                            let message = "members may delete only their own messages";
                            out.push(reject(ctx, event, "forbidden", message)?);
                            return Ok(());
                        }
                        None => {
                            // Sequenced, but neither in memory nor stored yet: ask again.
                            let message = "that message is not stored yet; try again";
                            out.push(reject(ctx, event, "unavailable", message)?);
                            return Ok(());
                        }
                    }
                }
                let record = RoomEvent {
                    kind: "delete".into(),
                    seq,
                    target: author,
                    role: Some(role.to_string()),
                    ..control(ctx, event, room)
                };
                out.push(audit(ctx, &record)?);
                out.push(OutRecord::new(ROOM_LOG, room, record.encode()?));
                out.push(ack(ctx, event, room, seq, None)?);
                state.heads.touch(&room.to_string());
            }
            "mute" => {
                let role = event.role.as_deref().unwrap_or("member");
                if !moderates(role) {
                    let message = "only moderators and admins may mute";
                    out.push(reject(ctx, event, "forbidden", message)?);
                    return Ok(());
                }
                let target = event.target.as_deref().unwrap_or("");
                let Some(until) = event.until.filter(|_| valid_user(target)) else {
                    out.push(reject(
                        ctx,
                        event,
                        "invalid",
                        "mute needs a user and until",
                    )?);
                    return Ok(());
                };
                if state.mutes.set(room, target, until, now_ms()).is_err() {
                    let message = "too many mutes in force; try again later";
                    out.push(reject(ctx, event, "unavailable", message)?);
                    return Ok(());
                }
                let record = RoomEvent {
                    kind: "mute".into(),
                    seq: head,
                    target: Some(target.to_string()),
                    until: Some(until),
                    role: Some(role.to_string()),
                    ..control(ctx, event, room)
                };
                out.push(audit(ctx, &record)?);
                out.push(OutRecord::new(ROOM_LOG, room, record.encode()?));
                out.push(ack(ctx, event, room, head, None)?);
                state.heads.touch(&room.to_string());
            }
            other => {
                tracing::warn!(kind = other, event_id = %event.event_id, "unknown client event kind; skipped");
            }
        }
        Ok(())
    }
}

/// The hook's verdicts for the batch's sends that would take a seq: valid, not a retry of a
/// sequenced one, passing moderation. One call per (room, client id), however often it
/// appears in the batch.
async fn ask_hook(
    hook: &Hook,
    moderator: &Moderator,
    state: &State,
    known: &Known,
    events: &[ClientEvent],
    now: i64,
) -> Verdicts {
    let mut asked: Vec<((String, String), String, String)> = Vec::new();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for e in events {
        let (Some(room), Some(id)) = (e.room.as_deref(), e.client_id.as_deref()) else {
            continue;
        };
        if e.kind != "send" || !valid_node(&e.node) || !valid_client_id(id) {
            continue;
        }
        if !tidings_store::valid_room(room) || !state.heads.contains(&room.to_string()) {
            continue;
        }
        let key = (room.to_string(), id.to_string());
        if state.ids.get(&key).is_some() || matches!(known.get(&key), Some(Some(_))) {
            continue;
        }
        let user = e.user.as_deref().unwrap_or("");
        if state.mutes.muted_until(room, user, now).is_some() {
            continue;
        }
        let Ok(text) = moderator.check(e.text.as_deref().unwrap_or("")) else {
            continue;
        };
        if seen.insert(key.clone()) {
            asked.push((key, e.user.clone().unwrap_or_default(), text));
        }
    }
    let calls: Vec<BoxFuture<'_, Verdict>> = asked
        .iter()
        .map(|((room, id), user, text)| {
            Box::pin(hook.ask(room, user, text, id)) as BoxFuture<'_, Verdict>
        })
        .collect();
    let answers = bounded_all(calls).await;
    asked
        .into_iter()
        .map(|(key, _, _)| key)
        .zip(answers)
        .collect()
}

/// What a batch's apply step needs from the store look-ups and the hook.
struct Lookups<'a> {
    known: &'a Known,
    verdicts: &'a Verdicts,
    authors: &'a Authors,
}

fn moderates(role: &str) -> bool {
    matches!(role, "moderator" | "admin")
}

fn valid_user(user: &str) -> bool {
    !user.is_empty() && user.len() <= MAX_USER_LEN
}

/// A room-log record of `event`'s room, by `event`'s user, with no message in it.
fn control(ctx: &Context, event: &ClientEvent, room: &str) -> RoomEvent {
    RoomEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        kind: String::new(),
        room: Some(room.to_string()),
        user: event.user.clone(),
        ts: now_ms(),
        trace_id: event.trace_id.clone(),
        node: ctx.node.clone(),
        seq: 0,
        client_id: String::new(),
        text: String::new(),
        origin_node: event.node.clone(),
        origin_conn: event.conn.clone(),
        target: None,
        until: None,
        role: None,
    }
}

/// The audit record of a moderation record (delete or mute).
fn audit(ctx: &Context, record: &RoomEvent) -> Result<OutRecord, ProcessorError> {
    let action = ModeratorAction {
        event_id: uuid::Uuid::new_v4().to_string(),
        kind: record.kind.clone(),
        room: record.room.clone(),
        user: record.user.clone(),
        ts: record.ts,
        trace_id: record.trace_id.clone(),
        node: ctx.node.clone(),
        role: record.role.clone().unwrap_or_default(),
        seq: (record.kind == "delete").then_some(record.seq),
        target: record.target.clone(),
        until: record.until,
        jti: None,
    };
    let key = record.room.clone().unwrap_or_default();
    Ok(OutRecord::new(AUDIT, key, action.encode()?))
}

/// The sender of a stored message.
async fn lookup_author(
    store: &dyn Store,
    room: &str,
    seq: i64,
) -> Result<Option<String>, StoreError> {
    let range = SeqRange {
        after: seq - 1,
        before: seq + 1,
        direction: Direction::Ascending,
        limit: 1,
    };
    Ok(store
        .read(room, range)
        .await?
        .into_iter()
        .next()
        .map(|m| m.from))
}

fn valid_client_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_CLIENT_ID_LEN
}

fn ack(
    ctx: &Context,
    event: &ClientEvent,
    room: &str,
    seq: i64,
    ts: Option<i64>,
) -> Result<OutRecord, ProcessorError> {
    let ack = tidings_schemas::Delivery {
        room: Some(room.to_string()),
        user: event.user.clone(),
        conn: Some(event.conn.clone()),
        seq: Some(seq),
        client_id: event.client_id.clone(),
        msg_ts: ts,
        ..delivery("ack", &event.node, &ctx.node, &event.trace_id)
    };
    Ok(OutRecord::new(DELIVERIES, &event.node, ack.encode()?))
}

fn reject(
    ctx: &Context,
    event: &ClientEvent,
    code: &str,
    message: &str,
) -> Result<OutRecord, ProcessorError> {
    let reject = tidings_schemas::Delivery {
        room: event.room.clone(),
        user: event.user.clone(),
        conn: Some(event.conn.clone()),
        client_id: event.client_id.clone(),
        error_code: Some(code.to_string()),
        error_message: Some(message.to_string()),
        ..delivery("reject", &event.node, &ctx.node, &event.trace_id)
    };
    Ok(OutRecord::new(DELIVERIES, &event.node, reject.encode()?))
}

/// Runs look-ups concurrently, at most [`LOOKUPS_IN_FLIGHT`] at once, answers in order.
async fn bounded_all<T>(lookups: Vec<BoxFuture<'_, T>>) -> Vec<T> {
    futures::stream::iter(lookups)
        .buffered(LOOKUPS_IN_FLIGHT)
        .collect()
        .await
}

/// The stored seq of a client id and the stored message's ts (for the duplicate's ack).
async fn lookup_id(
    store: &dyn Store,
    room: &str,
    id: &str,
) -> Result<Option<(i64, Option<i64>)>, StoreError> {
    let Some(seq) = store.seq_of(room, id).await? else {
        return Ok(None);
    };
    let range = SeqRange {
        after: seq - 1,
        before: seq + 1,
        direction: Direction::Ascending,
        limit: 1,
    };
    let ts = store.read(room, range).await?.first().map(|m| m.ts);
    if ts.is_none() {
        tracing::warn!(
            room,
            seq,
            "client id stored without its message; acking without ts"
        );
    }
    Ok(Some((seq, ts)))
}

/// Folds the room-log tail after persistence's checkpoint into `state`: the last seq per
/// room there is that room's head (seqs only grow along a room's partition), and its
/// messages' client ids are not in the store yet.
async fn fold_tail(ctx: &Context, state: &mut State, partition: u32) -> Result<(), ProcessorError> {
    let from = ctx
        .store
        .checkpoint(PERSISTENCE_CHECKPOINT, partition)
        .await?
        .unwrap_or(0);
    let mut folded = 0usize;
    read_to_end(&*ctx.log, ROOM_LOG, partition, from, |record| {
        // Persistence and fan-out copy the room log's bad records; this scan runs again on
        // every start, so it only counts and logs them.
        let Some(event) = skip::<RoomEvent>("sequencer", record) else {
            return;
        };
        let Some(room) = event.room else {
            return;
        };
        folded += 1;
        // A read marker's seq is any seq up to the head, not the head.
        if event.kind == "read" {
            return;
        }
        if event.kind == "message" && !event.client_id.is_empty() {
            if let Some(user) = &event.user {
                state.authored(&room, event.seq, user);
            }
            state
                .ids
                .insert((room.clone(), event.client_id), (event.seq, event.ts));
        }
        if event.kind == "mute" {
            if let (Some(user), Some(until)) = (&event.target, event.until) {
                // Over the cap, the store's copy is read when the room is used.
                let _ = state.mutes.set(&room, user, until, now_ms());
            }
        }
        let head = state.heads.get(&room).copied().unwrap_or(0).max(event.seq);
        state.heads.insert(room, head);
    })
    .await?;
    tracing::info!(
        partition,
        from,
        folded,
        "room-log tail folded into sequencer state"
    );
    Ok(())
}
