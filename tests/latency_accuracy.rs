//! RTT accuracy under the mesh's synchronised bursts, from real processes: ten `peermesh
//! run` nodes, every directed path between them through one `peermesh-relay` in mesh mode
//! with a fixed one-way delay (half of a published round trip between two cities), and
//! every cell of every node's matrix compared with the round trip the relay *really*
//! applied.
//!
//! Like with like: the relay measures each datagram's delay from its kernel arrival stamp
//! to its send, pairs each ping with its pong, and lists per prober and target the last
//! round trips (ping's delay + pong's delay), the samples a node's RTT median is taken
//! over. A relay on a busy machine is sometimes late by milliseconds, so the sum of the two
//! paths' medians is not the median of the round trips; the test takes the nearest-rank
//! median of the same round trips the node saw (the last 64 at most), as the node does.
//! The relay is stopped first (SIGTERM: it writes its final stats), so no round trip is
//! in one count and not the other. A node's own row is live; a row it heard from another
//! node is that node's median at its last row refresh, which may be a round trip or two
//! older: such a cell is compared with the windows ending at the last three round trips.
//!
//! All ten nodes share one heartbeat slot lined up with the wall clock, so every interval
//! each node sends nine pings and receives nine pings at about the same moment, then the
//! pongs come back spread over 6–104 ms: the bursts in which issue 12 saw RTTs 1–1.7 ms high.

mod support;

use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use support::{host_loopback_addrs, wait_until, Lab, BIN};

/// Ten cities and the round trips between them in ms (approximate public figures between
/// cloud regions and cities); each path gets half, one way.
const CITIES: [&str; 10] = [
    "london",
    "dublin",
    "paris",
    "amsterdam",
    "frankfurt",
    "madrid",
    "milan",
    "stockholm",
    "warsaw",
    "washington",
];

/// Upper triangle of the round-trip table, row by row (london-dublin, london-paris, ...).
const RTT_MS: [f64; 45] = [
    12.0, 8.0, 7.0, 15.0, 27.0, 22.0, 30.0, 33.0, 76.0, // london
    18.0, 18.0, 24.0, 35.0, 32.0, 40.0, 42.0, 80.0, // dublin
    10.0, 11.0, 19.0, 14.0, 30.0, 30.0, 82.0, // paris
    8.0, 30.0, 18.0, 22.0, 24.0, 82.0, // amsterdam
    29.0, 11.0, 20.0, 18.0, 91.0, // frankfurt
    24.0, 50.0, 46.0, 89.0, // madrid
    33.0, 28.0, 98.0, // milan
    22.0, 100.0, // stockholm
    104.0, // warsaw
];

const INTERVAL_MS: u64 = 500;
/// Round trips every prober must have had to every target before the relay is stopped:
/// enough for the RTT windows (20 would do) and for the network coordinates to settle
/// (with nine peers at 500 ms they need about 40 s: 20 round trips left a median
/// estimate error of 14 %, the simulator gives 4 % at 40 s and 2 % at 80 s).
const ROUND_TRIPS: u64 = 80;
/// A node's RTT window (`peermesh::core::peer::RTT_WINDOW`).
const RTT_WINDOW: usize = 64;
/// The tolerance of the issue: 2 % of the round trip plus 0.3 ms.
const TOLERANCE_SHARE: f64 = 0.02;
const TOLERANCE_US: f64 = 300.0;

fn one_way_ms(i: usize, j: usize) -> f64 {
    let (a, b) = (i.min(j), i.max(j));
    let n = CITIES.len();
    // Index of (a, b), a < b, in the upper triangle.
    let index = a * n - a * (a + 1) / 2 + (b - a - 1);
    RTT_MS[index] / 2.0
}

fn matrix_json(lab: &Lab, name: &str) -> Option<Value> {
    let out = Command::new(BIN)
        .args(["matrix", "--json", "--control"])
        .arg(lab.control(name))
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// Every off-diagonal cell holds an RTT.
fn full(m: &Value) -> bool {
    let n = CITIES.len();
    m["rtt_us"].as_array().is_some_and(|rows| {
        rows.len() == n
            && rows.iter().enumerate().all(|(i, row)| {
                row.as_array().is_some_and(|cells| {
                    cells.len() == n
                        && cells
                            .iter()
                            .enumerate()
                            .all(|(j, c)| i == j || c.as_f64().is_some())
                })
            })
    })
}

/// One line of the relay's `--stats` file.
#[derive(Debug, Clone)]
struct PathStats {
    /// Round trips of the path's sender's probes (its ping over this path, the pong back).
    round_trips: u64,
    /// The last round trips, oldest first, in µs.
    trips_us: Vec<f64>,
    max_late_us: f64,
}

/// The nearest-rank median of the last 64 of `trips`, as a node's RTT window has it.
fn window_p50(trips: &[f64]) -> Option<f64> {
    let window = &trips[trips.len().saturating_sub(RTT_WINDOW)..];
    let mut sorted = window.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (sorted.len() * 50).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// The relay's stats file: path name (`from->to`) → its figures.
fn relay_stats(text: &str) -> HashMap<String, PathStats> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() != Some(&"path") || words.len() < 2 {
            continue;
        }
        let field = |key: &str| {
            words
                .iter()
                .position(|w| *w == key)
                .and_then(|i| words.get(i + 1))
                .and_then(|v| v.parse::<f64>().ok())
        };
        let (Some(round_trips), Some(late)) = (field("round_trips"), field("max_late_us")) else {
            continue;
        };
        let trips_us = words
            .iter()
            .position(|w| *w == "trips_us")
            .and_then(|i| words.get(i + 1))
            .map(|list| list.split(',').filter_map(|v| v.parse().ok()).collect())
            .unwrap_or_default();
        out.insert(
            words[1].to_owned(),
            PathStats {
                round_trips: round_trips as u64,
                trips_us,
                max_late_us: late,
            },
        );
    }
    out
}

#[test]
fn every_cell_of_every_matrix_is_the_round_trip_the_relay_really_applied() {
    let n = CITIES.len();
    let mut lab = Lab::new("latency");
    let addrs = host_loopback_addrs(2 * n);
    let (listen, real): (Vec<SocketAddr>, Vec<SocketAddr>) =
        (addrs[..n].to_vec(), addrs[n..].to_vec());
    let nodes: Vec<String> = CITIES
        .iter()
        .zip(&listen)
        .map(|(name, a)| {
            format!(
                "        (name: \"{name}\", host: \"{}\", port: {}),",
                a.ip(),
                a.port()
            )
        })
        .collect();
    let config = lab.write_config(&format!(
        "(\n    heartbeat_interval_ms: {INTERVAL_MS},\n    nodes: [\n{}\n    ],\n)\n",
        nodes.join("\n")
    ));
    let stats_file = lab.dir.join("relay.stats");
    let mut relay_args: Vec<String> = vec![
        "--secs".into(),
        "120".into(),
        "--stats".into(),
        stats_file.display().to_string(),
    ];
    for i in 0..n {
        relay_args.push("--node".into());
        relay_args.push(format!("{},{},{}", CITIES[i], listen[i], real[i]));
        for j in (0..n).filter(|&j| j != i) {
            relay_args.push("--path".into());
            relay_args.push(format!("{},{},{}", CITIES[i], CITIES[j], one_way_ms(i, j)));
        }
    }
    let relay_args: Vec<&str> = relay_args.iter().map(String::as_str).collect();
    let relay = support::tool("peermesh-relay");
    let netns = lab.netns.clone();
    let child = lab.spawn(
        netns.as_deref(),
        relay.to_str().expect("a UTF-8 path"),
        &relay_args,
        "relay",
    );
    lab.adopt("relay", child);
    for (i, name) in CITIES.iter().enumerate() {
        let control = lab.control(name);
        let bind = real[i].to_string();
        let args = [
            "run",
            "--config",
            config.to_str().expect("a UTF-8 path"),
            "--name",
            name,
            "--bind",
            &bind,
            "--control",
            control.to_str().expect("a UTF-8 path"),
        ];
        let child = lab.spawn(netns.as_deref(), BIN, &args, name);
        lab.adopt(name, child);
        lab.wait_for_socket(name);
    }

    // Enough round trips on every path and a full matrix at every node; then the relay
    // stops (its final stats written) and the matrices, which no pong changes any more, are
    // read at once, while every peer is still alive.
    let read_stats = || relay_stats(&std::fs::read_to_string(&stats_file).unwrap_or_default());
    let enough = wait_until(Duration::from_secs(75), || {
        let stats = read_stats();
        stats.len() == n * (n - 1) && stats.values().all(|s| s.round_trips >= ROUND_TRIPS)
    });
    assert!(
        enough,
        "the relay did not see {ROUND_TRIPS} round trips on every path within 75 s: {:?}\n{}",
        read_stats(),
        lab.logs()
    );
    let all_full = wait_until(Duration::from_secs(10), || {
        CITIES
            .iter()
            .all(|c| matrix_json(&lab, c).is_some_and(|m| full(&m)))
    });
    assert!(all_full, "matrices not full\n{}", lab.logs());
    lab.signal("relay", "TERM");
    assert_eq!(
        lab.wait_exit("relay", Duration::from_secs(5)),
        Some(0),
        "the relay did not stop on SIGTERM\n{}",
        lab.logs()
    );
    let matrices: Vec<Value> = CITIES.iter().filter_map(|c| matrix_json(&lab, c)).collect();
    assert!(
        matrices.len() == n && matrices.iter().all(full),
        "matrices not full after the relay stopped: {matrices:?}\n{}",
        lab.logs()
    );
    let stats = read_stats();

    let mut worst: Option<(f64, String)> = None;
    let mut failures = Vec::new();
    for m in &matrices {
        let viewer = m["node"].as_str().unwrap_or("?");
        for i in 0..n {
            for j in (0..n).filter(|&j| j != i) {
                let there = &stats[&format!("{}->{}", CITIES[i], CITIES[j])];
                let back = &stats[&format!("{}->{}", CITIES[j], CITIES[i])];
                let cell = m["rtt_us"][i][j].as_f64().unwrap_or(f64::NAN);
                // The windows the cell may stand for: the last one for the viewer's own
                // row, the last three for a row heard from another node.
                let lags = if viewer == CITIES[i] { 1 } else { 3 };
                let trips = &there.trips_us;
                let applied = (0..lags)
                    .filter_map(|lag| window_p50(&trips[..trips.len().saturating_sub(lag)]))
                    .min_by(|a, b| (cell - a).abs().total_cmp(&(cell - b).abs()))
                    .unwrap_or(f64::NAN);
                let tolerance = TOLERANCE_SHARE * applied + TOLERANCE_US;
                let error = cell - applied;
                let margin = tolerance - error.abs();
                let what = format!(
                    "{viewer} sees {}->{} at {cell:.1} us, the relay applied {applied:.1} us \
                     (median of {} round trips; sends up to {} / {} us late): {error:+.1} us, \
                     tolerance {tolerance:.1} us",
                    CITIES[i],
                    CITIES[j],
                    trips.len().min(RTT_WINDOW),
                    there.max_late_us,
                    back.max_late_us,
                );
                if worst.as_ref().is_none_or(|(w, _)| margin < *w) {
                    worst = Some((margin, what.clone()));
                }
                if margin.is_nan() || margin < 0.0 {
                    failures.push(what);
                }
            }
        }
    }
    if let Some((margin, what)) = &worst {
        eprintln!("worst margin {margin:.1} us: {what}");
    }
    // Issue 15: in a full mesh every cell is measured, and every pair also has an estimate
    // from the nodes' network coordinates, judged against what the relay applied.
    let mut estimate_errors = Vec::new();
    for m in &matrices {
        for i in 0..n {
            for j in (0..n).filter(|&j| j != i) {
                assert_eq!(m["source"][i][j], "measured", "{}", m);
                let estimate = m["estimated_rtt_us"][i][j].as_f64().unwrap_or(f64::NAN);
                let trips = &stats[&format!("{}->{}", CITIES[i], CITIES[j])].trips_us;
                let applied = window_p50(trips).unwrap_or(f64::NAN);
                estimate_errors.push((estimate - applied).abs() / applied);
            }
        }
    }
    estimate_errors.sort_by(f64::total_cmp);
    let at = |q: f64| estimate_errors[((estimate_errors.len() - 1) as f64 * q) as usize];
    let (median, p90) = (at(0.5), at(0.9));
    eprintln!(
        "estimates from coordinates: median error {:.1} %, p90 {:.1} %",
        median * 100.0,
        p90 * 100.0
    );
    assert!(median <= 0.10 && p90 <= 0.30, "{median} {p90}");
    assert!(
        failures.is_empty(),
        "{} of {} cells off the relay's round trip by more than 2 % + 0.3 ms:\n{}\n{}",
        failures.len(),
        n * n * (n - 1),
        failures.join("\n"),
        lab.logs()
    );
}
