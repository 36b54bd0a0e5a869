//! Driver benchmark: heap allocations per heartbeat through the whole stack — two mio
//! `Node`s on real loopback UDP sockets, the sealed (keyed) path included — and the
//! wall-clock cost of a heartbeat round trip through the kernel. Std only.
//!
//! Run with `cargo bench --bench driver`. Both nodes share one thread and one `mio::Poll`,
//! exactly as two embedded nodes would; the heartbeat interval is 1 ms so a second holds
//! about a thousand exchanges per direction.

use mio::net::UdpSocket;
use mio::{Events, Poll, Token};
use peermesh::io::driver::Node;
use peermesh::wire::keyring::{Key, Keyring};
use peermesh::{Mesh, Settings};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to `System`; only counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn settings(incarnation: u64) -> Settings {
    Settings {
        heartbeat_interval: Duration::from_millis(1),
        suspect_after: Duration::from_millis(300),
        dead_after: Duration::from_millis(500),
        max_datagram: 1232,
        incarnation,
        seed: incarnation,
        probe_mode: peermesh::core::ProbeMode::Auto,
        probe_fanout: peermesh::core::DEFAULT_PROBE_FANOUT,
    }
}

struct Run {
    exchanges: u64,
    allocations: u64,
    rtt_p50_us: f64,
    wall: Duration,
}

fn run(keyed: bool, secs: f64) -> std::io::Result<Run> {
    let sa = UdpSocket::bind("127.0.0.1:0".parse().map_err(std::io::Error::other)?)?;
    let sb = UdpSocket::bind("127.0.0.1:0".parse().map_err(std::io::Error::other)?)?;
    let (aa, ab) = (sa.local_addr()?, sb.local_addr()?);
    let now = Instant::now();
    let mut ma = Mesh::new("a", settings(1 << 20), now);
    ma.add_peer("b", ab);
    let mut mb = Mesh::new("b", settings(2 << 20), now);
    mb.add_peer("a", aa);
    if keyed {
        let ring = Keyring::new(vec![Key::new(&[7; 32])]);
        ma.set_keyring(ring.clone());
        mb.set_keyring(ring);
    }
    let mut a = Node::new(ma, sa);
    let mut b = Node::new(mb, sb);
    let mut poll = Poll::new()?;
    a.register(poll.registry(), Token(0))?;
    b.register(poll.registry(), Token(1))?;
    let mut events = Events::with_capacity(64);
    let mut turn = |poll: &mut Poll, a: &mut Node, b: &mut Node| -> std::io::Result<()> {
        let next = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let timeout = next.map(|t| t.saturating_duration_since(Instant::now()));
        poll.poll(&mut events, timeout)?;
        for event in events.iter() {
            match event.token() {
                Token(0) => a.handle_event(poll.registry(), event)?,
                _ => b.handle_event(poll.registry(), event)?,
            }
        }
        let now = Instant::now();
        a.handle_timeout(poll.registry(), now)?;
        b.handle_timeout(poll.registry(), now)?;
        while a.poll_event().is_some() {}
        while b.poll_event().is_some() {}
        Ok(())
    };
    // Warm up: tables, queues and the wheel reach their steady size.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(500) {
        turn(&mut poll, &mut a, &mut b)?;
    }
    let sent0 = a.mesh().peers().map(|(_, p)| p.probes_sent()).sum::<u32>();
    let allocs0 = ALLOCATIONS.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut turns = 0u64;
    while start.elapsed() < Duration::from_secs_f64(secs) && turns < 50_000_000 {
        turn(&mut poll, &mut a, &mut b)?;
        turns += 1;
    }
    let wall = start.elapsed();
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocs0;
    let sent = a.mesh().peers().map(|(_, p)| p.probes_sent()).sum::<u32>() - sent0;
    let rtt = a
        .mesh()
        .peers()
        .next()
        .and_then(|(_, p)| p.rtt())
        .map_or(0.0, |r| r.p50.as_secs_f64() * 1e6);
    Ok(Run {
        exchanges: u64::from(sent),
        allocations,
        rtt_p50_us: rtt,
        wall,
    })
}

fn main() {
    // `cargo test --all-targets` runs benches once in test mode: keep that short.
    let quick = std::env::args().any(|a| a == "--test" || a == "--list")
        || std::env::var_os("PEERMESH_BENCH_QUICK").is_some();
    let secs = if quick { 0.2 } else { 3.0 };
    println!(
        "peermesh driver benchmark: two mio Nodes on loopback UDP, one thread, 1 ms heartbeats"
    );
    for keyed in [false, true] {
        match run(keyed, secs) {
            Ok(r) => println!(
                "{:<8} {} heartbeat exchanges per direction in {:.1} s, {} heap allocations ({:.4} per exchange, target 0), loopback RTT p50 {:.1} µs",
                if keyed { "sealed:" } else { "plain:" },
                r.exchanges,
                r.wall.as_secs_f64(),
                r.allocations,
                r.allocations as f64 / r.exchanges.max(1) as f64,
                r.rtt_p50_us
            ),
            Err(e) => println!("driver bench failed: {e}"),
        }
    }
}
