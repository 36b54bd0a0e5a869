//! Service integration: the systemd unit passes `systemd-analyze verify` and scores a low
//! exposure in `systemd-analyze security`; a node started with `NOTIFY_SOCKET` says
//! `READY=1` once bound, `RELOADING=1` and `READY=1` around a reload and `STOPPING=1` when it
//! leaves; and the Debian package (`make deb`'s script) installs with `dpkg -i`, runs, and
//! purges clean.

mod support;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{config_for, host_loopback_addrs, run_bounded, sh, wait_until, Lab, BIN};

const ANALYZE: &str = "/usr/bin/systemd-analyze";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The repository's unit with ExecStart pointing at `binary` (verify checks that it exists).
fn unit_for(dir: &Path, binary: &str) -> PathBuf {
    let text = fs::read_to_string(repo().join("docs/peermesh.service")).expect("the unit");
    let path = dir.join("peermesh.service");
    fs::write(&path, text.replace("/usr/local/bin/peermesh", binary)).expect("write unit");
    path
}

#[test]
fn the_unit_verifies_notifies_reloads_by_sighup_and_is_hardened() {
    let text = fs::read_to_string(repo().join("docs/peermesh.service")).expect("the unit");
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "User=peermesh",
    ] {
        assert!(text.contains(line), "the unit lacks {line:?}");
    }
    if !Path::new(ANALYZE).exists() {
        eprintln!("SKIPPED systemd-analyze checks: {ANALYZE} is missing (Debian package systemd)");
        return;
    }
    let lab = Lab::new("unit");
    let unit = unit_for(&lab.dir, BIN);
    let verify = run_bounded(
        Command::new(ANALYZE).arg("verify").arg(&unit),
        Duration::from_secs(60),
    );
    assert_eq!(verify.code, Some(0), "{verify:?}");
    assert!(verify.stderr.trim().is_empty(), "verify warns: {verify:?}");
    let security = run_bounded(
        Command::new(ANALYZE)
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&unit),
        Duration::from_secs(60),
    );
    let said = format!("{}{}", security.stdout, security.stderr);
    let exposure: f64 = said
        .lines()
        .find_map(|l| l.split("Overall exposure level for").nth(1))
        .and_then(|rest| rest.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {said}"));
    eprintln!("systemd-analyze security: overall exposure {exposure} (0 = locked down, 10 = open)");
    assert!(exposure <= 2.0, "exposure {exposure} above 2.0:\n{said}");
}

/// Every message on `socket` within `limit`, until one equals `last`.
fn messages_until(socket: &UnixDatagram, last: &str, limit: Duration) -> Vec<String> {
    let mut seen = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 512];
    while start.elapsed() < limit && seen.len() < 100 {
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = text == last;
            seen.push(text);
            if done {
                break;
            }
        }
    }
    seen
}

#[test]
fn a_node_tells_systemd_when_it_is_ready_reloading_and_stopping() {
    let mut lab = Lab::new("notify");
    let addrs = host_loopback_addrs(2);
    let config = lab.write_config(&config_for(
        &[("alpha", addrs[0]), ("beta", addrs[1])],
        300,
        500,
    ));
    let notify = lab.dir.join("notify.sock");
    let socket = UnixDatagram::bind(&notify).expect("notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let control = lab.control("alpha");
    let child = Command::new(BIN)
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--name",
            "alpha",
            "--control",
        ])
        .arg(&control)
        .env("NOTIFY_SOCKET", &notify)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run");
    let pid = child.id().to_string();
    lab.adopt("alpha", child);
    let ready = messages_until(&socket, "READY=1", Duration::from_secs(10));
    assert_eq!(
        ready.last().map(String::as_str),
        Some("READY=1"),
        "{ready:?}"
    );
    assert!(
        control.exists(),
        "READY=1 only once the control socket is bound"
    );
    assert!(peermesh_answers(&control));

    assert!(sh("kill", &["-HUP", &pid]));
    let reload = messages_until(&socket, "READY=1", Duration::from_secs(10));
    assert_eq!(reload.len(), 2, "{reload:?}");
    let (first, usec) = reload[0].split_once('\n').expect("two lines");
    assert_eq!(first, "RELOADING=1");
    assert!(
        usec.strip_prefix("MONOTONIC_USEC=")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|v| v > 0),
        "{usec}"
    );

    assert!(sh("kill", &["-TERM", &pid]));
    let stop = messages_until(&socket, "STOPPING=1", Duration::from_secs(10));
    assert_eq!(
        stop.last().map(String::as_str),
        Some("STOPPING=1"),
        "{stop:?}"
    );
    assert_eq!(lab.wait_exit("alpha", Duration::from_secs(10)), Some(0));
}

fn peermesh_answers(control: &Path) -> bool {
    wait_until(Duration::from_secs(5), || {
        matches!(
            peermesh::io::control::request(control, peermesh::io::control::Request::Ping),
            Ok(peermesh::io::control::Answer::Pong)
        )
    })
}

#[test]
fn the_debian_package_installs_with_dpkg_runs_and_purges_clean() {
    if !sh("dpkg-deb", &["--version"]) {
        eprintln!("SKIPPED: dpkg-deb is missing (not a Debian system)");
        return;
    }
    let lab = Lab::new("deb");
    // `make deb` packages the release build; the same script packages the test build here
    // (--fast: gzip -1, not xz, for a debug binary of 60 MB).
    let built = run_bounded(
        Command::new(repo().join("scripts/build-deb.sh"))
            .args(["--binary", BIN, "--fast", "--out"])
            .arg(lab.dir.join("out")),
        Duration::from_secs(120),
    );
    assert_eq!(built.code, Some(0), "{built:?}");
    let deb = PathBuf::from(built.stdout.trim());
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        deb.file_name().is_some_and(|n| n
            .to_string_lossy()
            .starts_with(&format!("peermesh_{version}_"))),
        "{deb:?}"
    );
    let contents = run_bounded(
        Command::new("dpkg-deb").arg("--contents").arg(&deb),
        Duration::from_secs(30),
    );
    for path in [
        "./usr/bin/peermesh",
        "./lib/systemd/system/peermesh.service",
        "./etc/peermesh/peers.ron",
        "./usr/share/man/man1/peermesh.1.gz",
        "./usr/share/man/man1/peermesh-run.1.gz",
        "./usr/share/bash-completion/completions/peermesh",
        "./usr/share/zsh/vendor-completions/_peermesh",
        "./usr/share/fish/vendor_completions.d/peermesh.fish",
        "./usr/share/doc/peermesh/copyright",
    ] {
        assert!(
            contents.stdout.contains(path),
            "{path} not in the package:\n{}",
            contents.stdout
        );
    }
    let conffiles = run_bounded(
        Command::new("dpkg-deb")
            .args(["--info"])
            .arg(&deb)
            .arg("conffiles"),
        Duration::from_secs(30),
    );
    assert_eq!(conffiles.stdout.trim(), "/etc/peermesh/peers.ron");

    // dpkg -i into a root of its own: this machine's packages and users are not touched
    // (the maintainer scripts see DPKG_ROOT and leave users and systemd to that system).
    let root = lab.dir.join("root");
    for dir in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        fs::create_dir_all(root.join(dir)).expect("dpkg database");
    }
    fs::write(root.join("var/lib/dpkg/status"), "").expect("status");
    let dpkg = |args: &[&str]| {
        let mut cmd = Command::new("dpkg");
        cmd.arg(format!("--root={}", root.display()))
            .args(["--force-script-chrootless", "--force-depends"])
            .args(args);
        run_bounded(&mut cmd, Duration::from_secs(60))
    };
    let installed = dpkg(&["-i", deb.to_str().unwrap()]);
    assert_eq!(installed.code, Some(0), "{installed:?}");
    let ran = run_bounded(
        Command::new(root.join("usr/bin/peermesh")).arg("--version"),
        Duration::from_secs(10),
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stdout.starts_with(&format!("peermesh {version}")),
        "{ran:?}"
    );
    let unit = fs::read_to_string(root.join("lib/systemd/system/peermesh.service")).expect("unit");
    assert!(unit.contains("ExecStart=/usr/bin/peermesh run"), "{unit}");
    let example = fs::read_to_string(root.join("etc/peermesh/peers.ron")).expect("example");
    assert!(
        peermesh::config::Config::parse(&example, "peers.ron").is_ok(),
        "the example peers.ron loads"
    );
    let purged = dpkg(&["--purge", "peermesh"]);
    assert_eq!(purged.code, Some(0), "{purged:?}");
    assert!(!root.join("usr/bin/peermesh").exists());
    assert!(
        !root.join("etc/peermesh/peers.ron").exists(),
        "purge removes the conffile"
    );
}
