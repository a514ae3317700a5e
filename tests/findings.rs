//! Every finding on small fixtures, including the traps where upstream field names differ from what one would guess.

mod support;

use lifeboat::config::Config;
use lifeboat::inspect::cnpg::{BackupState, WindowSource};
use lifeboat::inspect::coverage::Source;
use lifeboat::inspect::garage::GarageProbe;
use lifeboat::inspect::nodes::Availability;
use lifeboat::inspect::volsync::Role;
use lifeboat::inspect::{inspect, Findings};
use serde_json::json;
use support::fixtures::*;

const NOW: &str = "2026-11-25T12:00:00Z";

fn findings(objects: Vec<serde_json::Value>) -> Findings {
    inspect(&state(NOW, objects), &Config::default(), &GarageProbe::default())
}

#[test]
fn node_ready_notready_within_grace_past_grace_and_missing() {
    let f = findings(vec![
        node("ready", "True", "2026-11-01T00:00:00Z"),
        node("fresh-notready", "False", "2026-11-25T11:58:00Z"),
        node("lost", "Unknown", "2026-11-25T11:20:00Z"),
        pv_pinned("pv-gone", "kubernetes.io/hostname", "deleted-node", "apps", "data"),
    ]);
    let by_name = |n: &str| f.nodes.iter().find(|x| x.node == n);
    assert!(by_name("ready").is_none(), "a Ready node is not reported");
    let fresh = by_name("fresh-notready").unwrap();
    assert_eq!(fresh.availability, Availability::NotReady);
    assert!(!fresh.lost, "2 minutes NotReady is within the 5m grace");
    let lost = by_name("lost").unwrap();
    assert!(lost.lost);
    assert_eq!(lost.reason.as_deref(), Some("NodeStatusUnknown"));
    let missing = by_name("deleted-node").unwrap();
    assert_eq!(missing.availability, Availability::Missing);
    assert!(missing.lost, "a node with no Node object is lost at once");
}

#[test]
fn pv_pinned_by_any_node_key_counts_but_a_zone_does_not() {
    let mut zonal = pv_pinned("pv-zone", "topology.kubernetes.io/zone", "zone-a", "apps", "zonal");
    zonal["metadata"]["name"] = json!("pv-zone");
    let f = findings(vec![
        node("node-01", "Unknown", "2026-11-25T10:00:00Z"),
        node("node-02", "True", "2026-11-01T00:00:00Z"),
        pv_pinned("pv-hostname", "kubernetes.io/hostname", "node-01", "apps", "a"),
        pv_pinned("pv-topolvm", "topology.topolvm.io/node", "node-01", "apps", "b"),
        pv_pinned("pv-healthy", "kubernetes.io/hostname", "node-02", "apps", "c"),
        zonal,
    ]);
    let lost: Vec<&str> = f.lost_volumes.iter().map(|v| v.persistent_volume.as_str()).collect();
    assert_eq!(lost, vec!["pv-hostname", "pv-topolvm"]);
    assert!(f.nodes.iter().all(|n| n.node != "zone-a"), "a zone value is not a missing node");
}

#[test]
fn pods_on_lost_volumes_are_blocked_and_others_are_not() {
    let f = findings(vec![
        node("node-01", "Unknown", "2026-11-25T10:00:00Z"),
        node("node-02", "True", "2026-11-01T00:00:00Z"),
        pv_pinned("pv-a", "kubernetes.io/hostname", "node-01", "apps", "a"),
        pv_pinned("pv-b", "kubernetes.io/hostname", "node-02", "apps", "b"),
        pvc("apps", "a", "pv-a", json!({})),
        pvc("apps", "b", "pv-b", json!({})),
        pod("apps", "a-0", "node-01", &["a"], json!({}), None),
        pod("apps", "b-0", "node-02", &["b"], json!({}), None),
    ]);
    assert_eq!(f.blocked_pods.len(), 1);
    assert_eq!((f.blocked_pods[0].pod.as_str(), f.blocked_pods[0].claim.as_str()), ("a-0", "a"));
}

fn cnpg_fixture(backup_condition: serde_json::Value) -> Vec<serde_json::Value> {
    vec![
        node("node-01", "Unknown", "2026-11-25T10:00:00Z"),
        pv_pinned("pv-pg1", "kubernetes.io/hostname", "node-01", "database", "postgres-1"),
        pvc("database", "postgres-1", "pv-pg1", json!({"cnpg.io/cluster": "postgres"})),
        cnpg_cluster(
            "database",
            "postgres",
            "postgres-1",
            vec![condition("ContinuousArchiving", "True", "ContinuousArchivingSuccess", "2026-11-20T00:00:00Z"), backup_condition],
            "postgres-r2",
        ),
        object_store("database", "cnpg-garage", "postgres-r2", "2026-11-18T03:00:00Z", "2026-11-25T03:00:12Z"),
        scheduled_backup("database", "postgres-daily", "postgres", "0 0 3 * * *"),
    ]
}

#[test]
fn cnpg_backup_started_is_in_progress_not_failure() {
    let f = findings(cnpg_fixture(condition("LastBackupSucceeded", "False", "BackupStarted", "2026-11-25T11:59:00Z")));
    assert_eq!(f.cnpg[0].last_backup, BackupState::InProgress);
    let f = findings(cnpg_fixture(condition("LastBackupSucceeded", "False", "LastBackupFailed", "2026-11-25T11:59:00Z")));
    assert_eq!(f.cnpg[0].last_backup, BackupState::Failed);
    let f = findings(cnpg_fixture(condition("LastBackupSucceeded", "True", "LastBackupSucceeded", "2026-11-25T03:00:00Z")));
    assert_eq!(f.cnpg[0].last_backup, BackupState::Succeeded);
}

#[test]
fn cnpg_plugin_cluster_reads_recovery_window_from_object_store() {
    let f = findings(cnpg_fixture(condition("LastBackupSucceeded", "True", "LastBackupSucceeded", "2026-11-25T03:00:00Z")));
    let c = &f.cnpg[0];
    assert_eq!(c.window_source, Some(WindowSource::ObjectStore));
    assert_eq!(c.server_name.as_deref(), Some("postgres-r2"));
    assert_eq!(c.last_successful_backup, Some(at("2026-11-25T03:00:12Z")));
    assert_eq!(c.first_recoverability_point, Some(at("2026-11-18T03:00:00Z")));
    assert!(!c.backup_stale, "9h old with a daily schedule");
    assert_eq!(c.max_backup_age_seconds, 2 * 86400 + 3600);
    assert!(c.primary_on_lost_node, "primary postgres-1's PVC is pinned to lost node-01");
    assert_eq!(c.primary_node.as_deref(), Some("node-01"));
}

#[test]
fn cnpg_plugin_cluster_without_window_for_its_server_name_has_no_backup() {
    let mut objects = cnpg_fixture(condition("LastBackupSucceeded", "True", "LastBackupSucceeded", "2026-11-25T03:00:00Z"));
    // serverName bumped to r3 (archive reset) but no base backup in the new prefix yet.
    objects[3]["spec"]["plugins"][0]["parameters"]["serverName"] = json!("postgres-r3");
    let f = findings(objects);
    assert_eq!(f.cnpg[0].last_successful_backup, None);
    assert!(f.cnpg[0].backup_stale);
}

#[test]
fn cnpg_archiving_failing_since_transition() {
    let f = findings(vec![cnpg_cluster(
        "media",
        "immich-postgres",
        "immich-postgres-1",
        vec![{
            let mut c = condition("ContinuousArchiving", "False", "ContinuousArchivingFailing", "2026-10-29T04:12:00Z");
            c["message"] = json!("Expected empty archive");
            c
        }],
        "immich-postgres",
    )]);
    let c = &f.cnpg[0];
    assert_eq!(c.archiving_ok, Some(false));
    assert_eq!(c.archiving_since, Some(at("2026-10-29T04:12:00Z")));
    assert_eq!(c.archiving_message.as_deref(), Some("Expected empty archive"));
    assert!(c.backup_stale, "no ObjectStore window at all");
}

#[test]
fn cnpg_five_field_schedule_is_a_dialect_problem() {
    let f = findings(vec![scheduled_backup("database", "every-6h", "postgres", "0 */6 * * *")]);
    let p = f.config_problems.iter().find(|p| p.problem == "cron_dialect").expect("dialect problem");
    assert_eq!(p.name, "every-6h");
    assert!(p.message.contains("seconds first"), "{}", p.message);
    let f = findings(vec![scheduled_backup("database", "ok", "postgres", "0 0 */6 * * *")]);
    assert!(f.config_problems.is_empty(), "{:?}", f.config_problems);
}

#[test]
fn volsync_paused_source_is_never_fresh() {
    let f = findings(vec![
        replication_source("apps", "paused", "paused", "0 * * * *", true, Some("2026-11-25T11:55:00Z"), "Successful"),
        replication_destination("apps", "paused-dst", Some("paused")),
    ]);
    let v = f.volsync.iter().find(|v| v.name == "paused").unwrap();
    assert!(v.paused);
    assert!(v.stale, "a paused kopia source reports a fresh lastSyncTime without running");
}

#[test]
fn volsync_staleness_follows_the_schedule() {
    let f = findings(vec![
        replication_source("apps", "hourly-fresh", "a", "0 * * * *", false, Some("2026-11-25T11:20:00Z"), "Successful"),
        replication_source("apps", "hourly-late", "b", "0 * * * *", false, Some("2026-11-25T09:20:00Z"), "Successful"),
        replication_source("apps", "daily", "c", "@daily", false, Some("2026-11-24T06:00:00Z"), "Successful"),
        replication_source("apps", "never", "d", "0 * * * *", false, None, "Successful"),
        replication_source("apps", "failing", "e", "0 * * * *", false, Some("2026-11-25T11:20:00Z"), "Failed"),
    ]);
    let get = |n: &str| f.volsync.iter().find(|v| v.name == n && v.role == Role::Source).unwrap();
    assert!(!get("hourly-fresh").stale);
    // 2h40m > 2 x 1h + 30m grace
    assert!(get("hourly-late").stale);
    assert_eq!(get("daily").interval_seconds, Some(86400));
    assert!(!get("daily").stale, "30h is within 2 days + grace");
    assert!(get("never").stale, "never synced, created long ago");
    assert!(get("failing").mover_failed);
    assert!(!get("failing").stale);
}

#[test]
fn volsync_orphaned_destination_and_source_without_destination() {
    let f = findings(vec![
        replication_source("apps", "lonely", "lonely", "0 * * * *", false, Some("2026-11-25T11:30:00Z"), "Successful"),
        replication_destination("apps", "oldapp-dst", None),
        replication_source("apps", "paired", "paired", "0 * * * *", false, Some("2026-11-25T11:30:00Z"), "Successful"),
        replication_destination("apps", "paired-dst", Some("paired")),
        pvc("apps", "paired", "pv-paired", json!({})),
    ]);
    let rd = |n: &str| f.volsync.iter().find(|v| v.name == n && v.role == Role::Destination).unwrap();
    assert!(rd("oldapp-dst").orphaned);
    assert!(!rd("paired-dst").orphaned);
    let no_dest: Vec<&str> = f.config_problems.iter().filter(|p| p.problem == "no_destination").map(|p| p.name.as_str()).collect();
    assert_eq!(no_dest, vec!["lonely"]);
}

#[test]
fn volsync_cache_pvc_on_lost_node() {
    let f = findings(vec![
        node("node-01", "Unknown", "2026-11-25T10:00:00Z"),
        replication_source("apps", "app", "app", "0 * * * *", false, Some("2026-11-25T11:30:00Z"), "Successful"),
        pv_pinned("pv-cache", "kubernetes.io/hostname", "node-01", "apps", "volsync-src-app-cache"),
        pvc("apps", "volsync-src-app-cache", "pv-cache", json!({})),
    ]);
    let v = f.volsync.iter().find(|v| v.name == "app").unwrap();
    assert_eq!(v.cache_pvc_lost_node.as_deref(), Some("node-01"));
}

#[test]
fn backup_cronjob_staleness() {
    let f = findings(vec![
        cron_job("identity", "kanidm-backup-sync", "0 * * * *", Some("2026-11-25T11:00:30Z")),
        cron_job("database", "mariadb-backup", "0 2 * * *", Some("2026-11-16T02:00:00Z")),
        cron_job("default", "not-a-b4ckup", "0 * * * *", None),
    ]);
    let names: Vec<&str> = f.backup_cronjobs.iter().map(|c| c.cronjob.as_str()).collect();
    assert_eq!(names, vec!["mariadb-backup", "kanidm-backup-sync"]);
    assert!(f.backup_cronjobs.iter().find(|c| c.cronjob == "mariadb-backup").unwrap().stale);
    assert!(!f.backup_cronjobs.iter().find(|c| c.cronjob == "kanidm-backup-sync").unwrap().stale);
}

#[test]
fn flux_suspended_and_not_ready() {
    let f = findings(vec![kustomization("flux-system", "teslamate", true, "True"), kustomization("flux-system", "forgejo", false, "False")]);
    let t = f.flux.iter().find(|x| x.name == "teslamate").unwrap();
    assert!(t.suspended);
    assert_eq!(t.ready, Some(true), "a suspended object keeps its old Ready");
    assert_eq!(f.flux.iter().find(|x| x.name == "forgejo").unwrap().ready, Some(false));
}

#[test]
fn protection_coverage_flags_node_local_pvc_without_source() {
    let f = findings(vec![
        node("node-02", "True", "2026-11-01T00:00:00Z"),
        pv_pinned("pv-u", "kubernetes.io/hostname", "node-02", "apps", "unprotected"),
        pvc("apps", "unprotected", "pv-u", json!({})),
        pv_pinned("pv-v", "kubernetes.io/hostname", "node-02", "apps", "app"),
        pvc("apps", "app", "pv-v", json!({})),
        replication_source("apps", "app", "app", "0 * * * *", false, Some("2026-11-25T11:30:00Z"), "Successful"),
        replication_destination("apps", "app-dst", Some("app")),
        cron_job("identity", "kanidm-backup-sync", "0 * * * *", Some("2026-11-25T11:00:30Z")),
        pv_pinned("pv-k", "kubernetes.io/hostname", "node-02", "identity", "kanidm-data-kanidm-default-0"),
        pvc("identity", "kanidm-data-kanidm-default-0", "pv-k", json!({})),
    ]);
    let p = |n: &str| f.protection.iter().find(|p| p.pvc == n).unwrap();
    assert_eq!(p("unprotected").source, Source::None);
    assert!(p("unprotected").unprotected());
    assert_eq!(p("app").source, Source::Volsync);
    assert_eq!(p("app").fresh, Some(true));
    assert_eq!(p("kanidm-data-kanidm-default-0").source, Source::BackupCronJob);
}

#[test]
fn garage_sidecar_present_absent_and_restarts() {
    let mut with_sidecar = pod("volsync-system", "garage-abc", "node-02", &[], json!({"app.kubernetes.io/name": "garage"}), None);
    with_sidecar["spec"]["containers"] = json!([{"name": "app"}, {"name": "backup-sync"}]);
    with_sidecar["status"] = json!({"phase": "Running", "containerStatuses": [
        {"name": "app", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2026-11-20T00:00:00Z"}}},
        {"name": "backup-sync", "ready": true, "restartCount": 3, "state": {"running": {"startedAt": "2026-11-25T10:00:00Z"}},
         "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]});
    let without = pod("volsync-system", "garage-def", "node-03", &[], json!({"app.kubernetes.io/name": "garage"}), None);
    let f = findings(vec![with_sidecar, without]);
    let g = |n: &str| f.garage.pods.iter().find(|p| p.pod == n).unwrap();
    assert!(g("garage-abc").sidecar_present && g("garage-abc").sidecar_running);
    assert_eq!(g("garage-abc").sidecar_restarts, 3);
    assert_eq!(g("garage-abc").sidecar_last_exit_code, Some(1));
    assert!(!g("garage-def").sidecar_present);
}

#[test]
fn garage_newest_snapshot_is_read_from_the_backup_directory() {
    let dir = tempfile::tempdir().unwrap();
    for ts in ["2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z"] {
        let snap = dir.path().join("snapshots").join(ts);
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("data.mdb"), b"lmdb").unwrap();
    }
    // A newer directory without data.mdb is not a usable snapshot.
    std::fs::create_dir_all(dir.path().join("snapshots/2026-11-25T00:00:00Z")).unwrap();
    assert_eq!(lifeboat::probes::newest_snapshot(dir.path()), Ok(at("2026-11-24T00:00:00Z")));
    let empty = tempfile::tempdir().unwrap();
    assert!(lifeboat::probes::newest_snapshot(empty.path()).unwrap_err().contains("snapshots"));
}

#[tokio::test]
async fn garage_admin_api_health_with_and_without_token() {
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;
    use axum::Json;
    let app = axum::Router::new().route("/health", get(|| async { StatusCode::OK })).route(
        "/v2/GetClusterHealth",
        get(|headers: HeaderMap| async move {
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer s3cret") {
                return Err(StatusCode::FORBIDDEN);
            }
            Ok(Json(json!({"status": "degraded", "knownNodes": 1, "connectedNodes": 1})))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");

    let mut config = lifeboat::config::GarageConfig { admin_url: Some(url.clone()), ..Default::default() };
    assert_eq!(lifeboat::probes::admin_health(&client, &config).await, (Some(true), Some("healthy".into())), "no token: /health");

    std::fs::write(&token_file, "s3cret\n").unwrap();
    config.admin_token_file = Some(token_file.clone());
    assert_eq!(lifeboat::probes::admin_health(&client, &config).await, (Some(false), Some("degraded".into())), "token: cluster health");

    std::fs::write(&token_file, "wrong").unwrap();
    let (healthy, status) = lifeboat::probes::admin_health(&client, &config).await;
    assert_eq!(healthy, Some(false));
    assert!(status.unwrap().contains("403"));

    config.admin_url = Some("http://127.0.0.1:1".into());
    config.admin_token_file = None;
    let (healthy, status) = lifeboat::probes::admin_health(&client, &config).await;
    assert_eq!(healthy, Some(false));
    assert!(status.unwrap().contains("unreachable"));
}
