//! mariadb-instance-lost: pure plans (the shipped example and fixtures for
//! each branch), then end to end on the real apiserver with the real
//! mariadb-operator and Flux CRDs, the test playing mariadb-operator, the
//! StatefulSet controller and the kubelet. Failure paths: a bootstrap that
//! never converges, a node that returns mid-run, a node back before the run.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use kube::api::DeleteParams;
use kube::Client;
use lifeboat::act::runner::{execute, Outcome, RunLimits, StepStatus};
use lifeboat::config::Config;
use lifeboat::plan::playbooks::{mariadb::affected, plan, Trigger};
use lifeboat::plan::{Action, Plan, Precondition, WaitCondition};
use lifeboat::snapshot::Snapshot;
use serde_json::{json, Value};
use support::controlplane::control_plane;
use support::fixtures::*;
use support::k8s::*;

const MDB: &str = "k8s.mariadb.com/v1alpha1";
const KS: &str = "kustomize.toolkit.fluxcd.io/v1";

fn trigger(ns: &str) -> Trigger {
    Trigger { namespace: Some(ns.into()), name: Some("mariadb".into()), node: None }
}

fn ids(plan: &Plan) -> Vec<&str> {
    plan.steps.iter().map(|s| s.id.as_str()).collect()
}

fn pod_status(ready: bool) -> Value {
    let since = "2026-11-25T00:00:00Z";
    json!({"phase": "Running",
           "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}, "lastTransitionTime": since}],
           "containerStatuses": [{"name": "app", "ready": ready, "restartCount": if ready {0} else {7}, "image": "i", "imageID": "",
                                  "state": {"running": {"startedAt": since}}}]})
}

/// Instance `mariadb-i`: its storage-/galera- PVs pinned to `node`, the PVCs, and its pod.
fn instance(ns: &str, i: usize, node: &str, ready: bool) -> Vec<Value> {
    let pod_name = format!("mariadb-{i}");
    let mut objects = vec![];
    for template in ["storage", "galera"] {
        let claim = format!("{template}-{pod_name}");
        let pv = format!("{ns}-{claim}");
        objects.push(pv_pinned(&pv, "kubernetes.io/hostname", node, ns, &claim));
        objects.push(pvc(ns, &claim, &pv, json!({"app.kubernetes.io/instance": "mariadb"})));
    }
    let claims = [format!("storage-{pod_name}"), format!("galera-{pod_name}")];
    let mut p = pod(ns, &pod_name, node, &[&claims[0], &claims[1]], json!({"app.kubernetes.io/instance": "mariadb"}), Some(("StatefulSet", "mariadb")));
    p["status"] = pod_status(ready);
    objects.push(p);
    objects
}

/// A 3-member Galera cluster managed by Kustomization `mariadb-cluster`.
fn mariadb(ns: &str, galera_ready: Option<&str>, recovered: Value) -> Value {
    let mut m = meta(Some(ns), "mariadb");
    m["labels"] = json!({"kustomize.toolkit.fluxcd.io/name": "mariadb-cluster", "kustomize.toolkit.fluxcd.io/namespace": ns});
    let mut conditions = vec![condition("Ready", "False", "StatefulSetNotReady", "2026-11-25T11:20:09Z")];
    if let Some(status) = galera_ready {
        conditions.push(condition("GaleraReady", status, if status == "True" { "GaleraReady" } else { "GaleraNotReady" }, "2026-11-25T11:20:09Z"));
    }
    let mut status = json!({"conditions": conditions, "currentPrimary": "mariadb-1", "currentPrimaryPodIndex": 1, "replicas": 3});
    if !recovered.is_null() {
        status["galeraRecovery"] = json!({"recovered": recovered});
    }
    json!({"apiVersion": MDB, "kind": "MariaDB", "metadata": m,
           "spec": {"replicas": 3, "storage": {"size": "1Gi"}, "rootPasswordSecretKeyRef": {"name": "mariadb", "key": "root-password"},
                    "galera": {"enabled": true, "primary": {"podIndex": 1}, "recovery": {"enabled": true, "minClusterSize": 1}}},
           "status": status})
}

/// mariadb-0 on the lost node `lost`; mariadb-1 and mariadb-2 on `live` with the given readiness.
fn objects(ns: &str, live: &str, lost: &str, survivors_ready: bool, galera_ready: Option<&str>, recovered: Value) -> Vec<Value> {
    let mut all = instance(ns, 0, lost, false);
    all.extend(instance(ns, 1, live, survivors_ready));
    all.extend(instance(ns, 2, live, survivors_ready));
    all.push(mariadb(ns, galera_ready, recovered));
    all.push(kustomization(ns, "mariadb-cluster", false, "True"));
    all
}

mod pure {
    //! Plans are pure: the same state gives the same plan, whatever branch.

    use super::*;
    use lifeboat::cluster::ClusterState;
    use lifeboat::inspect::Findings;

    fn snapshot(objects: Vec<Value>) -> (Arc<ClusterState>, Findings) {
        let mut all = vec![node("live", "True", "2026-11-01T00:00:00Z"), node("dead", "Unknown", "2026-11-25T11:00:00Z")];
        all.extend(objects);
        let snap = Snapshot::build(state("2026-11-25T12:00:00Z", all), &Config::default(), &Default::default());
        (snap.state, snap.findings)
    }

    fn plan_for(objects: Vec<Value>) -> Plan {
        let (state, findings) = snapshot(objects);
        let plan = plan("mariadb-instance-lost", &state, &findings, &trigger("db")).expect("plans");
        plan.validate().unwrap();
        plan
    }

    fn findings_text(plan: &Plan) -> String {
        plan.findings.join("\n")
    }

    fn set(objects: &mut [Value], kind: &str, name: &str, f: impl Fn(&mut Value)) {
        let object = objects.iter_mut().find(|o| o["kind"] == kind && o["metadata"]["name"] == name).unwrap_or_else(|| panic!("no {kind} {name}"));
        f(object);
    }

    #[test]
    fn the_shipped_example_replaces_mariadb_0_from_its_ready_survivors() {
        let (state, _) = lifeboat::cluster::dump::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node-loss")).unwrap();
        let snap = Snapshot::build(state, &Config::default(), &Default::default());
        let plan = plan("mariadb-instance-lost", &snap.state, &snap.findings, &Trigger { namespace: Some("database".into()), name: Some("mariadb".into()), node: None }).unwrap();
        plan.validate().unwrap();
        assert_eq!(
            ids(&plan),
            vec!["delete-pod-mariadb-0", "delete-pvc-storage-mariadb-0", "delete-pvc-galera-mariadb-0", "wait-pod-mariadb-0", "wait-galera-ready", "wait-ready"]
        );
        for step in plan.steps.iter().filter(|s| s.destroys_data()) {
            assert!(matches!(&step.action, Action::DeletePvc { pinned_node, .. } if pinned_node == "node-01-pve"));
            assert!(step.preconditions.contains(&Precondition::NodeStillLost { node: "node-01-pve".into() }));
            assert!(step.preconditions.contains(&Precondition::PodReady { pod: lifeboat::plan::ObjectRef::pod("database", "mariadb-1") }));
            let source = step.recovery_source.as_ref().unwrap();
            assert!(source.description.contains("Galera SST"), "{source:?}");
            assert!(source.evidence.iter().any(|e| e.contains("mariadb-1, mariadb-2")), "{source:?}");
        }
        assert!(plan.steps.iter().all(|s| !matches!(s.action, Action::SuspendFlux { .. } | Action::MergePatch { .. } | Action::TemporaryPatch { .. })), "quorum held: the CR is not touched");
        assert!(matches!(&plan.steps[3].action, Action::Wait { until: WaitCondition::ConditionIs { condition, status }, object, .. }
            if condition == "Ready" && status == "True" && object.kind == "Pod" && object.name == "mariadb-0"));
        assert!(findings_text(&plan).contains("mariadb-0 is on lost node node-01-pve"), "{}", findings_text(&plan));
        // The lead's composed playbook asks which MariaDBs a node loss touches.
        assert_eq!(affected(&snap.state, &snap.findings), vec![Trigger { namespace: Some("database".into()), name: Some("mariadb".into()), node: Some("node-01-pve".into()) }]);
        let rendered = plan.render_text();
        assert!(rendered.contains("kubectl delete pod mariadb-0 -n database --force --grace-period=0"), "{rendered}");
        assert!(rendered.contains("kubectl wait mariadb.k8s.mariadb.com mariadb -n database --for=condition=GaleraReady=True"), "{rendered}");
    }

    #[test]
    fn quorum_loss_bootstraps_from_the_highest_seqno_with_flux_suspended() {
        let recovered = json!({"mariadb-1": {"seqno": 100, "uuid": "u1"}, "mariadb-2": {"seqno": 250, "uuid": "u1"}});
        let plan = plan_for(objects("db", "live", "dead", false, Some("False"), recovered));
        assert_eq!(
            ids(&plan),
            vec![
                "suspend-flux", "force-bootstrap", "wait-bootstrap-pod", "delete-pod-mariadb-0", "delete-pvc-storage-mariadb-0", "delete-pvc-galera-mariadb-0",
                "wait-pod-mariadb-0", "wait-galera-ready", "unset-force-bootstrap", "resume-flux"
            ]
        );
        let text = findings_text(&plan);
        assert!(text.contains("bootstrap pod mariadb-2: highest Galera seqno 250"), "{text}");
        let force = &plan.steps[1];
        assert!(matches!(&force.action, Action::TemporaryPatch { patch, revert, .. }
            if patch["spec"]["galera"]["recovery"]["forceClusterBootstrapInPod"] == "mariadb-2"
            && revert["spec"]["galera"]["recovery"].as_object().unwrap()["forceClusterBootstrapInPod"].is_null()));
        assert_eq!(force.needs, vec!["suspend-flux"]);
        assert!(force.preconditions.contains(&Precondition::NodeStillLost { node: "dead".into() }), "a returning node may hold newer data");
        // Storage goes only once the bootstrapped member is Ready.
        let delete = plan.steps.iter().find(|s| s.id == "delete-pvc-storage-mariadb-0").unwrap();
        assert!(delete.needs.contains(&"wait-bootstrap-pod".to_string()));
        assert!(delete.preconditions.contains(&Precondition::PodReady { pod: lifeboat::plan::ObjectRef::pod("db", "mariadb-2") }));
        assert!(plan.steps.iter().any(|s| s.title.contains("restore from the S3 backup")), "a pointer for when the bootstrap fails");
        let unset = plan.steps.iter().find(|s| s.id == "unset-force-bootstrap").unwrap();
        assert!(matches!(&unset.action, Action::MergePatch { patch, .. } if patch["spec"]["galera"]["recovery"]["forceClusterBootstrapInPod"].is_null()));
        assert_eq!(plan.steps.last().unwrap().needs, vec!["unset-force-bootstrap"]);
    }

    #[test]
    fn seqno_choice_warns_about_unknown_members_and_more_advanced_lost_ones() {
        let recovered = json!({"mariadb-0": {"seqno": 900, "uuid": "u1"}, "mariadb-1": {"seqno": 300, "uuid": "u1"}});
        let plan = plan_for(objects("db", "live", "dead", false, Some("False"), recovered));
        let text = findings_text(&plan);
        assert!(text.contains("bootstrap pod mariadb-1: highest Galera seqno 300"), "{text}");
        assert!(text.contains("no seqno for mariadb-2"), "{text}");
        assert!(text.contains("lost member mariadb-0 reported seqno 900 > 300"), "{text}");
    }

    #[test]
    fn grastate_seqno_counts_when_recovery_did_not_run_and_minus_one_does_not() {
        let mut all = objects("db", "live", "dead", false, Some("False"), Value::Null);
        set(&mut all, "MariaDB", "mariadb", |m| {
            m["status"]["galeraRecovery"] = json!({"state": {
                "mariadb-1": {"seqno": -1, "uuid": "u1", "safeToBootstrap": false, "version": "2.1"},
                "mariadb-2": {"seqno": 42, "uuid": "u1", "safeToBootstrap": false, "version": "2.1"}}});
        });
        let text = findings_text(&plan_for(all));
        assert!(text.contains("bootstrap pod mariadb-2: highest Galera seqno 42") && text.contains("grastate.dat"), "{text}");
    }

    #[test]
    fn without_seqnos_the_original_primary_then_the_configured_one_is_chosen() {
        let plan = plan_for(objects("db", "live", "dead", false, Some("False"), Value::Null));
        assert!(findings_text(&plan).contains("bootstrap pod mariadb-1: no Galera seqno is readable (status.galeraRecovery), so the original primary"), "{}", findings_text(&plan));

        let mut all = objects("db", "live", "dead", false, Some("False"), Value::Null);
        set(&mut all, "MariaDB", "mariadb", |m| {
            m["status"]["currentPrimary"] = json!("mariadb-0");
            m["spec"]["galera"]["primary"]["podIndex"] = json!(2);
        });
        let plan = plan_for(all);
        assert!(findings_text(&plan).contains("bootstrap pod mariadb-2: no Galera seqno is readable and the current primary is not a survivor, so the configured primary"), "{}", findings_text(&plan));
        assert!(matches!(&plan.steps[1].action, Action::TemporaryPatch { patch, .. } if patch["spec"]["galera"]["recovery"]["forceClusterBootstrapInPod"] == "mariadb-2"));
    }

    #[test]
    fn no_safe_bootstrap_choice_plans_nothing() {
        // The primary is the lost member and no seqno is known.
        let mut all = objects("db", "live", "dead", false, Some("False"), Value::Null);
        set(&mut all, "MariaDB", "mariadb", |m| {
            m["status"]["currentPrimary"] = json!("mariadb-0");
            m["spec"]["galera"]["primary"]["podIndex"] = json!(0);
        });
        let plan = plan_for(all);
        assert!(plan.nothing_to_do());
        let text = findings_text(&plan);
        assert!(text.contains("no bootstrap pod can be chosen safely") && text.contains("restore from the S3 backup"), "{text}");
        // Survivors from different cluster histories: seqnos are not comparable.
        let recovered = json!({"mariadb-1": {"seqno": 100, "uuid": "u1"}, "mariadb-2": {"seqno": 250, "uuid": "u2"}});
        let plan = plan_for(objects("db", "live", "dead", false, Some("False"), recovered));
        assert!(plan.nothing_to_do());
        assert!(findings_text(&plan).contains("different cluster UUIDs"), "{}", findings_text(&plan));
    }

    #[test]
    fn no_ready_survivor_without_a_quorum_verdict_deletes_nothing() {
        for galera in [None, Some("True")] {
            let plan = plan_for(objects("db", "live", "dead", false, galera, Value::Null));
            assert!(plan.nothing_to_do(), "{galera:?}: {:#?}", plan.steps);
            let text = findings_text(&plan);
            assert!(text.contains("no evidence that quorum is lost"), "{text}");
        }
    }

    #[test]
    fn every_member_lost_means_restore_from_backup() {
        let mut all = instance("db", 0, "dead", false);
        all.extend(instance("db", 1, "dead", false));
        all.extend(instance("db", 2, "dead", false));
        all.push(mariadb("db", Some("False"), Value::Null));
        let plan = plan_for(all);
        assert!(plan.nothing_to_do());
        let text = findings_text(&plan);
        assert!(text.contains("every instance is on a lost node") && text.contains("kubectl get backups.k8s.mariadb.com -n db"), "{text}");
    }

    #[test]
    fn quorum_loss_without_a_lost_member_still_bootstraps() {
        let mut all = instance("db", 0, "live", false);
        all.extend(instance("db", 1, "live", false));
        all.extend(instance("db", 2, "live", false));
        all.push(mariadb("db", Some("False"), json!({"mariadb-0": {"seqno": 7, "uuid": "u"}, "mariadb-1": {"seqno": 9, "uuid": "u"}, "mariadb-2": {"seqno": 8, "uuid": "u"}})));
        let plan = plan_for(all);
        assert_eq!(ids(&plan), vec!["suspend-flux", "force-bootstrap", "wait-bootstrap-pod", "wait-galera-ready", "unset-force-bootstrap", "resume-flux"]);
        assert!(plan.steps[1].preconditions.is_empty(), "no lost node to re-check");
        assert!(findings_text(&plan).contains("bootstrap pod mariadb-1"));
        // Healthy: nothing to do.
        let mut all = instance("db", 0, "live", true);
        all.extend(instance("db", 1, "live", true));
        all.extend(instance("db", 2, "live", true));
        all.push(mariadb("db", Some("True"), Value::Null));
        assert!(plan_for(all).nothing_to_do());
    }

    #[test]
    fn a_flux_object_already_suspended_by_someone_is_left_alone() {
        let mut all = objects("db", "live", "dead", false, Some("False"), Value::Null);
        set(&mut all, "Kustomization", "mariadb-cluster", |k| k["spec"]["suspend"] = json!(true));
        let plan = plan_for(all);
        assert!(!plan.steps.iter().any(|s| matches!(s.action, Action::SuspendFlux { .. } | Action::ResumeFlux { .. })));
        assert!(findings_text(&plan).contains("already suspended"));
        // A HelmRelease owner is suspended the same way.
        let mut all = objects("db", "live", "dead", false, Some("False"), Value::Null);
        set(&mut all, "MariaDB", "mariadb", |m| m["metadata"]["labels"] = json!({"helm.toolkit.fluxcd.io/name": "mariadb", "helm.toolkit.fluxcd.io/namespace": "db"}));
        let plan = plan_for(all);
        assert!(matches!(&plan.steps[0].action, Action::SuspendFlux { object, keep_suspended: false } if object.kind == "HelmRelease" && object.api_version == "helm.toolkit.fluxcd.io/v2"));
    }

    #[test]
    fn missing_arguments_and_unknown_mariadb_are_errors() {
        let (state, findings) = snapshot(objects("db", "live", "dead", true, Some("True"), Value::Null));
        let err = plan("mariadb-instance-lost", &state, &findings, &Trigger { namespace: Some("db".into()), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("--name"), "{err}");
        let err = plan("mariadb-instance-lost", &state, &findings, &Trigger { namespace: Some("db".into()), name: Some("nope".into()), node: None }).unwrap_err();
        assert_eq!(err.to_string(), "MariaDB db/nope not found in the cluster state");
    }
}

// ---------------------------------------------------------------- live

struct Scene {
    client: Client,
    ns: String,
    live: String,
    dead: String,
}

async fn scene(prefix: &str, survivors_ready: bool, galera_ready: &str, recovered: Value) -> Scene {
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, prefix).await;
    let (live, dead) = (format!("{ns}-live"), format!("{ns}-dead"));
    node_ready(&client, &live).await;
    node_ready(&client, &dead).await;
    for object in objects(&ns, &live, &dead, survivors_ready, Some(galera_ready), recovered) {
        create(&client, object, None).await;
    }
    mark_node_not_ready(&client, &dead, Utc::now() - chrono::Duration::minutes(10)).await;
    Scene { client, ns, live, dead }
}

async fn live_plan(s: &Scene) -> Plan {
    let config = Config { discovery_interval: lifeboat::config::Dur::secs(1), ..Config::default() };
    let snapshot = live_snapshot(&s.client, &config).await;
    plan("mariadb-instance-lost", &snapshot.state, &snapshot.findings, &trigger(&s.ns)).expect("plans")
}

fn fast() -> RunLimits {
    RunLimits { poll_interval: Duration::from_millis(200), ..RunLimits::default() }
}

fn short_waits(plan: &mut Plan) {
    for st in &mut plan.steps {
        if let Action::Wait { timeout_seconds, .. } = &mut st.action {
            *timeout_seconds = 3;
        }
    }
}

async fn force_flag(client: &Client, ns: &str) -> Value {
    get(client, MDB, "MariaDB", Some(ns), "mariadb").await["spec"]["galera"]["recovery"]["forceClusterBootstrapInPod"].clone()
}

async fn flux_suspended(client: &Client, ns: &str) -> bool {
    get(client, KS, "Kustomization", Some(ns), "mariadb-cluster").await["spec"]["suspend"] == true
}

async fn exists(client: &Client, kind: &str, ns: &str, name: &str) -> bool {
    api_for(client, "v1", kind, Some(ns)).await.get_opt(name).await.unwrap().is_some()
}

/// What the test saw mariadb-operator do.
#[derive(Default)]
struct Seen {
    /// (bootstrap pod named by forceClusterBootstrapInPod, Flux suspended at that moment)
    bootstrap: Option<(String, bool)>,
}

#[derive(Clone, Copy, PartialEq)]
enum Galera {
    /// Survivors hold quorum: the lost member is simply re-provisioned.
    Quorum,
    /// Quorum lost: nothing is Ready until a force bootstrap.
    Bootstrap,
    /// Quorum lost and the bootstrap never converges.
    Broken,
}

/// Plays mariadb-operator, the StatefulSet controller, the scheduler and the
/// kubelet: a deleted member pod comes back (Pending while its old PVCs
/// exist, as a StatefulSet re-creates it at once); once its PVCs are gone it
/// gets fresh ones on the live node and turns Ready (SST done). On a force
/// bootstrap the named pod turns Ready, then the other survivors join.
/// GaleraReady and Ready turn True when every member is Ready.
async fn play_operator(client: Client, ns: String, live: String, mode: Galera, seen: Arc<Mutex<Seen>>, mark_node_ready_on_bootstrap: Option<String>) {
    let pods = api_for(&client, "v1", "Pod", Some(&ns)).await;
    let pvcs = api_for(&client, "v1", "PersistentVolumeClaim", Some(&ns)).await;
    let mut bootstrapped = mode == Galera::Quorum;
    let mut generation = 0;
    loop {
        let force = force_flag(&client, &ns).await;
        // With a node to bring back: only once the lost member's old pod is gone,
        // so the node returns after that deletion and before the PVC deletions.
        let old_pod_gone = match &mark_node_ready_on_bootstrap {
            Some(node) => pods.get_opt("mariadb-0").await.unwrap().is_none_or(|p| p.data["spec"]["nodeName"] != node.as_str()),
            None => true,
        };
        if let (Some(pod), false, Galera::Bootstrap, true) = (force.as_str(), bootstrapped, mode, old_pod_gone) {
            let suspended = flux_suspended(&client, &ns).await;
            seen.lock().unwrap().bootstrap = Some((pod.to_string(), suspended));
            if let Some(node) = &mark_node_ready_on_bootstrap {
                mark_node_ready(&client, node).await;
            }
            set_status(&client, "v1", "Pod", Some(&ns), pod, pod_status(true)).await;
            bootstrapped = true;
        } else if let (Some(pod), Galera::Broken) = (force.as_str(), mode) {
            let suspended = flux_suspended(&client, &ns).await;
            seen.lock().unwrap().bootstrap.get_or_insert((pod.to_string(), suspended));
        }
        let mut all_ready = true;
        for i in 0..3 {
            let name = format!("mariadb-{i}");
            let claims = [format!("storage-{name}"), format!("galera-{name}")];
            let claims_gone = pvcs.get_opt(&claims[0]).await.unwrap().is_none() && pvcs.get_opt(&claims[1]).await.unwrap().is_none();
            let current = pods.get_opt(&name).await.unwrap().map(|p| serde_json::to_value(p).unwrap());
            match current {
                None if !claims_gone => {
                    // The StatefulSet re-creates the pod at once; it cannot be scheduled (volume node affinity).
                    let mut p = pod(&ns, &name, "", &[&claims[0], &claims[1]], json!({"app.kubernetes.io/instance": "mariadb"}), Some(("StatefulSet", "mariadb")));
                    p["spec"].as_object_mut().unwrap().remove("nodeName");
                    create(&client, p, None).await;
                    all_ready = false;
                }
                None => {
                    generation += 1;
                    for claim in &claims {
                        let pv = format!("{ns}-{claim}-{generation}");
                        create(&client, pv_pinned(&pv, "kubernetes.io/hostname", &live, &ns, claim), None).await;
                        create(&client, pvc(&ns, claim, &pv, json!({})), None).await;
                    }
                    let mut p = pod(&ns, &name, &live, &[&claims[0], &claims[1]], json!({"app.kubernetes.io/instance": "mariadb"}), Some(("StatefulSet", "mariadb")));
                    p["status"] = pod_status(bootstrapped && mode != Galera::Broken);
                    create(&client, p, None).await;
                    all_ready = false;
                }
                Some(p) if p["spec"]["nodeName"].is_null() && claims_gone => {
                    // Pending on claims that are gone: re-created with new ones.
                    pods.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
                    all_ready = false;
                }
                Some(p) => {
                    let on_live = p["spec"]["nodeName"] == live.as_str();
                    let ready = p["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
                    if on_live && !ready && bootstrapped && mode != Galera::Broken {
                        set_status(&client, "v1", "Pod", Some(&ns), &name, pod_status(true)).await; // joined the cluster
                    }
                    all_ready &= on_live && (ready || (bootstrapped && mode != Galera::Broken));
                }
            }
        }
        if all_ready && mode != Galera::Broken {
            let now = rfc3339(Utc::now());
            set_status(&client, MDB, "MariaDB", Some(&ns), "mariadb", json!({"conditions": [
                condition("Ready", "True", "StatefulSetReady", &now), condition("GaleraReady", "True", "GaleraReady", &now)]})).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn spawn_operator(s: &Scene, mode: Galera, node_back_on_bootstrap: bool) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let node = node_back_on_bootstrap.then(|| s.dead.clone());
    (tokio::spawn(play_operator(s.client.clone(), s.ns.clone(), s.live.clone(), mode, seen.clone(), node)), seen)
}

fn detail(status: &StepStatus) -> String {
    match status {
        StepStatus::Succeeded { detail } => detail.clone(),
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaces_a_lost_member_while_the_survivors_hold_quorum() {
    let s = scene("mdb-e2e", true, "True", Value::Null).await;
    let plan = live_plan(&s).await;
    assert_eq!(ids(&plan), vec!["delete-pod-mariadb-0", "delete-pvc-storage-mariadb-0", "delete-pvc-galera-mariadb-0", "wait-pod-mariadb-0", "wait-galera-ready", "wait-ready"]);
    let (operator, _) = spawn_operator(&s, Galera::Quorum, false);
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    operator.abort();
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:#?}");

    // The member is back on the live node with fresh storage; the survivors' storage is untouched.
    let member = get(&s.client, "v1", "Pod", Some(&s.ns), "mariadb-0").await;
    assert_eq!(member["spec"]["nodeName"], s.live.as_str());
    for claim in ["storage-mariadb-0", "galera-mariadb-0"] {
        let c = get(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns), claim).await;
        assert_ne!(c["spec"]["volumeName"], format!("{}-{claim}", s.ns), "{claim} is a new claim");
    }
    for claim in ["storage-mariadb-1", "galera-mariadb-1", "storage-mariadb-2", "galera-mariadb-2"] {
        let c = get(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns), claim).await;
        assert_eq!(c["spec"]["volumeName"], format!("{}-{claim}", s.ns));
    }
    let mdb = get(&s.client, MDB, "MariaDB", Some(&s.ns), "mariadb").await;
    assert!(mdb["spec"]["galera"]["recovery"].get("forceClusterBootstrapInPod").is_none(), "quorum held: no bootstrap");
    assert!(!flux_suspended(&s.client, &s.ns).await);
    assert!(detail(&report.steps[4].status).contains("GaleraReady=True"), "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_loss_force_bootstraps_from_the_highest_seqno_then_unsets_and_resumes_flux() {
    let recovered = json!({"mariadb-1": {"seqno": 1200, "uuid": "c0ffee"}, "mariadb-2": {"seqno": 1250, "uuid": "c0ffee"}});
    let s = scene("mdb-quorum", false, "False", recovered).await;
    let plan = live_plan(&s).await;
    assert!(plan.findings.iter().any(|f| f.contains("bootstrap pod mariadb-2: highest Galera seqno 1250")), "{:#?}", plan.findings);
    assert_eq!(plan.steps[0].id, "suspend-flux");
    let (operator, seen) = spawn_operator(&s, Galera::Bootstrap, false);
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    operator.abort();
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:#?}");

    let (pod, suspended) = seen.lock().unwrap().bootstrap.clone().expect("the operator saw a force bootstrap");
    assert_eq!(pod, "mariadb-2", "the member with the highest seqno");
    assert!(suspended, "Flux was suspended while forceClusterBootstrapInPod was set");
    let mdb = get(&s.client, MDB, "MariaDB", Some(&s.ns), "mariadb").await;
    assert!(mdb["spec"]["galera"]["recovery"].get("forceClusterBootstrapInPod").is_none(), "unset after the bootstrap: {}", mdb["spec"]);
    assert_eq!(mdb["spec"]["galera"]["recovery"]["enabled"], true, "the rest of the spec is untouched");
    assert!(!flux_suspended(&s.client, &s.ns).await, "Flux resumed");
    assert!(report.flux_left_suspended.is_empty());
    assert!(report.reason.is_none(), "the explicit step unset it; nothing left for the runner to revert: {report:#?}");
    assert_eq!(get(&s.client, "v1", "Pod", Some(&s.ns), "mariadb-0").await["spec"]["nodeName"], s.live.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_that_never_converges_stops_unsets_the_flag_resumes_flux_and_points_to_the_backup() {
    let recovered = json!({"mariadb-1": {"seqno": 5, "uuid": "c0ffee"}, "mariadb-2": {"seqno": 3, "uuid": "c0ffee"}});
    let s = scene("mdb-broken", false, "False", recovered).await;
    let mut plan = live_plan(&s).await;
    short_waits(&mut plan);
    let (operator, seen) = spawn_operator(&s, Galera::Broken, false);
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    operator.abort();
    assert_eq!(report.outcome, Outcome::Stopped, "{report:#?}");
    assert_eq!(seen.lock().unwrap().bootstrap.clone(), Some(("mariadb-1".to_string(), true)), "bootstrap was requested from mariadb-1 with Flux suspended");
    let wait = report.steps.iter().find(|st| st.id == "wait-bootstrap-pod").unwrap();
    assert!(matches!(&wait.status, StepStatus::Failed { error } if error.contains("timed out") && error.contains("Ready=False")), "{report:#?}");
    let reason = report.reason.clone().unwrap();
    assert!(reason.contains("restore from the S3 backup") && reason.contains("backups.k8s.mariadb.com"), "{reason}");
    assert!(reason.contains("reverted the temporary patch"), "{reason}");
    // Never left set (LifeboatMariadbForceBootstrapLeftSet), Flux running again, no storage deleted.
    assert!(force_flag(&s.client, &s.ns).await.is_null());
    assert!(!flux_suspended(&s.client, &s.ns).await);
    for claim in ["storage-mariadb-0", "galera-mariadb-0"] {
        assert!(exists(&s.client, "PersistentVolumeClaim", &s.ns, claim).await, "{claim} kept");
    }
    let not_run: Vec<&str> = report.steps.iter().filter(|st| st.status == StepStatus::NotRun).map(|st| st.id.as_str()).collect();
    assert_eq!(not_run, vec!["delete-pvc-storage-mariadb-0", "delete-pvc-galera-mariadb-0", "wait-pod-mariadb-0", "wait-galera-ready", "unset-force-bootstrap", "resume-flux"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_returns_mid_run_stops_the_pvc_deletions() {
    let recovered = json!({"mariadb-1": {"seqno": 10, "uuid": "c0ffee"}, "mariadb-2": {"seqno": 20, "uuid": "c0ffee"}});
    let s = scene("mdb-node-back", false, "False", recovered).await;
    let plan = live_plan(&s).await;
    // The lost node comes back while the bootstrap runs.
    let (operator, seen) = spawn_operator(&s, Galera::Bootstrap, true);
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    operator.abort();
    assert!(seen.lock().unwrap().bootstrap.is_some());
    assert_eq!(report.outcome, Outcome::Stopped, "{report:#?}");
    for id in ["delete-pvc-storage-mariadb-0", "delete-pvc-galera-mariadb-0"] {
        let st = report.steps.iter().find(|st| st.id == id).unwrap();
        assert!(matches!(&st.status, StepStatus::Refused { reason } if reason.contains("still missing or not Ready")), "{report:#?}");
    }
    for claim in ["storage-mariadb-0", "galera-mariadb-0"] {
        let c = get(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns), claim).await;
        assert_eq!(c["spec"]["volumeName"], format!("{}-{claim}", s.ns), "{claim}: the original claim is kept");
        assert!(c["metadata"]["deletionTimestamp"].is_null());
    }
    assert!(force_flag(&s.client, &s.ns).await.is_null(), "the runner unset the bootstrap flag");
    assert!(!flux_suspended(&s.client, &s.ns).await, "and resumed Flux");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_before_the_run_refuses_everything() {
    let s = scene("mdb-node-early", true, "True", Value::Null).await;
    let plan = live_plan(&s).await;
    mark_node_ready(&s.client, &s.dead).await;
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    assert_eq!(report.outcome, Outcome::Stopped);
    assert!(matches!(&report.steps[0].status, StepStatus::Refused { reason } if reason.contains("still missing or not Ready")), "{report:#?}");
    assert!(report.steps[1..].iter().all(|st| st.status == StepStatus::NotRun));
    assert!(exists(&s.client, "Pod", &s.ns, "mariadb-0").await);
    assert!(exists(&s.client, "PersistentVolumeClaim", &s.ns, "storage-mariadb-0").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_created_unscheduled_pod_does_not_hold_the_old_pvc_but_a_scheduled_one_does() {
    use lifeboat::plan::{ObjectRef, RecoverySource, Step};
    let s = scene("mdb-protect", true, "True", Value::Null).await;
    let step = |claim: &str| Step {
        id: format!("delete-pvc-{claim}"),
        title: format!("Delete PVC {claim}"),
        action: Action::DeletePvc { pvc: ObjectRef::pvc(&s.ns, claim), pinned_node: s.dead.clone() },
        needs: vec![],
        preconditions: vec![],
        recovery_source: Some(RecoverySource { description: "Galera SST".into(), evidence: vec![] }),
    };
    let run = |claim: &str| Plan { steps: vec![step(claim)], ..Plan::new("test", "test") };
    let pvcs = api_for(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns)).await;
    assert!(get(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns), "storage-mariadb-0").await["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "kubernetes.io/pvc-protection")), "the apiserver protects claims");

    // The runner clears finalizers with the claim's uid in the patch: on a
    // claim re-created under the same name the apiserver refuses it.
    let other_uid = json!({"metadata": {"uid": "00000000-0000-0000-0000-000000000000", "finalizers": null}});
    let refused = pvcs.patch("storage-mariadb-1", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&other_uid)).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(!get(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns), "storage-mariadb-1").await["metadata"]["finalizers"].is_null());

    // The dead node's pod is scheduled: the claim stays protected (Terminating), as the pvc-protection controller would keep it.
    let plan = run("galera-mariadb-0");
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    assert!(matches!(&report.steps[0].status, StepStatus::Failed { error } if error.contains("still present")), "{report:#?}");
    assert!(pvcs.get_opt("galera-mariadb-0").await.unwrap().is_some());

    // Force-deleted and re-created by the StatefulSet, unschedulable: it does not hold the claim.
    api_for(&s.client, "v1", "Pod", Some(&s.ns)).await.delete("mariadb-0", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    let mut pending = pod(&s.ns, "mariadb-0", "", &["storage-mariadb-0", "galera-mariadb-0"], json!({}), Some(("StatefulSet", "mariadb")));
    pending["spec"].as_object_mut().unwrap().remove("nodeName");
    create(&s.client, pending, None).await;
    for claim in ["storage-mariadb-0", "galera-mariadb-0"] {
        let plan = run(claim);
        let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
        assert_eq!(report.outcome, Outcome::Succeeded, "{report:#?}");
        assert!(pvcs.get_opt(claim).await.unwrap().is_none(), "{claim} deleted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_donor_whose_ready_condition_dropped_stops_the_pvc_deletions() {
    let s = scene("mdb-donor", true, "True", Value::Null).await;
    let plan = live_plan(&s).await;
    // mariadb-1's node just died too: the node controller flips its Ready
    // condition, the kubelet's last container statuses still say ready.
    set_status(&s.client, "v1", "Pod", Some(&s.ns), "mariadb-1", json!({"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": rfc3339(Utc::now())}]})).await;
    assert_eq!(get(&s.client, "v1", "Pod", Some(&s.ns), "mariadb-1").await["status"]["containerStatuses"][0]["ready"], true);
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    assert_eq!(report.outcome, Outcome::Stopped);
    assert!(matches!(&report.steps[0].status, StepStatus::Succeeded { .. }), "{report:#?}");
    for st in &report.steps[1..3] {
        assert!(matches!(&st.status, StepStatus::Refused { reason } if reason.contains("mariadb-1 is Ready")), "{report:#?}");
    }
    assert!(exists(&s.client, "PersistentVolumeClaim", &s.ns, "storage-mariadb-0").await);
    assert!(exists(&s.client, "PersistentVolumeClaim", &s.ns, "galera-mariadb-0").await);
}
