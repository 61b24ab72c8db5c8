//! One event to one endpoint: the body, its signature, its stable delivery id, the POST and
//! the pause between tries. Everything but the POST is pure.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tidings_schemas::RoomEvent;

/// Header with `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "X-Tidings-Signature";
/// Header with the delivery id (also in the body), the receiver's key to drop repeats.
pub const DELIVERY_HEADER: &str = "X-Tidings-Delivery";
/// Longest part of a receiver's answer kept in an error (logs, dead letters).
const MAX_ERROR_BYTES: usize = 512;

/// `sha256=<hex>` of the body under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts any key length"),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The same for a given endpoint and room-log record, whatever the number of tries or
/// restarts: the record's `event_id` is written once, by the sequencer's transaction.
pub fn delivery_id(url: &str, event_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(url.as_bytes());
    h.update([0]);
    h.update(event_id.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// The pause after failed try number `attempt` (1-based): `base`, doubling, at most `max`.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
    base.saturating_mul(factor).min(max)
}

/// `delay` spread over its upper half by `unit` (0 to 1, random): endpoints that failed
/// together (a receiver restart) are not all retried in the same instant.
pub fn jittered(delay: Duration, unit: f64) -> Duration {
    delay.mul_f64(0.5 + unit.clamp(0.0, 1.0) / 2.0)
}

/// Why a POST failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    /// Trying again cannot help: the receiver refused the request itself (a 4xx other than
    /// 408 timeout, 425 too early and 429 too many requests). It is dead-lettered at once.
    pub permanent: bool,
}

/// Whether an HTTP status says that the same request will be refused again.
pub fn permanent(status: u16) -> bool {
    (400..500).contains(&status) && !matches!(status, 408 | 425 | 429)
}

/// The JSON body POSTed for `event`.
pub fn body(event: &RoomEvent, delivery_id: &str) -> Vec<u8> {
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let mut value = json!({
        "delivery_id": delivery_id,
        "room": event.room,
        "seq": event.seq,
        "user": event.user,
        "text": nonempty(&event.text),
        "ts": event.ts,
        "kind": event.kind,
        "client_id": nonempty(&event.client_id),
    });
    // delete: whose message (target); mute: who, until when. Absent from other kinds.
    for (name, field) in [
        ("target", event.target.clone().map(Value::from)),
        ("until", event.until.map(Value::from)),
        ("role", event.role.clone().map(Value::from)),
    ] {
        if let Some(field) = field {
            value[name] = field;
        }
    }
    // A `Value` always serializes.
    serde_json::to_vec(&value).unwrap_or_default()
}

/// One POST; `Err` with a short reason unless the receiver answered 2xx.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    signature: &str,
    delivery_id: &str,
    body: Vec<u8>,
) -> Result<(), Failure> {
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header(DELIVERY_HEADER, delivery_id)
        .body(body)
        .send()
        .await
        .map_err(|e| Failure {
            message: cut(&format!("request failed: {e}")),
            permanent: false,
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    Err(Failure {
        message: cut(&format!("HTTP {status}: {text}")),
        permanent: permanent(status.as_u16()),
    })
}

/// `s` cut to at most [`MAX_ERROR_BYTES`], on a character boundary.
pub(crate) fn cut(s: &str) -> String {
    let mut end = s.len().min(MAX_ERROR_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// `url` without its query and fragment, which may hold credentials: what dead letters show.
pub fn redacted(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    &url[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> RoomEvent {
        RoomEvent {
            role: None,
            target: None,
            until: None,
            event_id: "e-1".into(),
            kind: "message".into(),
            room: Some("team-a.dev".into()),
            user: Some("ada".into()),
            ts: 1_700_000_000_000,
            trace_id: "t".into(),
            node: "n".into(),
            seq: 7,
            client_id: "c-1".into(),
            text: "hello".into(),
            origin_node: "edge".into(),
            origin_conn: "conn".into(),
        }
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(sign(b"other", b"x"), sign(b"key", b"x"));
    }

    #[test]
    fn delivery_ids_are_stable_per_endpoint_and_event() {
        let a = delivery_id("http://a/", "e-1");
        assert_eq!(a, delivery_id("http://a/", "e-1"));
        assert_eq!(a.len(), 32);
        assert_ne!(a, delivery_id("http://b/", "e-1"));
        assert_ne!(a, delivery_id("http://a/", "e-2"));
    }

    #[test]
    fn jitter_spreads_over_the_upper_half_and_4xx_but_timeouts_are_permanent() {
        let d = Duration::from_millis(1000);
        assert_eq!(jittered(d, 0.0), Duration::from_millis(500));
        assert_eq!(jittered(d, 1.0), d);
        assert_eq!(jittered(d, 7.0), d, "clamped");
        for status in [400, 401, 403, 404, 410, 413, 422] {
            assert!(permanent(status), "{status}");
        }
        for status in [200, 302, 408, 425, 429, 500, 502, 503, 504] {
            assert!(!permanent(status), "{status}");
        }
    }

    #[test]
    fn backoff_doubles_from_base_up_to_max() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(1));
        let got: Vec<u128> = (1..=6).map(|a| backoff(a, base, max).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff(200, base, max), max, "no overflow on many tries");
    }

    #[test]
    fn the_body_carries_the_event_and_its_delivery_id() {
        let v: serde_json::Value = serde_json::from_slice(&body(&event(), "d1")).unwrap();
        assert_eq!(
            v,
            json!({"delivery_id": "d1", "room": "team-a.dev", "seq": 7, "user": "ada",
                   "text": "hello", "ts": 1_700_000_000_000i64, "kind": "message",
                   "client_id": "c-1"})
        );
        let host = RoomEvent {
            kind: "host".into(),
            text: String::new(),
            client_id: String::new(),
            ..event()
        };
        let v: serde_json::Value = serde_json::from_slice(&body(&host, "d2")).unwrap();
        assert_eq!(
            (v["text"].is_null(), v["client_id"].is_null()),
            (true, true)
        );
    }

    #[test]
    fn urls_lose_their_query_in_dead_letters() {
        assert_eq!(redacted("https://h/x?token=s"), "https://h/x");
        assert_eq!(redacted("https://h/x#f"), "https://h/x");
        assert_eq!(redacted("https://h/x"), "https://h/x");
        assert_eq!(cut(&"é".repeat(600)).len(), 512);
    }
}
