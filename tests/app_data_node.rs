//! Application data through real `peermesh run` processes and the command line: `watch`,
//! `send --confirm`, `tag`, `nearest` through a delay relay, and the control socket under
//! bad requests and a watcher that never reads. Nodes run on the host's loopback
//! (addresses of their own per test process); every wait is bounded, and everything a test
//! started is killed when it ends.

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{config_for, host_loopback_addrs, peermesh, wait_until, Lab, Ran, BIN};

const WAIT: Duration = Duration::from_secs(10);

/// A lab with `names` running on the host's loopback, every node alive with an RTT at
/// every other.
fn mesh(test: &str, names: &[&str]) -> (Lab, std::path::PathBuf) {
    let mut lab = Lab::new(test);
    let addrs = host_loopback_addrs(names.len());
    let nodes: Vec<(&str, std::net::SocketAddr)> =
        names.iter().copied().zip(addrs.iter().copied()).collect();
    let config = lab.write_config(&config_for(&nodes, 300, 500));
    for name in names {
        lab.start_here(&config, name);
    }
    wait_all_alive(&lab, names);
    (lab, config)
}

fn wait_all_alive(lab: &Lab, names: &[&str]) {
    let all = wait_until(WAIT, || {
        names.iter().all(|a| {
            names
                .iter()
                .filter(|b| *b != a)
                .all(|b| lab.alive_with_rtt(a, b))
        })
    });
    assert!(all, "not all alive\n{}", lab.logs());
}

fn control(lab: &Lab, name: &str) -> String {
    lab.control(name).display().to_string()
}

/// `peermesh ARGS --control NAME's socket`.
fn at(lab: &Lab, name: &str, args: &[&str]) -> Ran {
    let socket = control(lab, name);
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--control", &socket]);
    peermesh(&all)
}

/// `peermesh watch --json` on a node, its lines sent to the channel as they come.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Watch {
    fn start(lab: &Lab, name: &str) -> Watch {
        let mut child = Command::new(BIN)
            .args(["watch", "--json", "--control", &control(lab, name)])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value: Value = serde_json::from_str(&line).expect("a JSON line");
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Watch {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a record that `matches`, and returns it.
    fn expect(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        match self.within(WAIT, matches) {
            Some(found) => found,
            None => panic!("no {what} record within {WAIT:?}; saw {:#?}", self.seen),
        }
    }

    /// The first record that `matches`, waiting at most `limit` for it.
    fn within(&mut self, limit: Duration, matches: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + limit;
        if let Some(found) = self.seen.iter().find(|v| matches(v)) {
            return Some(found.clone());
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let value = self.lines.recv_timeout(left).ok()?;
            self.seen.push(value.clone());
            if matches(&value) {
                return Some(value);
            }
        }
        None
    }

    /// Waits (bounded) until the watch runs: `peer` sets a tag until the watch reports it
    /// (one set before the watch began is not reported, so each try sets a new value).
    fn wait_started(&mut self, lab: &Lab, peer: &str) {
        for n in 0..10 {
            let ran = at(lab, peer, &["tag", "set", &format!("watch={n}")]);
            assert_eq!(ran.code, Some(0), "{ran:?}");
            let value = n.to_string();
            let seen = self.within(Duration::from_secs(1), |v| {
                event_of(v, "tags", peer) && v["tags"]["watch"] == value.as_str()
            });
            if seen.is_some() {
                return;
            }
        }
        panic!("the watch never started; saw {:#?}", self.seen);
    }

    /// Ctrl-C: the watch ends with exit 0.
    fn interrupt(mut self) {
        assert!(support::sh("kill", &["-INT", &self.child.id().to_string()]));
        let ok = wait_until(WAIT, || matches!(self.child.try_wait(), Ok(Some(_))));
        assert!(ok, "watch did not stop on SIGINT");
        let status = self.child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{status:?}");
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn event_of(value: &Value, event: &str, peer: &str) -> bool {
    value["event"] == event && value["peer"] == peer
}

#[test]
fn watch_shows_a_restart_a_tag_change_and_a_confirmed_message() {
    let (mut lab, config) = mesh("appwatch", &["a", "b", "c"]);
    let mut watch = Watch::start(&lab, "a");
    watch.wait_started(&lab, "b");

    lab.signal("c", "KILL");
    let down = watch.expect("down of c", |v| event_of(v, "down", "c"));
    assert!(
        down["time_ms"].as_u64().unwrap() > 1_600_000_000_000,
        "{down}"
    );
    lab.start_here(&config, "c");
    let restarted = watch.expect("restarted of c", |v| event_of(v, "restarted", "c"));
    assert_eq!(
        restarted["incarnation"].as_str().map(str::len),
        Some(16),
        "{restarted}"
    );
    watch.expect("up of c", |v| event_of(v, "up", "c"));

    let ran = at(&lab, "b", &["tag", "set", "role=db", "zone=eu-1"]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let tags = watch.expect("tags of b", |v| {
        event_of(v, "tags", "b") && v["tags"]["zone"] == "eu-1"
    });
    assert_eq!(tags["tags"]["role"], "db", "{tags}");

    let ran = at(&lab, "b", &["send", "--confirm", "--json", "a", "hello a"]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let sent: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(sent, serde_json::json!({"delivered":["a"],"failed":[]}));
    let message = watch.expect("message from b", |v| event_of(v, "message", "b"));
    assert_eq!(message["data"], "hello a", "{message}");

    // Bytes that are not UTF-8 arrive as base64 (from standard input here).
    let mut send = Command::new(BIN)
        .args(["send", "--control", &control(&lab, "b"), "a"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    send.stdin
        .take()
        .unwrap()
        .write_all(&[0xff, 0x00, 0x01])
        .unwrap();
    let ok = wait_until(WAIT, || matches!(send.try_wait(), Ok(Some(_))));
    assert!(ok && send.wait().unwrap().success());
    watch.expect("binary message", |v| {
        event_of(v, "message", "b") && v["data_b64"] == "/wAB"
    });
    watch.interrupt();
}

/// A mesh of a, b and c with c killed, and `send --confirm --json TARGET DATA` from a: it
/// exits 1 and its report is `want`.
fn send_confirm_with_c_killed(lab_name: &str, target: &str, want: Value) -> (Lab, Ran) {
    let (lab, _) = mesh(lab_name, &["a", "b", "c"]);
    lab.signal("c", "KILL");
    let ran = at(
        &lab,
        "a",
        &[
            "send",
            "--confirm",
            "--timeout",
            "600",
            "--json",
            target,
            "to it",
        ],
    );
    assert_eq!(ran.code, Some(1), "{ran:?}");
    let report: Value =
        serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("{e}: {ran:?}"));
    assert_eq!(report, want, "{ran:?}");
    (lab, ran)
}

#[test]
fn send_confirm_to_a_killed_node_exits_1_and_names_it() {
    let want = serde_json::json!({"delivered":[],"failed":["c"]});
    let (lab, ran) = send_confirm_with_c_killed("appsendfail", "c", want);
    assert!(ran.stderr.contains("not delivered to c"), "{ran:?}");
    let ran = at(
        &lab,
        "a",
        &["send", "--confirm", "--timeout", "400", "b", "x"],
    );
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (Some(0), "delivered to b\n"),
        "{ran:?}"
    );
    // A client that closes its sending side after the request still gets the answer.
    let mut stream = UnixStream::connect(lab.control("a")).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(b"{\"v\":1,\"cmd\":\"send\",\"to\":\"b\",\"data\":\"x\",\"confirm\":true}\n")
        .unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let reply: Value = serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{e}: {reply:?}"));
    assert_eq!(
        reply["sent"]["delivered"],
        serde_json::json!(["b"]),
        "{reply}"
    );
    // Best effort is sent, whatever becomes of it.
    let ran = at(&lab, "a", &["send", "b", "fire and forget"]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(ran.stdout, "sent to b\n");
}

#[test]
fn tag_set_shows_in_every_other_node_status_and_the_tags_file_keeps_it() {
    let (mut lab, config) = mesh("apptags", &["a", "b", "c"]);
    let ran = at(&lab, "a", &["tag", "set", "role=web", "zone=eu-1"]);
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (Some(0), "role=web\nzone=eu-1\n")
    );
    let ran = at(&lab, "a", &["tag", "rm", "zone"]);
    assert_eq!(ran.stdout, "role=web\n", "{ran:?}");
    for observer in ["b", "c"] {
        let seen = wait_until(WAIT, || {
            lab.peer(observer, "a")
                .is_some_and(|p| p["tags"] == serde_json::json!({"role":"web"}))
        });
        assert!(
            seen,
            "{observer}: {:?}\n{}",
            lab.peer(observer, "a"),
            lab.logs()
        );
    }
    assert_eq!(
        lab.status("a").unwrap()["tags"],
        serde_json::json!({"role":"web"})
    );
    let table = at(&lab, "b", &["status"]);
    assert!(table.stdout.contains("role=web"), "{table:?}");
    let ran = at(&lab, "a", &["tag", "--json"]);
    assert_eq!(ran.stdout, "{\"role\":\"web\"}\n");
    // Bad usage: exit 2, and the node is not asked.
    assert_eq!(at(&lab, "a", &["tag", "set", "novalue"]).code, Some(2));
    assert_eq!(at(&lab, "a", &["tag", "set"]).code, Some(2));

    // Without --tags-file a restart loses the change; with it, the change is kept.
    lab.signal("b", "TERM");
    assert_eq!(lab.wait_exit("b", WAIT), Some(0));
    let tags_file = lab.dir.join("b.tags.json");
    let socket = control(&lab, "b");
    let args = [
        "run",
        "--config",
        config.to_str().unwrap(),
        "--name",
        "b",
        "--control",
        &socket,
        "--tags-file",
        tags_file.to_str().unwrap(),
    ];
    let child = lab.spawn(None, BIN, &args, "b");
    lab.adopt("b", child);
    lab.wait_for_socket("b");
    assert_eq!(at(&lab, "b", &["tag"]).stdout, "", "no tags yet");
    assert_eq!(at(&lab, "b", &["tag", "set", "role=db"]).code, Some(0));
    let written: Value = serde_json::from_slice(&std::fs::read(&tags_file).unwrap()).unwrap();
    assert_eq!(written, serde_json::json!({"role":"db"}));
    lab.signal("b", "TERM");
    assert_eq!(lab.wait_exit("b", WAIT), Some(0));
    let child = lab.spawn(None, BIN, &args, "b");
    lab.adopt("b", child);
    lab.wait_for_socket("b");
    assert_eq!(at(&lab, "b", &["tag"]).stdout, "role=db\n");
    let seen = wait_until(WAIT, || {
        lab.peer("a", "b")
            .is_some_and(|p| p["tags"] == serde_json::json!({"role":"db"}))
    });
    assert!(seen, "{:?}", lab.peer("a", "b"));
}

#[test]
fn nearest_through_a_delay_relay_picks_the_near_node() {
    let names = ["here", "near", "far", "farther"];
    let one_way_ms = |from: &str, to: &str| -> u64 {
        match (from, to) {
            ("here", "near") | ("near", "here") => 2,
            ("here", _) | (_, "here") => 20,
            _ => 1,
        }
    };
    let mut lab = Lab::new("appnearest");
    let addrs = host_loopback_addrs(2 * names.len());
    let (listen, real) = addrs.split_at(names.len());
    let nodes: Vec<(&str, std::net::SocketAddr)> =
        names.iter().copied().zip(listen.iter().copied()).collect();
    let config = lab.write_config(&config_for(&nodes, 600, 1000));
    let mut relay_args: Vec<String> = vec!["--secs".into(), "60".into()];
    for (i, a) in names.iter().enumerate() {
        relay_args.push("--node".into());
        relay_args.push(format!("{a},{},{}", listen[i], real[i]));
        for b in names.iter().filter(|b| *b != a) {
            relay_args.push("--path".into());
            relay_args.push(format!("{a},{b},{}", one_way_ms(a, b)));
        }
    }
    let relay_args: Vec<&str> = relay_args.iter().map(String::as_str).collect();
    let relay = support::tool("peermesh-relay");
    let child = lab.spawn(None, relay.to_str().unwrap(), &relay_args, "relay");
    lab.adopt("relay", child);
    for (i, name) in names.iter().enumerate() {
        let bind = real[i].to_string();
        lab.start_here_with(&config, name, &["--bind", &bind]);
    }
    let measured = wait_until(Duration::from_secs(15), || {
        names[1..].iter().all(|p| lab.alive_with_rtt("here", p))
    });
    assert!(measured, "{:?}\n{}", lab.status("here"), lab.logs());
    for name in ["near", "far", "farther"] {
        assert_eq!(at(&lab, name, &["tag", "set", "role=db"]).code, Some(0));
    }
    // The tags reach `here`, and then `near` is the one.
    let tagged = wait_until(WAIT, || {
        names[1..].iter().all(|p| {
            lab.peer("here", p)
                .is_some_and(|v| v["tags"]["role"] == "db")
        })
    });
    assert!(tagged, "{:?}", lab.status("here"));
    let ran = at(&lab, "here", &["nearest", "--tag", "role=db"]);
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (Some(0), "near\n"),
        "{ran:?}"
    );
    let ran = at(&lab, "here", &["nearest", "--json"]);
    let json: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(json["nodes"], serde_json::json!(["near"]), "{json}");
    let rtt = json["rtt_us"].as_f64().unwrap();
    assert!((3_500.0..30_000.0).contains(&rtt), "{json}");
    let ran = at(&lab, "here", &["nearest", "--tag", "role=cache"]);
    assert_eq!((ran.code, ran.stdout.as_str()), (Some(1), ""), "{ran:?}");
}

/// One raw request line to a node's control socket, and its whole answer.
fn raw(path: &Path, line: &[u8]) -> Value {
    let mut stream = UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let _ = stream.write_all(line);
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert!(reply.ends_with('\n'), "{reply:?}");
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{e}: {reply:?}"))
}

fn refused_with(reply: &Value, says: &str) -> bool {
    reply["ok"] == false && reply["error"].as_str().is_some_and(|e| e.contains(says))
}

#[test]
fn bad_requests_get_errors_and_a_watcher_that_never_reads_does_not_stall_the_node() {
    let (lab, _) = mesh("appbad", &["a", "b"]);
    let path = lab.control("a");
    let oversize = format!(
        "{{\"v\":1,\"cmd\":\"send\",\"to\":\"b\",\"data\":\"{}\"}}\n",
        "x".repeat(100 * 1024)
    );
    let reply = raw(&path, oversize.as_bytes());
    assert!(
        refused_with(&reply, "request longer than 1024 bytes"),
        "{reply}"
    );
    let big = format!(
        "{{\"v\":1,\"cmd\":\"send\",\"to\":\"b\",\"data\":\"{}\"}}\n",
        "x".repeat(65_537)
    );
    assert!(refused_with(&raw(&path, big.as_bytes()), "65537 bytes"));
    let bad_b64 = br#"{"v":1,"cmd":"send","to":"b","data_b64":"%%%"}
"#;
    assert!(refused_with(&raw(&path, bad_b64), "not standard base64"));
    let unknown = br#"{"v":1,"cmd":"send","to":"nobody","data":"x","confirm":true}
"#;
    assert!(refused_with(&raw(&path, unknown), "no peer \"nobody\""));
    let unknown = br#"{"v":1,"cmd":"query","peers":["nobody"],"data":"x"}
"#;
    assert!(refused_with(&raw(&path, unknown), "no peer \"nobody\""));
    let bad_tag = br#"{"v":1,"cmd":"tags","set":{"k":"v"},"rm":["k"]}
"#;
    assert!(refused_with(&raw(&path, bad_tag), "both set and removed"));
    // From the command line: too long a message is bad usage (exit 2), an unknown peer a
    // refusal (exit 1).
    let long = "y".repeat(65_537);
    let ran = at(&lab, "a", &["send", "b", &long]);
    assert_eq!(ran.code, Some(2), "{ran:?}");
    assert!(ran.stderr.contains("65536"), "{ran:?}");
    let ran = at(&lab, "a", &["send", "nobody", "x"]);
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(ran.stderr.contains("no peer \"nobody\""), "{ran:?}");

    // A watcher that never reads, while b sends a's way more than its backlog holds.
    let mut stuck = UnixStream::connect(&path).unwrap();
    stuck.write_all(b"{\"v\":1,\"cmd\":\"watch\"}\n").unwrap();
    assert_eq!(at(&lab, "a", &["status", "--json"]).code, Some(0));
    let payload = "z".repeat(60_000);
    let started = Instant::now();
    for i in 0..30 {
        let ran = at(&lab, "b", &["send", "--confirm", "a", &payload]);
        assert_eq!(ran.code, Some(0), "message {i}: {ran:?}");
    }
    // The node went on answering meanwhile, at once.
    let asked = Instant::now();
    assert_eq!(at(&lab, "a", &["status", "--json"]).code, Some(0));
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // It reads now: what was kept, then one overflow record for what was dropped.
    stuck.set_read_timeout(Some(WAIT)).unwrap();
    let mut reader = BufReader::new(stuck);
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert_eq!(first, "{\"v\":1,\"ok\":true,\"watch\":true}\n");
    let mut messages = 0;
    let overflow = loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "the watch ended without an overflow record");
        let record: Value = serde_json::from_str(&line).unwrap();
        if record["event"] == "overflow" {
            break record;
        }
        if record["event"] == "message" {
            messages += 1;
        }
    };
    let dropped = overflow["dropped"].as_u64().unwrap();
    assert!(
        dropped > 0 && messages > 0,
        "{overflow} after {messages} messages"
    );
    assert!(messages + dropped >= 30, "{messages} + {dropped}");
}

/// `send --confirm --all` with one target killed: the other confirms, the dead one fails.
#[test]
fn send_confirm_to_all_names_the_killed_node() {
    let want = serde_json::json!({"delivered":["b"],"failed":["c"]});
    send_confirm_with_c_killed("appsendall", "--all", want);
}

#[test]
fn query_reaches_every_matching_peer_and_names_who_did_not_answer() {
    let (lab, _) = mesh("appquery", &["a", "b", "c"]);
    assert_eq!(at(&lab, "b", &["tag", "set", "role=web"]).code, Some(0));
    let tagged = wait_until(WAIT, || {
        lab.peer("a", "b")
            .is_some_and(|p| p["tags"]["role"] == "web")
    });
    assert!(tagged);
    let mut watch_b = Watch::start(&lab, "b");
    watch_b.wait_started(&lab, "c");
    // Nobody answers queries here (no handler runs): every target acknowledges, none
    // responds, and the command says so with exit 1.
    let ran = at(
        &lab,
        "a",
        &[
            "query",
            "--tag",
            "role=web",
            "--timeout",
            "500",
            "--json",
            "uptime?",
        ],
    );
    assert_eq!(ran.code, Some(1), "{ran:?}");
    let report: Value =
        serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("{e}: {ran:?}"));
    assert_eq!(report["acks"], serde_json::json!(["b"]), "{report}");
    assert_eq!(report["missing"], serde_json::json!(["b"]), "{report}");
    assert_eq!(report["responses"], serde_json::json!([]), "{report}");
    assert!(ran.stderr.contains("no response from b"), "{ran:?}");
    let query = watch_b.expect("query at b", |v| event_of(v, "query", "a"));
    assert_eq!(query["data"], "uptime?", "{query}");
    assert_eq!(query["timeout_ms"], 500, "{query}");
}

/// The embed example (`examples/embed.rs`), which answers every query, next to the test's
/// own binaries; `make test` builds it (`cargo build --examples`).
fn embed_binary() -> std::path::PathBuf {
    let path = Path::new(BIN).with_file_name("examples").join("embed");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --examples`",
        path.display()
    );
    path
}

#[test]
fn a_query_prints_each_response_with_its_node_and_rtt() {
    let mut lab = Lab::new("appanswer");
    let addrs = host_loopback_addrs(4);
    let nodes = [("a", addrs[0]), ("b", addrs[1]), ("e", addrs[2])];
    let config = lab.write_config(&config_for(&nodes, 300, 500));
    lab.start_here(&config, "a");
    lab.start_here(&config, "b");
    let socket = control(&lab, "e");
    let echo = addrs[3].to_string();
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--name",
        "e",
        "--echo",
        &echo,
        "--control",
        &socket,
    ];
    let embed = embed_binary();
    let child = lab.spawn(None, embed.to_str().unwrap(), &args, "e");
    lab.adopt("e", child);
    lab.wait_for_socket("e");
    wait_all_alive(&lab, &["a", "b", "e"]);
    let ran = at(&lab, "a", &["query", "--timeout", "500", "--json", "what?"]);
    assert_eq!(ran.code, Some(1), "b has nobody to answer: {ran:?}");
    let report: Value =
        serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("{e}: {ran:?}"));
    let responses = report["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 1, "{report}");
    assert_eq!(responses[0]["node"], "e");
    let data = responses[0]["data"].as_str().unwrap();
    assert!(data.starts_with("e: echoing for 0 clients"), "{report}");
    assert!(
        responses[0]["rtt_us"].as_f64().is_some_and(|r| r > 0.0),
        "{report}"
    );
    assert!(responses[0].get("error").is_none(), "{report}");
    let mut acks: Vec<&str> = report["acks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    acks.sort_unstable();
    assert_eq!(acks, ["b", "e"], "{report}");
    assert_eq!(report["missing"], serde_json::json!(["b"]), "{report}");
    // The plain form: one line per response with its node and RTT.
    let ran = at(
        &lab,
        "a",
        &["query", "--peer", "e", "--timeout", "500", "hi"],
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.starts_with("e ("), "{ran:?}");
    assert!(
        ran.stdout
            .contains(" ms): e: echoing for 0 clients; asked \"hi\""),
        "{ran:?}"
    );
}

#[test]
fn a_query_is_answered_by_a_handler_script_on_three_nodes() {
    let mut lab = Lab::new("apphandler");
    let names = ["a", "b", "c", "d"];
    let addrs = host_loopback_addrs(names.len());
    let nodes: Vec<(&str, std::net::SocketAddr)> =
        names.iter().copied().zip(addrs.iter().copied()).collect();
    let config = lab.write_config(&config_for(&nodes, 300, 500));
    let script = lab.dir.join("handler.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n\
         [ \"$PEERMESH_EVENT\" = query ] || exit 0\n\
         question=$(cat)\n\
         if [ \"$question\" = fail ]; then echo \"$PEERMESH_NODE refuses\" >&2; exit 3; fi\n\
         echo \"$PEERMESH_NODE heard $PEERMESH_PEER ask $question\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    lab.start_here(&config, "a");
    for name in &names[1..] {
        lab.start_here_with(&config, name, &["--handler", script.to_str().unwrap()]);
    }
    wait_all_alive(&lab, &names);
    let ran = at(
        &lab,
        "a",
        &["query", "--timeout", "3000", "--json", "uptime"],
    );
    assert_eq!(ran.code, Some(0), "{ran:?}\n{}", lab.logs());
    let report: Value =
        serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("{e}: {ran:?}"));
    let mut answers: Vec<(String, String)> = report["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(r["rtt_us"].as_f64().is_some(), "{r}");
            (
                r["node"].as_str().unwrap().to_owned(),
                r["data"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    answers.sort();
    let expected: Vec<(String, String)> = ["b", "c", "d"]
        .iter()
        .map(|n| (n.to_string(), format!("{n} heard a ask uptime\n")))
        .collect();
    assert_eq!(answers, expected, "{report}");
    assert_eq!(report["missing"], serde_json::json!([]), "{report}");
    // An error response: the handler's exit status, its stderr as the text.
    let ran = at(&lab, "a", &["query", "--peer", "c", "--json", "fail"]);
    let report: Value =
        serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("{e}: {ran:?}"));
    let response = &report["responses"][0];
    assert_eq!(response["error"], true, "{report}");
    assert!(
        response["data"].as_str().unwrap().contains("c refuses"),
        "{report}"
    );
}

/// A program reading `watch --json` answers a query with `peermesh respond`, as an event
/// handler would, from the `peer` and `query` of the record; a second answer is refused.
#[test]
fn a_watcher_answers_a_query_with_respond() {
    let (lab, _) = mesh("apprespond", &["a", "b", "c"]);
    let mut watch_b = Watch::start(&lab, "b");
    watch_b.wait_started(&lab, "c");
    let asker = Command::new(BIN)
        .args([
            "query",
            "--peer",
            "b",
            "--timeout",
            "5000",
            "--json",
            "--control",
            &control(&lab, "a"),
            "who are you?",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let asked = watch_b.expect("query", |v| event_of(v, "query", "a"));
    assert_eq!(asked["data"], "who are you?", "{asked}");
    let number = asked["query"].to_string();
    let ran = at(&lab, "b", &["respond", "a", &number, "b, by respond"]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let again = at(&lab, "b", &["respond", "a", &number, "twice"]);
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(again.stderr.contains("no such query"), "{again:?}");
    let out = asker.wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["responses"][0]["node"], "b", "{report}");
    assert_eq!(report["responses"][0]["data"], "b, by respond", "{report}");
    assert_eq!(report["missing"], serde_json::json!([]), "{report}");
    // A peer that is none, and a query that was never asked, are refused too.
    let stranger = at(&lab, "b", &["respond", "nobody", "1", "x"]);
    assert_eq!(stranger.code, Some(1), "{stranger:?}");
    let unasked = at(&lab, "b", &["respond", "--error", "a", "999", "x"]);
    assert_eq!(unasked.code, Some(1), "{unasked:?}");
}

#[test]
fn nearest_in_sampled_mode_measures_candidates_it_does_not_probe_now() {
    let names: Vec<String> = (0..12).map(|i| format!("s{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut lab = Lab::new("appnearestsampled");
    let addrs = host_loopback_addrs(names.len());
    let nodes: Vec<(&str, std::net::SocketAddr)> =
        names.iter().copied().zip(addrs.iter().copied()).collect();
    // Fanout 2 over 11 peers: a node holds RTT windows for about 7 of them at a time.
    let config = config_for(&nodes, 300, 500).replace(
        "    nodes: [",
        "    probe_mode: \"sampled\",\n    probe_fanout: 2,\n    nodes: [",
    );
    let config = lab.write_config(&config);
    for name in &names {
        lab.start_here(&config, name);
    }
    let tagged = ["s3", "s7"];
    for name in tagged {
        assert_eq!(at(&lab, name, &["tag", "set", "role=db"]).code, Some(0));
    }
    let known = wait_until(Duration::from_secs(20), || {
        tagged.iter().all(|p| {
            lab.peer("s0", p)
                .is_some_and(|v| v["state"] == "alive" && v["tags"]["role"] == "db")
        })
    });
    assert!(known, "{:?}\n{}", lab.status("s0"), lab.logs());
    // Ask at moments when s0 measures neither candidate now: the answer is still a
    // measured one (before, it was "none").
    let unmeasured = |status: &Value| {
        status["peers"].as_array().is_some_and(|peers| {
            peers
                .iter()
                .filter(|p| tagged.iter().any(|t| p["name"] == *t))
                .all(|p| p["rtt_us"]["p50"].as_f64().is_none())
        })
    };
    let mut asked = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while asked < 3 && Instant::now() < deadline {
        if !lab.status("s0").is_some_and(|s| unmeasured(&s)) {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        asked += 1;
        let ran = at(&lab, "s0", &["nearest", "--tag", "role=db", "--json"]);
        assert_eq!(ran.code, Some(0), "{ran:?}");
        let json: Value = serde_json::from_str(&ran.stdout).unwrap();
        let nodes = json["nodes"].as_array().cloned().unwrap_or_default();
        assert!(!nodes.is_empty(), "{json}");
        assert!(
            nodes.iter().all(|n| tagged.iter().any(|t| n == t)),
            "{json}"
        );
        assert!(json["rtt_us"].as_f64().is_some_and(|us| us > 0.0), "{json}");
    }
    println!("asked {asked} times with no candidate measured");
    assert!(
        asked >= 1,
        "s0 always measured a candidate: {:?}",
        lab.status("s0")
    );
}
