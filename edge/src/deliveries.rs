//! This edge's deliveries: the consumer of its partition of `tidings.deliveries`, the replies
//! (acks, rejects, joined) that handlers wait for, and the hand-off of live messages and
//! typing notices to local room members.

use crate::conn::EmitError;
use crate::errors::{rejected, ClientError};
use crate::protocol::{
    DeletedOut, EncodedMessage, MessageOut, NotifyOut, OccupancyOut, PacketSize, PresenceOut,
    ReadOut, TypingOut,
};
use crate::rooms::{BufferBound, Member, Offer};
use crate::state::{lock, Shared};
use crate::{catchup, rooms::Next};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tidings_log::{topics, PartitionReader};
use tidings_schemas::{Delivery, LogRecord};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// How a send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Acked { seq: i64, ts: i64 },
    Rejected(ClientError),
}

/// (conn, room, client id)
type SendKey = (String, String, String);
/// (conn, room)
type JoinKey = (String, String);
type Waiters<K, T> = Mutex<HashMap<K, Vec<(u64, oneshot::Sender<T>)>>>;

/// Handlers waiting for a processor's reply.
#[derive(Default)]
pub struct Pending {
    next_id: AtomicU64,
    sends: Waiters<SendKey, SendOutcome>,
    joins: Waiters<JoinKey, i64>,
    /// Questions answered by a processor (history's `head`, `presence`, `status`):
    /// (conn, nonce) → the answer.
    answers: Waiters<JoinKey, Delivery>,
}

/// Removes its waiter when dropped (answered, timed out or abandoned).
pub struct Waiting<'a, K: std::hash::Hash + Eq, T> {
    map: &'a Waiters<K, T>,
    key: K,
    id: u64,
}

impl<K: std::hash::Hash + Eq, T> Drop for Waiting<'_, K, T> {
    fn drop(&mut self) {
        let mut map = lock(self.map);
        if let Some(list) = map.get_mut(&self.key) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                map.remove(&self.key);
            }
        }
    }
}

fn wait<'a, K: std::hash::Hash + Eq + Clone, T>(
    map: &'a Waiters<K, T>,
    id: u64,
    key: K,
) -> (Waiting<'a, K, T>, oneshot::Receiver<T>) {
    let (tx, rx) = oneshot::channel();
    lock(map).entry(key.clone()).or_default().push((id, tx));
    (Waiting { map, key, id }, rx)
}

fn answer<K: std::hash::Hash + Eq, T: Clone>(map: &Waiters<K, T>, key: &K, value: T) -> bool {
    let waiters = lock(map).remove(key);
    match waiters {
        Some(list) => {
            for (_, tx) in list {
                let _ = tx.send(value.clone());
            }
            true
        }
        None => false,
    }
}

impl Pending {
    pub fn wait_send(
        &self,
        conn: &str,
        room: &str,
        client_id: &str,
    ) -> (
        Waiting<'_, SendKey, SendOutcome>,
        oneshot::Receiver<SendOutcome>,
    ) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        wait(
            &self.sends,
            id,
            (conn.into(), room.into(), client_id.into()),
        )
    }

    pub fn wait_answer(
        &self,
        conn: &str,
        nonce: &str,
    ) -> (Waiting<'_, JoinKey, Delivery>, oneshot::Receiver<Delivery>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        wait(&self.answers, id, (conn.into(), nonce.into()))
    }

    pub fn wait_join(
        &self,
        conn: &str,
        room: &str,
    ) -> (Waiting<'_, JoinKey, i64>, oneshot::Receiver<i64>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        wait(&self.joins, id, (conn.into(), room.into()))
    }
}

/// Reads this edge's deliveries partition until `shutdown`, reopening the reader after errors.
pub async fn consume(
    shared: Arc<Shared>,
    mut reader: Box<dyn PartitionReader>,
    shutdown: CancellationToken,
) {
    loop {
        let polled = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = reader.poll(512, Duration::from_millis(500)) => r,
        };
        match polled {
            Ok(records) => {
                for record in records {
                    shared
                        .delivery_position
                        .store(record.offset + 1, Ordering::Relaxed);
                    if record.key != shared.config.node {
                        continue;
                    }
                    match Delivery::decode(&record.value) {
                        Ok(d) if d.edge == shared.config.node => dispatch(&shared, d),
                        Ok(_) => {}
                        // Counted and logged only: edges are thin, and the processors that
                        // wrote this partition copy their own inputs' bad records.
                        Err(e) => {
                            shared.metrics.bad_deliveries.inc();
                            tracing::warn!(
                                topic = %record.topic,
                                partition = record.partition,
                                offset = record.offset,
                                "bad delivery skipped: {e}"
                            );
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!("deliveries reader: {e}; reopening");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                let from = shared.delivery_position.load(Ordering::Relaxed);
                match shared
                    .log
                    .reader(topics::DELIVERIES, shared.delivery_partition, from)
                    .await
                {
                    Ok(r) => reader = r,
                    Err(e) => tracing::warn!("reopening deliveries reader: {e}"),
                }
            }
        }
    }
}

/// Samples the consumer lag (end offset − position) every `config.lag_sample_interval`.
pub async fn sample_lag(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(shared.config.lag_sample_interval) => {}
        }
        if let Ok(end) = shared
            .log
            .end_offset(topics::DELIVERIES, shared.delivery_partition)
            .await
        {
            let pos = shared.delivery_position.load(Ordering::Relaxed);
            shared.metrics.delivery_lag.set((end - pos).max(0));
        }
    }
}

/// Acts on one delivery addressed to this edge.
pub fn dispatch(shared: &Arc<Shared>, d: Delivery) {
    match d.kind.as_str() {
        "ack" | "reject" => {
            let (Some(conn), Some(client_id)) = (d.conn, d.client_id) else {
                return;
            };
            let outcome = if d.kind == "ack" {
                SendOutcome::Acked {
                    seq: d.seq.unwrap_or(0),
                    ts: d.msg_ts.unwrap_or(d.ts),
                }
            } else {
                SendOutcome::Rejected(rejected(d.error_code, d.error_message))
            };
            let key = (conn, d.room.unwrap_or_default(), client_id);
            answer(&shared.pending.sends, &key, outcome);
        }
        "joined" => {
            let (Some(conn), Some(room)) = (d.conn, d.room) else {
                return;
            };
            answer(&shared.pending.joins, &(conn, room), d.seq.unwrap_or(0));
        }
        "head" | "presence-answer" | "status-answer" => {
            let (Some(conn), Some(nonce)) = (d.conn.clone(), d.client_id.clone()) else {
                return;
            };
            answer(&shared.pending.answers, &(conn, nonce), d);
        }
        "presence" => {
            let (Some(room), Some(user)) = (d.room, d.user) else {
                return;
            };
            let out = PresenceOut {
                room,
                user,
                online: d.on.unwrap_or(false),
            };
            to_announced_members(shared, &out.room, "presence", &out);
        }
        "occupancy" => {
            let (Some(room), Some(count)) = (d.room, d.count) else {
                return;
            };
            let out = OccupancyOut { room, count };
            to_announced_members(shared, &out.room, "occupancy", &out);
        }
        "notify" => {
            let (Some(room), Some(seq), Some(to)) = (d.room, d.seq, d.to) else {
                return;
            };
            let out = NotifyOut {
                room,
                seq,
                from: d.user.unwrap_or_default(),
                text: d.text.unwrap_or_default(),
                kind: d.reason.unwrap_or_default(),
            };
            // Volatile like presence: `inbox` has it for good.
            for conn in shared.users.conns_of(&to) {
                // A room the token does not allow never shows (v3).
                if !conn.rooms().contains_key(&out.room)
                    && conn.access().may_read(&out.room, &conn.user)
                {
                    let _ = conn.emit("notify", &out);
                }
            }
        }
        "read" => {
            let (Some(room), Some(seq), Some(to)) = (d.room, d.seq, d.to) else {
                return;
            };
            let out = ReadOut {
                room,
                user: None,
                seq,
            };
            for conn in shared.users.conns_of(&to) {
                if d.conn.as_deref() != Some(conn.id.as_str()) {
                    let _ = conn.emit("read", &out);
                }
            }
        }
        "receipt" => {
            let (Some(room), Some(seq), Some(user)) = (d.room, d.seq, d.user) else {
                return;
            };
            let Some(entry) = shared.rooms.get(&room) else {
                return;
            };
            let out = ReadOut {
                room,
                user: Some(user),
                seq,
            };
            entry.for_each(|member| {
                if Some(&member.conn.user) != out.user.as_ref() {
                    let _ = member.conn.emit("receipt", &out);
                }
            });
        }
        "message" => {
            let (Some(room), Some(seq)) = (d.room, d.seq) else {
                return;
            };
            let Some(entry) = shared.rooms.get(&room) else {
                return;
            };
            let msg = MessageOut {
                room,
                seq,
                id: d.client_id.unwrap_or_default(),
                from: d.user.unwrap_or_default(),
                text: d.text.unwrap_or_default(),
                ts: d.msg_ts.unwrap_or(d.ts),
                deleted: false,
            };
            let msg = match EncodedMessage::new(&msg) {
                Ok(m) => Arc::new(m),
                Err(e) => {
                    tracing::warn!(room = %msg.room, seq, "cannot encode a message: {e}");
                    return;
                }
            };
            let bound = BufferBound {
                messages: shared.config.max_join_buffer,
                bytes: shared.config.max_join_buffer_bytes,
            };
            entry.for_each(|member| match member.offer(&msg, bound) {
                Offer::Done => {}
                Offer::StartFill => {
                    tokio::spawn(fill(shared.clone(), member.clone()));
                }
                Offer::Kick(reason) => member.conn.kick(reason),
            });
        }
        "typing" => {
            let (Some(room), Some(user)) = (d.room, d.user) else {
                return;
            };
            let Some(entry) = shared.rooms.get(&room) else {
                return;
            };
            let out = TypingOut {
                room,
                user,
                on: d.on.unwrap_or(false),
            };
            entry.for_each(|member| {
                if member.conn.user != out.user {
                    // Typing notices are volatile: a full buffer just loses one.
                    let _ = member.conn.emit("typing", &out);
                }
            });
        }
        "deleted" => {
            let (Some(room), Some(seq)) = (d.room, d.seq) else {
                return;
            };
            let Some(entry) = shared.rooms.get(&room) else {
                return;
            };
            let out = DeletedOut { room, seq };
            // A client that cannot take it would keep showing the text: it is dropped, and
            // sees the deletion in history when it comes back.
            entry.for_each(|member| {
                if member.conn.emit("deleted", &out) == Err(EmitError::Full) {
                    member.conn.kick("slow consumer (deleted)");
                }
            });
        }
        other => tracing::debug!(kind = other, "ignoring delivery"),
    }
}

/// Emits a presence notice to the members of `room` whose own join presence has seen: one
/// still joining is not in the count these notices follow (in a join storm, most of the room
/// would be). Volatile like typing: `presence {room}` gives the whole picture again.
fn to_announced_members<T: serde::Serialize + PacketSize>(
    shared: &Shared,
    room: &str,
    event: &str,
    out: &T,
) {
    let Some(entry) = shared.rooms.get(room) else {
        return;
    };
    entry.for_each(|member| {
        if member.announced.load(Ordering::Acquire) {
            let _ = member.conn.emit(event, out);
        }
    });
}

/// Brings a membership that is not live up to date: emits buffered messages in order, reading
/// gaps from the store, then goes live. A failure drops the connection (it resumes with
/// `since` when it comes back).
pub async fn fill(shared: Arc<Shared>, member: Arc<Member>) {
    let patience = shared.config.catchup_timeout;
    loop {
        if member.is_gone() {
            return;
        }
        match member.next() {
            Next::Live => return,
            Next::Emit(msg) => {
                if member
                    .conn
                    .emit_paced("message", msg.as_ref(), patience)
                    .await
                    .is_err()
                {
                    member.conn.kick("slow_consumer");
                    return;
                }
                member.sent(msg.seq);
            }
            Next::Gap { from, to } => {
                let result = catchup::replay(
                    &shared.store,
                    &member.conn,
                    &member.room,
                    from,
                    to,
                    patience,
                    |seq| {
                        member.sent(seq);
                        !member.is_gone()
                    },
                )
                .await;
                if let Err(e) = result {
                    tracing::warn!(room = %member.room, "filling a gap failed: {e}");
                    member.conn.kick("catchup_failed");
                    return;
                }
            }
        }
    }
}
