//! Timer wheel micro-benchmark: ns per insert, cancel and expire with 100,000 live timers.
//!
//! Plain `fn main` (`harness = false`), std only. `cargo bench --bench wheel` runs the full
//! measurement; without `--bench` (as under `cargo test --all-targets`) it only runs a tiny
//! smoke pass so that test runs stay fast.

// Guard for a build where this file is picked up with the default test harness.
#![cfg_attr(test, allow(dead_code))]

use std::hint::black_box;
use std::time::{Duration, Instant};

use peermesh::core::wheel::TimerWheel;

/// The crate's seeded generator: the same timers every run.
struct Rng(peermesh::core::rng::Rng);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(peermesh::core::rng::Rng::new(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A deadline between `lo_ms` and `hi_ms` after `origin`, with a sub-ms part.
    fn deadline(&mut self, origin: Instant, lo_ms: u64, hi_ms: u64) -> Instant {
        let ns = lo_ms * 1_000_000 + self.next() % ((hi_ms - lo_ms) * 1_000_000);
        origin + Duration::from_nanos(ns)
    }
}

struct Sizes {
    live: usize,
    batch: usize,
    batches: usize,
    runs: usize,
}

/// A wheel holding `live` timers spread between `lo_ms` and `hi_ms`.
fn filled(
    origin: Instant,
    rng: &mut Rng,
    sizes: &Sizes,
    lo_ms: u64,
    hi_ms: u64,
) -> TimerWheel<u64> {
    let mut wheel = TimerWheel::with_capacity(origin, 2 * sizes.live + sizes.batch);
    for i in 0..sizes.live as u64 {
        wheel.insert(rng.deadline(origin, lo_ms, hi_ms), i);
    }
    wheel
}

/// ns per insert: batches inserted on top of the live timers (timed), then cancelled (not).
fn bench_insert(sizes: &Sizes, seed: u64) -> f64 {
    let origin = Instant::now();
    let mut rng = Rng::new(seed);
    let mut wheel = filled(origin, &mut rng, sizes, 1, 3_600_000);
    let mut keys = Vec::with_capacity(sizes.batch);
    let deadlines: Vec<Instant> = (0..sizes.batch)
        .map(|_| rng.deadline(origin, 1, 3_600_000))
        .collect();
    let mut total = Duration::ZERO;
    for _ in 0..sizes.batches {
        let start = Instant::now();
        for (i, &deadline) in deadlines.iter().enumerate() {
            keys.push(wheel.insert(black_box(deadline), i as u64));
        }
        total += start.elapsed();
        for key in keys.drain(..) {
            black_box(wheel.cancel(key));
        }
    }
    total.as_nanos() as f64 / (sizes.batch * sizes.batches) as f64
}

/// ns per cancel: batches inserted on top of the live timers (not timed), then cancelled in a
/// shuffled order (timed).
fn bench_cancel(sizes: &Sizes, seed: u64) -> f64 {
    let origin = Instant::now();
    let mut rng = Rng::new(seed);
    let mut wheel = filled(origin, &mut rng, sizes, 1, 3_600_000);
    let mut keys = Vec::with_capacity(sizes.batch);
    let mut total = Duration::ZERO;
    for _ in 0..sizes.batches {
        for i in 0..sizes.batch as u64 {
            keys.push(wheel.insert(rng.deadline(origin, 1, 3_600_000), i));
        }
        for i in (1..keys.len()).rev() {
            keys.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        let start = Instant::now();
        for &key in &keys {
            black_box(wheel.cancel(black_box(key)));
        }
        total += start.elapsed();
        keys.clear();
    }
    total.as_nanos() as f64 / (sizes.batch * sizes.batches) as f64
}

/// ns per expired timer: `live` timers due over the next 10 s (plus `live` more due in the
/// second hour, so at least `live` stay live) are drained by polling in 1 ms steps, empty polls
/// and cascades included.
fn bench_expire(sizes: &Sizes, seed: u64) -> f64 {
    let origin = Instant::now();
    let mut rng = Rng::new(seed);
    let mut wheel = filled(origin, &mut rng, sizes, 3_600_000, 7_200_000);
    let span_ms = 10_000;
    for i in 0..sizes.live as u64 {
        wheel.insert(rng.deadline(origin, 0, span_ms), i);
    }
    let mut fired = 0usize;
    let start = Instant::now();
    for ms in 0..=span_ms {
        let now = origin + Duration::from_millis(ms);
        while let Some(timer) = wheel.poll(black_box(now)) {
            black_box(timer);
            fired += 1;
        }
    }
    let total = start.elapsed();
    assert_eq!(fired, sizes.live);
    total.as_nanos() as f64 / fired as f64
}

fn report(name: &str, sizes: &Sizes, bench: fn(&Sizes, u64) -> f64) {
    let mut samples: Vec<f64> = (0..sizes.runs as u64)
        .map(|run| bench(sizes, 0x5eed ^ run))
        .collect();
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    println!(
        "wheel {name} ({}k live): median {median:.1} ns/op (min {:.1}, max {:.1})",
        sizes.live / 1000,
        samples[0],
        samples[samples.len() - 1],
    );
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let sizes = if full {
        Sizes {
            live: 100_000,
            batch: 10_000,
            batches: 10,
            runs: 11,
        }
    } else {
        Sizes {
            live: 1_000,
            batch: 100,
            batches: 2,
            runs: 1,
        }
    };
    if full {
        report("insert", &sizes, bench_insert);
        report("cancel", &sizes, bench_cancel);
        report("expire", &sizes, bench_expire);
    } else {
        for bench in [bench_insert, bench_cancel, bench_expire] {
            black_box(bench(&sizes, 1));
        }
        println!("wheel bench: smoke run ok (measure with `cargo bench --bench wheel`)");
    }
}
