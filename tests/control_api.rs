//! The local control API as another language uses it: the Python client printed in
//! docs/CONTROL.md, taken from the doc and run as it is against a running node; and the
//! answers of every request form, read with the crate's own client.

mod support;

use peermesh::io::control::{self, Answer, MatrixFormat, Request};
use std::process::Command;
use std::time::Duration;
use support::{loopback_config, run_bounded, wait_until, Lab};

fn running_pair(test: &str) -> Lab {
    let mut lab = Lab::new(test);
    let config = lab.write_config(&loopback_config(&["alpha", "beta"], 300, 500));
    lab.start(&config, "alpha");
    lab.start(&config, "beta");
    assert!(
        wait_until(Duration::from_secs(5), || lab
            .alive_with_rtt("alpha", "beta")
            && lab.alive_with_rtt("beta", "alpha")),
        "{}",
        lab.logs()
    );
    lab
}

/// The first ```python block of docs/CONTROL.md.
fn python_snippet() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/CONTROL.md"))
        .expect("docs/CONTROL.md");
    let start = doc.find("```python\n").expect("a python block") + "```python\n".len();
    let len = doc[start..].find("```").expect("its end");
    doc[start..start + len].to_owned()
}

#[test]
fn the_python_client_in_the_docs_reads_status_from_a_running_node() {
    let lab = running_pair("python");
    let script = lab.dir.join("client.py");
    std::fs::write(&script, python_snippet()).unwrap();
    let socket = lab.control("alpha");
    let ran = run_bounded(
        Command::new("python3").arg(&script).arg(&socket),
        Duration::from_secs(20),
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let line = ran.stdout.lines().next().unwrap_or_default().to_owned();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.len(), 3, "{line:?}");
    assert_eq!(&words[..2], ["beta", "alive"], "{line:?}");
    assert!(words[2].parse::<f64>().is_ok_and(|us| us > 0.0), "{line:?}");
}

#[test]
fn every_request_form_gets_its_answer() {
    let lab = running_pair("forms");
    let path = lab.control("alpha");
    let ask = |r| control::request(&path, r).expect("an answer");
    let Answer::Status(json) = ask(Request::Status {
        json: true,
        color: false,
    }) else {
        panic!("status as JSON")
    };
    let status: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(status["node"], "alpha");
    let Answer::Text(table) = ask(Request::Status {
        json: false,
        color: true,
    }) else {
        panic!("status as a table")
    };
    assert!(
        table.starts_with("node alpha") && table.contains("\x1b["),
        "{table}"
    );
    let Answer::Matrix(json) = ask(Request::Matrix(MatrixFormat::Json)) else {
        panic!("matrix as JSON")
    };
    let matrix: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(matrix["nodes"], serde_json::json!(["alpha", "beta"]));
    let Answer::Text(table) = ask(Request::Matrix(MatrixFormat::Table)) else {
        panic!("matrix as a table")
    };
    assert!(
        table.starts_with("latency matrix as seen by alpha"),
        "{table}"
    );
    let Answer::Text(svg) = ask(Request::Matrix(MatrixFormat::Svg)) else {
        panic!("matrix as SVG")
    };
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(ask(Request::Ping), Answer::Pong);
    // The words of the older protocol get a plain error line, not a hang.
    let old = control::request_line(&path, "status --json").unwrap();
    assert!(
        old.starts_with("error: this node speaks control protocol 1"),
        "{old}"
    );
}
