//! The full latency matrix, assembled in-band at every node, and the diagnosis of broken
//! paths, on the deterministic simulator.

use peermesh::core::Diagnosis;
use peermesh::sim::{Link, Sim};
use peermesh::{Event, PeerState};
use std::time::Duration;

const INTERVAL: Duration = Duration::from_secs(1);
const NODES: usize = 20;

/// Four regions of five nodes. One-way latency: about 0.5 ms within a region (RTT about
/// 1 ms), 10-75 ms between regions (RTT 20-150 ms); every pair different.
fn one_way(a: usize, b: usize) -> Duration {
    let (a, b) = (a.min(b), a.max(b));
    let (ra, rb) = (a / 5, b / 5);
    let pair_us = (a * 31 + b * 7) as u64 % 97; // small, distinct-ish per pair
    if ra == rb {
        Duration::from_micros(400 + 2 * pair_us)
    } else {
        let region_ms = [0, 10, 25, 37, 52, 64, 75][(ra + rb + ra * rb) % 7].max(10);
        Duration::from_micros(region_ms * 1000 + 13 * pair_us)
    }
}

fn regions() -> Sim {
    let mut sim = Sim::with_nodes(NODES, INTERVAL, 11);
    for a in 0..NODES {
        for b in (a + 1)..NODES {
            sim.set_link(a, b, Link::latency(one_way(a, b)));
        }
    }
    sim
}

/// Whether node `o`'s assembled matrix matches the true RTTs within 2% in every cell.
fn matrix_matches(sim: &Sim, o: usize) -> Result<(), String> {
    let view = sim.mesh(o).ok_or("node down")?.matrix();
    for i in 0..NODES {
        for j in 0..NODES {
            let got = view.rtt_us[i][j];
            if i == j {
                if got.is_some() {
                    return Err(format!("diagonal {i} has a value"));
                }
                continue;
            }
            let want = (one_way(i, j) * 2).as_secs_f64() * 1e6;
            let got = got.ok_or(format!("node{o}: cell {i}->{j} unknown"))?;
            if (got - want).abs() > want * 0.02 {
                return Err(format!(
                    "node{o}: cell {i}->{j} is {got} µs, true {want} µs"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn every_node_assembles_the_true_matrix_within_two_percent() {
    let mut sim = regions();
    // The RTTs really span the intended ranges.
    assert!(one_way(0, 1) * 2 < Duration::from_millis(2));
    assert!((5..NODES).all(|b| one_way(0, b) * 2 >= Duration::from_millis(20)));
    assert!((0..NODES).all(|b| one_way(0, b) * 2 <= Duration::from_millis(152)));
    let assembled = sim.run_until(INTERVAL * 10, |sim| {
        (0..NODES).all(|o| matrix_matches(sim, o).is_ok())
    });
    let took = sim.elapsed();
    assert!(
        assembled,
        "not assembled in 10 intervals: {:?}",
        (0..NODES).find_map(|o| matrix_matches(&sim, o).err())
    );
    // Documented in docs/ARCHITECTURE.md: a small mesh's row fits one chunk, so the
    // matrix is whole after the first samples plus one row refresh: within 4 intervals.
    assert!(took <= INTERVAL * 4, "took {took:?}");
    // And it stays right.
    sim.run_for(INTERVAL * 20);
    for o in 0..NODES {
        matrix_matches(&sim, o).unwrap();
        let view = sim.mesh(o).unwrap().matrix();
        assert!(
            view.age_ms.iter().all(|a| a.is_some_and(|ms| ms <= 1100)),
            "{:?}",
            view.age_ms
        );
        assert!(view.asymmetric.is_empty());
    }
}

fn diag(sim: &Sim, from: usize, about: usize) -> Diagnosis {
    let mesh = sim.mesh(from).unwrap();
    mesh.diagnosis(sim.peer_id(from, about).unwrap()).unwrap()
}

#[test]
fn a_broken_link_is_unreachable_not_dead_and_everyone_else_keeps_both() {
    let mut sim = regions();
    sim.run_for(INTERVAL * 5);
    let (a, b) = (3, 12);
    sim.set_link(a, b, Link::latency(one_way(a, b)).with_loss(1.0));
    let broken_at = sim.elapsed();
    sim.run_for(INTERVAL * 12);
    assert_eq!(sim.state(a, b), Some(PeerState::Unreachable));
    assert_eq!(sim.state(b, a), Some(PeerState::Unreachable));
    assert_eq!(diag(&sim, a, b), Diagnosis::Unreachable);
    assert_eq!(diag(&sim, b, a), Diagnosis::Unreachable);
    for o in (0..NODES).filter(|&o| o != a && o != b) {
        assert_eq!(sim.state(o, a), Some(PeerState::Alive), "node{o} about {a}");
        assert_eq!(sim.state(o, b), Some(PeerState::Alive), "node{o} about {b}");
    }
    // Neither ever called the other dead.
    let peer_b = sim.peer_id(a, b).unwrap();
    assert!(!sim
        .trace()
        .iter()
        .any(|r| r.node == a && r.at >= broken_at && r.event == Event::Down(peer_b)));
    // Healing brings them back.
    sim.set_link(a, b, Link::latency(one_way(a, b)));
    assert!(
        sim.run_until(INTERVAL * 3, |s| s.state(a, b) == Some(PeerState::Alive)
            && s.state(b, a) == Some(PeerState::Alive))
    );
}

#[test]
fn a_killed_node_is_dead_at_every_node() {
    let mut sim = regions();
    sim.run_for(INTERVAL * 5);
    sim.crash(7);
    sim.run_for(INTERVAL * 10);
    for o in (0..NODES).filter(|&o| o != 7) {
        assert_eq!(sim.state(o, 7), Some(PeerState::Dead), "node{o}");
        assert_eq!(diag(&sim, o, 7), Diagnosis::Dead);
        // Its row aged out: no longer shown as fresh.
        let view = sim.mesh(o).unwrap().matrix();
        assert!(!view.fresh[7] && view.rtt_us[7].iter().all(Option::is_none));
    }
    // Nobody went through `unreachable` on the way.
    assert!(!sim
        .trace()
        .iter()
        .any(|r| matches!(r.event, Event::Unreachable(_))));
}

#[test]
fn one_way_loss_is_flagged_asymmetric() {
    let mut sim = regions();
    sim.run_for(INTERVAL * 5);
    let (a, b) = (2, 16);
    // Everything a sends to b is lost; b to a is fine.
    sim.set_link_oneway(a, b, Link::latency(one_way(a, b)).with_loss(1.0));
    sim.run_for(INTERVAL * 15);
    // a still hears b, but b's row says it no longer hears a.
    assert_eq!(sim.state(a, b), Some(PeerState::Alive));
    assert_eq!(diag(&sim, a, b), Diagnosis::Asymmetric);
    assert!(sim
        .mesh(a)
        .unwrap()
        .peer(sim.peer_id(a, b).unwrap())
        .unwrap()
        .is_asymmetric());
    // b cannot hear a, but others do: unreachable, not dead.
    assert_eq!(sim.state(b, a), Some(PeerState::Unreachable));
    // Every third node sees the one-way pair in its matrix.
    for o in (0..NODES).filter(|&o| o != a && o != b) {
        let view = sim.mesh(o).unwrap().matrix();
        assert!(
            view.asymmetric.contains(&(a, b)),
            "node{o}: {:?}",
            view.asymmetric
        );
    }
    let peer_b = sim.peer_id(a, b).unwrap();
    assert!(sim.trace().iter().any(|r| r.node == a
        && r.event
            == Event::Asymmetric {
                peer: peer_b,
                asymmetric: true
            }));
}
