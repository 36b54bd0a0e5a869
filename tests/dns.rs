//! Host names served by a real DNS server (Debian's dnsmasq) that the test starts in the
//! lab's network namespace and then changes: a peer listed by name is followed when its
//! name moves, within the resolve interval; a name that does not resolve yet is reported
//! `unresolved` and joins when it does; and while the DNS server hangs, heartbeats go on to
//! the last good address and the loop keeps time.
//!
//! `ip netns exec` mounts `/etc/netns/NS/resolv.conf` and `hosts` over `/etc`'s, so the
//! nodes of the lab ask this dnsmasq and nothing else.

mod support;

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{sh, wait_until, Lab};

const DNSMASQ: &str = "/usr/sbin/dnsmasq";
const LIMIT: Duration = Duration::from_secs(10);

/// `/etc/netns/NS`, removed when dropped.
struct NetnsEtc(PathBuf);

impl NetnsEtc {
    fn new(netns: &str, dns: &str) -> NetnsEtc {
        let dir = Path::new("/etc/netns").join(netns);
        fs::create_dir_all(&dir).expect("/etc/netns/NS");
        fs::write(dir.join("resolv.conf"), format!("nameserver {dns}\n")).expect("resolv.conf");
        fs::write(dir.join("hosts"), "127.0.0.1 localhost\n").expect("hosts");
        NetnsEtc(dir)
    }
}

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn peer(lab: &Lab, observer: &str, name: &str) -> Value {
    lab.peer(observer, name).unwrap_or(Value::Null)
}

#[test]
fn a_peer_listed_by_name_is_followed_when_its_name_moves_and_survives_a_hung_dns_server() {
    if !Path::new(DNSMASQ).exists() {
        eprintln!("SKIPPED: {DNSMASQ} is not installed (Debian package dnsmasq-base)");
        return;
    }
    let mut lab = Lab::new("dns");
    let Some(netns) = lab.netns.clone() else {
        eprintln!("SKIPPED: no network namespace (run as root)");
        return;
    };
    let _etc = NetnsEtc::new(&netns, "127.0.0.53");
    let hosts = lab.dir.join("mesh.hosts");
    fs::write(&hosts, "127.0.0.4 gamma.mesh.test\n").expect("hosts");
    let dns = lab.spawn(
        Some(&netns),
        DNSMASQ,
        &[
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            &format!("--addn-hosts={}", hosts.display()),
            "--listen-address=127.0.0.53",
            "--bind-interfaces",
            "--user=root",
            "--pid-file=",
        ],
        "dnsmasq",
    );
    let dns_pid = dns.id().to_string();
    lab.adopt("dnsmasq", dns);
    let resolves = |name: &str, ip: &str| {
        Command::new("ip")
            .args(["netns", "exec", &netns, "getent", "hosts", name])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with(ip))
    };
    assert!(
        wait_until(LIMIT, || resolves("gamma.mesh.test", "127.0.0.4")),
        "dnsmasq does not answer\n{}",
        lab.logs()
    );

    // Dead only after 4 s: a move followed within the 500 ms resolve interval is followed
    // before gamma could be declared dead (which would also trigger a lookup).
    let config = lab.write_config(
        "(\n    heartbeat_interval_ms: 100,\n    suspect_after_ms: 2000,\n    dead_after_ms: 4000,\n    resolve_interval_ms: 500,\n    nodes: [\n        (name: \"alpha\", host: \"127.0.0.2\"),\n        (name: \"beta\", host: \"127.0.0.3\"),\n        (name: \"gamma\", host: \"gamma.mesh.test\"),\n        (name: \"delta\", host: \"delta.mesh.test\"),\n    ],\n)\n",
    );
    for name in ["alpha", "beta", "gamma"] {
        lab.start(&config, name);
    }
    assert!(
        wait_until(LIMIT, || lab.alive_with_rtt("alpha", "gamma")
            && lab.alive_with_rtt("gamma", "alpha")),
        "{}",
        lab.logs()
    );
    assert_eq!(peer(&lab, "alpha", "gamma")["addr"], "127.0.0.4:1313");
    // delta's name does not resolve: not fatal, reported, retried.
    let delta = peer(&lab, "alpha", "delta");
    assert_eq!(delta["diagnosis"], "unresolved", "{delta}");
    assert_eq!(delta["state"], "unknown");
    assert!(delta["resolve_error"].is_string(), "{delta}");
    let control = lab.control("alpha");
    let check = support::run_bounded(
        Command::new(support::BIN).args([
            "status",
            "--check",
            "--control",
            control.to_str().unwrap(),
        ]),
        LIMIT,
    );
    assert_eq!(check.code, Some(1), "{check:?}");
    assert!(
        check
            .stdout
            .contains("1/3 peers not alive: delta unresolved"),
        "{check:?}"
    );

    // gamma's VM dies and comes back at 127.0.0.5; delta appears at 127.0.0.6.
    lab.signal("gamma", "KILL");
    fs::write(
        &hosts,
        "127.0.0.5 gamma.mesh.test\n127.0.0.6 delta.mesh.test\n",
    )
    .expect("hosts");
    assert!(sh("kill", &["-HUP", &dns_pid]));
    assert!(wait_until(LIMIT, || resolves(
        "gamma.mesh.test",
        "127.0.0.5"
    )));
    let _ = fs::remove_file(lab.control("gamma"));
    let moved = Instant::now();
    lab.start(&config, "gamma");
    lab.start(&config, "delta");
    assert!(
        wait_until(Duration::from_secs(3), || {
            peer(&lab, "alpha", "gamma")["addr"] == "127.0.0.5:1313"
                && lab.alive_with_rtt("alpha", "gamma")
        }),
        "alpha did not follow gamma to 127.0.0.5\n{}",
        lab.logs()
    );
    let followed = moved.elapsed();
    assert!(
        wait_until(LIMIT, || lab.alive_with_rtt("alpha", "delta")
            && lab.alive_with_rtt("beta", "delta")),
        "delta never joined\n{}",
        lab.logs()
    );
    let alpha_log = fs::read_to_string(lab.log("alpha")).unwrap_or_default();
    assert!(
        !alpha_log.contains("peer gamma alive -> dead"),
        "followed by the resolve interval ({followed:?}), not by a death"
    );

    // The DNS server hangs (SIGSTOP: lookups time out rather than fail at once). For 3 s
    // the nodes keep heartbeating gamma at its last good address, answer at once, and
    // their heartbeats to each other stay on time.
    assert!(wait_until(LIMIT, || lab.alive_with_rtt("alpha", "gamma")));
    assert!(sh("kill", &["-STOP", &dns_pid]));
    let start = Instant::now();
    let mut worst_heard = 0;
    let mut worst_answer = Duration::ZERO;
    let mut samples = 0;
    while start.elapsed() < Duration::from_secs(3) && samples < 1000 {
        let asked = Instant::now();
        let status = lab.status("beta").expect("beta answers");
        worst_answer = worst_answer.max(asked.elapsed());
        let alpha = status["peers"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == "alpha"))
            .cloned()
            .unwrap_or(Value::Null);
        worst_heard = worst_heard.max(alpha["last_heard_ms"].as_u64().unwrap_or(u64::MAX));
        let gamma = peer(&lab, "alpha", "gamma");
        assert!(
            lab.alive_with_rtt("alpha", "gamma"),
            "gamma kept at its last address: {gamma}\n{}",
            lab.logs()
        );
        samples += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(sh("kill", &["-CONT", &dns_pid]));
    eprintln!(
        "followed the move in {followed:?}; with the DNS server stopped, {samples} samples: \
         beta heard alpha at most {worst_heard} ms apart, status answered within {worst_answer:?}"
    );
    assert!(
        worst_heard <= 300,
        "beta heard alpha at most {worst_heard} ms apart at a 100 ms interval"
    );
    assert!(worst_answer < Duration::from_secs(1), "{worst_answer:?}");
    assert_eq!(peer(&lab, "alpha", "gamma")["addr"], "127.0.0.5:1313");
}

#[test]
fn check_resolves_every_name_and_warns_of_one_that_does_not_resolve() {
    let lab = Lab::new("dns-check");
    let Some(netns) = lab.netns.clone() else {
        eprintln!("SKIPPED: no network namespace (run as root)");
        return;
    };
    // No DNS server listens in the lab: every lookup fails at once, and stays in the lab.
    let _etc = NetnsEtc::new(&netns, "127.0.0.1");
    let config = lab.write_config(
        "(nodes: [(name: \"alpha\", host: \"127.0.0.2\"), (name: \"beta\", host: \"localhost\", port: 1400),\n (name: \"gamma\", host: \"gamma.mesh.test\")])",
    );
    let ran = support::run_bounded(
        Command::new("ip").args([
            "netns",
            "exec",
            &netns,
            support::BIN,
            "check",
            "--config",
            config.to_str().unwrap(),
            "--name",
            "alpha",
        ]),
        Duration::from_secs(20),
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["beta", "127.0.0.1:1400", "(localhost)"]),
        "{ran:?}"
    );
    assert!(
        lines.iter().any(|l| l.trim_start().starts_with("gamma")
            && l.contains("WARNING: gamma.mesh.test: ")
            && l.ends_with("the node runs and retries it (unresolved)")),
        "{ran:?}"
    );
}
