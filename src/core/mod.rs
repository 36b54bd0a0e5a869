//! The sans-io core: one node's view of the mesh as a pure state machine.
//!
//! Nothing here reads a clock, touches a socket or a file, or knows how the node was
//! configured: time and datagrams come in as arguments, datagrams to send, the next
//! deadline and events come out of `poll_*` methods. It depends only on [`crate::wire`].
//! `tests/layers.rs` keeps it that way.

pub mod matrix;
pub mod mesh;
pub mod peer;
pub mod replay;
pub mod rng;
pub mod wheel;

pub use matrix::{MatrixSnapshot, MatrixView};
pub use mesh::{
    Diagnosis, DropCounters, DropReason, Event, Mesh, PeerId, SendError, Settings, Transmit,
};
pub use peer::{Peer, PeerState, RttSummary};
