//! The SVG heatmap of the latency matrix (`peermesh matrix --svg FILE`).
//!
//! A screenshot of it carries the data, without hovering:
//!
//! - every cell shows its RTT (p50) as text, and, on small meshes, a second line with
//!   `suspect` and the loss when there is any; a cell with loss also has a white corner
//!   triangle, whatever the mesh's size;
//! - the colour is on an **absolute** logarithmic scale with fixed anchors,
//!   [`SCALE_MIN_US`] (10 µs) to [`SCALE_MAX_US`] (1 s), so two pictures compare: a 30 µs
//!   loopback link has the same colour in every picture. The palette is viridis (dark
//!   purple for fast, yellow for slow), perceptually even and readable with any common
//!   colour-vision deficiency, interpolated here between its published stops
//!   ([`scale_colour`]);
//! - each state without an RTT has its own hatch pattern, tint and word: `dead` (orange
//!   diagonal stripes), `unreach` (purple cross-hatch), `left` (grey horizontal lines),
//!   `unknown` (blue dots); a `suspect` cell keeps its RTT colour inside a dashed outline;
//!   the diagonal (a node and itself) is white, crossed by a thin line;
//! - a cell nobody measured but whose two nodes' network coordinates are known shows the
//!   estimate, `≈12.3ms`, in italics on its colour, paler and inside a dotted outline: an
//!   estimate is never drawn like a measurement;
//! - a stale row (gossip older than `dead_after`, or from a peer not alive here) is drawn
//!   faded with `stale · 12.0s ago` beside it; a stale row with no figures at all is one
//!   hatched grey band saying so;
//! - the title names the node and the time of the snapshot (UTC, ISO 8601, read from the
//!   wall clock when rendering starts, unless [`crate::report::matrix_report::MatrixRender::at`]
//!   gives one); every legend entry is its own positioned text.
//!
//! It renders in steps like the other formats: [`Heatmap::head`] (styles, patterns, title,
//! column names), one [`Heatmap::row`] per step, [`Heatmap::tail`] (the legend).

use crate::core::peer::PeerState;
use crate::report::matrix_report::{shown_cell, shown_estimate, MatrixCells};
use crate::report::status::has_rtt;
use crate::report::units::{ago, human_us};
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// The RTT (µs) at the fast end of the colour scale; faster is drawn the same.
pub const SCALE_MIN_US: f64 = 10.0;
/// The RTT (µs) at the slow end of the colour scale (1 s); slower is drawn the same.
pub const SCALE_MAX_US: f64 = 1_000_000.0;

/// Viridis at nine evenly spaced points, fast end first.
const VIRIDIS: [[u8; 3]; 9] = [
    [0x44, 0x01, 0x54],
    [0x47, 0x2d, 0x7b],
    [0x3b, 0x52, 0x8b],
    [0x2c, 0x72, 0x8e],
    [0x21, 0x91, 0x8c],
    [0x28, 0xae, 0x80],
    [0x5e, 0xc9, 0x62],
    [0xad, 0xdc, 0x30],
    [0xfd, 0xe7, 0x25],
];

/// Where `rtt_us` lies on the scale: 0 at [`SCALE_MIN_US`] or faster, 1 at
/// [`SCALE_MAX_US`] or slower, logarithmic between (each decade a fifth).
pub fn scale_position(rtt_us: f64) -> f64 {
    if rtt_us.is_nan() {
        return 0.0;
    }
    let v = rtt_us.clamp(SCALE_MIN_US, SCALE_MAX_US);
    (v / SCALE_MIN_US).log10() / (SCALE_MAX_US / SCALE_MIN_US).log10()
}

/// The colour (RGB) a cell with `rtt_us` is filled with: viridis at
/// [`scale_position`], linearly interpolated between its stops.
pub fn scale_colour(rtt_us: f64) -> [u8; 3] {
    let f = scale_position(rtt_us) * (VIRIDIS.len() - 1) as f64;
    let k = (f.floor() as usize).min(VIRIDIS.len() - 2);
    let t = f - k as f64;
    let (a, b) = (VIRIDIS[k], VIRIDIS[k + 1]);
    let mix = |x: u8, y: u8| (f64::from(x) + (f64::from(y) - f64::from(x)) * t).round() as u8;
    [mix(a[0], b[0]), mix(a[1], b[1]), mix(a[2], b[2])]
}

fn hex([r, g, b]: [u8; 3]) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// Whether text on `c` should be white (dark background) rather than black.
fn is_dark([r, g, b]: [u8; 3]) -> bool {
    let lin = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.040_45 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b) < 0.2
}

/// The scale's labelled anchors: one per decade.
const TICKS: [(f64, &str); 6] = [
    (10.0, "10µs"),
    (100.0, "100µs"),
    (1e3, "1ms"),
    (1e4, "10ms"),
    (1e5, "100ms"),
    (1e6, "1s"),
];

/// The legend's entries after the colour bar: what the swatch is, and the words.
const LEGEND: [(Swatch, &str); 10] = [
    (Swatch::OwnDiagonal, "self"),
    (Swatch::Suspect, "suspect: RTT colour, dashed outline"),
    (Swatch::State(PeerState::Dead), "dead: nobody hears it"),
    (
        Swatch::State(PeerState::Unreachable),
        "unreach: path broken, others hear it",
    ),
    (Swatch::State(PeerState::Left), "left: stopped cleanly"),
    (Swatch::State(PeerState::Unknown), "unknown: never heard"),
    (Swatch::Loss, "loss > 0: corner mark"),
    (Swatch::Stale, "stale row: faded, age at the right"),
    (Swatch::Estimated, "≈ estimated: not measured, dotted"),
    (Swatch::NoData, "no figure"),
];

#[derive(Clone, Copy, Debug)]
enum Swatch {
    OwnDiagonal,
    Suspect,
    State(PeerState),
    Loss,
    Stale,
    Estimated,
    NoData,
}

/// The pattern a state without an RTT is filled with, and the word in its cells.
fn state_mark(state: PeerState) -> Option<(&'static str, &'static str)> {
    match state {
        PeerState::Dead => Some(("url(#p-dead)", "dead")),
        PeerState::Unreachable => Some(("url(#p-unreachable)", "unreach")),
        PeerState::Left => Some(("url(#p-left)", "left")),
        PeerState::Unknown => Some(("url(#p-unknown)", "unknown")),
        PeerState::Alive | PeerState::Suspect => None,
    }
}

/// Roughly how wide `text` is at `font` px in a sans-serif face (generous, for layout).
fn text_width(text: &str, font: f64) -> f64 {
    text.chars().count() as f64 * font * 0.62
}

const LEGEND_FONT: f64 = 11.0;
const LEGEND_LINE: f64 = 22.0;
const BAR_WIDTH: f64 = 300.0;
const AGE_WIDTH: f64 = 130.0;

/// The layout of one heatmap, fixed when rendering starts (O(N) in the names).
#[derive(Clone, Debug)]
pub(crate) struct Heatmap {
    n: usize,
    /// A cell's width and height, px.
    cw: f64,
    ch: f64,
    /// The font size of the text in cells, px.
    font: f64,
    /// Whether cells are tall enough for a second line (suspect, loss).
    two_lines: bool,
    /// The grid's top-left corner.
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    legend_top: f64,
    /// Where each legend entry goes: (x, line).
    legend: Vec<(f64, usize)>,
    at: SystemTime,
}

impl Heatmap {
    /// The layout for `source`, titled with the time `at`.
    pub(crate) fn new<S: MatrixCells + ?Sized>(source: &S, at: SystemTime) -> Heatmap {
        let names = source.names();
        let n = names.len();
        let (cw, ch, font, two_lines) = if n <= 16 {
            (72.0, 38.0, 12.0, true)
        } else if n <= 48 {
            (52.0, 22.0, 10.0, false)
        } else {
            (40.0, 14.0, 8.0, false)
        };
        let longest = names.iter().map(|s| s.chars().count()).max().unwrap_or(1);
        let label = longest.clamp(1, 24) as f64 * 12.0 * 0.62;
        let left = (10.0 + label + 8.0).ceil();
        let top = (52.0 + label * 0.72 + 12.0).ceil();
        let (grid_w, grid_h) = (cw * n as f64, ch * n as f64);
        let title = title_text(source.node(), at);
        let width = (left + grid_w + 10.0 + AGE_WIDTH)
            .max(text_width(&title, 15.0) + 20.0)
            .max(BAR_WIDTH + 200.0)
            .ceil();
        let mut legend = Vec::with_capacity(LEGEND.len());
        let (mut x, mut line) = (10.0, 0);
        for (_, words) in LEGEND {
            let w = 22.0 + text_width(words, LEGEND_FONT) + 18.0;
            if x > 10.0 && x + w > width - 10.0 {
                x = 10.0;
                line += 1;
            }
            legend.push((x, line));
            x += w;
        }
        let legend_top = top + grid_h + 30.0;
        let height = legend_top + 62.0 + (line + 1) as f64 * LEGEND_LINE + 6.0;
        Heatmap {
            n,
            cw,
            ch,
            font,
            two_lines,
            left,
            top,
            width,
            height: height.ceil(),
            legend_top,
            legend,
            at,
        }
    }

    /// Sets the time the title shows.
    pub(crate) fn set_time(&mut self, at: SystemTime) {
        self.at = at;
    }

    /// The opening: the root element, styles, patterns, the title and the column names.
    pub(crate) fn head<S: MatrixCells + ?Sized>(&self, source: &S, s: &mut String) {
        let (w, h) = (self.width, self.height);
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" xml:space="preserve" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="sans-serif" font-size="11">"#
        );
        let font = self.font;
        let _ = writeln!(
            s,
            "<style>\
             .t{{text-anchor:middle;dominant-baseline:central;font-size:{font:.0}px;fill:#000}}\
             .t.w{{fill:#fff}}\
             .t.m{{font-weight:bold;paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}}\
             .t.n{{fill:#888}}\
             .t2{{font-size:{:.0}px}}\
             g.r rect{{stroke:#fff;stroke-width:1}}\
             rect.nd{{fill:#fff;stroke:#bbb;stroke-dasharray:2 2}}\
             rect.self{{fill:#fff;stroke:#ccc}}\
             line.self{{stroke:#aaa;stroke-width:1}}\
             rect.sus{{stroke:#000;stroke-width:2.5;stroke-dasharray:5 3}}\
             rect.sus.w{{stroke:#fff}}\
             rect.est{{stroke:#333;stroke-width:1.5;stroke-dasharray:1 2}}\
             .t.e{{font-style:italic}}\
             path.loss{{fill:#fff;stroke:#000;stroke-width:0.8}}\
             .rn{{text-anchor:end;dominant-baseline:central;font-size:12px}}\
             .rn.st{{font-style:italic;fill:#666}}\
             .cn{{font-size:12px}}\
             .age{{dominant-baseline:central;fill:#555}}\
             .age.st{{font-weight:bold;fill:#000}}\
             .band{{text-anchor:middle;dominant-baseline:central;font-style:italic;fill:#333}}\
             .lg{{font-size:{LEGEND_FONT:.0}px;dominant-baseline:central}}\
             </style>",
            (font - 2.0).max(7.0)
        );
        s.push_str("<defs>\n");
        s.push_str(concat!(
            r##"<pattern id="p-dead" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="8" height="8" fill="#f7d8c3"/><rect width="3" height="8" fill="#d55e00"/></pattern>"##,
            "\n",
            r##"<pattern id="p-unreachable" width="8" height="8" patternUnits="userSpaceOnUse"><rect width="8" height="8" fill="#f4dcea"/><path d="M0 4H8M4 0V8" stroke="#b9559a" stroke-width="2"/></pattern>"##,
            "\n",
            r##"<pattern id="p-left" width="6" height="6" patternUnits="userSpaceOnUse"><rect width="6" height="6" fill="#e4e4e4"/><rect width="6" height="1.5" fill="#6e6e6e"/></pattern>"##,
            "\n",
            r##"<pattern id="p-unknown" width="8" height="8" patternUnits="userSpaceOnUse"><rect width="8" height="8" fill="#d9e8f5"/><circle cx="4" cy="4" r="1.6" fill="#0072b2"/></pattern>"##,
            "\n",
            r##"<pattern id="p-stale" width="10" height="10" patternUnits="userSpaceOnUse" patternTransform="rotate(-45)"><rect width="10" height="10" fill="#f3f3f3"/><rect width="2" height="10" fill="#cfcfcf"/></pattern>"##,
            "\n",
            r#"<linearGradient id="g-scale">"#,
        ));
        for (k, c) in VIRIDIS.iter().enumerate() {
            let _ = write!(
                s,
                r#"<stop offset="{:.3}" stop-color="{}"/>"#,
                k as f64 / (VIRIDIS.len() - 1) as f64,
                hex(*c)
            );
        }
        s.push_str("</linearGradient>\n</defs>\n");
        let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#fff"/>"##);
        let _ = writeln!(
            s,
            r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
            xml(&title_text(source.node(), self.at))
        );
        let _ = writeln!(
            s,
            r##"<text x="10" y="40" fill="#333">RTT p50 in every cell; rows: from, columns: to; colour: absolute log scale, 10µs to 1s (legend below)</text>"##
        );
        for (j, name) in source.names().iter().enumerate() {
            let x = self.left + self.cw * (j as f64 + 0.5);
            let y = self.top - 6.0;
            let _ = writeln!(
                s,
                r#"<text class="cn" x="{x:.0}" y="{y:.0}" transform="rotate(-45 {x:.0} {y:.0})">{}</text>"#,
                xml(name)
            );
        }
    }

    /// Row `i`: its name, its cells (or one band when it is stale and empty), its age.
    pub(crate) fn row<S: MatrixCells + ?Sized>(&self, source: &S, i: usize, s: &mut String) {
        let names = source.names();
        let Some(name) = names.get(i) else { return };
        let (cw, ch) = (self.cw, self.ch);
        let y = self.top + ch * i as f64;
        let fresh = source.fresh(i);
        let stale = if fresh { "" } else { " st" };
        let _ = writeln!(
            s,
            r#"<text class="rn{stale}" x="{:.0}" y="{:.0}">{}</text>"#,
            self.left - 6.0,
            y + ch / 2.0,
            xml(name)
        );
        let age = source.age_ms(i);
        let empty = (0..self.n).all(|j| {
            j == i || (source.cell(i, j).is_none() && shown_estimate(source, i, j).is_none())
        });
        if !fresh && empty {
            let words = match age {
                Some(ms) => format!("stale row of {name}: no figures kept (updated {})", ago(ms)),
                None => format!("no row received from {name}"),
            };
            let grid_w = cw * self.n as f64;
            let _ = writeln!(
                s,
                r##"<rect x="{:.0}" y="{y:.0}" width="{grid_w:.0}" height="{ch:.0}" fill="url(#p-stale)" stroke="#fff"><title>{}</title></rect><text class="band" x="{:.0}" y="{:.0}" font-size="{:.0}">{}</text>"##,
                self.left,
                xml(&words),
                self.left + grid_w / 2.0,
                y + ch / 2.0,
                self.font.max(9.0),
                xml(&words)
            );
        } else {
            let fade = if fresh { "" } else { r#" opacity="0.4""# };
            let _ = writeln!(
                s,
                r#"<g class="r" transform="translate({:.0},{y:.0})"{fade}>"#,
                self.left
            );
            for j in 0..self.n {
                self.cell(source, i, j, s);
            }
            s.push_str("</g>\n");
        }
        let (class, label) = match (age, fresh) {
            (Some(ms), true) => ("age", ago(ms)),
            (Some(ms), false) => ("age st", format!("stale · {}", ago(ms))),
            (None, _) => ("age st", "stale · no row yet".to_owned()),
        };
        let _ = writeln!(
            s,
            r#"<text class="{class}" x="{:.0}" y="{:.0}">{label}</text>"#,
            self.left + cw * self.n as f64 + 8.0,
            y + ch / 2.0
        );
    }

    /// One cell, in its row's coordinates.
    fn cell<S: MatrixCells + ?Sized>(&self, source: &S, i: usize, j: usize, s: &mut String) {
        let names = source.names();
        let (cw, ch) = (self.cw, self.ch);
        let x = cw * j as f64;
        let (cx, cy) = (x + cw / 2.0, ch / 2.0);
        if i == j {
            let _ = write!(
                s,
                r#"<rect class="self" x="{x:.0}" width="{cw:.0}" height="{ch:.0}"/><line class="self" x1="{:.0}" y1="3" x2="{:.0}" y2="{:.0}"/>"#,
                x + 3.0,
                x + cw - 3.0,
                ch - 3.0
            );
            s.push('\n');
            return;
        }
        let (from, to) = (
            names.get(i).map_or("", String::as_str),
            names.get(j).map_or("", String::as_str),
        );
        let shown = shown_cell(source, i, j);
        // Same rule as `source` in the JSON: an estimate where nothing was measured and the
        // state does not say the path is gone (`shown_estimate`).
        let measured = shown.is_some_and(|c| c.0.is_some());
        if let (false, Some(estimate)) = (measured, shown_estimate(source, i, j)) {
            let colour = scale_colour(estimate);
            let _ = writeln!(
                s,
                r#"<rect class="est" x="{:.0}" y="1" width="{:.0}" height="{:.0}" fill="{}" fill-opacity="0.55"><title>{} → {}: ≈{} estimated from network coordinates (not measured)</title></rect><text class="t e" x="{cx:.0}" y="{cy:.0}">≈{}</text>"#,
                x + 1.0,
                cw - 2.0,
                ch - 2.0,
                hex(colour),
                xml(from),
                xml(to),
                human_us(estimate),
                human_us(estimate)
            );
            return;
        }
        let Some((rtt, loss, state)) = shown else {
            let _ = writeln!(
                s,
                r#"<rect class="nd" x="{x:.0}" width="{cw:.0}" height="{ch:.0}"><title>{} → {}: no figure</title></rect><text class="t n" x="{cx:.0}" y="{cy:.0}">–</text>"#,
                xml(from),
                xml(to)
            );
            return;
        };
        // Loss is marked where it says something: on a peer still heard (a dead one's is
        // 100 % by definition).
        let lossy = loss.filter(|&l| l > 0.0 && has_rtt(state));
        let loss_words = lossy.map(|l| format!("loss {l:.1}%"));
        let mut title = format!("{} → {}: {state}", xml(from), xml(to));
        if let Some(rtt) = rtt {
            let _ = write!(title, ", RTT {}", human_us(rtt));
        }
        if let Some(words) = &loss_words {
            let _ = write!(title, ", {words}");
        }
        if let Some((fill, word)) = state_mark(state) {
            let _ = write!(
                s,
                r#"<rect x="{x:.0}" width="{cw:.0}" height="{ch:.0}" fill="{fill}"><title>{title}</title></rect><text class="t m" x="{cx:.0}" y="{cy:.0}">{word}</text>"#
            );
        } else if let Some(rtt) = rtt {
            let colour = scale_colour(rtt);
            let dark = if is_dark(colour) { " w" } else { "" };
            let suspect = state == PeerState::Suspect;
            let second = match (suspect, lossy) {
                (true, Some(l)) => Some(format!("suspect {l:.1}%")),
                (true, None) => Some("suspect".to_owned()),
                (false, Some(_)) => loss_words.clone(),
                (false, None) => None,
            };
            let value_y = if self.two_lines && second.is_some() {
                ch * 0.36
            } else {
                cy
            };
            let _ = write!(
                s,
                r#"<rect x="{x:.0}" width="{cw:.0}" height="{ch:.0}" fill="{}"><title>{title}</title></rect><text class="t{dark}" x="{cx:.0}" y="{value_y:.0}">{}</text>"#,
                hex(colour),
                human_us(rtt)
            );
            if suspect {
                // Inside the cell, so no neighbour covers it.
                let _ = write!(
                    s,
                    r#"<rect class="sus{dark}" x="{:.0}" y="2.5" width="{:.0}" height="{:.0}" fill="none"/>"#,
                    x + 2.5,
                    cw - 5.0,
                    ch - 5.0
                );
            }
            if let (true, Some(second)) = (self.two_lines, second) {
                let _ = write!(
                    s,
                    r#"<text class="t t2{dark}" x="{cx:.0}" y="{:.0}">{second}</text>"#,
                    ch * 0.74
                );
            }
        } else {
            // Alive or suspect, but no RTT sample yet.
            let _ = write!(
                s,
                r#"<rect class="nd" x="{x:.0}" width="{cw:.0}" height="{ch:.0}"><title>{title}, no RTT yet</title></rect><text class="t n" x="{cx:.0}" y="{cy:.0}">{state}</text>"#
            );
        }
        if lossy.is_some() {
            let _ = write!(
                s,
                r#"<path class="loss" d="M{:.0} 0.5h{:.0}v{:.0}z"/>"#,
                x + cw - 10.5,
                10.0,
                10.0
            );
        }
        s.push('\n');
    }

    /// The legend (the colour bar with its anchors, then one entry per mark) and the end.
    pub(crate) fn tail(&self, s: &mut String) {
        let ly = self.legend_top;
        let _ = writeln!(
            s,
            r#"<text class="lg" x="10" y="{ly:.0}">RTT p50, absolute log scale:</text>"#
        );
        let bar_y = ly + 12.0;
        let _ = writeln!(
            s,
            r#"<rect x="10" y="{bar_y:.0}" width="{BAR_WIDTH:.0}" height="14" fill="url(#g-scale)"/>"#
        );
        for (k, (us, label)) in TICKS.iter().enumerate() {
            let x = 10.0 + BAR_WIDTH * scale_position(*us);
            let anchor = match k {
                0 => "start",
                k if k == TICKS.len() - 1 => "end",
                _ => "middle",
            };
            let _ = writeln!(
                s,
                r##"<path d="M{x:.1} {:.0}v4" stroke="#000"/><text class="lg" x="{x:.1}" y="{:.0}" text-anchor="{anchor}">{label}</text>"##,
                bar_y + 14.0,
                bar_y + 26.0
            );
        }
        let entries_y = ly + 62.0;
        for ((swatch, words), (x, line)) in LEGEND.iter().zip(&self.legend) {
            let y = entries_y + *line as f64 * LEGEND_LINE;
            let (sx, sy) = (*x, y - 8.0);
            let mark = match swatch {
                Swatch::OwnDiagonal => format!(
                    r#"<rect class="self" x="{sx:.0}" y="{sy:.0}" width="16" height="16"/><line class="self" x1="{:.0}" y1="{:.0}" x2="{:.0}" y2="{:.0}"/>"#,
                    sx + 2.0,
                    sy + 2.0,
                    sx + 14.0,
                    sy + 14.0
                ),
                Swatch::Suspect => format!(
                    r#"<rect class="sus" x="{sx:.0}" y="{sy:.0}" width="16" height="16" fill="{}"/>"#,
                    hex(scale_colour(3_000.0))
                ),
                Swatch::State(state) => format!(
                    r##"<rect x="{sx:.0}" y="{sy:.0}" width="16" height="16" fill="{}" stroke="#999"/>"##,
                    state_mark(*state).map_or("#fff", |m| m.0)
                ),
                Swatch::Loss => format!(
                    r#"<rect x="{sx:.0}" y="{sy:.0}" width="16" height="16" fill="{}"/><path class="loss" d="M{:.0} {:.1}h8v8z"/>"#,
                    hex(scale_colour(300.0)),
                    sx + 7.5,
                    sy + 0.5
                ),
                Swatch::Stale => format!(
                    r#"<rect x="{sx:.0}" y="{sy:.0}" width="16" height="16" fill="{}" opacity="0.4"/>"#,
                    hex(scale_colour(300.0))
                ),
                Swatch::Estimated => format!(
                    r#"<rect class="est" x="{sx:.0}" y="{sy:.0}" width="16" height="16" fill="{}" fill-opacity="0.55"/>"#,
                    hex(scale_colour(3_000.0))
                ),
                Swatch::NoData => {
                    format!(r#"<rect class="nd" x="{sx:.0}" y="{sy:.0}" width="16" height="16"/>"#)
                }
            };
            let _ = writeln!(
                s,
                r#"<g class="le">{mark}<text class="lg" x="{:.0}" y="{y:.0}">{}</text></g>"#,
                sx + 22.0,
                xml(words)
            );
        }
        s.push_str("</svg>\n");
    }
}

/// `Latency matrix as seen by alpha at 2026-12-02T15:31:30Z`.
fn title_text(node: &str, at: SystemTime) -> String {
    format!("Latency matrix as seen by {node} at {}", iso8601_utc(at))
}

/// `at` in UTC as ISO 8601 to the second: `2026-12-02T15:31:30Z` (the epoch for a time
/// before it).
pub fn iso8601_utc(at: SystemTime) -> String {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().min(i64::MAX as u64 / 2) as i64);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (the proleptic Gregorian calendar), with eras
    // of 400 years that start on 1 March, so the leap day ends a year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
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
    use std::time::Duration;

    #[test]
    fn times_are_written_in_utc_iso_8601() {
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(iso8601_utc(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601_utc(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601_utc(at(1_700_000_000)), "2023-11-14T22:13:20Z");
        assert_eq!(iso8601_utc(at(4_107_542_399)), "2100-02-28T23:59:59Z");
        assert_eq!(iso8601_utc(at(4_107_542_400)), "2100-03-01T00:00:00Z");
        assert_eq!(
            iso8601_utc(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn the_scale_is_absolute_logarithmic_and_runs_through_viridis() {
        assert_eq!(scale_colour(SCALE_MIN_US), VIRIDIS[0]);
        assert_eq!(scale_colour(1.0), VIRIDIS[0], "faster is clamped");
        assert_eq!(scale_colour(SCALE_MAX_US), VIRIDIS[8]);
        assert_eq!(scale_colour(60e6), VIRIDIS[8], "slower is clamped");
        assert_eq!(scale_colour(f64::NAN), VIRIDIS[0]);
        // Each decade is a fifth of the scale: 1 ms sits at 0.4 (between stops 3 and 4).
        assert!((scale_position(1_000.0) - 0.4).abs() < 1e-12);
        assert!((scale_position(100_000.0) - 0.8).abs() < 1e-12);
        // Monotonic in lightness from fast (dark) to slow (light).
        let lum = |c: [u8; 3]| u32::from(c[0]) * 2 + u32::from(c[1]) * 7 + u32::from(c[2]);
        let mut last = 0;
        for k in 0..=50 {
            let us = SCALE_MIN_US * 10f64.powf(k as f64 / 10.0);
            let l = lum(scale_colour(us));
            assert!(l >= last, "{us}µs");
            last = l;
        }
        assert!(is_dark(scale_colour(30.0)) && !is_dark(scale_colour(300_000.0)));
    }
}
