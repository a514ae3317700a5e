//! `stale-cleanup`: ReplicationDestinations whose app is gone (no source, no
//! app PVC). Deleting one also garbage-collects its mover Job and cache PVC,
//! which it owns. No data is deleted: the destination holds none.
//!
//! Cluster-wide it also removes PersistentVolumes no claim holds (Released
//! or Available) whose required node affinity names a node confirmed gone:
//! the local-PV provisioner deletes a volume through a helper pod on that
//! node (openebs/dynamic-localpv-provisioner
//! cmd/provisioner-localpv/app/provisioner_hostpath.go `DeleteHostPath`,
//! commit e3dfacf), so
//! they would stay forever. Their data was on the gone node's disk.

use crate::cluster::{name, namespace, ClusterState};
use crate::inspect::volsync::Role;
use crate::inspect::Findings;
use crate::plan::{Action, ObjectRef, Plan, Precondition, Step};

pub fn cleanup(state: &ClusterState, findings: &Findings, only_namespace: Option<&str>) -> Plan {
    let mut plan = Plan::new("stale-cleanup", only_namespace.map_or("all namespaces".into(), |ns| format!("namespace {ns}")));
    for f in findings.volsync.iter().filter(|v| v.role == Role::Destination && v.orphaned) {
        if only_namespace.is_some_and(|ns| ns != f.namespace) {
            continue;
        }
        let Some(rd) = state.replication_destinations.iter().find(|r| namespace(&r.metadata) == f.namespace && name(&r.metadata) == f.name) else {
            continue;
        };
        let app = f.name.strip_suffix("-dst").unwrap_or(&f.name);
        let identity = rd.mover().and_then(|m| m.source_identity.as_ref());
        let source = identity.and_then(|i| i.source_name.clone()).unwrap_or_else(|| app.to_string());
        let app_pvc = f.pvc.clone().or_else(|| identity.and_then(|i| i.source_pvc_name.clone())).unwrap_or_else(|| app.to_string());
        let source_ref = ObjectRef::namespaced("volsync.backube/v1alpha1", "ReplicationSource", &f.namespace, &source);
        let pvc_ref = ObjectRef::pvc(&f.namespace, &app_pvc);
        plan.findings.push(format!(
            "ReplicationDestination {}/{} is orphaned: no {source_ref} and no {pvc_ref}{}",
            f.namespace,
            f.name,
            f.cache_pvc_lost_node.as_ref().map_or(String::new(), |n| format!("; its cache PVC is on lost node {n}"))
        ));
        plan.steps.push(Step {
            id: format!("delete-rd-{}-{}", f.namespace, f.name),
            title: format!("Delete orphaned ReplicationDestination {}/{} (its mover Job and cache PVC go with it)", f.namespace, f.name),
            action: Action::Delete { object: ObjectRef::namespaced("volsync.backube/v1alpha1", "ReplicationDestination", &f.namespace, &f.name) },
            needs: vec![],
            preconditions: vec![Precondition::Absent { object: source_ref }, Precondition::Absent { object: pvc_ref }],
            recovery_source: None,
        });
    }
    if only_namespace.is_none() {
        stranded_volumes(state, findings, &mut plan);
    }
    if plan.steps.is_empty() {
        plan.findings.push("no orphaned ReplicationDestinations or stranded PersistentVolumes".into());
    }
    plan
}

fn stranded_volumes(state: &ClusterState, findings: &Findings, plan: &mut Plan) {
    for v in crate::inspect::nodes::stranded_volumes(state, &findings.lost_volumes) {
        plan.findings
            .push(format!("PersistentVolume {} is {} and pinned to node {}, which is gone ({}): its provisioner cannot delete it", v.persistent_volume, v.phase, v.node, v.gone));
        plan.steps.push(Step {
            id: format!("delete-pv-{}", v.persistent_volume),
            title: format!("Delete PersistentVolume {} ({}, pinned to gone node {})", v.persistent_volume, v.phase, v.node),
            action: Action::Delete { object: ObjectRef { api_version: "v1".into(), kind: "PersistentVolume".into(), namespace: None, name: v.persistent_volume.clone() } },
            needs: vec![],
            preconditions: vec![Precondition::VolumeOrphanedOnGoneNode { volume: v.persistent_volume.clone(), node: v.node.clone() }],
            recovery_source: None,
        });
    }
}

/// `stale-cleanup`.
pub struct Cleanup;

impl super::Playbook for Cleanup {
    fn info(&self) -> super::PlaybookInfo {
        super::PlaybookInfo { name: "stale-cleanup", arguments: "[-n NAMESPACE]", summary: "delete what a recovery leaves behind (orphaned ReplicationDestinations and the like)" }
    }

    fn default_routes(&self) -> Vec<crate::config::Route> {
        vec![crate::config::Route::new("LifeboatVolsyncDestinationOrphaned", self.name(), &[("namespace", "namespace")])]
    }

    fn plan(&self, state: &ClusterState, findings: &Findings, trigger: &super::Trigger) -> Result<Plan, super::PlanError> {
        Ok(cleanup(state, findings, trigger.namespace.as_deref()))
    }
}
