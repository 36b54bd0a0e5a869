//! Readiness for systemd (`Type=notify`): `READY=1` once the node's sockets are bound,
//! `RELOADING=1` around a reload, `STOPPING=1` when it leaves.
//!
//! The protocol of sd_notify(3) by hand: one datagram to the `AF_UNIX` socket named by
//! `NOTIFY_SOCKET` (a path, or an abstract name written `@name`). It is a single
//! non-blocking `sendto` of a few bytes, so a crate would add nothing but a dependency.
//! Without `NOTIFY_SOCKET` (not started by systemd) every call does nothing; a failed send
//! is logged at debug and never stops the node.

use log::debug;
use std::os::unix::net::UnixDatagram;

/// The node is ready: its UDP and control sockets are bound (or a reload is done).
pub fn ready() {
    send("READY=1");
}

/// The node is reloading its config. Carries `MONOTONIC_USEC`, as `Type=notify-reload`
/// asks, so systemd can tell this reload from an earlier one.
pub fn reloading() {
    let usec = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000
            + u64::try_from(t.tv_nsec()).unwrap_or(0) / 1000
    });
    send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}

/// The node is leaving the mesh and will exit.
pub fn stopping() {
    send("STOPPING=1");
}

/// Sends `state` to `NOTIFY_SOCKET`, if there is one.
fn send(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let outcome = UnixDatagram::unbound().and_then(|socket| {
        socket.set_nonblocking(true)?;
        let bytes = target.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &addr)
            }
            None => socket.send_to(state.as_bytes(), &target),
        }
    });
    match outcome {
        Ok(_) => debug!("told systemd {}", state.replace('\n', " ")),
        Err(e) => debug!("cannot tell systemd {state:?} at {target:?}: {e}"),
    }
}
