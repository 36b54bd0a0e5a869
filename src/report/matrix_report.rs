//! The latency matrix as a report: the `matrix --json` contract, an aligned N×N table, and
//! an SVG heatmap (drawn by [`crate::report::heatmap`]). Pure presentation over any
//! [`MatrixCells`] source: a [`MatrixReport`] (built from a [`MatrixView`]) or a
//! [`MatrixSnapshot`] taken from a running mesh.
//!
//! One rule holds in every rendering: a cell carries an RTT only while its state is `alive`
//! or `suspect` ([`has_rtt`]); a dead, unreachable, left or unknown peer's last figure
//! is not shown as if it were current.
//!
//! Rendering goes in steps ([`MatrixRender::next_chunk`]), a few rows at a time, so that the
//! matrix of the largest mesh (a million cells) never holds a node's event loop: the control
//! server writes one step, serves heartbeats, then renders the next.

use crate::core::matrix::{not_hearing, MatrixSnapshot, MatrixView};
use crate::core::peer::PeerState;
use crate::report::heatmap::Heatmap;
use crate::report::status::has_rtt;
use crate::report::units::{ago, TimeUnit};
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::time::SystemTime;

/// The `peermesh matrix --json` contract. Deserialises too: a client parses
/// `matrix --json` back into it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatrixReport {
    /// The node whose view this is.
    pub node: String,
    /// Node names; row and column `i` are `nodes[i]`.
    pub nodes: Vec<String>,
    /// `rtt_us[i][j]`: node i's RTT p50 to node j in µs; null on the diagonal, when unknown,
    /// when row i has aged out, and unless `state[i][j]` is `alive` or `suspect`.
    pub rtt_us: Vec<Vec<Option<f64>>>,
    /// `loss_pct[i][j]`: node i's loss to node j in percent (null likewise).
    pub loss_pct: Vec<Vec<Option<f64>>>,
    /// `state[i][j]`: node i's view of node j (null likewise).
    pub state: Vec<Vec<Option<PeerState>>>,
    /// `estimated_rtt_us[i][j]`: the RTT in µs that i's and j's network coordinates
    /// predict; null on the diagonal, while a coordinate is unknown or unsettled, when the
    /// viewing node holds i or j dead or left, and when `state[i][j]` or `state[j][i]` is
    /// dead, unreachable or left.
    #[serde(default)]
    pub estimated_rtt_us: Vec<Vec<Option<f64>>>,
    /// `source[i][j]`: where the cell's RTT comes from: `measured` (`rtt_us` holds it),
    /// `estimated` (no measured figure; `estimated_rtt_us` holds one), or null (neither).
    #[serde(default)]
    pub source: Vec<Vec<Option<CellSource>>>,
    /// Milliseconds since row i was refreshed (null: never received).
    pub age_ms: Vec<Option<u64>>,
    /// Whether row i is fresh (see [`MatrixView::fresh`]); a renderer marks the other rows
    /// stale.
    pub fresh: Vec<bool>,
    /// `[i, j]` pairs where i hears j but j does not hear i.
    pub asymmetric: Vec<[usize; 2]>,
}

/// Where the RTT a cell shows comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellSource {
    /// Measured by the row's node (its RTT p50).
    Measured,
    /// Predicted from the two nodes' network coordinates: nobody shared a measurement.
    Estimated,
}

/// What a renderer reads: the names and every cell of an N×N matrix.
pub trait MatrixCells {
    /// The node whose view this is.
    fn node(&self) -> &str;
    /// Node names; row and column `i` are `names()[i]`.
    fn names(&self) -> &[String];
    /// Node `i`'s figures towards node `j`: RTT p50 (µs), loss (%), state; `None` on the
    /// diagonal, when unknown, or when row `i` is not fresh.
    fn cell(&self, i: usize, j: usize) -> Option<(Option<f64>, Option<f64>, PeerState)>;
    /// Milliseconds since row `i` was updated; `None`: never received.
    fn age_ms(&self, i: usize) -> Option<u64>;
    /// Whether row `i` counts.
    fn fresh(&self, i: usize) -> bool;
    /// The RTT in µs that the coordinates of `i` and `j` predict (`None`: no estimate; the
    /// default, for a source without coordinates).
    fn estimate(&self, _i: usize, _j: usize) -> Option<f64> {
        None
    }
}

impl MatrixCells for MatrixSnapshot {
    fn node(&self) -> &str {
        MatrixSnapshot::node(self)
    }
    fn names(&self) -> &[String] {
        MatrixSnapshot::names(self)
    }
    fn cell(&self, i: usize, j: usize) -> Option<(Option<f64>, Option<f64>, PeerState)> {
        MatrixSnapshot::cell(self, i, j)
    }
    fn age_ms(&self, i: usize) -> Option<u64> {
        MatrixSnapshot::age_ms(self, i)
    }
    fn fresh(&self, i: usize) -> bool {
        MatrixSnapshot::fresh(self, i)
    }
    fn estimate(&self, i: usize, j: usize) -> Option<f64> {
        MatrixSnapshot::estimate(self, i, j)
    }
}

impl MatrixCells for MatrixReport {
    fn node(&self) -> &str {
        &self.node
    }
    fn names(&self) -> &[String] {
        &self.nodes
    }
    fn cell(&self, i: usize, j: usize) -> Option<(Option<f64>, Option<f64>, PeerState)> {
        let state = (*self.state.get(i)?.get(j)?)?;
        let rtt = *self.rtt_us.get(i)?.get(j)?;
        let loss = *self.loss_pct.get(i)?.get(j)?;
        Some((rtt, loss, state))
    }
    fn age_ms(&self, i: usize) -> Option<u64> {
        self.age_ms.get(i).copied().flatten()
    }
    fn fresh(&self, i: usize) -> bool {
        self.fresh.get(i).copied().unwrap_or(false)
    }
    fn estimate(&self, i: usize, j: usize) -> Option<f64> {
        *self.estimated_rtt_us.get(i)?.get(j)?
    }
}

impl<T: MatrixCells + ?Sized> MatrixCells for &T {
    fn node(&self) -> &str {
        (**self).node()
    }
    fn names(&self) -> &[String] {
        (**self).names()
    }
    fn cell(&self, i: usize, j: usize) -> Option<(Option<f64>, Option<f64>, PeerState)> {
        (**self).cell(i, j)
    }
    fn age_ms(&self, i: usize) -> Option<u64> {
        (**self).age_ms(i)
    }
    fn fresh(&self, i: usize) -> bool {
        (**self).fresh(i)
    }
    fn estimate(&self, i: usize, j: usize) -> Option<f64> {
        (**self).estimate(i, j)
    }
}

/// Cell `(i, j)` of `source` as every rendering shows it: the RTT dropped unless the
/// state [`has_rtt`].
pub(crate) fn shown_cell<S: MatrixCells + ?Sized>(
    source: &S,
    i: usize,
    j: usize,
) -> Option<(Option<f64>, Option<f64>, PeerState)> {
    let (rtt, loss, state) = source.cell(i, j)?;
    Some((rtt.filter(|_| has_rtt(state)), loss, state))
}

/// The estimate every rendering shows for cell `(i, j)`: none where the cell's state, or
/// the reverse cell's, says the path is gone (dead, unreachable, left), which must not look
/// like a healthy RTT.
pub(crate) fn shown_estimate<S: MatrixCells + ?Sized>(
    source: &S,
    i: usize,
    j: usize,
) -> Option<f64> {
    let estimate = source.estimate(i, j)?;
    // Either direction: a path broken one way is broken for a round trip.
    let gone = |cell: Option<(Option<f64>, Option<f64>, PeerState)>| {
        cell.is_some_and(|(_, _, state)| !has_rtt(state) && state != PeerState::Unknown)
    };
    if gone(source.cell(i, j)) || gone(source.cell(j, i)) {
        return None;
    }
    Some(estimate)
}

/// Where cell `(i, j)`'s RTT comes from, as every rendering shows it.
pub(crate) fn cell_source<S: MatrixCells + ?Sized>(
    source: &S,
    i: usize,
    j: usize,
) -> Option<CellSource> {
    if shown_cell(source, i, j).is_some_and(|c| c.0.is_some()) {
        Some(CellSource::Measured)
    } else if shown_estimate(source, i, j).is_some() {
        Some(CellSource::Estimated)
    } else {
        None
    }
}

impl MatrixReport {
    /// The report of `view`, as seen by `node`. RTTs of cells whose state does not
    /// [`has_rtt`] are left out.
    pub fn new(node: &str, view: &MatrixView) -> MatrixReport {
        let rtt_us = view
            .rtt_us
            .iter()
            .zip(&view.state)
            .map(|(rtts, states)| {
                rtts.iter()
                    .zip(states)
                    .map(|(&rtt, &state)| rtt.filter(|_| state.is_some_and(has_rtt)))
                    .collect()
            })
            .collect();
        let mut report = MatrixReport {
            node: node.to_owned(),
            nodes: view.nodes.clone(),
            rtt_us,
            loss_pct: view.loss_pct.clone(),
            state: view.state.clone(),
            estimated_rtt_us: view.estimated_rtt_us.clone(),
            source: Vec::new(),
            age_ms: view.age_ms.clone(),
            fresh: view.fresh.clone(),
            asymmetric: view.asymmetric.iter().map(|&(i, j)| [i, j]).collect(),
        };
        let n = report.nodes.len();
        report.estimated_rtt_us = (0..n)
            .map(|i| (0..n).map(|j| shown_estimate(&report, i, j)).collect())
            .collect();
        report.source = (0..n)
            .map(|i| (0..n).map(|j| cell_source(&report, i, j)).collect())
            .collect();
        report
    }

    /// One JSON object on one line: the `matrix --json` contract, rendered as a node
    /// renders it (RTTs only where the state [`has_rtt`], `asymmetric` worked out from
    /// the states), so a report built by hand obeys the contract too.
    pub fn to_json(&self) -> String {
        MatrixRender::new(self, MatrixFormat::Json).render_all()
    }

    /// An aligned N×N table (rows: from, columns: to) with row ages and a legend.
    pub fn to_table(&self) -> String {
        MatrixRender::new(self, MatrixFormat::Table).render_all()
    }

    /// An SVG heatmap (see [`crate::report::heatmap`]): the RTT in every cell on an absolute
    /// log colour scale, a mark per state, stale rows faded, loss marked, and the node and
    /// the time now (UTC) in the title.
    pub fn to_svg(&self) -> String {
        MatrixRender::new(self, MatrixFormat::Svg).render_all()
    }

    /// [`MatrixReport::to_svg`] with `at` as the snapshot's time in the title.
    pub fn to_svg_at(&self, at: SystemTime) -> String {
        MatrixRender::new(self, MatrixFormat::Svg)
            .at(at)
            .render_all()
    }
}

/// How a matrix is rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatrixFormat {
    /// An aligned table.
    Table,
    /// The `matrix --json` contract (the same bytes as [`MatrixReport::to_json`]).
    Json,
    /// An SVG heatmap.
    Svg,
}

/// Where a step-wise rendering is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Head,
    /// JSON: the rows of `rtt_us` (0), `loss_pct` (1), `state` (2), `estimated_rtt_us` (3),
    /// `source` (4); table and SVG: 0 only.
    Rows(u8),
    Tail,
    Done,
}

/// A rendering of a matrix in steps: each [`MatrixRender::next_chunk`] appends a few rows'
/// worth (about [`STEP_BYTES`]), so a caller can interleave other work.
#[derive(Debug)]
pub struct MatrixRender<S> {
    source: S,
    format: MatrixFormat,
    phase: Phase,
    row: usize,
    /// Pairs `(i, j)` found while rendering the states: i hears j, j does not hear i.
    asymmetric: Vec<(usize, usize)>,
    /// The heatmap's layout (SVG only).
    svg: Option<Heatmap>,
    /// Table column widths: names, then each node's column, then the row age.
    widths: Vec<usize>,
    /// Table: the unit of each node's column.
    units: Vec<TimeUnit>,
}

/// A step appends at least one row and stops once it has appended this many bytes.
pub const STEP_BYTES: usize = 64 * 1024;

/// The widest text a table cell shows for a value (`~999.99ms`, an estimate).
const CELL_WIDTH: usize = 9;

impl<S: MatrixCells> MatrixRender<S> {
    /// Starts rendering `source` as `format`. Costs O(N) (the table: O(N²) arithmetic to
    /// pick each column's unit, no allocation per cell). An SVG's title carries the wall
    /// clock's time now (UTC); [`MatrixRender::at`] sets another.
    pub fn new(source: S, format: MatrixFormat) -> MatrixRender<S> {
        let mut render = MatrixRender {
            source,
            format,
            phase: Phase::Head,
            row: 0,
            asymmetric: Vec::new(),
            svg: None,
            widths: Vec::new(),
            units: Vec::new(),
        };
        match format {
            MatrixFormat::Svg => {
                render.svg = Some(Heatmap::new(&render.source, SystemTime::now()));
            }
            MatrixFormat::Table => {
                render.units = render.table_units();
                render.widths = render.table_widths();
            }
            MatrixFormat::Json => {}
        }
        render
    }

    /// The snapshot's time an SVG's title shows (by default the time [`MatrixRender::new`]
    /// was called); no effect on the other formats. Call it before the first chunk.
    pub fn at(mut self, at: SystemTime) -> MatrixRender<S> {
        if let Some(svg) = &mut self.svg {
            svg.set_time(at);
        }
        self
    }

    /// Whether everything has been rendered.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Appends the next part to `out`; returns `false` once there is nothing more.
    pub fn next_chunk(&mut self, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        while self.phase != Phase::Done && out.len() - start < STEP_BYTES {
            let mut text = String::new();
            self.step(&mut text);
            out.extend_from_slice(text.as_bytes());
        }
        self.phase != Phase::Done
    }

    /// The whole rendering at once.
    pub fn render_all(mut self) -> String {
        let mut out = Vec::new();
        while self.next_chunk(&mut out) {}
        String::from_utf8(out).unwrap_or_default()
    }

    fn n(&self) -> usize {
        self.source.names().len()
    }

    /// One unit of work: the head, one row, or the tail.
    fn step(&mut self, s: &mut String) {
        let n = self.n();
        match self.phase {
            Phase::Head => {
                match self.format {
                    MatrixFormat::Json => self.json_head(s),
                    MatrixFormat::Table => self.table_head(s),
                    MatrixFormat::Svg => {
                        if let Some(svg) = &self.svg {
                            svg.head(&self.source, s);
                        }
                    }
                }
                self.phase = Phase::Rows(0);
                self.row = 0;
            }
            Phase::Rows(part) if self.row < n => {
                match self.format {
                    MatrixFormat::Json => self.json_row(s, part),
                    MatrixFormat::Table => self.table_row(s),
                    MatrixFormat::Svg => {
                        if let Some(svg) = &self.svg {
                            svg.row(&self.source, self.row, s);
                        }
                    }
                }
                self.row += 1;
            }
            Phase::Rows(part) => {
                if self.format == MatrixFormat::Json && part < 4 {
                    s.push_str(match part {
                        0 => "],\"loss_pct\":[",
                        1 => "],\"state\":[",
                        2 => "],\"estimated_rtt_us\":[",
                        _ => "],\"source\":[",
                    });
                    self.phase = Phase::Rows(part + 1);
                    self.row = 0;
                } else {
                    self.phase = Phase::Tail;
                }
            }
            Phase::Tail => {
                match self.format {
                    MatrixFormat::Json => self.json_tail(s),
                    MatrixFormat::Table => self.table_tail(s),
                    MatrixFormat::Svg => {
                        if let Some(svg) = &self.svg {
                            svg.tail(s);
                        }
                    }
                }
                self.phase = Phase::Done;
            }
            Phase::Done => {}
        }
    }

    // ----- JSON: the same bytes serde writes for `MatrixReport` --------------------------

    fn json_head(&self, s: &mut String) {
        s.push_str("{\"node\":");
        json(s, &self.source.node());
        s.push_str(",\"nodes\":");
        json(s, &self.source.names());
        s.push_str(",\"rtt_us\":[");
    }

    fn json_row(&mut self, s: &mut String, part: u8) {
        let (i, n) = (self.row, self.n());
        if i > 0 {
            s.push(',');
        }
        s.push('[');
        for j in 0..n {
            if j > 0 {
                s.push(',');
            }
            let cell = shown_cell(&self.source, i, j);
            match part {
                0 => json(s, &cell.and_then(|c| c.0)),
                1 => json(s, &cell.and_then(|c| c.1)),
                3 => json(s, &shown_estimate(&self.source, i, j)),
                4 => json(s, &cell_source(&self.source, i, j)),
                _ => {
                    let state = cell.map(|c| c.2);
                    json(s, &state.map(PeerState::as_str));
                    let back = self.source.cell(j, i).map(|c| c.2);
                    if state == Some(PeerState::Alive) && not_hearing(back) {
                        self.asymmetric.push((i, j));
                    }
                }
            }
        }
        s.push(']');
    }

    fn json_tail(&self, s: &mut String) {
        let n = self.n();
        s.push_str("],\"age_ms\":");
        json(
            s,
            &(0..n).map(|i| self.source.age_ms(i)).collect::<Vec<_>>(),
        );
        s.push_str(",\"fresh\":");
        json(s, &(0..n).map(|i| self.source.fresh(i)).collect::<Vec<_>>());
        s.push_str(",\"asymmetric\":");
        let pairs: Vec<[usize; 2]> = self.asymmetric.iter().map(|&(i, j)| [i, j]).collect();
        json(s, &pairs);
        s.push('}');
    }

    // ----- the table ----------------------------------------------------------------------

    /// Each column's unit, from the largest RTT it shows: one unit per column.
    fn table_units(&self) -> Vec<TimeUnit> {
        let n = self.n();
        let mut max = vec![0.0f64; n];
        for i in 0..n {
            for (j, m) in max.iter_mut().enumerate() {
                if let Some((Some(rtt), _, _)) = shown_cell(&self.source, i, j) {
                    *m = m.max(rtt);
                } else if let Some(rtt) = shown_estimate(&self.source, i, j) {
                    *m = m.max(rtt);
                }
            }
        }
        max.into_iter()
            .map(TimeUnit::two_decimals_for_max)
            .collect()
    }

    fn table_widths(&self) -> Vec<usize> {
        let names = self.source.names();
        let longest = names.iter().map(|s| s.chars().count()).max().unwrap_or(0);
        let mut widths = vec![longest.max("from \\ to".len())];
        widths.extend(names.iter().map(|s| s.chars().count().max(CELL_WIDTH)));
        // `12.0s ago, stale`, `5m02s ago, stale`.
        widths.push("00m00s ago, stale".len());
        widths
    }

    fn table_line(&self, s: &mut String, cells: impl Iterator<Item = String>) {
        let mut line = String::new();
        let last = self.widths.len().saturating_sub(1);
        for (k, (c, w)) in cells.zip(&self.widths).enumerate() {
            let pad = " ".repeat(w.saturating_sub(c.chars().count()));
            // Names and the row's age align left, figures right.
            if k == 0 || k == last {
                let _ = write!(line, "{c}{pad}  ");
            } else {
                let _ = write!(line, "{pad}{c}  ");
            }
        }
        let _ = writeln!(s, "{}", line.trim_end());
    }

    fn table_head(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "latency matrix as seen by {} (RTT p50, rows: from, columns: to)",
            self.source.node()
        );
        let names = self.source.names();
        let header = std::iter::once("from \\ to".to_owned())
            .chain(names.iter().cloned())
            .chain(std::iter::once("updated".to_owned()));
        self.table_line(s, header);
    }

    /// What one cell shows in the table: the RTT, or why there is none.
    fn cell_text(&self, i: usize, j: usize) -> String {
        if i == j {
            return "·".to_owned();
        }
        match shown_cell(&self.source, i, j) {
            Some((_, _, PeerState::Dead)) => "dead".to_owned(),
            Some((_, _, PeerState::Unreachable)) => "unreach".to_owned(),
            Some((_, _, PeerState::Left)) => "left".to_owned(),
            Some((Some(rtt), _, _)) => self.format_rtt(j, rtt),
            _ => match shown_estimate(&self.source, i, j) {
                Some(rtt) => format!("~{}", self.format_rtt(j, rtt)),
                None => "-".to_owned(),
            },
        }
    }

    /// An RTT in column `j`'s unit.
    fn format_rtt(&self, j: usize, rtt: f64) -> String {
        match self.units.get(j) {
            Some(unit) => unit.format(rtt),
            None => TimeUnit::two_decimals_for_max(rtt).format(rtt),
        }
    }

    fn table_row(&mut self, s: &mut String) {
        let (i, n) = (self.row, self.n());
        let age = match (self.source.age_ms(i), self.source.fresh(i)) {
            (Some(ms), true) => ago(ms),
            (Some(ms), false) => format!("{}, stale", ago(ms)),
            (None, _) => "never".to_owned(),
        };
        let cells = std::iter::once(self.source.names()[i].clone())
            .chain((0..n).map(|j| self.cell_text(i, j)))
            .chain(std::iter::once(age));
        self.table_line(s, cells);
        for j in 0..n {
            let state = self.source.cell(i, j).map(|c| c.2);
            if state == Some(PeerState::Alive) && not_hearing(self.source.cell(j, i).map(|c| c.2)) {
                self.asymmetric.push((i, j));
            }
        }
    }

    fn table_tail(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "legend: · self, - no figure (unknown, no RTT yet, or a stale row), ~ estimated from network coordinates (nobody measured it), dead = nobody hears it, unreach = path broken (others hear it), left = said goodbye, stale = row older than dead_after or from a peer not alive here"
        );
        if !self.asymmetric.is_empty() {
            let names = self.source.names();
            let pairs: Vec<String> = self
                .asymmetric
                .iter()
                .map(|&(i, j)| format!("{} hears {} but not back", names[i], names[j]))
                .collect();
            let _ = writeln!(s, "asymmetric: {}", pairs.join("; "));
        }
    }
}

/// Appends `value` as serde_json writes it (so streamed JSON equals the serialised report).
fn json<T: Serialize + ?Sized>(s: &mut String, value: &T) {
    match serde_json::to_string(value) {
        Ok(text) => s.push_str(&text),
        Err(_) => s.push_str("null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Link, Sim};
    use std::time::Duration;

    #[test]
    fn reports_render_json_table_and_svg() {
        let mut sim = Sim::with_nodes(4, Duration::from_millis(100), 3);
        sim.set_default_link(Link::latency(Duration::from_millis(1)));
        sim.run_for(Duration::from_secs(2));
        sim.crash(3);
        sim.run_for(Duration::from_secs(1));
        let mesh = sim.mesh(0).unwrap();
        let report = MatrixReport::new(mesh.name(), &mesh.matrix());
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["nodes"].as_array().unwrap().len(), 4);
        assert_eq!(json["rtt_us"][1][2], 2000.0);
        assert!(json["rtt_us"][1][1].is_null());
        assert_eq!(json["age_ms"][0], 0);
        let table = report.to_table();
        assert!(table.lines().nth(1).unwrap().starts_with("from \\ to"));
        assert!(table.contains("2.00ms") && table.contains("dead"));
        let svg = report.to_svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("node3") && svg.contains(">dead</text>"));
    }

    /// Issue 15: a row this node cannot receive (its origin unreachable from here) leaves
    /// its cells unmeasured; they show the coordinates' estimate, marked as one everywhere,
    /// while no estimate stands in for the broken path itself.
    #[test]
    fn cells_nobody_measured_show_marked_estimates() {
        let mut sim = Sim::with_nodes(4, Duration::from_millis(100), 5);
        sim.set_default_link(Link::latency(Duration::from_millis(1)));
        sim.run_for(Duration::from_secs(3));
        let cut = Link::latency(Duration::from_millis(1)).with_loss(1.0);
        sim.set_link(0, 3, cut);
        sim.run_for(Duration::from_secs(2));
        let mesh = sim.mesh(0).unwrap();
        assert_eq!(sim.state(0, 3), Some(PeerState::Unreachable));
        let report = MatrixReport::new(mesh.name(), &mesh.matrix());
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["source"][1][2], "measured");
        assert_eq!(json["rtt_us"][1][2], 2000.0);
        assert_eq!(json["source"][3][1], "estimated", "{}", report.to_json());
        assert!(json["rtt_us"][3][1].is_null());
        let estimate = json["estimated_rtt_us"][3][1].as_f64().unwrap_or(0.0);
        assert!((estimate - 2000.0).abs() < 600.0, "estimate {estimate}");
        // The broken path has no figure of either kind.
        assert!(json["source"][0][3].is_null());
        assert!(json["estimated_rtt_us"][0][3].is_null());
        assert!(json["source"][3][0].is_null(), "{}", report.to_json());
        assert!(json["estimated_rtt_us"][3][0].is_null());
        assert!(json["source"][2][2].is_null());
        let parsed: MatrixReport = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(parsed.source[3][1], Some(CellSource::Estimated));
        let table = report.to_table();
        let row3 = table.lines().find(|l| l.starts_with("node3")).unwrap_or("");
        assert!(row3.contains('~'), "{table}");
        assert!(table.contains("~ estimated"));
        let svg = report.to_svg();
        assert!(
            svg.contains(r#"<rect class="est""#)
                && svg.contains("estimated from network coordinates")
        );
        assert!(svg.contains("≈ estimated"));
    }

    #[test]
    fn streamed_renderings_of_a_snapshot_equal_the_whole_report() {
        let mut sim = Sim::with_nodes(30, Duration::from_millis(100), 4);
        sim.set_default_link(Link::latency(Duration::from_micros(700)));
        sim.run_for(Duration::from_secs(2));
        sim.crash(7);
        sim.set_link_oneway(3, 4, Link::latency(Duration::from_millis(1)).with_loss(1.0));
        sim.run_for(Duration::from_secs(2));
        let mesh = sim.mesh(0).unwrap();
        let report = MatrixReport::new(mesh.name(), &mesh.matrix());
        let snapshot = mesh.matrix_snapshot();
        // The SVG's title has the time: both renderings are given the same.
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        for format in [MatrixFormat::Json, MatrixFormat::Table, MatrixFormat::Svg] {
            let mut render = MatrixRender::new(&snapshot, format).at(at);
            let (mut out, mut steps) = (Vec::new(), 0);
            while render.next_chunk(&mut out) {
                steps += 1;
                assert!(steps < 10_000, "a rendering ends");
            }
            let streamed = String::from_utf8(out).unwrap();
            let whole = match format {
                MatrixFormat::Json => report.to_json(),
                MatrixFormat::Table => report.to_table(),
                MatrixFormat::Svg => report.to_svg_at(at),
            };
            assert_eq!(streamed, whole, "{format:?}");
        }
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert!(!json["asymmetric"].as_array().unwrap().is_empty(), "{json}");
        assert_eq!(json["state"][0][7], "dead");
    }

    #[test]
    fn matrix_json_parses_back_into_the_same_report_and_renders_the_same() {
        let mut sim = Sim::with_nodes(6, Duration::from_millis(100), 9);
        let lossy = Link::latency(Duration::from_micros(400)).with_loss(0.2);
        sim.set_default_link(lossy.with_jitter(Duration::from_micros(90)));
        sim.run_for(Duration::from_secs(3));
        sim.crash(5);
        sim.run_for(Duration::from_secs(1));
        let mesh = sim.mesh(0).unwrap();
        let report = MatrixReport::new(mesh.name(), &mesh.matrix());
        let json = report.to_json();
        let back: MatrixReport = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, report, "{json}");
        assert_eq!(back.state[0][5], Some(PeerState::Dead));
        assert_eq!(back.to_json(), json);
        assert_eq!(back.to_table(), report.to_table());
        // A report read from elsewhere may be ragged: rendering it never panics.
        let mut ragged = back;
        ragged.rtt_us[1].clear();
        ragged.state.truncate(2);
        let _ = (ragged.to_table(), ragged.to_svg(), ragged.to_json());
    }
}
