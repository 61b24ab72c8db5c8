//! The users this edge has connections of, and their announcement on the subscriptions topic
//! (`user-host` when a user's first connection here opens, `user-unhost` when the last one
//! closes), so that a `notify` or `read` for a user goes only to the edges that have them.
//!
//! Announcements of one user are made under that user's lock, from what is true when the lock
//! is held, so racing connects and disconnects always end with the announcement that matches
//! the connections left.

use crate::conn::Conn;
use crate::errors::ClientError;
use crate::state::{lock, now_ms, Shared};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tidings_log::{topics, OutRecord};
use tidings_schemas::{LogRecord, Subscription};

#[derive(Default)]
pub struct Users {
    map: Mutex<HashMap<String, Arc<UserEntry>>>,
}

#[derive(Default)]
pub struct UserEntry {
    conns: Mutex<Vec<Arc<Conn>>>,
    /// Whether `user-host` is what the topic says now.
    announced: tokio::sync::Mutex<bool>,
}

impl Users {
    /// Adds a connection; then call [`announce`].
    pub fn add(&self, conn: &Arc<Conn>) -> Arc<UserEntry> {
        let entry = lock(&self.map)
            .entry(conn.user.clone())
            .or_default()
            .clone();
        lock(&entry.conns).push(conn.clone());
        entry
    }

    /// Removes a connection; then call [`announce`].
    pub fn remove(&self, conn: &Conn) -> Option<Arc<UserEntry>> {
        let entry = lock(&self.map).get(&conn.user).cloned()?;
        lock(&entry.conns).retain(|c| c.id != conn.id);
        Some(entry)
    }

    /// Every connection on this edge (revoking a token by `jti`, which is rare).
    pub fn all_conns(&self) -> Vec<Arc<Conn>> {
        let entries: Vec<Arc<UserEntry>> = lock(&self.map).values().cloned().collect();
        entries
            .iter()
            .flat_map(|e| lock(&e.conns).clone())
            .collect()
    }

    /// This edge's connections of `user`.
    pub fn conns_of(&self, user: &str) -> Vec<Arc<Conn>> {
        lock(&self.map)
            .get(user)
            .map(|e| lock(&e.conns).clone())
            .unwrap_or_default()
    }
}

/// Brings the topic in line with `user`'s connections here; forgets the user once they have
/// none and that is announced.
pub async fn announce(shared: &Shared, user: &str, entry: &Arc<UserEntry>) {
    let mut announced = entry.announced.lock().await;
    let hosted = !lock(&entry.conns).is_empty();
    if hosted != *announced {
        match append(shared, user, hosted).await {
            Ok(()) => *announced = hosted,
            Err(e) => tracing::warn!(user, "user announcement: {e}"),
        }
    }
    if !hosted && !*announced {
        let mut map = lock(&shared.users.map);
        if map
            .get(user)
            .is_some_and(|e| Arc::ptr_eq(e, entry) && lock(&e.conns).is_empty())
        {
            map.remove(user);
        }
    }
}

async fn append(shared: &Shared, user: &str, hosted: bool) -> Result<(), ClientError> {
    let node = &shared.config.node;
    let announcement = Subscription {
        event_id: uuid::Uuid::new_v4().to_string(),
        kind: if hosted { "user-host" } else { "user-unhost" }.to_string(),
        room: None,
        user: Some(user.to_string()),
        ts: now_ms(),
        trace_id: uuid::Uuid::new_v4().to_string(),
        node: node.clone(),
        conn: None,
    };
    let bytes = announcement
        .encode()
        .map_err(|e| ClientError::invalid(format!("cannot encode: {e}")))?;
    // Room keys are `room@edge` and room names never hold `/`: the keys cannot collide.
    let key = format!("user/{user}@{node}");
    shared
        .log
        .produce(OutRecord::new(topics::SUBSCRIPTIONS, key, bytes))
        .await?;
    Ok(())
}
