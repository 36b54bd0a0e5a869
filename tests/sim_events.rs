//! Each simulated node's own event stream (`Sim::poll_event`): what an embedder of that node
//! would read from its core, in the trace's order, bounded, and gone with a crashed process.

use peermesh::sim::{Sim, EVENT_QUEUE_LIMIT};
use peermesh::Event;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_millis(100);

/// Node `i`'s events in the trace, in order.
fn traced(sim: &Sim, i: usize) -> Vec<Event> {
    sim.trace()
        .iter()
        .filter(|r| r.node == i)
        .map(|r| r.event.clone())
        .collect()
}

/// Everything node `i` has not read yet (bounded by the queue limit).
fn drain(sim: &mut Sim, i: usize) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(event) = sim.poll_event(i) {
        out.push(event);
        assert!(out.len() <= EVENT_QUEUE_LIMIT, "more than the bound");
    }
    out
}

#[test]
fn each_node_reads_its_own_events_in_the_order_of_the_trace() {
    let mut sim = Sim::with_nodes(3, INTERVAL, 7);
    sim.run_for(Duration::from_secs(1));
    let (one, two) = (sim.peer_id(0, 1).unwrap(), sim.peer_id(0, 2).unwrap());
    let first = drain(&mut sim, 0);
    assert!(
        first.contains(&Event::Up(one)) && first.contains(&Event::Up(two)),
        "{first:?}"
    );
    assert_eq!(
        first,
        traced(&sim, 0),
        "node 0's stream is its part of the trace"
    );
    assert_eq!(sim.poll_event(0), None, "read once");
    // Node 1 still has its own, unread.
    assert_eq!(drain(&mut sim, 1), traced(&sim, 1));

    // Node 2 dies: node 0 reads Suspect then Down for it, and nothing about node 1.
    sim.crash(2);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(drain(&mut sim, 0), [Event::Suspect(two), Event::Down(two)]);
    assert_eq!(
        sim.poll_event(2),
        None,
        "a node that is down reports nothing"
    );
    assert_eq!(sim.poll_event(99), None, "no such node");
    assert_eq!(sim.events_dropped(0), 0);
    // Reading consumed nothing of the trace.
    assert_eq!(traced(&sim, 0).len(), first.len() + 2);
}

#[test]
fn a_node_that_is_never_read_keeps_its_newest_events_up_to_the_bound() {
    let mut sim = Sim::with_nodes(2, INTERVAL, 3);
    sim.run_for(Duration::from_secs(1));
    // Every restart of node 1 gives node 0 at least one event (Restarted); restart it until
    // node 0 has reported more than the bound, unread. Bounded: 3 × the bound restarts.
    let mut restarts = 0;
    while traced(&sim, 0).len() <= EVENT_QUEUE_LIMIT + 10 {
        assert!(
            restarts < 3 * EVENT_QUEUE_LIMIT,
            "restarts give node 0 no events"
        );
        sim.restart(1);
        sim.run_for(INTERVAL * 2);
        restarts += 1;
    }
    let all = traced(&sim, 0);
    let dropped = all.len() - EVENT_QUEUE_LIMIT;
    assert_eq!(sim.events_dropped(0), dropped as u64);
    // The oldest went first: what is left is the newest `EVENT_QUEUE_LIMIT`, in order.
    assert_eq!(drain(&mut sim, 0), all[dropped..]);
    assert!(sim.trace().len() >= all.len(), "the trace kept them all");
}

#[test]
fn a_crash_discards_the_unread_events_of_the_crashed_node_only() {
    let mut sim = Sim::with_nodes(3, INTERVAL, 11);
    sim.run_for(Duration::from_secs(1));
    assert!(!traced(&sim, 1).is_empty());
    sim.crash(1);
    assert_eq!(sim.poll_event(1), None, "gone with the process");
    sim.restart(1);
    sim.run_for(Duration::from_secs(1));
    // The new process reads only what it saw itself: its peers coming up.
    let ups = drain(&mut sim, 1);
    let (zero, two) = (sim.peer_id(1, 0).unwrap(), sim.peer_id(1, 2).unwrap());
    assert!(
        ups.contains(&Event::Up(zero)) && ups.contains(&Event::Up(two)),
        "{ups:?}"
    );
    // Node 0 was not touched: everything it reported is still there to read.
    assert_eq!(drain(&mut sim, 0), traced(&sim, 0));
}

#[test]
fn a_lower_event_limit_keeps_the_newest_that_many_and_zero_keeps_none() {
    let mut sim = Sim::with_nodes(3, INTERVAL, 5);
    sim.run_for(Duration::from_secs(1));
    let before = traced(&sim, 0);
    assert!(before.len() >= 2, "node 0 saw its peers come up");
    sim.set_event_limit(1);
    assert_eq!(sim.events_dropped(0), before.len() as u64 - 1);
    assert_eq!(drain(&mut sim, 0), before[before.len() - 1..]);
    sim.set_event_limit(0);
    sim.restart(1);
    sim.run_for(Duration::from_secs(2));
    let after = traced(&sim, 0);
    assert!(after.len() > before.len(), "the restart gave node 0 events");
    assert_eq!(sim.poll_event(0), None, "none kept");
    assert_eq!(
        sim.events_dropped(0),
        (after.len() - 1) as u64,
        "every event but the one read was dropped and counted"
    );
}
