//! What happened, as the core tells its embedder.

use crate::core::peer_table::PeerId;
use crate::core::query::{QueryId, QueryRef};
use crate::core::transfer::MessageId;
use std::time::Duration;

/// Something that happened, for the embedder (drained with [`crate::Mesh::poll_event`]). New
/// kinds will be added (removals, ...): match with a `_` arm.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The peer is alive: first heard, or heard again after being suspect, dead or left.
    Up(PeerId),
    /// The peer has been silent for `suspect_after`.
    Suspect(PeerId),
    /// The peer has been silent for `dead_after`.
    Down(PeerId),
    /// The peer came back with a new incarnation: it restarted. Its statistics were reset.
    Restarted {
        /// Which peer.
        peer: PeerId,
        /// Its new incarnation.
        incarnation: u64,
    },
    /// The peer said it was leaving.
    Left(PeerId),
    /// The peer was taken out of this node's mesh ([`crate::Mesh::remove_peer`]: a config
    /// reload that no longer lists it). Its id is no longer valid, so the event names it.
    Removed {
        /// The id it had.
        peer: PeerId,
        /// Its name.
        name: String,
    },
    /// The peer's address changed ([`crate::Mesh::set_peer_addr`]: a reload, or its host
    /// name resolving to another address). What was measured of it is kept.
    Moved {
        /// Which peer.
        peer: PeerId,
        /// The address it had.
        from: std::net::SocketAddr,
        /// The address it has now.
        to: std::net::SocketAddr,
    },
    /// The peer has been silent here for `dead_after`, but other nodes still hear it: the
    /// path from this node to it is broken.
    Unreachable(PeerId),
    /// The peer's own row started (`true`) or stopped (`false`) saying it does not hear
    /// this node, while this node hears it.
    Asymmetric {
        /// Which peer.
        peer: PeerId,
        /// Whether the path is now one-way.
        asymmetric: bool,
    },
    /// Two processes started (`true`) or stopped (`false`) claiming the peer's identity
    /// from two addresses at once (a cloned machine, a second process with its name); see
    /// [`crate::Peer::rival_addr`]. They take turns at being believed while it lasts.
    Conflict {
        /// Which peer.
        peer: PeerId,
        /// Whether two processes claim it now.
        conflict: bool,
    },
    /// A message from a peer ([`crate::Mesh::send`], [`crate::Mesh::broadcast`]), whole,
    /// delivered once.
    Message {
        /// Who sent it.
        from: PeerId,
        /// The sender's number for it (counted per receiver and sender process).
        id: MessageId,
        /// What it said.
        payload: Vec<u8>,
    },
    /// A confirmed message was acknowledged by its receiver. Reported once, and never for
    /// a message also reported [`Event::Failed`].
    Delivered {
        /// The receiver.
        to: PeerId,
        /// What [`crate::Mesh::send`] returned.
        id: MessageId,
    },
    /// A confirmed message was not acknowledged by its timeout, or its receiver left,
    /// died or was removed first. Reported once.
    Failed {
        /// The receiver.
        to: PeerId,
        /// What [`crate::Mesh::send`] returned.
        id: MessageId,
    },
    /// A peer's tags changed ([`crate::Mesh::peer_tags`]).
    Tags {
        /// Which peer.
        peer: PeerId,
    },
    /// A peer asks this node a question; answer with [`crate::Mesh::respond`].
    Query {
        /// Who asks.
        from: PeerId,
        /// What to give [`crate::Mesh::respond`].
        query: QueryRef,
        /// The question.
        payload: Vec<u8>,
        /// How long the asker waits for the answer.
        timeout: Duration,
    },
    /// A query this node asked reached a peer.
    QueryAck {
        /// What [`crate::Mesh::query`] returned.
        query: QueryId,
        /// The peer.
        from: PeerId,
    },
    /// A peer's answer to a query this node asked.
    QueryResponse {
        /// What [`crate::Mesh::query`] returned.
        query: QueryId,
        /// Who answered.
        from: PeerId,
        /// The answer.
        payload: Vec<u8>,
        /// The peer could not answer; the payload says why.
        error: bool,
    },
    /// A probe asked for with [`crate::Mesh::measure_now`] was answered: the round trip
    /// it measured (also in [`crate::Peer::rtt`] from now on).
    Measured {
        /// The peer probed.
        peer: PeerId,
        /// The round trip of this one probe.
        rtt: Duration,
    },
    /// A query is closed, because its timeout passed or every peer asked answered (later
    /// answers are dropped).
    QueryDone {
        /// What [`crate::Mesh::query`] returned.
        query: QueryId,
        /// The peers asked that did not answer.
        missing: Vec<PeerId>,
    },
}

impl Event {
    /// The peer the event is about (`None` for [`Event::QueryDone`]).
    pub fn peer(&self) -> Option<PeerId> {
        Some(match self {
            Event::Up(p)
            | Event::Suspect(p)
            | Event::Down(p)
            | Event::Left(p)
            | Event::Unreachable(p) => *p,
            Event::Restarted { peer, .. }
            | Event::Removed { peer, .. }
            | Event::Moved { peer, .. }
            | Event::Asymmetric { peer, .. }
            | Event::Conflict { peer, .. }
            | Event::Tags { peer }
            | Event::Measured { peer, .. } => *peer,
            Event::Message { from, .. }
            | Event::Query { from, .. }
            | Event::QueryAck { from, .. }
            | Event::QueryResponse { from, .. } => *from,
            Event::Delivered { to, .. } | Event::Failed { to, .. } => *to,
            Event::QueryDone { .. } => return None,
        })
    }
}
