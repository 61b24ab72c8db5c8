//! Errors: what a client is told ([`ClientError`], one per v1 error code) and why the edge
//! itself could not run ([`EdgeError`]).

use serde::Serialize;
use serde_json::{json, Value};

/// An error a client gets in an ack: `{ok: false, error: {code, message}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("too many events; retry in {retry_after_ms} ms")]
    RateLimited { retry_after_ms: u64 },
    #[error("too many sends in flight")]
    TooManyPending,
    #[error("{message}")]
    Rejected { code: String, message: String },
    #[error("join the room first")]
    NotJoined,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Unavailable(String),
}

impl ClientError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ClientError::Invalid(message.into())
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ClientError::Unavailable(message.into())
    }

    /// The v1 error code.
    pub fn code(&self) -> &str {
        match self {
            ClientError::Unauthorized(_) => "unauthorized",
            ClientError::Invalid(_) => "invalid",
            ClientError::TooLarge(_) => "too_large",
            ClientError::RateLimited { .. } | ClientError::TooManyPending => "rate_limited",
            ClientError::Rejected { code, .. } => code,
            ClientError::NotJoined => "not_joined",
            ClientError::Forbidden(_) => "forbidden",
            ClientError::Unavailable(_) => "unavailable",
        }
    }

    /// The ack payload.
    pub fn to_ack(&self) -> Value {
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        match self {
            ClientError::RateLimited { retry_after_ms } => {
                error["retry_after_ms"] = json!(retry_after_ms);
            }
            ClientError::TooManyPending => {
                error["retry_after_ms"] = json!(100);
            }
            _ => {}
        }
        json!({ "ok": false, "error": error })
    }
}

/// A processor's rejection as it came in a `reject` delivery; unknown codes pass through.
pub fn rejected(code: Option<String>, message: Option<String>) -> ClientError {
    let code = code.unwrap_or_else(|| "rejected".to_string());
    let message = message.unwrap_or_else(|| code.clone());
    ClientError::Rejected { code, message }
}

impl From<tidings_log::LogError> for ClientError {
    fn from(e: tidings_log::LogError) -> Self {
        match e.code() {
            "too_large" => ClientError::TooLarge(e.to_string()),
            "invalid" => ClientError::Invalid(e.to_string()),
            _ => ClientError::Unavailable(e.to_string()),
        }
    }
}

impl From<tidings_store::StoreError> for ClientError {
    fn from(e: tidings_store::StoreError) -> Self {
        match e.code() {
            "too_large" => ClientError::TooLarge(e.to_string()),
            "invalid" => ClientError::Invalid(e.to_string()),
            _ => ClientError::Unavailable(e.to_string()),
        }
    }
}

/// `{ok: true, ...fields}`.
pub fn ok_ack<T: Serialize>(fields: T) -> Value {
    let mut value = serde_json::to_value(fields).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut value {
        map.insert("ok".into(), Value::Bool(true));
        value
    } else {
        json!({ "ok": true })
    }
}

/// Why the edge could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("log: {0}")]
    Log(#[from] tidings_log::LogError),
    #[error("store: {0}")]
    Store(#[from] tidings_store::StoreError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("config: {0}")]
    Config(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_carry_code_message_and_retry_after() {
        let ack = ClientError::RateLimited { retry_after_ms: 50 }.to_ack();
        assert_eq!(ack["ok"], false);
        assert_eq!(ack["error"]["code"], "rate_limited");
        assert_eq!(ack["error"]["retry_after_ms"], 50);
        let ack = rejected(Some("rejected".into()), Some("blocked term".into())).to_ack();
        assert_eq!(ack["error"]["code"], "rejected");
        assert_eq!(ack["error"]["message"], "blocked term");
        assert_eq!(
            ClientError::NotJoined.to_ack()["error"]["code"],
            "not_joined"
        );
        let ok = ok_ack(json!({"seq": 3}));
        assert_eq!(ok, json!({"ok": true, "seq": 3}));
    }
}
