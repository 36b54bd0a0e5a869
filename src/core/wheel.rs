//! Hierarchical hashed timer wheel: O(1) insert and cancel, ordered expiry, no allocation per
//! operation once grown.
//!
//! The layout follows tokio's timer wheel: 6 levels of 64 slots, 1 ms ticks, one `u64` occupancy
//! bitmap per level. Level `L` slots are `64^L` ticks wide, so the wheel spans `2^36` ms (about
//! 795 days) ahead of its current tick. Timers live in a [`Slab`]; each slot is a doubly-linked
//! FIFO list threaded through the slab entries by key, so no unsafe code and no per-timer
//! allocation.
//!
//! # Placement invariant
//!
//! Let `elapsed` be the wheel's current tick and `when >= elapsed` a timer's tick. The timer sits
//! at the level of the highest bit (in groups of 6) in which `elapsed` and `when` differ, in the
//! slot given by `when`'s 6 bits of that level. So a timer at level `L < 5`
//!
//! * has the same bits above level `L` as `elapsed` (it is in `elapsed`'s level-`L` window), and
//! * has a level-`L` digit greater than `elapsed`'s (for level 0: greater or equal).
//!
//! Hence every timer at level `L` is earlier than every timer at level `L + 1` (the former are
//! before the end of `elapsed`'s current level-`L` slot span, the latter after it), and within a
//! level the slots after `elapsed`'s digit are in time order. The first busy slot of the lowest
//! busy level therefore holds the earliest timer. A level-0 slot holds timers of one single tick.
//!
//! Level 5 may also hold timers of the *next* `2^36`-tick window (a deadline clamped to
//! `elapsed + 2^36 - 1` can cross a window boundary); those sit in slots at or before
//! `elapsed`'s level-5 digit and are found by rotating the bitmap, exactly like tokio.
//!
//! When the wheel's time reaches the start of a busy slot at a level above 0, the slot is
//! *cascaded*: the wheel's tick moves to the slot start and its timers are re-placed, all at lower
//! levels. When no slot starts before `now`, the tick moves to `now` without touching any slot
//! (no slot is skipped over, so the invariant holds).

use std::fmt;
use std::time::{Duration, Instant};

use slab::Slab;

/// Bits of a tick consumed per level.
const SLOT_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << SLOT_BITS;
/// Number of levels.
const LEVELS: usize = 6;
/// The longest delay the wheel can represent, in ticks: `2^36 - 1` ms.
const MAX_DELAY: u64 = (1 << (SLOT_BITS as u64 * LEVELS as u64)) - 1;
/// Ticks are saturated here so that `elapsed + MAX_DELAY` and slot arithmetic never overflow.
const MAX_TICK: u64 = 1 << 62;
/// "No entry" in the slot lists.
const NIL: usize = usize::MAX;

/// Handle to cancel a timer.
///
/// Contains a generation so a stale key (timer already fired or cancelled, slab slot reused) is
/// harmless: [`TimerWheel::cancel`] returns `None` and touches nothing. A key is only meaningful
/// for the wheel that issued it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerKey {
    index: usize,
    generation: u64,
}

/// A point in time a [`TimerWheel`] schedules at: an [`Instant`] (the default), or a `u64`
/// count of nanoseconds on a clock of the caller's. A caller that already keeps its time in
/// nanoseconds saves the `Instant` arithmetic of every insert, poll and deadline.
pub trait WheelTime: Copy {
    /// Whole milliseconds from `origin` to `self`, rounded up; 0 if `self` is before `origin`;
    /// saturating at `u64::MAX`.
    fn ceil_ms_since(self, origin: Self) -> u64;
    /// Whole milliseconds from `origin` to `self`, rounded down; 0 if `self` is before
    /// `origin`; saturating at `u64::MAX`.
    fn floor_ms_since(self, origin: Self) -> u64;
    /// `origin` plus `ms` milliseconds, or `None` if that is not representable.
    fn plus_ms(origin: Self, ms: u64) -> Option<Self>;
}

impl WheelTime for Instant {
    fn ceil_ms_since(self, origin: Instant) -> u64 {
        let since = self.saturating_duration_since(origin);
        let sub_ms = u64::from(since.subsec_nanos().div_ceil(1_000_000));
        since.as_secs().saturating_mul(1000).saturating_add(sub_ms)
    }

    fn floor_ms_since(self, origin: Instant) -> u64 {
        let since = self.saturating_duration_since(origin);
        let sub_ms = u64::from(since.subsec_millis());
        since.as_secs().saturating_mul(1000).saturating_add(sub_ms)
    }

    fn plus_ms(origin: Instant, ms: u64) -> Option<Instant> {
        origin.checked_add(Duration::from_millis(ms))
    }
}

/// Nanoseconds on the caller's clock.
impl WheelTime for u64 {
    fn ceil_ms_since(self, origin: u64) -> u64 {
        self.saturating_sub(origin).div_ceil(1_000_000)
    }

    fn floor_ms_since(self, origin: u64) -> u64 {
        self.saturating_sub(origin) / 1_000_000
    }

    fn plus_ms(origin: u64, ms: u64) -> Option<u64> {
        origin.checked_add(ms.checked_mul(1_000_000)?)
    }
}

/// One timer in the slab, linked into its slot's list.
struct Entry<T, I> {
    value: T,
    /// The deadline as given to `insert`, returned by `poll`.
    deadline: I,
    /// The tick at which the timer is due (rounded up, raised to the wheel's tick, clamped).
    tick: u64,
    generation: u64,
    prev: usize,
    next: usize,
    /// `level * SLOTS + slot` of the list holding this entry.
    list: usize,
}

/// Head and tail of one slot's FIFO list.
#[derive(Clone, Copy)]
struct List {
    head: usize,
    tail: usize,
}

const EMPTY_LIST: List = List {
    head: NIL,
    tail: NIL,
};

/// A hierarchical hashed timer wheel holding values of type `T`, with 1 ms resolution.
///
/// Time is always an argument: the wheel never reads the clock. Times are `I`: [`Instant`]s
/// by default, or `u64` nanoseconds (see [`WheelTime`]). Tick 0 is the `origin` given to
/// [`new`](Self::new); instants before the origin count as the origin.
///
/// # When a timer is due
///
/// A timer with deadline `d` is due at `now` iff `ceil_ms(d - origin) <= floor_ms(now - origin)`:
/// deadlines are rounded up to the next tick and `now` down, so a timer never fires early and
/// at most 1 ms late. Two refinements:
///
/// * The wheel has a current tick: the tick of the last timer [`poll`](Self::poll) returned,
///   or `floor_ms(now - origin)` of the last `poll` that returned `None`, whichever came last
///   (it never moves backwards). A deadline before the current tick is treated as due *at* the
///   current tick, so a timer inserted in the past is due at the next `poll`.
/// * A deadline more than `2^36 - 1` ms (about 795 days) after the current tick is clamped to
///   that maximum; the timer then fires at the clamped tick (poll still returns the deadline
///   given to `insert`).
///
/// # Order
///
/// [`poll`](Self::poll) returns due timers in non-decreasing tick order; timers of the same tick
/// come out in insertion order. The whole wheel is deterministic: the same sequence of calls
/// gives the same results and the same keys.
///
/// # Driving it
///
/// After any change, drain `poll(now)` until it returns `None`, then sleep until
/// [`next_deadline`](Self::next_deadline): that is exactly the instant at which the earliest
/// timer becomes due, so a `poll` at that instant always returns it (no spurious wake-up, no busy
/// loop). Calling `poll` again with the same or an earlier `now` is a harmless no-op.
///
/// # Cost
///
/// `insert`, `cancel` and popping a due timer are O(1); each timer is moved to a lower level at
/// most 5 times over its life. `next_deadline` is O(1), except when the earliest timer has just
/// been cancelled or popped and the next one sits above level 0: then it scans that one slot
/// (a `poll` returning `None` caches the result). Nothing allocates once the
/// slab has grown to the number of live timers (see [`with_capacity`](Self::with_capacity)).
/// No input sequence makes the wheel panic.
pub struct TimerWheel<T, I = Instant> {
    origin: I,
    /// The current tick: every timer in the wheel has `tick >= elapsed`.
    elapsed: u64,
    entries: Slab<Entry<T, I>>,
    /// `LEVELS * SLOTS` slot lists, level-major.
    lists: Box<[List]>,
    /// Bit `s` of `occupied[l]` is set iff slot `s` of level `l` is non-empty.
    occupied: [u64; LEVELS],
    next_generation: u64,
    /// `(tick, index)` of an earliest timer when known; `None` means unknown (or empty).
    min_hint: Option<(u64, usize)>,
}

impl<T, I: WheelTime> TimerWheel<T, I> {
    /// An empty wheel whose tick 0 is `origin`; 1 tick = 1 ms.
    pub fn new(origin: I) -> Self {
        Self::with_capacity(origin, 0)
    }

    /// An empty wheel with room for `capacity` timers before it allocates.
    pub fn with_capacity(origin: I, capacity: usize) -> Self {
        TimerWheel {
            origin,
            elapsed: 0,
            entries: Slab::with_capacity(capacity),
            lists: vec![EMPTY_LIST; LEVELS * SLOTS].into_boxed_slice(),
            occupied: [0; LEVELS],
            next_generation: 0,
            min_hint: None,
        }
    }

    /// Adds a timer that becomes due at `deadline` and returns the key that cancels it.
    ///
    /// A deadline in the past (or before the origin) is due at the next [`poll`](Self::poll);
    /// one beyond the wheel's range (`2^36` ms ahead) is clamped to the maximum.
    pub fn insert(&mut self, deadline: I, value: T) -> TimerKey {
        let tick = self
            .ceil_tick(deadline)
            .max(self.elapsed)
            .min(self.elapsed + MAX_DELAY);
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let was_empty = self.entries.is_empty();
        let index = self.entries.insert(Entry {
            value,
            deadline,
            tick,
            generation,
            prev: NIL,
            next: NIL,
            list: 0,
        });
        self.link(index);
        match self.min_hint {
            _ if was_empty => self.min_hint = Some((tick, index)),
            Some((min, _)) if tick < min => self.min_hint = Some((tick, index)),
            _ => {}
        }
        TimerKey { index, generation }
    }

    /// Removes the timer of `key` and returns its value, in O(1).
    ///
    /// Returns `None`, changing nothing, if the key is stale: its timer already fired or was
    /// cancelled.
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        match self.entries.get(key.index) {
            Some(entry) if entry.generation == key.generation => {}
            _ => return None,
        }
        self.unlink(key.index);
        if matches!(self.min_hint, Some((_, index)) if index == key.index) {
            self.min_hint = None;
        }
        Some(self.entries.remove(key.index).value)
    }

    /// The instant at which the earliest timer becomes due: `origin + ceil_ms(d - origin)` for
    /// the earliest deadline `d` (after the adjustments described on the type), or `None` if the
    /// wheel is empty. It may be before the last `now` given to `poll` (a timer already due).
    pub fn next_deadline(&self) -> Option<I> {
        let (tick, index) = match self.min_hint {
            Some(hint) => hint,
            None => self.find_min()?,
        };
        Some(self.tick_instant(tick, index))
    }

    /// Pops one timer due at `now` and returns its deadline (as given to `insert`) and value;
    /// `None` when no more timers are due at `now`.
    ///
    /// Timers come out in non-decreasing tick order, ties in insertion order. A `now` earlier
    /// than a previous one finds nothing due.
    pub fn poll(&mut self, now: I) -> Option<(I, T)> {
        let now_tick = self.floor_tick(now);
        // Each turn either returns or cascades one slot, moving its timers strictly down a
        // level; a timer is cascaded at most LEVELS - 1 times, so the loop is bounded.
        loop {
            let (level, slot, start) = match self.next_expiration() {
                Some(expiration) if expiration.2 <= now_tick => expiration,
                later => {
                    // No busy slot starts by `now_tick`, so moving there skips none: the
                    // first busy slot stays the one just found.
                    self.elapsed = self.elapsed.max(now_tick);
                    if self.min_hint.is_none() {
                        self.min_hint = later.map(|(level, slot, _)| self.min_in(level, slot));
                    }
                    return None;
                }
            };
            self.elapsed = start;
            if level == 0 {
                return Some(self.pop_front(slot));
            }
            self.cascade(level, slot);
        }
    }

    /// Number of live timers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no timer is live.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `ceil_ms(deadline - origin)`, 0 before the origin, saturated at `MAX_TICK`.
    fn ceil_tick(&self, deadline: I) -> u64 {
        deadline.ceil_ms_since(self.origin).min(MAX_TICK)
    }

    /// `floor_ms(now - origin)`, 0 before the origin, saturated at `MAX_TICK`.
    fn floor_tick(&self, now: I) -> u64 {
        now.floor_ms_since(self.origin).min(MAX_TICK)
    }

    /// `origin + tick` ms; if that overflows `I` (a deadline within 1 ms of the largest
    /// representable time), the entry's own deadline.
    fn tick_instant(&self, tick: u64, index: usize) -> I {
        I::plus_ms(self.origin, tick).unwrap_or(self.entries[index].deadline)
    }

    /// Appends entry `index` to the tail of the slot its tick maps to, relative to `elapsed`.
    fn link(&mut self, index: usize) {
        let tick = self.entries[index].tick;
        let level = level_for(self.elapsed, tick);
        let slot = slot_for(tick, level);
        let list = level * SLOTS + slot;
        let tail = self.lists[list].tail;
        let entry = &mut self.entries[index];
        entry.prev = tail;
        entry.next = NIL;
        entry.list = list;
        if tail == NIL {
            self.lists[list].head = index;
            self.occupied[level] |= 1 << slot;
        } else {
            self.entries[tail].next = index;
        }
        self.lists[list].tail = index;
    }

    /// Takes entry `index` out of its slot list (the entry stays in the slab).
    fn unlink(&mut self, index: usize) {
        let Entry {
            prev, next, list, ..
        } = self.entries[index];
        if prev == NIL {
            self.lists[list].head = next;
        } else {
            self.entries[prev].next = next;
        }
        if next == NIL {
            self.lists[list].tail = prev;
        } else {
            self.entries[next].prev = prev;
        }
        if self.lists[list].head == NIL {
            self.occupied[list / SLOTS] &= !(1 << (list % SLOTS));
        }
    }

    /// Removes and returns the first timer of level-0 slot `slot`.
    fn pop_front(&mut self, slot: usize) -> (I, T) {
        let index = self.lists[slot].head;
        self.unlink(index);
        let entry = self.entries.remove(index);
        if matches!(self.min_hint, Some((_, hint)) if hint == index) {
            // The popped timer was an earliest one; the rest of its slot has the same tick.
            let head = self.lists[slot].head;
            self.min_hint = (head != NIL).then_some((entry.tick, head));
        }
        (entry.deadline, entry.value)
    }

    /// Re-places every timer of a slot above level 0 (its start has been reached), in list
    /// order so that ties keep their insertion order.
    fn cascade(&mut self, level: usize, slot: usize) {
        let list = level * SLOTS + slot;
        let mut index = self.lists[list].head;
        self.lists[list] = EMPTY_LIST;
        self.occupied[level] &= !(1 << slot);
        while index != NIL {
            let next = self.entries[index].next;
            self.link(index);
            index = next;
        }
    }

    /// The first busy slot of the lowest busy level, with the tick at which it starts:
    /// `(level, slot, start)`.
    fn next_expiration(&self) -> Option<(usize, usize, u64)> {
        let level = self.occupied.iter().position(|&bits| bits != 0)?;
        let bits = self.occupied[level];
        let shift = SLOT_BITS * level as u32;
        let current = slot_for(self.elapsed, level);
        // Level 0 may hold timers of the current tick; above it, the current digit's slot can
        // only hold (level 5) timers of the next window, which come last.
        let from = if level == 0 {
            current
        } else {
            (current + 1) % SLOTS
        };
        let slot = (bits.rotate_right(from as u32).trailing_zeros() as usize + from) % SLOTS;
        let span = 1u64 << (shift + SLOT_BITS);
        let mut start = (self.elapsed & !(span - 1)) + ((slot as u64) << shift);
        let wrapped = if level == 0 {
            slot < current
        } else {
            slot <= current
        };
        if wrapped {
            start += span;
        }
        Some((level, slot, start))
    }

    /// `(tick, index)` of an earliest timer: the head of the first busy slot at level 0, else
    /// the minimum over that one slot's list.
    fn find_min(&self) -> Option<(u64, usize)> {
        let (level, slot, _) = self.next_expiration()?;
        Some(self.min_in(level, slot))
    }

    /// `(tick, index)` of an earliest timer of the (busy) slot `slot` of `level`.
    fn min_in(&self, level: usize, slot: usize) -> (u64, usize) {
        let mut index = self.lists[level * SLOTS + slot].head;
        let mut best = (self.entries[index].tick, index);
        if level == 0 {
            return best;
        }
        while index != NIL {
            let entry = &self.entries[index];
            if entry.tick < best.0 {
                best = (entry.tick, index);
            }
            index = entry.next;
        }
        best
    }
}

impl<T, I: fmt::Debug> fmt::Debug for TimerWheel<T, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("origin", &self.origin)
            .field("elapsed_ms", &self.elapsed)
            .field("len", &self.entries.len())
            .finish_non_exhaustive()
    }
}

/// The level for a timer at `when` given the current tick `elapsed` (`when >= elapsed`): that of
/// the highest bit in which they differ, level 0 if equal, level 5 at most.
fn level_for(elapsed: u64, when: u64) -> usize {
    let masked = (elapsed ^ when) | (SLOTS as u64 - 1);
    let highest = 63 - masked.leading_zeros();
    ((highest / SLOT_BITS) as usize).min(LEVELS - 1)
}

/// The slot of `tick` at `level`: its 6 bits of that level.
fn slot_for(tick: u64, level: usize) -> usize {
    ((tick >> (SLOT_BITS * level as u32)) as usize) & (SLOTS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Drains every timer due at `now`, returning the values in order.
    fn drain<T>(wheel: &mut TimerWheel<T>, now: Instant) -> Vec<T> {
        std::iter::from_fn(|| wheel.poll(now).map(|(_, v)| v)).collect()
    }

    #[test]
    fn empty_wheel() {
        let t0 = Instant::now();
        let mut w: TimerWheel<u32> = TimerWheel::new(t0);
        assert!(w.is_empty());
        assert_eq!(w.len(), 0);
        assert_eq!(w.next_deadline(), None);
        assert_eq!(w.poll(t0 + ms(1000)), None);
        assert_eq!(w.poll(t0), None);
        assert!(format!("{w:?}").starts_with("TimerWheel"));
    }

    #[test]
    fn fires_exactly_on_tick_never_early() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        w.insert(t0 + ms(10), 'a');
        assert_eq!(w.next_deadline(), Some(t0 + ms(10)));
        assert_eq!(w.poll(t0 + ms(10) - Duration::from_nanos(1)), None);
        assert_eq!(w.poll(t0 + ms(10)), Some((t0 + ms(10), 'a')));
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn sub_ms_deadline_rounds_up_and_now_rounds_down() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let d = t0 + Duration::from_micros(2_300);
        w.insert(d, 1);
        assert_eq!(w.next_deadline(), Some(t0 + ms(3)));
        assert_eq!(w.poll(t0 + Duration::from_micros(2_999)), None);
        assert_eq!(w.poll(t0 + Duration::from_micros(3_500)), Some((d, 1)));
        // A deadline 1 ns after the origin is tick 1, not 0.
        w.insert(t0 + Duration::from_nanos(1), 2);
        assert_eq!(w.next_deadline(), Some(t0 + ms(3)));
        assert_eq!(drain(&mut w, t0 + ms(3)), vec![2]);
    }

    #[test]
    fn past_deadlines_are_due_at_next_poll() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        assert_eq!(w.poll(t0 + ms(500)), None);
        let past = t0 + ms(100);
        w.insert(past, 'p');
        // Due at the wheel's current tick, 500 ms.
        assert_eq!(w.next_deadline(), Some(t0 + ms(500)));
        assert_eq!(w.poll(t0 + ms(500)), Some((past, 'p')));
        // Before the origin counts as the origin; so does `now` before the origin.
        let mut w = TimerWheel::new(t0 + ms(50));
        w.insert(t0, 'o');
        assert_eq!(w.next_deadline(), Some(t0 + ms(50)));
        assert_eq!(w.poll(t0), Some((t0, 'o')));
    }

    #[test]
    fn past_deadlines_keep_insertion_order_at_current_tick() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        w.insert(t0 + ms(200), 'x');
        assert_eq!(w.poll(t0 + ms(150)), None);
        w.insert(t0 + ms(120), 'b');
        w.insert(t0 + ms(30), 'c');
        w.insert(t0 + ms(150), 'd');
        assert_eq!(w.next_deadline(), Some(t0 + ms(150)));
        assert_eq!(drain(&mut w, t0 + ms(199)), vec!['b', 'c', 'd']);
        assert_eq!(drain(&mut w, t0 + ms(200)), vec!['x']);
    }

    #[test]
    fn time_going_backwards_finds_nothing() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        w.insert(t0 + ms(100), 1);
        w.insert(t0 + ms(300), 2);
        assert_eq!(drain(&mut w, t0 + ms(200)), vec![1]);
        assert_eq!(w.poll(t0 + ms(50)), None);
        assert_eq!(w.poll(t0), None);
        assert_eq!(w.next_deadline(), Some(t0 + ms(300)));
        assert_eq!(drain(&mut w, t0 + ms(300)), vec![2]);
    }

    #[test]
    fn far_deadlines_are_clamped() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let far = t0 + Duration::from_secs(10 * 365 * 24 * 3600);
        w.insert(far, 'f');
        assert_eq!(w.next_deadline(), Some(t0 + ms(MAX_DELAY)));
        assert_eq!(w.poll(t0 + ms(MAX_DELAY - 1)), None);
        assert_eq!(w.poll(t0 + ms(MAX_DELAY)), Some((far, 'f')));
        // Exactly at the maximum is not clamped.
        w.insert(t0 + ms(2 * MAX_DELAY), 'm');
        assert_eq!(w.next_deadline(), Some(t0 + ms(2 * MAX_DELAY)));
        assert_eq!(drain(&mut w, t0 + ms(2 * MAX_DELAY)), vec!['m']);
    }

    #[test]
    fn clamped_deadline_crossing_the_top_window() {
        // Current tick near the end of a 2^36 window: the clamped timer lands in a level-5 slot
        // at or before the current one (next window) and must still come last.
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let start = (1u64 << 36) - 5;
        assert_eq!(w.poll(t0 + ms(start)), None);
        w.insert(t0 + ms(start + (1 << 40)), 'z');
        w.insert(t0 + ms(start + 10), 'a');
        w.insert(t0 + ms(start + (1 << 35)), 'm');
        assert_eq!(w.next_deadline(), Some(t0 + ms(start + 10)));
        assert_eq!(drain(&mut w, t0 + ms(start + 10)), vec!['a']);
        assert_eq!(w.next_deadline(), Some(t0 + ms(start + (1 << 35))));
        assert_eq!(drain(&mut w, t0 + ms(start + (1 << 35))), vec!['m']);
        assert_eq!(w.next_deadline(), Some(t0 + ms(start + MAX_DELAY)));
        assert_eq!(w.poll(t0 + ms(start + MAX_DELAY - 1)), None);
        assert_eq!(drain(&mut w, t0 + ms(start + MAX_DELAY)), vec!['z']);
    }

    #[test]
    fn huge_instants_do_not_panic() {
        let t0 = Instant::now();
        // The largest `Instant` we can reach by doubling.
        let mut max = t0;
        let mut step = Duration::from_secs(1);
        while let Some(next) = max.checked_add(step) {
            max = next;
            step = step.saturating_mul(2);
        }
        while step > Duration::from_nanos(1) {
            step /= 2;
            if let Some(next) = max.checked_add(step) {
                max = next;
            }
        }
        let mut w = TimerWheel::new(t0);
        let k = w.insert(max, 1);
        assert!(w.next_deadline().is_some());
        assert_eq!(w.poll(max), Some((max, 1)));
        assert_eq!(w.cancel(k), None);
        // origin + ceil_ms overflows `Instant`: next_deadline falls back to the deadline.
        let origin = max.checked_sub(Duration::from_micros(1_500)).unwrap();
        let mut w = TimerWheel::new(origin);
        w.insert(max, 4);
        assert_eq!(w.next_deadline(), Some(max));
        assert_eq!(w.poll(max), None);
        let mut w = TimerWheel::new(max);
        w.insert(max, 2);
        assert_eq!(w.next_deadline(), Some(max));
        assert_eq!(w.poll(max), Some((max, 2)));
        w.insert(t0, 3);
        assert_eq!(w.poll(max), Some((t0, 3)));
    }

    #[test]
    fn stale_key_after_fire_and_after_reuse() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let k1 = w.insert(t0 + ms(5), 1);
        assert_eq!(drain(&mut w, t0 + ms(5)), vec![1]);
        assert_eq!(w.cancel(k1), None);
        // The slab slot is reused by the next insert; the old key must not cancel it.
        let k2 = w.insert(t0 + ms(10), 2);
        assert_eq!(w.cancel(k1), None);
        assert_eq!(w.len(), 1);
        assert_ne!(k1, k2);
        assert_eq!(w.cancel(k2), Some(2));
        assert_eq!(w.cancel(k2), None);
        let k3 = w.insert(t0 + ms(10), 3);
        assert_eq!(w.cancel(k2), None);
        assert_eq!(w.cancel(k1), None);
        assert_eq!(drain(&mut w, t0 + ms(10)), vec![3]);
        assert_eq!(w.cancel(k3), None);
        assert!(w.is_empty());
    }

    #[test]
    fn cancel_in_higher_levels() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let delays = [1u64, 100, 5_000, 300_000, 20_000_000, 2_000_000_000];
        let keys: Vec<_> = delays.iter().map(|&d| w.insert(t0 + ms(d), d)).collect();
        assert_eq!(w.len(), 6);
        // Cancel the middle ones (levels 1..=4), including the earliest after level 0.
        for (i, key) in keys.iter().enumerate().skip(1).take(4) {
            assert_eq!(w.cancel(*key), Some(delays[i]));
        }
        assert_eq!(w.next_deadline(), Some(t0 + ms(1)));
        assert_eq!(w.cancel(keys[0]), Some(1));
        assert_eq!(w.next_deadline(), Some(t0 + ms(2_000_000_000)));
        assert_eq!(drain(&mut w, t0 + ms(1_999_999_999)), Vec::<u64>::new());
        assert_eq!(drain(&mut w, t0 + ms(2_000_000_000)), vec![2_000_000_000]);
    }

    #[test]
    fn cancel_earliest_in_a_higher_slot_rescans_it() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        // All in level-1 slot 1 (64..128 ms), inserted out of order.
        let k90 = w.insert(t0 + ms(90), 90);
        let _k70 = w.insert(t0 + ms(70), 70);
        let k65 = w.insert(t0 + ms(65), 65);
        w.insert(t0 + ms(120), 120);
        assert_eq!(w.next_deadline(), Some(t0 + ms(65)));
        assert_eq!(w.cancel(k65), Some(65));
        assert_eq!(w.next_deadline(), Some(t0 + ms(70)));
        assert_eq!(w.poll(t0 + ms(69)), None);
        assert_eq!(w.next_deadline(), Some(t0 + ms(70)));
        assert_eq!(w.cancel(k90), Some(90));
        assert_eq!(drain(&mut w, t0 + ms(200)), vec![70, 120]);
    }

    #[test]
    fn cascade_boundaries() {
        let boundaries = [
            0u64,
            1,
            63,
            64,
            65,
            127,
            128,
            4_095,
            4_096,
            4_097,
            262_143,
            262_144,
            262_145,
            16_777_215,
            16_777_216,
            16_777_217,
            1_073_741_823,
            1_073_741_824,
            1_073_741_825,
            MAX_DELAY - 1,
            MAX_DELAY,
        ];
        for offset in [0u64, 1, 63, 64, 4_095, 100_000] {
            let t0 = Instant::now();
            let mut w = TimerWheel::new(t0);
            assert_eq!(w.poll(t0 + ms(offset)), None);
            // Insert in reverse so that order comes from the wheel, not from insertion.
            for &b in boundaries.iter().rev() {
                w.insert(t0 + ms(offset + b), b);
            }
            for &b in &boundaries {
                let due = t0 + ms(offset + b);
                assert_eq!(w.next_deadline(), Some(due), "offset {offset} boundary {b}");
                if b > 0 {
                    assert_eq!(w.poll(due - Duration::from_nanos(1)), None);
                }
                assert_eq!(w.poll(due), Some((due, b)));
            }
            assert!(w.is_empty());
        }
    }

    #[test]
    fn ties_fire_in_insertion_order_across_cascades() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let deadline = t0 + ms(5_000);
        w.insert(deadline, 0);
        for (i, step) in [10u64, 100, 1_000, 4_096, 4_900, 4_990]
            .into_iter()
            .enumerate()
        {
            assert_eq!(w.poll(t0 + ms(step)), None);
            w.insert(deadline, i + 1);
        }
        w.insert(t0 + ms(4_999), 99);
        assert_eq!(drain(&mut w, t0 + ms(6_000)), vec![99, 0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn big_jump_drains_everything_in_order() {
        let t0 = Instant::now();
        let mut w = TimerWheel::with_capacity(t0, 1000);
        for i in (0..1000u64).rev() {
            w.insert(t0 + ms(i * i * 37), i);
        }
        let fired = drain(&mut w, t0 + ms(1 << 36));
        assert_eq!(fired, (0..1000).collect::<Vec<_>>());
        assert!(w.is_empty());
    }

    #[test]
    fn nanosecond_times_fire_like_instants() {
        let t0 = Instant::now();
        let mut by_instant = TimerWheel::new(t0);
        let mut by_ns = TimerWheel::new(5_000u64);
        let delays_ns = [
            0u64,
            1,
            999_999,
            1_000_000,
            1_000_001,
            64_500_000,
            3_000_000_123,
        ];
        for (i, &d) in delays_ns.iter().enumerate() {
            by_instant.insert(t0 + Duration::from_nanos(d), i);
            by_ns.insert(5_000 + d, i);
        }
        for now_ns in (0..3_100_000_000u64).step_by(250_000) {
            let at = by_ns
                .next_deadline()
                .map(|ns| t0 + Duration::from_nanos(ns - 5_000));
            assert_eq!(by_instant.next_deadline(), at);
            let fired = drain(&mut by_instant, t0 + Duration::from_nanos(now_ns));
            let mut fired_ns = Vec::new();
            while let Some((_, v)) = by_ns.poll(5_000 + now_ns) {
                fired_ns.push(v);
            }
            assert_eq!(fired, fired_ns, "at {now_ns} ns");
        }
        assert!(by_instant.is_empty() && by_ns.is_empty());
        // Before the origin counts as the origin; far deadlines saturate instead of wrapping.
        assert_eq!(100u64.ceil_ms_since(5_000), 0);
        assert_eq!(u64::MAX.floor_ms_since(0), u64::MAX / 1_000_000);
        assert_eq!(u64::plus_ms(u64::MAX - 5, 1), None);
    }

    #[test]
    fn placement_levels() {
        assert_eq!(level_for(0, 0), 0);
        assert_eq!(level_for(0, 63), 0);
        assert_eq!(level_for(0, 64), 1);
        assert_eq!(level_for(63, 64), 1);
        assert_eq!(level_for(64, 127), 0);
        assert_eq!(level_for(0, 4_096), 2);
        assert_eq!(level_for(0, MAX_DELAY), 5);
        assert_eq!(level_for(MAX_DELAY, MAX_DELAY + 5), 5);
        assert_eq!(slot_for(4_097, 0), 1);
        assert_eq!(slot_for(4_097, 2), 1);
    }
}
