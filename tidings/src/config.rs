//! Every setting of the binary, in one place: defaults, then the config file, then the
//! environment (`TIDINGS_*`), each overriding the one before.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tidings_log::kafka::KafkaConfig;
use tidings_log::topics::{self, TopicSpec};
use tidings_processors::sequencer::PresendConfig;
use tidings_processors::webhook::{Endpoint, WebhookConfig};
use tidings_store::cassandra::{parse_consistency, CassandraConfig, Replication};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address:port the edge serves (Socket.IO, HTTP).
    pub listen: String,
    /// Where the embedded log and store live (`tidings standalone`).
    pub data_dir: PathBuf,
    /// HS256 key for client tokens. Empty in standalone: a random one is made and the
    /// development token endpoint is turned on.
    pub jwt_secret: String,
    /// Serve `POST /dev/token` (mints tokens for any name). Never in production.
    pub dev_tokens: bool,
    /// PEM public keys (files) client tokens may be signed with: RS*/PS*, ES256/ES384,
    /// EdDSA.
    pub jwt_public_keys: Vec<PathBuf>,
    /// The identity provider's JWKS URL; keys are fetched at start, every
    /// `jwks_refresh_secs`, and on an unknown `kid` (at most once per
    /// `jwks_min_refetch_secs`).
    pub jwks_url: String,
    pub jwks_refresh_secs: u64,
    pub jwks_min_refetch_secs: u64,
    /// Accepted `iss` values; empty: not checked.
    pub jwt_issuer: Vec<String>,
    /// Accepted `aud` values; empty: tokens with `aud` are refused.
    pub jwt_audience: Vec<String>,
    /// Leeway on `exp`, `nbf` and `iat`, in seconds (at most 30).
    pub jwt_leeway_secs: u64,
    /// Longest a token may still be valid for when presented; also how long a revocation
    /// lasts by default.
    pub jwt_max_lifetime_secs: u64,
    /// Longest message, in characters.
    pub max_text: usize,
    /// Case-insensitive terms that get a message rejected.
    pub blocked_terms: Vec<String>,
    /// Events a connection may send per second, and the burst above that.
    pub rate_per_sec: f64,
    pub rate_burst: f64,
    /// This process's id on the log; generated when empty. Give each replica a stable one,
    /// so a restarted processor takes its partitions back at once.
    pub node_id: String,
    /// Where `tidings processor` serves `/healthz`, `/readyz` and `/metrics`
    /// (`TIDINGS_OPS_LISTEN`); none when unset. Edges serve them on `listen`.
    pub ops_listen: Option<String>,
    /// `json` (production) or `text`.
    pub log_format: String,
    /// Origins (`https://chat.example.com`, or `*`) whose pages may connect, besides the
    /// edge's own. Standalone also allows pages served from loopback.
    pub allowed_origins: Vec<String>,
    /// Rooms with more users online get `occupancy` instead of per-user `presence` events.
    pub presence_events_max: usize,
    /// Bearer tokens `POST /api/publish` accepts (none: the route is off).
    pub service_tokens: Vec<String>,
    /// Retention of chosen topics, replacing the defaults (`tidings.room-log=forever,
    /// tidings.client-events=3d`): see [`topics::RetentionSettings`]. `tidings migrate`
    /// applies it to Kafka, `tidings standalone` to the embedded log.
    pub topic_retention: String,
    pub limits: LimitsSection,
    pub kafka: KafkaSection,
    pub cassandra: CassandraSection,
    pub webhooks: WebhooksSection,
    pub presend: PresendSection,
}

/// `[webhooks]`, with `[[webhooks.endpoints]]` tables (`name`, `url`, `secret`, `rooms`,
/// `kinds`); `TIDINGS_WEBHOOKS` takes the endpoints as a JSON array of the same objects.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksSection {
    pub endpoints: Vec<Endpoint>,
    pub max_attempts: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    pub timeout_ms: u64,
    pub concurrency: usize,
}

impl Default for WebhooksSection {
    fn default() -> Self {
        let d = WebhookConfig::default();
        Self {
            endpoints: Vec::new(),
            max_attempts: d.max_attempts,
            base_delay_ms: d.base_delay.as_millis() as u64,
            max_delay_ms: d.max_delay.as_millis() as u64,
            timeout_ms: d.timeout.as_millis() as u64,
            concurrency: d.concurrency,
        }
    }
}

/// `[presend]`: the sequencer's pre-send hook; off while `url` is empty.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PresendSection {
    pub url: String,
    pub timeout_ms: u64,
    pub fail_open: bool,
    pub secret: String,
}

impl Default for PresendSection {
    fn default() -> Self {
        Self {
            url: String::new(),
            timeout_ms: 1000,
            fail_open: false,
            secret: String::new(),
        }
    }
}

/// The bounds each edge enforces against hostile or broken clients (SECURITY.md).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Bytes queued for one connection and not yet read; past it: `slow_consumer`.
    pub max_out_bytes: usize,
    /// Largest reply (a `history` page is cut there).
    pub max_reply_bytes: usize,
    /// Largest WebSocket frame, message and polling payload.
    pub max_frame_bytes: u64,
    /// How long a connection may stay without an authenticated client.
    pub auth_timeout_ms: u64,
    /// How long a client may take to send an HTTP request head (slowloris).
    pub request_head_timeout_ms: u64,
    /// On SIGTERM, how long an edge lets requests in progress finish before it closes.
    pub drain_timeout_ms: u64,
    /// TCP connections per IP address per edge (0: no cap).
    pub max_conns_per_ip: usize,
    /// New TCP connections per second per IP address, and the burst above that.
    pub connect_rate_per_ip: f64,
    pub connect_burst_per_ip: f64,
    /// Socket.IO connections per user per edge (0: no cap).
    pub max_conns_per_user: usize,
    /// Events per second per user across their connections on one edge, and the burst.
    pub user_rate_per_sec: f64,
    pub user_rate_burst: f64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let edge = tidings_edge::EdgeConfig::new("");
        Self {
            max_out_bytes: edge.max_out_bytes,
            max_reply_bytes: edge.max_reply_bytes,
            max_frame_bytes: edge.max_payload_bytes,
            auth_timeout_ms: edge.auth_timeout.as_millis() as u64,
            request_head_timeout_ms: edge.request_head_timeout.as_millis() as u64,
            drain_timeout_ms: edge.drain_timeout.as_millis() as u64,
            max_conns_per_ip: edge.max_conns_per_ip,
            connect_rate_per_ip: edge.connects_per_sec_per_ip,
            connect_burst_per_ip: edge.connects_burst_per_ip,
            max_conns_per_user: edge.max_conns_per_user,
            user_rate_per_sec: edge.user_events_per_sec,
            user_rate_burst: edge.user_events_burst,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSection {
    pub brokers: String,
    pub linger_ms: u32,
    pub fetch_wait_ms: u32,
    pub replication_factor: i32,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CassandraSection {
    pub contact_points: Vec<String>,
    pub keyspace: String,
    /// SimpleStrategy's factor, unless `replication` is set.
    pub replication_factor: u32,
    /// The keyspace's replication, as [`Replication`] parses it (`SimpleStrategy:3`,
    /// `NetworkTopologyStrategy:dc1=3,dc2=3`); overrides `replication_factor`.
    pub replication: Option<String>,
    pub consistency: String,
    pub bucket_size: i64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            jwt_secret: String::new(),
            dev_tokens: false,
            jwt_public_keys: Vec::new(),
            jwks_url: String::new(),
            jwks_refresh_secs: 300,
            jwks_min_refetch_secs: 10,
            jwt_issuer: Vec::new(),
            jwt_audience: Vec::new(),
            jwt_leeway_secs: tidings_edge::auth::CLOCK_LEEWAY_SECS,
            jwt_max_lifetime_secs: 24 * 60 * 60,
            max_text: 4000,
            blocked_terms: Vec::new(),
            rate_per_sec: 20.0,
            rate_burst: 40.0,
            node_id: String::new(),
            ops_listen: None,
            log_format: "text".into(),
            allowed_origins: Vec::new(),
            presence_events_max: 500,
            service_tokens: Vec::new(),
            topic_retention: String::new(),
            limits: LimitsSection::default(),
            kafka: KafkaSection::default(),
            cassandra: CassandraSection::default(),
            webhooks: WebhooksSection::default(),
            presend: PresendSection::default(),
        }
    }
}

impl Default for KafkaSection {
    fn default() -> Self {
        let defaults = KafkaConfig::new("");
        Self {
            brokers: "127.0.0.1:9092".into(),
            linger_ms: defaults.linger_ms,
            fetch_wait_ms: defaults.fetch_wait_ms,
            replication_factor: defaults.replication_factor,
        }
    }
}

impl Default for CassandraSection {
    fn default() -> Self {
        let defaults = CassandraConfig::new(Vec::new());
        Self {
            contact_points: vec!["127.0.0.1:9042".into()],
            keyspace: defaults.keyspace,
            replication_factor: 1,
            replication: None,
            consistency: "LOCAL_QUORUM".into(),
            bucket_size: defaults.bucket_size,
        }
    }
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

impl Config {
    /// Defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => Config::default(),
        };
        let parse = |name: &str, value: String| -> Result<usize> {
            value
                .parse()
                .with_context(|| format!("{name} must be a whole number, got {value:?}"))
        };
        if let Some(v) = env("TIDINGS_LISTEN") {
            config.listen = v;
        }
        if let Some(v) = env("TIDINGS_DATA_DIR") {
            config.data_dir = v.into();
        }
        if let Some(v) = env("TIDINGS_JWT_SECRET") {
            config.jwt_secret = v;
        }
        if let Some(v) = env("TIDINGS_DEV_TOKENS") {
            config.dev_tokens = matches!(v.as_str(), "1" | "true" | "yes");
        }
        if let Some(v) = env("TIDINGS_JWT_PUBLIC_KEYS") {
            config.jwt_public_keys = list(&v).into_iter().map(PathBuf::from).collect();
        }
        if let Some(v) = env("TIDINGS_JWKS_URL") {
            config.jwks_url = v;
        }
        if let Some(v) = env("TIDINGS_JWKS_REFRESH_SECS") {
            config.jwks_refresh_secs = parse("TIDINGS_JWKS_REFRESH_SECS", v)? as u64;
        }
        if let Some(v) = env("TIDINGS_JWKS_MIN_REFETCH_SECS") {
            config.jwks_min_refetch_secs = parse("TIDINGS_JWKS_MIN_REFETCH_SECS", v)? as u64;
        }
        if let Some(v) = env("TIDINGS_JWT_ISSUER") {
            config.jwt_issuer = list(&v);
        }
        if let Some(v) = env("TIDINGS_JWT_AUDIENCE") {
            config.jwt_audience = list(&v);
        }
        if let Some(v) = env("TIDINGS_JWT_LEEWAY_SECS") {
            config.jwt_leeway_secs = parse("TIDINGS_JWT_LEEWAY_SECS", v)? as u64;
        }
        if let Some(v) = env("TIDINGS_JWT_MAX_LIFETIME_SECS") {
            config.jwt_max_lifetime_secs = parse("TIDINGS_JWT_MAX_LIFETIME_SECS", v)? as u64;
        }
        if let Some(v) = env("TIDINGS_MAX_TEXT") {
            config.max_text = parse("TIDINGS_MAX_TEXT", v)?;
        }
        if let Some(v) = env("TIDINGS_PRESENCE_EVENTS_MAX") {
            config.presence_events_max = parse("TIDINGS_PRESENCE_EVENTS_MAX", v)?;
        }
        if let Some(v) = env("TIDINGS_BLOCKED_TERMS") {
            config.blocked_terms = list(&v);
        }
        if let Some(v) = env("TIDINGS_RATE_PER_SEC") {
            config.rate_per_sec = v
                .parse()
                .with_context(|| format!("TIDINGS_RATE_PER_SEC must be a number, got {v:?}"))?;
        }
        if let Some(v) = env("TIDINGS_RATE_BURST") {
            config.rate_burst = v
                .parse()
                .with_context(|| format!("TIDINGS_RATE_BURST must be a number, got {v:?}"))?;
        }
        let float = |name: &str, value: String| -> Result<f64> {
            value
                .parse()
                .with_context(|| format!("{name} must be a number, got {value:?}"))
        };
        if let Some(v) = env("TIDINGS_ALLOWED_ORIGINS") {
            config.allowed_origins = list(&v);
        }
        let limits = &mut config.limits;
        if let Some(v) = env("TIDINGS_MAX_OUT_BYTES") {
            limits.max_out_bytes = parse("TIDINGS_MAX_OUT_BYTES", v)?;
        }
        if let Some(v) = env("TIDINGS_MAX_REPLY_BYTES") {
            limits.max_reply_bytes = parse("TIDINGS_MAX_REPLY_BYTES", v)?;
        }
        if let Some(v) = env("TIDINGS_MAX_FRAME_BYTES") {
            limits.max_frame_bytes = parse("TIDINGS_MAX_FRAME_BYTES", v)? as u64;
        }
        if let Some(v) = env("TIDINGS_AUTH_TIMEOUT_MS") {
            limits.auth_timeout_ms = parse("TIDINGS_AUTH_TIMEOUT_MS", v)? as u64;
        }
        if let Some(v) = env("TIDINGS_DRAIN_TIMEOUT_MS") {
            limits.drain_timeout_ms = parse("TIDINGS_DRAIN_TIMEOUT_MS", v)? as u64;
        }
        if let Some(v) = env("TIDINGS_REQUEST_HEAD_TIMEOUT_MS") {
            limits.request_head_timeout_ms = parse("TIDINGS_REQUEST_HEAD_TIMEOUT_MS", v)? as u64;
        }
        if let Some(v) = env("TIDINGS_MAX_CONNS_PER_IP") {
            limits.max_conns_per_ip = parse("TIDINGS_MAX_CONNS_PER_IP", v)?;
        }
        if let Some(v) = env("TIDINGS_CONNECT_RATE_PER_IP") {
            limits.connect_rate_per_ip = float("TIDINGS_CONNECT_RATE_PER_IP", v)?;
        }
        if let Some(v) = env("TIDINGS_CONNECT_BURST_PER_IP") {
            limits.connect_burst_per_ip = float("TIDINGS_CONNECT_BURST_PER_IP", v)?;
        }
        if let Some(v) = env("TIDINGS_MAX_CONNS_PER_USER") {
            limits.max_conns_per_user = parse("TIDINGS_MAX_CONNS_PER_USER", v)?;
        }
        if let Some(v) = env("TIDINGS_USER_RATE_PER_SEC") {
            limits.user_rate_per_sec = float("TIDINGS_USER_RATE_PER_SEC", v)?;
        }
        if let Some(v) = env("TIDINGS_USER_RATE_BURST") {
            limits.user_rate_burst = float("TIDINGS_USER_RATE_BURST", v)?;
        }
        if let Some(v) = env("TIDINGS_OPS_LISTEN") {
            config.ops_listen = Some(v);
        }
        if let Some(v) = env("TIDINGS_NODE_ID") {
            config.node_id = v;
        }
        if let Some(v) = env("TIDINGS_LOG_FORMAT") {
            config.log_format = v;
        }
        if let Some(v) = env("TIDINGS_KAFKA_BROKERS") {
            config.kafka.brokers = v;
        }
        if let Some(v) = env("TIDINGS_KAFKA_LINGER_MS") {
            config.kafka.linger_ms = parse("TIDINGS_KAFKA_LINGER_MS", v)? as u32;
        }
        if let Some(v) = env("TIDINGS_KAFKA_FETCH_WAIT_MS") {
            config.kafka.fetch_wait_ms = parse("TIDINGS_KAFKA_FETCH_WAIT_MS", v)? as u32;
        }
        if let Some(v) = env("TIDINGS_KAFKA_REPLICATION_FACTOR") {
            config.kafka.replication_factor = v.parse().with_context(|| {
                format!("TIDINGS_KAFKA_REPLICATION_FACTOR must be a whole number, got {v:?}")
            })?;
        }
        if let Some(v) = env("TIDINGS_CASSANDRA") {
            config.cassandra.contact_points = list(&v);
        }
        if let Some(v) = env("TIDINGS_CASSANDRA_KEYSPACE") {
            config.cassandra.keyspace = v;
        }
        if let Some(v) = env("TIDINGS_CASSANDRA_CONSISTENCY") {
            config.cassandra.consistency = v;
        }
        if let Some(v) = env("TIDINGS_CASSANDRA_REPLICATION") {
            config.cassandra.replication = Some(v);
        }
        if let Some(v) = env("TIDINGS_TOPIC_RETENTION") {
            config.topic_retention = v;
        }
        if let Some(v) = env("TIDINGS_SERVICE_TOKENS") {
            config.service_tokens = list(&v);
        }
        let hooks = &mut config.webhooks;
        if let Some(v) = env("TIDINGS_WEBHOOKS") {
            hooks.endpoints = serde_json::from_str(&v).with_context(|| {
                "TIDINGS_WEBHOOKS must be a JSON array of {url, secret, rooms?, kinds?, name?}"
            })?;
        }
        if let Some(v) = env("TIDINGS_WEBHOOK_MAX_ATTEMPTS") {
            hooks.max_attempts = parse("TIDINGS_WEBHOOK_MAX_ATTEMPTS", v)? as u32;
        }
        if let Some(v) = env("TIDINGS_WEBHOOK_BASE_DELAY_MS") {
            hooks.base_delay_ms = parse("TIDINGS_WEBHOOK_BASE_DELAY_MS", v)? as u64;
        }
        if let Some(v) = env("TIDINGS_WEBHOOK_MAX_DELAY_MS") {
            hooks.max_delay_ms = parse("TIDINGS_WEBHOOK_MAX_DELAY_MS", v)? as u64;
        }
        if let Some(v) = env("TIDINGS_WEBHOOK_TIMEOUT_MS") {
            hooks.timeout_ms = parse("TIDINGS_WEBHOOK_TIMEOUT_MS", v)? as u64;
        }
        if let Some(v) = env("TIDINGS_WEBHOOK_CONCURRENCY") {
            hooks.concurrency = parse("TIDINGS_WEBHOOK_CONCURRENCY", v)?;
        }
        let presend = &mut config.presend;
        if let Some(v) = env("TIDINGS_PRESEND_URL") {
            presend.url = v;
        }
        if let Some(v) = env("TIDINGS_PRESEND_TIMEOUT_MS") {
            presend.timeout_ms = parse("TIDINGS_PRESEND_TIMEOUT_MS", v)? as u64;
        }
        if let Some(v) = env("TIDINGS_PRESEND_FAIL_OPEN") {
            presend.fail_open = matches!(v.as_str(), "1" | "true" | "yes");
        }
        if let Some(v) = env("TIDINGS_PRESEND_SECRET") {
            presend.secret = v;
        }
        config.validate()?;
        Ok(config)
    }

    /// The topics, with [`Config::topic_retention`] applied.
    pub fn topics(&self) -> Result<Vec<TopicSpec>> {
        let settings: topics::RetentionSettings = self
            .topic_retention
            .parse()
            .context("topic_retention (TIDINGS_TOPIC_RETENTION)")?;
        Ok(topics::configured(&settings))
    }

    fn validate(&self) -> Result<()> {
        self.topics()?;
        if self.jwt_leeway_secs > tidings_edge::auth::MAX_LEEWAY_SECS {
            bail!(
                "TIDINGS_JWT_LEEWAY_SECS (jwt_leeway_secs) must be at most {} (the client contract's bound on exp)",
                tidings_edge::auth::MAX_LEEWAY_SECS
            );
        }
        if self.jwt_max_lifetime_secs < 60 {
            bail!("TIDINGS_JWT_MAX_LIFETIME_SECS (jwt_max_lifetime_secs) must be at least 60");
        }
        if !self.jwks_url.is_empty() {
            if !(self.jwks_url.starts_with("https://") || self.jwks_url.starts_with("http://")) {
                bail!(
                    "TIDINGS_JWKS_URL must start with https:// (or http:// on a trusted network)"
                );
            }
            if self.jwks_min_refetch_secs == 0
                || self.jwks_refresh_secs < self.jwks_min_refetch_secs
            {
                bail!("TIDINGS_JWKS_MIN_REFETCH_SECS must be at least 1 and at most TIDINGS_JWKS_REFRESH_SECS");
            }
        }
        if self.max_text == 0 {
            bail!("max_text must be at least 1");
        }
        if !(self.rate_per_sec > 0.0 && self.rate_burst >= 1.0) {
            bail!("rate_per_sec must be above 0 and rate_burst at least 1");
        }
        let l = &self.limits;
        if l.max_out_bytes < 64 * 1024 || l.max_reply_bytes < 4 * 1024 {
            bail!("max_out_bytes must be at least 64 KiB and max_reply_bytes at least 4 KiB");
        }
        if l.max_reply_bytes > l.max_out_bytes {
            bail!("max_reply_bytes must not exceed max_out_bytes: no reply could be sent");
        }
        if l.max_frame_bytes < 1024 {
            bail!("max_frame_bytes must be at least 1 KiB");
        }
        if l.auth_timeout_ms < 100 || l.request_head_timeout_ms < 100 {
            bail!("auth_timeout_ms and request_head_timeout_ms must be at least 100");
        }
        if !(l.connect_rate_per_ip > 0.0 && l.connect_burst_per_ip >= 1.0) {
            bail!("connect_rate_per_ip must be above 0 and connect_burst_per_ip at least 1");
        }
        if !(l.user_rate_per_sec > 0.0 && l.user_rate_burst >= 1.0) {
            bail!("user_rate_per_sec must be above 0 and user_rate_burst at least 1");
        }
        if !matches!(self.log_format.as_str(), "json" | "text") {
            bail!("log_format must be json or text, got {:?}", self.log_format);
        }
        if !(1..=i16::MAX as i32).contains(&self.kafka.replication_factor) {
            bail!(
                "TIDINGS_KAFKA_REPLICATION_FACTOR (kafka.replication_factor) must be from 1 to {}, got {}",
                i16::MAX,
                self.kafka.replication_factor
            );
        }
        self.cassandra_replication()
            .context("TIDINGS_CASSANDRA_REPLICATION (cassandra.replication)")?;
        if parse_consistency(&self.cassandra.consistency).is_none() {
            bail!(
                "unknown Cassandra consistency {:?}",
                self.cassandra.consistency
            );
        }
        let keyspace_ok = !self.cassandra.keyspace.is_empty()
            && self.cassandra.keyspace.len() <= 48
            && self
                .cassandra
                .keyspace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !keyspace_ok {
            bail!("keyspace must be 1-48 letters, digits or _");
        }
        self.webhooks().map_err(anyhow::Error::msg)?;
        let p = &self.presend;
        if !p.url.is_empty() {
            if !(p.url.starts_with("http://") || p.url.starts_with("https://")) {
                bail!("presend url must start with http:// or https://");
            }
            if p.timeout_ms == 0 {
                bail!("presend timeout_ms must be at least 1");
            }
        }
        Ok(())
    }

    /// The webhook processor's settings, checked (default names filled in).
    pub fn webhooks(&self) -> std::result::Result<WebhookConfig, String> {
        let w = &self.webhooks;
        WebhookConfig {
            endpoints: w.endpoints.clone(),
            max_attempts: w.max_attempts,
            base_delay: Duration::from_millis(w.base_delay_ms),
            max_delay: Duration::from_millis(w.max_delay_ms),
            timeout: Duration::from_millis(w.timeout_ms),
            concurrency: w.concurrency,
        }
        .checked()
    }

    /// Whether client tokens have any key: a secret, PEM files or a JWKS.
    pub fn has_token_keys(&self) -> bool {
        !self.jwt_secret.is_empty() || !self.jwt_public_keys.is_empty() || !self.jwks_url.is_empty()
    }

    /// The JWKS settings, if a URL is configured.
    pub fn jwks(&self) -> Option<tidings_edge::jwks::JwksConfig> {
        (!self.jwks_url.is_empty()).then(|| tidings_edge::jwks::JwksConfig {
            min_interval: Duration::from_secs(self.jwks_min_refetch_secs),
            refresh: Duration::from_secs(self.jwks_refresh_secs),
            ..tidings_edge::jwks::JwksConfig::new(&self.jwks_url)
        })
    }

    /// The pre-send hook, if a URL is configured.
    pub fn presend(&self) -> Option<PresendConfig> {
        let p = &self.presend;
        (!p.url.is_empty()).then(|| PresendConfig {
            url: p.url.clone(),
            timeout: Duration::from_millis(p.timeout_ms),
            fail_open: p.fail_open,
            secret: p.secret.clone(),
        })
    }

    pub fn kafka(&self) -> KafkaConfig {
        let mut kafka = KafkaConfig::new(&self.kafka.brokers);
        kafka.linger_ms = self.kafka.linger_ms;
        kafka.fetch_wait_ms = self.kafka.fetch_wait_ms;
        kafka.replication_factor = self.kafka.replication_factor;
        kafka
    }

    /// `cassandra.replication` if set, else SimpleStrategy with `cassandra.replication_factor`.
    fn cassandra_replication(
        &self,
    ) -> Result<Replication, tidings_store::cassandra::ReplicationError> {
        match &self.cassandra.replication {
            Some(text) => text.parse(),
            None => Ok(Replication::Simple(self.cassandra.replication_factor)),
        }
    }

    pub fn cassandra(&self) -> CassandraConfig {
        let mut cassandra = CassandraConfig::new(self.cassandra.contact_points.clone());
        cassandra.keyspace = self.cassandra.keyspace.clone();
        // Checked in validate().
        if let Ok(replication) = self.cassandra_replication() {
            cassandra.replication = replication.to_cql();
        }
        // Checked in validate().
        if let Some(c) = parse_consistency(&self.cassandra.consistency) {
            cassandra.consistency = c;
        }
        cassandra.bucket_size = self.cassandra.bucket_size;
        cassandra
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_match_the_client_contract() {
        let config = Config::load(None, env(&[])).unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.max_text, 4000);
        assert!(config.blocked_terms.is_empty());
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tidings.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:9000\"\nmax_text = 10\n[cassandra]\nkeyspace = \"chat\"\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&file),
            env(&[
                ("TIDINGS_MAX_TEXT", "20"),
                ("TIDINGS_BLOCKED_TERMS", " spam, Eggs ,,"),
                ("TIDINGS_KAFKA_LINGER_MS", "3"),
                ("TIDINGS_KAFKA_FETCH_WAIT_MS", "7"),
                ("TIDINGS_RATE_PER_SEC", "500"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen, "0.0.0.0:9000");
        assert_eq!(config.max_text, 20);
        assert_eq!(config.blocked_terms, vec!["spam", "Eggs"]);
        assert_eq!(config.cassandra().keyspace, "chat");
        assert_eq!(
            (config.kafka().linger_ms, config.kafka().fetch_wait_ms),
            (3, 7)
        );
        assert_eq!(config.rate_per_sec, 500.0);
    }

    #[test]
    fn topic_retention_comes_from_the_file_or_the_environment_and_is_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tidings.toml");
        std::fs::write(&file, "topic_retention = \"tidings.room-log=30d\"\n").unwrap();
        let retention = |config: &Config, name: &str| {
            config
                .topics()
                .unwrap()
                .into_iter()
                .find(|t| t.name == name)
                .unwrap()
                .retention_ms
        };
        let from_file = Config::load(Some(&file), env(&[])).unwrap();
        assert_eq!(
            retention(&from_file, topics::ROOM_LOG),
            Some(30 * 24 * 3600 * 1000)
        );
        let from_env = Config::load(
            Some(&file),
            env(&[("TIDINGS_TOPIC_RETENTION", "tidings.typing=5m")]),
        )
        .unwrap();
        assert_eq!(retention(&from_env, topics::ROOM_LOG), None);
        assert_eq!(retention(&from_env, topics::TYPING), Some(300_000));
        let refused =
            Config::load(None, env(&[("TIDINGS_TOPIC_RETENTION", "tidings.nope=1d")])).unwrap_err();
        assert!(
            format!("{refused:#}").contains("unknown topic \"tidings.nope\""),
            "{refused:#}"
        );
    }

    #[test]
    fn webhooks_and_the_hook_come_from_the_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tidings.toml");
        std::fs::write(
            &file,
            "[webhooks]\nmax_attempts = 3\n[[webhooks.endpoints]]\nurl = \"http://a/\"\n\
             secret = \"k\"\nrooms = \"team-a.*\"\n[presend]\nurl = \"http://h/\"\n",
        )
        .unwrap();
        let config =
            Config::load(Some(&file), env(&[("TIDINGS_PRESEND_FAIL_OPEN", "true")])).unwrap();
        let hooks = config.webhooks().unwrap();
        assert_eq!(hooks.max_attempts, 3);
        assert_eq!(hooks.endpoints[0].name, "endpoint-1");
        assert_eq!(hooks.endpoints[0].kinds, ["message"]);
        let presend = config.presend().unwrap();
        assert_eq!(
            (presend.url.as_str(), presend.fail_open),
            ("http://h/", true)
        );
        assert_eq!(presend.timeout, Duration::from_millis(1000));

        let config = Config::load(
            None,
            env(&[
                (
                    "TIDINGS_WEBHOOKS",
                    r#"[{"name":"ops","url":"https://o/","secret":"s","kinds":["read","host"]}]"#,
                ),
                ("TIDINGS_WEBHOOK_BASE_DELAY_MS", "10"),
                ("TIDINGS_SERVICE_TOKENS", "t1, t2"),
            ]),
        )
        .unwrap();
        let hooks = config.webhooks().unwrap();
        assert_eq!(hooks.endpoints[0].rooms, "*");
        assert_eq!(hooks.base_delay, Duration::from_millis(10));
        assert_eq!(config.service_tokens, ["t1", "t2"]);
        assert!(config.presend().is_none());
        assert!(Config::load(None, env(&[("TIDINGS_WEBHOOKS", "nope")])).is_err());
        assert!(Config::load(
            None,
            env(&[("TIDINGS_WEBHOOKS", r#"[{"url":"http://a/","secret":""}]"#)])
        )
        .is_err());
        assert!(Config::load(None, env(&[("TIDINGS_PRESEND_URL", "h")])).is_err());
    }

    #[test]
    fn token_keys_and_rules_come_from_the_environment_and_are_checked() {
        let config = Config::load(None, env(&[])).unwrap();
        assert!(!config.has_token_keys());
        assert!(config.jwks().is_none());
        assert_eq!(
            (config.jwt_leeway_secs, config.jwt_max_lifetime_secs),
            (5, 86_400)
        );
        let config = Config::load(
            None,
            env(&[
                (
                    "TIDINGS_JWKS_URL",
                    "https://idp.example/.well-known/jwks.json",
                ),
                ("TIDINGS_JWKS_MIN_REFETCH_SECS", "2"),
                ("TIDINGS_JWT_PUBLIC_KEYS", "/etc/a.pem, /etc/b.pem"),
                ("TIDINGS_JWT_ISSUER", "https://idp.example/"),
                ("TIDINGS_JWT_AUDIENCE", "chat,tidings"),
                ("TIDINGS_JWT_LEEWAY_SECS", "30"),
                ("TIDINGS_JWT_MAX_LIFETIME_SECS", "3600"),
            ]),
        )
        .unwrap();
        assert!(config.has_token_keys());
        let jwks = config.jwks().unwrap();
        assert_eq!(jwks.min_interval, Duration::from_secs(2));
        assert_eq!(jwks.refresh, Duration::from_secs(300));
        assert_eq!(
            config.jwt_public_keys,
            [PathBuf::from("/etc/a.pem"), PathBuf::from("/etc/b.pem")]
        );
        assert_eq!(config.jwt_audience, ["chat", "tidings"]);
        assert_eq!(config.jwt_leeway_secs, 30);
        for (name, value) in [
            ("TIDINGS_JWT_LEEWAY_SECS", "31"),
            ("TIDINGS_JWKS_URL", "ftp://idp/jwks"),
            ("TIDINGS_JWT_MAX_LIFETIME_SECS", "10"),
        ] {
            let err = Config::load(None, env(&[(name, value)])).unwrap_err();
            assert!(format!("{err:#}").contains(name), "{err:#}");
        }
        assert!(Config::load(
            None,
            env(&[
                ("TIDINGS_JWKS_URL", "https://idp/jwks"),
                ("TIDINGS_JWKS_MIN_REFETCH_SECS", "0")
            ])
        )
        .is_err());
    }

    #[test]
    fn bad_settings_are_refused_with_the_setting_named() {
        let err = Config::load(None, env(&[("TIDINGS_MAX_TEXT", "lots")])).unwrap_err();
        assert!(err.to_string().contains("TIDINGS_MAX_TEXT"), "{err}");
        assert!(Config::load(None, env(&[("TIDINGS_CASSANDRA_CONSISTENCY", "MOST")])).is_err());
        assert!(Config::load(None, env(&[("TIDINGS_CASSANDRA_KEYSPACE", "drop table;")])).is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "lisen = \"typo\"\n").unwrap();
        assert!(
            Config::load(Some(&file), env(&[])).is_err(),
            "unknown keys are errors"
        );
        for (name, value) in [
            (
                "TIDINGS_CASSANDRA_REPLICATION",
                "NetworkTopologyStrategy:dc1",
            ),
            ("TIDINGS_KAFKA_REPLICATION_FACTOR", "0"),
            ("TIDINGS_KAFKA_REPLICATION_FACTOR", "three"),
        ] {
            let err = Config::load(None, env(&[(name, value)])).unwrap_err();
            assert!(format!("{err:#}").contains(name), "{err:#}");
        }
    }

    #[test]
    fn replication_comes_from_the_environment_or_the_file() {
        let config = Config::load(None, env(&[])).unwrap();
        assert_eq!(config.kafka().replication_factor, 1);
        assert_eq!(
            config.cassandra().replication,
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
        let config = Config::load(
            None,
            env(&[
                ("TIDINGS_KAFKA_REPLICATION_FACTOR", "3"),
                (
                    "TIDINGS_CASSANDRA_REPLICATION",
                    "NetworkTopologyStrategy:dc1=3,dc2=2",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(config.kafka().replication_factor, 3);
        assert_eq!(
            config.cassandra().replication,
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tidings.toml");
        std::fs::write(&file, "[cassandra]\nreplication_factor = 3\n").unwrap();
        let config = Config::load(Some(&file), env(&[])).unwrap();
        assert_eq!(
            config.cassandra().replication,
            "{'class': 'SimpleStrategy', 'replication_factor': 3}"
        );
        std::fs::write(
            &file,
            "[cassandra]\nreplication_factor = 3\nreplication = \"SimpleStrategy:2\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&file), env(&[])).unwrap();
        assert_eq!(
            config.cassandra().replication,
            "{'class': 'SimpleStrategy', 'replication_factor': 2}",
            "replication wins over replication_factor"
        );
    }
}
