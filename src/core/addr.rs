//! Socket addresses as the mesh compares and shows them.
//!
//! A dual-stack IPv6 socket (bound to `[::]`) receives IPv4 datagrams with the IPv4-mapped
//! source `[::ffff:a.b.c.d]:port`. That is the same peer as the configured `a.b.c.d:port`:
//! the core keys, compares and reports every address in its canonical form, the plain IPv4
//! one ([`canonical`]), so a node behaves and reads the same whichever family it binds.
//! Turning a canonical IPv4 destination back into the mapped form a v6 socket sends to is
//! the business of the I/O layer's driver.

use std::net::{IpAddr, SocketAddr};

/// `addr` with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) turned into the plain IPv4
/// one, port kept; any other address unchanged. (An IPv4-compatible `::a.b.c.d` is left as
/// IPv6: it is deprecated and no socket produces it.)
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// The address families a node's socket can send to. A socket bound to an IPv4 address
/// reaches only IPv4 peers; one bound to the IPv6 wildcard `[::]` with `IPV6_V6ONLY` off
/// (dual-stack) reaches both; one bound to a specific IPv6 address reaches IPv6 only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Families {
    /// IPv4 peers (for a v6 socket: through IPv4-mapped addresses).
    pub ipv4: bool,
    /// IPv6 peers.
    pub ipv6: bool,
}

impl Families {
    /// Both families.
    pub const BOTH: Families = Families {
        ipv4: true,
        ipv6: true,
    };

    /// What a socket bound to `local` reaches; `dual_stack` says whether an IPv6 wildcard
    /// socket also takes IPv4 (`IPV6_V6ONLY` off).
    pub fn of_socket(local: SocketAddr, dual_stack: bool) -> Families {
        match canonical(local).ip() {
            IpAddr::V4(_) if local.is_ipv6() => Families::BOTH, // bound to a mapped address
            IpAddr::V4(_) => Families {
                ipv4: true,
                ipv6: false,
            },
            IpAddr::V6(ip) => Families {
                ipv4: dual_stack && ip.is_unspecified(),
                ipv6: true,
            },
        }
    }

    /// Whether a peer at `addr` can be sent to.
    pub fn reaches(self, addr: SocketAddr) -> bool {
        match canonical(addr) {
            SocketAddr::V4(_) => self.ipv4,
            SocketAddr::V6(_) => self.ipv6,
        }
    }
}

/// "IPv4" or "IPv6", the family of `addr` as a person reads it (mapped addresses are IPv4).
pub fn family_name(addr: SocketAddr) -> &'static str {
    match canonical(addr) {
        SocketAddr::V4(_) => "IPv4",
        SocketAddr::V6(_) => "IPv6",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn mapped_addresses_become_plain_ipv4_and_others_stay() {
        assert_eq!(canonical(a("[::ffff:127.0.0.1]:1313")), a("127.0.0.1:1313"));
        assert_eq!(canonical(a("[::ffff:10.1.2.3]:9")), a("10.1.2.3:9"));
        assert_eq!(canonical(a("127.0.0.1:1313")), a("127.0.0.1:1313"));
        assert_eq!(canonical(a("[::1]:1313")), a("[::1]:1313"));
        assert_eq!(canonical(a("[fd00:14::2]:7")), a("[fd00:14::2]:7"));
        // IPv4-compatible (deprecated) is not mapped: left alone.
        assert_eq!(canonical(a("[::7f00:1]:1")), a("[::7f00:1]:1"));
    }

    #[test]
    fn a_socket_reaches_the_families_its_binding_allows() {
        let v4 = Families::of_socket(a("0.0.0.0:1"), true);
        assert!(v4.reaches(a("127.0.0.1:2")));
        assert!(v4.reaches(a("[::ffff:127.0.0.1]:2")), "mapped is IPv4");
        assert!(!v4.reaches(a("[::1]:2")));
        assert_eq!(Families::of_socket(a("[::]:1"), true), Families::BOTH);
        let v6only = Families::of_socket(a("[::]:1"), false);
        assert!(!v6only.reaches(a("127.0.0.1:2")) && v6only.reaches(a("[::1]:2")));
        let lo6 = Families::of_socket(a("[::1]:1"), true);
        assert!(
            !lo6.reaches(a("127.0.0.1:2")),
            "a specific v6 address is v6 only"
        );
        assert_eq!(family_name(a("[::ffff:1.2.3.4]:5")), "IPv4");
        assert_eq!(family_name(a("[::1]:5")), "IPv6");
    }
}
