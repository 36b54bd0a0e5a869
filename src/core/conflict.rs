//! Two processes with one identity (a cloned machine image, a second `peermesh run` with a
//! name already in use): how the nodes that hear both, and the two processes themselves,
//! tell that from a peer that simply restarted or moved.
//!
//! Nothing here stops the conflict: the refutation rule keeps working, so the two processes
//! take turns at being believed until one stops, and the real node is believed again by
//! itself once the other is gone. What this adds is the verdict, so it can be said loudly.

use crate::core::liveness::saturating_ns;
use crate::core::settings::Settings;
use std::net::SocketAddr;

/// The timings of the conflict verdicts, from the settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConflictRules {
    /// Evidence older than this is forgotten, and a verdict ends this long after the last
    /// evidence (`dead_after`: by then one of the two is silent for good).
    window_ns: u64,
    /// Evidence must span at least this long (one heartbeat interval) before it is a
    /// conflict: a peer that moved to another address and restarted leaves a few datagrams
    /// of its old process in flight, all within a few milliseconds.
    span_ns: u64,
}

impl ConflictRules {
    pub(crate) fn new(settings: &Settings) -> ConflictRules {
        ConflictRules {
            window_ns: saturating_ns(settings.dead_after),
            span_ns: saturating_ns(settings.heartbeat_interval),
        }
    }

    /// How long evidence counts (`dead_after`), in ns.
    pub(crate) fn window_ns(&self) -> u64 {
        self.window_ns
    }
}

/// What a node saw of two processes claiming one peer's identity from two addresses.
///
/// Evidence is a datagram that shows a live process at some address claims the identity
/// while another incarnation is believed: one from an incarnation older than the one held,
/// proven fresh (it names this node's current incarnation or answers its probe, so a live
/// process made it), from another address than the held incarnation's; or a restart
/// announced from another address while the previous incarnation was heard within the
/// window. It is a **conflict** once evidence came from two addresses, each again at least
/// one span after the run of evidence began: two processes that keep taking turns. One
/// process that moved leaves evidence from its new address only (its refutations, if its
/// incarnation went back), or from the old one only for the moments its last datagrams are
/// in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RivalWatch {
    first_ns: u64,
    /// The (at most two) addresses evidence came from, with when each last sent some.
    live: [Option<(SocketAddr, u64)>; 2],
    active: bool,
}

/// A conflict verdict that changed with a piece of evidence or with time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConflictChange {
    /// Two processes claim the identity now.
    Began,
    /// No evidence came for the window: only one process is left.
    Ended,
}

impl RivalWatch {
    /// Records evidence at `now_ns` that a live process at `from` claims the identity.
    /// Returns what changed: a run that went quiet for the window ended first (so every
    /// `Began` is followed by an `Ended`), or this piece made the run a conflict.
    pub(crate) fn note(
        watch: &mut Option<Box<RivalWatch>>,
        from: SocketAddr,
        now_ns: u64,
        rules: &ConflictRules,
    ) -> Option<ConflictChange> {
        let ended = RivalWatch::expire(watch, now_ns, rules);
        let w = watch.get_or_insert_with(|| {
            Box::new(RivalWatch {
                first_ns: now_ns,
                live: [None, None],
                active: false,
            })
        });
        match w.live {
            [Some((a, _)), _] if a == from => w.live[0] = Some((from, now_ns)),
            [_, Some((b, _))] if b == from => w.live[1] = Some((from, now_ns)),
            [None, _] => w.live[0] = Some((from, now_ns)),
            [_, None] => w.live[1] = Some((from, now_ns)),
            // A third address: it takes the place of the one heard from longest ago.
            [Some((_, ta)), Some((_, tb))] => w.live[usize::from(tb < ta)] = Some((from, now_ns)),
        }
        let since = w.first_ns.saturating_add(rules.span_ns);
        let both_again = w.live.iter().all(|l| l.is_some_and(|(_, t)| t >= since));
        if !w.active && both_again {
            w.active = true;
            return Some(ConflictChange::Began);
        }
        ended.then_some(ConflictChange::Ended)
    }

    /// Forgets the watch once no evidence came for the window. Returns true when a conflict
    /// ended with it.
    pub(crate) fn expire(
        watch: &mut Option<Box<RivalWatch>>,
        now_ns: u64,
        rules: &ConflictRules,
    ) -> bool {
        match watch {
            Some(w) if now_ns.saturating_sub(w.last_ns()) > rules.window_ns => {
                let ended = w.active;
                *watch = None;
                ended
            }
            _ => false,
        }
    }

    fn last_ns(&self) -> u64 {
        self.live
            .iter()
            .flatten()
            .map(|&(_, t)| t)
            .max()
            .unwrap_or(self.first_ns)
    }

    /// The two addresses of a conflict; the one heard from last first.
    pub(crate) fn addresses(&self) -> Option<(SocketAddr, SocketAddr)> {
        match self.live {
            [Some((a, ta)), Some((b, tb))] if self.active => {
                Some(if ta >= tb { (a, b) } else { (b, a) })
            }
            _ => None,
        }
    }
}

/// This process's own side: peers holding this node at an incarnation it never took, so
/// it refutes. Once is a clock that went back or a quick restart; a second time within
/// the window means another live process keeps taking this node's name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RefutationWatch {
    /// The last refutation, in ns on the node's clock.
    last_ns: Option<u64>,
    /// Refutations in the current run (each within the window of the one before).
    count: u32,
    active: bool,
}

impl RefutationWatch {
    /// How much longer than the peer verdict's window a refutation counts: each of the two
    /// processes refutes only when the other's incarnation overtook its own at a peer, which
    /// takes a round of heartbeats or two.
    const WINDOW_FACTOR: u64 = 4;

    /// Records a refutation at `now_ns`. Returns true when this makes it a conflict.
    pub(crate) fn note(&mut self, now_ns: u64, rules: &ConflictRules) -> bool {
        let window = rules.window_ns.saturating_mul(Self::WINDOW_FACTOR);
        let continues = self
            .last_ns
            .is_some_and(|last| now_ns.saturating_sub(last) <= window);
        self.count = if continues {
            self.count.saturating_add(1)
        } else {
            1
        };
        self.last_ns = Some(now_ns);
        let began = !self.active && self.count >= 2;
        self.active |= began;
        began
    }

    /// Ends the verdict once no refutation came for the window. Returns true when a conflict
    /// ended.
    pub(crate) fn expire(&mut self, now_ns: u64, rules: &ConflictRules) -> bool {
        let window = rules.window_ns.saturating_mul(Self::WINDOW_FACTOR);
        match self.last_ns {
            Some(last) if now_ns.saturating_sub(last) > window => {
                let ended = self.active;
                *self = RefutationWatch::default();
                ended
            }
            _ => false,
        }
    }

    /// Whether another process is judged to run with this node's identity.
    pub(crate) fn is_active(&self) -> bool {
        self.active
    }

    /// Refutations in the current run.
    pub(crate) fn count(&self) -> u32 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MS: u64 = 1_000_000;

    fn rules() -> ConflictRules {
        ConflictRules::new(&Settings {
            heartbeat_interval: Duration::from_millis(100),
            suspect_after: Duration::from_millis(300),
            dead_after: Duration::from_millis(500),
            max_datagram: 1200,
            incarnation: 1,
            seed: 1,
            probe_mode: crate::core::ProbeMode::Auto,
            probe_fanout: crate::core::DEFAULT_PROBE_FANOUT,
        })
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn active(watch: &Option<Box<RivalWatch>>) -> bool {
        watch.as_ref().is_some_and(|w| w.addresses().is_some())
    }

    #[test]
    fn a_move_leaves_evidence_for_moments_and_is_no_conflict() {
        let rules = rules();
        let mut watch = None;
        // Restarted from the new address, then the old process's last datagrams in flight;
        // later the new process refutes (its clock went back) and restarts again, all from
        // the new address.
        for (at, from) in [(1_000, 2), (1_002, 1), (1_003, 1), (1_150, 2), (1_250, 2)] {
            assert_eq!(
                RivalWatch::note(&mut watch, addr(from), at * MS, &rules),
                None
            );
        }
        assert!(!active(&watch));
        // Nothing more: forgotten after the window, and no conflict ended.
        assert!(!RivalWatch::expire(&mut watch, 1_700 * MS, &rules));
        assert!(watch.is_some());
        assert!(!RivalWatch::expire(&mut watch, 1_751 * MS, &rules));
        assert!(watch.is_none());
    }

    #[test]
    fn two_addresses_taking_turns_for_an_interval_are_a_conflict_until_quiet() {
        let rules = rules();
        let mut watch = None;
        assert_eq!(
            RivalWatch::note(&mut watch, addr(2), 1_000 * MS, &rules),
            None
        );
        assert_eq!(
            RivalWatch::note(&mut watch, addr(1), 1_050 * MS, &rules),
            None
        );
        assert_eq!(
            RivalWatch::note(&mut watch, addr(2), 1_100 * MS, &rules),
            None
        );
        // Both again at least an interval after the first piece.
        assert_eq!(
            RivalWatch::note(&mut watch, addr(1), 1_150 * MS, &rules),
            Some(ConflictChange::Began)
        );
        // Reported once.
        assert_eq!(
            RivalWatch::note(&mut watch, addr(2), 1_200 * MS, &rules),
            None
        );
        let w = watch.as_ref().expect("watching");
        assert_eq!(w.addresses(), Some((addr(2), addr(1))));
        assert!(!RivalWatch::expire(&mut watch, 1_700 * MS, &rules));
        assert!(RivalWatch::expire(&mut watch, 1_701 * MS, &rules));
        assert!(watch.is_none());
    }

    #[test]
    fn evidence_after_a_quiet_window_ends_the_old_conflict_first() {
        let rules = rules();
        let mut watch = None;
        for (at, from) in [(1_000, 1), (1_100, 2), (1_150, 1)] {
            RivalWatch::note(&mut watch, addr(from), at * MS, &rules);
        }
        assert!(active(&watch));
        // 600 ms of nothing, then a piece before any expiry ran: the old verdict ends, and
        // this piece alone starts a new run that is no conflict yet.
        assert_eq!(
            RivalWatch::note(&mut watch, addr(1), 1_800 * MS, &rules),
            Some(ConflictChange::Ended)
        );
        assert!(!active(&watch));
    }

    #[test]
    fn one_refutation_is_not_a_conflict_two_close_together_are() {
        let rules = rules();
        let mut own = RefutationWatch::default();
        assert!(!own.note(1_000 * MS, &rules));
        assert!(!own.is_active());
        // 4 × dead_after later, the first one no longer counts.
        assert!(!own.note(3_001 * MS, &rules));
        assert_eq!(own.count(), 1);
        assert!(own.note(3_500 * MS, &rules));
        assert!(own.is_active());
        assert!(!own.note(3_900 * MS, &rules));
        assert_eq!(own.count(), 3);
        assert!(!own.expire(5_900 * MS, &rules));
        assert!(own.expire(5_901 * MS, &rules));
        assert!(!own.is_active());
    }
}
