//! What every part of one edge shares.

use crate::admission::{Admission, OriginPolicy};
use crate::auth::Verifier;
use crate::config::EdgeConfig;
use crate::deliveries::Pending;
use crate::metrics::Metrics;
use crate::rooms::Rooms;
use crate::users::Users;
use crate::wire::Sessions;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use tidings_log::Log;
use tidings_store::Store;

pub struct Shared {
    pub config: EdgeConfig,
    pub log: Arc<dyn Log>,
    pub store: Arc<dyn Store>,
    pub metrics: Metrics,
    pub verifier: Verifier,
    pub rooms: Rooms,
    pub pending: Pending,
    /// The users this edge has connections of, by `sub`.
    pub users: Users,
    pub admission: Arc<Admission>,
    pub origins: OriginPolicy,
    pub sessions: Arc<Sessions>,
    /// This edge's partition of the deliveries topic, and the next offset to read there.
    pub delivery_partition: u32,
    pub delivery_position: AtomicI64,
    /// Shutting down: `/readyz` fails and new requests get `unavailable`.
    pub draining: AtomicBool,
    /// Requests whose handler is running, on every connection.
    pub in_progress: AtomicUsize,
    /// `POST /api/publish` requests in progress.
    pub publishing: crate::publish::Publishing,
    /// When each connection's token runs out.
    pub expiry: crate::expiry::Expiry,
    /// Revoked users and tokens in force.
    pub revocations: crate::revocations::Revocations,
    /// Admin API requests in progress.
    pub admin_requests: crate::admin::AdminRequests,
}

impl Shared {
    /// How long a revocation lasts when the admin names no end: the longest a token may
    /// still be valid for, plus the leeway, so every token it covers has run out by then.
    pub fn default_revocation_ms(&self) -> i64 {
        let secs = self
            .config
            .max_token_lifetime
            .as_secs()
            .saturating_add(self.config.jwt_leeway_secs);
        i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

pub use tidings_log::now_ms;

/// Locks `m`, recovering from poisoning: a panicked holder leaves plain data (maps, buffers,
/// counters) that is still usable, and the edge must keep serving the other connections.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
