//! `examples/embed.rs`, a TCP echo server with a peermesh node in its own mio loop, meshes
//! with real `peermesh run` nodes while it keeps echoing: unkeyed, and in a keyed mesh where
//! it answers `peermesh status` and `peermesh matrix` on its control socket.
//!
//! All processes run in the host's network namespace on loopback addresses unique to this
//! test process, so the test can talk TCP to the example directly.

mod support;

use serde_json::Value;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{config_for, host_loopback_addrs, peermesh, run_bounded, wait_until, Lab};

const INTERVAL: Duration = Duration::from_millis(100);

/// The example binary that plain `cargo test` builds next to the test binaries:
/// `target/debug/deps/embed-HASH` → `target/debug/examples/embed`. (`cargo test
/// --all-targets` builds examples as test harnesses only, so `make test` runs `cargo build
/// --examples` first.) Fails clearly if the binary is missing.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary in target/PROFILE/deps");
    let path = profile_dir.join("examples").join("embed");
    assert!(
        fs::metadata(&path).is_ok(),
        "the embed example is not built at {}: build it with `cargo build --examples` \
         (plain `cargo test` builds it too; `cargo test --all-targets` does not)",
        path.display()
    );
    path
}

/// One line sent and read back over `stream`.
fn echo_once(stream: &mut TcpStream, reader: &mut impl BufRead, line: &str) -> String {
    stream.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut back = String::new();
    reader.read_line(&mut back).unwrap();
    back
}

#[test]
fn an_embedded_node_meshes_with_a_real_one_while_its_host_program_keeps_echoing() {
    let mut lab = Lab::new("embed");
    let embed = example_binary();
    let addrs = host_loopback_addrs(3);
    let (alpha, beta, echo): (SocketAddr, SocketAddr, SocketAddr) = (addrs[0], addrs[1], addrs[2]);
    let config = lab.write_config(&config_for(&[("alpha", alpha), ("beta", beta)], 300, 800));

    lab.start_here(&config, "alpha");
    let out_path = lab.dir.join("beta.out");
    let control = lab.control("beta");
    let log = fs::File::create(lab.log("beta")).unwrap();
    let child = Command::new(&embed)
        .args(["--config", config.to_str().unwrap(), "--name", "beta"])
        .args(["--echo", &echo.to_string()])
        .args(["--control", control.to_str().unwrap()])
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn the embed example");
    lab.adopt("beta", child);
    lab.wait_for_socket("beta");

    // The real node sees the embedded one alive with an RTT, and the other way round.
    assert!(
        wait_until(INTERVAL * 20, || lab.alive_with_rtt("alpha", "beta")
            && lab.alive_with_rtt("beta", "alpha")),
        "not alive both ways within 20 intervals\nalpha: {:?}\nbeta: {:?}\n{}",
        lab.status("alpha"),
        lab.status("beta"),
        lab.logs()
    );
    let out = || fs::read_to_string(&out_path).unwrap_or_default();
    assert!(
        wait_until(INTERVAL * 10, || out().contains("event: Up(alpha)")),
        "the example did not print the Up event: {:?}",
        out()
    );

    // Meanwhile the host program echoes, over several connections and lines, and the mesh
    // keeps heartbeating: the count of datagrams from the embedded node keeps rising.
    let received = |l: &Lab| l.peer("alpha", "beta").and_then(|p| p["received"].as_u64());
    let before = received(&lab).unwrap();
    for conn in 0..3 {
        let mut stream = TcpStream::connect_timeout(&echo, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to the echo server {echo}: {e}\n{}", lab.logs()));
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        for i in 0..5 {
            let line = format!("connection {conn} line {i}: {}", "x".repeat(i * 100));
            assert_eq!(
                echo_once(&mut stream, &mut reader, &line),
                format!("{line}\n")
            );
        }
    }
    assert!(
        wait_until(INTERVAL * 10, || received(&lab)
            .is_some_and(|n| n >= before + 3)),
        "heartbeats stopped while echoing: {before} then {:?}",
        received(&lab)
    );
    assert!(lab.alive_with_rtt("alpha", "beta"), "{}", lab.logs());

    // The example's control socket serves the same contract as `peermesh run`.
    let status = lab.status("beta").unwrap();
    assert_eq!(status["node"], "beta");
    assert_eq!(status["heartbeat_interval_ms"], 100);
}

/// Starts the example as node `name` of `config`, with its control socket at the lab's
/// usual path, and waits for that socket.
fn start_example(lab: &mut Lab, config: &Path, name: &str, echo: SocketAddr) -> PathBuf {
    let out_path = lab.dir.join(format!("{name}.out"));
    let control = lab.control(name);
    let log = fs::File::create(lab.log(name)).unwrap();
    let child = Command::new(example_binary())
        .args(["--config", config.to_str().unwrap(), "--name", name])
        .args(["--echo", &echo.to_string()])
        .args(["--control", control.to_str().unwrap()])
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn the embed example");
    lab.adopt(name, child);
    lab.wait_for_socket(name);
    out_path
}

/// A key made by `peermesh keygen`, in the lab's `keyring` file, mode 600.
fn keygen_into(lab: &Lab) -> PathBuf {
    let made = peermesh(&["keygen"]);
    assert_eq!(made.code, Some(0), "{made:?}");
    let keys = lab.dir.join("keyring");
    fs::write(&keys, &made.stdout).unwrap();
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o600)).unwrap();
    keys
}

/// `config_for` with `keyring: "keyring"` (the lab's key file, next to the config).
fn keyed(config: String) -> String {
    config.replacen("    nodes:", "    keyring: \"keyring\",\n    nodes:", 1)
}

/// `peermesh ARGS --json --control SOCKET` parsed, or why not.
fn cli_json(command: &str, socket: &Path) -> Result<Value, String> {
    let ran = peermesh(&[command, "--json", "--control", socket.to_str().unwrap()]);
    if ran.code != Some(0) {
        return Err(format!("{ran:?}"));
    }
    serde_json::from_str(&ran.stdout).map_err(|e| format!("{e}: {:?}", ran.stdout))
}

#[test]
fn an_embedded_node_joins_a_keyed_mesh_and_serves_status_and_matrix_on_its_control_socket() {
    let mut lab = Lab::new("embedkeyed");
    let addrs = host_loopback_addrs(4);
    let names = ["alpha", "beta", "gamma"];
    let nodes: Vec<(&str, SocketAddr)> = names.into_iter().zip(addrs.iter().copied()).collect();
    keygen_into(&lab);
    let config = lab.write_config(&keyed(config_for(&nodes, 300, 800)));

    lab.start_here(&config, "alpha");
    lab.start_here(&config, "gamma");
    let out_path = start_example(&mut lab, &config, "beta", addrs[3]);
    let socket = lab.control("beta");

    // Every pair alive both ways: the embedded node seals and opens with the mesh key.
    let pairs = [
        ("alpha", "beta"),
        ("beta", "alpha"),
        ("gamma", "beta"),
        ("beta", "gamma"),
    ];
    assert!(
        wait_until(INTERVAL * 30, || pairs
            .iter()
            .all(|(a, b)| lab.alive_with_rtt(a, b))),
        "not alive both ways within 30 intervals\nbeta: {:?}\n{}",
        lab.status("beta"),
        lab.logs()
    );
    for node in names {
        let log = fs::read_to_string(lab.log(node)).unwrap_or_default();
        assert!(log.contains("sealing with key"), "{node}: {log}");
        assert!(!log.contains("NOT authenticated"), "{node}: {log}");
    }

    // `peermesh status --json` against the example: its peers alive, nothing refused.
    let status = cli_json("status", &socket).unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    assert_eq!(status["node"], "beta");
    let peers = status["peers"].as_array().expect("peers");
    let seen: Vec<(&str, &str)> = peers
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or("?"),
                p["state"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(seen, [("alpha", "alive"), ("gamma", "alive")], "{status}");
    assert_eq!(status["dropped"]["auth_failed"], 0, "{status}");
    assert!(
        status["io"]["sent"].as_u64().is_some_and(|n| n > 0),
        "{status}"
    );
    // The real nodes never had to refuse one of its datagrams.
    for node in ["alpha", "gamma"] {
        let theirs = cli_json("status", &lab.control(node)).unwrap();
        assert_eq!(theirs["dropped"]["auth_failed"], 0, "{node}: {theirs}");
    }

    // `peermesh matrix --json` against the example: the whole 3 × 3 view, every
    // off-diagonal cell alive once the peers' rows have come in.
    let all_alive = |m: &Value| {
        (0..3).all(|i| {
            (0..3).all(|j| {
                let cell = &m["state"][i][j];
                if i == j {
                    cell.is_null()
                } else {
                    *cell == "alive"
                }
            })
        })
    };
    let mut matrix = Value::Null;
    assert!(
        wait_until(INTERVAL * 30, || {
            matrix = cli_json("matrix", &socket).unwrap_or(Value::Null);
            all_alive(&matrix)
        }),
        "the example's matrix never filled in: {matrix}\n{}",
        lab.logs()
    );
    assert_eq!(matrix["node"], "beta");
    assert_eq!(matrix["nodes"], serde_json::json!(names));
    assert_eq!(
        matrix["fresh"],
        serde_json::json!([true, true, true]),
        "{matrix}"
    );
    assert!(
        matrix["rtt_us"][1][0].as_f64().is_some_and(|us| us > 0.0),
        "{matrix}"
    );
    assert!(
        fs::read_to_string(&out_path)
            .is_ok_and(|out| out.contains("event: Up(alpha)") && out.contains("event: Up(gamma)")),
        "the example did not print both Up events"
    );
}

#[test]
fn an_embedded_node_whose_key_file_others_can_read_does_not_start() {
    let lab = Lab::new("embedbadkey");
    let addrs = host_loopback_addrs(3);
    let keys = keygen_into(&lab);
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o644)).unwrap();
    let nodes = [("alpha", addrs[0]), ("beta", addrs[1])];
    let config = lab.write_config(&keyed(config_for(&nodes, 300, 800)));
    let control = lab.control("beta");
    let ran = run_bounded(
        Command::new(example_binary())
            .args(["--config", config.to_str().unwrap(), "--name", "beta"])
            .args(["--echo", &addrs[2].to_string()])
            .args(["--control", control.to_str().unwrap()]),
        Duration::from_secs(10),
    );
    assert_eq!(ran.code, Some(2), "{ran:?}");
    let says = format!("keyring {}: mode 644", keys.display());
    assert!(ran.stderr.contains(&says), "{ran:?}");
    assert!(ran.stderr.contains("chmod 600"), "{ran:?}");
    assert!(
        !control.exists(),
        "no control socket for a node that did not start"
    );
}
