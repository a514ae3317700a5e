//! The run journal: RemediationRun custom resources on the real apiserver
//! (deploy/crds/remediationrun.yaml, installed here) and the file backend,
//! held to the same behaviour.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use lifeboat::act::runner::{Outcome, RunReport, StepReport, StepStatus};
use lifeboat::journal::{api_resource, AlertRef, FileJournal, Journal, JournalError, Mode, Phase, RunRecord, RunStatus, RunTrigger, StepState, CRD_FILE, CRD_NAME};
use lifeboat::plan::{Action, ObjectRef, Plan, Step};
use serde_json::{json, Value};
// Private (holding back the journal CRD): the journal is tested without it, then installs it.
use support::controlplane::{control_plane_holding_back, ControlPlane};

/// This binary installs the journal CRD itself, after checking the errors
/// lifeboat gives while it is missing.
fn control_plane() -> &'static ControlPlane {
    control_plane_holding_back(&[CRD_NAME])
}

// ---------------------------------------------------------------- fixtures

fn example_plan() -> Plan {
    let (state, _) = lifeboat::cluster::dump::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node-loss").as_path()).unwrap();
    let snap = lifeboat::snapshot::Snapshot::build(state, &Default::default(), &Default::default());
    let plan = lifeboat::plan::playbooks::plan(
        "cnpg-instance-lost",
        &snap.state,
        &snap.findings,
        &lifeboat::plan::playbooks::Trigger { namespace: Some("database".into()), name: Some("postgres".into()), node: None },
    )
    .unwrap();
    assert!(plan.steps.len() >= 3, "the example plan has steps: {}", plan.render_text());
    plan
}

/// The example plan re-aimed at another target (another hash, another id).
/// A plan that changes one pod of its own.
fn plan_touching(target: &str, pod: &str) -> Plan {
    let step = Step {
        id: "restart".into(),
        title: "restart".into(),
        action: Action::RestartPod { pod: ObjectRef::pod("shop", pod) },
        needs: vec![],
        preconditions: vec![],
        recovery_source: None,
    };
    Plan { steps: vec![step], ..Plan::new("cnpg-instance-lost", target) }
}

fn plan_for(target: &str) -> Plan {
    let mut plan = example_plan();
    plan.target = target.into();
    plan
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).unwrap()
}

fn alert_trigger() -> RunTrigger {
    RunTrigger {
        namespace: Some("database".into()),
        name: Some("postgres".into()),
        node: None,
        alert: Some(AlertRef { fingerprint: "5f1c0ffee0ddba11".into(), starts_at: at(1_700_000_000), alertname: "LifeboatNodeLost".into() }),
    }
}

fn record(plan: &Plan, now: DateTime<Utc>) -> RunRecord {
    RunRecord::new(plan, alert_trigger(), Mode::Approve, "alertmanager", now)
}

fn step_report(plan: &Plan, i: usize, status: StepStatus, t: i64) -> StepReport {
    let step = &plan.steps[i];
    let ran = !matches!(status, StepStatus::NotRun);
    StepReport { id: step.id.clone(), title: step.title.clone(), command: step.command(), status, started: ran.then(|| at(t)), finished: ran.then(|| at(t + 5)) }
}

/// A report where step 0 succeeded, step 1 failed and the rest did not run.
fn failed_at_second_step(plan: &Plan) -> RunReport {
    let steps = (0..plan.steps.len())
        .map(|i| match i {
            0 => step_report(plan, i, StepStatus::Succeeded { detail: "done".into() }, 1_700_000_100),
            1 => step_report(plan, i, StepStatus::Failed { error: "boom".into() }, 1_700_000_200),
            _ => step_report(plan, i, StepStatus::NotRun, 0),
        })
        .collect();
    RunReport { plan_hash: plan.hash(), outcome: Outcome::Stopped, reason: Some("step 2 did not succeed".into()), steps, flux_left_suspended: vec![], awaiting_phase: None }
}

/// What a backend stores for a record it was given: observedGeneration 1.
fn as_stored(mut status: RunStatus) -> RunStatus {
    status.observed_generation.get_or_insert(1);
    status
}

// ------------------------------------------------------- the shared behaviour

/// What every journal backend must do; `journal` starts empty.
async fn behaves_like_a_journal(journal: &Journal) {
    let plan = example_plan();
    let now = Utc::now();

    // create → get round trip.
    let rec = record(&plan, now);
    assert!(rec.id.starts_with(&format!("cnpg-instance-lost-{}-", &plan.hash()[..8])), "{}", rec.id);
    assert!(rec.id.ends_with(&format!("-{}", now.timestamp_millis())), "{}", rec.id);
    assert_eq!(rec.status.phase, Phase::AwaitingApproval);
    assert!(rec.status.steps.iter().all(|s| s.state == StepState::Pending));
    let created = journal.create(&rec).await.expect("create");
    assert_eq!(created.id, rec.id);
    assert_eq!(created.spec, rec.spec);
    assert_eq!(created.status, as_stored(rec.status.clone()));
    let got = journal.get(&rec.id).await.unwrap().expect("created record is there");
    assert_eq!(got, created);
    assert_eq!(got.spec.plan, plan, "the full plan survives the round trip");
    assert_eq!(got.spec.plan.hash(), got.spec.plan_hash);
    assert_eq!(got.spec.trigger, alert_trigger());

    // create is create-only.
    let again = journal.create(&rec).await.expect_err("second create");
    assert!(matches!(&again, JournalError::AlreadyExists { id, .. } if id == &rec.id), "{again}");
    assert!(again.to_string().contains(&rec.id), "{again}");

    // get of an absent run, bad ids.
    assert!(journal.get("cnpg-instance-lost-00000000-1").await.unwrap().is_none());
    for bad in ["../escape", "UPPER", "", "a/b", "-lead"] {
        let e = journal.get(bad).await.expect_err(bad);
        assert!(matches!(e, JournalError::InvalidId { .. }), "{bad}: {e}");
    }

    // Status updates persist, leave the spec alone, and can clear fields.
    let mut status = got.status.clone();
    status.approve("alice", &plan.hash(), at(1_700_000_050));
    status.start("lifeboat-0", at(1_700_000_060));
    let running = journal.update_status(&rec.id, &status).await.expect("status update");
    assert_eq!(running.status, as_stored(status.clone()));
    assert_eq!(running.spec, rec.spec);
    status.apply_report(&failed_at_second_step(&plan));
    assert_eq!(status.phase, Phase::Failed);
    status.message = None;
    let failed = journal.update_status(&rec.id, &status).await.expect("status update");
    let reread = journal.get(&rec.id).await.unwrap().unwrap();
    assert_eq!(reread, failed);
    assert_eq!(reread.status, as_stored(status.clone()));
    assert_eq!(reread.status.message, None, "a field set to None is removed");
    assert_eq!(reread.spec, rec.spec, "a status update never touches the spec");
    assert_eq!(reread.status.steps[0].state, StepState::Succeeded);
    assert_eq!(reread.status.steps[1].state, StepState::Failed);
    assert_eq!(reread.status.steps[1].detail.as_deref(), Some("boom"));
    assert_eq!(reread.status.approved_by.as_deref(), Some("alice"));
    assert_eq!(reread.status.leader.as_deref(), Some("lifeboat-0"));
    assert_eq!(reread.next_step().map(|s| s.id.as_str()), Some(plan.steps[1].id.as_str()), "resume at the failed step");
    assert!(reread.is_terminal());
    let previous = reread.to_report();
    assert_eq!(previous.steps[0].status, StepStatus::Succeeded { detail: "done".into() });
    assert_eq!(previous.steps[0].finished, Some(at(1_700_000_105)));
    assert!(previous.steps[1..].iter().all(|s| s.status == StepStatus::NotRun));

    // update_status_with: None leaves the record as it is.
    let same = journal.update_status_with(&rec.id, |_| None).await.unwrap();
    assert_eq!(same, reread);

    // Updating a run that does not exist.
    let e = journal.update_status("cnpg-instance-lost-00000000-1", &status).await.expect_err("absent run");
    assert!(matches!(e, JournalError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("cnpg-instance-lost-00000000-1"), "{e}");

    // list: newest (requestedAt) first.
    let older = journal.create(&record(&plan_for("Cluster other/a"), now - chrono::Duration::hours(2))).await.unwrap();
    let newest = journal.create(&record(&plan_for("Cluster other/b"), now + chrono::Duration::hours(1))).await.unwrap();
    let ids: Vec<String> = journal.list().await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![newest.id.clone(), rec.id.clone(), older.id.clone()]);

    // find_active: one active run per target and per changed object;
    // terminal runs do not count.
    let target = "Cluster shop/orders";
    let shop = plan_touching(target, "orders-0");
    assert!(journal.find_active(&shop).await.unwrap().is_none());
    let active = journal.create(&record(&shop, now - chrono::Duration::minutes(30))).await.unwrap();
    let mut running = active.status.clone();
    running.approve("bob", &shop.hash(), now);
    running.start("lifeboat-1", now);
    journal.update_status(&active.id, &running).await.unwrap();
    let mut done = record(&shop, now - chrono::Duration::minutes(10));
    done.status.phase = Phase::Succeeded;
    journal.create(&done).await.unwrap();
    let observed = journal.create(&RunRecord::new(&shop, RunTrigger::default(), Mode::Observe, "cli", now)).await.unwrap();
    assert_eq!(observed.status.phase, Phase::Stopped, "observe mode only records");
    let found = journal.find_active(&plan_touching(target, "orders-1")).await.unwrap().expect("the running run");
    assert_eq!(found.id, active.id);
    assert_eq!(found.status.phase, Phase::Running);
    assert!(journal.find_active(&plan_touching("Cluster database/postgres", "elsewhere")).await.unwrap().is_none(), "its only run failed");
    assert!(journal.find_active(&plan_touching("Cluster other/a", "elsewhere")).await.unwrap().is_some(), "awaiting approval is active");
    let same_objects = journal.find_active(&plan_for("Node node-01-pve")).await.unwrap().expect("a run changing the same objects");
    assert!(same_objects.spec.target.starts_with("Cluster other/"), "{}", same_objects.spec.target);
    assert!(journal.find_active(&plan_touching(target, "orders-0")).await.unwrap().is_some(), "same objects as the running run");
    let finished = journal
        .update_status_with(&active.id, |current| {
            let mut s = current.status.clone();
            s.phase = Phase::Succeeded;
            Some(s)
        })
        .await
        .unwrap();
    assert!(finished.is_terminal());
    assert!(journal.find_active(&shop).await.unwrap().is_none());
    assert_eq!(journal.list().await.unwrap().len(), 6);
}

// ------------------------------------------------------------ the CRD

/// The journal CRD, installed once per test binary with server-side apply.
/// Before installing it, the first caller records what the journal says
/// without it (every test shares one apiserver, and a CRD is cluster-wide).
async fn journal_crd(cp: &'static ControlPlane) -> &'static str {
    static MISSING: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    MISSING
        .get_or_init(|| async move {
            let client = cp.admin_client();
            let ns = cp.namespace(&client, "journal-nocrd").await;
            let missing = without_crd(Journal::cluster(client.clone(), ns)).await;
            install_crd(&client).await;
            missing
        })
        .await
}

/// Every operation on a cluster without the CRD fails with CrdMissing.
async fn without_crd(journal: Journal) -> String {
    let rec = record(&example_plan(), Utc::now());
    let mut messages = Vec::new();
    let errors = [
        journal.create(&rec).await.map(|_| ()).expect_err("create without the CRD"),
        journal.get(&rec.id).await.map(|_| ()).expect_err("get without the CRD"),
        journal.list().await.map(|_| ()).expect_err("list without the CRD"),
        journal.update_status(&rec.id, &rec.status).await.map(|_| ()).expect_err("update without the CRD"),
        journal.find_active(&rec.spec.plan).await.map(|_| ()).expect_err("find_active without the CRD"),
    ];
    for e in errors {
        assert!(matches!(e, JournalError::CrdMissing { .. }), "{e:?}");
        messages.push(e.to_string());
    }
    messages.dedup();
    assert_eq!(messages.len(), 1, "{messages:?}");
    messages.remove(0)
}

async fn install_crd(client: &Client) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(CRD_FILE);
    let crd: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(crd["metadata"]["name"], CRD_NAME);
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(CRD_NAME, &PatchParams::apply("lifeboat-tests").force(), &Patch::Apply(&crd)).await.expect("the CRD installs");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let established =
            crds.get(CRD_NAME).await.ok().and_then(|c| c.status).and_then(|s| s.conditions).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"));
        let served = established && client.list_api_group_resources("lifeboat.dev/v1alpha1").await.is_ok_and(|l| l.resources.iter().any(|r| r.name == "remediationruns"));
        if served {
            return;
        }
        assert!(Instant::now() < deadline, "CRD {CRD_NAME} not established/served after 60s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn cluster_journal(prefix: &str) -> (Client, String, Journal) {
    let cp = control_plane();
    journal_crd(cp).await;
    let client = cp.admin_client();
    let ns = cp.namespace(&client, prefix).await;
    (client.clone(), ns.clone(), Journal::cluster(client, ns))
}

fn raw_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &api_resource())
}

// ------------------------------------------------------------ cluster tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_journal_behaves_like_a_journal() {
    let (client, ns, journal) = cluster_journal("journal").await;
    behaves_like_a_journal(&journal).await;
    // Every object is in the journal's namespace, printable as "n/m".
    for run in journal.list().await.unwrap() {
        assert_eq!(run.namespace.as_deref(), Some(ns.as_str()));
        let raw = raw_api(&client, &ns).get(&run.id).await.unwrap();
        assert_eq!(raw.data["status"]["progress"], run.status.progress());
        assert_eq!(raw.metadata.labels.unwrap()["lifeboat.dev/playbook"], "cnpg-instance-lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_goes_through_the_subresource_and_the_spec_is_immutable() {
    let (client, ns, journal) = cluster_journal("journal-immutable").await;
    let plan = example_plan();
    let rec = journal.create(&record(&plan, Utc::now())).await.unwrap();
    let raw = raw_api(&client, &ns);
    let before = raw.get(&rec.id).await.unwrap();
    assert_eq!(before.metadata.generation, Some(1));
    assert_eq!(before.data["status"]["progress"], format!("0/{}", plan.steps.len()));

    // A status write, even one that tries to carry a spec change, changes only the status.
    let mut status = rec.status.clone();
    status.apply_report(&failed_at_second_step(&plan));
    let updated = journal.update_status(&rec.id, &status).await.unwrap();
    raw.patch_status(&rec.id, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"target": "Cluster evil/x"}, "status": {"leader": "x"}}))).await.unwrap();
    let after = raw.get(&rec.id).await.unwrap();
    assert_eq!(after.data["spec"], before.data["spec"], "the status subresource never writes the spec");
    assert_eq!(after.metadata.generation, Some(1));
    assert_eq!(after.data["status"]["progress"], format!("1/{}", plan.steps.len()));
    assert_eq!(after.data["status"]["phase"], "Failed");
    assert_eq!(updated.status.observed_generation, Some(1));

    // The spec, top-level or deep inside the plan, cannot be changed: the CEL rule refuses.
    for patch in [
        json!({"spec": {"target": "Cluster evil/x"}}),
        json!({"spec": {"planHash": "0000"}}),
        json!({"spec": {"plan": {"steps": []}}}),
        json!({"spec": {"trigger": {"node": "n1"}}}),
    ] {
        match raw.patch(&rec.id, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{patch}: {s:?}");
                assert!(s.message.contains("spec is immutable"), "{patch}: {}", s.message);
            }
            other => panic!("{patch}: a spec change went through: {other:?}"),
        }
    }
    // Metadata is not spec: labels may still change.
    raw.patch(&rec.id, &PatchParams::default(), &Patch::Merge(&json!({"metadata": {"labels": {"team": "db"}}}))).await.expect("labels change");
    assert_eq!(journal.get(&rec.id).await.unwrap().unwrap().spec, rec.spec);

    // The schema refuses what the enums do not allow.
    let bad = raw.patch_status(&rec.id, &PatchParams::default(), &Patch::Merge(&json!({"status": {"phase": "Exploded"}}))).await;
    assert!(matches!(bad, Err(kube::Error::Api(s)) if s.code == 422));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_status_writer_causes_a_409_and_a_retry_from_fresh_state() {
    let (_client, ns, journal) = cluster_journal("journal-conflict").await;
    let plan = example_plan();
    let rec = journal.create(&record(&plan, Utc::now())).await.unwrap();

    let calls = AtomicU32::new(0);
    let updated = journal
        .update_status_with(&rec.id, |current| {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                // Another writer (its own client and runtime: this one is busy
                // in the closure) approves the run between our read and our write.
                std::thread::scope(|s| {
                    s.spawn(|| {
                        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
                            let other = Journal::cluster(control_plane().admin_client(), ns.clone());
                            other
                                .update_status_with(&rec.id, |c| {
                                    let mut s = c.status.clone();
                                    s.approve("carol", &c.spec.plan_hash, at(1_700_000_000));
                                    Some(s)
                                })
                                .await
                                .expect("concurrent writer")
                        })
                    });
                });
            }
            let mut s = current.status.clone();
            s.start("lifeboat-0", at(1_700_000_001));
            Some(s)
        })
        .await
        .expect("retried after the conflict");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the first write conflicted (409) and was recomputed from fresh state");
    assert_eq!(updated.status.phase, Phase::Running);
    assert_eq!(updated.status.approved_by.as_deref(), Some("carol"), "the concurrent writer's approval is kept");
    assert_eq!(updated.status.leader.as_deref(), Some("lifeboat-0"));
    assert_eq!(journal.get(&rec.id).await.unwrap().unwrap(), updated);

    // A writer that always loses gives up with a clear Conflict error.
    let e = journal
        .update_status_with(&rec.id, |current| {
            std::thread::scope(|s| {
                s.spawn(|| {
                    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
                        let raw = raw_api(&control_plane().admin_client(), &ns);
                        let n = chrono::Utc::now().timestamp_nanos_opt().unwrap();
                        raw.patch_status(&rec.id, &PatchParams::default(), &Patch::Merge(&json!({"status": {"message": format!("noise {n}")}}))).await.expect("noise")
                    })
                });
            });
            Some(current.status.clone())
        })
        .await
        .expect_err("never wins");
    assert!(matches!(e, JournalError::Conflict { attempts: 5, .. }), "{e}");
    assert!(e.to_string().contains(&rec.id) && e.to_string().contains("only one lifeboat leader"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_crd_the_journal_says_to_install_it() {
    let message = journal_crd(control_plane()).await;
    assert!(message.contains(CRD_FILE), "{message}");
    assert!(message.contains(CRD_NAME), "{message}");
    assert!(message.contains("kubectl apply --server-side -f deploy/crds/remediationrun.yaml"), "{message}");
    assert!(message.contains("journal-nocrd"), "names the namespace: {message}");
}

// ------------------------------------------------------------ file tests

#[tokio::test]
async fn file_journal_behaves_like_a_journal_and_survives_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let journal_dir = dir.path().join("runs"); // created on first write
    let journal = Journal::file(&journal_dir);
    assert!(journal.list().await.unwrap().is_empty(), "a missing directory is an empty journal");
    behaves_like_a_journal(&journal).await;
    let before = journal.list().await.unwrap();

    // A crash mid-write leaves only a temporary file behind; it is ignored.
    std::fs::write(journal_dir.join(".cnpg-instance-lost-00000000-1.json.tmp-1-0"), b"{\"half").unwrap();
    let reloaded = Journal::File(FileJournal::new(&journal_dir));
    assert_eq!(reloaded.list().await.unwrap(), before);
    for run in &before {
        assert_eq!(reloaded.get(&run.id).await.unwrap().as_ref(), Some(run));
        let on_disk: Value = serde_json::from_slice(&std::fs::read(journal_dir.join(format!("{}.json", run.id))).unwrap()).unwrap();
        assert_eq!(on_disk["id"], run.id.as_str());
        assert_eq!(on_disk["status"]["progress"], run.status.progress(), "files carry the same fields as the CRD");
        assert_eq!(on_disk["spec"]["planHash"], run.spec.plan_hash.as_str());
    }
    let names: Vec<String> = std::fs::read_dir(&journal_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.iter().filter(|n| n.contains(".tmp-") && !n.contains("00000000")).count(), 0, "no temporary file is left: {names:?}");

    // A file that is not a record is skipped by the listing (the other runs
    // go on) and reported with its path; reading it by id names it.
    std::fs::write(journal_dir.join("broken-1.json"), b"not json").unwrap();
    assert_eq!(reloaded.list().await.unwrap(), before);
    let listing = reloaded.list_all().await.unwrap();
    assert_eq!(listing.undecodable.len(), 1);
    let e = &listing.undecodable[0];
    assert!(matches!(e, JournalError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("broken-1.json"), "{e}");
    let e = reloaded.get("broken-1").await.expect_err("a corrupt record");
    assert!(e.to_string().contains("broken-1.json"), "{e}");
}

#[tokio::test]
async fn file_journal_in_an_unwritable_place_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let journal = Journal::file(file.join("runs"));
    let e = journal.create(&record(&example_plan(), Utc::now())).await.expect_err("not a directory");
    assert!(matches!(e, JournalError::Io { .. }), "{e}");
    assert!(e.to_string().contains(&file.display().to_string()), "{e}");
}

// ------------------------------------------------------------ pure record logic

#[test]
fn new_records_follow_the_mode() {
    let plan = example_plan();
    let now = at(1_700_000_000);
    let approve = RunRecord::new(&plan, RunTrigger::from(&lifeboat::plan::playbooks::Trigger::default()), Mode::Approve, "cli", now);
    assert_eq!(approve.id, format!("cnpg-instance-lost-{}-1700000000000", &plan.hash()[..8]));
    assert_eq!(approve.status.phase, Phase::AwaitingApproval);
    assert_eq!(approve.status.steps.len(), plan.steps.len());
    for (record, step) in approve.status.steps.iter().zip(&plan.steps) {
        assert_eq!((record.id.as_str(), record.title.as_str(), record.command.clone()), (step.id.as_str(), step.title.as_str(), step.command()));
        assert_eq!(record.state, StepState::Pending);
    }
    assert_eq!(approve.next_step().unwrap().id, plan.steps[0].id);
    assert!(!approve.is_terminal());
    assert_eq!(approve.status.progress(), format!("0/{}", plan.steps.len()));

    let auto = RunRecord::new(&plan, RunTrigger::default(), Mode::Auto, "alertmanager", now);
    assert_eq!(auto.status.phase, Phase::Approved);
    assert_eq!(auto.status.approved_hash.as_deref(), Some(plan.hash().as_str()));

    let observe = RunRecord::new(&plan, RunTrigger::default(), Mode::Observe, "alertmanager", now);
    assert!(observe.is_terminal());
    assert!(observe.status.steps.iter().all(|s| s.state == StepState::NotRun));

    let empty = Plan { steps: vec![], ..plan.clone() };
    let nothing = RunRecord::new(&empty, RunTrigger::default(), Mode::Auto, "cli", now);
    assert_eq!(nothing.status.phase, Phase::NothingToDo);
    assert!(nothing.is_terminal() && nothing.next_step().is_none());

    // The record's JSON is the CRD's: camelCase, enums as the CRD spells them.
    let json = serde_json::to_value(&auto).unwrap();
    assert_eq!(json["spec"]["mode"], "auto");
    assert_eq!(json["spec"]["requestedBy"], "alertmanager");
    assert_eq!(json["status"]["phase"], "Approved");
    assert_eq!(json["status"]["steps"][0]["state"], "Pending");
    assert_eq!(json["spec"]["planHash"], plan.hash());
}

#[test]
fn reports_map_onto_the_status_and_a_resume_keeps_earlier_successes() {
    let plan = example_plan();
    let n = plan.steps.len();
    let mut rec = record(&plan, at(1_700_000_000));
    rec.status.start("lifeboat-0", at(1_700_000_090));

    // Failed at step 2: Failed, resume point step 2.
    rec.status.apply_report(&failed_at_second_step(&plan));
    assert_eq!(rec.status.phase, Phase::Failed);
    assert_eq!(rec.status.message.as_deref(), Some("step 2 did not succeed"));
    let states: Vec<StepState> = rec.status.steps.iter().map(|s| s.state).collect();
    let mut expected = vec![StepState::Succeeded, StepState::Failed];
    expected.resize(n, StepState::NotRun);
    assert_eq!(states, expected);
    assert_eq!(rec.status.steps[0].detail.as_deref(), Some("done"));
    assert_eq!(rec.status.steps[1].started_at, Some(at(1_700_000_200)));
    assert_eq!(rec.status.started_at, Some(at(1_700_000_090)), "the first start is kept");
    assert_eq!(rec.status.finished_at, Some(at(1_700_000_205)));
    assert_eq!(rec.next_step().unwrap().id, plan.steps[1].id);
    assert_eq!(rec.status.progress(), format!("1/{n}"));

    // A refusal stops the run (Stopped, not Failed).
    let mut refused = record(&plan, at(1_700_000_000));
    let mut report = failed_at_second_step(&plan);
    report.steps[1].status = StepStatus::Refused { reason: "node is Ready".into() };
    refused.status.apply_report(&report);
    assert_eq!(refused.status.phase, Phase::Stopped);
    assert_eq!(refused.status.steps[1].state, StepState::Refused);
    assert_eq!(refused.status.steps[1].detail.as_deref(), Some("node is Ready"));

    // Resumed from step 2: the report does not run step 1 again, which stays Succeeded.
    let resumed = RunReport {
        plan_hash: plan.hash(),
        outcome: Outcome::Succeeded,
        reason: None,
        steps: (0..n)
            .map(|i| {
                if i == 0 {
                    step_report(&plan, i, StepStatus::NotRun, 0)
                } else {
                    step_report(&plan, i, StepStatus::Succeeded { detail: "ok".into() }, 1_700_001_000 + i as i64 * 10)
                }
            })
            .collect(),
        flux_left_suspended: vec![],
        awaiting_phase: None,
    };
    rec.status.start("lifeboat-1", at(1_700_000_999));
    rec.status.apply_report(&resumed);
    assert_eq!(rec.status.phase, Phase::Succeeded);
    assert!(rec.status.steps.iter().all(|s| s.state == StepState::Succeeded), "{:#?}", rec.status.steps);
    assert_eq!(rec.status.steps[0].detail.as_deref(), Some("done"), "the first run's detail is kept");
    assert!(rec.next_step().is_none() && rec.is_terminal());
    assert_eq!(rec.status.leader.as_deref(), Some("lifeboat-1"));
    assert_eq!(rec.status.progress(), format!("{n}/{n}"));

    // Progress reports (the runner's callback, mid-run) touch only the steps:
    // started and unfinished is Running, not yet started is Pending.
    let mut mid = record(&plan, at(1_700_000_000));
    mid.status.approve("alice", &plan.hash(), at(1_700_000_001));
    mid.status.start("lifeboat-0", at(1_700_000_002));
    let mut progress = lifeboat::act::runner::fresh_report(&plan);
    progress.steps[0] = step_report(&plan, 0, StepStatus::Succeeded { detail: "promoted".into() }, 1_700_000_010);
    progress.steps[1].started = Some(at(1_700_000_020));
    mid.status.apply_progress(&progress);
    assert_eq!(mid.status.phase, Phase::Running, "progress does not decide the phase");
    assert_eq!(mid.status.finished_at, None);
    let states: Vec<StepState> = mid.status.steps.iter().map(|s| s.state).collect();
    let mut expected = vec![StepState::Succeeded, StepState::Running];
    expected.resize(n, StepState::Pending);
    assert_eq!(states, expected);
    assert_eq!(mid.status.progress(), format!("1/{n}"));

    // The leader dies here; its successor resumes from the record: the
    // succeeded step (with its times) is done, everything else runs again.
    let previous = mid.to_report();
    assert_eq!(previous.plan_hash, plan.hash());
    assert_eq!(previous.steps.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), plan.steps.iter().map(|s| s.id.as_str()).collect::<Vec<_>>());
    assert_eq!(previous.steps[0].status, StepStatus::Succeeded { detail: "promoted".into() });
    assert_eq!(previous.steps[0].finished, Some(at(1_700_000_015)));
    assert!(previous.steps[1..].iter().all(|s| s.status == StepStatus::NotRun && s.started.is_none()), "{previous:#?}");

    // A final report never leaves a step Running.
    let mut killed = failed_at_second_step(&plan);
    killed.steps[1] = StepReport { status: StepStatus::NotRun, finished: None, ..killed.steps[1].clone() };
    killed.outcome = Outcome::Aborted;
    mid.status.apply_report(&killed);
    assert_eq!(mid.status.steps[1].state, StepState::NotRun);
    assert_eq!(mid.status.steps[1].started_at, None);
    assert_eq!(mid.status.phase, Phase::Aborted);

    // Outcomes without steps run.
    for (outcome, phase) in [(Outcome::Rejected, Phase::Rejected), (Outcome::NothingToDo, Phase::NothingToDo), (Outcome::Aborted, Phase::Aborted)] {
        let mut r = record(&plan, at(1_700_000_000));
        let steps = (0..n).map(|i| step_report(&plan, i, StepStatus::NotRun, 0)).collect();
        r.status.apply_report(&RunReport { plan_hash: plan.hash(), outcome, reason: Some("why".into()), steps, flux_left_suspended: vec![], awaiting_phase: None });
        assert_eq!(r.status.phase, phase);
        assert!(r.is_terminal() && r.status.finished_at.is_some());
        assert_eq!(r.status.message.as_deref(), Some("why"));
    }
}
