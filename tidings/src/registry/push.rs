//! `tidings schemas push`: registers every version of every subject in another Schema
//! Registry under Tidings' ids, so records written by Tidings decode against that registry.
//!
//! Two ways in, chosen by asking the registry what it is (see [`detect`]):
//!
//! - Apicurio Registry: its admin import API (`POST {root}/apis/registry/v2/admin/import`)
//!   with an archive in its export format, each schema's content id set to Tidings' id
//!   (Apicurio's Confluent API serves content ids as schema ids). Apicurio's import skips
//!   whatever it cannot insert and still answers 204, so push checks every id before and
//!   after it.
//! - Anything else is taken for a Confluent-style registry: IMPORT mode per subject, then
//!   each version with its explicit id; a registry that refuses IMPORT mode would pick ids
//!   itself, so there push registers nothing and only checks that every schema is already
//!   there under Tidings' id.
//!
//! Either way, an id the registry already holds with the same schema is fine (push twice
//! succeeds), and an id held by a different schema stops push before it writes anything.

use super::{compact, subjects};
use apache_avro::Schema;
use reqwest::{StatusCode, Url};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::Write as _;
use std::time::Duration;
use tidings_schemas::registry::{self, SchemaVersion};

/// Apicurio's own REST API, below the registry's root.
const APICURIO_API: &str = "apis/registry/v2";

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0} is not an http(s) URL")]
    BadUrl(String),
    #[error("building the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("{method} {url} failed")]
    Request {
        method: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {url}: the registry answered {status}: {body}")]
    Status {
        method: &'static str,
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error(
        "id {id} is already held by a different schema in the registry, but Tidings writes \
         {subject} version {version} ({file}) under id {id}: consumers would decode Tidings' \
         records with the wrong schema. Nothing was pushed; free the id or use another registry"
    )]
    IdConflict {
        subject: String,
        version: u32,
        id: u32,
        file: &'static str,
    },
    #[error(
        "{subject} version {version} is already registered with id {held}, but Tidings \
         writes it with id {id} ({file}). Nothing was pushed"
    )]
    VersionConflict {
        subject: String,
        version: u32,
        id: u32,
        held: u64,
        file: &'static str,
    },
    #[error(
        "the registry already holds the schema of {subject} version {version} ({file}) under \
         an id other than {id}, and Apicurio keeps one id per content. Nothing was pushed"
    )]
    ContentElsewhere {
        subject: String,
        version: u32,
        id: u32,
        file: &'static str,
    },
    #[error(
        "{subject} version {version}: the registry has it under id {given}, but Tidings writes \
         {id}; consumers would not find the schema"
    )]
    WrongId {
        subject: String,
        version: u32,
        id: u32,
        given: String,
    },
    #[error(
        "{subject} version {version} (id {id}) is not in the registry, and the registry refused \
         IMPORT mode, without which it picks ids itself: allow mode changes \
         (mode.mutability=true in Confluent Schema Registry) and push again"
    )]
    NoImportMode {
        subject: String,
        version: u32,
        id: u32,
    },
    #[error(
        "after the import, {subject} version {version} is not served under id {id}: {why} \
         (the registry's log says what its import skipped)"
    )]
    NotImported {
        subject: String,
        version: u32,
        id: u32,
        why: String,
    },
    #[error("building the import archive")]
    Archive(#[from] zip::result::ZipError),
    #[error("building the import archive")]
    ArchiveWrite(#[from] std::io::Error),
}

type Result<T, E = PushError> = std::result::Result<T, E>;

/// One version to push: the subject it is registered under, and what Tidings holds.
struct Entry {
    subject: String,
    version: &'static SchemaVersion,
    schema: &'static Schema,
}

impl Entry {
    /// The bytes the registry stores: the schema as `tidings registry` serves it.
    fn content(&self) -> String {
        compact(self.version.source)
    }
}

fn entries() -> Vec<Entry> {
    subjects()
        .flat_map(|(name, subject)| {
            registry::history(subject).map(move |(version, schema)| Entry {
                subject: name.clone(),
                version,
                schema,
            })
        })
        .collect()
}

/// Whether `held`, a schema as a registry returns it, is `ours` (compared in Avro's
/// parsing canonical form, so formatting and key order do not matter).
fn same_schema(held: &str, ours: &Schema) -> bool {
    Schema::parse_str(held).is_ok_and(|s| s.canonical_form() == ours.canonical_form())
}

/// The registries push knows how to fill.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    /// Confluent's REST API at the URL given (IMPORT mode if the registry has it).
    Confluent,
    /// Apicurio Registry; its own API at this base (`{root}/apis/registry/v2`).
    Apicurio { api: String },
}

/// Where Apicurio's own API would be for `url`: the URL up to its path's `/apis/` (so both
/// `http://host:8080/apis/ccompat/v7` and `http://host:8080` give `http://host:8080`),
/// then `apis/registry/v2`.
pub fn apicurio_api(url: &str) -> Result<String> {
    let mut parsed = Url::parse(url).map_err(|_| PushError::BadUrl(url.into()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(PushError::BadUrl(url.into()));
    }
    let path = parsed.path().to_string();
    let root = match path.find("/apis/") {
        Some(at) => &path[..at],
        None => path.trim_end_matches('/'),
    };
    parsed.set_path(&format!("{root}/{APICURIO_API}"));
    parsed.set_query(None);
    parsed.set_fragment(None);
    Ok(parsed.to_string())
}

/// The rule: a registry is Apicurio if `GET {apicurio_api(url)}/system/info` answers 200
/// with a JSON `name` containing "apicurio" in any case (Apicurio 2.x names itself
/// "apicurio-registry" or "Apicurio Registry (…)" there); anything else is taken for
/// Confluent's API at `url`.
pub async fn detect(http: &Http, url: &str) -> Result<Kind> {
    let api = apicurio_api(url)?;
    let (status, body) = http.get(&format!("{api}/system/info")).await?;
    let name = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|info| info.get("name")?.as_str().map(str::to_owned));
    Ok(match name {
        Some(name) if status == StatusCode::OK && name.to_lowercase().contains("apicurio") => {
            Kind::Apicurio { api }
        }
        _ => Kind::Confluent,
    })
}

/// An HTTP client whose errors name the request.
pub struct Http(reqwest::Client);

impl Http {
    pub fn new() -> Result<Self> {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map(Self)
            .map_err(PushError::Client)
    }

    async fn send(
        &self,
        method: &'static str,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Vec<u8>)> {
        let failed = |source| PushError::Request {
            method,
            url: redact(url),
            source,
        };
        let response = request.send().await.map_err(|e| failed(e.without_url()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| failed(e.without_url()))?;
        Ok((status, body.to_vec()))
    }

    async fn get(&self, url: &str) -> Result<(StatusCode, Vec<u8>)> {
        self.send("GET", url, self.0.get(url)).await
    }

    /// GET that must answer 200 or 404: `None` for 404.
    async fn get_found(&self, url: &str) -> Result<Option<Vec<u8>>> {
        match self.get(url).await? {
            (StatusCode::OK, body) => Ok(Some(body)),
            (StatusCode::NOT_FOUND, _) => Ok(None),
            (status, body) => Err(unexpected("GET", url, status, &body)),
        }
    }
}

/// `url` without its password, for messages: credentials may come in the URL (reqwest
/// sends them as HTTP basic auth).
fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

fn unexpected(method: &'static str, url: &str, status: StatusCode, body: &[u8]) -> PushError {
    let body = String::from_utf8_lossy(body);
    PushError::Status {
        method,
        url: redact(url),
        status,
        body: body.chars().take(500).collect(),
    }
}

/// Pushes every schema to the registry at `url`, Confluent's API or Apicurio's (see
/// [`detect`]); prints one line per subject and version.
pub async fn push(url: &str) -> Result<()> {
    let url = url.trim_end_matches('/');
    let http = Http::new()?;
    let entries = entries();
    match detect(&http, url).await? {
        Kind::Apicurio { api } => {
            tracing::info!(api = %redact(&api), "Apicurio Registry: pushing through its admin import");
            push_apicurio(&http, &api, &entries).await
        }
        Kind::Confluent => push_confluent(&http, url, &entries).await,
    }
}

// ---------------------------------------------------------------------------------------
// Confluent
// ---------------------------------------------------------------------------------------

async fn push_confluent(http: &Http, url: &str, entries: &[Entry]) -> Result<()> {
    // Every id first, so a conflict stops push before it changes anything.
    for entry in entries {
        let id = entry.version.id;
        let by_id = format!("{url}/schemas/ids/{id}");
        if let Some(body) = http.get_found(&by_id).await? {
            let held = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("schema")?.as_str().map(str::to_owned));
            if !held.is_some_and(|held| same_schema(&held, entry.schema)) {
                return Err(id_conflict(entry));
            }
        }
    }
    let mut subject_names: Vec<&str> = entries.iter().map(|e| e.subject.as_str()).collect();
    subject_names.dedup();
    for name in subject_names {
        let mode = format!("{url}/mode/{name}");
        let (status, _) = http
            .send(
                "PUT",
                &mode,
                http.0
                    .put(format!("{mode}?force=true"))
                    .json(&json!({ "mode": "IMPORT" })),
            )
            .await?;
        let imported = status.is_success();
        if !imported {
            tracing::warn!(subject = %name, %status,
                "the registry refused IMPORT mode: only checking what it already holds");
        }
        let mut result = Ok(());
        for entry in entries.iter().filter(|e| e.subject == name) {
            result = register_confluent(http, url, entry, imported).await;
            if result.is_err() {
                break;
            }
        }
        if imported {
            // Out of IMPORT mode whatever happened: producers must be able to register.
            let (back, _) = http
                .send(
                    "PUT",
                    &mode,
                    http.0.put(&mode).json(&json!({ "mode": "READWRITE" })),
                )
                .await?;
            if !back.is_success() {
                tracing::warn!(subject = %name, status = %back, "could not leave IMPORT mode");
            }
        }
        result?;
    }
    Ok(())
}

/// In IMPORT mode, registers `entry` with its id and version. Without it the registry would
/// pick the id itself, so push only looks the schema up and accepts it if it is already
/// there under Tidings' id (a registry that is read-only, such as `tidings registry`).
async fn register_confluent(http: &Http, url: &str, entry: &Entry, imported: bool) -> Result<()> {
    let v = entry.version;
    let body = json!({ "schema": entry.content(), "schemaType": "AVRO" });
    let given = if imported {
        let versions = format!("{url}/subjects/{}/versions", entry.subject);
        let mut body = body;
        body["id"] = json!(v.id);
        body["version"] = json!(v.version);
        let (status, answer) = http
            .send("POST", &versions, http.0.post(&versions).json(&body))
            .await?;
        if !status.is_success() {
            return Err(unexpected("POST", &versions, status, &answer));
        }
        answer
    } else {
        let lookup = format!("{url}/subjects/{}", entry.subject);
        let (status, answer) = http
            .send("POST", &lookup, http.0.post(&lookup).json(&body))
            .await?;
        match status {
            StatusCode::OK => answer,
            StatusCode::NOT_FOUND => {
                return Err(PushError::NoImportMode {
                    subject: entry.subject.clone(),
                    version: v.version,
                    id: v.id,
                })
            }
            _ => return Err(unexpected("POST", &lookup, status, &answer)),
        }
    };
    let given = serde_json::from_slice::<Value>(&given)
        .ok()
        .and_then(|a| a.get("id")?.as_u64());
    if given != Some(u64::from(v.id)) {
        return Err(PushError::WrongId {
            subject: entry.subject.clone(),
            version: v.version,
            id: v.id,
            given: given.map_or_else(|| "none".into(), |g| g.to_string()),
        });
    }
    println!("{}\tversion {}\tid {}", entry.subject, v.version, v.id);
    Ok(())
}

fn id_conflict(entry: &Entry) -> PushError {
    PushError::IdConflict {
        subject: entry.subject.clone(),
        version: entry.version.version,
        id: entry.version.id,
        file: entry.version.file,
    }
}

// ---------------------------------------------------------------------------------------
// Apicurio
// ---------------------------------------------------------------------------------------

/// What an Apicurio registry holds for one of Tidings' subject versions.
#[derive(Debug, PartialEq, Eq)]
enum Held {
    /// The version is there, under Tidings' id, with Tidings' schema.
    Same,
    /// Neither the version nor anything in Tidings' way: to import.
    Missing,
}

async fn push_apicurio(http: &Http, api: &str, entries: &[Entry]) -> Result<()> {
    let mut missing = Vec::new();
    for entry in entries {
        if check_apicurio(http, api, entry).await? == Held::Missing {
            missing.push(entry);
        }
    }
    if !missing.is_empty() {
        let archive = export_archive(&missing, now_ms())?;
        let import = format!("{api}/admin/import");
        let request = http
            .0
            .post(&import)
            .header(reqwest::header::CONTENT_TYPE, "application/zip")
            // Content ids are the schema ids consumers see: Tidings' own. Global ids are
            // Apicurio's internal version ids, left to it so they never clash with others'.
            .header("X-Registry-Preserve-ContentId", "true")
            .header("X-Registry-Preserve-GlobalId", "false")
            .body(archive);
        let (status, body) = http.send("POST", &import, request).await?;
        if !status.is_success() {
            return Err(unexpected("POST", &import, status, &body));
        }
    }
    // The import answers 204 even for what it skipped: each version must now be served.
    for entry in entries {
        let v = entry.version;
        match check_apicurio(http, api, entry).await {
            Ok(Held::Same) => println!("{}\tversion {}\tid {}", entry.subject, v.version, v.id),
            Ok(Held::Missing) => {
                return Err(PushError::NotImported {
                    subject: entry.subject.clone(),
                    version: v.version,
                    id: v.id,
                    why: "the registry does not have it".into(),
                })
            }
            Err(e @ (PushError::Request { .. } | PushError::Status { .. })) => return Err(e),
            Err(conflict) => {
                return Err(PushError::NotImported {
                    subject: entry.subject.clone(),
                    version: v.version,
                    id: v.id,
                    why: conflict.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// What the registry holds for `entry`, or the conflict that stops push.
async fn check_apicurio(http: &Http, api: &str, entry: &Entry) -> Result<Held> {
    let v = entry.version;
    let by_id = format!("{api}/ids/contentIds/{}", v.id);
    let id_held = match http.get_found(&by_id).await? {
        Some(held) => {
            if !std::str::from_utf8(&held).is_ok_and(|held| same_schema(held, entry.schema)) {
                return Err(id_conflict(entry));
            }
            true
        }
        None => false,
    };
    let meta = format!(
        "{api}/groups/default/artifacts/{}/versions/{}/meta",
        entry.subject, v.version
    );
    if let Some(body) = http.get_found(&meta).await? {
        let held = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|m| m.get("contentId")?.as_u64());
        return match held {
            Some(held) if held == u64::from(v.id) && id_held => Ok(Held::Same),
            Some(held) => Err(PushError::VersionConflict {
                subject: entry.subject.clone(),
                version: v.version,
                id: v.id,
                held,
                file: v.file,
            }),
            None => Err(unexpected("GET", &meta, StatusCode::OK, &body)),
        };
    }
    if !id_held {
        // Apicurio keeps one content id per exact content: the same bytes under another id
        // would make the import skip Tidings' id.
        let by_hash = format!("{api}/ids/contentHashes/{}", content_hash(&entry.content()));
        if http.get_found(&by_hash).await?.is_some() {
            return Err(PushError::ContentElsewhere {
                subject: entry.subject.clone(),
                version: v.version,
                id: v.id,
                file: v.file,
            });
        }
    }
    Ok(Held::Missing)
}

fn content_hash(content: &str) -> String {
    hex::encode(Sha256::digest(content.as_bytes()))
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// `entries` as an archive in Apicurio's export format 1.0 (what its `admin/export` writes
/// and `admin/import` reads): a manifest, each content once (its `.Content.json` directly
/// followed by its `.Content.data`) with `contentId` = Tidings' id, and one artifact version
/// per subject and version in the default group. Apicurio reads entries until the first
/// name that is not `<name>.<Type>.<ext>`, so there are no directory entries.
fn export_archive(entries: &[&Entry], now_ms: u128) -> Result<Vec<u8>> {
    // Stored: Java's ZipInputStream reads stored entries only with their sizes in the local
    // header, which ZipWriter writes on a seekable Cursor (no data descriptor).
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let mut put = |name: String, data: &[u8]| -> Result<()> {
        zip.start_file(name, options)?;
        zip.write_all(data)?;
        Ok(())
    };
    let manifest = json!({
        "systemName": "Tidings",
        "systemDescription": "tidings schemas push",
        "systemVersion": env!("CARGO_PKG_VERSION"),
        "exportVersion": "1.0",
        "exportedOn": now_ms,
        "exportedBy": "tidings",
    });
    put(
        "manifest.Manifest.json".into(),
        manifest.to_string().as_bytes(),
    )?;
    let mut contents = BTreeSet::new();
    for entry in entries {
        let v = entry.version;
        if contents.insert(v.id) {
            let content = entry.content();
            let hash = content_hash(&content);
            // canonicalHash null: Apicurio computes it from artifactType, as its own
            // registrations do, so a serializer's lookup of the same schema finds this id.
            let meta = json!({
                "contentId": v.id,
                "contentHash": hash,
                "canonicalHash": null,
                "artifactType": "AVRO",
                "serializedReferences": null,
            });
            put(
                format!("content/{hash}.Content.json"),
                meta.to_string().as_bytes(),
            )?;
            put(format!("content/{hash}.Content.data"), content.as_bytes())?;
        }
    }
    for entry in entries {
        let v = entry.version;
        let latest = registry::current(v.subject).0.version == v.version;
        let version = json!({
            "globalId": -1,
            "groupId": null,
            "artifactId": entry.subject,
            "version": v.version.to_string(),
            "versionId": v.version,
            "artifactType": "AVRO",
            "state": "ENABLED",
            "name": null,
            "description": null,
            "createdBy": "tidings",
            "createdOn": now_ms,
            "labels": null,
            "properties": null,
            "isLatest": latest,
            "contentId": v.id,
        });
        put(
            format!(
                "groups/default/artifacts/{}/versions/{}.ArtifactVersion.json",
                entry.subject, v.version
            ),
            version.to_string().as_bytes(),
        )?;
    }
    Ok(zip.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::sync::{Arc, Mutex};

    /// Just enough of Confluent Schema Registry's IMPORT mode to check what push sends: the
    /// path itself has no registry to run against in CI (see CONSUMING.md).
    mod confluent {
        use axum::extract::{Json, Path, State};
        use axum::http::StatusCode;
        use axum::routing::{get, put};
        use axum::Router;
        use serde_json::{json, Value};
        use std::collections::BTreeMap;
        use std::sync::{Arc, Mutex};

        #[derive(Default)]
        pub struct Registry {
            pub schemas: BTreeMap<u64, String>,
            pub versions: BTreeMap<(String, u64), u64>,
            pub modes: BTreeMap<String, String>,
            pub requests: usize,
        }

        type Shared = Arc<Mutex<Registry>>;

        pub async fn serve(registry: Shared) -> String {
            let app = Router::new()
                .route("/schemas/ids/{id}", get(by_id))
                .route("/mode/{subject}", put(mode))
                .route(
                    "/subjects/{subject}/versions",
                    axum::routing::post(register),
                )
                .with_state(registry);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let url = format!("http://{}", listener.local_addr().expect("addr"));
            tokio::spawn(async move { axum::serve(listener, app).await });
            url
        }

        async fn by_id(State(r): State<Shared>, Path(id): Path<u64>) -> (StatusCode, Json<Value>) {
            let r = r.lock().expect("lock");
            match r.schemas.get(&id) {
                Some(schema) => (StatusCode::OK, Json(json!({ "schema": schema }))),
                None => (StatusCode::NOT_FOUND, Json(json!({ "error_code": 40403 }))),
            }
        }

        async fn mode(
            State(r): State<Shared>,
            Path(subject): Path<String>,
            Json(body): Json<Value>,
        ) -> Json<Value> {
            let mut r = r.lock().expect("lock");
            r.requests += 1;
            let mode = body["mode"].as_str().unwrap_or_default().to_string();
            r.modes.insert(subject, mode.clone());
            Json(json!({ "mode": mode }))
        }

        async fn register(
            State(r): State<Shared>,
            Path(subject): Path<String>,
            Json(body): Json<Value>,
        ) -> (StatusCode, Json<Value>) {
            let mut r = r.lock().expect("lock");
            r.requests += 1;
            if r.modes.get(&subject).map(String::as_str) != Some("IMPORT") {
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Json(json!({ "error_code": 42205 })),
                );
            }
            let (Some(id), Some(version), Some(schema)) = (
                body["id"].as_u64(),
                body["version"].as_u64(),
                body["schema"].as_str(),
            ) else {
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Json(json!({ "error_code": 42201 })),
                );
            };
            if r.schemas.get(&id).is_some_and(|held| held != schema) {
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Json(json!({ "error_code": 42207 })),
                );
            }
            r.schemas.insert(id, schema.to_string());
            r.versions.insert((subject, version), id);
            (StatusCode::OK, Json(json!({ "id": id })))
        }
    }

    #[tokio::test]
    async fn confluent_import_mode_gets_every_id_and_version_and_leaves_import_mode() {
        let registry = Arc::new(Mutex::new(confluent::Registry::default()));
        let url = confluent::serve(registry.clone()).await;
        push(&url).await.expect("push");
        push(&format!("{url}/")).await.expect("push again");
        let r = registry.lock().expect("lock");
        for entry in entries() {
            let v = entry.version;
            assert_eq!(
                r.versions
                    .get(&(entry.subject.clone(), u64::from(v.version))),
                Some(&u64::from(v.id)),
                "{} version {}",
                entry.subject,
                v.version
            );
            let held = r.schemas.get(&u64::from(v.id)).expect("schema");
            assert!(same_schema(held, entry.schema), "id {}", v.id);
        }
        assert_eq!(r.modes.len(), subjects().count());
        assert!(r.modes.values().all(|m| m == "READWRITE"), "{:?}", r.modes);
    }

    #[tokio::test]
    async fn confluent_id_held_by_another_schema_stops_push_before_any_write() {
        let registry = Arc::new(Mutex::new(confluent::Registry::default()));
        let entries = entries();
        // The last id in the listing, reported for the first subject version that has it.
        let id = entries.last().expect("entries").version.id;
        let last = entries.iter().find(|e| e.version.id == id).expect("entry");
        let other = r#"{"type":"record","name":"Other","fields":[]}"#;
        registry
            .lock()
            .expect("lock")
            .schemas
            .insert(u64::from(last.version.id), other.into());
        let url = confluent::serve(registry.clone()).await;
        let error = push(&url).await.expect_err("a conflict");
        assert!(
            matches!(&error, PushError::IdConflict { id, subject, .. }
                if *id == last.version.id && *subject == last.subject),
            "{error}"
        );
        let message = error.to_string();
        assert!(
            message.contains(&format!("id {}", last.version.id)),
            "{message}"
        );
        assert!(message.contains(&last.subject), "{message}");
        let r = registry.lock().expect("lock");
        assert_eq!(r.requests, 0, "push wrote before it checked every id");
        assert_eq!(r.schemas.len(), 1);
    }

    #[test]
    fn apicurio_api_is_found_from_its_confluent_url_or_its_root() {
        let api = |url| apicurio_api(url).expect("valid");
        assert_eq!(
            api("http://127.0.0.1:18085/apis/ccompat/v7"),
            "http://127.0.0.1:18085/apis/registry/v2"
        );
        assert_eq!(
            api("https://r.example:8443/prefix/apis/ccompat/v6/"),
            "https://r.example:8443/prefix/apis/registry/v2"
        );
        assert_eq!(
            api("http://apis:8080/"),
            "http://apis:8080/apis/registry/v2"
        );
        assert_eq!(
            api("http://registry:8081/sr"),
            "http://registry:8081/sr/apis/registry/v2"
        );
        assert!(matches!(
            apicurio_api("registry:8081"),
            Err(PushError::BadUrl(_))
        ));
        assert!(matches!(
            apicurio_api("not a url"),
            Err(PushError::BadUrl(_))
        ));
    }

    #[test]
    fn messages_carry_no_password() {
        assert_eq!(
            redact("https://push:s3cret@r.example/apis/registry/v2/admin/import"),
            "https://push:***@r.example/apis/registry/v2/admin/import"
        );
        assert_eq!(
            redact("http://127.0.0.1:18085/apis/ccompat/v7"),
            "http://127.0.0.1:18085/apis/ccompat/v7"
        );
        assert_eq!(
            apicurio_api("https://push:s3cret@r.example/apis/ccompat/v7").expect("valid"),
            "https://push:s3cret@r.example/apis/registry/v2",
            "the credentials stay for the requests"
        );
    }

    #[test]
    fn a_schema_is_the_same_whatever_its_formatting_and_only_then() {
        let entries = entries();
        let first = &entries[0];
        let spaced = serde_json::to_string_pretty(
            &serde_json::from_str::<Value>(first.version.source).expect("json"),
        )
        .expect("json");
        assert!(same_schema(&spaced, first.schema));
        let other = entries
            .iter()
            .find(|e| e.version.id != first.version.id)
            .expect("two schemas");
        assert!(!same_schema(&other.content(), first.schema));
        assert!(!same_schema("syntax = \"proto3\";", first.schema));
    }

    /// The archive's shape is Apicurio's contract; its behaviour is checked against a real
    /// Apicurio by tests/system/test_schema_push.py.
    #[test]
    fn the_archive_holds_each_content_once_and_every_subject_version() {
        let entries = entries();
        let refs: Vec<&Entry> = entries.iter().collect();
        let bytes = export_archive(&refs, 1_700_000_000_000).expect("archive");
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
        let names: Vec<String> = archive.file_names().map(str::to_owned).collect();
        assert_eq!(names[0], "manifest.Manifest.json");
        assert!(names.iter().all(|n| !n.ends_with('/')), "{names:?}");

        let ids: BTreeSet<u32> = entries.iter().map(|e| e.version.id).collect();
        let content_metas: Vec<&String> = names
            .iter()
            .filter(|n| n.ends_with(".Content.json"))
            .collect();
        assert_eq!(content_metas.len(), ids.len());
        let mut seen = BTreeSet::new();
        for i in 0..names.len() {
            if !names[i].ends_with(".Content.json") {
                continue;
            }
            // Apicurio reads a content's data as the entry right after its metadata.
            let data_name = names[i].replace(".Content.json", ".Content.data");
            assert_eq!(names.get(i + 1), Some(&data_name));
            let mut meta = String::new();
            archive
                .by_index(i)
                .expect("entry")
                .read_to_string(&mut meta)
                .expect("utf-8");
            let meta: Value = serde_json::from_str(&meta).expect("json");
            let id = meta["contentId"].as_u64().expect("contentId") as u32;
            let mut data = String::new();
            archive
                .by_index(i + 1)
                .expect("entry")
                .read_to_string(&mut data)
                .expect("utf-8");
            let (_, schema) = registry::by_id(id).expect("a Tidings id");
            assert!(same_schema(&data, schema), "content {id}");
            assert_eq!(meta["contentHash"], json!(content_hash(&data)));
            assert_eq!(meta["artifactType"], "AVRO");
            seen.insert(id);
        }
        assert_eq!(seen, ids);

        for entry in &entries {
            let v = entry.version;
            let name = format!(
                "groups/default/artifacts/{}/versions/{}.ArtifactVersion.json",
                entry.subject, v.version
            );
            let mut text = String::new();
            archive
                .by_name(&name)
                .unwrap_or_else(|_| panic!("{name}"))
                .read_to_string(&mut text)
                .expect("utf-8");
            let version: Value = serde_json::from_str(&text).expect("json");
            assert_eq!(version["contentId"], json!(v.id), "{name}");
            assert_eq!(version["version"], json!(v.version.to_string()), "{name}");
            assert_eq!(
                version["isLatest"],
                json!(registry::current(v.subject).0.id == v.id),
                "{name}"
            );
        }
        assert_eq!(names.len(), 1 + 2 * ids.len() + entries.len());
    }
}
