//! The command line's definition: one [`Command`] variant per subcommand, each with its own
//! flags. The help, the usage in errors, the shell completions and the man pages are all
//! generated from it, so they cannot drift apart.

use clap::builder::PossibleValuesParser;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Every help page opens with its usage, then says what the command does, then lists flags.
const HELP_TEMPLATE: &str = "usage: {usage}\n\n{about-with-newline}\n{all-args}{after-help}";

/// The exit codes, under the top-level help and in the man page.
pub(crate) const EXIT_STATUS: &str = "\
Exit codes: 0 success; 1 failure at run time (no node answering, a port or socket in use, ...);
2 bad usage or bad config. `status --check`: 0 every peer alive, 1 not, 3 unknown.";

/// Where to read more, under the top-level help: what is there on any machine.
const MORE_HELP: &str = "\
`peermesh help COMMAND` (or `peermesh COMMAND --help`) describes a command and its flags;
`peermesh man` prints the manual page.";

/// `peermesh`: the whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "peermesh",
    bin_name = "peermesh",
    version = version(),
    about = "heartbeats, liveness and round-trip latencies across a mesh of nodes",
    long_about = None,
    subcommand_value_name = "command",
    after_help = format!("{EXIT_STATUS}\n{MORE_HELP}"),
)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands. The first paragraph of each doc comment is the line in the command list;
/// the whole comment is what `peermesh COMMAND --help` says.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// run this node (listens, heartbeats, answers)
    ///
    /// Runs this node in the foreground until SIGINT or SIGTERM, then tells every peer it
    /// leaves and exits 0. SIGHUP re-reads the key file. Logs go to stderr; set RUST_LOG
    /// (default info; trace shows every datagram).
    Run(RunArgs),
    /// print the peer table of a running node
    ///
    /// Prints the peer table of a running node: state, RTT last/avg/p99, jitter, loss, last
    /// heard (coloured on a terminal unless NO_COLOR is set); with --json, one line of JSON;
    /// with --check, one line for a monitoring system and its exit code.
    Status(StatusArgs),
    /// live view of the peer table, refreshed every second
    ///
    /// Shows the peer table of a running node, redrawn every second until Ctrl-C, on the
    /// terminal's alternate screen (to a pipe, one table after another). While the node does
    /// not answer (stopped, restarting) it shows a "reconnecting to PATH" line and asks again
    /// every second. Ctrl-C exits 0.
    Top(TopArgs),
    /// the latency matrix between every pair of nodes (table, --json, --svg FILE)
    ///
    /// Prints the N x N latency matrix a running node has assembled (rows: from, columns: to;
    /// RTT medians): a table, one line of JSON with --json, or an SVG heatmap written to FILE
    /// with --svg FILE (to standard output with --svg -).
    Matrix(MatrixArgs),
    /// send a message to a peer, or to all (--confirm: wait until each confirmed it)
    ///
    /// Sends DATA (the argument, else standard input, at most 65536 bytes) to PEER, or to
    /// every peer that has not left with --all. Best effort unless --confirm: then it waits
    /// until every target acknowledged the message or failed (its timeout passed, or it is
    /// dead or left), retransmitting on a timeout derived from the RTT. Exits 0 when sent
    /// (with --confirm: when every target confirmed), 1 when any target failed; --json
    /// prints {"delivered":[names],"failed":[names]}.
    Send(SendArgs),
    /// show or change this node's tags (tag, tag set KEY=VALUE..., tag rm KEY...)
    ///
    /// Without arguments prints this node's tags, one KEY=VALUE a line (--json: one
    /// object). `tag set KEY=VALUE...` sets keys, `tag rm KEY...` removes them, all at once
    /// or none; the change reaches every peer within a few intervals. Run-time changes
    /// survive a restart only with `run --tags-file PATH`.
    Tag(TagArgs),
    /// ask the matching peers and print each response with its node and RTT
    ///
    /// Sends DATA (the argument, else standard input) to every peer, or those named by
    /// --peer and carrying every --tag KEY=VALUE, and prints each response as it came with
    /// its node and the RTT to it, then the nodes that did not answer by the timeout. Exits
    /// 0 when every node asked answered, 1 when some did not.
    Query(QueryArgs),
    /// print the alive peer(s) with the lowest RTT that carry the given tags
    ///
    /// Prints the name of the alive peer with the lowest RTT median among those carrying
    /// every --tag KEY=VALUE (all of them on a tie, one a line), so a script picks the
    /// closest replica in one line. Exits 1 when no alive peer matches.
    Nearest(NearestArgs),
    /// print events as they happen (peers up and down, tags, messages, ...) until Ctrl-C
    ///
    /// Prints the node's events as they happen, one a line, until Ctrl-C (exit 0): peers
    /// up, suspect, down, unreachable, restarted, left, tag changes, messages, deliveries,
    /// queries. With --json, one JSON object a line with "event", "peer", "time_ms" and
    /// the event's own fields. A reader that falls behind never stalls the node: it gets
    /// {"event":"overflow","dropped":N} in place of what it missed.
    Watch(WatchArgs),
    /// answer a query this node was asked, as `watch` reported it
    ///
    /// Answers query QUERY of peer PEER (the "peer" and "query" of a `watch --json` record
    /// of event "query") with DATA (the argument, else standard input), or with --error an
    /// error response, so a program in any language that reads `watch` answers queries as an
    /// event handler would. Once per query, while the asker still waits. Exits 1 when the
    /// node refuses (no such peer, no such query open).
    Respond(RespondArgs),
    /// make a running node re-read its config file and key file (as SIGHUP does)
    ///
    /// Asks the running node to read peers.ron and its key file again and apply what
    /// changed: new peers are added, removed ones dropped (a `removed` event), moved ones
    /// and new timings applied, while the peers that stay keep their counters and RTT
    /// windows. Prints what changed. A file that does not load, or that would change this
    /// node's own name, host or port, is refused: the node runs on with the old config,
    /// the error is printed (`error: peers.ron:LINE:COL: ...`) and the exit code is 1.
    Reload(ReloadArgs),
    /// print the node's Prometheus metrics (text exposition format)
    ///
    /// Prints the running node's metrics in the Prometheus text exposition format (0.0.4),
    /// as `GET /metrics` serves them when the node has an HTTP endpoint (`http_listen` in
    /// peers.ron, or `run --http ADDR`): peers per state, per-peer state, RTT, loss and
    /// counters, drops by reason, datagrams and bytes, matrix row ages. For the node
    /// exporter's textfile collector, or a look by hand.
    Metrics(MetricsArgs),
    /// validate the config and say what this node would do
    ///
    /// Validates the config and the key file, resolves every host, and says which node this
    /// is, what it binds, whether the mesh is authenticated and which peers it heartbeats.
    /// Starts nothing.
    Check(CheckArgs),
    /// print a new random mesh key (for the key file named by `keyring` in the config)
    ///
    /// Prints a new random key (64 hex digits) from the operating system's random source:
    /// `(umask 077; peermesh keygen > keyring)`.
    Keygen,
    /// print a shell completion script (bash, zsh or fish)
    ///
    /// Prints a completion script for SHELL to stdout, e.g.
    /// `peermesh completions bash > /etc/bash_completion.d/peermesh`.
    Completions(CompletionsArgs),
    /// print the manual page (roff), of peermesh or of one command
    ///
    /// Prints the manual page to stdout, e.g. `peermesh man | man -l -`, or
    /// `peermesh man run > /usr/local/share/man/man1/peermesh-run.1`.
    Man(ManArgs),
}

/// The config's default path, and where it is looked for when that is absent.
pub(crate) const DEFAULT_CONFIG: &str = "peers.ron";
/// The system-wide config, used when `./peers.ron` is absent (the systemd unit's).
pub(crate) const SYSTEM_CONFIG: &str = "/etc/peermesh/peers.ron";
/// The systemd unit's control socket, asked when it exists and nothing else says where.
pub(crate) const SYSTEM_CONTROL: &str = "/run/peermesh/peermesh.sock";
/// The environment variable that names the control socket of `status`, `top`, `matrix`.
pub(crate) const CONTROL_ENV: &str = "PEERMESH_CONTROL";

/// Which config, and which of its nodes this machine is: for `run` and `check`.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// the mesh config [default: ./peers.ron, else /etc/peermesh/peers.ron]
    #[arg(long, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,
    /// which node of the config this is (compared case-insensitively) [default: the node
    /// whose name is this machine's hostname or its first label]
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
}

/// How `status`, `top` and `matrix` find the node to ask: `--control`, else the default
/// socket of `--name`, else `$PEERMESH_CONTROL`, else the systemd unit's socket if it
/// exists, else the default socket of the node the config and the hostname pick.
#[derive(Debug, Args)]
pub(crate) struct TargetArgs {
    /// the node's control socket [default: $PEERMESH_CONTROL, else
    /// /run/peermesh/peermesh.sock if it exists, else this node's own default]
    ///
    /// The node's control socket. Without it, --name or --config: $PEERMESH_CONTROL if set,
    /// else /run/peermesh/peermesh.sock (the systemd unit's) if it exists, else the default
    /// socket of the node the config and this machine's hostname pick:
    /// $XDG_RUNTIME_DIR/peermesh-NAME.sock if XDG_RUNTIME_DIR is a directory you own, else
    /// /tmp/peermesh-UID/NAME.sock.
    #[arg(long, value_name = "PATH")]
    pub(crate) control: Option<PathBuf>,
    /// the node whose default control socket to ask, without reading the config (spell it
    /// as the config does)
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// the mesh config, read to find this machine's node and its default socket (when
    /// given, before $PEERMESH_CONTROL) [default: ./peers.ron, else /etc/peermesh/peers.ron]
    #[arg(long, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,
}

/// `peermesh run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The config and this node.
    #[command(flatten)]
    pub(crate) node: NodeArgs,
    /// bind this address instead of the node's own entry (e.g. 0.0.0.0:1313, or [::]:1313
    /// for IPv4 and IPv6 peers alike)
    #[arg(long, value_name = "ADDR:PORT", value_parser = socket_addr)]
    pub(crate) bind: Option<SocketAddr>,
    /// run PATH for each event (overrides `handler` in the config)
    ///
    /// Runs the program PATH for each event (a peer up, down, ..., a message, a query),
    /// without holding the node up: the event in PEERMESH_EVENT, PEERMESH_NODE,
    /// PEERMESH_PEER and other PEERMESH_* variables, the payload on its standard input; for
    /// a query, its standard output is the answer and a non-zero exit an error answer. At
    /// most 8 run at once, each for at most 10 s; their stderr goes to the log. Overrides
    /// `handler` in the config.
    #[arg(long, value_name = "PATH")]
    pub(crate) handler: Option<PathBuf>,
    /// the control socket to serve [default: $XDG_RUNTIME_DIR/peermesh-NAME.sock, else
    /// /tmp/peermesh-UID/NAME.sock]
    ///
    /// The control socket to serve. Default: $XDG_RUNTIME_DIR/peermesh-NAME.sock if
    /// XDG_RUNTIME_DIR is a directory you own, else /tmp/peermesh-UID/NAME.sock in a private
    /// directory (mode 0700) that run creates. NAME is the node's name, ASCII letters
    /// lower-cased, other bytes but digits, '-', '_' and '.' written %xx. Only a stale
    /// socket at the path is replaced; anything else there is refused.
    #[arg(long, value_name = "PATH")]
    pub(crate) control: Option<PathBuf>,
    /// give the control socket to GROUP (mode 0660), so its members can query the node
    ///
    /// Gives the control socket to GROUP (a name or a number) with mode 0660 instead of
    /// 0600, so members of GROUP can use status, top and matrix. This process must be root
    /// or a member of GROUP, and the socket's directory must let GROUP in.
    #[arg(long, value_name = "GROUP")]
    pub(crate) control_group: Option<String>,
    /// keep run-time tag changes in PATH, read at start over the config's tags
    ///
    /// Keeps this node's tags in PATH (a JSON object of strings): read at start, where it
    /// overrides the config's `tags:`, and rewritten (atomically) at each run-time change
    /// (`peermesh tag set`/`rm`). Without it, run-time changes are lost on restart.
    #[arg(long, value_name = "PATH")]
    pub(crate) tags_file: Option<PathBuf>,
    /// serve /metrics, /status.json, /matrix.json, /matrix.svg and a status page on ADDR
    ///
    /// Serves HTTP on ADDR (an IP address and port, e.g. 127.0.0.1:9313) from the node's own
    /// event loop: /metrics (Prometheus), /status.json and /matrix.json (the --json
    /// contracts), /matrix.svg (the heatmap) and / (a status page that refreshes itself).
    /// Overrides `http_listen` of peers.ron. Anyone who can reach ADDR can read them: keep it
    /// on loopback or a private network.
    #[arg(long, value_name = "ADDR")]
    pub(crate) http: Option<std::net::SocketAddr>,
}

/// `peermesh send`.
#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// The node to ask.
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// wait until every target acknowledged the message (or failed)
    #[arg(long)]
    pub(crate) confirm: bool,
    /// how long a confirmed message may take, in milliseconds [default: 5000]
    #[arg(long, value_name = "MS", value_parser = millis, requires = "confirm")]
    pub(crate) timeout: Option<u64>,
    /// print {"delivered":[names],"failed":[names]}
    #[arg(long)]
    pub(crate) json: bool,
    /// send to every peer that has not left (then the first argument is DATA)
    #[arg(long)]
    pub(crate) all: bool,
    /// the peer to send to (not with --all)
    #[arg(value_name = "PEER", required_unless_present = "all")]
    pub(crate) peer: Option<String>,
    /// the message [default: standard input]
    #[arg(value_name = "DATA")]
    pub(crate) data: Option<String>,
}

/// `peermesh tag`.
#[derive(Debug, Args)]
pub(crate) struct TagArgs {
    /// The node to ask.
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// print the tags as one JSON object
    #[arg(long)]
    pub(crate) json: bool,
    /// set KEY=VALUE..., or rm KEY... [default: print the tags]
    #[arg(value_name = "OP", value_parser = PossibleValuesParser::new(["set", "rm"]))]
    pub(crate) op: Option<String>,
    /// KEY=VALUE pairs (set) or KEYs (rm)
    #[arg(value_name = "ITEM", requires = "op")]
    pub(crate) items: Vec<String>,
}

/// `peermesh query`.
#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// The node to ask.
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// ask only this peer (repeat for more) [default: every peer]
    #[arg(long = "peer", value_name = "NAME")]
    pub(crate) peers: Vec<String>,
    /// ask only peers carrying this tag (repeat: all of them)
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = key_value)]
    pub(crate) tags: Vec<(String, String)>,
    /// how long to gather responses, in milliseconds [default: 2000]
    #[arg(long, value_name = "MS", value_parser = millis)]
    pub(crate) timeout: Option<u64>,
    /// print one JSON object: {"responses":[...],"acks":[...],"missing":[...]}
    #[arg(long)]
    pub(crate) json: bool,
    /// the question [default: standard input]
    #[arg(value_name = "DATA")]
    pub(crate) data: Option<String>,
}

/// `peermesh respond`.
#[derive(Debug, Args)]
pub(crate) struct RespondArgs {
    /// The node to ask.
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// an error response: DATA says why there is no answer
    #[arg(long)]
    pub(crate) error: bool,
    /// the peer that asked (the record's "peer")
    #[arg(value_name = "PEER")]
    pub(crate) peer: String,
    /// the asker's number for the query (the record's "query")
    #[arg(value_name = "QUERY")]
    pub(crate) query: u64,
    /// the answer [default: standard input]
    #[arg(value_name = "DATA")]
    pub(crate) data: Option<String>,
}

/// `peermesh reload`.
#[derive(Debug, Args)]
pub(crate) struct ReloadArgs {
    /// The node to ask.
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// print what changed as one line of JSON
    #[arg(long)]
    pub(crate) json: bool,
}

/// `peermesh metrics`.
#[derive(Debug, Args)]
pub(crate) struct MetricsArgs {
    /// The node to ask.
    #[command(flatten)]
    pub(crate) target: TargetArgs,
}

/// `peermesh nearest`.
#[derive(Debug, Args)]
pub(crate) struct NearestArgs {
    /// The node to ask.
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// only peers carrying this tag (repeat: all of them)
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = key_value)]
    pub(crate) tags: Vec<(String, String)>,
    /// print {"nodes":[names],"rtt_us":p50}
    #[arg(long)]
    pub(crate) json: bool,
}

/// `peermesh watch`.
#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// The node to ask.
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// one JSON object a line
    #[arg(long)]
    pub(crate) json: bool,
}

/// The state names `--state` takes.
const STATE_NAMES: [&str; 6] = ["unknown", "alive", "suspect", "dead", "unreachable", "left"];

/// `peermesh status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The node to ask.
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// print one line of JSON instead of the table (for scripts: `peermesh status --json | jq`)
    #[arg(long)]
    pub(crate) json: bool,
    /// show only the peers in these states (e.g. --state dead,unreachable)
    #[arg(long, value_name = "STATES", value_delimiter = ',',
          value_parser = PossibleValuesParser::new(STATE_NAMES), conflicts_with = "check")]
    pub(crate) state: Vec<String>,
    /// monitoring check: one line, exit 0 if every peer is alive, 1 if not (or a name is
    /// claimed twice), 3 if unknown
    ///
    /// A monitoring check in the Nagios style: prints one line, `PEERMESH OK - 4/4 peers
    /// alive` and exits 0 when every peer is alive and no name is claimed twice; `PEERMESH
    /// WARNING - 1/4 peers not alive: web3 dead` and exits 1 when any is not, or while a name
    /// is claimed twice even with every peer alive (a peer diagnosed `conflict`, or another
    /// process running as this node: `two processes claim to be web2`); `PEERMESH UNKNOWN -
    /// why` and exits 3 when the node cannot be asked.
    #[arg(long, conflicts_with = "json")]
    pub(crate) check: bool,
}

/// `peermesh top`.
#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// The node to ask.
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// stop after N frames (tables or reconnecting lines) [default: at Ctrl-C]
    #[arg(long, value_name = "N", value_parser = count)]
    pub(crate) count: Option<u64>,
    /// show only the peers in these states (e.g. --state dead,unreachable)
    #[arg(long, value_name = "STATES", value_delimiter = ',',
          value_parser = PossibleValuesParser::new(STATE_NAMES))]
    pub(crate) state: Vec<String>,
}

/// `peermesh matrix`.
#[derive(Debug, Args)]
pub(crate) struct MatrixArgs {
    /// The node to ask.
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// print one line of JSON instead of the table (for scripts: `peermesh matrix --json | jq`)
    #[arg(long, conflicts_with = "svg")]
    pub(crate) json: bool,
    /// write an SVG heatmap to FILE (open it in a browser; - for standard output) instead of
    /// printing the table
    #[arg(long, value_name = "FILE")]
    pub(crate) svg: Option<PathBuf>,
}

/// `peermesh check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The config and this node.
    #[command(flatten)]
    pub(crate) node: NodeArgs,
    /// check as `run --bind ADDR:PORT` would bind (e.g. [::]:1313 for IPv4 and IPv6)
    #[arg(long, value_name = "ADDR:PORT", value_parser = socket_addr)]
    pub(crate) bind: Option<SocketAddr>,
}

/// `peermesh completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// the shell to complete for
    #[arg(value_enum)]
    pub(crate) shell: Shell,
}

/// The shells `peermesh completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Shell {
    /// GNU bash.
    Bash,
    /// Z shell.
    Zsh,
    /// fish.
    Fish,
}

/// `peermesh man`.
#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// the command whose page to print (peermesh-COMMAND(1)) [default: the page of peermesh]
    #[arg(value_name = "COMMAND")]
    pub(crate) command: Option<String>,
}

/// `peermesh --version`: the wire protocol's version too, since nodes of different ones
/// cannot talk.
fn version() -> String {
    format!(
        "{} (wire protocol {})",
        env!("CARGO_PKG_VERSION"),
        peermesh::wire::VERSION
    )
}

/// The whole command line as clap sees it, with the settings every subcommand shares: the
/// help layout, and a flag given twice meaning its last value (as before clap).
///
/// `man`'s COMMAND takes the names of the commands, read from the definition itself, so
/// a wrong one gets "did you mean" and the shells complete them.
pub(crate) fn command() -> clap::Command {
    let cli = Cli::command();
    let pages: Vec<String> = cli
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect();
    // No command is an error ("no command given"), not the help printed with exit 2.
    cli.help_template(HELP_TEMPLATE)
        .arg_required_else_help(false)
        .mut_subcommands(|sub| sub.help_template(HELP_TEMPLATE).args_override_self(true))
        .mut_subcommand("man", |man| {
            man.mut_arg("command", |arg| {
                arg.value_parser(PossibleValuesParser::new(pages))
            })
        })
}

/// Parses `--bind`. Like every value parser here, its error continues a sentence that
/// starts with the flag: `--bind wants ADDR:PORT ...`.
fn socket_addr(value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| format!("wants ADDR:PORT (e.g. 0.0.0.0:1313), not {value:?}"))
}

/// Parses a `--timeout` in milliseconds: 1 ..= 600000 (ten minutes).
fn millis(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(ms) if (1..=peermesh::io::control_protocol::MAX_TIMEOUT_MS).contains(&ms) => Ok(ms),
        _ => Err(format!(
            "wants milliseconds, 1 to {}, not {value:?}",
            peermesh::io::control_protocol::MAX_TIMEOUT_MS
        )),
    }
}

/// Parses `--tag KEY=VALUE` (the key non-empty; the value may be empty or hold `=`).
pub(crate) fn key_value(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((key, val)) if !key.is_empty() => Ok((key.to_owned(), val.to_owned())),
        _ => Err(format!("wants KEY=VALUE, not {value:?}")),
    }
}

/// Parses `--count`.
fn count(value: &str) -> Result<u64, String> {
    value
        .parse()
        .map_err(|_| format!("wants a number, not {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own consistency checks (names, conflicts that name real flags, ...).
    #[test]
    fn the_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn each_command_parses_to_its_own_args() {
        let parse = |args: &[&str]| {
            let matches = command().try_get_matches_from(args).expect("parses");
            <Cli as clap::FromArgMatches>::from_arg_matches(&matches)
                .expect("typed")
                .command
        };
        match parse(&["peermesh", "run", "--bind", "0.0.0.0:1400", "--name", "a"]) {
            Command::Run(run) => {
                assert_eq!(run.bind, Some("0.0.0.0:1400".parse().unwrap()));
                assert_eq!(run.node.name.as_deref(), Some("a"));
                assert_eq!(run.node.config, None, "the default is looked for later");
            }
            other => panic!("{other:?}"),
        }
        match parse(&["peermesh", "top", "--count=3", "--count", "4"]) {
            Command::Top(top) => assert_eq!(top.count, Some(4), "the last one counts"),
            other => panic!("{other:?}"),
        }
        match parse(&["peermesh", "send", "--confirm", "--timeout=900", "b", "hi"]) {
            Command::Send(send) => {
                assert!(send.confirm && !send.all);
                assert_eq!(send.timeout, Some(900));
                assert_eq!(
                    (send.peer.as_deref(), send.data.as_deref()),
                    (Some("b"), Some("hi"))
                );
            }
            other => panic!("{other:?}"),
        }
        match parse(&["peermesh", "send", "--all", "hi", "--json"]) {
            Command::Send(send) => assert!(send.all && send.json && send.peer.is_some()),
            other => panic!("{other:?}"),
        }
        match parse(&["peermesh", "tag", "set", "a=1", "b=x=y", "--name", "n"]) {
            Command::Tag(tag) => {
                assert_eq!(tag.op.as_deref(), Some("set"));
                assert_eq!(tag.items, ["a=1", "b=x=y"]);
                assert_eq!(tag.target.name.as_deref(), Some("n"));
            }
            other => panic!("{other:?}"),
        }
        match parse(&[
            "peermesh", "query", "--peer", "a", "--peer", "b", "--tag", "r=web", "q",
        ]) {
            Command::Query(query) => {
                assert_eq!(query.peers, ["a", "b"]);
                assert_eq!(query.tags, [("r".to_owned(), "web".to_owned())]);
                assert_eq!(query.data.as_deref(), Some("q"));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["peermesh", "nearest", "--tag", "role=db"]) {
            Command::Nearest(n) => assert_eq!(n.tags.len(), 1),
            other => panic!("{other:?}"),
        }
        let refused = |args: &[&str]| command().try_get_matches_from(args).is_err();
        assert!(refused(&["peermesh", "send"]), "PEER or --all");
        assert!(
            refused(&["peermesh", "send", "--timeout", "5", "b"]),
            "--confirm"
        );
        assert!(refused(&[
            "peermesh",
            "send",
            "--confirm",
            "--timeout",
            "0",
            "b"
        ]));
        assert!(refused(&["peermesh", "tag", "frob", "a"]));
        assert!(refused(&["peermesh", "nearest", "--tag", "=x"]));
        assert!(refused(&["peermesh", "watch", "extra"]));
        match parse(&["peermesh", "completions", "zsh"]) {
            Command::Completions(c) => assert_eq!(c.shell, Shell::Zsh),
            other => panic!("{other:?}"),
        }
    }
}
