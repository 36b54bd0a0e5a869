//! What a node answers to the control requests with application data (`send`, `tags`,
//! `query`, `nearest`), and how the core's events complete the requests waiting for them.
//! [`crate::io::control::answer`] sends those requests here.

use crate::core::tags::holds_all;
use crate::core::{Delivery, Event, Mesh, PeerId, QueryFilter};
use crate::io::control::Reply;
use crate::io::control_pending::{Pending, PendingNearest, PendingQuery, PendingSend, GRACE};
use crate::io::control_protocol::{
    error_line, ok_line, QueryRequest, RespondRequest, SendRequest, TagChange, TagMap, Target,
    DEFAULT_QUERY_TIMEOUT_MS, DEFAULT_SEND_TIMEOUT_MS,
};
use crate::io::driver::Node;
use crate::report::nearest::{nearest as pick_nearest, NearestReport};
use crate::report::payload::PayloadFields;
use crate::report::query_report::QueryResponse;
use crate::report::send_report::SendReport;
use crate::report::status::StatusReport;
use log::debug;
use std::time::{Duration, Instant};

/// An error answer.
fn refuse(message: String) -> Reply {
    Reply::Text(error_line(&message))
}

/// A peer's name as the answers show it.
fn name(mesh: &Mesh, id: PeerId) -> String {
    mesh.peer(id)
        .map_or_else(|| id.to_string(), |p| p.name().to_owned())
}

/// The peer called `name` (case-insensitively), or an answer saying there is none.
fn find(mesh: &Mesh, name: &str) -> Result<PeerId, Reply> {
    mesh.peer_by_name(name).ok_or_else(|| {
        let clipped: String = name.chars().take(64).collect();
        refuse(format!("no peer {clipped:?} in this mesh"))
    })
}

/// `send`: to one peer or to all; best effort is answered at once with the peers it went
/// to, a confirmed send once every message is reported delivered or failed.
pub fn send(node: &mut Node, send: SendRequest, now: Instant) -> Reply {
    let timeout = Duration::from_millis(send.timeout_ms.unwrap_or(DEFAULT_SEND_TIMEOUT_MS));
    let delivery = if send.confirm {
        Delivery::Confirmed { timeout }
    } else {
        Delivery::BestEffort
    };
    let mesh = node.mesh_mut();
    let sent = match &send.to {
        Target::Peer(peer) => {
            let id = match find(mesh, peer) {
                Ok(id) => id,
                Err(reply) => return reply,
            };
            match mesh.send(id, &send.payload, delivery) {
                Ok(message) => vec![(id, message)],
                Err(e) => return refuse(format!("not sent to {}: {e}", name(mesh, id))),
            }
        }
        Target::All => match mesh.broadcast(&send.payload, delivery) {
            Ok(sent) => sent,
            Err(e) => return refuse(format!("not sent: {e}")),
        },
    };
    debug!(
        "control: {} bytes sent to {} peers{}",
        send.payload.len(),
        sent.len(),
        if send.confirm { ", confirmed" } else { "" }
    );
    let targets: Vec<(u64, String)> = sent
        .iter()
        .map(|(peer, message)| (message.0, name(mesh, *peer)))
        .collect();
    if !send.confirm {
        return Reply::Text(ok_line(
            "sent",
            &SendReport {
                confirmed: false,
                delivered: targets.into_iter().map(|(_, n)| n).collect(),
                failed: Vec::new(),
            },
        ));
    }
    Reply::Later(Pending::Send(PendingSend::new(
        targets,
        Vec::new(),
        now + timeout + GRACE,
    )))
}

/// `tags`: this node's tags, after the change asked for (all of it or none).
pub fn tags(node: &mut Node, change: TagChange) -> Reply {
    if !change.is_empty() {
        if let Some(both) = change.remove.iter().find(|k| change.set.contains_key(*k)) {
            return refuse(format!("tag {both:?} is both set and removed"));
        }
        let mut changes: Vec<(String, Option<String>)> = change
            .set
            .into_iter()
            .map(|(key, value)| (key, Some(value)))
            .collect();
        changes.extend(change.remove.into_iter().map(|key| (key, None)));
        if let Err(e) = node.mesh_mut().set_tags(&changes) {
            return refuse(format!("tags not changed: {e}"));
        }
    }
    Reply::Text(ok_line("tags", node.mesh().tags()))
}

/// `query`: asks the matching peers; answered when the core says the query is done.
pub fn query(node: &mut Node, query: QueryRequest, now: Instant) -> Reply {
    let mesh = node.mesh_mut();
    for peer in &query.peers {
        if let Err(reply) = find(mesh, peer) {
            return reply;
        }
    }
    let timeout = Duration::from_millis(query.timeout_ms.unwrap_or(DEFAULT_QUERY_TIMEOUT_MS));
    let filter = QueryFilter {
        names: query.peers,
        tags: query.tags.into_iter().collect(),
    };
    match mesh.query(&filter, &query.payload, timeout) {
        Ok(id) => Reply::Later(Pending::Query(PendingQuery::new(
            id.0,
            now + timeout + GRACE,
        ))),
        Err(e) => refuse(format!("query not sent: {e}")),
    }
}

/// `nearest`: the alive peers with the lowest RTT median among those carrying `tags`. In
/// sampled mode this node measures only some of its peers, so it first probes the
/// candidates that the coordinates put closer than the best measured one
/// ([`crate::core::mesh::NEAREST_PROBES`] at most) and answers once they have answered,
/// or `suspect_after` has passed: the answer is always a measured RTT.
pub fn nearest(node: &mut Node, tags: &TagMap, now: Instant) -> Reply {
    let answer = measured_nearest(node.mesh(), tags, now);
    if !node.mesh().is_sampled() {
        return Reply::Text(ok_line("nearest", &answer));
    }
    let mesh = node.mesh_mut();
    let waiting: Vec<PeerId> = closer_by_estimate(mesh, tags, answer.rtt_us)
        .into_iter()
        .filter(|&peer| mesh.measure_now(peer))
        .collect();
    if waiting.is_empty() {
        return Reply::Text(ok_line("nearest", &answer));
    }
    let deadline = now + mesh.settings().suspect_after;
    Reply::Later(Pending::Nearest(PendingNearest::new(
        tags.clone(),
        waiting,
        answer,
        deadline,
    )))
}

/// The nearest alive peers carrying `tags` among those with an RTT now.
fn measured_nearest(mesh: &Mesh, tags: &TagMap, now: Instant) -> NearestReport {
    pick_nearest(&StatusReport::new(mesh, now, None), tags)
}

/// What `nearest` in sampled mode probes first: the alive peers carrying `tags` that this
/// node has no RTT of and the coordinates put closer than `best_us`
/// ([`Mesh::closer_by_estimate`]).
fn closer_by_estimate(mesh: &Mesh, tags: &TagMap, best_us: Option<f64>) -> Vec<PeerId> {
    let best = best_us.map(|us| Duration::from_secs_f64(us.max(0.0) / 1e6));
    mesh.closer_by_estimate(|id, _| holds_all(mesh.peer_tags(id), tags.iter()), best)
}

/// The RTT median to `peer` in microseconds, if it has one now.
fn rtt_us(mesh: &Mesh, peer: PeerId) -> Option<f64> {
    let peer = mesh.peer(peer)?;
    if !crate::report::status::has_rtt(peer.state()) {
        return None;
    }
    peer.rtt().map(|r| r.p50.as_nanos() as f64 / 1000.0)
}

/// `respond`: answers query `respond.query` of peer `respond.to` (as a handler's output
/// would), once, while the asker still waits.
pub fn respond(node: &mut Node, respond: RespondRequest) -> Reply {
    let peer = match find(node.mesh(), &respond.to) {
        Ok(peer) => peer,
        Err(reply) => return reply,
    };
    let query = crate::core::QueryRef {
        peer,
        id: respond.query,
    };
    match node
        .mesh_mut()
        .respond(query, &respond.payload, respond.error)
    {
        Ok(()) => Reply::Text(ok_line("responded", &true)),
        Err(e) => refuse(format!("not answered: {e}")),
    }
}

/// Lets one core event complete a waiting request: a send's reports, a query's acks,
/// responses and end.
pub fn feed(pending: &mut Pending, mesh: &Mesh, event: &Event) {
    match (pending, event) {
        (Pending::Send(send), Event::Delivered { id, .. }) => {
            send.settle(id.0, true);
        }
        (Pending::Send(send), Event::Failed { id, .. }) => {
            send.settle(id.0, false);
        }
        (Pending::Query(q), Event::QueryAck { query, from }) if query.0 == q.id() => {
            q.ack(name(mesh, *from));
        }
        (
            Pending::Query(q),
            Event::QueryResponse {
                query,
                from,
                payload,
                error,
            },
        ) if query.0 == q.id() => q.respond(QueryResponse {
            node: name(mesh, *from),
            payload: PayloadFields::from_bytes(payload),
            error: *error,
            rtt_us: rtt_us(mesh, *from),
        }),
        (Pending::Query(q), Event::QueryDone { query, missing }) if query.0 == q.id() => {
            q.finish(missing.iter().map(|p| name(mesh, *p)).collect());
        }
        (Pending::Nearest(n), Event::Measured { peer, .. }) => {
            n.measured(*peer, |tags| measured_nearest(mesh, tags, mesh.now()));
        }
        _ => {}
    }
}
