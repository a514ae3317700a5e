//! The leader's loop: executes approved (and resumes running) runs from the
//! journal, writing each step's progress back so the next leader can resume.
//! Also the journal-side verbs the CLI and (later) Alertmanager intake and
//! Discord use: submit, approve, abort.

pub mod direct_run;
pub mod stats;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::Client;

use crate::act::runner::{resume, RunLimits, RunReport, StepGuard};
use crate::cluster::ClusterState;
use crate::config::{Dur, Mode, RemediationConfig};
use crate::inspect::Findings;
use crate::journal::{Journal, JournalError, Phase, RunRecord, RunTrigger};
use crate::leader::LeaderHandle;
use crate::plan::playbooks::{self, PlanError};
use crate::plan::Plan;

#[derive(Debug, thiserror::Error)]
pub enum RemediationError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("run {id} for {target} is still {phase:?} and touches the same target or objects: one active run at a time there (approve, abort or wait for it)")]
    TargetBusy { id: String, target: String, phase: Phase },
    #[error("no run {0}")]
    NoSuchRun(String),
    #[error("run {id} is {phase:?}; only a run awaiting approval can be approved")]
    NotAwaitingApproval { id: String, phase: Phase },
    #[error("approval names plan {given}, but run {id} is plan {actual}: look at the plan again (`lifeboat runs show {id}`)")]
    WrongHash { id: String, given: String, actual: String },
    #[error("the approval window of run {id} closed {closed} (remediation.approvalTtl {ttl} from when it reached its approval gate): the cluster may have changed since; submit the run again")]
    ApprovalWindowClosed { id: String, closed: String, ttl: Dur },
}

/// Plans `playbook` from the snapshot and records the run (awaiting
/// approval, approved, or observed, per the playbook's mode).
pub async fn submit(
    journal: &Journal,
    config: &RemediationConfig,
    state: &ClusterState,
    findings: &Findings,
    playbook: &str,
    trigger: RunTrigger,
    requested_by: &str,
) -> Result<RunRecord, RemediationError> {
    let plan = playbooks::plan(playbook, state, findings, &trigger.to_trigger())?;
    let active = journal.find_active(&plan).await?;
    record(journal, config, &plan, active, trigger, requested_by).await
}

/// Records a run of `plan` unless its target already has an `active` run
/// (what [`Journal::find_active`] returned, or the caller's own lookup).
pub async fn record(
    journal: &Journal,
    config: &RemediationConfig,
    plan: &Plan,
    active: Option<RunRecord>,
    trigger: RunTrigger,
    requested_by: &str,
) -> Result<RunRecord, RemediationError> {
    if let Some(active) = active {
        return Err(RemediationError::TargetBusy { id: active.id, target: plan.target.clone(), phase: active.status.phase });
    }
    let mut record = RunRecord::new(plan, trigger, config.mode_of(&plan.playbook), requested_by, Utc::now());
    if let Some(alert) = &record.spec.trigger.alert {
        // Every replica names an alert's run alike: the journal lets one create it.
        record.id = RunRecord::id_for_alert(plan, alert);
    }
    Ok(journal.create(&record).await?)
}

/// Records an approval; it binds to the hash the approver saw, and only
/// within the approval window (`ttl` from when the run reached its gate).
/// Every approval path (CLI, HTTP API, Discord) comes through here, and the
/// checks are made on the record as it is written (compare-and-swap).
pub async fn approve(journal: &Journal, id: &str, hash: &str, by: &str, ttl: Dur) -> Result<RunRecord, RemediationError> {
    journal.get(id).await?.ok_or_else(|| RemediationError::NoSuchRun(id.into()))?;
    let mut refused = None;
    let record = journal
        .update_status_with(id, |current| {
            refused = approval_refusal(current, hash, ttl, Utc::now());
            refused.is_none().then(|| {
                let mut status = current.status.clone();
                status.approve(by, hash, Utc::now());
                status
            })
        })
        .await?;
    match refused {
        Some(e) => Err(e),
        None => Ok(record),
    }
}

/// Why `record` cannot be approved for `hash` at `now`, if it cannot.
fn approval_refusal(record: &RunRecord, hash: &str, ttl: Dur, now: chrono::DateTime<Utc>) -> Option<RemediationError> {
    let id = record.id.clone();
    if record.status.phase != Phase::AwaitingApproval {
        return Some(RemediationError::NotAwaitingApproval { id, phase: record.status.phase });
    }
    if record.spec.plan_hash != hash {
        return Some(RemediationError::WrongHash { id, given: hash.into(), actual: record.spec.plan_hash.clone() });
    }
    match record.approval_deadline(ttl) {
        Some(deadline) if now <= deadline => None,
        deadline => Some(RemediationError::ApprovalWindowClosed { id, closed: deadline.map_or("long ago".into(), |d| format!("at {}", d.to_rfc3339())), ttl }),
    }
}

/// Stops a run: before it starts it never will; while running, no further
/// step starts (the executing leader notices at the next step boundary).
pub async fn abort(journal: &Journal, id: &str, by: &str) -> Result<RunRecord, RemediationError> {
    journal.get(id).await?.ok_or_else(|| RemediationError::NoSuchRun(id.into()))?;
    Ok(journal
        .update_status_with(id, |current| {
            (!current.status.phase.is_terminal()).then(|| {
                let mut status = current.status.clone();
                status.phase = Phase::Aborted;
                status.message = Some(format!("aborted by {by}"));
                status
            })
        })
        .await?)
}

pub struct Remediator {
    pub client: Client,
    pub journal: Arc<Journal>,
    pub config: RemediationConfig,
    pub identity: String,
    /// The global kill switch (config, or flipped at runtime).
    pub kill_switch: Arc<AtomicBool>,
    pub poll_interval: Duration,
}

impl Remediator {
    /// Executes every approved or interrupted run, oldest first. Returns the ids handled.
    pub async fn run_pending(&self, leader: Option<&LeaderHandle>) -> Result<Vec<String>, JournalError> {
        let mut runs = self.journal.list_unfinished().await?;
        runs.reverse();
        let mut handled = vec![];
        for record in runs.into_iter().filter(|r| matches!(r.status.phase, Phase::Approved | Phase::Running)) {
            if self.stopped(leader).await {
                break;
            }
            handled.push(record.id.clone());
            self.execute(record, leader).await?;
        }
        Ok(handled)
    }

    /// The global kill switch (config or ConfigMap) is engaged, or this
    /// instance is not the leader.
    async fn stopped(&self, leader: Option<&LeaderHandle>) -> bool {
        self.kill_switch.load(Ordering::SeqCst) || leader.is_some_and(|l| !l.is_leader()) || crate::act::kill_switch::engaged(&self.client, &self.namespace()).await
    }

    fn namespace(&self) -> String {
        self.config.namespace()
    }

    /// Runs (or resumes) one approved run to its end, journaling every step.
    /// `listed` may be stale (a listing taken before other runs executed):
    /// the decision is made on the record as it is now, and written with a
    /// compare-and-swap, so a run aborted (or rejected, or already taken)
    /// meanwhile never starts: only Approved (or Running, to resume) becomes
    /// Running, and the refusal checks run on that same current record.
    pub async fn execute(&self, listed: RunRecord, leader: Option<&LeaderHandle>) -> Result<RunRecord, JournalError> {
        let id = listed.id.clone();
        let identity = self.identity.clone();
        let mut started = false;
        let record = self
            .journal
            .update_status_with(&id, |current| {
                started = false;
                if !matches!(current.status.phase, Phase::Approved | Phase::Running) {
                    return None;
                }
                let mut status = current.status.clone();
                if let Some(reason) = self.refusal(current) {
                    status.phase = Phase::Rejected;
                    status.message = Some(reason);
                    status.finished_at = Some(Utc::now());
                    return Some(status);
                }
                started = true;
                status.start(&identity, Utc::now());
                Some(status)
            })
            .await?;
        if !started {
            tracing::info!(run = %id, phase = ?record.status.phase, "run not started: it is not (or no longer) approved to run");
            return Ok(record);
        }
        let plan = record.spec.plan.clone();

        // The run stops at the next step boundary if it is aborted, the kill
        // switch is set, or this instance stops being the leader.
        let stop = Arc::new(AtomicBool::new(false));
        let handing_over = Arc::new(AtomicBool::new(false));
        let defaults = RunLimits::from_config(&self.config);
        let limits = RunLimits {
            kill_switch: stop.clone(),
            handing_over: handing_over.clone(),
            approved_phases: record.status.approved_phases.clone(),
            may_start: leadership_guard(leader, &stop, &handing_over),
            confirm_node_gone_before_deleting_data: record.spec.mode == Mode::Auto,
            // A remediator that polls faster (tests) makes the run's waits poll as fast.
            poll_interval: defaults.poll_interval.min(self.poll_interval),
            ..defaults
        };
        let (progress_tx, progress_rx) = tokio::sync::watch::channel::<Option<RunReport>>(None);
        let writer = tokio::spawn(journal_progress(
            self.journal.clone(),
            id.clone(),
            progress_rx,
            stop.clone(),
            handing_over.clone(),
            StopSignals { config_switch: self.kill_switch.clone(), client: self.client.clone(), namespace: self.namespace(), leader: leader.map(|l| l.subscribe()) },
            self.poll_interval,
        ));
        let previous = record.to_report();
        let on_progress = move |report: &RunReport| {
            progress_tx.send_replace(Some(report.clone()));
        };
        let report = resume(&self.client, &plan, &record.spec.plan_hash, &limits, previous, &on_progress).await;
        drop(on_progress);
        let _ = writer.await;
        let handed_over = handing_over.load(Ordering::SeqCst);
        self.journal
            .update_status_with(&id, |current| {
                let mut status = current.status.clone();
                if handed_over {
                    // Not over: the next leader resumes from these steps.
                    status.apply_progress(&report);
                    status.message = Some(format!("{identity} lost the leader Lease; the next leader resumes this run"));
                    return Some(status);
                }
                let aborted_by_user = status.phase == Phase::Aborted;
                status.apply_report(&report);
                if aborted_by_user {
                    status.phase = Phase::Aborted;
                }
                Some(status)
            })
            .await
    }

    /// Why an approved run must not start (fail closed).
    fn refusal(&self, record: &RunRecord) -> Option<String> {
        let plan_hash = record.spec.plan.hash();
        if plan_hash != record.spec.plan_hash {
            return Some(format!("stored plan hashes to {plan_hash}, not {}: refusing", record.spec.plan_hash));
        }
        if record.status.approved_hash.as_deref() != Some(plan_hash.as_str()) {
            return Some(format!("approval names {:?}, not plan {plan_hash}: approve again", record.status.approved_hash));
        }
        if record.spec.mode == Mode::Observe {
            return Some("observe mode never executes".into());
        }
        let expired = record.status.phase == Phase::Approved
            && record.spec.mode == Mode::Approve
            && record.status.approved_at.is_some_and(|t| Utc::now() - t > self.config.approval_ttl.chrono());
        expired.then(|| format!("approval older than {}: approve again", self.config.approval_ttl))
    }

    /// Runs `run_pending` whenever this instance is the leader. Returns
    /// once the election is stopped (`LeaderHandle::resign`, at shutdown)
    /// and the pass in progress has reached a step boundary.
    pub async fn run_forever(self, leader: Option<LeaderHandle>) {
        loop {
            if let Some(l) = &leader {
                if !l.wait_until_leader_or_stopped().await {
                    return;
                }
            }
            if let Err(error) = self.run_pending(leader.as_ref()).await {
                tracing::warn!(%error, "remediation pass failed; retrying");
            }
            match &leader {
                Some(l) => {
                    let mut changes = l.subscribe();
                    let _ = tokio::time::timeout(self.poll_interval, changes.wait_for(|leading| !*leading)).await;
                }
                None => tokio::time::sleep(self.poll_interval).await,
            }
        }
    }
}

/// The runner's synchronous check before every step and inside waits: this
/// instance still holds the Lease within its renew deadline (shorter than
/// the Lease, see `leader`). When it does not, the run is handed over: it
/// stops where it is and the next leader resumes it.
fn leadership_guard(leader: Option<&LeaderHandle>, stop: &Arc<AtomicBool>, handing_over: &Arc<AtomicBool>) -> StepGuard {
    let Some(leader) = leader.cloned() else { return StepGuard::default() };
    let (stop, handing_over) = (stop.clone(), handing_over.clone());
    StepGuard(Some(Arc::new(move || {
        if leader.is_leader() {
            return true;
        }
        handing_over.store(true, Ordering::SeqCst);
        stop.store(true, Ordering::SeqCst);
        false
    })))
}

/// What stops a run besides an abort: the kill switch (config or
/// ConfigMap) and lost leadership.
struct StopSignals {
    config_switch: Arc<AtomicBool>,
    client: Client,
    namespace: String,
    leader: Option<tokio::sync::watch::Receiver<bool>>,
}

impl StopSignals {
    fn leadership_lost(&self) -> bool {
        self.leader.as_ref().is_some_and(|l| !*l.borrow())
    }

    async fn kill_switch(&self) -> bool {
        self.config_switch.load(Ordering::SeqCst) || crate::act::kill_switch::engaged(&self.client, &self.namespace).await
    }
}

/// Writes progress to the journal (latest report wins) and raises `stop`
/// when the run is aborted, the kill switch is set or leadership is lost.
async fn journal_progress(
    journal: Arc<Journal>,
    id: String,
    mut progress: tokio::sync::watch::Receiver<Option<RunReport>>,
    stop: Arc<AtomicBool>,
    handing_over: Arc<AtomicBool>,
    signals: StopSignals,
    poll: Duration,
) {
    loop {
        let open = tokio::select! {
            changed = progress.changed() => changed.is_ok(),
            _ = tokio::time::sleep(poll) => true,
        };
        if signals.leadership_lost() {
            handing_over.store(true, Ordering::SeqCst);
            stop.store(true, Ordering::SeqCst);
        } else if signals.kill_switch().await {
            stop.store(true, Ordering::SeqCst);
        }
        let report = progress.borrow_and_update().clone();
        let written = journal
            .update_status_with(&id, |current| {
                if current.status.phase == Phase::Aborted {
                    return None;
                }
                let report = report.as_ref()?;
                let mut status = current.status.clone();
                status.apply_progress(report);
                (status != current.status).then_some(status)
            })
            .await;
        match written {
            Ok(record) if record.status.phase == Phase::Aborted => stop.store(true, Ordering::SeqCst),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, run = %id, "journaling progress failed; will retry"),
        }
        if !open {
            return;
        }
    }
}
