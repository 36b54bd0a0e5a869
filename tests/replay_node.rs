//! Replays and forgeries against real processes, as an attacker on the path would make them
//! (issue 10):
//! the test is a relay in front of node `a` and records every sealed datagram `b` sends to
//! `a`; then it replays the capture after `a` restarted, and, in a second scenario, a
//! capture of `b`'s previous process after `b` restarted and died. Every replayed datagram
//! is dropped and counted; `b` never shows up alive.
//!
//! Outside any network namespace, on this test process's own loopback addresses.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{host_loopback_addrs, wait_until, Lab, BIN};

const KEY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// The relay in front of `a`: datagrams to `front` go to `a_real`; `a_real`'s answers go to
/// every sender seen (a node drops those addressed to another identity as misdirected).
/// Records what `b` sent to `a`.
struct Tap {
    stop: Arc<AtomicBool>,
    captured: Arc<Mutex<Vec<Vec<u8>>>>,
    recording: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    socket: UdpSocket,
}

impl Tap {
    fn start(front: SocketAddr, a_real: SocketAddr, b: SocketAddr) -> Tap {
        let socket = UdpSocket::bind(front).expect("bind the tap");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let captured = Arc::new(Mutex::new(Vec::new()));
        let recording = Arc::new(AtomicBool::new(false));
        let thread = {
            let (socket, stop) = (socket.try_clone().expect("clone"), stop.clone());
            let (captured, recording) = (captured.clone(), recording.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let mut clients: Vec<SocketAddr> = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    if from == a_real {
                        for c in &clients {
                            let _ = socket.send_to(&buf[..n], c);
                        }
                    } else {
                        if !clients.contains(&from) && clients.len() < 8 {
                            clients.push(from);
                        }
                        if from == b && recording.load(Ordering::Relaxed) {
                            if let Ok(mut c) = captured.lock() {
                                if c.len() < 10_000 {
                                    c.push(buf[..n].to_vec());
                                }
                            }
                        }
                        let _ = socket.send_to(&buf[..n], a_real);
                    }
                }
            })
        };
        Tap {
            stop,
            captured,
            recording,
            thread: Some(thread),
            socket,
        }
    }

    fn record(&self, on: bool) {
        self.recording.store(on, Ordering::Relaxed);
    }

    fn take(&self) -> Vec<Vec<u8>> {
        self.captured
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }

    /// Sends every datagram to `a_real` from the tap's address, 10 ms apart.
    fn replay(&self, datagrams: &[Vec<u8>], a_real: SocketAddr) {
        for d in datagrams {
            let _ = self.socket.send_to(d, a_real);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Mesh {
    lab: Lab,
    config: std::path::PathBuf,
    a_real: SocketAddr,
    tap: Tap,
}

impl Mesh {
    /// `a` (behind the tap), `b` and `c`, keyed, 100 ms heartbeats.
    fn start(test: &str) -> Mesh {
        let lab = Lab::new(test);
        let addrs = host_loopback_addrs(4);
        let (a_front, b, c, a_real) = (addrs[0], addrs[1], addrs[2], addrs[3]);
        let keys = lab.dir.join("keyring");
        std::fs::write(&keys, format!("{KEY}\n")).expect("key file");
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).expect("0600");
        let nodes = [("a", a_front), ("b", b), ("c", c)]
            .iter()
            .map(|(n, x)| {
                format!(
                    "        (name: \"{n}\", host: \"{}\", port: {}),",
                    x.ip(),
                    x.port()
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = lab.write_config(&format!(
            "(\n    heartbeat_interval_ms: 100,\n    suspect_after_ms: 300,\n    \
             dead_after_ms: 500,\n    keyring: \"keyring\",\n    nodes: [\n{nodes}\n    ],\n)\n"
        ));
        let tap = Tap::start(a_front, a_real, b);
        let mut mesh = Mesh {
            lab,
            config,
            a_real,
            tap,
        };
        mesh.start_a();
        mesh.lab.start_here(&mesh.config.clone(), "b");
        mesh.lab.start_here(&mesh.config.clone(), "c");
        mesh
    }

    fn start_a(&mut self) {
        let control = self.lab.control("a");
        let _ = std::fs::remove_file(&control);
        let bind = self.a_real.to_string();
        let args = [
            "run",
            "--config",
            self.config.to_str().unwrap(),
            "--name",
            "a",
            "--bind",
            &bind,
            "--control",
            control.to_str().unwrap(),
        ];
        let child = self.lab.spawn(None, BIN, &args, "a");
        self.lab.adopt("a", child);
        self.lab.wait_for_socket("a");
    }

    fn kill(&mut self, name: &str) {
        self.lab.signal(name, "KILL");
        let _ = self.lab.wait_exit(name, Duration::from_secs(5));
    }

    fn b_at_a(&self) -> Option<serde_json::Value> {
        self.lab.peer("a", "b")
    }

    fn dropped_at_a(&self, reason: &str) -> u64 {
        self.lab
            .status("a")
            .and_then(|s| s["dropped"][reason].as_u64())
            .unwrap_or(0)
    }
}

fn alive(lab: &Lab, observer: &str, peer: &str) -> bool {
    lab.state(observer, peer).as_deref() == Some("alive")
}

#[test]
fn replayed_sealed_traffic_after_the_receiver_restarts_is_dropped_and_counted() {
    let mut m = Mesh::start("replay-restart");
    assert!(
        wait_until(Duration::from_secs(5), || alive(&m.lab, "a", "b")
            && alive(&m.lab, "b", "a")),
        "{}",
        m.lab.logs()
    );
    m.tap.record(true);
    std::thread::sleep(Duration::from_secs(6)); // what an eavesdropper keeps: 6 s of b -> a
    m.tap.record(false);
    let capture = m.tap.take();
    assert!(capture.len() >= 40, "captured only {}", capture.len());
    m.kill("b");
    m.kill("a");
    m.start_a();
    assert!(
        wait_until(Duration::from_secs(5), || alive(&m.lab, "a", "c")),
        "{}",
        m.lab.logs()
    );
    std::thread::sleep(Duration::from_millis(300));
    let before = m.dropped_at_a("not_fresh");
    m.tap.replay(&capture, m.a_real);
    // Every replayed datagram counted (the counter is read once the last one arrived).
    let counted = wait_until(Duration::from_secs(3), || {
        m.dropped_at_a("not_fresh") >= before + capture.len() as u64
    });
    let b = m.b_at_a().expect("b in a's table");
    assert!(
        counted,
        "not_fresh {} -> {}, {} replayed\n{}",
        before,
        m.dropped_at_a("not_fresh"),
        capture.len(),
        m.lab.logs()
    );
    assert_eq!(b["state"], "unknown", "{b}");
    assert_eq!(b["received"], 0, "{b}");
    assert!(b["incarnation"].is_null(), "{b}");
}

#[test]
fn a_replayed_past_process_of_a_dead_peer_is_no_restart_and_it_stays_dead() {
    let mut m = Mesh::start("replay-past");
    assert!(wait_until(Duration::from_secs(5), || alive(
        &m.lab, "a", "b"
    ) && alive(
        &m.lab, "b", "a"
    )));
    m.tap.record(true);
    std::thread::sleep(Duration::from_secs(3));
    m.tap.record(false);
    let capture = m.tap.take();
    assert!(capture.len() >= 20, "captured only {}", capture.len());
    m.kill("b");
    let config = m.config.clone();
    m.lab.start_here(&config, "b");
    let first = m
        .b_at_a()
        .and_then(|b| b["incarnation"].as_str().map(str::to_owned));
    assert!(wait_until(Duration::from_secs(5), || {
        alive(&m.lab, "a", "b")
            && m.b_at_a()
                .and_then(|b| b["incarnation"].as_str().map(str::to_owned))
                != first
    }));
    let second = m
        .b_at_a()
        .and_then(|b| b["incarnation"].as_str().map(str::to_owned));
    m.kill("b");
    assert!(
        wait_until(Duration::from_secs(5), || m.lab.state("a", "b").as_deref()
            == Some("dead")),
        "{}",
        m.lab.logs()
    );
    let stale = m.dropped_at_a("stale_incarnation");
    m.tap.replay(&capture, m.a_real);
    let counted = wait_until(Duration::from_secs(3), || {
        m.dropped_at_a("stale_incarnation") >= stale + capture.len() as u64
    });
    let b = m.b_at_a().expect("b in a's table");
    assert!(
        counted,
        "stale_incarnation {stale} -> {}, {} replayed",
        m.dropped_at_a("stale_incarnation"),
        capture.len()
    );
    assert_eq!(b["state"], "dead", "{b}");
    assert_eq!(
        b["incarnation"].as_str().map(str::to_owned),
        second,
        "never backwards"
    );
    let log = std::fs::read_to_string(m.lab.log("a")).unwrap_or_default();
    let restarts = log.matches("peer b restarted").count();
    assert_eq!(restarts, 1, "only the real restart is reported:\n{log}");
}

/// Unkeyed, a stray datagram from `b`'s IP address that names `a`'s incarnation (as an
/// on-path forger reads it) and a far higher incarnation of `b`: `a` takes it as a restart,
/// `b`'s genuine datagrams are then from an older process, and `b` refutes. Healed within a
/// few intervals, with nothing restarted.
#[test]
fn unkeyed_a_stray_higher_incarnation_heals_within_a_few_intervals() {
    use peermesh::wire::{Body, Header, Packet};
    use peermesh::NodeId;
    use support::config_for;
    let mut lab = Lab::new("stray");
    let addrs = host_loopback_addrs(2);
    let config = lab.write_config(&config_for(&[("a", addrs[0]), ("b", addrs[1])], 300, 500));
    lab.start_here(&config, "a");
    lab.start_here(&config, "b");
    assert!(wait_until(Duration::from_secs(5), || alive(&lab, "a", "b")
        && alive(&lab, "b", "a")));
    let incarnation = |name: &str| lab.status(name).and_then(|s| s["incarnation"].as_u64());
    let (a_inc, b_inc) = (incarnation("a").unwrap(), incarnation("b").unwrap());
    let forged_inc = b_inc + (1 << 40);
    let header = Header {
        from: NodeId::from_name("b"),
        incarnation: forged_inc,
        to: NodeId::from_name("a"),
        to_incarnation: a_inc,
        seq: 1_000_000,
    };
    let body = Body::Ping {
        probe: 0,
        sent_ns: 1,
        row: None,
    };
    let mut buf = [0u8; 128];
    let n = Packet { header, body }.emit(&mut buf).unwrap();
    // From b's IP address, another port: unkeyed mode checks only the IP.
    let stray = UdpSocket::bind(SocketAddr::new(addrs[1].ip(), 0)).unwrap();
    stray.send_to(&buf[..n], addrs[0]).unwrap();
    let held = |lab: &Lab| {
        lab.peer("a", "b")
            .and_then(|p| u64::from_str_radix(p["incarnation"].as_str()?, 16).ok())
    };
    assert!(
        wait_until(Duration::from_secs(2), || held(&lab) == Some(forged_inc)
            || held(&lab).is_some_and(|h| h > forged_inc)),
        "{}",
        lab.logs()
    );
    let sent = Instant::now();
    assert!(
        wait_until(Duration::from_secs(3), || {
            let b_now = incarnation("b");
            b_now.is_some_and(|b| b > forged_inc)
                && held(&lab) == b_now
                && alive(&lab, "a", "b")
                && alive(&lab, "b", "a")
        }),
        "not healed: a holds b at {:?}, b runs {:?}\n{}",
        held(&lab),
        incarnation("b"),
        lab.logs()
    );
    let healed = sent.elapsed();
    eprintln!("healed in {healed:?}");
    assert!(healed < Duration::from_millis(1000), "healed in {healed:?}");
    let log = std::fs::read_to_string(lab.log("b")).unwrap_or_default();
    assert!(log.contains("refuting with incarnation"), "{log}");
}
