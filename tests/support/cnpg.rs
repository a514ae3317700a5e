//! CloudNativePG played on the test apiserver, as cloudnative-pg v1.30.0
//! behaves, and the lost-primary scene of the cnpg-instance-lost and alert
//! end-to-end tests. Each tick, per Cluster, the first rule that applies
//! writes (one change per tick, as a reconcile loop requeues):
//!
//! 1. The target's instance manager promotes itself and sets
//!    `currentPrimary` once its pod is Ready
//!    (`internal/management/controller/instance_controller.go` reconcilePrimary).
//! 2. Failover, unless [`Failover::Stalled`] (`internal/controller/replicas.go`
//!    reconcileTargetPrimaryForNonReplicaCluster, `cluster_controller.go`
//!    handleSwitchover): the primary reports no status (its pod is not Ready
//!    or its node is not Ready; a pod still Ready defers it), it is not
//!    fenced, failoverQuorum is off, `spec.failoverDelay` has passed since
//!    `currentPrimaryFailingSinceTimestamp` → `targetPrimary: pending`, then
//!    the most advanced replica (`pkg/postgres/status.go` Less: received
//!    LSN, then name).
//! 3. A pod deleted while its PVC is still there (not Terminating) is
//!    re-created on that PVC, Pending when the PVC's node is gone
//!    (`internal/controller/cluster_create.go` ensureInstancesAreCreated,
//!    "Creating new Pod to reattach a PVC"; deferred while a PVC terminates).
//! 4. An instance with neither pod nor PVC is re-created on a healthy node
//!    under the first serial no other instance uses, usually its own name
//!    (`cluster_create.go` reconcileMissingInstance, generateNodeSerial), only while
//!    every other instance is Ready ("Waiting for the instances to become
//!    active" otherwise).
//! 5. The status (readyInstances, danglingPVC, phase) follows the pods; the
//!    `<cluster>-rw` EndpointSlice (EndpointSlice controller for the Service
//!    CNPG creates with selector `cnpg.io/instanceRole: primary`,
//!    `pkg/specs/services.go`) points at the current primary while it is Ready.
//! 6. A `Backup` of the cluster completes (`internal/controller/backup_controller.go`
//!    phases; the plugin reports the backup id).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use kube::Client;
use serde_json::{json, Value};

use super::fixtures::*;
use super::k8s::*;

const CNPG: &str = "postgresql.cnpg.io/v1";
/// `PendingFailoverMarker` (api/v1, v1.30.0).
const PENDING: &str = "pending";
/// What an instance manager reports over `/pg/status` and the operator
/// orders failover candidates by: not in the API, so a scene writes it on the
/// pod for the player to read (lifeboat never reads it).
pub const RECEIVED_LSN: &str = "test.lifeboat.dev/received-lsn";

/// Whether the played operator fails over by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failover {
    /// As upstream: fails over when the primary stops reporting.
    Automatic,
    /// The operator's failover never starts (upstream returns without one
    /// when its most advanced instance reports no `/pg/status`, replicas.go),
    /// as on the cluster examples/node-loss was taken from: still everything
    /// else, including following a promotion someone else requested.
    Stalled,
}

/// What the player sees of the cluster in one tick.
pub struct World<'a> {
    pub pods: Vec<&'a Value>,
    pub pvcs: Vec<&'a Value>,
    pub pvs: Vec<&'a Value>,
    pub nodes_ready: &'a BTreeMap<String, bool>,
    pub healthy_node: &'a str,
}

impl World<'_> {
    fn pod(&self, ns: &str, name: &str) -> Option<&Value> {
        self.pods.iter().copied().find(|p| p["metadata"]["namespace"] == ns && p["metadata"]["name"] == name)
    }
    fn pvc(&self, ns: &str, name: &str) -> Option<&Value> {
        self.pvcs.iter().copied().find(|p| p["metadata"]["namespace"] == ns && p["metadata"]["name"] == name)
    }
    fn node_ready(&self, node: &str) -> bool {
        self.nodes_ready.get(node) == Some(&true)
    }
    /// The node a claim's volume is pinned to, if any.
    fn pinned_node(&self, pvc: &Value) -> Option<String> {
        let volume = pvc["spec"]["volumeName"].as_str()?;
        let pv = self.pvs.iter().find(|p| p["metadata"]["name"] == volume)?;
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0].as_str().map(String::from)
    }
    /// The instance answers the operator: its pod is Ready on a Ready node.
    fn reporting(&self, ns: &str, instance: &str) -> bool {
        self.pod(ns, instance).is_some_and(|p| pod_ready(p) && p["spec"]["nodeName"].as_str().is_some_and(|n| self.node_ready(n)))
    }
}

/// Ready as the operator reads it (utils.IsPodReady): the Ready condition,
/// or, for fixtures without conditions, every container ready.
pub fn pod_ready(pod: &Value) -> bool {
    if pod["metadata"]["deletionTimestamp"].is_string() || pod["status"]["phase"] != "Running" {
        return false;
    }
    match pod["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "Ready")) {
        Some(c) => c["status"] == "True",
        None => pod["status"]["containerStatuses"].as_array().is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c["ready"] == true)),
    }
}

fn terminating(o: &Value) -> bool {
    o["metadata"]["deletionTimestamp"].is_string()
}

fn lsn(pod: &Value) -> u64 {
    let text = pod["metadata"]["annotations"][RECEIVED_LSN].as_str().unwrap_or("0/0");
    let (hi, lo) = text.split_once('/').unwrap_or(("0", "0"));
    (u64::from_str_radix(hi, 16).unwrap_or(0) << 32) | u64::from_str_radix(lo, 16).unwrap_or(0)
}

/// One reconcile of `cluster`; returns after its first write.
pub async fn reconcile(client: &Client, cluster: &Value, world: &World<'_>, failover: Failover) {
    let ns = cluster["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
    let name = cluster["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let status = &cluster["status"];
    let current = status["currentPrimary"].as_str().unwrap_or_default().to_string();
    let target = status["targetPrimary"].as_str().unwrap_or_default().to_string();
    let instances: Vec<String> = status["instanceNames"].as_array().map_or(vec![], |a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect());
    let set = |patch: Value| {
        let (ns, name) = (ns.clone(), name.clone());
        async move { set_status(client, CNPG, "Cluster", Some(&ns), &name, patch).await }
    };

    // 1. The target's instance manager promotes itself.
    if !target.is_empty() && target != PENDING && target != current {
        if world.reporting(&ns, &target) {
            set(json!({"currentPrimary": target, "currentPrimaryTimestamp": rfc3339(Utc::now()), "phase": "Waiting for the instances to become active"})).await;
        }
        return;
    }
    // 2. The operator's own failover.
    if failover == Failover::Automatic && !current.is_empty() {
        if target == PENDING {
            let mut candidates: Vec<&String> = instances.iter().filter(|i| **i != current && world.reporting(&ns, i)).collect();
            candidates.sort_by_key(|i| (std::cmp::Reverse(world.pod(&ns, i).map_or(0, lsn)), (*i).clone()));
            if let Some(next) = candidates.first() {
                set(json!({"targetPrimary": next, "targetPrimaryTimestamp": rfc3339(Utc::now()), "phase": "Failing over",
                    "phaseReason": format!("Failing over from {current} to {next}")}))
                .await;
            }
            return;
        }
        if failover_due(cluster, world, &ns, &current) {
            if status["currentPrimaryFailingSinceTimestamp"].as_str().unwrap_or_default().is_empty() {
                set(json!({"currentPrimaryFailingSinceTimestamp": rfc3339(Utc::now())})).await;
                return;
            }
            let since: chrono::DateTime<Utc> = status["currentPrimaryFailingSinceTimestamp"].as_str().unwrap().parse().unwrap();
            let delay = cluster["spec"]["failoverDelay"].as_i64().unwrap_or(0);
            if (Utc::now() - since).num_seconds() >= delay {
                set(json!({"targetPrimary": PENDING, "phase": "Failing over", "phaseReason": format!("Initiating a failover from {current}")})).await;
            }
            return;
        }
    }
    // 3. Re-attach a pod to a PVC left without one.
    for instance in &instances {
        let Some(claim) = world.pvc(&ns, instance) else { continue };
        if world.pod(&ns, instance).is_some() || terminating(claim) {
            continue;
        }
        let node = world.pinned_node(claim).filter(|n| world.node_ready(n));
        let mut pod = instance_pod(cluster, &ns, instance, node.as_deref());
        if node.is_some() {
            pod["status"] = super::players::running_status(&pod);
        }
        create(client, pod, None).await;
        return;
    }
    // 4. Replace an instance that has neither pod nor PVC.
    let gone: Vec<&String> = instances.iter().filter(|i| world.pod(&ns, i).is_none() && world.pvc(&ns, i).is_none()).collect();
    let others_ready = instances.iter().filter(|i| !gone.contains(i)).all(|i| world.reporting(&ns, i));
    if !gone.is_empty() && others_ready {
        // v1.30.0 `generateNodeSerial`: the first serial no remaining instance
        // uses, so a lost instance comes back under its own name.
        let remaining: Vec<&String> = instances.iter().filter(|i| !gone.contains(i)).collect();
        let serial = (1..).find(|n| !remaining.iter().any(|i| **i == format!("{name}-{n}"))).unwrap();
        let instance = format!("{name}-{serial}");
        create(
            client,
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": instance, "namespace": ns, "labels": {"cnpg.io/cluster": name, "cnpg.io/instanceName": instance, "cnpg.io/pvcRole": "PG_DATA"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": cluster["spec"]["storage"]["size"].as_str().unwrap_or("1Gi")}}}}),
            None,
        )
        .await;
        let mut pod = instance_pod(cluster, &ns, &instance, Some(world.healthy_node));
        pod["status"] = super::players::running_status(&pod);
        create(client, pod, None).await;
        // Sorted, as `pkg/reconciler/persistentvolumeclaim/status.go` reports them.
        let mut names: Vec<String> = instances.iter().filter(|i| !gone.contains(i)).cloned().chain([instance]).collect();
        names.sort();
        set(json!({"instanceNames": names, "instances": names.len()})).await;
        return;
    }
    // 5. Status and the -rw endpoint.
    let ready = instances.iter().filter(|i| world.reporting(&ns, i)).count() as i64;
    let wanted = cluster["spec"]["instances"].as_i64().unwrap_or(1);
    let dangling: Vec<&String> = instances.iter().filter(|i| world.pvc(&ns, i).is_some() && world.pod(&ns, i).is_none()).collect();
    let healthy = ready == wanted && instances.len() as i64 == wanted && current == target;
    let phase = if healthy { "Cluster in healthy state" } else { "Waiting for the instances to become active" };
    if status["readyInstances"].as_i64() != Some(ready) || status["phase"] != phase || status["danglingPVC"].as_array().map_or(0, |d| d.len()) != dangling.len() {
        let mut conditions: Vec<Value> = status["conditions"].as_array().cloned().unwrap_or_default();
        conditions.retain(|x| x["type"] != "Ready");
        let (s, reason) = if healthy { ("True", "ClusterIsReady") } else { ("False", "ClusterIsNotReady") };
        conditions.push(json!({"type": "Ready", "status": s, "reason": reason, "message": reason, "lastTransitionTime": rfc3339(Utc::now())}));
        set(json!({"readyInstances": ready, "danglingPVC": dangling, "phase": phase, "conditions": conditions})).await;
        return;
    }
    route_rw(client, &ns, &name, &current, world).await;
    complete_backups(client, &ns, &name).await;
}

/// The primary stopped reporting and nothing upstream holds the failover back.
fn failover_due(cluster: &Value, world: &World<'_>, ns: &str, primary: &str) -> bool {
    if world.reporting(ns, primary) || cluster["status"]["currentPrimary"] != cluster["status"]["targetPrimary"] {
        return false;
    }
    // A pod still Ready whose status cannot be read: deferred until Kubernetes marks it not Ready.
    if world.pod(ns, primary).is_some_and(pod_ready) {
        return false;
    }
    let fenced = cluster["metadata"]["annotations"]["cnpg.io/fencedInstances"].as_str().unwrap_or("[]");
    let fenced: Vec<String> = serde_json::from_str(fenced).unwrap_or_default();
    let quorum = cluster["spec"]["postgresql"]["synchronous"]["failoverQuorum"] == true;
    !fenced.iter().any(|f| f == primary || f == "*") && !quorum
}

fn instance_pod(cluster: &Value, ns: &str, instance: &str, node: Option<&str>) -> Value {
    let name = cluster["metadata"]["name"].as_str().unwrap_or_default();
    let role = if cluster["status"]["currentPrimary"] == instance { "primary" } else { "replica" };
    let mut spec = json!({"containers": [{"name": "postgres", "image": cluster["spec"]["imageName"].as_str().unwrap_or("ghcr.io/cloudnative-pg/postgresql:17")}],
        "volumes": [{"name": "pgdata", "persistentVolumeClaim": {"claimName": instance}}]});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": instance, "namespace": ns,
                     "labels": {"cnpg.io/cluster": name, "cnpg.io/instanceName": instance, "cnpg.io/instanceRole": role, "cnpg.io/podRole": "instance"}},
        "spec": spec})
}

/// The -rw Service and its EndpointSlice, pointing at the Ready primary.
async fn route_rw(client: &Client, ns: &str, cluster: &str, primary: &str, world: &World<'_>) {
    if !world.reporting(ns, primary) {
        return;
    }
    let slice_name = format!("{cluster}-rw-1");
    let slices = api_for(client, "discovery.k8s.io/v1", "EndpointSlice", Some(ns)).await;
    let existing = slices.get_opt(&slice_name).await.ok().flatten().map(|s| serde_json::to_value(s).unwrap());
    if existing.as_ref().is_some_and(|s| s["endpoints"][0]["targetRef"]["name"] == primary) {
        return;
    }
    create(
        client,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("{cluster}-rw"), "namespace": ns},
        "spec": {"ports": [{"port": 5432}], "selector": {"cnpg.io/cluster": cluster, "cnpg.io/instanceRole": "primary"}}}),
        None,
    )
    .await;
    create(client, json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": slice_name, "namespace": ns, "labels": {"kubernetes.io/service-name": format!("{cluster}-rw")}},
        "addressType": "IPv4", "ports": [{"port": 5432}],
        "endpoints": [{"addresses": ["10.0.0.12"], "conditions": {"ready": true, "serving": true, "terminating": false}, "targetRef": {"kind": "Pod", "name": primary, "namespace": ns}}]}), None).await;
}

async fn complete_backups(client: &Client, ns: &str, cluster: &str) {
    let backups = api_for(client, CNPG, "Backup", Some(ns)).await;
    let Ok(list) = backups.list(&Default::default()).await else { return };
    for b in list.items {
        let b = serde_json::to_value(b).unwrap();
        if b["spec"]["cluster"]["name"] == cluster && b["status"]["phase"].is_null() {
            let now = rfc3339(Utc::now());
            let name = b["metadata"]["name"].as_str().unwrap_or_default().to_string();
            set_status(client, CNPG, "Backup", Some(ns), &name, json!({"phase": "completed", "backupId": "20261206T120000", "startedAt": now, "stoppedAt": now})).await;
        }
    }
}

/// Plays CloudNativePG for every Cluster in `ns`, new instances going to `healthy`.
pub async fn play_cnpg_with(client: Client, ns: String, healthy: String, failover: Failover) {
    loop {
        let list = |api_version: &'static str, kind: &'static str, namespaced: bool| {
            let (client, ns) = (client.clone(), ns.clone());
            async move {
                let api = api_for(&client, api_version, kind, namespaced.then_some(ns.as_str())).await;
                api.list(&Default::default()).await.map(|l| l.items.into_iter().map(|o| serde_json::to_value(o).unwrap()).collect::<Vec<Value>>()).unwrap_or_default()
            }
        };
        let (clusters, pods, pvcs, pvs, nodes) = (
            list(CNPG, "Cluster", true).await,
            list("v1", "Pod", true).await,
            list("v1", "PersistentVolumeClaim", true).await,
            list("v1", "PersistentVolume", false).await,
            list("v1", "Node", false).await,
        );
        let nodes_ready: BTreeMap<String, bool> = nodes
            .iter()
            .map(|n| {
                (
                    n["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                    n["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")),
                )
            })
            .collect();
        let world = World { pods: pods.iter().collect(), pvcs: pvcs.iter().collect(), pvs: pvs.iter().collect(), nodes_ready: &nodes_ready, healthy_node: &healthy };
        for cluster in &clusters {
            reconcile(&client, cluster, &world, failover).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The lost-primary scene's operator: stalled, as on the cluster it stands for.
pub async fn play_cnpg(client: Client, ns: String, healthy: String) {
    play_cnpg_with(client, ns, healthy, Failover::Stalled).await
}

/// A 3-instance CNPG cluster `postgres` in `ns` whose primary postgres-1
/// lives on a node NotReady since `since` (its pod no longer Ready, as the
/// node lifecycle controller marks it). Returns (healthy node, lost node).
pub async fn lost_primary_cluster_since(client: &Client, ns: &str, since: chrono::DateTime<Utc>) -> (String, String) {
    let (healthy, doomed) = (format!("{ns}-a"), format!("{ns}-b"));
    node_ready(client, &healthy).await;
    node_ready(client, &doomed).await;
    for (i, node) in [(1, &doomed), (2, &healthy), (3, &healthy)] {
        let instance = format!("postgres-{i}");
        let pv = format!("{ns}-pv-{i}");
        create(client, pv_pinned(&pv, "kubernetes.io/hostname", node, ns, &instance), None).await;
        create(client, pvc(ns, &instance, &pv, json!({"cnpg.io/cluster": "postgres", "cnpg.io/instanceName": instance, "cnpg.io/pvcRole": "PG_DATA"})), None).await;
        let labels = json!({"cnpg.io/cluster": "postgres", "cnpg.io/instanceName": instance, "cnpg.io/instanceRole": if i == 1 {"primary"} else {"replica"}});
        let mut p = running(pod(ns, &instance, node, &[&instance], labels, None));
        if i == 1 {
            p["status"]["conditions"] = json!([{"type": "Ready", "status": "False", "reason": "NodeNotReady", "lastTransitionTime": rfc3339(since)}]);
        }
        create(client, p, None).await;
    }
    let mut cluster =
        cnpg_cluster(ns, "postgres", "postgres-1", vec![condition("ContinuousArchiving", "True", "ContinuousArchivingSuccess", "2026-11-20T00:00:00Z")], "postgres-r2");
    cluster["spec"]["storage"] = json!({"size": "1Gi"});
    cluster["status"]["instanceNames"] = json!(["postgres-1", "postgres-2", "postgres-3"]);
    cluster["status"]["phase"] = json!("Waiting for the instances to become active");
    create(client, cluster, None).await;
    mark_node_not_ready(client, &doomed, since).await;
    (healthy, doomed)
}

/// The scene as the node-loss example has it: lost for 10 minutes, and
/// CNPG has not failed over (play it with [`play_cnpg`]).
pub async fn lost_primary_cluster(client: &Client, ns: &str) -> (String, String) {
    lost_primary_cluster_since(client, ns, Utc::now() - chrono::Duration::minutes(10)).await
}

/// What the instance managers would report: `postgres-<i>`'s received LSN.
pub async fn report_lsn(client: &Client, ns: &str, instance: &str, lsn: &str) {
    let pods = api_for(client, "v1", "Pod", Some(ns)).await;
    let patch = json!({"metadata": {"annotations": {RECEIVED_LSN: lsn}}});
    pods.patch(instance, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
}

/// CNPG promoting: currentPrimary follows targetPrimary.
pub async fn follow_promotion(client: &Client, ns: &str) {
    let cluster = get(client, CNPG, "Cluster", Some(ns), "postgres").await;
    let target = cluster["status"]["targetPrimary"].as_str().unwrap_or_default().to_string();
    if cluster["status"]["currentPrimary"].as_str() != Some(target.as_str()) {
        set_status(client, CNPG, "Cluster", Some(ns), "postgres", json!({"currentPrimary": target, "phase": "Waiting for the instances to become active"})).await;
    }
}
