//! A peer's liveness: the one enum for it, in the core, on the wire (one byte in a row
//! entry), in logs, in the CLI and in JSON.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A peer's liveness, as one node sees it. `#[repr(u8)]`: the discriminant is its wire
/// code (docs/PROTOCOL.md); serialised as its lower-case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum PeerState {
    /// Never heard from (since this node started).
    Unknown = 0,
    /// Heard from within `suspect_after`.
    Alive = 1,
    /// Silent for longer than `suspect_after`.
    Suspect = 2,
    /// Silent for longer than `dead_after`, and no other node hears it either.
    Dead = 3,
    /// Said it was leaving (a clean shutdown).
    Left = 4,
    /// Silent here for longer than `dead_after`, but other nodes still hear it: the path
    /// from this node is broken, the peer is not dead.
    Unreachable = 5,
}

impl PeerState {
    /// The lower-case name used in logs, the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Unknown => "unknown",
            PeerState::Alive => "alive",
            PeerState::Suspect => "suspect",
            PeerState::Dead => "dead",
            PeerState::Left => "left",
            PeerState::Unreachable => "unreachable",
        }
    }

    /// Every state, in the order of their wire codes.
    pub const ALL: [PeerState; 6] = [
        PeerState::Unknown,
        PeerState::Alive,
        PeerState::Suspect,
        PeerState::Dead,
        PeerState::Left,
        PeerState::Unreachable,
    ];

    /// The state named `name` ([`PeerState::as_str`]), if any.
    pub fn from_name(name: &str) -> Option<PeerState> {
        PeerState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Its wire code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The state whose wire code is `code`, if any.
    pub fn from_code(code: u8) -> Option<PeerState> {
        PeerState::ALL.get(usize::from(code)).copied()
    }
}

impl fmt::Display for PeerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_names_and_serde_agree() {
        for (i, state) in PeerState::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(state.code()), i);
            assert_eq!(PeerState::from_code(state.code()), Some(state));
            assert_eq!(PeerState::from_name(state.as_str()), Some(state));
            let json = serde_json::to_string(&state).expect("serialise");
            assert_eq!(json, format!("\"{state}\""));
            assert_eq!(serde_json::from_str::<PeerState>(&json).ok(), Some(state));
        }
        assert_eq!(PeerState::from_code(6), None);
        assert_eq!(PeerState::from_name("Alive"), None);
    }
}
