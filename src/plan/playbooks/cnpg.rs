//! `cnpg-instance-lost`: the runbook's CloudNativePG procedure, corrected by
//! FACTS — promote a healthy replica first if the lost instance is (or is
//! becoming) primary, force-delete the dead pod, delete its PVCs so CNPG
//! re-creates the instance from the new primary, and wait for health.

use crate::cluster::resources::CnpgCluster;
use crate::cluster::{label, name, namespace, ClusterState};
use crate::inspect::Findings;
use crate::plan::playbooks::PlanError;
use crate::plan::{Action, ObjectRef, Plan, Precondition, RecoverySource, Step, WaitCondition};

const SWITCHOVER_TIMEOUT: u64 = 600;
const HEALTHY_TIMEOUT: u64 = 1800;

pub fn instance_lost(state: &ClusterState, findings: &Findings, ns: &str, cluster_name: &str) -> Result<Plan, PlanError> {
    let cluster = super::find_named(&state.cnpg_clusters, "Cluster", ns, cluster_name)?;
    let cluster_ref = ObjectRef::cnpg_cluster(ns, cluster_name);
    let mut plan = Plan::new("cnpg-instance-lost", cluster_ref.to_string());
    let finding = findings.cnpg.iter().find(|c| c.namespace == ns && c.cluster == cluster_name);

    let node_of = |instance: &str| -> Option<String> {
        let pod_node = state.pods.iter().find(|p| namespace(&p.metadata) == ns && name(&p.metadata) == instance).and_then(|p| p.spec.node_name.clone());
        let pvc_node = findings
            .lost_volumes
            .iter()
            .find(|v| v.claim_namespace.as_deref() == Some(ns) && v.claim_name.as_deref() == Some(instance))
            .map(|v| v.node.clone());
        pvc_node.or(pod_node)
    };
    let lost_nodes: Vec<&str> = findings.lost_nodes().map(|n| n.node.as_str()).collect();
    let instances = instance_names(state, cluster);
    let lost: Vec<(String, String)> = instances
        .iter()
        .filter_map(|i| node_of(i).filter(|n| lost_nodes.contains(&n.as_str())).map(|n| (i.clone(), n)))
        .collect();
    if lost.is_empty() {
        plan.findings.push(format!("no instance of {cluster_ref} is on a lost node: nothing to do"));
        return Ok(plan);
    }
    let survivors: Vec<&String> = instances
        .iter()
        .filter(|i| !lost.iter().any(|(l, _)| l == *i))
        .filter(|i| pod_ready(state, ns, i))
        .collect();
    for (instance, node) in &lost {
        plan.findings.push(format!("instance {instance} is on lost node {node}"));
    }
    let archive = match finding.and_then(|f| f.archiving_ok) {
        Some(true) => "WAL archiving ok".to_string(),
        Some(false) => "WAL archiving FAILING".to_string(),
        None => "no WAL archiving reported".to_string(),
    };
    let backup = finding
        .and_then(|f| f.last_successful_backup)
        .map_or("no successful base backup on record".to_string(), |t| format!("last base backup {}", t.to_rfc3339()));
    plan.findings.push(format!("{archive}; {backup}"));
    let Some(promote_to) = survivors.first().map(|s| s.to_string()) else {
        plan.findings.push(
            "no healthy replica survives: deleting the lost instance's storage would leave nothing to re-create it from; recover the cluster from its backup instead (bootstrap.recovery)".into(),
        );
        return Ok(plan);
    };
    plan.findings.push(format!("healthy replicas: {}", survivors.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")));

    let primary = cluster.status.current_primary.clone().unwrap_or_default();
    let target = cluster.status.target_primary.clone().unwrap_or_default();
    let mut after_switchover = vec![];
    if let Some((_, primary_node)) = lost.iter().find(|(i, _)| *i == primary || *i == target) {
        plan.findings.push(format!(
            "primary {primary} (target {target}) is lost: promote {promote_to} first (the API does not expose replica WAL positions; the first ready replica by name is chosen)"
        ));
        plan.steps.push(Step {
            id: "promote".into(),
            title: format!("Promote {promote_to} to primary"),
            action: Action::PromoteCnpg { cluster: cluster_ref.clone(), pod: promote_to.clone() },
            needs: vec![],
            preconditions: vec![
                Precondition::NodeStillLost { node: primary_node.clone() },
                Precondition::PodReady { pod: ObjectRef::pod(ns, &promote_to) },
            ],
            recovery_source: None,
        });
        plan.steps.push(Step {
            id: "wait-primary".into(),
            title: format!("Wait until {promote_to} is the current primary (restart it once if it waits for a new primary)"),
            action: Action::Wait { object: cluster_ref.clone(), until: WaitCondition::CnpgPrimaryIs { pod: promote_to.clone() }, timeout_seconds: SWITCHOVER_TIMEOUT },
            needs: vec!["promote".into()],
            preconditions: vec![],
            recovery_source: None,
        });
        after_switchover.push("wait-primary".to_string());
    }

    let source = RecoverySource {
        description: format!("CNPG re-creates the instance by streaming from primary {promote_to}"),
        evidence: vec![
            format!("{} of {} instances ready", finding.map_or(0, |f| f.ready_instances), finding.map_or(0, |f| f.instances)),
            format!("{promote_to} Ready"),
            archive.clone(),
        ],
    };
    let mut deletions = vec![];
    for (instance, node) in &lost {
        let not_primary = Precondition::CnpgPrimary { cluster: cluster_ref.clone(), pod: instance.clone(), is_primary: false };
        let still_lost = Precondition::NodeStillLost { node: node.clone() };
        let pod_step = format!("delete-pod-{instance}");
        plan.steps.push(Step {
            id: pod_step.clone(),
            title: format!("Force-delete pod {instance} (its node {node} is gone)"),
            action: Action::ForceDeletePod { pod: ObjectRef::pod(ns, instance) },
            needs: after_switchover.clone(),
            preconditions: vec![still_lost.clone(), not_primary.clone()],
            recovery_source: None,
        });
        for pvc in instance_pvcs(state, ns, instance) {
            let id = format!("delete-pvc-{pvc}");
            plan.steps.push(Step {
                id: id.clone(),
                title: format!("Delete PVC {pvc} pinned to {node}"),
                action: Action::DeletePvc { pvc: ObjectRef::pvc(ns, &pvc), pinned_node: node.clone() },
                needs: vec![pod_step.clone()],
                preconditions: vec![still_lost.clone(), not_primary.clone(), Precondition::PodReady { pod: ObjectRef::pod(ns, &promote_to) }],
                recovery_source: Some(source.clone()),
            });
            deletions.push(id);
        }
    }
    plan.steps.push(Step {
        id: "wait-healthy".into(),
        title: format!("Wait for {cluster_ref} to be healthy with all instances and no dangling PVCs"),
        action: Action::Wait { object: cluster_ref, until: WaitCondition::CnpgHealthy, timeout_seconds: HEALTHY_TIMEOUT },
        needs: deletions,
        preconditions: vec![],
        recovery_source: None,
    });
    let rw = ObjectRef::namespaced("v1", "Service", ns, &format!("{cluster_name}-rw"));
    plan.steps.push(Step {
        id: "verify-rw-endpoints".into(),
        title: format!("Verify {rw} routes to a ready primary"),
        action: Action::Wait { object: rw, until: WaitCondition::ServiceHasEndpoints, timeout_seconds: SWITCHOVER_TIMEOUT },
        needs: vec!["wait-healthy".into()],
        preconditions: vec![],
        recovery_source: None,
    });
    Ok(plan)
}

/// Instance names from status, else the cluster's PVCs.
fn instance_names(state: &ClusterState, cluster: &CnpgCluster) -> Vec<String> {
    let mut names = cluster.status.instance_names.clone();
    if names.is_empty() {
        let ns = namespace(&cluster.metadata);
        names = state
            .persistent_volume_claims
            .iter()
            .filter(|p| namespace(&p.metadata) == ns && label(&p.metadata, "cnpg.io/cluster") == Some(name(&cluster.metadata)))
            .filter(|p| label(&p.metadata, "cnpg.io/pvcRole") != Some("PG_WAL"))
            .map(|p| name(&p.metadata).to_string())
            .collect();
    }
    names.sort();
    names
}

/// The instance's data PVC (named like the pod) and WAL PVC (`<pod>-wal`) if present.
fn instance_pvcs(state: &ClusterState, ns: &str, instance: &str) -> Vec<String> {
    [instance.to_string(), format!("{instance}-wal")].into_iter().filter(|p| state.pvc(ns, p).is_some()).collect()
}

pub(crate) fn pod_ready(state: &ClusterState, ns: &str, pod: &str) -> bool {
    state.pods.iter().any(|p| {
        namespace(&p.metadata) == ns
            && name(&p.metadata) == pod
            && p.metadata.deletion_timestamp.is_none()
            && p.status.phase.as_deref() == Some("Running")
            && !p.status.container_statuses.is_empty()
            && p.status.container_statuses.iter().all(|c| c.ready)
    })
}
