//! The whole system on a disk that fills up and frees again: `tidings standalone` (the binary,
//! `TIDINGS_BIN` or the one built beside this test) keeps its data on a small tmpfs; a client
//! sends over Socket.IO; the test fills the disk with a file. While it is full the process
//! keeps serving (`/healthz` 200), answers sends and joins with `unavailable` and `/readyz`
//! with 503; once the file is deleted it is ready and acks sends again, without a restart,
//! and history holds every acked message in order, with no gap (G1, G2).

use futures::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::Payload;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tidings_tests::Tmpfs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longer than the edge's 10 s wait for a processor's reply.
const ACK_WAIT: Duration = Duration::from_secs(15);
/// Bounds of each phase.
const START_WITHIN: Duration = Duration::from_secs(30);
const FAULT_WITHIN: Duration = Duration::from_secs(90);
const RECOVER_WITHIN: Duration = Duration::from_secs(60);

fn tidings_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("TIDINGS_BIN") {
        return bin.into();
    }
    // target/<profile>/deps/disk_full-… → target/<profile>/tidings
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("tidings")));
    match beside {
        Some(bin) if bin.exists() => bin,
        _ => panic!("no tidings binary: run `cargo build -p tidings` first, or set TIDINGS_BIN"),
    }
}

/// A running `tidings standalone`, killed when dropped.
struct Standalone {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Standalone {
    fn start(data_dir: &Path, log_dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = log_dir.join("tidings.log");
        let output = std::fs::File::create(&log).expect("log file");
        let child = Command::new(tidings_bin())
            .arg("standalone")
            .env("TIDINGS_DATA_DIR", data_dir)
            .env("TIDINGS_LISTEN", &addr)
            .env_remove("TIDINGS_JWT_SECRET")
            // The fill loop sends as fast as acks come back.
            .env("TIDINGS_RATE_PER_SEC", "1000")
            .env("TIDINGS_RATE_BURST", "1000")
            .env("TIDINGS_USER_RATE_PER_SEC", "1000")
            .env("TIDINGS_USER_RATE_BURST", "1000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(output)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", tidings_bin().display()));
        Self { child, addr, log }
    }

    /// The end of the process's log, for failure messages.
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    async fn get(&self, path: &str) -> Option<u16> {
        http(&self.addr, "GET", path, "").await.ok().map(|(s, _)| s)
    }

    /// Polls `path` until it answers `status`; panics with the log after `within`.
    async fn wait_for(&self, path: &str, status: u16, within: Duration) {
        let deadline = Instant::now() + within;
        while self.get(path).await != Some(status) {
            assert!(
                Instant::now() < deadline,
                "{path} never answered {status} within {within:?}; log:\n{}",
                self.tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a new connection: (status, body).
async fn http(addr: &str, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| std::io::Error::other("no HTTP answer in time"))??;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The ack's one argument (rust_socketio hands it over wrapped in an array).
fn ack_value(payload: Payload) -> Value {
    let first = match payload {
        Payload::Text(mut values) if !values.is_empty() => values.remove(0),
        other => json!(format!("{other:?}")),
    };
    match first {
        Value::Array(mut args) if args.len() == 1 => args.remove(0),
        other => other,
    }
}

/// Emits `event` and returns its ack (`{ok, …}`), or panics after `ACK_WAIT`.
async fn call(client: &Client, event: &str, data: Value) -> Value {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    client
        .emit_with_ack(event, data, ACK_WAIT, move |p, _| {
            let _ = tx.send(ack_value(p));
            async {}.boxed()
        })
        .await
        .expect("emit");
    tokio::time::timeout(ACK_WAIT + Duration::from_secs(1), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no ack to {event} in time"))
        .expect("ack")
}

fn record_ack(acked: &mut Vec<(String, i64)>, id: &str, ack: &Value) {
    let seq = ack["seq"].as_i64().expect("an acked send has a seq");
    acked.push((id.to_string(), seq));
}

fn error_code(ack: &Value) -> Option<&str> {
    ack["error"]["code"].as_str()
}

async fn send(client: &Client, room: &str, id: &str) -> Value {
    call(
        client,
        "send",
        json!({"room": room, "id": id, "text": format!("text of {id}")}),
    )
    .await
}

/// The room's whole history, oldest first, as (seq, id).
async fn history(client: &Client, room: &str) -> Vec<(i64, String)> {
    let mut all = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let mut request = json!({"room": room, "limit": 200});
        if let Some(b) = before {
            request["before"] = json!(b);
        }
        let page = call(client, "history", request).await;
        assert_eq!(page["ok"], json!(true), "history: {page}");
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        let mut batch: Vec<(i64, String)> = messages
            .iter()
            .map(|m| {
                (
                    m["seq"].as_i64().unwrap_or(-1),
                    m["id"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        batch.extend(all);
        all = batch;
        if page["has_more"] != json!(true) || all.is_empty() {
            return all;
        }
        before = Some(all[0].0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_tidings_unavailable_and_it_resumes_by_itself() {
    let disk = Tmpfs::mount("8m");
    let logs = tempfile::tempdir().unwrap();
    let server = Standalone::start(&disk.path().join("data"), logs.path());
    server.wait_for("/readyz", 200, START_WITHIN).await;

    let (status, body) = http(&server.addr, "POST", "/dev/token", r#"{"name":"ada"}"#)
        .await
        .expect("dev token");
    assert_eq!(status, 200, "{body}");
    let token: Value = serde_json::from_str(&body).expect("token JSON");
    let (opened, mut open) = tokio::sync::mpsc::unbounded_channel();
    let client = ClientBuilder::new(format!("http://{}/", server.addr))
        .auth(json!({"token": token["token"]}))
        .reconnect(false)
        .on("open", move |_, _| {
            let _ = opened.send(());
            async {}.boxed()
        })
        .connect()
        .await
        .expect("Socket.IO connects");
    tokio::time::timeout(ACK_WAIT, open.recv())
        .await
        .expect("connected in time");
    let room = "disk-full";
    let joined = call(&client, "join", json!({"room": room})).await;
    assert_eq!(joined["ok"], json!(true), "{joined}");

    // (id, seq) of every acked send, in send order.
    let mut acked: Vec<(String, i64)> = Vec::new();
    for i in 0..20 {
        let id = format!("before-{i}");
        let ack = send(&client, room, &id).await;
        assert_eq!(ack["ok"], json!(true), "{ack}");
        record_ack(&mut acked, &id, &ack);
    }

    // The disk fills; sends go on until one is refused (the databases had free pages left).
    let filler = disk.fill();
    let deadline = Instant::now() + FAULT_WITHIN;
    let mut n = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "sends were still acked {FAULT_WITHIN:?} after the disk filled; log:\n{}",
            server.tail()
        );
        let id = format!("filling-{n}");
        n += 1;
        let ack = send(&client, room, &id).await;
        if ack["ok"] == json!(true) {
            record_ack(&mut acked, &id, &ack);
            continue;
        }
        assert_eq!(error_code(&ack), Some("unavailable"), "{ack}");
        break;
    }

    // Not ready, yet serving: sends and joins are refused as unavailable, health is fine.
    server
        .wait_for("/readyz", 503, Duration::from_secs(30))
        .await;
    assert_eq!(server.get("/healthz").await, Some(200));
    for i in 0..3 {
        let ack = send(&client, room, &format!("refused-{i}")).await;
        assert_eq!(
            error_code(&ack),
            Some("unavailable"),
            "a send on a full disk: {ack}"
        );
    }
    let join = call(&client, "join", json!({"room": "another-room"})).await;
    assert_eq!(
        error_code(&join),
        Some("unavailable"),
        "a join on a full disk: {join}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        server.get("/readyz").await,
        Some(503),
        "still full, still not ready"
    );

    // Space returns: ready again, and sends are acked again, by the same process.
    std::fs::remove_file(&filler).expect("filler removed");
    server.wait_for("/readyz", 200, RECOVER_WITHIN).await;
    let deadline = Instant::now() + RECOVER_WITHIN;
    for i in 0..20 {
        let id = format!("after-{i}");
        // `unavailable` means retry with the same id (PROTOCOL.md); the first sends may
        // meet processors still restarting their sessions.
        loop {
            let ack = send(&client, room, &id).await;
            if ack["ok"] == json!(true) {
                record_ack(&mut acked, &id, &ack);
                break;
            }
            assert_eq!(error_code(&ack), Some("unavailable"), "{ack}");
            assert!(
                Instant::now() < deadline,
                "sends were not acked again within {RECOVER_WITHIN:?}; log:\n{}",
                server.tail()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let join = call(&client, "join", json!({"room": "another-room"})).await;
    assert_eq!(join["ok"], json!(true), "a join after the recovery: {join}");

    // G1 and G2: every acked message is in history under its seq, seqs run 1..=head with no
    // gap or repeat, and acks came in send order.
    let last = acked.last().map(|(_, seq)| *seq).unwrap_or(0);
    let deadline = Instant::now() + RECOVER_WITHIN;
    let stored = loop {
        let stored = history(&client, room).await;
        if stored.last().is_some_and(|(seq, _)| *seq >= last) {
            break stored;
        }
        assert!(
            Instant::now() < deadline,
            "history never reached seq {last}: {stored:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let seqs: Vec<i64> = stored.iter().map(|(seq, _)| *seq).collect();
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, expected, "history has a gap or a repeat");
    for (id, seq) in &acked {
        assert_eq!(
            stored
                .get((*seq - 1) as usize)
                .map(|(_, stored_id)| stored_id),
            Some(id),
            "acked message {id} (seq {seq}) is not in history"
        );
    }
    assert!(
        acked.windows(2).all(|w| w[0].1 < w[1].1),
        "acks out of send order: {acked:?}"
    );
    eprintln!(
        "{} acked ({} while the disk filled), {} in history",
        acked.len(),
        acked
            .iter()
            .filter(|(id, _)| id.starts_with("filling"))
            .count(),
        stored.len(),
    );
    let _ = client.disconnect().await;
}
