//! CloudNativePG writes, as `kubectl cnpg promote` performs them (cloudnative-pg
//! `internal/cmd/plugin/promote/promote.go`),
//! and the reads that tell whether the operator's own failover happened.

use chrono::{DateTime, Utc};
use kube::api::DeleteParams;
use kube::Client;
use serde_json::{json, Value};

use super::runner::{check_pvc_deletable, delete, get, StepError};
use crate::plan::ObjectRef;

/// The value CNPG puts in `targetPrimary` while it waits for the WAL
/// receivers to stop, before it names the new primary
/// (cloudnative-pg v1.30.0 api/v1 `PendingFailoverMarker`).
pub const PENDING_FAILOVER_MARKER: &str = "pending";

/// `Some(detail)` once CNPG has moved the primary away from `from`:
/// `currentPrimary` names another instance and `targetPrimary` agrees.
pub fn failed_over(status: &Value, from: &str) -> Option<String> {
    let current = status["currentPrimary"].as_str().filter(|c| !c.is_empty())?;
    let target = status["targetPrimary"].as_str()?;
    (current != from && current == target && target != PENDING_FAILOVER_MARKER).then(|| format!("CNPG failed over from {from} to {current}"))
}

/// `pod` is still both current and target primary: no failover started.
pub fn primary_unchanged(status: &Value, pod: &str) -> bool {
    status["currentPrimary"].as_str() == Some(pod) && status["targetPrimary"].as_str() == Some(pod)
}

/// `Some(reason)` while the Cluster status names an instance whose pod or
/// data PVC (`<instance>`, v1.30.0 `api/v1/cluster_types.go`) is missing or
/// whose pod is not Ready. The status is the operator's last report: right
/// after a run deleted an instance's pod and storage it can still say
/// "Cluster in healthy state" with that instance in `instanceNames` until
/// the operator reconciles again (seen with the real operator,
/// tests/cnpg_operator.rs), so health is only taken once the named
/// instances are really there.
pub async fn instances_missing(client: &Client, ns: &str, status: &Value) -> Result<Option<String>, String> {
    for instance in status["instanceNames"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        let claim = get(client, &ObjectRef::pvc(ns, instance)).await?;
        if claim.as_ref().is_none_or(|c| c["metadata"]["deletionTimestamp"].is_string()) {
            return Ok(Some(format!("the status names {instance}, whose PVC is gone or going")));
        }
        let pod = get(client, &ObjectRef::pod(ns, instance)).await?;
        let ready = pod.as_ref().is_some_and(pod_ready);
        if !ready {
            return Ok(Some(format!("the status names {instance}, whose pod is missing or not Ready")));
        }
    }
    Ok(None)
}

/// Ready as the operator reads it (`pkg/utils/pod_conditions.go` IsPodReady:
/// the Ready condition); a pod reporting no conditions counts when every
/// container is ready, as lifeboat's planner reads pods.
fn pod_ready(pod: &Value) -> bool {
    if pod["metadata"]["deletionTimestamp"].is_string() || pod["status"]["phase"] != "Running" {
        return false;
    }
    match pod["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "Ready")) {
        Some(c) => c["status"] == "True",
        None => pod["status"]["containerStatuses"].as_array().is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c["ready"] == true)),
    }
}

/// Marks a PVC of an instance whose pod still exists for deletion, after the
/// runner's own checks (pinned to `pinned_node`, which is not Ready). The
/// claim's uid is a precondition, so a claim re-created under that name is
/// left alone. Done once the claim is gone or Terminating.
pub(super) async fn mark_pvc_for_deletion(client: &Client, pvc: &ObjectRef, pinned_node: &str) -> Result<String, StepError> {
    let Some(claim) = check_pvc_deletable(client, pvc, pinned_node).await? else {
        return Ok(format!("{pvc} already gone"));
    };
    if claim["metadata"]["deletionTimestamp"].is_string() {
        return Ok(format!("{pvc} already marked for deletion"));
    }
    let uid = claim["metadata"]["uid"].as_str().map(String::from);
    let precondition = kube::api::Preconditions { uid: uid.clone(), resource_version: None };
    let detail = delete(client, pvc, &DeleteParams { preconditions: Some(precondition), ..Default::default() }).await?;
    match get(client, pvc).await.map_err(StepError::Failed)? {
        Some(c) if c["metadata"]["deletionTimestamp"].is_string() => Ok(format!("{detail}: Terminating until its pod is deleted")),
        Some(c) if c["metadata"]["uid"].as_str() != uid.as_deref() => Ok(format!("{detail} (a new claim of that name exists)")),
        Some(_) => Err(StepError::Failed(format!("{pvc} was deleted but is not marked for deletion"))),
        None => Ok(detail),
    }
}

/// The status merge patch that asks CNPG to promote `pod`: `targetPrimary`
/// (never `currentPrimary`: the operator sets that once promotion happened),
/// its timestamp, the switchover phase, and Ready=False. None when `pod` is
/// already the target (promote is idempotent). The caller sends it with
/// [`crate::cluster::write::patch_status_locked`], which adds the resourceVersion lock.
pub fn promote_status_patch(current: &Value, pod: &str, now: DateTime<Utc>) -> Option<Value> {
    let status = &current["status"];
    if status["targetPrimary"].as_str() == Some(pod) {
        return None;
    }
    let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // A merge patch replaces lists whole: rewrite Ready, keep the others as they are.
    let mut conditions: Vec<Value> = status["conditions"].as_array().cloned().unwrap_or_default();
    conditions.retain(|c| c["type"] != "Ready");
    conditions.push(json!({
        "type": "Ready",
        "status": "False",
        "reason": "ClusterIsNotReady",
        "message": "Cluster Is Not Ready",
        "lastTransitionTime": stamp,
    }));
    Some(json!({
        "status": {
            "targetPrimary": pod,
            "targetPrimaryTimestamp": stamp,
            "phase": "Switchover in progress",
            "phaseReason": format!("Switching over to {pod}"),
            "conditions": conditions,
        }
    }))
}

/// The merge patch that sets `parameters[parameter] = value` on the plugin
/// entry named `plugin`, rewriting `spec.plugins` whole (a merge patch
/// replaces lists) from `current` so every other entry and field stays as
/// it is. Send it with [`crate::cluster::write::patch_locked`]. `Ok(None)` when the
/// value is already set; an error when the plugin is not configured.
pub fn plugin_parameter_patch(current: &Value, plugin: &str, parameter: &str, value: &str) -> Result<Option<Value>, String> {
    let mut plugins = current["spec"]["plugins"].as_array().cloned().unwrap_or_default();
    let entry = plugins.iter_mut().find(|p| p["name"] == plugin).ok_or_else(|| format!("spec.plugins has no entry named {plugin}"))?;
    if entry["parameters"][parameter] == value {
        return Ok(None);
    }
    if !entry["parameters"].is_object() {
        entry["parameters"] = json!({});
    }
    entry["parameters"][parameter] = json!(value);
    Ok(Some(json!({"spec": {"plugins": plugins}})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_parameter_patch_keeps_every_other_entry_and_field() {
        let current = json!({"spec": {"plugins": [
            {"name": "other", "parameters": {"a": "1"}},
            {"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": true, "futureField": 7,
             "parameters": {"barmanObjectName": "store", "serverName": "pg"}},
        ]}});
        let patch = plugin_parameter_patch(&current, "barman-cloud.cloudnative-pg.io", "serverName", "pg-r2").unwrap().unwrap();
        assert_eq!(patch["spec"]["plugins"][0], current["spec"]["plugins"][0]);
        let entry = &patch["spec"]["plugins"][1];
        assert_eq!(entry["parameters"], json!({"barmanObjectName": "store", "serverName": "pg-r2"}));
        assert_eq!((entry["futureField"].clone(), entry["isWALArchiver"].clone()), (json!(7), json!(true)));
        assert_eq!(plugin_parameter_patch(&patch, "barman-cloud.cloudnative-pg.io", "serverName", "pg-r2"), Ok(None), "idempotent");
        assert!(plugin_parameter_patch(&current, "missing", "serverName", "x").unwrap_err().contains("no entry named missing"));
        let bare = json!({"spec": {"plugins": [{"name": "p"}]}});
        assert_eq!(plugin_parameter_patch(&bare, "p", "k", "v").unwrap().unwrap()["spec"]["plugins"][0]["parameters"], json!({"k": "v"}));
    }
}
