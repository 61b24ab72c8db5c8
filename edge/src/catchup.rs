//! Replaying a room's messages from the store, waiting (bounded) for persistence to catch up.

use crate::conn::Conn;
use crate::errors::ClientError;
use crate::protocol::{EncodedMessage, MessageOut};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tidings_store::{SeqRange, Store};

/// Messages read from the store per page.
pub const PAGE: usize = 1000;
/// How often to look again while the store is behind.
pub const POLL: Duration = Duration::from_millis(20);

/// Emits every message of `room` with `from < seq <= to`, in order, to `conn`; calls
/// `sent(seq)` after each. Waits up to `patience` for the store to have them (persistence
/// may lag the log); a page that shows a gap is read again after [`POLL`]. Emits are paced by
/// the connection's output bound: a client that reads slowly slows its replay down, and one
/// that stops reading for `patience` fails it.
pub async fn replay(
    store: &Arc<dyn Store>,
    conn: &Conn,
    room: &str,
    from: i64,
    to: i64,
    patience: Duration,
    mut still_wanted: impl FnMut(i64) -> bool,
) -> Result<i64, ClientError> {
    let mut cursor = from;
    let mut deadline = Instant::now() + patience;
    while cursor < to {
        let want = usize::try_from(to - cursor).unwrap_or(PAGE).min(PAGE);
        let page = store.read(room, SeqRange::after(cursor, want)).await?;
        let before = cursor;
        for m in page {
            if m.seq != cursor + 1 || m.seq > to {
                break;
            }
            let seq = m.seq;
            let out = EncodedMessage::new(&MessageOut::from(m))
                .map_err(|e| ClientError::unavailable(format!("cannot encode: {e}")))?;
            conn.emit_paced("message", &out, patience)
                .await
                .map_err(|e| ClientError::unavailable(format!("connection: {e:?}")))?;
            cursor = seq;
            if !still_wanted(seq) {
                return Ok(cursor);
            }
        }
        if cursor == before {
            if Instant::now() >= deadline {
                return Err(ClientError::unavailable(format!(
                    "the store has not reached seq {} of {room} yet",
                    cursor + 1
                )));
            }
            tokio::time::sleep(POLL).await;
        } else {
            deadline = Instant::now() + patience;
        }
    }
    Ok(cursor)
}
