//! The processors behind the log. Each is an independent consumer group that keeps no state
//! that matters: kill one at any point and its successor resumes from the log and the store.
//!
//! - [`sequencer`]: client events → moderation, per-room gapless seq, dedupe by client id
//!   (exactly-once into the room log, subscriptions and deliveries).
//! - [`persistence`]: room log → store (idempotent, at-least-once), with its checkpoints.
//! - [`fanout`]: room log → one delivery per hosting edge.
//! - [`typing`]: typing notices → one delivery per hosting edge.
//! - [`presence`]: connection lifecycle → who is online per room and user, `presence` and
//!   `occupancy` deliveries, answers to presence questions, `last_seen` in the store.
//! - [`inbox`]: room log → read markers, the DM and mention index, `read`, `receipt` and
//!   `notify` deliveries.
//! - [`webhook`]: room log → POSTs to configured URLs, at least once, in order per room.
//!
//! All implement [`Processor`] and are listed in one place, [`registry`]. Each says whether
//! it may run over history beside its live self ([`Backfill`], [`replay`]).

pub mod dead_letter;
pub mod fanout;
pub mod health;
pub mod inbox;
pub mod persistence;
pub mod presence;
pub mod registry;
pub mod replay;
pub mod sequencer;
pub mod typing;
pub mod webhook;

mod directory;
mod runtime;

use async_trait::async_trait;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub use registry::{by_name, registry};
pub use replay::{BackfillJob, ReplayStats, StartFrom, Stretch};

/// Name under which persistence saves its progress in the store (`Store::checkpoint`); the
/// sequencer bounds its recovery scan with it.
pub const PERSISTENCE_CHECKPOINT: &str = "persistence";

/// What moderation enforces on every `send` (G5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModerationConfig {
    /// Most characters (Unicode scalar values, after normalization) a message may have.
    pub max_text_chars: usize,
    /// Terms refused anywhere in a message, compared case-insensitively as substrings.
    pub blocked_terms: Vec<String>,
}

impl Default for ModerationConfig {
    fn default() -> Self {
        Self {
            max_text_chars: 4000,
            blocked_terms: Vec::new(),
        }
    }
}

impl ModerationConfig {
    /// Parses a comma-separated term list (`TIDINGS_BLOCKED_TERMS`); blanks are dropped.
    pub fn parse_terms(csv: &str) -> Vec<String> {
        csv.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// What every processor gets to run with.
#[derive(Clone)]
pub struct Context {
    pub log: Arc<dyn tidings_log::Log>,
    pub store: Arc<dyn tidings_store::Store>,
    /// This process's node id: names transactional ids and fills the `node` field of outputs.
    pub node: String,
    pub moderation: ModerationConfig,
    pub presence: presence::PresenceConfig,
    /// Where the webhook processor POSTs room events (none: it only follows the log).
    pub webhooks: webhook::WebhookConfig,
    /// The sequencer's pre-send hook, if one is configured.
    pub presend: Option<sequencer::PresendConfig>,
}

/// Why a processor's session stopped. `run` logs these and starts a new session after a
/// bounded backoff; they never end `run`.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("log: {0}")]
    Log(#[from] tidings_log::LogError),
    #[error("store: {0}")]
    Store(#[from] tidings_store::StoreError),
    #[error("encoding: {0}")]
    Schema(#[from] tidings_schemas::SchemaError),
    #[error("internal: {0}")]
    Internal(&'static str),
}

/// What running a processor over history again (`tidings replay processor`) would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backfill {
    /// It may: seeing events again corrupts nothing and reaches no client. `live_group` is
    /// the live processor's consumer group, which a backfill never joins or commits for.
    Allowed { live_group: &'static str },
    /// It must not, and why (shown to the operator).
    Refused(&'static str),
}

/// One processor: a consumer group on some topics producing to others.
#[async_trait]
pub trait Processor: Send + Sync {
    fn name(&self) -> &'static str;
    /// Topics it consumes (as a group).
    fn consumes(&self) -> &'static [&'static str];
    /// Topics it appends to.
    fn produces(&self) -> &'static [&'static str];
    /// One session: opens its consumer and works until `shutdown` (`Ok`) or an error.
    async fn session(
        &self,
        ctx: &Context,
        shutdown: &CancellationToken,
    ) -> Result<(), ProcessorError>;

    /// Whether it may run over history beside the live processor. Refused unless a
    /// processor says otherwise: running again over events it already handled must
    /// corrupt nothing and reach no client.
    fn backfill(&self) -> Backfill {
        Backfill::Refused("it does not say what running over history would mean")
    }

    /// Runs over `stretches` of the room log, with its own readers: no group joined, no
    /// offset committed. Called (by [`replay::backfill`]) only if [`Processor::backfill`]
    /// allows it and `job` passed [`replay::check`].
    async fn run_backfill(
        &self,
        ctx: &Context,
        job: &BackfillJob,
        stretches: &[Stretch],
        stop: &CancellationToken,
    ) -> Result<ReplayStats, ProcessorError> {
        let _ = (ctx, job, stretches, stop);
        Err(ProcessorError::Internal(
            "this processor does not run over history",
        ))
    }

    /// Runs sessions until `shutdown` is cancelled. A failed session (a backend outage, say)
    /// is logged and replaced after a bounded backoff; it never ends the loop.
    async fn run(&self, ctx: Context, shutdown: CancellationToken) -> Result<(), ProcessorError> {
        runtime::supervise(self.name(), &shutdown, || self.session(&ctx, &shutdown)).await
    }
}
