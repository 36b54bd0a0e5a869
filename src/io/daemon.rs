//! `peermesh run`: one node in its own mio loop, with its control socket and signals.
//!
//! One thread, one `mio::Poll`: the UDP socket, the control socket and its clients, the
//! event handler's children (with `--handler`), and SIGINT/SIGTERM are all event sources; the core's next deadline is the poll timeout. An
//! idle node sleeps in `epoll_wait` until its next heartbeat is due.

use crate::config::Config;
use crate::config::KeyFileError;
use crate::core::{Event as MeshEvent, Mesh};
use crate::io::control::{ControlError, ControlServer};
use crate::io::driver::{Node, StartError};
use crate::io::handlers::{HandlerJob, HandlerLimits, Handlers};
use crate::io::tags_file;
use crate::report::event_record::EventRecord;
use crate::wire::keyring::Keyring;
use log::{debug, info, warn};
use mio::{Events, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use std::fmt;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;
use std::time::SystemTime;

const UDP: Token = Token(0);
const SIGNALS: Token = Token(1);
const CONTROL: Token = Token(2);
const FIRST_CLIENT: usize = 16;
/// The event handler's tokens (SIGCHLD, then three pipes per run) follow the control
/// socket's clients.
const FIRST_HANDLER: usize = FIRST_CLIENT + crate::io::control::MAX_CONNECTIONS;

/// What `peermesh run` was asked to do.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The config, already loaded.
    pub config: Config,
    /// Which node of it this is.
    pub me: usize,
    /// Bind this address instead of the node's own entry.
    pub bind: Option<SocketAddr>,
    /// The event handler program (`--handler`, else the config's `handler`), run for each
    /// event by [`crate::io::handlers::Handlers`]; `None`: no handler.
    pub handler: Option<PathBuf>,
    /// The control socket path.
    pub control: PathBuf,
    /// The group (gid) to give the control socket to, mode 0660; `None`: mode 0600.
    pub control_group: Option<u32>,
    /// Where run-time tag changes are kept (`--tags-file`): read at start, over the
    /// config's tags, and rewritten at each change. `None`: changes are lost on restart.
    pub tags_file: Option<PathBuf>,
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
    /// The tags file could not be read at start, or its tags were refused.
    TagsFile(String),
    /// The event loop failed.
    Io(io::Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Start(e) => write!(f, "{e}"),
            RunError::Control(e) => write!(f, "{e}"),
            RunError::Keyring(e) => write!(f, "{e}"),
            RunError::TagsFile(why) => f.write_str(why),
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
            RunError::TagsFile(_) => None,
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
    if let Some(path) = &opts.tags_file {
        restore_tags(path, &mut node)?;
    }
    let mut control =
        ControlServer::bind_for(&opts.control, opts.control_group).map_err(RunError::Control)?;
    if let Some(path) = &opts.tags_file {
        control.keep_tags_in(path.clone());
    }
    let mut poll = Poll::new()?;
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    node.register(poll.registry(), UDP)?;
    control.register(poll.registry(), CONTROL, FIRST_CLIENT)?;
    let mut handlers = match &opts.handler {
        Some(program) => {
            let control_path = control.path().display().to_string();
            let mut handlers: Handlers = Handlers::new(
                program.clone(),
                HandlerLimits::default(),
                node.mesh().name(),
            )
            .with_env("PEERMESH_CONTROL", &control_path);
            handlers.register(poll.registry(), Token(FIRST_HANDLER))?;
            info!("event handler {}", program.display());
            Some(handlers)
        }
        None => None,
    };
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
        // Datagrams left unread by the batch limit, and the next steps of a large control
        // answer, are served at once, without sleeping.
        let now = Instant::now();
        let handler_due = handlers.as_ref().and_then(Handlers::poll_timeout);
        let other = match (control.poll_timeout(now), handler_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = node.poll_delay(now, other);
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
                token if control.owns(token) => {} // served below, after the node's timers
                token if handlers.as_ref().is_some_and(|h| h.owns(token)) => {
                    if let Some(handlers) = handlers.as_mut() {
                        handlers.handle_event(poll.registry(), event);
                    }
                }
                token => debug!("event for unknown token {token:?} ignored"),
            }
        }
        let now = Instant::now();
        node.handle_timeout(poll.registry(), now)?;
        if let Some(handlers) = handlers.as_mut() {
            handlers.handle_timeout(poll.registry(), now);
            answer_queries(handlers, &mut node);
        }
        control.serve(poll.registry(), &events, &mut node, now);
        // What the requests and the handlers' answers made the core send goes out now.
        node.handle_timeout(poll.registry(), now)?;
        while let Some(event) = node.poll_event() {
            log_event(&node, &event);
            control.on_event(node.mesh(), &event);
            if let Some(handlers) = handlers.as_mut().filter(|_| for_handler(&event)) {
                handlers.run(poll.registry(), handler_job(node.mesh(), &event));
            }
        }
        control.flush(poll.registry(), now);
        if let Some(handlers) = handlers.as_mut() {
            // A handler refused at once (queue full, cannot start) answers with an error
            // now, not at the next turn.
            if answer_queries(handlers, &mut node) {
                node.handle_timeout(poll.registry(), now)?;
            }
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

/// Makes the tags of the file at `path`, if there is one, this node's tags (over the
/// config's).
fn restore_tags(path: &std::path::Path, node: &mut Node) -> Result<(), RunError> {
    let Some(tags) = tags_file::load(path).map_err(|e| RunError::TagsFile(e.to_string()))? else {
        info!(
            "tags file {} does not exist yet: the config's tags stand",
            path.display()
        );
        return Ok(());
    };
    let mut changes: Vec<(String, Option<String>)> = node
        .mesh()
        .tags()
        .keys()
        .filter(|key| !tags.contains_key(*key))
        .map(|key| (key.clone(), None))
        .collect();
    changes.extend(tags.into_iter().map(|(key, value)| (key, Some(value))));
    node.mesh_mut()
        .set_tags(&changes)
        .map_err(|e| RunError::TagsFile(format!("tags file {}: {e}", path.display())))?;
    info!(
        "tags from {}: {} keys",
        path.display(),
        node.mesh().tags().len()
    );
    Ok(())
}

/// Whether the event handler runs for `event`: for what happens to the peers and what they
/// send (as Serf's handlers get member events, user events and queries), not for the
/// outcomes of this node's own requests (`delivered`, `failed`, `query_ack`,
/// `query_response`, `query_done`): those go to whoever asked, `send`, `query` or `watch`.
/// At the asker of a query to N nodes they would be 2N runs, each a fork and exec, competing
/// with the answers.
fn for_handler(event: &MeshEvent) -> bool {
    !matches!(
        event,
        MeshEvent::Delivered { .. }
            | MeshEvent::Failed { .. }
            | MeshEvent::QueryAck { .. }
            | MeshEvent::QueryResponse { .. }
            | MeshEvent::QueryDone { .. }
    )
}

/// The event handler's job for one core event: the event's record (`watch --json`'s
/// fields as `PEERMESH_*` variables, the payload for stdin), and for a query which one to
/// answer.
fn handler_job(mesh: &Mesh, event: &MeshEvent) -> HandlerJob {
    let record = EventRecord::from_event(mesh, event, SystemTime::now());
    HandlerJob {
        event: record.event.to_owned(),
        peer: record.peer.clone(),
        env: record.env(),
        payload: record.payload.clone().unwrap_or_default(),
        query: match event {
            MeshEvent::Query { query, .. } => Some(*query),
            _ => None,
        },
    }
}

/// Sends the responses the handler's finished query runs gave; whether there were any.
fn answer_queries(handlers: &mut Handlers, node: &mut Node) -> bool {
    let mut any = false;
    while let Some((query, response, error)) = handlers.poll_response() {
        any = true;
        if let Err(e) = node.mesh_mut().respond(query, &response, error) {
            warn!("event handler: the response to a query was not sent: {e}");
        }
    }
    any
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

fn log_event(node: &Node, event: &MeshEvent) {
    // State changes are logged by the core itself; data events are logged here.
    if let MeshEvent::Message { from, payload, .. } = event {
        let name = node.mesh().peer(*from).map_or("?", |p| p.name());
        info!("message of {} bytes from {name}", payload.len());
    }
}
