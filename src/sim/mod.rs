//! A deterministic network simulator for meshes of [`Mesh`] cores.
//!
//! A virtual clock, a seeded random generator and a queue of datagrams in flight: the
//! simulator always steps to the earliest pending thing (a delivery or a node's timer), so a
//! minute of mesh life takes milliseconds and the same seed gives the same run, byte for
//! byte. Links have one-way latency, jitter and loss per direction; nodes can be crashed,
//! paused (frozen, as by `SIGSTOP`), resumed, restarted with a new incarnation, or made to
//! leave; the network can be partitioned and healed. Embedders can test their own code on it.
//!
//! ## What the nodes report
//!
//! The simulator drives every core itself, so it drains each core's events after every
//! input (`mesh_mut(i).poll_event()` therefore finds nothing). Each event goes two ways:
//!
//! - into node `i`'s own **event stream**, [`Sim::poll_event`]`(i)`, as a program embedding
//!   that node would read it from [`Mesh::poll_event`]. It is bounded: at most
//!   [`EVENT_QUEUE_LIMIT`] unread events per node; past that the **oldest** unread event is
//!   dropped to make room, and counted ([`Sim::events_dropped`]). A crash, restart or leave
//!   of node `i` discards its unread events, as a killed process loses them.
//! - into the **trace**, [`Sim::trace`]: every event of every node, in order, with its
//!   virtual time and node, for the whole run (it is not bounded: it grows by one record per
//!   event, a few per node and state change). Two runs with the same seed give the same
//!   trace, byte for byte ([`Sim::trace_text`]).
//!
//! ```
//! use peermesh::sim::{Link, Sim};
//! use std::time::Duration;
//!
//! let mut sim = Sim::with_nodes(3, Duration::from_millis(100), 42);
//! sim.set_default_link(Link::latency(Duration::from_millis(5)));
//! sim.run_for(Duration::from_secs(2));
//! let rtt = sim.rtt_p50(0, 1).unwrap();
//! assert_eq!(rtt, Duration::from_millis(10));
//! ```

pub mod regions;

pub use regions::Regions;

use crate::config::{Config, NodeEntry};
use crate::core::directory::Directory;
use crate::core::peer::PeerState;
use crate::core::rng::Rng;
use crate::core::{Event, Mesh, PeerId};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The behaviour of one direction of a link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    /// One-way delay.
    pub latency: Duration,
    /// Extra delay drawn uniformly from `[0, jitter)` per datagram (so datagrams may reorder).
    pub jitter: Duration,
    /// Probability in `[0, 1]` that a datagram is lost.
    pub loss: f64,
}

impl Link {
    /// A link with this one-way latency, no jitter, no loss.
    pub fn latency(latency: Duration) -> Link {
        Link {
            latency,
            jitter: Duration::ZERO,
            loss: 0.0,
        }
    }

    /// The same link with uniform jitter in `[0, jitter)`.
    pub fn with_jitter(self, jitter: Duration) -> Link {
        Link { jitter, ..self }
    }

    /// The same link with this loss probability.
    pub fn with_loss(self, loss: f64) -> Link {
        Link { loss, ..self }
    }
}

impl Default for Link {
    fn default() -> Link {
        Link::latency(Duration::from_micros(100))
    }
}

/// Whether a simulated process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeStatus {
    /// Running.
    Up,
    /// Frozen: no timers run; datagrams wait in its socket buffer until it resumes.
    Paused,
    /// Not running: datagrams to it are lost.
    Down,
}

/// One line of the event trace: what happened, where and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRecord {
    /// Virtual time since the simulation started.
    pub at: Duration,
    /// The node (config index) that reported it.
    pub node: usize,
    /// The event.
    pub event: Event,
}

impl fmt::Display for TraceRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>12.6}s node{} {:?}",
            self.at.as_secs_f64(),
            self.node,
            self.event
        )
    }
}

struct SimNode {
    /// The config entry whose identity it runs: its own index, except for an impostor.
    plays: usize,
    mesh: Option<Mesh>,
    status: NodeStatus,
    addr: SocketAddr,
    /// Datagrams that arrived while paused: (from, bytes).
    inbox: Vec<(SocketAddr, Vec<u8>)>,
    /// The deadline last pushed onto the wake-up queue, to recognise stale entries.
    wake: Option<Instant>,
    restarts: u64,
    keyring: Option<crate::wire::keyring::Keyring>,
    /// Times the node was woken for its timers (`handle_timeout` calls).
    timer_wakeups: u64,
    /// Its events not yet read with [`Sim::poll_event`], at most [`EVENT_QUEUE_LIMIT`].
    events: VecDeque<Event>,
    /// Unread events dropped from `events` to make room.
    events_dropped: u64,
    /// Datagrams and bytes it sent (handed to the network, lost or not).
    sent: (u64, u64),
}

impl SimNode {
    /// A process, not started yet, running config entry `plays`'s identity from `addr`.
    fn new(
        plays: usize,
        addr: SocketAddr,
        keyring: Option<crate::wire::keyring::Keyring>,
    ) -> SimNode {
        SimNode {
            plays,
            mesh: None,
            status: NodeStatus::Down,
            addr,
            inbox: Vec::new(),
            wake: None,
            restarts: 0,
            timer_wakeups: 0,
            keyring,
            events: VecDeque::new(),
            events_dropped: 0,
            sent: (0, 0),
        }
    }
}

/// A datagram in flight. Ordered by arrival time, then by send order (deterministic ties).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Flight {
    at: Instant,
    order: u64,
    to: usize,
    from: SocketAddr,
    bytes: Vec<u8>,
}

/// Datagrams a paused node's socket buffer holds before it drops more (like a kernel's).
const PAUSED_INBOX_LIMIT: usize = 1024;

/// Unread events [`Sim::poll_event`] keeps per node; one more drops the oldest unread one
/// ([`Sim::events_dropped`]). Room for an `Up` from every peer of the largest mesh
/// ([`crate::config::MAX_NODES`]) at once; a node's queue takes at most about 40 KiB. The
/// trace keeps every event regardless.
pub const EVENT_QUEUE_LIMIT: usize = 1024;

/// A simulated mesh: every node of a config, on a virtual network, under a virtual clock.
pub struct Sim {
    config: Config,
    base: Instant,
    now: Instant,
    rng: Rng,
    seed: u64,
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, usize>,
    /// The config's nodes, shared by every simulated node's peer table (see
    /// [`crate::core::directory`]): without it, 10,000 nodes would hold 10,000 copies.
    directory: Arc<Directory>,
    default_link: Link,
    links: HashMap<(usize, usize), Link>,
    /// Latencies by region for links that have none of their own ([`Sim::set_regions`]).
    regions: Option<Regions>,
    group: Option<Vec<u32>>,
    flights: BinaryHeap<Reverse<Flight>>,
    wakes: BinaryHeap<Reverse<(Instant, usize)>>,
    order: u64,
    trace: Vec<TraceRecord>,
    /// Whether events go into `trace` ([`Sim::set_trace`]).
    tracing: bool,
    buf: Vec<u8>,
    delivered: u64,
    lost: u64,
    bytes_sent: u64,
    /// Directed links `(from, to)` whose datagrams are recorded, as a packet capture would.
    taps: Vec<(usize, usize)>,
    /// Unread events kept per node ([`Sim::set_event_limit`]).
    event_limit: usize,
    captured: Vec<Captured>,
}

/// A datagram recorded on a tapped link ([`Sim::tap`]): what an eavesdropper keeps to replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    /// Virtual time it was sent.
    pub at: Duration,
    /// The sending node (config index).
    pub from: usize,
    /// The node it was for.
    pub to: usize,
    /// The datagram as it went on the wire.
    pub bytes: Vec<u8>,
}

/// Datagrams [`Sim::tap`] keeps at most; later ones are not recorded.
pub const CAPTURE_LIMIT: usize = 100_000;

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("nodes", &self.nodes.len())
            .field("elapsed", &self.elapsed())
            .finish_non_exhaustive()
    }
}

/// The address simulated node `i` gets from [`Sim::with_nodes`] (loopback range, never used
/// for real traffic: the simulator moves bytes between its own queues).
pub fn sim_addr(i: usize) -> SocketAddr {
    let i = i as u32 + 1;
    let ip = Ipv4Addr::new(127, 100 + (i >> 16) as u8, (i >> 8) as u8, i as u8);
    SocketAddr::new(IpAddr::V4(ip), 1313)
}

impl Sim {
    /// `n` nodes named `node0..` with the default config timings scaled to `interval`
    /// (suspect after 3 intervals, dead after 5), all links [`Link::default`], probing as
    /// `probe_mode` says at the default fanout.
    pub fn with_probe_mode(
        n: usize,
        interval: Duration,
        seed: u64,
        probe_mode: crate::core::ProbeMode,
    ) -> Sim {
        let mut config = Sim::nodes_config(n, interval);
        config.probe_mode = probe_mode;
        Sim::new(config, seed)
    }

    /// `n` nodes named `node0..` with the default config timings scaled to `interval`
    /// (suspect after 3 intervals, dead after 5), all links [`Link::default`]; probing is
    /// `auto` (sampled above [`crate::core::probe_mode::AUTO_FULL_UP_TO`] nodes).
    pub fn with_nodes(n: usize, interval: Duration, seed: u64) -> Sim {
        Sim::new(Sim::nodes_config(n, interval), seed)
    }

    /// The config [`Sim::with_nodes`] runs: `n` nodes at `interval`.
    pub fn nodes_config(n: usize, interval: Duration) -> Config {
        let nodes = (0..n)
            .map(|i| {
                let addr = sim_addr(i);
                NodeEntry {
                    name: format!("node{i}"),
                    host: addr.ip().to_string(),
                    port: addr.port(),
                    tags: Default::default(),
                    handler: None,
                }
            })
            .collect();
        Config {
            port: 1313,
            heartbeat_interval: interval,
            suspect_after: interval * 3,
            dead_after: interval * 5,
            max_datagram: crate::config::DEFAULT_MAX_DATAGRAM,
            keyring: None,
            resolve_interval: crate::config::DEFAULT_RESOLVE_INTERVAL,
            http_listen: None,
            probe_mode: crate::core::ProbeMode::Auto,
            probe_fanout: crate::core::DEFAULT_PROBE_FANOUT,
            nodes,
        }
    }

    /// Every node of `config`, started at virtual time zero. Node hosts must be IP literals
    /// (a host that is not gets a made-up loopback address).
    pub fn new(config: Config, seed: u64) -> Sim {
        let base = Instant::now();
        let mut by_addr = HashMap::new();
        let nodes: Vec<SimNode> = config
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let addr = match node.host.parse::<IpAddr>() {
                    Ok(ip) => SocketAddr::new(ip, node.port),
                    Err(_) => sim_addr(i),
                };
                by_addr.insert(addr, i);
                SimNode::new(i, addr, None)
            })
            .collect();
        let directory = Directory::new(
            config
                .nodes
                .iter()
                .zip(&nodes)
                .map(|(entry, node)| (entry.name.as_str(), node.addr)),
        );
        let mut sim = Sim {
            directory,
            buf: vec![0; config.max_datagram.max(crate::wire::HEADER_LEN)],
            config,
            base,
            now: base,
            rng: Rng::new(seed),
            seed,
            nodes,
            by_addr,
            default_link: Link::default(),
            links: HashMap::new(),
            regions: None,
            group: None,
            flights: BinaryHeap::new(),
            wakes: BinaryHeap::new(),
            order: 0,
            trace: Vec::new(),
            tracing: true,
            delivered: 0,
            lost: 0,
            bytes_sent: 0,
            taps: Vec::new(),
            event_limit: EVENT_QUEUE_LIMIT,
            captured: Vec::new(),
        };
        for i in 0..sim.nodes.len() {
            sim.start(i);
        }
        sim
    }

    // ----- the network ------------------------------------------------------------------

    /// Sets the link used between nodes that have no link of their own.
    pub fn set_default_link(&mut self, link: Link) {
        self.default_link = link;
    }

    /// Sets both directions between `a` and `b`.
    pub fn set_link(&mut self, a: usize, b: usize, link: Link) {
        self.links.insert((a, b), link);
        self.links.insert((b, a), link);
    }

    /// Sets one direction, `from` → `to`.
    pub fn set_link_oneway(&mut self, from: usize, to: usize, link: Link) {
        self.links.insert((from, to), link);
    }

    /// Places the nodes in regions: a link with none of its own gets the model's one-way
    /// delay, and the default link's jitter and loss.
    pub fn set_regions(&mut self, regions: Regions) {
        self.regions = Some(regions);
    }

    /// The link `from` → `to`.
    pub fn link(&self, from: usize, to: usize) -> Link {
        if let Some(link) = self.links.get(&(from, to)) {
            return *link;
        }
        match self.regions.as_ref().and_then(|r| r.one_way(from, to)) {
            Some(latency) => Link {
                latency,
                ..self.default_link
            },
            None => self.default_link,
        }
    }

    /// The round trip the network gives between `a` and `b` without jitter: the ground
    /// truth that measured and estimated RTTs are judged against.
    pub fn true_rtt(&self, a: usize, b: usize) -> Duration {
        self.link(a, b).latency + self.link(b, a).latency
    }

    /// Splits the network: datagrams pass only between nodes of the same group. Nodes in
    /// no group form one more group of their own.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        let mut group = vec![0u32; self.nodes.len()];
        for (g, members) in groups.iter().enumerate() {
            for &i in members.iter() {
                if let Some(slot) = group.get_mut(i) {
                    *slot = g as u32 + 1;
                }
            }
        }
        self.group = Some(group);
    }

    /// Removes any partition.
    pub fn heal(&mut self) {
        self.group = None;
    }

    /// Starts recording every datagram node `from` sends to node `to` (up to
    /// [`CAPTURE_LIMIT`]), as an eavesdropper on the path would; see [`Sim::captured`].
    pub fn tap(&mut self, from: usize, to: usize) {
        if !self.taps.contains(&(from, to)) {
            self.taps.push((from, to));
        }
    }

    /// Stops recording on every tapped link.
    pub fn untap(&mut self) {
        self.taps.clear();
    }

    /// What the taps recorded, oldest first.
    pub fn captured(&self) -> &[Captured] {
        &self.captured
    }

    /// Delivers `bytes` to node `to` now, as coming from `from`: an attacker's datagram
    /// (forged, or replayed from [`Sim::captured`]). A paused node finds it in its socket
    /// buffer when it resumes; a node that is down loses it.
    pub fn inject(&mut self, to: usize, from: SocketAddr, bytes: &[u8]) {
        if to < self.nodes.len() {
            self.order += 1;
            self.arrive(Flight {
                at: self.now,
                order: self.order,
                to,
                from,
                bytes: bytes.to_vec(),
            });
        }
    }

    // ----- the processes ----------------------------------------------------------------

    /// Kills node `i` at once (as `kill -9`): no goodbye, datagrams to it are lost.
    pub fn crash(&mut self, i: usize) {
        if let Some(node) = self.nodes.get_mut(i) {
            node.mesh = None;
            node.status = NodeStatus::Down;
            node.inbox.clear();
            node.wake = None;
            node.events.clear();
        }
    }

    /// Starts node `i` again, as a new process with a new incarnation.
    pub fn restart(&mut self, i: usize) {
        self.crash(i);
        self.start(i);
    }

    /// Starts node `i` again as a new process with this incarnation, e.g. a smaller one than
    /// before, as after the machine's clock went back.
    pub fn restart_with_incarnation(&mut self, i: usize, incarnation: u64) {
        self.crash(i);
        self.start_as(i, Some(incarnation));
    }

    /// Starts a second process with node `of`'s name, key and config, sending from `addr`
    /// (as a cloned VM image with the same hostname would): an impostor. Returns its index,
    /// past the config's nodes, for [`Sim::crash`], [`Sim::leave`], [`Sim::mesh`] and the
    /// like; `None` if `of` is no node or `addr` is taken. Its incarnation is later than the
    /// real node's, as a later start's is.
    pub fn start_impostor(&mut self, of: usize, addr: SocketAddr) -> Option<usize> {
        let real = self.nodes.get(of)?;
        if self.by_addr.contains_key(&addr) {
            return None;
        }
        let i = self.nodes.len();
        let keyring = real.keyring.clone();
        self.nodes.push(SimNode::new(of, addr, keyring));
        self.by_addr.insert(addr, i);
        self.start(i);
        Some(i)
    }

    /// Freezes node `i` (as `SIGSTOP`).
    pub fn pause(&mut self, i: usize) {
        if let Some(node) = self.nodes.get_mut(i) {
            if node.status == NodeStatus::Up {
                node.status = NodeStatus::Paused;
            }
        }
    }

    /// Thaws node `i` (as `SIGCONT`): it reads what queued up, then runs its overdue timers.
    pub fn resume(&mut self, i: usize) {
        let Some(node) = self.nodes.get_mut(i) else {
            return;
        };
        if node.status != NodeStatus::Paused {
            return;
        }
        node.status = NodeStatus::Up;
        let inbox = std::mem::take(&mut node.inbox);
        for (from, bytes) in inbox {
            self.deliver(i, from, &bytes);
        }
        self.wake_node(i);
    }

    /// Node `i` shuts down cleanly (as on `SIGTERM`): it sends `Leave` to every peer, then stops.
    pub fn leave(&mut self, i: usize) {
        let now = self.now;
        if let Some(mesh) = self.mesh_mut(i) {
            mesh.leave(now);
        }
        self.flush(i);
        self.crash(i);
    }

    /// Gives node `i` this keyring (or none), now and on every restart.
    pub fn set_keyring(&mut self, i: usize, keyring: Option<crate::wire::keyring::Keyring>) {
        if let Some(node) = self.nodes.get_mut(i) {
            node.keyring = keyring.clone();
            if let Some(mesh) = node.mesh.as_mut() {
                mesh.set_keyring(keyring);
            }
        }
    }

    /// Whether node `i` runs, is frozen or is down.
    pub fn status(&self, i: usize) -> NodeStatus {
        self.nodes.get(i).map_or(NodeStatus::Down, |n| n.status)
    }

    // ----- time -------------------------------------------------------------------------

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// The current virtual instant.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Runs until `d` of virtual time has passed.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while self.step_before(until) {}
        self.now = until;
    }

    /// Runs until `done(self)` holds, checking after every step, for at most `limit` of
    /// virtual time. Returns whether it held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let until = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if !self.step_before(until) {
                self.now = until;
                return done(self);
            }
        }
    }

    /// Handles everything due at the earliest pending instant, if it is before `until`.
    /// Returns false when nothing is pending before `until`.
    fn step_before(&mut self, until: Instant) -> bool {
        let next_flight = self.flights.peek().map(|Reverse(f)| f.at);
        let next_wake = loop {
            match self.wakes.peek() {
                Some(&Reverse((at, i))) if self.nodes[i].wake != Some(at) => {
                    self.wakes.pop();
                }
                Some(&Reverse((at, _))) => break Some(at),
                None => break None,
            }
        };
        let next = match (next_flight, next_wake) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => return false,
            },
        };
        if next > until {
            return false;
        }
        self.now = self.now.max(next);
        if next_flight == Some(next) {
            if let Some(Reverse(flight)) = self.flights.pop() {
                self.arrive(flight);
            }
        } else if let Some(Reverse((_, i))) = self.wakes.pop() {
            self.nodes[i].wake = None;
            self.wake_node(i);
        }
        true
    }

    // ----- observing --------------------------------------------------------------------

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The config every node runs.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Node `i`'s core, if it runs (or is paused).
    pub fn mesh(&self, i: usize) -> Option<&Mesh> {
        self.nodes.get(i)?.mesh.as_ref()
    }

    /// Node `i`'s core, mutably (to send data, say). Drive it only through the simulator.
    /// Its events are drained by the simulator after every input: read them with
    /// [`Sim::poll_event`], not with this core's own `poll_event`.
    pub fn mesh_mut(&mut self, i: usize) -> Option<&mut Mesh> {
        self.nodes.get_mut(i)?.mesh.as_mut()
    }

    /// Changes node `i`'s core with `change` (add or remove a peer, send data), then
    /// reschedules its wake-ups: the way to act on a core between steps. `None` if the node
    /// is not running.
    pub fn with_mesh<R>(&mut self, i: usize, change: impl FnOnce(&mut Mesh) -> R) -> Option<R> {
        let result = change(self.nodes.get_mut(i)?.mesh.as_mut()?);
        self.after_input(i);
        Some(result)
    }

    /// The handle node `from` uses for node `to`.
    pub fn peer_id(&self, from: usize, to: usize) -> Option<PeerId> {
        let name = &self.config.nodes.get(to)?.name;
        self.mesh(from)?.peer_by_name(name)
    }

    /// How node `from` sees node `to` right now.
    pub fn state(&self, from: usize, to: usize) -> Option<PeerState> {
        let id = self.peer_id(from, to)?;
        Some(self.mesh(from)?.peer(id)?.state())
    }

    /// Node `from`'s median RTT to node `to`.
    pub fn rtt_p50(&self, from: usize, to: usize) -> Option<Duration> {
        let id = self.peer_id(from, to)?;
        Some(self.mesh(from)?.peer(id)?.rtt()?.p50)
    }

    /// The next event node `i` reported that has not been read yet, oldest first: node
    /// `i`'s own event stream, as its embedder would drain [`Mesh::poll_event`]. `None` when
    /// all are read (or `i` is no node). Holds at most [`EVENT_QUEUE_LIMIT`] unread events;
    /// see [`Sim::events_dropped`]. Reading events does not change the trace.
    pub fn poll_event(&mut self, i: usize) -> Option<Event> {
        self.nodes.get_mut(i)?.events.pop_front()
    }

    /// How many of node `i`'s events were dropped unread because [`EVENT_QUEUE_LIMIT`]
    /// others were waiting (the oldest goes first). They are still in the trace.
    pub fn events_dropped(&self, i: usize) -> u64 {
        self.nodes.get(i).map_or(0, |n| n.events_dropped)
    }

    /// Every event every node reported, in order, with its virtual time: the whole run,
    /// unbounded (see the module docs). Unlike [`Sim::poll_event`], nothing is consumed.
    pub fn trace(&self) -> &[TraceRecord] {
        &self.trace
    }

    /// The trace as text, one record a line (compare two runs byte for byte).
    pub fn trace_text(&self) -> String {
        let mut out = String::new();
        for record in &self.trace {
            out.push_str(&record.to_string());
            out.push('\n');
        }
        out
    }

    /// Bytes of every datagram the nodes emitted so far (UDP payloads), whether it was then
    /// delivered, lost or is still in flight.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// Datagrams and bytes node `i` has sent so far (the impostor's and earlier
    /// processes' included).
    pub fn sent_by(&self, i: usize) -> (u64, u64) {
        self.nodes.get(i).map_or((0, 0), |n| n.sent)
    }

    /// Whether every event also goes into [`Sim::trace`] (default: yes). A run of
    /// thousands of nodes turns it off: its trace would hold millions of records.
    pub fn set_trace(&mut self, on: bool) {
        self.tracing = on;
    }

    /// Keeps at most `limit` unread events per node instead of [`EVENT_QUEUE_LIMIT`] (older
    /// ones are dropped and counted as before; 0 keeps none). For a large mesh whose events
    /// are read often or not at all: at 10,000 nodes, full queues of 1,024 would hold 700 MB.
    pub fn set_event_limit(&mut self, limit: usize) {
        self.event_limit = limit;
        for node in &mut self.nodes {
            let excess = node.events.len().saturating_sub(limit);
            node.events.drain(..excess);
            node.events_dropped += excess as u64;
            node.events.shrink_to(limit);
        }
    }

    /// How many times node `i` has been woken for its timers so far (a real node's timer
    /// wake-ups: each costs a `epoll_wait` return and a context switch).
    pub fn timer_wakeups(&self, i: usize) -> u64 {
        self.nodes.get(i).map_or(0, |n| n.timer_wakeups)
    }

    /// Datagrams delivered and lost so far.
    pub fn datagram_counts(&self) -> (u64, u64) {
        (self.delivered, self.lost)
    }

    // ----- internals --------------------------------------------------------------------

    fn start(&mut self, i: usize) {
        self.start_as(i, None);
    }

    fn start_as(&mut self, i: usize, chosen: Option<u64>) {
        let addrs: Vec<SocketAddr> = self
            .nodes
            .iter()
            .take(self.config.nodes.len())
            .map(|n| n.addr)
            .collect();
        let node = &mut self.nodes[i];
        node.restarts += 1;
        // Incarnations and jitter seeds derive from the run's seed: reproducible.
        let mut rng = Rng::new(self.seed ^ (i as u64).wrapping_mul(0x9e37_79b9) ^ node.restarts);
        // Like the driver's: start time first, so a later start has a larger incarnation.
        let started_ms = (self.now - self.base).as_millis() as u64 + 1;
        let incarnation = (started_ms << 16) | (rng.next_u64() & 0xffff);
        let incarnation = chosen.unwrap_or(incarnation);
        let seed = rng.next_u64();
        let mut mesh = self
            .config
            .mesh(node.plays, &addrs, (incarnation, seed), self.now);
        // Every node shares the simulation's clock: slots line up, as NTP lines them up.
        mesh.set_phase(self.now - self.base);
        if node.keyring.is_some() {
            mesh.set_keyring(node.keyring.clone());
        }
        mesh.share_directory(&self.directory);
        node.mesh = Some(mesh);
        node.status = NodeStatus::Up;
        self.after_input(i);
    }

    fn arrive(&mut self, flight: Flight) {
        let to = flight.to;
        match self.nodes[to].status {
            NodeStatus::Up => self.deliver(to, flight.from, &flight.bytes),
            NodeStatus::Paused if self.nodes[to].inbox.len() < PAUSED_INBOX_LIMIT => {
                self.nodes[to].inbox.push((flight.from, flight.bytes));
            }
            _ => self.lost += 1,
        }
    }

    fn deliver(&mut self, i: usize, from: SocketAddr, bytes: &[u8]) {
        let now = self.now;
        if let Some(mesh) = self.nodes[i].mesh.as_mut() {
            mesh.handle_datagram(now, from, bytes);
            self.delivered += 1;
        }
        self.after_input(i);
    }

    fn wake_node(&mut self, i: usize) {
        let now = self.now;
        if self.nodes[i].status != NodeStatus::Up {
            return;
        }
        if let Some(mesh) = self.nodes[i].mesh.as_mut() {
            mesh.handle_timeout(now);
            self.nodes[i].timer_wakeups += 1;
        }
        self.after_input(i);
    }

    /// After any input: send what the node wants to send, record its events, and note when
    /// it next needs waking.
    fn after_input(&mut self, i: usize) {
        if self.nodes[i].status != NodeStatus::Up {
            return;
        }
        self.flush(i);
        let now = self.now;
        let node = &mut self.nodes[i];
        let Some(mesh) = node.mesh.as_mut() else {
            return;
        };
        while let Some(event) = mesh.poll_event() {
            if node.events.len() >= self.event_limit {
                node.events.pop_front();
                node.events_dropped += 1;
            }
            let kept = self.event_limit > 0;
            if self.tracing {
                if kept {
                    node.events.push_back(event.clone());
                }
                self.trace.push(TraceRecord {
                    at: now - self.base,
                    node: i,
                    event,
                });
            } else if kept {
                node.events.push_back(event);
            }
        }
        let wake = mesh.poll_timeout();
        if wake != self.nodes[i].wake {
            self.nodes[i].wake = wake;
            if let Some(at) = wake {
                self.wakes.push(Reverse((at, i)));
            }
        }
    }

    fn flush(&mut self, i: usize) {
        let now = self.now;
        let from = self.nodes[i].addr;
        loop {
            let Some(mesh) = self.nodes[i].mesh.as_mut() else {
                return;
            };
            let Some(transmit) = mesh.poll_transmit(now, &mut self.buf) else {
                return;
            };
            self.bytes_sent += transmit.len as u64;
            let sent = &mut self.nodes[i].sent;
            sent.0 += 1;
            sent.1 += transmit.len as u64;
            let Some(&to) = self.by_addr.get(&transmit.dst) else {
                self.lost += 1;
                continue;
            };
            let link = self.link(i, to);
            let cut = self.group.as_ref().is_some_and(|g| g.get(i) != g.get(to));
            if cut || self.rng.chance(link.loss) {
                self.lost += 1;
                continue;
            }
            if self.taps.contains(&(i, to)) && self.captured.len() < CAPTURE_LIMIT {
                self.captured.push(Captured {
                    at: now - self.base,
                    from: i,
                    to,
                    bytes: self.buf[..transmit.len].to_vec(),
                });
            }
            let jitter_ns = self.rng.below(link.jitter.as_nanos() as u64);
            let at = now + link.latency + Duration::from_nanos(jitter_ns);
            self.order += 1;
            self.flights.push(Reverse(Flight {
                at,
                order: self.order,
                to,
                from,
                bytes: self.buf[..transmit.len].to_vec(),
            }));
        }
    }
}
