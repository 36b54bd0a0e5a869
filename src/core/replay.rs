//! Replay protection: a sliding window over a peer's datagram sequence numbers, as IPsec
//! (RFC 4303 §3.4.3) and WireGuard do.
//!
//! Each sender numbers its datagrams to each receiver from 0 per incarnation. The window
//! remembers the highest number seen and which of the [`WINDOW`] numbers below it arrived;
//! a number seen before, or older than the window, is a replay (or hopelessly late) and is
//! dropped.
//!
//! A node holds a window for every peer (10,000 of them in a large sampled mesh), and on a
//! path that loses nothing and keeps order every number below the highest has arrived: the
//! bitmap is then not held at all (16 bytes a window, not 40), and exists only while some
//! number of the window is missing.

/// How many sequence numbers below the highest one are remembered.
pub const WINDOW: u32 = 256;

const WORDS: usize = (WINDOW / 64) as usize;

/// The replay window of one peer incarnation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest sequence number seen + 1 (0: none yet).
    top: u64,
    /// Which of the [`WINDOW`] numbers below `top` arrived (bit `n % WINDOW`), while one of
    /// them is missing; `None` when every one arrived (numbers below 0 count as arrived).
    gaps: Option<Box<[u64; WORDS]>>,
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

    /// The window of an incarnation whose first number taken is `seq`: the numbers below it
    /// count as seen. Most were sent before the sender could name this node's incarnation
    /// (the handshake's first Ping is answered, never taken) and cannot be fresh; at most a
    /// fresh one overtaken by `seq` is refused. Holding them as missing would keep a bitmap
    /// for a hole that never fills (docs/PROTOCOL.md, "Sequence number").
    pub fn starting_at(seq: u32) -> ReplayWindow {
        ReplayWindow {
            top: u64::from(seq) + 1,
            gaps: None,
        }
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
        let Some(bits) = self.gaps.as_deref() else {
            return Verdict::Replayed;
        };
        let (word, mask) = Self::bit(seq);
        if bits[word] & mask != 0 {
            Verdict::Replayed
        } else {
            Verdict::Fresh
        }
    }

    /// Whether it holds a bitmap (some number of the window is missing).
    pub fn has_gaps(&self) -> bool {
        self.gaps.is_some()
    }

    /// Remembers `seq` as seen; slides the window forward when it is the newest.
    pub fn remember(&mut self, seq: u32) {
        let seq = self.extend(seq);
        if seq == self.top && self.gaps.is_none() {
            // In order with nothing missing: nothing missing still.
            self.top = seq + 1;
            return;
        }
        if seq < self.top && self.gaps.is_none() {
            return;
        }
        let bits = self.gaps.get_or_insert_with(|| Box::new([u64::MAX; WORDS]));
        if seq >= self.top {
            let advance = seq + 1 - self.top;
            if advance >= u64::from(WINDOW) {
                **bits = [0; WORDS];
            } else {
                for s in self.top..=seq {
                    let (word, mask) = Self::bit(s);
                    bits[word] &= !mask;
                }
            }
            self.top = seq + 1;
        }
        let (word, mask) = Self::bit(seq);
        bits[word] |= mask;
        if bits.iter().all(|&w| w == u64::MAX) {
            self.gaps = None;
        }
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

    #[test]
    fn a_window_holds_a_bitmap_only_while_a_number_is_missing() {
        let mut w = ReplayWindow::new();
        for seq in 0..1000 {
            w.remember(seq);
        }
        assert!(!w.has_gaps(), "in order, nothing lost");
        assert_eq!(w.check(999), Verdict::Replayed);
        assert_eq!(w.check(1000 - WINDOW), Verdict::Replayed);
        assert_eq!(w.check(1000 - WINDOW - 1), Verdict::TooOld);
        // 1000 is lost: the window holds that it is missing until it arrives late...
        w.remember(1001);
        assert!(w.has_gaps());
        assert_eq!(w.check(1000), Verdict::Fresh);
        assert_eq!(w.check(999), Verdict::Replayed);
        w.remember(1000);
        assert!(!w.has_gaps(), "the gap closed");
        assert_eq!(w.check(1000), Verdict::Replayed);
        // ...or slides out of the window.
        w.remember(1003);
        for seq in 1004..1003 + WINDOW {
            assert!(w.has_gaps(), "1002 still inside at {seq}");
            w.remember(seq);
        }
        assert_eq!(w.check(1002), Verdict::TooOld);
        w.remember(1003 + WINDOW);
        assert!(!w.has_gaps(), "1002 slid out");
        // A fresh window with its first numbers lost (numbers below 0 count as arrived).
        let mut w = ReplayWindow::new();
        w.remember(3);
        assert!(w.has_gaps());
        assert_eq!(w.check(0), Verdict::Fresh);
        for seq in 0..3 {
            w.remember(seq);
        }
        assert!(!w.has_gaps());
        assert_eq!(w.check(2), Verdict::Replayed);
    }

    #[test]
    fn a_window_is_16_bytes_without_gaps() {
        assert_eq!(std::mem::size_of::<ReplayWindow>(), 16);
    }

    #[test]
    fn a_window_started_at_its_first_number_holds_no_hole_below_it() {
        let mut w = ReplayWindow::starting_at(1);
        assert!(!w.has_gaps());
        assert_eq!(w.check(1), Verdict::Replayed);
        assert_eq!(w.check(0), Verdict::Replayed, "sent before the handshake");
        assert_eq!(w.check(2), Verdict::Fresh);
        w.remember(2);
        assert!(!w.has_gaps());
        let w = ReplayWindow::starting_at(u32::MAX);
        assert_eq!(
            w.check(0),
            Verdict::Fresh,
            "the counter wraps past its start"
        );
    }
}
