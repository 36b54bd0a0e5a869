//! Membership updates: what sampled-mode nodes tell each other of every node's liveness,
//! piggy-backed on Pongs (docs/PROTOCOL.md, "Membership updates").
//!
//! An update says "node `subject`, process `incarnation`, at liveness version `version`,
//! is `verdict`", and who said so first (`reporter`). Between two updates of one subject the
//! larger `(incarnation, version, verdict)` wins, so a suspicion beats the alive it was
//! raised against, a refutation (the subject's version bumped) beats the suspicion, and a
//! restart (a later incarnation) beats everything of the old process.
//!
//! Each update also carries the sender's freshest copy of the subject's network coordinate
//! with its age ([`SharedCoordinate`]), so every node holds a recent coordinate of every
//! node, not only of the few it probes: that is what estimates between any two nodes need.

use crate::wire::coordinate::{WireCoordinate, COORDINATE_LEN};
use crate::wire::identity::NodeId;

/// Bytes of one encoded update: subject (8), incarnation (8), version (4), verdict (1),
/// reporter (8), coordinate age (2), coordinate (24), all big-endian.
pub const MEMBER_UPDATE_LEN: usize = LIVENESS_LEN + 2 + COORDINATE_LEN;

/// Bytes of the liveness part of an update (everything before the coordinate's age).
pub const LIVENESS_LEN: usize = 29;

/// The age that says "no coordinate" (the 24 coordinate bytes are then zero).
const NO_COORDINATE: u16 = u16::MAX;

/// The largest age an update can say, in tenths of a second (older ones say this).
pub const MAX_COORDINATE_AGE_DS: u16 = u16::MAX - 1;

/// A copy of a node's coordinate as another node passes it on: the coordinate, and how
/// long ago (in tenths of a second, on the sender's clock) the sender's copy was fresh from
/// the node itself. A receiver keeps the copy whose freshness is the latest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedCoordinate {
    /// Tenths of a second since the copy left its node, at most [`MAX_COORDINATE_AGE_DS`].
    pub age_ds: u16,
    /// The coordinate.
    pub coordinate: WireCoordinate,
}

/// One update as a datagram carries it: the liveness part and, when the sender holds one,
/// the subject's coordinate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberEntry {
    /// What it says of the subject's liveness.
    pub update: MemberUpdate,
    /// The sender's copy of the subject's coordinate, if it has one.
    pub coordinate: Option<SharedCoordinate>,
}

impl MemberEntry {
    /// Encodes into exactly [`MEMBER_UPDATE_LEN`] bytes.
    pub fn emit(&self, out: &mut [u8; MEMBER_UPDATE_LEN]) {
        let (head, tail) = out.split_at_mut(LIVENESS_LEN);
        if let Ok(head) = <&mut [u8; LIVENESS_LEN]>::try_from(head) {
            self.update.emit(head);
        }
        let (age, coordinate) = match self.coordinate {
            Some(shared) => (shared.age_ds.min(MAX_COORDINATE_AGE_DS), shared.coordinate),
            None => (NO_COORDINATE, WireCoordinate::default()),
        };
        tail[..2].copy_from_slice(&age.to_be_bytes());
        if let Ok(at) = <&mut [u8; COORDINATE_LEN]>::try_from(&mut tail[2..]) {
            coordinate.emit(at);
        }
    }

    /// Decodes one entry; `None` for an unknown verdict byte or, when an age is given, a
    /// coordinate out of range.
    pub fn parse(bytes: &[u8; MEMBER_UPDATE_LEN]) -> Option<MemberEntry> {
        let update = MemberUpdate::parse(bytes[..LIVENESS_LEN].try_into().ok()?)?;
        let age_ds = u16::from_be_bytes([bytes[LIVENESS_LEN], bytes[LIVENESS_LEN + 1]]);
        let coordinate = if age_ds == NO_COORDINATE {
            None
        } else {
            let coordinate = WireCoordinate::parse(bytes[LIVENESS_LEN + 2..].try_into().ok()?)?;
            Some(SharedCoordinate { age_ds, coordinate })
        };
        Some(MemberEntry { update, coordinate })
    }
}

/// What an update says of its subject. The discriminant is the wire byte, and the order
/// is the precedence between updates of one incarnation and version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Verdict {
    /// Running (the subject's own word, or a node that heard it).
    Alive = 0,
    /// Did not answer a direct and indirect probe of the reporter.
    Suspect = 1,
    /// Suspected by more than one prober for longer than the dead time.
    Dead = 2,
    /// Left the mesh on purpose.
    Left = 3,
}

impl Verdict {
    fn from_byte(byte: u8) -> Option<Verdict> {
        match byte {
            0 => Some(Verdict::Alive),
            1 => Some(Verdict::Suspect),
            2 => Some(Verdict::Dead),
            3 => Some(Verdict::Left),
            _ => None,
        }
    }
}

/// One membership update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberUpdate {
    /// The node it is about.
    pub subject: NodeId,
    /// The subject's process incarnation it is about.
    pub incarnation: u64,
    /// The subject's liveness version: the subject bumps it to refute a suspicion.
    pub version: u32,
    /// What it says.
    pub verdict: Verdict,
    /// Who raised it (the subject itself for `Alive` and `Left`, the prober for the others).
    pub reporter: NodeId,
}

impl MemberUpdate {
    /// The order between two updates of one subject: the larger wins.
    pub fn precedence(&self) -> (u64, u32, Verdict) {
        (self.incarnation, self.version, self.verdict)
    }

    /// Encodes the liveness part (the first [`LIVENESS_LEN`] bytes of an entry).
    pub fn emit(&self, out: &mut [u8; LIVENESS_LEN]) {
        out[0..8].copy_from_slice(&self.subject.0.to_be_bytes());
        out[8..16].copy_from_slice(&self.incarnation.to_be_bytes());
        out[16..20].copy_from_slice(&self.version.to_be_bytes());
        out[20] = self.verdict as u8;
        out[21..29].copy_from_slice(&self.reporter.0.to_be_bytes());
    }

    /// Decodes the liveness part; `None` for an unknown verdict byte.
    pub fn parse(bytes: &[u8; LIVENESS_LEN]) -> Option<MemberUpdate> {
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(b)
        };
        let mut version = [0u8; 4];
        version.copy_from_slice(&bytes[16..20]);
        Some(MemberUpdate {
            subject: NodeId(u64_at(0)),
            incarnation: u64_at(8),
            version: u32::from_be_bytes(version),
            verdict: Verdict::from_byte(bytes[20])?,
            reporter: NodeId(u64_at(21)),
        })
    }
}

/// The updates a datagram carries: checked whole when parsed, decoded one by one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MemberUpdates<'a> {
    bytes: &'a [u8],
}

impl<'a> MemberUpdates<'a> {
    /// No updates.
    pub const EMPTY: MemberUpdates<'static> = MemberUpdates { bytes: &[] };

    /// Updates already encoded back to back (as [`MemberUpdate::emit`] writes them);
    /// `None` unless every one decodes.
    pub fn new(bytes: &'a [u8]) -> Option<MemberUpdates<'a>> {
        let whole = bytes.len().is_multiple_of(MEMBER_UPDATE_LEN);
        let valid = bytes
            .chunks_exact(MEMBER_UPDATE_LEN)
            .all(|u| u.try_into().ok().and_then(MemberEntry::parse).is_some());
        (whole && valid).then_some(MemberUpdates { bytes })
    }

    /// The encoded updates.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// How many updates.
    pub fn len(&self) -> usize {
        self.bytes.len() / MEMBER_UPDATE_LEN
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Each entry, in order.
    pub fn iter(&self) -> impl Iterator<Item = MemberEntry> + 'a {
        self.bytes
            .chunks_exact(MEMBER_UPDATE_LEN)
            .filter_map(|u| MemberEntry::parse(u.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(verdict: Verdict, version: u32) -> MemberUpdate {
        MemberUpdate {
            subject: NodeId(0x0102_0304_0506_0708),
            incarnation: 0x1112_1314_1516_1718,
            version,
            verdict,
            reporter: NodeId(0x2122_2324_2526_2728),
        }
    }

    fn entry(verdict: Verdict, version: u32, coordinate: Option<SharedCoordinate>) -> MemberEntry {
        MemberEntry {
            update: update(verdict, version),
            coordinate,
        }
    }

    fn shared(age_ds: u16) -> SharedCoordinate {
        SharedCoordinate {
            age_ds,
            coordinate: WireCoordinate {
                vec: [0.01, -0.02, 0.0, 0.5],
                height: 0.001,
                error: 0.3,
            },
        }
    }

    #[test]
    fn an_entry_round_trips_in_big_endian() {
        let e = entry(Verdict::Suspect, 0x3132_3334, Some(shared(0x0102)));
        let mut out = [0u8; MEMBER_UPDATE_LEN];
        e.emit(&mut out);
        assert_eq!(out[0], 0x01);
        assert_eq!(out[16..20], [0x31, 0x32, 0x33, 0x34]);
        assert_eq!(out[20], 1);
        assert_eq!(out[29..31], [0x01, 0x02]);
        assert_eq!(MemberEntry::parse(&out), Some(e));
        let none = entry(Verdict::Alive, 1, None);
        none.emit(&mut out);
        assert_eq!(out[29..31], [0xff, 0xff]);
        assert!(out[31..].iter().all(|&b| b == 0));
        assert_eq!(MemberEntry::parse(&out), Some(none));
    }

    #[test]
    fn an_age_past_the_largest_is_sent_as_the_largest() {
        let mut out = [0u8; MEMBER_UPDATE_LEN];
        entry(Verdict::Alive, 1, Some(shared(u16::MAX))).emit(&mut out);
        let back = MemberEntry::parse(&out).and_then(|e| e.coordinate);
        assert_eq!(back.map(|c| c.age_ds), Some(MAX_COORDINATE_AGE_DS));
    }

    #[test]
    fn a_list_with_a_bad_verdict_a_bad_coordinate_or_a_partial_entry_is_refused() {
        let mut bytes = [0u8; 2 * MEMBER_UPDATE_LEN];
        let (a, b) = bytes.split_at_mut(MEMBER_UPDATE_LEN);
        entry(Verdict::Alive, 1, None).emit(a.try_into().unwrap());
        entry(Verdict::Dead, 2, Some(shared(5))).emit(b.try_into().unwrap());
        let list = MemberUpdates::new(&bytes).unwrap();
        assert_eq!(list.len(), 2);
        let second = list.iter().nth(1).unwrap();
        assert_eq!(second.update.verdict, Verdict::Dead);
        assert_eq!(second.coordinate, Some(shared(5)));
        assert!(MemberUpdates::new(&bytes[..MEMBER_UPDATE_LEN + 3]).is_none());
        let mut bad_error = bytes;
        // The second entry's error estimate (its last f32) set to 2.0, above MAX_ERROR.
        bad_error[2 * MEMBER_UPDATE_LEN - 4..].copy_from_slice(&2.0f32.to_be_bytes());
        assert!(MemberUpdates::new(&bad_error).is_none());
        bytes[20] = 9;
        assert!(MemberUpdates::new(&bytes).is_none());
    }

    #[test]
    fn precedence_orders_suspicion_over_alive_and_refutation_over_suspicion() {
        let alive = update(Verdict::Alive, 3);
        let suspect = update(Verdict::Suspect, 3);
        let refuted = update(Verdict::Alive, 4);
        let dead = update(Verdict::Dead, 3);
        assert!(suspect.precedence() > alive.precedence());
        assert!(refuted.precedence() > suspect.precedence());
        assert!(refuted.precedence() > dead.precedence());
        let restarted = MemberUpdate {
            incarnation: alive.incarnation + 1,
            version: 0,
            ..alive
        };
        assert!(restarted.precedence() > dead.precedence());
    }
}
