//! What steps ask of Nodes: is one Ready, did a human confirm it is gone for
//! good, and the patch that taints one.

use kube::api::DynamicObject;
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::cluster::resources::{find_condition, LeanObject, Node};

/// Ready unless the Node is missing or its Ready condition is not True.
pub(super) async fn node_ready(client: &Client, node: &str) -> Result<bool, String> {
    let nodes: Api<<Node as LeanObject>::Wire> = Api::all(client.clone());
    match nodes.get_opt(node).await {
        Ok(Some(n)) => Ok(find_condition(&n.status.conditions, "Ready").is_some_and(|c| c.status == "True")),
        Ok(None) => Ok(false),
        Err(e) => Err(format!("reading Node {node}: {e}")),
    }
}

/// How a human confirmed the node is gone for good, if they did.
pub(super) async fn node_confirmed_gone(client: &Client, node: &str) -> Result<Option<&'static str>, String> {
    use crate::plan::playbooks::node_loss::{CONFIRMED_GONE_ANNOTATION, OUT_OF_SERVICE_TAINT};
    let nodes: Api<DynamicObject> = Api::all_with(client.clone(), &kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::Node>(&()));
    let Some(n) = nodes.get_opt(node).await.map_err(|e| format!("reading Node {node}: {e}"))? else { return Ok(Some("the Node object was deleted")) };
    if n.metadata.annotations.as_ref().and_then(|a| a.get(CONFIRMED_GONE_ANNOTATION)).is_some_and(|v| v == "true") {
        return Ok(Some("annotated lifeboat.dev/confirmed-gone=true"));
    }
    let tainted = n.data["spec"]["taints"].as_array().is_some_and(|ts| ts.iter().any(|t| t["key"] == OUT_OF_SERVICE_TAINT));
    Ok(tainted.then_some("tainted node.kubernetes.io/out-of-service"))
}

/// The merge patch adding a taint to `spec.taints` (rewritten whole, the
/// others kept); None when a taint with that key and effect is there.
pub(super) fn taint_patch(node: &Value, key: &str, value: &str, effect: &str) -> Option<Value> {
    let mut taints = node["spec"]["taints"].as_array().cloned().unwrap_or_default();
    if taints.iter().any(|t| t["key"] == key && t["effect"] == effect) {
        return None;
    }
    taints.push(json!({"key": key, "value": value, "effect": effect}));
    Some(json!({"spec": {"taints": taints}}))
}
