//! The v1 client contract: request payloads (parsed and validated from raw JSON, so a bad
//! one is an `invalid` ack rather than a dropped event) and what the edge emits.

use crate::errors::ClientError;
use serde::Serialize;
use serde_json::{Map, Value};

/// Longest client message id, in characters.
pub const MAX_ID_CHARS: usize = 64;
/// Default and largest `history` page.
pub const DEFAULT_HISTORY_LIMIT: usize = 50;
pub const MAX_HISTORY_LIMIT: usize = 200;

/// Whether `room` matches `[A-Za-z0-9._:-]{1,128}`.
pub fn valid_room(room: &str) -> bool {
    tidings_store::valid_room(room)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinReq {
    pub room: String,
    pub since: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveReq {
    pub room: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReq {
    pub room: String,
    pub id: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryReq {
    pub room: String,
    pub before: Option<i64>,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypingReq {
    pub room: String,
    pub on: bool,
}

/// `message {room, seq, id, from, text, ts}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageOut {
    pub room: String,
    pub seq: i64,
    pub id: String,
    pub from: String,
    /// Absent from a deleted message (a sent one never has an empty text).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub text: String,
    pub ts: i64,
    /// Only on deleted messages: `true`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl From<tidings_store::StoredMessage> for MessageOut {
    fn from(m: tidings_store::StoredMessage) -> Self {
        Self {
            room: m.room,
            seq: m.seq,
            id: m.client_id,
            from: m.from,
            // The store gives a deleted message no text.
            text: m.text,
            ts: m.ts,
            deleted: m.deleted,
        }
    }
}

/// About how many bytes a payload takes as JSON, for the per-connection output bound.
pub trait PacketSize {
    fn packet_size(&self) -> usize;
}

impl PacketSize for Value {
    fn packet_size(&self) -> usize {
        approx_json_size(self)
    }
}

/// A live `message` serialized once for every member it goes to (fan-out would otherwise
/// serialize the same payload once per socket).
#[derive(Debug)]
pub struct EncodedMessage {
    pub seq: i64,
    json: Box<serde_json::value::RawValue>,
}

impl EncodedMessage {
    pub fn new(msg: &MessageOut) -> Result<Self, serde_json::Error> {
        Ok(Self {
            seq: msg.seq,
            json: serde_json::value::to_raw_value(msg)?,
        })
    }
}

impl PacketSize for EncodedMessage {
    fn packet_size(&self) -> usize {
        self.json.get().len()
    }
}

impl Serialize for EncodedMessage {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(serializer)
    }
}

/// `deleted {room, seq}`: a message of the room was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeletedOut {
    pub room: String,
    pub seq: i64,
}

impl PacketSize for DeletedOut {
    fn packet_size(&self) -> usize {
        self.room.len() + 40
    }
}

/// `typing {room, user, on}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TypingOut {
    pub room: String,
    pub user: String,
    pub on: bool,
}

impl PacketSize for TypingOut {
    fn packet_size(&self) -> usize {
        self.room.len() + self.user.len() + 32
    }
}

/// `presence {room, user, online}`: a user's first connection entered the room, or their
/// last one left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresenceOut {
    pub room: String,
    pub user: String,
    pub online: bool,
}

impl PacketSize for PresenceOut {
    fn packet_size(&self) -> usize {
        self.room.len() + self.user.len() + 40
    }
}

/// `occupancy {room, count}`: how many users are online in a large room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OccupancyOut {
    pub room: String,
    pub count: i64,
}

impl PacketSize for OccupancyOut {
    fn packet_size(&self) -> usize {
        self.room.len() + 40
    }
}

/// `read {room, seq}` to a user's other connections; `receipt {room, user, seq}` to the
/// room's other members (`user` set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadOut {
    pub room: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub seq: i64,
}

impl PacketSize for ReadOut {
    fn packet_size(&self) -> usize {
        self.room.len() + self.user.as_ref().map_or(0, String::len) + 48
    }
}

/// `notify {room, seq, from, text, kind}`: a DM to the user or a mention of them, for a
/// connection that has not joined the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotifyOut {
    pub room: String,
    pub seq: i64,
    pub from: String,
    pub text: String,
    pub kind: String,
}

impl PacketSize for NotifyOut {
    fn packet_size(&self) -> usize {
        self.room.len() + self.from.len() + self.text.len() + self.kind.len() + 64
    }
}

/// `read {room, seq}` from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReq {
    pub room: String,
    pub seq: i64,
}

pub fn parse_read(v: &Value) -> Result<ReadReq, ClientError> {
    let m = object(v)?;
    let room = room(m)?;
    let seq =
        opt_seq(m, "seq")?.ok_or_else(|| ClientError::invalid("seq (integer >= 0) is required"))?;
    Ok(ReadReq { room, seq })
}

/// `delete {room, seq}`.
pub fn parse_delete(v: &Value) -> Result<ReadReq, ClientError> {
    let m = object(v)?;
    let room = room(m)?;
    match opt_seq(m, "seq")? {
        Some(seq) if seq >= 1 => Ok(ReadReq { room, seq }),
        _ => Err(ClientError::invalid("seq (integer >= 1) is required")),
    }
}

/// `mute {room, user, until}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MuteReq {
    pub room: String,
    pub user: String,
    /// Ms since the epoch; a time already past lifts a mute.
    pub until: i64,
}

pub fn parse_mute(v: &Value) -> Result<MuteReq, ClientError> {
    let m = object(v)?;
    let room = room(m)?;
    let user = match m.get("user") {
        Some(Value::String(u))
            if u.len() <= MAX_USER_BYTES && tidings_schemas::text::check_identity(u).is_ok() =>
        {
            u.clone()
        }
        _ => return Err(ClientError::invalid("user (a user id) is required")),
    };
    let until = opt_seq(m, "until")?
        .ok_or_else(|| ClientError::invalid("until (ms since the epoch) is required"))?;
    Ok(MuteReq { room, user, until })
}

/// `inbox {}`: takes nothing, but the payload must still be an object.
pub fn parse_inbox(v: &Value) -> Result<(), ClientError> {
    object(v).map(|_| ())
}

/// Most users one `status` asks about.
pub const MAX_STATUS_USERS: usize = 100;
/// Longest user id a `status` may name (the longest `sub` a token may carry).
const MAX_USER_BYTES: usize = 128;

pub fn parse_presence(v: &Value) -> Result<LeaveReq, ClientError> {
    parse_leave(v)
}

/// `status {users}`: 1 to 100 user ids.
pub fn parse_status(v: &Value) -> Result<Vec<String>, ClientError> {
    let invalid = || {
        ClientError::invalid(format!(
            "users must be an array of 1 to {MAX_STATUS_USERS} user ids"
        ))
    };
    let users = object(v)?
        .get("users")
        .and_then(Value::as_array)
        .filter(|u| !u.is_empty() && u.len() <= MAX_STATUS_USERS)
        .ok_or_else(invalid)?;
    users
        .iter()
        .map(|u| match u {
            Value::String(s) if !s.is_empty() && s.len() <= MAX_USER_BYTES => Ok(s.clone()),
            _ => Err(invalid()),
        })
        .collect()
}

fn object(v: &Value) -> Result<&Map<String, Value>, ClientError> {
    v.as_object()
        .ok_or_else(|| ClientError::invalid("payload must be an object"))
}

fn room(m: &Map<String, Value>) -> Result<String, ClientError> {
    match m.get("room") {
        Some(Value::String(r)) if valid_room(r) => Ok(r.clone()),
        Some(Value::String(_)) => Err(ClientError::invalid(
            "room must match [A-Za-z0-9._:-]{1,128}",
        )),
        _ => Err(ClientError::invalid("room (string) is required")),
    }
}

/// An optional non-negative integer field (JSON null counts as absent).
fn opt_seq(m: &Map<String, Value>, name: &str) -> Result<Option<i64>, ClientError> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match int(v) {
            Some(n) if n >= 0 => Ok(Some(n)),
            _ => Err(ClientError::invalid(format!(
                "{name} must be an integer >= 0"
            ))),
        },
    }
}

fn int(v: &Value) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    (f.fract() == 0.0 && (0.0..=9.0e15).contains(&f)).then_some(f as i64)
}

pub fn parse_join(v: &Value) -> Result<JoinReq, ClientError> {
    let m = object(v)?;
    Ok(JoinReq {
        room: room(m)?,
        since: opt_seq(m, "since")?,
    })
}

pub fn parse_leave(v: &Value) -> Result<LeaveReq, ClientError> {
    Ok(LeaveReq {
        room: room(object(v)?)?,
    })
}

/// Parses `send`; the text's length limit is checked by the caller (`too_large`).
pub fn parse_send(v: &Value) -> Result<SendReq, ClientError> {
    let m = object(v)?;
    let room = room(m)?;
    let id = match m.get("id") {
        Some(Value::String(id)) if !id.is_empty() && id.chars().count() <= MAX_ID_CHARS => {
            id.clone()
        }
        _ => {
            return Err(ClientError::invalid(
                "id must be a string of 1 to 64 characters",
            ))
        }
    };
    let text = match m.get("text") {
        Some(Value::String(t)) => t.clone(),
        _ => return Err(ClientError::invalid("text (string) is required")),
    };
    Ok(SendReq { room, id, text })
}

pub fn parse_history(v: &Value) -> Result<HistoryReq, ClientError> {
    let m = object(v)?;
    let room = room(m)?;
    let before = opt_seq(m, "before")?;
    let limit = match m.get("limit") {
        None | Some(Value::Null) => DEFAULT_HISTORY_LIMIT,
        Some(v) => match int(v) {
            Some(n) if (1..=MAX_HISTORY_LIMIT as i64).contains(&n) => n as usize,
            _ => {
                return Err(ClientError::invalid(
                    "limit must be an integer from 1 to 200",
                ))
            }
        },
    };
    Ok(HistoryReq {
        room,
        before,
        limit,
    })
}

pub fn parse_typing(v: &Value) -> Result<TypingReq, ClientError> {
    let m = object(v)?;
    let room = room(m)?;
    let on = match m.get("on") {
        Some(Value::Bool(b)) => *b,
        _ => return Err(ClientError::invalid("on (boolean) is required")),
    };
    Ok(TypingReq { room, on })
}

/// Size of `v` as JSON, roughly (strings counted by bytes, no escapes), without encoding it.
pub fn approx_json_size(v: &Value) -> usize {
    match v {
        Value::Null => 4,
        Value::Bool(_) => 5,
        Value::Number(_) => 20,
        Value::String(s) => s.len() + 2,
        Value::Array(a) => 2 + a.iter().map(|x| approx_json_size(x) + 1).sum::<usize>(),
        Value::Object(o) => {
            2 + o
                .iter()
                .map(|(k, x)| k.len() + 4 + approx_json_size(x))
                .sum::<usize>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(r: Result<impl std::fmt::Debug, ClientError>) -> String {
        r.err().map(|e| e.code().to_string()).unwrap_or_default()
    }

    #[test]
    fn rooms_follow_the_pattern() {
        assert!(valid_room("a.B_c:d-9"));
        assert!(valid_room(&"x".repeat(128)));
        assert!(!valid_room(&"x".repeat(129)));
        assert!(!valid_room(""));
        assert!(!valid_room("a b"));
        assert!(!valid_room("é"));
        assert_eq!(code(parse_join(&json!({"room": "a/b"}))), "invalid");
        assert_eq!(code(parse_join(&json!({"room": 5}))), "invalid");
        assert_eq!(code(parse_join(&json!("lobby"))), "invalid");
    }

    #[test]
    fn join_since_is_a_non_negative_integer() {
        assert_eq!(
            parse_join(&json!({"room": "r", "since": 7})).unwrap(),
            JoinReq {
                room: "r".into(),
                since: Some(7)
            }
        );
        assert_eq!(parse_join(&json!({"room": "r"})).unwrap().since, None);
        assert_eq!(
            parse_join(&json!({"room": "r", "since": null}))
                .unwrap()
                .since,
            None
        );
        assert_eq!(
            parse_join(&json!({"room": "r", "since": 3.0}))
                .unwrap()
                .since,
            Some(3)
        );
        assert_eq!(
            code(parse_join(&json!({"room": "r", "since": -1}))),
            "invalid"
        );
        assert_eq!(
            code(parse_join(&json!({"room": "r", "since": 1.5}))),
            "invalid"
        );
        assert_eq!(
            code(parse_join(&json!({"room": "r", "since": "3"}))),
            "invalid"
        );
    }

    #[test]
    fn send_needs_room_id_and_text() {
        let ok = parse_send(&json!({"room": "r", "id": "c1", "text": "hi"})).unwrap();
        assert_eq!(ok.text, "hi");
        assert_eq!(
            code(parse_send(&json!({"room": "r", "id": "", "text": "hi"}))),
            "invalid"
        );
        let long_id = "i".repeat(65);
        assert_eq!(
            code(parse_send(
                &json!({"room": "r", "id": long_id, "text": "hi"})
            )),
            "invalid"
        );
        assert_eq!(
            code(parse_send(&json!({"room": "r", "id": "c", "text": 5}))),
            "invalid"
        );
        assert_eq!(
            code(parse_send(&json!({"room": "r", "id": "c"}))),
            "invalid"
        );
    }

    #[test]
    fn history_limit_defaults_and_bounds() {
        let h = parse_history(&json!({"room": "r"})).unwrap();
        assert_eq!((h.before, h.limit), (None, 50));
        let h = parse_history(&json!({"room": "r", "before": 10, "limit": 200})).unwrap();
        assert_eq!((h.before, h.limit), (Some(10), 200));
        assert_eq!(
            code(parse_history(&json!({"room": "r", "limit": 0}))),
            "invalid"
        );
        assert_eq!(
            code(parse_history(&json!({"room": "r", "limit": 201}))),
            "invalid"
        );
    }

    #[test]
    fn typing_needs_a_boolean() {
        assert!(parse_typing(&json!({"room": "r", "on": true})).unwrap().on);
        assert_eq!(
            code(parse_typing(&json!({"room": "r", "on": 1}))),
            "invalid"
        );
    }

    #[test]
    fn sizes_are_estimated() {
        let v = json!({"room": "r", "text": "x".repeat(1000)});
        assert!(approx_json_size(&v) >= 1000);
    }
}
