//! examples/node-loss loaded into the test apiserver: a cluster shaped like
//! the example dump, under a per-test prefix so several tests share one
//! apiserver (namespaces, Node and PersistentVolume names get `<prefix>-`).
//!
//! Faithful to the dump except where an apiserver cannot take it as-is:
//! * server-owned metadata (uid, resourceVersion, creationTimestamp,
//!   generation, deletion*) is dropped; a pod the dump shows terminating is
//!   created, then deleted: bound to a node and not finished, it stays
//!   Terminating (no kubelet confirms), as in the dump;
//! * pods lose `status.qosClass` (the apiserver derives it from resources
//!   the dump leaves out); Jobs lose their generated selector and controller-uid template labels
//!   (the apiserver generates them);
//! * the Kanidm CR (kaniop.rs) is served by the stand-in CRD of
//!   support::kaniop (kaniop ships no CRD manifest); its StatefulSet keeps
//!   the dump's ownerReference (no garbage collector runs here);
//! * the lost node went NotReady 40 minutes before *now* (the dump: before
//!   its capture), so the node-lost grace has passed whatever the clock says.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;

use chrono::Utc;
use kube::api::DeleteParams;
use kube::Client;
use serde_json::{json, Value};

use super::k8s::{api_for, create, mark_node_not_ready};

pub const LOST_NODE: &str = "node-01-pve";
pub const HEALTHY_NODES: &[&str] = &["node-02-pve", "singlenodemaster"];

/// Label and annotation keys (and fields) whose value is a namespace.
const NAMESPACE_KEYS: &[&str] =
    &["namespace", "kustomize.toolkit.fluxcd.io/namespace", "helm.toolkit.fluxcd.io/namespace", "meta.helm.sh/release-namespace", "storageNamespace", "targetNamespace"];

pub struct ExampleCluster {
    pub prefix: String,
    /// The example's namespaces, unprefixed.
    pub namespaces: BTreeSet<String>,
}

impl ExampleCluster {
    pub fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }
    pub fn node(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }
    pub fn lost_node(&self) -> String {
        self.node(LOST_NODE)
    }
    pub fn healthy_nodes(&self) -> Vec<String> {
        HEALTHY_NODES.iter().map(|n| self.node(n)).collect()
    }
    /// Whether an object (by namespace, or name for cluster-scoped ones) belongs to this cluster.
    pub fn owns(&self, namespace: Option<&str>, name: &str) -> bool {
        let mine = format!("{}-", self.prefix);
        namespace.map_or(name.starts_with(&mine), |ns| ns.starts_with(&mine))
    }
}

fn objects() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node-loss");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "yaml")).collect();
    files.sort();
    let mut out = vec![];
    for file in files {
        let list: Value = serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        out.extend(list["items"].as_array().cloned().unwrap_or_default());
    }
    out
}

fn rename(value: &mut Value, key: &str, prefix: &str, namespaces: &BTreeSet<String>, nodes: &BTreeSet<String>) {
    match value {
        Value::String(s) if nodes.contains(s.as_str()) => *s = format!("{prefix}-{s}"),
        Value::String(s) if NAMESPACE_KEYS.contains(&key) && namespaces.contains(s.as_str()) => *s = format!("{prefix}-{s}"),
        // An env value naming a Service in the cluster (`svc.ns.svc.cluster.local`) names it in the prefixed namespace.
        Value::String(s) if key == "value" && s.split('.').nth(1).is_some_and(|ns| namespaces.contains(ns)) => {
            let (service, rest) = s.split_once('.').unwrap();
            *s = format!("{service}.{prefix}-{rest}");
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rename(v, key, prefix, namespaces, nodes)),
        Value::Object(map) => map.iter_mut().for_each(|(k, v)| rename(v, k, prefix, namespaces, nodes)),
        _ => {}
    }
}

/// Creates the example's objects under `prefix`; returns once all exist.
pub async fn load(client: &Client, prefix: &str) -> ExampleCluster {
    load_except(client, prefix, &[]).await
}

/// [`load`] without the objects of `skipped_api_versions` (their CRDs held back).
pub async fn load_except(client: &Client, prefix: &str, skipped_api_versions: &[&str]) -> ExampleCluster {
    let mut objects = objects();
    objects.retain(|o| !skipped_api_versions.iter().any(|v| o["apiVersion"] == *v));
    if objects.iter().any(|o| o["apiVersion"] == super::kaniop::KANIDM) {
        super::kaniop::install_crd(client).await;
    }
    let namespaces: BTreeSet<String> = objects.iter().filter_map(|o| o["metadata"]["namespace"].as_str().map(String::from)).collect();
    let mut nodes: BTreeSet<String> = objects.iter().filter(|o| o["kind"] == "Node").map(|o| o["metadata"]["name"].as_str().unwrap().to_string()).collect();
    nodes.insert("node-04-pve".into()); // no Node object, but a PV is pinned to it
    let cluster = ExampleCluster { prefix: prefix.to_string(), namespaces: namespaces.clone() };
    let namespace_api = api_for(client, "v1", "Namespace", None).await;
    for ns in &namespaces {
        let object: kube::api::DynamicObject = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": cluster.ns(ns)}})).unwrap();
        namespace_api.create(&Default::default(), &object).await.unwrap_or_else(|e| panic!("namespace {ns}: {e}"));
    }
    let mut terminating = vec![];
    for mut object in objects {
        rename(&mut object, "", prefix, &namespaces, &nodes);
        let kind = object["kind"].as_str().unwrap().to_string();
        if kind == "PersistentVolume" {
            let name = object["metadata"]["name"].as_str().unwrap().to_string();
            object["metadata"]["name"] = json!(format!("{prefix}-{name}"));
        }
        if kind == "PersistentVolumeClaim" {
            if let Some(volume) = object["spec"]["volumeName"].as_str().map(String::from) {
                object["spec"]["volumeName"] = json!(format!("{prefix}-{volume}"));
            }
        }
        if kind == "Pod" {
            // Computed by the apiserver from the containers' resources (which the dump leaves out).
            object["status"].as_object_mut().map(|st| st.remove("qosClass"));
        }
        if kind == "Job" {
            object["spec"].as_object_mut().unwrap().remove("selector");
            if let Some(labels) = object["spec"]["template"]["metadata"]["labels"].as_object_mut() {
                labels.retain(|k, _| !k.ends_with("controller-uid"));
            }
        }
        let meta = object["metadata"].as_object_mut().unwrap();
        let deleted = meta.remove("deletionTimestamp").is_some();
        for owned in ["generation", "deletionGracePeriodSeconds", "managedFields"] {
            meta.remove(owned);
        }
        let created = create(client, object, None).await;
        if deleted {
            terminating.push((kind, created["metadata"]["namespace"].as_str().map(String::from), created["metadata"]["name"].as_str().unwrap().to_string()));
        }
    }
    for (kind, ns, name) in terminating {
        let api = api_for(client, "v1", &kind, ns.as_deref()).await;
        api.delete(&name, &DeleteParams::default()).await.unwrap_or_else(|e| panic!("deleting {kind} {name}: {e}"));
        let still = api.get(&name).await.unwrap_or_else(|e| panic!("{kind} {name} should stay terminating: {e}"));
        assert!(still.metadata.deletion_timestamp.is_some(), "{kind} {name} terminating");
    }
    mark_node_not_ready(client, &cluster.lost_node(), Utc::now() - chrono::Duration::minutes(40)).await;
    cluster
}
