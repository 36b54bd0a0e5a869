//! `peermesh nearest`: the alive peers with the lowest RTT median among those whose tags
//! match, chosen from a status report, so a script picks the closest replica in one line.

use crate::core::peer::PeerState;
use crate::core::tags::holds_all;
use crate::report::status::StatusReport;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The nearest matching peers (the `nearest` object of the control protocol).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NearestReport {
    /// The peers with the lowest RTT median, in config order: more than one only on a tie;
    /// empty when no alive peer with an RTT matches.
    pub nodes: Vec<String>,
    /// Their RTT median in microseconds; null when `nodes` is empty.
    pub rtt_us: Option<f64>,
}

/// The alive peers of `report` that carry every `(key, value)` of `tags` and have the
/// lowest RTT median (all of them on a tie). Peers without an RTT yet are skipped.
pub fn nearest(report: &StatusReport, tags: &BTreeMap<String, String>) -> NearestReport {
    let matching = report
        .peers
        .iter()
        .filter(|peer| peer.state == PeerState::Alive && holds_all(Some(&peer.tags), tags.iter()));
    let mut best: Option<f64> = None;
    let mut nodes = Vec::new();
    for peer in matching {
        let Some(p50) = peer.rtt_us.as_ref().map(|r| r.p50) else {
            continue;
        };
        match best {
            Some(b) if p50 > b => {}
            Some(b) if p50 == b => nodes.push(peer.name.clone()),
            _ => {
                best = Some(p50);
                nodes.clear();
                nodes.push(peer.name.clone());
            }
        }
    }
    NearestReport {
        nodes,
        rtt_us: best,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::status::{PeerReport, RttReport};
    use crate::Diagnosis;

    fn peer(name: &str, state: PeerState, p50: Option<f64>, tags: &[(&str, &str)]) -> PeerReport {
        PeerReport {
            name: name.to_owned(),
            addr: "127.0.0.1:1".to_owned(),
            state,
            diagnosis: Diagnosis::Unknown,
            rtt_us: p50.map(|p50| RttReport {
                last: p50,
                min: p50,
                avg: p50,
                p50,
                p99: p50,
            }),
            jitter_us: p50.map(|_| 0.0),
            loss_pct: 0.0,
            last_heard_ms: None,
            sent: 0,
            received: 0,
            seen_addr: None,
            incarnation: None,
            rival_addr: None,
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            resolve_error: None,
            estimated_rtt_us: None,
        }
    }

    #[test]
    fn the_closest_alive_match_wins_and_ties_are_all_named() {
        let report = StatusReport {
            node: "me".to_owned(),
            incarnation: 1,
            uptime_ms: 0,
            heartbeat_interval_ms: 1000,
            identity_conflict: false,
            tags: BTreeMap::new(),
            peers: vec![
                peer("far", PeerState::Alive, Some(900.0), &[("role", "db")]),
                peer("dead", PeerState::Dead, Some(1.0), &[("role", "db")]),
                peer("web", PeerState::Alive, Some(5.0), &[("role", "web")]),
                peer("near", PeerState::Alive, Some(50.0), &[("role", "db")]),
                peer("twin", PeerState::Alive, Some(50.0), &[("role", "db")]),
                peer("new", PeerState::Alive, None, &[("role", "db")]),
            ],
            dropped: BTreeMap::new(),
            io: None,
            coordinate: None,
            probe_mode: None,
        };
        let db: BTreeMap<String, String> = [("role".to_owned(), "db".to_owned())].into();
        let found = nearest(&report, &db);
        assert_eq!(found.nodes, ["near", "twin"]);
        assert_eq!(found.rtt_us, Some(50.0));
        assert_eq!(nearest(&report, &BTreeMap::new()).nodes, ["web"]);
        let none: BTreeMap<String, String> = [("role".to_owned(), "cache".to_owned())].into();
        assert_eq!(nearest(&report, &none), NearestReport::default());
    }
}
