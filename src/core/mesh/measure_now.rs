//! Probes out of turn: a caller that needs a measured figure now (the control API's
//! `nearest`, which picks its candidates by estimate in sampled mode) asks for a peer to be
//! probed at once, and hears back with [`Event::Measured`] when its Pong comes. In sampled
//! mode the windows the probe opens are let go with the turn's (6 rounds after the last
//! probe, `core/sampling.rs`), so asking costs no memory that stays.

use super::{Mesh, Outgoing};
use crate::core::event::Event;
use crate::core::peer::{Peer, PeerState};
use crate::core::peer_table::PeerId;
use std::time::Duration;

/// At most this many probes on demand wait for their Pong; past it [`Mesh::measure_now`]
/// refuses (a client asking in a loop cannot grow the node's memory or its sends).
pub const MAX_MEASURING: usize = 64;

/// How many candidates [`Mesh::closer_by_estimate`] names at most: what a `nearest` in
/// sampled mode probes before it answers.
pub const NEAREST_PROBES: usize = 8;

/// A candidate is worth measuring when its estimate is below the best measured RTT times
/// this: a margin for the estimates' error (p90 about 20-27 %, docs/PERFORMANCE.md).
pub const ESTIMATE_MARGIN: f64 = 1.3;

/// A probe on demand waiting for its Pong.
#[derive(Clone, Copy, Debug)]
pub(super) struct Measuring {
    pub(super) peer: PeerId,
    sent_ns: u64,
}

impl Mesh {
    /// Probes `peer` now, out of turn. When its Pong comes back within `suspect_after`,
    /// [`Event::Measured`] gives the round trip, and from then on [`crate::Peer::rtt`]
    /// includes it. Returns `false`, sending nothing, when `peer` is not a current peer,
    /// is `dead`, `left` or not heard of yet, or [`MAX_MEASURING`] probes already wait.
    /// A peer already waited for is not probed twice (`true`: its answer is coming).
    pub fn measure_now(&mut self, peer: PeerId) -> bool {
        self.expire_measuring();
        let Some(key) = self.peers.key(peer) else {
            return false;
        };
        if self.measuring.iter().any(|m| m.peer == peer) {
            return true;
        }
        let state = self.peers[key].state();
        if matches!(
            state,
            PeerState::Dead | PeerState::Left | PeerState::Unknown
        ) || self.measuring.len() >= MAX_MEASURING
            || self.outgoing.len() >= self.queue_limit()
        {
            return false;
        }
        self.measuring.push(Measuring {
            peer,
            sent_ns: self.now_ns,
        });
        if self.is_sampled() {
            self.sampling.probed_out_of_turn(key);
        }
        self.outgoing.push_back(Outgoing::Ping(key));
        true
    }

    /// The alive peers that `accept` takes, that this node holds no RTT of, and that the
    /// coordinates put closer than `best` (the best RTT measured among those `accept`
    /// takes, with [`ESTIMATE_MARGIN`]; any, when `None`): the closest by estimate first,
    /// at most [`NEAREST_PROBES`]; peers without an estimate last. What to
    /// [`Mesh::measure_now`] before naming the nearest of a set of peers by measurement.
    pub fn closer_by_estimate(
        &self,
        accept: impl Fn(PeerId, &Peer) -> bool,
        best: Option<Duration>,
    ) -> Vec<PeerId> {
        let bound_s = best.map_or(f64::INFINITY, |b| b.as_secs_f64() * ESTIMATE_MARGIN);
        let mut candidates: Vec<(f64, PeerId)> = self
            .peers()
            .filter(|(_, peer)| peer.state() == PeerState::Alive && peer.rtt().is_none())
            .filter(|&(id, peer)| accept(id, peer))
            .filter_map(|(id, _)| {
                let estimate_s = self
                    .estimate_rtt(None, Some(id))
                    .map_or(f64::INFINITY, |d| d.as_secs_f64());
                (best.is_none() || estimate_s < bound_s).then_some((estimate_s, id))
            })
            .collect();
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0));
        candidates.truncate(NEAREST_PROBES);
        candidates.into_iter().map(|(_, id)| id).collect()
    }

    /// A Pong of peer `key` gave `rtt_ns`: answers a probe on demand waiting for it.
    pub(super) fn answer_measuring(&mut self, key: usize, rtt_ns: u64) {
        if self.measuring.is_empty() {
            return;
        }
        self.expire_measuring();
        let peer = self.peers.id_of(key);
        if let Some(at) = self.measuring.iter().position(|m| m.peer == peer) {
            self.measuring.swap_remove(at);
            self.events.push_back(Event::Measured {
                peer,
                rtt: Duration::from_nanos(rtt_ns),
            });
        }
    }

    /// Forgets the probes on demand whose Pong can no longer come (older than
    /// `suspect_after`).
    fn expire_measuring(&mut self) {
        let wait_ns = u64::try_from(self.settings.suspect_after.as_nanos()).unwrap_or(u64::MAX);
        let now_ns = self.now_ns;
        self.measuring
            .retain(|m| now_ns.saturating_sub(m.sent_ns) <= wait_ns);
    }
}
