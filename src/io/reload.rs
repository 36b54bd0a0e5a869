//! `peermesh reload` and SIGHUP: the config file and the key file read again, and what
//! changed applied to the running node, which keeps every statistic of the peers that stay.
//!
//! A file that does not load (syntax, rules, key file) is refused as a whole: the node runs
//! on with the old config and the error names `file:line:col`. So is a file that would
//! change this node's own name, host or port ([`ReloadRefused`]): that needs a restart.

use crate::config::diff::{ConfigDiff, ReloadRefused};
use crate::config::{Config, ConfigError, KeyFileError, NodeEntry};
use crate::io::driver::Node;
use crate::report::reload_report::ReloadReport;
use log::{info, warn};
use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

/// Why a reload was refused; the node runs on as it was.
#[derive(Debug)]
pub enum ReloadError {
    /// The config file does not load.
    Config(ConfigError),
    /// The key file it names does not load.
    Keyring(KeyFileError),
    /// The new file would change this node's identity or address.
    Refused(ReloadRefused),
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::Config(e) => write!(f, "{e}"),
            ReloadError::Keyring(e) => write!(f, "{e}"),
            ReloadError::Refused(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReloadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReloadError::Config(e) => Some(e),
            ReloadError::Keyring(e) => Some(e),
            ReloadError::Refused(e) => Some(e),
        }
    }
}

/// The config a running node was started with, and where to read it again.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    config: Config,
    me: String,
    tags_file: Option<PathBuf>,
}

impl Reloader {
    /// For node `me` (its name) of `config`, loaded from `path`.
    pub fn new(path: PathBuf, config: Config, me: &str) -> Reloader {
        Reloader {
            path,
            config,
            me: me.to_owned(),
            tags_file: None,
        }
    }

    /// Rewrites `path` (`run --tags-file`) when a reload changes this node's tags, so a
    /// restart finds them as the reload left them.
    pub fn keeping_tags_in(mut self, path: Option<PathBuf>) -> Reloader {
        self.tags_file = path;
        self
    }

    /// The config the node runs on now.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Reads the file and the key file again and applies the difference to `node`:
    /// removed peers go (an `Event::Removed` each), new ones are added (by address at once,
    /// by host name once it resolves), moved ones are pointed at their new address, new
    /// timings and resolve interval take effect, and this node's tags of the file follow
    /// the file while its run-time tags stay.
    pub fn reload(&mut self, node: &mut Node, now: Instant) -> Result<ReloadReport, ReloadError> {
        let new = Config::load(&self.path).map_err(ReloadError::Config)?;
        let keyring = new.load_keyring().map_err(ReloadError::Keyring)?;
        let diff =
            ConfigDiff::between(&self.config, &new, &self.me).map_err(ReloadError::Refused)?;
        let mut report = ReloadReport {
            keyring: new.keyring.is_some(),
            need_restart: diff.need_restart.iter().map(|s| (*s).to_owned()).collect(),
            ..ReloadReport::default()
        };
        if keyring.is_some() || self.config.keyring.is_some() {
            if keyring.is_none() {
                warn!(
                    "reload: the config names no key file any more: the mesh is NOT authenticated"
                );
            }
            node.mesh_mut().set_keyring(keyring);
        }
        if let Some((interval, suspect, dead)) = diff.timing {
            node.mesh_mut().set_timing(interval, suspect, dead);
            report.timing = true;
        }
        if let Some(interval) = diff.resolve_interval {
            node.host_names_mut().set_interval(interval, now);
        }
        for name in &diff.removed {
            node.host_names_mut().forget(name);
            if let Some(id) = node.mesh().peer_by_name(name) {
                node.mesh_mut().remove_peer(id);
            }
            report.removed.push(name.clone());
        }
        for entry in &diff.added {
            place(node, entry, now);
            report.added.push(entry.name.clone());
        }
        for entry in &diff.moved {
            place(node, entry, now);
            report.moved.push(entry.name.clone());
        }
        if !diff.own_tags.is_empty() {
            match node.mesh_mut().set_tags(&diff.own_tags) {
                Ok(_) => report.tags = true,
                Err(e) => warn!("reload: this node's tags of the file are refused: {e}"),
            }
            if let (true, Some(path)) = (report.tags, &self.tags_file) {
                if let Err(e) = crate::io::tags_file::save(path, node.mesh().tags()) {
                    warn!("{e}; the reload's tags hold until the node restarts");
                }
            }
        }
        for field in &report.need_restart {
            warn!("reload: {field} changed; it takes effect when the node restarts");
        }
        info!("{}", report.to_text().replace('\n', "; "));
        self.config = new;
        Ok(report)
    }
}

/// Puts a new or moved peer where the file says: at its address now when the host is an
/// IP literal; by host name, at its current address (if any) until the name resolves,
/// which is asked at once.
fn place(node: &mut Node, entry: &NodeEntry, now: Instant) {
    let current = node.mesh().peer_by_name(&entry.name);
    match entry.literal_addr() {
        Some(addr) => {
            node.host_names_mut().forget(&entry.name);
            match current {
                Some(id) => {
                    node.mesh_mut().set_peer_addr(id, addr);
                }
                None => {
                    node.mesh_mut().add_peer(&entry.name, addr);
                }
            }
        }
        None => {
            let addr = current
                .and_then(|id| node.mesh().peer(id))
                .map(|p| p.addr());
            let names = node.host_names_mut();
            names.track(&entry.name, &entry.host, entry.port, addr, None, now);
            names.resolve_soon(&entry.name, now);
        }
    }
}
