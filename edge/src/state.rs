//! What every part of one edge shares.

use crate::auth::Verifier;
use crate::config::EdgeConfig;
use crate::deliveries::Pending;
use crate::metrics::Metrics;
use crate::rooms::Rooms;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
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
    /// This edge's partition of the deliveries topic, and the next offset to read there.
    pub delivery_partition: u32,
    pub delivery_position: AtomicI64,
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
