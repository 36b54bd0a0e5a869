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
/// Evidence is any of: a datagram from an incarnation older than the one held, proven
/// fresh (it names this node's current incarnation or answers its probe, so a live process
/// made it), from another address than the held incarnation's; or a restart announced from
/// another address while the previous incarnation was heard within the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RivalWatch {
    /// The address of the process that is not the one held right now.
    other: SocketAddr,
    first_ns: u64,
    last_ns: u64,
    active: bool,
}

impl RivalWatch {
    /// Records evidence at `now_ns` that a process at `other` claims the peer's identity.
    /// Returns true when this makes it a conflict (it was not one before).
    pub(crate) fn note(
        watch: &mut Option<RivalWatch>,
        other: SocketAddr,
        now_ns: u64,
        rules: &ConflictRules,
    ) -> bool {
        let w = match watch {
            Some(w) if now_ns.saturating_sub(w.last_ns) <= rules.window_ns => w,
            _ => watch.insert(RivalWatch {
                other,
                first_ns: now_ns,
                last_ns: now_ns,
                active: false,
            }),
        };
        w.other = other;
        w.last_ns = now_ns;
        let began = !w.active && now_ns.saturating_sub(w.first_ns) >= rules.span_ns;
        w.active |= began;
        began
    }

    /// Forgets the watch once no evidence came for the window. Returns true when a conflict
    /// ended with it.
    pub(crate) fn expire(
        watch: &mut Option<RivalWatch>,
        now_ns: u64,
        rules: &ConflictRules,
    ) -> bool {
        match watch {
            Some(w) if now_ns.saturating_sub(w.last_ns) > rules.window_ns => {
                let ended = w.active;
                *watch = None;
                ended
            }
            _ => false,
        }
    }

    /// Whether the evidence amounts to a conflict.
    pub(crate) fn is_active(&self) -> bool {
        self.active
    }

    /// The address of the process that is not the one held now.
    pub(crate) fn other(&self) -> SocketAddr {
        self.other
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
        })
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn evidence_within_moments_is_a_move_not_a_conflict() {
        let rules = rules();
        let mut watch = None;
        // A restart on another address, then two datagrams of the old process in flight.
        for at in [1_000 * MS, 1_002 * MS, 1_003 * MS] {
            assert!(!RivalWatch::note(&mut watch, addr(1), at, &rules));
        }
        assert!(!watch.is_some_and(|w| w.is_active()));
        // Nothing more: forgotten after the window, and no conflict ended.
        assert!(!RivalWatch::expire(&mut watch, 1_400 * MS, &rules));
        assert!(watch.is_some());
        assert!(!RivalWatch::expire(&mut watch, 1_504 * MS, &rules));
        assert!(watch.is_none());
    }

    #[test]
    fn evidence_spanning_an_interval_is_a_conflict_until_the_window_passes() {
        let rules = rules();
        let mut watch = None;
        assert!(!RivalWatch::note(&mut watch, addr(1), 1_000 * MS, &rules));
        assert!(!RivalWatch::note(&mut watch, addr(2), 1_050 * MS, &rules));
        assert!(RivalWatch::note(&mut watch, addr(1), 1_100 * MS, &rules));
        // Reported once.
        assert!(!RivalWatch::note(&mut watch, addr(2), 1_200 * MS, &rules));
        let w = watch.expect("watching");
        assert!(w.is_active());
        assert_eq!(w.other(), addr(2));
        assert!(!RivalWatch::expire(&mut watch, 1_700 * MS, &rules));
        assert!(RivalWatch::expire(&mut watch, 1_701 * MS, &rules));
        assert!(watch.is_none());
    }

    #[test]
    fn evidence_after_a_long_gap_starts_over() {
        let rules = rules();
        let mut watch = None;
        RivalWatch::note(&mut watch, addr(1), 1_000 * MS, &rules);
        // 600 ms later: the first piece is out of the window, so this one starts a new run.
        assert!(!RivalWatch::note(&mut watch, addr(1), 1_600 * MS, &rules));
        assert!(!watch.is_some_and(|w| w.is_active()));
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
