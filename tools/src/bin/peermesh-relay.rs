//! `peermesh-relay`: a test tool that puts a known delay (and, if asked, jitter and loss)
//! on the UDP path between two endpoints on loopback, both ways.
//!
//! ```text
//! peermesh-relay --listen 127.0.0.X:P --to 127.0.0.Y:Q --delay-ms D
//!                [--jitter-ms J] [--loss P] [--secs S] [--seed N]
//! ```
//! The first address other than `--to` that sends to `--listen` becomes the client; from
//! then on its datagrams go to `--to` and the datagrams `--to` sends back go to the client,
//! each D ms (uniform in D ± J, never below 0) after the relay read it, or dropped with
//! probability P (`0.05` or `5%`). The relay sends from `--listen` in both directions, so
//! `--to` sees the relay as the sender and answers it. Datagrams from any third address are
//! dropped and counted. After S seconds (default 60, at most 3600) it prints what it did to
//! stdout and exits. It only ever uses loopback addresses.
//!
//! Timing: a receiver thread stamps each datagram with the monotonic clock as it reads it;
//! the main thread keeps a heap ordered by due time, sleeps until shortly before the
//! earliest and spins the last [`SPIN`] on the clock, so a datagram leaves within a few
//! microseconds of its due time on an idle machine. The summary reports how late sends were.
//!
//! Between two peermesh nodes (see `bench/rtt.sh`): one relay in front of each node, the
//! config listing every node at its relay's address, and each node run with
//! `--bind` its real address. Node A then sends to B's relay, which forwards to B; B
//! answers the source, B's relay, which forwards back to A. The nodes see the relays' IPs as
//! sources, so the mesh needs a keyring (without one only configured peer IPs are accepted).
#![forbid(unsafe_code)]

use clap::Parser;
use peermesh::core::rng::Rng;
use peermesh_tools::{loopback_addr, parse_args, usage_error};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long before a datagram's due time the sender stops sleeping and spins on the clock:
/// more than the kernel's default timer slack (50 µs) plus a wake-up.
const SPIN: Duration = Duration::from_micros(200);
/// How often the receiver looks up from a quiet socket to see whether it should stop.
const RECV_TICK: Duration = Duration::from_millis(50);
/// Datagrams held at once; more are dropped and counted (memory stays bounded).
const MAX_PENDING: usize = 65_536;
/// The longest run accepted, in seconds.
const MAX_SECS: f64 = 3600.0;
/// The longest delay accepted, in milliseconds.
const MAX_DELAY_MS: f64 = 10_000.0;

/// Puts a known delay (and jitter and loss, if asked) on the UDP path between a client and
/// `--to`, both ways, on loopback; after `--secs` prints what it did.
#[derive(Debug, Parser)]
#[command(name = "peermesh-relay")]
struct Args {
    /// the loopback address to listen on (the client sends here)
    #[arg(long, value_name = "ADDR:PORT", value_parser = loopback_addr)]
    listen: SocketAddr,
    /// the loopback address to relay to
    #[arg(long, value_name = "ADDR:PORT", value_parser = loopback_addr)]
    to: SocketAddr,
    /// the delay each way, in milliseconds (0 to 10000)
    #[arg(long = "delay-ms", value_name = "D", value_parser = millis)]
    delay: Duration,
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

/// A datagram waiting for its due time; the heap pops the earliest (then the oldest).
struct Pending {
    due: Instant,
    order: u64,
    dst: SocketAddr,
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
}

struct Shared {
    queue: Mutex<BinaryHeap<Pending>>,
    wake: Condvar,
    stop: AtomicBool,
}

/// Reads datagrams until told to stop, routes them and queues each with its due time.
fn receive(socket: UdpSocket, args: &Args, shared: &Shared) -> RecvCounts {
    let mut counts = RecvCounts::default();
    let mut rng = Rng::new(args.seed.unwrap_or_else(|| u64::from(std::process::id())));
    let mut client: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65_536];
    let mut order = 0u64;
    let jitter_ns = args.jitter.as_nanos() as u64;
    while !shared.stop.load(AtomicOrdering::Relaxed) {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                // E.g. ECONNREFUSED left by an earlier send to a port nobody listens on.
                counts.errors += 1;
                continue;
            }
        };
        let now = Instant::now();
        let dst = if from == args.to {
            match client {
                Some(c) => {
                    counts.to_client += 1;
                    c
                }
                None => {
                    counts.unrouted += 1;
                    continue;
                }
            }
        } else if client.is_none_or(|c| c == from) {
            if client.is_none() {
                eprintln!("peermesh-relay: client is {from}");
                client = Some(from);
            }
            counts.to_target += 1;
            args.to
        } else {
            counts.strangers += 1;
            continue;
        };
        if rng.chance(args.loss) {
            counts.lost += 1;
            continue;
        }
        let mut delay = args.delay;
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
            due: now + delay,
            order,
            dst,
            bytes: buf[..n].to_vec(),
        });
        drop(queue);
        shared.wake.notify_one();
    }
    counts
}

/// What the sender counted: how many went out and how late against their due time.
#[derive(Default)]
struct SendCounts {
    sent: u64,
    errors: u64,
    late_sum: Duration,
    late_max: Duration,
    late_over_100us: u64,
}

/// Sends each queued datagram at its due time until `end`.
fn send(socket: &UdpSocket, shared: &Shared, end: Instant) -> SendCounts {
    let mut counts = SendCounts::default();
    let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = Instant::now();
        if now >= end {
            return counts;
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
        match socket.send_to(&item.bytes, item.dst) {
            Ok(_) => {
                counts.sent += 1;
                counts.late_sum += late;
                counts.late_max = counts.late_max.max(late);
                if late > Duration::from_micros(100) {
                    counts.late_over_100us += 1;
                }
            }
            Err(_) => counts.errors += 1,
        }
        queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
    }
}

fn main() -> ExitCode {
    let args: Args = parse_args();
    if args.listen == args.to {
        usage_error::<Args>("--listen and --to must differ");
    }
    let socket = match UdpSocket::bind(args.listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: bind {}: {e}", args.listen);
            return ExitCode::from(1);
        }
    };
    let reader = match socket
        .try_clone()
        .and_then(|r| r.set_read_timeout(Some(RECV_TICK)).map(|()| r))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: socket: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "peermesh-relay: {} <-> {}, delay {:?} ± {:?}, loss {}, for {} s",
        args.listen, args.to, args.delay, args.jitter, args.loss, args.secs
    );
    let shared = Arc::new(Shared {
        queue: Mutex::new(BinaryHeap::new()),
        wake: Condvar::new(),
        stop: AtomicBool::new(false),
    });
    let end = Instant::now() + Duration::from_secs_f64(args.secs);
    let received = std::thread::scope(|scope| {
        let receiver = scope.spawn(|| receive(reader, &args, &shared));
        let sent = send(&socket, &shared, end);
        shared.stop.store(true, AtomicOrdering::Relaxed);
        let received = receiver.join().unwrap_or_default();
        (received, sent)
    });
    let (r, s) = received;
    let held = shared.queue.lock().map_or(0, |q| q.len());
    let mean_late_us = if s.sent > 0 {
        s.late_sum.as_secs_f64() * 1e6 / s.sent as f64
    } else {
        0.0
    };
    println!(
        "relay {} <-> {}: {} to target, {} to client, sent {}, lost {}, strangers {}, \
         unrouted {}, overflow {}, still held {held}, send errors {}, recv errors {}; \
         late mean {mean_late_us:.1} us, max {} us, {} over 100 us",
        args.listen,
        args.to,
        r.to_target,
        r.to_client,
        s.sent,
        r.lost,
        r.strangers,
        r.unrouted,
        r.overflow,
        s.errors,
        r.errors,
        s.late_max.as_micros(),
        s.late_over_100us
    );
    ExitCode::SUCCESS
}
