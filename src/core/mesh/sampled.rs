//! Sampled mode, wired to the mesh: the round of probes, indirect probes through other
//! nodes, the verdicts this node raises, and the membership updates it merges and passes
//! on. See [`crate::core::sampling`] for the plan and [`crate::core::membership`] for the
//! records; docs/ARCHITECTURE.md, "Sampled mode", for the design and its numbers.

use super::{Mesh, Outgoing, Transmit};
use crate::core::coordinate::Coordinate;
use crate::core::drops::DropReason;
use crate::core::membership::{retransmit_limit, Merged};
use crate::core::peer::PeerState;
use crate::core::sampling::Outcome;
use crate::core::timer::Timer;
use crate::wire::identity::NodeId;
use crate::wire::{
    Body, MemberEntry, MemberUpdate, MemberUpdates, SharedCoordinate, Verdict,
    MAX_COORDINATE_AGE_DS, MEMBER_UPDATE_LEN, PONG_LEN,
};
use log::{info, trace, warn};

/// At most this many membership updates ride on one Pong (fewer when the datagram size
/// leaves less room): 16 × 55 bytes, so a Pong stays under 1,000 bytes.
pub(crate) const MAX_UPDATES_PER_PONG: usize = 16;

impl Mesh {
    /// The mode just became sampled: this node announces itself to the mesh.
    pub(super) fn start_sampled(&mut self) {
        let incarnation = self.settings.incarnation;
        self.membership
            .announce(self.id, incarnation, Verdict::Alive);
    }

    /// This node's own record, as anti-entropy sends it.
    fn own_update(&self) -> MemberUpdate {
        MemberUpdate {
            subject: self.id,
            incarnation: self.settings.incarnation,
            version: self.membership.own_version(),
            verdict: if self.leaving {
                Verdict::Left
            } else {
                Verdict::Alive
            },
            reporter: self.id,
        }
    }

    /// One round, once an interval: judges the round that ended, does the interval's
    /// bookkeeping, and probes the next round's targets.
    pub(super) fn sampled_round(&mut self) {
        let mut outcomes = Vec::new();
        self.sampling.end_round(&mut outcomes);
        for &(key, outcome) in &outcomes {
            self.judge_probe(key, outcome);
        }
        self.confirm_suspicions();
        self.refresh_row();
        self.expire_conflicts();
        self.tend_messages();
        // Rows older than the dead time testify to nothing: their memory is freed, so a
        // node holds the rows of its recent probers only (O(fanout), not O(N)).
        let cutoff = self.now.checked_sub(self.settings.dead_after);
        if let Some(cutoff) = cutoff {
            self.matrix.expire(cutoff);
        }
        if self.sampling.near_due() {
            self.choose_near();
        }
        let mut unprobed = Vec::new();
        self.sampling.no_longer_probed(&mut unprobed);
        for key in unprobed {
            if let Some(peer) = self.peers.get_mut(key) {
                peer.forget_measurement();
            }
        }
        self.round += 1;
        let peers = &self.peers;
        let targets = self.sampling.start_round(self.now_ns, |key| {
            peers
                .get(key)
                .is_some_and(|p| !matches!(p.state(), PeerState::Left | PeerState::Dead))
        });
        for &key in targets {
            self.outgoing.push_back(Outgoing::Ping(key));
        }
        let half = self.schedule.interval_ns() / 2;
        self.timers.insert(
            self.now_ns.saturating_add(half),
            Timer::IndirectProbes { round: self.round },
        );
    }

    /// Half a round in: each target that has not answered is probed through
    /// [`crate::core::sampling::INDIRECT_PROBES`] other nodes.
    pub(super) fn send_indirect_probes(&mut self) {
        let mut silent = Vec::new();
        self.sampling.unanswered(&mut silent);
        let mut helpers = Vec::new();
        for target in silent {
            let peers = &self.peers;
            self.sampling.helpers(
                target,
                |key| {
                    peers
                        .get(key)
                        .is_some_and(|p| p.state() == PeerState::Alive)
                },
                &mut helpers,
            );
            if self.outgoing.len() + helpers.len() > self.queue_limit() {
                return;
            }
            for &via in &helpers {
                self.outgoing
                    .push_back(Outgoing::IndirectPing { peer: via, target });
            }
        }
    }

    /// What this round's probes of `key` came to.
    fn judge_probe(&mut self, key: usize, outcome: Outcome) {
        let Some(record) = self.membership.record(key).copied() else {
            // Never heard of, by anyone: it is unknown, not suspect.
            return;
        };
        if let Outcome::Silent { .. } = outcome {
            if record.verdict == Verdict::Alive {
                let suspicion = MemberUpdate {
                    verdict: Verdict::Suspect,
                    reporter: self.id,
                    ..record.update(self.peers[key].id())
                };
                info!(
                    "{}: peer {} does not answer direct or indirect probes: suspect",
                    self.name,
                    self.peers[key].name()
                );
                self.membership.merge(key, suspicion);
            }
        }
        self.apply_member_state(key);
    }

    /// A suspicion this node raised or joined turns into `dead` once the peer has been
    /// silent to this node's probes for the dead time, and at least two probers suspect
    /// it (so one broken path kills no node).
    fn confirm_suspicions(&mut self) {
        let dead_ns = u64::try_from(self.settings.dead_after.as_nanos()).unwrap_or(u64::MAX);
        let silent: Vec<usize> = self.sampling.silent().collect();
        for key in silent {
            let Some(since) = self.sampling.silent_since(key) else {
                continue;
            };
            let Some(record) = self.membership.record(key).copied() else {
                continue;
            };
            if record.verdict != Verdict::Suspect
                || self.now_ns.saturating_sub(since) < dead_ns
                || record.suspectors() < 2
            {
                continue;
            }
            warn!(
                "{}: peer {} silent to this node's probes for {:?} and suspected by two \
                 probers: dead",
                self.name,
                self.peers[key].name(),
                self.settings.dead_after
            );
            let verdict = MemberUpdate {
                verdict: Verdict::Dead,
                reporter: self.id,
                ..record.update(self.peers[key].id())
            };
            self.membership.merge(key, verdict);
            self.sampling.clear_silence(key);
            self.apply_member_state(key);
        }
    }

    /// Sets peer `key`'s state from its record and this node's own probes of it.
    pub(super) fn apply_member_state(&mut self, key: usize) {
        let Some(record) = self.membership.record(key) else {
            return;
        };
        let state = match record.verdict {
            Verdict::Alive if self.sampling.track(key).unreachable() => PeerState::Unreachable,
            Verdict::Alive => PeerState::Alive,
            Verdict::Suspect => PeerState::Suspect,
            Verdict::Dead => PeerState::Dead,
            Verdict::Left => PeerState::Left,
        };
        if self.peers.get(key).is_some_and(|p| p.state() != state) {
            self.set_state(key, state);
        }
    }

    /// The updates a Pong carried: merged, passed on when they changed something, and a
    /// suspicion of this node refuted.
    pub(super) fn merge_members(&mut self, members: MemberUpdates<'_>) {
        for entry in members.iter() {
            let update = entry.update;
            if update.subject == self.id {
                if !self.leaving
                    && self
                        .membership
                        .refute(self.id, self.settings.incarnation, &update)
                {
                    info!(
                        "{}: refuting a {:?} verdict on this node (version {})",
                        self.name,
                        update.verdict,
                        self.membership.own_version()
                    );
                }
                continue;
            }
            let Some(key) = self.peers.by_id(update.subject) else {
                continue;
            };
            if let Some(shared) = entry.coordinate {
                self.take_shared_coordinate(key, shared);
            }
            let before = self.membership.record(key).map(|r| r.incarnation);
            if let Merged::Changed(verdict) = self.membership.merge(key, update) {
                trace!(
                    "{}: {} is {verdict:?} (version {}, from {:016x})",
                    self.name,
                    self.peers[key].name(),
                    update.version,
                    update.reporter.0
                );
                if before.is_some_and(|inc| inc < update.incarnation) {
                    // A new process of it: what this node's probes said of the old one is
                    // no evidence against the new one.
                    self.sampling.clear_silence(key);
                }
                if verdict == Verdict::Alive {
                    self.sampling.clear_silence(key);
                }
                self.apply_member_state(key);
            }
        }
    }

    /// A valid datagram came from peer `key` (sampled mode): direct contact.
    pub(super) fn heard_sampled(&mut self, key: usize) {
        let peer = &self.peers[key];
        if let Some(incarnation) = peer.incarnation() {
            self.membership.note_contact(key, peer.id(), incarnation);
        }
        self.apply_member_state(key);
    }

    /// Leaving in sampled mode: a Leave to this round's peers and the near set, and the
    /// `left` record passed on by them, rather than a datagram to every node.
    pub(super) fn leave_sampled(&mut self) {
        let incarnation = self.settings.incarnation;
        self.membership
            .announce(self.id, incarnation, Verdict::Left);
        let peers = &self.peers;
        let targets: Vec<usize> = self
            .sampling
            .start_round(self.now_ns, |key| {
                peers
                    .get(key)
                    .is_some_and(|p| p.state() == PeerState::Alive)
            })
            .to_vec();
        let mut sent = Vec::new();
        for key in targets.into_iter().chain(self.sampling.near().to_vec()) {
            if !sent.contains(&key) {
                sent.push(key);
                self.outgoing.push_back(Outgoing::Leave(key));
            }
        }
    }

    /// A Leave came from peer `key` (sampled mode): its `left` record, passed on.
    pub(super) fn heard_leave_sampled(&mut self, key: usize, incarnation: u64) {
        let version = self
            .membership
            .record(key)
            .filter(|r| r.incarnation == incarnation)
            .map_or(0, |r| r.version);
        let subject = self.peers[key].id();
        self.membership.merge(
            key,
            MemberUpdate {
                subject,
                incarnation,
                version,
                verdict: Verdict::Left,
                reporter: subject,
            },
        );
    }

    /// Encodes the updates the next Pong carries into `member_buf`, for a datagram buffer
    /// of `buf_len` bytes; returns their length in bytes.
    pub(super) fn fill_members(&mut self, buf_len: usize) -> usize {
        let room = buf_len.min(self.inner_max()).saturating_sub(PONG_LEN) / MEMBER_UPDATE_LEN;
        let room = room.min(MAX_UPDATES_PER_PONG);
        let limit = retransmit_limit(self.peers.len() + 1);
        let own = self.own_update();
        let mut updates = Vec::with_capacity(room);
        let peers = &self.peers;
        self.membership.piggyback(
            room,
            limit,
            own,
            peers.slot_bound(),
            |key| peers.get(key).map(|peer| peer.id()),
            &mut updates,
        );
        self.member_buf.resize(updates.len() * MEMBER_UPDATE_LEN, 0);
        for (&update, at) in updates.iter().zip(0..) {
            let entry = MemberEntry {
                update,
                coordinate: self.shared_coordinate(update.subject),
            };
            let out = &mut self.member_buf[at * MEMBER_UPDATE_LEN..(at + 1) * MEMBER_UPDATE_LEN];
            if let Ok(out) = <&mut [u8; MEMBER_UPDATE_LEN]>::try_from(out) {
                entry.emit(out);
            }
        }
        self.member_buf.len()
    }

    /// The copy of `subject`'s coordinate an update of it carries: this node's own, fresh;
    /// a peer's as held, with its age.
    fn shared_coordinate(&self, subject: NodeId) -> Option<SharedCoordinate> {
        let (coordinate, fresh_ns) = if subject == self.id {
            (self.coordinate.to_wire(), self.now_ns)
        } else {
            self.peers
                .get(self.peers.by_id(subject)?)?
                .coordinate_with_time()?
        };
        let age_ds = self.now_ns.saturating_sub(fresh_ns) / 100_000_000;
        Some(SharedCoordinate {
            age_ds: u16::try_from(age_ds)
                .map_or(MAX_COORDINATE_AGE_DS, |a| a.min(MAX_COORDINATE_AGE_DS)),
            coordinate,
        })
    }

    /// A copy of peer `key`'s coordinate another node passed on: kept when it is fresher
    /// than the one held (copies of this node's own never get here).
    fn take_shared_coordinate(&mut self, key: usize, shared: SharedCoordinate) {
        let Some(coordinate) = Coordinate::from_wire(&shared.coordinate) else {
            return;
        };
        let age_ns = u64::from(shared.age_ds) * 100_000_000;
        let fresh_ns = self.now_ns.saturating_sub(age_ns);
        self.peers[key].offer_coordinate(coordinate, fresh_ns);
    }

    /// The near set: of [`crate::core::sampling::NEAR_CANDIDATES`] peers drawn at random,
    /// those with the smallest RTT, measured where this node has a median, estimated by
    /// coordinates elsewhere; the estimated ones get measured by being probed.
    fn choose_near(&mut self) {
        let want = self.sampling.fanout() / 2;
        let own = Some(self.coordinate).filter(Coordinate::is_settled);
        let mut candidates = Vec::new();
        self.sampling.draw_candidates(&mut candidates);
        let mut ranked: Vec<(u64, usize)> = candidates
            .into_iter()
            .filter_map(|key| Some((key, self.peers.get(key)?)))
            .filter(|(_, p)| p.state() == PeerState::Alive)
            .filter_map(|(key, p)| {
                let rtt = p.rtt_p50_ns().or_else(|| {
                    let theirs = p.coordinate().filter(|c| c.is_settled())?;
                    let estimate = own?.estimate_rtt(&theirs);
                    u64::try_from(estimate.as_nanos()).ok()
                })?;
                Some((rtt, key))
            })
            .collect();
        if ranked.len() > want {
            ranked.select_nth_unstable(want);
            ranked.truncate(want);
        }
        ranked.sort_unstable();
        self.sampling
            .set_near(ranked.into_iter().map(|(_, key)| key).collect());
    }

    /// The Ping of an indirect probe of `target`, as the inner datagram of a Relay to
    /// `via`. It takes a probe number of `target`'s, so its Pong is matched like any.
    pub(super) fn encode_indirect_ping(
        &mut self,
        via: usize,
        target: usize,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        self.peers.get(target)?;
        let sent_ns = self.now_ns;
        let probe = self.peers[target].send_probe(sent_ns);
        let body = Body::Ping {
            probe,
            sent_ns,
            row: None,
        };
        self.emit_via(target, Some(via), body, buf)
    }

    /// A Ping of `asker` relayed by `via`: answered by a Pong back through `via`.
    pub(super) fn answer_relayed_ping(
        &mut self,
        via: usize,
        asker: usize,
        probe: u32,
        sent_ns: u64,
    ) {
        if self.outgoing.len() >= self.queue_limit() {
            return;
        }
        trace!(
            "{}: indirect probe of {} through {}",
            self.name,
            self.peers[asker].name(),
            self.peers[via].name()
        );
        self.outgoing.push_back(Outgoing::RelayedPong {
            peer: via,
            asker,
            probe,
            echo_ns: sent_ns,
            received_ns: self.now_ns,
        });
    }

    /// The Pong of an indirect probe, through `via` to `asker`: no membership updates, so
    /// it is no larger than the Ping that asked for it.
    pub(super) fn encode_relayed_pong(
        &mut self,
        via: usize,
        asker: usize,
        probe: u32,
        echo_ns: u64,
        received_ns: u64,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        self.peers.get(asker)?;
        let held = self.now_ns.saturating_sub(received_ns) / 1000;
        let body = Body::Pong {
            probe,
            echo_ns,
            hold_us: u32::try_from(held).unwrap_or(u32::MAX),
            coordinate: self.coordinate.to_wire(),
            members: MemberUpdates::EMPTY,
        };
        self.emit_via(asker, Some(via), body, buf)
    }

    /// The Pong of one of this node's indirect probes of `key` came back: it runs. No RTT
    /// sample (the detour is not the path).
    pub(super) fn on_relayed_pong(&mut self, key: usize, probe: u32, echo_ns: u64) {
        if !self.peers[key].answer_probe(probe, echo_ns) {
            return self.dropped.bump(DropReason::StalePong);
        }
        trace!(
            "{}: {} answered an indirect probe",
            self.name,
            self.peers[key].name()
        );
        self.sampling.answered_indirectly(key);
    }
}
