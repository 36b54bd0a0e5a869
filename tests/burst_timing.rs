//! A synchronised burst replayed against the core, with known kernel stamps and send times:
//! the timing contract the driver (`src/io/driver.rs`) relies on, exact to the nanosecond.
//!
//! Issue 12, item 11: ten nodes share one heartbeat slot, so one wake-up of a node reads a
//! `recvmmsg` batch of pings and pongs together and answers the pings one after the other.
//! The driver hands each datagram to the core with its *kernel* arrival time and asks for
//! the answer right after, stamping it with the time of that send. Then:
//! - a pong's hold runs from its own ping's arrival to its own send, however many datagrams
//!   came before it in the batch and however long the earlier sends took;
//! - a ping's send stamp is the time of its own send, not of the wake-up or of the first
//!   datagram of the burst;
//! - an RTT is the pong's arrival less the ping's send less the peer's hold, whatever the
//!   order in which the batch's datagrams are handled and however late it is read.

use peermesh::wire::{Body, Packet};
use peermesh::{Mesh, Settings};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_millis(500);
const PEERS: usize = 4;

fn settings(incarnation: u64) -> Settings {
    Settings {
        heartbeat_interval: INTERVAL,
        suspect_after: INTERVAL * 3,
        dead_after: INTERVAL * 5,
        max_datagram: 1232,
        incarnation,
        seed: incarnation,
        probe_mode: peermesh::core::ProbeMode::Auto,
        probe_fanout: peermesh::core::DEFAULT_PROBE_FANOUT,
    }
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 2 + i as u8], 1313))
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// Node 0 is the one under test ("hub"); nodes 1..=PEERS each know only the hub.
fn mesh(now: Instant) -> Vec<Mesh> {
    let mut nodes = Vec::new();
    let mut hub = Mesh::new("hub", settings(100), now);
    for i in 1..=PEERS {
        hub.add_peer(&format!("p{i}"), addr(i));
        let mut peer = Mesh::new(&format!("p{i}"), settings(100 + i as u64), now);
        peer.add_peer("hub", addr(0));
        nodes.push(peer);
    }
    nodes.insert(0, hub);
    nodes
}

/// Every datagram `node` wants to send, each stamped at the next of `clock`'s send times.
fn drain(node: &mut Mesh, clock: &mut impl FnMut() -> Instant) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut buf = vec![0; 1232];
    let mut out = Vec::new();
    while node.has_transmit() {
        let Some(t) = node.poll_transmit(clock(), &mut buf) else {
            break;
        };
        out.push((t.dst, buf[..t.len].to_vec()));
    }
    out
}

#[test]
fn a_burst_read_in_one_wake_up_gives_exact_holds_and_rtts() {
    let start = Instant::now();
    let mut nodes = mesh(start);
    // The slot of every node: all due at once (each node's jitter is drawn from the shared
    // interval number; their clocks all start at `start` here).
    let slot = nodes
        .iter()
        .map(|n| n.poll_timeout().expect("a heartbeat is due"))
        .max()
        .expect("nodes");

    // 1. The hub's wake-up at the slot: four pings, sent 30 µs apart (each sendto runs the
    //    receiver's softirq on loopback). Each carries its own send time.
    let mut t = slot + us(200); // woken 200 µs late
    nodes[0].handle_timeout(t);
    let mut hub_sends = Vec::new();
    let hub_pings = drain(&mut nodes[0], &mut || {
        t += us(30);
        hub_sends.push(t);
        t
    });
    assert_eq!(hub_pings.len(), PEERS, "one ping per peer");

    // 2. Each peer pings the hub in the same slot and receives the hub's ping; it answers
    //    at once. Peer i's ping reaches the hub's socket at arrival[i]; its pong to the hub's
    //    ping leaves peer i `peer_hold[i]` after that ping reached it.
    let one_way = [us(3_500), us(13_500), us(14_000), us(45_500)];
    let peer_hold = [us(40), us(1_700), us(65), us(2_900)];
    let mut to_hub = Vec::new(); // (kernel arrival at the hub, from, bytes)
    for i in 1..=PEERS {
        let peer = &mut nodes[i];
        let mut pt = slot + us(10 * i as u64);
        peer.handle_timeout(pt);
        for (dst, bytes) in drain(peer, &mut || {
            pt += us(25);
            pt
        }) {
            assert_eq!(dst, addr(0));
            to_hub.push((pt + one_way[i - 1], addr(i), bytes));
        }
        let (_, ping) = &hub_pings[i - 1];
        let arrived = hub_sends[i - 1] + one_way[i - 1];
        peer.handle_datagram(arrived, addr(0), ping);
        let send = arrived + peer_hold[i - 1];
        for (dst, bytes) in drain(peer, &mut || send) {
            assert_eq!(dst, addr(0));
            to_hub.push((send + one_way[i - 1], addr(i), bytes));
        }
    }

    // 3. The hub is busy (or descheduled) and reads everything in ONE batch, 50 ms after the
    //    last of it arrived, in the socket's order: arrival order.
    to_hub.sort_by_key(|(at, _, _)| *at);
    let last = to_hub
        .iter()
        .map(|(at, _, _)| *at)
        .max()
        .expect("datagrams");
    let mut read = last + Duration::from_millis(50);
    let mut answers = Vec::new(); // (hold the pong carries, the hold it must carry)
    for (arrived, from, bytes) in &to_hub {
        nodes[0].handle_datagram(*arrived, *from, bytes);
        // Each answer goes out after the ones before it: 20 µs a send.
        for (_, pong) in drain(&mut nodes[0], &mut || {
            read += us(20);
            read
        }) {
            let packet = Packet::parse(&pong).expect("a pong");
            let Body::Pong { hold_us, .. } = packet.body else {
                panic!("the hub answers a ping with a pong: {packet:?}");
            };
            answers.push((hold_us, read - *arrived));
        }
    }
    assert_eq!(answers.len(), PEERS, "every peer's ping answered");
    for (carried, held) in &answers {
        assert_eq!(
            u128::from(*carried),
            held.as_micros(),
            "a hold runs from the ping's own arrival to its own send"
        );
    }

    // The hub's RTT to each peer: the pong's arrival less the ping's own send less the
    // peer's hold, to the nanosecond (the holds are whole microseconds).
    for i in 1..=PEERS {
        let id = nodes[0].peer_by_name(&format!("p{i}")).expect("a peer");
        let rtt = nodes[0]
            .peer(id)
            .and_then(|p| p.rtt())
            .unwrap_or_else(|| panic!("no RTT to p{i}"));
        assert_eq!(rtt.samples, 1);
        assert_eq!(
            rtt.last,
            one_way[i - 1] * 2,
            "p{i}: the round trip is the two one-way delays, nothing of the burst"
        );
    }
}
