//! Sampled mode's probe plan: whom this node probes each interval, and what came back.
//!
//! Each round (one interval) probes at most `fanout` peers: first those whose last probe
//! went unanswered (until they answer or are judged), then the nearest by RTT (measured, or
//! estimated by coordinates where not measured), then the next ones of a shuffled turn over
//! every peer, so each peer is probed by about `fanout / 2` others per interval and every
//! pair is measured once in a while. Work per round is O(fanout); the near set is chosen
//! again every [`NEAR_REFRESH_ROUNDS`] rounds (O(N)).

use crate::core::rng::Rng;
use std::collections::{HashMap, VecDeque};

/// How often, in rounds, the near set is chosen again.
pub(crate) const NEAR_REFRESH_ROUNDS: u64 = 8;

/// Rounds in a row a peer must answer only indirect probes before it is `unreachable`
/// from here: one lost Ping or Pong (1 % loss on a path loses one exchange in 50) must not
/// make it so.
pub(crate) const UNREACHABLE_AFTER: u8 = 2;

/// How many peers, drawn at random, the near set is chosen from each time. Choosing from
/// all peers would make the few nodes with the shortest access paths everybody's nearest:
/// their in-degree, and so their Pongs per interval, would grow with the mesh (measured:
/// up to 99 datagrams/s at 1,000 nodes). From 64 random ones, a node is a candidate of
/// about 64 others whatever N is, and the nearest of its region among them.
pub(crate) const NEAR_CANDIDATES: usize = 64;

/// How many peers carry an indirect probe for one unanswered direct one (SWIM's k).
pub(crate) const INDIRECT_PROBES: usize = 3;

/// Rounds a peer may go unprobed before this node frees what it measured of it (its RTT
/// and probe windows, 1.4 KB), at least: a node keeps them for its near set and the last
/// rounds' turn, about `fanout / 2 · (1 + MEASURE_KEEP_ROUNDS)` peers, whatever N is. Past
/// the 4 rounds a row reports and the 3 a probe may be answered in (`suspect_after` 3 s at
/// 1 s, the default); [`Sampling::keep_rounds_for`] lengthens it for a longer wait. A
/// peer of the turn comes back only after N / fanout rounds, so keeping its windows longer
/// buys nothing at scale: at 16 rounds they were 220 KB of a node's 750 KB at 1,000 nodes.
pub(crate) const MEASURE_KEEP_ROUNDS: u64 = 6;

/// What one peer's probes of a round came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It answered this node directly.
    Answered,
    /// Only through another node: it runs, the path from here is broken.
    AnsweredIndirectly,
    /// Nothing came back; it has not answered since `since_ns`.
    Silent { since_ns: u64 },
}

/// What this node knows of its own probes of one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Track {
    /// The round (mod 2^32) in which it last answered a direct probe (0: never): all a
    /// round's end asks is whether the answer came during that round, and a round number
    /// answers it in 4 bytes where a time took 8.
    direct_round: u32,
    /// The same for an indirect probe.
    indirect_round: u32,
    /// Rounds in a row it did not answer a direct probe.
    misses: u8,
    /// Only indirect probes reached it, in [`UNREACHABLE_AFTER`] rounds or more in a row.
    unreachable: bool,
    /// It is a target of the current round.
    in_round: bool,
    /// The last round it was a target of (0: never), mod 2^32 (136 years of rounds).
    last_round: u32,
    /// It is on the watch list (probed again next round, or silent).
    watched: bool,
}

impl Track {
    /// Whether it is probed again next round: silent, or answering only indirectly and not
    /// yet judged unreachable.
    fn again(&self, silent: bool) -> bool {
        silent || (self.misses > 0 && self.misses <= UNREACHABLE_AFTER)
    }

    /// Whether only indirect probes reach it.
    pub(crate) fn unreachable(&self) -> bool {
        self.unreachable
    }
}

/// The plan: the turn over all peers, the near set, this round's targets.
#[derive(Debug)]
pub(crate) struct Sampling {
    fanout: usize,
    /// Rounds a peer's windows outlive its last probe ([`Sampling::keep_rounds_for`]).
    keep_rounds: u64,
    /// Every peer's slot key, shuffled; `next` walks it, reshuffled at the end of a turn.
    /// (`u32`s: one per peer, so half the size of `usize`s.)
    order: Vec<u32>,
    next: usize,
    near: Vec<usize>,
    rounds: u64,
    tracks: Vec<Track>,
    /// Since when each silent peer's probes go unanswered (direct and indirect), by slot
    /// key: only the silent ones, a few, where a time in every track took 8 of its 24 bytes.
    silent_since: HashMap<u32, u64>,
    round: Vec<usize>,
    round_start_ns: u64,
    /// `(key, round)` of every target of the last `keep_rounds` rounds, oldest first: at
    /// most `fanout · keep_rounds` entries.
    probed: VecDeque<(usize, u64)>,
    /// The peers whose last round did not end in a direct answer (a superset of those
    /// probed again, and of the silent ones): what would otherwise be a scan of every
    /// track each round, O(N), is a walk over these few.
    watch: Vec<usize>,
    rng: Rng,
}

impl Sampling {
    /// A sampler whose windows outlive a probe by enough for `in_flight` rounds of
    /// answers ([`Sampling::keep_rounds_for`]).
    pub(crate) fn with_keep(fanout: usize, seed: u64, in_flight: u32) -> Sampling {
        let mut sampling = Sampling::new(fanout, seed);
        sampling.keep_rounds_for(in_flight);
        sampling
    }

    pub(crate) fn new(fanout: usize, seed: u64) -> Sampling {
        Sampling {
            fanout: fanout.max(1),
            keep_rounds: MEASURE_KEEP_ROUNDS,
            order: Vec::new(),
            next: 0,
            near: Vec::new(),
            rounds: 0,
            tracks: Vec::new(),
            silent_since: HashMap::new(),
            round: Vec::new(),
            round_start_ns: 0,
            probed: VecDeque::new(),
            watch: Vec::new(),
            rng: Rng::new(seed ^ 0x7361_6d70_6c65_6421),
        }
    }

    /// The peers are now `keys` (a peer added or removed): the turn starts again over them.
    pub(crate) fn set_peers(&mut self, keys: impl Iterator<Item = usize>) {
        self.order = keys.filter_map(|k| u32::try_from(k).ok()).collect();
        // Collected without a size hint it may be twice what it holds: one per peer counts.
        self.order.shrink_to_fit();
        self.shuffle();
        self.next = 0;
        let bound = self.order.iter().max().map_or(0, |&k| k as usize + 1);
        self.tracks.truncate(bound);
        self.tracks.resize(bound, Track::default());
        self.near.retain(|k| *k < bound);
        self.round.retain(|k| *k < bound);
        self.watch.retain(|k| *k < bound);
        self.silent_since.retain(|&k, _| (k as usize) < bound);
        self.probed.retain(|(k, _)| *k < bound);
    }

    /// Forgets what was known of peer `key`'s probes (removed, or a new process of it).
    pub(crate) fn forget(&mut self, key: usize) {
        if let Some(track) = self.tracks.get_mut(key) {
            *track = Track::default();
        }
        self.clear_silence(key);
        self.watch.retain(|k| *k != key);
    }

    fn shuffle(&mut self) {
        for i in (1..self.order.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            self.order.swap(i, j);
        }
    }

    pub(crate) fn fanout(&self) -> usize {
        self.fanout
    }

    /// Whether the near set is due to be chosen again (every few rounds, and while empty).
    pub(crate) fn near_due(&self) -> bool {
        self.near.is_empty() || self.rounds.is_multiple_of(NEAR_REFRESH_ROUNDS)
    }

    /// [`NEAR_CANDIDATES`] peers drawn at random (fewer in a smaller mesh), into `out`.
    pub(crate) fn draw_candidates(&mut self, out: &mut Vec<usize>) {
        out.clear();
        let len = self.order.len();
        if len <= NEAR_CANDIDATES {
            out.extend(self.order.iter().map(|&k| k as usize));
            return;
        }
        // A partial Fisher-Yates over a copy of the first positions would allocate N; draws
        // with a duplicate check cost O(64²) at most.
        for _ in 0..4 * NEAR_CANDIDATES {
            if out.len() >= NEAR_CANDIDATES {
                break;
            }
            let key = self.order[self.rng.below(len as u64) as usize] as usize;
            if !out.contains(&key) {
                out.push(key);
            }
        }
    }

    /// The near set chosen: probed every round.
    pub(crate) fn set_near(&mut self, near: Vec<usize>) {
        self.near = near;
    }

    /// The near set.
    pub(crate) fn near(&self) -> &[usize] {
        &self.near
    }

    /// What is known of peer `key`'s probes.
    pub(crate) fn track(&self, key: usize) -> Track {
        self.tracks.get(key).copied().unwrap_or_default()
    }

    /// Ends the round that ran: each target with its outcome, in `out`.
    pub(crate) fn end_round(&mut self, out: &mut Vec<(usize, Outcome)>) {
        out.clear();
        let start = self.round_start_ns;
        let now_round = self.rounds as u32;
        for key in self.round.drain(..) {
            let Some(track) = self.tracks.get_mut(key) else {
                continue;
            };
            track.in_round = false;
            let slot = key as u32;
            let outcome = if track.direct_round == now_round {
                self.silent_since.remove(&slot);
                track.unreachable = false;
                track.misses = 0;
                Outcome::Answered
            } else if track.indirect_round == now_round {
                self.silent_since.remove(&slot);
                track.misses = track.misses.saturating_add(1);
                track.unreachable = track.misses >= UNREACHABLE_AFTER;
                Outcome::AnsweredIndirectly
            } else {
                track.misses = track.misses.saturating_add(1);
                let since = *self.silent_since.entry(slot).or_insert(start);
                Outcome::Silent { since_ns: since }
            };
            if outcome != Outcome::Answered && !track.watched {
                track.watched = true;
                self.watch.push(key);
            }
            out.push((key, outcome));
        }
    }

    /// Starts a round at `now_ns`: up to `fanout` targets, silent ones first, then the near
    /// set, then the turn; `eligible` says who may be probed (not this node, not dead or
    /// left). Returns the targets.
    pub(crate) fn start_round(
        &mut self,
        now_ns: u64,
        eligible: impl Fn(usize) -> bool,
    ) -> &[usize] {
        self.rounds += 1;
        self.round_start_ns = now_ns;
        self.round.clear();
        let fanout = self.fanout;
        // Silent ones are probed again every round until judged, and one that answered only
        // indirectly until it is judged unreachable or answers; together they take at most
        // half the fanout, so a mass failure does not stop the sampling of the others.
        let tracks = &mut self.tracks;
        let silent_since = &self.silent_since;
        self.watch.retain(|&key| {
            let Some(track) = tracks.get_mut(key) else {
                return false;
            };
            track.watched = track.again(silent_since.contains_key(&(key as u32)));
            track.watched
        });
        for &key in &self.watch {
            if self.round.len() >= fanout / 2 {
                break;
            }
            if eligible(key) {
                self.round.push(key);
            }
        }
        for &key in &self.near {
            if self.round.len() >= fanout {
                break;
            }
            if eligible(key) && !self.round.contains(&key) {
                self.round.push(key);
            }
        }
        // The turn: at most one pass over the order per round.
        let mut looked = 0;
        while self.round.len() < fanout && looked < self.order.len() {
            if self.next >= self.order.len() {
                self.shuffle();
                self.next = 0;
            }
            let key = self.order[self.next] as usize;
            self.next += 1;
            looked += 1;
            if eligible(key) && !self.round.contains(&key) {
                self.round.push(key);
            }
        }
        for &key in &self.round {
            if let Some(track) = self.tracks.get_mut(key) {
                track.in_round = true;
                track.last_round = self.rounds as u32;
                self.probed.push_back((key, self.rounds));
            }
        }
        &self.round
    }

    /// Peer `key` is probed now, outside the round (on demand): its windows are kept as
    /// a round's target's are, then let go; no verdict is drawn from this probe.
    pub(crate) fn probed_out_of_turn(&mut self, key: usize) {
        if let Some(track) = self.tracks.get_mut(key) {
            track.last_round = self.rounds as u32;
            self.probed.push_back((key, self.rounds));
        }
    }

    /// Keeps the windows of a peer probed within `in_flight` rounds (its Pongs may still
    /// come) plus two, and at least [`MEASURE_KEEP_ROUNDS`].
    pub(crate) fn keep_rounds_for(&mut self, in_flight: u32) {
        self.keep_rounds = MEASURE_KEEP_ROUNDS.max(u64::from(in_flight) + 2);
    }

    /// The peers last probed `keep_rounds` rounds ago and not since, into `out`:
    /// what was measured of them can be freed. O(fanout) a round.
    pub(crate) fn no_longer_probed(&mut self, out: &mut Vec<usize>) {
        out.clear();
        while let Some(&(key, round)) = self.probed.front() {
            if round + self.keep_rounds > self.rounds {
                break;
            }
            self.probed.pop_front();
            if self
                .tracks
                .get(key)
                .is_some_and(|t| t.last_round == round as u32)
            {
                out.push(key);
            }
        }
    }

    /// The peers this node's probes find silent now (and possibly a few that answered
    /// since): O(silent), not O(N).
    pub(crate) fn silent(&self) -> impl Iterator<Item = usize> + '_ {
        self.watch
            .iter()
            .copied()
            .filter(|&key| self.silent_since.contains_key(&(key as u32)))
    }

    /// The distinct peers probed in the last `rounds` rounds (at most `keep_rounds`),
    /// ascending, into `out`: what this node measured lately.
    pub(crate) fn recently_probed(&self, rounds: u64, out: &mut Vec<usize>) {
        out.clear();
        let since = self.rounds.saturating_sub(rounds);
        out.extend(
            self.probed
                .iter()
                .rev()
                .take_while(|&&(_, round)| round > since)
                .map(|&(key, _)| key),
        );
        out.sort_unstable();
        out.dedup();
    }

    /// This round's targets not answered directly yet: they get indirect probes.
    pub(crate) fn unanswered(&self, out: &mut Vec<usize>) {
        out.clear();
        let now_round = self.rounds as u32;
        out.extend(self.round.iter().copied().filter(|&key| {
            self.tracks
                .get(key)
                .is_some_and(|t| t.direct_round != now_round)
        }));
    }

    /// Up to [`INDIRECT_PROBES`] peers to carry an indirect probe to `target`: drawn from
    /// the near set (short detours), then from the turn, each `usable`.
    pub(crate) fn helpers(
        &mut self,
        target: usize,
        usable: impl Fn(usize) -> bool,
        out: &mut Vec<usize>,
    ) {
        out.clear();
        let near = self.near.len();
        let start = if near == 0 {
            0
        } else {
            self.rng.below(near as u64) as usize
        };
        for i in 0..near {
            let key = self.near[(start + i) % near];
            if out.len() >= INDIRECT_PROBES {
                return;
            }
            if key != target && usable(key) && !out.contains(&key) {
                out.push(key);
            }
        }
        for _ in 0..4 * INDIRECT_PROBES {
            if out.len() >= INDIRECT_PROBES || self.order.is_empty() {
                return;
            }
            let key = self.order[self.rng.below(self.order.len() as u64) as usize] as usize;
            if key != target && usable(key) && !out.contains(&key) {
                out.push(key);
            }
        }
    }

    /// Peer `key` answered a direct probe (in the current round).
    pub(crate) fn answered(&mut self, key: usize) {
        if let Some(track) = self.tracks.get_mut(key) {
            track.direct_round = self.rounds as u32;
            track.unreachable = false;
            track.misses = 0;
        }
        self.clear_silence(key);
    }

    /// Peer `key` answered an indirect probe (in the current round).
    pub(crate) fn answered_indirectly(&mut self, key: usize) {
        if let Some(track) = self.tracks.get_mut(key) {
            track.indirect_round = self.rounds as u32;
        }
    }

    /// Peer `key` is no longer suspected by this node's probes (it refuted, or was judged).
    pub(crate) fn clear_silence(&mut self, key: usize) {
        if let Ok(slot) = u32::try_from(key) {
            self.silent_since.remove(&slot);
        }
    }

    /// Since when peer `key`'s probes go unanswered (`None`: they do not).
    pub(crate) fn silent_since(&self, key: usize) -> Option<u64> {
        self.silent_since.get(&u32::try_from(key).ok()?).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_track_stays_small_enough_to_hold_one_for_every_node() {
        // One per peer in every sampled node: 8 bytes here are 800 MB in the simulator at
        // 10,000 nodes.
        assert_eq!(std::mem::size_of::<Track>(), 16);
    }

    #[test]
    fn a_round_probes_at_most_fanout_and_a_turn_covers_every_peer() {
        let mut s = Sampling::new(4, 1);
        s.set_peers(0..10);
        s.set_near(vec![7, 8]);
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for round in 0..5u64 {
            let targets = s.start_round(round * 1000 + 1, |k| k != 3).to_vec();
            assert!(targets.len() <= 4);
            for &k in &targets {
                s.answered(k);
            }
            assert!(targets.contains(&7) && targets.contains(&8), "{targets:?}");
            assert!(!targets.contains(&3));
            seen.extend(targets);
            s.end_round(&mut out);
        }
        assert_eq!(seen.len(), 9, "all eligible peers in 5 rounds: {seen:?}");
    }

    /// Runs rounds of a 4-fanout sampler over 100 peers with a near set of two, keeping
    /// windows for `in_flight` rounds of answers: the first round's turn peers are freed
    /// exactly `keep` rounds on, the near set never.
    fn let_go_after(in_flight: u32, keep: u64) {
        let mut s = Sampling::with_keep(4, 3, in_flight);
        s.set_peers(0..100);
        s.set_near(vec![5, 6]);
        let mut out = Vec::new();
        let mut first_turn = Vec::new();
        let mut gone = Vec::new();
        for round in 1..=keep + 3 {
            let targets = s.start_round(round * 1000, |_| true).to_vec();
            for &k in &targets {
                s.answered(k);
            }
            if round == 1 {
                first_turn = targets.into_iter().filter(|k| *k != 5 && *k != 6).collect();
            }
            s.end_round(&mut out);
            let mut freed = Vec::new();
            s.no_longer_probed(&mut freed);
            if round <= keep {
                assert!(freed.is_empty(), "round {round}: {freed:?}");
            }
            gone.extend(freed);
        }
        // The turn over 100 does not come back to the first round's peers within keep + 3
        // rounds of two; the near set, probed every round, is never let go.
        for k in &first_turn {
            assert!(gone.contains(k), "{k} of the first round kept: {gone:?}");
        }
        assert!(!gone.contains(&5) && !gone.contains(&6), "{gone:?}");
        assert!(s.probed.len() as u64 <= 4 * keep);
    }

    #[test]
    fn only_peers_unprobed_for_the_keep_rounds_are_let_go() {
        let_go_after(3, MEASURE_KEEP_ROUNDS);
    }

    #[test]
    fn a_long_suspect_after_keeps_windows_while_pongs_may_come() {
        let_go_after(10, 12);
    }

    #[test]
    fn a_silent_peer_is_probed_again_until_it_answers() {
        let mut s = Sampling::new(2, 1);
        s.set_peers(0..50);
        let mut out = Vec::new();
        let first = s.start_round(1000, |_| true)[0];
        s.answered(s.round[1]);
        s.end_round(&mut out);
        assert!(out.contains(&(first, Outcome::Silent { since_ns: 1000 })));
        let again = s.start_round(2000, |_| true).to_vec();
        assert_eq!(again[0], first);
        s.answered_indirectly(first);
        s.end_round(&mut out);
        assert!(out.contains(&(first, Outcome::AnsweredIndirectly)));
        assert!(
            s.track(first).unreachable(),
            "two rounds with no direct answer"
        );
        assert_eq!(s.silent_since(first), None);
        s.answered(first);
        assert!(!s.track(first).unreachable());
        // One round answered only indirectly (one lost Pong, say) is not enough.
        let mut s = Sampling::new(2, 1);
        s.set_peers(0..50);
        let target = s.start_round(1000, |_| true)[0];
        s.answered_indirectly(target);
        s.end_round(&mut out);
        assert!(out.contains(&(target, Outcome::AnsweredIndirectly)));
        assert!(!s.track(target).unreachable());
    }

    #[test]
    fn helpers_come_from_the_near_set_first_and_never_the_target() {
        let mut s = Sampling::new(8, 3);
        s.set_peers(0..20);
        s.set_near(vec![1, 2, 3, 4]);
        let mut out = Vec::new();
        s.helpers(2, |k| k != 4, &mut out);
        assert_eq!(out.len(), INDIRECT_PROBES);
        assert_eq!(
            out[..2].iter().filter(|k| [1, 3].contains(k)).count(),
            2,
            "{out:?}"
        );
        assert!(!out.contains(&2) && !out.contains(&4));
    }
}
