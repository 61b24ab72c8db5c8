//! One client connection: who it is, its limits, the rooms it is in, and the way out to its
//! socket (bounded: a connection that cannot keep up is dropped).

use crate::limits::TokenBucket;
use crate::metrics::Metrics;
use crate::rooms::Member;
use crate::state::lock;
use serde::Serialize;
use socketioxide::extract::SocketRef;
use socketioxide::SendError;
use socketioxide::SocketError;
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why an emit did not go out.
#[derive(Debug, PartialEq, Eq)]
pub enum EmitError {
    /// The connection's output buffer is full.
    Full,
    /// The connection is gone.
    Closed,
}

pub struct Conn {
    /// The Socket.IO socket id; processors address replies to it.
    pub id: String,
    /// JWT `sub`.
    pub user: String,
    /// JWT `name`.
    pub name: Option<String>,
    socket: Mutex<Option<SocketRef>>,
    pub bucket: Mutex<TokenBucket>,
    /// The rooms joined (or being joined) on this connection.
    pub rooms: Mutex<HashMap<String, Arc<Member>>>,
    pub pending_sends: AtomicUsize,
    metrics: Metrics,
}

impl Conn {
    pub fn new(
        socket: SocketRef,
        user: String,
        name: Option<String>,
        bucket: TokenBucket,
        metrics: Metrics,
    ) -> Self {
        Self {
            id: socket.id.to_string(),
            user,
            name,
            socket: Mutex::new(Some(socket)),
            bucket: Mutex::new(bucket),
            rooms: Mutex::new(HashMap::new()),
            pending_sends: AtomicUsize::new(0),
            metrics,
        }
    }

    pub fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Member>>> {
        lock(&self.rooms)
    }

    pub fn check_rate(&self) -> Result<(), crate::errors::ClientError> {
        lock(&self.bucket).check()
    }

    pub fn is_open(&self) -> bool {
        lock(&self.socket).is_some()
    }

    /// Emits without waiting; a full buffer is an error.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EmitError> {
        let guard = lock(&self.socket);
        let socket = guard.as_ref().ok_or(EmitError::Closed)?;
        match socket.emit(event, data) {
            Ok(()) => {
                self.metrics.event_out(event);
                Ok(())
            }
            Err(SendError::Socket(SocketError::InternalChannelFull)) => Err(EmitError::Full),
            Err(_) => Err(EmitError::Closed),
        }
    }

    /// Emits, waiting while the output buffer is full (catch-up, which can pace itself), for at
    /// most `patience`.
    pub async fn emit_paced<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
        patience: Duration,
    ) -> Result<(), EmitError> {
        let deadline = Instant::now() + patience;
        loop {
            match self.emit(event, data) {
                Err(EmitError::Full) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                other => return other,
            }
        }
    }

    /// Drops the connection (it cannot keep up, or broke a limit whose action is to drop it).
    pub fn kick(&self, reason: &'static str) {
        let socket = lock(&self.socket).take();
        if let Some(socket) = socket {
            tracing::info!(conn = %self.id, reason, "dropping connection");
            self.metrics.disconnects.with_label_values(&[reason]).inc();
            // Off this task: the disconnect handler takes locks the caller may hold.
            tokio::spawn(async move {
                let _ = socket.disconnect();
            });
        }
    }

    /// Forgets the socket once it is disconnected (breaks the socket → handler → conn cycle).
    pub fn closed(&self) {
        lock(&self.socket).take();
    }
}
