//! Revoked users and tokens: the records of `tidings.revocations`, which every edge reads
//! from the beginning when it starts and then follows (no consumer group: each edge needs
//! all of them). While a revocation lasts, the user's (`sub:<sub>`) or token's
//! (`jti:<jti>`) connections are cut, and its connects and refreshes are refused.
//!
//! The latest record of a key holds, as compaction keeps it; one whose `until` has passed
//! lifts the revocation. Entries are forgotten once their `until` passes, and the set is
//! bounded ([`MAX_REVOCATIONS`]).

use crate::auth::{AuthError, Claims};
use crate::conn::Conn;
use crate::errors::EdgeError;
use crate::state::{lock, now_ms, Shared};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tidings_log::{topics, Log, PartitionReader};
use tidings_schemas::{LogRecord, Revocation};
use tokio_util::sync::CancellationToken;

/// Most revocations in force at once. The admin API refuses new ones past it; an edge that
/// reads more (from several edges' APIs at once) forgets the one ending first.
pub const MAX_REVOCATIONS: usize = 100_000;
/// How long an edge may take to read the revocations in force before it serves.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How often expired entries are dropped.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// What a revocation is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every token of a user.
    Sub(String),
    /// One token.
    Jti(String),
}

impl Target {
    /// The record's key on the topic.
    pub fn key(&self) -> String {
        match self {
            Target::Sub(sub) => format!("sub:{sub}"),
            Target::Jti(jti) => format!("jti:{jti}"),
        }
    }

    pub fn from_key(key: &str) -> Option<Self> {
        if let Some(sub) = key.strip_prefix("sub:") {
            (!sub.is_empty()).then(|| Target::Sub(sub.to_string()))
        } else if let Some(jti) = key.strip_prefix("jti:") {
            (!jti.is_empty()).then(|| Target::Jti(jti.to_string()))
        } else {
            None
        }
    }
}

/// The revocations in force on this edge: key → until (ms since the epoch).
pub struct Revocations {
    set: Mutex<HashMap<String, i64>>,
    max: usize,
}

impl Default for Revocations {
    fn default() -> Self {
        Self::new(MAX_REVOCATIONS)
    }
}

impl Revocations {
    pub fn new(max: usize) -> Self {
        Self {
            set: Mutex::new(HashMap::new()),
            max,
        }
    }

    /// Takes a record: `target` is revoked until `until_ms`, replacing what was known of it
    /// (an `until` already past lifts it). True if it is revoked now.
    pub fn apply(&self, target: &Target, until_ms: i64, now_ms: i64) -> bool {
        let key = target.key();
        let mut set = lock(&self.set);
        if until_ms <= now_ms {
            set.remove(&key);
            return false;
        }
        if !set.contains_key(&key) && set.len() >= self.max {
            set.retain(|_, until| *until > now_ms);
            if set.len() >= self.max {
                // Full of live entries (several admins at once, past the API's check):
                // forget the one ending first rather than grow without bound.
                if let Some(first) = set
                    .iter()
                    .min_by_key(|(_, until)| **until)
                    .map(|(k, _)| k.clone())
                {
                    tracing::warn!(dropped = %first, "revocation set full; forgetting the revocation ending first");
                    set.remove(&first);
                }
            }
        }
        set.insert(key, until_ms);
        true
    }

    /// Whether a token of `sub` with `jti` is revoked now.
    pub fn is_revoked(&self, sub: &str, jti: Option<&str>, now_ms: i64) -> bool {
        let set = lock(&self.set);
        let live = |key: String| set.get(&key).is_some_and(|until| *until > now_ms);
        live(Target::Sub(sub.to_string()).key())
            || jti.is_some_and(|jti| live(Target::Jti(jti.to_string()).key()))
    }

    /// Whether a new revocation of `target` would find room.
    pub fn has_room_for(&self, target: &Target, now_ms: i64) -> bool {
        let mut set = lock(&self.set);
        if set.len() < self.max || set.contains_key(&target.key()) {
            return true;
        }
        set.retain(|_, until| *until > now_ms);
        set.len() < self.max
    }

    /// Drops the entries whose `until` has passed; returns how many are left.
    pub fn purge(&self, now_ms: i64) -> usize {
        let mut set = lock(&self.set);
        set.retain(|_, until| *until > now_ms);
        set.len()
    }

    pub fn len(&self) -> usize {
        lock(&self.set).len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `claims`, unless its user or token is revoked now.
pub fn unrevoked(shared: &Shared, claims: Claims) -> Result<Claims, AuthError> {
    if shared
        .revocations
        .is_revoked(&claims.sub, claims.jti.as_deref(), now_ms())
    {
        return Err(AuthError::Bad("the token is revoked".into()));
    }
    Ok(claims)
}

/// Records `revocation` of `target` in this edge's set and, if it holds now, cuts the
/// connections it covers here.
pub fn enforce(shared: &Shared, target: &Target, until_ms: i64) {
    let now = now_ms();
    let revoked = shared.revocations.apply(target, until_ms, now);
    shared
        .metrics
        .revocations
        .set(shared.revocations.len() as i64);
    if !revoked {
        return;
    }
    let conns: Vec<Arc<Conn>> = match target {
        Target::Sub(sub) => shared.users.conns_of(sub),
        Target::Jti(jti) => shared
            .users
            .all_conns()
            .into_iter()
            .filter(|c| c.has_jti(jti))
            .collect(),
    };
    for conn in conns {
        conn.kick("revoked");
    }
}

/// One partition of the topic, read from the beginning.
pub struct Follower {
    partition: u32,
    reader: Box<dyn PartitionReader>,
    next: i64,
}

/// Readers of every partition of the topic, from its first record.
pub async fn open(log: &dyn Log) -> Result<Vec<Follower>, EdgeError> {
    let partitions = log
        .partitions(topics::REVOCATIONS)
        .await
        .map_err(|e| match e {
            tidings_log::LogError::UnknownTopic(_) => EdgeError::Config(format!(
                "{} does not exist: run `tidings migrate` (this release adds it)",
                topics::REVOCATIONS
            )),
            other => other.into(),
        })?;
    let mut followers = Vec::new();
    for partition in 0..partitions {
        followers.push(Follower {
            partition,
            reader: log.reader(topics::REVOCATIONS, partition, 0).await?,
            next: 0,
        });
    }
    Ok(followers)
}

/// Reads every partition up to its end as of now, so that no revoked user connects to an
/// edge that has just started.
pub async fn load(shared: &Shared, followers: &mut [Follower]) -> Result<(), EdgeError> {
    let deadline = tokio::time::Instant::now() + LOAD_TIMEOUT;
    for follower in followers.iter_mut() {
        let end = shared
            .log
            .end_offset(topics::REVOCATIONS, follower.partition)
            .await?;
        while follower.next < end {
            if tokio::time::Instant::now() >= deadline {
                return Err(EdgeError::Config(format!(
                    "could not read {} within {LOAD_TIMEOUT:?}",
                    topics::REVOCATIONS
                )));
            }
            let records = follower
                .reader
                .poll(512, Duration::from_millis(200))
                .await?;
            for record in records {
                follower.next = record.offset + 1;
                take(shared, &record.key, &record.value, record.offset);
            }
        }
    }
    let left = shared.revocations.purge(now_ms());
    shared.metrics.revocations.set(left as i64);
    tracing::info!(in_force = left, "revocations loaded");
    Ok(())
}

/// Applies one record of the topic; a record that does not decode or does not match its
/// key is skipped (edges are thin; nothing of theirs is worth stopping for it).
fn take(shared: &Shared, key: &str, value: &[u8], offset: i64) {
    let Some(target) = Target::from_key(key) else {
        tracing::warn!(offset, key, "revocation with an unknown key skipped");
        return;
    };
    match Revocation::decode(value) {
        Ok(r) => {
            let matches = match &target {
                Target::Sub(sub) => r.user.as_deref() == Some(sub.as_str()),
                Target::Jti(jti) => r.jti.as_deref() == Some(jti.as_str()),
            };
            if matches {
                enforce(shared, &target, r.until);
            } else {
                tracing::warn!(
                    offset,
                    key,
                    "revocation whose key does not match it skipped"
                );
            }
        }
        Err(e) => tracing::warn!(offset, key, "revocation that does not decode skipped: {e}"),
    }
}

/// Follows one partition until `shutdown`, reopening the reader after an error.
pub async fn follow(shared: Arc<Shared>, mut follower: Follower, shutdown: CancellationToken) {
    let mut purged = tokio::time::Instant::now();
    loop {
        let polled = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = follower.reader.poll(256, Duration::from_millis(500)) => r,
        };
        match polled {
            Ok(records) => {
                for record in records {
                    follower.next = record.offset + 1;
                    take(&shared, &record.key, &record.value, record.offset);
                }
            }
            Err(e) => {
                tracing::warn!("revocations reader: {e}; reopening");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                match shared
                    .log
                    .reader(topics::REVOCATIONS, follower.partition, follower.next)
                    .await
                {
                    Ok(r) => follower.reader = r,
                    Err(e) => tracing::warn!("reopening the revocations reader: {e}"),
                }
            }
        }
        if purged.elapsed() >= PURGE_EVERY {
            purged = tokio::time::Instant::now();
            let left = shared.revocations.purge(now_ms());
            shared.metrics.revocations.set(left as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(s: &str) -> Target {
        Target::Sub(s.into())
    }

    #[test]
    fn keys_name_a_user_or_a_token() {
        assert_eq!(sub("ada").key(), "sub:ada");
        assert_eq!(Target::Jti("t1".into()).key(), "jti:t1");
        assert_eq!(Target::from_key("sub:ada"), Some(sub("ada")));
        assert_eq!(Target::from_key("sub:a:b"), Some(sub("a:b")));
        assert_eq!(Target::from_key("jti:t1"), Some(Target::Jti("t1".into())));
        for bad in ["sub:", "jti:", "ada", "user:ada", ""] {
            assert_eq!(Target::from_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_revocation_holds_until_its_end_and_the_latest_record_wins() {
        let r = Revocations::default();
        assert!(r.apply(&sub("mallory"), 2_000, 1_000));
        assert!(r.is_revoked("mallory", None, 1_500));
        assert!(!r.is_revoked("mallory", None, 2_000), "over at until");
        assert!(!r.is_revoked("ada", None, 1_500));
        assert!(r.apply(&Target::Jti("t9".into()), 5_000, 1_000));
        assert!(r.is_revoked("ada", Some("t9"), 1_500));
        assert!(!r.is_revoked("ada", Some("t8"), 1_500));
        // A later record with a shorter until replaces the longer one (as compaction would
        // keep it); one already over lifts the revocation.
        assert!(r.apply(&sub("mallory"), 1_200, 1_100));
        assert!(!r.is_revoked("mallory", None, 1_300));
        assert!(r.apply(&sub("mallory"), 9_000, 1_100));
        assert!(!r.apply(&sub("mallory"), 1_000, 1_100));
        assert!(!r.is_revoked("mallory", None, 1_150));
        assert_eq!(r.purge(6_000), 0);
        assert!(r.is_empty());
    }

    #[test]
    fn the_set_stays_within_its_bound() {
        let r = Revocations::new(3);
        for (i, until) in [5_000, 3_000, 4_000].into_iter().enumerate() {
            assert!(r.has_room_for(&sub(&format!("u{i}")), 1_000));
            r.apply(&sub(&format!("u{i}")), until, 1_000);
        }
        assert!(!r.has_room_for(&sub("u9"), 1_000), "full of live entries");
        assert!(
            r.has_room_for(&sub("u0"), 1_000),
            "a key it has is replaced, not added"
        );
        // Past the bound anyway: the one ending first goes.
        r.apply(&sub("u9"), 6_000, 1_000);
        assert_eq!(r.len(), 3);
        assert!(!r.is_revoked("u1", None, 1_000));
        assert!(r.is_revoked("u9", None, 1_000));
        // Expired entries make room.
        assert!(r.has_room_for(&sub("u10"), 4_500));
        assert_eq!(r.len(), 2);
    }
}
