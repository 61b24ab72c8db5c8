//! Emit order for pipelined sends (G2): a client that emits `send`s to one room without
//! waiting for acks must see them take seqs in the order it emitted them.
//!
//! socketioxide runs each event's handler as its own task, so two sends of one connection
//! race to the log. A ticket is taken synchronously, in packet order, before the task is
//! spawned; the send appends to the log only on its turn, and passes the turn on once the
//! append returned (or failed, or was never attempted). One turnstile per membership, so
//! unrelated connections and rooms never wait for each other.

use crate::state::lock;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Default)]
pub struct Turnstile {
    state: Mutex<TurnState>,
    turn: Notify,
}

#[derive(Default)]
struct TurnState {
    issued: u64,
    serving: u64,
    /// Tickets given up before their turn: skipped when the turn reaches them. At most the
    /// connection's pending sends.
    abandoned: BTreeSet<u64>,
}

/// A place in the queue. Dropping it passes the turn on (or gives up the place).
pub struct Turn {
    gate: Arc<Turnstile>,
    number: u64,
}

impl Turnstile {
    /// The next place in the queue. Call in the order the events arrived.
    pub fn ticket(self: &Arc<Self>) -> Turn {
        let mut state = lock(&self.state);
        let number = state.issued;
        state.issued += 1;
        Turn {
            gate: self.clone(),
            number,
        }
    }
}

impl Turn {
    /// Waits until every earlier ticket has been dropped.
    pub async fn wait(&self) {
        loop {
            let notified = self.gate.turn.notified();
            tokio::pin!(notified);
            // Registered before looking, so a turn passed in between still wakes us.
            notified.as_mut().enable();
            if lock(&self.gate.state).serving == self.number {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut state = lock(&self.gate.state);
        if state.serving != self.number {
            state.abandoned.insert(self.number);
            return;
        }
        state.serving += 1;
        loop {
            let next = state.serving;
            if !state.abandoned.remove(&next) {
                break;
            }
            state.serving += 1;
        }
        drop(state);
        self.gate.turn.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn turns_follow_tickets_whatever_order_tasks_run_in() {
        let gate = Arc::new(Turnstile::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let tickets: Vec<Turn> = (0..20).map(|_| gate.ticket()).collect();
        let mut tasks = Vec::new();
        // Start them newest first: each must still wait for all earlier ones.
        for (i, turn) in tickets.into_iter().enumerate().rev() {
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                turn.wait().await;
                tokio::task::yield_now().await;
                order.lock().unwrap().push(i);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_ticket_given_up_early_does_not_block_later_ones() {
        let gate = Arc::new(Turnstile::default());
        let first = gate.ticket();
        let second = gate.ticket();
        let third = gate.ticket();
        drop(second);
        let waiting = tokio::spawn(async move { third.wait().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "third waits for first");
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("third's turn came after first and the abandoned second")
            .unwrap();
        assert!(lock(&gate.state).abandoned.is_empty());
    }
}
