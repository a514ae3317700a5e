//! node-loss, the composed playbook: pure plans on the shipped example
//! (examples/node-loss, node-01-pve lost), and the whole recovery end to end
//! on the real apiserver loaded with that example's objects, the test playing
//! every operator the plan needs (tests/support/players.rs) and the human who
//! confirms the node is gone. Failure path: the node returns mid-run.
//! Per-phase approval: the journaled run pauses at each gate.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use lifeboat::cluster::dump;
use lifeboat::config::{ApprovalScope, Config};
use lifeboat::plan::playbooks::{plan, Trigger};
use lifeboat::plan::{Action, Plan, Precondition, WaitCondition};
use lifeboat::snapshot::Snapshot;

const NODE: &str = "node-01-pve";

/// The shipped example with the shipped Kanidm restore template (without a
/// template s3-restore deletes nothing, so the Kanidm part would be empty).
fn example_config() -> Config {
    Config::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/s3-restore-kanidm.yaml"))).expect("the shipped example is a valid config")
}

fn example_with(config: &Config) -> Snapshot {
    let (state, _) = dump::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node-loss")).expect("example loads");
    Snapshot::build(state, config, &Default::default())
}

fn node_loss(snap: &Snapshot, node: &str) -> Plan {
    let p = plan("node-loss", &snap.state, &snap.findings, &Trigger { node: Some(node.into()), ..Trigger::default() }).expect("plans");
    p.validate().expect("valid plan");
    p
}

fn ids(p: &Plan) -> Vec<&str> {
    p.steps.iter().map(|s| s.id.as_str()).collect()
}

/// Every step `id` depends on, transitively.
fn ancestors(p: &Plan, id: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![id.to_string()];
    while let Some(next) = todo.pop() {
        let step = p.steps.iter().find(|s| s.id == next).unwrap();
        for n in &step.needs {
            if out.insert(n.clone()) {
                todo.push(n.clone());
            }
        }
    }
    out
}

fn part_keys(p: &Plan) -> BTreeSet<String> {
    p.steps.iter().map(|s| s.id.split_once('.').map_or(s.id.clone(), |(k, _)| k.to_string())).collect()
}

#[test]
fn the_plan_has_every_part_in_its_phase_in_order() {
    let snap = example_with(&example_config());
    let p = node_loss(&snap, NODE);
    let phases: Vec<&str> = p.phases.iter().map(|ph| ph.name.as_str()).collect();
    // Flux is suspended only right before the first phase that needs it (the apps).
    assert_eq!(phases, vec!["preflight", "databases", "flux-suspend", "apps", "oidc", "watch", "cleanup", "flux-resume"]);
    // The phases partition the steps, in plan order.
    let in_phases: Vec<&str> = p.phases.iter().flat_map(|ph| ph.steps.iter().map(String::as_str)).collect();
    assert_eq!(in_phases, ids(&p));

    let phase_of = |key: &str| -> Vec<String> {
        let mut names: Vec<String> = p.steps.iter().filter(|s| s.id.starts_with(&format!("{key}."))).map(|s| p.phase_of(&s.id).unwrap().name.clone()).collect();
        names.dedup();
        names
    };
    for (key, phase) in [
        ("preflight", "preflight"),
        ("cnpg-instance-lost-database-postgres", "databases"),
        ("mariadb-instance-lost-database-mariadb", "databases"),
        ("volsync-restore-utils-forgejo", "apps"),
        ("volsync-restore-media-sonarr", "apps"),
        ("volsync-restore-media-radarr", "apps"),
        ("s3-restore-identity-kanidm-data-kanidm-default-0", "apps"),
        ("kanidm-credential-reset", "oidc"),
        ("watch-observability-deployment-teslamate", "watch"),
        ("watch-kube-system-deployment-kguardian-broker", "watch"),
        ("watch-utils-deployment-forgejo", "watch"),
        ("watch-media-deployment-sonarr", "watch"),
        ("watch-media-deployment-radarr", "watch"),
        ("watch-identity-statefulset-kanidm-default", "watch"),
        ("stale-cleanup", "cleanup"),
    ] {
        assert_eq!(phase_of(key), vec![phase.to_string()], "part {key} in {:?}", part_keys(&p));
    }
    assert!(!part_keys(&p).iter().any(|k| k.contains("volsync-src-forgejo-cache")), "the mover cache goes with forgejo, not as an app: {:?}", part_keys(&p));

    // The orderings kept for safety: each later phase starts only after the
    // earlier one (through its first steps). The apps and the watches skip
    // the databases they do not use (see the test below); cleanup and the
    // Flux resume wait for everything.
    let first = |phase: &str| p.phases.iter().find(|ph| ph.name == phase).unwrap().steps.clone();
    let all = |phase: &str| p.phases.iter().find(|ph| ph.name == phase).unwrap().steps.iter().cloned().collect::<BTreeSet<_>>();
    for (earlier, later) in [
        ("preflight", "databases"),
        ("preflight", "flux-suspend"),
        ("flux-suspend", "apps"),
        ("flux-suspend", "watch"),
        ("apps", "oidc"),
        ("databases", "cleanup"),
        ("apps", "cleanup"),
        ("oidc", "cleanup"),
        ("watch", "cleanup"),
        ("cleanup", "flux-resume"),
    ] {
        for step in first(later) {
            let before = ancestors(&p, &step);
            assert!(all(earlier).iter().any(|s| before.contains(s)), "{step} must wait for phase {earlier}");
        }
    }
    // Nothing changes anything before a human confirmed the node is gone, Flux included.
    for step in p.steps.iter().filter(|s| s.id != "preflight.confirm-gone") {
        assert!(ancestors(&p, &step.id).contains("preflight.confirm-gone"), "{} runs before the confirmation", step.id);
    }
    let confirm = p.steps.iter().find(|s| s.id == "preflight.confirm-gone").unwrap();
    assert!(matches!(&confirm.action, Action::Wait { until: WaitCondition::NodeConfirmedGone, object, .. } if object.name == NODE));
    assert!(confirm.preconditions.contains(&Precondition::NodeStillLost { node: NODE.into() }));

    // Waiting apps and restored apps are only watched.
    for key in
        ["watch-observability-deployment-teslamate", "watch-kube-system-deployment-kguardian-broker", "watch-media-deployment-radarr", "watch-identity-statefulset-kanidm-default"]
    {
        let steps: Vec<_> = p.steps.iter().filter(|s| s.id.starts_with(key)).collect();
        assert!(steps.len() == 1 && matches!(steps[0].action, Action::Wait { until: WaitCondition::WorkloadReady, .. }), "{steps:?}");
    }
    // Data is deleted only with the node still lost and a recovery source named.
    let deletions: Vec<_> = p.steps.iter().filter(|s| s.destroys_data()).collect();
    assert_eq!(deletions.len(), 9, "postgres-1 (marked before its pod, then seen gone), storage-/galera-mariadb-0, forgejo + its cache, sonarr, radarr, kanidm data");
    for s in deletions {
        assert!(s.recovery_source.is_some(), "{}", s.id);
        assert!(s.preconditions.iter().any(|c| matches!(c, Precondition::NodeStillLost { node } if node == NODE)), "{}", s.id);
    }
}

/// Steps of part `key`.
fn steps_of<'a>(p: &'a Plan, key: &str) -> BTreeSet<&'a str> {
    p.steps.iter().map(|s| s.id.as_str()).filter(|id| id.split_once('.').is_some_and(|(k, _)| k == key)).collect()
}

const POSTGRES: &str = "cnpg-instance-lost-database-postgres";
const MARIADB: &str = "mariadb-instance-lost-database-mariadb";

/// What every step of part `key` waits for, transitively: which database parts.
fn databases_before(p: &Plan, key: &str) -> BTreeSet<&'static str> {
    let before: BTreeSet<String> = steps_of(p, key).into_iter().flat_map(|id| ancestors(p, id)).collect();
    let mut out = BTreeSet::new();
    for db in [POSTGRES, MARIADB] {
        let steps = steps_of(p, db);
        assert!(!steps.is_empty(), "no part {db}");
        if steps.iter().all(|s| before.contains(*s)) {
            out.insert(db);
        } else {
            assert!(steps.iter().all(|s| !before.contains(*s)), "{key} waits for part of {db} only");
        }
    }
    out
}

/// The example with forgejo's pods naming CNPG `postgres` by its read-write
/// Service, radarr's naming both Postgres (read-only Service) and MariaDB
/// `mariadb` (primary Service), sonarr's none. (References by Secret:
/// the unit tests of `node_loss::databases`.)
#[test]
fn an_app_waits_for_the_databases_its_pods_name_and_only_those() {
    let (mut state, _) = dump::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node-loss")).expect("example loads");
    let name_hosts = |state: &mut lifeboat::cluster::ClusterState, ns: &str, deployment: &str, hosts: &[&str]| {
        let of_it: Vec<usize> =
            (0..state.pods.len()).filter(|&i| state.workload_of(&state.pods[i]).is_some_and(|w| w.namespace == ns && w.kind == "Deployment" && w.name == deployment)).collect();
        assert!(!of_it.is_empty(), "no pod of {ns}/{deployment}");
        for i in of_it {
            std::sync::Arc::make_mut(&mut state.pods[i]).spec.containers[0].env.hosts.extend(hosts.iter().map(|h| h.to_string()));
        }
    };
    name_hosts(&mut state, "utils", "forgejo", &["postgres-rw.database.svc.cluster.local"]);
    name_hosts(&mut state, "media", "radarr", &["postgres-ro.database", "mariadb-primary.database.svc"]);
    let snap = Snapshot::build(state, &example_config(), &Default::default());
    let p = node_loss(&snap, NODE);

    assert_eq!(databases_before(&p, "volsync-restore-utils-forgejo"), BTreeSet::from([POSTGRES]), "forgejo uses Postgres only");
    assert_eq!(databases_before(&p, "volsync-restore-media-radarr"), BTreeSet::from([POSTGRES, MARIADB]), "radarr uses both");
    assert_eq!(databases_before(&p, "volsync-restore-media-sonarr"), BTreeSet::new(), "sonarr names no database: it starts beside them");
    assert_eq!(databases_before(&p, "s3-restore-identity-kanidm-data-kanidm-default-0"), BTreeSet::new());
    // The example's teslamate and kguardian init-db name postgres-rw: they are watched once Postgres is back, MariaDB or not.
    assert_eq!(databases_before(&p, "watch-observability-deployment-teslamate"), BTreeSet::from([POSTGRES]));
    assert_eq!(databases_before(&p, "watch-kube-system-deployment-kguardian-broker"), BTreeSet::from([POSTGRES]));
    // A restored app is watched once its own restore is done, not the others'.
    let watch_forgejo: BTreeSet<String> = steps_of(&p, "watch-utils-deployment-forgejo").into_iter().flat_map(|id| ancestors(&p, id)).collect();
    assert!(steps_of(&p, "volsync-restore-utils-forgejo").iter().all(|s| watch_forgejo.contains(*s)));
    assert!(steps_of(&p, "volsync-restore-media-sonarr").iter().all(|s| !watch_forgejo.contains(*s)));
    // The dry run shows what waits for what: forgejo's first step names Postgres's last.
    let first = p.steps.iter().find(|s| s.id.starts_with("volsync-restore-utils-forgejo.") && s.needs.iter().any(|n| n.starts_with(POSTGRES))).expect("forgejo waits for Postgres");
    let text = p.render_text();
    assert!(text.contains(&format!("[{}] {}\n   after:    {}", first.id, first.title, first.needs.join(", "))), "{text}");

    // Without the references, no restored app waits for a database.
    let plain = node_loss(&example_with(&example_config()), NODE);
    for key in ["volsync-restore-utils-forgejo", "volsync-restore-media-radarr", "volsync-restore-media-sonarr"] {
        assert_eq!(databases_before(&plain, key), BTreeSet::new(), "{key}");
    }
}

/// Per-phase approval keeps the phases in sequence: a human approves them in the order shown.
#[test]
fn with_per_phase_approval_the_apps_still_wait_for_every_database() {
    let mut config = example_config();
    config.remediation.node_loss.approval = ApprovalScope::PerPhase;
    let gated = node_loss(&example_with(&config), NODE);
    assert_eq!(databases_before(&gated, "volsync-restore-media-sonarr"), BTreeSet::from([POSTGRES, MARIADB]));
}

#[test]
fn every_part_is_what_its_own_playbook_plans() {
    let snap = example_with(&example_config());
    let p = node_loss(&snap, NODE);
    for (playbook, key, ns, name) in [
        ("cnpg-instance-lost", "cnpg-instance-lost-database-postgres", Some("database"), Some("postgres")),
        ("mariadb-instance-lost", "mariadb-instance-lost-database-mariadb", Some("database"), Some("mariadb")),
        ("volsync-restore", "volsync-restore-utils-forgejo", Some("utils"), Some("forgejo")),
        ("volsync-restore", "volsync-restore-media-sonarr", Some("media"), Some("sonarr")),
        ("volsync-restore", "volsync-restore-media-radarr", Some("media"), Some("radarr")),
        ("s3-restore", "s3-restore-identity-kanidm-data-kanidm-default-0", Some("identity"), Some("kanidm-data-kanidm-default-0")),
        ("kanidm-credential-reset", "kanidm-credential-reset", None, None),
        ("stale-cleanup", "stale-cleanup", None, None),
    ] {
        let trigger = Trigger { namespace: ns.map(String::from), name: name.map(String::from), node: Some(NODE.into()) };
        let alone = plan(playbook, &snap.state, &snap.findings, &trigger).unwrap();
        assert!(!alone.nothing_to_do(), "{key}: {:?}", alone.findings);
        for step in &alone.steps {
            let composed = p.steps.iter().find(|s| s.id == format!("{key}.{}", step.id));
            match &step.action {
                // Moved to the run's start / end.
                Action::SuspendFlux { keep_suspended: false, .. } | Action::ResumeFlux { .. } => assert!(composed.is_none(), "{key}.{}", step.id),
                _ => assert_eq!(composed.map(|s| &s.action), Some(&step.action), "{key}.{} is planned as {playbook} plans it", step.id),
            }
        }
    }
    // Radarr's source is paused: restored with an unknown recovery point, the source left paused.
    assert!(p.findings.iter().any(|f| f.contains("media/radarr") && f.contains("UNKNOWN age")), "{:#?}", p.findings);
    assert!(!p.steps.iter().any(|s| s.id == "volsync-restore-media-radarr.pause-source" || s.id == "volsync-restore-media-radarr.resume-source"));
    assert!(p.findings.iter().any(|f| f.contains("needs a human") || f.contains("a human must confirm")), "{:#?}", p.findings);
}

#[test]
fn flux_is_suspended_once_before_the_apps_and_resumed_at_the_end() {
    let snap = example_with(&example_config());
    let p = node_loss(&snap, NODE);
    let suspend_phase = p.phases.iter().find(|ph| ph.name == "flux-suspend").unwrap();
    let resume_phase = p.phases.last().unwrap();
    let mut suspended = vec![];
    let mut resumed = vec![];
    for s in &p.steps {
        match &s.action {
            Action::SuspendFlux { object, keep_suspended: false } => {
                assert!(suspend_phase.steps.contains(&s.id), "{} outside flux-suspend", s.id);
                suspended.push(object.to_string());
            }
            // volsync-restore keeps its objects suspended if it stops: a hold where the part begins.
            Action::SuspendFlux { object, keep_suspended: true } => {
                assert_eq!(p.phase_of(&s.id).unwrap().name, "apps", "{}", s.id);
                assert!(suspended.contains(&object.to_string()), "{object} held but not suspended at the start");
            }
            Action::ResumeFlux { object } => {
                assert!(resume_phase.steps.contains(&s.id), "{} outside flux-resume", s.id);
                resumed.push(object.to_string());
            }
            _ => {}
        }
    }
    let unique: BTreeSet<&String> = suspended.iter().collect();
    assert_eq!(unique.len(), suspended.len(), "each object suspended once: {suspended:?}");
    assert_eq!(suspended, resumed, "every object suspended is resumed at the end");
    for object in ["HelmRelease utils/forgejo", "Kustomization utils/forgejo", "HelmRelease media/sonarr", "Kustomization media/radarr", "Kustomization identity/kanidm"] {
        assert!(suspended.iter().any(|s| s == object), "{object} not in {suspended:?}");
    }
    assert!(!suspended.iter().any(|s| s.contains("teslamate")), "already suspended by someone else, and only watched");
    // The resume waits for everything else.
    let last_work: BTreeSet<String> = p.steps.iter().filter(|s| !resume_phase.steps.contains(&s.id)).map(|s| s.id.clone()).collect();
    for id in &resume_phase.steps {
        assert_eq!(ancestors(&p, id), last_work, "{id} must come after every other step");
    }
}

/// The example plus an NFS volume (no node affinity), its RWX claim, and a
/// pod of it that was being deleted when node-01-pve died.
fn example_with_a_pod_stuck_on_nfs(config: &Config) -> Snapshot {
    use std::sync::Arc;
    let (mut state, _) = dump::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node-loss")).expect("example loads");
    let pv = serde_json::json!({"metadata": {"name": "pvc-shared-media"}, "spec": {"claimRef": {"namespace": "media", "name": "shared-media"}, "storageClassName": "nfs", "nfs": {"server": "nas", "path": "/media"}}, "status": {"phase": "Bound"}});
    let pvc = serde_json::json!({"metadata": {"name": "shared-media", "namespace": "media"}, "spec": {"volumeName": "pvc-shared-media", "storageClassName": "nfs", "accessModes": ["ReadWriteMany"]}, "status": {"phase": "Bound"}});
    let pod = serde_json::json!({"metadata": {"name": "jellyfin-0", "namespace": "media", "deletionTimestamp": "2026-11-25T12:05:00Z"},
        "spec": {"nodeName": NODE, "volumes": [{"name": "media", "persistentVolumeClaim": {"claimName": "shared-media"}}], "containers": [{"name": "jellyfin"}]}, "status": {"phase": "Running"}});
    state.persistent_volumes.push(Arc::new(serde_json::from_value(pv).unwrap()));
    state.persistent_volume_claims.push(Arc::new(serde_json::from_value(pvc).unwrap()));
    state.pods.push(Arc::new(serde_json::from_value(pod).unwrap()));
    state.finish();
    Snapshot::build(state, config, &Default::default())
}

#[test]
fn pods_on_network_storage_stuck_terminating_are_listed_and_force_deleted_after_the_confirmation() {
    let snap = example_with_a_pod_stuck_on_nfs(&example_config());
    let report = lifeboat::triage::triage(&snap.state, &snap.findings, Some(NODE));
    let stuck: Vec<(&str, &str, &[String])> = report.terminating_on_lost_nodes.iter().map(|p| (p.namespace.as_str(), p.pod.as_str(), p.claims.as_slice())).collect();
    assert_eq!(stuck, vec![("media", "jellyfin-0", &["shared-media".to_string()][..])], "only the pod on network storage: pods on pinned volumes are their playbooks' business");
    assert!(lifeboat::triage::render_text(&report).contains("media/jellyfin-0 on node-01-pve (claims shared-media)"));

    let p = node_loss(&snap, NODE);
    let id = "terminating.force-delete-media-jellyfin-0";
    let delete = p.steps.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("{:?}", ids(&p)));
    assert_eq!(delete.action, Action::ForceDeletePod { pod: lifeboat::plan::ObjectRef::pod("media", "jellyfin-0") });
    assert_eq!(delete.preconditions, vec![Precondition::NodeStillLost { node: NODE.into() }]);
    assert!(ancestors(&p, id).contains("preflight.confirm-gone"), "never before a human confirmed the node is gone");
    assert_eq!(p.phase_of(id).map(|ph| ph.name.as_str()), Some("release"));
    assert!(p.findings.iter().any(|f| f.contains("jellyfin-0") && f.contains("out-of-service")), "{:#?}", p.findings);
    // Without the pod, no such phase.
    assert!(node_loss(&example_with(&example_config()), NODE).phases.iter().all(|ph| ph.name != "release"));
}

/// The example plus the OpenEBS hostpath provisioner's pod on the lost node
/// (labels as openebs/dynamic-localpv-provisioner v4.0.0's chart sets them),
/// and with `replacement`, a Ready pod of it on node-02-pve.
fn example_with_the_provisioner_on_the_lost_node(config: &Config, replacement: bool) -> Snapshot {
    use std::sync::Arc;
    let (mut state, _) = dump::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node-loss")).expect("example loads");
    let pod = |name: &str, node: &str, ready: &str| {
        serde_json::json!({"metadata": {"name": name, "namespace": "openebs",
            "labels": {"app": "localpv-provisioner", "component": "localpv-provisioner", "openebs.io/component-name": "openebs-localpv-provisioner"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "openebs-localpv-provisioner-6b8f", "uid": "u1", "controller": true}]},
            "spec": {"nodeName": node, "containers": [{"name": "openebs-localpv-provisioner"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": ready}]}})
    };
    let rs = serde_json::json!({"metadata": {"name": "openebs-localpv-provisioner-6b8f", "namespace": "openebs",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "openebs-localpv-provisioner", "uid": "u2", "controller": true}]}, "spec": {"replicas": 1}});
    state.pods.push(Arc::new(serde_json::from_value(pod("openebs-localpv-provisioner-6b8f-x2x9q", NODE, "False")).unwrap()));
    if replacement {
        state.pods.push(Arc::new(serde_json::from_value(pod("openebs-localpv-provisioner-6b8f-k7m4d", "node-02-pve", "True")).unwrap()));
    }
    state.replica_sets.push(Arc::new(serde_json::from_value(rs).unwrap()));
    state.finish();
    Snapshot::build(state, config, &Default::default())
}

const STRANDED: &str = "openebs-localpv-provisioner-6b8f-x2x9q";
const PROVISIONER_WAIT: &str = "provisioner-openebs-openebs-localpv-provisioner-6b8f-x2x9q.ready-elsewhere";

#[test]
fn triage_says_re_created_claims_stay_pending_while_the_provisioner_was_on_the_lost_node() {
    let snap = example_with_the_provisioner_on_the_lost_node(&example_config(), false);
    let report = lifeboat::triage::triage(&snap.state, &snap.findings, Some(NODE));
    let found: Vec<(&str, &str, &str)> = report.stranded_provisioners.iter().map(|p| (p.provisioner.as_str(), p.pod.as_str(), p.node.as_str())).collect();
    assert_eq!(found, vec![("openebs.io/local", STRANDED, NODE)]);
    assert_eq!(report.stranded_provisioners[0].controller, Some(("Deployment".into(), "openebs-localpv-provisioner".into())));
    let text = lifeboat::triage::render_text(&report);
    assert!(text.contains(&format!("openebs.io/local pod openebs/{STRANDED} on {NODE}")), "{text}");
    assert!(text.contains("stays Pending until it runs on another node"), "{text}");
    // Running elsewhere already: said, and not called blocking.
    let healed = example_with_the_provisioner_on_the_lost_node(&example_config(), true);
    let text = lifeboat::triage::render_text(&lifeboat::triage::triage(&healed.state, &healed.findings, Some(NODE)));
    assert!(text.contains("already Ready elsewhere (openebs-localpv-provisioner-6b8f-k7m4d on node-02-pve)") && !text.contains("stays Pending"), "{text}");
    // Without the pod, no such section.
    let plain = example_with(&example_config());
    assert!(!lifeboat::triage::render_text(&lifeboat::triage::triage(&plain.state, &plain.findings, Some(NODE))).contains("PROVISIONERS"));
}

#[test]
fn the_provisioner_is_rescheduled_and_waited_for_before_any_claim_is_re_created() {
    let snap = example_with_the_provisioner_on_the_lost_node(&example_config(), false);
    let p = node_loss(&snap, NODE);
    let phases: Vec<&str> = p.phases.iter().map(|ph| ph.name.as_str()).collect();
    assert_eq!(phases, vec!["preflight", "provisioner", "databases", "flux-suspend", "apps", "oidc", "watch", "cleanup", "flux-resume"]);
    let delete_id = "provisioner-openebs-openebs-localpv-provisioner-6b8f-x2x9q.force-delete";
    let delete = p.steps.iter().find(|s| s.id == delete_id).unwrap_or_else(|| panic!("{:?}", ids(&p)));
    assert_eq!(delete.action, Action::ForceDeletePod { pod: lifeboat::plan::ObjectRef::pod("openebs", STRANDED) });
    assert_eq!(delete.preconditions, vec![Precondition::NodeStillLost { node: NODE.into() }]);
    assert!(ancestors(&p, delete_id).contains("preflight.confirm-gone"), "never before a human confirmed the node is gone");
    let wait = p.steps.iter().find(|s| s.id == PROVISIONER_WAIT).unwrap();
    match &wait.action {
        Action::Wait { object, until: WaitCondition::ProvisionerReadyElsewhere { selector, lost_node, takeover_seconds }, .. } => {
            assert_eq!(object, &lifeboat::plan::ObjectRef::namespaced("apps/v1", "Deployment", "openebs", "openebs-localpv-provisioner"));
            assert_eq!(selector, &std::collections::BTreeMap::from([("openebs.io/component-name".to_string(), "openebs-localpv-provisioner".to_string())]));
            assert_eq!((lost_node.as_str(), *takeover_seconds), (NODE, 20));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(wait.needs, vec![delete_id.to_string()]);
    // Every claim re-created (by the plan, or by an operator after the plan
    // deleted it) comes after the wait: so does every step after its phase.
    let recreating: Vec<&str> = p
        .steps
        .iter()
        .filter(|s| s.destroys_data() || matches!(&s.action, Action::Apply { object, .. } if object.kind == "PersistentVolumeClaim"))
        .map(|s| s.id.as_str())
        .collect();
    assert!(recreating.iter().any(|id| id.starts_with("volsync-restore-utils-forgejo.")) && recreating.len() > 9, "{recreating:?}");
    for step in p.steps.iter().filter(|s| !["preflight", "provisioner"].contains(&p.phase_of(&s.id).unwrap().name.as_str())) {
        assert!(ancestors(&p, &step.id).contains(PROVISIONER_WAIT), "{} runs before the provisioner is back", step.id);
    }
    assert!(p.findings.iter().any(|f| f.contains("every PVC this plan re-creates would stay Pending") && f.contains("leader Lease")), "{:#?}", p.findings);
    let text = p.render_text();
    assert!(text.contains(&format!("kubectl delete pod {STRANDED} -n openebs --force --grace-period=0")), "{text}");
    assert!(text.contains("kubectl wait pods -n openebs -l openebs.io/component-name=openebs-localpv-provisioner --for=condition=Ready"), "{text}");

    // Already running elsewhere: nothing to do for it, said so.
    let healed = node_loss(&example_with_the_provisioner_on_the_lost_node(&example_config(), true), NODE);
    assert!(healed.phases.iter().all(|ph| ph.name != "provisioner"), "{:?}", ids(&healed));
    assert!(healed.findings.iter().any(|f| f.contains("already provisions new claims")), "{:#?}", healed.findings);
}

#[test]
fn nothing_for_a_node_that_is_ready_unknown_or_within_grace() {
    let snap = example_with(&example_config());
    let ready = node_loss(&snap, "node-02-pve");
    assert!(ready.nothing_to_do() && ready.findings.iter().any(|f| f.contains("is Ready")), "{:#?}", ready.findings);
    let unknown = node_loss(&snap, "node-77-pve");
    assert!(unknown.nothing_to_do() && unknown.findings.iter().any(|f| f.contains("not known")), "{:#?}", unknown.findings);
    // Ten seconds after it went NotReady the node may still come back.
    let (mut state, _) = dump::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node-loss")).unwrap();
    state.now = support::fixtures::at("2026-11-25T11:20:10Z");
    let early = Snapshot::build(state, &example_config(), &Default::default());
    let early = node_loss(&early, NODE);
    assert!(early.nothing_to_do() && early.findings.iter().any(|f| f.contains("grace")), "{:#?}", early.findings);
    // node-04-pve has no Node object and only a stale cache pinned to it.
    let gone = node_loss(&snap, "node-04-pve");
    assert_eq!(part_keys(&gone), BTreeSet::from(["preflight".to_string(), "stale-cleanup".to_string()]), "{}", gone.render_text());
}

#[test]
fn the_plan_and_its_hash_are_stable_and_the_dry_run_shows_the_phases() {
    let a = node_loss(&example_with(&example_config()), NODE);
    let b = node_loss(&example_with(&example_config()), NODE);
    assert_eq!(a.hash(), b.hash());
    assert_eq!(a, b);
    let text = a.render_text();
    assert!(text.starts_with(&format!("playbook node-loss for Node {NODE} (plan {})", a.hash())), "{text}");
    let mut at = 0;
    for phase in &a.phases {
        let header = format!("== phase {}: {}", phase.name, phase.title);
        let found = text[at..].find(&header).unwrap_or_else(|| panic!("{header:?} missing or out of order in:\n{text}"));
        at += found;
    }
    assert!(text.contains(&format!("kubectl annotate node {NODE} lifeboat.dev/confirmed-gone=true")), "{text}");
    assert!(text.contains("kubectl cnpg promote postgres -n database postgres-2"));
    assert!(text.contains("flux resume kustomization kanidm -n identity"));
}

#[test]
fn per_phase_approval_gates_every_changing_phase_but_the_first() {
    let mut config = example_config();
    config.remediation.node_loss.approval = ApprovalScope::PerPhase;
    config.remediation.node_loss.out_of_service_taint = true;
    let gated = node_loss(&example_with(&config), NODE);
    let gates: Vec<&str> = gated.steps.iter().filter(|s| matches!(s.action, Action::ApprovalGate { .. })).map(|s| s.id.as_str()).collect();
    assert_eq!(gates, vec!["databases.approve", "apps.approve", "oidc.approve", "cleanup.approve"], "the first phase and watching need none");
    for gate in &gates {
        let phase = gate.trim_end_matches(".approve");
        // The apps' gate comes before Flux is suspended for them: a paused run leaves Flux alone.
        let starts = if phase == "apps" { "flux-suspend" } else { phase };
        assert_eq!(gated.phases.iter().find(|ph| ph.name == starts).unwrap().steps[0], *gate);
    }
    let taint = gated.steps.iter().find(|s| s.id == "preflight.out-of-service").expect("taint step");
    assert!(matches!(&taint.action, Action::TaintNode { key, .. } if key == "node.kubernetes.io/out-of-service"));
    assert!(taint.needs.contains(&"preflight.confirm-gone".to_string()));
    let once = node_loss(&example_with(&example_config()), NODE);
    assert_ne!(once.hash(), gated.hash(), "the approval scope is part of what is approved");
    assert!(!once.steps.iter().any(|s| matches!(s.action, Action::ApprovalGate { .. })));
}

// ------------------------------------------------------- end to end, journaled

mod e2e {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    use kube::api::{Patch, PatchParams};
    use kube::Client;
    use lifeboat::cluster::ClusterState;
    use lifeboat::config::Dur;
    use lifeboat::journal::{Journal, Phase, RunRecord, RunTrigger, StepState};
    use lifeboat::remediator::{approve, submit, RemediationError, Remediator};
    use serde_json::{json, Value};
    use support::controlplane::control_plane;
    use support::example_cluster::{load, ExampleCluster};
    use support::k8s::*;
    use support::kubelet::FakeKubelet;
    use support::players::{spawn_all, Cluster, Players};

    const KANIDM_PVC: &str = "kanidm-data-kanidm-default-0";
    const FLUX: [(&str, &str); 2] = [("kustomize.toolkit.fluxcd.io/v1", "Kustomization"), ("helm.toolkit.fluxcd.io/v2", "HelmRelease")];

    struct Scene {
        client: Client,
        example: ExampleCluster,
        config: Config,
        journal: Arc<Journal>,
        players: Players,
    }

    /// The example cluster under `prefix`, every operator played, lifeboat
    /// configured as the shipped Kanidm example says (keyed to the prefix).
    async fn scene(prefix: &str, approval: ApprovalScope) -> Scene {
        let cp = control_plane();
        let client = cp.admin_client();
        let example = load(&client, prefix).await;
        let kubelet = Arc::new(FakeKubelet::start(&std::env::temp_dir()).await);
        for node in example.healthy_nodes() {
            kubelet.register(&client, &node).await;
        }
        // What a Job prints: the Kanidm restore's output.
        let output = Arc::new(|_: &str| "Downloading backups/kanidm-2026-11-25T10:30:00Z.json.gz\nRestoring 1822 entries\n✅ Restore Success!\n".to_string());
        let players = spawn_all(&Cluster::of(&client, &example), kubelet.clone(), output);
        // kaniop scales kanidm-default from its Kanidm; kanidmd answers
        // `kanidmd recover-account` by exec once its pod runs again.
        let identity = example.ns("identity");
        tokio::spawn(support::kaniop::play_kaniop(client.clone(), identity.clone()));
        support::kaniop::serve_kanidmd(client.clone(), identity, "kanidm-default".into(), &kubelet, Arc::new(|user: &str| password(user)));
        // kaniop's Secret (the dump holds no Secrets).
        create(
            &client,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kanidm-admin-passwords", "namespace": example.ns("identity")},
            "data": {"ADMIN_PASSWORD": "b2xk", "IDM_ADMIN_PASSWORD": "b2xk"}}),
            None,
        )
        .await;

        let mut config = example_config();
        let app = config.s3_restore.apps.remove(&format!("identity/{KANIDM_PVC}")).unwrap();
        config.s3_restore.apps = BTreeMap::from([(format!("{}/{KANIDM_PVC}", example.ns("identity")), app)]);
        config.kanidm.namespace = example.ns("identity");
        config.kanidm.oidc_clients = config.kanidm.oidc_clients.iter().map(|c| c.replacen('/', &format!("/{prefix}-"), 1)).collect();
        config.garage.namespace = example.ns("volsync-system");
        config.discovery_interval = Dur::secs(1);
        let journal_ns = cp.namespace(&client, &format!("{prefix}-lifeboat")).await;
        config.remediation.namespace = Some(journal_ns.clone());
        // The example deletes 8 PVCs (the default blast radius allows 5).
        config.remediation.max_pvc_deletions = 8;
        config.remediation.node_loss.approval = approval;
        // scripts/bench-recovery.sh may measure another `remediation.concurrency`; the tests run the default.
        if let Some(n) = std::env::var("LIFEBOAT_BENCH_CONCURRENCY").ok().and_then(|v| v.parse().ok()) {
            config.remediation.concurrency = n;
        }
        let journal = Arc::new(Journal::cluster(client.clone(), journal_ns));
        Scene { client, example, config, journal, players }
    }

    fn password(user: &str) -> String {
        format!("Zq8-{user}-pA55w0rd")
    }

    /// Only this scene's objects (the apiserver holds other tests' too).
    fn only_mine(mut state: ClusterState, example: &ExampleCluster) -> ClusterState {
        use lifeboat::cluster::resources::LeanObject;
        macro_rules! keep_mine {
            ($($field:ident: $ty:ident),* $(,)?) => {
                $( state.$field.retain(|o| example.owns(o.metadata().namespace.as_deref(), o.metadata().name.as_deref().unwrap_or(""))); )*
            };
        }
        lifeboat::for_each_kind!(keep_mine);
        state.finish();
        state
    }

    async fn snapshot(s: &Scene) -> Snapshot {
        let hub = lifeboat::runtime::hub::start_live_hub(s.config.clone(), s.client.clone());
        lifeboat::runtime::hub::wait_ready(&hub, Duration::from_secs(60)).await.unwrap();
        let state = only_mine(hub.live.as_ref().unwrap().snapshot(), &s.example);
        Snapshot::build(state, &s.config, &Default::default())
    }

    fn remediator(s: &Scene) -> Remediator {
        Remediator {
            client: s.client.clone(),
            journal: s.journal.clone(),
            config: s.config.remediation.clone(),
            identity: "replica-a".into(),
            kill_switch: Arc::new(AtomicBool::new(false)),
            poll_interval: Duration::from_millis(150),
        }
    }

    async fn submit_node_loss(s: &Scene) -> RunRecord {
        let snap = snapshot(s).await;
        let trigger = RunTrigger { node: Some(s.example.lost_node()), ..RunTrigger::default() };
        let run = submit(&s.journal, &s.config.remediation, &snap.state, &snap.findings, "node-loss", trigger, "test").await.unwrap();
        assert_eq!(run.status.phase, Phase::AwaitingApproval);
        run
    }

    /// The human: once the run waits for the confirmation, annotates the
    /// Node (with `then_it_returns`, the node has just come back Ready: the
    /// confirmation and the node's return race in a real cluster too).
    fn human_confirms(s: &Scene, id: &str, then_it_returns: bool) -> tokio::task::JoinHandle<()> {
        let (journal, client, node, id) = (s.journal.clone(), s.client.clone(), s.example.lost_node(), id.to_string());
        tokio::spawn(async move {
            loop {
                let run = journal.get(&id).await.unwrap().unwrap();
                if run.status.steps.iter().any(|st| st.id == "preflight.confirm-gone" && st.state == StepState::Running) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if then_it_returns {
                // Back before the annotation lands, so no step can see the
                // confirmation without also seeing the node Ready.
                mark_node_ready(&client, &node).await;
            }
            let nodes = api_for(&client, "v1", "Node", None).await;
            nodes.patch(&node, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"lifeboat.dev/confirmed-gone": "true"}}}))).await.unwrap();
        })
    }

    async fn list(s: &Scene, api_version: &str, kind: &str) -> Vec<Value> {
        Cluster::of(&s.client, &s.example).list(api_version, kind).await
    }

    async fn uid(s: &Scene, ns: &str, pvc: &str) -> Option<String> {
        let api = api_for(&s.client, "v1", "PersistentVolumeClaim", Some(&s.example.ns(ns))).await;
        api.get_opt(pvc).await.unwrap().and_then(|p| p.metadata.uid)
    }

    async fn uids(s: &Scene, claims: &[(&str, &str)]) -> Vec<String> {
        let mut out = vec![];
        for (ns, pvc) in claims {
            out.push(uid(s, ns, pvc).await.unwrap_or_else(|| panic!("{ns}/{pvc} exists before")));
        }
        out
    }

    /// Approves the run, runs it with the human confirming the node is gone,
    /// and returns its journal record.
    async fn approve_and_run(s: &Scene, run: &RunRecord) -> RunRecord {
        approve(&s.journal, &run.id, &run.spec.plan_hash, "alice", lifeboat::config::Dur::hours(1)).await.unwrap();
        let human = human_confirms(s, &run.id, false);
        remediator(s).run_pending(None).await.unwrap();
        human.await.unwrap();
        s.players.assert_alive();
        s.journal.get(&run.id).await.unwrap().unwrap()
    }

    /// (Flux object, suspended, kept-suspended annotation present)
    async fn flux_state(s: &Scene) -> Vec<(String, bool, bool)> {
        let mut out = vec![];
        for (api_version, kind) in FLUX {
            for o in list(s, api_version, kind).await {
                let kept = o["metadata"]["annotations"]["lifeboat.dev/kept-suspended"].is_string();
                out.push((format!("{kind} {}/{}", o["metadata"]["namespace"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap()), o["spec"]["suspend"] == true, kept));
            }
        }
        out.sort();
        out
    }

    fn state_of<'a>(run: &'a RunRecord, id: &str) -> &'a lifeboat::journal::StepRecord {
        run.status.steps.iter().find(|st| st.id == id).unwrap_or_else(|| panic!("no step {id}"))
    }

    fn base64_decode(text: &str) -> Vec<u8> {
        serde_json::from_value::<k8s_openapi::ByteString>(json!(text)).unwrap().0
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recovers_the_whole_node_and_the_journal_explains_every_step() {
        let mut s = scene("nlok", ApprovalScope::Once).await;
        let run = submit_node_loss(&s).await;
        let plan = &run.spec.plan;
        let keys = part_keys(plan);
        for key in [
            "preflight",
            "kanidm-credential-reset",
            "cnpg-instance-lost-nlok-database-postgres",
            "mariadb-instance-lost-nlok-database-mariadb",
            "volsync-restore-nlok-utils-forgejo",
            "volsync-restore-nlok-media-sonarr",
            "volsync-restore-nlok-media-radarr",
            "s3-restore-nlok-identity-kanidm-data-kanidm-default-0",
            "stale-cleanup",
            "watch-nlok-observability-deployment-teslamate",
            "watch-nlok-kube-system-deployment-kguardian-broker",
        ] {
            assert!(keys.contains(key), "{key} missing: {keys:?}");
        }
        // The live cache kept the init-db host (`postgres-rw.<ns>.svc…`): teslamate is watched once Postgres is back, MariaDB or not.
        let teslamate: BTreeSet<String> = steps_of(plan, "watch-nlok-observability-deployment-teslamate").into_iter().flat_map(|id| ancestors(plan, id)).collect();
        let waits_for = |db: &str| teslamate.iter().any(|id| id.starts_with(&format!("{db}.")));
        assert!(waits_for("cnpg-instance-lost-nlok-database-postgres") && !waits_for("mariadb-instance-lost-nlok-database-mariadb"), "{teslamate:?}");
        let flux_before = flux_state(&s).await;
        assert!(flux_before.iter().all(|(name, suspended, _)| *suspended == (name == "Kustomization nlok-observability/teslamate")), "{flux_before:?}");
        // CNPG's lost instance comes back under its own name (v1.30.0 generateNodeSerial), on a new claim.
        let replaced = [
            ("database", "postgres-1"),
            ("database", "storage-mariadb-0"),
            ("database", "galera-mariadb-0"),
            ("utils", "forgejo"),
            ("media", "sonarr"),
            ("media", "radarr"),
            ("identity", KANIDM_PVC),
        ];
        let old_uids = uids(&s, &replaced).await;

        let done = approve_and_run(&s, &run).await;
        assert_eq!(done.status.phase, Phase::Succeeded, "{:#?}", done.status);
        support::graph::assert_run_followed_needs(&done);

        // The journal explains every step.
        assert_eq!(done.status.steps.len(), plan.steps.len());
        for st in &done.status.steps {
            assert_eq!(st.state, StepState::Succeeded, "{st:#?}");
            assert!(st.detail.as_deref().is_some_and(|d| d.len() > 10), "step {} has no explanation: {st:#?}", st.id);
            assert!(st.started_at.is_some() && st.finished_at.is_some(), "{st:#?}");
        }
        let detail = |id: &str| state_of(&done, id).detail.clone().unwrap();
        assert!(detail("preflight.confirm-gone").contains("annotated lifeboat.dev/confirmed-gone=true"));
        assert!(detail("cnpg-instance-lost-nlok-database-postgres.verify-rw-endpoints").contains("ready endpoints"));
        assert!(detail("s3-restore-nlok-identity-kanidm-data-kanidm-default-0.restore").contains("Restore Success"));
        // The new Kanidm passwords went into the Secret, and nowhere into the journal.
        let secret = get(&s.client, "v1", "Secret", Some(&s.example.ns("identity")), "kanidm-admin-passwords").await;
        let decoded = |key: &str| String::from_utf8(base64_decode(secret["data"][key].as_str().unwrap())).unwrap();
        assert_eq!((decoded("ADMIN_PASSWORD"), decoded("IDM_ADMIN_PASSWORD")), (password("admin"), password("idm_admin")));
        let journal_text = serde_json::to_string(&done).unwrap();
        assert!(!journal_text.contains(&password("admin")) && !journal_text.contains(&password("idm_admin")), "a password leaked into the journal");
        let token = plan
            .steps
            .iter()
            .find_map(|st| match &st.action {
                Action::Wait { until: WaitCondition::VolsyncManualSyncDone { token }, object, .. } if object.name == "forgejo-dst" => Some(token.clone()),
                _ => None,
            })
            .unwrap();
        assert!(detail("volsync-restore-nlok-utils-forgejo.wait-restore").contains(&token));

        // Every workload is healthy again.
        for kind in ["Deployment", "StatefulSet"] {
            for w in list(&s, "apps/v1", kind).await {
                let (wanted, ready) = (w["spec"]["replicas"].as_i64().unwrap_or(1), w["status"]["readyReplicas"].as_i64().unwrap_or(0));
                assert!(ready >= wanted, "{kind} {}/{} has {ready}/{wanted} ready", w["metadata"]["namespace"], w["metadata"]["name"]);
            }
        }
        let pg = get(&s.client, "postgresql.cnpg.io/v1", "Cluster", Some(&s.example.ns("database")), "postgres").await;
        assert_eq!((pg["status"]["phase"].as_str(), pg["status"]["currentPrimary"].as_str()), (Some("Cluster in healthy state"), Some("postgres-2")));
        let mdb = get(&s.client, "k8s.mariadb.com/v1alpha1", "MariaDB", Some(&s.example.ns("database")), "mariadb").await;
        assert!(mdb["status"]["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "Ready" && c["status"] == "True"), "{mdb:#}");
        // The lost node's claims were replaced, the orphan is gone.
        assert!(uid(&s, "database", "postgres-4").await.is_none(), "no new serial: the first free one is reused");
        assert_eq!(pg["status"]["instanceNames"], json!(["postgres-1", "postgres-2", "postgres-3"]));
        for ((ns, pvc), old) in replaced.iter().zip(&old_uids) {
            let new = uid(&s, ns, pvc).await.unwrap_or_else(|| panic!("{ns}/{pvc} was not re-created"));
            assert_ne!(&new, old, "{ns}/{pvc} is still the claim on the lost node");
        }
        let rds = api_for(&s.client, "volsync.backube/v1alpha1", "ReplicationDestination", Some(&s.example.ns("utils"))).await;
        assert!(rds.get_opt("oldapp-dst").await.unwrap().is_none(), "stale destination deleted");
        // Flux: everything the run suspended is resumed; teslamate stays as it was.
        assert_eq!(flux_state(&s).await, flux_before, "Flux as before the run, no kept-suspended annotation");

        // The benchmark: the recovery's wall time against its critical path and its steps one after another.
        let started = done.status.steps.iter().filter_map(|st| st.started_at).min().unwrap();
        let finished = done.status.steps.iter().filter_map(|st| st.finished_at).max().unwrap();
        let wall = (finished - started).num_milliseconds() as f64 / 1000.0;
        let sum: f64 = done.status.steps.iter().map(|st| (st.finished_at.unwrap() - st.started_at.unwrap()).num_milliseconds() as f64 / 1000.0).sum();
        let (critical, chain) = support::graph::critical_path(&done);
        s.players.stop().await;
        println!(
            "RECOVERY wall={wall:.2}s critical_path={critical:.2}s sum_of_steps={sum:.2}s wall_over_critical={:.2}x parallel_speedup={:.2}x steps={} phases={} concurrency={}",
            wall / critical.max(0.001),
            sum / wall.max(0.001),
            done.status.steps.len(),
            plan.phases.len(),
            s.config.remediation.concurrency
        );
        println!("CRITICAL PATH {}", chain.join(" -> "));
    }

    /// The OpenEBS hostpath provisioner ran only on the lost node (its pod
    /// tolerates the unreachable taint, so it was never evicted): triage says
    /// so, the run force-deletes it, waits for its replacement to lead, and
    /// only then re-creates claims, which the played provisioner binds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recovers_with_the_provisioner_stranded_on_the_lost_node() {
        use support::provisioner::{self, STRANDED_POD};
        let mut s = scene("nlprov", ApprovalScope::Once).await;
        let openebs = provisioner::install(&s.client, &s.example).await;
        let provisioning = provisioner::spawn(&Cluster::of(&s.client, &s.example));

        let snap = snapshot(&s).await;
        let report = lifeboat::triage::triage(&snap.state, &snap.findings, Some(&s.example.lost_node()));
        let text = lifeboat::triage::render_text(&report);
        assert!(text.contains(&format!("openebs.io/local pod {openebs}/{STRANDED_POD} on {}", s.example.lost_node())) && text.contains("stays Pending"), "{text}");

        let run = submit_node_loss(&s).await;
        let plan = &run.spec.plan;
        let key = format!("provisioner-{openebs}-{STRANDED_POD}");
        let wait = format!("{key}.ready-elsewhere");
        assert!(plan.steps.iter().any(|st| st.id == format!("{key}.force-delete")), "{}", plan.render_text());
        // The lost node's openebs-hostpath claims the run re-creates (sonarr's class is topolvm's).
        let replaced = [("utils", "forgejo"), ("media", "radarr"), ("database", "storage-mariadb-0"), ("database", "galera-mariadb-0")];
        let old_uids = uids(&s, &replaced).await;
        let done = approve_and_run(&s, &run).await;
        provisioning.assert_alive();
        assert_eq!(done.status.phase, Phase::Succeeded, "{:#?}", done.status);
        support::graph::assert_run_followed_needs(&done);
        let waited = state_of(&done, &wait);
        assert!(waited.detail.as_deref().unwrap_or("").contains("is Ready on"), "{waited:#?}");
        let back_at = waited.finished_at.unwrap();

        // The stranded pod is gone; its replacement runs on a Ready node.
        let pods = list(&s, "v1", "Pod").await;
        let provisioners: Vec<&Value> = pods.iter().filter(|p| p["metadata"]["namespace"] == openebs.as_str()).collect();
        assert!(provisioners.iter().all(|p| p["metadata"]["name"] != STRANDED_POD), "{provisioners:#?}");
        assert!(provisioners.iter().any(|p| support::players::pod_ready(p) && p["spec"]["nodeName"] != s.example.lost_node().as_str()), "{provisioners:#?}");
        // Every re-created claim was provisioned, and created only once the provisioner was back.
        let bound = provisioning.provisioned.lock().unwrap().clone();
        for ((ns, pvc), old) in replaced.iter().zip(&old_uids) {
            let claim = get(&s.client, "v1", "PersistentVolumeClaim", Some(&s.example.ns(ns)), pvc).await;
            assert_ne!(claim["metadata"]["uid"].as_str(), Some(old.as_str()), "{ns}/{pvc} is still the claim on the lost node");
            assert_eq!(claim["status"]["phase"], "Bound", "{ns}/{pvc} stayed Pending: {claim:#}");
            let created: chrono::DateTime<chrono::Utc> = claim["metadata"]["creationTimestamp"].as_str().unwrap().parse().unwrap();
            // creationTimestamp has whole seconds only.
            assert!(created >= back_at - chrono::Duration::seconds(1), "{ns}/{pvc} was re-created at {created}, before the provisioner was back at {back_at}");
            let volume = claim["spec"]["volumeName"].as_str().unwrap();
            assert!(bound.iter().any(|b| b.claim == *pvc && b.volume == volume), "{ns}/{pvc} not bound by the provisioner: {bound:?}");
            let pv = get(&s.client, "v1", "PersistentVolume", None, volume).await;
            assert_eq!(pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"], "openebs.io/local");
        }
        assert!(bound.iter().all(|b| b.claim != "sonarr"), "a topolvm-provisioner claim is not OpenEBS's to provision: {bound:?}");
        drop(provisioning);
        s.players.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_node_returning_mid_run_stops_it_before_anything_is_destroyed() {
        let mut s = scene("nlback", ApprovalScope::Once).await;
        let run = submit_node_loss(&s).await;
        let flux_before = flux_state(&s).await;
        let postgres = uid(&s, "database", "postgres-1").await;
        let storage = uid(&s, "database", "storage-mariadb-0").await;
        approve(&s.journal, &run.id, &run.spec.plan_hash, "alice", lifeboat::config::Dur::hours(1)).await.unwrap();
        // Confirmed gone, and then the node comes back after all.
        let human = human_confirms(&s, &run.id, true);
        remediator(&s).run_pending(None).await.unwrap();
        human.await.unwrap();
        s.players.assert_alive();
        let done = s.journal.get(&run.id).await.unwrap().unwrap();
        assert_eq!(done.status.phase, Phase::Stopped, "{:#?}", done.status);
        for id in ["cnpg-instance-lost-nlback-database-postgres.promote", "mariadb-instance-lost-nlback-database-mariadb.delete-pod-mariadb-0"] {
            let st = state_of(&done, id);
            assert_eq!(st.state, StepState::Refused, "{st:#?}");
            assert!(st.detail.as_deref().unwrap_or("").contains("still missing or not Ready"), "{st:#?}");
        }
        // Nothing after the databases' first steps ran (a phase's start
        // touches nothing); nothing was destroyed.
        let phase_of = |id: &str| done.spec.plan.phase_of(id).unwrap().name.clone();
        let is_phase_start = |id: &str| done.spec.plan.steps.iter().any(|s| s.id == id && matches!(s.action, Action::PhaseStart { .. }));
        for st in done.status.steps.iter().filter(|st| !["flux-suspend", "preflight", "flux-resume"].contains(&phase_of(&st.id).as_str()) && !is_phase_start(&st.id)) {
            assert!(matches!(st.state, StepState::Refused | StepState::NotRun), "{st:#?}");
        }
        assert_eq!(uid(&s, "database", "postgres-1").await, postgres);
        assert_eq!(uid(&s, "database", "storage-mariadb-0").await, storage);
        let pg = get(&s.client, "postgresql.cnpg.io/v1", "Cluster", Some(&s.example.ns("database")), "postgres").await;
        assert_eq!(pg["status"]["targetPrimary"], "postgres-1", "no promotion");
        // Flux: no part that keeps its objects suspended had started, so all are resumed.
        assert_eq!(flux_state(&s).await, flux_before);
        assert!(done.status.message.as_deref().unwrap_or("").contains("did not succeed"), "{:#?}", done.status.message);
        s.players.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn per_phase_approval_pauses_at_each_gate_and_continues_with_the_same_hash() {
        let mut s = scene("nlgate", ApprovalScope::PerPhase).await;
        let run = submit_node_loss(&s).await;
        let flux_before = flux_state(&s).await;
        approve(&s.journal, &run.id, &run.spec.plan_hash, "alice", lifeboat::config::Dur::hours(1)).await.unwrap();
        let human = human_confirms(&s, &run.id, false);
        let mut awaited = vec![];
        loop {
            remediator(&s).run_pending(None).await.unwrap();
            let r = s.journal.get(&run.id).await.unwrap().unwrap();
            if r.status.phase != Phase::AwaitingApproval {
                assert_eq!(r.status.phase, Phase::Succeeded, "{:#?}", r.status);
                break;
            }
            let phase = r.status.awaiting_phase.clone().unwrap_or_else(|| panic!("paused at a gate: {:#?}", r.status));
            if awaited.is_empty() {
                // Paused before the databases: nothing there ran, Flux is untouched.
                let pg = get(&s.client, "postgresql.cnpg.io/v1", "Cluster", Some(&s.example.ns("database")), "postgres").await;
                assert_eq!(pg["status"]["targetPrimary"], "postgres-1");
                assert_eq!(flux_state(&s).await, flux_before);
                assert_eq!(state_of(&r, "preflight.confirm-gone").state, StepState::Succeeded);
                let wrong = approve(&s.journal, &run.id, "0123456789abcdef01234567", "bob", lifeboat::config::Dur::hours(1)).await;
                assert!(matches!(wrong, Err(RemediationError::WrongHash { .. })), "{wrong:?}");
            }
            let gate = format!("{phase}.approve");
            assert_ne!(state_of(&r, &gate).state, StepState::Succeeded, "{gate} not passed yet");
            if phase == "apps" {
                // Its gate comes before Flux is suspended for it: a paused run leaves Flux alone.
                assert_eq!(flux_state(&s).await, flux_before);
            }
            awaited.push(phase);
            approve(&s.journal, &run.id, &run.spec.plan_hash, "alice", lifeboat::config::Dur::hours(1)).await.unwrap();
        }
        human.await.unwrap();
        s.players.assert_alive();
        assert_eq!(awaited, vec!["databases", "apps", "oidc", "cleanup"]);
        assert_eq!(flux_state(&s).await, flux_before, "resumed at the end");
        let done = s.journal.get(&run.id).await.unwrap().unwrap();
        assert!(done.status.steps.iter().all(|st| st.state == StepState::Succeeded && st.detail.is_some()), "{:#?}", done.status.steps);
        support::graph::assert_run_followed_needs(&done);
        s.players.stop().await;
    }
}
