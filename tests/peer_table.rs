//! Peers added and removed at run time: generational ids, matrix rows and columns that
//! follow the nodes rather than positions, and embedders who build a mesh by hand.

use peermesh::sim::Sim;
use peermesh::{Event, Mesh, PeerId, PeerState, SendError, Settings};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_millis(100);

fn addr_of(sim: &Sim, i: usize) -> SocketAddr {
    let node = &sim.config().nodes[i];
    SocketAddr::new(
        node.host.parse().expect("sim hosts are IP literals"),
        node.port,
    )
}

/// Every pair among `nodes` measured in `i`'s matrix, and nothing else listed.
fn matrix_covers(sim: &Sim, i: usize, nodes: &[usize]) -> bool {
    let Some(view) = sim.mesh(i).map(Mesh::matrix) else {
        return false;
    };
    let names: Vec<String> = nodes.iter().map(|&n| format!("node{n}")).collect();
    let mut listed = view.nodes.clone();
    listed.sort();
    let mut wanted = names.clone();
    wanted.sort();
    listed == wanted
        && (0..view.nodes.len())
            .all(|a| (0..view.nodes.len()).all(|b| a == b || view.rtt_us[a][b].is_some()))
}

#[test]
fn a_removed_peer_is_gone_everywhere_and_a_new_one_fills_its_row_and_column() {
    // node10 is the newcomer: down and unknown to everyone until it is added.
    let mut sim = Sim::with_nodes(11, INTERVAL, 7);
    sim.crash(10);
    for i in 0..10 {
        let id = sim.peer_id(i, 10).expect("in the config");
        assert!(sim.with_mesh(i, |m| m.remove_peer(id)).flatten().is_some());
    }
    let ten: Vec<usize> = (0..10).collect();
    assert!(
        sim.run_until(Duration::from_secs(10), |s| ten
            .iter()
            .all(|&i| matrix_covers(s, i, &ten))),
        "the 10-node mesh never filled its matrix"
    );

    // node9 retires: removed from every table, then stopped.
    let removed: Vec<(usize, PeerId)> = (0..9)
        .map(|i| (i, sim.peer_id(i, 9).expect("a peer")))
        .collect();
    for &(i, id) in &removed {
        let peer = sim
            .with_mesh(i, |m| m.remove_peer(id))
            .flatten()
            .expect("removed");
        assert_eq!(peer.name(), "node9");
    }
    let removed_at = sim.elapsed();
    sim.crash(9);
    // node10 joins: started, added by everyone; it does not know node9 either.
    sim.restart(10);
    let nine = sim.peer_id(10, 9).expect("in node10's config");
    sim.with_mesh(10, |m| m.remove_peer(nine));
    let ten_addr = addr_of(&sim, 10);
    for i in 0..9 {
        let id = sim
            .with_mesh(i, |m| m.add_peer("node10", ten_addr))
            .flatten();
        let id = id.expect("added");
        assert!(
            removed.iter().all(|&(_, old)| old != id),
            "a new peer got a removed peer's id"
        );
    }
    let now: Vec<usize> = (0..9).chain([10]).collect();
    assert!(
        sim.run_until(Duration::from_secs(10), |s| now
            .iter()
            .all(|&i| matrix_covers(s, i, &now))),
        "node10's row and column never filled in"
    );
    sim.run_for(INTERVAL * 20);

    // After the removal, each node says once that node9 was removed, and nothing else
    // refers to it, in any node's events or matrix.
    let mut told = 0;
    for record in sim.trace().iter().filter(|r| r.at >= removed_at) {
        if let Some(&(_, id)) = removed.iter().find(|&&(i, _)| i == record.node) {
            if record.event
                == (peermesh::Event::Removed {
                    peer: id,
                    name: "node9".into(),
                })
            {
                told += 1;
                continue;
            }
            assert_ne!(
                record.event.peer(),
                Some(id),
                "event about the removed peer: {record}"
            );
        }
    }
    assert_eq!(told, removed.len(), "one Removed event per node");
    for &i in &now {
        let view = sim.mesh(i).expect("running").matrix();
        assert!(
            !view.nodes.iter().any(|n| n == "node9"),
            "node{i} lists node9"
        );
        assert_eq!(view.nodes[view.own], format!("node{i}"));
        let mesh = sim.mesh(i).expect("running");
        for (id, peer) in mesh.peers() {
            let index = mesh.matrix_index(id).expect("listed");
            assert_eq!(view.nodes[index], peer.name());
            assert_eq!(mesh.peer_at(index), Some(id));
            assert_eq!(
                peer.state(),
                PeerState::Alive,
                "node{i} sees {}",
                peer.name()
            );
        }
    }

    // A removed peer's id is refused by every call that takes one.
    for &(i, id) in &removed {
        let refused = sim.with_mesh(i, |m| {
            let send = m.send(id, b"x", peermesh::Delivery::BestEffort);
            (
                m.peer(id).is_none(),
                m.diagnosis(id).is_none(),
                m.loss_pct(id).is_none(),
                m.matrix_index(id).is_none(),
                send == Err(SendError::UnknownPeer(id)),
                m.remove_peer(id).is_none(),
            )
        });
        assert_eq!(
            refused,
            Some((true, true, true, true, true, true)),
            "node{i}"
        );
    }
}

/// Three cores built by hand (no config), wired by an in-test network that delivers every
/// datagram after 200 µs.
struct Hand {
    meshes: Vec<Mesh>,
    addrs: Vec<SocketAddr>,
    now: Instant,
    queue: VecDeque<(Instant, usize, SocketAddr, Vec<u8>)>,
}

impl Hand {
    fn step_until(&mut self, limit: Duration, done: impl Fn(&Hand) -> bool) -> bool {
        let end = self.now + limit;
        let mut buf = vec![0u8; 1500];
        for _ in 0..1_000_000 {
            if done(self) {
                return true;
            }
            for (i, mesh) in self.meshes.iter_mut().enumerate() {
                while let Some(t) = mesh.poll_transmit(self.now, &mut buf) {
                    if let Some(to) = self.addrs.iter().position(|a| *a == t.dst) {
                        let at = self.now + Duration::from_micros(200);
                        self.queue
                            .push_back((at, to, self.addrs[i], buf[..t.len].to_vec()));
                    }
                }
                while mesh.poll_event().is_some() {}
            }
            let next_timer = self.meshes.iter().filter_map(Mesh::poll_timeout).min();
            let next_flight = self.queue.front().map(|f| f.0);
            let Some(next) = [next_timer, next_flight].into_iter().flatten().min() else {
                return false;
            };
            if next > end {
                return false;
            }
            self.now = self.now.max(next);
            while self.queue.front().is_some_and(|f| f.0 <= self.now) {
                if let Some((_, to, from, bytes)) = self.queue.pop_front() {
                    self.meshes[to].handle_datagram(self.now, from, &bytes);
                }
            }
            for mesh in &mut self.meshes {
                mesh.handle_timeout(self.now);
            }
        }
        false
    }
}

#[test]
fn a_mesh_built_by_hand_lists_itself_first_and_its_peers_in_the_order_added() {
    let settings = |seed| Settings {
        heartbeat_interval: INTERVAL,
        suspect_after: INTERVAL * 3,
        dead_after: INTERVAL * 5,
        max_datagram: 1232,
        incarnation: 0x100 + seed,
        seed,
        probe_mode: peermesh::core::ProbeMode::Auto,
        probe_fanout: peermesh::core::DEFAULT_PROBE_FANOUT,
    };
    let names = ["alpha", "beta", "gamma"];
    let addrs: Vec<SocketAddr> = (0..3)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], 2000 + i as u16)))
        .collect();
    let start = Instant::now();
    let mut meshes = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut mesh = Mesh::new(name, settings(i as u64), start);
        // Each adds the others in a different order; none names itself.
        for j in (0..3).rev().filter(|&j| j != i) {
            mesh.add_peer(names[j], addrs[j]).expect("a peer");
        }
        meshes.push(mesh);
    }
    let mut hand = Hand {
        meshes,
        addrs,
        now: start,
        queue: VecDeque::new(),
    };
    let full = |h: &Hand| {
        h.meshes.iter().all(|m| {
            let v = m.matrix();
            (0..3).all(|a| (0..3).all(|b| a == b || v.rtt_us[a][b].is_some()))
        })
    };
    assert!(
        hand.step_until(Duration::from_secs(5), full),
        "matrix never filled"
    );
    for (i, mesh) in hand.meshes.iter().enumerate() {
        let view = mesh.matrix();
        let expected: Vec<&str> = std::iter::once(names[i])
            .chain((0..3).rev().filter(|&j| j != i).map(|j| names[j]))
            .collect();
        assert_eq!(view.nodes, expected, "{}'s listing", names[i]);
        assert_eq!(view.own, 0);
        for (id, peer) in mesh.peers() {
            let index = mesh.matrix_index(id).expect("listed");
            assert_eq!(view.nodes[index], peer.name());
            // The cell from this node to the peer is this node's own measurement.
            let own = peer.rtt().map(|r| r.p50.as_nanos() as f64 / 1000.0);
            assert_eq!(view.rtt_us[0][index], own);
            // And the peer's row, as it shared it, measures this node: its column 0 here.
            let back = view.rtt_us[index][0].expect("shared");
            assert!(back > 0.0);
        }
    }
    // Naming itself places a node in the listing: alpha moves to the end.
    let mut alpha = Mesh::new("alpha", settings(9), start);
    alpha.add_peer("beta", hand.addrs[1]);
    assert_eq!(alpha.add_peer("alpha", hand.addrs[0]), None);
    assert_eq!(alpha.matrix().nodes, ["beta", "alpha"]);
    assert_eq!(alpha.matrix().own, 1);
    let events: Vec<Event> = std::iter::from_fn(|| alpha.poll_event()).collect();
    assert!(events.is_empty(), "{events:?}");
}
