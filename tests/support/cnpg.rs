//! A CloudNativePG cluster that lost its primary's node, and CNPG played:
//! the scene of the cnpg-instance-lost tests and of the alert end-to-end run.
#![allow(dead_code)]

use std::time::Duration;

use chrono::Utc;
use kube::Client;
use serde_json::json;

use super::fixtures::*;
use super::k8s::*;

/// A 3-instance CNPG cluster `postgres` in `ns` whose primary postgres-1
/// lives on a node NotReady for 10 minutes. Returns (healthy node, lost node).
pub async fn lost_primary_cluster(client: &Client, ns: &str) -> (String, String) {
    let (healthy, doomed) = (format!("{ns}-a"), format!("{ns}-b"));
    node_ready(client, &healthy).await;
    node_ready(client, &doomed).await;
    for (i, node) in [(1, &doomed), (2, &healthy), (3, &healthy)] {
        let instance = format!("postgres-{i}");
        let pv = format!("{ns}-pv-{i}");
        create(client, pv_pinned(&pv, "kubernetes.io/hostname", node, ns, &instance), None).await;
        create(client, pvc(ns, &instance, &pv, json!({"cnpg.io/cluster": "postgres", "cnpg.io/pvcRole": "PG_DATA"})), None).await;
        let labels = json!({"cnpg.io/cluster": "postgres", "cnpg.io/instanceName": instance, "cnpg.io/instanceRole": if i == 1 {"primary"} else {"replica"}});
        create(client, running(pod(ns, &instance, node, &[&instance], labels, None)), None).await;
    }
    let mut cluster = cnpg_cluster(ns, "postgres", "postgres-1", vec![
        condition("ContinuousArchiving", "True", "ContinuousArchivingSuccess", "2026-11-20T00:00:00Z"),
    ], "postgres-r2");
    cluster["spec"]["storage"] = json!({"size": "1Gi"});
    cluster["status"]["instanceNames"] = json!(["postgres-1", "postgres-2", "postgres-3"]);
    create(client, cluster, None).await;
    mark_node_not_ready(client, &doomed, Utc::now() - chrono::Duration::minutes(10)).await;
    (healthy, doomed)
}

/// CNPG promoting: currentPrimary follows targetPrimary.
pub async fn follow_promotion(client: &Client, ns: &str) {
    let cluster = get(client, "postgresql.cnpg.io/v1", "Cluster", Some(ns), "postgres").await;
    let target = cluster["status"]["targetPrimary"].as_str().unwrap_or_default().to_string();
    if cluster["status"]["currentPrimary"].as_str() != Some(target.as_str()) {
        set_status(client, "postgresql.cnpg.io/v1", "Cluster", Some(ns), "postgres",
            json!({"currentPrimary": target, "phase": "Waiting for the instances to become active"})).await;
    }
}

/// Plays CloudNativePG: follows a promotion, and re-creates a deleted instance.
pub async fn play_cnpg(client: Client, ns: String, healthy: String) {
    let mut recreated = false;
    loop {
        follow_promotion(&client, &ns).await;
        let pvc_gone = api_for(&client, "v1", "PersistentVolumeClaim", Some(&ns)).await.get_opt("postgres-1").await.unwrap().is_none();
        if pvc_gone && !recreated {
            let pv = format!("{ns}-pv-4");
            create(&client, pv_pinned(&pv, "kubernetes.io/hostname", &healthy, &ns, "postgres-4"), None).await;
            create(&client, pvc(&ns, "postgres-4", &pv, json!({"cnpg.io/cluster": "postgres"})), None).await;
            create(&client, running(pod(&ns, "postgres-4", &healthy, &["postgres-4"], json!({"cnpg.io/cluster": "postgres"}), None)), None).await;
            set_status(&client, "postgresql.cnpg.io/v1", "Cluster", Some(&ns), "postgres", json!({
                "readyInstances": 3, "instances": 3, "instanceNames": ["postgres-2", "postgres-3", "postgres-4"],
                "danglingPVC": [], "phase": "Cluster in healthy state"})).await;
            // The -rw Service routes to the new primary again.
            let target = get(&client, "postgresql.cnpg.io/v1", "Cluster", Some(&ns), "postgres").await["status"]["currentPrimary"].clone();
            create(&client, json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "postgres-rw", "namespace": ns},
                "spec": {"ports": [{"port": 5432}], "selector": {"cnpg.io/cluster": "postgres", "cnpg.io/instanceRole": "primary"}}}), None).await;
            create(&client, json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "postgres-rw-1", "namespace": ns, "labels": {"kubernetes.io/service-name": "postgres-rw"}},
                "addressType": "IPv4", "ports": [{"port": 5432}],
                "endpoints": [{"addresses": ["10.0.0.12"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": target, "namespace": ns}}]}), None).await;
            recreated = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
