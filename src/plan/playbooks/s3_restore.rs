//! `s3-restore`: the Kanidm restore pattern, for any app whose only
//! recovery point is a backup its own CronJob ships to S3. Suspend Flux
//! (held suspended if the run stops: Flux would start the app on the empty
//! volume), scale the app to 0, force-delete its pods on the lost node, wait
//! until no pod mounts the PVC, delete it (only when the backup CronJob has
//! succeeded at least once), re-create it without a volume (so it binds on a
//! live node), run the configured restore Job into it, check its output,
//! scale back up and resume Flux.
//!
//! A StatefulSet owned by a kaniop `Kanidm` is scaled through the `Kanidm`'s
//! replica group (kaniop re-applies the StatefulSet's replicas from there),
//! and the restore must run the `Kanidm`'s exact image, as kaniop's own
//! `KanidmRestore` demands (pando85/kaniop v0.12.0 `libs/operator/src/kanidm/
//! restore.rs`: `restoreImage must be the target's pinned Kanidm image`).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{PlanError, Trigger};
use crate::cluster::{flux_owner, name, namespace, ClusterState, FluxRef};
use crate::inspect::coverage::Source;
use crate::inspect::Findings;
use crate::plan::job::JobOutput;
use crate::plan::{Action, ObjectRef, Plan, Precondition, RecoverySource, Step, WaitCondition};

pub const PLAYBOOK: &str = "s3-restore";
const PLACEHOLDERS: &[&str] = &["namespace", "pvc", "jobName", "app"];

/// Every lost PVC protected only by an app backup CronJob: one trigger each
/// (namespace + PVC name), for the composed node-loss playbook.
pub fn affected(state: &ClusterState, findings: &Findings) -> Vec<Trigger> {
    let _ = state;
    findings
        .lost_volumes
        .iter()
        .filter_map(|v| Some((v.claim_namespace.clone()?, v.claim_name.clone()?, v.node.clone())))
        .filter(|(ns, pvc, _)| findings.protection_of(ns, pvc).is_some_and(|p| p.source == Source::BackupCronJob))
        .map(|(ns, pvc, node)| Trigger { namespace: Some(ns), name: Some(pvc), node: Some(node) })
        .collect()
}

/// A restore Job template: a batch/v1 Job (apiVersion/kind may be left out)
/// with at least one container, using only the known placeholders.
pub fn validate_template(template: &Value) -> Result<(), String> {
    if !template.is_object() {
        return Err("must be a Job manifest (a mapping)".into());
    }
    if template.get("apiVersion").is_some_and(|v| v != "batch/v1") || template.get("kind").is_some_and(|k| k != "Job") {
        return Err("must be a batch/v1 Job".into());
    }
    let containers = &template["spec"]["template"]["spec"]["containers"];
    if !containers.as_array().is_some_and(|c| !c.is_empty() && c.iter().all(|c| c["name"].is_string() && c["image"].is_string())) {
        return Err("spec.template.spec.containers must list at least one container with a name and an image".into());
    }
    let mut unknown = vec![];
    visit_strings(template, &mut |s| {
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            let Some(end) = rest[start..].find("}}") else { break };
            let key = rest[start + 2..start + end].trim();
            if !PLACEHOLDERS.contains(&key) {
                unknown.push(key.to_string());
            }
            rest = &rest[start + end + 2..];
        }
    });
    if !unknown.is_empty() {
        return Err(format!("unknown placeholder(s) {} (known: {})", unknown.join(", "), PLACEHOLDERS.iter().map(|p| format!("{{{{{p}}}}}")).collect::<Vec<_>>().join(", ")));
    }
    Ok(())
}

fn visit_strings(value: &Value, f: &mut impl FnMut(&str)) {
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().for_each(|v| visit_strings(v, f)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            f(k);
            visit_strings(v, f)
        }),
        _ => {}
    }
}

/// The template with every `{{key}}` replaced, named and namespaced.
/// Problems in the `s3Restore` config section.
pub fn config_problems(section: &crate::config::S3RestoreConfig) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(t) = &section.default_template {
        if let Err(e) = validate_template(t) {
            problems.push(format!("s3Restore.defaultTemplate: {e}"));
        }
    }
    for (key, app) in &section.apps {
        if key.split('/').count() != 2 || key.split('/').any(str::is_empty) {
            problems.push(format!("s3Restore.apps: key {key:?} must be <namespace>/<pvc>"));
        }
        if let Some(Err(e)) = app.template.as_ref().map(validate_template) {
            problems.push(format!("s3Restore.apps.{key:?}.template: {e}"));
        }
        if app.template.is_none() && section.default_template.is_none() {
            problems.push(format!("s3Restore.apps.{key:?}: no template and no s3Restore.defaultTemplate"));
        }
        if app.success_marker.as_deref() == Some("") {
            problems.push(format!("s3Restore.apps.{key:?}.successMarker: must not be empty"));
        }
    }
    if section.success_marker.is_empty() {
        problems.push("s3Restore.successMarker: must not be empty".into());
    }
    if section.timeout.0.is_zero() {
        problems.push("s3Restore.timeout: must be longer than 0s".into());
    }
    problems
}

pub fn render_template(template: &Value, vars: &[(&str, &str)]) -> Value {
    fn fill(s: &str, vars: &[(&str, &str)]) -> String {
        vars.iter().fold(s.to_string(), |acc, (k, v)| acc.replace(&format!("{{{{{k}}}}}"), v).replace(&format!("{{{{ {k} }}}}"), v))
    }
    fn walk(value: &Value, vars: &[(&str, &str)]) -> Value {
        match value {
            Value::String(s) => Value::String(fill(s, vars)),
            Value::Array(items) => Value::Array(items.iter().map(|v| walk(v, vars)).collect()),
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (fill(k, vars), walk(v, vars))).collect()),
            other => other.clone(),
        }
    }
    let mut job = walk(template, vars);
    job["apiVersion"] = json!("batch/v1");
    job["kind"] = json!("Job");
    job
}

/// A stable, short suffix naming one incident, from the identity of the
/// claim being replaced (name and creation time: a re-created claim, or the
/// next incident, gets a new Job rather than finding an old completed one).
pub fn incident_suffix(identity: &str) -> String {
    Sha256::digest(identity.as_bytes()).iter().take(3).map(|b| format!("{b:02x}")).collect()
}

/// Kubernetes names in labels are at most 63 characters.
pub fn job_name(app: &str, what: &str, suffix: &str) -> String {
    let tail = format!("-{what}-{suffix}");
    let app: String = app.chars().take(63 - tail.len()).collect();
    format!("{}{tail}", app.trim_end_matches('-'))
}

pub fn restore(state: &ClusterState, findings: &Findings, ns: &str, target: &str) -> Result<Plan, PlanError> {
    let config = &findings.config.s3_restore;
    let pvc_name = resolve_pvc(state, findings, ns, target).ok_or_else(|| PlanError::NotFound(format!("PersistentVolumeClaim (or a workload using one) {ns}/{target}")))?;
    let pvc = state.pvc(ns, &pvc_name).expect("resolved PVC exists");
    let pvc_ref = ObjectRef::pvc(ns, &pvc_name);
    let mut plan = Plan::new(PLAYBOOK, pvc_ref.to_string());
    let Some(lost) = findings.lost_volumes.iter().find(|v| v.claim_namespace.as_deref() == Some(ns) && v.claim_name.as_deref() == Some(pvc_name.as_str())) else {
        plan.findings.push(format!("{pvc_ref} is not pinned to a lost node: nothing to do"));
        return Ok(plan);
    };
    let node = lost.node.clone();
    plan.findings.push(format!("{pvc_ref} is pinned to lost node {node}"));
    let protection = findings.protection_of(ns, &pvc_name);
    let Some(cronjob_name) = protection.filter(|p| p.source == Source::BackupCronJob).and_then(|p| p.provider.clone()) else {
        let source = protection.map_or("nothing", |p| p.source.as_str());
        plan.findings.push(format!("{pvc_ref} is protected by {source}, not by an app backup CronJob: this playbook does not apply; nothing will be deleted"));
        return Ok(plan);
    };
    let cronjob = findings.backup_cronjobs.iter().find(|c| c.namespace == ns && c.cronjob == cronjob_name);
    let Some(last_success) = cronjob.and_then(|c| c.last_success) else {
        plan.findings.push(format!("backup CronJob {ns}/{cronjob_name} has never succeeded: there is no recovery point; refusing to delete {pvc_ref} (nothing will be deleted)"));
        return Ok(plan);
    };
    let key = format!("{ns}/{pvc_name}");
    let app_config = config.apps.get(&key);
    let Some(template) = app_config.and_then(|a| a.template.as_ref()).or(config.default_template.as_ref()) else {
        plan.findings.push(format!("no restore Job template for {key}: set s3Restore.apps.{key:?}.template or s3Restore.defaultTemplate; nothing will be deleted"));
        return Ok(plan);
    };
    let marker = app_config.and_then(|a| a.success_marker.clone()).unwrap_or_else(|| config.success_marker.clone());

    let workload = workload_of_claim(state, ns, &pvc_name);
    let kanidm = workload.as_ref().and_then(|(kind, wname, _)| (kind == "StatefulSet").then(|| kaniop_owner(state, ns, wname)).flatten());
    // kanidm writes its own backups (online_backup, `@daily` unless set:
    // kanidm/kanidm server/core/src/config.rs default_online_backup_schedule);
    // the CronJob only ships the files that exist when it runs.
    let schedule = app_config.and_then(|a| a.online_backup_schedule.clone()).or_else(|| kanidm.is_some().then(|| "@daily".to_string()));
    let recovery_point = match &schedule {
        Some(expr) => match crate::schedule::Schedule::parse(expr, crate::schedule::Dialect::SecondsFirst).map(|s| s.last_run_until(last_success)) {
            Ok(Some(point)) => point,
            Ok(None) => {
                plan.findings.push(format!(
                    "the app's backup schedule {expr:?} has no run before the CronJob's last success {}: no recovery point; nothing will be deleted",
                    last_success.to_rfc3339()
                ));
                return Ok(plan);
            }
            Err(e) => {
                plan.findings.push(format!("the app's backup schedule (s3Restore.apps.{key:?}.onlineBackupSchedule) is unreadable: {e}; nothing will be deleted"));
                return Ok(plan);
            }
        },
        None => last_success,
    };
    let age = state.now - recovery_point;
    let stale = if cronjob.is_some_and(|c| c.stale) { "; it is STALE: the restore loses everything since" } else { "" };
    let point = format!("{} ({}h{:02}m before this plan)", recovery_point.to_rfc3339(), age.num_hours(), age.num_minutes() % 60);
    plan.findings.push(match &schedule {
        Some(expr) => format!(
            "recovery point: the newest backup file the restore can find was written by the app's own backup schedule {expr:?} at {point}, before CronJob {ns}/{cronjob_name} last shipped the files ({}){stale}",
            last_success.to_rfc3339()
        ),
        None => format!("recovery point: CronJob {ns}/{cronjob_name} last succeeded {point}{stale}"),
    });
    let app = cronjob_name.split("-backup").next().filter(|a| !a.is_empty()).unwrap_or(&cronjob_name).to_string();
    let flux = workload
        .as_ref()
        .and_then(|w| workload_flux(state, ns, w))
        .or_else(|| state.cron_jobs.iter().find(|c| namespace(&c.metadata) == ns && name(&c.metadata) == cronjob_name).and_then(|c| flux_owner(&c.metadata)));
    let still_lost = Precondition::NodeStillLost { node: node.clone() };
    let mut last: Vec<String> = vec![];
    let flux_ref = flux.map(|f| ObjectRef::namespaced(flux_api_version(&f.kind), &f.kind, &f.namespace, &f.name));
    let suffix = incident_suffix(&claim_identity(pvc));
    let job = job_name(&app, "restore", &suffix);
    let manifest = render_template(template, &[("namespace", ns), ("pvc", &pvc_name), ("jobName", &job), ("app", &app)]);
    let mut image_checks = vec![];
    if let Some((kanidm_name, group)) = &kanidm {
        let kanidm_ref = kanidm_ref(ns, kanidm_name);
        plan.findings.push(format!("{kanidm_ref} (kaniop) owns the StatefulSet: it is stopped and started through replica group {group}"));
        let Some(image) = kanidmd_image(&manifest) else {
            plan.findings.push(format!("the restore Job for {key} runs no kanidmd container: it cannot restore {kanidm_ref}; nothing will be deleted"));
            return Ok(plan);
        };
        plan.findings.push(format!("the restore runs kanidmd image {image}: it must be exactly {kanidm_ref}'s spec.image (checked live before anything is deleted)"));
        image_checks.push(Precondition::ImageIs { object: kanidm_ref, pointer: "/spec/image".into(), image });
    }
    if let Some(f) = &flux_ref {
        plan.findings.push(format!("{f} applies this app: suspended during the restore, and held suspended if the run stops once the claim is being replaced"));
        plan.steps.push(Step {
            id: "suspend-flux".into(),
            title: format!("Suspend {f} so it does not fight the restore"),
            action: Action::SuspendFlux { object: f.clone(), keep_suspended: false },
            needs: vec![],
            preconditions: vec![still_lost.clone()],
            recovery_source: None,
        });
        last = vec!["suspend-flux".into()];
    }
    let mut replicas = 1;
    if let Some((kind, wname, spec_replicas)) = &workload {
        replicas = (*spec_replicas).max(1);
        let w = ObjectRef::namespaced("apps/v1", kind, ns, wname);
        plan.steps.push(Step {
            id: "scale-down".into(),
            title: format!("Scale {w} to 0"),
            action: scale(&kanidm, ns, w, 0),
            needs: last.clone(),
            preconditions: vec![still_lost.clone()],
            recovery_source: None,
        });
        last = vec!["scale-down".into()];
        if kanidm.is_some() {
            let w = ObjectRef::namespaced("apps/v1", kind, ns, wname);
            plan.steps.push(Step {
                id: "wait-stopped".into(),
                title: format!("Wait until kaniop has scaled {w} to 0 (else its controller re-creates the pod)"),
                action: Action::Wait { object: w, until: WaitCondition::SpecReplicas { replicas: 0 }, timeout_seconds: CLAIM_RELEASE_TIMEOUT },
                needs: last.clone(),
                preconditions: vec![],
                recovery_source: None,
            });
            last = vec!["wait-stopped".into()];
        }
    } else {
        plan.findings.push(format!("no workload found using {pvc_ref}: nothing to scale"));
    }
    let mut pod_steps: Vec<String> = vec![];
    for pod in state.pods_using_claim(ns, &pvc_name).filter(|p| p.spec.node_name.as_deref() == Some(node.as_str())) {
        let pod_name = name(&pod.metadata);
        let id = format!("delete-pod-{pod_name}");
        plan.steps.push(Step {
            id: id.clone(),
            title: format!("Force-delete pod {pod_name} (its node {node} is gone)"),
            action: Action::ForceDeletePod { pod: ObjectRef::pod(ns, pod_name) },
            needs: last.clone(),
            preconditions: vec![still_lost.clone()],
            recovery_source: None,
        });
        pod_steps.push(id);
    }
    let released = if pod_steps.is_empty() { last.clone() } else { pod_steps };
    plan.steps.push(Step {
        id: "wait-unused".into(),
        title: format!("Wait until no pod mounts {pvc_ref}"),
        action: Action::Wait { object: pvc_ref.clone(), until: WaitCondition::ClaimUnused, timeout_seconds: CLAIM_RELEASE_TIMEOUT },
        needs: released,
        preconditions: vec![],
        recovery_source: None,
    });
    let mut evidence = vec![format!("CronJob {ns}/{cronjob_name} last succeeded at {}", last_success.to_rfc3339())];
    if let Some(expr) = &schedule {
        evidence.push(format!("newest app backup by schedule {expr:?} before that: {}", recovery_point.to_rfc3339()));
    }
    let mut before_delete = "wait-unused";
    if let Some(f) = &flux_ref {
        plan.steps.push(hold_flux(f, "wait-unused", vec![still_lost.clone()]));
        before_delete = "hold-flux";
    }
    plan.steps.push(Step {
        id: "delete-pvc".into(),
        title: format!("Delete {pvc_ref} pinned to {node}"),
        action: Action::DeletePvc { pvc: pvc_ref.clone(), pinned_node: node.clone() },
        needs: vec![before_delete.into()],
        preconditions: [still_lost.clone()].into_iter().chain(image_checks.iter().cloned()).collect(),
        recovery_source: Some(RecoverySource { description: format!("the app's S3 backup, restored by a Job from template ({marker:?} expected in its output)"), evidence }),
    });
    let mut new_pvc = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": pvc_name, "namespace": ns},
        "spec": {"accessModes": pvc.spec.access_modes, "resources": {"requests": pvc.spec.resources.requests}},
    });
    if let Some(class) = &pvc.spec.storage_class_name {
        new_pvc["spec"]["storageClassName"] = json!(class);
    }
    if let Some(labels) = pvc.metadata.labels.as_ref().filter(|l| !l.is_empty()) {
        new_pvc["metadata"]["labels"] = json!(labels);
    }
    plan.steps.push(Step {
        id: "create-pvc".into(),
        title: format!("Re-create {pvc_ref} empty, with no volume yet (it binds where the restore Job runs)"),
        action: Action::Apply { object: pvc_ref.clone(), manifest: new_pvc },
        needs: vec!["delete-pvc".into()],
        preconditions: vec![],
        recovery_source: None,
    });
    plan.steps.push(Step {
        id: "restore".into(),
        title: format!("Restore {pvc_ref} from the S3 backup with Job {job}"),
        action: Action::RunJob {
            job: ObjectRef::namespaced("batch/v1", "Job", ns, &job),
            manifest,
            timeout_seconds: config.timeout.0.as_secs(),
            success_marker: marker,
            output: JobOutput::Nothing,
        },
        needs: vec!["create-pvc".into()],
        preconditions: image_checks,
        recovery_source: None,
    });
    let mut after = vec!["restore".to_string()];
    if let Some((kind, wname, _)) = &workload {
        let w = ObjectRef::namespaced("apps/v1", kind, ns, wname);
        plan.steps.push(Step {
            id: "scale-up".into(),
            title: format!("Scale {w} back to {replicas}"),
            action: scale(&kanidm, ns, w, replicas),
            needs: after.clone(),
            preconditions: vec![],
            recovery_source: None,
        });
        after = vec!["scale-up".into()];
    }
    if let Some(f) = flux_ref {
        plan.steps.push(Step {
            id: "resume-flux".into(),
            title: format!("Resume {f}"),
            action: Action::ResumeFlux { object: f },
            needs: after,
            preconditions: vec![],
            recovery_source: None,
        });
    }
    Ok(plan)
}

const CLAIM_RELEASE_TIMEOUT: u64 = 300;

/// From here on a stopped run leaves Flux suspended (annotated with why):
/// resumed, it would start the app on an empty or half-restored volume.
/// The composed node-loss plan keeps this step as its hold (see `compose`).
pub fn hold_flux(flux: &ObjectRef, after: &str, preconditions: Vec<Precondition>) -> Step {
    Step {
        id: "hold-flux".into(),
        title: format!("Hold {flux} suspended from here on: if the run stops after this, it stays suspended (Flux would start the app on an empty volume)"),
        action: Action::SuspendFlux { object: flux.clone(), keep_suspended: true },
        needs: vec![after.into()],
        preconditions,
        recovery_source: None,
    }
}

/// The `Kanidm` (kaniop) owning the StatefulSet, and its replica group
/// (label `kanidm.kaniop.rs/replica-group`, else the name after `<kanidm>-`).
pub fn kaniop_owner(state: &ClusterState, ns: &str, sts: &str) -> Option<(String, String)> {
    let set = state.stateful_sets.iter().find(|s| namespace(&s.metadata) == ns && name(&s.metadata) == sts)?;
    let owner = set.metadata.owner_references.as_ref()?.iter().find(|o| o.kind == "Kanidm" && o.api_version.starts_with("kaniop.rs/"))?;
    let group = set
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("kanidm.kaniop.rs/replica-group"))
        .map(String::from)
        .or_else(|| sts.strip_prefix(&format!("{}-", owner.name)).map(String::from))?;
    Some((owner.name.to_string(), group))
}

pub fn kanidm_ref(ns: &str, name: &str) -> ObjectRef {
    ObjectRef::namespaced("kaniop.rs/v1beta1", "Kanidm", ns, name)
}

/// Scaling a workload: through its `Kanidm` replica group when kaniop owns it.
fn scale(kanidm: &Option<(String, String)>, ns: &str, workload: ObjectRef, replicas: i32) -> Action {
    match kanidm {
        Some((name, group)) => Action::SetKanidmReplicas { kanidm: kanidm_ref(ns, name), group: group.clone(), replicas },
        None => Action::Scale { object: workload, replicas },
    }
}

/// The image of the Job's container that runs `kanidmd` (init or main).
fn kanidmd_image(job: &Value) -> Option<String> {
    let spec = &job["spec"]["template"]["spec"];
    ["initContainers", "containers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .find(|c| c["command"][0] == "kanidmd")
        .and_then(|c| c["image"].as_str().map(String::from))
}

/// `<namespace>/<name>@<creationTimestamp>` (the lean state keeps no uids).
pub fn claim_identity(pvc: &crate::cluster::resources::PersistentVolumeClaim) -> String {
    let created = crate::cluster::created_at(&pvc.metadata).map(|t| t.to_rfc3339()).unwrap_or_default();
    format!("{}/{}@{created}", namespace(&pvc.metadata), name(&pvc.metadata))
}

pub fn flux_api_version(kind: &str) -> &'static str {
    if kind == "HelmRelease" {
        "helm.toolkit.fluxcd.io/v2"
    } else {
        "kustomize.toolkit.fluxcd.io/v1"
    }
}

/// `target` is a PVC, or a workload whose pods use a PVC on a lost node.
fn resolve_pvc(state: &ClusterState, findings: &Findings, ns: &str, target: &str) -> Option<String> {
    if state.pvc(ns, target).is_some() {
        return Some(target.to_string());
    }
    findings
        .lost_volumes
        .iter()
        .filter(|v| v.claim_namespace.as_deref() == Some(ns))
        .filter_map(|v| v.claim_name.clone())
        .find(|claim| workload_of_claim(state, ns, claim).is_some_and(|(_, w, _)| w == target))
}

/// (kind, name, spec.replicas) of the Deployment or StatefulSet using the
/// claim: through its pods, else by StatefulSet claim naming `<template>-<sts>-<ordinal>`.
pub fn workload_of_claim(state: &ClusterState, ns: &str, claim: &str) -> Option<(String, String, i32)> {
    let from_pods = state.pods_using_claim(ns, claim).find_map(|p| state.workload_of(p)).filter(|w| w.kind == "Deployment" || w.kind == "StatefulSet");
    let (kind, wname) = match from_pods {
        Some(w) => (w.kind, w.name),
        None => {
            let sts = state
                .stateful_sets
                .iter()
                .filter(|s| namespace(&s.metadata) == ns)
                .find(|s| claim.rsplit_once('-').is_some_and(|(head, ordinal)| ordinal.parse::<u32>().is_ok() && head.ends_with(&format!("-{}", name(&s.metadata)))))?;
            ("StatefulSet".to_string(), name(&sts.metadata).to_string())
        }
    };
    let replicas = match kind.as_str() {
        "Deployment" => state.deployments.iter().find(|d| namespace(&d.metadata) == ns && name(&d.metadata) == wname).map(|d| d.spec.replicas),
        _ => state.stateful_sets.iter().find(|s| namespace(&s.metadata) == ns && name(&s.metadata) == wname).map(|s| s.spec.replicas),
    };
    Some((kind, wname, replicas.flatten().unwrap_or(1)))
}

pub fn workload_flux(state: &ClusterState, ns: &str, (kind, wname, _): &(String, String, i32)) -> Option<FluxRef> {
    let meta = match kind.as_str() {
        "Deployment" => state.deployments.iter().find(|d| namespace(&d.metadata) == ns && name(&d.metadata) == wname).map(|d| &d.metadata),
        _ => state.stateful_sets.iter().find(|s| namespace(&s.metadata) == ns && name(&s.metadata) == wname).map(|s| &s.metadata),
    }?;
    flux_owner(meta)
}

/// `s3-restore`.
pub struct S3Restore;

impl super::Playbook for S3Restore {
    fn info(&self) -> super::PlaybookInfo {
        super::PlaybookInfo { name: PLAYBOOK, arguments: "-n NAMESPACE --name PVC|WORKLOAD", summary: "restore an app's volume from its S3 backup with the configured restore Job" }
    }

    fn config_problems(&self, config: &crate::config::Config) -> Vec<String> {
        config_problems(&config.s3_restore)
    }

    fn plan(&self, state: &ClusterState, findings: &Findings, trigger: &super::Trigger) -> Result<Plan, super::PlanError> {
        restore(state, findings, trigger.require_namespace(self.name())?, trigger.require_name(self.name(), "--name (the PVC or its workload)")?)
    }
}
