//! peermesh: a peer-mesh library and daemon (crate docs are written with the core).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod config;
pub mod identity;
pub mod wheel;
