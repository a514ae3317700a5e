//! cnpg-instance-lost through lifeboat (plan → approve by hash → run) with the
//! real CloudNativePG operator v1.30.0 reconciling on the test apiserver
//! (support/cnpg_operator.rs), kubelets, scheduler and PostgreSQL played by
//! support/cnpg_standin.rs. Every Cluster here is created through the
//! operator's webhooks and bootstrapped by the operator itself (initdb Job,
//! join Jobs, pods, services, status).
//!
//! Skipped, loudly, only when Go is missing.

mod support;

use std::time::Duration;

use kube::api::PostParams;
use kube::Client;
use lifeboat::act::runner::{execute, Outcome, RunLimits, RunReport, StepStatus};
use lifeboat::config::{Config, Dur};
use lifeboat::plan::playbooks::{plan, Trigger};
use lifeboat::plan::Plan;
use serde_json::{json, Value};
use support::cnpg_operator::{operator, skip_without_go, Operator};
use support::cnpg_standin::{executable_hash, nodes, StandIn};
// Private: the real operator registers webhooks (failurePolicy Fail) that would outlive it.
use support::controlplane::control_plane_private as control_plane;
use support::k8s::{api_for, get, mark_node_not_ready};

const CNPG: &str = "postgresql.cnpg.io/v1";
const CLUSTER: &str = "pg";
/// Bootstrapping three instances on the loaded machine: initdb, two joins.
const BOOTSTRAP: Duration = Duration::from_secs(300);

struct Env {
    client: Client,
    ns: String,
    standin: StandIn,
    operator: &'static Operator,
}

impl Env {
    async fn cluster(&self) -> Value {
        get(&self.client, CNPG, "Cluster", Some(&self.ns), CLUSTER).await
    }

    /// Polls `check` until it gives Some; fails with what the operator logged.
    async fn until<T>(&self, what: &str, within: Duration, mut check: impl AsyncFnMut(&Env) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(v) = check(self).await {
                return v;
            }
            self.operator.assert_alive();
            self.standin.assert_alive();
            if tokio::time::Instant::now() > deadline {
                let cluster = self.cluster().await;
                panic!("{what}: not within {within:?}\ncluster status: {}\n{}", cluster["status"], self.operator.log_tail(60));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn healthy(&self, instances: i64) -> Value {
        self.until("the Cluster is healthy", BOOTSTRAP, async |env| {
            let c = env.cluster().await;
            let s = &c["status"];
            (s["phase"] == "Cluster in healthy state" && s["readyInstances"] == instances && s["instances"] == instances && s["currentPrimary"] == s["targetPrimary"]).then_some(c)
        })
        .await
    }

    async fn pod(&self, name: &str) -> Option<Value> {
        let pods = api_for(&self.client, "v1", "Pod", Some(&self.ns)).await;
        pods.get_opt(name).await.unwrap().map(|p| serde_json::to_value(p).unwrap())
    }

    async fn pvc_exists(&self, name: &str) -> bool {
        self.pvc_uid(name).await.is_some()
    }

    async fn pvc_uid(&self, name: &str) -> Option<String> {
        let claim = api_for(&self.client, "v1", "PersistentVolumeClaim", Some(&self.ns)).await.get_opt(name).await.unwrap()?;
        claim.metadata.uid
    }

    async fn node_of(&self, pod: &str) -> String {
        self.pod(pod).await.and_then(|p| p["spec"]["nodeName"].as_str().map(String::from)).unwrap_or_else(|| panic!("{pod} is not scheduled"))
    }

    /// lifeboat's plan from its live view of the apiserver.
    async fn plan(&self) -> Plan {
        let config = Config { discovery_interval: Dur::secs(1), node_lost_grace: Dur::secs(30), ..Config::default() };
        let snapshot = support::k8s::live_snapshot(&self.client, &config).await;
        let trigger = Trigger { namespace: Some(self.ns.clone()), name: Some(CLUSTER.into()), node: None };
        plan("cnpg-instance-lost", &snapshot.state, &snapshot.findings, &trigger).expect("plans")
    }

    /// Runs `plan` as approved (the approval names its hash).
    async fn run(&self, plan: &Plan) -> RunReport {
        let limits = RunLimits { poll_interval: Duration::from_millis(500), ..RunLimits::default() };
        execute(&self.client, plan, &plan.hash(), &limits).await
    }
}

/// The operator, a namespace with `node_count` Ready nodes, the stand-in, and
/// Cluster `pg` of `instances` (with `spec` merged in), bootstrapped healthy.
async fn env(prefix: &str, node_count: usize, instances: i64, spec: Value) -> Option<(Env, Value)> {
    if skip_without_go(prefix) {
        return None;
    }
    let cp = control_plane();
    let operator = operator(cp);
    let client = cp.admin_client();
    let ns = cp.namespace(&client, prefix).await;
    let nodes = nodes(&client, &ns, node_count).await;
    let manager = support::cnpg_operator::manager_binary().unwrap();
    let standin = StandIn::spawn(client.clone(), &ns, nodes.clone(), executable_hash(&manager));
    let env = Env { client, ns, standin, operator };
    let mut cluster = json!({"apiVersion": CNPG, "kind": "Cluster", "metadata": {"name": CLUSTER, "namespace": env.ns},
        "spec": {"instances": instances, "storage": {"size": "1Gi"}}});
    for (k, v) in spec.as_object().into_iter().flatten() {
        cluster["spec"][k] = v.clone();
    }
    let clusters = api_for(&env.client, CNPG, "Cluster", Some(&env.ns)).await;
    let admitted = clusters.create(&PostParams::default(), &serde_json::from_value(cluster).unwrap()).await.expect("the operator's webhooks admit the Cluster");
    if operator.webhooks.is_ok() {
        let admitted = serde_json::to_value(admitted).unwrap();
        assert!(admitted["spec"]["imageName"].is_string(), "the mutating webhook defaulted the Cluster: {admitted}");
    }
    let healthy = env.healthy(instances).await;
    Some((env, healthy))
}

fn replicas(cluster: &Value) -> Vec<String> {
    let primary = cluster["status"]["currentPrimary"].as_str().unwrap_or_default();
    cluster["status"]["instanceNames"].as_array().unwrap().iter().filter_map(|v| v.as_str()).filter(|i| *i != primary).map(String::from).collect()
}

fn ids(plan: &Plan) -> Vec<&str> {
    plan.steps.iter().map(|s| s.id.as_str()).collect()
}

fn succeeded(report: &RunReport, plan: &Plan) {
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:#?}\n{}", plan.render_text());
    assert!(report.steps.iter().all(|s| matches!(s.status, StepStatus::Succeeded { .. })), "{report:#?}");
}

/// The lost instance re-created by the operator after the run: upstream
/// reuses the lowest free serial, i.e. the lost instance's own name
/// (`internal/controller/cluster_create.go` generateNodeSerial), on new
/// storage (a new claim) on a Ready node, after the run deleted the old one,
/// and the Cluster is healthy again. `old_claim` is the uid of the deleted claim.
async fn recreated(env: &Env, instances: i64, lost: &str, old_claim: &str, lost_node: &str, report: &RunReport) -> Value {
    let cluster = env.healthy(instances).await;
    let names: Vec<&str> = cluster["status"]["instanceNames"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(names.len() as i64, instances, "{names:?}");
    let claim = env.pvc_uid(lost).await.unwrap_or_else(|| panic!("{lost} was re-created: {}\n{}", cluster["status"], env.operator.log_tail(40)));
    assert_ne!(claim, old_claim, "{lost} is on a new claim, not the deleted one");
    let node = env.node_of(lost).await;
    assert_ne!(node, lost_node, "{lost} runs on a Ready node");
    let pod = env.pod(lost).await.unwrap();
    let created: chrono::DateTime<chrono::Utc> = pod["metadata"]["creationTimestamp"].as_str().unwrap().parse().unwrap();
    let deleted = report.steps.iter().find(|s| s.id == format!("delete-pod-{lost}")).and_then(|s| s.finished).expect("the pod was deleted");
    assert!(created >= deleted - chrono::Duration::seconds(1), "a new pod, created after the run deleted the old one");
    let healthy_at = report.steps.iter().find(|s| s.id == "wait-healthy").and_then(|s| s.finished).unwrap();
    eprintln!("{lost} re-created at {created}; lifeboat saw the Cluster healthy at {healthy_at}");
    assert!(healthy_at >= created, "lifeboat's wait-healthy passed on the status from before the deletion");
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_replica_is_deleted_and_the_operator_recreates_it() {
    let Some((env, cluster)) = env("cnpg-op-replica", 4, 3, json!({})).await else { return };
    let primary = cluster["status"]["currentPrimary"].as_str().unwrap().to_string();
    let lost = replicas(&cluster)[0].clone();
    let node = env.node_of(&lost).await;
    let claim = env.pvc_uid(&lost).await.unwrap();
    mark_node_not_ready(&env.client, &node, chrono::Utc::now() - chrono::Duration::minutes(10)).await;

    let plan = env.plan().await;
    let expected = [format!("mark-pvc-{lost}"), format!("delete-pod-{lost}"), format!("delete-pvc-{lost}"), "wait-healthy".into(), "verify-rw-endpoints".into()];
    assert_eq!(ids(&plan), expected.iter().map(String::as_str).collect::<Vec<_>>(), "{}", plan.render_text());
    let report = env.run(&plan).await;
    succeeded(&report, &plan);

    let cluster = recreated(&env, 3, &lost, &claim, &node, &report).await;
    assert_eq!(cluster["status"]["currentPrimary"], primary.as_str(), "no failover for a lost replica");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_instance_cluster_loses_nothing() {
    let Some((env, cluster)) = env("cnpg-op-single", 2, 1, json!({})).await else { return };
    let primary = cluster["status"]["currentPrimary"].as_str().unwrap().to_string();
    let node = env.node_of(&primary).await;
    mark_node_not_ready(&env.client, &node, chrono::Utc::now() - chrono::Duration::minutes(10)).await;

    let plan = env.plan().await;
    assert!(plan.steps.is_empty(), "nothing to run: {}", plan.render_text());
    assert!(plan.findings.iter().any(|f| f.contains("no healthy replica survives")), "{}", plan.render_text());
    let report = env.run(&plan).await;
    assert!(report.steps.is_empty(), "{report:#?}");
    // The operator keeps waiting for its only instance; its storage is untouched.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(env.pvc_exists(&primary).await, "the only copy of the data is kept");
    assert!(env.pod(&primary).await.is_some());
    let cluster = env.cluster().await;
    assert_eq!(cluster["status"]["currentPrimary"], primary.as_str());
    assert_eq!(cluster["status"]["instanceNames"], json!([primary]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_primary_is_failed_over_by_the_operator_and_lifeboat_promotes_nobody() {
    // failoverDelay: the operator waits 20s after noticing, so lifeboat plans before it moves.
    let Some((env, cluster)) = env("cnpg-op-failover", 4, 3, json!({"failoverDelay": 20})).await else { return };
    let primary = cluster["status"]["currentPrimary"].as_str().unwrap().to_string();
    let replicas = replicas(&cluster);
    // The replica later by name received more WAL: the operator elects it
    // (pkg/postgres/status.go Less: received LSN before the name).
    let ahead = replicas.iter().max().unwrap().clone();
    env.standin.set_lsn(&ahead, 0x500_0000);
    let node = env.node_of(&primary).await;
    let claim = env.pvc_uid(&primary).await.unwrap();
    mark_node_not_ready(&env.client, &node, chrono::Utc::now() - chrono::Duration::minutes(1)).await;

    let plan = env.plan().await;
    assert!(!ids(&plan).contains(&"promote"), "lifeboat must not pick a primary: {}", plan.render_text());
    assert_eq!(ids(&plan)[0], "wait-failover", "{}", plan.render_text());
    let report = env.run(&plan).await;
    succeeded(&report, &plan);
    let waited = report.steps.iter().find(|s| s.id == "wait-failover").unwrap();
    assert!(matches!(&waited.status, StepStatus::Succeeded { detail } if detail.contains(&format!("to {ahead}"))), "{report:#?}");

    let cluster = recreated(&env, 3, &primary, &claim, &node, &report).await;
    assert_eq!(cluster["status"]["currentPrimary"], ahead.as_str(), "the operator's choice, the most advanced replica");
    let promoted = env.standin.postgres(&ahead).expect("the new primary runs");
    assert!(promoted.primary && promoted.timeline == 2, "{promoted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_primary_the_operator_will_not_fail_over_is_promoted_by_lifeboat() {
    let Some((env, cluster)) = env("cnpg-op-stuck", 4, 3, json!({})).await else { return };
    let primary = cluster["status"]["currentPrimary"].as_str().unwrap().to_string();
    // The operator's requests to the instance managers go unanswered (the
    // network between them drops them). With no instance reporting, it
    // never fails over: reconcile stops at AllReadyInstancesStatusUnreachable
    // (cluster_controller.go), and reconcileTargetPrimaryForNonReplicaCluster
    // refuses while its most advanced instance has no status (replicas.go).
    env.standin.set_operator_reachable(false);
    let node = env.node_of(&primary).await;
    let claim = env.pvc_uid(&primary).await.unwrap();
    mark_node_not_ready(&env.client, &node, chrono::Utc::now() - chrono::Duration::minutes(10)).await;
    let stuck = "Instance Status Extraction Error: HTTP communication issue";
    env.until("the operator reports it cannot reach the instances", Duration::from_secs(180), async |env| (env.cluster().await["status"]["phase"] == stuck).then_some(())).await;

    let plan = env.plan().await;
    assert_eq!(ids(&plan)[..2], ["promote", "wait-primary"], "{}", plan.render_text());
    let lifeboat::plan::Action::PromoteCnpg { pod: promote_to, .. } = &plan.steps[0].action else { panic!("{}", plan.render_text()) };
    let promote_to = promote_to.clone();
    let cluster = env.cluster().await;
    assert_eq!(
        (cluster["status"]["currentPrimary"].as_str(), cluster["status"]["targetPrimary"].as_str()),
        (Some(primary.as_str()), Some(primary.as_str())),
        "the operator did not fail over"
    );

    let run = {
        let (client, plan) = (env.client.clone(), plan.clone());
        tokio::spawn(async move {
            let limits = RunLimits { poll_interval: Duration::from_millis(500), ..RunLimits::default() };
            execute(&client, &plan, &plan.hash(), &limits).await
        })
    };
    // The instance manager of promote_to promotes itself (it talks to the apiserver, not to the operator);
    // then the network heals and the operator takes over from the new primary.
    env.until("the promoted instance is the current primary", Duration::from_secs(120), async |env| {
        (env.cluster().await["status"]["currentPrimary"] == promote_to.as_str()).then_some(())
    })
    .await;
    env.standin.set_operator_reachable(true);
    let report = run.await.unwrap();
    succeeded(&report, &plan);

    let cluster = recreated(&env, 3, &primary, &claim, &node, &report).await;
    assert_eq!((cluster["status"]["currentPrimary"].as_str(), cluster["status"]["targetPrimary"].as_str()), (Some(promote_to.as_str()), Some(promote_to.as_str())));
    let labels = env.pod(&promote_to).await.unwrap()["metadata"]["labels"].clone();
    assert_eq!(labels["cnpg.io/instanceRole"], "primary", "the operator labelled the new primary: {labels}");
}
