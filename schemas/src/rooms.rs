//! What a room's name says about who may use it. One rule so far: a direct-message room
//! `dm:<a>:<b>`, with `a < b` two users' `sub`s compared as strings, belongs to those two
//! only. Any other name starting with `dm:` belongs to nobody, so no public room can pass
//! for a conversation between two users.

/// The prefix of every direct-message room.
pub const DM_PREFIX: &str = "dm:";

/// Whether `room` is a direct-message room (well formed or not).
pub fn is_dm(room: &str) -> bool {
    room.starts_with(DM_PREFIX)
}

/// The direct-message room of two users (in either order).
pub fn dm_room(a: &str, b: &str) -> String {
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    format!("{DM_PREFIX}{a}:{b}")
}

/// In the direct-message room `room`, the user `user` talks to: `None` if `room` is not
/// `user`'s DM room. Works for `sub`s containing `:` too, since `user` is known.
pub fn dm_peer<'a>(room: &'a str, user: &str) -> Option<&'a str> {
    let rest = room.strip_prefix(DM_PREFIX)?;
    if let Some(peer) = rest
        .strip_prefix(user)
        .and_then(|r| r.strip_prefix(':'))
        .filter(|peer| user < *peer)
    {
        return Some(peer);
    }
    rest.strip_suffix(user)
        .and_then(|r| r.strip_suffix(':'))
        .filter(|peer| *peer < user)
}

/// Whether `user` may join, read, send to and see presence of `room`.
pub fn may_access(room: &str, user: &str) -> bool {
    !is_dm(room) || dm_peer(room, user).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dm_room_belongs_to_its_two_users_only() {
        let room = dm_room("bob", "ada");
        assert_eq!(room, "dm:ada:bob");
        assert!(may_access(&room, "ada"));
        assert!(may_access(&room, "bob"));
        assert!(!may_access(&room, "eve"));
        assert!(!may_access(&room, "ad"));
        assert!(!may_access(&room, "bo"));
        assert_eq!(dm_peer(&room, "ada"), Some("bob"));
        assert_eq!(dm_peer(&room, "bob"), Some("ada"));
        assert!(may_access("lobby", "eve"));
    }

    #[test]
    fn badly_ordered_or_malformed_dm_names_belong_to_nobody() {
        assert!(!may_access("dm:bob:ada", "ada"));
        assert!(!may_access("dm:bob:ada", "bob"));
        assert!(!may_access("dm:ada", "ada"));
        assert!(!may_access("dm:ada:ada", "ada"));
        assert!(!may_access("dm:", "ada"));
    }

    #[test]
    fn subs_with_colons_still_find_their_room() {
        let room = dm_room("org:ada", "org:bob");
        assert_eq!(dm_peer(&room, "org:ada"), Some("org:bob"));
        assert_eq!(dm_peer(&room, "org:bob"), Some("org:ada"));
        assert!(!may_access(&room, "org"));
    }
}
