//! wal-archive-reset end to end on the real apiserver with the real CNPG CRDs,
//! the test playing CloudNativePG (re-creating restarted pods, reporting
//! archiving once the primary runs with the new serverName, running the
//! Backup) and Flux. Failure paths: the base backup fails; archiving does not
//! recover; an archiving failure a new serverName would not fix.

mod support;

use std::time::Duration;

use chrono::Utc;
use kube::Client;
use lifeboat::act::runner::{execute, Outcome, RunLimits, StepStatus, KEPT_SUSPENDED_ANNOTATION};
use lifeboat::config::Config;
use lifeboat::plan::playbooks::{plan, Trigger};
use lifeboat::plan::{Action, Plan};
use serde_json::{json, Value};
use support::controlplane::control_plane;
use support::fixtures::*;
use support::k8s::*;

const CLUSTER_API: &str = "postgresql.cnpg.io/v1";
const FLUX_API: &str = "kustomize.toolkit.fluxcd.io/v1";

fn instance_pod(ns: &str, node: &str, instance: &str) -> Value {
    let role = if instance == "postgres-1" { "primary" } else { "replica" };
    running(pod(ns, instance, node, &[instance], json!({"cnpg.io/cluster": "postgres", "cnpg.io/instanceName": instance, "cnpg.io/instanceRole": role}), None))
}

struct Scene {
    client: Client,
    ns: String,
    node: String,
}

/// A 2-instance cluster archiving through the barman-cloud plugin under
/// serverName `postgres`, failing with "Expected empty archive" since a
/// forced promotion; managed by a Flux Kustomization.
async fn scene(prefix: &str, archiver_error: &str) -> Scene {
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, prefix).await;
    let node = format!("{ns}-node");
    node_ready(&client, &node).await;
    create(&client, kustomization(&ns, "database", false, "True"), None).await;
    for instance in ["postgres-1", "postgres-2"] {
        create(&client, instance_pod(&ns, &node, instance), None).await;
    }
    let failing = json!({"type": "ContinuousArchiving", "status": "False", "reason": "ContinuousArchivingFailing",
                         "message": archiver_error, "lastTransitionTime": "2026-10-29T04:12:00Z"});
    let mut cluster = cnpg_cluster(&ns, "postgres", "postgres-1", vec![failing], "postgres");
    cluster["metadata"]["labels"] = json!({"kustomize.toolkit.fluxcd.io/name": "database", "kustomize.toolkit.fluxcd.io/namespace": ns});
    cluster["spec"]["instances"] = json!(2);
    cluster["spec"]["storage"] = json!({"size": "1Gi"});
    // A second plugin entry the reset must leave exactly as it is.
    cluster["spec"]["plugins"].as_array_mut().unwrap().push(json!({"name": "other.example.com", "enabled": false, "parameters": {"keep": "me"}}));
    create(&client, cluster, None).await;
    create(&client, object_store(&ns, "cnpg-garage", "postgres", "2026-01-01T00:00:00Z", "2026-03-21T00:00:00Z"), None).await;
    Scene { client, ns, node }
}

async fn live_plan(scene: &Scene) -> Plan {
    let config = Config { discovery_interval: lifeboat::config::Dur::secs(1), ..Config::default() };
    let snapshot = live_snapshot(&scene.client, &config).await;
    let trigger = Trigger { namespace: Some(scene.ns.clone()), name: Some("postgres".into()), node: None };
    plan("wal-archive-reset", &snapshot.state, &snapshot.findings, &trigger).expect("plans")
}

fn fast() -> RunLimits {
    RunLimits { poll_interval: Duration::from_millis(100), ..RunLimits::default() }
}

#[derive(Clone, Copy, PartialEq)]
enum Backups {
    Complete,
    Fail,
}

/// Plays CloudNativePG: re-creates a deleted instance pod; once the primary
/// was restarted after serverName changed, archiving works; Backups run.
async fn play_cnpg(client: Client, ns: String, node: String, archiving_recovers: bool, backups: Backups) {
    let pods = api_for(&client, "v1", "Pod", Some(&ns)).await;
    let original_primary_uid = pods.get("postgres-1").await.unwrap().metadata.uid;
    loop {
        for instance in ["postgres-1", "postgres-2"] {
            match pods.get_opt(instance).await.unwrap() {
                // The kubelet confirming a graceful deletion.
                Some(p) if p.metadata.deletion_timestamp.is_some() => {
                    let _ = pods.delete(instance, &kube::api::DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await;
                }
                Some(_) => {}
                None => {
                    create(&client, instance_pod(&ns, &node, instance), None).await;
                }
            }
        }
        let cluster = get(&client, CLUSTER_API, "Cluster", Some(&ns), "postgres").await;
        let server = cluster["spec"]["plugins"][0]["parameters"]["serverName"].clone();
        let primary_restarted = pods.get_opt("postgres-1").await.unwrap().is_some_and(|p| p.metadata.uid != original_primary_uid);
        if archiving_recovers && server == "postgres-r2" && primary_restarted {
            set_cnpg_archiving(&client, &ns, "postgres", true, Utc::now()).await;
        }
        let backups_api = api_for(&client, CLUSTER_API, "Backup", Some(&ns)).await;
        for backup in backups_api.list(&Default::default()).await.unwrap() {
            let name = backup.metadata.name.clone().unwrap();
            if backup.data["status"]["phase"].is_null() {
                let status = match backups {
                    Backups::Complete => json!({"phase": "completed", "backupId": "20261125T120000", "serverName": "postgres-r2"}),
                    Backups::Fail => json!({"phase": "failed", "error": "can't upload base backup: connection refused"}),
                };
                set_status(&client, CLUSTER_API, "Backup", Some(&ns), &name, status).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_the_archive_under_a_new_server_name_end_to_end() {
    let s = scene("walreset-e2e", "barman-cloud-check-wal-archive: ERROR: WAL archive check failed for server postgres: Expected empty archive").await;
    let plan = live_plan(&s).await;
    let ids: Vec<&str> = plan.steps.iter().map(|st| st.id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["suspend-flux", "set-server-name", "restart-postgres-2", "restart-postgres-1", "wait-archiving", "base-backup", "wait-backup"],
        "replicas restart before the primary"
    );
    assert_eq!(plan.follow_ups.len(), 1);
    assert!(
        plan.follow_ups[0].contains("serverName: postgres-r2") && plan.follow_ups[0].contains(&format!("flux resume kustomization database -n {}", s.ns)),
        "{:?}",
        plan.follow_ups
    );

    let before = get(&s.client, CLUSTER_API, "Cluster", Some(&s.ns), "postgres").await;
    let operator = tokio::spawn(play_cnpg(s.client.clone(), s.ns.clone(), s.node.clone(), true, Backups::Complete));
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    operator.abort();
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:#?}");

    let cluster = get(&s.client, CLUSTER_API, "Cluster", Some(&s.ns), "postgres").await;
    assert_eq!(cluster["spec"]["plugins"][0]["parameters"], json!({"barmanObjectName": "cnpg-garage", "serverName": "postgres-r2"}));
    assert_eq!(cluster["spec"]["plugins"][0]["isWALArchiver"], true);
    assert_eq!(cluster["spec"]["plugins"][1], before["spec"]["plugins"][1], "other plugins untouched");
    assert_eq!(cluster["spec"]["plugins"][1]["parameters"], json!({"keep": "me"}));
    assert_eq!(cluster["spec"]["storage"]["size"], "1Gi", "the rest of the spec untouched");
    let backup = get(&s.client, CLUSTER_API, "Backup", Some(&s.ns), "postgres-r2-base").await;
    assert_eq!(backup["spec"]["method"], "plugin");
    assert_eq!(backup["spec"]["cluster"]["name"], "postgres");

    let ks = get(&s.client, FLUX_API, "Kustomization", Some(&s.ns), "database").await;
    assert_eq!(ks["spec"]["suspend"], true, "stays suspended until serverName is in Git");
    let flag = ks["metadata"]["annotations"][KEPT_SUSPENDED_ANNOTATION].as_str().unwrap_or_default();
    assert!(flag.contains("wal-archive-reset") && flag.contains("serverName: postgres-r2"), "flagged with why: {flag:?}");
    assert_eq!(report.flux_left_suspended, vec![format!("Kustomization {}/database", s.ns)]);
    let detail = |id: &str| match &report.steps.iter().find(|st| st.id == id).unwrap().status {
        StepStatus::Succeeded { detail } => detail.clone(),
        other => panic!("{id}: {other:?}"),
    };
    assert!(detail("wait-backup").contains("20261125T120000"), "the journal names the backup");
    assert!(detail("wait-archiving").contains("ContinuousArchiving=True"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_base_backup_stops_the_run_and_says_why() {
    let s = scene("walreset-backup-fails", "Expected empty archive").await;
    let plan = live_plan(&s).await;
    let operator = tokio::spawn(play_cnpg(s.client.clone(), s.ns.clone(), s.node.clone(), true, Backups::Fail));
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    operator.abort();
    assert_eq!(report.outcome, Outcome::Stopped, "{report:#?}");
    let last = report.steps.last().unwrap();
    assert!(matches!(&last.status, StepStatus::Failed { error } if error.contains("connection refused")), "{last:#?}");
    assert_eq!(report.flux_left_suspended.len(), 1, "serverName changed: Flux must not revert it, failure or not");
    assert_eq!(report.remaining_commands().len(), 1, "only the wait is left: {:?}", report.remaining_commands());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiving_that_does_not_recover_times_out_before_any_backup() {
    let s = scene("walreset-no-recovery", "Expected empty archive").await;
    let mut plan = live_plan(&s).await;
    for step in &mut plan.steps {
        if let Action::Wait { timeout_seconds, .. } = &mut step.action {
            *timeout_seconds = 2;
        }
    }
    let operator = tokio::spawn(play_cnpg(s.client.clone(), s.ns.clone(), s.node.clone(), false, Backups::Complete));
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    operator.abort();
    assert_eq!(report.outcome, Outcome::Stopped, "{report:#?}");
    let status = |id: &str| report.steps.iter().find(|st| st.id == id).unwrap().status.clone();
    assert!(matches!(status("wait-archiving"), StepStatus::Failed { error } if error.contains("timed out")));
    assert_eq!(status("base-backup"), StepStatus::NotRun, "no base backup against a broken archive");
    let backups = api_for(&s.client, CLUSTER_API, "Backup", Some(&s.ns)).await;
    assert!(backups.list(&Default::default()).await.unwrap().items.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_archiver_errors_and_healthy_archiving_plan_nothing() {
    let s = scene("walreset-other-error", "can't connect to s3: 403 Forbidden").await;
    let plan = live_plan(&s).await;
    assert!(plan.nothing_to_do(), "{}", plan.render_text());
    assert!(plan.findings[0].contains("403 Forbidden") && plan.findings[0].contains("credentials"), "{:?}", plan.findings);

    set_cnpg_archiving(&s.client, &s.ns, "postgres", true, Utc::now()).await;
    let plan = live_plan(&s).await;
    assert!(plan.nothing_to_do() && plan.findings[0].contains("ContinuousArchiving is True"), "{:?}", plan.findings);
    let cluster = get(&s.client, CLUSTER_API, "Cluster", Some(&s.ns), "postgres").await;
    assert_eq!(cluster["spec"]["plugins"][0]["parameters"]["serverName"], "postgres");
}
