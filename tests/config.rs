//! The configuration file: what is accepted, what each mistake is called and where it points.
//!
//! Error positions are asserted exactly. In the texts below, top-level fields are indented by
//! four spaces (so a field's name is at column 5) and nodes by eight (a node's `(` at
//! column 9, its `name` value at column 16).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use peermesh::config::{
    Config, ConfigError, ConfigErrorKind, NodeEntry, DEFAULT_MAX_DATAGRAM, DEFAULT_PORT,
    ECHOED_CHARS, MAX_CONFIG_BYTES,
};
use peermesh::wire::identity::NodeId;
use proptest::prelude::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "peers.ron")
}

/// The error for `text`, which must be rejected.
fn rejected(text: &str) -> ConfigError {
    match parse(text) {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(error) => error,
    }
}

/// The error points at `line:col` and its message, `peers.ron:LINE:COL: ...`, says `words`.
fn assert_points(error: &ConfigError, line: usize, col: usize, words: &[&str]) {
    let message = error.to_string();
    assert_eq!(error.position(), Some((line, col)), "{message}");
    let prefix = format!("peers.ron:{line}:{col}: ");
    assert!(message.starts_with(&prefix), "{message}");
    for word in words {
        assert!(message.contains(word), "{message:?} does not say {word:?}");
    }
}

fn node(name: &str, host: &str, port: u16) -> NodeEntry {
    NodeEntry {
        name: name.to_string(),
        host: host.to_string(),
        port,
        tags: Default::default(),
        handler: None,
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/configs")
        .join(name)
}

/// A configuration built in code, bypassing the file.
fn mesh(nodes: &[(&str, &str)]) -> Config {
    Config {
        port: DEFAULT_PORT,
        heartbeat_interval: Duration::from_millis(1000),
        suspect_after: Duration::from_millis(3000),
        dead_after: Duration::from_millis(5000),
        max_datagram: DEFAULT_MAX_DATAGRAM,
        keyring: None,
        resolve_interval: peermesh::config::DEFAULT_RESOLVE_INTERVAL,
        http_listen: None,
        probe_mode: peermesh::core::ProbeMode::Auto,
        probe_fanout: peermesh::core::DEFAULT_PROBE_FANOUT,
        nodes: nodes
            .iter()
            .map(|(name, host)| node(name, host, DEFAULT_PORT))
            .collect(),
    }
}

// ---- What is accepted --------------------------------------------------------------------

#[test]
fn the_full_example_loads_with_every_field() {
    let path = fixture("peers.ron");
    let config = Config::load(&path).unwrap();
    assert_eq!(
        config,
        Config {
            port: 1400,
            heartbeat_interval: Duration::from_millis(500),
            suspect_after: Duration::from_millis(2000),
            dead_after: Duration::from_millis(4000),
            max_datagram: 1400,
            keyring: Some(fixture("keyring")),
            resolve_interval: Duration::from_millis(30_000),
            http_listen: Some("127.0.0.1:9313".parse().unwrap()),
            probe_mode: peermesh::core::ProbeMode::Auto,
            probe_fanout: peermesh::core::DEFAULT_PROBE_FANOUT,
            nodes: vec![
                NodeEntry {
                    tags: [("role", "db"), ("zone", "eu-1")]
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .into(),
                    ..node("alpha", "10.0.0.1", 1400)
                },
                NodeEntry {
                    handler: Some(PathBuf::from("/usr/local/bin/beta-handler")),
                    ..node("beta", "10.0.0.2", 1314)
                },
                node("gamma", "::1", 1315),
                node("delta", "vm-delta.internal", 1400),
            ]
            .into_iter()
            .map(|n| NodeEntry {
                handler: n.handler.or_else(|| Some(fixture("handler"))),
                ..n
            })
            .collect(),
        }
    );
}

#[test]
fn missing_optional_fields_take_their_defaults() {
    let config = Config::load(&fixture("minimal.ron")).unwrap();
    assert_eq!(
        config,
        Config {
            port: 1313,
            heartbeat_interval: Duration::from_millis(1000),
            suspect_after: Duration::from_millis(3000),
            dead_after: Duration::from_millis(5000),
            max_datagram: 1232,
            keyring: None,
            resolve_interval: peermesh::config::DEFAULT_RESOLVE_INTERVAL,
            http_listen: None,
            probe_mode: peermesh::core::ProbeMode::Auto,
            probe_fanout: peermesh::core::DEFAULT_PROBE_FANOUT,
            nodes: vec![
                node("alpha", "10.0.0.1", 1313),
                node("beta", "10.0.0.2", 1313),
            ],
        }
    );
}

#[test]
fn suspect_and_dead_default_to_three_and_five_intervals() {
    let config = parse(
        r#"(
    heartbeat_interval_ms: 200,
    nodes: [(name: "alpha", host: "10.0.0.1")],
)"#,
    )
    .unwrap();
    assert_eq!(config.heartbeat_interval, Duration::from_millis(200));
    assert_eq!(config.suspect_after, Duration::from_millis(600));
    assert_eq!(config.dead_after, Duration::from_millis(1000));
}

#[test]
fn struct_names_some_and_attributes_are_accepted() {
    let config = parse(
        r#"#![enable(implicit_some)]
Config(
    port: Some(1400),
    nodes: [Node(name: "alpha", host: "10.0.0.1"), (name: "beta", host: "10.0.0.1", port: 1401)],
)"#,
    )
    .unwrap();
    assert_eq!(config.nodes[0], node("alpha", "10.0.0.1", 1400));
    assert_eq!(config.nodes[1], node("beta", "10.0.0.1", 1401));
}

#[test]
fn a_relative_keyring_is_resolved_against_the_files_directory() {
    let text = r#"(
    keyring: "keys/ring",
    nodes: [(name: "alpha", host: "10.0.0.1")],
)"#;
    let config = Config::parse(text, "/etc/peermesh/peers.ron").unwrap();
    assert_eq!(
        config.keyring,
        Some(PathBuf::from("/etc/peermesh/keys/ring"))
    );
    // A file in the current directory: the keyring is too.
    let config = Config::parse(text, "peers.ron").unwrap();
    assert_eq!(config.keyring, Some(PathBuf::from("keys/ring")));
    // An absolute keyring is kept as it is.
    let text = text.replace("keys/ring", "/var/lib/ring");
    let config = Config::parse(&text, "/etc/peermesh/peers.ron").unwrap();
    assert_eq!(config.keyring, Some(PathBuf::from("/var/lib/ring")));
}

#[test]
fn several_nodes_may_share_a_host_on_different_ports() {
    let config = parse(
        r#"(
    nodes: [
        (name: "alpha", host: "127.0.0.1", port: 1400),
        (name: "beta", host: "127.0.0.1", port: 1401),
    ],
)"#,
    )
    .unwrap();
    assert_eq!(config.nodes.len(), 2);
}

// ---- 1. Syntax ----------------------------------------------------------------------------

#[test]
fn a_syntax_error_points_where_the_parser_stopped() {
    let error = rejected(
        r#"(
    nodes: [
        (name: "alpha" host: "10.0.0.1"),
    ],
)"#,
    );
    assert!(matches!(error.kind(), ConfigErrorKind::Syntax { .. }));
    assert_points(&error, 3, 24, &["syntax error", "expected comma"]);
}

#[test]
fn columns_count_characters_not_bytes() {
    let error = rejected(
        r#"(
    nodes: [
        (name: "αβγ" host: "10.0.0.1"),
    ],
)"#,
    );
    assert!(matches!(error.kind(), ConfigErrorKind::Syntax { .. }));
    assert_points(&error, 3, 22, &["expected comma"]);
}

#[test]
fn text_that_is_not_utf8_is_a_syntax_error_at_the_bad_byte() {
    let dir = std::env::temp_dir().join(format!("peermesh-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("latin1.ron");
    std::fs::write(
        &path,
        b"(\n    nodes: [\n        (name: \"caf\xe9\", host: \"h\"),\n    ],\n)",
    )
    .unwrap();
    let error = Config::load(&path).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(error.kind(), ConfigErrorKind::Syntax { .. }));
    assert_eq!(error.position(), Some((3, 20)));
    assert!(error.to_string().contains("not valid UTF-8"), "{error}");
}

// ---- 2. Unknown fields --------------------------------------------------------------------

#[test]
fn an_unknown_top_level_field_is_named_with_the_allowed_ones() {
    let error = rejected(
        r#"(
    heartbeat_interval: 1000,
    nodes: [(name: "alpha", host: "10.0.0.1")],
)"#,
    );
    match error.kind() {
        ConfigErrorKind::UnknownField {
            field,
            in_node: false,
            ..
        } => assert_eq!(field, "heartbeat_interval"),
        other => panic!("{other:?}"),
    }
    assert_points(
        &error,
        2,
        5,
        &[
            "unknown field `heartbeat_interval`",
            "did you mean `heartbeat_interval_ms`?",
            "`port`, `heartbeat_interval_ms`, `suspect_after_ms`, `dead_after_ms`, \
             `max_datagram_bytes`, `keyring`, `resolve_interval_ms`, `http_listen`, `probe_mode`, `probe_fanout`, `nodes`",
        ],
    );
}

#[test]
fn an_unknown_field_in_a_node_is_named_with_the_allowed_ones() {
    let error = rejected(
        r#"(
    nodes: [
        (name: "alpha", hots: "10.0.0.1"),
    ],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::UnknownField { in_node: true, .. }
    ));
    assert_points(
        &error,
        3,
        25,
        &[
            "unknown field `hots` in a node",
            "did you mean `host`?",
            "`name`, `host`, `port`",
        ],
    );
}

#[test]
fn a_field_given_twice_points_at_the_second() {
    let error = rejected(
        r#"(
    port: 1400,
    port: 1401,
    nodes: [(name: "alpha", host: "10.0.0.1")],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::DuplicateField { field, first_line: Some(2) } if field == "port"
    ));
    assert_points(&error, 3, 5, &["`port` is given twice", "first at line 2"]);
}

// ---- 3. Types and required fields ---------------------------------------------------------

#[test]
fn a_value_of_the_wrong_type_is_named_with_what_was_expected() {
    let error = rejected(
        r#"(
    nodes: [
        (name: "alpha", host: "10.0.0.1", port: "1314"),
    ],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::WrongType { field, node: Some(0), .. } if field == "port"
    ));
    assert_points(
        &error,
        3,
        49,
        &[
            "wrong type for `port` of node #1",
            "expected a port number from 1 to 65535",
            "found `\"1314\"`",
        ],
    );
}

#[test]
fn a_fraction_or_a_negative_number_is_the_wrong_type() {
    let error = rejected(
        r#"(
    heartbeat_interval_ms: 1.5,
    nodes: [(name: "alpha", host: "10.0.0.1")],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::WrongType { node: None, .. }
    ));
    assert_points(
        &error,
        2,
        28,
        &[
            "`heartbeat_interval_ms`",
            "whole number of milliseconds",
            "found `1.5`",
        ],
    );

    let error = rejected(
        r#"(
    port: -1,
    nodes: [(name: "alpha", host: "10.0.0.1")],
)"#,
    );
    assert!(matches!(error.kind(), ConfigErrorKind::WrongType { .. }));
    assert_points(&error, 2, 11, &["`port`", "found `-1`"]);
}

#[test]
fn a_number_too_big_to_read_is_the_wrong_type() {
    let error = rejected(
        r#"(
    port: 99999999999999999999999,
    nodes: [(name: "alpha", host: "10.0.0.1")],
)"#,
    );
    assert!(matches!(error.kind(), ConfigErrorKind::WrongType { .. }));
    assert_points(&error, 2, 11, &["`port`", "1 to 65535"]);
}

#[test]
fn a_node_that_is_not_a_node_is_the_wrong_type() {
    let error = rejected(
        r#"(
    nodes: ["alpha"],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::WrongType { field, node: None, .. } if field == "nodes"
    ));
    assert_points(
        &error,
        2,
        13,
        &[
            "`nodes`",
            "(name: \"alpha\", host: \"10.0.0.1\")",
            "found `\"alpha\"`",
        ],
    );
}

#[test]
fn a_node_without_a_host_points_at_the_node() {
    let error = rejected(
        r#"(
    nodes: [
        (name: "alpha", host: "10.0.0.1"),
        (name: "beta"),
    ],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::MissingField { field, node: Some(1) } if field == "host"
    ));
    assert_points(&error, 4, 9, &["node #2 has no `host`"]);
}

#[test]
fn a_node_without_a_name_points_at_the_node() {
    let error = rejected(
        r#"(
    nodes: [
        Node(host: "10.0.0.1"),
    ],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::MissingField { field, node: Some(0) } if field == "name"
    ));
    assert_points(&error, 3, 9, &["node #1 has no `name`"]);
}

#[test]
fn a_file_without_nodes_points_at_its_start() {
    let error = rejected(
        r#"// no nodes yet
(
    port: 1313,
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::MissingField { field, node: None } if field == "nodes"
    ));
    assert_points(&error, 2, 1, &["missing field `nodes`"]);
}

// ---- 4. Duplicate names -------------------------------------------------------------------

#[test]
fn a_duplicate_name_points_at_the_second_and_says_where_the_first_is() {
    let error = rejected(
        r#"(
    nodes: [
        (name: "alpha", host: "10.0.0.1"),
        (name: "beta", host: "10.0.0.2"),
        (name: "Alpha", host: "10.0.0.3"),
    ],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::DuplicateName {
            first_line: Some(3),
            ..
        }
    ));
    assert_points(
        &error,
        5,
        16,
        &[
            "duplicate node name \"Alpha\"",
            "\"alpha\" is already listed at line 3",
        ],
    );
}

#[test]
fn two_names_with_the_same_identity_are_rejected() {
    // Found by a cycle search: different names, equal 64-bit FNV-1a.
    let (a, b) = ("n5ab3954cc1f68a9a", "n533fd214620895a2");
    assert_eq!(NodeId::from_name(a), NodeId::from_name(b));
    let error = rejected(&format!(
        r#"(
    nodes: [
        (name: "{a}", host: "10.0.0.1"),
        (name: "{b}", host: "10.0.0.2"),
    ],
)"#
    ));
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::DuplicateNodeId {
            first_line: Some(3),
            ..
        }
    ));
    assert_points(
        &error,
        4,
        16,
        &[
            "same identity (7accd63b1fc636f2)",
            "at line 3",
            "rename one",
        ],
    );
}

// ---- 5. Duplicate addresses ---------------------------------------------------------------

#[test]
fn a_duplicate_address_counts_the_default_port() {
    let error = rejected(
        r#"(
    port: 1400,
    nodes: [
        (name: "alpha", host: "10.0.0.1", port: 1400),
        (name: "beta", host: "10.0.0.1"),
    ],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::DuplicateAddress {
            port: 1400,
            port_default: true,
            ..
        }
    ));
    assert_points(
        &error,
        5,
        30,
        &[
            "node \"beta\" has the same address as node \"alpha\" at line 4",
            "port 1400 (the default port)",
        ],
    );
}

#[test]
fn ip_literals_are_compared_by_value() {
    let error = rejected(
        r#"(
    nodes: [
        (name: "alpha", host: "::1", port: 1315),
        (name: "beta", host: "0:0:0:0:0:0:0:1", port: 1315),
    ],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::DuplicateAddress {
            port_default: false,
            ..
        }
    ));
    assert_points(
        &error,
        4,
        30,
        &["same address", "\"0:0:0:0:0:0:0:1\", port 1315"],
    );
}

#[test]
fn host_names_are_compared_case_insensitively() {
    let error = rejected(
        r#"(
    nodes: [
        (name: "alpha", host: "vm.internal"),
        (name: "beta", host: "VM.Internal"),
    ],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::DuplicateAddress { .. }
    ));
    assert_points(&error, 4, 30, &["same address as node \"alpha\""]);
}

// ---- 6. Empty node list -------------------------------------------------------------------

#[test]
fn an_empty_node_list_points_at_nodes() {
    let error = rejected(
        r#"(
    port: 1313,
    nodes: [],
)"#,
    );
    assert!(matches!(error.kind(), ConfigErrorKind::NoNodes));
    assert_points(&error, 3, 5, &["node list is empty"]);
}

// ---- 7. Heartbeat interval ----------------------------------------------------------------

#[test]
fn a_zero_heartbeat_interval_is_rejected() {
    let error = rejected(
        r#"(
    heartbeat_interval_ms: 0,
    nodes: [(name: "alpha", host: "10.0.0.1")],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::ZeroHeartbeatInterval
    ));
    assert_points(
        &error,
        2,
        28,
        &["heartbeat_interval_ms is 0", "at least 10 ms"],
    );
}

#[test]
fn a_heartbeat_interval_below_10_ms_is_too_short() {
    let error = rejected(
        r#"(
    heartbeat_interval_ms: 9,
    nodes: [(name: "alpha", host: "10.0.0.1")],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::HeartbeatTooShort { ms: 9 }
    ));
    assert_points(&error, 2, 28, &["too short: at least 10 ms"]);
}

#[test]
fn a_duration_over_a_day_is_too_long() {
    let error = rejected(
        r#"(
    heartbeat_interval_ms: 1000,
    dead_after_ms: 86400001,
    nodes: [(name: "alpha", host: "10.0.0.1")],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::DurationTooLong {
            field: "dead_after_ms",
            ms: 86_400_001
        }
    ));
    assert_points(&error, 3, 20, &["dead_after_ms 86400001 is too long"]);
}

// ---- 8. Suspect and dead times ------------------------------------------------------------

#[test]
fn suspect_not_before_dead_points_at_suspect() {
    let error = rejected(
        r#"(
    suspect_after_ms: 4000,
    dead_after_ms: 4000,
    nodes: [(name: "alpha", host: "10.0.0.1")],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::SuspectNotBeforeDead {
            suspect_ms: 4000,
            dead_ms: 4000,
            ..
        }
    ));
    assert_points(
        &error,
        2,
        23,
        &["suspect_after_ms (4000) must be less than dead_after_ms (4000)"],
    );
}

#[test]
fn dead_before_the_default_suspect_points_at_dead_and_gives_the_default() {
    let error = rejected(
        r#"(
    heartbeat_interval_ms: 1000,
    dead_after_ms: 2000,
    nodes: [(name: "alpha", host: "10.0.0.1")],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::SuspectNotBeforeDead {
            suspect_ms: 3000,
            suspect_default: true,
            dead_ms: 2000,
            dead_default: false,
        }
    ));
    assert_points(
        &error,
        3,
        20,
        &["suspect_after_ms (3000, the default) must be less than dead_after_ms (2000)"],
    );
}

#[test]
fn suspect_within_one_heartbeat_is_rejected() {
    let error = rejected(
        r#"(
    heartbeat_interval_ms: 2000,
    suspect_after_ms: 2000,
    nodes: [(name: "alpha", host: "10.0.0.1")],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::SuspectWithinHeartbeat {
            suspect_ms: 2000,
            interval_ms: 2000
        }
    ));
    assert_points(
        &error,
        3,
        23,
        &["suspect_after_ms (2000) must be greater than heartbeat_interval_ms (2000)"],
    );
}

// ---- 9. Names, hosts, ports, sizes --------------------------------------------------------

#[test]
fn an_empty_name_is_rejected() {
    let error = rejected(
        r#"(
    nodes: [
        (name: "", host: "10.0.0.1"),
    ],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::EmptyName { node: 0 }
    ));
    assert_points(&error, 3, 16, &["node #1 has an empty name"]);
}

#[test]
fn a_name_with_whitespace_is_rejected() {
    let error = rejected(
        r#"(
    nodes: [
        (name: "al pha", host: "10.0.0.1"),
    ],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::InvalidName { bad: ' ', .. }
    ));
    assert_points(&error, 3, 16, &["\"al pha\" contains a space"]);
}

#[test]
fn a_name_with_a_control_character_is_rejected() {
    let error = rejected(
        r#"(
    nodes: [
        (name: "al\u{7}pha", host: "10.0.0.1"),
    ],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::InvalidName { bad: '\u{7}', .. }
    ));
    assert_points(&error, 3, 16, &["contains a control character (\\u{7})"]);
}

#[test]
fn a_name_over_64_bytes_is_too_long() {
    let long = "a".repeat(65);
    let error = rejected(&format!(
        r#"(
    nodes: [
        (name: "{long}", host: "10.0.0.1"),
    ],
)"#
    ));
    assert!(matches!(error.kind(), ConfigErrorKind::NameTooLong { .. }));
    assert_points(&error, 3, 16, &["is 65 bytes long: at most 64"]);
    // 64 bytes is fine.
    let fits = "a".repeat(64);
    assert!(parse(&format!(r#"(nodes: [(name: "{fits}", host: "h")])"#)).is_ok());
}

#[test]
fn an_empty_host_is_rejected() {
    let error = rejected(
        r#"(
    nodes: [
        (name: "alpha", host: ""),
    ],
)"#,
    );
    assert!(matches!(error.kind(), ConfigErrorKind::EmptyHost { .. }));
    assert_points(&error, 3, 31, &["node \"alpha\" has an empty host"]);
}

#[test]
fn a_host_with_whitespace_is_rejected() {
    let error = rejected(
        r#"(
    nodes: [
        (name: "alpha", host: "10.0.0.1 "),
    ],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::InvalidHost { bad: ' ', .. }
    ));
    assert_points(
        &error,
        3,
        31,
        &["host \"10.0.0.1 \" of node \"alpha\" contains a space"],
    );
}

#[test]
fn a_node_port_of_zero_is_rejected() {
    let error = rejected(
        r#"(
    nodes: [
        (name: "alpha", host: "10.0.0.1", port: 0),
    ],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::InvalidPort {
            port: 0,
            node: Some(0)
        }
    ));
    assert_points(
        &error,
        3,
        49,
        &["port 0 of node #1 is not allowed", "1 to 65535"],
    );
}

#[test]
fn a_default_port_of_zero_or_above_65535_is_rejected() {
    let error = rejected(
        r#"(
    port: 0,
    nodes: [(name: "alpha", host: "10.0.0.1")],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::InvalidPort {
            port: 0,
            node: None
        }
    ));
    assert_points(&error, 2, 11, &["default port 0 is not allowed"]);

    let error = rejected(
        r#"(
    port: 65536,
    nodes: [(name: "alpha", host: "10.0.0.1")],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::InvalidPort {
            port: 65536,
            node: None
        }
    ));
    assert_points(&error, 2, 11, &["default port 65536 is too large"]);
}

#[test]
fn max_datagram_bytes_out_of_range_is_rejected() {
    for (bytes, ok) in [(511, false), (512, true), (65507, true), (65508, false)] {
        let text = format!(
            r#"(
    max_datagram_bytes: {bytes},
    nodes: [(name: "alpha", host: "10.0.0.1")],
)"#
        );
        match parse(&text) {
            Ok(config) => {
                assert!(ok, "{bytes} accepted");
                assert_eq!(config.max_datagram, bytes);
            }
            Err(error) => {
                assert!(!ok, "{bytes} rejected: {error}");
                assert!(matches!(
                    error.kind(),
                    ConfigErrorKind::DatagramSizeOutOfRange { .. }
                ));
                assert_points(
                    &error,
                    2,
                    25,
                    &[&format!("{bytes} is out of range: use 512 to 65507")],
                );
            }
        }
    }
}

#[test]
fn an_empty_keyring_is_rejected() {
    let error = rejected(
        r#"(
    keyring: "",
    nodes: [(name: "alpha", host: "10.0.0.1")],
)"#,
    );
    assert!(matches!(error.kind(), ConfigErrorKind::EmptyKeyring));
    assert_points(&error, 2, 14, &["keyring is empty"]);
}

// ---- Tags and the event handler --------------------------------------------------------------

/// A one-node file whose node has `tags` written as `entries` on lines of their own, the first
/// on line 4 (keys at column 13).
fn with_tags(entries: &[(&str, &str)]) -> String {
    let mut text =
        String::from("(\n    nodes: [\n        (name: \"alpha\", host: \"10.0.0.1\", tags: {\n");
    for (key, value) in entries {
        text.push_str(&format!("            {key:?}: {value:?},\n"));
    }
    text.push_str("        }),\n    ],\n)");
    text
}

#[test]
fn tags_and_handlers_load_with_the_nodes_own_handler_first() {
    let text = r#"(
    handler: "handlers/event.sh",
    nodes: [
        (name: "alpha", host: "10.0.0.1", tags: {"role": "db", "zone": "eu-1"}),
        (name: "beta", host: "10.0.0.2", handler: "/usr/local/bin/beta-handler"),
        Node(name: "gamma", host: "10.0.0.3", tags: Some({"k8s.io/zone:a-1_b": "ünïcode ✓", "empty": ""})),
    ],
)"#;
    let config = Config::parse(text, "/etc/peermesh/peers.ron").unwrap();
    let [alpha, beta, gamma] = &config.nodes[..] else {
        panic!("{config:?}")
    };
    let tags = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(alpha.tags, tags(&[("role", "db"), ("zone", "eu-1")]));
    assert_eq!(
        alpha.handler.as_deref(),
        Some(Path::new("/etc/peermesh/handlers/event.sh"))
    );
    assert!(beta.tags.is_empty());
    assert_eq!(
        beta.handler.as_deref(),
        Some(Path::new("/usr/local/bin/beta-handler"))
    );
    assert_eq!(
        gamma.tags,
        tags(&[("k8s.io/zone:a-1_b", "ünïcode ✓"), ("empty", "")])
    );
    assert_eq!(gamma.handler, alpha.handler);
}

#[test]
fn the_core_of_a_node_starts_with_the_tags_of_its_entry() {
    let config = parse(
        r#"(nodes: [
    (name: "alpha", host: "10.0.0.1", tags: {"role": "db", "zone": "eu-1"}),
    (name: "beta", host: "10.0.0.2"),
])"#,
    )
    .unwrap();
    let addrs: Vec<SocketAddr> = (0..2).map(|i| config.resolve(i).unwrap()).collect();
    let alpha = config.mesh(0, &addrs, (1, 2), std::time::Instant::now());
    assert_eq!(alpha.tags(), &config.nodes[0].tags);
    let beta = config.mesh(1, &addrs, (1, 2), std::time::Instant::now());
    assert!(beta.tags().is_empty());
}

#[test]
fn without_a_handler_anywhere_no_node_has_one() {
    let config = Config::load(&fixture("minimal.ron")).unwrap();
    assert!(config
        .nodes
        .iter()
        .all(|n| n.handler.is_none() && n.tags.is_empty()));
    let config = parse(r#"(nodes: [(name: "alpha", host: "10.0.0.1", tags: {})])"#).unwrap();
    assert!(config.nodes[0].tags.is_empty());
}

#[test]
fn a_tag_key_with_a_character_outside_the_set_points_at_the_key() {
    let error = rejected(
        r#"(
    nodes: [
        (name: "alpha", host: "10.0.0.1", tags: {"role": "db", "ro le": "x"}),
    ],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::InvalidTagKey { name, key, bad: ' ' } if name == "alpha" && key == "ro le"
    ));
    assert_points(
        &error,
        3,
        64,
        &[
            "tag key \"ro le\" of node \"alpha\" contains a space",
            "A-Z, a-z, 0-9",
        ],
    );
    for (key, bad) in [("a=b", "`=`"), ("rôle", "`ô`"), ("tab\t", "a tab")] {
        let error = rejected(&with_tags(&[("ok", "1"), (key, "x")]));
        assert_points(&error, 5, 13, &[bad]);
    }
}

#[test]
fn an_empty_tag_key_points_at_it() {
    let error = rejected(&with_tags(&[("", "x")]));
    assert!(matches!(error.kind(), ConfigErrorKind::EmptyTagKey { name } if name == "alpha"));
    assert_points(
        &error,
        4,
        13,
        &["node \"alpha\" has a tag with an empty key"],
    );
}

#[test]
fn a_tag_key_over_128_bytes_points_at_it_and_128_is_fine() {
    let long = "k".repeat(128);
    assert_eq!(
        parse(&with_tags(&[(&long, "v")])).unwrap().nodes[0].tags[&long],
        "v"
    );
    let longer = "k".repeat(129);
    let error = rejected(&with_tags(&[("a", "b"), (&longer, "v")]));
    assert!(matches!(error.kind(), ConfigErrorKind::TagKeyTooLong { key, .. } if *key == longer));
    assert_points(&error, 5, 13, &["is 129 bytes long: at most 128"]);
}

#[test]
fn a_tag_value_over_4096_bytes_points_at_the_value_and_4096_is_fine() {
    let value = "v".repeat(4096);
    assert_eq!(
        parse(&with_tags(&[("k", &value)])).unwrap().nodes[0].tags["k"],
        value
    );
    // Bytes, not characters: 2,049 two-byte characters are 4,098 bytes.
    let value = "é".repeat(2049);
    let error = rejected(&with_tags(&[("role", "db"), ("k", &value)]));
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::TagValueTooLong { key, bytes: 4098, .. } if key == "k"
    ));
    // `"k": ` takes columns 13 to 17: the value starts at 18.
    assert_points(
        &error,
        5,
        18,
        &["the value of tag \"k\" of node \"alpha\" is 4098 bytes long: at most 4096"],
    );
}

#[test]
fn tags_over_16384_bytes_in_all_point_at_the_key_that_passes_the_limit() {
    // Four entries of 1 + 4095 bytes are 16,384: exactly the limit.
    let value = "v".repeat(4095);
    let fits: Vec<(&str, &str)> = ["a", "b", "c", "d"]
        .iter()
        .map(|k| (*k, value.as_str()))
        .collect();
    assert_eq!(parse(&with_tags(&fits)).unwrap().nodes[0].tags.len(), 4);
    let mut over = fits.clone();
    over.push(("e", "x"));
    let error = rejected(&with_tags(&over));
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::TagsTooLarge { name, bytes: 16386 } if name == "alpha"
    ));
    assert_points(
        &error,
        8,
        13,
        &[
            "the tags of node \"alpha\" take 16386 bytes",
            "more than the 16384",
        ],
    );
}

#[test]
fn a_tag_key_given_twice_points_at_the_second() {
    let error = rejected(
        r#"(
    nodes: [
        (name: "alpha", host: "10.0.0.1", tags: {"role": "db", "role": "web"}),
    ],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::DuplicateTagKey { key, first_line: Some(3), .. } if key == "role"
    ));
    assert_points(
        &error,
        3,
        64,
        &[
            "tag key \"role\" of node \"alpha\" is given twice",
            "keep one",
        ],
    );
    let error = rejected(&with_tags(&[("zone", "a"), ("role", "b"), ("zone", "c")]));
    assert_points(&error, 6, 13, &["\"zone\"", "(first at line 4)"]);
}

#[test]
fn tags_that_are_not_a_map_of_strings_are_the_wrong_type() {
    for (text, col, found) in [
        (
            r#"(nodes: [(name: "alpha", host: "10.0.0.1", tags: {"role": 5})])"#,
            50,
            "",
        ),
        (
            r#"(nodes: [(name: "alpha", host: "10.0.0.1", tags: ["role"])])"#,
            50,
            "",
        ),
    ] {
        let error = rejected(text);
        assert!(
            matches!(error.kind(), ConfigErrorKind::WrongType { field, node: Some(0), .. } if field == "tags"),
            "{error}"
        );
        assert_points(
            &error,
            1,
            col,
            &[
                "wrong type for `tags` of node #1",
                "{\"role\": \"db\"}",
                found,
            ],
        );
    }
}

#[test]
fn an_empty_handler_points_at_it() {
    let error = rejected(
        r#"(
    handler: "",
    nodes: [(name: "alpha", host: "10.0.0.1")],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::EmptyHandler { node: None }
    ));
    assert_points(
        &error,
        2,
        14,
        &["handler is empty: give the program's path"],
    );
    let error = rejected(
        r#"(
    nodes: [
        (name: "alpha", host: "10.0.0.1", handler: ""),
    ],
)"#,
    );
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::EmptyHandler { node: Some(0) }
    ));
    assert_points(&error, 3, 52, &["handler of node #1 is empty"]);
}

#[test]
fn an_unknown_field_lists_tags_and_handler() {
    let error = rejected(r#"(nodes: [(name: "alpha", host: "10.0.0.1", tag: {})])"#);
    assert!(
        error.to_string().contains("did you mean `tags`?"),
        "{error}"
    );
    assert!(
        error.to_string().contains("`port`, `tags`, `handler`"),
        "{error}"
    );
    let error = rejected(r#"(handlr: "x", nodes: [(name: "alpha", host: "10.0.0.1")])"#);
    assert!(
        error.to_string().contains("did you mean `handler`?"),
        "{error}"
    );
}

// ---- Loading ------------------------------------------------------------------------------

#[test]
fn loading_a_missing_file_names_the_path() {
    let path = std::env::temp_dir().join("peermesh-no-such-dir/peers.ron");
    let error = Config::load(&path).unwrap_err();
    assert!(matches!(error.kind(), ConfigErrorKind::Io(_)));
    assert_eq!(error.position(), None);
    let message = error.to_string();
    let prefix = format!("{}: cannot read the configuration file: ", path.display());
    assert!(message.starts_with(&prefix), "{message}");
    assert!(std::error::Error::source(&error).is_some());
}

#[test]
fn loading_a_fifo_a_device_or_a_huge_file_is_refused_unread() {
    let dir = std::env::temp_dir().join(format!("peermesh-config-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo.ron");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let huge = dir.join("huge.ron");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(MAX_CONFIG_BYTES + 1)
        .unwrap();
    for (path, what) in [
        (fifo.as_path(), "a FIFO"),
        (Path::new("/dev/zero"), "a character device"),
        (dir.as_path(), "a directory"),
    ] {
        let error = Config::load(path).unwrap_err();
        assert!(
            matches!(error.kind(), ConfigErrorKind::NotRegularFile { what: w } if *w == what),
            "{error}"
        );
        assert_eq!(error.position(), None);
        assert_eq!(
            error.to_string(),
            format!("{}: not a regular file ({what})", path.display())
        );
    }
    let error = Config::load(&huge).unwrap_err();
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::TooLarge {
            bytes: Some(1_048_577)
        }
    ));
    assert_eq!(
        error.to_string(),
        format!(
            "{}: 1048577 bytes, more than the 1048576 a config may have",
            huge.display()
        )
    );
    // At the limit, it is read (and here refused as text, not for its size).
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(MAX_CONFIG_BYTES)
        .unwrap();
    assert!(matches!(
        Config::load(&huge).unwrap_err().kind(),
        ConfigErrorKind::Syntax { .. }
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_value_an_error_echoes_is_clipped() {
    let long = "v".repeat(200_000);
    let texts = [
        format!(r#"(nodes: [(name: "{long} x", host: "h")])"#),
        format!(r#"(nodes: [(name: "{long}", host: "h")])"#),
        format!(r#"(nodes: [(name: "a", host: "{long} x")])"#),
        format!(r#"(nodes: [(name: "a", host: "{long}"), (name: "b", host: "{long}")])"#),
        format!(r#"(nodes: [(name: "a", host: "h", {long}: 1)])"#),
        format!(r#"({long}: 1, nodes: [(name: "a", host: "h")])"#),
        format!(r#"(port: "{long}", nodes: [(name: "a", host: "h")])"#),
        format!(r#"(nodes: [(name: "a", host: "h", port: "{long}")])"#),
        format!(r#"(keyring: 5{long}, nodes: [(name: "a", host: "h")])"#),
        format!(r#"(nodes: [{long}])"#),
        format!(r#"(nodes: [(name: "a", host: "h")], {long})"#),
    ];
    let mut messages: Vec<String> = texts.iter().map(|t| rejected(t).to_string()).collect();
    let config = mesh(&[("alpha", "10.0.0.1"), ("bad", &format!("{long}\0"))]);
    let errors = [
        config.find_self(Some(&long), "alpha").unwrap_err(),
        config.find_self(None, &long).unwrap_err(),
        config
            .find_self(None, &format!("{long}.example.com"))
            .unwrap_err(),
        config.resolve(1).unwrap_err(),
    ];
    messages.extend(errors.iter().map(|e| e.to_string()));
    for message in messages {
        assert!(
            message.len() < 500,
            "{} bytes: {}",
            message.len(),
            &message[..500]
        );
        assert!(
            !message.contains(&"v".repeat(ECHOED_CHARS + 1)),
            "{message}"
        );
    }
    // Short values are shown whole, with no ellipsis.
    let message = rejected(r#"(nodes: [(name: "a b", host: "h")])"#).to_string();
    assert!(
        message.contains(r#"node name "a b" contains a space"#),
        "{message}"
    );
    let name = "n".repeat(65);
    let message = rejected(&format!(r#"(nodes: [(name: "{name}", host: "h")])"#)).to_string();
    assert!(
        message.contains(&format!(r#"node name "{}…" is 65 bytes long"#, &name[..64])),
        "{message}"
    );
}

// ---- 10. Which node am I ------------------------------------------------------------------

#[test]
fn find_self_by_explicit_name_ignores_case_and_hostname() {
    let config = mesh(&[("alpha", "10.0.0.1"), ("Beta", "10.0.0.2")]);
    assert_eq!(config.find_self(Some("beta"), "alpha").unwrap(), 1);
    assert_eq!(config.find_self(Some("ALPHA"), "whatever").unwrap(), 0);
}

#[test]
fn find_self_by_full_hostname() {
    let config = mesh(&[("alpha", "10.0.0.1"), ("beta.example.com", "10.0.0.2")]);
    assert_eq!(config.find_self(None, "beta.example.com").unwrap(), 1);
    assert_eq!(config.find_self(None, "Beta.Example.COM").unwrap(), 1);
}

#[test]
fn find_self_by_first_label_of_the_hostname() {
    let config = mesh(&[("alpha", "10.0.0.1"), ("beta", "10.0.0.2")]);
    assert_eq!(config.find_self(None, "beta.example.com").unwrap(), 1);
    assert_eq!(config.find_self(None, "ALPHA.example.com.").unwrap(), 0);
    assert_eq!(config.find_self(None, "Alpha").unwrap(), 0);
}

#[test]
fn find_self_without_a_match_lists_the_names_and_suggests_name() {
    let names: Vec<String> = (1..=12).map(|i| format!("n{i:02}")).collect();
    let nodes: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "10.0.0.1")).collect();
    let config = mesh(&nodes);

    let error = config.find_self(None, "gamma.example.com").unwrap_err();
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::SelfNotFound { name: None, .. }
    ));
    assert_eq!(error.position(), None);
    let message = error.to_string();
    for words in [
        "hostname \"gamma.example.com\"",
        "\"gamma\"",
        "n01, n02, n03, n04, n05, n06, n07, n08, n09, n10 and 2 more",
        "pass --name NAME",
    ] {
        assert!(
            message.contains(words),
            "{message:?} does not say {words:?}"
        );
    }
    assert!(!message.contains("n11"), "{message}");
    // The CLI can name the file.
    let message = error.with_file("peers.ron").to_string();
    assert!(
        message.starts_with("peers.ron: no node matches"),
        "{message}"
    );

    let error = config.find_self(Some("zeta"), "n01").unwrap_err();
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::SelfNotFound { name: Some(_), .. }
    ));
    let message = error.to_string();
    assert!(message.contains("no node is named \"zeta\""), "{message}");
    assert!(message.contains("--name NAME"), "{message}");
}

#[test]
fn a_hostname_matching_two_nodes_is_ambiguous() {
    let config = mesh(&[("alpha.example.com", "10.0.0.1"), ("alpha", "10.0.0.2")]);
    let error = config.find_self(None, "alpha.example.com").unwrap_err();
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::AmbiguousHostname { nodes, .. } if nodes.len() == 2
    ));
    let message = error.to_string();
    assert!(
        message.contains("matches several nodes: alpha.example.com, alpha"),
        "{message}"
    );
    assert!(message.contains("--name NAME"), "{message}");
    // An explicit name settles it.
    assert_eq!(
        config
            .find_self(Some("alpha"), "alpha.example.com")
            .unwrap(),
        1
    );
}

// ---- 11. Resolving ------------------------------------------------------------------------

#[test]
fn resolve_ip_literals_directly() {
    let config = parse(
        r#"(
    nodes: [
        (name: "alpha", host: "10.0.0.1"),
        (name: "gamma", host: "::1", port: 1315),
        (name: "delta", host: "[fe80::1]", port: 1316),
    ],
)"#,
    )
    .unwrap();
    let expected: [SocketAddr; 3] = [
        "10.0.0.1:1313".parse().unwrap(),
        "[::1]:1315".parse().unwrap(),
        "[fe80::1]:1316".parse().unwrap(),
    ];
    for (i, addr) in expected.iter().enumerate() {
        assert_eq!(config.resolve(i).unwrap(), *addr);
    }
}

#[test]
fn resolve_localhost_prefers_ipv4() {
    let config = mesh(&[("alpha", "localhost")]);
    let addr = config.resolve(0).unwrap();
    assert_eq!(addr, SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)));
}

#[test]
fn a_resolve_failure_names_the_node_and_host() {
    // A NUL byte fails before any lookup is made.
    let config = mesh(&[("alpha", "bad\0host")]);
    let error = config.resolve(0).unwrap_err();
    assert!(matches!(error.kind(), ConfigErrorKind::Resolve { .. }));
    assert_eq!(error.position(), None);
    let message = error.to_string();
    assert!(
        message.contains("cannot resolve host \"bad\\0host\" (port 1313) of node \"alpha\""),
        "{message}"
    );

    let error = config.resolve(5).unwrap_err();
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::NoSuchIndex { index: 5, len: 1 }
    ));
}

// ---- Robustness ---------------------------------------------------------------------------

proptest! {
    /// Whatever the text, parsing returns (never panics), and a position stays in the text.
    #[test]
    fn parse_never_panics_on_edited_files(
        edits in proptest::collection::vec(
            (any::<prop::sample::Index>(), 0usize..4, "[()\\[\\]{},:\"'/*#r a-z0-9\\n.-]{0,3}"),
            1..6,
        )
    ) {
        let mut text: Vec<char> =
            std::fs::read_to_string(fixture("peers.ron")).unwrap().chars().collect();
        for (at, remove, insert) in edits {
            let at = at.index(text.len() + 1);
            let end = (at + remove).min(text.len());
            text.splice(at..end, insert.chars());
        }
        let text: String = text.into_iter().collect();
        if let Err(error) = parse(&text) {
            let lines = text.split('\n').count();
            if let Some((line, col)) = error.position() {
                prop_assert!(line >= 1 && line <= lines, "{error}");
                prop_assert!(col >= 1, "{error}");
            }
            prop_assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn parse_never_panics_on_any_text(text in "\\PC{0,200}") {
        let _ = parse(&text);
    }
}

#[test]
fn a_resolve_interval_below_the_minimum_and_a_bad_http_address_are_refused_with_their_place() {
    let short = Config::parse(
        "(resolve_interval_ms: 5, nodes: [(name: \"a\", host: \"127.0.0.1\")])",
        "peers.ron",
    )
    .unwrap_err();
    assert_eq!(
        short.to_string(),
        "peers.ron:1:23: resolve_interval_ms 5 is too short: at least 100 ms"
    );
    let http = Config::parse(
        "(http_listen: \"localhost\", nodes: [(name: \"a\", host: \"127.0.0.1\")])",
        "peers.ron",
    )
    .unwrap_err();
    assert!(
        http.to_string()
            .starts_with("peers.ron:1:15: http_listen \"localhost\" is not an address and port"),
        "{http}"
    );
}

#[test]
fn probe_mode_and_fanout_are_read_and_checked() {
    let config = parse(
        r#"(
    probe_mode: "sampled",
    probe_fanout: 24,
    nodes: [(name: "alpha", host: "10.0.0.1")],
)"#,
    )
    .unwrap();
    assert_eq!(config.probe_mode, peermesh::core::ProbeMode::Sampled);
    assert_eq!(config.probe_fanout, 24);
    let defaults = parse(r#"(nodes: [(name: "alpha", host: "10.0.0.1")])"#).unwrap();
    assert_eq!(defaults.probe_mode, peermesh::core::ProbeMode::Auto);
    assert_eq!(defaults.probe_fanout, peermesh::core::DEFAULT_PROBE_FANOUT);

    let error = rejected(
        r#"(
    probe_mode: "swim",
    nodes: [(name: "alpha", host: "10.0.0.1")],
)"#,
    );
    assert_points(
        &error,
        2,
        17,
        &["probe_mode \"swim\"", "\"auto\"", "\"sampled\""],
    );
    let error = rejected(
        r#"(
    probe_fanout: 1,
    nodes: [(name: "alpha", host: "10.0.0.1")],
)"#,
    );
    assert_points(
        &error,
        2,
        19,
        &["probe_fanout 1 is out of range", "2 to 256"],
    );
}

#[test]
fn a_sampled_mesh_may_list_up_to_ten_thousand_nodes_a_full_one_1024() {
    use peermesh::config::{MAX_FULL_NODES, MAX_NODES};
    let text = |mode: &str, count: usize| {
        let nodes: Vec<String> = (0..count)
            .map(|i| {
                format!(
                    "(name: \"n{i}\", host: \"10.{}.{}.{}\")",
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255
                )
            })
            .collect();
        format!(
            "(\n    probe_mode: \"{mode}\",\n    nodes: [{}],\n)",
            nodes.join(", ")
        )
    };
    assert!(parse(&text("sampled", MAX_NODES)).is_ok());
    assert!(parse(&text("auto", MAX_FULL_NODES + 1)).is_ok());
    let error = rejected(&text("auto", MAX_NODES + 1));
    assert_points(&error, 3, 5, &["10001 nodes", "at most 10000"]);
    let error = rejected(&text("full", MAX_FULL_NODES + 1));
    assert_points(
        &error,
        3,
        5,
        &["1025 nodes", "probe_mode \"full\"", "at most 1024"],
    );
}
