//! The HTTP endpoint (`http_listen`, `run --http ADDR`): `/metrics`, `/status.json`,
//! `/matrix.json`, `/matrix.svg` and the status page `/`, served from the node's own event
//! loop like the control socket: non-blocking, one call a turn, never holding the loop.
//!
//! Bounded whatever clients do: at most [`MAX_CONNECTIONS`] connections (one more is told
//! `503` and closed at once), a request head of at most [`MAX_REQUEST_HEAD`] bytes (`431`),
//! [`CLIENT_TIMEOUT`] without progress (closed), and at most [`MAX_BUFFERED`] bytes of
//! answers waiting to be written (`503` beyond). One request per connection (`Connection:
//! close`); `GET` and `HEAD` only (`405`); unknown paths `404`; a request that does not parse
//! `400`. Requests are parsed by `httparse`.

use crate::io::driver::Node;
use crate::report::matrix_report::{MatrixFormat, MatrixRender};
use log::{debug, info};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Registry, Token};
use slab::Slab;
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Connections served at once; one more is answered `503` and closed.
pub const MAX_CONNECTIONS: usize = 256;
/// The longest request head read (request line and headers); longer is `431`.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// A client that makes no progress for this long (sending its request, taking the answer)
/// is closed.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most bytes of answers held for all clients together (a 1,024-node matrix is about
/// 8 MiB as JSON); a request that would pass it is answered `503`.
pub const MAX_BUFFERED: usize = 32 << 20;
/// Headers a request may have (more is `431`).
const MAX_HEADERS: usize = 64;

/// Why the HTTP endpoint could not start.
#[derive(Debug)]
pub struct HttpError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// What the OS said.
    pub source: io::Error,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot listen for HTTP on {}: {}",
            self.addr, self.source
        )
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

struct Conn {
    stream: TcpStream,
    request: Vec<u8>,
    response: Vec<u8>,
    written: usize,
    answered: bool,
    since: Instant,
}

/// The listening socket and its connections.
pub struct HttpServer {
    listener: TcpListener,
    addr: SocketAddr,
    listener_token: Token,
    first_conn_token: usize,
    conns: Slab<Conn>,
    buffered: usize,
    refused: u64,
}

impl fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpServer")
            .field("addr", &self.addr)
            .field("connections", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl HttpServer {
    /// Listens on `addr` (not yet registered).
    pub fn bind(addr: SocketAddr) -> Result<HttpServer, HttpError> {
        let listener = TcpListener::bind(addr).map_err(|source| HttpError { addr, source })?;
        let addr = listener.local_addr().unwrap_or(addr);
        Ok(HttpServer {
            listener,
            addr,
            listener_token: Token(usize::MAX),
            first_conn_token: usize::MAX,
            conns: Slab::new(),
            buffered: 0,
            refused: 0,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Registers the listener under `listener` and its connections under
    /// `first_conn..first_conn + MAX_CONNECTIONS`.
    pub fn register(
        &mut self,
        registry: &Registry,
        listener: Token,
        first_conn: usize,
    ) -> io::Result<()> {
        registry.register(&mut self.listener, listener, Interest::READABLE)?;
        self.listener_token = listener;
        self.first_conn_token = first_conn;
        info!("HTTP on http://{}/ (metrics at /metrics)", self.addr);
        Ok(())
    }

    /// Whether `token` is this server's.
    pub fn owns(&self, token: Token) -> bool {
        token == self.listener_token
            || (self.first_conn_token..self.first_conn_token + MAX_CONNECTIONS).contains(&token.0)
    }

    /// Connections refused because [`MAX_CONNECTIONS`] were open.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// The server's share of one loop turn: accepts, reads and answers the requests among
    /// `events`, writes what waits, and closes clients stuck for [`CLIENT_TIMEOUT`].
    pub fn serve(&mut self, registry: &Registry, events: &Events, node: &Node, now: Instant) {
        for event in events.iter() {
            if event.token() == self.listener_token {
                self.accept(registry, now);
            } else if self.owns(event.token()) {
                let key = event.token().0 - self.first_conn_token;
                self.serve_conn(registry, key, node, now);
            }
        }
        self.sweep(registry, now);
    }

    /// When [`HttpServer::serve`] must next run without an event: the oldest client's
    /// timeout.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns
            .iter()
            .map(|(_, c)| c.since + CLIENT_TIMEOUT)
            .min()
    }

    fn accept(&mut self, registry: &Registry, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, from)) => {
                    if self.conns.len() >= MAX_CONNECTIONS {
                        self.refused += 1;
                        debug!("HTTP: {from} refused: {MAX_CONNECTIONS} connections open");
                        let _ = stream.write(&response(
                            503,
                            "text/plain; charset=utf-8",
                            b"busy: too many connections; try again\n",
                            false,
                        ));
                        continue; // dropped: closed
                    }
                    let entry = self.conns.vacant_entry();
                    let token = Token(self.first_conn_token + entry.key());
                    if registry
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                        .is_err()
                    {
                        continue;
                    }
                    entry.insert(Conn {
                        stream,
                        request: Vec::new(),
                        response: Vec::new(),
                        written: 0,
                        answered: false,
                        since: now,
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("HTTP accept: {e}");
                    return;
                }
            }
        }
    }

    fn serve_conn(&mut self, registry: &Registry, key: usize, node: &Node, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut chunk = [0u8; 4096];
        loop {
            match conn.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) if conn.answered => {
                    let _ = n; // after the request: discarded
                }
                Ok(n) => {
                    conn.request.extend_from_slice(&chunk[..n]);
                    conn.since = now;
                    if conn.request.len() > MAX_REQUEST_HEAD {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return self.close(registry, key),
            }
        }
        if !conn.answered {
            let Some(answer) = answer(&conn.request, node, now, self.buffered) else {
                return; // the head is not complete yet
            };
            conn.answered = true;
            conn.request = Vec::new();
            self.buffered += answer.len();
            conn.response = answer;
        }
        while conn.written < conn.response.len() {
            match conn.stream.write(&conn.response[conn.written..]) {
                Ok(0) => return self.close(registry, key),
                Ok(n) => {
                    conn.written += n;
                    conn.since = now;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return self.close(registry, key),
            }
        }
        self.close(registry, key);
    }

    fn sweep(&mut self, registry: &Registry, now: Instant) {
        let stale: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| now.saturating_duration_since(c.since) > CLIENT_TIMEOUT)
            .map(|(k, _)| k)
            .collect();
        for key in stale {
            debug!("HTTP: closing a client idle for {CLIENT_TIMEOUT:?}");
            self.close(registry, key);
        }
    }

    fn close(&mut self, registry: &Registry, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            self.buffered = self.buffered.saturating_sub(conn.response.len());
            let _ = registry.deregister(&mut conn.stream);
            let _ = conn.stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// The whole answer to the request head in `request`, or `None` while it is incomplete.
fn answer(request: &[u8], node: &Node, now: Instant, buffered: usize) -> Option<Vec<u8>> {
    let text = "text/plain; charset=utf-8";
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let (method, path) = match parsed.parse(request) {
        Ok(httparse::Status::Complete(_)) => {
            (parsed.method.unwrap_or(""), parsed.path.unwrap_or("/"))
        }
        Ok(httparse::Status::Partial) if request.len() > MAX_REQUEST_HEAD => {
            return Some(response(431, text, b"request head too large\n", true));
        }
        Ok(httparse::Status::Partial) => return None,
        Err(httparse::Error::TooManyHeaders) => {
            return Some(response(431, text, b"too many headers\n", true));
        }
        Err(e) => {
            return Some(response(
                400,
                text,
                format!("bad request: {e}\n").as_bytes(),
                true,
            ))
        }
    };
    let head = method == "HEAD";
    if method != "GET" && !head {
        return Some(response(405, text, b"only GET and HEAD\n", true));
    }
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let (kind, body): (&str, Vec<u8>) = match path {
        "/" | "/index.html" => (
            "text/html; charset=utf-8",
            crate::report::status_page::render(&node.status_report(now)).into_bytes(),
        ),
        "/metrics" => (
            crate::report::metrics::CONTENT_TYPE,
            node.metrics(now).into_bytes(),
        ),
        "/status.json" => (
            "application/json",
            node.status_report(now).to_json().into_bytes(),
        ),
        "/matrix.json" => ("application/json", matrix(node, MatrixFormat::Json)),
        "/matrix.svg" => ("image/svg+xml", matrix(node, MatrixFormat::Svg)),
        _ => {
            return Some(response(
                404,
                text,
                b"not found: try /, /metrics, /status.json, /matrix.json or /matrix.svg\n",
                !head,
            ))
        }
    };
    if buffered + body.len() > MAX_BUFFERED {
        return Some(response(
            503,
            text,
            b"busy: too many answers in progress; try again\n",
            true,
        ));
    }
    // HEAD: the length of the body a GET would get, without the body.
    Some(response(200, kind, &body, !head))
}

/// The whole matrix in `format`, rendered at once.
fn matrix(node: &Node, format: MatrixFormat) -> Vec<u8> {
    let mut render = MatrixRender::new(node.mesh().matrix_snapshot(), format);
    let mut out = Vec::new();
    while render.next_chunk(&mut out) {}
    out
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn head_only(status: u16, kind: &str, len: usize) -> Vec<u8> {
    let allow = if status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {kind}\r\nContent-Length: {len}\r\n\
         Cache-Control: no-store\r\n{allow}Connection: close\r\n\r\n",
        reason(status)
    )
    .into_bytes()
}

/// A whole response: status line, headers, and `body` unless `with_body` is false.
fn response(status: u16, kind: &str, body: &[u8], with_body: bool) -> Vec<u8> {
    let mut out = head_only(status, kind, body.len());
    if with_body {
        out.extend_from_slice(body);
    }
    out
}
