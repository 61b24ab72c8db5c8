//! Who may do what, from a token's `rooms` and `role` claims (v3 contract).
//!
//! `rooms` lists patterns; `*` stands for any run of characters, the empty one included. A
//! pattern ending in `=read` grants reading only (`join`, `history`, `presence`, `read`);
//! any other grants reading and writing (`send`, `typing`). `=` never occurs in a room
//! name, so the suffix cannot be mistaken for part of one. Without the claim every room
//! is open except other users' direct-message rooms; with it, a DM room must match too and
//! still belongs to its two users only.

use crate::errors::ClientError;
use tidings_schemas::rooms;

/// Most patterns a token may carry, and the longest pattern: what a check costs is bounded.
pub const MAX_PATTERNS: usize = 100;
pub const MAX_PATTERN_CHARS: usize = 140;
/// The suffix of a read-only pattern.
pub const READ_ONLY_SUFFIX: &str = "=read";

/// A token's `role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Member,
    /// Deletes any message and mutes users in the rooms it may use.
    Moderator,
    /// A moderator in every room it may use, and the admin API.
    Admin,
}

impl Role {
    pub fn parse(claim: Option<&str>) -> Result<Self, String> {
        match claim {
            None | Some("member") => Ok(Role::Member),
            Some("moderator") => Ok(Role::Moderator),
            Some("admin") => Ok(Role::Admin),
            Some(other) => Err(format!("role {other:?} is not member, moderator or admin")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }

    pub fn moderates(self) -> bool {
        self >= Role::Moderator
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    glob: String,
    write: bool,
}

/// What one connection's token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// `None`: no `rooms` claim.
    patterns: Option<Vec<Pattern>>,
    pub role: Role,
}

impl Default for Access {
    fn default() -> Self {
        Self {
            patterns: None,
            role: Role::Member,
        }
    }
}

fn valid_glob(glob: &str) -> bool {
    !glob.is_empty()
        && glob.chars().count() <= MAX_PATTERN_CHARS
        && glob
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-' | '*'))
}

impl Access {
    /// From the claims; a malformed claim makes the token unusable (`unauthorized`).
    pub fn from_claims(rooms: Option<&[String]>, role: Option<&str>) -> Result<Self, String> {
        let role = Role::parse(role)?;
        let patterns = match rooms {
            None => None,
            Some(list) => {
                if list.len() > MAX_PATTERNS {
                    return Err(format!("rooms has more than {MAX_PATTERNS} patterns"));
                }
                let mut patterns = Vec::with_capacity(list.len());
                for item in list {
                    let (glob, write) = match item.strip_suffix(READ_ONLY_SUFFIX) {
                        Some(glob) => (glob, false),
                        None => (item.as_str(), true),
                    };
                    if !valid_glob(glob) {
                        return Err(format!(
                            "rooms pattern {item:?} must be 1 to {MAX_PATTERN_CHARS} of A-Z a-z 0-9 . _ : - *, optionally followed by {READ_ONLY_SUFFIX}"
                        ));
                    }
                    patterns.push(Pattern {
                        glob: glob.to_string(),
                        write,
                    });
                }
                Some(patterns)
            }
        };
        Ok(Self { patterns, role })
    }

    /// (may read, may write) `room`, for `user`.
    fn grants(&self, room: &str, user: &str) -> (bool, bool) {
        if !rooms::may_access(room, user) {
            return (false, false);
        }
        match &self.patterns {
            None => (true, true),
            Some(patterns) => patterns
                .iter()
                .filter(|p| glob_match(&p.glob, room))
                .fold((false, false), |(_, w), p| (true, w || p.write)),
        }
    }

    pub fn may_read(&self, room: &str, user: &str) -> bool {
        self.grants(room, user).0
    }

    pub fn may_write(&self, room: &str, user: &str) -> bool {
        self.grants(room, user).1
    }

    /// `forbidden` unless `user` may read `room`.
    pub fn check_read(&self, room: &str, user: &str) -> Result<(), ClientError> {
        if self.may_read(room, user) {
            Ok(())
        } else {
            Err(forbidden(room, user))
        }
    }

    /// `forbidden` unless `user` may write in `room`.
    pub fn check_write(&self, room: &str, user: &str) -> Result<(), ClientError> {
        match self.grants(room, user) {
            (_, true) => Ok(()),
            (true, false) => Err(ClientError::Forbidden(format!(
                "your token lets you read {room} but not write in it"
            ))),
            _ => Err(forbidden(room, user)),
        }
    }

    /// `forbidden` unless the role moderates and `user` may use `room`.
    pub fn check_moderate(&self, room: &str, user: &str) -> Result<(), ClientError> {
        self.check_read(room, user)?;
        if self.role.moderates() {
            Ok(())
        } else {
            Err(ClientError::Forbidden(
                "only moderators and admins may do this".into(),
            ))
        }
    }
}

fn forbidden(room: &str, user: &str) -> ClientError {
    if rooms::is_dm(room) && !rooms::may_access(room, user) {
        ClientError::Forbidden(format!(
            "{room} is a direct-message room of two other users"
        ))
    } else {
        ClientError::Forbidden(format!("your token does not allow room {room}"))
    }
}

/// Whether `text` matches `glob`, where `*` matches any run of characters. Linear in
/// practice (greedy with one backtrack point), so a hostile pattern costs little.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let (g, t) = (glob.as_bytes(), text.as_bytes());
    let (mut gi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if gi < g.len() && g[gi] == b'*' {
            star = Some((gi, ti));
            gi += 1;
        } else if gi < g.len() && g[gi] == t[ti] {
            gi += 1;
            ti += 1;
        } else if let Some((sg, st)) = star {
            gi = sg + 1;
            ti = st + 1;
            star = Some((sg, st + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(rooms: &[&str]) -> Access {
        let rooms: Vec<String> = rooms.iter().map(|s| s.to_string()).collect();
        Access::from_claims(Some(&rooms), None).unwrap()
    }

    #[test]
    fn globs_match_any_run_including_the_empty_one() {
        assert!(glob_match("team-a.*", "team-a.general"));
        assert!(glob_match("team-a.*", "team-a."));
        assert!(!glob_match("team-a.*", "team-b.general"));
        assert!(glob_match("general", "general"));
        assert!(!glob_match("general", "general2"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("dm:*", "dm:ada:bob"));
        assert!(glob_match("*-x", "a-x-x"));
        assert!(!glob_match("", "a"));
        // A pathological pattern stays cheap.
        let long = "a".repeat(10_000);
        assert!(!glob_match("*a*a*a*a*a*a*a*b", &long));
    }

    #[test]
    fn without_the_claim_every_room_but_other_users_dms_is_open() {
        let a = Access::default();
        assert!(a.may_write("lobby", "ada"));
        assert!(a.may_write("dm:ada:bob", "ada"));
        assert!(!a.may_read("dm:bob:eve", "ada"));
        assert_eq!(a.role, Role::Member);
    }

    #[test]
    fn with_the_claim_only_matching_rooms_and_dms_stay_private() {
        let a = access(&["team-a.*", "general", "dm:*"]);
        assert!(a.may_write("team-a.x", "ada"));
        assert!(a.may_write("general", "ada"));
        assert!(!a.may_read("team-b.x", "ada"));
        assert!(!a.may_read("generally", "ada"));
        assert!(a.may_write("dm:ada:bob", "ada"));
        assert!(
            !a.may_read("dm:bob:eve", "ada"),
            "dm:* does not open others' DMs"
        );
        let no_dm = access(&["team-a.*"]);
        assert!(
            !no_dm.may_read("dm:ada:bob", "ada"),
            "a DM room must match too"
        );
        assert!(matches!(
            no_dm.check_read("team-b.x", "ada"),
            Err(ClientError::Forbidden(_))
        ));
        let none = access(&[]);
        assert!(
            !none.may_read("lobby", "ada"),
            "an empty list allows nothing"
        );
    }

    #[test]
    fn read_only_patterns_allow_reading_and_not_writing() {
        let a = access(&["announcements=read", "team-*=read", "team-a"]);
        assert!(a.may_read("announcements", "ada"));
        assert!(!a.may_write("announcements", "ada"));
        assert!(a.check_write("announcements", "ada").is_err());
        assert!(a.may_write("team-a", "ada"), "a writable match wins");
        assert!(a.may_read("team-b", "ada") && !a.may_write("team-b", "ada"));
    }

    #[test]
    fn bad_claims_are_refused() {
        let bad = |rooms: &[&str]| {
            let rooms: Vec<String> = rooms.iter().map(|s| s.to_string()).collect();
            Access::from_claims(Some(&rooms), None).is_err()
        };
        assert!(bad(&[""]));
        assert!(bad(&["=read"]));
        assert!(bad(&["a b"]));
        assert!(bad(&["a/b"]));
        assert!(bad(&[&"x".repeat(MAX_PATTERN_CHARS + 1)]));
        let many: Vec<String> = (0..=MAX_PATTERNS).map(|i| format!("r{i}")).collect();
        assert!(Access::from_claims(Some(&many), None).is_err());
        assert!(Access::from_claims(None, Some("root")).is_err());
        assert_eq!(
            Access::from_claims(None, Some("moderator")).unwrap().role,
            Role::Moderator
        );
    }

    #[test]
    fn moderating_needs_the_role_and_the_room() {
        let member = access(&["*"]);
        assert!(member.check_moderate("lobby", "ada").is_err());
        let rooms = vec!["team-a.*".to_string()];
        let moderator = Access::from_claims(Some(&rooms), Some("moderator")).unwrap();
        assert!(moderator.check_moderate("team-a.x", "mo").is_ok());
        assert!(moderator.check_moderate("team-b.x", "mo").is_err());
        let admin = Access::from_claims(None, Some("admin")).unwrap();
        assert!(admin.check_moderate("anything", "root").is_ok());
        assert!(admin.check_moderate("dm:ada:bob", "root").is_err());
    }
}
