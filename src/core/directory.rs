//! The directory of a mesh: every node its config lists, with the lookups a datagram
//! needs (by identity, by address, by IP), built once and shared read-only.
//!
//! A real node holds one mesh and gains nothing from it. A process that runs many meshes
//! of one config — the simulator runs thousands — would otherwise hold the same lookup
//! tables once per mesh: about 140 bytes per node in each mesh, 14 GB at 10,000 nodes, and
//! a cache miss on every lookup because each copy is cold. With a shared directory every
//! mesh's peer table keeps only a slot number per entry (see
//! [`crate::core::peer_table::PeerTable`]).

use crate::core::addr::canonical;
use crate::core::identity::Identity;
use crate::core::peer_table::{AddrHasher, IdHasher};
use crate::wire::identity::NodeId;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Every node of one config, by position, identity, address and IP. See the module docs.
#[derive(Debug)]
pub struct Directory {
    entries: Vec<Arc<Identity>>,
    by_id: HashMap<NodeId, u32, BuildHasherDefault<IdHasher>>,
    by_addr: HashMap<SocketAddr, u32, BuildHasherDefault<AddrHasher>>,
    /// How many entries have each IP.
    ips: HashMap<IpAddr, u32, BuildHasherDefault<AddrHasher>>,
}

impl Directory {
    /// The directory of `nodes` (name, address), in that order. A name listed twice keeps
    /// its first address, and an address listed twice finds its last node, as in a peer
    /// table.
    pub fn new<'a>(nodes: impl IntoIterator<Item = (&'a str, SocketAddr)>) -> Arc<Directory> {
        let mut directory = Directory {
            entries: Vec::new(),
            by_id: HashMap::default(),
            by_addr: HashMap::default(),
            ips: HashMap::default(),
        };
        for (name, addr) in nodes {
            let id = NodeId::from_name(name);
            let Ok(at) = u32::try_from(directory.entries.len()) else {
                break;
            };
            if directory.by_id.contains_key(&id) {
                continue;
            }
            let addr = canonical(addr);
            directory.by_id.insert(id, at);
            directory.by_addr.insert(addr, at);
            *directory.ips.entry(addr.ip().to_canonical()).or_insert(0) += 1;
            directory.entries.push(Identity::shared(name, addr));
        }
        Arc::new(directory)
    }

    /// How many nodes it lists.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it lists none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn entries(&self) -> &[Arc<Identity>] {
        &self.entries
    }

    pub(crate) fn position_of_id(&self, id: NodeId) -> Option<usize> {
        self.by_id.get(&id).map(|&at| at as usize)
    }

    pub(crate) fn position_of_addr(&self, addr: SocketAddr) -> Option<usize> {
        self.by_addr.get(&addr).map(|&at| at as usize)
    }

    /// How many entries have `ip` (canonical).
    pub(crate) fn ip_count(&self, ip: IpAddr) -> u32 {
        self.ips.get(&ip.to_canonical()).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_by_identity_address_and_ip() {
        let a = SocketAddr::from(([127, 0, 0, 1], 1));
        let b = SocketAddr::from(([127, 0, 0, 1], 2));
        let dir = Directory::new([("a", a), ("b", b), ("a", b)]);
        assert_eq!(dir.len(), 2, "a name listed twice is one node");
        assert_eq!(dir.position_of_id(NodeId::from_name("b")), Some(1));
        assert_eq!(dir.position_of_addr(a), Some(0));
        assert_eq!(
            dir.position_of_addr(b),
            Some(1),
            "a's second listing adds nothing"
        );
        assert_eq!(dir.ip_count(a.ip()), 2);
        assert_eq!(dir.position_of_id(NodeId::from_name("c")), None);
    }
}
