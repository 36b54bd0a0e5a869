//! The largest full mesh a config may list (`config::MAX_FULL_NODES`, `probe_mode: "full"`), with control requests served
//! while it runs: `matrix --json`, `matrix`, `matrix --svg` and `status --json` one after
//! another, and a peer that measures the gaps between the heartbeats it receives. A request
//! must never hold the event loop for longer than an interval (issue 10, defect 6).
//!
//! One real `peermesh run` node, `peermesh-loadgen` playing all peers but one (each
//! heartbeating only the node under test), and this test's own UDP socket as the last peer,
//! all on this process's loopback addresses.

mod support;

use peermesh::config::MAX_FULL_NODES;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{host_loopback_addrs, peermesh, run_bounded, wait_until, Lab};

const INTERVAL_MS: u64 = 500;

fn config(addrs: &[SocketAddr]) -> String {
    let nodes: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            format!(
                "        (name: \"n{i}\", host: \"{}\", port: {}),",
                a.ip(),
                a.port()
            )
        })
        .collect();
    format!(
        "(\n    heartbeat_interval_ms: {INTERVAL_MS},\n    suspect_after_ms: {},\n    \
         dead_after_ms: {},\n    probe_mode: \"full\",\n    nodes: [\n{}\n    ],\n)\n",
        INTERVAL_MS * 3,
        INTERVAL_MS * 5,
        nodes.join("\n")
    )
}

fn alive_peers(lab: &Lab) -> usize {
    lab.status("n0").map_or(0, |s| {
        s["peers"]
            .as_array()
            .map_or(0, |p| p.iter().filter(|p| p["state"] == "alive").count())
    })
}

#[test]
fn control_requests_on_the_largest_mesh_never_delay_a_heartbeat_by_an_interval() {
    let mut lab = Lab::new("scale-control");
    let addrs = host_loopback_addrs(MAX_FULL_NODES);
    let path = lab.write_config(&config(&addrs));
    let probe_addr = addrs[MAX_FULL_NODES - 1];
    let probe = UdpSocket::bind(probe_addr).expect("bind the probe peer");
    probe
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    lab.start_here(&path, "n0");
    let last_played = format!("n1..n{}", MAX_FULL_NODES - 2);
    let loadgen = lab.spawn(
        None,
        support::tool("peermesh-loadgen")
            .to_str()
            .expect("utf-8 path"),
        &[
            "--config",
            path.to_str().unwrap(),
            "--play",
            &last_played,
            "--peers",
            "n0",
            "--quiet",
            "--duration-secs",
            "90",
        ],
        "loadgen",
    );
    lab.adopt("loadgen", loadgen);
    assert!(
        wait_until(Duration::from_secs(40), || alive_peers(&lab)
            >= MAX_FULL_NODES - 2),
        "n0 sees {} peers alive\n{}",
        alive_peers(&lab),
        lab.logs()
    );

    // The probe peer: records when each of n0's heartbeats arrives (it never answers).
    let n0 = addrs[0];
    let stop = Arc::new(AtomicBool::new(false));
    let recorder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut arrivals = Vec::new();
            let mut buf = [0u8; 2048];
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if let Ok((_, from)) = probe.recv_from(&mut buf) {
                    if from == n0 {
                        arrivals.push(Instant::now());
                    }
                }
            }
            arrivals
        })
    };
    std::thread::sleep(Duration::from_millis(INTERVAL_MS * 2)); // a few beats before

    let control = lab.control("n0");
    let control = control.to_str().unwrap();
    let svg = lab.dir.join("matrix.svg");
    let started = Instant::now();
    let mut served = 0;
    let mut largest_reply = 0;
    // Two rounds of the four requests, however long this (shared, debug-built) machine takes:
    // the assertion is on the heartbeat gaps while they are served, not on their speed.
    while started.elapsed() < Duration::from_secs(90) && served < 8 {
        let matrix = peermesh(&["matrix", "--json", "--control", control]);
        assert_eq!(matrix.code, Some(0), "{}", matrix.stderr);
        let json: serde_json::Value =
            serde_json::from_str(&matrix.stdout).expect("a complete matrix reply");
        assert_eq!(json["nodes"].as_array().map(Vec::len), Some(MAX_FULL_NODES));
        largest_reply = largest_reply.max(matrix.stdout.len());
        let table = peermesh(&["matrix", "--control", control]);
        assert_eq!(table.code, Some(0), "{}", table.stderr);
        assert!(table.stdout.lines().count() > MAX_FULL_NODES);
        let drawn = run_bounded(
            Command::new(support::BIN).args([
                "matrix",
                "--svg",
                svg.to_str().unwrap(),
                "--control",
                control,
            ]),
            Duration::from_secs(20),
        );
        assert_eq!(drawn.code, Some(0), "{}", drawn.stderr);
        let status = peermesh(&["status", "--json", "--control", control]);
        assert_eq!(status.code, Some(0), "{}", status.stderr);
        let status: serde_json::Value = serde_json::from_str(&status.stdout).expect("status");
        assert_eq!(
            status["peers"].as_array().map(Vec::len),
            Some(MAX_FULL_NODES - 1)
        );
        served += 4;
    }
    let busy = started.elapsed();
    std::thread::sleep(Duration::from_millis(INTERVAL_MS * 2)); // and a few after
    stop.store(true, Ordering::Relaxed);
    let arrivals = recorder.join().expect("recorder");
    let window: Vec<&Instant> = arrivals
        .iter()
        .filter(|&&t| t >= started && t <= started + busy + Duration::from_millis(INTERVAL_MS))
        .collect();
    let largest_gap = window
        .windows(2)
        .map(|w| w[1].duration_since(*w[0]))
        .max()
        .unwrap_or_default();
    eprintln!(
        "{served} requests in {busy:?} on a {MAX_FULL_NODES}-node mesh (largest reply {largest_reply} \
         bytes); {} heartbeats seen by the probe, largest gap {largest_gap:?} (interval \
         {INTERVAL_MS} ms)",
        window.len()
    );
    assert!(served >= 8, "only {served} requests in {busy:?}");
    assert!(
        window.len() as u64 >= busy.as_millis() as u64 / INTERVAL_MS,
        "{} heartbeats in {busy:?}",
        window.len()
    );
    assert!(
        largest_gap <= Duration::from_millis(2 * INTERVAL_MS),
        "a heartbeat was delayed by more than an interval: gap {largest_gap:?}\n{}",
        lab.logs()
    );
}

#[test]
fn a_config_with_more_nodes_than_a_mesh_holds_is_refused_with_its_position() {
    let lab = Lab::new("too-many");
    let addrs = host_loopback_addrs(MAX_FULL_NODES + 1);
    let path = lab.write_config(&config(&addrs));
    let ran = peermesh(&["check", "--config", path.to_str().unwrap(), "--name", "n0"]);
    assert_eq!(ran.code, Some(2), "{ran:?}");
    let first = ran.stderr.lines().next().unwrap_or_default();
    let expected = format!(
        "error: {}:6:5: the node list has {} nodes; a probe_mode \"full\" mesh holds at most \
         {MAX_FULL_NODES}",
        path.display(),
        MAX_FULL_NODES + 1
    );
    assert!(first.starts_with(&expected), "{first}");
    // One node fewer is fine.
    let path = lab.write_config(&config(&addrs[..MAX_FULL_NODES]));
    let ran = peermesh(&["check", "--config", path.to_str().unwrap(), "--name", "n0"]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
}
