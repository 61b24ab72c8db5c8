//! `tidings-bench load <scenario>`: a Socket.IO load generator that drives Tidings and the
//! stock socket.io baseline (`bench/baseline/server.mjs`) with the same load, over many
//! loopback source addresses. Every scenario is bounded in time and count, targets only
//! loopback, and prints one JSON record on stdout and a readable line on stderr.

mod presence;
pub mod sio;

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use jsonwebtoken::{EncodingKey, Header};
use serde::{Deserialize, Serialize};
use sio::{Client, Packet};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

/// What the server must be started with, for the help text.
const SERVER_HELP: &str = "\
Targets: `--target tidings` is `tidings standalone` (or edges) started by the caller with
  TIDINGS_JWT_SECRET=<--secret> TIDINGS_RATE_PER_SEC=100000 TIDINGS_RATE_BURST=100000
  TIDINGS_USER_RATE_PER_SEC=100000 TIDINGS_USER_RATE_BURST=100000 TIDINGS_MAX_CONNS_PER_IP=0
  TIDINGS_CONNECT_RATE_PER_IP=100000 TIDINGS_CONNECT_BURST_PER_IP=100000
(the default 20 events/s per connection would reject the load as rate_limited, and the
per-address caps would refuse most of its connections);
`--target node` is bench/baseline/server.mjs (PORT=.. JWT_SECRET=<--secret> node server.mjs).
Only loopback URLs (127.0.0.0/8) are accepted; connections come from 127.0.0.2.. (--source-ips).

One process opens at most ~19,000 sockets (20,000 open files per process): for more
connections run several `idle` generators at once, each with --connections N/K, distinct
--id-offset, the same --hold-secs (long enough for all to be connected together) and
--rss-before-kb / --expect-total set to the server's RSS before the run and the total N.";

#[derive(Subcommand)]
#[command(after_long_help = SERVER_HELP)]
pub enum Scenario {
    /// Open N authenticated connections, hold them, report connect rate and the server's
    /// memory per connection (VmRSS of --server-pid).
    Idle {
        #[command(flatten)]
        common: Common,
        /// Connections this process opens (default 10,000; --quick 500). At most ~18,000.
        #[arg(long)]
        connections: Option<usize>,
        /// Seconds to hold them once all are up; the server's RSS is read at the end.
        #[arg(long)]
        hold_secs: Option<f64>,
        /// The server's RSS (KiB) before any generator connected; default: read at start.
        #[arg(long)]
        rss_before_kb: Option<u64>,
        /// The divisor of the RSS growth: all generators' connections (default: this one's).
        #[arg(long)]
        expect_total: Option<usize>,
    },
    /// Open N connections as fast as possible with --concurrency in flight.
    ConnectRate {
        #[command(flatten)]
        common: Common,
        /// Connections to open (default 10,000; --quick 500). At most ~18,000.
        #[arg(long)]
        connections: Option<usize>,
    },
    /// R rooms × M members, P messages/s in total (one sender per room); deliveries/s and
    /// send→deliver latency. Defaults: 10 × 1,000 at 300/s = 300,000 deliveries/s offered.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        load: RoomLoad,
    },
    /// Like fanout at a fixed delivery rate; send→ack and send→deliver latency. Defaults:
    /// 20 × 50 at 200/s = 10,000 deliveries/s.
    Latency {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        load: RoomLoad,
    },
    /// Publish K messages to a fresh room, then time a new client's `join {since: 0}` until
    /// the last replayed message and the ack. Skipped for the node baseline (no history).
    Catchup {
        #[command(flatten)]
        common: Common,
        /// Messages to publish then replay (default 10,000; --quick 500).
        #[arg(long)]
        messages: Option<usize>,
        /// Sends awaiting their ack while publishing (Tidings allows 64 per connection).
        #[arg(long, default_value_t = 32)]
        window: usize,
    },
    /// Send at a fixed rate to one room while a second client probes `history`: the time from
    /// a message's ack (it is in the log) until the store returns it. Skipped for the node
    /// baseline (no store).
    PersistenceLag {
        #[command(flatten)]
        common: Common,
        /// Messages per second (default 1,000; --quick 100).
        #[arg(long)]
        rate: Option<f64>,
        /// Seconds of sending (default 10; --quick 2).
        #[arg(long)]
        duration_secs: Option<f64>,
        /// Sending connections sharing the rate (each may have 64 sends awaiting acks).
        #[arg(long, default_value_t = 4)]
        writers: usize,
    },
    /// N connections join one room within --spread-secs, then leave it the same way, while
    /// an observer asks `presence {room}`: presence and occupancy events delivered, server
    /// CPU, and how long after the last join (leave) ack the answer is exact. Skipped for
    /// the node baseline (no presence). Defaults: 5,000 over 10 s (--quick 200 over 2 s).
    Presence {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        connections: Option<usize>,
        /// Seconds over which the joins (then the leaves) are spread evenly.
        #[arg(long)]
        spread_secs: Option<f64>,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum Target {
    Tidings,
    Node,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Tidings => "tidings",
            Target::Node => "node",
        }
    }
}

#[derive(Args, Clone)]
pub struct Common {
    /// Which server is behind --url (for the record; `node` skips catchup).
    #[arg(long, value_enum)]
    target: Target,
    /// ws://127.0.0.x:PORT of the server (loopback only).
    #[arg(long)]
    url: String,
    /// A label for the record (e.g. standalone, distributed).
    #[arg(long, default_value = "")]
    label: String,
    /// HS256 key the server verifies tokens with.
    #[arg(long, env = "TIDINGS_JWT_SECRET", default_value = "bench")]
    secret: String,
    /// Spread connections over source addresses 127.0.0.2 .. 127.0.0.(1+K).
    #[arg(long, default_value_t = 8)]
    source_ips: u8,
    /// The server's process ids (several for several processes) for RSS and CPU figures.
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Connection attempts in flight.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Per-connection handshake timeout.
    #[arg(long, default_value_t = 15.0)]
    connect_timeout_secs: f64,
    /// User ids are u<offset+i>: give parallel generators distinct offsets.
    #[arg(long, default_value_t = 0)]
    id_offset: usize,
    /// Small counts and short runs (CI proves the harness; the figures mean nothing).
    #[arg(long)]
    quick: bool,
}

/// The room load of `fanout` and `latency`; unset values take the scenario's defaults.
#[derive(Args, Clone)]
pub struct RoomLoad {
    #[arg(long)]
    rooms: Option<usize>,
    /// Members per room (connections = rooms × members); the first one sends.
    #[arg(long)]
    members: Option<usize>,
    /// Messages per second, in total, spread evenly over the rooms.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of sending (the measurement window).
    #[arg(long)]
    duration_secs: Option<f64>,
    /// Characters of message text (a timestamp, then padding).
    #[arg(long, default_value_t = 64)]
    text_bytes: usize,
    /// Sends awaiting their ack per sender; a tick with the window full is skipped (counted).
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// At most this long after the window for outstanding acks and deliveries.
    #[arg(long, default_value_t = 5.0)]
    drain_secs: f64,
}

pub async fn run(scenario: Scenario) -> Result<()> {
    match scenario {
        Scenario::Idle {
            common,
            connections,
            hold_secs,
            rss_before_kb,
            expect_total,
        } => {
            let n = connections.unwrap_or(if common.quick { 500 } else { 10_000 });
            let hold = hold_secs.unwrap_or(if common.quick { 1.0 } else { 5.0 });
            idle(&common, n, hold, rss_before_kb, expect_total).await
        }
        Scenario::ConnectRate {
            common,
            connections,
        } => {
            let n = connections.unwrap_or(if common.quick { 500 } else { 10_000 });
            connect_rate(&common, n).await
        }
        Scenario::Fanout { common, load } => {
            let q = common.quick;
            let spec = RoomSpec {
                scenario: "load.fanout",
                rooms: load.rooms.unwrap_or(if q { 5 } else { 10 }),
                members: load.members.unwrap_or(if q { 20 } else { 1000 }),
                rate: load.rate.unwrap_or(if q { 50.0 } else { 300.0 }),
                duration: load.duration_secs.unwrap_or(if q { 2.0 } else { 10.0 }),
                load,
            };
            rooms(&common, spec).await
        }
        Scenario::Latency { common, load } => {
            let q = common.quick;
            let spec = RoomSpec {
                scenario: "load.latency",
                rooms: load.rooms.unwrap_or(if q { 4 } else { 20 }),
                members: load.members.unwrap_or(if q { 10 } else { 50 }),
                rate: load.rate.unwrap_or(if q { 40.0 } else { 200.0 }),
                duration: load.duration_secs.unwrap_or(if q { 2.0 } else { 10.0 }),
                load,
            };
            rooms(&common, spec).await
        }
        Scenario::Catchup {
            common,
            messages,
            window,
        } => {
            let k = messages.unwrap_or(if common.quick { 500 } else { 10_000 });
            catchup(&common, k, window.max(1)).await
        }
        Scenario::PersistenceLag {
            common,
            rate,
            duration_secs,
            writers,
        } => {
            let rate = rate.unwrap_or(if common.quick { 100.0 } else { 1000.0 });
            let secs = duration_secs.unwrap_or(if common.quick { 2.0 } else { 10.0 });
            persistence_lag(&common, rate, secs, writers.max(1)).await
        }
        Scenario::Presence {
            common,
            connections,
            spread_secs,
        } => {
            let n = connections.unwrap_or(if common.quick { 200 } else { 5_000 });
            let spread = spread_secs.unwrap_or(if common.quick { 2.0 } else { 10.0 });
            presence::run(&common, n, spread).await
        }
    }
}

// ---- setup: target, tokens, source addresses, server figures ----

/// `ws://HOST:PORT[/…]` with HOST in 127.0.0.0/8 (or `localhost`).
fn loopback_addr(url: &str) -> Result<SocketAddr> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| anyhow!("--url must be ws://127.0.0.x:PORT, got {url:?}"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("--url needs a port: {url:?}"))?;
    let ip: Ipv4Addr = if host == "localhost" {
        Ipv4Addr::LOCALHOST
    } else {
        host.parse()
            .with_context(|| format!("--url host must be an IPv4 address: {host:?}"))?
    };
    ensure!(
        ip.is_loopback(),
        "the load generator targets loopback only (127.0.0.0/8), not {ip}"
    );
    Ok(SocketAddr::from((
        ip,
        port.parse::<u16>().context("--url port")?,
    )))
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    name: &'a str,
    exp: u64,
}

fn mint(key: &EncodingKey, sub: &str) -> Result<String> {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 3600;
    Ok(jsonwebtoken::encode(
        &Header::default(),
        &Claims {
            sub,
            name: sub,
            exp,
        },
        key,
    )?)
}

fn source_ip(common: &Common, i: usize) -> Ipv4Addr {
    let k = common.source_ips.clamp(1, 250) as usize;
    Ipv4Addr::new(127, 0, 0, 2 + (i % k) as u8)
}

/// The sum of VmRSS (KiB) of the server processes; None without pids.
fn server_rss_kb(pids: &[u32]) -> Result<Option<u64>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut total = 0;
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status (--server-pid)"))?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))?;
        total += kb;
    }
    Ok(Some(total))
}

/// CPU seconds (user + system) a process has used, from /proc/<pid>/stat (100 ticks/s).
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// CPU seconds of the server processes and of this generator.
fn cpu_now(pids: &[u32]) -> (Option<f64>, Option<f64>) {
    let server = if pids.is_empty() {
        None
    } else {
        pids.iter()
            .map(|p| cpu_secs(&p.to_string()))
            .sum::<Option<f64>>()
    };
    (server, cpu_secs("self"))
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// Quantile in ms of a histogram in µs; null when empty.
fn q_ms(h: &Histogram<u64>, q: f64) -> serde_json::Value {
    if h.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::json!((h.value_at_quantile(q) as f64 / 10.0).round() / 100.0)
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

// ---- shared counters ----

#[derive(Default)]
struct Stats {
    attempted: AtomicUsize,
    connected: AtomicUsize,
    disconnected: AtomicUsize,
    joined: AtomicUsize,
    sent: AtomicU64,
    acked: AtomicU64,
    acked_ok: AtomicU64,
    skipped_ticks: AtomicU64,
    delivered: AtomicU64,
    delivered_in_window: AtomicU64,
    connect_errors: Mutex<BTreeMap<String, u64>>,
    /// Non-ok acks by event and code ("join:invalid", "send:rate_limited").
    ack_errors: Mutex<BTreeMap<String, u64>>,
    first_error: Mutex<Option<String>>,
}

impl Stats {
    fn count(map: &Mutex<BTreeMap<String, u64>>, key: String) {
        if let Ok(mut map) = map.lock() {
            *map.entry(key).or_default() += 1;
        }
    }

    fn note(&self, error: String) {
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(error);
        }
    }

    fn errors_json(&self) -> serde_json::Value {
        let connect = self
            .connect_errors
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        let ack = self
            .ack_errors
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        let first = self.first_error.lock().ok().and_then(|f| f.clone());
        serde_json::json!({
            "connect": connect, "ack": ack,
            "disconnected": self.disconnected.load(Relaxed), "first": first,
        })
    }

    fn error_free(&self) -> bool {
        self.connect_errors.lock().is_ok_and(|m| m.is_empty())
            && self.ack_errors.lock().is_ok_and(|m| m.is_empty())
            && self.disconnected.load(Relaxed) == 0
    }
}

/// What connection tasks are told to do.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Phase {
    Setup,
    Run { end: Instant },
    Stop,
}

/// Polls `done` every 5 ms until it holds or `timeout` passes; whether it held.
async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Opens `n` connections, `--concurrency` at a time, each in its own task that then runs
/// `role(i, client)`. Returns once every attempt finished, with the tasks and the time taken.
async fn open_all<F, Fut>(
    common: &Common,
    n: usize,
    stats: &Arc<Stats>,
    role: F,
) -> Result<(Vec<JoinHandle<()>>, Duration)>
where
    F: Fn(usize, Client) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let server = loopback_addr(&common.url)?;
    let key = EncodingKey::from_secret(common.secret.as_bytes());
    let permits = Arc::new(Semaphore::new(common.concurrency.max(1)));
    let timeout = Duration::from_secs_f64(common.connect_timeout_secs);
    let role = Arc::new(role);
    let mut tasks = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let permit = permits.clone().acquire_owned().await?;
        let token = mint(&key, &format!("u{}", common.id_offset + i))?;
        let source = source_ip(common, i);
        let stats = stats.clone();
        let role = role.clone();
        tasks.push(tokio::spawn(async move {
            let result =
                tokio::time::timeout(timeout, Client::connect(server, source, &token)).await;
            drop(permit);
            let client = match result {
                Ok(Ok(client)) => Some(client),
                Ok(Err(e)) => {
                    Stats::count(&stats.connect_errors, e.kind());
                    stats.note(format!("connect from {source}: {e}"));
                    None
                }
                Err(_) => {
                    Stats::count(&stats.connect_errors, "timeout".into());
                    None
                }
            };
            if client.is_some() {
                stats.connected.fetch_add(1, Relaxed);
            }
            stats.attempted.fetch_add(1, Relaxed);
            if let Some(client) = client {
                role(i, client).await;
            }
        }));
    }
    wait_until(timeout + Duration::from_secs(5), || {
        stats.attempted.load(Relaxed) >= n
    })
    .await;
    Ok((tasks, started.elapsed()))
}

/// Holds a connection (answering pings) until told to stop.
async fn hold(mut client: Client, mut phase: watch::Receiver<Phase>, stats: Arc<Stats>) {
    loop {
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow_and_update() == Phase::Stop {
                    return;
                }
            }
            frame = client.next_text() => {
                if !matches!(frame, Ok(Some(_))) {
                    stats.disconnected.fetch_add(1, Relaxed);
                    return;
                }
            }
        }
    }
}

async fn finish(phase: &watch::Sender<Phase>, tasks: Vec<JoinHandle<()>>) {
    let _ = phase.send(Phase::Stop);
    let all = futures::future::join_all(tasks);
    let _ = tokio::time::timeout(Duration::from_secs(30), all).await;
}

fn emit_record(mut record: serde_json::Value, common: &Common, line: String) {
    if let Some(map) = record.as_object_mut() {
        map.insert("target".into(), common.target.name().into());
        if !common.label.is_empty() {
            map.insert("label".into(), common.label.clone().into());
        }
        map.insert("url".into(), common.url.clone().into());
    }
    crate::report(record);
    eprintln!("{line}");
}

// ---- idle and connect-rate ----

async fn idle(
    common: &Common,
    n: usize,
    hold_secs: f64,
    rss_before_kb: Option<u64>,
    expect_total: Option<usize>,
) -> Result<()> {
    let before = match rss_before_kb {
        Some(kb) => Some(kb),
        None => server_rss_kb(&common.server_pid)?,
    };
    let stats = Arc::new(Stats::default());
    let (phase_tx, phase) = watch::channel(Phase::Setup);
    let s = stats.clone();
    let (tasks, took) = open_all(common, n, &stats, move |_, client| {
        hold(client, phase.clone(), s.clone())
    })
    .await?;
    let connected = stats.connected.load(Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(hold_secs)).await;
    let held = connected - stats.disconnected.load(Relaxed);
    let after = server_rss_kb(&common.server_pid)?;
    finish(&phase_tx, tasks).await;

    let divisor = expect_total.unwrap_or(held).max(1);
    let per_conn = match (before, after) {
        (Some(b), Some(a)) => Some(((a as f64 - b as f64) * 1024.0 / divisor as f64).round()),
        _ => None,
    };
    let rate = (connected as f64 / took.as_secs_f64()).round();
    let ok = stats.error_free() && held == n;
    emit_record(
        serde_json::json!({
            "scenario": "load.idle", "connections": n, "held": held,
            "connect_secs": (took.as_secs_f64() * 100.0).round() / 100.0, "connects_per_s": rate,
            "hold_secs": hold_secs, "source_ips": common.source_ips,
            "server_rss_before_kb": before, "server_rss_after_kb": after,
            "server_bytes_per_conn": per_conn, "divisor": divisor,
            "errors": stats.errors_json(), "ok": ok,
        }),
        common,
        format!(
            "idle {}: held {held}/{n}, {rate} conn/s, server {} bytes/conn{}",
            common.target.name(),
            per_conn.map_or("?".into(), |b| b.to_string()),
            if ok { "" } else { " (ERRORS)" }
        ),
    );
    Ok(())
}

async fn connect_rate(common: &Common, n: usize) -> Result<()> {
    let stats = Arc::new(Stats::default());
    let (phase_tx, phase) = watch::channel(Phase::Setup);
    let s = stats.clone();
    let (tasks, took) = open_all(common, n, &stats, move |_, client| {
        hold(client, phase.clone(), s.clone())
    })
    .await?;
    finish(&phase_tx, tasks).await;
    let connected = stats.connected.load(Relaxed);
    let rate = (connected as f64 / took.as_secs_f64()).round();
    let ok = stats.error_free() && connected == n;
    emit_record(
        serde_json::json!({
            "scenario": "load.connect_rate", "connections": n, "connected": connected,
            "concurrency": common.concurrency, "secs": (took.as_secs_f64() * 1000.0).round() / 1000.0,
            "connects_per_s": rate, "errors": stats.errors_json(), "ok": ok,
        }),
        common,
        format!(
            "connect-rate {}: {connected}/{n} in {:.2} s = {rate} conn/s{}",
            common.target.name(),
            took.as_secs_f64(),
            if ok { "" } else { " (ERRORS)" }
        ),
    );
    Ok(())
}

// ---- fanout and latency ----

struct RoomSpec {
    scenario: &'static str,
    rooms: usize,
    members: usize,
    /// Messages per second in total.
    rate: f64,
    duration: f64,
    load: RoomLoad,
}

#[derive(Deserialize)]
struct AckBody {
    ok: bool,
    #[serde(default)]
    error: Option<AckError>,
    #[serde(default)]
    head: Option<u64>,
    /// A send's ack.
    #[serde(default)]
    seq: Option<u64>,
}

#[derive(Deserialize)]
struct AckError {
    code: String,
}

/// The first argument of an ack: `Ok(head)` or `Err(code)`.
fn ack_result(args: &str) -> Result<Option<u64>, String> {
    match serde_json::from_str::<(AckBody,)>(args) {
        Ok((body,)) if body.ok => Ok(body.head),
        Ok((body,)) => Err(body.error.map_or_else(|| "unknown".into(), |e| e.code)),
        Err(_) => Err("malformed_ack".into()),
    }
}

/// The send stamp (ns since the generator's origin) at the start of a `message`'s text, without
/// parsing the whole event: `["message",{…"text":"<ns> …"…}]`.
fn message_stamp(args: &str) -> Option<u64> {
    if !args.starts_with("[\"message\",") {
        return None;
    }
    let at = args.find("\"text\":\"")? + 8;
    let digits = args[at..].bytes().take_while(u8::is_ascii_digit).count();
    args[at..at + digits].parse().ok()
}

struct Shared {
    origin: Instant,
    stats: Arc<Stats>,
    ack_latency: Mutex<Histogram<u64>>,
    deliver_latency: Mutex<Histogram<u64>>,
}

impl Shared {
    fn flush(&self, samples: &mut Vec<u64>) {
        if let Ok(mut h) = self.deliver_latency.lock() {
            for &us in samples.iter() {
                h.saturating_record(us.max(1));
            }
        }
        samples.clear();
    }
}

struct Member {
    index: usize,
    room: Arc<str>,
    /// Some for the room's sender: its interval between sends.
    send_every: Option<Duration>,
    padding: Arc<str>,
    window: usize,
}

#[derive(Serialize)]
struct SendBody<'a> {
    room: &'a str,
    id: &'a str,
    text: &'a str,
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// A room member: joins, then (when told to run) receives and, if it is the sender, sends at
/// its rate with at most `window` sends awaiting acks.
async fn member(
    mut client: Client,
    m: Member,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
) {
    let stats = &shared.stats;
    let Ok(join_ack) = client
        .emit("join", &serde_json::json!({ "room": &*m.room }))
        .await
    else {
        stats.disconnected.fetch_add(1, Relaxed);
        return;
    };
    let mut end: Option<Instant> = None;
    let mut interval: Option<tokio::time::Interval> = None;
    let mut in_flight: HashMap<u64, u64> = HashMap::new();
    let mut sent = 0u64;
    let mut samples: Vec<u64> = Vec::new();
    loop {
        let sending = interval.is_some() && end.is_some_and(|e| Instant::now() < e);
        tokio::select! {
            biased;
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
                match *phase.borrow_and_update() {
                    Phase::Stop => break,
                    Phase::Setup => {}
                    Phase::Run { end: e } => {
                        end = Some(e);
                        if let Some(every) = m.send_every {
                            // Spread the senders' ticks over one interval.
                            let offset = every.mul_f64((m.index % 101) as f64 / 101.0);
                            let mut i = tokio::time::interval_at((Instant::now() + offset).into(), every);
                            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                            interval = Some(i);
                        }
                    }
                }
            }
            _ = tick(&mut interval), if sending => {
                // The tick may fire just after the window closed (`sending` was computed
                // before the wait): a send then would race the drain that follows.
                if end.is_none_or(|e| Instant::now() >= e) {
                    interval = None;
                    continue;
                }
                if in_flight.len() >= m.window {
                    stats.skipped_ticks.fetch_add(1, Relaxed);
                    continue;
                }
                let stamp = shared.origin.elapsed().as_nanos() as u64;
                let id = format!("{}-{sent}", m.index);
                let text = format!("{stamp} {}", m.padding);
                let body = SendBody { room: &m.room, id: &id, text: &text };
                // Counted before the write, so the drain never sees an emitted send missing.
                stats.sent.fetch_add(1, Relaxed);
                sent += 1;
                match client.emit("send", &body).await {
                    Ok(ack) => {
                        in_flight.insert(ack, stamp);
                    }
                    Err(e) => {
                        stats.note(format!("send: {e}"));
                        stats.disconnected.fetch_add(1, Relaxed);
                        break;
                    }
                }
            }
            frame = client.next_text() => {
                let text = match frame {
                    Ok(Some(text)) => text,
                    other => {
                        if let Err(e) = other {
                            stats.note(format!("read: {e}"));
                        }
                        stats.disconnected.fetch_add(1, Relaxed);
                        break;
                    }
                };
                match sio::decode(&text) {
                    Ok(Packet::Event { args, .. }) => {
                        if let Some(stamp) = message_stamp(args) {
                            let now = shared.origin.elapsed().as_nanos() as u64;
                            samples.push(now.saturating_sub(stamp) / 1000);
                            stats.delivered.fetch_add(1, Relaxed);
                            if end.is_some_and(|e| Instant::now() < e) {
                                stats.delivered_in_window.fetch_add(1, Relaxed);
                            }
                            if samples.len() >= 256 {
                                shared.flush(&mut samples);
                            }
                        }
                    }
                    Ok(Packet::Ack { id, args }) if id == join_ack => match ack_result(args) {
                        Ok(_) => {
                            stats.joined.fetch_add(1, Relaxed);
                        }
                        Err(code) => {
                            Stats::count(&stats.ack_errors, format!("join:{code}"));
                            break;
                        }
                    },
                    Ok(Packet::Ack { id, args }) => {
                        if let Some(stamp) = in_flight.remove(&id) {
                            let now = shared.origin.elapsed().as_nanos() as u64;
                            if let Ok(mut h) = shared.ack_latency.lock() {
                                h.saturating_record((now.saturating_sub(stamp) / 1000).max(1));
                            }
                            stats.acked.fetch_add(1, Relaxed);
                            match ack_result(args) {
                                Ok(_) => {
                                    stats.acked_ok.fetch_add(1, Relaxed);
                                }
                                Err(code) => Stats::count(&stats.ack_errors, format!("send:{code}")),
                            }
                        }
                    }
                    Ok(Packet::Disconnect | Packet::Close) => {
                        stats.disconnected.fetch_add(1, Relaxed);
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => stats.note(format!("decode: {e}: {}", text.chars().take(80).collect::<String>())),
                }
            }
        }
    }
    shared.flush(&mut samples);
}

async fn rooms(common: &Common, spec: RoomSpec) -> Result<()> {
    ensure!(
        spec.rooms > 0 && spec.members > 0 && spec.rate > 0.0,
        "rooms, members and rate must be positive"
    );
    let n = spec.rooms * spec.members;
    ensure!(
        n <= 18_000,
        "{n} connections: one process opens at most ~18,000"
    );
    let run = uuid::Uuid::new_v4().simple().to_string();
    let room_names: Vec<Arc<str>> = (0..spec.rooms)
        .map(|r| Arc::from(format!("bench-{}-{r}", &run[..8])))
        .collect();
    let send_every = Duration::from_secs_f64(spec.rooms as f64 / spec.rate);
    let padding: Arc<str> = Arc::from("x".repeat(spec.load.text_bytes.saturating_sub(20)));
    let stats = Arc::new(Stats::default());
    let shared = Arc::new(Shared {
        origin: Instant::now(),
        stats: stats.clone(),
        ack_latency: Mutex::new(histogram()),
        deliver_latency: Mutex::new(histogram()),
    });
    let (phase_tx, phase) = watch::channel(Phase::Setup);
    let members = spec.members;
    let window = spec.load.window.max(1);
    let sh = shared.clone();
    let (tasks, took) = open_all(common, n, &stats, move |i, client| {
        let m = Member {
            index: i,
            room: room_names[i / members].clone(),
            send_every: (i % members == 0).then_some(send_every),
            padding: padding.clone(),
            window,
        };
        member(client, m, sh.clone(), phase.clone())
    })
    .await?;
    let connected = stats.connected.load(Relaxed);
    let all_joined = wait_until(Duration::from_secs(30), || {
        let s = &stats;
        let failed = s
            .ack_errors
            .lock()
            .map_or(0, |m| m.values().sum::<u64>() as usize);
        s.joined.load(Relaxed) + failed + s.disconnected.load(Relaxed) >= connected
    })
    .await;
    if !all_joined {
        stats.note("not every member joined within 30 s".into());
    }

    let (server_cpu0, own_cpu0) = cpu_now(&common.server_pid);
    let started = Instant::now();
    let window_end = started + Duration::from_secs_f64(spec.duration);
    let _ = phase_tx.send(Phase::Run { end: window_end });
    tokio::time::sleep_until(window_end.into()).await;
    let (server_cpu1, own_cpu1) = cpu_now(&common.server_pid);
    let in_window = stats.delivered_in_window.load(Relaxed);
    // Drain: outstanding acks, and a delivery to every member for each accepted send.
    let joined = stats.joined.load(Relaxed) as u64;
    let drained = wait_until(Duration::from_secs_f64(spec.load.drain_secs), || {
        let sent = stats.sent.load(Relaxed);
        let acked = stats.acked.load(Relaxed);
        let expected = stats.acked_ok.load(Relaxed) * spec.members as u64;
        acked >= sent && stats.delivered.load(Relaxed) >= expected
    })
    .await;
    finish(&phase_tx, tasks).await;

    let sent = stats.sent.load(Relaxed);
    let acked_ok = stats.acked_ok.load(Relaxed);
    let delivered = stats.delivered.load(Relaxed);
    let expected = acked_ok * spec.members as u64;
    let lost = expected.saturating_sub(delivered);
    let unacked = sent.saturating_sub(stats.acked.load(Relaxed));
    let deliveries_per_s = (in_window as f64 / spec.duration).round();
    let offered = spec.rate * spec.members as f64;
    let cpu = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some(round1((b - a) / spec.duration * 100.0)),
        _ => None,
    };
    let ack = shared
        .ack_latency
        .lock()
        .map_err(|_| anyhow!("poisoned"))?
        .clone();
    let deliver = shared
        .deliver_latency
        .lock()
        .map_err(|_| anyhow!("poisoned"))?
        .clone();
    let ok = stats.error_free()
        && all_joined
        && drained
        && lost == 0
        && unacked == 0
        && joined == n as u64
        && sent > 0;
    emit_record(
        serde_json::json!({
            "scenario": spec.scenario, "rooms": spec.rooms, "members": spec.members,
            "connections": n, "joined": joined, "connect_secs": (took.as_secs_f64() * 100.0).round() / 100.0,
            "rate_msgs_per_s": spec.rate, "duration_secs": spec.duration, "text_bytes": spec.load.text_bytes,
            "offered_deliveries_per_s": offered.round(), "deliveries_per_s": deliveries_per_s,
            "sent": sent, "acked_ok": acked_ok, "unacked": unacked, "skipped_ticks": stats.skipped_ticks.load(Relaxed),
            "delivered": delivered, "expected_deliveries": expected, "lost": lost,
            "send_ack_p50_ms": q_ms(&ack, 0.5), "send_ack_p99_ms": q_ms(&ack, 0.99),
            "send_ack_p999_ms": q_ms(&ack, 0.999), "send_ack_max_ms": q_ms(&ack, 1.0),
            "deliver_p50_ms": q_ms(&deliver, 0.5), "deliver_p99_ms": q_ms(&deliver, 0.99),
            "deliver_p999_ms": q_ms(&deliver, 0.999), "deliver_max_ms": q_ms(&deliver, 1.0),
            "server_cpu_percent": cpu(server_cpu0, server_cpu1), "generator_cpu_percent": cpu(own_cpu0, own_cpu1),
            "errors": stats.errors_json(), "ok": ok,
        }),
        common,
        format!(
            "{} {}: {}×{} at {}/s: {deliveries_per_s} deliveries/s (offered {}), deliver p50 {} p99 {} p99.9 {} ms, ack p50 {} p99 {} ms, lost {lost}{}",
            spec.scenario.trim_start_matches("load."),
            common.target.name(),
            spec.rooms,
            spec.members,
            spec.rate,
            offered.round(),
            q_ms(&deliver, 0.5),
            q_ms(&deliver, 0.99),
            q_ms(&deliver, 0.999),
            q_ms(&ack, 0.5),
            q_ms(&ack, 0.99),
            if ok { "" } else { " (ERRORS)" }
        ),
    );
    Ok(())
}

// ---- catchup ----

#[derive(Deserialize)]
struct MessageSeq {
    seq: u64,
}

/// Reads frames until `ack_id`'s ack; events go to `on_event`.
async fn await_ack(
    client: &mut Client,
    ack_id: u64,
    on_event: impl FnMut(&str),
) -> Result<Result<Option<u64>, String>> {
    Ok(ack_result(&await_ack_args(client, ack_id, on_event).await?))
}

/// Reads frames until `ack_id`'s ack and returns its arguments; events go to `on_event`.
async fn await_ack_args(
    client: &mut Client,
    ack_id: u64,
    mut on_event: impl FnMut(&str),
) -> Result<String> {
    loop {
        let text = client
            .next_text()
            .await?
            .ok_or_else(|| anyhow!("the server closed the connection"))?;
        match sio::decode(&text) {
            Ok(Packet::Ack { id, args }) if id == ack_id => return Ok(args.to_string()),
            Ok(Packet::Event { args, .. }) => on_event(args),
            Ok(Packet::Disconnect | Packet::Close) => bail!("disconnected by the server"),
            _ => {}
        }
    }
}

async fn catchup(common: &Common, k: usize, window: usize) -> Result<()> {
    if common.target == Target::Node {
        emit_record(
            serde_json::json!({"scenario": "load.catchup", "messages": k, "skipped": "no history in the baseline", "ok": true}),
            common,
            "catchup node: skipped (no history in the baseline)".into(),
        );
        return Ok(());
    }
    let server = loopback_addr(&common.url)?;
    let key = EncodingKey::from_secret(common.secret.as_bytes());
    let room = format!(
        "catchup-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let limit = Duration::from_secs(120);
    let stats = Stats::default();

    // Publish K messages with `window` sends awaiting acks.
    let writer_token = mint(&key, &format!("u{}", common.id_offset))?;
    let mut writer = Client::connect(server, source_ip(common, 0), &writer_token).await?;
    let join = writer
        .emit("join", &serde_json::json!({ "room": room }))
        .await?;
    if let Err(code) = await_ack(&mut writer, join, |_| {}).await? {
        bail!("writer join: {code}");
    }
    let text = "x".repeat(64);
    let published = Instant::now();
    let publish = async {
        let mut pending = std::collections::HashSet::new();
        let mut sent = 0usize;
        while sent < k || !pending.is_empty() {
            while sent < k && pending.len() < window {
                let id = format!("c{sent}");
                let body = SendBody {
                    room: &room,
                    id: &id,
                    text: &text,
                };
                pending.insert(writer.emit("send", &body).await?);
                sent += 1;
            }
            let frame = writer
                .next_text()
                .await?
                .ok_or_else(|| anyhow!("the server closed the writer"))?;
            if let Ok(Packet::Ack { id, args }) = sio::decode(&frame) {
                if pending.remove(&id) {
                    if let Err(code) = ack_result(args) {
                        Stats::count(&stats.ack_errors, format!("send:{code}"));
                    }
                }
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(limit, publish)
        .await
        .map_err(|_| anyhow!("publishing {k} messages took over {limit:?}"))??;
    let publish_secs = published.elapsed().as_secs_f64();

    // A new client replays the room from the start.
    let reader_token = mint(&key, &format!("u{}", common.id_offset + 1))?;
    let mut reader = Client::connect(server, source_ip(common, 1), &reader_token).await?;
    let started = Instant::now();
    let join = reader
        .emit("join", &serde_json::json!({ "room": room, "since": 0 }))
        .await?;
    let mut replayed = 0usize;
    let mut out_of_order = 0usize;
    let mut last_seq = 0u64;
    let mut last_at = started;
    let head = tokio::time::timeout(
        limit,
        await_ack(&mut reader, join, |args| {
            if !args.starts_with("[\"message\",") {
                return;
            }
            match serde_json::from_str::<(&str, MessageSeq)>(args) {
                Ok((_, m)) => {
                    replayed += 1;
                    if m.seq != last_seq + 1 {
                        out_of_order += 1;
                    }
                    last_seq = m.seq;
                    last_at = Instant::now();
                }
                Err(_) => out_of_order += 1,
            }
        }),
    )
    .await
    .map_err(|_| anyhow!("the replay took over {limit:?}"))??;
    let ack_secs = started.elapsed().as_secs_f64();
    let last_secs = last_at.duration_since(started).as_secs_f64();
    let head = match head {
        Ok(head) => head,
        Err(code) => {
            Stats::count(&stats.ack_errors, format!("join:{code}"));
            None
        }
    };
    let rate = (replayed as f64 / last_secs.max(1e-9)).round();
    let ok = stats.error_free() && replayed == k && out_of_order == 0 && head == Some(k as u64);
    emit_record(
        serde_json::json!({
            "scenario": "load.catchup", "messages": k, "replayed": replayed, "head": head,
            "out_of_order": out_of_order,
            "publish_msgs_per_s": (k as f64 / publish_secs).round(), "publish_window": window,
            "replay_last_secs": (last_secs * 10_000.0).round() / 10_000.0,
            "replay_ack_secs": (ack_secs * 10_000.0).round() / 10_000.0,
            "replay_msgs_per_s": rate, "errors": stats.errors_json(), "ok": ok,
        }),
        common,
        format!(
            "catchup {}: {replayed}/{k} replayed in {:.3} s (ack at {:.3} s) = {rate} msg/s; published at {} msg/s{}",
            common.target.name(),
            last_secs,
            ack_secs,
            (k as f64 / publish_secs).round(),
            if ok { "" } else { " (ERRORS)" }
        ),
    );
    Ok(())
}

/// `{"ok":true,"messages":[{…"seq":N…}],…}`: a history page's ack.
#[derive(Deserialize)]
struct HistoryAck {
    ok: bool,
    #[serde(default)]
    messages: Vec<MessageSeq>,
}

/// The newest seq of a `history` ack (0 for an empty room), or the error code.
fn history_newest(args: &str) -> Result<u64, String> {
    match serde_json::from_str::<(HistoryAck,)>(args) {
        Ok((body,)) if body.ok => Ok(body.messages.iter().map(|m| m.seq).max().unwrap_or(0)),
        Ok(_) => Err(ack_result(args).err().unwrap_or_else(|| "unknown".into())),
        Err(_) => Err("malformed_ack".into()),
    }
}

/// The newest acked message: (seq, when its ack arrived).
type Newest = Arc<Mutex<Option<(u64, Instant)>>>;

async fn persistence_lag(common: &Common, rate: f64, secs: f64, writers: usize) -> Result<()> {
    if common.target == Target::Node {
        emit_record(
            serde_json::json!({"scenario": "load.persistence_lag", "skipped": "no store in the baseline", "ok": true}),
            common,
            "persistence-lag node: skipped (no store in the baseline)".into(),
        );
        return Ok(());
    }
    ensure!(
        rate > 0.0 && secs > 0.0,
        "--rate and --duration-secs must be positive"
    );
    let server = loopback_addr(&common.url)?;
    let key = EncodingKey::from_secret(common.secret.as_bytes());
    let room = format!("lag-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let stats = Arc::new(Stats::default());
    let newest: Newest = Arc::new(Mutex::new(None));

    let prober_token = mint(&key, &format!("u{}", common.id_offset))?;
    let mut prober = Client::connect(server, source_ip(common, 0), &prober_token).await?;
    let mut clients = Vec::with_capacity(writers);
    for w in 1..=writers {
        let token = mint(&key, &format!("u{}", common.id_offset + w))?;
        let mut writer = Client::connect(server, source_ip(common, w), &token).await?;
        let join = writer
            .emit("join", &serde_json::json!({ "room": room }))
            .await?;
        if let Err(code) = await_ack(&mut writer, join, |_| {}).await? {
            bail!("writer join: {code}");
        }
        clients.push(writer);
    }

    let window = Duration::from_secs_f64(secs);
    let each = rate / writers as f64;
    let mut senders = tokio::task::JoinSet::new();
    for (w, mut writer) in clients.into_iter().enumerate() {
        let (room, stats, newest) = (room.clone(), stats.clone(), newest.clone());
        senders.spawn(async move {
            send_at_rate(&mut writer, &room, w, each, window, &stats, &newest).await
        });
    }
    let (done_tx, done_rx) = watch::channel(false);
    let all_sent = tokio::spawn(async move {
        let mut sent = 0u64;
        let mut result = Ok(());
        while let Some(joined) = senders.join_next().await {
            match joined.map_err(anyhow::Error::from).and_then(|r| r) {
                Ok(n) => sent += n,
                Err(e) => result = Err(e),
            }
        }
        let _ = done_tx.send(true);
        result.map(|()| sent)
    });

    // Probe: take the newest acked seq, read history until the store has it, repeat. Each
    // sample is (time the store first returned it − time its ack arrived).
    let mut lag = histogram();
    let mut reads = 0u64;
    let mut probed = 0u64;
    let limit = Duration::from_secs(30);
    loop {
        // `finished` first: once it is true, `newest` holds the last ack.
        let finished = *done_rx.borrow();
        let target = *newest.lock().map_err(|_| anyhow!("lock poisoned"))?;
        let Some((seq, acked_at)) = target.filter(|(seq, _)| *seq > probed) else {
            if finished {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        loop {
            ensure!(
                acked_at.elapsed() < limit,
                "seq {seq} was not in the store {limit:?} after its ack"
            );
            let id = prober
                .emit("history", &serde_json::json!({ "room": room, "limit": 1 }))
                .await?;
            reads += 1;
            match history_newest(&await_ack_args(&mut prober, id, |_| {}).await?) {
                Ok(have) if have >= seq => break,
                Ok(_) => tokio::time::sleep(Duration::from_micros(500)).await,
                Err(code) => {
                    Stats::count(&stats.ack_errors, format!("history:{code}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        lag.saturating_record((acked_at.elapsed().as_micros() as u64).max(1));
        probed = seq;
    }
    let sent = all_sent.await??;
    let acked = stats.acked_ok.load(Relaxed);
    let ok = stats.error_free() && acked == sent && probed == sent;
    let line = format!(
        "persistence-lag {}: {rate}/s from {writers} writers for {secs} s, {acked}/{sent} acked, store lag p50 {} p99 {} max {} ms over {} samples{}",
        common.target.name(),
        q_ms(&lag, 0.5),
        q_ms(&lag, 0.99),
        q_ms(&lag, 1.0),
        lag.len(),
        if ok { "" } else { " (ERRORS)" }
    );
    emit_record(
        serde_json::json!({
            "scenario": "load.persistence_lag", "rate_msgs_per_s": rate, "duration_secs": secs,
            "writers": writers, "achieved_msgs_per_s": (sent as f64 / secs).round(),
            "sent": sent, "acked_ok": acked, "last_seq_in_store": probed,
            "samples": lag.len(), "history_reads": reads,
            "lag_p50_ms": q_ms(&lag, 0.5), "lag_p99_ms": q_ms(&lag, 0.99),
            "lag_p999_ms": q_ms(&lag, 0.999), "lag_max_ms": q_ms(&lag, 1.0),
            "errors": stats.errors_json(), "ok": ok,
        }),
        common,
        line,
    );
    Ok(())
}

/// Sends to `room` at `rate` for `window` (at most 64 awaiting acks), then waits for the last
/// acks; publishes each acked seq to `newest`. Returns how many were sent.
async fn send_at_rate(
    client: &mut Client,
    room: &str,
    writer: usize,
    rate: f64,
    window: Duration,
    stats: &Stats,
    newest: &Newest,
) -> Result<u64> {
    const IN_FLIGHT: usize = 64;
    let end = Instant::now() + window;
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut in_flight = std::collections::HashSet::new();
    let mut sent = 0u64;
    let text = "x".repeat(64);
    let drain_limit = end + Duration::from_secs(30);
    while Instant::now() < end || !in_flight.is_empty() {
        ensure!(
            Instant::now() < drain_limit,
            "acks still missing 30 s after the window"
        );
        let sending = Instant::now() < end;
        tokio::select! {
            _ = interval.tick(), if sending => {
                if in_flight.len() >= IN_FLIGHT {
                    stats.skipped_ticks.fetch_add(1, Relaxed);
                    continue;
                }
                let id = format!("p{writer}-{sent}");
                let body = SendBody { room, id: &id, text: &text };
                in_flight.insert(client.emit("send", &body).await?);
                sent += 1;
            }
            _ = tokio::time::sleep(Duration::from_millis(50)), if !sending => {}
            frame = client.next_text() => {
                let text = frame?.ok_or_else(|| anyhow!("the server closed the writer"))?;
                if let Ok(Packet::Ack { id, args }) = sio::decode(&text) {
                    if in_flight.remove(&id) {
                        match serde_json::from_str::<(AckBody,)>(args) {
                            Ok((AckBody { ok: true, seq: Some(seq), .. },)) => {
                                stats.acked_ok.fetch_add(1, Relaxed);
                                let mut n = newest.lock().map_err(|_| anyhow!("lock poisoned"))?;
                                if n.is_none_or(|(s, _)| seq > s) {
                                    *n = Some((seq, Instant::now()));
                                }
                            }
                            _ => Stats::count(&stats.ack_errors, format!("send:{}", ack_result(args).err().unwrap_or_default())),
                        }
                    }
                }
            }
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_loopback_urls() {
        assert!(loopback_addr("ws://127.0.0.1:8080").is_ok());
        assert!(loopback_addr("ws://127.3.4.5:80/socket.io").is_ok());
        assert!(loopback_addr("ws://localhost:1").is_ok());
        assert!(loopback_addr("ws://10.0.0.1:8080").is_err());
        assert!(loopback_addr("ws://example.com:8080").is_err());
        assert!(loopback_addr("http://127.0.0.1:8080").is_err());
        assert!(loopback_addr("ws://127.0.0.1").is_err());
    }

    #[test]
    fn reads_the_stamp_of_a_message() {
        let args =
            r#"["message",{"room":"r","seq":3,"id":"a","from":"u1","text":"123456 xxxx","ts":1}]"#;
        assert_eq!(message_stamp(args), Some(123456));
        assert_eq!(message_stamp(r#"["typing",{"text":"1"}]"#), None);
        assert_eq!(message_stamp(r#"["message",{"text":"hello"}]"#), None);
    }

    #[test]
    fn reads_the_newest_seq_of_a_history_page() {
        let page = r#"[{"ok":true,"messages":[{"room":"r","seq":7},{"room":"r","seq":9}],"has_more":true}]"#;
        assert_eq!(history_newest(page), Ok(9));
        assert_eq!(history_newest(r#"[{"ok":true,"messages":[]}]"#), Ok(0));
        assert_eq!(
            history_newest(r#"[{"ok":false,"error":{"code":"invalid"}}]"#),
            Err("invalid".to_string())
        );
        assert_eq!(history_newest("nonsense"), Err("malformed_ack".to_string()));
    }

    #[test]
    fn reads_acks() {
        assert_eq!(
            ack_result(r#"[{"ok":true,"room":"r","head":7}]"#),
            Ok(Some(7))
        );
        assert_eq!(ack_result(r#"[{"ok":true,"seq":1,"ts":2}]"#), Ok(None));
        assert_eq!(
            ack_result(
                r#"[{"ok":false,"error":{"code":"rate_limited","message":"x","retry_after_ms":5}}]"#
            ),
            Err("rate_limited".into())
        );
        assert_eq!(ack_result("[1]"), Err("malformed_ack".into()));
    }

    #[test]
    fn mints_tokens_and_spreads_sources() {
        let key = EncodingKey::from_secret(b"k");
        let token = mint(&key, "u1").unwrap_or_default();
        assert_eq!(token.split('.').count(), 3);
        let common = Common {
            target: Target::Tidings,
            url: "ws://127.0.0.1:1".into(),
            label: String::new(),
            secret: "k".into(),
            source_ips: 3,
            server_pid: vec![],
            concurrency: 1,
            connect_timeout_secs: 1.0,
            id_offset: 0,
            quick: true,
        };
        assert_eq!(source_ip(&common, 0), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source_ip(&common, 4), Ipv4Addr::new(127, 0, 0, 3));
    }
}
