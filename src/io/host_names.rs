//! The peers listed by host name: when each is resolved again, the last good address of
//! each, and which have never resolved (`unresolved` in the reports).
//!
//! Pure bookkeeping with time as an argument: the daemon asks [`HostNames::due`] what to
//! resolve, hands the thread's answers to [`HostNames::answer`] and applies the
//! [`NameChange`]s to the core. A name is resolved again every `resolve_interval_ms`, at
//! once when its peer turns dead or unreachable ([`HostNames::resolve_soon`]), and, while it
//! has never resolved, every [`UNRESOLVED_RETRY`] at most. A failed lookup keeps the last
//! good address: heartbeats go on to it.

use crate::io::resolver::{Answer, Lookup};
use log::{info, warn};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often a name that has never resolved is tried again, at most (the resolve interval
/// when that is shorter).
pub const UNRESOLVED_RETRY: Duration = Duration::from_secs(5);

/// One peer's host name and what is known of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPeer {
    /// The host name, as the config gives it.
    pub host: String,
    /// The peer's UDP port.
    pub port: u16,
    /// The last address it resolved to; `None`: never resolved (the peer is `unresolved`).
    pub addr: Option<SocketAddr>,
    /// Why the last lookup failed, until one succeeds.
    pub error: Option<String>,
    /// When to resolve it next.
    next: Instant,
    /// A lookup is on its way.
    asked: bool,
}

/// What an answer changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameChange {
    /// The peer's name resolved for the first time: add it to the core at `addr`.
    Resolved {
        /// The peer's name.
        peer: String,
        /// Its address.
        addr: SocketAddr,
    },
    /// The peer's name now resolves to another address: point the core there.
    Moved {
        /// The peer's name.
        peer: String,
        /// Its new address.
        addr: SocketAddr,
    },
}

/// Every peer listed by host name, by peer name.
#[derive(Clone, Debug)]
pub struct HostNames {
    interval: Duration,
    /// Whether the UDP socket is IPv6 (dual-stack): it then reaches both families.
    v6_socket: bool,
    peers: BTreeMap<String, NamedPeer>,
}

impl HostNames {
    /// None yet; names are resolved again every `interval`, and answers are read for a
    /// socket of the family `v6_socket` says.
    pub fn new(interval: Duration, v6_socket: bool) -> HostNames {
        HostNames {
            interval,
            v6_socket,
            peers: BTreeMap::new(),
        }
    }

    /// Tracks peer `peer` listed as `host:port`, resolved (at start) to `addr` or not
    /// (`error` says why). A resolved name is next resolved one interval from `now`, an
    /// unresolved one at once. Tracking it again replaces what was known.
    pub fn track(
        &mut self,
        peer: &str,
        host: &str,
        port: u16,
        addr: Option<SocketAddr>,
        error: Option<String>,
        now: Instant,
    ) {
        let next = if addr.is_some() {
            now + self.interval
        } else {
            now
        };
        self.peers.insert(
            peer.to_owned(),
            NamedPeer {
                host: host.to_owned(),
                port,
                addr,
                error,
                next,
                asked: false,
            },
        );
    }

    /// Stops tracking `peer` (removed, or now listed by IP address); what was known of it.
    pub fn forget(&mut self, peer: &str) -> Option<NamedPeer> {
        self.peers.remove(peer)
    }

    /// The peer's entry, if it is listed by name.
    pub fn get(&self, peer: &str) -> Option<&NamedPeer> {
        self.peers.get(peer)
    }

    /// Resolves every name again every `interval` from now on (the next turns keep their
    /// times, unless the new interval brings them closer).
    pub fn set_interval(&mut self, interval: Duration, now: Instant) {
        self.interval = interval;
        for entry in self.peers.values_mut() {
            entry.next = entry.next.min(now + interval);
        }
    }

    /// How often names are resolved again.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Resolves `peer`'s name at the next turn (its peer turned dead or unreachable: the VM
    /// may have come back elsewhere). No-op for a peer listed by IP address.
    pub fn resolve_soon(&mut self, peer: &str, now: Instant) {
        if let Some(entry) = self.peers.get_mut(peer) {
            entry.next = entry.next.min(now);
        }
    }

    /// The lookups due at `now`; each is then on its way until [`HostNames::answer`] (or
    /// [`HostNames::not_asked`]) is given its answer.
    pub fn due(&mut self, now: Instant) -> Vec<Lookup> {
        let mut lookups: Vec<Lookup> = Vec::new();
        for entry in self.peers.values_mut() {
            if !entry.asked && entry.next <= now {
                entry.asked = true;
                let lookup = Lookup {
                    host: entry.host.clone(),
                    port: entry.port,
                };
                if !lookups.contains(&lookup) {
                    lookups.push(lookup);
                }
            }
        }
        lookups
    }

    /// `lookup` could not be queued: it is due again after one retry period.
    pub fn not_asked(&mut self, lookup: &Lookup, now: Instant) {
        let retry = self.interval.min(UNRESOLVED_RETRY);
        for entry in self.matching(lookup) {
            entry.asked = false;
            entry.next = now + retry;
        }
    }

    /// When the next lookup is due, if any is not on its way.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter(|e| !e.asked)
            .map(|e| e.next)
            .min()
    }

    /// Takes the resolver's answer: for every peer listed by that name and port, what
    /// changed. A failure keeps the last good address; a name that resolves to the address
    /// it had, or still to one of its addresses, changes nothing.
    pub fn answer(&mut self, answer: &Answer, now: Instant) -> Vec<NameChange> {
        let (interval, v6_socket) = (self.interval, self.v6_socket);
        let mut changes = Vec::new();
        for (name, entry) in self.peers.iter_mut() {
            if entry.host != answer.lookup.host || entry.port != answer.lookup.port {
                continue;
            }
            entry.asked = false;
            let picked = match &answer.result {
                Ok(addrs) => pick(addrs, entry.addr, v6_socket),
                Err(e) => Err(e.clone()),
            };
            match picked {
                Ok(addr) => {
                    entry.next = now + interval;
                    entry.error = None;
                    match entry.addr.replace(addr) {
                        None => {
                            info!("{name}: {} resolved to {addr}", entry.host);
                            changes.push(NameChange::Resolved {
                                peer: name.clone(),
                                addr,
                            });
                        }
                        Some(old) if old != addr => {
                            info!("{name}: {} now resolves to {addr} (was {old})", entry.host);
                            changes.push(NameChange::Moved {
                                peer: name.clone(),
                                addr,
                            });
                        }
                        Some(_) => {}
                    }
                }
                Err(why) => {
                    let kept = entry
                        .addr
                        .map_or("the peer stays unresolved".to_string(), |a| {
                            format!("keeping {a}")
                        });
                    if entry.error.as_deref() != Some(why.as_str()) {
                        warn!("{name}: cannot resolve {}: {why}; {kept}", entry.host);
                    }
                    entry.error = Some(why);
                    entry.next = now
                        + if entry.addr.is_some() {
                            interval
                        } else {
                            interval.min(UNRESOLVED_RETRY)
                        };
                }
            }
        }
        changes
    }

    /// The peers whose names have never resolved, by name, with their entries.
    pub fn unresolved(&self) -> impl Iterator<Item = (&str, &NamedPeer)> + '_ {
        self.peers
            .iter()
            .filter(|(_, e)| e.addr.is_none())
            .map(|(n, e)| (n.as_str(), e))
    }

    /// Lookups on their way.
    pub fn asked(&self) -> usize {
        self.peers.values().filter(|e| e.asked).count()
    }

    fn matching<'a>(&'a mut self, lookup: &'a Lookup) -> impl Iterator<Item = &'a mut NamedPeer> {
        self.peers
            .values_mut()
            .filter(move |e| e.host == lookup.host && e.port == lookup.port)
    }
}

/// The address to use of those a name resolved to: the current one while it is still among
/// them (round-robin DNS must not move a peer every turn), else the first the socket can
/// reach (an IPv4 socket reaches only IPv4; an IPv6 one, dual-stack, both).
fn pick(
    addrs: &[SocketAddr],
    current: Option<SocketAddr>,
    v6_socket: bool,
) -> Result<SocketAddr, String> {
    let canonical = |a: &SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let reachable: Vec<SocketAddr> = addrs
        .iter()
        .map(canonical)
        .filter(|a| v6_socket || a.is_ipv4())
        .collect();
    if let Some(current) = current.filter(|c| reachable.contains(c)) {
        return Ok(current);
    }
    reachable.first().copied().ok_or_else(|| {
        let listed: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
        format!(
            "only IPv6 addresses ({}), and this node's socket is IPv4 (bind [::] to reach them)",
            listed.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(host: &str, result: Result<Vec<&str>, &str>) -> Answer {
        Answer {
            lookup: Lookup {
                host: host.into(),
                port: 1313,
            },
            result: result
                .map(|v| v.iter().map(|a| a.parse().expect("addr")).collect())
                .map_err(str::to_owned),
        }
    }

    #[test]
    fn a_name_is_resolved_every_interval_and_at_once_when_its_peer_is_dead() {
        let t0 = Instant::now();
        let interval = Duration::from_secs(60);
        let mut names = HostNames::new(interval, false);
        let addr: SocketAddr = "10.0.0.2:1313".parse().expect("addr");
        names.track("b", "vm-b", 1313, Some(addr), None, t0);
        assert_eq!(names.poll_timeout(), Some(t0 + interval));
        assert!(names.due(t0 + Duration::from_secs(59)).is_empty());
        let due = names.due(t0 + interval);
        assert_eq!(due.len(), 1);
        assert!(
            names.due(t0 + interval).is_empty(),
            "on its way: asked once"
        );
        assert_eq!(names.poll_timeout(), None);
        let t1 = t0 + interval;
        assert!(names
            .answer(&answer("vm-b", Ok(vec!["10.0.0.2:1313"])), t1)
            .is_empty());
        names.resolve_soon("b", t1 + Duration::from_secs(1));
        assert_eq!(names.due(t1 + Duration::from_secs(1)).len(), 1);
    }

    #[test]
    fn a_moved_name_is_followed_and_a_failed_lookup_keeps_the_last_good_address() {
        let t0 = Instant::now();
        let mut names = HostNames::new(Duration::from_secs(1), false);
        names.track("b", "vm-b", 1313, "10.0.0.2:1313".parse().ok(), None, t0);
        names.due(t0 + Duration::from_secs(1));
        let moved = names.answer(&answer("vm-b", Ok(vec!["10.0.0.9:1313"])), t0);
        assert_eq!(
            moved,
            vec![NameChange::Moved {
                peer: "b".into(),
                addr: "10.0.0.9:1313".parse().expect("addr")
            }]
        );
        names.due(t0 + Duration::from_secs(2));
        assert!(names
            .answer(&answer("vm-b", Err("timed out")), t0)
            .is_empty());
        let entry = names.get("b").expect("tracked");
        assert_eq!(entry.addr, "10.0.0.9:1313".parse().ok(), "kept");
        assert_eq!(entry.error.as_deref(), Some("timed out"));
    }

    #[test]
    fn an_unresolved_name_is_retried_soon_and_resolves_once() {
        let t0 = Instant::now();
        let mut names = HostNames::new(Duration::from_secs(60), false);
        names.track("b", "vm-b", 1313, None, Some("no such host".into()), t0);
        assert_eq!(names.unresolved().count(), 1);
        assert_eq!(names.due(t0).len(), 1);
        names.answer(&answer("vm-b", Err("no such host")), t0);
        assert_eq!(names.poll_timeout(), Some(t0 + UNRESOLVED_RETRY));
        names.due(t0 + UNRESOLVED_RETRY);
        let first = names.answer(&answer("vm-b", Ok(vec!["10.0.0.2:1313"])), t0);
        assert!(matches!(first.as_slice(), [NameChange::Resolved { .. }]));
        assert_eq!(names.unresolved().count(), 0);
    }

    #[test]
    fn the_current_address_is_kept_while_listed_and_the_socket_family_is_honoured() {
        let a: SocketAddr = "10.0.0.2:1".parse().expect("addr");
        let b: SocketAddr = "10.0.0.3:1".parse().expect("addr");
        let v6: SocketAddr = "[fd00::2]:1".parse().expect("addr");
        assert_eq!(pick(&[a, b], Some(b), false), Ok(b));
        assert_eq!(pick(&[v6, a], None, false), Ok(a));
        assert_eq!(pick(&[v6, a], None, true), Ok(v6));
        assert!(pick(&[v6], None, false).is_err());
        let mapped: SocketAddr = "[::ffff:10.0.0.2]:1".parse().expect("addr");
        assert_eq!(
            pick(&[mapped], None, false),
            Ok(a),
            "a mapped address is IPv4"
        );
    }
}
