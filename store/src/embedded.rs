//! The store in one redb file, for `tidings standalone`. Every append is one fsynced
//! transaction; reads run on snapshots and never block the writer. After a disk fault the
//! file reopens itself at its last commit, all of which were durable ([`tidings_embedded::Db`]).

use crate::{
    check_inbox_update, check_marker, check_range, check_room, check_snapshot, check_user,
    check_users, validate, Direction, InboxRoom, InboxUpdate, Mute, Result, SeqRange, Store,
    StoreError, StoredMessage, MAX_INBOX_ROOMS, MAX_MUTES_PER_ROOM,
};
use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use tidings_embedded::Db;

/// (room, seq).
type MessageKey<'a> = (&'a str, i64);
/// (client id, from, text, ts).
type MessageValue<'a> = (&'a str, &'a str, &'a str, i64);
const MESSAGES: TableDefinition<MessageKey, MessageValue> = TableDefinition::new("messages");
/// (room, client id) → seq.
const CLIENT_IDS: TableDefinition<(&str, &str), i64> = TableDefinition::new("client_ids");
/// room → highest seq.
const HEADS: TableDefinition<&str, i64> = TableDefinition::new("heads");
/// (processor, partition) → next offset.
const CHECKPOINTS: TableDefinition<(&str, u32), i64> = TableDefinition::new("checkpoints");
const SNAPSHOTS: TableDefinition<(&str, u32), (i64, &[u8])> = TableDefinition::new("snapshots");
const LAST_SEEN: TableDefinition<&str, i64> = TableDefinition::new("last_seen");
/// (user, room) → read marker; `None` while the room is in the inbox without one, so
/// `read_marker` can tell "never set" from a marker set to 0.
const INBOX_ROOMS: TableDefinition<(&str, &str), Option<i64>> = TableDefinition::new("inbox_rooms");
/// (user, room, seq): a message the user sent, or one that mentions them.
type InboxKey<'a> = (&'a str, &'a str, i64);
const INBOX_SENT: TableDefinition<InboxKey, ()> = TableDefinition::new("inbox_sent");
const INBOX_MENTIONS: TableDefinition<InboxKey, ()> = TableDefinition::new("inbox_mentions");
/// (room, seq) of deleted messages; their text is removed from MESSAGES and ROOM_LAST.
const DELETED: TableDefinition<(&str, i64), ()> = TableDefinition::new("deleted");
/// (room, user) → muted until (ms).
const MUTES: TableDefinition<(&str, &str), i64> = TableDefinition::new("mutes");
/// room → its newest message as (seq, client id, from, text, ts).
const ROOM_LAST: TableDefinition<&str, (i64, &str, &str, &str, i64)> =
    TableDefinition::new("room_last");

/// A stored message as read back; a deleted one without its text, whatever a replayed
/// append wrote.
fn message(room: &str, seq: i64, value: MessageValue<'_>, deleted: bool) -> StoredMessage {
    let (client_id, from, text, ts) = value;
    StoredMessage {
        room: room.to_string(),
        seq,
        client_id: client_id.to_string(),
        from: from.to_string(),
        text: if deleted {
            String::new()
        } else {
            text.to_string()
        },
        ts,
        deleted,
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("embedded store: {e}"))
}

#[derive(Clone)]
pub struct EmbeddedStore {
    db: Db,
}

impl EmbeddedStore {
    pub fn open(path: &Path) -> Result<Self> {
        let db = Db::create(path).map_err(unavailable)?;
        db.run(|db| {
            let txn = db.begin_write()?;
            txn.open_table(MESSAGES)?;
            txn.open_table(CLIENT_IDS)?;
            txn.open_table(HEADS)?;
            txn.open_table(CHECKPOINTS)?;
            txn.open_table(SNAPSHOTS)?;
            txn.open_table(LAST_SEEN)?;
            txn.open_table(INBOX_ROOMS)?;
            txn.open_table(INBOX_SENT)?;
            txn.open_table(INBOX_MENTIONS)?;
            txn.open_table(ROOM_LAST)?;
            txn.open_table(DELETED)?;
            txn.open_table(MUTES)?;
            txn.commit()?;
            Ok(())
        })
        .map_err(unavailable)?;
        Ok(Self { db })
    }

    /// How many times the database was reopened after a disk fault.
    pub fn reopens(&self) -> u64 {
        self.db.reopens()
    }

    /// Rows of `table` for (user, room) with seq > `after`.
    fn count_after(
        table: &impl ReadableTable<InboxKey<'static>, ()>,
        user: &str,
        room: &str,
        after: i64,
    ) -> Result<i64, redb::Error> {
        let Some(first) = after.checked_add(1) else {
            return Ok(0);
        };
        let mut count = 0;
        for entry in table.range((user, room, first)..=(user, room, i64::MAX))? {
            entry?;
            count += 1;
        }
        Ok(count)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, redb::Error> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.run(work).map_err(unavailable))
            .await
            .map_err(unavailable)?
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn append(&self, messages: &[StoredMessage]) -> Result<()> {
        for m in messages {
            validate(m)?;
        }
        if messages.is_empty() {
            return Ok(());
        }
        let messages = messages.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(MESSAGES)?;
                let mut ids = txn.open_table(CLIENT_IDS)?;
                let mut heads = txn.open_table(HEADS)?;
                for m in &messages {
                    let key = (m.room.as_str(), m.seq);
                    // Idempotent: the first write of a (room, seq) stays.
                    if table.get(key)?.is_some() {
                        continue;
                    }
                    table.insert(
                        key,
                        (m.client_id.as_str(), m.from.as_str(), m.text.as_str(), m.ts),
                    )?;
                    ids.insert((m.room.as_str(), m.client_id.as_str()), m.seq)?;
                    let head = heads.get(m.room.as_str())?.map(|v| v.value());
                    if head.is_none_or(|h| h < m.seq) {
                        heads.insert(m.room.as_str(), m.seq)?;
                    }
                }
            }
            Ok(txn.commit()?)
        })
        .await
    }

    async fn read(&self, room: &str, range: SeqRange) -> Result<Vec<StoredMessage>> {
        check_range(room, &range)?;
        if range.after.saturating_add(1) >= range.before {
            return Ok(Vec::new());
        }
        let room = room.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(MESSAGES)?;
            let deleted = txn.open_table(DELETED)?;
            let span =
                table.range((room.as_str(), range.after + 1)..(room.as_str(), range.before))?;
            let to_message = |entry: std::result::Result<
                (
                    redb::AccessGuard<MessageKey>,
                    redb::AccessGuard<MessageValue>,
                ),
                redb::StorageError,
            >| {
                let (k, v) = entry?;
                let (_, seq) = k.value();
                let (client_id, from, text, ts) = v.value();
                let is_deleted = deleted.get((room.as_str(), seq))?.is_some();
                Ok::<_, redb::Error>(message(&room, seq, (client_id, from, text, ts), is_deleted))
            };
            match range.direction {
                Direction::Ascending => span.take(range.limit).map(to_message).collect(),
                Direction::Descending => span.rev().take(range.limit).map(to_message).collect(),
            }
        })
        .await
    }

    async fn head(&self, room: &str) -> Result<i64> {
        check_room(room)?;
        let room = room.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(HEADS)?;
            let head = table.get(room.as_str())?;
            Ok(head.map(|v| v.value()).unwrap_or(0))
        })
        .await
    }

    async fn seq_of(&self, room: &str, client_id: &str) -> Result<Option<i64>> {
        check_room(room)?;
        let (room, client_id) = (room.to_string(), client_id.to_string());
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(CLIENT_IDS)?;
            let seq = table.get((room.as_str(), client_id.as_str()))?;
            Ok(seq.map(|v| v.value()))
        })
        .await
    }

    async fn checkpoint(&self, name: &str, partition: u32) -> Result<Option<i64>> {
        let name = name.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(CHECKPOINTS)?;
            let offset = table.get((name.as_str(), partition))?;
            Ok(offset.map(|v| v.value()))
        })
        .await
    }

    async fn set_checkpoint(&self, name: &str, partition: u32, next_offset: i64) -> Result<()> {
        let name = name.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(CHECKPOINTS)?;
                table.insert((name.as_str(), partition), next_offset)?;
            }
            Ok(txn.commit()?)
        })
        .await
    }

    /// No I/O while healthy; after a disk fault, `unavailable` until the database is back.
    async fn snapshot(&self, name: &str, partition: u32) -> Result<Option<(i64, Vec<u8>)>> {
        let name = name.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(SNAPSHOTS)?;
            let found = table.get((name.as_str(), partition))?;
            Ok(found.map(|v| {
                let (offset, state) = v.value();
                (offset, state.to_vec())
            }))
        })
        .await
    }

    async fn save_snapshot(
        &self,
        name: &str,
        partition: u32,
        next_offset: i64,
        state: &[u8],
    ) -> Result<()> {
        check_snapshot(state)?;
        let (name, state) = (name.to_string(), state.to_vec());
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(SNAPSHOTS)?;
                table.insert((name.as_str(), partition), (next_offset, state.as_slice()))?;
            }
            Ok(txn.commit()?)
        })
        .await
    }

    async fn last_seen(&self, users: &[String]) -> Result<Vec<Option<i64>>> {
        check_users(users.len())?;
        let users = users.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(LAST_SEEN)?;
            users
                .iter()
                .map(|u| Ok(table.get(u.as_str())?.map(|v| v.value())))
                .collect()
        })
        .await
    }

    async fn set_last_seen(&self, seen: &[(String, i64)]) -> Result<()> {
        check_users(seen.len())?;
        if seen.is_empty() {
            return Ok(());
        }
        let seen = seen.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(LAST_SEEN)?;
                for (user, ts) in &seen {
                    let newer = table.get(user.as_str())?.is_none_or(|v| v.value() < *ts);
                    if newer {
                        table.insert(user.as_str(), *ts)?;
                    }
                }
            }
            Ok(txn.commit()?)
        })
        .await
    }

    async fn update_inbox(&self, update: &InboxUpdate) -> Result<()> {
        check_inbox_update(update)?;
        if update.is_empty() {
            return Ok(());
        }
        let update = update.clone();
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            {
                let mut rooms = txn.open_table(INBOX_ROOMS)?;
                for (user, room) in &update.rooms {
                    let key = (user.as_str(), room.as_str());
                    // Entering the inbox keeps any marker already set.
                    if rooms.get(key)?.is_none() {
                        rooms.insert(key, None)?;
                    }
                }
                let mut sent = txn.open_table(INBOX_SENT)?;
                for (user, room, seq) in &update.sent {
                    sent.insert((user.as_str(), room.as_str(), *seq), ())?;
                }
                let mut mentions = txn.open_table(INBOX_MENTIONS)?;
                for (user, room, seq) in &update.mentions {
                    mentions.insert((user.as_str(), room.as_str(), *seq), ())?;
                }
                let mut last = txn.open_table(ROOM_LAST)?;
                for m in &update.last {
                    let newer = last
                        .get(m.room.as_str())?
                        .is_none_or(|v| v.value().0 < m.seq);
                    if newer {
                        last.insert(
                            m.room.as_str(),
                            (
                                m.seq,
                                m.client_id.as_str(),
                                m.from.as_str(),
                                m.text.as_str(),
                                m.ts,
                            ),
                        )?;
                    }
                }
            }
            Ok(txn.commit()?)
        })
        .await
    }

    async fn read_marker(&self, user: &str, room: &str) -> Result<Option<i64>> {
        check_user(user)?;
        check_room(room)?;
        let (user, room) = (user.to_string(), room.to_string());
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(INBOX_ROOMS)?;
            let marker = table.get((user.as_str(), room.as_str()))?;
            Ok(marker.and_then(|v| v.value()))
        })
        .await
    }

    async fn set_read_marker(&self, user: &str, room: &str, seq: i64) -> Result<()> {
        check_marker(user, room, seq)?;
        let (user, room) = (user.to_string(), room.to_string());
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(INBOX_ROOMS)?;
                let key = (user.as_str(), room.as_str());
                let stored = table.get(key)?.and_then(|v| v.value());
                if stored.is_none_or(|read| read < seq) {
                    table.insert(key, Some(seq))?;
                }
            }
            Ok(txn.commit()?)
        })
        .await
    }

    async fn inbox_rooms(&self, user: &str) -> Result<Vec<InboxRoom>> {
        check_user(user)?;
        let user = user.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(INBOX_ROOMS)?;
            // Keys order by user, then room: the user's rows are one run from (user, "").
            let mut rooms = Vec::new();
            for entry in table.range((user.as_str(), "")..)? {
                let (k, v) = entry?;
                let (owner, room) = k.value();
                if owner != user || rooms.len() == MAX_INBOX_ROOMS {
                    break;
                }
                rooms.push(InboxRoom {
                    room: room.to_string(),
                    read: v.value().unwrap_or(0),
                });
            }
            Ok(rooms)
        })
        .await
    }

    async fn last_message(&self, room: &str) -> Result<Option<StoredMessage>> {
        check_room(room)?;
        let room = room.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(ROOM_LAST)?;
            let deleted = txn.open_table(DELETED)?;
            let Some(found) = table.get(room.as_str())? else {
                return Ok(None);
            };
            let (seq, client_id, from, text, ts) = found.value();
            let is_deleted = deleted.get((room.as_str(), seq))?.is_some();
            Ok(Some(message(
                &room,
                seq,
                (client_id, from, text, ts),
                is_deleted,
            )))
        })
        .await
    }

    async fn counts_after(&self, user: &str, room: &str, after: i64) -> Result<(i64, i64)> {
        check_user(user)?;
        check_room(room)?;
        let (user, room) = (user.to_string(), room.to_string());
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let sent = Self::count_after(&txn.open_table(INBOX_SENT)?, &user, &room, after)?;
            let mentions =
                Self::count_after(&txn.open_table(INBOX_MENTIONS)?, &user, &room, after)?;
            Ok((sent, mentions))
        })
        .await
    }

    async fn delete_messages(&self, targets: &[(String, i64)]) -> Result<()> {
        for (room, _) in targets {
            check_room(room)?;
        }
        if targets.is_empty() {
            return Ok(());
        }
        let targets = targets.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            {
                let mut deleted = txn.open_table(DELETED)?;
                let mut messages = txn.open_table(MESSAGES)?;
                for (room, seq) in &targets {
                    deleted.insert((room.as_str(), *seq), ())?;
                    // The text goes for good; the row keeps its seq, sender and time.
                    let kept = messages.get((room.as_str(), *seq))?.map(|v| {
                        let (client_id, from, _, ts) = v.value();
                        (client_id.to_string(), from.to_string(), ts)
                    });
                    if let Some((client_id, from, ts)) = kept {
                        messages.insert(
                            (room.as_str(), *seq),
                            (client_id.as_str(), from.as_str(), "", ts),
                        )?;
                    }
                }
            }
            Ok(txn.commit()?)
        })
        .await
    }

    async fn set_mutes(&self, mutes: &[Mute]) -> Result<()> {
        for m in mutes {
            check_room(&m.room)?;
            check_user(&m.user)?;
        }
        if mutes.is_empty() {
            return Ok(());
        }
        let mutes = mutes.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(MUTES)?;
                for m in &mutes {
                    table.insert((m.room.as_str(), m.user.as_str()), m.until)?;
                }
            }
            Ok(txn.commit()?)
        })
        .await
    }

    async fn mutes(&self, room: &str) -> Result<Vec<Mute>> {
        check_room(room)?;
        let room = room.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(MUTES)?;
            let mut found = Vec::new();
            for entry in table.range((room.as_str(), "")..)? {
                let (k, v) = entry?;
                let (r, user) = k.value();
                if r != room || found.len() == MAX_MUTES_PER_ROOM {
                    break;
                }
                found.push(Mute {
                    room: room.clone(),
                    user: user.to_string(),
                    until: v.value(),
                });
            }
            Ok(found)
        })
        .await
    }

    async fn writable(&self) -> Result<()> {
        self.db.writable().map_err(unavailable)
    }
}
