//! `mariadb-instance-lost`: recovering a MariaDB Galera member lost with its node, checked
//! against mariadb-operator v25.10.4 (pkg/controller/galera/recovery.go,
//! recovery_status.go, internal/controller/statefulset_galera_controller.go).
//! While a surviving member is Ready (the cluster holds quorum), force-delete
//! the lost member's pod and delete its `storage-`/`galera-` PVCs so the
//! operator re-provisions it on a live node and Galera SST-syncs it.
//! When quorum is lost the lost member's storage goes first, before any wait:
//! the operator's recovery needs a seqno from every member before it picks a
//! bootstrap pod and restarts every member afterwards, which a member Pending
//! on a lost node's claim never allows. With the operator's recovery on,
//! lifeboat leaves the bootstrap to it and forces one only when the recovery
//! is demonstrably stuck; with it off, lifeboat turns it on together with
//! `forceClusterBootstrapInPod` for the run (the operator reads the field only
//! inside its recovery), with Flux suspended, and restores both afterwards.
//! A MariaDB without Galera has no other copy: nothing of it is deleted.

use std::collections::BTreeSet;

use crate::cluster::resources::{find_condition, MariaDb};
use crate::cluster::{flux_owner, name, namespace, ClusterState};
use crate::inspect::mariadb::{galera_enabled, recovery_enabled, RecoveryTimeouts};
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
            findings.lost_volumes.iter().find(|v| v.claim_namespace.as_deref() == Some(ns) && v.claim_name.as_deref() == Some(claim.as_str())).map(|v| (claim, v.node.clone()))
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
    if !galera_enabled(mdb) {
        if !lost.is_empty() {
            plan.findings.push(format!(
                "{mdb_ref} does not run Galera (spec.galera.enabled is not true): its data has no other copy in the cluster, so its PVCs are never deleted; \
                 bring the node back, or {}",
                restore_pointer(ns, mdb_name)
            ));
        }
        return Ok(plan);
    }
    let recovery_on = recovery_enabled(mdb);
    plan.findings.push(format!(
        "GaleraReady {}; Ready survivors: {}; mariadb-operator's own Galera recovery (spec.galera.recovery.enabled) is {}",
        match galera_ready {
            Some(true) => "True",
            Some(false) => "False",
            None => "not reported",
        },
        if ready.is_empty() { "none".to_string() } else { join(&ready) },
        if recovery_on { "on" } else { "off" }
    ));
    if let Some(pod) = force_bootstrap_pod(mdb) {
        plan.findings.push(format!("spec.galera.recovery.forceClusterBootstrapInPod is already set to {pod} (the operator never clears it)"));
    }
    // With the recovery on, the operator's health check reports a lost
    // primary component as GaleraReady False; with it off nothing does, and
    // survivors that run but never turn Ready (the readiness probe wants a
    // Synced member of the primary component) are the evidence.
    let survivors_running = survivors.iter().all(|p| pod_running_on_live_node(state, findings, ns, p));
    let quorum_lost = ready.is_empty() && !survivors.is_empty() && if recovery_on { galera_ready == Some(false) } else { survivors_running };
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
        let deletions = delete_lost_storage(&mut plan, ns, &lost, Some(ready[0]), &source);
        let waits = wait_for_members(&mut plan, ns, &deletions);
        wait_galera_ready(&mut plan, &mdb_ref, waits, READY_TIMEOUT, None);
        return Ok(plan);
    }
    if !quorum_lost {
        let why = if recovery_on {
            format!(
                "the operator does not report GaleraReady False: there is no evidence that quorum is lost (its health check reports it after clusterHealthyTimeout, {}s)",
                RecoveryTimeouts::of(mdb).cluster_healthy
            )
        } else {
            "not every survivor is Running on a live node: there is no evidence that quorum is lost (the survivors may still be starting)".to_string()
        };
        plan.findings.push(format!("no survivor is Ready, but {why}; nothing deleted, nothing bootstrapped — plan again in a minute, or {}", restore_pointer(ns, mdb_name)));
        return Ok(plan);
    }
    plan.findings.push(if recovery_on {
        "quorum lost: no survivor is Ready and GaleraReady is False (the survivors cannot reach the primary view)".into()
    } else {
        format!("quorum lost: the survivors {} run but none is Ready (none is a Synced member of a primary component)", join(&survivors))
    });
    if recovery_on {
        if !lost.is_empty() {
            leave_recovery_to_the_operator(&mut plan, mdb, &mdb_ref, ns, &lost, &survivors);
            return Ok(plan);
        }
        match recovery_stuck(mdb, &instances, state.now) {
            Err(progress) => {
                plan.findings.push(format!("the operator's recovery is not stuck: {progress}; lifeboat does not interfere — plan again if it stays down"));
                return Ok(plan);
            }
            Ok(stuck) => plan.findings.push(format!("the operator's recovery is stuck: {stuck}; lifeboat forces the bootstrap")),
        }
    } else {
        plan.findings.push(
            "mariadb-operator neither detects nor recovers a lost quorum while spec.galera.recovery.enabled is off, and acts on forceClusterBootstrapInPod only \
             inside that recovery: lifeboat turns the recovery on together with forceClusterBootstrapInPod for the run, and back off afterwards"
                .into(),
        );
    }
    let Some(bootstrap) = choose_bootstrap_pod(mdb, &survivors, &lost, &mut plan.findings) else {
        plan.findings.push(format!("no bootstrap pod can be chosen safely: nothing done; decide by hand or {}", restore_pointer(ns, mdb_name)));
        return Ok(plan);
    };
    force_bootstrap(&mut plan, state, mdb, &mdb_ref, ns, &lost, &bootstrap, !recovery_on);
    Ok(plan)
}

/// Quorum lost with the operator's recovery on and a member on a lost node:
/// the operator picks a bootstrap pod only once every member reports a seqno
/// and restarts every member after the bootstrap, so a member Pending on a
/// claim pinned to the lost node holds it forever. Its storage goes first,
/// then the operator does the rest; no bootstrap is forced.
fn leave_recovery_to_the_operator(plan: &mut Plan, mdb: &MariaDb, mdb_ref: &ObjectRef, ns: &str, lost: &[LostInstance], survivors: &[&String]) {
    let t = RecoveryTimeouts::of(mdb);
    let lost_pods = lost.iter().map(|l| l.pod.as_str()).collect::<Vec<_>>().join(", ");
    plan.findings.push(format!(
        "the operator's own recovery is on: lifeboat does not force a bootstrap. It deletes the storage of {lost_pods} first — mariadb-operator chooses a \
         bootstrap pod only once every member reports a Galera seqno (status.galeraRecovery) and then restarts every member in turn, and a member Pending \
         on a claim pinned to a lost node never does either — then waits for the operator to bootstrap from the most advanced survivor"
    ));
    let recovery = mdb.status.galera_recovery.clone().unwrap_or_default();
    let evidence = survivors
        .iter()
        .map(|p| match recovery.recovered.get(p.as_str()).or(recovery.state.get(p.as_str())) {
            Some(pos) => format!("{p} keeps its storage on a live node (seqno {} reported)", pos.seqno),
            None => format!("{p} keeps its storage on a live node (no seqno reported yet)"),
        })
        .collect();
    let source = RecoverySource {
        description: format!("the survivors {}: mariadb-operator bootstraps from the most advanced one, then the new member SST-syncs from it", join(survivors)),
        evidence,
    };
    let deletions = delete_lost_storage(plan, ns, lost, None, &source);
    let waits = wait_for_members(plan, ns, &deletions);
    // The operator's own bounds: seqno recovery, one bootstrap attempt, each member's sync.
    let members = mdb.spec.replicas.unwrap_or(1).max(1) as u64;
    let bound = t.pod_recovery + t.cluster_bootstrap + members * t.pod_sync;
    let stuck = format!(
        "if not: the operator's recovery is stuck; plan again — once GaleraReady has been False for longer than clusterBootstrapTimeout ({}s) without a \
         bootstrap in progress the plan forces one",
        t.cluster_bootstrap
    );
    wait_galera_ready(plan, mdb_ref, waits, bound.max(READY_TIMEOUT), Some(&stuck));
}

/// Why the operator's recovery is stuck (`Ok`), or why it is still making
/// progress (`Err`). mariadb-operator v25.10.4 (pkg/controller/galera/
/// recovery.go, recovery_status.go) resets a bootstrap that has not
/// converged after clusterBootstrapTimeout and tries again; before choosing
/// a bootstrap pod it needs a seqno for every member and has no timeout.
/// Stuck: GaleraReady False for longer than clusterBootstrapTimeout and no
/// bootstrap started within that timeout.
fn recovery_stuck(mdb: &MariaDb, instances: &[String], now: chrono::DateTime<chrono::Utc>) -> Result<String, String> {
    let t = RecoveryTimeouts::of(mdb).cluster_bootstrap;
    let since = find_condition(&mdb.status.conditions, "GaleraReady").and_then(|c| c.last_transition_time);
    let Some(since) = since else {
        return Err("GaleraReady False carries no lastTransitionTime, so how long the recovery has run is unknown".into());
    };
    let down = (now - since).num_seconds().max(0) as u64;
    let recovery = mdb.status.galera_recovery.clone().unwrap_or_default();
    if let Some(bootstrap) = &recovery.bootstrap {
        let pod = bootstrap.pod.as_deref().unwrap_or("an unnamed pod");
        let age = bootstrap.time.map(|time| (now - time).num_seconds().max(0) as u64);
        match age {
            Some(age) if age <= t => return Err(format!("it started bootstrapping from {pod} {age}s ago (status.galeraRecovery.bootstrap; clusterBootstrapTimeout {t}s)")),
            Some(age) => return Ok(format!("its bootstrap from {pod} started {age}s ago, past clusterBootstrapTimeout ({t}s), and was never reset")),
            None => return Err(format!("it is bootstrapping from {pod} (status.galeraRecovery.bootstrap, no start time)")),
        }
    }
    if down <= t {
        return Err(format!("GaleraReady has been False for {down}s, not longer than clusterBootstrapTimeout ({t}s), and the operator is still collecting seqnos"));
    }
    let missing: Vec<&String> = instances.iter().filter(|p| !recovery.recovered.contains_key(p.as_str()) && !recovery.state.contains_key(p.as_str())).collect();
    let lacking = if missing.is_empty() { String::new() } else { format!("; no seqno for {}", join(&missing)) };
    Ok(format!(
        "GaleraReady has been False for {down}s (longer than clusterBootstrapTimeout, {t}s) and no bootstrap pod was chosen (status.galeraRecovery.bootstrap unset{lacking})"
    ))
}

/// Force-delete each lost member's pod and delete its pinned PVCs (with
/// `donor` re-checked Ready before each deletion when there is one). Returns,
/// per member, the steps its re-provisioning waits for.
fn delete_lost_storage(plan: &mut Plan, ns: &str, lost: &[LostInstance], donor: Option<&str>, source: &RecoverySource) -> Vec<(String, Vec<String>)> {
    let mut out = vec![];
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
            let mut preconditions = vec![Precondition::NodeStillLost { node: node.clone() }];
            preconditions.extend(donor.map(|d| Precondition::PodReady { pod: ObjectRef::pod(ns, d) }));
            plan.steps.push(Step {
                id: id.clone(),
                title: format!("Delete PVC {claim} pinned to {node}"),
                action: Action::DeletePvc { pvc: ObjectRef::pvc(ns, claim), pinned_node: node.clone() },
                needs: vec![pod_step.clone()],
                preconditions,
                recovery_source: Some(source.clone()),
            });
            deletions.push(id);
        }
        if deletions.is_empty() {
            deletions.push(pod_step);
        }
        out.push((l.pod.clone(), deletions));
    }
    out
}

/// Wait for each re-provisioned member to be Ready; returns the waits.
fn wait_for_members(plan: &mut Plan, ns: &str, deletions: &[(String, Vec<String>)]) -> Vec<String> {
    let mut waits = vec![];
    for (pod, needs) in deletions {
        let wait = format!("wait-pod-{pod}");
        plan.steps.push(Step {
            id: wait.clone(),
            title: format!("Wait until the operator re-provisions {pod} on a live node and it is Ready (SST done)"),
            action: Action::Wait { object: ObjectRef::pod(ns, pod), until: condition("Ready", "True"), timeout_seconds: SST_TIMEOUT },
            needs: needs.clone(),
            preconditions: vec![],
            recovery_source: None,
        });
        waits.push(wait);
    }
    waits
}

/// Wait for GaleraReady, then Ready, on the MariaDB.
fn wait_galera_ready(plan: &mut Plan, mdb_ref: &ObjectRef, needs: Vec<String>, timeout_seconds: u64, otherwise: Option<&str>) {
    let suffix = otherwise.map_or(String::new(), |o| format!(" ({o})"));
    plan.steps.push(Step {
        id: "wait-galera-ready".into(),
        title: format!("Wait for GaleraReady=True on {mdb_ref}{suffix}"),
        action: Action::Wait { object: mdb_ref.clone(), until: condition("GaleraReady", "True"), timeout_seconds },
        needs,
        preconditions: vec![],
        recovery_source: None,
    });
    plan.steps.push(Step {
        id: "wait-ready".into(),
        title: format!("Wait for Ready=True on {mdb_ref}"),
        action: Action::Wait { object: mdb_ref.clone(), until: condition("Ready", "True"), timeout_seconds: READY_TIMEOUT },
        needs: vec!["wait-galera-ready".into()],
        preconditions: vec![],
        recovery_source: None,
    });
}

/// The forced bootstrap: suspend Flux, delete the lost members' storage (the
/// operator restarts every member after the bootstrap pod and cannot finish
/// while one is Pending), set forceClusterBootstrapInPod (with the recovery
/// turned on when it was off: the operator reads the field only inside its
/// recovery), wait for the bootstrapped member, the re-provisioned ones and
/// GaleraReady, restore the recovery settings, resume Flux. The patch is
/// temporary: if anything fails the runner reverts it anyway (left set, the
/// next Galera recovery would bootstrap from that pod again, whatever its data).
#[allow(clippy::too_many_arguments)]
fn force_bootstrap(plan: &mut Plan, state: &ClusterState, mdb: &MariaDb, mdb_ref: &ObjectRef, ns: &str, lost: &[LostInstance], bootstrap: &str, enable_recovery: bool) {
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
    let source = RecoverySource {
        description: format!("Galera SST from {bootstrap}, the force-bootstrapped primary component"),
        evidence: vec![format!("{bootstrap} chosen as bootstrap pod (see findings)"), format!("{bootstrap} keeps its storage on a live node")],
    };
    let deletions = delete_lost_storage(plan, ns, lost, None, &source);
    let lost_nodes: BTreeSet<&str> = lost.iter().flat_map(|l| std::iter::once(l.node.as_str()).chain(l.pvcs.iter().map(|(_, n)| n.as_str()))).collect();
    let recovery = |enabled: Option<bool>, pod: serde_json::Value| {
        let mut r = serde_json::json!({"forceClusterBootstrapInPod": pod});
        if let Some(enabled) = enabled {
            r["enabled"] = enabled.into();
        }
        serde_json::json!({"spec": {"galera": {"recovery": r}}})
    };
    let enabled = enable_recovery.then_some(true);
    let restored = enable_recovery.then_some(false);
    let title = if enable_recovery {
        format!("Turn on spec.galera.recovery with forceClusterBootstrapInPod={bootstrap} (a lost node that returns may hold newer data: refused then)")
    } else {
        format!("Set spec.galera.recovery.forceClusterBootstrapInPod={bootstrap} (a lost node that returns may hold newer data: refused then)")
    };
    plan.steps.push(Step {
        id: "force-bootstrap".into(),
        title,
        action: Action::TemporaryPatch { object: mdb_ref.clone(), patch: recovery(enabled, bootstrap.into()), revert: recovery(restored, serde_json::Value::Null) },
        needs: first.iter().cloned().chain(deletions.iter().flat_map(|(_, d)| d.iter().cloned())).collect(),
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
    let mut waits = wait_for_members(plan, ns, &deletions);
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
        title: if enable_recovery {
            "Unset spec.galera.recovery.forceClusterBootstrapInPod and turn the recovery back off (the operator never clears the field)".into()
        } else {
            "Unset spec.galera.recovery.forceClusterBootstrapInPod (the operator never clears it)".into()
        },
        action: Action::MergePatch { object: mdb_ref.clone(), patch: recovery(restored, serde_json::Value::Null) },
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
        notes.push(format!(
            "bootstrap pod {primary}: no Galera seqno is readable and the current primary is not a survivor, so the configured primary (spec.galera.primary.podIndex) is chosen"
        ));
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

/// Scheduled on a node that is not lost, Running and not being deleted: its
/// readiness probe, not its node, decides whether it is Ready.
fn pod_running_on_live_node(state: &ClusterState, findings: &Findings, ns: &str, pod: &str) -> bool {
    let lost: BTreeSet<&str> = findings.lost_nodes().map(|n| n.node.as_str()).collect();
    pod_object(state, ns, pod)
        .is_some_and(|p| p.metadata.deletion_timestamp.is_none() && p.status.phase.as_deref() == Some("Running") && p.spec.node_name.as_deref().is_some_and(|n| !lost.contains(n)))
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

/// `mariadb-instance-lost`.
pub struct InstanceLost;

impl super::Playbook for InstanceLost {
    fn info(&self) -> super::PlaybookInfo {
        super::PlaybookInfo {
            name: PLAYBOOK,
            arguments: "-n NAMESPACE --name MARIADB",
            summary: "re-provision a lost MariaDB Galera member; force a bootstrap when quorum is lost",
        }
    }

    fn default_routes(&self) -> Vec<crate::config::Route> {
        vec![
            crate::config::Route::new("LifeboatMariadbInstanceOnLostNode", self.name(), &[("namespace", "namespace"), ("name", "name")]),
            crate::config::Route::new("LifeboatMariadbGaleraNotReady", self.name(), &[("namespace", "namespace"), ("name", "name")]),
        ]
    }

    fn plan(&self, state: &ClusterState, findings: &Findings, trigger: &super::Trigger) -> Result<Plan, super::PlanError> {
        instance_lost(state, findings, trigger.require_namespace(self.name())?, trigger.require_name(self.name(), "--name (the MariaDB)")?)
    }
}
