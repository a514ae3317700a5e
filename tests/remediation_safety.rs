//! The remediator's safety edges on the real apiserver (issue 12): a run
//! aborted while queued never starts, the approval window holds on every path
//! and is measured from the gate, an undecodable RemediationRun is skipped
//! without stopping the others, a leader that lost its Lease starts no
//! further step, an `auto` run deletes no PVC before its node is confirmed
//! gone, and the HTTP API answers a bad run id with 400.

mod support;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::api::{DynamicObject, PostParams};
use kube::{Api, Client};
use lifeboat::config::{Dur, RemediationConfig};
use lifeboat::journal::{api_resource, Journal, JournalError, Mode, Phase, RunRecord, RunTrigger, StepState};
use lifeboat::leader::{self, LeaderConfig};
use lifeboat::plan::{Action, ObjectRef, Plan, RecoverySource, Step, WaitCondition};
use lifeboat::remediator::{abort, approve, RemediationError, Remediator};
use serde_json::{json, Value};
use support::controlplane::control_plane;
use support::fixtures::{pod, pv_pinned, pvc};
use support::k8s::{api_for, create, get, mark_node_not_ready, node_ready};

struct Scene {
    client: Client,
    ns: String,
    journal: Arc<Journal>,
}

async fn scene(prefix: &str) -> Scene {
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, prefix).await;
    let journal = Arc::new(Journal::cluster(client.clone(), ns.clone()));
    Scene { client, ns, journal }
}

fn remediator(s: &Scene, poll: Duration) -> Remediator {
    Remediator {
        client: s.client.clone(),
        journal: s.journal.clone(),
        config: RemediationConfig { namespace: Some(s.ns.clone()), ..RemediationConfig::default() },
        identity: "safety-test".into(),
        kill_switch: Arc::new(AtomicBool::new(false)),
        poll_interval: poll,
    }
}

fn step(id: &str, action: Action, needs: &[&str]) -> Step {
    Step { id: id.into(), title: id.into(), action, needs: needs.iter().map(|n| n.to_string()).collect(), preconditions: vec![], recovery_source: None }
}

/// A pod nobody runs (no kubelet): a delete leaves it Terminating, visible.
async fn victim_pod(s: &Scene) -> ObjectRef {
    create(&s.client, pod(&s.ns, "victim", "nowhere", &[], json!({}), None), None).await;
    ObjectRef::pod(&s.ns, "victim")
}

async fn untouched(s: &Scene, pod: &str) -> bool {
    get(&s.client, "v1", "Pod", Some(&s.ns), pod).await["metadata"]["deletionTimestamp"].is_null()
}

async fn recorded(s: &Scene, plan: &Plan, mode: Mode) -> RunRecord {
    s.journal.create(&RunRecord::new(plan, RunTrigger::default(), mode, "test", Utc::now())).await.unwrap()
}

const TTL: Dur = Dur(Duration::from_secs(3600));

// ------------------------------------------------------------------ item 1

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_aborted_after_it_was_listed_never_starts() {
    let s = scene("safety-abort").await;
    let victim = victim_pod(&s).await;
    let plan = Plan { steps: vec![step("restart", Action::RestartPod { pod: victim }, &[])], ..Plan::new("cnpg-instance-lost", format!("{}/victim", s.ns)) };
    let run = recorded(&s, &plan, Mode::Approve).await;
    approve(&s.journal, &run.id, &run.spec.plan_hash, "alice", TTL).await.unwrap();
    // What run_pending listed: Approved. Then someone aborts it while it waits its turn.
    let listed = s.journal.get(&run.id).await.unwrap().unwrap();
    assert_eq!(listed.status.phase, Phase::Approved);
    abort(&s.journal, &run.id, "bob").await.unwrap();

    let after = remediator(&s, Duration::from_millis(200)).execute(listed, None).await.unwrap();
    assert_eq!(after.status.phase, Phase::Aborted, "{:?}", after.status);
    assert!(after.status.steps.iter().all(|st| st.state == StepState::Pending), "{:?}", after.status.steps);
    assert!(untouched(&s, "victim").await, "the aborted run deleted the pod");
}

// ------------------------------------------------------------------ item 4

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approval_window_closes_ttl_after_the_gate_was_reached() {
    let s = scene("safety-window").await;
    let victim = victim_pod(&s).await;
    let plan = Plan { steps: vec![step("restart", Action::RestartPod { pod: victim }, &[])], ..Plan::new("cnpg-instance-lost", format!("{}/old", s.ns)) };
    // Requested three days ago, never approved: the window is long closed.
    let old = s.journal.create(&RunRecord::new(&plan, RunTrigger::default(), Mode::Approve, "test", Utc::now() - chrono::Duration::days(3))).await.unwrap();
    let refused = approve(&s.journal, &old.id, &old.spec.plan_hash, "alice", TTL).await;
    assert!(matches!(refused, Err(RemediationError::ApprovalWindowClosed { .. })), "{refused:?}");
    assert_eq!(s.journal.get(&old.id).await.unwrap().unwrap().status.phase, Phase::AwaitingApproval);

    // A per-phase gate reached ten minutes ago (its last step finished then)
    // of a run requested three days ago: the window runs from the gate.
    let mut paused = RunRecord::new(&plan, RunTrigger::default(), Mode::Approve, "test", Utc::now() - chrono::Duration::days(3));
    paused.id = format!("{}-paused", paused.id);
    paused.status.awaiting_phase = Some("restore".into());
    paused.status.steps[0].state = StepState::Succeeded;
    paused.status.steps[0].finished_at = Some(Utc::now() - chrono::Duration::minutes(10));
    let paused = s.journal.create(&paused).await.unwrap();
    let approved = approve(&s.journal, &paused.id, &paused.spec.plan_hash, "alice", TTL).await.unwrap();
    assert_eq!(approved.status.phase, Phase::Approved);
    assert_eq!(approved.status.approved_phases, vec!["restore".to_string()]);
    // The same gate reached two hours ago: closed.
    let mut stale = paused.clone();
    stale.id = format!("{}-stale", old.id);
    stale.status.steps[0].finished_at = Some(Utc::now() - chrono::Duration::hours(2));
    let stale = s.journal.create(&stale).await.unwrap();
    let refused = approve(&s.journal, &stale.id, &stale.spec.plan_hash, "alice", TTL).await;
    assert!(matches!(refused, Err(RemediationError::ApprovalWindowClosed { .. })), "{refused:?}");
}

async fn api_server(s: &Scene) -> String {
    let api = lifeboat::api::ApiContext::new(s.client.clone(), s.ns.clone(), "an-api-token-of-some-length".into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, lifeboat::api::routes(Arc::new(api))).await });
    url
}

async fn api_approve(url: &str, id: &str, body: Value) -> (u16, String) {
    let r = reqwest::Client::new().post(format!("{url}/api/runs/{id}/approve")).bearer_auth("an-api-token-of-some-length").json(&body).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_enforces_the_window_records_api_approvers_and_rejects_bad_ids() {
    let s = scene("safety-api").await;
    let url = api_server(&s).await;
    let victim = victim_pod(&s).await;
    let plan = Plan { steps: vec![step("restart", Action::RestartPod { pod: victim }, &[])], ..Plan::new("cnpg-instance-lost", format!("{}/api", s.ns)) };
    let old = s.journal.create(&RunRecord::new(&plan, RunTrigger::default(), Mode::Approve, "test", Utc::now() - chrono::Duration::days(3))).await.unwrap();
    let (code, body) = api_approve(&url, &old.id, json!({"hash": old.spec.plan_hash, "by": "alice"})).await;
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("approval window"), "{body}");

    let fresh = recorded(&s, &plan, Mode::Approve).await;
    let (code, body) = api_approve(&url, &fresh.id, json!({"hash": fresh.spec.plan_hash, "by": "discord:alice"})).await;
    assert_eq!(code, 400, "an API caller cannot pass for a Discord approver: {body}");
    let (code, body) = api_approve(&url, &fresh.id, json!({"hash": fresh.spec.plan_hash, "by": "alice"})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(s.journal.get(&fresh.id).await.unwrap().unwrap().status.approved_by.as_deref(), Some("api:alice"));

    // item 16: an invalid run id is the caller's mistake, not an outage.
    let (code, body) = api_approve(&url, "Not_A-Valid.ID", json!({"hash": "x", "by": "alice"})).await;
    assert_eq!(code, 400, "{body}");
}

// ------------------------------------------------------------------ item 7

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_run_is_skipped_reported_and_refused_alone() {
    let s = scene("safety-undecodable").await;
    let victim = victim_pod(&s).await;
    let plan = Plan { steps: vec![step("restart", Action::RestartPod { pod: victim }, &[])], ..Plan::new("cnpg-instance-lost", format!("{}/good", s.ns)) };
    let good = recorded(&s, &plan, Mode::Approve).await;
    approve(&s.journal, &good.id, &good.spec.plan_hash, "alice", TTL).await.unwrap();
    // Valid for the CRD (the plan is free-form there), not for this lifeboat:
    // what a rollback to an older version leaves behind.
    let mut bad = DynamicObject::new("from-a-newer-lifeboat", &api_resource()).within(&s.ns);
    bad.data = json!({"spec": {"playbook": "future", "target": "x", "trigger": {}, "planHash": "abc", "plan": {"shape": "unknown"},
                               "mode": "approve", "requestedBy": "someone", "requestedAt": "2026-01-01T00:00:00Z"}});
    Api::<DynamicObject>::namespaced_with(s.client.clone(), &s.ns, &api_resource()).create(&PostParams::default(), &bad).await.unwrap();

    let runs = s.journal.list().await.expect("one bad record does not fail the listing");
    assert_eq!(runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), vec![good.id.as_str()]);
    assert!(lifeboat::journal::undecodable_runs() >= 1);
    let config = lifeboat::config::Config::default();
    let hub = Arc::new(lifeboat::snapshot::Hub::new(config.clone(), lifeboat::snapshot::Snapshot::build(Default::default(), &config, &Default::default()), None));
    let exposition = lifeboat::metrics::render(&hub).unwrap();
    assert!(exposition.lines().any(|l| l.starts_with("lifeboat_journal_undecodable_runs ") && !l.ends_with(" 0")), "{exposition}");
    // Only that id is refused, naming it.
    let err = s.journal.get("from-a-newer-lifeboat").await.unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { ref id, .. } if id == "from-a-newer-lifeboat"), "{err}");
    // Remediation goes on with the others.
    let handled = remediator(&s, Duration::from_millis(200)).run_pending(None).await.unwrap();
    assert_eq!(handled, vec![good.id.clone()]);
    assert_eq!(s.journal.get(&good.id).await.unwrap().unwrap().status.phase, Phase::Succeeded);
}

// ------------------------------------------------------------------ item 8

/// Runs `[first, restart-victim needs first]` as the Lease holder, takes
/// leadership away once `first` is running, then does `after_loss`.
async fn run_losing_the_lease_during(s: &Scene, first: Step, after_loss: impl std::future::Future<Output = ()>) -> RunRecord {
    let victim = victim_pod(s).await;
    let plan = Plan { steps: vec![first, step("restart", Action::RestartPod { pod: victim }, &["first"])], ..Plan::new("cnpg-instance-lost", format!("{}/lease", s.ns)) };
    let run = recorded(s, &plan, Mode::Approve).await;
    approve(&s.journal, &run.id, &run.spec.plan_hash, "alice", TTL).await.unwrap();
    let leader = leader::spawn(s.client.clone(), LeaderConfig::new(s.ns.clone(), "lease-holder"));
    tokio::time::timeout(Duration::from_secs(60), leader.wait_until_leader()).await.expect("becomes leader");

    // The remediator's own poll is long: only the runner's guard can notice in time.
    let r = remediator(s, Duration::from_secs(3600));
    let listed = s.journal.get(&run.id).await.unwrap().unwrap();
    let handle = leader.clone();
    let execution = tokio::spawn(async move { r.execute(listed, Some(&handle)).await });
    let journal = s.journal.clone();
    let id = run.id.clone();
    tokio::time::timeout(Duration::from_secs(60), async {
        while journal.get(&id).await.unwrap().unwrap().status.steps[0].state != StepState::Running {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the first step starts");

    // Leadership is gone (as when renewals fail).
    leader.abort();
    after_loss.await;
    let after = tokio::time::timeout(Duration::from_secs(120), execution).await.expect("the run stops").unwrap().unwrap();
    assert!(untouched(s, "victim").await, "a step started after leadership was lost: {:?}", after.status);
    assert!(!after.status.phase.is_terminal(), "the run is left for the next leader: {:?}", after.status);
    after
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_lost_its_lease_starts_no_further_step() {
    let s = scene("safety-lease").await;
    let node = format!("{}-n", s.ns);
    node_ready(&s.client, &node).await;
    let node_ref = ObjectRef { api_version: "v1".into(), kind: "Node".into(), namespace: None, name: node.clone() };
    let first = step("first", Action::Wait { object: node_ref, until: WaitCondition::NodeConfirmedGone, timeout_seconds: 600 }, &[]);
    // ...then the wait's condition comes true: the next step must still not start.
    let confirm = async {
        let nodes = api_for(&s.client, "v1", "Node", None).await;
        nodes.patch(&node, &Default::default(), &kube::api::Patch::Merge(json!({"metadata": {"annotations": {"lifeboat.dev/confirmed-gone": "true"}}}))).await.unwrap();
    };
    let after = run_losing_the_lease_during(&s, first, confirm).await;
    assert!(after.status.steps.iter().all(|st| st.state != StepState::Succeeded || st.id == "first"), "{:?}", after.status.steps);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_lost_its_lease_stops_waiting_for_a_job() {
    let s = scene("safety-lease-job").await;
    // No Job controller runs here: the Job never finishes; only the guard ends the wait.
    let job = ObjectRef::namespaced("batch/v1", "Job", &s.ns, "restore");
    let manifest = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "restore", "namespace": s.ns},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "restore", "image": "alpine:3", "command": ["true"]}]}}}});
    let first = step("first", Action::RunJob { job, manifest, timeout_seconds: 600, success_marker: "done".into(), output: lifeboat::plan::job::JobOutput::Nothing }, &[]);
    let after = run_losing_the_lease_during(&s, first, async {}).await;
    assert_ne!(after.status.steps[0].state, StepState::Succeeded, "{:?}", after.status.steps);
}

// ------------------------------------------------------------------ item 12

async fn pinned_claim(s: &Scene, node: &str, claim: &str) -> ObjectRef {
    let pv = format!("{}-{claim}", s.ns);
    create(&s.client, pv_pinned(&pv, "kubernetes.io/hostname", node, &s.ns, claim), None).await;
    create(&s.client, pvc(&s.ns, claim, &pv, json!({})), None).await;
    ObjectRef::pvc(&s.ns, claim)
}

fn delete_pvc_plan(s: &Scene, claim: &ObjectRef, node: &str, target: &str) -> Plan {
    let mut delete = step("delete-pvc", Action::DeletePvc { pvc: claim.clone(), pinned_node: node.into() }, &[]);
    delete.recovery_source = Some(RecoverySource { description: "a VolSync snapshot".into(), evidence: vec!["synced an hour ago".into()] });
    Plan { steps: vec![delete], ..Plan::new("volsync-restore", format!("{}/{target}", s.ns)) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_run_deletes_no_pvc_until_its_node_is_confirmed_gone() {
    let s = scene("safety-auto").await;
    let node = format!("{}-dead", s.ns);
    node_ready(&s.client, &node).await;
    mark_node_not_ready(&s.client, &node, Utc::now() - chrono::Duration::minutes(30)).await;
    let claim = pinned_claim(&s, &node, "data").await;
    let r = remediator(&s, Duration::from_millis(200));

    // NotReady past any grace, but nobody confirmed the node is gone: refused.
    let run = recorded(&s, &delete_pvc_plan(&s, &claim, &node, "first"), Mode::Auto).await;
    assert_eq!(run.status.phase, Phase::Approved, "auto mode approves on submit");
    let after = r.execute(run, None).await.unwrap();
    assert_eq!(after.status.phase, Phase::Stopped, "{:?}", after.status);
    assert!(after.status.steps[0].detail.as_deref().unwrap_or("").contains("confirmed"), "{:?}", after.status.steps);
    assert!(api_for(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns)).await.get_opt("data").await.unwrap().is_some());

    // Confirmed by the annotation node-loss asks for: now it may go.
    let nodes = api_for(&s.client, "v1", "Node", None).await;
    nodes.patch(&node, &Default::default(), &kube::api::Patch::Merge(json!({"metadata": {"annotations": {"lifeboat.dev/confirmed-gone": "true"}}}))).await.unwrap();
    let run = recorded(&s, &delete_pvc_plan(&s, &claim, &node, "second"), Mode::Auto).await;
    let after = r.execute(run, None).await.unwrap();
    assert_eq!(after.status.phase, Phase::Succeeded, "{:?}", after.status);
}
