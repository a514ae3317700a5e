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
                .filter(|pod| {
                    ctx.pvc_node(ns, &format!("storage-{pod}")).is_some_and(|n| ctx.is_lost(n))
                        || ctx.instance_node(ns, pod).is_some_and(|n| ctx.is_lost(&n))
                })
                .collect();
            let condition = |t: &str| find_condition(&mdb.status.conditions, t).map(|c| c.status == "True");
            MariaDbFinding {
                namespace: ns.to_string(),
                name: mdb_name.to_string(),
                replicas,
                ready: condition("Ready"),
                galera_ready: condition("GaleraReady"),
                instances_on_lost_nodes,
                force_bootstrap_pod: mdb
                    .spec
                    .galera
                    .as_ref()
                    .and_then(|g| g.recovery.as_ref())
                    .and_then(|r| r.force_cluster_bootstrap_in_pod.clone())
                    .filter(|p| !p.is_empty()),
            }
        })
        .collect()
}

/// `(mariadb, instance pod)` when `pvc` is one of a MariaDB's `storage-`/`galera-` claims.
pub fn instance_of_pvc(ctx: &Context, ns: &str, pvc: &str) -> Option<(String, String)> {
    let pod = pvc.strip_prefix("storage-").or_else(|| pvc.strip_prefix("galera-"))?;
    let (mdb, index) = pod.rsplit_once('-')?;
    index.parse::<u32>().ok()?;
    ctx.state
        .mariadbs
        .iter()
        .any(|m| namespace(&m.metadata) == ns && name(&m.metadata) == mdb)
        .then(|| (mdb.to_string(), pod.to_string()))
}
