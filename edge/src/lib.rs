//! The edge: a thin Socket.IO server. It checks tokens, validates, applies limits, appends
//! client events to the log, and passes back what the processors deliver to it. It keeps no
//! state that matters: rooms and pending replies are rebuilt by clients reconnecting.
//!
//! Entry points: [`serve`] (binds `config.listen`) and [`serve_on`] (an already-bound
//! listener, e.g. port 0 in tests).

mod admin;
mod admission;
pub mod auth;
mod catchup;
mod compact;
pub mod config;
mod conn;
mod deliveries;
pub mod errors;
mod expiry;
mod handlers;
mod http;
pub mod jwks;
pub mod keys;
pub mod limits;
mod listener;
pub mod metrics;
mod order;
pub mod permissions;
mod presence;
pub mod protocol;
mod publish;
mod refresh;
mod revocations;
mod rooms;
mod state;
mod users;
mod wire;

pub use config::EdgeConfig;
pub use errors::{ClientError, EdgeError};
pub use http::backends_ready;

use socketioxide::{ParserConfig, SocketIo};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tidings_log::{partition_for, topics, Log};
use tidings_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves on `config.listen` until `shutdown` is cancelled.
pub async fn serve(
    config: EdgeConfig,
    log: Arc<dyn Log>,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    let listener = TcpListener::bind(config.listen).await?;
    serve_on(listener, config, log, store, shutdown).await
}

/// Serves on `listener` until `shutdown` is cancelled (`config.listen` is ignored).
pub async fn serve_on(
    listener: TcpListener,
    config: EdgeConfig,
    log: Arc<dyn Log>,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    if config.node.is_empty() || config.node.len() > tidings_log::MAX_KEY_BYTES {
        return Err(EdgeError::Config("node must be 1 to 256 bytes".into()));
    }
    if config.jwt_secret.is_empty()
        && config.jwt_public_key_files.is_empty()
        && config.jwks.is_none()
    {
        return Err(EdgeError::Config(
            "no key for client tokens: set a JWT secret, public keys or a JWKS URL".into(),
        ));
    }
    if config.jwt_leeway_secs > auth::MAX_LEEWAY_SECS {
        return Err(EdgeError::Config(format!(
            "the JWT leeway must be at most {} s",
            auth::MAX_LEEWAY_SECS
        )));
    }
    let (verifier, jwks) = verifier(&config)?;
    let mut revocation_followers = revocations::open(&*log).await?;
    let partitions = log.partitions(topics::DELIVERIES).await?;
    let partition = partition_for(&config.node, partitions);
    let start = log.end_offset(topics::DELIVERIES, partition).await?;
    let reader = log.reader(topics::DELIVERIES, partition, start).await?;

    let shared = Arc::new(state::Shared {
        metrics: metrics::Metrics::new(&config.node)?,
        verifier,
        rooms: rooms::Rooms::default(),
        pending: deliveries::Pending::default(),
        users: users::Users::default(),
        admission: admission::Admission::new(&config),
        origins: admission::OriginPolicy::new(&config),
        sessions: Arc::new(wire::Sessions::default()),
        delivery_partition: partition,
        delivery_position: AtomicI64::new(start),
        draining: AtomicBool::new(false),
        in_progress: AtomicUsize::new(0),
        publishing: publish::Publishing::default(),
        expiry: expiry::Expiry::default(),
        revocations: revocations::Revocations::default(),
        admin_requests: admin::AdminRequests::default(),
        config,
        log,
        store,
    });

    let max_payload = usize::try_from(shared.config.max_payload_bytes).unwrap_or(usize::MAX);
    // Clients never send binary attachments (every event is JSON): a binary packet closes
    // the connection at once instead of being collected, authenticated or not.
    let parser = ParserConfig::common()
        .max_incoming_binaries(0)
        .max_incoming_binary_buf_size(0)
        .packet_completion_timeout(Duration::from_secs(1));
    let (layer, io) = SocketIo::builder()
        .with_parser(parser)
        .max_buffer_size(shared.config.max_buffer_packets)
        .max_payload(shared.config.max_payload_bytes)
        // Refused from the frame header, before the frame is read.
        .ws_max_frame_size(max_payload)
        .ws_max_message_size(max_payload)
        .ws_read_buffer_size(shared.config.ws_read_buffer_bytes)
        .connect_timeout(shared.config.auth_timeout)
        .build_layer();
    handlers::register(&io, shared.clone());
    // Before the first connection: a revoked user must not slip in while the edge starts.
    revocations::load(&shared, &mut revocation_followers).await?;

    presence::started(&shared)
        .await
        .map_err(|e| EdgeError::Config(format!("cannot reach the presence topic: {e}")))?;
    // Not a child of `shutdown`: acks must keep coming in while the edge drains.
    let tasks = CancellationToken::new();
    let consumer = tokio::spawn(deliveries::consume(shared.clone(), reader, tasks.clone()));
    let heartbeat = tokio::spawn(presence::heartbeat(shared.clone(), tasks.clone()));
    let sampler = tokio::spawn(deliveries::sample_lag(shared.clone(), tasks.clone()));
    let sweeper = tokio::spawn(expiry::sweep(shared.clone(), tasks.clone()));
    let followers: Vec<_> = revocation_followers
        .into_iter()
        .map(|f| tokio::spawn(revocations::follow(shared.clone(), f, tasks.clone())))
        .collect();
    let jwks_task = jwks.map(|j| tokio::spawn(j.run(tasks.clone())));

    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(
        node = %shared.config.node,
        addr = %addr,
        partition,
        "edge serving"
    );
    let app = http::router(shared.clone()).layer(layer);
    // Drain: not ready, no new connections, no new requests; requests in progress (sends
    // awaiting their ack) finish, bounded; then the transports close, which stock clients
    // take as a cue to reconnect (to another edge behind the load balancer).
    let stop = (shutdown.clone(), shared.clone());
    listener::serve(listener, app, shared.clone(), async move {
        stop.0.cancelled().await;
        stop.1.draining.store(true, Ordering::Release);
    })
    .await;
    drain(&shared).await;
    io.close().await;
    tasks.cancel();
    let _ = consumer.await;
    let _ = sampler.await;
    let _ = heartbeat.await;
    let _ = sweeper.await;
    for follower in followers {
        let _ = follower.await;
    }
    if let Some(task) = jwks_task {
        let _ = task.await;
    }
    Ok(())
}

/// The token verifier the settings describe, and the JWKS it fetches from, if any.
fn verifier(config: &EdgeConfig) -> Result<(auth::Verifier, Option<Arc<jwks::Jwks>>), EdgeError> {
    let mut public = Vec::new();
    for path in &config.jwt_public_key_files {
        let pem = std::fs::read(path)
            .map_err(|e| EdgeError::Config(format!("reading {}: {e}", path.display())))?;
        let key = keys::PublicKey::from_pem(&pem)
            .map_err(|e| EdgeError::Config(format!("{}: {e}", path.display())))?;
        public.push(key);
    }
    let jwks = match &config.jwks {
        Some(jwks_config) => {
            let source =
                jwks::HttpSource::new(jwks_config).map_err(|e| EdgeError::Config(e.to_string()))?;
            Some(Arc::new(jwks::Jwks::new(
                jwks_config.clone(),
                Box::new(source),
            )))
        }
        None => None,
    };
    let keys = auth::Keys {
        secret: Some(config.jwt_secret.clone()),
        public,
        jwks: jwks.clone(),
    };
    let rules = auth::Rules {
        leeway_secs: config.jwt_leeway_secs,
        issuers: config.jwt_issuers.clone(),
        audiences: config.jwt_audiences.clone(),
        max_lifetime_secs: Some(config.max_token_lifetime.as_secs()),
    };
    Ok((auth::Verifier::with(keys, rules), jwks))
}

/// Waits, at most `drain_timeout`, until no request is in progress on this edge.
async fn drain(shared: &state::Shared) {
    let deadline = tokio::time::Instant::now() + shared.config.drain_timeout;
    let mut left = shared.in_progress.load(Ordering::Acquire);
    while left > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = shared.in_progress.load(Ordering::Acquire);
    }
    tracing::info!(left, "drained; closing connections");
}
