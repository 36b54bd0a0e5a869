//! Tags: each node's key → value map, versioned, and what this node knows of its peers'.
//!
//! This node's own map counts a version per change and remembers, per key, the version
//! that last changed it (removed keys as tombstones, a bounded number of them), so the
//! change from any version a peer acknowledged is a delta of the keys changed since. A
//! peer's map is replaced or patched only by a change that starts at the version it holds.

use crate::wire::app::{TagChange, TagDelta};
use std::collections::BTreeMap;
use std::fmt;

/// A node's tags.
pub type Tags = BTreeMap<String, String>;

/// Whether `held` (a peer's tags, `None` before any came) has every `(key, value)` of
/// `wanted`: the one rule a query's target filter and `nearest` pick peers by.
pub fn holds_all<'a>(
    held: Option<&Tags>,
    mut wanted: impl Iterator<Item = (&'a String, &'a String)>,
) -> bool {
    wanted.all(|(k, v)| held.and_then(|t| t.get(k)) == Some(v))
}

/// The most bytes of keys and values one node's tags may hold (32 times Serf's 512).
pub const MAX_TAG_BYTES: usize = 16_384;
/// The longest key, in bytes.
pub const MAX_TAG_KEY: usize = 128;
/// The longest value, in bytes.
pub const MAX_TAG_VALUE: usize = 4096;
/// Removed keys remembered for deltas; past it the oldest are forgotten and a peer that
/// is further behind gets the whole map.
const MAX_TOMBSTONES: usize = 1024;

/// Why a change of tags was refused. The tags are unchanged when it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagError {
    /// A key that is empty, longer than [`MAX_TAG_KEY`] bytes, or holds a character other
    /// than ASCII letters, digits and `_ . - : /`.
    BadKey(String),
    /// A value longer than [`MAX_TAG_VALUE`] bytes.
    ValueTooLong {
        /// The key.
        key: String,
        /// The value's length.
        len: usize,
    },
    /// The tags would hold more than [`MAX_TAG_BYTES`] bytes of keys and values.
    TooLarge {
        /// Bytes they would hold.
        bytes: usize,
    },
}

impl fmt::Display for TagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagError::BadKey(key) => write!(
                f,
                "bad tag key {key:?}: 1 to {MAX_TAG_KEY} bytes of ASCII letters, digits and _ . - : /"
            ),
            TagError::ValueTooLong { key, len } => write!(
                f,
                "value of tag {key:?} is {len} bytes; at most {MAX_TAG_VALUE}"
            ),
            TagError::TooLarge { bytes } => write!(
                f,
                "tags would be {bytes} bytes of keys and values; at most {MAX_TAG_BYTES}"
            ),
        }
    }
}

impl std::error::Error for TagError {}

/// Whether `key` may name a tag.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_TAG_KEY
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-:/".contains(&b))
}

/// Checks one change against the per-key rules.
pub fn check_change(key: &str, value: Option<&str>) -> Result<(), TagError> {
    if !valid_key(key) {
        return Err(TagError::BadKey(key.to_owned()));
    }
    match value {
        Some(v) if v.len() > MAX_TAG_VALUE => Err(TagError::ValueTooLong {
            key: key.to_owned(),
            len: v.len(),
        }),
        _ => Ok(()),
    }
}

fn size(tags: &Tags) -> usize {
    tags.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// This node's own tags with the versions a delta is cut from.
#[derive(Debug, Default)]
pub(crate) struct OwnTags {
    live: Tags,
    /// Per key, the version that last set or removed it; `false`: removed.
    changed: BTreeMap<String, (u64, bool)>,
    version: u64,
    /// A delta from a version below this would miss forgotten removals: send it all.
    floor: u64,
}

impl OwnTags {
    pub(crate) fn tags(&self) -> &Tags {
        &self.live
    }

    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// Applies every change or none; `Ok(true)` when something changed.
    pub(crate) fn apply(&mut self, changes: &[(String, Option<String>)]) -> Result<bool, TagError> {
        let mut next = self.live.clone();
        for (key, value) in changes {
            check_change(key, value.as_deref())?;
            match value {
                Some(v) => next.insert(key.clone(), v.clone()),
                None => next.remove(key),
            };
        }
        let bytes = size(&next);
        if bytes > MAX_TAG_BYTES {
            return Err(TagError::TooLarge { bytes });
        }
        if next == self.live {
            return Ok(false);
        }
        self.version += 1;
        let version = self.version;
        for (key, _) in changes {
            if self.live.get(key) != next.get(key) {
                self.changed
                    .insert(key.clone(), (version, next.contains_key(key)));
            }
        }
        self.live = next;
        let tombstones = self.changed.values().filter(|(_, set)| !set).count();
        if tombstones > MAX_TOMBSTONES {
            let mut removed: Vec<(u64, String)> = self
                .changed
                .iter()
                .filter(|(_, (_, set))| !set)
                .map(|(k, (v, _))| (*v, k.clone()))
                .collect();
            removed.sort_unstable();
            for (v, key) in removed.into_iter().take(tombstones - MAX_TOMBSTONES) {
                self.changed.remove(&key);
                self.floor = self.floor.max(v + 1);
            }
        }
        Ok(true)
    }

    /// The change from `base` (what a peer holds) to now, encoded as a tags message.
    pub(crate) fn delta_from(&self, base: u64) -> Vec<u8> {
        let full = base == 0 || base < self.floor || base > self.version;
        let changes = if full {
            self.live
                .iter()
                .map(|(k, v)| TagChange {
                    key: k,
                    value: Some(v),
                })
                .collect()
        } else {
            self.changed
                .iter()
                .filter(|(_, (v, _))| *v > base)
                .map(|(k, (_, set))| TagChange {
                    key: k,
                    value: if *set {
                        self.live.get(k).map(String::as_str)
                    } else {
                        None
                    },
                })
                .collect()
        };
        let mut out = Vec::new();
        TagDelta {
            base: if full { 0 } else { base },
            version: self.version,
            full,
            changes,
        }
        .emit(&mut out);
        out
    }
}

/// A peer's tags as this node last heard them.
#[derive(Debug, Default)]
pub(crate) struct PeerTags {
    incarnation: u64,
    version: u64,
    tags: Tags,
}

impl PeerTags {
    pub(crate) fn tags(&self) -> &Tags {
        &self.tags
    }

    /// Applies a change from the peer's process `incarnation`; `true` when the tags
    /// changed. A change that does not start at the version held is ignored (the sender
    /// sends again from what this node acknowledged), and so is one that breaks the tag
    /// rules or would take the peer's tags past [`MAX_TAG_BYTES`].
    pub(crate) fn apply(&mut self, incarnation: u64, delta: &TagDelta<'_>) -> bool {
        if incarnation != self.incarnation {
            // A new process of the peer starts from nothing and sends all it has.
            self.incarnation = incarnation;
            self.version = 0;
            if !delta.full && delta.base != 0 {
                let changed = !self.tags.is_empty();
                self.tags.clear();
                return changed;
            }
        }
        if delta.version <= self.version {
            return false;
        }
        if !delta.full && delta.base > self.version {
            return false;
        }
        let mut next = if delta.full {
            Tags::new()
        } else {
            self.tags.clone()
        };
        for change in &delta.changes {
            if check_change(change.key, change.value).is_err() {
                return false; // not what a node of this version sends: dropped whole
            }
            match change.value {
                Some(v) => next.insert(change.key.to_owned(), v.to_owned()),
                None => next.remove(change.key),
            };
        }
        if size(&next) > MAX_TAG_BYTES {
            // Held to the sender's own limit, so a peer cannot grow this map without bound.
            return false;
        }
        self.version = delta.version;
        let changed = next != self.tags;
        self.tags = next;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(k: &str, v: &str) -> (String, Option<String>) {
        (k.to_owned(), Some(v.to_owned()))
    }

    fn rm(k: &str) -> (String, Option<String>) {
        (k.to_owned(), None)
    }

    #[test]
    fn a_peer_follows_through_deltas_and_full_maps() {
        let mut own = OwnTags::default();
        let mut peer = PeerTags::default();
        own.apply(&[set("role", "db"), set("zone", "eu-1")])
            .unwrap();
        let first = own.delta_from(0);
        assert!(peer.apply(7, &TagDelta::parse(&first).unwrap()));
        assert_eq!(peer.tags(), own.tags());
        own.apply(&[rm("zone"), set("rack", "r9")]).unwrap();
        let delta = own.delta_from(1);
        let parsed = TagDelta::parse(&delta).unwrap();
        assert!(!parsed.full && parsed.changes.len() == 2, "{parsed:?}");
        assert!(peer.apply(7, &parsed));
        assert_eq!(peer.tags(), own.tags());
        // The same delta again changes nothing; one from a version not held is ignored.
        assert!(!peer.apply(7, &parsed));
        own.apply(&[set("role", "web")]).unwrap();
        own.apply(&[set("role", "cache")]).unwrap();
        let gap = own.delta_from(3);
        assert!(!peer.apply(7, &TagDelta::parse(&gap).unwrap()));
        assert_eq!(peer.tags().get("role").map(String::as_str), Some("db"));
    }

    #[test]
    fn changes_are_checked_all_or_nothing() {
        let mut own = OwnTags::default();
        let bad = own.apply(&[set("ok", "1"), set("bad key", "2")]);
        assert_eq!(bad, Err(TagError::BadKey("bad key".into())));
        assert!(own.tags().is_empty() && own.version() == 0);
        let big = "x".repeat(MAX_TAG_VALUE);
        let many: Vec<_> = (0..5).map(|i| set(&format!("k{i}"), &big)).collect();
        assert!(matches!(own.apply(&many), Err(TagError::TooLarge { .. })));
        assert!(own.tags().is_empty());
        assert_eq!(own.apply(&[rm("absent")]), Ok(false));
    }

    #[test]
    fn a_peer_cannot_grow_its_tags_here_past_the_limit() {
        let mut peer = PeerTags::default();
        let value = "v".repeat(MAX_TAG_VALUE);
        for version in 1..=10u64 {
            let key = format!("k{version}");
            let delta = TagDelta {
                base: version - 1,
                version,
                full: false,
                changes: vec![TagChange {
                    key: &key,
                    value: Some(&value),
                }],
            };
            peer.apply(1, &delta);
        }
        assert!(size(peer.tags()) <= MAX_TAG_BYTES);
        assert_eq!(peer.tags().len(), 3);
        let bad = TagDelta {
            base: 3,
            version: 4,
            full: false,
            changes: vec![TagChange {
                key: "has space",
                value: Some("x"),
            }],
        };
        assert!(!peer.apply(1, &bad));
    }

    #[test]
    fn a_new_incarnation_starts_from_nothing() {
        let mut own = OwnTags::default();
        let mut peer = PeerTags::default();
        own.apply(&[set("a", "1")]).unwrap();
        peer.apply(1, &TagDelta::parse(&own.delta_from(0)).unwrap());
        let mut restarted = OwnTags::default();
        restarted.apply(&[set("b", "2")]).unwrap();
        assert!(peer.apply(2, &TagDelta::parse(&restarted.delta_from(0)).unwrap()));
        assert_eq!(peer.tags(), restarted.tags());
    }
}
