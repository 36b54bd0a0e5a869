//! The mesh configuration file, `peers.ron`.
//!
//! Every node reads the same file. It lists all nodes of the mesh and the timing that they
//! share; each process finds itself in the list ([`Config::find_self`]) and heartbeats all
//! the others.
//!
//! ```ron
//! (
//!     port: 1313,                  // default UDP port for nodes that give none (default 1313)
//!     heartbeat_interval_ms: 1000, // how often each peer is pinged (default 1000)
//!     suspect_after_ms: 3000,      // silence before a peer is suspected (default 3 intervals)
//!     dead_after_ms: 5000,         // silence before a peer is declared dead (default 5 intervals)
//!     max_datagram_bytes: 1232,    // 512..=65507 (default 1232: fits IPv6 without fragmenting)
//!     keyring: "keyring",          // optional; relative to this file's directory
//!     handler: "/etc/peermesh/handler", // optional: the program run for each event
//!     resolve_interval_ms: 60000,  // how often host names are resolved again (default 60 s)
//!     http_listen: "127.0.0.1:9313", // optional: serve /metrics, /status.json and the page
//!     probe_mode: "auto",          // "full", "sampled", or "auto": full up to 64 nodes
//!     probe_fanout: 16,            // sampled mode: peers probed per interval (2..=256)
//!     nodes: [
//!         (name: "alpha", host: "10.0.0.1", tags: {"role": "db", "zone": "eu-1"}),
//!         (name: "beta",  host: "10.0.0.2", port: 1314, handler: "beta-handler"),
//!         (name: "gamma", host: "::1", port: 1315),
//!         (name: "delta", host: "vm-delta.internal"),
//!     ],
//! )
//! ```
//!
//! Only `nodes` is required, and each node needs a `name` and a `host`. A node's `tags` are
//! its initial tags (keys of `A-Za-z0-9_.-:/`, see [`MAX_TAG_BYTES`]); a node's `handler`
//! overrides the top-level one. The outer parentheses may be written `Config(...)` and each
//! node `Node(...)`. Optional numbers may also be written `Some(1000)`.
//!
//! Every error says what is wrong and, when it concerns a place in the file, where:
//! `peers.ron:7:24: ...` (1-based line and column, the column counted in characters).

use crate::core::probe_mode::{
    ProbeMode, AUTO_FULL_UP_TO, DEFAULT_PROBE_FANOUT, PROBE_FANOUT_RANGE,
};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::core::{Mesh, Settings};
use crate::wire::identity::NodeId;
use files::clip;

pub mod diff;
pub(crate) mod files;
pub mod key_file;

pub use key_file::KeyFileError;

/// The UDP port of a node that gives none, unless the file sets another default with `port`.
pub const DEFAULT_PORT: u16 = 1313;

/// The heartbeat interval when the file gives none.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(1000);

/// The shortest heartbeat interval accepted.
pub const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(10);

/// The longest heartbeat interval, suspect time or dead time accepted.
///
/// Longer times are certainly typos, and keep deadline arithmetic far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// The largest datagram sent when the file gives no `max_datagram_bytes`: it fits the IPv6
/// minimum MTU (1280) less the IPv6 and UDP headers, so it is never fragmented.
pub const DEFAULT_MAX_DATAGRAM: usize = 1232;

/// The smallest `max_datagram_bytes` accepted.
pub const MIN_DATAGRAM: usize = 512;

/// The largest `max_datagram_bytes` accepted: the largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;

/// The longest node name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// The most bytes of tags (keys and values together) one node may have: the core's
/// [`crate::core::MAX_TAG_BYTES`].
pub const MAX_TAG_BYTES: usize = crate::core::tags::MAX_TAG_BYTES;

/// The longest tag key accepted, in bytes: the core's [`crate::core::tags::MAX_TAG_KEY`].
/// Keys are 1 to this many bytes of `A-Z`, `a-z`, `0-9`, `_`, `.`, `-`, `:` and `/`, the
/// keys the core accepts at run time, so they read well in a shell (`--tag role=db`).
pub const MAX_TAG_KEY_BYTES: usize = crate::core::tags::MAX_TAG_KEY;

/// The longest tag value accepted, in bytes (any UTF-8 text): the core's
/// [`crate::core::tags::MAX_TAG_VALUE`].
pub const MAX_TAG_VALUE_BYTES: usize = crate::core::tags::MAX_TAG_VALUE;

/// The most nodes a mesh may list. Above [`MAX_FULL_NODES`] only `sampled` probing runs
/// (each node's work is bounded by `probe_fanout`; docs/OPERATIONS.md, "Choosing the
/// probing mode").
pub const MAX_NODES: usize = 10_000;

/// The most nodes a `full` mesh may list. Every node probes every other each interval and
/// keeps every node's row (8 bytes a cell): at this size that is about 2,000 datagrams a
/// second and 8 MiB of matrix per node, and a control request is still served in bounded
/// steps (docs/PERFORMANCE.md).
pub const MAX_FULL_NODES: usize = 1024;

/// The largest configuration file read, in bytes (1 MiB). A 1,024-node mesh takes about
/// 80 KB; the limit bounds the memory and time a stray or hostile file can cost.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// How many characters of a value from the file (or the command line) an error message
/// echoes before it cuts the rest off with `…`.
pub const ECHOED_CHARS: usize = 64;

/// A peer silent for this many heartbeat intervals is suspected, unless `suspect_after_ms`
/// says otherwise.
const SUSPECT_INTERVALS: u64 = 3;

/// A peer silent for this many heartbeat intervals is dead, unless `dead_after_ms` says
/// otherwise.
const DEAD_INTERVALS: u64 = 5;

/// How often host names are resolved again when the file gives no `resolve_interval_ms`.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(60);

/// The shortest `resolve_interval_ms` accepted: more often would be a load on the resolver
/// for nothing (a moved VM is followed at once anyway when its peer goes dead).
pub const MIN_RESOLVE_INTERVAL: Duration = Duration::from_millis(100);

/// How many node names an error message lists before "and N more".
const LISTED_NAMES: usize = 10;

/// A loaded and checked configuration: defaults applied, every rule of the file format held.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The default UDP port (already applied to every node in [`Config::nodes`]).
    pub port: u16,
    /// How often each peer is sent a heartbeat.
    pub heartbeat_interval: Duration,
    /// How long a peer may stay silent before it is suspected; more than one interval.
    pub suspect_after: Duration,
    /// How long a peer may stay silent before it is declared dead; more than `suspect_after`.
    pub dead_after: Duration,
    /// The largest datagram sent or accepted, in bytes.
    pub max_datagram: usize,
    /// The key file, already resolved against the configuration file's directory.
    pub keyring: Option<PathBuf>,
    /// How often the nodes' host names (those that are not IP literals) are resolved again.
    pub resolve_interval: Duration,
    /// Where the HTTP endpoint (`/metrics`, `/status.json`, the status page) listens;
    /// `None`: no HTTP endpoint (`peermesh run --http ADDR` gives one).
    pub http_listen: Option<SocketAddr>,
    /// Whom each node probes: `auto` (by the mesh's size), `full` or `sampled`.
    pub probe_mode: ProbeMode,
    /// In sampled mode, how many peers each node probes per interval.
    pub probe_fanout: usize,
    /// All nodes of the mesh, in file order; never empty, names and addresses unique.
    pub nodes: Vec<NodeEntry>,
}

/// One node of the mesh as the file lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    /// The node's name, unique (case-insensitively) in the mesh; see [`NodeId::from_name`].
    pub name: String,
    /// An IP literal (`10.0.0.1`, `::1`) or a DNS name.
    pub host: String,
    /// The node's own UDP port, or the file's default port.
    pub port: u16,
    /// The node's initial tags (`tags: {"role": "db"}`), checked against
    /// [`MAX_TAG_BYTES`], [`MAX_TAG_KEY_BYTES`] and [`MAX_TAG_VALUE_BYTES`]; empty when the
    /// entry gives none. The running node may change its tags; the file is not rewritten.
    pub tags: BTreeMap<String, String>,
    /// The event handler this node runs (`peermesh run --handler` overrides it): the node's
    /// own `handler`, else the file's top-level one, resolved against the configuration
    /// file's directory like `keyring`; `None` when neither is given.
    pub handler: Option<PathBuf>,
}

impl NodeEntry {
    /// The node's identity on the wire.
    pub fn id(&self) -> NodeId {
        NodeId::from_name(&self.name)
    }

    /// Its address when its host is an IP literal (`10.0.0.1`, `::1`, `[::1]`); `None` for
    /// a host name, which must be resolved.
    pub fn literal_addr(&self) -> Option<SocketAddr> {
        ip_literal(&self.host).map(|ip| SocketAddr::new(ip.to_canonical(), self.port))
    }
}

impl Config {
    /// The core's settings for this mesh, with this process's incarnation and seed.
    pub fn settings(&self, incarnation: u64, seed: u64) -> Settings {
        Settings {
            heartbeat_interval: self.heartbeat_interval,
            suspect_after: self.suspect_after,
            dead_after: self.dead_after,
            max_datagram: self.max_datagram,
            incarnation,
            seed,
            probe_mode: self.probe_mode,
            probe_fanout: self.probe_fanout,
        }
    }

    /// Every node (this one included) with its address, in config order: what
    /// [`Mesh::with_nodes`] takes. `addrs[i]` is the resolved address of `nodes[i]`.
    pub fn node_list<'a>(
        &'a self,
        addrs: &'a [SocketAddr],
    ) -> impl Iterator<Item = (&'a str, SocketAddr)> + 'a {
        self.nodes
            .iter()
            .zip(addrs)
            .map(|(node, addr)| (node.name.as_str(), *addr))
    }

    /// The core of node `nodes[me]`, with every other node as a peer, listed in config order,
    /// and with the tags of its entry.
    pub fn mesh(
        &self,
        me: usize,
        addrs: &[SocketAddr],
        incarnation_and_seed: (u64, u64),
        now: Instant,
    ) -> Mesh {
        let addrs: Vec<Option<SocketAddr>> = addrs.iter().copied().map(Some).collect();
        self.mesh_of_resolved(me, &addrs, incarnation_and_seed, now)
    }

    /// [`Config::mesh`] when not every address is known: the nodes whose `addrs[i]` is
    /// `None` (a host name that did not resolve) are left out, to be added once resolved.
    pub fn mesh_of_resolved(
        &self,
        me: usize,
        addrs: &[Option<SocketAddr>],
        (incarnation, seed): (u64, u64),
        now: Instant,
    ) -> Mesh {
        let name = self.nodes.get(me).map_or("", |n| n.name.as_str());
        let settings = self.settings(incarnation, seed);
        let nodes = self
            .nodes
            .iter()
            .zip(addrs)
            .filter_map(|(node, addr)| Some((node.name.as_str(), (*addr)?)));
        let mut mesh = Mesh::with_nodes(name, settings, now, nodes);
        let tags = self
            .nodes
            .get(me)
            .map(|n| &n.tags)
            .filter(|t| !t.is_empty());
        if let Some(tags) = tags {
            let changes: Vec<(String, Option<String>)> = tags
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect();
            // A loaded config was checked by the same rules; one built in code may not be.
            if let Err(e) = mesh.set_tags(&changes) {
                log::warn!("node {name}: the tags of its config entry are refused: {e}");
            }
        }
        mesh
    }

    /// Reads and checks the configuration file at `path`.
    ///
    /// Only a regular file is read (a FIFO or a device is refused without blocking, after
    /// `fstat` on the opened file), and at most [`MAX_CONFIG_BYTES`] of it. Errors name the
    /// file as `path` shows it; an I/O, file-type or size error has no position.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        use crate::config::files::{read_regular, ReadError};
        let label = path.display().to_string();
        let bytes = read_regular(path, MAX_CONFIG_BYTES).map_err(|error| {
            let kind = match error {
                ReadError::Io(error) => ConfigErrorKind::Io(error),
                ReadError::NotRegular(what) => ConfigErrorKind::NotRegularFile { what },
                ReadError::TooLarge(bytes) => ConfigErrorKind::TooLarge { bytes },
            };
            ConfigError::new(&label, None, kind)
        })?;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => {
                let valid = error.utf8_error().valid_up_to();
                let before = String::from_utf8_lossy(&error.as_bytes()[..valid]);
                let pos = position_after(&before);
                return Err(ConfigError::new(
                    &label,
                    Some(pos),
                    ConfigErrorKind::Syntax {
                        message: "the file is not valid UTF-8 text".to_string(),
                    },
                ));
            }
        };
        let base = path.parent().unwrap_or(Path::new(""));
        parse_in(&text, &label, base)
    }

    /// Parses and checks configuration `text`. Pure: reads no file.
    ///
    /// `file` names the text in error messages; it is also taken as the file's path, so a
    /// relative `keyring` is resolved against its directory (`Path::new(file).parent()`).
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let base = Path::new(file).parent().unwrap_or(Path::new(""));
        parse_in(text, file, base)
    }

    /// Reads the key file this config names ([`Config::keyring`]) with
    /// [`key_file::load_keyring`]; `Ok(None)` when it names none (the mesh then runs
    /// unauthenticated).
    pub fn load_keyring(&self) -> Result<Option<crate::wire::keyring::Keyring>, KeyFileError> {
        self.keyring
            .as_deref()
            .map(key_file::load_keyring)
            .transpose()
    }

    /// Which node this process is: the index of its entry in [`Config::nodes`].
    ///
    /// With `name`, the node of that name (compared case-insensitively). Without, the node
    /// whose name equals (case-insensitively) the full `hostname` or its first label
    /// (`alpha.example.com` matches `alpha`). Pure: the caller passes the hostname, usually
    /// [`default_hostname`]. The error has no file or position; see [`ConfigError::with_file`].
    pub fn find_self(&self, name: Option<&str>, hostname: &str) -> Result<usize, ConfigError> {
        let names = || self.nodes.iter().map(|n| n.name.clone()).collect();
        if let Some(name) = name {
            return self
                .nodes
                .iter()
                .position(|n| same_name(&n.name, name))
                .ok_or_else(|| {
                    ConfigError::bare(ConfigErrorKind::SelfNotFound {
                        name: Some(name.to_string()),
                        hostname: hostname.to_string(),
                        nodes: names(),
                    })
                });
        }
        let full = hostname.trim().trim_end_matches('.');
        let label = full.split('.').next().unwrap_or(full);
        let matches: Vec<usize> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                !full.is_empty() && (same_name(&n.name, full) || same_name(&n.name, label))
            })
            .map(|(i, _)| i)
            .collect();
        match matches.as_slice() {
            [index] => Ok(*index),
            [] => Err(ConfigError::bare(ConfigErrorKind::SelfNotFound {
                name: None,
                hostname: hostname.to_string(),
                nodes: names(),
            })),
            _ => Err(ConfigError::bare(ConfigErrorKind::AmbiguousHostname {
                hostname: hostname.to_string(),
                nodes: matches
                    .iter()
                    .map(|&i| self.nodes[i].name.clone())
                    .collect(),
            })),
        }
    }

    /// The socket address of node `index`: an IP literal directly (`[::1]` is accepted too),
    /// anything else through the system resolver (first result, IPv4 preferred).
    ///
    /// May block on DNS. The error has no file or position; see [`ConfigError::with_file`].
    pub fn resolve(&self, index: usize) -> Result<SocketAddr, ConfigError> {
        let node = self.nodes.get(index).ok_or_else(|| {
            ConfigError::bare(ConfigErrorKind::NoSuchIndex {
                index,
                len: self.nodes.len(),
            })
        })?;
        if let Some(ip) = ip_literal(&node.host) {
            return Ok(SocketAddr::new(ip, node.port));
        }
        let failed = |reason: String| {
            ConfigError::bare(ConfigErrorKind::Resolve {
                name: node.name.clone(),
                host: node.host.clone(),
                port: node.port,
                reason,
            })
        };
        let addrs: Vec<SocketAddr> = (node.host.as_str(), node.port)
            .to_socket_addrs()
            .map_err(|error| failed(error.to_string()))?
            .collect();
        addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| failed("the name has no addresses".to_string()))
    }
}

/// This machine's hostname (lossily converted to UTF-8), for [`Config::find_self`].
pub fn default_hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Why a configuration could not be loaded, or a node not found or resolved.
///
/// Displays as `FILE:LINE:COL: what is wrong`, or `FILE: what is wrong` when no place in the
/// file is concerned, or only `what is wrong` when the error carries no file name.
#[derive(Debug)]
pub struct ConfigError {
    file: Option<String>,
    position: Option<(usize, usize)>,
    kind: Box<ConfigErrorKind>,
}

impl ConfigError {
    fn new(file: &str, position: Option<Pos>, kind: ConfigErrorKind) -> ConfigError {
        ConfigError {
            file: Some(file.to_string()),
            position: position.map(|p| (p.line, p.col)),
            kind: Box::new(kind),
        }
    }

    /// What the resolver said, for an error of kind [`ConfigErrorKind::Resolve`] (without the
    /// node and host the error names); else the whole message.
    pub fn resolve_reason(&self) -> String {
        match self.kind.as_ref() {
            ConfigErrorKind::Resolve { reason, .. } => reason.clone(),
            _ => self.to_string(),
        }
    }

    /// Node `name`'s host `host` (port `port`) does not resolve: `reason`. No file or
    /// position, as [`Config::resolve`] gives it.
    pub fn resolve_failed(name: &str, host: &str, port: u16, reason: &str) -> ConfigError {
        ConfigError::bare(ConfigErrorKind::Resolve {
            name: name.to_owned(),
            host: host.to_owned(),
            port,
            reason: reason.to_owned(),
        })
    }

    pub(crate) fn bare(kind: ConfigErrorKind) -> ConfigError {
        ConfigError {
            file: None,
            position: None,
            kind: Box::new(kind),
        }
    }

    /// What is wrong.
    pub fn kind(&self) -> &ConfigErrorKind {
        &self.kind
    }

    /// Where in the file: 1-based line and column (the column counted in characters).
    pub fn position(&self) -> Option<(usize, usize)> {
        self.position
    }

    /// The file name used in the message, if any.
    pub fn file(&self) -> Option<&str> {
        self.file.as_deref()
    }

    /// The same error, naming `file` in its message; useful for the errors of
    /// [`Config::find_self`] and [`Config::resolve`], which do not know the file.
    pub fn with_file(mut self, file: impl Into<String>) -> ConfigError {
        self.file = Some(file.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}:")?;
        }
        if let Some((line, col)) = self.position {
            write!(f, "{line}:{col}:")?;
        }
        if self.file.is_some() || self.position.is_some() {
            f.write_str(" ")?;
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.kind {
            ConfigErrorKind::Io(error) => Some(error),
            _ => None,
        }
    }
}

/// What is wrong with a configuration. `node` fields are 0-based indexes into the node list.
///
/// The [`fmt::Display`] form is the message without file and position.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file could not be read. No position.
    Io(io::Error),
    /// The path names something other than a regular file (a FIFO, a device, a directory):
    /// refused without reading it. No position.
    NotRegularFile {
        /// What it is instead, e.g. `"a FIFO"`.
        what: &'static str,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`]. No position.
    TooLarge {
        /// Its size as `fstat` gave it; `None` when it only proved too large while read.
        bytes: Option<u64>,
    },
    /// The text is not valid RON (or not UTF-8); `message` says what the parser expected.
    Syntax {
        /// The parser's complaint.
        message: String,
    },
    /// A field that the format does not have, at the top level or in a node. Points at it.
    UnknownField {
        /// The field as written.
        field: String,
        /// The fields allowed in that place.
        allowed: Vec<String>,
        /// Whether the field is inside a node (else at the top level).
        in_node: bool,
    },
    /// A field given twice in the same place. Points at the second.
    DuplicateField {
        /// The field.
        field: String,
        /// The line of the first one, when known.
        first_line: Option<usize>,
    },
    /// A required field is missing: `nodes`, or a node's `name` or `host`. Points at the
    /// opening parenthesis of the node (or of the whole file).
    MissingField {
        /// The missing field.
        field: String,
        /// The node it is missing from, or `None` for the top level.
        node: Option<usize>,
    },
    /// A value of the wrong type, or a number too big to be read. Points at the value.
    WrongType {
        /// The field whose value is wrong.
        field: String,
        /// The node the field is in, or `None` for the top level.
        node: Option<usize>,
        /// What was expected.
        expected: String,
        /// The text found instead.
        found: String,
    },
    /// `nodes` is empty. Points at `nodes`.
    NoNodes,
    /// More nodes than a full mesh supports ([`MAX_NODES`]). Points at `nodes`.
    TooManyNodes {
        /// How many the file lists.
        count: usize,
        /// The most the file's `probe_mode` allows ([`MAX_NODES`], or [`MAX_FULL_NODES`]
        /// for `full`).
        max: usize,
    },
    /// A port (the default `port` or a node's) outside 1..=65535. Points at it.
    InvalidPort {
        /// The port as written.
        port: u64,
        /// The node, or `None` for the default port.
        node: Option<usize>,
    },
    /// `heartbeat_interval_ms` is 0. Points at it.
    ZeroHeartbeatInterval,
    /// `heartbeat_interval_ms` is below [`MIN_HEARTBEAT_INTERVAL`]. Points at it.
    HeartbeatTooShort {
        /// The interval given, in milliseconds.
        ms: u64,
    },
    /// A duration above [`MAX_DURATION`]. Points at it.
    DurationTooLong {
        /// The field: `heartbeat_interval_ms`, `suspect_after_ms` or `dead_after_ms`.
        field: &'static str,
        /// The value given, in milliseconds.
        ms: u64,
    },
    /// `suspect_after_ms` is not less than `dead_after_ms`. Points at `suspect_after_ms`, or
    /// at `dead_after_ms` if only that was given.
    SuspectNotBeforeDead {
        /// The suspect time in milliseconds, given or default.
        suspect_ms: u64,
        /// Whether the suspect time is the default.
        suspect_default: bool,
        /// The dead time in milliseconds, given or default.
        dead_ms: u64,
        /// Whether the dead time is the default.
        dead_default: bool,
    },
    /// `suspect_after_ms` is not more than the heartbeat interval: a peer would be suspected
    /// between two heartbeats. Points at `suspect_after_ms`.
    SuspectWithinHeartbeat {
        /// The suspect time given, in milliseconds.
        suspect_ms: u64,
        /// The heartbeat interval in milliseconds, given or default.
        interval_ms: u64,
    },
    /// `max_datagram_bytes` outside [`MIN_DATAGRAM`]..=[`MAX_DATAGRAM`]. Points at it.
    DatagramSizeOutOfRange {
        /// The value given.
        bytes: u64,
    },
    /// `keyring` is an empty string. Points at it.
    EmptyKeyring,
    /// `resolve_interval_ms` below [`MIN_RESOLVE_INTERVAL`]. Points at it.
    ResolveIntervalTooShort {
        /// The interval given, in milliseconds.
        ms: u64,
    },
    /// `http_listen` is not an IP address and port (`127.0.0.1:9313`, `[::1]:9313`).
    /// Points at it.
    InvalidHttpListen {
        /// The value as written.
        value: String,
    },
    /// `probe_mode` is none of `auto`, `full`, `sampled`. Points at it.
    InvalidProbeMode {
        /// The value as written.
        value: String,
    },
    /// `probe_fanout` outside [`PROBE_FANOUT_RANGE`]. Points at it.
    ProbeFanoutOutOfRange {
        /// The value given.
        fanout: u64,
    },
    /// `handler` (the top-level one, or a node's) is an empty string. Points at it.
    EmptyHandler {
        /// The node, or `None` for the top-level `handler`.
        node: Option<usize>,
    },
    /// A tag key is empty. Points at it.
    EmptyTagKey {
        /// The node's name.
        name: String,
    },
    /// A tag key has a character other than `A-Z`, `a-z`, `0-9`, `_`, `.`, `-`, `:` and
    /// `/`. Points at the key.
    InvalidTagKey {
        /// The node's name.
        name: String,
        /// The key.
        key: String,
        /// The first offending character.
        bad: char,
    },
    /// A tag key is longer than [`MAX_TAG_KEY_BYTES`]. Points at it.
    TagKeyTooLong {
        /// The node's name.
        name: String,
        /// The key.
        key: String,
    },
    /// A tag value is longer than [`MAX_TAG_VALUE_BYTES`]. Points at the value.
    TagValueTooLong {
        /// The node's name.
        name: String,
        /// The key of the value.
        key: String,
        /// The value's length in bytes.
        bytes: usize,
    },
    /// A node's tags (keys and values together) are more than [`MAX_TAG_BYTES`]. Points at
    /// the key that passes the limit.
    TagsTooLarge {
        /// The node's name.
        name: String,
        /// The bytes of all its tags.
        bytes: usize,
    },
    /// A tag key given twice in one node. Points at the second.
    DuplicateTagKey {
        /// The node's name.
        name: String,
        /// The key.
        key: String,
        /// The line of the first, when known.
        first_line: Option<usize>,
    },
    /// A node's name is empty. Points at it.
    EmptyName {
        /// The node.
        node: usize,
    },
    /// A node's name contains whitespace or a control character. Points at the name.
    InvalidName {
        /// The name.
        name: String,
        /// The first offending character.
        bad: char,
    },
    /// A node's name is longer than [`MAX_NAME_BYTES`]. Points at it.
    NameTooLong {
        /// The name.
        name: String,
    },
    /// A node's host is empty. Points at it.
    EmptyHost {
        /// The node's name.
        name: String,
    },
    /// A node's host contains whitespace or a control character. Points at the host.
    InvalidHost {
        /// The node's name.
        name: String,
        /// The host.
        host: String,
        /// The first offending character.
        bad: char,
    },
    /// Two nodes have the same name, compared case-insensitively. Points at the second.
    DuplicateName {
        /// The second name as written.
        name: String,
        /// The first name as written.
        first: String,
        /// The line of the first, when known.
        first_line: Option<usize>,
    },
    /// Two different names have the same [`NodeId`], so peers could not tell them apart.
    /// Points at the second.
    DuplicateNodeId {
        /// The second name.
        name: String,
        /// The first name.
        first: String,
        /// The line of the first, when known.
        first_line: Option<usize>,
        /// The identity they share.
        id: NodeId,
    },
    /// Two nodes have the same host and port (the default port applied; hosts compared
    /// case-insensitively, IP literals by value). Points at the second node's host.
    DuplicateAddress {
        /// The second node.
        name: String,
        /// The second node's host as written.
        host: String,
        /// The port both use.
        port: u16,
        /// Whether the second node's port is the default.
        port_default: bool,
        /// The first node.
        first: String,
        /// The line of the first node's host, when known.
        first_line: Option<usize>,
    },
    /// No node matches the `--name` or the hostname. No position.
    SelfNotFound {
        /// The name asked for, if one was.
        name: Option<String>,
        /// The hostname compared.
        hostname: String,
        /// The names in the configuration.
        nodes: Vec<String>,
    },
    /// The hostname matches several nodes (one by its full name, another by its first label).
    /// No position.
    AmbiguousHostname {
        /// The hostname compared.
        hostname: String,
        /// The names that match it.
        nodes: Vec<String>,
    },
    /// [`Config::resolve`] was given an index past the end of the node list.
    NoSuchIndex {
        /// The index given.
        index: usize,
        /// The number of nodes.
        len: usize,
    },
    /// A node's host could not be resolved to an address. No position.
    Resolve {
        /// The node.
        name: String,
        /// Its host.
        host: String,
        /// Its port.
        port: u16,
        /// The resolver's complaint.
        reason: String,
    },
}

impl fmt::Display for ConfigErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ConfigErrorKind as K;
        match self {
            K::Io(error) => write!(f, "cannot read the configuration file: {error}"),
            K::NotRegularFile { what } => write!(f, "not a regular file ({what})"),
            K::TooLarge { bytes: Some(bytes) } => write!(
                f,
                "{bytes} bytes, more than the {MAX_CONFIG_BYTES} a config may have"
            ),
            K::TooLarge { bytes: None } => write!(
                f,
                "more than the {MAX_CONFIG_BYTES} bytes a config may have"
            ),
            // ron's messages may quote the text at fault: keep them to a line.
            K::Syntax { message } => write!(f, "syntax error: {}", clip(message, 4 * ECHOED_CHARS)),
            K::UnknownField {
                field,
                allowed,
                in_node,
            } => {
                let place = if *in_node { " in a node" } else { "" };
                write!(f, "unknown field `{}`{place}", echo(field))?;
                if let Some(close) = suggest(field, allowed) {
                    write!(f, " (did you mean `{close}`?)")?;
                }
                let allowed = allowed
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let whose = if *in_node { "a node's fields" } else { "the top-level fields" };
                write!(f, "; {whose} are {allowed}")
            }
            K::DuplicateField { field, first_line } => {
                write!(f, "field `{}` is given twice", echo(field))?;
                if let Some(line) = first_line {
                    write!(f, " (first at line {line})")?;
                }
                f.write_str("; keep one")
            }
            K::MissingField { field, node: None } => write!(
                f,
                "missing field `{field}`: the file must list the nodes, \
                 like `nodes: [(name: \"alpha\", host: \"10.0.0.1\")]`"
            ),
            K::MissingField {
                field,
                node: Some(node),
            } => write!(
                f,
                "node #{} has no `{field}`: every node needs a `name` and a `host`",
                node + 1
            ),
            K::WrongType {
                field,
                node,
                expected,
                found,
            } => {
                write!(f, "wrong type for `{}`", echo(field))?;
                if let Some(node) = node {
                    write!(f, " of node #{}", node + 1)?;
                }
                write!(f, ": expected {expected}")?;
                if !found.is_empty() {
                    write!(f, ", found `{}`", echo(found))?;
                }
                Ok(())
            }
            K::TooManyNodes { count, max } if *max < MAX_NODES => write!(
                f,
                "the node list has {count} nodes; a probe_mode \"full\" mesh holds at most \
                 {max} (every node probes every other and keeps the whole matrix): use \
                 \"sampled\" or \"auto\" (see docs/OPERATIONS.md, Mesh size)"
            ),
            K::TooManyNodes { count, max } => write!(
                f,
                "the node list has {count} nodes; a mesh holds at most {max} \
                 (see docs/OPERATIONS.md, Mesh size)"
            ),
            K::NoNodes => f.write_str(
                "the node list is empty: list every node of the mesh, \
                 like `(name: \"alpha\", host: \"10.0.0.1\")`",
            ),
            K::InvalidPort { port, node } => {
                match node {
                    Some(node) => write!(f, "port {port} of node #{}", node + 1)?,
                    None => write!(f, "default port {port}")?,
                }
                let problem = if *port == 0 { "is not allowed" } else { "is too large" };
                write!(f, " {problem}: use a port from 1 to 65535")
            }
            K::ZeroHeartbeatInterval => write!(
                f,
                "heartbeat_interval_ms is 0: give the time between heartbeats, at least {} ms",
                MIN_HEARTBEAT_INTERVAL.as_millis()
            ),
            K::HeartbeatTooShort { ms } => write!(
                f,
                "heartbeat_interval_ms {ms} is too short: at least {} ms",
                MIN_HEARTBEAT_INTERVAL.as_millis()
            ),
            K::DurationTooLong { field, ms } => write!(
                f,
                "{field} {ms} is too long: at most {} ms (one day)",
                MAX_DURATION.as_millis()
            ),
            K::SuspectNotBeforeDead {
                suspect_ms,
                suspect_default,
                dead_ms,
                dead_default,
            } => {
                let s = if *suspect_default { ", the default" } else { "" };
                let d = if *dead_default { ", the default" } else { "" };
                write!(
                    f,
                    "suspect_after_ms ({suspect_ms}{s}) must be less than \
                     dead_after_ms ({dead_ms}{d}): a peer is suspected before it is declared dead"
                )
            }
            K::SuspectWithinHeartbeat {
                suspect_ms,
                interval_ms,
            } => write!(
                f,
                "suspect_after_ms ({suspect_ms}) must be greater than heartbeat_interval_ms \
                 ({interval_ms}), or a peer is suspected between two heartbeats"
            ),
            K::DatagramSizeOutOfRange { bytes } => write!(
                f,
                "max_datagram_bytes {bytes} is out of range: use {MIN_DATAGRAM} to {MAX_DATAGRAM} \
                 (default {DEFAULT_MAX_DATAGRAM})"
            ),
            K::ResolveIntervalTooShort { ms } => write!(
                f,
                "resolve_interval_ms {ms} is too short: at least {} ms",
                MIN_RESOLVE_INTERVAL.as_millis()
            ),
            K::InvalidHttpListen { value } => write!(
                f,
                "http_listen {value:?} is not an address and port: write it like \"127.0.0.1:9313\" \
                 or \"[::1]:9313\""
            ),
            K::InvalidProbeMode { value } => write!(
                f,
                "probe_mode {value:?} is not a mode: use \"auto\" (full up to \
                 {AUTO_FULL_UP_TO} nodes, sampled above), \"full\" or \"sampled\""
            ),
            K::ProbeFanoutOutOfRange { fanout } => write!(
                f,
                "probe_fanout {fanout} is out of range: use {} to {} (default \
                 {DEFAULT_PROBE_FANOUT})",
                PROBE_FANOUT_RANGE.start(),
                PROBE_FANOUT_RANGE.end()
            ),
            K::EmptyKeyring => f.write_str("keyring is empty: give the key file's path, or remove the field"),
            K::EmptyHandler { node } => {
                f.write_str("handler")?;
                if let Some(node) = node {
                    write!(f, " of node #{}", node + 1)?;
                }
                f.write_str(" is empty: give the program's path, or remove the field")
            }
            K::EmptyTagKey { name } => write!(
                f,
                "node {:?} has a tag with an empty key: keys are 1 to {MAX_TAG_KEY_BYTES} \
                 bytes of A-Z, a-z, 0-9, `_`, `.`, `-`, `:` and `/`",
                echo(name)
            ),
            K::InvalidTagKey { name, key, bad } => write!(
                f,
                "tag key {:?} of node {:?} contains {}: keys are 1 to {MAX_TAG_KEY_BYTES} \
                 bytes of A-Z, a-z, 0-9, `_`, `.`, `-`, `:` and `/`",
                echo(key),
                echo(name),
                describe_key_char(*bad)
            ),
            K::TagKeyTooLong { name, key } => write!(
                f,
                "tag key {:?} of node {:?} is {} bytes long: at most {MAX_TAG_KEY_BYTES}",
                echo(key),
                echo(name),
                key.len()
            ),
            K::TagValueTooLong { name, key, bytes } => write!(
                f,
                "the value of tag {:?} of node {:?} is {bytes} bytes long: at most \
                 {MAX_TAG_VALUE_BYTES}",
                echo(key),
                echo(name)
            ),
            K::TagsTooLarge { name, bytes } => write!(
                f,
                "the tags of node {:?} take {bytes} bytes (keys and values), more than the \
                 {MAX_TAG_BYTES} a node may have",
                echo(name)
            ),
            K::DuplicateTagKey {
                name,
                key,
                first_line,
            } => {
                write!(
                    f,
                    "tag key {:?} of node {:?} is given twice",
                    echo(key),
                    echo(name)
                )?;
                if let Some(line) = first_line {
                    write!(f, " (first at line {line})")?;
                }
                f.write_str("; keep one")
            }
            K::EmptyName { node } => write!(f, "node #{} has an empty name", node + 1),
            K::InvalidName { name, bad } => write!(
                f,
                "node name {:?} contains {}: names may not contain whitespace or control characters",
                echo(name),
                describe_char(*bad)
            ),
            K::NameTooLong { name } => write!(
                f,
                "node name {:?} is {} bytes long: at most {MAX_NAME_BYTES}",
                echo(name),
                name.len()
            ),
            K::EmptyHost { name } => write!(
                f,
                "node {:?} has an empty host: give an IP address or a DNS name",
                echo(name)
            ),
            K::InvalidHost { name, host, bad } => write!(
                f,
                "host {:?} of node {:?} contains {}: give an IP address or a DNS name",
                echo(host),
                echo(name),
                describe_char(*bad)
            ),
            K::DuplicateName {
                name,
                first,
                first_line,
            } => {
                write!(
                    f,
                    "duplicate node name {:?}: {:?} is already listed",
                    echo(name),
                    echo(first)
                )?;
                write_line(f, *first_line)?;
                f.write_str(" (names are compared case-insensitively)")
            }
            K::DuplicateNodeId {
                name,
                first,
                first_line,
                id,
            } => {
                write!(
                    f,
                    "node name {:?} has the same identity ({id}) as {:?}",
                    echo(name),
                    echo(first)
                )?;
                write_line(f, *first_line)?;
                f.write_str(": peers could not tell them apart; rename one of them")
            }
            K::DuplicateAddress {
                name,
                host,
                port,
                port_default,
                first,
                first_line,
            } => {
                write!(
                    f,
                    "node {:?} has the same address as node {:?}",
                    echo(name),
                    echo(first)
                )?;
                write_line(f, *first_line)?;
                write!(f, ": host {:?}, port {port}", echo(host))?;
                if *port_default {
                    f.write_str(" (the default port)")?;
                }
                f.write_str("; give one of them another host or port")
            }
            K::SelfNotFound {
                name: Some(name),
                nodes,
                ..
            } => write!(
                f,
                "no node is named {:?}; the nodes are: {}; pass --name NAME with one of them",
                echo(name),
                list_names(nodes)
            ),
            K::SelfNotFound {
                name: None,
                hostname,
                nodes,
            } => {
                write!(
                    f,
                    "no node matches this machine's hostname {:?}",
                    echo(hostname)
                )?;
                let full = hostname.trim().trim_end_matches('.');
                let label = full.split('.').next().unwrap_or(full);
                if label != full {
                    write!(f, " (nor its first label {:?})", echo(label))?;
                }
                write!(
                    f,
                    "; the nodes are: {}; pass --name NAME to say which node this is",
                    list_names(nodes)
                )
            }
            K::AmbiguousHostname { hostname, nodes } => write!(
                f,
                "this machine's hostname {:?} matches several nodes: {}; \
                 pass --name NAME to say which node this is",
                echo(hostname),
                list_names(nodes)
            ),
            K::NoSuchIndex { index, len } => {
                write!(f, "no node #{index}: the configuration has {len} nodes")
            }
            K::Resolve {
                name,
                host,
                port,
                reason,
            } => write!(
                f,
                "cannot resolve host {:?} (port {port}) of node {:?}: {}",
                echo(host),
                echo(name),
                clip(reason, 4 * ECHOED_CHARS)
            ),
        }
    }
}

/// A value someone wrote, as an error message shows it: its first [`ECHOED_CHARS`]
/// characters, then `…` if there was more.
fn echo(value: &str) -> std::borrow::Cow<'_, str> {
    clip(value, ECHOED_CHARS)
}

fn write_line(f: &mut fmt::Formatter<'_>, line: Option<usize>) -> fmt::Result {
    match line {
        Some(line) => write!(f, " at line {line}"),
        None => Ok(()),
    }
}

fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        '\t' => "a tab".to_string(),
        c if c.is_control() => format!("a control character ({})", c.escape_unicode()),
        c => format!("whitespace ({})", c.escape_unicode()),
    }
}

/// A character a tag key may not have, as an error message names it.
fn describe_key_char(c: char) -> String {
    if c.is_whitespace() || c.is_control() {
        describe_char(c)
    } else {
        format!("`{c}`")
    }
}

fn list_names(names: &[String]) -> String {
    if names.is_empty() {
        return "(none)".to_string();
    }
    let mut list = names
        .iter()
        .take(LISTED_NAMES)
        .map(|name| echo(name))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LISTED_NAMES {
        list.push_str(&format!(" and {} more", names.len() - LISTED_NAMES));
    }
    list
}

/// The allowed field closest to `field`, if it is close enough to be a typo.
fn suggest<'a>(field: &str, allowed: &'a [String]) -> Option<&'a str> {
    // No field name is long: a long word is no typo, and the distance would cost
    // its length times every allowed name's.
    if field.len() > ECHOED_CHARS {
        return None;
    }
    allowed
        .iter()
        .map(|a| (edit_distance(field, a), a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// Names are compared case-insensitively, as hostnames are.
fn same_name(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

/// The IP address written in `host`, if it is a literal (IPv6 possibly in brackets).
fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// A host as compared for duplicates.
#[derive(Clone, PartialEq, Eq, Hash)]
enum HostKey {
    Ip(IpAddr),
    Name(String),
}

impl HostKey {
    fn of(host: &str) -> HostKey {
        match ip_literal(host) {
            Some(ip) => HostKey::Ip(ip.to_canonical()),
            None => HostKey::Name(host.trim_end_matches('.').to_lowercase()),
        }
    }
}

// ----------------------------------------------------------------------------------------
// Reading: serde does the types, the checks below do the rules.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "Config")]
struct RawConfig {
    #[serde(default)]
    port: Option<u64>,
    #[serde(default)]
    heartbeat_interval_ms: Option<u64>,
    #[serde(default)]
    suspect_after_ms: Option<u64>,
    #[serde(default)]
    dead_after_ms: Option<u64>,
    #[serde(default)]
    max_datagram_bytes: Option<u64>,
    #[serde(default)]
    keyring: Option<String>,
    #[serde(default)]
    resolve_interval_ms: Option<u64>,
    #[serde(default)]
    http_listen: Option<String>,
    #[serde(default)]
    probe_mode: Option<String>,
    #[serde(default)]
    probe_fanout: Option<u64>,
    nodes: Vec<RawNode>,
    #[serde(default)]
    handler: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "Node")]
struct RawNode {
    name: String,
    host: String,
    #[serde(default)]
    port: Option<u64>,
    #[serde(default)]
    tags: Option<RawTags>,
    #[serde(default)]
    handler: Option<String>,
}

/// A node's `tags` map as written: every entry in file order, repeats kept, so a repeated
/// key is an error and each entry's place in the file can be found again.
struct RawTags(Vec<(String, String)>);

impl<'de> Deserialize<'de> for RawTags {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<RawTags, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = RawTags;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of strings to strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawTags, A::Error> {
                // Bounded by the file's size (at most MAX_CONFIG_BYTES).
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, String>()? {
                    entries.push(entry);
                }
                Ok(RawTags(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

fn parse_in(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
    let layout = Layout::scan(text);
    let options =
        ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
    let raw: RawConfig = options
        .from_str(text)
        .map_err(|error| from_ron(error, text, &layout, file))?;
    Checker {
        file,
        layout: &layout,
    }
    .check(raw, base)
}

struct Checker<'a> {
    file: &'a str,
    layout: &'a Layout,
}

impl Checker<'_> {
    fn err(&self, at: Option<Pos>, kind: ConfigErrorKind) -> ConfigError {
        ConfigError::new(self.file, at, kind)
    }

    /// Where the value of top-level field `name` starts.
    fn top(&self, name: &str) -> Option<Pos> {
        self.layout.top_field(name).map(|f| f.value)
    }

    /// Where the value of field `name` of node `node` starts.
    fn node(&self, node: usize, name: &str) -> Option<Pos> {
        self.layout.node_field(node, name).map(|f| f.value)
    }

    fn port(&self, port: u64, node: Option<usize>, at: Option<Pos>) -> Result<u16, ConfigError> {
        match u16::try_from(port) {
            Ok(port) if port != 0 => Ok(port),
            _ => Err(self.err(at, ConfigErrorKind::InvalidPort { port, node })),
        }
    }

    fn check(&self, raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
        use ConfigErrorKind as K;
        let port = match raw.port {
            Some(p) => self.port(p, None, self.top("port"))?,
            None => DEFAULT_PORT,
        };

        for (field, value) in [
            ("heartbeat_interval_ms", raw.heartbeat_interval_ms),
            ("suspect_after_ms", raw.suspect_after_ms),
            ("dead_after_ms", raw.dead_after_ms),
            ("resolve_interval_ms", raw.resolve_interval_ms),
        ] {
            if let Some(ms) = value.filter(|&ms| ms > millis(MAX_DURATION)) {
                return Err(self.err(self.top(field), K::DurationTooLong { field, ms }));
            }
        }
        let interval_ms = raw
            .heartbeat_interval_ms
            .unwrap_or(millis(DEFAULT_HEARTBEAT_INTERVAL));
        if interval_ms == 0 {
            return Err(self.err(self.top("heartbeat_interval_ms"), K::ZeroHeartbeatInterval));
        }
        if interval_ms < millis(MIN_HEARTBEAT_INTERVAL) {
            return Err(self.err(
                self.top("heartbeat_interval_ms"),
                K::HeartbeatTooShort { ms: interval_ms },
            ));
        }
        let suspect_ms = raw
            .suspect_after_ms
            .unwrap_or(interval_ms.saturating_mul(SUSPECT_INTERVALS));
        let dead_ms = raw
            .dead_after_ms
            .unwrap_or(interval_ms.saturating_mul(DEAD_INTERVALS));
        if suspect_ms >= dead_ms {
            let at = self
                .top("suspect_after_ms")
                .filter(|_| raw.suspect_after_ms.is_some())
                .or_else(|| self.top("dead_after_ms"))
                .or_else(|| self.top("heartbeat_interval_ms"));
            return Err(self.err(
                at,
                K::SuspectNotBeforeDead {
                    suspect_ms,
                    suspect_default: raw.suspect_after_ms.is_none(),
                    dead_ms,
                    dead_default: raw.dead_after_ms.is_none(),
                },
            ));
        }
        if suspect_ms <= interval_ms {
            let at = self
                .top("suspect_after_ms")
                .or_else(|| self.top("heartbeat_interval_ms"));
            return Err(self.err(
                at,
                K::SuspectWithinHeartbeat {
                    suspect_ms,
                    interval_ms,
                },
            ));
        }

        let max_datagram = match raw.max_datagram_bytes {
            None => DEFAULT_MAX_DATAGRAM,
            Some(bytes) => usize::try_from(bytes)
                .ok()
                .filter(|b| (MIN_DATAGRAM..=MAX_DATAGRAM).contains(b))
                .ok_or_else(|| {
                    self.err(
                        self.top("max_datagram_bytes"),
                        K::DatagramSizeOutOfRange { bytes },
                    )
                })?,
        };

        let keyring = match raw.keyring {
            None => None,
            Some(k) if k.is_empty() => return Err(self.err(self.top("keyring"), K::EmptyKeyring)),
            Some(k) => Some(base.join(k)),
        };
        let handler = self.handler(raw.handler, None, base)?;
        let resolve_ms = raw
            .resolve_interval_ms
            .unwrap_or(millis(DEFAULT_RESOLVE_INTERVAL));
        if resolve_ms < millis(MIN_RESOLVE_INTERVAL) {
            return Err(self.err(
                self.top("resolve_interval_ms"),
                K::ResolveIntervalTooShort { ms: resolve_ms },
            ));
        }
        let http_listen = match raw.http_listen {
            None => None,
            Some(value) => Some(value.parse::<SocketAddr>().map_err(|_| {
                self.err(
                    self.top("http_listen"),
                    K::InvalidHttpListen {
                        value: clip(&value, ECHOED_CHARS).into_owned(),
                    },
                )
            })?),
        };

        let probe_mode = match raw.probe_mode {
            None => ProbeMode::Auto,
            Some(value) => value.parse::<ProbeMode>().map_err(|_| {
                self.err(
                    self.top("probe_mode"),
                    K::InvalidProbeMode {
                        value: clip(&value, ECHOED_CHARS).into_owned(),
                    },
                )
            })?,
        };
        let probe_fanout = match raw.probe_fanout {
            None => DEFAULT_PROBE_FANOUT,
            Some(fanout) => usize::try_from(fanout)
                .ok()
                .filter(|f| PROBE_FANOUT_RANGE.contains(f))
                .ok_or_else(|| {
                    self.err(
                        self.top("probe_fanout"),
                        K::ProbeFanoutOutOfRange { fanout },
                    )
                })?,
        };

        if raw.nodes.is_empty() {
            let at = self.layout.top_field("nodes").map(|f| f.key);
            return Err(self.err(at, K::NoNodes));
        }
        let max = match probe_mode {
            ProbeMode::Full => MAX_FULL_NODES,
            _ => MAX_NODES,
        };
        if raw.nodes.len() > max {
            let at = self.layout.top_field("nodes").map(|f| f.key);
            let count = raw.nodes.len();
            return Err(self.err(at, K::TooManyNodes { count, max }));
        }
        let nodes = self.check_nodes(raw.nodes, port, handler.as_deref(), base)?;

        Ok(Config {
            port,
            heartbeat_interval: Duration::from_millis(interval_ms),
            suspect_after: Duration::from_millis(suspect_ms),
            dead_after: Duration::from_millis(dead_ms),
            max_datagram,
            keyring,
            resolve_interval: Duration::from_millis(resolve_ms),
            http_listen,
            probe_mode,
            probe_fanout,
            nodes,
        })
    }

    /// A `handler` path (top-level for `node: None`): not empty, resolved against `base`.
    fn handler(
        &self,
        handler: Option<String>,
        node: Option<usize>,
        base: &Path,
    ) -> Result<Option<PathBuf>, ConfigError> {
        match handler {
            None => Ok(None),
            Some(h) if h.is_empty() => {
                let at = match node {
                    Some(i) => self.node(i, "handler"),
                    None => self.top("handler"),
                };
                Err(self.err(at, ConfigErrorKind::EmptyHandler { node }))
            }
            Some(h) => Ok(Some(base.join(h))),
        }
    }

    /// Node `node`'s tags: keys well formed and not repeated, values and the whole map
    /// within their limits. Errors point at the key (or value) at fault.
    fn tags(
        &self,
        node: usize,
        name: &str,
        raw: Option<RawTags>,
    ) -> Result<BTreeMap<String, String>, ConfigError> {
        use ConfigErrorKind as K;
        let Some(RawTags(entries)) = raw else {
            return Ok(BTreeMap::new());
        };
        let places = self
            .layout
            .node_field(node, "tags")
            .map(|field| self.layout.map_entries(field))
            .unwrap_or_default();
        let key_at = |i: usize| {
            places
                .get(i)
                .map(|p| p.0)
                .or_else(|| self.node(node, "tags"))
        };
        let value_at = |i: usize| places.get(i).and_then(|p| p.1).or_else(|| key_at(i));
        let name = || name.to_string();
        let mut tags = BTreeMap::new();
        let mut first: HashMap<&str, usize> = HashMap::new();
        let mut bytes = 0usize;
        for (i, (key, value)) in entries.iter().enumerate() {
            if key.is_empty() {
                return Err(self.err(key_at(i), K::EmptyTagKey { name: name() }));
            }
            if let Some(bad) = key.chars().find(|&c| !tag_key_char(c)) {
                let key = key.clone();
                return Err(self.err(
                    key_at(i),
                    K::InvalidTagKey {
                        name: name(),
                        key,
                        bad,
                    },
                ));
            }
            if key.len() > MAX_TAG_KEY_BYTES {
                let key = key.clone();
                return Err(self.err(key_at(i), K::TagKeyTooLong { name: name(), key }));
            }
            if let Some(&earlier) = first.get(key.as_str()) {
                return Err(self.err(
                    key_at(i),
                    K::DuplicateTagKey {
                        name: name(),
                        key: key.clone(),
                        first_line: key_at(earlier).map(|p| p.line),
                    },
                ));
            }
            if value.len() > MAX_TAG_VALUE_BYTES {
                return Err(self.err(
                    value_at(i),
                    K::TagValueTooLong {
                        name: name(),
                        key: key.clone(),
                        bytes: value.len(),
                    },
                ));
            }
            bytes += key.len() + value.len();
            if bytes > MAX_TAG_BYTES {
                let total = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
                return Err(self.err(
                    key_at(i),
                    K::TagsTooLarge {
                        name: name(),
                        bytes: total,
                    },
                ));
            }
            first.insert(key, i);
            tags.insert(key.clone(), value.clone());
        }
        Ok(tags)
    }

    fn check_nodes(
        &self,
        raw: Vec<RawNode>,
        default_port: u16,
        default_handler: Option<&Path>,
        base: &Path,
    ) -> Result<Vec<NodeEntry>, ConfigError> {
        use ConfigErrorKind as K;
        let mut nodes: Vec<NodeEntry> = Vec::with_capacity(raw.len());
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut by_id: HashMap<NodeId, usize> = HashMap::new();
        let mut by_addr: HashMap<(HostKey, u16), usize> = HashMap::new();
        let line_of = |node: usize, field: &str| self.node(node, field).map(|p| p.line);

        for (i, node) in raw.into_iter().enumerate() {
            let at_name = self.node(i, "name");
            let name = node.name;
            if name.is_empty() {
                return Err(self.err(at_name, K::EmptyName { node: i }));
            }
            if let Some(bad) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
                return Err(self.err(at_name, K::InvalidName { name, bad }));
            }
            if name.len() > MAX_NAME_BYTES {
                return Err(self.err(at_name, K::NameTooLong { name }));
            }

            let at_host = self.node(i, "host");
            let host = node.host;
            if host.is_empty() {
                return Err(self.err(at_host, K::EmptyHost { name }));
            }
            if let Some(bad) = host.chars().find(|c| c.is_whitespace() || c.is_control()) {
                return Err(self.err(at_host, K::InvalidHost { name, host, bad }));
            }

            let port = match node.port {
                Some(p) => self.port(p, Some(i), self.node(i, "port"))?,
                None => default_port,
            };

            if let Some(&first) = by_name.get(&name.to_lowercase()) {
                return Err(self.err(
                    at_name,
                    K::DuplicateName {
                        name,
                        first: nodes[first].name.clone(),
                        first_line: line_of(first, "name"),
                    },
                ));
            }
            let id = NodeId::from_name(&name);
            if let Some(&first) = by_id.get(&id) {
                return Err(self.err(
                    at_name,
                    K::DuplicateNodeId {
                        name,
                        first: nodes[first].name.clone(),
                        first_line: line_of(first, "name"),
                        id,
                    },
                ));
            }
            if let Some(&first) = by_addr.get(&(HostKey::of(&host), port)) {
                return Err(self.err(
                    at_host,
                    K::DuplicateAddress {
                        name,
                        host,
                        port,
                        port_default: node.port.is_none(),
                        first: nodes[first].name.clone(),
                        first_line: line_of(first, "host"),
                    },
                ));
            }

            by_name.insert(name.to_lowercase(), i);
            by_id.insert(id, i);
            by_addr.insert((HostKey::of(&host), port), i);
            let tags = self.tags(i, &name, node.tags)?;
            let handler = self
                .handler(node.handler, Some(i), base)?
                .or_else(|| default_handler.map(Path::to_path_buf));
            nodes.push(NodeEntry {
                name,
                host,
                port,
                tags,
                handler,
            });
        }
        Ok(nodes)
    }
}

/// The characters a tag key may have (as [`crate::core::tags::valid_key`] has them).
fn tag_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':' | '/')
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Turns ron's error into ours, placed and worded with the help of the layout.
fn from_ron(
    error: ron::error::SpannedError,
    text: &str,
    layout: &Layout,
    file: &str,
) -> ConfigError {
    use ron::Error as E;
    let pos = ron_position(text, error.position);
    let kind;
    let mut at = pos;
    match error.code {
        E::NoSuchStructField {
            expected,
            found,
            outer,
        } => {
            if let Some((_, field)) = layout.key_before(&found, pos) {
                at = Some(field.key);
            }
            kind = ConfigErrorKind::UnknownField {
                allowed: expected.iter().map(|s| s.to_string()).collect(),
                in_node: outer.as_deref() == Some("Node"),
                field: found,
            };
        }
        E::DuplicateStructField { field, .. } => {
            let mut first_line = None;
            if let Some((list, second)) = layout.key_before(field, pos) {
                at = Some(second.key);
                first_line = layout
                    .fields(list)
                    .iter()
                    .find(|f| f.name == field)
                    .map(|f| f.key.line);
            }
            kind = ConfigErrorKind::DuplicateField {
                field: field.to_string(),
                first_line,
            };
        }
        E::MissingStructField { field, outer } => {
            let node = if outer.as_deref() == Some("Node") {
                layout.node_before(pos)
            } else {
                None
            };
            at = match node {
                Some(i) => layout.nodes.get(i).map(|n| n.open),
                None => layout.top_open,
            }
            .or(pos);
            kind = ConfigErrorKind::MissingField {
                field: field.to_string(),
                node,
            };
        }
        code => match layout
            .value_at(pos)
            .filter(|(_, f)| is_type_error(&code, f, pos))
        {
            Some((node, field)) => {
                // In the node list, ron points at the element at fault; elsewhere at the
                // value, or into it.
                if field.name != "nodes" {
                    at = Some(field.value);
                }
                let found = match &code {
                    E::InvalidValueForType { found, .. } => found.clone(),
                    E::ExpectedDifferentStructName { found, .. } => found.clone(),
                    _ => layout.token_text(text, pos, field),
                };
                kind = ConfigErrorKind::WrongType {
                    field: field.name.clone(),
                    node,
                    expected: expected_for(&field.name).to_string(),
                    found,
                };
            }
            None => {
                let message = code.to_string();
                let mut chars = message.chars();
                let message = match chars.next() {
                    Some(first) => first.to_lowercase().chain(chars).collect(),
                    None => message,
                };
                kind = ConfigErrorKind::Syntax { message };
            }
        },
    }
    ConfigError::new(file, at, kind)
}

/// Whether ron's complaint at `pos`, inside the value of `field`, is about the value's type
/// (rather than about punctuation after it).
fn is_type_error(code: &ron::Error, field: &FieldSpan, pos: Option<Pos>) -> bool {
    use ron::Error as E;
    match code {
        E::ExpectedArray
        | E::ExpectedBoolean
        | E::ExpectedChar
        | E::ExpectedFloat
        | E::ExpectedInteger
        | E::ExpectedOption
        | E::ExpectedMap
        | E::ExpectedDifferentStructName { .. }
        | E::ExpectedStructLike
        | E::ExpectedNamedStructLike(_)
        | E::ExpectedUnit
        | E::ExpectedString
        | E::IntegerOutOfBounds
        | E::InvalidValueForType { .. }
        | E::ExpectedDifferentLength { .. } => true,
        // `port: 1.5`: the integer is read up to the dot, then a comma is wanted.
        E::ExpectedComma => pos.is_some_and(|p| field.value < p && p < field.first_end),
        _ => false,
    }
}

fn expected_for(field: &str) -> &'static str {
    match field {
        "port" => "a port number from 1 to 65535",
        "heartbeat_interval_ms" | "suspect_after_ms" | "dead_after_ms" => {
            "a whole number of milliseconds"
        }
        "max_datagram_bytes" => "a whole number of bytes",
        "keyring" => "a path in double quotes",
        "resolve_interval_ms" => "a whole number of milliseconds",
        "http_listen" => "an address and port in double quotes, like \"127.0.0.1:9313\"",
        "probe_mode" => "\"auto\", \"full\" or \"sampled\" in double quotes",
        "probe_fanout" => "a whole number of peers",
        "name" => "a name in double quotes",
        "host" => "an IP address or DNS name in double quotes",
        "nodes" => "a list of nodes, each like (name: \"alpha\", host: \"10.0.0.1\")",
        "handler" => "a path in double quotes",
        "tags" => "a map of strings to strings, like {\"role\": \"db\"}",
        _ => "another type",
    }
}

/// ron counts columns in bytes and uses 0:0 for "no position"; ours are in characters.
fn ron_position(text: &str, position: ron::error::Position) -> Option<Pos> {
    if position.line == 0 {
        return None;
    }
    let line = text.split('\n').nth(position.line - 1).unwrap_or("");
    let mut byte = position.col.saturating_sub(1).min(line.len());
    while !line.is_char_boundary(byte) {
        byte -= 1;
    }
    Some(Pos {
        line: position.line,
        col: line[..byte].chars().count() + 1,
    })
}

/// The position just after `text`.
fn position_after(text: &str) -> Pos {
    let mut pos = Pos { line: 1, col: 1 };
    for c in text.chars() {
        pos.advance(c);
    }
    pos
}

// ----------------------------------------------------------------------------------------
// Layout: where things are in the file. serde forgets positions, so a small scan of the text
// finds where each top-level field and each node's fields are. It never fails: on text that
// is not valid RON it finds what it can.

/// A 1-based line and column (in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pos {
    line: usize,
    col: usize,
}

impl Pos {
    fn advance(&mut self, c: char) {
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenKind {
    Open(char),
    Close,
    Comma,
    Colon,
    Str,
    Word,
}

#[derive(Clone, Debug)]
struct Token {
    kind: TokenKind,
    start: Pos,
    end: Pos,
    bytes: std::ops::Range<usize>,
}

#[derive(Clone, Debug)]
struct FieldSpan {
    name: String,
    /// Where the field's name starts.
    key: Pos,
    /// Where its value starts.
    value: Pos,
    /// Where the value's first token ends.
    first_end: Pos,
    /// Where the value ends.
    end: Pos,
}

#[derive(Clone, Debug)]
struct NodeSpan {
    /// Where the node starts (its `(`, or its `Node` name).
    open: Pos,
    fields: Vec<FieldSpan>,
}

#[derive(Clone, Debug, Default)]
struct Layout {
    tokens: Vec<Token>,
    /// Where the whole configuration starts (its `(`, or its `Config` name).
    top_open: Option<Pos>,
    top: Vec<FieldSpan>,
    nodes: Vec<NodeSpan>,
}

/// Which list of fields: `None` the top level, `Some(i)` node `i`.
type ListId = Option<usize>;

impl Layout {
    fn scan(text: &str) -> Layout {
        let tokens = tokenize(text);
        let mut scanner = Scanner {
            text,
            tokens: &tokens,
            p: 0,
            nodes: Vec::new(),
        };
        let (top_open, top) = scanner.document();
        let nodes = scanner.nodes;
        Layout {
            tokens,
            top_open,
            top,
            nodes,
        }
    }

    fn top_field(&self, name: &str) -> Option<&FieldSpan> {
        self.top.iter().find(|f| f.name == name)
    }

    fn node_field(&self, node: usize, name: &str) -> Option<&FieldSpan> {
        self.nodes.get(node)?.fields.iter().find(|f| f.name == name)
    }

    fn fields(&self, list: ListId) -> &[FieldSpan] {
        match list {
            None => &self.top,
            Some(i) => self.nodes.get(i).map_or(&[], |n| &n.fields),
        }
    }

    fn lists(&self) -> impl Iterator<Item = (ListId, &FieldSpan)> {
        let top = self.top.iter().map(|f| (None, f));
        let nodes = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| n.fields.iter().map(move |f| (Some(i), f)));
        top.chain(nodes)
    }

    /// The entries of the map that is `field`'s value (`{"k": "v", ...}`, or inside
    /// `Some(...)`), in order: where each key starts, and where its value starts if found.
    fn map_entries(&self, field: &FieldSpan) -> Vec<(Pos, Option<Pos>)> {
        let mut tokens = self
            .tokens
            .iter()
            .filter(|t| field.value <= t.start && t.end <= field.end)
            .skip_while(|t| t.kind != TokenKind::Open('{'))
            .skip(1);
        let mut entries: Vec<(Pos, Option<Pos>)> = Vec::new();
        let (mut depth, mut want_key, mut want_value) = (0usize, true, false);
        for token in tokens.by_ref() {
            let top = depth == 0;
            match token.kind {
                TokenKind::Close if top => break,
                TokenKind::Close => depth -= 1,
                TokenKind::Comma if top => want_key = true,
                TokenKind::Colon if top => want_value = true,
                _ if top && want_key => {
                    entries.push((token.start, None));
                    want_key = false;
                }
                _ if top && want_value => {
                    if let Some(last) = entries.last_mut() {
                        last.1 = Some(token.start);
                    }
                    want_value = false;
                }
                _ => {}
            }
            if let TokenKind::Open(_) = token.kind {
                depth += 1;
            }
        }
        entries
    }

    /// The last field called `name` that starts at or before `pos`.
    fn key_before(&self, name: &str, pos: Option<Pos>) -> Option<(ListId, &FieldSpan)> {
        let pos = pos?;
        self.lists()
            .filter(|(_, f)| f.name == name && f.key <= pos)
            .max_by_key(|(_, f)| f.key)
    }

    /// The last node that starts at or before `pos`.
    fn node_before(&self, pos: Option<Pos>) -> Option<usize> {
        let pos = pos?;
        self.nodes.iter().rposition(|n| n.open <= pos)
    }

    /// The innermost field whose value spans `pos` (ends included).
    fn value_at(&self, pos: Option<Pos>) -> Option<(ListId, &FieldSpan)> {
        let pos = pos?;
        let inside = |f: &&FieldSpan| f.value <= pos && pos <= f.end;
        let in_node = self
            .nodes
            .iter()
            .enumerate()
            .find_map(|(i, n)| n.fields.iter().find(inside).map(|f| (Some(i), f)));
        in_node.or_else(|| self.top.iter().find(inside).map(|f| (None, f)))
    }

    /// The text of the token at `pos` (or ending there), within `field`'s value.
    fn token_text(&self, text: &str, pos: Option<Pos>, field: &FieldSpan) -> String {
        let in_field = |t: &&Token| field.value <= t.start && t.end <= field.end;
        let token = pos.and_then(|pos| {
            let mut tokens = self.tokens.iter().filter(in_field);
            tokens
                .clone()
                .find(|t| t.start <= pos && pos < t.end)
                .or_else(|| tokens.find(|t| t.end == pos))
        });
        let token = token.or_else(|| self.tokens.iter().find(|t| t.start == field.value));
        let found = token.and_then(|t| text.get(t.bytes.clone())).unwrap_or("");
        let mut short: String = found.chars().take(40).collect();
        if short.len() < found.len() {
            short.push('…');
        }
        short
    }
}

/// Splits RON text into the tokens the scan needs, skipping whitespace and comments.
fn tokenize(text: &str) -> Vec<Token> {
    let mut chars: Vec<(usize, char, Pos)> = Vec::with_capacity(text.len());
    let mut pos = Pos { line: 1, col: 1 };
    for (offset, c) in text.char_indices() {
        chars.push((offset, c, pos));
        pos.advance(c);
    }
    let end_pos = pos;
    let at = |i: usize| chars.get(i).map(|c| c.1);
    let pos_of = |i: usize| chars.get(i).map_or(end_pos, |c| c.2);
    let offset_of = |i: usize| chars.get(i).map_or(text.len(), |c| c.0);
    let is_delimiter = |i: usize| match at(i) {
        None => true,
        Some(c) if c.is_whitespace() || "()[]{},:\"'".contains(c) => true,
        Some('/') => matches!(at(i + 1), Some('/' | '*')),
        Some(_) => false,
    };

    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(c) = at(i) {
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '/' && at(i + 1) == Some('/') {
            while at(i).is_some_and(|c| c != '\n') {
                i += 1;
            }
            continue;
        }
        if c == '/' && at(i + 1) == Some('*') {
            let mut depth = 0usize;
            while let Some(c) = at(i) {
                if c == '/' && at(i + 1) == Some('*') {
                    depth += 1;
                    i += 2;
                } else if c == '*' && at(i + 1) == Some('/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            continue;
        }
        let start = i;
        let kind = match c {
            '(' | '[' | '{' => {
                i += 1;
                TokenKind::Open(c)
            }
            ')' | ']' | '}' => {
                i += 1;
                TokenKind::Close
            }
            ',' => {
                i += 1;
                TokenKind::Comma
            }
            ':' => {
                i += 1;
                TokenKind::Colon
            }
            '"' => {
                i = skip_string(&chars, i + 1);
                TokenKind::Str
            }
            '\'' => {
                // A char literal: up to the next unescaped quote, on this line.
                i += 1;
                while let Some(c) = at(i) {
                    i += 1;
                    if c == '\\' {
                        i += 1;
                    } else if c == '\'' || c == '\n' {
                        break;
                    }
                }
                TokenKind::Str
            }
            _ => {
                while !is_delimiter(i) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().map(|c| c.1).collect();
                if at(i) == Some('"') {
                    // b"..", r"..", r#".."#, br#".."#: the word was a string prefix.
                    let hashes = word.trim_start_matches('b').trim_start_matches('r');
                    if word == "b" {
                        i = skip_string(&chars, i + 1);
                        TokenKind::Str
                    } else if (word.starts_with('r') || word.starts_with("br"))
                        && hashes.chars().all(|c| c == '#')
                    {
                        i = skip_raw_string(&chars, i + 1, hashes.len());
                        TokenKind::Str
                    } else {
                        TokenKind::Word
                    }
                } else {
                    TokenKind::Word
                }
            }
        };
        tokens.push(Token {
            kind,
            start: pos_of(start),
            end: pos_of(i),
            bytes: offset_of(start)..offset_of(i),
        });
    }
    tokens
}

/// From just after an opening `"`, the index just after the closing one (or the end).
fn skip_string(chars: &[(usize, char, Pos)], mut i: usize) -> usize {
    while let Some(&(_, c, _)) = chars.get(i) {
        i += 1;
        match c {
            '\\' => i += 1,
            '"' => return i,
            _ => {}
        }
    }
    chars.len()
}

/// From just after the opening `"` of a raw string with `hashes` hashes, the index just after
/// its end (or the end of the text).
fn skip_raw_string(chars: &[(usize, char, Pos)], mut i: usize, hashes: usize) -> usize {
    while let Some(&(_, c, _)) = chars.get(i) {
        i += 1;
        if c == '"' {
            let closing = chars
                .get(i..i + hashes)
                .is_some_and(|h| h.iter().all(|&(_, c, _)| c == '#'));
            if closing {
                return i + hashes;
            }
        }
    }
    chars.len()
}

struct Scanner<'a> {
    text: &'a str,
    tokens: &'a [Token],
    p: usize,
    nodes: Vec<NodeSpan>,
}

impl Scanner<'_> {
    fn kind(&self, p: usize) -> Option<TokenKind> {
        self.tokens.get(p).map(|t| t.kind)
    }

    fn word(&self, p: usize) -> Option<&str> {
        let token = self.tokens.get(p)?;
        if token.kind == TokenKind::Word {
            self.text.get(token.bytes.clone())
        } else {
            None
        }
    }

    /// `#![enable(...)]` attributes, then `Config(`, the fields and `)`.
    fn document(&mut self) -> (Option<Pos>, Vec<FieldSpan>) {
        while self.word(self.p).is_some_and(|w| w.starts_with('#')) {
            self.p += 1;
            if self.kind(self.p) == Some(TokenKind::Open('[')) {
                self.skip_group();
            }
        }
        let Some(open) = self.tokens.get(self.p).map(|t| t.start) else {
            return (None, Vec::new());
        };
        if self.word(self.p).is_some() && self.kind(self.p + 1) == Some(TokenKind::Open('(')) {
            self.p += 1;
        }
        if self.kind(self.p) != Some(TokenKind::Open('(')) {
            return (None, Vec::new());
        }
        self.p += 1;
        (Some(open), self.fields(true))
    }

    /// `name: value, ...` up to and including the closing bracket.
    fn fields(&mut self, top: bool) -> Vec<FieldSpan> {
        let mut fields = Vec::new();
        loop {
            let before = self.p;
            match self.kind(self.p) {
                None => break,
                Some(TokenKind::Close) => {
                    self.p += 1;
                    break;
                }
                Some(TokenKind::Comma) => {
                    self.p += 1;
                    continue;
                }
                _ => {}
            }
            let key = self.word(self.p).map(str::to_string);
            match key {
                Some(name) if self.kind(self.p + 1) == Some(TokenKind::Colon) => {
                    let key = self.tokens[self.p].start;
                    self.p += 2;
                    let first = self.p;
                    if top && name == "nodes" && self.kind(self.p) == Some(TokenKind::Open('[')) {
                        self.node_list();
                    } else {
                        self.skip_value();
                    }
                    if let (Some(first), Some(last)) = (
                        self.tokens.get(first),
                        self.tokens.get(self.p.wrapping_sub(1)),
                    ) {
                        if self.p > before + 2 {
                            fields.push(FieldSpan {
                                name: name.trim_start_matches("r#").to_string(),
                                key,
                                value: first.start,
                                first_end: first.end,
                                end: last.end,
                            });
                        }
                    }
                }
                _ => self.skip_value(),
            }
            if self.p == before {
                self.p += 1;
            }
        }
        fields
    }

    /// `[ (fields), Node(fields), ... ]`, recording each node.
    fn node_list(&mut self) {
        self.p += 1;
        loop {
            let before = self.p;
            match self.kind(self.p) {
                None => break,
                Some(TokenKind::Close) => {
                    self.p += 1;
                    break;
                }
                Some(TokenKind::Comma) => {
                    self.p += 1;
                    continue;
                }
                _ => {}
            }
            let open = self.tokens[self.p].start;
            if self.word(self.p).is_some() && self.kind(self.p + 1) == Some(TokenKind::Open('(')) {
                self.p += 1;
            }
            let fields = if self.kind(self.p) == Some(TokenKind::Open('(')) {
                self.p += 1;
                self.fields(false)
            } else {
                self.skip_value();
                Vec::new()
            };
            self.nodes.push(NodeSpan { open, fields });
            if self.p == before {
                self.p += 1;
            }
        }
    }

    /// Skips one value: up to a comma or closing bracket outside any brackets.
    fn skip_value(&mut self) {
        let mut depth = 0usize;
        while let Some(kind) = self.kind(self.p) {
            match kind {
                TokenKind::Open(_) => depth += 1,
                TokenKind::Close | TokenKind::Comma if depth == 0 => return,
                TokenKind::Close => depth -= 1,
                _ => {}
            }
            self.p += 1;
        }
    }

    /// Skips one bracketed group, from its opening bracket to just after its closing one.
    fn skip_group(&mut self) {
        let mut depth = 0usize;
        while let Some(kind) = self.kind(self.p) {
            self.p += 1;
            match kind {
                TokenKind::Open(_) => depth += 1,
                TokenKind::Close => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_finds_fields_and_nodes_past_comments_and_strings() {
        let text = "#![enable(implicit_some)]\n\
                    Config( // a comment with nodes: [\n\
                    \x20 keyring: r#\"a \"quoted\" path\"#, /* port: 1 /* nested */ */\n\
                    \x20 nodes: [ Node(name: \"a,b\", host: \"h\"), (name: \"é\", port: 2) ],\n\
                    )";
        let layout = Layout::scan(text);
        assert_eq!(layout.top_open, Some(Pos { line: 2, col: 1 }));
        let names: Vec<&str> = layout.top.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["keyring", "nodes"]);
        assert_eq!(layout.top[0].value, Pos { line: 3, col: 12 });
        assert_eq!(layout.nodes.len(), 2);
        assert_eq!(layout.nodes[0].open, Pos { line: 4, col: 12 });
        assert_eq!(
            layout.node_field(0, "host").map(|f| f.value),
            Some(Pos { line: 4, col: 36 })
        );
        assert_eq!(
            layout.node_field(1, "port").map(|f| f.value),
            Some(Pos { line: 4, col: 60 })
        );
    }

    #[test]
    fn layout_survives_broken_text() {
        for text in [
            "",
            "(",
            ")",
            "(nodes: [",
            "(nodes: [(",
            "\"",
            "r#\"",
            "/*",
            "'",
            "(a: (b: ]]]]",
            ":::",
            "(nodes: [5, (name: ), ]",
            "#",
            "#![",
            "((((((",
        ] {
            let _ = Layout::scan(text);
            assert!(Config::parse(text, "t.ron").is_err(), "{text:?}");
        }
    }

    #[test]
    fn ron_columns_are_turned_into_characters() {
        let text = "ab\n\u{e9}\u{e9}x";
        let pos = ron::error::Position { line: 2, col: 5 };
        assert_eq!(ron_position(text, pos), Some(Pos { line: 2, col: 3 }));
        let none = ron::error::Position { line: 0, col: 0 };
        assert_eq!(ron_position(text, none), None);
    }

    #[test]
    fn tag_keys_follow_the_cores_rule() {
        // A key the config refuses must be one `peermesh tag set` refuses too, and back.
        for c in (0u8..=127).map(char::from).chain(['é', '✓']) {
            let key = c.to_string();
            assert_eq!(tag_key_char(c), crate::core::tags::valid_key(&key), "{c:?}");
        }
    }

    #[test]
    fn typos_get_a_suggestion() {
        let allowed: Vec<String> = ["name", "host", "port"].map(String::from).to_vec();
        assert_eq!(suggest("hots", &allowed), Some("host"));
        assert_eq!(suggest("address", &allowed), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
