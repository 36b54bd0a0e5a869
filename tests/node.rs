//! Real `peermesh run` processes on loopback (each test in its own network namespace when
//! run as root): start-up, kill -9, SIGSTOP/SIGCONT, SIGTERM, restart.

mod support;

use std::time::{Duration, Instant};
use support::{loopback_config, wait_until, Lab};

const NAMES: [&str; 5] = ["alpha", "beta", "gamma", "delta", "epsilon"];
const INTERVAL: Duration = Duration::from_millis(100);
const SUSPECT_MS: u64 = 300;
const DEAD_MS: u64 = 800;

fn start_five(test: &str) -> Lab {
    let mut lab = Lab::new(test);
    let config = lab.write_config(&loopback_config(&NAMES, SUSPECT_MS, DEAD_MS));
    for name in NAMES {
        lab.start(&config, name);
    }
    lab
}

/// [`start_five`], then every node sees every other alive with an RTT within 10 intervals.
fn start_five_alive(test: &str) -> Lab {
    let lab = start_five(test);
    assert!(
        wait_until(INTERVAL * 10, || all_alive_with_rtts(&lab)),
        "{}",
        lab.logs()
    );
    lab
}

/// SIGTERM to `name`: it exits 0 within a second, and every other node shows it `left`
/// within `within`.
fn terminate_and_see_left(lab: &mut Lab, name: &str, within: Duration) {
    lab.signal(name, "TERM");
    let code = lab.wait_exit(name, Duration::from_secs(1));
    assert_eq!(code, Some(0), "exit code within a second\n{}", lab.logs());
    let left = wait_until(within, || {
        others(name).all(|n| lab.state(n, name).as_deref() == Some("left"))
    });
    assert!(left, "not reported left\n{}", lab.logs());
}

fn others(name: &str) -> impl Iterator<Item = &'static str> + '_ {
    NAMES.into_iter().filter(move |n| *n != name)
}

/// Every node reports every other `alive` with an RTT.
fn all_alive_with_rtts(lab: &Lab) -> bool {
    NAMES.iter().all(|name| {
        lab.status(name).is_some_and(|s| {
            let peers = s["peers"].as_array().cloned().unwrap_or_default();
            peers.len() == 4
                && peers
                    .iter()
                    .all(|p| p["state"] == "alive" && p["rtt_us"]["p50"].as_f64().is_some())
        })
    })
}

#[test]
fn five_nodes_on_one_port_find_each_other_and_detect_kill_and_restart() {
    let mut lab = start_five("five");
    let started = Instant::now();
    assert!(
        wait_until(INTERVAL * 10, || all_alive_with_rtts(&lab)),
        "not all alive within 10 intervals\n{}",
        lab.logs()
    );
    eprintln!("all alive after {:?}", started.elapsed());
    // The RTTs are real loopback figures: positive and well under a millisecond or so.
    let status = lab.status("alpha").unwrap();
    for peer in status["peers"].as_array().unwrap() {
        let p50 = peer["rtt_us"]["p50"].as_f64().unwrap();
        assert!(p50 > 0.0 && p50 < 20_000.0, "{peer}");
        assert!(peer["addr"].as_str().unwrap().ends_with(":1313"));
    }

    // kill -9: dead everywhere within dead_after + 2 intervals.
    lab.signal("gamma", "KILL");
    let killed = Instant::now();
    let limit = Duration::from_millis(DEAD_MS) + INTERVAL * 2;
    let dead = wait_until(limit, || {
        others("gamma").all(|n| lab.state(n, "gamma").as_deref() == Some("dead"))
    });
    assert!(dead, "not dead everywhere within {limit:?}\n{}", lab.logs());
    let took = killed.elapsed();
    eprintln!("dead everywhere {took:?} after kill -9");
    assert!(
        took >= Duration::from_millis(DEAD_MS) - INTERVAL,
        "too early: {took:?}"
    );

    // Restart: alive again within 3 intervals.
    let config = lab.dir.join("peers.ron");
    lab.start(&config, "gamma");
    let restarted = Instant::now();
    let alive = wait_until(INTERVAL * 3, || {
        others("gamma").all(|n| lab.state(n, "gamma").as_deref() == Some("alive"))
    });
    assert!(
        alive,
        "restarted node not alive within 3 intervals\n{}",
        lab.logs()
    );
    eprintln!("alive again {:?} after restart", restarted.elapsed());
}

#[test]
fn a_stopped_process_is_suspect_then_alive_never_dead() {
    let lab = start_five_alive("stop");
    lab.signal("delta", "STOP");
    let stopped = Instant::now();
    let mut seen_suspect = false;
    let mut seen_dead = false;
    // Stay stopped for a bit more than suspect_after, well under dead_after.
    while stopped.elapsed() < Duration::from_millis(SUSPECT_MS + 250) {
        for n in others("delta") {
            match lab.state(n, "delta").as_deref() {
                Some("suspect") => seen_suspect = true,
                Some("dead") => seen_dead = true,
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    lab.signal("delta", "CONT");
    let alive = wait_until(INTERVAL * 3, || {
        others("delta").all(|n| lab.state(n, "delta").as_deref() == Some("alive"))
    });
    assert!(seen_suspect, "never suspected\n{}", lab.logs());
    assert!(
        !seen_dead,
        "declared dead after a short stop\n{}",
        lab.logs()
    );
    assert!(alive, "not alive after SIGCONT\n{}", lab.logs());
    // And the stopped node did not declare anyone dead either.
    let status = lab.status("delta").unwrap();
    assert!(status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["state"] == "alive"));
}

#[test]
fn sigterm_says_goodbye_and_exits_zero_within_a_second() {
    let mut lab = start_five_alive("term");
    terminate_and_see_left(&mut lab, "epsilon", INTERVAL * 2);
    // Still `left`, never `dead`, well past dead_after.
    std::thread::sleep(Duration::from_millis(DEAD_MS + 200));
    for n in others("epsilon") {
        assert_eq!(lab.state(n, "epsilon").as_deref(), Some("left"), "{n}");
    }
    // The socket file is gone with the process.
    assert!(!lab.control("epsilon").exists());
}

/// Issue 12, item 3, through the CLI: a node restarted after a peer left learns `left` from
/// the others' rows instead of showing the peer `unknown` for ever. `status --check` still
/// warns about it (a peer that left is not alive, as OPERATIONS.md documents) but names it
/// `left`, the state every other node reports, not `unknown`.
#[test]
fn a_node_restarted_after_a_peer_left_shows_it_left_in_status_and_check() {
    let mut lab = start_five_alive("left-before");
    terminate_and_see_left(&mut lab, "epsilon", INTERVAL * 3);
    // alpha restarts: it never heard epsilon itself.
    lab.signal("alpha", "TERM");
    assert_eq!(lab.wait_exit("alpha", Duration::from_secs(1)), Some(0));
    let config = lab.dir.join("peers.ron");
    lab.start(&config, "alpha");
    let settled = wait_until(INTERVAL * 10, || {
        lab.state("alpha", "epsilon").as_deref() == Some("left")
            && ["beta", "gamma", "delta"]
                .iter()
                .all(|n| lab.alive_with_rtt("alpha", n))
    });
    assert!(settled, "{:?}\n{}", lab.status("alpha"), lab.logs());
    let control = lab.control("alpha");
    let check = support::peermesh(&["status", "--check", "--control", control.to_str().unwrap()]);
    assert_eq!(check.code, Some(1), "{}{}", check.stdout, check.stderr);
    assert!(
        check.stdout.contains("epsilon left") && !check.stdout.contains("unknown"),
        "{}",
        check.stdout
    );
    let table = support::peermesh(&["status", "--control", control.to_str().unwrap()]);
    let row = table
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("epsilon"))
        .unwrap_or_default();
    assert!(
        row.contains("left") && !row.contains("unknown"),
        "{}",
        table.stdout
    );
}
