//! The sequencer's memory: room heads and recent client ids, both bounded, both rebuilt from
//! the room log and the store after any restart or reassignment.
//!
//! Invariant that makes eviction safe: an entry leaves memory only once the store holds what
//! it says (the room's stored head reached it; the client id is stored with that seq), so
//! re-reading it from the store gives the same answer. Entries not yet persisted stay, even
//! past the cap; the sequencer then stops consuming until persistence catches up
//! (backpressure), so memory stays within cap + one batch.

use super::mutes::Mutes;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use tidings_store::{Store, StoreError};

/// A map that remembers use order, so the least recently used entries can be evicted.
pub(crate) struct Recency<K, V> {
    map: HashMap<K, (V, u64)>,
    order: BTreeMap<u64, K>,
    clock: u64,
}

impl<K: Clone + Eq + Hash, V> Recency<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            map: HashMap::new(),
            order: BTreeMap::new(),
            clock: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(v, _)| v)
    }

    pub(crate) fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// Inserts or replaces, marking the entry most recently used.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        self.clock += 1;
        if let Some((_, stamp)) = self.map.insert(key.clone(), (value, self.clock)) {
            self.order.remove(&stamp);
        }
        self.order.insert(self.clock, key);
    }

    pub(crate) fn touch(&mut self, key: &K) {
        if let Some((value, stamp)) = self.map.remove(key) {
            self.order.remove(&stamp);
            self.insert(key.clone(), value);
        }
    }

    pub(crate) fn remove(&mut self, key: &K) {
        if let Some((_, stamp)) = self.map.remove(key) {
            self.order.remove(&stamp);
        }
    }

    /// The `n` least recently used keys.
    pub(crate) fn oldest(&self, n: usize) -> Vec<K> {
        self.order.values().take(n).cloned().collect()
    }
}

/// Most mutes in force one sequencer keeps (all rooms of its partitions).
const MAX_MUTES: usize = 100_000;

/// Most entries one eviction sweep checks against the store.
const SWEEP: usize = 512;

pub(crate) struct State {
    /// room → its head (last assigned seq). At most `max_rooms` (+ one batch, + unpersisted).
    pub heads: Recency<String, i64>,
    /// (room, client id) → (seq, ts). At most `max_ids` (+ one batch, + unpersisted).
    pub ids: Recency<(String, String), (i64, i64)>,
    /// Rooms whose every client id is in `ids` (they were empty when first loaded and have lost
    /// no id to eviction since): an id missing from `ids` is new, with no store look-up. A
    /// subset of `heads`.
    pub complete: HashSet<String>,
    /// Room-log partitions whose unpersisted tail has been folded in since this state began
    /// (at most the room log's partition count).
    pub scanned: HashSet<u32>,
    /// Who is muted where.
    pub mutes: Mutes,
    /// (room, seq) → sender of recently sequenced messages, so a member deleting their own
    /// message right after sending it needs no store read (which may not have it yet). At
    /// most `max_ids`; older senders come from the store.
    pub authors: Recency<(String, i64), String>,
    max_rooms: usize,
    max_ids: usize,
}

impl State {
    pub(crate) fn new(max_rooms: usize, max_ids: usize) -> Self {
        Self {
            heads: Recency::new(),
            ids: Recency::new(),
            complete: HashSet::new(),
            scanned: HashSet::new(),
            mutes: Mutes::new(MAX_MUTES, max_rooms),
            authors: Recency::new(),
            max_rooms,
            max_ids,
        }
    }

    /// Remembers the sender of a sequenced message, forgetting the oldest past the cap.
    pub(crate) fn authored(&mut self, room: &str, seq: i64, user: &str) {
        self.authors
            .insert((room.to_string(), seq), user.to_string());
        if self.authors.len() > self.max_ids {
            for key in self.authors.oldest(self.authors.len() - self.max_ids) {
                self.authors.remove(&key);
            }
        }
    }

    pub(crate) fn over_cap(&self) -> bool {
        self.heads.len() > self.max_rooms || self.ids.len() > self.max_ids
    }

    /// Evicts the least recently used entries the store already holds, down to the caps if
    /// it can. Entries not yet persisted are moved to the back and kept.
    pub(crate) async fn evict(&mut self, store: &dyn Store) -> Result<(), StoreError> {
        let excess = self.heads.len().saturating_sub(self.max_rooms).min(SWEEP);
        let rooms = self.heads.oldest(excess);
        let stored = futures::future::join_all(rooms.iter().map(|room| store.head(room))).await;
        for (room, stored) in rooms.iter().zip(stored) {
            let stored = stored?;
            match self.heads.get(room) {
                Some(head) if stored >= *head => {
                    self.heads.remove(room);
                    self.complete.remove(room);
                }
                _ => self.heads.touch(room),
            }
        }

        let excess = self.ids.len().saturating_sub(self.max_ids).min(SWEEP);
        let keys = self.ids.oldest(excess);
        let stored =
            futures::future::join_all(keys.iter().map(|(room, id)| store.seq_of(room, id))).await;
        for (key, stored) in keys.iter().zip(stored) {
            let stored = stored?;
            match self.ids.get(key) {
                Some((seq, _)) if stored == Some(*seq) => {
                    self.ids.remove(key);
                    self.complete.remove(&key.0);
                }
                _ => self.ids.touch(key),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recency_orders_by_last_use() {
        let mut r = Recency::new();
        r.insert("a", 1);
        r.insert("b", 2);
        r.insert("c", 3);
        r.touch(&"a");
        assert_eq!(r.oldest(2), ["b", "c"]);
        r.insert("b", 20);
        assert_eq!(r.oldest(3), ["c", "a", "b"]);
        assert_eq!(r.get(&"b"), Some(&20));
        r.remove(&"c");
        assert_eq!(r.len(), 2);
        assert_eq!(r.oldest(5), ["a", "b"]);
        assert!(!r.contains(&"c"));
    }
}
