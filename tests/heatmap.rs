//! The heatmap (`peermesh matrix --svg`) and the matrix's RTT rule (issue 12, items 2, 9
//! and 10): a 5-node matrix with a dead node, a node that left and stale rows, drawn as SVG,
//! checked as XML, then rendered by headless Chromium and checked pixel by pixel; the same
//! rules from the simulator and from real processes through the CLI.
//!
//! Chromium must be installed (`.ci/run` installs it); `PEERMESH_SKIP_BROWSER=1` skips only
//! the screenshot, with a message. `PEERMESH_HEATMAP_PNG=PATH` keeps the screenshot at PATH:
//! that is how `docs/heatmap.png` is made.

mod support;

use peermesh::report::heatmap::scale_colour;
use peermesh::report::matrix_report::MatrixReport;
use peermesh::sim::{Link, Sim};
use peermesh::PeerState::{self, Alive, Dead, Left, Suspect, Unknown, Unreachable};
use roxmltree::{Document, Node};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{loopback_config, run_bounded, wait_until, Lab, BIN};

const NAMES: [&str; 5] = ["alpha", "beta", "gamma", "delta", "epsilon"];

/// 2026-12-02T15:30:00Z, the snapshot time the picture's title must show.
fn snapshot_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_225_400)
}

type Cell = Option<(Option<f64>, Option<f64>, PeerState)>;

/// alpha's view of a 5-node mesh: delta is dead (its row, from before, is stale but still
/// holds figures), epsilon has left (its row is stale and empty, as a node shows it), beta
/// cannot reach gamma, gamma has never heard epsilon, alpha suspects gamma. The dead and
/// left cells still hold their last RTTs in the data: no rendering may show them.
fn five_node_report() -> MatrixReport {
    let c = |rtt: f64, loss: f64, state| Some((Some(rtt), Some(loss), state));
    let rows: [[Cell; 5]; 5] = [
        [
            None,
            c(76.0, 0.0, Alive),
            c(28_730.0, 2.5, Suspect),
            c(13.0, 100.0, Dead),
            c(9.0, 0.0, Left),
        ],
        [
            c(69.0, 0.0, Alive),
            None,
            c(11.0, 100.0, Unreachable),
            c(12.0, 100.0, Dead),
            c(11.0, 0.0, Left),
        ],
        [
            c(29_050.0, 0.5, Alive),
            c(410_000.0, 0.0, Alive),
            None,
            c(14.0, 100.0, Dead),
            Some((None, None, Unknown)),
        ],
        [
            c(80.0, 0.0, Alive),
            c(75.0, 0.0, Alive),
            c(30_100.0, 0.0, Alive),
            None,
            c(1_200.0, 0.0, Alive),
        ],
        [None, None, None, None, None],
    ];
    let split = |f: fn(&Cell) -> Option<serde_json::Value>| -> serde_json::Value {
        rows.iter()
            .map(|row| row.iter().map(f).collect::<serde_json::Value>())
            .collect()
    };
    let json = serde_json::json!({
        "node": "alpha",
        "nodes": NAMES,
        "rtt_us": split(|c| c.and_then(|c| c.0).map(Into::into)),
        "loss_pct": split(|c| c.and_then(|c| c.1).map(Into::into)),
        "state": split(|c| c.map(|c| c.2.as_str().into())),
        "age_ms": [0, 140, 480, 12_000, 30_500],
        "fresh": [true, true, true, false, false],
        "asymmetric": [],
    });
    serde_json::from_value(json).expect("a matrix report")
}

/// `(i, j)` of the cells in each state, in `report`.
fn cells_in(report: &MatrixReport, state: PeerState) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, row) in report.state.iter().enumerate() {
        for (j, s) in row.iter().enumerate() {
            if *s == Some(state) {
                out.push((i, j));
            }
        }
    }
    out
}

// ---- the SVG as XML ----------------------------------------------------------------------

/// A cell's rectangle in the picture, px.
#[derive(Clone, Copy, Debug)]
struct Rect {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

fn attr(node: Node, name: &str) -> f64 {
    node.attribute(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// `translate(X,Y)` of a row group.
fn translation(node: Node) -> (f64, f64) {
    let t = node.attribute("transform").unwrap_or_default();
    let inner = t
        .trim_start_matches("translate(")
        .trim_end_matches(')')
        .split(',')
        .map(|v| v.trim().parse::<f64>().unwrap_or(0.0))
        .collect::<Vec<_>>();
    (inner[0], inner.get(1).copied().unwrap_or(0.0))
}

/// What the picture holds, read back from its XML.
struct Drawn {
    width: u32,
    height: u32,
    /// Every text element's text.
    texts: Vec<String>,
    /// Cell `(from, to)` → where it is and what it is filled with (`fill` or class).
    cells: BTreeMap<(String, String), (Rect, String)>,
    /// The diagonal cell of each row with cells.
    own: BTreeMap<String, Rect>,
    /// Rows drawn as one band (stale and empty): name → rect.
    bands: BTreeMap<String, Rect>,
    /// The legend's entries: (swatch x, text x, text y, words).
    legend: Vec<(f64, f64, f64, String)>,
    xml_space_preserve: bool,
}

fn read_svg(svg: &str) -> Drawn {
    let doc = Document::parse(svg).expect("the heatmap is well-formed XML");
    let root = doc.root_element();
    let texts = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or_default().to_owned())
        .collect();
    let mut cells = BTreeMap::new();
    let mut own = BTreeMap::new();
    let mut bands = BTreeMap::new();
    let title_of = |rect: Node| -> Option<String> {
        rect.children()
            .find(|c| c.has_tag_name("title"))
            .and_then(|t| t.text())
            .map(str::to_owned)
    };
    let rows: Vec<Node> = doc
        .descendants()
        .filter(|n| n.has_tag_name("g") && n.attribute("class") == Some("r"))
        .collect();
    for g in rows {
        let (gx, gy) = translation(g);
        for rect in g.children().filter(|c| c.has_tag_name("rect")) {
            let r = Rect {
                x: gx + attr(rect, "x"),
                y: gy + attr(rect, "y"),
                w: attr(rect, "width"),
                h: attr(rect, "height"),
            };
            if rect.attribute("class") == Some("self") {
                own.insert(r.x as u64, r);
                continue;
            }
            let Some(title) = title_of(rect) else {
                continue;
            };
            let (pair, _) = title.split_once(':').expect("title: from → to: ...");
            let (from, to) = pair.split_once(" → ").expect("from → to");
            let fill = rect
                .attribute("fill")
                .or(rect.attribute("class"))
                .unwrap_or_default()
                .to_owned();
            cells.insert((from.to_owned(), to.to_owned()), (r, fill));
        }
    }
    // The diagonal: the own rect of row i lies in column i.
    let own = own
        .into_values()
        .filter_map(|r| {
            let row = cells
                .iter()
                .find(|(_, (c, _))| (c.y - r.y).abs() < 0.5)
                .map(|((from, _), _)| from.clone())?;
            Some((row, r))
        })
        .collect();
    for rect in doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("fill") == Some("url(#p-stale)"))
    {
        let title = title_of(rect).unwrap_or_default();
        let name = NAMES
            .iter()
            .find(|n| title.contains(&format!(" {n}:")) || title.ends_with(&format!(" {n}")))
            .map_or(String::new(), |n| (*n).to_owned());
        bands.insert(
            name,
            Rect {
                x: attr(rect, "x"),
                y: attr(rect, "y"),
                w: attr(rect, "width"),
                h: attr(rect, "height"),
            },
        );
    }
    // Each legend entry is a group: its swatch (a rect first), then its words.
    let mut legend = Vec::new();
    for entry in doc
        .descendants()
        .filter(|n| n.has_tag_name("g") && n.attribute("class") == Some("le"))
    {
        let swatch = entry.children().find(|c| c.has_tag_name("rect"));
        let text = entry.children().find(|c| c.has_tag_name("text"));
        if let (Some(swatch), Some(text)) = (swatch, text) {
            legend.push((
                attr(swatch, "x"),
                attr(text, "x"),
                attr(text, "y"),
                text.text().unwrap_or_default().to_owned(),
            ));
        }
    }
    Drawn {
        width: attr(root, "width") as u32,
        height: attr(root, "height") as u32,
        texts,
        cells,
        own,
        bands,
        legend,
        xml_space_preserve: root.attribute(("http://www.w3.org/XML/1998/namespace", "space"))
            == Some("preserve"),
    }
}

fn pair(i: usize, j: usize) -> (String, String) {
    (NAMES[i].to_owned(), NAMES[j].to_owned())
}

/// The legend's entries, in order.
fn legend_entries(drawn: &Drawn) -> Vec<&(f64, f64, f64, String)> {
    drawn.legend.iter().collect()
}

// ---- the screenshot ----------------------------------------------------------------------

/// Renders `svg_file` with headless Chromium into a `width` × `height` PNG; returns its
/// path, or `None` when the browser is missing and `PEERMESH_SKIP_BROWSER=1` allows that.
fn screenshot(svg_file: &Path, width: u32, height: u32) -> Option<PathBuf> {
    let Some(browser) = support::chromium() else {
        if std::env::var("PEERMESH_SKIP_BROWSER").as_deref() == Ok("1") {
            eprintln!("PEERMESH_SKIP_BROWSER=1: not rendering the heatmap (no chromium)");
            return None;
        }
        panic!(
            "headless Chromium is needed to check the heatmap as a browser draws it, and \
             neither `chromium` nor `chromium-browser` is on the PATH: install it \
             (`apt-get install chromium`, as .ci/run does), point PEERMESH_CHROMIUM at it, \
             or set PEERMESH_SKIP_BROWSER=1 to skip this check"
        );
    };
    let dir = svg_file.parent().expect("a directory");
    let png = dir.join("heatmap.png");
    let profile = dir.join("chromium-profile");
    let url = format!("file://{}", svg_file.display());
    // No network for the browser: a new, empty network namespace when this may make one
    // (root, util-linux's unshare), and Chromium's own calls home turned off either way.
    let mut command = if support::sh("unshare", &["-n", "true"]) {
        let mut c = Command::new("unshare");
        c.args(["-n", "--"]).arg(&browser);
        c
    } else {
        eprintln!("unshare -n is not possible here: Chromium runs in this network namespace");
        Command::new(&browser)
    };
    let ran = run_bounded(
        command
            .args([
                "--headless",
                "--disable-gpu",
                "--no-sandbox",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-pings",
                "--disable-sync",
                "--disable-domain-reliability",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("--window-size={width},{height}"))
            .arg(&url)
            .env("HOME", dir),
        Duration::from_secs(120),
    );
    assert!(
        png.exists(),
        "{} wrote no screenshot (exit {:?}): {}",
        browser.display(),
        ran.code,
        ran.stderr
    );
    Some(png)
}

/// A decoded RGB picture.
struct Picture {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl Picture {
    fn read(path: &Path) -> Picture {
        let file = std::fs::File::open(path).expect("the screenshot");
        let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().expect("a PNG");
        let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
        let info = reader.next_frame(&mut buf).expect("one frame");
        let channels = info.color_type.samples();
        let rgb = buf[..info.buffer_size()]
            .chunks(channels)
            .flat_map(|px| match channels {
                1 | 2 => [px[0], px[0], px[0]],
                _ => [px[0], px[1], px[2]],
            })
            .collect();
        Picture {
            width: info.width,
            height: info.height,
            rgb,
        }
    }

    fn at(&self, x: u32, y: u32) -> [u8; 3] {
        let k = ((y * self.width + x) * 3) as usize;
        [self.rgb[k], self.rgb[k + 1], self.rgb[k + 2]]
    }

    /// The mean colour inside `r` (1 px in from its edges, past the cell borders).
    fn mean(&self, r: Rect) -> [f64; 3] {
        let (mut sum, mut n) = ([0.0; 3], 0.0);
        for y in (r.y + 1.0) as u32..(r.y + r.h - 1.0) as u32 {
            for x in (r.x + 1.0) as u32..(r.x + r.w - 1.0) as u32 {
                let p = self.at(x, y);
                for c in 0..3 {
                    sum[c] += f64::from(p[c]);
                }
                n += 1.0;
            }
        }
        sum.map(|s| s / n)
    }

    /// Whether any pixel in columns `x0..x1`, rows `y0..y1` is darker than near-white.
    fn ink(&self, x0: f64, x1: f64, y0: f64, y1: f64) -> bool {
        (y0.max(0.0) as u32..(y1 as u32).min(self.height)).any(|y| {
            (x0.max(0.0) as u32..(x1 as u32).min(self.width))
                .any(|x| self.at(x, y).iter().any(|&c| c < 200))
        })
    }
}

fn distance(a: [f64; 3], b: [f64; 3]) -> f64 {
    (0..3).map(|c| (a[c] - b[c]).powi(2)).sum::<f64>().sqrt()
}

fn close(got: [u8; 3], want: [f64; 3], tolerance: f64) -> bool {
    (0..3).all(|c| (f64::from(got[c]) - want[c]).abs() <= tolerance)
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("peermesh-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn the_heatmap_of_five_nodes_shows_every_figure_state_and_stale_row_in_chromium() {
    let report = five_node_report();
    let svg = report.to_svg_at(snapshot_time());
    let drawn = read_svg(&svg);

    // The title: the node and the snapshot's time, UTC, ISO 8601.
    let title = &drawn.texts[0];
    assert!(
        title.contains("alpha") && title.contains("2026-12-02T15:30:00Z"),
        "{title}"
    );

    // Every RTT an alive or suspect cell has is written in its cell, stale rows too.
    let written = |text: &str| drawn.texts.iter().any(|t| t == text);
    for text in [
        "76µs", "28.73ms", "69µs", "29.05ms", "410ms", "80µs", "75µs", "30.10ms", "1.20ms",
    ] {
        assert!(written(text), "{text} not in any cell: {:?}", drawn.texts);
    }
    // The last RTTs of dead, unreachable and left peers are not shown anywhere.
    for hidden in ["13µs", "12µs", "11µs", "14µs", "9µs"] {
        assert!(!written(hidden), "{hidden} shown");
    }
    assert!(
        !svg.contains("RTT 13µs") && !svg.contains("RTT 9µs"),
        "not even in tooltips"
    );
    // Each non-alive state has its word in its cells, and `?` is drawn nowhere.
    let count = |text: &str| drawn.texts.iter().filter(|t| *t == text).count();
    assert_eq!(count("dead"), cells_in(&report, Dead).len());
    assert_eq!(count("left"), cells_in(&report, Left).len());
    assert_eq!(count("unreach"), cells_in(&report, Unreachable).len());
    assert_eq!(count("unknown"), cells_in(&report, Unknown).len());
    assert_eq!(count("?"), 0);
    // Loss: on the cell, and a corner mark on each cell with loss.
    assert!(
        written("suspect 2.5%") && written("loss 0.5%"),
        "{:?}",
        drawn.texts
    );
    assert_eq!(
        svg.matches(r#"<path class="loss""#).count(),
        2 + 1,
        "2 cells + legend"
    );
    // Stale rows: marked with their age, the empty one drawn as a band.
    assert!(written("stale · 12.0s ago") && written("stale · 30.5s ago"));
    assert!(
        written("140ms ago") && written("480ms ago"),
        "fresh rows' ages"
    );
    assert!(
        drawn.bands.contains_key("epsilon"),
        "{:?}",
        drawn.bands.keys()
    );
    assert_eq!(
        svg.matches(r#"opacity="0.4""#).count(),
        2,
        "delta's row is faded (and the legend's swatch)"
    );

    // A distinct fill per state: a pattern for each state without an RTT, the scale's own
    // colour for alive and suspect cells, and none of them the diagonal's.
    let fill = |i, j| drawn.cells[&pair(i, j)].1.clone();
    let state_fills = [
        fill(0, 3), // dead
        fill(1, 2), // unreachable
        fill(0, 4), // left
        fill(2, 4), // unknown
    ];
    assert_eq!(
        state_fills,
        [
            "url(#p-dead)",
            "url(#p-unreachable)",
            "url(#p-left)",
            "url(#p-unknown)"
        ]
    );
    let [r, g, b] = scale_colour(76.0);
    assert_eq!(fill(0, 1), format!("#{r:02x}{g:02x}{b:02x}"));
    assert_eq!(fill(1, 0), {
        let [r, g, b] = scale_colour(69.0);
        format!("#{r:02x}{g:02x}{b:02x}")
    });
    assert_eq!(drawn.own.len(), 4, "the diagonal of every row with cells");

    // The legend: each entry its own text, spaced from the next, whitespace preserved.
    assert!(drawn.xml_space_preserve);
    let entries = legend_entries(&drawn);
    assert!(entries.len() >= 9, "{:?}", drawn.legend);
    for words in [
        "dead: nobody hears it",
        "left: stopped cleanly",
        "unknown: never heard",
    ] {
        assert!(entries.iter().any(|e| e.3 == words), "{words}");
    }
    for pair in entries.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if (a.2 - b.2).abs() < 0.5 {
            let estimated_end = a.1 + a.3.chars().count() as f64 * 11.0 * 0.62;
            assert!(b.0 >= estimated_end, "{a:?} runs into {b:?}");
        }
    }

    // ---- as Chromium draws it ------------------------------------------------------------
    let dir = scratch("heatmap");
    let svg_file = dir.join("heatmap.svg");
    std::fs::write(&svg_file, &svg).expect("write the SVG");
    let Some(png) = screenshot(&svg_file, drawn.width, drawn.height) else {
        return;
    };
    if let Some(keep) = std::env::var_os("PEERMESH_HEATMAP_PNG") {
        std::fs::copy(&png, &keep).expect("keep the screenshot");
    }
    let picture = Picture::read(&png);
    assert_eq!(
        (picture.width, picture.height),
        (drawn.width, drawn.height),
        "the screenshot has the picture's size"
    );

    // An alive cell's background is exactly the scale's colour for its RTT (absolute
    // scale), away from its text; the stale row's is the same colour faded to 40 %.
    let corner = |r: Rect| picture.at(r.x as u32 + 3, (r.y + r.h) as u32 - 3);
    for (i, j, rtt) in [
        (0, 1, 76.0),
        (1, 0, 69.0),
        (2, 1, 410_000.0),
        (2, 0, 29_050.0),
    ] {
        let want = scale_colour(rtt).map(f64::from);
        let got = corner(drawn.cells[&pair(i, j)].0);
        assert!(close(got, want, 3.0), "{i}→{j}: {got:?}, want {want:?}");
    }
    for (j, rtt) in [(0, 80.0), (1, 75.0), (2, 30_100.0)] {
        let want = scale_colour(rtt).map(|c| 0.4 * f64::from(c) + 0.6 * 255.0);
        let got = corner(drawn.cells[&pair(3, j)].0);
        assert!(close(got, want, 4.0), "stale 3→{j}: {got:?}, want {want:?}");
    }

    // Every kind of cell looks different from every other: their mean colours are apart.
    let kinds: Vec<(&str, [f64; 3])> = vec![
        ("self", picture.mean(drawn.own["alpha"])),
        ("alive 76µs", picture.mean(drawn.cells[&pair(0, 1)].0)),
        ("alive 410ms", picture.mean(drawn.cells[&pair(2, 1)].0)),
        ("suspect", picture.mean(drawn.cells[&pair(0, 2)].0)),
        ("dead", picture.mean(drawn.cells[&pair(0, 3)].0)),
        ("unreachable", picture.mean(drawn.cells[&pair(1, 2)].0)),
        ("left", picture.mean(drawn.cells[&pair(0, 4)].0)),
        ("unknown", picture.mean(drawn.cells[&pair(2, 4)].0)),
        ("stale alive 80µs", picture.mean(drawn.cells[&pair(3, 0)].0)),
        ("stale empty row", picture.mean(drawn.bands["epsilon"])),
    ];
    for (k, (a, ca)) in kinds.iter().enumerate() {
        for (b, cb) in &kinds[k + 1..] {
            let d = distance(*ca, *cb);
            assert!(d >= 20.0, "{a} {ca:?} and {b} {cb:?} look alike ({d:.1})");
        }
    }
    // The same state looks the same wherever it is.
    let dead = cells_in(&report, Dead);
    let (first, second) = (dead[0], dead[1]);
    let d = distance(
        picture.mean(drawn.cells[&pair(first.0, first.1)].0),
        picture.mean(drawn.cells[&pair(second.0, second.1)].0),
    );
    assert!(d < 12.0, "two dead cells differ by {d:.1}");

    // The legend as drawn: each entry's words are there, and the space before the next
    // entry on its line is blank.
    for pair in entries.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(
            picture.ink(a.1, a.1 + 12.0, a.2 - 7.0, a.2 + 7.0),
            "no words drawn for {a:?}"
        );
        if (a.2 - b.2).abs() < 0.5 {
            assert!(
                !picture.ink(b.0 - 10.0, b.0 - 2.0, a.2 - 8.0, a.2 + 8.0),
                "{a:?} runs into {b:?} in the picture"
            );
        }
    }
    // Within an entry the words are apart: blank columns between them.
    let entry = entries
        .iter()
        .find(|e| e.3 == "dead: nobody hears it")
        .expect("the dead entry");
    let (y0, y1) = (entry.2 - 6.0, entry.2 + 6.0);
    let columns: Vec<bool> = (entry.1 as u32..(entry.1 + 150.0) as u32)
        .map(|x| picture.ink(f64::from(x), f64::from(x) + 1.0, y0, y1))
        .collect();
    let last_ink = columns.iter().rposition(|&c| c).unwrap_or(0);
    let mut gaps = 0;
    let mut run = 0;
    for &inked in &columns[..=last_ink] {
        if inked {
            if run >= 3 {
                gaps += 1;
            }
            run = 0;
        } else {
            run += 1;
        }
    }
    assert!(gaps >= 3, "{gaps} word gaps drawn in {:?}", entry.3);
}

#[test]
fn json_and_table_show_rtts_only_for_alive_and_suspect_cells_one_unit_per_column() {
    let report = five_node_report();
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON");
    for (i, row) in report.state.iter().enumerate() {
        for (j, state) in row.iter().enumerate() {
            let rtt = &json["rtt_us"][i][j];
            match state {
                Some(Alive | Suspect) => assert!(rtt.is_number(), "{i}→{j}: {rtt}"),
                _ => assert!(rtt.is_null(), "{i}→{j} ({state:?}) has an RTT: {rtt}"),
            }
        }
    }
    // A stale row keeps its figures, marked stale; loss stays with every state.
    assert_eq!(json["fresh"][3], false);
    assert_eq!(json["rtt_us"][3][0], 80.0);
    assert_eq!(json["loss_pct"][0][3], 100.0);
    // The JSON parses back into a report that obeys the rule itself.
    let back: MatrixReport = serde_json::from_value(json).expect("parses back");
    assert_eq!(back.rtt_us[0][3], None);
    assert_eq!(back.to_json(), report.to_json());

    let table = report.to_table();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[1].starts_with("from \\ to") && lines[1].ends_with("updated"));
    let row = |name: &str| -> Vec<&str> {
        lines
            .iter()
            .find(|l| l.starts_with(name))
            .map(|l| {
                l.split("  ")
                    .filter(|c| !c.trim().is_empty())
                    .map(str::trim)
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        row("alpha"),
        ["alpha", "·", "0.08ms", "28.73ms", "dead", "left", "0ms ago"]
    );
    assert_eq!(
        row("gamma"),
        [
            "gamma",
            "29.05ms",
            "410.00ms",
            "·",
            "dead",
            "-",
            "480ms ago"
        ]
    );
    assert_eq!(
        row("delta"),
        [
            "delta",
            "0.08ms",
            "0.07ms",
            "30.10ms",
            "·",
            "1.20ms",
            "12.0s ago, stale"
        ]
    );
    assert_eq!(row("epsilon").last(), Some(&"30.5s ago, stale"));
    // The legend names every mark and state word the table prints.
    let legend = lines
        .iter()
        .find(|l| l.starts_with("legend: "))
        .expect("a legend line");
    for word in ["dead", "left", "unreach", "stale"] {
        assert!(legend.contains(&format!(", {word} = ")), "{word}: {legend}");
    }
    assert!(
        legend.contains("· self") && legend.contains("- no figure"),
        "{legend}"
    );
    // One unit per column: every figure of a column ends in the same unit.
    let unit = |cell: &str| {
        ["µs", "ms", "s"]
            .into_iter()
            .find(|u| cell.ends_with(u) && cell.starts_with(|c: char| c.is_ascii_digit()))
    };
    for column in 1..=5 {
        let units: Vec<&str> = NAMES
            .iter()
            .filter_map(|n| row(n).get(column).copied().and_then(unit))
            .collect();
        assert!(
            units.windows(2).all(|w| w[0] == w[1]),
            "column {column}: {units:?}\n{table}"
        );
    }
    assert!(!table.contains("stale\n") || table.contains("ago, stale"));
}

#[test]
fn in_the_simulator_crashed_and_departed_nodes_carry_no_rtt_and_their_rows_go_stale() {
    let mut sim = Sim::with_nodes(5, Duration::from_millis(100), 12);
    sim.set_default_link(Link::latency(Duration::from_micros(300)).with_loss(0.02));
    sim.run_for(Duration::from_secs(3));
    sim.crash(3);
    sim.leave(4);
    sim.run_for(Duration::from_secs(2));
    let mesh = sim.mesh(0).expect("node 0");
    let report = MatrixReport::new(mesh.name(), &mesh.matrix());
    assert_eq!(report.state[0][3], Some(Dead));
    assert_eq!(report.state[0][4], Some(Left));
    assert!(!report.fresh[3] && !report.fresh[4] && report.fresh[1]);
    // The core still holds node 0's last RTT to both; the report does not show it.
    let view = mesh.matrix();
    assert!(view.rtt_us[0][3].is_some() && view.rtt_us[0][4].is_some());
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON");
    for i in 0..5 {
        for j in 0..5 {
            let alive = matches!(json["state"][i][j].as_str(), Some("alive" | "suspect"));
            assert_eq!(
                json["rtt_us"][i][j].is_number(),
                alive && i != j,
                "{i}→{j}: {}",
                json["rtt_us"][i][j]
            );
        }
    }
    let svg = report.to_svg();
    let drawn = read_svg(&svg);
    assert_eq!(drawn.texts.iter().filter(|t| *t == "dead").count(), 3);
    assert_eq!(drawn.texts.iter().filter(|t| *t == "left").count(), 3);
    assert!(drawn.texts.iter().any(|t| t.starts_with("stale · ")));
    assert!(drawn.texts.iter().any(|t| t.ends_with("µs")));
    let year = &drawn.texts[0];
    assert!(year.contains(" at 20") && year.ends_with('Z'), "{year}");
}

/// The matrix from real processes through the CLI: a killed node's RTT is gone from
/// `matrix --json`, and `matrix --svg -` writes the picture to standard output.
#[test]
fn matrix_svg_dash_writes_to_stdout_and_a_killed_peer_has_no_rtt() {
    const THREE: [&str; 3] = ["alpha", "beta", "gamma"];
    let mut lab = Lab::new("heatmap-cli");
    let config = lab.write_config(&loopback_config(&THREE, 300, 500));
    for name in THREE {
        lab.start(&config, name);
    }
    assert!(
        wait_until(Duration::from_secs(10), || {
            lab.status("alpha").is_some_and(|s| {
                s["peers"]
                    .as_array()
                    .is_some_and(|p| p.iter().all(|p| p["rtt_us"].is_object()))
            })
        }),
        "alpha never measured both peers\n{}",
        lab.logs()
    );
    lab.signal("gamma", "KILL");
    let matrix = |lab: &Lab| -> serde_json::Value {
        let out = run_bounded(
            Command::new(BIN)
                .args(["matrix", "--json", "--control"])
                .arg(lab.control("alpha")),
            Duration::from_secs(10),
        );
        serde_json::from_str(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    let mut m = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(10), || {
            m = matrix(&lab);
            m["state"][0][2] == "dead"
        }),
        "gamma never dead at alpha: {m}\n{}",
        lab.logs()
    );
    assert!(m["rtt_us"][0][2].is_null(), "a dead peer's RTT: {m}");
    assert!(m["rtt_us"][0][1].is_number(), "{m}");

    let out = run_bounded(
        Command::new(BIN)
            .args(["matrix", "--svg", "-", "--control"])
            .arg(lab.control("alpha"))
            .current_dir(&lab.dir),
        Duration::from_secs(10),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.starts_with("<svg"), "{}", out.stdout);
    assert!(!lab.dir.join("-").exists(), "no file named -");
    let drawn = read_svg(&out.stdout);
    assert!(drawn.texts.iter().any(|t| t == "dead"));
    assert!(drawn.texts[0].contains("alpha"));
}

/// Issue 15: a cell nobody measured shows the coordinates' estimate, and in a browser it
/// does not look like a measurement of the same RTT: `≈` before the figure, paler fill,
/// dotted outline, and a title that says so.
#[test]
fn an_estimated_cell_looks_apart_from_a_measured_one_in_chromium() {
    let json = serde_json::json!({
        "node": "alpha",
        "nodes": ["alpha", "beta", "gamma"],
        "rtt_us": [[null, 2000.0, 2000.0], [2000.0, null, 2000.0], [null, null, null]],
        "loss_pct": [[null, 0.0, 0.0], [0.0, null, 0.0], [null, null, null]],
        "state": [[null, "alive", "alive"], ["alive", null, "alive"],
                  ["unknown", "unknown", null]],
        "estimated_rtt_us": [[null, 2100.0, 1900.0], [2100.0, null, 2000.0],
                             [2000.0, 2000.0, null]],
        "age_ms": [0, 100, 100],
        "fresh": [true, true, true],
        "asymmetric": [],
    });
    let report: MatrixReport = serde_json::from_value(json).expect("a matrix report");
    let parsed: serde_json::Value =
        serde_json::from_str(&report.to_json()).expect("the report as JSON");
    assert_eq!(parsed["source"][0][1], "measured");
    assert_eq!(parsed["source"][2][0], "estimated");
    let svg = report.to_svg_at(snapshot_time());
    let drawn = read_svg(&svg);
    assert!(
        drawn.texts.iter().any(|t| t == "≈2.00ms"),
        "{:?}",
        drawn.texts
    );
    assert!(
        drawn.texts.iter().any(|t| t == "2.00ms"),
        "{:?}",
        drawn.texts
    );
    assert!(svg.contains("gamma → alpha: ≈2.00ms estimated from network coordinates"));
    let measured = drawn.cells[&("alpha".to_owned(), "beta".to_owned())].0;
    let estimated = drawn.cells[&("gamma".to_owned(), "alpha".to_owned())].0;

    let dir = scratch("heatmap-estimated");
    let svg_file = dir.join("heatmap.svg");
    std::fs::write(&svg_file, &svg).expect("write the SVG");
    let Some(png) = screenshot(&svg_file, drawn.width, drawn.height) else {
        return;
    };
    let picture = Picture::read(&png);
    let (m, e) = (picture.mean(measured), picture.mean(estimated));
    eprintln!("measured cell {m:?}, estimated cell {e:?}");
    let want = scale_colour(2000.0).map(f64::from);
    // The measured cell is the scale's colour (its text aside); the estimate is paler.
    assert!(distance(m, want) < 40.0, "measured {m:?}, scale {want:?}");
    let brightness = |c: [f64; 3]| c.iter().sum::<f64>() / 3.0;
    assert!(
        brightness(e) > brightness(m) + 25.0,
        "estimated {e:?} is not paler than measured {m:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
