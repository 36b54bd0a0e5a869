//! Membership updates: what sampled-mode nodes tell each other of every node's liveness,
//! piggy-backed on Pongs (docs/PROTOCOL.md, "Membership updates").
//!
//! An update says "node `subject`, process `incarnation`, at liveness version `version`,
//! is `verdict`", and who said so first (`reporter`). Between two updates of one subject the
//! larger `(incarnation, version, verdict)` wins, so a suspicion beats the alive it was
//! raised against, a refutation (the subject's version bumped) beats the suspicion, and a
//! restart (a later incarnation) beats everything of the old process.

use crate::wire::identity::NodeId;

/// Bytes of one encoded update: subject (8), incarnation (8), version (4), verdict (1),
/// reporter (8), all big-endian.
pub const MEMBER_UPDATE_LEN: usize = 29;

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

    /// Encodes into exactly [`MEMBER_UPDATE_LEN`] bytes.
    pub fn emit(&self, out: &mut [u8; MEMBER_UPDATE_LEN]) {
        out[0..8].copy_from_slice(&self.subject.0.to_be_bytes());
        out[8..16].copy_from_slice(&self.incarnation.to_be_bytes());
        out[16..20].copy_from_slice(&self.version.to_be_bytes());
        out[20] = self.verdict as u8;
        out[21..29].copy_from_slice(&self.reporter.0.to_be_bytes());
    }

    /// Decodes one update; `None` for an unknown verdict byte.
    pub fn parse(bytes: &[u8; MEMBER_UPDATE_LEN]) -> Option<MemberUpdate> {
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
            .all(|u| Verdict::from_byte(u[20]).is_some());
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

    /// Each update, in order.
    pub fn iter(&self) -> impl Iterator<Item = MemberUpdate> + 'a {
        self.bytes
            .chunks_exact(MEMBER_UPDATE_LEN)
            .filter_map(|u| MemberUpdate::parse(u.try_into().ok()?))
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

    #[test]
    fn an_update_round_trips_in_big_endian() {
        let u = update(Verdict::Suspect, 0x3132_3334);
        let mut out = [0u8; MEMBER_UPDATE_LEN];
        u.emit(&mut out);
        assert_eq!(out[0], 0x01);
        assert_eq!(out[16..20], [0x31, 0x32, 0x33, 0x34]);
        assert_eq!(out[20], 1);
        assert_eq!(MemberUpdate::parse(&out), Some(u));
    }

    #[test]
    fn a_list_with_a_bad_verdict_or_a_partial_update_is_refused() {
        let mut bytes = [0u8; 2 * MEMBER_UPDATE_LEN];
        let (a, b) = bytes.split_at_mut(MEMBER_UPDATE_LEN);
        update(Verdict::Alive, 1).emit(a.try_into().unwrap());
        update(Verdict::Dead, 2).emit(b.try_into().unwrap());
        let list = MemberUpdates::new(&bytes).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list.iter().nth(1).map(|u| u.verdict), Some(Verdict::Dead));
        assert!(MemberUpdates::new(&bytes[..MEMBER_UPDATE_LEN + 3]).is_none());
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
