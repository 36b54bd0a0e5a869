//! What happened, as the core tells its embedder.

use crate::core::peer_table::PeerId;

/// Something that happened, for the embedder (drained with [`crate::Mesh::poll_event`]). New
/// kinds will be added (application data, removals): match with a `_` arm.
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
    /// Application data from a peer.
    Data {
        /// Who sent it.
        from: PeerId,
        /// What it sent.
        payload: Vec<u8>,
    },
}

impl Event {
    /// The peer the event is about.
    pub fn peer(&self) -> PeerId {
        match self {
            Event::Up(p)
            | Event::Suspect(p)
            | Event::Down(p)
            | Event::Left(p)
            | Event::Unreachable(p) => *p,
            Event::Restarted { peer, .. }
            | Event::Asymmetric { peer, .. }
            | Event::Conflict { peer, .. } => *peer,
            Event::Data { from, .. } => *from,
        }
    }
}
