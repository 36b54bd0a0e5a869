//! `peermesh send`, `tag`, `query`, `respond`, `nearest` and `watch`: the application data of a
//! running node, over its control socket.

use super::args::{
    key_value, MetricsArgs, NearestArgs, QueryArgs, ReloadArgs, RespondArgs, SendArgs, TagArgs,
    WatchArgs,
};
use super::query::control_path;
use super::{emit, Failure};
use peermesh::io::control::{self, Answer, ClientError, Request, CLIENT_TIMEOUT};
use peermesh::io::control_pending::GRACE;
use peermesh::io::control_protocol::{
    parse_answer, QueryRequest, RespondRequest, SendRequest, TagChange, TagMap, Target,
    DEFAULT_QUERY_TIMEOUT_MS, DEFAULT_SEND_TIMEOUT_MS, MAX_PAYLOAD,
};
use peermesh::report::event_record::clock;
use peermesh::report::payload::PayloadFields;
use std::io::{ErrorKind, Read};
use std::path::Path;
use std::time::Duration;

/// The payload: DATA as given, else standard input, at most [`MAX_PAYLOAD`] bytes (more
/// is bad usage, exit 2).
fn payload(data: Option<String>) -> Result<Vec<u8>, Failure> {
    let bytes = match data {
        Some(text) => text.into_bytes(),
        None => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .lock()
                .take(MAX_PAYLOAD as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| Failure::Runtime(format!("cannot read standard input: {e}")))?;
            bytes
        }
    };
    if bytes.len() > MAX_PAYLOAD {
        return Err(Failure::Usage(format!(
            "error: the message is longer than the {MAX_PAYLOAD} bytes a message may have"
        )));
    }
    Ok(bytes)
}

/// Asks the node, waiting at most `timeout` for each read and write.
fn ask(path: &Path, request: Request, timeout: Duration) -> Result<Answer, Failure> {
    control::request_within(path, request, timeout).map_err(|e| Failure::Runtime(e.to_string()))
}

/// The answer was not the one asked for.
fn unexpected(answer: &Answer) -> Failure {
    Failure::Runtime(format!("the node answered something else: {answer:?}"))
}

/// `peermesh send`.
pub(super) fn send(args: SendArgs) -> Result<(), Failure> {
    let (to, data) = match (args.all, args.peer, args.data) {
        (true, Some(_), Some(_)) => {
            return Err(Failure::Usage(
                "error: --all sends to every peer: give DATA alone, not PEER and DATA".to_owned(),
            ))
        }
        (true, first, None) => (Target::All, first),
        (false, Some(peer), data) => (Target::Peer(peer), data),
        (_, None, data) => (Target::All, data), // clap requires PEER without --all
    };
    let path = control_path(&args.target)?;
    let payload = payload(data)?;
    let wait = if args.confirm {
        Duration::from_millis(args.timeout.unwrap_or(DEFAULT_SEND_TIMEOUT_MS))
            + GRACE
            + CLIENT_TIMEOUT
    } else {
        CLIENT_TIMEOUT
    };
    let request = Request::Send(SendRequest {
        to,
        payload,
        confirm: args.confirm,
        timeout_ms: args.timeout,
    });
    let report = match ask(&path, request, wait)? {
        Answer::Sent(report) => report,
        other => return Err(unexpected(&other)),
    };
    if args.json {
        emit(format!("{}\n", report.to_cli_json()))?;
    } else {
        let verb = if report.confirmed {
            "delivered to"
        } else {
            "sent to"
        };
        let mut text = String::new();
        if !report.delivered.is_empty() {
            text.push_str(&format!("{verb} {}\n", report.delivered.join(" ")));
        }
        emit(text)?;
    }
    if report.ok() {
        Ok(())
    } else {
        Err(Failure::Runtime(format!(
            "not delivered to {}",
            report.failed.join(" ")
        )))
    }
}

/// `peermesh tag`, `tag set KEY=VALUE...`, `tag rm KEY...`.
pub(super) fn tag(args: TagArgs) -> Result<(), Failure> {
    let mut change = TagChange::default();
    match args.op.as_deref() {
        Some("set") => {
            for item in &args.items {
                let (key, value) = key_value(item)
                    .map_err(|why| Failure::Usage(format!("error: tag set {why}")))?;
                if change.set.insert(key.clone(), value).is_some() {
                    return Err(Failure::Usage(format!(
                        "error: tag set: key {key:?} given twice"
                    )));
                }
            }
        }
        Some(_) => change.remove = args.items.clone(),
        None => {}
    }
    if args.op.is_some() && args.items.is_empty() {
        return Err(Failure::Usage(
            "error: tag set wants KEY=VALUE..., tag rm wants KEY...".to_owned(),
        ));
    }
    let path = control_path(&args.target)?;
    let tags = match ask(&path, Request::Tags(change), CLIENT_TIMEOUT)? {
        Answer::Tags(tags) => tags,
        other => return Err(unexpected(&other)),
    };
    if args.json {
        emit(format!(
            "{}\n",
            serde_json::to_string(&tags).unwrap_or_default()
        ))
    } else {
        emit(
            tags.iter()
                .map(|(k, v)| format!("{k}={v}\n"))
                .collect::<String>(),
        )
    }
}

/// The `--tag` pairs as a map; a key given twice is bad usage.
fn tag_filter(pairs: Vec<(String, String)>) -> Result<TagMap, Failure> {
    let mut map = TagMap::new();
    for (key, value) in pairs {
        if map.insert(key.clone(), value).is_some() {
            return Err(Failure::Usage(format!(
                "error: --tag {key:?} given twice: a peer has one value per key"
            )));
        }
    }
    Ok(map)
}

/// An RTT in microseconds as a person reads it: `0.31 ms`, or `-` when unknown.
fn rtt(us: Option<f64>) -> String {
    us.map_or_else(|| "-".to_owned(), |us| format!("{:.2} ms", us / 1000.0))
}

/// `peermesh query`.
pub(super) fn query(args: QueryArgs) -> Result<(), Failure> {
    let tags = tag_filter(args.tags)?;
    let path = control_path(&args.target)?;
    let payload = payload(args.data)?;
    let wait = Duration::from_millis(args.timeout.unwrap_or(DEFAULT_QUERY_TIMEOUT_MS))
        + GRACE
        + CLIENT_TIMEOUT;
    let request = Request::Query(QueryRequest {
        peers: args.peers,
        tags,
        payload,
        timeout_ms: args.timeout,
    });
    let report = match ask(&path, request, wait)? {
        Answer::Query(report) => report,
        other => return Err(unexpected(&other)),
    };
    if args.json {
        emit(format!("{}\n", report.to_json()))?;
    } else {
        let mut text = String::new();
        for response in &report.responses {
            let data = match response.payload.to_bytes_or_empty() {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) => format!("({e})"),
            };
            let error = if response.error { " error" } else { "" };
            text.push_str(&format!(
                "{} ({}){error}: {}\n",
                response.node,
                rtt(response.rtt_us),
                data.trim_end_matches('\n')
            ));
        }
        emit(text)?;
    }
    if report.missing.is_empty() {
        Ok(())
    } else {
        Err(Failure::Runtime(format!(
            "no response from {}",
            report.missing.join(" ")
        )))
    }
}

/// `peermesh respond`.
pub(super) fn respond(args: RespondArgs) -> Result<(), Failure> {
    let payload = payload(args.data)?;
    let path = control_path(&args.target)?;
    let request = Request::Respond(RespondRequest {
        to: args.peer,
        query: args.query,
        payload,
        error: args.error,
    });
    match ask(&path, request, CLIENT_TIMEOUT)? {
        Answer::Responded => Ok(()),
        other => Err(unexpected(&other)),
    }
}

/// `peermesh reload`: what changed, or the node's reason for refusing (exit 1) as it
/// logged it.
pub(super) fn reload(args: ReloadArgs) -> Result<(), Failure> {
    use peermesh::io::control::ClientError;
    use peermesh::io::control_protocol::AnswerError;
    let path = control_path(&args.target)?;
    let report = match control::request_within(&path, Request::Reload, CLIENT_TIMEOUT) {
        Ok(Answer::Reloaded(report)) => report,
        Ok(other) => return Err(unexpected(&other)),
        Err(ClientError::Answer(_, AnswerError::Refused(why))) => {
            return Err(Failure::Runtime(why))
        }
        Err(e) => return Err(Failure::Runtime(e.to_string())),
    };
    if args.json {
        emit(format!(
            "{}\n",
            serde_json::to_string(&report).unwrap_or_default()
        ))
    } else {
        emit(format!("{}\n", report.to_text()))
    }
}

/// `peermesh metrics`: the Prometheus text, as the node renders it.
pub(super) fn metrics(args: MetricsArgs) -> Result<(), Failure> {
    let path = control_path(&args.target)?;
    match ask(&path, Request::Metrics, CLIENT_TIMEOUT)? {
        Answer::Text(text) => emit(text),
        other => Err(unexpected(&other)),
    }
}

/// `peermesh nearest`.
pub(super) fn nearest(args: NearestArgs) -> Result<(), Failure> {
    let tags = tag_filter(args.tags)?;
    let path = control_path(&args.target)?;
    let report = match ask(&path, Request::Nearest(tags), CLIENT_TIMEOUT)? {
        Answer::Nearest(report) => report,
        other => return Err(unexpected(&other)),
    };
    if args.json {
        emit(format!(
            "{}\n",
            serde_json::to_string(&report).unwrap_or_default()
        ))?;
    } else {
        emit(
            report
                .nodes
                .iter()
                .map(|n| format!("{n}\n"))
                .collect::<String>(),
        )?;
    }
    if report.nodes.is_empty() {
        Err(Failure::Runtime("no alive peer matches".to_owned()))
    } else {
        Ok(())
    }
}

/// `peermesh watch`: records as they come until Ctrl-C (exit 0) or the node goes (exit 1).
pub(super) fn watch(args: WatchArgs) -> Result<(), Failure> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let path = control_path(&args.target)?;
    let runtime = |e: ClientError| Failure::Runtime(e.to_string());
    let io_failure = |e: std::io::Error| Failure::Runtime(format!("watch: {e}"));
    let stream = control::connect_within(&path, CLIENT_TIMEOUT).map_err(runtime)?;
    control::send_all(&stream, Request::Watch.to_line().as_bytes())
        .map_err(|e| runtime(ClientError::Io(path.clone(), e)))?;
    stream.set_nonblocking(true).map_err(io_failure)?;
    const STREAM: mio::Token = mio::Token(0);
    const SIGNALS: mio::Token = mio::Token(1);
    let mut poll = mio::Poll::new().map_err(io_failure)?;
    let mut signals =
        signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(io_failure)?;
    let mut stream = mio::net::UnixStream::from_std(stream);
    poll.registry()
        .register(&mut stream, STREAM, mio::Interest::READABLE)
        .map_err(io_failure)?;
    poll.registry()
        .register(&mut signals, SIGNALS, mio::Interest::READABLE)
        .map_err(io_failure)?;
    let mut events = mio::Events::with_capacity(4);
    let mut pending: Vec<u8> = Vec::new();
    let mut started = false;
    let mut chunk = vec![0u8; 64 * 1024];
    // Until the first line, the node has CLIENT_TIMEOUT to answer.
    let mut wait = Some(CLIENT_TIMEOUT);
    loop {
        match poll.poll(&mut events, wait) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => other.map_err(io_failure)?,
        }
        if signals.pending().next().is_some() {
            return Ok(());
        }
        if events.is_empty() && !started {
            return Err(runtime(ClientError::Timeout(path.clone(), CLIENT_TIMEOUT)));
        }
        let mut closed = false;
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_failure(e)),
            }
        }
        let mut out = String::new();
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            if !started {
                match parse_answer(&line) {
                    Ok(Answer::Watching) => started = true,
                    Ok(other) => return Err(unexpected(&other)),
                    Err(e) => return Err(runtime(ClientError::Answer(path.clone(), e))),
                }
                wait = None;
                continue;
            }
            let line = line.trim_end();
            if args.json {
                out.push_str(line);
                out.push('\n');
            } else {
                out.push_str(&readable(line));
                out.push('\n');
            }
        }
        emit(out)?;
        if closed {
            return Err(Failure::Runtime(format!(
                "the node at {} closed the watch (it stopped?)",
                path.display()
            )));
        }
    }
}

/// One record line in the readable form (the JSON itself if it cannot be read): the
/// time of day (UTC), the event, the peer, the other fields, and the payload after `:`.
fn readable(line: &str) -> String {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(line) else {
        return line.to_owned();
    };
    let text = |key: &str| map.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let time_ms = map.get("time_ms").and_then(|v| v.as_u64()).unwrap_or(0);
    let mut shown = format!("{} {}", clock(time_ms), text("event").unwrap_or_default());
    if let Some(peer) = text("peer") {
        shown.push_str(&format!(" {peer}"));
    }
    for (key, value) in &map {
        if ["event", "peer", "time_ms", "data", "data_b64"].contains(&key.as_str()) {
            continue;
        }
        let value = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        shown.push_str(&format!(" {key}={value}"));
    }
    let payload = PayloadFields {
        data: text("data"),
        data_b64: text("data_b64"),
    };
    match (payload.data, payload.data_b64) {
        (Some(data), _) => shown.push_str(&format!(": {}", data.escape_debug())),
        (None, Some(b64)) => shown.push_str(&format!(": (base64) {b64}")),
        (None, None) => {}
    }
    shown
}
