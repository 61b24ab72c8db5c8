//! Who may connect, and how much: TCP connections and connect rate per IP address, Socket.IO
//! connections and event rate per user, and the Origin allow-list of browser pages. Each cap
//! is per edge; its action is explicit (a refused TCP connection gets `429` and is closed, a
//! refused Socket.IO connection gets the connect error `rate_limited`, an event over the
//! user's rate gets `rate_limited`).

use crate::config::EdgeConfig;
use crate::limits::TokenBucket;
use crate::state::lock;
use axum::http::{header, HeaderMap, StatusCode};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Addresses and users tracked at once: past it, idle entries are forgotten, and if none is
/// idle, new ones are refused, so a flood of addresses cannot grow the tables without bound.
const MAX_TRACKED: usize = 100_000;

struct IpState {
    conns: usize,
    connects: TokenBucket,
}

struct UserState {
    conns: usize,
    events: Arc<Mutex<TokenBucket>>,
}

pub struct Admission {
    max_conns_per_ip: usize,
    connects_per_sec: f64,
    connects_burst: f64,
    max_conns_per_user: usize,
    user_events_per_sec: f64,
    user_events_burst: f64,
    ips: Mutex<HashMap<IpAddr, IpState>>,
    users: Mutex<HashMap<String, UserState>>,
}

/// Held while a TCP connection is open; gives its place back when dropped.
pub struct IpSlot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

/// Held while a user's Socket.IO connection is open; its events draw on the user's bucket.
pub struct UserSlot {
    admission: Arc<Admission>,
    user: String,
    pub events: Arc<Mutex<TokenBucket>>,
}

impl Admission {
    pub fn new(config: &EdgeConfig) -> Arc<Self> {
        Arc::new(Self {
            max_conns_per_ip: config.max_conns_per_ip,
            connects_per_sec: config.connects_per_sec_per_ip,
            connects_burst: config.connects_burst_per_ip,
            max_conns_per_user: config.max_conns_per_user,
            user_events_per_sec: config.user_events_per_sec,
            user_events_burst: config.user_events_burst,
            ips: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
        })
    }

    /// A new TCP connection from `ip`, or why not.
    pub fn accept(self: &Arc<Self>, ip: IpAddr) -> Result<IpSlot, &'static str> {
        let mut ips = lock(&self.ips);
        if ips.len() >= MAX_TRACKED && !ips.contains_key(&ip) {
            ips.retain(|_, s| s.conns > 0);
            if ips.len() >= MAX_TRACKED {
                return Err("too many addresses");
            }
        }
        let state = ips.entry(ip).or_insert_with(|| IpState {
            conns: 0,
            connects: TokenBucket::new(self.connects_per_sec, self.connects_burst),
        });
        if self.max_conns_per_ip > 0 && state.conns >= self.max_conns_per_ip {
            return Err("too many connections from this address");
        }
        if state.connects.take(Instant::now()).is_err() {
            return Err("connecting too fast");
        }
        state.conns += 1;
        Ok(IpSlot {
            admission: self.clone(),
            ip,
        })
    }

    /// A new Socket.IO connection of `user`, or none if the user is at the cap (or the
    /// table of users is full).
    pub fn join_user(self: &Arc<Self>, user: &str) -> Option<UserSlot> {
        let mut users = lock(&self.users);
        if users.len() >= MAX_TRACKED && !users.contains_key(user) {
            return None;
        }
        let state = users.entry(user.to_string()).or_insert_with(|| UserState {
            conns: 0,
            events: Arc::new(Mutex::new(TokenBucket::new(
                self.user_events_per_sec,
                self.user_events_burst,
            ))),
        });
        if self.max_conns_per_user > 0 && state.conns >= self.max_conns_per_user {
            return None;
        }
        state.conns += 1;
        Some(UserSlot {
            admission: self.clone(),
            user: user.to_string(),
            events: state.events.clone(),
        })
    }

    /// Open TCP connections from `ip`.
    #[cfg(test)]
    pub fn conns_from(&self, ip: IpAddr) -> usize {
        lock(&self.ips).get(&ip).map_or(0, |s| s.conns)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut ips = lock(&self.admission.ips);
        if let Some(state) = ips.get_mut(&self.ip) {
            state.conns = state.conns.saturating_sub(1);
            // Kept while it still limits the connect rate; [`Admission::accept`] prunes the
            // rest when the table is full.
            if state.conns == 0 && state.connects.is_full(Instant::now()) {
                ips.remove(&self.ip);
            }
        }
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut users = lock(&self.admission.users);
        if let Some(state) = users.get_mut(&self.user) {
            state.conns = state.conns.saturating_sub(1);
            if state.conns == 0 {
                users.remove(&self.user);
            }
        }
    }
}

/// Which browser pages may open Socket.IO connections: the edge's own origin, the listed
/// ones, and loopback pages if allowed. Requests without `Origin` are not from a browser page
/// (native and server clients) and pass: the check exists to stop other sites' pages from
/// using a visitor's browser.
pub struct OriginPolicy {
    any: bool,
    allowed: Vec<String>,
    loopback: bool,
}

impl OriginPolicy {
    pub fn new(config: &EdgeConfig) -> Self {
        Self {
            any: config.allowed_origins.iter().any(|o| o == "*"),
            allowed: config
                .allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            loopback: config.allow_loopback_origins,
        }
    }

    /// `403` for a browser page this edge does not serve.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), StatusCode> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin
            .to_str()
            .map_err(|_| StatusCode::FORBIDDEN)?
            .to_ascii_lowercase();
        if self.any || self.allowed.contains(&origin) {
            return Ok(());
        }
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .ok_or(StatusCode::FORBIDDEN)?;
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase);
        if host.as_deref() == Some(authority) {
            return Ok(());
        }
        if self.loopback && is_loopback_authority(authority) {
            return Ok(());
        }
        Err(StatusCode::FORBIDDEN)
    }
}

fn is_loopback_authority(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    host == "localhost"
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EdgeConfig {
        let mut c = EdgeConfig::new("k");
        c.max_conns_per_ip = 2;
        c.connects_per_sec_per_ip = 0.001;
        c.connects_burst_per_ip = 3.0;
        c.max_conns_per_user = 1;
        c
    }

    #[test]
    fn connections_per_ip_are_capped_and_given_back() {
        let a = Admission::new(&config());
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let one = a.accept(ip).unwrap();
        let _two = a.accept(ip).unwrap();
        assert!(a.accept(ip).is_err(), "third concurrent connection");
        assert!(
            a.accept("127.0.0.10".parse().unwrap()).is_ok(),
            "other address"
        );
        drop(one);
        assert_eq!(a.conns_from(ip), 1);
        let three = a.accept(ip).unwrap();
        drop(three);
        // The burst of 3 connects is spent: the rate cap refuses the next one.
        assert_eq!(a.accept(ip).err(), Some("connecting too fast"));
    }

    #[test]
    fn connections_per_user_are_capped() {
        let a = Admission::new(&config());
        let slot = a.join_user("ada").expect("first connection");
        assert!(
            a.join_user("ada").is_none(),
            "second one, over the cap of 1"
        );
        assert!(a.join_user("bob").is_some());
        drop(slot);
        assert!(a.join_user("ada").is_some());
    }

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, host.parse().unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, o.parse().unwrap());
        }
        h
    }

    #[test]
    fn origins_same_listed_loopback_or_none() {
        let mut c = config();
        c.allowed_origins = vec!["https://chat.example.com".into()];
        let p = OriginPolicy::new(&c);
        assert!(p.check(&headers(None, "edge:8080")).is_ok());
        assert!(p
            .check(&headers(Some("http://edge:8080"), "edge:8080"))
            .is_ok());
        assert!(p
            .check(&headers(Some("https://chat.example.com"), "edge:8080"))
            .is_ok());
        assert!(p
            .check(&headers(Some("https://evil.example"), "edge:8080"))
            .is_err());
        assert!(p
            .check(&headers(Some("http://localhost:3000"), "edge:8080"))
            .is_err());
        assert!(p.check(&headers(Some("null"), "edge:8080")).is_err());
        c.allow_loopback_origins = true;
        let p = OriginPolicy::new(&c);
        assert!(p
            .check(&headers(Some("http://localhost:3000"), "edge:8080"))
            .is_ok());
        assert!(p
            .check(&headers(Some("http://127.0.0.5:1"), "edge:8080"))
            .is_ok());
        assert!(p
            .check(&headers(Some("http://[::1]:80"), "edge:8080"))
            .is_ok());
        assert!(p
            .check(&headers(Some("http://localhost.evil.example"), "edge:8080"))
            .is_err());
        c.allowed_origins = vec!["*".into()];
        assert!(OriginPolicy::new(&c)
            .check(&headers(Some("https://evil.example"), "e"))
            .is_ok());
    }
}
