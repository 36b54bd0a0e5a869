//! The peer table: every peer of this node, by a generational handle, by identity and by
//! address, and the order the mesh lists its nodes in.
//!
//! Peers come and go at run time (config reload, embedders): a removed peer's [`PeerId`]
//! never names a peer added later, because each table slot counts its generations, and
//! timers that carry an id recognise a peer that is gone.

use crate::core::addr::canonical;
use crate::core::directory::Directory;
use crate::core::peer::Peer;
use crate::wire::identity::NodeId;
use slab::Slab;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// A handle to one peer of a [`crate::Mesh`]. Generational: once the peer is removed, its
/// id is refused by every call that takes one, even when its slot is reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId {
    index: u32,
    generation: u32,
}

impl PeerId {
    /// The table slot it refers to (reused by later peers once this one is removed).
    pub fn index(self) -> usize {
        self.index as usize
    }

    /// How many peers held that slot before this one.
    pub fn generation(self) -> u32 {
        self.generation
    }

    /// The id of slot `index`, first generation (for unit tests of what holds ids).
    #[cfg(test)]
    pub(crate) fn of_slot(index: u32) -> PeerId {
        PeerId {
            index,
            generation: 0,
        }
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.index, self.generation)
    }
}

/// One place in the listing of a mesh's nodes: this node itself, or the peer in a slot
/// (a `u32` slot, as in [`PeerId`], with one value kept for this node: 4 bytes a place in
/// a listing of every node, where an enum took 8).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member(u32);

impl Member {
    /// This node's own place.
    pub(crate) const OWN: Member = Member(u32::MAX);

    /// The place of the peer in slot `key` (a mesh's slots stay far below `u32::MAX`, the
    /// config's node limit; one past it is held at the last slot, never at [`Member::OWN`]).
    pub(crate) fn peer(key: usize) -> Member {
        Member(u32::try_from(key).map_or(u32::MAX - 1, |key| key.min(u32::MAX - 1)))
    }

    /// The slot of the peer here (`None`: this node).
    pub(crate) fn key(self) -> Option<usize> {
        (self != Member::OWN).then_some(self.0 as usize)
    }
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.key() {
            None => f.write_str("Own"),
            Some(key) => write!(f, "Peer({key})"),
        }
    }
}

/// Node identities are already well-mixed hashes: hashing them again is wasted work.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdMap<V> = HashMap<NodeId, V, BuildHasherDefault<IdHasher>>;

/// A multiply-rotate hash (rustc's FxHash) for the set of peer IPs, looked up for every
/// datagram without a keyring: SipHash cost more than the rest of the lookup. The set holds
/// only configured addresses, so there are no chosen keys stored to make it degrade.
#[derive(Default)]
pub(crate) struct AddrHasher(u64);

impl AddrHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

/// Every peer, addressed inside the core by slot (`key`), outside by [`PeerId`].
#[derive(Debug)]
pub(crate) struct PeerTable {
    own: NodeId,
    peers: Slab<Peer>,
    /// Per slot up to the last one a peer was removed from: the generation of its current
    /// (or last) peer; a slot past its end is in its first generation. Grown only by
    /// removals, so a table that never lost a peer (any simulated node's) holds none.
    generations: Vec<u32>,
    /// One more than the largest slot ever used.
    slot_bound: usize,
    by_id: IdMap<usize>,
    by_addr: HashMap<SocketAddr, usize>,
    /// The peers' configured IP addresses, with how many peers have each (the only
    /// sources accepted without a keyring).
    ips: HashMap<IpAddr, u32, BuildHasherDefault<AddrHasher>>,
    /// The order nodes are listed in (matrix rows and columns, heartbeat groups): the order
    /// they were added, this node where it was named (first if it never was).
    roster: Vec<Member>,
    /// While the peers are exactly a shared directory's nodes (but this one): the
    /// directory, used instead of `by_id`, `by_addr` and `ips` (left empty).
    shared: Option<Shared>,
}

/// A shared directory and where its nodes sit in this table.
#[derive(Debug)]
struct Shared {
    directory: Arc<Directory>,
    /// By directory position: the peer's slot ([`NO_SLOT`]: this node). `None` while the
    /// peers sit in directory order (the table was built from the directory's list): then
    /// the slot is the position, less one past this node's, and no table is needed.
    slots: Option<Vec<u32>>,
    /// This node's position in the directory, if it lists it.
    own_position: Option<usize>,
    /// This node's IP, when the directory lists it (it is no peer's).
    own_ip: Option<IpAddr>,
}

const NO_SLOT: u32 = u32::MAX;

impl Shared {
    fn slot(&self, position: Option<usize>) -> Option<usize> {
        let position = position?;
        match &self.slots {
            Some(slots) => {
                let slot = *slots.get(position)?;
                (slot != NO_SLOT).then_some(slot as usize)
            }
            None => match self.own_position {
                Some(own) if position == own => None,
                Some(own) if position > own => Some(position - 1),
                _ => (position < self.directory.len()).then_some(position),
            },
        }
    }
}

impl PeerTable {
    pub(crate) fn new(own: NodeId) -> PeerTable {
        PeerTable {
            own,
            peers: Slab::new(),
            generations: Vec::new(),
            slot_bound: 0,
            by_id: IdMap::default(),
            by_addr: HashMap::new(),
            ips: HashMap::default(),
            roster: vec![Member::OWN],
            shared: None,
        }
    }

    /// Uses `directory` for lookups instead of this table's own maps, when its nodes are
    /// exactly this table's peers and this node, at the same addresses, and every lookup
    /// finds what this table's own would. Returns whether it does; the table goes back to
    /// its own maps at its next change.
    pub(crate) fn share(&mut self, directory: &Arc<Directory>) -> bool {
        let mut slots = Vec::with_capacity(directory.len());
        let mut own_ip = None;
        let mut own_position = None;
        for (position, entry) in directory.entries().iter().enumerate() {
            if entry.id == self.own {
                slots.push(NO_SLOT);
                own_ip = Some(entry.addr.ip().to_canonical());
                own_position = Some(position);
                continue;
            }
            let Some(key) = self.by_id(entry.id) else {
                return false;
            };
            let (Ok(slot), true) = (u32::try_from(key), self.peers[key].addr() == entry.addr)
            else {
                return false;
            };
            slots.push(slot);
        }
        let listed = slots.iter().filter(|&&s| s != NO_SLOT).count();
        let in_order = slots
            .iter()
            .filter(|&&s| s != NO_SLOT)
            .enumerate()
            .all(|(i, &slot)| slot as usize == i);
        // Only an equal identity is swapped for the directory's: harmless if the directory
        // then turns out not to fit.
        for (entry, &slot) in directory.entries().iter().zip(&slots) {
            if let Some(peer) = self.peers.get_mut(slot as usize) {
                peer.share_identity(entry);
            }
        }
        let shared = Shared {
            directory: Arc::clone(directory),
            slots: (!in_order).then_some(slots),
            own_position,
            own_ip,
        };
        // Every peer listed (ids are unique on both sides), and found at its address as
        // this table's own map finds it.
        let same = listed == self.peers.len()
            && self.peers.iter().all(|(_, peer)| {
                let addr = peer.addr();
                shared.slot(directory.position_of_addr(addr)) == self.by_addr(addr)
            });
        if !same {
            return false;
        }
        self.by_id = IdMap::default();
        self.by_addr = HashMap::new();
        self.ips = HashMap::default();
        self.shared = Some(shared);
        // A shared directory means a table built once from a full list: give back what
        // growing by doubling left over (up to 40% of the biggest table at 10,000 peers).
        self.peers.shrink_to_fit();
        self.generations.shrink_to_fit();
        self.roster.shrink_to_fit();
        true
    }

    /// Back to this table's own maps, before a change the directory does not list.
    fn unshare(&mut self) {
        if self.shared.take().is_none() {
            return;
        }
        for (key, peer) in self.peers.iter() {
            self.by_id.insert(peer.id(), key);
            self.by_addr.insert(peer.addr(), key);
            *self.ips.entry(peer.addr().ip().to_canonical()).or_insert(0) += 1;
        }
    }

    /// Adds a peer, or returns the one with this identity. Naming this node itself adds
    /// nothing but places it here in the listing, so a mesh built from a list of all nodes
    /// lists them in that order.
    /// The address is kept in its canonical form ([`crate::core::addr::canonical`]).
    pub(crate) fn insert(&mut self, name: &str, addr: SocketAddr) -> Option<PeerId> {
        let addr = canonical(addr);
        let id = NodeId::from_name(name);
        if id == self.own {
            self.roster.retain(|m| *m != Member::OWN);
            self.roster.push(Member::OWN);
            return None;
        }
        if let Some(key) = self.by_id(id) {
            return Some(self.id_of(key));
        }
        self.unshare();
        let key = self.peers.insert(Peer::new(name, addr));
        self.slot_bound = self.slot_bound.max(key + 1);
        self.by_id.insert(id, key);
        self.by_addr.insert(addr, key);
        *self.ips.entry(addr.ip().to_canonical()).or_insert(0) += 1;
        self.roster.push(Member::peer(key));
        Some(self.id_of(key))
    }

    /// Removes a peer: its slot's generation moves on, so `id` is refused from now on.
    pub(crate) fn remove(&mut self, id: PeerId) -> Option<(usize, Peer)> {
        let key = self.key(id)?;
        self.unshare();
        let peer = self.peers.remove(key);
        if self.generations.len() <= key {
            self.generations.resize(key + 1, 0);
        }
        self.generations[key] = self.generations[key].wrapping_add(1);
        self.by_id.remove(&peer.id());
        if self.by_addr.get(&peer.addr()) == Some(&key) {
            self.by_addr.remove(&peer.addr());
        }
        self.forget_ip(peer.addr().ip());
        self.roster.retain(|m| *m != Member::peer(key));
        Some((key, peer))
    }

    /// Gives the peer in slot `key` another address; its old one is no longer its own (nor
    /// allowed, unless another peer has it). Returns the old address.
    pub(crate) fn set_addr(&mut self, key: usize, addr: SocketAddr) -> Option<SocketAddr> {
        let old = self.peers.get(key)?.addr();
        if old == addr {
            return Some(old);
        }
        self.unshare();
        if self.by_addr.get(&old) == Some(&key) {
            self.by_addr.remove(&old);
        }
        self.forget_ip(old.ip());
        self.by_addr.insert(addr, key);
        *self.ips.entry(addr.ip().to_canonical()).or_insert(0) += 1;
        self.peers[key].set_addr(addr);
        Some(old)
    }

    fn forget_ip(&mut self, ip: IpAddr) {
        let ip = ip.to_canonical();
        if let Some(count) = self.ips.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.ips.remove(&ip);
            }
        }
    }

    /// The slot of `id`, if that peer is still in the table.
    pub(crate) fn key(&self, id: PeerId) -> Option<usize> {
        let key = id.index();
        (self.peers.contains(key) && self.generation(key) == id.generation).then_some(key)
    }

    /// The id of the peer in slot `key` (which must hold one).
    pub(crate) fn id_of(&self, key: usize) -> PeerId {
        PeerId {
            index: key as u32,
            generation: self.generation(key),
        }
    }

    fn generation(&self, key: usize) -> u32 {
        self.generations.get(key).copied().unwrap_or(0)
    }

    pub(crate) fn get(&self, key: usize) -> Option<&Peer> {
        self.peers.get(key)
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut Peer> {
        self.peers.get_mut(key)
    }

    /// Peers by slot.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &Peer)> + '_ {
        self.peers.iter()
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut Peer)> + '_ {
        self.peers.iter_mut()
    }

    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// One more than the largest slot ever used: the width of per-slot tables.
    pub(crate) fn slot_bound(&self) -> usize {
        self.slot_bound
    }

    pub(crate) fn by_id(&self, id: NodeId) -> Option<usize> {
        match &self.shared {
            Some(shared) => shared.slot(shared.directory.position_of_id(id)),
            None => self.by_id.get(&id).copied(),
        }
    }

    pub(crate) fn by_addr(&self, addr: SocketAddr) -> Option<usize> {
        match &self.shared {
            Some(shared) => shared.slot(shared.directory.position_of_addr(addr)),
            None => self.by_addr.get(&addr).copied(),
        }
    }

    /// Whether `ip` is some peer's configured address.
    pub(crate) fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match &self.shared {
            Some(shared) => shared.directory.ip_count(ip) > u32::from(shared.own_ip == Some(ip)),
            None => self.ips.contains_key(&ip),
        }
    }

    /// The nodes in listing order.
    pub(crate) fn roster(&self) -> &[Member] {
        &self.roster
    }
}

impl std::ops::Index<usize> for PeerTable {
    type Output = Peer;
    fn index(&self, key: usize) -> &Peer {
        &self.peers[key]
    }
}

impl std::ops::IndexMut<usize> for PeerTable {
    fn index_mut(&mut self, key: usize) -> &mut Peer {
        &mut self.peers[key]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_removed_peers_id_never_names_the_peer_that_reuses_its_slot() {
        let mut table = PeerTable::new(NodeId::from_name("me"));
        let a = table.insert("a", addr(1)).expect("a");
        let b = table.insert("b", addr(2)).expect("b");
        assert_eq!(
            table.remove(a).map(|(k, p)| (k, p.name().to_owned())),
            Some((0, "a".into()))
        );
        assert_eq!(table.key(a), None);
        assert!(table.remove(a).is_none(), "removing twice");
        let c = table.insert("c", addr(3)).expect("c");
        assert_eq!(c.index(), a.index(), "the slot is reused");
        assert_ne!(c, a);
        assert_eq!(table.key(a), None);
        assert_eq!(table.key(c), Some(0));
        assert_eq!(table.key(b), Some(1));
        assert_eq!(table.by_id(NodeId::from_name("a")), None);
        assert!(table.allows_ip(addr(9).ip()), "b and c share the IP");
    }

    #[test]
    fn the_listing_follows_the_order_nodes_were_named_in() {
        let mut table = PeerTable::new(NodeId::from_name("me"));
        let a = table.insert("a", addr(1)).expect("a");
        assert_eq!(table.insert("me", addr(2)), None);
        table.insert("b", addr(3));

        assert_eq!(
            table.roster(),
            &[Member::peer(0), Member::OWN, Member::peer(1)]
        );
        table.remove(a);
        assert_eq!(table.roster(), &[Member::OWN, Member::peer(1)]);
        assert_eq!(
            table.insert("b", addr(3)),
            Some(table.id_of(1)),
            "added once"
        );
    }

    #[test]
    fn a_moved_peer_is_found_and_allowed_at_its_new_address_only() {
        let mut table = PeerTable::new(NodeId::from_name("me"));
        let a = table.insert("a", addr(1)).expect("a");
        let moved = SocketAddr::from(([127, 0, 0, 2], 1));
        assert_eq!(table.set_addr(0, moved), Some(addr(1)));
        assert_eq!(table.by_addr(moved), Some(0));
        assert_eq!(table.by_addr(addr(1)), None);
        assert!(table.allows_ip(moved.ip()));
        assert!(!table.allows_ip(addr(1).ip()));
        assert_eq!(table.key(a), Some(0), "the same peer");
    }

    #[test]
    fn a_shared_directory_finds_what_the_tables_own_maps_found_until_a_change() {
        let mut table = PeerTable::new(NodeId::from_name("me"));
        table.insert("a", addr(1));
        table.insert("me", SocketAddr::from(([127, 0, 0, 9], 9)));
        table.insert("b", addr(2));
        let other = Directory::new([("a", addr(1)), ("b", addr(2)), ("x", addr(3))]);
        assert!(!table.share(&other), "x is no peer of this table");
        let moved = Directory::new([("a", addr(1)), ("b", addr(5))]);
        assert!(!table.share(&moved), "b is elsewhere");
        let dir = Directory::new([
            ("a", addr(1)),
            ("me", SocketAddr::from(([127, 0, 0, 9], 9))),
            ("b", addr(2)),
        ]);
        assert!(table.share(&dir));
        assert!(table.by_id.is_empty(), "its own maps are freed");
        assert_eq!(
            table.peers.capacity(),
            2,
            "what doubling left over is given back"
        );
        assert_eq!(table.by_id(NodeId::from_name("b")), Some(1));
        assert_eq!(table.by_id(NodeId::from_name("me")), None);
        assert_eq!(table.by_addr(addr(1)), Some(0));
        assert_eq!(table.by_addr(SocketAddr::from(([127, 0, 0, 9], 9))), None);
        assert!(table.allows_ip(addr(1).ip()));
        assert!(
            !table.allows_ip("127.0.0.9".parse().expect("ip")),
            "this node's own IP is no peer's"
        );
        table.insert("c", SocketAddr::from(([127, 0, 0, 3], 3)));
        assert!(
            table.shared.is_none(),
            "a change the directory does not list"
        );
        assert_eq!(table.by_id(NodeId::from_name("b")), Some(1));
        assert_eq!(table.by_addr(addr(2)), Some(1));
        assert_eq!(table.by_id(NodeId::from_name("c")), Some(2));
        assert!(table.allows_ip("127.0.0.3".parse().expect("ip")));
        assert!(!table.allows_ip("127.0.0.9".parse().expect("ip")));
    }

    #[test]
    fn a_table_built_in_another_order_than_its_directory_still_finds_each_peer() {
        let mut table = PeerTable::new(NodeId::from_name("me"));
        table.insert("b", addr(2));
        table.insert("a", addr(1));
        let dir = Directory::new([
            ("a", addr(1)),
            ("me", SocketAddr::from(([127, 0, 0, 9], 9))),
            ("b", addr(2)),
        ]);
        assert!(table.share(&dir));
        assert!(
            table.shared.as_ref().is_some_and(|s| s.slots.is_some()),
            "out of order: a slot table is kept"
        );
        assert_eq!(table.by_id(NodeId::from_name("a")), Some(1));
        assert_eq!(table.by_addr(addr(2)), Some(0));
        assert_eq!(table.by_id(NodeId::from_name("me")), None);
    }

    #[test]
    fn a_table_that_never_lost_a_peer_keeps_no_generations() {
        let mut table = PeerTable::new(NodeId::from_name("me"));
        let a = table.insert("a", addr(1)).expect("a peer");
        let b = table.insert("b", addr(2)).expect("a peer");
        assert!(table.generations.is_empty());
        assert_eq!(table.slot_bound(), 2);
        assert!(table.remove(a).is_some());
        assert_eq!(table.slot_bound(), 2, "a slot once used still counts");
        assert_eq!(table.key(b), Some(1), "the other peer keeps its id");
        assert_eq!(table.key(a), None);
    }

    #[test]
    fn an_address_shared_by_two_peers_stays_allowed_until_both_are_gone() {
        let mut table = PeerTable::new(NodeId::from_name("me"));
        let a = table.insert("a", addr(1)).expect("a");
        let b = table.insert("b", addr(2)).expect("b");
        table.remove(a);
        assert!(table.allows_ip(addr(1).ip()));
        table.remove(b);
        assert!(!table.allows_ip(addr(1).ip()));
    }
}
