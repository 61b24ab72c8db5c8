//! The accept loop: HTTP/1.1 with upgrades on every accepted connection, TCP_NODELAY set,
//! until shutdown. Hand-rolled rather than `axum::serve` so the per-connection HTTP settings
//! (read buffer bound, header timeout) are ours: most connections are idle WebSockets, and
//! what each one costs is set here. It is also where a connection is first seen, so the
//! per-address caps, the Origin check and the byte counting of each connection start here.
//! With TLS, the handshake runs in the connection's own task after those checks, bounded by
//! the request-head timeout, so a slow or failed handshake costs only its own connection.

use crate::compact;
use crate::state::Shared;
use crate::wire::{Counted, Wire};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// The largest request head hyper buffers (its minimum is 8 KiB).
pub const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;

/// What a refused TCP connection is told before it is closed.
const TOO_MANY: &[u8] =
    b"HTTP/1.1 429 Too Many Requests\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// Serves `app` on `listener` until `shutdown` completes, over TLS with `tls`. A client that
/// has not finished the TLS handshake, or sent a whole request head, within the head timeout
/// is disconnected (a stalled handshake holds a socket), and so is a connection with no
/// authenticated client on it after the auth timeout.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_buf_size(MAX_REQUEST_HEAD_BYTES)
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.request_head_timeout);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: back off rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match shared.admission.accept(peer.ip()) {
            Ok(slot) => slot,
            Err(reason) => {
                tracing::debug!(%peer, reason, "refusing connection");
                shared
                    .metrics
                    .refused
                    .with_label_values(&["address_limit"])
                    .inc();
                refuse(tcp);
                continue;
            }
        };
        // Small frames (acks, messages) must leave at once: with Nagle on, an ack written
        // behind another frame waits for the client's delayed ACK (40 ms on Linux).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
        let wire = Wire::new(slot, shared.sessions.clone());
        // Under TLS, so the auth deadline covers the handshake and the bytes counted are
        // the ones that really left (rustls holds at most 64 KiB of its own per connection).
        let io = Counted::new(tcp, wire.clone(), shared.config.auth_timeout);
        let app = app.clone();
        let shared_for_requests = shared.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let app = app.clone();
            let shared = shared_for_requests.clone();
            let wire = wire.clone();
            async move {
                let mut req = match compact::detached(req) {
                    Ok(req) => req,
                    Err(status) => return Ok(status.into_response()),
                };
                if req.uri().path().starts_with("/socket.io") {
                    if let Err(status) = shared.origins.check(req.headers()) {
                        shared.metrics.refused.with_label_values(&["origin"]).inc();
                        return Ok(status.into_response());
                    }
                    shared.sessions.attach(req.uri().query(), &wire);
                }
                req.extensions_mut().insert(wire);
                app.oneshot(req).await
            }
        });
        let Some(tls) = tls.clone() else {
            let conn = http
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "http connection ended");
                }
            });
            continue;
        };
        let (http, shared) = (http.clone(), shared.clone());
        tokio::spawn(async move {
            let handshake =
                tokio::time::timeout(shared.config.request_head_timeout, tls.accept(io));
            let stream = match handshake.await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    // Plain HTTP on this port, an untrusted certificate, a scanner.
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    shared.metrics.refused.with_label_values(&["tls"]).inc();
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    shared.metrics.refused.with_label_values(&["tls"]).inc();
                    return;
                }
            };
            let conn = http
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "https connection ended");
            }
        });
    }
}

/// Tells a refused client why, without waiting on it, and closes.
fn refuse(tcp: TcpStream) {
    // Best effort: a client that does not read its socket just gets the close.
    let _ = tcp.try_write(TOO_MANY);
    drop(tcp);
}
