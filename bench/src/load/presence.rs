//! `load presence`: a join storm and a leave storm in one room, and what presence makes of
//! them. Every member counts the `presence` and `occupancy` events it is sent; an observer
//! asks `presence {room}` until the count is exact after each storm.

use super::sio::{self, Client, Packet};
use super::{
    await_ack_args, cpu_now, emit_record, loopback_addr, mint, open_all, round1, source_ip,
    wait_until, Common, Stats, Target,
};
use anyhow::{bail, Result};
use jsonwebtoken::EncodingKey;
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Step {
    Setup,
    /// Join at start + i × spread / n.
    Join(Instant),
    Leave(Instant),
    Stop,
}

#[derive(Default)]
struct Counts {
    joined: AtomicU64,
    left: AtomicU64,
    presence: AtomicU64,
    occupancy: AtomicU64,
}

#[derive(Deserialize)]
struct PresenceAck {
    ok: bool,
    #[serde(default)]
    count: u64,
}

pub async fn run(common: &Common, n: usize, spread_secs: f64) -> Result<()> {
    if common.target == Target::Node {
        emit_record(
            serde_json::json!({"scenario": "load.presence", "skipped": "no presence in the baseline", "ok": true}),
            common,
            "presence node: skipped (no presence in the baseline)".into(),
        );
        return Ok(());
    }
    let server = loopback_addr(&common.url)?;
    let key = EncodingKey::from_secret(common.secret.as_bytes());
    let room: Arc<str> =
        format!("crowd-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]).into();
    let spread = Duration::from_secs_f64(spread_secs);

    // The observer is in the room first: it sees the whole storm.
    let token = mint(&key, &format!("u{}", common.id_offset + n))?;
    let mut observer = Client::connect(server, source_ip(common, n), &token).await?;
    let id = observer
        .emit("join", &serde_json::json!({ "room": &*room }))
        .await?;
    if let Err(code) = super::ack_result(&await_ack_args(&mut observer, id, |_| {}).await?) {
        bail!("observer join: {code}");
    }

    let stats = Arc::new(Stats::default());
    let counts = Arc::new(Counts::default());
    let (step_tx, step) = watch::channel(Step::Setup);
    let (c, r, s) = (counts.clone(), room.clone(), stats.clone());
    let (tasks, _) = open_all(common, n, &stats, move |i, client| {
        member(
            i,
            n,
            spread,
            client,
            step.clone(),
            s.clone(),
            c.clone(),
            r.clone(),
        )
    })
    .await?;
    let connected = stats.connected.load(Relaxed) as u64;

    let cpu_before = cpu_now(&common.server_pid).0;
    let started = Instant::now();
    let _ = step_tx.send(Step::Join(started));
    let limit = spread + Duration::from_secs(60);
    wait_until(limit, || counts.joined.load(Relaxed) >= connected).await;
    let joins_done = started.elapsed();
    let exact_join = exact_after(&mut observer, &room, connected + 1, limit).await?;
    let events_after_join = counts.presence.load(Relaxed) + counts.occupancy.load(Relaxed);

    let leave_start = Instant::now();
    let _ = step_tx.send(Step::Leave(leave_start));
    wait_until(limit, || counts.left.load(Relaxed) >= connected).await;
    let leaves_done = leave_start.elapsed();
    let exact_leave = exact_after(&mut observer, &room, 1, limit).await?;
    // Late occupancy counts (at most one a second) still arrive after the answer is exact.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cpu_after = cpu_now(&common.server_pid).0;
    let total_secs = started.elapsed().as_secs_f64();
    let _ = step_tx.send(Step::Stop);
    let _ = tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(tasks)).await;

    let (joined, left) = (counts.joined.load(Relaxed), counts.left.load(Relaxed));
    let (presence, occupancy) = (
        counts.presence.load(Relaxed),
        counts.occupancy.load(Relaxed),
    );
    let cpu = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) => Some(round1((a - b) * 1000.0) / 1000.0),
        _ => None,
    };
    let ok = stats.error_free()
        && connected == n as u64
        && joined == connected
        && left == connected
        && exact_join.is_some()
        && exact_leave.is_some();
    let ms = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 10_000.0).round() / 10.0);
    emit_record(
        serde_json::json!({
            "scenario": "load.presence", "connections": n, "joined": joined, "left": left,
            "spread_secs": spread_secs,
            "joins_secs": round1(joins_done.as_secs_f64() * 10.0) / 10.0,
            "leaves_secs": round1(leaves_done.as_secs_f64() * 10.0) / 10.0,
            "exact_after_joins_ms": ms(exact_join), "exact_after_leaves_ms": ms(exact_leave),
            "presence_events": presence, "occupancy_events": occupancy,
            "events_during_joins": events_after_join,
            "events_per_s": (((presence + occupancy) as f64) / total_secs).round(),
            "server_cpu_secs": cpu,
            "server_cpu_us_per_join_or_leave": cpu.map(|c| (c * 1e6 / (2 * connected.max(1)) as f64).round()),
            "errors": stats.errors_json(), "ok": ok,
        }),
        common,
        format!(
            "presence {}: {joined} joins in {:.1} s, {left} leaves in {:.1} s; exact {} / {} ms after; {presence} presence + {occupancy} occupancy events delivered; server CPU {} s{}",
            common.target.name(),
            joins_done.as_secs_f64(),
            leaves_done.as_secs_f64(),
            ms(exact_join).map_or("never".into(), |v| v.to_string()),
            ms(exact_leave).map_or("never".into(), |v| v.to_string()),
            cpu.map_or("?".into(), |c| c.to_string()),
            if ok { "" } else { " (ERRORS)" }
        ),
    );
    Ok(())
}

/// Asks `presence {room}` until it says `want`; how long that took, or None past `limit`.
async fn exact_after(
    observer: &mut Client,
    room: &str,
    want: u64,
    limit: Duration,
) -> Result<Option<Duration>> {
    let started = Instant::now();
    while started.elapsed() < limit {
        let id = observer
            .emit("presence", &serde_json::json!({ "room": room }))
            .await?;
        let args = await_ack_args(observer, id, |_| {}).await?;
        if let Ok((ack,)) = serde_json::from_str::<(PresenceAck,)>(&args) {
            if ack.ok && ack.count == want {
                return Ok(Some(started.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(None)
}

#[allow(clippy::too_many_arguments)]
async fn member(
    i: usize,
    n: usize,
    spread: Duration,
    mut client: Client,
    mut step: watch::Receiver<Step>,
    stats: Arc<Stats>,
    counts: Arc<Counts>,
    room: Arc<str>,
) {
    let offset = spread.mul_f64(i as f64 / n.max(1) as f64);
    let mut due: Option<(Instant, &'static str)> = None;
    let mut waiting: Option<(u64, &'static str)> = None;
    loop {
        let at = due.map(|(t, _)| t);
        tokio::select! {
            changed = step.changed() => {
                if changed.is_err() {
                    return;
                }
                match *step.borrow_and_update() {
                    Step::Join(start) => due = Some((start + offset, "join")),
                    Step::Leave(start) => due = Some((start + offset, "leave")),
                    Step::Stop => return,
                    Step::Setup => {}
                }
            }
            _ = async {
                match at {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            } => {
                let Some((_, what)) = due.take() else { continue };
                match client.emit(what, &serde_json::json!({ "room": &*room })).await {
                    Ok(id) => waiting = Some((id, what)),
                    Err(_) => {
                        stats.disconnected.fetch_add(1, Relaxed);
                        return;
                    }
                }
            }
            frame = client.next_text() => {
                let Ok(Some(text)) = frame else {
                    stats.disconnected.fetch_add(1, Relaxed);
                    return;
                };
                match sio::decode(&text) {
                    Ok(Packet::Event { args, .. }) if args.starts_with("[\"presence\"") => {
                        counts.presence.fetch_add(1, Relaxed);
                    }
                    Ok(Packet::Event { args, .. }) if args.starts_with("[\"occupancy\"") => {
                        counts.occupancy.fetch_add(1, Relaxed);
                    }
                    Ok(Packet::Ack { id, args }) if waiting.is_some_and(|(w, _)| w == id) => {
                        let what = waiting.take().map_or("?", |(_, w)| w);
                        match super::ack_result(args) {
                            Ok(_) if what == "join" => { counts.joined.fetch_add(1, Relaxed); }
                            Ok(_) => { counts.left.fetch_add(1, Relaxed); }
                            Err(code) => Stats::count(&stats.ack_errors, format!("{what}:{code}")),
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
