//! The matrix from real processes: five nodes on loopback, `peermesh matrix` on each.

mod support;

use std::process::Command;
use std::time::Duration;
use support::{loopback_config, wait_until, Lab, BIN};

const NAMES: [&str; 5] = ["alpha", "beta", "gamma", "delta", "epsilon"];

fn matrix_json(lab: &Lab, name: &str) -> Option<serde_json::Value> {
    let out = Command::new(BIN)
        .args(["matrix", "--json", "--control"])
        .arg(lab.control(name))
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

fn full(m: &serde_json::Value) -> bool {
    let Some(rows) = m["rtt_us"].as_array() else {
        return false;
    };
    rows.len() == 5
        && rows.iter().enumerate().all(|(i, row)| {
            row.as_array().is_some_and(|cells| {
                cells.len() == 5
                    && cells.iter().enumerate().all(|(j, c)| {
                        if i == j {
                            c.is_null()
                        } else {
                            c.as_f64().is_some_and(|v| v > 0.0)
                        }
                    })
            })
        })
}

#[test]
fn every_node_shows_the_full_five_by_five_matrix_and_draws_it() {
    let mut lab = Lab::new("matrix");
    let config = lab.write_config(&loopback_config(&NAMES, 300, 800));
    for name in NAMES {
        lab.start(&config, name);
    }
    let ok = wait_until(Duration::from_secs(5), || {
        NAMES
            .iter()
            .all(|n| matrix_json(&lab, n).is_some_and(|m| full(&m)))
    });
    assert!(
        ok,
        "matrix not full everywhere: {:?}\n{}",
        matrix_json(&lab, "alpha"),
        lab.logs()
    );
    let m = matrix_json(&lab, "gamma").unwrap();
    assert_eq!(m["node"], "gamma");
    let nodes: Vec<&str> = m["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(nodes, NAMES, "config order");
    assert!(m["age_ms"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a.as_u64().is_some_and(|ms| ms < 1000)));
    assert!(m["loss_pct"][0][1].as_f64().is_some());

    // The human table: a header row with every name, one line per node.
    let table = Command::new(BIN)
        .args(["matrix", "--control"])
        .arg(lab.control("alpha"))
        .output()
        .unwrap();
    assert!(table.status.success());
    let text = String::from_utf8(table.stdout).unwrap();
    let header = text.lines().nth(1).unwrap();
    assert!(NAMES.iter().all(|n| header.contains(n)), "{text}");
    assert!(text.lines().any(|l| l.starts_with("epsilon")), "{text}");

    // The SVG heatmap parses as XML and names every node on both axes.
    let svg_path = lab.dir.join("matrix.svg");
    let out = Command::new(BIN)
        .args(["matrix", "--svg"])
        .arg(&svg_path)
        .arg("--control")
        .arg(lab.control("beta"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    for name in NAMES {
        assert!(
            texts.iter().filter(|t| **t == name).count() >= 2,
            "{name} on both axes"
        );
    }
    let cells = doc.descendants().filter(|n| n.has_tag_name("rect")).count();
    assert!(cells >= 25, "{cells} rects");
}
