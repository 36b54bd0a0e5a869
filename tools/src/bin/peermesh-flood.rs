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

use clap::Parser;
use peermesh::core::rng::Rng;
use peermesh_tools::{loopback_addr, parse_args};
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Floods a node's UDP port with garbage (loopback only), then prints what it sent.
#[derive(Debug, Parser)]
#[command(name = "peermesh-flood")]
struct Args {
    /// the loopback address to flood
    #[arg(long, value_name = "ADDR:PORT", value_parser = loopback_addr)]
    target: SocketAddr,
    /// datagrams per second (0: as fast as it can)
    #[arg(long, value_name = "N", default_value_t = 0)]
    rate: u64,
    /// how long to flood, in seconds (0 to 600)
    #[arg(long, value_name = "S", default_value_t = 5.0, value_parser = seconds)]
    secs: f64,
    /// the mesh's key id (8 hex digits, as on the wire): adds sealed-looking datagrams
    /// under it, which cost the node a full authentication check each
    #[arg(long, value_name = "HEX", value_parser = key_id)]
    key_id: Option<[u8; 4]>,
}

/// `--secs`: 0 to 600 seconds.
fn seconds(value: &str) -> Result<f64, String> {
    value
        .parse()
        .ok()
        .filter(|s| (0.0..=600.0).contains(s))
        .ok_or_else(|| format!("wants seconds from 0 to 600, not {value:?}"))
}

/// `--key-id`: four bytes as 8 hex digits.
fn key_id(value: &str) -> Result<[u8; 4], String> {
    let bad = || format!("wants 8 hex digits, not {value:?}");
    if value.len() != 8 {
        return Err(bad());
    }
    let mut id = [0u8; 4];
    for (i, byte) in id.iter_mut().enumerate() {
        let digits = value.get(2 * i..2 * i + 2).ok_or_else(bad)?;
        *byte = u8::from_str_radix(digits, 16).map_err(|_| bad())?;
    }
    Ok(id)
}

fn main() -> ExitCode {
    let args: Args = parse_args();
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
