//! Executes an approved plan against the live API, step by step.
//!
//! Safety lives here, not only in playbooks: the approval must name this
//! exact plan (hash); a data-deleting step must name its recovery source; the
//! number of deletions is capped; every step's preconditions are re-checked
//! live right before it runs; a PVC is never deleted while the node its volume
//! is pinned to is Ready; the kill switch is honoured at every step boundary.
//! On the first failure or refusal the run stops and reports what was done
//! and the commands for what is left.
//!
//! This module walks the plan's graph and keeps the report; the run's limits
//! are in `guards`, each step's checks in `preconditions` and `delete_pvc`,
//! what it does in `actions` and `waits`, and the end-of-run cleanup (reverting
//! temporary patches, resuming Flux) in `restore`.

use std::sync::atomic::Ordering;

use chrono::Utc;
use kube::Client;

use super::actions::run_action;
// Where the per-area action modules (cnpg, jobs, kanidm) have always found them.
pub(super) use super::delete_pvc::check_pvc_deletable;
pub use super::guards::{Guard, RunLimits, StepGuard};
pub(super) use super::objects::{api, delete, get, StepError};
use super::preconditions::check_preconditions;
pub use super::restore::KEPT_SUSPENDED_ANNOTATION;
use super::restore::{restore_flux, revert_temporary_patches};
pub use crate::plan::report::{fresh_report, not_run, Outcome, RunReport, StepReport, StepStatus};
use crate::plan::{Action, Plan, Step};

fn rejected(plan: &Plan, reason: String) -> RunReport {
    RunReport { outcome: Outcome::Rejected, reason: Some(reason), ..fresh_report(plan) }
}

/// Runs `plan`, which must hash to `approved_hash`.
pub async fn execute(client: &Client, plan: &Plan, approved_hash: &str, limits: &RunLimits) -> RunReport {
    resume(client, plan, approved_hash, limits, fresh_report(plan), &|_| {}).await
}

/// Called with the whole report whenever a step starts or finishes: where
/// the journal records progress, so a successor can resume.
pub type Progress<'a> = &'a (dyn Fn(&RunReport) + Send + Sync);

/// Continues a run from `report`: steps it shows as succeeded are not run
/// again; every other step runs (all actions are idempotent, and each
/// re-checks its preconditions live), so a run interrupted at any point can
/// be picked up by the next leader.
pub async fn resume(client: &Client, plan: &Plan, approved_hash: &str, limits: &RunLimits, previous: RunReport, progress: Progress<'_>) -> RunReport {
    if plan.hash() != approved_hash {
        return rejected(plan, format!("approval names plan {approved_hash}, but the current plan is {}: approve again", plan.hash()));
    }
    if let Err(e) = plan.validate() {
        return rejected(plan, format!("invalid plan: {e}"));
    }
    let pvc_deletions = plan.steps.iter().filter(|s| matches!(s.action, Action::DeletePvc { .. })).count();
    let deletions = plan.steps.iter().filter(|s| matches!(s.action, Action::DeletePvc { .. } | Action::Delete { .. } | Action::ForceDeletePod { .. })).count();
    if pvc_deletions > limits.max_pvc_deletions || deletions > limits.max_deletions {
        return rejected(
            plan,
            format!("blast radius: {pvc_deletions} PVC deletions / {deletions} deletions exceed the limits ({} / {})", limits.max_pvc_deletions, limits.max_deletions),
        );
    }
    let mut report = previous;
    report.outcome = Outcome::Succeeded;
    report.reason = None;
    for step in report.steps.iter_mut().filter(|s| !matches!(s.status, StepStatus::Succeeded { .. })) {
        step.status = StepStatus::NotRun;
    }
    if report.steps.len() != plan.steps.len() || report.steps.iter().zip(&plan.steps).any(|(r, s)| r.id != s.id) {
        return rejected(plan, "the journal's steps do not match the plan: refusing to resume".into());
    }
    if plan.nothing_to_do() {
        report.outcome = Outcome::NothingToDo;
        return report;
    }
    schedule(plan, limits, &mut report, progress, |step| run_step(client, step, limits)).await;
    let paused = pause_at_gate(plan, &mut report);
    if !paused && !limits.handing_over.load(Ordering::SeqCst) {
        revert_temporary_patches(client, plan, &mut report).await;
        restore_flux(client, plan, &mut report).await;
    }
    progress(&report);
    report
}

/// A run whose only unfinished business is a gate not yet approved is
/// paused, not stopped: the gate goes back to not run, Flux stays as it is,
/// and the run awaits approval of that phase.
fn pause_at_gate(plan: &Plan, report: &mut RunReport) -> bool {
    let blocked: Vec<usize> = report.steps.iter().enumerate().filter(|(_, s)| matches!(s.status, StepStatus::Refused { .. } | StepStatus::Failed { .. })).map(|(i, _)| i).collect();
    let gates: Vec<usize> = blocked.iter().copied().filter(|&i| matches!(plan.steps[i].action, Action::ApprovalGate { .. })).collect();
    if gates.is_empty() || gates.len() != blocked.len() || report.outcome != Outcome::Stopped {
        return false;
    }
    let Action::ApprovalGate { phase } = &plan.steps[gates[0]].action else { unreachable!("filtered to gates") };
    for &i in &gates {
        report.steps[i].status = StepStatus::NotRun;
        report.steps[i].started = None;
        report.steps[i].finished = None;
    }
    report.outcome = Outcome::AwaitingApproval;
    report.awaiting_phase = Some(phase.clone());
    report.reason = Some(format!("phase {phase} awaits approval (the same plan hash)"));
    true
}

/// Runs steps as their dependencies succeed, independent ones concurrently
/// (at most `limits.concurrency`; when more are ready, the head of the
/// longest chain first). A step whose dependency did not succeed
/// never runs (its branch stops); other branches go on. The kill switch stops
/// new steps from starting. `run` performs one step (the API work).
pub async fn schedule<'p, F, Fut>(plan: &'p Plan, limits: &RunLimits, report: &mut RunReport, progress: Progress<'_>, run: F)
where
    F: Fn(&'p Step) -> Fut,
    Fut: std::future::Future<Output = StepStatus>,
{
    use futures::stream::{FuturesUnordered, StreamExt};
    let index: std::collections::HashMap<&str, usize> = plan.steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    // Steps the report already shows as succeeded (a resumed run) are done.
    let mut done: Vec<Option<bool>> = report.steps.iter().map(|s| matches!(s.status, StepStatus::Succeeded { .. }).then_some(true)).collect();
    let mut started: Vec<bool> = done.iter().map(Option::is_some).collect();
    let mut running = FuturesUnordered::new();
    let mut aborted = false;
    let mut guard_refused = false;
    let order = super::start_order::critical_first(plan);
    loop {
        if !aborted && limits.kill_switch.load(Ordering::SeqCst) {
            aborted = true;
            tracing::warn!("kill switch set: no further steps start");
        }
        for &i in &order {
            let step = &plan.steps[i];
            if started[i] || aborted || running.len() >= limits.concurrency.max(1) {
                continue;
            }
            let deps: Vec<Option<bool>> = step.needs.iter().map(|n| done[index[n.as_str()]]).collect();
            if deps.contains(&Some(false)) {
                started[i] = true;
                done[i] = Some(false); // stays NotRun: its branch stopped
            } else if deps.iter().all(|d| *d == Some(true)) {
                // Synchronously, right before the step: no await between this check and its start.
                if !limits.may_start.allows() {
                    aborted = true;
                    guard_refused = true;
                    tracing::warn!(step = %step.id, "the step guard refused (leadership lost): no further steps start");
                    continue;
                }
                started[i] = true;
                report.steps[i].started = Some(Utc::now());
                progress(report);
                let step_future = run(step);
                running.push(async move { (i, step_future.await) });
            }
        }
        let Some((i, status)) = running.next().await else { break };
        report.steps[i].finished = Some(Utc::now());
        tracing::info!(step = %plan.steps[i].id, status = ?status, "step finished");
        done[i] = Some(matches!(status, StepStatus::Succeeded { .. }));
        report.steps[i].status = status;
        progress(report);
    }
    if aborted && guard_refused {
        report.outcome = Outcome::Aborted;
        report.reason = Some("this instance may no longer run steps (leadership lost); steps not yet started were not run".into());
    } else if aborted {
        report.outcome = Outcome::Aborted;
        report.reason = Some("kill switch set; steps not yet started were not run".into());
    } else if let Some(bad) = report.steps.iter().find(|s| !matches!(s.status, StepStatus::Succeeded { .. } | StepStatus::NotRun)) {
        report.outcome = Outcome::Stopped;
        report.reason = Some(format!("step {} ({}) did not succeed; the steps that depend on it were not run", bad.id, bad.title));
    }
}

async fn run_step(client: &Client, step: &Step, limits: &RunLimits) -> StepStatus {
    use tracing::Instrument;
    async {
        match check_preconditions(client, step).await {
            Err(reason) => StepStatus::Refused { reason },
            Ok(()) => match run_action(client, step, limits).await {
                Ok(detail) => StepStatus::Succeeded { detail },
                Err(StepError::Refused(reason)) => StepStatus::Refused { reason },
                Err(StepError::Failed(error)) => StepStatus::Failed { error },
            },
        }
    }
    .instrument(tracing::info_span!("step", id = %step.id))
    .await
}
