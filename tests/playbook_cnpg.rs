//! cnpg-instance-lost end to end on the real apiserver with the real CNPG CRD,
//! the test playing CloudNativePG and the kubelet. Failure paths: the node
//! comes back before a destructive step, a stale approval, a step that fails.

mod support;

use std::time::Duration;

use kube::Client;
use lifeboat::act::runner::{execute, Outcome, RunLimits, RunReport, StepReport, StepStatus};
use lifeboat::config::Config;
use lifeboat::plan::playbooks::{plan, Trigger};
use lifeboat::plan::Plan;
use lifeboat::snapshot::Snapshot;
use support::cnpg::*;
use support::controlplane::control_plane;
use support::fixtures::{cnpg_cluster, condition, object_store, pod, pv_pinned, pvc};
use support::k8s::*;

struct Scene {
    client: Client,
    ns: String,
    healthy: String,
    doomed: String,
}

/// A 3-instance CNPG cluster whose primary postgres-1 lives on a node that
/// has been NotReady for 10 minutes.
async fn scene(prefix: &str) -> Scene {
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, prefix).await;
    let (healthy, doomed) = lost_primary_cluster(&client, &ns).await;
    Scene { client, ns, healthy, doomed }
}

async fn live_plan(scene: &Scene) -> Plan {
    let config = Config { discovery_interval: lifeboat::config::Dur::secs(1), ..Config::default() };
    let snapshot = live_snapshot(&scene.client, &config).await;
    let trigger = Trigger { namespace: Some(scene.ns.clone()), name: Some("postgres".into()), node: None };
    plan("cnpg-instance-lost", &snapshot.state, &snapshot.findings, &trigger).expect("plans")
}

/// The step `id` of a report.
fn step<'a>(report: &'a RunReport, id: &str) -> &'a StepReport {
    report.steps.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("no step {id}: {report:#?}"))
}

fn position(plan: &Plan, id: &str) -> usize {
    plan.steps.iter().position(|s| s.id == id).unwrap_or_else(|| panic!("no step {id}: {}", plan.render_text()))
}

fn fast() -> RunLimits {
    RunLimits { poll_interval: Duration::from_millis(200), ..RunLimits::default() }
}

/// Plays CloudNativePG that promotes but never re-creates the lost instance.
async fn play_promotions_only(client: Client, ns: String) {
    loop {
        follow_promotion(&client, &ns).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_a_lost_primary_end_to_end() {
    let s = scene("cnpg-e2e").await;
    let plan = live_plan(&s).await;
    let ids: Vec<&str> = plan.steps.iter().map(|st| st.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "promote",
            "wait-primary",
            "wait-archiving",
            "base-backup",
            "wait-backup",
            "mark-pvc-postgres-1",
            "delete-pod-postgres-1",
            "delete-pvc-postgres-1",
            "wait-healthy",
            "verify-rw-endpoints",
        ]
    );
    assert!(plan.findings.iter().any(|f| f.contains("it is stuck")), "{}", plan.render_text());

    let lost_claim = claim_uid(&s, "postgres-1").await;
    let operator = tokio::spawn(play_cnpg(s.client.clone(), s.ns.clone(), s.healthy.clone()));
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    operator.abort();
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:#?}");

    let cluster = get(&s.client, "postgresql.cnpg.io/v1", "Cluster", Some(&s.ns), "postgres").await;
    assert_eq!(cluster["status"]["currentPrimary"], "postgres-2");
    assert_eq!(cluster["spec"]["storage"]["size"], "1Gi", "spec untouched");
    let pvcs = api_for(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns)).await;
    assert!(pvcs.get_opt("postgres-2").await.unwrap().is_some() && pvcs.get_opt("postgres-3").await.unwrap().is_some());
    assert_recreated_off(&s, "postgres-1", &lost_claim).await;
    assert!(step(&report, "mark-pvc-postgres-1").finished <= step(&report, "delete-pod-postgres-1").started, "the PVC went before the pod");
    let backup = get(&s.client, "postgresql.cnpg.io/v1", "Backup", Some(&s.ns), "postgres-after-postgres-1-lost").await;
    assert_eq!(backup["status"]["phase"], "completed", "a base backup on the new timeline");

    // Running the same plan again never touches the instance CNPG re-created
    // under the lost one's name: promote is a no-op, and the first destructive
    // step refuses the new claim, which no volume on the lost node backs.
    let version = cluster["metadata"]["resourceVersion"].clone();
    let recreated = claim_uid(&s, "postgres-1").await;
    let again = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    assert_eq!(again.outcome, Outcome::Stopped, "{again:#?}");
    assert!(matches!(&step(&again, "promote").status, StepStatus::Succeeded { detail } if detail.contains("already the target primary")), "{again:#?}");
    assert!(matches!(&step(&again, "mark-pvc-postgres-1").status, StepStatus::Refused { reason } if reason.contains("cannot prove which node holds its data")), "{again:#?}");
    assert_eq!(claim_uid(&s, "postgres-1").await, recreated, "the re-created instance's claim is untouched");
    let cluster = get(&s.client, "postgresql.cnpg.io/v1", "Cluster", Some(&s.ns), "postgres").await;
    assert_eq!(cluster["metadata"]["resourceVersion"], version, "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_back_mid_run_refuses_destructive_steps() {
    let s = scene("cnpg-node-back").await;
    let plan = live_plan(&s).await;
    // The node returns after the plan was approved.
    mark_node_ready(&s.client, &s.doomed).await;
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    assert_eq!(report.outcome, Outcome::Stopped);
    assert!(matches!(&report.steps[0].status, StepStatus::Refused { reason } if reason.contains("still missing or not Ready")), "{report:#?}");
    assert!(report.steps[1..].iter().all(|st| st.status == StepStatus::NotRun));
    assert_eq!(report.remaining_commands().len(), plan.steps.len());
    let pvcs = api_for(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns)).await;
    assert!(pvcs.get_opt("postgres-1").await.unwrap().is_some(), "nothing deleted");
    let cluster = get(&s.client, "postgresql.cnpg.io/v1", "Cluster", Some(&s.ns), "postgres").await;
    assert_eq!(cluster["status"]["targetPrimary"], "postgres-1", "no promotion either");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_refuses_to_delete_a_pvc_whose_node_is_ready_even_if_the_plan_says_so() {
    let s = scene("cnpg-invariant").await;
    let mut plan = live_plan(&s).await;
    // A buggy playbook: delete a healthy replica's PVC, with no node precondition.
    let step = plan.steps.iter_mut().find(|st| st.id == "delete-pvc-postgres-1").unwrap();
    step.action = lifeboat::plan::Action::DeletePvc { pvc: lifeboat::plan::ObjectRef::pvc(&s.ns, "postgres-2"), pinned_node: s.healthy.clone() };
    step.preconditions.clear();
    step.needs.clear();
    plan.steps.retain(|st| st.id == "delete-pvc-postgres-1");
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    assert!(matches!(&report.steps[0].status, StepStatus::Refused { reason } if reason.contains("is Ready")), "{report:#?}");
    assert!(api_for(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns)).await.get_opt("postgres-2").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_approval_and_blast_radius_are_rejected_before_any_write() {
    let s = scene("cnpg-approval").await;
    let plan = live_plan(&s).await;
    let report = execute(&s.client, &plan, "0123456789abcdef01234567", &fast()).await;
    assert_eq!(report.outcome, Outcome::Rejected);
    assert!(report.reason.as_deref().unwrap().contains("approve again"));
    let tight = RunLimits { max_pvc_deletions: 0, ..fast() };
    let report = execute(&s.client, &plan, &plan.hash(), &tight).await;
    assert_eq!(report.outcome, Outcome::Rejected);
    assert!(report.reason.as_deref().unwrap().contains("blast radius"));
    let cluster = get(&s.client, "postgresql.cnpg.io/v1", "Cluster", Some(&s.ns), "postgres").await;
    assert_eq!(cluster["status"]["targetPrimary"], "postgres-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_never_converges_fails_and_reports_what_is_left() {
    let s = scene("cnpg-timeout").await;
    let mut plan = live_plan(&s).await;
    for st in &mut plan.steps {
        if let lifeboat::plan::Action::Wait { timeout_seconds, .. } = &mut st.action {
            *timeout_seconds = 2;
        }
    }
    // No operator runs: the promotion is requested but never happens.
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    assert_eq!(report.outcome, Outcome::Stopped);
    assert!(matches!(&report.steps[0].status, StepStatus::Succeeded { .. }));
    assert!(matches!(&report.steps[1].status, StepStatus::Failed { error } if error.contains("timed out")), "{report:#?}");
    let left = report.remaining_commands();
    assert_eq!(left.len(), plan.steps.len() - 1);
    assert!(left.iter().any(|c| c.contains("kubectl delete pod postgres-1") && c.contains("--force")), "{left:#?}");
    assert!(api_for(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns)).await.get_opt("postgres-1").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_is_resumed_without_repeating_destructive_steps() {
    use lifeboat::act::runner::{fresh_report, resume, RunReport};
    use std::sync::{Arc, Mutex};
    let s = scene("cnpg-resume").await;
    let plan = live_plan(&s).await;
    let journal: Arc<Mutex<RunReport>> = Arc::new(Mutex::new(fresh_report(&plan)));

    // The operator follows the promotion but re-creates the instance only
    // later, so the first lifeboat is still waiting when it dies.
    let promoter = tokio::spawn(play_promotions_only(s.client.clone(), s.ns.clone()));
    let first = {
        let (client, plan, journal) = (s.client.clone(), plan.clone(), journal.clone());
        tokio::spawn(async move {
            let record = |r: &RunReport| *journal.lock().unwrap() = r.clone();
            resume(&client, &plan, &plan.hash(), &fast(), fresh_report(&plan), &record).await
        })
    };
    // Kill the first instance once its destructive steps are journaled as done.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = journal.lock().unwrap().steps.iter().any(|st| st.id == "delete-pvc-postgres-1" && matches!(st.status, StepStatus::Succeeded { .. }));
        if done {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "first run did not get to wait-healthy: {:#?}", journal.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.abort();
    promoter.abort();
    let saved = journal.lock().unwrap().clone();
    let deleted_at = step(&saved, "delete-pvc-postgres-1").finished;
    let promoted_at = step(&saved, "promote").finished;

    // CNPG re-creates the instance; a second lifeboat resumes from the journal.
    let operator = tokio::spawn(play_cnpg(s.client.clone(), s.ns.clone(), s.healthy.clone()));
    let writes_before = get(&s.client, "postgresql.cnpg.io/v1", "Cluster", Some(&s.ns), "postgres").await;
    let resumed = resume(&s.client, &plan, &plan.hash(), &fast(), saved, &|_| {}).await;
    operator.abort();
    assert_eq!(resumed.outcome, Outcome::Succeeded, "{resumed:#?}");
    assert_eq!(step(&resumed, "delete-pvc-postgres-1").finished, deleted_at, "the PVC deletion was not run again");
    assert_eq!(step(&resumed, "promote").finished, promoted_at, "promote not run again");
    assert!(step(&resumed, "wait-healthy").started.unwrap() > deleted_at.unwrap(), "only the wait ran in the second instance");
    assert_eq!(writes_before["status"]["targetPrimary"], "postgres-2");
}

fn shorten_waits(plan: &mut Plan, seconds: u64) {
    for st in &mut plan.steps {
        if let lifeboat::plan::Action::Wait { timeout_seconds, .. } = &mut st.action {
            *timeout_seconds = seconds;
        }
    }
}

/// The primary's node went NotReady a minute ago (lost after a 30s grace):
/// CNPG has not had the time to fail over yet.
async fn fresh_loss(prefix: &str) -> (Scene, Plan) {
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, prefix).await;
    let (healthy, doomed) = lost_primary_cluster_since(&client, &ns, chrono::Utc::now() - chrono::Duration::minutes(1)).await;
    let s = Scene { client, ns, healthy, doomed };
    let config = Config { discovery_interval: lifeboat::config::Dur::secs(1), node_lost_grace: lifeboat::config::Dur::secs(30), ..Config::default() };
    let snapshot = live_snapshot(&s.client, &config).await;
    let trigger = Trigger { namespace: Some(s.ns.clone()), name: Some("postgres".into()), node: None };
    let plan = plan("cnpg-instance-lost", &snapshot.state, &snapshot.findings, &trigger).expect("plans");
    (s, plan)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cnpg_fails_over_by_itself_to_the_most_advanced_replica_and_lifeboat_only_waits() {
    let (s, mut plan) = fresh_loss("cnpg-own-failover").await;
    assert!(!plan.steps.iter().any(|st| st.id == "promote"), "lifeboat must not pick a primary: {}", plan.render_text());
    assert_eq!(plan.steps[0].id, "wait-failover", "{}", plan.render_text());
    assert!(plan.findings.iter().any(|f| f.contains("fails over by itself")), "{}", plan.render_text());
    // postgres-3 received more WAL than postgres-2: CNPG elects it, not the first by name.
    report_lsn(&s.client, &s.ns, "postgres-2", "0/3000000").await;
    report_lsn(&s.client, &s.ns, "postgres-3", "0/5000000").await;
    shorten_waits(&mut plan, 60);
    let lost_claim = claim_uid(&s, "postgres-1").await;
    let operator = tokio::spawn(play_cnpg_with(s.client.clone(), s.ns.clone(), s.healthy.clone(), Failover::Automatic));
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    operator.abort();
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:#?}");
    let cluster = get(&s.client, "postgresql.cnpg.io/v1", "Cluster", Some(&s.ns), "postgres").await;
    assert_eq!((cluster["status"]["currentPrimary"].as_str(), cluster["status"]["targetPrimary"].as_str()), (Some("postgres-3"), Some("postgres-3")));
    assert!(matches!(&step(&report, "wait-failover").status, StepStatus::Succeeded { detail } if detail.contains("to postgres-3")), "{report:#?}");
    assert_recreated_off(&s, "postgres-1", &lost_claim).await;
}

async fn claim_uid(s: &Scene, claim: &str) -> String {
    get(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns), claim).await["metadata"]["uid"].as_str().unwrap().to_string()
}

/// The lost instance's claim (uid `lost_claim`) is gone and, if CNPG has re-created
/// the instance under its own name (v1.30.0 `generateNodeSerial` reuses the first
/// free serial), that is a new claim and a pod on a Ready node, not the lost one.
async fn assert_recreated_off(s: &Scene, instance: &str, lost_claim: &str) {
    let claim = api_for(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns)).await.get_opt(instance).await.unwrap();
    if let Some(claim) = claim {
        let claim = serde_json::to_value(claim).unwrap();
        assert_ne!(claim["metadata"]["uid"].as_str(), Some(lost_claim), "the lost instance's PVC is still there: {claim:#}");
    }
    if let Some(pod) = api_for(&s.client, "v1", "Pod", Some(&s.ns)).await.get_opt(instance).await.unwrap() {
        let pod = serde_json::to_value(pod).unwrap();
        assert_ne!(pod["spec"]["nodeName"].as_str(), Some(s.doomed.as_str()), "a pod re-attached on the lost node: {pod:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_in_progress_is_waited_for_and_never_overridden() {
    let s = scene("cnpg-in-progress").await;
    // CNPG already elected postgres-3; its promotion has not finished.
    set_status(&s.client, "postgresql.cnpg.io/v1", "Cluster", Some(&s.ns), "postgres", serde_json::json!({"targetPrimary": "postgres-3", "phase": "Failing over"})).await;
    let mut plan = live_plan(&s).await;
    assert!(!plan.steps.iter().any(|st| st.id == "promote"), "{}", plan.render_text());
    assert!(plan.findings.iter().any(|f| f.contains("already failing over")), "{}", plan.render_text());
    shorten_waits(&mut plan, 60);
    let operator = tokio::spawn(play_cnpg(s.client.clone(), s.ns.clone(), s.healthy.clone()));
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    operator.abort();
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:#?}");
    let cluster = get(&s.client, "postgresql.cnpg.io/v1", "Cluster", Some(&s.ns), "postgres").await;
    assert_eq!(cluster["status"]["currentPrimary"], "postgres-3", "CNPG's choice stands");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_is_refused_once_cnpg_started_its_own_failover_after_planning() {
    let s = scene("cnpg-late-failover").await;
    let plan = live_plan(&s).await;
    assert!(plan.steps.iter().any(|st| st.id == "promote"), "stuck: lifeboat promotes: {}", plan.render_text());
    // Between approval and execution CNPG starts failing over (PendingFailoverMarker).
    set_status(&s.client, "postgresql.cnpg.io/v1", "Cluster", Some(&s.ns), "postgres", serde_json::json!({"targetPrimary": "pending"})).await;
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    assert!(matches!(&step(&report, "promote").status, StepStatus::Refused { reason } if reason.contains("no failover started")), "{report:#?}");
    let cluster = get(&s.client, "postgresql.cnpg.io/v1", "Cluster", Some(&s.ns), "postgres").await;
    assert_eq!(cluster["status"]["targetPrimary"], "pending", "lifeboat wrote nothing over CNPG's failover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cnpg_reattaches_a_pod_to_a_pvc_left_behind() {
    // Why the PVCs go first: with the pod deleted first, CNPG re-creates it
    // on the dangling claim (Pending: its node is gone).
    let s = scene("cnpg-reattach").await;
    set_status(&s.client, "postgresql.cnpg.io/v1", "Cluster", Some(&s.ns), "postgres", serde_json::json!({"currentPrimary": "postgres-2", "targetPrimary": "postgres-2"})).await;
    let operator = tokio::spawn(play_cnpg(s.client.clone(), s.ns.clone(), s.healthy.clone()));
    let pods = api_for(&s.client, "v1", "Pod", Some(&s.ns)).await;
    let old_uid = pods.get("postgres-1").await.unwrap().metadata.uid;
    pods.delete("postgres-1", &kube::api::DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let reattached = loop {
        if let Some(p) = pods.get_opt("postgres-1").await.unwrap().filter(|p| p.metadata.uid != old_uid) {
            break serde_json::to_value(p).unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "CNPG did not re-attach the PVC");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    operator.abort();
    assert_eq!(reattached["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"], "postgres-1");
    assert!(reattached["spec"]["nodeName"].is_null(), "Pending: its PVC's node is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_deletes_every_pvc_of_the_instance_before_its_pod() {
    let s = scene("cnpg-pvc-order").await;
    for (claim, role) in [("postgres-1-wal", "PG_WAL"), ("postgres-1-tbs-idx", "PG_TABLESPACE")] {
        let pv = format!("{}-{claim}", s.ns);
        create(&s.client, pv_pinned(&pv, "kubernetes.io/hostname", &s.doomed, &s.ns, claim), None).await;
        create(&s.client, pvc(&s.ns, claim, &pv, serde_json::json!({"cnpg.io/cluster": "postgres", "cnpg.io/instanceName": "postgres-1", "cnpg.io/pvcRole": role})), None).await;
    }
    let plan = live_plan(&s).await;
    let pod_step = &plan.steps[position(&plan, "delete-pod-postgres-1")];
    for claim in ["postgres-1", "postgres-1-wal", "postgres-1-tbs-idx"] {
        let mark = format!("mark-pvc-{claim}");
        assert!(pod_step.needs.contains(&mark), "{claim} before the pod: {}", plan.render_text());
        assert!(plan.steps[position(&plan, &format!("delete-pvc-{claim}"))].needs.contains(&pod_step.id));
    }
}

async fn rw_slice(s: &Scene, target: &str, conditions: serde_json::Value) {
    create(
        &s.client,
        serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "postgres-rw", "namespace": s.ns},
        "spec": {"ports": [{"port": 5432}], "selector": {"cnpg.io/cluster": "postgres", "cnpg.io/instanceRole": "primary"}}}),
        None,
    )
    .await;
    create(
        &s.client,
        serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "postgres-rw-1", "namespace": s.ns, "labels": {"kubernetes.io/service-name": "postgres-rw"}},
        "addressType": "IPv4", "ports": [{"port": 5432}],
        "endpoints": [{"addresses": ["10.0.0.12"], "conditions": conditions, "targetRef": {"kind": "Pod", "name": target, "namespace": s.ns}}]}),
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_rw_needs_a_ready_endpoint_on_the_current_primary() {
    let s = scene("cnpg-rw").await;
    let mut verify = live_plan(&s).await;
    verify.steps.retain(|st| st.id == "verify-rw-endpoints");
    verify.steps[0].needs.clear();
    shorten_waits(&mut verify, 1);
    set_status(&s.client, "postgresql.cnpg.io/v1", "Cluster", Some(&s.ns), "postgres", serde_json::json!({"currentPrimary": "postgres-2", "targetPrimary": "postgres-2"})).await;
    let outcome = |report: RunReport| report.steps[0].status.clone();
    // The slice still points at the old primary: ready, but not the primary.
    rw_slice(&s, "postgres-1", serde_json::json!({"ready": true})).await;
    let failed = outcome(execute(&s.client, &verify, &verify.hash(), &fast()).await);
    assert!(matches!(&failed, StepStatus::Failed { error } if error.contains("postgres-2")), "{failed:?}");
    // The primary, but terminating.
    rw_slice(&s, "postgres-2", serde_json::json!({"ready": true, "terminating": true})).await;
    assert!(matches!(outcome(execute(&s.client, &verify, &verify.hash(), &fast()).await), StepStatus::Failed { .. }));
    // The primary, explicitly not ready.
    rw_slice(&s, "postgres-2", serde_json::json!({"ready": false})).await;
    assert!(matches!(outcome(execute(&s.client, &verify, &verify.hash(), &fast()).await), StepStatus::Failed { .. }));
    // The primary, `ready` unset: the EndpointSlice API reads nil as ready.
    rw_slice(&s, "postgres-2", serde_json::json!({})).await;
    let ok = outcome(execute(&s.client, &verify, &verify.hash(), &fast()).await);
    assert!(matches!(&ok, StepStatus::Succeeded { detail } if detail.contains("on postgres-2")), "{ok:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_instance_cluster_is_recovered_from_its_object_store_and_triage_says_so() {
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "cnpg-single").await;
    let doomed = format!("{ns}-b");
    node_ready(&client, &doomed).await;
    let pv = format!("{ns}-pv-1");
    create(&client, pv_pinned(&pv, "kubernetes.io/hostname", &doomed, &ns, "postgres-1"), None).await;
    create(&client, pvc(&ns, "postgres-1", &pv, serde_json::json!({"cnpg.io/cluster": "postgres", "cnpg.io/pvcRole": "PG_DATA"})), None).await;
    create(&client, running(pod(&ns, "postgres-1", &doomed, &["postgres-1"], serde_json::json!({"cnpg.io/cluster": "postgres"}), None)), None).await;
    let mut cluster =
        cnpg_cluster(&ns, "postgres", "postgres-1", vec![condition("ContinuousArchiving", "True", "ContinuousArchivingSuccess", "2026-11-20T00:00:00Z")], "postgres-r2");
    cluster["spec"]["instances"] = serde_json::json!(1);
    cluster["spec"]["storage"] = serde_json::json!({"size": "1Gi"});
    cluster["status"]["instanceNames"] = serde_json::json!(["postgres-1"]);
    create(&client, cluster, None).await;
    create(&client, object_store(&ns, "cnpg-garage", "postgres-r2", "2026-11-01T00:00:00Z", "2026-11-24T00:00:00Z"), None).await;
    mark_node_not_ready(&client, &doomed, chrono::Utc::now() - chrono::Duration::minutes(10)).await;

    let config = Config { discovery_interval: lifeboat::config::Dur::secs(1), ..Config::default() };
    let snapshot = live_snapshot(&client, &config).await;
    let report = lifeboat::triage::triage(&snapshot.state, &snapshot.findings, None);
    let workload = report.workloads.iter().find(|w| w.namespace == ns && w.workload.contains("postgres")).expect("the instance is triaged");
    assert_eq!(workload.action, lifeboat::plan::playbooks::cnpg::NO_REPLICA_ACTION, "{workload:#?}");
    assert!(!workload.action.contains("delete the PVCs"), "{workload:#?}");
    let trigger = Trigger { namespace: Some(ns.clone()), name: Some("postgres".into()), node: None };
    let plan = plan("cnpg-instance-lost", &snapshot.state, &snapshot.findings, &trigger).unwrap();
    assert!(plan.steps.is_empty(), "nothing is deleted: {}", plan.render_text());
    assert!(plan.findings.iter().any(|f| f.contains(lifeboat::plan::playbooks::cnpg::NO_REPLICA_ACTION)), "{}", plan.render_text());
    let follow_up = plan.follow_ups.iter().find(|f| f.contains("bootstrap")).unwrap_or_else(|| panic!("{}", plan.render_text()));
    let manifest: serde_json::Value = serde_yaml::from_str(&follow_up[follow_up.find("apiVersion").unwrap()..]).unwrap();
    assert_eq!(manifest["spec"]["bootstrap"]["recovery"]["source"], "origin");
    assert_eq!(manifest["spec"]["externalClusters"][0]["plugin"]["parameters"], serde_json::json!({"barmanObjectName": "cnpg-garage", "serverName": "postgres-r2"}));
    assert_eq!(manifest["spec"]["plugins"][0]["parameters"]["serverName"], "postgres-r3", "a new archive");
    // The manifest is a valid Cluster for the real CRD (server-side dry run).
    let clusters = api_for(&client, "postgresql.cnpg.io/v1", "Cluster", Some(&ns)).await;
    let mut fresh = manifest.clone();
    fresh["metadata"]["name"] = serde_json::json!("postgres-recovered");
    let params = kube::api::PatchParams { dry_run: true, ..kube::api::PatchParams::apply("lifeboat-test") };
    clusters.patch("postgres-recovered", &params, &kube::api::Patch::Apply(&fresh)).await.expect("the recovery Cluster is valid");
}

/// The operator's status lags its world: right after a run deleted an
/// instance's pod and PVC it can still say "Cluster in healthy state" with
/// the instance listed (seen with the real operator, tests/cnpg_operator.rs).
/// wait-healthy waits until the instances it names are really there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_healthy_does_not_trust_a_status_naming_an_instance_whose_storage_is_gone() {
    let s = scene("cnpg-stale-health").await;
    set_status(&s.client, "postgresql.cnpg.io/v1", "Cluster", Some(&s.ns), "postgres", serde_json::json!({"readyInstances": 3, "phase": "Cluster in healthy state"})).await;
    // What the run just did to postgres-1; the operator has not reconciled since.
    let pods = api_for(&s.client, "v1", "Pod", Some(&s.ns)).await;
    pods.delete("postgres-1", &kube::api::DeleteParams::default().grace_period(0)).await.unwrap();
    let pvcs = api_for(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns)).await;
    pvcs.delete("postgres-1", &Default::default()).await.unwrap();
    let release = serde_json::json!({"metadata": {"finalizers": null}});
    let _ = pvcs.patch("postgres-1", &Default::default(), &kube::api::Patch::Merge(&release)).await;
    assert!(pvcs.get_opt("postgres-1").await.unwrap().is_none());

    let cluster = lifeboat::plan::ObjectRef::cnpg_cluster(&s.ns, "postgres");
    let mut wait = Plan::new("cnpg-instance-lost", cluster.to_string());
    wait.steps.push(lifeboat::plan::Step {
        id: "wait-healthy".into(),
        title: "wait".into(),
        action: lifeboat::plan::Action::Wait { object: cluster, until: lifeboat::plan::WaitCondition::CnpgHealthy, timeout_seconds: 2 },
        needs: vec![],
        preconditions: vec![],
        recovery_source: None,
    });
    let report = execute(&s.client, &wait, &wait.hash(), &fast()).await;
    assert!(matches!(&report.steps[0].status, StepStatus::Failed { error } if error.contains("timed out")), "a stale healthy status is not health: {report:#?}");
    // Nor is one that names only the survivors while still counting three ready.
    let survivors = serde_json::json!({"instanceNames": ["postgres-2", "postgres-3"]});
    set_status(&s.client, "postgresql.cnpg.io/v1", "Cluster", Some(&s.ns), "postgres", survivors).await;
    let report = execute(&s.client, &wait, &wait.hash(), &fast()).await;
    assert!(matches!(&report.steps[0].status, StepStatus::Failed { error } if error.contains("timed out")), "two named of three is not health: {report:#?}");
    let all = serde_json::json!({"instanceNames": ["postgres-1", "postgres-2", "postgres-3"]});
    set_status(&s.client, "postgresql.cnpg.io/v1", "Cluster", Some(&s.ns), "postgres", all).await;

    // The operator re-created the instance: its claim and a Ready pod exist again.
    create(&s.client, pvc(&s.ns, "postgres-1", &format!("{}-pv-1", s.ns), serde_json::json!({"cnpg.io/cluster": "postgres"})), None).await;
    let labels = serde_json::json!({"cnpg.io/cluster": "postgres", "cnpg.io/instanceName": "postgres-1"});
    create(&s.client, running(pod(&s.ns, "postgres-1", &s.healthy, &["postgres-1"], labels, None)), None).await;
    let report = execute(&s.client, &wait, &wait.hash(), &fast()).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:#?}");
}

mod journaled {
    //! The same playbook driven through the journal and leader election, as
    //! `serve` runs it: submit → approve (hash-bound) → the leader executes.

    use super::*;
    use lifeboat::config::RemediationConfig;
    use lifeboat::journal::{Journal, Phase, RunTrigger, StepState};
    use lifeboat::leader::{spawn, LeaderConfig};
    use lifeboat::remediator::{abort, approve, submit, RemediationError, Remediator};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    async fn snapshot_of(client: &Client) -> Snapshot {
        let config = Config { discovery_interval: lifeboat::config::Dur::secs(1), ..Config::default() };
        let hub = lifeboat::runtime::hub::start_live_hub(config.clone(), client.clone());
        lifeboat::runtime::hub::wait_ready(&hub, Duration::from_secs(60)).await.unwrap();
        Snapshot::build(hub.live.as_ref().unwrap().snapshot(), &config, &Default::default())
    }

    fn remediator(s: &Scene, journal: &Arc<Journal>, identity: &str) -> Remediator {
        Remediator {
            client: s.client.clone(),
            journal: journal.clone(),
            config: RemediationConfig { namespace: Some(s.ns.clone()), ..RemediationConfig::default() },
            identity: identity.into(),
            kill_switch: Arc::new(AtomicBool::new(false)),
            poll_interval: Duration::from_millis(200),
        }
    }

    fn trigger(s: &Scene) -> RunTrigger {
        RunTrigger { namespace: Some(s.ns.clone()), name: Some("postgres".into()), node: None, alert: None }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_leader_executes_an_approved_run() {
        let s = scene("cnpg-journal").await;
        let journal = Arc::new(Journal::cluster(s.client.clone(), s.ns.clone()));
        let snap = snapshot_of(&s.client).await;
        let config = RemediationConfig::default();
        let run = submit(&journal, &config, &snap.state, &snap.findings, "cnpg-instance-lost", trigger(&s), "test").await.unwrap();
        assert_eq!(run.status.phase, Phase::AwaitingApproval);
        // One active run per target.
        let again = submit(&journal, &config, &snap.state, &snap.findings, "cnpg-instance-lost", trigger(&s), "test").await;
        assert!(matches!(again, Err(RemediationError::TargetBusy { .. })), "{again:?}");
        // An approval must name the plan the approver saw.
        let wrong = approve(&journal, &run.id, "deadbeefdeadbeefdeadbeef", "alice", lifeboat::config::Dur::hours(1)).await;
        assert!(matches!(wrong, Err(RemediationError::WrongHash { .. })), "{wrong:?}");
        // Not approved yet: nothing runs.
        assert!(remediator(&s, &journal, "a").run_pending(None).await.unwrap().is_empty());
        approve(&journal, &run.id, &run.spec.plan_hash, "alice", lifeboat::config::Dur::hours(1)).await.unwrap();

        // Two replicas on one Lease; only the leader may act.
        let lease = |id: &str| LeaderConfig {
            lease_duration: Duration::from_secs(2),
            renew_interval: Duration::from_millis(500),
            retry_interval: Duration::from_millis(200),
            ..LeaderConfig::new(s.ns.clone(), id)
        };
        let one = spawn(s.client.clone(), lease("replica-1"));
        let two = spawn(s.client.clone(), lease("replica-2"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !(one.is_leader() || two.is_leader()) {
            assert!(tokio::time::Instant::now() < deadline, "no leader elected");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (leader, follower, leader_id) = if one.is_leader() { (&one, &two, "replica-1") } else { (&two, &one, "replica-2") };
        let follower_id = if leader_id == "replica-1" { "replica-2" } else { "replica-1" };
        assert!(remediator(&s, &journal, follower_id).run_pending(Some(follower)).await.unwrap().is_empty(), "the follower must not act");

        let operator = tokio::spawn(play_cnpg(s.client.clone(), s.ns.clone(), s.healthy.clone()));
        let handled = remediator(&s, &journal, leader_id).run_pending(Some(leader)).await.unwrap();
        operator.abort();
        assert_eq!(handled, vec![run.id.clone()]);
        let done = journal.get(&run.id).await.unwrap().unwrap();
        assert_eq!(done.status.phase, Phase::Succeeded, "{:#?}", done.status);
        assert_eq!(done.status.leader.as_deref(), Some(leader_id));
        assert_eq!(done.status.approved_by.as_deref(), Some("alice"));
        assert!(done.status.steps.iter().all(|st| st.state == StepState::Succeeded));
        assert_eq!(done.status.progress(), "10/10");
        one.abort();
        two.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_leader_resumes_from_the_journal_and_abort_stops_a_run() {
        let s = scene("cnpg-journal-resume").await;
        let journal = Arc::new(Journal::cluster(s.client.clone(), s.ns.clone()));
        let snap = snapshot_of(&s.client).await;
        let config = RemediationConfig::default();
        let run = submit(&journal, &config, &snap.state, &snap.findings, "cnpg-instance-lost", trigger(&s), "test").await.unwrap();
        approve(&journal, &run.id, &run.spec.plan_hash, "alice", lifeboat::config::Dur::hours(1)).await.unwrap();

        // Replica A follows the promotion only; it dies while waiting for health.
        let promoter = tokio::spawn(play_promotions_only(s.client.clone(), s.ns.clone()));
        let a = remediator(&s, &journal, "replica-a");
        let first = tokio::spawn(async move { a.run_pending(None).await });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let journaled = loop {
            let r = journal.get(&run.id).await.unwrap().unwrap();
            if r.status.steps.iter().any(|st| st.id == "delete-pvc-postgres-1" && st.state == StepState::Succeeded) {
                break r;
            }
            assert!(tokio::time::Instant::now() < deadline, "{:#?}", r.status);
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        first.abort();
        promoter.abort();
        assert_eq!(journaled.status.phase, Phase::Running);
        let pvc_step = journaled.status.steps.iter().position(|st| st.id == "delete-pvc-postgres-1").unwrap();
        let pvc_deleted_at = journaled.status.steps[pvc_step].finished_at;

        // Replica B becomes leader and resumes; CNPG finishes re-creating the instance.
        let operator = tokio::spawn(play_cnpg(s.client.clone(), s.ns.clone(), s.healthy.clone()));
        let handled = remediator(&s, &journal, "replica-b").run_pending(None).await.unwrap();
        operator.abort();
        assert_eq!(handled, vec![run.id.clone()]);
        let done = journal.get(&run.id).await.unwrap().unwrap();
        assert_eq!(done.status.phase, Phase::Succeeded, "{:#?}", done.status);
        assert_eq!(done.status.leader.as_deref(), Some("replica-b"));
        assert_eq!(done.status.steps[pvc_step].finished_at, pvc_deleted_at, "the PVC deletion was not repeated");

        // Abort: a second run for the target, aborted before it is executed, never runs.
        let snap = snapshot_of(&s.client).await;
        let next =
            submit(&journal, &config, &snap.state, &snap.findings, "stale-cleanup", RunTrigger { namespace: Some(s.ns.clone()), ..Default::default() }, "test").await.unwrap();
        assert_eq!(next.status.phase, Phase::NothingToDo, "nothing orphaned here: {:#?}", next.status);
        let aborted = abort(&journal, &run.id, "bob").await.unwrap();
        assert_eq!(aborted.status.phase, Phase::Succeeded, "a finished run stays finished");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abort_stops_a_running_run_at_the_next_boundary() {
        let s = scene("cnpg-abort").await;
        let journal = Arc::new(Journal::cluster(s.client.clone(), s.ns.clone()));
        let snap = snapshot_of(&s.client).await;
        let run = submit(&journal, &RemediationConfig::default(), &snap.state, &snap.findings, "cnpg-instance-lost", trigger(&s), "test").await.unwrap();
        approve(&journal, &run.id, &run.spec.plan_hash, "alice", lifeboat::config::Dur::hours(1)).await.unwrap();
        // No operator: the promotion is requested and then waited for, forever.
        let r = remediator(&s, &journal, "replica-a");
        let running = tokio::spawn(async move { r.run_pending(None).await });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let r = journal.get(&run.id).await.unwrap().unwrap();
            if r.status.steps[1].state == StepState::Running {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{:#?}", r.status);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        abort(&journal, &run.id, "bob").await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), running).await.expect("the run stops after an abort").unwrap().unwrap();
        let done = journal.get(&run.id).await.unwrap().unwrap();
        assert_eq!(done.status.phase, Phase::Aborted, "{:#?}", done.status);
        assert!(done.status.steps.iter().filter(|st| st.id.contains("pvc") || st.id.starts_with("delete")).all(|st| st.state == StepState::NotRun), "{:#?}", done.status.steps);
        let pvcs = api_for(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns)).await;
        assert!(pvcs.get_opt("postgres-1").await.unwrap().is_some(), "nothing destructive ran");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_kill_switch_configmap_stops_every_replica() {
        let s = scene("cnpg-kill").await;
        let journal = Arc::new(Journal::cluster(s.client.clone(), s.ns.clone()));
        let snap = snapshot_of(&s.client).await;
        let run = submit(&journal, &RemediationConfig::default(), &snap.state, &snap.findings, "cnpg-instance-lost", trigger(&s), "test").await.unwrap();
        approve(&journal, &run.id, &run.spec.plan_hash, "alice", lifeboat::config::Dur::hours(1)).await.unwrap();
        lifeboat::act::kill_switch::engage(&s.client, &s.ns, "test", "maintenance").await.unwrap();
        assert!(remediator(&s, &journal, "a").run_pending(None).await.unwrap().is_empty(), "nothing starts while engaged");
        assert_eq!(journal.get(&run.id).await.unwrap().unwrap().status.phase, Phase::Approved, "the run waits");

        // Released: it runs; engaged again while it waits, it stops at the boundary.
        lifeboat::act::kill_switch::release(&s.client, &s.ns).await.unwrap();
        let r = remediator(&s, &journal, "a");
        let running = tokio::spawn(async move { r.run_pending(None).await });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while journal.get(&run.id).await.unwrap().unwrap().status.steps[1].state != StepState::Running {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        lifeboat::act::kill_switch::engage(&s.client, &s.ns, "test", "stop now").await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), running).await.expect("stops").unwrap().unwrap();
        let done = journal.get(&run.id).await.unwrap().unwrap();
        assert_eq!(done.status.phase, Phase::Aborted, "{:#?}", done.status);
        assert!(api_for(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns)).await.get_opt("postgres-1").await.unwrap().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leader_that_loses_the_lease_hands_the_run_over() {
        let s = scene("cnpg-handover").await;
        let journal = Arc::new(Journal::cluster(s.client.clone(), s.ns.clone()));
        let snap = snapshot_of(&s.client).await;
        let run = submit(&journal, &RemediationConfig::default(), &snap.state, &snap.findings, "cnpg-instance-lost", trigger(&s), "test").await.unwrap();
        approve(&journal, &run.id, &run.spec.plan_hash, "alice", lifeboat::config::Dur::hours(1)).await.unwrap();
        let lease = LeaderConfig {
            lease_duration: Duration::from_secs(2),
            renew_interval: Duration::from_millis(500),
            retry_interval: Duration::from_millis(200),
            ..LeaderConfig::new(s.ns.clone(), "replica-a")
        };
        let a = spawn(s.client.clone(), lease);
        a.wait_until_leader().await;
        // No operator: replica A promotes, then waits for the promotion.
        let (r, handle) = (remediator(&s, &journal, "replica-a"), a.clone());
        let running = tokio::spawn(async move { r.run_pending(Some(&handle)).await });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while journal.get(&run.id).await.unwrap().unwrap().status.steps[1].state != StepState::Running {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        a.abort(); // A loses the Lease (as if partitioned)
        tokio::time::timeout(Duration::from_secs(30), running).await.expect("A stops").unwrap().unwrap();
        let handed = journal.get(&run.id).await.unwrap().unwrap();
        assert_eq!(handed.status.phase, Phase::Running, "not over: {:#?}", handed.status);
        assert!(handed.status.message.as_deref().unwrap_or("").contains("next leader resumes"), "{:#?}", handed.status);
        assert_eq!(handed.status.steps[0].state, StepState::Succeeded);

        // B resumes it to the end.
        let operator = tokio::spawn(play_cnpg(s.client.clone(), s.ns.clone(), s.healthy.clone()));
        remediator(&s, &journal, "replica-b").run_pending(None).await.unwrap();
        operator.abort();
        let done = journal.get(&run.id).await.unwrap().unwrap();
        assert_eq!(done.status.phase, Phase::Succeeded, "{:#?}", done.status);
        assert_eq!(done.status.steps[0].finished_at, handed.status.steps[0].finished_at, "promote not repeated");
    }
}
