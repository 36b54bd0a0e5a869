//! The peer table as a report: built from a core, rendered as JSON or as an aligned table.
//!
//! Pure presentation: `peermesh status`, `peermesh top` and the control socket all go
//! through here, so the JSON contract is defined in one place. The report types are typed
//! (states are [`PeerState`] and [`Diagnosis`], never strings) and deserialise too, so a
//! client parses `status --json` back into a [`StatusReport`]:
//!
//! ```
//! # use peermesh::report::status::StatusReport;
//! let json = r#"{"node":"alpha","incarnation":7,"uptime_ms":2252,"heartbeat_interval_ms":1000,
//!   "peers":[{"name":"beta","addr":"127.0.0.2:1313","state":"alive","diagnosis":"ok",
//!     "rtt_us":null,"jitter_us":null,"loss_pct":0.0,"last_heard_ms":747,"sent":4,
//!     "received":4,"incarnation":"01a212b429ab1aed"}],"dropped":{}}"#;
//! let report: StatusReport = serde_json::from_str(json)?;
//! assert_eq!(report.peers[0].state, peermesh::PeerState::Alive);
//! assert!(report.io.is_none(), "a report of a bare core has no I/O counters");
//! # Ok::<(), serde_json::Error>(())
//! ```

use crate::core::peer::PeerState;
use crate::core::{Diagnosis, Mesh};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

/// RTT figures of one peer, in microseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RttReport {
    /// Most recent sample.
    pub last: f64,
    /// Smallest in the window.
    pub min: f64,
    /// Mean of the window (the core's `RttSummary::mean`; `avg` in the JSON contract).
    pub avg: f64,
    /// Median of the window.
    pub p50: f64,
    /// 99th percentile of the window.
    pub p99: f64,
}

/// One row of the peer table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerReport {
    /// The peer's name.
    pub name: String,
    /// Its configured address, `ip:port`.
    pub addr: String,
    /// Its liveness as this node sees it (JSON: `unknown|alive|suspect|dead|left|unreachable`).
    pub state: PeerState,
    /// What this node concludes with the other nodes' rows as witnesses (JSON:
    /// `ok|asymmetric|unknown|suspect|dead|unreachable|left|conflict`).
    pub diagnosis: Diagnosis,
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
    /// Where its datagrams come from, if not its configured address (NAT). Absent from the
    /// JSON when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_addr: Option<String>,
    /// Its incarnation in hex, once heard.
    pub incarnation: Option<String>,
    /// While two processes claim its name (diagnosis `conflict`): the address of the one
    /// not believed right now. Absent from the JSON otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rival_addr: Option<String>,
}

/// Counters of a driver's own I/O (the core counts protocol drops): what the report shows
/// as `io`, filled in by the mio driver (`Node::io_counters` of the I/O layer).
///
/// The fields are declared in alphabetical order, which is their order in the JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoCounters {
    /// Datagrams read from the socket.
    pub received: u64,
    /// Receive errors other than `WouldBlock` (e.g. ICMP port unreachable reported late).
    pub recv_errors: u64,
    /// Sends that failed with an error other than `WouldBlock` (unreachable host, ...).
    pub send_errors: u64,
    /// Datagrams dropped because the send queue was full.
    pub send_queue_full: u64,
    /// Datagrams handed to the kernel.
    pub sent: u64,
}

/// The whole status of one node: the `status --json` contract.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// This node's name.
    pub node: String,
    /// This process's incarnation.
    pub incarnation: u64,
    /// Milliseconds since the node started.
    pub uptime_ms: u64,
    /// The heartbeat interval in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Whether another process seems to run with this node's name (peers keep holding it
    /// at incarnations it never took). Absent from the JSON (false) in older nodes.
    #[serde(default)]
    pub identity_conflict: bool,
    /// One row per peer, in config order.
    pub peers: Vec<PeerReport>,
    /// Datagrams dropped, by reason (`DropReason::as_str`), keys in alphabetical order.
    pub dropped: BTreeMap<String, u64>,
    /// The driver's I/O counters, when a driver runs the core. Absent from the JSON when
    /// `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<IoCounters>,
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
                    state: peer.state(),
                    diagnosis: mesh.diagnosis(id).unwrap_or(Diagnosis::Unknown),
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
                    rival_addr: peer.rival_addr().map(|a| a.to_string()),
                }
            })
            .collect();
        let dropped = mesh
            .dropped()
            .iter()
            .map(|(reason, n)| (reason.as_str().to_owned(), n))
            .collect();
        StatusReport {
            node: mesh.name().to_owned(),
            incarnation: mesh.incarnation(),
            uptime_ms: millis(now.saturating_duration_since(mesh.started())),
            heartbeat_interval_ms: millis(mesh.settings().heartbeat_interval),
            identity_conflict: mesh.identity_conflict(),
            peers,
            dropped,
            io: io.cloned(),
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
        let alive = self
            .peers
            .iter()
            .filter(|p| p.state == PeerState::Alive)
            .count();
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
        if self.identity_conflict {
            let _ = writeln!(
                out,
                "CONFLICT: another process is running as {}: stop one of them",
                self.node
            );
        }
        for p in self
            .peers
            .iter()
            .filter_map(|p| Some((p, p.rival_addr.as_ref()?)))
        {
            let _ = writeln!(
                out,
                "CONFLICT: two processes claim to be {}: at {} and at {}",
                p.0.name,
                p.0.seen_addr.as_deref().unwrap_or(&p.0.addr),
                p.1
            );
        }
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
                    if says_more(p.state, p.diagnosis) {
                        format!("{} ({})", p.state, p.diagnosis.as_str())
                    } else {
                        p.state.to_string()
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
        let line = |cells: &[String; 9], state: Option<PeerState>| {
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
            let _ = writeln!(out, "{}", line(row, Some(peer.state)));
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

/// Whether the diagnosis tells more than the state (it is shown beside it): not when it
/// is `ok` or only repeats the state.
fn says_more(state: PeerState, diagnosis: Diagnosis) -> bool {
    let repeats = match diagnosis {
        Diagnosis::Ok => true,
        Diagnosis::Asymmetric | Diagnosis::Conflict => false,
        Diagnosis::Unknown => state == PeerState::Unknown,
        Diagnosis::Suspect => state == PeerState::Suspect,
        Diagnosis::Dead => state == PeerState::Dead,
        Diagnosis::Unreachable => state == PeerState::Unreachable,
        Diagnosis::Left => state == PeerState::Left,
    };
    !repeats
}

fn state_colour(state: PeerState) -> &'static str {
    match state {
        PeerState::Alive => "\x1b[32m",
        PeerState::Suspect => "\x1b[33m",
        PeerState::Dead => "\x1b[31m",
        PeerState::Left => "\x1b[2m",
        PeerState::Unreachable => "\x1b[35m",
        PeerState::Unknown => "\x1b[36m",
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

    /// A report with every kind of value: lossy, jittery links, a dead and a left peer.
    fn busy_report() -> StatusReport {
        let mut sim = Sim::with_nodes(5, Duration::from_millis(100), 3);
        let link = Link::latency(Duration::from_micros(250))
            .with_loss(0.1)
            .with_jitter(Duration::from_micros(77));
        sim.set_default_link(link);
        sim.run_for(Duration::from_secs(3));
        sim.crash(2);
        sim.leave(3);
        sim.run_for(Duration::from_secs(1));
        let io = IoCounters {
            received: 1,
            recv_errors: 5,
            send_errors: 4,
            send_queue_full: 3,
            sent: 2,
        };
        StatusReport::new(sim.mesh(0).unwrap(), sim.now(), Some(&io))
    }

    #[test]
    fn status_json_parses_back_into_the_same_report() {
        let mut report = busy_report();
        report.peers[0].seen_addr = Some("10.0.0.9:4000".to_owned());
        // 11 of 12 probes lost: its shortest decimal, 91.66666666666667, is read back 2 ULP
        // off by serde_json's default float parser (hence its `float_roundtrip` feature).
        report.peers[1].loss_pct = 1100.0 / 12.0;
        let states: Vec<PeerState> = report.peers.iter().map(|p| p.state).collect();
        assert_eq!(
            states,
            [
                PeerState::Alive,
                PeerState::Dead,
                PeerState::Left,
                PeerState::Alive
            ]
        );
        for report in [report.clone(), StatusReport { io: None, ..report }] {
            let json = report.to_json();
            let back: StatusReport = serde_json::from_str(&json).expect("parses");
            assert_eq!(back, report, "{json}");
            assert_eq!(back.to_json(), json, "and prints the same bytes again");
        }
    }

    #[test]
    fn the_json_keeps_its_field_names_and_spellings() {
        let report = StatusReport {
            node: "alpha".to_owned(),
            incarnation: 117677105266917554,
            uptime_ms: 2252,
            heartbeat_interval_ms: 1000,
            identity_conflict: false,
            peers: vec![
                PeerReport {
                    name: "beta".to_owned(),
                    addr: "127.0.0.2:1313".to_owned(),
                    state: PeerState::Alive,
                    diagnosis: Diagnosis::Asymmetric,
                    rtt_us: Some(RttReport {
                        last: 76.311,
                        min: 76.311,
                        avg: 79.372,
                        p50: 76.311,
                        p99: 82.433,
                    }),
                    jitter_us: Some(0.383),
                    loss_pct: 0.0,
                    last_heard_ms: Some(747),
                    sent: 4,
                    received: 4,
                    seen_addr: Some("10.1.1.1:1313".to_owned()),
                    incarnation: Some("01a212b429ab1aed".to_owned()),
                    rival_addr: None,
                },
                PeerReport {
                    name: "gamma".to_owned(),
                    addr: "127.0.0.3:1313".to_owned(),
                    state: PeerState::Unknown,
                    diagnosis: Diagnosis::Unreachable,
                    rtt_us: None,
                    jitter_us: None,
                    loss_pct: 0.0,
                    last_heard_ms: None,
                    sent: 2,
                    received: 0,
                    seen_addr: None,
                    incarnation: None,
                    rival_addr: None,
                },
            ],
            dropped: BTreeMap::from([("auth_failed".to_owned(), 3), ("malformed".to_owned(), 0)]),
            io: Some(IoCounters {
                received: 8,
                recv_errors: 0,
                send_errors: 0,
                send_queue_full: 0,
                sent: 8,
            }),
        };
        assert_eq!(
            report.to_json(),
            concat!(
                r#"{"node":"alpha","incarnation":117677105266917554,"uptime_ms":2252,"#,
                r#""heartbeat_interval_ms":1000,"identity_conflict":false,"#,
                r#""peers":[{"name":"beta","addr":"127.0.0.2:1313","#,
                r#""state":"alive","diagnosis":"asymmetric","rtt_us":{"last":76.311,"#,
                r#""min":76.311,"avg":79.372,"p50":76.311,"p99":82.433},"jitter_us":0.383,"#,
                r#""loss_pct":0.0,"last_heard_ms":747,"sent":4,"received":4,"#,
                r#""seen_addr":"10.1.1.1:1313","incarnation":"01a212b429ab1aed"},"#,
                r#"{"name":"gamma","addr":"127.0.0.3:1313","state":"unknown","#,
                r#""diagnosis":"unreachable","rtt_us":null,"jitter_us":null,"loss_pct":0.0,"#,
                r#""last_heard_ms":null,"sent":2,"received":0,"incarnation":null}],"#,
                r#""dropped":{"auth_failed":3,"malformed":0},"#,
                r#""io":{"received":8,"recv_errors":0,"send_errors":0,"send_queue_full":0,"sent":8}}"#
            )
        );
        // The table shows a diagnosis only where it tells more than the state.
        let table = report.to_table(false);
        assert!(table.contains("alive (asymmetric)"), "{table}");
        assert!(table.contains("unknown (unreachable)"), "{table}");
        assert!(
            table.lines().next().unwrap().contains("1/2 peers alive"),
            "{table}"
        );
    }

    #[test]
    fn a_diagnosis_is_shown_only_when_it_says_more_than_the_state() {
        use Diagnosis as D;
        use PeerState as S;
        for state in S::ALL {
            assert!(!says_more(state, D::Ok));
            assert!(says_more(state, D::Asymmetric));
        }
        let repeats = [
            (S::Unknown, D::Unknown),
            (S::Suspect, D::Suspect),
            (S::Dead, D::Dead),
            (S::Unreachable, D::Unreachable),
            (S::Left, D::Left),
        ];
        for (state, diagnosis) in repeats {
            assert!(!says_more(state, diagnosis), "{state} {diagnosis:?}");
        }
        assert!(says_more(S::Dead, D::Unreachable));
        assert!(says_more(S::Unknown, D::Dead));
    }

    #[test]
    fn human_units() {
        assert_eq!(human_us(42.4), "42µs");
        assert_eq!(human_us(1234.0), "1.23ms");
        assert_eq!(human_us(150_000.0), "150ms");
        assert_eq!(human_duration(61_000), "1m01s");
    }
}
