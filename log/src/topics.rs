//! Every topic Tidings uses, with its settings: the one place the programs, `tidings migrate`
//! and `terraform/` take them from (a test checks the Terraform copy against this table).

/// A topic and how it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    /// `None`: kept forever.
    pub retention_ms: Option<i64>,
    /// Log compaction keeps the latest record per key.
    pub compacted: bool,
    /// Whether an append must be on disk before it is acknowledged. False for records that
    /// are resent or re-derived if a crash loses them: client events (the client resends
    /// until acked, and only the sequencer's durable commit acks), deliveries (fan-out derives
    /// them again from the room log; edges drop repeats by seq) and typing notices (volatile).
    /// The embedded log commits those without an fsync, and its next durable commit carries
    /// them to disk; Kafka keeps `acks=all` for every topic.
    pub durable: bool,
}

impl TopicSpec {
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        Self {
            name: name.into(),
            partitions,
            retention_ms: None,
            compacted: false,
            durable: true,
        }
    }
}

/// Client events as edges append them, keyed by room (input of sequencing).
pub const CLIENT_EVENTS: &str = "tidings.client-events";
/// The room log: sequenced, moderated messages keyed by room. The record of truth.
pub const ROOM_LOG: &str = "tidings.room-log";
/// Deliveries to edges, keyed by target edge.
pub const DELIVERIES: &str = "tidings.deliveries";
/// Which edge hosts which rooms, compacted, keyed by `room@edge`.
pub const SUBSCRIPTIONS: &str = "tidings.subscriptions";
/// Typing notices, keyed by room; only useful for seconds.
pub const TYPING: &str = "tidings.typing";
/// Records a processor could not decode (corrupt, or written with a foreign schema), copied
/// with their key, value and headers plus `dead-letter.*` headers saying where they came from
/// and why. Written by processors, read by people; nothing in Tidings consumes it.
pub const DEAD_LETTERS: &str = "tidings.dead-letters";
/// Room events a webhook endpoint did not accept after the last attempt: the room-log record
/// unchanged (Avro `RoomEvent`), keyed by room, with `webhook.*` headers naming the endpoint,
/// the delivery id, the attempts and the last error. Read by people; nothing consumes it.
pub const WEBHOOK_DEAD_LETTERS: &str = "tidings.webhook-dead-letters";
/// Every moderator and admin action (delete, mute, revoke), Avro `ModeratorAction`: who did
/// what to whom, when. Written with the action's effect; read by people and tools.
pub const AUDIT: &str = "tidings.audit";
/// Connection lifecycle (online, join, leave, offline), edge heartbeats and presence
/// questions, appended by edges for the presence processor. One partition: one total order,
/// so an answer follows every change made before its question; the processor snapshots its
/// state into the store, so it reads only the tail after the snapshot.
pub const PRESENCE: &str = "tidings.presence";
/// Revoked users and tokens (Avro `Revocation`), keyed `sub:<sub>` or `jti:<jti>`, written by
/// the admin API of any edge. Compacted: the latest record per key is what holds, and every
/// edge reads the whole topic when it starts, then follows it.
pub const REVOCATIONS: &str = "tidings.revocations";

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The most replicas `min.insync.replicas` asks for: with replication factor 3, an append
/// (`acks=all`) survives the loss of one broker and the topic stays writable without it.
/// Terraform's copy is `locals.min_insync_replicas_cap` in `terraform/topics.tf.json`.
pub const MIN_INSYNC_REPLICAS_CAP: i32 = 2;

/// The topic-level Kafka settings of `spec` on a cluster where topics get
/// `replication_factor` replicas. `tidings migrate` creates topics with exactly these, and
/// `terraform/topics.tf` sets the same keys to the same values, so either can create a topic
/// and the other finds nothing to change (`infra/check-terraform.sh --kafka` checks it).
pub fn kafka_config(spec: &TopicSpec, replication_factor: i32) -> Vec<(&'static str, String)> {
    vec![
        ("retention.ms", spec.retention_ms.unwrap_or(-1).to_string()),
        (
            "cleanup.policy",
            if spec.compacted { "compact" } else { "delete" }.to_string(),
        ),
        (
            "min.insync.replicas",
            replication_factor
                .clamp(1, MIN_INSYNC_REPLICAS_CAP)
                .to_string(),
        ),
    ]
}

/// The topics and their settings.
pub fn all() -> Vec<TopicSpec> {
    vec![
        TopicSpec {
            retention_ms: Some(7 * DAY_MS),
            durable: false,
            ..TopicSpec::new(CLIENT_EVENTS, 8)
        },
        TopicSpec::new(ROOM_LOG, 8),
        TopicSpec {
            retention_ms: Some(60 * 60 * 1000),
            durable: false,
            ..TopicSpec::new(DELIVERIES, 16)
        },
        TopicSpec {
            compacted: true,
            ..TopicSpec::new(SUBSCRIPTIONS, 8)
        },
        TopicSpec {
            retention_ms: Some(60 * 1000),
            durable: false,
            ..TopicSpec::new(TYPING, 8)
        },
        // Two weeks to notice and inspect them; durable, since the copy is all that is left
        // once the source topic's retention drops the original. Rare, so one partition.
        TopicSpec {
            retention_ms: Some(14 * DAY_MS),
            ..TopicSpec::new(DEAD_LETTERS, 1)
        },
        // Like the dead letters: two weeks to notice, durable (the receiver never got them).
        TopicSpec {
            retention_ms: Some(14 * DAY_MS),
            ..TopicSpec::new(WEBHOOK_DEAD_LETTERS, 1)
        },
        // A year: the record of who moderated what; rare, so one partition keeps one order.
        TopicSpec {
            retention_ms: Some(365 * DAY_MS),
            ..TopicSpec::new(AUDIT, 1)
        },
        // A day covers any snapshot gap. Not durable on the embedded log: a crash that loses
        // the tail also ended every connection it describes (one process).
        TopicSpec {
            retention_ms: Some(DAY_MS),
            durable: false,
            ..TopicSpec::new(PRESENCE, 1)
        },
        // Rare records that every edge reads in full at start: one partition. Durable: an
        // admin is told a revocation holds only once it is on disk.
        TopicSpec {
            compacted: true,
            ..TopicSpec::new(REVOCATIONS, 1)
        },
    ]
}

/// Retention the operator chose for some topics (`TIDINGS_TOPIC_RETENTION`, and
/// `topic_retention_ms` in Terraform), replacing [`all`]'s default for those topics.
/// Written `NAME=DURATION,...` with full topic names; a duration is milliseconds, or a
/// number with `s`, `m`, `h` or `d`, or `forever`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionSettings(Vec<(String, Option<i64>)>);

/// Why a retention setting was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RetentionError {
    #[error("{0:?} is not NAME=DURATION")]
    Syntax(String),
    #[error("unknown topic {name:?}; the topics are {known}")]
    UnknownTopic { name: String, known: String },
    #[error("{0} is compacted: it keeps the latest record per key, and retention does not apply")]
    Compacted(String),
    #[error("{name}: {value:?} is not a duration (milliseconds, or a number with s, m, h or d, or forever) of at least one minute")]
    Duration { name: String, value: String },
    #[error("{0} is set twice")]
    Repeated(String),
}

/// The shortest retention accepted: less would drop records before a restarted processor
/// could read them.
const MIN_RETENTION_MS: i64 = 60 * 1000;

fn parse_duration_ms(text: &str) -> Option<Option<i64>> {
    let text = text.trim();
    if text == "forever" || text == "-1" {
        return Some(None);
    }
    let (number, unit_ms) = match text.char_indices().last()? {
        (i, 's') if !text.ends_with("ms") => (&text[..i], 1000),
        (i, 'm') if !text.ends_with("ms") => (&text[..i], 60 * 1000),
        (i, 'h') => (&text[..i], 60 * 60 * 1000),
        (i, 'd') => (&text[..i], DAY_MS),
        _ => (text.strip_suffix("ms").unwrap_or(text), 1),
    };
    let ms = number.parse::<i64>().ok()?.checked_mul(unit_ms)?;
    (ms >= MIN_RETENTION_MS).then_some(Some(ms))
}

impl std::str::FromStr for RetentionSettings {
    type Err = RetentionError;

    fn from_str(text: &str) -> Result<Self, RetentionError> {
        let defaults = all();
        let mut settings: Vec<(String, Option<i64>)> = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, value) = item
                .split_once('=')
                .ok_or_else(|| RetentionError::Syntax(item.to_string()))?;
            let name = name.trim();
            let spec = defaults.iter().find(|s| s.name == name).ok_or_else(|| {
                RetentionError::UnknownTopic {
                    name: name.to_string(),
                    known: defaults
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            })?;
            if spec.compacted {
                return Err(RetentionError::Compacted(name.to_string()));
            }
            if settings.iter().any(|(n, _)| n == name) {
                return Err(RetentionError::Repeated(name.to_string()));
            }
            let ms = parse_duration_ms(value).ok_or_else(|| RetentionError::Duration {
                name: name.to_string(),
                value: value.to_string(),
            })?;
            settings.push((name.to_string(), ms));
        }
        Ok(Self(settings))
    }
}

/// The topics with the operator's retention settings applied: what `tidings migrate` and
/// `tidings standalone` make the log hold.
pub fn configured(settings: &RetentionSettings) -> Vec<TopicSpec> {
    let mut specs = all();
    for spec in &mut specs {
        if let Some((_, ms)) = settings.0.iter().find(|(name, _)| *name == spec.name) {
            spec.retention_ms = *ms;
        }
    }
    specs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `terraform/topics.tf.json` provisions what the programs expect: the same names,
    /// partitions, retention and compaction as [`all`].
    #[test]
    fn terraform_provisions_exactly_these_topics() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../terraform/topics.tf.json");
        let text = std::fs::read_to_string(path).expect("terraform/topics.tf.json exists");
        let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let declared = json["locals"]["topics"]
            .as_object()
            .expect("locals.topics is a map");
        assert_eq!(declared.len(), all().len(), "same number of topics");
        for spec in all() {
            let topic = &declared[&spec.name];
            assert_eq!(
                topic["partitions"].as_u64(),
                Some(spec.partitions as u64),
                "{}",
                spec.name
            );
            assert_eq!(
                topic["retention_ms"].as_i64(),
                Some(spec.retention_ms.unwrap_or(-1)),
                "{}",
                spec.name
            );
            assert_eq!(
                topic["compacted"].as_bool(),
                Some(spec.compacted),
                "{}",
                spec.name
            );
        }
        assert_eq!(
            json["locals"]["min_insync_replicas_cap"].as_i64(),
            Some(MIN_INSYNC_REPLICAS_CAP as i64),
            "locals.min_insync_replicas_cap"
        );
    }

    #[test]
    fn kafka_config_spells_retention_compaction_and_min_insync_replicas() {
        let config = |name: &str, rf: i32| {
            let spec = all().into_iter().find(|s| s.name == name).unwrap();
            kafka_config(&spec, rf)
        };
        assert_eq!(
            config(ROOM_LOG, 3),
            vec![
                ("retention.ms", "-1".to_string()),
                ("cleanup.policy", "delete".to_string()),
                ("min.insync.replicas", "2".to_string()),
            ]
        );
        assert_eq!(
            config(SUBSCRIPTIONS, 1),
            vec![
                ("retention.ms", "-1".to_string()),
                ("cleanup.policy", "compact".to_string()),
                ("min.insync.replicas", "1".to_string()),
            ]
        );
        assert_eq!(config(TYPING, 2)[0], ("retention.ms", "60000".to_string()));
        assert_eq!(config(TYPING, 2)[2].1, "2");
        assert_eq!(config(TYPING, 5)[2].1, "2");
    }

    #[test]
    fn retention_settings_replace_the_defaults_of_the_named_topics_only() {
        let settings: RetentionSettings =
            "tidings.room-log=30d, tidings.typing=90s,tidings.client-events=forever,tidings.deliveries=7200000"
                .parse()
                .unwrap();
        let specs = configured(&settings);
        let retention = |name: &str| specs.iter().find(|s| s.name == name).unwrap().retention_ms;
        assert_eq!(retention(ROOM_LOG), Some(30 * DAY_MS));
        assert_eq!(retention(TYPING), Some(90 * 1000));
        assert_eq!(retention(CLIENT_EVENTS), None);
        assert_eq!(retention(DELIVERIES), Some(2 * 60 * 60 * 1000));
        assert_eq!(retention(PRESENCE), Some(DAY_MS), "untouched");
        assert_eq!(specs.len(), all().len());
        assert_eq!(configured(&"".parse().unwrap()), all());
        assert_eq!(
            configured(&"tidings.presence=2h".parse().unwrap())
                .iter()
                .find(|s| s.name == PRESENCE)
                .unwrap()
                .retention_ms,
            Some(2 * 60 * 60 * 1000)
        );
    }

    #[test]
    fn retention_settings_refuse_what_would_be_wrong() {
        let err = |text: &str| text.parse::<RetentionSettings>().unwrap_err();
        assert!(matches!(err("tidings.room-log"), RetentionError::Syntax(_)));
        assert!(matches!(
            err("room-log=1d"),
            RetentionError::UnknownTopic { .. }
        ));
        assert!(matches!(
            err("tidings.subscriptions=1d"),
            RetentionError::Compacted(_)
        ));
        for bad in [
            "0",
            "10s",
            "59999",
            "-5",
            "1w",
            "d",
            "",
            "1.5d",
            "99999999999999999d",
        ] {
            assert!(
                matches!(
                    err(&format!("tidings.room-log={bad}")),
                    RetentionError::Duration { .. }
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            err("tidings.typing=1m,tidings.typing=2m"),
            RetentionError::Repeated(_)
        ));
        assert_eq!(parse_duration_ms("60000ms"), Some(Some(60_000)));
        assert_eq!(parse_duration_ms("1m"), Some(Some(60_000)));
    }
}
