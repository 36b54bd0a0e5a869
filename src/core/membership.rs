//! Sampled mode's membership: what this node holds of every node's liveness as the mesh
//! told it, and the updates it passes on (SWIM's dissemination, docs/PROTOCOL.md,
//! "Membership updates").
//!
//! One record per peer: the newest [`MemberUpdate`] heard of it, by precedence. Updates
//! that changed a record are passed on, piggy-backed on Pongs, a bounded number of times
//! (`RETRANSMIT_MULT` · ⌈log₂ N⌉, fewest sends first, so a new verdict overtakes old
//! news); the room left in a Pong carries records in turn (anti-entropy), so a node that
//! missed an update, or started late, still learns every record. Memory: one record per
//! peer and at most [`MAX_QUEUED`] updates, whatever peers send.

use crate::wire::identity::NodeId;
use crate::wire::member::{MemberUpdate, Verdict};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// At most this many updates wait to be passed on; past it the most-sent are dropped (the
/// records stay and still travel by anti-entropy).
pub(crate) const MAX_QUEUED: usize = 1024;

/// Each update is passed on `RETRANSMIT_MULT · ⌈log₂(N + 1)⌉` times: with every node
/// passing it on that often, an epidemic reaches all N nodes with high probability
/// (SWIM, Das et al. 2002, §4.4; memberlist uses the same form).
pub(crate) const RETRANSMIT_MULT: u32 = 3;

/// A record: the winning update without its subject (the slot it is held in says whose
/// it is), and for a suspicion whether a second prober stands behind it. 24 bytes, not
/// 56: a node holds one for every node of the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) incarnation: u64,
    /// Who raised it (the subject itself for `Alive` and `Left`, the first prober else).
    pub(crate) reporter: NodeId,
    pub(crate) version: u32,
    pub(crate) verdict: Verdict,
    /// A second prober, not `reporter`, raised the same suspicion.
    has_second: bool,
}

impl Record {
    /// The record of `update`, with no second prober.
    fn of(update: &MemberUpdate) -> Record {
        Record {
            incarnation: update.incarnation,
            reporter: update.reporter,
            version: update.version,
            verdict: update.verdict,
            has_second: false,
        }
    }

    /// The update it holds, of `subject`.
    pub(crate) fn update(&self, subject: NodeId) -> MemberUpdate {
        MemberUpdate {
            subject,
            incarnation: self.incarnation,
            version: self.version,
            verdict: self.verdict,
            reporter: self.reporter,
        }
    }

    /// As [`MemberUpdate::precedence`].
    fn precedence(&self) -> (u64, u32, Verdict) {
        (self.incarnation, self.version, self.verdict)
    }

    /// How many distinct probers suspect the subject at this record's version (0 unless
    /// it is a suspicion).
    pub(crate) fn suspectors(&self) -> usize {
        match self.verdict {
            Verdict::Suspect => 1 + usize::from(self.has_second),
            _ => 0,
        }
    }
}

/// What [`Membership::merge`] made of an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Merged {
    /// Older than, or the same as, what is held: nothing changed.
    Stale,
    /// The record changed to this verdict (or a second prober joined a suspicion).
    Changed(Verdict),
}

/// Every record, the queue of updates to pass on, and where anti-entropy is.
#[derive(Debug, Default)]
pub(crate) struct Membership {
    /// By peer slot key.
    records: Vec<Option<Record>>,
    /// This node's own liveness version: bumped to refute a suspicion of it.
    own_version: u32,
    /// Updates to pass on: (fewest sends first, newest first).
    queue: BinaryHeap<(Reverse<u32>, u64, QueuedUpdate)>,
    /// Counts queued updates, newest largest.
    queued_seq: u64,
    /// The next record anti-entropy sends.
    cursor: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct QueuedUpdate(MemberUpdate);

impl PartialOrd for QueuedUpdate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for QueuedUpdate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Only reached when sends and sequence tie, which never happens (sequence numbers
        // are unique); any total order does.
        self.0.subject.0.cmp(&other.0.subject.0)
    }
}

impl Membership {
    /// The record of peer `key`.
    pub(crate) fn record(&self, key: usize) -> Option<&Record> {
        self.records.get(key)?.as_ref()
    }

    /// This node's own liveness version.
    pub(crate) fn own_version(&self) -> u32 {
        self.own_version
    }

    /// How many updates wait to be passed on.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Forgets peer `key` (removed).
    pub(crate) fn forget(&mut self, key: usize) {
        if let Some(slot) = self.records.get_mut(key) {
            *slot = None;
        }
    }

    /// Merges an update of peer `key` by precedence; a changed record is queued to be
    /// passed on when it is news: a verdict other than `alive`, or an `alive` that ends one
    /// (a refutation, a restart after `dead`). An `alive` learnt of a node held alive, or
    /// held nothing of, travels by anti-entropy only: at a mesh's start every node's
    /// `alive` is new everywhere, and queueing them all would fill every Pong for minutes
    /// (N² · 3 log₂ N sends) and hold back the verdicts that matter. A suspicion at the held
    /// version from a second prober joins the record.
    pub(crate) fn merge(&mut self, key: usize, update: MemberUpdate) -> Merged {
        if self.records.len() <= key {
            self.records.resize(key + 1, None);
        }
        let slot = &mut self.records[key];
        match slot {
            Some(record) if update.precedence() < record.precedence() => Merged::Stale,
            Some(record) if update.precedence() == record.precedence() => {
                let joins = update.verdict == Verdict::Suspect
                    && !record.has_second
                    && update.reporter != record.reporter;
                if !joins {
                    return Merged::Stale;
                }
                record.has_second = true;
                self.enqueue(update);
                Merged::Changed(Verdict::Suspect)
            }
            _ => {
                let was_alive = slot.as_ref().is_none_or(|r| r.verdict == Verdict::Alive);
                *slot = Some(Record::of(&update));
                if update.verdict != Verdict::Alive || !was_alive {
                    self.enqueue(update);
                }
                Merged::Changed(update.verdict)
            }
        }
    }

    /// Takes what direct contact says (the peer's process `incarnation` runs) without
    /// passing it on: only the subject speaks for itself. Ignored once any record of that
    /// incarnation is held.
    pub(crate) fn note_contact(&mut self, key: usize, subject: NodeId, incarnation: u64) {
        if self.records.len() <= key {
            self.records.resize(key + 1, None);
        }
        let slot = &mut self.records[key];
        if slot.is_none_or(|r| r.incarnation < incarnation) {
            *slot = Some(Record::of(&MemberUpdate {
                subject,
                incarnation,
                version: 0,
                verdict: Verdict::Alive,
                reporter: subject,
            }));
        }
    }

    /// A peer says this node (`own`, process `incarnation`) is suspect, dead or gone at
    /// `version`: this node takes a later version and says it is alive (SWIM's refutation).
    /// Returns whether it refuted. (A node that is leaving does not call it.)
    pub(crate) fn refute(&mut self, own: NodeId, incarnation: u64, update: &MemberUpdate) -> bool {
        let claims_down = update.verdict != Verdict::Alive;
        if !claims_down || update.incarnation != incarnation || update.version < self.own_version {
            return false;
        }
        self.own_version = update.version.saturating_add(1);
        self.announce(own, incarnation, Verdict::Alive);
        true
    }

    /// Queues this node's own record (`Alive` at start and after a refutation, `Left`
    /// when it leaves).
    pub(crate) fn announce(&mut self, own: NodeId, incarnation: u64, verdict: Verdict) {
        self.enqueue(MemberUpdate {
            subject: own,
            incarnation,
            version: self.own_version,
            verdict,
            reporter: own,
        });
    }

    /// This node took a new process incarnation: its liveness version starts again.
    pub(crate) fn new_incarnation(&mut self) {
        self.own_version = 0;
    }

    fn enqueue(&mut self, update: MemberUpdate) {
        self.queued_seq += 1;
        if self.queue.len() >= 2 * MAX_QUEUED {
            // Keep the least-sent (and, among equals, newest) half. Trimmed before the push,
            // so the heap never grows past 2 · MAX_QUEUED: a node of a 10,000-node mesh
            // whose queue doubled to 4,096 would hold 100 KB more for good.
            let mut kept = std::mem::take(&mut self.queue).into_sorted_vec();
            kept.drain(..kept.len() - MAX_QUEUED);
            self.queue = kept.into();
        }
        self.queue
            .push((Reverse(0), self.queued_seq, QueuedUpdate(update)));
    }

    /// Fills `out` with up to `room` updates for one Pong: queued ones first (fewest sends
    /// first, each passed on at most `limit` times) in up to three quarters of the room,
    /// then records in turn, this node's own (`own`) among them as if it were slot
    /// `slot_bound`. The quarter kept for records lets a mesh that just started (every
    /// node's `alive` queued everywhere) converge by anti-entropy instead of waiting for
    /// the queues to drain.
    pub(crate) fn piggyback(
        &mut self,
        room: usize,
        limit: u32,
        own: MemberUpdate,
        slot_bound: usize,
        subject_of: impl Fn(usize) -> Option<NodeId>,
        out: &mut Vec<MemberUpdate>,
    ) {
        out.clear();
        let mut resend = Vec::new();
        let queued_room = room - room / 4;
        while out.len() < queued_room {
            let Some((Reverse(sent), seq, QueuedUpdate(update))) = self.queue.pop() else {
                break;
            };
            if out.iter().any(|u| u.subject == update.subject) {
                resend.push((Reverse(sent), seq, QueuedUpdate(update)));
                continue;
            }
            out.push(update);
            if sent + 1 < limit {
                resend.push((Reverse(sent + 1), seq, QueuedUpdate(update)));
            }
        }
        self.queue.extend(resend);
        // Anti-entropy: at most one full turn over the records per Pong.
        let turn = slot_bound + 1;
        for _ in 0..turn {
            if out.len() >= room {
                break;
            }
            let at = self.cursor % turn;
            self.cursor = (at + 1) % turn;
            let update = if at == slot_bound {
                Some(own)
            } else {
                let record = self.records.get(at).copied().flatten();
                record
                    .zip(subject_of(at))
                    .map(|(r, subject)| r.update(subject))
            };
            if let Some(update) = update.filter(|u| out.iter().all(|o| o.subject != u.subject)) {
                out.push(update);
            }
        }
    }
}

/// `RETRANSMIT_MULT · ⌈log₂(nodes + 1)⌉`: how often each update is passed on.
pub(crate) fn retransmit_limit(nodes: usize) -> u32 {
    // The bit length of N is ⌈log₂(N + 1)⌉.
    let log2 = usize::BITS - nodes.leading_zeros();
    RETRANSMIT_MULT * log2.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests' slots hold the subject of their number.
    fn slot_subject(key: usize) -> Option<NodeId> {
        Some(NodeId(key as u64))
    }

    fn update(subject: u64, version: u32, verdict: Verdict, reporter: u64) -> MemberUpdate {
        MemberUpdate {
            subject: NodeId(subject),
            incarnation: 7,
            version,
            verdict,
            reporter: NodeId(reporter),
        }
    }

    #[test]
    fn the_larger_precedence_wins_and_a_second_prober_joins_a_suspicion() {
        let mut m = Membership::default();
        assert_eq!(
            m.merge(0, update(1, 0, Verdict::Alive, 1)),
            Merged::Changed(Verdict::Alive)
        );
        assert_eq!(m.merge(0, update(1, 0, Verdict::Alive, 1)), Merged::Stale);
        assert_eq!(
            m.merge(0, update(1, 0, Verdict::Suspect, 2)),
            Merged::Changed(Verdict::Suspect)
        );
        assert_eq!(m.record(0).map(Record::suspectors), Some(1));
        assert_eq!(m.merge(0, update(1, 0, Verdict::Suspect, 2)), Merged::Stale);
        assert_eq!(
            m.merge(0, update(1, 0, Verdict::Suspect, 3)),
            Merged::Changed(Verdict::Suspect)
        );
        assert_eq!(m.record(0).map(Record::suspectors), Some(2));
        // An alive of the suspected version is older news; the refutation is not.
        assert_eq!(m.merge(0, update(1, 0, Verdict::Alive, 1)), Merged::Stale);
        assert_eq!(
            m.merge(0, update(1, 1, Verdict::Alive, 1)),
            Merged::Changed(Verdict::Alive)
        );
        assert_eq!(m.record(0).map(Record::suspectors), Some(0));
    }

    #[test]
    fn a_suspicion_of_this_node_is_refuted_with_a_later_version() {
        let mut m = Membership::default();
        let own = NodeId(9);
        assert!(m.refute(own, 7, &update(9, 0, Verdict::Suspect, 2)));
        assert_eq!(m.own_version(), 1);
        // Of another incarnation, of an older version, or not a suspicion: nothing.
        assert!(!m.refute(own, 8, &update(9, 1, Verdict::Suspect, 2)));
        assert!(!m.refute(own, 7, &update(9, 0, Verdict::Dead, 2)));
        assert!(m.refute(own, 7, &update(9, 1, Verdict::Left, 2)));
        assert_eq!(m.own_version(), 2);
        assert!(!m.refute(own, 7, &update(9, 5, Verdict::Alive, 2)));
        let mut out = Vec::new();
        let own_record = update(9, m.own_version(), Verdict::Alive, 9);
        m.piggyback(4, 10, own_record, 0, slot_subject, &mut out);
        assert_eq!(out[0].verdict, Verdict::Alive);
        assert_eq!(out[0].version, 2, "the newest refutation first");
    }

    #[test]
    fn updates_are_passed_on_a_bounded_number_of_times_newest_first() {
        let mut m = Membership::default();
        let own = update(99, 0, Verdict::Alive, 99);
        for subject in 0..3 {
            m.merge(subject as usize, update(subject, 0, Verdict::Suspect, 50));
        }
        let mut out = Vec::new();
        m.piggyback(1, 2, own, 3, slot_subject, &mut out);
        assert_eq!(out[0].subject, NodeId(2), "the newest unsent first");
        let mut sends = [0; 3];
        for _ in 0..20 {
            if m.queued() == 0 {
                break;
            }
            m.piggyback(1, 2, own, 3, slot_subject, &mut out);
            sends[out[0].subject.0 as usize] += 1;
        }
        assert_eq!(m.queued(), 0);
        assert_eq!(
            sends.iter().sum::<u32>(),
            5,
            "6 sends in all, the first counted before"
        );
    }

    #[test]
    fn anti_entropy_visits_every_record_and_the_own_one() {
        let mut m = Membership::default();
        for subject in 0..5 {
            m.merge(
                subject as usize,
                update(subject, 0, Verdict::Alive, subject),
            );
        }
        let own = update(99, 0, Verdict::Alive, 99);
        let mut out = Vec::new();
        // Drain the queue first.
        for _ in 0..50 {
            m.piggyback(2, 1, own, 5, slot_subject, &mut out);
        }
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            m.piggyback(2, 1, own, 5, slot_subject, &mut out);
            seen.extend(out.iter().map(|u| u.subject.0));
        }
        assert_eq!(seen.len(), 6, "{seen:?}");
    }

    #[test]
    fn only_news_is_queued_an_alive_of_a_node_held_alive_travels_by_anti_entropy() {
        let mut m = Membership::default();
        m.merge(0, update(1, 0, Verdict::Alive, 1));
        m.merge(0, update(1, 1, Verdict::Alive, 1));
        assert_eq!(m.queued(), 0);
        m.merge(0, update(1, 1, Verdict::Suspect, 2));
        assert_eq!(m.queued(), 1);
        m.merge(0, update(1, 2, Verdict::Alive, 1));
        assert_eq!(m.queued(), 2, "the refutation is news");
    }

    #[test]
    fn the_queue_stays_bounded() {
        let mut m = Membership::default();
        for subject in 0..(5 * MAX_QUEUED) as u64 {
            m.merge(subject as usize, update(subject, 0, Verdict::Dead, 50));
        }
        assert!(m.queued() <= 2 * MAX_QUEUED);
        assert!(
            m.queue.capacity() <= 2 * MAX_QUEUED,
            "the heap's buffer stays bounded too, not only its length"
        );
    }

    #[test]
    fn retransmissions_grow_with_the_log_of_the_mesh() {
        assert_eq!(retransmit_limit(1), 3);
        assert_eq!(retransmit_limit(1_000), 30);
        assert_eq!(retransmit_limit(10_000), 42);
    }

    #[test]
    fn a_record_slot_is_24_bytes() {
        // One per node of the mesh at every node: 56 bytes before the subject and the
        // second prober's identity left it.
        assert_eq!(std::mem::size_of::<Option<Record>>(), 24);
    }
}
