//! `POST /api/publish`: bots and services post into a room over plain HTTP.
//!
//! `Authorization: Bearer <token>`, where the token is one of the edge's configured service
//! tokens (`TIDINGS_SERVICE_TOKENS`; several, so one can be rotated without downtime). Body
//! `{room, id, text, user?}`: validated exactly like a Socket.IO `send` (room name, id, text
//! limits, a direct-message room only for one of its two users), appended the same way, and
//! answered `{ok: true, seq, ts}` once the sequencer's durable ack came, or
//! `{ok: false, error: {code, message}}` with the same codes as the protocol's. `user`
//! defaults to `service`. No membership is needed, and retries with the same `id` get the
//! first seq (G4).

use crate::errors::{ok_ack, ClientError};
use crate::handlers::{append_send, client_event};
use crate::limits::{check_event_size, check_text};
use crate::protocol::{self, approx_json_size};
use crate::state::Shared;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tidings_schemas::text::check_identity;

/// Who a publish speaks as when its body names no `user`.
pub const DEFAULT_USER: &str = "service";
/// Publishes awaiting their ack on one edge (G7); more → `rate_limited` (429).
pub const MAX_IN_FLIGHT: usize = 256;

/// Publishes in progress on this edge.
#[derive(Default)]
pub struct Publishing(AtomicUsize);

pub async fn publish(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    shared.metrics.event_in("publish");
    let result = handle(&shared, &headers, body).await;
    match result {
        Ok((seq, ts)) => Json(ok_ack(json!({ "seq": seq, "ts": ts }))).into_response(),
        Err(e) => {
            shared.metrics.error(e.code());
            (status(&e), Json(e.to_ack())).into_response()
        }
    }
}

async fn handle(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<(i64, i64), ClientError> {
    authorize(&shared.config.service_tokens, headers)?;
    let in_flight = shared.publishing.0.fetch_add(1, Ordering::AcqRel);
    let _slot = Slot(&shared.publishing.0);
    shared.in_progress.fetch_add(1, Ordering::AcqRel);
    let _edge_slot = Slot(&shared.in_progress);
    if shared.draining.load(Ordering::Acquire) {
        return Err(ClientError::unavailable("this edge is shutting down"));
    }
    if in_flight >= MAX_IN_FLIGHT {
        return Err(ClientError::TooManyPending);
    }
    let Ok(Json(data)) = body else {
        return Err(ClientError::invalid(
            "body must be JSON {room, id, text, user?} with Content-Type: application/json",
        ));
    };
    check_event_size(approx_json_size(&data), shared.config.max_event_bytes)?;
    let req = protocol::parse_send(&data)?;
    let user = match data.get("user") {
        None | Some(Value::Null) => DEFAULT_USER.to_string(),
        Some(Value::String(u)) => {
            check_identity(u).map_err(|e| ClientError::invalid(format!("user {e}")))?;
            u.clone()
        }
        Some(_) => return Err(ClientError::invalid("user must be a string")),
    };
    if !tidings_schemas::rooms::may_access(&req.room, &user) {
        return Err(ClientError::Forbidden(format!(
            "{} is a direct-message room of two other users",
            req.room
        )));
    }
    let text = check_text(&req.text, shared.config.max_text_chars)?;
    let mut ev = client_event(shared, "send", None, Some(&req.room));
    ev.user = Some(user);
    // The sequencer's ack comes back addressed to this "connection": the request.
    ev.conn = format!("api-{}", uuid::Uuid::new_v4().simple());
    ev.client_id = Some(req.id);
    ev.text = Some(text);
    append_send(shared, ev, None).await
}

/// `unauthorized` unless the request carries one of `tokens` as a bearer token.
fn authorize(tokens: &[String], headers: &HeaderMap) -> Result<(), ClientError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    // Every token is compared, in constant time, so timing tells nothing about any of them.
    let matched = tokens.iter().fold(false, |found, t| {
        same(t.as_bytes(), given.as_bytes()) | found
    });
    if given.is_empty() || !matched {
        return Err(ClientError::Unauthorized(
            "a service token is required: Authorization: Bearer <token>".into(),
        ));
    }
    Ok(())
}

/// Equal bytes, in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The HTTP status of an error code.
pub(crate) fn status(e: &ClientError) -> StatusCode {
    match e.code() {
        "unauthorized" => StatusCode::UNAUTHORIZED,
        "invalid" => StatusCode::BAD_REQUEST,
        "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        "forbidden" => StatusCode::FORBIDDEN,
        "rejected" => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Gives back one unit of an in-progress count when dropped.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn only_a_configured_bearer_token_passes() {
        let tokens = vec!["old-token".to_string(), "new-token".to_string()];
        assert!(authorize(&tokens, &bearer("Bearer new-token")).is_ok());
        assert!(authorize(&tokens, &bearer("Bearer old-token")).is_ok());
        assert!(authorize(&tokens, &bearer("Bearer new-tokeN")).is_err());
        assert!(authorize(&tokens, &bearer("new-token")).is_err());
        assert!(authorize(&tokens, &bearer("Bearer ")).is_err());
        assert!(authorize(&tokens, &HeaderMap::new()).is_err());
        assert!(authorize(&[], &bearer("Bearer ")).is_err());
        assert!(authorize(&[String::new()], &bearer("Bearer ")).is_err());
    }

    #[test]
    fn codes_map_to_statuses() {
        assert_eq!(
            status(&ClientError::NotJoined),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status(&ClientError::Rejected {
                code: "rejected".into(),
                message: "m".into()
            }),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status(&ClientError::TooManyPending),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}
