//! Deleting the PVC of a lost node, under the runner's own invariants: the
//! volume is pinned to the planned node, that node is not Ready (and, in
//! auto mode, confirmed gone), only the checked claim is deleted, and a claim
//! stuck on pvc-protection with no pod using it has that finalizer cleared.

use std::sync::Arc;
use std::time::Duration;

use kube::api::DeleteParams;
use kube::{Api, Client};
use serde_json::{json, Value};

use super::guards::RunLimits;
use super::nodes::{node_confirmed_gone, node_ready};
use super::objects::{api, delete, get, StepError};
use crate::cluster::resources::{LeanObject, Node, PersistentVolume};
use crate::cluster::write::{merge_patch, WriteError};
use crate::cluster::ClusterState;
use crate::plan::ObjectRef;

/// The runner's own invariant: the PVC's volume must be pinned to the node
/// the plan named, and that node must not be Ready.
pub(super) async fn check_pvc_deletable(client: &Client, pvc: &ObjectRef, planned_node: &str) -> Result<Option<Value>, StepError> {
    let Some(claim) = get(client, pvc).await.map_err(StepError::Failed)? else { return Ok(None) };
    let Some(volume) = claim["spec"]["volumeName"].as_str() else {
        return Err(StepError::Refused(format!("{pvc} is not bound: cannot prove which node holds its data")));
    };
    let pvs: Api<<PersistentVolume as LeanObject>::Wire> = Api::all(client.clone());
    let pv = pvs.get_opt(volume).await.map_err(|e| StepError::Failed(format!("reading PV {volume}: {e}")))?;
    let pinned = match pv {
        Some(pv) => {
            let nodes: Api<<Node as LeanObject>::Wire> = Api::all(client.clone());
            let node_list = nodes.list(&Default::default()).await.map_err(|e| StepError::Failed(format!("listing nodes: {e}")))?;
            let nodes = node_list.items.into_iter().map(|n| Arc::new(Node::from_wire(n))).collect();
            let mut state = ClusterState { persistent_volumes: vec![Arc::new(PersistentVolume::from_wire(pv))], nodes, ..Default::default() };
            state.finish();
            crate::inspect::nodes::pinned_nodes(&state).into_values().next()
        }
        None => None,
    };
    match pinned {
        Some(node) if node == planned_node => {}
        Some(node) => return Err(StepError::Refused(format!("{pvc} is now pinned to {node}, not {planned_node} as planned"))),
        None => return Err(StepError::Refused(format!("{pvc}'s volume is not pinned to one node: refusing to delete it"))),
    }
    if node_ready(client, planned_node).await.map_err(StepError::Failed)? {
        return Err(StepError::Refused(format!("node {planned_node} is Ready: never delete a PVC whose node is Ready")));
    }
    Ok(Some(claim))
}

pub(super) async fn delete_pvc(client: &Client, pvc: &ObjectRef, pinned_node: &str, limits: &RunLimits) -> Result<String, StepError> {
    let Some(checked) = check_pvc_deletable(client, pvc, pinned_node).await? else {
        return Ok(format!("{pvc} already gone"));
    };
    if limits.confirm_node_gone_before_deleting_data && node_confirmed_gone(client, pinned_node).await.map_err(StepError::Failed)?.is_none() {
        return Err(StepError::Refused(format!(
            "{pvc}: nobody confirmed node {pinned_node} is gone for good, and this run was not approved by a human (auto mode): \
             annotate the Node {}=true, taint it {}, or delete it, then run again",
            crate::plan::playbooks::node_loss::CONFIRMED_GONE_ANNOTATION,
            crate::plan::playbooks::node_loss::OUT_OF_SERVICE_TAINT
        )));
    }
    // Only the claim that was checked: a StatefulSet re-creates a missing
    // claim under the same name at once, and that one must be left alone.
    let uid = checked["metadata"]["uid"].as_str().map(String::from);
    let precondition = kube::api::Preconditions { uid: uid.clone(), resource_version: None };
    let mut detail = delete(client, pvc, &DeleteParams { preconditions: Some(precondition), ..Default::default() }).await?;
    let recreated = |claim: &Value| claim["metadata"]["uid"].as_str() != uid.as_deref();
    // Stuck Terminating on pvc-protection with no live pod using it: clear finalizers.
    for _ in 0..10 {
        let Some(claim) = get(client, pvc).await.map_err(StepError::Failed)?.filter(|c| !recreated(c)) else { return Ok(detail) };
        let only_protection = claim["metadata"]["finalizers"].as_array().is_some_and(|f| f.iter().all(|x| x == "kubernetes.io/pvc-protection"));
        if only_protection && !claim_in_use(client, pvc).await.map_err(StepError::Failed)? {
            let api = api(client, pvc).await.map_err(StepError::Failed)?;
            // The uid makes the apiserver refuse the patch if the claim was re-created meanwhile.
            match merge_patch(&api, &pvc.name, &json!({"metadata": {"uid": uid, "finalizers": null}})).await {
                Ok(_) => detail.push_str("; cleared the pvc-protection finalizer (no pod uses it)"),
                // The pvc-protection controller released it first: the claim is gone, as wanted.
                Err(WriteError::Api { source: kube::Error::Api(status), .. }) if status.code == 404 => return Ok(format!("{detail}; it was released meanwhile")),
                Err(e) => return Err(StepError::Failed(e.to_string())),
            }
        }
        tokio::time::sleep(limits.poll_interval.min(Duration::from_millis(500))).await;
    }
    match get(client, pvc).await.map_err(StepError::Failed)? {
        Some(claim) if !recreated(&claim) => Err(StepError::Failed(format!("{pvc} is still present (Terminating?) after deletion"))),
        _ => Ok(detail),
    }
}

/// As the pvc-protection controller decides it: only a scheduled pod uses a
/// claim (a StatefulSet's re-created, unschedulable pod does not).
async fn claim_in_use(client: &Client, pvc: &ObjectRef) -> Result<bool, String> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), pvc.namespace.as_deref().unwrap_or_default());
    let list = pods.list(&Default::default()).await.map_err(|e| format!("listing pods: {e}"))?;
    Ok(list.items.iter().any(|p| {
        p.spec.as_ref().is_some_and(|s| {
            s.node_name.as_deref().is_some_and(|n| !n.is_empty())
                && s.volumes.iter().flatten().any(|v| v.persistent_volume_claim.as_ref().is_some_and(|c| c.claim_name == pvc.name))
        })
    }))
}
