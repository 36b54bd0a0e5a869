//! Freshness and refutation, as an attacker on the network would try them (issue 10): replays
//! after the receiver restarts, replays of a past process of a dead peer, stray datagrams with
//! a higher incarnation or a far sequence number, and a peer whose clock went back.
//!
//! Everything runs in the simulator: a virtual clock, a tapped link to capture datagrams, and
//! `Sim::inject` to replay or forge them.

use peermesh::sim::{sim_addr, Sim};
use peermesh::wire::keyring::{Key, Keyring};
use peermesh::wire::{Body, Header, Packet};
use peermesh::{DropReason, Event, Mesh, NodeId, PeerState};
use std::time::Duration;

const INTERVAL: Duration = Duration::from_millis(100);

fn keyed(sim: &mut Sim) {
    let ring = Keyring::new(vec![Key::new(&[0x42; 32])]);
    for i in 0..sim.len() {
        sim.set_keyring(i, ring.clone());
    }
}

fn mesh(sim: &Sim, i: usize) -> &Mesh {
    sim.mesh(i).expect("node runs")
}

fn dropped(sim: &Sim, i: usize, reason: DropReason) -> u64 {
    mesh(sim, i).dropped().get(reason)
}

/// The events node `i` reported about node `j` after `since`.
fn events_about(sim: &Sim, i: usize, j: usize, since: Duration) -> Vec<Event> {
    let Some(peer) = sim.peer_id(i, j) else {
        return Vec::new();
    };
    sim.trace()
        .iter()
        .filter(|r| r.node == i && r.at > since && r.event.peer() == Some(peer))
        .map(|r| r.event.clone())
        .collect()
}

/// A plain datagram from node `from` to node `to` of a `Sim::with_nodes` mesh.
fn forged(from: usize, to: usize, incarnation: u64, to_incarnation: u64, seq: u32) -> Vec<u8> {
    let header = Header {
        from: NodeId::from_name(&format!("node{from}")),
        incarnation,
        to: NodeId::from_name(&format!("node{to}")),
        to_incarnation,
        seq,
    };
    let body = Body::Ping {
        probe: 0,
        sent_ns: 1,
        row: None,
    };
    let mut buf = vec![0; 256];
    let n = Packet { header, body }.emit(&mut buf).expect("fits");
    buf.truncate(n);
    buf
}

/// Every node sees every other alive, at the incarnation that node runs with now.
fn all_alive(sim: &Sim) -> bool {
    (0..sim.len()).all(|i| {
        (0..sim.len()).all(|j| {
            i == j
                || (sim.state(i, j) == Some(PeerState::Alive)
                    && sim.mesh(j).map(|m| m.incarnation())
                        == sim
                            .mesh(i)
                            .and_then(|m| m.peer(sim.peer_id(i, j)?)?.incarnation()))
        })
    })
}

/// Captures 6 s of node1 -> node0 traffic, kills node1, restarts node0, and replays it all:
/// nothing is believed, every datagram is counted, and node1 never shows up at node0.
fn replay_after_the_receiver_restarts(keyed_mesh: bool) {
    let mut sim = Sim::with_nodes(3, INTERVAL, 11);
    if keyed_mesh {
        keyed(&mut sim);
    }
    assert!(sim.run_until(INTERVAL * 20, all_alive));
    sim.tap(1, 0);
    sim.run_for(Duration::from_secs(6));
    sim.untap();
    let capture = sim.captured().to_vec();
    assert!(capture.len() >= 60, "{} datagrams captured", capture.len());
    sim.crash(1);
    sim.restart(0);
    let restarted = sim.elapsed();
    // node0 and node2 find each other again (a first datagram or two each way that does not
    // name the other's new incarnation is normal); from then on, only the replay is counted.
    assert!(
        sim.run_until(INTERVAL * 10, |s| s.state(0, 2) == Some(PeerState::Alive)
            && s.state(2, 0) == Some(PeerState::Alive))
    );
    sim.run_for(INTERVAL * 2);
    let not_fresh = dropped(&sim, 0, DropReason::NotFresh);
    // The replay runs over 2 s, as fast as the capture was made: long enough for any
    // belief in node1 to show as a state.
    for (n, datagram) in capture.iter().enumerate() {
        if n % 30 == 0 {
            sim.run_for(INTERVAL);
        }
        sim.inject(0, sim_addr(1), &datagram.bytes);
        assert_ne!(
            sim.state(0, 1),
            Some(PeerState::Alive),
            "believed replay #{n}"
        );
    }
    sim.run_for(INTERVAL * 10);
    assert_eq!(sim.state(0, 1), Some(PeerState::Unknown));
    assert!(events_about(&sim, 0, 1, restarted).is_empty());
    assert_eq!(
        dropped(&sim, 0, DropReason::NotFresh) - not_fresh,
        capture.len() as u64,
        "every replayed datagram dropped and counted"
    );
    let peer = mesh(&sim, 0).peer(sim.peer_id(0, 1).unwrap()).unwrap();
    assert_eq!(peer.received(), 0);
    assert_eq!(peer.incarnation(), None);
    // node2 is unaffected and alive both ways.
    assert_eq!(sim.state(0, 2), Some(PeerState::Alive));
}

#[test]
fn keyed_replays_after_the_receiver_restarts_are_dropped_and_counted() {
    replay_after_the_receiver_restarts(true);
}

#[test]
fn unkeyed_replays_after_the_receiver_restarts_are_dropped_and_counted() {
    replay_after_the_receiver_restarts(false);
}

/// node1's first process is captured, node1 restarts, then dies; the capture of its first
/// life, replayed at node0 (which never restarted), is no restart and no sign of life.
#[test]
fn a_replayed_past_process_of_a_dead_peer_is_no_restart_and_it_stays_dead() {
    let mut sim = Sim::with_nodes(3, INTERVAL, 12);
    keyed(&mut sim);
    assert!(sim.run_until(INTERVAL * 20, all_alive));
    sim.tap(1, 0);
    sim.run_for(Duration::from_secs(2));
    sim.untap();
    let capture = sim.captured().to_vec();
    sim.restart(1);
    assert!(sim.run_until(INTERVAL * 20, all_alive));
    let second_life = mesh(&sim, 1).incarnation();
    assert_eq!(
        mesh(&sim, 0)
            .peer(sim.peer_id(0, 1).unwrap())
            .unwrap()
            .incarnation(),
        Some(second_life)
    );
    sim.crash(1);
    assert!(sim.run_until(INTERVAL * 20, |s| s.state(0, 1) == Some(PeerState::Dead)));
    let (stale, not_fresh) = (
        dropped(&sim, 0, DropReason::StaleIncarnation),
        dropped(&sim, 0, DropReason::NotFresh),
    );
    let replayed_at = sim.elapsed();
    for (n, datagram) in capture.iter().enumerate() {
        if n % 10 == 0 {
            sim.run_for(INTERVAL);
        }
        sim.inject(0, sim_addr(1), &datagram.bytes);
        assert_eq!(sim.state(0, 1), Some(PeerState::Dead), "replay #{n}");
    }
    let events = events_about(&sim, 0, 1, replayed_at);
    assert!(events.is_empty(), "no Restarted, no Up: {events:?}");
    let peer = mesh(&sim, 0).peer(sim.peer_id(0, 1).unwrap()).unwrap();
    assert_eq!(peer.incarnation(), Some(second_life), "never backwards");
    let counted = dropped(&sim, 0, DropReason::StaleIncarnation) - stale
        + dropped(&sim, 0, DropReason::NotFresh)
        - not_fresh;
    assert_eq!(counted, capture.len() as u64);
    assert!(dropped(&sim, 0, DropReason::StaleIncarnation) > stale);
}

/// Unkeyed, a datagram from a peer's address that does not name the receiver's incarnation
/// changes nothing, however high its incarnation or sequence number: a stray or blind one.
#[test]
fn unkeyed_blind_datagrams_with_any_incarnation_or_sequence_change_nothing() {
    let mut sim = Sim::with_nodes(3, INTERVAL, 13);
    assert!(sim.run_until(INTERVAL * 20, all_alive));
    sim.run_for(INTERVAL * 2);
    let not_fresh = dropped(&sim, 0, DropReason::NotFresh);
    let held = mesh(&sim, 0)
        .peer(sim.peer_id(0, 1).unwrap())
        .unwrap()
        .incarnation();
    let guess = mesh(&sim, 0).incarnation() ^ 1;
    let node1 = mesh(&sim, 1).incarnation();
    for round in 0..20u32 {
        sim.inject(
            0,
            sim_addr(1),
            &forged(1, 0, u64::MAX, guess, 1_000_000 + round),
        );
        sim.inject(0, sim_addr(1), &forged(1, 0, u64::MAX - 1, 0, round));
        sim.run_for(INTERVAL * 2);
    }
    // Those naming a wrong incarnation are counted. One naming none (0) looks like the first
    // step of a handshake (node1 is believed again between them): answered, not counted,
    // and believed no more than the others.
    assert_eq!(dropped(&sim, 0, DropReason::NotFresh) - not_fresh, 20);
    let peer = mesh(&sim, 0).peer(sim.peer_id(0, 1).unwrap()).unwrap();
    assert_eq!(peer.incarnation(), held);
    // node0 answered each forged ping, to node1, naming the forged incarnation as node1's:
    // node1 took none of those answers for a reason to refute.
    assert_eq!(mesh(&sim, 1).incarnation(), node1);
    assert!(all_alive(&sim));
    // And a killed peer is not kept alive by them: every 200 ms a ping of u64::MAX.
    sim.crash(1);
    for round in 0..20u32 {
        sim.inject(0, sim_addr(1), &forged(1, 0, u64::MAX, guess, round));
        sim.run_for(INTERVAL * 2);
    }
    assert_eq!(sim.state(0, 1), Some(PeerState::Dead));
}

/// Unkeyed, an on-path forger who read the receiver's incarnation makes it take node1 at a
/// higher incarnation: node1's genuine datagrams are then from an older one, node0 tells
/// node1 so in its answers, and node1 refutes with a later incarnation. Healed by itself.
#[test]
fn unkeyed_a_forged_higher_incarnation_heals_within_a_few_intervals_by_refutation() {
    let mut sim = Sim::with_nodes(3, INTERVAL, 14);
    assert!(sim.run_until(INTERVAL * 20, all_alive));
    let genuine = mesh(&sim, 1).incarnation();
    let forged_incarnation = genuine + (1 << 30);
    let echo = mesh(&sim, 0).incarnation();
    sim.inject(0, sim_addr(1), &forged(1, 0, forged_incarnation, echo, 0));
    let p01 = sim.peer_id(0, 1).unwrap();
    assert_eq!(
        mesh(&sim, 0).peer(p01).unwrap().incarnation(),
        Some(forged_incarnation),
        "taken as a restart"
    );
    let forged_at = sim.elapsed();
    assert!(
        sim.run_until(INTERVAL * 5, |s| s.mesh(1).unwrap().incarnation()
            > forged_incarnation),
        "node1 refuted"
    );
    assert!(sim.run_until(INTERVAL * 5, all_alive));
    let healed = sim.elapsed() - forged_at;
    assert!(healed <= INTERVAL * 5, "healed in {healed:?}");
    let now_held = mesh(&sim, 0).peer(p01).unwrap().incarnation().unwrap();
    assert!(now_held > forged_incarnation);
    assert_eq!(now_held, mesh(&sim, 1).incarnation());
    // node2 followed node1 to its new incarnation too.
    let p21 = sim.peer_id(2, 1).unwrap();
    assert_eq!(
        mesh(&sim, 2).peer(p21).unwrap().incarnation(),
        Some(now_held)
    );
    // Not suspected anywhere on the way.
    assert!(!sim.trace().iter().any(|r| r.at >= forged_at
        && matches!(
            r.event,
            Event::Suspect(_) | Event::Down(_) | Event::Unreachable(_)
        )));
}

/// Unkeyed, an on-path forger pushes node1's replay window a million numbers ahead at node0:
/// node1's genuine pongs answer node0's own pings, which resets the window.
#[test]
fn unkeyed_a_forged_sequence_jump_heals_within_a_few_intervals() {
    let mut sim = Sim::with_nodes(3, INTERVAL, 15);
    assert!(sim.run_until(INTERVAL * 20, all_alive));
    let p01 = sim.peer_id(0, 1).unwrap();
    let incarnation = mesh(&sim, 1).incarnation();
    let echo = mesh(&sim, 0).incarnation();
    let replayed = dropped(&sim, 0, DropReason::Replayed);
    sim.inject(0, sim_addr(1), &forged(1, 0, incarnation, echo, 1_000_000));
    sim.run_for(INTERVAL * 2);
    assert!(
        dropped(&sim, 0, DropReason::Replayed) > replayed,
        "genuine ones refused"
    );
    let received = mesh(&sim, 0).peer(p01).unwrap().received();
    sim.run_for(INTERVAL * 3);
    let later = mesh(&sim, 0).peer(p01).unwrap().received();
    assert!(
        later >= received + 4,
        "node1 heard again: {received} -> {later}"
    );
    assert!(all_alive(&sim));
}

/// A node restarted with a smaller incarnation (its clock went back) is refused as an old
/// process at first, learns from the answers which incarnation its peers hold, and refutes.
#[test]
fn a_restart_with_a_smaller_incarnation_heals_by_refutation() {
    for keyed_mesh in [false, true] {
        let mut sim = Sim::with_nodes(4, INTERVAL, 16);
        if keyed_mesh {
            keyed(&mut sim);
        }
        assert!(sim.run_until(INTERVAL * 20, all_alive));
        let before = mesh(&sim, 2).incarnation();
        sim.restart_with_incarnation(2, before / 2);
        assert!(
            sim.run_until(INTERVAL * 10, all_alive),
            "keyed {keyed_mesh}: not healed"
        );
        let now = mesh(&sim, 2).incarnation();
        assert!(now > before, "keyed {keyed_mesh}: {now:x} <= {before:x}");
        for i in [0, 1, 3] {
            let p = sim.peer_id(i, 2).unwrap();
            assert_eq!(mesh(&sim, i).peer(p).unwrap().incarnation(), Some(now));
        }
    }
}

/// A path one-way since the start (node1 hears nothing from node0): node1's Pings reach
/// node0 but name no incarnation of it, since node0's answers never arrive. node0 believes
/// none of them (node1 stays `unknown` there), answers each, and counts each after the
/// first as `not_fresh`: about one an interval, the sign of a one-way path.
#[test]
fn a_path_one_way_since_the_start_shows_as_not_fresh_at_the_receiving_end() {
    use peermesh::sim::Link;
    let mut sim = Sim::with_nodes(3, INTERVAL, 17);
    sim.set_link_oneway(0, 1, Link::latency(Duration::from_millis(1)).with_loss(1.0));
    sim.run_for(INTERVAL * 20);
    assert_eq!(sim.state(0, 1), Some(PeerState::Unknown));
    assert_eq!(sim.state(1, 0), Some(PeerState::Unknown));
    let counted = dropped(&sim, 0, DropReason::NotFresh);
    assert!(
        (17..=21).contains(&counted),
        "{counted} not_fresh in 20 intervals"
    );
    // The rest of the mesh is fine.
    assert_eq!(sim.state(0, 2), Some(PeerState::Alive));
    assert_eq!(sim.state(2, 1), Some(PeerState::Alive));
}
