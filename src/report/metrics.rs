//! The node as Prometheus metrics: the text exposition format (0.0.4) that `peermesh
//! metrics` prints and `GET /metrics` serves, written by the `prometheus-client` crate.
//!
//! Built afresh from a [`StatusReport`] and the matrix's row ages at each scrape, so the
//! figures are exactly those of `status --json`. Names follow the Prometheus conventions:
//! base units (seconds, ratios from 0 to 1), `_total` for counters, per-peer series labelled
//! `peer`, `peermesh_build_info` for the version. docs/OPERATIONS.md lists every series.
//! A peer's counters start again from 0 when it restarts (as its status figures do), which
//! Prometheus's `rate()` reads as a counter reset.

use crate::core::{Diagnosis, PeerState};
use crate::report::status::StatusReport;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// The `Content-Type` of what [`render`] writes (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Every state a peer of the core can be in, in the order the series are written.
const STATES: [PeerState; 6] = [
    PeerState::Unknown,
    PeerState::Alive,
    PeerState::Suspect,
    PeerState::Dead,
    PeerState::Unreachable,
    PeerState::Left,
];

/// One matrix row's age: the node whose row it is, and how old, in milliseconds (`None`:
/// never received).
pub type RowAge = (String, Option<u64>);

/// The metrics text of a node whose status is `report` and whose matrix rows have the
/// ages `rows`.
pub fn render(report: &StatusReport, rows: &[RowAge]) -> String {
    let mut registry = Registry::with_prefix("peermesh");
    let info = Family::<Labels, Gauge>::default();
    info.get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_owned())])
        .set(1);
    registry.register(
        "build_info",
        "The peermesh version of this node, as the value 1 labelled version",
        info,
    );
    let node = |help: &'static str, name: &'static str, value: f64, registry: &mut Registry| {
        let gauge = FloatGauge::default();
        gauge.set(value);
        registry.register(name, help, gauge);
    };
    node(
        "Seconds since this node started",
        "uptime_seconds",
        report.uptime_ms as f64 / 1000.0,
        &mut registry,
    );
    node(
        "How often each peer is sent a heartbeat, in seconds",
        "heartbeat_interval_seconds",
        report.heartbeat_interval_ms as f64 / 1000.0,
        &mut registry,
    );
    node(
        "1 while another process seems to run with this node's name, else 0",
        "identity_conflict",
        if report.identity_conflict { 1.0 } else { 0.0 },
        &mut registry,
    );
    if let Some(coordinate) = &report.coordinate {
        node(
            "This node's estimate of the relative error of its network coordinate (0 sure, 1.5 \
             nothing measured yet)",
            "coordinate_error",
            coordinate.error,
            &mut registry,
        );
    }
    peer_counts(report, &mut registry);
    per_peer(report, &mut registry);
    traffic(report, &mut registry);
    let ages = Family::<Labels, FloatGauge>::default();
    for (name, age) in rows {
        if let Some(ms) = age {
            ages.get_or_create(&vec![("node", name.clone())])
                .set(*ms as f64 / 1000.0);
        }
    }
    registry.register(
        "matrix_row_age_seconds",
        "How long ago this node last received the row of each node of the matrix (its own \
         row is refreshed once an interval); rows never received are absent",
        ages,
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_text::encode(&mut out, &registry);
    out
}

/// Peers per state, every state written (0 included), and the unresolved ones.
fn peer_counts(report: &StatusReport, registry: &mut Registry) {
    let counts = Family::<Labels, Gauge>::default();
    for state in STATES {
        let n = report
            .peers
            .iter()
            .filter(|p| p.state == state && p.diagnosis != Diagnosis::Unresolved)
            .count();
        counts
            .get_or_create(&vec![("state", state.as_str().to_owned())])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    registry.register("peers", "Peers of this node in each state", counts);
    let unresolved = Gauge::<i64>::default();
    let n = report
        .peers
        .iter()
        .filter(|p| p.diagnosis == Diagnosis::Unresolved)
        .count();
    unresolved.set(i64::try_from(n).unwrap_or(i64::MAX));
    registry.register(
        "peers_unresolved",
        "Peers whose host names have not resolved yet (not heartbeated)",
        unresolved,
    );
}

/// The per-peer series, labelled `peer`.
fn per_peer(report: &StatusReport, registry: &mut Registry) {
    let state = Family::<Labels, Gauge>::default();
    let up = Family::<Labels, Gauge>::default();
    let rtt_p50 = Family::<Labels, FloatGauge>::default();
    let rtt_p99 = Family::<Labels, FloatGauge>::default();
    let rtt_last = Family::<Labels, FloatGauge>::default();
    let jitter = Family::<Labels, FloatGauge>::default();
    let loss = Family::<Labels, FloatGauge>::default();
    let heard = Family::<Labels, FloatGauge>::default();
    let estimated = Family::<Labels, FloatGauge>::default();
    let sent = Family::<Labels, Counter>::default();
    let received = Family::<Labels, Counter>::default();
    for peer in &report.peers {
        let labels: Labels = vec![("peer", peer.name.clone())];
        for s in STATES {
            let mut with_state = labels.clone();
            with_state.push(("state", s.as_str().to_owned()));
            state
                .get_or_create(&with_state)
                .set(i64::from(peer.state == s));
        }
        up.get_or_create(&labels)
            .set(i64::from(peer.state == PeerState::Alive));
        if let Some(rtt) = &peer.rtt_us {
            rtt_p50.get_or_create(&labels).set(rtt.p50 / 1e6);
            rtt_p99.get_or_create(&labels).set(rtt.p99 / 1e6);
            rtt_last.get_or_create(&labels).set(rtt.last / 1e6);
        }
        if let Some(j) = peer.jitter_us {
            jitter.get_or_create(&labels).set(j / 1e6);
        }
        loss.get_or_create(&labels).set(peer.loss_pct / 100.0);
        if let Some(ms) = peer.last_heard_ms {
            heard.get_or_create(&labels).set(ms as f64 / 1000.0);
        }
        if let Some(us) = peer.estimated_rtt_us {
            estimated.get_or_create(&labels).set(us / 1e6);
        }
        sent.get_or_create(&labels).inc_by(peer.sent);
        received.get_or_create(&labels).inc_by(peer.received);
    }
    registry.register(
        "peer_state",
        "1 for the state each peer is in, 0 for the others",
        state,
    );
    registry.register("peer_up", "1 while the peer is alive, else 0", up);
    registry.register(
        "peer_rtt_p50_seconds",
        "Median round-trip time to the peer over the recent window (alive and suspect peers)",
        rtt_p50,
    );
    registry.register(
        "peer_rtt_p99_seconds",
        "99th-percentile round-trip time to the peer over the recent window",
        rtt_p99,
    );
    registry.register(
        "peer_rtt_last_seconds",
        "The latest round-trip time measured to the peer",
        rtt_last,
    );
    registry.register(
        "peer_jitter_seconds",
        "Smoothed variation of the round-trip time to the peer (RFC 3550)",
        jitter,
    );
    registry.register(
        "peer_loss_ratio",
        "Share of the recent settled heartbeats to the peer that were not answered (0 to 1)",
        loss,
    );
    registry.register(
        "peer_last_heard_seconds",
        "Seconds since a valid datagram came from the peer (absent before the first)",
        heard,
    );
    registry.register(
        "peer_estimated_rtt_seconds",
        "Round-trip time to the peer that the network coordinates predict (alive and \
         suspect peers with a known coordinate; a prediction, not a measurement)",
        estimated,
    );
    registry.register(
        "peer_datagrams_sent",
        "Datagrams sent to the peer (from 0 again when it restarts)",
        sent,
    );
    registry.register(
        "peer_datagrams_received",
        "Valid datagrams received from the peer (from 0 again when it restarts)",
        received,
    );
}

/// Drops by reason and the socket's own counters.
fn traffic(report: &StatusReport, registry: &mut Registry) {
    let dropped = Family::<Labels, Counter>::default();
    for (reason, n) in &report.dropped {
        dropped
            .get_or_create(&vec![("reason", reason.clone())])
            .inc_by(*n);
    }
    registry.register(
        "dropped_datagrams",
        "Datagrams dropped unread, by reason (malformed, auth_failed, replayed, ...)",
        dropped,
    );
    let Some(io) = &report.io else {
        return;
    };
    let counter = |help: &'static str, name: &'static str, n: u64, registry: &mut Registry| {
        let c = Counter::<u64>::default();
        c.inc_by(n);
        registry.register(name, help, c);
    };
    counter(
        "Datagrams read from the UDP socket",
        "datagrams_received",
        io.received,
        registry,
    );
    counter(
        "Datagrams handed to the kernel",
        "datagrams_sent",
        io.sent,
        registry,
    );
    counter(
        "Bytes of the datagrams read from the UDP socket (UDP payloads)",
        "received_bytes",
        io.received_bytes,
        registry,
    );
    counter(
        "Bytes of the datagrams handed to the kernel (UDP payloads)",
        "sent_bytes",
        io.sent_bytes,
        registry,
    );
    counter(
        "UDP sends that failed (unreachable host, ...)",
        "send_errors",
        io.send_errors,
        registry,
    );
    counter(
        "UDP receive errors",
        "receive_errors",
        io.recv_errors,
        registry,
    );
    counter(
        "Datagrams dropped because the send queue was full",
        "send_queue_full",
        io.send_queue_full,
        registry,
    );
}
