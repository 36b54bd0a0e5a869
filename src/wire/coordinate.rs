//! A network coordinate as it travels in a Pong: the responder's Vivaldi coordinate, so the
//! node that measured the round trip can move its own (see `docs/PROTOCOL.md`, Pong).
//!
//! Six big-endian IEEE 754 `f32`s: the [`DIMENSIONS`] components, the height and the error
//! estimate, every one in seconds but the error (a ratio). A value that is not finite or
//! lies outside its range makes the datagram malformed: a peer cannot push a coordinate
//! that poisons the arithmetic of its receivers.

/// Components of the Euclidean part, fixed for this protocol version.
pub const DIMENSIONS: usize = 4;
/// Encoded length: the components, the height, the error.
pub const COORDINATE_LEN: usize = 4 * (DIMENSIONS + 2);
/// No component or height lies beyond ±this many seconds.
pub const LIMIT_S: f64 = 100.0;
/// The largest error estimate (a node that has measured nothing).
pub const MAX_ERROR: f64 = 1.5;

/// The one range rule of a coordinate, on the wire and in the core: every component and the
/// height finite and within ±[`LIMIT_S`], the height not negative, the error finite and in
/// `0..=MAX_ERROR`.
pub fn in_range(components: impl IntoIterator<Item = f64>, height: f64, error: f64) -> bool {
    let within = |v: f64| v.is_finite() && v.abs() <= LIMIT_S;
    components.into_iter().all(within)
        && within(height)
        && height >= 0.0
        && error.is_finite()
        && (0.0..=MAX_ERROR).contains(&error)
}

/// A coordinate's fields, as decoded and checked.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WireCoordinate {
    /// The Euclidean part, in seconds.
    pub vec: [f32; DIMENSIONS],
    /// The height, in seconds: `0..=LIMIT_S`.
    pub height: f32,
    /// The sender's estimate of its own relative error: `0..=MAX_ERROR`.
    pub error: f32,
}

// Sound: a decoded coordinate is finite (never NaN), and equality is only used to compare
// decoded or constructed datagrams in tests.
impl Eq for WireCoordinate {}

impl WireCoordinate {
    /// Whether every field is finite and within its range ([`in_range`]).
    pub fn is_valid(&self) -> bool {
        in_range(
            self.vec.iter().map(|&v| f64::from(v)),
            f64::from(self.height),
            f64::from(self.error),
        )
    }

    /// Reads a coordinate from exactly [`COORDINATE_LEN`] bytes; `None` when it is not valid.
    pub fn parse(bytes: &[u8; COORDINATE_LEN]) -> Option<WireCoordinate> {
        let at = |i: usize| {
            let mut word = [0u8; 4];
            word.copy_from_slice(&bytes[4 * i..4 * i + 4]);
            f32::from_be_bytes(word)
        };
        let mut vec = [0f32; DIMENSIONS];
        for (i, v) in vec.iter_mut().enumerate() {
            *v = at(i);
        }
        let coordinate = WireCoordinate {
            vec,
            height: at(DIMENSIONS),
            error: at(DIMENSIONS + 1),
        };
        coordinate.is_valid().then_some(coordinate)
    }

    /// Writes the coordinate into `out`.
    pub fn emit(&self, out: &mut [u8; COORDINATE_LEN]) {
        let values = self.vec.iter().copied().chain([self.height, self.error]);
        for (word, v) in out.chunks_exact_mut(4).zip(values) {
            word.copy_from_slice(&v.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_coordinate_round_trips_and_bad_values_are_refused() {
        let c = WireCoordinate {
            vec: [0.01, -0.02, 0.0, 0.5],
            height: 0.001,
            error: 0.3,
        };
        let mut bytes = [0u8; COORDINATE_LEN];
        c.emit(&mut bytes);
        assert_eq!(WireCoordinate::parse(&bytes), Some(c));
        assert_eq!(&bytes[0..4], &0.01f32.to_be_bytes());
        for bad in [f32::NAN, f32::INFINITY, 1000.0, -1.0] {
            let mut broken = bytes;
            broken[16..20].copy_from_slice(&bad.to_be_bytes());
            assert_eq!(WireCoordinate::parse(&broken), None, "height {bad}");
        }
        let mut broken = bytes;
        broken[20..24].copy_from_slice(&2.0f32.to_be_bytes());
        assert_eq!(WireCoordinate::parse(&broken), None);
    }
}
