//! The store: where the room log is kept for reading (history, catch-up) and what processors
//! need to recover after a restart (room heads, client ids, checkpoints).
//!
//! One interface, [`Store`], with two backends: [`cassandra::CassandraStore`] (ScyllaDB or
//! Apache Cassandra, through the `scylla` driver) and [`embedded::EmbeddedStore`] (redb).
//! Writes come only from processors (persistence); edges only read.

pub mod cassandra;
pub mod embedded;
pub mod metered;

use async_trait::async_trait;

/// Longest room name: the v1 contract's `[A-Za-z0-9._:-]{1,128}`.
pub const MAX_ROOM_LEN: usize = 128;
/// Longest client message id.
pub const MAX_CLIENT_ID_LEN: usize = 64;
/// Largest stored text in bytes (the edge enforces the character limit well below this).
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Most messages one read returns.
pub const MAX_READ_LIMIT: usize = 10_000;
/// Largest processor snapshot (well under Cassandra's default 16 MiB mutation limit).
pub const MAX_SNAPSHOT_BYTES: usize = 8 << 20;
/// Most users one `last_seen` call asks about.
pub const MAX_USERS_PER_CALL: usize = 1000;
/// Longest user id (a JWT `sub`) in the inbox tables, in bytes.
pub const MAX_USER_LEN: usize = 128;
/// Most rooms [`Store::inbox_rooms`] returns for one user (G7): the inbox is built from these.
pub const MAX_INBOX_ROOMS: usize = 1000;
/// Most rows of each kind in one [`InboxUpdate`].
pub const MAX_INBOX_UPDATE: usize = 10_000;

/// A message as stored: one sequenced entry of a room's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub room: String,
    pub seq: i64,
    /// The sender's idempotency id.
    pub client_id: String,
    /// The sender (JWT sub).
    pub from: String,
    pub text: String,
    /// Server time (ms) when the seq was assigned.
    pub ts: i64,
    /// A moderator or the sender deleted it: it keeps its seq, sender and time (no gap
    /// appears) and has no text.
    pub deleted: bool,
}

/// What the inbox processor derives from a stretch of the room log. Every part is
/// idempotent, so the same update may be written again after a crash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxUpdate {
    /// (user, room): the room belongs in the user's inbox (a DM room with a message, a room
    /// where they were mentioned).
    pub rooms: Vec<(String, String)>,
    /// (user, room, seq): a message the user sent (unread counts leave them out).
    pub sent: Vec<(String, String, i64)>,
    /// (user, room, seq): a message that mentions the user.
    pub mentions: Vec<(String, String, i64)>,
    /// Rooms' newest messages; an older one never replaces a newer one.
    pub last: Vec<StoredMessage>,
}

impl InboxUpdate {
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
            && self.sent.is_empty()
            && self.mentions.is_empty()
            && self.last.is_empty()
    }
}

/// A user silenced in a room until `until` (ms since the epoch); a later mute of the same
/// user in the same room replaces it (an `until` in the past lifts it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mute {
    pub room: String,
    pub user: String,
    pub until: i64,
}

/// Most mutes [`Store::mutes`] returns for one room.
pub const MAX_MUTES_PER_ROOM: usize = 10_000;

/// A room in a user's inbox and how far they read it (0: never marked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxRoom {
    pub room: String,
    pub read: i64,
}

/// Which way a read walks the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Ascending,
    Descending,
}

/// Messages with `after < seq < before`, walked in `direction`, at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    pub after: i64,
    pub before: i64,
    pub direction: Direction,
    pub limit: usize,
}

impl SeqRange {
    /// Everything after `seq`, oldest first (catch-up).
    pub fn after(seq: i64, limit: usize) -> Self {
        Self {
            after: seq,
            before: i64::MAX,
            direction: Direction::Ascending,
            limit,
        }
    }

    /// The latest messages before `seq`, newest first (history pages).
    pub fn before(seq: i64, limit: usize) -> Self {
        Self {
            after: 0,
            before: seq,
            direction: Direction::Descending,
            limit,
        }
    }
}

/// Why a store operation failed. `code()` is what reaches a client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid {what}: {why}")]
    Invalid {
        what: &'static str,
        why: &'static str,
    },
    #[error("{what} of {size} bytes exceeds the limit of {max}")]
    TooLarge {
        what: &'static str,
        size: usize,
        max: usize,
    },
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Invalid { .. } => "invalid",
            StoreError::TooLarge { .. } => "too_large",
            StoreError::Unavailable(_) => "unavailable",
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Whether `room` is a valid room name (`[A-Za-z0-9._:-]{1,128}`).
pub fn valid_room(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= MAX_ROOM_LEN
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn check_room(room: &str) -> Result<()> {
    if valid_room(room) {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            what: "room",
            why: "must match [A-Za-z0-9._:-]{1,128}",
        })
    }
}

/// What both backends refuse before writing anything.
pub fn validate(message: &StoredMessage) -> Result<()> {
    check_room(&message.room)?;
    if message.seq < 1 {
        return Err(StoreError::Invalid {
            what: "seq",
            why: "must be 1 or more",
        });
    }
    if message.client_id.is_empty() || message.client_id.chars().count() > MAX_CLIENT_ID_LEN {
        return Err(StoreError::Invalid {
            what: "client id",
            why: "must be 1 to 64 characters",
        });
    }
    if message.text.len() > MAX_TEXT_BYTES {
        return Err(StoreError::TooLarge {
            what: "text",
            size: message.text.len(),
            max: MAX_TEXT_BYTES,
        });
    }
    Ok(())
}

fn check_snapshot(state: &[u8]) -> Result<()> {
    if state.len() > MAX_SNAPSHOT_BYTES {
        return Err(StoreError::TooLarge {
            what: "snapshot",
            size: state.len(),
            max: MAX_SNAPSHOT_BYTES,
        });
    }
    Ok(())
}

fn check_users(count: usize) -> Result<()> {
    if count > MAX_USERS_PER_CALL {
        return Err(StoreError::Invalid {
            what: "users",
            why: "at most 1000 per call",
        });
    }
    Ok(())
}

fn check_user(user: &str) -> Result<()> {
    if user.is_empty() || user.len() > MAX_USER_LEN {
        return Err(StoreError::Invalid {
            what: "user",
            why: "must be 1 to 128 bytes",
        });
    }
    Ok(())
}

/// What both backends refuse in an inbox update before writing any of it.
fn check_inbox_update(update: &InboxUpdate) -> Result<()> {
    let too_many = [
        update.rooms.len(),
        update.sent.len(),
        update.mentions.len(),
        update.last.len(),
    ]
    .into_iter()
    .any(|n| n > MAX_INBOX_UPDATE);
    if too_many {
        return Err(StoreError::Invalid {
            what: "inbox update",
            why: "at most 10000 rows of each kind",
        });
    }
    for (user, room) in &update.rooms {
        check_user(user)?;
        check_room(room)?;
    }
    for (user, room, seq) in update.sent.iter().chain(&update.mentions) {
        check_user(user)?;
        check_room(room)?;
        check_seq(*seq)?;
    }
    for m in &update.last {
        validate(m)?;
    }
    Ok(())
}

fn check_seq(seq: i64) -> Result<()> {
    if seq < 1 {
        return Err(StoreError::Invalid {
            what: "seq",
            why: "must be 1 or more",
        });
    }
    Ok(())
}

fn check_marker(user: &str, room: &str, seq: i64) -> Result<()> {
    check_user(user)?;
    check_room(room)?;
    if seq < 0 {
        return Err(StoreError::Invalid {
            what: "read marker",
            why: "must be 0 or more",
        });
    }
    Ok(())
}

fn check_range(room: &str, range: &SeqRange) -> Result<()> {
    check_room(room)?;
    if range.limit == 0 || range.limit > MAX_READ_LIMIT {
        return Err(StoreError::Invalid {
            what: "limit",
            why: "must be 1 to 10000",
        });
    }
    Ok(())
}

/// The message store.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends messages. Idempotent by (room, seq): writing a message again changes nothing,
    /// so a processor may replay after a crash. All are validated before any is written.
    async fn append(&self, messages: &[StoredMessage]) -> Result<()>;

    /// Reads a room's messages in a seq range (see [`SeqRange`]).
    async fn read(&self, room: &str, range: SeqRange) -> Result<Vec<StoredMessage>>;

    /// The highest stored seq of a room (0 when empty).
    async fn head(&self, room: &str) -> Result<i64>;

    /// The seq stored for a client message id (dedupe after a restart).
    async fn seq_of(&self, room: &str, client_id: &str) -> Result<Option<i64>>;

    /// A processor's saved position in one log partition.
    async fn checkpoint(&self, name: &str, partition: u32) -> Result<Option<i64>>;

    async fn set_checkpoint(&self, name: &str, partition: u32, next_offset: i64) -> Result<()>;

    /// A processor's state as of a log position in one partition, saved together: where to
    /// resume (the next offset) and the bytes to resume with.
    async fn snapshot(&self, name: &str, partition: u32) -> Result<Option<(i64, Vec<u8>)>>;

    /// Replaces the snapshot (at most [`MAX_SNAPSHOT_BYTES`], else `too_large`).
    async fn save_snapshot(
        &self,
        name: &str,
        partition: u32,
        next_offset: i64,
        state: &[u8],
    ) -> Result<()>;

    /// When each user's last connection ended (ms since the epoch), `None` if never seen;
    /// in the order asked (at most [`MAX_USERS_PER_CALL`]).
    async fn last_seen(&self, users: &[String]) -> Result<Vec<Option<i64>>>;

    /// Records when users were last seen; an older time never replaces a newer one.
    async fn set_last_seen(&self, seen: &[(String, i64)]) -> Result<()>;

    /// Writes what the inbox processor derived: `rooms`, `sent` and `mentions` before `last`,
    /// so a reader that sees a room's `last` also sees every row up to it.
    async fn update_inbox(&self, update: &InboxUpdate) -> Result<()>;

    /// A user's read marker in a room, `None` if never set.
    async fn read_marker(&self, user: &str, room: &str) -> Result<Option<i64>>;

    /// Sets a read marker and puts the room in the user's inbox. A marker never moves back:
    /// a lower `seq` than the stored one changes nothing.
    async fn set_read_marker(&self, user: &str, room: &str, seq: i64) -> Result<()>;

    /// The rooms in a user's inbox with their read markers (0 where none was set), in room
    /// name order, at most [`MAX_INBOX_ROOMS`].
    async fn inbox_rooms(&self, user: &str) -> Result<Vec<InboxRoom>>;

    /// A room's newest message as the inbox processor recorded it.
    async fn last_message(&self, room: &str) -> Result<Option<StoredMessage>>;

    /// In a room, how many messages after seq `after` the user sent, and how many mention
    /// them.
    async fn counts_after(&self, user: &str, room: &str, after: i64) -> Result<(i64, i64)>;

    /// Deletes messages: each (room, seq) reads back with `deleted` and no text, from
    /// `read` and `last_message`, also after the message is appended again. Idempotent.
    async fn delete_messages(&self, targets: &[(String, i64)]) -> Result<()>;

    /// Records mutes; of several for one (room, user), the last in the slice wins.
    async fn set_mutes(&self, mutes: &[Mute]) -> Result<()>;

    /// A room's mutes (expired ones too), at most [`MAX_MUTES_PER_ROOM`].
    async fn mutes(&self, room: &str) -> Result<Vec<Mute>>;

    /// `Ok` when writes can be taken now, else why not (`unavailable`). Cheap enough for a
    /// readiness probe every few seconds: Cassandra answers one small write within a short
    /// timeout; embedded does no I/O unless it is recovering from a disk fault.
    async fn writable(&self) -> Result<()>;
}
