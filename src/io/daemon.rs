//! `peermesh run`: one node in its own mio loop, with its control socket and signals.
//!
//! One thread, one `mio::Poll`: the UDP socket, the control socket and its clients, the
//! event handler's children (with `--handler`), and SIGINT/SIGTERM are all event sources; the core's next deadline is the poll timeout. An
//! idle node sleeps in `epoll_wait` until its next heartbeat is due.

use crate::config::Config;
use crate::config::ConfigError;
use crate::config::KeyFileError;
use crate::core::{Event as MeshEvent, Mesh};
use crate::io::control::{ControlError, ControlServer};
use crate::io::control_protocol::{error_line, ok_line};
use crate::io::driver::{Node, StartError};
use crate::io::handlers::{HandlerJob, HandlerLimits, Handlers};
use crate::io::host_names::NameChange;
use crate::io::http::HttpServer;
use crate::io::reload::Reloader;
use crate::io::resolver::{Lookup, Resolver};
use crate::io::tags_file;
use crate::report::event_record::EventRecord;
use crate::report::reload_report::ReloadReport;
use crate::wire::keyring::Keyring;
use log::{debug, error, info, warn};
use mio::{Events, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use std::fmt;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::SystemTime;
use std::time::{Duration, Instant};

const UDP: Token = Token(0);
const SIGNALS: Token = Token(1);
const CONTROL: Token = Token(2);
/// The resolver thread's answers wake the loop with this token.
const RESOLVER: Token = Token(3);
/// The HTTP listener; its connections' tokens start at [`FIRST_HTTP`].
const HTTP: Token = Token(4);
/// The HTTP connections' tokens, far past every other range.
const FIRST_HTTP: usize = 1 << 20;
/// How long the node waits at start for its peers' host names before it starts without the
/// ones that have not answered (they join when they do).
const START_RESOLVE_WAIT: Duration = Duration::from_secs(2);
const FIRST_CLIENT: usize = 16;
/// The event handler's tokens (SIGCHLD, then three pipes per run) follow the control
/// socket's clients.
const FIRST_HANDLER: usize = FIRST_CLIENT + crate::io::control::MAX_CONNECTIONS;

/// What `peermesh run` was asked to do.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The config, already loaded.
    pub config: Config,
    /// The file it was loaded from, read again on SIGHUP and `peermesh reload`; `None`:
    /// reloads are refused.
    pub config_path: Option<PathBuf>,
    /// Which node of it this is.
    pub me: usize,
    /// Bind this address instead of the node's own entry.
    pub bind: Option<SocketAddr>,
    /// The event handler program (`--handler`, else the config's `handler`), run for each
    /// event by [`crate::io::handlers::Handlers`]; `None`: no handler.
    pub handler: Option<PathBuf>,
    /// The control socket path.
    pub control: PathBuf,
    /// Where to serve HTTP (`--http`, else the config's `http_listen`); `None`: no HTTP.
    pub http: Option<SocketAddr>,
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
    /// The HTTP endpoint could not listen.
    Http(crate::io::http::HttpError),
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
            RunError::Http(e) => write!(f, "{e}"),
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
            RunError::Http(e) => Some(e),
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
/// SIGHUP (like `peermesh reload`) re-reads the config file and the key file and applies
/// what changed ([`Reloader`]). Peers' host names are resolved on a helper thread
/// ([`Resolver`]), again every `resolve_interval_ms` and when their peer turns dead.
pub fn run(opts: RunOptions) -> Result<(), RunError> {
    let mut poll = Poll::new()?;
    let mut resolver = Resolver::start(poll.registry(), RESOLVER)?;
    let addrs = resolve_at_start(&opts.config, &mut poll, &mut resolver)?;
    // The node reads the key file itself; a refused one is the operator's to fix (exit 2).
    let mut node =
        Node::from_addrs(&opts.config, opts.me, opts.bind, addrs).map_err(|e| match e {
            StartError::Keyring(e) => RunError::Keyring(e),
            other => RunError::Start(other),
        })?;
    let mut reloader = opts.config_path.clone().map(|path| {
        Reloader::new(path, opts.config.clone(), node.mesh().name())
            .keeping_tags_in(opts.tags_file.clone())
    });
    if let Some(path) = &opts.tags_file {
        restore_tags(path, &mut node)?;
    }
    let mut control =
        ControlServer::bind_for(&opts.control, opts.control_group).map_err(RunError::Control)?;
    if let Some(path) = &opts.tags_file {
        control.keep_tags_in(path.clone());
    }
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
    let mut http = match opts.http {
        Some(addr) => {
            let mut server = HttpServer::bind(addr).map_err(RunError::Http)?;
            server.register(poll.registry(), HTTP, FIRST_HTTP)?;
            Some(server)
        }
        None => None,
    };
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
    // Bound and serving: systemd (Type=notify) may start what depends on the node.
    crate::io::notify::ready();
    let mut events = Events::with_capacity(256);
    loop {
        // Datagrams left unread by the batch limit, and the next steps of a large control
        // answer, are served at once, without sleeping.
        let now = Instant::now();
        let handler_due = handlers.as_ref().and_then(Handlers::poll_timeout);
        let names_due = node.host_names().poll_timeout();
        let http_due = http.as_ref().and_then(HttpServer::poll_timeout);
        let other = [control.poll_timeout(now), handler_due, names_due, http_due]
            .into_iter()
            .flatten()
            .min();
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
                RESOLVER => take_answers(&mut resolver, &mut node),
                SIGNALS => {
                    for signal in signals.pending() {
                        if signal == SIGHUP {
                            info!("SIGHUP: reloading");
                            // The outcome is logged; there is no one else to tell.
                            let _ = reload(reloader.as_mut(), &mut node);
                        } else {
                            info!("signal {signal} received: leaving the mesh");
                            crate::io::notify::stopping();
                            stop = true;
                        }
                    }
                }
                token if control.owns(token) => {} // served below, after the node's timers
                token if http.as_ref().is_some_and(|h| h.owns(token)) => {} // likewise
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
        ask_names(&mut resolver, &mut node, now);
        if let Some(http) = http.as_mut() {
            http.serve(poll.registry(), &events, &node, now);
        }
        control.serve_with_reload(
            poll.registry(),
            &events,
            &mut node,
            now,
            &mut |node| match reload(reloader.as_mut(), node) {
                Ok(report) => ok_line("reload", &report),
                Err(why) => error_line(&why),
            },
        );
        // What the requests and the handlers' answers made the core send goes out now.
        node.handle_timeout(poll.registry(), now)?;
        while let Some(event) = node.poll_event() {
            log_event(&node, &event);
            resolve_again_if_lost(&mut node, &event, now);
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
/// `query_response`, `query_done`, `measured`): those go to whoever asked, `send`, `query` or `watch`.
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
            | MeshEvent::Measured { .. }
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

/// Reloads the config (SIGHUP, `peermesh reload`): what changed, or the error, which is
/// also logged (`error: peers.ron:L:C: ...`) while the node runs on as it was.
fn reload(reloader: Option<&mut Reloader>, node: &mut Node) -> Result<ReloadReport, String> {
    let Some(reloader) = reloader else {
        let why = "this node was started without a config file: there is nothing to reload";
        warn!("{why}");
        return Err(why.to_owned());
    };
    crate::io::notify::reloading();
    let outcome = reloader.reload(node, Instant::now()).map_err(|e| {
        error!("reload refused, running on the old config: {e}");
        e.to_string()
    });
    crate::io::notify::ready();
    outcome
}

/// Asks the resolver thread for every peer's name that is due. A full queue is no error:
/// the name waits for its next turn.
fn ask_names(resolver: &mut Resolver, node: &mut Node, now: Instant) {
    for lookup in node.host_names_mut().due(now) {
        if !resolver.lookup(lookup.clone()) {
            node.host_names_mut().not_asked(&lookup, now);
        }
    }
}

/// Takes the resolver's answers: a peer whose name resolved for the first time joins the
/// core, one whose name moved is pointed at its new address.
fn take_answers(resolver: &mut Resolver, node: &mut Node) {
    let now = Instant::now();
    while let Some(answer) = resolver.poll_answer() {
        for change in node.host_names_mut().answer(&answer, now) {
            match change {
                NameChange::Resolved { peer, addr } => {
                    node.mesh_mut().add_peer(&peer, addr);
                }
                NameChange::Moved { peer, addr } => {
                    if let Some(id) = node.mesh().peer_by_name(&peer) {
                        node.mesh_mut().set_peer_addr(id, addr);
                    }
                }
            }
        }
    }
}

/// A peer that turned dead or unreachable may have come back elsewhere: its name (if it has
/// one) is resolved again at once.
fn resolve_again_if_lost(node: &mut Node, event: &MeshEvent, now: Instant) {
    if let MeshEvent::Down(id) | MeshEvent::Unreachable(id) = event {
        if let Some(name) = node.mesh().peer(*id).map(|p| p.name().to_owned()) {
            node.host_names_mut().resolve_soon(&name, now);
        }
    }
}

/// Every node's address at start: IP literals as they are, host names from the resolver
/// thread, waiting at most [`START_RESOLVE_WAIT`] for them all (the loop is not running yet;
/// a name that has not answered by then is `unresolved`, and joins when it answers).
fn resolve_at_start(
    config: &Config,
    poll: &mut Poll,
    resolver: &mut Resolver,
) -> io::Result<Vec<Result<SocketAddr, ConfigError>>> {
    let mut addrs: Vec<Option<Result<SocketAddr, ConfigError>>> = Vec::new();
    for (i, node) in config.nodes.iter().enumerate() {
        match node.literal_addr() {
            Some(addr) => addrs.push(Some(Ok(addr))),
            None => {
                let lookup = Lookup {
                    host: node.host.clone(),
                    port: node.port,
                };
                if !resolver.lookup(lookup) {
                    addrs.push(Some(config.resolve(i)));
                } else {
                    addrs.push(None);
                }
            }
        }
    }
    let deadline = Instant::now() + START_RESOLVE_WAIT;
    let mut events = Events::with_capacity(4);
    while addrs.iter().any(Option::is_none) {
        while let Some(answer) = resolver.poll_answer() {
            for (slot, node) in addrs.iter_mut().zip(&config.nodes) {
                if slot.is_none()
                    && node.host == answer.lookup.host
                    && node.port == answer.lookup.port
                {
                    *slot = Some(match &answer.result {
                        // IPv4 first, as `Config::resolve` prefers it.
                        Ok(list) => Ok(list
                            .iter()
                            .find(|a| a.is_ipv4())
                            .or_else(|| list.first())
                            .copied()
                            .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
                            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))),
                        Err(why) => Err(unresolved(node, why)),
                    });
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || addrs.iter().all(Option::is_some) {
            break;
        }
        match poll.poll(&mut events, Some(left)) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => other?,
        }
    }
    Ok(addrs
        .into_iter()
        .zip(&config.nodes)
        .map(|(slot, node)| {
            slot.unwrap_or_else(|| {
                Err(unresolved(
                    node,
                    &format!("no answer within {START_RESOLVE_WAIT:?}"),
                ))
            })
        })
        .collect())
}

fn unresolved(node: &crate::config::NodeEntry, why: &str) -> ConfigError {
    ConfigError::resolve_failed(&node.name, &node.host, node.port, why)
}

fn log_event(node: &Node, event: &MeshEvent) {
    // State changes are logged by the core itself; data events are logged here.
    if let MeshEvent::Message { from, payload, .. } = event {
        let name = node.mesh().peer(*from).map_or("?", |p| p.name());
        info!("message of {} bytes from {name}", payload.len());
    }
}
