//! The shipped example (examples/node-loss) analysed end to end: what its
//! README says a correct analysis must find, lifeboat finds.

mod support;

use std::path::Path;
use std::sync::Arc;

use lifeboat::cluster::dump;
use lifeboat::config::Config;
use lifeboat::inspect::garage::GarageProbe;
use lifeboat::snapshot::{Hub, Snapshot};
use lifeboat::triage::{triage, Category};
use support::metrics::{parse, value};

fn example() -> Snapshot {
    let (state, summary) = dump::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node-loss")).expect("example loads");
    assert!(summary.objects > 100, "{summary:?}");
    assert_eq!(state.now, support::fixtures::at("2026-11-25T12:00:00Z"), "capture.yaml sets the evaluation time");
    Snapshot::build(state, &Config::default(), &GarageProbe::default())
}

#[test]
fn triage_classifies_every_affected_workload() {
    let snap = example();
    let report = triage(&snap.state, &snap.findings, None);
    let lost: Vec<(&str, bool)> = report.unavailable_nodes.iter().map(|n| (n.node.as_str(), n.lost)).collect();
    assert_eq!(lost, vec![("node-01-pve", true), ("node-04-pve", true)]);
    let mut got: Vec<(Category, String, String)> = report.workloads.iter().map(|w| (w.category, w.namespace.clone(), w.workload.clone())).collect();
    got.sort();
    let expected = vec![
        (Category::CnpgInstance, "database", "Cluster postgres (instance postgres-1)"),
        (Category::MariadbInstance, "database", "MariaDB mariadb (instance mariadb-0)"),
        (Category::VolsyncApp, "media", "Deployment radarr"),
        (Category::VolsyncApp, "media", "Deployment sonarr"),
        (Category::VolsyncApp, "utils", "Deployment forgejo"),
        (Category::S3BackupApp, "identity", "StatefulSet kanidm-default"),
        (Category::WaitingOnDatabase, "kube-system", "Deployment kguardian-broker"),
        (Category::WaitingOnDatabase, "observability", "Deployment teslamate"),
        (Category::Stale, "utils", "ReplicationDestination oldapp-dst"),
    ];
    let mut expected: Vec<(Category, String, String)> = expected.into_iter().map(|(c, n, w)| (c, n.to_string(), w.to_string())).collect();
    expected.sort();
    assert_eq!(got, expected);

    let pg = report.workloads.iter().find(|w| w.category == Category::CnpgInstance).unwrap();
    assert!(pg.detail.as_deref().unwrap_or("").contains("primary"), "postgres-1 is the primary: switchover first");
    let mariadb = report.workloads.iter().find(|w| w.category == Category::MariadbInstance).unwrap();
    assert_eq!(mariadb.pvcs, vec!["galera-mariadb-0", "storage-mariadb-0"]);
    let radarr = report.workloads.iter().find(|w| w.workload == "Deployment radarr").unwrap();
    assert_eq!(radarr.source_fresh, Some(false), "paused source is never fresh");
    let forgejo = report.workloads.iter().find(|w| w.workload == "Deployment forgejo").unwrap();
    assert_eq!(forgejo.source_fresh, Some(true));
    assert!(report.anything_wrong());
}

#[test]
fn triage_can_focus_on_one_node() {
    let snap = example();
    let report = triage(&snap.state, &snap.findings, Some("node-04-pve"));
    assert_eq!(report.pinned_volumes.len(), 1);
    assert_eq!(report.pinned_volumes[0].claim_name.as_deref(), Some("volsync-dst-oldapp-dst-cache"));
    assert!(report.workloads.iter().all(|w| w.category == Category::Stale));
}

#[test]
fn warnings_cover_every_recovery_point_problem() {
    let snap = example();
    let warnings = triage(&snap.state, &snap.findings, None).warnings.join("\n");
    for needle in [
        "CNPG media/immich-postgres: WAL archiving failing since 2026-10-29T04:12:00",
        "CNPG media/immich-postgres: last backup failed",
        "VolSync source media/radarr: paused",
        "VolSync source media/sonarr: stale",
        "VolSync source media/bazarr: mover failing",
        "backup CronJob database/mariadb-backup: no recent success",
        "PVC default/librespeed: node-local on node-02-pve with no recovery source",
        "Flux Kustomization observability/teslamate: suspended",
        "ReplicationSource database/dbgate: no ReplicationDestination",
        "metadata-backup sidecar restarted 3 times",
    ] {
        assert!(warnings.contains(needle), "missing warning {needle:?} in:\n{warnings}");
    }
    for absent in ["CNPG database/postgres: last backup failed", "kanidm-backup-sync: no recent success", "forgejo: stale"] {
        assert!(!warnings.contains(absent), "unexpected warning {absent:?} in:\n{warnings}");
    }
}

#[test]
fn metrics_for_the_example() {
    let hub = Arc::new(Hub::new(Config::default(), example(), None));
    let s = parse(&lifeboat::metrics::render(&hub).unwrap());
    assert_eq!(value(&s, "lifeboat_node_lost", &[("node", "node-01-pve")]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_node_lost", &[("node", "node-04-pve"), ("reason", "missing")]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_node_pinned_volumes", &[("node", "node-01-pve")]), Some(8.0));
    assert_eq!(value(&s, "lifeboat_volume_pinned_to_lost_node", &[("persistentvolumeclaim", "sonarr")]), Some(1.0), "pinned by topolvm key");
    assert_eq!(value(&s, "lifeboat_cnpg_primary_on_lost_node", &[("cluster", "postgres")]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_cnpg_last_backup_state", &[("cluster", "postgres"), ("state", "in_progress")]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_cnpg_continuous_archiving_ok", &[("cluster", "immich-postgres")]), Some(0.0));
    assert_eq!(
        value(&s, "lifeboat_cnpg_last_successful_backup_timestamp_seconds", &[("cluster", "postgres")]),
        Some(support::fixtures::at("2026-11-25T03:00:12Z").timestamp() as f64)
    );
    assert_eq!(value(&s, "lifeboat_volsync_stale", &[("name", "radarr")]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_volsync_stale", &[("name", "forgejo")]), Some(0.0));
    assert_eq!(value(&s, "lifeboat_volsync_destination_orphaned", &[("name", "oldapp-dst")]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_garage_meta_backup_sidecar_restarts", &[]), Some(3.0));
    assert_eq!(value(&s, "lifeboat_pvc_unprotected", &[("persistentvolumeclaim", "librespeed")]), Some(1.0));
    assert_eq!(value(&s, "lifeboat_backup_cronjob_stale", &[("cronjob", "mariadb-backup")]), Some(1.0));
}

#[test]
fn plans_from_the_dump_are_deterministic_and_valid() {
    use lifeboat::plan::playbooks::{plan, Trigger};
    let trigger = Trigger { namespace: Some("database".into()), name: Some("postgres".into()), node: None };
    let a = example();
    let b = example();
    let plan_a = plan("cnpg-instance-lost", &a.state, &a.findings, &trigger).unwrap();
    let plan_b = plan("cnpg-instance-lost", &b.state, &b.findings, &trigger).unwrap();
    assert_eq!(plan_a.hash(), plan_b.hash());
    plan_a.validate().unwrap();
    assert!(matches!(&plan_a.steps[0].action, lifeboat::plan::Action::PromoteCnpg { pod, .. } if pod == "postgres-2"));
    let destructive: Vec<_> = plan_a.steps.iter().filter(|s| s.destroys_data()).collect();
    assert_eq!(destructive.len(), 2, "postgres-1 marked for deletion before its pod, then seen gone");
    for d in &destructive {
        assert!(d.recovery_source.is_some());
        assert!(d.preconditions.iter().any(|p| matches!(p, lifeboat::plan::Precondition::NodeStillLost { node } if node == "node-01-pve")));
    }
    // The other CNPG cluster has nothing on the lost node: nothing to do.
    let other = Trigger { namespace: Some("media".into()), name: Some("immich-postgres".into()), node: None };
    assert!(plan("cnpg-instance-lost", &a.state, &a.findings, &other).unwrap().nothing_to_do());
    assert!(plan("no-such-playbook", &a.state, &a.findings, &other).is_err());
    let stale = plan("stale-cleanup", &a.state, &a.findings, &Trigger::default()).unwrap();
    assert_eq!(stale.steps.len(), 1);
}

#[test]
fn a_changed_plan_gets_a_different_hash() {
    use lifeboat::plan::playbooks::{plan, Trigger};
    let snap = example();
    let trigger = Trigger { namespace: Some("database".into()), name: Some("postgres".into()), node: None };
    let original = plan("cnpg-instance-lost", &snap.state, &snap.findings, &trigger).unwrap();
    let mut changed = original.clone();
    if let lifeboat::plan::Action::PromoteCnpg { pod, .. } = &mut changed.steps[0].action {
        *pod = "postgres-3".into();
    }
    assert_ne!(original.hash(), changed.hash());
    let mut reworded = original.clone();
    reworded.findings.push("ages move; the hash does not".into());
    assert_eq!(original.hash(), reworded.hash());
}
