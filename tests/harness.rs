//! The test harness's own guarantees: kubelets started side by side keep
//! their own keys, the graph check catches a step that ran too early,
//! deadlines and player panics fail a test by name, and the control plane
//! serves the operators' real schemas (pruning and validation included).

mod support;

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeboat::plan::{Action, ObjectRef, Plan, Step};
use serde_json::json;
use support::deadline::Deadline;
use support::graph::{needs_violations, StepTimes};
use support::kubelet::FakeKubelet;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubelets_started_side_by_side_in_one_directory_each_serve_their_own_certificate() {
    let parent = tempfile::tempdir().unwrap();
    let starts = (0..8).map(|_| {
        let parent = parent.path().to_path_buf();
        tokio::spawn(async move { FakeKubelet::start(&parent).await })
    });
    let kubelets: Vec<FakeKubelet> = futures::future::join_all(starts).await.into_iter().map(|k| k.expect("kubelet starts")).collect();
    let https = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    for (i, kubelet) in kubelets.iter().enumerate() {
        kubelet.set_log("ns", &format!("pod-{i}"), "app", &format!("log of kubelet {i}"));
        let url = format!("https://127.0.0.1:{}/containerLogs/ns/pod-{i}/app", kubelet.port);
        let body = https.get(&url).send().await.unwrap_or_else(|e| panic!("{url}: {e}")).text().await.unwrap();
        assert_eq!(body, format!("log of kubelet {i}"));
    }
    assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0, "each kubelet removes its own key directory once loaded");
}

fn step(id: &str, needs: &[&str]) -> Step {
    Step {
        id: id.into(),
        title: id.into(),
        action: Action::Delete { object: ObjectRef::namespaced("v1", "ConfigMap", "ns", id) },
        needs: needs.iter().map(|n| n.to_string()).collect(),
        preconditions: vec![],
        recovery_source: None,
    }
}

fn t(second: u32) -> Option<DateTime<Utc>> {
    Some(format!("2026-01-01T00:00:{second:02}Z").parse().unwrap())
}

#[test]
fn the_graph_check_catches_a_step_that_started_before_its_needs_finished() {
    let plan = Plan { steps: vec![step("a", &[]), step("b", &[]), step("c", &["a", "b"]), step("d", &["c"])], ..Plan::new("p", "t") };
    let times = |c_start| {
        vec![
            StepTimes { id: "a", started: t(0), finished: t(2) },
            StepTimes { id: "b", started: t(0), finished: t(5) },
            StepTimes { id: "c", started: c_start, finished: t(8) },
            StepTimes { id: "d", started: None, finished: None },
        ]
    };
    assert_eq!(needs_violations(&plan, times(t(5))), Vec::<String>::new(), "c right as its last need finished");
    let early = needs_violations(&plan, times(t(3)));
    assert_eq!(early.len(), 1, "{early:?}");
    assert!(early[0].contains("c started") && early[0].contains("need b"), "{early:?}");
    // A step that ran although a need never finished.
    let orphan = needs_violations(&plan, [StepTimes { id: "d", started: t(1), finished: t(2) }]);
    assert!(orphan.len() == 1 && orphan[0].contains("need c never finished"), "{orphan:?}");
}

#[test]
fn a_deadline_names_the_wedged_test_and_a_finished_test_disarms_it() {
    let (fired, expired) = mpsc::channel();
    let deadline = Deadline::with_action("wedged", Duration::from_millis(50), Duration::ZERO, move || fired.send(()).unwrap());
    assert_eq!(expired.recv_timeout(Duration::from_secs(30)), Ok(()), "the deadline fired");
    drop(deadline);

    let (fired, expired) = mpsc::channel();
    drop(Deadline::with_action("finished", Duration::from_millis(50), Duration::ZERO, move || fired.send(()).unwrap()));
    assert_eq!(expired.recv_timeout(Duration::from_millis(500)), Err(mpsc::RecvTimeoutError::Disconnected), "a dropped deadline never fires");
}

#[tokio::test]
async fn a_panicking_player_is_reported_and_raises_the_alarm() {
    let (fired, expired) = mpsc::channel();
    let deadline = Deadline::with_action("player", Duration::from_secs(600), Duration::ZERO, move || fired.send(()).unwrap());
    let panicked = Arc::new(Mutex::new(None));
    let task = tokio::spawn(support::players::report_panic(async { panic!("writing status of Pod x: 422") }, deadline.alarm(), panicked.clone()));
    task.await.unwrap();
    assert_eq!(panicked.lock().unwrap().as_deref(), Some("writing status of Pod x: 422"));
    assert_eq!(expired.recv_timeout(Duration::from_secs(30)), Ok(()), "the alarm cut the deadline short");
}

/// The CRDs of kinds with an upstream source are the upstream ones: an
/// unknown field is pruned, a wrong type refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_serves_the_upstream_schemas() {
    let cp = support::controlplane::control_plane();
    let stand_ins: Vec<&String> = cp.crd_origins.iter().filter(|(_, file)| file.starts_with(support::crds::stand_in_dir())).map(|(name, _)| name).collect();
    assert!(!stand_ins.iter().any(|n| n.as_str() == "clusters.postgresql.cnpg.io"), "CNPG's Cluster CRD comes from upstream: {:?}", cp.crd_origins);
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "schemas").await;
    let cluster = json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": {"name": "pg", "namespace": ns},
                         "spec": {"instances": 3, "storage": {"size": "1Gi"}, "notAField": true}});
    let api = support::k8s::api_for(&client, "postgresql.cnpg.io/v1", "Cluster", Some(&ns)).await;
    let created = api.create(&Default::default(), &serde_json::from_value(cluster.clone()).unwrap()).await.unwrap();
    let created = serde_json::to_value(created).unwrap();
    assert!(created["spec"].get("notAField").is_none(), "pruned by the upstream schema: {:#}", created["spec"]);
    assert_eq!(created["spec"]["instances"], 3);
    let mut wrong = cluster;
    wrong["metadata"]["name"] = json!("pg-wrong");
    wrong["spec"]["instances"] = json!("three");
    let refused = api.create(&Default::default(), &serde_json::from_value(wrong).unwrap()).await;
    assert!(matches!(&refused, Err(kube::Error::Api(s)) if s.code == 422), "{refused:?}");
}

/// Stand-ins (no pruning, no validation) only for the kinds
/// docs/development.md lists as having no served upstream module.
#[test]
fn only_the_documented_kinds_fall_back_to_stand_ins() {
    let crds = support::crds::all().unwrap();
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/development.md")).unwrap();
    for name in support::crds::stand_ins(&crds) {
        assert!(docs.contains(&format!("`{name}`")), "{name} falls back to its stand-in but docs/development.md does not list it");
    }
}

/// A start whose etcd cannot bind its port fails at once, naming the
/// process, showing its log and keeping its directory (it used to wait
/// 90 s for a /readyz that could never come, then point at removed logs).
#[test]
fn a_failed_start_fails_fast_with_the_logs_and_keeps_them() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let spare: Vec<u16> = (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
    let dir = tempfile::Builder::new().prefix("lifeboat-harness-failed-start-").tempdir().unwrap();
    let Err(error) = support::controlplane::start_in(dir.path(), [port, spare[0], spare[1]], vec![]) else { panic!("etcd started on a taken port") };
    assert!(error.starts_with("exited early: etcd exited"), "{error}");
    assert!(error.contains("address already in use") && error.contains("etcd.log"), "the error shows etcd's log: {error}");
    assert!(dir.path().join("etcd.log").is_file() && dir.path().join("FAILED-START").is_file(), "the logs are kept");
}

/// The plane `scripts/test.sh` shares across a `cargo test` run: the command
/// finds it through the file LIFEBOAT_TEST_CONTROL_PLANE names, it serves
/// while the command runs, the command's status comes back, and once the
/// command ends nothing of the plane is left running; a binary attaching to
/// it then gets the logs' last lines.
#[test]
fn a_shared_plane_serves_exactly_as_long_as_its_command() {
    use support::controlplane::{attach, run_beside_shared, SHARED_PLANE_ENV};
    let dir = tempfile::tempdir().unwrap();
    let (copy, release) = (dir.path().join("plane.json"), dir.path().join("release"));
    let script = format!("cp \"${SHARED_PLANE_ENV}\" '{}' && while [ ! -e '{}' ]; do sleep 0.1; done; exit 3", copy.display(), release.display());
    let run = std::thread::spawn(move || run_beside_shared(std::process::Command::new("sh").args(["-c", &script])));
    while !copy.exists() {
        assert!(!run.is_finished(), "the shared plane did not start: {:?}", run.join());
        std::thread::sleep(Duration::from_millis(100));
    }
    let plane = attach(&copy).expect("the shared plane answers while its command runs");
    assert!(plane.held_back.is_empty() && plane.crd_origins.contains_key("clusters.postgresql.cnpg.io"), "every CRD: {:?}", plane.crd_origins);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ns = runtime.block_on(async { plane.namespace(&plane.admin_client(), "shared").await });
    assert!(ns.starts_with("shared-"), "{ns}");

    std::fs::write(&release, "").unwrap();
    let status = run.join().unwrap().expect("the command ran");
    assert_eq!(status.code(), Some(3), "the command's status comes back");
    let description: serde_json::Value = serde_json::from_slice(&std::fs::read(&copy).unwrap()).unwrap();
    let pids: Vec<u64> = description["pids"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap()).collect();
    assert_eq!(pids.len(), 2, "etcd and kube-apiserver: {description}");
    for pid in pids {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "process {pid} of the shared plane outlived its command");
    }
    let Err(error) = attach(&copy) else { panic!("a stopped plane was attached to") };
    assert!(error.contains("does not answer /readyz") && error.contains("kube-apiserver.log"), "{error}");
    let Err(error) = attach(&dir.path().join("missing.json")) else { panic!("no description, no plane") };
    assert!(error.contains("missing.json") && error.contains(SHARED_PLANE_ENV), "{error}");
}
