//! Control requests answered later: a confirmed `send` waits until every message is
//! reported delivered or failed, a `query` until it is done, a `nearest` in sampled mode
//! until the candidates it probed have answered. The connection stays open
//! meanwhile; the node's loop feeds each core event to the waiting requests
//! ([`crate::io::control::ControlServer::on_event`]), and a request past its deadline (the
//! core's report overdue) is answered with what it has.

use crate::core::PeerId;
use crate::io::control_protocol::{ok_line, TagMap};
use crate::report::nearest::NearestReport;
use crate::report::query_report::{QueryReport, QueryResponse};
use crate::report::send_report::SendReport;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long past its own timeout a waiting request waits for the core's last report
/// before it answers without it.
pub const GRACE: Duration = Duration::from_secs(2);

/// A confirmed `send` waiting for its reports.
#[derive(Debug)]
pub struct PendingSend {
    /// Message id → target name, for the messages not reported yet.
    outstanding: BTreeMap<u64, String>,
    report: SendReport,
    deadline: Instant,
}

impl PendingSend {
    /// Waits for `targets` (message id, peer name); `failed` are targets that failed at
    /// once; answered by `deadline` at the latest.
    pub fn new(targets: Vec<(u64, String)>, failed: Vec<String>, deadline: Instant) -> Self {
        PendingSend {
            outstanding: targets.into_iter().collect(),
            report: SendReport {
                confirmed: true,
                delivered: Vec::new(),
                failed,
            },
            deadline,
        }
    }

    /// The core reported message `id` delivered (or not); whether it was one of these.
    pub fn settle(&mut self, id: u64, delivered: bool) -> bool {
        let Some(name) = self.outstanding.remove(&id) else {
            return false;
        };
        if delivered {
            self.report.delivered.push(name);
        } else {
            self.report.failed.push(name);
        }
        true
    }

    /// Whether every message has its report.
    pub fn is_done(&self) -> bool {
        self.outstanding.is_empty()
    }

    /// What it has so far.
    pub fn report(&self) -> &SendReport {
        &self.report
    }
}

/// A `query` gathering responses.
#[derive(Debug)]
pub struct PendingQuery {
    id: u64,
    report: QueryReport,
    done: bool,
    deadline: Instant,
}

impl PendingQuery {
    /// Gathers for query `id`; answered by `deadline` at the latest.
    pub fn new(id: u64, deadline: Instant) -> Self {
        PendingQuery {
            id,
            report: QueryReport::default(),
            done: false,
            deadline,
        }
    }

    /// The query's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// `node` acknowledged the query.
    pub fn ack(&mut self, node: String) {
        if !self.report.acks.contains(&node) {
            self.report.acks.push(node);
        }
    }

    /// A response came.
    pub fn respond(&mut self, response: QueryResponse) {
        self.report.responses.push(response);
    }

    /// The query is over; `missing` gave no response.
    pub fn finish(&mut self, missing: Vec<String>) {
        self.report.missing = missing;
        self.done = true;
    }

    /// What it has so far.
    pub fn report(&self) -> &QueryReport {
        &self.report
    }
}

/// A `nearest` waiting for the probes of its candidates.
#[derive(Debug)]
pub struct PendingNearest {
    tags: TagMap,
    /// The candidates probed whose Pong has not come yet.
    waiting: Vec<PeerId>,
    report: NearestReport,
    deadline: Instant,
}

impl PendingNearest {
    /// Waits for the probes of `waiting` (peers carrying `tags`), answering `report`
    /// (what was measured before) unless they improve on it; by `deadline` at the latest.
    pub fn new(
        tags: TagMap,
        waiting: Vec<PeerId>,
        report: NearestReport,
        deadline: Instant,
    ) -> Self {
        PendingNearest {
            tags,
            waiting,
            report,
            deadline,
        }
    }

    /// `peer` answered its probe: when it was waited for, the answer becomes
    /// `report(tags)` (the pick among the peers carrying the request's tags). Whether it
    /// was.
    pub fn measured(
        &mut self,
        peer: PeerId,
        report: impl FnOnce(&TagMap) -> NearestReport,
    ) -> bool {
        let Some(at) = self.waiting.iter().position(|&p| p == peer) else {
            return false;
        };
        self.waiting.swap_remove(at);
        self.report = report(&self.tags);
        true
    }

    /// The answer so far.
    pub fn report(&self) -> &NearestReport {
        &self.report
    }
}

/// A request answered later.
#[derive(Debug)]
pub enum Pending {
    /// A confirmed send.
    Send(PendingSend),
    /// A query.
    Query(PendingQuery),
    /// A `nearest` measuring its candidates.
    Nearest(PendingNearest),
}

impl Pending {
    /// When it is answered whatever came.
    pub fn deadline(&self) -> Instant {
        match self {
            Pending::Send(s) => s.deadline,
            Pending::Query(q) => q.deadline,
            Pending::Nearest(n) => n.deadline,
        }
    }

    /// Whether it can be answered now.
    pub fn is_done(&self) -> bool {
        match self {
            Pending::Send(s) => s.is_done(),
            Pending::Query(q) => q.done,
            Pending::Nearest(n) => n.waiting.is_empty(),
        }
    }

    /// Gives up waiting: a send's unreported messages count as failed (the core's report
    /// is overdue), a query answers with what it has, a `nearest` with what was measured
    /// (a candidate that did not answer in time is not the nearest alive one).
    pub fn expire(&mut self) {
        match self {
            Pending::Send(s) => {
                let rest = std::mem::take(&mut s.outstanding);
                s.report.failed.extend(rest.into_values());
            }
            Pending::Query(q) => q.done = true,
            Pending::Nearest(n) => n.waiting.clear(),
        }
    }

    /// The answer line.
    pub fn answer_line(&self) -> String {
        match self {
            Pending::Send(s) => ok_line("sent", &s.report),
            Pending::Query(q) => ok_line("query", &q.report),
            Pending::Nearest(n) => ok_line("nearest", &n.report),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_is_answered_once_every_message_has_its_report() {
        let now = Instant::now();
        let mut send = PendingSend::new(
            vec![(1, "a".into()), (2, "b".into())],
            vec!["gone".into()],
            now,
        );
        assert!(!send.settle(9, true), "not ours");
        assert!(send.settle(1, true));
        assert!(!send.is_done());
        assert!(send.settle(2, false));
        assert!(!send.settle(2, true), "reported once");
        assert!(send.is_done());
        assert_eq!(send.report().delivered, ["a"]);
        assert_eq!(send.report().failed, ["gone", "b"]);
        let mut late = Pending::Send(PendingSend::new(vec![(3, "c".into())], vec![], now));
        late.expire();
        assert!(late.is_done());
        assert!(late.answer_line().contains(r#""failed":["c"]"#));
    }

    #[test]
    fn a_nearest_is_answered_once_its_probes_came_or_its_time_is_up() {
        let now = Instant::now();
        let (a, b, other) = (PeerId::of_slot(1), PeerId::of_slot(2), PeerId::of_slot(3));
        let report = |name: &str, rtt_us: f64| NearestReport {
            nodes: vec![name.to_owned()],
            rtt_us: Some(rtt_us),
        };
        let mut n = PendingNearest::new(TagMap::new(), vec![a, b], report("far", 900.0), now);
        assert!(
            !n.measured(other, |_| report("wrong", 1.0)),
            "not probed for it"
        );
        assert_eq!(n.report(), &report("far", 900.0));
        assert!(n.measured(a, |_| report("a", 400.0)));
        let mut pending = Pending::Nearest(n);
        assert!(!pending.is_done(), "b has not answered");
        pending.expire();
        assert!(pending.is_done());
        assert_eq!(
            pending.answer_line(),
            ok_line("nearest", &report("a", 400.0)),
            "what was measured by then"
        );
    }
}
