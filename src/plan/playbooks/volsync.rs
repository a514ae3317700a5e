//! `volsync-restore`: restoring one app from its VolSync (Kopia) backup, for one app PVC whose volume is pinned to a lost node. Everything
//! is discovered from the state: the workload and its replica count (pods →
//! owner references), the Flux objects that would fight the run (Flux
//! labels), the ReplicationSource/Destination pair, the PVC's size, class and
//! access modes, and the mover cache PVCs stuck on the lost node.
//!
//! Steps: suspend Flux → scale the workload to 0 and pause the source →
//! force-delete pods stuck on the lost node, wait until nothing mounts the
//! claims → delete the app PVC (and cache PVCs on the lost node) → re-create
//! the PVC without node affinity → trigger the destination with a unique
//! manual token → wait for `lastManualSync == token`, then a Successful
//! result → scale back, resume the source, resume Flux.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use crate::cluster::marks::{ssa_if_not_present, NOTHING_RESTORED_MARKERS, SSA_IF_NOT_PRESENT, SSA_KEY};
use crate::cluster::resources::{PersistentVolumeClaim, ReplicationDestination, ReplicationSource};
use crate::cluster::{flux_owner, name, namespace, ClusterState, FluxRef};
use crate::inspect::volsync::kopia_identity;
use crate::inspect::Findings;
use crate::plan::playbooks::{PlanError, Trigger};
use crate::plan::{Action, ObjectRef, Plan, Precondition, RecoverySource, Step, WaitCondition};

pub const PLAYBOOK: &str = "volsync-restore";
const VOLSYNC: &str = "volsync.backube/v1alpha1";
const CLAIM_RELEASE_TIMEOUT: u64 = 600;
const RESTORE_TIMEOUT: u64 = 4 * 3600;

/// PVCs pinned to a lost node that a VolSync ReplicationDestination restores
/// (one trigger each, node set): what the composed node-loss playbook hands
/// to [`restore`].
pub fn affected(state: &ClusterState, findings: &Findings) -> Vec<Trigger> {
    let mut out: Vec<Trigger> = findings
        .lost_volumes
        .iter()
        .filter_map(|v| {
            let (ns, claim) = (v.claim_namespace.as_deref()?, v.claim_name.as_deref()?);
            let rd = destination_for(state, ns, claim)?;
            (rd.mover().and_then(|m| m.destination_pvc.as_deref()) == Some(claim)).then(|| Trigger {
                namespace: Some(ns.into()),
                name: Some(claim.into()),
                node: Some(v.node.clone()),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out.dedup();
    out
}

/// The destination that restores into `claim`: its `destinationPVC`, else
/// the `<claim>-dst` naming convention.
fn destination_for<'a>(state: &'a ClusterState, ns: &str, claim: &str) -> Option<&'a ReplicationDestination> {
    let in_ns = || state.replication_destinations.iter().filter(move |rd| namespace(&rd.metadata) == ns);
    let by_pvc = in_ns().find(|rd| rd.mover().and_then(|m| m.destination_pvc.as_deref()) == Some(claim));
    by_pvc.or_else(|| in_ns().find(|rd| name(&rd.metadata) == format!("{claim}-dst"))).map(|rd| rd.as_ref())
}

/// The source that backs `claim` up: `sourcePVC`, else the destination's
/// `sourceIdentity.sourceName`.
fn source_for<'a>(state: &'a ClusterState, ns: &str, claim: &str, rd: &ReplicationDestination) -> Option<&'a ReplicationSource> {
    let in_ns = || state.replication_sources.iter().filter(move |rs| namespace(&rs.metadata) == ns);
    let by_pvc = in_ns().find(|rs| rs.spec.source_pvc.as_deref() == Some(claim));
    let identity = rd.mover().and_then(|m| m.source_identity.as_ref()).and_then(|i| i.source_name.as_deref());
    by_pvc.or_else(|| in_ns().find(|rs| Some(name(&rs.metadata)) == identity)).map(|rs| rs.as_ref())
}

fn rd_ref(ns: &str, rd: &str) -> ObjectRef {
    ObjectRef::namespaced(VOLSYNC, "ReplicationDestination", ns, rd)
}

fn rs_ref(ns: &str, rs: &str) -> ObjectRef {
    ObjectRef::namespaced(VOLSYNC, "ReplicationSource", ns, rs)
}

fn flux_ref(f: &FluxRef) -> ObjectRef {
    let api_version = if f.kind == "HelmRelease" { "helm.toolkit.fluxcd.io/v2" } else { "kustomize.toolkit.fluxcd.io/v1" };
    ObjectRef::namespaced(api_version, &f.kind, &f.namespace, &f.name)
}

fn step(id: &str, title: String, action: Action, needs: &[&str], preconditions: Vec<Precondition>) -> Step {
    Step { id: id.into(), title, action, needs: needs.iter().map(|s| s.to_string()).collect(), preconditions, recovery_source: None }
}

pub fn restore(state: &ClusterState, findings: &Findings, ns: &str, claim: &str) -> Result<Plan, PlanError> {
    let pvc = state.pvc(ns, claim).ok_or_else(|| PlanError::NotFound(format!("PersistentVolumeClaim {ns}/{claim}")))?;
    let pvc_ref = ObjectRef::pvc(ns, claim);
    let mut plan = Plan::new(PLAYBOOK, pvc_ref.to_string());
    let lost_node_of =
        |ns: &str, claim: &str| findings.lost_volumes.iter().find(|v| v.claim_namespace.as_deref() == Some(ns) && v.claim_name.as_deref() == Some(claim)).map(|v| v.node.clone());
    let Some(node) = lost_node_of(ns, claim) else {
        plan.findings.push(format!("{pvc_ref} is not pinned to a lost node: nothing to do"));
        return Ok(plan);
    };
    plan.findings.push(format!("{pvc_ref} is pinned to lost node {node}"));
    let Some(rd) = destination_for(state, ns, claim) else {
        plan.findings.push(format!("no ReplicationDestination restores {pvc_ref} (looked for destinationPVC {claim} and {claim}-dst): not a VolSync app, nothing to do"));
        return Ok(plan);
    };
    let rd_name = name(&rd.metadata).to_string();
    let rd_obj = rd_ref(ns, &rd_name);
    let Some(mover) = rd.mover() else {
        plan.findings.push(format!("{rd_obj} has no kopia/restic mover section: nothing to do"));
        return Ok(plan);
    };
    if mover.destination_pvc.as_deref() != Some(claim) {
        plan.findings.push(format!("{rd_obj} does not restore into {claim} (spec.kopia.destinationPVC is {:?}): nothing to do", mover.destination_pvc));
        return Ok(plan);
    }
    if rd.spec.paused == Some(true) {
        plan.findings.push(format!(
            "REFUSED: {rd_obj} is paused — the kopia fork reports a paused restore as complete without running it; set spec.paused: false and plan again. Nothing is deleted."
        ));
        return Ok(plan);
    }
    let rs = source_for(state, ns, claim, rd);
    let rs_name = rs.map(|r| name(&r.metadata).to_string());
    let rs_paused_before = rs.is_some_and(|r| r.spec.paused == Some(true));

    // The recovery point: a real backup by an unpaused source, or a past
    // restore through this destination that actually restored something.
    let mut evidence = vec![];
    let mut recovery_point = None;
    match rs {
        Some(rs) if rs_paused_before => plan.findings.push(format!(
            "{} is paused: its lastSyncTime is not evidence of a backup (the kopia fork completes paused syncs without running); the newest snapshot's age is unknown",
            rs_ref(ns, name(&rs.metadata))
        )),
        Some(rs) => match rs.status.last_sync_time {
            Some(t) => {
                let snapshot = rs.status.latest_mover_status.as_ref().and_then(|m| m.logs.as_deref()).and_then(snapshot_id);
                evidence.push(format!(
                    "{} last backed up {} ({} old){}",
                    rs_ref(ns, name(&rs.metadata)),
                    t.to_rfc3339(),
                    age(state.now - t),
                    snapshot.map_or(String::new(), |s| format!(", kopia snapshot {s}"))
                ));
                recovery_point = Some(t);
            }
            None => plan.findings.push(format!("{} has never completed a backup", rs_ref(ns, name(&rs.metadata)))),
        },
        None => plan.findings.push(format!("no ReplicationSource backs up {pvc_ref}: the snapshot age is unknown")),
    }
    let rd_restored = rd.status.last_sync_time.filter(|_| {
        let m = rd.status.latest_mover_status.as_ref();
        m.and_then(|m| m.result.as_deref()) == Some("Successful") && !m.and_then(|m| m.logs.as_deref()).is_some_and(|l| NOTHING_RESTORED_MARKERS.iter().any(|x| l.contains(x)))
    });
    if let Some(t) = rd_restored {
        evidence.push(format!("{rd_obj} last restored successfully {}", t.to_rfc3339()));
    }
    if let Some(sync_start) = rs.and_then(|r| r.status.last_sync_start_time) {
        plan.findings.push(format!("a backup has been in progress since {}: it cannot finish (the volume is on a lost node)", sync_start.to_rfc3339()));
    }
    if evidence.is_empty() {
        plan.findings.push(format!("no snapshot to restore {pvc_ref} from (no backup by an unpaused source, no successful restore through {rd_obj}): deleting nothing"));
        return Ok(plan);
    }
    // The identity the mover looks snapshots up by must be the one the
    // source writes them under; else it finds "No eligible snapshots" only
    // after the claim is gone.
    let identity_check = match identity_check(rd, rs, &rd_obj, ns) {
        Ok(Some((check, said))) => {
            evidence.push(said);
            Some(check)
        }
        Ok(None) => None,
        Err(refusal) => {
            plan.findings.push(refusal);
            return Ok(plan);
        }
    };
    let repository = mover.repository.clone().unwrap_or_else(|| "(unnamed)".into());
    let identity = mover.source_identity.as_ref().and_then(|i| i.source_name.clone()).or_else(|| rs_name.clone()).unwrap_or_else(|| claim.to_string());
    let source =
        RecoverySource { description: format!("the newest kopia snapshot of source {identity} in repository {repository}, restored through {rd_obj}"), evidence: evidence.clone() };
    plan.findings.push(match recovery_point {
        Some(t) => format!("recovery point: backup of {} ({} old); changes since then are lost", t.to_rfc3339(), age(state.now - t)),
        None => "recovery point: UNKNOWN age (only a past restore proves the repository holds a snapshot)".into(),
    });
    if let Some(as_of) = &mover.restore_as_of {
        plan.findings.push(format!("{rd_obj} has restoreAsOf {as_of}: cleared so the newest snapshot is restored"));
    }

    // The workload(s) mounting the claim, and how many replicas to restore.
    let mut workloads = BTreeSet::new();
    let mut others = BTreeSet::new();
    for pod in state.pods_using_claim(ns, claim) {
        match state.workload_of(pod) {
            Some(w) if w.kind == "Deployment" || w.kind == "StatefulSet" => {
                workloads.insert(w);
            }
            Some(w) => {
                others.insert(w.to_string());
            }
            None => {
                others.insert(format!("bare Pod {ns}/{}", name(&pod.metadata)));
            }
        }
    }
    if !others.is_empty() {
        plan.findings.push(format!("also mounted by {} (not scaled: movers stop with the paused source)", others.into_iter().collect::<Vec<_>>().join(", ")));
    }
    let mut scaled = vec![];
    for w in &workloads {
        let found = match w.kind.as_str() {
            "Deployment" => state.deployments.iter().find(|d| namespace(&d.metadata) == ns && name(&d.metadata) == w.name).map(|d| (d.spec.replicas, d.metadata.clone())),
            _ => state.stateful_sets.iter().find(|s| namespace(&s.metadata) == ns && name(&s.metadata) == w.name).map(|s| (s.spec.replicas, s.metadata.clone())),
        };
        let Some((replicas, meta)) = found else {
            plan.findings.push(format!("{w} is not in the state: not scaled"));
            continue;
        };
        let replicas = replicas.unwrap_or(1);
        plan.findings.push(format!("{w} runs {replicas} replica(s): scaled to 0 during the restore and back to {replicas}"));
        scaled.push((ObjectRef::namespaced("apps/v1", &w.kind, ns, &w.name), replicas, meta));
    }
    if workloads.is_empty() {
        plan.findings.push(format!("no Deployment or StatefulSet mounts {pvc_ref}: nothing to scale"));
    }

    // Flux objects that would re-apply what the run changes.
    let mut flux: BTreeSet<FluxRef> = BTreeSet::new();
    let mut metas = vec![pvc.metadata.clone(), rd.metadata.clone()];
    metas.extend(rs.map(|r| r.metadata.clone()));
    metas.extend(scaled.iter().map(|(_, _, m)| m.clone()));
    for meta in &metas {
        if let Some(owner) = flux_owner(meta) {
            if owner.kind == "HelmRelease" {
                let hr = state.helm_releases.iter().find(|h| namespace(&h.metadata) == owner.namespace && name(&h.metadata) == owner.name);
                flux.extend(hr.and_then(|h| flux_owner(&h.metadata)));
            }
            flux.insert(owner);
        }
    }
    let mut suspended = vec![];
    for f in &flux {
        let spec_suspend = match f.kind.as_str() {
            "HelmRelease" => state.helm_releases.iter().find(|h| namespace(&h.metadata) == f.namespace && name(&h.metadata) == f.name).map(|h| h.spec.suspend),
            _ => state.kustomizations.iter().find(|k| namespace(&k.metadata) == f.namespace && name(&k.metadata) == f.name).map(|k| k.spec.suspend),
        };
        match spec_suspend {
            None => plan.findings.push(format!("Flux labels name {} {}/{}, which does not exist: not suspended", f.kind, f.namespace, f.name)),
            Some(Some(true)) => plan.findings.push(format!("{} {}/{} is already suspended: left as it is", f.kind, f.namespace, f.name)),
            Some(_) => suspended.push(flux_ref(f)),
        }
    }
    let rd_flux = rd_under_flux(rd, &rd_obj, &suspended);
    if let RdUnderFlux::Reapplied { finding, follow_up, .. } = &rd_flux {
        plan.findings.push(finding.clone());
        plan.follow_ups.push(follow_up.clone());
    }

    // Mover cache PVCs stuck on the lost node, and pods that can never finish there.
    let mut caches = vec![];
    if let Some(rs_name) = &rs_name {
        caches.push(format!("volsync-src-{rs_name}-cache"));
    }
    caches.push(format!("volsync-dst-{rd_name}-cache"));
    caches.retain(|c| state.pvc(ns, c).is_some() && lost_node_of(ns, c).as_deref() == Some(node.as_str()));
    let claims: Vec<&str> = std::iter::once(claim).chain(caches.iter().map(String::as_str)).collect();
    let mut stuck_pods: BTreeSet<String> = BTreeSet::new();
    for c in &claims {
        stuck_pods.extend(state.pods_using_claim(ns, c).filter(|p| p.spec.node_name.as_deref() == Some(node.as_str())).map(|p| name(&p.metadata).to_string()));
    }

    let still_lost = Precondition::NodeStillLost { node: node.clone() };
    let rd_ready = Precondition::NotPaused { object: rd_obj.clone() };
    let token = restore_token(ns, pvc, rd);
    plan.findings.push(format!("restore token {token} (derived from the PVC, its creation time and the destination's last manual sync)"));

    // 1. Suspend Flux. Kept suspended if the run stops: resuming Flux after
    // a failed restore would let it scale the app up on an empty volume.
    let mut suspend_ids = vec![];
    for f in &suspended {
        let id = format!("suspend-{}-{}", f.kind.to_lowercase(), f.name);
        plan.steps.push(step(
            &id,
            format!("Suspend {f} so it does not fight the restore"),
            Action::SuspendFlux { object: f.clone(), keep_suspended: true },
            &[],
            vec![still_lost.clone()],
        ));
        suspend_ids.push(id);
    }
    let after_suspend: Vec<&str> = suspend_ids.iter().map(String::as_str).collect();

    // 2. Stop everything that writes to or mounts the claim.
    let mut quiet = vec![];
    for (object, _, _) in &scaled {
        let id = format!("scale-down-{}", object.name);
        plan.steps.push(step(
            &id,
            format!("Scale {object} to 0 so nothing holds {claim}"),
            Action::Scale { object: object.clone(), replicas: 0 },
            &after_suspend,
            vec![still_lost.clone()],
        ));
        quiet.push(id);
    }
    if let (Some(rs_name), false) = (&rs_name, rs_paused_before) {
        let title = format!("Pause {} so it does not back up the empty new volume", rs_ref(ns, rs_name));
        plan.steps.push(step(
            "pause-source",
            title,
            Action::MergePatch { object: rs_ref(ns, rs_name), patch: serde_json::json!({"spec": {"paused": true}}) },
            &after_suspend,
            vec![],
        ));
        quiet.push("pause-source".into());
    }
    let quiet_refs: Vec<&str> = quiet.iter().map(String::as_str).collect();
    let mut pod_steps = vec![];
    for pod in &stuck_pods {
        let id = format!("delete-pod-{pod}");
        plan.steps.push(step(
            &id,
            format!("Force-delete pod {pod} (its node {node} is gone)"),
            Action::ForceDeletePod { pod: ObjectRef::pod(ns, pod) },
            &quiet_refs,
            vec![still_lost.clone()],
        ));
        pod_steps.push(id);
    }
    let released: Vec<&str> = quiet_refs.iter().copied().chain(pod_steps.iter().map(String::as_str)).collect();

    // 3. Delete the orphaned claims (the app PVC and caches on the lost node).
    let mut deletions = vec![];
    for c in &claims {
        let wait_id = format!("wait-unused-{c}");
        plan.steps.push(step(
            &wait_id,
            format!("Wait until no pod mounts {c}"),
            Action::Wait { object: ObjectRef::pvc(ns, c), until: WaitCondition::ClaimUnused, timeout_seconds: CLAIM_RELEASE_TIMEOUT },
            &released,
            vec![],
        ));
        let id = format!("delete-pvc-{c}");
        let is_cache = *c != claim;
        plan.steps.push(Step {
            id: id.clone(),
            title: if is_cache {
                format!("Delete mover cache PVC {c} pinned to {node} (scratch space, re-created by VolSync)")
            } else {
                format!("Delete PVC {c} pinned to {node}")
            },
            action: Action::DeletePvc { pvc: ObjectRef::pvc(ns, c), pinned_node: node.clone() },
            needs: vec![wait_id],
            preconditions: if is_cache {
                vec![still_lost.clone(), rd_ready.clone()]
            } else {
                [still_lost.clone(), rd_ready.clone()].into_iter().chain(identity_check.clone()).collect()
            },
            recovery_source: Some(if is_cache {
                RecoverySource { description: "none needed: a kopia cache holds no data of its own; VolSync re-creates it".into(), evidence: evidence.clone() }
            } else {
                source.clone()
            }),
        });
        deletions.push(id);
    }

    // 4. A fresh claim with the same spec; its volume is provisioned where the mover runs.
    let mut manifest = serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "namespace": ns},
        "spec": {"accessModes": pvc.spec.access_modes, "resources": {"requests": {"storage": size_of(pvc, mover.capacity.as_deref())}}},
    });
    if let Some(labels) = pvc.metadata.labels.as_ref().filter(|l| !l.is_empty()) {
        manifest["metadata"]["labels"] = serde_json::json!(labels);
    }
    if let Some(class) = &pvc.spec.storage_class_name {
        manifest["spec"]["storageClassName"] = serde_json::json!(class);
    }
    plan.steps.push(step(
        "recreate-pvc",
        format!("Re-create {pvc_ref} with the same size, class and access modes, without the old volume's node affinity"),
        Action::Apply { object: pvc_ref.clone(), manifest },
        &deletions.iter().map(String::as_str).collect::<Vec<_>>(),
        vec![],
    ));

    // 5. Restore: a token this plan alone uses, then wait for exactly it.
    let mut patch = serde_json::json!({"spec": {"trigger": {"manual": token}}});
    if mover.restore_as_of.is_some() {
        let section = if rd.spec.kopia.is_some() { "kopia" } else { "restic" };
        patch["spec"][section] = serde_json::json!({"restoreAsOf": null});
    }
    plan.steps.push(step(
        "trigger-restore",
        format!("Trigger a restore through {rd_obj} (spec.trigger.manual: {token})"),
        Action::MergePatch { object: rd_obj.clone(), patch },
        &["recreate-pvc"],
        std::iter::once(rd_ready.clone()).chain(identity_check).collect(),
    ));
    plan.steps.push(step(
        "wait-restore",
        format!("Wait until {rd_obj} reports lastManualSync {token}, then require a Successful mover result"),
        Action::Wait { object: rd_obj.clone(), until: WaitCondition::VolsyncManualSyncDone { token: token.clone() }, timeout_seconds: RESTORE_TIMEOUT },
        &["trigger-restore"],
        vec![rd_ready],
    ));

    // 6. Back to how it was.
    let mut back = vec![];
    for (object, replicas, _) in &scaled {
        let id = format!("scale-up-{}", object.name);
        plan.steps.push(step(&id, format!("Scale {object} back to {replicas}"), Action::Scale { object: object.clone(), replicas: *replicas }, &["wait-restore"], vec![]));
        back.push(id);
    }
    if let (Some(rs_name), false) = (&rs_name, rs_paused_before) {
        plan.steps.push(step(
            "resume-source",
            format!("Resume {} (backups of the restored volume)", rs_ref(ns, rs_name)),
            Action::MergePatch { object: rs_ref(ns, rs_name), patch: serde_json::json!({"spec": {"paused": false}}) },
            &["wait-restore"],
            vec![],
        ));
        back.push("resume-source".into());
    } else if rs_paused_before {
        plan.findings.push("the source stays paused as it was before this run: its backups remain off".into());
    }
    let back_refs: Vec<&str> = if back.is_empty() { vec!["wait-restore"] } else { back.iter().map(String::as_str).collect() };
    for f in &suspended {
        let id = format!("resume-{}-{}", f.kind.to_lowercase(), f.name);
        // Re-checked live: the destination must still be one Flux leaves alone.
        let safe = match &rd_flux {
            RdUnderFlux::Reapplied { owner, .. } if owner == f => continue,
            RdUnderFlux::Safe { owner } if owner == f => vec![Precondition::SsaIfNotPresent { object: rd_obj.clone() }],
            _ => vec![],
        };
        plan.steps.push(step(&id, format!("Resume {f}"), Action::ResumeFlux { object: f.clone() }, &back_refs, safe));
    }
    Ok(plan)
}

/// The kopia identity check: `Ok(Some((precondition, evidence)))` when the
/// destination restores what the source writes (or, without a source, what
/// it restored before), `Err(refusal)` when it does not, `Ok(None)` for a
/// restic destination (no identity).
fn identity_check(rd: &ReplicationDestination, rs: Option<&ReplicationSource>, rd_obj: &ObjectRef, ns: &str) -> Result<Option<(Precondition, String)>, String> {
    let Some(kopia) = &rd.spec.kopia else { return Ok(None) };
    let identity = kopia.source_identity.as_ref();
    let restores = kopia_identity::of_destination(
        name(&rd.metadata),
        ns,
        kopia.username.as_deref(),
        kopia.hostname.as_deref(),
        identity.and_then(|i| i.source_name.as_deref()),
        identity.and_then(|i| i.source_namespace.as_deref()),
    );
    let Some(rs) = rs else {
        let said = format!("{rd_obj} restores kopia identity {restores}, the identity of its past successful restore");
        return Ok(Some((Precondition::KopiaIdentity { destination: rd_obj.clone(), source: None, identity: restores }, said)));
    };
    let rs_name = name(&rs.metadata);
    let source = rs_ref(ns, rs_name);
    let kopia_rs = rs.spec.kopia.as_ref();
    let writes = kopia_identity::of_source(rs_name, ns, kopia_rs.and_then(|k| k.username.as_deref()), kopia_rs.and_then(|k| k.hostname.as_deref()));
    if writes != restores {
        return Err(format!(
            "REFUSED: {rd_obj} restores kopia identity {restores}, but {source} backs up as {writes}: the mover would find \"No eligible snapshots\" (with enableFileDeletion after emptying the volume) once the PVC is gone. Set spec.kopia.sourceIdentity.sourceName: {rs_name} on the destination (or username/hostname to match {writes}) and plan again. Nothing is deleted."
        ));
    }
    let said = format!("{rd_obj} restores kopia identity {restores}, the identity {source} backs up as");
    Ok(Some((Precondition::KopiaIdentity { destination: rd_obj.clone(), source: Some(source), identity: restores }, said)))
}

/// How Flux treats the destination once resumed.
enum RdUnderFlux {
    /// Not applied by a Flux object this plan suspends.
    NotManaged,
    /// Applied by `owner` with `ssa: IfNotPresent`: left alone.
    Safe { owner: ObjectRef },
    /// Applied by `owner` without it: resuming re-applies it from Git.
    Reapplied { owner: ObjectRef, finding: String, follow_up: String },
}

/// kustomize-controller applies every object of its inventory with
/// server-side apply on each reconcile; only objects whose *Git* manifest
/// carries `kustomize.toolkit.fluxcd.io/ssa: IfNotPresent` are skipped once
/// they exist (fluxcd/pkg ssa/manager_apply.go `shouldSkipApply`, ssa
/// v0.77.0). The Git manifest is not visible here; the live object carries
/// the labels and annotations Flux last applied, so it stands for it.
/// Without the marker, a resume writes Git's `spec.trigger.manual` over
/// the run's token and VolSync starts another restore into the running
/// app's volume. lifeboat cannot fix Git, and marking the live object
/// (e.g. `reconcile: disabled`) would cut it from Git silently, so the
/// owner stays suspended with the reason and the fix.
fn rd_under_flux(rd: &ReplicationDestination, rd_obj: &ObjectRef, suspended: &[ObjectRef]) -> RdUnderFlux {
    let Some(owner) = flux_owner(&rd.metadata).map(|f| flux_ref(&f)).filter(|o| suspended.contains(o)) else { return RdUnderFlux::NotManaged };
    if ssa_if_not_present(&serde_json::json!({ "metadata": rd.metadata })) {
        return RdUnderFlux::Safe { owner };
    }
    let ns = owner.namespace.clone().unwrap_or_default();
    let resume = format!("flux resume {} {} -n {ns}", owner.kind.to_lowercase(), owner.name);
    RdUnderFlux::Reapplied {
        finding: format!(
            "{rd_obj} is applied by {owner} without {SSA_KEY}: {SSA_IF_NOT_PRESENT}: resumed, Flux would re-apply it from Git, reset spec.trigger.manual and start another restore over the running app (with enableFileDeletion, emptying its volume first) — {owner} stays SUSPENDED after the run"
        ),
        follow_up: format!(
            "{owner} was left suspended because {rd_obj} lacks {SSA_KEY}: {SSA_IF_NOT_PRESENT}: add that label or annotation to the ReplicationDestination in Git, then `{resume}`"
        ),
        owner,
    }
}

/// The old claim's request, else the destination's capacity.
fn size_of(pvc: &PersistentVolumeClaim, capacity: Option<&str>) -> String {
    pvc.spec.resources.requests.get("storage").map(String::from).or(capacity.map(str::to_string)).unwrap_or_else(|| "1Gi".into())
}

/// The manual trigger this plan uses. It must be
/// * unique per restore: VolSync starts a sync only when `spec.trigger.manual`
///   differs from `status.lastManualSync`, and completion is recognised by
///   `lastManualSync == token` — a reused token would "complete" at once;
/// * stable for the plan: the approval binds to the plan hash, which covers
///   the token, and a resumed run must re-send the same token (a no-op once
///   sent) and wait for that same value, never start a second restore.
///
/// So it is derived from the plan's inputs rather than filled in at run time:
/// the claim (name and creation time — a re-created claim is a new
/// incarnation), its old volume, and the destination's current trigger and
/// last manual sync (after this restore the latter equals the token, so the
/// next plan derives another). Planning the same state twice gives the same
/// plan and hash; the dry run shows the exact token.
fn restore_token(ns: &str, pvc: &PersistentVolumeClaim, rd: &ReplicationDestination) -> String {
    let created = pvc.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
    let inputs = [
        ns,
        name(&pvc.metadata),
        &created,
        pvc.spec.volume_name.as_deref().unwrap_or(""),
        name(&rd.metadata),
        rd.spec.trigger.as_ref().and_then(|t| t.manual.as_deref()).unwrap_or(""),
        rd.status.last_manual_sync.as_deref().unwrap_or(""),
    ];
    let digest = Sha256::digest(inputs.join("\n").as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("lifeboat-restore-{hex}")
}

/// The kopia snapshot id from a source mover's logs (`snapshot k…`).
fn snapshot_id(logs: &str) -> Option<String> {
    logs.lines().find_map(|l| l.trim().strip_prefix("snapshot ").map(|s| s.trim().to_string())).filter(|s| !s.is_empty() && !s.contains(' '))
}

fn age(d: chrono::Duration) -> String {
    let minutes = d.num_minutes();
    match minutes {
        m if m < 120 => format!("{m} min"),
        m if m < 48 * 60 => format!("{} h", m / 60),
        m => format!("{} d", m / (24 * 60)),
    }
}

/// `volsync-restore`.
pub struct Restore;

impl super::Playbook for Restore {
    fn info(&self) -> super::PlaybookInfo {
        super::PlaybookInfo { name: PLAYBOOK, arguments: "-n NAMESPACE --name PVC", summary: "re-create an app's PVC from its newest VolSync (Kopia) snapshot" }
    }

    fn default_routes(&self) -> Vec<crate::config::Route> {
        // Per pod, so per claim: a claim nothing restores plans "nothing to do".
        vec![crate::config::Route::new("LifeboatPodBlockedOnLostVolume", self.name(), &[("namespace", "namespace"), ("name", "persistentvolumeclaim"), ("node", "node")])]
    }

    fn plan(&self, state: &ClusterState, findings: &Findings, trigger: &super::Trigger) -> Result<Plan, super::PlanError> {
        restore(state, findings, trigger.require_namespace(self.name())?, trigger.require_name(self.name(), "--name (the app PVC)")?)
    }
}
