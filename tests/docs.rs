//! The docs promise tests: docs/SECURITY.md names, for each row of its threat tables, the
//! tests that show it. Every name it gives must be a test that exists, so the table cannot
//! drift from the suite.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/FILE.rs::name` and `layer::module::tests::name` (a unit test in
/// `src/layer/module.rs`, or `src/layer/mod.rs` for `layer::tests::name`) references in
/// `text`, as (file, test name).
fn references(text: &str) -> Vec<(String, String)> {
    text.split('`')
        .filter_map(|piece| {
            if let Some((module, name)) = piece.split_once("::tests::") {
                let file = format!("src/{}.rs", module.replace("::", "/"));
                let file = if root().join(&file).exists() {
                    file
                } else {
                    format!("src/{}/mod.rs", module.replace("::", "/"))
                };
                return Some((file, name.to_owned()));
            }
            let (file, name) = piece.split_once("::")?;
            (file.starts_with("tests/") && file.ends_with(".rs"))
                .then(|| (file.to_owned(), name.to_owned()))
        })
        .collect()
}

#[test]
fn every_test_the_security_tables_name_exists() {
    let text = std::fs::read_to_string(root().join("docs/SECURITY.md")).expect("SECURITY.md");
    let refs = references(&text);
    assert!(
        refs.len() >= 30,
        "only {} test references found",
        refs.len()
    );
    let mut missing = Vec::new();
    for (file, name) in &refs {
        let source = std::fs::read_to_string(root().join(file)).unwrap_or_default();
        if !source.contains(&format!("fn {name}(")) {
            missing.push(format!("{file}::{name}"));
        }
    }
    assert!(
        missing.is_empty(),
        "SECURITY.md names tests that do not exist: {missing:?}"
    );
}
