//! The local control protocol, version [`PROTOCOL_VERSION`]: what a client and a node say to
//! each other over the control socket. Pure (no I/O), shared by the server, the client and
//! any embedder; `docs/CONTROL.md` is the reference for other languages.
//!
//! One request per connection, one JSON object on one line:
//! `{"v":1,"cmd":"status"}`, `{"v":1,"cmd":"status","format":"table","color":true}`,
//! `{"v":1,"cmd":"matrix","format":"json"|"table"|"svg"}`, `{"v":1,"cmd":"ping"}`, and for
//! application data `{"v":1,"cmd":"send","to":"beta","data":"hi","confirm":true}`,
//! `{"v":1,"cmd":"tags","set":{"role":"db"},"rm":["zone"]}`,
//! `{"v":1,"cmd":"query","tags":{"role":"web"},"data":"uptime"}`,
//! `{"v":1,"cmd":"nearest","tags":{"role":"db"}}`, `{"v":1,"cmd":"watch"}`, and
//! `{"v":1,"cmd":"reload"}` (re-read the config and key file), `{"v":1,"cmd":"metrics"}`
//! (the Prometheus text, answered as `"text"`).
//! The answer is one JSON object on one line, ending with a newline:
//! `{"v":1,"ok":true,"status":{…}}`, `{"v":1,"ok":true,"matrix":{…}}`,
//! `{"v":1,"ok":true,"text":"…"}` (tables, SVG), `{"v":1,"ok":true,"pong":true}`,
//! `"sent":{…}`, `"tags":{…}`, `"query":{…}`, `"nearest":{…}`, `"reload":{…}`, or
//! `{"v":1,"ok":false,"error":"…"}`. `watch` is answered with `{"v":1,"ok":true,"watch":true}`
//! and then one event record a line (see [`crate::report::event_record`]) until the client
//! goes. A line that is not JSON (the words of protocol 0, such
//! as `status --json`) gets one plain `error: …` line, which older clients show as it is.

use crate::report::nearest::NearestReport;
use crate::report::payload::{PayloadError, PayloadFields};
use crate::report::query_report::QueryReport;
use crate::report::reload_report::ReloadReport;
use crate::report::send_report::SendReport;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::fmt;

/// The version of the control protocol this build speaks (`"v"` in every message).
pub const PROTOCOL_VERSION: u32 = 1;
/// The longest request line accepted, newline included, for the commands without data
/// (`status`, `matrix`, `ping`, `nearest`, `watch`, reading `tags`).
pub const MAX_REQUEST: usize = 1024;
/// The longest request line of the commands that carry data (`send`, `query`, `tags` with
/// changes), newline included: a payload of [`MAX_PAYLOAD`] bytes as base64 (87,384 bytes)
/// and the rest of the request fit. The server holds at most this much per connection.
pub const MAX_DATA_REQUEST: usize = 96 * 1024;
/// The largest payload of `send` and `query`: the core's limit of one message.
pub const MAX_PAYLOAD: usize = crate::wire::MAX_MESSAGE;
/// The longest `timeout_ms` a request may give: ten minutes.
pub const MAX_TIMEOUT_MS: u64 = 600_000;
/// How long a confirmed `send` waits for its acknowledgements unless told.
pub const DEFAULT_SEND_TIMEOUT_MS: u64 = 5_000;
/// How long a `query` gathers responses unless told.
pub const DEFAULT_QUERY_TIMEOUT_MS: u64 = 2_000;

/// A node's tags: key → value, both UTF-8.
pub type TagMap = BTreeMap<String, String>;

/// Whom a `send` goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One peer, by name (compared case-insensitively).
    Peer(String),
    /// Every peer that has not left.
    All,
}

/// `send`: a message to one peer or to all.
#[derive(Clone, PartialEq, Eq)]
pub struct SendRequest {
    /// Whom to.
    pub to: Target,
    /// The message.
    pub payload: Vec<u8>,
    /// Wait until every target acknowledged it or failed, and answer which.
    pub confirm: bool,
    /// How long a confirmed message may take ([`DEFAULT_SEND_TIMEOUT_MS`] when `None`).
    pub timeout_ms: Option<u64>,
}

impl fmt::Debug for SendRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Send({:?}, {} B", self.to, self.payload.len())?;
        if self.confirm {
            write!(f, ", confirm {:?}", self.timeout_ms)?;
        }
        f.write_str(")")
    }
}

/// `tags`: this node's tags, after an atomic change (none: just read them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagChange {
    /// Keys to set to these values.
    pub set: TagMap,
    /// Keys to remove.
    pub remove: Vec<String>,
}

impl TagChange {
    /// Whether it changes nothing (a plain read).
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

/// `query`: ask the matching peers and gather their responses until the timeout.
#[derive(Clone, PartialEq, Eq)]
pub struct QueryRequest {
    /// Only these peers (by name); empty: all.
    pub peers: Vec<String>,
    /// Only peers carrying every one of these tags.
    pub tags: TagMap,
    /// The question.
    pub payload: Vec<u8>,
    /// How long to gather ([`DEFAULT_QUERY_TIMEOUT_MS`] when `None`).
    pub timeout_ms: Option<u64>,
}

impl fmt::Debug for QueryRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Query({} peers, {} tags, {} B)",
            self.peers.len(),
            self.tags.len(),
            self.payload.len()
        )
    }
}

/// How the matrix is rendered.
pub use crate::report::matrix_report::MatrixFormat;

/// What a client asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// The peer table.
    Status {
        /// As JSON (the `status --json` contract) rather than a table.
        json: bool,
        /// With ANSI colours (for a terminal); tables only.
        color: bool,
    },
    /// The latency matrix.
    Matrix(MatrixFormat),
    /// A liveness check of the node itself.
    Ping,
    /// A message to peers.
    Send(SendRequest),
    /// This node's tags, after an optional change.
    Tags(TagChange),
    /// A query to peers.
    Query(QueryRequest),
    /// The nearest alive peers carrying these tags.
    Nearest(TagMap),
    /// Events as they happen, until the client goes.
    Watch,
    /// An answer to a query this node was asked (as `watch` reported it).
    Respond(RespondRequest),
    /// Re-read the config file and the key file, and apply what changed.
    Reload,
    /// The node's Prometheus metrics, as text.
    Metrics,
}

/// `respond`: answer query `query` of peer `to` (the `peer` and `query` of a `watch`
/// record of event `query`).
#[derive(Clone, PartialEq, Eq)]
pub struct RespondRequest {
    /// The asker, by name.
    pub to: String,
    /// The asker's number for the query.
    pub query: u64,
    /// The answer.
    pub payload: Vec<u8>,
    /// An error response: the payload says why there is no answer.
    pub error: bool,
}

impl fmt::Debug for RespondRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RespondRequest {{ to: {:?}, query: {}, {} bytes, error: {} }}",
            self.to,
            self.query,
            self.payload.len(),
            self.error
        )
    }
}

/// The command names of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Command {
    Status,
    Matrix,
    Ping,
    Send,
    Tags,
    Query,
    Nearest,
    Watch,
    Respond,
    Reload,
    Metrics,
}

/// The formats of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Format {
    Json,
    Table,
    Svg,
}

/// A request as it travels.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRequest {
    v: u32,
    cmd: Command,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    format: Option<Format>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    color: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    all: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    confirm: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    set: Option<TagMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rm: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    peers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tags: Option<TagMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data_b64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    query: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    error: bool,
}

impl WireRequest {
    fn new(cmd: Command) -> WireRequest {
        WireRequest {
            v: PROTOCOL_VERSION,
            cmd,
            format: None,
            color: false,
            to: None,
            all: false,
            confirm: false,
            timeout_ms: None,
            set: None,
            rm: None,
            peers: None,
            tags: None,
            data: None,
            data_b64: None,
            query: None,
            error: false,
        }
    }

    /// Sets the payload: as text when it is UTF-8 and its JSON form stays well within
    /// [`MAX_DATA_REQUEST`], else as base64.
    fn with_payload(mut self, payload: &[u8]) -> WireRequest {
        let fields = match std::str::from_utf8(payload) {
            Ok(text) if json_string(text).len() <= MAX_PAYLOAD + 2 => {
                PayloadFields::from_bytes(payload)
            }
            _ => PayloadFields::base64(payload),
        };
        self.data = fields.data;
        self.data_b64 = fields.data_b64;
        self
    }

    /// The fields set besides `v` and `cmd`, by name.
    fn fields(&self) -> Vec<&'static str> {
        let present = [
            ("format", self.format.is_some()),
            ("color", self.color),
            ("to", self.to.is_some()),
            ("all", self.all),
            ("confirm", self.confirm),
            ("timeout_ms", self.timeout_ms.is_some()),
            ("set", self.set.is_some()),
            ("rm", self.rm.is_some()),
            ("peers", self.peers.is_some()),
            ("tags", self.tags.is_some()),
            ("data", self.data.is_some()),
            ("data_b64", self.data_b64.is_some()),
            ("query", self.query.is_some()),
            ("error", self.error),
        ];
        present
            .into_iter()
            .filter(|(_, set)| *set)
            .map(|(name, _)| name)
            .collect()
    }
}

impl Request {
    /// The request as one line of the protocol, newline included.
    pub fn to_line(&self) -> String {
        let simple = |cmd, format| WireRequest {
            format,
            ..WireRequest::new(cmd)
        };
        let wire = match self {
            Request::Status { json: true, .. } => simple(Command::Status, None),
            Request::Status { json: false, color } => WireRequest {
                color: *color,
                ..simple(Command::Status, Some(Format::Table))
            },
            Request::Matrix(MatrixFormat::Json) => simple(Command::Matrix, None),
            Request::Matrix(MatrixFormat::Table) => simple(Command::Matrix, Some(Format::Table)),
            Request::Matrix(MatrixFormat::Svg) => simple(Command::Matrix, Some(Format::Svg)),
            Request::Ping => simple(Command::Ping, None),
            Request::Send(send) => WireRequest {
                to: match &send.to {
                    Target::Peer(name) => Some(name.clone()),
                    Target::All => None,
                },
                all: send.to == Target::All,
                confirm: send.confirm,
                timeout_ms: send.timeout_ms,
                ..WireRequest::new(Command::Send)
            }
            .with_payload(&send.payload),
            Request::Tags(change) => WireRequest {
                set: (!change.set.is_empty()).then(|| change.set.clone()),
                rm: (!change.remove.is_empty()).then(|| change.remove.clone()),
                ..WireRequest::new(Command::Tags)
            },
            Request::Query(query) => WireRequest {
                peers: (!query.peers.is_empty()).then(|| query.peers.clone()),
                tags: (!query.tags.is_empty()).then(|| query.tags.clone()),
                timeout_ms: query.timeout_ms,
                ..WireRequest::new(Command::Query)
            }
            .with_payload(&query.payload),
            Request::Nearest(tags) => WireRequest {
                tags: (!tags.is_empty()).then(|| tags.clone()),
                ..WireRequest::new(Command::Nearest)
            },
            Request::Watch => WireRequest::new(Command::Watch),
            Request::Reload => WireRequest::new(Command::Reload),
            Request::Metrics => WireRequest::new(Command::Metrics),
            Request::Respond(respond) => WireRequest {
                to: Some(respond.to.clone()),
                query: Some(respond.query),
                error: respond.error,
                ..WireRequest::new(Command::Respond)
            }
            .with_payload(&respond.payload),
        };
        let mut line = serde_json::to_string(&wire).unwrap_or_default();
        line.push('\n');
        line
    }
}

/// Why a request line was refused. Each is answered, never a crash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// Longer than [`MAX_REQUEST`] (a command without data) or [`MAX_DATA_REQUEST`].
    TooLong,
    /// Not UTF-8.
    NotText,
    /// Nothing but white space.
    Empty,
    /// Not a JSON object: a client of the older, word-based protocol (`status --json`).
    OldStyle,
    /// JSON, but not a request of this protocol (the parser's message, clipped).
    Invalid(String),
    /// A version this node does not speak.
    Version(u64),
    /// A format or option the command does not take.
    Unsupported(&'static str),
    /// A field the command does not take (its name, and the command's).
    Field(&'static str, &'static str),
    /// A field the command needs is missing, or two exclude each other (what to give).
    Needs(&'static str),
    /// The payload fields are wrong (none, both, bad base64).
    Payload(PayloadError),
    /// The payload is larger than [`MAX_PAYLOAD`] (its length).
    PayloadTooLarge(usize),
    /// `timeout_ms` is 0 or over [`MAX_TIMEOUT_MS`].
    Timeout(u64),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::TooLong => write!(
                f,
                "request longer than {MAX_REQUEST} bytes (send, query and tags with changes: \
                 {MAX_DATA_REQUEST})"
            ),
            RequestError::NotText => write!(f, "request is not UTF-8 text"),
            RequestError::Empty => write!(f, "empty request"),
            RequestError::OldStyle => write!(
                f,
                "this node speaks control protocol {PROTOCOL_VERSION}: one JSON object a line, \
                 such as {{\"v\":{PROTOCOL_VERSION},\"cmd\":\"status\"}} (docs/CONTROL.md); \
                 this client is older than the node: upgrade it"
            ),
            RequestError::Invalid(why) => write!(f, "not a request: {why}"),
            RequestError::Version(v) => write!(
                f,
                "control protocol version {v} is not spoken here (this node speaks \
                 {PROTOCOL_VERSION})"
            ),
            RequestError::Unsupported(what) => f.write_str(what),
            RequestError::Field(field, cmd) => write!(f, "{cmd} takes no \"{field}\""),
            RequestError::Needs(what) => f.write_str(what),
            RequestError::Payload(e) => write!(f, "{e}"),
            RequestError::PayloadTooLarge(len) => write!(
                f,
                "payload of {len} bytes, more than the {MAX_PAYLOAD} a message may have"
            ),
            RequestError::Timeout(ms) => {
                write!(f, "timeout_ms {ms} is out of range (1..={MAX_TIMEOUT_MS})")
            }
        }
    }
}

impl std::error::Error for RequestError {}

impl RequestError {
    /// The line the node answers with: a JSON error, or a plain `error:` line for a client of
    /// the older protocol, which could not read JSON.
    pub fn to_line(&self) -> String {
        match self {
            RequestError::OldStyle => format!("error: {self}\n"),
            other => error_line(&other.to_string()),
        }
    }
}

/// Parses one request line (without or with its trailing newline). Pure; never panics.
pub fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    // A long line must at least look like JSON to be read as a request with data.
    let long = line.len() > MAX_REQUEST;
    if line.len() > MAX_DATA_REQUEST || (long && line.first() != Some(&b'{')) {
        return Err(RequestError::TooLong);
    }
    let text = std::str::from_utf8(line).map_err(|_| RequestError::NotText)?;
    let text = text.trim();
    if text.is_empty() {
        return Err(RequestError::Empty);
    }
    if !text.starts_with('{') {
        return Err(RequestError::OldStyle);
    }
    // The version first, so that a newer client hears about the version, not a field.
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| RequestError::Invalid(clip(&e.to_string())))?;
    match value.get("v").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => return Err(RequestError::Version(v)),
        None => return Err(RequestError::Invalid("no version \"v\"".to_owned())),
    }
    let wire: WireRequest =
        serde_json::from_value(value).map_err(|e| RequestError::Invalid(clip(&e.to_string())))?;
    let carries_data = matches!(wire.cmd, Command::Send | Command::Query | Command::Respond)
        || (wire.cmd == Command::Tags && (wire.set.is_some() || wire.rm.is_some()));
    if long && !carries_data {
        return Err(RequestError::TooLong);
    }
    match wire.cmd {
        Command::Status | Command::Matrix | Command::Ping => parse_table_request(wire),
        Command::Send => parse_send(wire),
        Command::Tags => {
            only(&wire, "tags", &["set", "rm"])?;
            Ok(Request::Tags(TagChange {
                set: wire.set.unwrap_or_default(),
                remove: wire.rm.unwrap_or_default(),
            }))
        }
        Command::Query => {
            only(
                &wire,
                "query",
                &["peers", "tags", "timeout_ms", "data", "data_b64"],
            )?;
            Ok(Request::Query(QueryRequest {
                payload: payload(&wire)?,
                timeout_ms: timeout(wire.timeout_ms)?,
                peers: wire.peers.unwrap_or_default(),
                tags: wire.tags.unwrap_or_default(),
            }))
        }
        Command::Nearest => {
            only(&wire, "nearest", &["tags"])?;
            Ok(Request::Nearest(wire.tags.unwrap_or_default()))
        }
        Command::Watch => {
            only(&wire, "watch", &[])?;
            Ok(Request::Watch)
        }
        Command::Reload => {
            only(&wire, "reload", &[])?;
            Ok(Request::Reload)
        }
        Command::Metrics => {
            only(&wire, "metrics", &[])?;
            Ok(Request::Metrics)
        }
        Command::Respond => {
            only(
                &wire,
                "respond",
                &["to", "query", "error", "data", "data_b64"],
            )?;
            let (Some(to), Some(query)) = (wire.to.clone(), wire.query) else {
                return Err(RequestError::Needs(
                    "\"to\" (the asker) and \"query\" (its number)",
                ));
            };
            Ok(Request::Respond(RespondRequest {
                to,
                query,
                payload: payload(&wire)?,
                error: wire.error,
            }))
        }
    }
}

/// Refuses every field of `wire` that command `cmd` does not take.
fn only(wire: &WireRequest, cmd: &'static str, allowed: &[&str]) -> Result<(), RequestError> {
    match wire.fields().into_iter().find(|f| !allowed.contains(f)) {
        Some(field) => Err(RequestError::Field(field, cmd)),
        None => Ok(()),
    }
}

/// The payload of a request with data, within [`MAX_PAYLOAD`].
fn payload(wire: &WireRequest) -> Result<Vec<u8>, RequestError> {
    let fields = PayloadFields {
        data: wire.data.clone(),
        data_b64: wire.data_b64.clone(),
    };
    let bytes = fields.to_bytes().map_err(RequestError::Payload)?;
    if bytes.len() > MAX_PAYLOAD {
        return Err(RequestError::PayloadTooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// A `timeout_ms` within 1..=[`MAX_TIMEOUT_MS`].
fn timeout(ms: Option<u64>) -> Result<Option<u64>, RequestError> {
    match ms {
        Some(ms) if ms == 0 || ms > MAX_TIMEOUT_MS => Err(RequestError::Timeout(ms)),
        other => Ok(other),
    }
}

fn parse_send(wire: WireRequest) -> Result<Request, RequestError> {
    only(
        &wire,
        "send",
        &["to", "all", "confirm", "timeout_ms", "data", "data_b64"],
    )?;
    let to = match (wire.to.clone(), wire.all) {
        (Some(name), false) => Target::Peer(name),
        (None, true) => Target::All,
        (Some(_), true) => {
            return Err(RequestError::Needs(
                "send takes \"to\" or \"all\", not both",
            ))
        }
        (None, false) => {
            return Err(RequestError::Needs(
                "send needs \"to\" (a peer) or \"all\":true",
            ))
        }
    };
    if wire.timeout_ms.is_some() && !wire.confirm {
        return Err(RequestError::Needs(
            "\"timeout_ms\" goes only with \"confirm\":true",
        ));
    }
    Ok(Request::Send(SendRequest {
        to,
        payload: payload(&wire)?,
        confirm: wire.confirm,
        timeout_ms: timeout(wire.timeout_ms)?,
    }))
}

/// `status`, `matrix` and `ping`: a format and a colour, nothing else.
fn parse_table_request(wire: WireRequest) -> Result<Request, RequestError> {
    let cmd = match wire.cmd {
        Command::Status => "status",
        Command::Matrix => "matrix",
        _ => "ping",
    };
    only(&wire, cmd, &["format", "color"])?;
    let unsupported = RequestError::Unsupported;
    match (wire.cmd, wire.format, wire.color) {
        (Command::Status, None | Some(Format::Json), false) => Ok(Request::Status {
            json: true,
            color: false,
        }),
        (Command::Status, Some(Format::Table), color) => Ok(Request::Status { json: false, color }),
        (Command::Status, Some(Format::Svg), _) => Err(unsupported("status has no svg format")),
        (Command::Matrix, _, true) | (Command::Status, _, true) => {
            Err(unsupported("\"color\" goes only with a status table"))
        }
        (Command::Matrix, None | Some(Format::Json), false) => {
            Ok(Request::Matrix(MatrixFormat::Json))
        }
        (Command::Matrix, Some(Format::Table), false) => Ok(Request::Matrix(MatrixFormat::Table)),
        (Command::Matrix, Some(Format::Svg), false) => Ok(Request::Matrix(MatrixFormat::Svg)),
        (Command::Ping, None, false) => Ok(Request::Ping),
        (_, _, _) => Err(unsupported("ping takes no options")),
    }
}

/// At most 64 characters of a message that may quote what a client sent.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// `s` as a JSON string literal, quotes included.
pub fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// An error answer: `{"v":1,"ok":false,"error":"…"}` and a newline.
pub fn error_line(message: &str) -> String {
    format!(
        "{{\"v\":{PROTOCOL_VERSION},\"ok\":false,\"error\":{}}}\n",
        json_string(message)
    )
}

/// The opening of a successful answer whose `field` follows, e.g. `{"v":1,"ok":true,"status":`.
pub fn ok_prefix(field: &str) -> String {
    format!("{{\"v\":{PROTOCOL_VERSION},\"ok\":true,\"{field}\":")
}

/// A whole successful answer: `{"v":1,"ok":true,"FIELD":VALUE}` and a newline, `value`
/// serialised as JSON.
pub fn ok_line<T: Serialize>(field: &str, value: &T) -> String {
    let json = serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
    format!("{}{json}}}\n", ok_prefix(field))
}

/// What a node answered, as a client reads it.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// The peer table as JSON (the `status --json` contract), exactly as the node wrote it.
    Status(String),
    /// The matrix as JSON (the `matrix --json` contract), exactly as the node wrote it.
    Matrix(String),
    /// A table or an SVG picture.
    Text(String),
    /// The node is alive.
    Pong,
    /// What became of a `send`.
    Sent(SendReport),
    /// This node's tags (after the change asked for).
    Tags(TagMap),
    /// What a query gathered.
    Query(QueryReport),
    /// The nearest matching peers.
    Nearest(NearestReport),
    /// The watch began: event records follow, one a line.
    Watching,
    /// The answer to a query is on its way to the asker.
    Responded,
    /// What a reload changed.
    Reloaded(ReloadReport),
}

/// Why an answer could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnswerError {
    /// The node refused the request, with its message.
    Refused(String),
    /// The node's own older protocol: it answered with a plain line.
    OldNode(String),
    /// Not an answer of this protocol.
    Garbled(String),
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnswerError::Refused(why) => write!(f, "the node refused the request: {why}"),
            AnswerError::OldNode(line) => write!(
                f,
                "the node speaks an older control protocol (it said {:?}): upgrade it",
                clip(line.trim())
            ),
            AnswerError::Garbled(why) => write!(
                f,
                "not an answer of control protocol {PROTOCOL_VERSION}: {why}"
            ),
        }
    }
}

impl std::error::Error for AnswerError {}

#[derive(Deserialize)]
struct WireAnswer<'a> {
    v: u32,
    ok: bool,
    #[serde(borrow, default)]
    status: Option<&'a RawValue>,
    #[serde(borrow, default)]
    matrix: Option<&'a RawValue>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    pong: Option<bool>,
    #[serde(default)]
    sent: Option<SendReport>,
    #[serde(default)]
    tags: Option<TagMap>,
    #[serde(default)]
    query: Option<QueryReport>,
    #[serde(default)]
    nearest: Option<NearestReport>,
    #[serde(default)]
    watch: Option<bool>,
    #[serde(default)]
    responded: Option<bool>,
    #[serde(default)]
    reload: Option<ReloadReport>,
    #[serde(default)]
    error: Option<String>,
}

/// Reads one answer line. Pure.
pub fn parse_answer(line: &str) -> Result<Answer, AnswerError> {
    if !line.trim_start().starts_with('{') {
        return Err(AnswerError::OldNode(line.to_owned()));
    }
    let wire: WireAnswer<'_> =
        serde_json::from_str(line).map_err(|e| AnswerError::Garbled(clip(&e.to_string())))?;
    if wire.v != PROTOCOL_VERSION {
        return Err(AnswerError::Garbled(format!("version {}", wire.v)));
    }
    if !wire.ok {
        return Err(AnswerError::Refused(wire.error.unwrap_or_default()));
    }
    if let Some(raw) = wire.status {
        return Ok(Answer::Status(raw.get().to_owned()));
    }
    if let Some(raw) = wire.matrix {
        return Ok(Answer::Matrix(raw.get().to_owned()));
    }
    if let Some(text) = wire.text {
        return Ok(Answer::Text(text));
    }
    if wire.pong == Some(true) {
        return Ok(Answer::Pong);
    }
    if let Some(sent) = wire.sent {
        return Ok(Answer::Sent(sent));
    }
    if let Some(tags) = wire.tags {
        return Ok(Answer::Tags(tags));
    }
    if let Some(query) = wire.query {
        return Ok(Answer::Query(query));
    }
    if let Some(nearest) = wire.nearest {
        return Ok(Answer::Nearest(nearest));
    }
    if wire.watch == Some(true) {
        return Ok(Answer::Watching);
    }
    if wire.responded == Some(true) {
        return Ok(Answer::Responded);
    }
    if let Some(report) = wire.reload {
        return Ok(Answer::Reloaded(report));
    }
    Err(AnswerError::Garbled(
        "no status, matrix, text, pong, sent, tags, query, nearest, watch, responded or reload"
            .to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_are_refused() {
        let all = [
            Request::Status {
                json: true,
                color: false,
            },
            Request::Status {
                json: false,
                color: true,
            },
            Request::Status {
                json: false,
                color: false,
            },
            Request::Matrix(MatrixFormat::Json),
            Request::Matrix(MatrixFormat::Table),
            Request::Matrix(MatrixFormat::Svg),
            Request::Ping,
            Request::Reload,
            Request::Metrics,
        ];
        for request in all {
            let line = request.to_line();
            assert!(
                line.ends_with('\n') && line.starts_with("{\"v\":1,"),
                "{line}"
            );
            assert_eq!(parse_request(line.as_bytes()), Ok(request), "{line}");
        }
        assert_eq!(
            parse_request(br#"{"v":1,"cmd":"status"}"#),
            Ok(Request::Status {
                json: true,
                color: false
            })
        );
        assert_eq!(
            parse_request(b"status --json\n"),
            Err(RequestError::OldStyle)
        );
        assert_eq!(parse_request(b"  \n"), Err(RequestError::Empty));
        assert_eq!(parse_request(&[0xff, 0xfe]), Err(RequestError::NotText));
        assert_eq!(
            parse_request(br#"{"v":2,"cmd":"status"}"#),
            Err(RequestError::Version(2))
        );
        assert!(matches!(
            parse_request(br#"{"v":1,"cmd":"reboot"}"#),
            Err(RequestError::Invalid(_))
        ));
        assert!(matches!(
            parse_request(br#"{"v":1,"cmd":"status","colour":true}"#),
            Err(RequestError::Invalid(_))
        ));
        assert!(matches!(
            parse_request(br#"{"v":1,"cmd":"ping","format":"svg"}"#),
            Err(RequestError::Unsupported(_))
        ));
        assert_eq!(
            parse_request(&[b' '; MAX_REQUEST + 1]),
            Err(RequestError::TooLong)
        );
        // The old protocol's clients get a plain line they can show; others JSON.
        assert!(RequestError::OldStyle
            .to_line()
            .starts_with("error: this node speaks"));
        let json: serde_json::Value =
            serde_json::from_str(&RequestError::Version(2).to_line()).unwrap();
        assert_eq!(json["ok"], false);
    }

    #[test]
    fn application_requests_round_trip() {
        let tags: TagMap = [("role".to_owned(), "db".to_owned())].into();
        let all = [
            Request::Send(SendRequest {
                to: Target::Peer("beta".to_owned()),
                payload: b"hello".to_vec(),
                confirm: true,
                timeout_ms: Some(1500),
            }),
            Request::Send(SendRequest {
                to: Target::All,
                payload: vec![0xff, 0, 1],
                confirm: false,
                timeout_ms: None,
            }),
            Request::Send(SendRequest {
                to: Target::All,
                payload: vec![b'\0'; MAX_PAYLOAD],
                confirm: false,
                timeout_ms: None,
            }),
            Request::Tags(TagChange::default()),
            Request::Tags(TagChange {
                set: tags.clone(),
                remove: vec!["zone".to_owned()],
            }),
            Request::Query(QueryRequest {
                peers: vec!["a".to_owned()],
                tags: tags.clone(),
                payload: "ünïcode".as_bytes().to_vec(),
                timeout_ms: Some(100),
            }),
            Request::Query(QueryRequest {
                peers: vec![],
                tags: TagMap::new(),
                payload: vec![],
                timeout_ms: None,
            }),
            Request::Nearest(tags),
            Request::Nearest(TagMap::new()),
            Request::Watch,
            Request::Respond(RespondRequest {
                to: "alpha".into(),
                query: 7,
                payload: b"up 3 days".to_vec(),
                error: false,
            }),
            Request::Respond(RespondRequest {
                to: "alpha".into(),
                query: u64::MAX,
                payload: vec![0xff, 0],
                error: true,
            }),
        ];
        for request in all {
            let line = request.to_line();
            assert!(line.len() <= MAX_DATA_REQUEST, "{}", line.len());
            assert_eq!(parse_request(line.as_bytes()), Ok(request), "{line:.200}");
        }
        // A payload of NUL bytes is valid UTF-8 but escapes to six times its size: it goes
        // as base64.
        let nul = Request::Send(SendRequest {
            to: Target::All,
            payload: vec![0; MAX_PAYLOAD],
            confirm: false,
            timeout_ms: None,
        });
        assert!(nul.to_line().contains("\"data_b64\""));
        assert!(Request::Watch.to_line().len() < MAX_REQUEST);
    }

    #[test]
    fn bad_application_requests_are_refused_with_a_reason() {
        let refused = |line: &str| match parse_request(line.as_bytes()) {
            Err(e) => e,
            Ok(r) => panic!("{line} accepted as {r:?}"),
        };
        assert_eq!(
            refused(r#"{"v":1,"cmd":"send","to":"b","data_b64":"***"}"#).to_string(),
            "\"data_b64\" is not standard base64: Invalid symbol 42, offset 0."
        );
        assert!(matches!(
            refused(r#"{"v":1,"cmd":"send","to":"b","data":"x","data_b64":"eA=="}"#),
            RequestError::Payload(PayloadError::Both)
        ));
        assert!(matches!(
            refused(r#"{"v":1,"cmd":"send","to":"b"}"#),
            RequestError::Payload(PayloadError::Missing)
        ));
        assert!(matches!(
            refused(r#"{"v":1,"cmd":"send","data":"x"}"#),
            RequestError::Needs(_)
        ));
        assert!(matches!(
            refused(r#"{"v":1,"cmd":"send","to":"b","all":true,"data":"x"}"#),
            RequestError::Needs(_)
        ));
        assert!(matches!(
            refused(r#"{"v":1,"cmd":"send","to":"b","data":"x","timeout_ms":5}"#),
            RequestError::Needs(_)
        ));
        assert_eq!(
            refused(r#"{"v":1,"cmd":"send","to":"b","data":"x","confirm":true,"timeout_ms":0}"#),
            RequestError::Timeout(0)
        );
        assert_eq!(
            refused(r#"{"v":1,"cmd":"watch","format":"json"}"#),
            RequestError::Field("format", "watch")
        );
        assert!(matches!(
            refused(r#"{"v":1,"cmd":"respond","to":"a","data":"x"}"#),
            RequestError::Needs(_)
        ));
        assert_eq!(
            refused(r#"{"v":1,"cmd":"respond","to":"a","query":1,"data":"x","all":true}"#),
            RequestError::Field("all", "respond")
        );
        assert_eq!(
            refused(r#"{"v":1,"cmd":"send","to":"a","data":"x","query":1}"#),
            RequestError::Field("query", "send")
        );
        assert_eq!(
            refused(r#"{"v":1,"cmd":"status","data":"x"}"#),
            RequestError::Field("data", "status")
        );
        assert_eq!(
            refused(r#"{"v":1,"cmd":"nearest","peers":["a"]}"#),
            RequestError::Field("peers", "nearest")
        );
        assert!(matches!(
            refused(r#"{"v":1,"cmd":"tags","set":{"k":1}}"#),
            RequestError::Invalid(_)
        ));
        // One byte over the payload limit, as text and as base64.
        let over = "x".repeat(MAX_PAYLOAD + 1);
        assert_eq!(
            refused(&format!(
                r#"{{"v":1,"cmd":"send","all":true,"data":"{over}"}}"#
            )),
            RequestError::PayloadTooLarge(MAX_PAYLOAD + 1)
        );
        // Long lines: only a request with data may pass MAX_REQUEST, and none MAX_DATA_REQUEST.
        let padded_status = format!(r#"{{"v":1,"cmd":"status"{}}}"#, " ".repeat(MAX_REQUEST));
        assert_eq!(refused(&padded_status), RequestError::TooLong);
        assert!(RequestError::TooLong
            .to_string()
            .starts_with("request longer than 1024 bytes"));
        let huge = format!(
            r#"{{"v":1,"cmd":"send","all":true,"data":"{}"}}"#,
            "x".repeat(MAX_DATA_REQUEST)
        );
        assert_eq!(refused(&huge), RequestError::TooLong);
        let every = refused(r#"{"v":1,"cmd":"send","to":"b","data_b64":"!"}"#).to_line();
        let json: serde_json::Value = serde_json::from_str(&every).unwrap();
        assert_eq!(json["ok"], false);
    }

    /// Mutants of requests with data never crash the parser, and every one it takes
    /// survives a round trip through [`Request::to_line`] unchanged.
    #[test]
    fn mutated_application_requests_parse_or_are_refused_never_panic() {
        let seeds: [&[u8]; 6] = [
            br#"{"v":1,"cmd":"send","to":"beta","data":"hi","confirm":true,"timeout_ms":50}"#,
            br#"{"v":1,"cmd":"send","all":true,"data_b64":"/wAB"}"#,
            br#"{"v":1,"cmd":"tags","set":{"role":"db"},"rm":["zone"]}"#,
            br#"{"v":1,"cmd":"query","peers":["a"],"tags":{"k":"v"},"data":"q"}"#,
            br#"{"v":1,"cmd":"nearest","tags":{"role":"db"}}"#,
            br#"{"v":1,"cmd":"watch"}"#,
        ];
        let pieces: [&[u8]; 8] = [b"\"", b"{", b"}", b",", b":", b"1", b"\\u0000", b"\xff"];
        // A small linear congruential generator: deterministic, no crate needed.
        let mut state: u64 = 0x5eed;
        let mut next = |below: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize % below.max(1)
        };
        let mut accepted = 0;
        for round in 0..20_000 {
            let mut line = seeds[round % seeds.len()].to_vec();
            for _ in 0..1 + next(3) {
                let at = next(line.len() + 1);
                match next(4) {
                    0 if at < line.len() => {
                        line.remove(at);
                    }
                    1 if at < line.len() => line[at] = next(256) as u8,
                    2 => {
                        let piece = pieces[next(pieces.len())];
                        line.splice(at..at, piece.iter().copied());
                    }
                    _ => line.truncate(at),
                }
            }
            if let Ok(request) = parse_request(&line) {
                accepted += 1;
                let again = parse_request(request.to_line().as_bytes());
                assert_eq!(
                    again.as_ref(),
                    Ok(&request),
                    "{:?}",
                    String::from_utf8_lossy(&line)
                );
            }
        }
        assert!(
            accepted > 100,
            "{accepted}: the mutants reach the accepting paths too"
        );
    }

    #[test]
    fn application_answers_are_read_back() {
        let sent = SendReport {
            confirmed: true,
            delivered: vec!["a".to_owned()],
            failed: vec!["b".to_owned()],
        };
        assert_eq!(
            parse_answer(&ok_line("sent", &sent)),
            Ok(Answer::Sent(sent))
        );
        let tags: TagMap = [("k".to_owned(), "v".to_owned())].into();
        assert_eq!(
            parse_answer(&ok_line("tags", &tags)),
            Ok(Answer::Tags(tags))
        );
        let empty = TagMap::new();
        assert_eq!(
            parse_answer(&ok_line("tags", &empty)),
            Ok(Answer::Tags(empty))
        );
        let query = QueryReport {
            responses: vec![crate::report::query_report::QueryResponse {
                node: "a".to_owned(),
                payload: PayloadFields::from_bytes(&[0xff]),
                error: true,
                rtt_us: Some(12.5),
            }],
            acks: vec!["a".to_owned()],
            missing: vec!["c".to_owned()],
        };
        let line = ok_line("query", &query);
        assert!(line.contains(r#""data_b64":"/w==","error":true"#), "{line}");
        assert_eq!(parse_answer(&line), Ok(Answer::Query(query)));
        let nearest = NearestReport {
            nodes: vec!["n".to_owned()],
            rtt_us: Some(3.0),
        };
        assert_eq!(
            parse_answer(&ok_line("nearest", &nearest)),
            Ok(Answer::Nearest(nearest))
        );
        assert_eq!(parse_answer(&ok_line("watch", &true)), Ok(Answer::Watching));
    }

    #[test]
    fn answers_are_read_back_exactly() {
        let status = r#"{"node":"a","peers":[]}"#;
        let line = format!("{}{status}}}\n", ok_prefix("status"));
        assert_eq!(parse_answer(&line), Ok(Answer::Status(status.to_owned())));
        let text = format!("{}{}}}\n", ok_prefix("text"), json_string("a\tb \"c\"\n"));
        assert_eq!(
            parse_answer(&text),
            Ok(Answer::Text("a\tb \"c\"\n".to_owned()))
        );
        assert_eq!(
            parse_answer(&error_line("busy")),
            Err(AnswerError::Refused("busy".to_owned()))
        );
        assert!(matches!(
            parse_answer("error: unknown request\n"),
            Err(AnswerError::OldNode(_))
        ));
        assert_eq!(
            parse_answer("{\"v\":1,\"ok\":true,\"pong\":true}\n"),
            Ok(Answer::Pong)
        );
    }
}
