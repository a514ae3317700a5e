//! The runner's generic actions on the real apiserver: Flux suspend (and the
//! runner's guarantee to resume it), scale through /scale, merge patch, and
//! create-from-template, with a refused step in the middle of the run.

mod support;

use lifeboat::act::runner::{execute, Outcome, RunLimits, StepStatus};
use lifeboat::plan::{Action, ObjectRef, Plan, Precondition, Step};
use serde_json::json;
use support::controlplane::control_plane;
use support::fixtures::*;
use support::k8s::*;

fn step(id: &str, action: Action, needs: &[&str]) -> Step {
    Step { id: id.into(), title: id.into(), action, needs: needs.iter().map(|s| s.to_string()).collect(), preconditions: vec![], recovery_source: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_suspended_by_a_run_is_resumed_however_it_ends() {
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "actions").await;
    let ready_node = format!("{ns}-ready");
    node_ready(&client, &ready_node).await;
    create(&client, kustomization(&ns, "app", false, "True"), None).await;
    create(&client, kustomization(&ns, "cluster", false, "True"), None).await;
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app", "namespace": ns},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "app"}},
                 "template": {"metadata": {"labels": {"app": "app"}}, "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}}});
    create(&client, deployment, None).await;
    create(&client, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": ns}, "data": {"a": "1", "keep": "me"}}), None).await;

    let ks = ObjectRef::namespaced("kustomize.toolkit.fluxcd.io/v1", "Kustomization", &ns, "app");
    let kept = ObjectRef::namespaced("kustomize.toolkit.fluxcd.io/v1", "Kustomization", &ns, "cluster");
    let deploy = ObjectRef::namespaced("apps/v1", "Deployment", &ns, "app");
    let settings = ObjectRef::namespaced("v1", "ConfigMap", &ns, "settings");
    let job_like = ObjectRef::namespaced("v1", "ConfigMap", &ns, "from-template");
    let mut refused = step("delete-while-node-ready", Action::ForceDeletePod { pod: ObjectRef::pod(&ns, "x") }, &["scale"]);
    refused.preconditions = vec![Precondition::NodeStillLost { node: ready_node.clone() }];
    let plan = Plan {
        steps: vec![
            step("suspend", Action::SuspendFlux { object: ks.clone(), keep_suspended: false }, &[]),
            step("suspend-kept", Action::SuspendFlux { object: kept.clone(), keep_suspended: true }, &[]),
            step("scale", Action::Scale { object: deploy.clone(), replicas: 0 }, &["suspend"]),
            step("patch", Action::MergePatch { object: settings.clone(), patch: json!({"data": {"a": "2"}}) }, &["suspend"]),
            step(
                "apply",
                Action::Apply {
                    object: job_like.clone(),
                    manifest: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-template", "namespace": ns}, "data": {"made": "by lifeboat"}}),
                },
                &["suspend"],
            ),
            refused,
            step("resume-after", Action::ResumeFlux { object: ks.clone() }, &["delete-while-node-ready"]),
        ],
        ..Plan::new("test", format!("namespace {ns}"))
    };
    plan.validate().unwrap();
    let report = execute(&client, &plan, &plan.hash(), &RunLimits::default()).await;
    assert_eq!(report.outcome, Outcome::Stopped, "{report:#?}");
    assert!(matches!(report.steps[5].status, StepStatus::Refused { .. }), "{report:#?}");
    assert_eq!(report.steps[6].status, StepStatus::NotRun, "its resume step never ran...");
    let app = get(&client, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", Some(&ns), "app").await;
    assert_eq!(app["spec"]["suspend"], false, "...but the runner resumed the Kustomization it suspended");
    let cluster = get(&client, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", Some(&ns), "cluster").await;
    assert_eq!(cluster["spec"]["suspend"], true, "kept suspended on purpose");
    assert_eq!(report.flux_left_suspended, vec![kept.to_string()], "and reported");

    assert_eq!(get(&client, "apps/v1", "Deployment", Some(&ns), "app").await["spec"]["replicas"], 0);
    let cm = get(&client, "v1", "ConfigMap", Some(&ns), "settings").await;
    assert_eq!(cm["data"], json!({"a": "2", "keep": "me"}), "merge patch changes only what it names");
    assert_eq!(get(&client, "v1", "ConfigMap", Some(&ns), "from-template").await["data"]["made"], "by lifeboat");

    // Idempotent: the same plan again writes the same state.
    let again = execute(&client, &plan, &plan.hash(), &RunLimits::default()).await;
    assert!(again.steps[..5].iter().all(|s| matches!(s.status, StepStatus::Succeeded { .. })), "{again:#?}");
    assert_eq!(get(&client, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", Some(&ns), "app").await["spec"]["suspend"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_api_needs_the_token() {
    use std::sync::Arc;
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "api").await;
    let token = "a-long-enough-test-token";
    let api = lifeboat::api::ApiContext::new(client.clone(), ns.clone(), token.into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api/kill-switch", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, lifeboat::api::routes(Arc::new(api))).await });
    let http = reqwest::Client::new();

    assert_eq!(http.post(&base).send().await.unwrap().status(), 401, "no token");
    assert_eq!(http.post(&base).bearer_auth("a-long-enough-test-tokeX").send().await.unwrap().status(), 401, "wrong token");
    assert_eq!(http.post(&base).bearer_auth("short").send().await.unwrap().status(), 401);
    assert!(!lifeboat::act::kill_switch::engaged(&client, &ns).await, "refused requests change nothing");

    let on = http.post(&base).bearer_auth(token).send().await.unwrap();
    assert_eq!(on.status(), 200);
    assert!(lifeboat::act::kill_switch::engaged(&client, &ns).await);
    let status: serde_json::Value = http.get(&base).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["engaged"], true);
    assert_eq!(http.delete(&base).bearer_auth(token).send().await.unwrap().status(), 200);
    assert!(!lifeboat::act::kill_switch::engaged(&client, &ns).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_approved_over_http_bound_to_the_plan_hash() {
    use lifeboat::journal::{Journal, Phase, RunRecord, RunTrigger};
    use std::sync::Arc;
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "approve").await;
    let token = "a-long-enough-test-token";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api/runs", listener.local_addr().unwrap());
    let api = lifeboat::api::ApiContext::new(client.clone(), ns.clone(), token.into());
    tokio::spawn(async move { axum::serve(listener, lifeboat::api::routes(Arc::new(api))).await });

    let plan = Plan {
        steps: vec![step("delete", Action::Delete { object: ObjectRef::namespaced("v1", "ConfigMap", &ns, "gone") }, &[])],
        ..Plan::new("stale-cleanup", format!("namespace {ns}"))
    };
    let journal = Journal::cluster(client.clone(), ns.clone());
    let run = journal.create(&RunRecord::new(&plan, RunTrigger::default(), lifeboat::config::Mode::Approve, "test", chrono::Utc::now())).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{base}/{}/approve", run.id);

    assert_eq!(http.post(&url).json(&json!({"hash": plan.hash(), "by": "x"})).send().await.unwrap().status(), 401);
    let r = http.post(&url).bearer_auth(token).json(&json!({"hash": "0123456789abcdef01234567", "by": "mallory"})).send().await.unwrap();
    assert_eq!(r.status(), 409, "an approval for another plan is refused");
    assert!(r.text().await.unwrap().contains("look at the plan again"));
    assert_eq!(http.post(format!("{base}/nope/approve")).bearer_auth(token).json(&json!({"hash": "h", "by": "b"})).send().await.unwrap().status(), 404);
    assert_eq!(http.post(&url).bearer_auth(token).body("not json").send().await.unwrap().status(), 400);
    let r = http.post(&url).bearer_auth(token).json(&json!({"hash": plan.hash(), "by": "alice"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let approved = journal.get(&run.id).await.unwrap().unwrap();
    assert_eq!(approved.status.phase, Phase::Approved);
    assert_eq!(approved.status.approved_by.as_deref(), Some("api:alice"), "the approver is recorded with the path it came by");
    let again = http.post(&url).bearer_auth(token).json(&json!({"hash": plan.hash(), "by": "bob"})).send().await.unwrap();
    assert_eq!(again.status(), 409, "only a run awaiting approval can be approved");
}
