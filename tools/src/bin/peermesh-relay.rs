//! `peermesh-relay`: a test tool that puts a known delay (and, if asked, jitter and loss)
//! on UDP paths on loopback, and measures the delay it really applied.
//!
//! ```text
//! peermesh-relay --listen 127.0.0.X:P --to 127.0.0.Y:Q --delay-ms D
//!                [--jitter-ms J] [--loss P] [--secs S] [--seed N] [--stats FILE]
//! peermesh-relay --node NAME,LISTEN,REAL ... [--path FROM,TO,MS ...] [--delay-ms D]
//!                [--jitter-ms J] [--loss P] [--secs S] [--seed N] [--stats FILE]
//! ```
//!
//! **Pair mode** (`--listen`, `--to`). The first address other than `--to` that sends to
//! `--listen` becomes the client; from then on its datagrams go to `--to` and the datagrams
//! `--to` sends back go to the client, each D ms (uniform in D ± J, never below 0) after
//! it arrived, or dropped with probability P (`0.05` or `5%`). The relay sends from
//! `--listen` in both directions, so `--to` sees the relay as the sender and answers it.
//!
//! **Mesh mode** (`--node`, repeated). Each node is listed at its LISTEN address in the
//! mesh's config and runs with `peermesh run --bind REAL`. The relay listens on every
//! LISTEN address; a datagram that node A (from REAL_A) sends to LISTEN_B goes to REAL_B
//! from LISTEN_A after the delay of the directed path A→B (`--path A,B,MS`, else
//! `--delay-ms`). B so sees A's own configured address as the source, answers it, and the
//! answer takes the path B→A: every directed path between the nodes has its own fixed
//! delay, and the mesh needs no keyring.
//!
//! In both modes datagrams from any other address are dropped and counted. After S seconds
//! (default 60, at most 3600) the relay prints what it did to stdout and exits. It only
//! ever uses loopback addresses.
//!
//! **Timing.** Each datagram's arrival is the kernel's receive timestamp (`SO_TIMESTAMPNS`),
//! so the time the datagram waited in the relay's socket is part of its delay, not added to
//! it. The sender thread keeps a heap ordered by due time (arrival + delay), sleeps until
//! shortly before the earliest and spins the last [`SPIN`] on the clock. Just before each
//! `sendto` it reads the wall clock: *applied delay* = that reading − the kernel's arrival
//! stamp, both on the same clock. That is the delay the datagram really had inside the
//! relay, late sends included, and what a test compares a mesh's RTTs with. Per path, the
//! summary (and the `--stats` file, rewritten every second) gives the count and the applied
//! delay's median over the whole run and over the last [`RECENT`] datagrams.
//!
//! **Round trips.** The relay reads plain peermesh datagrams (a sealed one is opaque to
//! it): it pairs each ping with the pong that answers it and records the round trip the
//! prober's RTT should read, the ping's applied delay plus the pong's. Per path (named for
//! the prober and target of the pings it carries), the stats list the last [`TRIPS_LISTED`]
//! round trips. Compare a node's RTT median with the median of *these*, not with the sum
//! of the two paths' medians: when the relay is late on a share of its sends (a burst of
//! datagrams due at once, a busy machine), the median of the sums is later than the sum of
//! the medians, by up to the lateness itself.
//!
//! SIGTERM or SIGINT ends the run early, as `--secs` does: the summary and the stats file
//! are written, exit 0.
#![forbid(unsafe_code)]

use clap::Parser;
use mio::{Events, Interest, Poll, Token};
use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
};
use peermesh::core::rng::Rng;
use peermesh::wire::{Body, Packet};
use peermesh_tools::{loopback_addr, parse_args, usage_error};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::{ErrorKind, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long before a datagram's due time the sender stops sleeping and spins on the clock:
/// more than the kernel's default timer slack (50 µs) plus a wake-up.
const SPIN: Duration = Duration::from_micros(200);
/// How often the receiver looks up from quiet sockets to see whether it should stop.
const RECV_TICK: Duration = Duration::from_millis(50);
/// How often the `--stats` file is rewritten.
const STATS_EVERY: Duration = Duration::from_secs(1);
/// Datagrams held at once; more are dropped and counted (memory stays bounded).
const MAX_PENDING: usize = 65_536;
/// Applied delays kept per path for the whole-run median; later ones are counted only.
const MAX_SAMPLES: usize = 1 << 20;
/// The "recent" median of a path is over its last this many datagrams: a node's RTT median
/// covers its last 64 round trips, and each one crosses a path in each direction with a
/// ping and with a pong (the other node's probes), so 128 datagrams per path.
const RECENT: usize = 128;
/// Round trips listed per path in the stats: a node's RTT window (64) and two more, so a
/// reader can line the list up with a row refreshed an interval or two earlier.
const TRIPS_LISTED: usize = 66;
/// Pings forwarded and not yet answered, remembered to pair with their pongs; past this
/// many the oldest are forgotten.
const MAX_OPEN: usize = 65_536;
/// The longest run accepted, in seconds.
const MAX_SECS: f64 = 3600.0;
/// The longest delay accepted, in milliseconds.
const MAX_DELAY_MS: f64 = 10_000.0;
/// Most nodes in mesh mode.
const MAX_NODES: usize = 64;

/// Puts a known delay (and jitter and loss, if asked) on UDP paths on loopback, between a
/// client and `--to` or between every pair of `--node`s; measures the delay it applied.
#[derive(Debug, Parser)]
#[command(name = "peermesh-relay")]
struct Args {
    /// pair mode: the loopback address to listen on (the client sends here)
    #[arg(long, value_name = "ADDR:PORT", value_parser = loopback_addr, requires = "to",
          required_unless_present = "node", conflicts_with = "node")]
    listen: Option<SocketAddr>,
    /// pair mode: the loopback address to relay to
    #[arg(long, value_name = "ADDR:PORT", value_parser = loopback_addr, requires = "listen")]
    to: Option<SocketAddr>,
    /// mesh mode: a node, listed in the mesh's config at LISTEN and bound to REAL (repeat)
    #[arg(long, value_name = "NAME,LISTEN,REAL", value_parser = mesh_node)]
    node: Vec<MeshNode>,
    /// mesh mode: the one-way delay of the directed path FROM→TO, in ms (repeat)
    #[arg(long, value_name = "FROM,TO,MS", value_parser = mesh_path, requires = "node")]
    path: Vec<PathDelay>,
    /// the delay each way (mesh mode: of every path without --path), in ms (0 to 10000)
    #[arg(long = "delay-ms", value_name = "D", value_parser = millis,
          required_unless_present = "path")]
    delay: Option<Duration>,
    /// jitter: each delay uniform in D ± J, never below 0
    #[arg(long = "jitter-ms", value_name = "J", default_value = "0", value_parser = millis)]
    jitter: Duration,
    /// the probability a datagram is dropped: 0.05 or 5%
    #[arg(long, value_name = "P", default_value = "0", value_parser = probability)]
    loss: f64,
    /// how long to run, in seconds (above 0, at most 3600)
    #[arg(long, value_name = "S", default_value = "60", value_parser = seconds)]
    secs: f64,
    /// the seed of the jitter and loss draws [default: the process id]
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// write per-path counts and applied delays to FILE, every second and at the end
    #[arg(long, value_name = "FILE")]
    stats: Option<PathBuf>,
}

/// `--node NAME,LISTEN,REAL`.
#[derive(Clone, Debug)]
struct MeshNode {
    name: String,
    listen: SocketAddr,
    real: SocketAddr,
}

/// `--path FROM,TO,MS`.
#[derive(Clone, Debug)]
struct PathDelay {
    from: String,
    to: String,
    delay: Duration,
}

fn mesh_node(value: &str) -> Result<MeshNode, String> {
    let parts: Vec<&str> = value.split(',').collect();
    let [name, listen, real] = parts[..] else {
        return Err(format!("wants NAME,LISTEN,REAL, not {value:?}"));
    };
    if name.is_empty() {
        return Err(format!("wants a non-empty NAME, not {value:?}"));
    }
    Ok(MeshNode {
        name: name.to_owned(),
        listen: loopback_addr(listen)?,
        real: loopback_addr(real)?,
    })
}

fn mesh_path(value: &str) -> Result<PathDelay, String> {
    let parts: Vec<&str> = value.split(',').collect();
    let [from, to, ms] = parts[..] else {
        return Err(format!("wants FROM,TO,MS, not {value:?}"));
    };
    Ok(PathDelay {
        from: from.to_owned(),
        to: to.to_owned(),
        delay: millis(ms)?,
    })
}

/// `--delay-ms`, `--jitter-ms`: 0 to [`MAX_DELAY_MS`] milliseconds.
fn millis(value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|ms| (0.0..=MAX_DELAY_MS).contains(ms))
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .ok_or_else(|| format!("wants milliseconds from 0 to {MAX_DELAY_MS}, not {value:?}"))
}

/// `--loss`: 0 to 1, or 0% to 100%.
fn probability(value: &str) -> Result<f64, String> {
    let (number, scale) = match value.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (value, 1.0),
    };
    number
        .parse::<f64>()
        .ok()
        .map(|p| p / scale)
        .filter(|p| (0.0..=1.0).contains(p))
        .ok_or_else(|| format!("wants 0..1 (or 0%..100%), not {value:?}"))
}

/// `--secs`: above 0, at most [`MAX_SECS`].
fn seconds(value: &str) -> Result<f64, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0 && *s <= MAX_SECS)
        .ok_or_else(|| format!("wants seconds above 0 and at most {MAX_SECS}, not {value:?}"))
}

/// Where datagrams go: which socket they arrive on and from whom decides the path.
enum Topology {
    /// One socket; the client is learned from the first stranger that sends.
    Pair {
        to: SocketAddr,
        client: Option<SocketAddr>,
    },
    /// Socket `j` is node `j`'s listen address; node `i` sends from its real address.
    Mesh { nodes: Vec<MeshNode> },
}

/// One directed path: its name, its delay and what went over it.
struct PathInfo {
    name: String,
    delay: Duration,
}

/// Where one datagram goes: out of which socket, to whom, over which path.
struct Route {
    socket: usize,
    dst: SocketAddr,
    path: usize,
}

/// Why a datagram was not routed.
enum Unrouted {
    /// From an address the relay does not serve.
    Stranger,
    /// From `--to` before any client is known.
    NoClient,
}

impl Topology {
    /// The route of a datagram that arrived on socket `socket` from `from`.
    fn route(&mut self, socket: usize, from: SocketAddr) -> Result<Route, Unrouted> {
        match self {
            Topology::Pair { to, client } => {
                if from == *to {
                    let dst = client.ok_or(Unrouted::NoClient)?;
                    return Ok(Route {
                        socket: 0,
                        dst,
                        path: 1,
                    });
                }
                match client {
                    Some(c) if *c != from => Err(Unrouted::Stranger),
                    _ => {
                        if client.is_none() {
                            eprintln!("peermesh-relay: client is {from}");
                            *client = Some(from);
                        }
                        Ok(Route {
                            socket: 0,
                            dst: *to,
                            path: 0,
                        })
                    }
                }
            }
            Topology::Mesh { nodes } => {
                let sender = nodes
                    .iter()
                    .position(|n| n.real == from)
                    .filter(|&i| i != socket)
                    .ok_or(Unrouted::Stranger)?;
                let dst = nodes.get(socket).ok_or(Unrouted::Stranger)?.real;
                Ok(Route {
                    socket: sender,
                    dst,
                    path: sender * nodes.len() + socket,
                })
            }
        }
    }
}

/// A ping or pong of a round trip: the prober, the target, the probe number and the
/// prober's send time the ping carries and the pong echoes. Read from plain datagrams only
/// (a sealed one is opaque to the relay).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Probe {
    prober: u64,
    target: u64,
    probe: u32,
    sent_ns: u64,
}

/// What the relay recognised in a datagram.
#[derive(Clone, Copy)]
enum Kind {
    Ping(Probe),
    Pong(Probe),
    Other,
}

fn kind_of(bytes: &[u8]) -> Kind {
    let Ok(packet) = Packet::parse(bytes) else {
        return Kind::Other;
    };
    let h = packet.header;
    match packet.body {
        Body::Ping { probe, sent_ns, .. } => Kind::Ping(Probe {
            prober: h.from.0,
            target: h.to.0,
            probe,
            sent_ns,
        }),
        Body::Pong { probe, echo_ns, .. } => Kind::Pong(Probe {
            prober: h.to.0,
            target: h.from.0,
            probe,
            sent_ns: echo_ns,
        }),
        _ => Kind::Other,
    }
}

/// A datagram waiting for its due time; the heap pops the earliest (then the oldest).
struct Pending {
    kind: Kind,
    due: Instant,
    order: u64,
    /// The kernel's arrival stamp (wall clock), or the time of reading without one.
    arrived: SystemTime,
    route: Route,
    bytes: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: `BinaryHeap` is a max-heap and the earliest must come out first.
        (other.due, other.order).cmp(&(self.due, self.order))
    }
}

/// What the receiver counted.
#[derive(Default)]
struct RecvCounts {
    to_target: u64,
    to_client: u64,
    lost: u64,
    strangers: u64,
    unrouted: u64,
    overflow: u64,
    errors: u64,
    /// Datagrams that came without a kernel timestamp (their arrival is the reading).
    unstamped: u64,
}

/// The applied delays of one path.
#[derive(Default, Clone)]
struct PathStats {
    forwarded: u64,
    /// Round trips of the probes the path's sender sent over it: the applied delay of the
    /// ping plus that of its pong on the path back (what the prober's RTT should read).
    round_trips: u64,
    /// The last [`TRIPS_LISTED`] of those round trips, in nanoseconds, oldest first.
    trips: VecDeque<u64>,
    /// Applied delays in nanoseconds, the first [`MAX_SAMPLES`].
    all: Vec<u64>,
    /// The last [`RECENT`] applied delays.
    recent: VecDeque<u64>,
    max_late: Duration,
}

/// What the sender counted.
#[derive(Default)]
struct SendCounts {
    sent: u64,
    errors: u64,
    late_sum: Duration,
    late_max: Duration,
    late_over_100us: u64,
    paths: Vec<PathStats>,
    /// Pings forwarded, awaiting their pongs: the ping's path and applied delay (ns).
    open: HashMap<Probe, (usize, u64)>,
}

struct Shared {
    queue: Mutex<BinaryHeap<Pending>>,
    wake: Condvar,
    stop: AtomicBool,
    sent: Mutex<SendCounts>,
}

/// The kernel's arrival stamp of a datagram, from its `SO_TIMESTAMPNS` control message.
fn kernel_stamp(cmsgs: impl Iterator<Item = ControlMessageOwned>) -> Option<SystemTime> {
    for c in cmsgs {
        if let ControlMessageOwned::ScmTimestampns(ts) = c {
            let secs = u64::try_from(ts.tv_sec()).ok()?;
            let nanos = u32::try_from(ts.tv_nsec()).ok()?.min(999_999_999);
            return Some(UNIX_EPOCH + Duration::new(secs, nanos));
        }
    }
    None
}

/// Reads datagrams until told to stop, routes them and queues each with its due time.
fn receive(
    sockets: Vec<mio::net::UdpSocket>,
    mut topology: Topology,
    paths: &[PathInfo],
    args: &Args,
    shared: &Shared,
) -> RecvCounts {
    let mut counts = RecvCounts::default();
    let mut rng = Rng::new(args.seed.unwrap_or_else(|| u64::from(std::process::id())));
    let mut buf = vec![0u8; 65_536];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let mut order = 0u64;
    let jitter_ns = args.jitter.as_nanos() as u64;
    let Ok(mut poll) = Poll::new() else {
        counts.errors += 1;
        return counts;
    };
    let mut sockets = sockets;
    for (i, socket) in sockets.iter_mut().enumerate() {
        if poll
            .registry()
            .register(socket, Token(i), Interest::READABLE)
            .is_err()
        {
            counts.errors += 1;
        }
    }
    let mut events = Events::with_capacity(64);
    while !shared.stop.load(AtomicOrdering::Relaxed) {
        if let Err(e) = poll.poll(&mut events, Some(RECV_TICK)) {
            if e.kind() != ErrorKind::Interrupted {
                counts.errors += 1;
            }
            continue;
        }
        for event in events.iter() {
            let index = event.token().0;
            let Some(socket) = sockets.get(index) else {
                continue;
            };
            // Edge-triggered: drain until WouldBlock.
            loop {
                let mut iov = [IoSliceMut::new(&mut buf)];
                let got = recvmsg::<SockaddrStorage>(
                    socket.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::empty(),
                );
                let msg = match got {
                    Ok(msg) => msg,
                    Err(nix::errno::Errno::EAGAIN) => break,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => {
                        // E.g. ECONNREFUSED left by an earlier send to a port nobody
                        // listens on.
                        counts.errors += 1;
                        continue;
                    }
                };
                // The wall clock first: the gap between the two readings then makes the
                // arrival's `Instant` a little late, never early, so no datagram is sent
                // before its delay has passed on the clock its applied delay is measured on.
                let wall = SystemTime::now();
                let read_at = Instant::now();
                let n = msg.bytes;
                let stamp = msg.cmsgs().ok().and_then(kernel_stamp);
                let from = msg.address.as_ref().and_then(|a| {
                    a.as_sockaddr_in()
                        .map(|v4| SocketAddr::V4((*v4).into()))
                        .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into())))
                });
                let Some(from) = from else {
                    counts.errors += 1;
                    continue;
                };
                let (arrived_wall, arrived) = match stamp {
                    Some(stamp) => {
                        // How long ago the kernel stamped it, stepped back on the monotonic
                        // clock (bounded: clocks can jump).
                        let ago = wall
                            .duration_since(stamp)
                            .unwrap_or_default()
                            .min(Duration::from_secs(1));
                        (stamp, read_at.checked_sub(ago).unwrap_or(read_at))
                    }
                    None => {
                        counts.unstamped += 1;
                        (wall, read_at)
                    }
                };
                let route = match topology.route(index, from) {
                    Ok(route) => route,
                    Err(Unrouted::Stranger) => {
                        counts.strangers += 1;
                        continue;
                    }
                    Err(Unrouted::NoClient) => {
                        counts.unrouted += 1;
                        continue;
                    }
                };
                match (&topology, route.path) {
                    (Topology::Pair { .. }, 1) => counts.to_client += 1,
                    _ => counts.to_target += 1,
                }
                if rng.chance(args.loss) {
                    counts.lost += 1;
                    continue;
                }
                let mut delay = paths.get(route.path).map_or(Duration::ZERO, |p| p.delay);
                if jitter_ns > 0 {
                    let offset = rng.below(2 * jitter_ns + 1);
                    delay = (delay + Duration::from_nanos(offset)).saturating_sub(args.jitter);
                }
                let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
                if queue.len() >= MAX_PENDING {
                    counts.overflow += 1;
                    continue;
                }
                order += 1;
                queue.push(Pending {
                    kind: kind_of(&buf[..n]),
                    due: arrived + delay,
                    order,
                    arrived: arrived_wall,
                    route,
                    bytes: buf[..n].to_vec(),
                });
                drop(queue);
                shared.wake.notify_one();
            }
        }
    }
    counts
}

/// Sends `bytes` to `dst`, retrying briefly while the socket would block.
fn send_now(socket: &UdpSocket, bytes: &[u8], dst: SocketAddr) -> bool {
    for _ in 0..1000 {
        match socket.send_to(bytes, dst) {
            Ok(_) => return true,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                std::hint::spin_loop()
            }
            Err(_) => return false,
        }
    }
    false
}

/// Sends each queued datagram at its due time until `end` or until `term` is set (SIGTERM),
/// recording the applied delays.
fn send(sockets: &[UdpSocket], shared: &Shared, end: Instant, term: &AtomicBool) {
    let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = Instant::now();
        if now >= end || term.load(AtomicOrdering::Relaxed) {
            return;
        }
        let Some(next) = queue.peek() else {
            let wait = end.saturating_duration_since(now).min(RECV_TICK);
            queue = shared
                .wake
                .wait_timeout(queue, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        };
        let due = next.due;
        if due > now + SPIN {
            // Sleep until shortly before it is due; a newer, earlier datagram wakes us.
            let wait = (due - now - SPIN).min(end.saturating_duration_since(now));
            queue = shared
                .wake
                .wait_timeout(queue, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        let Some(item) = queue.pop() else { continue };
        drop(queue);
        let mut now = Instant::now();
        while now < item.due {
            std::hint::spin_loop();
            now = Instant::now();
        }
        let late = now - item.due;
        // The wall clock just before the send, against the kernel's arrival stamp on the
        // same clock: the delay the datagram really had here.
        let applied = SystemTime::now()
            .duration_since(item.arrived)
            .unwrap_or_default();
        let ok = sockets
            .get(item.route.socket)
            .is_some_and(|s| send_now(s, &item.bytes, item.route.dst));
        let mut counts = shared.sent.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            counts.sent += 1;
            counts.late_sum += late;
            counts.late_max = counts.late_max.max(late);
            if late > Duration::from_micros(100) {
                counts.late_over_100us += 1;
            }
            if let Some(path) = counts.paths.get_mut(item.route.path) {
                let ns = u64::try_from(applied.as_nanos()).unwrap_or(u64::MAX);
                path.forwarded += 1;
                if path.all.len() < MAX_SAMPLES {
                    path.all.push(ns);
                }
                if path.recent.len() == RECENT {
                    path.recent.pop_front();
                }
                path.recent.push_back(ns);
                path.max_late = path.max_late.max(late);
            }
            let ns = u64::try_from(applied.as_nanos()).unwrap_or(u64::MAX);
            match item.kind {
                Kind::Ping(probe) => {
                    if counts.open.len() >= MAX_OPEN {
                        counts.open.clear();
                    }
                    counts.open.insert(probe, (item.route.path, ns));
                }
                Kind::Pong(probe) => {
                    if let Some((path, there)) = counts.open.remove(&probe) {
                        if let Some(stats) = counts.paths.get_mut(path) {
                            stats.round_trips += 1;
                            if stats.trips.len() == TRIPS_LISTED {
                                stats.trips.pop_front();
                            }
                            stats.trips.push_back(there.saturating_add(ns));
                        }
                    }
                }
                Kind::Other => {}
            }
        } else {
            counts.errors += 1;
        }
        drop(counts);
        queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
    }
}

/// The median of `ns` in microseconds (the mean of the middle two for an even count).
fn median_us(ns: impl Iterator<Item = u64>) -> Option<f64> {
    let mut v: Vec<u64> = ns.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let mid = v.len() / 2;
    let m = if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) as f64 / 2.0
    } else {
        v[mid] as f64
    };
    Some(m / 1000.0)
}

/// One line per path: `path NAME delay_us D forwarded N applied_p50_us X applied_min_us X
/// applied_max_us X recent_p50_us X max_late_us X round_trips N trips_us A,B,...` (a `-`
/// where there is no sample; `trips_us` lists the last round trips, oldest first).
fn stats_text(paths: &[PathInfo], counts: &SendCounts) -> String {
    let mut text = String::new();
    let fmt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    for (info, stats) in paths.iter().zip(&counts.paths) {
        if info.name.is_empty() {
            continue;
        }
        let min = stats.all.iter().min().map(|&ns| ns as f64 / 1000.0);
        let max = stats.all.iter().max().map(|&ns| ns as f64 / 1000.0);
        let _ = writeln!(
            text,
            "path {} delay_us {:.1} forwarded {} applied_p50_us {} applied_min_us {} \
             applied_max_us {} recent_p50_us {} max_late_us {} round_trips {} trips_us {}",
            info.name,
            info.delay.as_secs_f64() * 1e6,
            stats.forwarded,
            fmt(median_us(stats.all.iter().copied())),
            fmt(min),
            fmt(max),
            fmt(median_us(stats.recent.iter().copied())),
            stats.max_late.as_micros(),
            stats.round_trips,
            if stats.trips.is_empty() {
                "-".to_owned()
            } else {
                let list: Vec<String> = stats
                    .trips
                    .iter()
                    .map(|&ns| format!("{:.1}", ns as f64 / 1000.0))
                    .collect();
                list.join(",")
            },
        );
    }
    text
}

/// Writes the stats to `file` whole (a temporary file renamed over it).
fn write_stats(file: &std::path::Path, text: &str) {
    let tmp = file.with_extension("tmp");
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, file);
    }
}

/// The paths of a topology (an empty name: a slot no datagram can take).
fn paths_of(args: &Args, topology: &Topology) -> Result<Vec<PathInfo>, String> {
    let default = args.delay;
    match topology {
        Topology::Pair { .. } => {
            let delay = default.unwrap_or_default();
            Ok(vec![
                PathInfo {
                    name: "client->target".to_owned(),
                    delay,
                },
                PathInfo {
                    name: "target->client".to_owned(),
                    delay,
                },
            ])
        }
        Topology::Mesh { nodes } => {
            let n = nodes.len();
            let index = |name: &str| {
                nodes
                    .iter()
                    .position(|node| node.name == name)
                    .ok_or_else(|| format!("--path names {name:?}, which no --node is"))
            };
            let mut given: Vec<Option<Duration>> = vec![None; n * n];
            for p in &args.path {
                let (i, j) = (index(&p.from)?, index(&p.to)?);
                if i == j {
                    return Err(format!("--path {0},{0}: a path needs two nodes", p.from));
                }
                given[i * n + j] = Some(p.delay);
            }
            let mut paths = Vec::with_capacity(n * n);
            for i in 0..n {
                for j in 0..n {
                    if i == j {
                        paths.push(PathInfo {
                            name: String::new(),
                            delay: Duration::ZERO,
                        });
                        continue;
                    }
                    let delay = given[i * n + j].or(default).ok_or_else(|| {
                        format!(
                            "no delay for the path {}->{}: give --path or --delay-ms",
                            nodes[i].name, nodes[j].name
                        )
                    })?;
                    paths.push(PathInfo {
                        name: format!("{}->{}", nodes[i].name, nodes[j].name),
                        delay,
                    });
                }
            }
            Ok(paths)
        }
    }
}

/// The topology and the addresses to listen on, or a usage error.
fn topology_of(args: &Args) -> Result<(Topology, Vec<SocketAddr>), String> {
    if let (Some(listen), Some(to)) = (args.listen, args.to) {
        if listen == to {
            return Err("--listen and --to must differ".to_owned());
        }
        return Ok((Topology::Pair { to, client: None }, vec![listen]));
    }
    let nodes = args.node.clone();
    if nodes.len() < 2 || nodes.len() > MAX_NODES {
        return Err(format!(
            "mesh mode wants 2 to {MAX_NODES} --node, not {}",
            nodes.len()
        ));
    }
    for (i, a) in nodes.iter().enumerate() {
        if a.listen == a.real {
            return Err(format!("--node {}: LISTEN and REAL must differ", a.name));
        }
        for b in &nodes[i + 1..] {
            if a.name == b.name {
                return Err(format!("--node {} is given twice", a.name));
            }
            let taken = [a.listen, a.real];
            if taken.contains(&b.listen) || taken.contains(&b.real) {
                return Err(format!("--node {} and {} share an address", a.name, b.name));
            }
        }
    }
    let listen = nodes.iter().map(|n| n.listen).collect();
    Ok((Topology::Mesh { nodes }, listen))
}

fn main() -> ExitCode {
    let args: Args = parse_args();
    let (topology, listen) = match topology_of(&args) {
        Ok(t) => t,
        Err(e) => usage_error::<Args>(e),
    };
    let paths = match paths_of(&args, &topology) {
        Ok(p) => p,
        Err(e) => usage_error::<Args>(e),
    };
    let mut senders = Vec::with_capacity(listen.len());
    let mut readers = Vec::with_capacity(listen.len());
    for addr in &listen {
        let socket = match UdpSocket::bind(addr) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: bind {addr}: {e}");
                return ExitCode::from(1);
            }
        };
        if let Err(e) = setsockopt(&socket, sockopt::ReceiveTimestampns, &true) {
            eprintln!("peermesh-relay: no kernel receive timestamps on {addr} ({e})");
        }
        let _ = setsockopt(&socket, sockopt::RcvBuf, &(4usize << 20));
        let reader = match socket
            .try_clone()
            .and_then(|r| r.set_nonblocking(true).map(|()| r))
        {
            Ok(r) => mio::net::UdpSocket::from_std(r),
            Err(e) => {
                eprintln!("error: socket: {e}");
                return ExitCode::from(1);
            }
        };
        senders.push(socket);
        readers.push(reader);
    }
    let default = args.delay.unwrap_or_default();
    eprintln!(
        "peermesh-relay: {} path(s) on {} socket(s), delay {:?} ± {:?}, loss {}, for {} s",
        paths.iter().filter(|p| !p.name.is_empty()).count(),
        listen.len(),
        default,
        args.jitter,
        args.loss,
        args.secs
    );
    let shared = Arc::new(Shared {
        queue: Mutex::new(BinaryHeap::new()),
        wake: Condvar::new(),
        stop: AtomicBool::new(false),
        sent: Mutex::new(SendCounts {
            paths: vec![PathStats::default(); paths.len()],
            ..SendCounts::default()
        }),
    });
    // SIGTERM ends the run early, as `--secs` does: the summary and the stats are written.
    let term = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, term.clone()) {
            eprintln!("peermesh-relay: cannot handle signal {signal}: {e}");
        }
    }
    let end = Instant::now() + Duration::from_secs_f64(args.secs);
    let received = std::thread::scope(|scope| {
        let receiver = scope.spawn(|| receive(readers, topology, &paths, &args, &shared));
        let writer = args.stats.as_ref().map(|file| {
            let (shared, paths) = (&shared, &paths);
            scope.spawn(move || {
                while !shared.stop.load(AtomicOrdering::Relaxed) {
                    std::thread::sleep(STATS_EVERY);
                    let text = {
                        let counts = shared.sent.lock().unwrap_or_else(|e| e.into_inner());
                        stats_text(paths, &counts)
                    };
                    write_stats(file, &text);
                }
            })
        });
        send(&senders, &shared, end, &term);
        shared.stop.store(true, AtomicOrdering::Relaxed);
        if let Some(writer) = writer {
            let _ = writer.join();
        }
        receiver.join().unwrap_or_default()
    });
    let r = received;
    let s = shared.sent.lock().unwrap_or_else(|e| e.into_inner());
    let text = stats_text(&paths, &s);
    if let Some(file) = &args.stats {
        write_stats(file, &text);
    }
    let held = shared.queue.lock().map_or(0, |q| q.len());
    let mean_late_us = if s.sent > 0 {
        s.late_sum.as_secs_f64() * 1e6 / s.sent as f64
    } else {
        0.0
    };
    let name = match (args.listen, args.to) {
        (Some(l), Some(t)) => format!("{l} <-> {t}"),
        _ => format!("mesh of {}", args.node.len()),
    };
    println!(
        "relay {name}: {} to target, {} to client, sent {}, lost {}, strangers {}, \
         unrouted {}, overflow {}, still held {held}, send errors {}, recv errors {}, \
         unstamped {}; late mean {mean_late_us:.1} us, max {} us, {} over 100 us",
        r.to_target,
        r.to_client,
        s.sent,
        r.lost,
        r.strangers,
        r.unrouted,
        r.overflow,
        s.errors,
        r.errors,
        r.unstamped,
        s.late_max.as_micros(),
        s.late_over_100us
    );
    print!("{text}");
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn node(name: &str, listen: u16, real: u16) -> MeshNode {
        MeshNode {
            name: name.to_owned(),
            listen: addr(listen),
            real: addr(real),
        }
    }

    #[test]
    fn in_mesh_mode_a_datagram_goes_out_of_its_senders_socket_to_the_real_receiver() {
        let mut mesh = Topology::Mesh {
            nodes: vec![node("a", 1, 11), node("b", 2, 12), node("c", 3, 13)],
        };
        // a (from 11) sends to b's listen socket (1): out of a's socket (0) to b's real 12.
        let Ok(route) = mesh.route(1, addr(11)) else {
            panic!("not routed")
        };
        assert_eq!((route.socket, route.dst, route.path), (0, addr(12), 1));
        // c answers a on a's listen socket (0): out of c's socket (2), path c->a.
        let Ok(route) = mesh.route(0, addr(13)) else {
            panic!("not routed")
        };
        assert_eq!((route.socket, route.dst, route.path), (2, addr(11), 2 * 3));
        // A node sending to its own listen address, or a stranger: not routed.
        assert!(matches!(mesh.route(0, addr(11)), Err(Unrouted::Stranger)));
        assert!(matches!(mesh.route(0, addr(99)), Err(Unrouted::Stranger)));
    }

    #[test]
    fn in_pair_mode_the_first_stranger_is_the_client_and_no_other() {
        let mut pair = Topology::Pair {
            to: addr(2),
            client: None,
        };
        assert!(matches!(pair.route(0, addr(2)), Err(Unrouted::NoClient)));
        let Ok(route) = pair.route(0, addr(7)) else {
            panic!("not routed")
        };
        assert_eq!((route.dst, route.path), (addr(2), 0));
        let Ok(route) = pair.route(0, addr(2)) else {
            panic!("not routed")
        };
        assert_eq!((route.dst, route.path), (addr(7), 1));
        assert!(matches!(pair.route(0, addr(8)), Err(Unrouted::Stranger)));
    }

    #[test]
    fn medians_and_node_and_path_flags() {
        assert_eq!(median_us([3000, 1000, 2000].into_iter()), Some(2.0));
        assert_eq!(median_us([1000, 2000].into_iter()), Some(1.5));
        assert_eq!(median_us(std::iter::empty()), None);
        assert!(mesh_node("a,127.0.0.1:1,127.0.0.2:1").is_ok());
        assert!(mesh_node("a,10.0.0.1:1,127.0.0.2:1").is_err());
        assert!(mesh_node(",127.0.0.1:1,127.0.0.2:1").is_err());
        assert!(mesh_node("a,127.0.0.1:1").is_err());
        let path = mesh_path("a,b,13.5").expect("a path");
        assert_eq!(path.delay, Duration::from_micros(13_500));
        assert!(mesh_path("a,b,-1").is_err());
    }
}
