//! `mariadb-instance-lost`: the runbook's MariaDB Galera procedure, corrected
//! by FACTS. While a surviving member is Ready (the cluster holds quorum),
//! force-delete the lost member's pod and delete its `storage-`/`galera-`
//! PVCs so mariadb-operator re-provisions it on a live node and Galera
//! SST-syncs it from a donor. When no survivor is Ready and the operator
//! reports `GaleraReady` False (quorum lost), force a bootstrap from the most
//! advanced survivor with Flux suspended, and unset
//! `forceClusterBootstrapInPod` afterwards — the operator never clears it.
//! No storage is deleted before a member is Ready to sync from.

use std::collections::BTreeSet;

use crate::cluster::resources::{find_condition, MariaDb};
use crate::cluster::{flux_owner, name, namespace, ClusterState};
use crate::inspect::Findings;
use crate::plan::playbooks::{PlanError, Trigger};
use crate::plan::{Action, ObjectRef, Plan, Precondition, RecoverySource, Step, WaitCondition};

pub const PLAYBOOK: &str = "mariadb-instance-lost";
/// mariadb-operator's own clusterBootstrapTimeout defaults to 10m.
const BOOTSTRAP_TIMEOUT: u64 = 1200;
/// A new member's SST copies the whole database.
const SST_TIMEOUT: u64 = 3600;
const READY_TIMEOUT: u64 = 1800;

/// The MariaDBs with an instance on a lost node, one trigger each (the node
/// is the first lost node holding one of its instances).
pub fn affected(state: &ClusterState, findings: &Findings) -> Vec<Trigger> {
    findings
        .mariadb
        .iter()
        .filter(|m| !m.instances_on_lost_nodes.is_empty())
        .map(|m| {
            let node = m.instances_on_lost_nodes.iter().find_map(|pod| lost_instance(state, findings, &m.namespace, pod).map(|l| l.node));
            Trigger { namespace: Some(m.namespace.clone()), name: Some(m.name.clone()), node }
        })
        .collect()
}

/// A member whose pod or storage is on a lost node.
struct LostInstance {
    pod: String,
    /// Where the pod ran, else where its storage is pinned.
    node: String,
    /// Its claims pinned to a lost node, with that node.
    pvcs: Vec<(String, String)>,
}

fn lost_instance(state: &ClusterState, findings: &Findings, ns: &str, pod: &str) -> Option<LostInstance> {
    let lost_nodes: BTreeSet<&str> = findings.lost_nodes().map(|n| n.node.as_str()).collect();
    let pvcs: Vec<(String, String)> = [format!("storage-{pod}"), format!("galera-{pod}")]
        .into_iter()
        .filter_map(|claim| {
            findings
                .lost_volumes
                .iter()
                .find(|v| v.claim_namespace.as_deref() == Some(ns) && v.claim_name.as_deref() == Some(claim.as_str()))
                .map(|v| (claim, v.node.clone()))
        })
        .collect();
    let pod_node = pod_object(state, ns, pod).and_then(|p| p.spec.node_name.clone()).filter(|n| lost_nodes.contains(n.as_str()));
    let node = pod_node.or_else(|| pvcs.first().map(|(_, n)| n.clone()))?;
    Some(LostInstance { pod: pod.to_string(), node, pvcs })
}

pub fn instance_lost(state: &ClusterState, findings: &Findings, ns: &str, mdb_name: &str) -> Result<Plan, PlanError> {
    let mdb = super::find_named(&state.mariadbs, "MariaDB", ns, mdb_name)?;
    let mdb_ref = ObjectRef::namespaced("k8s.mariadb.com/v1alpha1", "MariaDB", ns, mdb_name);
    let mut plan = Plan::new(PLAYBOOK, mdb_ref.to_string());

    let instances: Vec<String> = (0..mdb.spec.replicas.unwrap_or(1)).map(|i| format!("{mdb_name}-{i}")).collect();
    let lost: Vec<LostInstance> = instances.iter().filter_map(|pod| lost_instance(state, findings, ns, pod)).collect();
    let survivors: Vec<&String> = instances.iter().filter(|i| !lost.iter().any(|l| &l.pod == *i)).collect();
    let ready: Vec<&String> = survivors.iter().copied().filter(|p| pod_ready(state, ns, p)).collect();
    let galera_ready = find_condition(&mdb.status.conditions, "GaleraReady").map(|c| c.status == "True");

    for l in &lost {
        let claims: Vec<&str> = l.pvcs.iter().map(|(c, _)| c.as_str()).collect();
        let storage = if claims.is_empty() { "no PVC pinned there".to_string() } else { format!("PVCs {} pinned there", claims.join(", ")) };
        plan.findings.push(format!("instance {} is on lost node {} ({storage})", l.pod, l.node));
    }
    plan.findings.push(format!(
        "GaleraReady {}; Ready survivors: {}",
        match galera_ready {
            Some(true) => "True",
            Some(false) => "False",
            None => "not reported",
        },
        if ready.is_empty() { "none".to_string() } else { join(&ready) }
    ));
    if let Some(pod) = force_bootstrap_pod(mdb) {
        plan.findings.push(format!("spec.galera.recovery.forceClusterBootstrapInPod is already set to {pod} (the operator never clears it)"));
    }
    let quorum_lost = ready.is_empty() && galera_ready == Some(false);
    if lost.is_empty() && !quorum_lost {
        plan.findings.push(format!("no instance of {mdb_ref} is on a lost node and Galera is not down: nothing to do"));
        return Ok(plan);
    }
    if survivors.is_empty() {
        plan.findings.push(format!("every instance is on a lost node: no member to sync from, nothing deleted; {}", restore_pointer(ns, mdb_name)));
        return Ok(plan);
    }
    if !ready.is_empty() {
        let mut evidence = vec![format!("Ready members: {}", join(&ready))];
        evidence.push(match galera_ready {
            Some(true) => "GaleraReady True: the survivors hold quorum".into(),
            _ => "a Ready Galera member is synced with the primary component".into(),
        });
        let source = RecoverySource { description: format!("Galera SST from the surviving members (donor e.g. {})", ready[0]), evidence };
        let waits = replace_lost_members(&mut plan, ns, &lost, ready[0], &source, None);
        plan.steps.push(Step {
            id: "wait-galera-ready".into(),
            title: format!("Wait for GaleraReady=True on {mdb_ref}"),
            action: Action::Wait { object: mdb_ref.clone(), until: condition("GaleraReady", "True"), timeout_seconds: READY_TIMEOUT },
            needs: waits,
            preconditions: vec![],
            recovery_source: None,
        });
        plan.steps.push(Step {
            id: "wait-ready".into(),
            title: format!("Wait for Ready=True on {mdb_ref}"),
            action: Action::Wait { object: mdb_ref, until: condition("Ready", "True"), timeout_seconds: READY_TIMEOUT },
            needs: vec!["wait-galera-ready".into()],
            preconditions: vec![],
            recovery_source: None,
        });
        return Ok(plan);
    }
    if !quorum_lost {
        plan.findings.push(format!(
            "no survivor is Ready, but the operator does not report GaleraReady False: there is no evidence that quorum is lost \
             (the operator may still be recovering on its own); nothing deleted, nothing bootstrapped — plan again once GaleraReady is reported, or {}",
            restore_pointer(ns, mdb_name)
        ));
        return Ok(plan);
    }
    plan.findings.push("quorum lost: no survivor is Ready and GaleraReady is False (the survivors cannot reach the primary view)".into());
    let Some(bootstrap) = choose_bootstrap_pod(mdb, &survivors, &lost, &mut plan.findings) else {
        plan.findings.push(format!("no bootstrap pod can be chosen safely: nothing done; decide by hand or {}", restore_pointer(ns, mdb_name)));
        return Ok(plan);
    };
    force_bootstrap(&mut plan, state, mdb, &mdb_ref, ns, &lost, &bootstrap);
    Ok(plan)
}

/// Force-delete each lost member's pod and delete its pinned PVCs (only while
/// `donor` is Ready), then wait for each re-provisioned member to be Ready.
/// `after` is a step the PVC deletions must also wait for. Returns the waits.
fn replace_lost_members(plan: &mut Plan, ns: &str, lost: &[LostInstance], donor: &str, source: &RecoverySource, after: Option<&str>) -> Vec<String> {
    let mut waits = vec![];
    for l in lost {
        let pod_step = format!("delete-pod-{}", l.pod);
        let nodes: BTreeSet<&str> = std::iter::once(l.node.as_str()).chain(l.pvcs.iter().map(|(_, n)| n.as_str())).collect();
        plan.steps.push(Step {
            id: pod_step.clone(),
            title: format!("Force-delete pod {} (its node {} is gone)", l.pod, l.node),
            action: Action::ForceDeletePod { pod: ObjectRef::pod(ns, &l.pod) },
            needs: vec![],
            preconditions: nodes.iter().map(|n| Precondition::NodeStillLost { node: n.to_string() }).collect(),
            recovery_source: None,
        });
        let mut deletions = vec![];
        for (claim, node) in &l.pvcs {
            let id = format!("delete-pvc-{claim}");
            plan.steps.push(Step {
                id: id.clone(),
                title: format!("Delete PVC {claim} pinned to {node}"),
                action: Action::DeletePvc { pvc: ObjectRef::pvc(ns, claim), pinned_node: node.clone() },
                needs: std::iter::once(pod_step.clone()).chain(after.map(String::from)).collect(),
                preconditions: vec![Precondition::NodeStillLost { node: node.clone() }, Precondition::PodReady { pod: ObjectRef::pod(ns, donor) }],
                recovery_source: Some(source.clone()),
            });
            deletions.push(id);
        }
        if deletions.is_empty() {
            deletions.push(pod_step);
        }
        let wait = format!("wait-pod-{}", l.pod);
        plan.steps.push(Step {
            id: wait.clone(),
            title: format!("Wait until the operator re-provisions {} on a live node and it is Ready (SST done)", l.pod),
            action: Action::Wait { object: ObjectRef::pod(ns, &l.pod), until: condition("Ready", "True"), timeout_seconds: SST_TIMEOUT },
            needs: deletions,
            preconditions: vec![],
            recovery_source: None,
        });
        waits.push(wait);
    }
    waits
}

/// The quorum-loss branch: suspend Flux, set forceClusterBootstrapInPod,
/// wait for the bootstrapped member, replace the lost members from it, wait
/// for GaleraReady, unset the field, resume Flux. The field is a temporary
/// patch: if anything fails the runner unsets it anyway (left set, the next
/// Galera recovery would bootstrap from that pod again, whatever its data).
fn force_bootstrap(plan: &mut Plan, state: &ClusterState, mdb: &MariaDb, mdb_ref: &ObjectRef, ns: &str, lost: &[LostInstance], bootstrap: &str) {
    let pointer = restore_pointer(ns, name(&mdb.metadata));
    let flux = flux_owner(&mdb.metadata).map(|f| {
        let api_version = if f.kind == "HelmRelease" { "helm.toolkit.fluxcd.io/v2" } else { "kustomize.toolkit.fluxcd.io/v1" };
        let suspended = match f.kind.as_str() {
            "HelmRelease" => state.helm_releases.iter().find(|h| namespace(&h.metadata) == f.namespace && name(&h.metadata) == f.name).and_then(|h| h.spec.suspend),
            _ => state.kustomizations.iter().find(|k| namespace(&k.metadata) == f.namespace && name(&k.metadata) == f.name).and_then(|k| k.spec.suspend),
        };
        (ObjectRef::namespaced(api_version, &f.kind, &f.namespace, &f.name), suspended == Some(true))
    });
    let mut first = vec![];
    match &flux {
        Some((object, true)) => plan.findings.push(format!("{object} manages {mdb_ref} and is already suspended: left as it is (not resumed by this run)")),
        Some((object, false)) => {
            plan.findings.push(format!("{object} manages {mdb_ref}: suspended during the bootstrap so it does not revert the patch"));
            plan.steps.push(Step {
                id: "suspend-flux".into(),
                title: format!("Suspend {object}"),
                action: Action::SuspendFlux { object: object.clone(), keep_suspended: false },
                needs: vec![],
                preconditions: vec![],
                recovery_source: None,
            });
            first.push("suspend-flux".to_string());
        }
        None => plan.findings.push(format!("{mdb_ref} carries no Flux labels: nothing to suspend")),
    }
    let lost_nodes: BTreeSet<&str> = lost.iter().flat_map(|l| std::iter::once(l.node.as_str()).chain(l.pvcs.iter().map(|(_, n)| n.as_str()))).collect();
    let force = |pod: serde_json::Value| serde_json::json!({"spec": {"galera": {"recovery": {"forceClusterBootstrapInPod": pod}}}});
    plan.steps.push(Step {
        id: "force-bootstrap".into(),
        title: format!("Set spec.galera.recovery.forceClusterBootstrapInPod={bootstrap} (a lost node that returns may hold newer data: refused then)"),
        action: Action::TemporaryPatch { object: mdb_ref.clone(), patch: force(bootstrap.into()), revert: force(serde_json::Value::Null) },
        needs: first,
        preconditions: lost_nodes.iter().map(|n| Precondition::NodeStillLost { node: n.to_string() }).collect(),
        recovery_source: None,
    });
    plan.steps.push(Step {
        id: "wait-bootstrap-pod".into(),
        title: format!("Wait until {bootstrap} is Ready as the new primary component (if not: the bootstrap failed; {pointer})"),
        action: Action::Wait { object: ObjectRef::pod(ns, bootstrap), until: condition("Ready", "True"), timeout_seconds: BOOTSTRAP_TIMEOUT },
        needs: vec!["force-bootstrap".into()],
        preconditions: vec![],
        recovery_source: None,
    });
    let source = RecoverySource {
        description: format!("Galera SST from {bootstrap}, the force-bootstrapped primary component"),
        evidence: vec![format!("{bootstrap} chosen as bootstrap pod (see findings)"), format!("{bootstrap} must be Ready right before each deletion (no member was Ready when planning)")],
    };
    let mut waits = replace_lost_members(plan, ns, lost, bootstrap, &source, Some("wait-bootstrap-pod"));
    waits.insert(0, "wait-bootstrap-pod".into());
    plan.steps.push(Step {
        id: "wait-galera-ready".into(),
        title: format!("Wait for GaleraReady=True on {mdb_ref} (if not: the bootstrap did not converge; {pointer})"),
        action: Action::Wait { object: mdb_ref.clone(), until: condition("GaleraReady", "True"), timeout_seconds: BOOTSTRAP_TIMEOUT },
        needs: waits,
        preconditions: vec![],
        recovery_source: None,
    });
    plan.steps.push(Step {
        id: "unset-force-bootstrap".into(),
        title: "Unset spec.galera.recovery.forceClusterBootstrapInPod (the operator never clears it)".into(),
        action: Action::MergePatch { object: mdb_ref.clone(), patch: force(serde_json::Value::Null) },
        needs: vec!["wait-galera-ready".into()],
        preconditions: vec![],
        recovery_source: None,
    });
    if let Some((object, false)) = flux {
        plan.steps.push(Step {
            id: "resume-flux".into(),
            title: format!("Resume {object}"),
            action: Action::ResumeFlux { object },
            needs: vec!["unset-force-bootstrap".into()],
            preconditions: vec![],
            recovery_source: None,
        });
    }
}

/// The survivor to bootstrap from: the highest Galera seqno where the
/// operator reported one (`status.galeraRecovery.recovered`, else a valid
/// grastate seqno), otherwise the current primary, otherwise the configured
/// primary. Says which and why in `notes`; `None` when no choice is safe.
fn choose_bootstrap_pod(mdb: &MariaDb, survivors: &[&String], lost: &[LostInstance], notes: &mut Vec<String>) -> Option<String> {
    let recovery = mdb.status.galera_recovery.clone().unwrap_or_default();
    let position = |pod: &str| -> Option<(i64, String, &'static str)> {
        if let Some(p) = recovery.recovered.get(pod) {
            return Some((p.seqno, p.uuid.clone(), "status.galeraRecovery.recovered"));
        }
        recovery.state.get(pod).filter(|p| p.seqno >= 0).map(|p| (p.seqno, p.uuid.clone(), "grastate.dat (status.galeraRecovery.state)"))
    };
    let known: Vec<(&String, (i64, String, &'static str))> = survivors.iter().filter_map(|p| position(p).map(|pos| (*p, pos))).collect();
    if !known.is_empty() {
        let uuids: BTreeSet<&str> = known.iter().map(|(_, (_, u, _))| u.as_str()).filter(|u| !u.is_empty()).collect();
        let listed = known.iter().map(|(p, (s, _, from))| format!("{p}={s} ({from})")).collect::<Vec<_>>().join(", ");
        if uuids.len() > 1 {
            notes.push(format!("survivors report different cluster UUIDs ({}): their seqnos ({listed}) are not comparable", uuids.into_iter().collect::<Vec<_>>().join(", ")));
            return None;
        }
        let best = known.iter().map(|(_, (s, _, _))| *s).max().expect("not empty");
        let chosen = known.iter().find(|(_, (s, _, _))| *s == best).map(|(p, _)| p.to_string()).expect("max exists");
        let tied = known.iter().filter(|(_, (s, _, _))| *s == best).count() > 1;
        notes.push(format!("bootstrap pod {chosen}: highest Galera seqno {best} among the survivors ({listed}){}", if tied { "; tied, the lowest index wins" } else { "" }));
        let unknown: Vec<&String> = survivors.iter().copied().filter(|p| position(p).is_none()).collect();
        if !unknown.is_empty() {
            notes.push(format!("WARNING: no seqno for {}: if one of them is further ahead, its newer writes are lost", join(&unknown)));
        }
        for l in lost {
            if let Some((s, _, _)) = position(&l.pod).filter(|(s, _, _)| *s > best) {
                notes.push(format!("WARNING: lost member {} reported seqno {s} > {best}: writes after {best} exist only on the lost node's disk and are discarded", l.pod));
            }
        }
        return Some(chosen);
    }
    let is_survivor = |p: &str| survivors.iter().any(|s| s.as_str() == p);
    if let Some(primary) = mdb.status.current_primary.as_deref().filter(|p| is_survivor(p)) {
        notes.push(format!("bootstrap pod {primary}: no Galera seqno is readable (status.galeraRecovery), so the original primary (status.currentPrimary) is chosen"));
        return Some(primary.to_string());
    }
    let configured = mdb.spec.galera.as_ref().and_then(|g| g.primary.as_ref()).and_then(|p| p.pod_index).map(|i| format!("{}-{i}", name(&mdb.metadata)));
    if let Some(primary) = configured.filter(|p| is_survivor(p)) {
        notes.push(format!("bootstrap pod {primary}: no Galera seqno is readable and the current primary is not a survivor, so the configured primary (spec.galera.primary.podIndex) is chosen"));
        return Some(primary);
    }
    notes.push(format!(
        "no Galera seqno is readable (status.galeraRecovery) and neither the current primary ({}) nor the configured primary survives",
        mdb.status.current_primary.as_deref().unwrap_or("unknown")
    ));
    None
}

fn restore_pointer(ns: &str, mdb: &str) -> String {
    format!(
        "restore from the S3 backup: `kubectl get backups.k8s.mariadb.com -n {ns}` for the Backup of {mdb}, then a Restore (k8s.mariadb.com/v1alpha1) with spec.mariaDbRef.name={mdb} and spec.backupRef.name=<backup> (runbook: MariaDB Galera, S3 restore fallback)"
    )
}

fn condition(condition: &str, status: &str) -> WaitCondition {
    WaitCondition::ConditionIs { condition: condition.into(), status: status.into() }
}

fn force_bootstrap_pod(mdb: &MariaDb) -> Option<&str> {
    mdb.spec.galera.as_ref()?.recovery.as_ref()?.force_cluster_bootstrap_in_pod.as_deref().filter(|p| !p.is_empty())
}

fn pod_object<'a>(state: &'a ClusterState, ns: &str, pod: &str) -> Option<&'a std::sync::Arc<crate::cluster::resources::Pod>> {
    state.pods.iter().find(|p| namespace(&p.metadata) == ns && name(&p.metadata) == pod)
}

/// Running, not being deleted, every container ready, and the Ready condition
/// (when reported) True: a pod on a dead node keeps stale container statuses.
fn pod_ready(state: &ClusterState, ns: &str, pod: &str) -> bool {
    pod_object(state, ns, pod).is_some_and(|p| {
        p.metadata.deletion_timestamp.is_none()
            && p.status.phase.as_deref() == Some("Running")
            && !p.status.container_statuses.is_empty()
            && p.status.container_statuses.iter().all(|c| c.ready)
            && find_condition(&p.status.conditions, "Ready").is_none_or(|c| c.status == "True")
    })
}

fn join(pods: &[&String]) -> String {
    pods.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
}
