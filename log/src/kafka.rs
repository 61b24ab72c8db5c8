//! The log on Apache Kafka, through librdkafka.
//!
//! Produces are idempotent with `acks=all`; consumers read committed data only; exactly-once
//! read-process-write uses Kafka transactions with the consumer's group metadata (KIP-447),
//! so a restarted instance with the same id fences its previous incarnation.

use crate::{
    partition_for, validate, Checkpoint, Consumer, ConsumerOptions, Log, LogError, OutRecord,
    PartitionReader, Position, Record, Result, StartAt, TopicSpec,
};
use async_trait::async_trait;
use futures::FutureExt;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::ClientContext;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode as Code;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How to reach Kafka and the client settings that matter for latency.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Producer `linger.ms`: how long to wait to fill a batch. Chosen by `tidings-bench log`.
    pub linger_ms: u32,
    /// Consumer `fetch.wait.max.ms`: how long the broker may hold a fetch for data.
    pub fetch_wait_ms: u32,
    /// Replication factor for topics this program creates.
    pub replication_factor: i32,
    /// Encryption and authentication towards the brokers.
    pub security: KafkaSecurity,
    /// Any other librdkafka setting, applied last.
    pub overrides: Vec<(String, String)>,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            // Measured (BENCHMARKS.md): 0 gave the lowest produce latency, the same p99.
            linger_ms: 0,
            fetch_wait_ms: 10,
            replication_factor: 1,
            security: KafkaSecurity::default(),
            overrides: Vec::new(),
        }
    }

    /// What every client (producers, consumers, readers, admin) starts from, so the
    /// security settings reach all of them.
    fn base(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("socket.nagle.disable", "true")
            .set("message.max.bytes", "2000000");
        self.security.apply(&mut config);
        config
    }

    fn finish(&self, mut config: ClientConfig) -> ClientConfig {
        for (k, v) in &self.overrides {
            config.set(k, v);
        }
        config
    }

    fn producer(&self, transactional_id: Option<&str>) -> ClientConfig {
        let mut config = self.base();
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", self.linger_ms.to_string())
            .set("message.timeout.ms", "30000")
            // Bounded: a full queue is reported as `unavailable`, never grows memory.
            .set("queue.buffering.max.messages", "100000")
            .set("queue.buffering.max.kbytes", "262144");
        if let Some(id) = transactional_id {
            config
                .set("transactional.id", id)
                .set("transaction.timeout.ms", "60000")
                // A transaction that starts right after the previous commit is often told
                // CONCURRENT_TRANSACTIONS while the markers are written; librdkafka's
                // default 100 ms backoff then dominates the latency of the next batch.
                .set("retry.backoff.ms", "2")
                .set("retry.backoff.max.ms", "50");
        }
        self.finish(config)
    }

    fn consumer(&self, group: &str, start_at: StartAt, instance_id: Option<&str>) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", self.fetch_wait_ms.to_string())
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set(
                "auto.offset.reset",
                match start_at {
                    StartAt::Earliest => "earliest",
                    StartAt::Latest => "latest",
                },
            )
            .set("enable.partition.eof", "false")
            // Bounded prefetch per partition.
            .set("queued.max.messages.kbytes", "16384");
        if let Some(id) = instance_id {
            // Static membership: a restarted instance takes its partitions back at once
            // instead of waiting out the dead member's session.
            config.set("group.instance.id", id);
        }
        self.finish(config)
    }
}

/// Kafka's `security.protocol`: whether the connection is TLS, SASL, both or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

impl std::str::FromStr for SecurityProtocol {
    type Err = SecurityError;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        Ok(match text.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return Err(SecurityError::Protocol(text.to_string())),
        })
    }
}

/// The SASL mechanisms librdkafka is built with here (no GSSAPI, no OAUTHBEARER).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaslMechanism {
    #[default]
    ScramSha256,
    ScramSha512,
    Plain,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::Plain => "PLAIN",
        }
    }
}

impl std::str::FromStr for SaslMechanism {
    type Err = SecurityError;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        Ok(match text.trim().to_ascii_uppercase().as_str() {
            "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
            "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
            "PLAIN" => SaslMechanism::Plain,
            _ => return Err(SecurityError::Mechanism(text.to_string())),
        })
    }
}

/// Why a Kafka security setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecurityError {
    #[error("unknown security protocol {0:?}: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")]
    Protocol(String),
    #[error("unknown SASL mechanism {0:?}: SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN")]
    Mechanism(String),
    #[error("{0} needs a SASL username and password")]
    MissingCredentials(&'static str),
    #[error("a SASL username or password is set, but {0} does not use SASL (SASL_PLAINTEXT or SASL_SSL)")]
    CredentialsWithoutSasl(&'static str),
    #[error("a CA file is set, but {0} does not use TLS (SSL or SASL_SSL)")]
    CaWithoutTls(&'static str),
}

/// Encryption and authentication towards the brokers, applied to every client.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaSecurity {
    pub protocol: SecurityProtocol,
    /// Used with the SASL protocols only.
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
    /// PEM file of the CA(s) that signed the brokers' certificates (`ssl.ca.location`);
    /// none: the system's trust store (the `ca-certificates` package on Debian).
    pub ca_file: Option<std::path::PathBuf>,
}

// By hand, so the password never reaches a log line.
impl std::fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSecurity")
            .field("protocol", &self.protocol)
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl KafkaSecurity {
    /// Refuses combinations that would be silently ignored or could never connect.
    pub fn check(&self) -> std::result::Result<(), SecurityError> {
        let protocol = self.protocol.as_str();
        let credentials = !self.username.is_empty() || !self.password.is_empty();
        if self.protocol.uses_sasl() {
            if self.username.is_empty() || self.password.is_empty() {
                return Err(SecurityError::MissingCredentials(protocol));
            }
        } else if credentials {
            return Err(SecurityError::CredentialsWithoutSasl(protocol));
        }
        if self.ca_file.is_some() && !self.protocol.uses_tls() {
            return Err(SecurityError::CaWithoutTls(protocol));
        }
        Ok(())
    }

    /// Whether a password would cross the network in clear (PLAIN without TLS).
    pub fn sends_password_in_clear(&self) -> bool {
        self.protocol == SecurityProtocol::SaslPlaintext && self.mechanism == SaslMechanism::Plain
    }

    fn apply(&self, config: &mut ClientConfig) {
        config.set("security.protocol", self.protocol.as_str());
        if self.protocol.uses_sasl() {
            config
                .set("sasl.mechanism", self.mechanism.as_str())
                .set("sasl.username", &self.username)
                .set("sasl.password", &self.password);
        }
        if self.protocol.uses_tls() {
            // OpenSSL is linked statically, so its built-in CA path is not the system's:
            // "probe" has librdkafka look in the usual places (/etc/ssl/certs, ...).
            let ca = match &self.ca_file {
                Some(ca) => ca.to_string_lossy().into_owned(),
                None => "probe".into(),
            };
            config.set("ssl.ca.location", ca);
        }
    }
}

fn unavailable(e: KafkaError) -> LogError {
    match e.rdkafka_error_code() {
        Some(Code::MessageSizeTooLarge) | Some(Code::InvalidMessageSize) => LogError::TooLarge {
            size: 0,
            max: crate::MAX_VALUE_BYTES,
        },
        Some(Code::UnknownTopicOrPartition) | Some(Code::UnknownTopic) => {
            LogError::UnknownTopic(e.to_string())
        }
        Some(Code::Fenced)
        | Some(Code::ProducerFenced)
        | Some(Code::InvalidProducerEpoch)
        | Some(Code::FencedInstanceId) => LogError::Fenced(e.to_string()),
        _ => LogError::Unavailable(format!("kafka: {e}")),
    }
}

/// Events a never-subscribed consumer has queued, read at most this many at a time.
const MAX_DRAINED_EVENTS: usize = 1000;

/// Drops the events (connection errors) queued on the metadata consumer: nothing else polls
/// it, so while the brokers are unreachable they would only pile up.
fn drain_events(consumer: &BaseConsumer) {
    for _ in 0..MAX_DRAINED_EVENTS {
        if consumer.poll(Duration::ZERO).is_none() {
            break;
        }
    }
}

/// How long [`Log::writable`] waits for Kafka's answer.
const WRITABLE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an offset look-up (by time, or a group's commit) waits for Kafka's answer.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// One partition's entry in a look-up's answer, or its error.
fn partition_answer(
    answer: &TopicPartitionList,
    topic: &str,
    partition: u32,
) -> std::result::Result<Offset, KafkaError> {
    match answer.find_partition(topic, partition as i32) {
        Some(entry) => entry.error().map(|()| entry.offset()),
        None => Err(KafkaError::MetadataFetch(
            RDKafkaErrorCode::UnknownPartition,
        )),
    }
}

fn join_error(e: tokio::task::JoinError) -> LogError {
    LogError::Unavailable(format!("kafka task: {e}"))
}

/// How long a refused login counts as the reason a later request failed.
const AUTH_MEMORY: Duration = Duration::from_secs(60);

/// The context of the producers: besides logging librdkafka's errors as the default does,
/// it remembers the last refused SASL login, with librdkafka's reason. A refused login
/// otherwise only shows as a transport failure of the request that needed the broker; the
/// main producer polls its events all the time, so it hears of it first.
#[derive(Clone, Default)]
struct AuthWatch {
    refused: Arc<Mutex<Option<(std::time::Instant, String)>>>,
}

impl AuthWatch {
    /// librdkafka's reason, if a login was refused within [`AUTH_MEMORY`].
    fn recent(&self) -> Option<String> {
        let refused = self.refused.lock().ok()?;
        let (when, why) = refused.as_ref()?;
        (when.elapsed() < AUTH_MEMORY).then(|| why.clone())
    }

    fn clear(&self) {
        if let Ok(mut refused) = self.refused.lock() {
            *refused = None;
        }
    }

    /// The error a failed request gets: [`LogError::Unauthenticated`] after a refused login.
    fn explain(&self, e: KafkaError) -> LogError {
        match self.recent() {
            Some(why) => LogError::Unauthenticated(format!(
                "kafka: {why}; check the SASL username, password and mechanism \
                 (TIDINGS_KAFKA_SASL_*)"
            )),
            None => unavailable(e),
        }
    }
}

impl ClientContext for AuthWatch {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(Code::Authentication) {
            if let Ok(mut refused) = self.refused.lock() {
                *refused = Some((std::time::Instant::now(), reason.to_string()));
            }
        }
        tracing::error!(target: "rdkafka::client", "librdkafka: {error}: {reason}");
    }
}

type KafkaProducer = FutureProducer<AuthWatch>;

/// The log on a Kafka cluster.
#[derive(Clone)]
pub struct KafkaLog {
    config: KafkaConfig,
    producer: KafkaProducer,
    auth: AuthWatch,
    /// For metadata and watermarks; never subscribes.
    metadata: Arc<BaseConsumer>,
    partitions: Arc<Mutex<HashMap<String, u32>>>,
}

impl KafkaLog {
    pub fn connect(config: KafkaConfig) -> Result<Self> {
        let auth = AuthWatch::default();
        let producer: KafkaProducer = config
            .producer(None)
            .create_with_context(auth.clone())
            .map_err(unavailable)?;
        let metadata: BaseConsumer = config
            .consumer("tidings-metadata", StartAt::Latest, None)
            .create()
            .map_err(unavailable)?;
        Ok(Self {
            config,
            producer,
            auth,
            metadata: Arc::new(metadata),
            partitions: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Fails unless the cluster answers a metadata request within `timeout`;
    /// [`LogError::Unauthenticated`] if a broker refused our SASL credentials meanwhile.
    pub async fn ping(&self, timeout: Duration) -> Result<()> {
        let metadata = self.metadata.clone();
        let auth = self.auth.clone();
        tokio::task::spawn_blocking(move || {
            let fetched = metadata.fetch_metadata(None, timeout);
            drain_events(&metadata);
            match fetched {
                Ok(_) => {
                    auth.clear();
                    Ok(())
                }
                Err(e) => Err(auth.explain(e)),
            }
        })
        .await
        .map_err(join_error)?
    }

    async fn check_partition(&self, topic: &str, partition: u32) -> Result<()> {
        if partition >= self.partition_count(topic).await? {
            return Err(LogError::UnknownPartition {
                topic: topic.to_string(),
                partition,
            });
        }
        Ok(())
    }

    async fn partition_count(&self, topic: &str) -> Result<u32> {
        if let Some(n) = self
            .partitions
            .lock()
            .ok()
            .and_then(|m| m.get(topic).copied())
        {
            return Ok(n);
        }
        let metadata = self.metadata.clone();
        let name = topic.to_string();
        let count = tokio::task::spawn_blocking(move || {
            let md = metadata
                .fetch_metadata(Some(&name), Duration::from_secs(10))
                .map_err(unavailable)?;
            let topic = md
                .topics()
                .first()
                .ok_or_else(|| LogError::UnknownTopic(name.clone()))?;
            if topic.error().is_some() || topic.partitions().is_empty() {
                return Err(LogError::UnknownTopic(name.clone()));
            }
            Ok(topic.partitions().len() as u32)
        })
        .await
        .map_err(join_error)??;
        if let Ok(mut cache) = self.partitions.lock() {
            cache.insert(topic.to_string(), count);
        }
        Ok(count)
    }

    /// Hands `record` to librdkafka now, so records enqueued one after another keep their
    /// order in a partition (the idempotent producer preserves it through retries).
    async fn enqueue(
        &self,
        producer: &KafkaProducer,
        record: &OutRecord,
    ) -> Result<DeliveryFuture> {
        validate(record)?;
        let partition = partition_for(&record.key, self.partition_count(&record.topic).await?);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (name, value) in &record.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value.as_bytes()),
                });
            }
            let future_record = FutureRecord::to(&record.topic)
                .key(record.key.as_bytes())
                .payload(&record.value)
                .partition(partition as i32)
                .headers(headers);
            match producer.send_result(future_record) {
                Ok(delivery) => return Ok(delivery),
                // The bounded local queue is full: wait a little, then report `unavailable`.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => return Err(unavailable(e)),
            }
        }
    }

    async fn send(&self, producer: &KafkaProducer, record: &OutRecord) -> Result<Position> {
        delivered(self.enqueue(producer, record).await?).await
    }

    /// Enqueues every record in order, then waits until all are durable.
    async fn send_all(
        &self,
        producer: &KafkaProducer,
        records: &[OutRecord],
    ) -> Result<Vec<Position>> {
        let mut deliveries = Vec::with_capacity(records.len());
        for record in records {
            deliveries.push(self.enqueue(producer, record).await?);
        }
        let mut positions = Vec::with_capacity(deliveries.len());
        for result in futures::future::join_all(deliveries.into_iter().map(delivered)).await {
            positions.push(result?);
        }
        Ok(positions)
    }
}

async fn delivered(delivery: DeliveryFuture) -> Result<Position> {
    match delivery.await {
        Ok(Ok(d)) => Ok(Position {
            partition: d.partition as u32,
            offset: d.offset,
        }),
        Ok(Err((e, _))) => Err(unavailable(e)),
        Err(_) => Err(LogError::Unavailable("kafka producer closed".into())),
    }
}

fn owned(message: &BorrowedMessage<'_>) -> Record {
    let headers = message
        .headers()
        .map(|h| {
            h.iter()
                .map(|header| {
                    (
                        header.key.to_string(),
                        header
                            .value
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                            .unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Record {
        topic: message.topic().to_string(),
        partition: message.partition() as u32,
        offset: message.offset(),
        key: message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default(),
        value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers,
        timestamp_ms: message.timestamp().to_millis().unwrap_or(0),
    }
}

/// Receives up to `max` messages, waiting at most `wait` for the first.
async fn receive<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    max: usize,
    wait: Duration,
) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    match tokio::time::timeout(wait, consumer.recv()).await {
        Err(_) => return Ok(out),
        Ok(Err(e)) => return Err(unavailable(e)),
        Ok(Ok(message)) => out.push(owned(&message)),
    }
    while out.len() < max {
        match consumer.recv().now_or_never() {
            Some(Ok(message)) => out.push(owned(&message)),
            Some(Err(e)) => return Err(unavailable(e)),
            None => break,
        }
    }
    Ok(out)
}

fn checkpoint_list(checkpoints: &[Checkpoint]) -> Result<TopicPartitionList> {
    let mut list = TopicPartitionList::new();
    for c in checkpoints {
        list.add_partition_offset(&c.topic, c.partition as i32, Offset::Offset(c.next_offset))
            .map_err(unavailable)?;
    }
    Ok(list)
}

/// Sets `wanted` on an existing topic when any of it differs, keeping every other setting
/// made on the topic (AlterConfigs resets what it does not name, and librdkafka's
/// incremental form is not in the rdkafka crate, so the others are read and sent back).
async fn update_topic_config(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    wanted: &[(&'static str, String)],
    options: &AdminOptions,
) -> Result<()> {
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], options)
        .await
        .map_err(unavailable)?;
    let current = match described.into_iter().next() {
        Some(Ok(resource)) => resource,
        Some(Err(code)) => {
            return Err(LogError::Unavailable(format!(
                "reading the settings of topic {topic}: {code}"
            )))
        }
        None => {
            return Err(LogError::Unavailable(format!(
                "no settings returned for topic {topic}"
            )))
        }
    };
    let entries = current.entry_map();
    let differs = wanted.iter().any(|(key, value)| {
        entries.get(key).and_then(|e| e.value.as_deref()) != Some(value.as_str())
    });
    if !differs {
        return Ok(());
    }
    let mut settings: Vec<(&str, &str)> = Vec::new();
    for entry in &current.entries {
        if entry.source != ConfigSource::DynamicTopic
            || wanted.iter().any(|(key, _)| *key == entry.name)
        {
            continue;
        }
        let value = entry.value.as_deref().ok_or_else(|| {
            LogError::Unavailable(format!(
                "topic {topic} has a hidden setting {} that changing its settings would reset; change them by hand",
                entry.name
            ))
        })?;
        settings.push((&entry.name, value));
    }
    settings.extend(wanted.iter().map(|(key, value)| (*key, value.as_str())));
    let alter = settings.iter().fold(
        AlterConfig::new(ResourceSpecifier::Topic(topic)),
        |alter, (key, value)| alter.set(key, value),
    );
    let results = admin
        .alter_configs(&[alter], options)
        .await
        .map_err(unavailable)?;
    for result in results {
        if let Err((_, code)) = result {
            return Err(LogError::Unavailable(format!(
                "changing the settings of topic {topic}: {code}"
            )));
        }
    }
    tracing::info!(topic, settings = ?wanted, "topic settings updated");
    Ok(())
}

#[async_trait]
impl Log for KafkaLog {
    async fn ensure_topics(&self, specs: &[TopicSpec]) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self
            .config
            .finish(self.config.base())
            .create()
            .map_err(unavailable)?;
        let replication = self.config.replication_factor;
        // The same settings Terraform gives a topic (topics::kafka_config), so whichever of
        // the two creates it, the other finds nothing to change.
        let configs: Vec<Vec<(&str, String)>> = specs
            .iter()
            .map(|spec| crate::topics::kafka_config(spec, replication))
            .collect();
        let topics: Vec<NewTopic> = specs
            .iter()
            .zip(&configs)
            .map(|(spec, config)| {
                let topic = NewTopic::new(
                    &spec.name,
                    spec.partitions as i32,
                    TopicReplication::Fixed(replication),
                );
                config
                    .iter()
                    .fold(topic, |topic, (key, value)| topic.set(key, value))
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics(&topics, &options)
            .await
            .map_err(unavailable)?;
        let mut existing = Vec::new();
        for result in results {
            match result {
                Ok(_) => {}
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => existing.push(name),
                Err((name, code)) => {
                    return Err(LogError::Unavailable(format!(
                        "creating topic {name}: {code}"
                    )))
                }
            }
        }
        // A topic made earlier keeps its partitions, but takes the settings asked for now
        // (a retention changed in TIDINGS_TOPIC_RETENTION reaches topics that exist).
        for (spec, config) in specs.iter().zip(&configs) {
            if existing.contains(&spec.name) {
                update_topic_config(&admin, &spec.name, config, &options).await?;
            }
        }
        Ok(())
    }

    async fn produce(&self, record: OutRecord) -> Result<Position> {
        self.send(&self.producer, &record).await
    }

    async fn produce_batch(&self, records: Vec<OutRecord>) -> Result<Vec<Position>> {
        self.send_all(&self.producer, &records).await
    }

    async fn consumer(
        &self,
        group: &str,
        topics: &[&str],
        options: ConsumerOptions,
    ) -> Result<Box<dyn Consumer>> {
        for topic in topics {
            self.partition_count(topic).await?;
        }
        let epoch = Arc::new(AtomicU64::new(0));
        let consumer: StreamConsumer<EpochContext> = self
            .config
            .consumer(group, options.start_at, options.transactional_id.as_deref())
            .create_with_context(EpochContext {
                epoch: epoch.clone(),
            })
            .map_err(unavailable)?;
        consumer.subscribe(topics).map_err(unavailable)?;
        let transactional = match &options.transactional_id {
            None => None,
            Some(id) => {
                let producer: KafkaProducer = self
                    .config
                    .producer(Some(id))
                    .create_with_context(self.auth.clone())
                    .map_err(unavailable)?;
                let init = producer.clone();
                tokio::task::spawn_blocking(move || {
                    init.init_transactions(Duration::from_secs(30))
                })
                .await
                .map_err(join_error)?
                .map_err(unavailable)?;
                Some(producer)
            }
        };
        Ok(Box::new(KafkaConsumer {
            log: self.clone(),
            consumer: Arc::new(consumer),
            epoch,
            transactional,
            poisoned: false,
        }))
    }

    async fn reader(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> Result<Box<dyn PartitionReader>> {
        self.check_partition(topic, partition).await?;
        // The group id is required by librdkafka but never joined: the partition is assigned.
        let consumer: StreamConsumer = self
            .config
            .consumer("tidings-reader", StartAt::Earliest, None)
            .create()
            .map_err(unavailable)?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition as i32, Offset::Offset(offset))
            .map_err(unavailable)?;
        consumer.assign(&list).map_err(unavailable)?;
        Ok(Box::new(KafkaReader { consumer }))
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<i64> {
        self.partition_count(topic).await?;
        let metadata = self.metadata.clone();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            metadata
                .fetch_watermarks(&topic, partition as i32, Duration::from_secs(10))
                .map(|(_, high)| high)
        })
        .await
        .map_err(join_error)?
        .map_err(unavailable)
    }

    async fn partitions(&self, topic: &str) -> Result<u32> {
        self.partition_count(topic).await
    }

    /// Kafka's own look-up (ListOffsets by timestamp), which answers "none" (`Offset::End`)
    /// when no record is that recent: then the end offset.
    async fn offset_for_time(&self, topic: &str, partition: u32, ts_ms: i64) -> Result<i64> {
        self.check_partition(topic, partition).await?;
        let metadata = self.metadata.clone();
        let name = topic.to_string();
        // Negative "timestamps" are Kafka's codes for latest and earliest, not times.
        let ts_ms = ts_ms.max(0);
        let found = tokio::task::spawn_blocking(move || {
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(&name, partition as i32, Offset::Offset(ts_ms))?;
            let answer = metadata.offsets_for_times(list, LOOKUP_TIMEOUT)?;
            partition_answer(&answer, &name, partition)
        })
        .await
        .map_err(join_error)?
        .map_err(unavailable)?;
        match found {
            Offset::Offset(offset) => Ok(offset),
            _ => self.end_offset(topic, partition).await,
        }
    }

    async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<i64>> {
        self.check_partition(topic, partition).await?;
        // A client with the group's id that never subscribes only fetches offsets: it does
        // not join the group, so the members' assignments and commits are left alone.
        let consumer: BaseConsumer = self
            .config
            .consumer(group, StartAt::Earliest, None)
            .create()
            .map_err(unavailable)?;
        let name = topic.to_string();
        let found = tokio::task::spawn_blocking(move || {
            let mut list = TopicPartitionList::new();
            list.add_partition(&name, partition as i32);
            let answer = consumer.committed_offsets(list, LOOKUP_TIMEOUT)?;
            partition_answer(&answer, &name, partition)
        })
        .await
        .map_err(join_error)?
        .map_err(unavailable)?;
        Ok(match found {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        })
    }

    /// A fresh metadata round trip (never the cached partition counts): a broker answers, and
    /// every partition of the topics this client uses has a leader to take appends.
    async fn writable(&self) -> Result<()> {
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            return Err(LogError::Unavailable(format!(
                "kafka producer failed: {code}: {reason}"
            )));
        }
        let mut topics: Vec<String> = self
            .partitions
            .lock()
            .map(|known| known.keys().cloned().collect())
            .unwrap_or_default();
        topics.sort();
        let metadata = self.metadata.clone();
        let auth = self.auth.clone();
        tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + WRITABLE_TIMEOUT;
            // No topic used yet: one request for all topics still proves a broker answers.
            let requests: Vec<Option<&str>> = if topics.is_empty() {
                vec![None]
            } else {
                topics.iter().map(|t| Some(t.as_str())).collect()
            };
            for request in requests {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let fetched = metadata.fetch_metadata(request, left);
                drain_events(&metadata);
                let md = fetched.map_err(|e| auth.explain(e))?;
                if md.brokers().is_empty() {
                    return Err(LogError::Unavailable("kafka: no broker is up".into()));
                }
                // The whole cluster's topics are not ours to judge.
                let ours = if request.is_some() { md.topics() } else { &[] };
                for topic in ours {
                    let leaderless = topic.error().is_some()
                        || topic.partitions().is_empty()
                        || topic.partitions().iter().any(|p| p.leader() < 0);
                    if leaderless {
                        return Err(LogError::Unavailable(format!(
                            "kafka: topic {} has partitions without a leader",
                            topic.name()
                        )));
                    }
                }
            }
            Ok(())
        })
        .await
        .map_err(join_error)?
    }
}

/// Counts rebalances so processors know when their partitions changed.
#[derive(Default)]
struct EpochContext {
    epoch: Arc<AtomicU64>,
}

impl ClientContext for EpochContext {}

impl ConsumerContext for EpochContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if !matches!(rebalance, Rebalance::Error(_)) {
            self.epoch.fetch_add(1, Ordering::SeqCst);
        }
    }
}

struct KafkaConsumer {
    log: KafkaLog,
    consumer: Arc<StreamConsumer<EpochContext>>,
    epoch: Arc<AtomicU64>,
    transactional: Option<KafkaProducer>,
    /// Set when a transaction failed: the in-memory position may be past what is committed.
    poisoned: bool,
}

impl KafkaConsumer {
    fn check(&self) -> Result<()> {
        if self.poisoned {
            return Err(LogError::Unavailable(
                "a transaction failed; reopen the consumer to resume from committed offsets".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>> {
        self.check()?;
        receive(&self.consumer, max, wait).await
    }

    async fn commit(&mut self, checkpoints: &[Checkpoint]) -> Result<()> {
        self.check()?;
        if checkpoints.is_empty() {
            return Ok(());
        }
        let list = checkpoint_list(checkpoints)?;
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
            .await
            .map_err(join_error)?
            .map_err(unavailable)
    }

    async fn commit_with(
        &mut self,
        outputs: Vec<OutRecord>,
        checkpoints: &[Checkpoint],
    ) -> Result<()> {
        self.check()?;
        let producer = self
            .transactional
            .clone()
            .ok_or(LogError::NotTransactional)?;
        for record in &outputs {
            validate(record)?;
        }
        let list = checkpoint_list(checkpoints)?;
        let group = self
            .consumer
            .group_metadata()
            .ok_or_else(|| LogError::Unavailable("consumer has no group metadata".into()))?;
        let timeout = Duration::from_secs(30);

        let begin = producer.clone();
        let result: Result<()> = async {
            tokio::task::spawn_blocking(move || begin.begin_transaction())
                .await
                .map_err(join_error)?
                .map_err(unavailable)?;
            self.log.send_all(&producer, &outputs).await?;
            let commit = producer.clone();
            tokio::task::spawn_blocking(move || {
                commit.send_offsets_to_transaction(&list, &group, timeout)?;
                commit.commit_transaction(timeout)
            })
            .await
            .map_err(join_error)?
            .map_err(unavailable)
        }
        .await;

        if result.is_err() {
            self.poisoned = true;
            let abort = producer.clone();
            let _ = tokio::task::spawn_blocking(move || abort.abort_transaction(timeout)).await;
        }
        result
    }

    fn assignment_epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }
}

struct KafkaReader {
    consumer: StreamConsumer,
}

#[async_trait]
impl PartitionReader for KafkaReader {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>> {
        receive(&self.consumer, max, wait).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_reaches_every_client_and_only_what_the_protocol_uses() {
        let mut config = KafkaConfig::new("b:9094");
        config.security = KafkaSecurity {
            protocol: SecurityProtocol::SaslSsl,
            mechanism: SaslMechanism::ScramSha512,
            username: "u".into(),
            password: "p".into(),
            ca_file: Some("/ca.pem".into()),
        };
        let clients = [
            config.producer(None),
            config.producer(Some("t")),
            config.consumer("g", StartAt::Earliest, None),
            config.finish(config.base()),
        ];
        for client in clients {
            assert_eq!(client.get("security.protocol"), Some("SASL_SSL"));
            assert_eq!(client.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
            assert_eq!(client.get("sasl.username"), Some("u"));
            assert_eq!(client.get("sasl.password"), Some("p"));
            assert_eq!(client.get("ssl.ca.location"), Some("/ca.pem"));
        }
        let plain = KafkaConfig::new("b:9092").producer(None);
        assert_eq!(plain.get("security.protocol"), Some("PLAINTEXT"));
        assert_eq!(plain.get("sasl.mechanism"), None);
        assert_eq!(plain.get("ssl.ca.location"), None);
        assert!(!format!("{:?}", config.security).contains("\"p\""));
        let mut system_cas = KafkaConfig::new("b:9093");
        system_cas.security.protocol = SecurityProtocol::Ssl;
        let client = system_cas.consumer("g", StartAt::Latest, None);
        assert_eq!(client.get("ssl.ca.location"), Some("probe"));
        assert_eq!(client.get("sasl.username"), None);
    }

    #[test]
    fn protocols_and_mechanisms_parse_as_kafka_spells_them() {
        assert_eq!("sasl_ssl".parse(), Ok(SecurityProtocol::SaslSsl));
        assert_eq!("PLAINTEXT".parse(), Ok(SecurityProtocol::Plaintext));
        assert!("TLS".parse::<SecurityProtocol>().is_err());
        assert_eq!("scram-sha-256".parse(), Ok(SaslMechanism::ScramSha256));
        assert_eq!("PLAIN".parse(), Ok(SaslMechanism::Plain));
        assert!("GSSAPI".parse::<SaslMechanism>().is_err());
        let clear = KafkaSecurity {
            protocol: SecurityProtocol::SaslPlaintext,
            mechanism: SaslMechanism::Plain,
            username: "u".into(),
            password: "p".into(),
            ca_file: None,
        };
        assert!(clear.sends_password_in_clear());
        assert_eq!(clear.check(), Ok(()));
    }
}
