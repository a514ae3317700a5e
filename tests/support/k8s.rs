//! Playing the operators and the kubelet: create objects on the real
//! apiserver and write their status through the status subresource, the way
//! CNPG, VolSync, Flux or a kubelet would.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::{Api, Client};
use serde_json::{json, Value};

/// The Api for an object's apiVersion/kind, found through discovery.
pub async fn api_for(client: &Client, api_version: &str, kind: &str, ns: Option<&str>) -> Api<DynamicObject> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, caps): (ApiResource, _) = discovery::pinned_kind(client, &gvk).await.unwrap_or_else(|e| panic!("discovering {api_version} {kind}: {e}"));
    match (caps.scope, ns) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
        (Scope::Namespaced, None) => panic!("{kind} is namespaced: give a namespace"),
        (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
    }
}

fn identity(object: &Value) -> (String, String, Option<String>, String) {
    let api_version = object["apiVersion"].as_str().expect("apiVersion").to_string();
    let kind = object["kind"].as_str().expect("kind").to_string();
    let ns = object["metadata"]["namespace"].as_str().map(String::from);
    let name = object["metadata"]["name"].as_str().expect("name").to_string();
    (api_version, kind, ns, name)
}

/// Creates (server-side apply) an object, then writes its `status` through
/// the status subresource. Fixture metadata the server owns is dropped.
pub async fn create(client: &Client, mut object: Value, ns: Option<&str>) -> Value {
    if let Some(ns) = ns {
        object["metadata"]["namespace"] = json!(ns);
    }
    let status = object.as_object_mut().and_then(|o| o.remove("status"));
    if let Some(meta) = object["metadata"].as_object_mut() {
        for owned in ["uid", "creationTimestamp", "resourceVersion"] {
            meta.remove(owned);
        }
        // Owner UIDs of fixtures are made up; the apiserver accepts them as-is.
    }
    let (api_version, kind, ns, name) = identity(&object);
    let api = api_for(client, &api_version, &kind, ns.as_deref()).await;
    api.patch(&name, &PatchParams::apply("lifeboat-test-operator").force(), &Patch::Apply(&object)).await.unwrap_or_else(|e| panic!("creating {kind} {name}: {e}"));
    if let Some(status) = status {
        set_status(client, &api_version, &kind, ns.as_deref(), &name, status).await;
    }
    serde_json::to_value(api.get(&name).await.expect("read back")).unwrap()
}

/// Merge-patches `status` on the status subresource (what an operator does).
pub async fn set_status(client: &Client, api_version: &str, kind: &str, ns: Option<&str>, name: &str, status: Value) {
    let api = api_for(client, api_version, kind, ns).await;
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&json!({ "status": status }))).await.unwrap_or_else(|e| panic!("writing status of {kind} {name}: {e}"));
}

pub async fn get(client: &Client, api_version: &str, kind: &str, ns: Option<&str>, name: &str) -> Value {
    let api = api_for(client, api_version, kind, ns).await;
    serde_json::to_value(api.get(name).await.unwrap_or_else(|e| panic!("get {kind} {name}: {e}"))).unwrap()
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn ready_condition(status: &str, since: DateTime<Utc>) -> Value {
    let reason = if status == "True" { "KubeletReady" } else { "NodeStatusUnknown" };
    json!([{"type": "Ready", "status": status, "reason": reason, "message": "", "lastTransitionTime": rfc3339(since), "lastHeartbeatTime": rfc3339(since)}])
}

/// A Ready node, as a kubelet registers it.
pub async fn node_ready(client: &Client, name: &str) {
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                      "status": {"conditions": ready_condition("True", Utc::now())}});
    create(client, node, None).await;
}

/// The node controller's view of a node whose kubelet stopped reporting.
pub async fn mark_node_not_ready(client: &Client, name: &str, since: DateTime<Utc>) {
    set_status(client, "v1", "Node", None, name, json!({"conditions": ready_condition("Unknown", since)})).await;
}

pub async fn mark_node_ready(client: &Client, name: &str) {
    set_status(client, "v1", "Node", None, name, json!({"conditions": ready_condition("True", Utc::now())})).await;
}

/// CNPG reporting its ContinuousArchiving condition.
pub async fn set_cnpg_archiving(client: &Client, ns: &str, cluster: &str, ok: bool, since: DateTime<Utc>) {
    let current = get(client, "postgresql.cnpg.io/v1", "Cluster", Some(ns), cluster).await;
    let mut conditions: Vec<Value> = current["status"]["conditions"].as_array().cloned().unwrap_or_default();
    conditions.retain(|c| c["type"] != "ContinuousArchiving");
    conditions.push(if ok {
        json!({"type": "ContinuousArchiving", "status": "True", "reason": "ContinuousArchivingSuccess", "message": "", "lastTransitionTime": rfc3339(since)})
    } else {
        json!({"type": "ContinuousArchiving", "status": "False", "reason": "ContinuousArchivingFailing", "message": "Expected empty archive", "lastTransitionTime": rfc3339(since)})
    });
    set_status(client, "postgresql.cnpg.io/v1", "Cluster", Some(ns), cluster, json!({"conditions": conditions})).await;
}

/// The VolSync mover finishing a sync of a ReplicationSource.
pub async fn volsync_synced(client: &Client, ns: &str, rs: &str, at: DateTime<Utc>) {
    let status = json!({"lastSyncTime": rfc3339(at), "lastSyncDuration": "42s", "latestMoverStatus": {"result": "Successful", "logs": "ok"},
                        "conditions": [{"type": "Synchronizing", "status": "False", "reason": "WaitingForSchedule", "message": "", "lastTransitionTime": rfc3339(at)}]});
    set_status(client, "volsync.backube/v1alpha1", "ReplicationSource", Some(ns), rs, status).await;
}

/// The snapshot `lifeboat serve` would build now from its watches of the
/// harness's apiserver (waits until every watch has listed once).
pub async fn live_snapshot(client: &Client, config: &lifeboat::config::Config) -> lifeboat::snapshot::Snapshot {
    let hub = lifeboat::runtime::hub::start_live_hub(config.clone(), client.clone());
    lifeboat::runtime::hub::wait_ready(&hub, std::time::Duration::from_secs(60)).await.unwrap();
    lifeboat::snapshot::Snapshot::build(hub.live.as_ref().unwrap().snapshot(), config, &Default::default())
}

/// A pod as the kubelet reports it once its one container runs and is ready.
pub fn running(mut pod: Value) -> Value {
    pod["status"] = json!({"phase": "Running", "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "image": "i", "imageID": "", "state": {"running": {"startedAt": "2026-11-25T00:00:00Z"}}}]});
    pod
}

/// Plays the Deployment and StatefulSet controllers of `ns` for tests that
/// run no pods: `status.replicas` (with `ready`, also `readyReplicas`)
/// follows `spec.replicas` (1 when unset, the apps/v1 default).
pub async fn play_replica_counts(client: Client, ns: String, ready: bool) {
    loop {
        for kind in ["Deployment", "StatefulSet"] {
            let api = api_for(&client, "apps/v1", kind, Some(&ns)).await;
            for w in api.list(&kube::api::ListParams::default()).await.unwrap().items {
                let w = serde_json::to_value(w).unwrap();
                let (spec, status) = (w["spec"]["replicas"].as_i64().unwrap_or(1), w["status"]["replicas"].as_i64().unwrap_or(0));
                if spec != status {
                    let counts = if ready { json!({"replicas": spec, "readyReplicas": spec}) } else { json!({"replicas": spec}) };
                    set_status(&client, "apps/v1", kind, Some(&ns), w["metadata"]["name"].as_str().unwrap(), counts).await;
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
