//! The edge's Prometheus metrics, in a registry of its own (several edges may share a process).
//! `/metrics` also shows the default registry, where processors in the same process (as in
//! `tidings standalone`) register theirs.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub connections: IntGauge,
    pub events_in: IntCounterVec,
    pub events_out: IntCounterVec,
    /// `events_out` for the kinds emitted once per member of a room, resolved once: the
    /// label lookup would otherwise run for every delivery to every socket.
    messages_out: IntCounter,
    typing_out: IntCounter,
    pub errors: IntCounterVec,
    pub ack_latency: Histogram,
    pub delivery_lag: IntGauge,
    pub disconnects: IntCounterVec,
    pub refused: IntCounterVec,
    pub bad_deliveries: IntCounter,
    /// Revocations in force on this edge.
    pub revocations: IntGauge,
}

impl Metrics {
    pub fn new(node: &str) -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(
            None,
            Some(std::iter::once(("node".to_string(), node.to_string())).collect()),
        )?;
        let connections = IntGauge::new("tidings_edge_connections", "Open Socket.IO connections")?;
        let events_in = IntCounterVec::new(
            Opts::new(
                "tidings_edge_events_in_total",
                "Client events received, by kind",
            ),
            &["kind"],
        )?;
        let events_out = IntCounterVec::new(
            Opts::new(
                "tidings_edge_events_out_total",
                "Events emitted to clients, by kind",
            ),
            &["kind"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new("tidings_edge_errors_total", "Error acks sent, by code"),
            &["code"],
        )?;
        let ack_latency = Histogram::with_opts(
            HistogramOpts::new(
                "tidings_edge_send_ack_seconds",
                "Time from receiving a send to acking it",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let delivery_lag = IntGauge::new(
            "tidings_edge_delivery_lag_records",
            "Records in this edge's deliveries partition not yet read",
        )?;
        let disconnects = IntCounterVec::new(
            Opts::new(
                "tidings_edge_forced_disconnects_total",
                "Connections the edge dropped, by reason",
            ),
            &["reason"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "tidings_edge_refused_connections_total",
                "Connections refused before they were served, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(events_in.clone()))?;
        registry.register(Box::new(events_out.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(ack_latency.clone()))?;
        registry.register(Box::new(delivery_lag.clone()))?;
        let bad_deliveries = IntCounter::new(
            "tidings_edge_bad_deliveries_total",
            "Records in this edge's deliveries partition that did not decode, skipped",
        )?;
        registry.register(Box::new(disconnects.clone()))?;
        registry.register(Box::new(bad_deliveries.clone()))?;
        let revocations = IntGauge::new(
            "tidings_edge_revocations",
            "Revoked users and tokens in force on this edge (tidings.revocations)",
        )?;
        registry.register(Box::new(revocations.clone()))?;
        Ok(Self {
            registry,
            connections,
            events_in,
            messages_out: events_out.with_label_values(&["message"]),
            typing_out: events_out.with_label_values(&["typing"]),
            events_out,
            errors,
            ack_latency,
            delivery_lag,
            disconnects,
            refused,
            bad_deliveries,
            revocations,
        })
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let mut families = self.registry.gather();
        families.extend(prometheus::gather());
        if TextEncoder::new().encode(&families, &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    pub fn event_in(&self, kind: &str) {
        self.events_in.with_label_values(&[kind]).inc();
    }

    pub fn event_out(&self, kind: &str) {
        match kind {
            "message" => self.messages_out.inc(),
            "typing" => self.typing_out.inc(),
            other => self.events_out.with_label_values(&[other]).inc(),
        }
    }

    pub fn error(&self, code: &str) {
        self.errors.with_label_values(&[code]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_edges_do_not_collide_and_text_renders() {
        let a = Metrics::new("edge-a").unwrap();
        let b = Metrics::new("edge-b").unwrap();
        a.connections.inc();
        a.event_in("send");
        a.error("invalid");
        b.event_out("message");
        let text = a.render();
        assert!(text.contains("tidings_edge_connections{node=\"edge-a\"} 1"));
        assert!(text.contains("tidings_edge_events_in_total{kind=\"send\",node=\"edge-a\"} 1"));
        assert!(!a.render().contains("edge-b"));
    }

    #[test]
    fn the_default_registry_is_shown_too() {
        let processors = IntCounter::new("tidings_test_default_total", "test").unwrap();
        prometheus::register(Box::new(processors.clone())).unwrap();
        processors.inc();
        let a = Metrics::new("edge-a").unwrap();
        a.bad_deliveries.inc();
        let text = a.render();
        assert!(text.contains("tidings_test_default_total 1"), "{text}");
        assert!(text.contains("tidings_edge_bad_deliveries_total{node=\"edge-a\"} 1"));
    }
}
