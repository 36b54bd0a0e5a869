//! Application data on the deterministic simulator: tags, confirmed messages, 64 KiB
//! transfers, broadcast, relaying around a cut link, queries, and the bounds on memory.

use peermesh::sim::{Link, Sim};
use peermesh::wire::{Body, Fragment, Header, Kind, Packet};
use peermesh::{
    Delivery, Event, Mesh, MessageId, NodeId, PeerId, PeerState, QueryFilter, SendError, Settings,
    MAX_MESSAGE,
};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_millis(100);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn set(k: &str, v: &str) -> (String, Option<String>) {
    (k.to_owned(), Some(v.to_owned()))
}

fn all_alive(sim: &Sim) -> bool {
    (0..sim.len())
        .all(|a| (0..sim.len()).all(|b| a == b || sim.state(a, b) == Some(PeerState::Alive)))
}

/// Whether every node holds `want` as node `of`'s tags.
fn everyone_sees(sim: &Sim, of: usize, want: &BTreeMap<String, String>) -> bool {
    (0..sim.len()).filter(|&i| i != of).all(|i| {
        let id = sim.peer_id(i, of).unwrap();
        sim.mesh(i).unwrap().peer_tags(id) == Some(want)
    })
}

/// Drains node `i`'s events.
fn events(sim: &mut Sim, i: usize) -> Vec<Event> {
    std::iter::from_fn(|| sim.poll_event(i)).collect()
}

#[test]
fn tags_converge_at_twenty_nodes_under_twenty_percent_loss_within_three_intervals() {
    for seed in 1..=3 {
        let mut sim = Sim::with_nodes(20, INTERVAL, seed);
        sim.set_default_link(Link::latency(ms(1)).with_loss(0.2));
        assert!(sim.run_until(Duration::from_secs(5), all_alive));
        // Every node sets its tags at the same instant.
        for i in 0..20 {
            sim.with_mesh(i, |m| {
                m.set_tags(&[
                    set("role", &format!("r{}", i % 3)),
                    set("n", &i.to_string()),
                ])
            })
            .unwrap()
            .unwrap();
        }
        let start = sim.elapsed();
        let wants: Vec<_> = (0..20)
            .map(|i| sim.mesh(i).unwrap().tags().clone())
            .collect();
        let converged = sim.run_until(INTERVAL * 3, |sim| {
            (0..20).all(|of| everyone_sees(sim, of, &wants[of]))
        });
        let took = sim.elapsed() - start;
        assert!(converged, "seed {seed}: not converged in 3 intervals");
        eprintln!("seed {seed}: 20 x 20 tags converged in {took:?} at 20% loss");
        // A change on one node reaches everyone, pushed, not left for the heartbeat.
        sim.with_mesh(7, |m| {
            m.set_tags(&[set("role", "leader"), ("n".into(), None)])
        })
        .unwrap()
        .unwrap();
        let want = sim.mesh(7).unwrap().tags().clone();
        let start = sim.elapsed();
        assert!(sim.run_until(INTERVAL * 3, |sim| everyone_sees(sim, 7, &want)));
        eprintln!(
            "seed {seed}: one change seen by all 19 in {:?}",
            sim.elapsed() - start
        );
    }
}

#[test]
fn the_newest_value_wins_after_changes_in_quick_succession_over_a_reordering_link() {
    let mut sim = Sim::with_nodes(5, INTERVAL, 11);
    sim.set_default_link(Link::latency(ms(2)).with_jitter(ms(4)).with_loss(0.2));
    assert!(sim.run_until(Duration::from_secs(5), all_alive));
    for round in 0..20 {
        for v in 0..5 {
            let value = format!("{round}.{v}");
            sim.with_mesh(0, |m| m.set_tags(&[set("build", &value)]))
                .unwrap()
                .unwrap();
            sim.run_for(Duration::from_micros(300));
        }
    }
    let want = sim.mesh(0).unwrap().tags().clone();
    assert_eq!(want.get("build").map(String::as_str), Some("19.4"));
    assert!(sim.run_until(INTERVAL * 5, |sim| everyone_sees(sim, 0, &want)));
    // And it stays that way: no older delta arrives late to undo it.
    sim.run_for(INTERVAL * 10);
    assert!(everyone_sees(&sim, 0, &want));
}

#[test]
fn a_restarted_node_gets_everyones_tags_again_and_its_own_start_from_nothing() {
    let mut sim = Sim::with_nodes(4, INTERVAL, 5);
    assert!(sim.run_until(Duration::from_secs(2), all_alive));
    for i in 0..4 {
        sim.with_mesh(i, |m| m.set_tags(&[set("id", &i.to_string())]))
            .unwrap()
            .unwrap();
    }
    sim.run_for(INTERVAL * 2);
    sim.restart(2);
    assert!(sim.run_until(Duration::from_secs(2), all_alive));
    let id1 = sim.peer_id(2, 1).unwrap();
    assert!(sim.run_until(INTERVAL * 3, |sim| {
        sim.mesh(2)
            .unwrap()
            .peer_tags(id1)
            .and_then(|t| t.get("id"))
            == Some(&"1".to_owned())
    }));
    // The new process of node 2 set no tags: the others hold none for it.
    let empty = BTreeMap::new();
    assert!(
        sim.run_until(INTERVAL * 3, |sim| (0..4).filter(|&i| i != 2).all(|i| {
            let id = sim.peer_id(i, 2).unwrap();
            sim.mesh(i)
                .unwrap()
                .peer_tags(id)
                .is_none_or(|t| t == &empty)
        }))
    );
}

/// What one run of confirmed messages under loss came to.
#[derive(Default, Debug)]
struct Tally {
    sent: usize,
    delivered: usize,
    failed: usize,
}

/// Sends `count` confirmed messages between random pairs of 5 nodes on links losing 30%,
/// and checks each one: reported exactly once at the sender, delivered once at the
/// receiver if and only if reported delivered.
fn confirmed_under_loss(seed: u64, count: usize) -> Tally {
    let mut sim = Sim::with_nodes(5, INTERVAL, seed);
    sim.set_default_link(Link::latency(ms(1)).with_jitter(ms(1)).with_loss(0.3));
    assert!(sim.run_until(Duration::from_secs(5), all_alive));
    let mut rng = peermesh::core::rng::Rng::new(seed);
    // (sender, receiver, id at the sender) -> payload; payloads are unique.
    let mut sent: HashMap<(usize, MessageId), (usize, Vec<u8>)> = HashMap::new();
    let mut outcomes: HashMap<(usize, MessageId), Vec<bool>> = HashMap::new();
    let mut received: HashMap<Vec<u8>, usize> = HashMap::new();
    let drain = |sim: &mut Sim,
                 outcomes: &mut HashMap<(usize, MessageId), Vec<bool>>,
                 received: &mut HashMap<Vec<u8>, usize>| {
        for i in 0..5 {
            for event in events(sim, i) {
                match event {
                    Event::Delivered { id, .. } => outcomes.entry((i, id)).or_default().push(true),
                    Event::Failed { id, .. } => outcomes.entry((i, id)).or_default().push(false),
                    Event::Message { payload, .. } => *received.entry(payload).or_default() += 1,
                    _ => {}
                }
            }
        }
    };
    for n in 0..count {
        let from = rng.below(5) as usize;
        let to = (from + 1 + rng.below(4) as usize) % 5;
        let payload = format!("{seed}:{n}:{}", "x".repeat(rng.below(3000) as usize)).into_bytes();
        let peer = sim.peer_id(from, to).unwrap();
        let delivery = Delivery::Confirmed {
            timeout: Duration::from_secs(10),
        };
        let id = sim
            .with_mesh(from, |m| m.send(peer, &payload, delivery))
            .unwrap()
            .unwrap();
        sent.insert((from, id), (to, payload));
        sim.run_for(Duration::from_micros(500));
        drain(&mut sim, &mut outcomes, &mut received);
    }
    sim.run_for(Duration::from_secs(11));
    drain(&mut sim, &mut outcomes, &mut received);
    let mut tally = Tally {
        sent: sent.len(),
        ..Tally::default()
    };
    for (key, (_, payload)) in &sent {
        let reports = outcomes.get(key).cloned().unwrap_or_default();
        let times = received.get(payload).copied().unwrap_or(0);
        assert_eq!(
            reports.len(),
            1,
            "seed {seed} {key:?}: reports {reports:?}, arrived {times} times"
        );
        assert!(times <= 1, "seed {seed} {key:?}: delivered {times} times");
        if reports[0] {
            assert_eq!(
                times, 1,
                "seed {seed} {key:?}: reported delivered, never arrived"
            );
            tally.delivered += 1;
        } else {
            assert_eq!(
                times, 0,
                "seed {seed} {key:?}: reported failed, but arrived"
            );
            tally.failed += 1;
        }
    }
    tally
}

#[test]
fn confirmed_messages_under_thirty_percent_loss_arrive_once_or_fail_never_both() {
    let mut total = Tally::default();
    for seed in 1..=4 {
        let tally = confirmed_under_loss(seed, 2_500);
        eprintln!("seed {seed}: {tally:?}");
        total.sent += tally.sent;
        total.delivered += tally.delivered;
        total.failed += tally.failed;
    }
    assert!(total.sent >= 10_000);
    eprintln!("all seeds: {total:?}");
    // At 30% loss and ten seconds to try, all of them make it.
    assert_eq!(total.delivered, total.sent, "{total:?}");
}

#[test]
fn a_64_kib_message_arrives_intact_under_ten_percent_loss() {
    let mut sim = Sim::with_nodes(3, INTERVAL, 21);
    sim.set_default_link(Link::latency(ms(5)).with_loss(0.1));
    assert!(sim.run_until(Duration::from_secs(5), all_alive));
    let mut rng = peermesh::core::rng::Rng::new(99);
    let payload: Vec<u8> = (0..MAX_MESSAGE).map(|_| rng.next_u64() as u8).collect();
    let to = sim.peer_id(0, 2).unwrap();
    let delivery = Delivery::Confirmed {
        timeout: Duration::from_secs(5),
    };
    let start = sim.elapsed();
    let id = sim
        .with_mesh(0, |m| m.send(to, &payload, delivery))
        .unwrap()
        .unwrap();
    let mut got = None;
    let mut done = None;
    let finished = sim.run_until(Duration::from_secs(5), |_| false);
    assert!(!finished);
    for event in events(&mut sim, 2) {
        if let Event::Message { payload, .. } = event {
            assert!(got.is_none(), "delivered twice");
            got = Some(payload);
        }
    }
    for (at, record) in sim.trace().iter().map(|r| (r.at, r)) {
        if record.node == 0 && record.event == (Event::Delivered { to, id }) {
            done = Some(at - start);
        }
    }
    assert!(
        got.as_ref() == Some(&payload),
        "the 64 KiB did not arrive intact"
    );
    let took = done.expect("reported delivered");
    eprintln!("64 KiB over a 10 ms round trip at 10% loss: confirmed in {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    // Nothing is left half received at the receiver.
    assert_eq!(sim.mesh(2).unwrap().reassembly().0, 0);
}

#[test]
fn broadcast_reaches_every_alive_node_and_the_dead_one_fails() {
    let mut sim = Sim::with_nodes(10, INTERVAL, 31);
    sim.set_default_link(Link::latency(ms(1)).with_loss(0.1));
    assert!(sim.run_until(Duration::from_secs(5), all_alive));
    sim.crash(9);
    assert!(sim.run_until(Duration::from_secs(2), |sim| {
        sim.state(0, 9) == Some(PeerState::Dead)
    }));
    let delivery = Delivery::Confirmed {
        timeout: Duration::from_secs(2),
    };
    let sent = sim
        .with_mesh(0, |m| m.broadcast(b"deploy v42", delivery))
        .unwrap()
        .unwrap();
    assert_eq!(sent.len(), 9);
    sim.run_for(Duration::from_secs(3));
    for i in 1..9 {
        let got: Vec<_> = events(&mut sim, i)
            .into_iter()
            .filter(|e| matches!(e, Event::Message { payload, .. } if payload == b"deploy v42"))
            .collect();
        assert_eq!(got.len(), 1, "node {i}");
    }
    let outcomes = events(&mut sim, 0);
    let dead = sim.peer_id(0, 9).unwrap();
    for &(peer, id) in &sent {
        let want = if peer == dead {
            Event::Failed { to: peer, id }
        } else {
            Event::Delivered { to: peer, id }
        };
        assert_eq!(
            outcomes.iter().filter(|e| **e == want).count(),
            1,
            "{want:?}"
        );
    }
}

#[test]
fn a_confirmed_message_to_a_peer_behind_a_cut_link_goes_through_the_nearest_relay() {
    let mut sim = Sim::with_nodes(4, INTERVAL, 41);
    // 0 and 1 cannot talk; 3 is nearer to both than 2 is.
    sim.set_default_link(Link::latency(ms(1)));
    sim.set_link(0, 2, Link::latency(ms(8)));
    sim.set_link(2, 1, Link::latency(ms(8)));
    sim.set_link(0, 3, Link::latency(ms(2)));
    sim.set_link(3, 1, Link::latency(ms(2)));
    assert!(sim.run_until(Duration::from_secs(5), all_alive));
    // The link breaks: 0 knows 1's incarnation from before, which the relayed datagrams
    // must name to be believed.
    sim.set_link(0, 1, Link::latency(ms(1)).with_loss(1.0));
    assert!(sim.run_until(Duration::from_secs(5), |sim| {
        sim.mesh(0)
            .and_then(|m| m.diagnosis(sim.peer_id(0, 1)?))
            .is_some_and(|d| d == peermesh::Diagnosis::Unreachable)
    }));
    sim.tap(0, 3);
    sim.tap(0, 2);
    let to = sim.peer_id(0, 1).unwrap();
    let delivery = Delivery::Confirmed {
        timeout: Duration::from_secs(2),
    };
    let id = sim
        .with_mesh(0, |m| m.send(to, b"around the cut", delivery))
        .unwrap()
        .unwrap();
    sim.run_for(Duration::from_secs(1));
    let got: Vec<_> = events(&mut sim, 1)
        .into_iter()
        .filter(|e| matches!(e, Event::Message { payload, .. } if payload == b"around the cut"))
        .collect();
    assert_eq!(got.len(), 1);
    assert!(events(&mut sim, 0).contains(&Event::Delivered { to, id }));
    let relayed_by = |via: usize| {
        sim.captured()
            .iter()
            .filter(|c| c.to == via)
            .filter(|c| Packet::parse(&c.bytes).is_ok_and(|p| p.kind() == Kind::Relay))
            .count()
    };
    assert!(relayed_by(3) >= 1, "not relayed by the near node");
    assert_eq!(relayed_by(2), 0, "relayed by the far node");
}

#[test]
fn oversize_payloads_and_unknown_peers_are_typed_errors_that_change_nothing() {
    let mut sim = Sim::with_nodes(3, INTERVAL, 51);
    assert!(sim.run_until(Duration::from_secs(2), all_alive));
    let to = sim.peer_id(0, 1).unwrap();
    let big = vec![0u8; MAX_MESSAGE + 1];
    let refused = sim
        .with_mesh(0, |m| {
            let removed = m.peer_by_name("node2").unwrap();
            m.remove_peer(removed);
            (
                m.send(to, &big, Delivery::BestEffort),
                m.broadcast(&big, Delivery::BestEffort).map(|v| v.len()),
                m.query(&QueryFilter::default(), &big, ms(100)),
                m.send(removed, b"x", Delivery::BestEffort),
                m.has_transmit(),
            )
        })
        .unwrap();
    let too_large = SendError::TooLarge {
        len: MAX_MESSAGE + 1,
        max: MAX_MESSAGE,
    };
    assert_eq!(refused.0, Err(too_large));
    assert_eq!(refused.1, Err(too_large));
    assert_eq!(refused.2, Err(too_large));
    assert!(matches!(refused.3, Err(SendError::UnknownPeer(_))));
    assert!(!refused.4, "a refused send queued something");
    let bad_tag = sim
        .with_mesh(0, |m| m.set_tags(&[set("no spaces", "x")]))
        .unwrap();
    assert!(bad_tag.is_err());
    assert!(sim.mesh(0).unwrap().tags().is_empty());
}

#[test]
fn a_query_gets_answers_acks_and_the_list_of_who_did_not_answer() {
    let mut sim = Sim::with_nodes(6, INTERVAL, 61);
    sim.set_default_link(Link::latency(ms(1)).with_loss(0.1));
    assert!(sim.run_until(Duration::from_secs(5), all_alive));
    for i in 1..6 {
        let role = if i % 2 == 1 { "web" } else { "db" };
        sim.with_mesh(i, |m| m.set_tags(&[set("role", role)]))
            .unwrap()
            .unwrap();
    }
    sim.run_for(INTERVAL * 3);
    // Node 5 (web) is paused: it never answers.
    sim.pause(5);
    let filter = QueryFilter {
        names: vec![],
        tags: vec![("role".into(), "web".into())],
    };
    let query = sim
        .with_mesh(0, |m| m.query(&filter, b"uptime", ms(300)))
        .unwrap()
        .unwrap();
    // The asked nodes answer as soon as they get the question (node 3 with an error).
    let deadline = sim.elapsed() + ms(400);
    while sim.elapsed() < deadline {
        sim.run_for(ms(1));
        for i in [1, 3] {
            for event in events(&mut sim, i) {
                if let Event::Query { query, payload, .. } = event {
                    assert_eq!(payload, b"uptime");
                    let answer = format!("up on node{i}");
                    sim.with_mesh(i, |m| m.respond(query, answer.as_bytes(), i == 3))
                        .unwrap()
                        .unwrap();
                    // Once only.
                    let again = sim.with_mesh(i, |m| m.respond(query, b"again", false));
                    assert_eq!(again, Some(Err(SendError::NoSuchQuery)));
                }
            }
        }
    }
    let asked = events(&mut sim, 0);
    let name = |id: PeerId| sim.mesh(0).unwrap().peer(id).unwrap().name().to_owned();
    let mut answers: Vec<(String, String, bool)> = Vec::new();
    let mut acks = Vec::new();
    let mut missing = None;
    for event in asked {
        match event {
            Event::QueryResponse {
                query: q,
                from,
                payload,
                error,
            } if q == query => {
                answers.push((name(from), String::from_utf8(payload).unwrap(), error))
            }
            Event::QueryAck { query: q, from } if q == query => acks.push(name(from)),
            Event::QueryDone {
                query: q,
                missing: m,
            } if q == query => missing = Some(m.into_iter().map(name).collect::<Vec<_>>()),
            _ => {}
        }
    }
    answers.sort();
    acks.sort();
    assert_eq!(
        answers,
        vec![
            ("node1".into(), "up on node1".into(), false),
            ("node3".into(), "up on node3".into(), true)
        ]
    );
    assert_eq!(acks, vec!["node1", "node3"]);
    assert_eq!(missing, Some(vec!["node5".to_owned()]));
    // The db nodes were never asked.
    for i in [2, 4] {
        assert!(!events(&mut sim, i)
            .iter()
            .any(|e| matches!(e, Event::Query { .. })));
    }
}

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

#[test]
fn reassembly_memory_stays_bounded_under_a_flood_of_first_fragments() {
    let now = Instant::now();
    let a_addr: SocketAddr = "127.0.0.1:7001".parse().unwrap();
    let b_addr: SocketAddr = "127.0.0.2:7002".parse().unwrap();
    let mut a = Mesh::new("a", settings(10), now);
    let mut b = Mesh::new("b", settings(20), now);
    let b_in_a = a.add_peer("b", b_addr).unwrap();
    b.add_peer("a", a_addr).unwrap();
    // Let them meet, so b believes a's datagrams.
    let mut buf = vec![0u8; 1500];
    let mut t = now;
    for _ in 0..20 {
        t += ms(50);
        a.handle_timeout(t);
        b.handle_timeout(t);
        while let Some(tx) = a.poll_transmit(t, &mut buf) {
            b.handle_datagram(t, a_addr, &buf[..tx.len]);
        }
        while let Some(tx) = b.poll_transmit(t, &mut buf) {
            a.handle_datagram(t, b_addr, &buf[..tx.len]);
        }
    }
    assert_eq!(a.peer(b_in_a).unwrap().state(), PeerState::Alive);
    // 100,000 first fragments of 64 KiB messages that never complete.
    let data = vec![0xabu8; 1100];
    for n in 0..100_000u32 {
        let header = Header {
            from: NodeId::from_name("a"),
            incarnation: 10,
            to: NodeId::from_name("b"),
            to_incarnation: b.incarnation(),
            seq: 1_000_000 + n,
        };
        let fragment = Fragment {
            message: 10 + u64::from(n),
            flags: 0,
            channel: 0,
            index: 0,
            count: 59,
            total_len: 59 * 1100,
            data: &data,
        };
        let packet = Packet {
            header,
            body: Body::Fragment(fragment),
        };
        let len = packet.emit(&mut buf).unwrap();
        b.handle_datagram(t, a_addr, &buf[..len]);
        let (held, _) = b.reassembly();
        assert!(
            held <= peermesh::core::transfer::PARTIALS_PER_PEER * 66_000,
            "{held} bytes held after {n} fragments"
        );
    }
    let (held, dropped) = b.reassembly();
    eprintln!("after 100,000 first fragments: {held} bytes held, {dropped} dropped");
    assert!(dropped >= 100_000 - peermesh::core::transfer::PARTIALS_PER_PEER as u64);
    // And b is still fine: a's heartbeats still come through.
    assert_eq!(
        b.peer(b.peer_by_name("a").unwrap()).unwrap().state(),
        PeerState::Alive
    );
}

#[test]
fn a_sender_that_restarts_mid_stream_has_each_message_delivered_at_most_once() {
    for seed in 1..=3 {
        let mut sim = Sim::with_nodes(3, INTERVAL, 70 + seed);
        sim.set_default_link(Link::latency(ms(2)).with_jitter(ms(2)).with_loss(0.3));
        assert!(sim.run_until(Duration::from_secs(5), all_alive));
        let delivery = Delivery::Confirmed {
            timeout: Duration::from_secs(5),
        };
        let send_batch = |sim: &mut Sim, batch: &str| {
            for n in 0..50 {
                let to = sim.peer_id(0, 1).unwrap();
                let payload = format!("{batch}-{n}");
                sim.with_mesh(0, |m| m.send(to, payload.as_bytes(), delivery))
                    .unwrap()
                    .unwrap();
                sim.run_for(Duration::from_micros(200));
            }
        };
        send_batch(&mut sim, "before");
        // The sender dies with retransmissions outstanding and comes back at once: the
        // new process numbers its messages from 1 again.
        sim.crash(0);
        sim.restart(0);
        assert!(sim.run_until(Duration::from_secs(5), all_alive));
        send_batch(&mut sim, "after");
        sim.run_for(Duration::from_secs(6));
        let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
        for event in events(&mut sim, 1) {
            if let Event::Message { payload, .. } = event {
                *seen.entry(payload).or_default() += 1;
            }
        }
        assert!(seen.values().all(|&n| n == 1), "seed {seed}: {seen:?}");
        let after = (0..50)
            .filter(|n| seen.contains_key(format!("after-{n}").as_bytes()))
            .count();
        assert_eq!(
            after, 50,
            "seed {seed}: the new process's messages all arrive"
        );
        let before = seen.len() - after;
        eprintln!("seed {seed}: {before} of 50 sent before the restart arrived, once each");
    }
}

#[test]
fn a_query_every_target_answered_is_done_before_its_timeout() {
    let mut sim = Sim::with_nodes(4, INTERVAL, 81);
    sim.set_default_link(Link::latency(ms(2)));
    assert!(sim.run_until(Duration::from_secs(2), all_alive));
    let start = sim.elapsed();
    let query = sim
        .with_mesh(0, |m| {
            m.query(&QueryFilter::default(), b"ping?", Duration::from_secs(10))
        })
        .unwrap()
        .unwrap();
    let mut done = None;
    let finished = sim.run_until(Duration::from_secs(1), |_| false);
    assert!(!finished);
    // Nobody answered yet: every node answers only when this test lets it.
    for i in 1..4 {
        for event in events(&mut sim, i) {
            if let Event::Query { query, .. } = event {
                sim.with_mesh(i, |m| m.respond(query, b"pong", false))
                    .unwrap()
                    .unwrap();
            }
        }
    }
    sim.run_for(ms(50));
    for record in sim.trace() {
        if record.node == 0 {
            if let Event::QueryDone { query: q, missing } = &record.event {
                assert_eq!(*q, query);
                assert!(missing.is_empty());
                done = Some(record.at - start);
            }
        }
    }
    let took = done.expect("done once all three answered");
    assert!(took < Duration::from_millis(1100), "{took:?}");
    // The deadline's timer later finds it closed: no second report.
    sim.run_for(Duration::from_secs(10));
    let reports = sim
        .trace()
        .iter()
        .filter(|r| r.node == 0 && matches!(r.event, Event::QueryDone { .. }))
        .count();
    assert_eq!(reports, 1);
}
