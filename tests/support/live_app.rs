//! A small app on the real apiserver for runs that change something:
//! ConfigMap `app-config`, Deployment `app` (2 replicas) and Service `app`
//! in a namespace of their own, with the journal there; the plan annotate →
//! scale to 0 → wait for a ready endpoint, and a remediator to execute it.
#![allow(dead_code)]

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use lifeboat::config::RemediationConfig;
use lifeboat::journal::Journal;
use lifeboat::plan::{Action, ObjectRef, Plan, Step, WaitCondition};
use lifeboat::remediator::Remediator;
use serde_json::json;

use super::controlplane::control_plane;
use super::k8s::create;

pub struct Scene {
    pub client: Client,
    pub ns: String,
    pub journal: Arc<Journal>,
}

pub async fn scene(prefix: &str) -> Scene {
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, prefix).await;
    create(&client, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config"}, "data": {"a": "b"}}), Some(&ns)).await;
    create(
        &client,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "app"}},
                 "template": {"metadata": {"labels": {"app": "app"}}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}}),
        Some(&ns),
    )
    .await;
    create(
        &client,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "app"},
        "spec": {"ports": [{"port": 80}], "selector": {"app": "app"}}}),
        Some(&ns),
    )
    .await;
    let journal = Arc::new(Journal::cluster(client.clone(), ns.clone()));
    Scene { client, ns, journal }
}

pub async fn endpoints_ready(s: &Scene) {
    create(
        &s.client,
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "app-1", "labels": {"kubernetes.io/service-name": "app"}},
        "addressType": "IPv4", "ports": [{"port": 80}],
        "endpoints": [{"addresses": ["10.0.0.7"], "conditions": {"ready": true}}]}),
        Some(&s.ns),
    )
    .await;
}

/// annotate → scale `deployment` to 0 → wait until Service app has a ready endpoint.
pub fn plan(ns: &str, deployment: &str) -> Plan {
    let step = |id: &str, title: &str, action: Action, needs: &[&str]| Step {
        id: id.into(),
        title: title.into(),
        action,
        needs: needs.iter().map(|n| n.to_string()).collect(),
        preconditions: vec![],
        recovery_source: None,
    };
    Plan {
        playbook: "stale-cleanup".into(),
        target: format!("Service {ns}/app"),
        findings: vec!["a test plan".into()],
        steps: vec![
            step(
                "annotate",
                "Note the incident on the ConfigMap",
                Action::MergePatch {
                    object: ObjectRef::namespaced("v1", "ConfigMap", ns, "app-config"),
                    patch: json!({"metadata": {"annotations": {"lifeboat.dev/incident": "node-loss"}}}),
                },
                &[],
            ),
            step("scale-down", "Scale the app to 0", Action::Scale { object: ObjectRef::namespaced("apps/v1", "Deployment", ns, deployment), replicas: 0 }, &["annotate"]),
            step(
                "wait-endpoints",
                "Wait for the app Service to have a ready endpoint",
                Action::Wait { object: ObjectRef::namespaced("v1", "Service", ns, "app"), until: WaitCondition::ServiceHasEndpoints, timeout_seconds: 120 },
                &["scale-down"],
            ),
        ],
        ..Plan::new("stale-cleanup", "")
    }
}

pub fn remediator(s: &Scene) -> Remediator {
    Remediator {
        client: s.client.clone(),
        journal: s.journal.clone(),
        config: RemediationConfig { namespace: Some(s.ns.clone()), ..RemediationConfig::default() },
        identity: "lifeboat-test".into(),
        kill_switch: Arc::new(AtomicBool::new(false)),
        poll_interval: Duration::from_millis(200),
    }
}
