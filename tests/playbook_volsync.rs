//! volsync-restore: pure plans on the shipped example, and end to end on the
//! real apiserver with the real VolSync (kopia fork) and Flux CRDs, the test
//! playing VolSync (it answers a manual trigger by writing lastManualSync and
//! the mover result) and the Deployment/ReplicaSet controllers. Failure
//! paths: a Failed mover, a paused destination, no snapshot, the node coming
//! back mid-run, and a stale result from an earlier sync.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::api::DeleteParams;
use kube::Client;
use lifeboat::act::runner::{execute, fresh_report, resume, Outcome, RunLimits, RunReport, StepStatus};
use lifeboat::cluster::dump;
use lifeboat::config::Config;
use lifeboat::plan::playbooks::{plan, volsync, Trigger};
use lifeboat::plan::{Action, Plan, WaitCondition};
use lifeboat::snapshot::Snapshot;
use serde_json::{json, Value};
use support::controlplane::control_plane;
use support::fixtures::*;
use support::flux::Applied;
use support::k8s::*;

const VS: &str = "volsync.backube/v1alpha1";

// ------------------------------------------------------------------ pure plans

fn example() -> Snapshot {
    let (state, _) = dump::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node-loss")).expect("example loads");
    Snapshot::build(state, &Config::default(), &Default::default())
}

fn rebuild(snap: &Snapshot, edit: impl FnOnce(&mut lifeboat::cluster::ClusterState)) -> Snapshot {
    let mut state = (*snap.state).clone();
    edit(&mut state);
    state.finish();
    Snapshot::build(state, &Config::default(), &Default::default())
}

fn plan_for(snap: &Snapshot, ns: &str, pvc: &str) -> Plan {
    let trigger = Trigger { namespace: Some(ns.into()), name: Some(pvc.into()), node: None };
    let p = plan("volsync-restore", &snap.state, &snap.findings, &trigger).expect("plans");
    p.validate().expect("valid plan");
    p
}

fn ids(p: &Plan) -> Vec<&str> {
    p.steps.iter().map(|s| s.id.as_str()).collect()
}

fn step<'a>(p: &'a Plan, id: &str) -> &'a lifeboat::plan::Step {
    p.steps.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("no step {id} in {:?}", ids(p)))
}

#[test]
fn affected_lists_the_volsync_pvcs_on_lost_nodes() {
    let snap = example();
    let got: Vec<(String, String, String)> = volsync::affected(&snap.state, &snap.findings).into_iter().map(|t| (t.namespace.unwrap(), t.name.unwrap(), t.node.unwrap())).collect();
    let want = [("media", "radarr"), ("media", "sonarr"), ("utils", "forgejo")];
    assert_eq!(got, want.iter().map(|(n, p)| (n.to_string(), p.to_string(), "node-01-pve".to_string())).collect::<Vec<_>>());
}

#[test]
fn forgejo_is_restored_from_its_fresh_snapshot() {
    let snap = example();
    let p = plan_for(&snap, "utils", "forgejo");
    assert_eq!(
        ids(&p),
        vec![
            "suspend-helmrelease-forgejo",
            "suspend-kustomization-forgejo",
            "scale-down-forgejo",
            "pause-source",
            "delete-pod-forgejo-nbsgpqpvcq-p7mn4",
            "wait-unused-forgejo",
            "delete-pvc-forgejo",
            "wait-unused-volsync-src-forgejo-cache",
            "delete-pvc-volsync-src-forgejo-cache",
            "recreate-pvc",
            "trigger-restore",
            "wait-restore",
            "scale-up-forgejo",
            "resume-source",
            "resume-helmrelease-forgejo",
            "resume-kustomization-forgejo",
        ]
    );
    // The recovery source names the snapshot and its age.
    let delete = step(&p, "delete-pvc-forgejo");
    assert_eq!(delete.action, Action::DeletePvc { pvc: lifeboat::plan::ObjectRef::pvc("utils", "forgejo"), pinned_node: "node-01-pve".into() });
    let source = delete.recovery_source.as_ref().unwrap();
    assert!(source.description.contains("forgejo-volsync-secret") && source.description.contains("forgejo-dst"), "{source:?}");
    assert!(source.evidence[0].contains("2026-11-25T11:18:40") && source.evidence[0].contains("k4d1c0f8a2b7e9d3c5a6f1e0b8c7d2a94"), "{source:?}");
    // Same size, class and access modes; no volume, so no node affinity.
    let Action::Apply { manifest, .. } = &step(&p, "recreate-pvc").action else { panic!() };
    assert_eq!(manifest["spec"], json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}, "storageClassName": "openebs-hostpath"}));
    assert!(manifest["metadata"].get("annotations").is_none());
    // Flux stays suspended if the run stops before the explicit resume.
    assert!(matches!(step(&p, "suspend-kustomization-forgejo").action, Action::SuspendFlux { keep_suspended: true, .. }));
    // The token: what is triggered is what is waited for, and it is neither
    // the destination's current trigger nor its last manual sync.
    let Action::MergePatch { patch, .. } = &step(&p, "trigger-restore").action else { panic!() };
    let token = patch["spec"]["trigger"]["manual"].as_str().unwrap().to_string();
    assert!(token.starts_with("lifeboat-restore-") && token != "restore-20260406-184210");
    assert_eq!(
        step(&p, "wait-restore").action,
        Action::Wait {
            object: lifeboat::plan::ObjectRef::namespaced(VS, "ReplicationDestination", "utils", "forgejo-dst"),
            until: WaitCondition::VolsyncManualSyncDone { token: token.clone() },
            timeout_seconds: 4 * 3600,
        }
    );
    assert!(matches!(step(&p, "scale-up-forgejo").action, Action::Scale { replicas: 1, .. }));
    // Stable: the same state plans the same hash (approvals survive a re-plan).
    assert_eq!(plan_for(&example(), "utils", "forgejo").hash(), p.hash());
    // Unique per restore: once the destination has synced this token, the next plan differs.
    let after = rebuild(&snap, |s| {
        let rd = s.replication_destinations.iter_mut().find(|r| r.metadata.name.as_deref() == Some("forgejo-dst")).unwrap();
        Arc::make_mut(rd).status.last_manual_sync = Some(token.clone());
    });
    let next_plan = plan_for(&after, "utils", "forgejo");
    let Action::MergePatch { patch: next, .. } = &step(&next_plan, "trigger-restore").action else { panic!() };
    assert_ne!(next["spec"]["trigger"]["manual"], json!(token));
}

#[test]
fn a_pinned_restore_as_of_is_cleared_so_the_newest_snapshot_is_restored() {
    let snap = rebuild(&example(), |s| {
        let rd = s.replication_destinations.iter_mut().find(|r| r.metadata.name.as_deref() == Some("forgejo-dst")).unwrap();
        Arc::make_mut(rd).spec.kopia.as_mut().unwrap().restore_as_of = Some("2026-04-01T00:00:00Z".into());
    });
    let p = plan_for(&snap, "utils", "forgejo");
    let Action::MergePatch { patch, .. } = &step(&p, "trigger-restore").action else { panic!() };
    assert_eq!(patch["spec"]["kopia"], json!({"restoreAsOf": null}));
    assert!(p.findings.iter().any(|f| f.contains("restoreAsOf 2026-04-01T00:00:00Z")), "{:#?}", p.findings);
    let plain = plan_for(&example(), "utils", "forgejo");
    let Action::MergePatch { patch, .. } = &step(&plain, "trigger-restore").action else { panic!() };
    assert!(patch["spec"].get("kopia").is_none(), "only cleared when set: {patch}");
}

#[test]
fn sonarr_keeps_its_topolvm_class_and_force_deletes_its_stuck_mover() {
    let p = plan_for(&example(), "media", "sonarr");
    let Action::Apply { manifest, .. } = &step(&p, "recreate-pvc").action else { panic!() };
    assert_eq!(manifest["spec"]["storageClassName"], "topolvm-provisioner");
    assert_eq!(manifest["spec"]["resources"]["requests"]["storage"], "5Gi");
    assert!(ids(&p).contains(&"delete-pod-volsync-src-sonarr-2w5qs"));
    assert!(p.findings.iter().any(|f| f.contains("3 d old")), "{:#?}", p.findings);
}

#[test]
fn radarr_with_a_paused_source_restores_with_an_unknown_recovery_point_and_stays_paused() {
    let p = plan_for(&example(), "media", "radarr");
    assert!(p.findings.iter().any(|f| f.contains("UNKNOWN age")), "{:#?}", p.findings);
    assert!(!ids(&p).contains(&"pause-source") && !ids(&p).contains(&"resume-source"), "{:?}", ids(&p));
    let source = step(&p, "delete-pvc-radarr").recovery_source.as_ref().unwrap();
    assert!(!source.evidence.iter().any(|e| e.contains("last backed up")), "the paused source's lastSyncTime is not evidence: {source:?}");
    assert!(source.evidence[0].contains("radarr-dst last restored successfully"));
}

fn edit_rd(snap: &Snapshot, rd_name: &str, edit: impl FnOnce(&mut lifeboat::cluster::resources::ReplicationDestination)) -> Snapshot {
    rebuild(snap, |s| {
        let rd = s.replication_destinations.iter_mut().find(|r| r.metadata.name.as_deref() == Some(rd_name)).unwrap();
        edit(Arc::make_mut(rd));
    })
}

#[test]
fn the_restore_identity_is_proven_to_be_the_sources_before_anything_is_deleted() {
    let p = plan_for(&example(), "utils", "forgejo");
    let delete = step(&p, "delete-pvc-forgejo");
    let identity = lifeboat::plan::Precondition::KopiaIdentity {
        destination: lifeboat::plan::ObjectRef::namespaced(VS, "ReplicationDestination", "utils", "forgejo-dst"),
        source: Some(lifeboat::plan::ObjectRef::namespaced(VS, "ReplicationSource", "utils", "forgejo")),
        identity: "forgejo@utils".into(),
    };
    assert!(delete.preconditions.contains(&identity), "{:?}", delete.preconditions);
    assert!(delete.recovery_source.as_ref().unwrap().evidence.iter().any(|e| e.contains("kopia identity forgejo@utils")));

    // Without sourceIdentity the fork restores the destination's own name:
    // forgejo-dst@utils, which nobody backs up as.
    let unnamed = edit_rd(&example(), "forgejo-dst", |rd| rd.spec.kopia.as_mut().unwrap().source_identity = None);
    let refused = plan_for(&unnamed, "utils", "forgejo");
    assert!(refused.nothing_to_do(), "{:?}", ids(&refused));
    assert!(
        refused.findings.iter().any(|f| f.contains("REFUSED") && f.contains("forgejo-dst@utils") && f.contains("forgejo@utils") && f.contains("No eligible snapshots")),
        "{:#?}",
        refused.findings
    );
    // An explicit username/hostname pair wins over sourceIdentity.
    let elsewhere = edit_rd(&example(), "forgejo-dst", |rd| {
        let kopia = rd.spec.kopia.as_mut().unwrap();
        (kopia.username, kopia.hostname) = (Some("forgejo".into()), Some("old-cluster".into()));
    });
    assert!(plan_for(&elsewhere, "utils", "forgejo").nothing_to_do());
}

#[test]
fn flux_that_would_re_apply_the_destination_is_kept_suspended_with_the_fix() {
    let p = plan_for(&example(), "utils", "forgejo");
    let resume = step(&p, "resume-kustomization-forgejo");
    assert_eq!(
        resume.preconditions,
        vec![lifeboat::plan::Precondition::SsaIfNotPresent { object: lifeboat::plan::ObjectRef::namespaced(VS, "ReplicationDestination", "utils", "forgejo-dst") }],
        "re-checked live before Flux is resumed"
    );

    let unsafe_rd = edit_rd(&example(), "forgejo-dst", |rd| {
        rd.metadata.labels.as_mut().unwrap().remove("kustomize.toolkit.fluxcd.io/ssa");
    });
    let p = plan_for(&unsafe_rd, "utils", "forgejo");
    assert!(!ids(&p).contains(&"resume-kustomization-forgejo"), "{:?}", ids(&p));
    assert!(ids(&p).contains(&"resume-helmrelease-forgejo"), "the HelmRelease does not apply the destination");
    assert!(matches!(step(&p, "suspend-kustomization-forgejo").action, Action::SuspendFlux { keep_suspended: true, .. }));
    assert!(
        p.follow_ups.iter().any(|f| f.contains("kustomize.toolkit.fluxcd.io/ssa: IfNotPresent") && f.contains("flux resume kustomization forgejo -n utils")),
        "{:#?}",
        p.follow_ups
    );
    assert!(p.findings.iter().any(|f| f.contains("reset spec.trigger.manual") && f.contains("SUSPENDED")), "{:#?}", p.findings);

    // The marker counts as an annotation too, in any case (fluxcd/pkg AnyInMetadata).
    let annotated = edit_rd(&unsafe_rd, "forgejo-dst", |rd| {
        rd.metadata.annotations.get_or_insert_with(Default::default).insert("kustomize.toolkit.fluxcd.io/ssa".into(), "ifnotpresent".into());
    });
    assert!(ids(&plan_for(&annotated, "utils", "forgejo")).contains(&"resume-kustomization-forgejo"));
}

#[test]
fn a_paused_destination_is_refused_and_nothing_is_deleted() {
    let snap = rebuild(&example(), |s| {
        let rd = s.replication_destinations.iter_mut().find(|r| r.metadata.name.as_deref() == Some("forgejo-dst")).unwrap();
        Arc::make_mut(rd).spec.paused = Some(true);
    });
    let p = plan_for(&snap, "utils", "forgejo");
    assert!(p.nothing_to_do());
    assert!(p.findings.iter().any(|f| f.contains("REFUSED") && f.contains("paused")), "{:#?}", p.findings);
}

#[test]
fn without_a_snapshot_the_plan_deletes_nothing() {
    let snap = rebuild(&example(), |s| {
        let rs = s.replication_sources.iter_mut().find(|r| r.metadata.name.as_deref() == Some("forgejo")).unwrap();
        Arc::make_mut(rs).status = Default::default();
        let rd = s.replication_destinations.iter_mut().find(|r| r.metadata.name.as_deref() == Some("forgejo-dst")).unwrap();
        // A "Successful" restore from an empty repository proves nothing.
        let status = &mut Arc::make_mut(rd).status;
        status.latest_mover_status.as_mut().unwrap().logs = Some("No eligible snapshots found\n=== No data will be restored ===".into());
    });
    let p = plan_for(&snap, "utils", "forgejo");
    assert!(p.nothing_to_do(), "{:?}", ids(&p));
    assert!(p.findings.iter().any(|f| f.contains("no snapshot") && f.contains("deleting nothing")), "{:#?}", p.findings);
}

#[test]
fn pvcs_on_healthy_nodes_or_without_a_destination_get_no_steps() {
    let snap = example();
    assert!(plan_for(&snap, "media", "bazarr").nothing_to_do(), "bazarr is on a healthy node");
    let kanidm = plan_for(&snap, "identity", "kanidm-data-kanidm-default-0");
    assert!(kanidm.nothing_to_do() && kanidm.findings.iter().any(|f| f.contains("no ReplicationDestination")), "{:#?}", kanidm.findings);
    let missing = plan("volsync-restore", &snap.state, &snap.findings, &Trigger { namespace: Some("utils".into()), name: Some("nope".into()), node: None });
    assert!(missing.is_err());
}

// ------------------------------------------------------------------ on the apiserver

struct Scene {
    client: Client,
    ns: String,
    doomed: String,
    /// The ReplicationDestination as Git (the Kustomization's source) has it.
    rd_git: Value,
}

fn deployment(ns: &str, name: &str, replicas: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": name, "namespace": ns, "labels": {"kustomize.toolkit.fluxcd.io/name": "app", "kustomize.toolkit.fluxcd.io/namespace": ns}},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}}})
}

fn replica_set(ns: &str, name: &str, owner: &str, replicas: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
           "metadata": {"name": name, "namespace": ns, "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": owner, "uid": format!("uid-{owner}"), "controller": true}]},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": owner}},
                    "template": {"metadata": {"labels": {"app": owner}}, "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}}})
}

/// A pod of ReplicaSet `app-5d8f` mounting `claims`, on `node` or unscheduled.
fn app_pod(ns: &str, name: &str, node: Option<&str>, claims: &[&str]) -> Value {
    let mut p = pod(ns, name, node.unwrap_or("x"), claims, json!({"app": "app"}), Some(("ReplicaSet", "app-5d8f")));
    if node.is_none() {
        p["spec"].as_object_mut().unwrap().remove("nodeName");
    }
    p
}

/// App `app` (Deployment with 2 replicas, Flux-managed) whose PVC and kopia
/// source cache are pinned to a node NotReady for 10 minutes; one pod is
/// stuck terminating there, its replacement is Pending. The source backed up
/// an hour ago; the destination restored once, long ago.
async fn scene(prefix: &str) -> Scene {
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, prefix).await;
    let (healthy, doomed) = (format!("{ns}-a"), format!("{ns}-b"));
    node_ready(&client, &healthy).await;
    node_ready(&client, &doomed).await;
    let flux = json!({"kustomize.toolkit.fluxcd.io/name": "app", "kustomize.toolkit.fluxcd.io/namespace": ns});
    for claim in ["app", "volsync-src-app-cache"] {
        let pv = format!("{ns}-{claim}");
        create(&client, pv_pinned(&pv, "kubernetes.io/hostname", &doomed, &ns, claim), None).await;
        let labels = if claim == "app" { flux.clone() } else { json!({}) };
        let mut c = pvc(&ns, claim, &pv, labels);
        if claim == "app" {
            c["spec"]["resources"]["requests"]["storage"] = json!("3Gi");
            c["spec"]["storageClassName"] = json!("local-path");
            c["metadata"]["annotations"] = json!({"volume.kubernetes.io/selected-node": doomed});
        }
        create(&client, c, None).await;
    }
    create(&client, kustomization(&ns, "app", false, "True"), None).await;
    create(&client, deployment(&ns, "app", 2), None).await;
    create(&client, replica_set(&ns, "app-5d8f", "app", 2), None).await;
    create(&client, app_pod(&ns, "app-5d8f-old", Some(&doomed), &["app"]), None).await;
    create(&client, app_pod(&ns, "app-5d8f-new", None, &["app"]), None).await;
    // Evicted from the dead node: terminating until someone forces it.
    api_for(&client, "v1", "Pod", Some(&ns)).await.delete("app-5d8f-old", &DeleteParams::default()).await.unwrap();
    let mut rs = replication_source(&ns, "app", "app", "0 * * * *", false, Some(&rfc3339(Utc::now() - chrono::Duration::hours(1))), "Successful");
    rs["metadata"]["labels"] = flux.clone();
    rs["status"]["latestMoverStatus"]["logs"] = json!("Snapshot created successfully\nsnapshot kabc123\n");
    create(&client, rs, None).await;
    let mut rd = replication_destination(&ns, "app-dst", Some("app"));
    rd["metadata"]["labels"] = flux.clone();
    rd["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/ssa"] = json!("IfNotPresent");
    rd["spec"]["kopia"]["sourceIdentity"] = json!({"sourceName": "app"});
    create(&client, rd.clone(), None).await;
    mark_node_not_ready(&client, &doomed, Utc::now() - chrono::Duration::minutes(10)).await;
    let mut rd_git = rd;
    rd_git.as_object_mut().unwrap().remove("status");
    for owned in ["uid", "creationTimestamp"] {
        rd_git["metadata"].as_object_mut().unwrap().remove(owned);
    }
    Scene { client, ns, doomed, rd_git }
}

async fn live_plan(s: &Scene) -> Plan {
    let config = Config { discovery_interval: lifeboat::config::Dur::secs(1), ..Config::default() };
    // The watch must have seen the terminating pod and the flux labels.
    let snapshot = live_snapshot(&s.client, &config).await;
    let trigger = Trigger { namespace: Some(s.ns.clone()), name: Some("app".into()), node: None };
    let p = plan("volsync-restore", &snapshot.state, &snapshot.findings, &trigger).expect("plans");
    p.validate().unwrap();
    p
}

fn fast() -> RunLimits {
    RunLimits { poll_interval: Duration::from_millis(200), ..RunLimits::default() }
}

/// Plays the Deployment and ReplicaSet controllers: at 0 replicas the
/// unscheduled pod is deleted; back up, a new pod mounts the new claim.
async fn play_workload(client: Client, ns: String) {
    let pods = api_for(&client, "v1", "Pod", Some(&ns)).await;
    let mut recreated = false;
    loop {
        let replicas = get(&client, "apps/v1", "Deployment", Some(&ns), "app").await["spec"]["replicas"].as_i64().unwrap();
        if replicas == 0 {
            let _ = pods.delete("app-5d8f-new", &DeleteParams::default()).await;
        } else if !recreated && pods.get_opt("app-5d8f-new").await.unwrap().is_none() {
            create(&client, app_pod(&ns, "app-5d8f-restored", None, &["app"]), None).await;
            recreated = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Plays VolSync: a manual trigger that differs from lastManualSync is run
/// (unless paused) once the destination PVC exists, and completes with `result`.
async fn play_volsync(client: Client, ns: String, result: &'static str, logs: &'static str) {
    let pvcs = api_for(&client, "v1", "PersistentVolumeClaim", Some(&ns)).await;
    loop {
        let rd = get(&client, VS, "ReplicationDestination", Some(&ns), "app-dst").await;
        let manual = rd["spec"]["trigger"]["manual"].as_str().unwrap_or_default().to_string();
        let claim = pvcs.get_opt("app").await.unwrap();
        let claim_fresh = claim.is_some_and(|c| c.metadata.deletion_timestamp.is_none() && c.data["spec"]["volumeName"].is_null());
        if rd["spec"]["paused"] != true && manual != rd["status"]["lastManualSync"].as_str().unwrap_or_default() && claim_fresh {
            set_status(
                &client,
                VS,
                "ReplicationDestination",
                Some(&ns),
                "app-dst",
                json!({
                "lastManualSync": manual, "lastSyncTime": rfc3339(Utc::now()), "lastSyncDuration": "12s",
                "latestMoverStatus": {"result": result, "logs": logs}}),
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn status_of<'a>(report: &'a RunReport, id: &str) -> &'a StepStatus {
    &report.steps.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("no step {id}")).status
}

async fn pvc_value(s: &Scene, name: &str) -> Option<Value> {
    api_for(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns)).await.get_opt(name).await.unwrap().map(|o| serde_json::to_value(o).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_a_pvc_end_to_end() {
    let s = scene("vs-e2e").await;
    let p = live_plan(&s).await;
    assert_eq!(
        ids(&p),
        vec![
            "suspend-kustomization-app",
            "scale-down-app",
            "pause-source",
            "delete-pod-app-5d8f-old",
            "wait-unused-app",
            "delete-pvc-app",
            "wait-unused-volsync-src-app-cache",
            "delete-pvc-volsync-src-app-cache",
            "recreate-pvc",
            "trigger-restore",
            "wait-restore",
            "scale-up-app",
            "resume-source",
            "resume-kustomization-app",
        ]
    );
    let Action::MergePatch { patch, .. } = &step(&p, "trigger-restore").action else { panic!() };
    let token = patch["spec"]["trigger"]["manual"].as_str().unwrap().to_string();

    let workload = tokio::spawn(play_workload(s.client.clone(), s.ns.clone()));
    let mover = tokio::spawn(support::volsync::play(s.client.clone(), s.ns.clone()));
    let report = execute(&s.client, &p, &p.hash(), &fast()).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:#?}");
    // Flux, resumed, leaves the IfNotPresent destination (and its token) alone.
    assert_eq!(support::flux::reconcile(&s.client, &s.ns, "app", std::slice::from_ref(&s.rd_git)).await, vec![Applied::Skipped("ReplicationDestination/app-dst".into())]);
    assert!(matches!(status_of(&report, "wait-restore"), StepStatus::Succeeded { detail } if detail.contains(&token) && detail.contains("restore completed")), "{report:#?}");
    assert!(report.flux_left_suspended.is_empty());

    // A fresh claim: same size, class and modes, no volume and no selected node.
    let claim = pvc_value(&s, "app").await.expect("re-created");
    assert!(claim["metadata"]["deletionTimestamp"].is_null());
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "3Gi");
    assert_eq!(claim["spec"]["storageClassName"], "local-path");
    assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    assert!(claim["spec"]["volumeName"].is_null(), "{claim:#}");
    assert!(claim["metadata"]["annotations"].get("volume.kubernetes.io/selected-node").is_none(), "{claim:#}");
    assert_eq!(claim["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"], "app", "Flux keeps owning it");
    assert!(pvc_value(&s, "volsync-src-app-cache").await.is_none(), "the cache on the lost node is gone");
    // Everything is back as it was.
    assert_eq!(get(&s.client, "apps/v1", "Deployment", Some(&s.ns), "app").await["spec"]["replicas"], 2);
    assert_eq!(get(&s.client, VS, "ReplicationSource", Some(&s.ns), "app").await["spec"]["paused"], false);
    assert_eq!(get(&s.client, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", Some(&s.ns), "app").await["spec"]["suspend"], false);
    let rd = get(&s.client, VS, "ReplicationDestination", Some(&s.ns), "app-dst").await;
    assert_eq!(rd["status"]["lastManualSync"], json!(token));

    // A successor resuming from a journal that lost everything from the
    // trigger on: the same token is sent again, which starts no second
    // restore, and the wait sees that token's completion.
    let synced_at = rd["status"]["lastSyncTime"].clone();
    let mut journal = report.clone();
    let from = journal.steps.iter().position(|st| st.id == "trigger-restore").unwrap();
    for st in &mut journal.steps[from..] {
        st.status = StepStatus::NotRun;
    }
    let again = resume(&s.client, &p, &p.hash(), &fast(), journal, &|_| {}).await;
    workload.abort();
    mover.abort();
    assert_eq!(again.outcome, Outcome::Succeeded, "{again:#?}");
    let rd = get(&s.client, VS, "ReplicationDestination", Some(&s.ns), "app-dst").await;
    assert_eq!(rd["status"]["lastSyncTime"], synced_at, "no second restore");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_mover_stops_the_run_with_its_logs_and_leaves_the_app_down() {
    let s = scene("vs-failed").await;
    let p = live_plan(&s).await;
    let workload = tokio::spawn(play_workload(s.client.clone(), s.ns.clone()));
    let mover = tokio::spawn(play_volsync(s.client.clone(), s.ns.clone(), "Failed", "INFO: connecting\nERROR: Failed to restore snapshot: kabc123"));
    let report = execute(&s.client, &p, &p.hash(), &fast()).await;
    workload.abort();
    mover.abort();
    assert_eq!(report.outcome, Outcome::Stopped);
    assert!(
        matches!(status_of(&report, "wait-restore"), StepStatus::Failed { error } if error.contains("result Failed") && error.contains("Failed to restore snapshot: kabc123")),
        "{report:#?}"
    );
    for id in ["scale-up-app", "resume-source", "resume-kustomization-app"] {
        assert_eq!(status_of(&report, id), &StepStatus::NotRun, "{id}");
    }
    // Nothing starts on the unrestored volume, and no backup overwrites the good snapshots.
    assert_eq!(get(&s.client, "apps/v1", "Deployment", Some(&s.ns), "app").await["spec"]["replicas"], 0);
    assert_eq!(get(&s.client, VS, "ReplicationSource", Some(&s.ns), "app").await["spec"]["paused"], true);
    assert_eq!(get(&s.client, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", Some(&s.ns), "app").await["spec"]["suspend"], true);
    assert_eq!(report.flux_left_suspended, vec![format!("Kustomization {}/app", s.ns)]);
    assert!(report.remaining_commands().iter().any(|c| c.contains("--replicas=2")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_result_from_an_earlier_sync_is_not_success() {
    let s = scene("vs-stale").await;
    let mut p = live_plan(&s).await;
    for st in &mut p.steps {
        if let Action::Wait { until: WaitCondition::VolsyncManualSyncDone { .. }, timeout_seconds, .. } = &mut st.action {
            *timeout_seconds = 3;
        }
    }
    // VolSync never runs our trigger; a scheduled sync meanwhile leaves a
    // fresh "Successful" result under the old lastManualSync.
    set_status(
        &s.client,
        VS,
        "ReplicationDestination",
        Some(&s.ns),
        "app-dst",
        json!({
        "lastSyncTime": rfc3339(Utc::now()), "latestMoverStatus": {"result": "Successful", "logs": "Snapshot restore completed successfully"}}),
    )
    .await;
    let workload = tokio::spawn(play_workload(s.client.clone(), s.ns.clone()));
    let report = execute(&s.client, &p, &p.hash(), &fast()).await;
    workload.abort();
    assert!(matches!(status_of(&report, "trigger-restore"), StepStatus::Succeeded { .. }), "{report:#?}");
    assert!(matches!(status_of(&report, "wait-restore"), StepStatus::Failed { error } if error.contains("timed out")), "{report:#?}");
    assert_eq!(status_of(&report, "scale-up-app"), &StepStatus::NotRun);
    assert_eq!(get(&s.client, "apps/v1", "Deployment", Some(&s.ns), "app").await["spec"]["replicas"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_destination_is_refused_before_anything_is_deleted() {
    let s = scene("vs-paused").await;
    // Paused before planning: the plan refuses and explains.
    api_for(&s.client, VS, "ReplicationDestination", Some(&s.ns))
        .await
        .patch("app-dst", &Default::default(), &kube::api::Patch::Merge(json!({"spec": {"paused": true}})))
        .await
        .unwrap();
    let refused = live_plan(&s).await;
    assert!(refused.nothing_to_do() && refused.findings.iter().any(|f| f.contains("REFUSED")), "{:#?}", refused.findings);

    // Paused after approval: the run stops before the PVC deletion.
    api_for(&s.client, VS, "ReplicationDestination", Some(&s.ns))
        .await
        .patch("app-dst", &Default::default(), &kube::api::Patch::Merge(json!({"spec": {"paused": false}})))
        .await
        .unwrap();
    let p = live_plan(&s).await;
    assert!(!p.nothing_to_do());
    api_for(&s.client, VS, "ReplicationDestination", Some(&s.ns))
        .await
        .patch("app-dst", &Default::default(), &kube::api::Patch::Merge(json!({"spec": {"paused": true}})))
        .await
        .unwrap();
    let workload = tokio::spawn(play_workload(s.client.clone(), s.ns.clone()));
    let report = execute(&s.client, &p, &p.hash(), &fast()).await;
    workload.abort();
    assert_eq!(report.outcome, Outcome::Stopped);
    assert!(matches!(status_of(&report, "delete-pvc-app"), StepStatus::Refused { reason } if reason.contains("not paused")), "{report:#?}");
    let claim = pvc_value(&s, "app").await.expect("not deleted");
    assert!(claim["metadata"]["deletionTimestamp"].is_null());
    assert_eq!(claim["spec"]["volumeName"], json!(format!("{}-app", s.ns)));
    assert!(pvc_value(&s, "volsync-src-app-cache").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_snapshot_nothing_is_planned() {
    let s = scene("vs-nosnap").await;
    // The source never completed a backup; the destination never restored.
    for kind in ["ReplicationSource", "ReplicationDestination"] {
        let name = if kind == "ReplicationSource" { "app" } else { "app-dst" };
        let api = api_for(&s.client, VS, kind, Some(&s.ns)).await;
        api.patch_status(name, &Default::default(), &kube::api::Patch::Merge(json!({"status": null}))).await.unwrap();
    }
    let p = live_plan(&s).await;
    assert!(p.nothing_to_do(), "{:?}", ids(&p));
    assert!(p.findings.iter().any(|f| f.contains("no snapshot")), "{:#?}", p.findings);
    let report = execute(&s.client, &p, &p.hash(), &fast()).await;
    assert_eq!(report.outcome, Outcome::NothingToDo);
    assert!(pvc_value(&s, "app").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_returning_mid_run_stops_it_before_the_pvc_is_deleted() {
    let s = scene("vs-node-back").await;
    let p = live_plan(&s).await;
    let workload = tokio::spawn(play_workload(s.client.clone(), s.ns.clone()));
    let mover = tokio::spawn(play_volsync(s.client.clone(), s.ns.clone(), "Successful", "ok"));
    // The node comes back right after the app was scaled down (the progress
    // callback runs before dependent steps start, so this is deterministic).
    let (client, doomed) = (s.client.clone(), s.doomed.clone());
    let back = std::sync::atomic::AtomicBool::new(false);
    let progress = move |r: &RunReport| {
        let scaled = r.steps.iter().any(|st| st.id == "scale-down-app" && matches!(st.status, StepStatus::Succeeded { .. }));
        if scaled && !back.swap(true, std::sync::atomic::Ordering::SeqCst) {
            tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(mark_node_ready(&client, &doomed)));
        }
    };
    let report = resume(&s.client, &p, &p.hash(), &fast(), fresh_report(&p), &progress).await;
    workload.abort();
    mover.abort();
    assert_eq!(report.outcome, Outcome::Stopped);
    assert!(matches!(status_of(&report, "delete-pod-app-5d8f-old"), StepStatus::Refused { reason } if reason.contains("not Ready")), "{report:#?}");
    for id in ["delete-pvc-app", "delete-pvc-volsync-src-app-cache", "recreate-pvc", "trigger-restore"] {
        assert_eq!(status_of(&report, id), &StepStatus::NotRun, "{id}: {report:#?}");
    }
    let claim = pvc_value(&s, "app").await.expect("not deleted");
    assert_eq!(claim["spec"]["volumeName"], json!(format!("{}-app", s.ns)));
    let rd = get(&s.client, VS, "ReplicationDestination", Some(&s.ns), "app-dst").await;
    assert_eq!(rd["spec"]["trigger"]["manual"], "restore-once", "no restore triggered");
}

/// Runs the plan with the workload, VolSync and Flux players until it ends.
async fn run_played(s: &Scene, p: &Plan) -> RunReport {
    let workload = tokio::spawn(play_workload(s.client.clone(), s.ns.clone()));
    let mover = tokio::spawn(support::volsync::play(s.client.clone(), s.ns.clone()));
    let report = execute(&s.client, p, &p.hash(), &fast()).await;
    workload.abort();
    mover.abort();
    report
}

async fn patch_rd(s: &Scene, patch: Value) {
    api_for(&s.client, VS, "ReplicationDestination", Some(&s.ns)).await.patch("app-dst", &Default::default(), &kube::api::Patch::Merge(patch)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_restoring_another_identity_is_refused_before_the_pvc_is_deleted() {
    let s = scene("vs-identity").await;
    // The kopia player shows what would happen: app-dst@<ns> has no snapshots.
    let mut unnamed = s.rd_git.clone();
    unnamed["spec"]["kopia"]["sourceIdentity"] = Value::Null;
    assert_eq!(support::volsync::destination_identity(&unnamed), format!("app-dst@{}", s.ns));

    // Planned without sourceIdentity: refused, nothing deleted.
    patch_rd(&s, json!({"spec": {"kopia": {"sourceIdentity": null}}})).await;
    let refused = live_plan(&s).await;
    assert!(refused.nothing_to_do(), "{:?}", ids(&refused));
    assert!(refused.findings.iter().any(|f| f.contains("REFUSED") && f.contains(&format!("app-dst@{}", s.ns))), "{:#?}", refused.findings);

    // Planned with it, dropped after approval: the live re-check stops the
    // run before the claim goes.
    patch_rd(&s, json!({"spec": {"kopia": {"sourceIdentity": {"sourceName": "app"}}}})).await;
    let p = live_plan(&s).await;
    assert!(!p.nothing_to_do());
    patch_rd(&s, json!({"spec": {"kopia": {"sourceIdentity": null}}})).await;
    let report = run_played(&s, &p).await;
    assert_eq!(report.outcome, Outcome::Stopped);
    assert!(
        matches!(status_of(&report, "delete-pvc-app"), StepStatus::Refused { reason } if reason.contains("No eligible snapshots") && reason.contains(&format!("app-dst@{}", s.ns))),
        "{report:#?}"
    );
    let claim = pvc_value(&s, "app").await.expect("not deleted");
    assert!(claim["metadata"]["deletionTimestamp"].is_null());
    assert_eq!(claim["spec"]["volumeName"], json!(format!("{}-app", s.ns)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_is_not_resumed_over_a_destination_it_would_re_apply() {
    let s = scene("vs-flux-ssa").await;
    let mut git = s.rd_git.clone();
    git["metadata"]["labels"].as_object_mut().unwrap().remove("kustomize.toolkit.fluxcd.io/ssa");
    patch_rd(&s, json!({"metadata": {"labels": {"kustomize.toolkit.fluxcd.io/ssa": null}}})).await;
    let p = live_plan(&s).await;
    let Action::MergePatch { patch, .. } = &step(&p, "trigger-restore").action else { panic!() };
    let token = patch["spec"]["trigger"]["manual"].as_str().unwrap().to_string();
    let report = run_played(&s, &p).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:#?}");
    // The restore is done and Flux is held, with the reason and the fix on it.
    assert_eq!(report.flux_left_suspended, vec![format!("Kustomization {}/app", s.ns)]);
    let ks = get(&s.client, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", Some(&s.ns), "app").await;
    assert_eq!(ks["spec"]["suspend"], true);
    let why = ks["metadata"]["annotations"]["lifeboat.dev/kept-suspended"].as_str().unwrap_or_default();
    assert!(why.contains("kustomize.toolkit.fluxcd.io/ssa: IfNotPresent") && why.contains("flux resume kustomization app"), "{ks:#}");
    // Flux does not reconcile; the run's token stays (no second restore over the app).
    assert_eq!(support::flux::reconcile(&s.client, &s.ns, "app", std::slice::from_ref(&git)).await, vec![Applied::Suspended]);
    let rd = get(&s.client, VS, "ReplicationDestination", Some(&s.ns), "app-dst").await;
    assert_eq!(rd["spec"]["trigger"]["manual"], json!(token));
    assert_eq!(rd["status"]["lastManualSync"], json!(token));

    // What resuming would have done: Git's trigger comes back, so VolSync
    // sees a new manual trigger and restores again.
    api_for(&s.client, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", Some(&s.ns))
        .await
        .patch("app", &Default::default(), &kube::api::Patch::Merge(json!({"spec": {"suspend": false}})))
        .await
        .unwrap();
    assert_eq!(support::flux::reconcile(&s.client, &s.ns, "app", std::slice::from_ref(&git)).await, vec![Applied::Written("ReplicationDestination/app-dst".into())]);
    let rd = get(&s.client, VS, "ReplicationDestination", Some(&s.ns), "app-dst").await;
    assert_eq!(rd["spec"]["trigger"]["manual"], "restore-once");
    assert_ne!(rd["spec"]["trigger"]["manual"], rd["status"]["lastManualSync"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ssa_marker_is_re_checked_live_before_flux_is_resumed() {
    let s = scene("vs-flux-live").await;
    let p = live_plan(&s).await;
    assert!(ids(&p).contains(&"resume-kustomization-app"));
    // Someone drops the marker while the restore runs.
    patch_rd(&s, json!({"metadata": {"labels": {"kustomize.toolkit.fluxcd.io/ssa": null}}})).await;
    let report = run_played(&s, &p).await;
    assert!(matches!(status_of(&report, "resume-kustomization-app"), StepStatus::Refused { reason } if reason.contains("IfNotPresent")), "{report:#?}");
    assert!(matches!(status_of(&report, "scale-up-app"), StepStatus::Succeeded { .. }), "the app itself is back");
    assert_eq!(get(&s.client, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", Some(&s.ns), "app").await["spec"]["suspend"], true);
    assert_eq!(report.flux_left_suspended, vec![format!("Kustomization {}/app", s.ns)]);
}
