//! The mesh core: a pure state machine that heartbeats peers and tracks their liveness.
//!
//! See the crate docs for the driving contract. Nothing here reads a clock or touches a
//! socket: time comes in as `now`, datagrams as bytes, and what the node wants to send,
//! when it next needs a call and what happened come out of the `poll_*` methods.

use crate::config::Config;
use crate::core::matrix::{Cell, Matrix, MatrixSnapshot, MatrixView};
use crate::core::peer::{Peer, PeerState, PongMatch};
use crate::core::replay::Verdict;
use crate::core::rng::Rng;
use crate::core::wheel::TimerWheel;
use crate::wire::identity::NodeId;
use crate::wire::keyring::Keyring;
use crate::wire::seal::{self, SEAL_HEADER_LEN, SEAL_OVERHEAD};
use crate::wire::{
    self, Body, Header, Packet, RowChunk, RowEntry, PING_LEN, ROW_ENTRY_MAX_LEN, ROW_HEADER_LEN,
};
use log::{debug, error, info, trace, warn};
use slab::Slab;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Timing and size settings of one node's core.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// How often each peer is pinged.
    pub heartbeat_interval: Duration,
    /// Silence after which a peer is `suspect`.
    pub suspect_after: Duration,
    /// Silence after which a peer is `dead`.
    pub dead_after: Duration,
    /// No datagram this node emits is longer than this.
    pub max_datagram: usize,
    /// This process's incarnation: random per start, so peers tell a restart apart.
    pub incarnation: u64,
    /// Seed of this node's own random draws: where its seal counter starts and how far a
    /// refutation steps its incarnation (heartbeat timing comes from the shared clock, so
    /// that nodes stay aligned). Random per process in the driver; fixed in the simulator,
    /// so runs are reproducible.
    pub seed: u64,
}

impl Settings {
    /// The settings of `config`, with this process's incarnation and seed.
    pub fn from_config(config: &Config, incarnation: u64, seed: u64) -> Settings {
        Settings {
            heartbeat_interval: config.heartbeat_interval,
            suspect_after: config.suspect_after,
            dead_after: config.dead_after,
            max_datagram: config.max_datagram,
            incarnation,
            seed,
        }
    }
}

/// Peers to a heartbeat slot: the pings one wake-up sends (and, as every node uses the same
/// slots, about the pings it receives at once).
pub const SLOT_PEERS: usize = 32;

/// A handle to one peer of a [`Mesh`]; stable for the life of the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub usize);

/// Something that happened, for the embedder (drained with [`Mesh::poll_event`]). New
/// kinds will be added (application data, removals): match with a `_` arm.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The peer is alive: first heard, or heard again after being suspect, dead or left.
    Up(PeerId),
    /// The peer has been silent for `suspect_after`.
    Suspect(PeerId),
    /// The peer has been silent for `dead_after`.
    Down(PeerId),
    /// The peer came back with a new incarnation: it restarted. Its statistics were reset.
    Restarted {
        /// Which peer.
        peer: PeerId,
        /// Its new incarnation.
        incarnation: u64,
    },
    /// The peer said it was leaving.
    Left(PeerId),
    /// The peer has been silent here for `dead_after`, but other nodes still hear it: the
    /// path from this node to it is broken.
    Unreachable(PeerId),
    /// The peer's own row started (`true`) or stopped (`false`) saying it does not hear
    /// this node, while this node hears it.
    Asymmetric {
        /// Which peer.
        peer: PeerId,
        /// Whether the path is now one-way.
        asymmetric: bool,
    },
    /// Application data from a peer.
    Data {
        /// Who sent it.
        from: PeerId,
        /// What it sent.
        payload: Vec<u8>,
    },
}

impl Event {
    /// The peer the event is about.
    pub fn peer(&self) -> PeerId {
        match self {
            Event::Up(p)
            | Event::Suspect(p)
            | Event::Down(p)
            | Event::Left(p)
            | Event::Unreachable(p) => *p,
            Event::Restarted { peer, .. } | Event::Asymmetric { peer, .. } => *peer,
            Event::Data { from, .. } => *from,
        }
    }
}

/// Why a received datagram was dropped. Each has a counter ([`Mesh::dropped`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not a well-formed peermesh datagram (bad magic, truncated, bad lengths, unknown kind).
    Malformed,
    /// A peermesh datagram of another protocol version.
    WrongVersion,
    /// From an identity that is not in this node's config.
    UnknownSender,
    /// Addressed to another identity.
    Misdirected,
    /// Claims to come from this node itself.
    FromSelf,
    /// From an incarnation of the peer older than the one this node holds: a past process
    /// (incarnations never go backwards at a node), answered so a live one can refute.
    StaleIncarnation,
    /// From a peer's incarnation that already said `Leave`.
    AfterLeave,
    /// A pong that matches no outstanding ping (late beyond the window, duplicate, or forged).
    StalePong,
    /// Not sealed with a key of this node's keyring: forged, corrupted, a wrong key, or
    /// plain where sealed is required (and sealed where this node has no keyring).
    AuthFailed,
    /// A sequence number already seen, or older than the replay window.
    Replayed,
    /// Without a keyring: from an IP address that is no configured peer's.
    AddressNotAllowed,
    /// Did not prove it was sent during this node's current life: it names another
    /// incarnation of this node (and is no Pong to one of its recent Pings). A Ping is still
    /// answered, so its sender learns this incarnation (the first Ping naming none, 0, since
    /// the peer was last believed is the first step of that handshake: not counted). Normal:
    /// one or two per peer after this node restarts. About one per interval from one peer:
    /// it does not hear this node (a one-way path). More: replays of traffic from before
    /// this node started.
    NotFresh,
}

impl DropReason {
    /// Every reason, in the order counters are reported.
    pub const ALL: [DropReason; 12] = [
        DropReason::Malformed,
        DropReason::WrongVersion,
        DropReason::UnknownSender,
        DropReason::Misdirected,
        DropReason::FromSelf,
        DropReason::StaleIncarnation,
        DropReason::AfterLeave,
        DropReason::StalePong,
        DropReason::AuthFailed,
        DropReason::Replayed,
        DropReason::AddressNotAllowed,
        DropReason::NotFresh,
    ];

    /// The snake_case name used in logs, the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::WrongVersion => "wrong_version",
            DropReason::UnknownSender => "unknown_sender",
            DropReason::Misdirected => "misdirected",
            DropReason::FromSelf => "from_self",
            DropReason::StaleIncarnation => "stale_incarnation",
            DropReason::AfterLeave => "after_leave",
            DropReason::StalePong => "stale_pong",
            DropReason::AuthFailed => "auth_failed",
            DropReason::Replayed => "replayed",
            DropReason::AddressNotAllowed => "address_not_allowed",
            DropReason::NotFresh => "not_fresh",
        }
    }
}

/// Counters of dropped datagrams, one per [`DropReason`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropCounters {
    counts: [u64; DropReason::ALL.len()],
}

impl DropCounters {
    /// How many datagrams were dropped for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason as usize]
    }

    /// All datagrams dropped, whatever the reason.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(reason, count)` for every reason.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r, self.get(r)))
    }

    fn bump(&mut self, reason: DropReason) {
        self.counts[reason as usize] += 1;
    }
}

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
        }
    }
}

/// Why [`Mesh::send_data`] refused a payload. The mesh is unchanged when it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// No such peer.
    UnknownPeer(PeerId),
    /// The payload does not fit in one datagram of the configured maximum size.
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The largest payload allowed.
        max: usize,
    },
    /// The outgoing queue is full: the driver is not draining [`Mesh::poll_transmit`].
    QueueFull,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::UnknownPeer(p) => write!(f, "no peer {}", p.0),
            SendError::TooLarge { len, max } => {
                write!(
                    f,
                    "payload of {len} bytes exceeds the {max} bytes one datagram carries"
                )
            }
            SendError::QueueFull => write!(f, "outgoing queue is full; drain poll_transmit"),
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
    Data {
        peer: usize,
        payload: Vec<u8>,
    },
}

/// Timers carry the peer they are for; a timer whose reason has passed is ignored on firing
/// (lazy cancel), so hearing from a peer never touches the wheel.
#[derive(Clone, Copy, Debug)]
enum Timer {
    /// Heartbeats of one slot (of the slots built at this epoch).
    Slot {
        slot: u32,
        epoch: u32,
    },
    Liveness(usize),
}

/// Node identities are already well-mixed hashes: hashing them again is wasted work.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdMap<V> = HashMap<NodeId, V, BuildHasherDefault<IdHasher>>;

/// A multiply-rotate hash (rustc's FxHash) for the set of peer IPs, looked up for every
/// datagram without a keyring: SipHash cost more than the rest of the lookup. The set holds
/// only configured addresses, so there are no chosen keys stored to make it degrade.
#[derive(Default)]
struct AddrHasher(u64);

impl AddrHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
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
    peers: Slab<Peer>,
    by_id: IdMap<usize>,
    by_addr: HashMap<SocketAddr, usize>,
    /// Timers in nanoseconds since `epoch` (integer arithmetic on every insert and poll).
    timers: TimerWheel<Timer, u64>,
    outgoing: VecDeque<Outgoing>,
    events: VecDeque<Event>,
    dropped: DropCounters,
    leaving: bool,
    /// This node's position in the config, so the matrix lists nodes in config order.
    self_index: usize,
    /// The rows other nodes shared.
    matrix: Matrix,
    /// This node's own row, encoded in chunks that fit a ping: `(entries, bytes)`; the
    /// buffers are reused from one refresh to the next.
    row_chunks: Vec<(u16, Vec<u8>)>,
    /// How many of `row_chunks` the current row uses.
    row_len: usize,
    /// Heartbeat slots: peers grouped by config position, [`SLOT_PEERS`] to a group; all
    /// pings of one slot go out in one wake-up. Slot `s` of an interval starts `s` slot
    /// widths after a boundary of a clock all nodes share, so a node's peers ping it in
    /// the same slot as it pings them: few wake-ups, and never more than a group at once.
    slots: Vec<Vec<usize>>,
    /// When each slot is next due, before jitter, in nanoseconds since `epoch`.
    slot_due: Vec<u64>,
    /// Bumped when the slots are rebuilt: older slot timers are ignored when they fire.
    slot_epoch: u32,
    /// The slot whose wake-up also rebuilds this node's row and re-judges the peers against
    /// the others' rows: the first slot with peers, so once an interval, on a wake-up the
    /// node makes anyway, just before the pings that carry the row.
    refresh_slot: usize,
    /// How long before `epoch` an interval boundary of the shared clock was, in
    /// nanoseconds: slot times are counted from that boundary.
    phase_offset_ns: u64,
    row_version: u32,
    /// The mesh keys; `None`: unauthenticated mode.
    keyring: Option<Keyring>,
    /// Counts sealed datagrams: the per-process part of every nonce.
    seal_counter: u64,
    /// Where sealed datagrams are opened (no allocation per datagram).
    scratch: Vec<u8>,
    /// The peers' configured IP addresses (the only sources accepted without a keyring).
    peer_ips: HashSet<IpAddr, BuildHasherDefault<AddrHasher>>,
    /// How many of a peer's newest probes may still be answered: ⌈suspect_after /
    /// interval⌉, at least 1 (fixed by the settings; used on every row refresh).
    in_flight: u32,
    /// Per peer key: the latest time (centiseconds) another node's fresh row said it heard
    /// the peer, as of the last interval (see `gather_witnesses`).
    witness_heard_cs: Vec<Option<u64>>,
    /// Liveness deadlines are rounded up to a multiple of this many nanoseconds (an eighth
    /// of the shorter of interval and `suspect_after`, at least 1 ms), so that the checks of
    /// peers heard in the same burst share one wake-up instead of taking one each.
    liveness_grain_ns: u64,
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
        let settings_seed = settings.seed;
        let timers = TimerWheel::new(0);
        let liveness_grain_ns = liveness_grain(&settings);
        let in_flight = settings
            .suspect_after
            .as_nanos()
            .div_ceil(settings.heartbeat_interval.as_nanos().max(1));
        Mesh {
            name: name.to_owned(),
            id: NodeId::from_name(name),
            settings,
            epoch: now,
            now,
            now_ns: 0,
            peers: Slab::new(),
            by_id: IdMap::default(),
            by_addr: HashMap::new(),
            timers,
            outgoing: VecDeque::new(),
            events: VecDeque::new(),
            dropped: DropCounters::default(),
            leaving: false,
            self_index: 0,
            matrix: Matrix::default(),
            row_chunks: Vec::new(),
            row_len: 0,
            row_version: 0,
            slots: Vec::new(),
            slot_due: Vec::new(),
            slot_epoch: 0,
            refresh_slot: 0,
            phase_offset_ns: 0,
            keyring: None,
            // Counters start at a point drawn from the seed (random per process in the
            // driver): two processes that ever share an identity and an incarnation (after
            // refutations) still do not share nonces.
            seal_counter: crate::core::rng::Rng::new(settings_seed).next_u64() >> 2,
            scratch: Vec::new(),
            peer_ips: HashSet::default(),
            in_flight: u32::try_from(in_flight).unwrap_or(u32::MAX).max(1),
            liveness_grain_ns,
            witness_heard_cs: Vec::new(),
        }
    }

    /// The node `config.nodes[me]`, with every other node of the config as a peer.
    /// `addrs[i]` is the resolved address of `config.nodes[i]`.
    pub fn from_config(
        config: &Config,
        me: usize,
        addrs: &[SocketAddr],
        incarnation: u64,
        seed: u64,
        now: Instant,
    ) -> Mesh {
        let name = config.nodes.get(me).map_or("", |n| n.name.as_str());
        let mut mesh = Mesh::new(name, Settings::from_config(config, incarnation, seed), now);
        mesh.self_index = me;
        for (i, (node, addr)) in config.nodes.iter().zip(addrs).enumerate() {
            if i != me {
                mesh.insert_peer(&node.name, *addr);
            }
        }
        mesh.rebuild_slots();
        mesh
    }

    /// Adds a peer and schedules its first heartbeat within one interval. Adding a name
    /// twice, or this node's own name, returns the existing handle / `None`.
    pub fn add_peer(&mut self, name: &str, addr: SocketAddr) -> Option<PeerId> {
        let known = self.peers.len();
        let peer = self.insert_peer(name, addr);
        if self.peers.len() != known {
            self.rebuild_slots();
        }
        peer
    }

    /// Says where this node's start falls on a clock all nodes share (the wall clock): how
    /// long after an interval boundary of that clock `now` (given to [`Mesh::new`]) is.
    /// Heartbeat slots then line up across nodes. Without it, slots start at `now`.
    pub fn set_phase(&mut self, since_boundary: Duration) {
        let interval = self.interval_ns().max(1);
        let into = u64::try_from(since_boundary.as_nanos() % u128::from(interval)).unwrap_or(0);
        // A boundary before the clock's own origin cannot be represented: count from start.
        self.phase_offset_ns = match self.epoch.checked_sub(Duration::from_nanos(into)) {
            Some(_) => into,
            None => 0,
        };
        self.rebuild_slots();
    }

    fn insert_peer(&mut self, name: &str, addr: SocketAddr) -> Option<PeerId> {
        let id = NodeId::from_name(name);
        if id == self.id {
            return None;
        }
        if let Some(&key) = self.by_id.get(&id) {
            return Some(PeerId(key));
        }
        let key = self.peers.insert(Peer::new(name.to_owned(), addr));
        self.by_id.insert(id, key);
        self.by_addr.insert(addr, key);
        self.peer_ips.insert(addr.ip().to_canonical());
        Some(PeerId(key))
    }

    // ----- inputs -----------------------------------------------------------------------

    /// Feeds one received datagram. Malformed or unwelcome datagrams are dropped, counted
    /// ([`Mesh::dropped`]) and logged at trace level; they never change a peer's state.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.advance(now);
        let sealed = seal::is_sealed(bytes);
        let Some(keyring) = &self.keyring else {
            if sealed {
                return self.drop_datagram(DropReason::AuthFailed, from, &"sealed, no keyring");
            }
            if !self.peer_ips.contains(&from.ip().to_canonical()) {
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
        let Some(&key) = self.by_id.get(&header.from) else {
            return self.drop_datagram(DropReason::UnknownSender, from, &header.from);
        };
        let answers_probe = self.answers_probe(key, &packet);
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
                if header.to_incarnation == 0 && !self.peers[key].greeted {
                    // The sender has heard nothing of this node yet: the first step of the
                    // handshake, as expected after any start, not a drop. Another before
                    // the peer is believed means it does not hear the answers: counted.
                    self.peers[key].greeted = true;
                    trace!("{}: first ping from {from}, answered", self.name);
                    return;
                }
            }
            return self.drop_datagram(DropReason::NotFresh, from, &header.to_incarnation);
        }
        if let Err(reason) = self.admit(key, &header, answers_probe) {
            if let (DropReason::StaleIncarnation, Body::Ping { probe, sent_ns, .. }) =
                (reason, packet.body)
            {
                // A live process older than the one held: tell it which one is held, so it
                // takes a later incarnation (refutation) if it is not a ghost.
                let held = self.peers[key].incarnation.unwrap_or(0);
                self.answer_ping(now, key, from, probe, sent_ns, held);
            }
            return self.drop_datagram(reason, from, &(header.incarnation, header.seq));
        }
        self.peers[key].greeted = false;
        if let Body::Leave = packet.body {
            // A goodbye is not a sign of life: straight to `left`, with no `Up` first.
            let now_ns = self.ns_of(now);
            let peer = &mut self.peers[key];
            peer.last_heard = Some(now);
            peer.last_heard_ns = now_ns;
            peer.received += 1;
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
            } => self.handle_pong(now, key, from, (probe, echo_ns, hold_us)),
            Body::Leave => {}
            Body::Data { payload } => self.events.push_back(Event::Data {
                from: PeerId(key),
                payload: payload.to_vec(),
            }),
        }
    }

    /// Runs every timer due at `now`: heartbeats to send, silences to judge. Early or extra
    /// calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        while let Some((_, timer)) = self.timers.poll(self.now_ns) {
            match timer {
                Timer::Slot { slot, epoch } if epoch == self.slot_epoch => {
                    self.heartbeat_slot(slot as usize)
                }
                Timer::Slot { .. } => {}
                Timer::Liveness(key) => self.judge_silence(key),
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
        for key in self.peers.iter().map(|(k, _)| k).collect::<Vec<_>>() {
            self.outgoing.push_back(Outgoing::Leave(key));
        }
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

    /// Queues application data for `to`. It goes out with the next [`Mesh::poll_transmit`].
    pub fn send_data(&mut self, to: PeerId, payload: &[u8]) -> Result<(), SendError> {
        if !self.peers.contains(to.0) {
            return Err(SendError::UnknownPeer(to));
        }
        let max = self.max_payload();
        if payload.len() > max {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        if self.outgoing.len() >= self.queue_limit() {
            return Err(SendError::QueueFull);
        }
        self.outgoing.push_back(Outgoing::Data {
            peer: to.0,
            payload: payload.to_vec(),
        });
        Ok(())
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

    /// Every peer with its handle, in the order they were added.
    pub fn peers(&self) -> impl Iterator<Item = (PeerId, &Peer)> + '_ {
        self.peers.iter().map(|(k, p)| (PeerId(k), p))
    }

    /// How many peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// One peer.
    pub fn peer(&self, id: PeerId) -> Option<&Peer> {
        self.peers.get(id.0)
    }

    /// The peer with this identity.
    pub fn peer_by_id(&self, id: NodeId) -> Option<PeerId> {
        self.by_id.get(&id).map(|&k| PeerId(k))
    }

    /// The peer configured at this address.
    pub fn peer_by_addr(&self, addr: SocketAddr) -> Option<PeerId> {
        self.by_addr.get(&addr).map(|&k| PeerId(k))
    }

    /// The peer with this name (case-insensitive).
    pub fn peer_by_name(&self, name: &str) -> Option<PeerId> {
        self.peer_by_id(NodeId::from_name(name))
    }

    /// Loss in percent over the recent settled probes to this peer (`None` before any).
    /// A probe settles once answered, or once `suspect_after` worth of newer probes went out.
    pub fn loss_pct(&self, id: PeerId) -> Option<f64> {
        let peer = self.peers.get(id.0)?;
        peer.probes.loss_pct(self.probes_in_flight())
    }

    /// What this node concludes about a peer, with the other nodes' rows as witnesses.
    pub fn diagnosis(&self, id: PeerId) -> Option<Diagnosis> {
        let peer = self.peers.get(id.0)?;
        Some(match peer.state {
            PeerState::Alive if peer.asymmetric => Diagnosis::Asymmetric,
            PeerState::Alive => Diagnosis::Ok,
            PeerState::Suspect => Diagnosis::Suspect,
            PeerState::Dead => Diagnosis::Dead,
            PeerState::Unreachable => Diagnosis::Unreachable,
            PeerState::Left => Diagnosis::Left,
            // Witnesses as of the last interval: O(1) per peer, so a status report of a
            // large mesh does not cost O(peers²).
            PeerState::Unknown if self.witness_of(id.0) => Diagnosis::Unreachable,
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
        // Internal columns: 0 is this node, key + 1 is peer `key`; shown in config order.
        let mut columns: Vec<usize> = self.peers.iter().map(|(k, _)| k + 1).collect();
        columns.insert(self.self_index.min(columns.len()), 0);
        let names = columns
            .iter()
            .map(|&c| match c {
                0 => self.name.clone(),
                c => self.peers[c - 1].name.clone(),
            })
            .collect();
        let in_flight = self.probes_in_flight();
        let own_row = columns
            .iter()
            .map(|&to| {
                let peer = self.peers.get(to.checked_sub(1)?)?;
                Some((
                    peer.rtt().map(|r| r.p50.as_nanos() as f64 / 1000.0),
                    peer.probes.loss_pct(in_flight),
                    peer.state,
                ))
            })
            .collect();
        MatrixSnapshot::new(&self.name, names, columns, own_row, |from| {
            let row = self.matrix.row(from - 1)?;
            let age = self.now.saturating_duration_since(row.updated);
            let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
            Some((age_ms, self.row_is_fresh(from - 1), &row.cells[..]))
        })
    }

    /// Datagrams dropped, by reason.
    pub fn dropped(&self) -> &DropCounters {
        &self.dropped
    }

    /// The largest application payload [`Mesh::send_data`] accepts.
    pub fn max_payload(&self) -> usize {
        self.inner_max()
            .saturating_sub(wire::DATA_OVERHEAD)
            .min(usize::from(u16::MAX))
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
            self.now_ns = self.nanos_since_epoch(now);
        }
    }

    fn interval_ns(&self) -> u64 {
        u64::try_from(self.settings.heartbeat_interval.as_nanos()).unwrap_or(u64::MAX)
    }

    fn nanos_since_epoch(&self, t: Instant) -> u64 {
        saturating_ns(t.saturating_duration_since(self.epoch))
    }

    /// `t` in nanoseconds since `epoch`; free when `t` is the latest input's `now`.
    fn ns_of(&self, t: Instant) -> u64 {
        if t == self.now {
            self.now_ns
        } else {
            self.nanos_since_epoch(t)
        }
    }

    fn probes_in_flight(&self) -> u32 {
        self.in_flight
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

    /// Whether a datagram is the first Pong to one of this node's recent Pings to `key`: the
    /// probe number and send time it echoes are a nonce this node chose, so it was made
    /// after that Ping, by a process that received it. (The other proof of freshness is
    /// naming this node's current incarnation.)
    fn answers_probe(&self, key: usize, packet: &Packet<'_>) -> bool {
        match packet.body {
            Body::Pong { probe, echo_ns, .. } => self.peers[key].probes.awaits(probe, echo_ns),
            _ => false,
        }
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
                _ => self.peers[key].incarnation == Some(packet.header.incarnation),
            }
    }

    /// Decides whether a fresh datagram may speak for the peer: not from an incarnation
    /// older than the one held (incarnations never go backwards here), not after that
    /// incarnation said Leave, not a replay. A later incarnation is a restart.
    ///
    /// A Pong that answers a recent probe but whose number lies below the replay window
    /// resets the window: only the peer's live process can send it, so the window was pushed
    /// ahead by a forged number (possible only without a keyring) and must not stay wedged.
    fn admit(
        &mut self,
        key: usize,
        header: &Header,
        answers_probe: bool,
    ) -> Result<(), DropReason> {
        let (incarnation, seq) = (header.incarnation, header.seq);
        let peer = &mut self.peers[key];
        match peer.incarnation {
            Some(current) if current == incarnation => {
                if peer.state == PeerState::Left {
                    return Err(DropReason::AfterLeave);
                }
                match peer.replay.check(seq) {
                    Verdict::Fresh => {
                        peer.replay.remember(seq);
                        Ok(())
                    }
                    Verdict::TooOld if answers_probe => {
                        warn!(
                            "{}: peer {}'s sequence numbers fell behind its replay window \
                             (a forged number pushed it ahead?): window reset",
                            self.name, peer.name
                        );
                        peer.replay = crate::core::replay::ReplayWindow::new();
                        peer.replay.remember(seq);
                        Ok(())
                    }
                    Verdict::Replayed | Verdict::TooOld => Err(DropReason::Replayed),
                }
            }
            Some(current) if incarnation < current => Err(DropReason::StaleIncarnation),
            Some(old) => {
                info!(
                    "{}: peer {} restarted (incarnation {old:016x} -> {incarnation:016x})",
                    self.name, peer.name
                );
                peer.incarnation = Some(incarnation);
                peer.reset_stats();
                peer.replay = crate::core::replay::ReplayWindow::new();
                peer.replay.remember(seq);
                self.events.push_back(Event::Restarted {
                    peer: PeerId(key),
                    incarnation,
                });
                Ok(())
            }
            None => {
                peer.incarnation = Some(incarnation);
                peer.replay.remember(seq);
                Ok(())
            }
        }
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
        let step = 1 + (crate::core::rng::Rng::new(self.settings.seed ^ held).next_u64() & 0xffff);
        let Some(next) = held.checked_add(step).or(held.checked_add(1)) else {
            error!(
                "{}: peer {} holds this node at the largest incarnation there is; \
                 it cannot be refuted (restart that peer)",
                self.name, self.peers[key].name
            );
            return;
        };
        warn!(
            "{}: peer {} holds this node at incarnation {held:016x}, later than its own \
             {own:016x} (another process with this name, or the clock went back): \
             refuting with incarnation {next:016x}",
            self.name, self.peers[key].name
        );
        self.settings.incarnation = next;
        for (_, peer) in self.peers.iter_mut() {
            peer.tx_seq = 0;
        }
    }

    /// A valid datagram came from the peer: it is alive.
    fn heard(&mut self, key: usize, from: SocketAddr) {
        let now = self.now;
        let peer = &mut self.peers[key];
        peer.last_heard = Some(now);
        peer.last_heard_ns = self.now_ns;
        peer.received += 1;
        if peer.seen_addr != Some(from) {
            if peer.seen_addr.is_some() {
                debug!("{}: peer {} now sends from {from}", self.name, peer.name);
            }
            peer.seen_addr = Some(from);
        }
        if peer.state != PeerState::Alive {
            self.set_state(key, PeerState::Alive);
        }
        if !self.peers[key].liveness_timer {
            self.peers[key].liveness_timer = true;
            let at = self
                .now_ns
                .saturating_add(saturating_ns(self.settings.suspect_after));
            self.set_liveness_timer(at, key);
        }
    }

    fn set_state(&mut self, key: usize, state: PeerState) {
        let peer = &mut self.peers[key];
        let old = peer.state;
        if old == state {
            return;
        }
        peer.state = state;
        peer.alive_since = (state == PeerState::Alive).then_some(self.now_ns);
        if state != PeerState::Alive && peer.asymmetric {
            peer.asymmetric = false;
        }
        let id = PeerId(key);
        let event = match state {
            PeerState::Alive => Event::Up(id),
            PeerState::Suspect => Event::Suspect(id),
            PeerState::Dead => Event::Down(id),
            PeerState::Left => Event::Left(id),
            PeerState::Unreachable => Event::Unreachable(id),
            PeerState::Unknown => return,
        };
        match state {
            PeerState::Suspect | PeerState::Dead | PeerState::Unreachable => {
                warn!("{}: peer {} {old} -> {state}", self.name, peer.name)
            }
            _ => info!("{}: peer {} {old} -> {state}", self.name, peer.name),
        }
        self.events.push_back(event);
    }

    /// A pong, received at `now` (the datagram's own arrival time: a batch read later
    /// must not stretch the round trip).
    fn handle_pong(
        &mut self,
        now: Instant,
        key: usize,
        from: SocketAddr,
        (probe, echo_ns, hold_us): (u32, u64, u32),
    ) {
        let now_ns = self.ns_of(now);
        let peer = &mut self.peers[key];
        match peer.probes.answer(probe, echo_ns) {
            PongMatch::Fresh => {
                let elapsed = now_ns.saturating_sub(echo_ns);
                let hold = u64::from(hold_us) * 1000;
                // A hold longer than the whole round trip is impossible; keep the raw time.
                let rtt = if hold < elapsed {
                    elapsed - hold
                } else {
                    elapsed
                };
                peer.rtt.record(rtt);
                trace!(
                    "{} pong #{probe} from {from}: rtt {rtt} ns (held {hold_us} us)",
                    self.name
                );
            }
            PongMatch::Duplicate | PongMatch::Unknown => {
                self.drop_datagram(DropReason::StalePong, from, &probe);
            }
        }
    }

    /// The config position of peer `key` (peers are added in config order, skipping self).
    fn position(&self, key: usize) -> usize {
        if key < self.self_index {
            key
        } else {
            key + 1
        }
    }

    /// Groups the peers into heartbeat slots and schedules every slot afresh.
    fn rebuild_slots(&mut self) {
        let nodes = self.peers.len() + 1;
        let count = nodes.div_ceil(SLOT_PEERS).max(1);
        let own_group = self.self_index / SLOT_PEERS;
        let mut slots = vec![Vec::new(); count];
        for key in self.peers.iter().map(|(k, _)| k) {
            let group = self.position(key) / SLOT_PEERS;
            slots[(own_group + group) % count].push(key);
        }
        self.refresh_slot = slots.iter().position(|s| !s.is_empty()).unwrap_or(0);
        self.slots = slots;
        self.slot_epoch = self.slot_epoch.wrapping_add(1);
        self.slot_due = (0..count)
            .map(|s| self.next_slot_start(s, self.now_ns))
            .collect();
        for slot in 0..count {
            if !self.slots[slot].is_empty() {
                self.schedule_slot(slot);
            }
        }
    }

    /// The first start of slot `slot` at or after `after` (nanoseconds since `epoch`).
    fn next_slot_start(&self, slot: usize, after: u64) -> u64 {
        let interval = self.interval_ns().max(1);
        let width = interval / self.slots.len().max(1) as u64;
        // Counted from the shared clock's boundary, which may be before this node's start.
        let start = width * slot as u64;
        let after = after.saturating_add(self.phase_offset_ns);
        let next = if start >= after {
            start
        } else {
            start.saturating_add((after - start).div_ceil(interval).saturating_mul(interval))
        };
        next - self.phase_offset_ns
    }

    /// Schedules slot `slot` at its due time plus a little jitter: at most 2% of the
    /// interval and a quarter of a slot, so slots never run into each other. The jitter is
    /// drawn from the interval's number on the shared clock, not from this node's generator:
    /// every node moves by the same amount, so their pings still arrive together.
    fn schedule_slot(&mut self, slot: usize) {
        let interval = self.interval_ns().max(1);
        let width = interval / self.slots.len().max(1) as u64;
        let number = self.slot_due[slot].saturating_add(self.phase_offset_ns) / interval;
        let mut shared = Rng::new(number ^ ((slot as u64) << 48));
        let jitter = shared.below((interval / 50).min(width / 4) + 1);
        let at = self.slot_due[slot].saturating_add(jitter);
        self.timers.insert(
            at,
            Timer::Slot {
                slot: slot as u32,
                epoch: self.slot_epoch,
            },
        );
    }

    fn heartbeat_slot(&mut self, slot: usize) {
        if self.leaving {
            return;
        }
        if slot == self.refresh_slot {
            self.refresh_row();
            self.judge_by_witnesses();
        }
        for &key in &self.slots[slot] {
            if self.peers[key].state != PeerState::Left {
                self.outgoing.push_back(Outgoing::Ping(key));
            }
        }
        // Next beat one interval later on the shared grid; beats missed while the process
        // was frozen are skipped, not sent in a burst.
        let next = self.slot_due[slot].saturating_add(self.interval_ns());
        self.slot_due[slot] = if next > self.now_ns {
            next
        } else {
            self.next_slot_start(slot, self.now_ns)
        };
        self.schedule_slot(slot);
    }

    fn judge_silence(&mut self, key: usize) {
        let settings = &self.settings;
        let (suspect_ns, dead_ns) = (
            saturating_ns(settings.suspect_after),
            saturating_ns(settings.dead_after),
        );
        let peer = &mut self.peers[key];
        peer.liveness_timer = false;
        if peer.last_heard.is_none() {
            return;
        }
        let last = peer.last_heard_ns;
        let silent = self.now_ns.saturating_sub(last);
        let next = match peer.state {
            PeerState::Alive if silent >= suspect_ns => {
                self.set_state(key, PeerState::Suspect);
                Some(last.saturating_add(dead_ns))
            }
            PeerState::Alive => Some(last.saturating_add(suspect_ns)),
            PeerState::Suspect if silent >= dead_ns => {
                // Dead only if nobody else hears it either; else the path from here is
                // broken. Re-judged every interval as the other rows come in.
                let verdict = if self.heard_by_others(key) {
                    PeerState::Unreachable
                } else {
                    PeerState::Dead
                };
                self.set_state(key, verdict);
                None
            }
            PeerState::Suspect => Some(last.saturating_add(dead_ns)),
            PeerState::Unknown | PeerState::Dead | PeerState::Left | PeerState::Unreachable => None,
        };
        if let Some(at) = next {
            self.peers[key].liveness_timer = true;
            self.set_liveness_timer(at, key);
        }
    }

    /// Arms peer `key`'s liveness check at `at`, rounded up to the liveness grain: a check
    /// is at most one grain late, never early.
    fn set_liveness_timer(&mut self, at: u64, key: usize) {
        let grain = self.liveness_grain_ns;
        let at = at.div_ceil(grain).saturating_mul(grain);
        self.timers.insert(at, Timer::Liveness(key));
    }

    fn next_seq(&mut self, key: usize) -> u32 {
        let peer = &mut self.peers[key];
        let seq = peer.tx_seq;
        peer.tx_seq = seq.wrapping_add(1);
        peer.sent += 1;
        seq
    }

    /// The header of the next datagram to peer `key`; it names the peer's incarnation as
    /// this node last verified it (0 before that), the proof of freshness the peer checks.
    fn header(&mut self, key: usize) -> Header {
        Header {
            from: self.id,
            incarnation: self.settings.incarnation,
            to: self.peers[key].id,
            to_incarnation: self.peers[key].incarnation.unwrap_or(0),
            seq: self.next_seq(key),
        }
    }

    fn encode(&mut self, out: Outgoing, buf: &mut [u8]) -> Option<Transmit> {
        let mut to_incarnation = None;
        let (key, dst, body) = match out {
            Outgoing::Ping(key) => {
                let sent_ns = self.now_ns;
                if !self.peers.contains(key) {
                    return None;
                }
                let header = self.header(key);
                let peer = &mut self.peers[key];
                let probe = peer.probes.send(sent_ns);
                let row = (self.row_len > 0).then(|| {
                    // A row of one chunk (up to about 60 peers) needs no division.
                    let index = match self.row_len {
                        1 => 0,
                        len => usize::from(peer.row_cursor) % len,
                    };
                    peer.row_cursor = peer.row_cursor.wrapping_add(1);
                    let (count, bytes) = &self.row_chunks[index];
                    RowChunk::new(
                        self.row_version,
                        index as u16,
                        self.row_len as u16,
                        *count,
                        bytes,
                    )
                });
                let body = Body::Ping {
                    probe,
                    sent_ns,
                    row,
                };
                return emit(&self.name, Packet { header, body }, peer.addr, buf);
            }
            Outgoing::Pong {
                peer,
                to,
                probe,
                echo_ns,
                received_ns,
                to_incarnation: named,
            } => {
                to_incarnation = Some(named);
                let held = self.now_ns.saturating_sub(received_ns) / 1000;
                let hold_us = u32::try_from(held).unwrap_or(u32::MAX);
                let body = Body::Pong {
                    probe,
                    echo_ns,
                    hold_us,
                };
                (peer, to, body)
            }
            Outgoing::Leave(key) => (key, self.peers.get(key)?.addr, Body::Leave),
            Outgoing::Data { peer, ref payload } => {
                let dst = self.peers.get(peer)?.addr;
                let header = self.header(peer);
                let packet = Packet {
                    header,
                    body: Body::Data { payload },
                };
                return emit(&self.name, packet, dst, buf);
            }
        };
        if !self.peers.contains(key) {
            return None;
        }
        let mut header = self.header(key);
        if let Some(named) = to_incarnation {
            header.to_incarnation = named;
        }
        emit(&self.name, Packet { header, body }, dst, buf)
    }

    /// Stores a chunk of `origin`'s row, unless an equal or newer one is already stored.
    fn ingest_row(&mut self, origin: usize, incarnation: u64, row: RowChunk<'_>) {
        let now = self.now;
        let now_cs = centis(self.now_ns);
        // The origin heard its peers a one-way trip before this node read the chunk.
        let transit_cs = self.peers[origin]
            .rtt_p50_us
            .map_or(0, |rtt| u64::from(rtt) / 20_000);
        let width = self.peers.len() + 1;
        let Some(cells) = self
            .matrix
            .accept_chunk(origin, incarnation, &row, width, now)
        else {
            trace!("{}: stale row chunk from peer {origin}", self.name);
            return;
        };
        for entry in row.entries() {
            let column = if entry.target == self.id {
                0
            } else {
                match self.by_id.get(&entry.target) {
                    Some(&key) => key + 1,
                    None => continue,
                }
            };
            let heard_cs = entry
                .heard_ago_ms
                .map(|ago| now_cs.saturating_sub(u64::from(ago) / 10 + transit_cs));
            if let Some(cell) = cells.get_mut(column) {
                *cell = Cell::new(entry.rtt_us, entry.loss_half_pct, entry.state, heard_cs);
            }
        }
    }

    /// Whether `origin`'s row is recent enough to testify: refreshed within `dead_after`,
    /// from a node this one still hears.
    fn row_is_fresh(&self, origin: usize) -> bool {
        let alive = self
            .peers
            .get(origin)
            .is_some_and(|p| p.state == PeerState::Alive);
        self.matrix.row(origin).is_some_and(|row| {
            alive && self.now.saturating_duration_since(row.updated) <= self.settings.dead_after
        })
    }

    /// Whether another node heard `key` recently, and clearly later than this node did:
    /// the witness of a broken path rather than of a dead peer. O(peers): for one peer.
    fn heard_by_others(&self, key: usize) -> bool {
        let now_cs = centis(self.now_ns);
        let column = key + 1;
        let latest = self
            .peers
            .iter()
            .filter(|&(origin, _)| origin != key && self.row_is_fresh(origin))
            .filter_map(|(origin, _)| {
                self.matrix
                    .row(origin)?
                    .cells
                    .get(column)?
                    .heard_age_cs(now_cs)
            })
            .map(|age| now_cs.saturating_sub(age))
            .max();
        self.witnessed(key, latest)
    }

    /// Whether `heard_cs`, the latest time (centiseconds on this node's clock) another node's
    /// fresh row says it heard `key`, makes that node a witness that `key` lives.
    fn witnessed(&self, key: usize, heard_cs: Option<u64>) -> bool {
        let Some(heard) = heard_cs else {
            return false;
        };
        let window_cs = (self.settings.dead_after.as_millis() / 10) as u64;
        // A witness must have heard it at least two intervals after this node last did:
        // a crash is seen by everyone at about the same time, and is no such witness.
        let margin_cs = (self.settings.heartbeat_interval.as_millis() / 5) as u64;
        let peer = &self.peers[key];
        let mine = peer.last_heard.map(|_| centis(peer.last_heard_ns));
        centis(self.now_ns).saturating_sub(heard) < window_cs
            && mine.is_none_or(|mine| heard > mine + margin_cs)
    }

    /// For every peer (by key), the latest time another node's fresh row says it heard it:
    /// one pass over the rows, so judging every peer costs O(rows × peers) once an interval
    /// instead of once per peer. Kept for [`Mesh::diagnosis`] until the next interval.
    fn gather_witnesses(&mut self) {
        let now_cs = centis(self.now_ns);
        let mut latest = std::mem::take(&mut self.witness_heard_cs);
        latest.clear();
        latest.resize(self.peers.capacity(), None);
        for (origin, _) in self.peers.iter() {
            if !self.row_is_fresh(origin) {
                continue;
            }
            let Some(row) = self.matrix.row(origin) else {
                continue;
            };
            // Column 0 is this node; column key + 1 is peer `key`.
            for (key, cell) in row
                .cells
                .iter()
                .enumerate()
                .skip(1)
                .map(|(c, x)| (c - 1, x))
            {
                let Some(age) = cell.heard_age_cs(now_cs) else {
                    continue;
                };
                if key == origin || key >= latest.len() {
                    continue;
                }
                let heard = now_cs.saturating_sub(age);
                latest[key] = Some(latest[key].map_or(heard, |l: u64| l.max(heard)));
            }
        }
        self.witness_heard_cs = latest;
    }

    fn witness_of(&self, key: usize) -> bool {
        self.witnessed(key, self.witness_heard_cs.get(key).copied().flatten())
    }

    /// Every interval: dead and unreachable peers are re-judged as the other rows change,
    /// and alive peers checked for one-way paths.
    fn judge_by_witnesses(&mut self) {
        // Witnesses only matter for peers not heard here; most intervals there are none.
        if self.peers.iter().any(|(_, p)| {
            matches!(
                p.state,
                PeerState::Unknown | PeerState::Dead | PeerState::Unreachable
            )
        }) {
            self.gather_witnesses();
        } else {
            self.witness_heard_cs.clear();
        }
        let settle = saturating_ns(self.settings.suspect_after * 2);
        for key in 0..self.peers.len() {
            if !self.peers.contains(key) {
                continue;
            }
            match self.peers[key].state {
                PeerState::Dead if self.witness_of(key) => {
                    self.set_state(key, PeerState::Unreachable)
                }
                PeerState::Unreachable if !self.witness_of(key) => {
                    self.set_state(key, PeerState::Dead)
                }
                PeerState::Alive => {
                    let settled = self.peers[key]
                        .alive_since
                        .is_some_and(|t| self.now_ns.saturating_sub(t) >= settle);
                    let deaf = settled
                        && self.row_is_fresh(key)
                        && self
                            .matrix
                            .row(key)
                            .and_then(|row| row.cells.first())
                            .is_some_and(|c| c.is_present() && c.state() != PeerState::Alive);
                    if deaf != self.peers[key].asymmetric {
                        self.peers[key].asymmetric = deaf;
                        let name = &self.peers[key].name;
                        if deaf {
                            warn!("{}: peer {name} does not hear this node", self.name);
                        } else {
                            info!("{}: peer {name} hears this node again", self.name);
                        }
                        self.events.push_back(Event::Asymmetric {
                            peer: PeerId(key),
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
        if budget < ROW_ENTRY_MAX_LEN || self.peers.is_empty() {
            self.row_len = 0;
            return;
        }
        self.row_version = self.row_version.wrapping_add(1);
        let in_flight = self.probes_in_flight();
        let now_ns = self.now_ns;
        for (_, bytes) in self.row_chunks.iter_mut() {
            bytes.clear();
        }
        let mut used = 0usize;
        for (_, peer) in self.peers.iter_mut() {
            // A fixed number of entries per chunk, sized for the largest entry: packing by
            // bytes let an entry near a boundary move between chunks from one rebuild to the
            // next (its varints change size), and a receiver could miss it again and again.
            if used == 0 || usize::from(self.row_chunks[used - 1].0) >= budget / ROW_ENTRY_MAX_LEN {
                if self.row_chunks.len() == used {
                    self.row_chunks.push((0, Vec::with_capacity(budget)));
                }
                self.row_chunks[used].0 = 0;
                used += 1;
            }
            let p50 = peer
                .rtt
                .p50_ns()
                .map(|ns| u32::try_from(ns / 1000).unwrap_or(u32::MAX));
            peer.rtt_p50_us = p50;
            let entry = RowEntry {
                target: peer.id,
                state: peer.state,
                loss_half_pct: peer.probes.loss_half_pct(in_flight),
                rtt_us: p50,
                heard_ago_ms: peer.last_heard.map(|_| {
                    let ago_ms = now_ns.saturating_sub(peer.last_heard_ns) / 1_000_000;
                    u32::try_from(ago_ms).unwrap_or(u32::MAX)
                }),
            };
            let chunk = &mut self.row_chunks[used - 1];
            entry.emit(&mut chunk.1);
            chunk.0 += 1;
        }
        self.row_len = used.min(usize::from(u16::MAX));
    }
}

/// The liveness grain of `settings`: see `Mesh::liveness_grain_ns`.
fn liveness_grain(settings: &Settings) -> u64 {
    let shorter = settings.heartbeat_interval.min(settings.suspect_after);
    (saturating_ns(shorter) / 8).max(1_000_000)
}

/// Centiseconds in `ns` nanoseconds.
fn centis(ns: u64) -> u64 {
    ns / 10_000_000
}

/// `d` in nanoseconds, saturating at `u64::MAX` (584 years).
fn saturating_ns(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
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
