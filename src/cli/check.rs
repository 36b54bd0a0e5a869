//! `peermesh check`: validate the config and say what this node would do.

use super::args::CheckArgs;
use super::node::this_node;
use super::{emit, Failure};
use peermesh::config::default_hostname;
use peermesh::io::daemon;

/// Prints who this node is, what it binds, its keyring and its peers; starts nothing.
pub(super) fn check(args: CheckArgs) -> Result<(), Failure> {
    let (config, me) = this_node(&args.node)?;
    let node = &config.nodes[me];
    let own = config
        .resolve(me)
        .map_err(|e| Failure::Config(e.to_string()))?;
    let how = match &args.node.name {
        Some(_) => "from --name".to_owned(),
        None => format!("from hostname {:?}", default_hostname()),
    };
    // Written as a whole at the end: an error half-way prints no half report.
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!("config {} is valid", args.node.config.display()));
    line(format!("this node: {} ({how})", node.name));
    line(format!(
        "binds: udp {own} (the wildcard address with that port if {} is not local)",
        own.ip()
    ));
    line(format!(
        "heartbeat every {} ms; suspect after {} ms, dead after {} ms; datagrams up to {} bytes",
        config.heartbeat_interval.as_millis(),
        config.suspect_after.as_millis(),
        config.dead_after.as_millis(),
        config.max_datagram
    ));
    match daemon::load_keyring(&config) {
        Ok(Some(ring)) => line(format!(
            "keyring: {} keys, sealing with key {}",
            ring.keys().len(),
            ring.primary().id_hex()
        )),
        Ok(None) => {
            line("keyring: none: the mesh is NOT authenticated (see docs/SECURITY.md)".to_owned())
        }
        Err(e) => return Err(Failure::Config(e.to_string())),
    }
    line(format!("peers ({}):", config.nodes.len() - 1));
    for (i, peer) in config.nodes.iter().enumerate().filter(|(i, _)| *i != me) {
        let addr = config
            .resolve(i)
            .map(|a| a.to_string())
            .map_err(|e| Failure::Config(e.to_string()))?;
        line(format!("  {:<20} {addr}", peer.name));
    }
    emit(out)
}
