//! Background probes that need I/O beyond the Kubernetes watch: the Garage
//! metadata backup directory and the Garage admin API. They run on their own
//! interval and publish results for the next snapshot; a scrape never waits
//! on them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::GarageConfig;
use crate::inspect::garage::GarageProbe;
use crate::snapshot::Hub;

/// Newest `snapshots/<RFC3339>/` directory holding `data.mdb` (the layout of Garage's
/// own metadata snapshots; there is no `db.lmdb` file).
pub fn newest_snapshot(backup_dir: &Path) -> Result<DateTime<Utc>, String> {
    let dir = backup_dir.join("snapshots");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("data.mdb").is_file())
        .filter_map(|e| DateTime::parse_from_rfc3339(&e.file_name().to_string_lossy()).ok())
        .map(|t| t.with_timezone(&Utc))
        .max()
        .ok_or_else(|| format!("{}: no snapshots/<timestamp>/data.mdb found", dir.display()))
}

/// `GET /health` (no auth), then with a token `GET /v2/GetClusterHealth`.
pub async fn admin_health(client: &reqwest::Client, config: &GarageConfig) -> (Option<bool>, Option<String>) {
    let Some(base) = config.admin_url.as_deref() else { return (None, None) };
    let base = base.trim_end_matches('/');
    let token = match config.admin_token_file.as_deref().map(std::fs::read_to_string) {
        Some(Ok(t)) => Some(t.trim().to_string()),
        Some(Err(e)) => return (Some(false), Some(format!("cannot read admin token file: {e}"))),
        None => None,
    };
    let Some(token) = token else {
        return match client.get(format!("{base}/health")).send().await {
            Ok(r) if r.status().is_success() => (Some(true), Some("healthy".into())),
            Ok(r) => (Some(false), Some(format!("/health answered {}", r.status()))),
            Err(e) => (Some(false), Some(format!("/health unreachable: {e}"))),
        };
    };
    #[derive(serde::Deserialize)]
    struct Health {
        status: String,
    }
    let response = client.get(format!("{base}/v2/GetClusterHealth")).bearer_auth(token).send().await;
    match response {
        Ok(r) if r.status().is_success() => match r.json::<Health>().await {
            Ok(h) => (Some(h.status == "healthy"), Some(h.status)),
            Err(e) => (Some(false), Some(format!("GetClusterHealth: unexpected body: {e}"))),
        },
        Ok(r) => (Some(false), Some(format!("GetClusterHealth answered {}", r.status()))),
        Err(e) => (Some(false), Some(format!("GetClusterHealth unreachable: {e}"))),
    }
}

/// `GET /v2/ListBuckets` (needs the token): how many buckets Garage knows.
pub async fn bucket_count(client: &reqwest::Client, config: &GarageConfig) -> Option<usize> {
    let base = config.admin_url.as_deref()?.trim_end_matches('/');
    let token = std::fs::read_to_string(config.admin_token_file.as_deref()?).ok()?;
    let response = client.get(format!("{base}/v2/ListBuckets")).bearer_auth(token.trim()).send().await.ok()?;
    let buckets: serde_json::Value = response.error_for_status().ok()?.json().await.ok()?;
    buckets.as_array().map(Vec::len)
}

pub async fn run_garage_probe(hub: Arc<Hub>, refresh_findings: bool) {
    let config = hub.config.garage.clone();
    if config.backup_dir.is_none() && config.admin_url.is_none() {
        return;
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("HTTP client");
    let mut last_buckets = None;
    loop {
        let mut probe = GarageProbe::default();
        if let Some(dir) = &config.backup_dir {
            match newest_snapshot(dir) {
                Ok(t) => probe.newest_snapshot = Some(t),
                Err(e) => {
                    tracing::warn!(error = %e, "garage metadata backup directory probe failed");
                    probe.snapshot_error = Some(e);
                }
            }
        }
        (probe.admin_healthy, probe.admin_status) = admin_health(&client, &config).await;
        // A Garage that lost its metadata lists none: keep the last real count.
        if let Some(n) = bucket_count(&client, &config).await.filter(|n| *n > 0) {
            last_buckets = Some(n);
        }
        probe.bucket_count = last_buckets;
        *hub.garage_probe.write().expect("probe lock poisoned") = probe;
        if refresh_findings {
            hub.refresh_findings();
        }
        tokio::time::sleep(config.poll_interval.0).await;
    }
}
