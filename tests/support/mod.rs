//! Real-process test support: a private network namespace per test ("lab"), nodes started
//! as `peermesh run` processes in it, and their status read over the control socket.
//!
//! Every wait is bounded in time and polls at a fixed short period; all traffic stays on
//! the lab's own loopback (or veths of namespaces the lab made), and everything the lab
//! started is killed and removed when it is dropped.
#![allow(dead_code)]

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_peermesh");

/// A tool of the `peermesh-tools` package (loadgen, relay, flood): `cargo test` builds the
/// whole workspace into one target directory, so it sits beside the `peermesh` binary.
#[allow(dead_code)]
pub fn tool(name: &str) -> PathBuf {
    let path = Path::new(BIN).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build the tools with `cargo build --workspace --bins (make test does)`",
        path.display()
    );
    path
}

static LABS: AtomicUsize = AtomicUsize::new(0);

/// Runs a command, returning whether it succeeded (output discarded).
pub fn sh(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A network namespace with loopback up, a scratch directory, and the nodes started in it.
pub struct Lab {
    pub netns: Option<String>,
    pub dir: PathBuf,
    pub extra_netns: Vec<String>,
    nodes: Vec<(String, Child)>,
}

impl Lab {
    /// A fresh lab. Uses a private network namespace when it can create one (root), so
    /// tests can all use 127.0.0.x:1313 at once; else the host's loopback.
    pub fn new(test: &str) -> Lab {
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        let tag = format!("pm{}x{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("peermesh-test-{test}-{tag}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        let netns = (sh("ip", &["netns", "add", &tag])
            && sh(
                "ip",
                &["netns", "exec", &tag, "ip", "link", "set", "lo", "up"],
            ))
        .then_some(tag);
        Lab {
            netns,
            dir,
            extra_netns: Vec::new(),
            nodes: Vec::new(),
        }
    }

    /// Writes a config file into the lab and returns its path.
    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.dir.join("peers.ron");
        fs::write(&path, text).expect("write config");
        path
    }

    pub fn control(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.sock"))
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// Starts `peermesh run --name NAME` in the lab's namespace.
    pub fn start(&mut self, config: &Path, name: &str) {
        let netns = self.netns.clone();
        self.start_in(netns.as_deref(), config, name, &[]);
    }

    /// [`Lab::start`] with more arguments for `run` (`--http`, `--handler`, ...).
    pub fn start_with(&mut self, config: &Path, name: &str, extra: &[&str]) {
        let netns = self.netns.clone();
        self.start_in(netns.as_deref(), config, name, extra);
    }

    /// `peermesh run --config CONFIG --name NAME --control (its socket) EXTRA...` in
    /// `netns` (or here), adopted under NAME; returns once its socket answers.
    pub fn start_in(&mut self, netns: Option<&str>, config: &Path, name: &str, extra: &[&str]) {
        let control = self.control(name);
        let mut args = vec![
            "run",
            "--config",
            config.to_str().unwrap(),
            "--name",
            name,
            "--control",
            control.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let child = self.spawn(netns, BIN, &args, name);
        self.nodes.retain(|(n, _)| n != name);
        self.nodes.push((name.to_owned(), child));
        self.wait_for_socket(name);
    }

    /// Spawns a program in a namespace (or here), stderr to the node's log.
    pub fn spawn(&self, netns: Option<&str>, program: &str, args: &[&str], name: &str) -> Child {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(name))
            .expect("log file");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn")
    }

    /// Keeps `child` as the process of `name` (ended with the lab); a process of that name
    /// from before (exited, or killed now) is reaped first.
    pub fn adopt(&mut self, name: &str, child: Child) {
        for (_, old) in self.nodes.iter_mut().filter(|(n, _)| n == name) {
            let _ = old.kill();
            let _ = old.wait();
        }
        self.nodes.retain(|(n, _)| n != name);
        self.nodes.push((name.to_owned(), child));
    }

    pub fn wait_for_socket(&self, name: &str) {
        let path = self.control(name);
        let ok = wait_until(Duration::from_secs(10), || path.exists());
        assert!(
            ok,
            "{name} never opened {}\n{}",
            path.display(),
            self.logs()
        );
    }

    pub fn pid(&self, name: &str) -> u32 {
        self.nodes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.id())
            .expect("node started")
    }

    pub fn signal(&self, name: &str, signal: &str) {
        assert!(sh(
            "kill",
            &[&format!("-{signal}"), &self.pid(name).to_string()]
        ));
    }

    /// Waits (bounded) for the node's process to exit; returns its exit code.
    pub fn wait_exit(&mut self, name: &str, limit: Duration) -> Option<i32> {
        let child = &mut self.nodes.iter_mut().find(|(n, _)| n == name)?.1;
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// `status --json` of a node, or None when it does not answer.
    pub fn status(&self, name: &str) -> Option<Value> {
        use peermesh::io::control::{Answer, Request};
        let request = Request::Status {
            json: true,
            color: false,
        };
        match peermesh::io::control::request(&self.control(name), request).ok()? {
            Answer::Status(json) => serde_json::from_str(&json).ok(),
            _ => None,
        }
    }

    /// The state `observer` reports for `peer` right now.
    pub fn state(&self, observer: &str, peer: &str) -> Option<String> {
        let status = self.status(observer)?;
        status["peers"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == peer)
            .and_then(|p| p["state"].as_str().map(str::to_owned))
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (name, _) in &self.nodes {
            let text = fs::read_to_string(self.log(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            out.push_str(&format!("--- {name} (last lines) ---\n"));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.extra_netns.iter().chain(self.netns.iter()) {
            sh("ip", &["netns", "del", ns]);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Polls `done` every 10 ms until it holds or `limit` passes. Returns whether it held.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A config for `names` on `127.0.0.2..` all at port 1313, with 100 ms heartbeats.
pub fn loopback_config(names: &[&str], suspect_ms: u64, dead_ms: u64) -> String {
    let nodes: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("        (name: \"{n}\", host: \"127.0.0.{}\"),", i + 2))
        .collect();
    format!(
        "(\n    port: 1313,\n    heartbeat_interval_ms: 100,\n    suspect_after_ms: {suspect_ms},\n    dead_after_ms: {dead_ms},\n    nodes: [\n{}\n    ],\n)\n",
        nodes.join("\n")
    )
}

// ---- Processes outside a namespace, bounded commands (tests/cli.rs, embed.rs, hostname.rs) --

static HOST_PORTS: AtomicUsize = AtomicUsize::new(0);

/// `count` UDP addresses on the host's own loopback for processes run outside any network
/// namespace (so the test itself can reach them): one `127.A.B.C` per test process, taken
/// from its pid (all of 127/8 is local on Linux), and ports `20000..32768` that differ per
/// call, so tests and test processes running at once do not meet.
pub fn host_loopback_addrs(count: usize) -> Vec<std::net::SocketAddr> {
    let pid = std::process::id();
    let ip = std::net::Ipv4Addr::new(
        127,
        64 + ((pid >> 16) & 0x3f) as u8,
        ((pid >> 8) & 0xff) as u8,
        (pid & 0xff) as u8,
    );
    let first = 20_000 + HOST_PORTS.fetch_add(count, Ordering::SeqCst);
    assert!(first + count < 32_768, "out of test ports");
    (0..count)
        .map(|i| std::net::SocketAddr::new(ip.into(), (first + i) as u16))
        .collect()
}

/// A config for `nodes` (name, address), with 100 ms heartbeats.
pub fn config_for(nodes: &[(&str, std::net::SocketAddr)], suspect_ms: u64, dead_ms: u64) -> String {
    let lines: Vec<String> = nodes
        .iter()
        .map(|(n, a)| {
            format!(
                "        (name: \"{n}\", host: \"{}\", port: {}),",
                a.ip(),
                a.port()
            )
        })
        .collect();
    format!(
        "(\n    heartbeat_interval_ms: 100,\n    suspect_after_ms: {suspect_ms},\n    dead_after_ms: {dead_ms},\n    nodes: [\n{}\n    ],\n)\n",
        lines.join("\n")
    )
}

/// What a bounded command printed and how it ended.
#[derive(Debug)]
pub struct Ran {
    /// The exit code (None: killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` with piped output and null stdin; kills it and panics if it has not exited
/// within `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Ran {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if start.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let ran = Ran {
        code: status.and_then(|s| s.code()),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    assert!(
        status.is_some(),
        "{cmd:?} still running after {limit:?}: {ran:?}"
    );
    ran
}

/// `peermesh ARGS`, bounded by 10 s.
pub fn peermesh(args: &[&str]) -> Ran {
    run_bounded(Command::new(BIN).args(args), Duration::from_secs(10))
}

impl Lab {
    /// Starts `peermesh run --name NAME` in the host's network namespace (for a node on
    /// [`host_loopback_addrs`], which the test reaches directly).
    pub fn start_here(&mut self, config: &Path, name: &str) {
        self.start_here_with(config, name, &[]);
    }

    /// [`Lab::start_here`] with more arguments for `run` (`--bind`, `--handler`, ...).
    #[allow(dead_code)] // not every test file uses it
    pub fn start_here_with(&mut self, config: &Path, name: &str, extra: &[&str]) {
        self.start_in(None, config, name, extra);
    }

    /// A peer's row as `observer` reports it right now.
    pub fn peer(&self, observer: &str, peer: &str) -> Option<Value> {
        self.status(observer)?["peers"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == peer)
            .cloned()
    }

    /// Whether `observer` reports `peer` alive with a measured RTT.
    pub fn alive_with_rtt(&self, observer: &str, peer: &str) -> bool {
        self.peer(observer, peer)
            .is_some_and(|p| p["state"] == "alive" && p["rtt_us"]["p50"].as_f64().is_some())
    }
}

/// The browser: `PEERMESH_CHROMIUM`, else `chromium` or `chromium-browser` on the PATH.
pub fn chromium() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("PEERMESH_CHROMIUM") {
        let path = std::path::PathBuf::from(path);
        assert!(
            path.is_file(),
            "PEERMESH_CHROMIUM={} is not a file",
            path.display()
        );
        return Some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|dir| {
        ["chromium", "chromium-browser"]
            .iter()
            .map(|name| dir.join(name))
            .find(|p| p.is_file())
    })
}
