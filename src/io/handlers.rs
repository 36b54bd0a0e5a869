//! Event handlers: a program the node runs for each event, without blocking its loop.
//!
//! `peermesh run --handler PATH` (or `handler:` in `peers.ron`) names a program, usually a
//! shell script, that is run once per event: for programs that are not Rust and not
//! long-running. [`Handlers`] runs it from the node's one mio loop thread:
//!
//! - the environment holds `PEERMESH_EVENT`, `PEERMESH_NODE` (this node), `PEERMESH_PEER`
//!   (when the event concerns a peer) and the event's own fields ([`HandlerJob::env`]), on
//!   top of the node's own environment; the payload is written to stdin, then stdin is
//!   closed;
//! - for a query ([`HandlerJob::query`]), what the program writes to stdout (at most
//!   [`HandlerLimits::max_output`] bytes; more is read, dropped and logged) is the response,
//!   and a non-zero exit, or a kill, an error response ([`Handlers::poll_response`]); for
//!   other events stdout is discarded;
//! - every line on stderr is logged (at most [`HandlerLimits::max_log_lines`] per run), with
//!   the run's pid and event;
//! - at most [`HandlerLimits::max_running`] runs at once; more jobs wait in a queue of at
//!   most [`HandlerLimits::max_queued`], and past it they are dropped, counted and warned
//!   about (a dropped query gets an error response at once);
//! - a run still going after [`HandlerLimits::time_limit`] is killed with SIGKILL, with
//!   everything it started (each run is a process group of its own);
//! - every child is reaped: on SIGCHLD (a signal-hook-mio source), when its pipes close, and
//!   at every timeout.
//!
//! All pipes are non-blocking and registered with the caller's [`Registry`]; the only
//! blocking call is the spawn itself (fork and exec, see [`Handlers::run`]).
//!
//! The driving contract is the one of the other I/O parts: [`Handlers::register`] once;
//! [`Handlers::run`] for each event; [`Handlers::handle_event`] for each readiness event
//! whose token [`Handlers::owns`]; [`Handlers::handle_timeout`] once the instant of
//! [`Handlers::poll_timeout`] is reached (extra calls are harmless); then drain
//! [`Handlers::poll_response`] and answer each query with it.
//!
//! ```no_run
//! use mio::{Events, Poll, Token};
//! use peermesh::io::handlers::{HandlerJob, HandlerLimits, Handlers};
//! use std::time::Instant;
//!
//! # fn main() -> std::io::Result<()> {
//! let mut poll = Poll::new()?;
//! let mut handlers: Handlers<u64> =
//!     Handlers::new("/etc/peermesh/handler".into(), HandlerLimits::default(), "alpha");
//! handlers.register(poll.registry(), Token(100))?;
//! handlers.run(poll.registry(), HandlerJob {
//!     event: "query".into(),
//!     peer: Some("beta".into()),
//!     env: vec![],
//!     payload: b"uptime".to_vec(),
//!     query: Some(7),
//! });
//! let mut events = Events::with_capacity(64);
//! loop {
//!     let timeout = handlers
//!         .poll_timeout()
//!         .map(|at| at.saturating_duration_since(Instant::now()));
//!     poll.poll(&mut events, timeout)?;
//!     for event in events.iter() {
//!         if handlers.owns(event.token()) {
//!             handlers.handle_event(poll.registry(), event);
//!         }
//!     }
//!     handlers.handle_timeout(poll.registry(), Instant::now());
//!     while let Some((query, response, error)) = handlers.poll_response() {
//!         println!("query {query}: {} bytes, error: {error}", response.len());
//!     }
//! }
//! # }
//! ```

use crate::core::QueryRef;
use log::{debug, info, warn};
use mio::event::Event;
use mio::unix::pipe::{Receiver, Sender};
use mio::{Interest, Registry, Token};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use signal_hook::consts::SIGCHLD;
use signal_hook_mio::v1_0::Signals;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How many runs go on at once by default.
pub const DEFAULT_MAX_RUNNING: usize = 8;
/// How many jobs wait for a free run by default.
pub const DEFAULT_MAX_QUEUED: usize = 256;
/// How long a run may take by default before it is killed.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(10);
/// The most stdout bytes kept as a query's response by default: the largest payload the
/// mesh carries (64 KiB).
pub const DEFAULT_MAX_OUTPUT: usize = 65_536;
/// How many stderr lines of one run are logged by default.
pub const DEFAULT_MAX_LOG_LINES: usize = 32;

/// The longest stderr line logged, in bytes; the rest of a longer line is dropped.
const MAX_LINE: usize = 1024;
/// How much of the end of stderr an error response quotes, in bytes.
const STDERR_TAIL: usize = 1024;
/// How often a killed run, or one that exited with its pipes still open, is checked again.
const RECHECK: Duration = Duration::from_millis(50);
/// How long after a kill the pipes of a reaped run are waited for before they are closed
/// anyway (a grandchild that left the process group may hold them).
const KILL_GRACE: Duration = Duration::from_secs(1);
/// Reads of one pipe per call: a fast writer cannot hold the loop; the rest is read at the
/// next call, which [`Handlers::poll_timeout`] asks for at once.
const READS_PER_CALL: usize = 8;
/// The read buffer.
const READ_CHUNK: usize = 16 * 1024;

/// The limits of a [`Handlers`]: concurrency, queue, time and output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerLimits {
    /// Runs at once (at least 1).
    pub max_running: usize,
    /// Jobs waiting for a free run; past it, jobs are dropped.
    pub max_queued: usize,
    /// The time a run may take; then it and everything it started are killed (SIGKILL).
    pub time_limit: Duration,
    /// The most stdout bytes kept as a query's response; more is read and dropped.
    pub max_output: usize,
    /// The most stderr lines of one run written to the log.
    pub max_log_lines: usize,
}

impl Default for HandlerLimits {
    fn default() -> HandlerLimits {
        HandlerLimits {
            max_running: DEFAULT_MAX_RUNNING,
            max_queued: DEFAULT_MAX_QUEUED,
            time_limit: DEFAULT_TIME_LIMIT,
            max_output: DEFAULT_MAX_OUTPUT,
            max_log_lines: DEFAULT_MAX_LOG_LINES,
        }
    }
}

/// One event for the handler to run for.
///
/// `Q` says which query to answer: the core's [`QueryRef`] (the default), or anything a
/// caller of its own uses; it comes back from [`Handlers::poll_response`] with the response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerJob<Q = QueryRef> {
    /// The event's name, in `PEERMESH_EVENT` (`up`, `message`, `query`, ...).
    pub event: String,
    /// The peer it concerns, in `PEERMESH_PEER` (left out of the environment when `None`).
    pub peer: Option<String>,
    /// The event's own fields, as environment variables (`PEERMESH_ID=7`, ...). Entries
    /// named `PEERMESH_EVENT`, `PEERMESH_NODE` or `PEERMESH_PEER` are ignored (the runner
    /// sets those from the job); a name that is empty or holds `=` or NUL, or a value
    /// holding NUL, is left out.
    pub env: Vec<(String, String)>,
    /// Written to the program's stdin (which is then closed); empty: stdin is `/dev/null`.
    pub payload: Vec<u8>,
    /// For a query: which one. Its stdout is then the response.
    pub query: Option<Q>,
}

/// What became of a job given to [`Handlers::run`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// It runs now.
    Started,
    /// It waits for a free run.
    Queued,
    /// It was dropped: the queue was full, the program could not be started, or the
    /// handlers are not registered yet. A query gets an error response.
    Dropped,
}

/// Counters of a [`Handlers`], since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandlerStats {
    /// Runs started.
    pub started: u64,
    /// Runs that exited 0.
    pub succeeded: u64,
    /// Runs that exited otherwise (non-zero, or a signal), kills included.
    pub failed: u64,
    /// Runs killed at their time limit.
    pub killed: u64,
    /// Jobs dropped: queue full, or the program could not be started.
    pub dropped: u64,
}

/// Why the handler program cannot be run, as [`check_program`] finds it.
#[derive(Debug)]
pub enum HandlerError {
    /// The path cannot be looked at (no such file, a directory on the way not searchable).
    Io {
        /// The program.
        path: PathBuf,
        /// What the system said.
        error: io::Error,
    },
    /// The path is not a regular file (a directory, a device, ...).
    NotAFile {
        /// The program.
        path: PathBuf,
    },
    /// The file has no execute permission.
    NotExecutable {
        /// The program.
        path: PathBuf,
    },
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerError::Io { path, error } => {
                write!(f, "event handler {}: {error}", path.display())
            }
            HandlerError::NotAFile { path } => {
                write!(f, "event handler {} is not a regular file", path.display())
            }
            HandlerError::NotExecutable { path } => write!(
                f,
                "event handler {} is not executable (chmod +x it)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for HandlerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandlerError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Whether `path` looks runnable: a regular file with an execute bit. A quick check for
/// `peermesh check` and the log at start; only running it proves it (an interpreter may be
/// missing).
pub fn check_program(path: &Path) -> Result<(), HandlerError> {
    let meta = std::fs::metadata(path).map_err(|error| HandlerError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    if !meta.is_file() {
        return Err(HandlerError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(HandlerError::NotExecutable {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Which pipe of a run a token stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pipe {
    Stdin,
    Stdout,
    Stderr,
}

const PIPES: [Pipe; 3] = [Pipe::Stdin, Pipe::Stdout, Pipe::Stderr];

/// The event handler runner: see the [module docs](self). `Q` is the query handle of
/// [`HandlerJob::query`], the core's [`QueryRef`] by default.
pub struct Handlers<Q = QueryRef> {
    program: PathBuf,
    limits: HandlerLimits,
    node: String,
    /// Variables every run gets (e.g. `PEERMESH_CONTROL`).
    base_env: Vec<(String, String)>,
    /// The SIGCHLD token; the pipes' tokens follow it. `None` until registered.
    first: Option<Token>,
    sigchld: Option<Signals>,
    /// One place per concurrent run; a run's tokens follow from its index.
    slots: Vec<Option<Run<Q>>>,
    queue: VecDeque<HandlerJob<Q>>,
    responses: VecDeque<(Q, Vec<u8>, bool)>,
    stats: HandlerStats,
    /// Jobs dropped since the queue last had room (for one warning per episode).
    dropped_while_full: Option<u64>,
    /// The program failed to start (or looked unusable) and this was logged: the next
    /// failure is not logged again until a start succeeds.
    unusable_logged: bool,
    /// Set when a pipe was left with data unread: the next call should come at once.
    more_since: Option<Instant>,
}

/// One running child.
struct Run<Q> {
    child: Child,
    pid: u32,
    event: String,
    query: Option<Q>,
    started: Instant,
    deadline: Instant,
    /// When to look again after a kill (instead of the deadline).
    recheck: Option<Instant>,
    killed_at: Option<Instant>,
    status: Option<ExitStatus>,
    stdin: Option<Sender>,
    payload: Vec<u8>,
    written: usize,
    stdout: Option<Receiver>,
    output: Vec<u8>,
    output_cut: usize,
    stderr: Option<Receiver>,
    line: Vec<u8>,
    line_cut: bool,
    lines_logged: usize,
    lines_unlogged: usize,
    tail: Vec<u8>,
}

impl<Q> Handlers<Q> {
    /// A runner of `program` for node `node` (its `PEERMESH_NODE`), within `limits`
    /// (`max_running` at least 1). Starts nothing; a program that does not look runnable
    /// ([`check_program`]) is warned about here, once, and every job is then dropped until
    /// it can be started (the node keeps running).
    pub fn new(program: PathBuf, limits: HandlerLimits, node: &str) -> Handlers<Q> {
        let mut limits = limits;
        limits.max_running = limits.max_running.max(1);
        let unusable_logged = match check_program(&program) {
            Ok(()) => false,
            Err(e) => {
                warn!("{e}: events will not be handled until it can be run");
                true
            }
        };
        Handlers {
            program,
            slots: (0..limits.max_running).map(|_| None).collect(),
            limits,
            node: node.to_string(),
            base_env: Vec::new(),
            first: None,
            sigchld: None,
            queue: VecDeque::new(),
            responses: VecDeque::new(),
            stats: HandlerStats::default(),
            dropped_while_full: None,
            unusable_logged,
            more_since: None,
        }
    }

    /// Adds `name=value` to the environment of every run: e.g. `PEERMESH_CONTROL` with the
    /// node's control socket, so a handler can call `peermesh tag set` or `send` back.
    pub fn with_env(mut self, name: &str, value: &str) -> Handlers<Q> {
        self.base_env.push((name.to_string(), value.to_string()));
        self
    }

    /// The program run for each event.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The limits in force.
    pub fn limits(&self) -> &HandlerLimits {
        &self.limits
    }

    /// How many tokens [`Handlers::register`] takes from `first_token` on:
    /// `1 + 3 × max_running` (SIGCHLD, then stdin, stdout and stderr of each run).
    pub fn token_count(&self) -> usize {
        1 + PIPES.len() * self.slots.len()
    }

    /// Registers the SIGCHLD source under `first_token` and reserves the
    /// [`Handlers::token_count`] tokens from it on for the runs' pipes. Call once, before
    /// [`Handlers::run`]; jobs given before are dropped.
    pub fn register(&mut self, registry: &Registry, first_token: Token) -> io::Result<()> {
        let mut signals = Signals::new([SIGCHLD])?;
        registry.register(&mut signals, first_token, Interest::READABLE)?;
        self.sigchld = Some(signals);
        self.first = Some(first_token);
        Ok(())
    }

    /// Whether `token` is one of this runner's.
    pub fn owns(&self, token: Token) -> bool {
        self.first
            .is_some_and(|first| (first.0..first.0 + self.token_count()).contains(&token.0))
    }

    /// Runs the handler for `job` now if fewer than `max_running` runs go on, else queues
    /// it; past `max_queued` waiting jobs it is dropped (and counted, and warned about once
    /// until the queue has room again). A dropped query gets an error response.
    ///
    /// Starting a run is the one blocking call of this type: `fork` and `exec` (the spawn
    /// returns once the child has exec'd, or failed to), well under a millisecond for a
    /// local program. Everything after it (stdin, stdout, stderr, the exit) is
    /// non-blocking.
    pub fn run(&mut self, registry: &Registry, job: HandlerJob<Q>) -> Admission {
        if self.first.is_none() {
            debug!(
                "event handler not registered yet: {} event dropped",
                job.event
            );
            self.drop_job(job, "the event handler is not ready");
            return Admission::Dropped;
        }
        if let Some(slot) = self.slots.iter().position(Option::is_none) {
            return match self.start(registry, slot, job) {
                Ok(()) => Admission::Started,
                Err(()) => Admission::Dropped,
            };
        }
        if self.queue.len() < self.limits.max_queued {
            self.queue.push_back(job);
            return Admission::Queued;
        }
        match &mut self.dropped_while_full {
            Some(n) => *n += 1,
            None => {
                warn!(
                    "event handler: {} runs going and {} jobs waiting, the most allowed: \
                     dropping {} event and those after it until a run ends",
                    self.slots.len(),
                    self.queue.len(),
                    job.event
                );
                self.dropped_while_full = Some(1);
            }
        }
        self.drop_job(job, "the event handler's queue is full");
        Admission::Dropped
    }

    /// Handles readiness for one of this runner's tokens (others are ignored): writes stdin,
    /// reads stdout and stderr, reaps children on SIGCHLD, and ends the runs that are done.
    pub fn handle_event(&mut self, registry: &Registry, event: &Event) {
        let Some(first) = self.first else { return };
        let Some(offset) = event.token().0.checked_sub(first.0) else {
            return;
        };
        if offset == 0 {
            if let Some(signals) = &mut self.sigchld {
                // Drain the notifications; which child it was does not matter.
                for _ in signals.pending() {}
            }
            for slot in 0..self.slots.len() {
                self.reap(slot);
                self.settle(registry, slot, None);
            }
            return;
        }
        let (slot, pipe) = (
            (offset - 1) / PIPES.len(),
            PIPES[(offset - 1) % PIPES.len()],
        );
        if slot >= self.slots.len() {
            return;
        }
        self.pump(registry, slot, pipe);
        self.settle(registry, slot, None);
    }

    /// Does what is due at `now`: kills runs past their time limit, reaps exited children,
    /// reads pipes left with data, and ends the runs that are done (starting queued jobs in
    /// their place). Harmless when called early or often.
    pub fn handle_timeout(&mut self, registry: &Registry, now: Instant) {
        let more = self.more_since.take().is_some();
        for slot in 0..self.slots.len() {
            if more {
                for pipe in PIPES {
                    self.pump(registry, slot, pipe);
                }
            }
            self.reap(slot);
            self.settle(registry, slot, Some(now));
        }
    }

    /// When [`Handlers::handle_timeout`] should next be called: the earliest time limit or
    /// re-check of a run, or an instant already past when a pipe has data left to read.
    /// `None` while nothing runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let runs = self
            .slots
            .iter()
            .flatten()
            .map(|run| run.recheck.unwrap_or(run.deadline));
        runs.chain(self.more_since).min()
    }

    /// The next finished query: which one, the response (the handler's stdout) and whether
    /// it is an error response (then the bytes say why, for a person).
    pub fn poll_response(&mut self) -> Option<(Q, Vec<u8>, bool)> {
        self.responses.pop_front()
    }

    /// How many runs go on now.
    pub fn running(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// How many jobs wait for a free run.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The counters since this runner was made.
    pub fn stats(&self) -> HandlerStats {
        self.stats
    }

    /// Starts `job` in `slot`. On failure the job is dropped (with an error response for a
    /// query).
    fn start(&mut self, registry: &Registry, slot: usize, job: HandlerJob<Q>) -> Result<(), ()> {
        let Some(first) = self.first else {
            self.drop_job(job, "the event handler is not ready");
            return Err(());
        };
        let mut command = Command::new(&self.program);
        for (name, value) in self.base_env.iter().chain(&job.env) {
            if is_fixed(name) {
                continue; // set below, from the job itself
            }
            if !valid_env(name, value) {
                debug!("event handler: variable {name:?} left out of the environment");
                continue;
            }
            command.env(name, value);
        }
        command
            .env("PEERMESH_EVENT", &job.event)
            .env("PEERMESH_NODE", &self.node);
        match &job.peer {
            Some(peer) if valid_env("PEERMESH_PEER", peer) => command.env("PEERMESH_PEER", peer),
            _ => command.env_remove("PEERMESH_PEER"),
        };
        command
            .stdin(if job.payload.is_empty() {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(if job.query.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped())
            // Its own process group: the time limit kills what it started too, and a
            // Ctrl-C at the node's terminal is the node's alone.
            .process_group(0);
        // The one blocking call (fork + exec): see `run`.
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                if !self.unusable_logged {
                    warn!(
                        "event handler {} cannot be run: {e}; events are dropped until it can",
                        self.program.display()
                    );
                    self.unusable_logged = true;
                } else {
                    debug!("event handler still cannot be run: {e}");
                }
                self.drop_job(job, "the event handler cannot be run");
                return Err(());
            }
        };
        if self.unusable_logged {
            info!("event handler {} runs again", self.program.display());
            self.unusable_logged = false;
        }
        let pid = child.id();
        let now = Instant::now();
        let stdin = child.stdin.take().map(Sender::from);
        let stdout = child.stdout.take().map(Receiver::from);
        let stderr = child.stderr.take().map(Receiver::from);
        let mut run = Run {
            child,
            pid,
            event: job.event,
            query: job.query,
            started: now,
            deadline: now + self.limits.time_limit,
            recheck: None,
            killed_at: None,
            status: None,
            stdin,
            payload: job.payload,
            written: 0,
            stdout,
            output: Vec::new(),
            output_cut: 0,
            stderr,
            line: Vec::new(),
            line_cut: false,
            lines_logged: 0,
            lines_unlogged: 0,
            tail: Vec::new(),
        };
        let base = first.0 + 1 + slot * PIPES.len();
        if let Err(e) = run.register(registry, base) {
            warn!("event handler pid {pid}: cannot watch its pipes: {e}; killing it");
            run.kill();
            // SIGKILL was just sent: this wait is short.
            let _ = run.child.wait();
            run.deregister(registry);
            self.drop_job(
                HandlerJob {
                    event: run.event,
                    peer: None,
                    env: Vec::new(),
                    payload: Vec::new(),
                    query: run.query,
                },
                "the event handler could not be watched",
            );
            return Err(());
        }
        debug!("event handler pid {pid} started for {} event", run.event);
        self.stats.started += 1;
        self.slots[slot] = Some(run);
        // Whatever fits in the pipe goes now; the rest when it is writable.
        self.pump(registry, slot, Pipe::Stdin);
        Ok(())
    }

    /// Counts a dropped job; a query gets an error response saying `why`.
    fn drop_job(&mut self, job: HandlerJob<Q>, why: &str) {
        self.stats.dropped += 1;
        if let Some(query) = job.query {
            self.responses.push_back((
                query,
                format!("{why}: query not answered").into_bytes(),
                true,
            ));
        }
    }

    /// Moves data through one pipe of the run in `slot`, as far as it goes without
    /// blocking (and at most [`READS_PER_CALL`] reads).
    fn pump(&mut self, registry: &Registry, slot: usize, pipe: Pipe) {
        let max_output = self.limits.max_output;
        let max_lines = self.limits.max_log_lines;
        let Some(run) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let more = match pipe {
            Pipe::Stdin => {
                run.write_stdin(registry);
                false
            }
            Pipe::Stdout => run.read_stdout(registry, max_output),
            Pipe::Stderr => run.read_stderr(registry, max_lines),
        };
        if more && self.more_since.is_none() {
            self.more_since = Some(Instant::now());
        }
    }

    /// Looks whether the child of `slot` has exited, without waiting.
    fn reap(&mut self, slot: usize) {
        let Some(run) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if run.status.is_some() {
            return;
        }
        match run.child.try_wait() {
            Ok(Some(status)) => run.status = Some(status),
            Ok(None) => {}
            Err(e) => {
                // Not our child any more (someone else reaped it): nothing to wait for.
                warn!("event handler pid {}: cannot wait for it: {e}", run.pid);
                run.status = Some(ExitStatus::from_raw(0x7f00));
            }
        }
    }

    /// Enforces the time limit (with `now`, from a timeout) and ends the run of `slot` if it
    /// is done: exited and its pipes closed, or, after a kill, reaped and given
    /// [`KILL_GRACE`] for its pipes to close.
    fn settle(&mut self, registry: &Registry, slot: usize, now: Option<Instant>) {
        let time_limit = self.limits.time_limit;
        let Some(run) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if let Some(now) = now {
            if run.killed_at.is_none() && now >= run.deadline {
                warn!(
                    "event handler pid {} ({} event) still running after {:?}: killed",
                    run.pid, run.event, time_limit
                );
                run.kill();
                run.killed_at = Some(now);
                self.stats.killed += 1;
            }
            if run.killed_at.is_some() {
                // Until it is gone: SIGCHLD should tell, this makes sure.
                run.recheck = Some(now + RECHECK);
            }
        }
        if run.status.is_some() && run.stdin.is_some() {
            // It exited without reading all its input: nobody will.
            run.close(registry, Pipe::Stdin);
        }
        let Some(status) = run.status else { return };
        if run.stdout.is_some() || run.stderr.is_some() {
            // Exited, but something it started holds its pipes: wait for them until the
            // time limit kills the group, then at most KILL_GRACE more (one that left the
            // group may never close them).
            let Some(killed) = run.killed_at else { return };
            if now.unwrap_or_else(Instant::now) < killed + KILL_GRACE {
                return;
            }
        }
        let Some(run) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        self.finish(registry, run, status);
        self.start_queued(registry);
    }

    /// Ends a reaped run: closes its pipes, logs, answers its query, counts.
    fn finish(&mut self, registry: &Registry, mut run: Run<Q>, status: ExitStatus) {
        run.flush_line(self.limits.max_log_lines);
        run.deregister(registry);
        if run.lines_unlogged > 0 {
            info!(
                "event handler pid {} ({} event): {} more lines of stderr not logged",
                run.pid, run.event, run.lines_unlogged
            );
        }
        if run.output_cut > 0 {
            warn!(
                "event handler pid {} ({} event) wrote {} bytes to stdout; the response keeps \
                 the first {}",
                run.pid,
                run.event,
                run.output.len() + run.output_cut,
                run.output.len()
            );
        }
        let took = run.started.elapsed();
        let failure = if run.killed_at.is_some() {
            Some(format!(
                "the event handler took longer than {:?} and was killed",
                self.limits.time_limit
            ))
        } else if status.success() {
            None
        } else {
            let how = match (status.code(), status.signal()) {
                (Some(code), _) => format!("exit status {code}"),
                (None, Some(signal)) => format!("signal {signal}"),
                (None, None) => "an unknown status".to_string(),
            };
            warn!(
                "event handler pid {} ({} event) ended with {how} after {took:?}",
                run.pid, run.event
            );
            let tail = String::from_utf8_lossy(&run.tail).trim().to_string();
            Some(if tail.is_empty() {
                format!("the event handler ended with {how}")
            } else {
                tail
            })
        };
        match &failure {
            None => {
                self.stats.succeeded += 1;
                debug!(
                    "event handler pid {} ({} event) done in {took:?}",
                    run.pid, run.event
                );
            }
            Some(_) => self.stats.failed += 1,
        }
        if let Some(query) = run.query.take() {
            let response = match failure {
                None => (query, std::mem::take(&mut run.output), false),
                Some(why) => (query, why.into_bytes(), true),
            };
            self.responses.push_back(response);
        }
    }

    /// Starts waiting jobs in the free places.
    fn start_queued(&mut self, registry: &Registry) {
        while let Some(slot) = self.slots.iter().position(Option::is_none) {
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            let _ = self.start(registry, slot, job);
        }
        if self.queue.len() < self.limits.max_queued {
            if let Some(dropped) = self.dropped_while_full.take() {
                info!("event handler queue has room again; {dropped} events were dropped while it was full");
            }
        }
    }
}

impl<Q> Drop for Handlers<Q> {
    /// Kills every run still going (with its process group) and reaps it: the node leaves
    /// no orphan handlers and no zombies behind.
    fn drop(&mut self) {
        for run in self.slots.iter_mut().flatten() {
            if run.status.is_none() {
                run.kill();
                // SIGKILL was just sent: this wait is short.
                let _ = run.child.wait();
            }
        }
    }
}

impl<Q> Run<Q> {
    fn register(&mut self, registry: &Registry, base: usize) -> io::Result<()> {
        if let Some(stdin) = &mut self.stdin {
            stdin.set_nonblocking(true)?;
            registry.register(stdin, Token(base), Interest::WRITABLE)?;
        }
        if let Some(stdout) = &mut self.stdout {
            stdout.set_nonblocking(true)?;
            registry.register(stdout, Token(base + 1), Interest::READABLE)?;
        }
        if let Some(stderr) = &mut self.stderr {
            stderr.set_nonblocking(true)?;
            registry.register(stderr, Token(base + 2), Interest::READABLE)?;
        }
        Ok(())
    }

    fn deregister(&mut self, registry: &Registry) {
        for pipe in PIPES {
            self.close(registry, pipe);
        }
    }

    /// Closes one pipe (deregistered first, as mio asks).
    fn close(&mut self, registry: &Registry, pipe: Pipe) {
        let done = match pipe {
            Pipe::Stdin => self.stdin.take().map(|mut p| registry.deregister(&mut p)),
            Pipe::Stdout => self.stdout.take().map(|mut p| registry.deregister(&mut p)),
            Pipe::Stderr => self.stderr.take().map(|mut p| registry.deregister(&mut p)),
        };
        if let Some(Err(e)) = done {
            debug!(
                "event handler pid {}: deregistering {pipe:?}: {e}",
                self.pid
            );
        }
    }

    /// SIGKILL to the run's process group (the child and what it started).
    fn kill(&mut self) {
        let group = i32::try_from(self.pid).map(Pid::from_raw);
        match group {
            Ok(group) => {
                if let Err(e) = killpg(group, Signal::SIGKILL) {
                    debug!("event handler pid {}: killpg: {e}", self.pid);
                    let _ = self.child.kill();
                }
            }
            Err(_) => {
                let _ = self.child.kill();
            }
        }
    }

    /// Writes stdin as far as the pipe takes it; closes it when all is written, or when the
    /// child closed its end.
    fn write_stdin(&mut self, registry: &Registry) {
        let Some(stdin) = &mut self.stdin else { return };
        loop {
            let rest = self.payload.get(self.written..).unwrap_or_default();
            if rest.is_empty() {
                self.close(registry, Pipe::Stdin);
                return;
            }
            match stdin.write(rest) {
                Ok(0) => {
                    self.close(registry, Pipe::Stdin);
                    return;
                }
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // EPIPE: it does not read its input, which is its right.
                    debug!(
                        "event handler pid {}: stdin closed after {} of {} bytes: {e}",
                        self.pid,
                        self.written,
                        self.payload.len()
                    );
                    self.close(registry, Pipe::Stdin);
                    return;
                }
            }
        }
    }

    /// Reads stdout (keeping up to `max` bytes); true when reads are left for later.
    fn read_stdout(&mut self, registry: &Registry, max: usize) -> bool {
        let Some(stdout) = &mut self.stdout else {
            return false;
        };
        let mut buf = [0u8; READ_CHUNK];
        for _ in 0..READS_PER_CALL {
            match stdout.read(&mut buf) {
                Ok(0) => {
                    self.close(registry, Pipe::Stdout);
                    return false;
                }
                Ok(n) => {
                    let keep = n.min(max.saturating_sub(self.output.len()));
                    self.output.extend_from_slice(&buf[..keep]);
                    self.output_cut += n - keep;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!("event handler pid {}: reading stdout: {e}", self.pid);
                    self.close(registry, Pipe::Stdout);
                    return false;
                }
            }
        }
        true
    }

    /// Reads stderr, logging whole lines; true when reads are left for later.
    fn read_stderr(&mut self, registry: &Registry, max_lines: usize) -> bool {
        let mut buf = [0u8; READ_CHUNK];
        for _ in 0..READS_PER_CALL {
            let Some(stderr) = &mut self.stderr else {
                return false;
            };
            match stderr.read(&mut buf) {
                Ok(0) => {
                    self.close(registry, Pipe::Stderr);
                    return false;
                }
                Ok(n) => self.take_stderr(&buf[..n], max_lines),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!("event handler pid {}: reading stderr: {e}", self.pid);
                    self.close(registry, Pipe::Stderr);
                    return false;
                }
            }
        }
        true
    }

    /// Splits stderr into lines for the log, and keeps its tail for an error response.
    fn take_stderr(&mut self, bytes: &[u8], max_lines: usize) {
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > STDERR_TAIL {
            let cut = self.tail.len() - STDERR_TAIL;
            self.tail.drain(..cut);
        }
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            let (text, ends) = match piece.strip_suffix(b"\n") {
                Some(text) => (text, true),
                None => (piece, false),
            };
            let room = MAX_LINE.saturating_sub(self.line.len());
            if text.len() > room {
                self.line_cut = true;
            }
            self.line.extend_from_slice(&text[..text.len().min(room)]);
            if ends {
                self.flush_line(max_lines);
            }
        }
    }

    /// Logs the line gathered so far (if any), within the run's budget of lines.
    fn flush_line(&mut self, max_lines: usize) {
        if self.line.is_empty() && !self.line_cut {
            return;
        }
        if self.lines_logged < max_lines {
            let cut = if self.line_cut { " […]" } else { "" };
            info!(
                "event handler pid {} ({} event): {}{cut}",
                self.pid,
                self.event,
                String::from_utf8_lossy(&self.line)
            );
            self.lines_logged += 1;
        } else {
            self.lines_unlogged += 1;
        }
        self.line.clear();
        self.line_cut = false;
    }
}

/// The variables [`Handlers`] sets itself, which a job's fields may not replace.
fn is_fixed(name: &str) -> bool {
    matches!(name, "PEERMESH_EVENT" | "PEERMESH_NODE" | "PEERMESH_PEER")
}

/// Whether `name=value` can be put in an environment.
fn valid_env(name: &str, value: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0']) && !value.contains('\0')
}
