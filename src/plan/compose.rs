//! Composing playbook plans into one plan with phases in dependency order.
//!
//! Each part keeps its own DAG; its step ids get the part's key as prefix.
//! By default a part's first steps wait for every last step of the phase
//! before it, so a phase starts only once the previous one is done (and a
//! failure stops what depends on it, while the other parts of the same phase
//! go on). When several first steps would each list the same several last
//! steps, they wait for one `PhaseStart` step that waits for those instead
//! (the approval gate plays that part in a gated plan). `Dependencies` loosens that where the caller knows better: a
//! phase may skip earlier phases (its parts then wait only for the parts of
//! those phases they name), and a phase may wait for everything before it.
//! With approval gates phases stay in sequence: a human approves them one at
//! a time, in the order shown.
//!
//! Flux objects are handled once for the whole run: several parts may
//! suspend the same Kustomization, and one part resuming it while another
//! still works would let Flux fight that one. So every suspension moves to
//! right before the first phase that needs one (an earlier phase, e.g.
//! waiting for a human, leaves Flux alone) and every resume to the end. A part that keeps its
//! Flux object suspended when it stops (e.g. volsync-restore: resuming after
//! a failed restore would start the app on an empty volume) keeps a "hold"
//! step where its suspension was: only once that part has started does a
//! stopped run leave the object suspended; before, the runner resumes it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{Action, ObjectRef, Plan, Step};

/// A named group of steps, shown and reported together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanPhase {
    pub name: String,
    pub title: String,
    pub steps: Vec<String>,
}

pub struct Part {
    /// Unique within the composed plan; prefixes the part's step ids.
    pub key: String,
    pub plan: Plan,
}

pub struct PhaseParts {
    pub name: &'static str,
    pub title: String,
    pub parts: Vec<Part>,
}

/// What waits for what beyond "each phase waits for the one before".
#[derive(Default)]
pub struct Dependencies {
    /// Phase → earlier phases it does not wait for as a whole: its parts
    /// start once the nearest earlier phase not listed is done (or the
    /// run-wide Flux suspension, when that comes between), plus the parts
    /// `part_needs` names.
    pub independent_of: BTreeMap<&'static str, Vec<&'static str>>,
    /// Phases that start only once every step before them is done.
    pub after_everything: Vec<&'static str>,
    /// Part key → keys of earlier parts whose every step its first steps wait for.
    pub part_needs: BTreeMap<String, BTreeSet<String>>,
}

const FLUX_SUSPEND_PHASE: &str = "flux-suspend";
const FLUX_RESUME_PHASE: &str = "flux-resume";

/// One plan from `phases`, in order. Findings and follow-ups of every part
/// are kept (prefixed with the part's target); empty phases are dropped.
/// With `gated`, every later phase that changes something starts with an
/// approval gate: the run pauses there until the phase is approved.
pub fn compose(playbook: &str, target: String, findings: Vec<String>, phases: Vec<PhaseParts>, gated: bool) -> Plan {
    compose_with(playbook, target, findings, phases, gated, &Dependencies::default())
}

/// `compose`, with the phases and parts waiting for what `dependencies` says
/// (ignored when `gated`: approved phases run in sequence).
pub fn compose_with(playbook: &str, target: String, mut findings: Vec<String>, phases: Vec<PhaseParts>, gated: bool, dependencies: &Dependencies) -> Plan {
    let mut plan = Plan::new(playbook, target);
    // Each part's steps (by id) and its last steps, for `part_needs`.
    let mut part_of: HashMap<String, String> = HashMap::new();
    let mut part_leaves: HashMap<String, Vec<String>> = HashMap::new();
    let mut flux = FluxUse::default();
    let mut composed: Vec<(&'static str, String, Vec<Step>)> = vec![];
    // The run-wide suspensions go right before the first phase that needs
    // one: an earlier phase (e.g. waiting for a human) leaves Flux alone.
    let mut first_suspending: Option<usize> = None;
    for phase in phases {
        let suspensions_before = flux.suspended.len();
        let mut steps = vec![];
        for part in phase.parts {
            for f in &part.plan.findings {
                // Prefixed with the part's target, unless the finding already names it first.
                findings.push(if f.starts_with(&part.plan.target) { f.clone() } else { format!("{}: {f}", part.plan.target) });
            }
            for f in &part.plan.follow_ups {
                if !plan.follow_ups.contains(f) {
                    plan.follow_ups.push(f.clone());
                }
            }
            let part_steps = prefixed_without_flux(&part, &mut flux);
            part_leaves.insert(part.key.clone(), leaves(&part_steps));
            part_of.extend(part_steps.iter().map(|s| (s.id.clone(), part.key.clone())));
            steps.extend(part_steps);
        }
        if flux.suspended.len() > suspensions_before && first_suspending.is_none() {
            first_suspending = Some(composed.len());
        }
        if !steps.is_empty() {
            composed.push((phase.name, phase.title, steps));
        }
    }
    plan.findings = findings;
    if composed.is_empty() {
        return plan;
    }
    if !flux.suspended.is_empty() {
        let steps = flux
            .suspended
            .iter()
            .map(|object| Step {
                id: format!("{FLUX_SUSPEND_PHASE}.{}", slug(&object.to_string())),
                title: format!("Suspend {object} for the whole run"),
                action: Action::SuspendFlux { object: object.clone(), keep_suspended: false },
                needs: vec![],
                preconditions: vec![],
                recovery_source: None,
            })
            .collect();
        composed.insert(first_suspending.unwrap_or(0), (FLUX_SUSPEND_PHASE, "Suspend Flux for every object the run touches".into(), steps));
    }
    let to_resume: Vec<&ObjectRef> = flux.suspended.iter().filter(|o| !flux.held.contains(*o)).collect();
    if !to_resume.is_empty() {
        let steps = to_resume
            .iter()
            .map(|object| Step {
                id: format!("{FLUX_RESUME_PHASE}.{}", slug(&object.to_string())),
                title: format!("Resume {object}"),
                action: Action::ResumeFlux { object: (*object).clone() },
                needs: vec![],
                preconditions: flux.resume_preconditions.get(*object).cloned().unwrap_or_default(),
                recovery_source: None,
            })
            .collect();
        composed.push((FLUX_RESUME_PHASE, "Resume Flux".into(), steps));
    }

    // Which phases start with an approval gate. The gate of the phase the
    // run-wide suspensions precede comes before them: a run paused for
    // approval leaves Flux alone.
    let gate_of: Vec<Option<(String, String)>> = composed
        .iter()
        .enumerate()
        .map(|(index, (name, title, steps))| {
            let changes_something = steps.iter().any(|s| !matches!(s.action, Action::Wait { .. }));
            (gated && index > 0 && changes_something && ![FLUX_SUSPEND_PHASE, FLUX_RESUME_PHASE].contains(name)).then(|| (name.to_string(), title.clone()))
        })
        .collect();
    let suspend_before = composed.iter().position(|(name, _, _)| *name == FLUX_SUSPEND_PHASE).and_then(|i| composed.get(i + 1)).map(|(name, _, _)| *name);
    let mut previous_leaves: Vec<String> = vec![];
    let mut phase_leaves: Vec<Vec<String>> = vec![];
    for (index, (name, title, mut steps)) in composed.into_iter().enumerate() {
        let leaves = leaves(&steps);
        if !gated && index > 0 {
            // The Flux suspension waits for what the phase it precedes would have waited for.
            let waits_as = if name == FLUX_SUSPEND_PHASE { suspend_before.unwrap_or(name) } else { name };
            previous_leaves = if name == FLUX_RESUME_PHASE || dependencies.after_everything.contains(&name) {
                self::leaves(&plan.steps)
            } else {
                let skipped = dependencies.independent_of.get(waits_as).map_or(&[][..], Vec::as_slice);
                plan.phases.iter().rposition(|p| !skipped.contains(&p.name.as_str())).map_or(vec![], |followed| phase_leaves[followed].clone())
            };
        }
        let gate_for = match name {
            FLUX_SUSPEND_PHASE => gate_of.get(index + 1).cloned().flatten(),
            _ if index > 0 && plan.phases[index - 1].name == FLUX_SUSPEND_PHASE => None,
            _ => gate_of[index].clone(),
        };
        let gate = gate_for.map(|(phase, phase_title)| Step {
            id: format!("{phase}.approve"),
            title: format!("Approval of phase {phase}: {phase_title}"),
            action: Action::ApprovalGate { phase },
            needs: previous_leaves.clone(),
            preconditions: vec![],
            recovery_source: None,
        });
        let roots = steps.iter().filter(|s| s.needs.is_empty()).count();
        let join = gate.or_else(|| {
            saves_edges(previous_leaves.len(), roots).then(|| Step {
                id: format!("{name}.start"),
                title: format!("Start of phase {name}: {title}"),
                action: Action::PhaseStart { phase: name.to_string() },
                needs: previous_leaves.clone(),
                preconditions: vec![],
                recovery_source: None,
            })
        });
        let roots_need = join.as_ref().map_or(previous_leaves.clone(), |j| vec![j.id.clone()]);
        let known: HashSet<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
        for step in &mut steps {
            if step.needs.is_empty() {
                let mut needs = roots_need.clone();
                let named = part_of.get(&step.id).and_then(|key| dependencies.part_needs.get(key)).filter(|_| !gated);
                // Only parts of earlier phases: a step never waits for one after it.
                needs.extend(named.into_iter().flatten().flat_map(|key| part_leaves.get(key)).flatten().filter(|id| known.contains(id.as_str())).cloned());
                step.needs = dedup(needs);
            }
        }
        steps.splice(0..0, join);
        plan.phases.push(PlanPhase { name: name.to_string(), title, steps: steps.iter().map(|s| s.id.clone()).collect() });
        plan.steps.extend(steps);
        phase_leaves.push(leaves.clone());
        previous_leaves = leaves;
    }
    plan
}

/// The Flux objects the parts suspend, and those a part keeps suspended
/// after the run (it suspends them to keep and never resumes them).
#[derive(Default)]
struct FluxUse {
    suspended: std::collections::BTreeSet<ObjectRef>,
    held: std::collections::BTreeSet<ObjectRef>,
    /// What the parts re-check live before resuming an object (e.g. that a
    /// ReplicationDestination still carries `ssa: IfNotPresent`).
    resume_preconditions: std::collections::BTreeMap<ObjectRef, Vec<super::Precondition>>,
}

/// The part's steps with prefixed ids, minus its Flux suspend/resume steps
/// (recorded in `flux` for the run-wide ones); a suspension the part keeps
/// stays as a hold step (an idempotent suspend with `keep_suspended`). A step
/// that needed a removed step needs what that step needed instead.
fn prefixed_without_flux(part: &Part, flux: &mut FluxUse) -> Vec<Step> {
    let resumes: Vec<&ObjectRef> = part.plan.steps.iter().filter_map(|s| if let Action::ResumeFlux { object } = &s.action { Some(object) } else { None }).collect();
    let mut replaced: HashMap<&str, Vec<String>> = HashMap::new();
    let mut out = vec![];
    for step in &part.plan.steps {
        let needs: Vec<String> = step.needs.iter().flat_map(|n| replaced.get(n.as_str()).cloned().unwrap_or_else(|| vec![format!("{}.{n}", part.key)])).collect();
        match &step.action {
            Action::SuspendFlux { object, keep_suspended: true } => {
                flux.suspended.insert(object.clone());
                let resumed_later = resumes.contains(&object);
                if !resumed_later {
                    flux.held.insert(object.clone());
                }
                let mut hold = step.clone();
                hold.id = format!("{}.{}", part.key, step.id);
                hold.needs = dedup(needs);
                hold.title = if resumed_later {
                    format!("Hold {object} suspended from here on: if the run stops now it stays suspended (resumed when the run ends well)")
                } else {
                    format!("Hold {object} suspended after the run (see the follow-ups)")
                };
                out.push(hold);
            }
            Action::SuspendFlux { object, .. } => {
                flux.suspended.insert(object.clone());
                replaced.insert(&step.id, needs);
            }
            Action::ResumeFlux { object } => {
                let checks = flux.resume_preconditions.entry(object.clone()).or_default();
                checks.extend(step.preconditions.iter().filter(|p| !checks.contains(p)).cloned().collect::<Vec<_>>());
                replaced.insert(&step.id, needs);
            }
            _ => {
                let mut step = step.clone();
                step.id = format!("{}.{}", part.key, step.id);
                step.needs = dedup(needs);
                out.push(step);
            }
        }
    }
    out
}

/// Whether `roots` first steps that each wait for the same `leaves` last
/// steps should wait through one join step instead: it takes
/// `leaves + roots` edges in place of `leaves × roots` (for 500 apps after
/// 500 Flux suspensions, 1,000 instead of 250,000).
fn saves_edges(leaves: usize, roots: usize) -> bool {
    leaves * roots > leaves + roots
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|x| seen.insert(x.clone()));
    v
}

/// Steps no other step of the same group depends on. One pass over the needs:
/// a node-loss plan for hundreds of claims has thousands of steps.
fn leaves(steps: &[Step]) -> Vec<String> {
    let needed: HashSet<&str> = steps.iter().flat_map(|s| s.needs.iter().map(String::as_str)).collect();
    steps.iter().filter(|s| !needed.contains(s.id.as_str())).map(|s| s.id.clone()).collect()
}

/// `Kustomization media/immich` → `kustomization-media-immich`.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{ObjectRef, WaitCondition};

    fn step(id: &str, action: Action, needs: &[&str]) -> Step {
        Step { id: id.into(), title: id.into(), action, needs: needs.iter().map(|n| n.to_string()).collect(), preconditions: vec![], recovery_source: None }
    }
    fn wait(id: &str, needs: &[&str]) -> Step {
        let object = ObjectRef::pod("ns", id);
        step(id, Action::Wait { object, until: WaitCondition::ServiceHasEndpoints, timeout_seconds: 1 }, needs)
    }
    fn part(key: &str, steps: Vec<Step>) -> Part {
        Part { key: key.into(), plan: Plan { steps, ..Plan::new("p", key) } }
    }

    #[test]
    fn phases_run_in_order_and_flux_is_suspended_once_for_the_whole_run() {
        let ks = ObjectRef::namespaced("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "flux-system", "apps");
        let suspend = |keep| Action::SuspendFlux { object: ks.clone(), keep_suspended: keep };
        let resume = Action::ResumeFlux { object: ks.clone() };
        let a = part("a", vec![step("suspend", suspend(false), &[]), wait("w1", &["suspend"]), wait("w2", &["w1"]), step("resume", resume.clone(), &["w2"])]);
        let b = part("b", vec![step("suspend", suspend(false), &[]), wait("x", &["suspend"]), step("resume", resume, &["x"])]);
        let c = part("c", vec![wait("y", &[]), wait("z", &[])]);
        let plan = compose(
            "node-loss",
            "t".into(),
            vec![],
            vec![
                PhaseParts { name: "zero", title: "Zero".into(), parts: vec![part("p", vec![wait("confirm", &[])])] },
                PhaseParts { name: "first", title: "First".into(), parts: vec![a] },
                PhaseParts { name: "empty", title: "Empty".into(), parts: vec![] },
                PhaseParts { name: "second", title: "Second".into(), parts: vec![b, c] },
            ],
            false,
        );
        plan.validate().unwrap();
        let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
        let suspend_id = "flux-suspend.kustomization-flux-system-apps";
        let resume_id = "flux-resume.kustomization-flux-system-apps";
        assert_eq!(ids, vec!["p.confirm", suspend_id, "a.w1", "a.w2", "b.x", "c.y", "c.z", resume_id]);
        let needs = |id: &str| plan.steps.iter().find(|s| s.id == id).unwrap().needs.clone();
        assert_eq!(needs(suspend_id), vec!["p.confirm".to_string()], "Flux is suspended only once the phase before is done");
        assert_eq!(needs("a.w1"), vec![suspend_id.to_string()], "the part's suspend became the run's");
        assert_eq!(needs("b.x"), vec!["a.w2".to_string()], "phase two waits for phase one");
        assert_eq!(needs("c.z"), vec!["a.w2".to_string()]);
        assert_eq!(needs(resume_id), vec!["b.x".to_string(), "c.y".to_string(), "c.z".to_string()], "resumed after everything");
        let phases: Vec<&str> = plan.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(phases, vec!["zero", "flux-suspend", "first", "second", "flux-resume"]);
    }

    #[test]
    fn gated_phases_start_with_an_approval_gate_except_the_first_and_pure_watching() {
        let scale = |id: &str| step(id, Action::Scale { object: ObjectRef::namespaced("apps/v1", "Deployment", "ns", id), replicas: 1 }, &[]);
        let plan = compose(
            "node-loss",
            "t".into(),
            vec![],
            vec![
                PhaseParts { name: "one", title: "One".into(), parts: vec![part("a", vec![scale("s1")])] },
                PhaseParts { name: "two", title: "Two".into(), parts: vec![part("b", vec![scale("s2"), wait("w", &["s2"])])] },
                PhaseParts { name: "watch", title: "Watch".into(), parts: vec![part("c", vec![wait("v", &[])])] },
            ],
            true,
        );
        plan.validate().unwrap();
        let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, vec!["a.s1", "two.approve", "b.s2", "b.w", "c.v"]);
        let needs = |id: &str| plan.steps.iter().find(|s| s.id == id).unwrap().needs.clone();
        assert_eq!(needs("two.approve"), vec!["a.s1".to_string()]);
        assert_eq!(needs("b.s2"), vec!["two.approve".to_string()]);
        assert_eq!(needs("c.v"), vec!["b.w".to_string()], "watching needs no approval");
        assert_eq!(plan.phases[1].steps[0], "two.approve");
    }

    #[test]
    fn the_gate_of_the_phase_that_needs_flux_suspended_comes_before_the_suspension() {
        let ks = ObjectRef::namespaced("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "utils", "forgejo");
        let scale = |id: &str| step(id, Action::Scale { object: ObjectRef::namespaced("apps/v1", "Deployment", "utils", id), replicas: 0 }, &[]);
        let apps = part(
            "b",
            vec![step("s", Action::SuspendFlux { object: ks.clone(), keep_suspended: false }, &[]), scale("down"), step("r", Action::ResumeFlux { object: ks }, &["down"])],
        );
        let plan = compose(
            "node-loss",
            "t".into(),
            vec![],
            vec![
                PhaseParts { name: "preflight", title: "Preflight".into(), parts: vec![part("a", vec![wait("confirm", &[])])] },
                PhaseParts { name: "apps", title: "Apps".into(), parts: vec![apps] },
            ],
            true,
        );
        plan.validate().unwrap();
        let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, vec!["a.confirm", "apps.approve", "flux-suspend.kustomization-utils-forgejo", "b.down", "flux-resume.kustomization-utils-forgejo"]);
        let needs = |id: &str| plan.steps.iter().find(|s| s.id == id).unwrap().needs.clone();
        assert_eq!(needs("flux-suspend.kustomization-utils-forgejo"), vec!["apps.approve".to_string()], "a paused run has not touched Flux");
        assert_eq!(needs("b.down"), vec!["flux-suspend.kustomization-utils-forgejo".to_string()]);
    }

    #[test]
    fn a_part_that_keeps_flux_suspended_holds_it_in_place_and_nothing_resumes_it() {
        let ks = ObjectRef::namespaced("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "db", "postgres");
        let a = part("a", vec![step("s", Action::SuspendFlux { object: ks.clone(), keep_suspended: true }, &[]), wait("w", &["s"])]);
        let b = part(
            "b",
            vec![step("s", Action::SuspendFlux { object: ks.clone(), keep_suspended: false }, &[]), wait("v", &["s"]), step("r", Action::ResumeFlux { object: ks }, &["v"])],
        );
        let plan = compose("node-loss", "t".into(), vec![], vec![PhaseParts { name: "one", title: "One".into(), parts: vec![a, b] }], false);
        plan.validate().unwrap();
        assert!(matches!(plan.steps[0].action, Action::SuspendFlux { keep_suspended: false, .. }), "suspended at the start like any other");
        let hold = plan.steps.iter().find(|s| s.id == "a.s").expect("the keeping part holds it where it suspended it");
        assert!(matches!(hold.action, Action::SuspendFlux { keep_suspended: true, .. }));
        assert_eq!(plan.steps.iter().find(|s| s.id == "a.w").unwrap().needs, vec!["a.s".to_string()]);
        assert!(!plan.steps.iter().any(|s| matches!(s.action, Action::ResumeFlux { .. })), "a part keeps it suspended after the run");
    }

    #[test]
    fn a_part_that_keeps_flux_suspended_only_on_failure_is_resumed_at_the_end() {
        let hr = ObjectRef::namespaced("helm.toolkit.fluxcd.io/v2", "HelmRelease", "utils", "forgejo");
        let a = part(
            "a",
            vec![step("s", Action::SuspendFlux { object: hr.clone(), keep_suspended: true }, &[]), wait("w", &["s"]), step("r", Action::ResumeFlux { object: hr.clone() }, &["w"])],
        );
        let plan = compose("node-loss", "t".into(), vec![], vec![PhaseParts { name: "apps", title: "Apps".into(), parts: vec![a] }], false);
        plan.validate().unwrap();
        let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, vec!["flux-suspend.helmrelease-utils-forgejo", "a.s", "a.w", "flux-resume.helmrelease-utils-forgejo"]);
        assert_eq!(plan.steps[1].needs, vec!["flux-suspend.helmrelease-utils-forgejo".to_string()]);
        assert_eq!(plan.steps[3].needs, vec!["a.w".to_string()]);
    }

    #[test]
    fn parts_wait_for_the_parts_they_name_and_skipped_phases_only_through_them() {
        let ks = ObjectRef::namespaced("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "web", "x");
        let x = || {
            let (suspend, resume) = (Action::SuspendFlux { object: ks.clone(), keep_suspended: false }, Action::ResumeFlux { object: ks.clone() });
            part("x", vec![step("s", suspend, &[]), wait("restore", &["s"]), step("r", resume, &["restore"])])
        };
        let phases = || {
            vec![
                PhaseParts { name: "preflight", title: "P".into(), parts: vec![part("p", vec![wait("confirm", &[])])] },
                PhaseParts { name: "databases", title: "D".into(), parts: vec![part("a", vec![wait("a1", &[]), wait("a2", &["a1"])]), part("b", vec![wait("b1", &[])])] },
                PhaseParts { name: "apps", title: "A".into(), parts: vec![x(), part("y", vec![wait("restore", &[])]), part("z", vec![wait("restore", &[])])] },
                PhaseParts { name: "watch", title: "W".into(), parts: vec![part("w", vec![wait("ready", &[])])] },
                PhaseParts { name: "cleanup", title: "C".into(), parts: vec![part("c", vec![wait("gc", &[])])] },
            ]
        };
        let dependencies = Dependencies {
            independent_of: BTreeMap::from([("apps", vec!["databases"]), ("watch", vec!["databases", "apps"])]),
            after_everything: vec!["cleanup"],
            part_needs: BTreeMap::from([
                ("x".to_string(), BTreeSet::from(["a".to_string()])),
                ("y".to_string(), BTreeSet::from(["a".to_string(), "b".to_string()])),
                ("w".to_string(), BTreeSet::from(["y".to_string()])),
                // A part after it is never waited for: the plan stays in order.
                ("a".to_string(), BTreeSet::from(["x".to_string()])),
            ]),
        };
        let plan = compose_with("node-loss", "t".into(), vec![], phases(), false, &dependencies);
        plan.validate().unwrap();
        let needs = |id: &str| plan.steps.iter().find(|s| s.id == id).unwrap().needs.clone();
        let suspend = "flux-suspend.kustomization-web-x";
        assert_eq!(needs("a.a1"), vec!["p.confirm".to_string()]);
        assert_eq!(needs(suspend), vec!["p.confirm".to_string()], "the suspension waits for what the apps would have, not the databases");
        assert_eq!(needs("x.restore"), vec![suspend.to_string(), "a.a2".to_string()], "x uses a");
        assert_eq!(needs("y.restore"), vec![suspend.to_string(), "a.a2".to_string(), "b.b1".to_string()], "y uses a and b");
        assert_eq!(needs("z.restore"), vec![suspend.to_string()], "z uses no database: it starts beside them");
        assert_eq!(needs("w.ready"), vec![suspend.to_string(), "y.restore".to_string()], "the watch waits for what it watches, after Flux is suspended");
        assert_eq!(needs("c.gc"), vec!["x.restore".to_string(), "z.restore".to_string(), "w.ready".to_string()], "cleanup waits for everything (the databases through x and y)");
        assert_eq!(needs("flux-resume.kustomization-web-x"), vec!["c.gc".to_string()]);
        let phase_names: Vec<&str> = plan.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(phase_names, vec!["preflight", "databases", "flux-suspend", "apps", "watch", "cleanup", "flux-resume"]);

        // Approved phase by phase, the phases stay in sequence.
        let gated = compose_with("node-loss", "t".into(), vec![], phases(), true, &dependencies);
        let needs = |id: &str| gated.steps.iter().find(|s| s.id == id).unwrap().needs.clone();
        assert_eq!(needs(suspend), vec!["a.a2".to_string(), "b.b1".to_string()]);
        assert_eq!(needs("z.restore"), vec![suspend.to_string()]);
        assert_eq!(needs("w.ready"), vec!["x.restore".to_string(), "y.restore".to_string(), "z.restore".to_string()]);
    }

    #[test]
    fn many_first_steps_after_many_last_steps_wait_through_one_phase_start() {
        let restart = || step("w", Action::RestartPod { pod: ObjectRef::pod("ns", "p") }, &[]);
        let parts = |prefix: &str, n: usize| (0..n).map(|i| part(&format!("{prefix}{i}"), vec![restart()])).collect::<Vec<_>>();
        let phases = |before: usize, after: usize| {
            vec![PhaseParts { name: "before", title: "Before".into(), parts: parts("b", before) }, PhaseParts { name: "after", title: "After".into(), parts: parts("a", after) }]
        };
        let plan = compose("node-loss", "t".into(), vec![], phases(3, 4), false);
        plan.validate().unwrap();
        let start = plan.steps.iter().find(|s| s.id == "after.start").expect("a join step");
        assert_eq!(start.action, Action::PhaseStart { phase: "after".into() });
        assert_eq!(start.needs, ["b0.w", "b1.w", "b2.w"]);
        assert_eq!(plan.phases[1].steps, ["after.start", "a0.w", "a1.w", "a2.w", "a3.w"]);
        for id in ["a0.w", "a1.w", "a2.w", "a3.w"] {
            assert_eq!(plan.steps.iter().find(|s| s.id == id).unwrap().needs, ["after.start"], "{id}");
        }
        assert_eq!(plan.steps.iter().map(|s| s.needs.len()).sum::<usize>(), 3 + 4);

        // 2 × 2 edges are no more than 2 + 2: each first step lists both.
        let plan = compose("node-loss", "t".into(), vec![], phases(2, 2), false);
        assert!(!plan.steps.iter().any(|s| matches!(s.action, Action::PhaseStart { .. })));
        assert_eq!(plan.steps.iter().find(|s| s.id == "a1.w").unwrap().needs, ["b0.w", "b1.w"]);

        // Gated, the approval gate is the join.
        let plan = compose("node-loss", "t".into(), vec![], phases(3, 4), true);
        assert!(!plan.steps.iter().any(|s| matches!(s.action, Action::PhaseStart { .. })));
        assert_eq!(plan.steps.iter().find(|s| s.id == "a3.w").unwrap().needs, ["after.approve"]);
    }

    #[test]
    fn findings_and_follow_ups_are_kept_and_nothing_to_do_stays_nothing() {
        let mut p = Plan::new("x", "Cluster db/pg");
        p.findings.push("all good".into());
        p.follow_ups.push("commit it".into());
        let plan = compose(
            "node-loss",
            "t".into(),
            vec!["lost node n1".into()],
            vec![PhaseParts { name: "one", title: "One".into(), parts: vec![Part { key: "k".into(), plan: p }] }],
            false,
        );
        assert!(plan.nothing_to_do());
        assert_eq!(plan.findings, vec!["lost node n1".to_string(), "Cluster db/pg: all good".to_string()]);
        assert_eq!(plan.follow_ups, vec!["commit it".to_string()]);
        assert_eq!(slug("Kustomization media/immich"), "kustomization-media-immich");
    }
}
