//! Reloading `peers.ron` in running nodes (SIGHUP and `peermesh reload`): a node added to
//! the file joins every node while the others' counters go on from where they were, a node
//! removed from it is gone from every status and matrix, and a broken file is refused with
//! its line and column while the node serves on.

mod support;

use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use support::{loopback_config, run_bounded, wait_until, Lab, BIN};

const LIMIT: Duration = Duration::from_secs(15);

fn reload(lab: &Lab, name: &str) -> support::Ran {
    let control = lab.control(name);
    run_bounded(
        Command::new(BIN).args(["reload", "--control", control.to_str().unwrap()]),
        Duration::from_secs(10),
    )
}

fn matrix_names(lab: &Lab, name: &str) -> Vec<String> {
    let out = Command::new(BIN)
        .args(["matrix", "--json", "--control"])
        .arg(lab.control(name))
        .output()
        .expect("matrix");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    json["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn peer_names(lab: &Lab, name: &str) -> Vec<String> {
    lab.status(name).map_or(Vec::new(), |s| {
        s["peers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    })
}

fn sent(lab: &Lab, observer: &str, peer: &str) -> u64 {
    lab.peer(observer, peer)
        .and_then(|p| p["sent"].as_u64())
        .unwrap_or(0)
}

#[test]
fn a_node_added_by_sighup_joins_everywhere_and_a_removed_one_is_gone_from_every_report() {
    let mut lab = Lab::new("reload");
    let three = ["alpha", "beta", "gamma"];
    let config = lab.write_config(&loopback_config(&three, 300, 500));
    for name in three {
        lab.start(&config, name);
    }
    let all_alive = |lab: &Lab, names: &[&str]| {
        names.iter().all(|a| {
            names
                .iter()
                .filter(|b| a != *b)
                .all(|b| lab.alive_with_rtt(a, b))
        })
    };
    assert!(
        wait_until(LIMIT, || all_alive(&lab, &three)),
        "{}",
        lab.logs()
    );
    let incarnation = lab.status("beta").unwrap()["incarnation"].clone();
    let before = sent(&lab, "alpha", "beta");
    assert!(before > 0);

    // delta is added to the file; it starts with it, the others are told by SIGHUP.
    let four = ["alpha", "beta", "gamma", "delta"];
    lab.write_config(&loopback_config(&four, 300, 500));
    lab.start(&config, "delta");
    for name in three {
        lab.signal(name, "HUP");
    }
    assert!(
        wait_until(LIMIT, || all_alive(&lab, &four)),
        "delta never joined everywhere\n{}",
        lab.logs()
    );
    let after = sent(&lab, "alpha", "beta");
    assert!(
        after > before,
        "alpha's count of datagrams to beta went on from {before}, it is {after}"
    );
    assert_eq!(
        lab.status("beta").unwrap()["incarnation"],
        incarnation,
        "beta was not restarted"
    );

    // gamma is retired: the others reload (`peermesh reload`), gamma is stopped.
    // Each node keeps its address (loopback_config numbers them by place in the list).
    let kept = ["alpha", "beta", "delta"];
    lab.write_config(
        &loopback_config(&four, 300, 500)
            .lines()
            .filter(|l| !l.contains("gamma"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    for name in kept {
        let ran = reload(&lab, name);
        assert_eq!(ran.code, Some(0), "{ran:?}");
        assert!(ran.stdout.contains("removed gamma"), "{ran:?}");
    }
    lab.signal("gamma", "TERM");
    for name in kept {
        assert!(
            !peer_names(&lab, name).contains(&"gamma".to_owned()),
            "{name} still lists gamma"
        );
        let mut names = matrix_names(&lab, name);
        names.sort();
        assert_eq!(names, ["alpha", "beta", "delta"], "{name}'s matrix");
    }
    assert!(
        wait_until(LIMIT, || all_alive(&lab, &kept)),
        "{}",
        lab.logs()
    );
    assert!(
        sent(&lab, "alpha", "beta") >= after,
        "beta's counters stayed"
    );
}

#[test]
fn a_broken_file_is_refused_with_its_place_and_the_node_serves_on() {
    let mut lab = Lab::new("reload-broken");
    let two = ["alpha", "beta"];
    let good = loopback_config(&two, 300, 500);
    let config = lab.write_config(&good);
    for name in two {
        lab.start(&config, name);
    }
    // Both ways before the broken file: the check after it reads both at one instant.
    assert!(wait_until(LIMIT, || lab.alive_with_rtt("alpha", "beta")
        && lab.alive_with_rtt("beta", "alpha")));

    lab.write_config("(\n    nodes: [\n        (name: \"alpha\", host: 5),\n    ],\n)\n");
    let ran = reload(&lab, "alpha");
    assert_eq!(ran.code, Some(1), "{ran:?}");
    let place = format!("{}:3:31: ", config.display());
    assert!(
        ran.stderr.starts_with(&format!("error: {place}")),
        "names the file, line and column: {ran:?}"
    );
    // SIGHUP with the same file: the same error in the log, and the node runs on.
    lab.signal("beta", "HUP");
    assert!(wait_until(LIMIT, || std::fs::read_to_string(
        lab.log("beta")
    )
    .unwrap_or_default()
    .contains(&place)));
    assert!(lab.alive_with_rtt("alpha", "beta") && lab.alive_with_rtt("beta", "alpha"));

    // A file that moves this node's own port is refused too: that needs a restart.
    lab.write_config(&good.replace("port: 1313", "port: 1414"));
    let ran = reload(&lab, "alpha");
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(
        ran.stderr
            .contains("a reload cannot bind another address or port"),
        "{ran:?}"
    );

    // New timings are taken without a restart.
    lab.write_config(&good.replace("heartbeat_interval_ms: 100", "heartbeat_interval_ms: 50"));
    let ran = reload(&lab, "alpha");
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.contains("new timings"), "{ran:?}");
    assert_eq!(lab.status("alpha").unwrap()["heartbeat_interval_ms"], 50);
    assert!(wait_until(LIMIT, || lab.alive_with_rtt("beta", "alpha")));
}

#[test]
fn a_reload_keeps_the_tags_set_at_run_time_and_applies_the_files_own() {
    let mut lab = Lab::new("reload-tags");
    let with_tags = |tags: &str| {
        loopback_config(&["alpha", "beta"], 300, 500).replace(
            "(name: \"alpha\", host: \"127.0.0.2\"),",
            &format!("(name: \"alpha\", host: \"127.0.0.2\", tags: {{{tags}}}),"),
        )
    };
    let config = lab.write_config(&with_tags("\"role\": \"db\", \"zone\": \"eu-1\""));
    let tags_file = lab.dir.join("alpha.tags");
    lab.start_with(
        &config,
        "alpha",
        &["--tags-file", tags_file.to_str().unwrap()],
    );
    lab.start(&config, "beta");
    let control = lab.control("alpha");
    let tag = |args: &[&str]| {
        let mut all = vec!["tag", "--control", control.to_str().unwrap()];
        all.extend_from_slice(args);
        run_bounded(Command::new(BIN).args(&all), Duration::from_secs(10))
    };
    assert_eq!(tag(&["set", "build=42"]).code, Some(0));

    // The file changes role, drops zone, adds rack; build was set at run time and stays.
    lab.write_config(&with_tags("\"role\": \"web\", \"rack\": \"3\""));
    let ran = reload(&lab, "alpha");
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.contains("tags of the file changed"), "{ran:?}");
    let shown = tag(&[]);
    let mut lines: Vec<&str> = shown.stdout.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["build=42", "rack=3", "role=web"], "{shown:?}");
    let seen = |lab: &Lab| {
        lab.peer("beta", "alpha").map(|p| p["tags"].clone())
            == Some(serde_json::json!({
                "build": "42", "rack": "3", "role": "web"
            }))
    };
    assert!(
        wait_until(LIMIT, || seen(&lab)),
        "beta sees them: {:?}",
        lab.peer("beta", "alpha")
    );
    // The tags file follows, so a restart finds them too.
    let kept = std::fs::read_to_string(&tags_file).unwrap_or_default();
    assert!(
        kept.contains("\"role\":\"web\"") || kept.contains("\"role\": \"web\""),
        "{kept}"
    );
    assert!(!kept.contains("zone"), "{kept}");
}
