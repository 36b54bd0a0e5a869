//! An existing mio program — a TCP echo server — that adds a peermesh node to its own loop.
//!
//! ```text
//! cargo run --example embed -- --config peers.ron --name beta --echo 127.0.0.1:7007 \
//!     [--control /tmp/beta.sock]
//! ```
//!
//! The program keeps its own tokens and its own work (echoing every byte each TCP client
//! sends); the node only adds one token for its UDP socket, and its next deadline becomes
//! the poll timeout (`Node::poll_delay`: no sleep while datagrams wait unread). When the
//! config names a key file, the node seals with it, so the program joins a keyed mesh; a key
//! file it cannot use stops it at start with a message naming the file. Mesh events are
//! printed as `event: Up(alpha)`, `event: Message(alpha, "hello")`, `event: Tags(alpha,
//! {...})`. The program also uses the mesh for its own work: it answers every query
//! (`peermesh query`) with what it is doing, and keeps a `clients` tag saying how many TCP
//! clients it serves, which every other node then sees. With `--control`, the same loop also serves the control
//! socket (one `ControlServer::serve` call a turn), so `peermesh status --control PATH` and
//! `peermesh matrix --control PATH` work against this program as against `peermesh run`.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};
use peermesh::config::{default_hostname, Config};
use peermesh::core::Event as MeshEvent;
use peermesh::io::control::ControlServer;
use peermesh::io::driver::Node;
use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// The host program's own listening socket.
const ECHO: Token = Token(0);
/// The token this program lends the mesh node.
const MESH: Token = Token(1);
/// The control socket's listener; its clients get the tokens after `CONTROL_CLIENTS`.
const CONTROL: Token = Token(2);
const CONTROL_CLIENTS: usize = 16;
/// Echo clients get tokens from here on (past the control socket's range).
const FIRST_ECHO_CLIENT: usize = 1024;
/// A client that sends faster than it reads is cut off past this much pending output.
const MAX_PENDING: usize = 1 << 20;

const USAGE: &str = "usage: embed --config PATH --name NAME --echo ADDR:PORT [--control PATH]";

struct Args {
    config: PathBuf,
    name: String,
    echo: SocketAddr,
    control: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let (mut config, mut name, mut echo, mut control) = (None, None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--config" => config = Some(PathBuf::from(value()?)),
            "--name" => name = Some(value()?),
            "--echo" => {
                let v = value()?;
                echo = Some(
                    v.parse()
                        .map_err(|_| format!("--echo wants ADDR:PORT, not {v:?}"))?,
                );
            }
            "--control" => control = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        config: config.ok_or("--config is required")?,
        name: name.ok_or("--name is required")?,
        echo: echo.ok_or("--echo is required")?,
        control,
    })
}

/// One echo client: what it sent that could not be written back yet.
struct Client {
    stream: TcpStream,
    pending: Vec<u8>,
    writable: bool,
}

impl Client {
    /// Reads what the client sent and writes it back; `false` when the client is done.
    fn serve(&mut self, registry: &Registry, token: Token) -> io::Result<bool> {
        let mut buf = [0u8; 4096];
        let mut open = true;
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if self.pending.len() > MAX_PENDING {
                return Ok(false);
            }
        }
        while !self.pending.is_empty() {
            match self.stream.write(&self.pending) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        // Ask for writability only while output waits.
        let want = !self.pending.is_empty();
        if want != self.writable {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            registry.reregister(&mut self.stream, token, interest)?;
            self.writable = want;
        }
        Ok(open || want)
    }
}

/// `Up(alpha)`, `Restarted(alpha, 5a0c...)`: the event with the peer's name.
fn describe(node: &Node, event: &MeshEvent) -> String {
    let name = event
        .peer()
        .and_then(|p| node.mesh().peer(p))
        .map_or("?", |p| p.name());
    match event {
        MeshEvent::Restarted { incarnation, .. } => {
            format!("Restarted({name}, {incarnation:016x})")
        }
        MeshEvent::Asymmetric { asymmetric, .. } => format!("Asymmetric({name}, {asymmetric})"),
        MeshEvent::Message { payload, .. } => {
            format!("Message({name}, {:?})", String::from_utf8_lossy(payload))
        }
        MeshEvent::Tags { peer } => {
            let tags = node.mesh().peer_tags(*peer).cloned().unwrap_or_default();
            format!("Tags({name}, {tags:?})")
        }
        // Up, Suspect, Down, Left, ...: the variant's name and the peer's.
        other => {
            let debug = format!("{other:?}");
            let kind = debug.split(['(', ' ', '{']).next().unwrap_or("?");
            format!("{kind}({name})")
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let config = Config::load(&args.config).map_err(|e| e.to_string())?;
    let me = config
        .find_self(Some(&args.name), &default_hostname())
        .map_err(|e| e.to_string())?;
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let registry = poll.registry().try_clone().map_err(|e| e.to_string())?;

    // The host program's own socket, on its own token.
    let mut listener =
        TcpListener::bind(args.echo).map_err(|e| format!("echo {}: {e}", args.echo))?;
    registry
        .register(&mut listener, ECHO, Interest::READABLE)
        .map_err(|e| e.to_string())?;

    // The mesh node, on the token this program lends it. It seals with the key file the
    // config names (and refuses to start if that file cannot be used).
    let mut node = Node::from_config(&config, me, None).map_err(|e| e.to_string())?;
    node.register(&registry, MESH).map_err(|e| e.to_string())?;

    // Optionally the control socket, for `peermesh status --control PATH`.
    let mut control = match &args.control {
        Some(path) => {
            let mut server = ControlServer::bind(path).map_err(|e| e.to_string())?;
            server
                .register(&registry, CONTROL, CONTROL_CLIENTS)
                .map_err(|e| e.to_string())?;
            Some(server)
        }
        None => None,
    };

    println!(
        "embed: echo on tcp {}, mesh node {} on udp {}",
        listener.local_addr().map_err(|e| e.to_string())?,
        node.mesh().name(),
        node.local_addr().map_err(|e| e.to_string())?
    );

    let mut clients: HashMap<Token, Client> = HashMap::new();
    let mut next_client = FIRST_ECHO_CLIENT;
    let mut events = Events::with_capacity(128);
    node.handle_timeout(&registry, Instant::now())
        .map_err(|e| e.to_string())?;
    loop {
        // Sleep until the node's next deadline or the control socket's, whichever is first;
        // not at all while datagrams wait unread or a large control answer has a step ready.
        let now = Instant::now();
        let timeout = node.poll_delay(now, control.as_ref().and_then(|c| c.poll_timeout(now)));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("poll: {e}"));
        }
        for event in events.iter() {
            match event.token() {
                MESH => node
                    .handle_event(&registry, event)
                    .map_err(|e| e.to_string())?,
                ECHO => loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let token = Token(next_client);
                            next_client += 1;
                            if let Err(e) =
                                registry.register(&mut stream, token, Interest::READABLE)
                            {
                                eprintln!("embed: cannot register a client: {e}");
                                continue;
                            }
                            let client = Client {
                                stream,
                                pending: Vec::new(),
                                writable: false,
                            };
                            clients.insert(token, client);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => {
                            eprintln!("embed: accept: {e}");
                            break;
                        }
                    }
                },
                // The control socket's tokens: served below, in one call.
                token if control.as_ref().is_some_and(|c| c.owns(token)) => {}
                token => {
                    let Some(client) = clients.get_mut(&token) else {
                        continue; // a spurious wake-up for a client already gone
                    };
                    if !client.serve(&registry, token).unwrap_or(false) {
                        if let Some(mut gone) = clients.remove(&token) {
                            let _ = registry.deregister(&mut gone.stream);
                        }
                    }
                }
            }
        }
        let now = Instant::now();
        node.handle_timeout(&registry, now)
            .map_err(|e| e.to_string())?;
        // Control requests (status, matrix, ping), answered as `peermesh run` answers them;
        // large answers go on a step per turn.
        if let Some(server) = control.as_mut() {
            server.serve(&registry, &events, &node, now);
        }
        while let Some(event) = node.poll_event() {
            println!("event: {}", describe(&node, &event));
            react(&mut node, &event, clients.len());
        }
    }
}

/// The application's part: it answers every query with what it is doing, and tells the
/// mesh (through a tag) how many clients it serves.
fn react(node: &mut Node, event: &MeshEvent, clients: usize) {
    let mesh = node.mesh_mut();
    match event {
        MeshEvent::Query { query, payload, .. } => {
            let answer = format!(
                "{}: echoing for {clients} clients; asked {:?}",
                mesh.name(),
                String::from_utf8_lossy(payload)
            );
            if let Err(e) = mesh.respond(*query, answer.as_bytes(), false) {
                eprintln!("embed: cannot answer a query: {e}");
            }
        }
        MeshEvent::Up(_) | MeshEvent::Message { .. } => {
            let count = clients.to_string();
            if mesh.tags().get("clients") != Some(&count) {
                let change = [("clients".to_owned(), Some(count))];
                if let Err(e) = mesh.set_tags(&change) {
                    eprintln!("embed: cannot set a tag: {e}");
                }
            }
        }
        _ => {}
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let result = parse_args()
        .map_err(|e| format!("{e}\n{USAGE}"))
        .and_then(run);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
