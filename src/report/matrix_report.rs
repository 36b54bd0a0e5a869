//! The latency matrix as a report: the `matrix --json` contract, an aligned N×N table, and
//! an SVG heatmap. Pure presentation over any [`MatrixCells`] source: a [`MatrixReport`]
//! (built from a [`MatrixView`]) or a [`MatrixSnapshot`] taken from a running mesh.
//!
//! Rendering goes in steps ([`MatrixRender::next_chunk`]), a few rows at a time, so that the
//! matrix of the largest mesh (a million cells) never holds a node's event loop: the control
//! server writes one step, serves heartbeats, then renders the next.

use crate::core::matrix::{not_hearing, MatrixSnapshot, MatrixView};
use crate::core::peer::PeerState;
use crate::report::status::human_us;
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// The `peermesh matrix --json` contract. Deserialises too: a client parses
/// `matrix --json` back into it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatrixReport {
    /// The node whose view this is.
    pub node: String,
    /// Node names; row and column `i` are `nodes[i]`.
    pub nodes: Vec<String>,
    /// `rtt_us[i][j]`: node i's RTT p50 to node j in µs (null: diagonal, unknown, or aged out).
    pub rtt_us: Vec<Vec<Option<f64>>>,
    /// `loss_pct[i][j]`: node i's loss to node j in percent (null likewise).
    pub loss_pct: Vec<Vec<Option<f64>>>,
    /// `state[i][j]`: node i's view of node j (null likewise).
    pub state: Vec<Vec<Option<PeerState>>>,
    /// Milliseconds since row i was refreshed (null: never received).
    pub age_ms: Vec<Option<u64>>,
    /// Whether row i is fresh; stale rows have null cells.
    pub fresh: Vec<bool>,
    /// `[i, j]` pairs where i hears j but j does not hear i.
    pub asymmetric: Vec<[usize; 2]>,
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
}

impl MatrixReport {
    /// The report of `view`, as seen by `node`.
    pub fn new(node: &str, view: &MatrixView) -> MatrixReport {
        MatrixReport {
            node: node.to_owned(),
            nodes: view.nodes.clone(),
            rtt_us: view.rtt_us.clone(),
            loss_pct: view.loss_pct.clone(),
            state: view.state.clone(),
            age_ms: view.age_ms.clone(),
            fresh: view.fresh.clone(),
            asymmetric: view.asymmetric.iter().map(|&(i, j)| [i, j]).collect(),
        }
    }

    /// One JSON object on one line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// An aligned N×N table (rows: from, columns: to) with row ages and a legend.
    pub fn to_table(&self) -> String {
        MatrixRender::new(self, MatrixFormat::Table).render_all()
    }

    /// An SVG heatmap: log colour scale from green (fast) to red (slow) with a legend,
    /// names on both axes, dead / unreachable / unknown cells marked.
    pub fn to_svg(&self) -> String {
        MatrixRender::new(self, MatrixFormat::Svg).render_all()
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
    /// JSON: the rows of `rtt_us` (0), `loss_pct` (1), `state` (2); table and SVG: 0 only.
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
    svg: SvgLayout,
    /// Table column widths: names, then each node's column, then the row age.
    widths: Vec<usize>,
}

/// A step appends at least one row and stops once it has appended this many bytes.
pub const STEP_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, Default)]
struct SvgLayout {
    cell: f64,
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    lo: f64,
    hi: f64,
}

/// The widest text a table cell shows for a value (`99.99ms`, `unreach`).
const CELL_WIDTH: usize = 7;

impl<S: MatrixCells> MatrixRender<S> {
    /// Starts rendering `source` as `format`. Costs O(N) (SVG: O(N²) arithmetic for the
    /// colour scale, no allocation per cell).
    pub fn new(source: S, format: MatrixFormat) -> MatrixRender<S> {
        let mut render = MatrixRender {
            source,
            format,
            phase: Phase::Head,
            row: 0,
            asymmetric: Vec::new(),
            svg: SvgLayout::default(),
            widths: Vec::new(),
        };
        match format {
            MatrixFormat::Svg => render.svg = render.svg_layout(),
            MatrixFormat::Table => render.widths = render.table_widths(),
            MatrixFormat::Json => {}
        }
        render
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
                    MatrixFormat::Svg => self.svg_head(s),
                }
                self.phase = Phase::Rows(0);
                self.row = 0;
            }
            Phase::Rows(part) if self.row < n => {
                match self.format {
                    MatrixFormat::Json => self.json_row(s, part),
                    MatrixFormat::Table => self.table_row(s),
                    MatrixFormat::Svg => self.svg_row(s),
                }
                self.row += 1;
            }
            Phase::Rows(part) => {
                if self.format == MatrixFormat::Json && part < 2 {
                    s.push_str(if part == 0 {
                        "],\"loss_pct\":["
                    } else {
                        "],\"state\":["
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
                    MatrixFormat::Svg => self.svg_tail(s),
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
            let cell = self.source.cell(i, j);
            match part {
                0 => json(s, &cell.and_then(|c| c.0)),
                1 => json(s, &cell.and_then(|c| c.1)),
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

    fn table_widths(&self) -> Vec<usize> {
        let names = self.source.names();
        let longest = names.iter().map(|s| s.chars().count()).max().unwrap_or(0);
        let mut widths = vec![longest.max("from \\ to".len())];
        widths.extend(names.iter().map(|s| s.chars().count().max(CELL_WIDTH)));
        widths.push("row age".len());
        widths
    }

    fn table_line(&self, s: &mut String, cells: impl Iterator<Item = String>) {
        let mut line = String::new();
        for (k, (c, w)) in cells.zip(&self.widths).enumerate() {
            let pad = " ".repeat(w.saturating_sub(c.chars().count()));
            if k == 0 {
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
            .chain(std::iter::once("row age".to_owned()));
        self.table_line(s, header);
    }

    /// What one cell shows in the table: the RTT, or why there is none.
    fn cell_text(&self, i: usize, j: usize) -> String {
        if i == j {
            return "·".to_owned();
        }
        match self.source.cell(i, j) {
            Some((_, _, PeerState::Dead)) => "dead".to_owned(),
            Some((_, _, PeerState::Unreachable)) => "unreach".to_owned(),
            Some((_, _, PeerState::Left)) => "left".to_owned(),
            Some((Some(rtt), _, _)) => human_us(rtt),
            _ => "-".to_owned(),
        }
    }

    fn table_row(&mut self, s: &mut String) {
        let (i, n) = (self.row, self.n());
        let age = match (self.source.age_ms(i), self.source.fresh(i)) {
            (Some(ms), true) => format!("{ms}ms"),
            (Some(ms), false) => format!("{ms}ms stale"),
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
            "legend: · self, - unknown, dead = nobody hears it, unreach = path broken (others hear it), stale = row older than dead_after"
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

    // ----- the SVG heatmap ----------------------------------------------------------------

    fn svg_layout(&self) -> SvgLayout {
        let names = self.source.names();
        let n = names.len();
        let cell = if n > 60 {
            8.0
        } else if n > 20 {
            16.0
        } else {
            32.0
        };
        let longest = names.iter().map(|s| s.chars().count()).max().unwrap_or(1);
        let label = 12.0 * longest.min(24) as f64 * 0.6 + 12.0;
        let grid = cell * n as f64;
        let (left, top) = (label + 10.0, label + 50.0);
        let legend_h = 90.0;
        let width = (left + grid + 20.0).max(self.svg_title().chars().count() as f64 * 7.8 + 20.0);
        let (lo, hi) = self.rtt_range();
        SvgLayout {
            cell,
            left,
            top,
            width,
            height: top + grid + legend_h,
            lo,
            hi,
        }
    }

    fn svg_title(&self) -> String {
        format!(
            "Latency matrix (RTT p50) as seen by {} — rows: from, columns: to",
            self.source.node()
        )
    }

    fn rtt_range(&self) -> (f64, f64) {
        let n = self.n();
        let (mut lo, mut hi) = (f64::MAX, 0.0f64);
        for i in 0..n {
            for j in 0..n {
                if let Some((Some(v), _, _)) = self.source.cell(i, j) {
                    if v > 0.0 {
                        lo = lo.min(v);
                        hi = hi.max(v);
                    }
                }
            }
        }
        if hi <= 0.0 {
            (1.0, 1000.0)
        } else if hi / lo < 2.0 {
            (lo / 1.5, hi * 1.5)
        } else {
            (lo, hi)
        }
    }

    fn svg_head(&self, s: &mut String) {
        let SvgLayout {
            cell,
            left,
            top,
            width,
            height,
            ..
        } = self.svg;
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="10" y="20" font-size="14">{}</text>"#,
            xml(&self.svg_title())
        );
        for (i, name) in self.source.names().iter().enumerate() {
            let y = top + cell * (i as f64 + 0.5);
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{y:.1}" text-anchor="end" dominant-baseline="middle">{}</text>"#,
                left - 4.0,
                xml(name)
            );
            let x = left + cell * (i as f64 + 0.5);
            let _ = writeln!(
                s,
                r#"<text x="{x:.1}" y="{:.1}" transform="rotate(-60 {x:.1} {:.1})">{}</text>"#,
                top - 4.0,
                top - 4.0,
                xml(name)
            );
        }
    }

    fn svg_row(&self, s: &mut String) {
        let SvgLayout {
            cell,
            left,
            top,
            lo,
            hi,
            ..
        } = self.svg;
        let (i, n) = (self.row, self.n());
        let names = self.source.names();
        for j in 0..n {
            let (x, y) = (left + cell * j as f64, top + cell * i as f64);
            let value = self.source.cell(i, j);
            let (fill, mark, title) = match value {
                _ if i == j => ("#444444".to_owned(), None, "self".to_owned()),
                Some((_, _, st @ (PeerState::Dead | PeerState::Unreachable | PeerState::Left))) => {
                    (
                        "#202020".to_owned(),
                        Some("×"),
                        format!("{} → {}: {st}", names[i], names[j]),
                    )
                }
                Some((Some(rtt), _, _)) => (
                    colour(rtt, lo, hi),
                    None,
                    format!("{} → {}: {}", names[i], names[j], human_us(rtt)),
                ),
                _ => (
                    "#dddddd".to_owned(),
                    Some("?"),
                    format!("{} → {}: unknown", names[i], names[j]),
                ),
            };
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{cell:.1}" height="{cell:.1}" fill="{fill}" stroke="white" stroke-width="0.5"><title>{}</title></rect>"#,
                xml(&title)
            );
            if let Some(mark) = mark {
                let _ = write!(
                    s,
                    r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" dominant-baseline="middle" fill="{}" font-size="{:.0}">{mark}</text>"##,
                    x + cell / 2.0,
                    y + cell / 2.0,
                    if mark == "×" { "#ff5050" } else { "#666666" },
                    (cell * 0.7).max(6.0)
                );
            }
            s.push('\n');
        }
    }

    fn svg_tail(&self, s: &mut String) {
        let SvgLayout {
            cell, top, lo, hi, ..
        } = self.svg;
        // Legend: the colour scale with its end values, then the marks.
        let ly = top + cell * self.n() as f64 + 25.0;
        let _ = writeln!(s, r#"<defs><linearGradient id="scale">"#);
        for k in 0..=10 {
            let f = k as f64 / 10.0;
            let rtt = lo * (hi / lo).powf(f);
            let _ = writeln!(
                s,
                r#"<stop offset="{f:.1}" stop-color="{}"/>"#,
                colour(rtt, lo, hi)
            );
        }
        let _ = writeln!(s, "</linearGradient></defs>");
        let _ = writeln!(
            s,
            r#"<rect x="10" y="{ly:.1}" width="240" height="14" fill="url(#scale)"/>"#
        );
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.1}">{}</text>"#,
            ly + 28.0,
            human_us(lo)
        );
        let _ = writeln!(
            s,
            r#"<text x="250" y="{:.1}" text-anchor="end">{}</text>"#,
            ly + 28.0,
            human_us(hi)
        );
        let _ = writeln!(
            s,
            r#"<text x="270" y="{:.1}">RTT p50 (log scale)</text>"#,
            ly + 11.0
        );
        let _ = writeln!(
            s,
            r##"<text x="10" y="{:.1}"><tspan fill="#ff5050">×</tspan> dead / unreachable / left   <tspan fill="#666666">?</tspan> unknown   dark: self</text>"##,
            ly + 48.0
        );
        s.push_str("</svg>\n");
    }
}

/// Appends `value` as serde_json writes it (so streamed JSON equals the serialised report).
fn json<T: Serialize + ?Sized>(s: &mut String, value: &T) {
    match serde_json::to_string(value) {
        Ok(text) => s.push_str(&text),
        Err(_) => s.push_str("null"),
    }
}

/// Green → yellow → red on a log scale between `lo` and `hi`.
fn colour(v: f64, lo: f64, hi: f64) -> String {
    let f = ((v.max(lo).ln() - lo.ln()) / (hi.ln() - lo.ln())).clamp(0.0, 1.0);
    let (r, g) = if f < 0.5 {
        (f * 2.0, 1.0)
    } else {
        (1.0, 2.0 - f * 2.0)
    };
    format!(
        "#{:02x}{:02x}40",
        (r * 215.0 + 40.0) as u8,
        (g * 175.0 + 40.0) as u8
    )
}

/// Escapes text for SVG/XML.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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
        assert!(svg.contains("node3") && svg.contains("×"));
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
        for format in [MatrixFormat::Json, MatrixFormat::Table, MatrixFormat::Svg] {
            let mut render = MatrixRender::new(&snapshot, format);
            let (mut out, mut steps) = (Vec::new(), 0);
            while render.next_chunk(&mut out) {
                steps += 1;
                assert!(steps < 10_000, "a rendering ends");
            }
            let streamed = String::from_utf8(out).unwrap();
            let whole = match format {
                MatrixFormat::Json => report.to_json(),
                MatrixFormat::Table => report.to_table(),
                MatrixFormat::Svg => report.to_svg(),
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
