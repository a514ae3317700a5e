//! `lifeboat run` on the real apiserver (issue 12, item 5): it honours the
//! cluster's kill switch (the ConfigMap, not only the config flag) and
//! refuses to run beside an unfinished journaled run on the same target.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use chrono::Utc;
use lifeboat::journal::{Journal, Mode, RunRecord, RunTrigger};
use lifeboat::plan::{Action, ObjectRef, Plan, Step};
use support::controlplane::control_plane;
use support::fixtures::replication_destination;
use support::k8s::{api_for, create};

/// `lifeboat run stale-cleanup --namespace <apps> --yes` with lifeboat's namespace `ns`.
fn run_stale_cleanup(dir: &Path, ns: &str, apps: &str) -> Output {
    let kubeconfig = dir.join("kubeconfig");
    control_plane().write_admin_kubeconfig(&kubeconfig);
    let config = dir.join("lifeboat.yaml");
    std::fs::write(&config, format!("discoveryInterval: 2s\nremediation:\n  namespace: {ns}\n")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["run", "stale-cleanup", "--namespace", apps, "--yes", "--config"])
        .arg(&config)
        .env("KUBECONFIG", &kubeconfig)
        .env("LIFEBOAT_LOG", "warn")
        .output()
        .unwrap()
}

/// A namespace holding one orphaned ReplicationDestination (no source, no
/// PVC): stale-cleanup plans to delete it.
async fn orphaned_destination(client: &kube::Client, prefix: &str) -> String {
    let apps = control_plane().namespace(client, prefix).await;
    create(client, replication_destination(&apps, "gone-dst", Some("gone")), None).await;
    apps
}

async fn destination_exists(client: &kube::Client, apps: &str) -> bool {
    api_for(client, "volsync.backube/v1alpha1", "ReplicationDestination", Some(apps)).await.get_opt("gone-dst").await.unwrap().is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_while_the_cluster_kill_switch_is_engaged() {
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "run-kill").await;
    let apps = orphaned_destination(&client, "run-kill-apps").await;
    lifeboat::act::kill_switch::engage(&client, &ns, "test", "drill").await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    let out = run_stale_cleanup(dir.path(), &ns, &apps);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("kill switch is engaged"), "{stderr}");
    assert!(destination_exists(&client, &apps).await, "run deleted it despite the kill switch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_beside_an_unfinished_run_on_the_same_target() {
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "run-busy").await;
    let apps = orphaned_destination(&client, "run-busy-apps").await;
    // A leader's run for the same target, still awaiting approval.
    let rd = ObjectRef::namespaced("volsync.backube/v1alpha1", "ReplicationDestination", &apps, "gone-dst");
    let step = Step { id: "delete".into(), title: "delete".into(), action: Action::Delete { object: rd }, needs: vec![], preconditions: vec![], recovery_source: None };
    let queued = Plan { steps: vec![step], ..Plan::new("stale-cleanup", format!("namespace {apps}")) };
    let journal = Journal::cluster(client.clone(), ns.clone());
    let run = journal.create(&RunRecord::new(&queued, RunTrigger::default(), Mode::Approve, "alertmanager", Utc::now())).await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    let out = run_stale_cleanup(dir.path(), &ns, &apps);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}\n{}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains(&run.id) && stderr.contains("AwaitingApproval"), "{stderr}");
    assert!(destination_exists(&client, &apps).await, "run deleted it beside the queued run");
}
