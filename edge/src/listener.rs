//! The accept loop: HTTP/1.1 with upgrades on every accepted connection, TCP_NODELAY set,
//! until shutdown. Hand-rolled rather than `axum::serve` so the per-connection HTTP settings
//! (read buffer bound, header timeout) are ours: most connections are idle WebSockets, and
//! what each one costs is set here.

use crate::compact;
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// The largest request head hyper buffers (its minimum is 8 KiB).
pub const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;

/// Serves `app` on `listener` until `shutdown` completes. A client that has not sent a whole
/// request head within `head_timeout` is disconnected (a stalled handshake holds a socket).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    head_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_buf_size(MAX_REQUEST_HEAD_BYTES)
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors, most likely: back off rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Small frames (acks, messages) must leave at once: with Nagle on, an ack written
        // behind another frame waits for the client's delayed ACK (40 ms on Linux).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let app = app.clone();
            async move {
                match compact::detached(req) {
                    Ok(req) => app.oneshot(req).await,
                    Err(status) => Ok(status.into_response()),
                }
            }
        });
        let conn = http
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "http connection ended");
            }
        });
    }
}
