//! Token expiry: at `exp` plus the leeway, a connection that did not refresh gets
//! `expired {}` and is disconnected.
//!
//! One ordered index for the whole edge, swept by one task, instead of a timer task per
//! connection (an edge holds 15,000+ connections, and a tokio task with its timer costs
//! hundreds of bytes each): an entry is a deadline, an address and a weak pointer, about
//! 50 bytes in the B-tree. Each connection has exactly one entry, moved by a refresh and
//! removed when it closes.

use crate::conn::Conn;
use crate::state::{lock, Shared};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the index is swept: a connection ends at most this long after its deadline.
pub const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// (deadline in ms since the epoch, the connection's address) → the connection.
type Key = (u64, usize);

/// What the index needs of a connection: where its current deadline is kept.
pub trait Expiring {
    fn deadline(&self) -> &AtomicU64;
}

impl Expiring for Conn {
    fn deadline(&self) -> &AtomicU64 {
        &self.expires_ms
    }
}

pub struct Expiry<T: Expiring = Conn> {
    index: Mutex<BTreeMap<Key, Weak<T>>>,
}

impl<T: Expiring> Default for Expiry<T> {
    fn default() -> Self {
        Self {
            index: Mutex::new(BTreeMap::new()),
        }
    }
}

/// Unique among live connections, and not reused while the index holds a weak pointer to
/// the allocation.
fn address<T>(conn: &T) -> usize {
    conn as *const T as usize
}

impl<T: Expiring> Expiry<T> {
    /// Sets (or moves) `conn`'s deadline.
    pub fn schedule(&self, conn: &Arc<T>, deadline_ms: u64) {
        let mut index = lock(&self.index);
        let old = conn.deadline().swap(deadline_ms, Ordering::AcqRel);
        index.remove(&(old, address(&**conn)));
        index.insert((deadline_ms, address(&**conn)), Arc::downgrade(conn));
    }

    /// Forgets `conn` (it closed).
    pub fn cancel(&self, conn: &T) {
        let mut index = lock(&self.index);
        let deadline = conn.deadline().load(Ordering::Acquire);
        index.remove(&(deadline, address(conn)));
    }

    /// Takes out the connections whose deadline is at or before `now_ms`.
    pub fn due(&self, now_ms: u64) -> Vec<Arc<T>> {
        let mut index = lock(&self.index);
        let later = index.split_off(&(now_ms.saturating_add(1), 0));
        let due = std::mem::replace(&mut *index, later);
        drop(index);
        due.into_values().filter_map(|w| w.upgrade()).collect()
    }

    /// Connections in the index.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        lock(&self.index).len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Ends the connections whose token ran out, every [`SWEEP_EVERY`], until `shutdown`.
pub async fn sweep(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = crate::state::now_ms().max(0) as u64;
        for conn in shared.expiry.due(now) {
            // Told why first, so a client knows to get a new token before it reconnects.
            let _ = conn.emit("expired", &json!({}));
            conn.kick("expired");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Fake(AtomicU64);

    impl Expiring for Fake {
        fn deadline(&self) -> &AtomicU64 {
            &self.0
        }
    }

    #[test]
    fn due_takes_exactly_what_is_at_or_before_now() {
        let expiry: Expiry<Fake> = Expiry::default();
        let conns: Vec<Arc<Fake>> = (0..4).map(|_| Arc::default()).collect();
        for (conn, deadline) in conns.iter().zip([1_000, 2_000, 2_000, 3_000]) {
            expiry.schedule(conn, deadline);
        }
        assert!(expiry.due(999).is_empty());
        let due = expiry.due(2_000);
        assert_eq!(due.len(), 3);
        assert!(due.iter().all(|c| c.0.load(Ordering::Relaxed) <= 2_000));
        assert_eq!(expiry.len(), 1);
        assert!(expiry.due(2_999).is_empty());
        assert_eq!(expiry.due(u64::MAX).len(), 1);
        assert!(expiry.is_empty());
    }

    #[test]
    fn a_refresh_moves_the_one_entry_and_a_close_removes_it() {
        let expiry: Expiry<Fake> = Expiry::default();
        let conn: Arc<Fake> = Arc::default();
        expiry.schedule(&conn, 1_000);
        expiry.schedule(&conn, 5_000);
        expiry.schedule(&conn, 9_000);
        assert_eq!(
            expiry.len(),
            1,
            "one entry per connection, however often it refreshes"
        );
        assert!(expiry.due(8_999).is_empty(), "the old deadlines are gone");
        expiry.cancel(&conn);
        assert!(expiry.is_empty());
        // A connection dropped without cancel leaves a dead entry that the sweep skips.
        let gone: Arc<Fake> = Arc::default();
        expiry.schedule(&gone, 10);
        drop(gone);
        assert!(expiry.due(20).is_empty());
        assert!(expiry.is_empty());
    }
}
