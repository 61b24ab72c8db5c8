//! Who is online: connections by edge, rooms and users derived from them. Pure logic: events
//! in, changes out; the session turns changes into deliveries and store writes.
//!
//! Only `conns`, `edges` and `positions` are saved in a snapshot; the per-room and per-user
//! indexes are rebuilt from them on load.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// One open connection, as its edge announced it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Connection {
    pub user: String,
    pub name: Option<String>,
    pub node: String,
    /// A list, not a set: a connection is in few rooms, and a one-element `BTreeSet` costs a
    /// ~300-byte node per connection. Serialized the same way (a JSON array).
    pub rooms: Vec<String>,
}

/// A change others must hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `user`'s first connection entered `room`.
    RoomOnline {
        room: String,
        user: String,
        name: Option<String>,
    },
    /// `user`'s last connection in `room` left it or closed.
    RoomOffline { room: String, user: String },
    /// `user`'s last connection anywhere closed at `ts`.
    UserOffline { user: String, ts: i64 },
}

#[derive(Default)]
struct RoomIndex {
    /// user → (connections in the room, display name)
    users: HashMap<String, (usize, Option<String>)>,
    /// edge → connections in the room
    nodes: HashMap<String, usize>,
}

#[derive(Default, Serialize, Deserialize)]
pub struct Presence {
    /// `node/conn` → connection.
    conns: HashMap<String, Connection>,
    /// edge → server time (ms) of its latest sign of life.
    edges: HashMap<String, i64>,
    /// partition → next offset this state includes.
    pub positions: BTreeMap<u32, i64>,
    #[serde(skip)]
    rooms: HashMap<String, RoomIndex>,
    /// user → open connections.
    #[serde(skip)]
    users: HashMap<String, usize>,
}

fn key(node: &str, conn: &str) -> String {
    format!("{node}/{conn}")
}

impl Presence {
    /// A state read from a snapshot, its indexes rebuilt.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let mut state: Presence = serde_json::from_slice(bytes)?;
        let conns = std::mem::take(&mut state.conns);
        for (key, conn) in conns {
            state.index_conn(&conn);
            for room in &conn.rooms {
                state.index_room(room, &conn, &mut Vec::new());
            }
            state.conns.insert(key, conn);
        }
        Ok(state)
    }

    pub fn snapshot(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    pub fn rooms(&self) -> usize {
        self.rooms.len()
    }

    pub fn users(&self) -> usize {
        self.users.len()
    }

    pub fn edges(&self) -> usize {
        self.edges.len()
    }

    /// A sign of life from `node` at `ts`.
    pub fn seen_edge(&mut self, node: &str, ts: i64) {
        let last = self.edges.entry(node.to_string()).or_insert(ts);
        *last = (*last).max(ts);
    }

    /// A connection opened (or was first heard of). Idempotent.
    pub fn online(&mut self, node: &str, conn: &str, user: &str, name: Option<String>) {
        let key = key(node, conn);
        if self.conns.contains_key(&key) {
            return;
        }
        let connection = Connection {
            user: user.to_string(),
            name,
            node: node.to_string(),
            rooms: Vec::new(),
        };
        self.index_conn(&connection);
        self.conns.insert(key, connection);
    }

    /// A connection entered `room`.
    pub fn join(
        &mut self,
        node: &str,
        conn: &str,
        user: &str,
        name: Option<String>,
        room: &str,
    ) -> Vec<Change> {
        self.online(node, conn, user, name);
        let mut changes = Vec::new();
        let Some(connection) = self.conns.get_mut(&key(node, conn)) else {
            return changes;
        };
        if connection.rooms.iter().any(|r| r == room) {
            return changes;
        }
        connection.rooms.push(room.to_string());
        let connection = connection.clone();
        self.index_room(room, &connection, &mut changes);
        changes
    }

    /// A connection left `room`.
    pub fn leave(&mut self, node: &str, conn: &str, room: &str) -> Vec<Change> {
        let mut changes = Vec::new();
        let Some(connection) = self.conns.get_mut(&key(node, conn)) else {
            return changes;
        };
        let Some(at) = connection.rooms.iter().position(|r| r == room) else {
            return changes;
        };
        connection.rooms.swap_remove(at);
        let connection = connection.clone();
        self.unindex_room(room, &connection, &mut changes);
        changes
    }

    /// A connection closed at `ts`.
    pub fn offline(&mut self, node: &str, conn: &str, ts: i64) -> Vec<Change> {
        let mut changes = Vec::new();
        if let Some(connection) = self.conns.remove(&key(node, conn)) {
            self.close(connection, ts, &mut changes);
        }
        changes
    }

    /// `node` (re)started: every connection it had before is gone.
    pub fn edge_started(&mut self, node: &str, ts: i64) -> Vec<Change> {
        let changes = self.drop_edge(node, ts);
        self.edges.insert(node.to_string(), ts);
        changes
    }

    /// Edges silent since before `deadline`: their connections are gone as of their last
    /// sign of life.
    pub fn expire_edges(&mut self, deadline: i64) -> Vec<Change> {
        let silent: Vec<(String, i64)> = self
            .edges
            .iter()
            .filter(|(_, last)| **last < deadline)
            .map(|(node, last)| (node.clone(), *last))
            .collect();
        let mut changes = Vec::new();
        for (node, last) in silent {
            changes.extend(self.drop_edge(&node, last));
            self.edges.remove(&node);
        }
        changes
    }

    fn drop_edge(&mut self, node: &str, ts: i64) -> Vec<Change> {
        let keys: Vec<String> = self
            .conns
            .iter()
            .filter(|(_, c)| c.node == node)
            .map(|(k, _)| k.clone())
            .collect();
        let mut changes = Vec::new();
        for key in keys {
            if let Some(connection) = self.conns.remove(&key) {
                self.close(connection, ts, &mut changes);
            }
        }
        changes
    }

    fn close(&mut self, connection: Connection, ts: i64, changes: &mut Vec<Change>) {
        for room in &connection.rooms {
            self.unindex_room(room, &connection, changes);
        }
        if let Some(count) = self.users.get_mut(&connection.user) {
            *count -= 1;
            if *count == 0 {
                self.users.remove(&connection.user);
                changes.push(Change::UserOffline {
                    user: connection.user,
                    ts,
                });
            }
        }
    }

    fn index_conn(&mut self, connection: &Connection) {
        *self.users.entry(connection.user.clone()).or_default() += 1;
    }

    fn index_room(&mut self, room: &str, connection: &Connection, changes: &mut Vec<Change>) {
        let index = self.rooms.entry(room.to_string()).or_default();
        *index.nodes.entry(connection.node.clone()).or_default() += 1;
        let entry = index
            .users
            .entry(connection.user.clone())
            .or_insert((0, None));
        entry.0 += 1;
        if connection.name.is_some() {
            entry.1 = connection.name.clone();
        }
        if entry.0 == 1 {
            changes.push(Change::RoomOnline {
                room: room.to_string(),
                user: connection.user.clone(),
                name: entry.1.clone(),
            });
        }
    }

    fn unindex_room(&mut self, room: &str, connection: &Connection, changes: &mut Vec<Change>) {
        let Some(index) = self.rooms.get_mut(room) else {
            return;
        };
        if let Some(n) = index.nodes.get_mut(&connection.node) {
            *n -= 1;
            if *n == 0 {
                index.nodes.remove(&connection.node);
            }
        }
        if let Some(entry) = index.users.get_mut(&connection.user) {
            entry.0 -= 1;
            if entry.0 == 0 {
                index.users.remove(&connection.user);
                changes.push(Change::RoomOffline {
                    room: room.to_string(),
                    user: connection.user.clone(),
                });
            }
        }
        if index.users.is_empty() {
            self.rooms.remove(room);
        }
    }

    /// Users online in `room`.
    pub fn room_count(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, |r| r.users.len())
    }

    /// Up to `max` of the users online in `room`, by user id, with their names.
    pub fn room_users(&self, room: &str, max: usize) -> Vec<(String, Option<String>)> {
        let Some(index) = self.rooms.get(room) else {
            return Vec::new();
        };
        let mut users: Vec<(String, Option<String>)> = index
            .users
            .iter()
            .map(|(user, (_, name))| (user.clone(), name.clone()))
            .collect();
        users.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        users.truncate(max);
        users
    }

    /// The edges with connections in `room`.
    pub fn room_nodes(&self, room: &str) -> Vec<String> {
        self.rooms
            .get(room)
            .map(|r| r.nodes.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether `user` has a connection anywhere.
    pub fn is_online(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn online_in(changes: &[Change]) -> Vec<(String, String)> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::RoomOnline { room, user, .. } => Some((room.clone(), user.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn two_devices_of_one_user_are_one_presence() {
        let mut p = Presence::default();
        let first = p.join("e1", "c1", "ada", Some("Ada".into()), "r");
        assert_eq!(online_in(&first), [("r".into(), "ada".into())]);
        assert!(
            p.join("e2", "c2", "ada", None, "r").is_empty(),
            "second device"
        );
        assert_eq!(p.room_count("r"), 1);
        assert_eq!(p.room_nodes("r").len(), 2);
        assert!(
            p.offline("e1", "c1", 10).is_empty(),
            "still on the other device"
        );
        assert!(p.is_online("ada"));
        assert_eq!(
            p.leave("e2", "c2", "r"),
            [Change::RoomOffline {
                room: "r".into(),
                user: "ada".into()
            }]
        );
        assert_eq!(
            p.offline("e2", "c2", 20),
            [Change::UserOffline {
                user: "ada".into(),
                ts: 20
            }]
        );
        assert!(!p.is_online("ada"));
        assert_eq!(p.rooms(), 0);
    }

    #[test]
    fn repeated_events_change_nothing() {
        let mut p = Presence::default();
        p.online("e", "c", "ada", None);
        p.online("e", "c", "ada", None);
        assert_eq!(p.join("e", "c", "ada", None, "r").len(), 1);
        assert!(p.join("e", "c", "ada", None, "r").is_empty());
        assert_eq!(p.leave("e", "c", "r").len(), 1);
        assert!(p.leave("e", "c", "r").is_empty());
        assert_eq!(p.offline("e", "c", 1).len(), 1);
        assert!(p.offline("e", "c", 1).is_empty());
    }

    #[test]
    fn a_silent_or_restarted_edge_takes_its_users_offline() {
        let mut p = Presence::default();
        p.seen_edge("e1", 1_000);
        p.seen_edge("e2", 5_000);
        p.join("e1", "c1", "ada", None, "r");
        p.join("e2", "c2", "bob", None, "r");
        p.join("e1", "c3", "bob", None, "r");
        let changes = p.expire_edges(2_000);
        assert!(changes.contains(&Change::RoomOffline {
            room: "r".into(),
            user: "ada".into()
        }));
        assert!(changes.contains(&Change::UserOffline {
            user: "ada".into(),
            ts: 1_000
        }));
        assert!(p.is_online("bob"), "bob is also on e2");
        assert_eq!(p.room_users("r", 10), [("bob".to_string(), None)]);

        let changes = p.edge_started("e2", 9_000);
        assert!(changes.contains(&Change::UserOffline {
            user: "bob".into(),
            ts: 9_000
        }));
        assert_eq!(p.connections(), 0);
        assert!(p.expire_edges(8_000).is_empty(), "e2 just started");
    }

    #[test]
    fn a_snapshot_restores_every_index() {
        let mut p = Presence::default();
        p.seen_edge("e1", 1);
        p.join("e1", "c1", "ada", Some("Ada".into()), "r");
        p.join("e1", "c2", "bob", None, "r");
        p.join("e1", "c2", "bob", None, "s");
        p.positions.insert(0, 42);
        let restored = Presence::from_snapshot(&p.snapshot().unwrap()).unwrap();
        assert_eq!(restored.positions.get(&0), Some(&42));
        assert_eq!(
            restored.room_users("r", 10),
            [
                ("ada".to_string(), Some("Ada".to_string())),
                ("bob".to_string(), None)
            ]
        );
        assert_eq!(restored.room_count("s"), 1);
        assert!(restored.is_online("bob"));
        let mut restored = restored;
        assert_eq!(
            restored.offline("e1", "c2", 5).len(),
            3,
            "r, s, and bob offline"
        );
    }

    #[test]
    fn room_users_are_capped_and_sorted() {
        let mut p = Presence::default();
        for i in (0..20).rev() {
            p.join("e", &format!("c{i}"), &format!("u{i:02}"), None, "big");
        }
        let users = p.room_users("big", 5);
        assert_eq!(users.len(), 5);
        assert_eq!(users[0].0, "u00");
        assert_eq!(p.room_count("big"), 20);
    }
}
