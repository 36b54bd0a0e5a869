//! The timer wheel against a simple reference model: a `BTreeMap` ordered by (tick, insertion).
//!
//! Long seeded random operation sequences (and proptest-shrunk ones) insert timers with deadlines
//! from the past to beyond the wheel's range, cancel live and stale keys, move time forwards by
//! small steps and big jumps (and sometimes backwards), and poll. After every step the wheel must
//! agree with the model on what fired (exactly, in order), on `len()` and on `next_deadline()`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use peermesh::core::wheel::{TimerKey, TimerWheel};
use proptest::prelude::*;

/// The wheel's range: deadlines further than this after the current tick are clamped.
const MAX_DELAY_MS: u64 = (1 << 36) - 1;
const NS_PER_MS: u128 = 1_000_000;

/// One step of a scenario.
#[derive(Clone, Debug)]
enum Op {
    /// Insert a timer `offset_ns` after the current clock (negative: in the past).
    Insert { offset_ns: i128 },
    /// Cancel the live timer chosen by `pick` (modulo the number of live timers).
    CancelLive { pick: usize },
    /// Cancel an already fired or cancelled key chosen by `pick`.
    CancelStale { pick: usize },
    /// Move the clock forwards by `step_ns`, then drain every due timer.
    Advance { step_ns: u64 },
    /// Poll (up to 3 times) at `back_ns` before the clock: only timers left over from a partial
    /// drain may be due there.
    PollBackwards { back_ns: u64 },
    /// Poll at most `count` times at the current clock (a partial drain).
    PollSome { count: usize },
}

/// The reference: every live timer keyed by (effective tick, insertion sequence).
struct Model {
    /// The wheel's current tick, as documented on `TimerWheel`.
    elapsed: u64,
    timers: BTreeMap<(u64, u64), (TimerKey, Instant)>,
}

impl Model {
    /// Returns the tick at which the timer is due.
    fn insert(&mut self, deadline_ms: u64, seq: u64, key: TimerKey, deadline: Instant) -> u64 {
        let tick = deadline_ms
            .max(self.elapsed)
            .min(self.elapsed + MAX_DELAY_MS);
        self.timers.insert((tick, seq), (key, deadline));
        tick
    }

    fn poll(&mut self, now_ms: u64) -> Option<(u64, u64, Instant)> {
        match self.timers.first_key_value() {
            Some((&(tick, seq), &(_, deadline))) if tick <= now_ms => {
                self.timers.remove(&(tick, seq));
                self.elapsed = tick;
                Some((tick, seq, deadline))
            }
            _ => {
                self.elapsed = self.elapsed.max(now_ms);
                None
            }
        }
    }

    fn next_tick(&self) -> Option<u64> {
        self.timers.keys().next().map(|&(tick, _)| tick)
    }
}

/// Wheel and model side by side, plus the bookkeeping to pick keys.
struct Harness {
    origin: Instant,
    /// The test's clock, in ns after `origin`.
    clock_ns: u128,
    wheel: TimerWheel<u64>,
    model: Model,
    /// seq -> (tick, key) for live timers, and the live seqs in a vector to pick from.
    live: HashMap<u64, (u64, TimerKey)>,
    live_seqs: Vec<u64>,
    live_pos: HashMap<u64, usize>,
    dead: Vec<TimerKey>,
    next_seq: u64,
    fired: u64,
}

impl Harness {
    fn new() -> Self {
        let origin = Instant::now();
        Harness {
            origin,
            clock_ns: 0,
            wheel: TimerWheel::with_capacity(origin, 64),
            model: Model {
                elapsed: 0,
                timers: BTreeMap::new(),
            },
            live: HashMap::new(),
            live_seqs: Vec::new(),
            live_pos: HashMap::new(),
            dead: Vec::new(),
            next_seq: 0,
            fired: 0,
        }
    }

    fn instant(&self, ns: i128) -> Option<Instant> {
        if ns >= 0 {
            let ns = u64::try_from(ns).ok()?;
            self.origin.checked_add(Duration::from_nanos(ns))
        } else {
            let ns = u64::try_from(-ns).ok()?;
            self.origin.checked_sub(Duration::from_nanos(ns))
        }
    }

    fn now(&self) -> Instant {
        self.instant(self.clock_ns as i128).expect("clock in range")
    }

    fn now_ms(&self) -> u64 {
        (self.clock_ns / NS_PER_MS) as u64
    }

    fn forget(&mut self, seq: u64) -> TimerKey {
        let (_, key) = self.live.remove(&seq).expect("live seq");
        let pos = self.live_pos.remove(&seq).expect("live pos");
        self.live_seqs.swap_remove(pos);
        if let Some(&moved) = self.live_seqs.get(pos) {
            self.live_pos.insert(moved, pos);
        }
        self.dead.push(key);
        key
    }

    /// One poll on both; they must agree exactly. Returns whether a timer fired.
    fn poll_once(&mut self, now: Instant, now_ms: u64, last_tick: &mut u64) -> bool {
        let got = self.wheel.poll(now);
        let want = self.model.poll(now_ms);
        match (got, want) {
            (None, None) => false,
            (Some((deadline, seq)), Some((tick, want_seq, want_deadline))) => {
                assert_eq!(seq, want_seq, "wrong timer fired at {now_ms} ms");
                assert_eq!(deadline, want_deadline);
                assert!(tick <= now_ms, "fired early");
                assert!(tick >= *last_tick, "tick order went backwards");
                assert_eq!(self.live[&seq].0, tick);
                *last_tick = tick;
                self.forget(seq);
                self.fired += 1;
                true
            }
            (got, want) => panic!("at {now_ms} ms wheel gave {got:?}, model {want:?}"),
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Insert { offset_ns } => {
                let ns = self.clock_ns as i128 + offset_ns;
                let Some(deadline) = self.instant(ns) else {
                    return;
                };
                let deadline_ms = if ns <= 0 {
                    0
                } else {
                    (ns as u128).div_ceil(NS_PER_MS) as u64
                };
                let seq = self.next_seq;
                self.next_seq += 1;
                let key = self.wheel.insert(deadline, seq);
                let tick = self.model.insert(deadline_ms, seq, key, deadline);
                self.live.insert(seq, (tick, key));
                self.live_pos.insert(seq, self.live_seqs.len());
                self.live_seqs.push(seq);
            }
            Op::CancelLive { pick } => {
                if self.live_seqs.is_empty() {
                    return;
                }
                let seq = self.live_seqs[pick % self.live_seqs.len()];
                let (tick, _) = self.live[&seq];
                let key = self.forget(seq);
                assert_eq!(self.wheel.cancel(key), Some(seq));
                assert!(self.model.timers.remove(&(tick, seq)).is_some());
                assert_eq!(self.wheel.cancel(key), None, "double cancel");
            }
            Op::CancelStale { pick } => {
                if self.dead.is_empty() {
                    return;
                }
                let key = self.dead[pick % self.dead.len()];
                assert_eq!(
                    self.wheel.cancel(key),
                    None,
                    "stale key cancelled something"
                );
            }
            Op::Advance { step_ns } => {
                self.clock_ns += u128::from(step_ns);
                let (now, now_ms) = (self.now(), self.now_ms());
                let mut last_tick = 0;
                // Bounded: every iteration that continues removes one live timer.
                while self.poll_once(now, now_ms, &mut last_tick) {}
                assert!(self.model.next_tick().is_none_or(|t| t > now_ms));
                // Polling again at the same instant is a no-op.
                assert_eq!(self.wheel.poll(now), None);
            }
            Op::PollBackwards { back_ns } => {
                let ns = self.clock_ns.saturating_sub(u128::from(back_ns));
                let now = self.instant(ns as i128).expect("in range");
                let now_ms = (ns / NS_PER_MS) as u64;
                let mut last_tick = 0;
                // Only timers already due at the clock may come out (a partial drain earlier).
                for _ in 0..3 {
                    if !self.poll_once(now, now_ms, &mut last_tick) {
                        break;
                    }
                }
            }
            Op::PollSome { count } => {
                let (now, now_ms) = (self.now(), self.now_ms());
                let mut last_tick = 0;
                for _ in 0..count {
                    if !self.poll_once(now, now_ms, &mut last_tick) {
                        break;
                    }
                }
            }
        }
        self.check();
    }

    fn check(&self) {
        assert_eq!(self.wheel.len(), self.model.timers.len());
        assert_eq!(self.wheel.is_empty(), self.model.timers.is_empty());
        let want = self
            .model
            .next_tick()
            .map(|tick| self.origin + Duration::from_millis(tick));
        assert_eq!(self.wheel.next_deadline(), want);
    }
}

/// The crate's seeded generator, with the draws the operation generator needs.
struct Rng(peermesh::core::rng::Rng);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(peermesh::core::rng::Rng::new(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn ms_ns(&mut self, max_ms: u64) -> i128 {
        i128::from(self.below(max_ms + 1)) * NS_PER_MS as i128 + self.sub_ms()
    }

    /// A sub-millisecond part: often 0 (exactly on a tick), else any nanosecond count.
    fn sub_ms(&mut self) -> i128 {
        match self.below(4) {
            0 => 0,
            1 => 1,
            2 => NS_PER_MS as i128 - 1,
            _ => i128::from(self.below(NS_PER_MS as u64)),
        }
    }
}

fn random_op(rng: &mut Rng) -> Op {
    const MS: i128 = NS_PER_MS as i128;
    match rng.below(100) {
        0..=14 => Op::Insert {
            offset_ns: rng.ms_ns(100),
        },
        15..=27 => Op::Insert {
            offset_ns: rng.ms_ns(10_000),
        },
        28..=35 => Op::Insert {
            offset_ns: rng.ms_ns(4 * 3_600_000),
        },
        36..=38 => {
            // Around a cascade boundary: 64^k ms (k = 1..=6), give or take one.
            let k = 1 + rng.below(6) as u32;
            let base = 64i128.pow(k) - 1 + i128::from(rng.below(3));
            Op::Insert {
                offset_ns: base * MS + rng.sub_ms(),
            }
        }
        39..=41 => Op::Insert {
            offset_ns: -rng.ms_ns(2_000),
        },
        42..=43 => Op::Insert {
            // Beyond the wheel's range: clamped.
            offset_ns: (i128::from(MAX_DELAY_MS) + i128::from(rng.below(1 << 38))) * MS,
        },
        44..=58 => Op::CancelLive {
            pick: rng.next() as usize,
        },
        59..=63 => Op::CancelStale {
            pick: rng.next() as usize,
        },
        64..=79 => Op::Advance {
            step_ns: rng.ms_ns(5) as u64,
        },
        80..=87 => Op::Advance {
            step_ns: rng.ms_ns(300) as u64,
        },
        88..=91 => Op::Advance {
            step_ns: rng.ms_ns(200_000) as u64,
        },
        92 => Op::Advance {
            // Jumps of up to ~4 years: crosses top-level windows.
            step_ns: rng.ms_ns(1 << 37) as u64,
        },
        93..=95 => Op::PollBackwards {
            back_ns: rng.ms_ns(1_000) as u64,
        },
        _ => Op::PollSome {
            count: 1 + rng.below(3) as usize,
        },
    }
}

#[test]
fn random_sequences_match_the_model() {
    let mut total_fired = 0;
    for seed in 0..200u64 {
        let mut rng = Rng::new(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5eed);
        let mut h = Harness::new();
        for _ in 0..5_000 {
            let op = random_op(&mut rng);
            h.apply(&op);
        }
        // Finally everything fires, in order.
        h.apply(&Op::Advance {
            step_ns: (1u64 << 37) * 1_000_000,
        });
        assert!(h.wheel.is_empty(), "seed {seed}");
        total_fired += h.fired;
    }
    // The scenarios are not degenerate.
    assert!(total_fired > 100_000, "only {total_fired} timers fired");
}

#[test]
fn same_inputs_give_identical_runs() {
    let run = || {
        let origin = Instant::now();
        let mut rng = Rng::new(42);
        let mut wheel = TimerWheel::new(origin);
        let mut log = Vec::new();
        let mut clock = origin;
        let mut keys = Vec::new();
        for i in 0..20_000u64 {
            match rng.below(4) {
                0 | 1 => keys.push(wheel.insert(clock + Duration::from_millis(rng.below(500)), i)),
                2 => {
                    if !keys.is_empty() {
                        let key = keys[rng.below(keys.len() as u64) as usize];
                        log.push((i, wheel.cancel(key), 0));
                    }
                }
                _ => {
                    clock += Duration::from_micros(rng.below(20_000));
                    while let Some((deadline, v)) = wheel.poll(clock) {
                        log.push((i, Some(v), (deadline - origin).as_nanos()));
                    }
                }
            }
        }
        (log, keys)
    };
    assert_eq!(run(), run());
}

fn op_strategy() -> impl Strategy<Value = Op> {
    const MS: i128 = NS_PER_MS as i128;
    prop_oneof![
        4 => (-2_000 * MS..20_000 * MS).prop_map(|offset_ns| Op::Insert { offset_ns }),
        1 => (0..(1i128 << 40) * MS).prop_map(|offset_ns| Op::Insert { offset_ns }),
        2 => any::<usize>().prop_map(|pick| Op::CancelLive { pick }),
        1 => any::<usize>().prop_map(|pick| Op::CancelStale { pick }),
        3 => (0..300 * NS_PER_MS as u64).prop_map(|step_ns| Op::Advance { step_ns }),
        1 => (0..(1u64 << 37) * NS_PER_MS as u64).prop_map(|step_ns| Op::Advance { step_ns }),
        1 => (0..1_000 * NS_PER_MS as u64).prop_map(|back_ns| Op::PollBackwards { back_ns }),
        1 => (1..4usize).prop_map(|count| Op::PollSome { count }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn proptest_sequences_match_the_model(ops in prop::collection::vec(op_strategy(), 0..400)) {
        let mut h = Harness::new();
        for op in &ops {
            h.apply(op);
        }
    }
}
