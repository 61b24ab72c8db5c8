//! `tidings registry`: the Confluent Schema Registry REST API, read-only, for Tidings' own
//! schemas under their fixed ids, so stock Avro deserializers decode every topic. Subjects
//! follow TopicNameStrategy: `<topic>-value`. Record keys are plain UTF-8 strings, not Avro.
//!
//! The ids and schemas come from `schemas/avro/` through `tidings_schemas::registry`; this
//! module only maps topics to subjects and speaks the registry's JSON.

use anyhow::{Context as _, Result};
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use axum::extract::{Json, Path};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use tidings_log::topics;
use tidings_schemas::registry::{self, SchemaVersion};
use tidings_schemas::Subject;

mod push;
pub use push::push;

/// The media type Confluent's registry answers with (its clients also accept plain JSON).
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// What every topic holds, for the registry and for the consumers' AsyncAPI document.
pub struct TopicDoc {
    pub topic: &'static str,
    /// The record it carries; `None` for dead letters, which hold other topics' records
    /// unchanged (their schema id is in each value).
    pub subject: Option<Subject>,
    pub key: &'static str,
    pub writers: &'static str,
    pub readers: &'static str,
}

pub const TOPIC_DOCS: &[TopicDoc] = &[
    TopicDoc {
        topic: topics::ROOM_LOG,
        subject: Some(Subject::RoomEvent),
        key: "room",
        writers: "the sequencer, in Kafka transactions: messages (kind message), read markers \
                  (read), deletions (delete: the seq stays, with no text), mutes (mute) and \
                  control records saying which edges host the room (host, unhost)",
        readers: "persistence, fan-out, inbox; analytics (the record of truth: filter on kind)",
    },
    TopicDoc {
        topic: topics::CLIENT_EVENTS,
        subject: Some(Subject::ClientEvent),
        key: "room",
        writers: "edges: what clients send (send, join, read), and head and unhost requests",
        readers: "the sequencer",
    },
    TopicDoc {
        topic: topics::DELIVERIES,
        subject: Some(Subject::Delivery),
        key: "the target edge's node id",
        writers: "processors: messages, acks, rejections, typing, presence, read, receipt, notify",
        readers: "edges (each reads the partition of its own key)",
    },
    TopicDoc {
        topic: topics::SUBSCRIPTIONS,
        subject: Some(Subject::Subscription),
        key: "room@edge (host, unhost) or user/<sub>@edge (user-host, user-unhost)",
        writers: "the sequencer (rooms) and edges (users); compacted: the latest per key",
        readers: "fan-out, typing, inbox (who is where)",
    },
    TopicDoc {
        topic: topics::TYPING,
        subject: Some(Subject::ClientEvent),
        key: "room",
        writers: "edges (kind typing)",
        readers: "the typing processor",
    },
    TopicDoc {
        topic: topics::PRESENCE,
        subject: Some(Subject::ClientEvent),
        key: "room, or the edge's node id for edge-wide events",
        writers: "edges: online, offline, join, leave, edge-start, heartbeat, and the presence \
                  and status questions",
        readers: "the presence processor",
    },
    TopicDoc {
        topic: topics::AUDIT,
        subject: Some(Subject::ModeratorAction),
        key: "room (delete, mute), or the user acted upon (revoke), or jti:<jti> (revoke of one \
              token)",
        writers: "the sequencer, in the transaction that applies a delete or a mute; edges, for \
                  revocations through the admin API",
        readers: "people and compliance tools (nothing in Tidings consumes it)",
    },
    TopicDoc {
        topic: topics::DEAD_LETTERS,
        subject: None,
        key: "the original record's key",
        writers: "processors, for records they cannot decode: the original bytes, with \
                  dead-letter.* headers saying where they came from and why",
        readers: "people (nothing in Tidings consumes it)",
    },
    TopicDoc {
        topic: topics::WEBHOOK_DEAD_LETTERS,
        subject: Some(Subject::RoomEvent),
        key: "room",
        writers: "the webhook processor (live, or tidings replay processor webhook over \
                  history), for room events an endpoint did not accept after the \
                  last attempt: the room-log record unchanged, with webhook.endpoint, \
                  webhook.url, webhook.delivery-id, webhook.attempts, webhook.error, \
                  webhook.source-partition and webhook.source-offset headers",
        readers: "people (nothing in Tidings consumes it)",
    },
    TopicDoc {
        topic: topics::REVOCATIONS,
        subject: Some(Subject::Revocation),
        key: "sub:<sub> (a user) or jti:<jti> (one token)",
        writers: "edges, for POST /api/admin/revoke (kind revoke); compacted: the latest per \
                  key holds, and one whose until has passed lifts the revocation",
        readers: "every edge, from the beginning (no consumer group): it refuses and cuts the \
                  user's or token's connections until `until`",
    },
];

/// `<topic>-value` for every topic with a schema, in topic order.
pub fn subjects() -> impl Iterator<Item = (String, Subject)> {
    TOPIC_DOCS
        .iter()
        .filter_map(|doc| Some((format!("{}-value", doc.topic), doc.subject?)))
}

fn subject_named(name: &str) -> Option<Subject> {
    subjects().find(|(n, _)| n == name).map(|(_, s)| s)
}

/// The registry's error body: `{error_code, message}` with its HTTP status.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl ApiError {
    fn subject_not_found(subject: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: 40401,
            message: format!("Subject '{subject}' not found."),
        }
    }

    fn version_not_found(version: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: 40402,
            message: format!("Version {version} not found."),
        }
    }

    fn schema_not_found() -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: 40403,
            message: "Schema not found".into(),
        }
    }

    fn invalid_schema(why: impl std::fmt::Display) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: 42201,
            message: format!("Invalid schema: {why}"),
        }
    }

    fn invalid_version(version: &str) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: 42202,
            message: format!("The specified version '{version}' is not a valid version id."),
        }
    }

    fn read_only() -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: 42205,
            message: "This registry serves Tidings' released schemas only: a new version \
                      comes with a new Tidings release (schemas/avro/)."
                .into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error_code": self.code, "message": self.message });
        (
            self.status,
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            body.to_string(),
        )
            .into_response()
    }
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

type ApiResult = std::result::Result<Response, ApiError>;

/// The registry's routes, to serve at the root of an address.
pub fn router() -> Router {
    Router::new()
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route("/subjects/{subject}/versions/{version}", get(version))
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(version_schema),
        )
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/versions", get(versions_of_id))
        .route("/schemas/types", get(|| async { ok(json!(["AVRO"])) }))
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compatibility),
        )
        .route("/config", get(config))
        .route("/config/{subject}", get(config))
        .route("/mode", get(mode))
        .route("/mode/{subject}", get(mode))
}

async fn list_subjects() -> Response {
    ok(json!(subjects().map(|(name, _)| name).collect::<Vec<_>>()))
}

fn subject(name: &str) -> Result<Subject, ApiError> {
    subject_named(name).ok_or_else(|| ApiError::subject_not_found(name))
}

async fn list_versions(Path(name): Path<String>) -> ApiResult {
    let versions: Vec<u32> = registry::history(subject(&name)?)
        .map(|(v, _)| v.version)
        .collect();
    Ok(ok(json!(versions)))
}

/// `latest`, `-1` or a version number of `subject`.
fn find_version(subject: Subject, version: &str) -> Result<&'static SchemaVersion, ApiError> {
    if version == "latest" || version == "-1" {
        return Ok(registry::current(subject).0);
    }
    let number: u32 = version
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::invalid_version(version))?;
    registry::history(subject)
        .map(|(v, _)| v)
        .find(|v| v.version == number)
        .ok_or_else(|| ApiError::version_not_found(version))
}

fn version_body(name: &str, v: &SchemaVersion) -> Value {
    json!({ "subject": name, "version": v.version, "id": v.id, "schema": compact(v.source) })
}

/// The schema text as registries hold it: JSON without the file's indentation.
fn compact(source: &str) -> String {
    serde_json::from_str::<Value>(source)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| source.to_string())
}

async fn version(Path((name, version)): Path<(String, String)>) -> ApiResult {
    let v = find_version(subject(&name)?, &version)?;
    Ok(ok(version_body(&name, v)))
}

async fn version_schema(Path((name, version)): Path<(String, String)>) -> ApiResult {
    let v = find_version(subject(&name)?, &version)?;
    Ok(ok(serde_json::from_str(v.source).unwrap_or(Value::Null)))
}

async fn schema_by_id(Path(id): Path<u32>) -> ApiResult {
    let (v, _) = registry::by_id(id).ok_or_else(ApiError::schema_not_found)?;
    Ok(ok(json!({ "schema": compact(v.source) })))
}

async fn raw_schema_by_id(Path(id): Path<u32>) -> ApiResult {
    let (v, _) = registry::by_id(id).ok_or_else(ApiError::schema_not_found)?;
    Ok(ok(serde_json::from_str(v.source).unwrap_or(Value::Null)))
}

async fn versions_of_id(Path(id): Path<u32>) -> ApiResult {
    let (v, _) = registry::by_id(id).ok_or_else(ApiError::schema_not_found)?;
    let under: Vec<Value> = subjects()
        .filter(|(_, s)| *s == v.subject)
        .map(|(name, _)| json!({ "subject": name, "version": v.version }))
        .collect();
    Ok(ok(json!(under)))
}

/// A request body carrying a schema, as clients send it.
#[derive(Deserialize)]
struct SchemaBody {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
}

fn parse(body: &SchemaBody) -> Result<Schema, ApiError> {
    if let Some(kind) = body.schema_type.as_deref() {
        if kind != "AVRO" {
            return Err(ApiError::invalid_schema(format!(
                "only AVRO is served, not {kind}"
            )));
        }
    }
    Schema::parse_str(&body.schema).map_err(ApiError::invalid_schema)
}

/// The released version of `subject` whose schema is `schema` (compared in canonical form).
fn matching(subject: Subject, schema: &Schema) -> Option<&'static SchemaVersion> {
    let wanted = schema.canonical_form();
    registry::history(subject)
        .find(|(_, s)| s.canonical_form() == wanted)
        .map(|(v, _)| v)
}

/// `POST /subjects/{subject}`: is this schema registered, and as what?
async fn lookup(Path(name): Path<String>, Json(body): Json<SchemaBody>) -> ApiResult {
    let subject = subject(&name)?;
    let schema = parse(&body)?;
    let v = matching(subject, &schema).ok_or_else(ApiError::schema_not_found)?;
    Ok(ok(version_body(&name, v)))
}

/// `POST /subjects/{subject}/versions`: a serializer's auto-registration gets the id of a
/// schema that is already released; anything new is refused (the registry is read-only).
async fn register(Path(name): Path<String>, Json(body): Json<SchemaBody>) -> ApiResult {
    let subject = subject(&name)?;
    let schema = parse(&body)?;
    let v = matching(subject, &schema).ok_or_else(ApiError::read_only)?;
    Ok(ok(json!({ "id": v.id })))
}

/// `POST /compatibility/subjects/{subject}/versions/{version}`: whether data written with
/// that version can be read with the given schema (BACKWARD, the level Tidings keeps).
async fn compatibility(
    Path((name, version)): Path<(String, String)>,
    Json(body): Json<SchemaBody>,
) -> ApiResult {
    let subject = subject(&name)?;
    let writer = find_version(subject, &version)?;
    let (_, writer_schema) = registry::by_id(writer.id).ok_or_else(ApiError::schema_not_found)?;
    let reader = parse(&body)?;
    Ok(
        match SchemaCompatibility::can_read(writer_schema, &reader) {
            Ok(()) => ok(json!({ "is_compatible": true })),
            Err(why) => ok(json!({ "is_compatible": false, "messages": [why.to_string()] })),
        },
    )
}

async fn config() -> Response {
    ok(json!({ "compatibilityLevel": "BACKWARD" }))
}

async fn mode() -> Response {
    ok(json!({ "mode": "READONLY" }))
}

/// Serves the registry, with `/healthz`, `/readyz` and `/metrics`, on `addr` until
/// `shutdown`.
pub async fn serve(addr: &str, shutdown: tokio_util::sync::CancellationToken) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "schema registry listening");
    let app = router().merge(crate::ops::probes());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("schema registry")
}

/// One line per subject and version: what `tidings schemas list` prints.
pub fn listing() -> Vec<String> {
    subjects()
        .flat_map(|(name, subject)| {
            registry::history(subject).map(move |(v, _)| {
                format!("{name}\tversion {}\tid {}\t{}", v.version, v.id, v.file)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_is_described_once_and_only_dead_letters_has_no_subject() {
        let all = topics::all();
        assert_eq!(TOPIC_DOCS.len(), all.len());
        for spec in all {
            let docs: Vec<_> = TOPIC_DOCS.iter().filter(|d| d.topic == spec.name).collect();
            assert_eq!(docs.len(), 1, "{}", spec.name);
            assert_eq!(
                docs[0].subject.is_none(),
                spec.name == topics::DEAD_LETTERS,
                "{}",
                spec.name
            );
        }
    }

    #[test]
    fn a_released_schema_matches_its_version_whatever_its_formatting() {
        let (v, _) = registry::by_id(102).expect("id 102");
        let body = SchemaBody {
            schema: compact(v.source),
            schema_type: None,
        };
        let schema = parse(&body).expect("parses");
        assert_eq!(
            matching(Subject::ClientEvent, &schema).map(|v| v.id),
            Some(102)
        );
        assert!(matching(Subject::RoomEvent, &schema).is_none());
        let other = SchemaBody {
            schema: r#"{"type":"record","name":"X","fields":[]}"#.into(),
            schema_type: None,
        };
        assert!(matching(Subject::ClientEvent, &parse(&other).expect("parses")).is_none());
        let protobuf = SchemaBody {
            schema: "syntax = \"proto3\";".into(),
            schema_type: Some("PROTOBUF".into()),
        };
        assert_eq!(parse(&protobuf).err().map(|e| e.code), Some(42201));
    }

    #[test]
    fn versions_are_found_by_number_or_latest_and_bad_ones_are_told_apart() {
        let latest = find_version(Subject::Delivery, "latest").expect("latest");
        assert_eq!(latest.id, registry::current(Subject::Delivery).0.id);
        assert_eq!(
            find_version(Subject::Delivery, "1").map(|v| v.id).ok(),
            Some(301)
        );
        assert_eq!(
            find_version(Subject::Delivery, "99").err().map(|e| e.code),
            Some(40402)
        );
        assert_eq!(
            find_version(Subject::Delivery, "x").err().map(|e| e.code),
            Some(42202)
        );
        assert_eq!(
            find_version(Subject::Delivery, "0").err().map(|e| e.code),
            Some(42202)
        );
    }
}
