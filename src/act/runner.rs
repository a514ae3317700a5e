//! Executes an approved plan against the live API, step by step.
//!
//! Safety lives here, not only in playbooks: the approval must name this
//! exact plan (hash); a data-deleting step must name its recovery source; the
//! number of deletions is capped; every step's preconditions are re-checked
//! live right before it runs; a PVC is never deleted while the node its volume
//! is pinned to is Ready; the kill switch is honoured at every step boundary.
//! On the first failure or refusal the run stops and reports what was done
//! and the commands for what is left.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{DeleteParams, DynamicObject};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use serde::Serialize;
use serde_json::{json, Value};

use super::write::{merge_patch, patch_locked, patch_status_locked};
use crate::cluster::resources::{find_condition, Node, PersistentVolume};
use crate::cluster::ClusterState;
use crate::plan::{describe_precondition, Action, ObjectRef, Plan, Precondition, Step, WaitCondition};

#[derive(Clone, Debug)]
pub struct RunLimits {
    /// At most this many PVC deletions per run.
    pub max_pvc_deletions: usize,
    /// At most this many steps that delete anything.
    pub max_deletions: usize,
    pub poll_interval: Duration,
    /// Independent steps (no dependency path between them) run in parallel, at most this many at once.
    pub concurrency: usize,
    /// Set to stop the run at the next step boundary.
    pub kill_switch: Arc<AtomicBool>,
    /// Set (with `kill_switch`) when this executor stops because another
    /// takes the run over (lost leadership): the run is not over, so Flux
    /// objects it suspended stay suspended for the successor.
    pub handing_over: Arc<AtomicBool>,
    /// Phases approved so far (per-phase approval gates).
    pub approved_phases: Vec<String>,
    /// Checked synchronously right before every step starts and on every
    /// poll of a wait: false stops the run there (the leader's Lease).
    pub may_start: StepGuard,
    /// Deleting a PVC also needs a human's confirmation that its node is gone
    /// for good (annotation, out-of-service taint or Node deleted): runs
    /// nobody approved (`auto` mode) must not destroy data on NotReady alone.
    pub confirm_node_gone_before_deleting_data: bool,
}

/// The guard callback of [`RunLimits::may_start`] (none: always allowed).
#[derive(Clone, Default)]
pub struct StepGuard(pub Option<Guard>);

pub type Guard = Arc<dyn Fn() -> bool + Send + Sync>;

impl StepGuard {
    pub fn allows(&self) -> bool {
        self.0.as_ref().is_none_or(|guard| guard())
    }
}

impl std::fmt::Debug for StepGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "StepGuard(set)" } else { "StepGuard(none)" })
    }
}

impl RunLimits {
    /// Why a wait must end now, if it must: the kill switch, or the guard.
    pub(crate) fn stop_requested(&self) -> Option<&'static str> {
        if self.kill_switch.load(Ordering::SeqCst) {
            Some("kill switch set while waiting")
        } else if !self.may_start.allows() {
            Some("this instance may no longer run steps (leadership lost) while waiting")
        } else {
            None
        }
    }
}

impl RunLimits {
    pub fn from_config(config: &crate::config::RemediationConfig) -> Self {
        Self {
            max_pvc_deletions: config.max_pvc_deletions,
            max_deletions: config.max_deletions,
            concurrency: config.concurrency,
            kill_switch: Arc::new(AtomicBool::new(config.kill_switch)),
            poll_interval: Duration::from_secs(2),
            handing_over: Arc::new(AtomicBool::new(false)),
            approved_phases: vec![],
            may_start: StepGuard::default(),
            confirm_node_gone_before_deleting_data: false,
        }
    }
}

/// The limits of the default configuration.
impl Default for RunLimits {
    fn default() -> Self {
        Self::from_config(&crate::config::RemediationConfig::default())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepStatus {
    NotRun,
    Succeeded { detail: String },
    /// A precondition or a safety invariant did not hold: nothing was done.
    Refused { reason: String },
    Failed { error: String },
}

#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub id: String,
    pub title: String,
    pub command: String,
    #[serde(flatten)]
    pub status: StepStatus,
    pub started: Option<DateTime<Utc>>,
    pub finished: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    NothingToDo,
    /// Refused before any step ran (stale approval, invalid plan, limits).
    Rejected,
    /// Stopped at a step; later steps did not run.
    Stopped,
    /// Paused at an approval gate: resumes once the phase is approved.
    AwaitingApproval,
    Aborted,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub plan_hash: String,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub steps: Vec<StepReport>,
    /// Flux objects this run suspended and deliberately left suspended
    /// (e.g. until a change is committed to Git): someone must resume them.
    #[serde(default)]
    pub flux_left_suspended: Vec<String>,
    /// Paused at this phase's approval gate (outcome AwaitingApproval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_phase: Option<String>,
}

impl RunReport {
    /// Commands for every step that did not succeed, in order: what a human
    /// would run to finish by hand.
    pub fn remaining_commands(&self) -> Vec<String> {
        self.steps.iter().filter(|s| !matches!(s.status, StepStatus::Succeeded { .. })).map(|s| s.command.clone()).collect()
    }
}

fn rejected(plan: &Plan, reason: String) -> RunReport {
    RunReport { outcome: Outcome::Rejected, reason: Some(reason), ..fresh_report(plan) }
}

pub fn not_run(step: &Step) -> StepReport {
    StepReport { id: step.id.clone(), title: step.title.clone(), command: step.command(), status: StepStatus::NotRun, started: None, finished: None }
}

/// Runs `plan`, which must hash to `approved_hash`.
pub async fn execute(client: &Client, plan: &Plan, approved_hash: &str, limits: &RunLimits) -> RunReport {
    resume(client, plan, approved_hash, limits, fresh_report(plan), &|_| {}).await
}

pub fn fresh_report(plan: &Plan) -> RunReport {
    RunReport {
        plan_hash: plan.hash(),
        outcome: Outcome::Succeeded,
        reason: None,
        steps: plan.steps.iter().map(not_run).collect(),
        flux_left_suspended: vec![],
        awaiting_phase: None,
    }
}

/// Called with the whole report whenever a step starts or finishes: where
/// the journal records progress, so a successor can resume.
pub type Progress<'a> = &'a (dyn Fn(&RunReport) + Send + Sync);

/// Continues a run from `report`: steps it shows as succeeded are not run
/// again; every other step runs (all actions are idempotent, and each
/// re-checks its preconditions live), so a run interrupted at any point can
/// be picked up by the next leader.
pub async fn resume(
    client: &Client,
    plan: &Plan,
    approved_hash: &str,
    limits: &RunLimits,
    previous: RunReport,
    progress: Progress<'_>,
) -> RunReport {
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

/// Whatever the outcome, every Flux object a succeeded step suspended is
/// resumed — unless a later step resumed it, or the plan keeps it suspended
/// on purpose, which is reported.
async fn restore_flux(client: &Client, plan: &Plan, report: &mut RunReport) {
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
async fn revert_temporary_patches(client: &Client, plan: &Plan, report: &mut RunReport) {
    let succeeded = |i: usize| matches!(report.steps[i].status, StepStatus::Succeeded { .. });
    let mut notes = vec![];
    for (i, step) in plan.steps.iter().enumerate() {
        let Action::TemporaryPatch { object, patch, revert } = &step.action else { continue };
        let reverted_by_step = plan.steps.iter().enumerate().skip(i + 1).any(|(j, s)| {
            succeeded(j) && matches!(&s.action, Action::MergePatch { object: o, patch: p } if o == object && p == revert)
        });
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
            Err(e) => notes.push(format!("{object} STILL CARRIES the temporary patch {patch}: reverting it failed ({e}); run `kubectl patch {} {} --type=merge -p '{revert}'`", object.kubectl_resource(), object.name)),
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

/// Annotation on a Flux object a run left suspended on purpose: why, and
/// what must happen before it is resumed (visible in `kubectl describe`).
pub const KEPT_SUSPENDED_ANNOTATION: &str = "lifeboat.dev/kept-suspended";

async fn flag_kept_suspended(client: &Client, plan: &Plan, object: &ObjectRef) -> Result<(), String> {
    let mut why = format!("by lifeboat {} for {}", plan.playbook, plan.target);
    if !plan.follow_ups.is_empty() {
        why = format!("{why}; before resuming: {}", plan.follow_ups.join("; "));
    }
    let api = api(client, object).await?;
    merge_patch(&api, &object.name, &json!({"metadata": {"annotations": {KEPT_SUSPENDED_ANNOTATION: why}}})).await.map_err(|e| e.to_string())?;
    Ok(())
}

async fn set_flux_suspend(client: &Client, object: &ObjectRef, suspend: bool) -> Result<String, StepError> {
    let api = api(client, object).await.map_err(StepError::Failed)?;
    let patch = if suspend {
        json!({"spec": {"suspend": true}})
    } else {
        json!({"spec": {"suspend": false}, "metadata": {"annotations": {KEPT_SUSPENDED_ANNOTATION: null}}})
    };
    merge_patch(&api, &object.name, &patch).await.map_err(|e| StepError::Failed(e.to_string()))?;
    Ok(format!("{object} {}", if suspend { "suspended" } else { "resumed" }))
}

/// Runs steps as their dependencies succeed, independent ones concurrently
/// (at most `limits.concurrency`). A step whose dependency did not succeed
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
    let mut done: Vec<Option<bool>> =
        report.steps.iter().map(|s| matches!(s.status, StepStatus::Succeeded { .. }).then_some(true)).collect();
    let mut started: Vec<bool> = done.iter().map(Option::is_some).collect();
    let mut running = FuturesUnordered::new();
    let mut aborted = false;
    let mut guard_refused = false;
    loop {
        if !aborted && limits.kill_switch.load(Ordering::SeqCst) {
            aborted = true;
            tracing::warn!("kill switch set: no further steps start");
        }
        for (i, step) in plan.steps.iter().enumerate() {
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

pub(super) enum StepError {
    Refused(String),
    Failed(String),
}

impl From<super::jobs::JobError> for StepError {
    fn from(e: super::jobs::JobError) -> Self {
        match e {
            super::jobs::JobError::Refused(m) => StepError::Refused(m),
            super::jobs::JobError::Failed(m) => StepError::Failed(m),
        }
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::Refused(m) | StepError::Failed(m) => f.write_str(m),
        }
    }
}

pub(super) async fn api(client: &Client, object: &ObjectRef) -> Result<Api<DynamicObject>, String> {
    let (group, version) = object.api_version.rsplit_once('/').unwrap_or(("", object.api_version.as_str()));
    let gvk = GroupVersionKind::gvk(group, version, &object.kind);
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk).await.map_err(|e| format!("discovering {}: {e}", object.kind))?;
    Ok(match &object.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    })
}

pub(super) async fn get(client: &Client, object: &ObjectRef) -> Result<Option<Value>, String> {
    let api = api(client, object).await?;
    match api.get_opt(&object.name).await {
        Ok(found) => Ok(found.map(|o| serde_json::to_value(o).expect("object serializes"))),
        Err(e) => Err(format!("reading {object}: {e}")),
    }
}

/// Ready unless the Node is missing or its Ready condition is not True.
async fn node_ready(client: &Client, node: &str) -> Result<bool, String> {
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.get_opt(node).await {
        Ok(Some(n)) => Ok(find_condition(&n.status.conditions, "Ready").is_some_and(|c| c.status == "True")),
        Ok(None) => Ok(false),
        Err(e) => Err(format!("reading Node {node}: {e}")),
    }
}

async fn check_preconditions(client: &Client, step: &Step) -> Result<(), String> {
    for p in &step.preconditions {
        let holds = match p {
            Precondition::NodeStillLost { node } => !node_ready(client, node).await?,
            Precondition::PodReady { pod } => get(client, pod).await?.is_some_and(|p| {
                // A pod on a dead node keeps its last containerStatuses; the node
                // controller only flips its Ready condition, so that must agree too.
                let ready_condition = p["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
                p["metadata"]["deletionTimestamp"].is_null()
                    && p["status"]["containerStatuses"].as_array().is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c["ready"] == true))
                    && ready_condition.is_none_or(|c| c["status"] == "True")
            }),
            Precondition::CnpgPrimary { cluster, pod, is_primary } => {
                let c = get(client, cluster).await?.ok_or_else(|| format!("{cluster} does not exist"))?;
                let primary = c["status"]["currentPrimary"].as_str() == Some(pod) || c["status"]["targetPrimary"].as_str() == Some(pod);
                primary == *is_primary
            }
            Precondition::Absent { object } => get(client, object).await?.is_none(),
            Precondition::NotPaused { object } => get(client, object).await?.is_some_and(|o| o["spec"]["paused"] != true),
            Precondition::CnpgPrimaryUnchanged { cluster, pod, promote_to } => {
                let c = get(client, cluster).await?.ok_or_else(|| format!("{cluster} does not exist"))?;
                super::cnpg::primary_unchanged(&c["status"], pod) || c["status"]["targetPrimary"].as_str() == Some(promote_to)
            }
            Precondition::KopiaIdentity { destination, source, identity } => {
                let rd = get(client, destination).await?;
                let rs = match source {
                    Some(s) => Some(get(client, s).await?.ok_or_else(|| format!("{s} no longer exists"))?),
                    None => None,
                };
                super::volsync::identity_holds(rd.as_ref(), rs.as_ref(), identity)?
            }
            Precondition::SsaIfNotPresent { object } => get(client, object).await?.is_some_and(|o| super::volsync::ssa_if_not_present(&o)),
            Precondition::VolumeOrphanedOnGoneNode { volume, node } => {
                let pv = get(client, &ObjectRef { api_version: "v1".into(), kind: "PersistentVolume".into(), namespace: None, name: volume.clone() }).await?;
                let unbound = pv.as_ref().is_some_and(|pv| pv["status"]["phase"] != "Bound");
                unbound && node_confirmed_gone(client, node).await?.is_some()
            }
            Precondition::ImageIs { object, pointer, image } => get(client, object).await?.is_some_and(|o| o.pointer(pointer).and_then(Value::as_str) == Some(image.as_str())),
        };
        if !holds {
            return Err(format!("precondition no longer holds: {}", describe_precondition(p)));
        }
    }
    Ok(())
}

/// The runner's own invariant: the PVC's volume must be pinned to the node
/// the plan named, and that node must not be Ready.
pub(super) async fn check_pvc_deletable(client: &Client, pvc: &ObjectRef, planned_node: &str) -> Result<Option<Value>, StepError> {
    let Some(claim) = get(client, pvc).await.map_err(StepError::Failed)? else { return Ok(None) };
    let Some(volume) = claim["spec"]["volumeName"].as_str() else {
        return Err(StepError::Refused(format!("{pvc} is not bound: cannot prove which node holds its data")));
    };
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = pvs.get_opt(volume).await.map_err(|e| StepError::Failed(format!("reading PV {volume}: {e}")))?;
    let pinned = match pv {
        Some(pv) => {
            let nodes: Api<Node> = Api::all(client.clone());
            let node_list = nodes.list(&Default::default()).await.map_err(|e| StepError::Failed(format!("listing nodes: {e}")))?;
            let mut state = ClusterState {
                persistent_volumes: vec![Arc::new(pv)],
                nodes: node_list.items.into_iter().map(Arc::new).collect(),
                ..Default::default()
            };
            state.finish();
            crate::inspect::nodes::pinned_nodes(&state).into_values().next()
        }
        None => None,
    };
    match pinned {
        Some(node) if node == planned_node => {}
        Some(node) => return Err(StepError::Refused(format!("{pvc} is now pinned to {node}, not {planned_node} as planned"))),
        None => return Err(StepError::Refused(format!("{pvc}'s volume is not pinned to one node: refusing to delete it"))),
    }
    if node_ready(client, planned_node).await.map_err(StepError::Failed)? {
        return Err(StepError::Refused(format!("node {planned_node} is Ready: never delete a PVC whose node is Ready")));
    }
    Ok(Some(claim))
}

pub(super) async fn delete(client: &Client, object: &ObjectRef, params: &DeleteParams) -> Result<String, StepError> {
    let api = api(client, object).await.map_err(StepError::Failed)?;
    match api.delete(&object.name, params).await {
        Ok(_) => Ok(format!("deleted {object}")),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(format!("{object} already gone")),
        Err(e) => Err(StepError::Failed(format!("deleting {object}: {e}"))),
    }
}

async fn run_action(client: &Client, step: &Step, limits: &RunLimits) -> Result<String, StepError> {
    match &step.action {
        Action::PromoteCnpg { cluster, pod } => {
            let api = api(client, cluster).await.map_err(StepError::Failed)?;
            let pod_ref = ObjectRef::pod(cluster.namespace.as_deref().unwrap_or_default(), pod);
            if get(client, &pod_ref).await.map_err(StepError::Failed)?.is_none() {
                return Err(StepError::Refused(format!("{pod_ref} does not exist")));
            }
            let now = Utc::now();
            let result = patch_status_locked(&api, &cluster.name, 5, |current| {
                super::cnpg::promote_status_patch(&serde_json::to_value(current).expect("serializes"), pod, now)
            })
            .await
            .map_err(|e| StepError::Failed(e.to_string()))?;
            Ok(match result {
                Some(_) => format!("targetPrimary set to {pod}"),
                None => format!("{pod} was already the target primary"),
            })
        }
        Action::ForceDeletePod { pod } => delete(client, pod, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await,
        Action::RestartPod { pod } => delete(client, pod, &DeleteParams::default()).await,
        Action::Delete { object } => delete(client, object, &DeleteParams::default()).await,
        Action::DeletePvc { pvc, pinned_node } => {
            let Some(checked) = check_pvc_deletable(client, pvc, pinned_node).await? else {
                return Ok(format!("{pvc} already gone"));
            };
            if limits.confirm_node_gone_before_deleting_data && node_confirmed_gone(client, pinned_node).await.map_err(StepError::Failed)?.is_none() {
                return Err(StepError::Refused(format!(
                    "{pvc}: nobody confirmed node {pinned_node} is gone for good, and this run was not approved by a human (auto mode): \
                     annotate the Node {}=true, taint it {}, or delete it, then run again",
                    crate::plan::playbooks::node_loss::CONFIRMED_GONE_ANNOTATION,
                    crate::plan::playbooks::node_loss::OUT_OF_SERVICE_TAINT
                )));
            }
            // Only the claim that was checked: a StatefulSet re-creates a missing
            // claim under the same name at once, and that one must be left alone.
            let uid = checked["metadata"]["uid"].as_str().map(String::from);
            let precondition = kube::api::Preconditions { uid: uid.clone(), resource_version: None };
            let mut detail = delete(client, pvc, &DeleteParams { preconditions: Some(precondition), ..Default::default() }).await?;
            let recreated = |claim: &Value| claim["metadata"]["uid"].as_str() != uid.as_deref();
            // Stuck Terminating on pvc-protection with no live pod using it: clear finalizers.
            for _ in 0..10 {
                let Some(claim) = get(client, pvc).await.map_err(StepError::Failed)?.filter(|c| !recreated(c)) else { return Ok(detail) };
                let only_protection = claim["metadata"]["finalizers"].as_array().is_some_and(|f| f.iter().all(|x| x == "kubernetes.io/pvc-protection"));
                if only_protection && !claim_in_use(client, pvc).await.map_err(StepError::Failed)? {
                    let api = api(client, pvc).await.map_err(StepError::Failed)?;
                    // The uid makes the apiserver refuse the patch if the claim was re-created meanwhile.
                    merge_patch(&api, &pvc.name, &json!({"metadata": {"uid": uid, "finalizers": null}})).await.map_err(|e| StepError::Failed(e.to_string()))?;
                    detail.push_str("; cleared the pvc-protection finalizer (no pod uses it)");
                }
                tokio::time::sleep(limits.poll_interval.min(Duration::from_millis(500))).await;
            }
            match get(client, pvc).await.map_err(StepError::Failed)? {
                Some(claim) if !recreated(&claim) => Err(StepError::Failed(format!("{pvc} is still present (Terminating?) after deletion"))),
                _ => Ok(detail),
            }
        }
        Action::Wait { object, until, timeout_seconds } => wait(client, object, until, *timeout_seconds, limits).await,
        Action::SuspendFlux { object, .. } => set_flux_suspend(client, object, true).await,
        Action::ResumeFlux { object } => set_flux_suspend(client, object, false).await,
        Action::Scale { object, replicas } => {
            let api = api(client, object).await.map_err(StepError::Failed)?;
            let patch = json!({"spec": {"replicas": replicas}});
            api.patch_scale(&object.name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
                .await
                .map_err(|e| StepError::Failed(format!("scaling {object}: {e}")))?;
            Ok(format!("{object} scaled to {replicas}"))
        }
        Action::MergePatch { object, patch } | Action::TemporaryPatch { object, patch, .. } => {
            let api = api(client, object).await.map_err(StepError::Failed)?;
            merge_patch(&api, &object.name, patch).await.map_err(|e| StepError::Failed(e.to_string()))?;
            Ok(format!("patched {object}"))
        }
        Action::RunJob { job, manifest, timeout_seconds, success_marker, output } => {
            super::jobs::run_job(client, job, manifest, *timeout_seconds, success_marker, output, limits).await.map_err(StepError::from)
        }
        Action::RolloutRestart { object } => super::jobs::rollout_restart(client, object).await.map_err(StepError::from),
        Action::VerifyGarage { admin_url, token_file, min_buckets, timeout_seconds } => {
            let timeout = Duration::from_secs(*timeout_seconds);
            super::jobs::verify_garage(admin_url, token_file.as_deref(), *min_buckets, timeout, limits).await.map_err(StepError::from)
        }
        Action::SetCnpgPluginParameter { cluster, plugin, parameter, value } => {
            let api = api(client, cluster).await.map_err(StepError::Failed)?;
            let build = |current: &Value| super::cnpg::plugin_parameter_patch(current, plugin, parameter, value);
            match super::write::patch_locked_or_refuse(&api, &cluster.name, build).await.map_err(|e| StepError::Failed(e.to_string()))? {
                super::write::LockedPatch::Patched => Ok(format!("{cluster}: {plugin} {parameter} set to {value}")),
                super::write::LockedPatch::AlreadySo => Ok(format!("{cluster}: {plugin} {parameter} was already {value}")),
                super::write::LockedPatch::Refused(reason) => Err(StepError::Refused(format!("{cluster}: {reason}"))),
            }
        }
        Action::TaintNode { node, key, value, effect } => {
            let node_ref = ObjectRef { api_version: "v1".into(), kind: "Node".into(), namespace: None, name: node.clone() };
            let api = api(client, &node_ref).await.map_err(StepError::Failed)?;
            let result = patch_locked(&api, node, 5, |current| taint_patch(&serde_json::to_value(current).expect("serializes"), key, value, effect))
                .await
                .map_err(|e| StepError::Failed(e.to_string()))?;
            Ok(match result {
                Some(_) => format!("node {node} tainted {key}={value}:{effect}"),
                None => format!("node {node} already had {key}:{effect}"),
            })
        }
        Action::ApprovalGate { phase } => match limits.approved_phases.contains(phase) {
            true => Ok(format!("phase {phase} approved")),
            false => Err(StepError::Refused(format!("phase {phase} is not approved yet"))),
        },
        Action::RecreatePod { pod, timeout_seconds } => recreate_pod(client, pod, *timeout_seconds, limits).await,
        Action::Apply { object, manifest } => {
            let api = api(client, object).await.map_err(StepError::Failed)?;
            let params = kube::api::PatchParams::apply(super::write::FIELD_MANAGER).force();
            api.patch(&object.name, &params, &kube::api::Patch::Apply(manifest)).await.map_err(|e| StepError::Failed(format!("applying {object}: {e}")))?;
            Ok(format!("applied {object}"))
        }
        Action::MarkPvcForDeletion { pvc, pinned_node } => super::cnpg::mark_pvc_for_deletion(client, pvc, pinned_node).await,
        Action::SetKanidmReplicas { kanidm, group, replicas } => super::kanidm::set_replicas(client, kanidm, group, *replicas).await.map_err(StepError::from),
        Action::ExecToSecret { pod, container, command, secret, key, pattern } => {
            super::kanidm::exec_to_secret(client, pod, container, command, secret, key, pattern).await.map_err(StepError::from)
        }
        Action::RepairGarageTables { admin_url, token_file } => super::jobs::repair_garage_tables(admin_url, token_file.as_deref()).await.map_err(StepError::from),
    }
}

/// `Some(detail)` once an EndpointSlice of the Service has a ready address
/// (with `target_pod`, only an endpoint whose `targetRef` is that pod counts).
/// As the EndpointSlice API defines its conditions (k8s.io/api
/// discovery/v1 EndpointConditions, v1.35): a missing `ready` means ready and
/// a missing `terminating` means not terminating; a terminating endpoint is
/// never counted, whatever its `ready` says.
async fn ready_endpoints(client: &Client, service: &ObjectRef, target_pod: Option<&str>) -> Result<Option<String>, String> {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), service.namespace.as_deref().unwrap_or_default());
    let params = kube::api::ListParams::default().labels(&format!("kubernetes.io/service-name={}", service.name));
    let list = slices.list(&params).await.map_err(|e| format!("listing EndpointSlices of {service}: {e}"))?;
    let ready: Vec<String> = list
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .filter(|e| !e.conditions.as_ref().and_then(|c| c.terminating).unwrap_or(false))
        .filter(|e| target_pod.is_none_or(|pod| e.target_ref.as_ref().is_some_and(|r| r.kind.as_deref() == Some("Pod") && r.name.as_deref() == Some(pod))))
        .flat_map(|e| e.addresses.iter().cloned())
        .collect();
    let to = target_pod.map_or(String::new(), |pod| format!(" on {pod}"));
    Ok((!ready.is_empty()).then(|| format!("{service} has ready endpoints{to}: {}", ready.join(", "))))
}

/// As the pvc-protection controller decides it: only a scheduled pod uses a
/// claim (a StatefulSet's re-created, unschedulable pod does not).
async fn claim_in_use(client: &Client, pvc: &ObjectRef) -> Result<bool, String> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), pvc.namespace.as_deref().unwrap_or_default());
    let list = pods.list(&Default::default()).await.map_err(|e| format!("listing pods: {e}"))?;
    Ok(list.items.iter().any(|p| {
        p.spec.as_ref().is_some_and(|s| {
            s.node_name.as_deref().is_some_and(|n| !n.is_empty()) && s.volumes.iter().flatten().any(|v| v.persistent_volume_claim.as_ref().is_some_and(|c| c.claim_name == pvc.name))
        })
    }))
}

/// How a human confirmed the node is gone for good, if they did.
async fn node_confirmed_gone(client: &Client, node: &str) -> Result<Option<&'static str>, String> {
    use crate::plan::playbooks::node_loss::{CONFIRMED_GONE_ANNOTATION, OUT_OF_SERVICE_TAINT};
    let nodes: Api<DynamicObject> = Api::all_with(client.clone(), &kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::Node>(&()));
    let Some(n) = nodes.get_opt(node).await.map_err(|e| format!("reading Node {node}: {e}"))? else { return Ok(Some("the Node object was deleted")) };
    if n.metadata.annotations.as_ref().and_then(|a| a.get(CONFIRMED_GONE_ANNOTATION)).is_some_and(|v| v == "true") {
        return Ok(Some("annotated lifeboat.dev/confirmed-gone=true"));
    }
    let tainted = n.data["spec"]["taints"].as_array().is_some_and(|ts| ts.iter().any(|t| t["key"] == OUT_OF_SERVICE_TAINT));
    Ok(tainted.then_some("tainted node.kubernetes.io/out-of-service"))
}

/// The merge patch adding a taint to `spec.taints` (rewritten whole, the
/// others kept); None when a taint with that key and effect is there.
fn taint_patch(node: &Value, key: &str, value: &str, effect: &str) -> Option<Value> {
    let mut taints = node["spec"]["taints"].as_array().cloned().unwrap_or_default();
    if taints.iter().any(|t| t["key"] == key && t["effect"] == effect) {
        return None;
    }
    taints.push(json!({"key": key, "value": value, "effect": effect}));
    Some(json!({"spec": {"taints": taints}}))
}

/// Deletes the pod and waits for its controller's replacement (same name,
/// new uid) to be Ready. Run again after an interruption it restarts the pod
/// once more, which is harmless.
async fn recreate_pod(client: &Client, pod: &ObjectRef, timeout_seconds: u64, limits: &RunLimits) -> Result<String, StepError> {
    let old_uid = get(client, pod).await.map_err(StepError::Failed)?.and_then(|p| p["metadata"]["uid"].as_str().map(String::from));
    delete(client, pod, &DeleteParams::default()).await?;
    let started = std::time::Instant::now();
    loop {
        if let Some(why) = limits.stop_requested() {
            return Err(StepError::Refused(why.into()));
        }
        if let Some(p) = get(client, pod).await.map_err(StepError::Failed)? {
            let replaced = p["metadata"]["uid"].as_str() != old_uid.as_deref() && p["metadata"]["deletionTimestamp"].is_null();
            let ready = p["status"]["containerStatuses"].as_array().is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c["ready"] == true));
            if replaced && ready {
                return Ok(format!("{pod} restarted and Ready"));
            }
        }
        if started.elapsed() >= Duration::from_secs(timeout_seconds) {
            return Err(StepError::Failed(format!("timed out after {timeout_seconds}s: {pod} was deleted but no Ready replacement appeared")));
        }
        tokio::time::sleep(limits.poll_interval).await;
    }
}

async fn wait(client: &Client, object: &ObjectRef, until: &WaitCondition, timeout_seconds: u64, limits: &RunLimits) -> Result<String, StepError> {
    let started = std::time::Instant::now();
    loop {
        if let Some(why) = limits.stop_requested() {
            return Err(StepError::Refused(why.into()));
        }
        if let WaitCondition::ConditionIs { condition, status } = until {
            let current = get(client, object).await.map_err(StepError::Failed)?;
            let found = current.as_ref().filter(|o| o["metadata"]["deletionTimestamp"].is_null()).and_then(|o| {
                o["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == condition.as_str())).cloned()
            });
            if let Some(c) = found.as_ref().filter(|c| c["status"] == status.as_str()) {
                return Ok(format!("{object}: {condition}={status} ({})", c["reason"].as_str().unwrap_or("no reason")));
            }
            if started.elapsed() >= Duration::from_secs(timeout_seconds) {
                let seen = match (&current, &found) {
                    (None, _) => "it does not exist".to_string(),
                    (Some(o), _) if !o["metadata"]["deletionTimestamp"].is_null() => "it is being deleted".to_string(),
                    (_, None) => format!("it reports no {condition} condition"),
                    (_, Some(c)) => {
                        let why: Vec<&str> = [&c["reason"], &c["message"]].into_iter().filter_map(|v| v.as_str()).filter(|v| !v.is_empty()).collect();
                        format!("{condition}={}{}", c["status"].as_str().unwrap_or("?"), if why.is_empty() { String::new() } else { format!(" ({})", why.join(": ")) })
                    }
                };
                return Err(StepError::Failed(format!("timed out after {timeout_seconds}s waiting for {condition}={status} on {object}: {seen}")));
            }
            tokio::time::sleep(limits.poll_interval).await;
            continue;
        }
        if *until == WaitCondition::ServiceHasEndpoints {
            if let Some(detail) = ready_endpoints(client, object, None).await.map_err(StepError::Failed)? {
                return Ok(detail);
            }
            if started.elapsed() >= Duration::from_secs(timeout_seconds) {
                return Err(StepError::Failed(format!("timed out after {timeout_seconds}s: {object} has no ready endpoint")));
            }
            tokio::time::sleep(limits.poll_interval).await;
            continue;
        }
        if let WaitCondition::ServiceRoutesToCnpgPrimary { cluster } = until {
            let cluster_ref = ObjectRef::cnpg_cluster(object.namespace.as_deref().unwrap_or_default(), cluster);
            let primary = get(client, &cluster_ref).await.map_err(StepError::Failed)?.and_then(|c| c["status"]["currentPrimary"].as_str().map(String::from));
            if let Some(primary) = &primary {
                if let Some(detail) = ready_endpoints(client, object, Some(primary)).await.map_err(StepError::Failed)? {
                    return Ok(detail);
                }
            }
            if started.elapsed() >= Duration::from_secs(timeout_seconds) {
                let primary = primary.unwrap_or_else(|| "no currentPrimary".into());
                return Err(StepError::Failed(format!("timed out after {timeout_seconds}s: {object} has no ready endpoint on {cluster_ref}'s primary ({primary})")));
            }
            tokio::time::sleep(limits.poll_interval).await;
            continue;
        }
        if *until == WaitCondition::NodeConfirmedGone {
            if let Some(how) = node_confirmed_gone(client, &object.name).await.map_err(StepError::Failed)? {
                return Ok(format!("node {} confirmed gone: {how}", object.name));
            }
            if started.elapsed() >= Duration::from_secs(timeout_seconds) {
                return Err(StepError::Failed(format!("timed out after {timeout_seconds}s: nobody confirmed node {} is gone for good", object.name)));
            }
            tokio::time::sleep(limits.poll_interval).await;
            continue;
        }
        if let WaitCondition::ProvisionerReadyElsewhere { selector, lost_node, takeover_seconds } = until {
            if let Some(detail) = super::provisioner::ready_elsewhere(client, object, selector, lost_node, *takeover_seconds).await.map_err(StepError::Failed)? {
                return Ok(detail);
            }
            if started.elapsed() >= Duration::from_secs(timeout_seconds) {
                return Err(StepError::Failed(format!("timed out after {timeout_seconds}s: no pod labelled {selector:?} has been Ready for {takeover_seconds}s on a node other than {lost_node}")));
            }
            tokio::time::sleep(limits.poll_interval).await;
            continue;
        }
        if *until == WaitCondition::ClaimUnused {
            let users = super::volsync::claim_users(client, object).await.map_err(StepError::Failed)?;
            if users.is_empty() {
                return Ok(format!("no pod mounts {object}"));
            }
            if started.elapsed() >= Duration::from_secs(timeout_seconds) {
                return Err(StepError::Failed(format!("timed out after {timeout_seconds}s: {object} is still mounted by {}", users.join(", "))));
            }
            tokio::time::sleep(limits.poll_interval).await;
            continue;
        }
        let current = get(client, object).await.map_err(StepError::Failed)?.ok_or_else(|| StepError::Failed(format!("{object} disappeared")))?;
        let status = &current["status"];
        match until {
            WaitCondition::ServiceHasEndpoints
            | WaitCondition::ClaimUnused
            | WaitCondition::NodeConfirmedGone
            | WaitCondition::ConditionIs { .. }
            | WaitCondition::ServiceRoutesToCnpgPrimary { .. } => {
                unreachable!("handled above")
            }
            WaitCondition::WorkloadReady => {
                let wanted = current["spec"]["replicas"].as_i64().unwrap_or(1);
                let ready = status["readyReplicas"].as_i64().unwrap_or(0);
                if ready >= wanted {
                    return Ok(format!("{object}: {ready}/{wanted} replicas ready"));
                }
            }
            WaitCondition::VolsyncManualSyncDone { token } => match super::volsync::manual_sync_outcome(&current, token) {
                Ok(Some(detail)) => return Ok(detail),
                Ok(None) => {}
                Err(reason) => return Err(StepError::Failed(format!("{object}: {reason}"))),
            },
            WaitCondition::CnpgPrimaryIs { pod } => {
                if status["currentPrimary"].as_str() == Some(pod) {
                    return Ok(format!("{pod} is the current primary"));
                }
            }
            WaitCondition::NoReplicas => {
                if status["replicas"].as_i64().unwrap_or(0) == 0 {
                    return Ok(format!("{object} has no replicas left"));
                }
            }
            WaitCondition::CnpgBackupCompleted => match status["phase"].as_str() {
                Some("completed") => return Ok(format!("{object} completed (backup id {})", status["backupId"].as_str().unwrap_or("unknown"))),
                Some("failed") => return Err(StepError::Failed(format!("{object} failed: {}", status["error"].as_str().unwrap_or("no error reported")))),
                _ => {}
            },
            WaitCondition::CnpgHealthy => {
                let instances = current["spec"]["instances"].as_i64().unwrap_or(0);
                let ready = status["readyInstances"].as_i64().unwrap_or(0);
                let dangling = status["danglingPVC"].as_array().map_or(0, |d| d.len());
                let healthy = status["phase"].as_str() == Some("Cluster in healthy state");
                if ready >= instances && dangling == 0 && healthy {
                    return Ok(format!("{ready}/{instances} instances ready, no dangling PVCs"));
                }
            }
            WaitCondition::CnpgFailedOver { from } => {
                if let Some(detail) = super::cnpg::failed_over(status, from) {
                    return Ok(detail);
                }
            }
            WaitCondition::SpecReplicas { replicas } => {
                if current["spec"]["replicas"].as_i64() == Some(i64::from(*replicas)) {
                    return Ok(format!("{object} asks for {replicas} replicas now"));
                }
            }
            WaitCondition::ProvisionerReadyElsewhere { .. } => unreachable!("handled above"),
        }
        if started.elapsed() >= Duration::from_secs(timeout_seconds) {
            return Err(StepError::Failed(format!("timed out after {timeout_seconds}s waiting for {object}: {}", serde_json::to_string(status).unwrap_or_default())));
        }
        tokio::time::sleep(limits.poll_interval).await;
    }
}
