//! What a reload changes: the difference between the config a node runs on and a new one,
//! seen from that node, or why the new one cannot be taken without a restart.

use crate::config::{Config, NodeEntry};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The changes a new config makes for node `me` (by name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// Nodes the new file lists and the old did not, in file order.
    pub added: Vec<NodeEntry>,
    /// Nodes the old file listed and the new does not, by name.
    pub removed: Vec<String>,
    /// Nodes listed in both with another host or port, as the new file gives them.
    pub moved: Vec<NodeEntry>,
    /// The new heartbeat interval, suspect time and dead time, if any of them changed.
    pub timing: Option<(Duration, Duration, Duration)>,
    /// The new resolve interval, if it changed.
    pub resolve_interval: Option<Duration>,
    /// This node's own tags as the files give them: the keys the new file sets (or sets to
    /// another value), and `None` for the keys it no longer gives. Keys set at run time and
    /// in neither file are not touched.
    pub own_tags: Vec<(String, Option<String>)>,
    /// Fields that changed but take effect only at a restart (`max_datagram_bytes`,
    /// `http_listen`, the handler).
    pub need_restart: Vec<&'static str>,
}

impl ConfigDiff {
    /// The changes from `old` to `new` for the node called `me`. Refused when `me` is not
    /// in the new file, or its own host or port changed (its socket would have to be bound
    /// again: restart it).
    pub fn between(old: &Config, new: &Config, me: &str) -> Result<ConfigDiff, ReloadRefused> {
        let find = |config: &Config| {
            config
                .nodes
                .iter()
                .find(|n| n.name.eq_ignore_ascii_case(me))
                .cloned()
        };
        let (Some(was), Some(is)) = (find(old), find(new)) else {
            return Err(ReloadRefused::SelfMissing {
                name: me.to_owned(),
            });
        };
        if was.name != is.name {
            return Err(ReloadRefused::SelfRenamed {
                was: was.name,
                is: is.name,
            });
        }
        if (was.host.as_str(), was.port) != (is.host.as_str(), is.port) {
            return Err(ReloadRefused::SelfMoved {
                name: was.name,
                was: format!("{}:{}", was.host, was.port),
                is: format!("{}:{}", is.host, is.port),
            });
        }
        let key = |n: &NodeEntry| n.id();
        let old_nodes: BTreeMap<_, &NodeEntry> = old.nodes.iter().map(|n| (key(n), n)).collect();
        let new_nodes: BTreeMap<_, &NodeEntry> = new.nodes.iter().map(|n| (key(n), n)).collect();
        let mut diff = ConfigDiff::default();
        for node in new.nodes.iter().filter(|n| n.id() != is.id()) {
            match old_nodes.get(&key(node)) {
                None => diff.added.push(node.clone()),
                Some(before)
                    if (before.host.as_str(), before.port) != (node.host.as_str(), node.port) =>
                {
                    diff.moved.push(node.clone())
                }
                Some(_) => {}
            }
        }
        diff.removed = old
            .nodes
            .iter()
            .filter(|n| n.id() != is.id() && !new_nodes.contains_key(&key(n)))
            .map(|n| n.name.clone())
            .collect();
        let timing = |c: &Config| (c.heartbeat_interval, c.suspect_after, c.dead_after);
        if timing(old) != timing(new) {
            diff.timing = Some(timing(new));
        }
        if old.resolve_interval != new.resolve_interval {
            diff.resolve_interval = Some(new.resolve_interval);
        }
        for (k, v) in &is.tags {
            if was.tags.get(k) != Some(v) {
                diff.own_tags.push((k.clone(), Some(v.clone())));
            }
        }
        for k in was.tags.keys().filter(|k| !is.tags.contains_key(*k)) {
            diff.own_tags.push((k.clone(), None));
        }
        if old.max_datagram != new.max_datagram {
            diff.need_restart.push("max_datagram_bytes");
        }
        if old.http_listen != new.http_listen {
            diff.need_restart.push("http_listen");
        }
        // The probing mode decides which liveness path runs; switching it under a running
        // node would judge peers by two rules at once.
        if old.probe_mode != new.probe_mode {
            diff.need_restart.push("probe_mode");
        }
        if old.probe_fanout != new.probe_fanout {
            diff.need_restart.push("probe_fanout");
        }
        if was.handler != is.handler {
            diff.need_restart.push("handler");
        }
        Ok(diff)
    }

    /// Whether the new file changes nothing this node acts on.
    pub fn is_empty(&self) -> bool {
        *self == ConfigDiff::default()
    }
}

/// Why a new config is refused on reload: the node keeps running on the old one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadRefused {
    /// The new file does not list this node.
    SelfMissing {
        /// This node's name.
        name: String,
    },
    /// The new file spells this node's name in another case (the same identity, but every
    /// report would change): restart it.
    SelfRenamed {
        /// The name it runs with.
        was: String,
        /// The name the file gives.
        is: String,
    },
    /// The new file gives this node another host or port: its socket would have to be
    /// bound again.
    SelfMoved {
        /// This node's name.
        name: String,
        /// Its `host:port` now.
        was: String,
        /// Its `host:port` in the new file.
        is: String,
    },
}

impl fmt::Display for ReloadRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadRefused::SelfMissing { name } => write!(
                f,
                "the new config does not list this node ({name}): a reload cannot change a \
                 node's identity; stop this node, or put it back in the file"
            ),
            ReloadRefused::SelfRenamed { was, is } => write!(
                f,
                "the new config names this node {is:?}, it runs as {was:?}: restart it to take \
                 the new name"
            ),
            ReloadRefused::SelfMoved { name, was, is } => write!(
                f,
                "the new config moves this node ({name}) from {was} to {is}: a reload cannot \
                 bind another address or port; restart the node to take it"
            ),
        }
    }
}

impl std::error::Error for ReloadRefused {}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, "peers.ron").expect("valid")
    }

    #[test]
    fn added_removed_moved_and_timing_are_told_apart() {
        let old = config(
            r#"(nodes: [(name: "a", host: "127.0.0.1"), (name: "b", host: "127.0.0.1", port: 2),
                         (name: "c", host: "127.0.0.1", port: 3)])"#,
        );
        let new = config(
            r#"(heartbeat_interval_ms: 500, nodes: [(name: "a", host: "127.0.0.1"),
                 (name: "c", host: "127.0.0.2", port: 3), (name: "d", host: "vm-d", port: 4)])"#,
        );
        let diff = ConfigDiff::between(&old, &new, "a").expect("allowed");
        assert_eq!(
            diff.added
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>(),
            ["d"]
        );
        assert_eq!(diff.removed, ["b"]);
        assert_eq!(diff.moved.len(), 1);
        assert_eq!(diff.moved[0].host, "127.0.0.2");
        assert_eq!(
            diff.timing,
            Some((
                Duration::from_millis(500),
                Duration::from_millis(1500),
                Duration::from_millis(2500)
            ))
        );
        assert!(ConfigDiff::between(&old, &old, "a")
            .expect("same")
            .is_empty());
    }

    #[test]
    fn this_nodes_identity_and_address_cannot_change_by_reload() {
        let old = config(
            r#"(nodes: [(name: "a", host: "127.0.0.1"), (name: "b", host: "127.0.0.1", port: 2)])"#,
        );
        let gone = config(r#"(nodes: [(name: "b", host: "127.0.0.1", port: 2)])"#);
        let moved = config(
            r#"(nodes: [(name: "a", host: "127.0.0.1", port: 9), (name: "b", host: "127.0.0.1", port: 2)])"#,
        );
        assert!(matches!(
            ConfigDiff::between(&old, &gone, "a"),
            Err(ReloadRefused::SelfMissing { .. })
        ));
        let refused = ConfigDiff::between(&old, &moved, "a").unwrap_err();
        assert_eq!(
            refused.to_string(),
            "the new config moves this node (a) from 127.0.0.1:1313 to 127.0.0.1:9: a reload \
             cannot bind another address or port; restart the node to take it"
        );
    }

    #[test]
    fn only_the_tags_the_files_change_are_changed() {
        let old = config(
            r#"(nodes: [(name: "a", host: "127.0.0.1", tags: {"role": "db", "zone": "x"})])"#,
        );
        let new = config(
            r#"(nodes: [(name: "a", host: "127.0.0.1", tags: {"role": "web", "rack": "3"})])"#,
        );
        let mut tags = ConfigDiff::between(&old, &new, "a")
            .expect("allowed")
            .own_tags;
        tags.sort();
        assert_eq!(
            tags,
            [
                ("rack".to_string(), Some("3".to_string())),
                ("role".to_string(), Some("web".to_string())),
                ("zone".to_string(), None),
            ]
        );
    }
}
