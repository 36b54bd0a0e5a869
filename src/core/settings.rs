//! The settings one node's core runs with: timings, datagram size, incarnation, seed.
//!
//! Plain data: the config layer builds them from `peers.ron`, an embedder by hand.

use crate::core::probe_mode::ProbeMode;
use std::time::Duration;

/// Timing and size settings of one node's core.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// How often each peer is pinged.
    pub heartbeat_interval: Duration,
    /// Silence after which a peer is `suspect`.
    pub suspect_after: Duration,
    /// Silence after which a peer is `dead`.
    pub dead_after: Duration,
    /// No datagram this node emits is longer than this.
    pub max_datagram: usize,
    /// This process's incarnation: random per start, so peers tell a restart apart.
    pub incarnation: u64,
    /// Seed of this node's own random draws: where its seal counter starts and how far a
    /// refutation steps its incarnation (heartbeat timing comes from the shared clock, so
    /// that nodes stay aligned). Random per process in the driver; fixed in the simulator,
    /// so runs are reproducible.
    pub seed: u64,
    /// Whom to probe each interval: everyone, a sample, or chosen by the mesh's size.
    pub probe_mode: ProbeMode,
    /// In `sampled` mode, how many peers are probed each interval
    /// ([`crate::core::probe_mode::DEFAULT_PROBE_FANOUT`] by default).
    pub probe_fanout: usize,
}
