//! Queries: a question to the peers a filter picks, and the answers, acknowledgements and
//! silences that come of it by a deadline.
//!
//! The asker knows every peer's name and tags, so it picks the targets itself and asks each
//! one with a confirmed message: the acknowledgement says the question arrived, the answer
//! is a message back. Bookkeeping only; the mesh sends and times.

use crate::core::peer_table::PeerId;
use crate::core::tags::{holds_all, Tags};
use crate::core::transfer::MessageId;
use std::collections::HashMap;
use std::fmt;

/// A query's handle, as [`crate::Mesh::query`] returns it and its events carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);

impl fmt::Display for QueryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "q{}", self.0)
    }
}

/// A query this node was asked, to answer with [`crate::Mesh::respond`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QueryRef {
    /// Who asked.
    pub peer: PeerId,
    /// The asker's number for it.
    pub id: u64,
}

/// Which peers a query asks: those named (all, when none is) that carry every tag listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryFilter {
    /// Peer names (case-insensitive); empty: any.
    pub names: Vec<String>,
    /// `(key, value)` pairs a peer's tags must all hold.
    pub tags: Vec<(String, String)>,
}

impl QueryFilter {
    /// Whether a peer called `name` with `tags` is picked.
    pub fn matches(&self, name: &str, tags: Option<&Tags>) -> bool {
        let named =
            self.names.is_empty() || self.names.iter().any(|n| n.eq_ignore_ascii_case(name));
        named && holds_all(tags, self.tags.iter().map(|(k, v)| (k, v)))
    }
}

/// Queries this node answers at most at once (older ones are forgotten: answering them
/// fails).
pub const MAX_ANSWERING: usize = 4096;
/// Queries this node asks at most at once.
pub const MAX_ASKING: usize = 1024;

/// One target of a query this node asked.
#[derive(Debug)]
struct Target {
    peer: PeerId,
    message: MessageId,
    answered: bool,
}

/// A query this node asked.
#[derive(Debug)]
struct Asked {
    targets: Vec<Target>,
}

/// What this node asks and is asked.
#[derive(Debug, Default)]
pub(crate) struct Queries {
    next: u64,
    asked: HashMap<u64, Asked>,
    /// Queries to answer: until when the asker waits.
    answering: HashMap<QueryRef, u64>,
    answering_order: std::collections::VecDeque<QueryRef>,
}

impl Queries {
    /// A new query's number, if fewer than [`MAX_ASKING`] are open.
    pub(crate) fn open(&mut self) -> Option<QueryId> {
        if self.asked.len() >= MAX_ASKING {
            return None;
        }
        self.next += 1;
        self.asked.insert(
            self.next,
            Asked {
                targets: Vec::new(),
            },
        );
        Some(QueryId(self.next))
    }

    /// Notes that the question went to `peer` as `message`.
    pub(crate) fn add_target(&mut self, id: QueryId, peer: PeerId, message: MessageId) {
        if let Some(q) = self.asked.get_mut(&id.0) {
            q.targets.push(Target {
                peer,
                message,
                answered: false,
            });
        }
    }

    /// The query whose question to `peer` was message `message`.
    pub(crate) fn by_message(&self, peer: PeerId, message: MessageId) -> Option<QueryId> {
        self.asked.iter().find_map(|(&id, q)| {
            q.targets
                .iter()
                .any(|t| t.peer == peer && t.message == message)
                .then_some(QueryId(id))
        })
    }

    /// An answer from `peer` to query `id`: `true` if it is the first one of a target of an
    /// open query (later ones, and strangers', are dropped).
    pub(crate) fn answered(&mut self, id: u64, peer: PeerId) -> bool {
        let Some(q) = self.asked.get_mut(&id) else {
            return false;
        };
        match q.targets.iter_mut().find(|t| t.peer == peer && !t.answered) {
            Some(t) => {
                t.answered = true;
                true
            }
            None => false,
        }
    }

    /// Whether every target of open query `id` has answered.
    pub(crate) fn all_answered(&self, id: u64) -> bool {
        self.asked
            .get(&id)
            .is_some_and(|q| q.targets.iter().all(|t| t.answered))
    }

    /// Closes query `id` (at its deadline, or once all answered): who did not answer.
    pub(crate) fn close(&mut self, id: QueryId) -> Option<Vec<PeerId>> {
        let q = self.asked.remove(&id.0)?;
        Some(
            q.targets
                .into_iter()
                .filter(|t| !t.answered)
                .map(|t| t.peer)
                .collect(),
        )
    }

    /// Remembers a query this node was asked, answerable until `until_ns`.
    pub(crate) fn asked_by(&mut self, query: QueryRef, until_ns: u64) {
        if self.answering.insert(query, until_ns).is_none() {
            self.answering_order.push_back(query);
        }
        while self.answering.len() > MAX_ANSWERING {
            match self.answering_order.pop_front() {
                Some(old) => {
                    self.answering.remove(&old);
                }
                None => break,
            }
        }
    }

    /// Takes a query to answer: until when its asker waits, if it is still open.
    pub(crate) fn take_answer(&mut self, query: QueryRef, now_ns: u64) -> Option<u64> {
        let until = self.answering.remove(&query)?;
        self.answering_order.retain(|q| *q != query);
        (until > now_ns).then_some(until)
    }

    /// Forgets the queries to answer whose askers stopped waiting.
    pub(crate) fn expire(&mut self, now_ns: u64) {
        self.answering.retain(|_, until| *until > now_ns);
        let answering = &self.answering;
        self.answering_order.retain(|q| answering.contains_key(q));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_picks_by_name_and_by_every_tag() {
        let mut tags = Tags::new();
        tags.insert("role".into(), "web".into());
        tags.insert("zone".into(), "eu".into());
        let any = QueryFilter::default();
        assert!(any.matches("a", None));
        let web = QueryFilter {
            names: vec![],
            tags: vec![("role".into(), "web".into())],
        };
        assert!(web.matches("a", Some(&tags)) && !web.matches("a", None));
        let named = QueryFilter {
            names: vec!["B".into()],
            tags: vec![("role".into(), "web".into()), ("zone".into(), "us".into())],
        };
        assert!(!named.matches("b", Some(&tags)));
        tags.insert("zone".into(), "us".into());
        assert!(named.matches("b", Some(&tags)) && !named.matches("a", Some(&tags)));
    }
}
