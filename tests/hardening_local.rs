//! Hardening of what is local to a machine, tried as an attacker or an unlucky operator
//! would: the control socket (what it may replace, whom the client believes, where the
//! default lives), the config and key files (FIFOs, devices, huge files), and the command
//! line (a closed stdout, a busy node). Every process and every wait is bounded.

mod support;

use peermesh::io::control::{self, Answer, ClientError, Request, MAX_CONNECTIONS};

const STATUS: Request = Request::Status {
    json: false,
    color: false,
};
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{loopback_config, peermesh, run_bounded, wait_until, Lab, Ran, BIN};

const INTERVAL: Duration = Duration::from_millis(100);
const KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";

fn assert_exit(ran: &Ran, code: i32) {
    assert_eq!(ran.code, Some(code), "{ran:?}");
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

/// `peermesh ARGS` in the lab's network namespace (or here without one), with `env` set
/// (`None` removes a variable); not waited for.
fn command(lab: &Lab, args: &[&str], env: &[(&str, Option<&str>)]) -> Command {
    let mut cmd = match &lab.netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, BIN]);
            c
        }
        None => Command::new(BIN),
    };
    cmd.args(args).env("RUST_LOG", "debug");
    for (key, value) in env {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    cmd
}

/// Runs `peermesh ARGS` in the lab to its end (bounded by 10 s).
fn run_in(lab: &Lab, args: &[&str], env: &[(&str, Option<&str>)]) -> Ran {
    run_bounded(&mut command(lab, args, env), Duration::from_secs(10))
}

/// Starts a node in the lab, its log in the lab, and leaves it to the lab to stop.
fn start(lab: &mut Lab, name: &str, args: &[&str], env: &[(&str, Option<&str>)]) {
    let log = fs::File::create(lab.log(name)).unwrap();
    let child: Child = command(lab, args, env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    lab.adopt(name, child);
}

fn wait_for(path: &Path, lab: &Lab) {
    assert!(
        wait_until(Duration::from_secs(10), || path.exists()),
        "{} never appeared\n{}",
        path.display(),
        lab.logs()
    );
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A lab with a config of `names` (alpha's peer never runs unless started).
fn lab_with(test: &str, names: &[&str]) -> (Lab, PathBuf) {
    let lab = Lab::new(test);
    let config = lab.write_config(&loopback_config(names, 300, 800));
    (lab, config)
}

// ---- Config and key files: FIFOs, devices, huge files ------------------------------------

#[test]
fn a_fifo_or_a_device_as_config_is_refused_at_once() {
    let lab = Lab::new("fifoconfig");
    let fifo = lab.dir.join("peers.ron");
    mkfifo(&fifo);
    let zero = Path::new("/dev/zero");
    for (path, what) in [(fifo.as_path(), "a FIFO"), (zero, "a character device")] {
        let control = lab.dir.join("never.sock");
        for args in [
            &["check", "--config", path_str(path), "--name", "alpha"][..],
            &["check", "--config", path_str(path)],
            &["run", "--config", path_str(path), "--name", "alpha"],
            &[
                "run",
                "--config",
                path_str(path),
                "--control",
                path_str(&control),
            ],
            &["status", "--config", path_str(path)],
        ] {
            let started = Instant::now();
            let ran = run_in(&lab, args, &[]);
            assert_exit(&ran, 2);
            assert_eq!(
                ran.stderr,
                format!("error: {}: not a regular file ({what})\n", path.display()),
                "{args:?}"
            );
            assert!(started.elapsed() < Duration::from_secs(5), "{args:?}");
        }
    }
}

#[test]
fn a_huge_config_is_refused_by_its_size_without_reading_it() {
    let lab = Lab::new("hugeconfig");
    let sparse = lab.dir.join("sparse.ron");
    fs::File::create(&sparse)
        .unwrap()
        .set_len(50 * 1024 * 1024)
        .unwrap();
    // Just over the limit, with real content: refused too.
    let over = lab.dir.join("over.ron");
    fs::write(&over, vec![b' '; 1024 * 1024 + 1]).unwrap();
    for (path, bytes) in [(&sparse, 52_428_800u64), (&over, 1_048_577)] {
        for command in ["check", "run"] {
            let started = Instant::now();
            let args = [command, "--config", path_str(path), "--name", "alpha"];
            let ran = run_in(&lab, &args, &[]);
            assert_exit(&ran, 2);
            assert_eq!(
                ran.stderr,
                format!(
                    "error: {}: {bytes} bytes, more than the 1048576 a config may have\n",
                    path.display()
                )
            );
            assert!(started.elapsed() < Duration::from_secs(5), "{command}");
        }
    }
}

/// A config for alpha and beta with `keyring: "keyring"`.
fn keyed_config(lab: &Lab) -> PathBuf {
    let text = loopback_config(&["alpha", "beta"], 300, 800).replacen(
        "    nodes:",
        "    keyring: \"keyring\",\n    nodes:",
        1,
    );
    lab.write_config(&text)
}

fn write_keys(path: &Path, text: &str) {
    let _ = fs::remove_file(path);
    fs::write(path, text).unwrap();
    chmod(path, 0o600);
}

#[test]
fn a_bad_key_file_is_refused_at_start() {
    let lab = Lab::new("badkeys");
    let config = keyed_config(&lab);
    let keys = lab.dir.join("keyring");
    let plus = format!("+{}\n", &KEY[1..]);
    let zero = format!("{}\n", "0".repeat(64));
    let big = format!("{KEY}\n{}", "#\n".repeat(40_000));
    let cases = [
        (None, "not a regular file (a FIFO)".to_owned()),
        (
            Some(&plus),
            "keyring:1: not a key: want 64 hex digits".to_owned(),
        ),
        (
            Some(&zero),
            "keyring:1: the all-zero key is a placeholder".to_owned(),
        ),
        (
            Some(&big),
            format!(
                "{} bytes, more than the 65536 a key file may have",
                big.len()
            ),
        ),
    ];
    for (content, says) in cases {
        match content {
            Some(text) => write_keys(&keys, text),
            None => {
                let _ = fs::remove_file(&keys);
                mkfifo(&keys);
            }
        }
        for command in ["check", "run"] {
            let started = Instant::now();
            let control = lab.dir.join("never.sock");
            let mut args = vec![command, "--config", path_str(&config), "--name", "alpha"];
            if command == "run" {
                args.extend(["--control", path_str(&control)]);
            }
            let ran = run_in(&lab, &args, &[]);
            assert_exit(&ran, 2);
            assert!(ran.stderr.contains(&says), "{command}: {:?}", ran.stderr);
            assert!(started.elapsed() < Duration::from_secs(5));
            assert!(!control.exists());
        }
    }
}

#[test]
fn a_key_file_replaced_by_a_fifo_on_sighup_keeps_the_keys_and_the_node_running() {
    let mut lab = Lab::new("fifokeys");
    let config = keyed_config(&lab);
    let keys = lab.dir.join("keyring");
    write_keys(&keys, &format!("{KEY}\n"));
    lab.start(&config, "alpha");
    lab.start(&config, "beta");
    assert!(
        wait_until(INTERVAL * 20, || lab.alive_with_rtt("alpha", "beta")
            && lab.alive_with_rtt("beta", "alpha")),
        "{}",
        lab.logs()
    );
    fs::remove_file(&keys).unwrap();
    mkfifo(&keys);
    lab.signal("alpha", "HUP");
    let warned = format!(
        "reload refused, running on the old config: keyring {}: not a regular file (a FIFO)",
        keys.display()
    );
    assert!(
        wait_until(Duration::from_secs(5), || fs::read_to_string(
            lab.log("alpha")
        )
        .is_ok_and(|log| log.contains(&warned))),
        "{}",
        lab.logs()
    );
    // The node answers at once and heartbeats on with the old key: beta stays alive to it
    // and it to beta, and what it hears of beta keeps coming.
    let received = |lab: &Lab| {
        lab.peer("alpha", "beta")
            .and_then(|p| p["received"].as_u64())
    };
    let before = received(&lab).expect("alpha answers");
    let until = Instant::now() + INTERVAL * 8;
    while Instant::now() < until {
        assert_eq!(lab.state("alpha", "beta").as_deref(), Some("alive"));
        assert_eq!(lab.state("beta", "alpha").as_deref(), Some("alive"));
        std::thread::sleep(INTERVAL / 2);
    }
    assert!(
        received(&lab).is_some_and(|n| n >= before + 4),
        "{}",
        lab.logs()
    );
    let status = lab.status("alpha").unwrap();
    assert_eq!(status["dropped"]["auth_failed"], 0);
}

// ---- Values echoed in errors ---------------------------------------------------------------

#[test]
fn a_very_long_value_is_echoed_clipped() {
    let lab = Lab::new("longvalue");
    let long = "n".repeat(1_000_000);
    let cases = [
        (
            format!("(nodes: [(name: \"{long}\", host: \"127.0.0.2\")])"),
            "is 1000000 bytes long: at most 64",
        ),
        (
            format!("(nodes: [(name: \"a\", host: \"127.0.0.2 {long}\")])"),
            "contains a space",
        ),
        (
            format!("(nodes: [(name: \"a\", {long}: 1)])"),
            "unknown field",
        ),
        (
            format!("(port: \"{long}\", nodes: [(name: \"a\", host: \"h\")])"),
            "wrong type for `port`",
        ),
    ];
    for (text, says) in cases {
        let path = lab.write_config(&text);
        let ran = run_in(&lab, &["check", "--config", path_str(&path)], &[]);
        assert_exit(&ran, 2);
        assert!(ran.stderr.contains(says), "{:?}", ran.stderr);
        assert!(ran.stderr.contains('…'), "{:?}", ran.stderr);
        assert!(
            ran.stderr.len() < 600,
            "{} bytes: {:?}",
            ran.stderr.len(),
            &ran.stderr[..600.min(ran.stderr.len())]
        );
    }
    // A name from the command line is clipped too.
    let path = lab.write_config("(nodes: [(name: \"a\", host: \"127.0.0.2\")])");
    let long_name = "x".repeat(100_000);
    let ran = run_in(
        &lab,
        &["check", "--config", path_str(&path), "--name", &long_name],
        &[],
    );
    assert_exit(&ran, 2);
    assert!(ran.stderr.contains("no node is named \"xxxx"), "{ran:?}");
    assert!(ran.stderr.len() < 600, "{}", ran.stderr.len());
}

// ---- `--control PATH` replaces only a stale socket, and removes only its own ---------------

#[test]
fn run_refuses_a_control_path_that_is_not_a_socket_and_leaves_it_alone() {
    let (lab, config) = lab_with("notasocket", &["alpha", "beta"]);
    let before = fs::read(&config).unwrap();
    let dir = lab.dir.join("a-dir");
    fs::create_dir(&dir).unwrap();
    let fifo = lab.dir.join("a-fifo");
    mkfifo(&fifo);
    let target = lab.dir.join("target.txt");
    fs::write(&target, b"keep me").unwrap();
    let link = lab.dir.join("a-link");
    symlink(&target, &link).unwrap();
    let dangling = lab.dir.join("dangling");
    symlink(lab.dir.join("nowhere.sock"), &dangling).unwrap();
    let cases = [
        (&config, "a regular file"),
        (&dir, "a directory"),
        (&fifo, "a FIFO"),
        (&link, "a symbolic link"),
        (&dangling, "a symbolic link"),
    ];
    for (path, what) in cases {
        let started = Instant::now();
        let args = [
            "run",
            "--config",
            path_str(&config),
            "--name",
            "alpha",
            "--control",
            path_str(path),
        ];
        let ran = run_in(&lab, &args, &[]);
        assert_exit(&ran, 1);
        let says = format!(
            "error: control socket {}: {what} is there, not a socket; refusing to replace it",
            path.display()
        );
        assert!(ran.stderr.contains(&says), "{what}: {:?}", ran.stderr);
        assert!(started.elapsed() < Duration::from_secs(5), "{what}");
        let meta = fs::symlink_metadata(path).expect("still there");
        assert!(!meta.file_type().is_socket(), "{what}");
    }
    // Nothing was touched: the config, the directory, the FIFO, both links and the target.
    assert_eq!(fs::read(&config).unwrap(), before);
    assert!(fs::symlink_metadata(&dir).unwrap().is_dir());
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert_eq!(fs::read_link(&link).unwrap(), target);
    assert_eq!(fs::read(&target).unwrap(), b"keep me");
    assert!(fs::symlink_metadata(&dangling).unwrap().is_symlink());
    // No staging socket was left behind either.
    let left: Vec<_> = fs::read_dir(&lab.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_stale_socket_is_replaced_and_a_swapped_one_is_left_at_exit() {
    let (mut lab, config) = lab_with("stale", &["alpha", "beta"]);
    // A socket file left by a node that died: nobody answers on it.
    // (Its inode is freed once it is removed, so the node's new socket may well reuse it:
    // that it answers is the proof.)
    let stale = lab.control("alpha");
    drop(UnixListener::bind(&stale).unwrap());
    lab.start(&config, "alpha");
    assert!(
        wait_until(Duration::from_secs(5), || lab.status("alpha").is_some()),
        "{}",
        lab.logs()
    );
    assert_eq!(mode(&stale), 0o600);

    // Someone replaces the node's socket with their own: the node must not remove it.
    fs::remove_file(&stale).unwrap();
    let theirs = UnixListener::bind(&stale).unwrap();
    let their_inode = fs::symlink_metadata(&stale).unwrap().ino();
    lab.signal("alpha", "TERM");
    assert_eq!(lab.wait_exit("alpha", Duration::from_secs(5)), Some(0));
    let meta = fs::symlink_metadata(&stale).expect("the replacement survived");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.ino(), their_inode);
    drop(theirs);

    // Its own socket, untouched, it removes at exit.
    lab.start(&config, "beta");
    lab.signal("beta", "TERM");
    assert_eq!(lab.wait_exit("beta", Duration::from_secs(5)), Some(0));
    assert!(!lab.control("beta").exists());
}

#[test]
fn a_control_socket_in_use_is_not_replaced() {
    let (mut lab, config) = lab_with("inuse", &["alpha", "beta"]);
    lab.start(&config, "alpha");
    let path = lab.control("alpha");
    let inode = fs::symlink_metadata(&path).unwrap().ino();
    let args = [
        "run",
        "--config",
        path_str(&config),
        "--name",
        "beta",
        "--control",
        path_str(&path),
    ];
    let ran = run_in(&lab, &args, &[]);
    assert_exit(&ran, 1);
    assert!(
        ran.stderr.contains("is in use by a running node"),
        "{ran:?}"
    );
    assert_eq!(fs::symlink_metadata(&path).unwrap().ino(), inode);
    assert!(lab.status("alpha").is_some());
}

#[test]
fn status_on_a_fifo_or_a_file_finds_no_node_and_touches_neither() {
    let lab = Lab::new("clientnotsock");
    let fifo = lab.dir.join("fifo.sock");
    mkfifo(&fifo);
    let file = lab.dir.join("file.sock");
    fs::write(&file, b"data").unwrap();
    for path in [&fifo, &file] {
        let started = Instant::now();
        let ran = peermesh(&["status", "--control", path_str(path)]);
        assert_exit(&ran, 1);
        let says = format!(
            "error: no peermesh node at {} (is it running?)",
            path.display()
        );
        assert!(ran.stderr.contains(&says), "{ran:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    assert_eq!(fs::read(&file).unwrap(), b"data");
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
}

// ---- Nobody else can pose as the node ------------------------------------------------------

/// Starts node alpha as user `nobody`, listening on `socket` (whose directory nobody may
/// write to), and waits for the socket.
fn start_as_nobody(lab: &mut Lab, config: &Path, socket: &Path) {
    let log = fs::File::create(lab.log("nobody")).unwrap();
    let mut cmd = match &lab.netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "setpriv"]);
            c
        }
        None => Command::new("setpriv"),
    };
    let child = cmd
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", BIN])
        .args(["run", "--config", path_str(config), "--name", "alpha"])
        .args(["--control", path_str(socket)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    lab.adopt("nobody", child);
    wait_for(socket, lab);
    let owner = fs::symlink_metadata(socket).unwrap().uid();
    assert_eq!(owner, 65534, "the socket is nobody's");
}

#[test]
fn status_refuses_a_node_run_by_another_user_and_says_who() {
    if !is_root() {
        eprintln!("skipped: needs root to run a process as nobody");
        return;
    }
    let (mut lab, config) = lab_with("impostor", &["alpha", "beta"]);
    // The lab directory and the config must be readable by nobody.
    chmod(&lab.dir, 0o755);
    chmod(&config, 0o644);
    // A shared sticky directory, as /tmp is: anyone may create a socket in it.
    let shared = lab.dir.join("shared");
    fs::create_dir(&shared).unwrap();
    chmod(&shared, 0o1777);
    let socket = shared.join("alpha.sock");
    start_as_nobody(&mut lab, &config, &socket);

    for args in [
        &["status", "--control", path_str(&socket)][..],
        &["status", "--json", "--control", path_str(&socket)],
        &["matrix", "--control", path_str(&socket)],
        &["top", "--count", "1", "--control", path_str(&socket)],
    ] {
        let ran = peermesh(args);
        assert_exit(&ran, 1);
        let says = format!(
            "error: control socket {} is served by nobody (uid 65534), not by root or by you \
             (uid 0): another user may have put it there",
            socket.display()
        );
        assert!(ran.stderr.contains(&says), "{args:?}: {:?}", ran.stderr);
        assert!(
            ran.stdout.is_empty(),
            "{args:?}: the forged table was shown"
        );
    }
    assert!(matches!(
        control::request(&socket, STATUS),
        Err(ClientError::Untrusted {
            server: 65534,
            me: 0,
            ..
        })
    ));

    // The same socket moved into root's own directory: still nobody's process behind it.
    let roots = lab.dir.join("roots");
    fs::create_dir(&roots).unwrap();
    chmod(&roots, 0o755);
    let moved = roots.join("alpha.sock");
    fs::rename(&socket, &moved).unwrap();
    let ran = peermesh(&["status", "--control", path_str(&moved)]);
    assert_exit(&ran, 1);
    assert!(
        ran.stderr.contains("served by nobody (uid 65534)"),
        "{ran:?}"
    );

    // In a directory that only its owner may write to, the owner is the one who put the
    // socket there: a service user's /run/NAME, as the systemd unit makes. That is trusted.
    let own = lab.dir.join("nobodys");
    fs::create_dir(&own).unwrap();
    chmod(&own, 0o700);
    std::os::unix::fs::chown(&own, Some(65534), Some(65534)).unwrap();
    let theirs = own.join("alpha.sock");
    fs::rename(&moved, &theirs).unwrap();
    let ran = peermesh(&["status", "--control", path_str(&theirs)]);
    assert_exit(&ran, 0);
    assert!(ran.stdout.starts_with("node alpha"), "{ran:?}");
}

#[test]
fn a_control_directory_others_can_write_is_refused_by_node_and_client() {
    let (mut lab, config) = lab_with("openmode", &["alpha", "beta"]);
    let open = lab.dir.join("open");
    fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    let socket = open.join("alpha.sock");
    let args = [
        "run",
        "--config",
        path_str(&config),
        "--name",
        "alpha",
        "--control",
        path_str(&socket),
    ];
    let ran = run_in(&lab, &args, &[]);
    assert_exit(&ran, 1);
    let says = format!(
        "error: control socket directory {}: group or others may write to it (mode 777) and \
         it has no sticky bit",
        open.display()
    );
    assert!(ran.stderr.contains(&says), "{ran:?}");
    assert!(!socket.exists());

    // A sticky one (as /tmp) is accepted: others cannot remove or rename the socket.
    chmod(&open, 0o1777);
    start(&mut lab, "alpha", &args, &[]);
    wait_for(&socket, &lab);
    assert!(wait_until(Duration::from_secs(5), || {
        control::request(&socket, Request::Ping).is_ok_and(|a| a == Answer::Pong)
    }));

    // Made writable afterwards: the client does not trust what is in it any more.
    chmod(&open, 0o777);
    let ran = peermesh(&["status", "--control", path_str(&socket)]);
    assert_exit(&ran, 1);
    assert!(
        ran.stderr.contains(&format!(
            "not trusting directory {}: group or others may write to it (mode 777)",
            open.display()
        )),
        "{ran:?}"
    );
    chmod(&open, 0o1777);
}

// ---- The default path: private, and one per name -------------------------------------------

/// `ARGS` (a program and its arguments) in a mount namespace of its own with a fresh, empty
/// `/tmp`, after the shell commands `setup` ran there: what a node does to its default
/// directory in `/tmp` stays out of the real one. Needs root.
///
/// The real `/tmp` stays visible there as `/mnt` (bound over it in that namespace only), and
/// arguments under `/tmp/` are rewritten to match: the build itself may be under `/tmp`
/// (a CI checkout), and the node must still find its binary and config.
fn with_private_tmp(setup: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    let script = format!(
        "mount --bind /tmp /mnt && mount -t tmpfs -o mode=1777 peermesh-test /tmp && \
         {setup} exec \"$@\""
    );
    cmd.args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"])
        .args(args.iter().map(|a| seen_from_private_tmp(a)));
    cmd
}

/// Where `path` is seen from a process with a private `/tmp` ([`with_private_tmp`]).
fn seen_from_private_tmp(path: &str) -> String {
    match path.strip_prefix("/tmp/") {
        Some(rest) => format!("/mnt/{rest}"),
        None => path.to_owned(),
    }
}

/// `peermesh ARGS` in the lab's network namespace, as a list of words.
fn node_words<'a>(lab: &'a Lab, args: &[&'a str]) -> Vec<&'a str> {
    let mut words = Vec::new();
    if let Some(ns) = &lab.netns {
        words.extend(["ip", "netns", "exec", ns.as_str()]);
    }
    words.push(BIN);
    words.extend(args);
    words
}

/// A config outside `/tmp` (which the node will not see), with alpha and beta.
fn config_outside_tmp(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hardening-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("peers.ron");
    fs::write(&path, loopback_config(&["alpha", "beta"], 300, 800)).unwrap();
    path
}

/// Starts `peermesh ARGS` with a private `/tmp` and returns the path under which the test
/// sees that `/tmp` (through `/proc/PID/root`).
fn start_with_private_tmp(
    lab: &mut Lab,
    name: &str,
    args: &[&str],
    env: &[(&str, Option<&str>)],
) -> PathBuf {
    let log = fs::File::create(lab.log(name)).unwrap();
    let mut cmd = with_private_tmp("", &node_words(lab, args));
    cmd.env("RUST_LOG", "debug")
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    for (key, value) in env {
        match value {
            Some(v) => cmd.env(key, seen_from_private_tmp(v)),
            None => cmd.env_remove(key),
        };
    }
    let child = cmd.spawn().unwrap();
    let root = PathBuf::from(format!("/proc/{}/root/tmp", child.id()));
    lab.adopt(name, child);
    root
}

#[test]
fn the_default_socket_is_in_a_private_0700_directory_not_in_tmp() {
    if !is_root() {
        eprintln!("skipped: needs root for a private /tmp");
        return;
    }
    let mut lab = Lab::new("defaultdir");
    let config = config_outside_tmp("defaultdir");
    let args = ["run", "--config", path_str(&config), "--name", "alpha"];
    let tmp = start_with_private_tmp(&mut lab, "alpha", &args, &[]);
    let uid = nix::unistd::geteuid().as_raw();
    let dir = tmp.join(format!("peermesh-{uid}"));
    let socket = dir.join("alpha.sock");
    wait_for(&socket, &lab);
    let meta = fs::symlink_metadata(&dir).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.uid(), uid);
    assert_eq!(meta.mode() & 0o7777, 0o700);
    assert_eq!(mode(&socket), 0o600);
    assert!(!tmp.join("peermesh-alpha.sock").exists());

    // The client finds it by name, in the same /tmp.
    let pid = lab.pid("alpha").to_string();
    let ran = run_bounded(
        Command::new("nsenter")
            .args([
                "-t",
                &pid,
                "-m",
                &seen_from_private_tmp(BIN),
                "status",
                "--name",
                "ALPHA",
            ])
            .env_remove("XDG_RUNTIME_DIR"),
        Duration::from_secs(10),
    );
    assert_exit(&ran, 0);
    assert!(ran.stdout.starts_with("node alpha "), "{ran:?}");
    lab.signal("alpha", "TERM");
    assert!(wait_until(Duration::from_secs(5), || !socket.exists()));
    assert_eq!(lab.wait_exit("alpha", Duration::from_secs(5)), Some(0));
    let _ = fs::remove_dir_all(config.parent().unwrap());
}

#[test]
fn a_node_that_cannot_start_leaves_no_default_directory_behind() {
    if !is_root() {
        eprintln!("skipped: needs root for a private /tmp");
        return;
    }
    let lab = Lab::new("nodefaultdir");
    let config = config_outside_tmp("nodefaultdir");
    let text = fs::read_to_string(&config).unwrap().replacen(
        "    nodes:",
        "    keyring: \"no-such-keyring\",\n    nodes:",
        1,
    );
    fs::write(&config, text).unwrap();
    // The node fails on its key file, then the shell lists what is in its /tmp.
    let script = format!(
        "{} run --config {} --name alpha; code=$?; ls -A /tmp; exit $code",
        node_words(&lab, &[])
            .iter()
            .map(|w| seen_from_private_tmp(w))
            .collect::<Vec<_>>()
            .join(" "),
        seen_from_private_tmp(path_str(&config))
    );
    let ran = run_bounded(
        with_private_tmp("", &["sh", "-c", &script]).env_remove("XDG_RUNTIME_DIR"),
        Duration::from_secs(10),
    );
    assert_exit(&ran, 2);
    assert!(ran.stderr.contains("no-such-keyring"), "{ran:?}");
    assert_eq!(ran.stdout, "", "left in /tmp");
    let _ = fs::remove_dir_all(config.parent().unwrap());
}

#[test]
fn an_xdg_runtime_dir_is_used_only_when_it_is_ones_own() {
    let mut lab = Lab::new("xdg");
    let config = config_outside_tmp("xdg");
    let xdg = lab.dir.join("xdg");
    fs::create_dir(&xdg).unwrap();
    chmod(&xdg, 0o700);
    let env = [("XDG_RUNTIME_DIR", Some(path_str(&xdg)))];
    let args = ["run", "--config", path_str(&config), "--name", "alpha"];
    start(&mut lab, "alpha", &args, &env);
    let in_xdg = xdg.join("peermesh-alpha.sock");
    wait_for(&in_xdg, &lab);
    let ran = run_bounded(
        Command::new(BIN)
            .args(["status", "--name", "alpha"])
            .env("XDG_RUNTIME_DIR", &xdg),
        Duration::from_secs(10),
    );
    assert_exit(&ran, 0);
    lab.signal("alpha", "TERM");
    assert_eq!(lab.wait_exit("alpha", Duration::from_secs(5)), Some(0));
    assert!(!in_xdg.exists());
    if is_root() {
        // Another user's XDG_RUNTIME_DIR (a stale variable after su, say) is not used.
        std::os::unix::fs::chown(&xdg, Some(65534), None).unwrap();
        let tmp = start_with_private_tmp(&mut lab, "beta", &args, &env);
        let uid = nix::unistd::geteuid().as_raw();
        wait_for(&tmp.join(format!("peermesh-{uid}/alpha.sock")), &lab);
        assert!(!in_xdg.exists());
    }
    let _ = fs::remove_dir_all(config.parent().unwrap());
}

#[test]
fn a_default_directory_someone_else_made_is_refused_by_node_and_client() {
    if !is_root() {
        eprintln!("skipped: needs root for a private /tmp");
        return;
    }
    let lab = Lab::new("baddefault");
    let config = config_outside_tmp("baddefault");
    let dir = "/tmp/peermesh-0";
    let cases = [
        (
            "mkdir -m 755 /tmp/peermesh-0 && chown nobody /tmp/peermesh-0 &&",
            "it belongs to nobody (uid 65534), not to you (uid 0): someone else made it",
        ),
        (
            "mkdir -m 755 /tmp/peermesh-0 &&",
            "group or others may enter it (mode 755); it must be mode 700",
        ),
        (
            "mkdir -m 700 /tmp/elsewhere && ln -s /tmp/elsewhere /tmp/peermesh-0 &&",
            "it is a symbolic link, not a directory",
        ),
        (
            "touch /tmp/peermesh-0 &&",
            "it is a regular file, not a directory",
        ),
    ];
    for (setup, says) in cases {
        let args = ["run", "--config", path_str(&config), "--name", "alpha"];
        let ran = run_bounded(
            with_private_tmp(setup, &node_words(&lab, &args)).env_remove("XDG_RUNTIME_DIR"),
            Duration::from_secs(10),
        );
        assert_exit(&ran, 1);
        let expected = format!("error: control socket directory {dir}: {says}");
        assert!(ran.stderr.contains(&expected), "{setup}: {:?}", ran.stderr);

        let ran = run_bounded(
            with_private_tmp(setup, &[BIN, "status", "--name", "alpha"])
                .env_remove("XDG_RUNTIME_DIR"),
            Duration::from_secs(10),
        );
        assert_exit(&ran, 1);
        let expected =
            format!("error: control socket {dir}/alpha.sock: not trusting directory {dir}: {says}");
        assert!(ran.stderr.contains(&expected), "{setup}: {:?}", ran.stderr);
    }
    let _ = fs::remove_dir_all(config.parent().unwrap());
}

#[test]
fn non_ascii_names_get_sockets_of_their_own() {
    let (mut lab, config) = lab_with("nonascii", &["ä1", "ö1"]);
    let xdg = lab.dir.join("xdg");
    fs::create_dir(&xdg).unwrap();
    chmod(&xdg, 0o700);
    let env = [("XDG_RUNTIME_DIR", Some(path_str(&xdg)))];
    for name in ["ä1", "ö1"] {
        let args = ["run", "--config", path_str(&config), "--name", name];
        start(&mut lab, name, &args, &env);
    }
    let a = xdg.join("peermesh-%c3%a41.sock");
    let o = xdg.join("peermesh-%c3%b61.sock");
    wait_for(&a, &lab);
    wait_for(&o, &lab);
    for name in ["ä1", "ö1"] {
        let ran = run_bounded(
            Command::new(BIN)
                .args(["status", "--name", name])
                .env("XDG_RUNTIME_DIR", &xdg),
            Duration::from_secs(10),
        );
        assert_exit(&ran, 0);
        assert!(ran.stdout.starts_with(&format!("node {name} ")), "{ran:?}");
    }
}

// ---- Busy and broken nodes: told apart -----------------------------------------------------

#[test]
fn a_client_over_the_limit_is_told_too_many_clients() {
    let (mut lab, config) = lab_with("toomany", &["alpha", "beta"]);
    lab.start(&config, "alpha");
    let path = lab.control("alpha");
    // Clients that connect and never send hold every slot (for CLIENT_TIMEOUT).
    let idle: Vec<UnixStream> = (0..MAX_CONNECTIONS)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    let ran = peermesh(&["status", "--control", path_str(&path)]);
    assert_exit(&ran, 1);
    assert_eq!(
        ran.stderr,
        format!(
            "error: the node at {} has too many clients (32 at once); try again\n",
            path.display()
        )
    );
    assert!(matches!(
        control::request(&path, Request::Ping),
        Err(ClientError::TooManyClients(_))
    ));
    drop(idle);
    assert!(
        wait_until(Duration::from_secs(5), || {
            control::request(&path, Request::Ping).is_ok_and(|a| a == Answer::Pong)
        }),
        "{}",
        lab.logs()
    );
}

#[test]
fn two_hundred_clients_at_once_each_get_an_answer_or_too_many_clients() {
    let (mut lab, config) = lab_with("twohundred", &["alpha", "beta"]);
    lab.start(&config, "alpha");
    let path = lab.control("alpha");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(200));
    let clients: Vec<_> = (0..200)
        .map(|_| {
            let (path, barrier) = (path.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                control::request(&path, STATUS)
            })
        })
        .collect();
    let (mut answered, mut busy) = (0, 0);
    for client in clients {
        match client.join().unwrap() {
            Ok(Answer::Text(reply)) if reply.starts_with("node alpha ") => answered += 1,
            Err(ClientError::TooManyClients(_)) => busy += 1,
            other => panic!("neither an answer nor too many clients: {other:?}"),
        }
    }
    eprintln!("200 clients at once: {answered} answered, {busy} told too many clients");
    assert_eq!(answered + busy, 200);
    assert!(answered >= MAX_CONNECTIONS, "{answered}");
}

/// A fake node at `path` that treats each client as `serve` says, for `clients` clients.
fn fake_node(path: &Path, clients: usize, serve: fn(UnixStream)) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(path).unwrap();
    chmod(path, 0o600);
    std::thread::spawn(move || {
        for _ in 0..clients {
            match listener.accept() {
                Ok((stream, _)) => serve(stream),
                Err(e) => panic!("accept: {e}"),
            }
        }
    })
}

#[test]
fn a_stuck_silent_or_resetting_node_is_named_for_what_it_did() {
    let lab = Lab::new("fakenodes");
    // Says nothing and holds the connection past the client's 5 s.
    let stuck = lab.dir.join("stuck.sock");
    let held = fake_node(&stuck, 1, |stream| {
        let started = Instant::now();
        let mut stream = stream;
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut sink = [0u8; 64];
        while started.elapsed() < Duration::from_secs(7) {
            match stream.read(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
        }
    });
    // Reads the request and closes without a word.
    let silent = lab.dir.join("silent.sock");
    let silent_node = fake_node(&silent, 1, |mut stream| {
        let mut line = [0u8; 64];
        let _ = stream.read(&mut line);
    });
    // Closes at once, the request unread: the kernel resets the connection (or, if the
    // request comes later, refuses it). No shutdown first: that would tell the client the
    // end of the stream before the reset, and it would see an empty reply.
    let reset = lab.dir.join("reset.sock");
    let reset_node = fake_node(&reset, 1, drop);
    // Starts an answer and stops in the middle of it, as a node that stopped would: the
    // part is not shown as if it were the whole table.
    let cut = lab.dir.join("cut.sock");
    let cut_node = fake_node(&cut, 1, |mut stream| {
        let mut line = [0u8; 64];
        let _ = stream.read(&mut line);
        let _ = stream.write_all(b"node alpha (incarnation 1) up 5s, 1 of 3 peers al");
    });
    let cases = [
        (&silent, "closed the connection with an empty reply"),
        (&reset, "reset the connection before answering"),
        (&stuck, "is busy: no answer within 5 s; try again"),
        (&cut, "was cut off before its end"),
    ];
    for (path, says) in cases {
        let started = Instant::now();
        let ran = peermesh(&["status", "--control", path_str(path)]);
        assert_exit(&ran, 1);
        let expected = if says.starts_with("was cut") {
            format!(
                "error: the answer from the node at {} {says}",
                path.display()
            )
        } else {
            format!("error: the node at {} {says}", path.display())
        };
        assert!(ran.stderr.starts_with(&expected), "{:?}", ran.stderr);
        assert_eq!(ran.stderr.lines().count(), 1, "{:?}", ran.stderr);
        assert!(started.elapsed() < Duration::from_secs(8));
    }
    for node in [held, silent_node, reset_node, cut_node] {
        node.join().unwrap();
    }
}

// ---- A closed stdout ------------------------------------------------------------------------

/// Runs `peermesh ARGS` with stdout a pipe whose read end is already closed.
fn with_closed_stdout(args: &[&str]) -> Ran {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{args:?} hangs"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    Ran {
        code: status.code(),
        stdout: String::new(),
        stderr,
    }
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let (mut lab, config) = lab_with("closedpipe", &["alpha", "beta"]);
    lab.start(&config, "alpha");
    let control = lab.control("alpha");
    let (config, control) = (path_str(&config), path_str(&control));
    for args in [
        &["--help"][..],
        &["help"],
        &["--version"],
        &["status", "--help"],
        &["run", "-h"],
        &["keygen"],
        &["check", "--config", config, "--name", "alpha"],
        &["status", "--control", control],
        &["status", "--json", "--control", control],
        &["matrix", "--control", control],
        &["matrix", "--json", "--control", control],
        &["top", "--count", "2", "--control", control],
    ] {
        let ran = with_closed_stdout(args);
        assert_exit(&ran, 0);
        assert!(
            !ran.stderr.contains("panicked"),
            "{args:?}: {:?}",
            ran.stderr
        );
        assert!(ran.stderr.is_empty(), "{args:?}: {:?}", ran.stderr);
    }
}
