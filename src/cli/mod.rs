//! The `peermesh` command line: parsing (by clap, from the definition in [`args`]) and the
//! subcommands.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad config. A reader that goes
//! away (`peermesh status | head -0`) is not a failure: the command stops quietly, exit 0.

mod app;
mod args;
mod check;
mod manual;
mod node;
mod query;
mod run;
mod usage;

use args::{Cli, Command};
use clap::error::ErrorKind;
use clap::FromArgMatches;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};

/// A failure with its exit code.
#[derive(Debug)]
enum Failure {
    /// Bad usage: the whole message as [`usage::explain`] wrote it; exit 2.
    Usage(String),
    /// Bad config: exit 2.
    Config(String),
    /// Anything at run time: exit 1.
    Runtime(String),
    /// Standard output is a pipe nobody reads any more: stop quietly, exit 0.
    ClosedPipe,
    /// Everything to say is said (`status --check`): exit with this code, print nothing.
    Exit(i32),
}

impl Failure {
    /// What went wrong, without the `error: ` the command line puts first.
    fn message(&self) -> String {
        match self {
            Failure::Usage(text) => text.lines().next().unwrap_or_default().to_owned(),
            Failure::Config(msg) | Failure::Runtime(msg) => msg.clone(),
            Failure::ClosedPipe => "standard output was closed".to_owned(),
            Failure::Exit(code) => format!("exit {code}"),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(text) => f.write_str(text.trim_end()),
            Failure::Config(msg) | Failure::Runtime(msg) => write!(f, "error: {msg}"),
            Failure::ClosedPipe | Failure::Exit(_) => f.write_str(&self.message()),
        }
    }
}

/// Runs the command line; returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    // `None`: the help or the version was asked for and printed.
    match parse(&args).and_then(|command| command.map_or(Ok(()), dispatch)) {
        Ok(()) => 0,
        Err(Failure::ClosedPipe) => 0,
        Err(Failure::Exit(code)) => {
            let _ = io::stdout().flush();
            code
        }
        Err(failure) => {
            let _ = io::stdout().flush();
            // Not eprintln!: a closed stderr must not turn an error into a panic.
            let _ = writeln!(io::stderr(), "{failure}");
            match failure {
                Failure::Usage(_) | Failure::Config(_) => 2,
                Failure::Runtime(_) | Failure::ClosedPipe => 1,
                Failure::Exit(code) => code,
            }
        }
    }
}

/// The typed command; `None` when the command line asked for `--help` (or `help`) or
/// `--version`, which are then printed here, to stdout. clap reports those two as "errors"
/// of kind `DisplayHelp` and `DisplayVersion`.
fn parse(args: &[OsString]) -> Result<Option<Command>, Failure> {
    let mut definition = args::command();
    let parsed = definition
        .try_get_matches_from_mut(args)
        .and_then(|matches| Cli::from_arg_matches(&matches));
    match parsed {
        Ok(cli) => Ok(Some(cli.command)),
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            emit(err.render().to_string()).map(|()| None)
        }
        Err(err) => Err(Failure::Usage(usage::explain(&mut definition, args, &err))),
    }
}

/// Writes `text` to stdout and flushes. Every output of the CLI goes through here, never
/// `print!`, which panics on a closed pipe.
fn emit(text: impl AsRef<[u8]>) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_ref()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Failure::ClosedPipe),
        Err(e) => Err(Failure::Runtime(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

fn dispatch(command: Command) -> Result<(), Failure> {
    match command {
        Command::Run(a) => run::run(a),
        Command::Status(a) => query::status(a),
        Command::Top(a) => query::top(a),
        Command::Matrix(a) => query::matrix(a),
        Command::Send(a) => app::send(a),
        Command::Tag(a) => app::tag(a),
        Command::Query(a) => app::query(a),
        Command::Nearest(a) => app::nearest(a),
        Command::Watch(a) => app::watch(a),
        Command::Respond(a) => app::respond(a),
        Command::Reload(a) => app::reload(a),
        Command::Metrics(a) => app::metrics(a),
        Command::Check(a) => check::check(a),
        Command::Keygen => match peermesh::wire::keyring::generate_hex() {
            Ok(key) => emit(format!("{key}\n")),
            Err(e) => Err(Failure::Runtime(format!("no random source: {e}"))),
        },
        Command::Completions(a) => manual::completions(a.shell),
        Command::Man(a) => manual::man(a.command.as_deref()),
    }
}
