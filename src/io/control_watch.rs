//! One `watch` connection's backlog: event records waiting for a reader that may be slow.
//!
//! The node never waits for a watcher. Records go into a backlog of at most
//! [`WATCH_BACKLOG_BYTES`]; past it they are dropped and counted, and once there is room
//! again (or the backlog has drained) the watcher gets one `{"event":"overflow",
//! "dropped":N}` record in the place of the gap.

use crate::report::event_record::EventRecord;
use std::collections::VecDeque;

/// The most a watcher's backlog holds (records waiting to be written to it, beyond what
/// the kernel's socket buffer took): 1 MiB per watcher, so at most
/// [`crate::io::control::MAX_CONNECTIONS`] MiB for all.
pub const WATCH_BACKLOG_BYTES: usize = 1 << 20;

/// The records waiting for one watcher.
#[derive(Debug, Default)]
pub struct Watcher {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    dropped: u64,
}

impl Watcher {
    /// An empty backlog.
    pub fn new() -> Watcher {
        Watcher::default()
    }

    /// Queues one record line (a newline is added), or drops and counts it when the
    /// backlog is full. `time_ms` stamps an overflow record this may put first.
    pub fn push(&mut self, line: &str, time_ms: u64) {
        if self.bytes + line.len() + 1 > WATCH_BACKLOG_BYTES {
            self.dropped += 1;
            return;
        }
        self.mark_gap(time_ms);
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        self.bytes += bytes.len();
        self.lines.push_back(bytes);
    }

    /// Records dropped since the last overflow record.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes waiting.
    pub fn backlog(&self) -> usize {
        self.bytes
    }

    /// Puts the overflow record where records were dropped (it may go past the bound: it
    /// is small, and only one stands for each gap).
    fn mark_gap(&mut self, time_ms: u64) {
        if self.dropped > 0 {
            let mut line = EventRecord::overflow(self.dropped, time_ms)
                .to_json()
                .into_bytes();
            line.push(b'\n');
            self.dropped = 0;
            self.bytes += line.len();
            self.lines.push_back(line);
        }
    }

    /// Moves the next waiting lines, up to about 64 KiB, into `out`; when the backlog has
    /// drained after a gap, the overflow record. Returns whether anything was moved.
    pub fn take(&mut self, out: &mut Vec<u8>, time_ms: u64) -> bool {
        if self.lines.is_empty() {
            self.mark_gap(time_ms);
        }
        let mut moved = false;
        while let Some(line) = self.lines.front() {
            if moved && out.len() + line.len() > 64 * 1024 {
                break;
            }
            let line = self.lines.pop_front().unwrap_or_default();
            self.bytes -= line.len();
            out.extend_from_slice(&line);
            moved = true;
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_backlog_drops_and_marks_the_gap_once() {
        let mut w = Watcher::new();
        let line = "x".repeat(1000);
        for _ in 0..2000 {
            w.push(&line, 1);
        }
        assert!(w.backlog() <= WATCH_BACKLOG_BYTES);
        let kept = WATCH_BACKLOG_BYTES / 1001;
        assert_eq!(w.dropped(), (2000 - kept) as u64);
        let mut out = Vec::new();
        while w.take(&mut out, 2) {}
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), kept + 1);
        let last: serde_json::Value = serde_json::from_str(lines[kept]).unwrap();
        assert_eq!(last["event"], "overflow");
        assert_eq!(last["dropped"], 2000 - kept as u64);
        assert_eq!(w.dropped(), 0);
        assert!(!w.take(&mut Vec::new(), 3), "nothing more, no second mark");
        // A gap filled while records come again: the mark goes first.
        for _ in 0..kept + 5 {
            w.push(&line, 4);
        }
        let mut out = Vec::new();
        assert!(w.take(&mut out, 5));
        w.push("after", 6);
        let mut rest = Vec::new();
        while w.take(&mut rest, 7) {}
        let rest = String::from_utf8(rest).unwrap();
        let tail: Vec<&str> = rest.lines().rev().take(2).collect();
        assert_eq!(tail[0], "after");
        assert!(tail[1].contains("\"overflow\""), "{}", tail[1]);
    }
}
