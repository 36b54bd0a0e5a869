//! What the test tools share: command lines parsed by clap, with errors in the form the
//! peermesh command line uses (`error: ...`, a tip, `usage: ...`, a pointer to `--help`;
//! exit 2), and the loopback-only rule for the addresses they take.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use std::net::SocketAddr;

/// Parses this process's arguments as `T`. `--help` prints the help to stdout and exits 0;
/// a usage error goes to stderr and exits 2.
pub fn parse_args<T: Parser>() -> T {
    T::try_parse().unwrap_or_else(|err| exit::<T>(err))
}

/// Exits with a usage error of `T` that the parser cannot see, such as two flags that must
/// differ: `message` on one line, then the usage, exit 2.
pub fn usage_error<T: CommandFactory>(message: impl std::fmt::Display) -> ! {
    exit::<T>(T::command().error(ErrorKind::ArgumentConflict, message))
}

/// Prints `err` where it belongs and exits with its code (0 for help, 2 for usage).
fn exit<T: CommandFactory>(err: clap::Error) -> ! {
    if err.use_stderr() {
        eprint!("{}", render::<T>(&err));
    } else {
        print!("{}", err.render());
    }
    std::process::exit(err.exit_code())
}

/// A usage error as peermesh writes one: clap's message and tips, then always the usage
/// (clap leaves it out after a bad value), headed `usage:`, and a pointer to `--help`.
fn render<T: CommandFactory>(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let message = rendered
        .split("\n\nUsage:")
        .next()
        .and_then(|m| m.split("\n\nFor more information").next())
        .unwrap_or(&rendered)
        .trim_end();
    let mut command = T::command();
    let usage = command.render_usage().to_string();
    let usage = usage.trim().trim_start_matches("Usage:").trim();
    format!(
        "{message}\n\nusage: {usage}\nFor more information, try '{} --help'.\n",
        command.get_name()
    )
}

/// Parses an `ADDR:PORT` that must be on loopback: the tools never send off the machine.
pub fn loopback_addr(value: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = value
        .parse()
        .map_err(|_| format!("wants ADDR:PORT, not {value:?}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr} is not a loopback address: the test tools only use loopback"
        ));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Parser)]
    #[command(name = "tool")]
    struct Args {
        /// an address
        #[arg(long, value_parser = loopback_addr)]
        to: SocketAddr,
    }

    #[test]
    fn an_error_says_what_then_the_usage_and_a_pointer_to_help() {
        let expect = |err: clap::Error, first: &str| {
            let text = render::<Args>(&err);
            assert!(text.starts_with(first), "{text}");
            assert!(text.contains("\n\nusage: tool --to <TO>\n"), "{text}");
            assert!(
                text.ends_with("\nFor more information, try 'tool --help'.\n"),
                "{text}"
            );
            assert_eq!(text.matches("usage").count(), 1, "{text}");
            assert_eq!(err.exit_code(), 2);
            text
        };
        let bad_value = Args::try_parse_from(["tool", "--to", "10.0.0.1:1"]).unwrap_err();
        let text = expect(
            bad_value,
            "error: invalid value '10.0.0.1:1' for '--to <TO>'",
        );
        assert!(text.contains("not a loopback address"), "{text}");
        let typo = Args::try_parse_from(["tool", "--too", "x"]).unwrap_err();
        let text = expect(typo, "error: unexpected argument '--too' found");
        assert!(
            text.contains("tip: a similar argument exists: '--to'"),
            "{text}"
        );
        let raw = Args::command().error(ErrorKind::ArgumentConflict, "a and b must differ");
        expect(raw, "error: a and b must differ\n");
    }

    #[test]
    fn loopback_addresses_only() {
        assert!(loopback_addr("127.0.0.2:1313").is_ok());
        assert!(loopback_addr("[::1]:1313").is_ok());
        assert!(loopback_addr("192.0.2.1:1313").is_err());
        assert!(loopback_addr("nope").is_err());
    }
}
