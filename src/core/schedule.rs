//! The heartbeat schedule: which peers are pinged in which wake-up.
//!
//! Peers are grouped by their place in the listing, [`SLOT_PEERS`] to a group, and all
//! pings of a group go out in one wake-up. Slot `s` of an interval starts `s` slot widths
//! after a boundary of a clock all nodes share, so a node's peers ping it in the same slot
//! as it pings them: few wake-ups, and never more than a group at once. Only the peers
//! handed to the schedule are probed: a table may hold more.

use crate::core::peer_table::Member;
use crate::core::rng::Rng;
use crate::core::timer::Timer;
use crate::core::wheel::TimerWheel;

/// Peers to a heartbeat slot: the pings one wake-up sends (and, as every node uses the same
/// slots, about the pings it receives at once).
pub const SLOT_PEERS: usize = 32;

/// Slots, when each is due, and which one also refreshes the row.
#[derive(Debug)]
pub(crate) struct HeartbeatSchedule {
    interval_ns: u64,
    /// Peer slots (table keys) per heartbeat slot.
    slots: Vec<Vec<usize>>,
    /// When each slot is next due, before jitter, in nanoseconds since the node started.
    due: Vec<u64>,
    /// Bumped when the slots are rebuilt: older slot timers are ignored when they fire.
    epoch: u32,
    /// The slot whose wake-up also rebuilds this node's row and re-judges the peers against
    /// the others' rows: the first slot with peers, so once an interval, on a wake-up the
    /// node makes anyway, just before the pings that carry the row.
    refresh_slot: usize,
    /// How long before the node's start an interval boundary of the shared clock was, in
    /// nanoseconds: slot times are counted from that boundary.
    phase_offset_ns: u64,
}

impl HeartbeatSchedule {
    pub(crate) fn new(interval_ns: u64) -> HeartbeatSchedule {
        HeartbeatSchedule {
            interval_ns: interval_ns.max(1),
            slots: Vec::new(),
            due: Vec::new(),
            epoch: 0,
            refresh_slot: 0,
            phase_offset_ns: 0,
        }
    }

    /// Counts slot times from a boundary `into_interval_ns` before the node's start, or
    /// from the start when `representable` is false (a boundary before the clock's origin).
    pub(crate) fn set_phase(&mut self, into_interval_ns: u64, representable: bool) {
        self.phase_offset_ns = if representable {
            into_interval_ns % self.interval_ns
        } else {
            0
        };
    }

    pub(crate) fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// Groups the probed members of `roster` into slots and schedules every slot afresh.
    pub(crate) fn rebuild(
        &mut self,
        roster: &[Member],
        now_ns: u64,
        timers: &mut TimerWheel<Timer, u64>,
    ) {
        let count = roster.len().div_ceil(SLOT_PEERS).max(1);
        let own = roster.iter().position(|m| *m == Member::OWN).unwrap_or(0);
        let own_group = own / SLOT_PEERS;
        let mut slots = vec![Vec::new(); count];
        for (position, member) in roster.iter().enumerate() {
            if let Some(key) = member.key() {
                slots[(own_group + position / SLOT_PEERS) % count].push(key);
            }
        }
        self.refresh_slot = slots.iter().position(|s| !s.is_empty()).unwrap_or(0);
        self.slots = slots;
        self.epoch = self.epoch.wrapping_add(1);
        self.due = (0..count).map(|s| self.next_start(s, now_ns)).collect();
        for slot in 0..count {
            if !self.slots[slot].is_empty() {
                self.schedule(slot, timers);
            }
        }
    }

    /// One slot and no peers in it, due once an interval on the shared clock: sampled
    /// mode's round, which picks its own targets.
    pub(crate) fn rebuild_rounds(&mut self, now_ns: u64, timers: &mut TimerWheel<Timer, u64>) {
        self.slots = vec![Vec::new()];
        self.refresh_slot = 0;
        self.epoch = self.epoch.wrapping_add(1);
        self.due = vec![self.next_start(0, now_ns)];
        self.schedule(0, timers);
    }

    /// Whether a slot timer of `epoch` belongs to the current slots.
    pub(crate) fn is_current(&self, epoch: u32) -> bool {
        epoch == self.epoch
    }

    pub(crate) fn is_refresh_slot(&self, slot: usize) -> bool {
        slot == self.refresh_slot
    }

    /// The peers (table keys) slot `slot` pings.
    pub(crate) fn peers(&self, slot: usize) -> &[usize] {
        self.slots.get(slot).map_or(&[], Vec::as_slice)
    }

    /// Slot `slot` fired at `now_ns`: its next beat is one interval later on the shared
    /// grid; beats missed while the process was frozen are skipped, not sent in a burst.
    pub(crate) fn advance(
        &mut self,
        slot: usize,
        now_ns: u64,
        timers: &mut TimerWheel<Timer, u64>,
    ) {
        let Some(&due) = self.due.get(slot) else {
            return;
        };
        let next = due.saturating_add(self.interval_ns);
        self.due[slot] = if next > now_ns {
            next
        } else {
            self.next_start(slot, now_ns)
        };
        self.schedule(slot, timers);
    }

    /// The first start of slot `slot` at or after `after` (nanoseconds since the start).
    fn next_start(&self, slot: usize, after: u64) -> u64 {
        let interval = self.interval_ns;
        let width = interval / self.slots.len().max(1) as u64;
        // Counted from the shared clock's boundary, which may be before this node's start.
        let start = width * slot as u64;
        let after = after.saturating_add(self.phase_offset_ns);
        let next = if start >= after {
            start
        } else {
            start.saturating_add((after - start).div_ceil(interval).saturating_mul(interval))
        };
        next - self.phase_offset_ns
    }

    /// Schedules slot `slot` at its due time plus a little jitter: at most 2% of the
    /// interval and a quarter of a slot, so slots never run into each other. The jitter is
    /// drawn from the interval's number on the shared clock, not from this node's generator:
    /// every node moves by the same amount, so their pings still arrive together.
    fn schedule(&mut self, slot: usize, timers: &mut TimerWheel<Timer, u64>) {
        let interval = self.interval_ns;
        let width = interval / self.slots.len().max(1) as u64;
        let number = self.due[slot].saturating_add(self.phase_offset_ns) / interval;
        let mut shared = Rng::new(number ^ ((slot as u64) << 48));
        let jitter = shared.below((interval / 50).min(width / 4) + 1);
        let at = self.due[slot].saturating_add(jitter);
        timers.insert(
            at,
            Timer::Slot {
                slot: slot as u32,
                epoch: self.epoch,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn roster(peers: usize, own_at: usize) -> Vec<Member> {
        let mut roster: Vec<Member> = (0..peers).map(Member::peer).collect();
        roster.insert(own_at, Member::OWN);
        roster
    }

    #[test]
    fn a_node_pings_a_peer_in_the_slot_the_peer_pings_it_in() {
        // 70 nodes: groups 0..32, 32..64, 64..70. The node at position a pings the node at
        // position b in slot (group(a) + group(b)) % 3: the same slot as b pings a.
        let slot_of = |me: usize, other: usize| {
            let mut timers = TimerWheel::new(0);
            let mut schedule = HeartbeatSchedule::new(1000 * MS);
            schedule.rebuild(&roster(69, me), 0, &mut timers);
            // Peer key k sits at position k, or k + 1 past this node.
            let key = if other < me { other } else { other - 1 };
            (0..3).find(|&s| schedule.peers(s).contains(&key))
        };
        for (a, b) in [
            (0, 40),
            (40, 0),
            (5, 69),
            (69, 5),
            (33, 63),
            (63, 33),
            (64, 65),
        ] {
            assert_eq!(slot_of(a, b), slot_of(b, a), "positions {a} and {b}");
            assert!(slot_of(a, b).is_some());
        }
        let mut timers = TimerWheel::new(0);
        let mut schedule = HeartbeatSchedule::new(1000 * MS);
        schedule.rebuild(&roster(69, 40), 0, &mut timers);
        let sizes: Vec<usize> = (0..3).map(|s| schedule.peers(s).len()).collect();
        assert_eq!(sizes, [6, 32, 31]);
        assert!(schedule.is_refresh_slot(0), "the first slot with peers");
        let mut fired = Vec::new();
        while let Some((at, timer)) = timers.poll(u64::MAX) {
            fired.push((at, timer));
        }
        assert_eq!(fired.len(), 3);
        for (at, timer) in fired {
            let Timer::Slot { slot, epoch } = timer else {
                panic!("{timer:?}")
            };
            assert!(schedule.is_current(epoch));
            // Slot s starts s thirds of an interval in, with at most 2% jitter.
            let start = u64::from(slot) * 1000 * MS / 3;
            assert!(at >= start && at <= start + 20 * MS, "slot {slot} at {at}");
        }
    }

    #[test]
    fn a_rebuild_makes_older_slot_timers_stale_and_a_late_slot_skips_missed_beats() {
        let mut timers = TimerWheel::new(0);
        let mut schedule = HeartbeatSchedule::new(1000 * MS);
        schedule.rebuild(&roster(3, 0), 0, &mut timers);
        let Some((_, Timer::Slot { epoch: old, .. })) = timers.poll(u64::MAX) else {
            panic!("no slot timer")
        };
        schedule.rebuild(&roster(4, 0), 0, &mut timers);
        assert!(!schedule.is_current(old));
        // Frozen for 5.5 intervals: the next beat is the next boundary, not five in a row.
        schedule.advance(0, 5_500 * MS, &mut timers);
        let mut current = Vec::new();
        while let Some((at, timer)) = timers.poll(u64::MAX) {
            if matches!(timer, Timer::Slot { epoch, .. } if schedule.is_current(epoch)) {
                current.push(at);
            }
        }
        assert_eq!(
            current.len(),
            2,
            "the rebuild's and the advanced one: {current:?}"
        );
        let late = current.iter().max().copied().unwrap_or(0);
        assert!((6_000 * MS..=6_020 * MS).contains(&late), "{late}");
    }

    #[test]
    fn slots_line_up_with_the_shared_clock() {
        let mut timers = TimerWheel::new(0);
        let mut schedule = HeartbeatSchedule::new(1000 * MS);
        // Started 300 ms after a boundary: slot 0 is due 700 ms after the start.
        schedule.set_phase(300 * MS, true);
        schedule.rebuild(&roster(2, 0), 0, &mut timers);
        let Some((at, _)) = timers.poll(u64::MAX) else {
            panic!("no timer")
        };
        assert!((700 * MS..=720 * MS).contains(&at), "{at}");
    }
}
