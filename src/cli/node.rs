//! Which node this is: the config, and the entry of it this machine runs.

use super::args::{NodeArgs, DEFAULT_CONFIG, SYSTEM_CONFIG};
use super::Failure;
use peermesh::config::{default_hostname, Config};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The config to read: `--config` if given; else `./peers.ron`, or when nothing at all is
/// there (not even a broken link) `/etc/peermesh/peers.ron` unless that is absent too; else
/// `peers.ron`, so the error names the file that was looked for first.
pub(super) fn config_path(given: Option<&Path>) -> PathBuf {
    if let Some(path) = given {
        return path.to_owned();
    }
    let local = Path::new(DEFAULT_CONFIG);
    let system = Path::new(SYSTEM_CONFIG);
    let absent =
        |p: &Path| matches!(p.symlink_metadata(), Err(e) if e.kind() == ErrorKind::NotFound);
    if absent(local) && !absent(system) {
        system.to_owned()
    } else {
        local.to_owned()
    }
}

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

/// The config `--config` names (or the default one found), its path, and this node's
/// index in it.
pub(super) fn this_node(args: &NodeArgs) -> Result<(Config, PathBuf, usize), Failure> {
    let path = config_path(args.config.as_deref());
    let config = load_config(&path)?;
    let me = find_self(&config, args.name.as_deref())?;
    Ok((config, path, me))
}
