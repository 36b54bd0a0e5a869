//! Scale benchmark: a simulated mesh of 1,000 nodes (by default) assembles the full latency
//! matrix at every node. Std only (`harness = false`); not a timed test.
//!
//! Run with `cargo bench --bench matrix_scale -- --nodes 1000` (or set
//! `PEERMESH_SCALE_NODES`). It prints, interval by interval, how much of the matrix the
//! sampled nodes know, then: the number of intervals until every node held the whole matrix,
//! the bytes and datagrams each node sends per second, the wall time, the simulated
//! node-seconds per wall second and the peak RSS of the process.
//!
//! The network: nodes are spread over six regions (`i % 6`); links within a region have a
//! round trip of 0.8–1.2 ms, links between regions 20–150 ms, and every pair gets its own
//! latency (a hash of the two indices), so a cell copied to the wrong place is caught. No
//! jitter, no loss: the RTT each node measures is exact, and every off-diagonal cell
//! `rtt_us[i][j]` of every node's [`peermesh::core::MatrixView`] must come within 2% of it.
//!
//! Checking a node means building its whole `MatrixView` (three N×N tables), so each interval
//! checks a seeded sample of `--sample` nodes (default 50; all nodes when N is no larger).
//! Once the whole sample is complete, every node is checked; the nodes found incomplete then
//! (stragglers) are re-checked each interval, and when they are all complete every node is
//! checked again in that same interval: the interval count printed is exact.
//!
//! Bytes are counted by [`Sim::bytes_sent`] (UDP payload bytes of every datagram emitted);
//! datagrams by [`Sim::datagram_counts`] (delivered + lost, so the few still in flight at the
//! end are not counted). CPU time comes from `/proc/thread-self/schedstat`, so the figures
//! mean something on a busy machine too.
//!
//! Options (anything else, such as the `--bench` cargo passes, is ignored):
//! `--nodes N`, `--sample K`, `--seed S`, `--max-intervals M` (default 60).
//!
//! Memory: every node keeps a dense row of 8-byte cells per other node, so N nodes take
//! about 8·N² bytes each and 8·N³ in all (8 GB at N = 1,000), plus about 1 KB per peer.

use peermesh::core::ProbeMode;
use peermesh::sim::{Link, Sim};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_secs(1);
const TOLERANCE: f64 = 0.02;
const REGIONS: usize = 6;

/// One-way latency between the regions, in ms (symmetric; the diagonal is unused).
const REGION_ONE_WAY_MS: [[u64; REGIONS]; REGIONS] = [
    [0, 12, 35, 70, 48, 22],
    [12, 0, 28, 64, 40, 15],
    [35, 28, 0, 52, 18, 31],
    [70, 64, 52, 0, 74, 58],
    [48, 40, 18, 74, 0, 10],
    [22, 15, 31, 58, 10, 0],
];

struct Options {
    nodes: usize,
    sample: usize,
    seed: u64,
    max_intervals: u32,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut options = Options {
            nodes: 1000,
            sample: 50,
            seed: 7,
            max_intervals: 60,
        };
        if let Ok(value) = std::env::var("PEERMESH_SCALE_NODES") {
            options.nodes = number("PEERMESH_SCALE_NODES", &value)?;
        }
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            if !matches!(
                name.as_str(),
                "--nodes" | "--sample" | "--seed" | "--max-intervals"
            ) {
                continue;
            }
            let value = inline
                .or_else(|| args.next())
                .ok_or(format!("{name} needs a value"))?;
            match name.as_str() {
                "--nodes" => options.nodes = number(&name, &value)?,
                "--sample" => options.sample = number(&name, &value)?,
                "--seed" => options.seed = number(&name, &value)?,
                _ => options.max_intervals = number(&name, &value)?,
            }
        }
        if options.nodes < 2 {
            return Err("--nodes must be at least 2".into());
        }
        Ok(options)
    }
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{name}: not a number: {value:?}"))
}

/// The per-pair latency hash and the sampling generator: the first SplitMix64 output
/// seeded with `z`, from the crate's generator.
fn mix(z: u64) -> u64 {
    peermesh::core::rng::Rng::new(z).next_u64()
}

/// One-way latency between nodes `a` and `b` in µs, the same both ways.
fn one_way_us(a: usize, b: usize) -> u64 {
    let (a, b) = (a.min(b), a.max(b));
    let pair = mix(((a as u64) << 32) | b as u64);
    let (ra, rb) = (a % REGIONS, b % REGIONS);
    if ra == rb {
        400 + pair % 200
    } else {
        REGION_ONE_WAY_MS[ra][rb] * 1000 + pair % 1000
    }
}

fn true_rtt_us(a: usize, b: usize) -> f64 {
    (2 * one_way_us(a, b)) as f64
}

/// What one node's assembled matrix holds, off the diagonal.
#[derive(Default)]
struct Tally {
    nodes: usize,
    complete: usize,
    cells: u64,
    known: u64,
    correct: u64,
    first_error: Option<String>,
    /// The first unknown cell met, as `(node, from, to)`.
    first_missing: Option<(usize, usize, usize)>,
    /// The nodes whose matrix is not complete yet.
    incomplete: Vec<usize>,
}

impl Tally {
    fn add_node(&mut self, sim: &Sim, o: usize) {
        let n = sim.len();
        self.nodes += 1;
        self.cells += (n * (n - 1)) as u64;
        let Some(mesh) = sim.mesh(o) else {
            self.first_error.get_or_insert(format!("node{o} is down"));
            self.incomplete.push(o);
            return;
        };
        let view = mesh.matrix();
        if view.rtt_us.len() != n {
            self.first_error
                .get_or_insert(format!("node{o}: matrix is {}×…", view.rtt_us.len()));
            self.incomplete.push(o);
            return;
        }
        let (mut known, mut correct) = (0u64, 0u64);
        for (i, row) in view.rtt_us.iter().enumerate() {
            for (j, &got) in row.iter().enumerate() {
                if i == j {
                    continue;
                }
                let Some(got) = got else {
                    self.first_missing.get_or_insert((o, i, j));
                    continue;
                };
                known += 1;
                let want = true_rtt_us(i, j);
                if (got - want).abs() <= want * TOLERANCE {
                    correct += 1;
                } else if self.first_error.is_none() {
                    self.first_error = Some(format!(
                        "node{o}: cell {i}->{j} is {got} µs, true {want} µs"
                    ));
                }
            }
        }
        self.known += known;
        self.correct += correct;
        if correct == (n * (n - 1)) as u64 {
            self.complete += 1;
        } else {
            self.incomplete.push(o);
        }
    }

    fn all_complete(&self) -> bool {
        self.complete == self.nodes
    }

    fn check(sim: &Sim, nodes: impl IntoIterator<Item = usize>) -> Tally {
        let mut tally = Tally::default();
        for o in nodes {
            tally.add_node(sim, o);
        }
        tally
    }

    fn pct(&self, part: u64) -> f64 {
        100.0 * part as f64 / self.cells.max(1) as f64
    }
}

/// `k` distinct nodes of `0..n`, drawn from `state` (partial Fisher–Yates).
fn sample(n: usize, k: usize, state: &mut u64) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    let k = k.min(n);
    for i in 0..k {
        *state = mix(*state);
        let j = i + (*state % (n - i) as u64) as usize;
        all.swap(i, j);
    }
    all.truncate(k);
    all.sort_unstable();
    all
}

/// A `VmHWM`/`VmRSS`-style line of `/proc/self/status`, in MiB.
fn proc_status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU time this thread has run, from `/proc/thread-self/schedstat` (the bench is single
/// threaded): wall time alone misleads on a shared machine.
fn cpu_time() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

fn mib(field: &str) -> String {
    proc_status_mib(field).map_or_else(|| "n/a".into(), |m| format!("{m:.0} MiB"))
}

fn main() -> ExitCode {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(err) => {
            eprintln!("matrix_scale: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut options = options;
    if !std::env::args().any(|arg| arg == "--bench")
        && std::env::var_os("PEERMESH_SCALE_NODES").is_none()
    {
        // Run by `cargo test --all-targets`, not `cargo bench`: a small smoke run only.
        options.nodes = options.nodes.min(30);
        options.sample = options.sample.min(30);
    }
    let n = options.nodes;
    let started = Instant::now();
    let cpu_started = cpu_time();

    let mut sim = Sim::with_probe_mode(n, INTERVAL, options.seed, ProbeMode::Full);
    for a in 0..n {
        for b in (a + 1)..n {
            sim.set_link(a, b, Link::latency(Duration::from_micros(one_way_us(a, b))));
        }
    }
    let setup = started.elapsed();
    let setup_cpu = cpu_time() - cpu_started;
    println!(
        "matrix_scale: {n} nodes, {REGIONS} regions, interval {INTERVAL:?}, seed {}; \
         setup {:.2} s, RSS {}",
        options.seed,
        setup.as_secs_f64(),
        mib("VmRSS:")
    );

    let mut rng = options.seed ^ 0x5ca1_e5ca_1e5c_a1e5;
    let (mut sim_wall, mut check_wall) = (Duration::ZERO, Duration::ZERO);
    let (mut sim_cpu, mut check_cpu) = (Duration::ZERO, Duration::ZERO);
    let mut matrix_checks = 0u64;
    let mut assembled = None;
    let mut last = Tally::default();
    let mut stragglers: Vec<usize> = Vec::new();
    for k in 1..=options.max_intervals {
        let (t, c) = (Instant::now(), cpu_time());
        sim.run_for(INTERVAL);
        sim_wall += t.elapsed();
        sim_cpu += cpu_time() - c;

        let (t, c) = (Instant::now(), cpu_time());
        let checked = sample(n, options.sample, &mut rng);
        let mut tally = Tally::check(&sim, checked.iter().copied());
        let mut line = format!(
            "interval {k:>3}: {:6.2}% of cells known, {:6.2}% within 2%, at {} sampled nodes \
             ({} complete)",
            tally.pct(tally.known),
            tally.pct(tally.correct),
            tally.nodes,
            tally.complete,
        );
        matrix_checks += checked.len() as u64;
        if tally.all_complete() && checked.len() < n {
            // The sample is complete: look at the stragglers of the last full check, and
            // once they are complete too, at every node (the count printed must be exact).
            let mut full = true;
            if !stragglers.is_empty() {
                let again = Tally::check(&sim, stragglers.iter().copied());
                matrix_checks += again.nodes as u64;
                line.push_str(&format!(
                    "; stragglers: {}/{} complete",
                    again.complete, again.nodes
                ));
                full = again.all_complete();
                stragglers = again.incomplete.clone();
                if !full {
                    tally = again;
                }
            }
            if full {
                tally = Tally::check(&sim, 0..n);
                matrix_checks += n as u64;
                line.push_str(&format!("; every node: {}/{n} complete", tally.complete));
                stragglers = tally.incomplete.clone();
            }
        }
        check_wall += t.elapsed();
        check_cpu += cpu_time() - c;
        if let Some((o, i, j)) = tally.first_missing.filter(|_| !tally.all_complete()) {
            line.push_str(&format!(" e.g. node{o} lacks {i}->{j}"));
        }
        println!(
            "{line}  [wall: sim {:.1} s, checks {:.1} s; cpu: sim {:.1} s; RSS {}]",
            sim_wall.as_secs_f64(),
            check_wall.as_secs_f64(),
            sim_cpu.as_secs_f64(),
            mib("VmRSS:")
        );
        let done = tally.all_complete() && tally.nodes == n;
        last = tally;
        if done {
            assembled = Some(k);
            break;
        }
    }

    let wall = started.elapsed();
    let cpu = cpu_time() - cpu_started;
    let secs = sim.elapsed().as_secs_f64();
    let (delivered, lost) = sim.datagram_counts();
    let datagrams = delivered + lost;
    let bytes = sim.bytes_sent();
    println!("--- summary ---");
    println!("nodes:                             {n}");
    match assembled {
        Some(k) => println!("intervals until assembled at all:  {k} ({secs:.0} s simulated)"),
        None => println!(
            "intervals until assembled at all:  NOT within {} intervals ({} of {} checked \
             nodes complete; first unknown cell: {}; first wrong cell: {})",
            options.max_intervals,
            last.complete,
            last.nodes,
            last.first_missing
                .map_or("none".into(), |(o, i, j)| format!("node{o} lacks {i}->{j}")),
            last.first_error.as_deref().unwrap_or("none")
        ),
    }
    println!(
        "bytes sent per node per second:    {:.0} ({:.1} kB/s; mean datagram {:.0} B)",
        bytes as f64 / n as f64 / secs,
        bytes as f64 / n as f64 / secs / 1000.0,
        bytes as f64 / datagrams.max(1) as f64
    );
    println!(
        "datagrams per node per second:     {:.0} (delivered + lost; {lost} lost)",
        datagrams as f64 / n as f64 / secs
    );
    println!(
        "wall time:                         {:.1} s (setup {:.1} s, simulation {:.1} s, \
         matrix checks {:.1} s for {matrix_checks} MatrixViews, {:.1} ms each)",
        wall.as_secs_f64(),
        setup.as_secs_f64(),
        sim_wall.as_secs_f64(),
        check_wall.as_secs_f64(),
        check_wall.as_secs_f64() * 1e3 / matrix_checks.max(1) as f64
    );
    println!(
        "cpu time:                          {:.1} s (setup {:.1} s, simulation {:.1} s, \
         matrix checks {:.1} s)",
        cpu.as_secs_f64(),
        setup_cpu.as_secs_f64(),
        sim_cpu.as_secs_f64(),
        check_cpu.as_secs_f64()
    );
    println!(
        "simulated node-seconds per wall s: {:.0} (simulation only; {:.0} over the whole run; \
         {:.0} per cpu s of simulation)",
        n as f64 * secs / sim_wall.as_secs_f64(),
        n as f64 * secs / wall.as_secs_f64(),
        n as f64 * secs / sim_cpu.as_secs_f64()
    );
    println!("peak RSS (VmHWM):                  {}", mib("VmHWM:"));
    if assembled.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
