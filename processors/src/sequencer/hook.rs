//! The pre-send hook: before a `send` takes a seq, the sequencer asks a configured URL
//! whether to approve, reject or rewrite it.
//!
//! Request: `POST {url}` with `{room, user, text, client_id}` (the text after moderation's
//! normalization), signed like webhooks (`X-Tidings-Signature`) when a secret is set. Answer:
//! `{"action":"approve"}`, `{"action":"reject","reason":"…"}` or
//! `{"action":"rewrite","text":"…"}`. Anything else — a timeout, a refused connection, a
//! non-2xx status, an answer that does not parse — is a failure: approved when `fail_open`,
//! else the send is refused with `unavailable` (the client retries with the same id).

use crate::webhook::{sign, SIGNATURE_HEADER};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

/// Longest reason or rewritten text taken from the hook (the text is then moderated again).
const MAX_ANSWER_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresendConfig {
    pub url: String,
    /// The whole round trip, connect included.
    pub timeout: Duration,
    /// On a failure, approve (`true`) or refuse with `unavailable` (`false`).
    pub fail_open: bool,
    /// HMAC key for `X-Tidings-Signature` on requests; empty: unsigned.
    pub secret: String,
}

/// What the hook decided about one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Approve,
    /// Refused with code `rejected` and this message.
    Reject(String),
    /// Sequenced with this text instead (moderated again).
    Rewrite(String),
    /// The hook failed and fails closed: refused with code `unavailable`.
    Unavailable(String),
}

#[derive(Deserialize)]
struct Answer {
    action: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

/// The verdict in a hook's answer body, or why it is not one.
pub(crate) fn parse_answer(body: &[u8]) -> Result<Verdict, String> {
    if body.len() > MAX_ANSWER_BYTES {
        return Err(format!("answer over {MAX_ANSWER_BYTES} bytes"));
    }
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| format!("answer is not {{action}}: {e}"))?;
    match answer.action.as_str() {
        "approve" => Ok(Verdict::Approve),
        "reject" => Ok(Verdict::Reject(
            answer
                .reason
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "refused by the pre-send hook".into()),
        )),
        "rewrite" => match answer.text {
            Some(text) => Ok(Verdict::Rewrite(text)),
            None => Err("rewrite without text".into()),
        },
        other => Err(format!("unknown action {other:?}")),
    }
}

pub(crate) struct Hook {
    config: PresendConfig,
    client: reqwest::Client,
}

impl Hook {
    pub(crate) fn new(config: PresendConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("tidings-presend/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { config, client })
    }

    /// Asks about one send; never fails (a failure is a verdict, per `fail_open`).
    pub(crate) async fn ask(&self, room: &str, user: &str, text: &str, client_id: &str) -> Verdict {
        let started = std::time::Instant::now();
        let verdict = match self.call(room, user, text, client_id).await {
            Ok(verdict) => verdict,
            Err(error) => {
                tracing::warn!(room, client_id, %error, fail_open = self.config.fail_open, "pre-send hook failed");
                metrics::outcome("error");
                if self.config.fail_open {
                    Verdict::Approve
                } else {
                    Verdict::Unavailable(format!("the pre-send hook failed: {error}"))
                }
            }
        };
        metrics::latency(started.elapsed());
        match &verdict {
            Verdict::Approve => metrics::outcome("approve"),
            Verdict::Reject(_) => metrics::outcome("reject"),
            Verdict::Rewrite(_) => metrics::outcome("rewrite"),
            Verdict::Unavailable(_) => {}
        }
        verdict
    }

    async fn call(
        &self,
        room: &str,
        user: &str,
        text: &str,
        client_id: &str,
    ) -> Result<Verdict, String> {
        let body = serde_json::to_vec(&json!({
            "room": room, "user": user, "text": text, "client_id": client_id,
        }))
        .map_err(|e| e.to_string())?;
        let mut request = self
            .client
            .post(&self.config.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if !self.config.secret.is_empty() {
            request = request.header(SIGNATURE_HEADER, sign(self.config.secret.as_bytes(), &body));
        }
        let response = request.body(body).send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        parse_answer(&bytes)
    }
}

mod metrics {
    use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts};
    use std::sync::LazyLock;
    use std::time::Duration;

    static OUTCOMES: LazyLock<IntCounterVec> = LazyLock::new(|| {
        let c = IntCounterVec::new(
            Opts::new(
                "tidings_presend_hook_total",
                "Pre-send hook calls by outcome (approve, reject, rewrite, error)",
            ),
            &["outcome"],
        )
        // Constant names and labels: a failure is a defect the tests catch.
        .expect("valid metric definition");
        if let Err(error) = prometheus::register(Box::new(c.clone())) {
            tracing::warn!(%error, "tidings_presend_hook_total not registered");
        }
        c
    });

    static SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
        let h = Histogram::with_opts(
            HistogramOpts::new(
                "tidings_presend_hook_seconds",
                "Time a pre-send hook call took, failures included",
            )
            .buckets(vec![
                0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )
        .expect("valid metric definition");
        if let Err(error) = prometheus::register(Box::new(h.clone())) {
            tracing::warn!(%error, "tidings_presend_hook_seconds not registered");
        }
        h
    });

    pub(super) fn outcome(outcome: &str) {
        OUTCOMES.with_label_values(&[outcome]).inc();
    }

    pub(super) fn latency(elapsed: Duration) {
        SECONDS.observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_into_verdicts() {
        assert_eq!(
            parse_answer(br#"{"action":"approve"}"#),
            Ok(Verdict::Approve)
        );
        assert_eq!(
            parse_answer(br#"{"action":"reject","reason":"no links"}"#),
            Ok(Verdict::Reject("no links".into()))
        );
        assert_eq!(
            parse_answer(br#"{"action":"reject"}"#),
            Ok(Verdict::Reject("refused by the pre-send hook".into()))
        );
        assert_eq!(
            parse_answer(br#"{"action":"rewrite","text":"hi ***"}"#),
            Ok(Verdict::Rewrite("hi ***".into()))
        );
        assert!(parse_answer(br#"{"action":"rewrite"}"#).is_err());
        assert!(parse_answer(br#"{"action":"maybe"}"#).is_err());
        assert!(parse_answer(b"approve").is_err());
        assert!(parse_answer(&vec![b' '; MAX_ANSWER_BYTES + 1]).is_err());
    }
}
