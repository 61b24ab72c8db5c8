//! What this edge tells the presence processor: the lifecycle of its connections (online,
//! join, leave, offline), that it (re)started, and a heartbeat every [`HEARTBEAT_EVERY`]
//! (the processor takes an edge's users offline after 15 s of silence). The questions
//! `presence` and `status` are asked by the handlers.
//!
//! A connection's records are appended by different tasks; a ticket per record, taken in
//! the order the events happened, keeps them in that order on the topic (`crate::order`).

use crate::conn::Conn;
use crate::errors::ClientError;
use crate::handlers::{client_event, produce};
use crate::order::Turn;
use crate::rooms::Member;
use crate::state::Shared;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tidings_log::topics;
use tidings_schemas::ClientEvent;
use tokio_util::sync::CancellationToken;

/// How often an edge says it is alive.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

async fn append(shared: &Shared, ev: &ClientEvent) -> Result<(), ClientError> {
    produce(shared, topics::PRESENCE, ev).await
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
    let ev = client_event(shared, "online", Some(conn), None);
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
    let ev = client_event(shared, "join", Some(&member.conn), Some(&member.room));
    append_in_turn(shared, &ev, turn).await
}

/// A membership ended by `leave` (a disconnect says `offline` once for all rooms).
pub async fn left(shared: &Shared, member: &Member) {
    if !member.announced.load(Ordering::SeqCst) {
        return;
    }
    let turn = member.conn.presence.ticket();
    let ev = client_event(shared, "leave", Some(&member.conn), Some(&member.room));
    if let Err(e) = append_in_turn(shared, &ev, turn).await {
        tracing::warn!(room = %member.room, "presence leave: {e}");
    }
}

/// A connection closed: call after `Conn::closed`, so a join ticketed later sees it closed.
pub async fn offline(shared: &Shared, conn: &Conn) {
    let turn = conn.presence.ticket();
    let ev = client_event(shared, "offline", Some(conn), None);
    if let Err(e) = append_in_turn(shared, &ev, turn).await {
        tracing::warn!("presence offline: {e}");
    }
}

/// Says this edge (re)started, so connections it had before are gone; then beats every
/// [`HEARTBEAT_EVERY`] until `shutdown`.
pub async fn started(shared: &Shared) -> Result<(), ClientError> {
    append(shared, &client_event(shared, "edge-start", None, None)).await
}

pub async fn heartbeat(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
        }
        if let Err(e) = append(&shared, &client_event(&shared, "heartbeat", None, None)).await {
            tracing::warn!("presence heartbeat: {e}");
        }
    }
}
