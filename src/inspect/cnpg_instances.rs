//! A CNPG Cluster's instances after a node loss: which were lost with their
//! node, and which survive Ready (what CNPG can re-create from).

use crate::cluster::resources::CnpgCluster;
use crate::cluster::{label, name, namespace, ClusterState};
use crate::inspect::Findings;

/// The lost instances of a Cluster: (instance, node it was on).
pub fn lost_instances(state: &ClusterState, findings: &Findings, cluster: &CnpgCluster) -> Vec<(String, String)> {
    let ns = namespace(&cluster.metadata);
    let node_of = |instance: &str| -> Option<String> {
        let pod_node = state.pods.iter().find(|p| namespace(&p.metadata) == ns && name(&p.metadata) == instance).and_then(|p| p.spec.node_name.clone());
        let pvc_node = findings.lost_volumes.iter().find(|v| v.claim_namespace.as_deref() == Some(ns) && v.claim_name.as_deref() == Some(instance)).map(|v| v.node.clone());
        pvc_node.or(pod_node)
    };
    let lost_nodes: Vec<&str> = findings.lost_nodes().map(|n| n.node.as_str()).collect();
    instance_names(state, cluster).into_iter().filter_map(|i| node_of(&i).filter(|n| lost_nodes.contains(&n.as_str())).map(|n| (i, n))).collect()
}

/// The Ready instances not on a lost node: what CNPG can re-create from.
pub fn surviving_replicas(state: &ClusterState, findings: &Findings, cluster: &CnpgCluster) -> Vec<String> {
    let ns = namespace(&cluster.metadata);
    let lost = lost_instances(state, findings, cluster);
    instance_names(state, cluster).into_iter().filter(|i| !lost.iter().any(|(l, _)| l == i)).filter(|i| pod_ready(state, ns, i)).collect()
}

/// Instance names from status, else the cluster's data PVCs.
pub fn instance_names(state: &ClusterState, cluster: &CnpgCluster) -> Vec<String> {
    let mut names = cluster.status.instance_names.clone();
    if names.is_empty() {
        let ns = namespace(&cluster.metadata);
        names = state
            .persistent_volume_claims
            .iter()
            .filter(|p| namespace(&p.metadata) == ns && label(&p.metadata, "cnpg.io/cluster") == Some(name(&cluster.metadata)))
            .filter(|p| !matches!(label(&p.metadata, "cnpg.io/pvcRole"), Some("PG_WAL") | Some("PG_TABLESPACE")))
            .map(|p| name(&p.metadata).to_string())
            .collect();
    }
    names.sort();
    names
}

/// The instance's pod runs with every container ready.
pub fn pod_ready(state: &ClusterState, ns: &str, pod: &str) -> bool {
    state.pods.iter().any(|p| {
        namespace(&p.metadata) == ns
            && name(&p.metadata) == pod
            && p.metadata.deletion_timestamp.is_none()
            && p.status.phase.as_deref() == Some("Running")
            && !p.status.container_statuses.is_empty()
            && p.status.container_statuses.iter().all(|c| c.ready)
    })
}
