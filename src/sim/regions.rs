//! A latency model of a multi-region cloud: nodes spread over twelve regions, the round
//! trip between two regions taken from a table of public figures, plus an access delay of
//! each node's own (its VM's virtual NIC and host). Unlike points on a plane, the table has
//! the clusters and triangle-inequality violations of real inter-region paths (São Paulo to
//! Dubai is slower than through Ireland), which is what network coordinates must cope with.
//!
//! The figures are round trips in ms, rounded to 5 ms, in line with published inter-region
//! measurements (Microsoft's "Azure network round-trip latency statistics",
//! learn.microsoft.com/azure/networking/azure-network-latency, and public AWS inter-region
//! ping tables); they are representative, not any one month's exact values.

use crate::core::rng::Rng;
use std::time::Duration;

/// The regions, in the order of [`REGION_RTT_MS`].
pub const REGIONS: [&str; 12] = [
    "us-east",
    "us-west",
    "ca-central",
    "sa-east",
    "eu-west",
    "eu-central",
    "eu-north",
    "me-central",
    "ap-south",
    "ap-southeast",
    "ap-northeast",
    "ap-southeast-2",
];

/// Upper triangle of the inter-region round-trip table in ms, row by row (us-east to
/// us-west, us-east to ca-central, …).
pub const REGION_RTT_MS: [u16; 66] = [
    65, 15, 115, 70, 90, 105, 200, 185, 215, 150, 200, // us-east
    60, 175, 125, 145, 155, 250, 220, 165, 100, 140, // us-west
    125, 70, 90, 100, 195, 190, 220, 155, 205, // ca-central
    175, 200, 210, 300, 300, 325, 255, 310, // sa-east
    25, 40, 120, 120, 170, 200, 255, // eu-west
    20, 100, 110, 155, 225, 250, // eu-central
    120, 135, 175, 240, 270, // eu-north
    30, 80, 140, 180, // me-central
    60, 125, 150, // ap-south
    70, 90,  // ap-southeast
    105, // ap-northeast
];

/// Round trip between two nodes of one region (different zones), before access delays.
pub const INTRA_REGION_RTT: Duration = Duration::from_micros(1000);

/// Where each simulated node is: its region and its one-way access delay.
#[derive(Clone, Debug)]
pub struct Regions {
    region: Vec<u8>,
    access_us: Vec<u16>,
}

impl Regions {
    /// `n` nodes dealt round-robin over the twelve regions (node `i` in region `i % 12`),
    /// each with a one-way access delay drawn from 50–500 µs with `seed`.
    pub fn spread(n: usize, seed: u64) -> Regions {
        let mut rng = Rng::new(seed);
        Regions {
            region: (0..n).map(|i| (i % REGIONS.len()) as u8).collect(),
            access_us: (0..n).map(|_| 50 + rng.below(451) as u16).collect(),
        }
    }

    /// How many nodes the model places.
    pub fn len(&self) -> usize {
        self.region.len()
    }

    /// Whether it places no node.
    pub fn is_empty(&self) -> bool {
        self.region.is_empty()
    }

    /// The region of node `i`.
    pub fn region(&self, i: usize) -> Option<&'static str> {
        Some(REGIONS[usize::from(*self.region.get(i)?)])
    }

    /// The round trip the table gives between two regions (by index).
    pub fn region_rtt(a: usize, b: usize) -> Duration {
        if a == b {
            return INTRA_REGION_RTT;
        }
        let (lo, hi) = (a.min(b), a.max(b));
        let n = REGIONS.len();
        // Row `lo` of the upper triangle starts after the rows above it.
        let index = lo * (2 * n - lo - 1) / 2 + (hi - lo - 1);
        Duration::from_millis(u64::from(REGION_RTT_MS[index]))
    }

    /// The one-way delay from node `from` to node `to`: half their regions' round trip plus
    /// both access delays. `None` for a node the model does not place.
    pub fn one_way(&self, from: usize, to: usize) -> Option<Duration> {
        let (ra, rb) = (*self.region.get(from)?, *self.region.get(to)?);
        let access = u64::from(self.access_us[from]) + u64::from(self.access_us[to]);
        Some(
            Regions::region_rtt(usize::from(ra), usize::from(rb)) / 2
                + Duration::from_micros(access),
        )
    }

    /// The true round trip between two nodes (both directions are symmetric).
    pub fn rtt(&self, a: usize, b: usize) -> Option<Duration> {
        Some(self.one_way(a, b)? * 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_read_by_region_pair_in_either_order() {
        assert_eq!(Regions::region_rtt(0, 1), Duration::from_millis(65));
        assert_eq!(Regions::region_rtt(1, 0), Duration::from_millis(65));
        assert_eq!(Regions::region_rtt(10, 11), Duration::from_millis(105));
        assert_eq!(Regions::region_rtt(4, 5), Duration::from_millis(25));
        assert_eq!(Regions::region_rtt(3, 7), Duration::from_millis(300));
        assert_eq!(Regions::region_rtt(2, 2), INTRA_REGION_RTT);
    }

    #[test]
    fn the_table_violates_the_triangle_inequality_somewhere_as_real_paths_do() {
        let n = REGIONS.len();
        let violated = (0..n).any(|a| {
            (0..n).any(|b| {
                (0..n).any(|c| {
                    a != b
                        && b != c
                        && a != c
                        && Regions::region_rtt(a, c)
                            > Regions::region_rtt(a, b) + Regions::region_rtt(b, c)
                })
            })
        });
        assert!(violated);
    }

    #[test]
    fn nodes_get_regions_round_robin_and_access_delays_in_range() {
        let model = Regions::spread(30, 1);
        assert_eq!(model.region(0), Some("us-east"));
        assert_eq!(model.region(13), Some("us-west"));
        assert_eq!(model.region(30), None);
        for a in 0..30 {
            for b in 0..30 {
                let rtt = model.rtt(a, b).unwrap_or_default();
                let base = Regions::region_rtt(a % 12, b % 12);
                assert!(rtt >= base + Duration::from_micros(200), "{a}-{b}");
                assert!(rtt <= base + Duration::from_micros(2000), "{a}-{b}");
                assert_eq!(model.rtt(a, b), model.rtt(b, a));
            }
        }
    }
}
