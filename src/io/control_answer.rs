//! What a node answers to the control requests with application data (`send`, `tags`,
//! `query`, `nearest`), and how the core's events complete the requests waiting for them.
//! [`crate::io::control::answer`] sends those requests here.

use crate::core::{Event, Mesh};
use crate::io::control::Reply;
use crate::io::control_pending::Pending;
use crate::io::control_protocol::{
    error_line, ok_line, QueryRequest, SendRequest, TagChange, TagMap,
};
use crate::io::driver::Node;
use crate::report::nearest::nearest as pick_nearest;
use crate::report::status::StatusReport;
use std::time::Instant;

/// `send`: CORE-WIRING (needs `Mesh::send`/`broadcast` of the application-data core).
pub fn send(_node: &mut Node, _send: SendRequest, _now: Instant) -> Reply {
    Reply::Text(error_line(
        "send needs the application-data core, not in this build",
    ))
}

/// `tags`: CORE-WIRING (needs `Mesh::tags`/`set_tags`).
pub fn tags(_node: &mut Node, _change: TagChange) -> Reply {
    Reply::Text(error_line(
        "tags need the application-data core, not in this build",
    ))
}

/// `query`: CORE-WIRING (needs `Mesh::query`).
pub fn query(_node: &mut Node, _query: QueryRequest, _now: Instant) -> Reply {
    Reply::Text(error_line(
        "query needs the application-data core, not in this build",
    ))
}

/// `nearest`: the alive peers with the lowest RTT median among those carrying `tags`.
pub fn nearest(node: &mut Node, tags: &TagMap, now: Instant) -> Reply {
    let report = StatusReport::new(node.mesh(), now, None);
    Reply::Text(ok_line("nearest", &pick_nearest(&report, tags)))
}

/// Lets one core event complete a waiting request. CORE-WIRING.
pub fn feed(_pending: &mut Pending, _mesh: &Mesh, _event: &Event) {}
