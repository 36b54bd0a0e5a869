//! The core's timers, as data: each carries what it is for and a token that tells a stale
//! one apart when it fires (lazy cancel, as foca does), so nothing is ever searched for and
//! removed from the wheel.

use crate::core::peer_table::PeerId;

/// One pending wake-up of the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Heartbeats of one slot, of the slots built at `epoch`.
    Slot { slot: u32, epoch: u32 },
    /// A peer's liveness check; ignored once that peer is removed (its id is then refused
    /// by the peer table, even if the slot holds another peer).
    Liveness(PeerId),
    /// Retransmission of a confirmed message, for the round it was set in (a later round
    /// or the message's end makes it stale).
    Retransmit {
        peer: PeerId,
        number: u64,
        round: u32,
    },
    /// A query's deadline: who has not answered by now is missing.
    QueryDeadline(u64),
    /// Sampled mode: the targets of round `round` that have not answered get indirect
    /// probes (a later round makes it stale).
    IndirectProbes { round: u64 },
}
