//! `peermesh-loadgen`: one process, one thread, that plays many peers of a mesh.
//!
//! A test and benchmark tool. Given a `peers.ron` and the names of the nodes to play, it
//! runs one [`peermesh::io::driver::Node`] per played node — each on its own UDP socket bound
//! to exactly that node's configured address (e.g. `127.0.1.x:1313`) — all registered in a
//! single `mio::Poll`. Every played node heartbeats, answers and judges liveness like a real
//! `peermesh run`, so one real node can be measured against hundreds of peers without
//! hundreds of processes.
//!
//! ```text
//! peermesh-loadgen --config PATH --play all-but:NAME        [--peers NAME,...]
//! peermesh-loadgen --config PATH --play NAME,FIRST..LAST,... [--duration-secs N] [--quiet]
//! ```
//!
//! - `--play all-but:NAME` plays every node of the config except `NAME`; otherwise a comma
//!   list of names, where `FIRST..LAST` is every node from `FIRST` to `LAST` in config order.
//! - `--peers LIST` (same syntax): the played nodes heartbeat only these nodes instead of
//!   every node of the config. With `--peers n1`, 1,000 played nodes cost 2,000 datagrams
//!   a second instead of a million, and node `n1` still sees exactly what a real mesh of
//!   1,000 peers would send it.
//! - `--duration-secs N`: stop after N seconds; without it, run until SIGINT or SIGTERM.
//!   On stopping, every played node says `Leave` to its peers, as a real node does.
//! - The config's keyring, if it names one, is loaded once and used by every played node.
//! - `--quiet`: no start-up line and only errors logged (`RUST_LOG` still wins).
//!
//! At exit one summary line goes to stdout: nodes played, seconds, datagrams sent and
//! received, send/receive errors, and how many (played node, peer) links were alive.
//!
//! Safety: it sends only what the played nodes' cores send — pings and leaves to the
//! addresses of the config, pongs back to the source of a ping that carried a configured
//! identity — and it binds only the played nodes' own addresses. A played node whose
//! address is not on this machine is an error (no wildcard fallback, unlike `peermesh run`).
#![forbid(unsafe_code)]

use clap::Parser;
use log::{debug, info};
use mio::{Events, Interest, Poll, Token};
use peermesh::config::Config;
use peermesh::core::directory::Directory;
use peermesh::core::{Mesh, Settings};
use peermesh::io::daemon::load_keyring;
use peermesh::io::driver::{new_incarnation, random_u64, Node};
use peermesh::PeerState;
use peermesh_tools::parse_args;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Token of the signal source; played node `i` has `Token(FIRST_NODE + i)`.
const SIGNALS: Token = Token(0);
const FIRST_NODE: usize = 1;

/// Plays many nodes of a mesh in one process: one UDP socket and one core per played node.
#[derive(Debug, Parser)]
#[command(name = "peermesh-loadgen")]
struct Args {
    /// the mesh config (peers.ron)
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
    /// the nodes to play: all-but:NAME (every node but NAME), or a list NAME,FIRST..LAST,...
    /// (FIRST..LAST: every node from FIRST to LAST in config order)
    #[arg(long, value_name = "all-but:NAME|LIST")]
    play: String,
    /// the played nodes heartbeat only these nodes (same syntax) [default: every node]
    #[arg(long, value_name = "LIST")]
    peers: Option<String>,
    /// stop after N seconds [default: at SIGINT/SIGTERM]
    #[arg(long = "duration-secs", value_name = "N", value_parser = seconds)]
    duration: Option<Duration>,
    /// no start-up line, only errors logged (RUST_LOG still wins)
    #[arg(long)]
    quiet: bool,
}

/// `--duration-secs`: a finite number of seconds, 0 or more.
fn seconds(value: &str) -> Result<Duration, String> {
    value
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("wants seconds, not {value:?}"))
}

/// Indices (config order, no duplicates) of the nodes `spec` names.
fn select(config: &Config, spec: &str) -> Result<Vec<usize>, String> {
    let index = |name: &str| {
        config
            .find_self(Some(name.trim()), "")
            .map_err(|_| format!("no node {:?} in the config", name.trim()))
    };
    let mut chosen = vec![false; config.nodes.len()];
    if let Some(except) = spec.strip_prefix("all-but:") {
        let skip = index(except)?;
        chosen.iter_mut().for_each(|c| *c = true);
        chosen[skip] = false;
    } else {
        for item in spec.split(',').filter(|s| !s.trim().is_empty()) {
            match item.split_once("..") {
                Some((first, last)) => {
                    let (a, b) = (index(first)?, index(last)?);
                    if a > b {
                        return Err(format!("range {item:?} runs backwards in the config"));
                    }
                    chosen[a..=b].iter_mut().for_each(|c| *c = true);
                }
                None => chosen[index(item)?] = true,
            }
        }
    }
    let picked: Vec<usize> = (0..chosen.len()).filter(|&i| chosen[i]).collect();
    if picked.is_empty() {
        return Err(format!("{spec:?} names no node"));
    }
    Ok(picked)
}

/// A played node and the deadline last pushed on the timer heap for it (older heap entries
/// for the node are stale and skipped).
struct Played {
    node: Node,
    due: Option<Instant>,
}

fn start(args: &Args) -> Result<(Vec<Played>, Settings), String> {
    let config = Config::load(&args.config).map_err(|e| e.to_string())?;
    let play = select(&config, &args.play)?;
    let peers = args
        .peers
        .as_deref()
        .map(|spec| select(&config, spec))
        .transpose()?;
    let addrs = (0..config.nodes.len())
        .map(|i| config.resolve(i))
        .collect::<Result<Vec<SocketAddr>, _>>()
        .map_err(|e| e.with_file(args.config.display().to_string()).to_string())?;
    let keyring = load_keyring(&config).map_err(|e| e.to_string())?;
    let now = Instant::now();
    // One copy of the config's lookup tables for every played core, as the simulator does:
    // 2,000 cores with tables of their own are gigabytes, and the loop falls behind.
    let directory = Directory::new(
        config
            .nodes
            .iter()
            .zip(&addrs)
            .map(|(node, &addr)| (node.name.as_str(), addr)),
    );
    let mut played = Vec::with_capacity(play.len());
    for &me in &play {
        let mut mesh = match &peers {
            None => config.mesh(me, &addrs, (new_incarnation(), random_u64()), now),
            Some(peers) => {
                let settings = config.settings(new_incarnation(), random_u64());
                let mut mesh = Mesh::new(&config.nodes[me].name, settings, now);
                for &p in peers.iter().filter(|&&p| p != me) {
                    mesh.add_peer(&config.nodes[p].name, addrs[p]);
                }
                mesh
            }
        };
        mesh.set_keyring(keyring.clone());
        mesh.share_directory(&directory);
        // Exactly the node's own address: never a wildcard, never another machine's.
        let socket = mio::net::UdpSocket::bind(addrs[me]).map_err(|e| {
            let hint = match e.kind() {
                ErrorKind::AddrNotAvailable => " (not an address of this machine)",
                ErrorKind::AddrInUse => " (is that node already running?)",
                _ => "",
            };
            format!(
                "cannot bind UDP {} for node {}: {e}{hint}",
                addrs[me], config.nodes[me].name
            )
        })?;
        played.push(Played {
            node: Node::new(mesh, socket),
            due: None,
        });
    }
    let settings = config.settings(0, 0);
    Ok((played, settings))
}

/// What the loop did, for the summary line.
#[derive(Default)]
struct Totals {
    sent: u64,
    received: u64,
    errors: u64,
    alive: usize,
    links: usize,
}

fn totals(played: &[Played]) -> Totals {
    let mut t = Totals::default();
    for p in played {
        let io = p.node.io_counters();
        t.sent += io.sent;
        t.received += io.received;
        t.errors += io.send_errors + io.recv_errors + io.send_queue_full;
        for (_, peer) in p.node.mesh().peers() {
            t.links += 1;
            t.alive += usize::from(peer.state() == PeerState::Alive);
        }
    }
    t
}

fn run(args: &Args) -> Result<(), String> {
    let (mut played, settings) = start(args)?;
    let io_err = |e: std::io::Error| format!("event loop: {e}");
    let mut poll = Poll::new().map_err(io_err)?;
    let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(io_err)?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)
        .map_err(io_err)?;
    for (i, p) in played.iter_mut().enumerate() {
        p.node
            .register(poll.registry(), Token(FIRST_NODE + i))
            .map_err(io_err)?;
    }
    if !args.quiet {
        eprintln!(
            "peermesh-loadgen: playing {} nodes, heartbeat every {:?}, {}",
            played.len(),
            settings.heartbeat_interval,
            args.duration
                .map_or("until SIGINT/SIGTERM".to_owned(), |d| format!("for {d:?}"))
        );
    }
    let started = Instant::now();
    let end = args.duration.map(|d| started + d);
    // Min-heap of (deadline, node); an entry is live only while it equals `Played::due`.
    let mut heap: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    // Nodes to run this turn (deduplicated by `marked`), and those whose socket may still
    // hold datagrams after a full receive batch (readiness is edge-triggered).
    let mut touched: Vec<usize> = (0..played.len()).collect();
    let mut marked = vec![false; played.len()];
    let mut backlog: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut stop = false;
    loop {
        // Run every touched node's timers, read what a batch left, send, reschedule.
        let now = Instant::now();
        for &i in &touched {
            marked[i] = false;
            let p = &mut played[i];
            p.node
                .handle_timeout(poll.registry(), now)
                .map_err(io_err)?;
            if p.node.has_unread() {
                backlog.push(i);
            }
            while let Some(event) = p.node.poll_event() {
                debug!("{}: {event:?}", p.node.mesh().name());
            }
            let due = p.node.poll_timeout();
            if due != p.due {
                p.due = due;
                if let Some(at) = due {
                    heap.push(Reverse((at, i)));
                }
            }
        }
        touched.clear();
        if stop || end.is_some_and(|end| Instant::now() >= end) {
            break;
        }
        let next = loop {
            match heap.peek() {
                Some(&Reverse((at, i))) if played[i].due != Some(at) => {
                    heap.pop();
                }
                Some(&Reverse((at, _))) => break Some(at),
                None => break None,
            }
        };
        let deadline = [next, end].into_iter().flatten().min();
        // Round the sleep up to a whole millisecond, as epoll does: waking early would spin.
        let timeout = if backlog.is_empty() {
            deadline.map(|at| {
                let d = at.saturating_duration_since(Instant::now());
                Duration::from_millis(d.as_micros().div_ceil(1000) as u64)
            })
        } else {
            Some(Duration::ZERO)
        };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(io_err(e));
        }
        let mut touch = |i: usize, touched: &mut Vec<usize>| {
            if !marked[i] {
                marked[i] = true;
                touched.push(i);
            }
        };
        for event in events.iter() {
            match event.token() {
                SIGNALS => {
                    for signal in signals.pending() {
                        info!("signal {signal} received: the played nodes leave");
                        stop = true;
                    }
                }
                Token(t) if (FIRST_NODE..FIRST_NODE + played.len()).contains(&t) => {
                    let i = t - FIRST_NODE;
                    played[i]
                        .node
                        .handle_event(poll.registry(), event)
                        .map_err(io_err)?;
                    touch(i, &mut touched);
                }
                token => debug!("event for unknown token {token:?} ignored"),
            }
        }
        for i in backlog.drain(..) {
            touch(i, &mut touched);
        }
        let now = Instant::now();
        while let Some(&Reverse((at, i))) = heap.peek() {
            if at > now {
                break;
            }
            heap.pop();
            if played[i].due == Some(at) {
                touch(i, &mut touched);
            }
        }
    }
    let elapsed = started.elapsed();
    let t = totals(&played);
    for p in &mut played {
        p.node.leave(poll.registry()).map_err(io_err)?;
    }
    println!(
        "peermesh-loadgen: played {} nodes for {:.1} s: sent {} datagrams, received {} \
         ({} errors); {}/{} peer links alive",
        played.len(),
        elapsed.as_secs_f64(),
        t.sent,
        t.received,
        t.errors,
        t.alive,
        t.links
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Args = parse_args();
    let level = if args.quiet { "error" } else { "warn" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_target(false)
        .init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
