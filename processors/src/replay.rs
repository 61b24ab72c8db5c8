//! Processors run over history, beside the live ones.
//!
//! - `tidings replay store` ([`rebuild_store`]): after a lost keyspace or store file, the
//!   room log, kept for ever, still holds every message, read marker and mention. Every
//!   partition is read from its first record, through the same writes as the live
//!   processors: persistence's for history (messages, deletions, mutes), the inbox's rows
//!   and read markers.
//! - `tidings replay processor NAME` ([`backfill`]): one processor over the room log from a
//!   time (or its beginning), e.g. the webhook processor for an endpoint added later. Each
//!   processor says whether that is safe ([`crate::Backfill`]): the sequencer and the
//!   processors that deliver to clients refuse.
//!
//! Both read each partition up to the end it had when they began, with their own readers:
//! no consumer group is joined and no offset committed, so the live processors' groups and
//! positions are untouched. Every store write is idempotent and webhook receivers drop
//! repeats by delivery id, so a replay may run beside live processors, be interrupted, and
//! run again.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::try_join_all;
use tidings_log::topics::ROOM_LOG;
use tidings_log::{Log, LogError, Record};
use tidings_schemas::{LogRecord, RoomEvent};
use tidings_store::Store;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::runtime::{Patience, Scan};
use crate::webhook::{self, WebhookConfig};
use crate::PERSISTENCE_CHECKPOINT;
use crate::{inbox, persistence, Backfill, Context, Processor, ProcessorError};

/// Records per read and per store write.
const BATCH: usize = 1000;
/// History is read with more patience than a start-up scan: nobody waits on a replay's
/// start, and a pause in the middle (a busy broker) must not end it early.
const HISTORY: Patience = Patience {
    wait: Duration::from_secs(2),
    polls: 3,
};
/// Tries per batch before a store replay gives up (backing off 1, 2, 4, 8 s in between).
const WRITE_ATTEMPTS: u32 = 5;
/// Batches read ahead of a backfill's processor, over all partitions (G7).
const QUEUED_BATCHES: usize = 16;
/// Distinct event kinds counted by name; others count as `other` (G7: kinds come from
/// records).
const MAX_KINDS: usize = 32;

/// Where a replay starts in each partition: `earliest`, or the first record appended at or
/// after a time (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    Earliest,
    Time(i64),
}

/// Below this, a number is more likely seconds than milliseconds (it would be before March
/// 1973): refused rather than read as a time that replays everything.
const SMALLEST_MS: i64 = 100_000_000_000;

impl FromStr for StartFrom {
    type Err = String;

    /// `earliest`, milliseconds since the epoch, or an RFC 3339 time
    /// (`2026-12-03T10:00:00Z`, `2026-12-03T11:00:00.250+01:00`).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("earliest") {
            return Ok(Self::Earliest);
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            let ms: i64 = s
                .parse()
                .map_err(|_| format!("{s:?} is too large for milliseconds since the epoch"))?;
            if ms < SMALLEST_MS {
                return Err(format!(
                    "{s} is before 1973 in milliseconds since the epoch; seconds? ({s}000)"
                ));
            }
            return Ok(Self::Time(ms));
        }
        match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(time) if time.timestamp_millis() >= 0 => Ok(Self::Time(time.timestamp_millis())),
            Ok(_) => Err(format!("{s:?} is before 1970")),
            Err(error) => Err(format!(
                "{s:?} is not `earliest`, milliseconds since the epoch, or an RFC 3339 time \
                 such as 2026-12-03T10:00:00Z ({error})"
            )),
        }
    }
}

impl fmt::Display for StartFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Earliest => f.write_str("earliest"),
            Self::Time(ms) => match chrono::DateTime::from_timestamp_millis(*ms) {
                Some(time) => {
                    let text = time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                    write!(f, "{text}")
                }
                None => write!(f, "{ms} ms"),
            },
        }
    }
}

/// What a backfill is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillJob {
    pub from: StartFrom,
    /// `webhook` only: the one configured endpoint that gets the history (else every one).
    pub endpoint: Option<String>,
}

/// Why a backfill does not run, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("{processor} cannot be backfilled: {reason}")]
    Refused {
        processor: &'static str,
        reason: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Failed(#[from] ProcessorError),
}

impl From<LogError> for BackfillError {
    fn from(error: LogError) -> Self {
        Self::Failed(error.into())
    }
}

/// One partition's stretch of history: offsets `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stretch {
    pub partition: u32,
    pub start: i64,
    pub end: i64,
}

/// What one replay did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReplayStats {
    /// Records read (each partition up to its end when the replay began).
    pub records: u64,
    /// Room events read, by kind.
    pub kinds: BTreeMap<String, u64>,
    /// Records that do not decode (the live processors dead-letter them; a replay only
    /// counts them).
    pub undecodable: u64,
    /// Messages written to the store (history, or the inbox's rows).
    pub messages: u64,
    /// Read markers written.
    pub read_markers: u64,
    /// Webhook deliveries accepted, given up on (dead-lettered), and failed tries.
    pub delivered: u64,
    pub dead_lettered: u64,
    pub failed_attempts: u64,
    pub seconds: f64,
    /// Stopped (SIGINT, SIGTERM) before the end: run it again to finish.
    pub interrupted: bool,
}

impl ReplayStats {
    fn add(&mut self, other: &ReplayStats) {
        self.records += other.records;
        for (kind, n) in &other.kinds {
            *self.kinds.entry(kind.clone()).or_default() += n;
        }
        self.undecodable += other.undecodable;
        self.messages += other.messages;
        self.read_markers += other.read_markers;
        self.delivered += other.delivered;
        self.dead_lettered += other.dead_lettered;
        self.failed_attempts += other.failed_attempts;
        self.interrupted |= other.interrupted;
    }

    /// Counts a room event by its kind.
    pub(crate) fn count(&mut self, event: &RoomEvent) {
        let kind = if self.kinds.contains_key(&event.kind) || self.kinds.len() < MAX_KINDS {
            event.kind.as_str()
        } else {
            "other"
        };
        *self.kinds.entry(kind.to_string()).or_default() += 1;
    }

    /// `records`, decoded and counted; what does not decode is counted and left out.
    fn events(&mut self, records: &[Record]) -> Vec<RoomEvent> {
        let mut events = Vec::with_capacity(records.len());
        for record in records {
            self.records += 1;
            match RoomEvent::decode(&record.value) {
                Ok(event) => {
                    self.count(&event);
                    events.push(event);
                }
                Err(_) => self.undecodable += 1,
            }
        }
        events
    }

    /// Records read per second.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.records as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// The stretches of the room log a replay from `from` reads: every partition, up to the end
/// it has now.
pub async fn plan(log: &dyn Log, from: StartFrom) -> Result<Vec<Stretch>, LogError> {
    let mut stretches = Vec::new();
    for partition in 0..log.partitions(ROOM_LOG).await? {
        // The end first: a start found by time is then never past it.
        let end = log.end_offset(ROOM_LOG, partition).await?;
        let start = match from {
            StartFrom::Earliest => 0,
            StartFrom::Time(ms) => log.offset_for_time(ROOM_LOG, partition, ms).await?,
        };
        stretches.push(Stretch {
            partition,
            start: start.min(end),
            end,
        });
    }
    Ok(stretches)
}

/// Whether `job` may run `processor` over history: the processor's own say, then settings
/// that fit it. Needs no backend, so a refusal comes before anything is opened. Returns the
/// live processor's group.
pub fn check(
    processor: &dyn Processor,
    job: &BackfillJob,
    webhooks: &WebhookConfig,
) -> Result<&'static str, BackfillError> {
    let live_group = match processor.backfill() {
        Backfill::Refused(reason) => {
            return Err(BackfillError::Refused {
                processor: processor.name(),
                reason,
            })
        }
        Backfill::Allowed { live_group } => live_group,
    };
    if processor.name() == webhook::NAME {
        webhook::backfill_config(webhooks, job.endpoint.as_deref())
            .map_err(BackfillError::Invalid)?;
    } else if job.endpoint.is_some() {
        return Err(BackfillError::Invalid(format!(
            "--endpoint is for the webhook processor, not {}",
            processor.name()
        )));
    }
    Ok(live_group)
}

/// Runs `processor` over the room log from `job.from` to the end each partition had when
/// it began, beside the live processor.
pub async fn backfill(
    processor: &dyn Processor,
    ctx: &Context,
    job: &BackfillJob,
    stop: &CancellationToken,
) -> Result<ReplayStats, BackfillError> {
    check(processor, job, &ctx.webhooks)?;
    let started = Instant::now();
    let stretches = plan(&*ctx.log, job.from).await?;
    let mut stats = processor.run_backfill(ctx, job, &stretches, stop).await?;
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// What a backfill would read, beside where the live processor is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRun {
    pub live_group: &'static str,
    /// Each partition's stretch, and the live group's committed offset there (`None`: it
    /// never committed there).
    pub partitions: Vec<(Stretch, Option<i64>)>,
}

/// What [`backfill`] would read, and where the live processor's group stands. Changes
/// nothing.
pub async fn dry_run(
    processor: &dyn Processor,
    ctx: &Context,
    job: &BackfillJob,
) -> Result<DryRun, BackfillError> {
    let live_group = check(processor, job, &ctx.webhooks)?;
    let mut partitions = Vec::new();
    for stretch in plan(&*ctx.log, job.from).await? {
        let live = ctx
            .log
            .committed_offset(live_group, ROOM_LOG, stretch.partition)
            .await?;
        partitions.push((stretch, live));
    }
    Ok(DryRun {
        live_group,
        partitions,
    })
}

/// Rebuilds the store from the whole room log, all partitions at once; then, unless
/// interrupted, sets persistence's checkpoints to where the replay ended, so the sequencer
/// trusts the store up to there.
pub async fn rebuild_store(
    log: Arc<dyn Log>,
    store: Arc<dyn Store>,
    stop: CancellationToken,
) -> Result<ReplayStats, ProcessorError> {
    let started = Instant::now();
    let stretches = plan(&*log, StartFrom::Earliest).await?;
    let (mut stats, reached) = into_store(&log, &store, &stretches, Writes::ALL, &stop).await?;
    if !stats.interrupted {
        for (stretch, next) in stretches.iter().zip(reached) {
            if stretch.end > 0 {
                store
                    .set_checkpoint(PERSISTENCE_CHECKPOINT, stretch.partition, next)
                    .await?;
            }
        }
    }
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// What a replay into the store writes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Writes {
    /// Messages, deletions and mutes, as persistence stores them.
    pub history: bool,
    /// The inbox's rows and read markers, as the inbox processor stores them.
    pub inbox: bool,
}

impl Writes {
    pub(crate) const ALL: Writes = Writes {
        history: true,
        inbox: true,
    };
    pub(crate) const HISTORY: Writes = Writes {
        history: true,
        inbox: false,
    };
    pub(crate) const INBOX: Writes = Writes {
        history: false,
        inbox: true,
    };
}

/// Reads every stretch (all partitions at once) and writes what it means into the store.
/// Returns the stats and, per stretch, one past the last record read.
pub(crate) async fn into_store(
    log: &Arc<dyn Log>,
    store: &Arc<dyn Store>,
    stretches: &[Stretch],
    writes: Writes,
    stop: &CancellationToken,
) -> Result<(ReplayStats, Vec<i64>), ProcessorError> {
    let work = stretches
        .iter()
        .map(|stretch| stretch_into_store(&**log, &**store, *stretch, writes, stop));
    let mut total = ReplayStats::default();
    let mut reached = Vec::with_capacity(stretches.len());
    for (stats, next) in try_join_all(work).await? {
        total.add(&stats);
        reached.push(next);
    }
    Ok((total, reached))
}

async fn stretch_into_store(
    log: &dyn Log,
    store: &dyn Store,
    stretch: Stretch,
    writes: Writes,
    stop: &CancellationToken,
) -> Result<(ReplayStats, i64), ProcessorError> {
    let mut stats = ReplayStats::default();
    if stretch.start >= stretch.end {
        return Ok((stats, stretch.end));
    }
    let (start, end) = (stretch.start, stretch.end);
    let mut scan = Scan::open(log, ROOM_LOG, stretch.partition, start, end, HISTORY).await?;
    loop {
        let batch = tokio::select! {
            _ = stop.cancelled() => {
                stats.interrupted = true;
                break;
            }
            batch = scan.next_batch(BATCH) => batch?,
        };
        let Some(mut records) = batch else {
            break;
        };
        records.retain(|r| r.offset < stretch.end);
        let events = stats.events(&records);
        // A busy store times out now and then; every write is idempotent, so try again.
        let mut attempt = 0;
        loop {
            let error = match write(store, &events, writes).await {
                Ok((messages, markers)) => {
                    stats.messages += messages;
                    stats.read_markers += markers;
                    break;
                }
                Err(error) => error,
            };
            attempt += 1;
            if attempt == WRITE_ATTEMPTS || stop.is_cancelled() {
                return Err(error);
            }
            tracing::warn!(partition = stretch.partition, attempt, %error, "replay write failed; retrying");
            tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
        }
    }
    tracing::info!(
        partition = stretch.partition,
        records = stats.records,
        interrupted = stats.interrupted,
        "room log partition replayed"
    );
    Ok((stats, scan.next().min(stretch.end)))
}

/// Writes what a stretch of the room log puts in the store; returns how many messages and
/// read markers.
async fn write(
    store: &dyn Store,
    events: &[RoomEvent],
    writes: Writes,
) -> Result<(u64, u64), ProcessorError> {
    let mut messages = 0;
    let mut markers = 0;
    if writes.history {
        messages = persistence::write(store, events).await?;
    }
    if writes.inbox {
        let (indexed, set) = inbox::write_index(store, events).await?;
        markers = set;
        if !writes.history {
            messages = indexed;
        }
    }
    Ok((messages, markers))
}

/// Stretches of history read at once, each partition in order, through one bounded queue:
/// what a backfill feeds a processor loop written for a consumer.
pub(crate) struct History {
    batches: mpsc::Receiver<Result<Vec<Record>, LogError>>,
    /// One reader task per stretch; dropped with the history, which stops them.
    _readers: JoinSet<()>,
    finished: bool,
}

impl History {
    pub(crate) fn open(log: Arc<dyn Log>, stretches: &[Stretch], batch: usize) -> Self {
        let (tx, batches) = mpsc::channel(QUEUED_BATCHES);
        let mut readers = JoinSet::new();
        for stretch in stretches.iter().copied() {
            if stretch.start >= stretch.end {
                continue;
            }
            let (log, tx) = (log.clone(), tx.clone());
            readers.spawn(async move {
                if let Err(error) = read_stretch(&*log, stretch, batch, &tx).await {
                    // The loop stops on it; if the loop is gone, so is the reason to tell.
                    let _ = tx.send(Err(error)).await;
                }
            });
        }
        Self {
            batches,
            _readers: readers,
            finished: false,
        }
    }

    /// The next batch (records of one partition, in order), or none within `wait`.
    pub(crate) async fn poll(&mut self, wait: Duration) -> Result<Vec<Record>, LogError> {
        if self.finished {
            return Ok(Vec::new());
        }
        match tokio::time::timeout(wait, self.batches.recv()).await {
            Err(_) => Ok(Vec::new()),
            Ok(Some(batch)) => batch,
            // Every reader reached its end and dropped its sender.
            Ok(None) => {
                self.finished = true;
                Ok(Vec::new())
            }
        }
    }

    /// Whether every stretch was read and handed out.
    pub(crate) fn finished(&self) -> bool {
        self.finished
    }
}

async fn read_stretch(
    log: &dyn Log,
    stretch: Stretch,
    batch: usize,
    out: &mpsc::Sender<Result<Vec<Record>, LogError>>,
) -> Result<(), LogError> {
    let (start, end) = (stretch.start, stretch.end);
    let mut scan = Scan::open(log, ROOM_LOG, stretch.partition, start, end, HISTORY).await?;
    while let Some(mut records) = scan.next_batch(batch).await? {
        records.retain(|r| r.offset < stretch.end);
        if !records.is_empty() && out.send(Ok(records)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    #[test]
    fn start_points_parse() {
        assert_eq!("earliest".parse(), Ok(StartFrom::Earliest));
        assert_eq!(" EARLIEST ".parse(), Ok(StartFrom::Earliest));
        assert_eq!(
            "1796300000000".parse(),
            Ok(StartFrom::Time(1_796_300_000_000))
        );
        assert_eq!(
            "2026-12-03T10:00:00Z".parse(),
            Ok(StartFrom::Time(1_796_292_000_000))
        );
        assert_eq!(
            "2026-12-03T11:00:00.250+01:00".parse(),
            Ok(StartFrom::Time(1_796_292_000_250))
        );
        assert_eq!(
            "2026-12-03t10:00:00z".parse(),
            Ok(StartFrom::Time(1_796_292_000_000)),
            "RFC 3339 allows lower-case t and z"
        );
        for bad in [
            "",
            "yesterday",
            "-5",
            "12.5",
            "2026-12-03",
            "2026-12-03 10:00",
            "2026-13-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<StartFrom>().is_err(), "{bad:?} is refused");
        }
        let seconds = "1796300000".parse::<StartFrom>().unwrap_err();
        assert!(seconds.contains("1796300000000"), "{seconds}");
    }

    #[test]
    fn start_points_print_as_they_parse() {
        assert_eq!(StartFrom::Earliest.to_string(), "earliest");
        let time = StartFrom::Time(1_796_292_000_250);
        assert_eq!(time.to_string(), "2026-12-03T10:00:00.250Z");
        assert_eq!(time.to_string().parse(), Ok(time));
    }

    fn job(endpoint: Option<&str>) -> BackfillJob {
        BackfillJob {
            from: StartFrom::Earliest,
            endpoint: endpoint.map(str::to_string),
        }
    }

    fn hooks() -> WebhookConfig {
        let endpoints = serde_json::json!([
            {"name": "a", "url": "http://127.0.0.1:1/a", "secret": "s"},
            {"name": "b", "url": "http://127.0.0.1:1/b", "secret": "s"},
        ]);
        WebhookConfig {
            endpoints: serde_json::from_value(endpoints).expect("endpoints"),
            ..WebhookConfig::default()
        }
        .checked()
        .expect("valid")
    }

    #[test]
    fn each_processor_says_whether_it_may_run_over_history() {
        let mut allowed = Vec::new();
        for p in registry() {
            match check(&*p, &job(None), &hooks()) {
                Ok(group) => allowed.push((p.name(), group)),
                Err(BackfillError::Refused { processor, reason }) => {
                    assert_eq!(processor, p.name());
                    assert!(reason.len() > 20, "{processor} says why: {reason}");
                }
                Err(other) => panic!("{}: {other}", p.name()),
            }
        }
        assert_eq!(
            allowed,
            [
                ("persistence", "tidings-persistence"),
                ("inbox", "tidings-inbox"),
                ("webhook", "tidings-webhook")
            ]
        );
        let sequencer = crate::by_name("sequencer").expect("registered");
        let refused = check(&*sequencer, &job(None), &hooks())
            .unwrap_err()
            .to_string();
        assert!(
            refused.starts_with("sequencer cannot be backfilled: ") && refused.contains("seq"),
            "{refused}"
        );
    }

    #[test]
    fn an_endpoint_is_for_webhooks_and_must_be_configured() {
        let webhook = crate::by_name("webhook").expect("registered");
        assert!(check(&*webhook, &job(Some("b")), &hooks()).is_ok());
        let unknown = check(&*webhook, &job(Some("c")), &hooks()).unwrap_err();
        assert!(
            unknown.to_string().contains("a, b"),
            "names the configured ones: {unknown}"
        );
        let none = check(&*webhook, &job(None), &WebhookConfig::default()).unwrap_err();
        assert!(none.to_string().contains("no webhook endpoint"), "{none}");
        let persistence = crate::by_name("persistence").expect("registered");
        assert!(matches!(
            check(&*persistence, &job(Some("a")), &hooks()),
            Err(BackfillError::Invalid(_))
        ));
    }

    #[test]
    fn stats_count_kinds_up_to_a_bound() {
        let mut stats = ReplayStats::default();
        let event = |kind: &str| RoomEvent {
            event_id: "e".into(),
            kind: kind.into(),
            room: Some("r".into()),
            user: None,
            ts: 0,
            trace_id: String::new(),
            node: String::new(),
            seq: 1,
            client_id: String::new(),
            text: String::new(),
            origin_node: String::new(),
            origin_conn: String::new(),
            target: None,
            until: None,
            role: None,
        };
        stats.count(&event("message"));
        stats.count(&event("message"));
        stats.count(&event("read"));
        for i in 0..100 {
            stats.count(&event(&format!("odd-{i}")));
        }
        assert_eq!(stats.kinds["message"], 2);
        assert_eq!(stats.kinds["read"], 1);
        assert_eq!(stats.kinds.len(), MAX_KINDS + 1);
        assert_eq!(stats.kinds["other"], 100 - (MAX_KINDS as u64 - 2));
    }
}
