//! What each action does to the cluster (run_action), the smaller ones
//! inline, the larger ones in the module of their area.

use std::time::Duration;

use chrono::Utc;
use kube::api::DeleteParams;
use kube::Client;
use serde_json::{json, Value};

use super::guards::RunLimits;
use super::nodes::taint_patch;
use super::objects::{api, delete, get, StepError};
use super::restore::set_flux_suspend;
use super::waits::wait;
use crate::cluster::write::{merge_patch, patch_locked, patch_status_locked};
use crate::plan::{Action, ObjectRef, Step};

pub(super) async fn run_action(client: &Client, step: &Step, limits: &RunLimits) -> Result<String, StepError> {
    match &step.action {
        Action::PromoteCnpg { cluster, pod } => {
            let api = api(client, cluster).await.map_err(StepError::Failed)?;
            let pod_ref = ObjectRef::pod(cluster.namespace.as_deref().unwrap_or_default(), pod);
            if get(client, &pod_ref).await.map_err(StepError::Failed)?.is_none() {
                return Err(StepError::Refused(format!("{pod_ref} does not exist")));
            }
            let now = Utc::now();
            let result = patch_status_locked(&api, &cluster.name, 5, |current| super::cnpg::promote_status_patch(&serde_json::to_value(current).expect("serializes"), pod, now))
                .await
                .map_err(|e| StepError::Failed(e.to_string()))?;
            Ok(match result {
                Some(_) => format!("targetPrimary set to {pod}"),
                None => format!("{pod} was already the target primary"),
            })
        }
        Action::ForceDeletePod { pod } => delete(client, pod, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await,
        Action::RestartPod { pod } => delete(client, pod, &DeleteParams::default()).await,
        Action::Delete { object } => delete(client, object, &DeleteParams::default()).await,
        Action::DeletePvc { pvc, pinned_node } => super::delete_pvc::delete_pvc(client, pvc, pinned_node, limits).await,
        Action::Wait { object, until, timeout_seconds } => wait(client, object, until, *timeout_seconds, limits).await,
        Action::SuspendFlux { object, .. } => set_flux_suspend(client, object, true).await,
        Action::ResumeFlux { object } => set_flux_suspend(client, object, false).await,
        Action::Scale { object, replicas } => {
            let api = api(client, object).await.map_err(StepError::Failed)?;
            let patch = json!({"spec": {"replicas": replicas}});
            api.patch_scale(&object.name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
                .await
                .map_err(|e| StepError::Failed(format!("scaling {object}: {e}")))?;
            Ok(format!("{object} scaled to {replicas}"))
        }
        Action::MergePatch { object, patch } | Action::TemporaryPatch { object, patch, .. } => {
            let api = api(client, object).await.map_err(StepError::Failed)?;
            merge_patch(&api, &object.name, patch).await.map_err(|e| StepError::Failed(e.to_string()))?;
            Ok(format!("patched {object}"))
        }
        Action::RunJob { job, manifest, timeout_seconds, success_marker, output } => {
            super::jobs::run_job(client, job, manifest, *timeout_seconds, success_marker, output, limits).await.map_err(StepError::from)
        }
        Action::RolloutRestart { object } => super::jobs::rollout_restart(client, object).await.map_err(StepError::from),
        Action::VerifyGarage { admin_url, token_file, min_buckets, timeout_seconds } => {
            let timeout = Duration::from_secs(*timeout_seconds);
            super::jobs::verify_garage(admin_url, token_file.as_deref(), *min_buckets, timeout, limits).await.map_err(StepError::from)
        }
        Action::SetCnpgPluginParameter { cluster, plugin, parameter, value } => {
            let api = api(client, cluster).await.map_err(StepError::Failed)?;
            let build = |current: &Value| super::cnpg::plugin_parameter_patch(current, plugin, parameter, value);
            match crate::cluster::write::patch_locked_or_refuse(&api, &cluster.name, build).await.map_err(|e| StepError::Failed(e.to_string()))? {
                crate::cluster::write::LockedPatch::Patched => Ok(format!("{cluster}: {plugin} {parameter} set to {value}")),
                crate::cluster::write::LockedPatch::AlreadySo => Ok(format!("{cluster}: {plugin} {parameter} was already {value}")),
                crate::cluster::write::LockedPatch::Refused(reason) => Err(StepError::Refused(format!("{cluster}: {reason}"))),
            }
        }
        Action::TaintNode { node, key, value, effect } => {
            let node_ref = ObjectRef { api_version: "v1".into(), kind: "Node".into(), namespace: None, name: node.clone() };
            let api = api(client, &node_ref).await.map_err(StepError::Failed)?;
            let result = patch_locked(&api, node, 5, |current| taint_patch(&serde_json::to_value(current).expect("serializes"), key, value, effect))
                .await
                .map_err(|e| StepError::Failed(e.to_string()))?;
            Ok(match result {
                Some(_) => format!("node {node} tainted {key}={value}:{effect}"),
                None => format!("node {node} already had {key}:{effect}"),
            })
        }
        Action::ApprovalGate { phase } => match limits.approved_phases.contains(phase) {
            true => Ok(format!("phase {phase} approved")),
            false => Err(StepError::Refused(format!("phase {phase} is not approved yet"))),
        },
        Action::RecreatePod { pod, timeout_seconds } => recreate_pod(client, pod, *timeout_seconds, limits).await,
        Action::Apply { object, manifest } => {
            let api = api(client, object).await.map_err(StepError::Failed)?;
            let params = kube::api::PatchParams::apply(crate::cluster::write::FIELD_MANAGER).force();
            api.patch(&object.name, &params, &kube::api::Patch::Apply(manifest)).await.map_err(|e| StepError::Failed(format!("applying {object}: {e}")))?;
            Ok(format!("applied {object}"))
        }
        Action::MarkPvcForDeletion { pvc, pinned_node } => super::cnpg::mark_pvc_for_deletion(client, pvc, pinned_node).await,
        Action::SetKanidmReplicas { kanidm, group, replicas } => super::kanidm::set_replicas(client, kanidm, group, *replicas).await.map_err(StepError::from),
        Action::ExecToSecret { pod, container, command, secret, key, pattern } => {
            super::kanidm::exec_to_secret(client, pod, container, command, secret, key, pattern).await.map_err(StepError::from)
        }
        Action::RepairGarageTables { admin_url, token_file } => super::jobs::repair_garage_tables(admin_url, token_file.as_deref()).await.map_err(StepError::from),
        Action::PhaseStart { phase } => Ok(format!("phase {phase} may start")),
    }
}

/// Deletes the pod and waits for its controller's replacement (same name,
/// new uid) to be Ready. Run again after an interruption it restarts the pod
/// once more, which is harmless.
async fn recreate_pod(client: &Client, pod: &ObjectRef, timeout_seconds: u64, limits: &RunLimits) -> Result<String, StepError> {
    let old_uid = get(client, pod).await.map_err(StepError::Failed)?.and_then(|p| p["metadata"]["uid"].as_str().map(String::from));
    delete(client, pod, &DeleteParams::default()).await?;
    let started = std::time::Instant::now();
    loop {
        if let Some(why) = limits.stop_requested() {
            return Err(StepError::Refused(why.into()));
        }
        if let Some(p) = get(client, pod).await.map_err(StepError::Failed)? {
            let replaced = p["metadata"]["uid"].as_str() != old_uid.as_deref() && p["metadata"]["deletionTimestamp"].is_null();
            let ready = p["status"]["containerStatuses"].as_array().is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c["ready"] == true));
            if replaced && ready {
                return Ok(format!("{pod} restarted and Ready"));
            }
        }
        if started.elapsed() >= Duration::from_secs(timeout_seconds) {
            return Err(StepError::Failed(format!("timed out after {timeout_seconds}s: {pod} was deleted but no Ready replacement appeared")));
        }
        tokio::time::sleep(limits.poll_interval).await;
    }
}
