//! Liveness: how silence turns a peer `suspect`, then `dead` or `unreachable`, and what
//! the other nodes' rows testify (the witness diagnosis).
//!
//! Pure rules over numbers (nanoseconds and centiseconds on the node's clock); the mesh
//! applies their verdicts to its peers.

use crate::core::matrix::Matrix;
use crate::core::peer::{Peer, PeerState};
use crate::core::peer_table::PeerTable;
use crate::core::settings::Settings;
use std::time::Duration;

/// What this node concludes about a peer, using the other nodes' rows as witnesses.
/// Serialised as its lower-case name ([`Diagnosis::as_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Diagnosis {
    /// Alive, and it hears this node too.
    Ok,
    /// Alive here, but its row says it does not hear this node (one-way path).
    Asymmetric,
    /// Never heard, and no other node hears it either.
    Unknown,
    /// Silent past `suspect_after`; not judged yet.
    Suspect,
    /// Silent here, and no other node hears it: it is down.
    Dead,
    /// Silent here, but other nodes hear it: the path from here is broken.
    Unreachable,
    /// It left on purpose.
    Left,
    /// Two processes claim its identity from two addresses (a cloned machine, a second
    /// process started with its name): whatever its state says, it cannot be trusted
    /// until one of them stops.
    Conflict,
    /// Listed by a host name that has not resolved yet: not probed until it does. The core
    /// never concludes this (every peer it holds has an address); the daemon's reports say
    /// it of the peers still waiting for their names.
    Unresolved,
    /// Its address is of a family (IPv4, IPv6) this node's socket cannot send to (an IPv6
    /// peer of a node bound to an IPv4 address, an IPv4 one of a node bound to `::1`): it
    /// gets no heartbeats from here, whatever its state. Bind `[::]` to reach both.
    FamilyMismatch,
}

impl Diagnosis {
    /// The snake_case name used in the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Diagnosis::Ok => "ok",
            Diagnosis::Asymmetric => "asymmetric",
            Diagnosis::Unknown => "unknown",
            Diagnosis::Suspect => "suspect",
            Diagnosis::Dead => "dead",
            Diagnosis::Unreachable => "unreachable",
            Diagnosis::Left => "left",
            Diagnosis::Conflict => "conflict",
            Diagnosis::Unresolved => "unresolved",
            Diagnosis::FamilyMismatch => "family_mismatch",
        }
    }
}

/// Timings of the liveness rules, from the settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LivenessRules {
    suspect_ns: u64,
    dead_ns: u64,
    /// Liveness deadlines are rounded up to a multiple of this (an eighth of the shorter of
    /// interval and `suspect_after`, at least 1 ms), so that the checks of peers heard in
    /// the same burst share one wake-up instead of taking one each.
    grain_ns: u64,
    /// How long another node's "heard it" counts as testimony (`dead_after`).
    window_cs: u64,
    /// How much later than this node a witness must have heard a peer (two intervals).
    margin_cs: u64,
    /// How long a peer must have been alive before a one-way verdict (2 × `suspect_after`).
    settle_ns: u64,
}

/// What a silence check concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SilenceVerdict {
    /// The state to move to, if it changes.
    pub(crate) state: Option<PeerState>,
    /// When to check again (ns), if ever.
    pub(crate) recheck_at: Option<u64>,
}

impl LivenessRules {
    pub(crate) fn new(settings: &Settings) -> LivenessRules {
        let shorter = settings.heartbeat_interval.min(settings.suspect_after);
        LivenessRules {
            suspect_ns: saturating_ns(settings.suspect_after),
            dead_ns: saturating_ns(settings.dead_after),
            grain_ns: (saturating_ns(shorter) / 8).max(1_000_000),
            window_cs: (settings.dead_after.as_millis() / 10) as u64,
            margin_cs: (settings.heartbeat_interval.as_millis() / 5) as u64,
            settle_ns: saturating_ns(settings.suspect_after * 2),
        }
    }

    /// When a peer heard at `now_ns` is first checked.
    pub(crate) fn first_check(&self, now_ns: u64) -> u64 {
        now_ns.saturating_add(self.suspect_ns)
    }

    /// `at` rounded up to the grain: a check is at most one grain late, never early.
    pub(crate) fn round_up(&self, at: u64) -> u64 {
        at.div_ceil(self.grain_ns).saturating_mul(self.grain_ns)
    }

    /// A peer in `state`, last heard at `last_ns`, checked at `now_ns`. `heard_by_others`
    /// is asked only when the verdict is between `dead` and `unreachable`.
    pub(crate) fn on_silence(
        &self,
        state: PeerState,
        last_ns: u64,
        now_ns: u64,
        heard_by_others: impl FnOnce() -> bool,
    ) -> SilenceVerdict {
        let silent = now_ns.saturating_sub(last_ns);
        let (state, recheck_at) = match state {
            PeerState::Alive if silent >= self.suspect_ns => (
                Some(PeerState::Suspect),
                Some(last_ns.saturating_add(self.dead_ns)),
            ),
            PeerState::Alive => (None, Some(last_ns.saturating_add(self.suspect_ns))),
            // Dead only if nobody else hears it either; else the path from here is broken.
            // Re-judged every interval as the other rows come in.
            PeerState::Suspect if silent >= self.dead_ns => {
                let verdict = if heard_by_others() {
                    PeerState::Unreachable
                } else {
                    PeerState::Dead
                };
                (Some(verdict), None)
            }
            PeerState::Suspect => (None, Some(last_ns.saturating_add(self.dead_ns))),
            PeerState::Unknown | PeerState::Dead | PeerState::Left | PeerState::Unreachable => {
                (None, None)
            }
        };
        SilenceVerdict { state, recheck_at }
    }

    /// Whether `heard_cs`, the latest time (centiseconds) another node's fresh row says it
    /// heard `peer`, makes that node a witness that `peer` lives: recent, and at least two
    /// intervals after this node last heard it (a crash is seen by everyone at about the
    /// same time, and is no such witness).
    pub(crate) fn witnessed(&self, peer: &Peer, heard_cs: Option<u64>, now_ns: u64) -> bool {
        let Some(heard) = heard_cs else {
            return false;
        };
        let mine = peer.last_heard_ns().map(centis);
        centis(now_ns).saturating_sub(heard) < self.window_cs
            && mine.is_none_or(|mine| heard > mine + self.margin_cs)
    }

    /// Whether `peer` has been alive long enough for a one-way verdict.
    pub(crate) fn settled(&self, peer: &Peer, now_ns: u64) -> bool {
        peer.alive_since()
            .is_some_and(|t| now_ns.saturating_sub(t) >= self.settle_ns)
    }
}

/// Per peer slot, the latest time (centiseconds) another node's fresh row said it heard the
/// peer, as of the last gathering: one pass over the rows once an interval, so judging every
/// peer costs O(rows × peers) once an interval instead of once per peer, and a diagnosis
/// is O(1).
#[derive(Debug, Default)]
pub(crate) struct Witnesses {
    heard_cs: Vec<Option<u64>>,
    /// Per peer slot, what the fresh rows say of its state ([`Testimony`] bits).
    said: Vec<u8>,
}

/// Bits of [`Witnesses::said`]: which states the fresh rows gave a peer.
struct Testimony;

impl Testimony {
    const LEFT: u8 = 1;
    /// Alive or suspect: some node heard it lately.
    const LIVE: u8 = 2;
}

impl Witnesses {
    /// Gathers from the rows of `matrix` whose origin `is_fresh`.
    pub(crate) fn gather(
        &mut self,
        peers: &PeerTable,
        matrix: &Matrix,
        now_cs: u64,
        is_fresh: impl Fn(usize) -> bool,
    ) {
        let latest = &mut self.heard_cs;
        latest.clear();
        latest.resize(peers.slot_bound(), None);
        self.said.clear();
        self.said.resize(peers.slot_bound(), 0);
        for (origin, _) in peers.iter() {
            if !is_fresh(origin) {
                continue;
            }
            let Some(row) = matrix.row(origin) else {
                continue;
            };
            // Column 0 is this node; column key + 1 is peer `key`.
            for (key, cell) in row
                .cells
                .iter()
                .filter(|&(c, _)| c > 0)
                .map(|(c, x)| (c - 1, x))
            {
                if key == origin || key >= latest.len() {
                    continue;
                }
                self.said[key] |= match cell.state() {
                    PeerState::Left => Testimony::LEFT,
                    PeerState::Alive | PeerState::Suspect => Testimony::LIVE,
                    _ => 0,
                };
                let Some(age) = cell.heard_age_cs(now_cs) else {
                    continue;
                };
                let heard = now_cs.saturating_sub(age);
                latest[key] = Some(latest[key].map_or(heard, |l: u64| l.max(heard)));
            }
        }
    }

    /// Forgets everything (no peer needs witnesses this interval).
    pub(crate) fn clear(&mut self) {
        self.heard_cs.clear();
        self.said.clear();
    }

    /// Forgets the peer in slot `key` (removed).
    pub(crate) fn forget(&mut self, key: usize) {
        if let Some(slot) = self.heard_cs.get_mut(key) {
            *slot = None;
        }
        if let Some(said) = self.said.get_mut(key) {
            *said = 0;
        }
    }

    /// Whether the fresh rows say the peer in slot `key` left, and none says it is alive
    /// or suspect: it said goodbye to them before this node could hear it.
    pub(crate) fn say_left(&self, key: usize) -> bool {
        self.said.get(key).copied().unwrap_or(0) & (Testimony::LEFT | Testimony::LIVE)
            == Testimony::LEFT
    }

    /// The latest time another node heard the peer in slot `key`, as gathered.
    pub(crate) fn heard_cs(&self, key: usize) -> Option<u64> {
        self.heard_cs.get(key).copied().flatten()
    }
}

/// Centiseconds in `ns` nanoseconds.
pub(crate) fn centis(ns: u64) -> u64 {
    ns / 10_000_000
}

/// `d` in nanoseconds, saturating at `u64::MAX` (584 years).
pub(crate) fn saturating_ns(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn rules() -> LivenessRules {
        LivenessRules::new(&Settings {
            heartbeat_interval: Duration::from_millis(100),
            suspect_after: Duration::from_millis(300),
            dead_after: Duration::from_millis(500),
            max_datagram: 1232,
            incarnation: 1,
            seed: 1,
            probe_mode: crate::core::ProbeMode::Auto,
            probe_fanout: crate::core::DEFAULT_PROBE_FANOUT,
        })
    }

    #[test]
    fn silence_makes_a_peer_suspect_then_dead_or_unreachable() {
        let r = rules();
        let alive = r.on_silence(PeerState::Alive, 0, 299 * MS, || unreachable!());
        assert_eq!(
            alive,
            SilenceVerdict {
                state: None,
                recheck_at: Some(300 * MS)
            }
        );
        let suspect = r.on_silence(PeerState::Alive, 0, 300 * MS, || unreachable!());
        assert_eq!(suspect.state, Some(PeerState::Suspect));
        assert_eq!(suspect.recheck_at, Some(500 * MS));
        let dead = r.on_silence(PeerState::Suspect, 0, 500 * MS, || false);
        assert_eq!(
            dead,
            SilenceVerdict {
                state: Some(PeerState::Dead),
                recheck_at: None
            }
        );
        let cut_off = r.on_silence(PeerState::Suspect, 0, 500 * MS, || true);
        assert_eq!(cut_off.state, Some(PeerState::Unreachable));
        for settled in [PeerState::Dead, PeerState::Left, PeerState::Unknown] {
            assert_eq!(r.on_silence(settled, 0, u64::MAX, || true).state, None);
        }
    }

    #[test]
    fn checks_round_up_to_the_grain() {
        let r = rules();
        // The grain is an eighth of 100 ms.
        assert_eq!(r.round_up(1), 12_500_000);
        assert_eq!(r.round_up(12_500_000), 12_500_000);
    }
}
