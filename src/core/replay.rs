//! Replay protection: a sliding window over a peer's datagram sequence numbers, as IPsec
//! (RFC 4303 §3.4.3) and WireGuard do.
//!
//! Each sender numbers its datagrams to each receiver from 0 per incarnation. The window
//! remembers the highest number seen and which of the [`WINDOW`] numbers below it arrived;
//! a number seen before, or older than the window, is a replay (or hopelessly late) and is
//! dropped.

/// How many sequence numbers below the highest one are remembered.
pub const WINDOW: u32 = 256;

/// The replay window of one peer incarnation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest sequence number seen + 1 (0: none yet).
    top: u64,
    bits: [u64; (WINDOW / 64) as usize],
}

/// What the window says of a sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// New: accept it (and it is now remembered).
    Fresh,
    /// Seen before.
    Replayed,
    /// Older than the window: cannot tell, so refused.
    TooOld,
}

impl ReplayWindow {
    /// An empty window (a new incarnation).
    pub fn new() -> ReplayWindow {
        ReplayWindow::default()
    }

    fn bit(seq: u64) -> (usize, u64) {
        let i = (seq % u64::from(WINDOW)) as usize;
        (i / 64, 1u64 << (i % 64))
    }

    /// The 32-bit number on the wire, extended to 64 bits as the one nearest the highest
    /// seen (as IPsec's extended sequence numbers): counters wrap without a hiccup.
    fn extend(&self, seq: u32) -> u64 {
        const HALF: u64 = 1 << 31;
        let Some(highest) = self.top.checked_sub(1) else {
            return u64::from(seq);
        };
        let base = highest & !0xffff_ffff;
        let candidate = base | u64::from(seq);
        if candidate + HALF < highest {
            candidate + (1 << 32)
        } else if candidate > highest + HALF && base > 0 {
            candidate - (1 << 32)
        } else {
            candidate
        }
    }

    /// Checks `seq` without remembering it (check first, remember only once the datagram
    /// has proven authentic).
    pub fn check(&self, seq: u32) -> Verdict {
        let seq = self.extend(seq);
        if seq >= self.top {
            return Verdict::Fresh;
        }
        if self.top - seq > u64::from(WINDOW) {
            return Verdict::TooOld;
        }
        let (word, mask) = Self::bit(seq);
        if self.bits[word] & mask != 0 {
            Verdict::Replayed
        } else {
            Verdict::Fresh
        }
    }

    /// Remembers `seq` as seen; slides the window forward when it is the newest.
    pub fn remember(&mut self, seq: u32) {
        let seq = self.extend(seq);
        if seq >= self.top {
            let advance = seq + 1 - self.top;
            if advance >= u64::from(WINDOW) {
                self.bits = [0; (WINDOW / 64) as usize];
            } else {
                for s in self.top..=seq {
                    let (word, mask) = Self::bit(s);
                    self.bits[word] &= !mask;
                }
            }
            self.top = seq + 1;
        }
        let (word, mask) = Self::bit(seq);
        self.bits[word] |= mask;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_ancient_numbers_are_refused_reordering_is_fine() {
        let mut w = ReplayWindow::new();
        for seq in [0u32, 1, 2, 5, 4, 3] {
            assert_eq!(w.check(seq), Verdict::Fresh, "{seq}");
            w.remember(seq);
        }
        for seq in 0..=5 {
            assert_eq!(w.check(seq), Verdict::Replayed, "{seq}");
        }
        w.remember(1000);
        assert_eq!(w.check(1000), Verdict::Replayed);
        assert_eq!(w.check(999), Verdict::Fresh, "inside the window, not seen");
        assert_eq!(w.check(1000 - WINDOW + 1), Verdict::Fresh);
        assert_eq!(w.check(1000 - WINDOW), Verdict::TooOld);
        assert_eq!(w.check(5), Verdict::TooOld);
        w.remember(999);
        assert_eq!(w.check(999), Verdict::Replayed);
        assert_eq!(w.check(u32::MAX), Verdict::Fresh);
    }

    #[test]
    fn the_counter_wraps_without_a_hiccup() {
        let mut w = ReplayWindow::new();
        for seq in (u32::MAX - 10..=u32::MAX).chain(0..10) {
            assert_eq!(w.check(seq), Verdict::Fresh, "{seq}");
            w.remember(seq);
        }
        assert_eq!(
            w.check(u32::MAX),
            Verdict::Replayed,
            "before the wrap, still seen"
        );
        assert_eq!(w.check(5), Verdict::Replayed);
        assert_eq!(w.check(10), Verdict::Fresh);
        assert_eq!(w.check(u32::MAX - 300), Verdict::TooOld);
    }

    #[test]
    fn sliding_clears_the_reused_bits() {
        let mut w = ReplayWindow::new();
        w.remember(3);
        w.remember(3 + WINDOW - 1);
        // 3 is still inside the window and was seen.
        assert_eq!(w.check(3), Verdict::Replayed);
        w.remember(3 + WINDOW + 10);
        // Numbers that share bits with old ones read as unseen, not as replays.
        assert_eq!(w.check(3 + WINDOW), Verdict::Fresh);
    }
}
