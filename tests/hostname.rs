//! Nodes find themselves in the config by hostname, as on real VMs: three nodes, each in its
//! own network namespace and its own UTS namespace with its own hostname, started without
//! `--name`, on a bridge of their own (10.213.0.0/24, inside namespaces this test made).

mod support;

use std::time::Duration;
use support::{sh, wait_until, Lab};

const INTERVAL: Duration = Duration::from_millis(100);

/// (name in the config, the host's hostname, its address on the bridge).
const HOSTS: [(&str, &str, &str); 3] = [
    ("alpha", "alpha", "10.213.0.1"),               // exact
    ("beta", "BETA", "10.213.0.2"),                 // case-insensitive
    ("gamma", "gamma.mesh.internal", "10.213.0.3"), // first label
];

/// Runs `ip ARGS`, panicking with the command on failure.
fn ip(args: &[&str]) {
    assert!(sh("ip", args), "ip {} failed", args.join(" "));
}

/// A bridge `br0` in the lab's own namespace and one namespace per host, each with a veth
/// `eth0` on the bridge. Every namespace is recorded in the lab, which deletes them on drop
/// (a panic included); deleting a namespace deletes its end of the veth, and so the pair.
fn build_network(lab: &mut Lab) -> Vec<String> {
    let bridge = lab
        .netns
        .clone()
        .expect("these tests need root: ip netns add failed");
    ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"]);
    ip(&["-n", &bridge, "link", "set", "br0", "up"]);
    let mut namespaces = Vec::new();
    for (i, (name, _, addr)) in HOSTS.iter().enumerate() {
        let ns = format!("{bridge}{name}");
        ip(&["netns", "add", &ns]);
        lab.extra_netns.push(ns.clone());
        let port = format!("v{i}");
        ip(&[
            "-n", &bridge, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ]);
        ip(&["-n", &bridge, "link", "set", &port, "master", "br0", "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        namespaces.push(ns);
    }
    namespaces
}

fn config() -> String {
    let nodes: Vec<String> = HOSTS
        .iter()
        .map(|(name, _, addr)| format!("        (name: \"{name}\", host: \"{addr}\"),"))
        .collect();
    format!(
        "(\n    heartbeat_interval_ms: 100,\n    suspect_after_ms: 300,\n    dead_after_ms: 800,\n    nodes: [\n{}\n    ],\n)\n",
        nodes.join("\n")
    )
}

#[test]
fn nodes_without_a_name_find_themselves_by_hostname_and_mesh() {
    let mut lab = Lab::new("hostname");
    let namespaces = build_network(&mut lab);
    let config = lab.write_config(&config());
    for ((name, hostname, _), ns) in HOSTS.iter().zip(&namespaces) {
        let control = lab.control(name);
        // `ip netns exec`, `unshare` (no --fork) and `exec` all replace the process: the
        // child the lab kills on drop is the node itself.
        let script = format!(
            "hostname '{hostname}' && exec '{}' run --config '{}' --control '{}'",
            support::BIN,
            config.display(),
            control.display()
        );
        let child = lab.spawn(Some(ns), "unshare", &["--uts", "sh", "-c", &script], name);
        lab.adopt(name, child);
    }
    for (name, _, _) in HOSTS {
        lab.wait_for_socket(name);
    }

    // Each found itself by its hostname ...
    for (name, hostname, _) in HOSTS {
        let status = lab
            .status(name)
            .unwrap_or_else(|| panic!("{name}: no status"));
        assert_eq!(
            status["node"],
            name,
            "hostname {hostname:?}\n{}",
            lab.logs()
        );
    }
    // ... and sees the other two alive with an RTT.
    let all_alive = || {
        HOSTS.iter().all(|(me, _, _)| {
            HOSTS
                .iter()
                .filter(|(peer, _, _)| peer != me)
                .all(|(peer, _, _)| lab.alive_with_rtt(me, peer))
        })
    };
    assert!(
        wait_until(INTERVAL * 30, all_alive),
        "not all alive within 30 intervals\n{}",
        lab.logs()
    );
    // Over the bridge, from the configured addresses.
    let status = lab.status("alpha").unwrap();
    for peer in status["peers"].as_array().unwrap() {
        let addr = peer["addr"].as_str().unwrap();
        assert!(addr.starts_with("10.213.0."), "{peer}");
        assert!(peer.get("seen_addr").is_none(), "{peer}");
    }
    // The hostnames were the namespaces' own: this machine's is unchanged.
    assert!(!HOSTS
        .iter()
        .any(|(_, h, _)| *h == peermesh::config::default_hostname()));
}
