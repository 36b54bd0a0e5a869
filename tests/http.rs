//! The HTTP endpoint of a real node (`run --http`): `/metrics` and `peermesh metrics`
//! accepted by a real parser of the format (Prometheus's `promtool check metrics`), the
//! status page in headless Chromium showing every peer's name and state, 1,000 connections
//! at once answered or refused while heartbeats stay on time, and bad requests answered
//! with errors.

mod support;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{config_for, host_loopback_addrs, run_bounded, wait_until, Lab, BIN};

const LIMIT: Duration = Duration::from_secs(10);

/// One request, the whole answer (the server closes after it).
fn get(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, LIMIT).expect("connect");
    stream.set_read_timeout(Some(LIMIT)).expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// `promtool check metrics` on `text`: its exit code and what it said, or `None` without
/// promtool (then the test says so loudly).
fn promtool(text: &str) -> Option<(Option<i32>, String)> {
    let path = Path::new("/usr/bin/promtool");
    if !path.exists() {
        eprintln!(
            "SKIPPED the promtool check: /usr/bin/promtool is missing (Debian package prometheus)"
        );
        return None;
    }
    let mut child = Command::new(path)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.code(), said))
}

/// Two nodes on the host's loopback, the first serving HTTP.
fn two_nodes(lab: &mut Lab) -> (SocketAddr, PathBuf) {
    let addrs = host_loopback_addrs(3);
    let http = addrs[2];
    let config = lab.write_config(&config_for(
        &[("alpha", addrs[0]), ("beta", addrs[1])],
        300,
        500,
    ));
    let http_arg = http.to_string();
    lab.start_here_with(&config, "alpha", &["--http", &http_arg]);
    lab.start_here(&config, "beta");
    assert!(
        wait_until(LIMIT, || lab.alive_with_rtt("alpha", "beta")
            && lab.alive_with_rtt("beta", "alpha")),
        "{}",
        lab.logs()
    );
    (http, config)
}

#[test]
fn metrics_over_http_and_the_cli_are_valid_prometheus_text_with_every_series() {
    let mut lab = Lab::new("http-metrics");
    let (http, _) = two_nodes(&mut lab);
    // beta's row of the matrix comes with its heartbeats, within an interval or two; the
    // estimate once both coordinates have settled (about ten Pongs).
    let mut answer = String::new();
    assert!(wait_until(LIMIT, || {
        answer = get(http, "GET /metrics HTTP/1.1\r\nHost: node\r\n\r\n");
        answer.contains("peermesh_matrix_row_age_seconds{node=\"beta\"}")
            && answer.contains("peermesh_peer_estimated_rtt_seconds{peer=\"beta\"}")
    }));
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains("Content-Type: text/plain; version=0.0.4"),
        "{answer}"
    );
    let text = body(&answer);
    for series in [
        "peermesh_build_info{version=\"",
        "peermesh_peers{state=\"alive\"} 1",
        "peermesh_peer_up{peer=\"beta\"} 1",
        "peermesh_peer_state{peer=\"beta\",state=\"alive\"} 1",
        "peermesh_peer_rtt_p50_seconds{peer=\"beta\"} ",
        "peermesh_peer_estimated_rtt_seconds{peer=\"beta\"} ",
        "peermesh_coordinate_error ",
        "peermesh_peer_loss_ratio{peer=\"beta\"} ",
        "peermesh_peer_datagrams_sent_total{peer=\"beta\"} ",
        "peermesh_dropped_datagrams_total{reason=\"malformed\"} 0",
        "peermesh_datagrams_received_total ",
        "peermesh_sent_bytes_total ",
        "peermesh_matrix_row_age_seconds{node=\"beta\"} ",
    ] {
        assert!(text.contains(series), "no {series:?} in\n{text}");
    }
    let control = lab.control("alpha");
    let cli = run_bounded(
        Command::new(BIN).args(["metrics", "--control", control.to_str().unwrap()]),
        LIMIT,
    );
    assert_eq!(cli.code, Some(0), "{cli:?}");
    assert!(
        cli.stdout.contains("peermesh_peer_up{peer=\"beta\"} 1"),
        "{cli:?}"
    );
    for (what, text) in [
        ("GET /metrics", text),
        ("peermesh metrics", cli.stdout.as_str()),
    ] {
        if let Some((code, said)) = promtool(text) {
            assert_eq!(code, Some(0), "promtool refused {what}: {said}\n{text}");
            assert!(
                said.trim().is_empty(),
                "promtool warns about {what}: {said}"
            );
        }
    }
}

#[test]
fn the_json_reports_the_heatmap_and_bad_requests() {
    let mut lab = Lab::new("http-paths");
    let (http, _) = two_nodes(&mut lab);
    let status: Value =
        serde_json::from_str(body(&get(http, "GET /status.json HTTP/1.1\r\n\r\n"))).expect("json");
    assert_eq!(status["node"], "alpha");
    assert_eq!(status["peers"][0]["name"], "beta");
    let matrix: Value =
        serde_json::from_str(body(&get(http, "GET /matrix.json?x=1 HTTP/1.1\r\n\r\n")))
            .expect("json");
    assert_eq!(matrix["nodes"].as_array().map(Vec::len), Some(2));
    let svg = get(http, "GET /matrix.svg HTTP/1.0\r\n\r\n");
    assert!(
        svg.contains("Content-Type: image/svg+xml") && body(&svg).contains("<svg"),
        "{svg}"
    );
    let head = get(http, "HEAD /status.json HTTP/1.1\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200") && body(&head).is_empty(),
        "{head}"
    );

    for (request, status) in [
        ("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "405"),
        ("GET /nope HTTP/1.1\r\n\r\n", "404"),
        ("\x00\x01garbage\r\n\r\n", "400"),
        ("GET / HTTP/1.1\r\n\u{1}: x\r\n\r\n", "400"),
    ] {
        let answer = get(http, request);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request:?} got {answer:?}"
        );
    }
    // A head that never ends: refused once past the limit, not held.
    let long = format!("GET / HTTP/1.1\r\nX-Pad: {}", "a".repeat(20_000));
    assert!(get(http, &long).starts_with("HTTP/1.1 431 "));
    // A client that says nothing is closed after the timeout, and the node serves on.
    let mut silent = TcpStream::connect(http).expect("connect");
    silent
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let started = Instant::now();
    let mut sink = Vec::new();
    let _ = silent.read_to_end(&mut sink);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "closed after about 5 s"
    );
    assert!(lab.alive_with_rtt("beta", "alpha"));
}

#[test]
fn a_thousand_connections_at_once_are_answered_or_refused_while_heartbeats_stay_on_time() {
    let mut lab = Lab::new("http-load");
    let (http, _) = two_nodes(&mut lab);
    // beta watches alpha's heartbeats the whole time, from its own status.
    let done = Arc::new(AtomicBool::new(false));
    let control = lab.control("beta");
    let watcher = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut worst = 0u64;
            let start = Instant::now();
            while !done.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(60) {
                let request = peermesh::io::control::Request::Status {
                    json: true,
                    color: false,
                };
                if let Ok(peermesh::io::control::Answer::Status(json)) =
                    peermesh::io::control::request(&control, request)
                {
                    let v: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
                    let heard = v["peers"][0]["last_heard_ms"].as_u64().unwrap_or(u64::MAX);
                    worst = worst.max(heard);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            worst
        })
    };
    let started = Instant::now();
    let mut streams = Vec::new();
    let mut refused_at_connect = 0;
    // Each sends its request at once (a client that stays silent for 5 s is closed, and
    // opening 1,000 connections can take that long on a loaded machine); none reads yet.
    for _ in 0..1000 {
        match TcpStream::connect_timeout(&http, Duration::from_secs(5)) {
            Ok(mut s) => {
                let _ = s.write_all(b"GET /status.json HTTP/1.1\r\nHost: node\r\n\r\n");
                streams.push(s);
            }
            Err(_) => refused_at_connect += 1,
        }
    }
    let (mut ok, mut busy, mut closed) = (0, 0, 0);
    for mut s in streams {
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut answer = Vec::new();
        match s.read_to_end(&mut answer) {
            Ok(_) | Err(_) if answer.starts_with(b"HTTP/1.1 200 ") => ok += 1,
            Ok(_) | Err(_) if answer.starts_with(b"HTTP/1.1 503 ") => busy += 1,
            Ok(_) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            Err(e) => panic!("a connection hung: {e} after {:?}", started.elapsed()),
        }
    }
    let took = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let worst = watcher.join().expect("watcher");
    eprintln!(
        "1000 connections in {took:?}: {ok} answered, {busy} busy, {closed} closed, \
         {refused_at_connect} refused at connect; beta heard alpha at most {worst} ms apart"
    );
    assert_eq!(ok + busy + closed + refused_at_connect, 1000);
    assert!(ok >= 100, "most of the connection limit answered: {ok}");
    assert!(
        worst <= 300,
        "alpha's heartbeats to beta stayed on time (100 ms interval): at most {worst} ms apart"
    );
    // And it serves normally afterwards.
    assert!(get(http, "GET /status.json HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 "));
    assert!(lab.alive_with_rtt("beta", "alpha"));
}

#[test]
fn the_status_page_in_chromium_shows_every_peer_with_its_state_and_refreshes_itself() {
    let Some(browser) = support::chromium() else {
        assert_eq!(
            std::env::var("PEERMESH_SKIP_BROWSER").as_deref(),
            Ok("1"),
            "headless Chromium is needed (apt-get install chromium, as .ci/run does), or set \
             PEERMESH_SKIP_BROWSER=1"
        );
        eprintln!("PEERMESH_SKIP_BROWSER=1: not loading the status page");
        return;
    };
    let mut lab = Lab::new("http-page");
    let Some(netns) = lab.netns.clone() else {
        eprintln!("SKIPPED: no network namespace for the browser (run as root)");
        return;
    };
    // Three nodes in the lab; gamma is listed but never started: `unknown`, then `dead`.
    let config = lab.write_config(&support::loopback_config(
        &["alpha", "beta", "gamma"],
        300,
        500,
    ));
    lab.start_with(&config, "alpha", &["--http", "127.0.0.2:9313"]);
    lab.start(&config, "beta");
    assert!(
        wait_until(LIMIT, || lab.alive_with_rtt("alpha", "beta")),
        "{}",
        lab.logs()
    );
    // The browser runs in the lab's namespace: it can reach the node and nothing else.
    let profile = lab.dir.join("chromium-profile");
    let ran = run_bounded(
        Command::new("ip")
            .args(["netns", "exec", &netns])
            .arg(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--virtual-time-budget=5000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("http://127.0.0.2:9313/")
            .env("HOME", &lab.dir),
        Duration::from_secs(120),
    );
    let dom = &ran.stdout;
    assert!(dom.contains("<table id=\"peers\">"), "no page: {ran:?}");
    for (peer, state) in [("beta", "alive"), ("gamma", "unknown")] {
        let row = dom
            .split("<tr")
            .find(|r| r.contains(&format!("data-peer=\"{peer}\"")))
            .unwrap_or_else(|| panic!("no row for {peer} in\n{dom}"));
        assert!(row.contains(&format!(">{peer}</td>")), "{row}");
        assert!(
            row.contains(&format!("class=\"state {state}\">{state}</td>")),
            "{peer} should be {state}: {row}"
        );
    }
    // The script ran: it fetched /status.json and rewrote the table and the footer.
    assert!(
        dom.contains("id=\"updated\">updated "),
        "the page did not refresh itself:\n{dom}"
    );
}
