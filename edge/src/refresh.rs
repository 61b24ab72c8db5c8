//! `refresh {token}`: a connection takes a new token for the same user without
//! reconnecting. The new token's `rooms`, `role` and `jti` replace the old ones and its
//! `exp` moves the connection's deadline; the rooms it no longer lets the user read are
//! left (the handler does that, as a `leave` would). `name` stays the one the connection
//! opened with: others were told it already (presence).

use crate::conn::Conn;
use crate::errors::ClientError;
use crate::state::Shared;
use serde_json::Value;
use std::sync::Arc;

/// The token of a `refresh` payload.
pub fn parse(data: &Value) -> Result<&str, ClientError> {
    data.get("token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ClientError::invalid("refresh needs {token: string}"))
}

/// Checks `token` for `conn` and, if it is good, makes it the connection's token. Returns
/// the rooms the connection is in that the new token does not allow.
pub async fn renew(
    shared: &Shared,
    conn: &Arc<Conn>,
    token: &str,
) -> Result<Vec<String>, ClientError> {
    let claims = shared.verifier.check(token).await.map_err(|e| {
        tracing::debug!(conn = %conn.id, "refresh refused: {e}");
        ClientError::Unauthorized("the token is not valid".into())
    })?;
    if claims.sub != conn.user {
        return Err(ClientError::Forbidden(
            "the token is for another user; connect again to change users".into(),
        ));
    }
    let claims = crate::revocations::unrevoked(shared, claims)
        .map_err(|e| ClientError::Unauthorized(e.to_string()))?;
    // verify() checked the claims already; kept safe rather than trusted.
    let access = claims
        .access()
        .map_err(|e| ClientError::Unauthorized(e.to_string()))?;
    let deadline = shared.verifier.deadline_ms(&claims);
    conn.set_access(access, claims.jti);
    shared.expiry.schedule(conn, deadline);
    // After the swap: a join checked against the old access is in `rooms` by now.
    let access = conn.access();
    let gone = conn
        .rooms()
        .keys()
        .filter(|room| !access.may_read(room, &conn.user))
        .cloned()
        .collect();
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_payload_is_a_token_string() {
        assert_eq!(parse(&json!({"token": "a.b.c"})).unwrap(), "a.b.c");
        for bad in [
            json!({}),
            json!({"token": ""}),
            json!({"token": 5}),
            json!("a.b.c"),
        ] {
            assert!(matches!(parse(&bad), Err(ClientError::Invalid(_))), "{bad}");
        }
    }
}
