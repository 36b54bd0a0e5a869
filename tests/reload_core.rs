//! What a config reload asks of the core, stepped in the simulator: a peer that moved to
//! another address is followed with its statistics kept, new timings take effect at once,
//! and a removed peer is gone from the listing with an event that names it.

use peermesh::sim::Sim;
use peermesh::{Event, PeerState};
use std::net::SocketAddr;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_millis(100);

fn events(sim: &mut Sim, i: usize) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(event) = sim.poll_event(i) {
        out.push(event);
        assert!(out.len() < 100_000, "bounded");
    }
    out
}

#[test]
fn a_peer_that_came_back_at_another_address_is_followed_with_its_counters_kept() {
    let mut sim = Sim::with_nodes(3, INTERVAL, 11);
    assert!(sim.run_until(Duration::from_secs(2), |s| {
        s.state(0, 2) == Some(PeerState::Alive) && s.rtt_p50(0, 2).is_some()
    }));
    let peer = sim.peer_id(0, 2).unwrap();
    let before = sim.mesh(0).unwrap().peer(peer).unwrap().sent();

    // The VM is replaced by one at another address (same name): without a keyring its
    // datagrams are refused until the peers are told where it is now.
    sim.crash(2);
    let moved: SocketAddr = "10.9.9.9:1313".parse().unwrap();
    let replacement = sim.start_impostor(2, moved).unwrap();
    assert!(sim.run_until(Duration::from_secs(2), |s| s.state(0, 2)
        == Some(PeerState::Dead)));
    events(&mut sim, 0);

    for observer in [0, 1] {
        let id = sim.peer_id(observer, 2).unwrap();
        assert!(sim
            .with_mesh(observer, |m| m.set_peer_addr(id, moved))
            .unwrap());
    }
    assert!(
        sim.run_until(Duration::from_secs(2), |s| s.state(0, 2)
            == Some(PeerState::Alive)),
        "followed to {moved}"
    );
    let mesh = sim.mesh(0).unwrap();
    let now = mesh.peer(peer).unwrap();
    assert_eq!(now.addr(), moved);
    assert!(
        now.sent() > before,
        "counters went on: {} then {}",
        before,
        now.sent()
    );
    assert_eq!(
        sim.mesh(replacement).unwrap().name(),
        "node2",
        "the replacement is the same node"
    );
    let seen = events(&mut sim, 0);
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Moved { peer: p, to, .. } if *p == peer && *to == moved)),
        "{seen:?}"
    );
    // Told the same address again: no change, no event.
    sim.with_mesh(0, |m| m.set_peer_addr(peer, moved));
    assert!(!events(&mut sim, 0)
        .iter()
        .any(|e| matches!(e, Event::Moved { .. })));
}

#[test]
fn a_shorter_interval_sends_heartbeats_faster_and_a_shorter_dead_time_applies_at_once() {
    let mut sim = Sim::with_nodes(3, INTERVAL, 12);
    sim.run_for(Duration::from_secs(2));
    let peer = sim.peer_id(0, 1).unwrap();
    let sent = |sim: &Sim| sim.mesh(0).unwrap().peer(peer).unwrap().sent();
    let a = sent(&sim);
    sim.run_for(Duration::from_secs(2));
    let slow = sent(&sim) - a;

    sim.with_mesh(0, |m| {
        m.set_timing(
            Duration::from_millis(25),
            Duration::from_millis(300),
            Duration::from_millis(500),
        )
    });
    let b = sent(&sim);
    sim.run_for(Duration::from_secs(2));
    let fast = sent(&sim) - b;
    // `sent` counts pings and pongs: at 100 ms, 20 of each in 2 s; at 25 ms, 80 pings and
    // still 20 pongs (node 1 keeps its own interval).
    assert!(
        fast >= 2 * slow && fast <= 3 * slow,
        "{slow} datagrams in 2 s at 100 ms, {fast} at 25 ms"
    );

    // Dead after 500 ms by the defaults: stretch it to 5 s, and node 2's silence no longer
    // kills it within 2 s; shrink it back, and it is dead within the new time.
    sim.with_mesh(0, |m| {
        m.set_timing(
            INTERVAL,
            Duration::from_millis(3000),
            Duration::from_secs(5),
        )
    });
    sim.crash(2);
    sim.run_for(Duration::from_secs(2));
    assert_ne!(sim.state(0, 2), Some(PeerState::Dead));
    sim.with_mesh(0, |m| {
        m.set_timing(
            INTERVAL,
            Duration::from_millis(300),
            Duration::from_millis(500),
        )
    });
    let start = sim.elapsed();
    assert!(sim.run_until(Duration::from_secs(1), |s| s.state(0, 2)
        == Some(PeerState::Dead)));
    assert!(
        sim.elapsed() - start <= Duration::from_millis(150),
        "at once"
    );
}

#[test]
fn a_removed_peer_leaves_the_listing_and_the_matrix_with_an_event_that_names_it() {
    let mut sim = Sim::with_nodes(3, INTERVAL, 13);
    sim.run_for(Duration::from_secs(2));
    events(&mut sim, 0);
    let peer = sim.peer_id(0, 2).unwrap();
    let removed = sim.with_mesh(0, |m| m.remove_peer(peer)).flatten().unwrap();
    assert_eq!(removed.name(), "node2");
    let seen = events(&mut sim, 0);
    assert_eq!(
        seen,
        vec![Event::Removed {
            peer,
            name: "node2".into()
        }]
    );
    sim.run_for(Duration::from_secs(1));
    let mesh = sim.mesh(0).unwrap();
    assert_eq!(mesh.peer_count(), 1);
    assert!(mesh.peer_by_name("node2").is_none());
    let matrix = mesh.matrix_snapshot();
    assert_eq!(matrix.names(), ["node0", "node1"]);
}

#[test]
fn a_confirmed_message_to_a_removed_peer_fails_at_once_not_at_its_timeout() {
    let mut sim = Sim::with_nodes(3, INTERVAL, 14);
    sim.run_for(Duration::from_secs(1));
    let peer = sim.peer_id(0, 2).unwrap();
    // node2 is gone (its acknowledgement never comes); the file drops it a moment later.
    sim.crash(2);
    let delivery = peermesh::Delivery::Confirmed {
        timeout: Duration::from_secs(30),
    };
    let message = sim
        .with_mesh(0, |m| m.send(peer, b"deploy 42", delivery))
        .unwrap()
        .expect("queued");
    let best_effort = sim
        .with_mesh(0, |m| m.send(peer, b"fyi", peermesh::Delivery::BestEffort))
        .unwrap()
        .expect("queued");
    sim.run_for(INTERVAL);
    events(&mut sim, 0);
    sim.with_mesh(0, |m| m.remove_peer(peer));
    let seen = events(&mut sim, 0);
    assert_eq!(
        seen,
        vec![
            Event::Removed {
                peer,
                name: "node2".into()
            },
            Event::Failed {
                to: peer,
                id: message
            },
        ],
        "the best-effort message {best_effort:?} is not reported"
    );
}
