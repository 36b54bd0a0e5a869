//! What a reload changed, as `peermesh reload` prints it and the control protocol carries
//! it (`{"v":1,"ok":true,"reload":{…}}`).

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// The outcome of a reload that was taken.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Peers added, by name (those listed by host name join once it resolves).
    pub added: Vec<String>,
    /// Peers removed, by name.
    pub removed: Vec<String>,
    /// Peers given another host or port, by name.
    pub moved: Vec<String>,
    /// Whether the heartbeat interval, suspect or dead time changed.
    pub timing: bool,
    /// Whether this node's tags of the file changed (keys set at run time stay).
    pub tags: bool,
    /// Whether the key file was read again.
    pub keyring: bool,
    /// Fields that changed but take effect only when the node restarts.
    pub need_restart: Vec<String>,
}

impl ReloadReport {
    /// Whether nothing changed.
    pub fn is_unchanged(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.moved.is_empty()
            && !self.timing
            && !self.tags
            && self.need_restart.is_empty()
    }

    /// One line for a person: `reloaded: added d; removed b; moved c; new timings`.
    pub fn to_text(&self) -> String {
        let mut out = String::from("reloaded");
        if self.is_unchanged() {
            out.push_str(": no change");
        }
        let mut parts: Vec<String> = Vec::new();
        for (what, names) in [
            ("added", &self.added),
            ("removed", &self.removed),
            ("moved", &self.moved),
        ] {
            if !names.is_empty() {
                parts.push(format!("{what} {}", names.join(", ")));
            }
        }
        if self.timing {
            parts.push("new timings".into());
        }
        if self.tags {
            parts.push("tags of the file changed".into());
        }
        if !parts.is_empty() {
            let _ = write!(out, ": {}", parts.join("; "));
        }
        if self.keyring {
            out.push_str(" (key file read again)");
        }
        if !self.need_restart.is_empty() {
            let _ = write!(
                out,
                "\nnot applied until the node restarts: {}",
                self.need_restart.join(", ")
            );
        }
        out
    }
}
