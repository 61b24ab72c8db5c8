//! What the inbox processor does, as counters for `/metrics`.

use prometheus::{IntCounter, IntCounterVec, Opts};
use std::sync::OnceLock;

struct Counters {
    notifications: IntCounterVec,
    read_markers: IntCounter,
}

fn counters() -> &'static Counters {
    static COUNTERS: OnceLock<Counters> = OnceLock::new();
    COUNTERS.get_or_init(|| {
        let counters = Counters {
            notifications: IntCounterVec::new(
                Opts::new(
                    "tidings_inbox_notifications_total",
                    "notify deliveries derived from the room log, by reason (dm, mention)",
                ),
                &["reason"],
            )
            .expect("valid counter"),
            read_markers: IntCounter::new(
                "tidings_inbox_read_markers_total",
                "Read markers that moved a user's marker forward",
            )
            .expect("valid counter"),
        };
        // Both series exist from the start, so a rate over them is defined before any notice.
        for reason in ["dm", "mention"] {
            counters.notifications.with_label_values(&[reason]);
        }
        for collector in [
            Box::new(counters.notifications.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(counters.read_markers.clone()),
        ] {
            // A failure only loses the metric, never the work.
            if let Err(error) = prometheus::register(collector) {
                tracing::warn!(%error, "inbox metric not registered");
            }
        }
        counters
    })
}

/// Makes the series visible before the first batch.
pub(super) fn register() {
    counters();
}

/// A batch's notices (by reason) and forward-moving markers, counted once they are written.
pub(super) fn batch<'a>(reasons: impl Iterator<Item = &'a str>, markers: usize) {
    let c = counters();
    for reason in reasons {
        c.notifications.with_label_values(&[reason]).inc();
    }
    c.read_markers.inc_by(markers as u64);
}
