//! `cnpg-instance-lost`: recovering a CloudNativePG instance lost with its node, checked
//! against the operator (cloudnative-pg v1.30.0). A lost primary is left to
//! CNPG's own failover unless CNPG is demonstrably stuck (see
//! [`failover::situation`]); the lost instance's PVCs are deleted before its
//! pod, as the operator itself deletes an instance
//! (`internal/controller/cluster_scale.go` ensureInstanceIsDeleted: PVC group,
//! then pod), so it cannot re-attach a new pod to a dangling claim; after a
//! new primary (a new timeline) WAL archiving is checked and a base backup
//! taken. With no surviving replica the plan renders the recovery Cluster.

pub mod failover;
pub mod recovery;

use crate::cluster::resources::CnpgCluster;
use crate::cluster::{name, namespace, ClusterState};
pub use crate::inspect::cnpg_instances::{instance_names, lost_instances, pod_ready, surviving_replicas};
use crate::inspect::Findings;
use crate::plan::playbooks::PlanError;
use crate::plan::{Action, ObjectRef, Plan, Precondition, RecoverySource, Step, WaitCondition};
pub use crate::triage::NO_REPLICA_ACTION;
use failover::Failover;

const SWITCHOVER_TIMEOUT: u64 = 600;
const HEALTHY_TIMEOUT: u64 = 1800;
const ARCHIVING_TIMEOUT: u64 = 900;
const BACKUP_TIMEOUT: u64 = 7200;

pub fn instance_lost(state: &ClusterState, findings: &Findings, ns: &str, cluster_name: &str) -> Result<Plan, PlanError> {
    let cluster = super::find_named(&state.cnpg_clusters, "Cluster", ns, cluster_name)?;
    let cluster_ref = ObjectRef::cnpg_cluster(ns, cluster_name);
    let mut plan = Plan::new("cnpg-instance-lost", cluster_ref.to_string());
    let finding = findings.cnpg.iter().find(|c| c.namespace == ns && c.cluster == cluster_name);

    let lost = lost_instances(state, findings, cluster);
    if lost.is_empty() {
        plan.findings.push(format!("no instance of {cluster_ref} is on a lost node: nothing to do"));
        return Ok(plan);
    }
    for (instance, node) in &lost {
        plan.findings.push(format!("instance {instance} is on lost node {node}"));
    }
    let archive = match finding.and_then(|f| f.archiving_ok) {
        Some(true) => "WAL archiving ok",
        Some(false) => "WAL archiving FAILING",
        None => "no WAL archiving reported",
    };
    let backup = finding.and_then(|f| f.last_successful_backup).map_or("no successful base backup on record".to_string(), |t| format!("last base backup {}", t.to_rfc3339()));
    plan.findings.push(format!("{archive}; {backup}"));
    let survivors = surviving_replicas(state, findings, cluster);
    if survivors.is_empty() {
        no_replica(state, cluster, &mut plan, finding.and_then(|f| f.last_successful_backup).is_some());
        return Ok(plan);
    }
    plan.findings.push(format!("healthy replicas: {}", survivors.join(", ")));

    let current = cluster.status.current_primary.clone().unwrap_or_default();
    let target = cluster.status.target_primary.clone().unwrap_or_default();
    let mut after_primary = vec![];
    let mut source_pod = None;
    if let Some((lost_primary, primary_node)) = lost.iter().find(|(i, _)| *i == current || *i == target) {
        let since = findings.nodes.iter().find(|n| n.node == *primary_node).and_then(|n| n.since);
        match failover::situation(state, cluster, lost_primary, since) {
            Failover::Refused { why } => {
                plan.findings.push(format!("primary {lost_primary} is lost and CNPG will not fail over: {why}"));
                plan.findings.push("nothing is deleted while the lost instance may still be needed as primary".into());
                return Ok(plan);
            }
            Failover::InProgress { current, target } => {
                plan.findings.push(format!("CNPG is already failing over (currentPrimary {current}, targetPrimary {target}): lifeboat waits for its failover and promotes nobody"));
                wait_for_operator(&mut plan, &cluster_ref, lost_primary, cluster);
                after_primary.push("wait-failover".to_string());
            }
            Failover::ByOperator { why } => {
                plan.findings.push(format!("primary {lost_primary} is lost: {why}"));
                wait_for_operator(&mut plan, &cluster_ref, lost_primary, cluster);
                after_primary.push("wait-failover".to_string());
            }
            Failover::Stuck { why } => {
                let ranked = failover::rank(cluster, &survivors);
                let promote_to = ranked[0].instance.clone();
                plan.findings.push(format!("primary {lost_primary} is lost: {why}"));
                plan.findings.push(format!(
                    "promote {promote_to}: CNPG ranks candidates by received then replayed WAL position (pkg/postgres/status.go), which only the instances' /pg/status reports; the choice rests on the Cluster status instead: {}",
                    ranked.iter().map(|c| c.describe()).collect::<Vec<_>>().join(", ")
                ));
                promote(&mut plan, &cluster_ref, ns, lost_primary, primary_node, &promote_to);
                after_primary.push("wait-primary".to_string());
                source_pod = Some(promote_to);
            }
        }
        archive_after_failover(&mut plan, &cluster_ref, cluster, finding.and_then(|f| f.archiving_ok), lost_primary, &after_primary);
    }

    let source = RecoverySource {
        description: match &source_pod {
            Some(pod) => format!("CNPG re-creates the instance by streaming from primary {pod}"),
            None => "CNPG re-creates the instance by streaming from the primary its failover elected".into(),
        },
        evidence: vec![
            format!("{} of {} instances ready", finding.map_or(0, |f| f.ready_instances), finding.map_or(0, |f| f.instances)),
            format!("Ready replicas: {}", survivors.join(", ")),
            archive.to_string(),
        ],
    };
    let mut deletions = vec![];
    for (instance, node) in &lost {
        deletions.extend(destroy_instance(&mut plan, state, &cluster_ref, instance, node, &after_primary, source_pod.as_deref(), &source));
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
        action: Action::Wait { object: rw, until: WaitCondition::ServiceRoutesToCnpgPrimary { cluster: cluster_name.to_string() }, timeout_seconds: SWITCHOVER_TIMEOUT },
        needs: vec!["wait-healthy".into()],
        preconditions: vec![],
        recovery_source: None,
    });
    Ok(plan)
}

fn no_replica(state: &ClusterState, cluster: &CnpgCluster, plan: &mut Plan, has_backup: bool) {
    plan.findings.push(format!("no healthy replica survives: deleting the lost instance's storage would leave nothing to re-create it from; {NO_REPLICA_ACTION}"));
    let cluster_ref = ObjectRef::cnpg_cluster(namespace(&cluster.metadata), name(&cluster.metadata));
    match recovery::recovery_cluster(state, cluster) {
        Some(_) if !has_backup => plan.follow_ups.push(format!(
            "{cluster_ref} has no successful base backup on record: bootstrap.recovery needs one; check the object store before deleting anything"
        )),
        Some((manifest, server)) => plan.follow_ups.push(format!(
            "once the node is known to be gone for good: delete {cluster_ref} (its storage is on the lost node), then apply this Cluster; it recovers from the object store and archives under the new serverName {server}, and a fresh base backup must follow:\n{}",
            serde_yaml::to_string(&manifest).unwrap_or_default()
        )),
        None => plan.follow_ups.push(format!("{cluster_ref} archives to no object store: there is nothing to recover it from")),
    }
}

/// CNPG fails over by itself: wait until it has moved the primary.
fn wait_for_operator(plan: &mut Plan, cluster_ref: &ObjectRef, lost_primary: &str, cluster: &CnpgCluster) {
    let delay = cluster.spec.failover_delay.unwrap_or(0).max(0) as u64;
    plan.steps.push(Step {
        id: "wait-failover".into(),
        title: format!("Wait for CNPG's own failover away from {lost_primary}"),
        action: Action::Wait { object: cluster_ref.clone(), until: WaitCondition::CnpgFailedOver { from: lost_primary.to_string() }, timeout_seconds: delay + SWITCHOVER_TIMEOUT },
        needs: vec![],
        preconditions: vec![],
        recovery_source: None,
    });
}

/// `kubectl cnpg promote`, only while CNPG still has not started a failover.
fn promote(plan: &mut Plan, cluster_ref: &ObjectRef, ns: &str, lost_primary: &str, primary_node: &str, promote_to: &str) {
    plan.steps.push(Step {
        id: "promote".into(),
        title: format!("Promote {promote_to} to primary"),
        action: Action::PromoteCnpg { cluster: cluster_ref.clone(), pod: promote_to.to_string() },
        needs: vec![],
        preconditions: vec![
            Precondition::NodeStillLost { node: primary_node.to_string() },
            Precondition::PodReady { pod: ObjectRef::pod(ns, promote_to) },
            Precondition::CnpgPrimaryUnchanged { cluster: cluster_ref.clone(), pod: lost_primary.to_string(), promote_to: promote_to.to_string() },
        ],
        recovery_source: None,
    });
    plan.steps.push(Step {
        id: "wait-primary".into(),
        title: format!("Wait until {promote_to} is the current primary"),
        action: Action::Wait { object: cluster_ref.clone(), until: WaitCondition::CnpgPrimaryIs { pod: promote_to.to_string() }, timeout_seconds: SWITCHOVER_TIMEOUT },
        needs: vec!["promote".into()],
        preconditions: vec![],
        recovery_source: None,
    });
}

/// A promotion starts a new timeline, exactly when barman-cloud archives
/// break: wait for ContinuousArchiving, then take a base backup of it.
fn archive_after_failover(plan: &mut Plan, cluster_ref: &ObjectRef, cluster: &CnpgCluster, archiving_ok: Option<bool>, lost_primary: &str, after: &[String]) {
    let method = if cluster.plugin_object_store().is_some() {
        serde_json::json!({"method": "plugin", "pluginConfiguration": {"name": crate::cluster::resources::BARMAN_CLOUD_PLUGIN}})
    } else if cluster.spec.backup.as_ref().is_some_and(|b| b.barman_object_store.is_some()) {
        serde_json::json!({"method": "barmanObjectStore"})
    } else {
        plan.findings.push("the Cluster archives no WAL: no base backup can follow the failover".into());
        return;
    };
    if archiving_ok == Some(false) {
        plan.follow_ups.push(format!("WAL archiving of {cluster_ref} was already failing: after the failover run wal-archive-reset, which takes the fresh base backup"));
        return;
    }
    let ns = cluster_ref.namespace.as_deref().unwrap_or_default();
    plan.steps.push(Step {
        id: "wait-archiving".into(),
        title: format!("Wait for ContinuousArchiving=True on {cluster_ref} on the new timeline"),
        action: Action::Wait {
            object: cluster_ref.clone(),
            until: WaitCondition::ConditionIs { condition: "ContinuousArchiving".into(), status: "True".into() },
            timeout_seconds: ARCHIVING_TIMEOUT,
        },
        needs: after.to_vec(),
        preconditions: vec![],
        recovery_source: None,
    });
    let backup = ObjectRef::namespaced("postgresql.cnpg.io/v1", "Backup", ns, &format!("{}-after-{lost_primary}-lost", cluster_ref.name));
    let mut spec = method;
    spec["cluster"] = serde_json::json!({"name": cluster_ref.name});
    plan.steps.push(Step {
        id: "base-backup".into(),
        title: format!("Take a base backup on the new timeline ({backup})"),
        action: Action::Apply {
            object: backup.clone(),
            manifest: serde_json::json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Backup", "metadata": {"name": backup.name, "namespace": ns}, "spec": spec}),
        },
        needs: vec!["wait-archiving".into()],
        preconditions: vec![],
        recovery_source: None,
    });
    plan.steps.push(Step {
        id: "wait-backup".into(),
        title: format!("Wait for {backup} to complete"),
        action: Action::Wait { object: backup, until: WaitCondition::CnpgBackupCompleted, timeout_seconds: BACKUP_TIMEOUT },
        needs: vec!["base-backup".into()],
        preconditions: vec![],
        recovery_source: None,
    });
}

/// The lost instance's PVCs are marked for deletion first, then its pod is
/// force-deleted, then the PVCs are seen gone. Returns the last step ids.
#[allow(clippy::too_many_arguments)]
fn destroy_instance(
    plan: &mut Plan,
    state: &ClusterState,
    cluster_ref: &ObjectRef,
    instance: &str,
    node: &str,
    after_primary: &[String],
    new_primary: Option<&str>,
    source: &RecoverySource,
) -> Vec<String> {
    let ns = cluster_ref.namespace.as_deref().unwrap_or_default();
    let mut preconditions =
        vec![Precondition::NodeStillLost { node: node.to_string() }, Precondition::CnpgPrimary { cluster: cluster_ref.clone(), pod: instance.to_string(), is_primary: false }];
    if let Some(pod) = new_primary {
        preconditions.push(Precondition::PodReady { pod: ObjectRef::pod(ns, pod) });
    }
    let pvcs = instance_pvcs(state, ns, instance);
    let mut marks = vec![];
    for pvc in &pvcs {
        let id = format!("mark-pvc-{pvc}");
        plan.steps.push(Step {
            id: id.clone(),
            title: format!("Delete PVC {pvc} pinned to {node} before its pod (so CNPG cannot re-attach it)"),
            action: Action::MarkPvcForDeletion { pvc: ObjectRef::pvc(ns, pvc), pinned_node: node.to_string() },
            needs: after_primary.to_vec(),
            preconditions: preconditions.clone(),
            recovery_source: Some(source.clone()),
        });
        marks.push(id);
    }
    let pod_step = format!("delete-pod-{instance}");
    plan.steps.push(Step {
        id: pod_step.clone(),
        title: format!("Force-delete pod {instance} (its node {node} is gone)"),
        action: Action::ForceDeletePod { pod: ObjectRef::pod(ns, instance) },
        needs: if marks.is_empty() { after_primary.to_vec() } else { marks },
        preconditions: preconditions[..2].to_vec(),
        recovery_source: None,
    });
    let mut done = vec![];
    for pvc in &pvcs {
        let id = format!("delete-pvc-{pvc}");
        plan.steps.push(Step {
            id: id.clone(),
            title: format!("Wait for PVC {pvc} to be gone (its pod was the last user)"),
            action: Action::DeletePvc { pvc: ObjectRef::pvc(ns, pvc), pinned_node: node.to_string() },
            needs: vec![pod_step.clone()],
            preconditions: preconditions.clone(),
            recovery_source: Some(source.clone()),
        });
        done.push(id);
    }
    if done.is_empty() {
        done.push(pod_step);
    }
    done
}

/// The instance's PVC group as CNPG names it (v1.30.0 `api/v1/cluster_types.go`):
/// PGDATA `<pod>`, WAL `<pod>-wal`, tablespaces `<pod>-tbs-<name>`.
fn instance_pvcs(state: &ClusterState, ns: &str, instance: &str) -> Vec<String> {
    let tablespace = format!("{instance}-tbs-");
    let wal = format!("{instance}-wal");
    let mut pvcs: Vec<String> = state
        .persistent_volume_claims
        .iter()
        .filter(|p| namespace(&p.metadata) == ns)
        .map(|p| name(&p.metadata))
        .filter(|n| *n == instance || *n == wal || n.starts_with(&tablespace))
        .map(String::from)
        .collect();
    pvcs.sort();
    pvcs
}

/// `cnpg-instance-lost`.
pub struct InstanceLost;

impl super::Playbook for InstanceLost {
    fn info(&self) -> super::PlaybookInfo {
        super::PlaybookInfo {
            name: "cnpg-instance-lost",
            arguments: "-n NAMESPACE --name CLUSTER",
            summary: "re-create a CloudNativePG instance lost with its node (promoting first if it was the primary)",
        }
    }

    fn default_routes(&self) -> Vec<crate::config::Route> {
        vec![crate::config::Route::new("LifeboatCnpgPrimaryOnLostNode", self.name(), &[("namespace", "namespace"), ("name", "cluster")])]
    }

    fn plan(&self, state: &ClusterState, findings: &Findings, trigger: &super::Trigger) -> Result<Plan, super::PlanError> {
        instance_lost(state, findings, trigger.require_namespace(self.name())?, trigger.require_name(self.name(), "--name (the Cluster)")?)
    }
}
