//! cnpg-instance-lost end to end on the real apiserver with the real CNPG CRD,
//! the test playing CloudNativePG and the kubelet. Failure paths: the node
//! comes back before a destructive step, a stale approval, a step that fails.

mod support;

use std::time::Duration;

use kube::Client;
use lifeboat::act::runner::{execute, Outcome, RunLimits, StepStatus};
use lifeboat::config::Config;
use lifeboat::plan::playbooks::{plan, Trigger};
use lifeboat::plan::Plan;
use lifeboat::snapshot::Snapshot;
use support::controlplane::control_plane;
use support::cnpg::*;
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
    assert_eq!(ids, vec!["promote", "wait-primary", "delete-pod-postgres-1", "delete-pvc-postgres-1", "wait-healthy", "verify-rw-endpoints"]);

    let operator = tokio::spawn(play_cnpg(s.client.clone(), s.ns.clone(), s.healthy.clone()));
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    operator.abort();
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:#?}");

    let cluster = get(&s.client, "postgresql.cnpg.io/v1", "Cluster", Some(&s.ns), "postgres").await;
    assert_eq!(cluster["status"]["currentPrimary"], "postgres-2");
    assert_eq!(cluster["spec"]["storage"]["size"], "1Gi", "spec untouched");
    let pvcs = api_for(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns)).await;
    assert!(pvcs.get_opt("postgres-1").await.unwrap().is_none(), "the lost instance's PVC is gone");
    assert!(pvcs.get_opt("postgres-2").await.unwrap().is_some() && pvcs.get_opt("postgres-3").await.unwrap().is_some());
    let pods = api_for(&s.client, "v1", "Pod", Some(&s.ns)).await;
    assert!(pods.get_opt("postgres-1").await.unwrap().is_none());

    // Idempotent: running the same plan again (as a resumed run would)
    // changes nothing: promote is a no-op, the deletes find nothing.
    let version = cluster["metadata"]["resourceVersion"].clone();
    let again = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    assert_eq!(again.outcome, Outcome::Succeeded, "{again:#?}");
    let details: Vec<String> = again.steps.iter().map(|st| match &st.status { StepStatus::Succeeded { detail } => detail.clone(), other => format!("{other:?}") }).collect();
    assert!(details[0].contains("already the target primary"), "{details:?}");
    assert!(details[2].contains("already gone") && details[3].contains("already gone"), "{details:?}");
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
    assert_eq!(left.len(), 5);
    assert!(left[1].contains("kubectl delete pod postgres-1") && left[1].contains("--force"));
    assert!(api_for(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns)).await.get_opt("postgres-1").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_is_resumed_without_repeating_destructive_steps() {
    use std::sync::{Arc, Mutex};
    use lifeboat::act::runner::{fresh_report, resume, RunReport};
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
        let done = journal.lock().unwrap().steps.iter().filter(|st| matches!(st.status, StepStatus::Succeeded { .. })).count();
        if done == 4 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "first run did not get to wait-healthy: {:#?}", journal.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.abort();
    promoter.abort();
    let saved = journal.lock().unwrap().clone();
    let deleted_at = saved.steps[3].finished;
    let promoted_at = saved.steps[0].finished;

    // CNPG re-creates the instance; a second lifeboat resumes from the journal.
    let operator = tokio::spawn(play_cnpg(s.client.clone(), s.ns.clone(), s.healthy.clone()));
    let writes_before = get(&s.client, "postgresql.cnpg.io/v1", "Cluster", Some(&s.ns), "postgres").await;
    let resumed = resume(&s.client, &plan, &plan.hash(), &fast(), saved, &|_| {}).await;
    operator.abort();
    assert_eq!(resumed.outcome, Outcome::Succeeded, "{resumed:#?}");
    assert_eq!(resumed.steps[3].finished, deleted_at, "the PVC deletion was not run again");
    assert_eq!(resumed.steps[0].finished, promoted_at, "promote not run again");
    assert!(resumed.steps[4].started.unwrap() > deleted_at.unwrap(), "only the wait ran in the second instance");
    assert_eq!(writes_before["status"]["targetPrimary"], "postgres-2");
}

mod journaled {
    //! The same playbook driven through the journal and leader election, as
    //! `serve` runs it: submit → approve (hash-bound) → the leader executes.

    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use lifeboat::act::remediator::{abort, approve, submit, RemediationError, Remediator};
    use lifeboat::config::RemediationConfig;
    use lifeboat::journal::{Journal, Phase, RunTrigger, StepState};
    use lifeboat::leader::{spawn, LeaderConfig};

    async fn snapshot_of(client: &Client) -> Snapshot {
        let config = Config { discovery_interval: lifeboat::config::Dur::secs(1), ..Config::default() };
        let hub = lifeboat::cli::start_live_hub(config.clone(), client.clone());
        lifeboat::cli::wait_ready(&hub, Duration::from_secs(60)).await.unwrap();
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
        assert_eq!(done.status.progress(), "6/6");
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
            if r.status.steps.iter().filter(|st| st.state == StepState::Succeeded).count() == 4 {
                break r;
            }
            assert!(tokio::time::Instant::now() < deadline, "{:#?}", r.status);
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        first.abort();
        promoter.abort();
        assert_eq!(journaled.status.phase, Phase::Running);
        let pvc_deleted_at = journaled.status.steps[3].finished_at;

        // Replica B becomes leader and resumes; CNPG finishes re-creating the instance.
        let operator = tokio::spawn(play_cnpg(s.client.clone(), s.ns.clone(), s.healthy.clone()));
        let handled = remediator(&s, &journal, "replica-b").run_pending(None).await.unwrap();
        operator.abort();
        assert_eq!(handled, vec![run.id.clone()]);
        let done = journal.get(&run.id).await.unwrap().unwrap();
        assert_eq!(done.status.phase, Phase::Succeeded, "{:#?}", done.status);
        assert_eq!(done.status.leader.as_deref(), Some("replica-b"));
        assert_eq!(done.status.steps[3].finished_at, pvc_deleted_at, "the PVC deletion was not repeated");

        // Abort: a second run for the target, aborted before it is executed, never runs.
        let snap = snapshot_of(&s.client).await;
        let next = submit(&journal, &config, &snap.state, &snap.findings, "stale-cleanup", RunTrigger { namespace: Some(s.ns.clone()), ..Default::default() }, "test").await.unwrap();
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
        assert!(done.status.steps[2..].iter().all(|st| st.state == StepState::NotRun), "{:#?}", done.status.steps);
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
