//! Which node this is: the config, and the entry of it this machine runs.

use super::args::NodeArgs;
use super::Failure;
use peermesh::config::{default_hostname, Config};
use std::path::Path;

/// Reads and checks the config at `path`; any fault is a config failure (exit 2).
pub(super) fn load_config(path: &Path) -> Result<Config, Failure> {
    Config::load(path).map_err(|e| Failure::Config(e.to_string()))
}

/// The index of this node in `config`: the one `name` names, else the one the hostname picks.
pub(super) fn find_self(config: &Config, name: Option<&str>) -> Result<usize, Failure> {
    config
        .find_self(name, &default_hostname())
        .map_err(|e| Failure::Config(e.to_string()))
}

/// The config `--config` names and this node's index in it.
pub(super) fn this_node(args: &NodeArgs) -> Result<(Config, usize), Failure> {
    let config = load_config(&args.config)?;
    let me = find_self(&config, args.name.as_deref())?;
    Ok((config, me))
}
