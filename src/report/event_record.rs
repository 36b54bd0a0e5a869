//! One core event as a record: the line `peermesh watch --json` prints, the readable line
//! `peermesh watch` prints, and the environment an event handler runs with.
//!
//! Every record has `event` (`up`, `suspect`, `down`, `unreachable`, `asymmetric`,
//! `restarted`, `left`, `conflict`, `tags`, `message`, `delivered`, `failed`, `query`,
//! `query_ack`, `query_response`, `query_done`, `measured`, and `overflow` from a watcher that fell
//! behind), `peer` (the peer's name, absent for `query_done` and `overflow`), `time_ms`
//! (wall-clock milliseconds since the Unix epoch) and the event's own fields. A payload
//! is `data` when it is valid UTF-8, else `data_b64` (standard base64).
//!
//! ```
//! use peermesh::report::event_record::{EventRecord, Field};
//! let record = EventRecord::new("delivered", Some("beta".into()), 1_700_000_000_000)
//!     .with("id", Field::Int(7));
//! assert_eq!(
//!     record.to_json(),
//!     r#"{"event":"delivered","peer":"beta","time_ms":1700000000000,"id":7}"#
//! );
//! assert!(record.env().contains(&("PEERMESH_ID".to_owned(), "7".to_owned())));
//! ```

use crate::core::{Event, Mesh};
use crate::report::payload::PayloadFields;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// `s` as a JSON string literal, quotes included.
fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// The value of one field of a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Int(u64),
    /// A string.
    Text(String),
    /// A list of names (JSON array; `a,b,c` in the environment).
    Names(Vec<String>),
    /// A map of strings (tags; JSON object, also in the environment).
    Map(BTreeMap<String, String>),
}

impl Field {
    fn to_json(&self) -> String {
        match self {
            Field::Bool(b) => b.to_string(),
            Field::Int(n) => n.to_string(),
            Field::Text(t) => json_string(t),
            Field::Names(names) => serde_json::to_string(names).unwrap_or_else(|_| "[]".to_owned()),
            Field::Map(map) => serde_json::to_string(map).unwrap_or_else(|_| "{}".to_owned()),
        }
    }

    fn to_env(&self) -> String {
        match self {
            Field::Text(t) => t.clone(),
            Field::Names(names) => names.join(","),
            other => other.to_json(),
        }
    }
}

/// One event as a record (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    /// What happened: `up`, `message`, ...
    pub event: &'static str,
    /// The peer's name; `None` for events about no one peer.
    pub peer: Option<String>,
    /// When the record was made: wall-clock milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The event's own fields, in order.
    pub fields: Vec<(&'static str, Field)>,
    /// The payload of a message, query or response.
    pub payload: Option<Vec<u8>>,
    /// The node the event happened at (this node), for the environment
    /// (`PEERMESH_NODE`); not in the JSON, which a watcher reads from one node.
    pub node: Option<String>,
}

/// Milliseconds since the Unix epoch of `time` (0 before it).
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The UTC time of day of `time_ms` (milliseconds since the Unix epoch), `HH:MM:SS.mmm`.
pub fn clock(time_ms: u64) -> String {
    let secs = time_ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        time_ms % 1000
    )
}

impl EventRecord {
    /// A record with no fields yet.
    pub fn new(event: &'static str, peer: Option<String>, time_ms: u64) -> EventRecord {
        EventRecord {
            event,
            peer,
            time_ms,
            fields: Vec::new(),
            payload: None,
            node: None,
        }
    }

    /// With the name of the node the event happened at.
    pub fn at_node(mut self, node: &str) -> EventRecord {
        self.node = Some(node.to_owned());
        self
    }

    /// With one more field.
    pub fn with(mut self, name: &'static str, value: Field) -> EventRecord {
        self.fields.push((name, value));
        self
    }

    /// With a payload.
    pub fn with_payload(mut self, payload: &[u8]) -> EventRecord {
        self.payload = Some(payload.to_vec());
        self
    }

    /// What a watcher gets when it catches up after `dropped` records were dropped for it.
    pub fn overflow(dropped: u64, time_ms: u64) -> EventRecord {
        EventRecord::new("overflow", None, time_ms).with("dropped", Field::Int(dropped))
    }

    /// The record of `event` from `mesh` (for peer names and tags) at wall-clock `time`.
    pub fn from_event(mesh: &Mesh, event: &Event, time: SystemTime) -> EventRecord {
        let time_ms = unix_ms(time);
        let name = |id| mesh.peer(id).map(|p| p.name().to_owned());
        let record = |kind, id| EventRecord::new(kind, name(id), time_ms).at_node(mesh.name());
        match event {
            Event::Up(p) => record("up", *p),
            Event::Suspect(p) => record("suspect", *p),
            Event::Down(p) => record("down", *p),
            Event::Unreachable(p) => record("unreachable", *p),
            Event::Left(p) => record("left", *p),
            Event::Removed { name, .. } => {
                EventRecord::new("removed", Some(name.clone()), time_ms).at_node(mesh.name())
            }
            Event::Moved { peer, from, to } => record("moved", *peer)
                .with("from", Field::Text(from.to_string()))
                .with("to", Field::Text(to.to_string())),
            Event::Restarted { peer, incarnation } => record("restarted", *peer)
                .with("incarnation", Field::Text(format!("{incarnation:016x}"))),
            Event::Asymmetric { peer, asymmetric } => {
                record("asymmetric", *peer).with("asymmetric", Field::Bool(*asymmetric))
            }
            Event::Conflict { peer, conflict } => {
                record("conflict", *peer).with("conflict", Field::Bool(*conflict))
            }
            Event::Message { from, id, payload } => record("message", *from)
                .with("id", Field::Int(id.0))
                .with_payload(payload),
            Event::Delivered { to, id } => record("delivered", *to).with("id", Field::Int(id.0)),
            Event::Failed { to, id } => record("failed", *to).with("id", Field::Int(id.0)),
            Event::Tags { peer } => record("tags", *peer).with(
                "tags",
                Field::Map(mesh.peer_tags(*peer).cloned().unwrap_or_default()),
            ),
            Event::Query {
                from,
                query,
                payload,
                timeout,
            } => record("query", *from)
                .with("query", Field::Int(query.id))
                .with(
                    "timeout_ms",
                    Field::Int(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
                )
                .with_payload(payload),
            Event::QueryAck { query, from } => {
                record("query_ack", *from).with("query", Field::Int(query.0))
            }
            Event::QueryResponse {
                query,
                from,
                payload,
                error,
            } => record("query_response", *from)
                .with("query", Field::Int(query.0))
                .with("error", Field::Bool(*error))
                .with_payload(payload),
            Event::Measured { peer, rtt } => record("measured", *peer).with(
                "rtt_us",
                Field::Int(u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX)),
            ),
            Event::QueryDone { query, missing } => EventRecord::new("query_done", None, time_ms)
                .at_node(mesh.name())
                .with("query", Field::Int(query.0))
                .with(
                    "missing",
                    Field::Names(missing.iter().filter_map(|p| name(*p)).collect()),
                ),
        }
    }

    /// The JSON form: one object, one line, no newline; `event`, `peer`, `time_ms` first.
    pub fn to_json(&self) -> String {
        let mut out = format!("{{\"event\":{}", json_string(self.event));
        if let Some(peer) = &self.peer {
            let _ = write!(out, ",\"peer\":{}", json_string(peer));
        }
        let _ = write!(out, ",\"time_ms\":{}", self.time_ms);
        for (name, value) in &self.fields {
            let _ = write!(out, ",{}:{}", json_string(name), value.to_json());
        }
        if let Some(payload) = &self.payload {
            let fields = PayloadFields::from_bytes(payload);
            if let Some(text) = fields.data {
                let _ = write!(out, ",\"data\":{}", json_string(&text));
            } else if let Some(b64) = fields.data_b64 {
                let _ = write!(out, ",\"data_b64\":{}", json_string(&b64));
            }
        }
        out.push('}');
        out
    }

    /// The readable form, one line: `12:00:01.234 message beta id=3: hello` (UTC time of
    /// day, event, peer, fields, payload), control characters of payloads escaped so one
    /// record stays one line.
    pub fn to_text(&self) -> String {
        let mut out = format!("{} {}", clock(self.time_ms), self.event);
        if let Some(peer) = &self.peer {
            let _ = write!(out, " {peer}");
        }
        for (name, value) in &self.fields {
            let _ = write!(out, " {name}={}", value.to_env());
        }
        if let Some(payload) = &self.payload {
            match std::str::from_utf8(payload) {
                Ok(text) => {
                    let _ = write!(out, ": {}", text.escape_debug());
                }
                Err(_) => {
                    let _ = write!(out, ": ({} bytes, not UTF-8)", payload.len());
                }
            }
        }
        out
    }

    /// The environment of an event handler: `PEERMESH_EVENT`, `PEERMESH_NODE` (this node,
    /// when known), `PEERMESH_PEER` (when there is one), `PEERMESH_TIME_MS`, and `PEERMESH_<FIELD>` for each field (upper-cased;
    /// names joined with `,`, tags as a JSON object), plus `PEERMESH_DATA_BYTES` when there
    /// is a payload (which goes to the handler's standard input, not here).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![("PEERMESH_EVENT".to_owned(), self.event.to_owned())];
        if let Some(node) = &self.node {
            env.push(("PEERMESH_NODE".to_owned(), node.clone()));
        }
        if let Some(peer) = &self.peer {
            env.push(("PEERMESH_PEER".to_owned(), peer.clone()));
        }
        env.push(("PEERMESH_TIME_MS".to_owned(), self.time_ms.to_string()));
        for (name, value) in &self.fields {
            env.push((
                format!("PEERMESH_{}", name.to_ascii_uppercase()),
                value.to_env(),
            ));
        }
        if let Some(payload) = &self.payload {
            env.push(("PEERMESH_DATA_BYTES".to_owned(), payload.len().to_string()));
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{MessageId, QueryId, Settings};
    use std::time::{Duration, Instant};

    #[test]
    fn core_events_become_records_with_names() {
        let settings = Settings {
            heartbeat_interval: Duration::from_millis(100),
            suspect_after: Duration::from_millis(300),
            dead_after: Duration::from_millis(500),
            max_datagram: 1232,
            incarnation: 1,
            seed: 1,
            probe_mode: crate::core::ProbeMode::Auto,
            probe_fanout: crate::core::DEFAULT_PROBE_FANOUT,
        };
        let nodes = [
            ("alpha", "127.0.0.1:1".parse().unwrap()),
            ("beta", "127.0.0.2:1".parse().unwrap()),
        ];
        let mesh = Mesh::with_nodes("alpha", settings, Instant::now(), nodes);
        let beta = mesh.peer_by_name("beta").unwrap();
        let at = UNIX_EPOCH + Duration::from_millis(42);
        let json = |event: Event| EventRecord::from_event(&mesh, &event, at).to_json();
        assert_eq!(
            json(Event::Up(beta)),
            r#"{"event":"up","peer":"beta","time_ms":42}"#
        );
        assert_eq!(
            json(Event::Restarted {
                peer: beta,
                incarnation: 0xab
            }),
            r#"{"event":"restarted","peer":"beta","time_ms":42,"incarnation":"00000000000000ab"}"#
        );
        assert_eq!(
            json(Event::Failed {
                to: beta,
                id: MessageId(5)
            }),
            r#"{"event":"failed","peer":"beta","time_ms":42,"id":5}"#
        );
        assert_eq!(
            json(Event::QueryDone {
                query: QueryId(3),
                missing: vec![beta]
            }),
            r#"{"event":"query_done","time_ms":42,"query":3,"missing":["beta"]}"#
        );
        assert_eq!(
            json(Event::Measured {
                peer: beta,
                rtt: std::time::Duration::from_micros(1_250)
            }),
            r#"{"event":"measured","peer":"beta","time_ms":42,"rtt_us":1250}"#
        );
        let tags = EventRecord::from_event(&mesh, &Event::Tags { peer: beta }, at);
        assert_eq!(tags.fields, [("tags", Field::Map(BTreeMap::new()))]);
        assert_eq!(tags.node.as_deref(), Some("alpha"));
    }

    #[test]
    fn records_read_as_json_text_and_environment() {
        let record = EventRecord::new("message", Some("beta".to_owned()), 3_723_004)
            .with("id", Field::Int(9))
            .with_payload(b"hi\n")
            .at_node("alpha");
        assert_eq!(
            record.to_json(),
            r#"{"event":"message","peer":"beta","time_ms":3723004,"id":9,"data":"hi\n"}"#
        );
        assert_eq!(record.to_text(), "01:02:03.004 message beta id=9: hi\\n");
        let env = record.env();
        assert!(env.contains(&("PEERMESH_EVENT".to_owned(), "message".to_owned())));
        assert!(env.contains(&("PEERMESH_PEER".to_owned(), "beta".to_owned())));
        assert!(env.contains(&("PEERMESH_NODE".to_owned(), "alpha".to_owned())));
        assert!(env.contains(&("PEERMESH_DATA_BYTES".to_owned(), "3".to_owned())));
        let binary = EventRecord::new("message", None, 0).with_payload(&[0xff]);
        assert!(binary.to_json().ends_with(r#""data_b64":"/w=="}"#));
        let json: serde_json::Value =
            serde_json::from_str(&EventRecord::overflow(12, 5).to_json()).unwrap();
        assert_eq!(json["event"], "overflow");
        assert_eq!(json["dropped"], 12);
        let done = EventRecord::new("query_done", None, 1)
            .with("missing", Field::Names(vec!["a".into(), "b".into()]));
        assert!(done
            .env()
            .contains(&("PEERMESH_MISSING".to_owned(), "a,b".to_owned())));
    }
}
