//! The exporter against a real kube-apiserver: metrics follow watch events
//! without a restart, and a CRD installed after start is picked up.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lifeboat::config::{Config, Dur};
use lifeboat::snapshot::Hub;
use serde_json::json;
// Private (holding back the MariaDB CRD): it is installed while lifeboat watches.
use support::controlplane::control_plane_holding_back;
use support::fixtures::*;
use support::k8s::*;
use support::metrics::{parse, value, Sample};

const HELD_BACK: &str = "mariadbs.k8s.mariadb.com";

async fn serve(hub: Arc<Hub>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, lifeboat::server::router(hub)).await });
    format!("http://{addr}")
}

async fn scrape(base: &str) -> Vec<Sample> {
    let body = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    parse(&body)
}

/// Polls /metrics until `check` holds (watch events are asynchronous).
async fn eventually(base: &str, what: &str, check: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let samples = scrape(base).await;
        if check(&samples) {
            return samples;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}\n{samples:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn test_config() -> Config {
    Config { discovery_interval: Dur::secs(1), snapshot_interval: Dur::secs(1), ..Config::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_cluster_through_a_node_loss() {
    let cp = control_plane_holding_back(&[HELD_BACK]);
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "exporter").await;
    let (healthy, doomed) = (format!("{ns}-node-a"), format!("{ns}-node-b"));

    // A cluster shaped like examples/node-loss, before the incident.
    node_ready(&client, &healthy).await;
    node_ready(&client, &doomed).await;
    create(&client, pv_pinned(&format!("{ns}-pv-pg1"), "kubernetes.io/hostname", &doomed, &ns, "postgres-1"), None).await;
    create(&client, pvc(&ns, "postgres-1", &format!("{ns}-pv-pg1"), json!({"cnpg.io/cluster": "postgres"})), None).await;
    create(&client, pod(&ns, "postgres-1", &doomed, &["postgres-1"], json!({"cnpg.io/cluster": "postgres"}), None), None).await;
    let weeks_ago = Utc::now() - chrono::Duration::days(27);
    let mut cluster = cnpg_cluster(&ns, "postgres", "postgres-1", vec![], "postgres-r2");
    cluster["status"]["conditions"] = json!([
        {"type": "ContinuousArchiving", "status": "False", "reason": "ContinuousArchivingFailing", "message": "Expected empty archive", "lastTransitionTime": rfc3339(weeks_ago)},
        {"type": "LastBackupSucceeded", "status": "False", "reason": "BackupStarted", "message": "", "lastTransitionTime": rfc3339(Utc::now())}
    ]);
    create(&client, cluster, None).await;
    let last_backup = rfc3339(Utc::now() - chrono::Duration::hours(9));
    create(&client, object_store(&ns, "cnpg-garage", "postgres-r2", "2026-11-01T03:00:00Z", &last_backup), None).await;
    let three_days_ago = rfc3339(Utc::now() - chrono::Duration::days(3));
    create(&client, replication_source(&ns, "forgejo", "forgejo", "0 * * * *", false, Some(&three_days_ago), "Successful"), None).await;

    let hub = lifeboat::runtime::hub::start_live_hub(test_config(), client.clone());
    let base = serve(hub.clone()).await;
    lifeboat::runtime::hub::wait_ready(&hub, Duration::from_secs(60)).await.expect("every installed kind lists");
    assert_eq!(reqwest::get(format!("{base}/readyz")).await.unwrap().status(), 200);

    let s = eventually(&base, "initial state", |s| {
        value(s, "lifeboat_cnpg_continuous_archiving_ok", &[("namespace", &ns)]) == Some(0.0)
            && value(s, "lifeboat_volsync_stale", &[("namespace", &ns), ("name", "forgejo")]) == Some(1.0)
    })
    .await;
    assert_eq!(value(&s, "lifeboat_node_lost", &[("node", &doomed)]), None, "node is Ready");
    assert_eq!(value(&s, "lifeboat_cnpg_last_backup_state", &[("namespace", &ns), ("state", "in_progress")]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_cnpg_last_successful_backup_timestamp_seconds", &[("namespace", &ns), ("source", "objectstore")]), Some(at(&last_backup).timestamp() as f64));
    assert_eq!(value(&s, "lifeboat_watch_up", &[("kind", "mariadb.MariaDB")]), Some(0.0), "CRD not installed yet");
    assert_eq!(value(&s, "lifeboat_watch_up", &[("kind", "cnpg.Cluster")]), Some(1.0));

    // The node stops reporting; 10 minutes later it is past the 5m grace.
    mark_node_not_ready(&client, &doomed, Utc::now() - chrono::Duration::minutes(10)).await;
    let s = eventually(&base, "node lost", |s| value(s, "lifeboat_node_lost", &[("node", &doomed)]) == Some(1.0)).await;
    assert_eq!(value(&s, "lifeboat_node_pinned_volumes", &[("node", &doomed)]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_pod_blocked_on_lost_volume", &[("namespace", &ns), ("pod", "postgres-1")]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_cnpg_primary_on_lost_node", &[("namespace", &ns), ("cluster", "postgres")]), Some(1.0));

    // VolSync syncs; CNPG archiving recovers.
    volsync_synced(&client, &ns, "forgejo", Utc::now()).await;
    set_cnpg_archiving(&client, &ns, "postgres", true, Utc::now()).await;
    eventually(&base, "sync and archiving recovery", |s| {
        value(s, "lifeboat_volsync_stale", &[("namespace", &ns), ("name", "forgejo")]) == Some(0.0)
            && value(s, "lifeboat_cnpg_continuous_archiving_ok", &[("namespace", &ns)]) == Some(1.0)
    })
    .await;

    // The MariaDB operator gets installed after lifeboat started.
    cp.install_crd(&client, HELD_BACK).await;
    let mut mariadb = json!({"apiVersion": "k8s.mariadb.com/v1alpha1", "kind": "MariaDB", "metadata": {"name": "mariadb"},
        "spec": {"replicas": 3, "galera": {"enabled": true}, "storage": {"size": "1Gi"}, "rootPasswordSecretKeyRef": {"name": "mariadb", "key": "root-password"}},
        "status": {"conditions": [{"type": "GaleraReady", "status": "True", "reason": "GaleraReady", "message": "", "lastTransitionTime": rfc3339(Utc::now())}]}});
    if cp.crd_source.ends_with("tests/crds") {
        mariadb["spec"].as_object_mut().unwrap().remove("rootPasswordSecretKeyRef");
    }
    create(&client, mariadb, Some(&ns)).await;
    let s = eventually(&base, "MariaDB watch starts after its CRD appears", |s| value(s, "lifeboat_mariadb_galera_ready", &[("namespace", &ns), ("name", "mariadb")]) == Some(1.0))
        .await;
    assert_eq!(value(&s, "lifeboat_watch_up", &[("kind", "mariadb.MariaDB")]), Some(1.0));
    assert!(value(&s, "lifeboat_watch_events_total", &[("kind", "core.Node")]).unwrap() >= 3.0);

    // The node comes back.
    mark_node_ready(&client, &doomed).await;
    eventually(&base, "node back", |s| value(s, "lifeboat_node_lost", &[("node", &doomed)]).is_none()).await;
}

/// A Flux object a run left suspended (spec.suspend plus the annotation the
/// runner writes) is listed until it is resumed, through the live watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_kept_suspended_by_a_run_follows_the_watch() {
    let cp = control_plane_holding_back(&[HELD_BACK]);
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "exporter-kept").await;
    let mut held = kustomization(&ns, "postgres", true, "True");
    held["metadata"]["annotations"] = json!({lifeboat::act::runner::KEPT_SUSPENDED_ANNOTATION: "by lifeboat wal-archive-reset for database/postgres"});
    create(&client, held, None).await;

    let hub = lifeboat::runtime::hub::start_live_hub(test_config(), client.clone());
    let base = serve(hub.clone()).await;
    let labels = [("kind", "Kustomization"), ("namespace", ns.as_str()), ("name", "postgres")];
    eventually(&base, "held suspended", |s| value(s, "lifeboat_remediation_flux_kept_suspended", &labels) == Some(1.0)).await;

    // `flux resume` sets spec.suspend false and leaves the annotation.
    let api = api_for(&client, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", Some(&ns)).await;
    api.patch("postgres", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(json!({"spec": {"suspend": false}}))).await.unwrap();
    let s = eventually(&base, "resumed", |s| value(s, "lifeboat_flux_suspended", &labels) == Some(0.0)).await;
    assert_eq!(value(&s, "lifeboat_remediation_flux_kept_suspended", &labels), None);
}

/// /readyz answers 200 only once /metrics serves what was in the cluster
/// before the start: readiness follows the served snapshot, not the caches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_once_metrics_hold_the_pods_already_there() {
    let cp = control_plane_holding_back(&[HELD_BACK]);
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "ready").await;
    let node = format!("{ns}-node");
    node_ready(&client, &node).await;
    const PODS: usize = 40;
    futures::future::join_all((0..PODS).map(|i| create(&client, pod(&ns, &format!("app-{i}"), &node, &[], json!({}), None), None))).await;

    // A snapshot interval far longer than the test: only change-driven rebuilds count.
    let config = Config { snapshot_interval: Dur::secs(3600), ..test_config() };
    let hub = lifeboat::runtime::hub::start_live_hub(config, client.clone());
    let base = serve(hub).await;
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    // No pause between polls: the window between the caches and the served snapshot is short.
    while http.get(format!("{base}/readyz")).send().await.unwrap().status() != 200 {
        assert!(tokio::time::Instant::now() < deadline, "/readyz never turned 200");
    }
    let s = scrape(&base).await;
    let pods = value(&s, "lifeboat_objects", &[("kind", "core.Pod")]).unwrap_or(0.0);
    assert!(pods >= PODS as f64, "/readyz was 200 while /metrics counted {pods} pods of the {PODS} already created");
}
