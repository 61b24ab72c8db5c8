//! What this edge tells the presence processor: the lifecycle of its connections (online,
//! join, leave, offline), that it (re)started, and a heartbeat every [`HEARTBEAT_EVERY`]
//! (the processor takes an edge's users offline after 15 s of silence). Also the questions
//! `presence` and `status`, whose answers come back as deliveries.
//!
//! A connection's records are appended by different tasks; a ticket per record, taken in
//! the order the events happened, keeps them in that order on the topic (`crate::order`).

use crate::conn::Conn;
use crate::errors::ClientError;
use crate::order::Turn;
use crate::rooms::Member;
use crate::state::{now_ms, Shared};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tidings_log::{topics, OutRecord};
use tidings_schemas::{ClientEvent, Delivery, LogRecord};
use tokio_util::sync::CancellationToken;

/// How often an edge says it is alive.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// A presence record from this edge (`conn` empty for the edge's own records).
pub fn record(shared: &Shared, kind: &str, conn: Option<&Conn>, room: Option<&str>) -> ClientEvent {
    ClientEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        kind: kind.to_string(),
        room: room.map(str::to_string),
        user: conn.map(|c| c.user.clone()),
        ts: now_ms(),
        trace_id: uuid::Uuid::new_v4().to_string(),
        node: shared.config.node.clone(),
        conn: conn.map(|c| c.id.clone()).unwrap_or_default(),
        client_id: None,
        text: None,
        on: None,
        user_name: conn.and_then(|c| c.name.clone()),
        users: None,
    }
}

async fn append(shared: &Shared, ev: &ClientEvent) -> Result<(), ClientError> {
    let bytes = ev
        .encode()
        .map_err(|e| ClientError::invalid(format!("cannot encode: {e}")))?;
    // One partition: the key only has to be stable.
    let record = OutRecord::new(topics::PRESENCE, &ev.node, bytes)
        .with_header("trace_id", ev.trace_id.clone());
    shared.log.produce(record).await?;
    Ok(())
}

/// Appends `ev` once every record of this connection ticketed before `turn` is in.
pub async fn append_in_turn(
    shared: &Shared,
    ev: &ClientEvent,
    turn: Turn,
) -> Result<(), ClientError> {
    turn.wait().await;
    let result = append(shared, ev).await;
    drop(turn);
    result
}

/// A connection opened: call in the connect handler, so its ticket comes first.
pub fn online(shared: &Arc<Shared>, conn: &Arc<Conn>) {
    let turn = conn.presence.ticket();
    let ev = record(shared, "online", Some(conn), None);
    let shared = shared.clone();
    tokio::spawn(async move {
        if let Err(e) = append_in_turn(&shared, &ev, turn).await {
            tracing::warn!("presence online: {e}");
        }
    });
}

/// A membership is established. Skipped when a leave or disconnect got there first (they
/// speak for it). `announced` is set before looking and read after `gone` is set by a
/// leave, so one of the two always sees the other.
pub async fn joined(shared: &Shared, member: &Member) -> Result<(), ClientError> {
    let turn = member.conn.presence.ticket();
    turn.wait().await;
    member.announced.store(true, Ordering::SeqCst);
    if member.is_gone() {
        return Ok(());
    }
    let ev = record(shared, "join", Some(&member.conn), Some(&member.room));
    append_in_turn(shared, &ev, turn).await
}

/// A membership ended by `leave` (a disconnect says `offline` once for all rooms).
pub async fn left(shared: &Shared, member: &Member) {
    if !member.announced.load(Ordering::SeqCst) {
        return;
    }
    let turn = member.conn.presence.ticket();
    let ev = record(shared, "leave", Some(&member.conn), Some(&member.room));
    if let Err(e) = append_in_turn(shared, &ev, turn).await {
        tracing::warn!(room = %member.room, "presence leave: {e}");
    }
}

/// A connection closed: call after `Conn::closed`, so a join ticketed later sees it closed.
pub async fn offline(shared: &Shared, conn: &Conn) {
    let turn = conn.presence.ticket();
    let ev = record(shared, "offline", Some(conn), None);
    if let Err(e) = append_in_turn(shared, &ev, turn).await {
        tracing::warn!("presence offline: {e}");
    }
}

/// Asks the presence processor `ev` (a `presence` or `status` question) and waits for the
/// answer.
pub async fn ask(
    shared: &Shared,
    conn: &Conn,
    mut ev: ClientEvent,
) -> Result<Delivery, ClientError> {
    let nonce = uuid::Uuid::new_v4().to_string();
    ev.client_id = Some(nonce.clone());
    let (waiting, answer) = shared.pending.wait_answer(&conn.id, &nonce);
    append(shared, &ev).await?;
    let answer = tokio::time::timeout(shared.config.reply_timeout, answer).await;
    drop(waiting);
    match answer {
        Ok(Ok(d)) => Ok(d),
        _ => Err(ClientError::unavailable("no answer from presence in time")),
    }
}

/// Says this edge (re)started, so connections it had before are gone; then beats every
/// [`HEARTBEAT_EVERY`] until `shutdown`.
pub async fn started(shared: &Shared) -> Result<(), ClientError> {
    append(shared, &record(shared, "edge-start", None, None)).await
}

pub async fn heartbeat(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
        }
        if let Err(e) = append(&shared, &record(&shared, "heartbeat", None, None)).await {
            tracing::warn!("presence heartbeat: {e}");
        }
    }
}
