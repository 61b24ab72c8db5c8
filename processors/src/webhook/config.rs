//! Which room events go to which URLs, and how hard to try. Pure: checked once at start-up.

use serde::Deserialize;
use std::time::Duration;

/// Room-log kinds an endpoint may ask for.
pub const KINDS: &[&str] = &["message", "read", "host", "unhost", "delete", "mute"];

/// One receiver of room events.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Label in metrics, logs and dead letters; `endpoint-<n>` (1-based position) when empty.
    #[serde(default)]
    pub name: String,
    /// `http://` or `https://` URL the events are POSTed to.
    pub url: String,
    /// HMAC-SHA256 key of `X-Tidings-Signature`.
    pub secret: String,
    /// Glob over room names: `*` any run of characters, `?` one character.
    #[serde(default = "any_room")]
    pub rooms: String,
    /// Room-log kinds delivered (see [`KINDS`]).
    #[serde(default = "messages_only")]
    pub kinds: Vec<String>,
}

fn any_room() -> String {
    "*".into()
}

fn messages_only() -> Vec<String> {
    vec!["message".into()]
}

impl Endpoint {
    /// Whether this endpoint wants an event of `kind` in `room`.
    pub fn wants(&self, room: &str, kind: &str) -> bool {
        self.kinds.iter().any(|k| k == kind) && glob_matches(&self.rooms, room)
    }
}

/// The webhook processor's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub endpoints: Vec<Endpoint>,
    /// Tries per event and endpoint before it goes to the webhook dead-letter topic.
    pub max_attempts: u32,
    /// Pause after the first failure; it doubles after each one, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// One POST, connect to last byte.
    pub timeout: Duration,
    /// POSTs in flight at once, over all rooms and endpoints.
    pub concurrency: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            max_attempts: 8,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            concurrency: 32,
        }
    }
}

impl WebhookConfig {
    /// Fills in default names and refuses what could never work, naming the endpoint.
    pub fn checked(mut self) -> Result<Self, String> {
        for (i, e) in self.endpoints.iter_mut().enumerate() {
            if e.name.is_empty() {
                e.name = format!("endpoint-{}", i + 1);
            }
            let who = &e.name;
            if !(e.url.starts_with("http://") || e.url.starts_with("https://")) {
                return Err(format!(
                    "webhook {who}: url must start with http:// or https://"
                ));
            }
            if e.secret.is_empty() {
                return Err(format!("webhook {who}: secret must not be empty"));
            }
            if e.rooms.is_empty() {
                return Err(format!(
                    "webhook {who}: rooms must not be empty (\"*\" for all)"
                ));
            }
            if e.kinds.is_empty() {
                return Err(format!("webhook {who}: kinds must not be empty"));
            }
            if let Some(bad) = e.kinds.iter().find(|k| !KINDS.contains(&k.as_str())) {
                return Err(format!(
                    "webhook {who}: unknown kind {bad:?} (known: {})",
                    KINDS.join(", ")
                ));
            }
        }
        let mut names: Vec<&str> = self.endpoints.iter().map(|e| e.name.as_str()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("webhook name {:?} is used twice", pair[0]));
        }
        if self.max_attempts == 0 {
            return Err("webhook max_attempts must be at least 1".into());
        }
        if self.base_delay > self.max_delay {
            return Err("webhook base delay must not exceed the max delay".into());
        }
        if self.concurrency == 0 || self.timeout.is_zero() {
            return Err("webhook concurrency and timeout must be above 0".into());
        }
        Ok(self)
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters (also none)
/// and `?` for exactly one; everything else is literal. Linear backtracking over the last `*`.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and where in `text` its run currently ends.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((s, mark)) = star {
            // Let the last `*` take one more character and try again after it.
            star = Some((s, mark + 1));
            pi = s + 1;
            ti = mark + 1;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_shell_patterns_over_room_names() {
        let yes = [
            ("*", "anything"),
            ("*", ""),
            ("team-a.*", "team-a.general"),
            ("team-a.*", "team-a."),
            ("team-?.dev", "team-b.dev"),
            ("*.alerts", "ops.eu.alerts"),
            ("a*b*c", "aXXbYYc"),
            ("a*b*c", "abc"),
            ("exact", "exact"),
            ("dm:*", "dm:ann:bob"),
        ];
        for (p, t) in yes {
            assert!(glob_matches(p, t), "{p} should match {t}");
        }
        let no = [
            ("team-a.*", "team-b.general"),
            ("team-a.*", "team-a"),
            ("team-?.dev", "team-ab.dev"),
            ("*.alerts", "ops.alerts.old"),
            ("a*b*c", "aXXbYY"),
            ("exact", "exactly"),
            ("exact", "Exact"),
            ("", "x"),
        ];
        for (p, t) in no {
            assert!(!glob_matches(p, t), "{p} should not match {t}");
        }
    }

    #[test]
    fn endpoints_filter_by_room_and_kind() {
        let e = Endpoint {
            name: "a".into(),
            url: "http://127.0.0.1:1/".into(),
            secret: "s".into(),
            rooms: "team-a.*".into(),
            kinds: vec!["message".into(), "read".into()],
        };
        assert!(e.wants("team-a.x", "message"));
        assert!(e.wants("team-a.x", "read"));
        assert!(!e.wants("team-a.x", "host"));
        assert!(!e.wants("team-b.x", "message"));
    }

    #[test]
    fn bad_settings_are_refused_and_names_filled_in() {
        let endpoint = |url: &str, kinds: &[&str]| Endpoint {
            name: String::new(),
            url: url.into(),
            secret: "k".into(),
            rooms: "*".into(),
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
        };
        let config = |endpoints| WebhookConfig {
            endpoints,
            ..WebhookConfig::default()
        };
        let ok = config(vec![
            endpoint("http://a/", &["message"]),
            endpoint("https://b/", &["host", "unhost"]),
        ])
        .checked()
        .expect("valid");
        assert_eq!(ok.endpoints[0].name, "endpoint-1");
        assert_eq!(ok.endpoints[1].name, "endpoint-2");
        assert!(config(vec![endpoint("ftp://a/", &["message"])])
            .checked()
            .is_err());
        assert!(config(vec![endpoint("http://a/", &["typing"])])
            .checked()
            .is_err());
        assert!(config(vec![endpoint("http://a/", &[])]).checked().is_err());
        let mut no_secret = endpoint("http://a/", &["message"]);
        no_secret.secret.clear();
        assert!(config(vec![no_secret]).checked().is_err());
        let mut twice = config(vec![
            endpoint("http://a/", &["message"]),
            endpoint("http://b/", &["message"]),
        ]);
        twice.endpoints[0].name = "x".into();
        twice.endpoints[1].name = "x".into();
        assert!(twice.checked().is_err());
        let zero = WebhookConfig {
            max_attempts: 0,
            ..WebhookConfig::default()
        };
        assert!(zero.checked().is_err());
    }
}
