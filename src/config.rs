//! TEMPORARY stand-in with the agreed API; replaced by the real config module.
#![allow(missing_docs)]
use std::path::PathBuf;
use std::time::Duration;
pub const DEFAULT_PORT: u16 = 1313;
pub const DEFAULT_MAX_DATAGRAM: usize = 1232;
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub port: u16,
    pub heartbeat_interval: Duration,
    pub suspect_after: Duration,
    pub dead_after: Duration,
    pub max_datagram: usize,
    pub keyring: Option<PathBuf>,
    pub nodes: Vec<NodeEntry>,
}
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    pub name: String,
    pub host: String,
    pub port: u16,
}
