//! stale-cleanup on the real apiserver with the real VolSync CRDs.

mod support;

use std::time::Duration;

use lifeboat::act::runner::{execute, Outcome, RunLimits, StepStatus};
use lifeboat::config::Config;
use lifeboat::plan::playbooks::{plan, Trigger};
use lifeboat::snapshot::Snapshot;
use support::controlplane::control_plane;
use support::fixtures::*;
use support::k8s::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_orphaned_destinations_only_while_they_stay_orphaned() {
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "stale").await;
    create(&client, replication_destination(&ns, "oldapp-dst", None), None).await;
    create(&client, replication_destination(&ns, "comeback-dst", None), None).await;
    create(&client, replication_source(&ns, "live", "live", "0 * * * *", false, None, "Successful"), None).await;
    create(&client, replication_destination(&ns, "live-dst", Some("live")), None).await;

    let config = Config { discovery_interval: lifeboat::config::Dur::secs(1), ..Config::default() };
    let hub = lifeboat::cli::start_live_hub(config.clone(), client.clone());
    lifeboat::cli::wait_ready(&hub, Duration::from_secs(60)).await.unwrap();
    let snapshot = Snapshot::build(hub.live.as_ref().unwrap().snapshot(), &config, &Default::default());
    let stale_plan = plan("stale-cleanup", &snapshot.state, &snapshot.findings, &Trigger { namespace: Some(ns.clone()), ..Default::default() }).unwrap();
    let ids: Vec<&str> = stale_plan.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, vec![format!("delete-rd-{ns}-comeback-dst"), format!("delete-rd-{ns}-oldapp-dst")]);

    // Between planning and running, the "comeback" app is restored from Git.
    create(&client, replication_source(&ns, "comeback", "comeback", "0 * * * *", false, None, "Successful"), None).await;
    let report = execute(&client, &stale_plan, &stale_plan.hash(), &RunLimits::default()).await;
    // The two deletions are independent branches: the refused one stops, the other goes on.
    assert_eq!(report.outcome, Outcome::Stopped);
    assert!(matches!(&report.steps[0].status, StepStatus::Refused { reason } if reason.contains("ReplicationSource")), "{report:#?}");
    assert!(matches!(&report.steps[1].status, StepStatus::Succeeded { .. }), "{report:#?}");
    let rds = api_for(&client, "volsync.backube/v1alpha1", "ReplicationDestination", Some(&ns)).await;
    assert!(rds.get_opt("comeback-dst").await.unwrap().is_some(), "refused: its source came back");
    assert!(rds.get_opt("oldapp-dst").await.unwrap().is_none());
    assert!(rds.get_opt("live-dst").await.unwrap().is_some());

    // Re-planned from the new state: nothing is orphaned any more.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let snapshot = Snapshot::build(hub.live.as_ref().unwrap().snapshot(), &config, &Default::default());
    let replanned = plan("stale-cleanup", &snapshot.state, &snapshot.findings, &Trigger { namespace: Some(ns.clone()), ..Default::default() }).unwrap();
    assert!(replanned.nothing_to_do(), "{replanned:#?}");
    let report = execute(&client, &replanned, &replanned.hash(), &RunLimits::default()).await;
    assert_eq!(report.outcome, Outcome::NothingToDo);
}
