//! `peermesh run`: one node in its own mio loop, with its control socket and signals.
//!
//! One thread, one `mio::Poll`: the UDP socket, the control socket and its clients, and
//! SIGINT/SIGTERM are all event sources; the core's next deadline is the poll timeout. An
//! idle node sleeps in `epoll_wait` until its next heartbeat is due.

use crate::config::Config;
use crate::config::KeyFileError;
use crate::core::mesh::Event as MeshEvent;
use crate::io::control::{ControlError, ControlServer, MatrixFormat, Reply, Request};
use crate::io::control_protocol::{json_string, ok_prefix};
use crate::io::driver::{Node, StartError};
use crate::report::matrix_report::MatrixRender;
use crate::report::status::StatusReport;
use crate::wire::keyring::Keyring;
use log::{debug, info, warn};
use mio::{Events, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use std::fmt;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const UDP: Token = Token(0);
const SIGNALS: Token = Token(1);
const CONTROL: Token = Token(2);
const FIRST_CLIENT: usize = 16;

/// What `peermesh run` was asked to do.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The config, already loaded.
    pub config: Config,
    /// Which node of it this is.
    pub me: usize,
    /// Bind this address instead of the node's own entry.
    pub bind: Option<SocketAddr>,
    /// The control socket path.
    pub control: PathBuf,
}

/// Why the node stopped with an error.
#[derive(Debug)]
pub enum RunError {
    /// It could not start (config, UDP bind).
    Start(StartError),
    /// The control socket could not be opened.
    Control(ControlError),
    /// The key file named in the config was refused at start ([`StartError::Keyring`],
    /// told apart because it is the operator's to fix, like the config).
    Keyring(KeyFileError),
    /// The event loop failed.
    Io(io::Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Start(e) => write!(f, "{e}"),
            RunError::Control(e) => write!(f, "{e}"),
            RunError::Keyring(e) => write!(f, "{e}"),
            RunError::Io(e) => write!(f, "event loop: {e}"),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The wrappers show their inner error's message as their own: its source is theirs.
        match self {
            RunError::Start(e) => e.source(),
            RunError::Control(e) => e.source(),
            RunError::Keyring(e) => e.source(),
            RunError::Io(e) => Some(e),
        }
    }
}

impl From<io::Error> for RunError {
    fn from(e: io::Error) -> RunError {
        RunError::Io(e)
    }
}

/// Reads the key file the config names, if any: [`Config::load_keyring`], which callers
/// should use instead (this stays until `peermesh check` and the load generator do).
pub fn load_keyring(config: &Config) -> Result<Option<Keyring>, KeyFileError> {
    config.load_keyring()
}

/// Runs the node until SIGINT or SIGTERM, then says `Leave` to every peer and returns.
/// SIGHUP re-reads the key file (for key rotation without downtime).
pub fn run(opts: RunOptions) -> Result<(), RunError> {
    // The node reads the key file itself; a refused one is the operator's to fix (exit 2).
    let mut node = Node::from_config(&opts.config, opts.me, opts.bind).map_err(|e| match e {
        StartError::Keyring(e) => RunError::Keyring(e),
        other => RunError::Start(other),
    })?;
    let mut control = ControlServer::bind(&opts.control).map_err(RunError::Control)?;
    let mut poll = Poll::new()?;
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    node.register(poll.registry(), UDP)?;
    control.register(poll.registry(), CONTROL, FIRST_CLIENT)?;
    poll.registry()
        .register(&mut signals, SIGNALS, mio::Interest::READABLE)?;
    info!(
        "node {} (incarnation {:016x}) on udp {}, {} peers, heartbeat every {:?}, control socket {}",
        node.mesh().name(),
        node.mesh().incarnation(),
        node.local_addr()?,
        node.mesh().peer_count(),
        node.settings().heartbeat_interval,
        control.path().display()
    );
    node.handle_timeout(poll.registry(), Instant::now())?;
    let mut events = Events::with_capacity(256);
    loop {
        let deadline = [node.poll_timeout(), control.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        // Round the sleep up to a whole millisecond, as epoll does: waking early would spin.
        // Datagrams left unread by the batch limit are read at once, without sleeping.
        // So are the next steps of a large control answer (interleaved with the above).
        let timeout = if node.has_unread() || control.has_work() {
            Some(Duration::ZERO)
        } else {
            deadline.map(|at| {
                let d = at.saturating_duration_since(Instant::now());
                Duration::from_millis(d.as_micros().div_ceil(1000) as u64)
            })
        };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        let mut stop = false;
        for event in events.iter() {
            match event.token() {
                UDP => node.handle_event(poll.registry(), event)?,
                SIGNALS => {
                    for signal in signals.pending() {
                        if signal == SIGHUP {
                            reload_keyring(&opts.config, &mut node);
                        } else {
                            info!("signal {signal} received: leaving the mesh");
                            stop = true;
                        }
                    }
                }
                token if control.owns(token) => {
                    let now = Instant::now();
                    control.handle_event(poll.registry(), event, now, &mut |request| {
                        answer(&node, request)
                    });
                }
                token => debug!("event for unknown token {token:?} ignored"),
            }
        }
        let now = Instant::now();
        node.handle_timeout(poll.registry(), now)?;
        control.pump(poll.registry(), now);
        control.sweep(poll.registry(), now);
        while let Some(event) = node.poll_event() {
            log_event(&node, &event);
        }
        if stop {
            node.leave(poll.registry())?;
            if node.queued() > 0 {
                warn!("{} goodbye datagrams could not be sent", node.queued());
            }
            info!("node {} stopped", node.mesh().name());
            return Ok(());
        }
    }
}

fn reload_keyring(config: &Config, node: &mut Node) {
    if config.keyring.is_none() {
        info!("SIGHUP: no keyring in the config, nothing to reload");
        return;
    }
    match config.load_keyring() {
        Ok(keyring) => node.mesh_mut().set_keyring(keyring),
        Err(e) => warn!("SIGHUP: keeping the current keys: {e}"),
    }
}

/// The answer to one control request, in control protocol 1 (`docs/CONTROL.md`): the one
/// function behind `peermesh run`'s control socket, for embedders to serve the same. The
/// matrix (up to a million cells) is a snapshot rendered in steps; the peer table is small
/// enough to render at once.
pub fn answer(node: &Node, request: Request) -> Reply {
    match request {
        Request::Ping => Reply::Text(format!("{}true}}", ok_prefix("pong"))),
        Request::Matrix(format) => {
            let mut render = MatrixRender::new(node.mesh().matrix_snapshot(), format);
            let json = format == MatrixFormat::Json;
            let mut opened = false;
            Reply::Steps(Box::new(move |out| {
                if !opened {
                    opened = true;
                    out.extend_from_slice(
                        ok_prefix(if json { "matrix" } else { "text" }).as_bytes(),
                    );
                    if !json {
                        out.push(b'"');
                    }
                }
                let more = if json {
                    render.next_chunk(out)
                } else {
                    // Text travels as a JSON string: each part escaped on its own (parts end
                    // between rows, never inside a character).
                    let mut part = Vec::new();
                    let more = render.next_chunk(&mut part);
                    let quoted = json_string(&String::from_utf8_lossy(&part));
                    out.extend_from_slice(&quoted.as_bytes()[1..quoted.len() - 1]);
                    more
                };
                if !more {
                    out.extend_from_slice(if json { b"}\n" } else { b"\"}\n" });
                }
                more
            }))
        }
        Request::Status { json, color } => {
            let report = StatusReport::new(node.mesh(), Instant::now(), Some(node.io_counters()));
            Reply::Text(if json {
                format!("{}{}}}", ok_prefix("status"), report.to_json())
            } else {
                format!(
                    "{}{}}}",
                    ok_prefix("text"),
                    json_string(&report.to_table(color))
                )
            })
        }
    }
}

fn log_event(node: &Node, event: &MeshEvent) {
    // State changes are logged by the core itself; data events are logged here.
    if let MeshEvent::Data { from, payload } = event {
        let name = node.mesh().peer(*from).map_or("?", |p| p.name());
        info!("{} bytes of data from {name}", payload.len());
    }
}
