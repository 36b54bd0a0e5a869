//! The latency matrix: the rows other nodes shared with this one, and the view of the whole
//! N×N matrix (`from` × `to`) built from them and from this node's own peer table.
//!
//! Storage in full mode is a dense row per origin with one 8-byte `Cell` per column, so a
//! thousand nodes cost 8 MB per node; in sampled mode rows are sparse ([`RowCells`]). Rows arrive in chunks piggy-backed on pings (see
//! `docs/PROTOCOL.md`); each chunk index keeps the version it was last written with, so a
//! late or reordered chunk never overwrites newer data.

use crate::core::coordinate::Coordinate;
use crate::core::peer::PeerState;
use crate::core::row_cells::RowCells;
use crate::wire::RowChunk;
use std::collections::HashMap;
use std::time::Instant;

/// One cell of a shared row, packed into 64 bits:
///
/// | bits   | field                                                          |
/// |--------|----------------------------------------------------------------|
/// | 0–23   | RTT p50 in µs + 1 (0: none; saturates at about 16.8 s)         |
/// | 24–31  | loss in half-percent steps (255: none)                         |
/// | 32–34  | state code                                                     |
/// | 35     | the origin has heard the target                                |
/// | 36–62  | when (on this node's clock): centiseconds since start, mod 2^27 |
/// | 63     | the cell holds data                                            |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cell(u64);

const RTT_MAX: u32 = (1 << 24) - 2;
const HEARD_BITS: u32 = 27;
const HEARD_MASK: u64 = (1 << HEARD_BITS) - 1;

impl Cell {
    pub(crate) fn new(
        rtt_us: Option<u32>,
        loss_half_pct: Option<u8>,
        state: PeerState,
        heard_cs: Option<u64>,
    ) -> Cell {
        let rtt = u64::from(rtt_us.map_or(0, |r| r.min(RTT_MAX) + 1));
        let loss = u64::from(loss_half_pct.map_or(255, |l| l.min(200)));
        let heard = heard_cs.map_or(0, |cs| (1 << 35) | ((cs & HEARD_MASK) << 36));
        Cell(rtt | (loss << 24) | ((state as u64) << 32) | heard | (1 << 63))
    }

    /// Whether the cell was ever written.
    pub(crate) fn is_present(self) -> bool {
        self.0 >> 63 == 1
    }

    pub(crate) fn rtt_us(self) -> Option<u32> {
        ((self.0 & 0xff_ffff) as u32).checked_sub(1)
    }

    pub(crate) fn loss_pct(self) -> Option<f64> {
        match (self.0 >> 24) as u8 {
            255 => None,
            l => Some(f64::from(l) / 2.0),
        }
    }

    pub(crate) fn state(self) -> PeerState {
        PeerState::from_code(((self.0 >> 32) & 0b111) as u8).unwrap_or(PeerState::Unknown)
    }

    /// How long before `now_cs` the origin last heard the target, in centiseconds.
    /// Ages up to 2^26 cs (7.7 days) are exact; the stored time wraps beyond.
    pub(crate) fn heard_age_cs(self, now_cs: u64) -> Option<u64> {
        if self.0 & (1 << 35) == 0 {
            return None;
        }
        let stored = (self.0 >> 36) & HEARD_MASK;
        Some((now_cs & HEARD_MASK).wrapping_sub(stored) & HEARD_MASK)
    }
}

/// The row one origin shared.
#[derive(Debug)]
pub(crate) struct Row {
    incarnation: u64,
    pub(crate) updated: Instant,
    chunk_versions: Vec<u32>,
    pub(crate) cells: RowCells,
}

/// Every row received from other nodes, by origin (the peer's slab key).
#[derive(Debug, Default)]
pub(crate) struct Matrix {
    /// By origin. A map, not a slot per peer: in sampled mode a node holds the rows of its
    /// recent probers only, a few dozen of 10,000 origins.
    rows: HashMap<usize, Row>,
    /// Sampled mode: rows are stored sparse, and their cells kept this many centiseconds
    /// after their origin last heard the target; `None`: dense rows (full mode).
    sparse_keep_cs: Option<u64>,
}

impl Matrix {
    /// Stores rows sparse, keeping cells `keep_cs` centiseconds (sampled mode), or dense
    /// (`None`); a change between the two drops every row (they come again within an
    /// interval).
    pub(crate) fn set_sparse(&mut self, keep_cs: Option<u64>) {
        if self.sparse_keep_cs.is_some() != keep_cs.is_some() {
            self.rows.clear();
        }
        self.sparse_keep_cs = keep_cs;
    }

    /// Accepts a chunk's header: returns the origin's cells to write into, or `None` when
    /// the chunk is older than what this index already holds. A new incarnation of the
    /// origin starts a fresh row. A sparse row's stale cells are pruned at its first chunk
    /// (`now_cs`: this node's clock in centiseconds).
    pub(crate) fn accept_chunk(
        &mut self,
        origin: usize,
        incarnation: u64,
        chunk: &RowChunk<'_>,
        width: usize,
        now: Instant,
        now_cs: u64,
    ) -> Option<&mut RowCells> {
        let (version, index, chunks) = (chunk.version, chunk.index, chunk.chunks);
        let keep_cs = self.sparse_keep_cs;
        let fresh = || Row {
            incarnation,
            updated: now,
            chunk_versions: Vec::new(),
            cells: RowCells::new(keep_cs.is_some(), width),
        };
        let row = self.rows.entry(origin).or_insert_with(fresh);
        if row.incarnation != incarnation {
            *row = fresh();
        }
        let index = usize::from(index);
        if row.chunk_versions.len() != usize::from(chunks) {
            row.chunk_versions.resize(usize::from(chunks), 0);
        }
        let seen = row.chunk_versions.get_mut(index)?;
        if version < *seen {
            return None;
        }
        *seen = version;
        row.updated = now;
        row.cells.grow(width);
        if let Some(keep_cs) = keep_cs.filter(|_| index == 0) {
            row.cells.prune(now_cs, keep_cs);
        }
        Some(&mut row.cells)
    }

    /// The row `origin` shared, if any.
    pub(crate) fn row(&self, origin: usize) -> Option<&Row> {
        self.rows.get(&origin)
    }

    /// Frees the rows last updated before `cutoff` (sampled mode: a node keeps the rows of
    /// its recent probers only). Returns how many went.
    pub(crate) fn expire(&mut self, cutoff: Instant) -> usize {
        let before = self.rows.len();
        self.rows.retain(|_, row| row.updated >= cutoff);
        before - self.rows.len()
    }

    /// Forgets everything about the peer in slot `key` (removed): its row, and its column
    /// in every other row, so a peer that later takes the slot starts empty.
    pub(crate) fn forget(&mut self, key: usize) {
        self.rows.remove(&key);
        for row in self.rows.values_mut() {
            row.cells.clear(key + 1);
        }
    }
}

/// The whole matrix as this node knows it: rows are "from", columns are "to".
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixView {
    /// Node names, in config order; row and column `i` are `nodes[i]`.
    pub nodes: Vec<String>,
    /// Which row is this node's own.
    pub own: usize,
    /// `rtt_us[i][j]`: node i's RTT p50 to node j in µs; `None` on the diagonal, when
    /// unknown, or when row i has aged out.
    pub rtt_us: Vec<Vec<Option<f64>>>,
    /// `loss_pct[i][j]`: node i's loss to node j in percent, likewise.
    pub loss_pct: Vec<Vec<Option<f64>>>,
    /// `state[i][j]`: node i's view of node j's liveness, likewise.
    pub state: Vec<Vec<Option<PeerState>>>,
    /// Milliseconds since row i was last refreshed (0 for the own row; `None`: never
    /// received).
    pub age_ms: Vec<Option<u64>>,
    /// Whether row i is fresh (received within `dead_after` from a node not dead or left).
    pub fresh: Vec<bool>,
    /// `estimated_rtt_us[i][j]`: the RTT between i and j that their network coordinates
    /// predict, in µs; `None` on the diagonal, while a coordinate is unknown or unsettled
    /// ([`crate::core::Coordinate::is_settled`]), or when this node holds i or j `dead` or
    /// `left`. (Reports also leave out pairs whose path a cell says is gone.)
    pub estimated_rtt_us: Vec<Vec<Option<f64>>>,
    /// Pairs `(i, j)` where i hears j but j reports not hearing i.
    pub asymmetric: Vec<(usize, usize)>,
}

/// This node's own figures towards one peer: RTT p50 (µs), loss (%), state.
pub(crate) type OwnCell = (Option<f64>, Option<f64>, PeerState);

/// One row of a [`MatrixSnapshot`].
#[derive(Clone, Debug)]
enum SnapshotRow {
    /// This node's own row, per display column (`None` on the diagonal).
    Own(Vec<Option<OwnCell>>),
    /// A row another node shared; cells are kept only while it is fresh.
    Shared {
        age_ms: u64,
        fresh: bool,
        cells: Vec<Cell>,
    },
    /// No row received from that node.
    Missing,
}

/// A copy of what the matrix view needs, taken at one instant: about 8 bytes per cell,
/// copied rather than converted, so taking it is cheap even for the largest mesh. Reports
/// render from it in steps (the report layer's `MatrixRender`), so a large matrix never
/// holds the event loop; [`MatrixSnapshot::view`] builds the whole [`MatrixView`].
#[derive(Clone, Debug)]
pub struct MatrixSnapshot {
    node: String,
    names: Vec<String>,
    own: usize,
    /// Display column `j` is internal column `columns[j]` (0: this node, key + 1: peer key).
    columns: Vec<usize>,
    rows: Vec<SnapshotRow>,
    /// Per display column, the node's coordinate as this node knows it; `None` when unknown
    /// or when this node holds the node `dead` or `left` (a gone node has no estimate).
    coordinates: Vec<Option<Coordinate>>,
}

impl MatrixSnapshot {
    /// `names[i]` and `columns[i]` per display position; `own_row` is this node's row; the
    /// other rows come from `shared(internal column)`: `(age_ms, fresh, cells)` or `None`.
    pub(crate) fn new<'a>(
        node: &str,
        names: Vec<String>,
        columns: Vec<usize>,
        own_row: Vec<Option<OwnCell>>,
        shared: impl Fn(usize) -> Option<(u64, bool, &'a RowCells)>,
    ) -> MatrixSnapshot {
        let own = columns.iter().position(|&c| c == 0).unwrap_or(0);
        let width = columns.iter().max().map_or(0, |&c| c + 1);
        let mut own_row = Some(own_row);
        let rows = columns
            .iter()
            .map(|&from| match from {
                0 => SnapshotRow::Own(own_row.take().unwrap_or_default()),
                _ => match shared(from) {
                    Some((age_ms, fresh, cells)) => SnapshotRow::Shared {
                        age_ms,
                        fresh,
                        cells: if fresh {
                            cells.to_dense(width)
                        } else {
                            Vec::new()
                        },
                    },
                    None => SnapshotRow::Missing,
                },
            })
            .collect();
        MatrixSnapshot {
            node: node.to_owned(),
            names,
            own,
            columns,
            rows,
            coordinates: Vec::new(),
        }
    }

    /// The snapshot with each display column's coordinate (see [`MatrixSnapshot::estimate`]).
    pub(crate) fn with_coordinates(mut self, coordinates: Vec<Option<Coordinate>>) -> Self {
        self.coordinates = coordinates;
        self
    }

    /// The RTT in µs that the coordinates of nodes `i` and `j` predict; `None` on the
    /// diagonal, while either coordinate is unknown, or when either node is gone (this
    /// node holds it `dead` or `left`).
    pub fn estimate(&self, i: usize, j: usize) -> Option<f64> {
        if i == j {
            return None;
        }
        let (a, b) = (
            self.coordinates.get(i)?.as_ref()?,
            self.coordinates.get(j)?.as_ref()?,
        );
        Some(a.estimate_rtt(b).as_nanos() as f64 / 1000.0)
    }

    /// The node whose view this is.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Node names in config order: row and column `i` are `names()[i]`.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// How many nodes (rows, and columns).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the matrix has no node at all.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Node `i`'s figures towards node `j`: RTT p50 (µs), loss (%) and state; `None` on the
    /// diagonal, when unknown, or when row `i` is not fresh.
    pub fn cell(&self, i: usize, j: usize) -> Option<OwnCell> {
        if i == j {
            return None;
        }
        match self.rows.get(i)? {
            SnapshotRow::Own(cells) => *cells.get(j)?,
            SnapshotRow::Shared { fresh: false, .. } | SnapshotRow::Missing => None,
            SnapshotRow::Shared { cells, .. } => {
                let cell = cells.get(*self.columns.get(j)?).copied()?;
                cell.is_present()
                    .then(|| (cell.rtt_us().map(f64::from), cell.loss_pct(), cell.state()))
            }
        }
    }

    /// Milliseconds since row `i` was updated (0 for this node's own); `None`: never.
    pub fn age_ms(&self, i: usize) -> Option<u64> {
        match self.rows.get(i)? {
            SnapshotRow::Own(_) => Some(0),
            SnapshotRow::Shared { age_ms, .. } => Some(*age_ms),
            SnapshotRow::Missing => None,
        }
    }

    /// Whether row `i` counts (see [`MatrixView::fresh`]).
    pub fn fresh(&self, i: usize) -> bool {
        match self.rows.get(i) {
            Some(SnapshotRow::Own(_)) => true,
            Some(SnapshotRow::Shared { fresh, .. }) => *fresh,
            _ => false,
        }
    }

    /// The whole matrix as plain tables: O(N²) work and memory at once.
    pub fn view(&self) -> MatrixView {
        let n = self.len();
        let mut rtt_us = vec![vec![None; n]; n];
        let mut loss_pct = vec![vec![None; n]; n];
        let mut state = vec![vec![None; n]; n];
        let mut estimated_rtt_us = vec![vec![None; n]; n];
        for i in 0..n {
            for j in 0..n {
                estimated_rtt_us[i][j] = self.estimate(i, j);
                if let Some((rtt, loss, st)) = self.cell(i, j) {
                    rtt_us[i][j] = rtt;
                    loss_pct[i][j] = loss;
                    state[i][j] = Some(st);
                }
            }
        }
        let mut asymmetric = Vec::new();
        for (i, row) in state.iter().enumerate() {
            for (j, &cell) in row.iter().enumerate() {
                if cell == Some(PeerState::Alive) && not_hearing(state[j][i]) {
                    asymmetric.push((i, j));
                }
            }
        }
        MatrixView {
            nodes: self.names.clone(),
            own: self.own,
            rtt_us,
            loss_pct,
            state,
            estimated_rtt_us,
            age_ms: (0..n).map(|i| self.age_ms(i)).collect(),
            fresh: (0..n).map(|i| self.fresh(i)).collect(),
            asymmetric,
        }
    }
}

/// Whether a view of a peer says the viewer does not hear it (for one-way paths).
pub(crate) fn not_hearing(state: Option<PeerState>) -> bool {
    matches!(
        state,
        Some(PeerState::Unknown | PeerState::Suspect | PeerState::Dead | PeerState::Unreachable)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_pack_and_unpack() {
        let c = Cell::new(Some(1234), Some(41), PeerState::Suspect, Some(500));
        assert!(c.is_present());
        assert_eq!(c.rtt_us(), Some(1234));
        assert_eq!(c.loss_pct(), Some(20.5));
        assert_eq!(c.state(), PeerState::Suspect);
        assert_eq!(c.heard_age_cs(530), Some(30));
        let none = Cell::new(None, None, PeerState::Unknown, None);
        assert!(none.is_present());
        assert_eq!(
            (none.rtt_us(), none.loss_pct(), none.heard_age_cs(9)),
            (None, None, None)
        );
        assert!(!Cell::default().is_present());
        // Huge RTTs saturate, heard times wrap but ages stay right.
        assert_eq!(
            Cell::new(Some(u32::MAX), None, PeerState::Alive, None).rtt_us(),
            Some(RTT_MAX)
        );
        let wrap = Cell::new(None, None, PeerState::Alive, Some(HEARD_MASK));
        assert_eq!(wrap.heard_age_cs(HEARD_MASK + 10), Some(10));
    }

    #[test]
    fn older_chunks_never_overwrite_newer_ones() {
        let mut m = Matrix::default();
        let now = Instant::now();
        let chunk = |version, index| RowChunk::new(version, index, 2, 0, &[]);
        m.accept_chunk(0, 7, &chunk(5, 0), 4, now, 0)
            .unwrap()
            .write([(1, Cell::new(Some(10), None, PeerState::Alive, None))].into_iter());
        let stale = m.accept_chunk(0, 7, &chunk(4, 0), 4, now, 0);
        assert!(stale.is_none(), "stale chunk refused");
        let other = m.accept_chunk(0, 7, &chunk(4, 1), 4, now, 0);
        assert!(other.is_some(), "other index is separate");
        assert!(m.accept_chunk(0, 7, &chunk(6, 0), 4, now, 0).is_some());
        // A restarted origin starts over, even with a lower version.
        let cells = m.accept_chunk(0, 8, &chunk(1, 0), 4, now, 0).unwrap();
        assert!(cells.get(1).is_none());
        let out_of_range = m.accept_chunk(0, 8, &chunk(0, 5), 4, now, 0);
        assert!(out_of_range.is_none(), "index out of range");
    }
}
