//! `peermesh-flood`: a test tool that floods a node's UDP port with garbage, to check that a
//! flood cannot starve the node's heartbeats.
//!
//! ```text
//! peermesh-flood --target 127.0.0.2:1313 [--rate N] [--secs S] [--key-id HEX]
//! ```
//! Sends `--rate` datagrams per second (0, the default: as fast as it can) for `--secs`
//! seconds, then prints what it sent. The garbage is a mix: random bytes, plain datagrams
//! with a peermesh header and random fields, and — with `--key-id`, the id an eavesdropper
//! sees on the wire — sealed-looking datagrams under the mesh's real key id, which cost the
//! node a full authentication check each. It only ever targets a loopback address.
#![forbid(unsafe_code)]

use peermesh::core::rng::Rng;
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: peermesh-flood --target 127.x.y.z:PORT [--rate N] [--secs S] [--key-id HEX]";

struct Args {
    target: SocketAddr,
    rate: u64,
    secs: f64,
    key_id: Option<[u8; 4]>,
}

fn parse_args() -> Result<Args, String> {
    let mut target = None;
    let (mut rate, mut secs, mut key_id) = (0u64, 5.0f64, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--target" => {
                let addr: SocketAddr =
                    value.parse().map_err(|_| format!("bad --target {value}"))?;
                if !addr.ip().is_loopback() {
                    return Err(format!(
                        "{addr} is not a loopback address: refusing to flood it"
                    ));
                }
                target = Some(addr);
            }
            "--rate" => rate = value.parse().map_err(|_| format!("bad --rate {value}"))?,
            "--secs" => {
                secs = value.parse().map_err(|_| format!("bad --secs {value}"))?;
                if !(0.0..=600.0).contains(&secs) {
                    return Err("--secs must be 0..600".into());
                }
            }
            "--key-id" => {
                let bytes: Vec<u8> = (0..value.len() / 2)
                    .filter_map(|i| u8::from_str_radix(value.get(2 * i..2 * i + 2)?, 16).ok())
                    .collect();
                let id: [u8; 4] = bytes
                    .try_into()
                    .map_err(|_| format!("bad --key-id {value}"))?;
                key_id = Some(id);
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(Args {
        target: target.ok_or("--target is required")?,
        rate,
        secs,
        key_id,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let bind: SocketAddr = if args.target.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    }
    .parse()
    .unwrap_or(args.target);
    let socket = match UdpSocket::bind(bind) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: bind {bind}: {e}");
            return ExitCode::from(1);
        }
    };
    // Connected: the kernel resolves the route once, not on every send.
    if let Err(e) = socket.connect(args.target) {
        eprintln!("error: connect {}: {e}", args.target);
        return ExitCode::from(1);
    }
    let mut rng = Rng::new(u64::from(std::process::id()));
    let mut packet = [0u8; 1232];
    let start = Instant::now();
    let limit = Duration::from_secs_f64(args.secs);
    let (mut sent, mut failed) = (0u64, 0u64);
    while start.elapsed() < limit {
        // Pace in batches of 64 when a rate is set.
        if args.rate > 0 {
            let due = (start.elapsed().as_secs_f64() * args.rate as f64) as u64;
            if sent >= due {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
        }
        for _ in 0..64 {
            let len = 8 + rng.below(120) as usize;
            for chunk in packet[..len].chunks_mut(8) {
                let random = rng.next_u64().to_le_bytes();
                chunk.copy_from_slice(&random[..chunk.len()]);
            }
            match (sent % 3, args.key_id) {
                (1, _) => packet[..4].copy_from_slice(&[b'P', b'M', 1, 1 + (sent % 4) as u8]),
                (2, Some(id)) => {
                    packet[..4].copy_from_slice(&[b'P', b'M', 1, 0x80]);
                    packet[4..8].copy_from_slice(&id);
                }
                _ => {}
            }
            match socket.send(&packet[..len]) {
                Ok(_) => sent += 1,
                Err(_) => failed += 1,
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} datagrams in {secs:.2} s ({:.0}/s) to {}, {failed} send errors",
        sent as f64 / secs,
        args.target
    );
    ExitCode::SUCCESS
}
