//! The local control protocol, version [`PROTOCOL_VERSION`]: what a client and a node say to
//! each other over the control socket. Pure (no I/O), shared by the server, the client and
//! any embedder; `docs/CONTROL.md` is the reference for other languages.
//!
//! One request per connection, one JSON object on one line:
//! `{"v":1,"cmd":"status"}`, `{"v":1,"cmd":"status","format":"table","color":true}`,
//! `{"v":1,"cmd":"matrix","format":"json"|"table"|"svg"}`, `{"v":1,"cmd":"ping"}`.
//! The answer is one JSON object on one line, ending with a newline:
//! `{"v":1,"ok":true,"status":{…}}`, `{"v":1,"ok":true,"matrix":{…}}`,
//! `{"v":1,"ok":true,"text":"…"}` (tables, SVG), `{"v":1,"ok":true,"pong":true}`, or
//! `{"v":1,"ok":false,"error":"…"}`. A line that is not JSON (the words of protocol 0, such
//! as `status --json`) gets one plain `error: …` line, which older clients show as it is.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;

/// The version of the control protocol this build speaks (`"v"` in every message).
pub const PROTOCOL_VERSION: u32 = 1;
/// The longest request line accepted, newline included.
pub const MAX_REQUEST: usize = 1024;

/// How the matrix is rendered.
pub use crate::report::matrix_report::MatrixFormat;

/// What a client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

/// The command names of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Command {
    Status,
    Matrix,
    Ping,
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
}

impl Request {
    /// The request as one line of the protocol, newline included.
    pub fn to_line(self) -> String {
        let (cmd, format, color) = match self {
            Request::Status { json: true, .. } => (Command::Status, None, false),
            Request::Status { json: false, color } => (Command::Status, Some(Format::Table), color),
            Request::Matrix(MatrixFormat::Json) => (Command::Matrix, None, false),
            Request::Matrix(MatrixFormat::Table) => (Command::Matrix, Some(Format::Table), false),
            Request::Matrix(MatrixFormat::Svg) => (Command::Matrix, Some(Format::Svg), false),
            Request::Ping => (Command::Ping, None, false),
        };
        let wire = WireRequest {
            v: PROTOCOL_VERSION,
            cmd,
            format,
            color,
        };
        let mut line = serde_json::to_string(&wire).unwrap_or_default();
        line.push('\n');
        line
    }
}

/// Why a request line was refused. Each is answered, never a crash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// Longer than [`MAX_REQUEST`].
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
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::TooLong => write!(f, "request longer than {MAX_REQUEST} bytes"),
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
    if line.len() > MAX_REQUEST {
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
        (Command::Ping, _, _) => Err(unsupported("ping takes no options")),
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

/// What a node answered, as a client reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The peer table as JSON (the `status --json` contract), exactly as the node wrote it.
    Status(String),
    /// The matrix as JSON (the `matrix --json` contract), exactly as the node wrote it.
    Matrix(String),
    /// A table or an SVG picture.
    Text(String),
    /// The node is alive.
    Pong,
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
    Err(AnswerError::Garbled(
        "no status, matrix, text or pong".to_owned(),
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
