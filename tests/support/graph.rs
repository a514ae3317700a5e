//! The runner executes a graph, not a list: from a finished run's step start
//! and finish times, every step that started did so only after all its
//! `needs` had finished.
#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use lifeboat::act::runner::RunReport;
use lifeboat::journal::RunRecord;
use lifeboat::plan::Plan;

/// When one step started and finished (None: it did not).
pub struct StepTimes<'a> {
    pub id: &'a str,
    pub started: Option<DateTime<Utc>>,
    pub finished: Option<DateTime<Utc>>,
}

/// Every way `times` breaks the order `plan`'s `needs` ask for; empty when it holds.
pub fn needs_violations<'a>(plan: &Plan, times: impl IntoIterator<Item = StepTimes<'a>>) -> Vec<String> {
    let times: BTreeMap<&str, StepTimes> = times.into_iter().map(|t| (t.id, t)).collect();
    let mut violations = vec![];
    for step in &plan.steps {
        let Some(started) = times.get(step.id.as_str()).and_then(|t| t.started) else { continue };
        for need in &step.needs {
            match times.get(need.as_str()).and_then(|t| t.finished) {
                None => violations.push(format!("{} started at {started} but its need {need} never finished", step.id)),
                Some(finished) if finished > started => violations.push(format!("{} started at {started}, before its need {need} finished at {finished}", step.id)),
                Some(_) => {}
            }
        }
    }
    violations
}

/// Fails the test unless the journal's times of a run follow its plan's `needs`.
pub fn assert_run_followed_needs(run: &RunRecord) {
    let times = run.status.steps.iter().map(|s| StepTimes { id: &s.id, started: s.started_at, finished: s.finished_at });
    let violations = needs_violations(&run.spec.plan, times);
    assert!(violations.is_empty(), "run {} did not follow its plan's needs:\n{}", run.id, violations.join("\n"));
}

/// The same, from the runner's report.
pub fn assert_report_followed_needs(plan: &Plan, report: &RunReport) {
    let times = report.steps.iter().map(|s| StepTimes { id: &s.id, started: s.started, finished: s.finished });
    let violations = needs_violations(plan, times);
    assert!(violations.is_empty(), "the run did not follow its plan's needs:\n{}", violations.join("\n"));
}

/// The longest chain of a run's executed steps along the plan's `needs`,
/// each step weighted by its measured duration (finished − started), in
/// seconds, with the chain's step ids. Only steps that started and finished
/// count; the wall time of an ideal scheduler with unlimited concurrency.
pub fn critical_path(run: &RunRecord) -> (f64, Vec<String>) {
    let duration: BTreeMap<&str, f64> =
        run.status.steps.iter().filter_map(|s| Some((s.id.as_str(), (s.finished_at? - s.started_at?).num_milliseconds() as f64 / 1000.0))).collect();
    // The plan's steps come in an order where every need is listed first (Plan::validate).
    let mut longest: BTreeMap<&str, (f64, Option<&str>)> = BTreeMap::new();
    for step in &run.spec.plan.steps {
        let Some(own) = duration.get(step.id.as_str()) else { continue };
        let before = step.needs.iter().filter_map(|n| longest.get(n.as_str()).map(|(l, _)| (*l, n.as_str()))).max_by(|a, b| a.0.total_cmp(&b.0));
        longest.insert(&step.id, (own + before.map_or(0.0, |b| b.0), before.map(|b| b.1)));
    }
    let Some((mut at, (total, _))) = longest.iter().max_by(|a, b| a.1 .0.total_cmp(&b.1 .0)).map(|(id, v)| (*id, *v)) else { return (0.0, vec![]) };
    let mut chain = vec![at.to_string()];
    while let Some((_, Some(previous))) = longest.get(at) {
        chain.push(previous.to_string());
        at = previous;
    }
    chain.reverse();
    (total, chain)
}
