//! Properties of the runner's scheduler over random plans and random step
//! outcomes (the step work itself is a stand-in here; the API-facing steps
//! are tested against the real apiserver in playbook_*.rs).

mod support;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lifeboat::act::runner::{schedule, Outcome, RunLimits, RunReport, StepStatus};
use lifeboat::plan::{Action, ObjectRef, Plan, Step};
use proptest::prelude::*;

fn step(i: usize, needs: Vec<usize>) -> Step {
    Step {
        id: format!("s{i}"),
        title: format!("step {i}"),
        action: Action::Delete { object: ObjectRef::namespaced("v1", "ConfigMap", "ns", &format!("c{i}")) },
        needs: needs.into_iter().map(|n| format!("s{n}")).collect(),
        preconditions: vec![],
        recovery_source: None,
    }
}

/// A random DAG: each step may depend on any earlier step.
fn plans() -> impl Strategy<Value = (Plan, Vec<bool>)> {
    (1usize..12)
        .prop_flat_map(|n| {
            let needs = (0..n).map(|i| proptest::collection::vec(0..i.max(1), 0..3).prop_map(move |v| if i == 0 { vec![] } else { v })).collect::<Vec<_>>();
            (needs, proptest::collection::vec(proptest::bool::weighted(0.8), n))
        })
        .prop_map(|(needs, outcomes)| {
            let steps = needs
                .into_iter()
                .enumerate()
                .map(|(i, mut n)| {
                    n.sort();
                    n.dedup();
                    step(i, n)
                })
                .collect();
            (Plan { steps, ..Plan::new("prop", "t") }, outcomes)
        })
}

/// What the stand-in step work saw, in order.
#[derive(Clone, Debug, PartialEq)]
enum Event {
    Started(String),
    Finished(String),
}

fn run(plan: &Plan, outcomes: &[bool], limits: &RunLimits) -> (RunReport, Vec<Event>, usize) {
    let mut report = lifeboat::act::runner::fresh_report(plan);
    let order = RefCell::new(Vec::new());
    let in_flight = AtomicUsize::new(0);
    let peak = AtomicUsize::new(0);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(schedule(plan, limits, &mut report, &|_| {}, |s: &Step| {
        let i: usize = s.id[1..].parse().unwrap();
        let ok = outcomes[i];
        let (order, in_flight, peak) = (&order, &in_flight, &peak);
        async move {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            order.borrow_mut().push(Event::Started(format!("s{i}")));
            tokio::time::sleep(Duration::from_millis(1 + (i as u64 % 3))).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            order.borrow_mut().push(Event::Finished(format!("s{i}")));
            if ok {
                StepStatus::Succeeded { detail: "ok".into() }
            } else {
                StepStatus::Failed { error: "boom".into() }
            }
        }
    }));
    let order = order.into_inner();
    (report, order, peak.load(Ordering::SeqCst))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn a_step_runs_iff_all_its_needs_succeeded((plan, outcomes) in plans(), concurrency in 1usize..4) {
        let limits = RunLimits { concurrency, ..RunLimits::default() };
        let (report, order, peak) = run(&plan, &outcomes, &limits);
        prop_assert!(peak <= concurrency, "{} steps at once with concurrency {}", peak, concurrency);
        let position: HashMap<&str, usize> = order.iter().enumerate().filter_map(|(i, e)| match e { Event::Started(s) => Some((s.as_str(), i)), _ => None }).collect();
        let finished: HashMap<&str, usize> = order.iter().enumerate().filter_map(|(i, e)| match e { Event::Finished(s) => Some((s.as_str(), i)), _ => None }).collect();
        let succeeded = |id: &str| report.steps.iter().any(|s| s.id == id && matches!(s.status, StepStatus::Succeeded { .. }));
        for (i, step) in plan.steps.iter().enumerate() {
            let ran = position.contains_key(step.id.as_str());
            let needs_ok = step.needs.iter().all(|n| succeeded(n));
            prop_assert_eq!(ran, needs_ok, "step {} ran={} needs_ok={}", step.id, ran, needs_ok);
            if ran {
                for n in &step.needs {
                    prop_assert!(finished[n.as_str()] < position[step.id.as_str()], "{} started before its dependency {} finished", step.id, n);
                }
                prop_assert_eq!(matches!(report.steps[i].status, StepStatus::Succeeded { .. }), outcomes[i]);
            } else {
                prop_assert_eq!(&report.steps[i].status, &StepStatus::NotRun);
            }
        }
        support::graph::assert_report_followed_needs(&plan, &report);
        let all_ok = report.steps.iter().all(|s| matches!(s.status, StepStatus::Succeeded { .. }));
        prop_assert_eq!(report.outcome == Outcome::Succeeded, all_ok);
        // Every step that did not succeed is in the commands left to run by hand.
        let failed = report.steps.iter().filter(|s| !matches!(s.status, StepStatus::Succeeded { .. })).count();
        prop_assert_eq!(report.remaining_commands().len(), failed);
    }

    #[test]
    fn the_kill_switch_starts_nothing((plan, outcomes) in plans()) {
        let limits = RunLimits { kill_switch: Arc::new(AtomicBool::new(true)), ..RunLimits::default() };
        let (report, order, _) = run(&plan, &outcomes, &limits);
        prop_assert!(order.is_empty());
        prop_assert_eq!(report.outcome, Outcome::Aborted);
    }

    #[test]
    fn validate_rejects_data_deletion_without_a_recovery_source(node in "[a-z]{1,8}", with_source in any::<bool>()) {
        let mut s = step(0, vec![]);
        s.action = Action::DeletePvc { pvc: ObjectRef::pvc("ns", "data"), pinned_node: node };
        if with_source {
            s.recovery_source = Some(lifeboat::plan::RecoverySource { description: "replica".into(), evidence: vec![] });
        }
        let plan = Plan { steps: vec![s], ..Plan::new("p", "t") };
        prop_assert_eq!(plan.validate().is_ok(), with_source);
    }
}

/// With one slot and two branches ready, the head of the longer chain starts
/// first (s1 → s2 → s3 before the lone s0); ties keep plan order (s0 before s3).
#[test]
fn the_longest_chain_starts_first_when_slots_are_scarce() {
    let plan = Plan { steps: vec![step(0, vec![]), step(1, vec![]), step(2, vec![1]), step(3, vec![2])], ..Plan::new("p", "t") };
    let (report, order, _) = run(&plan, &[true; 4], &RunLimits { concurrency: 1, ..RunLimits::default() });
    let started: Vec<String> = order.into_iter().filter_map(|e| if let Event::Started(s) = e { Some(s) } else { None }).collect();
    assert_eq!(started, vec!["s1", "s2", "s0", "s3"]);
    assert_eq!(report.outcome, Outcome::Succeeded);
}
