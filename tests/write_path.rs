//! lifeboat's write path on a real apiserver with the real CRDs: a status
//! merge patch under optimistic lock changes only what it names, fields the
//! lean typed structs do not know survive, and a 409 is retried from fresh
//! state.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};

use chrono::Utc;
use kube::api::{Patch, PatchParams};
use lifeboat::act::cnpg::promote_status_patch;
use lifeboat::cluster::write::patch_status_locked;
use serde_json::{json, Value};
use support::controlplane::control_plane;
use support::k8s::{api_for, create, get, rfc3339};

/// A CNPG Cluster carrying fields lifeboat never reads, in spec and status.
fn rich_cluster(ns: &str) -> Value {
    json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "postgres", "namespace": ns, "labels": {"kustomize.toolkit.fluxcd.io/name": "cnpg"}, "annotations": {"team": "data"}},
        "spec": {
            "instances": 3,
            "imageName": "ghcr.io/cloudnative-pg/postgresql:17.5",
            "storage": {"size": "20Gi", "storageClass": "openebs-hostpath"},
            "postgresql": {"parameters": {"max_connections": "200", "shared_buffers": "256MB"}},
            "plugins": [{"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": true, "parameters": {"barmanObjectName": "cnpg-garage", "serverName": "postgres-r2"}}]
        },
        "status": {
            "currentPrimary": "postgres-1", "targetPrimary": "postgres-1", "instances": 3, "readyInstances": 2,
            "phase": "Cluster in healthy state", "timelineID": 4, "latestGeneratedNode": 3,
            "instanceNames": ["postgres-1", "postgres-2", "postgres-3"],
            "certificates": {"expirations": {"postgres-ca": "2027-02-01 00:00:00 +0000 UTC"}},
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "ClusterIsReady", "message": "Cluster is Ready", "lastTransitionTime": "2026-11-20T00:00:00Z"},
                {"type": "ContinuousArchiving", "status": "True", "reason": "ContinuousArchivingSuccess", "message": "", "lastTransitionTime": "2026-11-20T00:00:00Z"}
            ]
        }
    })
}

#[tokio::test]
async fn status_patch_keeps_every_field_it_does_not_name() {
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "writepath").await;
    let before = create(&client, rich_cluster(&ns), None).await;
    let api = api_for(&client, "postgresql.cnpg.io/v1", "Cluster", Some(&ns)).await;

    let now = Utc::now();
    let updated =
        patch_status_locked(&api, "postgres", 5, |current| promote_status_patch(&serde_json::to_value(current).unwrap(), "postgres-2", now)).await.expect("patch succeeds");
    assert!(updated.is_some());

    let after = get(&client, "postgresql.cnpg.io/v1", "Cluster", Some(&ns), "postgres").await;
    assert_eq!(after["spec"], before["spec"], "spec untouched");
    assert_eq!(after["metadata"]["labels"], before["metadata"]["labels"]);
    assert_eq!(after["metadata"]["annotations"], before["metadata"]["annotations"]);
    assert_eq!(after["status"]["targetPrimary"], "postgres-2");
    assert_eq!(after["status"]["currentPrimary"], "postgres-1", "promote never sets currentPrimary");
    assert_eq!(after["status"]["phase"], "Switchover in progress");
    assert_eq!(after["status"]["targetPrimaryTimestamp"], rfc3339(now));
    for untouched in ["certificates", "timelineID", "latestGeneratedNode", "instanceNames", "readyInstances"] {
        assert_eq!(after["status"][untouched], before["status"][untouched], "status.{untouched} survives");
    }
    let conditions = after["status"]["conditions"].as_array().unwrap();
    assert!(conditions.iter().any(|c| c["type"] == "ContinuousArchiving" && c["status"] == "True"));
    assert!(conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "False" && c["reason"] == "ClusterIsNotReady"));

    // Promoting the same pod again is a no-op: nothing is written.
    let version = after["metadata"]["resourceVersion"].clone();
    let again = patch_status_locked(&api, "postgres", 5, |c| promote_status_patch(&serde_json::to_value(c).unwrap(), "postgres-2", Utc::now())).await.unwrap();
    assert!(again.is_none());
    let unchanged = get(&client, "postgresql.cnpg.io/v1", "Cluster", Some(&ns), "postgres").await;
    assert_eq!(unchanged["metadata"]["resourceVersion"], version);
}

#[tokio::test]
async fn a_typed_round_trip_would_lose_fields() {
    // Why act/ never writes through the lean structs: they drop what they do not know.
    let cluster: lifeboat::cluster::resources::CnpgCluster = serde_json::from_value(rich_cluster("x")).unwrap();
    let round_trip = serde_json::to_value(&cluster).unwrap();
    assert!(round_trip["spec"]["postgresql"]["parameters"].is_null());
    assert!(round_trip["status"]["certificates"].is_null());
}

#[tokio::test]
async fn conflicting_writer_causes_409_and_a_retry_from_fresh_state() {
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "conflict").await;
    create(&client, rich_cluster(&ns), None).await;
    let api = api_for(&client, "postgresql.cnpg.io/v1", "Cluster", Some(&ns)).await;

    let calls = AtomicU32::new(0);
    let result = patch_status_locked(&api, "postgres", 5, |current| {
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            // The operator writes between our read and our patch (its own
            // client and runtime: this one is busy inside the closure).
            std::thread::scope(|s| {
                s.spawn(|| {
                    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
                        let operator = api_for(&cp.admin_client(), "postgresql.cnpg.io/v1", "Cluster", Some(&ns)).await;
                        operator
                            .patch_status("postgres", &PatchParams::default(), &Patch::Merge(&json!({"status": {"readyInstances": 1}})))
                            .await
                            .expect("concurrent operator write")
                    })
                });
            });
        }
        promote_status_patch(&serde_json::to_value(current).unwrap(), "postgres-3", Utc::now())
    })
    .await
    .expect("retried after the conflict");
    assert!(result.is_some());
    assert_eq!(calls.load(Ordering::SeqCst), 2, "first attempt conflicted (409), second succeeded");
    let after = get(&client, "postgresql.cnpg.io/v1", "Cluster", Some(&ns), "postgres").await;
    assert_eq!(after["status"]["readyInstances"], 1, "the operator's write is kept");
    assert_eq!(after["status"]["targetPrimary"], "postgres-3");
}
