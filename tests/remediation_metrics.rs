//! The remediation metrics `serve` refreshes (`remediator::stats::refresh`) on the
//! real apiserver: the kill switch gauge follows the ConfigMap an operator
//! creates and deletes, and the config flag; runs come from the journal.

mod support;

use std::sync::Arc;

use chrono::{Duration, Utc};
use lifeboat::config::{Config, RemediationConfig};
use lifeboat::inspect::garage::GarageProbe;
use lifeboat::journal::{Journal, Mode, RunRecord, RunTrigger};
use lifeboat::plan::{Action, ObjectRef, Plan, Step};
use lifeboat::snapshot::{Hub, Snapshot};
use support::controlplane::control_plane;
use support::fixtures::state;
use support::metrics::{parse, value};

fn scrape(stats: lifeboat::remediator::stats::RemediationStats) -> Vec<support::metrics::Sample> {
    let config = Config::default();
    let hub = Arc::new(Hub::new(config.clone(), Snapshot::build(state("2026-11-25T12:00:00Z", vec![]), &config, &GarageProbe::default()), None));
    hub.self_metrics.publish(stats);
    parse(&lifeboat::metrics::render(&hub).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_gauge_follows_the_configmap_and_the_config() {
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "stats-kill").await;
    let config = RemediationConfig { namespace: Some(ns.clone()), ..RemediationConfig::default() };
    let journal = Journal::cluster(client.clone(), ns.clone());
    let rd = ObjectRef::namespaced("volsync.backube/v1alpha1", "ReplicationDestination", "apps", "gone-dst");
    let step = Step { id: "delete".into(), title: "delete".into(), action: Action::Delete { object: rd }, needs: vec![], preconditions: vec![], recovery_source: None };
    let plan = Plan { steps: vec![step], ..Plan::new("stale-cleanup", "namespace apps") };
    let requested = Utc::now() - Duration::minutes(40);
    journal.create(&RunRecord::new(&plan, RunTrigger::default(), Mode::Approve, "alertmanager", requested)).await.unwrap();

    let engaged = |stats: lifeboat::remediator::stats::RemediationStats| value(&scrape(stats), "lifeboat_remediation_kill_switch_engaged", &[]);
    let stats = lifeboat::remediator::stats::refresh(&journal, &client, &config, false).await.unwrap();
    let wait = stats.approval_wait.get("stale-cleanup").copied().expect("the run awaits approval");
    assert!((40.0 * 60.0..=50.0 * 60.0).contains(&wait), "waiting since it was requested 40 minutes ago: {wait}");
    assert_eq!(engaged(stats), Some(0.0));

    lifeboat::act::kill_switch::engage(&client, &ns, "test", "drill").await.unwrap();
    assert_eq!(engaged(lifeboat::remediator::stats::refresh(&journal, &client, &config, false).await.unwrap()), Some(1.0));

    lifeboat::act::kill_switch::release(&client, &ns).await.unwrap();
    assert_eq!(engaged(lifeboat::remediator::stats::refresh(&journal, &client, &config, false).await.unwrap()), Some(0.0));

    let flagged = RemediationConfig { kill_switch: true, ..config };
    assert_eq!(engaged(lifeboat::remediator::stats::refresh(&journal, &client, &flagged, false).await.unwrap()), Some(1.0), "remediation.killSwitch");
}
