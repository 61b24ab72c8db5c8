//! What operators see of a process: `process_*` and `tidings_build_info` in every process's
//! `/metrics`, and, for `tidings processor`, an HTTP server of its own (the edge serves its
//! own): `/healthz` (alive), `/readyz` (every processor has its consumer and the log and the
//! store take writes), `/metrics` (Prometheus's default registry, where processors keep
//! theirs).

use anyhow::{Context as _, Result};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, IntGaugeVec, Opts, TextEncoder};
use std::sync::Arc;
use tidings_log::Log;
use tidings_store::Store;
use tokio_util::sync::CancellationToken;

/// Registers `tidings_build_info` in the default registry (which the `process` feature of
/// the prometheus crate gives `process_*` by itself). Call once, at start.
pub fn register_process_metrics() {
    let info = IntGaugeVec::new(
        Opts::new("tidings_build_info", "The running build: always 1"),
        &["version"],
    );
    match info {
        Ok(info) => {
            info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
            if let Err(error) = prometheus::register(Box::new(info)) {
                tracing::warn!(%error, "build info not registered");
            }
        }
        Err(error) => tracing::warn!(%error, "build info not created"),
    }
}

/// `/healthz`, `/readyz` and `/metrics` of a process that needs no backend to do its job
/// (the schema registry): ready as soon as it serves.
pub fn probes() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
        .route("/metrics", get(metrics))
}

struct Ops {
    processors: Vec<&'static str>,
    log: Arc<dyn Log>,
    store: Arc<dyn Store>,
}

/// Serves `/healthz`, `/readyz` and `/metrics` for `processors` on `addr` until `shutdown`.
pub async fn serve(
    addr: &str,
    processors: Vec<&'static str>,
    log: Arc<dyn Log>,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "ops endpoints listening");
    let state = Arc::new(Ops {
        processors,
        log,
        store,
    });
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("ops server")
}

async fn readyz(State(ops): State<Arc<Ops>>) -> Response {
    let waiting: Vec<&str> = ops
        .processors
        .iter()
        .copied()
        .filter(|p| !tidings_processors::health::is_ready(p))
        .collect();
    if !waiting.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: no consumer yet for {}", waiting.join(", ")),
        )
            .into_response();
    }
    tidings_edge::backends_ready(&*ops.log, &*ops.store).await
}

async fn metrics() -> Response {
    let mut out = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&prometheus::gather(), &mut out) {
        return (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
