//! `peermesh check`: validate the config and say what this node would do.

use super::args::CheckArgs;
use super::node::this_node;
use super::{emit, Failure};
use peermesh::config::default_hostname;
use peermesh::core::addr::{canonical, Families};
use peermesh::io::{daemon, driver, handlers};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// Prints who this node is, what it binds, its keyring and its peers; starts nothing.
/// Every check runs before anything is printed: a fault prints only what is wrong (exit 2),
/// never a "valid" line first.
pub(super) fn check(args: CheckArgs) -> Result<(), Failure> {
    let (config, path, me) = this_node(&args.node)?;
    let node = &config.nodes[me];
    let own = config
        .resolve(me)
        .map_err(|e| Failure::Config(e.to_string()))?;
    let ring = daemon::load_keyring(&config).map_err(|e| Failure::Config(e.to_string()))?;
    // Every peer's name is resolved and reported; one that does not resolve is a warning
    // (the node runs, reports it `unresolved` and retries), not a fault of the config.
    let mut peers = Vec::new();
    let mut resolved = Vec::new();
    for (i, peer) in config.nodes.iter().enumerate().filter(|(i, _)| *i != me) {
        let found = config.resolve(i);
        if let Ok(addr) = &found {
            resolved.push((peer.name.as_str(), *addr));
        }
        let shown = match (found, peer.literal_addr()) {
            (Ok(addr), Some(_)) => canonical(addr).to_string(),
            (Ok(addr), None) => format!("{} ({})", canonical(addr), peer.host),
            (Err(e), _) => format!(
                "WARNING: {}: {}; the node runs and retries it (unresolved)",
                peer.host,
                e.resolve_reason()
            ),
        };
        peers.push((peer.name.as_str(), shown));
    }
    let how = match &args.node.name {
        Some(_) => "from --name".to_owned(),
        None => format!("from hostname {:?}", default_hostname()),
    };
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!("config {} is valid", path.display()));
    line(format!("this node: {} ({how})", node.name));
    let bound = match args.bind {
        Some(bind) => {
            line(format!("binds: udp {bind} (from --bind)"));
            bind
        }
        None => match binds(own) {
            Binds::Own => {
                line(format!("binds: udp {own}"));
                own
            }
            Binds::Wildcard(wildcard) => {
                line(format!(
                    "binds: udp {wildcard} ({} is not an address of this machine)",
                    own.ip()
                ));
                wildcard
            }
        },
    };
    // `run` makes every IPv6 socket dual-stack: `[::]` reaches IPv4 peers too.
    let families = Families::of_socket(bound, true);
    let family_warnings =
        driver::family_warnings(bound, families, resolved.iter().copied(), ring.is_some());
    line(format!(
        "heartbeat every {} ms; suspect after {} ms, dead after {} ms; datagrams up to {} bytes",
        config.heartbeat_interval.as_millis(),
        config.suspect_after.as_millis(),
        config.dead_after.as_millis(),
        config.max_datagram
    ));
    line(format!(
        "host names resolved again every {} ms, and at once when their peer turns dead",
        config.resolve_interval.as_millis()
    ));
    match ring {
        Some(ring) => {
            let n = ring.keys().len();
            line(format!(
                "keyring: {n} {}, sealing with key {}",
                if n == 1 { "key" } else { "keys" },
                ring.primary().id_hex()
            ))
        }
        None => {
            line("keyring: none: the mesh is NOT authenticated (see docs/SECURITY.md)".to_owned())
        }
    }
    line(if node.tags.is_empty() {
        "tags: none".to_owned()
    } else {
        let tags: Vec<String> = node
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        format!("tags: {}", tags.join(" "))
    });
    // Not a fault: a node whose handler cannot run still runs (and says so in its log).
    line(match &node.handler {
        None => "event handler: none".to_owned(),
        Some(path) => match handlers::check_program(path) {
            Ok(()) => format!("event handler: {}", path.display()),
            Err(e) => format!("event handler: WARNING: {e}; the node runs without it"),
        },
    });
    line(format!("peers ({}):", peers.len()));
    for (name, addr) in peers {
        line(format!("  {name:<20} {addr}"));
    }
    for warning in family_warnings {
        line(format!("WARNING: {warning}"));
    }
    emit(out)
}

/// What `run` would bind for the node's own address.
enum Binds {
    /// The address itself.
    Own,
    /// The wildcard address of its family, same port: the address is not this machine's.
    Wildcard(SocketAddr),
}

/// Decides as `run` does: an address the kernel will not bind here (`EADDRNOTAVAIL`) is
/// replaced by the wildcard address. Probed with port 0, so a node already running on the
/// port does not change the answer.
fn binds(own: SocketAddr) -> Binds {
    match UdpSocket::bind(SocketAddr::new(own.ip(), 0)) {
        Err(e) if e.kind() == ErrorKind::AddrNotAvailable => {
            let any = match own.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            Binds::Wildcard(SocketAddr::new(any, own.port()))
        }
        _ => Binds::Own,
    }
}
