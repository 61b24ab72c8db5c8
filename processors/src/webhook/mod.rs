//! Webhooks: room events POSTed to configured URLs, at least once, in order per room.
//!
//! Consumes the room log (group `tidings-webhook`). Each record goes to every endpoint whose
//! room glob and kinds match it. An (endpoint, room) pair is a *lane*: a task that POSTs its
//! events one at a time, in log order, retrying with doubling pauses; after the last failed
//! attempt the event is copied to `tidings.webhook-dead-letters` and the lane moves on. Lanes
//! run in parallel, with at most `concurrency` POSTs in flight over all of them, so a slow or
//! dead endpoint only holds up its own rooms.
//!
//! The cursor: per partition, the committed offset is the lowest record some lane still
//! works on (or the end of what was taken). So a crash, even SIGKILL, redelivers at most what
//! was in flight and never skips. Receivers drop repeats by `delivery_id`, which is the same
//! for an (endpoint, record) pair on every try and after every restart.
//!
//! With no endpoint configured the processor still follows the room log and commits, so
//! endpoints added later get events from then on, not the whole history. The history is
//! what `tidings replay processor webhook --endpoint NAME` is for: the same lanes, POSTs,
//! retries and dead letters, fed from the room log's past instead of the live group, with
//! the same delivery ids, so a receiver drops what it gets from both.

mod config;
mod deliver;
mod metrics;

pub use config::{glob_matches, Endpoint, WebhookConfig, KINDS};
pub use deliver::{backoff, body, delivery_id, sign, DELIVERY_HEADER, SIGNATURE_HEADER};
pub use metrics::counts;

use crate::dead_letter::decode_or_dead_letter;
use crate::replay::History;
use crate::runtime;
use crate::{Backfill, BackfillJob, Context, Processor, ProcessorError, ReplayStats, Stretch};
use async_trait::async_trait;
use metrics::METRICS;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tidings_log::topics::{DEAD_LETTERS, ROOM_LOG, WEBHOOK_DEAD_LETTERS};
use tidings_log::{Checkpoint, Consumer, ConsumerOptions, Log, LogError, OutRecord, Record};
use tidings_schemas::{LogRecord, RoomEvent};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub const NAME: &str = "webhook";
pub const GROUP: &str = "tidings-webhook";
/// Room events per poll.
const BATCH: usize = 500;
/// Deliveries taken from the log and not finished yet (G7): polling stops at this many, so
/// the lanes' queues and the completion channel never hold more.
const WINDOW: usize = 10_000;
/// How often finished work moves the committed offsets.
const COMMIT_EVERY: Duration = Duration::from_millis(200);
/// Poll wait while lanes are busy: completions are looked at between polls.
const BUSY_POLL_WAIT: Duration = Duration::from_millis(20);

/// Headers of a webhook dead letter (its value is the room-log record, unchanged).
pub const HEADER_ENDPOINT: &str = "webhook.endpoint";
pub const HEADER_URL: &str = "webhook.url";
pub const HEADER_DELIVERY: &str = "webhook.delivery-id";
pub const HEADER_ATTEMPTS: &str = "webhook.attempts";
pub const HEADER_ERROR: &str = "webhook.error";
pub const HEADER_PARTITION: &str = "webhook.source-partition";
pub const HEADER_OFFSET: &str = "webhook.source-offset";

pub struct Webhook;

#[async_trait]
impl Processor for Webhook {
    fn name(&self) -> &'static str {
        NAME
    }

    fn consumes(&self) -> &'static [&'static str] {
        &[ROOM_LOG]
    }

    fn produces(&self) -> &'static [&'static str] {
        &[WEBHOOK_DEAD_LETTERS, DEAD_LETTERS]
    }

    async fn session(
        &self,
        ctx: &Context,
        shutdown: &CancellationToken,
    ) -> Result<(), ProcessorError> {
        session(ctx, shutdown).await
    }

    /// Receivers drop repeats by delivery id, which a backfill gives as the live processor
    /// does; it delivers only to webhook endpoints, never to clients.
    fn backfill(&self) -> Backfill {
        Backfill::Allowed { live_group: GROUP }
    }

    async fn run_backfill(
        &self,
        ctx: &Context,
        job: &BackfillJob,
        stretches: &[Stretch],
        stop: &CancellationToken,
    ) -> Result<ReplayStats, ProcessorError> {
        let config = backfill_config(&ctx.webhooks, job.endpoint.as_deref())
            .map_err(|_| ProcessorError::Internal("no such webhook endpoint"))?;
        let shared = Shared::new(ctx.log.clone(), config)?;
        let mut feed = Feed::History(History::open(ctx.log.clone(), stretches, BATCH));
        work(shared, &mut feed, stop).await
    }
}

/// The endpoints a backfill delivers to: the one named, or every one configured.
pub fn backfill_config(
    config: &WebhookConfig,
    endpoint: Option<&str>,
) -> Result<WebhookConfig, String> {
    if config.endpoints.is_empty() {
        return Err(
            "no webhook endpoint is configured (TIDINGS_WEBHOOKS, or [[webhooks.endpoints]])"
                .into(),
        );
    }
    let Some(name) = endpoint else {
        return Ok(config.clone());
    };
    let Some(chosen) = config.endpoints.iter().find(|e| e.name == name) else {
        let names: Vec<&str> = config.endpoints.iter().map(|e| e.name.as_str()).collect();
        return Err(format!(
            "no webhook endpoint is named {name:?}; configured: {}",
            names.join(", ")
        ));
    };
    Ok(WebhookConfig {
        endpoints: vec![chosen.clone()],
        ..config.clone()
    })
}

/// One event for one lane.
struct Job {
    partition: u32,
    offset: i64,
    event: Arc<RoomEvent>,
    /// The record as read, for the dead-letter copy.
    value: Arc<Vec<u8>>,
}

/// A lane finished a job (delivered or dead-lettered).
struct Done {
    lane: (usize, String),
    partition: u32,
    offset: i64,
    outcome: Outcome,
}

/// How one delivery ended.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    /// Accepted (2xx); else dead-lettered.
    delivered: bool,
    failed_attempts: u32,
}

struct Lane {
    jobs: mpsc::UnboundedSender<Job>,
    /// Sent and not done: at 0 the lane is dropped, which ends its task.
    open: usize,
}

/// What every lane shares.
struct Shared {
    config: WebhookConfig,
    client: reqwest::Client,
    permits: Semaphore,
    log: Arc<dyn Log>,
}

impl Shared {
    fn new(log: Arc<dyn Log>, config: WebhookConfig) -> Result<Arc<Self>, ProcessorError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("tidings-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| ProcessorError::Internal("cannot build the webhook HTTP client"))?;
        Ok(Arc::new(Self {
            permits: Semaphore::new(config.concurrency),
            config,
            client,
            log,
        }))
    }
}

/// Where the lanes' events come from.
enum Feed {
    /// The live group: followed for ever, its offsets committed.
    Live(Box<dyn Consumer>),
    /// A backfill's stretches of history: read once, nothing committed anywhere.
    History(History),
}

impl Feed {
    async fn poll(&mut self, wait: Duration) -> Result<Vec<Record>, LogError> {
        match self {
            Feed::Live(consumer) => consumer.poll(BATCH, wait).await,
            Feed::History(history) => history.poll(wait).await,
        }
    }

    async fn commit(&mut self, checkpoints: &[Checkpoint]) -> Result<(), LogError> {
        match self {
            Feed::Live(consumer) => consumer.commit(checkpoints).await,
            Feed::History(_) => Ok(()),
        }
    }

    fn live(&self) -> bool {
        matches!(self, Feed::Live(_))
    }

    /// Nothing more will come (a backfill read its stretches to the end).
    fn finished(&self) -> bool {
        matches!(self, Feed::History(history) if history.finished())
    }
}

async fn session(ctx: &Context, shutdown: &CancellationToken) -> Result<(), ProcessorError> {
    let consumer = ctx
        .log
        .consumer(GROUP, &[ROOM_LOG], ConsumerOptions::default())
        .await?;
    let shared = Shared::new(ctx.log.clone(), ctx.webhooks.clone())?;
    // Every endpoint's counters exist at 0, so `/metrics` shows them before any event.
    for e in &shared.config.endpoints {
        let _ = counts(&e.name);
    }
    crate::health::set_ready(NAME, true);
    work(shared, &mut Feed::Live(consumer), shutdown).await?;
    Ok(())
}

/// Takes events from `feed` into the lanes until shutdown or, for history, until every
/// event was delivered or dead-lettered. What a backfill did comes back as stats (a live
/// session's are dropped).
async fn work(
    shared: Arc<Shared>,
    feed: &mut Feed,
    shutdown: &CancellationToken,
) -> Result<ReplayStats, ProcessorError> {
    let live = feed.live();
    let mut stats = ReplayStats::default();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut lanes: HashMap<(usize, String), Lane> = HashMap::new();
    // Dropped on return, which aborts every lane: no two sessions deliver at once.
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut window = Window::default();
    let mut last_commit = Instant::now();
    loop {
        while let Ok(done) = done_rx.try_recv() {
            finish(&mut lanes, &mut window, &mut stats, done);
        }
        if last_commit.elapsed() >= COMMIT_EVERY || shutdown.is_cancelled() {
            let checkpoints = window.advanced();
            if !checkpoints.is_empty() {
                feed.commit(&checkpoints).await?;
                window.committed(&checkpoints);
            }
            last_commit = Instant::now();
        }
        if shutdown.is_cancelled() {
            // Lanes are aborted on return; what they had is redelivered next time.
            stats.interrupted = true;
            return Ok(stats);
        }
        let finished = feed.finished();
        if finished && window.open == 0 {
            return Ok(stats);
        }
        if finished || window.open >= WINDOW {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                Some(done) = done_rx.recv() => finish(&mut lanes, &mut window, &mut stats, done),
            }
            continue;
        }
        let wait = if window.open == 0 {
            runtime::POLL_WAIT
        } else {
            BUSY_POLL_WAIT
        };
        let records = tokio::select! {
            _ = shutdown.cancelled() => continue,
            polled = feed.poll(wait) => polled?,
        };
        if records.is_empty() {
            continue;
        }
        let batch_started = Instant::now();
        let mut bad = Vec::new();
        for record in &records {
            stats.records += 1;
            // A backfill only counts what does not decode: the live processor copied it to
            // the dead letters when it first read it.
            let event = if live {
                decode_or_dead_letter::<RoomEvent>(NAME, record, &mut bad)
            } else {
                RoomEvent::decode(&record.value).ok()
            };
            let Some(event) = event else {
                stats.undecodable += 1;
                window.taken(record.partition, record.offset, 0);
                continue;
            };
            stats.count(&event);
            let room = event.room.clone().unwrap_or_default();
            let wanted: Vec<usize> = shared
                .config
                .endpoints
                .iter()
                .enumerate()
                .filter(|(_, e)| !room.is_empty() && e.wants(&room, &event.kind))
                .map(|(i, _)| i)
                .collect();
            window.taken(record.partition, record.offset, wanted.len());
            if wanted.is_empty() {
                continue;
            }
            let (event, value) = (Arc::new(event), Arc::new(record.value.clone()));
            for endpoint in wanted {
                let key = (endpoint, room.clone());
                let lane = lanes.entry(key.clone()).or_insert_with(|| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    tasks.spawn(run_lane(shared.clone(), key.clone(), rx, done_tx.clone()));
                    Lane { jobs: tx, open: 0 }
                });
                lane.open += 1;
                let job = Job {
                    partition: record.partition,
                    offset: record.offset,
                    event: event.clone(),
                    value: value.clone(),
                };
                if lane.jobs.send(job).is_err() {
                    return Err(ProcessorError::Internal("a webhook lane ended early"));
                }
            }
        }
        // Before the offsets move past them (at least once).
        if !bad.is_empty() {
            shared.log.produce_batch(bad).await?;
        }
        if live {
            crate::health::batch(NAME, &records, batch_started.elapsed());
        }
    }
}

fn finish(
    lanes: &mut HashMap<(usize, String), Lane>,
    window: &mut Window,
    stats: &mut ReplayStats,
    done: Done,
) {
    window.done(done.partition, done.offset);
    if done.outcome.delivered {
        stats.delivered += 1;
    } else {
        stats.dead_lettered += 1;
    }
    stats.failed_attempts += u64::from(done.outcome.failed_attempts);
    if let Some(lane) = lanes.get_mut(&done.lane) {
        lane.open -= 1;
        if lane.open == 0 {
            // Its queue is empty: dropping the sender ends the task.
            lanes.remove(&done.lane);
        }
    }
}

/// Delivers a lane's jobs one at a time, in the order they came.
async fn run_lane(
    shared: Arc<Shared>,
    key: (usize, String),
    mut jobs: mpsc::UnboundedReceiver<Job>,
    done: mpsc::UnboundedSender<Done>,
) {
    while let Some(job) = jobs.recv().await {
        let outcome = deliver(&shared, key.0, &job).await;
        let finished = Done {
            lane: key.clone(),
            partition: job.partition,
            offset: job.offset,
            outcome,
        };
        if done.send(finished).is_err() {
            return;
        }
    }
}

/// Tries `job` on `endpoint` up to `max_attempts` times; then copies it to the dead-letter
/// topic (retrying that append until it is durable: the offset must not pass it before).
async fn deliver(shared: &Shared, endpoint: usize, job: &Job) -> Outcome {
    let config = &shared.config;
    let e = &config.endpoints[endpoint];
    let id = deliver::delivery_id(&e.url, &job.event.event_id);
    let body = deliver::body(&job.event, &id);
    let signature = deliver::sign(e.secret.as_bytes(), &body);
    let mut last_error = String::new();
    let mut tries = 0;
    for attempt in 1..=config.max_attempts {
        tries = attempt;
        let result = {
            // Never closed; if it were, going on unbounded beats stalling for good.
            let _permit = shared.permits.acquire().await.ok();
            deliver::post(&shared.client, &e.url, &signature, &id, body.clone()).await
        };
        match result {
            Ok(()) => {
                METRICS
                    .delivered
                    .with_label_values(&[e.name.as_str()])
                    .inc();
                return Outcome {
                    delivered: true,
                    failed_attempts: attempt - 1,
                };
            }
            Err(failure) => {
                METRICS.failed.with_label_values(&[e.name.as_str()]).inc();
                tracing::debug!(endpoint = %e.name, room = ?job.event.room, seq = job.event.seq, attempt, error = %failure.message, "webhook attempt failed");
                last_error = failure.message;
                if failure.permanent {
                    break;
                }
            }
        }
        if attempt < config.max_attempts {
            let pause = deliver::backoff(attempt, config.base_delay, config.max_delay);
            tokio::time::sleep(deliver::jittered(pause, rand::random::<f64>())).await;
        }
    }
    tracing::warn!(endpoint = %e.name, room = ?job.event.room, seq = job.event.seq, error = %last_error, "webhook gave up; event dead-lettered");
    let record = OutRecord {
        topic: WEBHOOK_DEAD_LETTERS.to_string(),
        key: job.event.room.clone().unwrap_or_default(),
        value: job.value.as_ref().clone(),
        headers: vec![
            (HEADER_ENDPOINT.into(), e.name.clone()),
            (HEADER_URL.into(), deliver::redacted(&e.url).to_string()),
            (HEADER_DELIVERY.into(), id),
            (HEADER_ATTEMPTS.into(), tries.to_string()),
            (HEADER_ERROR.into(), last_error),
            (HEADER_PARTITION.into(), job.partition.to_string()),
            (HEADER_OFFSET.into(), job.offset.to_string()),
        ],
    };
    let mut pause = runtime::Backoff::new();
    while let Err(error) = shared.log.produce(record.clone()).await {
        tracing::warn!(%error, "webhook dead letter not appended yet; retrying");
        tokio::time::sleep(pause.next_delay()).await;
    }
    METRICS
        .dead_lettered
        .with_label_values(&[e.name.as_str()])
        .inc();
    Outcome {
        delivered: false,
        failed_attempts: tries,
    }
}

/// Where each partition stands: records taken, deliveries still open per record, and what
/// was committed. The committed offset may only reach the lowest record still open.
#[derive(Default)]
struct Window {
    parts: HashMap<u32, Part>,
    /// Open deliveries over all partitions.
    open: usize,
}

#[derive(Default)]
struct Part {
    /// Offset → deliveries of that record not finished yet.
    open: BTreeMap<i64, usize>,
    /// One past the last record taken.
    next: i64,
    committed: i64,
}

impl Window {
    /// Record `offset` was taken with `deliveries` to make (0: nothing to do, done at once).
    fn taken(&mut self, partition: u32, offset: i64, deliveries: usize) {
        let part = self.parts.entry(partition).or_default();
        part.next = part.next.max(offset + 1);
        if deliveries > 0 {
            *part.open.entry(offset).or_default() += deliveries;
            self.open += deliveries;
        }
    }

    fn done(&mut self, partition: u32, offset: i64) {
        let Some(part) = self.parts.get_mut(&partition) else {
            return;
        };
        if let Some(left) = part.open.get_mut(&offset) {
            *left -= 1;
            self.open -= 1;
            if *left == 0 {
                part.open.remove(&offset);
            }
        }
    }

    /// Checkpoints for every partition whose safe point moved past its last commit.
    fn advanced(&self) -> Vec<Checkpoint> {
        let mut out: Vec<Checkpoint> = self
            .parts
            .iter()
            .filter_map(|(&partition, part)| {
                let safe = part.open.keys().next().copied().unwrap_or(part.next);
                (safe > part.committed).then(|| Checkpoint {
                    topic: ROOM_LOG.to_string(),
                    partition,
                    next_offset: safe,
                })
            })
            .collect();
        out.sort_by_key(|c| c.partition);
        out
    }

    fn committed(&mut self, checkpoints: &[Checkpoint]) {
        for c in checkpoints {
            if let Some(part) = self.parts.get_mut(&c.partition) {
                part.committed = c.next_offset;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(w: &Window) -> Vec<(u32, i64)> {
        w.advanced()
            .iter()
            .map(|c| (c.partition, c.next_offset))
            .collect()
    }

    #[test]
    fn the_cursor_stops_at_the_lowest_open_record() {
        let mut w = Window::default();
        w.taken(0, 10, 1);
        w.taken(0, 11, 0);
        w.taken(0, 12, 2);
        w.taken(1, 5, 0);
        assert_eq!(marks(&w), [(0, 10), (1, 6)], "nothing past offset 10 yet");
        w.done(0, 12);
        assert_eq!(
            marks(&w),
            [(0, 10), (1, 6)],
            "a later record done moves nothing"
        );
        w.done(0, 10);
        assert_eq!(
            marks(&w),
            [(0, 12), (1, 6)],
            "12 still has one delivery open"
        );
        w.committed(&w.advanced());
        assert!(marks(&w).is_empty(), "nothing new to commit");
        w.done(0, 12);
        assert_eq!(marks(&w), [(0, 13)]);
        assert_eq!(w.open, 0);
    }

    #[test]
    fn offsets_need_not_be_contiguous() {
        // Kafka transaction markers take offsets that are never read.
        let mut w = Window::default();
        w.taken(3, 100, 1);
        w.taken(3, 102, 1);
        w.done(3, 100);
        assert_eq!(marks(&w), [(3, 102)]);
        w.done(3, 102);
        assert_eq!(marks(&w), [(3, 103)]);
    }
}
