//! # peermesh
//!
//! Every node of a mesh heartbeats every other node over UDP, answers their heartbeats, and
//! keeps for each peer its liveness and the round-trip latency to it. This crate is the
//! library behind the `peermesh` daemon, built in three layers:
//!
//! - the **core**, [`Mesh`]: a pure state machine. It never reads a clock and never touches
//!   a socket. Time comes in as an argument, datagrams come in as bytes; what it wants to
//!   send, when it next needs a call and what happened come out of `poll_*` methods;
//! - the **simulator**, [`sim`]: many cores on a virtual network under a virtual clock, for
//!   deterministic tests (yours too);
//! - the **driver** ([`io::driver`]) and the binary: a thin `mio` event loop over the core.
//!
//! ## Driving the core
//!
//! Inputs are `handle_*`, outputs are `poll_*`, getters take `&self`. After **any** input,
//! drain the outputs in this order: [`Mesh::poll_transmit`] until `None` (send each
//! datagram), [`Mesh::poll_event`] until `None`, then sleep until [`Mesh::poll_timeout`]
//! or until a datagram arrives, whichever comes first:
//!
//! ```no_run
//! use peermesh::{Mesh, Settings};
//! use std::net::UdpSocket;
//! use std::time::{Duration, Instant};
//!
//! # fn main() -> std::io::Result<()> {
//! let settings = Settings {
//!     heartbeat_interval: Duration::from_secs(1),
//!     suspect_after: Duration::from_secs(3),
//!     dead_after: Duration::from_secs(5),
//!     max_datagram: 1232,
//!     incarnation: 0x1234_5678, // random per process start
//!     seed: 42,
//!     probe_mode: peermesh::core::ProbeMode::Auto,
//!     probe_fanout: peermesh::core::DEFAULT_PROBE_FANOUT,
//! };
//! let mut mesh = Mesh::new("alpha", settings, Instant::now());
//! mesh.add_peer("beta", "127.0.0.2:1313".parse().unwrap());
//! let socket = UdpSocket::bind("127.0.0.1:1313")?;
//! let mut buf = vec![0u8; 1232];
//! let mut rx = vec![0u8; 65536];
//! loop {
//!     while let Some(t) = mesh.poll_transmit(Instant::now(), &mut buf) {
//!         socket.send_to(&buf[..t.len], t.dst)?;
//!     }
//!     while let Some(event) = mesh.poll_event() {
//!         println!("{event:?}");
//!     }
//!     let wait = mesh
//!         .poll_timeout()
//!         .map(|at| at.saturating_duration_since(Instant::now()));
//!     socket.set_read_timeout(wait.filter(|d| !d.is_zero()).or(Some(Duration::from_micros(1))))?;
//!     match socket.recv_from(&mut rx) {
//!         Ok((n, from)) => mesh.handle_datagram(Instant::now(), from, &rx[..n]),
//!         Err(_) => mesh.handle_timeout(Instant::now()),
//!     }
//! }
//! # }
//! ```
//!
//! The real driver, [`io::driver::Node`], does the same with `mio`, never blocking, and fits
//! into a program's own mio loop; [`io::control::ControlServer::serve`] adds the control
//! socket to that loop in one call a turn. See the [`io::driver`] module for the loop, and
//! `examples/embed.rs` for a whole program.
//!
//! ## Telling the other nodes
//!
//! Nodes pass information through the same core: [`Mesh::send`] and [`Mesh::broadcast`]
//! (up to [`MAX_MESSAGE`] bytes, best effort or confirmed), tags ([`Mesh::set_tags`],
//! [`Mesh::peer_tags`]) and queries ([`Mesh::query`], answered with [`Mesh::respond`]).
//! What arrives comes out of [`Mesh::poll_event`]. Two cores, wired by hand:
//!
//! ```
//! use peermesh::{Delivery, Event, Mesh, QueryFilter, Settings};
//! use std::time::{Duration, Instant};
//!
//! let settings = |incarnation| Settings {
//!     heartbeat_interval: Duration::from_millis(100),
//!     suspect_after: Duration::from_millis(300),
//!     dead_after: Duration::from_millis(500),
//!     max_datagram: 1232,
//!     incarnation,
//!     seed: incarnation,
//!     probe_mode: peermesh::core::ProbeMode::Auto,
//!     probe_fanout: peermesh::core::DEFAULT_PROBE_FANOUT,
//! };
//! let (a_addr, b_addr) = ("127.0.0.1:7001".parse().unwrap(), "127.0.0.2:7002".parse().unwrap());
//! let mut now = Instant::now();
//! let mut a = Mesh::new("a", settings(1), now);
//! let mut b = Mesh::new("b", settings(2), now);
//! let b_at_a = a.add_peer("b", b_addr).unwrap();
//! b.add_peer("a", a_addr);
//! // The network: every datagram either core wants to send is handed to the other.
//! let mut buf = vec![0u8; 1232];
//! let mut step = |a: &mut Mesh, b: &mut Mesh, now: Instant| {
//!     a.handle_timeout(now);
//!     b.handle_timeout(now);
//!     for _ in 0..4 {
//!         while let Some(t) = a.poll_transmit(now, &mut buf) {
//!             b.handle_datagram(now, a_addr, &buf[..t.len]);
//!         }
//!         while let Some(t) = b.poll_transmit(now, &mut buf) {
//!             a.handle_datagram(now, b_addr, &buf[..t.len]);
//!         }
//!     }
//! };
//! for _ in 0..5 {
//!     now += Duration::from_millis(100);
//!     step(&mut a, &mut b, now);
//! }
//! a.set_tags(&[("role".into(), Some("db".into()))]).unwrap();
//! let sent = a.send(b_at_a, b"hello", Delivery::Confirmed { timeout: Duration::from_secs(1) });
//! let query = a.query(&QueryFilter::default(), b"uptime?", Duration::from_secs(1)).unwrap();
//! step(&mut a, &mut b, now);
//! while let Some(event) = b.poll_event() {
//!     match event {
//!         Event::Message { payload, .. } => assert_eq!(payload, b"hello"),
//!         Event::Query { query, .. } => b.respond(query, b"up 3 days", false).unwrap(),
//!         Event::Tags { peer } => assert_eq!(b.peer_tags(peer).unwrap()["role"], "db"),
//!         _ => {}
//!     }
//! }
//! step(&mut a, &mut b, now);
//! let events: Vec<Event> = std::iter::from_fn(|| a.poll_event()).collect();
//! assert!(events.contains(&Event::Delivered { to: b_at_a, id: sent.unwrap() }));
//! assert!(events.iter().any(|e| matches!(e,
//!     Event::QueryResponse { query: q, payload, .. } if *q == query && payload == b"up 3 days")));
//! ```
//!
//! ## What the core promises
//!
//! - Malformed, unauthenticated, replayed or otherwise unwelcome datagrams are dropped,
//!   counted by [`DropReason`] and logged at trace level; they are never an error to the
//!   caller and never change a peer's state. (A valid datagram whose content is stale, such
//!   as a late pong, still proves its sender alive; only its RTT sample is dropped and
//!   counted as `stale_pong`.)
//! - Extra or early calls to [`Mesh::handle_timeout`] are harmless; time passed backwards is
//!   ignored.
//! - The same inputs at the same instants (and the same [`Settings::seed`]) give the same
//!   outputs: runs replay exactly.
//! - No heap allocation per heartbeat exchange once warmed up (application data aside).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod config;
pub mod core;
pub mod io;
pub mod report;
pub mod sim;
pub mod wire;

pub use crate::core::matrix::MatrixView;
pub use crate::core::peer::{Peer, PeerState, RttSummary};
pub use crate::core::{
    Delivery, Diagnosis, DropReason, Event, Mesh, MessageId, PeerId, QueryFilter, QueryId,
    QueryRef, SendError, Settings, TagError, Tags, Transmit, MAX_TAG_BYTES,
};
pub use crate::wire::identity::NodeId;
pub use crate::wire::MAX_MESSAGE;
