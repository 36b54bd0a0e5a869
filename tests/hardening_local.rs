//! Hardening of what is local to a machine, tried as an attacker or an unlucky operator
//! would: the control socket (what it may replace, whom the client believes, where the
//! default lives), the config and key files (FIFOs, devices, huge files), and the command
//! line (a closed stdout, a busy node). Every process and every wait is bounded.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{loopback_config, run_bounded, wait_until, Lab, Ran, BIN};

const INTERVAL: Duration = Duration::from_millis(100);
const KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";

fn assert_exit(ran: &Ran, code: i32) {
    assert_eq!(ran.code, Some(code), "{ran:?}");
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

/// `peermesh ARGS` in the lab's network namespace (or here without one), with `env` set
/// (`None` removes a variable); not waited for.
fn command(lab: &Lab, args: &[&str], env: &[(&str, Option<&str>)]) -> Command {
    let mut cmd = match &lab.netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, BIN]);
            c
        }
        None => Command::new(BIN),
    };
    cmd.args(args).env("RUST_LOG", "debug");
    for (key, value) in env {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    cmd
}

/// Runs `peermesh ARGS` in the lab to its end (bounded by 10 s).
fn run_in(lab: &Lab, args: &[&str], env: &[(&str, Option<&str>)]) -> Ran {
    run_bounded(&mut command(lab, args, env), Duration::from_secs(10))
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

// ---- Config and key files: FIFOs, devices, huge files ------------------------------------

#[test]
fn a_fifo_or_a_device_as_config_is_refused_at_once() {
    let lab = Lab::new("fifoconfig");
    let fifo = lab.dir.join("peers.ron");
    mkfifo(&fifo);
    let zero = Path::new("/dev/zero");
    for (path, what) in [(fifo.as_path(), "a FIFO"), (zero, "a character device")] {
        let control = lab.dir.join("never.sock");
        for args in [
            &["check", "--config", path_str(path), "--name", "alpha"][..],
            &["check", "--config", path_str(path)],
            &["run", "--config", path_str(path), "--name", "alpha"],
            &[
                "run",
                "--config",
                path_str(path),
                "--control",
                path_str(&control),
            ],
            &["status", "--config", path_str(path)],
        ] {
            let started = Instant::now();
            let ran = run_in(&lab, args, &[]);
            assert_exit(&ran, 2);
            assert_eq!(
                ran.stderr,
                format!("error: {}: not a regular file ({what})\n", path.display()),
                "{args:?}"
            );
            assert!(started.elapsed() < Duration::from_secs(5), "{args:?}");
        }
    }
}

#[test]
fn a_huge_config_is_refused_by_its_size_without_reading_it() {
    let lab = Lab::new("hugeconfig");
    let sparse = lab.dir.join("sparse.ron");
    fs::File::create(&sparse)
        .unwrap()
        .set_len(50 * 1024 * 1024)
        .unwrap();
    // Just over the limit, with real content: refused too.
    let over = lab.dir.join("over.ron");
    fs::write(&over, vec![b' '; 1024 * 1024 + 1]).unwrap();
    for (path, bytes) in [(&sparse, 52_428_800u64), (&over, 1_048_577)] {
        for command in ["check", "run"] {
            let started = Instant::now();
            let args = [command, "--config", path_str(path), "--name", "alpha"];
            let ran = run_in(&lab, &args, &[]);
            assert_exit(&ran, 2);
            assert_eq!(
                ran.stderr,
                format!(
                    "error: {}: {bytes} bytes, more than the 1048576 a config may have\n",
                    path.display()
                )
            );
            assert!(started.elapsed() < Duration::from_secs(5), "{command}");
        }
    }
}

/// A config for alpha and beta with `keyring: "keyring"`.
fn keyed_config(lab: &Lab) -> PathBuf {
    let text = loopback_config(&["alpha", "beta"], 300, 800).replacen(
        "    nodes:",
        "    keyring: \"keyring\",\n    nodes:",
        1,
    );
    lab.write_config(&text)
}

fn write_keys(path: &Path, text: &str) {
    let _ = fs::remove_file(path);
    fs::write(path, text).unwrap();
    chmod(path, 0o600);
}

#[test]
fn a_bad_key_file_is_refused_at_start() {
    let lab = Lab::new("badkeys");
    let config = keyed_config(&lab);
    let keys = lab.dir.join("keyring");
    let plus = format!("+{}\n", &KEY[1..]);
    let zero = format!("{}\n", "0".repeat(64));
    let big = format!("{KEY}\n{}", "#\n".repeat(40_000));
    let cases = [
        (None, "not a regular file (a FIFO)".to_owned()),
        (
            Some(&plus),
            "keyring:1: not a key: want 64 hex digits".to_owned(),
        ),
        (
            Some(&zero),
            "keyring:1: the all-zero key is a placeholder".to_owned(),
        ),
        (
            Some(&big),
            format!(
                "{} bytes, more than the 65536 a key file may have",
                big.len()
            ),
        ),
    ];
    for (content, says) in cases {
        match content {
            Some(text) => write_keys(&keys, text),
            None => {
                let _ = fs::remove_file(&keys);
                mkfifo(&keys);
            }
        }
        for command in ["check", "run"] {
            let started = Instant::now();
            let control = lab.dir.join("never.sock");
            let mut args = vec![command, "--config", path_str(&config), "--name", "alpha"];
            if command == "run" {
                args.extend(["--control", path_str(&control)]);
            }
            let ran = run_in(&lab, &args, &[]);
            assert_exit(&ran, 2);
            assert!(ran.stderr.contains(&says), "{command}: {:?}", ran.stderr);
            assert!(started.elapsed() < Duration::from_secs(5));
            assert!(!control.exists());
        }
    }
}

#[test]
fn a_key_file_replaced_by_a_fifo_on_sighup_keeps_the_keys_and_the_node_running() {
    let mut lab = Lab::new("fifokeys");
    let config = keyed_config(&lab);
    let keys = lab.dir.join("keyring");
    write_keys(&keys, &format!("{KEY}\n"));
    lab.start(&config, "alpha");
    lab.start(&config, "beta");
    assert!(
        wait_until(INTERVAL * 20, || lab.alive_with_rtt("alpha", "beta")
            && lab.alive_with_rtt("beta", "alpha")),
        "{}",
        lab.logs()
    );
    fs::remove_file(&keys).unwrap();
    mkfifo(&keys);
    lab.signal("alpha", "HUP");
    let warned = format!(
        "SIGHUP: keeping the current keys: keyring {}: not a regular file (a FIFO)",
        keys.display()
    );
    assert!(
        wait_until(Duration::from_secs(5), || fs::read_to_string(
            lab.log("alpha")
        )
        .is_ok_and(|log| log.contains(&warned))),
        "{}",
        lab.logs()
    );
    // The node answers at once and heartbeats on with the old key: beta stays alive to it
    // and it to beta, and what it hears of beta keeps coming.
    let received = |lab: &Lab| {
        lab.peer("alpha", "beta")
            .and_then(|p| p["received"].as_u64())
    };
    let before = received(&lab).expect("alpha answers");
    let until = Instant::now() + INTERVAL * 8;
    while Instant::now() < until {
        assert_eq!(lab.state("alpha", "beta").as_deref(), Some("alive"));
        assert_eq!(lab.state("beta", "alpha").as_deref(), Some("alive"));
        std::thread::sleep(INTERVAL / 2);
    }
    assert!(
        received(&lab).is_some_and(|n| n >= before + 4),
        "{}",
        lab.logs()
    );
    let status = lab.status("alpha").unwrap();
    assert_eq!(status["dropped"]["auth_failed"], 0);
}

// ---- Values echoed in errors ---------------------------------------------------------------

#[test]
fn a_very_long_value_is_echoed_clipped() {
    let lab = Lab::new("longvalue");
    let long = "n".repeat(1_000_000);
    let cases = [
        (
            format!("(nodes: [(name: \"{long}\", host: \"127.0.0.2\")])"),
            "is 1000000 bytes long: at most 64",
        ),
        (
            format!("(nodes: [(name: \"a\", host: \"127.0.0.2 {long}\")])"),
            "contains a space",
        ),
        (
            format!("(nodes: [(name: \"a\", {long}: 1)])"),
            "unknown field",
        ),
        (
            format!("(port: \"{long}\", nodes: [(name: \"a\", host: \"h\")])"),
            "wrong type for `port`",
        ),
    ];
    for (text, says) in cases {
        let path = lab.write_config(&text);
        let ran = run_in(&lab, &["check", "--config", path_str(&path)], &[]);
        assert_exit(&ran, 2);
        assert!(ran.stderr.contains(says), "{:?}", ran.stderr);
        assert!(ran.stderr.contains('…'), "{:?}", ran.stderr);
        assert!(
            ran.stderr.len() < 600,
            "{} bytes: {:?}",
            ran.stderr.len(),
            &ran.stderr[..600.min(ran.stderr.len())]
        );
    }
    // A name from the command line is clipped too.
    let path = lab.write_config("(nodes: [(name: \"a\", host: \"127.0.0.2\")])");
    let long_name = "x".repeat(100_000);
    let ran = run_in(
        &lab,
        &["check", "--config", path_str(&path), "--name", &long_name],
        &[],
    );
    assert_exit(&ran, 2);
    assert!(ran.stderr.contains("no node is named \"xxxx"), "{ran:?}");
    assert!(ran.stderr.len() < 600, "{}", ran.stderr.len());
}
