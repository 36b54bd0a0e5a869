//! The core's contract, driven by hand: two nodes, a virtual clock, bytes passed between them.

use peermesh::wire::keyring::{Key, Keyring};
use peermesh::wire::{Body, Header, Packet, PING_LEN};
use peermesh::{Delivery, DropReason, Event, Mesh, NodeId, PeerState, SendError, Settings};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_millis(100);

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

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last], 1313))
}

struct Pair {
    a: Mesh,
    b: Mesh,
    now: Instant,
    buf: Vec<u8>,
}

impl Pair {
    fn new() -> Pair {
        let now = Instant::now();
        let mut a = Mesh::new("a", settings(1), now);
        let mut b = Mesh::new("b", settings(2), now);
        a.add_peer("b", addr(2));
        b.add_peer("a", addr(1));
        Pair {
            a,
            b,
            now,
            buf: vec![0; 1232],
        }
    }

    /// Runs both timers up to `now`, returning what each wants to send (unsent).
    fn collect(&mut self, which: char) -> Vec<(SocketAddr, Vec<u8>)> {
        let now = self.now;
        let mesh = if which == 'a' {
            &mut self.a
        } else {
            &mut self.b
        };
        mesh.handle_timeout(now);
        let mut out = Vec::new();
        while let Some(t) = mesh.poll_transmit(now, &mut self.buf) {
            out.push((t.dst, self.buf[..t.len].to_vec()));
        }
        out
    }

    /// Lets a and b exchange datagrams until each has verified the other (each has heard a
    /// datagram that names its own incarnation), then forgets the events that produced.
    fn introduce(&mut self) {
        for _ in 0..20 {
            let ka = self.b.peer_by_name("a").unwrap();
            let kb = self.a.peer_by_name("b").unwrap();
            if self.a.peer(kb).unwrap().state() == PeerState::Alive
                && self.b.peer(ka).unwrap().state() == PeerState::Alive
                && !self.a.has_transmit()
                && !self.b.has_transmit()
            {
                while self.a.poll_event().is_some() {}
                while self.b.poll_event().is_some() {}
                return;
            }
            if !self.a.has_transmit() && !self.b.has_transmit() {
                self.now = [self.a.poll_timeout(), self.b.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap()
                    .max(self.now);
            }
            for (_, bytes) in self.collect('a') {
                self.b.handle_datagram(self.now, addr(1), &bytes);
            }
            for (_, bytes) in self.collect('b') {
                self.a.handle_datagram(self.now, addr(2), &bytes);
            }
        }
        panic!("a and b never verified each other");
    }

    fn advance_to_next_ping_of_a(&mut self) -> Vec<u8> {
        for _ in 0..1000 {
            self.now = self.a.poll_timeout().unwrap().max(self.now);
            let out = self.collect('a');
            if let Some((dst, bytes)) = out.into_iter().next() {
                assert_eq!(dst, addr(2));
                return bytes;
            }
        }
        panic!("a never pinged");
    }
}

#[test]
fn a_first_ping_is_answered_but_believed_only_once_it_names_the_receivers_incarnation() {
    let mut p = Pair::new();
    let ka = p.b.peer_by_name("a").unwrap();
    let kb = p.a.peer_by_name("b").unwrap();
    // a has not heard b yet: its ping names no incarnation of b, so it proves nothing
    // about when it was made (it could be a capture from before b started).
    let ping = p.advance_to_next_ping_of_a();
    p.b.handle_datagram(p.now, addr(1), &ping);
    assert_eq!(p.b.peer(ka).unwrap().state(), PeerState::Unknown);
    // Naming no incarnation at all, it is the handshake's first step: not a drop.
    assert_eq!(p.b.dropped().total(), 0);
    assert_eq!(p.b.poll_event(), None);
    // ... but b answers, naming a's incarnation: that pong proves b alive to a at once.
    let t =
        p.b.poll_transmit(p.now, &mut p.buf)
            .expect("a challenge pong");
    let pong = p.buf[..t.len].to_vec();
    assert_eq!(Packet::parse(&pong).unwrap().header.to_incarnation, 1);
    p.a.handle_datagram(p.now, addr(2), &pong);
    assert_eq!(p.a.poll_event(), Some(Event::Up(kb)));
    assert!(
        p.a.peer(kb).unwrap().rtt().is_some(),
        "and it measured the RTT"
    );
    // a's next ping names b's incarnation: now b believes it.
    let ping = p.advance_to_next_ping_of_a();
    assert_eq!(Packet::parse(&ping).unwrap().header.to_incarnation, 2);
    p.b.handle_datagram(p.now, addr(1), &ping);
    assert_eq!(p.b.poll_event(), Some(Event::Up(ka)));
}

#[test]
fn a_pong_measures_the_round_trip_without_the_responders_hold_time() {
    let mut p = Pair::new();
    p.introduce();
    let ping = p.advance_to_next_ping_of_a();
    assert!(ping.len() >= PING_LEN, "a ping, with its row chunk");
    p.now += Duration::from_millis(1);
    p.b.handle_datagram(p.now, addr(1), &ping);
    assert_eq!(
        p.b.peer(p.b.peer_by_name("a").unwrap()).unwrap().state(),
        PeerState::Alive
    );
    // b sits on the ping for 5 ms before its driver sends the pong.
    p.now += Duration::from_millis(5);
    let t = p.b.poll_transmit(p.now, &mut p.buf).expect("pong");
    assert_eq!(t.dst, addr(1), "replies go to the datagram's source");
    let pong = p.buf[..t.len].to_vec();
    let Body::Pong { hold_us, .. } = Packet::parse(&pong).unwrap().body else {
        panic!("not a pong")
    };
    assert_eq!(hold_us, 5000);
    p.now += Duration::from_millis(1);
    p.a.handle_datagram(p.now, addr(2), &pong);
    let b = p.a.peer_by_name("b").unwrap();
    let rtt = p.a.peer(b).unwrap().rtt().unwrap();
    assert_eq!(rtt.last, Duration::from_millis(2));
    assert_eq!(p.a.peer(b).unwrap().state(), PeerState::Alive);
    // The same pong again is a replay: dropped and counted, no second sample.
    let samples = rtt.samples;
    p.a.handle_datagram(p.now, addr(2), &pong);
    assert_eq!(p.a.dropped().get(DropReason::Replayed), 1);
    assert_eq!(p.a.peer(b).unwrap().rtt().unwrap().samples, samples);
}

#[test]
fn a_peer_is_recognised_by_identity_not_by_source_address() {
    let mut p = Pair::new();
    // Behind NAT the source address is not the configured one: that takes a keyring
    // (without one, only the configured addresses are trusted).
    let keys = Keyring::new(vec![Key::new(&[7; 32])]);
    p.a.set_keyring(keys.clone());
    p.b.set_keyring(keys);
    p.introduce();
    let ping = p.advance_to_next_ping_of_a();
    // Through a NAT: a different source address and port.
    let nat: SocketAddr = "127.0.0.200:40000".parse().unwrap();
    p.b.handle_datagram(p.now, nat, &ping);
    let a = p.b.peer_by_name("a").unwrap();
    assert_eq!(p.b.peer(a).unwrap().state(), PeerState::Alive);
    assert_eq!(p.b.peer(a).unwrap().seen_addr(), Some(nat));
    assert_eq!(p.b.poll_transmit(p.now, &mut p.buf).unwrap().dst, nat);
}

fn datagram(from: &str, to: &str, incarnation: u64, body: Body<'_>) -> Vec<u8> {
    let header = Header {
        from: NodeId::from_name(from),
        incarnation,
        to: NodeId::from_name(to),
        // As a sender that has verified the receiver would: a's incarnation is 1, b's 2.
        to_incarnation: if to == "a" { 1 } else { 2 },
        seq: 0,
    };
    let mut buf = vec![0; 1232];
    let n = Packet { header, body }.emit(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

const PING: Body<'static> = Body::Ping {
    probe: 0,
    sent_ns: 0,
    row: None,
};

#[test]
fn unwelcome_datagrams_are_dropped_and_counted_by_reason() {
    let mut p = Pair::new();
    let now = p.now;
    p.b.handle_datagram(now, addr(1), &datagram("stranger", "b", 1, PING));
    p.b.handle_datagram(now, addr(9), &datagram("a", "b", 1, PING));
    p.b.handle_datagram(now, addr(1), &datagram("a", "c", 1, PING));
    p.b.handle_datagram(now, addr(1), &datagram("b", "b", 1, PING));
    let mut future = datagram("a", "b", 1, PING);
    future[2] = 9;
    p.b.handle_datagram(now, addr(1), &future);
    p.b.handle_datagram(now, addr(1), b"GET / HTTP/1.1\r\n");
    p.b.handle_datagram(now, addr(1), &[]);
    let d = p.b.dropped();
    assert_eq!(d.get(DropReason::UnknownSender), 1);
    assert_eq!(d.get(DropReason::Misdirected), 1);
    assert_eq!(d.get(DropReason::FromSelf), 1);
    assert_eq!(d.get(DropReason::WrongVersion), 1);
    assert_eq!(d.get(DropReason::Malformed), 2);
    assert_eq!(d.get(DropReason::AddressNotAllowed), 1);
    assert_eq!(d.total(), 7);
    // None of it changed what b knows, nor made it answer.
    let a = p.b.peer_by_name("a").unwrap();
    assert_eq!(p.b.peer(a).unwrap().state(), PeerState::Unknown);
    assert_eq!(p.b.poll_transmit(now, &mut p.buf), None);
    assert_eq!(p.b.poll_event(), None);
}

#[test]
fn a_new_incarnation_is_a_restart_and_the_old_one_is_then_stale() {
    let mut p = Pair::new();
    let now = p.now;
    let a = p.b.peer_by_name("a").unwrap();
    p.b.handle_datagram(now, addr(1), &datagram("a", "b", 10, PING));
    assert_eq!(p.b.poll_event(), Some(Event::Up(a)));
    p.b.handle_datagram(now, addr(1), &datagram("a", "b", 11, PING));
    assert_eq!(
        p.b.poll_event(),
        Some(Event::Restarted {
            peer: a,
            incarnation: 11
        })
    );
    assert_eq!(p.b.poll_event(), None, "still alive: no second Up");
    p.b.handle_datagram(now, addr(1), &datagram("a", "b", 10, PING));
    assert_eq!(p.b.dropped().get(DropReason::StaleIncarnation), 1);
    assert_eq!(p.b.peer(a).unwrap().incarnation(), Some(11));
}

#[test]
fn leave_marks_left_and_that_incarnation_stays_gone() {
    let mut p = Pair::new();
    p.introduce();
    let ping = p.advance_to_next_ping_of_a();
    p.b.handle_datagram(p.now, addr(1), &ping);
    p.a.leave(p.now);
    let out = p.collect('a');
    assert_eq!(out.len(), 1);
    p.b.handle_datagram(p.now, addr(1), &out[0].1);
    let a = p.b.peer_by_name("a").unwrap();
    assert_eq!(p.b.peer(a).unwrap().state(), PeerState::Left);
    // A late datagram of the same process does not revive it.
    p.b.handle_datagram(p.now, addr(1), &ping);
    assert_eq!(p.b.peer(a).unwrap().state(), PeerState::Left);
    assert_eq!(p.b.dropped().get(DropReason::AfterLeave), 1);
    // Silence after leaving is never judged.
    p.now += INTERVAL * 20;
    p.collect('b');
    assert_eq!(p.b.peer(a).unwrap().state(), PeerState::Left);
    // And a node that left sends no more heartbeats.
    assert!(p.collect('a').is_empty());
}

#[test]
fn application_data_passes_and_oversize_is_refused() {
    let mut p = Pair::new();
    p.introduce();
    let b = p.a.peer_by_name("b").unwrap();
    p.a.send(b, b"hello", Delivery::BestEffort).unwrap();
    let max = p.a.max_payload();
    assert_eq!(max, peermesh::MAX_MESSAGE);
    assert_eq!(
        p.a.send(b, &vec![0; max + 1], Delivery::BestEffort),
        Err(SendError::TooLarge { len: max + 1, max })
    );
    p.a.send(b, &vec![7; max], Delivery::BestEffort).unwrap();
    let out = p.collect('a');
    assert!(out.iter().all(|(_, bytes)| bytes.len() <= 1232));
    assert!(out.len() > 50, "64 KiB in fragments: {}", out.len());
    for (_, bytes) in &out {
        p.b.handle_datagram(p.now, addr(1), bytes);
    }
    let a = p.b.peer_by_name("a").unwrap();
    let payloads: Vec<Vec<u8>> = std::iter::from_fn(|| p.b.poll_event())
        .filter_map(|e| match e {
            Event::Message { from, payload, .. } if from == a => Some(payload),
            _ => None,
        })
        .collect();
    assert_eq!(payloads, vec![b"hello".to_vec(), vec![7; max]]);
}

#[test]
fn heartbeats_are_spread_over_the_interval_and_keep_their_rate() {
    let start = Instant::now();
    // A full mesh: every peer pinged every interval (auto would sample 1,000 peers).
    let full = Settings {
        probe_mode: peermesh::core::ProbeMode::Full,
        ..settings(3)
    };
    let mut mesh = Mesh::new("hub", full, start);
    for i in 0..1000u32 {
        let ip = [127, 1, (i >> 8) as u8, i as u8];
        mesh.add_peer(&format!("p{i}"), SocketAddr::from((ip, 1313)));
    }
    let mut buf = vec![0; 1232];
    let mut per_ms = vec![0u32; 10 * 100];
    for _ in 0..100_000 {
        let Some(next) = mesh.poll_timeout() else {
            break;
        };
        if next >= start + INTERVAL * 10 {
            break;
        }
        let now = next;
        mesh.handle_timeout(now);
        while mesh.poll_transmit(now, &mut buf).is_some() {
            per_ms[(now - start).as_millis() as usize] += 1;
        }
    }
    let total: u32 = per_ms.iter().sum();
    // 1,000 peers for 10 intervals, one ping each per interval (±1 at the edges).
    assert!((9_900..=10_100).contains(&total), "{total} pings");
    // Spread out: no millisecond carries more than a few percent of one interval's pings.
    let worst = per_ms.iter().max().unwrap();
    assert!(*worst <= 40, "{worst} pings in one millisecond");
}

#[test]
fn time_going_backwards_or_early_calls_are_harmless() {
    let mut p = Pair::new();
    let ping = p.advance_to_next_ping_of_a();
    let earlier = p.now - Duration::from_millis(50);
    p.a.handle_timeout(earlier);
    p.a.handle_timeout(p.now);
    assert_eq!(p.a.poll_transmit(p.now, &mut p.buf), None);
    p.b.handle_datagram(earlier, addr(1), &ping);
    assert!(p.b.poll_transmit(earlier, &mut p.buf).is_some());
}

/// `addr(last)` as a dual-stack (`[::]`) socket reports an IPv4 sender: `::ffff:127.0.0.x`.
fn mapped(last: u8) -> SocketAddr {
    SocketAddr::new(
        std::net::Ipv4Addr::new(127, 0, 0, last)
            .to_ipv6_mapped()
            .into(),
        1313,
    )
}

#[test]
fn a_peer_heard_from_its_ipv4_mapped_address_is_the_configured_ipv4_peer() {
    // a binds [::] (dual-stack): every datagram of b, listed as 127.0.0.2, arrives from
    // ::ffff:127.0.0.2. Without a keyring only configured IPs are accepted, so a mapped
    // source compared as it is would be dropped as address_not_allowed for ever.
    let mut p = Pair::new();
    let kb = p.a.peer_by_name("b").unwrap();
    let ka = p.b.peer_by_name("a").unwrap();
    let mut to_b = Vec::new();
    for _ in 0..200 {
        p.now = [p.a.poll_timeout(), p.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap()
            .max(p.now);
        for (dst, bytes) in p.collect('a') {
            to_b.push(dst);
            p.b.handle_datagram(p.now, addr(1), &bytes);
        }
        for (_, bytes) in p.collect('b') {
            p.a.handle_datagram(p.now, mapped(2), &bytes);
        }
        if p.a.peer(kb).unwrap().rtt().is_some() && p.b.peer(ka).unwrap().rtt().is_some() {
            break;
        }
    }
    let b = p.a.peer(kb).unwrap();
    assert_eq!(b.state(), PeerState::Alive);
    assert!(b.rtt().is_some(), "a measured b");
    assert!(p.b.peer(ka).unwrap().rtt().is_some(), "b measured a");
    assert_eq!(p.a.dropped().get(DropReason::AddressNotAllowed), 0);
    assert_eq!(p.a.dropped().total(), 0, "nothing dropped");
    // Shown and answered as the plain address it is configured with.
    assert_eq!(b.addr(), addr(2));
    assert!(
        b.seen_addr().is_none_or(|a| a == addr(2)),
        "{:?}",
        b.seen_addr()
    );
    assert!(
        !to_b.is_empty() && to_b.iter().all(|&d| d == addr(2)),
        "{to_b:?}"
    );
    assert_eq!(p.a.peer_by_addr(mapped(2)), Some(kb));
    assert_eq!(p.a.peer_by_addr(addr(2)), Some(kb));

    // A peer given by its mapped address is kept (and shown) as plain IPv4.
    let c = p.a.add_peer("c", mapped(3)).unwrap();
    assert_eq!(p.a.peer(c).unwrap().addr(), addr(3));
}

#[test]
fn a_peer_of_a_family_the_transport_cannot_reach_is_diagnosed_so() {
    use peermesh::core::addr::Families;
    use peermesh::Diagnosis;
    let now = Instant::now();
    let mut mesh = Mesh::new("four", settings(1), now);
    let v4 = mesh.add_peer("v4", addr(2)).unwrap();
    let v6 = mesh.add_peer("v6", "[::1]:1313".parse().unwrap()).unwrap();
    assert_eq!(
        mesh.diagnosis(v6),
        Some(Diagnosis::Unknown),
        "both by default"
    );
    mesh.set_families(Families {
        ipv4: true,
        ipv6: false,
    });
    assert_eq!(mesh.diagnosis(v6), Some(Diagnosis::FamilyMismatch));
    assert_eq!(mesh.diagnosis(v4), Some(Diagnosis::Unknown));
    assert_eq!(Diagnosis::FamilyMismatch.as_str(), "family_mismatch");
}
