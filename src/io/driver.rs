//! The mio driver: one UDP socket and one [`Mesh`] core, for any mio event loop.
//!
//! [`Node`] holds no protocol logic: it moves datagrams between the socket and the core,
//! reads the monotonic clock, and keeps what the kernel would not take (`WouldBlock`) in a
//! small bounded queue until the socket is writable again. A node built from a config
//! ([`Node::from_config`]) seals and opens with the key file the config names, or does not
//! start. Embed it in an existing loop:
//!
//! ```no_run
//! use mio::{Events, Poll, Token};
//! use peermesh::io::driver::Node;
//! use std::io::ErrorKind;
//! use std::time::Instant;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let config = peermesh::config::Config::parse("(nodes: [(name: \"a\", host: \"127.0.0.1\")])", "x")?;
//! const MESH: Token = Token(7);
//! let mut poll = Poll::new()?;
//! let mut node = Node::from_config(&config, 0, None)?;
//! node.register(poll.registry(), MESH)?;
//! let mut events = Events::with_capacity(64);
//! loop {
//!     // Zero while a flood left datagrams unread (`has_unread`), else until the core's
//!     // next deadline (or the host program's own, in place of `None`).
//!     let timeout = node.poll_delay(Instant::now(), None);
//!     match poll.poll(&mut events, timeout) {
//!         Err(e) if e.kind() == ErrorKind::Interrupted => continue,
//!         other => other?,
//!     }
//!     for event in events.iter() {
//!         if event.token() == MESH {
//!             node.handle_event(poll.registry(), event)?;
//!         }
//!         // ... the host program's own tokens ...
//!     }
//!     node.handle_timeout(poll.registry(), Instant::now())?; // every turn
//!     while let Some(e) = node.poll_event() {
//!         println!("{e:?}");
//!     }
//! }
//! # }
//! ```
//!
//! To serve the control socket (`peermesh status --control PATH`) from the same loop, add a
//! [`crate::io::control::ControlServer`]: one call per loop turn.

use crate::config::{Config, ConfigError, KeyFileError};
use crate::core::addr::{canonical, family_name, Families};
use crate::core::{Event as MeshEvent, Mesh, Settings};
use crate::io::host_names::HostNames;
use crate::report::status::IoCounters;
use log::{debug, info, trace, warn};
use mio::net::UdpSocket;
use mio::{event::Event, Interest, Registry, Token};
use nix::sys::socket::{
    getsockopt, recvmmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, MultiHeaders,
    SockaddrStorage,
};
use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io::IoSliceMut;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Datagrams held while the socket says `WouldBlock`; more are dropped and counted.
pub const SEND_QUEUE_LIMIT: usize = 1024;
/// Datagrams read per readiness event before timers get their turn (a flood must not
/// starve heartbeats); the rest are read on the next loop turn.
pub const RECV_BATCH: usize = 256;
/// One receive slot: larger than any datagram, so an oversize one is seen whole and dropped.
/// Only the pages a datagram touches become resident.
const RECV_BUFFER: usize = 65_536;
/// Datagrams read per system call (`recvmmsg`): under a flood, the per-call cost of the
/// kernel crossing is shared by this many datagrams.
const RECV_MANY: usize = 16;
/// The socket receive buffer asked of the kernel (bytes).
const RECV_SOCKET_BUFFER: usize = 4 << 20;

/// Why a node could not start.
#[derive(Debug)]
pub enum StartError {
    /// The config has a problem (a host that does not resolve, ...).
    Config(ConfigError),
    /// The key file the config names was refused (missing, readable by others, not a
    /// keyring, ...): the node would otherwise run unauthenticated and could not join
    /// its mesh. Its message names the file.
    Keyring(KeyFileError),
    /// The UDP socket could not be bound.
    Bind {
        /// The address tried.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(err) => write!(f, "{err}"),
            StartError::Keyring(err) => write!(f, "{err}"),
            StartError::Bind { addr, source } => {
                write!(f, "cannot bind UDP {addr}: {source}")?;
                if source.kind() == ErrorKind::AddrInUse {
                    write!(f, " (is another peermesh node running on this port?)")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The wrappers show their inner error's message as their own: its source is theirs.
        match self {
            StartError::Config(err) => err.source(),
            StartError::Keyring(err) => err.source(),
            StartError::Bind { source, .. } => Some(source),
        }
    }
}

impl From<ConfigError> for StartError {
    fn from(err: ConfigError) -> StartError {
        StartError::Config(err)
    }
}

impl From<KeyFileError> for StartError {
    fn from(err: KeyFileError) -> StartError {
        StartError::Keyring(err)
    }
}

impl From<StartError> for io::Error {
    fn from(err: StartError) -> io::Error {
        match err {
            StartError::Bind { source, .. } => source,
            other => io::Error::new(ErrorKind::InvalidInput, other.to_string()),
        }
    }
}

/// A random 64-bit number from the standard library's per-process hash keys (no extra
/// crate): incarnations must differ between process starts, nothing more.
pub fn random_u64() -> u64 {
    // Each RandomState has fresh keys (seeded per process, stepped per call); hashing the
    // pid gives them something to mix.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// A new incarnation: the start time in milliseconds since the Unix epoch in the high 48
/// bits, 16 random bits below. Peers accept a restart only from a larger incarnation than
/// the one they hear (while they hear it), so replayed datagrams of a past process cannot
/// pose as a restart.
pub fn new_incarnation() -> u64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    (ms << 16) | (random_u64() & 0xffff)
}

/// Binds `addr`; where that IP is not on this machine (a public address behind NAT), binds
/// the wildcard address of the same family with the same port instead. An IPv6 socket is
/// made dual-stack (`IPV6_V6ONLY` off, whatever `net.ipv6.bindv6only` says), so one bound
/// to `[::]` is reachable on both families ([`bind_udp_socket`]).
pub fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, StartError> {
    match bind_udp_socket(addr) {
        Ok(socket) => Ok(socket),
        Err(err) if err.kind() == ErrorKind::AddrNotAvailable => {
            let any = match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            let wildcard = SocketAddr::new(any, addr.port());
            info!("{addr} is not an address of this machine; binding {wildcard}");
            bind_udp_socket(wildcard).map_err(|source| StartError::Bind {
                addr: wildcard,
                source,
            })
        }
        Err(source) => Err(StartError::Bind { addr, source }),
    }
}

/// A non-blocking UDP socket bound to `addr`. For IPv6, `IPV6_V6ONLY` is turned off before
/// the bind (it cannot be changed after): a `[::]` socket then also takes IPv4 datagrams,
/// which arrive from IPv4-mapped addresses (`::ffff:a.b.c.d`), and sends to IPv4 peers
/// through the same mapped form. Distributions that set `bindv6only=1` would otherwise
/// make `--bind [::]:PORT` an IPv6-only node.
pub fn bind_udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    use nix::sys::socket::{bind, socket, AddressFamily, SockFlag, SockType};
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(
        family,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)?;
    if addr.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &false).map_err(io::Error::from)?;
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(io::Error::from)?;
    Ok(UdpSocket::from_std(std::net::UdpSocket::from(fd)))
}

/// The families a bound socket can send to: an IPv6 socket reaches IPv4 peers only when it
/// is dual-stack (`IPV6_V6ONLY` off) and bound to the wildcard `[::]`.
pub fn socket_families(socket: &UdpSocket) -> io::Result<Families> {
    let local = socket.local_addr()?;
    let dual_stack = local.is_ipv6() && !getsockopt(socket, sockopt::Ipv6V6Only)?;
    Ok(Families::of_socket(local, dual_stack))
}

/// What an operator should know, before anything is sent, about the address families of a
/// node whose socket is bound to `local` and reaches `families`, with `peers` (name,
/// address) and a keyring or not: each peer the socket cannot send to (an IPv6 peer of an
/// IPv4-bound node), and, without a keyring, that a dual-stack node with peers of both
/// families sends from addresses some peers do not list it under. `Node::new` logs these
/// as warnings; `peermesh check` prints them.
pub fn family_warnings<'a>(
    local: SocketAddr,
    families: Families,
    peers: impl IntoIterator<Item = (&'a str, SocketAddr)>,
    keyring: bool,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let (mut v4, mut v6) = (false, false);
    for (name, addr) in peers {
        let addr = canonical(addr);
        v4 |= addr.is_ipv4();
        v6 |= addr.is_ipv6();
        if !families.reaches(addr) {
            warnings.push(format!(
                "peer {name} at {addr} is {}, which this node's socket (udp {local}) cannot \
                 send to: its heartbeats fail (counted as send errors), it gets no RTT here \
                 (diagnosis family_mismatch); bind [::]:{} to reach IPv4 and IPv6 peers alike",
                family_name(addr),
                local.port()
            ));
        }
    }
    if !keyring && v4 && v6 && families == Families::BOTH {
        warnings.push(
            "no keyring, and peers of both IPv4 and IPv6: this node sends to each peer from \
             its own address of that peer's family, but without a keyring a peer accepts it \
             only from the one address it lists this node under, so peers that list it by \
             the other family drop its datagrams (address_not_allowed); use a keyring \
             (docs/SECURITY.md) or list every node in one family"
                .to_owned(),
        );
    }
    warnings
}

/// A mesh node on a UDP socket, driven by a mio loop (its own or the embedder's).
pub struct Node {
    mesh: Mesh,
    socket: UdpSocket,
    token: Option<Token>,
    want_writable: bool,
    send_queue: VecDeque<(SocketAddr, Vec<u8>)>,
    tx: Vec<u8>,
    /// [`RECV_MANY`] receive slots of [`RECV_BUFFER`] bytes, back to back.
    rx: Vec<u8>,
    io: IoCounters,
    /// The last read stopped at the batch limit, not at `WouldBlock`: more may be waiting.
    unread: bool,
    /// `recvmmsg`'s message headers, with room for a source address and the kernel's
    /// arrival timestamp per slot (allocated once).
    headers: MultiHeaders<SockaddrStorage>,
    /// Whether the socket delivers arrival timestamps (`SO_TIMESTAMPNS` was accepted).
    stamped: bool,
    /// What the last `recvmmsg` returned, slot by slot.
    batch: [Datagram; RECV_MANY],
    /// The peers listed by host name: their schedule and last good addresses.
    host_names: HostNames,
    /// The families the socket sends to, and whether it is IPv6 (IPv4 destinations are
    /// then sent to their mapped form).
    families: Families,
    ipv6_socket: bool,
}

/// One datagram of a `recvmmsg` batch: its length, source and arrival time.
#[derive(Clone, Copy)]
struct Datagram {
    len: usize,
    from: Option<SocketAddr>,
    arrived: Instant,
    /// `arrived` is the kernel's timestamp, not the time of reading.
    stamped: bool,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("mesh", &self.mesh)
            .field("local_addr", &self.socket.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Node `config.nodes[me]`: reads the key file the config names (if any), resolves
    /// every node's address, binds its own (or `bind`), and starts its core with a fresh
    /// random incarnation, sealing with the key file's first key.
    ///
    /// Fails with [`StartError::Keyring`] when the config names a key file that cannot be
    /// used, before any address is resolved or bound. A config without `keyring` gives an
    /// unauthenticated node (logged as a warning): datagrams are then accepted only from
    /// the configured peers' addresses (docs/SECURITY.md). [`Mesh::set_keyring`] changes the
    /// keys later (a reload).
    pub fn from_config(
        config: &Config,
        me: usize,
        bind: Option<SocketAddr>,
    ) -> Result<Node, StartError> {
        let addrs = (0..config.nodes.len())
            .map(|i| config.resolve(i))
            .collect::<Vec<_>>();
        Node::from_addrs(config, me, bind, addrs)
    }

    /// [`Node::from_config`] with every node's address already looked up (`addrs[i]` for
    /// `config.nodes[i]`), as `peermesh run` does on its resolver thread. A peer whose name
    /// did not resolve is not fatal: it is left out of the core, tracked as unresolved in
    /// [`Node::host_names`], and added once its name resolves. This node's own address must
    /// be known, unless `bind` is given.
    pub fn from_addrs(
        config: &Config,
        me: usize,
        bind: Option<SocketAddr>,
        addrs: Vec<Result<SocketAddr, ConfigError>>,
    ) -> Result<Node, StartError> {
        let keyring = config.load_keyring()?;
        if keyring.is_none() {
            warn!(
                "no keyring in the config: the mesh is NOT authenticated; datagrams are \
                 accepted only from the configured peers' addresses (see docs/SECURITY.md)"
            );
        }
        let mut known: Vec<Option<SocketAddr>> = Vec::with_capacity(addrs.len());
        let mut failures: Vec<Option<String>> = Vec::with_capacity(addrs.len());
        let mut own = bind;
        for (i, addr) in addrs.into_iter().enumerate() {
            match addr {
                Ok(addr) => {
                    if i == me && own.is_none() {
                        own = Some(addr);
                    }
                    known.push(Some(addr));
                    failures.push(None);
                }
                Err(e) if i == me && bind.is_none() => return Err(StartError::Config(e)),
                Err(e) => {
                    warn!("{e}; the peer is unresolved until its name resolves");
                    known.push(None);
                    failures.push(Some(e.resolve_reason()));
                }
            }
        }
        let own = own.ok_or_else(|| {
            StartError::Config(ConfigError::bare(
                crate::config::ConfigErrorKind::NoSuchIndex {
                    index: me,
                    len: config.nodes.len(),
                },
            ))
        })?;
        let socket = bind_udp(own)?;
        let incarnation = new_incarnation();
        let now = Instant::now();
        let mut mesh = config.mesh_of_resolved(me, &known, (incarnation, random_u64()), now);
        // Heartbeat slots line up with the wall clock, which NTP keeps close on every VM.
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        mesh.set_phase(wall);
        if keyring.is_some() {
            mesh.set_keyring(keyring);
        }
        let v6_socket = socket.local_addr().is_ok_and(|a| a.is_ipv6());
        let mut names = HostNames::new(config.resolve_interval, v6_socket);
        for (i, node) in config.nodes.iter().enumerate() {
            if i != me && node.literal_addr().is_none() {
                names.track(
                    &node.name,
                    &node.host,
                    node.port,
                    known[i],
                    failures[i].take(),
                    now,
                );
            }
        }
        let mut node = Node::new(mesh, socket);
        node.host_names = names;
        Ok(node)
    }

    /// A node over an existing core and a bound socket. Tells the core which families the
    /// socket reaches ([`Mesh::set_families`]) and logs the [`family_warnings`].
    pub fn new(mut mesh: Mesh, socket: UdpSocket) -> Node {
        let stamped = tune_socket(&socket);
        let local = socket.local_addr().ok();
        let families = socket_families(&socket).unwrap_or(Families::BOTH);
        mesh.set_families(families);
        if let Some(local) = local {
            let peers = mesh.peers().map(|(_, p)| (p.name(), p.addr()));
            for warning in family_warnings(local, families, peers, mesh.keyring().is_some()) {
                warn!("{warning}");
            }
        }
        let max = mesh.settings().max_datagram.max(crate::wire::HEADER_LEN);
        Node {
            mesh,
            socket,
            token: None,
            want_writable: false,
            send_queue: VecDeque::with_capacity(64),
            tx: vec![0; max],
            rx: vec![0; RECV_BUFFER * RECV_MANY],
            io: IoCounters::default(),
            unread: false,
            headers: receive_headers(),
            stamped,
            batch: [Datagram {
                len: 0,
                from: None,
                arrived: Instant::now(),
                stamped: false,
            }; RECV_MANY],
            host_names: HostNames::new(crate::config::DEFAULT_RESOLVE_INTERVAL, false),
            families,
            ipv6_socket: local.is_some_and(|a| a.is_ipv6()),
        }
    }

    /// The status report of this node: the core's peers, then those whose host names have
    /// not resolved yet (diagnosis `unresolved`), with the driver's I/O counters.
    pub fn status_report(&self, now: Instant) -> crate::report::status::StatusReport {
        let mut report = crate::report::status::StatusReport::new(&self.mesh, now, Some(&self.io));
        for (name, entry) in self.host_names.unresolved() {
            report.add_unresolved(name, &entry.host, entry.port, entry.error.as_deref());
        }
        report
    }

    /// This node's Prometheus metrics ([`crate::report::metrics`]): the status report's
    /// figures and the matrix's row ages.
    pub fn metrics(&self, now: Instant) -> String {
        let matrix = self.mesh.matrix_snapshot();
        let rows: Vec<crate::report::metrics::RowAge> = matrix
            .names()
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), matrix.age_ms(i)))
            .collect();
        crate::report::metrics::render(&self.status_report(now), &rows)
    }

    /// The peers listed by host name, with the unresolved ones (for the reports).
    pub fn host_names(&self) -> &HostNames {
        &self.host_names
    }

    /// The peers listed by host name, to schedule lookups and take their answers.
    pub fn host_names_mut(&mut self) -> &mut HostNames {
        &mut self.host_names
    }

    /// Registers the socket with `registry` under `token` (readable; writable only while
    /// datagrams wait in the send queue).
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.socket, token, Interest::READABLE)?;
        self.token = Some(token);
        self.want_writable = false;
        Ok(())
    }

    /// Removes the socket from `registry`.
    pub fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.token = None;
        registry.deregister(&mut self.socket)
    }

    /// The token given to [`Node::register`].
    pub fn token(&self) -> Option<Token> {
        self.token
    }

    /// Handles a readiness event for this node's token: reads up to [`RECV_BATCH`]
    /// datagrams, sends what the core then wants to send. Events for other tokens are ignored.
    pub fn handle_event(&mut self, registry: &Registry, event: &Event) -> io::Result<()> {
        if Some(event.token()) != self.token {
            return Ok(());
        }
        if event.is_writable() {
            self.flush_queue();
        }
        if event.is_readable() {
            self.receive();
        }
        self.send(registry)
    }

    /// Runs the core's due timers and sends what they produced. Call when
    /// [`Node::poll_timeout`] has passed (early or extra calls are harmless). Also reads
    /// datagrams a previous event left unread (the batch limit), so call it every loop turn.
    pub fn handle_timeout(&mut self, registry: &Registry, now: Instant) -> io::Result<()> {
        self.mesh.handle_timeout(now);
        // Readiness is edge-triggered: what the batch limit left in the socket is read here
        // (and only then: an idle node makes no needless system calls).
        if self.unread {
            self.receive();
        }
        self.send(registry)
    }

    /// When the core next needs [`Node::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.mesh.poll_timeout()
    }

    /// How long a mio loop may sleep in `poll` before it calls [`Node::handle_timeout`]
    /// again: zero while datagrams may wait unread ([`Node::has_unread`]), else until the
    /// earlier of [`Node::poll_timeout`] and `other` (the host program's own deadline, or
    /// [`crate::io::control::ControlServer::poll_timeout`]), rounded up to a whole
    /// millisecond as epoll rounds it (waking a little early would spin). `None`: nothing is
    /// due; sleep until an event.
    pub fn poll_delay(&self, now: Instant, other: Option<Instant>) -> Option<Duration> {
        if self.unread {
            return Some(Duration::ZERO);
        }
        let deadline = match (self.poll_timeout(), other) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }?;
        let wait = deadline.saturating_duration_since(now);
        let ms = u64::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
        Some(Duration::from_millis(ms))
    }

    /// The next thing that happened.
    pub fn poll_event(&mut self) -> Option<MeshEvent> {
        self.mesh.poll_event()
    }

    /// Sends `Leave` to every peer, now. Call before exiting.
    pub fn leave(&mut self, registry: &Registry) -> io::Result<()> {
        self.mesh.leave(Instant::now());
        self.send(registry)
    }

    /// The core, to read the peer table.
    pub fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    /// The core, to tell the other nodes something ([`Mesh::send`], [`Mesh::set_tags`],
    /// [`Mesh::query`]); call
    /// [`Node::handle_timeout`] after, which sends it.
    pub fn mesh_mut(&mut self) -> &mut Mesh {
        &mut self.mesh
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The driver's I/O counters, as the status report shows them
    /// ([`crate::report::status::StatusReport::new`]).
    pub fn io_counters(&self) -> &IoCounters {
        &self.io
    }

    /// The settings the core runs with.
    pub fn settings(&self) -> &Settings {
        self.mesh.settings()
    }

    /// Datagrams waiting for the socket to become writable.
    pub fn queued(&self) -> usize {
        self.send_queue.len()
    }

    /// Whether datagrams may still wait in the socket (a read stopped at the batch limit):
    /// an embedder's loop should then not sleep before calling [`Node::handle_timeout`].
    pub fn has_unread(&self) -> bool {
        self.unread
    }

    fn receive(&mut self) {
        self.unread = true;
        let mut budget = RECV_BATCH;
        while budget > 0 {
            let read = recv_many(
                &self.socket,
                &mut self.rx,
                &mut self.headers,
                &mut self.batch,
            );
            let count = match read {
                Ok(count) => count,
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    self.unread = false;
                    return;
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => {
                    // E.g. ECONNREFUSED from an earlier send to a closed port: not fatal.
                    self.io.recv_errors += 1;
                    debug!("udp receive error: {err}");
                    budget -= 1;
                    continue;
                }
            };
            budget = budget.saturating_sub(count.max(1));
            let mut headers_spoilt = false;
            for i in 0..count.min(RECV_MANY) {
                let datagram = self.batch[i];
                headers_spoilt |= self.stamped && !datagram.stamped;
                let Some(from) = datagram.from else {
                    self.io.recv_errors += 1;
                    debug!("udp receive error: a datagram without a source address");
                    headers_spoilt = true;
                    continue;
                };
                self.io.received += 1;
                self.io.received_bytes += datagram.len as u64;
                let bytes = &self.rx[i * RECV_BUFFER..][..datagram.len.min(RECV_BUFFER)];
                // The kernel's arrival time, not ours: the time the datagram waited in
                // the socket while this process slept or was busy is not part of the RTT.
                self.mesh.handle_datagram(datagram.arrived, from, bytes);
                // Answer at once: the pong's hold time stays small and exact.
                self.transmit_from_core();
            }
            if headers_spoilt {
                // The kernel writes each slot's address and control lengths back into the
                // headers, and nix does not reset them between calls: a slot that came back
                // without an address or a timestamp would lose them for good. Start again
                // from fresh headers (a rare path: it allocates).
                self.headers = receive_headers();
            }
        }
    }

    fn send(&mut self, registry: &Registry) -> io::Result<()> {
        self.transmit_from_core();
        let want = !self.send_queue.is_empty();
        if want != self.want_writable {
            if let Some(token) = self.token {
                let interest = if want {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                registry.reregister(&mut self.socket, token, interest)?;
            }
            self.want_writable = want;
        }
        Ok(())
    }

    /// Sends everything the core has queued; what the kernel refuses waits in the queue.
    fn transmit_from_core(&mut self) {
        while self.mesh.has_transmit() {
            let Some(t) = self.mesh.poll_transmit(Instant::now(), &mut self.tx) else {
                return;
            };
            if !self.send_queue.is_empty() {
                // Keep order: behind what already waits.
                self.enqueue(t.dst, t.len);
                continue;
            }
            match self.send_to(&self.tx[..t.len], t.dst) {
                Sent::Done => self.io.count_sent(t.len),
                Sent::WouldBlock => self.enqueue(t.dst, t.len),
                Sent::Failed(err) => {
                    self.io.send_errors += 1;
                    trace!("udp send to {} failed: {err}", t.dst);
                }
            }
        }
    }

    fn send_to(&self, bytes: &[u8], dst: SocketAddr) -> Sent {
        send_to(&self.socket, self.families, self.ipv6_socket, bytes, dst)
    }

    fn enqueue(&mut self, dst: SocketAddr, len: usize) {
        if self.send_queue.len() >= SEND_QUEUE_LIMIT {
            self.io.send_queue_full += 1;
            warn!("send queue full: dropped a datagram to {dst}");
            return;
        }
        self.send_queue.push_back((dst, self.tx[..len].to_vec()));
    }

    fn flush_queue(&mut self) {
        while let Some((dst, bytes)) = self.send_queue.front() {
            match send_to(&self.socket, self.families, self.ipv6_socket, bytes, *dst) {
                Sent::Done => self.io.count_sent(bytes.len()),
                Sent::WouldBlock => return,
                Sent::Failed(err) => {
                    self.io.send_errors += 1;
                    trace!("udp send to {dst} failed: {err}");
                }
            }
            self.send_queue.pop_front();
        }
    }
}

/// Headers for [`RECV_MANY`] messages, each with room for an address and a timestamp.
fn receive_headers() -> MultiHeaders<SockaddrStorage> {
    MultiHeaders::preallocate(RECV_MANY, Some(nix::cmsg_space!(nix::sys::time::TimeSpec)))
}

/// Receives up to [`RECV_MANY`] datagrams in one `recvmmsg` call, slot `i` into
/// `rx[i * RECV_BUFFER..]`, and describes them in `out`; returns how many. Each gets the
/// kernel's arrival timestamp (`SO_TIMESTAMPNS`) turned into an `Instant`, or the time of
/// reading when there is none. Allocates nothing.
fn recv_many(
    socket: &UdpSocket,
    rx: &mut [u8],
    headers: &mut MultiHeaders<SockaddrStorage>,
    out: &mut [Datagram; RECV_MANY],
) -> io::Result<usize> {
    let mut slots = rx.chunks_mut(RECV_BUFFER);
    let mut iovs: [[IoSliceMut<'_>; 1]; RECV_MANY] =
        std::array::from_fn(|_| [IoSliceMut::new(slots.next().unwrap_or_default())]);
    let received = recvmmsg(
        socket.as_raw_fd(),
        headers,
        iovs.iter_mut(),
        MsgFlags::empty(),
        None,
    )
    .map_err(io::Error::from)?;
    // One clock reading per batch: the stamps are wall-clock times, so measure how long
    // ago each was on that clock and step back as much on the monotonic one (bounded:
    // clocks can jump).
    let read_at = Instant::now();
    let wall = SystemTime::now();
    let mut count = 0;
    for (msg, slot) in received.zip(out.iter_mut()) {
        let from = msg.address.as_ref().and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| SocketAddr::V4((*v4).into()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into())))
                // A dual-stack socket's IPv4 sender, ::ffff:a.b.c.d, is a.b.c.d.
                .map(canonical)
        });
        let (mut arrived, mut stamped) = (read_at, false);
        for c in msg.cmsgs().into_iter().flatten() {
            if let ControlMessageOwned::ScmTimestampns(ts) = c {
                let stamp = u64::try_from(ts.tv_sec()).ok().map(|s| {
                    UNIX_EPOCH + Duration::new(s, ts.tv_nsec().clamp(0, 999_999_999) as u32)
                });
                let waited = stamp
                    .and_then(|t| wall.duration_since(t).ok())
                    .unwrap_or_default()
                    .min(Duration::from_secs(1));
                arrived = read_at.checked_sub(waited).unwrap_or(read_at);
                stamped = true;
            }
        }
        *slot = Datagram {
            len: msg.bytes,
            from,
            arrived,
            stamped,
        };
        count += 1;
    }
    Ok(count)
}

/// Asks the kernel for arrival timestamps and a receive buffer large enough to ride out a
/// burst or a flood while the process is busy. Best effort: the node works without them.
/// Returns whether datagrams will carry timestamps.
fn tune_socket(socket: &UdpSocket) -> bool {
    let stamped = match setsockopt(socket, sockopt::ReceiveTimestampns, &true) {
        Ok(()) => true,
        Err(e) => {
            warn!("no kernel receive timestamps ({e}): RTTs include this process's wake-up");
            false
        }
    };
    // The kernel caps this at net.core.rmem_max.
    let _ = setsockopt(socket, sockopt::RcvBuf, &RECV_SOCKET_BUFFER);
    stamped
}

enum Sent {
    Done,
    WouldBlock,
    Failed(io::Error),
}

/// Sends one datagram. The core names IPv4 peers by their plain address: an IPv6 socket
/// sends to the IPv4-mapped form (`::ffff:a.b.c.d`), which every dual-stack socket takes
/// (Linux also accepts a plain IPv4 `sockaddr_in` there, but not every system does). A
/// destination of a family the socket cannot reach is not tried: a failed send, with the
/// reason at trace level (the warning at start said it once).
fn send_to(
    socket: &UdpSocket,
    families: Families,
    ipv6_socket: bool,
    bytes: &[u8],
    dst: SocketAddr,
) -> Sent {
    if !families.reaches(dst) {
        return Sent::Failed(io::Error::new(
            ErrorKind::Unsupported,
            format!(
                "{} is {}, which this socket cannot reach",
                dst,
                family_name(dst)
            ),
        ));
    }
    let dst = match dst {
        SocketAddr::V4(v4) if ipv6_socket => {
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        other => other,
    };
    loop {
        return match socket.send_to(bytes, dst) {
            Ok(_) => Sent::Done,
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) if err.kind() == ErrorKind::WouldBlock => Sent::WouldBlock,
            Err(err) => Sent::Failed(err),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const ANY_PORT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

    fn config(keyring: Option<&Path>) -> Config {
        let keyring = keyring.map_or(String::new(), |k| format!("keyring: {:?}, ", k));
        let text = format!(
            "({keyring}nodes: [(name: \"a\", host: \"127.0.0.1\"), (name: \"b\", host: \"127.0.0.1\", port: 1314)])"
        );
        Config::parse(&text, "/peers.ron").expect("a valid config")
    }

    #[test]
    fn a_node_from_a_config_seals_with_its_key_file_or_does_not_start() {
        let dir = std::env::temp_dir().join(format!("peermesh-driver-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let keys = dir.join("keys");

        // Named but missing: a typed error naming the file, nothing bound.
        let err = Node::from_config(&config(Some(&keys)), 0, Some(ANY_PORT)).unwrap_err();
        assert!(
            matches!(err, StartError::Keyring(KeyFileError::Io { .. })),
            "{err}"
        );
        assert!(
            err.to_string().contains(&keys.display().to_string()),
            "{err}"
        );
        assert!(std::error::Error::source(&err).is_some());

        // Readable by others: refused too.
        std::fs::write(&keys, format!("{KEY}\n")).expect("write");
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = Node::from_config(&config(Some(&keys)), 0, Some(ANY_PORT)).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");

        // A private key file: the node seals with its key.
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let node = Node::from_config(&config(Some(&keys)), 0, Some(ANY_PORT)).expect("starts");
        let want = crate::config::key_file::load_keyring(&keys).expect("loads");
        let ring = node.mesh().keyring().expect("a keyring");
        assert_eq!(ring.primary().id(), want.primary().id());

        // No key file named: unauthenticated, as the config says.
        let node = Node::from_config(&config(None), 0, Some(ANY_PORT)).expect("starts");
        assert!(node.mesh().keyring().is_none());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    /// Reads one datagram from `socket` with the driver's own receive path (bounded wait:
    /// loopback delivery is immediate, the retries only cover a slow machine).
    fn receive_one(socket: &UdpSocket) -> Option<(SocketAddr, Vec<u8>)> {
        let mut rx = vec![0; RECV_BUFFER * RECV_MANY];
        let mut headers = receive_headers();
        let mut batch = [Datagram {
            len: 0,
            from: None,
            arrived: Instant::now(),
            stamped: false,
        }; RECV_MANY];
        for _ in 0..100 {
            match recv_many(socket, &mut rx, &mut headers, &mut batch) {
                Ok(n) if n > 0 => return Some((batch[0].from?, rx[..batch[0].len].to_vec())),
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        None
    }

    #[test]
    fn a_wildcard_ipv6_socket_is_dual_stack_and_names_ipv4_peers_plainly() {
        let dual = bind_udp_socket("[::]:0".parse().unwrap()).expect("binds [::]");
        assert!(
            !getsockopt(&dual, sockopt::Ipv6V6Only).unwrap(),
            "IPV6_V6ONLY off"
        );
        assert_eq!(socket_families(&dual).unwrap(), Families::BOTH);
        let port = dual.local_addr().unwrap().port();
        let four = bind_udp_socket(ANY_PORT).expect("binds 127.0.0.1");
        let four_addr = four.local_addr().unwrap();

        // To an IPv4 peer, named plainly by the core: sent through the mapped form.
        let sent = send_to(&dual, Families::BOTH, true, b"to four", four_addr);
        assert!(matches!(sent, Sent::Done));
        let (from, bytes) = receive_one(&four).expect("four received");
        assert_eq!(bytes, b"to four");
        assert_eq!(from, SocketAddr::from(([127, 0, 0, 1], port)));

        // From it: the source arrives as ::ffff:127.0.0.1 and is handed on as 127.0.0.1.
        let dual_v4 = SocketAddr::from(([127, 0, 0, 1], port));
        let families = socket_families(&four).unwrap();
        assert!(matches!(
            send_to(&four, families, false, b"to dual", dual_v4),
            Sent::Done
        ));
        let (from, bytes) = receive_one(&dual).expect("dual received");
        assert_eq!(bytes, b"to dual");
        assert_eq!(from, four_addr, "plain, not ::ffff:");

        // An IPv4 socket cannot send to an IPv6 peer: refused before the kernel is asked.
        let six: SocketAddr = "[::1]:9".parse().unwrap();
        match send_to(&four, families, false, b"x", six) {
            Sent::Failed(err) => assert!(err.to_string().contains("IPv6"), "{err}"),
            _ => panic!("sent to IPv6 from an IPv4 socket"),
        }
        let warnings = family_warnings(four_addr, families, [("six", six)], true);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("peer six at [::1]:9 is IPv6"),
            "{warnings:?}"
        );
        assert!(family_warnings(four_addr, families, [("f", dual_v4)], true).is_empty());
        // Dual-stack, mixed peers, no keyring: the address check is the problem.
        let mixed = [("f", dual_v4), ("six", six)];
        let warnings = family_warnings(dual_v4, Families::BOTH, mixed, false);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("address_not_allowed"), "{warnings:?}");
        assert!(family_warnings(dual_v4, Families::BOTH, mixed, true).is_empty());
    }

    #[test]
    fn the_poll_delay_is_zero_with_unread_datagrams_and_rounds_up_to_milliseconds() {
        let mut node = Node::from_config(&config(None), 0, Some(ANY_PORT)).expect("starts");
        let now = Instant::now();
        let due = node.poll_timeout().expect("a heartbeat is due");
        let wait = node.poll_delay(now, None).expect("a delay");
        assert!(wait >= due.saturating_duration_since(now), "{wait:?}");
        assert_eq!(wait.subsec_nanos() % 1_000_000, 0, "whole milliseconds");
        let soon = now + Duration::from_micros(1500);
        assert_eq!(
            node.poll_delay(now, Some(soon)),
            Some(Duration::from_millis(2))
        );
        assert_eq!(node.poll_delay(now, Some(now)), Some(Duration::ZERO));
        node.unread = true;
        assert_eq!(node.poll_delay(now, None), Some(Duration::ZERO));
    }
}
