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
    assert_eq!(phases, vec!["flux-suspend", "preflight", "databases", "apps", "watch", "cleanup", "flux-resume"]);
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
        ("watch-observability-deployment-teslamate", "watch"),
        ("watch-kube-system-deployment-kguardian-broker", "watch"),
        ("stale-cleanup", "cleanup"),
    ] {
        assert_eq!(phase_of(key), vec![phase.to_string()], "part {key} in {:?}", part_keys(&p));
    }
    assert!(!part_keys(&p).iter().any(|k| k.contains("volsync-src-forgejo-cache")), "the mover cache goes with forgejo, not as an app: {:?}", part_keys(&p));

    // Each phase starts only after the one before it (through its first steps).
    let first = |phase: &str| p.phases.iter().find(|ph| ph.name == phase).unwrap().steps.clone();
    let all = |phase: &str| p.phases.iter().find(|ph| ph.name == phase).unwrap().steps.iter().cloned().collect::<BTreeSet<_>>();
    for (earlier, later) in [("preflight", "databases"), ("databases", "apps"), ("apps", "watch"), ("watch", "cleanup"), ("cleanup", "flux-resume")] {
        for step in first(later) {
            let before = ancestors(&p, &step);
            assert!(all(earlier).iter().any(|s| before.contains(s)), "{step} must wait for phase {earlier}");
        }
    }
    // Nothing changes anything before a human confirmed the node is gone, except suspending Flux.
    for step in p.steps.iter().filter(|s| !matches!(s.action, Action::SuspendFlux { keep_suspended: false, .. }) && s.id != "preflight.confirm-gone") {
        assert!(ancestors(&p, &step.id).contains("preflight.confirm-gone"), "{} runs before the confirmation", step.id);
    }
    let confirm = p.steps.iter().find(|s| s.id == "preflight.confirm-gone").unwrap();
    assert!(matches!(&confirm.action, Action::Wait { until: WaitCondition::NodeConfirmedGone, object, .. } if object.name == NODE));
    assert!(confirm.preconditions.contains(&Precondition::NodeStillLost { node: NODE.into() }));

    // Waiting apps are only watched.
    for key in ["watch-observability-deployment-teslamate", "watch-kube-system-deployment-kguardian-broker"] {
        let steps: Vec<_> = p.steps.iter().filter(|s| s.id.starts_with(key)).collect();
        assert!(steps.len() == 1 && matches!(steps[0].action, Action::Wait { until: WaitCondition::WorkloadReady, .. }), "{steps:?}");
    }
    // Data is deleted only with the node still lost and a recovery source named.
    let deletions: Vec<_> = p.steps.iter().filter(|s| s.destroys_data()).collect();
    assert_eq!(deletions.len(), 8, "postgres-1, storage-/galera-mariadb-0, forgejo + its cache, sonarr, radarr, kanidm data");
    for s in deletions {
        assert!(s.recovery_source.is_some(), "{}", s.id);
        assert!(s.preconditions.iter().any(|c| matches!(c, Precondition::NodeStillLost { node } if node == NODE)), "{}", s.id);
    }
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
fn flux_is_suspended_once_at_the_start_and_resumed_at_the_end() {
    let snap = example_with(&example_config());
    let p = node_loss(&snap, NODE);
    let suspend_phase = &p.phases[0];
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
    assert_eq!(gates, vec!["preflight.approve", "databases.approve", "apps.approve", "cleanup.approve"], "the taint makes preflight change something; watching changes nothing");
    for gate in &gates {
        let phase = gate.trim_end_matches(".approve");
        assert_eq!(gated.phases.iter().find(|ph| ph.name == phase).unwrap().steps[0], *gate);
    }
    let taint = gated.steps.iter().find(|s| s.id == "preflight.out-of-service").expect("taint step");
    assert!(matches!(&taint.action, Action::TaintNode { key, .. } if key == "node.kubernetes.io/out-of-service"));
    assert!(taint.needs.contains(&"preflight.confirm-gone".to_string()));
    let once = node_loss(&example_with(&example_config()), NODE);
    assert_ne!(once.hash(), gated.hash(), "the approval scope is part of what is approved");
    assert!(!once.steps.iter().any(|s| matches!(s.action, Action::ApprovalGate { .. })));
}
