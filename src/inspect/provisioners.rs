//! Dynamic volume provisioners whose pod was on a lost node. Until one runs
//! elsewhere, every claim a recovery re-creates in their StorageClasses
//! stays Pending: nothing provisions its volume.
//!
//! A provisioner is found by its pod's labels ([`KNOWN`]: one row per
//! provisioner name, as StorageClasses name it in `provisioner`), and the
//! controller that re-creates the pod by the pod's owner references.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::cluster::resources::{find_condition, Pod};
use crate::cluster::{label, name, namespace, ClusterState};

/// A provisioner lifeboat recognises by its pod's labels.
pub struct KnownProvisioner {
    /// What a StorageClass names in `provisioner` (and the kube-controller-manager
    /// writes into a claim's `volume.kubernetes.io/storage-provisioner`).
    pub name: &'static str,
    /// Labels every pod of it carries.
    pub pod_labels: &'static [(&'static str, &'static str)],
    /// Seconds after a new pod is Ready before it provisions: the leader
    /// Lease of a dead holder is taken over only once the candidate has seen
    /// it unrenewed for a whole lease duration.
    pub takeover_seconds: u64,
}

/// openebs/dynamic-localpv-provisioner v4.0.0 (localpv-provisioner-4.0.0):
/// cmd/provisioner-localpv/app/start.go names itself `openebs.io/local` and
/// enables leader election unless LEADER_ELECTION_ENABLED=false (the chart's
/// default `localpv.enableLeaderElection: true`); the chart's
/// templates/_helpers.tpl labels the pod `openebs.io/component-name:
/// openebs-{{ .Values.localpv.name }}` (values.yaml: `localpv-provisioner`).
/// Leader election is sigs.k8s.io/sig-storage-lib-external-provisioner
/// v9.0.3 controller/controller.go: an Endpoints+Lease lock named after the
/// provisioner (`/` → `-`, so `openebs.io-local`) in the pod's namespace,
/// LeaseDuration 15s, RetryPeriod 2s; client-go's leaderelection takes an unrenewed Lease over
/// only LeaseDuration after first observing it, retrying every RetryPeriod
/// with jitter factor 1.2: at most 15 + 2 × 2.2 ≈ 20s after the pod starts
/// (the chart has no readiness probe, so it is Ready as soon as it runs).
pub const OPENEBS_LOCAL: KnownProvisioner =
    KnownProvisioner { name: "openebs.io/local", pod_labels: &[("openebs.io/component-name", "openebs-localpv-provisioner")], takeover_seconds: 20 };

pub const KNOWN: &[KnownProvisioner] = &[OPENEBS_LOCAL];

/// A provisioner pod on a lost node.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StrandedProvisioner {
    /// As StorageClasses name it, e.g. `openebs.io/local`.
    pub provisioner: String,
    pub namespace: String,
    pub pod: String,
    pub node: String,
    /// The controller that re-creates the pod once it is gone (e.g. `Deployment openebs-localpv-provisioner`).
    pub controller: Option<(String, String)>,
    /// The labels that find its pods.
    pub selector: BTreeMap<String, String>,
    /// Pods of it that are Ready on another node: when there is one, new
    /// claims are provisioned already.
    pub ready_elsewhere: Vec<String>,
    pub takeover_seconds: u64,
}

impl StrandedProvisioner {
    /// Nothing provisions new claims until a pod runs elsewhere.
    pub fn blocks_provisioning(&self) -> bool {
        self.ready_elsewhere.is_empty()
    }

    /// `openebs.io/component-name=openebs-localpv-provisioner`.
    pub fn selector_text(&self) -> String {
        label_selector(&self.selector)
    }
}

/// The labels as a label selector (`k=v,k2=v2`).
pub fn label_selector(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// The known provisioners' pods on the `lost` nodes, sorted.
pub fn stranded(state: &ClusterState, lost: &BTreeSet<String>) -> Vec<StrandedProvisioner> {
    let mut out = vec![];
    for known in KNOWN {
        let pods: Vec<&Pod> = state.pods.iter().map(|p| p.as_ref()).filter(|p| known.pod_labels.iter().all(|(k, v)| label(&p.metadata, k) == Some(*v))).collect();
        for pod in pods.iter().filter(|p| p.spec.node_name.as_deref().is_some_and(|n| lost.contains(n))) {
            let ns = namespace(&pod.metadata);
            let ready_elsewhere = pods
                .iter()
                .filter(|p| namespace(&p.metadata) == ns && p.metadata.deletion_timestamp.is_none() && ready(p))
                .filter(|p| p.spec.node_name.as_deref().is_some_and(|n| !lost.contains(n)))
                .map(|p| format!("{} on {}", name(&p.metadata), p.spec.node_name.as_deref().unwrap_or_default()))
                .collect();
            out.push(StrandedProvisioner {
                provisioner: known.name.to_string(),
                namespace: ns.to_string(),
                pod: name(&pod.metadata).to_string(),
                node: pod.spec.node_name.clone().unwrap_or_default(),
                controller: state.workload_of(pod).map(|w| (w.kind, w.name)),
                selector: known.pod_labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                ready_elsewhere,
                takeover_seconds: known.takeover_seconds,
            });
        }
    }
    out.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
    out
}

fn ready(pod: &Pod) -> bool {
    find_condition(&pod.status.conditions, "Ready").is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn pod(name: &str, node: &str, ready: bool) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "openebs", "labels": {"openebs.io/component-name": "openebs-localpv-provisioner"},
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "openebs-localpv-provisioner-7d4f", "uid": "u", "controller": true}]},
                "spec": {"nodeName": node, "containers": [{"name": "openebs-localpv-provisioner"}]},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn a_provisioner_pod_on_a_lost_node_blocks_provisioning_until_one_is_ready_elsewhere() {
        let lost = BTreeSet::from(["node-a".to_string()]);
        let mut state = ClusterState { pods: vec![pod("p-old", "node-a", false)], ..ClusterState::default() };
        state.finish();
        let found = stranded(&state, &lost);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].provisioner.as_str(), found[0].pod.as_str(), found[0].node.as_str()), ("openebs.io/local", "p-old", "node-a"));
        assert_eq!(found[0].controller, Some(("ReplicaSet".into(), "openebs-localpv-provisioner-7d4f".into())), "no ReplicaSet in the state: its direct owner");
        assert_eq!(found[0].selector_text(), "openebs.io/component-name=openebs-localpv-provisioner");
        assert!(found[0].blocks_provisioning());

        state.pods.push(pod("p-new", "node-b", true));
        state.finish();
        let found = stranded(&state, &lost);
        assert_eq!(found[0].ready_elsewhere, vec!["p-new on node-b".to_string()]);
        assert!(!found[0].blocks_provisioning());
        assert!(stranded(&state, &BTreeSet::new()).is_empty(), "no lost node, nothing stranded");
    }
}
