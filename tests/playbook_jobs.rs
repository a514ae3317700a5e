//! The Job-based playbooks end to end on the real apiserver: s3-restore (the
//! Kanidm pattern, with the shipped template), kanidm-credential-reset and
//! garage-meta-restore. The test plays the Job controller and the kubelet:
//! on seeing a Job it creates the Job's pod from its template, then writes
//! the pod's terminated container state (with the container's termination
//! message, as a kubelet does) and the Job's terminal conditions. Most tests
//! have no kubelet, so the apiserver cannot serve pods/log and the runner
//! falls back to the termination message; one test registers a stand-in
//! kubelet (tests/support/kubelet.rs) and reads the output through pods/log.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use kube::api::ListParams;
use kube::Client;
use lifeboat::act::runner::{execute, resume, Outcome, RunLimits, RunReport, StepStatus};
use lifeboat::config::{Config, Dur};
use lifeboat::plan::playbooks::{plan, Trigger};
use lifeboat::plan::Plan;
use lifeboat::snapshot::Snapshot;
use serde_json::{json, Value};
use support::controlplane::control_plane;
use support::fixtures::*;
use support::k8s::*;

fn fast() -> RunLimits {
    RunLimits { poll_interval: Duration::from_millis(200), ..RunLimits::default() }
}

/// The report as a journal would hold it if the run had died before `id`.
fn from_step(report: &RunReport, id: &str) -> RunReport {
    let mut previous = report.clone();
    let at = previous.steps.iter().position(|s| s.id == id).unwrap();
    for st in &mut previous.steps[at..] {
        st.status = StepStatus::NotRun;
    }
    previous
}

fn detail(report: &RunReport, id: &str) -> String {
    let step = report.steps.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("no step {id}"));
    match &step.status {
        StepStatus::Succeeded { detail } => detail.clone(),
        other => format!("{other:?}"),
    }
}

async fn live_plan(client: &Client, config: &Config, playbook: &str, trigger: Trigger) -> Plan {
    let snapshot = live_snapshot(client, config).await;
    plan(playbook, &snapshot.state, &snapshot.findings, &trigger).expect("plans")
}

/// What the container of a Job prints, and whether it exits 0.
type Behaviour = Arc<dyn Fn(&str) -> (bool, String) + Send + Sync>;

/// Plays the Job controller and the kubelet on `node`.
async fn play_jobs(client: Client, ns: String, node: String, behaviour: Behaviour) {
    let jobs = api_for(&client, "batch/v1", "Job", Some(&ns)).await;
    let pods = api_for(&client, "v1", "Pod", Some(&ns)).await;
    loop {
        for job in jobs.list(&ListParams::default()).await.unwrap().items {
            let job = serde_json::to_value(job).unwrap();
            let name = job["metadata"]["name"].as_str().unwrap().to_string();
            let terminal = job["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Complete" || c["type"] == "Failed"));
            if terminal || job["metadata"]["deletionTimestamp"].is_string() {
                continue;
            }
            let template = &job["spec"]["template"];
            if !claims_mountable(&client, &ns, &template["spec"]).await {
                continue; // its pod stays Pending: the Job neither runs nor ends
            }
            let (ok, output) = behaviour(&name);
            let container = template["spec"]["containers"][0]["name"].as_str().unwrap().to_string();
            let mut spec = template["spec"].clone();
            spec["nodeName"] = json!(node);
            let pod_name = format!("{name}-x7k2p");
            create(
                &client,
                json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": ns, "labels": template["metadata"]["labels"]}, "spec": spec}),
                None,
            )
            .await;
            let now = rfc3339(Utc::now());
            set_status(&client, "v1", "Pod", Some(&ns), &pod_name, support::players::terminated_status(&container, ok, &output)).await;
            let (criteria, end) = if ok { ("SuccessCriteriaMet", "Complete") } else { ("FailureTarget", "Failed") };
            let cond = |t: &str| json!({"type": t, "status": "True", "reason": if ok {"CompletionsReached"} else {"BackoffLimitExceeded"}, "message": "", "lastProbeTime": now, "lastTransitionTime": now});
            let mut status = json!({"startTime": now, "conditions": [cond(criteria), cond(end)], "ready": 0, "terminating": 0,
                                    "uncountedTerminatedPods": {}});
            if ok {
                status["succeeded"] = json!(1);
                status["completionTime"] = json!(now);
            } else {
                status["failed"] = json!(1);
            }
            set_status(&client, "batch/v1", "Job", Some(&ns), &name, status).await;
            let _ = pods;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The scheduler and the volume attach for a Job's pod: every claim exists,
/// is not being deleted, is not bound to a volume pinned to a node that is
/// missing or NotReady (local PV node affinity), and no other live pod
/// mounts it (ReadWriteOnce: the attach/detach controller keeps a volume on
/// one node, kanidmd and a restore never write the database together).
async fn claims_mountable(client: &Client, ns: &str, spec: &Value) -> bool {
    let claims: Vec<String> = spec["volumes"].as_array().into_iter().flatten().filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str().map(String::from)).collect();
    let pvcs = api_for(client, "v1", "PersistentVolumeClaim", Some(ns)).await;
    let pods: Vec<Value> =
        api_for(client, "v1", "Pod", Some(ns)).await.list(&ListParams::default()).await.unwrap().items.into_iter().map(|p| serde_json::to_value(p).unwrap()).collect();
    for claim in claims {
        let Some(pvc) = pvcs.get_opt(&claim).await.unwrap().map(|p| serde_json::to_value(p).unwrap()) else { return false };
        if pvc["metadata"]["deletionTimestamp"].is_string() {
            return false;
        }
        if let Some(volume) = pvc["spec"]["volumeName"].as_str() {
            let pv = serde_json::to_value(api_for(client, "v1", "PersistentVolume", None).await.get(volume).await.unwrap()).unwrap();
            let pinned: Vec<String> = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|t| t["matchExpressions"].as_array().cloned().unwrap_or_default())
                .flat_map(|e| e["values"].as_array().cloned().unwrap_or_default())
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            for node in pinned {
                let n = api_for(client, "v1", "Node", None).await.get_opt(&node).await.unwrap().map(|n| serde_json::to_value(n).unwrap());
                let ready = n.is_some_and(|n| n["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")));
                if !ready {
                    return false;
                }
            }
        }
        let mounted = pods.iter().any(|p| {
            let done = matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
            !done
                && p["metadata"]["deletionTimestamp"].is_null()
                && p["spec"]["volumes"].as_array().is_some_and(|vs| vs.iter().any(|v| v["persistentVolumeClaim"]["claimName"] == claim.as_str()))
        });
        if mounted {
            return false;
        }
    }
    true
}

/// Plays the StatefulSet controller with the scheduler and kubelet for the
/// pods: pods `<sts>-<i>` follow `spec.replicas` (surplus ones deleted
/// gracefully, so one on a dead node stays Terminating), each mounting
/// `<template>-<sts>-<i>`; a missing pod is created Running and Ready on
/// `node` when its claim can be mounted there, else Pending (unscheduled);
/// a Pending one is re-created once it can be.
async fn play_statefulset_pods(client: Client, ns: String, node: String) {
    let sets = api_for(&client, "apps/v1", "StatefulSet", Some(&ns)).await;
    let pods = api_for(&client, "v1", "Pod", Some(&ns)).await;
    loop {
        for sts in sets.list(&ListParams::default()).await.unwrap().items {
            let sts = serde_json::to_value(sts).unwrap();
            let name = sts["metadata"]["name"].as_str().unwrap().to_string();
            let wanted = sts["spec"]["replicas"].as_i64().unwrap_or(1);
            let templates: Vec<String> =
                sts["spec"]["volumeClaimTemplates"].as_array().into_iter().flatten().filter_map(|t| t["metadata"]["name"].as_str().map(String::from)).collect();
            for ordinal in 0..wanted.max(1) {
                let pod_name = format!("{name}-{ordinal}");
                let current = pods.get_opt(&pod_name).await.unwrap().map(|p| serde_json::to_value(p).unwrap());
                if ordinal >= wanted {
                    if current.as_ref().is_some_and(|p| p["metadata"]["deletionTimestamp"].is_null()) {
                        let _ = pods.delete(&pod_name, &Default::default()).await;
                    }
                    continue;
                }
                let volumes: Vec<Value> = templates.iter().map(|t| json!({"name": t, "persistentVolumeClaim": {"claimName": format!("{t}-{pod_name}")}})).collect();
                let spec = json!({"volumes": volumes, "containers": sts["spec"]["template"]["spec"]["containers"]});
                match &current {
                    Some(p) if p["spec"]["nodeName"].is_null() && claims_mountable(&client, &ns, &spec).await => {
                        let _ = pods.delete(&pod_name, &kube::api::DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await;
                    }
                    Some(_) => {}
                    None => {
                        let runnable = claims_mountable(&client, &ns, &spec).await;
                        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name, "namespace": ns, "labels": sts["spec"]["template"]["metadata"]["labels"],
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name, "uid": sts["metadata"]["uid"], "controller": true}]}, "spec": spec});
                        if runnable {
                            pod["spec"]["nodeName"] = json!(node);
                            pod["status"] = support::players::running_status(&pod);
                        }
                        create(&client, pod, None).await;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn workload_object(kind: &str, ns: &str, name: &str, labels: Value) -> Value {
    let mut w = json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}},
        "status": {"replicas": 1}});
    if kind == "StatefulSet" {
        w["spec"]["serviceName"] = json!(name);
    }
    w
}

struct Scene {
    client: Client,
    ns: String,
    healthy: String,
    doomed: String,
}

const PVC: &str = "kanidm-data-kanidm-default-0";
/// The Kanidm image, pinned as kaniop requires for a restore (examples/node-loss/kanidm.yaml).
const KANIDM_IMAGE: &str = "docker.io/kanidm/server:1.11.1@sha256:7c3d7ed868e91f78c24a7fb9c548876563b375a4203021b730d58369b97ad154";

/// The kaniop-owned StatefulSet `kanidm-default` of `Kanidm` `kanidm`.
async fn kaniop_statefulset(client: &Client, ns: &str, image: &str) {
    support::kaniop::install_crd(client).await;
    let kanidm = create(client, support::kaniop::kanidm(ns, "kanidm", image, "default", 1), None).await;
    let mut sts = workload_object(
        "StatefulSet",
        ns,
        "kanidm-default",
        json!({"app.kubernetes.io/managed-by": "kaniop", "kanidm.kaniop.rs/cluster": "kanidm", "kanidm.kaniop.rs/replica-group": "default"}),
    );
    sts["metadata"]["ownerReferences"] = support::kaniop::owner_reference(&kanidm);
    sts["spec"]["template"]["spec"]["containers"] = json!([{"name": "kanidm", "image": image}]);
    sts["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "kanidm-data"}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "openebs-hostpath", "resources": {"requests": {"storage": "10Gi"}}}}]);
    create(client, sts, None).await;
}

/// Kanidm as in the example dump: StatefulSet kanidm-default (kaniop, no
/// Flux labels), its data PVC pinned to a node NotReady for 10 minutes,
/// the backup CronJob (with Flux labels) that last succeeded 90 minutes ago
/// (or never), the Kustomization.
async fn kanidm_scene(prefix: &str, backup_succeeded: bool) -> Scene {
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, prefix).await;
    let (healthy, doomed) = (format!("{ns}-a"), format!("{ns}-b"));
    node_ready(&client, &healthy).await;
    node_ready(&client, &doomed).await;
    let pv = format!("{ns}-kanidm");
    create(&client, pv_pinned(&pv, "kubernetes.io/hostname", &doomed, &ns, PVC), None).await;
    create(&client, pvc(&ns, PVC, &pv, json!({"app.kubernetes.io/name": "kanidm"})), None).await;
    kaniop_statefulset(&client, &ns, KANIDM_IMAGE).await;
    create(&client, pod(&ns, "kanidm-default-0", &doomed, &[PVC], json!({"app": "kanidm-default"}), Some(("StatefulSet", "kanidm-default"))), None).await;
    let mut cj = cron_job(&ns, "kanidm-backup-sync", "30 */1 * * *", backup_succeeded.then(|| rfc3339(Utc::now() - chrono::Duration::minutes(90))).as_deref());
    cj["metadata"]["labels"] = json!({"kustomize.toolkit.fluxcd.io/name": "kanidm", "kustomize.toolkit.fluxcd.io/namespace": ns});
    cj["spec"]["jobTemplate"] = json!({"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "backup-sync", "image": "amazon/aws-cli:2"}]}}}});
    create(&client, cj, None).await;
    create(&client, kustomization(&ns, "kanidm", false, "True"), None).await;
    mark_node_not_ready(&client, &doomed, Utc::now() - chrono::Duration::minutes(10)).await;
    // kaniop runs for the whole test, as it does in the cluster.
    tokio::spawn(support::kaniop::play_kaniop(client.clone(), ns.clone()));
    Scene { client, ns, healthy, doomed }
}

/// The shipped example (deploy/examples/s3-restore-kanidm.yaml), its
/// template keyed to the test namespace.
fn example_config(ns: &str) -> Config {
    let mut config =
        Config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/s3-restore-kanidm.yaml"))).expect("the shipped example is a valid config");
    let app = config.s3_restore.apps.remove(&format!("identity/{PVC}")).expect("the example configures Kanidm");
    config.s3_restore.apps = BTreeMap::from([(format!("{ns}/{PVC}"), app)]);
    config.kanidm.namespace = ns.to_string();
    config.discovery_interval = Dur::secs(1);
    // A restore Job that can never start fails the run instead of waiting 30 minutes.
    config.s3_restore.timeout = Dur::secs(60);
    config
}

fn restore_prints(ok: bool, output: &str) -> Behaviour {
    let output = output.to_string();
    Arc::new(move |_: &str| (ok, output.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_restore_replaces_the_lost_pvc_and_restores_it_with_the_shipped_template() {
    let s = kanidm_scene("s3r-e2e", true).await;
    let config = example_config(&s.ns);
    let trigger = Trigger { namespace: Some(s.ns.clone()), name: Some("kanidm-default".into()), node: None };
    let plan = live_plan(&s.client, &config, "s3-restore", trigger).await;
    let ids: Vec<&str> = plan.steps.iter().map(|st| st.id.as_str()).collect();
    assert_eq!(
        ids,
        ["suspend-flux", "scale-down", "wait-stopped", "delete-pod-kanidm-default-0", "wait-unused", "hold-flux", "delete-pvc", "create-pvc", "restore", "scale-up", "resume-flux"],
        "{}",
        plan.render_text()
    );
    // kaniop owns the StatefulSet: it is stopped through the Kanidm's replica group.
    assert!(
        matches!(&plan.steps[1].action, lifeboat::plan::Action::SetKanidmReplicas { kanidm, group, replicas: 0 } if kanidm.kind == "Kanidm" && group == "default"),
        "{}",
        plan.render_text()
    );
    // The recovery point is kanidm's own newest backup before the sync shipped it
    // (online_backup `@daily`), not the sync CronJob's last success.
    let synced = Utc::now() - chrono::Duration::minutes(90);
    let newest_backup = synced.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    assert!(plan.findings.iter().any(|f| f.starts_with("recovery point:") && f.contains(&newest_backup.to_rfc3339()) && f.contains("\"@daily\"")), "{:?}", plan.findings);
    let delete = plan.steps.iter().find(|st| st.id == "delete-pvc").unwrap();
    assert!(delete.preconditions.iter().any(|p| matches!(p, lifeboat::plan::Precondition::ImageIs { image, .. } if image == KANIDM_IMAGE)), "{delete:?}");
    let old = get(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns), PVC).await;
    let old_uid = old["metadata"]["uid"].clone();
    // The affected() list of the composed node-loss playbook names this PVC.
    let snap = live_snapshot(&s.client, &config).await;
    let affected = lifeboat::plan::playbooks::s3_restore::affected(&snap.state, &snap.findings);
    assert!(
        affected.iter().any(|t| t.namespace.as_deref() == Some(s.ns.as_str()) && t.name.as_deref() == Some(PVC) && t.node.as_deref() == Some(s.doomed.as_str())),
        "{affected:?}"
    );

    // kaniop (played since the scene) undoes a direct scale of its StatefulSet, whose controller then
    // re-creates the pod on the claim: only a stop through the Kanidm lets the
    // restore Job (which runs only where its claim can be mounted) start.
    let sts_pods = tokio::spawn(play_statefulset_pods(s.client.clone(), s.ns.clone(), s.healthy.clone()));
    let jobs = tokio::spawn(play_jobs(s.client.clone(), s.ns.clone(), s.healthy.clone(), restore_prints(true, "Restoring ...\n✅ Restore Success!")));
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    jobs.abort();
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:#?}");
    assert!(detail(&report, "restore").contains("Restore Success"), "{report:#?}");

    let claim = get(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns), PVC).await;
    assert_ne!(claim["metadata"]["uid"], old_uid, "a new claim");
    assert!(claim["spec"]["volumeName"].is_null(), "not bound to the old, pinned volume: {claim:#}");
    assert_eq!(claim["spec"]["storageClassName"], "openebs-hostpath");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "10Gi");
    let job_name = match &plan.steps.iter().find(|st| st.id == "restore").unwrap().action {
        lifeboat::plan::Action::RunJob { job, .. } => job.name.clone(),
        other => panic!("{other:?}"),
    };
    let job = get(&s.client, "batch/v1", "Job", Some(&s.ns), &job_name).await;
    let volumes = job["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(volumes.contains(PVC), "the template's {{{{pvc}}}} was filled: {volumes}");
    assert!(job["spec"]["template"]["spec"]["initContainers"][0]["args"][0].as_str().unwrap().contains("s3://kanidm/backups/"), "{{{{app}}}} filled");
    assert_eq!(get(&s.client, support::kaniop::KANIDM, "Kanidm", Some(&s.ns), "kanidm").await["spec"]["replicaGroups"][0]["replicas"], 1);
    assert_eq!(get(&s.client, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", Some(&s.ns), "kanidm").await["spec"]["suspend"], false);
    assert!(get(&s.client, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", Some(&s.ns), "kanidm").await["metadata"]["annotations"]["lifeboat.dev/kept-suspended"].is_null());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while get(&s.client, "apps/v1", "StatefulSet", Some(&s.ns), "kanidm-default").await["spec"]["replicas"] != 1 {
        assert!(tokio::time::Instant::now() < deadline, "kaniop never scaled the StatefulSet back up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sts_pods.abort();

    // Idempotent: a run resumed at the restore step (as after a crash)
    // finds the completed Job and restores nothing twice.
    let again = resume(&s.client, &plan, &plan.hash(), &fast(), from_step(&report, "restore"), &|_| {}).await;
    assert_eq!(again.outcome, Outcome::Succeeded, "{again:#?}");
    assert!(detail(&again, "restore").contains("found completed"), "{again:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restore_output_is_read_from_pods_log_through_the_apiserver() {
    let s = kanidm_scene("s3r-podslog", true).await;
    let dir = tempfile::tempdir().unwrap();
    let kubelet = support::kubelet::FakeKubelet::start(dir.path()).await;
    kubelet.register(&s.client, &s.healthy).await;
    let config = example_config(&s.ns);
    let trigger = Trigger { namespace: Some(s.ns.clone()), name: Some(PVC.into()), node: None };
    let plan = live_plan(&s.client, &config, "s3-restore", trigger).await;
    let lifeboat::plan::Action::RunJob { job, .. } = &plan.steps.iter().find(|st| st.id == "restore").unwrap().action else { panic!() };
    // kanidmd writes no termination message (the image has no shell): the
    // result is only in the container log, which the kubelet serves.
    kubelet.set_log(&s.ns, &format!("{}-x7k2p", job.name), "restore", "[info] restoring entries\n✅ Restore Success!\n");
    let jobs = tokio::spawn(play_jobs(s.client.clone(), s.ns.clone(), s.healthy.clone(), restore_prints(true, "")));
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    jobs.abort();
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:#?}");
    assert!(detail(&report, "restore").contains("Restore Success"), "{report:#?}");
}

/// Plays kaniop: re-creates the data PVC from its volumeClaimTemplate as
/// soon as it is gone, even with the StatefulSet at 0.
async fn play_kaniop(client: Client, ns: String) {
    let pvcs = api_for(&client, "v1", "PersistentVolumeClaim", Some(&ns)).await;
    loop {
        if pvcs.get_opt(PVC).await.unwrap().is_none() {
            create(
                &client,
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": PVC, "namespace": ns, "labels": {"app.kubernetes.io/name": "kanidm"}},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "openebs-hostpath", "resources": {"requests": {"storage": "10Gi"}}}}),
                None,
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_that_recreates_the_claim_at_once_does_not_stop_the_restore() {
    let s = kanidm_scene("s3r-kaniop", true).await;
    let config = example_config(&s.ns);
    let trigger = Trigger { namespace: Some(s.ns.clone()), name: Some(PVC.into()), node: None };
    let plan = live_plan(&s.client, &config, "s3-restore", trigger).await;
    let old_uid = get(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns), PVC).await["metadata"]["uid"].clone();
    let kaniop = tokio::spawn(play_kaniop(s.client.clone(), s.ns.clone()));
    let jobs = tokio::spawn(play_jobs(s.client.clone(), s.ns.clone(), s.healthy.clone(), restore_prints(true, "✅ Restore Success!")));
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    jobs.abort();
    kaniop.abort();
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:#?}");
    let claim = get(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns), PVC).await;
    assert_ne!(claim["metadata"]["uid"], old_uid);
    assert!(claim["metadata"]["deletionTimestamp"].is_null(), "the re-created claim was left alone: {claim:#}");
    assert_eq!(claim["metadata"]["finalizers"], json!(["kubernetes.io/pvc-protection"]), "its finalizer was not cleared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_restore_job_stops_the_run_with_its_output_and_flux_stays_suspended() {
    let s = kanidm_scene("s3r-fail", true).await;
    let config = example_config(&s.ns);
    let trigger = Trigger { namespace: Some(s.ns.clone()), name: Some(PVC.into()), node: None };
    let plan = live_plan(&s.client, &config, "s3-restore", trigger).await;
    let jobs = tokio::spawn(play_jobs(s.client.clone(), s.ns.clone(), s.healthy.clone(), restore_prints(false, "downloading\nERROR: backup file is truncated")));
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    jobs.abort();
    assert_eq!(report.outcome, Outcome::Stopped);
    let restore = report.steps.iter().find(|st| st.id == "restore").unwrap();
    assert!(
        matches!(&restore.status, StepStatus::Failed { error } if error.contains("ERROR: backup file is truncated") && error.contains("BackoffLimitExceeded") && error.contains("kubectl delete job")),
        "{report:#?}"
    );
    assert!(report.steps.iter().filter(|st| st.id == "scale-up" || st.id == "resume-flux").all(|st| st.status == StepStatus::NotRun));
    // The claim was replaced: resumed, Flux would start Kanidm on the empty volume.
    let flux = get(&s.client, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", Some(&s.ns), "kanidm").await;
    assert_eq!(flux["spec"]["suspend"], true, "held suspended: {flux:#}");
    assert!(flux["metadata"]["annotations"]["lifeboat.dev/kept-suspended"].as_str().is_some_and(|why| why.contains("s3-restore")), "{flux:#}");
    assert_eq!(report.flux_left_suspended, vec![format!("Kustomization {}/kanidm", s.ns)]);
    assert!(
        report.remaining_commands().iter().any(|c| c.contains("kanidm") && c.contains("replicaGroups[name=default].replicas: 1")),
        "the report says how to finish by hand (kaniop owns the StatefulSet): {:?}",
        report.remaining_commands()
    );

    // The failed Job is evidence: a resumed run does not re-create it.
    let again = resume(&s.client, &plan, &plan.hash(), &fast(), from_step(&report, "restore"), &|_| {}).await;
    let restore = again.steps.iter().find(|st| st.id == "restore").unwrap();
    assert!(matches!(&restore.status, StepStatus::Failed { error } if error.contains("already existed and Failed")), "{again:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_successful_backup_nothing_is_deleted() {
    let s = kanidm_scene("s3r-nobackup", false).await;
    let config = example_config(&s.ns);
    let trigger = Trigger { namespace: Some(s.ns.clone()), name: Some(PVC.into()), node: None };
    let plan = live_plan(&s.client, &config, "s3-restore", trigger).await;
    assert!(plan.nothing_to_do(), "{}", plan.render_text());
    assert!(plan.findings.iter().any(|f| f.contains("never succeeded") && f.contains("nothing will be deleted")), "{:?}", plan.findings);
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    assert_eq!(report.outcome, Outcome::NothingToDo);
    assert!(api_for(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns)).await.get_opt(PVC).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_coming_back_before_the_run_stops_it_before_anything_is_deleted() {
    let s = kanidm_scene("s3r-nodeback", true).await;
    let config = example_config(&s.ns);
    let trigger = Trigger { namespace: Some(s.ns.clone()), name: Some(PVC.into()), node: None };
    let plan = live_plan(&s.client, &config, "s3-restore", trigger).await;
    mark_node_ready(&s.client, &s.doomed).await;
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    assert_eq!(report.outcome, Outcome::Stopped);
    assert!(matches!(&report.steps[0].status, StepStatus::Refused { reason } if reason.contains("still missing or not Ready")), "{report:#?}");
    assert!(report.steps[1..].iter().all(|st| st.status == StepStatus::NotRun));
    let claim = get(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns), PVC).await;
    assert!(claim["metadata"]["deletionTimestamp"].is_null(), "nothing deleted");
    assert_eq!(get(&s.client, "apps/v1", "StatefulSet", Some(&s.ns), "kanidm-default").await["spec"]["replicas"], 1, "not even scaled down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_coming_back_mid_run_refuses_the_pvc_deletion() {
    use lifeboat::act::runner::fresh_report;
    let s = kanidm_scene("s3r-midrun", true).await;
    let config = example_config(&s.ns);
    let trigger = Trigger { namespace: Some(s.ns.clone()), name: Some(PVC.into()), node: None };
    let plan = live_plan(&s.client, &config, "s3-restore", trigger).await;
    // The node returns right after the dead pod was force-deleted, before
    // the PVC deletion starts (the progress callback runs between steps).
    let returned = std::sync::atomic::AtomicBool::new(false);
    let (client, doomed) = (s.client.clone(), s.doomed.clone());
    let progress = |r: &RunReport| {
        let pod_deleted = r.steps.iter().any(|st| st.id.starts_with("delete-pod-") && matches!(st.status, StepStatus::Succeeded { .. }));
        if pod_deleted && !returned.swap(true, std::sync::atomic::Ordering::SeqCst) {
            tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(mark_node_ready(&client, &doomed)));
        }
    };
    let report = resume(&s.client, &plan, &plan.hash(), &fast(), fresh_report(&plan), &progress).await;
    assert!(returned.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(report.outcome, Outcome::Stopped);
    let hold = report.steps.iter().find(|st| st.id == "hold-flux").unwrap();
    assert!(matches!(&hold.status, StepStatus::Refused { reason } if reason.contains("still missing or not Ready")), "{report:#?}");
    assert!(report.steps.iter().filter(|st| ["delete-pvc", "create-pvc", "restore", "scale-up"].contains(&st.id.as_str())).all(|st| st.status == StepStatus::NotRun));
    let claim = get(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns), PVC).await;
    assert!(claim["metadata"]["deletionTimestamp"].is_null(), "the claim survives");
    assert_eq!(get(&s.client, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", Some(&s.ns), "kanidm").await["spec"]["suspend"], false);
}

mod credentials {
    //! kanidm-credential-reset: the passwords go from `kanidmd recover-account`,
    //! run by pods/exec in the live pod (the real apiserver translating to SPDY
    //! for the stand-in kubelet), into the Secret and nowhere else.

    use super::*;
    use k8s_openapi::api::core::v1::Secret;
    use lifeboat::config::Mode;
    use lifeboat::journal::{RunRecord, RunTrigger};

    const ADMIN_PW: &str = "Zq7vR2-adm1n-K8sLp0xW";
    const IDM_PW: &str = "Jm3tY9-1dm-Wd55sAqPe";
    const LEAKY_PW: &str = "Pp4uN6-leaky-Hc21bVmQ";

    /// Everything every test of this binary logs (lifeboat at TRACE, the
    /// rest at DEBUG), collected to search it for secrets.
    fn captured_logs() -> &'static Mutex<Vec<u8>> {
        static LOGS: std::sync::OnceLock<&'static Mutex<Vec<u8>>> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            let logs: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
            struct Sink(&'static Mutex<Vec<u8>>);
            impl std::io::Write for Sink {
                fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                    self.0.lock().unwrap().extend_from_slice(buf);
                    Ok(buf.len())
                }
                fn flush(&mut self) -> std::io::Result<()> {
                    Ok(())
                }
            }
            let subscriber = tracing_subscriber::fmt().with_env_filter("debug,lifeboat=trace").with_ansi(false).with_writer(move || Sink(logs)).finish();
            tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber in this test binary");
            logs
        })
    }

    fn leaks(haystack: &str, secrets: &[&str]) -> Vec<String> {
        let encode = |s: &str| serde_json::to_value(k8s_openapi::ByteString(s.as_bytes().to_vec())).unwrap().as_str().unwrap().to_string();
        secrets.iter().flat_map(|s| [s.to_string(), encode(s)]).filter(|s| haystack.contains(s.as_str())).collect()
    }

    fn password(user: &str) -> &'static str {
        if user == "admin" {
            ADMIN_PW
        } else {
            IDM_PW
        }
    }

    /// Kanidm running on a healthy node whose kubelet is the stand-in:
    /// kaniop's StatefulSet, its Ready pod `kanidm-default-0`, and kanidmd
    /// answering exec in it (support::kaniop::serve_kanidmd).
    async fn scene(prefix: &str, kubelet: &Arc<support::kubelet::FakeKubelet>) -> (Scene, Config) {
        let cp = control_plane();
        let client = cp.admin_client();
        let ns = cp.namespace(&client, prefix).await;
        let healthy = format!("{ns}-a");
        node_ready(&client, &healthy).await;
        kubelet.register(&client, &healthy).await;
        let pv = format!("{ns}-kanidm");
        create(&client, pv_pinned(&pv, "kubernetes.io/hostname", &healthy, &ns, PVC), None).await;
        create(&client, pvc(&ns, PVC, &pv, json!({})), None).await;
        kaniop_statefulset(&client, &ns, KANIDM_IMAGE).await;
        let mut kanidmd = pod(&ns, "kanidm-default-0", &healthy, &[PVC], json!({"app": "kanidm-default"}), Some(("StatefulSet", "kanidm-default")));
        kanidmd["spec"]["containers"] = json!([{"name": "kanidm", "image": KANIDM_IMAGE}]);
        kanidmd["status"] = support::players::running_status(&kanidmd);
        create(&client, kanidmd, None).await;
        create(&client, workload_object("Deployment", &ns, "forgejo", json!({})), None).await;
        create(&client, kustomization(&ns, "kanidm", false, "True"), None).await;
        create(
            &client,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kanidm-admin-passwords", "namespace": ns},
            "stringData": {"ADMIN_PASSWORD": "old-admin", "IDM_ADMIN_PASSWORD": "old-idm"}}),
            None,
        )
        .await;
        support::kaniop::serve_kanidmd(client.clone(), ns.clone(), "kanidm-default".into(), kubelet, Arc::new(|user: &str| password(user).to_string()));
        let mut config = example_config(&ns);
        config.kanidm.oidc_clients = vec![format!("Deployment/{ns}/forgejo")];
        (Scene { client, ns, doomed: String::new(), healthy }, config)
    }

    async fn secret_value(s: &Scene, key: &str) -> Vec<u8> {
        let secret: Secret = kube::Api::namespaced(s.client.clone(), &s.ns).get("kanidm-admin-passwords").await.unwrap();
        secret.data.unwrap()[key].0.clone()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passwords_go_into_the_secret_and_nowhere_else() {
        let logs = captured_logs();
        let dir = tempfile::tempdir().unwrap();
        let kubelet = Arc::new(support::kubelet::FakeKubelet::start(dir.path()).await);
        let (s, config) = scene("kanidm-reset", &kubelet).await;
        let plan = live_plan(&s.client, &config, "kanidm-credential-reset", Trigger::default()).await;
        let ids: Vec<&str> = plan.steps.iter().map(|st| st.id.as_str()).collect();
        assert_eq!(ids, ["wait-running", "recover-admin", "recover-idm-admin", &format!("restart-deployment-{}-forgejo", s.ns)]);
        assert!(
            matches!(&plan.steps[1].action, lifeboat::plan::Action::ExecToSecret { pod, command, .. } if pod.name == "kanidm-default-0" && command == &["kanidmd", "recover-account", "admin"]),
            "{}",
            plan.render_text()
        );
        let again = live_plan(&s.client, &config, "kanidm-credential-reset", Trigger::default()).await;
        assert_eq!(plan.hash(), again.hash(), "nothing time-dependent in the plan (restartedAt is stamped at execution)");

        // recover-account runs in the live kanidmd over pods/exec (through the
        // real apiserver to the stand-in kubelet): no Job, no pod log.
        let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
        assert_eq!(report.outcome, Outcome::Succeeded, "{report:#?}");
        assert!(detail(&report, "recover-admin").contains("ADMIN_PASSWORD updated in Secret") && detail(&report, "recover-admin").contains("(value not shown"), "{report:#?}");
        assert!(detail(&report, "recover-idm-admin").contains("IDM_ADMIN_PASSWORD updated"), "{report:#?}");
        assert_eq!(secret_value(&s, "ADMIN_PASSWORD").await, ADMIN_PW.as_bytes());
        assert_eq!(secret_value(&s, "IDM_ADMIN_PASSWORD").await, IDM_PW.as_bytes());
        let jobs = api_for(&s.client, "batch/v1", "Job", Some(&s.ns)).await.list(&ListParams::default()).await.unwrap();
        assert!(jobs.items.is_empty(), "no Job (whose pod log would hold a password) is created");
        let forgejo = get(&s.client, "apps/v1", "Deployment", Some(&s.ns), "forgejo").await;
        assert!(forgejo["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string(), "{forgejo:#}");

        let mut record = RunRecord::new(&plan, RunTrigger::default(), Mode::Approve, "test", Utc::now());
        record.status.apply_report(&report);
        let journal = serde_json::to_string(&record).unwrap();
        assert!(journal.contains("ADMIN_PASSWORD updated"), "the journal has the step details");
        let everything = format!("{}\n{journal}\n{}\n{}", serde_json::to_string(&report).unwrap(), plan.render_text(), String::from_utf8_lossy(&logs.lock().unwrap()));
        assert!(String::from_utf8_lossy(&logs.lock().unwrap()).contains("recover-admin"), "the capture works: it saw the run");
        assert_eq!(leaks(&everything, &[ADMIN_PW, IDM_PW]), Vec::<String>::new(), "a password leaked into the report, journal, plan or logs");

        // A failing recover-account whose output holds a password: the error shows none of it.
        let (ns, pod) = (s.ns.clone(), "kanidm-default-0");
        let leaky: support::kubelet::ExecHandler = Arc::new(|_: &[String]| (1, format!("new_password: \"{LEAKY_PW}\"\nerror: could not write the account\n")));
        // (a handler set for the container answers before serve_kanidmd's.)
        kubelet.set_running(&ns, pod, "kanidm", Some(leaky));
        let failed = execute(&s.client, &plan, &plan.hash(), &fast()).await;
        assert_eq!(failed.outcome, Outcome::Stopped);
        let step = failed.steps.iter().find(|st| st.id == "recover-admin").unwrap();
        assert!(matches!(&step.status, StepStatus::Failed { error } if error.contains("output not shown") && error.contains("exit code 1")), "{failed:#?}");
        let mut record = RunRecord::new(&plan, RunTrigger::default(), Mode::Approve, "test", Utc::now());
        record.status.apply_report(&failed);
        let everything = format!("{}\n{}\n{}", serde_json::to_string(&failed).unwrap(), serde_json::to_string(&record).unwrap(), String::from_utf8_lossy(&logs.lock().unwrap()));
        assert_eq!(leaks(&everything, &[ADMIN_PW, IDM_PW, LEAKY_PW]), Vec::<String>::new());
        assert_eq!(secret_value(&s, "ADMIN_PASSWORD").await, ADMIN_PW.as_bytes(), "a failed reset leaves the Secret alone");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recover_account_only_works_in_a_running_kanidmd() {
        let dir = tempfile::tempdir().unwrap();
        let kubelet = Arc::new(support::kubelet::FakeKubelet::start(dir.path()).await);
        let (s, config) = scene("kanidm-stopped", &kubelet).await;
        let plan = live_plan(&s.client, &config, "kanidm-credential-reset", Trigger::default()).await;
        // kanidmd stopped (the pod is no longer Running/Ready): the kubelet has
        // no container to exec into.
        set_status(
            &s.client,
            "v1",
            "Pod",
            Some(&s.ns),
            "kanidm-default-0",
            json!({"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}], "containerStatuses": null}),
        )
        .await;
        assert!(!kubelet.is_running(&s.ns, "kanidm-default-0", "kanidm").await, "the kubelet sees the pod stopped");
        // The plan itself refuses: recover-account requires the pod Ready.
        let mut from_recover = lifeboat::act::runner::fresh_report(&plan);
        from_recover.steps[0].status = StepStatus::Succeeded { detail: "(the wait, skipped for this test)".into() };
        let refused = resume(&s.client, &plan, &plan.hash(), &fast(), from_recover.clone(), &|_| {}).await;
        let step = refused.steps.iter().find(|st| st.id == "recover-admin").unwrap();
        assert!(matches!(&step.status, StepStatus::Refused { reason } if reason.contains("is Ready")), "{refused:#?}");
        // Without that precondition, the exec itself fails: nothing answers.
        let mut unguarded = plan.clone();
        for st in &mut unguarded.steps {
            st.preconditions.clear();
        }
        let failed = resume(&s.client, &unguarded, &unguarded.hash(), &fast(), from_recover, &|_| {}).await;
        let step = failed.steps.iter().find(|st| st.id == "recover-admin").unwrap();
        assert!(matches!(&step.status, StepStatus::Failed { error } if error.contains("kanidm-default-0")), "{failed:#?}");
        assert_eq!(secret_value(&s, "ADMIN_PASSWORD").await, b"old-admin", "nothing written");
    }

    /// `name` from a shipped manifest file, renamed for this test.
    fn shipped_cluster_role(file: &str, name: &str, rename: &str) -> Value {
        let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
        let mut role = serde_yaml::Deserializer::from_str(&text)
            .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
            .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{file} has ClusterRole {name}"));
        role["metadata"] = json!({"name": rename});
        role
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_shipped_remediation_rbac_is_enough_and_cannot_read_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let kubelet = Arc::new(support::kubelet::FakeKubelet::start(dir.path()).await);
        let (s, config) = scene("kanidm-rbac", &kubelet).await;
        for (file, role) in [("deploy/manifests/lifeboat.yaml", "lifeboat-read"), ("deploy/manifests/optional/remediation-rbac.yaml", "lifeboat-remediate")] {
            let name = format!("{}-{role}", s.ns);
            create(&s.client, shipped_cluster_role(file, role, &name), None).await;
            create(
                &s.client,
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": "lifeboat", "namespace": s.ns}]}),
                None,
            )
            .await;
        }
        let lifeboat_sa = control_plane().service_account_client(&s.ns, "lifeboat").await;
        let plan = live_plan(&s.client, &config, "kanidm-credential-reset", Trigger::default()).await;
        // RBAC bindings take effect asynchronously: wait until the first write is allowed.
        let secrets: kube::Api<Secret> = kube::Api::namespaced(lifeboat_sa.clone(), &s.ns);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while kube::Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(lifeboat_sa.clone(), &s.ns).get("kanidm-default").await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "the read role never took effect");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let report = execute(&lifeboat_sa, &plan, &plan.hash(), &fast()).await;
        assert_eq!(report.outcome, Outcome::Succeeded, "{report:#?}");
        let secret: Secret = kube::Api::namespaced(s.client.clone(), &s.ns).get("kanidm-admin-passwords").await.unwrap();
        assert_eq!(secret.data.unwrap()["IDM_ADMIN_PASSWORD"].0, IDM_PW.as_bytes());
        match secrets.get("kanidm-admin-passwords").await {
            Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{e:?}"),
            other => panic!("lifeboat must not read Secrets: {other:?}"),
        }
    }
}

mod garage {
    //! garage-meta-restore against a tiny local HTTP server standing in for
    //! the Garage admin API.

    use super::*;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get as route_get;
    use axum::Json;

    const TOKEN: &str = "garage-admin-token-for-tests";
    const SNAPSHOT: &str = "2026-11-25T02:00:00Z";

    /// Serves /v2/GetClusterHealth and /v2/ListBuckets (bearer TOKEN) with
    /// `buckets`, and /v2/LaunchRepairOperation (deuxfleurs-org/garage v2.x
    /// `src/api/admin/api.rs`: body `{"repairType": ...}`, `?node=*`, a
    /// `MultiResponse` per node), recording each repair type it was asked for.
    async fn admin_api(buckets: Vec<&'static str>) -> String {
        admin_api_recording(buckets, Arc::default()).await
    }

    async fn admin_api_recording(buckets: Vec<&'static str>, repairs: Arc<Mutex<Vec<String>>>) -> String {
        let buckets: Arc<Vec<Value>> = Arc::new(buckets.iter().map(|b| json!({"id": format!("{b}-id"), "globalAliases": [b], "localAliases": []})).collect());
        fn authorized(headers: &HeaderMap) -> bool {
            headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
        }
        let app = axum::Router::new()
            .route("/v2/GetClusterHealth", route_get(|headers: HeaderMap| async move {
                if !authorized(&headers) { return Err(StatusCode::FORBIDDEN) }
                Ok(Json(json!({"status": "healthy", "knownNodes": 1, "connectedNodes": 1, "storageNodes": 1, "storageNodesUp": 1, "partitions": 256, "partitionsQuorum": 256, "partitionsAllOk": 256})))
            }))
            .route("/v2/ListBuckets", route_get(|State(b): State<Arc<Vec<Value>>>, headers: HeaderMap| async move {
                if !authorized(&headers) { return Err(StatusCode::FORBIDDEN) }
                Ok(Json(Value::Array(b.as_ref().clone())))
            }))
            .route("/v2/LaunchRepairOperation", axum::routing::post(move |headers: HeaderMap, query: axum::extract::Query<BTreeMap<String, String>>, Json(body): Json<Value>| async move {
                if !authorized(&headers) { return Err(StatusCode::FORBIDDEN) }
                if query.get("node").map(String::as_str) != Some("*") { return Err(StatusCode::BAD_REQUEST) }
                repairs.lock().unwrap().push(body["repairType"].as_str().unwrap_or("?").to_string());
                Ok(Json(json!({"success": {"6a8e08af2aab1083": {}}, "error": {}})))
            }))
            .with_state(buckets);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    async fn scene(prefix: &str, buckets: Vec<&'static str>) -> (Scene, Config, tempfile::TempDir) {
        scene_recording(prefix, buckets, Arc::default()).await
    }

    async fn scene_recording(prefix: &str, buckets: Vec<&'static str>, repairs: Arc<Mutex<Vec<String>>>) -> (Scene, Config, tempfile::TempDir) {
        let cp = control_plane();
        let client = cp.admin_client();
        let ns = cp.namespace(&client, prefix).await;
        let healthy = format!("{ns}-a");
        node_ready(&client, &healthy).await;
        let pv = format!("{ns}-garage-meta");
        create(&client, pv_pinned(&pv, "kubernetes.io/hostname", &healthy, &ns, "garage-meta"), None).await;
        create(&client, pvc(&ns, "garage-meta", &pv, json!({})), None).await;
        // The claim holding the snapshots (garage.restore.backup below): the
        // restore Job's pod mounts it, so without it the pod never starts.
        let backup_pv = format!("{ns}-garage-meta-backup");
        create(&client, pv_pinned(&backup_pv, "kubernetes.io/hostname", &healthy, &ns, "garage-meta-backup"), None).await;
        create(&client, pvc(&ns, "garage-meta-backup", &backup_pv, json!({})), None).await;
        create(&client, workload_object("Deployment", &ns, "garage", json!({"helm.toolkit.fluxcd.io/name": "garage", "helm.toolkit.fluxcd.io/namespace": ns})), None).await;
        create(
            &client,
            json!({"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease", "metadata": {"name": "garage", "namespace": ns},
            "spec": {"interval": "2h", "chartRef": {"kind": "OCIRepository", "name": "garage-app"}}}),
            None,
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        let mut config = Config { discovery_interval: Dur::secs(1), ..Config::default() };
        config.garage.namespace = ns.clone();
        config.garage.admin_url = Some(admin_api_recording(buckets, repairs).await);
        config.garage.admin_token_file = Some(token);
        config.garage.restore.backup = Some(lifeboat::config::GarageBackupSource::Pvc { claim_name: "garage-meta-backup".into() });
        (Scene { client, ns, healthy, doomed: String::new() }, config, dir)
    }

    fn restore_output() -> Behaviour {
        restore_prints(true, &format!("Restoring from snapshot: {SNAPSHOT}\nGarage metadata restored from snapshot {SNAPSHOT}\n"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restores_the_metadata_and_verifies_buckets_through_the_admin_api() {
        let repairs: Arc<Mutex<Vec<String>>> = Arc::default();
        let (s, config, _dir) = scene_recording("garage-restore", vec!["volsync-data", "cnpg", "kanidm"], repairs.clone()).await;
        let plan = live_plan(&s.client, &config, "garage-meta-restore", Trigger::default()).await;
        let ids: Vec<&str> = plan.steps.iter().map(|st| st.id.as_str()).collect();
        assert_eq!(ids, ["suspend-flux", "scale-down", "wait-scaled-down", "hold-flux", "restore", "scale-up", "verify", "repair-tables", "resume-flux"], "{}", plan.render_text());
        let controllers = tokio::spawn(play_replica_counts(s.client.clone(), s.ns.clone(), false));
        let jobs = tokio::spawn(play_jobs(s.client.clone(), s.ns.clone(), s.healthy.clone(), restore_output()));
        let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
        jobs.abort();
        controllers.abort();
        assert_eq!(report.outcome, Outcome::Succeeded, "{report:#?}");
        assert!(detail(&report, "restore").contains(&format!("snapshot: {SNAPSHOT}")), "{report:#?}");
        assert!(detail(&report, "verify").contains("3 bucket(s)"), "{report:#?}");
        assert!(detail(&report, "repair-tables").contains("table repair launched on 1 node(s)"), "{report:#?}");
        assert_eq!(*repairs.lock().unwrap(), ["tables"], "garage repair -a --yes tables, once");
        assert_eq!(get(&s.client, "apps/v1", "Deployment", Some(&s.ns), "garage").await["spec"]["replicas"], 1);
        assert_eq!(get(&s.client, "helm.toolkit.fluxcd.io/v2", "HelmRelease", Some(&s.ns), "garage").await["spec"]["suspend"], false);
        let job_name = match &plan.steps.iter().find(|st| st.id == "restore").unwrap().action {
            lifeboat::plan::Action::RunJob { job, .. } => job.name.clone(),
            other => panic!("{other:?}"),
        };
        let job = get(&s.client, "batch/v1", "Job", Some(&s.ns), &job_name).await;
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["volumes"][0]["persistentVolumeClaim"], json!({"claimName": "garage-meta-backup", "readOnly": true}));
        assert_eq!(pod["volumes"][1]["persistentVolumeClaim"]["claimName"], "garage-meta");
        assert!(pod["containers"][0]["args"][0].as_str().unwrap().contains("/backup/snapshots/$LATEST/data.mdb"), "Garage's snapshot layout, not db.lmdb");

        // A requested snapshot goes to the Job as data (an env var), and must be a timestamp.
        let pinned = live_plan(&s.client, &config, "garage-meta-restore", Trigger { name: Some("2026-11-24T02:00:00Z".into()), ..Default::default() }).await;
        let lifeboat::plan::Action::RunJob { manifest, .. } = &pinned.steps.iter().find(|st| st.id == "restore").unwrap().action else { panic!() };
        assert_eq!(manifest["spec"]["template"]["spec"]["containers"][0]["env"][0], json!({"name": "REQUESTED", "value": "2026-11-24T02:00:00Z"}));
        let snap = live_snapshot(&s.client, &config).await;
        assert!(plan_err(&snap, "x; rm -rf /").contains("RFC3339"));
    }

    fn plan_err(snap: &Snapshot, name: &str) -> String {
        plan("garage-meta-restore", &snap.state, &snap.findings, &Trigger { name: Some(name.into()), ..Default::default() }).unwrap_err().to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_buckets_after_the_restore_fails_the_verification() {
        let (s, config, _dir) = scene("garage-empty", vec![]).await;
        let mut plan = live_plan(&s.client, &config, "garage-meta-restore", Trigger::default()).await;
        for st in &mut plan.steps {
            if let lifeboat::plan::Action::VerifyGarage { timeout_seconds, .. } = &mut st.action {
                *timeout_seconds = 1;
            }
        }
        let controllers = tokio::spawn(play_replica_counts(s.client.clone(), s.ns.clone(), false));
        let jobs = tokio::spawn(play_jobs(s.client.clone(), s.ns.clone(), s.healthy.clone(), restore_output()));
        let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
        jobs.abort();
        controllers.abort();
        assert_eq!(report.outcome, Outcome::Stopped);
        let verify = report.steps.iter().find(|st| st.id == "verify").unwrap();
        assert!(matches!(&verify.status, StepStatus::Failed { error } if error.contains("0 bucket(s) listed")), "{report:#?}");
        // The volume was wiped: resumed, Flux would start Garage on it as it is.
        let release = get(&s.client, "helm.toolkit.fluxcd.io/v2", "HelmRelease", Some(&s.ns), "garage").await;
        assert_eq!(release["spec"]["suspend"], true, "held suspended: {release:#}");
        assert!(release["metadata"]["annotations"]["lifeboat.dev/kept-suspended"].as_str().is_some_and(|why| why.contains("garage-meta-restore")), "{release:#}");
        assert!(!format!("{report:?}").contains(TOKEN), "the admin token is never shown");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_probe_counts_buckets_through_the_admin_api() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, TOKEN).unwrap();
        let http = reqwest::Client::new();
        let mut config = lifeboat::config::GarageConfig { admin_url: Some(admin_api(vec!["a", "b"]).await), admin_token_file: Some(token), ..Default::default() };
        assert_eq!(lifeboat::probes::bucket_count(&http, &config).await, Some(2));
        config.admin_token_file = Some(dir.path().join("wrong"));
        std::fs::write(dir.path().join("wrong"), "nope").unwrap();
        assert_eq!(lifeboat::probes::bucket_count(&http, &config).await, None, "403 counts nothing");
    }

    #[test]
    fn a_meta_pvc_on_a_lost_node_is_not_deleted_without_a_known_snapshot() {
        let objects = vec![
            node("node-01", "Unknown", "2026-11-25T11:00:00Z"),
            pv_pinned("pv-meta", "kubernetes.io/hostname", "node-01", "volsync-system", "garage-meta"),
            pvc("volsync-system", "garage-meta", "pv-meta", json!({})),
            workload("Deployment", "volsync-system", "garage", 1, None),
        ];
        let state = state("2026-11-25T12:00:00Z", objects);
        let mut config = Config::default();
        config.garage.restore.backup = Some(lifeboat::config::GarageBackupSource::Nfs { server: "nas".into(), path: "/meta-backup".into() });
        let findings = lifeboat::inspect::inspect(&state, &config, &Default::default());
        let refused = plan("garage-meta-restore", &state, &findings, &Trigger::default()).unwrap();
        assert!(refused.nothing_to_do(), "{}", refused.render_text());
        assert!(refused.findings.iter().any(|f| f.contains("refusing to delete") && f.contains("garage.backupDir")), "{:?}", refused.findings);

        // With the snapshot known (garage.backupDir probed), it deletes and re-creates the claim first.
        let probe = lifeboat::inspect::garage::GarageProbe { newest_snapshot: Some(at(SNAPSHOT)), ..Default::default() };
        let findings = lifeboat::inspect::inspect(&state, &config, &probe);
        let restore = plan("garage-meta-restore", &state, &findings, &Trigger::default()).unwrap();
        let ids: Vec<&str> = restore.steps.iter().map(|st| st.id.as_str()).collect();
        assert_eq!(ids, ["scale-down", "wait-scaled-down", "delete-pvc", "create-pvc", "restore", "scale-up"], "{}", restore.render_text());
        assert!(restore.steps[2].recovery_source.as_ref().unwrap().evidence[0].contains(SNAPSHOT));
        assert!(restore.validate().is_ok());

        // The bucket count the probe last saw is what the verification expects back.
        config.garage.admin_url = Some("http://garage.volsync-system.svc:3903".into());
        let probe = lifeboat::inspect::garage::GarageProbe { newest_snapshot: Some(at(SNAPSHOT)), bucket_count: Some(5), ..Default::default() };
        let findings = lifeboat::inspect::inspect(&state, &config, &probe);
        let counted = plan("garage-meta-restore", &state, &findings, &Trigger::default()).unwrap();
        assert!(counted.steps.iter().any(|st| matches!(st.action, lifeboat::plan::Action::VerifyGarage { min_buckets: 5, .. })), "{}", counted.render_text());
        assert!(matches!(counted.steps.last().unwrap().action, lifeboat::plan::Action::RepairGarageTables { .. }), "{}", counted.render_text());
    }

    #[test]
    fn the_follow_ups_name_the_cnpg_clusters_that_archive_into_this_garage() {
        let cluster = |name: &str, store: &str| {
            json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": meta(Some("database"), name),
            "spec": {"instances": 2, "plugins": [{"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": true, "parameters": {"barmanObjectName": store, "serverName": name}}]}})
        };
        let store = |name: &str, endpoint: &str| {
            json!({"apiVersion": "barmancloud.cnpg.io/v1", "kind": "ObjectStore", "metadata": meta(Some("database"), name),
            "spec": {"configuration": {"destinationPath": "s3://cnpg/", "endpointURL": endpoint}}})
        };
        let objects = vec![
            node("node-02", "True", "2026-11-25T00:00:00Z"),
            pv_pinned("pv-meta", "kubernetes.io/hostname", "node-02", "volsync-system", "garage-meta"),
            pvc("volsync-system", "garage-meta", "pv-meta", json!({})),
            workload("Deployment", "volsync-system", "garage", 1, None),
            cluster("postgres", "cnpg-garage"),
            store("cnpg-garage", "http://garage.volsync-system.svc.cluster.local:3900"),
            cluster("elsewhere", "offsite"),
            store("offsite", "https://s3.eu-west-1.amazonaws.com"),
        ];
        let state = state("2026-11-25T12:00:00Z", objects);
        let mut config = Config::default();
        config.garage.restore.backup = Some(lifeboat::config::GarageBackupSource::Nfs { server: "nas".into(), path: "/meta-backup".into() });
        let findings = lifeboat::inspect::inspect(&state, &config, &Default::default());
        let plan = plan("garage-meta-restore", &state, &findings, &Trigger::default()).unwrap();
        let about = |cluster: &str| plan.follow_ups.iter().filter(|f| f.contains(&format!("Cluster database/{cluster} "))).count();
        assert_eq!((about("postgres"), about("elsewhere")), (1, 0), "{:?}", plan.follow_ups);
        assert!(plan.follow_ups.iter().any(|f| f.contains("kubectl cnpg backup postgres -n database") && f.contains("ObjectStore database/cnpg-garage")), "{:?}", plan.follow_ups);
        assert!(plan.follow_ups.iter().any(|f| f.contains("garage repair -a --yes tables")), "no admin URL: the repair is a follow-up: {:?}", plan.follow_ups);
    }
}
