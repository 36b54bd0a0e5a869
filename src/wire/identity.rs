//! Node identity: a 64-bit number derived from the node's name.
//!
//! Every datagram carries its sender's identity, so a peer is recognised by who it says it
//! is, not by the address it happens to send from (NAT, several nodes on one host).

use std::fmt;

/// A node's identity on the wire: FNV-1a (64 bit) of its name, lower-cased.
///
/// Names are matched case-insensitively (as hostnames are), so `Alpha` and `alpha` are the
/// same node. The configuration loader rejects two names with the same identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

impl NodeId {
    /// The identity of the node called `name`.
    pub fn from_name(name: &str) -> NodeId {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut hash = OFFSET;
        for byte in name.bytes() {
            hash ^= u64::from(byte.to_ascii_lowercase());
            hash = hash.wrapping_mul(PRIME);
        }
        NodeId(hash)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({:016x})", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::NodeId;

    #[test]
    fn identity_ignores_case_and_differs_by_name() {
        assert_eq!(NodeId::from_name("Alpha"), NodeId::from_name("alpha"));
        assert_ne!(NodeId::from_name("alpha"), NodeId::from_name("beta"));
        // FNV-1a of the empty string is its offset basis: pins the algorithm.
        assert_eq!(NodeId::from_name("").0, 0xcbf2_9ce4_8422_2325);
        assert_eq!(NodeId::from_name("a").0, 0xaf63_dc4c_8601_ec8c);
    }
}
