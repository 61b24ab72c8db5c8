//! The identity provider's keys, from its JWKS URL (`TIDINGS_JWKS_URL`): fetched at start,
//! again every `refresh` (keys the provider dropped stop verifying), and again when a token
//! names a `kid` the edge does not know (the provider rotated its keys).
//!
//! Tokens with random `kid`s are free to make, so the refetch on an unknown `kid` is
//! bounded: at most one fetch is in flight (others wait for it, then look again), and none
//! starts within `min_interval` of the previous one's start (those tokens are refused at
//! once). Each fetch has a time limit and a size limit, and the key count is capped. A
//! failed fetch keeps the keys the edge had.

use crate::keys::PublicKey;
use crate::state::lock;
use futures::future::BoxFuture;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Most keys kept from one JWKS; providers publish a handful.
pub const MAX_KEYS: usize = 64;

/// How the keys are fetched.
#[derive(Debug, Clone)]
pub struct JwksConfig {
    pub url: String,
    /// Least time between the starts of two fetches.
    pub min_interval: Duration,
    /// Fetch again this often, whatever tokens come.
    pub refresh: Duration,
    /// One fetch's time limit, connect to last byte.
    pub timeout: Duration,
    /// Largest JWKS document read.
    pub max_bytes: usize,
}

impl JwksConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            min_interval: Duration::from_secs(10),
            refresh: Duration::from_secs(300),
            timeout: Duration::from_secs(5),
            max_bytes: 64 * 1024,
        }
    }
}

/// Why a fetch gave no keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("fetching the JWKS: {0}")]
    Fetch(String),
    #[error("the JWKS is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the JWKS is not {{\"keys\": [...]}}: {0}")]
    Format(String),
}

/// Where the document comes from: HTTP in production ([`HttpSource`]); anything that
/// returns the bytes in tests of the fetch bounds.
pub trait Source: Send + Sync {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<u8>, JwksError>>;
}

/// GETs the JWKS URL, within the time and size limits.
pub struct HttpSource {
    client: reqwest::Client,
    url: String,
    max_bytes: usize,
}

impl HttpSource {
    pub fn new(config: &JwksConfig) -> Result<Self, JwksError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| JwksError::Fetch(e.to_string()))?;
        Ok(Self {
            client,
            url: config.url.clone(),
            max_bytes: config.max_bytes,
        })
    }
}

impl Source for HttpSource {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<u8>, JwksError>> {
        Box::pin(async move {
            let fetch_error = |e: reqwest::Error| JwksError::Fetch(e.to_string());
            let mut response = self
                .client
                .get(&self.url)
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(fetch_error)?;
            if !response.status().is_success() {
                return Err(JwksError::Fetch(format!("HTTP {}", response.status())));
            }
            if response
                .content_length()
                .is_some_and(|n| n > self.max_bytes as u64)
            {
                return Err(JwksError::TooLarge(self.max_bytes));
            }
            // Read chunk by chunk: a missing or lying Content-Length must not let the body
            // grow past the bound.
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(fetch_error)? {
                if body.len() + chunk.len() > self.max_bytes {
                    return Err(JwksError::TooLarge(self.max_bytes));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        })
    }
}

/// The usable keys of a JWKS document, and why the others were skipped.
pub fn parse(document: &[u8]) -> Result<(Vec<PublicKey>, Vec<String>), JwksError> {
    let value: Value =
        serde_json::from_slice(document).map_err(|e| JwksError::Format(e.to_string()))?;
    let keys = value
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| JwksError::Format("no keys array".into()))?;
    let mut usable = Vec::new();
    let mut skipped = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        if usable.len() == MAX_KEYS {
            skipped.push(format!("keys past the first {MAX_KEYS} usable ones"));
            break;
        }
        match PublicKey::from_jwk(key) {
            Ok(k) => usable.push(k),
            Err(e) => skipped.push(format!("key {i}: {e}")),
        }
    }
    Ok((usable, skipped))
}

/// Whether a fetch may start now, the last one having started at `last`.
pub fn due(last: Option<Instant>, now: Instant, min_interval: Duration) -> bool {
    last.is_none_or(|last| now.saturating_duration_since(last) >= min_interval)
}

/// What a refetch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refetch {
    /// This call fetched (successfully or not).
    Fetched,
    /// Another call's fetch was in flight; it finished, and its keys are the current ones.
    Waited,
    /// The last fetch started less than `min_interval` ago: nothing was fetched.
    TooSoon,
}

/// The cached keys and the gate in front of the source.
pub struct Jwks {
    keys: Mutex<Arc<Vec<PublicKey>>>,
    /// Held for the whole of a fetch: at most one in flight. Holds when the last one started.
    gate: tokio::sync::Mutex<Option<Instant>>,
    /// Counts fetch starts, for metrics and tests.
    fetches: AtomicU64,
    source: Box<dyn Source>,
    config: JwksConfig,
}

impl Jwks {
    pub fn new(config: JwksConfig, source: Box<dyn Source>) -> Self {
        Self {
            keys: Mutex::new(Arc::new(Vec::new())),
            gate: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
            source,
            config,
        }
    }

    /// The keys as last fetched.
    pub fn keys(&self) -> Arc<Vec<PublicKey>> {
        lock(&self.keys).clone()
    }

    /// Fetches started so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Fetches the keys again, unless a fetch is in flight (then waits for it) or the last
    /// one started less than `min_interval` ago.
    pub async fn refetch(&self) -> Refetch {
        let seen = self.fetches();
        let mut last = self.gate.lock().await;
        if self.fetches() != seen {
            return Refetch::Waited;
        }
        if !due(*last, Instant::now(), self.config.min_interval) {
            return Refetch::TooSoon;
        }
        *last = Some(Instant::now());
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match self.source.fetch().await.and_then(|doc| parse(&doc)) {
            Ok((keys, skipped)) => {
                for why in &skipped {
                    tracing::warn!(url = %self.config.url, "JWKS key skipped: {why}");
                }
                tracing::info!(url = %self.config.url, keys = keys.len(), "JWKS fetched");
                *lock(&self.keys) = Arc::new(keys);
            }
            Err(e) => tracing::warn!(url = %self.config.url, "{e}; keeping the keys it had"),
        }
        Refetch::Fetched
    }

    /// Fetches at start and every `refresh`; while no key was ever loaded, every
    /// `min_interval` (an identity provider that was down at start).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            self.refetch().await;
            let pause = if self.keys().is_empty() {
                self.config.min_interval
            } else {
                self.config.refresh
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::tests::{EC_X, EC_Y, ED_X, RSA_N};
    use serde_json::json;

    fn document() -> Vec<u8> {
        json!({"keys": [
            {"kty": "RSA", "kid": "r", "n": RSA_N, "e": "AQAB", "alg": "RS256", "use": "sig"},
            {"kty": "EC", "kid": "e", "crv": "P-256", "x": EC_X, "y": EC_Y},
            {"kty": "OKP", "kid": "d", "crv": "Ed25519", "x": ED_X},
            {"kty": "oct", "kid": "s", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "x", "n": RSA_N, "e": "AQAB", "use": "enc"},
        ]})
        .to_string()
        .into_bytes()
    }

    /// Serves `document()` after `delay`, counting requests.
    struct Slow {
        delay: Duration,
        served: Arc<AtomicU64>,
    }

    impl Source for Slow {
        fn fetch(&self) -> BoxFuture<'_, Result<Vec<u8>, JwksError>> {
            Box::pin(async move {
                self.served.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                Ok(document())
            })
        }
    }

    fn jwks(min_interval: Duration, delay: Duration) -> (Arc<Jwks>, Arc<AtomicU64>) {
        let served = Arc::new(AtomicU64::new(0));
        let config = JwksConfig {
            min_interval,
            ..JwksConfig::new("http://idp.invalid/jwks.json")
        };
        let source = Slow {
            delay,
            served: served.clone(),
        };
        (Arc::new(Jwks::new(config, Box::new(source))), served)
    }

    #[test]
    fn a_document_keeps_its_signature_keys_and_skips_the_rest() {
        let (keys, skipped) = parse(&document()).unwrap();
        let kids: Vec<_> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, ["r", "e", "d"]);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(parse(b"[]").is_err());
        assert!(parse(b"{\"keys\": 5}").is_err());
        assert!(parse(b"not json").is_err());
        let many: Vec<Value> = (0..MAX_KEYS + 10)
            .map(|i| json!({"kty": "OKP", "kid": format!("k{i}"), "crv": "Ed25519", "x": ED_X}))
            .collect();
        let (keys, skipped) = parse(json!({ "keys": many }).to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), MAX_KEYS);
        assert_eq!(skipped.len(), 1);
    }

    #[test]
    fn refetches_wait_out_the_minimum_interval() {
        let t0 = Instant::now();
        let min = Duration::from_secs(10);
        assert!(due(None, t0, min));
        assert!(!due(Some(t0), t0, min));
        assert!(!due(Some(t0), t0 + Duration::from_secs(9), min));
        assert!(due(Some(t0), t0 + min, min));
        // A clock that seems to go back never allows a fetch early.
        assert!(!due(Some(t0 + Duration::from_secs(5)), t0, min));
    }

    #[tokio::test]
    async fn a_flood_of_unknown_kids_makes_one_fetch() {
        let (jwks, served) = jwks(Duration::from_secs(3600), Duration::from_millis(100));
        let flood: Vec<_> = (0..200)
            .map(|_| {
                let jwks = jwks.clone();
                tokio::spawn(async move { jwks.refetch().await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in flood {
            outcomes.push(task.await.unwrap());
        }
        assert_eq!(
            served.load(Ordering::SeqCst),
            1,
            "one fetch in flight at most"
        );
        assert_eq!(
            outcomes.iter().filter(|o| **o == Refetch::Fetched).count(),
            1
        );
        assert_eq!(jwks.keys().len(), 3, "the waiters see the fetched keys");
        // Within the interval, nothing more is fetched, and nobody waits.
        let started = Instant::now();
        for _ in 0..100 {
            assert_eq!(jwks.refetch().await, Refetch::TooSoon);
        }
        assert!(started.elapsed() < Duration::from_millis(100));
        assert_eq!(served.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn after_the_interval_a_new_kid_fetches_again() {
        let (jwks, served) = jwks(Duration::from_millis(50), Duration::ZERO);
        assert_eq!(jwks.refetch().await, Refetch::Fetched);
        assert_eq!(jwks.refetch().await, Refetch::TooSoon);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(jwks.refetch().await, Refetch::Fetched);
        assert_eq!(served.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_fetch_keeps_the_old_keys() {
        struct Flaky(AtomicU64);
        impl Source for Flaky {
            fn fetch(&self) -> BoxFuture<'_, Result<Vec<u8>, JwksError>> {
                let n = self.0.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    match n {
                        0 => Ok(document()),
                        1 => Err(JwksError::Fetch("connection refused".into())),
                        _ => Ok(b"{\"keys\": \"garbage\"}".to_vec()),
                    }
                })
            }
        }
        let config = JwksConfig {
            min_interval: Duration::ZERO,
            ..JwksConfig::new("http://idp.invalid/")
        };
        let jwks = Jwks::new(config, Box::new(Flaky(AtomicU64::new(0))));
        jwks.refetch().await;
        assert_eq!(jwks.keys().len(), 3);
        jwks.refetch().await;
        assert_eq!(jwks.keys().len(), 3, "after a network error");
        jwks.refetch().await;
        assert_eq!(jwks.keys().len(), 3, "after a malformed document");
    }

    #[tokio::test]
    async fn an_oversized_or_slow_document_is_refused() {
        // A loopback server that answers with more than the limit, without Content-Length.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut request = [0u8; 1024];
                    let n = socket.read(&mut request).await.unwrap_or(0);
                    let path = String::from_utf8_lossy(&request[..n]).to_string();
                    if path.starts_with("GET /slow") {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&vec![b' '; 100_000]).await;
                });
            }
        });
        let config = |path: &str| JwksConfig {
            timeout: Duration::from_millis(300),
            max_bytes: 10_000,
            ..JwksConfig::new(format!("http://{addr}{path}"))
        };
        let big = HttpSource::new(&config("/big")).unwrap();
        assert_eq!(big.fetch().await, Err(JwksError::TooLarge(10_000)));
        let slow = HttpSource::new(&config("/slow")).unwrap();
        let started = Instant::now();
        assert!(matches!(slow.fetch().await, Err(JwksError::Fetch(_))));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
