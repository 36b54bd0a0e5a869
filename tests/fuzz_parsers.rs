//! Seeded fuzz runners over everything that parses outside input: the config parser, the
//! control-request parser, the key file parser, and sealed datagrams through a keyed core.
//! None may panic. `PEERMESH_FUZZ_SCALE=N` multiplies the rounds (CI runs scale 1: at least
//! a million inputs each for the config and control-request parsers, in some seconds;
//! docs/SECURITY.md reports a longer run). Each runner prints its count and time.

use peermesh::config::Config;
use peermesh::core::rng::Rng;
use peermesh::io::control::parse_request;
use peermesh::wire::keyring::{Key, Keyring, KeyringError};
use peermesh::{Mesh, PeerState, Settings};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

fn scale() -> u64 {
    std::env::var("PEERMESH_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// Shows how many inputs a runner tried and how long it took (`--nocapture` to see it).
fn report(what: &str, inputs: u64, started: Instant) {
    let elapsed = started.elapsed();
    let per_input = elapsed.as_nanos() / u128::from(inputs.max(1));
    eprintln!("fuzz {what}: {inputs} inputs in {elapsed:.2?} ({per_input} ns each)");
}

/// Applies 1-4 random edits: flip, delete, insert, duplicate a slice, or splice in a token.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, tokens: &[&[u8]]) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(input.len() as u64 + 1) as usize;
        match rng.below(6) {
            0 if !input.is_empty() => {
                let i = at.min(input.len() - 1);
                input[i] ^= 1 << rng.below(8);
            }
            1 if at < input.len() => {
                let end = (at + 1 + rng.below(8) as usize).min(input.len());
                input.drain(at..end);
            }
            2 => input.insert(at, rng.next_u64() as u8),
            3 if at < input.len() => {
                let end = (at + rng.below(16) as usize).min(input.len());
                let piece = input[at..end].to_vec();
                input.splice(at..at, piece);
            }
            _ => {
                let token = tokens[rng.below(tokens.len() as u64) as usize];
                input.splice(at..at, token.iter().copied());
            }
        }
    }
}

const CONFIG_TOKENS: &[&[u8]] = &[
    b"(",
    b")",
    b"[",
    b"]",
    b",",
    b":",
    b"\"",
    b"//",
    b"/*",
    b"*/",
    b"nodes",
    b"name",
    b"host",
    b"port",
    b"heartbeat_interval_ms",
    b"suspect_after_ms",
    b"dead_after_ms",
    b"keyring",
    b"max_datagram_bytes",
    b"99999999999999999999",
    b"-1",
    b"0",
    b"Some(",
    b"\"\"",
    b"\xff",
    b"\n",
    b"\"a\"",
    b"1e9",
    b"true",
    b"'x'",
];

#[test]
fn the_config_parser_never_panics() {
    let seeds = [
        include_str!("configs/peers.ron"),
        include_str!("configs/minimal.ron"),
        include_str!("../peers.ron"),
    ];
    let mut rng = Rng::new(0xc0f1);
    let rounds = 1_000_000 * scale();
    let started = Instant::now();
    let (mut ok, mut errors) = (0u64, 0u64);
    let mut input = Vec::new();
    for round in 0..rounds {
        // Mostly whole files with a few edits; one in eight a short run of tokens alone,
        // for shapes no edit of a good file reaches (`((((`, `nodes:nodes`, ...).
        input.clear();
        if round % 8 == 7 {
            for _ in 0..rng.below(12) {
                let token = CONFIG_TOKENS[rng.below(CONFIG_TOKENS.len() as u64) as usize];
                input.extend_from_slice(token);
            }
        } else {
            input.extend_from_slice(seeds[(round % 3) as usize].as_bytes());
            mutate(&mut rng, &mut input, CONFIG_TOKENS);
        }
        let text = String::from_utf8_lossy(&input);
        match Config::parse(&text, "fuzz.ron") {
            Ok(config) => {
                ok += 1;
                assert!(!config.nodes.is_empty());
                assert!(config.suspect_after < config.dead_after);
            }
            Err(err) => {
                errors += 1;
                // Every error can be shown to a person.
                assert!(!err.to_string().is_empty());
            }
        }
    }
    report("config parser", rounds, started);
    assert_eq!(ok + errors, rounds);
    assert!(
        ok > rounds / 50 && errors > rounds / 2,
        "ok {ok}, errors {errors}"
    );
}

#[test]
fn the_control_request_parser_never_panics() {
    let seeds: [&[u8]; 5] = [
        br#"{"v":1,"cmd":"status"}"#,
        br#"{"v":1,"cmd":"status","format":"table","color":true}"#,
        br#"{"v":1,"cmd":"matrix","format":"svg"}"#,
        b"{\"v\":1,\"cmd\":\"ping\"}\n",
        b"status --json\n", // the older protocol's words: answered with an error
    ];
    let tokens: &[&[u8]] = &[
        b"\"status\"",
        b"\"matrix\"",
        b"\"ping\"",
        b"\"format\"",
        b"\"json\"",
        b"\"table\"",
        b"\"svg\"",
        b"\"color\"",
        b"true",
        b"1",
        b"2",
        b"{",
        b"}",
        b",",
        b":",
        b"\"",
        b"\\",
        b" ",
        b"\n",
        b"\xc3",
        b"\0",
        b"null",
        b"[",
    ];
    let mut rng = Rng::new(0xc0de);
    let rounds = 1_000_000 * scale();
    let started = Instant::now();
    let mut accepted = 0u64;
    for round in 0..rounds {
        let mut input = seeds[(round % 5) as usize].to_vec();
        if round % 100 == 0 {
            input = (0..rng.below(3000)).map(|_| rng.next_u64() as u8).collect();
        }
        mutate(&mut rng, &mut input, tokens);
        if let Ok(req) = parse_request(&input) {
            accepted += 1;
            assert!(format!("{req:?}").len() < 64);
        }
    }
    report("control-request parser", rounds, started);
    // Some mutants stay valid requests (JSON is brittle: well under 1%): the parser is
    // exercised on both paths.
    assert!(accepted > rounds / 500, "accepted {accepted}");
}

#[test]
fn the_key_file_parser_never_panics_and_never_takes_a_bad_line() {
    let good = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    let seeds = [
        format!("# mesh keys\n{good}\n"),
        format!("{good}\n\n  {}  \n", good.to_uppercase()),
        String::new(),
    ];
    let tokens: &[&[u8]] = &[
        b"+",
        b"-",
        b"0",
        b"f",
        b"F",
        b"g",
        b"#",
        b"\n",
        b" ",
        b"\xc3\xa4",
        b"00",
        b"\0",
    ];
    let mut rng = Rng::new(0x4e75);
    let rounds = 100_000 * scale();
    let started = Instant::now();
    let (mut ok, mut bad) = (0u64, 0u64);
    for round in 0..rounds {
        let mut input = seeds[(round % 3) as usize].as_bytes().to_vec();
        mutate(&mut rng, &mut input, tokens);
        let text = String::from_utf8_lossy(&input);
        match Keyring::parse(&text, Path::new("fuzz.keys")) {
            Ok(ring) => {
                ok += 1;
                // Every line taken was 64 hex digits, nothing else.
                let keys = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'));
                for line in keys {
                    assert!(
                        line.len() == 64 && line.bytes().all(|b| b.is_ascii_hexdigit()),
                        "{line:?}"
                    );
                }
                assert!(!ring.keys().is_empty());
            }
            Err(KeyringError::BadKey { .. } | KeyringError::ZeroKey { .. }) => bad += 1,
            Err(KeyringError::Empty(_) | KeyringError::TooMany(_)) => bad += 1,
            Err(other) => panic!("a parse cannot fail so: {other}"),
        }
    }
    report("key file parser", rounds, started);
    assert!(ok > rounds / 100 && bad > rounds / 4, "ok {ok}, bad {bad}");
}

#[test]
fn sealed_datagrams_from_any_bytes_never_panic_a_keyed_core() {
    let settings = |inc| Settings {
        heartbeat_interval: Duration::from_millis(100),
        suspect_after: Duration::from_millis(300),
        dead_after: Duration::from_millis(500),
        max_datagram: 1232,
        incarnation: inc,
        seed: 1,
        probe_mode: peermesh::core::ProbeMode::Auto,
        probe_fanout: peermesh::core::DEFAULT_PROBE_FANOUT,
    };
    let keys = Keyring::new(vec![Key::new(&[5; 32])]);
    let addr = |i: u8| SocketAddr::from(([127, 0, 0, i], 1313));
    let start = Instant::now();
    let mut a = Mesh::new("a", settings(1 << 20), start);
    a.add_peer("b", addr(2));
    a.set_keyring(keys.clone());
    let mut b = Mesh::new("b", settings(2 << 20), start);
    let pa = b.add_peer("a", addr(1)).unwrap();
    b.set_keyring(keys);
    // A corpus of genuine sealed datagrams, made once a has verified b (a's first ping names
    // no incarnation of b; b's answer teaches it b's), so they are fresh at b.
    let mut corpus = Vec::new();
    let mut buf = vec![0u8; 1232];
    let mut now = a.poll_timeout().unwrap();
    a.handle_timeout(now);
    while let Some(t) = a.poll_transmit(now, &mut buf) {
        let first = buf[..t.len].to_vec();
        b.handle_datagram(now, addr(1), &first);
    }
    let mut answer = vec![0u8; 1232];
    while let Some(t) = b.poll_transmit(now, &mut answer) {
        a.handle_datagram(now, addr(2), &answer[..t.len]);
    }
    while corpus.len() < 32 {
        now = a.poll_timeout().unwrap().max(now);
        a.handle_timeout(now);
        while let Some(t) = a.poll_transmit(now, &mut buf) {
            corpus.push(buf[..t.len].to_vec());
        }
    }
    let mut rng = Rng::new(0x5ea1);
    let rounds = 200_000 * scale();
    let started = Instant::now();
    for round in 0..rounds {
        let mut input = corpus[(round % 32) as usize].clone();
        mutate(&mut rng, &mut input, &[b"PM\x01\x80", &[0; 16]]);
        b.handle_datagram(now, addr(1), &input);
        while b.poll_transmit(now, &mut buf).is_some() {}
    }
    report("sealed datagrams", rounds, started);
    // Only genuine datagrams were ever admitted: at most the corpus itself.
    let admitted = b.peer(pa).unwrap().received();
    assert!(admitted <= 32, "{admitted} admitted");
    assert!(b.dropped().total() >= rounds - 32);
    assert!(matches!(
        b.peer(pa).unwrap().state(),
        PeerState::Alive | PeerState::Unknown
    ));
}
