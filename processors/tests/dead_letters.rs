//! Corrupt and foreign records on the topics processors consume, interleaved with valid
//! sends, on the embedded log and on Kafka: the valid ones are still sequenced, persisted and
//! delivered in order, and every bad one is in `tidings.dead-letters`, once per processor
//! that consumed it (exactly once from the sequencer), with its key, value, headers and the
//! partition and offset it came from. A restart copies nothing again.
//!
//! The Kafka case needs the broker at `TIDINGS_KAFKA_BROKERS` (127.0.0.1:9092 by default;
//! `infra/test.sh` starts it). It uses the real topics and groups, so rooms and nodes are
//! unique per run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tidings_log::kafka::{KafkaConfig, KafkaLog};
use tidings_log::topics::{CLIENT_EVENTS, DEAD_LETTERS, DELIVERIES, ROOM_LOG, TYPING};
use tidings_log::{embedded::EmbeddedLog, partition_for, topics, Log, OutRecord, Position};
use tidings_log::{PartitionReader, Record};
use tidings_processors::dead_letter::{self, HEADER_OFFSET, HEADER_PARTITION, HEADER_PROCESSOR};
use tidings_processors::{by_name, Context, ModerationConfig};
use tidings_schemas::{wire, ClientEvent, Delivery, LogRecord, RoomEvent};
use tidings_store::embedded::EmbeddedStore;
use tidings_store::{SeqRange, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A partition followed from where it ended when the test began.
struct Tail {
    topic: &'static str,
    partition: u32,
    reader: Box<dyn PartitionReader>,
    records: Vec<Record>,
}

impl Tail {
    /// Retried for a while: right after a fresh Kafka creates a topic, its metadata and
    /// leaders take a moment to appear.
    async fn open(log: &dyn Log, topic: &'static str, key: &str) -> Self {
        let started = Instant::now();
        loop {
            match Self::try_open(log, topic, key).await {
                Ok(tail) => return tail,
                Err(e) if started.elapsed() < Duration::from_secs(30) => {
                    eprintln!("{topic} not ready ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("{topic}: {e}"),
            }
        }
    }

    async fn try_open(
        log: &dyn Log,
        topic: &'static str,
        key: &str,
    ) -> Result<Self, tidings_log::LogError> {
        let partition = partition_for(key, log.partitions(topic).await?);
        let end = log.end_offset(topic, partition).await?;
        Ok(Self {
            topic,
            partition,
            reader: log.reader(topic, partition, end).await?,
            records: Vec::new(),
        })
    }

    /// Polls until the partition's current end (Kafka's offsets have gaps: a few empty
    /// polls also end it).
    async fn drain(&mut self, log: &dyn Log) {
        let end = log
            .end_offset(self.topic, self.partition)
            .await
            .expect("end");
        for _ in 0..20 {
            if self.records.last().is_some_and(|r| r.offset + 1 >= end) {
                return;
            }
            self.poll().await;
        }
    }

    async fn poll(&mut self) {
        let got = self
            .reader
            .poll(1000, Duration::from_millis(50))
            .await
            .expect("poll");
        self.records.extend(got);
    }
}

struct Run {
    log: Arc<dyn Log>,
    store: Arc<dyn Store>,
    node: String,
    edge: String,
    room: String,
    shutdown: CancellationToken,
    deadline: Duration,
    deliveries: Tail,
    room_log: Tail,
    dead: Tail,
}

/// A bad record the test appended: where it landed and what it held.
struct Bad {
    topic: &'static str,
    at: Position,
    value: Vec<u8>,
}

impl Run {
    async fn new(log: Arc<dyn Log>, store: Arc<dyn Store>, deadline: Duration) -> Self {
        log.ensure_topics(&topics::all()).await.expect("topics");
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (edge, room) = (format!("edge-{id}"), format!("dl-{id}"));
        Self {
            deliveries: Tail::open(&*log, DELIVERIES, &edge).await,
            room_log: Tail::open(&*log, ROOM_LOG, &room).await,
            dead: Tail::open(&*log, DEAD_LETTERS, "any").await,
            node: format!("proc-{id}"),
            edge,
            room,
            log,
            store,
            shutdown: CancellationToken::new(),
            deadline,
        }
    }

    fn start(&self, name: &str) -> JoinHandle<()> {
        let processor = by_name(name).expect("registered");
        let ctx = Context {
            log: self.log.clone(),
            store: self.store.clone(),
            node: self.node.clone(),
            moderation: ModerationConfig::default(),
            presence: Default::default(),
            webhooks: Default::default(),
            presend: None,
        };
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move { processor.run(ctx, shutdown).await.expect("run ends") })
    }

    fn event(&self, kind: &str) -> ClientEvent {
        ClientEvent {
            role: None,
            target: None,
            until: None,
            event_id: uuid::Uuid::new_v4().to_string(),
            kind: kind.into(),
            room: Some(self.room.clone()),
            user: Some("ada".into()),
            ts: 1,
            trace_id: "t".into(),
            node: self.edge.clone(),
            conn: "c1".into(),
            client_id: None,
            text: None,
            on: None,
            user_name: None,
            users: None,
            seq: None,
        }
    }

    async fn append(&self, topic: &str, value: Vec<u8>) -> Position {
        let record = OutRecord::new(topic, &self.room, value).with_header("origin", "dl-test");
        self.log.produce(record).await.expect("produce")
    }

    async fn send(&self, id: &str) {
        let event = ClientEvent {
            client_id: Some(id.into()),
            text: Some(format!("text {id}")),
            ..self.event("send")
        };
        self.append(CLIENT_EVENTS, event.encode().expect("encode"))
            .await;
    }

    async fn bad(&self, topic: &'static str, value: Vec<u8>) -> Bad {
        let at = self.append(topic, value.clone()).await;
        Bad { topic, at, value }
    }

    fn mine(&self) -> Vec<Delivery> {
        self.deliveries
            .records
            .iter()
            .filter_map(|r| Delivery::decode(&r.value).ok())
            .filter(|d| d.edge == self.edge)
            .collect()
    }

    /// Dead letters from `processor` of the record at `at` in `topic`.
    fn copies<'a>(&'a self, processor: &str, bad: &Bad) -> Vec<&'a Record> {
        let header = |r: &'a Record, name: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        self.dead
            .records
            .iter()
            .filter(|r| {
                header(r, dead_letter::HEADER_TOPIC) == Some(bad.topic)
                    && header(r, HEADER_PARTITION) == Some(&bad.at.partition.to_string())
                    && header(r, HEADER_OFFSET) == Some(&bad.at.offset.to_string())
                    && header(r, HEADER_PROCESSOR) == Some(processor)
            })
            .collect()
    }

    /// Polls every tail until `done` holds; panics with `what` at the deadline.
    async fn wait(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        let started = Instant::now();
        loop {
            self.deliveries.poll().await;
            self.room_log.poll().await;
            self.dead.poll().await;
            if done(self) {
                return;
            }
            assert!(
                started.elapsed() < self.deadline,
                "timed out waiting for {what}; deliveries: {:#?}; dead letters: {}",
                self.mine(),
                self.dead.records.len()
            );
        }
    }
}

fn kinds(ds: &[Delivery], kind: &str) -> Vec<(Option<String>, Option<i64>)> {
    ds.iter()
        .filter(|d| d.kind == kind)
        .map(|d| (d.client_id.clone(), d.seq))
        .collect()
}

fn expected(ids: &[&str]) -> Vec<(Option<String>, Option<i64>)> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| (Some(id.to_string()), Some(i as i64 + 1)))
        .collect()
}

/// Avro's zig-zag varint of a long, as string lengths are written.
fn avro_long(n: i64) -> Vec<u8> {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = Vec::new();
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
    out
}

/// A room event framed with its own id but whose datum stops in the middle.
fn truncated_room_event(room: &str) -> Vec<u8> {
    let mut bytes = RoomEvent {
        role: None,
        target: None,
        until: None,
        event_id: "e".into(),
        kind: "message".into(),
        room: Some(room.into()),
        user: None,
        ts: 1,
        trace_id: "t".into(),
        node: "n".into(),
        seq: 1_000_000,
        client_id: "forged".into(),
        text: "must not be stored".into(),
        origin_node: "o".into(),
        origin_conn: "c".into(),
    }
    .encode()
    .expect("encode");
    bytes.truncate(bytes.len() - 12);
    bytes
}

async fn scenario(log: Arc<dyn Log>, store: Arc<dyn Store>, deadline: Duration) {
    let mut run = Run::new(log, store, deadline).await;
    let mut tasks: HashMap<&str, JoinHandle<()>> = HashMap::new();
    for name in ["sequencer", "persistence", "fanout"] {
        tasks.insert(name, run.start(name));
    }
    run.append(CLIENT_EVENTS, run.event("join").encode().expect("encode"))
        .await;
    run.wait("the joined delivery", |r| {
        !kinds(&r.mine(), "joined").is_empty()
    })
    .await;

    // Valid sends with bad records of every sort between them, on both consumed topics.
    run.send("m1").await;
    let mut bad_events = vec![
        run.bad(CLIENT_EVENTS, b"\xffnot avro at all".to_vec())
            .await,
    ];
    run.send("m2").await;
    // Foreign: a record of another schema (a delivery) where client events belong.
    let foreign = Delivery::new("x".into(), "ack", &run.edge, "n", "t", 1);
    bad_events.push(
        run.bad(CLIENT_EVENTS, foreign.encode().expect("encode"))
            .await,
    );
    let mut truncated = run.event("send").encode().expect("encode");
    truncated.truncate(9);
    bad_events.push(run.bad(CLIENT_EVENTS, truncated).await);
    let mut bad_log = vec![run.bad(ROOM_LOG, b"garbage".to_vec()).await];
    run.send("m3").await;
    bad_log.push(run.bad(ROOM_LOG, truncated_room_event(&run.room)).await);
    // Foreign: a client event in the room log.
    bad_log.push(
        run.bad(ROOM_LOG, run.event("send").encode().expect("encode"))
            .await,
    );
    // A string length of 400 MiB in a few bytes (decoding must refuse it, not allocate it).
    let mut hostile = avro_long(400 << 20);
    hostile.push(b'x');
    bad_log.push(run.bad(ROOM_LOG, wire::frame(201, &hostile)).await);
    run.send("m4").await;
    run.send("m5").await;

    let ids = ["m1", "m2", "m3", "m4", "m5"];
    run.wait("acks, messages and dead letters", |r| {
        let mine = r.mine();
        kinds(&mine, "ack").len() >= ids.len()
            && kinds(&mine, "message").len() >= ids.len()
            && bad_events
                .iter()
                .all(|b| !r.copies("sequencer", b).is_empty())
            && bad_log.iter().all(|b| {
                !r.copies("persistence", b).is_empty() && !r.copies("fanout", b).is_empty()
            })
    })
    .await;

    // The valid ones went through in order, as if nothing else had been there.
    let mine = run.mine();
    assert_eq!(kinds(&mine, "ack"), expected(&ids), "acks");
    assert_eq!(kinds(&mine, "message"), expected(&ids), "fan-out");
    assert!(kinds(&mine, "reject").is_empty(), "{mine:#?}");
    let sequenced: Vec<(Option<String>, Option<i64>)> = run
        .room_log
        .records
        .iter()
        .filter_map(|r| RoomEvent::decode(&r.value).ok())
        .filter(|e| e.kind == "message" && e.room.as_deref() == Some(&run.room))
        .map(|e| (Some(e.client_id), Some(e.seq)))
        .collect();
    assert_eq!(sequenced, expected(&ids), "room log");
    let started = Instant::now();
    while run.store.head(&run.room).await.expect("head") < 5 {
        assert!(started.elapsed() < deadline, "persistence did not store");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored: Vec<_> = run
        .store
        .read(&run.room, SeqRange::after(0, 100))
        .await
        .expect("read")
        .into_iter()
        .map(|m| (m.seq, m.text))
        .collect();
    let texts: Vec<_> = (1..=5).map(|i| (i, format!("text m{i}"))).collect();
    assert_eq!(stored, texts, "store");

    // Each bad record is copied whole: once from the sequencer (in its transaction), at
    // least once (here, with no crash, once) from each room-log consumer.
    let check = |copies: Vec<&Record>, bad: &Bad, what: &str| {
        assert_eq!(copies.len(), 1, "{what}: {copies:#?}");
        let copy = copies[0];
        assert_eq!(copy.key, run.room, "{what}");
        assert_eq!(copy.value, bad.value, "{what}");
        assert_eq!(
            copy.headers[0],
            ("origin".into(), "dl-test".into()),
            "{what}"
        );
    };
    for (i, bad) in bad_events.iter().enumerate() {
        check(
            run.copies("sequencer", bad),
            bad,
            &format!("client event {i}"),
        );
    }
    for (i, bad) in bad_log.iter().enumerate() {
        check(
            run.copies("persistence", bad),
            bad,
            &format!("room log {i}"),
        );
        check(run.copies("fanout", bad), bad, &format!("room log {i}"));
    }
    assert!(dead_letter::count("sequencer", CLIENT_EVENTS) >= bad_events.len() as u64);
    assert!(dead_letter::count("persistence", ROOM_LOG) >= bad_log.len() as u64);

    // Restarted, the processors resume after what they copied: no copy again, and the
    // next send goes through.
    for name in ["sequencer", "persistence", "fanout"] {
        let task = tasks.remove(name).expect("started");
        task.abort();
        let _ = task.await;
        tasks.insert(name, run.start(name));
    }
    let copies_before = run.dead.records.len();
    run.send("m6").await;
    run.wait("m6 delivered", |r| {
        kinds(&r.mine(), "message").len() > ids.len()
    })
    .await;
    assert_eq!(
        kinds(&run.mine(), "message").last(),
        Some(&(Some("m6".to_string()), Some(6)))
    );
    let started = Instant::now();
    while run.store.head(&run.room).await.expect("head") < 6 {
        assert!(started.elapsed() < deadline, "persistence did not resume");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    run.dead.drain(&*run.log).await;
    let again: Vec<_> = bad_events
        .iter()
        .chain(&bad_log)
        .filter(|b| {
            ["sequencer", "persistence", "fanout"]
                .iter()
                .any(|p| run.copies(p, b).len() > 1)
        })
        .map(|b| (b.topic, b.at))
        .collect();
    assert!(again.is_empty(), "copied again after restart: {again:?}");
    // Other tests on a shared Kafka may dead-letter too; ours must not have grown.
    let ours_after = run.dead.records[copies_before..]
        .iter()
        .filter(|r| r.key == run.room)
        .count();
    assert_eq!(ours_after, 0, "no new copies of this run's records");

    // Typing starts at the end of its topic: keep appending garbage until one is copied.
    tasks.insert("typing", run.start("typing"));
    let mut typing_bad = Vec::new();
    let started = Instant::now();
    loop {
        typing_bad.push(run.bad(TYPING, b"\x00\x00\x00\x00".to_vec()).await);
        run.dead.poll().await;
        if typing_bad
            .iter()
            .any(|b| run.copies("typing", b).len() == 1)
        {
            break;
        }
        assert!(started.elapsed() < deadline, "typing never dead-lettered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    run.shutdown.cancel();
    for (name, task) in tasks {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap_or_else(|_| panic!("{name} did not stop"))
            .expect("stops cleanly");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_dead_lettered_on_the_embedded_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(EmbeddedLog::open(&dir.path().join("log.redb")).expect("log"));
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).expect("store"));
    scenario(log, store, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_dead_lettered_on_kafka() {
    let brokers =
        std::env::var("TIDINGS_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let log = KafkaLog::connect(KafkaConfig::new(&brokers)).expect("kafka config");
    log.ping(Duration::from_secs(20)).await.unwrap_or_else(|e| {
        panic!("Kafka at {brokers} is not reachable ({e}); infra/test.sh starts it")
    });
    // The store is not what is under test; an embedded one keeps the run to itself.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).expect("store"));
    scenario(Arc::new(log), store, Duration::from_secs(90)).await;
}
