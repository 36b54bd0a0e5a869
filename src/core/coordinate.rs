//! Network coordinates: Vivaldi with a height (Dabek, Cox, Kaashoek, Morris, SIGCOMM 2004).
//!
//! Each node keeps a point in a small Euclidean space plus a non-negative *height*, so that
//! the distance between two nodes' coordinates predicts the round trip between them:
//! `‖xᵢ − xⱼ‖ + hᵢ + hⱼ`. The height stands for a node's access link, the part of every path
//! that no direction in the plane explains (a VM's virtual NIC, its host's uplink), which is
//! why Vivaldi with a height fits cloud latencies better than more dimensions alone.
//!
//! Every measured RTT pulls this node's coordinate along the line to the peer's, like a
//! spring whose rest length is the RTT, weighted by how sure each side is of its own
//! coordinate. Only the node that measured moves; the peer's coordinate comes with its Pong.
//! All arithmetic is in seconds as `f64`; the wire carries `f32` (see `docs/PROTOCOL.md`).

use crate::core::rng::Rng;
use crate::wire::coordinate::in_range;
use crate::wire::WireCoordinate;
use std::time::Duration;

/// Dimensions of the Euclidean part, fixed by the wire format. Four plus a height estimate
/// the simulator's multi-region mesh well (`tests/coordinates.rs`).
pub use crate::wire::coordinate::DIMENSIONS;
/// No component, height or RTT outside ±this many seconds is believed.
pub use crate::wire::coordinate::LIMIT_S;
/// Error estimate of a node that has measured nothing: the largest allowed, so its first
/// samples move it far and its peers trust it little.
pub use crate::wire::coordinate::MAX_ERROR;

/// The smallest height, in seconds: every real path has some access delay, and a height of
/// zero could never grow again (the update scales it by itself). 1 µs, not more: loopback
/// and same-host paths take 5–10 µs, and two heights of 10 µs kept every estimate above 20.
pub const MIN_HEIGHT: f64 = 1e-6;

/// Below this error estimate a coordinate counts as settled: only then does it take part
/// in estimates ([`Coordinate::is_settled`]). A node starts at [`MAX_ERROR`]; its first
/// samples bring it below 1 within a few intervals.
pub const SETTLED_ERROR: f64 = 1.0;

/// How much one sample moves the error estimate (Vivaldi's `c_e`).
const ERROR_GAIN: f64 = 0.25;
/// How much one sample moves the coordinate (Vivaldi's `c_c`). The paper's 0.25 suits a
/// node that hears a few peers a second; here every Pong moves it (about a hundred a second
/// in a 100-node mesh), and on the twelve-region model 0.25 left a median error of 11 % and
/// a p90 of 29 %, 0.05 gives 9 % and 18 % (0.02: 8.7 % and 17 %, but slower to converge).
const MOVE_GAIN: f64 = 0.05;

/// One node's network coordinate and how far it trusts it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coordinate {
    /// The Euclidean part, in seconds.
    pub vec: [f64; DIMENSIONS],
    /// The height, in seconds, at least [`MIN_HEIGHT`].
    pub height: f64,
    /// The node's estimate of its own relative error, from 0 (sure) to [`MAX_ERROR`].
    pub error: f64,
}

impl Default for Coordinate {
    fn default() -> Coordinate {
        Coordinate {
            vec: [0.0; DIMENSIONS],
            height: MIN_HEIGHT,
            error: MAX_ERROR,
        }
    }
}

impl Coordinate {
    /// A coordinate from its fields, or `None` when they break the wire's range rule
    /// ([`in_range`]: finite, within ±[`LIMIT_S`], height ≥ 0, error in `0..=MAX_ERROR`).
    pub fn checked(vec: [f64; DIMENSIONS], height: f64, error: f64) -> Option<Coordinate> {
        in_range(vec, height, error).then_some(Coordinate {
            vec,
            height: height.max(MIN_HEIGHT),
            error,
        })
    }

    /// The coordinate a peer sent, as this node computes with it; `None` when a field is
    /// out of range (a decoded Pong's never is: the wire layer checks the same ranges).
    pub fn from_wire(wire: &WireCoordinate) -> Option<Coordinate> {
        let mut vec = [0.0; DIMENSIONS];
        for (v, w) in vec.iter_mut().zip(wire.vec.iter()) {
            *v = f64::from(*w);
        }
        Coordinate::checked(vec, f64::from(wire.height), f64::from(wire.error))
    }

    /// Whether the coordinate has settled enough to estimate with (its error estimate is
    /// below [`SETTLED_ERROR`]): a node that has barely measured anything sits near the
    /// origin, and an estimate from there would be noise marked as a figure.
    pub fn is_settled(&self) -> bool {
        self.error < SETTLED_ERROR
    }

    /// This coordinate as a Pong carries it.
    pub fn to_wire(&self) -> WireCoordinate {
        let mut vec = [0f32; DIMENSIONS];
        for (w, v) in vec.iter_mut().zip(self.vec.iter()) {
            *w = *v as f32;
        }
        WireCoordinate {
            vec,
            height: self.height as f32,
            error: self.error as f32,
        }
    }

    /// The round trip these two coordinates predict, in seconds.
    pub fn distance_s(&self, other: &Coordinate) -> f64 {
        self.plane_distance(other) + self.height + other.height
    }

    /// The round trip these two coordinates predict, at most [`LIMIT_S`] (also for a
    /// coordinate built by hand with a non-finite field).
    pub fn estimate_rtt(&self, other: &Coordinate) -> Duration {
        let s = self.distance_s(other);
        let s = if s.is_finite() {
            s.clamp(0.0, LIMIT_S)
        } else {
            LIMIT_S
        };
        Duration::from_secs_f64(s)
    }

    fn plane_distance(&self, other: &Coordinate) -> f64 {
        self.vec
            .iter()
            .zip(other.vec.iter())
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt()
    }

    /// Moves this coordinate after measuring `rtt` to a node at `remote`. `rng` picks a
    /// direction when the two coordinates coincide (every node starts at the origin).
    /// A zero or absurd RTT is ignored.
    pub fn observe(&mut self, remote: &Coordinate, rtt: Duration, rng: &mut Rng) {
        let rtt = rtt.as_secs_f64();
        if !(rtt > 0.0 && rtt <= LIMIT_S) {
            return;
        }
        let before = *self;
        let predicted = self.distance_s(remote);
        // Weight by how sure each side is: a confident node moves less towards an unsure one.
        let weight = self.error / (self.error + remote.error).max(f64::MIN_POSITIVE);
        let sample_error = (predicted - rtt).abs() / rtt;
        self.error = (sample_error * ERROR_GAIN * weight
            + self.error * (1.0 - ERROR_GAIN * weight))
            .clamp(0.0, MAX_ERROR);
        // Push along the unit vector from the remote to this node; a positive force (the
        // prediction is too short) moves away, a negative one closer.
        let force = MOVE_GAIN * weight * (rtt - predicted);
        let mut direction = [0.0; DIMENSIONS];
        let plane = self.plane_distance(remote);
        let coincident = plane <= 1e-12;
        if coincident && force < 0.0 {
            // Already as close as two coordinates get: any move in the plane would only
            // lengthen the prediction.
            return;
        }
        if !coincident {
            for (d, (a, b)) in direction
                .iter_mut()
                .zip(self.vec.iter().zip(remote.vec.iter()))
            {
                *d = (a - b) / plane;
            }
        } else {
            // Coincident: any direction will do, but a random one, so that nodes starting
            // together spread out instead of moving as one.
            for d in direction.iter_mut() {
                *d = rng.next_f64() - 0.5;
            }
            let norm = direction.iter().map(|d| d * d).sum::<f64>().sqrt();
            for d in direction.iter_mut() {
                *d /= norm.max(f64::MIN_POSITIVE);
            }
        }
        // The height takes its share of the force in proportion to the share of the
        // predicted distance the heights make up (the height vector of the paper). Two
        // coincident nodes separate in the plane first: else the heights would take the whole
        // force and the plane would never be used.
        let total = plane + self.height + remote.height;
        let height_share = if coincident || total <= 0.0 {
            0.0
        } else {
            (self.height + remote.height) / total
        };
        let plane_share = 1.0 - height_share;
        for (v, d) in self.vec.iter_mut().zip(direction.iter()) {
            *v += force * plane_share * d;
        }
        self.height = (self.height + force * height_share).max(MIN_HEIGHT);
        if Coordinate::checked(self.vec, self.height, self.error).is_none() {
            // Never let one absurd sample carry the coordinate out of bounds for good.
            *self = before;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WireCoordinate;

    fn ms(v: f64) -> Duration {
        Duration::from_secs_f64(v / 1000.0)
    }

    /// `n` coordinates after `rounds` rounds of every node observing every other at the
    /// round trip `truth(i, j)` in ms.
    fn fit(
        n: usize,
        rounds: usize,
        seed: u64,
        truth: impl Fn(usize, usize) -> f64,
    ) -> Vec<Coordinate> {
        let mut coords = vec![Coordinate::default(); n];
        let mut rng = Rng::new(seed);
        for _ in 0..rounds {
            for i in 0..n {
                for j in (0..n).filter(|&j| j != i) {
                    let remote = coords[j];
                    coords[i].observe(&remote, ms(truth(i, j)), &mut rng);
                }
            }
        }
        coords
    }

    /// The largest relative error of any pair's estimate.
    fn worst_error(coords: &[Coordinate], truth: impl Fn(usize, usize) -> f64) -> f64 {
        let n = coords.len();
        (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| {
                let estimate = coords[i].distance_s(&coords[j]) * 1000.0;
                (estimate - truth(i, j)).abs() / truth(i, j)
            })
            .fold(0.0, f64::max)
    }

    /// Nodes on a line at 0, 10, 20, 30 and 45 ms (plus 1 ms of access delay at each end):
    /// a few hundred rounds of every node observing every other make the estimates exact
    /// to within a few percent.
    #[test]
    fn coordinates_converge_to_a_metric_with_access_delays() {
        let positions: [f64; 5] = [0.0, 10.0, 20.0, 30.0, 45.0];
        let truth = |i: usize, j: usize| (positions[i] - positions[j]).abs() + 2.0;
        let coords = fit(positions.len(), 300, 7, truth);
        let worst = worst_error(&coords, truth);
        assert!(worst < 0.05, "worst relative error {worst}");
        for c in &coords {
            assert!(c.error < 0.2, "error estimate {}", c.error);
        }
    }

    #[test]
    fn a_node_that_observes_moves_and_the_error_estimate_falls() {
        let mut me = Coordinate::default();
        let remote = Coordinate {
            error: 0.1,
            ..Coordinate::default()
        };
        let mut rng = Rng::new(1);
        me.observe(&remote, ms(50.0), &mut rng);
        assert!(me.distance_s(&remote) > 0.0);
        assert!(me.error < MAX_ERROR);
        let before = me.distance_s(&remote);
        for _ in 0..300 {
            me.observe(&remote, ms(50.0), &mut rng);
        }
        let after = me.distance_s(&remote);
        assert!(
            (after - 0.05).abs() < (before - 0.05).abs(),
            "{before} -> {after}"
        );
        assert!((after - 0.05).abs() < 0.0025, "{after}");
    }

    #[test]
    fn absurd_samples_and_coordinates_are_refused() {
        let mut me = Coordinate::default();
        let mut rng = Rng::new(1);
        let start = me;
        me.observe(&Coordinate::default(), Duration::ZERO, &mut rng);
        me.observe(&Coordinate::default(), Duration::from_secs(1000), &mut rng);
        assert_eq!(me, start);
        let vec = [0.0; DIMENSIONS];
        assert!(Coordinate::checked(vec, f64::NAN, 0.5).is_none());
        assert!(Coordinate::checked(vec, -0.1, 0.5).is_none());
        assert!(Coordinate::checked(vec, 0.0, 2.0).is_none());
        assert!(Coordinate::checked([1e9, 0.0, 0.0, 0.0], 0.0, 0.5).is_none());
        let raised = Coordinate::checked(vec, 0.0, 0.5).map(|c| c.height);
        assert_eq!(raised, Some(MIN_HEIGHT));
        let broken = Coordinate {
            height: f64::NAN,
            ..Coordinate::default()
        };
        assert_eq!(
            broken.estimate_rtt(&Coordinate::default()),
            Duration::from_secs_f64(LIMIT_S)
        );
        let nan = WireCoordinate {
            error: f32::NAN,
            ..WireCoordinate::default()
        };
        assert_eq!(Coordinate::from_wire(&nan), None);
        assert!(!Coordinate::default().is_settled());
    }

    #[test]
    fn the_height_takes_up_each_nodes_access_delay() {
        // Twelve nodes at one site, each behind its own access delay of 1 to 12 ms: every
        // path is the two delays added, which no placement in four dimensions reproduces
        // (twelve points cannot all be so arranged), but heights do.
        let access: Vec<f64> = (1..=12).map(f64::from).collect();
        let truth = |i: usize, j: usize| access[i] + access[j];
        let coords = fit(access.len(), 400, 3, truth);
        let worst = worst_error(&coords, truth);
        assert!(worst < 0.15, "worst relative error {worst}");
        let (low, high) = (coords[0].height, coords[11].height);
        assert!(high > low + 0.005, "heights {low} and {high}");
    }
}
