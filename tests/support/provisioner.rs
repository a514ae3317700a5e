//! The OpenEBS hostpath provisioner (openebs/dynamic-localpv-provisioner
//! v4.0.0) installed as its chart installs it, with its only pod on the
//! lost node, and played: it provisions a claim only while one of its pods
//! is Ready on a Ready node and leads.
//!
//! * [`install`]: the chart's `openebs-hostpath` StorageClass
//!   (deploy/helm/charts/templates/hostpath-class.yaml: `provisioner:
//!   openebs.io/local`, `volumeBindingMode: WaitForFirstConsumer`) and its
//!   Deployment (templates/deployment.yaml: one replica, pod labels from
//!   templates/_helpers.tpl, no readiness probe). The pod tolerates
//!   `node.kubernetes.io/unreachable` without a `tolerationSeconds`
//!   (`localpv.tolerations` in values.yaml), so the taint-based eviction
//!   never deleted it: the ReplicaSet controller, counting it, makes no
//!   replacement, and it stays on the lost node, NotReady (the node
//!   lifecycle controller marks the pods of an unreachable node NotReady).
//!   The Deployment/ReplicaSet controller and the scheduler are the shared
//!   players (support/players.rs), which re-create a deleted pod on a Ready node.
//! * [`spawn`]: kube-controller-manager's PV controller (pkg/controller/volume/persistentvolume:
//!   an unbound claim of a class gets `volume.kubernetes.io/storage-provisioner`
//!   naming the class's provisioner) and the provisioner
//!   (sig-storage-lib-external-provisioner v9 controller/controller.go:
//!   only the leader provisions, only claims annotated with its name; the
//!   PV it creates carries `pv.kubernetes.io/provisioned-by`, and the
//!   hostpath volume is pinned by node affinity to the node the scheduler
//!   selected, `volume.kubernetes.io/selected-node`). Leadership is
//!   client-go's Lease election as the library configures it: a new pod
//!   leads once it has seen the dead holder's Lease unrenewed for
//!   LeaseDuration (15s) after it started.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::deadline::Deadline;
use super::example_cluster::ExampleCluster;
use super::k8s::{api_for, create, rfc3339};
use super::players::{pod_ready, report_panic, Cluster};

pub const PROVISIONER: &str = "openebs.io/local";
pub const STORAGE_CLASS: &str = "openebs-hostpath";
pub const DEPLOYMENT: &str = "openebs-localpv-provisioner";
pub const REPLICA_SET: &str = "openebs-localpv-provisioner-6b8f";
pub const STRANDED_POD: &str = "openebs-localpv-provisioner-6b8f-x2x9q";
/// sig-storage-lib-external-provisioner v9 `DefaultLeaseDuration`.
const LEASE_DURATION: i64 = 15;
const TICK: Duration = Duration::from_millis(200);

fn pod_labels() -> Value {
    json!({"app": "localpv-provisioner", "release": "openebs", "component": "localpv-provisioner", "openebs.io/component-name": "openebs-localpv-provisioner"})
}

/// The StorageClass, and the provisioner's Deployment with its one pod on
/// the lost node, in namespace `<prefix>-openebs`. Returns that namespace.
pub async fn install(client: &kube::Client, example: &ExampleCluster) -> String {
    let ns = example.ns("openebs");
    create(client, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}), None).await;
    create(
        client,
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "annotations": {"openebs.io/cas-type": "local"}},
        "provisioner": PROVISIONER, "volumeBindingMode": "WaitForFirstConsumer", "reclaimPolicy": "Delete"}),
        None,
    )
    .await;
    let template = json!({"metadata": {"labels": pod_labels()}, "spec": {
        "serviceAccountName": DEPLOYMENT,
        "containers": [{"name": DEPLOYMENT, "image": "openebs/provisioner-localpv:4.0.0", "env": [{"name": "LEADER_ELECTION_ENABLED", "value": "true"}]}],
        "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
                        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}]}});
    // Pod, then ReplicaSet, then Deployment: the shared Deployment player
    // acts only once all three exist, and then counts the stranded pod.
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": STRANDED_POD, "namespace": ns, "labels": pod_labels(),
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": REPLICA_SET, "uid": "00000000-0000-4000-8000-0000000000a1", "controller": true}]},
        "spec": template["spec"].clone()});
    pod["spec"]["nodeName"] = json!(example.lost_node());
    let since = rfc3339(Utc::now() - chrono::Duration::minutes(40));
    let not_ready = |t: &str| json!({"type": t, "status": "False", "reason": "NodeNotReady", "lastProbeTime": null, "lastTransitionTime": since});
    pod["status"] = json!({"phase": "Running", "startTime": since, "conditions": [not_ready("Ready"), not_ready("ContainersReady")],
        "containerStatuses": [{"name": DEPLOYMENT, "ready": false, "restartCount": 0, "image": "openebs/provisioner-localpv:4.0.0", "imageID": "", "state": {"running": {"startedAt": since}}}]});
    create(client, pod, None).await;
    let selector = json!({"matchLabels": {"app": "localpv-provisioner", "release": "openebs", "component": "localpv-provisioner"}});
    create(
        client,
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": REPLICA_SET, "namespace": ns, "labels": pod_labels(),
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": DEPLOYMENT, "uid": "00000000-0000-4000-8000-0000000000a2", "controller": true}]},
        "spec": {"replicas": 1, "selector": selector, "template": template}}),
        None,
    )
    .await;
    create(
        client,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": DEPLOYMENT, "namespace": ns, "labels": pod_labels()},
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": selector, "template": template},
        "status": {"replicas": 1, "readyReplicas": 0, "unavailableReplicas": 1}}),
        None,
    )
    .await;
    ns
}

/// A claim the provisioner bound, and when.
#[derive(Clone, Debug)]
pub struct Provisioned {
    pub namespace: String,
    pub claim: String,
    pub volume: String,
    pub at: DateTime<Utc>,
}

pub struct ProvisionerPlayer {
    handle: tokio::task::JoinHandle<()>,
    pub provisioned: Arc<Mutex<Vec<Provisioned>>>,
    panicked: Arc<Mutex<Option<String>>>,
    _deadline: Deadline,
}

impl ProvisionerPlayer {
    pub fn assert_alive(&self) {
        if let Some(what) = self.panicked.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            panic!("the provisioner player panicked: {what}");
        }
    }
}

impl Drop for ProvisionerPlayer {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

pub fn spawn(c: &Cluster) -> ProvisionerPlayer {
    let c = c.clone();
    let deadline = Deadline::for_this_test();
    let (alarm, panicked) = (deadline.alarm(), Arc::new(Mutex::new(None)));
    let provisioned = Arc::new(Mutex::new(vec![]));
    let record = provisioned.clone();
    let player = async move {
        loop {
            tick(&c, &record).await;
            tokio::time::sleep(TICK).await;
        }
    };
    let handle = tokio::spawn(report_panic(player, alarm, panicked.clone()));
    ProvisionerPlayer { handle, provisioned, panicked, _deadline: deadline }
}

/// The pod that leads (its name): Ready on a Ready node for a whole lease duration.
fn leader(pods: &[Value], nodes: &[Value]) -> Option<String> {
    let node_ready = |name: &str| {
        nodes
            .iter()
            .any(|n| n["metadata"]["name"] == name && n["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|x| x["type"] == "Ready" && x["status"] == "True")))
    };
    pods.iter()
        .filter(|p| p["metadata"]["labels"]["openebs.io/component-name"] == "openebs-localpv-provisioner" && pod_ready(p))
        .filter(|p| p["spec"]["nodeName"].as_str().is_some_and(node_ready))
        .find(|p| {
            let ready = p["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|x| x["type"] == "Ready"))
                .and_then(|x| x["lastTransitionTime"].as_str())
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            ready.is_some_and(|t| (Utc::now() - t.with_timezone(&Utc)).num_seconds() >= LEASE_DURATION)
        })
        .and_then(|p| p["metadata"]["name"].as_str().map(String::from))
}

async fn tick(c: &Cluster, record: &Mutex<Vec<Provisioned>>) {
    let claims = c.list("v1", "PersistentVolumeClaim").await;
    let pending: Vec<&Value> = claims
        .iter()
        .filter(|p| p["spec"]["storageClassName"] == STORAGE_CLASS && p["spec"]["volumeName"].as_str().is_none_or(str::is_empty) && p["metadata"]["deletionTimestamp"].is_null())
        .collect();
    if pending.is_empty() {
        return;
    }
    let (pods, nodes) = (c.list("v1", "Pod").await, c.list("v1", "Node").await);
    let leading = leader(&pods, &nodes).is_some();
    for claim in pending {
        let (ns, name) = (claim["metadata"]["namespace"].as_str().unwrap().to_string(), claim["metadata"]["name"].as_str().unwrap().to_string());
        let claims_api = api_for(&c.client, "v1", "PersistentVolumeClaim", Some(&ns)).await;
        // The PV controller names the class's provisioner on the claim, provisioner running or not.
        if claim["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] != PROVISIONER {
            let patch =
                json!({"metadata": {"annotations": {"volume.kubernetes.io/storage-provisioner": PROVISIONER, "volume.beta.kubernetes.io/storage-provisioner": PROVISIONER}}});
            let _ = claims_api.patch(&name, &Default::default(), &kube::api::Patch::Merge(&patch)).await;
        }
        if !leading {
            continue;
        }
        // Where the scheduler placed the claim's first consumer (the shared players' node).
        let node = c.healthy_nodes[0].clone();
        let uid = claim["metadata"]["uid"].as_str().unwrap();
        let volume = format!("pvc-{uid}");
        create(
            &c.client,
            json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": volume, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}, "labels": {"openebs.io/cas-type": "local-hostpath"}},
            "spec": {"capacity": {"storage": size_of(claim)}, "accessModes": claim["spec"]["accessModes"], "storageClassName": STORAGE_CLASS,
                     "persistentVolumeReclaimPolicy": "Delete", "volumeMode": "Filesystem", "local": {"path": format!("/var/openebs/local/{volume}"), "fsType": ""},
                     "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": name, "uid": uid},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
            "status": {"phase": "Bound"}}),
            None,
        )
        .await;
        // The PV controller binds the claim to it (volumeName may be set once).
        let bind = json!({"metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes", "volume.kubernetes.io/selected-node": node}}, "spec": {"volumeName": volume}});
        if claims_api.patch(&name, &Default::default(), &kube::api::Patch::Merge(&bind)).await.is_err() {
            continue; // deleted meanwhile
        }
        let status = json!({"status": {"phase": "Bound", "accessModes": claim["spec"]["accessModes"], "capacity": {"storage": size_of(claim)}}});
        if claims_api.patch_status(&name, &Default::default(), &kube::api::Patch::Merge(&status)).await.is_err() {
            continue;
        }
        record.lock().unwrap().push(Provisioned { namespace: ns, claim: name, volume, at: Utc::now() });
    }
}

fn size_of(claim: &Value) -> Value {
    let size = &claim["spec"]["resources"]["requests"]["storage"];
    if size.is_null() {
        json!("1Gi")
    } else {
        size.clone()
    }
}
