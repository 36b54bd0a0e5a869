//! The status page served at `/`: one self-contained HTML file (no external assets) with the
//! peer table as it is now, which its script then refreshes every 2 s from `/status.json`,
//! and the heatmap from `/matrix.svg`.

use crate::report::status::StatusReport;
use std::fmt::Write as _;

const TEMPLATE: &str = include_str!("status_page.html");

/// The page for `report`, the table filled in (so it reads right even without its script).
pub fn render(report: &StatusReport) -> String {
    let alive = report
        .peers
        .iter()
        .filter(|p| p.state == crate::core::PeerState::Alive)
        .count();
    let summary = format!(
        "{alive}/{} peers alive, heartbeat every {} ms",
        report.peers.len(),
        report.heartbeat_interval_ms
    );
    let mut rows = String::new();
    for p in &report.peers {
        let ms = |us: Option<f64>| us.map_or("-".to_owned(), |us| format!("{:.2} ms", us / 1000.0));
        let heard = p.last_heard_ms.map_or("never".to_owned(), |ms| {
            format!("{:.1} s ago", ms as f64 / 1000.0)
        });
        let _ = writeln!(
            rows,
            "<tr data-peer=\"{name}\"><td class=\"name\">{name}</td><td class=\"addr\">{addr}</td>\
             <td class=\"state {state}\">{state}</td><td class=\"diagnosis\">{diagnosis}</td>\
             <td class=\"num\">{p50}</td><td class=\"num\">{p99}</td><td class=\"num\">{loss:.1}%</td>\
             <td class=\"num\">{heard}</td></tr>",
            name = escape(&p.name),
            addr = escape(&p.addr),
            state = p.state.as_str(),
            diagnosis = p.diagnosis.as_str(),
            p50 = ms(p.rtt_us.as_ref().map(|r| r.p50)),
            p99 = ms(p.rtt_us.as_ref().map(|r| r.p99)),
            loss = p.loss_pct,
        );
    }
    TEMPLATE
        .replace("{{NODE}}", &escape(&report.node))
        .replace("{{SUMMARY}}", &escape(&summary))
        .replace("{{ROWS}}", &rows)
}

/// Text as HTML text or attribute value.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_every_peer_has_a_row() {
        assert_eq!(escape("<a&b\">"), "&lt;a&amp;b&quot;&gt;");
        let sim = {
            let mut sim = crate::sim::Sim::with_nodes(3, std::time::Duration::from_millis(100), 1);
            sim.run_for(std::time::Duration::from_secs(1));
            sim
        };
        let mesh = sim.mesh(0).expect("node 0");
        let page = render(&StatusReport::new(mesh, sim.now(), None));
        assert!(page.contains("<tr data-peer=\"node1\">"));
        assert!(page.contains("<tr data-peer=\"node2\">"));
        assert!(page.contains("class=\"state alive\">alive<"));
        assert!(!page.contains("{{"), "every placeholder filled");
    }
}
