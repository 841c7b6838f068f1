//! What may import what inside `ntt-agent` (docs/architecture.md): dependencies point down,
//! from the users (cli, agent) through the pipeline to the stages and the catalog. Read from the
//! source: every `crate::ROOM` outside a comment is an import of that room.

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "test code: std::fs with unwrap is clear enough"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The rooms: a top-level module (its file and its directory).
const ROOMS: &[&str] = &[
    "agent",
    "catalog",
    "cli",
    "copy",
    "damage",
    "enumerate",
    "export",
    "imaging",
    "pipeline",
    "store",
    "volume",
];
const STAGES: &[&str] = &[
    "imaging",
    "volume",
    "enumerate",
    "damage",
    "copy",
    "store",
    "export",
];

fn sources(room: &str) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.join(format!("{room}.rs"))];
    let mut dirs = vec![src.join(room)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.retain(|f| f.exists());
    assert!(!files.is_empty(), "room {room} has no source");
    files
}

/// The rooms `room` imports (outside comments), with where.
fn imports(room: &str) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for file in sources(room) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            assert!(
                !code.contains("crate::{"),
                "{}:{}: name each room's path (`crate::room::...`), so that this check sees it",
                file.display(),
                number + 1
            );
            for (at, _) in code.match_indices("crate::") {
                let rest = &code[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name != room && ROOMS.contains(&name.as_str()) {
                    found.insert((name, format!("{}:{}", file.display(), number + 1)));
                }
            }
        }
    }
    found
}

fn refused(room: &str, forbidden: &[&str]) -> Vec<(String, String)> {
    imports(room)
        .into_iter()
        .filter(|(name, _)| forbidden.contains(&name.as_str()))
        .collect()
}

#[test]
fn dependencies_point_down_from_the_users_to_the_catalog() {
    let mut wrong = Vec::new();
    let users = ["pipeline", "cli", "agent"];
    wrong.extend(refused("catalog", &[STAGES, &users].concat()));
    for stage in STAGES {
        wrong.extend(refused(stage, &users));
    }
    wrong.extend(refused("pipeline", &["cli", "agent"]));
    wrong.extend(refused("agent", &["cli"]));
    assert!(
        wrong.is_empty(),
        "imports against the rooms' order: {wrong:#?}"
    );
}

/// The check sees imports: the users do import the pipeline (or nothing here would be read).
#[test]
fn the_users_import_the_pipeline() {
    for user in ["cli", "agent"] {
        assert!(
            imports(user).iter().any(|(name, _)| name == "pipeline"),
            "{user} imports the pipeline"
        );
    }
    assert!(
        imports("pipeline")
            .iter()
            .any(|(name, _)| name == "catalog")
    );
}
