//! Decoding never panics: a million seeded random and mutated datagrams, through the parser
//! and through a live core, which must only count them as dropped.

use peermesh::core::rng::Rng;
use peermesh::wire::{Body, Header, Packet, HEADER_LEN};
use peermesh::{Mesh, NodeId, PeerState, Settings};
use proptest::prelude::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn settings() -> Settings {
    Settings {
        heartbeat_interval: Duration::from_millis(100),
        suspect_after: Duration::from_millis(300),
        dead_after: Duration::from_millis(500),
        max_datagram: 1232,
        incarnation: 1,
        seed: 1,
        probe_mode: peermesh::core::ProbeMode::Auto,
        probe_fanout: peermesh::core::DEFAULT_PROBE_FANOUT,
    }
}

/// Valid datagrams from `from` to `to`, one of each kind, to mutate.
fn seeds(from: &str, to: &str) -> Vec<Vec<u8>> {
    let header = Header {
        from: NodeId::from_name(from),
        incarnation: 1000,
        to: NodeId::from_name(to),
        // The receiver's incarnation (settings() above): fresh, so the core reads them.
        to_incarnation: 1,
        seq: 5,
    };
    let bodies = [
        Body::Ping {
            probe: 0,
            sent_ns: 1_000,
            row: None,
        },
        Body::Pong {
            probe: 0,
            echo_ns: 0,
            hold_us: 3,
            coordinate: peermesh::wire::WireCoordinate {
                vec: [0.001, -0.002, 0.0, 0.01],
                height: 0.0005,
                error: 0.4,
            },
            members: peermesh::wire::MemberUpdates::EMPTY,
        },
        Body::Fragment(peermesh::wire::Fragment {
            message: 3,
            flags: peermesh::wire::FRAG_CONFIRM,
            channel: 0,
            index: 1,
            count: 2,
            total_len: 14,
            data: b"payload",
        }),
        Body::Ack(peermesh::wire::Ack {
            message: 3,
            complete: false,
            count: 2,
            held: &[1],
        }),
        Body::Relay {
            target: NodeId(4),
            inner: b"inner",
        },
        Body::Leave,
    ];
    bodies
        .iter()
        .map(|&body| {
            let mut buf = vec![0u8; 128];
            let n = Packet { header, body }.emit(&mut buf).unwrap();
            buf.truncate(n);
            buf
        })
        .collect()
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    match rng.below(5) {
        0 => {
            // Flip a few bits.
            for _ in 0..=rng.below(4) {
                if !input.is_empty() {
                    let i = rng.below(input.len() as u64) as usize;
                    input[i] ^= 1 << rng.below(8);
                }
            }
        }
        1 => input.truncate(rng.below(input.len() as u64 + 1) as usize),
        2 => {
            for _ in 0..=rng.below(16) {
                input.push(rng.next_u64() as u8);
            }
        }
        3 => {
            // Overwrite a length or counter field with an extreme value.
            if input.len() > HEADER_LEN + 2 {
                let v = [0x00, 0xff][rng.below(2) as usize];
                input[HEADER_LEN] = v;
                input[HEADER_LEN + 1] = v;
            }
        }
        _ => {
            let i = rng.below(input.len() as u64 + 1) as usize;
            input.insert(i, rng.next_u64() as u8);
        }
    }
}

#[test]
fn a_million_seeded_inputs_never_panic_the_decoder_or_the_core() {
    let start = Instant::now();
    let mut mesh = Mesh::new("victim", settings(), start);
    let sender: SocketAddr = "127.0.0.9:1313".parse().unwrap();
    let attacker = mesh.add_peer("attacker", sender).unwrap();
    let corpus = seeds("attacker", "victim");
    let mut rng = Rng::new(0x5eed);
    let mut buf = vec![0u8; 1232];
    let (mut parsed, mut total, mut fed) = (0u64, 0u64, 0u64);
    for round in 0..1_000_000u64 {
        let input = if round % 4 == 0 {
            // Pure noise of any length up to a jumbo datagram.
            let len = rng.below(if round % 64 == 0 { 2000 } else { 80 }) as usize;
            (0..len).map(|_| rng.next_u64() as u8).collect()
        } else {
            let mut input = corpus[rng.below(corpus.len() as u64) as usize].clone();
            for _ in 0..=rng.below(3) {
                mutate(&mut rng, &mut input);
            }
            input
        };
        total += 1;
        if let Ok(packet) = Packet::parse(&input) {
            parsed += 1;
            // Whatever parses re-encodes to the same bytes.
            let n = packet.emit(&mut buf).unwrap();
            assert_eq!(&buf[..n], &input[..]);
        }
        if round % 8 < 2 {
            let now = start + Duration::from_micros(round);
            fed += 1;
            let mut input = input;
            if input.len() >= HEADER_LEN && round % 3 != 0 {
                // A current incarnation (a new one every 4,096 rounds, so a mutant Leave
                // does not end the run), the receiver's (it may have refuted a mutant),
                // and fresh sequence numbers, or the incarnation rule, the freshness rule
                // and the replay window drop nearly all of them.
                // Near the top of the range, so that no mutant of the seeds' incarnation
                // that got admitted earlier can make these stale for the rest of the run.
                let incarnation = u64::MAX - (1 << 20) + (round >> 12);
                input[12..20].copy_from_slice(&incarnation.to_be_bytes());
                input[28..36].copy_from_slice(&mesh.incarnation().to_be_bytes());
                input[36..40].copy_from_slice(&(round as u32).to_be_bytes());
            }
            mesh.handle_datagram(now, sender, &input);
            mesh.handle_timeout(now);
            while mesh.poll_transmit(now, &mut buf).is_some() {}
            while mesh.poll_event().is_some() {}
        }
    }
    assert_eq!(total, 1_000_000);
    assert!(
        parsed > 10_000,
        "mutations kept some inputs valid: {parsed}"
    );
    // The core dropped and counted the bad ones and is still consistent.
    let dropped = mesh.dropped();
    assert!(dropped.total() > 50_000, "{dropped:?}");
    let peer = mesh.peer(attacker).unwrap();
    assert!(
        peer.received() > 100,
        "valid mutants were admitted: {} ({dropped:?})",
        peer.received()
    );
    // Every datagram fed was either admitted or dropped (a stale pong is both).
    assert!(peer.received() <= fed && dropped.total() <= fed);
    assert!(peer.received() + dropped.total() >= fed);
    assert!(matches!(
        peer.state(),
        PeerState::Alive | PeerState::Left | PeerState::Suspect | PeerState::Dead
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let _ = Packet::parse(&bytes);
    }

    #[test]
    fn pings_and_pongs_round_trip(
        from in any::<u64>(), inc in any::<u64>(), to in any::<u64>(), to_inc in any::<u64>(),
        seq in any::<u32>(), probe in any::<u32>(), ns in any::<u64>(), hold in any::<u32>(),
        pong in any::<bool>(),
    ) {
        let header = Header {
            from: NodeId(from), incarnation: inc, to: NodeId(to), to_incarnation: to_inc, seq,
        };
        let body = if pong {
            Body::Pong { probe, echo_ns: ns, hold_us: hold, coordinate: Default::default(), members: peermesh::wire::MemberUpdates::EMPTY }
        } else {
            Body::Ping { probe, sent_ns: ns, row: None }
        };
        let packet = Packet { header, body };
        let mut buf = [0u8; 128];
        let n = packet.emit(&mut buf).unwrap();
        prop_assert_eq!(Packet::parse(&buf[..n]), Ok(packet));
    }
}
