//! `examples/embed.rs`, a TCP echo server with a peermesh node in its own mio loop, meshes
//! with a real `peermesh run` node while it keeps echoing.
//!
//! Both processes run in the host's network namespace on loopback addresses unique to this
//! test process, so the test can talk TCP to the example directly.

mod support;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{config_for, host_loopback_addrs, wait_until, Lab};

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
