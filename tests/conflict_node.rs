//! A second process with a name already in use, with real processes on loopback (in a
//! private network namespace): every node logs the conflict, `status` shows it, and the real
//! node is alive everywhere again within a few intervals after the impostor stops, with
//! nothing else restarted. The same in the simulator: tests/conflict.rs.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};
use support::{loopback_config, wait_until, Lab, BIN};

const NAMES: [&str; 5] = ["alpha", "beta", "gamma", "delta", "epsilon"];
/// The node whose name the impostor takes.
const REAL: &str = "beta";
const KEY: &str = "3333333333333333333333333333333333333333333333333333333333333333";
const INTERVAL: Duration = Duration::from_millis(100);

fn others() -> impl Iterator<Item = &'static str> {
    NAMES.into_iter().filter(|&n| n != REAL)
}

fn peer_field(lab: &Lab, observer: &str, peer: &str, field: &str) -> Option<String> {
    lab.peer(observer, peer)?[field].as_str().map(str::to_owned)
}

/// Every node sees the real node alive, and it sees them all alive.
fn healed(lab: &Lab) -> bool {
    others().all(|n| {
        peer_field(lab, n, REAL, "state").as_deref() == Some("alive")
            && peer_field(lab, REAL, n, "state").as_deref() == Some("alive")
    })
}

fn read_log(lab: &Lab, name: &str) -> String {
    std::fs::read_to_string(lab.log(name)).unwrap_or_default()
}

#[test]
fn an_impostor_is_logged_and_shown_everywhere_and_the_real_node_recovers_when_it_stops() {
    let mut lab = Lab::new("conflict");
    let keys = lab.dir.join("keyring");
    std::fs::write(&keys, format!("{KEY}\n")).expect("key file");
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let base = loopback_config(&NAMES, 300, 800);
    let config = base.replacen("    nodes:", "    keyring: \"keyring\",\n    nodes:", 1);
    let path = lab.write_config(&config);
    for name in NAMES {
        lab.start(&path, name);
    }
    assert!(
        wait_until(Duration::from_secs(5), || healed(&lab)),
        "{}",
        lab.logs()
    );

    // The impostor: the same config, key and name, another address, its own socket.
    let control = lab.control("impostor");
    let args = [
        "run",
        "--config",
        path.to_str().expect("utf-8 path"),
        "--name",
        REAL,
        "--bind",
        "127.0.3.9:1313",
        "--control",
        control.to_str().expect("utf-8 path"),
    ];
    let child = lab.spawn(lab.netns.clone().as_deref(), BIN, &args, "impostor");
    lab.adopt("impostor", child);
    lab.wait_for_socket("impostor");

    // Every other node diagnoses the conflict and names both addresses.
    let shown = wait_until(Duration::from_secs(10), || {
        others().all(|n| peer_field(&lab, n, REAL, "diagnosis").as_deref() == Some("conflict"))
    });
    assert!(shown, "conflict not shown everywhere\n{}", lab.logs());
    for n in others() {
        let peer = lab.peer(n, REAL).expect("a row for the real node");
        let addrs = [
            peer["seen_addr"].as_str().or(peer["addr"].as_str()),
            peer["rival_addr"].as_str(),
        ];
        assert!(
            addrs.contains(&Some("127.0.3.9:1313")) && addrs.contains(&Some("127.0.0.3:1313")),
            "{n} names {addrs:?}"
        );
    }
    // Both processes say another process runs with their name.
    let both = wait_until(Duration::from_secs(10), || {
        ["impostor", REAL].iter().all(|n| {
            lab.status(n)
                .is_some_and(|s| s["identity_conflict"] == serde_json::Value::Bool(true))
        })
    });
    assert!(both, "a conflicting process did not see it\n{}", lab.logs());
    // And the table says so in words.
    let table = support::peermesh(&[
        "status",
        "--control",
        lab.control("alpha").to_str().unwrap(),
    ]);
    assert!(
        table
            .stdout
            .contains("CONFLICT: two processes claim to be beta"),
        "{}",
        table.stdout
    );
    // A monitoring check is not OK while it lasts.
    let check = support::peermesh(&[
        "status",
        "--check",
        "--control",
        lab.control("alpha").to_str().unwrap(),
    ]);
    assert_eq!(check.code, Some(1), "{check:?}");
    assert!(
        check.stdout.starts_with("PEERMESH WARNING")
            && check.stdout.contains("two processes claim to be beta"),
        "{}",
        check.stdout
    );
    // Logged as an error at every node that sees it, and by both processes.
    for n in others() {
        let log = read_log(&lab, n);
        assert!(
            log.contains("ERROR") && log.contains("two processes claim to be beta"),
            "{n} did not log the conflict:\n{log}"
        );
    }
    for n in ["impostor", REAL] {
        let log = read_log(&lab, n);
        assert!(
            log.contains("ERROR") && log.contains("another process is running as beta"),
            "{n} did not log its own conflict:\n{log}"
        );
    }

    // The impostor stops (SIGTERM: it says goodbye with its identity).
    lab.signal("impostor", "TERM");
    assert_eq!(lab.wait_exit("impostor", Duration::from_secs(5)), Some(0));
    let stopped = Instant::now();
    assert!(
        wait_until(INTERVAL * 30, || healed(&lab)),
        "the real node was not alive everywhere again\n{}",
        lab.logs()
    );
    let took = stopped.elapsed();
    eprintln!("alive everywhere again {took:?} after the impostor stopped");
    assert!(took <= INTERVAL * 15, "took {took:?}");
    // It stays so, and the verdict ends without anything restarted.
    let over = wait_until(Duration::from_secs(10), || {
        others().all(|n| peer_field(&lab, n, REAL, "diagnosis").as_deref() == Some("ok"))
    });
    assert!(over, "the conflict verdict never ended\n{}", lab.logs());
    assert!(healed(&lab), "{}", lab.logs());
}
