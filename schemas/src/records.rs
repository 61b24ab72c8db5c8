//! Rust forms of the records, and their encoding to and from the framed wire format.
//!
//! Writing always uses the current schema version; reading resolves whatever version the
//! record was written with (its id says which) into the current one.

use crate::registry::{self, Subject};
use crate::{wire, SchemaError};
use apache_avro::{from_avro_datum, from_value, to_avro_datum, to_value};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Largest framed record [`LogRecord::decode`] reads. The log refuses values over 1 MB
/// (`tidings_log::MAX_VALUE_BYTES`), so a bigger one is not ours.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// Caps what apache-avro allocates for one string or byte length read from a datum, and
/// returns the cap in force. Its default is 512 MiB per length, so a five-byte hostile length
/// prefix would cost that much memory before the read fails; no length inside a record can
/// exceed the record itself. The setting is process-wide and fixed by its first use, so
/// every decode calls this before apache-avro reads anything.
pub fn allocation_limit() -> usize {
    apache_avro::util::max_allocation_bytes(MAX_RECORD_BYTES)
}

/// A record that lives on the log under one schema subject.
pub trait LogRecord: Serialize + DeserializeOwned {
    const SUBJECT: Subject;

    /// Avro-encodes with the current schema and frames it with that schema's id.
    fn encode(&self) -> Result<Vec<u8>, SchemaError> {
        let (version, schema) = registry::current(Self::SUBJECT);
        let value = to_value(self)?.resolve(schema)?;
        let datum = to_avro_datum(schema, value)?;
        Ok(wire::frame(version.id, &datum))
    }

    /// Decodes a framed record written with any registered version of this subject.
    fn decode(bytes: &[u8]) -> Result<Self, SchemaError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(SchemaError::TooLarge {
                size: bytes.len(),
                max: MAX_RECORD_BYTES,
            });
        }
        allocation_limit();
        let (id, mut datum) = wire::unframe(bytes)?;
        let (writer_version, writer) =
            registry::by_id(id).ok_or(SchemaError::UnknownSchemaId(id))?;
        if writer_version.subject != Self::SUBJECT {
            return Err(SchemaError::WrongSubject {
                id,
                found: writer_version.subject,
                expected: Self::SUBJECT,
            });
        }
        let (_, reader) = registry::current(Self::SUBJECT);
        let value = from_avro_datum(writer, &mut datum, Some(reader))?;
        Ok(from_value(&value)?)
    }
}

/// A client's event as the edge appends it. See `client_event.v1.avsc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientEvent {
    pub event_id: String,
    pub kind: String,
    pub room: Option<String>,
    pub user: Option<String>,
    pub ts: i64,
    pub trace_id: String,
    pub node: String,
    pub conn: String,
    pub client_id: Option<String>,
    pub text: Option<String>,
    pub on: Option<bool>,
    pub user_name: Option<String>,
    /// v2: the users a `status` question asks about.
    #[serde(default)]
    pub users: Option<Vec<String>>,
    /// v3: `read`: the seq the room is read up to; `delete`: the message to delete.
    #[serde(default)]
    pub seq: Option<i64>,
    /// v4: `delete`, `mute`: the sender's role claim.
    #[serde(default)]
    pub role: Option<String>,
    /// v4: `mute`: the user to mute.
    #[serde(default)]
    pub target: Option<String>,
    /// v4: `mute`: until when (ms since the epoch).
    #[serde(default)]
    pub until: Option<i64>,
}

impl LogRecord for ClientEvent {
    const SUBJECT: Subject = Subject::ClientEvent;
}

/// A sequenced message in the room log. See `room_event.v1.avsc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomEvent {
    pub event_id: String,
    pub kind: String,
    pub room: Option<String>,
    pub user: Option<String>,
    pub ts: i64,
    pub trace_id: String,
    pub node: String,
    pub seq: i64,
    pub client_id: String,
    pub text: String,
    pub origin_node: String,
    pub origin_conn: String,
    /// v2: `delete`: the deleted message's sender; `mute`: the muted user.
    #[serde(default)]
    pub target: Option<String>,
    /// v2: `mute`: until when (ms since the epoch).
    #[serde(default)]
    pub until: Option<i64>,
    /// v2: `delete`, `mute`: the role of the user who did it.
    #[serde(default)]
    pub role: Option<String>,
}

impl LogRecord for RoomEvent {
    const SUBJECT: Subject = Subject::RoomEvent;
}

/// A moderator's or admin's action, for the audit topic. See `moderator_action.v1.avsc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeratorAction {
    pub event_id: String,
    /// `delete`, `mute` or `revoke`.
    pub kind: String,
    pub room: Option<String>,
    /// Who acted.
    pub user: Option<String>,
    pub ts: i64,
    pub trace_id: String,
    pub node: String,
    pub role: String,
    pub seq: Option<i64>,
    pub target: Option<String>,
    pub until: Option<i64>,
    pub jti: Option<String>,
}

impl LogRecord for ModeratorAction {
    const SUBJECT: Subject = Subject::ModeratorAction;
}

/// What one edge should pass to its connections. See `delivery.v1.avsc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub event_id: String,
    pub kind: String,
    pub room: Option<String>,
    pub user: Option<String>,
    pub ts: i64,
    pub trace_id: String,
    pub node: String,
    pub edge: String,
    pub conn: Option<String>,
    pub seq: Option<i64>,
    pub client_id: Option<String>,
    pub text: Option<String>,
    pub msg_ts: Option<i64>,
    pub on: Option<bool>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// v2: the display name of `user`.
    #[serde(default)]
    pub user_name: Option<String>,
    /// v2: a room's online count (`occupancy`, `presence-answer`).
    #[serde(default)]
    pub count: Option<i64>,
    /// v2: `users` holds only the first entries.
    #[serde(default)]
    pub truncated: Option<bool>,
    /// v2: the answer to a presence or status question.
    #[serde(default)]
    pub users: Option<Vec<PresenceEntry>>,
    /// v3: the user whose connections get a `read` or `notify`.
    #[serde(default)]
    pub to: Option<String>,
    /// v3: why a `notify`: `dm` or `mention`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// One user in a presence or status answer. See `delivery.v2.avsc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceEntry {
    pub user: String,
    pub name: Option<String>,
    pub online: Option<bool>,
    pub last_seen: Option<i64>,
}

impl LogRecord for Delivery {
    const SUBJECT: Subject = Subject::Delivery;
}

impl Delivery {
    /// A delivery of `kind` to `edge`, every optional field empty: callers fill what their
    /// kind carries (`Delivery { seq: Some(..), ..Delivery::new(..) }`).
    pub fn new(
        event_id: String,
        kind: &str,
        edge: &str,
        node: &str,
        trace_id: &str,
        ts: i64,
    ) -> Self {
        Self {
            event_id,
            kind: kind.to_string(),
            room: None,
            user: None,
            ts,
            trace_id: trace_id.to_string(),
            node: node.to_string(),
            edge: edge.to_string(),
            conn: None,
            seq: None,
            client_id: None,
            text: None,
            msg_ts: None,
            on: None,
            error_code: None,
            error_message: None,
            user_name: None,
            count: None,
            truncated: None,
            users: None,
            to: None,
            reason: None,
        }
    }
}

/// An edge announcing which rooms it hosts. See `subscription.v1.avsc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub event_id: String,
    pub kind: String,
    pub room: Option<String>,
    pub user: Option<String>,
    pub ts: i64,
    pub trace_id: String,
    pub node: String,
    pub conn: Option<String>,
}

impl LogRecord for Subscription {
    const SUBJECT: Subject = Subject::Subscription;
}

/// A revoked user (`user`) or token (`jti`), until `until`. See `revocation.v1.avsc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revocation {
    pub event_id: String,
    pub kind: String,
    pub room: Option<String>,
    pub user: Option<String>,
    pub ts: i64,
    pub trace_id: String,
    pub node: String,
    pub jti: Option<String>,
    pub until: i64,
    pub by: String,
    pub reason: Option<String>,
}

impl LogRecord for Revocation {
    const SUBJECT: Subject = Subject::Revocation;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room_event() -> RoomEvent {
        RoomEvent {
            role: None,
            target: None,
            until: None,
            event_id: "e1".into(),
            kind: "message".into(),
            room: Some("lobby".into()),
            user: Some("ada".into()),
            ts: 1_700_000_000_123,
            trace_id: "t1".into(),
            node: "seq-1".into(),
            seq: 42,
            client_id: "c-42".into(),
            text: "héllo ✓".into(),
            origin_node: "edge-a".into(),
            origin_conn: "conn-9".into(),
        }
    }

    #[test]
    fn records_round_trip_through_the_wire_format() {
        let event = room_event();
        let bytes = event.encode().unwrap();
        assert_eq!(bytes[0], 0);
        assert_eq!(u32::from_be_bytes(bytes[1..5].try_into().unwrap()), 202);
        assert_eq!(RoomEvent::decode(&bytes).unwrap(), event);

        let delivery = Delivery {
            event_id: "d".into(),
            kind: "typing".into(),
            room: Some("r".into()),
            user: None,
            ts: 5,
            trace_id: "t".into(),
            node: "fanout".into(),
            edge: "edge-a".into(),
            conn: None,
            seq: None,
            client_id: None,
            text: None,
            msg_ts: None,
            on: Some(true),
            error_code: None,
            error_message: None,
            user_name: Some("Ada".into()),
            count: Some(3),
            truncated: Some(false),
            users: Some(vec![PresenceEntry {
                user: "ada".into(),
                name: None,
                online: Some(true),
                last_seen: None,
            }]),
            to: Some("bob".into()),
            reason: Some("dm".into()),
        };
        assert_eq!(
            Delivery::decode(&delivery.encode().unwrap()).unwrap(),
            delivery
        );

        let revocation = Revocation {
            event_id: "r".into(),
            kind: "revoke".into(),
            room: None,
            user: Some("mallory".into()),
            ts: 5,
            trace_id: "t".into(),
            node: "edge-a".into(),
            jti: None,
            until: 1_700_000_086_400_000,
            by: "root".into(),
            reason: Some("abuse".into()),
        };
        let bytes = revocation.encode().unwrap();
        assert_eq!(u32::from_be_bytes(bytes[1..5].try_into().unwrap()), 601);
        assert_eq!(Revocation::decode(&bytes).unwrap(), revocation);
    }

    #[test]
    fn a_record_of_another_subject_is_refused() {
        let bytes = room_event().encode().unwrap();
        assert!(matches!(
            Delivery::decode(&bytes),
            Err(SchemaError::WrongSubject { id: 202, .. })
        ));
    }

    #[test]
    fn unknown_ids_and_garbage_are_errors_not_panics() {
        let mut bytes = room_event().encode().unwrap();
        bytes[4] = 99;
        assert!(matches!(
            RoomEvent::decode(&bytes),
            Err(SchemaError::UnknownSchemaId(_))
        ));
        let truncated = &room_event().encode().unwrap()[..12];
        assert!(RoomEvent::decode(truncated).is_err());
        assert!(RoomEvent::decode(&[0, 0, 0, 0, 201, 0xff, 0xff, 0xff]).is_err());
    }
}
