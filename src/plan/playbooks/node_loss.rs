//! `node-loss`: the whole recovery from one lost node, as one plan with
//! phases in dependency order — a human confirms the node is gone, then
//! a volume provisioner that was on the node is running elsewhere (every
//! re-created PVC needs it), then Garage metadata (S3 backs everything
//! else), then the databases and, beside them, the VolSync and S3-restore
//! apps, each of which waits only for the databases its pods reference
//! (`databases`); Kanidm's credentials once all apps are back; the apps that
//! only waited on a database and the restored apps are watched (never
//! touched) until they are Ready, each as soon as what it waits for is
//! done; then stale cleanup (cluster-wide: orphans the triage finds are
//! deleted with the rest) once everything else is done.
//!
//! What is affected comes from `triage` for the node (the same
//! classification `lifeboat triage` prints); each piece is planned by its own
//! playbook, and the plans are composed (see `plan::compose`).

mod databases;
mod provisioner;

use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::ClusterState;
use crate::config::NodeLossConfig;
use crate::inspect::coverage::Source;
use crate::inspect::Findings;
use crate::plan::compose::{compose_with, slug, Dependencies, Part, PhaseParts};
use crate::plan::playbooks::{plan as plan_playbook, PlanError, Trigger};
use crate::plan::{Action, ObjectRef, Plan, Precondition, Step, WaitCondition};
use crate::triage::{triage, Category};

pub const PLAYBOOK: &str = "node-loss";
pub use crate::cluster::marks::{CONFIRMED_GONE_ANNOTATION, OUT_OF_SERVICE_TAINT};

pub fn node_loss(state: &ClusterState, findings: &Findings, node: &str, options: &NodeLossConfig) -> Result<Plan, PlanError> {
    let target = format!("Node {node}");
    let Some(lost) = findings.lost_nodes().find(|n| n.node == node) else {
        let mut plan = Plan::new(PLAYBOOK, target);
        let why = match findings.nodes.iter().find(|n| n.node == node) {
            Some(_) => "is unavailable but not yet past the node-lost grace: wait, it may come back",
            None if state.node(node).is_some() => "is Ready",
            None => "is not known to the cluster and pins no volume",
        };
        plan.findings.push(format!("node {node} {why}: nothing to do"));
        return Ok(plan);
    };
    let report = triage(state, findings, Some(node));
    let state_text = match lost.availability {
        crate::inspect::nodes::Availability::Missing => "missing (no Node object)".to_string(),
        _ => format!("NotReady since {}", lost.since.map_or("an unknown time".into(), |t| t.to_rfc3339())),
    };
    let mut findings_text = vec![format!("node {node} is {state_text}, past the node-lost grace")];
    let mut triggers: Vec<(Category, &'static str, Trigger)> = vec![];
    // Part key of an app's restore → the workload it restores.
    let mut restores: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut watched: BTreeSet<(String, String)> = BTreeSet::new();
    // (namespace, workload) → the databases its pods reference.
    let mut uses: BTreeMap<(String, String), BTreeSet<databases::Database>> = BTreeMap::new();
    for w in &report.workloads {
        if matches!(w.category, Category::VolsyncApp | Category::S3BackupApp | Category::WaitingOnDatabase) {
            uses.insert((w.namespace.clone(), w.workload.clone()), databases::used_by(state, &w.namespace, &w.workload));
        }
        let for_pvc =
            |playbook: &'static str, pvc: &String| (w.category, playbook, Trigger { namespace: Some(w.namespace.clone()), name: Some(pvc.clone()), node: Some(node.into()) });
        let provider = || w.pvcs.iter().find_map(|pvc| findings.protection_of(&w.namespace, pvc).and_then(|p| p.provider.clone()));
        match w.category {
            Category::Garage => triggers.push((w.category, "garage-meta-restore", Trigger { node: Some(node.into()), ..Trigger::default() })),
            Category::CnpgInstance | Category::MariadbInstance => {
                let playbook = if w.category == Category::CnpgInstance { "cnpg-instance-lost" } else { "mariadb-instance-lost" };
                if let Some(name) = provider() {
                    triggers.push((w.category, playbook, Trigger { namespace: Some(w.namespace.clone()), name: Some(name), node: Some(node.into()) }));
                }
            }
            Category::VolsyncApp => {
                // volsync-restore deletes the mover caches of the app PVC it restores;
                // a cache alone (its app PVC elsewhere) is planned for on its own.
                let is_cache = |pvc: &String| findings.protection_of(&w.namespace, pvc).is_some_and(|p| p.source == Source::Scratch);
                let apps: Vec<&String> = w.pvcs.iter().filter(|p| !is_cache(p)).collect();
                let pvcs = if apps.is_empty() { w.pvcs.iter().collect() } else { apps };
                for (_, playbook, trigger) in pvcs.into_iter().map(|p| for_pvc("volsync-restore", p)) {
                    restores.insert(part_key(playbook, &trigger), (w.namespace.clone(), w.workload.clone()));
                    triggers.push((w.category, playbook, trigger));
                }
            }
            Category::S3BackupApp => {
                for (_, playbook, trigger) in w.pvcs.iter().map(|p| for_pvc("s3-restore", p)) {
                    restores.insert(part_key(playbook, &trigger), (w.namespace.clone(), w.workload.clone()));
                    triggers.push((w.category, playbook, trigger));
                }
            }
            Category::WaitingOnDatabase => {
                watched.insert((w.namespace.clone(), w.workload.clone()));
            }
            Category::Stale => triggers.push((w.category, "stale-cleanup", Trigger::default())),
            Category::Unprotected => {
                findings_text.push(format!("{} {} ({}): no recovery source — its data is gone unless the node comes back; not touched", w.namespace, w.workload, w.pvcs.join(", ")))
            }
        }
    }
    // Orphans elsewhere (e.g. pinned to another, long-gone node) are stale
    // leftovers with nothing to recover: cleaned up in the same run.
    let recovering = !triggers.is_empty() || !watched.is_empty();
    if recovering && !triggers.iter().any(|(c, _, _)| *c == Category::Stale) && !crate::plan::playbooks::stale::cleanup(state, findings, None).nothing_to_do() {
        triggers.push((Category::Stale, "stale-cleanup", Trigger::default()));
    }
    let mut seen = BTreeSet::new();
    triggers.retain(|(_, playbook, t)| seen.insert((playbook.to_string(), t.namespace.clone(), t.name.clone())));

    let part_for = |playbook: &str, trigger: &Trigger| -> Result<Part, PlanError> {
        let plan = plan_playbook(playbook, state, findings, trigger)?;
        Ok(Part { key: part_key(playbook, trigger), plan })
    };
    let parts_of = |categories: &[Category]| -> Result<Vec<Part>, PlanError> {
        triggers.iter().filter(|(c, _, _)| categories.contains(c)).map(|(_, playbook, t)| part_for(playbook, t)).collect()
    };
    let mut phases = vec![PhaseParts { name: "preflight", title: format!("Make sure {node} is gone for good"), parts: vec![preflight(node, options)] }];
    phases.push(PhaseParts { name: "release", title: format!("Pods on network storage stuck Terminating on {node}"), parts: release_terminating(node, &report, options) });
    phases.push(PhaseParts {
        name: "provisioner",
        title: format!("Volume provisioners that ran on {node}: running elsewhere before any PVC is re-created"),
        parts: provisioner::reschedule(node, &report.stranded_provisioners),
    });
    phases.push(PhaseParts { name: "garage", title: "Garage metadata (S3 backs everything else)".into(), parts: parts_of(&[Category::Garage])? });
    phases.push(PhaseParts { name: "databases", title: "Databases (CNPG, MariaDB)".into(), parts: parts_of(&[Category::CnpgInstance, Category::MariadbInstance])? });
    phases.push(PhaseParts { name: "apps", title: "Apps from VolSync snapshots and S3 backups".into(), parts: parts_of(&[Category::VolsyncApp, Category::S3BackupApp])? });
    phases.push(PhaseParts { name: "oidc", title: "Kanidm credentials and its OIDC clients after its restore".into(), parts: kanidm_after_restore(state, findings, &phases)? });
    // The restored apps are scaled back up by their parts; the run is done
    // when they are Ready too, so they are watched with the waiting ones.
    let restored: Vec<(ObjectRef, String)> = phases
        .iter()
        .flat_map(|p| p.parts.iter())
        .flat_map(|part| part.plan.steps.iter().map(move |s| (part, s)))
        .filter_map(|(part, s)| match &s.action {
            Action::Scale { object, replicas } if *replicas > 0 => Some((object.clone(), part.key.clone())),
            // kaniop scales its StatefulSet `<kanidm>-<group>` from the group.
            Action::SetKanidmReplicas { kanidm, group, replicas } if *replicas > 0 => {
                Some((ObjectRef::namespaced("apps/v1", "StatefulSet", kanidm.namespace.as_deref().unwrap_or_default(), &format!("{}-{group}", kanidm.name)), part.key.clone()))
            }
            _ => None,
        })
        .collect();
    let database_parts: BTreeSet<String> =
        triggers.iter().filter(|(c, _, _)| matches!(c, Category::CnpgInstance | Category::MariadbInstance)).map(|(_, playbook, t)| part_key(playbook, t)).collect();
    let database_keys = |ns: &str, workload: &str| -> BTreeSet<String> {
        let used = uses.get(&(ns.to_string(), workload.to_string())).into_iter().flatten();
        used.map(|db| part_key(db.playbook(), &Trigger { namespace: Some(db.namespace().into()), name: Some(db.name().into()), node: None })).collect()
    };
    let mut part_needs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (key, (ns, workload)) in &restores {
        part_needs.insert(key.clone(), database_keys(ns, workload));
    }
    for (ns, workload) in &watched {
        // Waiting on a database it names none of: it waits for them all.
        let named = database_keys(ns, workload);
        let waits_for = if named.is_empty() { database_parts.clone() } else { named };
        let Some((kind, name)) = workload.split_once(' ') else { continue };
        part_needs.insert(watch_key_of(ns, kind, name), waits_for);
    }
    for (object, restored_by) in &restored {
        part_needs.entry(watch_key(object)).or_default().insert(restored_by.clone());
    }
    let mut watching = watch(&watched, options);
    watching.extend(watch_restored(&restored.iter().map(|(o, _)| o.clone()).collect::<Vec<_>>(), options));
    phases.push(PhaseParts { name: "watch", title: "Apps waiting on a database, and the restored apps: watched until Ready, not touched".into(), parts: watching });
    phases.push(PhaseParts { name: "cleanup", title: "Stale resources".into(), parts: parts_of(&[Category::Stale])? });

    let only_preflight = phases[1..].iter().all(|p| p.parts.iter().all(|part| part.plan.nothing_to_do()));
    if only_preflight {
        findings_text.push("nothing on this node needs recovering".into());
        phases[0].parts.clear();
    }
    // Safety orderings kept: the confirmation, the provisioner and Garage come
    // first; Flux is suspended before any app is touched; Kanidm's reset waits
    // for every app; cleanup waits for everything. Apps skip the databases
    // they do not use, the watches everything but what they watch for.
    let dependencies =
        Dependencies { independent_of: BTreeMap::from([("apps", vec!["databases"]), ("watch", vec!["databases", "apps", "oidc"])]), after_everything: vec!["cleanup"], part_needs };
    Ok(compose_with(PLAYBOOK, target, findings_text, phases, options.approval == crate::config::ApprovalScope::PerPhase, &dependencies))
}

/// A part's key: its playbook and what it is for.
fn part_key(playbook: &str, trigger: &Trigger) -> String {
    slug(&format!("{playbook} {} {}", trigger.namespace.as_deref().unwrap_or(""), trigger.name.as_deref().unwrap_or("")))
}

/// The key of the part that watches `object`.
fn watch_key(object: &ObjectRef) -> String {
    watch_key_of(object.namespace.as_deref().unwrap_or_default(), &object.kind, &object.name)
}

fn watch_key_of(ns: &str, kind: &str, name: &str) -> String {
    slug(&format!("watch {ns} {kind} {name}"))
}

/// After Kanidm's database came back from its S3 backup, the admin
/// passwords in its Secret no longer match: reset them and bounce the OIDC
/// clients (`kanidm-credential-reset`).
fn kanidm_after_restore(state: &ClusterState, findings: &Findings, phases: &[PhaseParts]) -> Result<Vec<Part>, PlanError> {
    let kanidm = &findings.config.kanidm;
    let data_prefix = format!("PersistentVolumeClaim {}/kanidm-data-{}-{}-", kanidm.namespace, kanidm.name, kanidm.replica_group);
    let restored = phases.iter().flat_map(|p| &p.parts).any(|part| part.plan.playbook == "s3-restore" && !part.plan.nothing_to_do() && part.plan.target.starts_with(&data_prefix));
    if !restored {
        return Ok(vec![]);
    }
    let plan = plan_playbook("kanidm-credential-reset", state, findings, &Trigger::default())?;
    Ok(vec![Part { key: "kanidm-credential-reset".into(), plan }])
}

/// The node is still lost; optionally a human confirms it is gone for good
/// (annotation, the out-of-service taint, or the Node deleted) and the
/// out-of-service taint is applied so the control plane detaches volumes.
fn preflight(node: &str, options: &NodeLossConfig) -> Part {
    let node_ref = ObjectRef { api_version: "v1".into(), kind: "Node".into(), namespace: None, name: node.into() };
    let still_lost = Precondition::NodeStillLost { node: node.into() };
    let mut plan = Plan::new(PLAYBOOK, format!("Node {node}"));
    if options.confirm_node_gone {
        plan.findings.push(format!(
            "a human must confirm {node} is permanently gone: `kubectl annotate node {node} {CONFIRMED_GONE_ANNOTATION}=true` (or taint it {OUT_OF_SERVICE_TAINT}, or delete the Node)"
        ));
        plan.steps.push(Step {
            id: "confirm-gone".into(),
            title: format!("Wait for a human to confirm {node} is permanently gone"),
            action: Action::Wait { object: node_ref.clone(), until: WaitCondition::NodeConfirmedGone, timeout_seconds: options.confirm_timeout.0.as_secs() },
            needs: vec![],
            preconditions: vec![still_lost.clone()],
            recovery_source: None,
        });
    }
    if options.out_of_service_taint {
        plan.steps.push(Step {
            id: "out-of-service".into(),
            title: format!("Taint {node} {OUT_OF_SERVICE_TAINT}=nodeshutdown:NoExecute so its volumes are detached and pods deleted"),
            action: Action::TaintNode { node: node.into(), key: OUT_OF_SERVICE_TAINT.into(), value: "nodeshutdown".into(), effect: "NoExecute".into() },
            needs: plan.steps.iter().map(|s| s.id.clone()).collect(),
            preconditions: vec![still_lost],
            recovery_source: None,
        });
    }
    Part { key: "preflight".into(), plan }
}

/// Pods on network storage the lost node's kubelet will never finish
/// deleting: force-deleted once the node is confirmed gone, so their claims
/// (RWX or NFS, usable from any node) are released for the replacements.
/// The out-of-service taint makes the pod GC do the same; the explicit
/// delete does not depend on that option.
fn release_terminating(node: &str, report: &crate::triage::TriageReport, options: &NodeLossConfig) -> Vec<Part> {
    if report.terminating_on_lost_nodes.is_empty() {
        return vec![];
    }
    let mut plan = Plan::new(PLAYBOOK, format!("Node {node}"));
    for p in &report.terminating_on_lost_nodes {
        plan.findings.push(format!(
            "pod {}/{} (network-storage claims {}) is stuck Terminating on {node}: force-deleted{}",
            p.namespace,
            p.pod,
            p.claims.join(", "),
            if options.out_of_service_taint { " (the out-of-service taint would also let the pod GC delete it)" } else { "; or taint the node out-of-service instead" }
        ));
        plan.steps.push(Step {
            id: format!("force-delete-{}-{}", p.namespace, p.pod),
            title: format!("Force-delete pod {}/{} stuck Terminating on {node} (its claims are on network storage)", p.namespace, p.pod),
            action: Action::ForceDeletePod { pod: ObjectRef::pod(&p.namespace, &p.pod) },
            needs: vec![],
            preconditions: vec![Precondition::NodeStillLost { node: node.into() }],
            recovery_source: None,
        });
    }
    vec![Part { key: "terminating".into(), plan }]
}

/// One wait per workload a part scaled back up after restoring its data.
fn watch_restored(restored: &[ObjectRef], options: &NodeLossConfig) -> Vec<Part> {
    let mut seen = BTreeSet::new();
    restored
        .iter()
        .filter(|o| seen.insert((*o).clone()))
        .map(|object| {
            let mut plan = Plan::new("watch", object.to_string());
            plan.steps.push(Step {
                id: "ready".into(),
                title: format!("Watch {object} become Ready on its restored data (not touched)"),
                action: Action::Wait { object: object.clone(), until: WaitCondition::WorkloadReady, timeout_seconds: options.watch_timeout.0.as_secs() },
                needs: vec![],
                preconditions: vec![],
                recovery_source: None,
            });
            Part { key: watch_key(object), plan }
        })
        .collect()
}

/// One wait per workload that only waits on a database.
fn watch(watched: &BTreeSet<(String, String)>, options: &NodeLossConfig) -> Vec<Part> {
    watched
        .iter()
        .filter_map(|(ns, workload)| {
            let (kind, name) = workload.split_once(' ')?;
            let (object, until) = match kind {
                "Deployment" | "StatefulSet" => (ObjectRef::namespaced("apps/v1", kind, ns, name), WaitCondition::WorkloadReady),
                "Pod" => (ObjectRef::pod(ns, name), WaitCondition::ConditionIs { condition: "Ready".into(), status: "True".into() }),
                _ => return None,
            };
            let mut plan = Plan::new("watch", object.to_string());
            plan.steps.push(Step {
                id: "healed".into(),
                title: format!("Watch {object} heal once its database is back (not touched)"),
                action: Action::Wait { object: object.clone(), until, timeout_seconds: options.watch_timeout.0.as_secs() },
                needs: vec![],
                preconditions: vec![],
                recovery_source: None,
            });
            Some(Part { key: watch_key_of(ns, kind, name), plan })
        })
        .collect()
}

/// `node-loss`.
pub struct NodeLoss;

impl super::Playbook for NodeLoss {
    fn info(&self) -> super::PlaybookInfo {
        super::PlaybookInfo { name: PLAYBOOK, arguments: "--node NODE", summary: "the whole recovery from one lost node, in phases, as one plan" }
    }

    fn plan(&self, state: &ClusterState, findings: &Findings, trigger: &super::Trigger) -> Result<Plan, super::PlanError> {
        let node = trigger.node.as_deref().ok_or(PlanError::MissingArgument { playbook: PLAYBOOK, what: "--node" })?;
        node_loss(state, findings, node, &findings.config.remediation.node_loss)
    }
}
