//! The operator's first hour (issue 12): a health check for monitoring, a filter by state,
//! no RTT shown for a peer that does not answer, `top` that outlives a restart of its node,
//! the control socket and the config found without flags, a socket shared with a group,
//! `make run`'s script stopped by Ctrl-C, `keygen` that parses its arguments, `check` that
//! says what it decided, and `NO_COLOR`.
//!
//! Every wait is bounded; nodes listen on loopback only (in the lab's network namespace, or
//! on the host's 127/8 for the processes the test must reach from its own namespace).

mod support;

use serde_json::Value;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{
    config_for, host_loopback_addrs, loopback_config, peermesh, run_bounded, wait_until, Lab, Ran,
    BIN,
};

const SUSPECT_MS: u64 = 300;
const DEAD_MS: u64 = 800;

fn assert_exit(ran: &Ran, code: i32) {
    assert_eq!(ran.code, Some(code), "{ran:?}");
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// A lab running `names` (all of the config), every one alive to every other.
fn mesh(test: &str, names: &[&str]) -> (Lab, std::path::PathBuf) {
    let mut lab = Lab::new(test);
    let config = lab.write_config(&loopback_config(names, SUSPECT_MS, DEAD_MS));
    for name in names {
        lab.start(&config, name);
    }
    let all_alive = |lab: &Lab| {
        names.iter().all(|a| {
            names
                .iter()
                .filter(|b| b != &a)
                .all(|b| lab.alive_with_rtt(a, b))
        })
    };
    assert!(
        wait_until(Duration::from_secs(5), || all_alive(&lab)),
        "the mesh never came up\n{}",
        lab.logs()
    );
    (lab, config)
}

/// A child's stdout, collected by a thread as it comes.
fn collect_stdout(child: &mut Child) -> Arc<Mutex<String>> {
    let seen = Arc::new(Mutex::new(String::new()));
    let mut pipe = child.stdout.take().expect("piped stdout");
    let sink = Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = sink.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });
    seen
}

fn text(seen: &Arc<Mutex<String>>) -> String {
    seen.lock().map(|s| s.clone()).unwrap_or_default()
}

/// Waits (bounded) for `child` to exit; kills it and fails if it does not.
fn wait_child(child: &mut Child, limit: Duration) -> Option<i32> {
    let mut code = None;
    let exited = wait_until(limit, || match child.try_wait() {
        Ok(Some(status)) => {
            code = status.code();
            true
        }
        _ => false,
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        panic!("still running after {limit:?}");
    }
    code
}

fn signal(pid: u32, signal: &str) {
    assert!(support::sh(
        "kill",
        &[&format!("-{signal}"), &pid.to_string()]
    ));
}

/// Mount namespaces, chown and setpriv need root: those tests say so and pass without it.
fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

// ---- status --check and --state (item 7) ----------------------------------------------------

#[test]
fn status_check_is_one_nagios_line_with_exit_0_1_or_3() {
    let (lab, _) = mesh("check", &["alpha", "beta", "gamma"]);
    let control = lab.control("alpha");
    let ran = peermesh(&["status", "--check", "--control", path_str(&control)]);
    assert_exit(&ran, 0);
    assert_eq!(ran.stdout, "PEERMESH OK - 2/2 peers alive\n", "{ran:?}");
    assert!(ran.stderr.is_empty(), "{ran:?}");

    lab.signal("gamma", "KILL");
    assert!(
        wait_until(Duration::from_secs(5), || lab
            .state("alpha", "gamma")
            .is_some_and(|s| s == "dead")),
        "{}",
        lab.logs()
    );
    let ran = peermesh(&["status", "--check", "--control", path_str(&control)]);
    assert_exit(&ran, 1);
    assert_eq!(
        ran.stdout, "PEERMESH WARNING - 1/2 peers not alive: gamma dead\n",
        "{ran:?}"
    );

    let missing = lab.dir.join("missing.sock");
    let ran = peermesh(&["status", "--check", "--control", path_str(&missing)]);
    assert_exit(&ran, 3);
    assert_eq!(
        ran.stdout,
        format!(
            "PEERMESH UNKNOWN - no peermesh node at {} (is it running?)\n",
            missing.display()
        ),
        "{ran:?}"
    );
    assert!(ran.stderr.is_empty(), "{ran:?}");

    // --check is a mode of its own: not with --json or --state.
    for extra in ["--json", "--state=dead"] {
        let ran = peermesh(&["status", "--check", extra, "--control", path_str(&control)]);
        assert_exit(&ran, 2);
        assert!(ran.stderr.contains("not both"), "{ran:?}");
    }
}

#[test]
fn a_dead_peer_shows_no_rtt_and_the_state_filter_picks_it_out() {
    let (lab, _) = mesh("filter", &["alpha", "beta", "gamma"]);
    let control = lab.control("alpha");
    lab.signal("gamma", "KILL");
    assert!(
        wait_until(Duration::from_secs(5), || lab
            .state("alpha", "gamma")
            .is_some_and(|s| s == "dead")),
        "{}",
        lab.logs()
    );
    // Item 2: its last RTT is not shown as if it were healthy.
    let ran = peermesh(&["status", "--json", "--control", path_str(&control)]);
    assert_exit(&ran, 0);
    let json: Value = serde_json::from_str(&ran.stdout).expect("JSON");
    let peers = json["peers"].as_array().expect("peers");
    let gamma = peers.iter().find(|p| p["name"] == "gamma").expect("gamma");
    assert_eq!(gamma["state"], "dead", "{json}");
    assert!(
        gamma["rtt_us"].is_null() && gamma["jitter_us"].is_null(),
        "{json}"
    );
    let beta = peers.iter().find(|p| p["name"] == "beta").expect("beta");
    assert!(beta["rtt_us"]["last"].is_f64(), "{json}");

    // The table: dashes for it, and with --state only it.
    let ran = peermesh(&[
        "status",
        "--state",
        "dead,unreachable",
        "--control",
        path_str(&control),
    ]);
    assert_exit(&ran, 0);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert!(
        lines[0].contains("1/2 peers alive")
            && lines[0].ends_with("showing 1 peer: dead, unreachable"),
        "{ran:?}"
    );
    assert_eq!(lines.len(), 3, "{ran:?}");
    let cells: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(cells[..3], ["gamma", "127.0.0.4:1313", "dead"], "{ran:?}");
    assert_eq!(cells[3..7], ["-", "-", "-", "-"], "{ran:?}");

    // --json with --state: the same contract, fewer peers.
    let ran = peermesh(&[
        "status",
        "--json",
        "--state=alive",
        "--control",
        path_str(&control),
    ]);
    assert_exit(&ran, 0);
    let json: Value = serde_json::from_str(&ran.stdout).expect("JSON");
    let names: Vec<&str> = json["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["beta"], "{json}");

    let ran = peermesh(&["status", "--state", "gone", "--control", path_str(&control)]);
    assert_exit(&ran, 2);
    assert!(
        ran.stderr
            .starts_with("error: --state wants one of unknown, alive"),
        "{ran:?}"
    );
}

// ---- top through a restart (item 4) ---------------------------------------------------------

#[test]
fn top_reconnects_while_its_node_restarts_and_ctrl_c_ends_it_with_0() {
    let (mut lab, config) = mesh("top", &["alpha", "beta"]);
    let control = lab.control("alpha");
    let mut top = Command::new(BIN)
        .args(["top", "--control", path_str(&control)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn top");
    let seen = collect_stdout(&mut top);
    let tables = |s: &str| s.matches("node alpha (incarnation").count();
    assert!(
        wait_until(Duration::from_secs(5), || tables(&text(&seen)) >= 1),
        "{}",
        text(&seen)
    );

    lab.signal("alpha", "TERM");
    assert_eq!(lab.wait_exit("alpha", Duration::from_secs(5)), Some(0));
    let retry = format!("reconnecting to {} (no peermesh node at", control.display());
    assert!(
        wait_until(Duration::from_secs(5), || text(&seen).contains(&retry)),
        "{}",
        text(&seen)
    );
    // It keeps retrying, a line each second, and stays up.
    assert!(
        wait_until(Duration::from_secs(5), || text(&seen)
            .matches(&retry)
            .count()
            >= 2),
        "{}",
        text(&seen)
    );
    assert_eq!(top.try_wait().ok().flatten(), None, "top exited");

    lab.start(&config, "alpha");
    let after = |s: &str| {
        s.rsplit_once(&retry)
            .is_some_and(|(_, rest)| tables(rest) >= 1)
    };
    assert!(
        wait_until(Duration::from_secs(5), || after(&text(&seen))),
        "no table after the restart:\n{}",
        text(&seen)
    );

    signal(top.id(), "INT");
    assert_eq!(wait_child(&mut top, Duration::from_secs(5)), Some(0));
    let mut stderr = String::new();
    if let Some(mut pipe) = top.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(stderr.is_empty(), "{stderr:?}");
    assert!(
        !text(&seen).contains('\x1b'),
        "escapes in a pipe: {:?}",
        text(&seen)
    );
}

#[test]
fn top_honours_ctrl_c_within_two_seconds_while_its_node_is_stopped() {
    let (lab, _) = mesh("tophung", &["alpha", "beta"]);
    let control = lab.control("alpha");
    let mut top = Command::new(BIN)
        .args(["top", "--control", path_str(&control)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn top");
    let seen = collect_stdout(&mut top);
    assert!(
        wait_until(Duration::from_secs(5), || text(&seen)
            .contains("node alpha (incarnation")),
        "{}",
        text(&seen)
    );
    // Stopped, not dead: the socket still accepts, nothing answers.
    lab.signal("alpha", "STOP");
    let hung = format!(
        "reconnecting to {} (the node at {} is busy: no answer within 1 s",
        control.display(),
        control.display()
    );
    let shown = wait_until(Duration::from_secs(5), || text(&seen).contains(&hung));
    // Ctrl-C while top waits for the stopped node again.
    let asked = std::time::Instant::now();
    signal(top.id(), "INT");
    let code = wait_child(&mut top, Duration::from_secs(5));
    let took = asked.elapsed();
    lab.signal("alpha", "CONT");
    assert!(
        shown,
        "no reconnecting line for a hung node:\n{}",
        text(&seen)
    );
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(2), "Ctrl-C took {took:?}");
}

#[test]
fn top_stops_at_once_on_a_socket_this_user_may_not_open() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    // A root node's socket is 0600: nobody (uid 65534) gets EACCES, which no restart cures.
    let (lab, _) = mesh("topdenied", &["alpha", "beta"]);
    fs::set_permissions(&lab.dir, fs::Permissions::from_mode(0o755)).unwrap();
    let control = lab.control("alpha");
    assert_eq!(fs::metadata(&control).unwrap().mode() & 0o777, 0o600);
    let ran = run_bounded(
        Command::new("setpriv").args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "top",
            "--control",
            path_str(&control),
        ]),
        Duration::from_secs(10),
    );
    assert_exit(&ran, 1);
    assert!(ran.stderr.contains("Permission denied"), "{ran:?}");
    assert!(!ran.stdout.contains("reconnecting"), "{ran:?}");
}

/// `command` (one simple command) on a pseudo-terminal of its own, by `script`; the
/// terminal's output is collected. What the test writes to a piped `stdin` is typed on
/// that terminal, so `^C` is a real Ctrl-C (SIGINT to the foreground group).
///
/// `script` starts `$SHELL -c command`; the command is `exec`ed so that shell is gone. Left
/// in place, a `dash` (`/bin/sh`, what `script` uses when `SHELL` is unset, as under CI)
/// would share the terminal's group, die of the Ctrl-C and make `script` exit 130 whatever
/// the command did.
fn on_a_terminal(command: &str, env: &[(&str, &str)], stdin: Stdio) -> (Child, Arc<Mutex<String>>) {
    let mut cmd = Command::new("script");
    cmd.args(["-qfec", &format!("exec {command}"), "/dev/null"])
        .env("SHELL", "/bin/sh")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn script");
    let seen = collect_stdout(&mut child);
    (child, seen)
}

/// The pid of the process whose command line starts with `prefix` (bounded wait).
fn pid_of(prefix: &str) -> u32 {
    let mut pid = None;
    let found = wait_until(Duration::from_secs(5), || {
        let ran = run_bounded(
            Command::new("pgrep").args(["-f", &format!("^{prefix}")]),
            Duration::from_secs(5),
        );
        pid = ran
            .stdout
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok());
        pid.is_some()
    });
    assert!(found, "no process {prefix:?}");
    pid.unwrap_or_default()
}

#[test]
fn top_on_a_terminal_uses_the_alternate_screen_and_restores_it_on_ctrl_c() {
    let (lab, _) = mesh("toptty", &["alpha", "beta"]);
    let control = lab.control("alpha");
    let command = format!("{BIN} top --control {}", control.display());
    let (mut script, seen) = on_a_terminal(&command, &[("NO_COLOR", "")], Stdio::null());
    assert!(
        wait_until(Duration::from_secs(5), || text(&seen)
            .matches("PEER ")
            .count()
            >= 2),
        "{:?}",
        text(&seen)
    );
    signal(pid_of(&command), "INT");
    assert_eq!(wait_child(&mut script, Duration::from_secs(5)), Some(0));
    let out = text(&seen);
    assert!(out.starts_with("\x1b[?1049h"), "{out:?}");
    assert!(out.ends_with("\x1b[?1049l"), "{out:?}");
    assert!(
        out.contains("\x1b[32malive"),
        "colours on a terminal: {out:?}"
    );
    let reach = format!(
        "from another terminal: {BIN} status --control {}",
        control.display()
    );
    assert!(out.contains(&reach), "{out:?}");
    // The widths hold from frame to frame: a column may widen, never narrow.
    let headers: Vec<&str> = out
        .split("\x1b[K")
        .filter_map(|l| l.trim_start_matches("\r\n").split("PEER ").nth(1))
        .collect();
    assert!(headers.len() >= 2, "{out:?}");
    let starts = |h: &str| -> Vec<usize> {
        ["STATE", "RTT LAST", "AVG", "P99", "JITTER", "LOSS", "HEARD"]
            .iter()
            .map(|c| h.find(c).unwrap_or_default())
            .collect()
    };
    for w in headers.windows(2) {
        let (before, after) = (starts(w[0]), starts(w[1]));
        assert!(
            before.iter().zip(&after).all(|(b, a)| a >= b),
            "a column narrowed: {headers:?}"
        );
    }
}

#[test]
fn no_color_turns_the_colours_of_a_terminal_off() {
    let (lab, _) = mesh("nocolor", &["alpha", "beta"]);
    let command = format!("{BIN} status --control {}", lab.control("alpha").display());
    for (value, coloured) in [("", true), ("1", false), ("false", false)] {
        let (mut script, seen) = on_a_terminal(&command, &[("NO_COLOR", value)], Stdio::null());
        assert_eq!(wait_child(&mut script, Duration::from_secs(10)), Some(0));
        let out = text(&seen);
        assert!(out.contains("alive"), "{out:?}");
        assert_eq!(
            out.contains('\x1b'),
            coloured,
            "NO_COLOR={value:?}: {out:?}"
        );
    }
}

// ---- Finding the socket and the config (item 6) ---------------------------------------------

#[test]
fn peermesh_control_names_the_socket_and_flags_beat_it() {
    let (lab, _) = mesh("env", &["alpha", "beta"]);
    let control = path_str(&lab.control("alpha")).to_owned();
    let missing = path_str(&lab.dir.join("missing.sock")).to_owned();
    // Run where there is no peers.ron: only the environment says where the node is.
    let bare = lab.dir.join("bare");
    fs::create_dir_all(&bare).unwrap();
    let status = |args: &[&str], env: &str| {
        run_bounded(
            Command::new(BIN)
                .args(args)
                .current_dir(&bare)
                .env("PEERMESH_CONTROL", env),
            Duration::from_secs(10),
        )
    };
    let ran = status(&["status", "--check"], &control);
    assert_exit(&ran, 0);
    assert_eq!(ran.stdout, "PEERMESH OK - 1/1 peers alive\n", "{ran:?}");
    for command in ["status", "matrix"] {
        let ran = status(&[command, "--json"], &control);
        assert_exit(&ran, 0);
        let json: Value = serde_json::from_str(&ran.stdout).expect("JSON");
        assert_eq!(json["node"], "alpha", "{command}: {json}");
    }
    let ran = status(&["top", "--count", "1"], &control);
    assert_exit(&ran, 0);
    assert!(ran.stdout.starts_with("node alpha"), "{ran:?}");
    // --control beats it.
    let ran = status(&["status", "--control", &missing], &control);
    assert_exit(&ran, 1);
    assert!(
        ran.stderr
            .contains(&format!("no peermesh node at {missing}")),
        "{ran:?}"
    );
    let ran = status(&["status", "--control", &control], &missing);
    assert_exit(&ran, 0);
    // So does --config: the config is read (and this machine, no node of it, not found).
    let config = path_str(&lab.dir.join("peers.ron")).to_owned();
    let ran = status(&["status", "--config", &config], &control);
    assert_exit(&ran, 2);
    assert!(ran.stderr.contains("hostname"), "{ran:?}");
}

/// `script` (sh) in a mount namespace of its own where `/run` and `/etc` are private: `/run`
/// a fresh tmpfs, `/etc` an overlay whose changes go to `upper` (in the lab), with a tmpfs
/// over `/etc/peermesh`. The host's real `/run` and `/etc` are never written.
fn in_private_run_and_etc(lab: &Lab, script: &str, cwd: &Path) -> Ran {
    let upper = lab.dir.join("etc-upper");
    let work = lab.dir.join("etc-work");
    fs::create_dir_all(&upper).unwrap();
    fs::create_dir_all(&work).unwrap();
    let setup = format!(
        "mount -t overlay peermesh-test -o lowerdir=/etc,upperdir={},workdir={} /etc && \
         mkdir -p /etc/peermesh && mount -t tmpfs peermesh-test /etc/peermesh && \
         mount -t tmpfs peermesh-test /run && mkdir /run/peermesh && {script}",
        upper.display(),
        work.display()
    );
    run_bounded(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &setup])
            .current_dir(cwd)
            .env_remove("PEERMESH_CONTROL"),
        Duration::from_secs(20),
    )
}

#[test]
fn the_units_socket_in_run_and_the_config_in_etc_are_found_without_flags() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut lab = Lab::new("fallbacks");
    let addrs = host_loopback_addrs(2);
    let config = lab.write_config(&config_for(
        &[("alpha", addrs[0]), ("beta", addrs[1])],
        SUSPECT_MS,
        DEAD_MS,
    ));
    lab.start_here(&config, "alpha");
    let socket = lab.control("alpha");
    let bare = lab.dir.join("bare");
    fs::create_dir_all(&bare).unwrap();
    // /run/peermesh/peermesh.sock (a link to the lab's socket) is asked when it exists.
    let ran = in_private_run_and_etc(
        &lab,
        &format!(
            "ln -s {} /run/peermesh/peermesh.sock && {BIN} status --check; echo \"rc=$?\"; \
             rm /run/peermesh/peermesh.sock && {BIN} status --check; echo \"rc=$?\"",
            socket.display()
        ),
        &bare,
    );
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{ran:?}");
    assert!(
        lines[0].starts_with("PEERMESH WARNING - 1/1 peers not alive: beta "),
        "{ran:?}"
    );
    assert_eq!(lines[1], "rc=1", "{ran:?}");
    // Without it (and without ./peers.ron or /etc/peermesh/peers.ron): the config is
    // looked for, and its absence named.
    assert!(
        lines[2].starts_with("PEERMESH UNKNOWN - peers.ron: "),
        "{ran:?}"
    );
    assert_eq!(lines[3], "rc=3", "{ran:?}");

    // /etc/peermesh/peers.ron is read when ./peers.ron is absent.
    let ran = in_private_run_and_etc(
        &lab,
        &format!(
            "cp {} /etc/peermesh/peers.ron && {BIN} check --name beta",
            config.display()
        ),
        &bare,
    );
    assert_exit(&ran, 0);
    assert!(
        ran.stdout
            .starts_with("config /etc/peermesh/peers.ron is valid\nthis node: beta"),
        "{ran:?}"
    );
    // ./peers.ron, when present, comes first.
    fs::write(bare.join("peers.ron"), "(nodes: [])").unwrap();
    let ran = in_private_run_and_etc(
        &lab,
        &format!(
            "cp {} /etc/peermesh/peers.ron && {BIN} check --name beta",
            config.display()
        ),
        &bare,
    );
    assert_exit(&ran, 2);
    assert!(ran.stderr.starts_with("error: peers.ron:"), "{ran:?}");
    assert!(ran.stdout.is_empty(), "{ran:?}");
}

#[test]
fn control_group_gives_the_socket_to_a_group_whose_members_may_ask() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut lab = Lab::new("group");
    let config = lab.write_config(&loopback_config(&["alpha", "beta"], SUSPECT_MS, DEAD_MS));
    let control = lab.control("alpha");
    fs::set_permissions(&lab.dir, fs::Permissions::from_mode(0o755)).unwrap();
    let gid = "4321";
    let child = lab.spawn(
        lab.netns.clone().as_deref(),
        BIN,
        &[
            "run",
            "--config",
            path_str(&config),
            "--name",
            "alpha",
            "--control",
            path_str(&control),
            "--control-group",
            gid,
        ],
        "alpha",
    );
    lab.adopt("alpha", child);
    lab.wait_for_socket("alpha");
    let meta = fs::metadata(&control).unwrap();
    assert_eq!(meta.gid(), 4321);
    assert_eq!(meta.mode() & 0o777, 0o660, "{:o}", meta.mode());
    // nobody, in that group only, may ask; in another group, not.
    let as_nobody = |group: &str| {
        run_bounded(
            Command::new("setpriv").args([
                "--reuid=65534",
                &format!("--regid={group}"),
                "--clear-groups",
                BIN,
                "status",
                "--check",
                "--control",
                path_str(&control),
            ]),
            Duration::from_secs(10),
        )
    };
    let ran = as_nobody(gid);
    assert!(ran.stdout.starts_with("PEERMESH "), "{ran:?}");
    assert!(!ran.stdout.contains("UNKNOWN"), "{ran:?}");
    let ran = as_nobody("4322");
    assert_exit(&ran, 3);
    assert!(ran.stdout.contains("Permission denied"), "{ran:?}");

    let ran = peermesh(&[
        "run",
        "--config",
        path_str(&config),
        "--name",
        "beta",
        "--control-group",
        "no-such-group-here",
    ]);
    assert_exit(&ran, 2);
    assert!(
        ran.stderr
            .contains("--control-group: no group \"no-such-group-here\""),
        "{ran:?}"
    );
}

#[test]
fn as_the_unit_runs_it_the_service_group_gets_the_socket_without_a_chown() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    // The unit's way: the service user (here uid 65534) runs with the ops group (4321) as
    // its own group, in a /run/peermesh-like directory (service user, ops group, 0750).
    let mut lab = Lab::new("unitgroup");
    let config = lab.write_config(&loopback_config(&["alpha", "beta"], SUSPECT_MS, DEAD_MS));
    fs::set_permissions(&lab.dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    let run = lab.dir.join("run");
    fs::create_dir(&run).unwrap();
    std::os::unix::fs::chown(&run, Some(65534), Some(4321)).unwrap();
    fs::set_permissions(&run, fs::Permissions::from_mode(0o750)).unwrap();
    let socket = run.join("peermesh.sock");
    let args = [
        "--reuid=65534",
        "--regid=4321",
        "--clear-groups",
        BIN,
        "run",
        "--config",
        path_str(&config),
        "--name",
        "alpha",
        "--control",
        path_str(&socket),
        "--control-group",
        "4321",
    ];
    let child = lab.spawn(lab.netns.clone().as_deref(), "setpriv", &args, "alpha");
    lab.adopt("alpha", child);
    assert!(
        wait_until(Duration::from_secs(10), || socket.exists()),
        "{}",
        lab.logs()
    );
    let meta = fs::metadata(&socket).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 4321));
    assert_eq!(meta.mode() & 0o777, 0o660, "{:o}", meta.mode());
    // Another user of the ops group may ask (the directory's owner serves it: believed).
    let ran = run_bounded(
        Command::new("setpriv").args([
            "--reuid=65533",
            "--regid=4321",
            "--clear-groups",
            BIN,
            "status",
            "--json",
            "--control",
            path_str(&socket),
        ]),
        Duration::from_secs(10),
    );
    assert_exit(&ran, 0);
    let json: Value = serde_json::from_str(&ran.stdout).expect("JSON");
    assert_eq!(json["node"], "alpha", "{json}");
}

/// The system calls `peermesh run ARGS` makes of `calls` (strace's lines), from its start
/// until its control socket is up and it is stopped by SIGTERM.
fn syscalls_of_run(lab: &mut Lab, config: &Path, extra: &[&str], calls: &str) -> String {
    let control = lab.control("alpha");
    let trace = lab.dir.join("strace.log");
    let _ = fs::remove_file(&trace);
    let mut args = vec![
        "-f",
        "-qq",
        "-o",
        path_str(&trace),
        "-e",
        calls,
        BIN,
        "run",
        "--config",
        path_str(config),
        "--name",
        "alpha",
        "--control",
        path_str(&control),
    ];
    args.extend_from_slice(extra);
    let mut strace = lab.spawn(lab.netns.clone().as_deref(), "strace", &args, "alpha");
    let up = wait_until(Duration::from_secs(10), || lab.status("alpha").is_some());
    if !up {
        let _ = strace.kill();
        let _ = strace.wait();
        panic!("the traced node never answered\n{}", lab.logs());
    }
    signal(
        pid_of(&format!("{BIN} run --config {}", config.display())),
        "TERM",
    );
    // strace exits with its tracee, having written the whole trace.
    assert_eq!(wait_child(&mut strace, Duration::from_secs(10)), Some(0));
    fs::read_to_string(&trace).expect("strace's output")
}

#[test]
fn run_makes_no_chown_that_the_units_system_call_filter_would_refuse() {
    // docs/peermesh.service has `SystemCallFilter=~@privileged` with EPERM: a chown of any
    // kind, even `chown(path, -1, -1)`, fails there and the node exits 1 at start.
    if !support::sh("strace", &["-V"]) {
        panic!("strace is not installed: `apt-get install strace` (.ci/run installs it)");
    }
    let mut lab = Lab::new("unitfilter");
    let config = lab.write_config(&loopback_config(&["alpha", "beta"], SUSPECT_MS, DEAD_MS));
    let own_gid = nix::unistd::getegid().as_raw().to_string();
    let calls = "trace=bind,chown,fchown,lchown,fchownat";
    // Plain, and as the unit runs it: `--control-group` naming the process's own group.
    for extra in [&[][..], &["--control-group", own_gid.as_str()][..]] {
        let trace = syscalls_of_run(&mut lab, &config, extra, calls);
        let socket = format!("sun_path=\"{}", lab.control("alpha").display());
        assert!(
            trace
                .lines()
                .any(|l| l.contains("bind(") && l.contains(&socket)),
            "strace saw no bind of the control socket ({extra:?}):\n{trace}"
        );
        // "PID name(args) = result": the name of the call.
        let call = |l: &str| {
            l.split_once(' ')
                .and_then(|(_, rest)| rest.split_once('('))
                .map(|(name, _)| name.to_owned())
        };
        let chowns: Vec<&str> = trace
            .lines()
            .filter(|l| call(l).is_some_and(|c| c.ends_with("chown") || c == "fchownat"))
            .collect();
        assert!(chowns.is_empty(), "{extra:?}: {chowns:?}");
    }
}

// ---- make run's script (item 5) -------------------------------------------------------------

#[test]
fn the_local_mesh_script_prints_the_commands_and_exits_0_on_ctrl_c() {
    let lab = Lab::new("localmesh");
    let addrs = host_loopback_addrs(3);
    let names = ["alpha", "beta", "gamma"];
    let nodes: Vec<(&str, std::net::SocketAddr)> =
        names.iter().copied().zip(addrs.iter().copied()).collect();
    let config = lab.write_config(&config_for(&nodes, SUSPECT_MS, DEAD_MS));
    // The default sockets land in a runtime directory of the test's own, the logs in its
    // TMPDIR: nothing of it outside the lab.
    let runtime = lab.dir.join("xdg");
    let tmp = lab.dir.join("tmp");
    fs::create_dir_all(&runtime).unwrap();
    fs::create_dir_all(&tmp).unwrap();
    fs::set_permissions(&runtime, fs::Permissions::from_mode(0o700)).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/local-mesh.sh");
    let mut child = Command::new(&script)
        .env("PEERMESH_CONFIG", &config)
        .env("PEERMESH_BIN", BIN)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn the script");
    let seen = collect_stdout(&mut child);
    let mut errors = child.stderr.take().expect("stderr");
    let err_text = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = errors.read_to_string(&mut s);
        s
    });
    assert!(
        wait_until(Duration::from_secs(20), || text(&seen).contains("PEER ")),
        "{}",
        text(&seen)
    );
    let out = text(&seen);
    for command in ["status", "matrix", "top"] {
        let line = format!("  {BIN} {command} --name alpha\n");
        assert!(out.contains(&line), "{line:?} missing:\n{out}");
    }
    // Those commands work from another terminal (the same environment).
    let ran = run_bounded(
        Command::new(BIN)
            .args(["status", "--json", "--name", "beta"])
            .env("XDG_RUNTIME_DIR", &runtime),
        Duration::from_secs(10),
    );
    assert_exit(&ran, 0);
    let sockets: Vec<String> = fs::read_dir(&runtime)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    assert_eq!(sockets.len(), 3, "{sockets:?}");

    // Ctrl-C: the terminal signals the whole foreground process group. Sent by bash's
    // builtin kill: procps-ng 4.0's kill(1) takes `-INT -PGID` for `-1`, every process.
    let pgid = child.id().to_string();
    assert!(support::sh(
        "bash",
        &["-c", "kill -s INT -- \"-$1\"", "bash", &pgid]
    ));
    assert_eq!(wait_child(&mut child, Duration::from_secs(10)), Some(0));
    let stderr = err_text.join().unwrap_or_default();
    let out = text(&seen);
    for says in [&out, &stderr] {
        assert!(!says.to_lowercase().contains("error"), "{out}\n{stderr}");
    }
    assert!(
        out.contains("\nstopped 3 nodes; their logs are in "),
        "{out}"
    );
    let left: Vec<_> = fs::read_dir(&runtime).unwrap().collect();
    assert!(left.is_empty(), "sockets left: {left:?}");
    // Every node said goodbye and stopped.
    let logs = fs::read_dir(&tmp)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("peermesh-local.")
        })
        .expect("the script's log directory")
        .path();
    for name in names {
        let log = fs::read_to_string(logs.join(format!("{name}.log"))).unwrap_or_default();
        assert!(
            log.contains(&format!("node {name} stopped")),
            "{name}: {log}"
        );
    }
}

#[test]
fn on_a_terminal_ctrl_c_ends_the_local_mesh_with_0_and_its_commands_still_on_the_screen() {
    let lab = Lab::new("localmeshtty");
    let addrs = host_loopback_addrs(2);
    let config = lab.write_config(&config_for(
        &[("alpha", addrs[0]), ("beta", addrs[1])],
        SUSPECT_MS,
        DEAD_MS,
    ));
    let runtime = lab.dir.join("xdg");
    let tmp = lab.dir.join("tmp");
    fs::create_dir_all(&runtime).unwrap();
    fs::create_dir_all(&tmp).unwrap();
    fs::set_permissions(&runtime, fs::Permissions::from_mode(0o700)).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/local-mesh.sh");
    let command = format!(
        "env XDG_RUNTIME_DIR={} TMPDIR={} PEERMESH_CONFIG={} PEERMESH_BIN={BIN} {}",
        runtime.display(),
        tmp.display(),
        config.display(),
        script.display()
    );
    let (mut child, seen) = on_a_terminal(&command, &[], Stdio::piped());
    assert!(
        wait_until(Duration::from_secs(20), || text(&seen)
            .matches("PEER ")
            .count()
            >= 2),
        "{:?}",
        text(&seen)
    );
    {
        use std::io::Write;
        let mut tty = child.stdin.take().expect("stdin");
        tty.write_all(b"\x03").expect("type ^C");
        // Kept open until the end: a closed stdin would end `script` by itself.
        assert_eq!(wait_child(&mut child, Duration::from_secs(10)), Some(0));
    }
    let out = text(&seen);
    let (before, rest) = out.split_once("\x1b[?1049h").expect("the alternate screen");
    for command in ["status", "matrix"] {
        let line = format!("  {BIN} {command} --name alpha\r\n");
        assert!(before.contains(&line), "{line:?} missing:\n{before}");
    }
    // After the alternate screen, only the script's last line: the screen before is back.
    let (_, after) = rest
        .rsplit_once("\x1b[?1049l")
        .expect("the screen restored");
    assert!(
        after.starts_with("stopped 2 nodes; their logs are in ") && after.lines().count() == 1,
        "{after:?}"
    );
    assert!(!out.to_lowercase().contains("error"), "{out:?}");
    let left: Vec<_> = fs::read_dir(&runtime).unwrap().collect();
    assert!(left.is_empty(), "sockets left: {left:?}");
}

// ---- keygen parses its arguments (item 8) ---------------------------------------------------

#[test]
fn keygen_help_prints_help_and_other_arguments_are_refused() {
    for help in ["--help", "-h"] {
        let ran = peermesh(&["keygen", help]);
        assert_exit(&ran, 0);
        assert!(ran.stdout.starts_with("usage: peermesh keygen"), "{ran:?}");
        let hex_line = ran
            .stdout
            .lines()
            .any(|l| l.len() == 64 && l.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!hex_line, "a key was printed: {ran:?}");
    }
    for (arg, says) in [
        ("extra", "error: keygen does not take \"extra\""),
        ("--foo", "error: keygen does not take \"--foo\""),
    ] {
        let ran = peermesh(&["keygen", arg]);
        assert_exit(&ran, 2);
        assert!(ran.stdout.is_empty(), "{ran:?}");
        assert!(ran.stderr.starts_with(says), "{ran:?}");
        assert!(ran.stderr.contains("usage: peermesh keygen"), "{ran:?}");
    }
    let ran = peermesh(&["keygen"]);
    assert_exit(&ran, 0);
    assert_eq!(ran.stdout.trim().len(), 64, "{ran:?}");
}

// ---- check says what it decided, and nothing before an error (item 10) ----------------------

#[test]
fn check_says_what_it_binds_counts_keys_and_fails_before_saying_valid() {
    let lab = Lab::new("checkwords");
    let key = "ab".repeat(32);
    let keyring = lab.dir.join("keyring");
    fs::write(&keyring, format!("{key}\n")).unwrap();
    fs::set_permissions(&keyring, fs::Permissions::from_mode(0o600)).unwrap();
    let text = |host: &str, keyring: &str| {
        format!(
            "(\n    keyring: \"{keyring}\",\n    nodes: [\n        (name: \"alpha\", host: \"{host}\", port: 24999),\n        (name: \"beta\", host: \"127.0.0.3\"),\n    ],\n)\n"
        )
    };
    let config = lab.dir.join("here.ron");
    fs::write(&config, text("127.0.0.1", "keyring")).unwrap();
    let ran = peermesh(&["check", "--config", path_str(&config), "--name", "alpha"]);
    assert_exit(&ran, 0);
    assert!(
        ran.stdout.contains("\nbinds: udp 127.0.0.1:24999\n"),
        "{ran:?}"
    );
    assert!(
        ran.stdout.contains("\nkeyring: 1 key, sealing with key "),
        "{ran:?}"
    );
    assert!(!ran.stdout.contains("wildcard"), "{ran:?}");

    // An address that is not this machine's (TEST-NET-1): the wildcard, and why.
    let config = lab.dir.join("nat.ron");
    fs::write(&config, text("192.0.2.1", "keyring")).unwrap();
    let ran = peermesh(&["check", "--config", path_str(&config), "--name", "alpha"]);
    assert_exit(&ran, 0);
    assert!(
        ran.stdout
            .contains("\nbinds: udp 0.0.0.0:24999 (192.0.2.1 is not an address of this machine)\n"),
        "{ran:?}"
    );

    // A missing key file: only the error, exit 2.
    let config = lab.dir.join("nokey.ron");
    fs::write(&config, text("127.0.0.1", "missing-keyring")).unwrap();
    let ran = peermesh(&["check", "--config", path_str(&config), "--name", "alpha"]);
    assert_exit(&ran, 2);
    assert!(ran.stdout.is_empty(), "{ran:?}");
    assert!(
        ran.stderr.starts_with("error: ") && ran.stderr.contains("missing-keyring"),
        "{ran:?}"
    );
}

// ---- The README's Rust version (item 10) ----------------------------------------------------

#[test]
fn the_readme_names_the_rust_version_of_cargo_toml() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"'))
        .expect("rust-version in Cargo.toml");
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    let named: Vec<&str> = readme
        .match_indices("Rust 1.")
        .map(|(i, _)| {
            let rest = &readme[i + 5..];
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            rest[..end].trim_end_matches('.')
        })
        .collect();
    assert!(!named.is_empty(), "the README names no Rust version");
    assert!(
        named.iter().all(|v| *v == version),
        "README: {named:?}, Cargo.toml: {version}"
    );
}
