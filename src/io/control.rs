//! The control socket: a Unix stream socket in the node's own event loop, through which
//! `peermesh status`, `top` and `matrix` ask a running node for its tables.
//!
//! One request per connection: a single line of at most [`MAX_REQUEST`] bytes, e.g.
//! `status --json\n`. The node answers with the text and closes. Every complete answer ends
//! with a newline; a client that sees none was cut off ([`ClientError::Truncated`]). A large
//! answer (the matrix of a big mesh) is a [`Reply::Steps`]: rendered a step at a time, each
//! written before the next is made, with the node's other work in between, so no request
//! holds the event loop for longer than one step. Requests are parsed by the
//! pure [`parse_request`]; a malformed one gets an `error: ...` line, never a crash.
//! Connections are limited in number (a client over [`MAX_CONNECTIONS`] is told so) and in
//! time ([`CLIENT_TIMEOUT`]).
//!
//! In a mio loop the server takes three things: [`ControlServer::bind`] and
//! [`ControlServer::register`] once, then each loop turn one [`ControlServer::serve`] with
//! the turn's events and the node (its requests are answered by [`answer`]), and no sleep
//! past [`ControlServer::poll_timeout`]. `peermesh run` and `examples/embed.rs` do just that.
//!
//! The socket file is created with mode 0600, in a directory others cannot write to (or a
//! sticky one), and only a stale socket is ever replaced ([`ControlServer::bind`]). The
//! client believes only a node run by root, by the caller, or by the owner of a private
//! directory the socket is in ([`request`]), so no other local user can pose as the node.
//! The default path ([`default_path`]) is in `$XDG_RUNTIME_DIR` or in a private per-user
//! directory, never directly in `/tmp`.

use crate::config::files::describe;
use crate::io::control_pending::Pending;
use crate::io::control_protocol::{error_line, json_string, ok_line, ok_prefix};
use crate::io::control_watch::Watcher;
use crate::io::driver::Node;
use crate::report::event_record::{unix_ms, EventRecord};
use crate::report::matrix_report::MatrixRender;
use log::{debug, warn};
use mio::net::{UnixListener, UnixStream};
use mio::{event::Event, Events, Interest, Registry, Token};
use slab::Slab;
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 32;
/// A client that has not sent its request, or has read nothing of the answer, for this
/// long is dropped.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Answers rendered in steps at once; one more gets a `busy` error. Each holds a snapshot
/// (about 8 MiB for the matrix of the largest mesh), so this bounds the memory they take.
pub const MAX_STEPPED_REPLIES: usize = 4;

/// The rest of a stepped answer: appends the next part to the buffer, returns whether more
/// follows.
pub type NextStep = Box<dyn FnMut(&mut Vec<u8>) -> bool>;

/// The answer to a request.
pub enum Reply {
    /// The whole text at once (a newline is added if it has none).
    Text(String),
    /// Rendered in steps: each call appends the next part to the buffer and returns whether
    /// more follows. The server calls it again only once the part before is written.
    Steps(NextStep),
    /// Answered later, when the core has reported on it (a confirmed `send`, a `query`):
    /// the connection stays open until then, or until the request's deadline.
    Later(Pending),
    /// The connection becomes a watcher: it gets `{"v":1,"ok":true,"watch":true}`, then
    /// one event record a line until it goes ([`ControlServer::on_event`]).
    Watch,
}

impl From<String> for Reply {
    fn from(text: String) -> Reply {
        Reply::Text(text)
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Text(t) => f.debug_tuple("Text").field(&t.len()).finish(),
            Reply::Steps(_) => f.write_str("Steps"),
            Reply::Later(p) => f.debug_tuple("Later").field(p).finish(),
            Reply::Watch => f.write_str("Watch"),
        }
    }
}

pub use crate::io::control_protocol::{
    parse_request, Answer, AnswerError, MatrixFormat, Request, RequestError, MAX_DATA_REQUEST,
    MAX_REQUEST,
};

/// Echoes at most 64 characters of what a client sent.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

// ---- Where the socket lives ------------------------------------------------------------

/// The effective uid of this process: whom files it creates belong to, and what
/// `SO_PEERCRED` reports for it.
fn my_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// A user as a person reads it: `nobody (uid 65534)`, or `uid 1234` when it has no name.
fn describe_uid(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => format!("{} (uid {uid})", clip(&user.name)),
        _ => format!("uid {uid}"),
    }
}

/// The longest file-name form of a node name before it is shortened with its identity.
const MAX_FILE_NAME: usize = 64;

/// The file-name form of node `name`, one-to-one: ASCII letters lower-cased (names compare
/// case-insensitively on ASCII, as [`crate::NodeId::from_name`] does), ASCII digits and
/// `-`, `_`, `.` kept, every other byte written `%xx` (`ä` is `%c3%a4`, `%` is `%25`). A
/// form longer than 64 bytes keeps its first 40 and adds `~` and the node's identity in hex;
/// `~` is never kept as itself, and the config refuses two names of one identity, so no two
/// names of a mesh share a socket.
fn file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.".contains(&byte) {
            out.push(char::from(byte.to_ascii_lowercase()));
        } else {
            out.push_str(&format!("%{byte:02x}"));
        }
    }
    if out.len() > MAX_FILE_NAME {
        out.truncate(40);
        out.push_str(&format!("~{}", crate::NodeId::from_name(name)));
    }
    out
}

/// The private directory that holds this user's control sockets when there is no
/// `$XDG_RUNTIME_DIR`: `/tmp/peermesh-UID` (mode 0700, created by the node).
pub fn private_dir() -> PathBuf {
    PathBuf::from(format!("/tmp/peermesh-{}", my_uid()))
}

/// `$XDG_RUNTIME_DIR`, when it is set to an absolute path of a directory this user owns.
fn runtime_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR")?);
    let meta = std::fs::metadata(&dir).ok()?;
    (dir.is_absolute() && meta.is_dir() && meta.uid() == my_uid()).then_some(dir)
}

/// The default control socket path for node `name`: `$XDG_RUNTIME_DIR/peermesh-NAME.sock`
/// when `XDG_RUNTIME_DIR` is a directory owned by this user, else
/// `PRIVATE_DIR/NAME.sock` in this user's [`private_dir`]. NAME is the name's one-to-one
/// file-name form: lower-cased ASCII, other bytes as `%xx`.
///
/// Computes the path only: [`ControlServer::bind`] makes the private directory when it
/// listens there, so a node that fails before (a bad key file, say) leaves nothing behind.
pub fn default_path(name: &str) -> PathBuf {
    let file = file_name(name);
    match runtime_dir() {
        Some(dir) => dir.join(format!("peermesh-{file}.sock")),
        None => private_dir().join(format!("{file}.sock")),
    }
}

/// Creates this user's [`private_dir`] (mode 0700) if it is missing, and refuses one that
/// is a symbolic link, not a directory, another user's, or open to group or others
/// (someone else made it to catch the socket).
fn ensure_private_dir(dir: &Path) -> Result<(), ControlError> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(ControlError::Io(dir.to_owned(), e)),
    }
    check_private_dir(dir).map_err(DirCheck::for_server)
}

/// What is wrong with the directory of a control socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirProblem {
    /// The private directory is a symbolic link (it could point anywhere).
    Symlink,
    /// The private directory's name is taken by something else: what it is.
    NotADirectory(&'static str),
    /// It belongs to a user who is neither root, nor the caller, nor (for a directory only
    /// its owner may write to) the user the node runs as: that user could put any socket
    /// in it.
    Owner {
        /// Its owner.
        owner: u32,
        /// This process's uid.
        me: u32,
    },
    /// The private directory belongs to another user, who made it to catch the socket.
    NotYours {
        /// Its owner.
        owner: u32,
        /// This process's uid.
        me: u32,
    },
    /// Group or others may write to it and it has no sticky bit, so they could replace
    /// the socket.
    Writable {
        /// Its permission bits.
        mode: u32,
    },
    /// The private directory lets group or others in at all.
    NotPrivate {
        /// Its permission bits.
        mode: u32,
    },
}

impl fmt::Display for DirProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirProblem::Symlink => f.write_str("it is a symbolic link, not a directory"),
            DirProblem::NotADirectory(what) => write!(f, "it is {what}, not a directory"),
            DirProblem::Owner { owner, me } => write!(
                f,
                "it belongs to {}, who is neither root, nor you (uid {me}), nor the user \
                 the node runs as",
                describe_uid(*owner)
            ),
            DirProblem::NotYours { owner, me } => write!(
                f,
                "it belongs to {}, not to you (uid {me}): someone else made it",
                describe_uid(*owner)
            ),
            DirProblem::Writable { mode } => write!(
                f,
                "group or others may write to it (mode {mode:o}) and it has no sticky bit, \
                 so another user could replace the socket (chmod go-w, or chmod +t)"
            ),
            DirProblem::NotPrivate { mode } => write!(
                f,
                "group or others may enter it (mode {mode:o}); it must be mode 700"
            ),
        }
    }
}

/// A [`DirProblem`] found, or the directory could not be examined.
enum DirCheck {
    Problem(PathBuf, DirProblem),
    Io(PathBuf, io::Error),
}

impl DirCheck {
    fn for_server(self) -> ControlError {
        match self {
            DirCheck::Problem(dir, problem) => ControlError::Directory { dir, problem },
            DirCheck::Io(dir, e) => ControlError::Io(dir, e),
        }
    }

    fn for_client(self, path: &Path) -> ClientError {
        match self {
            DirCheck::Problem(dir, problem) => ClientError::Directory {
                path: path.to_owned(),
                dir,
                problem,
            },
            DirCheck::Io(_, e) => ClientError::Io(path.to_owned(), e),
        }
    }
}

/// The [`private_dir`] must be a real directory of this user that nobody else may enter.
fn check_private_dir(dir: &Path) -> Result<(), DirCheck> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| DirCheck::Io(dir.to_owned(), e))?;
    let problem = |p| Err(DirCheck::Problem(dir.to_owned(), p));
    let mode = meta.mode() & 0o7777;
    if meta.file_type().is_symlink() {
        problem(DirProblem::Symlink)
    } else if !meta.is_dir() {
        problem(DirProblem::NotADirectory(describe(meta.file_type())))
    } else if meta.uid() != my_uid() {
        problem(DirProblem::NotYours {
            owner: meta.uid(),
            me: my_uid(),
        })
    } else if mode & 0o077 != 0 {
        problem(DirProblem::NotPrivate { mode })
    } else {
        Ok(())
    }
}

/// The directory a socket path is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Group or others may write to a directory with these permission bits, and no sticky bit
/// keeps them from removing or renaming what others put in it.
fn writable_by_others(mode: u32) -> bool {
    mode & 0o022 != 0 && mode & 0o1000 == 0
}

// ---- The server ---------------------------------------------------------------------------

struct Conn {
    stream: UnixStream,
    request: Vec<u8>,
    /// Whether the request was read and answered (the reply may still be in steps).
    answered: bool,
    reply: Vec<u8>,
    written: usize,
    /// The rest of a stepped reply.
    steps: Option<NextStep>,
    /// The socket took all there was and a step is due: no readiness event will come for
    /// it, so the next [`ControlServer::serve`] goes on with it.
    ready: bool,
    /// When the client last made progress (connected, or took part of the answer).
    since: Instant,
    /// What the connection is, once its request is read.
    mode: Mode,
}

/// What a connection is, past its request.
enum Mode {
    /// One reply, then closed.
    Reply,
    /// Waiting for the core's reports; the reply comes then.
    Waiting(Pending),
    /// A watcher: event records until the client goes.
    Watching(Watcher),
}

/// The listening control socket and its connections.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the socket file this server created: only that is removed.
    created: (u64, u64),
    listener_token: Token,
    first_conn_token: usize,
    conns: Slab<Conn>,
    /// Where this node's tags are kept after each change, if anywhere.
    tags_file: Option<PathBuf>,
}

impl fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .field("connections", &self.conns.len())
            .finish_non_exhaustive()
    }
}

/// Why the control socket could not be opened. Nothing at the path was changed, except a
/// stale socket that was replaced.
#[derive(Debug)]
pub enum ControlError {
    /// Another node answers on this path.
    InUse(PathBuf),
    /// Something other than a socket is at the path (a regular file, a directory, a FIFO,
    /// a symbolic link, ...): it is left alone.
    NotASocket {
        /// The path.
        path: PathBuf,
        /// What is there, e.g. `"a regular file"`.
        what: &'static str,
    },
    /// The socket's directory is unsafe (see [`DirProblem`]).
    Directory {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        problem: DirProblem,
    },
    /// The OS refused.
    Io(PathBuf, io::Error),
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::InUse(p) => write!(
                f,
                "control socket {} is in use by a running node (pass --control PATH)",
                p.display()
            ),
            ControlError::NotASocket { path, what } => write!(
                f,
                "control socket {}: {what} is there, not a socket; refusing to replace it \
                 (pass another --control PATH, or move it away)",
                path.display()
            ),
            ControlError::Directory { dir, problem } => write!(
                f,
                "control socket directory {}: {problem}; refusing to listen there \
                 (pass --control PATH in a directory of your own)",
                dir.display()
            ),
            ControlError::Io(p, e) => write!(f, "control socket {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for ControlError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ControlError::Io(_, e) => Some(e),
            _ => None,
        }
    }
}

/// Device and inode of the file at `path`, not following a symbolic link.
fn file_id(path: &Path) -> io::Result<(u64, u64)> {
    std::fs::symlink_metadata(path).map(|m| (m.dev(), m.ino()))
}

/// A group for the control socket ([`group_id`]) that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownGroup(pub String);

impl fmt::Display for UnknownGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "--control-group: no group {:?} on this machine",
            clip(&self.0)
        )
    }
}

impl std::error::Error for UnknownGroup {}

/// The gid of group `group`: a name from the group database, or a number as it is.
pub fn group_id(group: &str) -> Result<u32, UnknownGroup> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(found)) => Ok(found.gid.as_raw()),
        _ => Err(UnknownGroup(group.to_owned())),
    }
}

impl ControlServer {
    /// Listens on `path` (mode 0600): [`ControlServer::bind_for`] with no group.
    pub fn bind(path: &Path) -> Result<ControlServer, ControlError> {
        ControlServer::bind_for(path, None)
    }

    /// Listens on `path`, mode 0600, or with `group` (a gid) mode 0660 and that group, so
    /// its members may connect too (`run --control-group`). The group and mode are set
    /// before the socket appears at `path`; the group is changed only if it is not already
    /// this process's effective group (so a service run with `Group=` that group needs no
    /// right to chown).
    ///
    /// Refuses a directory group or others may write to unless it is sticky (`/tmp` is).
    /// In this user's [`private_dir`] (the default), first creates that directory (mode
    /// 0700) or refuses it if it is not a private directory of this user's own.
    /// Only a stale socket nobody answers on is replaced; anything else at the path is
    /// refused and left alone. The socket is made under a temporary name, set to 0600 and
    /// then linked into place, so no client connects while it has the default mode and
    /// nothing that appears at the path meanwhile is overwritten. On drop, the socket file
    /// is removed only if it is still the one this server made (same device and inode).
    pub fn bind_for(path: &Path, group: Option<u32>) -> Result<ControlServer, ControlError> {
        let io_err = |e| ControlError::Io(path.to_owned(), e);
        let dir = parent_dir(path);
        if dir == private_dir() {
            ensure_private_dir(&dir)?;
        }
        let dir_meta = std::fs::metadata(&dir).map_err(|e| ControlError::Io(dir.clone(), e))?;
        let mode = dir_meta.mode() & 0o7777;
        if writable_by_others(mode) {
            return Err(ControlError::Directory {
                dir,
                problem: DirProblem::Writable { mode },
            });
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                // Stale only when the kernel says nobody listens: a socket this user may not
                // even connect to is not for it to remove.
                match std::os::unix::net::UnixStream::connect(path) {
                    Ok(_) => return Err(ControlError::InUse(path.to_owned())),
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                    Err(e) => return Err(io_err(e)),
                }
                std::fs::remove_file(path).map_err(io_err)?;
            }
            Ok(meta) => {
                return Err(ControlError::NotASocket {
                    path: path.to_owned(),
                    what: describe(meta.file_type()),
                })
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let (listener, staging) = bind_staging(path)?;
        let mode = if group.is_some() { 0o660 } else { 0o600 };
        // A socket already of this process's group needs no chown, which the systemd
        // unit's system-call filter (`~@privileged`) refuses: with no gid to set, no chown
        // is made at all (std would still issue `chown(path, -1, -1)`).
        let chgrp = group.filter(|&gid| gid != nix::unistd::getegid().as_raw());
        let regrouped = match chgrp {
            Some(gid) => std::os::unix::fs::chown(&staging, None, Some(gid)),
            None => Ok(()),
        };
        let placed = regrouped
            .and_then(|()| {
                std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(mode))
            })
            .and_then(|()| file_id(&staging))
            .and_then(|id| std::fs::hard_link(&staging, path).map(|()| id));
        let _ = std::fs::remove_file(&staging);
        let created = match placed {
            Ok(id) => id,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                // Something took the path since it was checked: leave it alone.
                return Err(ControlError::InUse(path.to_owned()));
            }
            Err(e) => return Err(io_err(e)),
        };
        Ok(ControlServer {
            listener,
            path: path.to_owned(),
            created,
            listener_token: Token(usize::MAX),
            first_conn_token: usize::MAX,
            conns: Slab::with_capacity(MAX_CONNECTIONS),
            tags_file: None,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Registers the listener under `listener`; connections get tokens
    /// `first_conn..first_conn + MAX_CONNECTIONS`.
    pub fn register(
        &mut self,
        registry: &Registry,
        listener: Token,
        first_conn: usize,
    ) -> io::Result<()> {
        self.listener_token = listener;
        self.first_conn_token = first_conn;
        registry.register(&mut self.listener, listener, Interest::READABLE)
    }

    /// Whether `token` is this server's.
    pub fn owns(&self, token: Token) -> bool {
        token == self.listener_token
            || (self.first_conn_token..self.first_conn_token + MAX_CONNECTIONS).contains(&token.0)
    }

    /// The control socket's share of one loop turn, and the only call a mio program makes
    /// for it each turn (after `poll`, and after the node's own work so that answers are up
    /// to date): accepts and serves this server's events among `events` (other tokens are
    /// left alone), writes the next step of large answers, and drops clients stuck for
    /// longer than [`CLIENT_TIMEOUT`]. Every request gets [`answer`] from `node`: what
    /// `peermesh run` answers. Sleep no longer than [`ControlServer::poll_timeout`] before
    /// the next call.
    ///
    /// Requests that change the node (`send`, `query`, `tags` with changes) act on `node`'s
    /// core; call [`Node::handle_timeout`] after, which sends what they produced. Feed every
    /// event drained from the node to [`ControlServer::on_event`], or confirmed sends and
    /// queries are answered only at their deadline and watchers see nothing.
    pub fn serve(&mut self, registry: &Registry, events: &Events, node: &mut Node, now: Instant) {
        self.serve_with_reload(registry, events, node, now, &mut |_| {
            error_line("this node cannot reload its config: it is embedded in another program")
        });
    }

    /// [`ControlServer::serve`] for a node that can reload its config (`peermesh run`):
    /// a `reload` request is answered with the line `reload` returns, after it acted on
    /// the node.
    pub fn serve_with_reload(
        &mut self,
        registry: &Registry,
        events: &Events,
        node: &mut Node,
        now: Instant,
        reload: &mut dyn FnMut(&mut Node) -> String,
    ) {
        let tags_file = self.tags_file.clone();
        for event in events.iter() {
            if self.owns(event.token()) {
                self.handle_event(registry, event, now, &mut |request| {
                    if matches!(request, Request::Reload) {
                        return Reply::Text(reload(node));
                    }
                    let changes_tags = matches!(&request, Request::Tags(c) if !c.is_empty());
                    let reply = answer(node, request, now);
                    if let (true, Some(path)) = (changes_tags, &tags_file) {
                        // Before the reply: a client told "ok" may rely on the file.
                        save_tags(path, node);
                    }
                    reply
                });
            }
        }
        self.pump(registry, now);
        self.sweep(registry, now);
    }

    /// Keeps this node's tags in `path` (`peermesh run --tags-file`): rewritten after each
    /// request that changes them, before the request is answered.
    pub fn keep_tags_in(&mut self, path: PathBuf) {
        self.tags_file = Some(path);
    }

    /// Whether any client watches events (if none, records need not be made).
    pub fn has_watchers(&self) -> bool {
        self.conns
            .iter()
            .any(|(_, c)| matches!(c.mode, Mode::Watching(_)))
    }

    /// Feeds one event drained from the node's core to the requests waiting for it and to
    /// every watcher; call [`ControlServer::flush`] after the last of a turn. `mesh` names
    /// the peers.
    pub fn on_event(&mut self, mesh: &crate::core::Mesh, event: &crate::core::Event) {
        let line = self
            .has_watchers()
            .then(|| EventRecord::from_event(mesh, event, SystemTime::now()).to_json());
        self.on_record(line.as_deref(), |pending| {
            crate::io::control_answer::feed(pending, mesh, event)
        });
    }

    /// Pushes `line` (a record) to every watcher and lets `feed` update each waiting
    /// request; those it completes get their answer.
    fn on_record(&mut self, line: Option<&str>, mut feed: impl FnMut(&mut Pending)) {
        let time_ms = unix_ms(SystemTime::now());
        for (_, conn) in self.conns.iter_mut() {
            match &mut conn.mode {
                Mode::Watching(watcher) => {
                    if let Some(line) = line {
                        watcher.push(line, time_ms);
                        conn.ready = true;
                    }
                }
                Mode::Waiting(pending) => {
                    feed(pending);
                    if pending.is_done() {
                        conn.reply = pending.answer_line().into_bytes();
                        conn.written = 0;
                        conn.mode = Mode::Reply;
                        conn.ready = true;
                    }
                }
                Mode::Reply => {}
            }
        }
    }

    /// Writes what [`ControlServer::on_event`] left for the clients (answers now complete,
    /// records for watchers), as far as their sockets take it.
    pub fn flush(&mut self, registry: &Registry, now: Instant) {
        self.pump(registry, now);
    }

    /// Handles readiness for one of this server's tokens; `answer` renders a reply to a
    /// parsed request.
    fn handle_event(
        &mut self,
        registry: &Registry,
        event: &Event,
        now: Instant,
        answer: &mut dyn FnMut(Request) -> Reply,
    ) {
        if event.token() == self.listener_token {
            self.accept(registry, now);
            return;
        }
        let key = event.token().0.wrapping_sub(self.first_conn_token);
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        // A client that closed its connection altogether (not just its sending side) no
        // longer waits for an answer or records: its slot is freed at once.
        if event.is_write_closed() && !matches!(conn.mode, Mode::Reply) {
            return self.close(registry, key);
        }
        self.serve_conn(registry, key, now, answer);
    }

    /// Whether a stepped reply can go on now, with no readiness event to come for it.
    fn has_work(&self) -> bool {
        self.conns.iter().any(|(_, c)| c.ready)
    }

    /// Renders and writes one more step of every stepped reply whose socket has room.
    fn pump(&mut self, registry: &Registry, now: Instant) {
        let ready: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.ready)
            .map(|(k, _)| k)
            .collect();
        for key in ready {
            self.serve_conn(registry, key, now, &mut |_| Reply::Text(String::new()));
        }
    }

    /// Drops connections older than [`CLIENT_TIMEOUT`] (slow or stuck clients), and
    /// answers waiting requests past their deadline with what they have. Watchers are
    /// never dropped for being slow: their backlog is bounded instead.
    fn sweep(&mut self, registry: &Registry, now: Instant) {
        let mut stale = Vec::new();
        let mut overdue = false;
        for (key, conn) in self.conns.iter_mut() {
            match &mut conn.mode {
                Mode::Watching(_) => {}
                Mode::Waiting(pending) => {
                    if now >= pending.deadline() {
                        warn!("control: a waiting request is past its deadline; answering it");
                        pending.expire();
                        overdue = true;
                    }
                }
                Mode::Reply => {
                    if now.saturating_duration_since(conn.since) > CLIENT_TIMEOUT {
                        stale.push(key);
                    }
                }
            }
        }
        for key in stale {
            debug!("control: dropping a client that took longer than {CLIENT_TIMEOUT:?}");
            self.close(registry, key);
        }
        if overdue {
            self.on_record(None, |_| {});
            self.pump(registry, now);
        }
    }

    /// When [`ControlServer::serve`] must next be called even if no event comes: `now`
    /// while a large answer has its next step ready (no readiness event will come for it),
    /// else when the oldest client times out; `None` without clients. Give it to
    /// [`Node::poll_delay`] as the other deadline.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        if self.has_work() {
            return Some(now);
        }
        self.conns
            .iter()
            .filter_map(|(_, c)| match &c.mode {
                Mode::Reply => Some(c.since + CLIENT_TIMEOUT),
                Mode::Waiting(pending) => Some(pending.deadline()),
                Mode::Watching(_) => None,
            })
            .min()
    }

    fn accept(&mut self, registry: &Registry, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.conns.len() >= MAX_CONNECTIONS {
                        warn!("control: {MAX_CONNECTIONS} clients already; refusing one");
                        refuse(stream);
                        continue;
                    }
                    let entry = self.conns.vacant_entry();
                    let token = Token(self.first_conn_token + entry.key());
                    if let Err(e) = registry.register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        warn!("control: cannot register a client: {e}");
                        continue;
                    }
                    entry.insert(Conn {
                        stream,
                        request: Vec::new(),
                        answered: false,
                        reply: Vec::new(),
                        written: 0,
                        steps: None,
                        ready: false,
                        since: now,
                        mode: Mode::Reply,
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("control: accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn serve_conn(
        &mut self,
        registry: &Registry,
        key: usize,
        now: Instant,
        answer: &mut dyn FnMut(Request) -> Reply,
    ) {
        let stepped = self.conns.iter().filter(|(_, c)| c.steps.is_some()).count();
        let conn = &mut self.conns[key];
        conn.ready = false;
        if !conn.answered {
            let mut chunk = [0u8; 4096];
            loop {
                match conn.stream.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        conn.request.extend_from_slice(&chunk[..n]);
                        // Only a request with data may be long, and it is JSON: a long
                        // line of anything else is refused at once.
                        let limit = if conn.request.first() == Some(&b'{') {
                            MAX_DATA_REQUEST
                        } else {
                            MAX_REQUEST
                        };
                        if conn.request.contains(&b'\n') || conn.request.len() > limit {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        if !conn.request.contains(&b'\n') {
                            return; // wait for the rest of the line
                        }
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => return self.close(registry, key),
                }
            }
            let line = match conn.request.iter().position(|&b| b == b'\n') {
                Some(end) => &conn.request[..end],
                None => &conn.request[..],
            };
            conn.answered = true;
            let reply = match parse_request(line) {
                Ok(request) => answer(request),
                Err(err) => Reply::Text(err.to_line()),
            };
            conn.request = Vec::new(); // up to MAX_DATA_REQUEST: not kept
            match reply {
                Reply::Later(pending) if pending.is_done() => {
                    conn.reply = pending.answer_line().into_bytes();
                }
                Reply::Later(pending) => conn.mode = Mode::Waiting(pending),
                Reply::Watch => {
                    conn.reply = ok_line("watch", &true).into_bytes();
                    conn.mode = Mode::Watching(Watcher::new());
                }
                Reply::Text(mut text) => {
                    if !text.ends_with('\n') {
                        text.push('\n');
                    }
                    conn.reply = text.into_bytes();
                }
                Reply::Steps(_) if stepped >= MAX_STEPPED_REPLIES => {
                    conn.reply = error_line(&format!(
                        "busy: {MAX_STEPPED_REPLIES} large answers in progress; try again"
                    ))
                    .into_bytes();
                }
                Reply::Steps(steps) => conn.steps = Some(steps),
            }
        } else if !matches!(conn.mode, Mode::Reply) {
            // A waiting request or a watcher says nothing more: what it sends is discarded.
            // Closing its sending side (`shutdown`, socat at the end of its input) is no
            // leaving: it still gets its answer or its records. (Gone altogether, it is
            // closed in `handle_event`, or when a write to it fails.)
            let mut sink = [0u8; 1024];
            loop {
                match conn.stream.read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => return self.close(registry, key),
                }
            }
        }
        // One step per call: write what is rendered, then render the next part only once
        // the socket took all of it, so a slow client holds at most one step in memory.
        let mut stepped_once = false;
        loop {
            while conn.written < conn.reply.len() {
                match conn.stream.write(&conn.reply[conn.written..]) {
                    Ok(0) => return self.close(registry, key),
                    Ok(n) => {
                        conn.written += n;
                        conn.since = now;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return, // until writable
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => return self.close(registry, key),
                }
            }
            match &mut conn.mode {
                Mode::Waiting(_) => return, // the answer comes with the core's reports
                Mode::Watching(watcher) => {
                    conn.reply.clear();
                    conn.written = 0;
                    if watcher.take(&mut conn.reply, unix_ms(SystemTime::now())) {
                        continue;
                    }
                    return; // until the next record
                }
                Mode::Reply => {}
            }
            let Some(steps) = conn.steps.as_mut() else {
                return self.close(registry, key);
            };
            if stepped_once {
                conn.ready = true; // the rest on the next loop turn
                return;
            }
            stepped_once = true;
            conn.reply.clear();
            conn.written = 0;
            if !steps(&mut conn.reply) {
                conn.steps = None;
                if !conn.reply.ends_with(b"\n") {
                    conn.reply.push(b'\n');
                }
            }
        }
    }

    fn close(&mut self, registry: &Registry, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            discard_input(&mut conn.stream);
            let _ = conn.stream.shutdown(std::net::Shutdown::Both);
            let _ = registry.deregister(&mut conn.stream);
        }
    }
}

/// The answer to one control request, in control protocol 1 (`docs/CONTROL.md`): the one
/// function behind every control socket, `peermesh run`'s and an embedder's
/// ([`ControlServer::serve`] calls it). The matrix (up to a million cells) is a snapshot
/// rendered in steps; the peer table is small enough to render at once. Requests with
/// application data act on the node's core ([`crate::io::control_answer`]).
pub fn answer(node: &mut Node, request: Request, now: Instant) -> Reply {
    match request {
        Request::Send(send) => crate::io::control_answer::send(node, send, now),
        Request::Tags(change) => crate::io::control_answer::tags(node, change),
        Request::Query(query) => crate::io::control_answer::query(node, query, now),
        Request::Nearest(tags) => crate::io::control_answer::nearest(node, &tags, now),
        Request::Watch => Reply::Watch,
        // Only the daemon can reload ([`ControlServer::serve_with_reload`]).
        Request::Reload => Reply::Text(error_line("this node cannot reload its config")),
        Request::Respond(respond) => crate::io::control_answer::respond(node, respond),
        Request::Ping => Reply::Text(format!("{}true}}", ok_prefix("pong"))),
        Request::Metrics => Reply::Text(format!(
            "{}{}}}",
            ok_prefix("text"),
            json_string(&node.metrics(now))
        )),
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
            let report = node.status_report(Instant::now());
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

/// Writes the node's tags to the tags file (a warning if that fails: the node runs on with
/// its tags, which a restart would lose). The file is small: this does not hold the loop.
fn save_tags(path: &Path, node: &Node) {
    match crate::io::tags_file::save(path, node.mesh().tags()) {
        Ok(()) => debug!("tags written to {}", path.display()),
        Err(e) => warn!("{e}; the change holds until the node restarts"),
    }
}

/// The line a client over [`MAX_CONNECTIONS`] gets before it is closed.
fn too_many_clients() -> String {
    error_line(&format!(
        "{TOO_MANY_CLIENTS} ({MAX_CONNECTIONS} at once); try again"
    ))
}

/// Turns away a client over the limit: one `error:` line if the socket takes it at once
/// (the stream is non-blocking: the node never waits for it), then close.
fn refuse(mut stream: UnixStream) {
    let _ = stream.write(too_many_clients().as_bytes());
    discard_input(&mut stream);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Closing with unread input makes the kernel reset the connection, and the client could
/// lose the reply it has not read yet: discard what is waiting (bounded, non-blocking).
fn discard_input(stream: &mut UnixStream) {
    let mut sink = [0u8; 1024];
    for _ in 0..64 {
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        // Remove the socket only if it is still the one this server made: someone may
        // have replaced it (the listener still holds the inode, so it cannot be reused).
        if file_id(&self.path).is_ok_and(|id| id == self.created) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Bind a listener under a fresh temporary name next to `path` (never removing anything
/// already there); returns it and the name.
fn bind_staging(path: &Path) -> Result<(UnixListener, PathBuf), ControlError> {
    let mut last = None;
    for attempt in 0..8u32 {
        let mut staging = path.as_os_str().to_owned();
        staging.push(format!(".{}.{attempt}.tmp", std::process::id()));
        let staging = PathBuf::from(staging);
        match UnixListener::bind(&staging) {
            Ok(listener) => return Ok((listener, staging)),
            Err(e) if e.kind() == ErrorKind::AddrInUse => last = Some((staging, e)),
            Err(e) => return Err(ControlError::Io(path.to_owned(), e)),
        }
    }
    let (staging, e) = last.unwrap_or_else(|| (path.to_owned(), ErrorKind::AddrInUse.into()));
    Err(ControlError::Io(staging, e))
}

// ---- The client ---------------------------------------------------------------------------

/// What the server says to a client over [`MAX_CONNECTIONS`], after `error: `.
const TOO_MANY_CLIENTS: &str = "too many clients";

/// Why a client request failed.
#[derive(Debug)]
pub enum ClientError {
    /// Nothing listens at the path.
    NoNode(PathBuf),
    /// The socket's directory is not safe to trust (see [`DirProblem`]); nothing was sent.
    Directory {
        /// The socket.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
        /// What is wrong with it.
        problem: DirProblem,
    },
    /// The process listening on the socket runs as a user who is neither root, nor the
    /// caller, nor the owner of the socket's private directory: someone else may have put
    /// it there to pose as the node. Nothing was sent.
    Untrusted {
        /// The socket.
        path: PathBuf,
        /// The listening process's uid (`SO_PEERCRED`).
        server: u32,
        /// This process's uid.
        me: u32,
    },
    /// The node took no request, or gave no answer, within the client's timeout
    /// ([`CLIENT_TIMEOUT`] unless the caller chose another, which this carries).
    Timeout(PathBuf, Duration),
    /// The node serves [`MAX_CONNECTIONS`] clients already.
    TooManyClients(PathBuf),
    /// The node closed the connection without an answer.
    EmptyReply(PathBuf),
    /// The node reset the connection before it answered.
    Reset(PathBuf),
    /// The answer stopped before its end (no final newline): the node stopped, or dropped
    /// this client as too slow. What came is not shown.
    Truncated(PathBuf),
    /// The node answered, but not with what was asked: it refused the request, or speaks
    /// another control protocol.
    Answer(PathBuf, AnswerError),
    /// Connected, but the exchange failed otherwise.
    Io(PathBuf, io::Error),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NoNode(p) => {
                write!(f, "no peermesh node at {} (is it running?)", p.display())
            }
            ClientError::Directory { path, dir, problem } => write!(
                f,
                "control socket {}: not trusting directory {}: {problem}",
                path.display(),
                dir.display()
            ),
            ClientError::Untrusted { path, server, me } => write!(
                f,
                "control socket {} is served by {}, not by root or by you (uid {me}): \
                 another user may have put it there to pose as the node; not asking it",
                path.display(),
                describe_uid(*server)
            ),
            ClientError::Timeout(p, limit) => write!(
                f,
                "the node at {} is busy: no answer within {} s; try again",
                p.display(),
                limit.as_secs_f64()
            ),
            ClientError::TooManyClients(p) => write!(
                f,
                "the node at {} has too many clients ({MAX_CONNECTIONS} at once); try again",
                p.display()
            ),
            ClientError::EmptyReply(p) => write!(
                f,
                "the node at {} closed the connection with an empty reply (is it stopping?)",
                p.display()
            ),
            ClientError::Reset(p) => write!(
                f,
                "the node at {} reset the connection before answering (overloaded or \
                 stopping?); try again",
                p.display()
            ),
            ClientError::Truncated(p) => write!(
                f,
                "the answer from the node at {} was cut off before its end (the node \
                 stopped, or dropped this client as too slow); try again",
                p.display()
            ),
            ClientError::Answer(_, e) => write!(f, "{e}"),
            ClientError::Io(p, e) => write!(f, "control socket {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Io(_, e) => Some(e),
            ClientError::Answer(_, e) => Some(e),
            _ => None,
        }
    }
}

/// Whether the node behind `stream`, at `path`, may be believed: see [`request`].
fn check_server(path: &Path, stream: &std::os::unix::net::UnixStream) -> Result<(), ClientError> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let creds = getsockopt(stream, PeerCredentials)
        .map_err(|e| ClientError::Io(path.to_owned(), e.into()))?;
    let (server, me) = (creds.uid(), my_uid());
    // Where the socket really is: a symbolic link is followed to it.
    let real = std::fs::canonicalize(path).map_err(|e| ClientError::Io(path.to_owned(), e))?;
    let dir = parent_dir(&real);
    let meta = std::fs::metadata(&dir).map_err(|e| ClientError::Io(path.to_owned(), e))?;
    let mode = meta.mode() & 0o7777;
    let owner = meta.uid();
    let directory = |problem| ClientError::Directory {
        path: path.to_owned(),
        dir: dir.clone(),
        problem,
    };
    if writable_by_others(mode) {
        return Err(directory(DirProblem::Writable { mode }));
    }
    // Only its owner (and root) can put a socket in a directory nobody else may write to:
    // such a directory's owner is trusted as the server (a service user's `/run/NAME`). In
    // a sticky shared one (`/tmp`) anyone can, so there only root and the caller are.
    let shared = mode & 0o022 != 0;
    let trusted_owner = !shared && owner == server;
    if owner != 0 && owner != me && !trusted_owner {
        return Err(directory(DirProblem::Owner { owner, me }));
    }
    if server != 0 && server != me && !trusted_owner {
        return Err(ClientError::Untrusted {
            path: path.to_owned(),
            server,
            me,
        });
    }
    Ok(())
}

/// Writes all of `bytes` to a control connection with `MSG_NOSIGNAL`: a node that closed early must give this
/// process an error, not a SIGPIPE (a program embedding the client may not ignore it).
pub fn send_all(stream: &std::os::unix::net::UnixStream, mut bytes: &[u8]) -> io::Result<()> {
    use nix::sys::socket::{send, MsgFlags};
    use std::os::fd::AsRawFd;
    while !bytes.is_empty() {
        match send(stream.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads until the end, a timeout, or an error; what came before an error is kept.
fn read_reply(stream: &mut std::os::unix::net::UnixStream, reply: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Asks the node at `path` and reads its answer: [`request_line`] with the request's line,
/// then [`crate::io::control_protocol::parse_answer`].
pub fn request(path: &Path, request: Request) -> Result<Answer, ClientError> {
    request_within(path, request, CLIENT_TIMEOUT)
}

/// [`request`], waiting at most `timeout` (instead of [`CLIENT_TIMEOUT`]) for each read
/// and write: `peermesh top` asks with its redraw interval, so a hung node costs it no
/// more than one frame.
pub fn request_within(
    path: &Path,
    request: Request,
    timeout: Duration,
) -> Result<Answer, ClientError> {
    let reply = request_line_within(path, &request.to_line(), timeout)?;
    crate::io::control_protocol::parse_answer(&reply).map_err(|e| match e {
        AnswerError::Refused(why) if why.starts_with(TOO_MANY_CLIENTS) => {
            ClientError::TooManyClients(path.to_owned())
        }
        other => ClientError::Answer(path.to_owned(), other),
    })
}

/// Sends one request line (a newline is added if it has none) to the node at `path` and
/// returns its whole answer, unparsed.
///
/// Before it sends anything, it checks whom it talks to: the listening process (by
/// `SO_PEERCRED`) must run as root or as the caller, or as the owner of the socket's
/// directory when nobody else may write to that directory (a service's `/run/NAME`); the
/// directory must belong to root, the caller or that owner, and group and others may not
/// write to it unless it is sticky. In the default [`private_dir`], the directory must be
/// the caller's own, mode 0700. Failures are typed: no node, busy ([`CLIENT_TIMEOUT`]),
/// too many clients, an empty reply, a reset.
pub fn request_line(path: &Path, line: &str) -> Result<String, ClientError> {
    request_line_within(path, line, CLIENT_TIMEOUT)
}

/// [`request_line`], waiting at most `timeout` for each read and write (a zero
/// `timeout` is refused: [`ClientError::Io`] with `InvalidInput`).
pub fn request_line_within(
    path: &Path,
    line: &str,
    timeout: Duration,
) -> Result<String, ClientError> {
    let mut stream = connect_within(path, timeout)?;
    exchange(path, &mut stream, line, timeout)
}

/// Connects to the node at `path` after the checks of [`request_line`] (whom it talks to),
/// with `timeout` on each read and write: for a client that keeps the connection, as
/// `peermesh watch` does (it sends [`Request::Watch`] and reads records until it stops).
pub fn connect_within(
    path: &Path,
    timeout: Duration,
) -> Result<std::os::unix::net::UnixStream, ClientError> {
    if path.parent() == Some(private_dir().as_path()) {
        check_private_dir(&private_dir()).map_err(|e| match e {
            DirCheck::Io(_, e) if e.kind() == ErrorKind::NotFound => {
                ClientError::NoNode(path.to_owned())
            }
            other => other.for_client(path),
        })?;
    }
    let stream = std::os::unix::net::UnixStream::connect(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => ClientError::NoNode(path.to_owned()),
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            ClientError::Timeout(path.to_owned(), timeout)
        }
        _ => ClientError::Io(path.to_owned(), e),
    })?;
    check_server(path, &stream)?;
    let io_err = |e| ClientError::Io(path.to_owned(), e);
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    Ok(stream)
}

/// Writes one request line on a connected `stream` and reads the whole answer.
fn exchange(
    path: &Path,
    stream: &mut std::os::unix::net::UnixStream,
    line: &str,
    timeout: Duration,
) -> Result<String, ClientError> {
    let io_err = |e| ClientError::Io(path.to_owned(), e);
    // A node over its limit may answer and close before the request is even written:
    // whatever happens to the write, read what it said.
    let line = if line.ends_with('\n') {
        line.to_owned()
    } else {
        format!("{line}\n")
    };
    let sent = send_all(stream, line.as_bytes());
    let mut reply = Vec::new();
    let read = read_reply(stream, &mut reply);
    let failed = |e: io::Error| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            ClientError::Timeout(path.to_owned(), timeout)
        }
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => ClientError::Reset(path.to_owned()),
        _ => ClientError::Io(path.to_owned(), e),
    };
    if reply.is_empty() {
        return Err(match (sent, read) {
            (_, Err(e)) | (Err(e), Ok(())) => failed(e),
            (Ok(()), Ok(())) => ClientError::EmptyReply(path.to_owned()),
        });
    }
    if let Err(e) = read {
        // The whole answer or nothing: a reset after it is harmless, a timeout is not.
        if !matches!(e.kind(), ErrorKind::ConnectionReset) {
            return Err(failed(e));
        }
    }
    let reply = String::from_utf8(reply).map_err(|_| {
        io_err(io::Error::new(
            ErrorKind::InvalidData,
            "the reply is not UTF-8 text",
        ))
    })?;
    if !reply.ends_with('\n') {
        return Err(ClientError::Truncated(path.to_owned()));
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_path_is_per_node_and_safe() {
        assert_eq!(file_name("a/b c"), "a%2fb%20c");
        assert_eq!(default_path("ALPHA"), default_path("alpha"));
        let p = default_path("x");
        assert!(p.to_string_lossy().ends_with("x.sock"), "{p:?}");
    }

    #[test]
    fn file_names_are_one_to_one_beyond_ascii_case() {
        assert_eq!(file_name("Alpha-1_b.c"), "alpha-1_b.c");
        assert_eq!(file_name("ä1"), "%c3%a41");
        assert_eq!(file_name("ö1"), "%c3%b61");
        assert_eq!(file_name("%c3%a41"), "%25c3%25a41");
        assert_eq!(file_name("~"), "%7e");
        // Names that differ other than by ASCII case never share a file name.
        let names = [
            "ä1", "ö1", "_1", "Ä1", "%", "%25", "a b", "a_b", "a%20b", "..", ".",
        ];
        let forms: std::collections::HashSet<String> = names.iter().map(|n| file_name(n)).collect();
        assert_eq!(forms.len(), names.len(), "{forms:?}");
        // Long forms are cut, end in the identity, and stay distinct.
        let long_a = "é".repeat(32);
        let long_b = format!("{}è", "é".repeat(31));
        let (a, b) = (file_name(&long_a), file_name(&long_b));
        assert!(
            a.len() <= MAX_FILE_NAME && b.len() <= MAX_FILE_NAME,
            "{a} {b}"
        );
        assert!(a.ends_with(&format!("~{}", crate::NodeId::from_name(&long_a))));
        assert_ne!(a, b);
    }

    #[test]
    fn a_private_dir_must_be_a_real_directory_of_ours_and_closed_to_others() {
        use std::os::unix::fs::symlink;
        let base = std::env::temp_dir().join(format!("peermesh-pdir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let problem = |dir: &Path| match check_private_dir(dir) {
            Err(DirCheck::Problem(_, p)) => Some(p),
            Err(DirCheck::Io(_, e)) => panic!("{e}"),
            Ok(()) => None,
        };
        let good = base.join("good");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&good)
            .unwrap();
        assert_eq!(problem(&good), None);
        let open = base.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(problem(&open), Some(DirProblem::NotPrivate { mode: 0o755 }));
        let link = base.join("link");
        symlink(&good, &link).unwrap();
        assert_eq!(problem(&link), Some(DirProblem::Symlink));
        let file = base.join("file");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(
            problem(&file),
            Some(DirProblem::NotADirectory("a regular file"))
        );
        if my_uid() == 0 {
            let theirs = base.join("theirs");
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&theirs)
                .unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
            assert_eq!(
                problem(&theirs),
                Some(DirProblem::NotYours {
                    owner: 65534,
                    me: 0
                })
            );
            let shown = DirProblem::NotYours {
                owner: 65534,
                me: 0,
            }
            .to_string();
            assert!(shown.contains("(uid 65534), not to you (uid 0)"), "{shown}");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_over_limit_line_names_the_limit() {
        assert_eq!(
            too_many_clients(),
            "{\"v\":1,\"ok\":false,\"error\":\"too many clients (32 at once); try again\"}\n"
        );
    }
}
