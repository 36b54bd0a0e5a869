//! The wire layer: what travels between nodes, as bytes.
//!
//! The datagram format ([`packet`]), the formats inside messages ([`app`]), the coordinate a Pong carries ([`coordinate`]), the membership updates it may carry too ([`member`]), the seal around it ([`seal`]) with the keys it uses
//! ([`keyring`]), and node identities ([`identity`]). It knows nothing of sockets, clocks,
//! files or peers' states; `docs/PROTOCOL.md` is its reference.

pub mod app;
pub mod coordinate;
pub mod identity;
pub mod keyring;
pub mod member;
pub mod packet;
pub mod seal;
pub mod state;

pub use coordinate::WireCoordinate;
pub use identity::NodeId;
pub use member::{
    MemberEntry, MemberUpdate, MemberUpdates, SharedCoordinate, Verdict, MAX_COORDINATE_AGE_DS,
    MEMBER_UPDATE_LEN,
};
pub use packet::*;
pub use state::PeerState;
