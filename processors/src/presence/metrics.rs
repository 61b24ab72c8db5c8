//! What the presence processor holds, as gauges for `/metrics`, set after every batch.

use prometheus::IntGauge;
use std::sync::OnceLock;

use super::state::Presence;

struct Gauges {
    users: IntGauge,
    connections: IntGauge,
    rooms: IntGauge,
    edges: IntGauge,
}

fn gauges() -> &'static Gauges {
    static GAUGES: OnceLock<Gauges> = OnceLock::new();
    GAUGES.get_or_init(|| {
        let gauge = |name: &str, help: &str| {
            let gauge = IntGauge::new(name, help).expect("valid gauge");
            // A failure only loses the metric, never the work.
            if let Err(error) = prometheus::register(Box::new(gauge.clone())) {
                tracing::warn!(%error, name, "presence metric not registered");
            }
            gauge
        };
        Gauges {
            users: gauge(
                "tidings_presence_online_users",
                "Users with at least one open connection, as the presence processor sees them",
            ),
            connections: gauge(
                "tidings_presence_online_connections",
                "Open connections the presence processor tracks",
            ),
            rooms: gauge(
                "tidings_presence_occupied_rooms",
                "Rooms with at least one connection in them",
            ),
            edges: gauge(
                "tidings_presence_edges",
                "Edges whose heartbeats the presence processor has seen and not yet expired",
            ),
        }
    })
}

pub(super) fn observe(state: &Presence) {
    let g = gauges();
    g.users.set(state.users() as i64);
    g.connections.set(state.connections() as i64);
    g.rooms.set(state.rooms() as i64);
    g.edges.set(state.edges() as i64);
}
