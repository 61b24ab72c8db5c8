//! The processors on the real embedded log and store: what goes in, what comes out.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tidings_log::embedded::EmbeddedLog;
use tidings_log::{topics, Log, OutRecord};
use tidings_processors::{by_name, Context, ModerationConfig, PERSISTENCE_CHECKPOINT};
use tidings_schemas::{ClientEvent, Delivery, LogRecord, RoomEvent};
use tidings_store::embedded::EmbeddedStore;
use tidings_store::{SeqRange, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(15);

struct Harness {
    _dir: tempfile::TempDir,
    log: Arc<EmbeddedLog>,
    store: Arc<EmbeddedStore>,
    shutdown: CancellationToken,
}

impl Harness {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(EmbeddedLog::open(&dir.path().join("log.redb")).expect("log"));
        log.ensure_topics(&topics::all()).await.expect("topics");
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).expect("store"));
        Self {
            _dir: dir,
            log,
            store,
            shutdown: CancellationToken::new(),
        }
    }

    fn ctx(&self) -> Context {
        Context {
            log: self.log.clone(),
            store: self.store.clone(),
            node: "proc-1".into(),
            moderation: ModerationConfig {
                max_text_chars: 10,
                blocked_terms: vec!["Spam".into()],
            },
            presence: Default::default(),
            webhooks: Default::default(),
            presend: None,
        }
    }

    fn start(&self, name: &str) -> JoinHandle<()> {
        let processor = by_name(name).expect("registered");
        let ctx = self.ctx();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            processor
                .run(ctx, shutdown)
                .await
                .expect("run ends cleanly");
        })
    }

    async fn client_event(&self, topic: &str, event: ClientEvent) {
        let room = event.room.clone().unwrap_or_else(|| "none".into());
        let value = event.encode().expect("encode");
        self.log
            .produce(OutRecord::new(topic, room, value))
            .await
            .expect("produce");
    }

    async fn send(&self, edge: &str, room: &str, id: &str, text: &str) {
        self.client_event(
            topics::CLIENT_EVENTS,
            ClientEvent {
                client_id: Some(id.into()),
                text: Some(text.into()),
                ..event("send", edge, room)
            },
        )
        .await;
    }

    async fn join(&self, edge: &str, room: &str) {
        self.client_event(topics::CLIENT_EVENTS, event("join", edge, room))
            .await;
    }

    /// Every record of `topic` so far, decoded (partition by partition).
    async fn all<T: LogRecord>(&self, topic: &str) -> Vec<T> {
        let mut out = Vec::new();
        for p in 0..self.log.partitions(topic).await.expect("partitions") {
            let end = self.log.end_offset(topic, p).await.expect("end");
            let mut reader = self.log.reader(topic, p, 0).await.expect("reader");
            let mut next = 0;
            while next < end {
                let records = reader
                    .poll(1000, Duration::from_millis(100))
                    .await
                    .expect("poll");
                if records.is_empty() {
                    break;
                }
                for r in records {
                    next = r.offset + 1;
                    out.push(T::decode(&r.value).expect("decodes"));
                }
            }
        }
        out
    }

    async fn deliveries(&self, edge: &str) -> Vec<Delivery> {
        let all: Vec<Delivery> = self.all(topics::DELIVERIES).await;
        all.into_iter().filter(|d| d.edge == edge).collect()
    }

    async fn messages(&self, room: &str) -> Vec<RoomEvent> {
        let all: Vec<RoomEvent> = self.all(topics::ROOM_LOG).await;
        all.into_iter()
            .filter(|e| e.kind == "message" && e.room.as_deref() == Some(room))
            .collect()
    }

    /// Polls the deliveries to `edge` until `done` holds for them; panics at the deadline.
    async fn wait_deliveries(
        &self,
        edge: &str,
        done: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        let started = Instant::now();
        loop {
            let got = self.deliveries(edge).await;
            if done(&got) {
                return got;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "timed out; deliveries to {edge}: {got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn event(kind: &str, edge: &str, room: &str) -> ClientEvent {
    ClientEvent {
        role: None,
        target: None,
        until: None,
        event_id: uuid::Uuid::new_v4().to_string(),
        kind: kind.into(),
        room: Some(room.into()),
        user: Some("ada".into()),
        ts: 1,
        trace_id: "t".into(),
        node: edge.into(),
        conn: "c1".into(),
        client_id: None,
        text: None,
        on: None,
        user_name: None,
        users: None,
        seq: None,
    }
}

fn of_kind<'a>(ds: &'a [Delivery], kind: &str) -> Vec<&'a Delivery> {
    ds.iter().filter(|d| d.kind == kind).collect()
}

/// The msg_ts of the first ack for `client_id`.
fn ack_ts(ds: &[Delivery], client_id: &str) -> Option<i64> {
    let ack = ds
        .iter()
        .find(|d| d.kind == "ack" && d.client_id.as_deref() == Some(client_id));
    ack.expect("acked").msg_ts
}

fn acks(ds: &[Delivery]) -> Vec<(String, i64)> {
    of_kind(ds, "ack")
        .into_iter()
        .map(|d| (d.client_id.clone().unwrap_or_default(), d.seq.unwrap_or(-1)))
        .collect()
}

#[tokio::test]
async fn sequencing_is_gapless_per_room_and_acks_follow_the_log() {
    let h = Harness::new().await;
    let seq = h.start("sequencer");
    for (room, id) in [
        ("a", "a1"),
        ("b", "b1"),
        ("a", "a2"),
        ("a", "a3"),
        ("b", "b2"),
    ] {
        h.send("edge-1", room, id, &format!("hi {id}")).await;
    }
    let got = h
        .wait_deliveries("edge-1", |d| of_kind(d, "ack").len() == 5)
        .await;
    let mut acked = acks(&got);
    acked.sort();
    assert_eq!(
        acked,
        [
            ("a1".into(), 1),
            ("a2".into(), 2),
            ("a3".into(), 3),
            ("b1".into(), 1),
            ("b2".into(), 2)
        ]
    );
    let a: Vec<_> = h
        .messages("a")
        .await
        .iter()
        .map(|m| (m.seq, m.client_id.clone()))
        .collect();
    assert_eq!(a, [(1, "a1".into()), (2, "a2".into()), (3, "a3".into())]);
    let b = h.messages("b").await;
    assert_eq!(b.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(b[0].text, "hi b1");
    assert_eq!(b[0].user.as_deref(), Some("ada"));
    assert_eq!(
        (b[0].origin_node.as_str(), b[0].origin_conn.as_str()),
        ("edge-1", "c1")
    );
    // An ack carries the message's ts and goes to the sending connection.
    let ack_b1 = got
        .iter()
        .find(|d| d.client_id.as_deref() == Some("b1"))
        .expect("ack");
    assert_eq!(ack_b1.msg_ts, Some(b[0].ts));
    assert_eq!(ack_b1.conn.as_deref(), Some("c1"));
    h.shutdown.cancel();
    seq.await.expect("sequencer stops on shutdown");
}

#[tokio::test]
async fn a_duplicate_gets_the_original_seq_and_no_second_message() {
    let h = Harness::new().await;
    let _seq = h.start("sequencer");
    h.send("edge-1", "r", "x", "first").await;
    h.send("edge-1", "r", "y", "second").await;
    h.send("edge-1", "r", "x", "first again").await;
    let got = h
        .wait_deliveries("edge-1", |d| of_kind(d, "ack").len() == 3)
        .await;
    assert_eq!(
        acks(&got),
        [("x".into(), 1), ("y".into(), 2), ("x".into(), 1)]
    );
    let acks = of_kind(&got, "ack");
    assert_eq!(
        acks[0].msg_ts, acks[2].msg_ts,
        "the retry gets the original ts"
    );
    let messages = h.messages("r").await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].text, "first");
}

#[tokio::test]
async fn moderation_rejects_with_codes_and_normalizes() {
    let h = Harness::new().await;
    let _seq = h.start("sequencer");
    h.send("edge-1", "r", "empty", " \u{0} ").await;
    h.send("edge-1", "r", "long", "abcdefghijk").await;
    h.send("edge-1", "r", "spam", "buy sPaM").await;
    h.send("edge-1", "r", "ok", "e\u{301}\u{7}!").await;
    h.send("edge-1", "bad room!", "z", "hello").await;
    let got = h.wait_deliveries("edge-1", |d| d.len() == 5).await;
    let mut codes: Vec<_> = of_kind(&got, "reject")
        .into_iter()
        .map(|d| {
            (
                d.client_id.clone().unwrap_or_default(),
                d.error_code.clone().unwrap_or_default(),
            )
        })
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            ("empty".into(), "invalid".into()),
            ("long".into(), "too_large".into()),
            ("spam".into(), "rejected".into()),
            ("z".into(), "invalid".into()),
        ]
    );
    // Rejections take no seq: the accepted message is 1.
    assert_eq!(acks(&got), [("ok".into(), 1)]);
    let messages = h.messages("r").await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].text, "é!");
}

#[tokio::test]
async fn a_join_writes_a_host_marker_subscription_and_joined_delivery() {
    let h = Harness::new().await;
    let _seq = h.start("sequencer");
    h.send("edge-1", "r", "m1", "one").await;
    h.send("edge-1", "r", "m2", "two").await;
    h.join("edge-2", "r").await;
    let got = h.wait_deliveries("edge-2", |d| !d.is_empty()).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].kind, "joined");
    assert_eq!(got[0].seq, Some(2));
    assert_eq!(got[0].conn.as_deref(), Some("c1"));
    let log: Vec<RoomEvent> = h.all(topics::ROOM_LOG).await;
    let host = log.iter().find(|e| e.kind == "host").expect("host marker");
    assert_eq!((host.seq, host.origin_node.as_str()), (2, "edge-2"));
    let subs: Vec<tidings_schemas::Subscription> = h.all(topics::SUBSCRIPTIONS).await;
    assert_eq!(subs.len(), 1);
    assert_eq!(
        (subs[0].kind.as_str(), subs[0].node.as_str()),
        ("host", "edge-2")
    );
    // The next message continues after the head the join reported.
    h.send("edge-1", "r", "m3", "three").await;
    let got = h
        .wait_deliveries("edge-1", |d| of_kind(d, "ack").len() == 3)
        .await;
    assert_eq!(acks(&got)[2], ("m3".into(), 3));
}

#[tokio::test]
async fn malformed_client_events_are_skipped() {
    let h = Harness::new().await;
    let _seq = h.start("sequencer");
    h.log
        .produce(OutRecord::new(
            topics::CLIENT_EVENTS,
            "r",
            b"garbage".to_vec(),
        ))
        .await
        .expect("produce");
    h.send("edge-1", "r", "after", "works").await;
    let got = h.wait_deliveries("edge-1", |d| !d.is_empty()).await;
    assert_eq!(acks(&got), [("after".into(), 1)], "{got:#?}");
}

/// Kills the sequencer mid-stream (no persistence: nothing is in the store) and checks a
/// new one continues the seqs and still knows every client id.
#[tokio::test]
async fn a_restarted_sequencer_keeps_seqs_gapless_and_dedupes_unpersisted_ids() {
    let h = Harness::new().await;
    let first = h.start("sequencer");
    h.send("edge-1", "r", "m1", "one").await;
    h.send("edge-1", "r", "m2", "two").await;
    h.send("edge-1", "s", "s1", "one").await;
    let before = h
        .wait_deliveries("edge-1", |d| of_kind(d, "ack").len() == 3)
        .await;
    first.abort();
    let _ = first.await;

    let _second = h.start("sequencer");
    h.send("edge-1", "r", "m1", "one (retry)").await;
    h.send("edge-1", "r", "m3", "three").await;
    h.send("edge-1", "s", "s2", "two").await;
    let got = h
        .wait_deliveries("edge-1", |d| of_kind(d, "ack").len() == 6)
        .await;
    let mut after: Vec<_> = acks(&got)[3..].to_vec();
    after.sort();
    assert_eq!(
        after,
        [("m1".into(), 1), ("m3".into(), 3), ("s2".into(), 2)]
    );
    assert_eq!(ack_ts(&got[before.len()..], "m1"), ack_ts(&before, "m1"));
    let r: Vec<_> = h.messages("r").await.iter().map(|m| m.seq).collect();
    assert_eq!(r, [1, 2, 3]);
    assert_eq!(
        h.store.head("r").await.expect("head"),
        0,
        "nothing was persisted"
    );
}

/// The same with persistence having stored part of the log: dedupe then comes from the
/// store (with the stored ts), heads from store + tail.
#[tokio::test]
async fn a_restarted_sequencer_uses_the_store_and_the_tail() {
    let h = Harness::new().await;
    let seq = h.start("sequencer");
    let persistence = h.start("persistence");
    h.send("edge-1", "r", "m1", "one").await;
    h.send("edge-1", "r", "m2", "two").await;
    let before = h
        .wait_deliveries("edge-1", |d| of_kind(d, "ack").len() == 2)
        .await;
    let started = Instant::now();
    while h.store.head("r").await.expect("head") < 2 {
        assert!(
            started.elapsed() < DEADLINE,
            "persistence did not store the messages"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    persistence.abort();
    let _ = persistence.await;
    // This one stays in the unpersisted tail.
    h.send("edge-1", "r", "m3", "three").await;
    h.wait_deliveries("edge-1", |d| of_kind(d, "ack").len() == 3)
        .await;
    seq.abort();
    let _ = seq.await;

    let _seq = h.start("sequencer");
    h.send("edge-1", "r", "m1", "retry of a stored one").await;
    h.send("edge-1", "r", "m3", "retry of an unpersisted one")
        .await;
    h.send("edge-1", "r", "m4", "four").await;
    let got = h
        .wait_deliveries("edge-1", |d| of_kind(d, "ack").len() == 6)
        .await;
    assert_eq!(
        &acks(&got)[3..],
        [("m1".into(), 1), ("m3".into(), 3), ("m4".into(), 4)]
    );
    assert_eq!(ack_ts(&got[before.len()..], "m1"), ack_ts(&before, "m1"));
    let r: Vec<_> = h.messages("r").await.iter().map(|m| m.seq).collect();
    assert_eq!(r, [1, 2, 3, 4]);
}

#[tokio::test]
async fn persistence_stores_messages_and_checkpoints() {
    let h = Harness::new().await;
    let _seq = h.start("sequencer");
    let _persistence = h.start("persistence");
    h.join("edge-1", "r").await;
    for i in 1..=3 {
        h.send("edge-1", "r", &format!("m{i}"), &format!("text {i}"))
            .await;
    }
    let started = Instant::now();
    while h.store.head("r").await.expect("head") < 3 {
        assert!(
            started.elapsed() < DEADLINE,
            "persistence did not store the messages"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored = h
        .store
        .read("r", SeqRange::after(0, 100))
        .await
        .expect("read");
    let texts: Vec<_> = stored
        .iter()
        .map(|m| (m.seq, m.text.as_str(), m.from.as_str()))
        .collect();
    assert_eq!(
        texts,
        [
            (1, "text 1", "ada"),
            (2, "text 2", "ada"),
            (3, "text 3", "ada")
        ]
    );
    assert_eq!(h.store.seq_of("r", "m2").await.expect("seq_of"), Some(2));
    // The checkpoint reaches the end of the room's partition (marker + 3 messages).
    let partition =
        tidings_log::partition_for("r", h.log.partitions(topics::ROOM_LOG).await.expect("p"));
    let end = h
        .log
        .end_offset(topics::ROOM_LOG, partition)
        .await
        .expect("end");
    let started = Instant::now();
    while h
        .store
        .checkpoint(PERSISTENCE_CHECKPOINT, partition)
        .await
        .expect("cp")
        != Some(end)
    {
        assert!(
            started.elapsed() < DEADLINE,
            "checkpoint did not reach {end}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn fanout_delivers_to_hosting_edges_only_and_follows_unhost() {
    let h = Harness::new().await;
    let _seq = h.start("sequencer");
    // edge-1 hosts before fan-out starts (loaded from subscriptions), edge-2 after.
    h.join("edge-1", "r").await;
    h.join("edge-3", "other").await;
    h.wait_deliveries("edge-1", |d| !d.is_empty()).await;
    let _fanout = h.start("fanout");
    h.join("edge-2", "r").await;
    h.wait_deliveries("edge-2", |d| !d.is_empty()).await;
    h.send("edge-1", "r", "m1", "hello").await;
    let messages = |d: &[Delivery]| of_kind(d, "message").len();
    let e1 = h.wait_deliveries("edge-1", |d| messages(d) == 1).await;
    h.wait_deliveries("edge-2", |d| messages(d) == 1).await;
    let m = of_kind(&e1, "message")[0].clone();
    assert_eq!(
        (
            m.room.as_deref(),
            m.seq,
            m.client_id.as_deref(),
            m.text.as_deref(),
            m.user.as_deref()
        ),
        (Some("r"), Some(1), Some("m1"), Some("hello"), Some("ada"))
    );
    assert!(m.msg_ts.is_some());

    h.client_event(topics::CLIENT_EVENTS, event("unhost", "edge-2", "r"))
        .await;
    h.send("edge-1", "r", "m2", "again").await;
    h.wait_deliveries("edge-1", |d| messages(d) == 2).await;
    // edge-1 got m2 after the unhost marker, so edge-2 would have had it by now.
    let e2 = h.deliveries("edge-2").await;
    assert_eq!(messages(&e2), 1, "edge-2 unhosted: {e2:#?}");
    assert_eq!(
        messages(&h.deliveries("edge-3").await),
        0,
        "edge-3 hosts another room"
    );
    let subs: Vec<tidings_schemas::Subscription> = h.all(topics::SUBSCRIPTIONS).await;
    assert_eq!(subs.last().map(|s| s.kind.as_str()), Some("unhost"));
}

#[tokio::test]
async fn typing_is_relayed_to_hosting_edges() {
    let h = Harness::new().await;
    let _seq = h.start("sequencer");
    h.join("edge-1", "r").await;
    h.wait_deliveries("edge-1", |d| !d.is_empty()).await;
    let _typing = h.start("typing");
    // A host after typing started reaches it through the subscriptions follower.
    h.join("edge-2", "r").await;
    h.wait_deliveries("edge-2", |d| !d.is_empty()).await;
    // Typing starts at the end of its topic, so notices before its consumer exists are
    // lost; keep sending until one arrives at both edges.
    let started = Instant::now();
    loop {
        h.client_event(
            topics::TYPING,
            ClientEvent {
                on: Some(true),
                ..event("typing", "edge-1", "r")
            },
        )
        .await;
        let e1 = of_kind(&h.deliveries("edge-1").await, "typing").len();
        let e2 = h.deliveries("edge-2").await;
        if e1 > 0 && !of_kind(&e2, "typing").is_empty() {
            let t = of_kind(&e2, "typing")[0].clone();
            assert_eq!(
                (t.room.as_deref(), t.user.as_deref(), t.on),
                (Some("r"), Some("ada"), Some(true))
            );
            break;
        }
        assert!(started.elapsed() < DEADLINE, "typing never relayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(of_kind(&h.deliveries("edge-9").await, "typing").is_empty());
}

/// With caps of one room and one id, everything but the newest must be evicted once the
/// store has it and re-read from there: seqs and dedupe must not change.
#[tokio::test]
async fn tiny_memory_caps_keep_seqs_and_dedupe_correct() {
    use tidings_processors::sequencer::{Sequencer, SequencerConfig};
    use tidings_processors::Processor;
    let h = Harness::new().await;
    let sequencer = Sequencer::new(SequencerConfig {
        max_rooms: 1,
        max_ids: 1,
        batch: 2,
    });
    let (ctx, shutdown) = (h.ctx(), h.shutdown.clone());
    let _seq = tokio::spawn(async move { sequencer.run(ctx, shutdown).await });
    let plan = [
        ("a", "1"),
        ("b", "1"),
        ("a", "2"),
        ("c", "1"),
        ("a", "1"),
        ("b", "2"),
        ("b", "1"),
        ("a", "3"),
    ];
    for (room, id) in plan {
        h.send("edge-1", room, &format!("{room}{id}"), "x").await;
    }
    // Without persistence nothing may be evicted: the sequencer stops at its cap after the
    // first batch. Persistence then lets it go on.
    h.wait_deliveries("edge-1", |d| of_kind(d, "ack").len() >= 2)
        .await;
    let _persistence = h.start("persistence");
    let got = h
        .wait_deliveries("edge-1", |d| of_kind(d, "ack").len() == plan.len())
        .await;
    let expected: Vec<(String, i64)> = [
        ("a1", 1),
        ("b1", 1),
        ("a2", 2),
        ("c1", 1),
        ("a1", 1),
        ("b2", 2),
        ("b1", 1),
        ("a3", 3),
    ]
    .iter()
    .map(|(id, seq)| (id.to_string(), *seq))
    .collect();
    // Rooms on different partitions may interleave; each id's seq is what matters.
    let (mut got, mut expected) = (acks(&got), expected);
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    for (room, n) in [("a", 3), ("b", 2), ("c", 1)] {
        let seqs: Vec<_> = h.messages(room).await.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "room {room}");
    }
}

/// A new room needs no store look-up for its ids until one is evicted; after that a retry
/// of the evicted id must still get its original seq.
#[tokio::test]
async fn a_retry_of_an_evicted_id_in_a_new_room_keeps_its_seq() {
    use tidings_processors::sequencer::{Sequencer, SequencerConfig};
    use tidings_processors::Processor;
    let h = Harness::new().await;
    let sequencer = Sequencer::new(SequencerConfig {
        max_rooms: 100,
        max_ids: 1,
        batch: 1,
    });
    let (ctx, shutdown) = (h.ctx(), h.shutdown.clone());
    let _seq = tokio::spawn(async move { sequencer.run(ctx, shutdown).await });
    let _persistence = h.start("persistence");
    for id in ["n1", "n2", "n3"] {
        h.send("edge-1", "new", id, "x").await;
    }
    h.wait_deliveries("edge-1", |d| of_kind(d, "ack").len() == 3)
        .await;
    // Persistence stores them, so the sequencer may evict "n1" and "n2".
    let started = std::time::Instant::now();
    while h.messages("new").await.len() < 3 {
        assert!(started.elapsed() < DEADLINE, "persistence never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.send("edge-1", "new", "n4", "x").await;
    h.send("edge-1", "new", "n1", "x").await;
    let got = h
        .wait_deliveries("edge-1", |d| of_kind(d, "ack").len() == 5)
        .await;
    let mut got = acks(&got);
    got.sort();
    let expected: Vec<(String, i64)> = [("n1", 1), ("n1", 1), ("n2", 2), ("n3", 3), ("n4", 4)]
        .iter()
        .map(|(id, seq)| (id.to_string(), *seq))
        .collect();
    assert_eq!(got, expected);
    let seqs: Vec<_> = h.messages("new").await.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
}

fn room_record(kind: &str, room: &str, user: &str, seq: i64, text: &str) -> OutRecord {
    let event = RoomEvent {
        role: None,
        target: None,
        until: None,
        event_id: format!("{kind}-{room}-{seq}"),
        kind: kind.into(),
        room: Some(room.into()),
        user: Some(user.into()),
        ts: 1_000 + seq,
        trace_id: "t".into(),
        node: "proc-1".into(),
        seq,
        client_id: format!("c{seq}"),
        text: text.into(),
        origin_node: String::new(),
        origin_conn: String::new(),
    };
    OutRecord::new(topics::ROOM_LOG, room, event.encode().expect("encodes"))
}

/// `tidings replay store`: a store that never saw the log gets every message, the inbox rows
/// and the highest read marker from it, skips what does not decode, ends with persistence's
/// checkpoints at the log's end, and a second replay changes nothing.
#[tokio::test]
async fn replay_rebuilds_the_store_from_the_room_log() {
    let h = Harness::new().await;
    let mut records = vec![room_record("host", "general", "", 0, "")];
    for seq in 1..=30 {
        let text = if seq == 5 {
            "hi @bob".to_string()
        } else {
            format!("m{seq}")
        };
        records.push(room_record("message", "general", "ada", seq, &text));
    }
    records.push(room_record("message", "dm:ada:bob", "ada", 1, "psst"));
    records.push(room_record("read", "general", "bob", 20, ""));
    records.push(room_record("read", "general", "bob", 10, ""));
    records.push(OutRecord::new(
        topics::ROOM_LOG,
        "general",
        b"not avro".to_vec(),
    ));
    h.log.produce_batch(records).await.expect("appended");

    let fresh = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&fresh.path().join("store.redb")).expect("store"));
    let log: Arc<dyn Log> = h.log.clone();
    let stop = CancellationToken::new();
    let stats = tidings_processors::replay::rebuild_store(log.clone(), store.clone(), stop.clone())
        .await
        .expect("replayed");
    assert_eq!(
        (
            stats.records,
            stats.messages,
            stats.read_markers,
            stats.undecodable
        ),
        (35, 31, 1, 1)
    );

    let general = store
        .read("general", SeqRange::after(0, 100))
        .await
        .expect("read");
    assert_eq!(
        general.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=30).collect::<Vec<_>>()
    );
    assert_eq!(general[4].text, "hi @bob");
    assert_eq!(store.head("general").await.expect("head"), 30);
    assert_eq!(
        store.read_marker("bob", "general").await.expect("marker"),
        Some(20)
    );
    let rooms: Vec<String> = store
        .inbox_rooms("bob")
        .await
        .expect("inbox")
        .into_iter()
        .map(|r| r.room)
        .collect();
    assert_eq!(rooms, vec!["dm:ada:bob".to_string(), "general".to_string()]);
    assert_eq!(
        store
            .counts_after("bob", "general", 0)
            .await
            .expect("counts"),
        (0, 1)
    );
    let partitions = h
        .log
        .partitions(topics::ROOM_LOG)
        .await
        .expect("partitions");
    let mut checkpointed = 0;
    for p in 0..partitions {
        if let Some(next) = store
            .checkpoint(PERSISTENCE_CHECKPOINT, p)
            .await
            .expect("checkpoint")
        {
            assert_eq!(
                next,
                h.log.end_offset(topics::ROOM_LOG, p).await.expect("end")
            );
            checkpointed += 1;
        }
    }
    assert!(
        checkpointed >= 1,
        "the partitions with records are checkpointed"
    );

    let again = tidings_processors::replay::rebuild_store(log, store.clone(), stop)
        .await
        .expect("replayed again");
    assert_eq!(again.messages, 31);
    assert_eq!(
        store
            .read("general", SeqRange::after(0, 100))
            .await
            .expect("read")
            .len(),
        30
    );
    assert_eq!(
        store
            .counts_after("bob", "general", 0)
            .await
            .expect("counts"),
        (0, 1)
    );
}

/// `tidings replay processor persistence|inbox --from <time>`: only what was appended at or
/// after the time reaches a store that never saw it; the live group's committed offsets and
/// persistence's checkpoints are left as they were; no delivery is made; refused processors
/// say why.
#[tokio::test]
async fn a_backfill_from_a_time_writes_only_later_history_beside_the_live_group() {
    use tidings_processors::persistence::GROUP;
    use tidings_processors::replay::{self, BackfillError, BackfillJob, StartFrom};

    let h = Harness::new().await;
    let early: Vec<OutRecord> = (1..=10)
        .map(|seq| room_record("message", "general", "ada", seq, &format!("m{seq}")))
        .collect();
    h.log.produce_batch(early).await.expect("appended");
    let live = h.start("persistence");
    let started = Instant::now();
    while h.store.head("general").await.expect("head") < 10 {
        assert!(
            started.elapsed() < DEADLINE,
            "live persistence stored nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.shutdown.cancel();
    live.await.expect("stopped");
    let partitions = h.log.partitions(topics::ROOM_LOG).await.expect("p");
    let live_offsets = async || {
        let mut offsets = Vec::new();
        for p in 0..partitions {
            offsets.push(
                h.log
                    .committed_offset(GROUP, topics::ROOM_LOG, p)
                    .await
                    .expect("committed"),
            );
        }
        offsets
    };
    let before = live_offsets().await;
    assert!(
        before.iter().any(Option::is_some),
        "the live group committed"
    );

    tokio::time::sleep(Duration::from_millis(30)).await;
    let from = tidings_log::now_ms();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mut late: Vec<OutRecord> = (11..=15)
        .map(|seq| room_record("message", "general", "ada", seq, &format!("m{seq} @bob")))
        .collect();
    late.push(room_record("read", "general", "bob", 12, ""));
    h.log.produce_batch(late).await.expect("appended");
    let deliveries_ends = async || {
        let mut ends = Vec::new();
        for p in 0..h.log.partitions(topics::DELIVERIES).await.expect("p") {
            ends.push(h.log.end_offset(topics::DELIVERIES, p).await.expect("end"));
        }
        ends
    };
    let deliveries_before = deliveries_ends().await;

    let fresh = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&fresh.path().join("store.redb")).expect("store"));
    let ctx = Context {
        store: store.clone(),
        ..h.ctx()
    };
    let job = BackfillJob {
        from: StartFrom::Time(from),
        endpoint: None,
    };
    let stop = CancellationToken::new();
    let persistence = by_name("persistence").expect("registered");
    let stats = replay::backfill(&*persistence, &ctx, &job, &stop)
        .await
        .expect("backfilled");
    assert_eq!(
        (stats.records, stats.messages, stats.undecodable),
        (6, 5, 0)
    );
    assert_eq!(stats.kinds.get("message"), Some(&5));
    assert_eq!(stats.kinds.get("read"), Some(&1));
    assert!(!stats.interrupted);
    let stored: Vec<i64> = store
        .read("general", SeqRange::after(0, 100))
        .await
        .expect("read")
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(
        stored,
        (11..=15).collect::<Vec<_>>(),
        "only what came after"
    );
    for p in 0..partitions {
        assert_eq!(
            store
                .checkpoint(PERSISTENCE_CHECKPOINT, p)
                .await
                .expect("cp"),
            None,
            "checkpoints are the live processor's"
        );
    }

    let inbox = by_name("inbox").expect("registered");
    let stats = replay::backfill(&*inbox, &ctx, &job, &stop)
        .await
        .expect("backfilled");
    assert_eq!((stats.messages, stats.read_markers), (5, 1));
    assert_eq!(
        store.read_marker("bob", "general").await.expect("marker"),
        Some(12)
    );
    assert_eq!(
        store
            .counts_after("bob", "general", 12)
            .await
            .expect("counts"),
        (0, 3),
        "mentions of bob after his marker"
    );

    assert_eq!(
        live_offsets().await,
        before,
        "the live group is where it was"
    );
    assert_eq!(
        deliveries_ends().await,
        deliveries_before,
        "a backfill delivers nothing"
    );

    let fanout = by_name("fanout").expect("registered");
    match replay::backfill(&*fanout, &ctx, &job, &stop).await {
        Err(BackfillError::Refused { processor, reason }) => {
            assert_eq!(processor, "fanout");
            assert!(reason.contains("live clients"), "{reason}");
        }
        other => panic!("fanout must refuse: {other:?}"),
    }
}
