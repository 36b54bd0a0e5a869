//! The sans-io core: one node's view of the mesh as a pure state machine.
//!
//! Nothing here reads a clock, touches a socket or a file, or knows how the node was
//! configured: time and datagrams come in as arguments, datagrams to send, the next
//! deadline and events come out of `poll_*` methods. It depends only on [`crate::wire`].
//! `tests/layers.rs` keeps it that way.
//!
//! [`Mesh`] is the facade; each part it is made of has its own file: the peer table
//! ([`peer_table`]), what is known of one peer and how it changes ([`peer`]), liveness and
//! the witness diagnosis ([`liveness`]), the heartbeat schedule ([`schedule`]), row gossip
//! (`gossip.rs`), the matrix ([`matrix`]), drop counters ([`drops`]), timers (`timer.rs`,
//! [`wheel`]), replay protection ([`replay`]) and the verdict on two processes with one
//! identity (`conflict.rs`); addresses in the one form they are compared and shown in
//! ([`addr`]: IPv4-mapped IPv6 addresses as plain IPv4); messages ([`transfer`]), tags ([`tags`]) and queries
//! ([`query`]), wired to the mesh in `mesh/messaging.rs`.

pub mod addr;
pub(crate) mod conflict;
pub mod coordinate;
pub mod directory;
pub mod drops;
pub mod event;
pub(crate) mod gossip;
pub(crate) mod identity;
pub mod liveness;
pub mod matrix;
pub(crate) mod membership;
pub mod mesh;
pub mod peer;
pub mod peer_table;
pub mod probe_mode;
pub mod query;
pub mod replay;
pub mod rng;
pub(crate) mod row_cells;
pub(crate) mod sampling;
pub mod schedule;
pub mod settings;
pub mod tags;
pub(crate) mod timer;
pub mod transfer;
pub mod wheel;

pub use coordinate::Coordinate;
pub use drops::{DropCounters, DropReason};
pub use event::Event;
pub use liveness::Diagnosis;
pub use matrix::{MatrixSnapshot, MatrixView};
pub use mesh::{Mesh, SendError, Transmit};
pub use peer::{Peer, PeerState, RttSummary};
pub use peer_table::PeerId;
pub use probe_mode::{ProbeMode, DEFAULT_PROBE_FANOUT};
pub use query::{QueryFilter, QueryId, QueryRef};
pub use schedule::SLOT_PEERS;
pub use settings::Settings;
pub use tags::{TagError, Tags, MAX_TAG_BYTES};
pub use transfer::{Delivery, MessageId};
