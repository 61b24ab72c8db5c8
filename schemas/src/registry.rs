//! The fixed table of schema ids. Ids never change once released: a new version of a schema
//! gets a new file and a new id, and the old file stays so old data stays readable.

use apache_avro::Schema;
use std::sync::OnceLock;

/// What a schema describes; one per kind of record on the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    ClientEvent,
    RoomEvent,
    Delivery,
    Subscription,
    ModeratorAction,
    Revocation,
}

impl Subject {
    pub const ALL: [Subject; 6] = [
        Subject::ClientEvent,
        Subject::RoomEvent,
        Subject::Delivery,
        Subject::Subscription,
        Subject::ModeratorAction,
        Subject::Revocation,
    ];

    /// The Schema Registry subject name (record name strategy).
    pub fn registry_name(self) -> &'static str {
        match self {
            Subject::ClientEvent => "dev.tidings.ClientEvent",
            Subject::RoomEvent => "dev.tidings.RoomEvent",
            Subject::Delivery => "dev.tidings.Delivery",
            Subject::Subscription => "dev.tidings.Subscription",
            Subject::ModeratorAction => "dev.tidings.ModeratorAction",
            Subject::Revocation => "dev.tidings.Revocation",
        }
    }
}

/// One released version of one schema.
#[derive(Debug)]
pub struct SchemaVersion {
    pub subject: Subject,
    pub version: u32,
    /// The id written after the magic byte; fixed forever.
    pub id: u32,
    pub file: &'static str,
    pub source: &'static str,
}

macro_rules! version {
    ($subject:ident, $version:literal, $id:literal, $file:literal) => {
        SchemaVersion {
            subject: Subject::$subject,
            version: $version,
            id: $id,
            file: $file,
            source: include_str!(concat!("../avro/", $file)),
        }
    };
}

/// Every version ever released, oldest first within a subject. Id = 100 * subject + version.
pub static VERSIONS: &[SchemaVersion] = &[
    version!(ClientEvent, 1, 101, "client_event.v1.avsc"),
    version!(ClientEvent, 2, 102, "client_event.v2.avsc"),
    version!(ClientEvent, 3, 103, "client_event.v3.avsc"),
    version!(ClientEvent, 4, 104, "client_event.v4.avsc"),
    version!(RoomEvent, 1, 201, "room_event.v1.avsc"),
    version!(RoomEvent, 2, 202, "room_event.v2.avsc"),
    version!(Delivery, 1, 301, "delivery.v1.avsc"),
    version!(Delivery, 2, 302, "delivery.v2.avsc"),
    version!(Delivery, 3, 303, "delivery.v3.avsc"),
    version!(Subscription, 1, 401, "subscription.v1.avsc"),
    version!(ModeratorAction, 1, 501, "moderator_action.v1.avsc"),
    version!(Revocation, 1, 601, "revocation.v1.avsc"),
];

fn parsed() -> &'static [Schema] {
    static PARSED: OnceLock<Vec<Schema>> = OnceLock::new();
    PARSED.get_or_init(|| {
        VERSIONS
            .iter()
            .map(|v| {
                // The files are compiled in and checked by the tests below: a parse failure
                // here is a build defect, not an input error.
                Schema::parse_str(v.source)
                    .unwrap_or_else(|e| panic!("schemas/avro/{} does not parse: {e}", v.file))
            })
            .collect()
    })
}

/// The schema registered under `id`, with its table entry.
pub fn by_id(id: u32) -> Option<(&'static SchemaVersion, &'static Schema)> {
    let index = VERSIONS.iter().position(|v| v.id == id)?;
    Some((&VERSIONS[index], &parsed()[index]))
}

/// The newest version of a subject: what this build writes and reads into.
pub fn current(subject: Subject) -> (&'static SchemaVersion, &'static Schema) {
    let index = VERSIONS
        .iter()
        .rposition(|v| v.subject == subject)
        .expect("every subject has at least one version");
    (&VERSIONS[index], &parsed()[index])
}

/// All versions of a subject, oldest first.
pub fn history(
    subject: Subject,
) -> impl Iterator<Item = (&'static SchemaVersion, &'static Schema)> {
    VERSIONS
        .iter()
        .zip(parsed().iter())
        .filter(move |(v, _)| v.subject == subject)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_schema_parses_and_ids_are_unique_and_follow_the_rule() {
        let mut ids = HashSet::new();
        for (i, v) in VERSIONS.iter().enumerate() {
            assert!(ids.insert(v.id), "duplicate id {}", v.id);
            let subject_no = Subject::ALL.iter().position(|s| *s == v.subject).unwrap() as u32 + 1;
            assert_eq!(v.id, subject_no * 100 + v.version, "{}", v.file);
            assert!(matches!(parsed()[i], Schema::Record(_)), "{}", v.file);
        }
    }

    #[test]
    fn every_schema_file_in_the_folder_is_registered() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/avro");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".avsc") {
                assert!(
                    VERSIONS.iter().any(|v| v.file == name),
                    "{name} is in schemas/avro but not in registry::VERSIONS"
                );
            }
        }
    }

    /// The envelope (event id, kind, room, user, server time, trace id, node) opens every
    /// record the same way, so tools can read any topic's envelope with one reader schema.
    #[test]
    fn every_current_schema_starts_with_the_common_envelope() {
        let envelope = ["event_id", "kind", "room", "user", "ts", "trace_id", "node"];
        for subject in Subject::ALL {
            let (v, schema) = current(subject);
            let Schema::Record(record) = schema else {
                panic!()
            };
            let names: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
            assert_eq!(&names[..envelope.len()], &envelope, "{}", v.file);
        }
    }
}
