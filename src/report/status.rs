//! The peer table as a report: built from a core, rendered as JSON or as an aligned table.
//!
//! Pure presentation: `peermesh status`, `peermesh top` and the control socket all go
//! through here, so the JSON contract is defined in one place.

use crate::core::peer::PeerState;
use crate::core::Mesh;
use crate::io::driver::IoCounters;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

/// RTT figures of one peer, in microseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RttReport {
    /// Most recent sample.
    pub last: f64,
    /// Smallest in the window.
    pub min: f64,
    /// Mean of the window.
    pub avg: f64,
    /// Median of the window.
    pub p50: f64,
    /// 99th percentile of the window.
    pub p99: f64,
}

/// One row of the peer table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PeerReport {
    /// The peer's name.
    pub name: String,
    /// Its configured address, `ip:port`.
    pub addr: String,
    /// `unknown|alive|suspect|dead|left|unreachable`.
    pub state: String,
    /// What this node concludes with the other nodes' rows as witnesses:
    /// `ok|asymmetric|unknown|suspect|dead|unreachable|left`.
    pub diagnosis: String,
    /// Round-trip figures, once measured.
    pub rtt_us: Option<RttReport>,
    /// RFC 3550 jitter, once measured.
    pub jitter_us: Option<f64>,
    /// Loss over the recent settled probes (0 before any settled).
    pub loss_pct: f64,
    /// Milliseconds since a valid datagram came from it.
    pub last_heard_ms: Option<u64>,
    /// Datagrams sent to it.
    pub sent: u64,
    /// Valid datagrams received from it.
    pub received: u64,
    /// Where its datagrams come from, if not its configured address (NAT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen_addr: Option<String>,
    /// Its incarnation in hex, once heard.
    pub incarnation: Option<String>,
}

/// The whole status of one node: the `status --json` contract.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatusReport {
    /// This node's name.
    pub node: String,
    /// This process's incarnation.
    pub incarnation: u64,
    /// Milliseconds since the node started.
    pub uptime_ms: u64,
    /// The heartbeat interval in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// One row per peer, in config order.
    pub peers: Vec<PeerReport>,
    /// Datagrams dropped, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// The driver's I/O counters, when a driver runs the core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io: Option<BTreeMap<String, u64>>,
}

fn micros(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1000.0
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl StatusReport {
    /// The report of `mesh` at `now`, with the driver's counters if there is one.
    pub fn new(mesh: &Mesh, now: Instant, io: Option<&IoCounters>) -> StatusReport {
        let peers = mesh
            .peers()
            .map(|(id, peer)| {
                let rtt = peer.rtt();
                PeerReport {
                    name: peer.name().to_owned(),
                    addr: peer.addr().to_string(),
                    state: peer.state().as_str().to_owned(),
                    diagnosis: mesh
                        .diagnosis(id)
                        .map_or("unknown", |d| d.as_str())
                        .to_owned(),
                    rtt_us: rtt.map(|r| RttReport {
                        last: micros(r.last),
                        min: micros(r.min),
                        avg: micros(r.mean),
                        p50: micros(r.p50),
                        p99: micros(r.p99),
                    }),
                    jitter_us: rtt.map(|r| micros(r.jitter)),
                    loss_pct: mesh.loss_pct(id).unwrap_or(0.0),
                    last_heard_ms: peer
                        .last_heard()
                        .map(|t| millis(now.saturating_duration_since(t))),
                    sent: peer.sent(),
                    received: peer.received(),
                    seen_addr: peer
                        .seen_addr()
                        .filter(|&a| a != peer.addr())
                        .map(|a| a.to_string()),
                    incarnation: peer.incarnation().map(|i| format!("{i:016x}")),
                }
            })
            .collect();
        let dropped = mesh
            .dropped()
            .iter()
            .map(|(reason, n)| (reason.as_str().to_owned(), n))
            .collect();
        let io = io.map(|c| {
            BTreeMap::from([
                ("received".to_owned(), c.received),
                ("sent".to_owned(), c.sent),
                ("send_queue_full".to_owned(), c.send_queue_full),
                ("send_errors".to_owned(), c.send_errors),
                ("recv_errors".to_owned(), c.recv_errors),
            ])
        });
        StatusReport {
            node: mesh.name().to_owned(),
            incarnation: mesh.incarnation(),
            uptime_ms: millis(now.saturating_duration_since(mesh.started())),
            heartbeat_interval_ms: millis(mesh.settings().heartbeat_interval),
            peers,
            dropped,
            io,
        }
    }

    /// The JSON form (one object, one line).
    pub fn to_json(&self) -> String {
        // Serialising plain structs of strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human form: a header line and aligned columns; ANSI colours on `color`.
    pub fn to_table(&self, color: bool) -> String {
        let mut out = String::new();
        let alive = self.peers.iter().filter(|p| p.state == "alive").count();
        let _ = writeln!(
            out,
            "node {} (incarnation {:016x}), up {}, {}/{} peers alive, heartbeat every {} ms",
            self.node,
            self.incarnation,
            human_duration(self.uptime_ms),
            alive,
            self.peers.len(),
            self.heartbeat_interval_ms
        );
        let headers = [
            "PEER", "ADDRESS", "STATE", "RTT LAST", "AVG", "P99", "JITTER", "LOSS", "HEARD",
        ];
        let rows: Vec<[String; 9]> = self
            .peers
            .iter()
            .map(|p| {
                let rtt = |f: fn(&RttReport) -> f64| {
                    p.rtt_us.as_ref().map_or("-".to_owned(), |r| human_us(f(r)))
                };
                [
                    p.name.clone(),
                    p.seen_addr.clone().unwrap_or_else(|| p.addr.clone()),
                    if p.diagnosis == "ok" || p.diagnosis == p.state {
                        p.state.clone()
                    } else {
                        format!("{} ({})", p.state, p.diagnosis)
                    },
                    rtt(|r| r.last),
                    rtt(|r| r.avg),
                    rtt(|r| r.p99),
                    p.jitter_us.map_or("-".to_owned(), human_us),
                    format!("{:.1}%", p.loss_pct),
                    p.last_heard_ms.map_or("never".to_owned(), |ms| {
                        format!("{} ago", human_duration(ms))
                    }),
                ]
            })
            .collect();
        let mut widths = headers.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String; 9], state: Option<&str>| {
            let mut s = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                let pad = w - cell.chars().count();
                let colored = match (i, state, color) {
                    (2, Some(st), true) => format!("{}{cell}\x1b[0m", state_colour(st)),
                    _ => cell.clone(),
                };
                // Text columns align left, figures right.
                if i < 3 {
                    s.push_str(&colored);
                    s.push_str(&" ".repeat(pad));
                } else {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(&colored);
                }
                s.push_str("  ");
            }
            s.truncate(s.trim_end().len());
            s
        };
        let _ = writeln!(out, "{}", line(&headers.map(str::to_owned), None));
        for (row, peer) in rows.iter().zip(&self.peers) {
            let _ = writeln!(out, "{}", line(row, Some(&peer.state)));
        }
        let dropped: u64 = self.dropped.values().sum();
        if dropped > 0 {
            let parts: Vec<String> = self
                .dropped
                .iter()
                .filter(|(_, &n)| n > 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let _ = writeln!(out, "dropped datagrams: {}", parts.join(", "));
        }
        out
    }
}

fn state_colour(state: &str) -> &'static str {
    match state {
        s if s == PeerState::Alive.as_str() => "\x1b[32m",
        s if s == PeerState::Suspect.as_str() => "\x1b[33m",
        s if s == PeerState::Dead.as_str() => "\x1b[31m",
        s if s == PeerState::Left.as_str() => "\x1b[2m",
        s if s == PeerState::Unreachable.as_str() => "\x1b[35m",
        _ => "\x1b[36m",
    }
}

/// `734µs`, `12.3ms`, `1.20s`.
pub fn human_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0}µs")
    } else if us < 100_000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else if us < 1_000_000.0 {
        format!("{:.0}ms", us / 1000.0)
    } else {
        format!("{:.2}s", us / 1_000_000.0)
    }
}

/// `850ms`, `12.3s`, `5m02s`, `3h10m`.
pub fn human_duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Link, Sim};

    #[test]
    fn report_has_the_contract_fields_and_an_aligned_table() {
        let mut sim = Sim::with_nodes(3, Duration::from_millis(100), 1);
        sim.set_default_link(Link::latency(Duration::from_micros(250)));
        sim.run_for(Duration::from_secs(2));
        sim.crash(2);
        sim.run_for(Duration::from_secs(1));
        let mesh = sim.mesh(0).unwrap();
        let report = StatusReport::new(mesh, sim.now(), None);
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["node"], "node0");
        assert_eq!(json["uptime_ms"], 3000);
        let peers = json["peers"].as_array().unwrap();
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0]["name"], "node1");
        assert_eq!(peers[0]["state"], "alive");
        assert_eq!(peers[0]["rtt_us"]["p50"], 500.0);
        assert_eq!(peers[1]["state"], "dead");
        assert!(peers[1]["last_heard_ms"].as_u64().unwrap() >= 900);
        assert_eq!(json["dropped"]["malformed"], 0);
        let table = report.to_table(false);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("node node0"));
        assert!(lines[1].starts_with("PEER"));
        assert!(lines[2].contains("alive") && lines[2].contains("500µs"));
        assert!(lines[3].contains("dead"));
        // Columns line up: STATE starts at the same offset on every row.
        let col = lines[1].find("STATE").unwrap();
        assert_eq!(lines[2].find("alive"), Some(col));
        assert_eq!(lines[3].find("dead"), Some(col));
        assert!(report.to_table(true).contains("\x1b[31mdead"));
    }

    #[test]
    fn human_units() {
        assert_eq!(human_us(42.4), "42µs");
        assert_eq!(human_us(1234.0), "1.23ms");
        assert_eq!(human_us(150_000.0), "150ms");
        assert_eq!(human_duration(61_000), "1m01s");
    }
}
