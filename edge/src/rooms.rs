//! Local room membership: room → the connections in it on this edge, and each membership's
//! delivery state (joining / catching up with live messages buffered, or live), which is
//! where ordering and duplicate dropping happen.

use crate::conn::{Conn, EmitError};
use crate::order::Turnstile;
use crate::protocol::{EncodedMessage, PacketSize};
use crate::state::lock;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What to do next for a membership that is not live.
pub enum Next {
    /// Emit this message, then call [`Member::sent`].
    Emit(Arc<EncodedMessage>),
    /// Replay `(from, to]` from the store first.
    Gap { from: i64, to: i64 },
    /// Nothing buffered: the membership is live now.
    Live,
}

/// What the delivery loop should do after offering a live message.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    Done,
    /// A gap opened: start a filler (the message is buffered).
    StartFill,
    /// The buffer overflowed or the output is full: drop the connection.
    Kick(&'static str),
}

#[derive(Default)]
struct State {
    live: bool,
    last: i64,
    buf: VecDeque<Arc<EncodedMessage>>,
    /// JSON bytes of the messages in `buf`.
    buf_bytes: usize,
}

/// How many live messages a membership that is not live yet may hold back.
#[derive(Debug, Clone, Copy)]
pub struct BufferBound {
    pub messages: usize,
    pub bytes: usize,
}

impl State {
    fn push(&mut self, msg: &Arc<EncodedMessage>) {
        self.buf_bytes += msg.packet_size();
        self.buf.push_back(msg.clone());
    }

    fn pop(&mut self) {
        if let Some(msg) = self.buf.pop_front() {
            self.buf_bytes = self.buf_bytes.saturating_sub(msg.packet_size());
        }
    }
}

/// One connection in one room.
pub struct Member {
    pub conn: Arc<Conn>,
    pub room: String,
    state: Mutex<State>,
    gone: AtomicBool,
    /// Orders this membership's pipelined sends (`crate::order`).
    pub sends: Arc<Turnstile>,
    /// Whether its last typing notice was `on`: a leave or disconnect then sends `off`.
    pub typing: AtomicBool,
    /// Whether its join went to the presence topic, so a leave must follow it there.
    pub announced: AtomicBool,
}

impl Member {
    /// A new membership, buffering until its join completes.
    pub fn joining(conn: Arc<Conn>, room: String) -> Arc<Self> {
        Arc::new(Self {
            conn,
            room,
            state: Mutex::new(State::default()),
            gone: AtomicBool::new(false),
            sends: Arc::default(),
            typing: AtomicBool::new(false),
            announced: AtomicBool::new(false),
        })
    }

    /// Whether it was left, replaced by a newer join, or its connection closed.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst) || !self.conn.is_open()
    }

    pub fn set_gone(&self) {
        self.gone.store(true, Ordering::SeqCst);
    }

    /// A live message from the deliveries.
    pub fn offer(&self, msg: &Arc<EncodedMessage>, bound: BufferBound) -> Offer {
        if self.is_gone() {
            return Offer::Done;
        }
        let mut st = lock(&self.state);
        if !st.live {
            if st.buf.len() >= bound.messages || st.buf_bytes + msg.packet_size() > bound.bytes {
                return Offer::Kick("buffer_overflow");
            }
            st.push(msg);
            return Offer::Done;
        }
        if msg.seq <= st.last {
            return Offer::Done; // duplicate
        }
        if msg.seq == st.last + 1 {
            return match self.conn.emit("message", msg.as_ref()) {
                Ok(()) => {
                    st.last = msg.seq;
                    Offer::Done
                }
                Err(EmitError::Full) => Offer::Kick("slow_consumer"),
                Err(EmitError::Closed) => Offer::Done,
            };
        }
        // Gap: buffer and let a filler read the missing ones from the store.
        st.live = false;
        st.push(msg);
        Offer::StartFill
    }

    /// Starts delivery after a join was acked at `head`.
    pub fn start_at(&self, head: i64) {
        let mut st = lock(&self.state);
        st.last = head;
    }

    /// Records that `seq` was emitted (by a join's catch-up or a filler).
    pub fn sent(&self, seq: i64) {
        let mut st = lock(&self.state);
        if seq > st.last {
            st.last = seq;
        }
    }

    /// The filler's next step. Goes live when the buffer is drained.
    pub fn next(&self) -> Next {
        let mut st = lock(&self.state);
        loop {
            let Some(front) = st.buf.front() else {
                st.live = true;
                return Next::Live;
            };
            if front.seq <= st.last {
                st.pop();
                continue;
            }
            if front.seq == st.last + 1 {
                let msg = front.clone();
                st.pop();
                return Next::Emit(msg);
            }
            return Next::Gap {
                from: st.last,
                to: front.seq - 1,
            };
        }
    }
}

/// The members of one room on this edge.
#[derive(Default)]
pub struct RoomEntry {
    members: Mutex<HashMap<String, Arc<Member>>>,
    /// Serializes this edge's `join` and `unhost` appends for the room, so they reach the log
    /// in the order the membership changed.
    pub control: tokio::sync::Mutex<()>,
}

impl RoomEntry {
    pub fn is_empty(&self) -> bool {
        lock(&self.members).is_empty()
    }

    /// Calls `f` for each member (under the room's lock: `f` must not block).
    pub fn for_each(&self, mut f: impl FnMut(&Arc<Member>)) {
        for m in lock(&self.members).values() {
            f(m);
        }
    }
}

/// Room name → local members.
#[derive(Default)]
pub struct Rooms {
    map: Mutex<HashMap<String, Arc<RoomEntry>>>,
}

impl Rooms {
    pub fn get(&self, room: &str) -> Option<Arc<RoomEntry>> {
        lock(&self.map).get(room).cloned()
    }

    /// Adds (or replaces) `member`; returns the room's entry and the membership it replaced.
    pub fn add(&self, member: Arc<Member>) -> (Arc<RoomEntry>, Option<Arc<Member>>) {
        let mut map = lock(&self.map);
        let entry = map.entry(member.room.clone()).or_default().clone();
        let old = lock(&entry.members).insert(member.conn.id.clone(), member);
        (entry, old)
    }

    /// Removes `member` if it is still the connection's membership of its room.
    pub fn remove(&self, member: &Arc<Member>) {
        let map = lock(&self.map);
        if let Some(entry) = map.get(&member.room) {
            let mut members = lock(&entry.members);
            if members
                .get(&member.conn.id)
                .is_some_and(|m| Arc::ptr_eq(m, member))
            {
                members.remove(&member.conn.id);
            }
        }
    }

    /// Forgets `entry` if it is still the room's entry and has no members.
    pub fn remove_if_empty(&self, room: &str, entry: &Arc<RoomEntry>) -> bool {
        let mut map = lock(&self.map);
        let same = map.get(room).is_some_and(|e| Arc::ptr_eq(e, entry));
        if same && entry.is_empty() {
            map.remove(room);
            true
        } else {
            false
        }
    }
}
