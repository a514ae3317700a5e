//! The CustomResourceDefinitions the test apiserver gets, each from the best
//! source that has it (first wins, by CRD name):
//!
//! 1. `LIFEBOAT_CRDS_DIR`, else `../shared/crds` (upstream copies beside the clone);
//! 2. the operators' own Go modules at pinned versions, assembled by
//!    scripts/fetch-crds.sh into `target/upstream-crds` (`LIFEBOAT_MODULE_CRDS_DIR`);
//!    run here once if that directory is missing;
//! 3. the stand-ins in tests/crds, only for kinds no served module carries
//!    (they keep unknown fields: no pruning, no validation).
//!
//! lifeboat's own CRDs (deploy/crds) are always added.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use serde_json::Value;

pub struct Crd {
    pub name: String,
    /// The file it came from.
    pub origin: PathBuf,
    pub manifest: Value,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn stand_in_dir() -> PathBuf {
    repo().join("tests/crds")
}

fn module_crds_dir() -> PathBuf {
    std::env::var_os("LIFEBOAT_MODULE_CRDS_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("target/upstream-crds"))
}

/// Runs scripts/fetch-crds.sh when its output is missing (a plain `cargo
/// test` without scripts/test.sh); a failure (no Go, offline) leaves the
/// stand-ins in place, said loudly.
fn fetch_module_crds_once() {
    static FETCH: Once = Once::new();
    FETCH.call_once(|| {
        if module_crds_dir().join("PINS").is_file() {
            return;
        }
        let status = Command::new(repo().join("scripts/fetch-crds.sh")).status();
        if !status.as_ref().is_ok_and(|s| s.success()) {
            eprintln!("WARNING: scripts/fetch-crds.sh failed ({status:?}): kinds without ../shared/crds use the stand-ins in tests/crds");
        }
    });
}

/// The upstream sources, best first.
pub fn upstream_dirs() -> Vec<PathBuf> {
    fetch_module_crds_once();
    let preferred = std::env::var_os("LIFEBOAT_CRDS_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("../shared/crds"));
    [preferred, module_crds_dir()].into_iter().filter(|d| d.is_dir()).collect()
}

/// Every CRD the harness installs: the operators' (best source first), then lifeboat's own.
pub fn all() -> Result<Vec<Crd>, String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for dir in upstream_dirs().into_iter().chain([stand_in_dir(), repo().join("deploy/crds")]) {
        for crd in load(&dir)? {
            if seen.insert(crd.name.clone()) {
                out.push(crd);
            }
        }
    }
    Ok(out)
}

/// The names of the CRDs that come from the stand-ins.
pub fn stand_ins(crds: &[Crd]) -> Vec<&str> {
    let dir = stand_in_dir();
    crds.iter().filter(|c| c.origin.starts_with(&dir)).map(|c| c.name.as_str()).collect()
}

/// The CRDs in the `*.yaml` files of `dir`, files in name order.
pub fn load(dir: &Path) -> Result<Vec<Crd>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let manifest: Value = serde::Deserialize::deserialize(doc).map_err(|e| format!("{}: {e}", file.display()))?;
            if manifest["kind"] == "CustomResourceDefinition" {
                let name = manifest["metadata"]["name"].as_str().unwrap_or_default().to_string();
                out.push(Crd { name, origin: file.clone(), manifest });
            }
        }
    }
    Ok(out)
}
