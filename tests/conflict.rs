//! Two processes with one name (a cloned VM image, a second `peermesh run --name` with a
//! name in use), in the simulator: every node that hears both reports the conflict, both
//! processes say so, and the real node is believed again by itself once the impostor stops.
//! The same with real processes: tests/conflict_node.rs.

use peermesh::core::{Diagnosis, Event, PeerState};
use peermesh::sim::{sim_addr, Sim};
use peermesh::wire::keyring::{Key, Keyring};
use std::net::SocketAddr;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_millis(100);
const NODES: usize = 5;
/// The node whose name the impostor takes.
const REAL: usize = 1;

fn diagnosis(sim: &Sim, from: usize, to: usize) -> Option<Diagnosis> {
    let id = sim.peer_id(from, to)?;
    sim.mesh(from)?.diagnosis(id)
}

fn others() -> impl Iterator<Item = usize> {
    (0..NODES).filter(|&i| i != REAL)
}

/// Every node sees the real node alive and not in conflict, and it sees them all alive.
fn healed(sim: &Sim) -> bool {
    others().all(|i| {
        sim.state(i, REAL) == Some(PeerState::Alive) && sim.state(REAL, i) == Some(PeerState::Alive)
    })
}

fn conflict_events(sim: &Sim, conflict: bool) -> Vec<usize> {
    let mut nodes: Vec<usize> = sim
        .trace()
        .iter()
        .filter(|r| matches!(r.event, Event::Conflict { conflict: c, .. } if c == conflict))
        .map(|r| r.node)
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

fn mesh(keyed: bool) -> Sim {
    let mut sim = Sim::with_nodes(NODES, INTERVAL, 7);
    if keyed {
        let keyring = Keyring::new(vec![Key::new(&[7; 32])]);
        for i in 0..NODES {
            sim.set_keyring(i, keyring.clone());
        }
    }
    assert!(
        sim.run_until(INTERVAL * 30, healed),
        "the mesh never formed"
    );
    sim
}

/// The impostor sends from the real node's IP (so an unkeyed mesh lets it in), another port.
fn impostor_addr() -> SocketAddr {
    SocketAddr::new(sim_addr(REAL).ip(), 1314)
}

fn impostor_is_reported_then_the_real_node_recovers(keyed: bool, goes: fn(&mut Sim, usize)) {
    let mut sim = mesh(keyed);
    let impostor = sim
        .start_impostor(REAL, impostor_addr())
        .expect("a free address");
    let seen = sim.run_until(INTERVAL * 30, |sim| {
        others().all(|i| diagnosis(sim, i, REAL) == Some(Diagnosis::Conflict))
            && sim.mesh(REAL).is_some_and(|m| m.identity_conflict())
            && sim.mesh(impostor).is_some_and(|m| m.identity_conflict())
    });
    assert!(
        seen,
        "not every node saw the conflict: {:?}, real {:?}, impostor {:?}",
        others()
            .map(|i| diagnosis(&sim, i, REAL))
            .collect::<Vec<_>>(),
        sim.mesh(REAL).map(|m| m.identity_conflict()),
        sim.mesh(impostor).map(|m| m.identity_conflict())
    );
    // Each observer told its embedder, once, and named the impostor's address.
    assert_eq!(conflict_events(&sim, true), others().collect::<Vec<_>>());
    for i in others() {
        let peer = sim
            .mesh(i)
            .and_then(|m| m.peer(sim.peer_id(i, REAL)?))
            .expect("peer");
        let addrs = [peer.seen_addr(), peer.rival_addr()];
        assert!(
            addrs.contains(&Some(impostor_addr())) && addrs.contains(&Some(sim_addr(REAL))),
            "node{i} names {addrs:?}"
        );
    }
    // It lasts while both run.
    sim.run_for(INTERVAL * 20);
    assert!(others().all(|i| diagnosis(&sim, i, REAL) == Some(Diagnosis::Conflict)));

    let gone = sim.elapsed();
    goes(&mut sim, impostor);
    assert!(
        sim.run_until(INTERVAL * 10, healed),
        "the real node was not believed again within 10 intervals: {:?} / {:?}",
        others().map(|i| sim.state(i, REAL)).collect::<Vec<_>>(),
        others().map(|i| sim.state(REAL, i)).collect::<Vec<_>>()
    );
    let took = sim.elapsed() - gone;
    assert!(took <= INTERVAL * 10, "took {took:?}");
    // The verdict ends at every node once the window passes, and stays healed.
    let over = sim.run_until(INTERVAL * 40, |sim| {
        others().all(|i| diagnosis(sim, i, REAL) == Some(Diagnosis::Ok))
            && sim.mesh(REAL).is_some_and(|m| !m.identity_conflict())
    });
    assert!(over, "the conflict verdict never ended");
    assert_eq!(conflict_events(&sim, false), others().collect::<Vec<_>>());
    sim.run_for(INTERVAL * 20);
    assert!(healed(&sim));
    assert!(others().all(|i| diagnosis(&sim, i, REAL) == Some(Diagnosis::Ok)));
}

#[test]
fn an_impostor_that_leaves_is_reported_everywhere_and_the_real_node_recovers() {
    impostor_is_reported_then_the_real_node_recovers(false, |sim, i| sim.leave(i));
}

#[test]
fn an_impostor_that_crashes_is_reported_everywhere_and_the_real_node_recovers() {
    impostor_is_reported_then_the_real_node_recovers(false, |sim, i| sim.crash(i));
}

#[test]
fn a_keyed_mesh_reports_an_impostor_holding_the_key_and_recovers() {
    impostor_is_reported_then_the_real_node_recovers(true, |sim, i| sim.leave(i));
}

/// The real process dies and one with its name starts elsewhere at once (a move); `then`
/// may change it further. The move must be heard, and never be called a conflict.
fn a_move_is_no_conflict(then: fn(&mut Sim, usize)) {
    let mut sim = mesh(false);
    sim.crash(REAL);
    let moved = sim
        .start_impostor(REAL, impostor_addr())
        .expect("a free address");
    then(&mut sim, moved);
    let alive = sim.run_until(INTERVAL * 20, |sim| {
        others().all(|i| sim.state(i, REAL) == Some(PeerState::Alive))
    });
    assert!(alive, "the moved node was not heard");
    sim.run_for(INTERVAL * 30);
    assert!(
        conflict_events(&sim, true).is_empty(),
        "a move was called a conflict"
    );
    assert!(others().all(|i| diagnosis(&sim, i, REAL) == Some(Diagnosis::Ok)));
    assert!(sim.mesh(moved).is_some_and(|m| !m.identity_conflict()));
}

#[test]
fn a_node_that_restarts_at_another_address_is_no_conflict() {
    a_move_is_no_conflict(|_, _| {});
}

#[test]
fn a_node_that_moves_and_whose_clock_went_back_is_no_conflict() {
    // With a smaller incarnation: its first datagrams are stale, it refutes, and it
    // restarts, all from the new address.
    a_move_is_no_conflict(|sim, moved| {
        sim.crash(moved);
        sim.restart_with_incarnation(moved, 1);
    });
}

#[test]
fn a_node_restarted_with_a_smaller_incarnation_refutes_once_and_is_no_conflict() {
    let mut sim = mesh(false);
    // Its clock went back: peers hold a later incarnation than the new process takes.
    sim.restart_with_incarnation(REAL, 1);
    assert!(
        sim.run_until(INTERVAL * 20, healed),
        "it was never believed again"
    );
    sim.run_for(INTERVAL * 30);
    assert!(conflict_events(&sim, true).is_empty());
    assert!(sim.mesh(REAL).is_some_and(|m| !m.identity_conflict()));
}
