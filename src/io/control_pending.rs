//! Control requests answered later: a confirmed `send` waits until every message is
//! reported delivered or failed, a `query` until it is done. The connection stays open
//! meanwhile; the node's loop feeds each core event to the waiting requests
//! ([`crate::io::control::ControlServer::on_event`]), and a request past its deadline (the
//! core's report overdue) is answered with what it has.

use crate::io::control_protocol::ok_line;
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

/// A request answered later.
#[derive(Debug)]
pub enum Pending {
    /// A confirmed send.
    Send(PendingSend),
    /// A query.
    Query(PendingQuery),
}

impl Pending {
    /// When it is answered whatever came.
    pub fn deadline(&self) -> Instant {
        match self {
            Pending::Send(s) => s.deadline,
            Pending::Query(q) => q.deadline,
        }
    }

    /// Whether it can be answered now.
    pub fn is_done(&self) -> bool {
        match self {
            Pending::Send(s) => s.is_done(),
            Pending::Query(q) => q.done,
        }
    }

    /// Gives up waiting: a send's unreported messages count as failed (the core's report
    /// is overdue), a query answers with what it has.
    pub fn expire(&mut self) {
        match self {
            Pending::Send(s) => {
                let rest = std::mem::take(&mut s.outstanding);
                s.report.failed.extend(rest.into_values());
            }
            Pending::Query(q) => q.done = true,
        }
    }

    /// The answer line.
    pub fn answer_line(&self) -> String {
        match self {
            Pending::Send(s) => ok_line("sent", &s.report),
            Pending::Query(q) => ok_line("query", &q.report),
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
}
