//! `peermesh status`, `top` and `matrix`: ask a running node over its control socket.

use super::args::{MatrixArgs, StatusArgs, TargetArgs, TopArgs, CONTROL_ENV, SYSTEM_CONTROL};
use super::node::{config_path, find_self, load_config};
use super::{emit, Failure};
use peermesh::io::control::{self, Answer, ClientError, MatrixFormat, Request};
use peermesh::report::status::{StatusReport, TableOptions, TableWidths};
use peermesh::PeerState;
use std::io::{ErrorKind, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

/// How often `top` redraws, and retries a node that does not answer.
const TOP_INTERVAL: Duration = Duration::from_secs(1);

/// The exit code of `status --check` when the node cannot be asked (Nagios' UNKNOWN).
const CHECK_UNKNOWN: i32 = 3;

/// The control socket to talk to, the first of: `--control`; the default path of
/// `--name`; that of the node `--config` and the hostname pick, when `--config` is given;
/// `$PEERMESH_CONTROL`; the systemd unit's `/run/peermesh/peermesh.sock` if it exists; the
/// default path of the node the default config (`./peers.ron`, else
/// `/etc/peermesh/peers.ron`) and the hostname pick. Flags beat the environment.
pub(super) fn control_path(target: &TargetArgs) -> Result<PathBuf, Failure> {
    if let Some(path) = &target.control {
        return Ok(path.clone());
    }
    if let Some(name) = &target.name {
        return Ok(control::default_path(name));
    }
    if target.config.is_none() {
        if let Some(path) = std::env::var_os(CONTROL_ENV).filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(path));
        }
        // There unless it is not: a socket this user may not even see (permission denied)
        // is still the one meant, and the error then says so.
        let system = Path::new(SYSTEM_CONTROL);
        if !matches!(system.symlink_metadata(), Err(e) if e.kind() == ErrorKind::NotFound) {
            return Ok(system.to_owned());
        }
    }
    let config = load_config(&config_path(target.config.as_deref()))?;
    let me = find_self(&config, None)?;
    Ok(control::default_path(&config.nodes[me].name))
}

/// Whether colours may be used on a terminal: not when `NO_COLOR` is set to anything but
/// the empty string (no-color.org).
pub(super) fn colour_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Asks the node and returns what it answered as text to print: the JSON of `status` and
/// `matrix` exactly as the node wrote it, tables and SVG as they are; a newline at the end.
fn ask(path: &Path, request: Request) -> Result<String, Failure> {
    ask_node(path, request, control::CLIENT_TIMEOUT).map_err(|e| Failure::Runtime(e.to_string()))
}

/// [`ask`], with the client's own error, waiting at most `timeout` for the node.
fn ask_node(path: &Path, request: Request, timeout: Duration) -> Result<String, ClientError> {
    let answer = control::request_within(path, request, timeout)?;
    let mut text = match answer {
        Answer::Status(json) | Answer::Matrix(json) | Answer::Text(json) => json,
        Answer::Pong => "pong".to_owned(),
        other => {
            return Err(ClientError::Answer(
                path.to_owned(),
                peermesh::io::control::AnswerError::Garbled(format!(
                    "an answer of another request: {other:?}"
                )),
            ))
        }
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// The node's status report, and its JSON as the node wrote it.
fn fetch_status(path: &Path) -> Result<(StatusReport, String), Failure> {
    fetch(path, control::CLIENT_TIMEOUT).map_err(|e| e.failure)
}

/// Why there is no status report: the failure, and whether asking again could help.
struct NoStatus {
    failure: Failure,
    /// The socket is served by another user, sits in a directory others control, or may
    /// not be opened by this user (permission denied): that is no node restarting, and
    /// waiting for it is not what `top` does.
    settled: bool,
}

/// [`fetch_status`], saying whether the failure may pass; `timeout` bounds each wait for
/// the node.
fn fetch(path: &Path, timeout: Duration) -> Result<(StatusReport, String), NoStatus> {
    let request = Request::Status {
        json: true,
        color: false,
    };
    let json = ask_node(path, request, timeout).map_err(|e| NoStatus {
        settled: match &e {
            ClientError::Untrusted { .. } | ClientError::Directory { .. } => true,
            ClientError::Io(_, io) => io.kind() == ErrorKind::PermissionDenied,
            _ => false,
        },
        failure: Failure::Runtime(e.to_string()),
    })?;
    let report = serde_json::from_str(&json).map_err(|e| NoStatus {
        failure: Failure::Runtime(format!(
            "the node at {} answered a status this peermesh cannot read: {e}",
            path.display()
        )),
        settled: false,
    })?;
    Ok((report, json))
}

/// The states `--state` names (the parser let only their names through); `None` if none.
fn states(names: &[String]) -> Option<Vec<PeerState>> {
    let states: Vec<PeerState> = names
        .iter()
        .filter_map(|n| PeerState::from_name(n))
        .collect();
    (!states.is_empty()).then_some(states)
}

/// `peermesh status`: the peer table (coloured on a terminal), its JSON, or with `--check`
/// one line for a monitoring system and its exit code.
pub(super) fn status(args: StatusArgs) -> Result<(), Failure> {
    if args.check {
        return check(&args.target);
    }
    let path = control_path(&args.target)?;
    let (mut report, json) = fetch_status(&path)?;
    let states = states(&args.state);
    if args.json {
        return match states {
            Some(states) => {
                report.retain_states(&states);
                emit(format!("{}\n", report.to_json()))
            }
            None => emit(json),
        };
    }
    let options = TableOptions {
        color: std::io::stdout().is_terminal() && colour_allowed(),
        states,
        widths: TableWidths::default(),
    };
    emit(report.render_table(&options).0)
}

/// `status --check`: `PEERMESH OK - ...` and exit 0 when every peer is alive, `PEERMESH
/// WARNING - ...` and exit 1 when any is not, `PEERMESH UNKNOWN - why` and exit 3 when the
/// node cannot be asked (or the socket not found).
fn check(target: &TargetArgs) -> Result<(), Failure> {
    match control_path(target).and_then(|path| fetch_status(&path)) {
        Ok((report, _)) => {
            let health = report.health();
            emit(format!("{}\n", health.line()))?;
            if health.ok() {
                Ok(())
            } else {
                Err(Failure::Exit(1))
            }
        }
        Err(Failure::ClosedPipe) => Err(Failure::ClosedPipe),
        Err(why) => {
            emit(format!("PEERMESH UNKNOWN - {}\n", why.message()))?;
            Err(Failure::Exit(CHECK_UNKNOWN))
        }
    }
}

/// `peermesh top`: the peer table once a second until Ctrl-C (or `--count` frames). A node
/// that does not answer (stopped, restarting) gets a `reconnecting to PATH (why)` line, and
/// is asked again each second until it answers (each request waits at most a second, so a
/// hung node delays neither a frame nor Ctrl-C); a socket served by another user, in a
/// directory others control, or that this user may not open, ends it at once (exit 1). On a terminal it draws on the alternate
/// screen, which it leaves on any exit, Ctrl-C included; to a pipe it prints plain frames.
pub(super) fn top(args: TopArgs) -> Result<(), Failure> {
    let path = control_path(&args.target)?;
    let tty = std::io::stdout().is_terminal();
    let mut interrupts =
        Interrupts::new().map_err(|e| Failure::Runtime(format!("cannot catch Ctrl-C: {e}")))?;
    let screen = Screen::enter(tty)?;
    let footer = format!("(Ctrl-C to quit; from another terminal: {})", reach(&path));
    let mut options = TableOptions {
        color: tty && colour_allowed(),
        states: states(&args.state),
        widths: TableWidths::default(),
    };
    let mut shown = 0u64;
    loop {
        // A hung node (stopped, not dead) costs at most one interval, so Ctrl-C is honoured
        // within about a second and the reconnecting line shows.
        let (frame, failure) = match fetch(&path, TOP_INTERVAL) {
            Ok((report, _)) => {
                let (table, widths) = report.render_table(&options);
                options.widths = widths;
                (table, None)
            }
            Err(NoStatus {
                failure,
                settled: true,
            }) => return Err(failure),
            Err(NoStatus { failure: why, .. }) => {
                let line = format!(
                    "reconnecting to {} ({}); retrying every {} s\n",
                    path.display(),
                    why.message(),
                    TOP_INTERVAL.as_secs()
                );
                (line, Some(why))
            }
        };
        screen.draw(&frame, &footer)?;
        shown += 1;
        if args.count.is_some_and(|n| shown >= n) {
            drop(screen);
            return failure.map_or(Ok(()), Err);
        }
        if interrupts
            .wait(TOP_INTERVAL)
            .map_err(|e| Failure::Runtime(format!("cannot wait: {e}")))?
        {
            // Ctrl-C (or SIGTERM, SIGHUP): the normal way out; the screen is restored.
            return Ok(());
        }
    }
}

/// The command that shows this node's table from another terminal: this binary's full path
/// (it may not be on `PATH`, as under `make run`) and the socket's.
fn reach(path: &Path) -> String {
    let bin = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "peermesh".to_owned());
    let socket = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    format!("{bin} status --control {}", socket.display())
}

/// What gives the terminal back: shows the cursor, leaves the alternate screen.
const LEAVE_SCREEN: &str = "\x1b[?25h\x1b[?1049l";

/// Whether `top` has the alternate screen up, for the panic hook.
static ON_ALTERNATE_SCREEN: AtomicBool = AtomicBool::new(false);

/// Where `top` draws: the alternate screen of a terminal (left again when this is
/// dropped, whatever ends `top`, and by a panic hook: release builds abort on a panic,
/// so no drop runs then), or plain frames one after another.
struct Screen {
    tty: bool,
}

impl Screen {
    /// On a terminal, switches to the alternate screen and hides the cursor, with a panic
    /// hook that gives the terminal back before the default hook prints the panic.
    fn enter(tty: bool) -> Result<Screen, Failure> {
        if tty {
            static HOOK: Once = Once::new();
            HOOK.call_once(|| {
                let default = std::panic::take_hook();
                std::panic::set_hook(Box::new(move |info| {
                    if ON_ALTERNATE_SCREEN.swap(false, Ordering::SeqCst) {
                        let mut out = std::io::stdout();
                        let _ = out.write_all(LEAVE_SCREEN.as_bytes());
                        let _ = out.flush();
                    }
                    default(info);
                }));
            });
            ON_ALTERNATE_SCREEN.store(true, Ordering::SeqCst);
            emit("\x1b[?1049h\x1b[?25l")?;
        }
        Ok(Screen { tty })
    }

    /// Draws one frame: over the last one on a terminal (each line cleared to its end,
    /// the rest of the screen below), with the footer; else the frame and a blank line.
    fn draw(&self, frame: &str, footer: &str) -> Result<(), Failure> {
        if !self.tty {
            return emit(format!("{frame}\n"));
        }
        let mut out = String::from("\x1b[H");
        for line in frame.lines().chain(["", footer]) {
            out.push_str(line);
            out.push_str("\x1b[K\n");
        }
        out.push_str("\x1b[J");
        emit(out)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        if self.tty && ON_ALTERNATE_SCREEN.swap(false, Ordering::SeqCst) {
            let _ = emit(LEAVE_SCREEN);
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP, caught (as a mio event) so `top` restores the terminal and
/// exits 0 instead of dying with the alternate screen still up.
struct Interrupts {
    poll: mio::Poll,
    events: mio::Events,
    signals: signal_hook_mio::v1_0::Signals,
}

impl Interrupts {
    const TOKEN: mio::Token = mio::Token(0);

    fn new() -> std::io::Result<Interrupts> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let poll = mio::Poll::new()?;
        let mut signals = signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        poll.registry()
            .register(&mut signals, Self::TOKEN, mio::Interest::READABLE)?;
        Ok(Interrupts {
            poll,
            events: mio::Events::with_capacity(4),
            signals,
        })
    }

    /// Waits `period`; returns early with `true` when a signal came.
    fn wait(&mut self, period: Duration) -> std::io::Result<bool> {
        let deadline = Instant::now() + period;
        loop {
            if self.signals.pending().next().is_some() {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            match self.poll.poll(&mut self.events, Some(left)) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => other?,
            }
        }
    }
}

/// `peermesh matrix`: the latency matrix as a table, its JSON, or an SVG file (`--svg -`:
/// the SVG on standard output).
/// (`--json` with `--svg` is refused by the parser.)
pub(super) fn matrix(args: MatrixArgs) -> Result<(), Failure> {
    let path = control_path(&args.target)?;
    match &args.svg {
        Some(file) if file.as_os_str() == "-" => {
            emit(ask(&path, Request::Matrix(MatrixFormat::Svg))?)
        }
        Some(file) => {
            let svg = ask(&path, Request::Matrix(MatrixFormat::Svg))?;
            std::fs::write(file, svg)
                .map_err(|e| Failure::Runtime(format!("cannot write {}: {e}", file.display())))?;
            emit(format!("wrote {}\n", file.display()))
        }
        None => emit(ask(
            &path,
            Request::Matrix(if args.json {
                MatrixFormat::Json
            } else {
                MatrixFormat::Table
            }),
        )?),
    }
}
