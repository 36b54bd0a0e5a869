//! How a node chooses whom to probe: every peer each interval (`full`), or a bounded
//! sample of them (`sampled`), so that the work per node does not grow with the mesh.

use std::fmt;
use std::str::FromStr;

/// Meshes of up to this many nodes (this one included) run `full` when the mode is
/// [`ProbeMode::Auto`]. At 64 nodes a full mesh sends 126 datagrams a second per node at a
/// 1 s interval, about what a sampled node sends at the default fanout plus its share of
/// indirect probes; above, the full mesh costs more and more, the sampled one the same.
pub const AUTO_FULL_UP_TO: usize = 64;

/// The default number of peers a sampled node probes each interval: half its nearest by
/// estimate, half a rotating sample. 16 measured peers per node gave a median estimate
/// error of 9.0 % and a p90 of 30.9 % over 96 nodes in 12 regions, 8 gave 11.7 % and 49.8 %
/// (docs/PERFORMANCE.md, "Sampled probing").
pub const DEFAULT_PROBE_FANOUT: usize = 16;

/// The smallest and largest `probe_fanout` accepted.
pub const PROBE_FANOUT_RANGE: std::ops::RangeInclusive<usize> = 2..=256;

/// Which probing a node runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProbeMode {
    /// `full` up to [`AUTO_FULL_UP_TO`] nodes, `sampled` above.
    #[default]
    Auto,
    /// Every peer is pinged every interval; every node shares its whole row.
    Full,
    /// A bounded sample is pinged every interval; liveness spreads by gossip (SWIM).
    Sampled,
}

impl ProbeMode {
    /// The mode a mesh of `nodes` nodes (this one included) runs: never `Auto`.
    pub fn resolve(self, nodes: usize) -> ProbeMode {
        match self {
            ProbeMode::Auto if nodes > AUTO_FULL_UP_TO => ProbeMode::Sampled,
            ProbeMode::Auto => ProbeMode::Full,
            mode => mode,
        }
    }

    /// The name used in `peers.ron` and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeMode::Auto => "auto",
            ProbeMode::Full => "full",
            ProbeMode::Sampled => "sampled",
        }
    }
}

impl fmt::Display for ProbeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `probe_mode` that is none of `auto`, `full`, `sampled`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownProbeMode;

impl fmt::Display for UnknownProbeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probe_mode must be \"auto\", \"full\" or \"sampled\"")
    }
}

impl std::error::Error for UnknownProbeMode {}

impl FromStr for ProbeMode {
    type Err = UnknownProbeMode;

    fn from_str(s: &str) -> Result<ProbeMode, UnknownProbeMode> {
        match s {
            "auto" => Ok(ProbeMode::Auto),
            "full" => Ok(ProbeMode::Full),
            "sampled" => Ok(ProbeMode::Sampled),
            _ => Err(UnknownProbeMode),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_full_up_to_the_threshold_and_sampled_above() {
        assert_eq!(ProbeMode::Auto.resolve(AUTO_FULL_UP_TO), ProbeMode::Full);
        assert_eq!(
            ProbeMode::Auto.resolve(AUTO_FULL_UP_TO + 1),
            ProbeMode::Sampled
        );
        assert_eq!(ProbeMode::Full.resolve(10_000), ProbeMode::Full);
        assert_eq!(ProbeMode::Sampled.resolve(3), ProbeMode::Sampled);
    }

    #[test]
    fn names_round_trip_and_others_are_refused() {
        for mode in [ProbeMode::Auto, ProbeMode::Full, ProbeMode::Sampled] {
            assert_eq!(mode.as_str().parse::<ProbeMode>(), Ok(mode));
        }
        assert_eq!("Full".parse::<ProbeMode>(), Err(UnknownProbeMode));
    }
}
