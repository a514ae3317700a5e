//! /metrics is valid OpenMetrics (parsed by a real parser), every sample is
//! in the catalog with exactly the catalog's labels, and values follow the
//! findings.

mod support;

use std::sync::Arc;

use lifeboat::config::Config;
use lifeboat::inspect::garage::GarageProbe;
use lifeboat::metrics::catalog;
use lifeboat::snapshot::{Hub, Snapshot};
use serde_json::json;
use support::fixtures::*;
use support::metrics::{parse, value};

fn render(objects: Vec<serde_json::Value>) -> Vec<support::metrics::Sample> {
    let config = Config::default();
    let snapshot = Snapshot::build(state("2026-11-25T12:00:00Z", objects), &config, &GarageProbe::default());
    let hub = Arc::new(Hub::new(config, snapshot, None));
    parse(&lifeboat::metrics::render(&hub).expect("encodes"))
}

fn incident() -> Vec<serde_json::Value> {
    vec![
        node("node-01", "Unknown", "2026-11-25T11:20:00Z"),
        node("node-02", "True", "2026-11-01T00:00:00Z"),
        pv_pinned("pv-pg1", "kubernetes.io/hostname", "node-01", "database", "postgres-1"),
        pvc("database", "postgres-1", "pv-pg1", json!({"cnpg.io/cluster": "postgres"})),
        pod("database", "postgres-1", "node-01", &["postgres-1"], json!({"cnpg.io/cluster": "postgres"}), None),
        cnpg_cluster(
            "database",
            "postgres",
            "postgres-1",
            vec![
                condition("ContinuousArchiving", "True", "ContinuousArchivingSuccess", "2026-11-20T00:00:00Z"),
                condition("LastBackupSucceeded", "False", "BackupStarted", "2026-11-25T11:59:00Z"),
            ],
            "postgres-r2",
        ),
        object_store("database", "cnpg-garage", "postgres-r2", "2026-11-18T03:00:00Z", "2026-11-25T03:00:12Z"),
        replication_source("apps", "forgejo", "forgejo", "0 * * * *", true, Some("2026-11-25T11:55:00Z"), "Successful"),
        kustomization("flux-system", "teslamate", true, "True"),
        cron_job("identity", "kanidm-backup-sync", "0 * * * *", Some("2026-11-25T11:00:30Z")),
    ]
}

#[test]
fn every_sample_is_in_the_catalog_with_its_labels() {
    let samples = render(incident());
    assert!(samples.len() > 40, "expected a full exposition, got {}", samples.len());
    for s in &samples {
        let def = catalog::find(&s.name).unwrap_or_else(|| panic!("{} is not in the catalog", s.name));
        let labels: Vec<&str> = s.labels.keys().map(String::as_str).collect();
        let mut expected: Vec<&str> = def.labels.to_vec();
        expected.sort();
        assert_eq!(labels, expected, "labels of {}", s.name);
        assert!(s.name.starts_with("lifeboat_"));
    }
}

#[test]
fn catalog_names_follow_conventions() {
    for m in catalog::ALL {
        assert!(m.name.starts_with("lifeboat_"), "{}", m.name);
        match m.kind {
            catalog::Kind::Counter => assert!(m.name.ends_with("_total"), "{}", m.name),
            catalog::Kind::Gauge => assert!(!m.name.ends_with("_total"), "{}", m.name),
        }
        assert!(!m.help.is_empty());
        let dupes = catalog::ALL.iter().filter(|o| o.name == m.name).count();
        assert_eq!(dupes, 1, "{} listed twice", m.name);
    }
}

#[test]
fn values_follow_the_findings() {
    let s = render(incident());
    assert_eq!(value(&s, "lifeboat_node_lost", &[("node", "node-01"), ("reason", "not_ready")]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_node_lost", &[("node", "node-02")]), None, "Ready nodes are not listed");
    assert_eq!(value(&s, "lifeboat_node_pinned_volumes", &[("node", "node-01")]), Some(1.0));
    assert_eq!(
        value(&s, "lifeboat_volume_pinned_to_lost_node", &[("persistentvolume", "pv-pg1"), ("persistentvolumeclaim", "postgres-1"), ("storageclass", "openebs-hostpath")]),
        Some(1.0)
    );
    assert_eq!(value(&s, "lifeboat_pod_blocked_on_lost_volume", &[("pod", "postgres-1")]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_cnpg_last_backup_state", &[("cluster", "postgres"), ("state", "in_progress")]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_cnpg_last_backup_state", &[("cluster", "postgres"), ("state", "failed")]), Some(0.0));
    assert_eq!(
        value(&s, "lifeboat_cnpg_last_successful_backup_timestamp_seconds", &[("cluster", "postgres"), ("source", "objectstore")]),
        Some(at("2026-11-25T03:00:12Z").timestamp() as f64)
    );
    assert_eq!(value(&s, "lifeboat_cnpg_primary_on_lost_node", &[("cluster", "postgres"), ("pod", "postgres-1"), ("node", "node-01")]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_cnpg_continuous_archiving_ok", &[("cluster", "postgres")]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_volsync_stale", &[("name", "forgejo")]), Some(1.0), "paused");
    assert_eq!(value(&s, "lifeboat_volsync_paused", &[("name", "forgejo"), ("role", "source")]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_flux_suspended", &[("kind", "Kustomization"), ("name", "teslamate")]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_backup_cronjob_stale", &[("cronjob", "kanidm-backup-sync")]), Some(0.0));
    assert_eq!(value(&s, "lifeboat_backup_config_problem", &[("name", "forgejo"), ("problem", "no_destination")]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_garage_pods", &[("namespace", "volsync-system")]), Some(0.0));
    assert_eq!(value(&s, "lifeboat_build_info", &[]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_watch_up", &[("kind", "cnpg.Cluster")]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_objects", &[("kind", "core.Node")]), Some(2.0));
}

#[test]
fn remediation_metrics_come_from_the_journal() {
    use lifeboat::config::Mode;
    use lifeboat::journal::{RunRecord, RunTrigger};
    use lifeboat::remediator::stats::RemediationStats;
    let (state, _) = lifeboat::cluster::dump::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/node-loss"))).unwrap();
    let snap = Snapshot::build(state, &Config::default(), &GarageProbe::default());
    let trigger = lifeboat::plan::playbooks::Trigger { namespace: Some("database".into()), name: Some("postgres".into()), node: None };
    let plan = lifeboat::plan::playbooks::plan("cnpg-instance-lost", &snap.state, &snap.findings, &trigger).unwrap();
    let steps = plan.steps.len() as f64;
    let requested = at("2026-11-25T11:00:00Z");
    let waiting = RunRecord::new(&plan, RunTrigger::from(&trigger), Mode::Approve, "alertmanager", requested);
    let mut done = RunRecord::new(&plan, RunTrigger::from(&trigger), Mode::Auto, "alertmanager", requested);
    done.status.phase = lifeboat::journal::Phase::Succeeded;
    done.status.finished_at = Some(at("2026-11-25T11:50:00Z"));
    let stats = RemediationStats::from_records(&[waiting, done], true, at("2026-11-25T12:00:00Z"));
    assert_eq!(stats.active, 1);

    let config = Config::default();
    let hub = Arc::new(Hub::new(config.clone(), Snapshot::build(state_of_nothing(), &config, &GarageProbe::default()), None));
    hub.self_metrics.publish(stats);
    let s = parse(&lifeboat::metrics::render(&hub).unwrap());
    assert_eq!(value(&s, "lifeboat_remediation_leader", &[]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_remediation_active_runs", &[]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_remediation_runs", &[("playbook", "cnpg-instance-lost"), ("phase", "awaiting_approval")]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_remediation_runs", &[("playbook", "cnpg-instance-lost"), ("phase", "succeeded")]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_remediation_steps", &[("playbook", "cnpg-instance-lost"), ("state", "pending")]), Some(2.0 * steps), "two runs of the plan's steps");
    assert_eq!(value(&s, "lifeboat_remediation_time_in_phase_seconds", &[("phase", "awaiting_approval")]), Some(3600.0));
    assert_eq!(value(&s, "lifeboat_remediation_active_steps", &[("playbook", "cnpg-instance-lost"), ("state", "pending")]), Some(steps), "the waiting run only");
    assert_eq!(value(&s, "lifeboat_remediation_approval_wait_seconds", &[("playbook", "cnpg-instance-lost")]), Some(3600.0));
    assert_eq!(value(&s, "lifeboat_remediation_approval_window_seconds", &[]), Some(3600.0), "remediation.approvalTtl, default 1h");
    assert_eq!(value(&s, "lifeboat_remediation_last_finished_timestamp_seconds", &[("playbook", "cnpg-instance-lost"), ("phase", "succeeded")]), Some(1795607400.0));
    assert_eq!(value(&s, "lifeboat_remediation_kill_switch_engaged", &[]), Some(0.0));
    for sample in &s {
        let def = catalog::find(&sample.name).unwrap();
        let mut expected: Vec<&str> = def.labels.to_vec();
        expected.sort();
        assert_eq!(sample.labels.keys().map(String::as_str).collect::<Vec<_>>(), expected, "{}", sample.name);
    }
}

#[test]
fn flux_objects_a_run_keeps_suspended_are_listed() {
    let kept = |ns: &str, name: &str, suspended: bool| {
        let mut k = kustomization(ns, name, suspended, "True");
        k["metadata"]["annotations"] = json!({
            "lifeboat.dev/kept-suspended": "by lifeboat wal-archive-reset for database/postgres",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
        });
        k
    };
    let s = render(vec![
        kept("database", "postgres", true),
        // Resumed by hand: `flux resume` leaves the annotation behind.
        kept("apps", "forgejo", false),
        kustomization("flux-system", "teslamate", true, "True"),
    ]);
    let held = |ns: &str, name: &str| value(&s, "lifeboat_remediation_flux_kept_suspended", &[("kind", "Kustomization"), ("namespace", ns), ("name", name)]);
    assert_eq!(held("database", "postgres"), Some(1.0));
    assert_eq!(held("apps", "forgejo"), None, "not suspended any more");
    assert_eq!(held("flux-system", "teslamate"), None, "suspended, but not by a run");
    assert_eq!(value(&s, "lifeboat_flux_suspended", &[("kind", "Kustomization"), ("namespace", "flux-system"), ("name", "teslamate")]), Some(1.0));
}

fn state_of_nothing() -> lifeboat::cluster::ClusterState {
    state("2026-11-25T12:00:00Z", vec![])
}

/// The findings families are encoded once per snapshot: scrapes of one
/// snapshot share that encoding, and the first scrape after a new snapshot
/// is published shows the new findings, not the previous snapshot's.
#[test]
fn scrapes_share_a_snapshots_encoding_until_the_next_snapshot() {
    let config = Config::default();
    let quiet = Snapshot::build(state_of_nothing(), &config, &GarageProbe::default());
    let hub = Arc::new(Hub::new(config.clone(), quiet, None));
    let first = lifeboat::metrics::render_parts(&hub).unwrap();
    let second = lifeboat::metrics::render_parts(&hub).unwrap();
    assert_eq!(first.findings.as_ptr(), second.findings.as_ptr(), "one encoding for both scrapes");
    let before = parse(&lifeboat::metrics::render(&hub).unwrap());
    assert_eq!(value(&before, "lifeboat_node_lost", &[("node", "node-01")]), None);

    hub.publish(Snapshot::build(state("2026-11-25T12:00:00Z", incident()), &config, &GarageProbe::default()));
    let after = parse(&lifeboat::metrics::render(&hub).unwrap());
    assert_eq!(value(&after, "lifeboat_node_lost", &[("node", "node-01"), ("reason", "not_ready")]), Some(1.0));
    assert_eq!(value(&after, "lifeboat_objects", &[("kind", "core.Node")]), Some(2.0));
}

/// Over HTTP, /metrics is gzip-compressed when the scraper asks for it (as
/// Prometheus does) and plain otherwise; both carry the same exposition.
#[tokio::test]
async fn metrics_are_gzipped_when_the_scraper_asks() {
    use std::io::Read as _;
    let config = Config::default();
    let snapshot = Snapshot::build(state("2026-11-25T12:00:00Z", incident()), &config, &GarageProbe::default());
    let hub = Arc::new(Hub::new(config, snapshot, None));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, lifeboat::server::router(hub)).await });
    let http = reqwest::Client::new();

    let plain = http.get(&url).send().await.unwrap();
    assert_eq!(plain.headers().get("content-encoding"), None);
    let plain = plain.text().await.unwrap();

    // "gzip" is what Prometheus sends with scrape compression on (its default); the others are RFC 9110 forms.
    for accept in ["gzip", "deflate, gzip;q=0.8", "*"] {
        let gzipped = http.get(&url).header("accept-encoding", accept).send().await.unwrap();
        assert_eq!(gzipped.headers().get("content-encoding").map(|v| v.to_str().unwrap()), Some("gzip"), "for {accept}");
        let compressed = gzipped.bytes().await.unwrap();
        let mut body = String::new();
        flate2::read::GzDecoder::new(&compressed[..]).read_to_string(&mut body).expect("a gzip stream");
        assert!(compressed.len() < plain.len() / 3, "{} bytes compressed from {}", compressed.len(), plain.len());
        assert_eq!(without_scrape_timing(&body), without_scrape_timing(&plain));
    }
    for refused in ["identity", "gzip;q=0", "br"] {
        let response = http.get(&url).header("accept-encoding", refused).send().await.unwrap();
        assert_eq!(response.headers().get("content-encoding"), None, "for {refused}");
        parse(&response.text().await.unwrap());
    }
}

/// The lines that differ between two scrapes: the previous render's duration and the snapshot's age.
fn without_scrape_timing(body: &str) -> Vec<&str> {
    body.lines().filter(|l| !l.contains("scrape_duration") && !l.contains("snapshot_age")).collect()
}
