//! What each accepted TCP connection carries: the peer's address, the bytes written to it,
//! and, until its client authenticates, a deadline.
//!
//! Socket.IO queues outgoing packets per connection in a channel bounded by a packet count,
//! and does not say when one is written. To bound a connection's queued output in bytes
//! (G7), the edge counts the bytes it hands to Socket.IO ([`OutQueue::admit`]) and the bytes
//! the socket really writes ([`Counted`]); the difference is what sits in memory. Long polling
//! spreads one session over several TCP connections, so each request naming a session (`sid`)
//! points its connection's counter at that session's queue ([`Sessions`]).

use crate::admission::IpSlot;
use crate::state::lock;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// One session's output: bytes handed to Socket.IO and bytes the sockets have written since.
#[derive(Debug, Default)]
pub struct OutQueue {
    admitted: AtomicU64,
    written: AtomicU64,
}

impl OutQueue {
    /// Bytes handed to Socket.IO and not yet written to the network.
    pub fn queued(&self) -> u64 {
        let admitted = self.admitted.load(Ordering::Acquire);
        let written = self.written.load(Ordering::Acquire);
        if written > admitted {
            // Framing, pings and replies the edge did not count were written too: the queue
            // is empty. Forget the surplus, or it would hide as much real backlog later.
            let _ = self.written.compare_exchange(
                written,
                admitted,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            return 0;
        }
        admitted - written
    }

    /// Counts `bytes` as queued if that keeps the queue within `max`; false otherwise (the
    /// caller drops the connection: it does not read what it is sent).
    pub fn admit(&self, bytes: usize, max: usize) -> bool {
        if self.queued() + bytes as u64 > max as u64 {
            return false;
        }
        self.admitted.fetch_add(bytes as u64, Ordering::AcqRel);
        true
    }

    fn wrote(&self, bytes: usize) {
        self.written.fetch_add(bytes as u64, Ordering::AcqRel);
    }
}

/// One TCP connection, as the request handlers see it (a request extension).
pub struct Wire {
    /// This connection's place in its address's connection cap, given back when it closes.
    _slot: Option<IpSlot>,
    sessions: Arc<Sessions>,
    /// Whose output this connection carries, once a session is known.
    target: Mutex<Option<Arc<OutQueue>>>,
    /// A session a request on this connection named before that session's client had
    /// authenticated (a WebSocket upgrade racing the CONNECT sent by polling): looked up
    /// again on the next write or read.
    wanted: Mutex<Option<Box<str>>>,
    /// Set once a client on this connection has authenticated; lifts the deadline.
    authenticated: AtomicBool,
}

impl Wire {
    pub fn new(slot: IpSlot, sessions: Arc<Sessions>) -> Arc<Self> {
        Self::build(Some(slot), sessions)
    }

    fn build(slot: Option<IpSlot>, sessions: Arc<Sessions>) -> Arc<Self> {
        Arc::new(Self {
            _slot: slot,
            sessions,
            target: Mutex::new(None),
            wanted: Mutex::new(None),
            authenticated: AtomicBool::new(false),
        })
    }

    /// Writes on this connection drain `queue` from now on.
    pub fn carry(&self, queue: Arc<OutQueue>) {
        *lock(&self.target) = Some(queue);
    }

    pub fn set_authenticated(&self) {
        self.authenticated.store(true, Ordering::Release);
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Acquire)
    }

    fn wrote(&self, bytes: usize) {
        let mut target = lock(&self.target);
        if target.is_none() {
            *target = self.resolve();
        }
        if let Some(queue) = target.as_ref() {
            queue.wrote(bytes);
        }
    }

    /// The queue of the session this connection asked for, if it is known by now (then the
    /// connection counts as authenticated).
    fn resolve(&self) -> Option<Arc<OutQueue>> {
        let mut wanted = lock(&self.wanted);
        let queue = self.sessions.get(wanted.as_deref()?)?;
        *wanted = None;
        self.set_authenticated();
        Some(queue)
    }

    /// Whether a client on this connection has authenticated, looking the wanted session up
    /// again if there is one.
    fn check_authenticated(&self) -> bool {
        if self.is_authenticated() {
            return true;
        }
        if let Some(queue) = self.resolve() {
            lock(&self.target).get_or_insert(queue);
        }
        self.is_authenticated()
    }
}

/// Engine.IO session id → its output queue, for the polling requests and WebSocket upgrades
/// that name the session.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<OutQueue>>>,
}

impl Sessions {
    pub fn insert(&self, sid: &str, queue: Arc<OutQueue>) {
        lock(&self.map).insert(sid.to_string(), queue);
    }

    pub fn remove(&self, sid: &str) {
        lock(&self.map).remove(sid);
    }

    fn get(&self, sid: &str) -> Option<Arc<OutQueue>> {
        lock(&self.map).get(sid).cloned()
    }

    /// If `query` names a known session, lets `wire` carry its output and marks it
    /// authenticated (sessions are only registered once their client has).
    pub fn attach(&self, query: Option<&str>, wire: &Wire) {
        let Some(sid) = query.and_then(session_id) else {
            return;
        };
        match self.get(sid) {
            Some(queue) => {
                wire.carry(queue);
                wire.set_authenticated();
            }
            None => *lock(&wire.wanted) = Some(sid.into()),
        }
    }
}

/// The `sid` parameter of an Engine.IO request's query string.
fn session_id(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("sid="))
        .filter(|sid| !sid.is_empty() && sid.len() <= 64)
}

/// A TCP stream that counts what it writes into its [`Wire`] and, until the wire is
/// authenticated, fails reads once `deadline` passes (which ends the HTTP connection or the
/// upgraded WebSocket on it: an anonymous client cannot hold a socket for long).
pub struct Counted<T> {
    inner: T,
    wire: Arc<Wire>,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<T> Counted<T> {
    pub fn new(inner: T, wire: Arc<Wire>, deadline: Duration) -> Self {
        Self {
            inner,
            wire,
            deadline: Some(Box::pin(tokio::time::sleep(deadline))),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(deadline) = this.deadline.as_mut() {
            if this.wire.check_authenticated() {
                // Freed: most connections are idle and authenticated for hours.
                this.deadline = None;
            } else if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "not authenticated in time",
                )));
            }
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.wire.wrote(n);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.wire.wrote(n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_admitted_minus_written_and_bounded() {
        let q = Arc::new(OutQueue::default());
        assert!(q.admit(600, 1000));
        assert!(!q.admit(500, 1000), "600 + 500 is over the bound");
        let wire = Wire::build(None, Arc::new(Sessions::default()));
        wire.carry(q.clone());
        wire.wrote(400);
        assert_eq!(q.queued(), 200);
        assert!(q.admit(500, 1000));
        // Unaccounted framing written beyond what was admitted does not build up credit.
        wire.wrote(5000);
        assert_eq!(q.queued(), 0);
        assert!(q.admit(1000, 1000));
        assert!(!q.admit(1, 1000));
    }

    #[test]
    fn requests_naming_a_session_carry_its_output() {
        let sessions = Arc::new(Sessions::default());
        let q = Arc::new(OutQueue::default());
        sessions.insert("abc", q.clone());
        let wire = Wire::build(None, sessions.clone());
        sessions.attach(Some("EIO=4&transport=polling&sid=zzz"), &wire);
        assert!(!wire.check_authenticated(), "unknown session");
        sessions.attach(Some("EIO=4&transport=websocket&sid=abc"), &wire);
        assert!(wire.is_authenticated());
        assert!(q.admit(10, 100));
        wire.wrote(10);
        assert_eq!(q.queued(), 0);
    }

    #[test]
    fn an_upgrade_before_the_connect_is_resolved_once_the_session_exists() {
        let sessions = Arc::new(Sessions::default());
        let wire = Wire::build(None, sessions.clone());
        sessions.attach(Some("EIO=4&transport=websocket&sid=late"), &wire);
        assert!(!wire.check_authenticated());
        let q = Arc::new(OutQueue::default());
        sessions.insert("late", q.clone());
        assert!(q.admit(100, 1000));
        wire.wrote(60);
        assert!(wire.is_authenticated());
        assert_eq!(q.queued(), 40);
    }
}
