//! mariadb-operator Galera clusters: readiness, instances on lost nodes, and a
//! leftover `forceClusterBootstrapInPod` (the operator never clears it).

use serde::Serialize;

use super::Context;
use crate::cluster::resources::*;
use crate::cluster::{name, namespace};

#[derive(Clone, Debug, Serialize)]
pub struct MariaDbFinding {
    pub namespace: String,
    pub name: String,
    pub replicas: i32,
    /// `spec.galera.enabled`: without it a member's data has no in-cluster copy.
    pub galera: bool,
    pub ready: Option<bool>,
    pub galera_ready: Option<bool>,
    /// Instance pods (`<name>-N`) whose storage is pinned to a lost node.
    pub instances_on_lost_nodes: Vec<String>,
    pub force_bootstrap_pod: Option<String>,
}

pub fn inspect(ctx: &Context) -> Vec<MariaDbFinding> {
    ctx.state
        .mariadbs
        .iter()
        .map(|mdb| {
            let ns = namespace(&mdb.metadata);
            let mdb_name = name(&mdb.metadata);
            let replicas = mdb.spec.replicas.unwrap_or(1);
            let instances_on_lost_nodes = (0..replicas)
                .map(|i| format!("{mdb_name}-{i}"))
                .filter(|pod| ctx.pvc_node(ns, &format!("storage-{pod}")).is_some_and(|n| ctx.is_lost(n)) || ctx.instance_node(ns, pod).is_some_and(|n| ctx.is_lost(&n)))
                .collect();
            let condition = |t: &str| find_condition(&mdb.status.conditions, t).map(|c| c.status == "True");
            MariaDbFinding {
                namespace: ns.to_string(),
                name: mdb_name.to_string(),
                replicas,
                galera: galera_enabled(mdb),
                ready: condition("Ready"),
                galera_ready: condition("GaleraReady"),
                instances_on_lost_nodes,
                force_bootstrap_pod: mdb.spec.galera.as_ref().and_then(|g| g.recovery.as_ref()).and_then(|r| r.force_cluster_bootstrap_in_pod.clone()).filter(|p| !p.is_empty()),
            }
        })
        .collect()
}

/// `(mariadb, instance pod)` when `pvc` is one of a MariaDB's `storage-`/`galera-` claims.
pub fn instance_of_pvc(ctx: &Context, ns: &str, pvc: &str) -> Option<(String, String)> {
    let pod = pvc.strip_prefix("storage-").or_else(|| pvc.strip_prefix("galera-"))?;
    let (mdb, index) = pod.rsplit_once('-')?;
    index.parse::<u32>().ok()?;
    ctx.state.mariadbs.iter().any(|m| namespace(&m.metadata) == ns && name(&m.metadata) == mdb).then(|| (mdb.to_string(), pod.to_string()))
}

/// mariadb-operator's Galera recovery settings, with its defaults
/// (mariadb-operator v25.10.4, api/v1alpha1/mariadb_galera_types.go
/// `GaleraRecovery.SetDefaults`), in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryTimeouts {
    pub cluster_healthy: u64,
    pub cluster_bootstrap: u64,
    pub pod_recovery: u64,
    pub pod_sync: u64,
}

impl RecoveryTimeouts {
    pub fn of(mdb: &MariaDb) -> Self {
        let recovery = mdb.spec.galera.as_ref().and_then(|g| g.recovery.clone()).unwrap_or_default();
        let or = |value: &Option<String>, default: u64| value.as_deref().and_then(go_duration_seconds).unwrap_or(default);
        RecoveryTimeouts {
            cluster_healthy: or(&recovery.cluster_healthy_timeout, 30),
            cluster_bootstrap: or(&recovery.cluster_bootstrap_timeout, 600),
            pod_recovery: or(&recovery.pod_recovery_timeout, 300),
            pod_sync: or(&recovery.pod_sync_timeout, 300),
        }
    }
}

/// Whether the operator's own Galera recovery is switched on
/// (`spec.galera.recovery.enabled`; off unless set).
pub fn recovery_enabled(mdb: &MariaDb) -> bool {
    mdb.spec.galera.as_ref().and_then(|g| g.recovery.as_ref()).and_then(|r| r.enabled) == Some(true)
}

/// Whether the MariaDB runs Galera (`spec.galera.enabled`).
pub fn galera_enabled(mdb: &MariaDb) -> bool {
    mdb.spec.galera.as_ref().and_then(|g| g.enabled) == Some(true)
}

/// A Go `time.Duration` string (`1h2m3s`, `10m`, `500ms`) in whole seconds,
/// rounded up; `None` when it is not one.
pub fn go_duration_seconds(text: &str) -> Option<u64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut millis: u128 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let per_unit_ms = match &rest[..unit_len] {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1_000.0,
            "ms" => 1.0,
            "us" | "µs" => 0.001,
            "ns" => 0.000_001,
            _ => return None,
        };
        millis += (value * per_unit_ms).ceil() as u128;
        rest = &rest[unit_len..];
    }
    Some(millis.div_ceil(1000) as u64)
}

#[cfg(test)]
mod tests {
    use super::go_duration_seconds;

    #[test]
    fn go_durations_parse_as_the_operator_writes_them() {
        assert_eq!(go_duration_seconds("10m"), Some(600));
        assert_eq!(go_duration_seconds("1h0m0s"), Some(3600));
        assert_eq!(go_duration_seconds("1m30s"), Some(90));
        assert_eq!(go_duration_seconds("1.5h"), Some(5400));
        assert_eq!(go_duration_seconds("500ms"), Some(1));
        for bad in ["", "10", "ten minutes", "5d"] {
            assert_eq!(go_duration_seconds(bad), None, "{bad}");
        }
    }
}
