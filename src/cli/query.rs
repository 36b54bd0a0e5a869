//! `peermesh status`, `top` and `matrix`: ask a running node over its control socket.

use super::args::{MatrixArgs, StatusArgs, TargetArgs, TopArgs};
use super::node::{find_self, load_config};
use super::{emit, Failure};
use peermesh::io::control::{self, Answer, MatrixFormat, Request};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The control socket to talk to: `--control`, else the default path of `--name` or of the
/// node this machine's hostname names in the config.
fn control_path(target: &TargetArgs) -> Result<PathBuf, Failure> {
    if let Some(path) = &target.control {
        return Ok(path.clone());
    }
    if let Some(name) = &target.name {
        return Ok(control::default_path(name));
    }
    let config = load_config(&target.config)?;
    let me = find_self(&config, None)?;
    Ok(control::default_path(&config.nodes[me].name))
}

/// Asks the node and returns what it answered as text to print: the JSON of `status` and
/// `matrix` exactly as the node wrote it, tables and SVG as they are; a newline at the end.
fn ask(path: &Path, request: Request) -> Result<String, Failure> {
    let answer = control::request(path, request).map_err(|e| Failure::Runtime(e.to_string()))?;
    let mut text = match answer {
        Answer::Status(json) | Answer::Matrix(json) | Answer::Text(json) => json,
        Answer::Pong => "pong".to_owned(),
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// `peermesh status`: the peer table, coloured on a terminal, or its JSON.
pub(super) fn status(args: StatusArgs) -> Result<(), Failure> {
    let path = control_path(&args.target)?;
    let color = !args.json && std::io::stdout().is_terminal();
    emit(ask(
        &path,
        Request::Status {
            json: args.json,
            color,
        },
    )?)
}

/// `peermesh top`: the peer table once a second, until Ctrl-C or `--count` tables.
pub(super) fn top(args: TopArgs) -> Result<(), Failure> {
    let path = control_path(&args.target)?;
    let tty = std::io::stdout().is_terminal();
    let mut shown = 0u64;
    loop {
        let table = ask(
            &path,
            Request::Status {
                json: false,
                color: tty,
            },
        )?;
        if tty {
            // Home the cursor and clear, like top and mtr.
            emit(format!("\x1b[H\x1b[2J{table}(Ctrl-C to quit)\n"))?;
        } else {
            emit(format!("{table}\n"))?;
        }
        shown += 1;
        if args.count.is_some_and(|n| shown >= n) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `peermesh matrix`: the latency matrix as a table, its JSON, or an SVG file (`--svg -`:
/// the SVG on standard output).
/// (`--json` with `--svg` is refused by the parser.)
pub(super) fn matrix(args: MatrixArgs) -> Result<(), Failure> {
    let path = control_path(&args.target)?;
    match &args.svg {
        Some(file) if file.as_os_str() == "-" => {
            emit(ask(&path, Request::Matrix(MatrixFormat::Svg))?)
        }
        Some(file) => {
            let svg = ask(&path, Request::Matrix(MatrixFormat::Svg))?;
            std::fs::write(file, svg)
                .map_err(|e| Failure::Runtime(format!("cannot write {}: {e}", file.display())))?;
            emit(format!("wrote {}\n", file.display()))
        }
        None => emit(ask(
            &path,
            Request::Matrix(if args.json {
                MatrixFormat::Json
            } else {
                MatrixFormat::Table
            }),
        )?),
    }
}
