//! Every record Tidings puts on the log, as Avro.
//!
//! The `.avsc` files under `schemas/avro/` are the source of truth; [`registry`] gives each
//! (subject, version) a fixed Schema Registry id, [`wire`] frames datums the way Confluent's
//! tooling expects (magic byte 0, big-endian schema id), and [`records`] maps them to Rust.

pub mod records;
pub mod registry;
pub mod rooms;
pub mod text;
pub mod wire;

pub use records::{
    allocation_limit, ClientEvent, Delivery, LogRecord, ModeratorAction, PresenceEntry, Revocation,
    RoomEvent, Subscription, MAX_RECORD_BYTES,
};
pub use registry::{SchemaVersion, Subject};

/// Why a record could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("record is not framed: {0}")]
    Framing(&'static str),
    #[error("unknown schema id {0}")]
    UnknownSchemaId(u32),
    #[error("schema id {id} belongs to {found:?}, expected {expected:?}")]
    WrongSubject {
        id: u32,
        found: Subject,
        expected: Subject,
    },
    #[error("record of {size} bytes exceeds the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("avro: {0}")]
    Avro(String),
}

impl From<apache_avro::Error> for SchemaError {
    fn from(e: apache_avro::Error) -> Self {
        SchemaError::Avro(e.to_string())
    }
}
