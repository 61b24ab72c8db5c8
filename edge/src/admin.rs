//! The admin API: `POST /api/admin/revoke`.
//!
//! Authenticated by a client token with `role: admin` (`Authorization: Bearer <JWT>`),
//! verified exactly like a connection's (keys, `iss`/`aud`, expiry, revocation); the service
//! tokens of `POST /api/publish` do not open it. A missing or bad token gets 401
//! `unauthorized`, any other role 403 `forbidden`.
//!
//! Body `{sub}` (every token of a user) or `{jti}` (one token), with `until` (ms since the
//! epoch; default: now plus the longest token lifetime the edge accepts, so every token the
//! revocation covers has expired by then) and an optional `reason`. The revocation is
//! appended to `tidings.revocations` and answered `{ok: true, key, until}` once durable;
//! this edge has cut the connections it covers by then, and every other edge does within
//! about a second, as it reads the record. An `until` already past lifts a revocation.
//! Each revocation also goes to the audit topic, `tidings.audit`, as a `ModeratorAction`
//! of kind `revoke` (who, whom or which token, until when).

use crate::errors::{ok_ack, ClientError};
use crate::permissions::Role;
use crate::revocations::{enforce, Target};
use crate::state::{now_ms, Shared};
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tidings_log::{topics, OutRecord};
use tidings_schemas::text::check_identity;
use tidings_schemas::{LogRecord, ModeratorAction, Revocation};

/// Admin requests in progress on one edge (G7); more → `rate_limited` (429).
pub const MAX_IN_FLIGHT: usize = 16;
/// Largest request body.
pub const MAX_BODY_BYTES: usize = 4 * 1024;
/// Longest `reason`, in bytes.
pub const MAX_REASON_BYTES: usize = 512;

/// Admin requests in progress on this edge.
#[derive(Default)]
pub struct AdminRequests(AtomicUsize);

pub async fn revoke(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    shared.metrics.event_in("admin-revoke");
    match handle(&shared, &headers, body).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => {
            shared.metrics.error(e.code());
            (crate::publish::status(&e), Json(e.to_ack())).into_response()
        }
    }
}

async fn handle(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Value, ClientError> {
    let in_flight = shared.admin_requests.0.fetch_add(1, Ordering::AcqRel);
    let _slot = Slot(&shared.admin_requests.0);
    if in_flight >= MAX_IN_FLIGHT {
        return Err(ClientError::TooManyPending);
    }
    let admin = authorize(shared, headers).await?;
    if shared.draining.load(Ordering::Acquire) {
        return Err(ClientError::unavailable("this edge is shutting down"));
    }
    let Ok(Json(data)) = body else {
        return Err(ClientError::invalid(
            "body must be JSON {sub} or {jti}, with until? and reason?, and Content-Type: application/json",
        ));
    };
    let now = now_ms();
    let request = parse(&data, now, shared.default_revocation_ms())?;
    if !shared.revocations.has_room_for(&request.target, now) {
        return Err(ClientError::unavailable(format!(
            "{} revocations are in force already; wait until some end",
            shared.revocations.len()
        )));
    }
    let (user, jti) = match &request.target {
        Target::Sub(sub) => (Some(sub.clone()), None),
        Target::Jti(jti) => (None, Some(jti.clone())),
    };
    let record = Revocation {
        event_id: uuid::Uuid::new_v4().to_string(),
        kind: "revoke".into(),
        room: None,
        user,
        ts: now,
        trace_id: uuid::Uuid::new_v4().to_string(),
        node: shared.config.node.clone(),
        jti,
        until: request.until,
        by: admin,
        reason: request.reason,
    };
    let key = request.target.key();
    let encode_error =
        |e: tidings_schemas::SchemaError| ClientError::invalid(format!("cannot encode: {e}"));
    let revocation = OutRecord::new(
        topics::REVOCATIONS,
        key.clone(),
        record.encode().map_err(encode_error)?,
    )
    .with_header("trace_id", record.trace_id.clone());
    let (audit_key, audit) = audit_record(&record);
    let audit = OutRecord::new(
        topics::AUDIT,
        audit_key,
        audit.encode().map_err(encode_error)?,
    )
    .with_header("trace_id", record.trace_id.clone());
    // Both durable before the answer. Not atomic (an edge has no transaction): after an
    // error either may be on the log; the admin retries, and a repeat only replaces the
    // revocation with an equal one.
    shared.log.produce_batch(vec![revocation, audit]).await?;
    // Here at once; the other edges as they read the record.
    enforce(shared, &request.target, request.until);
    tracing::info!(
        by = %record.by,
        key = %key,
        until = record.until,
        reason = record.reason.as_deref().unwrap_or(""),
        "revoked"
    );
    Ok(ok_ack(json!({ "key": key, "until": request.until })))
}

/// The audit record of a revocation (`tidings.audit`, Avro `ModeratorAction` kind
/// `revoke`), with its key: the user acted upon, or `jti:<jti>` for one token.
fn audit_record(r: &Revocation) -> (String, ModeratorAction) {
    let key = match (&r.user, &r.jti) {
        (Some(user), _) => user.clone(),
        (None, Some(jti)) => format!("jti:{jti}"),
        (None, None) => r.node.clone(),
    };
    let action = ModeratorAction {
        event_id: uuid::Uuid::new_v4().to_string(),
        kind: "revoke".into(),
        room: None,
        user: Some(r.by.clone()),
        ts: r.ts,
        trace_id: r.trace_id.clone(),
        node: r.node.clone(),
        role: Role::Admin.as_str().into(),
        seq: None,
        target: r.user.clone(),
        until: Some(r.until),
        jti: r.jti.clone(),
    };
    (key, action)
}

/// The admin's `sub`, if the request carries a valid, unrevoked token with `role: admin`.
async fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<String, ClientError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ClientError::Unauthorized(
                "an admin token is required: Authorization: Bearer <JWT with role admin>".into(),
            )
        })?;
    let claims = shared.verifier.check(token).await.map_err(|e| {
        tracing::debug!("admin API: {e}");
        ClientError::Unauthorized("the token is not valid here".into())
    })?;
    let claims = crate::revocations::unrevoked(shared, claims)
        .map_err(|e| ClientError::Unauthorized(e.to_string()))?;
    let access = claims
        .access()
        .map_err(|e| ClientError::Unauthorized(e.to_string()))?;
    if access.role != Role::Admin {
        return Err(ClientError::Forbidden(
            "only tokens with role admin may use the admin API".into(),
        ));
    }
    Ok(claims.sub)
}

/// A revocation request.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    target: Target,
    until: i64,
    reason: Option<String>,
}

/// `{sub}` or `{jti}`, `until?` (ms; default `now + default_ms`), `reason?`.
fn parse(data: &Value, now: i64, default_ms: i64) -> Result<Request, ClientError> {
    let Some(fields) = data.as_object() else {
        return Err(ClientError::invalid("body must be a JSON object"));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "sub" | "jti" | "until" | "reason"))
    {
        return Err(ClientError::invalid(format!("unknown field {unknown:?}")));
    }
    let text = |name: &str| -> Result<Option<&str>, ClientError> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(ClientError::invalid(format!("{name} must be a string"))),
        }
    };
    let target = match (text("sub")?, text("jti")?) {
        (Some(sub), None) => {
            check_identity(sub).map_err(|e| ClientError::invalid(format!("sub {e}")))?;
            Target::Sub(sub.to_string())
        }
        (None, Some(jti)) => {
            if jti.len() > crate::auth::MAX_JTI_BYTES || check_identity(jti).is_err() {
                return Err(ClientError::invalid(format!(
                    "jti must be 1 to {} bytes of visible characters",
                    crate::auth::MAX_JTI_BYTES
                )));
            }
            Target::Jti(jti.to_string())
        }
        _ => return Err(ClientError::invalid("give exactly one of sub and jti")),
    };
    let until = match fields.get("until") {
        None | Some(Value::Null) => now.saturating_add(default_ms),
        Some(v) => v
            .as_i64()
            .filter(|u| *u >= 0)
            .ok_or_else(|| ClientError::invalid("until must be ms since the epoch"))?,
    };
    let reason = text("reason")?.map(str::to_string);
    if reason
        .as_ref()
        .is_some_and(|r| r.len() > MAX_REASON_BYTES || r.chars().any(char::is_control))
    {
        return Err(ClientError::invalid(format!(
            "reason must be at most {MAX_REASON_BYTES} bytes without control characters"
        )));
    }
    Ok(Request {
        target,
        until,
        reason,
    })
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

    const DAY: i64 = 86_400_000;

    #[test]
    fn the_audit_record_names_the_admin_and_the_target() {
        let revocation = Revocation {
            event_id: "e".into(),
            kind: "revoke".into(),
            room: None,
            user: Some("mallory".into()),
            ts: 7,
            trace_id: "t".into(),
            node: "edge-a".into(),
            jti: None,
            until: 99,
            by: "root".into(),
            reason: None,
        };
        let (key, action) = audit_record(&revocation);
        assert_eq!(key, "mallory");
        assert_eq!(
            (
                action.kind.as_str(),
                action.user.as_deref(),
                action.role.as_str()
            ),
            ("revoke", Some("root"), "admin")
        );
        assert_eq!(
            (action.target.as_deref(), action.until, action.jti),
            (Some("mallory"), Some(99), None)
        );
        let one_token = Revocation {
            user: None,
            jti: Some("t-1".into()),
            ..revocation
        };
        let (key, action) = audit_record(&one_token);
        assert_eq!(key, "jti:t-1");
        assert_eq!(
            (action.target.as_deref(), action.jti.as_deref()),
            (None, Some("t-1"))
        );
        assert!(ModeratorAction::decode(&action.encode().unwrap()).is_ok());
    }

    #[test]
    fn a_request_names_one_user_or_one_token() {
        let ok = |v: Value| parse(&v, 1_000, DAY);
        assert_eq!(
            ok(json!({"sub": "mallory"})),
            Ok(Request {
                target: Target::Sub("mallory".into()),
                until: 1_000 + DAY,
                reason: None
            })
        );
        assert_eq!(
            ok(json!({"jti": "t-1", "until": 5_000, "reason": "leaked"})),
            Ok(Request {
                target: Target::Jti("t-1".into()),
                until: 5_000,
                reason: Some("leaked".into())
            })
        );
        assert_eq!(ok(json!({"sub": "a", "until": 0})).map(|r| r.until), Ok(0));
        for bad in [
            json!({}),
            json!({"sub": "a", "jti": "b"}),
            json!({"sub": ""}),
            json!({"sub": 5}),
            json!({"sub": "a\u{202E}"}),
            json!({"jti": "x".repeat(200)}),
            json!({"sub": "a", "until": -1}),
            json!({"sub": "a", "until": "tomorrow"}),
            json!({"sub": "a", "until": 1.5}),
            json!({"sub": "a", "reason": "a\nb"}),
            json!({"sub": "a", "reason": "r".repeat(MAX_REASON_BYTES + 1)}),
            json!({"sub": "a", "room": "lobby"}),
            json!(["sub", "a"]),
        ] {
            assert!(
                matches!(ok(bad.clone()), Err(ClientError::Invalid(_))),
                "{bad}"
            );
        }
    }
}
