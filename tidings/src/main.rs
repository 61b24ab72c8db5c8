//! `tidings`: one binary for every role.
//!
//! - `standalone`: the edge and every processor in one process, on the embedded log and store;
//! - `edge`: a Socket.IO edge on Kafka and Cassandra/Scylla;
//! - `processor <name>|all`: processors on Kafka and Cassandra/Scylla;
//! - `migrate`: creates the Kafka topics and the Cassandra keyspace and tables (idempotent;
//!   `--only kafka|cassandra` for one of them);
//! - `replay store`, `replay processor NAME`: the store rebuilt from the room log, or one
//!   processor run over history beside the live one (a backfill).

mod asyncapi;
mod config;
mod ops;
mod registry;

// glibc's malloc was ~12% of the edge's CPU under fan-out (BENCHMARKS.md, perf profile).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use config::Config;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tidings_edge::EdgeConfig;
use tidings_log::embedded::EmbeddedLog;
use tidings_log::kafka::KafkaLog;
use tidings_log::Log;
use tidings_processors::presence::PresenceConfig;
use tidings_processors::replay::{self, BackfillJob, ReplayStats, StartFrom};
use tidings_processors::{Context, ModerationConfig, Processor};
use tidings_store::cassandra::CassandraStore;
use tidings_store::embedded::EmbeddedStore;
use tidings_store::Store;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "tidings",
    version,
    about = "Durable real-time chat on a replayable log"
)]
struct Cli {
    /// A TOML config file; TIDINGS_* environment variables override it.
    #[arg(long, env = "TIDINGS_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process, on the embedded log and store in TIDINGS_DATA_DIR.
    Standalone,
    /// A Socket.IO edge on Kafka and Cassandra/Scylla.
    Edge,
    /// Run processors (a comma-separated list of sequencer, persistence, fanout, typing,
    /// presence, inbox, webhook) or `all`, on Kafka and Cassandra/Scylla. With TIDINGS_OPS_LISTEN,
    /// also serve /healthz, /readyz and /metrics there.
    Processor { name: String },
    /// Create the Kafka topics and the Cassandra keyspace and tables; safe to run again.
    /// Topics that exist already are left as they are.
    Migrate {
        /// Only the topics (kafka) or only the keyspace and tables (cassandra).
        #[arg(long, value_enum)]
        only: Option<Backend>,
    },
    /// Serve the Confluent Schema Registry API (read-only) for Tidings' schemas on
    /// TIDINGS_LISTEN, with /healthz, /readyz and /metrics.
    Registry,
    /// Rebuild what is derived from the log, from the log.
    Replay {
        #[command(subcommand)]
        command: ReplayCommand,
    },
    /// Tidings' Avro schemas: list them, or push them into another Schema Registry.
    Schemas {
        #[command(subcommand)]
        command: SchemasCommand,
    },
}

#[derive(Subcommand)]
enum ReplayCommand {
    /// Rebuild the store (history, inbox, read markers) from the whole room log. Idempotent;
    /// on Kafka and Cassandra (`tidings migrate` first if the keyspace is new), or with
    /// --embedded on the embedded log and store in TIDINGS_DATA_DIR (standalone stopped).
    Store {
        #[arg(long)]
        embedded: bool,
    },
    /// Run one processor over the room log's history beside the live one (a backfill), e.g.
    /// `webhook --endpoint NAME` for an endpoint added later; also persistence and inbox
    /// (idempotent writes). The sequencer, fanout, typing and presence refuse, saying why.
    /// Reads each partition from --from to the end it had when it began, with its own
    /// readers: the live group's offsets are never touched. Prints what it did and exits 0;
    /// SIGINT or SIGTERM stop it (exit 130: run it again to finish).
    Processor(BackfillArgs),
}

#[derive(clap::Args, Debug)]
struct BackfillArgs {
    /// webhook, persistence or inbox.
    name: String,
    /// `earliest`, milliseconds since the epoch, or an RFC 3339 time: each partition is read
    /// from its first record appended at or after it.
    #[arg(long, default_value = "earliest")]
    from: StartFrom,
    /// webhook only: deliver to this configured endpoint (by name), not every one.
    #[arg(long)]
    endpoint: Option<String>,
    /// On the embedded log and store in TIDINGS_DATA_DIR (standalone stopped).
    #[arg(long)]
    embedded: bool,
    /// Only print what it would read in each partition and where the live group's committed
    /// offset is.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Subcommand)]
enum SchemasCommand {
    /// Every subject (`<topic>-value`), version, id and file.
    List,
    /// The Kafka topics as an AsyncAPI 3 document (what asyncapi-kafka.yaml holds).
    Asyncapi,
    /// Register every schema under its Tidings id in the registry at URL: Confluent's API
    /// (through IMPORT mode), or Apicurio Registry (through its admin import, when
    /// `{root}/apis/registry/v2/system/info` says it is Apicurio). Fails, naming the subject
    /// and id, if the registry holds one of Tidings' ids with a different schema.
    Push {
        #[arg(long)]
        registry: String,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    Kafka,
    Cassandra,
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Cancelled on SIGINT or SIGTERM: processes drain and stop.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        cancel.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        cancel.cancel();
    });
    token
}

fn node_id(config: &Config, role: &str) -> String {
    if config.node_id.is_empty() {
        format!("{role}-{}", uuid::Uuid::new_v4().simple())
    } else {
        config.node_id.clone()
    }
}

fn edge_config(config: &Config, node: String) -> Result<EdgeConfig> {
    let mut edge = EdgeConfig::new(config.jwt_secret.clone());
    edge.listen = config.listen.parse().with_context(|| {
        format!(
            "TIDINGS_LISTEN must be address:port, got {:?}",
            config.listen
        )
    })?;
    edge.node = node;
    edge.max_text_chars = config.max_text;
    edge.dev_tokens = config.dev_tokens;
    edge.events_per_sec = config.rate_per_sec;
    edge.events_burst = config.rate_burst;
    edge.allowed_origins = config.allowed_origins.clone();
    let l = &config.limits;
    edge.max_out_bytes = l.max_out_bytes;
    edge.max_reply_bytes = l.max_reply_bytes;
    edge.max_payload_bytes = l.max_frame_bytes;
    edge.auth_timeout = std::time::Duration::from_millis(l.auth_timeout_ms);
    edge.request_head_timeout = std::time::Duration::from_millis(l.request_head_timeout_ms);
    edge.drain_timeout = std::time::Duration::from_millis(l.drain_timeout_ms);
    edge.max_conns_per_ip = l.max_conns_per_ip;
    edge.connects_per_sec_per_ip = l.connect_rate_per_ip;
    edge.connects_burst_per_ip = l.connect_burst_per_ip;
    edge.max_conns_per_user = l.max_conns_per_user;
    edge.user_events_per_sec = l.user_rate_per_sec;
    edge.user_events_burst = l.user_rate_burst;
    edge.service_tokens = config.service_tokens.clone();
    edge.jwt_public_key_files = config.jwt_public_keys.clone();
    edge.jwks = config.jwks();
    edge.jwt_issuers = config.jwt_issuer.clone();
    edge.jwt_audiences = config.jwt_audience.clone();
    edge.jwt_leeway_secs = config.jwt_leeway_secs;
    edge.max_token_lifetime = Duration::from_secs(config.jwt_max_lifetime_secs);
    edge.tls = config.tls_files()?;
    Ok(edge)
}

fn moderation(config: &Config) -> ModerationConfig {
    ModerationConfig {
        max_text_chars: config.max_text,
        blocked_terms: config.blocked_terms.clone(),
    }
}

fn webhooks(config: &Config) -> Result<tidings_processors::webhook::WebhookConfig> {
    // Checked when the config was loaded; this only repeats it.
    config.webhooks().map_err(anyhow::Error::msg)
}

fn presence(config: &Config) -> PresenceConfig {
    PresenceConfig {
        events_max: config.presence_events_max,
        ..PresenceConfig::default()
    }
}

/// Whether retrying cannot help: refused credentials, settings that can never work.
fn hopeless(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<tidings_log::LogError>(),
        Some(tidings_log::LogError::Unauthenticated(_))
    ) || matches!(
        e.downcast_ref::<tidings_store::StoreError>(),
        Some(tidings_store::StoreError::Config(_))
    )
}

/// Keeps trying to reach a backend: a process started before its backends waits for them.
/// A backend that refuses our credentials, or settings that cannot work, stop it at once.
async fn retry<T, F, Fut>(what: &str, shutdown: &CancellationToken, mut connect: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut delay = Duration::from_millis(200);
    loop {
        match connect().await {
            Ok(v) => return Ok(v),
            Err(e) if hopeless(&e) => return Err(e.context(format!("connecting to {what}"))),
            Err(e) => {
                tracing::warn!(error = %e, "{what} not reachable yet; retrying in {delay:?}");
                tokio::select! {
                    _ = shutdown.cancelled() => anyhow::bail!("stopped before {what} was reachable"),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn distributed_backends(
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<(Arc<dyn Log>, Arc<dyn Store>)> {
    let kafka = KafkaLog::connect(config.kafka())?;
    retry("Kafka", shutdown, || async {
        Ok(kafka.ping(Duration::from_secs(5)).await?)
    })
    .await?;
    let cassandra = config.cassandra();
    let store = retry("Cassandra", shutdown, || async {
        Ok(CassandraStore::connect(&cassandra).await?)
    })
    .await?;
    Ok((
        Arc::new(tidings_log::metered::Metered::new(Arc::new(kafka), "kafka")),
        Arc::new(tidings_store::metered::Metered::new(
            Arc::new(store),
            "cassandra",
        )),
    ))
}

/// Runs `processors` and, if given, an edge, until shutdown or until one of them fails.
async fn run(
    log: Arc<dyn Log>,
    store: Arc<dyn Store>,
    processors: Vec<Box<dyn Processor>>,
    edge: Option<EdgeConfig>,
    context: Context,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut tasks: JoinSet<Result<String>> = JoinSet::new();
    // With an edge in the process, processors stop only once the edge has drained: its
    // sends in progress need the sequencer to be acked.
    let processors_stop = if edge.is_some() {
        CancellationToken::new()
    } else {
        shutdown.clone()
    };
    if !processors.is_empty() {
        tokio::spawn(tidings_processors::health::sample_lag(
            log.clone(),
            processors_stop.clone(),
        ));
    }
    for processor in processors {
        let (context, shutdown) = (context.clone(), processors_stop.clone());
        tasks.spawn(async move {
            let name = processor.name();
            tracing::info!(processor = name, consumes = ?processor.consumes(), produces = ?processor.produces(), "starting");
            processor.run(context, shutdown).await.with_context(|| format!("processor {name}"))?;
            Ok(name.to_string())
        });
    }
    if let Some(edge) = edge {
        let (log, store, shutdown) = (log.clone(), store.clone(), shutdown.clone());
        let _stop_processors_after = processors_stop.clone().drop_guard();
        tasks.spawn(async move {
            let _stop_processors_after = _stop_processors_after;
            tidings_edge::serve(edge, log, store, shutdown)
                .await
                .context("edge")?;
            Ok("edge".to_string())
        });
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(name)) => tracing::info!("{name} stopped"),
            Ok(Err(e)) => {
                shutdown.cancel();
                return Err(e);
            }
            Err(e) => {
                shutdown.cancel();
                return Err(anyhow::anyhow!("a task panicked: {e}"));
            }
        }
    }
    Ok(())
}

/// The embedded log and store in TIDINGS_DATA_DIR, timed for /metrics.
async fn embedded_backends(config: &Config) -> Result<(Arc<dyn Log>, Arc<dyn Store>)> {
    let log = EmbeddedLog::open(&config.data_dir.join("log.redb"))
        .with_context(|| format!("opening the log in {}", config.data_dir.display()))?;
    log.ensure_topics(&config.topics()?).await?;
    let store = EmbeddedStore::open(&config.data_dir.join("store.redb"))
        .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    let log: Arc<dyn Log> = Arc::new(tidings_log::metered::Metered::new(
        Arc::new(log),
        "embedded",
    ));
    let store: Arc<dyn Store> = Arc::new(tidings_store::metered::Metered::new(
        Arc::new(store),
        "embedded",
    ));
    Ok((log, store))
}

/// The generated key of a standalone without TIDINGS_JWT_SECRET, made once per data dir.
fn dev_secret(data_dir: &std::path::Path) -> Result<String> {
    let path = data_dir.join("dev-jwt-secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        if !secret.trim().is_empty() {
            return Ok(secret.trim().to_string());
        }
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    write_private(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

/// Writes a file only its owner can read: it holds a signing key.
fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

async fn standalone(mut config: Config, shutdown: CancellationToken) -> Result<()> {
    if !config.has_token_keys() {
        // A new user's first run: no key configured, so make one and let the page get
        // tokens from /dev/token. It is kept in the data dir so tokens survive a restart.
        // Configure TIDINGS_JWT_SECRET for anything real.
        config.jwt_secret = dev_secret(&config.data_dir)?;
        config.dev_tokens = true;
        tracing::warn!(
            "TIDINGS_JWT_SECRET is not set: using a generated key and serving POST /dev/token"
        );
    }
    let (log, store) = embedded_backends(&config).await?;
    // Stable across restarts (unless configured): metric series keep their label, and the
    // edge's start record tells presence that every connection of the previous run is gone.
    let node = if config.node_id.is_empty() {
        "standalone".to_string()
    } else {
        config.node_id.clone()
    };
    let mut edge = edge_config(&config, node.clone())?;
    // A page opened from a local dev server (another port) is the usual first try.
    edge.allow_loopback_origins = true;
    println!(
        "Tidings standalone: {}://{} (data in {})",
        if edge.tls.is_some() { "https" } else { "http" },
        edge.listen,
        config.data_dir.display()
    );
    let context = Context {
        log: log.clone(),
        store: store.clone(),
        node,
        moderation: moderation(&config),
        presence: presence(&config),
        webhooks: webhooks(&config)?,
        presend: config.presend(),
    };
    run(
        log,
        store,
        tidings_processors::registry(),
        Some(edge),
        context,
        shutdown,
    )
    .await
}

async fn edge(config: Config, shutdown: CancellationToken) -> Result<()> {
    anyhow::ensure!(
        config.has_token_keys(),
        "an edge needs a key for client tokens: TIDINGS_JWT_SECRET, TIDINGS_JWT_PUBLIC_KEYS or TIDINGS_JWKS_URL"
    );
    let (log, store) = distributed_backends(&config, &shutdown).await?;
    let node = node_id(&config, "edge");
    let edge = edge_config(&config, node.clone())?;
    tracing::info!(node = %node, listen = %edge.listen, "edge starting");
    let context = Context {
        log: log.clone(),
        store: store.clone(),
        node,
        moderation: moderation(&config),
        presence: presence(&config),
        webhooks: webhooks(&config)?,
        presend: config.presend(),
    };
    run(log, store, Vec::new(), Some(edge), context, shutdown).await
}

async fn processor(config: Config, names: &str, shutdown: CancellationToken) -> Result<()> {
    let processors = if names == "all" {
        tidings_processors::registry()
    } else {
        let known: Vec<&str> = tidings_processors::registry()
            .iter()
            .map(|p| p.name())
            .collect();
        names
            .split(',')
            .map(|name| {
                tidings_processors::by_name(name.trim()).with_context(|| {
                    format!(
                        "unknown processor {name:?}; known: {}, or all",
                        known.join(", ")
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?
    };
    let (log, store) = distributed_backends(&config, &shutdown).await?;
    let context = Context {
        log: log.clone(),
        store: store.clone(),
        node: node_id(&config, "processor"),
        moderation: moderation(&config),
        presence: presence(&config),
        webhooks: webhooks(&config)?,
        presend: config.presend(),
    };
    if let Some(addr) = &config.ops_listen {
        let names = processors.iter().map(|p| p.name()).collect();
        let (log, store, shutdown) = (log.clone(), store.clone(), shutdown.clone());
        let addr = addr.clone();
        tokio::spawn(async move {
            if let Err(error) = ops::serve(&addr, names, log, store, shutdown.clone()).await {
                // Without its probes the process is useless to an orchestrator: stop.
                tracing::error!("{error:#}");
                shutdown.cancel();
            }
        });
    }
    run(log, store, processors, None, context, shutdown).await
}

async fn migrate(config: Config, only: Option<Backend>, shutdown: CancellationToken) -> Result<()> {
    if only != Some(Backend::Cassandra) {
        let kafka = KafkaLog::connect(config.kafka())?;
        retry("Kafka", &shutdown, || async {
            Ok(kafka.ping(Duration::from_secs(5)).await?)
        })
        .await?;
        let topics = config.topics()?;
        kafka
            .ensure_topics(&topics)
            .await
            .context("creating Kafka topics")?;
        println!("migrated: {} Kafka topics", topics.len());
    }
    if only != Some(Backend::Kafka) {
        let cassandra = config.cassandra();
        retry("Cassandra", &shutdown, || async {
            Ok(CassandraStore::migrate(&cassandra).await?)
        })
        .await?;
        println!("migrated: Cassandra keyspace {}", cassandra.keyspace);
    }
    Ok(())
}

/// What a replay ends with: 0 when done, 130 when a signal stopped it first.
const INTERRUPTED: u8 = 130;

fn replay_exit(stats: &ReplayStats) -> ExitCode {
    if stats.interrupted {
        eprintln!(
            "interrupted before the end: run it again to finish (what was done is not undone, \
             and doing it again changes nothing)"
        );
        ExitCode::from(INTERRUPTED)
    } else {
        ExitCode::SUCCESS
    }
}

async fn replay_backends(
    config: &Config,
    embedded: bool,
    shutdown: &CancellationToken,
) -> Result<(Arc<dyn Log>, Arc<dyn Store>)> {
    if embedded {
        embedded_backends(config).await
    } else {
        distributed_backends(config, shutdown).await
    }
}

async fn replay_store(
    config: Config,
    embedded: bool,
    shutdown: CancellationToken,
) -> Result<ExitCode> {
    let (log, store) = replay_backends(&config, embedded, &shutdown).await?;
    let stats = replay::rebuild_store(log, store, shutdown).await?;
    println!(
        "replayed {} room-log records in {:.1} s: {} messages, {} read markers, {} undecodable",
        stats.records, stats.seconds, stats.messages, stats.read_markers, stats.undecodable
    );
    Ok(replay_exit(&stats))
}

/// `tidings replay processor`: refused or checked before any backend is opened.
async fn replay_processor(
    config: Config,
    args: BackfillArgs,
    shutdown: CancellationToken,
) -> Result<ExitCode> {
    let BackfillArgs {
        name,
        from,
        endpoint,
        embedded,
        dry_run,
    } = args;
    let processor = tidings_processors::by_name(&name).with_context(|| {
        let known: Vec<&str> = tidings_processors::registry()
            .iter()
            .map(|p| p.name())
            .collect();
        format!("unknown processor {name:?}; known: {}", known.join(", "))
    })?;
    let job = BackfillJob { from, endpoint };
    replay::check(&*processor, &job, &webhooks(&config)?)?;
    let (log, store) = replay_backends(&config, embedded, &shutdown).await?;
    let context = Context {
        log,
        store,
        node: node_id(&config, "replay"),
        moderation: moderation(&config),
        presence: presence(&config),
        webhooks: webhooks(&config)?,
        presend: config.presend(),
    };
    if dry_run {
        let plan = replay::dry_run(&*processor, &context, &job).await?;
        for line in plan_lines(&name, &job, &plan) {
            println!("{line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let stats = replay::backfill(&*processor, &context, &job, &shutdown).await?;
    println!("{}", backfill_summary(&name, &job, &stats));
    Ok(replay_exit(&stats))
}

/// The dry run's report: the stretch of each partition, and the live group's position.
fn plan_lines(name: &str, job: &BackfillJob, plan: &replay::DryRun) -> Vec<String> {
    let offsets: i64 = plan.partitions.iter().map(|(s, _)| s.end - s.start).sum();
    let mut lines = vec![format!(
        "{name} from {}: {offsets} room-log offsets to read (dry run: nothing done)",
        job.from
    )];
    for (stretch, live) in &plan.partitions {
        let live = live.map_or_else(|| "none".to_string(), |offset| offset.to_string());
        lines.push(format!(
            "partition {}: offsets {}..{}; live group {} committed {live}",
            stretch.partition, stretch.start, stretch.end, plan.live_group
        ));
    }
    lines
}

/// One line: what was read, by kind, how fast, and what the processor did with it.
fn backfill_summary(name: &str, job: &BackfillJob, stats: &ReplayStats) -> String {
    let kinds: Vec<String> = stats
        .kinds
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let outcome = match name {
        "webhook" => format!(
            "delivered {}, dead-lettered {}, failed attempts {}",
            stats.delivered, stats.dead_lettered, stats.failed_attempts
        ),
        "persistence" => format!("{} messages stored", stats.messages),
        _ => format!(
            "{} messages indexed, {} read markers",
            stats.messages, stats.read_markers
        ),
    };
    format!(
        "backfilled {name} from {}: {} room-log records in {:.1} s ({:.0} records/s); by kind: {}; \
         undecodable {}; {outcome}",
        job.from,
        stats.records,
        stats.seconds,
        stats.rate(),
        if kinds.is_empty() { "none".to_string() } else { kinds.join(", ") },
        stats.undecodable,
    )
}

#[tokio::main]
async fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref(), |k| std::env::var(k).ok())?;
    init_logging(&config);
    if config
        .kafka_security()
        .is_ok_and(|s| s.sends_password_in_clear())
    {
        tracing::warn!("Kafka SASL PLAIN over SASL_PLAINTEXT sends the password unencrypted: use SASL_SSL or SCRAM");
    }
    ops::register_process_metrics();
    let shutdown = shutdown_on_signal();
    let done = match cli.command {
        Command::Standalone => standalone(config, shutdown).await,
        Command::Edge => edge(config, shutdown).await,
        Command::Processor { name } => processor(config, &name, shutdown).await,
        Command::Migrate { only } => migrate(config, only, shutdown).await,
        Command::Registry => registry::serve(&config.listen, shutdown).await,
        // Replays say with their exit code whether they finished.
        Command::Replay {
            command: ReplayCommand::Store { embedded },
        } => return replay_store(config, embedded, shutdown).await,
        Command::Replay {
            command: ReplayCommand::Processor(args),
        } => return replay_processor(config, args, shutdown).await,
        Command::Schemas { command } => match command {
            SchemasCommand::List => {
                registry::listing()
                    .iter()
                    .for_each(|line| println!("{line}"));
                Ok(())
            }
            SchemasCommand::Push { registry: url } => Ok(registry::push(&url).await?),
            SchemasCommand::Asyncapi => {
                print!("{}", asyncapi::kafka_document());
                Ok(())
            }
        },
    };
    done.map(|()| ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn backfill(args: &[&str]) -> Result<BackfillArgs, clap::Error> {
        let argv = ["tidings", "replay", "processor"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Replay {
                command: ReplayCommand::Processor(args),
            } => Ok(args),
            _ => panic!("not a processor replay"),
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn backfill_arguments_parse() {
        let a = backfill(&[
            "webhook",
            "--endpoint",
            "search",
            "--from",
            "2026-12-03T10:00:00Z",
        ])
        .expect("parses");
        assert_eq!(a.name, "webhook");
        assert_eq!(a.endpoint.as_deref(), Some("search"));
        assert_eq!(a.from, StartFrom::Time(1_796_292_000_000));
        assert!(!a.embedded && !a.dry_run);

        let b = backfill(&["persistence", "--embedded", "--dry-run"]).expect("parses");
        assert_eq!(b.from, StartFrom::Earliest, "from the beginning by default");
        assert!(b.embedded && b.dry_run && b.endpoint.is_none());

        let c = backfill(&["inbox", "--from", "1796292000000"]).expect("parses");
        assert_eq!(c.from, StartFrom::Time(1_796_292_000_000));

        let bad = backfill(&["webhook", "--from", "last tuesday"]).unwrap_err();
        assert!(bad.to_string().contains("RFC 3339"), "{bad}");
        assert!(backfill(&[]).is_err(), "the processor is named");
        assert!(backfill(&["webhook", "--bogus"]).is_err());
    }

    #[test]
    fn the_summary_says_what_was_read_and_done() {
        let mut stats = ReplayStats {
            records: 12,
            delivered: 10,
            failed_attempts: 3,
            seconds: 2.0,
            ..ReplayStats::default()
        };
        stats.kinds.insert("message".into(), 10);
        stats.kinds.insert("host".into(), 2);
        let job = BackfillJob {
            from: StartFrom::Earliest,
            endpoint: None,
        };
        assert_eq!(
            backfill_summary("webhook", &job, &stats),
            "backfilled webhook from earliest: 12 room-log records in 2.0 s (6 records/s); \
             by kind: host 2, message 10; undecodable 0; delivered 10, dead-lettered 0, \
             failed attempts 3"
        );
        stats.messages = 10;
        assert!(backfill_summary("persistence", &job, &stats).ends_with("; 10 messages stored"));
    }
}
