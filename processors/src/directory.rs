//! Which edges host which rooms, shared by fan-out and typing.
//!
//! Built from the compacted subscriptions topic (key `room@edge`, last record wins: `host`
//! adds, `unhost` removes), read from the beginning of every partition to its end.

use crate::dead_letter::skip;
use crate::runtime::read_to_end;
use std::collections::{BTreeSet, HashMap};
use tidings_log::topics::SUBSCRIPTIONS;
use tidings_log::{Log, LogError, PartitionReader, Record};
use tidings_schemas::Subscription;

/// Most (room, edge) pairs held (G7). The real bound is the live subscriptions, which edges
/// bound (connections × rooms per connection); past this a new `host` is refused and logged.
pub(crate) const MAX_PAIRS: usize = 2_000_000;

/// room → edges hosting it. Rooms without edges are removed, so the map holds only live pairs.
#[derive(Default)]
pub(crate) struct Directory {
    rooms: HashMap<String, BTreeSet<String>>,
    pairs: usize,
}

/// A partition read to its end, ready to be followed.
pub(crate) struct Tail {
    pub partition: u32,
    pub reader: Box<dyn PartitionReader>,
    pub next: i64,
}

impl Directory {
    /// The directory as the subscriptions topic has it now.
    pub(crate) async fn load(log: &dyn Log) -> Result<(Self, Vec<Tail>), LogError> {
        let mut directory = Self::default();
        let mut tails = Vec::new();
        for partition in 0..log.partitions(SUBSCRIPTIONS).await? {
            let (reader, next) = read_to_end(log, SUBSCRIPTIONS, partition, 0, |r| {
                directory.apply_record(r)
            })
            .await?;
            tails.push(Tail {
                partition,
                reader,
                next,
            });
        }
        tracing::info!(
            pairs = directory.pairs,
            rooms = directory.rooms.len(),
            "room directory loaded"
        );
        Ok((directory, tails))
    }

    /// Applies one subscriptions record. A malformed one is counted and logged, not copied:
    /// the topic is read from its start at every load, so a copy would repeat per restart.
    pub(crate) fn apply_record(&mut self, record: &Record) {
        if let Some(s) = skip::<Subscription>("directory", record) {
            if let Some(room) = s.room.as_deref() {
                self.apply(&s.kind, room, &s.node);
            }
        }
    }

    /// `host` or `unhost` of `room` by `edge`; other kinds are ignored.
    pub(crate) fn apply(&mut self, kind: &str, room: &str, edge: &str) {
        match kind {
            "host" => {
                if self.rooms.get(room).is_some_and(|e| e.contains(edge)) {
                    return;
                }
                if self.pairs >= MAX_PAIRS {
                    tracing::error!(room, edge, "room directory full; host ignored");
                    return;
                }
                self.rooms
                    .entry(room.to_string())
                    .or_default()
                    .insert(edge.to_string());
                self.pairs += 1;
            }
            "unhost" => {
                if let Some(edges) = self.rooms.get_mut(room) {
                    if edges.remove(edge) {
                        self.pairs -= 1;
                    }
                    if edges.is_empty() {
                        self.rooms.remove(room);
                    }
                }
            }
            _ => {}
        }
    }

    /// The edges hosting `room`.
    pub(crate) fn edges(&self, room: &str) -> impl Iterator<Item = &str> {
        self.rooms
            .get(room)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_unhost() {
        let mut d = Directory::default();
        d.apply("host", "r", "a");
        d.apply("host", "r", "b");
        d.apply("host", "r", "a");
        d.apply("host", "s", "a");
        assert_eq!(d.edges("r").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(d.pairs, 3);
        d.apply("unhost", "r", "a");
        d.apply("unhost", "r", "zz");
        assert_eq!(d.edges("r").collect::<Vec<_>>(), ["b"]);
        d.apply("unhost", "r", "b");
        assert_eq!(d.edges("r").count(), 0);
        assert!(!d.rooms.contains_key("r"));
        assert_eq!(d.pairs, 1);
        d.apply("other", "x", "a");
        assert_eq!(d.edges("x").count(), 0);
    }
}
