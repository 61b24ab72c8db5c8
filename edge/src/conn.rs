//! One client connection: who it is, its limits, the rooms it is in, and the way out to its
//! socket (bounded in packets and in bytes: a connection that cannot keep up is dropped).

use crate::admission::UserSlot;
use crate::errors::ClientError;
use crate::limits::TokenBucket;
use crate::metrics::Metrics;
use crate::order::Turnstile;
use crate::permissions::Access;
use crate::protocol::PacketSize;
use crate::rooms::Member;
use crate::state::lock;
use crate::wire::OutQueue;
use serde::Serialize;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::SendError;
use socketioxide::SocketError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why an emit did not go out.
#[derive(Debug, PartialEq, Eq)]
pub enum EmitError {
    /// The connection's output buffer is full (in packets or in bytes).
    Full,
    /// The connection is gone.
    Closed,
}

/// Who is on the other end, from their token.
pub struct Identity {
    /// JWT `sub`.
    pub user: String,
    /// JWT `name`.
    pub name: Option<String>,
    /// What its `rooms` and `role` claims allow.
    pub access: Access,
    /// Its `jti`, which a revocation may name.
    pub jti: Option<String>,
}

/// The limits a connection draws on.
pub struct Limits {
    pub bucket: TokenBucket,
    /// The user's bucket, shared by all their connections on this edge.
    pub user: UserSlot,
    /// Most bytes queued for the client and not yet written.
    pub max_out_bytes: usize,
}

pub struct Conn {
    /// The Socket.IO socket id (the Engine.IO session id); processors address replies to it.
    pub id: String,
    pub user: String,
    pub name: Option<String>,
    /// Replaced by a `refresh`; read by every permission check.
    access: Mutex<Arc<Access>>,
    /// The current token's `jti`, replaced by a `refresh`.
    jti: Mutex<Option<Box<str>>>,
    /// When the current token runs out (`exp` plus the leeway, ms since the epoch): the
    /// key of this connection in the edge's expiry index (`crate::expiry`).
    pub(crate) expires_ms: AtomicU64,
    socket: Mutex<Option<SocketRef>>,
    bucket: Mutex<TokenBucket>,
    user_slot: UserSlot,
    /// What is queued for this client, in bytes.
    pub out: Arc<OutQueue>,
    max_out_bytes: usize,
    /// The rooms joined (or being joined) on this connection.
    pub rooms: Mutex<HashMap<String, Arc<Member>>>,
    pub pending_sends: AtomicUsize,
    pub requests_in_flight: AtomicUsize,
    /// Orders this connection's lifecycle records on the presence topic (online, join,
    /// leave, offline), which separate tasks append.
    pub presence: Arc<Turnstile>,
    metrics: Metrics,
}

/// Bytes a Socket.IO event packet adds around its payload: `42["<event>",` … `]`.
fn packet_bytes(event: &str, payload: usize) -> usize {
    payload + event.len() + 8
}

impl Conn {
    pub fn new(socket: SocketRef, who: Identity, limits: Limits, metrics: Metrics) -> Self {
        Self {
            id: socket.id.to_string(),
            user: who.user,
            name: who.name,
            access: Mutex::new(Arc::new(who.access)),
            jti: Mutex::new(who.jti.map(String::into_boxed_str)),
            expires_ms: AtomicU64::new(0),
            socket: Mutex::new(Some(socket)),
            bucket: Mutex::new(limits.bucket),
            user_slot: limits.user,
            out: Arc::new(OutQueue::default()),
            max_out_bytes: limits.max_out_bytes,
            rooms: Mutex::new(HashMap::new()),
            pending_sends: AtomicUsize::new(0),
            requests_in_flight: AtomicUsize::new(0),
            presence: Arc::default(),
            metrics,
        }
    }

    /// What this connection's token allows now.
    pub fn access(&self) -> Arc<Access> {
        lock(&self.access).clone()
    }

    /// Takes a refreshed token's access and `jti` (the caller leaves the rooms it no longer
    /// allows and moves the expiry).
    pub fn set_access(&self, access: Access, jti: Option<String>) {
        *lock(&self.access) = Arc::new(access);
        *lock(&self.jti) = jti.map(String::into_boxed_str);
    }

    /// Whether the current token's `jti` is `jti`.
    pub fn has_jti(&self, jti: &str) -> bool {
        lock(&self.jti).as_deref() == Some(jti)
    }

    pub fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Member>>> {
        lock(&self.rooms)
    }

    /// One event's worth of this connection's rate and of its user's.
    pub fn check_rate(&self) -> Result<(), ClientError> {
        lock(&self.bucket).check()?;
        lock(&self.user_slot.events).check()
    }

    pub fn is_open(&self) -> bool {
        lock(&self.socket).is_some()
    }

    /// Emits without waiting; a full buffer (in packets or bytes) is an error.
    pub fn emit<T: Serialize + PacketSize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), EmitError> {
        let guard = lock(&self.socket);
        let socket = guard.as_ref().ok_or(EmitError::Closed)?;
        if !self
            .out
            .admit(packet_bytes(event, data.packet_size()), self.max_out_bytes)
        {
            return Err(EmitError::Full);
        }
        match socket.emit(event, data) {
            Ok(()) => {
                self.metrics.event_out(event);
                Ok(())
            }
            Err(SendError::Socket(SocketError::InternalChannelFull)) => Err(EmitError::Full),
            Err(_) => Err(EmitError::Closed),
        }
    }

    /// Sends an ack of about `size` bytes, or drops the connection if its output is already
    /// at the bound (the reply would only pile up behind what it does not read).
    pub fn ack<T: Serialize + ?Sized>(&self, ack: AckSender, data: &T, size: usize) {
        if !self.out.admit(size + 8, self.max_out_bytes) {
            self.kick("slow_consumer");
            return;
        }
        let _ = ack.send(data);
    }

    /// Emits, waiting while the output buffer is full (catch-up, which can pace itself), for at
    /// most `patience`.
    pub async fn emit_paced<T: Serialize + PacketSize + ?Sized>(
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
