//! The latency matrix as a report: the `matrix --json` contract, an aligned N×N table, and
//! an SVG heatmap. Pure presentation over [`MatrixView`].

use crate::matrix::MatrixView;
use crate::peer::PeerState;
use crate::status::human_us;
use serde::Serialize;
use std::fmt::Write;

/// The `peermesh matrix --json` contract.
#[derive(Clone, Debug, PartialEq, Serialize)]
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
    pub state: Vec<Vec<Option<&'static str>>>,
    /// Milliseconds since row i was refreshed (null: never received).
    pub age_ms: Vec<Option<u64>>,
    /// Whether row i is fresh; stale rows have null cells.
    pub fresh: Vec<bool>,
    /// `[i, j]` pairs where i hears j but j does not hear i.
    pub asymmetric: Vec<[usize; 2]>,
}

impl MatrixReport {
    /// The report of `view`, as seen by `node`.
    pub fn new(node: &str, view: &MatrixView) -> MatrixReport {
        MatrixReport {
            node: node.to_owned(),
            nodes: view.nodes.clone(),
            rtt_us: view.rtt_us.clone(),
            loss_pct: view.loss_pct.clone(),
            state: view
                .state
                .iter()
                .map(|row| row.iter().map(|s| s.map(PeerState::as_str)).collect())
                .collect(),
            age_ms: view.age_ms.clone(),
            fresh: view.fresh.clone(),
            asymmetric: view.asymmetric.iter().map(|&(i, j)| [i, j]).collect(),
        }
    }

    /// One JSON object on one line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// What one cell shows in the table: the RTT, or why there is none.
    fn cell_text(&self, i: usize, j: usize) -> String {
        if i == j {
            return "·".to_owned();
        }
        match (self.rtt_us[i][j], self.state[i][j]) {
            (_, Some("dead")) => "dead".to_owned(),
            (_, Some("unreachable")) => "unreach".to_owned(),
            (_, Some("left")) => "left".to_owned(),
            (Some(rtt), _) => human_us(rtt),
            _ => "-".to_owned(),
        }
    }

    /// An aligned N×N table (rows: from, columns: to) with row ages and a legend.
    pub fn to_table(&self) -> String {
        let n = self.nodes.len();
        let mut cells: Vec<Vec<String>> = Vec::with_capacity(n + 1);
        let mut header = vec!["from \\ to".to_owned()];
        header.extend(self.nodes.iter().cloned());
        header.push("row age".to_owned());
        cells.push(header);
        for i in 0..n {
            let mut row = vec![self.nodes[i].clone()];
            row.extend((0..n).map(|j| self.cell_text(i, j)));
            row.push(match (self.age_ms[i], self.fresh[i]) {
                (Some(ms), true) => format!("{ms}ms"),
                (Some(ms), false) => format!("{ms}ms stale"),
                (None, _) => "never".to_owned(),
            });
            cells.push(row);
        }
        let cols = n + 2;
        let mut widths = vec![0usize; cols];
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "latency matrix as seen by {} (RTT p50, rows: from, columns: to)",
            self.node
        );
        for row in &cells {
            let mut line = String::new();
            for (k, (c, w)) in row.iter().zip(&widths).enumerate() {
                let pad = " ".repeat(w - c.chars().count());
                if k == 0 {
                    let _ = write!(line, "{c}{pad}  ");
                } else {
                    let _ = write!(line, "{pad}{c}  ");
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        let _ = writeln!(
            out,
            "legend: · self, - unknown, dead = nobody hears it, unreach = path broken (others hear it), stale = row older than dead_after"
        );
        if !self.asymmetric.is_empty() {
            let pairs: Vec<String> = self
                .asymmetric
                .iter()
                .map(|[i, j]| format!("{} hears {} but not back", self.nodes[*i], self.nodes[*j]))
                .collect();
            let _ = writeln!(out, "asymmetric: {}", pairs.join("; "));
        }
        out
    }

    /// An SVG heatmap: log colour scale from green (fast) to red (slow) with a legend,
    /// names on both axes, dead / unreachable / unknown cells marked.
    pub fn to_svg(&self) -> String {
        let n = self.nodes.len();
        let cell = if n > 60 {
            8.0
        } else if n > 20 {
            16.0
        } else {
            32.0
        };
        let label = 12.0
            * self
                .nodes
                .iter()
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(1)
                .min(24) as f64
            * 0.6
            + 12.0;
        let grid = cell * n as f64;
        let (left, top) = (label + 10.0, label + 50.0);
        let legend_h = 90.0;
        let title = format!(
            "Latency matrix (RTT p50) as seen by {} — rows: from, columns: to",
            self.node
        );
        let width = (left + grid + 20.0).max(title.chars().count() as f64 * 7.8 + 20.0);
        let height = top + grid + legend_h;
        let (lo, hi) = self.rtt_range();
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="10" y="20" font-size="14">{}</text>"#,
            xml(&title)
        );
        for (i, name) in self.nodes.iter().enumerate() {
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
        for i in 0..n {
            for j in 0..n {
                let (x, y) = (left + cell * j as f64, top + cell * i as f64);
                let state = self.state[i][j];
                let (fill, mark, title) = if i == j {
                    ("#444444".to_owned(), None, "self".to_owned())
                } else if matches!(state, Some("dead") | Some("unreachable") | Some("left")) {
                    let st = state.unwrap_or("dead");
                    (
                        "#202020".to_owned(),
                        Some("×"),
                        format!("{} → {}: {st}", self.nodes[i], self.nodes[j]),
                    )
                } else if let Some(rtt) = self.rtt_us[i][j] {
                    (
                        colour(rtt, lo, hi),
                        None,
                        format!("{} → {}: {}", self.nodes[i], self.nodes[j], human_us(rtt)),
                    )
                } else {
                    (
                        "#dddddd".to_owned(),
                        Some("?"),
                        format!("{} → {}: unknown", self.nodes[i], self.nodes[j]),
                    )
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
        // Legend: the colour scale with its end values, then the marks.
        let ly = top + grid + 25.0;
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
        s
    }

    fn rtt_range(&self) -> (f64, f64) {
        let all = self
            .rtt_us
            .iter()
            .flatten()
            .flatten()
            .copied()
            .filter(|v| *v > 0.0);
        let (lo, hi) = all.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if hi <= 0.0 {
            (1.0, 1000.0)
        } else if hi / lo < 2.0 {
            (lo / 1.5, hi * 1.5)
        } else {
            (lo, hi)
        }
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
}
