//! A Cluster with no surviving replica comes back only from its object
//! store: the `Cluster` manifest a user applies for that, bootstrapped by
//! `bootstrap.recovery` from the archive it wrote, archiving into a new
//! `serverName` (barman-cloud refuses to archive into a non-empty prefix,
//! and the old one is the recovery source).
//!
//! Shapes from upstream: cloudnative-pg v1.30.0 `api/v1/cluster_types.go`
//! (`bootstrap.recovery.source`, `externalClusters[].plugin`,
//! `externalClusters[].barmanObjectStore`); plugin-barman-cloud's recovery
//! docs (an external cluster naming the plugin with `barmanObjectName` and
//! the old `serverName`).

use serde_json::{json, Value};

use super::super::wal_reset::{next_server_name, used_server_names};
use crate::cluster::resources::{CnpgCluster, BARMAN_CLOUD_PLUGIN};
use crate::cluster::{name, namespace, ClusterState};

/// The external cluster the recovery reads from.
const ORIGIN: &str = "origin";

/// The recovery manifest and the serverName it archives into; None when
/// the Cluster archives nowhere lifeboat can name.
pub fn recovery_cluster(state: &ClusterState, cluster: &CnpgCluster) -> Option<(Value, String)> {
    let ns = namespace(&cluster.metadata);
    let cluster_name = name(&cluster.metadata);
    let mut spec = json!({
        "instances": cluster.spec.instances.unwrap_or(1),
        "bootstrap": {"recovery": {"source": ORIGIN}},
    });
    if let Some(image) = &cluster.spec.image_name {
        spec["imageName"] = json!(image);
    }
    if let Some(storage) = &cluster.spec.storage {
        spec["storage"] = storage.clone();
    }
    let next = if let Some((store, server)) = cluster.plugin_object_store() {
        let next = next_server_name(&server, &used_server_names(state, ns, &store));
        spec["plugins"] = json!([{"name": BARMAN_CLOUD_PLUGIN, "isWALArchiver": true, "parameters": {"barmanObjectName": store, "serverName": next}}]);
        spec["externalClusters"] = json!([{"name": ORIGIN, "plugin": {"name": BARMAN_CLOUD_PLUGIN, "parameters": {"barmanObjectName": store, "serverName": server}}}]);
        next
    } else {
        let store = cluster.spec.backup.as_ref()?.barman_object_store.clone()?;
        let server = store["serverName"].as_str().unwrap_or(cluster_name).to_string();
        let next = next_server_name(&server, &[]);
        let mut origin = store.clone();
        origin["serverName"] = json!(server);
        let mut archive = store;
        archive["serverName"] = json!(next);
        spec["backup"] = json!({"barmanObjectStore": archive});
        spec["externalClusters"] = json!([{"name": ORIGIN, "barmanObjectStore": origin}]);
        next
    };
    let manifest = json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": cluster_name, "namespace": ns},
        "spec": spec,
    });
    Some((manifest, next))
}
