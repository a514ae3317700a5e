//! mariadb-instance-lost: pure plans (the shipped example and fixtures for
//! each branch), then end to end on the real apiserver with the real
//! mariadb-operator and Flux CRDs, the test playing mariadb-operator, the
//! StatefulSet controller and the kubelet. Failure paths: a bootstrap that
//! never converges, a node that returns mid-run, a node back before the run.

mod support;

use std::collections::BTreeMap;
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
use support::galera::{Galera, View as GaleraView};
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
    let mut conditions =
        vec![condition("Ready", "False", "StatefulSetNotReady", "2026-11-25T11:20:09Z"), condition("GaleraConfigured", "True", "GaleraConfigured", "2025-12-20T14:02:52Z")];
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

/// Turns mariadb-operator's own Galera recovery off (`spec.galera.recovery.enabled: false`).
fn recovery_off(objects: &mut [Value]) {
    for o in objects.iter_mut().filter(|o| o["kind"] == "MariaDB") {
        o["spec"]["galera"]["recovery"]["enabled"] = json!(false);
    }
}

fn with_recovery_off(mut objects: Vec<Value>) -> Vec<Value> {
    recovery_off(&mut objects);
    objects
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
        assert!(
            plan.steps.iter().all(|s| !matches!(s.action, Action::SuspendFlux { .. } | Action::MergePatch { .. } | Action::TemporaryPatch { .. })),
            "quorum held: the CR is not touched"
        );
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
    fn quorum_loss_with_the_operators_recovery_on_deletes_the_lost_storage_first_and_forces_nothing() {
        // mariadb-operator picks a bootstrap pod only once every member reports a seqno,
        // and mariadb-0 (Pending on a claim pinned to the lost node) never does.
        let recovered = json!({"mariadb-1": {"seqno": 100, "uuid": "u1"}, "mariadb-2": {"seqno": 250, "uuid": "u1"}});
        let plan = plan_for(objects("db", "live", "dead", false, Some("False"), recovered));
        assert_eq!(
            ids(&plan),
            vec!["delete-pod-mariadb-0", "delete-pvc-storage-mariadb-0", "delete-pvc-galera-mariadb-0", "wait-pod-mariadb-0", "wait-galera-ready", "wait-ready"]
        );
        assert!(
            plan.steps.iter().all(|s| !matches!(s.action, Action::SuspendFlux { .. } | Action::MergePatch { .. } | Action::TemporaryPatch { .. })),
            "the operator's recovery is on and not stuck: the CR is not touched"
        );
        for step in plan.steps.iter().filter(|s| s.destroys_data()) {
            assert_eq!(step.needs, vec!["delete-pod-mariadb-0"], "no wait comes before the storage goes");
            assert_eq!(step.preconditions, vec![Precondition::NodeStillLost { node: "dead".into() }]);
            let source = step.recovery_source.as_ref().unwrap();
            assert!(source.description.contains("mariadb-1, mariadb-2") && source.evidence.iter().any(|e| e.contains("mariadb-2") && e.contains("seqno 250")), "{source:?}");
        }
        let text = findings_text(&plan);
        assert!(text.contains("recovery (spec.galera.recovery.enabled) is on") && text.contains("lifeboat does not force a bootstrap"), "{text}");
        let wait = plan.steps.iter().find(|s| s.id == "wait-galera-ready").unwrap();
        assert!(matches!(&wait.action, Action::Wait { timeout_seconds, .. } if *timeout_seconds >= 300 + 600 + 3 * 300), "the operator's own bounds: {wait:?}");
        assert!(wait.title.contains("plan again") && wait.title.contains("clusterBootstrapTimeout (600s)"), "{}", wait.title);
    }

    #[test]
    fn quorum_loss_with_the_recovery_off_turns_it_on_with_the_highest_seqno_after_the_lost_storage_is_gone() {
        let recovered = json!({"mariadb-1": {"seqno": 100, "uuid": "u1"}, "mariadb-2": {"seqno": 250, "uuid": "u1"}});
        let plan = plan_for(with_recovery_off(objects("db", "live", "dead", false, Some("True"), recovered)));
        assert_eq!(
            ids(&plan),
            vec![
                "suspend-flux",
                "delete-pod-mariadb-0",
                "delete-pvc-storage-mariadb-0",
                "delete-pvc-galera-mariadb-0",
                "force-bootstrap",
                "wait-bootstrap-pod",
                "wait-pod-mariadb-0",
                "wait-galera-ready",
                "unset-force-bootstrap",
                "resume-flux"
            ]
        );
        let text = findings_text(&plan);
        assert!(text.contains("bootstrap pod mariadb-2: highest Galera seqno 250"), "{text}");
        assert!(text.contains("quorum lost: the survivors mariadb-1, mariadb-2 run but none is Ready"), "{text}");
        assert!(text.contains("acts on forceClusterBootstrapInPod only inside that recovery"), "{text}");
        let force = plan.steps.iter().find(|s| s.id == "force-bootstrap").unwrap();
        assert!(
            matches!(&force.action, Action::TemporaryPatch { patch, revert, .. }
            if patch["spec"]["galera"]["recovery"] == json!({"enabled": true, "forceClusterBootstrapInPod": "mariadb-2"})
            && revert["spec"]["galera"]["recovery"] == json!({"enabled": false, "forceClusterBootstrapInPod": null})),
            "{force:?}"
        );
        assert_eq!(force.needs, vec!["suspend-flux", "delete-pvc-storage-mariadb-0", "delete-pvc-galera-mariadb-0"], "the lost member's storage goes before the bootstrap");
        assert!(force.preconditions.contains(&Precondition::NodeStillLost { node: "dead".into() }), "a returning node may hold newer data");
        for id in ["delete-pvc-storage-mariadb-0", "delete-pvc-galera-mariadb-0"] {
            let delete = plan.steps.iter().find(|s| s.id == id).unwrap();
            assert_eq!(delete.needs, vec!["delete-pod-mariadb-0"]);
            assert_eq!(delete.preconditions, vec![Precondition::NodeStillLost { node: "dead".into() }]);
        }
        assert!(plan.steps.iter().any(|s| s.title.contains("restore from the S3 backup")), "a pointer for when the bootstrap fails");
        let unset = plan.steps.iter().find(|s| s.id == "unset-force-bootstrap").unwrap();
        assert!(matches!(&unset.action, Action::MergePatch { patch, .. } if patch["spec"]["galera"]["recovery"] == json!({"enabled": false, "forceClusterBootstrapInPod": null})));
        assert_eq!(plan.steps.last().unwrap().needs, vec!["unset-force-bootstrap"]);
    }

    #[test]
    fn a_stuck_operator_recovery_is_forced_and_one_in_progress_is_left_alone() {
        // No member on a lost node; GaleraReady False since 11:20, the plan is made at 12:00.
        let all_live = |recovery: Value| {
            let mut all = instance("db", 0, "live", false);
            all.extend(instance("db", 1, "live", false));
            all.extend(instance("db", 2, "live", false));
            let mut m = mariadb("db", Some("False"), Value::Null);
            m["status"]["galeraRecovery"] = recovery;
            all.push(m);
            all
        };
        let positions = json!({"mariadb-0": {"seqno": 7, "uuid": "u"}, "mariadb-1": {"seqno": 9, "uuid": "u"}, "mariadb-2": {"seqno": 8, "uuid": "u"}});
        let plan = plan_for(all_live(json!({"recovered": positions})));
        assert_eq!(ids(&plan), vec!["suspend-flux", "force-bootstrap", "wait-bootstrap-pod", "wait-galera-ready", "unset-force-bootstrap", "resume-flux"]);
        let text = findings_text(&plan);
        assert!(
            text.contains("the operator's recovery is stuck: GaleraReady has been False for 2391s (longer than clusterBootstrapTimeout, 600s) and no bootstrap pod was chosen"),
            "{text}"
        );
        assert!(text.contains("bootstrap pod mariadb-1"), "{text}");
        assert!(
            matches!(&plan.steps[1].action, Action::TemporaryPatch { patch, .. } if patch["spec"]["galera"]["recovery"] == json!({"forceClusterBootstrapInPod": "mariadb-1"})),
            "the recovery is already on"
        );
        assert!(plan.steps[1].preconditions.is_empty(), "no lost node to re-check");

        // A bootstrap the operator started five minutes ago is in progress: not stuck.
        let plan = plan_for(all_live(json!({"recovered": positions, "bootstrap": {"time": "2026-11-25T11:55:00Z", "pod": "mariadb-1"}})));
        assert!(plan.nothing_to_do(), "{:#?}", plan.steps);
        assert!(findings_text(&plan).contains("not stuck: it started bootstrapping from mariadb-1 300s ago"), "{}", findings_text(&plan));
        // One that should have been reset long ago: stuck.
        let plan = plan_for(all_live(json!({"recovered": positions, "bootstrap": {"time": "2026-11-25T11:30:00Z", "pod": "mariadb-1"}})));
        assert!(findings_text(&plan).contains("stuck: its bootstrap from mariadb-1 started 1800s ago"), "{}", findings_text(&plan));
        assert_eq!(plan.steps[1].id, "force-bootstrap");
        // GaleraReady False for less than clusterBootstrapTimeout (set to 1h here): still collecting seqnos.
        let mut all = all_live(Value::Null);
        set(&mut all, "MariaDB", "mariadb", |m| m["spec"]["galera"]["recovery"]["clusterBootstrapTimeout"] = json!("1h0m0s"));
        let plan = plan_for(all);
        assert!(plan.nothing_to_do());
        assert!(findings_text(&plan).contains("not longer than clusterBootstrapTimeout (3600s)"), "{}", findings_text(&plan));
        // Healthy: nothing to do.
        let mut all = instance("db", 0, "live", true);
        all.extend(instance("db", 1, "live", true));
        all.extend(instance("db", 2, "live", true));
        all.push(mariadb("db", Some("True"), Value::Null));
        assert!(plan_for(all).nothing_to_do());
    }

    #[test]
    fn a_mariadb_without_galera_is_never_deleted_and_triage_says_so_too() {
        let mut all = instance("db", 0, "dead", false);
        let mut m = mariadb("db", None, Value::Null);
        m["spec"]["replicas"] = json!(1);
        m["spec"].as_object_mut().unwrap().remove("galera");
        all.push(m);
        let plan = plan_for(all.clone());
        assert!(plan.nothing_to_do(), "{:#?}", plan.steps);
        let text = findings_text(&plan);
        assert!(text.contains("does not run Galera") && text.contains("no other copy") && text.contains("kubectl get backups.k8s.mariadb.com -n db"), "{text}");

        let (state, findings) = snapshot(all);
        let report = lifeboat::triage::triage(&state, &findings, None);
        let mariadb = report.workloads.iter().find(|w| w.workload == "MariaDB mariadb (instance mariadb-0)").expect("triage lists the instance");
        assert!(!mariadb.action.contains("delete the storage"), "{mariadb:?}");
        assert!(mariadb.action.contains("do NOT delete its PVCs") && mariadb.action.contains("S3 backup"), "{mariadb:?}");
        assert!(mariadb.recovery_source.contains("single instance") && !mariadb.recovery_source.contains("Galera peers"), "{mariadb:?}");
    }

    #[test]
    fn seqno_choice_warns_about_unknown_members_and_more_advanced_lost_ones() {
        let recovered = json!({"mariadb-0": {"seqno": 900, "uuid": "u1"}, "mariadb-1": {"seqno": 300, "uuid": "u1"}});
        let plan = plan_for(with_recovery_off(objects("db", "live", "dead", false, Some("False"), recovered)));
        let text = findings_text(&plan);
        assert!(text.contains("bootstrap pod mariadb-1: highest Galera seqno 300"), "{text}");
        assert!(text.contains("no seqno for mariadb-2"), "{text}");
        assert!(text.contains("lost member mariadb-0 reported seqno 900 > 300"), "{text}");
    }

    #[test]
    fn grastate_seqno_counts_when_recovery_did_not_run_and_minus_one_does_not() {
        let mut all = with_recovery_off(objects("db", "live", "dead", false, Some("False"), Value::Null));
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
        let plan = plan_for(with_recovery_off(objects("db", "live", "dead", false, Some("False"), Value::Null)));
        assert!(findings_text(&plan).contains("bootstrap pod mariadb-1: no Galera seqno is readable (status.galeraRecovery), so the original primary"), "{}", findings_text(&plan));

        let mut all = with_recovery_off(objects("db", "live", "dead", false, Some("False"), Value::Null));
        set(&mut all, "MariaDB", "mariadb", |m| {
            m["status"]["currentPrimary"] = json!("mariadb-0");
            m["spec"]["galera"]["primary"]["podIndex"] = json!(2);
        });
        let plan = plan_for(all);
        assert!(
            findings_text(&plan).contains("bootstrap pod mariadb-2: no Galera seqno is readable and the current primary is not a survivor, so the configured primary"),
            "{}",
            findings_text(&plan)
        );
        let force = plan.steps.iter().find(|s| s.id == "force-bootstrap").unwrap();
        assert!(matches!(&force.action, Action::TemporaryPatch { patch, .. } if patch["spec"]["galera"]["recovery"]["forceClusterBootstrapInPod"] == "mariadb-2"));
    }

    #[test]
    fn no_safe_bootstrap_choice_plans_nothing() {
        // The primary is the lost member and no seqno is known.
        let mut all = with_recovery_off(objects("db", "live", "dead", false, Some("False"), Value::Null));
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
        let plan = plan_for(with_recovery_off(objects("db", "live", "dead", false, Some("False"), recovered)));
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
    fn a_flux_object_already_suspended_by_someone_is_left_alone() {
        let mut all = with_recovery_off(objects("db", "live", "dead", false, Some("False"), Value::Null));
        set(&mut all, "Kustomization", "mariadb-cluster", |k| k["spec"]["suspend"] = json!(true));
        let plan = plan_for(all);
        assert!(!plan.steps.iter().any(|s| matches!(s.action, Action::SuspendFlux { .. } | Action::ResumeFlux { .. })));
        assert!(findings_text(&plan).contains("already suspended"));
        // A HelmRelease owner is suspended the same way.
        let mut all = with_recovery_off(objects("db", "live", "dead", false, Some("False"), Value::Null));
        set(&mut all, "MariaDB", "mariadb", |m| m["metadata"]["labels"] = json!({"helm.toolkit.fluxcd.io/name": "mariadb", "helm.toolkit.fluxcd.io/namespace": "db"}));
        let plan = plan_for(all);
        assert!(
            matches!(&plan.steps[0].action, Action::SuspendFlux { object, keep_suspended: false } if object.kind == "HelmRelease" && object.api_version == "helm.toolkit.fluxcd.io/v2")
        );
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
    scene_with(prefix, survivors_ready, galera_ready, recovered, true).await
}

/// `recovery`: mariadb-operator's own Galera recovery on or off.
async fn scene_with(prefix: &str, survivors_ready: bool, galera_ready: &str, recovered: Value, recovery: bool) -> Scene {
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, prefix).await;
    let (live, dead) = (format!("{ns}-live"), format!("{ns}-dead"));
    node_ready(&client, &live).await;
    node_ready(&client, &dead).await;
    let mut all = objects(&ns, &live, &dead, survivors_ready, Some(galera_ready), recovered);
    if !recovery {
        recovery_off(&mut all);
    }
    for object in all {
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

async fn flux_suspended(client: &Client, ns: &str) -> bool {
    get(client, KS, "Kustomization", Some(ns), "mariadb-cluster").await["spec"]["suspend"] == true
}

async fn exists(client: &Client, kind: &str, ns: &str, name: &str) -> bool {
    api_for(client, "v1", kind, Some(ns)).await.get_opt(name).await.unwrap().is_some()
}

/// What the test saw mariadb-operator do.
#[derive(Default)]
struct Seen {
    /// (bootstrap pod, forced by forceClusterBootstrapInPod, Flux suspended at that moment)
    bootstrap: Option<(String, bool, bool)>,
    /// forceClusterBootstrapInPod was set at some point.
    force_ever_set: bool,
}

/// The Galera data on the scene's original volumes: mariadb-N's seqno.
fn disks(ns: &str, seqnos: &[(usize, i64)]) -> Galera {
    let disks = seqnos.iter().map(|(i, seqno)| (format!("{ns}-storage-mariadb-{i}"), ("c0ffee".to_string(), *seqno))).collect();
    Galera { disks, broken: None }
}

/// Plays the StatefulSet controller, the scheduler and the kubelet for the
/// three members — a deleted member pod comes back at once, Pending while its
/// old PVCs exist; once they are gone it gets fresh ones on the live node and
/// runs (not Ready until Galera syncs it) — and mariadb-operator with the
/// Galera player (support/galera.rs, mariadb-operator v25.10.4).
async fn play_operator(client: Client, ns: String, live: String, galera: Galera, seen: Arc<Mutex<Seen>>) {
    let pods = api_for(&client, "v1", "Pod", Some(&ns)).await;
    let pvcs = api_for(&client, "v1", "PersistentVolumeClaim", Some(&ns)).await;
    let mut generation = 0;
    loop {
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
                }
                None => {
                    generation += 1;
                    for claim in &claims {
                        let pv = format!("{ns}-{claim}-{generation}");
                        create(&client, pv_pinned(&pv, "kubernetes.io/hostname", &live, &ns, claim), None).await;
                        create(&client, pvc(&ns, claim, &pv, json!({})), None).await;
                    }
                    let mut p = pod(&ns, &name, &live, &[&claims[0], &claims[1]], json!({"app.kubernetes.io/instance": "mariadb"}), Some(("StatefulSet", "mariadb")));
                    p["status"] = pod_status(false);
                    create(&client, p, None).await;
                }
                Some(p) if p["spec"]["nodeName"].is_null() && claims_gone => {
                    // Pending on claims that are gone: re-created with new ones.
                    pods.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
                }
                Some(_) => {}
            }
        }
        let mdb = get(&client, MDB, "MariaDB", Some(&ns), "mariadb").await;
        seen.lock().unwrap().force_ever_set |= mdb["spec"]["galera"]["recovery"]["forceClusterBootstrapInPod"].is_string();
        let pod_list: Vec<Value> = pods.list(&Default::default()).await.unwrap().items.into_iter().map(|p| serde_json::to_value(p).unwrap()).collect();
        let claims: BTreeMap<String, String> = pvcs
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|c| Some((c.metadata.name.clone()?, c.data["spec"]["volumeName"].as_str()?.to_string())))
            .collect();
        let nodes = api_for(&client, "v1", "Node", None).await.list(&Default::default()).await.unwrap().items;
        let nodes_ready: BTreeMap<String, bool> = nodes
            .into_iter()
            .map(|n| {
                let ready = n.data["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
                (n.metadata.name.unwrap_or_default(), ready)
            })
            .collect();
        let view = GaleraView { pods: &pod_list, claims: &claims, nodes_ready: &nodes_ready };
        if let Some((pod, forced)) = galera.tick(&client, &mdb, &view).await.bootstrap_started {
            let suspended = flux_suspended(&client, &ns).await;
            seen.lock().unwrap().bootstrap.get_or_insert((pod, forced, suspended));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn spawn_operator(s: &Scene, galera: Galera) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    (tokio::spawn(play_operator(s.client.clone(), s.ns.clone(), s.live.clone(), galera, seen.clone())), seen)
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
    let (operator, _) = spawn_operator(&s, disks(&s.ns, &[(0, 10), (1, 10), (2, 10)]));
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
async fn quorum_loss_with_the_operators_recovery_on_is_left_to_it_once_the_lost_storage_is_gone() {
    // The operator's health check already cleared status.galeraRecovery.
    let s = scene("mdb-recovery", false, "False", Value::Null).await;
    let (operator, seen) = spawn_operator(&s, disks(&s.ns, &[(0, 1300), (1, 1200), (2, 1250)]));
    // The operator collects the survivors' seqnos but cannot choose a bootstrap pod:
    // mariadb-0 is Pending on a claim pinned to the lost node and reports none.
    let recovery = loop {
        let mdb = get(&s.client, MDB, "MariaDB", Some(&s.ns), "mariadb").await;
        let recovery = mdb["status"]["galeraRecovery"].clone();
        if !recovery["recovered"]["mariadb-1"].is_null() && !recovery["recovered"]["mariadb-2"].is_null() {
            break recovery;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(recovery["bootstrap"].is_null() && recovery["recovered"]["mariadb-0"].is_null(), "{recovery}");
    // lifeboat plans from what the operator reported.
    let plan = live_plan(&s).await;
    assert_eq!(ids(&plan), vec!["delete-pod-mariadb-0", "delete-pvc-storage-mariadb-0", "delete-pvc-galera-mariadb-0", "wait-pod-mariadb-0", "wait-galera-ready", "wait-ready"]);
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    operator.abort();
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:#?}");

    let (bootstrap, force_ever_set) = {
        let seen = seen.lock().unwrap();
        (seen.bootstrap.clone(), seen.force_ever_set)
    };
    assert_eq!(bootstrap, Some(("mariadb-2".to_string(), false, false)), "the operator chose the most advanced survivor itself");
    assert!(!force_ever_set, "lifeboat never set forceClusterBootstrapInPod while the operator's recovery was on");
    let mdb = get(&s.client, MDB, "MariaDB", Some(&s.ns), "mariadb").await;
    assert_eq!(mdb["spec"]["galera"]["recovery"], json!({"enabled": true, "minClusterSize": 1}), "the spec is untouched");
    assert_eq!(mdb["status"]["galeraRecovery"]["podsRestarted"], true, "{}", mdb["status"]);
    assert!(!flux_suspended(&s.client, &s.ns).await);
    assert_eq!(get(&s.client, "v1", "Pod", Some(&s.ns), "mariadb-0").await["spec"]["nodeName"], s.live.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_loss_with_the_recovery_off_turns_it_on_to_force_the_bootstrap_then_off_again() {
    // With its recovery off the operator never reports the lost quorum: GaleraReady stays True.
    let recovered = json!({"mariadb-1": {"seqno": 1200, "uuid": "c0ffee"}, "mariadb-2": {"seqno": 1250, "uuid": "c0ffee"}});
    let s = scene_with("mdb-quorum", false, "True", recovered, false).await;
    let plan = live_plan(&s).await;
    assert!(plan.findings.iter().any(|f| f.contains("bootstrap pod mariadb-2: highest Galera seqno 1250")), "{:#?}", plan.findings);
    assert_eq!(plan.steps[0].id, "suspend-flux");
    let (operator, seen) = spawn_operator(&s, disks(&s.ns, &[(0, 1300), (1, 1200), (2, 1250)]));
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    operator.abort();
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:#?}");

    let (pod, forced, suspended) = seen.lock().unwrap().bootstrap.clone().expect("the operator saw a force bootstrap");
    assert_eq!(pod, "mariadb-2", "the member with the highest seqno");
    assert!(forced && suspended, "forced, with Flux suspended");
    let mdb = get(&s.client, MDB, "MariaDB", Some(&s.ns), "mariadb").await;
    assert_eq!(mdb["spec"]["galera"]["recovery"], json!({"enabled": false, "minClusterSize": 1}), "field unset, recovery back off: {}", mdb["spec"]);
    assert!(!flux_suspended(&s.client, &s.ns).await, "Flux resumed");
    assert!(report.flux_left_suspended.is_empty());
    assert!(report.reason.is_none(), "the explicit step restored it; nothing left for the runner to revert: {report:#?}");
    assert_eq!(get(&s.client, "v1", "Pod", Some(&s.ns), "mariadb-0").await["spec"]["nodeName"], s.live.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_that_never_converges_stops_restores_the_recovery_settings_resumes_flux_and_points_to_the_backup() {
    let recovered = json!({"mariadb-1": {"seqno": 5, "uuid": "c0ffee"}, "mariadb-2": {"seqno": 3, "uuid": "c0ffee"}});
    let s = scene_with("mdb-broken", false, "True", recovered, false).await;
    let mut plan = live_plan(&s).await;
    short_waits(&mut plan);
    let mut galera = disks(&s.ns, &[(1, 5), (2, 3)]);
    galera.broken = Some("mariadb-1".into());
    let (operator, seen) = spawn_operator(&s, galera);
    let report = execute(&s.client, &plan, &plan.hash(), &fast()).await;
    operator.abort();
    assert_eq!(report.outcome, Outcome::Stopped, "{report:#?}");
    assert_eq!(seen.lock().unwrap().bootstrap.clone(), Some(("mariadb-1".to_string(), true, true)), "bootstrap forced in mariadb-1 with Flux suspended");
    let wait = report.steps.iter().find(|st| st.id == "wait-bootstrap-pod").unwrap();
    assert!(matches!(&wait.status, StepStatus::Failed { error } if error.contains("timed out") && error.contains("Ready=False")), "{report:#?}");
    let reason = report.reason.clone().unwrap();
    assert!(reason.contains("restore from the S3 backup") && reason.contains("backups.k8s.mariadb.com"), "{reason}");
    assert!(reason.contains("reverted the temporary patch"), "{reason}");
    // Never left set (LifeboatMariadbForceBootstrapLeftSet), the recovery back off, Flux running again.
    let mdb = get(&s.client, MDB, "MariaDB", Some(&s.ns), "mariadb").await;
    assert_eq!(mdb["spec"]["galera"]["recovery"], json!({"enabled": false, "minClusterSize": 1}), "{}", mdb["spec"]);
    assert!(!flux_suspended(&s.client, &s.ns).await);
    let not_run: Vec<&str> = report.steps.iter().filter(|st| st.status == StepStatus::NotRun).map(|st| st.id.as_str()).collect();
    assert_eq!(not_run, vec!["wait-galera-ready", "unset-force-bootstrap", "resume-flux"]);
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
    assert!(
        get(&s.client, "v1", "PersistentVolumeClaim", Some(&s.ns), "storage-mariadb-0").await["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "kubernetes.io/pvc-protection")),
        "the apiserver protects claims"
    );

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
