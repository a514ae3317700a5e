//! The intake's index of alert instances (src/alerts/index.rs) against the
//! cluster journal on the real apiserver: what each delivery reads (counted
//! by the intake: full listings, listings of one alert's runs, reads of one
//! run) and that skipping a read never creates a second run nor misses a
//! resolution, also for runs another replica or a human created behind this
//! replica's index. Each intake is a replica of its own (own hub, own index)
//! serving the webhook router over HTTP, the example incident as snapshot.

mod support;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::Api;
use lifeboat::alerts::{default_routes, routes, Intake, IntakeCounters};
use lifeboat::config::Config;
use lifeboat::journal::{api_resource, Journal, Mode, Phase, RunRecord, RunTrigger, ALERT_FINGERPRINT_LABEL};
use lifeboat::snapshot::{Hub, Snapshot};
use serde_json::{json, Value};
use support::controlplane::control_plane;

const TOKEN: &str = "alertmanager-webhook-token-for-the-index";

/// One lifeboat replica's intake on the journal in `ns`.
struct Replica {
    url: String,
    counters: Arc<IntakeCounters>,
}

impl Replica {
    async fn start(ns: &str) -> Replica {
        let (state, _) = lifeboat::cluster::dump::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node-loss")).unwrap();
        let config = Config::default();
        let hub = Arc::new(Hub::new(config.clone(), Snapshot::build(state, &config, &Default::default()), None));
        let journal = Arc::new(Journal::cluster(control_plane().admin_client(), ns));
        let intake = Arc::new(Intake::new(hub.clone(), journal, default_routes(), TOKEN));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/alertmanager", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, routes(intake)).await });
        Replica { url, counters: IntakeCounters::of(&hub) }
    }

    /// Posts one alert; returns its result.
    async fn deliver(&self, alert: &Value) -> Value {
        self.deliver_all(std::slice::from_ref(alert)).await.remove(0)
    }

    /// Posts one notification of these alerts; returns their results.
    async fn deliver_all(&self, alerts: &[Value]) -> Vec<Value> {
        let status = alerts[0]["status"].clone();
        let body = json!({"version": "4", "groupKey": "{}:{alertname=\"x\"}", "truncatedAlerts": 0, "status": status, "receiver": "lifeboat",
                          "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "alerts": alerts});
        let response = reqwest::Client::new().post(&self.url).bearer_auth(TOKEN).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        answer["alerts"].as_array().unwrap().clone()
    }

    /// (full listings, listings of one alert's runs, reads of one run) so far.
    fn reads(&self) -> (u64, u64, u64) {
        let c = &self.counters;
        (c.journal_lists.load(Ordering::Relaxed), c.journal_alert_lists.load(Ordering::Relaxed), c.journal_gets.load(Ordering::Relaxed))
    }
}

fn alert(status: &str, name: &str, labels: Value, fingerprint: &str) -> Value {
    let mut labels = labels;
    labels["alertname"] = json!(name);
    json!({"status": status, "labels": labels, "annotations": {}, "startsAt": "2026-11-25T11:30:00Z",
           "endsAt": if status == "firing" {"0001-01-01T00:00:00Z"} else {"2026-11-25T12:30:00Z"},
           "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint})
}

fn resolved(alert: &Value) -> Value {
    let mut alert = alert.clone();
    alert["status"] = json!("resolved");
    alert
}

fn postgres_alert() -> Value {
    alert("firing", "LifeboatCnpgPrimaryOnLostNode", json!({"namespace": "database", "cluster": "postgres", "node": "node-01-pve"}), "a1b2c3d4e5f60718")
}

fn mariadb_alert() -> Value {
    alert("firing", "LifeboatMariadbInstanceOnLostNode", json!({"namespace": "database", "name": "mariadb"}), "0f1e2d3c4b5a6978")
}

fn orphan_alert() -> Value {
    alert("firing", "LifeboatVolsyncDestinationOrphaned", json!({"namespace": "utils", "name": "oldapp-dst"}), "99aa88bb77cc66dd")
}

async fn namespace(prefix: &str) -> (String, Journal) {
    let plane = control_plane();
    let client = plane.admin_client();
    let ns = plane.namespace(&client, prefix).await;
    (ns.clone(), Journal::cluster(client, ns))
}

/// The runs in the journal started by the alert with this fingerprint.
async fn runs_of(journal: &Journal, fingerprint: &str) -> Vec<RunRecord> {
    journal.list().await.unwrap().into_iter().filter(|r| r.spec.trigger.alert.as_ref().is_some_and(|a| a.fingerprint == fingerprint)).collect()
}

fn cleared(run: &RunRecord) -> bool {
    run.status.message.as_deref().is_some_and(|m| m.starts_with("condition cleared"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_firing_alert_reads_nothing_and_a_resolved_one_gets_its_run() {
    let (ns, journal) = namespace("index-known").await;
    let replica = Replica::start(&ns).await;
    let postgres = postgres_alert();
    let first = replica.deliver(&postgres).await;
    assert_eq!(first["result"], "run", "{first}");
    assert_eq!(replica.reads(), (1, 0, 0), "a new alert lists the journal once");

    for _ in 0..3 {
        let again = replica.deliver(&postgres).await;
        assert_eq!(again["result"], "duplicate", "{again}");
        assert_eq!(again["run"], first["run"]);
    }
    assert_eq!(replica.reads(), (1, 0, 0), "repeats of an alert with a run read nothing");
    assert_eq!(runs_of(&journal, "a1b2c3d4e5f60718").await.len(), 1);

    let gone = replica.deliver(&resolved(&postgres)).await;
    assert_eq!(gone["result"], "resolved", "{gone}");
    assert_eq!(gone["run"], first["run"]);
    assert_eq!(replica.reads(), (1, 0, 1), "the resolved alert reads its run alone");
    let run = journal.get(first["run"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!(run.status.phase, Phase::AwaitingApproval);
    assert!(cleared(&run), "{:?}", run.status.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_receiving_the_same_alert_at_once_record_one_run() {
    let (ns, journal) = namespace("index-ha").await;
    let (a, b) = (Replica::start(&ns).await, Replica::start(&ns).await);
    let postgres = postgres_alert();
    let (from_a, from_b) = tokio::join!(a.deliver(&postgres), b.deliver(&postgres));
    let mut results = [from_a["result"].as_str().unwrap(), from_b["result"].as_str().unwrap()];
    results.sort();
    assert_eq!(results, ["duplicate", "run"], "{from_a} {from_b}");
    assert_eq!(from_a["run"], from_b["run"]);
    // Whether the loser saw the run in its listing or got a 409 creating it, it counts one duplicate.
    let counted = |r: &Replica| (r.counters.runs_created.load(Ordering::Relaxed), r.counters.duplicates.load(Ordering::Relaxed));
    let (ca, cb) = (counted(&a), counted(&b));
    assert_eq!((ca.0 + cb.0, ca.1 + cb.1), (1, 1), "runs created and duplicates counted by the two replicas");
    // Both now know the run: repeats read nothing, on either replica.
    let reads = (a.reads(), b.reads());
    assert_eq!(a.deliver(&postgres).await["result"], "duplicate");
    assert_eq!(b.deliver(&postgres).await["result"], "duplicate");
    assert_eq!((a.reads(), b.reads()), reads);
    assert_eq!(runs_of(&journal, "a1b2c3d4e5f60718").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_another_replica_created_behind_the_index_are_found() {
    let (ns, journal) = namespace("index-behind").await;
    let (a, b) = (Replica::start(&ns).await, Replica::start(&ns).await);
    // A has read the journal (its index is primed) before B records two runs.
    assert_eq!(a.deliver(&orphan_alert()).await["result"], "run");
    let (postgres, mariadb) = (postgres_alert(), mariadb_alert());
    let by_b = b.deliver(&postgres).await;
    assert_eq!(by_b["result"], "run", "{by_b}");
    assert_eq!(b.deliver(&mariadb).await["result"], "run");

    // The resolution reaches A: it asks for the runs of that alert alone and clears B's run.
    let before = a.reads();
    let gone = a.deliver(&resolved(&postgres)).await;
    assert_eq!(gone["result"], "resolved", "{gone}");
    assert_eq!(gone["run"], by_b["run"]);
    assert_eq!(a.reads(), (before.0, before.1 + 1, before.2), "one listing of the alert's runs");
    assert!(cleared(&journal.get(by_b["run"].as_str().unwrap()).await.unwrap().unwrap()));

    // A repeat of B's other alert reaches A: A lists, finds it, creates nothing.
    let again = a.deliver(&mariadb).await;
    assert_eq!(again["result"], "duplicate", "{again}");
    assert_eq!(a.reads().0, before.0 + 1);
    assert_eq!(runs_of(&journal, "0f1e2d3c4b5a6978").await.len(), 1);
    assert_eq!(runs_of(&journal, "a1b2c3d4e5f60718").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_its_first_listing_a_replica_does_not_trust_the_fingerprint_label() {
    let (ns, journal) = namespace("index-restart").await;
    let before_restart = Replica::start(&ns).await;
    let postgres = postgres_alert();
    let created = before_restart.deliver(&postgres).await;
    assert_eq!(created["result"], "run");
    let id = created["run"].as_str().unwrap();
    // As if an earlier version had created it: no fingerprint label.
    let raw: Api<DynamicObject> = Api::namespaced_with(control_plane().admin_client(), &ns, &api_resource());
    let unlabel = json!({"metadata": {"labels": {ALERT_FINGERPRINT_LABEL: null}}});
    raw.patch(id, &PatchParams::default(), &Patch::Merge(&unlabel)).await.unwrap();

    // A restarted replica (empty index) gets the resolution: it lists the unfinished runs.
    let restarted = Replica::start(&ns).await;
    let gone = restarted.deliver(&resolved(&postgres)).await;
    assert_eq!(gone["result"], "resolved", "{gone}");
    assert_eq!(gone["run"], created["run"], "{gone}");
    assert_eq!(restarted.reads(), (1, 0, 0));
    assert!(cleared(&journal.get(id).await.unwrap().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_refused_for_a_busy_target_gets_the_blocking_run_until_it_ends() {
    let (ns, journal) = namespace("index-busy").await;
    let replica = Replica::start(&ns).await;
    // A human's `lifeboat run` of the same playbook and target, no alert.
    let (state, _) = lifeboat::cluster::dump::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node-loss")).unwrap();
    let snapshot = Snapshot::build(state, &Config::default(), &Default::default());
    let trigger = lifeboat::plan::playbooks::Trigger { namespace: Some("utils".into()), name: None, node: None };
    let plan = lifeboat::plan::playbooks::plan("stale-cleanup", &snapshot.state, &snapshot.findings, &trigger).unwrap();
    let manual = journal.create(&RunRecord::new(&plan, RunTrigger::from(&trigger), Mode::Approve, "cli:someone", chrono::Utc::now())).await.unwrap();

    let orphan = orphan_alert();
    let busy = replica.deliver(&orphan).await;
    assert_eq!(busy["result"], "target busy", "{busy}");
    assert_eq!(busy["run"], manual.id.as_str());
    assert_eq!(replica.reads(), (1, 0, 0));
    let again = replica.deliver(&orphan).await;
    assert_eq!(again["result"], "target busy", "{again}");
    assert_eq!(replica.reads(), (1, 0, 1), "a repeat reads the blocking run alone");

    // The human aborts their run: the next delivery lists and records the alert's own run.
    lifeboat::remediator::abort(&journal, &manual.id, "someone").await.unwrap();
    let free = replica.deliver(&orphan).await;
    assert_eq!(free["result"], "run", "{free}");
    assert_eq!(replica.reads(), (2, 0, 2));
    assert_eq!(runs_of(&journal, "99aa88bb77cc66dd").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolved_alerts_of_one_notification_are_looked_up_in_one_read() {
    let (ns, journal) = namespace("index-batch").await;
    let (a, b) = (Replica::start(&ns).await, Replica::start(&ns).await);
    assert_eq!(a.deliver(&orphan_alert()).await["result"], "run");
    let (postgres, mariadb) = (postgres_alert(), mariadb_alert());
    let by_b = [b.deliver(&postgres).await, b.deliver(&mariadb).await];
    let before = a.reads();
    let gone = a.deliver_all(&[resolved(&postgres), resolved(&mariadb)]).await;
    for (gone, by_b) in gone.iter().zip(&by_b) {
        assert_eq!(gone["result"], "resolved", "{gone}");
        assert_eq!(gone["run"], by_b["run"], "{gone}");
        assert!(cleared(&journal.get(by_b["run"].as_str().unwrap()).await.unwrap().unwrap()));
    }
    assert_eq!(a.reads(), (before.0, before.1 + 1, before.2), "one listing for both alerts' runs");
}

/// The `lifeboat.dev/finished` label of a run, as stored.
async fn finished_label(ns: &str, id: &str) -> Option<String> {
    let raw: Api<DynamicObject> = Api::namespaced_with(control_plane().admin_client(), ns, &api_resource());
    raw.get(id).await.unwrap().metadata.labels.unwrap_or_default().get("lifeboat.dev/finished").cloned()
}

/// A run as a lifeboat from before the finished label wrote it: no labels at all.
async fn create_unlabelled(ns: &str, record: &RunRecord) {
    let raw: Api<DynamicObject> = Api::namespaced_with(control_plane().admin_client(), ns, &api_resource());
    let object = DynamicObject::new(&record.id, &api_resource()).within(ns).data(json!({ "spec": record.spec }));
    raw.create(&Default::default(), &object).await.unwrap();
    raw.patch_status(&record.id, &PatchParams::default(), &Patch::Merge(&json!({ "status": record.status }))).await.unwrap();
}

/// The intake lists only the runs labelled unfinished (or not labelled),
/// so the label must follow every status write: set when a run ends (or is
/// recorded finished), removed before a finished run becomes unfinished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_labelled_finished_when_it_ends_and_unlabelled_before_it_is_reopened() {
    let (ns, journal) = namespace("index-finished").await;
    let replica = Replica::start(&ns).await;
    let created = replica.deliver(&postgres_alert()).await;
    assert_eq!(created["result"], "run", "{created}");
    let id = created["run"].as_str().unwrap();
    assert_eq!(finished_label(&ns, id).await, None, "awaiting approval");
    lifeboat::remediator::abort(&journal, id, "someone").await.unwrap();
    assert_eq!(finished_label(&ns, id).await.as_deref(), Some("true"), "aborted");

    // A plan without steps is recorded NothingToDo: finished from its creation.
    let empty = RunRecord::new(&lifeboat::plan::Plan::new("stale-cleanup", "utils/x"), RunTrigger::default(), Mode::Approve, "test", chrono::Utc::now());
    assert_eq!(empty.status.phase, Phase::NothingToDo);
    let empty = journal.create(&empty).await.unwrap();
    assert_eq!(finished_label(&ns, &empty.id).await.as_deref(), Some("true"), "recorded finished");

    // Back to awaiting approval (by hand, say): never hidden from the collision check.
    let mut reopened = empty.status.clone();
    reopened.phase = Phase::AwaitingApproval;
    reopened.finished_at = None;
    journal.update_status(&empty.id, &reopened).await.unwrap();
    assert_eq!(finished_label(&ns, &empty.id).await, None, "reopened");
    assert_eq!(journal.get(&empty.id).await.unwrap().unwrap().status.phase, Phase::AwaitingApproval);
}

/// A finished run is not among the runs the collision check lists, yet a
/// repeat of its alert on a replica that never saw it creates nothing: the
/// run's name comes from the alert, and the apiserver refuses it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_of_an_alert_whose_run_finished_is_a_duplicate_on_a_fresh_replica() {
    let (ns, journal) = namespace("index-finished-repeat").await;
    let first = Replica::start(&ns).await;
    let postgres = postgres_alert();
    let created = first.deliver(&postgres).await;
    let id = created["run"].as_str().unwrap();
    lifeboat::remediator::abort(&journal, id, "someone").await.unwrap();

    let fresh = Replica::start(&ns).await;
    let again = fresh.deliver(&postgres).await;
    assert_eq!(again["result"], "duplicate", "{again}");
    assert_eq!(again["run"], id);
    assert_eq!(runs_of(&journal, "a1b2c3d4e5f60718").await.len(), 1);
    assert_eq!(fresh.deliver(&postgres).await["result"], "duplicate", "and from the index after");
}

/// Runs written before the finished label carry no label: `!=true` still
/// selects them, finished or not, so an old unfinished run still blocks its
/// target and an old finished run of an alert (named before names came from
/// the alert) still answers its repeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_written_before_the_finished_label_are_still_found() {
    let (ns, journal) = namespace("index-legacy").await;
    let (state, _) = lifeboat::cluster::dump::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node-loss")).unwrap();
    let snapshot = Snapshot::build(state, &Config::default(), &Default::default());
    let trigger = lifeboat::plan::playbooks::Trigger { namespace: Some("utils".into()), name: None, node: None };
    let plan = lifeboat::plan::playbooks::plan("stale-cleanup", &snapshot.state, &snapshot.findings, &trigger).unwrap();
    let old_unfinished = RunRecord::new(&plan, RunTrigger::from(&trigger), Mode::Approve, "cli:someone", chrono::Utc::now());
    create_unlabelled(&ns, &old_unfinished).await;

    let postgres = postgres_alert();
    let trigger = lifeboat::plan::playbooks::Trigger { namespace: Some("database".into()), name: Some("postgres".into()), node: None };
    let plan = lifeboat::plan::playbooks::plan("cnpg-instance-lost", &snapshot.state, &snapshot.findings, &trigger).unwrap();
    let alert = lifeboat::journal::AlertRef {
        fingerprint: "a1b2c3d4e5f60718".into(),
        starts_at: "2026-11-25T11:30:00Z".parse().unwrap(),
        alertname: "LifeboatCnpgPrimaryOnLostNode".into(),
    };
    let mut old_finished = RunRecord::new(&plan, RunTrigger { alert: Some(alert), ..RunTrigger::from(&trigger) }, Mode::Approve, "alertmanager", chrono::Utc::now());
    old_finished.status.phase = Phase::Aborted;
    create_unlabelled(&ns, &old_finished).await;
    assert_ne!(old_finished.id, RunRecord::id_for_alert(&plan, old_finished.spec.trigger.alert.as_ref().unwrap()), "named by time, not by the alert");

    let replica = Replica::start(&ns).await;
    let busy = replica.deliver(&orphan_alert()).await;
    assert_eq!(busy["result"], "target busy", "{busy}");
    assert_eq!(busy["run"], old_unfinished.id.as_str());
    let repeat = replica.deliver(&postgres).await;
    assert_eq!(repeat["result"], "duplicate", "{repeat}");
    assert_eq!(repeat["run"], old_finished.id.as_str());
    assert_eq!(runs_of(&journal, "a1b2c3d4e5f60718").await.len(), 1);
}
