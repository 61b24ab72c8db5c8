//! Plain HTTP on the Socket.IO port: health, readiness, metrics, the chat page, dev tokens.

use crate::auth::{mint, now_secs, Claims};
use crate::state::Shared;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tidings_log::Log;
use tidings_schemas::text::check_identity;
use tidings_store::Store;

const INDEX_HTML: &str = include_str!("../static/index.html");
const APP_JS: &str = include_str!("../static/app.js");
const APP_CSS: &str = include_str!("../static/app.css");
/// The page loads only its own scripts, styles and connections, and no other site may frame
/// it (clickjacking) or learn from its Referer where a user chats.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";
const SOCKET_IO_JS: &str = include_str!("../static/socket.io.min.js");
/// Dev tokens last a day, unless the edge accepts less.
const DEV_TOKEN_TTL_SECS: u64 = 24 * 60 * 60;

/// The HTTP routes (the Socket.IO layer is added by the caller).
pub fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/app.css", get(app_css))
        .route("/socket.io.min.js", get(socket_io_js));
    if shared.config.dev_tokens {
        router = router.route("/dev/token", post(dev_token));
    }
    router = router.route(
        "/api/admin/revoke",
        post(crate::admin::revoke).layer(axum::extract::DefaultBodyLimit::max(
            crate::admin::MAX_BODY_BYTES,
        )),
    );
    if shared.config.service_tokens.iter().any(|t| !t.is_empty()) {
        router = router.route(
            "/api/publish",
            post(crate::publish::publish).layer(axum::extract::DefaultBodyLimit::max(
                shared.config.max_event_bytes,
            )),
        );
    }
    router
        .layer(axum::middleware::map_response(security_headers))
        .with_state(shared)
}

/// Headers every HTTP answer carries (Socket.IO's own are added outside this router).
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn healthz() -> &'static str {
    "ok"
}

/// 200 while the log and the store can both take writes, 503 otherwise (Kafka or Cassandra
/// out of reach, a full disk under the embedded backends). Each check is one round trip at
/// most, and both run at once, so probing every few seconds costs little.
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.draining.load(std::sync::atomic::Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: shutting down").into_response();
    }
    backends_ready(&*shared.log, &*shared.store).await
}

/// `/readyz` of any process on the log and the store: 200 while both take writes, else 503
/// with the reason. Both checks run at once, within 3 s.
pub async fn backends_ready(log: &dyn Log, store: &dyn Store) -> Response {
    let check = async {
        let (log, store) = tokio::join!(log.writable(), store.writable());
        log.map_err(|e| e.to_string())?;
        store.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    };
    match tokio::time::timeout(Duration::from_secs(3), check).await {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "not ready: timed out").into_response(),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
        .into_response()
}

async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

async fn app_js() -> Response {
    ([(header::CONTENT_TYPE, "application/javascript")], APP_JS).into_response()
}

async fn app_css() -> Response {
    ([(header::CONTENT_TYPE, "text/css")], APP_CSS).into_response()
}

async fn socket_io_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/javascript"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        SOCKET_IO_JS,
    )
        .into_response()
}

#[derive(Deserialize)]
struct TokenRequest {
    name: String,
    /// Development only: the `role` and `rooms` claims to put in the token, so the page
    /// and tests can act as a moderator or a restricted user.
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    rooms: Option<Vec<String>>,
    /// How long the token lasts, in seconds (default a day): short ones to try `refresh`
    /// and expiry.
    #[serde(default)]
    ttl_secs: Option<u64>,
}

async fn dev_token(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<TokenRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(req)) = body else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "body must be {name}"})),
        )
            .into_response();
    };
    let name = req.name.trim().to_string();
    if name.chars().count() > 64 || check_identity(&name).is_err() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "name must be 1 to 64 visible characters"})),
        )
            .into_response();
    }
    // Never longer than the edge accepts (`TIDINGS_JWT_MAX_LIFETIME_SECS`).
    let longest = DEV_TOKEN_TTL_SECS.min(shared.config.max_token_lifetime.as_secs());
    let ttl = req.ttl_secs.unwrap_or(longest);
    if !(1..=longest).contains(&ttl) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": format!("ttl_secs must be 1 to {longest}") })),
        )
            .into_response();
    }
    let claims = Claims {
        name: Some(name.clone()),
        role: req.role,
        rooms: req.rooms,
        ..Claims::new(name, now_secs() + ttl)
    };
    if let Err(e) = claims.access() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": e.to_string() })),
        )
            .into_response();
    }
    match mint(&shared.config.jwt_secret, &claims) {
        Ok(token) => Json(json!({ "token": token, "exp": claims.exp })).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}
