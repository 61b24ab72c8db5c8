//! The edge's settings. The binary fills them from its config file and the environment.

use crate::jwks::JwksConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything an edge needs to know to serve.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Address:port to serve HTTP and Socket.IO on (`TIDINGS_LISTEN`).
    pub listen: SocketAddr,
    /// This edge's node id; its deliveries are keyed by it (`edge-<uuid>` by default).
    pub node: String,
    /// HS256 key for client tokens (`TIDINGS_JWT_SECRET`); empty: HS256 tokens are refused
    /// (then public keys or a JWKS must be configured).
    pub jwt_secret: String,
    /// PEM public keys client tokens may be signed with (`TIDINGS_JWT_PUBLIC_KEYS`).
    pub jwt_public_key_files: Vec<PathBuf>,
    /// The identity provider's JWKS (`TIDINGS_JWKS_URL`), and how it is fetched.
    pub jwks: Option<JwksConfig>,
    /// Accepted `iss` values (`TIDINGS_JWT_ISSUER`); empty: not checked.
    pub jwt_issuers: Vec<String>,
    /// Accepted `aud` values (`TIDINGS_JWT_AUDIENCE`); empty: tokens with `aud` are refused.
    pub jwt_audiences: Vec<String>,
    /// Leeway on `exp`, `nbf` and `iat` in seconds, at most 30 (`TIDINGS_JWT_LEEWAY_SECS`).
    pub jwt_leeway_secs: u64,
    /// Longest a token may still be valid for when presented (`TIDINGS_JWT_MAX_LIFETIME_SECS`);
    /// also how long a revocation lasts by default.
    pub max_token_lifetime: Duration,
    /// Longest message text in characters (`TIDINGS_MAX_TEXT`); longer → `too_large`.
    pub max_text_chars: usize,
    /// Serve `POST /dev/token` (standalone only: it mints tokens for anyone).
    pub dev_tokens: bool,
    /// Sustained events per second per connection (token bucket refill).
    pub events_per_sec: f64,
    /// Token bucket size: events a connection may send in a burst.
    pub events_burst: f64,
    /// Rooms one connection may be in at once.
    pub max_rooms_per_conn: usize,
    /// Largest event payload (JSON) the edge accepts; larger → `too_large`.
    pub max_event_bytes: usize,
    /// Largest Engine.IO payload, WebSocket frame and message: larger ones close the
    /// connection, refused from the frame header or the polling body before being buffered.
    pub max_payload_bytes: u64,
    /// Initial WebSocket read buffer per connection; it grows for a larger frame. Small,
    /// because idle connections are most connections.
    pub ws_read_buffer_bytes: usize,
    /// Packets buffered per connection before it counts as too slow and is dropped.
    pub max_buffer_packets: usize,
    /// Sends awaiting their ack per connection; more → `rate_limited`.
    pub max_pending_sends: usize,
    /// Live messages buffered per (connection, room) while a join or gap fill runs;
    /// more → the connection is dropped.
    pub max_join_buffer: usize,
    /// The same bound in bytes of message JSON.
    pub max_join_buffer_bytes: usize,
    /// How long a send or join waits for the processors' answer before `unavailable`.
    pub reply_timeout: Duration,
    /// How long catch-up waits for the store to reach the needed seq before `unavailable`.
    pub catchup_timeout: Duration,
    /// On shutdown, how long requests in progress (sends awaiting their ack) may take to
    /// finish before the connections are closed.
    pub drain_timeout: Duration,
    /// How long a client may take to send its HTTP request head; then it is disconnected.
    pub request_head_timeout: Duration,
    /// How often the delivery consumer lag is sampled.
    pub lag_sample_interval: Duration,
    /// Bytes a connection may have queued for it and not yet read (replies, history and
    /// catch-up included); past it the connection is dropped as `slow_consumer`.
    pub max_out_bytes: usize,
    /// Largest reply: a `history` page is cut there (`has_more: true`).
    pub max_reply_bytes: usize,
    /// Requests one connection may have in progress at once (sends count separately, in
    /// `max_pending_sends`); more → `rate_limited`.
    pub max_requests_in_flight: usize,
    /// How long a new TCP connection may go without an authenticated client on it.
    pub auth_timeout: Duration,
    /// TCP connections one IP address may hold on this edge (0: no cap).
    pub max_conns_per_ip: usize,
    /// New TCP connections per second one IP address may open, and the burst above that.
    pub connects_per_sec_per_ip: f64,
    pub connects_burst_per_ip: f64,
    /// Socket.IO connections one user (`sub`) may hold on this edge (0: no cap).
    pub max_conns_per_user: usize,
    /// Events per second one user may send across all their connections on this edge.
    pub user_events_per_sec: f64,
    pub user_events_burst: f64,
    /// Origins (`scheme://host[:port]`, or `*` for any) a browser page may connect from, on
    /// top of the edge's own origin.
    pub allowed_origins: Vec<String>,
    /// Also allow pages served from loopback (`localhost`, `127.0.0.0/8`, `[::1]`).
    pub allow_loopback_origins: bool,
    /// Bearer tokens accepted by `POST /api/publish`; none: the route does not exist.
    pub service_tokens: Vec<String>,
}

impl EdgeConfig {
    /// The defaults, with a fresh node id and the given JWT secret.
    pub fn new(jwt_secret: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            node: new_node_id(),
            jwt_secret: jwt_secret.into(),
            jwt_public_key_files: Vec::new(),
            jwks: None,
            jwt_issuers: Vec::new(),
            jwt_audiences: Vec::new(),
            jwt_leeway_secs: crate::auth::CLOCK_LEEWAY_SECS,
            max_token_lifetime: Duration::from_secs(24 * 60 * 60),
            max_text_chars: 4000,
            dev_tokens: false,
            events_per_sec: 20.0,
            events_burst: 40.0,
            max_rooms_per_conn: 100,
            max_event_bytes: 32 * 1024,
            max_payload_bytes: 64 * 1024,
            ws_read_buffer_bytes: 1024,
            max_buffer_packets: 1024,
            max_pending_sends: 64,
            max_join_buffer: 10_000,
            max_join_buffer_bytes: 4 * 1024 * 1024,
            reply_timeout: Duration::from_secs(10),
            catchup_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            request_head_timeout: Duration::from_secs(10),
            lag_sample_interval: Duration::from_secs(5),
            max_out_bytes: 1024 * 1024,
            max_reply_bytes: 256 * 1024,
            max_requests_in_flight: 16,
            auth_timeout: Duration::from_secs(10),
            max_conns_per_ip: 1000,
            connects_per_sec_per_ip: 100.0,
            connects_burst_per_ip: 1000.0,
            max_conns_per_user: 64,
            user_events_per_sec: 50.0,
            user_events_burst: 100.0,
            allowed_origins: Vec::new(),
            allow_loopback_origins: false,
            service_tokens: Vec::new(),
        }
    }
}

/// A fresh `edge-<uuid>` node id.
pub fn new_node_id() -> String {
    format!("edge-{}", uuid::Uuid::new_v4())
}
