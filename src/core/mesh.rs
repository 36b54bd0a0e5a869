//! The mesh core: a pure state machine that heartbeats peers and tracks their liveness.
//!
//! See the crate docs for the driving contract. Nothing here reads a clock or touches a
//! socket: time comes in as `now`, datagrams as bytes, and what the node wants to send,
//! when it next needs a call and what happened come out of the `poll_*` methods.
//!
//! [`Mesh`] is a facade: the peer table ([`crate::core::peer_table`]), each peer's own
//! transitions ([`crate::core::peer`]), the liveness rules and witnesses
//! ([`crate::core::liveness`]), the heartbeat schedule ([`crate::core::schedule`]), row
//! gossip (`gossip.rs`) and the matrix ([`crate::core::matrix`]) each live in
//! their own file with their own tests; here they are wired to the inputs and outputs.

use crate::core::addr::{self, Families};
use crate::core::conflict::{ConflictChange, ConflictRules, RefutationWatch};
use crate::core::coordinate::Coordinate;
use crate::core::directory::Directory;
use crate::core::drops::{DropCounters, DropReason};
use crate::core::event::Event;
use crate::core::gossip::{RowGossip, SparseRow};
use crate::core::liveness::{centis, saturating_ns, Diagnosis, LivenessRules, Witnesses};
use crate::core::matrix::{Cell, Matrix, MatrixSnapshot, MatrixView};
use crate::core::membership::Membership;
use crate::core::peer::{Admission, Peer, PeerState};
use crate::core::peer_table::{Member, PeerId, PeerTable};
use crate::core::probe_mode::ProbeMode;
use crate::core::query::Queries;
use crate::core::rng::Rng;
use crate::core::sampling::Sampling;
use crate::core::schedule::HeartbeatSchedule;
use crate::core::settings::Settings;
use crate::core::tags::{OwnTags, PeerTags};
use crate::core::timer::Timer;
use crate::core::transfer::{AckReply, Transfers};
use crate::core::wheel::TimerWheel;
use crate::wire::identity::NodeId;
use crate::wire::keyring::Keyring;
use crate::wire::seal::{self, SEAL_HEADER_LEN, SEAL_OVERHEAD};
use crate::wire::{self, Body, Header, MemberUpdates, Packet, PING_LEN, ROW_HEADER_LEN};
use log::{debug, error, info, trace, warn};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod measure_now;
mod messaging;
mod sampled;

pub use measure_now::{ESTIMATE_MARGIN, MAX_MEASURING, NEAREST_PROBES};

/// Why [`Mesh::send`], [`Mesh::broadcast`], [`Mesh::query`] or [`Mesh::respond`] refused.
/// The mesh is unchanged when it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// No such peer.
    UnknownPeer(PeerId),
    /// The payload is longer than a message carries.
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The largest payload allowed ([`crate::wire::MAX_MESSAGE`]).
        max: usize,
    },
    /// Too many messages are waiting to be sent or confirmed (see
    /// [`crate::core::transfer::MAX_OUTBOUND`]), or too many queries are open.
    QueueFull,
    /// The query is not one this node was asked, was answered already, or its asker
    /// stopped waiting.
    NoSuchQuery,
    /// The node is leaving the mesh.
    Leaving,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::UnknownPeer(p) => write!(f, "no peer {p} (removed, or never added)"),
            SendError::TooLarge { len, max } => {
                write!(
                    f,
                    "payload of {len} bytes exceeds the {max} bytes a message carries"
                )
            }
            SendError::QueueFull => write!(
                f,
                "too many messages waiting to be sent or confirmed; try again later"
            ),
            SendError::NoSuchQuery => write!(
                f,
                "no such query to answer (answered already, or its asker stopped waiting)"
            ),
            SendError::Leaving => write!(f, "the node is leaving the mesh"),
        }
    }
}

impl std::error::Error for SendError {}

/// A datagram to send: the bytes are in the buffer given to [`Mesh::poll_transmit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub dst: SocketAddr,
    /// How many bytes at the front of the buffer make the datagram.
    pub len: usize,
}

/// What the core wants to send, encoded only when the driver asks, so pongs carry the exact
/// hold time and pings the exact send time, and the queue holds no byte buffers.
#[derive(Debug)]
enum Outgoing {
    Ping(usize),
    Pong {
        peer: usize,
        to: SocketAddr,
        probe: u32,
        echo_ns: u64,
        /// When the ping came in, in nanoseconds since the node started.
        received_ns: u64,
        /// The incarnation the pong names as the receiver's: the ping's own, or, when the
        /// ping came from an incarnation older than the one held, the one held (so that a
        /// live older process learns it must refute).
        to_incarnation: u64,
    },
    Leave(usize),
    /// The next fragments of a message, one per call, back to back.
    Burst {
        peer: usize,
        number: u64,
    },
    /// An acknowledgement of message `number`.
    Ack {
        peer: usize,
        number: u64,
        reply: AckReply,
    },
    /// A datagram of another node, carried to `peer` (its `Relay` target).
    Forward {
        peer: usize,
        inner: Vec<u8>,
    },
    /// Sampled mode: a Ping to `target`, carried by `peer` (SWIM's indirect probe).
    IndirectPing {
        peer: usize,
        target: usize,
    },
    /// Sampled mode: the Pong to an indirect probe of `asker`, back through `peer`.
    RelayedPong {
        peer: usize,
        asker: usize,
        probe: u32,
        echo_ns: u64,
        received_ns: u64,
    },
}

impl Outgoing {
    /// The peer slot it goes to.
    fn peer(&self) -> usize {
        match *self {
            Outgoing::Ping(key) | Outgoing::Leave(key) => key,
            Outgoing::Pong { peer, .. }
            | Outgoing::Burst { peer, .. }
            | Outgoing::Ack { peer, .. }
            | Outgoing::Forward { peer, .. }
            | Outgoing::IndirectPing { peer, .. }
            | Outgoing::RelayedPong { peer, .. } => peer,
        }
    }
}

/// The peer-mesh state machine of one node. See the crate docs for how to drive it.
pub struct Mesh {
    name: String,
    id: NodeId,
    settings: Settings,
    epoch: Instant,
    now: Instant,
    /// `now` in nanoseconds since `epoch`: converted once per input, so the core does
    /// plain integer arithmetic instead of `Instant` arithmetic.
    now_ns: u64,
    peers: PeerTable,
    /// Timers in nanoseconds since `epoch` (integer arithmetic on every insert and poll).
    timers: TimerWheel<Timer, u64>,
    outgoing: VecDeque<Outgoing>,
    events: VecDeque<Event>,
    dropped: DropCounters,
    leaving: bool,
    /// The rows other nodes shared.
    matrix: Matrix,
    /// This node's own row, in chunks that fit a ping.
    gossip: RowGossip,
    schedule: HeartbeatSchedule,
    liveness: LivenessRules,
    witnesses: Witnesses,
    conflicts: ConflictRules,
    /// Peers holding this node at incarnations it never took (another process with its name?).
    refutations: RefutationWatch,
    /// The mesh keys; `None`: unauthenticated mode.
    keyring: Option<Keyring>,
    /// Counts sealed datagrams: the per-process part of every nonce.
    seal_counter: u64,
    /// Where sealed datagrams are opened (no allocation per datagram).
    scratch: Vec<u8>,
    /// How many of a peer's newest probes may still be answered: ⌈suspect_after /
    /// interval⌉, at least 1 (fixed by the settings; used on every row refresh).
    in_flight: u32,
    /// Where the start fell on the shared clock ([`Mesh::set_phase`]), kept to lay the
    /// heartbeat slots out again when the interval changes.
    phase: Option<Duration>,
    /// Messages on their way out and half received.
    transfers: Transfers,
    /// This node's tags.
    own_tags: OwnTags,
    /// The peers' tags, as last received.
    peer_tags: HashMap<PeerId, PeerTags>,
    /// Per peer, how far it has this node's tags.
    tag_sync: HashMap<PeerId, messaging::TagSync>,
    /// Queries asked and to answer.
    queries: Queries,
    /// Where an inner datagram is built before it is wrapped for a relay.
    relay_buf: Vec<u8>,
    /// The address families the transport can send to ([`Mesh::set_families`]).
    families: Families,
    /// This node's network coordinate, moved by every RTT it measures.
    coordinate: Coordinate,
    /// Where the coordinate's random directions come from (seeded: reproducible runs).
    coordinate_rng: Rng,
    /// The probing mode in effect (`settings.probe_mode` resolved by the mesh's size).
    mode: ProbeMode,
    /// Sampled mode: every node's liveness as the mesh told it, and the updates to pass on.
    membership: Membership,
    /// Sampled mode: whom to probe each round, and what came back.
    sampling: Sampling,
    /// Sampled mode: rounds started (stale indirect-probe timers are told apart by it).
    round: u64,
    /// Sampled mode: where a Pong's membership updates are encoded (reused).
    member_buf: Vec<u8>,
    /// Sampled mode: the peers the row is rebuilt from (reused).
    row_keys: Vec<usize>,
    /// The peers that hold evidence of a second process with their identity: the only
    /// ones whose conflicts can expire.
    rival_keys: Vec<usize>,
    /// Probes on demand waiting for their Pong ([`Mesh::measure_now`]).
    measuring: Vec<measure_now::Measuring>,
}

/// Sampled mode: a node's row names the peers it probed in this many last rounds (and heard
/// within as many intervals); the others are estimated by everyone.
const ROW_RECENT_ROUNDS: u64 = 4;

/// ⌈suspect_after / interval⌉, at least 1: how many of a peer's newest probes may still be
/// answered.
fn in_flight(settings: &Settings) -> u32 {
    let n = settings
        .suspect_after
        .as_nanos()
        .div_ceil(settings.heartbeat_interval.as_nanos().max(1));
    u32::try_from(n).unwrap_or(u32::MAX).max(1)
}

impl fmt::Debug for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mesh")
            .field("name", &self.name)
            .field("incarnation", &self.settings.incarnation)
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

impl Mesh {
    /// A node called `name` with no peers yet; `now` is its start time.
    pub fn new(name: &str, settings: Settings, now: Instant) -> Mesh {
        let interval_ns = u64::try_from(settings.heartbeat_interval.as_nanos()).unwrap_or(u64::MAX);
        let id = NodeId::from_name(name);
        let (settings_fanout, settings_seed) = (settings.probe_fanout, settings.seed);
        let settings_in_flight = in_flight(&settings);
        Mesh {
            name: name.to_owned(),
            id,
            epoch: now,
            now,
            now_ns: 0,
            peers: PeerTable::new(id),
            timers: TimerWheel::new(0),
            outgoing: VecDeque::new(),
            events: VecDeque::new(),
            dropped: DropCounters::default(),
            leaving: false,
            matrix: Matrix::default(),
            gossip: RowGossip::default(),
            schedule: HeartbeatSchedule::new(interval_ns),
            liveness: LivenessRules::new(&settings),
            witnesses: Witnesses::default(),
            conflicts: ConflictRules::new(&settings),
            refutations: RefutationWatch::default(),
            keyring: None,
            // Counters start at a point drawn from the seed (random per process in the
            // driver): two processes that ever share an identity and an incarnation (after
            // refutations) still do not share nonces.
            seal_counter: Rng::new(settings.seed).next_u64() >> 2,
            coordinate: Coordinate::default(),
            coordinate_rng: Rng::new(settings.seed ^ 0x636f_6f72_6469_6e61),
            scratch: Vec::new(),
            in_flight: settings_in_flight,
            phase: None,
            settings,
            transfers: Transfers::default(),
            own_tags: OwnTags::default(),
            peer_tags: HashMap::new(),
            tag_sync: HashMap::new(),
            queries: Queries::default(),
            relay_buf: Vec::new(),
            families: Families::BOTH,
            mode: ProbeMode::Full,
            membership: Membership::default(),
            sampling: Sampling::with_keep(settings_fanout, settings_seed, settings_in_flight),
            round: 0,
            member_buf: Vec::new(),
            row_keys: Vec::new(),
            rival_keys: Vec::new(),
            measuring: Vec::new(),
        }
    }

    /// A node called `name` with every node of `nodes` (name and address) as a peer, listed
    /// in that order; `nodes` may include this node itself, which places it in the listing.
    /// How a mesh is built from a list of all nodes, such as a config file's.
    pub fn with_nodes<'a>(
        name: &str,
        settings: Settings,
        now: Instant,
        nodes: impl IntoIterator<Item = (&'a str, SocketAddr)>,
    ) -> Mesh {
        let mut mesh = Mesh::new(name, settings, now);
        for (node, addr) in nodes {
            mesh.peers.insert(node, addr);
        }
        mesh.rebuild_schedule();
        mesh
    }

    /// Adds a peer and schedules its first heartbeat within one interval. Adding a name
    /// twice returns the existing handle. Adding this node's own name returns `None` and
    /// places this node at that point of the listing ([`Mesh::matrix`] rows and columns are
    /// listed in the order nodes were added; this node first unless named).
    pub fn add_peer(&mut self, name: &str, addr: SocketAddr) -> Option<PeerId> {
        let known = self.peers.len();
        let peer = self.peers.insert(name, addr);
        if self.peers.len() != known || peer.is_none() {
            self.rebuild_schedule();
        }
        peer
    }

    /// Removes a peer: it is no longer pinged, answered or listed; its row and its column
    /// of the matrix are forgotten, queued datagrams and events for it are dropped (an
    /// [`Event::Removed`] follows, then an [`Event::Failed`] for each confirmed message to
    /// it not yet acknowledged), and
    /// `id` is refused by every call from now on (a peer added later never gets it).
    /// Returns what this node knew of it, or `None` if `id` names no current peer.
    pub fn remove_peer(&mut self, id: PeerId) -> Option<Peer> {
        let (key, peer) = self.peers.remove(id)?;
        info!("{}: peer {} removed", self.name, peer.name());
        self.matrix.forget(key);
        self.witnesses.forget(key);
        self.membership.forget(key);
        self.sampling.forget(key);
        let unconfirmed = self.transfers.forget(id);
        self.peer_tags.remove(&id);
        self.tag_sync.remove(&id);
        self.measuring.retain(|m| m.peer != id);
        self.outgoing.retain(|out| out.peer() != key);
        self.events.retain(|event| event.peer() != Some(id));
        self.events.push_back(Event::Removed {
            peer: id,
            name: peer.name().to_owned(),
        });
        // A confirmed message to it will never be acknowledged now: say so at once.
        for message in unconfirmed {
            self.events.push_back(Event::Failed {
                to: id,
                id: message,
            });
        }
        self.rebuild_schedule();
        Some(peer)
    }

    /// Points peer `id` at another address (a reload moved it, or its host name now
    /// resolves elsewhere): heartbeats go there from the next one on; its state, counters
    /// and RTT window stay, and an [`Event::Moved`] says so. Without a keyring, datagrams
    /// are accepted from the new address's IP from now on, no longer from the old one's.
    /// Returns `false` if `id` names no current peer; the same address is no change.
    pub fn set_peer_addr(&mut self, id: PeerId, addr: SocketAddr) -> bool {
        let Some(key) = self.peers.key(id) else {
            return false;
        };
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        match self.peers.set_addr(key, addr) {
            Some(old) if old != addr => {
                info!(
                    "{}: peer {} moved from {old} to {addr}",
                    self.name,
                    self.peers[key].name()
                );
                self.events.push_back(Event::Moved {
                    peer: id,
                    from: old,
                    to: addr,
                });
            }
            _ => {}
        }
        true
    }

    /// Changes the heartbeat interval and the suspect and dead times (a reload). The
    /// heartbeat slots are laid out afresh on the new interval (on the shared clock, if
    /// [`Mesh::set_phase`] was given it), and every peer's silence is judged again by the
    /// new times at once. Peers' states, counters and windows stay.
    pub fn set_timing(
        &mut self,
        heartbeat_interval: Duration,
        suspect_after: Duration,
        dead_after: Duration,
    ) {
        let same = self.settings.heartbeat_interval == heartbeat_interval
            && self.settings.suspect_after == suspect_after
            && self.settings.dead_after == dead_after;
        if same {
            return;
        }
        info!(
            "{}: heartbeat every {heartbeat_interval:?}, suspect after {suspect_after:?}, \
             dead after {dead_after:?}",
            self.name
        );
        self.settings.heartbeat_interval = heartbeat_interval;
        self.settings.suspect_after = suspect_after;
        self.settings.dead_after = dead_after;
        self.in_flight = in_flight(&self.settings);
        self.sampling.keep_rounds_for(self.in_flight);
        self.liveness = LivenessRules::new(&self.settings);
        self.conflicts = ConflictRules::new(&self.settings);
        let interval_ns = u64::try_from(heartbeat_interval.as_nanos()).unwrap_or(u64::MAX);
        self.schedule = HeartbeatSchedule::new(interval_ns);
        match self.phase {
            Some(phase) => self.set_phase(phase),
            None => self.rebuild_schedule(),
        }
        let armed: Vec<usize> = self.peers.iter().map(|(key, _)| key).collect();
        for key in armed {
            self.judge_silence(key);
        }
    }

    /// Lets the peer table look nodes up in `directory`, shared with other meshes of the
    /// same config, instead of in lookup tables of its own: for a process that runs many
    /// meshes (the simulator). Works only while the directory lists exactly this mesh's
    /// peers (and maybe this node) at their addresses; returns whether it does. A later
    /// change of the peers (a reload, [`Mesh::add_peer`]) goes back to tables of its own.
    pub fn share_directory(&mut self, directory: &Arc<Directory>) -> bool {
        self.peers.share(directory)
    }

    /// Says where this node's start falls on a clock all nodes share (the wall clock): how
    /// long after an interval boundary of that clock `now` (given to [`Mesh::new`]) is.
    /// Heartbeat slots then line up across nodes. Without it, slots start at `now`.
    pub fn set_phase(&mut self, since_boundary: Duration) {
        self.phase = Some(since_boundary);
        let interval = self.schedule.interval_ns();
        let into = u64::try_from(since_boundary.as_nanos() % u128::from(interval)).unwrap_or(0);
        // A boundary before the clock's own origin cannot be represented: count from start.
        let representable = self.epoch.checked_sub(Duration::from_nanos(into)).is_some();
        self.schedule.set_phase(into, representable);
        self.rebuild_schedule();
    }

    fn rebuild_schedule(&mut self) {
        let mode = self.settings.probe_mode.resolve(self.peers.len() + 1);
        if mode != self.mode {
            info!(
                "{}: {} probing ({} nodes, probe_mode {})",
                self.name,
                mode,
                self.peers.len() + 1,
                self.settings.probe_mode
            );
            self.mode = mode;
            // A sampled row names the peers its origin heard in its last 4 rounds; a cell
            // is kept for twice that.
            let keep_cs = self.schedule.interval_ns().saturating_mul(8) / 10_000_000;
            self.matrix
                .set_sparse((mode == ProbeMode::Sampled).then_some(keep_cs));
            if mode == ProbeMode::Sampled {
                self.start_sampled();
            }
        }
        if self.is_sampled() {
            // One wake-up per interval, on the shared clock: the round.
            self.sampling
                .set_peers(self.peers.iter().map(|(key, _)| key));
            self.schedule.rebuild_rounds(self.now_ns, &mut self.timers);
        } else {
            self.schedule
                .rebuild(self.peers.roster(), self.now_ns, &mut self.timers);
        }
    }

    /// Whether this node probes a sample of its peers (see [`Mesh::probe_mode`]).
    pub fn is_sampled(&self) -> bool {
        self.mode == ProbeMode::Sampled
    }

    /// The probing mode in effect: [`ProbeMode::Full`] or [`ProbeMode::Sampled`]
    /// (`Settings::probe_mode` resolved by the mesh's size).
    pub fn probe_mode(&self) -> ProbeMode {
        self.mode
    }

    // ----- inputs -----------------------------------------------------------------------

    /// Feeds one received datagram. Malformed or unwelcome datagrams are dropped, counted
    /// ([`Mesh::dropped`]) and logged at trace level; they never change a peer's state.
    /// `from` may be an IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4
    /// sender): it is taken as the plain IPv4 one ([`crate::core::addr::canonical`]).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        // A dual-stack socket reports IPv4 senders as `::ffff:a.b.c.d`: the same peer as
        // the configured `a.b.c.d`, so compared, answered and shown as that.
        let from = addr::canonical(from);
        self.advance(now);
        let sealed = seal::is_sealed(bytes);
        let Some(keyring) = &self.keyring else {
            if sealed {
                return self.drop_datagram(DropReason::AuthFailed, from, &"sealed, no keyring");
            }
            if !self.peers.allows_ip(from.ip()) {
                return self.drop_datagram(DropReason::AddressNotAllowed, from, &from.ip());
            }
            return self.handle_plain(now, from, bytes, None);
        };
        if !sealed {
            return self.drop_datagram(DropReason::AuthFailed, from, &"not sealed");
        }
        // Opened into a scratch buffer owned by the core: no allocation per datagram.
        let mut scratch = std::mem::take(&mut self.scratch);
        if scratch.len() < bytes.len() {
            scratch.resize(bytes.len().max(self.settings.max_datagram), 0);
        }
        match seal::open(keyring, bytes, &mut scratch) {
            Ok((plain, sealer)) => self.handle_plain(now, from, plain, Some(sealer)),
            Err(err) => self.drop_datagram(DropReason::AuthFailed, from, &err),
        }
        self.scratch = scratch;
    }

    /// A plain datagram: parsed and acted on. `sealer` is who the seal says sent it.
    fn handle_plain(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
        sealer: Option<seal::Sealer>,
    ) {
        let packet = match Packet::parse(bytes) {
            Ok(packet) => packet,
            Err(err) => {
                let reason = match err {
                    wire::DecodeError::UnsupportedVersion(_) => DropReason::WrongVersion,
                    _ => DropReason::Malformed,
                };
                return self.drop_datagram(reason, from, &err);
            }
        };
        let header = packet.header;
        if header.to != self.id {
            return self.drop_datagram(DropReason::Misdirected, from, &header.to);
        }
        if header.from == self.id {
            return self.drop_datagram(DropReason::FromSelf, from, &header.from);
        }
        if sealer.is_some_and(|s| s.sender != header.from.0 || s.incarnation != header.incarnation)
        {
            // The seal names another sender than the datagram inside: a splice.
            return self.drop_datagram(DropReason::AuthFailed, from, &"sealer mismatch");
        }
        let Some(key) = self.peers.by_id(header.from) else {
            return self.drop_datagram(DropReason::UnknownSender, from, &header.from);
        };
        let answers_probe = match packet.body {
            // The probe number and send time a Pong echoes are a nonce this node chose, so
            // it was made after that Ping, by a process that received it. (The other proof
            // of freshness is naming this node's current incarnation.)
            Body::Pong { probe, echo_ns, .. } => self.peers[key].awaits(probe, echo_ns),
            _ => false,
        };
        let fresh = answers_probe || header.to_incarnation == self.settings.incarnation;
        if header.to_incarnation > self.settings.incarnation
            && self.vouches_for_claim(key, &packet, sealer.is_some(), answers_probe)
        {
            // The sender holds this node at a later incarnation than its own: another
            // process of this name, or this node's clock went back. Refute it.
            self.refute(header.to_incarnation, key);
        }
        if !fresh {
            if let Body::Ping { probe, sent_ns, .. } = packet.body {
                // Not believed, but answered: the Pong names the sender's incarnation, which
                // proves this node fresh to it, so its next datagrams echo this incarnation.
                self.answer_ping(now, key, from, probe, sent_ns, header.incarnation);
                if header.to_incarnation == 0 && self.peers[key].greet() {
                    // The sender has heard nothing of this node yet: the first step of the
                    // handshake, as expected after any start, not a drop. Another before
                    // the peer is believed means it does not hear the answers: counted.
                    trace!("{}: first ping from {from}, answered", self.name);
                    return;
                }
            }
            return self.drop_datagram(DropReason::NotFresh, from, &header.to_incarnation);
        }
        if let Err(reason) = self.admit(key, from, &header, answers_probe) {
            if reason == DropReason::StaleIncarnation {
                // Fresh, so a live process sent it: from elsewhere than the incarnation
                // held, that is a second process with this identity.
                let now_ns = self.ns_of(now);
                let change = self.peers[key].heard_stale_from(from, now_ns, &self.conflicts);
                self.watch_rival(key);
                self.conflict_changed(key, change);
            }
            if let (DropReason::StaleIncarnation, Body::Ping { probe, sent_ns, .. }) =
                (reason, packet.body)
            {
                // A live process older than the one held: tell it which one is held, so it
                // takes a later incarnation (refutation) if it is not a ghost.
                let held = self.peers[key].incarnation().unwrap_or(0);
                self.answer_ping(now, key, from, probe, sent_ns, held);
            }
            return self.drop_datagram(reason, from, &(header.incarnation, header.seq));
        }
        self.peers[key].believed();
        if let Body::Leave = packet.body {
            // A goodbye is not a sign of life: straight to `left`, with no `Up` first.
            let now_ns = self.ns_of(now);
            self.peers[key].hear_leave(now_ns);
            if self.is_sampled() {
                self.heard_leave_sampled(key, header.incarnation);
            }
            return self.set_state(key, PeerState::Left);
        }
        self.heard(key, from);
        match packet.body {
            Body::Ping {
                probe,
                sent_ns,
                row,
            } => {
                trace!("{} ping #{probe} from {from}", self.name);
                self.answer_ping(now, key, from, probe, sent_ns, header.incarnation);
                if let Some(row) = row {
                    self.ingest_row(key, header.incarnation, row);
                }
            }
            Body::Pong {
                probe,
                echo_ns,
                hold_us,
                coordinate,
                members,
            } => {
                let now_ns = self.ns_of(now);
                match self.peers[key].record_pong(probe, echo_ns, hold_us, now_ns) {
                    Some(rtt) => {
                        trace!(
                            "{} pong #{probe} from {from}: rtt {rtt} ns (held {hold_us} us)",
                            self.name
                        );
                        if let Some(remote) = Coordinate::from_wire(&coordinate) {
                            self.observe_coordinate(key, remote);
                        }
                        if self.is_sampled() {
                            self.sampling.answered(key);
                            self.apply_member_state(key);
                        }
                        self.answer_measuring(key, rtt);
                    }
                    None => self.drop_datagram(DropReason::StalePong, from, &probe),
                }
                if self.is_sampled() {
                    self.merge_members(members);
                }
            }
            Body::Leave => {}
            Body::Fragment(fragment) => self.on_fragment(key, header.incarnation, &fragment),
            Body::Ack(ack) => self.on_ack(key, &ack),
            Body::Relay { target, inner } => self.on_relay(now, key, target, inner),
        }
    }

    /// Runs every timer due at `now`: heartbeats to send, silences to judge. Early or extra
    /// calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        while let Some((_, timer)) = self.timers.poll(self.now_ns) {
            match timer {
                Timer::Slot { slot, epoch } if self.schedule.is_current(epoch) => {
                    self.heartbeat_slot(slot as usize)
                }
                Timer::Slot { .. } => {}
                Timer::Retransmit {
                    peer,
                    number,
                    round,
                } => self.on_retransmit_timer(peer, number, round),
                Timer::QueryDeadline(query) => self.on_query_deadline(query),
                Timer::IndirectProbes { round } if round == self.round => {
                    self.send_indirect_probes()
                }
                Timer::IndirectProbes { .. } => {}
                Timer::Liveness(id) => {
                    // A timer of a removed peer is refused here, whoever holds its slot now.
                    if let Some(key) = self.peers.key(id) {
                        self.judge_silence(key)
                    }
                }
            }
        }
    }

    /// Says goodbye: queues a `Leave` to every peer and stops heartbeating. Drain
    /// [`Mesh::poll_transmit`] afterwards, then stop the node.
    pub fn leave(&mut self, now: Instant) {
        self.advance(now);
        if self.leaving {
            return;
        }
        self.leaving = true;
        info!("{} leaving the mesh", self.name);
        if self.is_sampled() {
            return self.leave_sampled();
        }
        for key in self.peers.iter().map(|(k, _)| k).collect::<Vec<_>>() {
            self.outgoing.push_back(Outgoing::Leave(key));
        }
    }

    /// Says which address families the transport can send to (the driver's socket: an IPv4
    /// one reaches no IPv6 peer). A peer of another family is diagnosed
    /// [`Diagnosis::FamilyMismatch`]; nothing else changes (its datagrams are still
    /// produced, and the transport fails them). Default: both.
    pub fn set_families(&mut self, families: Families) {
        self.families = families;
    }

    /// What [`Mesh::set_families`] last said.
    pub fn families(&self) -> Families {
        self.families
    }

    /// Sets (or, with `None`, removes) the mesh keyring. With one, every datagram is sealed
    /// with the first key and only datagrams sealed with one of its keys are accepted;
    /// without, datagrams are plain and accepted only from the peers' configured IPs.
    pub fn set_keyring(&mut self, keyring: Option<Keyring>) {
        match &keyring {
            Some(ring) => info!(
                "{}: keyring of {} keys, sealing with key {}",
                self.name,
                ring.keys().len(),
                ring.primary().id_hex()
            ),
            None => info!("{}: no keyring: datagrams are not authenticated", self.name),
        }
        self.keyring = keyring;
    }

    /// The keyring in use.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref()
    }

    // ----- outputs ----------------------------------------------------------------------

    /// The next datagram to send, encoded into `buf` (give it at least
    /// [`Settings::max_datagram`] bytes). `now` stamps pings and measures pong hold times,
    /// so pass the time of sending. Call until `None` after every input.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        self.advance(now);
        while let Some(out) = self.outgoing.pop_front() {
            if self.keyring.is_none() {
                match self.encode(out, buf) {
                    Some(transmit) => return Some(transmit),
                    None => continue,
                }
            }
            // Encode the plain datagram where the ciphertext goes, then seal in place.
            let inner = buf
                .len()
                .min(self.settings.max_datagram)
                .saturating_sub(SEAL_OVERHEAD);
            let Some(plain) = buf.get_mut(SEAL_HEADER_LEN..SEAL_HEADER_LEN + inner) else {
                warn!("{}: transmit buffer too small to seal", self.name);
                return None;
            };
            let Some(transmit) = self.encode(out, plain) else {
                continue;
            };
            let keyring = self.keyring.as_ref()?;
            self.seal_counter += 1;
            let sealed = seal::seal(
                keyring,
                self.id.0,
                self.settings.incarnation,
                self.seal_counter,
                buf,
                transmit.len,
            )?;
            return Some(Transmit {
                dst: transmit.dst,
                len: sealed,
            });
        }
        None
    }

    /// Whether [`Mesh::poll_transmit`] has anything to send: a driver can skip reading the
    /// clock for it after a datagram that asked for no answer.
    pub fn has_transmit(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// When [`Mesh::handle_timeout`] should next be called (`None`: no timer pending).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ns = self.timers.next_deadline()?;
        self.epoch.checked_add(Duration::from_nanos(ns))
    }

    /// The next thing that happened, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ----- read access ------------------------------------------------------------------

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This node's identity.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This process's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.settings.incarnation
    }

    /// Whether another process is judged to be running with this node's name: peers held
    /// it at incarnations this process never took, twice or more in a row (each time it
    /// refuted). Ends once that has not happened for 4 × `dead_after`.
    pub fn identity_conflict(&self) -> bool {
        self.refutations.is_active()
    }

    /// The settings this node runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The time the node started (the `now` given to [`Mesh::new`]).
    pub fn started(&self) -> Instant {
        self.epoch
    }

    /// The latest `now` any input carried.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Every peer with its handle, in listing order (the order they were added).
    pub fn peers(&self) -> impl Iterator<Item = (PeerId, &Peer)> + '_ {
        self.peers.roster().iter().filter_map(|member| {
            let key = member.key()?;
            Some((self.peers.id_of(key), &self.peers[key]))
        })
    }

    /// How many peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// One peer (`None` once removed).
    pub fn peer(&self, id: PeerId) -> Option<&Peer> {
        self.peers.get(self.peers.key(id)?)
    }

    /// When a valid datagram of peer `id` last arrived.
    pub fn last_heard(&self, id: PeerId) -> Option<Instant> {
        let ns = self.peer(id)?.last_heard_ns()?;
        Some(self.epoch + Duration::from_nanos(ns))
    }

    /// The peer with this identity.
    pub fn peer_by_id(&self, id: NodeId) -> Option<PeerId> {
        self.peers.by_id(id).map(|k| self.peers.id_of(k))
    }

    /// The peer configured at this address (an IPv4-mapped one finds the IPv4 peer).
    pub fn peer_by_addr(&self, addr: SocketAddr) -> Option<PeerId> {
        self.peers
            .by_addr(addr::canonical(addr))
            .map(|k| self.peers.id_of(k))
    }

    /// The peer with this name (case-insensitive).
    pub fn peer_by_name(&self, name: &str) -> Option<PeerId> {
        self.peer_by_id(NodeId::from_name(name))
    }

    /// Where a peer is listed: its row and column in [`Mesh::matrix`] and
    /// [`Mesh::matrix_snapshot`] (`None` once removed). O(peers): a scan of the listing.
    pub fn matrix_index(&self, id: PeerId) -> Option<usize> {
        let key = self.peers.key(id)?;
        self.peers
            .roster()
            .iter()
            .position(|m| *m == Member::peer(key))
    }

    /// The peer at row and column `index` of the matrix (`None` for this node's own, or
    /// past the end).
    pub fn peer_at(&self, index: usize) -> Option<PeerId> {
        let key = self.peers.roster().get(index)?.key()?;
        Some(self.peers.id_of(key))
    }

    /// Loss in percent over the recent settled probes to this peer (`None` before any).
    /// A probe settles once answered, or once `suspect_after` worth of newer probes went out.
    pub fn loss_pct(&self, id: PeerId) -> Option<f64> {
        self.peer(id)?.loss_pct_with(self.in_flight)
    }

    /// What this node concludes about a peer, with the other nodes' rows as witnesses.
    pub fn diagnosis(&self, id: PeerId) -> Option<Diagnosis> {
        let key = self.peers.key(id)?;
        let peer = &self.peers[key];
        if peer.rival_addr().is_some() {
            return Some(Diagnosis::Conflict);
        }
        if !self.families.reaches(peer.addr()) {
            return Some(Diagnosis::FamilyMismatch);
        }
        Some(match peer.state() {
            PeerState::Alive if peer.is_asymmetric() => Diagnosis::Asymmetric,
            PeerState::Alive => Diagnosis::Ok,
            PeerState::Suspect => Diagnosis::Suspect,
            PeerState::Dead => Diagnosis::Dead,
            PeerState::Unreachable => Diagnosis::Unreachable,
            PeerState::Left => Diagnosis::Left,
            // Witnesses as of the last interval: O(1) per peer, so a status report of a
            // large mesh does not cost O(peers²).
            PeerState::Unknown if self.witness_of(key) => Diagnosis::Unreachable,
            PeerState::Unknown => Diagnosis::Unknown,
        })
    }

    /// The whole latency matrix as this node knows it: its own row, live, and the rows the
    /// other nodes shared (aged out once older than `dead_after`).
    pub fn matrix(&self) -> MatrixView {
        self.matrix_snapshot().view()
    }

    /// A copy of the matrix at this instant, cheap to take (the shared rows are copied as
    /// stored), from which reports render in bounded steps.
    pub fn matrix_snapshot(&self) -> MatrixSnapshot {
        // Internal columns: 0 is this node, key + 1 is peer `key`; shown in listing order.
        let columns: Vec<usize> = self
            .peers
            .roster()
            .iter()
            .map(|m| m.key().map_or(0, |key| key + 1))
            .collect();
        let names = columns
            .iter()
            .map(|&c| match c {
                0 => self.name.clone(),
                c => self.peers[c - 1].name().to_owned(),
            })
            .collect();
        let own_row = columns
            .iter()
            .map(|&to| {
                let peer = self.peers.get(to.checked_sub(1)?)?;
                Some((
                    peer.rtt().map(|r| r.p50.as_nanos() as f64 / 1000.0),
                    peer.loss_pct_with(self.in_flight),
                    peer.state(),
                ))
            })
            .collect();
        let coordinates = columns
            .iter()
            .map(|&c| match c.checked_sub(1) {
                None => Some(self.coordinate).filter(Coordinate::is_settled),
                Some(key) => {
                    let peer = self.peers.get(key)?;
                    let gone = matches!(peer.state(), PeerState::Dead | PeerState::Left);
                    peer.coordinate().filter(|c| !gone && c.is_settled())
                }
            })
            .collect();
        MatrixSnapshot::new(&self.name, names, columns, own_row, |from| {
            let row = self.matrix.row(from - 1)?;
            let age = self.now.saturating_duration_since(row.updated);
            let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
            Some((age_ms, self.row_is_fresh(from - 1), &row.cells))
        })
        .with_coordinates(coordinates)
    }

    /// Datagrams dropped, by reason.
    pub fn dropped(&self) -> &DropCounters {
        &self.dropped
    }

    /// The largest payload [`Mesh::send`] accepts ([`crate::wire::MAX_MESSAGE`]).
    pub fn max_payload(&self) -> usize {
        wire::MAX_MESSAGE
    }

    // ----- internals --------------------------------------------------------------------

    /// The largest plain datagram: the configured maximum less what sealing adds.
    fn inner_max(&self) -> usize {
        let overhead = if self.keyring.is_some() {
            SEAL_OVERHEAD
        } else {
            0
        };
        self.settings.max_datagram.saturating_sub(overhead)
    }

    fn advance(&mut self, now: Instant) {
        // Time never runs backwards inside the core, whatever the caller passes.
        if now > self.now {
            self.now = now;
            self.now_ns = saturating_ns(now.saturating_duration_since(self.epoch));
        }
    }

    /// `t` in nanoseconds since `epoch`; free when `t` is the latest input's `now`.
    fn ns_of(&self, t: Instant) -> u64 {
        if t == self.now {
            self.now_ns
        } else {
            saturating_ns(t.saturating_duration_since(self.epoch))
        }
    }

    fn queue_limit(&self) -> usize {
        // Room for a ping, a pong and a leave per peer, plus application data.
        4 * self.peers.len() + 1024
    }

    fn drop_datagram(&mut self, reason: DropReason, from: SocketAddr, detail: &dyn fmt::Debug) {
        self.dropped.bump(reason);
        trace!(
            "{} dropped datagram from {from}: {} ({detail:?})",
            self.name,
            reason.as_str()
        );
    }

    /// Whether the incarnation a datagram says the peer holds for this node can be believed
    /// enough to refute it. Sealed: yes (a key holder sent it; a replay can only name an
    /// incarnation this node's name had before, which is smaller unless a clock went back).
    /// Unkeyed, a Pong only when it answers this node's own Ping: any other Pong may answer
    /// a forged Ping whose incarnation the forger chose (and the answer goes to the real
    /// peer). Another kind, when it comes from the peer's current incarnation, which a blind
    /// forger does not know.
    fn vouches_for_claim(
        &self,
        key: usize,
        packet: &Packet<'_>,
        sealed: bool,
        answers_probe: bool,
    ) -> bool {
        sealed
            || match packet.body {
                Body::Pong { .. } => answers_probe,
                _ => self.peers[key].incarnation() == Some(packet.header.incarnation),
            }
    }

    /// Lets a fresh datagram speak for the peer, or says why not ([`Peer::admit`]); tells
    /// of a restart.
    fn admit(
        &mut self,
        key: usize,
        from: SocketAddr,
        header: &Header,
        answers_probe: bool,
    ) -> Result<(), DropReason> {
        let incarnation = header.incarnation;
        let admission = self.peers[key].admit(incarnation, header.seq, answers_probe)?;
        if let Admission::Restarted { .. } = admission {
            let change = self.peers[key].restarted_from(from, self.now_ns, &self.conflicts);
            self.watch_rival(key);
            self.conflict_changed(key, change);
            // The new process holds none of this node's tags.
            self.tags_lost_by(key);
        }
        match admission {
            Admission::Known | Admission::First => {}
            Admission::WindowReset => warn!(
                "{}: peer {}'s sequence numbers fell behind its replay window \
                 (a forged number pushed it ahead?): window reset",
                self.name,
                self.peers[key].name()
            ),
            Admission::Restarted { old } => {
                info!(
                    "{}: peer {} restarted (incarnation {old:016x} -> {incarnation:016x})",
                    self.name,
                    self.peers[key].name()
                );
                self.events.push_back(Event::Restarted {
                    peer: self.peers.id_of(key),
                    incarnation,
                });
            }
        }
        Ok(())
    }

    /// A Pong of peer `key` carried `remote`: remember it, and move this node's coordinate
    /// towards the peer's RTT median.
    fn observe_coordinate(&mut self, key: usize, remote: Coordinate) {
        let peer = &mut self.peers[key];
        peer.offer_coordinate(remote, self.now_ns);
        if let Some(p50) = peer.rtt_p50_ns() {
            self.coordinate
                .observe(&remote, Duration::from_nanos(p50), &mut self.coordinate_rng);
        }
    }

    /// This node's network coordinate: with a peer's ([`Peer::coordinate`]), it estimates
    /// the round trip between them ([`Coordinate::estimate_rtt`]).
    pub fn coordinate(&self) -> &Coordinate {
        &self.coordinate
    }

    /// The round trip the coordinates predict between `a` and `b`, where `None` stands for
    /// this node; `None` while either coordinate is unknown or not yet settled
    /// ([`Coordinate::is_settled`]). A raw prediction: it applies no liveness rule (the
    /// reports give none for a dead or left node).
    pub fn estimate_rtt(&self, a: Option<PeerId>, b: Option<PeerId>) -> Option<Duration> {
        let at = |p: Option<PeerId>| {
            match p {
                None => Some(self.coordinate),
                Some(id) => self.peer(id)?.coordinate(),
            }
            .filter(Coordinate::is_settled)
        };
        Some(at(a)?.estimate_rtt(&at(b)?))
    }

    /// Queues the Pong to a Ping that arrived at `now`, naming `to_incarnation` as the
    /// receiver's incarnation.
    fn answer_ping(
        &mut self,
        now: Instant,
        key: usize,
        from: SocketAddr,
        probe: u32,
        sent_ns: u64,
        to_incarnation: u64,
    ) {
        if self.outgoing.len() >= self.queue_limit() {
            return;
        }
        self.outgoing.push_back(Outgoing::Pong {
            peer: key,
            to: from,
            probe,
            echo_ns: sent_ns,
            received_ns: self.ns_of(now),
            to_incarnation,
        });
    }

    /// A peer (`key`) holds this node at incarnation `held`, later than this process's own:
    /// another process with this node's name ran (or runs) with it, or the clock went back.
    /// This process takes a later incarnation, so the peers believe it again (SWIM's
    /// refutation). Sequence numbers start again, as for any new incarnation.
    fn refute(&mut self, held: u64, key: usize) {
        let own = self.settings.incarnation;
        // A step of 1 to 2^16 drawn from the seed and the claim: two processes that refute
        // the same claim (three with one name) take different incarnations.
        let step = 1 + (Rng::new(self.settings.seed ^ held).next_u64() & 0xffff);
        let Some(next) = held.checked_add(step).or(held.checked_add(1)) else {
            error!(
                "{}: peer {} holds this node at the largest incarnation there is; \
                 it cannot be refuted (restart that peer)",
                self.name,
                self.peers[key].name()
            );
            return;
        };
        warn!(
            "{}: peer {} holds this node at incarnation {held:016x}, later than its own \
             {own:016x} (another process with this name, or the clock went back): \
             refuting with incarnation {next:016x}",
            self.name,
            self.peers[key].name()
        );
        self.settings.incarnation = next;
        self.membership.new_incarnation();
        if self.is_sampled() {
            self.membership
                .announce(self.id, next, crate::wire::Verdict::Alive);
        }
        for (_, peer) in self.peers.iter_mut() {
            peer.restart_sequence();
        }
        if self.refutations.note(self.now_ns, &self.conflicts) {
            error!(
                "{}: another process is running as {}: peers keep holding this node at \
                 incarnations it never took ({} refutations in a row). The two take turns \
                 at being believed until one stops; stop the other one (a cloned machine \
                 or image with this hostname, or a second `peermesh run --name {}`?)",
                self.name,
                self.name,
                self.refutations.count(),
                self.name
            );
        }
    }

    /// Peer `key`'s conflict verdict changed: said (loudly when it began), and as an event.
    fn conflict_changed(&mut self, key: usize, change: Option<ConflictChange>) {
        let peer = &self.peers[key];
        let conflict = match change {
            None => return,
            Some(ConflictChange::Began) => {
                let (a, b) = peer
                    .conflict_addrs()
                    .map_or(("?".to_owned(), "?".to_owned()), |(a, b)| {
                        (a.to_string(), b.to_string())
                    });
                error!(
                    "{}: two processes claim to be {}, one at {a} and one at {b}: a cloned \
                     machine or image, or a second process started with that name? They take \
                     turns at being believed until one stops",
                    self.name,
                    peer.name(),
                );
                true
            }
            Some(ConflictChange::Ended) => {
                info!(
                    "{}: only one process claims to be {} again (at {})",
                    self.name,
                    peer.name(),
                    peer.seen_addr().map_or("?".to_owned(), |a| a.to_string()),
                );
                false
            }
        };
        self.events.push_back(Event::Conflict {
            peer: self.peers.id_of(key),
            conflict,
        });
    }

    /// Ends the conflicts no evidence came for lately (once an interval).
    /// Puts peer `key` on the list of peers whose conflict can expire, once it holds
    /// evidence of a rival.
    fn watch_rival(&mut self, key: usize) {
        if self.peers.get(key).is_some_and(Peer::has_rival) && !self.rival_keys.contains(&key) {
            self.rival_keys.push(key);
        }
    }

    fn expire_conflicts(&mut self) {
        let now_ns = self.now_ns;
        if self.refutations.expire(now_ns, &self.conflicts) {
            info!(
                "{}: no other process has claimed this node's name for a while",
                self.name
            );
        }
        let mut keys = std::mem::take(&mut self.rival_keys);
        keys.retain(|&key| {
            let Some(peer) = self.peers.get_mut(key) else {
                return false;
            };
            if peer.expire_rival(now_ns, &self.conflicts) {
                self.conflict_changed(key, Some(ConflictChange::Ended));
            }
            self.peers.get(key).is_some_and(Peer::has_rival)
        });
        self.rival_keys = keys;
    }

    /// A valid datagram came from the peer: it is alive.
    fn heard(&mut self, key: usize, from: SocketAddr) {
        let now_ns = self.now_ns;
        let peer = &mut self.peers[key];
        if let Some(before) = peer.hear(now_ns, from) {
            debug!(
                "{}: peer {} now sends from {from} (was {before})",
                self.name,
                peer.name()
            );
        }
        if self.mode == ProbeMode::Sampled {
            return self.heard_sampled(key);
        }
        if self.peers[key].state() != PeerState::Alive {
            self.set_state(key, PeerState::Alive);
        }
        if self.peers[key].arm_liveness() {
            let at = self.liveness.first_check(self.now_ns);
            self.set_liveness_timer(at, key);
        }
    }

    fn set_state(&mut self, key: usize, state: PeerState) {
        let Some(change) = self.peers[key].set_state(state, self.now_ns) else {
            return;
        };
        let id = self.peers.id_of(key);
        let name = self.peers[key].name();
        let old = change.old;
        match state {
            PeerState::Suspect | PeerState::Dead | PeerState::Unreachable => {
                warn!("{}: peer {name} {old} -> {state}", self.name)
            }
            _ => info!("{}: peer {name} {old} -> {state}", self.name),
        }
        if change.asymmetry_ended {
            self.events.push_back(Event::Asymmetric {
                peer: id,
                asymmetric: false,
            });
        }
        self.state_changed_for_messages(key, old, state);
        let event = match state {
            PeerState::Alive => Event::Up(id),
            PeerState::Suspect => Event::Suspect(id),
            PeerState::Dead => Event::Down(id),
            PeerState::Left => Event::Left(id),
            PeerState::Unreachable => Event::Unreachable(id),
            PeerState::Unknown => return,
        };
        self.events.push_back(event);
    }

    fn heartbeat_slot(&mut self, slot: usize) {
        if self.leaving {
            return;
        }
        if self.is_sampled() {
            self.sampled_round();
            self.schedule.advance(slot, self.now_ns, &mut self.timers);
            return;
        }
        if self.schedule.is_refresh_slot(slot) {
            self.refresh_row();
            self.judge_by_witnesses();
            self.expire_conflicts();
            self.tend_messages();
        }
        for &key in self.schedule.peers(slot) {
            if self
                .peers
                .get(key)
                .is_some_and(|p| p.state() != PeerState::Left)
            {
                self.outgoing.push_back(Outgoing::Ping(key));
            }
        }
        self.schedule.advance(slot, self.now_ns, &mut self.timers);
    }

    fn judge_silence(&mut self, key: usize) {
        let now_ns = self.now_ns;
        let peer = &mut self.peers[key];
        peer.disarm_liveness();
        if self.mode == ProbeMode::Sampled {
            // Sampled mode judges by probes and the mesh's verdicts, not by silence.
            return;
        }
        let Some(last) = peer.last_heard_ns() else {
            return;
        };
        let state = peer.state();
        let rules = self.liveness;
        let verdict = rules.on_silence(state, last, now_ns, || self.heard_by_others(key));
        if let Some(state) = verdict.state {
            self.set_state(key, state);
        }
        if let Some(at) = verdict.recheck_at {
            self.peers[key].arm_liveness();
            self.set_liveness_timer(at, key);
        }
    }

    /// Arms peer `key`'s liveness check at `at`, rounded up to the liveness grain.
    fn set_liveness_timer(&mut self, at: u64, key: usize) {
        let at = self.liveness.round_up(at);
        self.timers
            .insert(at, Timer::Liveness(self.peers.id_of(key)));
    }

    /// The header of the next datagram to peer `key`; it names the peer's incarnation as
    /// this node last verified it (0 before that), the proof of freshness the peer checks.
    fn header(&mut self, key: usize) -> Header {
        let peer = &mut self.peers[key];
        Header {
            from: self.id,
            incarnation: self.settings.incarnation,
            to: peer.id(),
            to_incarnation: peer.incarnation().unwrap_or(0),
            seq: peer.next_seq(),
        }
    }

    fn encode(&mut self, out: Outgoing, buf: &mut [u8]) -> Option<Transmit> {
        let key = out.peer();
        let addr = self.peers.get(key)?.addr();
        let dst = match &out {
            Outgoing::Pong { to, .. } => *to,
            _ => addr,
        };
        // Messages, acks and the indirect probes build their own datagrams (relayed ones
        // take two headers): a header made here would spend a sequence number on nothing,
        // and the peer's replay window would hold the gap.
        match out {
            Outgoing::Burst { number, .. } => return self.encode_fragment(key, number, buf),
            Outgoing::Ack {
                number, ref reply, ..
            } => return self.encode_ack(key, number, reply, buf),
            Outgoing::IndirectPing { target, .. } => {
                return self.encode_indirect_ping(key, target, buf)
            }
            Outgoing::RelayedPong {
                asker,
                probe,
                echo_ns,
                received_ns,
                ..
            } => return self.encode_relayed_pong(key, asker, probe, echo_ns, received_ns, buf),
            _ => {}
        }
        let mut header = self.header(key);
        let body = match out {
            Outgoing::Ping(_) => {
                let sent_ns = self.now_ns;
                let peer = &mut self.peers[key];
                let probe = peer.send_probe(sent_ns);
                let row = if self.gossip.has_row() {
                    self.gossip.chunk(peer.next_row_cursor())
                } else {
                    None
                };
                Body::Ping {
                    probe,
                    sent_ns,
                    row,
                }
            }
            Outgoing::Pong {
                probe,
                echo_ns,
                received_ns,
                to_incarnation,
                ..
            } => {
                header.to_incarnation = to_incarnation;
                let held = self.now_ns.saturating_sub(received_ns) / 1000;
                let members = if self.is_sampled() {
                    self.fill_members(buf.len())
                } else {
                    0
                };
                let body = Body::Pong {
                    probe,
                    echo_ns,
                    hold_us: u32::try_from(held).unwrap_or(u32::MAX),
                    coordinate: self.coordinate.to_wire(),
                    members: MemberUpdates::new(&self.member_buf[..members])
                        .unwrap_or(MemberUpdates::EMPTY),
                };
                return emit(&self.name, Packet { header, body }, dst, buf);
            }
            Outgoing::Leave(_) => Body::Leave,
            Outgoing::Burst { .. }
            | Outgoing::Ack { .. }
            | Outgoing::IndirectPing { .. }
            | Outgoing::RelayedPong { .. } => return None,
            Outgoing::Forward { ref inner, .. } => {
                let target = self.peers[key].id();
                return emit(
                    &self.name,
                    Packet {
                        header,
                        body: Body::Relay { target, inner },
                    },
                    dst,
                    buf,
                );
            }
        };
        emit(&self.name, Packet { header, body }, dst, buf)
    }

    /// Stores a chunk of `origin`'s row, unless an equal or newer one is already stored.
    fn ingest_row(&mut self, origin: usize, incarnation: u64, row: wire::RowChunk<'_>) {
        // The origin heard its peers a one-way trip before this node read the chunk.
        let transit_cs = self.peers[origin]
            .rtt_p50_us()
            .map_or(0, |rtt| u64::from(rtt) / 20_000);
        let width = self.peers.slot_bound() + 1;
        let now_cs = centis(self.now_ns);
        let Some(cells) =
            self.matrix
                .accept_chunk(origin, incarnation, &row, width, self.now, now_cs)
        else {
            trace!("{}: stale row chunk from peer {origin}", self.name);
            return;
        };
        let (own, peers) = (self.id, &self.peers);
        cells.write(row.entries().filter_map(|entry| {
            let column = if entry.target == own {
                0
            } else {
                peers.by_id(entry.target)? + 1
            };
            let heard_cs = entry
                .heard_ago_ms
                .map(|ago| now_cs.saturating_sub(u64::from(ago) / 10 + transit_cs));
            let cell = Cell::new(entry.rtt_us, entry.loss_half_pct, entry.state, heard_cs);
            Some((column, cell))
        }));
    }

    /// Whether `origin`'s row is recent enough to testify: refreshed within `dead_after`,
    /// from a node this one still hears.
    fn row_is_fresh(&self, origin: usize) -> bool {
        let alive = self
            .peers
            .get(origin)
            .is_some_and(|p| p.state() == PeerState::Alive);
        self.matrix.row(origin).is_some_and(|row| {
            alive && self.now.saturating_duration_since(row.updated) <= self.settings.dead_after
        })
    }

    /// Whether another node heard `key` recently, and clearly later than this node did:
    /// the witness of a broken path rather than of a dead peer. O(peers): for one peer.
    fn heard_by_others(&self, key: usize) -> bool {
        let now_cs = centis(self.now_ns);
        let latest = self
            .peers
            .iter()
            .filter(|&(origin, _)| origin != key && self.row_is_fresh(origin))
            .filter_map(|(origin, _)| {
                self.matrix
                    .row(origin)?
                    .cells
                    .get(key + 1)?
                    .heard_age_cs(now_cs)
            })
            .map(|age| now_cs.saturating_sub(age))
            .max();
        self.liveness
            .witnessed(&self.peers[key], latest, self.now_ns)
    }

    fn witness_of(&self, key: usize) -> bool {
        self.liveness
            .witnessed(&self.peers[key], self.witnesses.heard_cs(key), self.now_ns)
    }

    /// Every interval: dead and unreachable peers are re-judged as the other rows change,
    /// and alive peers checked for one-way paths.
    fn judge_by_witnesses(&mut self) {
        // Witnesses only matter for peers not heard here; most intervals there are none.
        if self.peers.iter().any(|(_, p)| {
            matches!(
                p.state(),
                PeerState::Unknown | PeerState::Dead | PeerState::Unreachable
            ) || p.left_unheard()
        }) {
            let mut witnesses = std::mem::take(&mut self.witnesses);
            witnesses.gather(&self.peers, &self.matrix, centis(self.now_ns), |origin| {
                self.row_is_fresh(origin)
            });
            self.witnesses = witnesses;
        } else {
            self.witnesses.clear();
        }
        for key in 0..self.peers.slot_bound() {
            let Some(peer) = self.peers.get(key) else {
                continue;
            };
            match peer.state() {
                PeerState::Dead if self.witness_of(key) => {
                    self.set_state(key, PeerState::Unreachable)
                }
                PeerState::Unreachable if !self.witness_of(key) => {
                    self.set_state(key, PeerState::Dead)
                }
                // Never heard here (this node started after it left), but the others
                // saw it go: it left, rather than unknown for ever. Like any left peer it is
                // not pinged; when it comes back it pings this node, and is alive again.
                PeerState::Unknown if self.witnesses.say_left(key) => {
                    self.set_state(key, PeerState::Left)
                }
                PeerState::Left if peer.left_unheard() && !self.witnesses.say_left(key) => {
                    self.set_state(key, PeerState::Unknown)
                }
                PeerState::Alive => {
                    let deaf = self.liveness.settled(peer, self.now_ns)
                        && self.row_is_fresh(key)
                        && self
                            .matrix
                            .row(key)
                            .and_then(|row| row.cells.get(0))
                            .is_some_and(|c| c.state() != PeerState::Alive);
                    if self.peers[key].set_asymmetric(deaf) {
                        let name = self.peers[key].name();
                        if deaf {
                            warn!("{}: peer {name} does not hear this node", self.name);
                        } else {
                            info!("{}: peer {name} hears this node again", self.name);
                        }
                        self.events.push_back(Event::Asymmetric {
                            peer: self.peers.id_of(key),
                            asymmetric: deaf,
                        });
                    }
                }
                _ => {}
            }
        }
    }

    /// Rebuilds this node's row (one entry per peer) into chunks that fit a ping.
    fn refresh_row(&mut self) {
        let budget = self.inner_max().saturating_sub(PING_LEN + ROW_HEADER_LEN);
        // Sampled: only the peers measured lately; the others are estimated by everyone.
        let mut keys = std::mem::take(&mut self.row_keys);
        let sparse = match self.mode {
            ProbeMode::Sampled => {
                self.sampling.recently_probed(ROW_RECENT_ROUNDS, &mut keys);
                Some(SparseRow {
                    keys: &keys,
                    recent_ns: self
                        .schedule
                        .interval_ns()
                        .saturating_mul(ROW_RECENT_ROUNDS),
                })
            }
            _ => None,
        };
        self.gossip
            .refresh(&mut self.peers, budget, self.in_flight, self.now_ns, sparse);
        self.row_keys = keys;
    }
}

fn emit(name: &str, packet: Packet<'_>, dst: SocketAddr, buf: &mut [u8]) -> Option<Transmit> {
    match packet.emit(buf) {
        Ok(len) => Some(Transmit { dst, len }),
        Err(err) => {
            warn!("{name}: cannot encode {:?} for {dst}: {err}", packet.kind());
            None
        }
    }
}
