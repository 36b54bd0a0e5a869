//! The cells of one shared row, as the matrix stores them: dense in full mode, where a row
//! names every peer, sparse in sampled mode, where a row names only the few peers its
//! origin probes now (a dense row there would cost 8 bytes per node of the mesh for each of
//! the dozens of rows a node holds: 80 MB per node at 10,000 nodes).

use crate::core::matrix::Cell;

/// One row's cells, by column (0: this node, key + 1: peer `key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RowCells {
    /// One cell per column (absent ones are [`Cell::default`]).
    Dense(Vec<Cell>),
    /// Only the written cells, sorted by column.
    Sparse(Vec<(u32, Cell)>),
}

impl RowCells {
    /// An empty row: dense with `width` columns, or sparse.
    pub(crate) fn new(sparse: bool, width: usize) -> RowCells {
        if sparse {
            RowCells::Sparse(Vec::new())
        } else {
            RowCells::Dense(vec![Cell::default(); width])
        }
    }

    /// The cell at `column`, if one was written.
    pub(crate) fn get(&self, column: usize) -> Option<Cell> {
        match self {
            RowCells::Dense(cells) => cells.get(column).copied().filter(|c| c.is_present()),
            RowCells::Sparse(cells) => {
                let column = u32::try_from(column).ok()?;
                let at = cells.binary_search_by_key(&column, |&(c, _)| c).ok()?;
                Some(cells[at].1)
            }
        }
    }

    /// Makes room for `width` columns (dense rows grow; sparse ones need nothing).
    pub(crate) fn grow(&mut self, width: usize) {
        if let RowCells::Dense(cells) = self {
            if cells.len() < width {
                cells.resize(width, Cell::default());
            }
        }
    }

    /// Writes every `(column, cell)` of `entries`; columns beyond a dense row's width are
    /// skipped. One match for the whole chunk, so the dense loop stays as tight as a slice
    /// write.
    pub(crate) fn write(&mut self, entries: impl Iterator<Item = (usize, Cell)>) {
        match self {
            RowCells::Dense(cells) => {
                for (column, cell) in entries {
                    if let Some(at) = cells.get_mut(column) {
                        *at = cell;
                    }
                }
            }
            RowCells::Sparse(cells) => {
                for (column, cell) in entries {
                    let Ok(column) = u32::try_from(column) else {
                        continue;
                    };
                    match cells.binary_search_by_key(&column, |&(c, _)| c) {
                        Ok(at) => cells[at].1 = cell,
                        Err(at) => cells.insert(at, (column, cell)),
                    }
                }
            }
        }
    }

    /// Empties `column`.
    pub(crate) fn clear(&mut self, column: usize) {
        match self {
            RowCells::Dense(cells) => {
                if let Some(cell) = cells.get_mut(column) {
                    *cell = Cell::default();
                }
            }
            RowCells::Sparse(cells) => {
                if let Ok(column) = u32::try_from(column) {
                    cells.retain(|&(c, _)| c != column);
                }
            }
        }
    }

    /// Sparse rows: drops the cells whose target the origin last heard more than
    /// `keep_cs` centiseconds before `now_cs` (or never). A sampled-mode row names only
    /// peers heard in its origin's last few intervals, so such a cell is one the origin no
    /// longer reports; without pruning, a long-lived row would collect every column in
    /// time. Dense rows keep every cell.
    pub(crate) fn prune(&mut self, now_cs: u64, keep_cs: u64) {
        if let RowCells::Sparse(cells) = self {
            cells.retain(|(_, cell)| cell.heard_age_cs(now_cs).is_some_and(|age| age <= keep_cs));
        }
    }

    /// Every written cell with its column, in column order.
    pub(crate) fn iter(&self) -> RowIter<'_> {
        match self {
            RowCells::Dense(cells) => RowIter::Dense(cells.iter().enumerate()),
            RowCells::Sparse(cells) => RowIter::Sparse(cells.iter()),
        }
    }

    /// The row as one cell per column, `width` wide (for a snapshot).
    pub(crate) fn to_dense(&self, width: usize) -> Vec<Cell> {
        match self {
            RowCells::Dense(cells) => cells.clone(),
            RowCells::Sparse(cells) => {
                let mut dense = vec![Cell::default(); width];
                for &(column, cell) in cells {
                    if let Some(at) = dense.get_mut(column as usize) {
                        *at = cell;
                    }
                }
                dense
            }
        }
    }
}

/// The written cells of a row with their columns (see [`RowCells::iter`]): a concrete type
/// rather than a boxed one, as full mode's witness gathering walks every row with it.
pub(crate) enum RowIter<'a> {
    Dense(std::iter::Enumerate<std::slice::Iter<'a, Cell>>),
    Sparse(std::slice::Iter<'a, (u32, Cell)>),
}

impl Iterator for RowIter<'_> {
    type Item = (usize, Cell);

    fn next(&mut self) -> Option<(usize, Cell)> {
        match self {
            RowIter::Dense(cells) => cells
                .find(|(_, c)| c.is_present())
                .map(|(column, &cell)| (column, cell)),
            RowIter::Sparse(cells) => cells.next().map(|&(column, cell)| (column as usize, cell)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::peer::PeerState;

    fn cell(rtt: u32, heard_cs: Option<u64>) -> Cell {
        Cell::new(Some(rtt), None, PeerState::Alive, heard_cs)
    }

    #[test]
    fn dense_and_sparse_rows_read_back_what_was_written() {
        for sparse in [false, true] {
            let mut row = RowCells::new(sparse, 10);
            row.write(
                [
                    (7, cell(70, None)),
                    (2, cell(20, None)),
                    (12, cell(1, None)),
                ]
                .into_iter(),
            );
            row.write([(7, cell(71, None))].into_iter());
            assert_eq!(
                row.get(7).and_then(|c| c.rtt_us()),
                Some(71),
                "sparse {sparse}"
            );
            assert_eq!(row.get(2).and_then(|c| c.rtt_us()), Some(20));
            assert_eq!(row.get(3), None);
            let columns: Vec<usize> = row.iter().map(|(c, _)| c).collect();
            // A dense row is as wide as it was made; a sparse one takes any column.
            let expected = if sparse { vec![2, 7, 12] } else { vec![2, 7] };
            assert_eq!(columns, expected);
            row.clear(7);
            assert_eq!(row.get(7), None);
            let dense = row.to_dense(10);
            assert_eq!(dense.len(), 10);
            assert!(dense[2].is_present() && !dense[7].is_present());
        }
    }

    #[test]
    fn a_sparse_row_prunes_cells_heard_long_ago_and_a_dense_one_keeps_them() {
        let (now, keep) = (100_000, 800);
        let write = |row: &mut RowCells| {
            row.write(
                [
                    (1, cell(1, Some(now - 10))),
                    (2, cell(2, Some(now - keep - 1))),
                    (3, cell(3, None)),
                ]
                .into_iter(),
            )
        };
        let mut sparse = RowCells::new(true, 4);
        write(&mut sparse);
        sparse.prune(now, keep);
        assert_eq!(sparse.iter().map(|(c, _)| c).collect::<Vec<_>>(), vec![1]);
        let mut dense = RowCells::new(false, 4);
        write(&mut dense);
        dense.prune(now, keep);
        assert_eq!(dense.iter().count(), 3);
    }
}
