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
    let hub = lifeboat::runtime::hub::start_live_hub(config.clone(), client.clone());
    lifeboat::runtime::hub::wait_ready(&hub, Duration::from_secs(60)).await.unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removes_volumes_stranded_on_a_gone_node_only_while_unbound_and_the_node_stays_gone() {
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "stale-pv").await;
    // `{ns}-gone` has no Node object; `{ns}-up` is Ready.
    let (gone, up, back) = (format!("{ns}-gone"), format!("{ns}-up"), format!("{ns}-back"));
    node_ready(&client, &up).await;
    let pv = |name: &str, node: &str, phase: &str| {
        let mut pv = pv_pinned(&format!("{ns}-{name}"), "kubernetes.io/hostname", node, &ns, name);
        pv["status"]["phase"] = serde_json::json!(phase);
        pv
    };
    for (name, node, phase) in [
        ("released", &gone, "Released"),
        ("available", &gone, "Available"),
        ("bound", &gone, "Bound"),
        ("rebound", &gone, "Released"),
        ("alive", &up, "Released"),
        ("returning", &back, "Released"),
    ] {
        create(&client, pv(name, node, phase), None).await;
    }

    let config = Config { discovery_interval: lifeboat::config::Dur::secs(1), ..Config::default() };
    let snapshot = live_snapshot(&client, &config).await;
    let mut cleanup = plan("stale-cleanup", &snapshot.state, &snapshot.findings, &Trigger::default()).unwrap();
    // Cluster-wide: keep this test's volumes (other tests share the apiserver).
    cleanup.steps.retain(|s| s.id.starts_with(&format!("delete-pv-{ns}-")));
    let ids: Vec<&str> = cleanup.steps.iter().map(|s| s.id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, vec![format!("delete-pv-{ns}-available"), format!("delete-pv-{ns}-rebound"), format!("delete-pv-{ns}-released"), format!("delete-pv-{ns}-returning")]);
    assert!(cleanup.findings.iter().any(|f| f.contains(&format!("{ns}-released is Released")) && f.contains("no Node object")), "{:#?}", cleanup.findings);
    // A namespaced cleanup never touches cluster-scoped volumes.
    let namespaced = plan("stale-cleanup", &snapshot.state, &snapshot.findings, &Trigger { namespace: Some(ns.clone()), ..Default::default() }).unwrap();
    assert!(namespaced.steps.iter().all(|s| !s.id.starts_with("delete-pv-")));

    // Between planning and running, one volume is bound again.
    // and the other one's node comes back.
    set_status(&client, "v1", "PersistentVolume", None, &format!("{ns}-rebound"), serde_json::json!({"phase": "Bound"})).await;
    node_ready(&client, &back).await;
    let report = execute(&client, &cleanup, &cleanup.hash(), &RunLimits::default()).await;
    assert_eq!(report.outcome, Outcome::Stopped);
    let status = |name: &str| &report.steps.iter().find(|st| st.id == format!("delete-pv-{ns}-{name}")).unwrap().status;
    for name in ["rebound", "returning"] {
        assert!(matches!(status(name), StepStatus::Refused { reason } if reason.contains("unbound and node")), "{name}: {report:#?}");
    }
    let pvs = api_for(&client, "v1", "PersistentVolume", None).await;
    for name in ["released", "available"] {
        let left = pvs.get_opt(&format!("{ns}-{name}")).await.unwrap();
        assert!(left.is_none_or(|pv| pv.metadata.deletion_timestamp.is_some()), "{name} is deleted (the pv-protection finalizer is the controller's to drop)");
    }
    for name in ["rebound", "bound", "alive", "returning"] {
        let kept = pvs.get_opt(&format!("{ns}-{name}")).await.unwrap().unwrap_or_else(|| panic!("{name} kept"));
        assert!(kept.metadata.deletion_timestamp.is_none(), "{name}");
    }
}
