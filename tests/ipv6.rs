//! IPv6 and mixed meshes, as real processes: a mesh on `::1`; nodes bound to `[::]`
//! (dual-stack) beside IPv4-only and IPv6-only ones; and a mesh over an IPv6-only network of
//! namespaces this test makes itself. Every address a report shows is plain: a dual-stack
//! socket's IPv4-mapped `::ffff:a.b.c.d` never appears.

mod support;

use serde_json::Value;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use support::{host_loopback_addrs, sh, wait_until, Lab};

const INTERVAL: Duration = Duration::from_millis(100);
const KEY: &str = "0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a090807060504030201000";

/// A config of (name, host, port) entries with 100 ms heartbeats, and a key file if given.
fn config(nodes: &[(&str, &str, u16)], keyring: Option<&std::path::Path>) -> String {
    let lines: Vec<String> = nodes
        .iter()
        .map(|(n, h, p)| format!("        (name: \"{n}\", host: \"{h}\", port: {p}),"))
        .collect();
    let keyring = keyring.map_or(String::new(), |k| format!("    keyring: {k:?},\n"));
    format!(
        "(\n{keyring}    heartbeat_interval_ms: 100,\n    suspect_after_ms: 400,\n    dead_after_ms: 1500,\n    nodes: [\n{}\n    ],\n)\n",
        lines.join("\n")
    )
}

/// Distinct ports for this test process (the addresses' IPs are not used).
fn ports(count: usize) -> Vec<u16> {
    host_loopback_addrs(count)
        .iter()
        .map(|a| a.port())
        .collect()
}

/// Starts `name` in the lab's namespace (or here, without root) with extra `run` arguments.
fn start(lab: &mut Lab, config: &std::path::Path, name: &str, extra: &[&str]) {
    let netns = lab.netns.clone();
    lab.start_in(netns.as_deref(), config, name, extra);
}

/// Starts `name` in namespace `ns`, adopted by the lab; returns once its socket answers.
fn start_in(lab: &mut Lab, ns: &str, config: &std::path::Path, name: &str, extra: &[&str]) {
    lab.start_in(Some(ns), config, name, extra);
}

/// Waits (30 intervals at most) until each (observer, peer) pair is alive with an RTT.
fn wait_alive(lab: &Lab, pairs: &[(&str, &str)]) {
    let ok = wait_until(INTERVAL * 30, || {
        pairs.iter().all(|(me, peer)| lab.alive_with_rtt(me, peer))
    });
    let missing: Vec<_> = pairs
        .iter()
        .filter(|(me, peer)| !lab.alive_with_rtt(me, peer))
        .collect();
    assert!(ok, "not alive with an RTT: {missing:?}\n{}", lab.logs());
}

/// Every pair of distinct `names`, both ways.
fn all_pairs<'a>(names: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    let mut pairs = Vec::new();
    for &a in names {
        for &b in names.iter().filter(|&&b| b != a) {
            pairs.push((a, b));
        }
    }
    pairs
}

/// No address in `status` (the node's JSON status) is an IPv4-mapped one; each peer's
/// `addr` is what the config lists and the node heard it from there (no `seen_addr`).
fn assert_plain(status: &Value, listed: &[(&str, String)]) {
    let text = status.to_string();
    assert!(!text.contains("::ffff:"), "a mapped address shown: {text}");
    for peer in status["peers"].as_array().expect("peers") {
        let name = peer["name"].as_str().expect("a name");
        if let Some((_, want)) = listed.iter().find(|(n, _)| *n == name) {
            assert_eq!(peer["addr"].as_str(), Some(want.as_str()), "{peer}");
        }
    }
    assert_eq!(status["dropped"]["address_not_allowed"], 0, "{text}");
}

#[test]
fn three_nodes_on_the_ipv6_loopback_measure_each_other() {
    let mut lab = Lab::new("ipv6-loopback");
    let p = ports(3);
    let nodes = [("a", "::1", p[0]), ("b", "::1", p[1]), ("c", "::1", p[2])];
    let path = lab.write_config(&config(&nodes, None));
    for (name, _, _) in nodes {
        start(&mut lab, &path, name, &[]);
    }
    wait_alive(&lab, &all_pairs(&["a", "b", "c"]));
    let listed: Vec<(&str, String)> = nodes
        .iter()
        .map(|&(n, _, port)| (n, format!("[::1]:{port}")))
        .collect();
    for (name, _, _) in nodes {
        let status = lab.status(name).expect("status");
        assert_plain(&status, &listed);
        for peer in status["peers"].as_array().unwrap() {
            assert!(peer.get("seen_addr").is_none(), "{peer}");
        }
    }
}

#[test]
fn nodes_bound_to_the_ipv6_wildcard_measure_peers_listed_by_ipv4_address() {
    // The reported bug: bound to [::], every IPv4 peer is heard as ::ffff:127.0.0.1, and
    // must be the peer listed as 127.0.0.1 (accepted without a keyring, shown plain).
    let mut lab = Lab::new("ipv6-mapped");
    let p = ports(3);
    let nodes = [
        ("dual1", "127.0.0.1", p[0]),
        ("dual2", "127.0.0.1", p[1]),
        ("four", "127.0.0.1", p[2]),
    ];
    let path = lab.write_config(&config(&nodes, None));
    start(
        &mut lab,
        &path,
        "dual1",
        &["--bind", &format!("[::]:{}", p[0])],
    );
    start(
        &mut lab,
        &path,
        "dual2",
        &["--bind", &format!("[::]:{}", p[1])],
    );
    start(&mut lab, &path, "four", &[]);
    wait_alive(&lab, &all_pairs(&["dual1", "dual2", "four"]));
    let listed: Vec<(&str, String)> = nodes
        .iter()
        .map(|&(n, h, port)| (n, format!("{h}:{port}")))
        .collect();
    for (name, _, _) in nodes {
        let status = lab.status(name).expect("status");
        assert_plain(&status, &listed);
        for peer in status["peers"].as_array().unwrap() {
            assert!(peer.get("seen_addr").is_none(), "{name}: {peer}");
        }
    }
    // The matrix names the same nodes, and the dual-stack node measured the others.
    let matrix = support::peermesh(&[
        "matrix",
        "--json",
        "--control",
        lab.control("dual1").to_str().unwrap(),
    ]);
    assert_eq!(matrix.code, Some(0), "{matrix:?}");
    assert!(!matrix.stdout.contains("::ffff:"), "{}", matrix.stdout);
}

#[test]
fn a_mixed_mesh_measures_every_path_its_sockets_can_carry() {
    // dual: bound [::], listed by IPv4; dual6: bound [::], listed by IPv6; six: bound to
    // ::1 only; four: bound to 127.0.0.1 only. Sealed with a keyring: a dual-stack node
    // sends to IPv6 peers from ::1, an address they do not list it under.
    let mut lab = Lab::new("ipv6-mixed");
    let key = lab.dir.join("keyring");
    std::fs::write(&key, format!("{KEY}\n")).expect("key file");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let p = ports(4);
    let nodes = [
        ("dual", "127.0.0.1", p[0]),
        ("dual6", "::1", p[1]),
        ("six", "::1", p[2]),
        ("four", "127.0.0.1", p[3]),
    ];
    let path = lab.write_config(&config(&nodes, Some(&key)));
    start(
        &mut lab,
        &path,
        "dual",
        &["--bind", &format!("[::]:{}", p[0])],
    );
    start(
        &mut lab,
        &path,
        "dual6",
        &["--bind", &format!("[::]:{}", p[1])],
    );
    start(&mut lab, &path, "six", &[]);
    start(&mut lab, &path, "four", &[]);

    // Every path whose sender's socket reaches the receiver's family.
    let reachable = [
        ("dual", "dual6"),
        ("dual6", "dual"),
        ("dual", "six"),
        ("six", "dual6"),
        ("dual6", "six"),
        ("dual", "four"),
        ("four", "dual"),
        ("dual6", "four"),
    ];
    wait_alive(&lab, &reachable);
    // An IPv4 socket cannot send to IPv6 peers, nor an IPv6 one bound to ::1 to IPv4 ones.
    for (me, peer) in [
        ("four", "dual6"),
        ("four", "six"),
        ("six", "dual"),
        ("six", "four"),
    ] {
        let row = lab.peer(me, peer).expect("a row");
        assert!(row["rtt_us"].is_null(), "{me} measured {peer}: {row}");
        assert_eq!(row["diagnosis"], "family_mismatch", "{me} of {peer}: {row}");
    }
    let listed: Vec<(&str, String)> = nodes
        .iter()
        .map(|&(n, h, port)| {
            let ip: std::net::IpAddr = h.parse().unwrap();
            (n, SocketAddr::new(ip, port).to_string())
        })
        .collect();
    for (name, _, _) in nodes {
        assert_plain(&lab.status(name).expect("status"), &listed);
    }
    for (me, peer) in reachable {
        let row = lab.peer(me, peer).expect("a row");
        assert_eq!(row["diagnosis"], "ok", "{me} of {peer}: {row}");
    }
    // The failed sends are counted, and each node said at start which peers it cannot reach.
    let four = lab.status("four").unwrap();
    assert!(four["io"]["send_errors"].as_u64() > Some(0), "{four}");
    let log = std::fs::read_to_string(lab.log("four")).unwrap();
    for peer in ["dual6", "six"] {
        assert!(
            log.contains(&format!("peer {peer} at [::1]:")) && log.contains("is IPv6"),
            "{log}"
        );
    }
    assert!(!log.contains("peer dual at"), "dual is reachable: {log}");
    // `peermesh check` says the same before anything starts.
    let check = support::peermesh(&["check", "--config", path.to_str().unwrap(), "--name", "six"]);
    assert_eq!(check.code, Some(0), "{check:?}");
    let warnings: Vec<&str> = check
        .stdout
        .lines()
        .filter(|l| l.starts_with("WARNING: peer"))
        .collect();
    assert_eq!(warnings.len(), 2, "{}", check.stdout);
    assert!(
        warnings.iter().all(|w| w.contains("is IPv4")),
        "{warnings:?}"
    );
    let check = support::peermesh(&[
        "check",
        "--config",
        path.to_str().unwrap(),
        "--name",
        "six",
        "--bind",
        &format!("[::]:{}", p[2]),
    ]);
    assert!(!check.stdout.contains("WARNING"), "{}", check.stdout);
}

/// Runs `ip ARGS`, panicking with the command on failure.
fn ip(args: &[&str]) {
    assert!(sh("ip", args), "ip {} failed", args.join(" "));
}

#[test]
fn a_mesh_over_an_ipv6_only_network_of_namespaces() {
    // A bridge in the lab's namespace and one namespace per node with a veth on it, each
    // with an IPv6 address only (nodad: usable at once). The lab deletes every namespace
    // it records when dropped, a failed assertion included.
    let mut lab = Lab::new("ipv6-netns");
    let Some(bridge) = lab.netns.clone() else {
        eprintln!("skipped: making network namespaces needs root");
        return;
    };
    ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"]);
    ip(&["-n", &bridge, "link", "set", "br0", "up"]);
    let hosts = [
        ("n1", "fd00:14::1"),
        ("n2", "fd00:14::2"),
        ("n3", "fd00:14::3"),
    ];
    let mut namespaces = Vec::new();
    for (i, (name, addr)) in hosts.iter().enumerate() {
        let ns = format!("{bridge}{name}");
        ip(&["netns", "add", &ns]);
        lab.extra_netns.push(ns.clone());
        let port = format!("v{i}");
        ip(&[
            "-n", &bridge, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ]);
        ip(&["-n", &bridge, "link", "set", &port, "master", "br0", "up"]);
        let cidr = format!("{addr}/64");
        ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0", "nodad"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        namespaces.push(ns);
    }
    let nodes: Vec<(&str, &str, u16)> = hosts.iter().map(|&(n, a)| (n, a, 1313)).collect();
    let path = lab.write_config(&config(&nodes, None));
    // n1 on its own address, n2 on the wildcard (dual-stack on a network without IPv4).
    start_in(&mut lab, &namespaces[0], &path, "n1", &[]);
    start_in(
        &mut lab,
        &namespaces[1],
        &path,
        "n2",
        &["--bind", "[::]:1313"],
    );
    start_in(&mut lab, &namespaces[2], &path, "n3", &[]);
    wait_alive(&lab, &all_pairs(&["n1", "n2", "n3"]));
    let listed: Vec<(&str, String)> = hosts
        .iter()
        .map(|&(n, a)| (n, format!("[{a}]:1313")))
        .collect();
    for (name, _) in hosts {
        let status = lab.status(name).expect("status");
        assert_plain(&status, &listed);
        for peer in status["peers"].as_array().unwrap() {
            assert!(peer.get("seen_addr").is_none(), "{name}: {peer}");
        }
    }
}

#[test]
fn host_names_that_resolve_to_ipv6_addresses_are_reached_there() {
    // Each node sees a hosts file of its own (a private mount over /etc/hosts, inside the
    // lab's namespace) where the mesh's names have IPv6 addresses only.
    let mut lab = Lab::new("ipv6-names");
    let Some(ns) = lab.netns.clone() else {
        eprintln!("skipped: a private /etc/hosts needs root");
        return;
    };
    let hosts = lab.dir.join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost\n::1 six-a.peermesh.test\n::1 six-b.peermesh.test six-c.peermesh.test\n",
    )
    .expect("hosts file");
    let p = ports(3);
    let nodes = [
        ("a", "six-a.peermesh.test", p[0]),
        ("b", "six-b.peermesh.test", p[1]),
        ("c", "six-c.peermesh.test", p[2]),
    ];
    let path = lab.write_config(&config(&nodes, None));
    let with_hosts = |command: String| {
        format!(
            "mount --bind '{}' /etc/hosts && exec {command}",
            hosts.display()
        )
    };
    for (name, _, _) in nodes {
        let script = with_hosts(format!(
            "'{}' run --config '{}' --name {name} --control '{}'",
            support::BIN,
            path.display(),
            lab.control(name).display()
        ));
        // `unshare` (no --fork) and `exec` replace the process: the lab kills the node.
        let child = lab.spawn(Some(&ns), "unshare", &["-m", "sh", "-c", &script], name);
        lab.adopt(name, child);
        lab.wait_for_socket(name);
    }
    wait_alive(&lab, &all_pairs(&["a", "b", "c"]));
    let listed: Vec<(&str, String)> = nodes
        .iter()
        .map(|&(n, _, port)| (n, format!("[::1]:{port}")))
        .collect();
    for (name, _, _) in nodes {
        assert_plain(&lab.status(name).expect("status"), &listed);
    }
    // `peermesh check` resolves the names the same way and lists the IPv6 addresses.
    let script = with_hosts(format!(
        "'{}' check --config '{}' --name a",
        support::BIN,
        path.display()
    ));
    let check = support::run_bounded(
        std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "unshare", "-m", "sh", "-c", &script]),
        Duration::from_secs(10),
    );
    assert_eq!(check.code, Some(0), "{check:?}");
    assert!(
        check.stdout.contains(&format!("binds: udp [::1]:{}", p[0])),
        "{check:?}"
    );
    assert!(
        check.stdout.contains(&format!("[::1]:{}", p[2])),
        "{check:?}"
    );
    assert!(!check.stdout.contains("WARNING"), "{check:?}");
}
