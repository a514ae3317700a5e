//! Builds a [`ClusterState`] from `kubectl get ... -o json|yaml` output: a v1
//! List, a single object, multi-document YAML, or a directory of such files.
//!
//! A directory may carry `capture.yaml` (`capturedAt: <RFC3339>`): the moment
//! the dump was taken, which becomes the snapshot's `now` so that ages are
//! measured as they were at capture time rather than today.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::capture::CaptureInfo;
use super::resources::*;
use super::ClusterState;
use crate::for_each_kind;

pub const CAPTURE_FILE: &str = "capture.yaml";

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: not valid {format}: {message}")]
    Syntax { path: PathBuf, format: &'static str, message: String },
    #[error("{path}: item {index} ({kind} {name}): {message}")]
    Object { path: PathBuf, index: usize, kind: String, name: String, message: String },
    #[error("{path}: {message}")]
    Capture { path: PathBuf, message: String },
    #[error("{path}: no YAML or JSON files found")]
    Empty { path: PathBuf },
}

/// What a load found besides the objects themselves.
#[derive(Debug, Default)]
pub struct DumpSummary {
    pub files: usize,
    pub objects: usize,
    /// Objects of kinds lifeboat does not read, by `apiVersion/kind`.
    pub ignored: BTreeMap<String, usize>,
}

pub fn load(path: &Path) -> Result<(ClusterState, DumpSummary), DumpError> {
    let files = dump_files(path)?;
    let mut state = ClusterState::default();
    let mut summary = DumpSummary::default();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|source| DumpError::Read { path: file.clone(), source })?;
        add_text(&mut state, &mut summary, file, &text)?;
    }
    let capture = read_capture(path)?;
    let now = capture.as_ref().map_or_else(Utc::now, |c| c.captured_at);
    let absent = capture.map(|c| c.absent_kinds).unwrap_or_default();
    finish(&mut state, now, &absent);
    Ok((state, summary))
}

/// The same as [`load`] for text already in memory (`origin` names it in errors).
pub fn parse_str(origin: &str, text: &str, now: DateTime<Utc>) -> Result<ClusterState, DumpError> {
    let mut state = ClusterState::default();
    add_text(&mut state, &mut DumpSummary::default(), Path::new(origin), text)?;
    finish(&mut state, now, &[]);
    Ok(state)
}

fn add_text(state: &mut ClusterState, summary: &mut DumpSummary, file: &Path, text: &str) -> Result<(), DumpError> {
    summary.files += 1;
    if file.extension().and_then(|e| e.to_str()) == Some("json") {
        // JSON is decoded item by item straight into the lean types, without
        // building a tree of the whole (often large) List first.
        let items = raw_items(file, text)?;
        for (index, item) in items.into_iter().enumerate() {
            add_object(state, summary, file, index, item)?;
        }
        return Ok(());
    }
    let mut index = 0;
    for doc in parse_documents(file, text)? {
        for item in list_items(doc) {
            add_object(state, summary, file, index, item)?;
            index += 1;
        }
    }
    Ok(())
}

fn raw_items<'a>(file: &Path, text: &'a str) -> Result<Vec<&'a RawValue>, DumpError> {
    #[derive(Deserialize)]
    struct Document<'a> {
        #[serde(default)]
        kind: Option<String>,
        #[serde(default, borrow)]
        items: Option<Vec<&'a RawValue>>,
    }
    let syntax = |e: serde_json::Error| DumpError::Syntax { path: file.into(), format: "JSON", message: e.to_string() };
    let document: Document = serde_json::from_str(text).map_err(syntax)?;
    if document.kind.as_deref().is_some_and(|k| k.ends_with("List")) {
        return Ok(document.items.unwrap_or_default());
    }
    Ok(vec![serde_json::from_str(text).map_err(syntax)?])
}

/// One object as it came from a file: a parsed YAML tree or raw JSON text.
trait Item {
    fn type_meta(&self) -> TypeMeta;
    fn decode<T: serde::de::DeserializeOwned>(self) -> Result<T, String>;
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: NameOnly,
}

#[derive(Deserialize, Default)]
struct NameOnly {
    #[serde(default)]
    name: Option<String>,
}

impl Item for Value {
    fn type_meta(&self) -> TypeMeta {
        TypeMeta {
            api_version: self.get("apiVersion").and_then(Value::as_str).unwrap_or("").to_string(),
            kind: self.get("kind").and_then(Value::as_str).unwrap_or("").to_string(),
            metadata: NameOnly { name: self.pointer("/metadata/name").and_then(Value::as_str).map(String::from) },
        }
    }
    fn decode<T: serde::de::DeserializeOwned>(self) -> Result<T, String> {
        serde_json::from_value(self).map_err(|e| e.to_string())
    }
}

impl Item for &RawValue {
    fn type_meta(&self) -> TypeMeta {
        serde_json::from_str(self.get()).unwrap_or_default()
    }
    fn decode<T: serde::de::DeserializeOwned>(self) -> Result<T, String> {
        serde_json::from_str(self.get()).map_err(|e| e.to_string())
    }
}

fn finish(state: &mut ClusterState, now: DateTime<Utc>, absent_kinds: &[String]) {
    // A dump holds whatever it holds: every kind counts as listed, but for
    // those `lifeboat dump` found unserved (their operator is not installed).
    for info in ClusterState::all_kinds() {
        let label = info.label();
        let listed = !absent_kinds.contains(&label);
        state.listed_kinds.insert(label, listed);
    }
    state.now = now;
    state.finish();
}

fn dump_files(path: &Path) -> Result<Vec<PathBuf>, DumpError> {
    let meta = std::fs::metadata(path).map_err(|source| DumpError::Read { path: path.into(), source })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|source| DumpError::Read { path: path.into(), source })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != CAPTURE_FILE))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(DumpError::Empty { path: path.into() });
    }
    Ok(files)
}

fn parse_documents(path: &Path, text: &str) -> Result<Vec<Value>, DumpError> {
    if path.extension().and_then(|e| e.to_str()) == Some("json") {
        let value = serde_json::from_str(text).map_err(|e| DumpError::Syntax { path: path.into(), format: "JSON", message: e.to_string() })?;
        return Ok(vec![value]);
    }
    let mut docs = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(document).map_err(|e| DumpError::Syntax { path: path.into(), format: "YAML", message: e.to_string() })?;
        if value.is_null() {
            continue;
        }
        let json = serde_json::to_value(value).map_err(|e| DumpError::Syntax { path: path.into(), format: "YAML", message: e.to_string() })?;
        docs.push(json);
    }
    Ok(docs)
}

/// A `*List` document yields its items; anything else is one object.
fn list_items(doc: Value) -> Vec<Value> {
    let is_list = doc.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List"));
    match doc {
        Value::Object(mut map) if is_list => match map.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        other => vec![other],
    }
}

fn add_object(state: &mut ClusterState, summary: &mut DumpSummary, path: &Path, index: usize, item: impl Item) -> Result<(), DumpError> {
    let TypeMeta { api_version, kind, metadata } = item.type_meta();
    let name = metadata.name.unwrap_or_else(|| "<unnamed>".into());
    let fail = |message: String| DumpError::Object { path: path.into(), index, kind: kind.clone(), name: name.clone(), message };
    if api_version.is_empty() || kind.is_empty() {
        return Err(fail("missing apiVersion or kind".into()));
    }

    macro_rules! dispatch {
        ($($field:ident: $ty:ident),* $(,)?) => {
            $(
                let info = <$ty as LeanObject>::INFO;
                if info.kind == kind && info.api_version() == api_version {
                    let wire: <$ty as LeanObject>::Wire = item.decode().map_err(fail)?;
                    state.$field.push(Arc::new(<$ty>::from_wire(wire)));
                    summary.objects += 1;
                    return Ok(());
                }
            )*
        };
    }
    for_each_kind!(dispatch);

    *summary.ignored.entry(format!("{api_version}/{kind}")).or_default() += 1;
    Ok(())
}

/// Reads `capture.yaml` beside the dump files, if there is one.
fn read_capture(path: &Path) -> Result<Option<CaptureInfo>, DumpError> {
    let dir = if path.is_dir() { path } else { path.parent().unwrap_or(Path::new(".")) };
    let file = dir.join(CAPTURE_FILE);
    if !file.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&file).map_err(|source| DumpError::Read { path: file.clone(), source })?;
    let capture: CaptureInfo = serde_yaml::from_str(&text).map_err(|e| DumpError::Capture { path: file.clone(), message: e.to_string() })?;
    let known: Vec<String> = ClusterState::all_kinds().iter().map(|k| k.label()).collect();
    if let Some(unknown) = capture.absent_kinds.iter().find(|k| !known.contains(k)) {
        return Err(DumpError::Capture { path: file, message: format!("absentKinds: unknown kind {unknown:?} (known: {})", known.join(", ")) });
    }
    Ok(Some(capture))
}
