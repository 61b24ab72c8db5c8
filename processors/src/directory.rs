//! Which edges host which rooms and which users, shared by fan-out, typing and the inbox.
//!
//! Built from the compacted subscriptions topic (key `room@edge`, last record wins: `host`
//! adds, `unhost` removes; key `user/<sub>@edge` with `user-host` and `user-unhost` for the
//! users an edge has connections of), read from the beginning of every partition to its end.

use crate::dead_letter::skip;
use crate::runtime::{self, read_to_end, Backoff};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tidings_log::topics::SUBSCRIPTIONS;
use tidings_log::{Log, LogError, PartitionReader, Record};
use tidings_schemas::Subscription;
use tokio_util::sync::CancellationToken;

/// Subscription records per follower poll.
const FOLLOW_BATCH: usize = 500;

/// Most (room, edge) pairs held (G7). The real bound is the live subscriptions, which edges
/// bound (connections × rooms per connection); past this a new `host` is refused and logged.
pub(crate) const MAX_PAIRS: usize = 2_000_000;

/// room → edges hosting it, and (when asked for) user → edges with their connections.
/// Entries without edges are removed, so the maps hold only live pairs.
#[derive(Default)]
pub(crate) struct Directory {
    rooms: HashMap<String, BTreeSet<String>>,
    /// There is an entry per connected user, so it holds small edge indexes, not names.
    users: HashMap<Box<str>, Vec<u32>>,
    edges: Interned,
    track_users: bool,
    pairs: usize,
}

/// Edge names by index: few and long-lived.
#[derive(Default)]
struct Interned {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interned {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }
}

/// A directory kept up to date by follower tasks.
#[derive(Clone)]
pub(crate) struct Followed(Arc<Mutex<Directory>>);

impl Followed {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Directory> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A partition read to its end, ready to be followed.
pub(crate) struct Tail {
    pub partition: u32,
    pub reader: Box<dyn PartitionReader>,
    pub next: i64,
}

impl Directory {
    /// The directory as the subscriptions topic has it now; users' edges only if
    /// `track_users` (they cost memory per connected user).
    pub(crate) async fn load(
        log: &dyn Log,
        track_users: bool,
    ) -> Result<(Self, Vec<Tail>), LogError> {
        let mut directory = Self {
            track_users,
            ..Self::default()
        };
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

    /// Loads the directory and keeps it following the topic until `stop` is cancelled.
    pub(crate) async fn followed(
        log: &Arc<dyn Log>,
        track_users: bool,
        stop: &CancellationToken,
    ) -> Result<Followed, LogError> {
        let (directory, tails) = Self::load(&**log, track_users).await?;
        let followed = Followed(Arc::new(Mutex::new(directory)));
        for tail in tails {
            tokio::spawn(follow(log.clone(), followed.clone(), tail, stop.clone()));
        }
        Ok(followed)
    }

    /// Applies one subscriptions record. A malformed one is counted and logged, not copied:
    /// the topic is read from its start at every load, so a copy would repeat per restart.
    pub(crate) fn apply_record(&mut self, record: &Record) {
        if let Some(s) = skip::<Subscription>("directory", record) {
            match (s.kind.as_str(), s.room.as_deref(), s.user.as_deref()) {
                ("user-host", _, Some(user)) => self.apply_user(true, user, &s.node),
                ("user-unhost", _, Some(user)) => self.apply_user(false, user, &s.node),
                (kind, Some(room), _) => self.apply(kind, room, &s.node),
                _ => {}
            }
        }
    }

    /// `host` or `unhost` of `room` by `edge`; other kinds are ignored.
    pub(crate) fn apply(&mut self, kind: &str, room: &str, edge: &str) {
        match kind {
            "host" => add_pair(&mut self.rooms, &mut self.pairs, room, edge),
            "unhost" => remove_pair(&mut self.rooms, &mut self.pairs, room, edge),
            _ => {}
        }
    }

    /// `edge` has (`hosts`) or no longer has connections of `user`.
    pub(crate) fn apply_user(&mut self, hosts: bool, user: &str, edge: &str) {
        if !self.track_users {
            return;
        }
        if hosts {
            if self.pairs >= MAX_PAIRS {
                tracing::error!(user, edge, "directory full; user host ignored");
                return;
            }
            let id = self.edges.id(edge);
            let edges = self.users.entry(user.into()).or_default();
            if !edges.contains(&id) {
                edges.push(id);
                self.pairs += 1;
            }
        } else if let Some(&id) = self.edges.ids.get(edge) {
            if let Some(edges) = self.users.get_mut(user) {
                if let Some(at) = edges.iter().position(|&e| e == id) {
                    edges.swap_remove(at);
                    self.pairs -= 1;
                }
                if edges.is_empty() {
                    self.users.remove(user);
                }
            }
        }
    }

    /// The edges with connections of `user`.
    pub(crate) fn user_edges(&self, user: &str) -> impl Iterator<Item = &str> + '_ {
        self.users
            .get(user)
            .into_iter()
            .flatten()
            .map(|&id| self.edges.names[id as usize].as_str())
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

fn add_pair(map: &mut HashMap<String, BTreeSet<String>>, pairs: &mut usize, key: &str, edge: &str) {
    if map.get(key).is_some_and(|e| e.contains(edge)) {
        return;
    }
    if *pairs >= MAX_PAIRS {
        tracing::error!(key, edge, "directory full; host ignored");
        return;
    }
    map.entry(key.to_string())
        .or_default()
        .insert(edge.to_string());
    *pairs += 1;
}

fn remove_pair(
    map: &mut HashMap<String, BTreeSet<String>>,
    pairs: &mut usize,
    key: &str,
    edge: &str,
) {
    if let Some(edges) = map.get_mut(key) {
        if edges.remove(edge) {
            *pairs -= 1;
        }
        if edges.is_empty() {
            map.remove(key);
        }
    }
}

/// Follows one subscriptions partition into the directory until `stop`; on an error, reopens
/// the reader where it was after a bounded backoff.
async fn follow(log: Arc<dyn Log>, directory: Followed, tail: Tail, stop: CancellationToken) {
    let Tail {
        partition,
        mut reader,
        mut next,
    } = tail;
    let mut backoff = Backoff::new();
    loop {
        let polled = tokio::select! {
            _ = stop.cancelled() => return,
            polled = reader.poll(FOLLOW_BATCH, runtime::POLL_WAIT) => polled,
        };
        match polled {
            Ok(records) => {
                backoff.reset();
                if let Some(last) = records.last() {
                    next = last.offset + 1;
                }
                let mut directory = directory.lock();
                for record in &records {
                    directory.apply_record(record);
                }
            }
            Err(error) => {
                tracing::warn!(partition, %error, "subscriptions follower failed; reopening");
                if !backoff.sleep(&stop).await {
                    return;
                }
                match log.reader(SUBSCRIPTIONS, partition, next).await {
                    Ok(fresh) => reader = fresh,
                    Err(error) => {
                        tracing::warn!(partition, %error, "reopening subscriptions reader failed")
                    }
                }
            }
        }
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

    #[test]
    fn users_are_hosted_apart_from_rooms() {
        let mut d = Directory {
            track_users: true,
            ..Directory::default()
        };
        d.apply("host", "bob", "a");
        d.apply_user(true, "bob", "b");
        d.apply_user(true, "bob", "c");
        d.apply_user(true, "bob", "b");
        assert_eq!(d.user_edges("bob").collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(d.edges("bob").collect::<Vec<_>>(), ["a"]);
        assert_eq!(d.pairs, 3);
        d.apply_user(false, "bob", "b");
        d.apply_user(false, "bob", "c");
        assert_eq!(d.user_edges("bob").count(), 0);
        assert!(!d.users.contains_key("bob"));
        assert_eq!(d.pairs, 1);
    }

    #[test]
    fn users_are_not_kept_unless_asked_for() {
        let mut d = Directory::default();
        d.apply_user(true, "bob", "b");
        assert_eq!(d.user_edges("bob").count(), 0);
        assert_eq!(d.pairs, 0);
    }
}
