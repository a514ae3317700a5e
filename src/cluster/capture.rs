//! `lifeboat dump`: captures from a live cluster exactly the kinds a snapshot
//! reads, as files that `--from-dump` loads back (one v1 List per kind plus
//! `capture.yaml` with the capture time and the kinds whose API is absent).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::Api;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::resources::KindInfo;
use super::ClusterState;

/// The contents of `capture.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaptureInfo {
    pub captured_at: DateTime<Utc>,
    /// Kinds whose API the cluster does not serve (operator not installed),
    /// by their metric label (e.g. `mariadb.MariaDB`): not "zero objects".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent_kinds: Vec<String>,
}

/// What a capture wrote.
#[derive(Debug, Default)]
pub struct CaptureSummary {
    /// (kind label, objects written, file)
    pub kinds: Vec<(String, usize, PathBuf)>,
    pub absent: Vec<String>,
}

const PAGE: u32 = 500;

/// Lists every kind the snapshot reads and writes them under `dir`.
pub async fn capture(client: &kube::Client, dir: &Path) -> anyhow::Result<CaptureSummary> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let captured_at = Utc::now();
    let mut summary = CaptureSummary::default();
    for info in ClusterState::all_kinds() {
        let items = match list_all(client, &info).await {
            Ok(items) => items,
            Err(kube::Error::Api(response)) if response.code == 404 && info.optional => {
                summary.absent.push(info.label());
                continue;
            }
            Err(error) => anyhow::bail!("listing {}: {error}", info.label()),
        };
        let file = dir.join(format!("{}.json", info.label()));
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
        std::fs::write(&file, serde_json::to_vec_pretty(&list)?).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        summary.kinds.push((info.label(), items.len(), file));
    }
    let info = CaptureInfo { captured_at, absent_kinds: summary.absent.clone() };
    let file = dir.join(super::dump::CAPTURE_FILE);
    std::fs::write(&file, serde_yaml::to_string(&info)?).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    Ok(summary)
}

/// Every object of one kind, page by page, each with its apiVersion and kind
/// (list items carry neither) and without managedFields (noise for triage).
async fn list_all(client: &kube::Client, info: &KindInfo) -> Result<Vec<Value>, kube::Error> {
    let resource = ApiResource { group: info.group.into(), version: info.version.into(), api_version: info.api_version(), kind: info.kind.into(), plural: info.plural.into() };
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let mut items = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = api.list(&params).await?;
        for mut object in page.items {
            object.metadata.managed_fields = None;
            let mut value = serde_json::to_value(&object).expect("a listed object serializes");
            value["apiVersion"] = Value::String(info.api_version());
            value["kind"] = Value::String(info.kind.into());
            items.push(value);
        }
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(items),
        }
    }
}
