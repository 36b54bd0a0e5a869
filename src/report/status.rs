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
    /// Round-trip figures, once measured; `None` unless the peer is `alive` or `suspect`
    /// ([`has_rtt`]).
    pub rtt_us: Option<RttReport>,
    /// RFC 3550 jitter, once measured; `None` exactly when `rtt_us` is.
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
    /// The peer's tags, as this node last received them (empty before any came).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Why its host name does not resolve (diagnosis `unresolved`). Absent from the JSON
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_error: Option<String>,
    /// The RTT in µs that this node's and the peer's network coordinates predict; `None`
    /// before a Pong of the peer brought its coordinate, and unless the peer is `alive` or
    /// `suspect` (as `rtt_us`). Absent (null) in older nodes.
    #[serde(default)]
    pub estimated_rtt_us: Option<f64>,
}

/// Counters of a driver's own I/O (the core counts protocol drops): what the report shows
/// as `io`, filled in by the mio driver (`Node::io_counters` of the I/O layer).
///
/// The fields are declared in alphabetical order, which is their order in the JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoCounters {
    /// Datagrams read from the socket.
    pub received: u64,
    /// Bytes of the datagrams read (UDP payloads). Absent from the JSON (0) in older nodes.
    #[serde(default)]
    pub received_bytes: u64,
    /// Receive errors other than `WouldBlock` (e.g. ICMP port unreachable reported late).
    pub recv_errors: u64,
    /// Sends that failed with an error other than `WouldBlock` (unreachable host, ...).
    pub send_errors: u64,
    /// Datagrams dropped because the send queue was full.
    pub send_queue_full: u64,
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Bytes of the datagrams handed to the kernel (UDP payloads). Absent from the JSON (0)
    /// in older nodes.
    #[serde(default)]
    pub sent_bytes: u64,
}

impl IoCounters {
    /// One datagram of `bytes` bytes handed to the kernel.
    pub fn count_sent(&mut self, bytes: usize) {
        self.sent += 1;
        self.sent_bytes += bytes as u64;
    }
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
    /// This node's own tags. Absent from the JSON (empty) in older nodes.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// One row per peer, in config order.
    pub peers: Vec<PeerReport>,
    /// Datagrams dropped, by reason (`DropReason::as_str`), keys in alphabetical order.
    pub dropped: BTreeMap<String, u64>,
    /// The driver's I/O counters, when a driver runs the core. Absent from the JSON when
    /// `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<IoCounters>,
    /// This node's network coordinate. Absent from the JSON in older nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinate: Option<CoordinateReport>,
    /// The probing mode in effect, `"full"` or `"sampled"`. Absent from the JSON in older
    /// nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_mode: Option<String>,
}

/// A network coordinate as `status --json` shows it (see docs/PROTOCOL.md, Network
/// coordinates).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoordinateReport {
    /// The Euclidean components, in µs.
    pub vec_us: Vec<f64>,
    /// The height, in µs.
    pub height_us: f64,
    /// The node's estimate of its own relative error: 0 (sure) to 1.5 (nothing measured).
    pub error: f64,
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
                // Only a peer that answers now has an RTT: a dead, unreachable, left or
                // unknown one's last figures would read as healthy.
                let rtt = peer.rtt().filter(|_| has_rtt(peer.state()));
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
                    last_heard_ms: mesh
                        .last_heard(id)
                        .map(|t| millis(now.saturating_duration_since(t))),
                    sent: peer.sent(),
                    received: peer.received(),
                    seen_addr: peer
                        .seen_addr()
                        .filter(|&a| a != peer.addr())
                        .map(|a| a.to_string()),
                    incarnation: peer.incarnation().map(|i| format!("{i:016x}")),
                    rival_addr: peer.rival_addr().map(|a| a.to_string()),
                    tags: mesh.peer_tags(id).cloned().unwrap_or_default(),
                    resolve_error: None,
                    estimated_rtt_us: mesh
                        .estimate_rtt(None, Some(id))
                        .filter(|_| has_rtt(peer.state()))
                        .map(micros),
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
            tags: mesh.tags().clone(),
            peers,
            dropped,
            io: io.cloned(),
            coordinate: Some(CoordinateReport {
                vec_us: mesh.coordinate().vec.iter().map(|v| v * 1e6).collect(),
                height_us: mesh.coordinate().height * 1e6,
                error: mesh.coordinate().error,
            }),
            probe_mode: Some(mesh.probe_mode().as_str().to_owned()),
        }
    }

    /// Adds a peer listed as `host:port` whose name has not resolved (`error`: why): state
    /// `unknown`, diagnosis `unresolved`, after the peers the core holds.
    pub fn add_unresolved(&mut self, name: &str, host: &str, port: u16, error: Option<&str>) {
        self.peers.push(PeerReport {
            name: name.to_owned(),
            addr: format!("{host}:{port}"),
            state: PeerState::Unknown,
            diagnosis: Diagnosis::Unresolved,
            rtt_us: None,
            jitter_us: None,
            loss_pct: 0.0,
            last_heard_ms: None,
            sent: 0,
            received: 0,
            seen_addr: None,
            incarnation: None,
            rival_addr: None,
            tags: BTreeMap::new(),
            resolve_error: Some(error.unwrap_or("not resolved yet").to_owned()),
            estimated_rtt_us: None,
        });
    }

    /// The JSON form (one object, one line).
    pub fn to_json(&self) -> String {
        // Serialising plain structs of strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human form: a header line and aligned columns; ANSI colours on `color`.
    pub fn to_table(&self, color: bool) -> String {
        self.render_table(&TableOptions {
            color,
            ..TableOptions::default()
        })
        .0
    }

    /// The table as [`StatusReport::to_table`] draws it, with `options`: colours, only the
    /// peers in some states, and columns at least as wide as a previous frame's (`peermesh
    /// top` passes the widths of each frame to the next, so its columns never shrink).
    /// Returns the text and the widths it used.
    pub fn render_table(&self, options: &TableOptions) -> (String, TableWidths) {
        let mut out = String::new();
        let alive = self
            .peers
            .iter()
            .filter(|p| p.state == PeerState::Alive)
            .count();
        let shown: Vec<&PeerReport> = self
            .peers
            .iter()
            .filter(|p| options.states.as_ref().is_none_or(|s| s.contains(&p.state)))
            .collect();
        let _ = write!(
            out,
            "node {} (incarnation {:016x}), up {}, {}/{} peers alive, heartbeat every {} ms",
            self.node,
            self.incarnation,
            human_duration(self.uptime_ms),
            alive,
            self.peers.len(),
            self.heartbeat_interval_ms
        );
        if let Some(states) = &options.states {
            let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
            let _ = write!(
                out,
                "; showing {} {}: {}",
                shown.len(),
                if shown.len() == 1 { "peer" } else { "peers" },
                names.join(", ")
            );
        }
        out.push('\n');
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
        // One unit per column of times, chosen from the values it shows.
        let column = |f: fn(&PeerReport) -> Option<f64>| {
            TimeUnit::for_column(shown.iter().filter_map(|&p| f(p)))
        };
        let last = column(|p| p.rtt_us.as_ref().map(|r| r.last));
        let avg = column(|p| p.rtt_us.as_ref().map(|r| r.avg));
        let p99 = column(|p| p.rtt_us.as_ref().map(|r| r.p99));
        let jitter = column(|p| p.jitter_us);
        let rows: Vec<[String; 9]> = shown
            .iter()
            .map(|p| {
                let rtt = |unit: TimeUnit, f: fn(&RttReport) -> f64| {
                    p.rtt_us
                        .as_ref()
                        .map_or("-".to_owned(), |r| unit.format(f(r)))
                };
                [
                    p.name.clone(),
                    p.seen_addr.clone().unwrap_or_else(|| p.addr.clone()),
                    if says_more(p.state, p.diagnosis) {
                        format!("{} ({})", p.state, p.diagnosis.as_str())
                    } else {
                        p.state.to_string()
                    },
                    rtt(last, |r| r.last),
                    rtt(avg, |r| r.avg),
                    rtt(p99, |r| r.p99),
                    p.jitter_us.map_or("-".to_owned(), |j| jitter.format(j)),
                    format!("{:.1}%", p.loss_pct),
                    p.last_heard_ms.map_or("never".to_owned(), ago),
                ]
            })
            .collect();
        let mut widths = options.widths.0;
        for (w, header) in widths.iter_mut().zip(headers) {
            *w = (*w).max(header.len());
        }
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String; 9], state: Option<PeerState>| {
            let mut s = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                let pad = w - cell.chars().count();
                let colored = match (i, state, options.color) {
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
        for (row, peer) in rows.iter().zip(&shown) {
            let _ = writeln!(out, "{}", line(row, Some(peer.state)));
        }
        // Tags below the table, one line per node that has any, so the columns stay narrow.
        let tagged: Vec<(String, &BTreeMap<String, String>)> =
            std::iter::once((format!("{} (this node)", self.node), &self.tags))
                .chain(shown.iter().map(|p| (p.name.clone(), &p.tags)))
                .filter(|(_, tags)| !tags.is_empty())
                .collect();
        for (i, (name, tags)) in tagged.iter().enumerate() {
            let pairs: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let lead = if i == 0 { "TAGS" } else { "" };
            let _ = writeln!(out, "{lead:<4}  {name}: {}", pairs.join(" "));
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
        (out, TableWidths(widths))
    }

    /// Only the peers whose state is one of `states` (for `status --state` with `--json`).
    pub fn retain_states(&mut self, states: &[PeerState]) {
        self.peers.retain(|p| states.contains(&p.state));
    }

    /// Whether every peer is alive, as a monitoring check wants it (`status --check`).
    pub fn health(&self) -> Health {
        Health {
            alive: self
                .peers
                .iter()
                .filter(|p| p.state == PeerState::Alive)
                .count(),
            peers: self.peers.len(),
            not_alive: self
                .peers
                .iter()
                .filter(|p| p.state != PeerState::Alive)
                .map(|p| (p.name.clone(), p.state))
                .collect(),
            conflicts: self
                .peers
                .iter()
                .filter(|p| p.diagnosis == Diagnosis::Conflict)
                .map(|p| p.name.clone())
                .collect(),
            node: self.identity_conflict.then(|| self.node.clone()),
            unresolved: self
                .peers
                .iter()
                .filter(|p| p.diagnosis == Diagnosis::Unresolved)
                .map(|p| p.name.clone())
                .collect(),
        }
    }
}

/// How [`StatusReport::render_table`] draws the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableOptions {
    /// ANSI colours for the states (for a terminal).
    pub color: bool,
    /// Show only the peers in these states (the header still counts them all); `None`:
    /// every peer.
    pub states: Option<Vec<PeerState>>,
    /// The least width of each column, e.g. those of the frame before.
    pub widths: TableWidths,
}

/// The widths of the table's nine columns, in characters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableWidths(pub [usize; 9]);

/// The verdict of a monitoring check over the peer table ([`StatusReport::health`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// Peers `alive`.
    pub alive: usize,
    /// Peers in all.
    pub peers: usize,
    /// The others, with their state, in config order.
    pub not_alive: Vec<(String, PeerState)>,
    /// Peers two processes claim at once (diagnosis `conflict`), in config order.
    pub conflicts: Vec<String>,
    /// This node's name, when another process seems to run with it.
    pub node: Option<String>,
    /// Peers whose host names have not resolved (among `not_alive`, named `unresolved` in
    /// the line rather than by their state).
    pub unresolved: Vec<String>,
}

impl Health {
    /// Whether every peer is alive and no name is claimed twice.
    pub fn ok(&self) -> bool {
        self.not_alive.is_empty() && self.conflicts.is_empty() && self.node.is_none()
    }

    /// The one line of a Nagios-style check: `PEERMESH OK - 4/4 peers alive`, or
    /// `PEERMESH WARNING - 1/4 peers not alive: web3 dead`, with `; two processes claim to be
    /// web2` for each conflict.
    pub fn line(&self) -> String {
        if self.ok() {
            return format!("PEERMESH OK - {}/{} peers alive", self.alive, self.peers);
        }
        let mut parts = Vec::new();
        if !self.not_alive.is_empty() {
            let which: Vec<String> = self
                .not_alive
                .iter()
                .map(|(name, state)| match self.unresolved.contains(name) {
                    true => format!("{name} unresolved"),
                    false => format!("{name} {state}"),
                })
                .collect();
            parts.push(format!(
                "{}/{} peers not alive: {}",
                self.not_alive.len(),
                self.peers,
                which.join(", ")
            ));
        }
        if let Some(node) = &self.node {
            parts.push(format!("another process is running as {node}"));
        }
        for name in &self.conflicts {
            parts.push(format!("two processes claim to be {name}"));
        }
        format!("PEERMESH WARNING - {}", parts.join("; "))
    }
}

/// Whether a peer in `state` shows RTT figures (`rtt_us`, `jitter_us`): only `alive` and
/// `suspect` ones do. The matrix follows the same rule for its cells.
pub fn has_rtt(state: PeerState) -> bool {
    matches!(state, PeerState::Alive | PeerState::Suspect)
}

/// Whether the diagnosis tells more than the state (it is shown beside it): not when it
/// is `ok` or only repeats the state.
fn says_more(state: PeerState, diagnosis: Diagnosis) -> bool {
    let repeats = match diagnosis {
        Diagnosis::Ok => true,
        Diagnosis::Asymmetric
        | Diagnosis::Conflict
        | Diagnosis::Unresolved
        | Diagnosis::FamilyMismatch => false,
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

use super::units::{ago, TimeUnit};
pub use super::units::{human_duration, human_us};

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
        // An estimate from coordinates for the live peer, none for the dead one.
        let estimate = peers[0]["estimated_rtt_us"].as_f64().unwrap_or(0.0);
        assert!((estimate - 500.0).abs() < 150.0, "{estimate}");
        assert!(peers[1]["estimated_rtt_us"].is_null());
        assert!(json["coordinate"]["error"].as_f64().unwrap_or(9.0) < 1.5);
        assert_eq!(
            json["coordinate"]["vec_us"].as_array().map(Vec::len),
            Some(4)
        );
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
            received_bytes: 70,
            recv_errors: 5,
            send_errors: 4,
            send_queue_full: 3,
            sent: 2,
            sent_bytes: 140,
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
            tags: BTreeMap::new(),
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
                    tags: BTreeMap::new(),
                    resolve_error: None,
                    estimated_rtt_us: Some(75.5),
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
                    tags: BTreeMap::new(),
                    resolve_error: None,
                    estimated_rtt_us: None,
                },
            ],
            dropped: BTreeMap::from([("auth_failed".to_owned(), 3), ("malformed".to_owned(), 0)]),
            io: Some(IoCounters {
                received: 8,
                received_bytes: 592,
                recv_errors: 0,
                send_errors: 0,
                send_queue_full: 0,
                sent: 8,
                sent_bytes: 600,
            }),
            coordinate: Some(CoordinateReport {
                vec_us: vec![1.0, 2.0, 3.0, 4.0],
                height_us: 10.0,
                error: 0.25,
            }),
            probe_mode: Some("full".to_owned()),
        };
        assert_eq!(
            report.to_json(),
            concat!(
                r#"{"node":"alpha","incarnation":117677105266917554,"uptime_ms":2252,"#,
                r#""heartbeat_interval_ms":1000,"identity_conflict":false,"tags":{},"#,
                r#""peers":[{"name":"beta","addr":"127.0.0.2:1313","#,
                r#""state":"alive","diagnosis":"asymmetric","rtt_us":{"last":76.311,"#,
                r#""min":76.311,"avg":79.372,"p50":76.311,"p99":82.433},"jitter_us":0.383,"#,
                r#""loss_pct":0.0,"last_heard_ms":747,"sent":4,"received":4,"#,
                r#""seen_addr":"10.1.1.1:1313","incarnation":"01a212b429ab1aed","tags":{},"#,
                r#""estimated_rtt_us":75.5},"#,
                r#"{"name":"gamma","addr":"127.0.0.3:1313","state":"unknown","#,
                r#""diagnosis":"unreachable","rtt_us":null,"jitter_us":null,"loss_pct":0.0,"#,
                r#""last_heard_ms":null,"sent":2,"received":0,"incarnation":null,"tags":{},"#,
                r#""estimated_rtt_us":null}],"#,
                r#""dropped":{"auth_failed":3,"malformed":0},"#,
                r#""io":{"received":8,"received_bytes":592,"recv_errors":0,"send_errors":0,"#,
                r#""send_queue_full":0,"sent":8,"sent_bytes":600},"#,
                r#""coordinate":{"vec_us":[1.0,2.0,3.0,4.0],"height_us":10.0,"error":0.25},"#,
                r#""probe_mode":"full"}"#
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
    fn dead_and_left_peers_show_no_rtt_in_the_json_or_the_table() {
        let report = busy_report();
        for peer in &report.peers {
            let measured = peer.rtt_us.is_some();
            assert_eq!(measured, has_rtt(peer.state), "{peer:?}");
            assert_eq!(peer.jitter_us.is_some(), measured, "{peer:?}");
        }
        let table = report.to_table(false);
        for (state, row) in [("dead", "node2"), ("left", "node3")] {
            let line = table
                .lines()
                .find(|l| l.starts_with(row))
                .unwrap_or_else(|| panic!("{table}"));
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cells[2], state, "{table}");
            assert_eq!(&cells[3..7], ["-", "-", "-", "-"], "{table}");
        }
    }

    /// A report of peers with the given RTTs (µs; `None`: dead) for table tests.
    fn report_with(rtts: &[Option<f64>]) -> StatusReport {
        let peers = rtts
            .iter()
            .enumerate()
            .map(|(i, rtt)| PeerReport {
                name: format!("p{i}"),
                addr: format!("127.0.0.{}:1313", i + 2),
                state: if rtt.is_some() {
                    PeerState::Alive
                } else {
                    PeerState::Dead
                },
                diagnosis: Diagnosis::Ok,
                rtt_us: rtt.map(|v| RttReport {
                    last: v,
                    min: v,
                    avg: v,
                    p50: v,
                    p99: v,
                }),
                jitter_us: rtt.map(|v| v / 10.0),
                loss_pct: 0.0,
                last_heard_ms: Some(12_040),
                sent: 1,
                received: 1,
                seen_addr: None,
                incarnation: None,
                rival_addr: None,
                tags: BTreeMap::new(),
                resolve_error: None,
                estimated_rtt_us: None,
            })
            .collect();
        StatusReport {
            node: "me".to_owned(),
            incarnation: 1,
            uptime_ms: 1000,
            heartbeat_interval_ms: 1000,
            identity_conflict: false,
            tags: BTreeMap::new(),
            peers,
            dropped: BTreeMap::new(),
            io: None,
            coordinate: None,
            probe_mode: None,
        }
    }

    #[test]
    fn each_column_of_times_has_one_unit_and_ages_read_ago() {
        let table = report_with(&[Some(581.0), Some(6320.0), None]).to_table(false);
        let rows: Vec<Vec<&str>> = table
            .lines()
            .skip(2)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            &rows[0][3..7],
            ["0.58ms", "0.58ms", "0.58ms", "58µs"],
            "{table}"
        );
        assert_eq!(
            &rows[1][3..7],
            ["6.32ms", "6.32ms", "6.32ms", "632µs"],
            "{table}"
        );
        assert_eq!(&rows[2][3..7], ["-", "-", "-", "-"], "{table}");
        assert!(
            table.lines().skip(2).all(|l| l.ends_with("12.0s ago")),
            "{table}"
        );
        // Right-aligned with the same decimals: the units line up.
        let at: Vec<Option<usize>> = table
            .lines()
            .skip(2)
            .take(2)
            .map(|l| l.find("ms"))
            .collect();
        assert_eq!(at[0], at[1], "{table}");
    }

    #[test]
    fn widths_carried_from_frame_to_frame_never_shrink() {
        let wide = report_with(&[Some(123_456.0)]);
        let narrow = report_with(&[Some(5.0)]);
        let (first, widths) = wide.render_table(&TableOptions::default());
        let (second, _) = narrow.render_table(&TableOptions {
            widths,
            ..TableOptions::default()
        });
        let header = |t: &str| t.lines().nth(1).unwrap_or_default().to_owned();
        assert_eq!(header(&first), header(&second), "{first}{second}");
        let alone = narrow.to_table(false);
        assert!(header(&alone).len() < header(&second).len(), "{alone}");
    }

    #[test]
    fn a_state_filter_shows_those_peers_and_says_so() {
        let report = report_with(&[Some(50.0), None, Some(60.0)]);
        let (table, _) = report.render_table(&TableOptions {
            states: Some(vec![PeerState::Dead, PeerState::Unreachable]),
            ..TableOptions::default()
        });
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].ends_with(
                "2/3 peers alive, heartbeat every 1000 ms; showing 1 peer: dead, unreachable"
            ),
            "{table}"
        );
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[2].starts_with("p1 "), "{table}");
        let mut only = report.clone();
        only.retain_states(&[PeerState::Alive]);
        let names: Vec<&str> = only.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["p0", "p2"]);
    }

    #[test]
    fn health_is_ok_only_when_every_peer_is_alive() {
        let ok = report_with(&[Some(50.0), Some(60.0)]).health();
        assert!(ok.ok());
        assert_eq!(ok.line(), "PEERMESH OK - 2/2 peers alive");
        let mut report = report_with(&[Some(50.0), None, Some(60.0), None]);
        report.peers[3].state = PeerState::Left;
        let bad = report.health();
        assert!(!bad.ok());
        assert_eq!(
            bad.line(),
            "PEERMESH WARNING - 2/4 peers not alive: p1 dead, p3 left"
        );
    }

    #[test]
    fn health_is_not_ok_while_a_name_is_claimed_twice() {
        let mut report = report_with(&[Some(50.0), Some(60.0)]);
        report.peers[1].diagnosis = Diagnosis::Conflict;
        let health = report.health();
        assert!(!health.ok());
        assert_eq!(
            health.line(),
            "PEERMESH WARNING - two processes claim to be p1"
        );
        report.peers[1].diagnosis = Diagnosis::Ok;
        report.identity_conflict = true;
        report.peers[0].state = PeerState::Dead;
        assert_eq!(
            report.health().line(),
            "PEERMESH WARNING - 1/2 peers not alive: p0 dead; another process is running as me"
        );
    }
}
