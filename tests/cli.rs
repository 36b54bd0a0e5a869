//! The `peermesh` command line as a user meets it: exit codes, where messages go, what they
//! say; help, "did you mean", shell completions and man pages; and a running node's control
//! socket and UDP port under bad input.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad config.

mod support;

use serde_json::Value;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::UdpSocket;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{config_for, host_loopback_addrs, loopback_config, peermesh, wait_until, Lab, Ran};

const INTERVAL: Duration = Duration::from_millis(100);
const SUSPECT_MS: u64 = 300;
const DEAD_MS: u64 = 800;
/// Names of different lengths, so column alignment is tested for real. The last is never
/// started: its row shows what a peer never heard from looks like.
const NAMES: [&str; 3] = ["alpha", "b", "gamma-long-name"];

fn assert_exit(ran: &Ran, code: i32) {
    assert_eq!(ran.code, Some(code), "{ran:?}");
}

/// A lab with alpha and b running (in the lab's namespace) and alive to each other.
fn running_pair(test: &str) -> Lab {
    let mut lab = Lab::new(test);
    let config = lab.write_config(&loopback_config(&NAMES, SUSPECT_MS, DEAD_MS));
    lab.start(&config, "alpha");
    lab.start(&config, "b");
    assert!(
        wait_until(INTERVAL * 20, || lab.alive_with_rtt("alpha", "b")
            && lab.alive_with_rtt("b", "alpha")),
        "alpha and b not alive to each other\n{}",
        lab.logs()
    );
    lab
}

fn control_arg(lab: &Lab, name: &str) -> String {
    lab.control(name).to_str().unwrap().to_owned()
}

// ---- Bad config: exit 2, `error: FILE:LINE:COL: ...` ---------------------------------------

#[test]
fn a_bad_config_exits_2_and_points_at_file_line_col_for_run_and_check() {
    let lab = Lab::new("badconfig");
    let cases: [(&str, &str, (usize, usize), &str); 3] = [
        (
            "duplicate.ron",
            "(\n    nodes: [\n        (name: \"alpha\", host: \"127.0.0.2\"),\n        (name: \"beta\", host: \"127.0.0.3\"),\n        (name: \"Alpha\", host: \"127.0.0.4\"),\n    ],\n)\n",
            (5, 16),
            "duplicate node name \"Alpha\"",
        ),
        (
            "syntax.ron",
            "(\n    nodes: [\n        (name: \"alpha\" host: \"127.0.0.2\"),\n    ],\n)\n",
            (3, 24),
            "syntax error: expected comma",
        ),
        (
            "unknown.ron",
            "(\n    nodes: [\n        (name: \"alpha\", hots: \"127.0.0.2\"),\n    ],\n)\n",
            (3, 25),
            "unknown field `hots` in a node",
        ),
    ];
    for (file, text, (line, col), says) in cases {
        let path = lab.dir.join(file);
        fs::write(&path, text).unwrap();
        let path = path.to_str().unwrap();
        for command in ["run", "check"] {
            let control = lab.dir.join("never.sock");
            let mut args = vec![command, "--config", path, "--name", "alpha"];
            if command == "run" {
                args.extend(["--control", control.to_str().unwrap()]);
            }
            let ran = peermesh(&args);
            assert_exit(&ran, 2);
            let prefix = format!("error: {path}:{line}:{col}: ");
            assert!(
                ran.stderr.starts_with(&prefix) && ran.stderr.contains(says),
                "{command} {file}: {:?} should start {prefix:?} and say {says:?}",
                ran.stderr
            );
            assert_eq!(ran.stderr.lines().count(), 1, "{:?}", ran.stderr);
            assert!(ran.stdout.is_empty(), "{:?}", ran.stdout);
            assert!(!control.exists(), "run opened its control socket");
        }
    }
}

// ---- Bad use of the command line: exit 2, usage on stderr -----------------------------------

#[test]
fn bad_usage_exits_2_with_the_message_and_the_usage_on_stderr() {
    let cases: [(&[&str], &str, &str); 8] = [
        (&[], "error: no command given", "usage: peermesh <command>"),
        (
            &["frob"],
            "error: unknown command \"frob\"",
            "usage: peermesh <command>",
        ),
        (
            &["run", "--frob"],
            "error: run does not take \"--frob\"",
            "usage: peermesh run",
        ),
        (
            &["status", "--bind", "127.0.0.1:1"],
            "error: status does not take \"--bind\"",
            "usage: peermesh status",
        ),
        (
            &["status", "--config"],
            "error: --config needs a value",
            "usage: peermesh status",
        ),
        (
            &["run", "--bind", "nope"],
            "error: --bind wants ADDR:PORT",
            "usage: peermesh run",
        ),
        (
            &["run", "--bind=127.0.0.1"],
            "error: --bind wants ADDR:PORT",
            "usage: peermesh run",
        ),
        (
            &["top", "--count", "many"],
            "error: --count wants a number",
            "usage: peermesh top",
        ),
    ];
    for (args, message, usage) in cases {
        let ran = peermesh(args);
        assert_exit(&ran, 2);
        assert!(
            ran.stderr.starts_with(message) && ran.stderr.contains(usage),
            "{args:?}: {:?} should start {message:?} and show {usage:?}",
            ran.stderr
        );
        assert!(ran.stdout.is_empty(), "{args:?}: {:?}", ran.stdout);
    }
}

#[test]
fn help_exits_0_with_the_usage_on_stdout() {
    for command in ["run", "status", "top", "check"] {
        for flag in ["--help", "-h"] {
            let ran = peermesh(&[command, flag]);
            assert_exit(&ran, 0);
            assert!(
                ran.stdout
                    .starts_with(&format!("usage: peermesh {command} ")),
                "{command} {flag}: {:?}",
                ran.stdout
            );
            assert!(ran.stderr.is_empty(), "{:?}", ran.stderr);
        }
    }
    for args in [&["help"][..], &["--help"], &["-h"]] {
        let ran = peermesh(args);
        assert_exit(&ran, 0);
        assert!(ran.stdout.contains("usage: peermesh <command>"), "{ran:?}");
        for command in ["run", "status", "top", "check"] {
            assert!(ran.stdout.contains(&format!("  {command} ")), "{ran:?}");
        }
    }
    let ran = peermesh(&["--version"]);
    assert_exit(&ran, 0);
    // The wire protocol's version too: nodes of different ones cannot talk.
    assert_eq!(
        ran.stdout,
        format!(
            "peermesh {} (wire protocol {})\n",
            env!("CARGO_PKG_VERSION"),
            peermesh::wire::VERSION
        )
    );
}

// ---- No node running: exit 1 ----------------------------------------------------------------

#[test]
fn status_and_top_without_a_running_node_exit_1_and_say_so() {
    let lab = Lab::new("nonode");
    let missing = lab.dir.join("missing.sock");
    // A socket file left behind by a node that died: nobody listens on it.
    let stale = lab.dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    for path in [&missing, &stale] {
        let path = path.to_str().unwrap();
        for args in [
            &["status", "--control", path][..],
            &["status", "--json", "--control", path],
            &["top", "--count", "1", "--control", path],
        ] {
            let ran = peermesh(args);
            assert_exit(&ran, 1);
            let expected = format!("error: no peermesh node at {path} (is it running?)");
            assert!(ran.stderr.contains(&expected), "{args:?}: {:?}", ran.stderr);
            if args[0] == "top" {
                // top's frame, before its last one fails it: the line it retries under.
                let retry = format!("reconnecting to {path} (no peermesh node at {path}");
                assert!(ran.stdout.starts_with(&retry), "{args:?}: {:?}", ran.stdout);
            } else {
                assert!(ran.stdout.is_empty(), "{args:?}: {:?}", ran.stdout);
            }
        }
    }
}

// ---- check --------------------------------------------------------------------------------

#[test]
fn check_says_who_this_node_is_what_it_binds_and_its_peers() {
    let lab = Lab::new("check");
    let config = lab.write_config(
        "(\n    heartbeat_interval_ms: 100,\n    nodes: [\n        (name: \"alpha\", host: \"127.0.0.2\"),\n        (name: \"beta\", host: \"127.0.0.3\", port: 1400),\n        (name: \"gamma\", host: \"127.0.0.4\"),\n    ],\n)\n",
    );
    let config = config.to_str().unwrap();
    let ran = peermesh(&["check", "--config", config, "--name", "beta"]);
    assert_exit(&ran, 0);
    let out = &ran.stdout;
    assert!(out.contains(&format!("config {config} is valid")), "{out}");
    assert!(out.contains("this node: beta (from --name)"), "{out}");
    assert!(out.contains("binds: udp 127.0.0.3:1400"), "{out}");
    assert!(out.contains("heartbeat every 100 ms"), "{out}");
    assert!(out.contains("peers (2):"), "{out}");
    let peers: Vec<Vec<&str>> = out
        .lines()
        .skip_while(|l| !l.starts_with("peers"))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        peers,
        [["alpha", "127.0.0.2:1313"], ["gamma", "127.0.0.4:1313"]],
        "{out}"
    );
    assert!(ran.stderr.is_empty(), "{:?}", ran.stderr);

    // The name is matched case-insensitively.
    let ran = peermesh(&["check", "--config", config, "--name", "GAMMA"]);
    assert_exit(&ran, 0);
    assert!(ran.stdout.contains("this node: gamma"), "{ran:?}");

    // A name not in the config: exit 2, the names listed, --name mentioned.
    let ran = peermesh(&["check", "--config", config, "--name", "zeta"]);
    assert_exit(&ran, 2);
    let err = &ran.stderr;
    assert!(err.starts_with("error: "), "{err:?}");
    assert!(err.contains("\"zeta\""), "{err:?}");
    assert!(err.contains("alpha, beta, gamma"), "{err:?}");
    assert!(err.contains("--name"), "{err:?}");
    assert!(ran.stdout.is_empty(), "{:?}", ran.stdout);
}

#[test]
fn check_shows_the_nodes_tags_and_event_handler_and_points_at_a_bad_tag() {
    let lab = Lab::new("check-tags");
    let handler = lab.dir.join("handler");
    fs::write(&handler, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&handler, fs::Permissions::from_mode(0o755)).unwrap();
    let config = lab.write_config(
        "(\n    handler: \"handler\",\n    nodes: [\n        (name: \"alpha\", host: \"127.0.0.2\", tags: {\"role\": \"db\", \"zone\": \"eu 1\"}),\n        (name: \"beta\", host: \"127.0.0.3\", handler: \"missing\"),\n    ],\n)\n",
    );
    let config = config.to_str().unwrap();
    let ran = peermesh(&["check", "--config", config, "--name", "alpha"]);
    assert_exit(&ran, 0);
    let out = &ran.stdout;
    assert!(out.contains("tags: role=\"db\" zone=\"eu 1\"\n"), "{out}");
    assert!(
        out.contains(&format!("event handler: {}\n", handler.display())),
        "{out}"
    );

    // A handler that cannot run is no fault: the node would run without it.
    let ran = peermesh(&["check", "--config", config, "--name", "beta"]);
    assert_exit(&ran, 0);
    let out = &ran.stdout;
    assert!(out.contains("tags: none\n"), "{out}");
    let missing = lab.dir.join("missing");
    assert!(
        out.contains(&format!(
            "event handler: WARNING: event handler {}: No such file or directory",
            missing.display()
        )),
        "{out}"
    );

    let config = lab.write_config(
        "(nodes: [(name: \"alpha\", host: \"127.0.0.2\", tags: {\"role\": \"db\", \"a b\": \"x\"})])\n",
    );
    let config = config.to_str().unwrap();
    for command in ["check", "run"] {
        let ran = peermesh(&[command, "--config", config, "--name", "alpha"]);
        assert_exit(&ran, 2);
        assert!(
            ran.stderr.starts_with(&format!(
                "error: {config}:1:66: tag key \"a b\" of node \"alpha\" contains a space"
            )),
            "{command}: {:?}",
            ran.stderr
        );
    }
}

// ---- A running node: status, status --json, top ----------------------------------------------

#[test]
fn status_prints_an_aligned_plain_table_when_stdout_is_a_pipe() {
    let lab = running_pair("status");
    let ran = peermesh(&["status", "--control", &control_arg(&lab, "alpha")]);
    assert_exit(&ran, 0);
    let out = &ran.stdout;
    assert!(!out.contains('\x1b'), "ANSI escapes in a pipe: {out:?}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("node alpha (incarnation "), "{out}");
    assert!(lines[0].contains("1/2 peers alive"), "{out}");
    assert!(lines[0].contains("heartbeat every 100 ms"), "{out}");
    let header = lines[1];
    let columns = [
        "PEER", "ADDRESS", "STATE", "RTT LAST", "AVG", "P99", "JITTER", "LOSS", "HEARD",
    ];
    let mut at = 0;
    for column in columns {
        let found = header[at..].find(column).map(|i| i + at);
        assert!(
            found.is_some(),
            "{column} missing or out of order: {header:?}"
        );
        at = found.unwrap() + column.len();
    }
    let row = |name: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}: {out}"))
    };
    let (b, gamma) = (row("b"), row("gamma-long-name"));
    // Text columns start where their header starts (gamma, never heard, is `unknown` or
    // `dead` by now: whichever, its state starts in the STATE column too).
    let gamma_state = gamma.split_whitespace().nth(2).unwrap();
    for (column, cell_b, cell_g) in [
        ("ADDRESS", "127.0.0.3:1313", "127.0.0.4:1313"),
        ("STATE", "alive", gamma_state),
    ] {
        let col = header.find(column).unwrap();
        assert_eq!(b.find(cell_b), Some(col), "{column}:\n{out}");
        assert_eq!(gamma.find(cell_g), Some(col), "{column}:\n{out}");
    }
    // Figures end where their header ends (right-aligned): LOSS, then HEARD last.
    let loss_end = header.find("LOSS").unwrap() + "LOSS".len();
    for r in [b, gamma] {
        let chars: Vec<char> = r.chars().collect();
        let header_chars = header[..loss_end].chars().count();
        assert_eq!(
            chars[header_chars - 1],
            '%',
            "LOSS not right-aligned:\n{out}"
        );
    }
    assert!(gamma.ends_with("never"), "{out}");
    assert!(b.contains(" ago"), "{out}");
    assert!(ran.stderr.is_empty(), "{:?}", ran.stderr);
}

#[test]
fn status_json_has_the_contract_fields() {
    let lab = running_pair("json");
    let ran = peermesh(&["status", "--json", "--control", &control_arg(&lab, "alpha")]);
    assert_exit(&ran, 0);
    let json: Value = serde_json::from_str(&ran.stdout).expect("status --json parses");
    assert_eq!(json["node"], "alpha");
    assert!(json["incarnation"].is_u64(), "{json}");
    assert!(json["uptime_ms"].is_u64(), "{json}");
    assert_eq!(json["heartbeat_interval_ms"], 100);
    let peers = json["peers"].as_array().expect("peers");
    let names: Vec<&str> = peers.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["b", "gamma-long-name"]);
    for p in peers {
        assert!(
            p["addr"].as_str().is_some_and(|a| a.ends_with(":1313")),
            "{p}"
        );
        let state = p["state"].as_str().unwrap();
        assert!(
            ["unknown", "alive", "suspect", "unreachable", "dead", "left"].contains(&state),
            "{p}"
        );
        assert!(p["loss_pct"].is_f64(), "{p}");
        assert!(p["sent"].is_u64() && p["received"].is_u64(), "{p}");
        assert!(
            p.get("rtt_us").is_some() && p.get("jitter_us").is_some(),
            "{p}"
        );
        assert!(p.get("last_heard_ms").is_some(), "{p}");
    }
    // A live peer has every RTT figure; a peer never heard from has nulls.
    let b = &peers[0];
    assert_eq!(b["state"], "alive");
    for field in ["last", "min", "avg", "p50", "p99"] {
        let v = b["rtt_us"][field].as_f64();
        assert!(
            v.is_some_and(|us| us > 0.0 && us < 1e6),
            "rtt_us.{field}: {b}"
        );
    }
    assert!(b["jitter_us"].is_f64(), "{b}");
    assert!(b["last_heard_ms"].is_u64(), "{b}");
    assert!(b["sent"].as_u64().unwrap() > 0 && b["received"].as_u64().unwrap() > 0);
    let gamma = &peers[1];
    assert!(gamma["rtt_us"].is_null(), "{gamma}");
    assert!(gamma["jitter_us"].is_null(), "{gamma}");
    assert!(gamma["last_heard_ms"].is_null(), "{gamma}");
    assert_eq!(gamma["received"], 0);
    let dropped = json["dropped"].as_object().expect("dropped");
    for reason in [
        "malformed",
        "wrong_version",
        "unknown_sender",
        "misdirected",
        "from_self",
        "stale_incarnation",
        "after_leave",
        "stale_pong",
    ] {
        assert!(dropped[reason].is_u64(), "dropped.{reason}: {json}");
    }
}

#[test]
fn top_with_count_2_prints_two_plain_tables_to_a_pipe() {
    let lab = running_pair("top");
    let started = Instant::now();
    let ran = peermesh(&[
        "top",
        "--count",
        "2",
        "--control",
        &control_arg(&lab, "alpha"),
    ]);
    assert_exit(&ran, 0);
    let out = &ran.stdout;
    assert!(!out.contains('\x1b'), "ANSI escapes in a pipe: {out:?}");
    assert!(!out.contains("Ctrl-C"), "{out}");
    let tables = out.lines().filter(|l| l.starts_with("node alpha ")).count();
    let headers = out.lines().filter(|l| l.starts_with("PEER ")).count();
    assert_eq!((tables, headers), (2, 2), "{out}");
    // One refresh a second: the second table comes about a second after the first.
    assert!(started.elapsed() >= Duration::from_millis(900), "{out}");
    assert!(ran.stderr.is_empty(), "{:?}", ran.stderr);
}

// ---- The control socket under bad requests ---------------------------------------------------

/// Sends raw `bytes` to the control socket and reads the whole reply (a reset after the reply,
/// because the node did not read everything we sent, ends it too).
fn raw_request(path: &Path, bytes: &[u8]) -> String {
    let mut stream = UnixStream::connect(path).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(bytes).expect("write");
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..1000 {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the reply: {e}"),
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn the_control_socket_is_private_and_survives_malformed_requests() {
    let lab = running_pair("control");
    let path = lab.control("alpha");
    let meta = fs::metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let long = vec![b's'; 4000];
    let mut long_line = long.clone();
    long_line.push(b'\n');
    // The older protocol's words get a plain line such a client shows as it is; anything
    // else a JSON error object. Each is one line, and the node goes on serving.
    let old = "error: this node speaks control protocol 1";
    let json_error = |reply: &str, says: &str| {
        let v: serde_json::Value = serde_json::from_str(reply).expect("a JSON line");
        v["v"] == 1 && v["ok"] == false && v["error"].as_str().is_some_and(|e| e.contains(says))
    };
    let cases: [(&[u8], &str); 11] = [
        (b"frobnicate\n", old),
        (b"status --yaml\n", old),
        (b"{\"v\":1,\"cmd\":\"frobnicate\"}\n", "unknown variant"),
        (
            b"{\"v\":1,\"cmd\":\"status\",\"format\":\"yaml\"}\n",
            "unknown variant",
        ),
        (b"{\"v\":7,\"cmd\":\"status\"}\n", "version 7 is not spoken"),
        (b"{\"cmd\":\"status\"}\n", "no version"),
        (b"{\"v\":1,\"cmd\":\n", "not a request"),
        (b"\x00\x01\x02garbage\xff\n", "request is not UTF-8 text"),
        (&long, "request longer than 1024 bytes"),
        (&long_line, "request longer than 1024 bytes"),
        (b"\n", "empty request"),
    ];
    for (bytes, expected) in cases {
        let reply = raw_request(&path, bytes);
        let shown = &bytes[..bytes.len().min(20)];
        if expected == old {
            assert!(reply.starts_with(old), "{shown:?}...: {reply:?}");
        } else {
            assert!(json_error(&reply, expected), "{shown:?}...: {reply:?}");
        }
        assert_eq!(reply.lines().count(), 1, "{reply:?}");
        assert!(reply.ends_with('\n'), "{reply:?}");
    }
    // A client that says nothing and hangs up, and one that sends half a line and hangs up.
    assert!(json_error(&raw_request(&path, b""), "empty request"));
    assert!(json_error(
        &raw_request(&path, b"{\"v\":1"),
        "not a request"
    ));
    // The node still serves.
    assert_eq!(
        raw_request(&path, b"{\"v\":1,\"cmd\":\"ping\"}\n"),
        "{\"v\":1,\"ok\":true,\"pong\":true}\n"
    );
    let ran = peermesh(&["status", "--control", path.to_str().unwrap()]);
    assert_exit(&ran, 0);
    assert!(ran.stdout.starts_with("node alpha"), "{ran:?}");
    assert!(lab.alive_with_rtt("alpha", "b"), "{}", lab.logs());
}

// ---- Garbage on the UDP port ---------------------------------------------------------------

#[test]
fn garbage_datagrams_are_counted_as_malformed_and_do_not_disturb_peers() {
    // Outside a namespace, on loopback addresses of this test process: the test sends to them.
    let mut lab = Lab::new("garbage");
    let addrs = host_loopback_addrs(2);
    let config = lab.write_config(&config_for(
        &[("alpha", addrs[0]), ("beta", addrs[1])],
        SUSPECT_MS,
        DEAD_MS,
    ));
    lab.start_here(&config, "alpha");
    lab.start_here(&config, "beta");
    assert!(
        wait_until(INTERVAL * 20, || lab.alive_with_rtt("alpha", "beta")
            && lab.alive_with_rtt("beta", "alpha")),
        "{}",
        lab.logs()
    );
    let malformed = |l: &Lab| {
        l.status("alpha")
            .and_then(|s| s["dropped"]["malformed"].as_u64())
    };
    let received = |l: &Lab| l.peer("alpha", "beta").and_then(|p| p["received"].as_u64());
    let before = malformed(&lab).unwrap();
    let received_before = received(&lab).unwrap();

    let version = peermesh::wire::VERSION;
    let mut header = vec![b'P', b'M', version, 9]; // right magic and version, unknown kind
    header.resize(40, 0);
    let garbage: [&[u8]; 6] = [
        b"",
        b"hello, peermesh",
        &[b'P', b'M', version, 1], // a ping cut short
        &header,                   // a whole header of an unknown kind
        &[0xff; 1500],             // long noise
        &[0u8; 52],                // a ping's length, all zeros
    ];
    let socket = UdpSocket::bind((addrs[0].ip(), 0)).unwrap();
    const ROUNDS: u64 = 20;
    let mut states_seen = Vec::new();
    for _ in 0..ROUNDS {
        for datagram in garbage {
            socket.send_to(datagram, addrs[0]).unwrap();
        }
        states_seen.push(lab.peer("alpha", "beta").map(|p| p["state"].clone()));
    }
    let sent = ROUNDS * garbage.len() as u64;
    assert!(
        wait_until(INTERVAL * 10, || malformed(&lab) == Some(before + sent)),
        "malformed went {before} -> {:?}, expected +{sent}\n{}",
        malformed(&lab),
        lab.logs()
    );
    // Heartbeats went on, beta stayed alive throughout, and beta's own table is untouched.
    assert!(
        wait_until(INTERVAL * 10, || received(&lab)
            .is_some_and(|n| n >= received_before + 3)),
        "{}",
        lab.logs()
    );
    for _ in 0..5 {
        states_seen.push(lab.peer("alpha", "beta").map(|p| p["state"].clone()));
    }
    assert!(
        states_seen
            .iter()
            .all(|s| s.as_ref().is_some_and(|s| s == "alive")),
        "{states_seen:?}"
    );
    assert!(lab.alive_with_rtt("alpha", "beta") && lab.alive_with_rtt("beta", "alpha"));
    let beta = lab.status("beta").unwrap();
    assert_eq!(beta["dropped"]["malformed"], 0, "{beta}");
    let alpha = lab.status("alpha").unwrap();
    assert_eq!(alpha["dropped"]["unknown_sender"], 0, "{alpha}");
}

// ---- The parser's help, "did you mean", completions and man pages ---------------------------

/// Every command a user can type, in the order the help lists them.
const COMMANDS: [&str; 16] = [
    "run",
    "status",
    "top",
    "matrix",
    "send",
    "tag",
    "query",
    "nearest",
    "watch",
    "respond",
    "reload",
    "metrics",
    "check",
    "keygen",
    "completions",
    "man",
];

/// Runs `program` with `args` and then a file holding `input`, bounded in time.
fn piped(program: &str, args: &[&str], input: &str) -> Ran {
    static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = FILES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let file = std::env::temp_dir().join(format!("peermesh-cli-{}-{n}", std::process::id()));
    fs::write(&file, input).unwrap();
    let ran = support::run_bounded(
        std::process::Command::new(program).args(args).arg(&file),
        Duration::from_secs(20),
    );
    let _ = fs::remove_file(&file);
    ran
}

#[test]
fn a_typo_gets_did_you_mean_in_a_few_lines_not_the_whole_help() {
    let cases: [(&[&str], &str, &str); 4] = [
        (
            &["stauts"],
            "error: unknown command \"stauts\"",
            "tip: a similar command exists: 'status'",
        ),
        (
            &["status", "--jsn"],
            "error: status does not take \"--jsn\"",
            "tip: a similar flag exists: '--json'",
        ),
        (
            &["matrix", "--svgg", "m.svg"],
            "error: matrix does not take \"--svgg\"",
            "tip: a similar flag exists: '--svg'",
        ),
        (
            &["completions", "bsh"],
            "error: completions wants one of bash, zsh, fish, not \"bsh\"",
            "tip: a similar value exists: 'bash'",
        ),
    ];
    for (args, first, tip) in cases {
        let ran = peermesh(args);
        assert_exit(&ran, 2);
        let err = &ran.stderr;
        assert_eq!(err.lines().next(), Some(first), "{args:?}: {err}");
        assert!(err.contains(tip), "{args:?}: {err}");
        assert!(err.lines().count() <= 6, "{args:?}: {err}");
        assert!(
            !err.contains("Options:") && !err.contains("Commands:"),
            "{err}"
        );
        assert!(ran.stdout.is_empty(), "{args:?}: {:?}", ran.stdout);
    }
}

#[test]
fn every_usage_error_is_one_line_then_the_usage_and_a_pointer_to_help() {
    let cases: [(&[&str], &str, &str); 8] = [
        (&[], "error: no command given", "peermesh"),
        (
            &["status", "--json=yes"],
            "error: --json takes no value, not \"yes\"",
            "peermesh status",
        ),
        (
            &["run", "--bind", "nonsense"],
            "error: --bind wants ADDR:PORT (e.g. 0.0.0.0:1313), not \"nonsense\"",
            "peermesh run",
        ),
        (
            &["top", "--count", "x"],
            "error: --count wants a number, not \"x\"",
            "peermesh top",
        ),
        (
            &["matrix", "--json", "--svg", "m.svg"],
            "error: give --json or --svg, not both",
            "peermesh matrix",
        ),
        (
            &["keygen", "extra"],
            "error: keygen does not take \"extra\"",
            "peermesh keygen",
        ),
        (
            &["man", "frob"],
            "error: man wants one of run, status, top",
            "peermesh man",
        ),
        (
            &["help", "frob"],
            "error: unknown command \"frob\"",
            "peermesh",
        ),
    ];
    for (args, first, command) in cases {
        let ran = peermesh(args);
        assert_exit(&ran, 2);
        let lines: Vec<&str> = ran.stderr.lines().collect();
        assert!(lines[0].starts_with(first), "{args:?}: {:?}", ran.stderr);
        assert!(lines.len() <= 4, "{args:?}: {:?}", ran.stderr);
        let usage = lines.iter().find(|l| l.starts_with("usage: "));
        assert!(
            usage.is_some_and(|u| u.starts_with(&format!("usage: {command}"))),
            "{args:?}: {:?}",
            ran.stderr
        );
        assert_eq!(
            lines.last(),
            Some(&format!("For more information, try '{command} --help'.").as_str()),
            "{args:?}"
        );
        assert!(ran.stdout.is_empty(), "{args:?}: {:?}", ran.stdout);
    }
}

#[test]
fn every_command_has_its_own_help_and_help_command_prints_it() {
    for command in COMMANDS {
        let own = peermesh(&[command, "--help"]);
        assert_exit(&own, 0);
        assert!(
            own.stdout
                .starts_with(&format!("usage: peermesh {command}")),
            "{command}: {:?}",
            own.stdout
        );
        let via_help = peermesh(&["help", command]);
        assert_exit(&via_help, 0);
        assert_eq!(via_help.stdout, own.stdout, "help {command}");
    }
    // `status --help` says what each flag means and its default, without sending the user
    // to a README that is not on the VM.
    for command in ["status", "top", "matrix"] {
        let help = peermesh(&[command, "--help"]).stdout;
        for says in [
            "--control <PATH>",
            "$XDG_RUNTIME_DIR/peermesh-NAME.sock",
            "/tmp/peermesh-UID/NAME.sock",
            "--name <NAME>",
            "--config <PATH>",
            "[default: ./peers.ron, else /etc/peermesh/peers.ron]",
            "$PEERMESH_CONTROL",
            "/run/peermesh/peermesh.sock",
        ] {
            assert!(
                help.contains(says),
                "{command} --help lacks {says:?}:\n{help}"
            );
        }
        assert!(!help.contains("README"), "{command} --help:\n{help}");
    }
    let run = peermesh(&["run", "--help"]).stdout;
    for says in [
        "--bind <ADDR:PORT>",
        "--control <PATH>",
        "hostname",
        "RUST_LOG",
    ] {
        assert!(run.contains(says), "run --help lacks {says:?}:\n{run}");
    }
    let matrix = peermesh(&["matrix", "--help"]).stdout;
    assert!(matrix.contains("--svg <FILE>"), "{matrix}");
}

#[test]
fn the_bash_completion_is_valid_and_completes_every_command() {
    let ran = peermesh(&["completions", "bash"]);
    assert_exit(&ran, 0);
    let script = ran.stdout;
    let syntax = piped("bash", &["-n"], &script);
    assert_exit(&syntax, 0);
    // Ask the completion function itself, as bash does on TAB.
    let complete = |words: &str, cword: usize| {
        let probe = format!(
            "{script}\nCOMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE=\"{words}\"; \
             COMP_POINT=${{#COMP_LINE}}\n_peermesh peermesh \"${{COMP_WORDS[$COMP_CWORD]}}\" \
             \"${{COMP_WORDS[$COMP_CWORD-1]}}\"\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n"
        );
        let ran = piped("bash", &[], &probe);
        assert_exit(&ran, 0);
        ran.stdout
    };
    let all: Vec<String> = complete("peermesh ''", 1)
        .lines()
        .map(str::to_owned)
        .collect();
    for command in COMMANDS {
        assert!(
            all.iter().any(|c| c == command),
            "{command} not offered: {all:?}"
        );
    }
    assert_eq!(complete("peermesh stat", 1).trim(), "status");
    let flags = complete("peermesh matrix --", 2);
    for flag in ["--control", "--name", "--config", "--json", "--svg"] {
        assert!(flags.lines().any(|l| l == flag), "{flag}: {flags}");
    }
    for shell in ["zsh", "fish"] {
        let ran = peermesh(&["completions", shell]);
        assert_exit(&ran, 0);
        for command in COMMANDS {
            assert!(ran.stdout.contains(command), "{shell}: no {command}");
        }
    }
}

#[test]
fn the_man_pages_are_roff_that_groff_accepts_and_name_every_command() {
    let ran = peermesh(&["man"]);
    assert_exit(&ran, 0);
    let page = ran.stdout;
    assert!(
        page.lines().any(|l| l.starts_with(".TH peermesh 1 ")),
        "{page}"
    );
    // -ww: every warning; -z: check only. groff-base is in .ci/run's packages.
    let checked = piped("groff", &["-man", "-Tutf8", "-ww", "-z"], &page);
    assert_exit(&checked, 0);
    assert!(checked.stderr.is_empty(), "groff: {}", checked.stderr);
    let text = piped("groff", &["-man", "-Tascii", "-P-cbou"], &page).stdout;
    for command in COMMANDS {
        assert!(
            text.contains(&format!("peermesh-{command}(1)")),
            "{command} missing:\n{text}"
        );
    }
    assert!(text.contains("EXIT STATUS"), "{text}");
    for command in COMMANDS {
        let ran = peermesh(&["man", command]);
        assert_exit(&ran, 0);
        assert!(
            ran.stdout
                .lines()
                .any(|l| l.starts_with(&format!(".TH peermesh-{command} 1 "))),
            "{command}: {}",
            ran.stdout
        );
        let checked = piped("groff", &["-man", "-Tutf8", "-ww", "-z"], &ran.stdout);
        assert!(
            checked.code == Some(0) && checked.stderr.is_empty(),
            "{command}: {checked:?}"
        );
    }
    let run = piped(
        "groff",
        &["-man", "-Tascii", "-P-cbou"],
        &peermesh(&["man", "run"]).stdout,
    );
    for says in ["--bind", "--control", "--config", "--name"] {
        assert!(
            run.stdout.contains(says),
            "man run lacks {says}:\n{}",
            run.stdout
        );
    }
}

#[test]
fn generated_output_to_a_reader_that_went_away_ends_quietly() {
    for args in [
        &["completions", "bash"][..],
        &["man"],
        &["man", "run"],
        &["help", "run"],
        &["matrix", "--help"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut child = std::process::Command::new(support::BIN)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{args:?} hangs"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr:?}");
    }
}

#[test]
fn the_operations_guide_installs_a_man_page_for_every_command() {
    let guide =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/OPERATIONS.md"))
            .expect("docs/OPERATIONS.md");
    let line = guide
        .lines()
        .find(|l| l.starts_with("for page in \"\" "))
        .expect("the man page loop in docs/OPERATIONS.md");
    let pages: Vec<&str> = line
        .trim_start_matches("for page in \"\" ")
        .trim_end_matches("; do")
        .split_whitespace()
        .collect();
    assert_eq!(pages, COMMANDS, "{line}");
}
