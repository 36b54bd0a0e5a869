//! The layering of `src/`: the sans-io core and the wire format name nothing of the layers
//! above them (config, I/O, reports, CLI), so they stay pure and usable alone.

use std::fs;
use std::path::Path;

const LOWER: [&str; 2] = ["core", "wire"];
const UPPER: [&str; 4] = ["config", "io", "report", "cli"];

/// Paths through which Rust code can name a module of this crate.
fn forbidden_paths() -> Vec<String> {
    let mut paths = Vec::new();
    for upper in UPPER {
        for prefix in ["crate::", "peermesh::", "super::", "super::super::"] {
            paths.push(format!("{prefix}{upper}"));
        }
        // `use crate::{config, ...}` and `use super::{io::...}`.
        paths.push(format!("{{{upper}"));
        paths.push(format!(", {upper}::"));
        paths.push(format!(", {upper}}}"));
    }
    paths
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable src/").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Lines of `text` that name an upper layer, with their numbers (comments included: a doc
/// link is a dependency too).
fn offending_lines(text: &str) -> Vec<(usize, String)> {
    let forbidden = forbidden_paths();
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let word_match = |p: &String| {
                line.match_indices(p.as_str()).any(|(at, _)| {
                    let after = line[at + p.len()..].chars().next();
                    after.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) || p.ends_with("::")
                })
            };
            forbidden.iter().any(word_match)
        })
        .map(|(n, line)| (n + 1, line.trim().to_owned()))
        .collect()
}

#[test]
fn the_core_and_the_wire_format_import_nothing_from_the_layers_above() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    let mut checked = 0;
    for layer in LOWER {
        let mut files = Vec::new();
        rust_files(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "src/{layer}/ has no files");
        for file in files {
            let text = fs::read_to_string(&file).expect("readable source");
            checked += 1;
            for (line, code) in offending_lines(&text) {
                problems.push(format!("{}:{line}: {code}", file.display()));
            }
        }
    }
    assert!(checked >= 10, "only {checked} files checked");
    assert!(
        problems.is_empty(),
        "layer rule broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_check_catches_each_way_of_naming_an_upper_layer() {
    for line in [
        "use crate::config::Config;",
        "use crate::io::driver::Node;",
        "    let r = crate::report::status::StatusReport::new(m, now, None);",
        "use super::super::cli;",
        "use crate::{config, wire};",
        "use crate::{wire, config};",
        "/// See [`crate::io::control`].",
    ] {
        assert_eq!(offending_lines(line).len(), 1, "not caught: {line}");
    }
    for line in [
        "use std::io;",
        "use std::io::{self, Write};",
        "let configured = 1; // the config layer builds Settings",
        "use crate::wire::identity::NodeId;",
        "use crate::core::iox;",
    ] {
        assert!(offending_lines(line).is_empty(), "false alarm: {line}");
    }
}
