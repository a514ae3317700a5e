//! The crate's layers point only down: a module may use its own layer and
//! the ones below it, never one above. Read from the source files (every
//! `crate::...` path outside `#[cfg(test)]` code), so it needs no cluster.
//! `LIFEBOAT_LAYERS_SRC=<dir>` checks another tree's `src/`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Lowest first. A module belongs to the row naming its longest prefix.
const LAYERS: &[(&str, &[&str])] = &[
    // Reading and writing the cluster, the config's data types, the Lease.
    ("cluster", &["cluster", "config", "leader", "schedule"]),
    // What the state means, and the snapshot hub that holds it.
    ("inspect", &["inspect", "triage", "snapshot", "probes"]),
    // Plans and the report types of their runs: data, no I/O.
    ("plan", &["plan"]),
    // Executing a plan's steps against the cluster.
    ("act", &["act"]),
    // The record of runs.
    ("journal", &["journal"]),
    // What drives and exposes journaled runs: the remediator loop and its
    // statistics, the Alertmanager intake, Discord, the HTTP API and /metrics.
    ("intake/discord/api", &["remediator", "alerts", "discord", "api", "server", "metrics"]),
    // Wiring: the serve runtime, the command line, and loading the config
    // (which asks every component to check its own section).
    ("runtime/cli", &["runtime", "cli"]),
];

/// Upward imports not yet removed, each with the reason. Any other upward
/// import fails the test.
/// Upward imports tolerated, each with why (none today): a new one needs a
/// row here and a reason.
const ALLOWED: &[(&str, &str, &str)] = &[];

fn layer_of(path: &str) -> Option<(usize, &'static str)> {
    let mut best: Option<(usize, &'static str)> = None;
    for (index, (_, prefixes)) in LAYERS.iter().enumerate() {
        for prefix in *prefixes {
            let matches = path == *prefix || path.starts_with(&format!("{prefix}::"));
            if matches && best.is_none_or(|(_, b)| prefix.len() > b.len()) {
                best = Some((index, prefix));
            }
        }
    }
    best
}

fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code outside unit tests, without comments.
fn code(text: &str) -> String {
    let tests = text.match_indices("#[cfg(test)]").find(|(at, tag)| text[at + tag.len()..].trim_start().starts_with("mod "));
    let text = tests.map_or(text, |(at, _)| &text[..at]);
    text.lines().map(|line| line.find("//").map_or(line, |at| &line[..at])).collect::<Vec<_>>().join("\n")
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Every module path named after `crate::`, including each member of
/// `crate::{a, b::c}` groups (nested groups are read as their prefix).
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let preceded = rest[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            for member in top_level_members(group) {
                let member: String = member.trim().chars().take_while(|c| is_path_char(*c)).collect();
                if !member.is_empty() {
                    paths.insert(member.trim_end_matches(':').to_string());
                }
            }
        } else {
            let path: String = rest.chars().take_while(|c| is_path_char(*c)).collect();
            paths.insert(path.trim_end_matches(':').to_string());
        }
    }
    paths
}

/// The comma-separated members of a `{...}` group (`group` starts after its
/// `{`); a nested group stays inside its member.
fn top_level_members(group: &str) -> Vec<&str> {
    let (mut depth, mut start, mut members) = (0usize, 0, vec![]);
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                members.push(&group[start..at]);
                return members;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                members.push(&group[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    members.push(&group[start..]);
    members
}

/// (module, path it uses, the module's layer, the path's layer) for each upward use.
fn upward_imports(src: &Path) -> Vec<(String, String, &'static str, &'static str)> {
    let mut files = vec![];
    rust_files(src, &mut files);
    files.sort();
    let mut found = vec![];
    for file in files {
        let module = module_of(src, &file);
        let Some((from, _)) = layer_of(&module) else { continue };
        let text = std::fs::read_to_string(&file).unwrap();
        for path in crate_paths(&code(&text)) {
            if let Some((to, _)) = layer_of(&path) {
                if to > from {
                    found.push((module.clone(), path, LAYERS[from].0, LAYERS[to].0));
                }
            }
        }
    }
    found
}

fn src_dir() -> PathBuf {
    std::env::var_os("LIFEBOAT_LAYERS_SRC").map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), PathBuf::from)
}

#[test]
fn every_top_level_module_has_a_layer() {
    let mut modules = vec![];
    for entry in std::fs::read_dir(src_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() || path.extension().is_some_and(|e| e == "rs") {
            modules.push(name);
        }
    }
    let unplaced: Vec<&String> = modules.iter().filter(|m| !["lib", "main"].contains(&m.as_str()) && layer_of(m).is_none()).collect();
    assert!(unplaced.is_empty(), "give these modules a row in LAYERS (tests/layers.rs): {unplaced:?}");
}

#[test]
fn no_import_points_up() {
    let found = upward_imports(&src_dir());
    let new: Vec<String> = found
        .iter()
        .filter(|(module, path, _, _)| !ALLOWED.iter().any(|(m, p, _)| m == module && (path == p || path.starts_with(&format!("{p}::")))))
        .map(|(module, path, from, to)| format!("{module} ({from}) uses crate::{path} ({to})"))
        .collect();
    assert!(new.is_empty(), "imports that point up a layer:\n  {}", new.join("\n  "));
}

#[test]
fn every_allowed_exception_is_still_needed() {
    let found = upward_imports(&src_dir());
    let stale: Vec<&(&str, &str, &str)> =
        ALLOWED.iter().filter(|(m, p, _)| !found.iter().any(|(module, path, _, _)| module == m && (path == p || path.starts_with(&format!("{p}::"))))).collect();
    assert!(stale.is_empty(), "remove these from ALLOWED, they no longer occur: {stale:?}");
}

#[test]
fn the_reader_finds_uses_in_groups_and_paths() {
    let code =
        code("use crate::{plan::Plan, act::runner::{a, b}};\nlet x = crate::journal::Journal::file(d); // crate::api\nfn f() {}\n#[cfg(test)]\nmod tests { use crate::cli; }");
    let paths: Vec<String> = crate_paths(&code).into_iter().collect();
    assert_eq!(paths, ["act::runner", "journal::Journal::file", "plan::Plan"]);
    assert_eq!(layer_of("remediator::stats::refresh").map(|l| l.1), Some("remediator"));
    assert_eq!(layer_of("act::runner").map(|l| l.1), Some("act"));
    assert_eq!(layer_of("snapshotx"), None);
}
