//! What a run changed only for its duration is put back when it ends:
//! temporary patches are reverted, and the Flux objects it suspended are
//! resumed, or annotated and reported when the plan keeps them suspended.

use kube::Client;
use serde_json::json;

use super::objects::{api, StepError};
use super::runner::{Outcome, RunReport, StepStatus};
use crate::cluster::write::merge_patch;
use crate::plan::{Action, ObjectRef, Plan};

/// Whatever the outcome, every Flux object a succeeded step suspended is
/// resumed — unless a later step resumed it, or the plan keeps it suspended
/// on purpose, which is reported.
pub(super) async fn restore_flux(client: &Client, plan: &Plan, report: &mut RunReport) {
    let succeeded = |i: usize| matches!(report.steps[i].status, StepStatus::Succeeded { .. });
    let resumed: Vec<&ObjectRef> = plan
        .steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.action {
            Action::ResumeFlux { object } if succeeded(i) => Some(object),
            _ => None,
        })
        .collect();
    // Kept if any succeeded step suspended it to keep (a composed plan suspends
    // once at the start and holds it where a keeping part begins).
    let kept: Vec<&ObjectRef> = plan
        .steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.action {
            Action::SuspendFlux { object, keep_suspended: true } if succeeded(i) => Some(object),
            _ => None,
        })
        .collect();
    let mut handled: Vec<&ObjectRef> = vec![];
    let mut left = vec![];
    let mut errors = vec![];
    for (i, step) in plan.steps.iter().enumerate() {
        let Action::SuspendFlux { object, .. } = &step.action else { continue };
        if !succeeded(i) || resumed.contains(&object) || handled.contains(&object) {
            continue;
        }
        handled.push(object);
        if kept.contains(&object) {
            tracing::warn!(%object, "left suspended by design: resume it once its source of truth is fixed");
            if let Err(e) = flag_kept_suspended(client, plan, object).await {
                errors.push(format!("{object} is left suspended but could not be annotated: {e}"));
            }
            left.push(object.to_string());
            continue;
        }
        match set_flux_suspend(client, object, false).await {
            Ok(_) => tracing::info!(%object, "resumed the Flux object this run suspended"),
            Err(e) => errors.push(format!("{object} is still SUSPENDED: {e}; run `flux resume`")),
        }
    }
    report.flux_left_suspended = left;
    if !errors.is_empty() {
        report.outcome = Outcome::Stopped;
        let reason = report.reason.take().map_or(String::new(), |r| format!("{r}; "));
        report.reason = Some(format!("{reason}{}", errors.join("; ")));
    }
}

/// Whatever the outcome, every temporary patch a succeeded step applied is
/// reverted, unless a later step already applied the revert. Runs before
/// Flux is resumed, so Flux never reconciles an object still carrying it.
pub(super) async fn revert_temporary_patches(client: &Client, plan: &Plan, report: &mut RunReport) {
    let succeeded = |i: usize| matches!(report.steps[i].status, StepStatus::Succeeded { .. });
    let mut notes = vec![];
    for (i, step) in plan.steps.iter().enumerate() {
        let Action::TemporaryPatch { object, patch, revert } = &step.action else { continue };
        let reverted_by_step =
            plan.steps.iter().enumerate().skip(i + 1).any(|(j, s)| succeeded(j) && matches!(&s.action, Action::MergePatch { object: o, patch: p } if o == object && p == revert));
        if !succeeded(i) || reverted_by_step {
            continue;
        }
        let result = match api(client, object).await {
            Ok(api) => merge_patch(&api, &object.name, revert).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match result {
            Ok(_) => {
                tracing::info!(%object, %patch, %revert, "reverted the temporary patch this run applied");
                notes.push(format!("reverted the temporary patch {patch} of {object}"));
            }
            Err(e) => notes.push(format!(
                "{object} STILL CARRIES the temporary patch {patch}: reverting it failed ({e}); run `kubectl patch {} {} --type=merge -p '{revert}'`",
                object.kubectl_resource(),
                object.name
            )),
        }
    }
    if notes.iter().any(|n| n.contains("STILL CARRIES")) {
        report.outcome = Outcome::Stopped;
    }
    if !notes.is_empty() {
        let reason = report.reason.take().map_or(String::new(), |r| format!("{r}; "));
        report.reason = Some(format!("{reason}{}", notes.join("; ")));
    }
}

pub use crate::cluster::marks::KEPT_SUSPENDED_ANNOTATION;

async fn flag_kept_suspended(client: &Client, plan: &Plan, object: &ObjectRef) -> Result<(), String> {
    let mut why = format!("by lifeboat {} for {}", plan.playbook, plan.target);
    if !plan.follow_ups.is_empty() {
        why = format!("{why}; before resuming: {}", plan.follow_ups.join("; "));
    }
    let api = api(client, object).await?;
    merge_patch(&api, &object.name, &json!({"metadata": {"annotations": {KEPT_SUSPENDED_ANNOTATION: why}}})).await.map_err(|e| e.to_string())?;
    Ok(())
}
pub(super) async fn set_flux_suspend(client: &Client, object: &ObjectRef, suspend: bool) -> Result<String, StepError> {
    let api = api(client, object).await.map_err(StepError::Failed)?;
    let patch = if suspend { json!({"spec": {"suspend": true}}) } else { json!({"spec": {"suspend": false}, "metadata": {"annotations": {KEPT_SUSPENDED_ANNOTATION: null}}}) };
    merge_patch(&api, &object.name, &patch).await.map_err(|e| StepError::Failed(e.to_string()))?;
    Ok(format!("{object} {}", if suspend { "suspended" } else { "resumed" }))
}
