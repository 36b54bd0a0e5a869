//! `peermesh run`: the node itself, in the foreground.

use super::args::RunArgs;
use super::node::this_node;
use super::Failure;
use peermesh::io::control;
use peermesh::io::daemon::{self, RunOptions};
use peermesh::io::driver::StartError;

/// Runs this node until SIGINT or SIGTERM.
pub(super) fn run(args: RunArgs) -> Result<(), Failure> {
    let (config, config_path, me) = this_node(&args.node)?;
    let control_group = args
        .control_group
        .as_deref()
        .map(|group| control::group_id(group).map_err(|e| Failure::Config(e.to_string())))
        .transpose()?;
    init_logging();
    let control = args
        .control
        .unwrap_or_else(|| control::default_path(&config.nodes[me].name));
    // The flag wins over the config (the node's own `handler`, else the file's).
    let handler = args.handler.or_else(|| config.nodes[me].handler.clone());
    let http = args.http.or(config.http_listen);
    daemon::run(RunOptions {
        config,
        config_path: Some(config_path),
        me,
        bind: args.bind,
        handler,
        control,
        http,
        control_group,
        tags_file: args.tags_file,
    })
    .map_err(|e| match e {
        daemon::RunError::Start(StartError::Config(c)) => Failure::Config(c.to_string()),
        daemon::RunError::Keyring(k) => Failure::Config(k.to_string()),
        daemon::RunError::TagsFile(why) => Failure::Config(why),
        daemon::RunError::Http(e) => Failure::Config(e.to_string()),
        other => Failure::Runtime(other.to_string()),
    })
}

/// Logs to stderr; `RUST_LOG` sets the level, `info` by default.
fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .format_timestamp_millis()
        .init();
}
