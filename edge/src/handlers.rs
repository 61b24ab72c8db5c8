//! The Socket.IO side: the auth middleware, the connect handler, one handler per client event
//! (each acks exactly once), and the disconnect handler.

use crate::admission::UserSlot;
use crate::auth::Claims;
use crate::catchup;
use crate::conn::{Conn, Identity, Limits};
use crate::deliveries::{fill, SendOutcome};
use crate::errors::{ok_ack, ClientError};
use crate::limits::{check_event_size, check_rooms, check_text, TokenBucket};
use crate::order::Turn;
use crate::presence;
use crate::protocol::{self, approx_json_size};
use crate::rooms::Member;
use crate::state::{now_ms, Shared};
use crate::users;
use crate::wire::Wire;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tidings_log::{topics, OutRecord};
use tidings_schemas::{ClientEvent, LogRecord};

/// A refused connection's connect error; its text is the error code (`unauthorized` for a
/// missing, bad or expired token, `rate_limited` for a user over their connection cap).
#[derive(Debug)]
pub struct Refused(&'static str);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Registers the `/` namespace.
pub fn register(io: &SocketIo, shared: Arc<Shared>) {
    let middleware = move |s: SocketRef, TryData(auth): TryData<Value>| {
        let shared = shared.clone();
        async move {
            let verified = shared.verifier.verify_auth(auth.ok().as_ref()).await;
            let claims = match verified.and_then(|c| crate::revocations::unrevoked(&shared, c)) {
                Ok(claims) => claims,
                Err(e) => {
                    tracing::debug!("refused connection: {e}");
                    shared.metrics.error("unauthorized");
                    shared
                        .metrics
                        .refused
                        .with_label_values(&["unauthorized"])
                        .inc();
                    return Err(Refused("unauthorized"));
                }
            };
            let Some(user_slot) = shared.admission.join_user(&claims.sub) else {
                shared
                    .metrics
                    .refused
                    .with_label_values(&["user_connections"])
                    .inc();
                return Err(Refused("rate_limited"));
            };
            // Handlers are registered here, before the client is told it is connected:
            // socketioxide sends CONNECT and only then spawns the connect handler, so an
            // event sent right after `connect` (a page's first join) could otherwise arrive
            // before its handler exists and never be acked.
            on_connect(shared, s, claims, user_slot);
            Ok(())
        }
    };
    let connect = async |_: SocketRef| {};
    io.ns("/", connect.with(middleware));
}

fn on_connect(shared: Arc<Shared>, s: SocketRef, claims: Claims, user_slot: UserSlot) {
    let limits = Limits {
        bucket: TokenBucket::new(shared.config.events_per_sec, shared.config.events_burst),
        user: user_slot,
        max_out_bytes: shared.config.max_out_bytes,
    };
    let access = match claims.access() {
        Ok(access) => access,
        Err(e) => {
            // verify() checked the claims already; kept safe rather than trusted.
            tracing::warn!("connection with unusable claims: {e}");
            s.disconnect().ok();
            return;
        }
    };
    let deadline = shared.verifier.deadline_ms(&claims);
    let jti = claims.jti.clone();
    let who = Identity {
        user: claims.sub,
        name: claims.name,
        access,
        jti: claims.jti,
    };
    let conn = Arc::new(Conn::new(s.clone(), who, limits, shared.metrics.clone()));
    shared.metrics.connections.inc();
    // Ended at its token's `exp` plus the leeway, unless a `refresh` moves it.
    shared.expiry.schedule(&conn, deadline);
    // Count this session's output on the TCP connection that carries it: the one it was
    // opened on (a direct WebSocket), and any later request naming it (polling, upgrade).
    shared.sessions.insert(&conn.id, conn.out.clone());
    if let Some(wire) = s.req_parts().extensions.get::<Arc<Wire>>() {
        wire.carry(conn.out.clone());
        wire.set_authenticated();
    }
    presence::online(&shared, &conn);
    {
        let entry = shared.users.add(&conn);
        let (shared, user) = (shared.clone(), conn.user.clone());
        tokio::spawn(async move { users::announce(&shared, &user, &entry).await });
    }

    // One handler for every event: socketioxide keeps each registered handler in a map per
    // socket, which cost ~1 KB per connection for ten events.
    {
        let (shared, conn) = (shared.clone(), conn.clone());
        s.on_fallback(
            move |Event(event): Event, TryData(data): TryData<Value>, ack: AckSender| {
                handle(shared.clone(), conn.clone(), &event, data, ack)
            },
        );
    }

    let listed = (shared.clone(), conn.clone());
    s.on_disconnect(move || {
        let (shared, conn) = (shared.clone(), conn.clone());
        async move { on_disconnect(shared, conn).await }
    });
    // A revocation applied after the check at connect but before `users.add` above found
    // no connection to cut: look again now that this one is listed.
    let (shared, conn) = listed;
    if shared
        .revocations
        .is_revoked(&conn.user, jti.as_deref(), crate::state::now_ms())
    {
        conn.kick("revoked");
    }
}

/// Which in-progress bound an event counts against.
#[derive(Clone, Copy)]
enum Bounded {
    /// `max_requests_in_flight`.
    InFlight,
    /// `max_pending_sends`, checked by `send` itself (a pipelining client has many).
    PendingSends,
}

/// What a handler returns: the ack, or the error to ack with.
type Handled = BoxFuture<'static, Result<Reply, ClientError>>;
type Handler = fn(Arc<Shared>, Arc<Conn>, Value, Option<Turn>) -> Handled;

/// The handler of each client event, its name for metrics and the bound it counts against.
fn route(event: &str) -> Option<(&'static str, Bounded, Handler)> {
    macro_rules! to {
        ($f:ident) => {
            |shared, conn, data, turn| Box::pin($f(shared, conn, data, turn)) as Handled
        };
    }
    use Bounded::{InFlight, PendingSends};
    Some(match event {
        "join" => ("join", InFlight, to!(join)),
        "leave" => ("leave", InFlight, to!(leave)),
        "send" => ("send", PendingSends, to!(send)),
        "history" => ("history", InFlight, to!(history)),
        "typing" => ("typing", InFlight, to!(typing)),
        "presence" => ("presence", InFlight, to!(presence_of_room)),
        "status" => ("status", InFlight, to!(status)),
        "read" => ("read", InFlight, to!(read)),
        "inbox" => ("inbox", InFlight, to!(inbox)),
        "delete" => ("delete", InFlight, to!(delete)),
        "mute" => ("mute", InFlight, to!(mute)),
        "refresh" => ("refresh", InFlight, to!(refresh)),
        _ => return None,
    })
}

/// One client event: counts it, applies the rate, size and in-progress limits, runs its
/// handler, acks the result. Called in packet order; the returned future runs as its own task.
fn handle(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    event: &str,
    data: Result<Value, impl std::fmt::Debug>,
    ack: AckSender,
) -> impl Future<Output = ()> + Send + 'static {
    let route = route(event);
    if route.is_none() {
        tracing::debug!(%event, "unknown event");
    }
    // Here, before the handler's task is spawned, events are still in the order the client
    // emitted them: a send takes its place in its room's queue now.
    let turn = match route {
        Some((_, Bounded::PendingSends, _)) => data
            .as_ref()
            .ok()
            .and_then(|d| d.get("room"))
            .and_then(Value::as_str)
            .and_then(|room| conn.rooms().get(room).map(|m| m.sends.ticket())),
        _ => None,
    };
    let data = data.ok();
    async move {
        let Some((name, bounded, f)) = route else {
            shared.metrics.event_in("unknown");
            let result = conn
                .check_rate()
                .and_then(|()| Err(ClientError::invalid("unknown event")));
            reply(&shared, &conn, ack, result);
            return;
        };
        shared.metrics.event_in(name);
        let in_flight = conn.requests_in_flight.fetch_add(1, Ordering::AcqRel);
        let _slot = InFlight(&conn.requests_in_flight);
        shared.in_progress.fetch_add(1, Ordering::AcqRel);
        let _edge_slot = InFlight(&shared.in_progress);
        let result = match (conn.check_rate(), data) {
            (Err(e), _) => Err(e),
            // Shutting down: the client retries on another edge (same id for a send).
            _ if shared.draining.load(Ordering::Acquire) => {
                Err(ClientError::unavailable("this edge is shutting down"))
            }
            (Ok(()), _)
                if matches!(bounded, Bounded::InFlight)
                    && in_flight >= shared.config.max_requests_in_flight =>
            {
                Err(ClientError::TooManyPending)
            }
            (Ok(()), None) => Err(ClientError::invalid("malformed payload")),
            (Ok(()), Some(data)) => {
                match check_event_size(approx_json_size(&data), shared.config.max_event_bytes) {
                    Err(e) => Err(e),
                    Ok(()) => f(shared.clone(), conn.clone(), data, turn).await,
                }
            }
        };
        reply(&shared, &conn, ack, result);
    }
}

/// A successful result: the ack, and for a join the membership to start once it is sent.
pub struct Reply {
    ack: Value,
    then_go_live: Option<(Arc<Member>, i64)>,
}

impl From<Value> for Reply {
    fn from(ack: Value) -> Self {
        Self {
            ack,
            then_go_live: None,
        }
    }
}

fn reply(shared: &Arc<Shared>, conn: &Conn, ack: AckSender, result: Result<Reply, ClientError>) {
    match result {
        Ok(r) => {
            conn.ack(ack, &r.ack, approx_json_size(&r.ack));
            // Live messages only after the join's ack.
            if let Some((member, head)) = r.then_go_live {
                member.start_at(head);
                tokio::spawn(fill(shared.clone(), member));
            }
        }
        Err(e) => {
            shared.metrics.error(e.code());
            let ack_value = e.to_ack();
            conn.ack(ack, &ack_value, approx_json_size(&ack_value));
        }
    }
}

/// A client event of `conn` about `room`.
fn event(shared: &Shared, conn: &Conn, kind: &str, room: &str) -> ClientEvent {
    client_event(shared, kind, Some(conn), Some(room))
}

/// A client event from this edge; `conn` empty for the edge's own records (presence).
pub(crate) fn client_event(
    shared: &Shared,
    kind: &str,
    conn: Option<&Conn>,
    room: Option<&str>,
) -> ClientEvent {
    ClientEvent {
        role: None,
        target: None,
        until: None,
        event_id: uuid::Uuid::new_v4().to_string(),
        kind: kind.to_string(),
        room: room.map(str::to_string),
        user: conn.map(|c| c.user.clone()),
        ts: now_ms(),
        trace_id: uuid::Uuid::new_v4().to_string(),
        node: shared.config.node.clone(),
        conn: conn.map(|c| c.id.clone()).unwrap_or_default(),
        client_id: None,
        text: None,
        on: None,
        user_name: conn.and_then(|c| c.name.clone()),
        users: None,
        seq: None,
    }
}

/// Appends a client event, keyed by its room (or, without one, by this edge).
pub(crate) async fn produce(
    shared: &Shared,
    topic: &str,
    ev: &ClientEvent,
) -> Result<(), ClientError> {
    let key = ev.room.clone().unwrap_or_else(|| ev.node.clone());
    let bytes = ev
        .encode()
        .map_err(|e| ClientError::invalid(format!("cannot encode: {e}")))?;
    let record = OutRecord::new(topic, key, bytes).with_header("trace_id", ev.trace_id.clone());
    shared.log.produce(record).await?;
    Ok(())
}

/// `forbidden` unless the connection's token lets it read `room` (join, history, presence,
/// read markers).
fn check_read(conn: &Conn, room: &str) -> Result<(), ClientError> {
    conn.access().check_read(room, &conn.user)
}

/// `forbidden` unless the connection's token lets it write in `room` (send, typing).
fn check_write(conn: &Conn, room: &str) -> Result<(), ClientError> {
    conn.access().check_write(room, &conn.user)
}

async fn join(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    data: Value,
    _: Option<Turn>,
) -> Result<Reply, ClientError> {
    let req = protocol::parse_join(&data)?;
    check_read(&conn, &req.room)?;
    let room = req.room;
    let member = Member::joining(conn.clone(), room.clone());
    {
        let mut rooms = conn.rooms();
        if !rooms.contains_key(&room) {
            check_rooms(rooms.len(), shared.config.max_rooms_per_conn)?;
        }
        if let Some(old) = rooms.insert(room.clone(), member.clone()) {
            old.set_gone();
        }
    }
    let (entry, _) = shared.rooms.add(member.clone());
    let (waiting, answer) = shared.pending.wait_join(&conn.id, &room);

    let result: Result<i64, ClientError> = async {
        {
            let _control = entry.control.lock().await;
            produce(
                &shared,
                topics::CLIENT_EVENTS,
                &event(&shared, &conn, "join", &room),
            )
            .await?;
        }
        let head = match tokio::time::timeout(shared.config.reply_timeout, answer).await {
            Ok(Ok(head)) => head,
            _ => return Err(ClientError::unavailable("no answer to join in time")),
        };
        if let Some(since) = req.since {
            if since < head {
                catchup::replay(
                    &shared.store,
                    &conn,
                    &room,
                    since,
                    head,
                    shared.config.catchup_timeout,
                    |_| !member.is_gone(),
                )
                .await?;
            }
        }
        Ok(head)
    }
    .await;
    drop(waiting);

    // Others see this user in the room once the join is done, before its ack: a
    // `presence` asked after the ack includes the asker.
    let result = match result {
        Ok(head) => presence::joined(&shared, &member).await.map(|()| head),
        Err(e) => Err(e),
    };
    match result {
        Ok(head) => Ok(Reply {
            ack: ok_ack(json!({ "room": room, "head": head })),
            then_go_live: Some((member, head)),
        }),
        Err(e) => {
            remove_membership(&shared, &conn, &member, Leaving::Room).await;
            Err(e)
        }
    }
}

async fn leave(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    data: Value,
    _: Option<Turn>,
) -> Result<Reply, ClientError> {
    let req = protocol::parse_leave(&data)?;
    let member = conn.rooms().get(&req.room).cloned();
    if let Some(member) = member {
        remove_membership(&shared, &conn, &member, Leaving::Room).await;
    }
    Ok(ok_ack(json!({})).into())
}

/// Why a membership ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leaving {
    /// This room only: presence hears a `leave`.
    Room,
    /// The connection closed: presence heard `offline`, which covers every room.
    Connection,
}

/// Removes a membership; when it was the room's last local one, tells fan-out to stop.
async fn remove_membership(
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    member: &Arc<Member>,
    why: Leaving,
) {
    member.set_gone();
    if why == Leaving::Room {
        presence::left(shared, member).await;
    }
    {
        let mut rooms = conn.rooms();
        if rooms
            .get(&member.room)
            .is_some_and(|m| Arc::ptr_eq(m, member))
        {
            rooms.remove(&member.room);
        }
    }
    shared.rooms.remove(member);
    if member.typing.swap(false, Ordering::AcqRel) {
        // The others would otherwise see this user typing for good.
        let mut ev = event(shared, conn, "typing", &member.room);
        ev.on = Some(false);
        if let Err(e) = produce(shared, topics::TYPING, &ev).await {
            tracing::warn!(room = %member.room, "typing off: {e}");
        }
    }
    let Some(entry) = shared.rooms.get(&member.room) else {
        return;
    };
    let _control = entry.control.lock().await;
    if !entry.is_empty() {
        return;
    }
    let mut ev = event(shared, conn, "unhost", &member.room);
    ev.user = None;
    if let Err(e) = produce(shared, topics::CLIENT_EVENTS, &ev).await {
        tracing::warn!(room = %member.room, "unhost: {e}");
    }
    shared.rooms.remove_if_empty(&member.room, &entry);
}

async fn send(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    data: Value,
    turn: Option<Turn>,
) -> Result<Reply, ClientError> {
    let started = Instant::now();
    let req = protocol::parse_send(&data)?;
    check_write(&conn, &req.room)?;
    if !conn.rooms().contains_key(&req.room) {
        return Err(ClientError::NotJoined);
    }
    let text = check_text(&req.text, shared.config.max_text_chars)?;

    let in_flight = conn.pending_sends.fetch_add(1, Ordering::AcqRel);
    let _slot = InFlight(&conn.pending_sends);
    if in_flight >= shared.config.max_pending_sends {
        return Err(ClientError::TooManyPending);
    }

    let mut ev = event(&shared, &conn, "send", &req.room);
    ev.client_id = Some(req.id);
    ev.text = Some(text);
    let (seq, ts) = append_send(&shared, ev, turn).await?;
    shared
        .metrics
        .ack_latency
        .observe(started.elapsed().as_secs_f64());
    Ok(ok_ack(json!({ "seq": seq, "ts": ts })).into())
}

/// Appends a `send` (room, client id and text set, already validated) on its `turn`, and
/// waits for the sequencer's answer: `(seq, ts)` once the message is durable, or why not.
/// Shared by Socket.IO's `send` and HTTP's `POST /api/publish`.
pub(crate) async fn append_send(
    shared: &Shared,
    ev: ClientEvent,
    turn: Option<Turn>,
) -> Result<(i64, i64), ClientError> {
    let room = ev.room.clone().unwrap_or_default();
    let id = ev.client_id.clone().unwrap_or_default();
    let (waiting, answer) = shared.pending.wait_send(&ev.conn, &room, &id);
    if let Some(turn) = &turn {
        turn.wait().await;
    }
    let produced = produce(shared, topics::CLIENT_EVENTS, &ev).await;
    // In the log now (or never): the next send of this membership may go.
    drop(turn);
    produced?;
    let outcome = tokio::time::timeout(shared.config.reply_timeout, answer).await;
    drop(waiting);
    match outcome {
        Ok(Ok(SendOutcome::Acked { seq, ts })) => Ok((seq, ts)),
        Ok(Ok(SendOutcome::Rejected(e))) => Err(e),
        _ => Err(ClientError::unavailable("no answer to send in time")),
    }
}

/// Gives back one unit of an in-progress count when dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Messages read from the store per step of a `history` page: small, so a page of large
/// messages stops at its byte budget without having read all of them.
const HISTORY_STEP: usize = 25;

async fn history(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    data: Value,
    _: Option<Turn>,
) -> Result<Reply, ClientError> {
    let req = protocol::parse_history(&data)?;
    check_read(&conn, &req.room)?;
    read_your_writes(&shared, &conn, &req.room).await?;
    let mut cursor = req.before.unwrap_or(i64::MAX);
    // Newest first, until the page is full, the room's start is reached, or the next
    // message would break the reply's byte budget (then `has_more`).
    let mut page: Vec<tidings_store::StoredMessage> = Vec::new();
    let mut bytes = 0;
    let mut has_more = false;
    'read: loop {
        let want = (req.limit - page.len()).min(HISTORY_STEP) + 1;
        let step = shared
            .store
            .read(&req.room, tidings_store::SeqRange::before(cursor, want))
            .await?;
        let exhausted = step.len() < want;
        for m in step {
            let size = m.text.len() + m.client_id.len() + m.from.len() + m.room.len() + 64;
            let over_budget = !page.is_empty() && bytes + size > shared.config.max_reply_bytes;
            if page.len() == req.limit || over_budget {
                has_more = true;
                break 'read;
            }
            bytes += size;
            cursor = m.seq;
            page.push(m);
        }
        if exhausted {
            break;
        }
    }
    page.reverse();
    let messages: Vec<protocol::MessageOut> = page.into_iter().map(Into::into).collect();
    Ok(ok_ack(json!({ "messages": messages, "has_more": has_more })).into())
}

/// Waits until the store holds every message of `room` acked before now, on any edge: asks
/// the sequencer for the room's head through the log (behind every send it has acked), then
/// waits, bounded, for persistence to store up to it.
async fn read_your_writes(shared: &Shared, conn: &Conn, room: &str) -> Result<(), ClientError> {
    let question = event(shared, conn, "head", room);
    let head = ask(
        shared,
        conn,
        topics::CLIENT_EVENTS,
        question,
        "the sequencer",
    )
    .await?
    .seq
    .unwrap_or(0);
    let deadline = Instant::now() + shared.config.catchup_timeout;
    while shared.store.head(room).await? < head {
        if Instant::now() >= deadline {
            return Err(ClientError::unavailable(format!(
                "the store has not reached seq {head} of {room} yet"
            )));
        }
        tokio::time::sleep(catchup::POLL).await;
    }
    Ok(())
}

/// Appends `question` to `topic` with a fresh nonce and waits for the processor's answer.
async fn ask(
    shared: &Shared,
    conn: &Conn,
    topic: &str,
    mut question: ClientEvent,
    who: &str,
) -> Result<tidings_schemas::Delivery, ClientError> {
    let nonce = uuid::Uuid::new_v4().to_string();
    question.client_id = Some(nonce.clone());
    let (waiting, answer) = shared.pending.wait_answer(&conn.id, &nonce);
    produce(shared, topic, &question).await?;
    let answer = tokio::time::timeout(shared.config.reply_timeout, answer).await;
    drop(waiting);
    match answer {
        Ok(Ok(d)) => Ok(d),
        _ => Err(ClientError::unavailable(format!(
            "no answer from {who} in time"
        ))),
    }
}

async fn typing(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    data: Value,
    _: Option<Turn>,
) -> Result<Reply, ClientError> {
    let req = protocol::parse_typing(&data)?;
    check_write(&conn, &req.room)?;
    let member = conn.rooms().get(&req.room).cloned();
    let Some(member) = member else {
        return Err(ClientError::NotJoined);
    };
    member.typing.store(req.on, Ordering::Release);
    let mut ev = event(&shared, &conn, "typing", &req.room);
    ev.on = Some(req.on);
    produce(&shared, topics::TYPING, &ev).await?;
    Ok(ok_ack(json!({})).into())
}

/// `presence {room}`: who is online in a room the caller joined.
async fn presence_of_room(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    data: Value,
    _: Option<Turn>,
) -> Result<Reply, ClientError> {
    let req = protocol::parse_presence(&data)?;
    check_read(&conn, &req.room)?;
    if !conn.rooms().contains_key(&req.room) {
        return Err(ClientError::NotJoined);
    }
    let question = event(&shared, &conn, "presence", &req.room);
    let answer = ask(&shared, &conn, topics::PRESENCE, question, "presence").await?;
    let users: Vec<Value> = answer
        .users
        .unwrap_or_default()
        .into_iter()
        .map(|u| match u.name {
            Some(name) => json!({ "user": u.user, "name": name }),
            None => json!({ "user": u.user }),
        })
        .collect();
    let mut ack = json!({ "room": req.room, "count": answer.count.unwrap_or(0), "users": users });
    if answer.truncated == Some(true) {
        ack["truncated"] = json!(true);
    }
    Ok(ok_ack(ack).into())
}

/// `status {users}`: whether each is online anywhere, and when they were last seen.
async fn status(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    data: Value,
    _: Option<Turn>,
) -> Result<Reply, ClientError> {
    let users = protocol::parse_status(&data)?;
    let mut question = client_event(&shared, "status", Some(&conn), None);
    question.users = Some(users);
    let answer = ask(&shared, &conn, topics::PRESENCE, question, "presence").await?;
    let users: Vec<Value> = answer
        .users
        .unwrap_or_default()
        .into_iter()
        .map(|u| json!({ "user": u.user, "online": u.online.unwrap_or(false), "last_seen": u.last_seen }))
        .collect();
    Ok(ok_ack(json!({ "users": users })).into())
}

/// How long `read` waits for the inbox to hold its marker, so an `inbox` right after it
/// shows it. The marker is durable once the sequencer acked it, so past this the ack is
/// sent anyway.
const READ_SETTLE: Duration = Duration::from_secs(3);

/// `read {room, seq}`: the user has read `room` up to `seq` (at most the head).
async fn read(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    data: Value,
    _: Option<Turn>,
) -> Result<Reply, ClientError> {
    let req = protocol::parse_read(&data)?;
    check_read(&conn, &req.room)?;
    // Through the sequencer, which checks it against the head and orders it in the room log.
    let nonce = uuid::Uuid::new_v4().to_string();
    let (waiting, answer) = shared.pending.wait_send(&conn.id, &req.room, &nonce);
    let mut ev = event(&shared, &conn, "read", &req.room);
    ev.client_id = Some(nonce);
    ev.seq = Some(req.seq);
    produce(&shared, topics::CLIENT_EVENTS, &ev).await?;
    let outcome = tokio::time::timeout(shared.config.reply_timeout, answer).await;
    drop(waiting);
    match outcome {
        Ok(Ok(SendOutcome::Acked { .. })) => {}
        Ok(Ok(SendOutcome::Rejected(e))) => return Err(e),
        _ => return Err(ClientError::unavailable("no answer to read in time")),
    }
    let deadline = Instant::now() + READ_SETTLE;
    loop {
        let marker = shared.store.read_marker(&conn.user, &req.room).await?;
        if marker.is_some_and(|m| m >= req.seq) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(catchup::POLL).await;
    }
    Ok(ok_ack(json!({})).into())
}

/// `delete {room, seq}`: a moderator deletes any message of a room it may use, a member
/// only their own; the sequencer decides, in the room's order.
async fn delete(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    data: Value,
    _: Option<Turn>,
) -> Result<Reply, ClientError> {
    let req = protocol::parse_delete(&data)?;
    check_read(&conn, &req.room)?;
    let mut ev = event(&shared, &conn, "delete", &req.room);
    ev.seq = Some(req.seq);
    sequenced(&shared, &conn, ev, "delete").await?;
    Ok(ok_ack(json!({})).into())
}

/// `mute {room, user, until}`: moderators only. The sequencer applies it in the room's
/// order, so every send of that user sequenced after it is refused, whichever edge it came
/// through.
async fn mute(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    data: Value,
    _: Option<Turn>,
) -> Result<Reply, ClientError> {
    let req = protocol::parse_mute(&data)?;
    conn.access().check_moderate(&req.room, &conn.user)?;
    let mut ev = event(&shared, &conn, "mute", &req.room);
    ev.target = Some(req.user);
    ev.until = Some(req.until);
    sequenced(&shared, &conn, ev, "mute").await?;
    Ok(ok_ack(json!({})).into())
}

/// Appends a moderation event with the connection's role and waits for the sequencer's
/// answer.
async fn sequenced(
    shared: &Shared,
    conn: &Conn,
    mut ev: ClientEvent,
    what: &str,
) -> Result<(), ClientError> {
    let room = ev.room.clone().unwrap_or_default();
    let nonce = uuid::Uuid::new_v4().to_string();
    let (waiting, answer) = shared.pending.wait_send(&conn.id, &room, &nonce);
    ev.client_id = Some(nonce);
    ev.role = Some(conn.access().role.as_str().to_string());
    produce(shared, topics::CLIENT_EVENTS, &ev).await?;
    let outcome = tokio::time::timeout(shared.config.reply_timeout, answer).await;
    drop(waiting);
    match outcome {
        Ok(Ok(SendOutcome::Acked { .. })) => Ok(()),
        Ok(Ok(SendOutcome::Rejected(e))) => Err(e),
        _ => Err(ClientError::unavailable(format!(
            "no answer to {what} in time"
        ))),
    }
}

/// Most rooms an `inbox` answer lists.
pub const INBOX_ROOMS: usize = 200;
/// Characters of a room's newest message an `inbox` answer shows (the whole text is in
/// `history`): 200 rooms stay well inside the reply's byte budget.
pub const INBOX_PREVIEW_CHARS: usize = 256;
/// Store look-ups in flight for one `inbox`.
const INBOX_LOOKUPS: usize = 16;

/// `inbox {}`: the user's DM rooms with messages, rooms they marked read and rooms they were
/// mentioned in, newest activity first, with unread and mention counts.
async fn inbox(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    data: Value,
    _: Option<Turn>,
) -> Result<Reply, ClientError> {
    use futures::{StreamExt, TryStreamExt};
    protocol::parse_inbox(&data)?;
    let access = conn.access();
    let store = &shared.store;
    let rooms: Vec<tidings_store::InboxRoom> = store
        .inbox_rooms(&conn.user)
        .await?
        .into_iter()
        .filter(|r| access.may_read(&r.room, &conn.user))
        .collect();
    let lookups: Vec<_> = rooms.iter().map(|r| store.last_message(&r.room)).collect();
    let lasts: Vec<Option<tidings_store::StoredMessage>> = futures::stream::iter(lookups)
        .buffered(INBOX_LOOKUPS)
        .try_collect()
        .await?;
    let mut listed: Vec<(
        tidings_store::InboxRoom,
        Option<tidings_store::StoredMessage>,
    )> = rooms.into_iter().zip(lasts).collect();
    // Newest activity first; rooms without a message last.
    listed.sort_by(|(a, la), (b, lb)| {
        let ts = |l: &Option<tidings_store::StoredMessage>| l.as_ref().map(|m| m.ts);
        ts(lb).cmp(&ts(la)).then_with(|| a.room.cmp(&b.room))
    });
    listed.truncate(INBOX_ROOMS);
    let lookups: Vec<_> = listed
        .iter()
        .map(|(r, _)| store.counts_after(&conn.user, &r.room, r.read))
        .collect();
    let counts: Vec<(i64, i64)> = futures::stream::iter(lookups)
        .buffered(INBOX_LOOKUPS)
        .try_collect()
        .await?;
    let out: Vec<Value> = listed
        .into_iter()
        .zip(counts)
        .map(|((r, last), (own, mentions))| {
            let head = last.as_ref().map_or(0, |m| m.seq).max(r.read);
            let unread = (head - r.read - own).max(0);
            let last = last.map(|m| {
                let text: String = m.text.chars().take(INBOX_PREVIEW_CHARS).collect();
                json!({ "seq": m.seq, "from": m.from, "text": text, "ts": m.ts })
            });
            json!({
                "room": r.room,
                "head": head,
                "read": r.read,
                "unread": unread,
                "mentions": mentions,
                "last": last,
            })
        })
        .collect();
    Ok(ok_ack(json!({ "rooms": out })).into())
}

/// `refresh {token}`: a new token for the same user (`crate::refresh`); the rooms it no
/// longer allows are left as if by `leave`.
async fn refresh(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    data: Value,
    _: Option<Turn>,
) -> Result<Reply, ClientError> {
    let token = crate::refresh::parse(&data)?;
    for room in crate::refresh::renew(&shared, &conn, token).await? {
        let member = conn.rooms().get(&room).cloned();
        if let Some(member) = member {
            remove_membership(&shared, &conn, &member, Leaving::Room).await;
        }
    }
    Ok(ok_ack(json!({})).into())
}

async fn on_disconnect(shared: Arc<Shared>, conn: Arc<Conn>) {
    conn.closed();
    shared.expiry.cancel(&conn);
    presence::offline(&shared, &conn).await;
    if let Some(entry) = shared.users.remove(&conn) {
        users::announce(&shared, &conn.user, &entry).await;
    }
    shared.sessions.remove(&conn.id);
    shared.metrics.connections.dec();
    let members: Vec<Arc<Member>> = conn.rooms().values().cloned().collect();
    for member in members {
        remove_membership(&shared, &conn, &member, Leaving::Connection).await;
    }
}
