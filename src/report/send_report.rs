//! The outcome of `peermesh send`: which targets have the message, which do not.

use serde::{Deserialize, Serialize};

/// What became of one `send` request (the `sent` object of the control protocol, and what
/// `peermesh send --json` prints without `confirmed`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReport {
    /// Whether delivery was confirmed: `true` for `send --confirm`, where `delivered`
    /// lists the peers that acknowledged the message; `false` for best effort, where it
    /// lists the peers the message was handed to the network for.
    #[serde(default)]
    pub confirmed: bool,
    /// Peers that have the message (confirmed), or that it was sent to (best effort).
    pub delivered: Vec<String>,
    /// Peers it did not reach: not acknowledged by the timeout, or the peer left or is
    /// dead.
    pub failed: Vec<String>,
}

impl SendReport {
    /// Whether every target has it (exit 0 of `peermesh send`).
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }

    /// The JSON `peermesh send --json` prints: `{"delivered":[..],"failed":[..]}`.
    pub fn to_cli_json(&self) -> String {
        serde_json::json!({ "delivered": self.delivered, "failed": self.failed }).to_string()
    }
}
