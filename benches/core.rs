//! Core benchmark: the cost of one heartbeat exchange through two `Mesh` cores, the heap
//! allocations it makes, and the wire codec on its own. Std only (`harness = false`).
//!
//! Run with `cargo bench --bench core`. The figures go into `docs/PERFORMANCE.md`. Without
//! `--bench` (as under `cargo test --all-targets`) it only runs a short smoke pass of every
//! scenario, checked the same way, so that test runs stay fast.
//!
//! What "one exchange" is: node A's heartbeat timer fires (`handle_timeout` at A's
//! `poll_timeout`), A encodes the ping (`poll_transmit`), the peer decodes it
//! (`handle_datagram`) and encodes the pong (`poll_transmit`), A decodes the pong
//! (`handle_datagram`) and records the RTT sample; both sides' event queues are drained, as a
//! driver does. The clock is virtual (a base `Instant` plus offsets): nothing sleeps.
//!
//! In the main scenario A has 21 peers and every one of them is a real `Mesh` of the same
//! 22-node mesh (21 peers each), so the peer tables, the id map and the timer wheels are the
//! size they are in a 22-node deployment, and no ping is discarded: each ping A sends is
//! answered by the core it is addressed to, and the time per exchange is the whole loop's time
//! divided by the number of pongs A accepted. A's liveness timers (one per peer per
//! `suspect_after`) fire inside the same loop, so their cost is included, amortized over
//! the exchanges; the responders' own timers are never driven (their pings would be other
//! exchanges). A second line gives the same exchange with one peer on each side.
//!
//! Set `PEERMESH_BENCH_ALLOC_TRACE=N` to print the backtraces of the first `N` allocations
//! made inside the timed exchanges (build with `CARGO_PROFILE_BENCH_DEBUG=true` for lines).
//! Set `PEERMESH_BENCH_PROFILE_EXCHANGES=N` to run only `N` exchanges of the 22-node mesh
//! (`PEERMESH_BENCH_PROFILE_NODES` to change its size) and exit, for `perf record` or
//! `valgrind --tool=callgrind`.

use peermesh::wire::Packet;
use peermesh::{DropReason, Mesh, Settings};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

// ----- counting allocator -------------------------------------------------------------------

/// `System`, counting every `alloc`, `alloc_zeroed` and `realloc` call.
struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Backtraces still to print (`PEERMESH_BENCH_ALLOC_TRACE`), while `TRACING` is on.
static TRACES_LEFT: AtomicU64 = AtomicU64::new(0);
static TRACING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Set while a backtrace is being captured, whose own allocations must not recurse.
    static IN_TRACE: Cell<bool> = const { Cell::new(false) };
}

fn counted() {
    if TRACING.load(Ordering::Relaxed) {
        trace_allocation();
    } else {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts the allocation unless the tracer itself made it, and prints its backtrace.
#[cold]
fn trace_allocation() {
    let reentered = IN_TRACE.with(|flag| flag.replace(true));
    if reentered {
        return;
    }
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    let left = TRACES_LEFT.load(Ordering::Relaxed);
    if left > 0 {
        TRACES_LEFT.store(left - 1, Ordering::Relaxed);
        let trace = std::backtrace::Backtrace::force_capture();
        eprintln!("--- allocation inside the timed exchange loop ---\n{trace}");
    }
    IN_TRACE.with(|flag| flag.set(false));
}

// SAFETY: every call is forwarded unchanged to `System`; only a counter is added.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        counted();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        counted();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn env_u64(var: &str) -> Option<u64> {
    std::env::var(var).ok().and_then(|v| v.parse().ok())
}

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

// ----- measurement plumbing -----------------------------------------------------------------

const RUNS: usize = 11;
/// Exchanges per timed run; `PEERMESH_BENCH_EXCHANGES` overrides it (for profiling runs).
fn exchanges_per_run() -> u64 {
    env_u64("PEERMESH_BENCH_EXCHANGES").unwrap_or(200_000)
}
const WARMUP_EXCHANGES: u64 = 100_000;
const CODEC_ITERS_PER_RUN: u64 = 2_000_000;

/// Median, min and max of one figure over the runs.
struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn of(mut samples: Vec<f64>) -> Stats {
        samples.sort_by(f64::total_cmp);
        Stats {
            median: samples[samples.len() / 2],
            min: samples[0],
            max: samples[samples.len() - 1],
        }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1} ns ({:.1}–{:.1})", self.median, self.min, self.max)
    }
}

/// Runs `run(iters)` `RUNS` times and returns ns per iteration.
fn measure(iters: u64, mut run: impl FnMut(u64)) -> Stats {
    let samples = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            run(iters);
            start.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    Stats::of(samples)
}

// ----- the exchange -------------------------------------------------------------------------

/// One-way latency of the virtual network, and how long the responder holds a ping.
const ONE_WAY: Duration = Duration::from_micros(50);
const HOLD: Duration = Duration::from_micros(3);

fn settings(node: usize) -> Settings {
    Settings {
        heartbeat_interval: Duration::from_secs(1),
        suspect_after: Duration::from_secs(3),
        dead_after: Duration::from_secs(5),
        max_datagram: 1232,
        incarnation: 0x1000 + node as u64,
        seed: 42 + node as u64,
        probe_mode: peermesh::core::ProbeMode::Auto,
        probe_fanout: peermesh::core::DEFAULT_PROBE_FANOUT,
    }
}

fn name(node: usize) -> String {
    format!("node-{node:02}")
}

/// Node `i` listens on 10.0.0.(i+1):1313, so a destination maps back to its core cheaply.
fn addr(node: usize) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::new(10, 0, 0, node as u8 + 1),
        1313,
    ))
}

fn node_of(addr: SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(v4) => usize::from(v4.ip().octets()[3]) - 1,
        SocketAddr::V6(_) => unreachable!("the bench mesh is IPv4"),
    }
}

/// Node 0 ("A") and its responders, nodes 1..n ("B"s), all with every other node as a peer.
struct Exchange {
    a: Mesh,
    /// `cores[i]` is node `i`; `cores[0]` is an unused twin of A, so indices match node numbers.
    cores: Vec<Mesh>,
    now: Instant,
    /// The last ping A sent and the last pong it received (lengths in `ping_len`, `pong_len`).
    ping: Vec<u8>,
    pong: Vec<u8>,
    ping_len: usize,
    pong_len: usize,
    /// Pongs A accepted (RTT samples recorded).
    exchanges: u64,
    /// `handle_timeout` calls made on A.
    wakeups: u64,
}

impl Exchange {
    fn new(nodes: usize) -> Exchange {
        let base = Instant::now();
        let make = |me: usize| {
            let mut mesh = Mesh::new(&name(me), settings(me), base);
            for peer in (0..nodes).filter(|&p| p != me) {
                mesh.add_peer(&name(peer), addr(peer));
            }
            mesh
        };
        Exchange {
            a: make(0),
            cores: (0..nodes).map(make).collect(),
            now: base,
            ping: vec![0; 1232],
            pong: vec![0; 1232],
            ping_len: 0,
            pong_len: 0,
            exchanges: 0,
            wakeups: 0,
        }
    }

    /// Drives A's next timer and every exchange it starts.
    #[inline]
    fn step(&mut self) {
        let at = self
            .a
            .poll_timeout()
            .expect("A always has heartbeats pending");
        let now = at.max(self.now);
        self.a.handle_timeout(now);
        self.wakeups += 1;
        while let Some(ping) = self.a.poll_transmit(now, &mut self.ping) {
            self.ping_len = ping.len;
            let b = &mut self.cores[node_of(ping.dst)];
            let at_b = now + ONE_WAY;
            b.handle_datagram(at_b, addr(0), &self.ping[..ping.len]);
            while let Some(pong) = b.poll_transmit(at_b + HOLD, &mut self.pong) {
                self.pong_len = pong.len;
                let at_a = at_b + HOLD + ONE_WAY;
                self.a
                    .handle_datagram(at_a, ping.dst, &self.pong[..pong.len]);
                self.exchanges += 1;
            }
            while black_box(b.poll_event()).is_some() {}
        }
        while black_box(self.a.poll_event()).is_some() {}
        self.now = now + ONE_WAY + HOLD + ONE_WAY;
    }

    /// Runs until `count` more exchanges are done.
    fn run(&mut self, count: u64) {
        let target = self.exchanges + count;
        while self.exchanges < target {
            self.step();
        }
    }
}

struct ExchangeResult {
    time: Stats,
    allocs: u64,
    exchanges: u64,
    wakeups_per_exchange: f64,
    rtt: Option<Duration>,
    dropped: u64,
    /// A ping and a pong exactly as the cores sent them, for the codec benchmark.
    ping: Vec<u8>,
    pong: Vec<u8>,
}

fn bench_exchange(nodes: usize, trace_allocs: u64) -> ExchangeResult {
    let mut ex = Exchange::new(nodes);
    ex.run(WARMUP_EXCHANGES);
    let (exchanges0, wakeups0) = (ex.exchanges, ex.wakeups);
    // Anything the harness allocates is allocated before the count starts.
    let per_run = exchanges_per_run();
    let mut samples = Vec::with_capacity(RUNS);
    TRACES_LEFT.store(trace_allocs, Ordering::Relaxed);
    TRACING.store(trace_allocs > 0, Ordering::Relaxed);
    let allocs0 = allocations();
    // Each run is cut at a whole exchange, so ns/exchange is exact per run.
    for _ in 0..RUNS {
        let before = ex.exchanges;
        let start = Instant::now();
        ex.run(per_run);
        let elapsed = start.elapsed();
        samples.push(elapsed.as_nanos() as f64 / (ex.exchanges - before) as f64);
    }
    let allocs = allocations() - allocs0;
    TRACING.store(false, Ordering::Relaxed);
    let exchanges = ex.exchanges - exchanges0;
    let peer_b = ex.a.peer_by_name(&name(1)).expect("B is A's peer");
    ExchangeResult {
        time: Stats::of(samples),
        allocs,
        exchanges,
        wakeups_per_exchange: (ex.wakeups - wakeups0) as f64 / exchanges as f64,
        rtt: ex.a.peer(peer_b).and_then(|p| p.rtt()).map(|r| r.p50),
        dropped: std::iter::once(&ex.a)
            .chain(&ex.cores)
            .map(|core| core.dropped().total())
            .sum(),
        ping: ex.ping[..ex.ping_len].to_vec(),
        pong: ex.pong[..ex.pong_len].to_vec(),
    }
}

// ----- the codec alone ----------------------------------------------------------------------

// The packets are the last ping and pong of the 22-node exchange, parsed back: the codec is
// timed on what the core really sends, whatever the body carries.

fn bench_emit(bytes: &[u8]) -> Stats {
    let packet = Packet::parse(bytes).expect("the core's own datagram parses");
    let mut buf = [0u8; 1232];
    measure(CODEC_ITERS_PER_RUN, |iters| {
        for _ in 0..iters {
            let len = black_box(&packet).emit(black_box(&mut buf[..])).unwrap();
            black_box(len);
        }
    })
}

fn bench_parse(bytes: &[u8]) -> Stats {
    let packet = Packet::parse(bytes).expect("the core's own datagram parses");
    let mut again = [0u8; 1232];
    let len = packet.emit(&mut again).expect("it encodes back");
    assert_eq!(&again[..len], bytes, "emit(parse(bytes)) == bytes");
    measure(CODEC_ITERS_PER_RUN, |iters| {
        for _ in 0..iters {
            let parsed = Packet::parse(black_box(bytes));
            black_box(&parsed);
        }
    })
}

// ----- report -------------------------------------------------------------------------------

fn allocs_text(result: &ExchangeResult) -> String {
    if result.allocs == 0 {
        "0 allocations/exchange".to_owned()
    } else {
        format!(
            "{:.4} allocations/exchange ({} in {} exchanges; target 0)",
            result.allocs as f64 / result.exchanges as f64,
            result.allocs,
            result.exchanges
        )
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let trace_allocs = env_u64("PEERMESH_BENCH_ALLOC_TRACE").unwrap_or(0);
    // For profilers: only the exchange, nothing else in the profile.
    if let Some(exchanges) = env_u64("PEERMESH_BENCH_PROFILE_EXCHANGES") {
        let nodes = env_u64("PEERMESH_BENCH_PROFILE_NODES").map_or(22, |n| n.max(2) as usize);
        let mut ex = Exchange::new(nodes);
        ex.run(exchanges);
        println!("ran {} exchanges ({} A wake-ups)", ex.exchanges, ex.wakeups);
        return;
    }

    if !std::env::args().any(|arg| arg == "--bench") {
        for nodes in [22, 2, 59] {
            let mut ex = Exchange::new(nodes);
            ex.run(2_000);
            // Only the handshake's first datagrams, which name no incarnation of their
            // receiver yet (one per direction), may be refused as not fresh.
            let cores = || std::iter::once(&ex.a).chain(&ex.cores);
            let not_fresh: u64 = cores()
                .map(|core| core.dropped().get(DropReason::NotFresh))
                .sum();
            let dropped: u64 = cores().map(|core| core.dropped().total()).sum();
            assert_eq!(
                dropped, not_fresh,
                "{nodes}-node smoke run dropped datagrams"
            );
            assert!(not_fresh <= 2 * nodes as u64, "{not_fresh} not fresh");
            let ping = &ex.ping[..ex.ping_len];
            let pong = &ex.pong[..ex.pong_len];
            for bytes in [ping, pong] {
                let packet = Packet::parse(bytes).expect("the core's own datagram parses");
                let mut again = [0u8; 1232];
                let len = packet.emit(&mut again).expect("it encodes back");
                assert_eq!(&again[..len], bytes, "emit(parse(bytes)) == bytes");
            }
        }
        println!("core bench: smoke run ok (measure with `cargo bench --bench core`)");
        return;
    }

    let mesh = bench_exchange(22, trace_allocs);
    let pair = bench_exchange(2, 0);
    // 58 peers: the most one row chunk holds, so every ping carries a full chunk, as in a
    // mesh of any larger size.
    let full = bench_exchange(59, 0);

    let enc_ping = bench_emit(&mesh.ping);
    let dec_ping = bench_parse(&mesh.ping);
    let enc_pong = bench_emit(&mesh.pong);
    let dec_pong = bench_parse(&mesh.pong);

    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("peermesh core benchmark ({profile}, 1 thread), median of {RUNS} runs (min–max)");
    println!(
        "ping→pong exchange (A timer→ping→B→pong→A sample), 22-node mesh, 21 peers per core: \
         {}, {}",
        mesh.time,
        allocs_text(&mesh)
    );
    println!(
        "  every ping answered by its own peer core; A's liveness timers amortized in \
         ({:.2} A wake-ups/exchange); {} exchanges/run, {} warm-up",
        mesh.wakeups_per_exchange,
        exchanges_per_run(),
        WARMUP_EXCHANGES
    );
    println!(
        "ping→pong exchange, 2-node mesh, 1 peer per core: {}, {}",
        pair.time,
        allocs_text(&pair)
    );
    println!(
        "ping→pong exchange, 59-node mesh, 58 peers per core (every ping carries a full \
         58-entry row chunk, as in any larger mesh): {}, {}",
        full.time,
        allocs_text(&full)
    );
    println!(
        "wire: encode ping {:.1} ns, decode ping {:.1} ns, encode pong {:.1} ns, \
         decode pong {:.1} ns ({} B ping, {} B pong as the cores sent them; {} per run)",
        enc_ping.median,
        dec_ping.median,
        enc_pong.median,
        dec_pong.median,
        mesh.ping.len(),
        mesh.pong.len(),
        CODEC_ITERS_PER_RUN
    );
    println!(
        "  wire min–max: encode ping {:.1}–{:.1}, decode ping {:.1}–{:.1}, \
         encode pong {:.1}–{:.1}, decode pong {:.1}–{:.1}",
        enc_ping.min,
        enc_ping.max,
        dec_ping.min,
        dec_ping.max,
        enc_pong.min,
        enc_pong.max,
        dec_pong.min,
        dec_pong.max
    );
    // Sanity: the virtual network works as built (RTT = 2 × one-way, hold excluded), and
    // nothing was dropped, so every timed exchange was a real one.
    let rtt = |r: Option<Duration>| r.map_or("none".to_owned(), |d| format!("{d:?}"));
    println!(
        "check: A→B p50 rtt {} / {} / {} (expected {:?}), dropped datagrams {} / {} / {}",
        rtt(mesh.rtt),
        rtt(pair.rtt),
        rtt(full.rtt),
        ONE_WAY * 2,
        mesh.dropped,
        pair.dropped,
        full.dropped
    );
}
