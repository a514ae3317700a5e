//! lifeboat running with exactly the shipped read-only RBAC
//! (deploy/manifests/lifeboat.yaml) watches everything without a 403, and
//! cannot write.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::Api;
use lifeboat::config::{Config, Dur};
use serde_json::json;
use support::controlplane::control_plane;

fn shipped_read_role() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/manifests/lifeboat.yaml")).unwrap();
    let role = serde_yaml::Deserializer::from_str(&text)
        .map(|d| <serde_json::Value as serde::Deserialize>::deserialize(d).unwrap())
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "lifeboat-read");
    role.expect("deploy/manifests/lifeboat.yaml has ClusterRole lifeboat-read")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_read_role_is_enough_to_watch_everything() {
    let cp = control_plane();
    let admin = cp.admin_client();
    let ns = cp.namespace(&admin, "rbac").await;
    let role_name = format!("{ns}-read");
    let mut role = shipped_read_role();
    role["metadata"] = json!({"name": role_name});
    Api::<ClusterRole>::all(admin.clone())
        .patch(&role_name, &PatchParams::apply("lifeboat-tests").force(), &Patch::Apply(&role))
        .await
        .expect("shipped ClusterRole applies");
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": role_name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        "subjects": [{"kind": "ServiceAccount", "name": "lifeboat", "namespace": ns}]
    });
    Api::<ClusterRoleBinding>::all(admin.clone())
        .patch(&role_name, &PatchParams::apply("lifeboat-tests").force(), &Patch::Apply(&binding))
        .await
        .unwrap();

    let client = cp.service_account_client(&ns, "lifeboat").await;
    let config = Config { discovery_interval: Dur::secs(1), snapshot_interval: Dur::secs(1), ..Config::default() };
    let hub = lifeboat::cli::start_live_hub(config, client.clone());
    lifeboat::cli::wait_ready(&hub, Duration::from_secs(60)).await.expect("every kind lists as the ServiceAccount");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let live = hub.live.as_ref().unwrap();
    for (kind, health) in live.health() {
        assert!(health.up.load(Ordering::Relaxed), "{kind}: watch not up as the ServiceAccount");
        assert_eq!(health.errors.load(Ordering::Relaxed), 0, "{kind}: watch/discovery errors (403?) as the ServiceAccount");
    }

    // Read-only: a write is refused.
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    match pods.delete("anything", &DeleteParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("expected 403, got {other:?}"),
    }
}
