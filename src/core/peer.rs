//! What a node knows about one peer: liveness and round-trip statistics.
//!
//! Pure bookkeeping: the mesh core feeds it samples and state changes; nothing here reads a
//! clock (times are nanoseconds on the node's own clock, handed in by the core).

use crate::core::conflict::{ConflictChange, ConflictRules, RivalWatch};
use crate::core::coordinate::Coordinate;
use crate::core::drops::DropReason;
use crate::core::identity::Identity;
use crate::core::replay::{ReplayWindow, Verdict};
use crate::wire::identity::NodeId;
pub use crate::wire::PeerState;
use crate::wire::RowEntry;
use crate::wire::WireCoordinate;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How many recent RTT samples the percentiles and the mean are taken over.
pub const RTT_WINDOW: usize = 64;
/// The longest RTT a window holds as it is, in nanoseconds (4.29 s; a slower answer is
/// held as this in the percentiles and the mean, `last` keeps it whole).
pub const MAX_SAMPLE_NS: u32 = u32::MAX;
/// How many recent probes the loss figure is taken over.
pub const LOSS_WINDOW: usize = 512;

/// Round-trip figures over the recent window. All in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RttSummary {
    /// The most recent sample.
    pub last: Duration,
    /// Smallest in the window.
    pub min: Duration,
    /// Mean of the window.
    pub mean: Duration,
    /// Median of the window.
    pub p50: Duration,
    /// 99th percentile of the window (nearest rank).
    pub p99: Duration,
    /// Interarrival jitter, RFC 3550 style: a running mean of |ΔRTT| with gain 1/16.
    pub jitter: Duration,
    /// How many samples the window holds.
    pub samples: usize,
}

/// A ring of the last [`RTT_WINDOW`] samples plus the running jitter estimate.
///
/// The same samples are also kept sorted, updated on every `record` (one binary search and
/// one short shift), so the median the row is rebuilt from every interval costs nothing.
#[derive(Clone, Debug)]
pub(crate) struct RttWindow {
    /// In nanoseconds, as `u32`s: a window is half the size (a sampled node holds about a
    /// hundred), and an RTT past [`MAX_SAMPLE_NS`] (4.29 s) is held as that.
    samples: [u32; RTT_WINDOW],
    /// `samples[..len]`, in ascending order.
    sorted: [u32; RTT_WINDOW],
    /// The sum of the samples in the window.
    sum: u64,
    len: usize,
    next: usize,
    last: u64,
    /// Jitter in sixteenths of a nanosecond, so the 1/16 gain stays in integers (the
    /// reference implementation of RFC 3550, appendix A.8, keeps it the same way).
    jitter16: u64,
}

impl RttWindow {
    pub(crate) fn new() -> RttWindow {
        RttWindow {
            samples: [0; RTT_WINDOW],
            sorted: [0; RTT_WINDOW],
            sum: 0,
            len: 0,
            next: 0,
            last: 0,
            jitter16: 0,
        }
    }

    pub(crate) fn record(&mut self, rtt_ns: u64) {
        let sample = u32::try_from(rtt_ns).unwrap_or(MAX_SAMPLE_NS);
        if self.len > 0 {
            // J += (|D| - J) / 16, as 16J += |D| - round(16J / 16).
            let delta = rtt_ns.abs_diff(self.last);
            let decay = self.jitter16.saturating_add(8) >> 4;
            self.jitter16 = self.jitter16.saturating_add(delta) - decay;
        }
        // Keep `sorted` sorted: the evicted sample (if the ring is full) makes room for the
        // new one, and only the samples between the two positions move.
        let at = self.sorted[..self.len].partition_point(|&s| s < sample);
        if self.len == RTT_WINDOW {
            let old = self.samples[self.next];
            self.sum -= u64::from(old);
            let gone = self.sorted.partition_point(|&s| s < old);
            if gone + 1 < at {
                self.sorted.copy_within(gone + 1..at, gone);
                self.sorted[at - 1] = sample;
            } else if gone + 1 == at {
                // The new sample takes the evicted one's place: nothing moves.
                self.sorted[gone] = sample;
            } else {
                if at < gone {
                    self.sorted.copy_within(at..gone, at + 1);
                }
                self.sorted[at] = sample;
            }
        } else {
            self.sorted.copy_within(at..self.len, at + 1);
            self.sorted[at] = sample;
        }
        self.sum += u64::from(sample);
        self.samples[self.next] = sample;
        self.next = (self.next + 1) % RTT_WINDOW;
        self.len = (self.len + 1).min(RTT_WINDOW);
        self.last = rtt_ns;
    }

    /// The median of the window (nearest rank), in nanoseconds.
    pub(crate) fn p50_ns(&self) -> Option<u64> {
        (self.len > 0).then(|| self.rank(50))
    }

    /// The `q`th percentile of the window (nearest rank); the window must not be empty.
    fn rank(&self, q: usize) -> u64 {
        u64::from(self.sorted[((self.len * q).div_ceil(100)).clamp(1, self.len) - 1])
    }

    pub(crate) fn summary(&self) -> Option<RttSummary> {
        if self.len == 0 {
            return None;
        }
        Some(RttSummary {
            last: Duration::from_nanos(self.last),
            min: Duration::from_nanos(u64::from(self.sorted[0])),
            mean: Duration::from_nanos(self.sum / self.len as u64),
            p50: Duration::from_nanos(self.rank(50)),
            p99: Duration::from_nanos(self.rank(99)),
            jitter: Duration::from_nanos(self.jitter16.saturating_add(8) >> 4),
            samples: self.len,
        })
    }
}

/// How many of the newest probes can still be matched by a pong (older pongs count as lost).
const MATCHABLE: usize = 16;

/// The last [`LOSS_WINDOW`] probes sent: a bitmap of which were answered (for loss) and the
/// send times of the newest few (to match pongs). 320 bytes a peer, so 1,000 peers stay small.
#[derive(Clone, Debug)]
pub(crate) struct ProbeWindow {
    answered: [u64; LOSS_WINDOW / 64],
    /// `(probe, sent_ns)` of the newest [`MATCHABLE`] probes, indexed by probe number.
    recent: [(u32, u64); MATCHABLE],
    /// The next probe number to use.
    next: u32,
    /// How many bits of `answered` are set.
    answered_count: u32,
}

/// What matching a pong against the probe window found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PongMatch {
    /// A pong for an outstanding probe; the echo matched what was sent.
    Fresh,
    /// Already answered (a duplicate).
    Duplicate,
    /// No such probe among the newest, or the echoed time is not what was sent.
    Unknown,
}

impl ProbeWindow {
    pub(crate) fn new() -> ProbeWindow {
        ProbeWindow {
            answered: [0; LOSS_WINDOW / 64],
            recent: [(u32::MAX, u64::MAX); MATCHABLE],
            next: 0,
            answered_count: 0,
        }
    }

    fn bit(probe: u32) -> (usize, u64) {
        let i = probe as usize % LOSS_WINDOW;
        (i / 64, 1u64 << (i % 64))
    }

    /// Takes the next probe number and remembers when it was sent.
    pub(crate) fn send(&mut self, sent_ns: u64) -> u32 {
        let probe = self.next;
        self.next = self.next.wrapping_add(1);
        let (word, mask) = Self::bit(probe);
        if self.answered[word] & mask != 0 {
            self.answered[word] &= !mask;
            self.answered_count -= 1;
        }
        self.recent[probe as usize % MATCHABLE] = (probe, sent_ns);
        probe
    }

    /// Whether `probe` is among the newest and `echo_ns` is its send time (answered or not).
    fn matches(&self, probe: u32, echo_ns: u64) -> bool {
        let age = self.next.wrapping_sub(probe);
        age != 0
            && age as usize <= MATCHABLE
            && self.recent[probe as usize % MATCHABLE] == (probe, echo_ns)
    }

    /// Whether a Pong echoing `probe` and `echo_ns` would be the first answer to one of the
    /// newest probes: proof that it was made by a process that received that Ping. A copy of
    /// an answer already counted proves nothing. Changes nothing.
    pub(crate) fn awaits(&self, probe: u32, echo_ns: u64) -> bool {
        let (word, mask) = Self::bit(probe);
        self.matches(probe, echo_ns) && self.answered[word] & mask == 0
    }

    /// Marks `probe` answered if it is among the newest and `echo_ns` is its send time.
    pub(crate) fn answer(&mut self, probe: u32, echo_ns: u64) -> PongMatch {
        if !self.matches(probe, echo_ns) {
            return PongMatch::Unknown;
        }
        let (word, mask) = Self::bit(probe);
        if self.answered[word] & mask != 0 {
            return PongMatch::Duplicate;
        }
        self.answered[word] |= mask;
        self.answered_count += 1;
        PongMatch::Fresh
    }

    /// Loss in percent over the settled probes of the window: all but the newest `in_flight`,
    /// which may still be answered (those count once they are). `None` until one settled.
    pub(crate) fn loss_pct(&self, in_flight: u32) -> Option<f64> {
        let (lost, settled) = self.lost_and_settled(in_flight);
        (settled > 0).then(|| f64::from(lost) * 100.0 / f64::from(settled))
    }

    /// [`loss_pct`](Self::loss_pct) in half-percent steps, rounded (as a row entry carries
    /// it), in integers.
    pub(crate) fn loss_half_pct(&self, in_flight: u32) -> Option<u8> {
        let (lost, settled) = self.lost_and_settled(in_flight);
        // round(200 * lost / settled), half away from zero; at most 200. No loss (the usual
        // case) needs no division.
        (settled > 0).then(|| match lost {
            0 => 0,
            _ => ((400 * lost + settled) / (2 * settled)) as u8,
        })
    }

    /// `(lost, settled)` among the probes of the window, `in_flight` newest still pending.
    fn lost_and_settled(&self, in_flight: u32) -> (u32, u32) {
        // Counted by words, not probe by probe: every answered probe is settled, and so is
        // every probe older than the newest `in_flight`, answered or not (those unanswered
        // are lost).
        let sent = self.next.min(LOSS_WINDOW as u32);
        let newest = in_flight.min(sent);
        let answered = self.answered_among_newest(sent);
        let answered_newest = self.answered_among_newest(newest);
        let lost = (sent - newest) - (answered - answered_newest);
        (lost, answered + lost)
    }

    /// How many of the newest `count` probes (at most [`LOSS_WINDOW`]) were answered.
    fn answered_among_newest(&self, count: u32) -> u32 {
        let count = count as usize;
        let end = self.next as usize % LOSS_WINDOW;
        let start = (end + LOSS_WINDOW - count) % LOSS_WINDOW;
        if count == LOSS_WINDOW {
            // The whole ring: every set bit is in the window.
            self.answered_count
        } else if count <= end % 64 {
            // Within the word holding the newest (the in-flight few, usually).
            let word = self.answered[end / 64] >> (end % 64 - count);
            (word & ((1u64 << count) - 1)).count_ones()
        } else if start <= end {
            self.answered_in(start, end)
        } else {
            self.answered_in(start, LOSS_WINDOW) + self.answered_in(0, end)
        }
    }

    /// Answered bits among ring positions `start..end`.
    fn answered_in(&self, start: usize, end: usize) -> u32 {
        let mut count = 0;
        let mut at = start;
        while at < end {
            let (word, bit) = (at / 64, at % 64);
            let bits = (end - at).min(64 - bit);
            let mask = if bits == 64 {
                u64::MAX
            } else {
                ((1u64 << bits) - 1) << bit
            };
            count += (self.answered[word] & mask).count_ones();
            at += bits;
        }
        count
    }

    /// Probes sent so far (to this incarnation of the peer).
    pub(crate) fn sent(&self) -> u32 {
        self.next
    }
}

/// What this node measures of a peer while it probes it: the RTT and probe windows, about
/// 1.4 KB. Allocated with the first probe; in sampled mode freed once the peer has gone
/// unprobed for a while ([`Peer::forget_measurement`]), so a node of a large mesh holds
/// them only for the few peers it probes now, not for every peer.
#[derive(Clone, Debug)]
struct Measurement {
    rtt: RttWindow,
    probes: ProbeWindow,
    /// The RTT p50 in µs, refreshed with this node's row (cheap to read per datagram).
    rtt_p50_us: Option<u32>,
}

/// What [`Peer::set_state`] changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StateChange {
    /// The state it left.
    pub(crate) old: PeerState,
    /// It was judged one-way (asymmetric) while alive, and no longer is.
    pub(crate) asymmetry_ended: bool,
}

/// How [`Peer::admit`] let a datagram in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// From the incarnation held, in order.
    Known,
    /// The first datagram believed from the peer.
    First,
    /// From a later incarnation: the peer restarted (it was at `old`).
    Restarted { old: u64 },
    /// Answered a recent probe from below the replay window: the window was reset.
    WindowReset,
}

/// What few peers have, boxed together ([`Peer`] holds one pointer for both).
#[derive(Debug, Default)]
struct Rare {
    /// The source of its last datagram when that is not its configured address (behind
    /// NAT, or moved).
    seen_elsewhere: Option<SocketAddr>,
    /// Evidence that a second process claims its identity from another address.
    rival: Option<Box<RivalWatch>>,
}

/// `Peer::alive_since` of a peer that is not alive (a plain number, not an `Option`: a
/// node holds a `Peer` for every node of the mesh, and 8 bytes each count at 10,000).
const NOT_ALIVE: u64 = u64::MAX;

/// `Peer::last_heard_ns` of a peer never heard, and `Peer::coordinate_ns` of one whose
/// coordinate never came (a time no node reaches: 584 years after its start).
const NEVER: u64 = u64::MAX;

/// One peer of this node, with everything this node knows about it. It changes only
/// through its own methods, called by the core.
#[derive(Debug)]
pub struct Peer {
    /// Its name, id and configured address: shared with a
    /// [`crate::core::directory::Directory`] where there is one.
    identity: Arc<Identity>,
    /// Its yes-or-no facts ([`Flags`]), one byte for five: with the state and the row
    /// cursor they fill one word, and `Peer` is 120 bytes, not 128.
    flags: Flags,
    /// What few peers have (a source other than the configured address, a rival): one
    /// pointer in every peer instead of two.
    rare: Option<Box<Rare>>,
    state: PeerState,
    incarnation: u64,
    /// When it was last heard, in nanoseconds since the node started ([`NEVER`]: it was
    /// not; a plain number, not an `Option`, for the same reason as `alive_since`).
    last_heard_ns: u64,
    sent: u64,
    received: u64,
    tx_seq: u32,
    /// The RTT and probe windows, while this node probes it.
    measure: Option<Box<Measurement>>,
    /// Since when it has been alive without a break, in nanoseconds since the node started.
    alive_since: u64,
    /// Which chunk of this node's row the next ping to it carries.
    row_cursor: u16,
    /// Which of its current incarnation's sequence numbers arrived.
    replay: ReplayWindow,
    /// Its network coordinate: from its newest Pong, or a fresher copy another node passed on.
    /// Kept as it travels (f32s: 24 bytes, not 48; every copy came off the wire anyway).
    coordinate: WireCoordinate,
    /// When `coordinate` was fresh from the peer itself, in nanoseconds on this node's clock
    /// ([`NEVER`]: no coordinate came yet, and `coordinate` means nothing).
    coordinate_ns: u64,
}

/// A peer's yes-or-no facts, a bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Flags(u8);

impl Flags {
    /// A datagram of it was taken (its source is [`Peer::seen_addr`]).
    const SEEN: u8 = 1;
    /// `incarnation` was heard (a bit beside it, not an `Option`: 8 bytes a peer).
    const INCARNATION_KNOWN: u8 = 2;
    /// Its liveness check is armed.
    const LIVENESS_TIMER: u8 = 4;
    /// It hears this node while its row says it does not hear this one.
    const ASYMMETRIC: u8 = 8;
    /// A Ping of it that named no incarnation of this node was answered since it was last
    /// believed (the handshake's first step; the next such Ping is counted `not_fresh`).
    const GREETED: u8 = 16;

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    fn set(&mut self, bit: u8, on: bool) {
        if on {
            self.0 |= bit;
        } else {
            self.0 &= !bit;
        }
    }

    /// Sets `bit` to `on`; returns what it was.
    fn replace(&mut self, bit: u8, on: bool) -> bool {
        let was = self.has(bit);
        self.set(bit, on);
        was
    }
}

impl Peer {
    /// Takes the directory's copy of its identity when it is the same (one copy for every
    /// mesh).
    pub(crate) fn share_identity(&mut self, identity: &Arc<Identity>) {
        if *self.identity == **identity {
            self.identity = Arc::clone(identity);
        }
    }

    /// Points the peer at another address; what was measured of it stays. A shared
    /// identity is copied first: the others who share it keep the old address.
    pub(crate) fn set_addr(&mut self, addr: SocketAddr) {
        let seen = self.seen_addr();
        Arc::make_mut(&mut self.identity).addr = addr;
        self.note_seen(seen);
    }

    /// Holds `seen` as the source of its last datagram.
    fn note_seen(&mut self, seen: Option<SocketAddr>) {
        self.flags.set(Flags::SEEN, seen.is_some());
        let elsewhere = seen.filter(|&a| a != self.identity.addr);
        if elsewhere.is_some() || self.rare.is_some() {
            self.rare_mut().seen_elsewhere = elsewhere;
            self.tidy_rare();
        }
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Frees the box of rare things once it holds none.
    fn tidy_rare(&mut self) {
        if self
            .rare
            .as_ref()
            .is_some_and(|rare| rare.seen_elsewhere.is_none() && rare.rival.is_none())
        {
            self.rare = None;
        }
    }

    pub(crate) fn new(name: &str, addr: SocketAddr) -> Peer {
        Peer {
            identity: Identity::shared(name, addr),
            flags: Flags::default(),
            rare: None,
            state: PeerState::Unknown,
            incarnation: 0,
            last_heard_ns: NEVER,
            sent: 0,
            received: 0,
            tx_seq: 0,
            measure: None,
            alive_since: NOT_ALIVE,
            row_cursor: 0,
            coordinate: WireCoordinate::default(),
            coordinate_ns: NEVER,
            replay: ReplayWindow::new(),
        }
    }

    /// A valid datagram from it arrived at `now_ns` (on the node's clock) from
    /// `from`. Returns the address it sent from before, when that changed.
    pub(crate) fn hear(&mut self, now_ns: u64, from: SocketAddr) -> Option<SocketAddr> {
        self.last_heard_ns = now_ns;
        self.received += 1;
        let before = self.seen_addr();
        if before == Some(from) {
            return None;
        }
        self.note_seen(Some(from));
        before
    }

    /// Its goodbye arrived: heard, but no sign of life.
    pub(crate) fn hear_leave(&mut self, now_ns: u64) {
        self.last_heard_ns = now_ns;
        self.received += 1;
    }

    /// Moves it to `state` at `now_ns`. Returns what changed, or `None` if it was already
    /// there. Leaving `alive` ends a one-way-path verdict.
    pub(crate) fn set_state(&mut self, state: PeerState, now_ns: u64) -> Option<StateChange> {
        let old = self.state;
        if old == state {
            return None;
        }
        self.state = state;
        self.alive_since = if state == PeerState::Alive {
            now_ns.min(NOT_ALIVE - 1)
        } else {
            NOT_ALIVE
        };
        let asymmetry_ended = state != PeerState::Alive && self.flags.has(Flags::ASYMMETRIC);
        if asymmetry_ended {
            self.flags.set(Flags::ASYMMETRIC, false);
        }
        Some(StateChange {
            old,
            asymmetry_ended,
        })
    }

    /// A fresh datagram from an incarnation older than the one held came from `from` at
    /// `now_ns`: when that is another address than the held incarnation's, a live process
    /// there claims the identity (evidence, see [`RivalWatch`]). Returns how the conflict
    /// verdict changed.
    pub(crate) fn heard_stale_from(
        &mut self,
        from: SocketAddr,
        now_ns: u64,
        rules: &ConflictRules,
    ) -> Option<ConflictChange> {
        if self.seen_addr().is_none_or(|held| held == from) {
            return None;
        }
        RivalWatch::note(&mut self.rare_mut().rival, from, now_ns, rules)
    }

    /// It announced a new incarnation from `from` at `now_ns` (before [`Peer::hear`] takes
    /// the datagram): when the previous one was heard within the window from another
    /// address and had not said goodbye, the process at `from` took over from one that may
    /// still run (evidence, see [`RivalWatch`]). Returns how the conflict verdict changed.
    pub(crate) fn restarted_from(
        &mut self,
        from: SocketAddr,
        now_ns: u64,
        rules: &ConflictRules,
    ) -> Option<ConflictChange> {
        self.seen_addr().filter(|&a| a != from)?;
        let recent = self
            .last_heard_ns()
            .is_some_and(|heard| now_ns.saturating_sub(heard) <= rules.window_ns());
        if !recent || self.state == PeerState::Left {
            return None;
        }
        RivalWatch::note(&mut self.rare_mut().rival, from, now_ns, rules)
    }

    /// Whether it holds any evidence of a second process with its identity.
    pub(crate) fn has_rival(&self) -> bool {
        self.rare.as_ref().is_some_and(|rare| rare.rival.is_some())
    }

    /// Ends a conflict once no evidence came for the window; returns true when one ended.
    pub(crate) fn expire_rival(&mut self, now_ns: u64, rules: &ConflictRules) -> bool {
        let Some(rare) = self.rare.as_mut() else {
            return false;
        };
        let ended = RivalWatch::expire(&mut rare.rival, now_ns, rules);
        self.tidy_rare();
        ended
    }

    /// While two processes claim its identity: the address of the one not believed right
    /// now (the other is [`Peer::seen_addr`]).
    pub fn rival_addr(&self) -> Option<SocketAddr> {
        let (a, b) = self.conflict_addrs()?;
        Some(if self.seen_addr() == Some(a) { b } else { a })
    }

    /// While two processes claim its identity: both their addresses, the one heard from
    /// last first.
    pub(crate) fn conflict_addrs(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.rare.as_ref()?.rival.as_ref()?.addresses()
    }

    /// Records whether its row says it does not hear this node; returns whether that changed.
    pub(crate) fn set_asymmetric(&mut self, asymmetric: bool) -> bool {
        let changed = self.flags.has(Flags::ASYMMETRIC) != asymmetric;
        self.flags.set(Flags::ASYMMETRIC, asymmetric);
        changed
    }

    /// Decides whether a fresh datagram from incarnation `incarnation` with sequence number
    /// `seq` may speak for the peer: not from an incarnation older than the one held
    /// (incarnations never go backwards here), not after that incarnation said Leave, not a
    /// replay. A later incarnation is a restart: the statistics start again.
    ///
    /// A Pong that answers a recent probe (`answers_probe`) but whose number lies below the
    /// replay window resets the window: only the peer's live process can send it, so the
    /// window was pushed ahead by a forged number (possible only without a keyring) and
    /// must not stay wedged.
    pub(crate) fn admit(
        &mut self,
        incarnation: u64,
        seq: u32,
        answers_probe: bool,
    ) -> Result<Admission, DropReason> {
        match self.incarnation() {
            Some(current) if current == incarnation => {
                if self.state == PeerState::Left {
                    return Err(DropReason::AfterLeave);
                }
                match self.replay.check(seq) {
                    Verdict::Fresh => {
                        self.replay.remember(seq);
                        Ok(Admission::Known)
                    }
                    Verdict::TooOld if answers_probe => {
                        self.replay = ReplayWindow::starting_at(seq);
                        Ok(Admission::WindowReset)
                    }
                    Verdict::Replayed | Verdict::TooOld => Err(DropReason::Replayed),
                }
            }
            Some(current) if incarnation < current => Err(DropReason::StaleIncarnation),
            Some(old) => {
                self.incarnation = incarnation;
                self.flags.set(Flags::INCARNATION_KNOWN, true);
                self.measure = None;
                self.replay = ReplayWindow::starting_at(seq);
                Ok(Admission::Restarted { old })
            }
            None => {
                self.incarnation = incarnation;
                self.flags.set(Flags::INCARNATION_KNOWN, true);
                self.replay = ReplayWindow::starting_at(seq);
                Ok(Admission::First)
            }
        }
    }

    /// A pong for `probe` echoing `echo_ns`, received at `now_ns`, held `hold_us` by the
    /// peer: the RTT sample it gives (recorded), or `None` for a stale or forged one.
    pub(crate) fn record_pong(
        &mut self,
        probe: u32,
        echo_ns: u64,
        hold_us: u32,
        now_ns: u64,
    ) -> Option<u64> {
        let measure = self.measure.as_mut()?;
        if measure.probes.answer(probe, echo_ns) != PongMatch::Fresh {
            return None;
        }
        let elapsed = now_ns.saturating_sub(echo_ns);
        let hold = u64::from(hold_us) * 1000;
        // A hold longer than the whole round trip is impossible; keep the raw time.
        let rtt = if hold < elapsed {
            elapsed - hold
        } else {
            elapsed
        };
        measure.rtt.record(rtt);
        Some(rtt)
    }

    /// A Pong for `probe` echoing `echo_ns` came by another way than the path (an
    /// indirect probe): counted as answered, with no RTT sample. Whether it was fresh.
    pub(crate) fn answer_probe(&mut self, probe: u32, echo_ns: u64) -> bool {
        self.measure
            .as_mut()
            .is_some_and(|m| m.probes.answer(probe, echo_ns) == PongMatch::Fresh)
    }

    /// Its RTT p50 over the window, in nanoseconds: what this node's coordinate is fitted to
    /// (a median, so one late Pong does not pull it).
    pub(crate) fn rtt_p50_ns(&self) -> Option<u64> {
        self.measure.as_ref()?.rtt.p50_ns()
    }

    /// Its coordinate as it was at `fresh_ns` (now, for its own Pong; earlier, for a copy
    /// another node passed on): kept unless the one held is fresher. Whether it was kept.
    pub(crate) fn offer_coordinate(&mut self, coordinate: Coordinate, fresh_ns: u64) -> bool {
        if self.coordinate_ns != NEVER && fresh_ns < self.coordinate_ns {
            return false;
        }
        self.coordinate = coordinate.to_wire();
        self.coordinate_ns = fresh_ns;
        true
    }

    /// Its network coordinate, once one of its Pongs, or a copy of one, arrived.
    pub fn coordinate(&self) -> Option<Coordinate> {
        let (coordinate, _) = self.coordinate_with_time()?;
        Coordinate::from_wire(&coordinate)
    }

    /// Its coordinate with when it was fresh from the peer (nanoseconds, this node's clock).
    pub(crate) fn coordinate_with_time(&self) -> Option<(WireCoordinate, u64)> {
        (self.coordinate_ns != NEVER).then_some((self.coordinate, self.coordinate_ns))
    }

    /// Whether a pong for `probe` echoing `echo_ns` would answer one of its recent probes.
    pub(crate) fn awaits(&self, probe: u32, echo_ns: u64) -> bool {
        self.measure
            .as_ref()
            .is_some_and(|m| m.probes.awaits(probe, echo_ns))
    }

    /// A probe goes out to it at `sent_ns`: its number.
    pub(crate) fn send_probe(&mut self, sent_ns: u64) -> u32 {
        let measure = self.measure.get_or_insert_with(|| {
            Box::new(Measurement {
                rtt: RttWindow::new(),
                probes: ProbeWindow::new(),
                rtt_p50_us: None,
            })
        });
        measure.probes.send(sent_ns)
    }

    /// Frees its RTT and probe windows (sampled mode, for a peer this node no longer
    /// probes): its figures start again with the next probe.
    pub(crate) fn forget_measurement(&mut self) {
        self.measure = None;
    }

    /// The sequence number of the next datagram to it (counted as sent).
    pub(crate) fn next_seq(&mut self) -> u32 {
        let seq = self.tx_seq;
        self.tx_seq = seq.wrapping_add(1);
        self.sent += 1;
        seq
    }

    /// This node took a new incarnation: sequence numbers to the peer start again.
    pub(crate) fn restart_sequence(&mut self) {
        self.tx_seq = 0;
    }

    /// Which chunk of this node's row the next ping to it carries.
    pub(crate) fn next_row_cursor(&mut self) -> u16 {
        let cursor = self.row_cursor;
        self.row_cursor = cursor.wrapping_add(1);
        cursor
    }

    /// Its entry in this node's row at `now_ns`; also refreshes the cached RTT median.
    pub(crate) fn row_entry(&mut self, in_flight: u32, now_ns: u64) -> RowEntry {
        let p50 = self
            .rtt_p50_ns()
            .map(|ns| u32::try_from(ns / 1000).unwrap_or(u32::MAX));
        if let Some(measure) = self.measure.as_mut() {
            measure.rtt_p50_us = p50;
        }
        RowEntry {
            target: self.identity.id,
            state: self.state,
            loss_half_pct: self
                .measure
                .as_ref()
                .and_then(|m| m.probes.loss_half_pct(in_flight)),
            rtt_us: p50,
            heard_ago_ms: self.last_heard_ns().map(|heard| {
                let ago_ms = now_ns.saturating_sub(heard) / 1_000_000;
                u32::try_from(ago_ms).unwrap_or(u32::MAX)
            }),
        }
    }

    /// Its RTT median in µs as of the last row refresh (cheap to read per datagram).
    pub(crate) fn rtt_p50_us(&self) -> Option<u32> {
        self.measure.as_ref()?.rtt_p50_us
    }

    /// Marks the first Ping naming no incarnation of this node since it was last
    /// believed; returns whether this is that first one (the handshake's first step).
    pub(crate) fn greet(&mut self) -> bool {
        !self.flags.replace(Flags::GREETED, true)
    }

    /// It was believed: the next Ping naming no incarnation is a new handshake.
    pub(crate) fn believed(&mut self) {
        self.flags.set(Flags::GREETED, false);
    }

    /// Arms its liveness check; returns `false` if one is already pending.
    pub(crate) fn arm_liveness(&mut self) -> bool {
        !self.flags.replace(Flags::LIVENESS_TIMER, true)
    }

    /// Its liveness check fired.
    pub(crate) fn disarm_liveness(&mut self) {
        self.flags.set(Flags::LIVENESS_TIMER, false);
    }

    /// `last_heard` in nanoseconds on the node's clock, once heard.
    pub(crate) fn last_heard_ns(&self) -> Option<u64> {
        (self.last_heard_ns != NEVER).then_some(self.last_heard_ns)
    }

    /// Since when (ns on the node's clock) it has been alive without a break.
    pub(crate) fn alive_since(&self) -> Option<u64> {
        (self.alive_since != NOT_ALIVE).then_some(self.alive_since)
    }

    /// Loss in percent over its recent settled probes, `in_flight` newest unsettled.
    pub(crate) fn loss_pct_with(&self, in_flight: u32) -> Option<f64> {
        self.measure.as_ref()?.probes.loss_pct(in_flight)
    }

    /// The peer's name in the config.
    pub fn name(&self) -> &str {
        &self.identity.name
    }

    /// The peer's identity.
    pub fn id(&self) -> NodeId {
        self.identity.id
    }

    /// The configured address heartbeats are sent to.
    pub fn addr(&self) -> SocketAddr {
        self.identity.addr
    }

    /// The address its datagrams last came from (differs from `addr` behind NAT).
    pub fn seen_addr(&self) -> Option<SocketAddr> {
        self.flags.has(Flags::SEEN).then(|| {
            self.rare
                .as_ref()
                .and_then(|rare| rare.seen_elsewhere)
                .unwrap_or(self.identity.addr)
        })
    }

    /// Its liveness.
    pub fn state(&self) -> PeerState {
        self.state
    }

    /// Left as the other nodes' rows said, never heard here (this node started after it
    /// left): a verdict the witnesses can take back.
    pub(crate) fn left_unheard(&self) -> bool {
        self.state == PeerState::Left && self.last_heard_ns().is_none()
    }

    /// Its current incarnation, once heard from.
    pub fn incarnation(&self) -> Option<u64> {
        self.flags
            .has(Flags::INCARNATION_KNOWN)
            .then_some(self.incarnation)
    }

    /// Datagrams sent to it.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Valid datagrams received from it.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Heartbeat probes sent to its current incarnation (in sampled mode: since this node
    /// last started probing it, see [`Peer::rtt`]).
    pub fn probes_sent(&self) -> u32 {
        self.measure.as_ref().map_or(0, |m| m.probes.sent())
    }

    /// Round-trip figures over the recent window, once a pong has come back. In sampled
    /// mode, only while this node probes the peer: the windows of a peer left unprobed for
    /// 6 rounds (longer when `suspect_after` is) are freed.
    pub fn rtt(&self) -> Option<RttSummary> {
        self.measure.as_ref()?.rtt.summary()
    }

    /// Whether it hears this node badly: it is alive here, but its own row says it does not
    /// hear this node (a one-way path problem).
    pub fn is_asymmetric(&self) -> bool {
        self.flags.has(Flags::ASYMMETRIC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rtt_past_the_sample_range_is_held_at_its_end() {
        let mut w = RttWindow::new();
        w.record(1_000_000);
        w.record(6_000_000_000);
        let s = w.summary().unwrap();
        let max = Duration::from_nanos(u64::from(MAX_SAMPLE_NS));
        assert_eq!(s.p99, max, "held as the longest sample, not wrapped");
        assert_eq!(s.min, Duration::from_millis(1));
        assert_eq!(s.mean, (max + Duration::from_millis(1)) / 2);
        assert_eq!(s.last, Duration::from_secs(6), "the last one stays whole");
    }

    #[test]
    fn rtt_summary_percentiles_and_jitter() {
        let mut w = RttWindow::new();
        assert!(w.summary().is_none());
        for i in 1..=100u64 {
            w.record(i * 1000);
        }
        let s = w.summary().unwrap();
        // Window holds the last 64 samples: 37..=100 µs.
        assert_eq!(s.samples, RTT_WINDOW);
        assert_eq!(s.min, Duration::from_micros(37));
        assert_eq!(s.last, Duration::from_micros(100));
        assert_eq!(s.p50, Duration::from_micros(68));
        assert_eq!(s.p99, Duration::from_micros(100));
        assert_eq!(s.mean.as_nanos(), 68_500);
        // Constant steps of 1 µs: jitter converges to 1 µs.
        assert!(
            (s.jitter.as_nanos() as i64 - 1000).abs() < 5,
            "{:?}",
            s.jitter
        );
    }

    #[test]
    fn probe_window_matches_pongs_and_counts_loss() {
        let mut p = ProbeWindow::new();
        for i in 0..10u64 {
            let probe = p.send(i * 100);
            if i % 5 != 0 {
                assert_eq!(p.answer(probe, i * 100), PongMatch::Fresh);
            }
        }
        // A duplicate, a forged echo and a probe never sent are told apart.
        assert_eq!(p.answer(9, 900), PongMatch::Duplicate);
        assert_eq!(p.answer(8, 1), PongMatch::Unknown);
        assert_eq!(p.answer(500, 0), PongMatch::Unknown);
        assert_eq!(p.answer(10, 1000), PongMatch::Unknown);
        // Probes 0 and 5 lost; none in flight => 20%.
        assert_eq!(p.loss_pct(0), Some(20.0));
        // The unanswered probe 5 still in flight when the 5 newest are: 1 lost of 9 settled.
        let pct = p.loss_pct(5).unwrap();
        assert!((pct - 100.0 / 9.0).abs() < 1e-9, "{pct}");
    }

    /// The loss figure by its definition, probe by probe.
    fn loss_by_definition(p: &ProbeWindow, in_flight: u32) -> Option<f64> {
        let sent = p.next.min(LOSS_WINDOW as u32);
        let (mut settled, mut lost) = (0u32, 0u32);
        for age in 1..=sent {
            let (word, mask) = ProbeWindow::bit(p.next.wrapping_sub(age));
            let answered = p.answered[word] & mask != 0;
            if answered || age > in_flight {
                settled += 1;
                lost += u32::from(!answered);
            }
        }
        (settled > 0).then(|| f64::from(lost) * 100.0 / f64::from(settled))
    }

    #[test]
    fn loss_counted_by_words_matches_the_definition() {
        let mut rng = crate::core::rng::Rng::new(5);
        let mut p = ProbeWindow::new();
        for i in 0..(LOSS_WINDOW as u64 * 3) {
            let probe = p.send(i);
            // Answer most, some late, some never.
            if rng.below(10) < 7 {
                let late = rng.below(4) as u32;
                let target = probe.wrapping_sub(late);
                let _ = p.answer(target, p.recent[target as usize % MATCHABLE].1);
            }
            let bits: u32 = p.answered.iter().map(|w| w.count_ones()).sum();
            assert_eq!(p.answered_count, bits);
            for in_flight in [0, 1, 3, 16, 511, 512, 600, u32::MAX] {
                let pct = p.loss_pct(in_flight);
                assert_eq!(
                    pct,
                    loss_by_definition(&p, in_flight),
                    "after {i} probes, {in_flight} in flight"
                );
                let half = pct.map(|pct| (pct * 2.0).round() as u8);
                assert_eq!(p.loss_half_pct(in_flight), half);
            }
        }
        // Probe numbers wrapping around u32 keep the same count.
        p.next = u32::MAX - 3;
        for i in 0..10u64 {
            let probe = p.send(i);
            p.answer(probe, i);
            assert_eq!(p.loss_pct(3), loss_by_definition(&p, 3));
        }
    }

    #[test]
    fn integer_jitter_stays_within_a_nanosecond_of_the_real_valued_estimator() {
        let mut rng = crate::core::rng::Rng::new(17);
        let mut w = RttWindow::new();
        let mut reference = 0.0f64;
        let mut last = None;
        for _ in 0..100_000 {
            let rtt = 50_000 + rng.below(2_000_000);
            if let Some(last) = last {
                let delta = u64::abs_diff(rtt, last) as f64;
                reference += (delta - reference) / 16.0;
            }
            last = Some(rtt);
            w.record(rtt);
            let jitter = w.summary().unwrap().jitter.as_nanos() as f64;
            assert!((jitter - reference).abs() <= 1.0, "{jitter} vs {reference}");
        }
    }

    #[test]
    fn sorted_window_tracks_the_ring() {
        let mut rng = crate::core::rng::Rng::new(9);
        let mut w = RttWindow::new();
        for i in 0..1000 {
            // Many ties, and a few outliers.
            let rtt = match rng.below(20) {
                0 => rng.next_u64() >> 20,
                n => 1000 * n,
            };
            w.record(rtt);
            let mut expected = w.samples[..w.len].to_vec();
            expected.sort_unstable();
            assert_eq!(&w.sorted[..w.len], &expected[..], "after {i} samples");
            let sum: u64 = expected.iter().map(|&s| u64::from(s)).sum();
            assert_eq!(w.sum, sum);
        }
    }

    #[test]
    fn probe_window_slides() {
        let mut p = ProbeWindow::new();
        for i in 0..(LOSS_WINDOW as u64 * 3) {
            let probe = p.send(i);
            if i >= LOSS_WINDOW as u64 * 2 {
                p.answer(probe, i);
            }
        }
        // Only the last LOSS_WINDOW probes count, all answered.
        assert_eq!(p.loss_pct(3), Some(0.0));
    }

    #[test]
    fn a_peer_stays_small_enough_to_hold_one_for_every_node() {
        // A sampled node holds a `Peer` for each of 10,000 nodes, and the simulator 10,000
        // such nodes: every 8 bytes here is 800 MB there (docs/PERFORMANCE.md).
        let size = std::mem::size_of::<Peer>();
        assert!(size <= 120, "Peer grew to {size} bytes");
    }

    #[test]
    fn the_source_address_is_held_also_when_it_is_not_the_configured_one() {
        let configured: SocketAddr = "10.0.0.1:4000".parse().expect("literal");
        let nat: SocketAddr = "192.0.2.7:31000".parse().expect("literal");
        let mut p = Peer::new("b", configured);
        assert_eq!(p.seen_addr(), None);
        p.hear_leave(1);
        assert_eq!(p.seen_addr(), None, "a goodbye names no source");
        assert_eq!(p.hear(2, configured), None);
        assert_eq!(p.seen_addr(), Some(configured));
        assert_eq!(p.hear(3, nat), Some(configured), "the source before");
        assert_eq!(p.seen_addr(), Some(nat));
        assert_eq!(p.hear(4, nat), None);
        // A new configured address changes nothing of what was seen.
        p.set_addr(nat);
        assert_eq!(p.seen_addr(), Some(nat));
        p.set_addr(configured);
        assert_eq!(p.seen_addr(), Some(nat));
        assert_eq!(p.hear(5, configured), Some(nat));
        assert_eq!(p.seen_addr(), Some(configured));
    }
}
