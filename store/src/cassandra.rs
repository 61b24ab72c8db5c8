//! The store on ScyllaDB or Apache Cassandra, through the `scylla` driver.
//!
//! Messages are partitioned by (room, bucket) and clustered by seq, the usual chat layout:
//! `bucket = seq / bucket_size`, so a range read knows which partitions to visit from the
//! seqs alone and no partition grows without bound.

use crate::{
    check_inbox_update, check_marker, check_range, check_room, check_snapshot, check_user,
    check_users, validate, Direction, InboxRoom, InboxUpdate, Mute, Result, SeqRange, Store,
    StoreError, StoredMessage, MAX_INBOX_ROOMS, MAX_MUTES_PER_ROOM,
};
use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::{self, StreamExt, TryStreamExt};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use std::collections::HashMap;
use std::time::Duration;

/// Rows per unlogged batch. A batch of one partition's rows is one mutation, which is where
/// batching pays: per-row statements capped appends at ~1,300 messages/s here (BENCHMARKS.md).
const BATCH_ROWS: usize = 100;
/// How long [`Store::writable`] waits for its probe write.
const WRITABLE_TIMEOUT: Duration = Duration::from_secs(2);
/// The checkpoint row [`Store::writable`] writes: a name no processor uses.
const PROBE_NAME: &str = "_writable";

/// How to reach the cluster and how to keep the data.
#[derive(Debug, Clone)]
pub struct CassandraConfig {
    /// `host:port` of one or more nodes.
    pub contact_points: Vec<String>,
    pub keyspace: String,
    /// The keyspace's replication map, as CQL.
    pub replication: String,
    /// Consistency of every read and write.
    pub consistency: Consistency,
    /// Messages per (room, bucket) partition. Fixed for the life of a keyspace.
    pub bucket_size: i64,
    /// Most statements in flight per append call.
    pub write_concurrency: usize,
}

impl CassandraConfig {
    pub fn new(contact_points: Vec<String>) -> Self {
        Self {
            contact_points,
            keyspace: "tidings".into(),
            replication: Replication::Simple(1).to_cql(),
            consistency: Consistency::LocalQuorum,
            bucket_size: 1000,
            write_concurrency: 64,
        }
    }
}

/// How the keyspace is replicated, as `TIDINGS_CASSANDRA_REPLICATION` spells it:
/// `SimpleStrategy:3` (one datacenter) or `NetworkTopologyStrategy:dc1=3,dc2=3` (replicas per
/// datacenter, names as the cluster's snitch reports them). It applies when `migrate` creates
/// the keyspace; an existing keyspace keeps its replication (change it with `ALTER KEYSPACE`
/// and a repair).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    Simple(u32),
    NetworkTopology(Vec<(String, u32)>),
}

/// Why a replication setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationError {
    #[error("expected STRATEGY:SETTINGS, e.g. SimpleStrategy:3 or NetworkTopologyStrategy:dc1=3,dc2=3; got {0:?}")]
    Format(String),
    #[error("unknown replication strategy {0:?}: SimpleStrategy or NetworkTopologyStrategy")]
    Strategy(String),
    #[error("a replication factor is a whole number from 1 up, got {0:?}")]
    Factor(String),
    #[error("a datacenter name is letters, digits, '_', '-' and '.', got {0:?}")]
    Datacenter(String),
    #[error("datacenter {0:?} is named twice")]
    Duplicate(String),
}

impl std::str::FromStr for Replication {
    type Err = ReplicationError;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        let format = || ReplicationError::Format(text.to_string());
        let (strategy, settings) = text.split_once(':').ok_or_else(format)?;
        let factor = |value: &str| match value.trim().parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(ReplicationError::Factor(value.trim().to_string())),
        };
        match strategy.trim() {
            s if s.eq_ignore_ascii_case("SimpleStrategy") => {
                Ok(Replication::Simple(factor(settings)?))
            }
            s if s.eq_ignore_ascii_case("NetworkTopologyStrategy") => {
                let mut datacenters: Vec<(String, u32)> = Vec::new();
                for entry in settings.split(',') {
                    let (name, value) = entry.split_once('=').ok_or_else(format)?;
                    let name = name.trim();
                    let name_ok = !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
                    if !name_ok {
                        return Err(ReplicationError::Datacenter(name.to_string()));
                    }
                    if datacenters.iter().any(|(dc, _)| dc == name) {
                        return Err(ReplicationError::Duplicate(name.to_string()));
                    }
                    datacenters.push((name.to_string(), factor(value)?));
                }
                Ok(Replication::NetworkTopology(datacenters))
            }
            other => Err(ReplicationError::Strategy(other.to_string())),
        }
    }
}

impl Replication {
    /// The replication map as `CREATE KEYSPACE ... WITH replication = ` takes it.
    pub fn to_cql(&self) -> String {
        match self {
            Replication::Simple(n) => {
                format!("{{'class': 'SimpleStrategy', 'replication_factor': {n}}}")
            }
            Replication::NetworkTopology(datacenters) => {
                let mut cql = "{'class': 'NetworkTopologyStrategy'".to_string();
                for (dc, n) in datacenters {
                    cql.push_str(&format!(", '{dc}': {n}"));
                }
                cql.push('}');
                cql
            }
        }
    }
}

/// Parses a consistency name as CQL spells it (`ONE`, `LOCAL_QUORUM`, ...).
pub fn parse_consistency(name: &str) -> Option<Consistency> {
    Some(match name.to_ascii_uppercase().as_str() {
        "ANY" => Consistency::Any,
        "ONE" => Consistency::One,
        "TWO" => Consistency::Two,
        "THREE" => Consistency::Three,
        "QUORUM" => Consistency::Quorum,
        "ALL" => Consistency::All,
        "LOCAL_QUORUM" => Consistency::LocalQuorum,
        "EACH_QUORUM" => Consistency::EachQuorum,
        "LOCAL_ONE" => Consistency::LocalOne,
        _ => return None,
    })
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("cassandra: {e}"))
}

/// The schema, in order. Every statement is idempotent, so `migrate` can run any number of times.
fn schema(config: &CassandraConfig) -> Vec<String> {
    let ks = &config.keyspace;
    vec![
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {}",
            config.replication
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.messages (
                room text, bucket bigint, seq bigint,
                client_id text, sender text, body text, ts bigint,
                PRIMARY KEY ((room, bucket), seq)
             ) WITH CLUSTERING ORDER BY (seq ASC)"
        ),
        // Written with USING TIMESTAMP = seq, so the highest seq wins whatever the write order.
        format!("CREATE TABLE IF NOT EXISTS {ks}.room_heads (room text PRIMARY KEY, head bigint)"),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.client_ids (
                room text, client_id text, seq bigint,
                PRIMARY KEY ((room, client_id))
             )"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.checkpoints (
                name text, partition int, next_offset bigint,
                PRIMARY KEY (name, partition)
             )"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.snapshots (
                name text, partition int, next_offset bigint, state blob,
                PRIMARY KEY (name, partition)
             )"
        ),
        // Written with USING TIMESTAMP = ts, so the latest time wins whatever the order.
        format!("CREATE TABLE IF NOT EXISTS {ks}.last_seen (user text PRIMARY KEY, ts bigint)"),
        // A room enters the inbox as a row without `read`; markers are written with
        // USING TIMESTAMP = seq, so the highest marker wins whatever the order.
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.inbox_rooms (
                user text, room text, read bigint,
                PRIMARY KEY (user, room)
             )"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.inbox_sent (
                user text, room text, seq bigint,
                PRIMARY KEY ((user, room), seq)
             )"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.inbox_mentions (
                user text, room text, seq bigint,
                PRIMARY KEY ((user, room), seq)
             )"
        ),
        // Added after the first release: an existing keyspace gets it from `migrate`, which
        // takes "already exists" as done.
        format!("ALTER TABLE {ks}.messages ADD deleted boolean"),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.mutes (
                room text, user text, until bigint,
                PRIMARY KEY (room, user)
             )"
        ),
        // Written with USING TIMESTAMP = seq, so the newest message wins whatever the order.
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.room_last (
                room text PRIMARY KEY,
                seq bigint, client_id text, sender text, body text, ts bigint
             )"
        ),
    ]
}

struct Statements {
    insert_message: PreparedStatement,
    insert_head: PreparedStatement,
    insert_client_id: PreparedStatement,
    read_ascending: PreparedStatement,
    read_descending: PreparedStatement,
    head: PreparedStatement,
    client_id: PreparedStatement,
    checkpoint: PreparedStatement,
    set_checkpoint: PreparedStatement,
    /// `set_checkpoint` with a short timeout, for [`Store::writable`].
    probe: PreparedStatement,
    snapshot: PreparedStatement,
    save_snapshot: PreparedStatement,
    last_seen: PreparedStatement,
    set_last_seen: PreparedStatement,
    enter_inbox: PreparedStatement,
    read_marker: PreparedStatement,
    set_read_marker: PreparedStatement,
    inbox_rooms: PreparedStatement,
    insert_sent: PreparedStatement,
    insert_mention: PreparedStatement,
    count_sent: PreparedStatement,
    count_mentions: PreparedStatement,
    room_last: PreparedStatement,
    set_room_last: PreparedStatement,
    delete_message: PreparedStatement,
    delete_room_last: PreparedStatement,
    set_mute: PreparedStatement,
    mutes: PreparedStatement,
}

pub struct CassandraStore {
    session: Session,
    statements: Statements,
    consistency: Consistency,
    bucket_size: i64,
    write_concurrency: usize,
}

async fn connect_session(config: &CassandraConfig) -> Result<Session> {
    SessionBuilder::new()
        .known_nodes(&config.contact_points)
        .connection_timeout(Duration::from_secs(5))
        .build()
        .await
        .map_err(unavailable)
}

impl CassandraStore {
    /// Creates the keyspace and tables if they are missing (`tidings migrate`).
    pub async fn migrate(config: &CassandraConfig) -> Result<()> {
        let session = connect_session(config).await?;
        for statement in schema(config) {
            match session.query_unpaged(statement.clone(), &[]).await {
                Ok(_) => {}
                // Cassandra has no ADD IF NOT EXISTS: a column already added is done.
                Err(e)
                    if statement.starts_with("ALTER TABLE")
                        && e.to_string().contains("already exists") => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        session
            .await_schema_agreement()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Connects and prepares every statement. The schema must exist (see [`Self::migrate`]).
    pub async fn connect(config: &CassandraConfig) -> Result<Self> {
        if config.bucket_size < 1 {
            return Err(StoreError::Invalid {
                what: "bucket size",
                why: "must be 1 or more",
            });
        }
        let session = connect_session(config).await?;
        let ks = &config.keyspace;
        let prepare = |cql: String| {
            let session = &session;
            async move {
                let mut statement = session.prepare(cql).await.map_err(unavailable)?;
                statement.set_consistency(config.consistency);
                Ok::<_, StoreError>(statement)
            }
        };
        let columns = "seq, client_id, sender, body, ts";
        let set_checkpoint = prepare(format!(
            "INSERT INTO {ks}.checkpoints (name, partition, next_offset) VALUES (?, ?, ?)"
        ))
        .await?;
        let mut probe = set_checkpoint.clone();
        probe.set_request_timeout(Some(WRITABLE_TIMEOUT));
        let statements = Statements {
            insert_message: prepare(format!(
                "INSERT INTO {ks}.messages (room, bucket, seq, client_id, sender, body, ts) VALUES (?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            insert_head: prepare(format!(
                "UPDATE {ks}.room_heads USING TIMESTAMP ? SET head = ? WHERE room = ?"
            ))
            .await?,
            insert_client_id: prepare(format!(
                "INSERT INTO {ks}.client_ids (room, client_id, seq) VALUES (?, ?, ?)"
            ))
            .await?,
            read_ascending: prepare(format!(
                "SELECT {columns}, deleted FROM {ks}.messages WHERE room = ? AND bucket = ? AND seq > ? AND seq < ? ORDER BY seq ASC LIMIT ?"
            ))
            .await?,
            read_descending: prepare(format!(
                "SELECT {columns}, deleted FROM {ks}.messages WHERE room = ? AND bucket = ? AND seq > ? AND seq < ? ORDER BY seq DESC LIMIT ?"
            ))
            .await?,
            delete_message: prepare(format!(
                "UPDATE {ks}.messages SET body = '', deleted = true WHERE room = ? AND bucket = ? AND seq = ?"
            ))
            .await?,
            // At the timestamp the message was written to room_last with (its seq): a tie
            // goes to the deletion, and a newer message (a higher timestamp) stays.
            delete_room_last: prepare(format!(
                "UPDATE {ks}.room_last USING TIMESTAMP ? SET body = null WHERE room = ?"
            ))
            .await?,
            set_mute: prepare(format!(
                "INSERT INTO {ks}.mutes (room, user, until) VALUES (?, ?, ?)"
            ))
            .await?,
            mutes: prepare(format!(
                "SELECT user, until FROM {ks}.mutes WHERE room = ? LIMIT {MAX_MUTES_PER_ROOM}"
            ))
            .await?,
            head: prepare(format!("SELECT head FROM {ks}.room_heads WHERE room = ?")).await?,
            client_id: prepare(format!(
                "SELECT seq FROM {ks}.client_ids WHERE room = ? AND client_id = ?"
            ))
            .await?,
            checkpoint: prepare(format!(
                "SELECT next_offset FROM {ks}.checkpoints WHERE name = ? AND partition = ?"
            ))
            .await?,
            set_checkpoint,
            probe,
            snapshot: prepare(format!(
                "SELECT next_offset, state FROM {ks}.snapshots WHERE name = ? AND partition = ?"
            ))
            .await?,
            save_snapshot: prepare(format!(
                "INSERT INTO {ks}.snapshots (name, partition, next_offset, state) VALUES (?, ?, ?, ?)"
            ))
            .await?,
            last_seen: prepare(format!("SELECT ts FROM {ks}.last_seen WHERE user = ?")).await?,
            set_last_seen: prepare(format!(
                "UPDATE {ks}.last_seen USING TIMESTAMP ? SET ts = ? WHERE user = ?"
            ))
            .await?,
            enter_inbox: prepare(format!(
                "INSERT INTO {ks}.inbox_rooms (user, room) VALUES (?, ?)"
            ))
            .await?,
            read_marker: prepare(format!(
                "SELECT read FROM {ks}.inbox_rooms WHERE user = ? AND room = ?"
            ))
            .await?,
            set_read_marker: prepare(format!(
                "UPDATE {ks}.inbox_rooms USING TIMESTAMP ? SET read = ? WHERE user = ? AND room = ?"
            ))
            .await?,
            inbox_rooms: prepare(format!(
                "SELECT room, read FROM {ks}.inbox_rooms WHERE user = ? LIMIT {MAX_INBOX_ROOMS}"
            ))
            .await?,
            insert_sent: prepare(format!(
                "INSERT INTO {ks}.inbox_sent (user, room, seq) VALUES (?, ?, ?)"
            ))
            .await?,
            insert_mention: prepare(format!(
                "INSERT INTO {ks}.inbox_mentions (user, room, seq) VALUES (?, ?, ?)"
            ))
            .await?,
            count_sent: prepare(format!(
                "SELECT COUNT(*) FROM {ks}.inbox_sent WHERE user = ? AND room = ? AND seq > ?"
            ))
            .await?,
            count_mentions: prepare(format!(
                "SELECT COUNT(*) FROM {ks}.inbox_mentions WHERE user = ? AND room = ? AND seq > ?"
            ))
            .await?,
            room_last: prepare(format!(
                "SELECT {columns} FROM {ks}.room_last WHERE room = ?"
            ))
            .await?,
            set_room_last: prepare(format!(
                "INSERT INTO {ks}.room_last (room, {columns}) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
        };
        Ok(Self {
            session,
            statements,
            consistency: config.consistency,
            bucket_size: config.bucket_size,
            write_concurrency: config.write_concurrency.max(1),
        })
    }

    async fn last_seen_of(&self, user: &str) -> Result<Option<i64>> {
        let rows = self
            .session
            .execute_unpaged(&self.statements.last_seen, (user,))
            .await
            .map_err(unavailable)?
            .into_rows_result()
            .map_err(unavailable)?;
        let ts = rows
            .maybe_first_row::<(Option<i64>,)>()
            .map_err(unavailable)?;
        Ok(ts.and_then(|(t,)| t))
    }

    /// `USING TIMESTAMP ts`: the latest time wins whatever order the writes land in.
    async fn set_last_seen_of(&self, user: &str, ts: i64) -> Result<()> {
        self.session
            .execute_unpaged(&self.statements.set_last_seen, (ts, ts, user))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// How many rows of a `(user, room)` partition of `statement`'s table have seq > `after`.
    async fn count(
        &self,
        statement: &PreparedStatement,
        user: &str,
        room: &str,
        after: i64,
    ) -> Result<i64> {
        let rows = self
            .session
            .execute_unpaged(statement, (user, room, after))
            .await
            .map_err(unavailable)?
            .into_rows_result()
            .map_err(unavailable)?;
        let count = rows.maybe_first_row::<(i64,)>().map_err(unavailable)?;
        Ok(count.map_or(0, |(c,)| c))
    }

    /// Batches of `statement`, one per partition (the key `partition_of` picks) and at most
    /// [`BATCH_ROWS`] rows each.
    fn partition_batches<'a, R, K>(
        &'a self,
        statement: &'a PreparedStatement,
        rows: impl IntoIterator<Item = R>,
        partition_of: impl Fn(&R) -> K,
    ) -> Vec<BoxFuture<'a, Result<()>>>
    where
        R: scylla::serialize::row::SerializeRow + Clone + Send + Sync + 'a,
        K: std::hash::Hash + Eq,
    {
        let mut partitions: HashMap<K, Vec<R>> = HashMap::new();
        for row in rows {
            partitions.entry(partition_of(&row)).or_default().push(row);
        }
        let mut writes: Vec<BoxFuture<'a, Result<()>>> = Vec::new();
        for rows in partitions.into_values() {
            for chunk in rows.chunks(BATCH_ROWS) {
                writes.push(Box::pin(self.write_batch(statement, chunk.to_vec())));
            }
        }
        writes
    }

    fn bucket_of(&self, seq: i64) -> i64 {
        seq / self.bucket_size
    }

    /// One unlogged batch of `statement`, one row of `rows` each.
    async fn write_batch<R: scylla::serialize::row::SerializeRow>(
        &self,
        statement: &PreparedStatement,
        rows: Vec<R>,
    ) -> Result<()> {
        let mut batch = Batch::new(BatchType::Unlogged);
        batch.set_consistency(self.consistency);
        for _ in 0..rows.len() {
            batch.append_statement(statement.clone());
        }
        self.session
            .batch(&batch, rows)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl Store for CassandraStore {
    async fn append(&self, messages: &[StoredMessage]) -> Result<()> {
        for m in messages {
            validate(m)?;
        }
        // Rewriting the same (room, seq) writes the same values: appends are idempotent
        // upserts. Messages go in batches within one (room, bucket) partition; client ids,
        // one partition each, in batches per room.
        type Row<'a> = (&'a str, i64, i64, &'a str, &'a str, &'a str, i64);
        let mut partitions: HashMap<(&str, i64), Vec<Row<'_>>> = HashMap::new();
        let mut ids: HashMap<&str, Vec<(&str, &str, i64)>> = HashMap::new();
        let mut heads: HashMap<&str, i64> = HashMap::new();
        for m in messages {
            let bucket = self.bucket_of(m.seq);
            partitions.entry((&m.room, bucket)).or_default().push((
                &m.room,
                bucket,
                m.seq,
                &m.client_id,
                &m.from,
                &m.text,
                m.ts,
            ));
            ids.entry(&m.room)
                .or_default()
                .push((&m.room, &m.client_id, m.seq));
            let head = heads.entry(&m.room).or_insert(m.seq);
            *head = (*head).max(m.seq);
        }
        let mut writes: Vec<BoxFuture<'_, Result<()>>> = Vec::new();
        for rows in partitions.into_values() {
            for chunk in rows.chunks(BATCH_ROWS) {
                writes.push(Box::pin(
                    self.write_batch(&self.statements.insert_message, chunk.to_vec()),
                ));
            }
        }
        for rows in ids.into_values() {
            for chunk in rows.chunks(BATCH_ROWS) {
                writes.push(Box::pin(
                    self.write_batch(&self.statements.insert_client_id, chunk.to_vec()),
                ));
            }
        }
        stream::iter(writes)
            .buffer_unordered(self.write_concurrency)
            .try_collect::<()>()
            .await?;
        // Heads last: a reader that sees head N must find every message up to N, and an
        // append call carries every seq of its rooms above what earlier calls stored.
        let head_writes: Vec<BoxFuture<'_, Result<()>>> = heads
            .into_iter()
            .map(|(room, head)| -> BoxFuture<'_, Result<()>> {
                Box::pin(async move {
                    self.session
                        .execute_unpaged(&self.statements.insert_head, (head, head, room))
                        .await
                        .map(|_| ())
                        .map_err(unavailable)
                })
            })
            .collect();
        stream::iter(head_writes)
            .buffer_unordered(self.write_concurrency)
            .try_collect::<()>()
            .await
    }

    async fn read(&self, room: &str, range: SeqRange) -> Result<Vec<StoredMessage>> {
        check_range(room, &range)?;
        let head = self.head(room).await?;
        let low = range.after.saturating_add(1).max(1);
        let high = range.before.saturating_sub(1).min(head);
        if low > high {
            return Ok(Vec::new());
        }
        let (first, last) = (self.bucket_of(low), self.bucket_of(high));
        let buckets: Box<dyn Iterator<Item = i64> + Send> = match range.direction {
            Direction::Ascending => Box::new(first..=last),
            Direction::Descending => Box::new((first..=last).rev()),
        };
        let statement = match range.direction {
            Direction::Ascending => &self.statements.read_ascending,
            Direction::Descending => &self.statements.read_descending,
        };
        let mut out = Vec::with_capacity(range.limit.min(1024));
        for bucket in buckets {
            let want = (range.limit - out.len()) as i32;
            let rows = self
                .session
                .execute_unpaged(statement, (room, bucket, range.after, range.before, want))
                .await
                .map_err(unavailable)?
                .into_rows_result()
                .map_err(unavailable)?;
            for row in rows
                .rows::<(i64, String, String, String, i64, Option<bool>)>()
                .map_err(unavailable)?
            {
                let (seq, client_id, from, text, ts, deleted) = row.map_err(unavailable)?;
                // A message appended again after its deletion (a replay) gets its body back
                // until the deletion is replayed too; `deleted` stays set throughout.
                let deleted = deleted.unwrap_or(false);
                out.push(StoredMessage {
                    room: room.to_string(),
                    seq,
                    client_id,
                    from,
                    text: if deleted { String::new() } else { text },
                    ts,
                    deleted,
                });
            }
            if out.len() >= range.limit {
                break;
            }
        }
        Ok(out)
    }

    async fn head(&self, room: &str) -> Result<i64> {
        check_room(room)?;
        let rows = self
            .session
            .execute_unpaged(&self.statements.head, (room,))
            .await
            .map_err(unavailable)?
            .into_rows_result()
            .map_err(unavailable)?;
        let head = rows
            .maybe_first_row::<(Option<i64>,)>()
            .map_err(unavailable)?;
        Ok(head.and_then(|(h,)| h).unwrap_or(0))
    }

    async fn seq_of(&self, room: &str, client_id: &str) -> Result<Option<i64>> {
        check_room(room)?;
        let rows = self
            .session
            .execute_unpaged(&self.statements.client_id, (room, client_id))
            .await
            .map_err(unavailable)?
            .into_rows_result()
            .map_err(unavailable)?;
        let seq = rows
            .maybe_first_row::<(Option<i64>,)>()
            .map_err(unavailable)?;
        Ok(seq.and_then(|(s,)| s))
    }

    async fn checkpoint(&self, name: &str, partition: u32) -> Result<Option<i64>> {
        let rows = self
            .session
            .execute_unpaged(&self.statements.checkpoint, (name, partition as i32))
            .await
            .map_err(unavailable)?
            .into_rows_result()
            .map_err(unavailable)?;
        let offset = rows
            .maybe_first_row::<(Option<i64>,)>()
            .map_err(unavailable)?;
        Ok(offset.and_then(|(o,)| o))
    }

    async fn set_checkpoint(&self, name: &str, partition: u32, next_offset: i64) -> Result<()> {
        self.session
            .execute_unpaged(
                &self.statements.set_checkpoint,
                (name, partition as i32, next_offset),
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn snapshot(&self, name: &str, partition: u32) -> Result<Option<(i64, Vec<u8>)>> {
        let rows = self
            .session
            .execute_unpaged(&self.statements.snapshot, (name, partition as i32))
            .await
            .map_err(unavailable)?
            .into_rows_result()
            .map_err(unavailable)?;
        let found = rows
            .maybe_first_row::<(Option<i64>, Option<Vec<u8>>)>()
            .map_err(unavailable)?;
        Ok(found.and_then(|(offset, state)| Some((offset?, state.unwrap_or_default()))))
    }

    async fn save_snapshot(
        &self,
        name: &str,
        partition: u32,
        next_offset: i64,
        state: &[u8],
    ) -> Result<()> {
        check_snapshot(state)?;
        self.session
            .execute_unpaged(
                &self.statements.save_snapshot,
                (name, partition as i32, next_offset, state),
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn last_seen(&self, users: &[String]) -> Result<Vec<Option<i64>>> {
        check_users(users.len())?;
        let lookups: Vec<BoxFuture<'_, Result<Option<i64>>>> = users
            .iter()
            .map(|user| Box::pin(self.last_seen_of(user)) as BoxFuture<'_, _>)
            .collect();
        stream::iter(lookups)
            .buffered(self.write_concurrency)
            .try_collect()
            .await
    }

    async fn set_last_seen(&self, seen: &[(String, i64)]) -> Result<()> {
        check_users(seen.len())?;
        let writes: Vec<BoxFuture<'_, Result<()>>> = seen
            .iter()
            .map(|(user, ts)| Box::pin(self.set_last_seen_of(user, *ts)) as BoxFuture<'_, _>)
            .collect();
        stream::iter(writes)
            .buffer_unordered(self.write_concurrency)
            .try_collect::<()>()
            .await
    }

    async fn update_inbox(&self, update: &InboxUpdate) -> Result<()> {
        check_inbox_update(update)?;
        // Every row is an idempotent upsert, so a replayed update writes the same cells.
        let rooms = update
            .rooms
            .iter()
            .map(|(user, room)| (user.as_str(), room.as_str()));
        let sent = update
            .sent
            .iter()
            .map(|(user, room, seq)| (user.as_str(), room.as_str(), *seq));
        let mentions = update
            .mentions
            .iter()
            .map(|(user, room, seq)| (user.as_str(), room.as_str(), *seq));
        let mut writes =
            self.partition_batches(&self.statements.enter_inbox, rooms, |&(user, _)| user);
        writes.extend(self.partition_batches(
            &self.statements.insert_sent,
            sent,
            |&(user, room, _)| (user, room),
        ));
        writes.extend(self.partition_batches(
            &self.statements.insert_mention,
            mentions,
            |&(user, room, _)| (user, room),
        ));
        stream::iter(writes)
            .buffer_unordered(self.write_concurrency)
            .try_collect::<()>()
            .await?;
        // `last` only after the rows: a reader that sees a room's newest message finds every
        // row up to it. Of one room's messages only the newest needs writing.
        let mut last: HashMap<&str, &StoredMessage> = HashMap::new();
        for m in &update.last {
            let newest = last.entry(&m.room).or_insert(m);
            if newest.seq < m.seq {
                *newest = m;
            }
        }
        let last_writes: Vec<BoxFuture<'_, Result<()>>> = last
            .into_values()
            .map(|m| -> BoxFuture<'_, Result<()>> {
                Box::pin(async move {
                    self.session
                        .execute_unpaged(
                            &self.statements.set_room_last,
                            (&m.room, m.seq, &m.client_id, &m.from, &m.text, m.ts, m.seq),
                        )
                        .await
                        .map(|_| ())
                        .map_err(unavailable)
                })
            })
            .collect();
        stream::iter(last_writes)
            .buffer_unordered(self.write_concurrency)
            .try_collect::<()>()
            .await
    }

    async fn read_marker(&self, user: &str, room: &str) -> Result<Option<i64>> {
        check_user(user)?;
        check_room(room)?;
        let rows = self
            .session
            .execute_unpaged(&self.statements.read_marker, (user, room))
            .await
            .map_err(unavailable)?
            .into_rows_result()
            .map_err(unavailable)?;
        let read = rows
            .maybe_first_row::<(Option<i64>,)>()
            .map_err(unavailable)?;
        Ok(read.and_then(|(r,)| r))
    }

    /// `USING TIMESTAMP seq`: the highest marker wins whatever order the writes land in.
    async fn set_read_marker(&self, user: &str, room: &str, seq: i64) -> Result<()> {
        check_marker(user, room, seq)?;
        self.session
            .execute_unpaged(&self.statements.set_read_marker, (seq, seq, user, room))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn inbox_rooms(&self, user: &str) -> Result<Vec<InboxRoom>> {
        check_user(user)?;
        let rows = self
            .session
            .execute_unpaged(&self.statements.inbox_rooms, (user,))
            .await
            .map_err(unavailable)?
            .into_rows_result()
            .map_err(unavailable)?;
        rows.rows::<(String, Option<i64>)>()
            .map_err(unavailable)?
            .map(|row| {
                let (room, read) = row.map_err(unavailable)?;
                Ok(InboxRoom {
                    room,
                    read: read.unwrap_or(0),
                })
            })
            .collect()
    }

    async fn last_message(&self, room: &str) -> Result<Option<StoredMessage>> {
        check_room(room)?;
        let rows = self
            .session
            .execute_unpaged(&self.statements.room_last, (room,))
            .await
            .map_err(unavailable)?
            .into_rows_result()
            .map_err(unavailable)?;
        type Row = (
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
        );
        let found = rows.maybe_first_row::<Row>().map_err(unavailable)?;
        // Every cell is written in one statement, so a row has all of them or none; but a
        // deletion of that message takes the body away.
        Ok(found.and_then(|(seq, client_id, from, text, ts)| {
            Some(StoredMessage {
                room: room.to_string(),
                seq: seq?,
                client_id: client_id.unwrap_or_default(),
                from: from.unwrap_or_default(),
                deleted: text.is_none(),
                text: text.unwrap_or_default(),
                ts: ts.unwrap_or(0),
            })
        }))
    }

    async fn counts_after(&self, user: &str, room: &str, after: i64) -> Result<(i64, i64)> {
        check_user(user)?;
        check_room(room)?;
        futures::try_join!(
            self.count(&self.statements.count_sent, user, room, after),
            self.count(&self.statements.count_mentions, user, room, after),
        )
    }

    async fn delete_messages(&self, targets: &[(String, i64)]) -> Result<()> {
        for (room, _) in targets {
            check_room(room)?;
        }
        let writes: Vec<BoxFuture<'_, Result<()>>> = targets
            .iter()
            .map(|(room, seq)| -> BoxFuture<'_, Result<()>> {
                Box::pin(async move {
                    let bucket = self.bucket_of(*seq);
                    self.session
                        .execute_unpaged(&self.statements.delete_message, (room, bucket, *seq))
                        .await
                        .map_err(unavailable)?;
                    self.session
                        .execute_unpaged(&self.statements.delete_room_last, (*seq, room))
                        .await
                        .map_err(unavailable)?;
                    Ok(())
                })
            })
            .collect();
        stream::iter(writes)
            .buffer_unordered(self.write_concurrency)
            .try_collect::<()>()
            .await
    }

    async fn set_mutes(&self, mutes: &[Mute]) -> Result<()> {
        for m in mutes {
            check_room(&m.room)?;
            check_user(&m.user)?;
        }
        // The last of each (room, user) only: written concurrently, two would race.
        let mut last: HashMap<(&str, &str), i64> = HashMap::new();
        for m in mutes {
            last.insert((&m.room, &m.user), m.until);
        }
        let writes: Vec<BoxFuture<'_, Result<()>>> = last
            .into_iter()
            .map(|((room, user), until)| -> BoxFuture<'_, Result<()>> {
                Box::pin(async move {
                    self.session
                        .execute_unpaged(&self.statements.set_mute, (room, user, until))
                        .await
                        .map(|_| ())
                        .map_err(unavailable)
                })
            })
            .collect();
        stream::iter(writes)
            .buffer_unordered(self.write_concurrency)
            .try_collect::<()>()
            .await
    }

    async fn mutes(&self, room: &str) -> Result<Vec<Mute>> {
        check_room(room)?;
        let rows = self
            .session
            .execute_unpaged(&self.statements.mutes, (room,))
            .await
            .map_err(unavailable)?
            .into_rows_result()
            .map_err(unavailable)?;
        let mut found = Vec::new();
        for row in rows.rows::<(String, Option<i64>)>().map_err(unavailable)? {
            let (user, until) = row.map_err(unavailable)?;
            found.push(Mute {
                room: room.to_string(),
                user,
                until: until.unwrap_or(0),
            });
        }
        Ok(found)
    }

    /// One small write at the store's consistency: it needs as many live replicas as any
    /// append, and a reachable node. A read could pass where writes fail.
    async fn writable(&self) -> Result<()> {
        let probe = self
            .session
            .execute_unpaged(&self.statements.probe, (PROBE_NAME, 0i32, now_ms()));
        match tokio::time::timeout(WRITABLE_TIMEOUT, probe).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable("no answer to a probe write in time")),
        }
    }
}

/// Milliseconds since the Unix epoch: the probe row's value, so it shows when it was written.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_parses_both_strategies_into_cql() {
        let simple: Replication = "SimpleStrategy:3".parse().unwrap();
        assert_eq!(simple, Replication::Simple(3));
        assert_eq!(
            simple.to_cql(),
            "{'class': 'SimpleStrategy', 'replication_factor': 3}"
        );
        let nts: Replication = " NetworkTopologyStrategy : dc1=3, us-east.2 = 2 "
            .parse()
            .unwrap();
        assert_eq!(
            nts,
            Replication::NetworkTopology(vec![("dc1".into(), 3), ("us-east.2".into(), 2)])
        );
        assert_eq!(
            nts.to_cql(),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'us-east.2': 2}"
        );
        assert_eq!(
            "networktopologystrategy:dc1=1".parse(),
            Ok(Replication::NetworkTopology(vec![("dc1".into(), 1)]))
        );
    }

    #[test]
    fn the_default_replication_is_unchanged() {
        assert_eq!(
            CassandraConfig::new(Vec::new()).replication,
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
    }

    #[test]
    fn bad_replication_is_refused_with_the_reason() {
        let parse = |s: &str| s.parse::<Replication>().unwrap_err();
        assert!(matches!(parse("3"), ReplicationError::Format(_)));
        assert!(matches!(
            parse("NetworkTopologyStrategy:dc1"),
            ReplicationError::Format(_)
        ));
        assert_eq!(
            parse("LocalStrategy:1"),
            ReplicationError::Strategy("LocalStrategy".into())
        );
        assert_eq!(
            parse("SimpleStrategy:0"),
            ReplicationError::Factor("0".into())
        );
        assert_eq!(
            parse("SimpleStrategy:three"),
            ReplicationError::Factor("three".into())
        );
        assert_eq!(
            parse("NetworkTopologyStrategy:dc1=3,dc1=2"),
            ReplicationError::Duplicate("dc1".into())
        );
        // A quote would end the CQL string: never let one through.
        assert_eq!(
            parse("NetworkTopologyStrategy:dc1'=3"),
            ReplicationError::Datacenter("dc1'".into())
        );
        assert_eq!(
            parse("NetworkTopologyStrategy:=3"),
            ReplicationError::Datacenter("".into())
        );
        assert_eq!(
            parse("NetworkTopologyStrategy:"),
            ReplicationError::Format("NetworkTopologyStrategy:".into())
        );
    }
}
