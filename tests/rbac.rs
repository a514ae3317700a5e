//! lifeboat with exactly the shipped RBAC on the real apiserver:
//!
//! * the read-only ClusterRole (deploy/manifests/lifeboat.yaml) is enough to
//!   watch everything, and cannot write;
//! * with the chart's remediation RBAC and admission policy (rendered by
//!   `helm template`), every kind of write the playbooks make succeeds as
//!   lifeboat's ServiceAccount, driven through the real runner
//!   (`act::runner::execute`), the kill switch and the journal;
//! * crafted escalations by that ServiceAccount are refused: Jobs with
//!   another Secret, ServiceAccount or image, a Kustomization patch adding
//!   `spec.patches`, a pod-template change, a Node change other than the
//!   taint, a Kanidm change other than replicas, deleting a Bound or
//!   unpinned PersistentVolume, an exec of anything but `kanidmd
//!   recover-account`, and writes outside `remediation.namespaces`;
//! * the policy names every field of the upstream CRDs it must keep as is.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use lifeboat::act::runner::{execute, Outcome, RunLimits, StepStatus};
use lifeboat::config::{Config, Dur};
use lifeboat::plan::job::JobOutput;
use lifeboat::plan::playbooks::kanidm::PASSWORD_PATTERN;
use lifeboat::plan::{Action, ObjectRef, Plan, Precondition, RecoverySource, Step, WaitCondition};
use serde_json::{json, Value};
use support::chart::{denied_by_policy, install_permissions, render, wait_policy_enforced, wait_rbac_effective};
use support::controlplane::control_plane;
use support::fixtures::*;
use support::k8s::*;
use support::kaniop::{install_crd as install_kanidm_crd, kanidm, play_kaniop, serve_kanidmd, KANIDM};
use support::kubelet::FakeKubelet;

fn shipped_read_role() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/manifests/lifeboat.yaml")).unwrap();
    let role = serde_yaml::Deserializer::from_str(&text)
        .map(|d| <serde_json::Value as serde::Deserialize>::deserialize(d).unwrap())
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "lifeboat-read");
    role.expect("deploy/manifests/lifeboat.yaml has ClusterRole lifeboat-read")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_read_role_is_enough_to_watch_everything() {
    let cp = control_plane();
    let admin = cp.admin_client();
    let ns = cp.namespace(&admin, "rbac").await;
    let role_name = format!("{ns}-read");
    let mut role = shipped_read_role();
    role["metadata"] = json!({"name": role_name});
    Api::<ClusterRole>::all(admin.clone()).patch(&role_name, &PatchParams::apply("lifeboat-tests").force(), &Patch::Apply(&role)).await.expect("shipped ClusterRole applies");
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": role_name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        "subjects": [{"kind": "ServiceAccount", "name": "lifeboat", "namespace": ns}]
    });
    Api::<ClusterRoleBinding>::all(admin.clone()).patch(&role_name, &PatchParams::apply("lifeboat-tests").force(), &Patch::Apply(&binding)).await.unwrap();

    let client = cp.service_account_client(&ns, "lifeboat").await;
    // The authorizer sees a new binding only once its informer has: until
    // then the watches below would get 403 and count it as an error.
    wait_rbac_effective(&client, &[role, binding]).await;
    let config = Config { discovery_interval: Dur::secs(1), snapshot_interval: Dur::secs(1), ..Config::default() };
    let hub = lifeboat::runtime::hub::start_live_hub(config, client.clone());
    lifeboat::runtime::hub::wait_ready(&hub, Duration::from_secs(60)).await.expect("every kind lists as the ServiceAccount");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let live = hub.live.as_ref().unwrap();
    for (kind, health) in live.health() {
        assert!(health.up.load(Ordering::Relaxed), "{kind}: watch not up as the ServiceAccount");
        assert_eq!(health.errors.load(Ordering::Relaxed), 0, "{kind}: watch/discovery errors (403?) as the ServiceAccount");
    }

    // Read-only: a write is refused.
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    match pods.delete("anything", &DeleteParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("expected 403, got {other:?}"),
    }
}

// --- The chart's remediation permissions, installed for one release -----------------

const NFS_SERVER: &str = "nas.example.com";
const NFS_PATH: &str = "/garage/meta-backup";
const KANIDM_IMAGE: &str = "docker.io/kanidm/server:1.11.1";

/// A release of the chart in its own namespace, its writes bound in `scene`
/// only, and lifeboat's ServiceAccount client.
struct Release {
    admin: Client,
    sa: Client,
    /// The release namespace (Lease, journal, kill switch).
    ns: String,
    /// The one namespace of remediation.namespaces.
    scene: String,
    /// A namespace the write rules are not bound in.
    elsewhere: String,
}

/// Chart values: remediation on, bound in `scene`, and a Garage metadata
/// backup on NFS (so restore Jobs may mount that export).
fn values(release: &str, scene: &str) -> Value {
    json!({
        "fullnameOverride": release,
        "remediation": {"enabled": true, "namespaces": [scene]},
        "config": {"garage": {"restore": {"backup": {"nfs": {"server": NFS_SERVER, "path": NFS_PATH}}}}},
    })
}

async fn release(prefix: &str) -> Release {
    let cp = control_plane();
    let admin = cp.admin_client();
    let ns = cp.namespace(&admin, &format!("{prefix}-lb")).await;
    let scene = cp.namespace(&admin, prefix).await;
    let elsewhere = cp.namespace(&admin, &format!("{prefix}-other")).await;
    let objects = render(&ns, &ns, &values(&ns, &scene));
    install_permissions(&admin, &objects).await;
    let account = objects.iter().find(|o| o["kind"] == "ServiceAccount").expect("the chart renders a ServiceAccount");
    let sa = cp.service_account_client(&ns, account["metadata"]["name"].as_str().unwrap()).await;
    wait_rbac_effective(&sa, &objects).await;
    wait_policy_enforced(&sa, &ns).await;
    Release { admin, sa, ns, scene, elsewhere }
}

fn step(id: &str, action: Action, needs: &[&str]) -> Step {
    Step { id: id.into(), title: id.into(), action, needs: needs.iter().map(|n| n.to_string()).collect(), preconditions: vec![], recovery_source: None }
}

fn deployment(ns: &str, kind: &str, name: &str, replicas: i64) -> Value {
    let mut w = json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}},
        "status": {"replicas": replicas, "readyReplicas": replicas}});
    if kind == "StatefulSet" {
        w["spec"]["serviceName"] = json!(name);
    }
    w
}

fn helm_release(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease", "metadata": {"name": name, "namespace": ns},
           "spec": {"interval": "1h", "chart": {"spec": {"chart": name, "sourceRef": {"kind": "HelmRepository", "name": "charts"}}}, "values": {"replicas": 1}}})
}

fn mariadb(ns: &str) -> Value {
    json!({"apiVersion": "k8s.mariadb.com/v1alpha1", "kind": "MariaDB", "metadata": {"name": "mariadb", "namespace": ns},
           "spec": {"replicas": 3, "image": "docker-registry1.mariadb.com/library/mariadb:11.8", "storage": {"size": "1Gi"},
                    "rootPasswordSecretKeyRef": {"name": "mariadb", "key": "root-password"},
                    "galera": {"enabled": true, "primary": {"podIndex": 1}, "recovery": {"enabled": false, "minClusterSize": 1}}}})
}

fn running_pod(ns: &str, name: &str, node: &str) -> Value {
    let mut p = pod(ns, name, node, &[], json!({"app": name}), None);
    let now = rfc3339(Utc::now());
    p["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
                         "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "image": "registry.example/app:1", "imageID": "", "state": {"running": {"startedAt": now}}}]});
    p
}

/// The Job kanidm-credential-reset used to run (`kanidmd recover-account`
/// with the kanidm image, the data PVC and the TLS Secret): it now execs
/// into the running pod instead, and the chart no longer allows this Job.
fn recover_job(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": ns, "labels": {"app.kubernetes.io/managed-by": "lifeboat"}},
           "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
               "securityContext": {"fsGroup": 999, "runAsUser": 999, "runAsGroup": 999},
               "containers": [{"name": "recover", "image": KANIDM_IMAGE, "command": ["kanidmd"], "args": ["recover-account", "admin"],
                               "volumeMounts": [{"name": "kanidm-data", "mountPath": "/data"}, {"name": "kanidm-certs", "mountPath": "/etc/kanidm/tls", "readOnly": true}]}],
               "volumes": [{"name": "kanidm-data", "persistentVolumeClaim": {"claimName": "kanidm-data-kanidm-default-0"}},
                           {"name": "kanidm-certs", "secret": {"secretName": "kanidm-tls"}}]}}}})
}

/// The garage-meta-restore Job's shape (src/plan/playbooks/garage_meta.rs
/// restore_job): alpine with the NFS backup read-only and the metadata PVC.
fn garage_restore_job(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": ns},
           "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
               "containers": [{"name": "restore", "image": "alpine:3", "command": ["sh", "-c"], "args": ["echo Garage metadata restored from snapshot s1"],
                               "volumeMounts": [{"name": "backup", "mountPath": "/backup", "readOnly": true}, {"name": "dst", "mountPath": "/dst"}]}],
               "volumes": [{"name": "backup", "nfs": {"server": NFS_SERVER, "path": NFS_PATH, "readOnly": true}},
                           {"name": "dst", "persistentVolumeClaim": {"claimName": "garage-meta"}}]}}}})
}

/// Plays the controllers and kubelets the plan's steps wait for: Jobs finish
/// with their output in the termination message; CNPG completes Backups; a
/// deleted `pg-1` comes back (new uid) Running and Ready.
async fn play(client: Client, ns: String, node: String) {
    let jobs = api_for(&client, "batch/v1", "Job", Some(&ns)).await;
    let backups = api_for(&client, "postgresql.cnpg.io/v1", "Backup", Some(&ns)).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    loop {
        for job in jobs.list(&ListParams::default()).await.unwrap().items {
            let job = serde_json::to_value(job).unwrap();
            let name = job["metadata"]["name"].as_str().unwrap().to_string();
            if !job["status"]["conditions"].is_null() || job["metadata"]["deletionTimestamp"].is_string() {
                continue;
            }
            let output = "Garage metadata restored from snapshot s1";
            let pod_name = format!("{name}-x7k2p");
            let container = job["spec"]["template"]["spec"]["containers"][0]["name"].clone();
            let mut spec = job["spec"]["template"]["spec"].clone();
            spec["nodeName"] = json!(node);
            create(
                &client,
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name, "namespace": ns,
                "labels": {"batch.kubernetes.io/job-name": name, "batch.kubernetes.io/controller-uid": job["metadata"]["uid"]}}, "spec": spec}),
                None,
            )
            .await;
            let now = rfc3339(Utc::now());
            set_status(&client, "v1", "Pod", Some(&ns), &pod_name, support::players::terminated_status(container.as_str().unwrap_or_default(), true, output)).await;
            set_status(&client, "batch/v1", "Job", Some(&ns), &name, support::players::job_complete_status(&now)).await;
        }
        for backup in backups.list(&ListParams::default()).await.unwrap().items {
            if backup.data["status"]["phase"].is_null() {
                let name = backup.metadata.name.clone().unwrap();
                set_status(&client, "postgresql.cnpg.io/v1", "Backup", Some(&ns), &name, json!({"phase": "completed", "backupId": "20261206T000000"})).await;
            }
        }
        // CNPG completes the switchover lifeboat asked for, and its -rw
        // Service follows the new primary.
        let cluster = get(&client, "postgresql.cnpg.io/v1", "Cluster", Some(&ns), "pg").await;
        if let Some(target) = cluster["status"]["targetPrimary"].as_str().filter(|t| Some(*t) != cluster["status"]["currentPrimary"].as_str()) {
            create(&client, rw_endpoints(&ns, target), None).await;
            set_status(&client, "postgresql.cnpg.io/v1", "Cluster", Some(&ns), "pg", json!({"currentPrimary": target})).await;
        }
        if let Ok(Some(p)) = pods.get_opt("pg-1").await {
            if p.metadata.deletion_timestamp.is_some() {
                let _ = pods.delete("pg-1", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await;
                create(&client, running_pod(&ns, "pg-1", &node), None).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The EndpointSlice of CNPG's `pg-rw` Service: one ready endpoint, the primary.
fn rw_endpoints(ns: &str, primary: &str) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "pg-rw-abc", "namespace": ns, "labels": {"kubernetes.io/service-name": "pg-rw"}},
           "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.7"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": primary, "namespace": ns}}]})
}

/// The running Kanidm pod kaniop's StatefulSet makes: its container is
/// `kanidm` (what kanidm-credential-reset execs into).
fn kanidm_pod(ns: &str, node: &str) -> Value {
    let mut p = running_pod(ns, "kanidm-default-0", node);
    p["spec"]["containers"][0]["name"] = json!("kanidm");
    p["status"]["containerStatuses"][0]["name"] = json!("kanidm");
    p
}

/// A kubelet on `node` whose Kanidm pods answer `kanidmd recover-account
/// <user>` with the password `pw-<user>` (tests/support/kaniop.rs).
async fn kanidmd(r: &Release, node: &str) -> Arc<FakeKubelet> {
    let kubelet = Arc::new(FakeKubelet::start(&std::env::temp_dir()).await);
    kubelet.register(&r.admin, node).await;
    let passwords: support::kaniop::Passwords = Arc::new(|user: &str| format!("pw-{user}"));
    serve_kanidmd(r.admin.clone(), r.scene.clone(), "kanidm-default".into(), &kubelet, passwords);
    kubelet
}

/// Secret `data` as the apiserver stores it (base64).
fn secret_value(text: &str) -> Value {
    serde_json::to_value(k8s_openapi::ByteString(text.as_bytes().to_vec())).unwrap()
}

/// What running a plan as the ServiceAccount did: the steps that did not
/// succeed, and whether every exec got its answer.
struct Run {
    failed: Vec<String>,
    execs_answered: bool,
}

/// Runs `plan` with `act::runner::execute` as the ServiceAccount: first
/// every step but the execs (their dependants wait for what the execs
/// waited for), then each exec on its own. The stand-in kubelet
/// (tests/support/kubelet.rs) does not always finish an exec (the apiserver
/// then reports a timeout over the exec stream): an exec whose stream was
/// opened was allowed by RBAC and the admission policy, which is what these
/// tests check; one refused fails before the stream opens ("exec into ...").
async fn run_as_service_account(r: &Release, plan: &Plan, limits: &RunLimits) -> Run {
    let is_exec = |s: &Step| matches!(s.action, Action::ExecToSecret { .. });
    let execs: Vec<&Step> = plan.steps.iter().filter(|s| is_exec(s)).collect();
    fn resolve(need: &str, execs: &[&Step]) -> Vec<String> {
        match execs.iter().find(|e| e.id == need) {
            Some(exec) => exec.needs.iter().flat_map(|n| resolve(n, execs)).collect(),
            None => vec![need.to_string()],
        }
    }
    let mut rest = plan.clone();
    rest.steps.retain(|s| !is_exec(s));
    for s in &mut rest.steps {
        s.needs = s.needs.iter().flat_map(|n| resolve(n, &execs)).collect::<BTreeSet<_>>().into_iter().collect();
    }
    let report = execute(&r.sa, &rest, &rest.hash(), limits).await;
    let mut failed: Vec<String> = report.steps.iter().filter(|s| !matches!(s.status, StepStatus::Succeeded { .. })).map(|s| format!("{}: {:?}", s.id, s.status)).collect();
    if report.outcome != Outcome::Succeeded {
        failed.push(format!("outcome {:?}: {:?}", report.outcome, report.reason));
    }
    let alone: Vec<Plan> = execs.iter().map(|e| Plan { steps: vec![Step { needs: vec![], ..(*e).clone() }], ..Plan::new(&plan.playbook, plan.target.clone()) }).collect();
    let hashes: Vec<String> = alone.iter().map(Plan::hash).collect();
    let reports = futures::future::join_all(alone.iter().zip(&hashes).map(|(p, h)| execute(&r.sa, p, h, limits))).await;
    let mut execs_answered = true;
    for (exec, mut report) in execs.into_iter().zip(reports) {
        match &report.steps.remove(0).status {
            StepStatus::Succeeded { .. } => {}
            StepStatus::Failed { error } if error.starts_with('`') => {
                eprintln!("{}: allowed; the stand-in kubelet did not answer the exec: {error}", exec.id);
                execs_answered = false;
            }
            other => failed.push(format!("{}: {other:?}", exec.id)),
        }
    }
    Run { failed, execs_answered }
}

/// Everything the plan's steps act on, created as admin in the scene.
async fn scene(r: &Release) -> (String, String) {
    let (c, ns) = (&r.admin, r.scene.as_str());
    let (lost, live) = (format!("{ns}-lost"), format!("{ns}-live"));
    node_ready(c, &live).await;
    node_ready(c, &lost).await;
    let mut gone = get(c, "v1", "Node", None, &lost).await;
    gone["metadata"]["annotations"] = json!({"lifeboat.dev/confirmed-gone": "true"});
    api_for(c, "v1", "Node", None).await.patch(&lost, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": gone["metadata"]["annotations"]}}))).await.unwrap();
    mark_node_not_ready(c, &lost, Utc::now() - chrono::Duration::minutes(10)).await;
    create(c, pv_pinned(&format!("{ns}-data"), "kubernetes.io/hostname", &lost, ns, "data"), None).await;
    create(c, pvc(ns, "data", &format!("{ns}-data"), json!({})), None).await;
    create(c, pod(ns, "stuck", &lost, &[], json!({"app": "stuck"}), None), None).await;
    // cnpg-instance-lost: the lost instance's PVC, its pod still there.
    create(c, pv_pinned(&format!("{ns}-pg-3"), "kubernetes.io/hostname", &lost, ns, "pg-3"), None).await;
    create(c, pvc(ns, "pg-3", &format!("{ns}-pg-3"), json!({})), None).await;
    create(c, pod(ns, "pg-3", &lost, &["pg-3"], json!({"cnpg.io/instanceName": "pg-3"}), None), None).await;
    // stale-cleanup: a volume left Released on the gone node.
    let mut stranded = pv_pinned(&format!("{ns}-stranded"), "kubernetes.io/hostname", &lost, ns, "deleted-claim");
    stranded["status"]["phase"] = json!("Released");
    create(c, stranded, None).await;
    for p in ["restart-me", "pg-1", "pg-2"] {
        create(c, running_pod(ns, p, &live), None).await;
    }
    // node-loss: the local-PV provisioner runs again on a live node.
    let mut provisioner = running_pod(ns, "localpv-provisioner", &live);
    provisioner["metadata"]["labels"] = json!({"openebs.io/component-name": "openebs-localpv-provisioner"});
    create(c, provisioner, None).await;
    let mut cluster = cnpg_cluster(ns, "pg", "pg-1", vec![condition("ContinuousArchiving", "True", "ContinuousArchivingSuccess", "2026-12-01T00:00:00Z")], "pg");
    // wait-healthy reads each instance the status names: its claim and a Ready pod.
    cluster["spec"]["instances"] = json!(2);
    cluster["status"]["instances"] = json!(2);
    cluster["status"]["readyInstances"] = json!(2);
    cluster["status"]["instanceNames"] = json!(["pg-1", "pg-2"]);
    for p in ["pg-1", "pg-2"] {
        create(c, pv_pinned(&format!("{ns}-{p}"), "kubernetes.io/hostname", &live, ns, p), None).await;
        create(c, pvc(ns, p, &format!("{ns}-{p}"), json!({})), None).await;
    }
    create(c, cluster, None).await;
    create(c, mariadb(ns), None).await;
    for k in ["app", "app2"] {
        create(c, kustomization(ns, k, false, "True"), None).await;
    }
    create(c, helm_release(ns, "hr"), None).await;
    create(c, deployment(ns, "Deployment", "web", 1), None).await;
    create(c, deployment(ns, "StatefulSet", "db", 1), None).await;
    create(c, deployment(ns, "StatefulSet", "idle", 0), None).await;
    create(c, replication_source(ns, "rs", "data", "0 * * * *", false, None, "Successful"), None).await;
    for rd in ["rd", "rd-old"] {
        let mut d = replication_destination(ns, rd, Some("restored"));
        d["spec"]["kopia"]["restoreAsOf"] = json!("2026-12-01T00:00:00Z");
        d["metadata"]["annotations"] = json!({"kustomize.toolkit.fluxcd.io/ssa": "IfNotPresent"});
        create(c, d, None).await;
    }
    create(c, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kanidm-admin-passwords", "namespace": ns}, "data": {"ADMIN_PASSWORD": "b2xk"}}), None).await;
    create(c, rw_endpoints(ns, "pg-1"), None).await;
    // s3-restore of a kaniop Kanidm; kanidm-credential-reset execs into its pod.
    install_kanidm_crd(c).await;
    create(c, kanidm(ns, "kanidm", KANIDM_IMAGE, "default", 1), None).await;
    create(c, deployment(ns, "StatefulSet", "kanidm-default", 1), None).await;
    create(c, kanidm_pod(ns, &live), None).await;
    (lost, live)
}

/// The RBAC case of each Action: a step of `all_writes` exercises it, or it
/// makes no Kubernetes request. Exhaustive on purpose: a new Action does
/// not compile here until it has a case (add a step to `all_writes`, or say
/// why it needs none).
fn rbac_case(action: &Action) -> Option<&'static str> {
    Some(match action {
        Action::PromoteCnpg { .. } => "PromoteCnpg",
        Action::ForceDeletePod { .. } => "ForceDeletePod",
        Action::DeletePvc { .. } => "DeletePvc",
        Action::Delete { .. } => "Delete",
        Action::RestartPod { .. } => "RestartPod",
        Action::Wait { .. } => "Wait",
        Action::SuspendFlux { .. } => "SuspendFlux",
        Action::ResumeFlux { .. } => "ResumeFlux",
        Action::Scale { .. } => "Scale",
        Action::MergePatch { .. } => "MergePatch",
        Action::TemporaryPatch { .. } => "TemporaryPatch",
        Action::Apply { .. } => "Apply",
        Action::SetCnpgPluginParameter { .. } => "SetCnpgPluginParameter",
        Action::RecreatePod { .. } => "RecreatePod",
        Action::TaintNode { .. } => "TaintNode",
        Action::RunJob { .. } => "RunJob",
        Action::RolloutRestart { .. } => "RolloutRestart",
        // Talks to the Garage admin API over HTTP, not to Kubernetes.
        Action::VerifyGarage { .. } => return None,
        Action::ApprovalGate { .. } => "ApprovalGate",
        Action::MarkPvcForDeletion { .. } => "MarkPvcForDeletion",
        Action::SetKanidmReplicas { .. } => "SetKanidmReplicas",
        Action::ExecToSecret { .. } => "ExecToSecret",
        // Garage's admin API over HTTP too.
        Action::RepairGarageTables { .. } => return None,
        // Touches nothing: it only joins the steps before a phase.
        Action::PhaseStart { .. } => return None,
    })
}

/// Same for the wait conditions (each reads something: the read role, or
/// the remediation role for Backups and EndpointSlices).
fn wait_case(until: &WaitCondition) -> &'static str {
    match until {
        WaitCondition::CnpgPrimaryIs { .. } => "CnpgPrimaryIs",
        WaitCondition::CnpgHealthy => "CnpgHealthy",
        WaitCondition::ServiceHasEndpoints => "ServiceHasEndpoints",
        WaitCondition::ConditionIs { .. } => "ConditionIs",
        WaitCondition::CnpgBackupCompleted => "CnpgBackupCompleted",
        WaitCondition::WorkloadReady => "WorkloadReady",
        WaitCondition::NodeConfirmedGone => "NodeConfirmedGone",
        WaitCondition::VolsyncManualSyncDone { .. } => "VolsyncManualSyncDone",
        WaitCondition::ClaimUnused => "ClaimUnused",
        WaitCondition::NoReplicas => "NoReplicas",
        WaitCondition::CnpgFailedOver { .. } => "CnpgFailedOver",
        WaitCondition::ServiceRoutesToCnpgPrimary { .. } => "ServiceRoutesToCnpgPrimary",
        WaitCondition::SpecReplicas { .. } => "SpecReplicas",
        WaitCondition::ProvisionerReadyElsewhere { .. } => "ProvisionerReadyElsewhere",
    }
}

/// Every kind of write the playbooks make, shaped as they make it (the
/// patches are those of src/plan/playbooks/*.rs), on the scene's objects.
fn all_writes(ns: &str, lost: &str) -> Plan {
    let o = |api: &str, kind: &str, name: &str| ObjectRef::namespaced(api, kind, ns, name);
    let (cluster, mdb) = (ObjectRef::cnpg_cluster(ns, "pg"), o("k8s.mariadb.com/v1alpha1", "MariaDB", "mariadb"));
    let (ks, ks2, hr) = (
        o("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "app"),
        o("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "app2"),
        o("helm.toolkit.fluxcd.io/v2", "HelmRelease", "hr"),
    );
    let rd = o("volsync.backube/v1alpha1", "ReplicationDestination", "rd");
    let backup = o("postgresql.cnpg.io/v1", "Backup", "pg-r2-base");
    let wait = |object: ObjectRef, until: WaitCondition| Action::Wait { object, until, timeout_seconds: 60 };
    // mariadb-instance-lost with Galera recovery off: turned on with the bootstrap pod, off again with it.
    let force = |enabled: bool, pod: Value| json!({"spec": {"galera": {"recovery": {"enabled": enabled, "forceClusterBootstrapInPod": pod}}}});
    let secret = o("v1", "Secret", "kanidm-admin-passwords");
    let source = Some(RecoverySource { description: "test".into(), evidence: vec![] });
    let mut delete_pvc = step("delete-pvc", Action::DeletePvc { pvc: ObjectRef::pvc(ns, "data"), pinned_node: lost.into() }, &[]);
    delete_pvc.recovery_source = source.clone();
    let mut mark_pvc = step("mark-pvc", Action::MarkPvcForDeletion { pvc: ObjectRef::pvc(ns, "pg-3"), pinned_node: lost.into() }, &[]);
    mark_pvc.recovery_source = source;
    let with = |mut s: Step, preconditions: Vec<Precondition>| {
        s.preconditions = preconditions;
        s
    };
    let kanidm_cr = o(KANIDM, "Kanidm", "kanidm");
    let kanidm_pod = ObjectRef::pod(ns, "kanidm-default-0");
    let recover = |user: &str, key: &str| Action::ExecToSecret {
        pod: kanidm_pod.clone(),
        container: "kanidm".into(),
        command: vec!["kanidmd".into(), "recover-account".into(), user.into()],
        secret: secret.clone(),
        key: key.into(),
        pattern: PASSWORD_PATTERN.into(),
    };
    let stranded = format!("{ns}-stranded");
    let identity = lifeboat::act::volsync::destination_identity(&replication_destination(ns, "rd", Some("restored"))).expect("a kopia destination");
    let steps = vec![
        // Reads the waits make, first (later steps change what they read).
        step("wait-primary", wait(cluster.clone(), WaitCondition::CnpgPrimaryIs { pod: "pg-1".into() }), &[]),
        step("wait-healthy", wait(cluster.clone(), WaitCondition::CnpgHealthy), &[]),
        step("wait-endpoints", wait(o("v1", "Service", "pg-rw"), WaitCondition::ServiceHasEndpoints), &[]),
        step("wait-condition", wait(ObjectRef::pod(ns, "pg-2"), WaitCondition::ConditionIs { condition: "Ready".into(), status: "True".into() }), &[]),
        step("wait-workload", wait(o("apps/v1", "Deployment", "web"), WaitCondition::WorkloadReady), &[]),
        step("wait-gone", wait(ObjectRef { api_version: "v1".into(), kind: "Node".into(), namespace: None, name: lost.into() }, WaitCondition::NodeConfirmedGone), &[]),
        step("wait-sync", wait(o("volsync.backube/v1alpha1", "ReplicationDestination", "rd-old"), WaitCondition::VolsyncManualSyncDone { token: "restore-once".into() }), &[]),
        step("wait-unused", wait(ObjectRef::pvc(ns, "nobody-mounts-this"), WaitCondition::ClaimUnused), &[]),
        step("wait-no-replicas", wait(o("apps/v1", "StatefulSet", "idle"), WaitCondition::NoReplicas), &[]),
        step(
            "wait-provisioner",
            wait(
                o("apps/v1", "Deployment", "openebs-localpv-provisioner"),
                WaitCondition::ProvisionerReadyElsewhere {
                    selector: [("openebs.io/component-name".to_string(), "openebs-localpv-provisioner".to_string())].into(),
                    lost_node: lost.into(),
                    takeover_seconds: 0,
                },
            ),
            &[],
        ),
        step("gate", Action::ApprovalGate { phase: "writes".into() }, &[]),
        // node-loss
        step(
            "taint",
            Action::TaintNode { node: lost.into(), key: "node.kubernetes.io/out-of-service".into(), value: "nodeshutdown".into(), effect: "NoExecute".into() },
            &["wait-gone"],
        ),
        step("force-delete", Action::ForceDeletePod { pod: ObjectRef::pod(ns, "stuck") }, &[]),
        delete_pvc,
        // cnpg-instance-lost, wal-archive-reset
        step("promote", Action::PromoteCnpg { cluster: cluster.clone(), pod: "pg-2".into() }, &["wait-primary", "wait-healthy"]),
        step("wait-failover", wait(cluster.clone(), WaitCondition::CnpgFailedOver { from: "pg-1".into() }), &["promote"]),
        step("wait-rw-primary", wait(o("v1", "Service", "pg-rw"), WaitCondition::ServiceRoutesToCnpgPrimary { cluster: "pg".into() }), &["wait-failover"]),
        mark_pvc,
        step(
            "server-name",
            Action::SetCnpgPluginParameter { cluster: cluster.clone(), plugin: "barman-cloud.cloudnative-pg.io".into(), parameter: "serverName".into(), value: "pg-r2".into() },
            &["promote"],
        ),
        step("recreate", Action::RecreatePod { pod: ObjectRef::pod(ns, "pg-1"), timeout_seconds: 60 }, &[]),
        step("restart", Action::RestartPod { pod: ObjectRef::pod(ns, "restart-me") }, &[]),
        step(
            "base-backup",
            Action::Apply {
                object: backup.clone(),
                manifest: json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Backup",
            "metadata": {"name": "pg-r2-base", "namespace": ns}, "spec": {"cluster": {"name": "pg"}, "method": "plugin", "pluginConfiguration": {"name": "barman-cloud.cloudnative-pg.io"}}}),
            },
            &["server-name"],
        ),
        step("wait-backup", wait(backup, WaitCondition::CnpgBackupCompleted), &["base-backup"]),
        // mariadb-instance-lost
        step("force-bootstrap", Action::TemporaryPatch { object: mdb.clone(), patch: force(true, json!("mariadb-1")), revert: force(false, Value::Null) }, &[]),
        step("scale-mariadb", Action::Scale { object: mdb, replicas: 3 }, &["force-bootstrap"]),
        // Flux around every playbook
        step("suspend", Action::SuspendFlux { object: ks, keep_suspended: false }, &[]),
        step("suspend-kept", Action::SuspendFlux { object: hr, keep_suspended: true }, &[]),
        step("suspend-2", Action::SuspendFlux { object: ks2.clone(), keep_suspended: false }, &[]),
        step("resume-2", Action::ResumeFlux { object: ks2 }, &["suspend-2"]),
        // volsync-restore, stale-cleanup
        step("pause-source", Action::MergePatch { object: o("volsync.backube/v1alpha1", "ReplicationSource", "rs"), patch: json!({"spec": {"paused": true}}) }, &[]),
        step(
            "recreate-pvc",
            Action::Apply {
                object: ObjectRef::pvc(ns, "restored"),
                manifest: json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "restored", "namespace": ns}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}, "storageClassName": "openebs-hostpath"}}),
            },
            &[],
        ),
        with(
            step("trigger", Action::MergePatch { object: rd.clone(), patch: json!({"spec": {"trigger": {"manual": "lifeboat-abc123"}, "kopia": {"restoreAsOf": null}}}) }, &[]),
            vec![Precondition::KopiaIdentity { destination: rd.clone(), source: None, identity }, Precondition::SsaIfNotPresent { object: rd }],
        ),
        step("delete-rd", Action::Delete { object: o("volsync.backube/v1alpha1", "ReplicationDestination", "rd-old") }, &["wait-sync"]),
        with(
            step("delete-pv", Action::Delete { object: ObjectRef { api_version: "v1".into(), kind: "PersistentVolume".into(), namespace: None, name: stranded.clone() } }, &[]),
            vec![Precondition::VolumeOrphanedOnGoneNode { volume: stranded, node: lost.into() }],
        ),
        // s3-restore / garage-meta-restore / kanidm-credential-reset
        step("scale-down", Action::Scale { object: o("apps/v1", "StatefulSet", "db"), replicas: 0 }, &[]),
        step("scale-web", Action::Scale { object: o("apps/v1", "Deployment", "web"), replicas: 2 }, &["wait-workload"]),
        step(
            "restore-job",
            Action::RunJob {
                job: o("batch/v1", "Job", "garage-meta-restore-abc"),
                manifest: garage_restore_job(ns, "garage-meta-restore-abc"),
                timeout_seconds: 60,
                success_marker: "Garage metadata restored".into(),
                output: JobOutput::Capture { label: "snapshot".into(), pattern: "from snapshot {}".into() },
            },
            &[],
        ),
        // s3-restore of a kaniop Kanidm: stopped through its replica group.
        with(
            step("kanidm-stop", Action::SetKanidmReplicas { kanidm: kanidm_cr.clone(), group: "default".into(), replicas: 0 }, &[]),
            vec![Precondition::ImageIs { object: kanidm_cr, pointer: "/spec/image".into(), image: KANIDM_IMAGE.into() }],
        ),
        step("wait-kanidm-stopped", wait(o("apps/v1", "StatefulSet", "kanidm-default"), WaitCondition::SpecReplicas { replicas: 0 }), &["kanidm-stop"]),
        // kanidm-credential-reset: recover-account by exec, into the Secret.
        with(step("recover-admin", recover("admin", "ADMIN_PASSWORD"), &[]), vec![Precondition::PodReady { pod: kanidm_pod.clone() }]),
        with(step("recover-idm-admin", recover("idm_admin", "IDM_ADMIN_PASSWORD"), &["recover-admin"]), vec![Precondition::PodReady { pod: kanidm_pod.clone() }]),
        step("rollout-restart", Action::RolloutRestart { object: o("apps/v1", "Deployment", "web") }, &["scale-web"]),
    ];
    let gated: Vec<Step> = steps
        .into_iter()
        .map(|mut s| {
            if !s.id.starts_with("wait-") && s.id != "gate" {
                s.needs.push("gate".into());
            }
            s
        })
        .collect();
    Plan { steps: gated, ..Plan::new("rbac-test", format!("namespace {ns}")) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_playbook_write_passes_as_the_shipped_service_account() {
    let r = release("rbac-writes").await;
    let (lost, live) = scene(&r).await;
    let plan = all_writes(&r.scene, &lost);

    // Every Action and every WaitCondition has its step (see rbac_case).
    let covered: BTreeSet<&str> = plan.steps.iter().filter_map(|s| rbac_case(&s.action)).collect();
    let waits: BTreeSet<&str> = plan
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Wait { until, .. } => Some(wait_case(until)),
            _ => None,
        })
        .collect();
    assert_eq!(covered.len(), 21, "every Action but VerifyGarage, RepairGarageTables and PhaseStart has a step: {covered:?}");
    assert_eq!(waits.len(), 14, "every WaitCondition has a step: {waits:?}");

    let _kubelet = kanidmd(&r, &live).await;
    let players = [tokio::spawn(play(r.admin.clone(), r.scene.clone(), live)), tokio::spawn(play_kaniop(r.admin.clone(), r.scene.clone()))];
    let limits = RunLimits {
        poll_interval: Duration::from_millis(200),
        concurrency: 4,
        max_deletions: 10,
        max_pvc_deletions: 5,
        approved_phases: vec!["writes".into()],
        ..RunLimits::default()
    };
    let run = run_as_service_account(&r, &plan, &limits).await;
    players.iter().for_each(|p| p.abort());
    assert!(run.failed.is_empty(), "steps refused as lifeboat's ServiceAccount:\n{}", run.failed.join("\n"));

    // What the writes did (read as admin), including the end-of-run ones:
    // Flux resumed or flagged, the temporary MariaDB patch reverted.
    let (c, ns) = (&r.admin, r.scene.as_str());
    let node = get(c, "v1", "Node", None, &lost).await;
    assert!(node["spec"]["taints"].as_array().is_some_and(|t| t.iter().any(|t| t["key"] == "node.kubernetes.io/out-of-service")), "{node}");
    if run.execs_answered {
        let secret = get(c, "v1", "Secret", Some(ns), "kanidm-admin-passwords").await;
        assert_eq!(secret["data"]["ADMIN_PASSWORD"], secret_value("pw-admin"), "the password from the exec's output");
        assert_eq!(secret["data"]["IDM_ADMIN_PASSWORD"], secret_value("pw-idm_admin"), "the password from the exec's output");
    }
    assert_eq!(get(c, "kustomize.toolkit.fluxcd.io/v1", "Kustomization", Some(ns), "app").await["spec"]["suspend"], json!(false));
    let hr = get(c, "helm.toolkit.fluxcd.io/v2", "HelmRelease", Some(ns), "hr").await;
    assert!(hr["metadata"]["annotations"]["lifeboat.dev/kept-suspended"].is_string(), "{hr}");
    let mdb = get(c, "k8s.mariadb.com/v1alpha1", "MariaDB", Some(ns), "mariadb").await;
    assert!(mdb["spec"]["galera"]["recovery"]["forceClusterBootstrapInPod"].is_null(), "reverted: {mdb}");
    assert_eq!(mdb["spec"]["galera"]["recovery"]["enabled"], json!(false), "reverted: {mdb}");
    let idm = get(c, KANIDM, "Kanidm", Some(ns), "kanidm").await;
    assert_eq!(idm["spec"]["replicaGroups"], json!([{"name": "default", "replicas": 0}]), "{idm}");
    let gone_or_terminating = |o: Option<DynamicObject>| o.is_none_or(|o| o.metadata.deletion_timestamp.is_some());
    let volumes = api_for(c, "v1", "PersistentVolume", None).await;
    assert!(gone_or_terminating(volumes.get_opt(&format!("{ns}-stranded")).await.unwrap()), "the stranded PersistentVolume is deleted");
    let claims = api_for(c, "v1", "PersistentVolumeClaim", Some(ns)).await;
    assert!(gone_or_terminating(claims.get_opt("pg-3").await.unwrap()), "the lost instance's PVC is marked for deletion");
    let pg = get(c, "postgresql.cnpg.io/v1", "Cluster", Some(ns), "pg").await;
    assert_eq!(pg["spec"]["plugins"][0]["parameters"]["serverName"], json!("pg-r2"));
    assert_eq!(pg["status"]["targetPrimary"], json!("pg-2"));
    let web = get(c, "apps/v1", "Deployment", Some(ns), "web").await;
    assert!(web["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string());

    // The kill switch (lifeboat kill-switch on|off, /api/kill-switch) and the
    // journal, in the release namespace.
    lifeboat::act::kill_switch::engage(&r.sa, &r.ns, "test", "rbac").await.expect("engage the kill switch as the ServiceAccount");
    assert!(lifeboat::act::kill_switch::engaged(&r.sa, &r.ns).await);
    lifeboat::act::kill_switch::release(&r.sa, &r.ns).await.expect("release the kill switch as the ServiceAccount");
    assert!(!lifeboat::act::kill_switch::engaged(&r.sa, &r.ns).await);
}

/// The real kanidm-credential-reset plan (its execs as the playbook builds
/// them, with the config's defaults) runs as the ServiceAccount of a chart
/// rendered with default values: the chart's `remediation.execPods` and
/// `remediation.secrets`, the policy's exec rule and the playbook agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kanidm_playbook_runs_as_the_shipped_service_account() {
    let r = release("rbac-kanidm").await;
    let (_, live) = scene(&r).await;
    let ns = r.scene.as_str();
    create(&r.admin, kustomization(ns, "kanidm", false, "True"), None).await;
    let mut config = Config { discovery_interval: Dur::secs(1), ..Config::default() };
    config.kanidm.namespace = ns.to_string();
    config.kanidm.oidc_clients = vec![format!("Deployment/{ns}/web")];
    let snapshot = live_snapshot(&r.admin, &config).await;
    let plan = lifeboat::plan::playbooks::plan("kanidm-credential-reset", &snapshot.state, &snapshot.findings, &Default::default()).expect("plans");
    let execs = plan.steps.iter().filter(|s| matches!(s.action, Action::ExecToSecret { .. })).count();
    assert_eq!(execs, 2, "{}", plan.render_text());

    let _kubelet = kanidmd(&r, &live).await;
    let players = [tokio::spawn(play(r.admin.clone(), ns.to_string(), live)), tokio::spawn(play_replica_counts(r.admin.clone(), ns.to_string(), true))];
    let limits = RunLimits { poll_interval: Duration::from_millis(200), ..RunLimits::default() };
    let run = run_as_service_account(&r, &plan, &limits).await;
    players.iter().for_each(|p| p.abort());
    assert!(run.failed.is_empty(), "kanidm-credential-reset as lifeboat's ServiceAccount:\n{}", run.failed.join("\n"));
    if run.execs_answered {
        let secret = get(&r.admin, "v1", "Secret", Some(ns), "kanidm-admin-passwords").await;
        assert_eq!(secret["data"]["ADMIN_PASSWORD"], secret_value("pw-admin"));
        assert_eq!(secret["data"]["IDM_ADMIN_PASSWORD"], secret_value("pw-idm_admin"));
    }
}

// --- Escalations -------------------------------------------------------------------

fn dry_post() -> PostParams {
    PostParams { dry_run: true, ..Default::default() }
}

fn dry_patch() -> PatchParams {
    PatchParams { dry_run: true, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_escalations_are_refused() {
    let r = release("rbac-escalate").await;
    let (lost, _) = scene(&r).await;
    let (c, ns) = (&r.sa, r.scene.as_str());
    let jobs = api_for(c, "batch/v1", "Job", Some(ns)).await;
    let job = |f: &dyn Fn(&mut Value)| {
        let mut j = garage_restore_job(ns, "escalate");
        f(&mut j);
        serde_json::from_value::<kube::api::DynamicObject>(j).unwrap()
    };
    let mut refusals = vec![];
    let mut expect = |what: &str, result: Result<String, String>| match result {
        Ok(message) => refusals.push(format!("{what}: {message}")),
        Err(got) => panic!("{what}: not refused by the admission policy: {got}"),
    };

    // The playbooks' own Job is allowed: the refusals below are the changes.
    jobs.create(&dry_post(), &job(&|_| {})).await.expect("the Garage restore Job is allowed");
    expect(
        "the recover-account Job no playbook runs any more (kanidm image, kanidm-tls)",
        denied_by_policy(&jobs.create(&dry_post(), &serde_json::from_value(recover_job(ns, "recover")).unwrap()).await),
    );
    expect(
        "Job mounting another Secret",
        denied_by_policy(
            &jobs
                .create(
                    &dry_post(),
                    &job(&|j| j["spec"]["template"]["spec"]["volumes"].as_array_mut().unwrap().push(json!({"name": "token", "secret": {"secretName": "cluster-admin-token"}}))),
                )
                .await,
        ),
    );
    expect(
        "Job reading another Secret into env",
        denied_by_policy(
            &jobs
                .create(
                    &dry_post(),
                    &job(&|j| {
                        j["spec"]["template"]["spec"]["containers"][0]["env"] =
                            json!([{"name": "T", "valueFrom": {"secretKeyRef": {"name": "cluster-admin-token", "key": "token"}}}])
                    }),
                )
                .await,
        ),
    );
    expect(
        "Job as another ServiceAccount",
        denied_by_policy(&jobs.create(&dry_post(), &job(&|j| j["spec"]["template"]["spec"]["serviceAccountName"] = json!("flux-system-admin"))).await),
    );
    expect(
        "Job with another image",
        denied_by_policy(&jobs.create(&dry_post(), &job(&|j| j["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil.example/shell:latest"))).await),
    );
    expect(
        "Job with a hostPath",
        denied_by_policy(&jobs.create(&dry_post(), &job(&|j| j["spec"]["template"]["spec"]["volumes"][0] = json!({"name": "backup", "hostPath": {"path": "/"}}))).await),
    );
    expect(
        "Job with another NFS export",
        denied_by_policy(
            &jobs.create(&dry_post(), &job(&|j| j["spec"]["template"]["spec"]["volumes"][0] = json!({"name": "backup", "nfs": {"server": NFS_SERVER, "path": "/"}}))).await,
        ),
    );
    expect(
        "Job adding a capability",
        denied_by_policy(
            &jobs.create(&dry_post(), &job(&|j| j["spec"]["template"]["spec"]["containers"][0]["securityContext"] = json!({"capabilities": {"add": ["SYS_ADMIN"]}}))).await,
        ),
    );
    expect("Job in the host network", denied_by_policy(&jobs.create(&dry_post(), &job(&|j| j["spec"]["template"]["spec"]["hostNetwork"] = json!(true))).await));

    let patch = |api_version: &'static str, kind: &'static str, name: &'static str, body: Value| {
        let c = c.clone();
        let ns = ns.to_string();
        async move {
            let api = api_for(&c, api_version, kind, Some(&ns)).await;
            denied_by_policy(&api.patch(name, &dry_patch(), &Patch::Merge(&body)).await)
        }
    };
    let ks = "kustomize.toolkit.fluxcd.io/v1";
    expect("Kustomization: suspend and add spec.patches", patch(ks, "Kustomization", "app",
        json!({"spec": {"suspend": true, "patches": [{"patch": "- op: add\n  path: /spec/template/spec/serviceAccountName\n  value: admin", "target": {"kind": "Deployment"}}]}})).await);
    expect("Kustomization: another sourceRef", patch(ks, "Kustomization", "app", json!({"spec": {"sourceRef": {"kind": "GitRepository", "name": "evil"}}})).await);
    expect("HelmRelease: values", patch("helm.toolkit.fluxcd.io/v2", "HelmRelease", "hr", json!({"spec": {"values": {"replicas": 9}}})).await);
    expect(
        "HelmRelease: post-renderers",
        patch("helm.toolkit.fluxcd.io/v2", "HelmRelease", "hr", json!({"spec": {"postRenderers": [{"kustomize": {"patches": [{"patch": "{}"}]}}]}})).await,
    );
    expect(
        "Deployment: pod template image",
        patch("apps/v1", "Deployment", "web", json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "evil.example/shell:latest"}]}}}})).await,
    );
    expect("Deployment: pod template ServiceAccount", patch("apps/v1", "Deployment", "web", json!({"spec": {"template": {"spec": {"serviceAccountName": "admin"}}}})).await);
    expect(
        "StatefulSet: another template annotation",
        patch("apps/v1", "StatefulSet", "db", json!({"spec": {"template": {"metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/app": "unconfined"}}}}}))
            .await,
    );
    expect(
        "CNPG Cluster: another object store",
        patch(
            "postgresql.cnpg.io/v1",
            "Cluster",
            "pg",
            json!({"spec": {"plugins": [{"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": true, "parameters": {"barmanObjectName": "evil", "serverName": "pg"}}]}}),
        )
        .await,
    );
    expect(
        "CNPG Cluster: postgresql parameters",
        patch("postgresql.cnpg.io/v1", "Cluster", "pg", json!({"spec": {"postgresql": {"parameters": {"archive_command": "curl evil"}}}})).await,
    );
    expect("MariaDB: image", patch("k8s.mariadb.com/v1alpha1", "MariaDB", "mariadb", json!({"spec": {"image": "evil.example/mariadb:1"}})).await);
    expect("MariaDB: another galera field", patch("k8s.mariadb.com/v1alpha1", "MariaDB", "mariadb", json!({"spec": {"galera": {"recovery": {"minClusterSize": 3}}}})).await);
    expect(
        "MariaDB: recovery turned on without a bootstrap pod",
        patch("k8s.mariadb.com/v1alpha1", "MariaDB", "mariadb", json!({"spec": {"galera": {"recovery": {"enabled": true}}}})).await,
    );
    let recovery = json!({"spec": {"galera": {"recovery": {"enabled": true, "forceClusterBootstrapInPod": "mariadb-1"}}}});
    api_for(c, "k8s.mariadb.com/v1alpha1", "MariaDB", Some(ns))
        .await
        .patch("mariadb", &dry_patch(), &Patch::Merge(&recovery))
        .await
        .expect("recovery on with the bootstrap pod is allowed");
    expect("Kanidm: image", patch(KANIDM, "Kanidm", "kanidm", json!({"spec": {"image": "evil.example/kanidm:1"}})).await);
    expect("Kanidm: another spec field", patch(KANIDM, "Kanidm", "kanidm", json!({"spec": {"tlsSecretName": "other-tls"}})).await);
    expect(
        "Kanidm: another replica group field",
        patch(KANIDM, "Kanidm", "kanidm", json!({"spec": {"replicaGroups": [{"name": "default", "replicas": 1, "role": "write_replica_no_ui"}]}})).await,
    );
    expect(
        "Kanidm: another replica group",
        patch(KANIDM, "Kanidm", "kanidm", json!({"spec": {"replicaGroups": [{"name": "default", "replicas": 1}, {"name": "extra", "replicas": 1}]}})).await,
    );
    let stop = json!({"spec": {"replicaGroups": [{"name": "default", "replicas": 0}]}});
    api_for(c, KANIDM, "Kanidm", Some(ns)).await.patch("kanidm", &dry_patch(), &Patch::Merge(&stop)).await.expect("a replica count is allowed");
    expect(
        "ReplicationDestination: another repository",
        patch("volsync.backube/v1alpha1", "ReplicationDestination", "rd", json!({"spec": {"kopia": {"repository": "other-secret"}}})).await,
    );
    expect(
        "ReplicationDestination: another restoreAsOf",
        patch("volsync.backube/v1alpha1", "ReplicationDestination", "rd", json!({"spec": {"kopia": {"restoreAsOf": "2020-01-01T00:00:00Z"}}})).await,
    );
    expect("ReplicationSource: another source PVC", patch("volsync.backube/v1alpha1", "ReplicationSource", "rs", json!({"spec": {"sourcePVC": "other"}})).await);
    expect("a label on a Flux object", patch(ks, "Kustomization", "app", json!({"metadata": {"labels": {"x": "y"}}})).await);
    expect("a foreign annotation", patch(ks, "Kustomization", "app", json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "now"}}})).await);
    expect("Secret: another key", patch("v1", "Secret", "kanidm-admin-passwords", json!({"data": {"OTHER": "eA=="}})).await);
    let pvcs = api_for(c, "v1", "PersistentVolumeClaim", Some(ns)).await;
    let claim = |spec: Value| {
        serde_json::from_value::<kube::api::DynamicObject>(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "grab", "namespace": ns}, "spec": spec}))
        .unwrap()
    };
    let base = json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}});
    pvcs.create(&dry_post(), &claim(base.clone())).await.expect("a fresh empty PVC is allowed");
    let mut bind = base.clone();
    bind["volumeName"] = json!(format!("{ns}-data"));
    expect("PVC bound to an existing volume", denied_by_policy(&pvcs.create(&dry_post(), &claim(bind)).await));
    let mut clone = base.clone();
    clone["dataSource"] = json!({"kind": "PersistentVolumeClaim", "name": "data"});
    expect("PVC cloned from another", denied_by_policy(&pvcs.create(&dry_post(), &claim(clone)).await));

    // PersistentVolumes: only an unbound one pinned to a node.
    let volumes = api_for(c, "v1", "PersistentVolume", None).await;
    let mut unpinned = pv_pinned(&format!("{ns}-nfs"), "kubernetes.io/hostname", &lost, ns, "deleted-claim");
    let spec = unpinned["spec"].as_object_mut().unwrap();
    spec.remove("nodeAffinity");
    spec.remove("local");
    spec.insert("nfs".into(), json!({"server": NFS_SERVER, "path": "/exports/data"}));
    unpinned["status"]["phase"] = json!("Released");
    create(&r.admin, unpinned, None).await;
    let dry_delete = DeleteParams { dry_run: true, ..Default::default() };
    expect("PersistentVolume: a Bound one", denied_by_policy(&volumes.delete(&format!("{ns}-data"), &dry_delete).await));
    expect("PersistentVolume: one not pinned to a node", denied_by_policy(&volumes.delete(&format!("{ns}-nfs"), &dry_delete).await));
    volumes.delete(&format!("{ns}-stranded"), &dry_delete).await.expect("a Released volume pinned to a node is allowed");

    // pods/exec, asked without the upgrade to a stream: RBAC and the policy
    // answer first; a request they let through gets no 403.
    let exec = |pod: &str, query: &str| {
        let request = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{pod}/exec?{query}")).body(Vec::new()).unwrap();
        c.request_text(request)
    };
    let recover = "container=kanidm&command=kanidmd&command=recover-account&command=admin&stdout=true";
    expect("exec: a shell", denied_by_policy(&exec("kanidm-default-0", "container=kanidm&command=sh&command=-c&command=id&stdout=true").await));
    expect("exec: another user", denied_by_policy(&exec("kanidm-default-0", "container=kanidm&command=kanidmd&command=recover-account&command=someone&stdout=true").await));
    expect("exec: with stdin", denied_by_policy(&exec("kanidm-default-0", &format!("{recover}&stdin=true")).await));
    expect("exec: with a terminal", denied_by_policy(&exec("kanidm-default-0", &format!("{recover}&tty=true")).await));
    expect("exec: another container", denied_by_policy(&exec("kanidm-default-0", &recover.replace("container=kanidm", "container=app")).await));
    match exec("kanidm-default-0", recover).await {
        Err(kube::Error::Api(s)) if s.code == 403 => panic!("the playbook's exec is refused: {s:?}"),
        other => eprintln!("the playbook's exec passes RBAC and the policy: {other:?}"),
    }
    match exec("pg-2", recover).await {
        Err(kube::Error::Api(s)) => assert!(s.code == 403 && !s.message.contains("ValidatingAdmissionPolicy"), "exec outside remediation.execPods: {s:?}"),
        other => panic!("exec into a pod outside remediation.execPods: {other:?}"),
    }

    let nodes = api_for(c, "v1", "Node", None).await;
    let node_patch = |body: Value| {
        let (nodes, lost) = (nodes.clone(), lost.clone());
        async move { denied_by_policy(&nodes.patch(&lost, &dry_patch(), &Patch::Merge(&body)).await) }
    };
    // The node's own taints (node.kubernetes.io/not-ready from admission) stay, as TaintNode keeps them.
    let taints = get(&r.admin, "v1", "Node", None, &lost).await["spec"]["taints"].as_array().cloned().unwrap_or_default();
    let with_taint = |t: Value| taints.iter().cloned().chain([t]).collect::<Vec<Value>>();
    expect("Node: another taint", node_patch(json!({"spec": {"taints": with_taint(json!({"key": "x", "effect": "NoSchedule"}))}})).await);
    expect("Node: removing a taint", node_patch(json!({"spec": {"taints": [{"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"}]}})).await);
    expect("Node: a label", node_patch(json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}}})).await);
    expect("Node: unschedulable", node_patch(json!({"spec": {"unschedulable": true}})).await);
    nodes
        .patch(
            &lost,
            &dry_patch(),
            &Patch::Merge(json!({"spec": {"taints": with_taint(json!({"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"}))}})),
        )
        .await
        .expect("the out-of-service taint is allowed");

    let maps = api_for(c, "v1", "ConfigMap", Some(&r.ns)).await;
    let map = |name: &str| serde_json::from_value::<kube::api::DynamicObject>(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})).unwrap();
    expect("a ConfigMap other than the kill switch", denied_by_policy(&maps.create(&dry_post(), &map("lifeboat")).await));
    maps.create(&dry_post(), &map("lifeboat-kill-switch")).await.expect("the kill switch is allowed");

    // Outside remediation.namespaces RBAC refuses before admission.
    create(&r.admin, kustomization(&r.elsewhere, "app", false, "True"), None).await;
    let elsewhere = api_for(c, ks, "Kustomization", Some(&r.elsewhere)).await;
    match elsewhere.patch("app", &dry_patch(), &Patch::Merge(json!({"spec": {"suspend": true}}))).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("a Kustomization outside remediation.namespaces was patched: {other:?}"),
    }
    let elsewhere_jobs = api_for(c, "batch/v1", "Job", Some(&r.elsewhere)).await;
    match elsewhere_jobs.create(&dry_post(), &job(&|j| j["metadata"]["namespace"] = json!(r.elsewhere))).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("a Job outside remediation.namespaces was created: {other:?}"),
    }
    // The policy applies to lifeboat only: the same change by someone else passes.
    api_for(&r.admin, ks, "Kustomization", Some(ns))
        .await
        .patch("app", &dry_patch(), &Patch::Merge(json!({"spec": {"patches": [{"patch": "{}"}]}})))
        .await
        .expect("admin unaffected");
    eprintln!("refused:\n  {}", refusals.join("\n  "));
}

// --- The policy keeps every field of the upstream CRDs ---------------------------------

/// `spec` (or a nested object) properties of a CRD's storage version.
fn crd_properties(group: &str, plural: &str, path: &[&str]) -> BTreeSet<String> {
    let name = format!("{plural}.{group}");
    let crds = support::crds::all().unwrap();
    let crd = &crds.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no CRD {name} among the harness's CRDs")).manifest;
    let version = crd["spec"]["versions"].as_array().unwrap().iter().find(|v| v["storage"] == true).unwrap();
    let mut schema = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    for p in path {
        schema = &schema["properties"][*p];
    }
    schema["properties"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

#[test]
fn the_admission_policy_keeps_every_crd_field_lifeboat_does_not_patch() {
    let objects = render("lifeboat", "lifeboat", &values("lifeboat", "database"));
    let policy = objects.iter().find(|o| o["kind"] == "ValidatingAdmissionPolicy").expect("rendered with remediation.enabled");
    let expression = |resource: &str| -> String {
        let guard = format!("variables.resource != '{resource}'");
        let found: Vec<&str> = policy["spec"]["validations"].as_array().unwrap().iter().filter_map(|v| v["expression"].as_str()).filter(|e| e.contains(&guard)).collect();
        assert!(!found.is_empty(), "no validation for {resource}");
        found.join("\n")
    };
    // (group, plural, path under spec, what a playbook may change there)
    let cases: &[(&str, &str, &[&str], &[&str])] = &[
        ("kustomize.toolkit.fluxcd.io", "kustomizations", &[], &["suspend"]),
        ("helm.toolkit.fluxcd.io", "helmreleases", &[], &["suspend"]),
        ("postgresql.cnpg.io", "clusters", &[], &["plugins", "instances"]),
        ("k8s.mariadb.com", "mariadbs", &[], &["galera", "replicas"]),
        ("k8s.mariadb.com", "mariadbs", &["galera"], &["recovery"]),
        // `enabled` only together with forceClusterBootstrapInPod (a validation of its own).
        ("k8s.mariadb.com", "mariadbs", &["galera", "recovery"], &["forceClusterBootstrapInPod", "enabled"]),
        ("volsync.backube", "replicationsources", &[], &["paused"]),
        ("volsync.backube", "replicationdestinations", &[], &["trigger", "kopia", "restic"]),
        ("volsync.backube", "replicationdestinations", &["trigger"], &["manual"]),
        ("volsync.backube", "replicationdestinations", &["kopia"], &["restoreAsOf"]),
        ("volsync.backube", "replicationdestinations", &["restic"], &["restoreAsOf"]),
    ];
    let mut missing = vec![];
    for (group, plural, path, patched) in cases {
        let text = expression(plural);
        let prefix: String = std::iter::once("spec").chain(path.iter().copied()).map(|p| format!(".?{p}")).collect();
        for field in crd_properties(group, plural, path) {
            if !patched.contains(&field.as_str()) && !text.contains(&format!("object{prefix}.?{field} == oldObject{prefix}.?{field}")) {
                missing.push(format!("{plural}.{group} spec.{}{field}", path.iter().map(|p| format!("{p}.")).collect::<String>()));
            }
        }
    }
    assert!(missing.is_empty(), "fields the admission policy lets lifeboat change (add them to rbac-admission.yaml):\n{}", missing.join("\n"));
}
