//! The edge end to end over Socket.IO (rust_socketio client), on the real embedded log and
//! store, with the test playing the processors' part (sequencing, persistence, fan-out).

use futures::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::Payload;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tidings_edge::auth::{mint, now_secs, Claims};
use tidings_edge::{serve_on, EdgeConfig};
use tidings_log::embedded::EmbeddedLog;
use tidings_log::{topics, ConsumerOptions, Log, OutRecord};
use tidings_schemas::{ClientEvent, Delivery, LogRecord};
use tidings_store::embedded::EmbeddedStore;
use tidings_store::{Store, StoredMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "test-secret";
const WAIT: Duration = Duration::from_secs(10);

struct Harness {
    _dir: tempfile::TempDir,
    addr: String,
    node: String,
    log: Arc<dyn Log>,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
    /// The fake sequencer's room heads (preset one to pretend persistence lags).
    heads: Heads,
}

type Heads = Arc<std::sync::Mutex<HashMap<String, i64>>>;

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(tweak: impl FnOnce(&mut EdgeConfig)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(&dir.path().join("log.redb")).unwrap());
    log.ensure_topics(&topics::all()).await.unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
    let mut config = EdgeConfig::new(SECRET);
    config.dev_tokens = true;
    config.reply_timeout = Duration::from_secs(5);
    tweak(&mut config);
    let node = config.node.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    tokio::spawn(serve_on(
        listener,
        config,
        log.clone(),
        store.clone(),
        shutdown.clone(),
    ));
    let heads = Heads::default();
    tokio::spawn(fake_processors(
        log.clone(),
        store.clone(),
        heads.clone(),
        shutdown.clone(),
    ));
    Harness {
        heads,
        _dir: dir,
        addr,
        node,
        log,
        store,
        shutdown,
    }
}

fn delivery(kind: &str, edge: &str) -> Delivery {
    Delivery::new(uuid::Uuid::new_v4().to_string(), kind, edge, "fake", "t", 1)
}

fn stored(room: &str, seq: i64) -> StoredMessage {
    StoredMessage {
        room: room.into(),
        seq,
        client_id: format!("c{seq}"),
        from: "someone".into(),
        text: format!("m{seq}"),
        ts: 1000 + seq,
        deleted: false,
    }
}

fn message_delivery(edge: &str, m: &StoredMessage) -> Delivery {
    Delivery {
        room: Some(m.room.clone()),
        user: Some(m.from.clone()),
        seq: Some(m.seq),
        client_id: Some(m.client_id.clone()),
        text: Some(m.text.clone()),
        msg_ts: Some(m.ts),
        ..delivery("message", edge)
    }
}

async fn deliver(log: &Arc<dyn Log>, d: Delivery) {
    let key = d.edge.clone();
    log.produce(OutRecord::new(topics::DELIVERIES, key, d.encode().unwrap()))
        .await
        .unwrap();
}

/// Sequencer + persistence + fan-out, minimal: joins and history's head requests get the
/// store's head; sends of text
/// "reject me" are rejected; others get the next seq, are stored, acked and fanned out to
/// the sending edge.
async fn fake_processors(
    log: Arc<dyn Log>,
    store: Arc<dyn Store>,
    heads: Heads,
    stop: CancellationToken,
) {
    let mut consumer = log
        .consumer("fake", &[topics::CLIENT_EVENTS], ConsumerOptions::default())
        .await
        .unwrap();
    while !stop.is_cancelled() {
        let Ok(records) = consumer.poll(100, Duration::from_millis(100)).await else {
            continue;
        };
        for r in records {
            let ev = ClientEvent::decode(&r.value).unwrap();
            let room = ev.room.clone().unwrap_or_default();
            let known = heads.lock().unwrap().get(&room).copied();
            let mut current = match known {
                Some(h) => h,
                None => store.head(&room).await.unwrap(),
            };
            let head = &mut current;
            match ev.kind.as_str() {
                "join" => {
                    let d = Delivery {
                        room: Some(room.clone()),
                        conn: Some(ev.conn.clone()),
                        seq: Some(*head),
                        ..delivery("joined", &ev.node)
                    };
                    deliver(&log, d).await;
                }
                "head" => {
                    let d = Delivery {
                        room: Some(room.clone()),
                        conn: Some(ev.conn.clone()),
                        client_id: ev.client_id.clone(),
                        seq: Some(*head),
                        ..delivery("head", &ev.node)
                    };
                    deliver(&log, d).await;
                }
                "send" if ev.text.as_deref() == Some("reject me") => {
                    let d = Delivery {
                        room: Some(room.clone()),
                        conn: Some(ev.conn.clone()),
                        client_id: ev.client_id.clone(),
                        error_code: Some("rejected".into()),
                        error_message: Some("blocked term".into()),
                        ..delivery("reject", &ev.node)
                    };
                    deliver(&log, d).await;
                }
                "send" => {
                    *head += 1;
                    let m = StoredMessage {
                        room: room.clone(),
                        seq: *head,
                        client_id: ev.client_id.clone().unwrap_or_default(),
                        from: ev.user.clone().unwrap_or_default(),
                        text: ev.text.clone().unwrap_or_default(),
                        ts: ev.ts,
                        deleted: false,
                    };
                    store.append(std::slice::from_ref(&m)).await.unwrap();
                    let ack = Delivery {
                        room: Some(room.clone()),
                        conn: Some(ev.conn.clone()),
                        client_id: Some(m.client_id.clone()),
                        seq: Some(m.seq),
                        msg_ts: Some(m.ts),
                        ..delivery("ack", &ev.node)
                    };
                    deliver(&log, ack).await;
                    deliver(&log, message_delivery(&ev.node, &m)).await;
                }
                _ => {}
            }
            heads.lock().unwrap().insert(room, current);
        }
    }
}

fn token(sub: &str, exp: u64) -> String {
    mint(SECRET, &Claims::new(sub, exp)).unwrap()
}

/// What a client saw, in the order it saw it.
#[derive(Debug)]
enum Seen {
    Message(Value),
    Typing(Value),
    Error(String),
    Connected,
}

struct TestClient {
    client: Client,
    rx: mpsc::UnboundedReceiver<Seen>,
    tx: mpsc::UnboundedSender<Seen>,
}

/// An ack's payload arrives as the array of its arguments.
fn ack_value(p: Payload) -> Value {
    match first(p) {
        Value::Array(mut a) if a.len() == 1 => a.remove(0),
        other => other,
    }
}

fn first(p: Payload) -> Value {
    match p {
        Payload::Text(mut v) if !v.is_empty() => v.remove(0),
        other => json!(format!("{other:?}")),
    }
}

async fn connect(addr: &str, auth: Option<Value>) -> TestClient {
    let (tx, rx) = mpsc::unbounded_channel();
    let (t1, t2, t3, t4) = (tx.clone(), tx.clone(), tx.clone(), tx.clone());
    let mut builder = ClientBuilder::new(format!("http://{addr}/"))
        .reconnect(false)
        .on("message", move |p, _| {
            let _ = t1.send(Seen::Message(first(p)));
            async {}.boxed()
        })
        .on("typing", move |p, _| {
            let _ = t2.send(Seen::Typing(first(p)));
            async {}.boxed()
        })
        .on("error", move |p, _| {
            let _ = t3.send(Seen::Error(format!("{p:?}")));
            async {}.boxed()
        })
        .on("open", move |_, _| {
            let _ = t4.send(Seen::Connected);
            async {}.boxed()
        });
    if let Some(auth) = auth {
        builder = builder.auth(auth);
    }
    let client = builder.connect().await.unwrap();
    TestClient { client, rx, tx }
}

impl TestClient {
    async fn call(&self, event: &str, data: Value) -> Value {
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.client
            .emit_with_ack(event, data, WAIT, move |p, _| {
                let _ = tx.send(ack_value(p));
                async {}.boxed()
            })
            .await
            .unwrap();
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("ack in time")
            .expect("ack")
    }

    /// Calls and records the ack in the event stream, so order against messages is visible.
    async fn call_in_stream(&self, event: &str, data: Value) {
        let tx = self.tx.clone();
        self.client
            .emit_with_ack(event, data, WAIT, move |p, _| {
                let _ = tx.send(Seen::Message(json!({"ack": ack_value(p)})));
                async {}.boxed()
            })
            .await
            .unwrap();
    }

    async fn next(&mut self) -> Seen {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("event in time")
            .expect("event")
    }

    async fn next_message(&mut self) -> Value {
        loop {
            match self.next().await {
                Seen::Message(v) => return v,
                Seen::Connected => {}
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    async fn connected(&mut self) {
        match self.next().await {
            Seen::Connected => {}
            other => panic!("expected connect, got {other:?}"),
        }
    }

    /// Asserts nothing else arrives for a moment.
    async fn quiet(&mut self) {
        if let Ok(Some(seen)) =
            tokio::time::timeout(Duration::from_millis(300), self.rx.recv()).await
        {
            panic!("unexpected {seen:?}");
        }
    }
}

async fn user(h: &Harness, sub: &str) -> TestClient {
    let mut c = connect(
        &h.addr,
        Some(json!({"token": token(sub, now_secs() + 600)})),
    )
    .await;
    c.connected().await;
    c
}

fn code(ack: &Value) -> &str {
    ack["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_unauthorized() {
    let h = start(|_| {}).await;
    let cases = [
        None,
        Some(json!({})),
        Some(json!({"token": token("ada", now_secs() - 10)})),
        Some(json!({"token": mint("wrong", &Claims::new("ada", now_secs() + 60)).unwrap()})),
        Some(json!({"token": "garbage"})),
    ];
    for auth in cases {
        let mut c = connect(&h.addr, auth.clone()).await;
        match c.next().await {
            Seen::Error(e) => assert!(e.contains("unauthorized"), "{auth:?}: {e}"),
            other => panic!("{auth:?}: expected a connect error, got {other:?}"),
        }
    }
    // A good token connects and its events are acked.
    let c = user(&h, "ada").await;
    assert_eq!(c.call("join", json!({"room": "lobby"})).await["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_errors_are_acked_and_the_connection_keeps_working() {
    let h = start(|c| c.max_text_chars = 10).await;
    let c = user(&h, "ada").await;
    let ack = c
        .call("send", json!({"room": "r1", "id": "a", "text": "hi"}))
        .await;
    assert_eq!(code(&ack), "not_joined", "{ack}");
    assert_eq!(ack["ok"], false);
    assert_eq!(
        code(&c.call("join", json!({"room": "bad room"})).await),
        "invalid"
    );
    assert_eq!(code(&c.call("join", json!({"room": 7})).await), "invalid");
    assert_eq!(
        code(&c.call("join", json!({"room": "r", "since": -1})).await),
        "invalid"
    );
    assert_eq!(code(&c.call("join", json!("r")).await), "invalid");
    let ack = c.call("nonsense", json!({})).await;
    assert_eq!(code(&ack), "invalid");
    assert_eq!(ack["error"]["message"], "unknown event");

    let ack = c.call("join", json!({"room": "r1"})).await;
    assert_eq!(ack, json!({"ok": true, "room": "r1", "head": 0}));
    let long = "x".repeat(11);
    assert_eq!(
        code(
            &c.call("send", json!({"room": "r1", "id": "a", "text": long}))
                .await
        ),
        "too_large"
    );
    assert_eq!(
        code(
            &c.call("send", json!({"room": "r1", "id": "", "text": "x"}))
                .await
        ),
        "invalid"
    );
    assert_eq!(
        code(
            &c.call("send", json!({"room": "r1", "id": "a", "text": 1}))
                .await
        ),
        "invalid"
    );
    let ack = c
        .call(
            "send",
            json!({"room": "r1", "id": "a", "text": "reject me"}),
        )
        .await;
    assert_eq!(code(&ack), "rejected");
    assert_eq!(ack["error"]["message"], "blocked term");

    let ack = c
        .call("send", json!({"room": "r1", "id": "a", "text": "hello"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["seq"], 1);
    assert!(ack["ts"].as_i64().unwrap() > 0);
    assert_eq!(
        c.call("leave", json!({"room": "r1"})).await,
        json!({"ok": true})
    );
    assert_eq!(
        code(
            &c.call("send", json!({"room": "r1", "id": "b", "text": "x"}))
                .await
        ),
        "not_joined"
    );
    assert_eq!(
        code(&c.call("typing", json!({"room": "r1", "on": true})).await),
        "not_joined"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_beyond_the_rate_are_rate_limited() {
    let h = start(|c| {
        c.events_per_sec = 1.0;
        c.events_burst = 3.0;
    })
    .await;
    let c = user(&h, "ada").await;
    for _ in 0..3 {
        assert_eq!(c.call("history", json!({"room": "r"})).await["ok"], true);
    }
    let ack = c.call("history", json!({"room": "r"})).await;
    assert_eq!(code(&ack), "rate_limited", "{ack}");
    let retry = ack["error"]["retry_after_ms"].as_u64().unwrap();
    assert!(retry > 0 && retry <= 1000, "{retry}");
    tokio::time::sleep(Duration::from_millis(retry + 50)).await;
    assert_eq!(c.call("history", json!({"room": "r"})).await["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_with_since_replays_then_acks_then_goes_live_without_duplicates() {
    let h = start(|_| {}).await;
    let all: Vec<StoredMessage> = (1..=8).map(|s| stored("r", s)).collect();
    h.store.append(&all[..5]).await.unwrap();

    let mut c = user(&h, "ada").await;
    c.call_in_stream("join", json!({"room": "r", "since": 2}))
        .await;
    for seq in 3..=5 {
        let m = c.next_message().await;
        assert_eq!(m["seq"], seq, "{m}");
        assert_eq!(m["room"], "r");
        assert_eq!(m["id"], format!("c{seq}"));
        assert_eq!(m["from"], "someone");
        assert_eq!(m["text"], format!("m{seq}"));
        assert_eq!(m["ts"], 1000 + seq);
    }
    let ack = c.next_message().await;
    assert_eq!(ack, json!({"ack": {"ok": true, "room": "r", "head": 5}}));

    // Live: a duplicate is dropped, the next one passes, a gap is filled from the store.
    deliver(&h.log, message_delivery(&h.node, &all[4])).await;
    deliver(&h.log, message_delivery(&h.node, &all[5])).await;
    deliver(&h.log, message_delivery(&h.node, &all[5])).await;
    h.store.append(&all[6..8]).await.unwrap();
    deliver(&h.log, message_delivery(&h.node, &all[7])).await;
    deliver(&h.log, message_delivery(&h.node, &all[6])).await;
    for seq in 6..=8 {
        assert_eq!(c.next_message().await["seq"], seq);
    }
    c.quiet().await;
    h.heads.lock().unwrap().insert("r".into(), 8);

    // A second client joining without since gets just the head, then live messages.
    let mut d = user(&h, "bob").await;
    assert_eq!(
        d.call("join", json!({"room": "r"})).await,
        json!({"ok": true, "room": "r", "head": 8})
    );
    let ack = d
        .call("send", json!({"room": "r", "id": "x1", "text": "hey"}))
        .await;
    assert_eq!(ack["seq"], 9, "{ack}");
    let m = d.next_message().await;
    assert_eq!(
        (m["seq"].as_i64(), m["from"].as_str(), m["id"].as_str()),
        (Some(9), Some("bob"), Some("x1"))
    );
    assert_eq!(c.next_message().await["seq"], 9);

    // Typing goes to the other members, not back to the typist.
    assert_eq!(
        d.call("typing", json!({"room": "r", "on": true})).await,
        json!({"ok": true})
    );
    let mut t = delivery("typing", &h.node);
    t.room = Some("r".into());
    t.user = Some("bob".into());
    t.on = Some(true);
    deliver(&h.log, t).await;
    match c.next().await {
        Seen::Typing(v) => assert_eq!(v, json!({"room": "r", "user": "bob", "on": true})),
        other => panic!("expected typing, got {other:?}"),
    }
    d.quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_waits_for_a_lagging_store() {
    let h = start(|_| {}).await;
    let all: Vec<StoredMessage> = (1..=3).map(|s| stored("lag", s)).collect();
    h.store.append(&all[..1]).await.unwrap();
    // The sequencer's head is 3 while persistence has stored only seq 1 so far.
    h.heads.lock().unwrap().insert("lag".into(), 3);
    let store = h.store.clone();
    let rest = all[1..].to_vec();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        store.append(&rest).await.unwrap();
    });
    let mut c = user(&h, "ada").await;
    c.call_in_stream("join", json!({"room": "lag", "since": 0}))
        .await;
    for seq in 1..=3 {
        assert_eq!(c.next_message().await["seq"], seq);
    }
    assert_eq!(
        c.next_message().await,
        json!({"ack": {"ok": true, "room": "lag", "head": 3}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_fails_unavailable_when_the_store_never_catches_up() {
    let h = start(|c| c.catchup_timeout = Duration::from_millis(300)).await;
    h.heads.lock().unwrap().insert("stuck".into(), 2);
    let c = user(&h, "ada").await;
    let ack = c.call("join", json!({"room": "stuck", "since": 0})).await;
    assert_eq!(code(&ack), "unavailable", "{ack}");
    // The failed join left no membership behind.
    assert_eq!(
        code(
            &c.call("send", json!({"room": "stuck", "id": "a", "text": "x"}))
                .await
        ),
        "not_joined"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_backwards_in_ascending_order() {
    let h = start(|_| {}).await;
    let all: Vec<StoredMessage> = (1..=7).map(|s| stored("h", s)).collect();
    h.store.append(&all).await.unwrap();
    let c = user(&h, "ada").await;
    let ack = c.call("history", json!({"room": "h", "limit": 3})).await;
    let seqs: Vec<i64> = ack["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![5, 6, 7]);
    assert_eq!(ack["has_more"], true);
    let ack = c.call("history", json!({"room": "h", "before": 3})).await;
    let seqs: Vec<i64> = ack["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2]);
    assert_eq!(ack["has_more"], false);
    assert_eq!(ack["messages"][0]["from"], "someone");
    assert_eq!(
        code(&c.call("history", json!({"room": "h", "limit": 500})).await),
        "invalid"
    );
}

async fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints() {
    let h = start(|_| {}).await;
    assert_eq!(http(&h.addr, "GET", "/healthz", "").await.0, 200);
    assert_eq!(http(&h.addr, "GET", "/readyz", "").await.0, 200);
    let (status, page) = http(&h.addr, "GET", "/", "").await;
    assert_eq!(status, 200);
    assert!(page.contains("<html"));
    let (status, js) = http(&h.addr, "GET", "/socket.io.min.js", "").await;
    assert_eq!(status, 200);
    assert!(js.len() > 10_000);

    let (status, body) = http(&h.addr, "POST", "/dev/token", r#"{"name":"ada"}"#).await;
    assert_eq!(status, 200, "{body}");
    let body = body
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or(&body)
        .to_string();
    let token: Value = serde_json::from_str(&body).unwrap();
    let mut c = connect(&h.addr, Some(json!({"token": token["token"]}))).await;
    c.connected().await;
    assert_eq!(c.call("join", json!({"room": "m"})).await["ok"], true);
    assert_eq!(
        c.call("send", json!({"room": "m", "id": "1", "text": "x"}))
            .await["ok"],
        true
    );
    assert_eq!(c.next_message().await["seq"], 1);

    // Short dev tokens, to try `refresh` and expiry; never past a day.
    let (status, body) = http(
        &h.addr,
        "POST",
        "/dev/token",
        r#"{"name":"bo","ttl_secs":2}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let short: Value = body
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap();
    let exp = short["exp"].as_u64().unwrap();
    assert!(
        exp <= now_secs() + 2 && exp + 5 >= now_secs() + 2,
        "{short}"
    );
    for bad in [
        r#"{"name":"bo","ttl_secs":0}"#,
        r#"{"name":"bo","ttl_secs":90000}"#,
    ] {
        assert_eq!(
            http(&h.addr, "POST", "/dev/token", bad).await.0,
            400,
            "{bad}"
        );
    }

    let (status, metrics) = http(&h.addr, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    for needle in [
        "tidings_edge_connections",
        "tidings_edge_events_in_total",
        "tidings_edge_events_out_total",
        "tidings_edge_send_ack_seconds",
        "tidings_edge_delivery_lag_records",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from {metrics}");
    }
    // The one message went out once: the per-kind counter the delivery path increments.
    let messages_out = metrics
        .lines()
        .find(|l| l.starts_with("tidings_edge_events_out_total{") && l.contains("kind=\"message\""))
        .unwrap_or_default();
    assert!(messages_out.ends_with(" 1"), "{metrics}");

    // Without dev tokens there is no token endpoint.
    let h2 = start(|c| c.dev_tokens = false).await;
    assert_eq!(
        http(&h2.addr, "POST", "/dev/token", r#"{"name":"ada"}"#)
            .await
            .0,
        404
    );
}

/// Headers live as long as the connection (the socket keeps its request), so they are bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused_and_the_server_keeps_serving() {
    let h = start(|_| {}).await;
    for cookie_bytes in [10_000, 40_000] {
        let mut s = tokio::net::TcpStream::connect(&h.addr).await.unwrap();
        let req = format!(
            "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nCookie: {}\r\nConnection: close\r\n\r\n",
            "c".repeat(cookie_bytes)
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let head = String::from_utf8_lossy(&out);
        assert!(head.starts_with("HTTP/1.1 431"), "{cookie_bytes}: {head}");
    }
    assert_eq!(http(&h.addr, "GET", "/healthz", "").await.0, 200);
    let c = user(&h, "ada").await;
    assert_eq!(c.call("join", json!({"room": "h"})).await["ok"], true);
}

/// A client that never finishes its request head is disconnected, and holds nothing after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_head_is_disconnected() {
    let h = start(|c| c.request_head_timeout = Duration::from_millis(300)).await;
    let mut s = tokio::net::TcpStream::connect(&h.addr).await.unwrap();
    s.write_all(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(closed.is_ok(), "the server kept a stalled request open");
    assert_eq!(http(&h.addr, "GET", "/healthz", "").await.0, 200);
}

/// A client as fast as a native one: it sends its first event the instant the server's
/// CONNECT arrives. socketioxide reports the connection before it runs an async connect
/// handler, so handlers registered there missed such events (no ack, ever) for a few
/// percent of connections; they are now registered before CONNECT is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_event_sent_on_connect_is_answered() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let h = start(|_| {}).await;
    let mut unanswered = 0;
    for i in 0..1000 {
        let tcp = tokio::net::TcpStream::connect(&h.addr).await.unwrap();
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", h.addr);
        let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
        let open = tokio::time::timeout(Duration::from_secs(3), ws.next()).await;
        assert!(
            matches!(open, Ok(Some(Ok(Message::Text(ref t)))) if t.starts_with('0')),
            "engine.io open packet"
        );
        let auth = json!({ "token": token(&format!("fast-{i}"), now_secs() + 60) });
        ws.send(Message::text(format!("40{auth}"))).await.unwrap();
        let mut answered = false;
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(3), ws.next()).await;
            let Ok(Some(Ok(Message::Text(text)))) = frame else {
                break;
            };
            if text.starts_with("40") {
                // No waiting: the very next packet is the event.
                ws.send(Message::text(r#"421["history",{"room":"fast"}]"#))
                    .await
                    .unwrap();
            } else if text.starts_with("431") {
                answered = text.contains(r#""ok":true"#);
                break;
            }
        }
        if !answered {
            unanswered += 1;
        }
        let _ = ws.close(None).await;
    }
    assert_eq!(unanswered, 0, "first events left without an ack");
}
