//! The `peermesh` command line: argument parsing and the subcommands.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad config. A reader that goes
//! away (`peermesh status | head -0`) is not a failure: the command stops quietly, exit 0.

use peermesh::config::{default_hostname, Config};
use peermesh::io::control::{self, Answer, MatrixFormat, Request};
use peermesh::io::daemon::{self, RunOptions};
use std::ffi::OsString;
use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

const USAGE: &str = "\
peermesh: heartbeats, liveness and round-trip latencies across a mesh of nodes

usage: peermesh <command> [options]

commands:
  run      run this node (listens, heartbeats, answers)
  status   print the peer table of a running node
  top      live view of the peer table, refreshed every second
  matrix   the latency matrix between every pair of nodes (table, --json, --svg FILE)
  check    validate the config and say what this node would do
  keygen   print a new random mesh key (for the key file named by `keyring` in the config)
  help     this text (also: peermesh <command> --help)

common options: --config PATH (default ./peers.ron), --name NAME (default: by hostname),
and for run/status/top/matrix --control PATH (default $XDG_RUNTIME_DIR/peermesh-NAME.sock,
else /tmp/peermesh-UID/NAME.sock)
";

const RUN_USAGE: &str = "\
usage: peermesh run [--config PATH] [--name NAME] [--bind ADDR:PORT] [--control PATH]

Runs this node until SIGINT/SIGTERM, then tells every peer it leaves.
  --config PATH    the mesh config (default ./peers.ron)
  --name NAME      which node of the config this is (default: by hostname)
  --bind ADDR:PORT bind this address instead of the node's own entry
  --control PATH   control socket (default $XDG_RUNTIME_DIR/peermesh-NAME.sock, else
                   /tmp/peermesh-UID/NAME.sock); only a stale socket there is replaced
Logs go to stderr; set RUST_LOG (default info; trace shows every datagram).
";

const STATUS_USAGE: &str = "\
usage: peermesh status [--control PATH | --name NAME [--config PATH]] [--json]

Prints the peer table of a running node: state, RTT last/avg/p99, jitter, loss, last heard.
  --json           one JSON object (the contract is in the README)
";

const TOP_USAGE: &str = "\
usage: peermesh top [--control PATH | --name NAME [--config PATH]] [--count N]

Shows the peer table of a running node, refreshed every second, until Ctrl-C.
  --count N        stop after N refreshes
";

const MATRIX_USAGE: &str = "\
usage: peermesh matrix [--control PATH | --name NAME [--config PATH]] [--json | --svg FILE]

Prints the N x N latency matrix a running node has assembled (rows: from, columns: to).
  --json           one JSON object (the contract is in the README)
  --svg FILE       write a heatmap picture to FILE (open it in a browser)
";

const CHECK_USAGE: &str = "\
usage: peermesh check [--config PATH] [--name NAME]

Validates the config; says who this node is, what it binds and which peers it heartbeats.
";

/// A failure with its exit code.
#[derive(Debug)]
enum Failure {
    /// Bad usage: print the message and the usage, exit 2.
    Usage(String, &'static str),
    /// Bad config: exit 2.
    Config(String),
    /// Anything at run time: exit 1.
    Runtime(String),
    /// Standard output is a pipe nobody reads any more: stop quietly, exit 0.
    ClosedPipe,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(msg, usage) => write!(f, "error: {msg}\n\n{usage}"),
            Failure::Config(msg) | Failure::Runtime(msg) => write!(f, "error: {msg}"),
            Failure::ClosedPipe => f.write_str("standard output was closed"),
        }
    }
}

#[derive(Default)]
struct Options {
    config: Option<PathBuf>,
    name: Option<String>,
    bind: Option<SocketAddr>,
    control: Option<PathBuf>,
    json: bool,
    count: Option<u64>,
    svg: Option<PathBuf>,
    help: bool,
}

/// Runs the command line; returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    match dispatch(args) {
        Ok(()) => 0,
        Err(Failure::ClosedPipe) => 0,
        Err(failure) => {
            let _ = io::stdout().flush();
            // Not eprintln!: a closed stderr must not turn an error into a panic.
            let _ = writeln!(io::stderr(), "{failure}");
            match failure {
                Failure::Usage(..) | Failure::Config(_) => 2,
                Failure::Runtime(_) | Failure::ClosedPipe => 1,
            }
        }
    }
}

/// Writes `text` to stdout and flushes. Every output of the CLI goes through here, never
/// `print!`, which panics on a closed pipe.
fn emit(text: &str) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Failure::ClosedPipe),
        Err(e) => Err(Failure::Runtime(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

fn dispatch(args: Vec<OsString>) -> Result<(), Failure> {
    let mut args = args.into_iter().skip(1);
    let Some(command) = args.next() else {
        return Err(Failure::Usage("no command given".into(), USAGE));
    };
    let command = command.to_string_lossy().into_owned();
    let usage = match command.as_str() {
        "run" => RUN_USAGE,
        "status" => STATUS_USAGE,
        "top" => TOP_USAGE,
        "check" => CHECK_USAGE,
        "matrix" => MATRIX_USAGE,
        "keygen" => {
            return match peermesh::wire::keyring::generate_hex() {
                Ok(key) => emit(&format!("{key}\n")),
                Err(e) => Err(Failure::Runtime(format!("no random source: {e}"))),
            };
        }
        "help" | "--help" | "-h" => return emit(USAGE),
        "--version" | "-V" => {
            return emit(&format!(
                "peermesh {} (wire protocol {})\n",
                env!("CARGO_PKG_VERSION"),
                peermesh::wire::VERSION
            ));
        }
        other => return Err(Failure::Usage(format!("unknown command {other:?}"), USAGE)),
    };
    let opts = parse_options(&command, args.collect(), usage)?;
    if opts.help {
        return emit(usage);
    }
    match command.as_str() {
        "run" => run(opts),
        "status" => status(opts),
        "top" => top(opts),
        "matrix" => matrix(opts),
        _ => check(opts),
    }
}

fn parse_options(
    command: &str,
    args: Vec<OsString>,
    usage: &'static str,
) -> Result<Options, Failure> {
    let mut opts = Options::default();
    let mut args = args.into_iter();
    let usage_err = |msg: String| Failure::Usage(msg, usage);
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy().into_owned();
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let allowed = match command {
            "run" => &["--config", "--name", "--bind", "--control"][..],
            "status" => &["--config", "--name", "--control", "--json"][..],
            "top" => &["--config", "--name", "--control", "--count"][..],
            "matrix" => &["--config", "--name", "--control", "--json", "--svg"][..],
            _ => &["--config", "--name"][..],
        };
        if flag == "--help" || flag == "-h" {
            opts.help = true;
            continue;
        }
        if !allowed.contains(&flag.as_str()) {
            return Err(usage_err(format!("{command} does not take {arg:?}")));
        }
        if flag == "--json" {
            opts.json = true;
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => args
                .next()
                .map(|v| v.to_string_lossy().into_owned())
                .ok_or_else(|| usage_err(format!("{flag} needs a value")))?,
        };
        match flag.as_str() {
            "--config" => opts.config = Some(PathBuf::from(value)),
            "--name" => opts.name = Some(value),
            "--control" => opts.control = Some(PathBuf::from(value)),
            "--svg" => opts.svg = Some(PathBuf::from(value)),
            "--bind" => {
                let addr = value.parse().map_err(|_| {
                    usage_err(format!(
                        "--bind wants ADDR:PORT (e.g. 0.0.0.0:1313), not {value:?}"
                    ))
                })?;
                opts.bind = Some(addr);
            }
            _ => {
                let n = value
                    .parse()
                    .map_err(|_| usage_err(format!("--count wants a number, not {value:?}")))?;
                opts.count = Some(n);
            }
        }
    }
    Ok(opts)
}

fn load_config(opts: &Options) -> Result<Config, Failure> {
    let path = opts
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("peers.ron"));
    Config::load(&path).map_err(|e| Failure::Config(e.to_string()))
}

fn find_self(config: &Config, opts: &Options) -> Result<usize, Failure> {
    config
        .find_self(opts.name.as_deref(), &default_hostname())
        .map_err(|e| Failure::Config(e.to_string()))
}

fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .format_timestamp_millis()
        .init();
}

fn run(opts: Options) -> Result<(), Failure> {
    let config = load_config(&opts)?;
    let me = find_self(&config, &opts)?;
    init_logging();
    let control = opts
        .control
        .clone()
        .unwrap_or_else(|| control::default_path(&config.nodes[me].name));
    daemon::run(RunOptions {
        config,
        me,
        bind: opts.bind,
        control,
    })
    .map_err(|e| match e {
        daemon::RunError::Start(peermesh::io::driver::StartError::Config(c)) => {
            Failure::Config(c.to_string())
        }
        daemon::RunError::Keyring(k) => Failure::Config(k.to_string()),
        other => Failure::Runtime(other.to_string()),
    })
}

/// The control socket to talk to: `--control`, else the default path of `--name` or of the
/// node this machine's hostname names in the config.
fn control_path(opts: &Options) -> Result<PathBuf, Failure> {
    if let Some(path) = &opts.control {
        return Ok(path.clone());
    }
    if let Some(name) = &opts.name {
        return Ok(control::default_path(name));
    }
    let config = load_config(opts)?;
    let me = find_self(&config, opts)?;
    Ok(control::default_path(&config.nodes[me].name))
}

/// Asks the node and returns what it answered as text to print: the JSON of `status` and
/// `matrix` exactly as the node wrote it, tables and SVG as they are; a newline at the end.
fn ask(path: &std::path::Path, request: Request) -> Result<String, Failure> {
    let answer = control::request(path, request).map_err(|e| Failure::Runtime(e.to_string()))?;
    let mut text = match answer {
        Answer::Status(json) | Answer::Matrix(json) | Answer::Text(json) => json,
        Answer::Pong => "pong".to_owned(),
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

fn status(opts: Options) -> Result<(), Failure> {
    let path = control_path(&opts)?;
    let color = !opts.json && std::io::stdout().is_terminal();
    emit(&ask(
        &path,
        Request::Status {
            json: opts.json,
            color,
        },
    )?)
}

fn top(opts: Options) -> Result<(), Failure> {
    let path = control_path(&opts)?;
    let tty = std::io::stdout().is_terminal();
    let mut shown = 0u64;
    loop {
        let table = ask(
            &path,
            Request::Status {
                json: false,
                color: tty,
            },
        )?;
        if tty {
            // Home the cursor and clear, like top and mtr.
            emit(&format!("\x1b[H\x1b[2J{table}(Ctrl-C to quit)\n"))?;
        } else {
            emit(&format!("{table}\n"))?;
        }
        shown += 1;
        if opts.count.is_some_and(|n| shown >= n) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn matrix(opts: Options) -> Result<(), Failure> {
    if opts.json && opts.svg.is_some() {
        return Err(Failure::Usage(
            "give --json or --svg, not both".into(),
            MATRIX_USAGE,
        ));
    }
    let path = control_path(&opts)?;
    match &opts.svg {
        Some(file) => {
            let svg = ask(&path, Request::Matrix(MatrixFormat::Svg))?;
            std::fs::write(file, svg)
                .map_err(|e| Failure::Runtime(format!("cannot write {}: {e}", file.display())))?;
            emit(&format!("wrote {}\n", file.display()))
        }
        None => emit(&ask(
            &path,
            Request::Matrix(if opts.json {
                MatrixFormat::Json
            } else {
                MatrixFormat::Table
            }),
        )?),
    }
}

fn check(opts: Options) -> Result<(), Failure> {
    let path = opts
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("peers.ron"));
    let config = load_config(&opts)?;
    let hostname = default_hostname();
    let me = find_self(&config, &opts)?;
    let node = &config.nodes[me];
    let own = config
        .resolve(me)
        .map_err(|e| Failure::Config(e.to_string()))?;
    let how = match &opts.name {
        Some(_) => "from --name".to_owned(),
        None => format!("from hostname {hostname:?}"),
    };
    // Written as a whole at the end: an error half-way prints no half report.
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!("config {} is valid", path.display()));
    line(format!("this node: {} ({how})", node.name));
    line(format!(
        "binds: udp {own} (the wildcard address with that port if {} is not local)",
        own.ip()
    ));
    line(format!(
        "heartbeat every {} ms; suspect after {} ms, dead after {} ms; datagrams up to {} bytes",
        config.heartbeat_interval.as_millis(),
        config.suspect_after.as_millis(),
        config.dead_after.as_millis(),
        config.max_datagram
    ));
    match daemon::load_keyring(&config) {
        Ok(Some(ring)) => line(format!(
            "keyring: {} keys, sealing with key {}",
            ring.keys().len(),
            ring.primary().id_hex()
        )),
        Ok(None) => {
            line("keyring: none: the mesh is NOT authenticated (see docs/SECURITY.md)".to_owned())
        }
        Err(e) => return Err(Failure::Config(e.to_string())),
    }
    line(format!("peers ({}):", config.nodes.len() - 1));
    for (i, peer) in config.nodes.iter().enumerate().filter(|(i, _)| *i != me) {
        let addr = config
            .resolve(i)
            .map(|a| a.to_string())
            .map_err(|e| Failure::Config(e.to_string()))?;
        line(format!("  {:<20} {addr}", peer.name));
    }
    emit(&out)
}
