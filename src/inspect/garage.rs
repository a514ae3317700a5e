//! The Garage metadata-backup sidecar (a `backup-sync` container)
//! and, when configured, the newest metadata snapshot and the admin API health.
//! The probes that need I/O run in the background (see `crate::probes`); this
//! module only reads their last result.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Context;
use crate::cluster::{label, name, namespace};

#[derive(Clone, Debug, Serialize)]
pub struct GaragePod {
    pub namespace: String,
    pub pod: String,
    pub node: Option<String>,
    pub sidecar_present: bool,
    pub sidecar_running: bool,
    pub sidecar_restarts: i64,
    pub sidecar_last_exit_code: Option<i32>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct GarageFinding {
    pub pods: Vec<GaragePod>,
    pub newest_snapshot: Option<DateTime<Utc>>,
    /// Set when a backup directory is configured but could not be read.
    pub snapshot_error: Option<String>,
    pub admin_healthy: Option<bool>,
    pub admin_status: Option<String>,
    /// Buckets the admin API listed the last time it listed any (kept across
    /// failed probes: what a metadata restore must bring back).
    pub bucket_count: Option<usize>,
}

/// Results of the background probes (filesystem and Garage admin API).
#[derive(Clone, Debug, Default, Serialize)]
pub struct GarageProbe {
    pub newest_snapshot: Option<DateTime<Utc>>,
    pub snapshot_error: Option<String>,
    pub admin_healthy: Option<bool>,
    pub admin_status: Option<String>,
    pub bucket_count: Option<usize>,
}

pub fn inspect(ctx: &Context, probe: &GarageProbe) -> GarageFinding {
    let config = &ctx.config.garage;
    let pods = ctx
        .state
        .pods
        .iter()
        .filter(|p| namespace(&p.metadata) == config.namespace)
        .filter(|p| config.pod_selector.iter().all(|(k, v)| label(&p.metadata, k) == Some(v.as_str())))
        .map(|pod| {
            let declared = pod.spec.containers.iter().any(|c| c.name == config.backup_container);
            let status = pod.status.container_statuses.iter().find(|c| c.name == config.backup_container);
            GaragePod {
                namespace: namespace(&pod.metadata).to_string(),
                pod: name(&pod.metadata).to_string(),
                node: pod.spec.node_name.clone(),
                sidecar_present: declared || status.is_some(),
                sidecar_running: status.is_some_and(|s| s.state.running.is_some()),
                sidecar_restarts: status.map_or(0, |s| s.restart_count),
                sidecar_last_exit_code: status.and_then(|s| s.last_state.terminated.as_ref()).and_then(|t| t.exit_code),
            }
        })
        .collect();
    GarageFinding {
        pods,
        newest_snapshot: probe.newest_snapshot,
        snapshot_error: probe.snapshot_error.clone(),
        admin_healthy: probe.admin_healthy,
        admin_status: probe.admin_status.clone(),
        bucket_count: probe.bucket_count,
    }
}
