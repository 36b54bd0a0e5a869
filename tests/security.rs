//! Authentication, replay protection and rotation, on hand-driven cores and the simulator.

use peermesh::sim::{Link, Sim};
use peermesh::wire::keyring::{Key, Keyring};
use peermesh::wire::seal::{SEAL_HEADER_LEN, SEAL_OVERHEAD};
use peermesh::{DropReason, Mesh, PeerState, Settings};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_millis(100);

fn ring(keys: &[u8]) -> Option<Keyring> {
    Keyring::new(keys.iter().map(|&b| Key::new(&[b; 32])).collect())
}

fn all_alive(sim: &Sim, nodes: &[usize]) -> bool {
    nodes.iter().all(|&a| {
        nodes
            .iter()
            .all(|&b| a == b || sim.state(a, b) == Some(PeerState::Alive))
    })
}

#[test]
fn a_node_with_the_wrong_key_is_never_admitted() {
    let mut sim = Sim::with_nodes(5, INTERVAL, 21);
    sim.set_default_link(Link::latency(Duration::from_millis(1)));
    for i in 0..4 {
        sim.set_keyring(i, ring(&[1]));
    }
    sim.set_keyring(4, ring(&[2]));
    sim.run_for(INTERVAL * 50);
    assert!(all_alive(&sim, &[0, 1, 2, 3]));
    for i in 0..4 {
        assert_eq!(
            sim.state(i, 4),
            Some(PeerState::Unknown),
            "node{i} admitted the intruder"
        );
        assert_eq!(sim.state(4, i), Some(PeerState::Unknown));
        let mesh = sim.mesh(i).unwrap();
        assert!(
            mesh.dropped().get(DropReason::AuthFailed) >= 40,
            "{:?}",
            mesh.dropped()
        );
        // Its latency row cannot be faked into the matrix either.
        let view = mesh.matrix();
        assert!(view.rtt_us[4].iter().all(Option::is_none));
    }
    // A node without any keyring is not admitted either, and does not admit.
    sim.set_keyring(4, None);
    sim.run_for(INTERVAL * 10);
    assert_eq!(sim.state(0, 4), Some(PeerState::Unknown));
}

#[test]
fn keys_rotate_in_three_steps_with_every_peer_alive_throughout() {
    let nodes = [0, 1, 2, 3, 4];
    let mut sim = Sim::with_nodes(5, INTERVAL, 22);
    sim.set_default_link(Link::latency(Duration::from_millis(1)));
    for i in nodes {
        sim.set_keyring(i, ring(&[1]));
    }
    sim.run_for(INTERVAL * 10);
    assert!(all_alive(&sim, &nodes));
    // 1. add the new key everywhere (old still sealing) -- one node at a time;
    // 2. make the new key primary everywhere; 3. remove the old one.
    let steps: [&[u8]; 3] = [&[1, 2], &[2, 1], &[2]];
    for keys in steps {
        for i in nodes {
            sim.set_keyring(i, ring(keys));
            sim.run_for(INTERVAL * 2);
            assert!(all_alive(&sim, &nodes), "after node{i} took keys {keys:?}");
        }
    }
    assert!(sim
        .trace()
        .iter()
        .all(|r| !matches!(r.event, peermesh::Event::Suspect(_))));
    for i in nodes {
        assert_eq!(
            sim.mesh(i).unwrap().dropped().get(DropReason::AuthFailed),
            0
        );
    }
}

fn settings(incarnation: u64) -> Settings {
    Settings {
        heartbeat_interval: INTERVAL,
        suspect_after: INTERVAL * 3,
        dead_after: INTERVAL * 5,
        max_datagram: 1232,
        incarnation,
        seed: 1,
        probe_mode: peermesh::core::ProbeMode::Auto,
        probe_fanout: peermesh::core::DEFAULT_PROBE_FANOUT,
    }
}

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last], 1313))
}

/// One sealed ping from a to b.
fn sealed_ping(a: &mut Mesh, now: &mut Instant) -> Vec<u8> {
    let mut buf = vec![0u8; 1232];
    for _ in 0..100 {
        *now = a.poll_timeout().unwrap().max(*now);
        a.handle_timeout(*now);
        if let Some(t) = a.poll_transmit(*now, &mut buf) {
            return buf[..t.len].to_vec();
        }
    }
    panic!("no ping");
}

/// The next ping from `a` once `a` has verified `b`: a's first ping (naming no incarnation of
/// b) is answered by b, and that pong teaches a b's incarnation, which later pings name.
fn believed_ping(a: &mut Mesh, b: &mut Mesh, now: &mut Instant) -> Vec<u8> {
    let mut buf = vec![0u8; 1232];
    while b.poll_transmit(*now, &mut buf).is_some() {} // answers to earlier tests' datagrams
    let first = sealed_ping(a, now);
    b.handle_datagram(*now, addr(1), &first);
    let pong = b.poll_transmit(*now, &mut buf).expect("b answers");
    a.handle_datagram(*now, addr(2), &buf[..pong.len]);
    while b.poll_event().is_some() {}
    sealed_ping(a, now)
}

#[test]
fn forged_truncated_flipped_and_replayed_datagrams_are_dropped_and_counted() {
    let mut now = Instant::now();
    let mut a = Mesh::new("a", settings(1 << 20), now);
    let mut b = Mesh::new("b", settings(2 << 20), now);
    a.add_peer("b", addr(2));
    let from_a = b.add_peer("a", addr(1)).unwrap();
    a.set_keyring(ring(&[9]));
    b.set_keyring(ring(&[9]));
    let ping = believed_ping(&mut a, &mut b, &mut now);
    assert!(ping.len() > SEAL_OVERHEAD);
    b.handle_datagram(now, addr(1), &ping);
    assert_eq!(b.peer(from_a).unwrap().state(), PeerState::Alive);
    let received = b.peer(from_a).unwrap().received();

    // Replayed: the very same bytes again.
    b.handle_datagram(now, addr(1), &ping);
    assert_eq!(b.dropped().get(DropReason::Replayed), 1);
    // Truncated at every length.
    for cut in 0..ping.len() {
        b.handle_datagram(now, addr(1), &ping[..cut]);
    }
    // Every single bit flipped.
    for bit in 0..ping.len() * 8 {
        let mut bad = ping.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        b.handle_datagram(now, addr(1), &bad);
    }
    // Forged: a plain datagram, and one sealed with another key.
    let mut c = Mesh::new("a", settings(3 << 20), now);
    c.add_peer("b", addr(2));
    let plain = sealed_ping(&mut c, &mut now);
    b.handle_datagram(now, addr(1), &plain);
    c.set_keyring(ring(&[10]));
    let wrong = sealed_ping(&mut c, &mut now);
    b.handle_datagram(now, addr(1), &wrong);

    let d = b.dropped();
    let rejected = ping.len() + ping.len() * 8 + 2;
    let counted = d.get(DropReason::AuthFailed)
        + d.get(DropReason::Malformed)
        + d.get(DropReason::WrongVersion);
    // A flip in the magic/version/kind bytes makes it plain (auth_failed) or foreign
    // (malformed / wrong version): either way dropped and counted, never admitted.
    assert_eq!(counted as usize, rejected, "{d:?}");
    assert_eq!(
        b.peer(from_a).unwrap().received(),
        received,
        "nothing more was admitted"
    );
    assert_eq!(b.peer(from_a).unwrap().incarnation(), Some(1 << 20));
    assert!(d.get(DropReason::AuthFailed) as usize >= ping.len() * 8 - 32);
    // The seal header sits before the ciphertext.
    assert!(SEAL_HEADER_LEN < ping.len());
}

#[test]
fn an_old_incarnation_replayed_cannot_pose_as_a_restart() {
    let mut now = Instant::now();
    let mut old = Mesh::new("a", settings(5 << 20), now);
    old.add_peer("b", addr(2));
    old.set_keyring(ring(&[3]));
    let mut new = Mesh::new("a", settings(6 << 20), now);
    new.add_peer("b", addr(2));
    new.set_keyring(ring(&[3]));
    let mut b = Mesh::new("b", settings(7 << 20), now);
    let a = b.add_peer("a", addr(1)).unwrap();
    b.set_keyring(ring(&[3]));
    // Captured from the old process while b was running: it names b's incarnation.
    let captured = believed_ping(&mut old, &mut b, &mut now);
    b.handle_datagram(now, addr(1), &captured);
    assert_eq!(b.peer(a).unwrap().incarnation(), Some(5 << 20));
    let ping = believed_ping(&mut new, &mut b, &mut now);
    b.handle_datagram(now, addr(1), &ping);
    assert_eq!(b.peer(a).unwrap().incarnation(), Some(6 << 20));
    b.handle_datagram(now, addr(1), &captured);
    assert_eq!(b.peer(a).unwrap().incarnation(), Some(6 << 20));
    assert_eq!(b.dropped().get(DropReason::StaleIncarnation), 1);
    while b.poll_event().is_some() {}
}

#[test]
fn without_a_keyring_only_configured_addresses_are_heard() {
    let mut now = Instant::now();
    let mut a = Mesh::new("a", settings(1 << 20), now);
    a.add_peer("b", addr(2));
    let mut b = Mesh::new("b", settings(2 << 20), now);
    let peer = b.add_peer("a", addr(1)).unwrap();
    let ping = believed_ping(&mut a, &mut b, &mut now);
    // The right bytes from the wrong address: refused.
    b.handle_datagram(now, addr(66), &ping);
    assert_eq!(b.dropped().get(DropReason::AddressNotAllowed), 1);
    assert_eq!(b.peer(peer).unwrap().state(), PeerState::Unknown);
    // From the configured address (another port is fine): heard.
    b.handle_datagram(now, SocketAddr::from(([127, 0, 0, 1], 5000)), &ping);
    assert_eq!(b.peer(peer).unwrap().state(), PeerState::Alive);
}

/// A key holder cannot speak for another node: the seal names its sender and incarnation
/// (the authenticated nonce), and they must be the ones of the datagram inside.
#[test]
fn a_seal_must_name_the_sender_of_the_datagram_inside() {
    use peermesh::wire::seal::seal;
    use peermesh::wire::{Body, Header, Packet};
    use peermesh::{Event, NodeId};
    let mut now = Instant::now();
    let mut a = Mesh::new("a", settings(1 << 20), now);
    a.add_peer("b", addr(2));
    let mut b = Mesh::new("b", settings(2 << 20), now);
    let from_a = b.add_peer("a", addr(1)).unwrap();
    b.add_peer("c", addr(3));
    a.set_keyring(ring(&[5]));
    b.set_keyring(ring(&[5]));
    let _ = believed_ping(&mut a, &mut b, &mut now);
    // A datagram "from a", fresh and well-formed, sealed under c's name and incarnation.
    let header = Header {
        from: NodeId::from_name("a"),
        incarnation: 1 << 20,
        to: NodeId::from_name("b"),
        to_incarnation: 2 << 20,
        seq: 100,
    };
    let body = Body::Fragment(peermesh::wire::Fragment {
        message: 1,
        flags: 0,
        channel: 0,
        index: 0,
        count: 1,
        total_len: 6,
        data: b"i am a",
    });
    let mut buf = vec![0u8; 256];
    let inner = Packet { header, body }
        .emit(&mut buf[SEAL_HEADER_LEN..])
        .unwrap();
    let keys = ring(&[5]).unwrap();
    let c = NodeId::from_name("c").0;
    let n = seal(&keys, c, 1 << 20, 77, &mut buf, inner).unwrap();
    let received = b.peer(from_a).unwrap().received();
    b.handle_datagram(now, addr(3), &buf[..n]);
    assert_eq!(b.dropped().get(DropReason::AuthFailed), 1);
    assert_eq!(b.peer(from_a).unwrap().received(), received);
    assert!(std::iter::from_fn(|| b.poll_event()).all(|e| !matches!(e, Event::Message { .. })));
}
