//! The core's liveness and latency behaviour, checked on the deterministic simulator.

use peermesh::sim::{Link, NodeStatus, Sim, TraceRecord};
use peermesh::{Event, PeerState};
use std::time::Duration;

const INTERVAL: Duration = Duration::from_millis(100);
const SUSPECT: Duration = Duration::from_millis(300);
const DEAD: Duration = Duration::from_millis(500);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The first event at or after `since` that `node` reported about config node `about`.
fn first_event(
    sim: &Sim,
    node: usize,
    about: usize,
    since: Duration,
    want: fn(&Event) -> bool,
) -> Option<Duration> {
    let peer = sim.peer_id(node, about)?;
    sim.trace()
        .iter()
        .filter(|r: &&TraceRecord| r.node == node && r.at >= since && want(&r.event))
        .find(|r| r.event.peer() == Some(peer))
        .map(|r| r.at)
}

fn all_alive(sim: &Sim) -> bool {
    (0..sim.len())
        .all(|a| (0..sim.len()).all(|b| a == b || sim.state(a, b) == Some(PeerState::Alive)))
}

/// One-way latency of the link between a and b in the five-node test: all different.
fn latency(a: usize, b: usize) -> Duration {
    let (a, b) = (a.min(b) as u64, a.max(b) as u64);
    Duration::from_micros(300 + 1000 * a + 170 * b * b)
}

#[test]
fn rtt_p50_matches_each_configured_round_trip_within_one_percent() {
    let mut sim = Sim::with_nodes(5, INTERVAL, 1);
    for a in 0..5 {
        for b in (a + 1)..5 {
            sim.set_link(a, b, Link::latency(latency(a, b)));
        }
    }
    sim.run_for(Duration::from_secs(10));
    for a in 0..5 {
        for b in 0..5 {
            if a == b {
                continue;
            }
            let want = latency(a, b) * 2;
            let got = sim.rtt_p50(a, b).expect("rtt measured");
            let err = (got.as_secs_f64() - want.as_secs_f64()).abs() / want.as_secs_f64();
            assert!(err < 0.01, "{a}->{b}: p50 {got:?}, configured {want:?}");
            assert_eq!(sim.state(a, b), Some(PeerState::Alive));
        }
    }
}

#[test]
fn jitter_shows_in_p99_and_the_jitter_figure() {
    let mut sim = Sim::with_nodes(5, INTERVAL, 2);
    sim.set_default_link(Link::latency(ms(2)).with_jitter(ms(1)));
    sim.run_for(Duration::from_secs(20));
    for a in 0..5 {
        for b in (0..5).filter(|&b| b != a) {
            let id = sim.peer_id(a, b).unwrap();
            let rtt = sim.mesh(a).unwrap().peer(id).unwrap().rtt().unwrap();
            assert!(rtt.p99 > rtt.p50, "{a}->{b}: {rtt:?}");
            assert!(rtt.jitter > Duration::ZERO, "{a}->{b}: {rtt:?}");
            // Round trip = 4 ms + two uniform draws of [0, 1 ms).
            assert!(rtt.min >= ms(4) && rtt.p99 < ms(6), "{a}->{b}: {rtt:?}");
        }
    }
}

#[test]
fn twenty_percent_loss_is_reported_and_never_kills_the_peer() {
    for seed in 3..8 {
        twenty_percent_loss_run(seed);
    }
}

fn twenty_percent_loss_run(seed: u64) {
    let mut sim = Sim::with_nodes(5, INTERVAL, seed);
    sim.set_default_link(Link::latency(ms(1)));
    // 20% of datagrams from node0 to node1 are lost: 20% of node0's pings never arrive,
    // and 20% of node0's pongs to node1's pings. Each side sees 20% round-trip loss.
    sim.set_link_oneway(0, 1, Link::latency(ms(1)).with_loss(0.2));
    sim.run_for(INTERVAL * 510);
    for (a, b) in [(0, 1), (1, 0)] {
        let id = sim.peer_id(a, b).unwrap();
        let mesh = sim.mesh(a).unwrap();
        assert!(mesh.peer(id).unwrap().probes_sent() >= 500);
        let loss = mesh.loss_pct(id).unwrap();
        assert!(
            (loss - 20.0).abs() <= 5.0,
            "seed {seed}: {a}->{b} loss {loss}%"
        );
        assert_eq!(sim.state(a, b), Some(PeerState::Alive));
        assert!(first_event(&sim, a, b, Duration::ZERO, |e| matches!(e, Event::Down(_))).is_none());
    }
    // Clean links report no loss.
    let id = sim.peer_id(2, 3).unwrap();
    assert_eq!(sim.mesh(2).unwrap().loss_pct(id), Some(0.0));
}

#[test]
fn crash_is_suspected_then_declared_dead_on_time_and_restart_revives() {
    let mut sim = Sim::with_nodes(5, INTERVAL, 4);
    sim.set_default_link(Link::latency(ms(1)));
    sim.run_for(Duration::from_secs(2));
    assert!(all_alive(&sim));
    let crash_at = sim.elapsed();
    sim.crash(2);
    sim.run_for(Duration::from_secs(2));
    for a in [0, 1, 3, 4] {
        let suspect = first_event(&sim, a, 2, crash_at, |e| matches!(e, Event::Suspect(_)))
            .expect("suspected");
        let dead = first_event(&sim, a, 2, crash_at, |e| matches!(e, Event::Down(_)))
            .expect("declared dead");
        // Silence is counted from the last datagram heard, at most one interval before the
        // crash; liveness checks run on a grain of an eighth of the interval.
        let after_suspect = suspect - crash_at;
        let after_dead = dead - crash_at;
        let grain = INTERVAL / 8;
        assert!(
            after_suspect + INTERVAL >= SUSPECT && after_suspect <= SUSPECT + grain,
            "node{a} suspected node2 {after_suspect:?} after the crash"
        );
        assert!(
            after_dead + INTERVAL >= DEAD && after_dead <= DEAD + grain,
            "node{a} declared node2 dead {after_dead:?} after the crash"
        );
        assert_eq!(
            dead - suspect,
            DEAD - SUSPECT,
            "both counted from the same silence"
        );
        assert_eq!(sim.state(a, 2), Some(PeerState::Dead));
    }
    let old = sim
        .mesh(0)
        .unwrap()
        .peer(sim.peer_id(0, 2).unwrap())
        .unwrap()
        .incarnation();
    let restart_at = sim.elapsed();
    sim.restart(2);
    assert!(
        sim.run_until(INTERVAL * 3, all_alive),
        "alive within 3 intervals"
    );
    for a in [0, 1, 3, 4] {
        assert!(
            first_event(&sim, a, 2, restart_at, |e| matches!(
                e,
                Event::Restarted { .. }
            ))
            .is_some(),
            "node{a} saw the restart"
        );
        let peer = sim
            .mesh(a)
            .unwrap()
            .peer(sim.peer_id(a, 2).unwrap())
            .unwrap();
        assert_ne!(peer.incarnation(), old);
        assert!(peer.rtt().map_or(0, |r| r.samples) < 10, "stats were reset");
    }
}

#[test]
fn liveness_checks_of_peers_heard_together_share_a_wake_up() {
    // 21 nodes in one heartbeat slot: each node's 20 peers ping it, and answer it, in one
    // burst an interval. Their liveness checks are due `suspect_after` after that burst;
    // with one timer each, that was ~7 extra wake-ups a second on top of the slot's one.
    let interval = Duration::from_secs(1);
    let mut sim = Sim::with_nodes(21, interval, 11);
    sim.set_default_link(Link::latency(ms(1)).with_jitter(ms(2)));
    sim.run_for(Duration::from_secs(10));
    assert!(all_alive(&sim));
    let before: Vec<u64> = (0..sim.len()).map(|i| sim.timer_wakeups(i)).collect();
    let seconds = 60;
    sim.run_for(Duration::from_secs(seconds));
    assert!(all_alive(&sim), "nobody was suspected along the way");
    for (i, before) in before.iter().enumerate() {
        let per_interval = (sim.timer_wakeups(i) - before) as f64 / seconds as f64;
        // One slot wake-up an interval, plus one liveness wake-up per `suspect_after` (3
        // intervals), two when the burst straddles a grain boundary.
        assert!(
            (1.0..=1.7).contains(&per_interval),
            "node{i}: {per_interval:.2} timer wake-ups per interval"
        );
    }
}

#[test]
fn a_pause_shorter_than_dead_after_is_suspect_then_alive_never_dead() {
    let mut sim = Sim::with_nodes(5, INTERVAL, 5);
    sim.set_default_link(Link::latency(ms(1)));
    sim.run_for(Duration::from_secs(2));
    let paused_at = sim.elapsed();
    sim.pause(3);
    assert_eq!(sim.status(3), NodeStatus::Paused);
    // Silence is counted from the last datagram, up to an interval before the pause:
    // 350 ms of pause is 350-450 ms of silence, past suspect_after, short of dead_after.
    sim.run_for(ms(350));
    for a in [0, 1, 2, 4] {
        assert_eq!(sim.state(a, 3), Some(PeerState::Suspect), "node{a}");
    }
    sim.resume(3);
    assert!(sim.run_until(INTERVAL * 2, all_alive));
    sim.run_for(Duration::from_secs(2));
    assert!(all_alive(&sim));
    for a in [0, 1, 2, 4] {
        assert!(first_event(&sim, a, 3, paused_at, |e| matches!(e, Event::Down(_))).is_none());
        assert!(first_event(&sim, a, 3, paused_at, |e| matches!(e, Event::Up(_))).is_some());
    }
    // The paused node itself judged the others only by what it read on waking: it never
    // declared anyone dead either.
    for b in [0, 1, 2, 4] {
        assert!(first_event(&sim, 3, b, paused_at, |e| matches!(e, Event::Down(_))).is_none());
    }
}

#[test]
fn a_partition_kills_the_far_side_and_healing_revives_it() {
    let mut sim = Sim::with_nodes(5, INTERVAL, 6);
    sim.set_default_link(Link::latency(ms(1)));
    sim.run_for(Duration::from_secs(1));
    sim.partition(&[&[0, 1], &[2, 3, 4]]);
    sim.run_for(DEAD + INTERVAL * 2);
    for a in 0..5 {
        for b in 0..5 {
            if a == b {
                continue;
            }
            let same_side = (a < 2) == (b < 2);
            let want = if same_side {
                PeerState::Alive
            } else {
                PeerState::Dead
            };
            assert_eq!(sim.state(a, b), Some(want), "node{a} about node{b}");
        }
    }
    sim.heal();
    assert!(
        sim.run_until(INTERVAL * 2, all_alive),
        "healed within two intervals"
    );
}

#[test]
fn leave_is_reported_as_left_everywhere_not_dead() {
    let mut sim = Sim::with_nodes(5, INTERVAL, 7);
    sim.set_default_link(Link::latency(ms(1)));
    sim.run_for(Duration::from_secs(1));
    let left_at = sim.elapsed();
    sim.leave(4);
    sim.run_for(DEAD * 4);
    for a in 0..4 {
        assert_eq!(sim.state(a, 4), Some(PeerState::Left), "node{a}");
        assert!(first_event(&sim, a, 4, left_at, |e| matches!(e, Event::Left(_))).is_some());
        assert!(first_event(&sim, a, 4, left_at, |e| matches!(e, Event::Suspect(_))).is_none());
    }
    // Coming back as a new process makes it alive again.
    sim.restart(4);
    assert!(sim.run_until(INTERVAL * 3, all_alive));
}

#[test]
fn a_node_started_after_a_peer_left_shows_it_left_as_the_others_saw_it() {
    let mut sim = Sim::with_nodes(4, INTERVAL, 12);
    assert!(sim.run_until(ms(3000), all_alive));
    sim.leave(3);
    assert!(sim.run_until(ms(1000), |s| {
        (0..3).all(|i| s.state(i, 3) == Some(PeerState::Left))
    }));
    // node0 restarts: it never hears node3, whose goodbye it missed.
    sim.restart(0);
    let restarted = sim.elapsed();
    let judged = sim.run_until(ms(2000), |s| s.state(0, 3) == Some(PeerState::Left));
    assert!(
        judged,
        "node0 still shows node3 {:?} though the others' rows say left",
        sim.state(0, 3)
    );
    // Within a few intervals: once the others' rows have reached it.
    assert!(
        sim.elapsed() - restarted <= ms(1000),
        "{:?}",
        sim.elapsed() - restarted
    );
    let id = sim.peer_id(0, 3).expect("node3");
    assert_eq!(
        sim.mesh(0).and_then(|m| m.diagnosis(id)),
        Some(peermesh::Diagnosis::Left)
    );
    // A verdict of witnesses, not a goodbye: when node3 comes back, it is alive again.
    sim.restart(3);
    assert!(sim.run_until(ms(2000), |s| s.state(0, 3) == Some(PeerState::Alive)));
    assert!(sim.run_until(ms(2000), all_alive));
}

#[test]
fn a_peer_taken_for_left_by_witnesses_is_not_left_once_they_hear_it_again() {
    let mut sim = Sim::with_nodes(4, INTERVAL, 13);
    assert!(sim.run_until(ms(3000), all_alive));
    sim.leave(3);
    sim.run_for(ms(500));
    sim.restart(0);
    assert!(sim.run_until(ms(2000), |s| s.state(0, 3) == Some(PeerState::Left)));
    // node3 comes back, but the path between it and node0 is broken both ways: node0
    // cannot hear it, and the others' rows now say alive.
    sim.set_link(0, 3, Link::latency(ms(1)).with_loss(1.0));
    sim.restart(3);
    let judged = sim.run_until(ms(2000), |s| {
        let id = s.peer_id(0, 3).expect("node3");
        s.mesh(0).and_then(|m| m.diagnosis(id)) == Some(peermesh::Diagnosis::Unreachable)
    });
    assert!(judged, "node0 shows node3 {:?}", sim.state(0, 3));
    assert_ne!(sim.state(0, 3), Some(PeerState::Left));
}

fn eventful_run(seed: u64) -> String {
    let mut sim = Sim::with_nodes(6, INTERVAL, seed);
    sim.set_default_link(Link::latency(ms(2)).with_jitter(ms(3)).with_loss(0.05));
    sim.run_for(Duration::from_secs(2));
    sim.crash(1);
    sim.pause(2);
    sim.run_for(ms(700));
    sim.resume(2);
    sim.partition(&[&[0, 3], &[4, 5]]);
    sim.run_for(Duration::from_secs(1));
    sim.heal();
    sim.restart(1);
    sim.leave(5);
    sim.run_for(Duration::from_secs(2));
    let mut text = sim.trace_text();
    for a in 0..sim.len() {
        for b in 0..sim.len() {
            text.push_str(&format!(
                "{a}->{b}: {:?} {:?}\n",
                sim.state(a, b),
                sim.rtt_p50(a, b)
            ));
        }
    }
    text
}

#[test]
fn same_seed_same_inputs_give_a_byte_identical_trace() {
    let first = eventful_run(99);
    assert_eq!(first, eventful_run(99));
    assert!(first.lines().count() > 50, "the run is eventful:\n{first}");
    assert_ne!(first, eventful_run(100), "the seed matters");
}
