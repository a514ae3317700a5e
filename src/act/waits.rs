//! The wait action: polls until its WaitCondition holds, the timeout
//! passes, or the run must stop (kill switch, lost leadership).

use std::time::Duration;

use kube::{Api, Client};

use super::guards::RunLimits;
use super::nodes::node_confirmed_gone;
use super::objects::{get, StepError};
use crate::plan::{ObjectRef, WaitCondition};

/// `Some(detail)` once an EndpointSlice of the Service has a ready address
/// (with `target_pod`, only an endpoint whose `targetRef` is that pod counts).
/// As the EndpointSlice API defines its conditions (k8s.io/api
/// discovery/v1 EndpointConditions, v1.35): a missing `ready` means ready and
/// a missing `terminating` means not terminating; a terminating endpoint is
/// never counted, whatever its `ready` says.
async fn ready_endpoints(client: &Client, service: &ObjectRef, target_pod: Option<&str>) -> Result<Option<String>, String> {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), service.namespace.as_deref().unwrap_or_default());
    let params = kube::api::ListParams::default().labels(&format!("kubernetes.io/service-name={}", service.name));
    let list = slices.list(&params).await.map_err(|e| format!("listing EndpointSlices of {service}: {e}"))?;
    let ready: Vec<String> = list
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .filter(|e| !e.conditions.as_ref().and_then(|c| c.terminating).unwrap_or(false))
        .filter(|e| target_pod.is_none_or(|pod| e.target_ref.as_ref().is_some_and(|r| r.kind.as_deref() == Some("Pod") && r.name.as_deref() == Some(pod))))
        .flat_map(|e| e.addresses.iter().cloned())
        .collect();
    let to = target_pod.map_or(String::new(), |pod| format!(" on {pod}"));
    Ok((!ready.is_empty()).then(|| format!("{service} has ready endpoints{to}: {}", ready.join(", "))))
}

pub(super) async fn wait(client: &Client, object: &ObjectRef, until: &WaitCondition, timeout_seconds: u64, limits: &RunLimits) -> Result<String, StepError> {
    let started = std::time::Instant::now();
    loop {
        if let Some(why) = limits.stop_requested() {
            return Err(StepError::Refused(why.into()));
        }
        if let WaitCondition::ConditionIs { condition, status } = until {
            let current = get(client, object).await.map_err(StepError::Failed)?;
            let found = current
                .as_ref()
                .filter(|o| o["metadata"]["deletionTimestamp"].is_null())
                .and_then(|o| o["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == condition.as_str())).cloned());
            if let Some(c) = found.as_ref().filter(|c| c["status"] == status.as_str()) {
                return Ok(format!("{object}: {condition}={status} ({})", c["reason"].as_str().unwrap_or("no reason")));
            }
            if started.elapsed() >= Duration::from_secs(timeout_seconds) {
                let seen = match (&current, &found) {
                    (None, _) => "it does not exist".to_string(),
                    (Some(o), _) if !o["metadata"]["deletionTimestamp"].is_null() => "it is being deleted".to_string(),
                    (_, None) => format!("it reports no {condition} condition"),
                    (_, Some(c)) => {
                        let why: Vec<&str> = [&c["reason"], &c["message"]].into_iter().filter_map(|v| v.as_str()).filter(|v| !v.is_empty()).collect();
                        format!("{condition}={}{}", c["status"].as_str().unwrap_or("?"), if why.is_empty() { String::new() } else { format!(" ({})", why.join(": ")) })
                    }
                };
                return Err(StepError::Failed(format!("timed out after {timeout_seconds}s waiting for {condition}={status} on {object}: {seen}")));
            }
            tokio::time::sleep(limits.poll_interval).await;
            continue;
        }
        if *until == WaitCondition::ServiceHasEndpoints {
            if let Some(detail) = ready_endpoints(client, object, None).await.map_err(StepError::Failed)? {
                return Ok(detail);
            }
            if started.elapsed() >= Duration::from_secs(timeout_seconds) {
                return Err(StepError::Failed(format!("timed out after {timeout_seconds}s: {object} has no ready endpoint")));
            }
            tokio::time::sleep(limits.poll_interval).await;
            continue;
        }
        if let WaitCondition::ServiceRoutesToCnpgPrimary { cluster } = until {
            let cluster_ref = ObjectRef::cnpg_cluster(object.namespace.as_deref().unwrap_or_default(), cluster);
            let primary = get(client, &cluster_ref).await.map_err(StepError::Failed)?.and_then(|c| c["status"]["currentPrimary"].as_str().map(String::from));
            if let Some(primary) = &primary {
                if let Some(detail) = ready_endpoints(client, object, Some(primary)).await.map_err(StepError::Failed)? {
                    return Ok(detail);
                }
            }
            if started.elapsed() >= Duration::from_secs(timeout_seconds) {
                let primary = primary.unwrap_or_else(|| "no currentPrimary".into());
                return Err(StepError::Failed(format!("timed out after {timeout_seconds}s: {object} has no ready endpoint on {cluster_ref}'s primary ({primary})")));
            }
            tokio::time::sleep(limits.poll_interval).await;
            continue;
        }
        if *until == WaitCondition::NodeConfirmedGone {
            if let Some(how) = node_confirmed_gone(client, &object.name).await.map_err(StepError::Failed)? {
                return Ok(format!("node {} confirmed gone: {how}", object.name));
            }
            if started.elapsed() >= Duration::from_secs(timeout_seconds) {
                return Err(StepError::Failed(format!("timed out after {timeout_seconds}s: nobody confirmed node {} is gone for good", object.name)));
            }
            tokio::time::sleep(limits.poll_interval).await;
            continue;
        }
        if let WaitCondition::ProvisionerReadyElsewhere { selector, lost_node, takeover_seconds } = until {
            if let Some(detail) = super::provisioner::ready_elsewhere(client, object, selector, lost_node, *takeover_seconds).await.map_err(StepError::Failed)? {
                return Ok(detail);
            }
            if started.elapsed() >= Duration::from_secs(timeout_seconds) {
                return Err(StepError::Failed(format!(
                    "timed out after {timeout_seconds}s: no pod labelled {selector:?} has been Ready for {takeover_seconds}s on a node other than {lost_node}"
                )));
            }
            tokio::time::sleep(limits.poll_interval).await;
            continue;
        }
        if *until == WaitCondition::ClaimUnused {
            let users = super::volsync::claim_users(client, object).await.map_err(StepError::Failed)?;
            if users.is_empty() {
                return Ok(format!("no pod mounts {object}"));
            }
            if started.elapsed() >= Duration::from_secs(timeout_seconds) {
                return Err(StepError::Failed(format!("timed out after {timeout_seconds}s: {object} is still mounted by {}", users.join(", "))));
            }
            tokio::time::sleep(limits.poll_interval).await;
            continue;
        }
        let current = get(client, object).await.map_err(StepError::Failed)?.ok_or_else(|| StepError::Failed(format!("{object} disappeared")))?;
        let status = &current["status"];
        match until {
            WaitCondition::ServiceHasEndpoints
            | WaitCondition::ClaimUnused
            | WaitCondition::NodeConfirmedGone
            | WaitCondition::ConditionIs { .. }
            | WaitCondition::ServiceRoutesToCnpgPrimary { .. } => {
                unreachable!("handled above")
            }
            WaitCondition::WorkloadReady => {
                let wanted = current["spec"]["replicas"].as_i64().unwrap_or(1);
                let ready = status["readyReplicas"].as_i64().unwrap_or(0);
                if ready >= wanted {
                    return Ok(format!("{object}: {ready}/{wanted} replicas ready"));
                }
            }
            WaitCondition::VolsyncManualSyncDone { token } => match super::volsync::manual_sync_outcome(&current, token) {
                Ok(Some(detail)) => return Ok(detail),
                Ok(None) => {}
                Err(reason) => return Err(StepError::Failed(format!("{object}: {reason}"))),
            },
            WaitCondition::CnpgPrimaryIs { pod } => {
                if status["currentPrimary"].as_str() == Some(pod) {
                    return Ok(format!("{pod} is the current primary"));
                }
            }
            WaitCondition::NoReplicas => {
                if status["replicas"].as_i64().unwrap_or(0) == 0 {
                    return Ok(format!("{object} has no replicas left"));
                }
            }
            WaitCondition::CnpgBackupCompleted => match status["phase"].as_str() {
                Some("completed") => return Ok(format!("{object} completed (backup id {})", status["backupId"].as_str().unwrap_or("unknown"))),
                Some("failed") => return Err(StepError::Failed(format!("{object} failed: {}", status["error"].as_str().unwrap_or("no error reported")))),
                _ => {}
            },
            WaitCondition::CnpgHealthy => {
                let instances = current["spec"]["instances"].as_i64().unwrap_or(0);
                let ready = status["readyInstances"].as_i64().unwrap_or(0);
                let dangling = status["danglingPVC"].as_array().map_or(0, |d| d.len());
                let healthy = status["phase"].as_str() == Some("Cluster in healthy state");
                // Right after an instance's storage is deleted the operator can name only the
                // survivors while readyInstances and the phase still say healthy.
                let listed = status["instanceNames"].as_array().map_or(0, |names| names.len()) as i64;
                if ready >= instances && listed >= instances && dangling == 0 && healthy {
                    let ns = object.namespace.as_deref().unwrap_or_default();
                    if super::cnpg::instances_missing(client, ns, status).await.map_err(StepError::Failed)?.is_none() {
                        return Ok(format!("{ready}/{instances} instances ready, no dangling PVCs"));
                    }
                }
            }
            WaitCondition::CnpgFailedOver { from } => {
                if let Some(detail) = super::cnpg::failed_over(status, from) {
                    return Ok(detail);
                }
            }
            WaitCondition::SpecReplicas { replicas } => {
                if current["spec"]["replicas"].as_i64() == Some(i64::from(*replicas)) {
                    return Ok(format!("{object} asks for {replicas} replicas now"));
                }
            }
            WaitCondition::ProvisionerReadyElsewhere { .. } => unreachable!("handled above"),
        }
        if started.elapsed() >= Duration::from_secs(timeout_seconds) {
            return Err(StepError::Failed(format!("timed out after {timeout_seconds}s waiting for {object}: {}", serde_json::to_string(status).unwrap_or_default())));
        }
        tokio::time::sleep(limits.poll_interval).await;
    }
}
