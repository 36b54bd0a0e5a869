//! `peermesh-relay`, the delay relay the benches put between nodes: it adds the delay it is
//! given, in both directions, never less; it forwards between its first client and its
//! target only; it honours `--loss` and `--secs`; it refuses anything but loopback.
//!
//! The relay runs in the host's network namespace on a loopback address of this test
//! process's own ([`host_loopback_addrs`]), with an echo server and a client in this process.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{host_loopback_addrs, run_bounded};

fn relay() -> std::path::PathBuf {
    support::tool("peermesh-relay")
}

/// A relay process, killed when dropped.
struct Relay(Child);

impl Relay {
    fn start(args: &[&str]) -> Relay {
        let child = Command::new(relay())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn peermesh-relay");
        Relay(child)
    }

    /// Waits (bounded) for the relay to exit by itself; returns its summary line.
    fn wait_summary(mut self, limit: Duration) -> String {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.0.try_wait() {
                assert!(status.success(), "relay failed: {status}");
                let mut out = String::new();
                if let Some(mut pipe) = self.0.stdout.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut out);
                }
                return out;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("relay still running after {limit:?}");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An echo server on `addr` that answers `echo:` + the datagram to its source, and records
/// every source it heard from. Stops when `stop` is set.
fn echo_server(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<SocketAddr>> {
    let socket = UdpSocket::bind(addr).expect("bind echo server");
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    std::thread::spawn(move || {
        let mut sources = Vec::new();
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                if !sources.contains(&from) {
                    sources.push(from);
                }
                let mut reply = b"echo:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                let _ = socket.send_to(&reply, from);
            }
        }
        sources
    })
}

/// Sends `probe` through the relay and waits (up to `limit`) for its echo; the round trip.
fn round_trip(
    client: &UdpSocket,
    relay: SocketAddr,
    probe: &[u8],
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    client.send_to(probe, relay).ok()?;
    let mut buf = [0u8; 2048];
    while start.elapsed() < limit {
        let Ok((n, from)) = client.recv_from(&mut buf) else {
            continue;
        };
        let rtt = start.elapsed();
        assert_eq!(from, relay, "the reply must come from the relay");
        if buf[..n].strip_prefix(b"echo:") == Some(probe) {
            return Some(rtt);
        }
    }
    None
}

#[test]
fn the_relay_adds_its_delay_in_both_directions_and_never_less() {
    let [relay_addr, echo_addr, client_addr] = host_loopback_addrs(3)[..] else {
        unreachable!()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let echo = echo_server(echo_addr, stop.clone());
    let _relay = Relay::start(&[
        "--listen",
        &relay_addr.to_string(),
        "--to",
        &echo_addr.to_string(),
        "--delay-ms",
        "5",
        "--secs",
        "30",
    ]);
    let client = UdpSocket::bind(client_addr).expect("bind client");
    client
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    // The relay needs a moment to bind: retry the first probe (bounded).
    let started = (0..100).any(|i| {
        round_trip(
            &client,
            relay_addr,
            format!("hello {i}").as_bytes(),
            Duration::from_millis(100),
        )
        .is_some()
    });
    assert!(started, "no echo through the relay within 10 s");
    // Let a late echo of a retried hello arrive and be discarded before measuring.
    std::thread::sleep(Duration::from_millis(50));
    let mut rtts: Vec<Duration> = (0..40)
        .map(|i| {
            let probe = format!("probe {i}");
            round_trip(
                &client,
                relay_addr,
                probe.as_bytes(),
                Duration::from_secs(1),
            )
            .unwrap_or_else(|| panic!("{probe} was not echoed within 1 s"))
        })
        .collect();
    stop.store(true, Ordering::Relaxed);
    let sources = echo.join().expect("echo server");
    rtts.sort();
    let median = rtts[rtts.len() / 2];
    let want = Duration::from_millis(10);
    let off = median.abs_diff(want);
    assert!(
        off < Duration::from_micros(500),
        "median round trip {median:?} is {off:?} off 2 x 5 ms; all: {rtts:?}"
    );
    assert!(
        rtts[0] >= want,
        "a round trip of {:?} is shorter than the 10 ms the relay adds",
        rtts[0]
    );
    assert_eq!(
        sources,
        vec![relay_addr],
        "the echo server must hear only the relay"
    );
}

#[test]
fn the_relay_serves_only_its_first_client_honours_loss_and_stops_after_secs() {
    let [relay_addr, echo_addr, client_addr, stranger_addr] = host_loopback_addrs(4)[..] else {
        unreachable!()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let echo = echo_server(echo_addr, stop.clone());
    let relay = Relay::start(&[
        "--listen",
        &relay_addr.to_string(),
        "--to",
        &echo_addr.to_string(),
        "--delay-ms",
        "1",
        "--loss",
        "100%",
        "--secs",
        "1.5",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let client = UdpSocket::bind(client_addr).expect("bind client");
    client
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let stranger = UdpSocket::bind(stranger_addr).expect("bind stranger");
    for i in 0..5 {
        assert_eq!(
            round_trip(
                &client,
                relay_addr,
                format!("lost {i}").as_bytes(),
                Duration::from_millis(50)
            ),
            None,
            "--loss 100% forwarded a datagram"
        );
        stranger.send_to(b"not the client", relay_addr).unwrap();
    }
    let summary = relay.wait_summary(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    let sources = echo.join().expect("echo server");
    assert!(sources.is_empty(), "the echo server heard {sources:?}");
    assert!(summary.contains("lost 5,"), "summary: {summary}");
    assert!(summary.contains("strangers 5,"), "summary: {summary}");
}

#[test]
fn the_relay_refuses_addresses_off_loopback_and_bad_options() {
    let cases: [&[&str]; 4] = [
        &[
            "--listen",
            "10.0.0.1:9000",
            "--to",
            "127.0.0.1:9001",
            "--delay-ms",
            "5",
        ],
        &[
            "--listen",
            "127.0.0.1:9000",
            "--to",
            "192.0.2.1:9001",
            "--delay-ms",
            "5",
        ],
        &["--listen", "127.0.0.1:9000", "--to", "127.0.0.1:9001"],
        &[
            "--listen",
            "127.0.0.1:9000",
            "--to",
            "127.0.0.1:9001",
            "--delay-ms",
            "5",
            "--secs",
            "0",
        ],
    ];
    for args in cases {
        let ran = run_bounded(Command::new(relay()).args(args), Duration::from_secs(10));
        assert_eq!(ran.code, Some(2), "{args:?}: {ran:?}");
        assert!(ran.stderr.contains("usage:"), "{args:?}: {ran:?}");
    }
    let ran = run_bounded(
        Command::new(relay()).args([
            "--listen",
            "10.0.0.1:9000",
            "--to",
            "127.0.0.1:9001",
            "--delay-ms",
            "5",
        ]),
        Duration::from_secs(10),
    );
    assert!(ran.stderr.contains("not a loopback address"), "{ran:?}");
}

#[test]
fn in_mesh_mode_each_directed_path_has_its_delay_and_the_relay_reports_what_it_applied() {
    let [listen_a, listen_b, real_a, real_b] = host_loopback_addrs(4)[..] else {
        unreachable!()
    };
    let dir = std::env::temp_dir().join(format!("peermesh-relay-mesh-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let stats = dir.join("stats");
    let relay = Relay::start(&[
        "--node",
        &format!("a,{listen_a},{real_a}"),
        "--node",
        &format!("b,{listen_b},{real_b}"),
        "--path",
        "a,b,4",
        "--path",
        "b,a,9",
        "--secs",
        "30",
        "--stats",
        stats.to_str().expect("a UTF-8 path"),
    ]);
    let a = UdpSocket::bind(real_a).expect("bind a");
    let b = UdpSocket::bind(real_b).expect("bind b");
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    }
    // a -> b's listed address: b hears it from a's listed address, 4 ms later at least.
    let mut buf = [0u8; 64];
    let started = (0..100).any(|i| {
        let sent = Instant::now();
        a.send_to(format!("hello {i}").as_bytes(), listen_b)
            .unwrap();
        while sent.elapsed() < Duration::from_millis(100) {
            if let Ok((_, from)) = b.recv_from(&mut buf) {
                assert_eq!(from, listen_a, "b must hear a at a's listed address");
                assert!(sent.elapsed() >= Duration::from_millis(4));
                return true;
            }
        }
        false
    });
    assert!(started, "nothing through the relay within 10 s");
    // b answers the source it saw: the answer takes the path b -> a, 9 ms.
    let sent = Instant::now();
    b.send_to(b"answer", listen_a).unwrap();
    let mut heard = None;
    while sent.elapsed() < Duration::from_secs(1) {
        if let Ok((n, from)) = a.recv_from(&mut buf) {
            if &buf[..n] == b"answer" {
                heard = Some((from, sent.elapsed()));
                break;
            }
        }
    }
    let (from, took) = heard.expect("the answer came back within 1 s");
    assert_eq!(from, listen_b, "a must hear b at b's listed address");
    assert!(took >= Duration::from_millis(9), "{took:?}");

    // SIGTERM: the relay stops at once, its stats written.
    assert!(support::sh("kill", &["-TERM", &relay.0.id().to_string()]));
    let summary = relay.wait_summary(Duration::from_secs(5));
    let text = std::fs::read_to_string(&stats).expect("the stats file");
    let field = |path: &str, key: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("path {path} ")))
            .unwrap_or_else(|| panic!("no {path} in {text}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words.iter().position(|w| *w == key).expect("a field");
        words[at + 1].parse().expect("a number")
    };
    assert_eq!(field("b->a", "forwarded"), 1.0, "{text}");
    assert!(field("a->b", "forwarded") >= 1.0, "{text}");
    // What it applied: never less than asked, and on an unloaded path close to it.
    for (path, us) in [("a->b", 4000.0), ("b->a", 9000.0)] {
        let min = field(path, "applied_min_us");
        assert!(
            min >= us,
            "{path}: applied {min} us, less than {us}: {text}"
        );
        assert!(
            field(path, "applied_p50_us") < us + 5000.0,
            "{path}: {text}"
        );
    }
    assert!(summary.contains("path a->b delay_us 4000.0"), "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}
