//! Composing playbook plans into one plan with phases in dependency order.
//!
//! Each part keeps its own DAG; its step ids get the part's key as prefix.
//! A part's first steps wait for every last step of the phase before it, so
//! a phase starts only once the previous one is done (and a failure stops
//! what depends on it, while the other parts of the same phase go on).
//!
//! Flux objects are handled once for the whole run: several parts may
//! suspend the same Kustomization, and one part resuming it while another
//! still works would let Flux fight that one. So every suspension moves to
//! the start of the run and every resume to its end.

use std::collections::{BTreeMap, HashMap};

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

const FLUX_SUSPEND_PHASE: &str = "flux-suspend";
const FLUX_RESUME_PHASE: &str = "flux-resume";

/// One plan from `phases`, in order. Findings and follow-ups of every part
/// are kept (prefixed with the part's target); empty phases are dropped.
/// With `gated`, every later phase that changes something starts with an
/// approval gate: the run pauses there until the phase is approved.
pub fn compose(playbook: &str, target: String, mut findings: Vec<String>, phases: Vec<PhaseParts>, gated: bool) -> Plan {
    let mut plan = Plan::new(playbook, target);
    let mut suspensions: BTreeMap<ObjectRef, bool> = BTreeMap::new();
    let mut resumed: Vec<ObjectRef> = vec![];
    // Kept suspended by a part that never resumes it (e.g. until a change
    // is in Git): nobody resumes it. A part that keeps it suspended only
    // when it fails, and resumes it on success, gets the final resume.
    let mut never_resume: Vec<ObjectRef> = vec![];
    let mut composed: Vec<(&'static str, String, Vec<Step>)> = vec![];
    // The run-wide suspensions go right before the first phase that needs
    // one: an earlier phase (e.g. waiting for a human) leaves Flux alone.
    let mut first_suspending: Option<usize> = None;
    for phase in phases {
        let suspensions_before = suspensions.len();
        let mut steps = vec![];
        for part in phase.parts {
            for f in &part.plan.findings {
                findings.push(format!("{}: {f}", part.plan.target));
            }
            for f in &part.plan.follow_ups {
                if !plan.follow_ups.contains(f) {
                    plan.follow_ups.push(f.clone());
                }
            }
            for step in &part.plan.steps {
                if let Action::SuspendFlux { object, keep_suspended: true } = &step.action {
                    let resumes = part.plan.steps.iter().any(|s| matches!(&s.action, Action::ResumeFlux { object: o } if o == object));
                    if !resumes {
                        never_resume.push(object.clone());
                    }
                }
            }
            steps.extend(prefixed_without_flux(&part, &mut suspensions, &mut resumed));
        }
        if suspensions.len() > suspensions_before && first_suspending.is_none() {
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
    if !suspensions.is_empty() {
        let steps = suspensions
            .iter()
            .map(|(object, keep)| Step {
                id: format!("{FLUX_SUSPEND_PHASE}.{}", slug(&object.to_string())),
                title: format!("Suspend {object} for the whole run"),
                action: Action::SuspendFlux { object: object.clone(), keep_suspended: *keep },
                needs: vec![],
                preconditions: vec![],
                recovery_source: None,
            })
            .collect();
        composed.insert(first_suspending.unwrap_or(0), (FLUX_SUSPEND_PHASE, "Suspend Flux for every object the run touches".into(), steps));
    }
    let to_resume: Vec<&ObjectRef> = resumed.iter().filter(|o| !never_resume.contains(*o)).collect();
    if !to_resume.is_empty() {
        let steps = to_resume
            .iter()
            .map(|object| Step {
                id: format!("{FLUX_RESUME_PHASE}.{}", slug(&object.to_string())),
                title: format!("Resume {object}"),
                action: Action::ResumeFlux { object: (*object).clone() },
                needs: vec![],
                preconditions: vec![],
                recovery_source: None,
            })
            .collect();
        composed.push((FLUX_RESUME_PHASE, "Resume Flux".into(), steps));
    }

    let mut previous_leaves: Vec<String> = vec![];
    for (index, (name, title, mut steps)) in composed.into_iter().enumerate() {
        let leaves = leaves(&steps);
        let changes_something = steps.iter().any(|s| !matches!(s.action, Action::Wait { .. }));
        let gate = (gated && index > 0 && changes_something && ![FLUX_SUSPEND_PHASE, FLUX_RESUME_PHASE].contains(&name)).then(|| Step {
            id: format!("{name}.approve"),
            title: format!("Approval of phase {name}: {title}"),
            action: Action::ApprovalGate { phase: name.to_string() },
            needs: previous_leaves.clone(),
            preconditions: vec![],
            recovery_source: None,
        });
        let roots_need = gate.as_ref().map_or(previous_leaves.clone(), |g| vec![g.id.clone()]);
        for step in &mut steps {
            if step.needs.is_empty() {
                step.needs = roots_need.clone();
            }
        }
        steps.splice(0..0, gate);
        plan.phases.push(PlanPhase { name: name.to_string(), title, steps: steps.iter().map(|s| s.id.clone()).collect() });
        plan.steps.extend(steps);
        previous_leaves = leaves;
    }
    plan
}

/// The part's steps with prefixed ids, minus its Flux suspend/resume steps
/// (recorded in `suspensions` / `resumed` for the run-wide ones). A step that
/// needed a removed step needs what that step needed instead.
fn prefixed_without_flux(part: &Part, suspensions: &mut BTreeMap<ObjectRef, bool>, resumed: &mut Vec<ObjectRef>) -> Vec<Step> {
    let mut replaced: HashMap<&str, Vec<String>> = HashMap::new();
    let mut out = vec![];
    for step in &part.plan.steps {
        let needs: Vec<String> = step
            .needs
            .iter()
            .flat_map(|n| replaced.get(n.as_str()).cloned().unwrap_or_else(|| vec![format!("{}.{n}", part.key)]))
            .collect();
        match &step.action {
            Action::SuspendFlux { object, keep_suspended } => {
                let keep = suspensions.entry(object.clone()).or_insert(false);
                *keep |= *keep_suspended;
                replaced.insert(&step.id, needs);
            }
            Action::ResumeFlux { object } => {
                if !resumed.contains(object) {
                    resumed.push(object.clone());
                }
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

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|x| seen.insert(x.clone()));
    v
}

/// Steps no other step of the same group depends on.
fn leaves(steps: &[Step]) -> Vec<String> {
    steps.iter().filter(|s| !steps.iter().any(|o| o.needs.contains(&s.id))).map(|s| s.id.clone()).collect()
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
    fn a_part_that_keeps_flux_suspended_on_failure_but_resumes_on_success_gets_the_final_resume() {
        let ks = ObjectRef::namespaced("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "media", "sonarr");
        let a = part("a", vec![step("s", Action::SuspendFlux { object: ks.clone(), keep_suspended: true }, &[]), wait("w", &["s"]), step("r", Action::ResumeFlux { object: ks.clone() }, &["w"])]);
        let plan = compose("node-loss", "t".into(), vec![], vec![PhaseParts { name: "one", title: "One".into(), parts: vec![a] }], false);
        assert!(matches!(plan.steps[0].action, Action::SuspendFlux { keep_suspended: true, .. }), "a failed run still leaves it suspended");
        assert!(matches!(&plan.steps.last().unwrap().action, Action::ResumeFlux { object } if *object == ks));
    }

    #[test]
    fn a_part_that_keeps_flux_suspended_wins_and_nothing_resumes_it() {
        let ks = ObjectRef::namespaced("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "db", "postgres");
        let a = part("a", vec![step("s", Action::SuspendFlux { object: ks.clone(), keep_suspended: true }, &[]), wait("w", &["s"])]);
        let b = part("b", vec![step("s", Action::SuspendFlux { object: ks.clone(), keep_suspended: false }, &[]), wait("v", &["s"]), step("r", Action::ResumeFlux { object: ks }, &["v"])]);
        let plan = compose("node-loss", "t".into(), vec![], vec![PhaseParts { name: "one", title: "One".into(), parts: vec![a, b] }], false);
        assert!(matches!(plan.steps[0].action, Action::SuspendFlux { keep_suspended: true, .. }));
        assert!(!plan.steps.iter().any(|s| matches!(s.action, Action::ResumeFlux { .. })));
    }

    #[test]
    fn findings_and_follow_ups_are_kept_and_nothing_to_do_stays_nothing() {
        let mut p = Plan::new("x", "Cluster db/pg");
        p.findings.push("all good".into());
        p.follow_ups.push("commit it".into());
        let plan = compose("node-loss", "t".into(), vec!["lost node n1".into()], vec![PhaseParts { name: "one", title: "One".into(), parts: vec![Part { key: "k".into(), plan: p }] }], false);
        assert!(plan.nothing_to_do());
        assert_eq!(plan.findings, vec!["lost node n1".to_string(), "Cluster db/pg: all good".to_string()]);
        assert_eq!(plan.follow_ups, vec!["commit it".to_string()]);
        assert_eq!(slug("Kustomization media/immich"), "kustomization-media-immich");
    }
}
