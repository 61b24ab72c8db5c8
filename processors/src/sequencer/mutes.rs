//! Who is muted where, as the sequencer sees it: the store's mutes of each room it has
//! loaded, overlaid with the mutes it sequenced since (newer, so they win). Bounded: at most
//! `max_mutes` entries (expired ones go first when full) and `max_loaded` rooms remembered as
//! loaded (forgetting them only costs a reload; the mutes themselves stay).

use std::collections::{HashMap, HashSet};
use tidings_store::Mute;

/// The mute table is full of mutes still in force.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full;

pub(crate) struct Mutes {
    /// (room, user) → until (ms). Kept after it passes, so a stale store copy of an earlier
    /// mute cannot come back on a reload; dropped only to make room.
    until: HashMap<(String, String), i64>,
    loaded: HashSet<String>,
    max_mutes: usize,
    max_loaded: usize,
}

impl Mutes {
    pub(crate) fn new(max_mutes: usize, max_loaded: usize) -> Self {
        Self {
            until: HashMap::new(),
            loaded: HashSet::new(),
            max_mutes,
            max_loaded,
        }
    }

    /// Until when `user` is muted in `room`, if they are at `now`.
    pub(crate) fn muted_until(&self, room: &str, user: &str, now: i64) -> Option<i64> {
        // Asked for every send: no key is built while nobody is muted.
        if self.until.is_empty() {
            return None;
        }
        self.until
            .get(&(room.to_string(), user.to_string()))
            .copied()
            .filter(|until| *until > now)
    }

    /// Records a sequenced mute (an `until` at or before `now` lifts one).
    pub(crate) fn set(&mut self, room: &str, user: &str, until: i64, now: i64) -> Result<(), Full> {
        let key = (room.to_string(), user.to_string());
        if !self.until.contains_key(&key) && self.until.len() >= self.max_mutes {
            self.until.retain(|_, u| *u > now);
            if self.until.len() >= self.max_mutes {
                return Err(Full);
            }
        }
        self.until.insert(key, until);
        Ok(())
    }

    /// Whether `room`'s stored mutes still need reading.
    pub(crate) fn needs_load(&self, room: &str) -> bool {
        !self.loaded.contains(room)
    }

    /// Takes the store's mutes of `room`: those in force that memory does not know about
    /// (memory is newer), as far as there is room.
    pub(crate) fn load(&mut self, room: &str, stored: Vec<Mute>, now: i64) {
        for mute in stored {
            let key = (mute.room, mute.user);
            if mute.until > now && !self.until.contains_key(&key) {
                if self.until.len() >= self.max_mutes {
                    self.until.retain(|_, u| *u > now);
                }
                if self.until.len() < self.max_mutes {
                    self.until.insert(key, mute.until);
                }
            }
        }
        if self.loaded.len() >= self.max_loaded {
            self.loaded.clear();
        }
        self.loaded.insert(room.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mute(room: &str, user: &str, until: i64) -> Mute {
        Mute {
            room: room.into(),
            user: user.into(),
            until,
        }
    }

    #[test]
    fn a_mute_holds_until_its_time_and_a_later_one_replaces_it() {
        let mut m = Mutes::new(10, 10);
        m.set("r", "eve", 100, 0).unwrap();
        assert_eq!(m.muted_until("r", "eve", 50), Some(100));
        assert_eq!(m.muted_until("r", "eve", 100), None);
        assert_eq!(m.muted_until("other", "eve", 50), None);
        m.set("r", "eve", 10, 50).unwrap();
        assert_eq!(m.muted_until("r", "eve", 50), None, "lifted");
    }

    #[test]
    fn memory_wins_over_the_store_and_loads_happen_once() {
        let mut m = Mutes::new(10, 10);
        m.set("r", "eve", 4, 5).unwrap(); // lifted after the store's copy was written
        assert!(m.needs_load("r"));
        m.load("r", vec![mute("r", "eve", 1000), mute("r", "bob", 1000)], 5);
        assert!(!m.needs_load("r"));
        assert_eq!(m.muted_until("r", "eve", 6), None, "the newer lift stays");
        assert_eq!(m.muted_until("r", "bob", 6), Some(1000));
    }

    #[test]
    fn it_stays_bounded() {
        let mut m = Mutes::new(2, 2);
        m.set("r", "a", 100, 0).unwrap();
        m.set("r", "b", 100, 0).unwrap();
        assert_eq!(m.set("r", "c", 100, 0), Err(Full));
        m.set("r", "a", 200, 0).unwrap(); // replacing is always possible
        assert_eq!(m.set("r", "c", 300, 150), Ok(()), "expired ones make room");
        assert_eq!(m.muted_until("r", "c", 150), Some(300));
        assert_eq!(m.muted_until("r", "a", 150), Some(200), "in force, kept");
        m.load("x", vec![], 0);
        m.load("y", vec![], 0);
        m.load("z", vec![], 0);
        assert!(m.needs_load("x"), "forgotten, so read again");
        assert!(!m.needs_load("z"));
    }
}
