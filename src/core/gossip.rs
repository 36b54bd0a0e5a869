//! Row gossip, the sending side: this node's own latency row, encoded in chunks that fit
//! a ping, one chunk piggy-backed on each ping (see `docs/PROTOCOL.md`). The receiving
//! side is `Mesh::ingest_row`.

use crate::core::peer::Peer;
use crate::core::peer_table::PeerTable;
use crate::wire::{RowChunk, ROW_ENTRY_MAX_LEN};

/// Sampled mode's row: only the peers measured lately (the others are estimated by
/// everyone).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SparseRow<'a> {
    /// The peers this node probed lately, ascending (it holds RTTs for no others).
    pub(crate) keys: &'a [usize],
    /// Only those heard within this many nanoseconds.
    pub(crate) recent_ns: u64,
}

/// This node's row, as chunks: `(entries, bytes)`; the buffers are reused from one refresh
/// to the next, so a refresh allocates nothing once warmed up.
#[derive(Debug, Default)]
pub(crate) struct RowGossip {
    chunks: Vec<(u16, Vec<u8>)>,
    /// How many of `chunks` the current row uses (0: no row to send).
    len: usize,
    version: u32,
}

impl RowGossip {
    /// Rebuilds the row from every peer in `peers`, or (sampled mode's sparse row) from the
    /// `sparse` candidates heard within its `recent_ns` that have an RTT; `budget` bytes of
    /// entries to a chunk; `in_flight` probes count as not yet settled for loss.
    pub(crate) fn refresh(
        &mut self,
        peers: &mut PeerTable,
        budget: usize,
        in_flight: u32,
        now_ns: u64,
        sparse: Option<SparseRow<'_>>,
    ) {
        if budget < ROW_ENTRY_MAX_LEN || peers.is_empty() {
            self.len = 0;
            return;
        }
        self.version = self.version.wrapping_add(1);
        for (_, bytes) in self.chunks.iter_mut() {
            bytes.clear();
        }
        // A fixed number of entries per chunk, sized for the largest entry: packing by bytes
        // let an entry near a boundary move between chunks from one rebuild to the next (its
        // varints change size), and a receiver could miss it again and again.
        let per_chunk = budget / ROW_ENTRY_MAX_LEN;
        let mut used = 0usize;
        match sparse {
            None => {
                for (_, peer) in peers.iter_mut() {
                    self.push(peer, per_chunk, budget, &mut used, in_flight, now_ns);
                }
            }
            Some(SparseRow { keys, recent_ns }) => {
                for &key in keys {
                    let Some(peer) = peers.get_mut(key) else {
                        continue;
                    };
                    let recent = peer.rtt_p50_ns().is_some()
                        && peer
                            .last_heard_ns()
                            .is_some_and(|heard| now_ns.saturating_sub(heard) <= recent_ns);
                    if recent {
                        self.push(peer, per_chunk, budget, &mut used, in_flight, now_ns);
                    }
                }
            }
        }
        self.len = used.min(usize::from(u16::MAX));
    }

    /// Appends `peer`'s entry, to a new chunk when the last of the `used` ones is full.
    fn push(
        &mut self,
        peer: &mut Peer,
        per_chunk: usize,
        budget: usize,
        used: &mut usize,
        in_flight: u32,
        now_ns: u64,
    ) {
        if *used == 0 || usize::from(self.chunks[*used - 1].0) >= per_chunk {
            if self.chunks.len() == *used {
                self.chunks.push((0, Vec::with_capacity(budget)));
            }
            self.chunks[*used].0 = 0;
            *used += 1;
        }
        let chunk = &mut self.chunks[*used - 1];
        peer.row_entry(in_flight, now_ns).emit(&mut chunk.1);
        chunk.0 += 1;
    }

    /// Whether there is a row to send.
    pub(crate) fn has_row(&self) -> bool {
        self.len > 0
    }

    /// The chunk a ping with row cursor `cursor` carries.
    pub(crate) fn chunk(&self, cursor: u16) -> Option<RowChunk<'_>> {
        // A row of one chunk (up to about 60 peers) needs no division.
        let index = match self.len {
            0 => return None,
            1 => 0,
            len => usize::from(cursor) % len,
        };
        let (count, bytes) = self.chunks.get(index)?;
        Some(RowChunk::new(
            self.version,
            index as u16,
            self.len as u16,
            *count,
            bytes,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::identity::NodeId;
    use std::net::SocketAddr;

    fn table(peers: usize) -> PeerTable {
        let mut table = PeerTable::new(NodeId::from_name("me"));
        for i in 0..peers {
            table.insert(
                &format!("p{i}"),
                SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)),
            );
        }
        table
    }

    #[test]
    fn every_peer_is_in_exactly_one_chunk_and_chunks_rotate() {
        let mut peers = table(100);
        let mut gossip = RowGossip::default();
        gossip.refresh(&mut peers, 10 * ROW_ENTRY_MAX_LEN, 1, 0, None);
        assert!(gossip.has_row());
        let mut seen = Vec::new();
        for cursor in 0..10u16 {
            let chunk = gossip.chunk(cursor).expect("a chunk");
            assert_eq!((chunk.index, chunk.chunks), (cursor, 10));
            seen.extend(chunk.entries().map(|e| e.target));
        }
        let mut expected: Vec<NodeId> = peers.iter().map(|(_, p)| p.id()).collect();
        seen.sort();
        expected.sort();
        assert_eq!(seen, expected);
        let before = gossip.chunk(0).map(|c| c.version);
        gossip.refresh(&mut peers, 10 * ROW_ENTRY_MAX_LEN, 1, 0, None);
        assert_eq!(gossip.chunk(0).map(|c| c.version), before.map(|v| v + 1));
    }

    #[test]
    fn no_room_or_no_peer_means_no_row() {
        let mut gossip = RowGossip::default();
        gossip.refresh(&mut table(3), ROW_ENTRY_MAX_LEN - 1, 1, 0, None);
        assert!(gossip.chunk(0).is_none());
        gossip.refresh(&mut table(0), 1000, 1, 0, None);
        assert!(!gossip.has_row());
    }
}
