//! What the room log means for users' inboxes. Pure logic: room events in, index rows and
//! notices out; the session writes the rows and delivers the notices.

use std::collections::{BTreeMap, BTreeSet};
use tidings_schemas::rooms::{dm_peer, is_dm, may_access};
use tidings_schemas::RoomEvent;
use tidings_store::{InboxUpdate, StoredMessage};

/// Most distinct users one message mentions (the rest are ignored): bounds the rows and
/// notices one message can cause.
pub const MAX_MENTIONS: usize = 16;

/// The users `text` mentions, in order, each once, at most [`MAX_MENTIONS`].
///
/// A mention is `@` at the start of the text or after whitespace or an opening bracket or
/// quote, followed by the user's `sub` as a whole word: the word runs to whitespace or one of
/// `,;!?()[]{}<>"'`, and a trailing `.` or `:` is punctuation, not part of it. So `@bobby`
/// mentions `bobby` and not `bob`, `(@bob),` and `@bob:` mention `bob`, and `ada@x.com` is
/// an address, not a mention.
pub fn mentions(text: &str) -> Vec<&str> {
    let mut found: Vec<&str> = Vec::new();
    let mut previous: Option<char> = None;
    for (at, c) in text.char_indices() {
        let starts_word = previous
            .is_none_or(|p| p.is_whitespace() || matches!(p, '(' | '[' | '{' | '<' | '"' | '\''));
        previous = Some(c);
        if c != '@' || !starts_word {
            continue;
        }
        let rest = &text[at + 1..];
        let end = rest.find(ends_word).unwrap_or(rest.len());
        let word = rest[..end].trim_end_matches(['.', ':']);
        if !word.is_empty() && !found.contains(&word) {
            found.push(word);
            if found.len() == MAX_MENTIONS {
                break;
            }
        }
    }
    found
}

fn ends_word(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            ',' | ';' | '!' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '<' | '>' | '"' | '\''
        )
}

/// Why a user hears of a message outside the rooms they joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Who hears of it.
    pub to: String,
    /// `dm` or `mention`.
    pub reason: &'static str,
    pub message: StoredMessage,
}

/// Rows and notices derived from a stretch of the room log.
#[derive(Debug, Default)]
pub struct Derived {
    rooms: BTreeSet<(String, String)>,
    sent: Vec<(String, String, i64)>,
    mentions: Vec<(String, String, i64)>,
    last: BTreeMap<String, StoredMessage>,
    pub notices: Vec<Notice>,
}

impl Derived {
    /// Adds what one message means: the sender's own message (left out of their unread
    /// counts), a DM room in both users' inboxes with a notice to the other, mentions of users
    /// who may read the room with a notice each (in a DM room the DM notice covers it).
    pub fn message(&mut self, event: &RoomEvent) {
        let (Some(room), Some(from)) = (event.room.as_deref(), event.user.as_deref()) else {
            return;
        };
        if from.is_empty() {
            return;
        }
        let message = StoredMessage {
            room: room.to_string(),
            seq: event.seq,
            client_id: event.client_id.clone(),
            from: from.to_string(),
            text: event.text.clone(),
            ts: event.ts,
            deleted: false,
        };
        if tidings_store::validate(&message).is_err() {
            return;
        }
        self.sent
            .push((from.to_string(), room.to_string(), event.seq));
        if is_dm(room) {
            if let Some(peer) = dm_peer(room, from) {
                self.rooms.insert((from.to_string(), room.to_string()));
                self.rooms.insert((peer.to_string(), room.to_string()));
                self.notices.push(Notice {
                    to: peer.to_string(),
                    reason: "dm",
                    message: message.clone(),
                });
            }
        }
        for user in mentions(&event.text) {
            if user == from || !may_access(room, user) || user.len() > tidings_store::MAX_USER_LEN {
                continue;
            }
            self.mentions
                .push((user.to_string(), room.to_string(), event.seq));
            self.rooms.insert((user.to_string(), room.to_string()));
            if !is_dm(room) {
                self.notices.push(Notice {
                    to: user.to_string(),
                    reason: "mention",
                    message: message.clone(),
                });
            }
        }
        let newer = self.last.get(room).is_none_or(|m| m.seq < message.seq);
        if newer {
            self.last.insert(room.to_string(), message);
        }
    }

    /// The rows to write. With [`MAX_MENTIONS`] per message, a batch of `n` messages has at
    /// most `n` sent rows, `16n` mention rows and `18n` room rows.
    pub fn update(&self) -> InboxUpdate {
        InboxUpdate {
            rooms: self.rooms.iter().cloned().collect(),
            sent: self.sent.clone(),
            mentions: self.mentions.clone(),
            last: self.last.values().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_whole_words() {
        assert_eq!(mentions("hi @bob"), ["bob"]);
        assert_eq!(mentions("@bobby hi"), ["bobby"]);
        assert_eq!(mentions("(@bob), @ada: and @eve."), ["bob", "ada", "eve"]);
        assert_eq!(mentions("mail ada@x.com"), Vec::<&str>::new());
        assert_eq!(mentions("@org:ada hi"), ["org:ada"]);
        assert_eq!(mentions("@bob @bob @ bob"), ["bob"]);
        assert_eq!(mentions("@"), Vec::<&str>::new());
        assert_eq!(mentions("héllo @zoë!"), ["zoë"]);
        let many: String = (0..40).map(|i| format!("@u{i} ")).collect();
        assert_eq!(mentions(&many).len(), MAX_MENTIONS);
    }

    fn message(room: &str, seq: i64, from: &str, text: &str) -> RoomEvent {
        RoomEvent {
            role: None,
            target: None,
            until: None,
            event_id: format!("e{seq}"),
            kind: "message".into(),
            room: Some(room.into()),
            user: Some(from.into()),
            ts: 1000 + seq,
            trace_id: String::new(),
            node: "n".into(),
            seq,
            client_id: format!("c{seq}"),
            text: text.into(),
            origin_node: "edge".into(),
            origin_conn: "conn".into(),
        }
    }

    #[test]
    fn a_dm_enters_both_inboxes_and_notifies_the_peer_once() {
        let mut d = Derived::default();
        d.message(&message("dm:ada:bob", 1, "ada", "hi @bob"));
        let update = d.update();
        assert_eq!(
            update.rooms,
            [
                ("ada".into(), "dm:ada:bob".into()),
                ("bob".into(), "dm:ada:bob".into())
            ]
        );
        assert_eq!(update.sent, [("ada".into(), "dm:ada:bob".into(), 1)]);
        assert_eq!(update.mentions, [("bob".into(), "dm:ada:bob".into(), 1)]);
        assert_eq!(d.notices.len(), 1);
        assert_eq!(
            (d.notices[0].to.as_str(), d.notices[0].reason),
            ("bob", "dm")
        );
    }

    #[test]
    fn mentions_skip_the_sender_and_users_who_cannot_read_the_room() {
        let mut d = Derived::default();
        d.message(&message("lobby", 4, "ada", "@ada @bob"));
        d.message(&message("dm:ada:bob", 5, "ada", "@eve look"));
        d.message(&message("lobby", 3, "eve", "older"));
        let update = d.update();
        assert_eq!(update.mentions, [("bob".into(), "lobby".into(), 4)]);
        let notices: Vec<_> = d
            .notices
            .iter()
            .map(|n| (n.to.as_str(), n.reason))
            .collect();
        assert_eq!(notices, [("bob", "mention"), ("bob", "dm")]);
        let last: Vec<_> = update
            .last
            .iter()
            .map(|m| (m.room.as_str(), m.seq))
            .collect();
        assert_eq!(last, [("dm:ada:bob", 5), ("lobby", 4)]);
    }
}
