//! The journal: one durable record per remediation run, so a run can be
//! audited afterwards and resumed at a step boundary by the next leader.
//!
//! Two backends behind [`Journal`]:
//! * [`ClusterJournal`]: `RemediationRun` custom resources
//!   (`remediationruns.lifeboat.dev/v1alpha1`, `deploy/crds/remediationrun.yaml`)
//!   in lifeboat's namespace — the default when serving;
//! * [`FileJournal`]: one JSON file per run in a directory, for the CLI on a
//!   dump or without a cluster.
//!
//! The record types mirror the CRD field for field (camelCase). The spec —
//! the plan, its hash, what triggered it, who asked — is immutable once
//! created (the CRD enforces it with a CEL rule); only the status changes,
//! through the status subresource, under optimistic concurrency.
//!
//! **No secret values ever go into a record.** A record holds the plan (object
//! references, kubectl commands, findings), identities and timestamps — none
//! of which carry secrets today. Anything added here is readable by whoever
//! may read RemediationRuns (or the journal directory): keep it that way.

mod cluster;
mod error;
mod file;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::plan::playbooks::Trigger;
use crate::plan::report::{Outcome, RunReport, StepStatus};
use crate::plan::Plan;

pub use cluster::{api_resource, ClusterJournal};
pub use error::JournalError;
pub use file::FileJournal;

/// API group, version, kind and plural of the journal's custom resource.
pub const GROUP: &str = "lifeboat.dev";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "RemediationRun";
pub const PLURAL: &str = "remediationruns";
/// The CRD's name, and the file in this repository that installs it.
pub const CRD_NAME: &str = "remediationruns.lifeboat.dev";
pub const CRD_FILE: &str = "deploy/crds/remediationrun.yaml";
/// The label naming the Alertmanager fingerprint of the alert that started
/// a run (when it is a valid label value), for [`Journal::list_for_alerts`].
pub const ALERT_FINGERPRINT_LABEL: &str = "lifeboat.dev/alert-fingerprint";

/// `"true"` on a run whose phase is terminal, so the readers that need only
/// unfinished runs (the intake's collision check, the runner) select
/// `lifeboat.dev/finished!=true` instead of reading every plan ever run.
/// Kept current by every status write ([`Journal::update_status_with`]);
/// runs written before it existed carry no label and are selected too.
pub const RUN_FINISHED_LABEL: &str = "lifeboat.dev/finished";

/// How a run is allowed to proceed (`observe`, `approve`, `auto`): the
/// configuration's mode, recorded in the spec.
pub use crate::config::Mode;

/// Where a run is in its life. Terminal: Succeeded, NothingToDo, Stopped,
/// Rejected, Aborted, Failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Also what a record without a status reads as: nothing runs unapproved.
    #[default]
    AwaitingApproval,
    Approved,
    Running,
    Succeeded,
    NothingToDo,
    /// A step was refused (a precondition or safety invariant did not hold),
    /// or the run was only observed; later steps did not run.
    Stopped,
    /// Refused before any step ran (stale approval, invalid plan, limits), or
    /// a human rejected it.
    Rejected,
    /// The kill switch stopped it.
    Aborted,
    /// A step failed.
    Failed,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        !matches!(self, Phase::AwaitingApproval | Phase::Approved | Phase::Running)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StepState {
    /// Not attempted yet.
    #[default]
    Pending,
    /// Started and not finished (a leader that died here left it so).
    Running,
    Succeeded,
    /// A precondition or a safety invariant did not hold: nothing was done.
    Refused,
    Failed,
    /// The run ended without attempting it.
    NotRun,
}

/// The alert that started the look, if any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertRef {
    pub fingerprint: String,
    pub starts_at: DateTime<Utc>,
    pub alertname: String,
}

/// What asked for the plan: the playbook [`Trigger`] plus the alert.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunTrigger {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<AlertRef>,
}

impl From<&Trigger> for RunTrigger {
    fn from(t: &Trigger) -> Self {
        Self { namespace: t.namespace.clone(), name: t.name.clone(), node: t.node.clone(), alert: None }
    }
}

impl RunTrigger {
    /// The playbook trigger to re-plan with.
    pub fn to_trigger(&self) -> Trigger {
        Trigger { namespace: self.namespace.clone(), name: self.name.clone(), node: self.node.clone() }
    }
}

/// What was asked for; immutable once created.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSpec {
    pub playbook: String,
    pub target: String,
    pub trigger: RunTrigger,
    /// `plan.hash()` when the record was made.
    pub plan_hash: String,
    pub plan: Plan,
    pub mode: Mode,
    pub requested_by: String,
    /// When the run was asked for; orders [`Journal::list`].
    pub requested_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    pub id: String,
    pub title: String,
    /// The equivalent command (`Step::command`), to follow or finish by hand.
    pub command: String,
    pub state: StepState,
    /// What the step did, or why it was refused or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// The run's progress. The stored form also carries `progress` ("3/5", the
/// printer column), derived from `steps` on every write: see [`RunStatus::progress`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    #[serde(default)]
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// The plan hash the approval named; must equal `spec.planHash` to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<DateTime<Utc>>,
    /// Identity of the lifeboat instance executing the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    /// The object's `metadata.generation` when the status was last written
    /// (the journal sets it when left `None`; the spec never changes, so 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Per-phase approval: the phase the paused run waits for, and the
    /// phases approved so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_phase: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approved_phases: Vec<String>,
    /// What the Discord notifier has posted about this run, so that it
    /// catches up after an outage or a restart without repeating itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<NotificationState>,
}

/// The Discord messages of a run (ids are not secret).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationState {
    /// The run's main message, edited as the run goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Replies already posted, by key (`approved`, `step:<id>:<state>`, `final`).
    #[serde(default)]
    pub posted: Vec<String>,
    /// Everything there is to say about the run has been said.
    #[serde(default)]
    pub complete: bool,
}

/// One run: the object name, where it lives, what was asked and how it went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// The object name (and file stem): `<playbook>-<first 8 of the plan
    /// hash>-<unix milliseconds>`, e.g. `cnpg-instance-lost-0123abcd-1700000000123`.
    pub id: String,
    /// The namespace of the RemediationRun (None in a file journal unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub spec: RunSpec,
    pub status: RunStatus,
}

impl RunRecord {
    /// A new record for `plan`: every step Pending with its title and
    /// command. The phase follows the mode: `approve` awaits approval, `auto`
    /// is approved (by `mode auto`) for this plan's hash, `observe` is
    /// recorded as Stopped (never executed); a plan without steps is NothingToDo.
    pub fn new(plan: &Plan, trigger: RunTrigger, mode: Mode, requested_by: impl Into<String>, now: DateTime<Utc>) -> Self {
        let hash = plan.hash();
        let spec = RunSpec {
            playbook: plan.playbook.clone(),
            target: plan.target.clone(),
            trigger,
            plan_hash: hash.clone(),
            plan: plan.clone(),
            mode,
            requested_by: requested_by.into(),
            requested_at: now,
        };
        let mut status = RunStatus::initial(plan);
        if plan.nothing_to_do() {
            status.phase = Phase::NothingToDo;
            status.message = Some("the plan has no steps: nothing to do".into());
            status.finished_at = Some(now);
        } else {
            match mode {
                Mode::Approve => status.message = Some(format!("awaiting approval of plan {hash}")),
                Mode::Auto => status.approve("mode auto", &hash, now),
                Mode::Observe => {
                    status.phase = Phase::Stopped;
                    status.message = Some("observe mode: the plan is recorded, never executed".into());
                    status.finished_at = Some(now);
                    for step in &mut status.steps {
                        step.state = StepState::NotRun;
                    }
                }
            }
        }
        Self { id: Self::id_for(plan, now), namespace: None, spec, status }
    }

    /// `<playbook>-<first 8 of the plan hash>-<unix milliseconds>`, reduced to a
    /// valid object name.
    pub fn id_for(plan: &Plan, now: DateTime<Utc>) -> String {
        let hash = plan.hash();
        format!("{}-{}-{}", name_prefix(&plan.playbook), &hash[..hash.len().min(8)], now.timestamp_millis())
    }

    /// The id of the run an alert instance starts for a target:
    /// `<playbook>-a<first 16 hex of sha256(fingerprint, startsAt, target)>`.
    /// Deterministic, so every replica receiving the same alert names the
    /// same object and the apiserver lets only the first create it (409).
    pub fn id_for_alert(plan: &Plan, alert: &AlertRef) -> String {
        use sha2::{Digest, Sha256};
        let key = serde_json::to_vec(&(&alert.fingerprint, alert.starts_at.to_rfc3339(), &plan.playbook, &plan.target)).expect("alert key serializes");
        let digest = hex::encode(Sha256::digest(&key));
        format!("{}-a{}", name_prefix(&plan.playbook), &digest[..16])
    }

    pub fn is_terminal(&self) -> bool {
        self.status.phase.is_terminal()
    }

    /// When the current approval gate was reached: the request for the
    /// run's first approval, and for a per-phase gate the moment the run
    /// paused there (its last step finished).
    pub fn gate_reached_at(&self) -> DateTime<Utc> {
        let paused_at = self.status.awaiting_phase.as_ref().and_then(|_| self.status.steps.iter().filter_map(|s| s.finished_at).max());
        paused_at.unwrap_or(self.spec.requested_at)
    }

    /// The end of the approval window (`remediation.approvalTtl` from when
    /// the gate was reached); None when it cannot be computed (a timestamp
    /// at the end of time), which counts as closed.
    pub fn approval_deadline(&self, ttl: crate::config::Dur) -> Option<DateTime<Utc>> {
        self.gate_reached_at().checked_add_signed(ttl.chrono())
    }

    /// The resume point: the first step that has not succeeded (None when
    /// every step has).
    pub fn next_step(&self) -> Option<&StepRecord> {
        self.status.steps.iter().find(|s| s.state != StepState::Succeeded)
    }

    /// The report to continue this run from (`act::runner::resume`): the
    /// plan's steps in order, those recorded as Succeeded with their detail
    /// and times, every other one NotRun (it runs again; actions are
    /// idempotent and re-check their preconditions).
    /// Unfinished, and for the same target as `plan` or changing an object it changes.
    pub fn collides_with(&self, plan: &crate::plan::Plan) -> bool {
        !self.is_terminal() && (self.spec.target == plan.target || self.spec.plan.overlaps(plan))
    }

    pub fn to_report(&self) -> RunReport {
        let steps = self
            .spec
            .plan
            .steps
            .iter()
            .map(|step| {
                let mut report = crate::plan::report::not_run(step);
                if let Some(done) = self.status.steps.iter().find(|s| s.id == step.id && s.state == StepState::Succeeded) {
                    report.status = StepStatus::Succeeded { detail: done.detail.clone().unwrap_or_default() };
                    report.started = done.started_at;
                    report.finished = done.finished_at;
                }
                report
            })
            .collect();
        RunReport { plan_hash: self.spec.plan_hash.clone(), outcome: Outcome::Succeeded, reason: None, steps, flux_left_suspended: vec![], awaiting_phase: None }
    }

    /// The record as stored: the status gains its derived `progress`.
    pub(crate) fn to_stored_json(&self) -> Value {
        let mut value = serde_json::to_value(self).expect("RunRecord serializes");
        value["status"] = self.status.to_stored_json();
        value
    }
}

impl RunStatus {
    /// AwaitingApproval with every plan step Pending.
    pub fn initial(plan: &Plan) -> Self {
        Self {
            steps: plan
                .steps
                .iter()
                .map(|s| StepRecord {
                    id: s.id.clone(),
                    title: s.title.clone(),
                    command: s.command(),
                    state: StepState::Pending,
                    detail: None,
                    started_at: None,
                    finished_at: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    /// `"<steps succeeded>/<steps>"`, e.g. "3/5" (the `Step` printer column).
    pub fn progress(&self) -> String {
        let done = self.steps.iter().filter(|s| s.state == StepState::Succeeded).count();
        format!("{done}/{}", self.steps.len())
    }

    /// Records an approval of the plan hash `approved_hash` by `by`.
    pub fn approve(&mut self, by: &str, approved_hash: &str, now: DateTime<Utc>) {
        self.phase = Phase::Approved;
        if let Some(phase) = self.awaiting_phase.take() {
            self.approved_phases.push(phase);
        }
        self.approved_by = Some(by.into());
        self.approved_hash = Some(approved_hash.into());
        self.approved_at = Some(now);
        self.message = Some(format!("plan {approved_hash} approved by {by}"));
    }

    /// Marks the run Running under `leader` (keeps the first start time).
    pub fn start(&mut self, leader: &str, now: DateTime<Utc>) {
        self.phase = Phase::Running;
        self.leader = Some(leader.into());
        self.started_at.get_or_insert(now);
        self.finished_at = None;
    }

    /// Folds a runner's final report into the status: each step by id, and
    /// the phase from the outcome (Stopped becomes Failed when a step failed,
    /// Stopped when one was refused), the message from its reason, and
    /// finishedAt. A step the report did not run is NotRun, except that it
    /// keeps an earlier success (a resumed run skips what already succeeded).
    pub fn apply_report(&mut self, report: &RunReport) {
        if !report.flux_left_suspended.is_empty() {
            // Flagged loudly: a human must resume these (after committing the fix to Git).
            let left = format!("LEFT SUSPENDED on purpose, resume when done: {}", report.flux_left_suspended.join(", "));
            let reason = report.reason.as_deref().map_or(String::new(), |r| format!("{r}; "));
            let mut report = report.clone();
            report.flux_left_suspended.clear();
            report.reason = Some(format!("{reason}{left}"));
            return self.apply_report(&report);
        }
        self.merge_steps(report, true);
        let failed = report.steps.iter().any(|s| matches!(s.status, StepStatus::Failed { .. }));
        self.phase = match report.outcome {
            Outcome::Succeeded => Phase::Succeeded,
            Outcome::NothingToDo => Phase::NothingToDo,
            Outcome::Rejected => Phase::Rejected,
            Outcome::Stopped if failed => Phase::Failed,
            Outcome::Stopped => Phase::Stopped,
            Outcome::Aborted => Phase::Aborted,
            Outcome::AwaitingApproval => Phase::AwaitingApproval,
        };
        self.awaiting_phase = report.awaiting_phase.clone();
        self.message = report.reason.clone().or_else(|| match report.outcome {
            Outcome::Succeeded => Some("every step succeeded".into()),
            Outcome::NothingToDo => Some("nothing to do".into()),
            _ => None,
        });
        let first_start = report.steps.iter().filter_map(|s| s.started).min();
        if self.started_at.is_none() {
            self.started_at = first_start;
        }
        if self.phase.is_terminal() {
            let last_finish = report.steps.iter().filter_map(|s| s.finished).max();
            self.finished_at = Some(last_finish.unwrap_or_else(Utc::now));
        }
    }

    /// Folds a report taken mid-run (the runner's progress callback) into
    /// the steps only: a step started and not finished is Running, one not
    /// started yet is Pending (earlier successes are kept). The phase, the
    /// message and finishedAt are left alone; [`Self::apply_report`] sets
    /// them from the final report.
    pub fn apply_progress(&mut self, report: &RunReport) {
        self.merge_steps(report, false);
        if self.started_at.is_none() {
            self.started_at = report.steps.iter().filter_map(|s| s.started).min();
        }
    }

    fn merge_steps(&mut self, report: &RunReport, finished: bool) {
        for step in &report.steps {
            let (state, detail) = match &step.status {
                StepStatus::NotRun if finished => (StepState::NotRun, None),
                StepStatus::NotRun if step.started.is_some() && step.finished.is_none() => (StepState::Running, None),
                StepStatus::NotRun => (StepState::Pending, None),
                StepStatus::Succeeded { detail } => (StepState::Succeeded, Some(detail.clone())),
                StepStatus::Refused { reason } => (StepState::Refused, Some(reason.clone())),
                StepStatus::Failed { error } => (StepState::Failed, Some(error.clone())),
            };
            let index = match self.steps.iter().position(|s| s.id == step.id) {
                Some(i) => i,
                None => {
                    self.steps.push(StepRecord {
                        id: step.id.clone(),
                        title: step.title.clone(),
                        command: step.command.clone(),
                        state: StepState::Pending,
                        detail: None,
                        started_at: None,
                        finished_at: None,
                    });
                    self.steps.len() - 1
                }
            };
            let record = &mut self.steps[index];
            let not_attempted = matches!(state, StepState::NotRun | StepState::Pending);
            if not_attempted && record.state == StepState::Succeeded {
                continue;
            }
            record.state = state;
            record.detail = detail;
            if not_attempted {
                record.started_at = None;
                record.finished_at = None;
            } else {
                record.started_at = step.started.or(record.started_at);
                record.finished_at = step.finished;
            }
        }
    }

    pub(crate) fn to_stored_json(&self) -> Value {
        let mut value = serde_json::to_value(self).expect("RunStatus serializes");
        value["progress"] = Value::String(self.progress());
        value
    }
}

/// The journal, in the cluster or in a directory.
#[derive(Clone, Debug)]
pub enum Journal {
    Cluster(ClusterJournal),
    File(FileJournal),
}

impl Journal {
    pub fn cluster(client: kube::Client, namespace: impl Into<String>) -> Self {
        Journal::Cluster(ClusterJournal::new(client, namespace))
    }

    pub fn file(dir: impl Into<std::path::PathBuf>) -> Self {
        Journal::File(FileJournal::new(dir))
    }

    /// Where the records live, for messages.
    pub fn location(&self) -> String {
        match self {
            Journal::Cluster(j) => j.location(),
            Journal::File(j) => j.location(),
        }
    }

    /// Stores a new record; fails with [`JournalError::AlreadyExists`] when its
    /// id is taken. Returns the record as stored.
    pub async fn create(&self, record: &RunRecord) -> Result<RunRecord, JournalError> {
        let created = match self {
            Journal::Cluster(j) => j.create(record).await,
            Journal::File(j) => j.create(record),
        };
        if let Ok(run) = &created {
            announce_run_created(&run.id);
        }
        created
    }

    /// The record with this id, or None.
    pub async fn get(&self, id: &str) -> Result<Option<RunRecord>, JournalError> {
        match self {
            Journal::Cluster(j) => j.get(id).await,
            Journal::File(j) => j.get(id),
        }
    }

    /// Every readable record, newest (`spec.requestedAt`) first. A record
    /// that cannot be decoded (written by another lifeboat version, edited by
    /// hand) is skipped and reported — logged, and counted in
    /// `lifeboat_journal_undecodable_runs` — so that one bad object stops
    /// neither remediation, nor the intake, nor notifications; reading or
    /// changing that one by id still fails, naming it.
    pub async fn list(&self) -> Result<Vec<RunRecord>, JournalError> {
        let listing = self.list_all().await?;
        report_undecodable(&self.location(), &listing.undecodable);
        Ok(listing.records)
    }

    /// Every run that may be unfinished, newest first: in the cluster the
    /// runs not labelled [`RUN_FINISHED_LABEL`] (so also those written
    /// before the label, finished or not), else every record. Callers still
    /// look at the phase. Undecodable records are logged, not counted (the
    /// count is the full listing's).
    pub async fn list_unfinished(&self) -> Result<Vec<RunRecord>, JournalError> {
        let listing = match self {
            Journal::Cluster(j) => j.list_unfinished().await?,
            Journal::File(j) => j.list()?,
        };
        warn_undecodable(&listing.undecodable);
        Ok(listing.records)
    }

    /// The runs started by alerts with these Alertmanager fingerprints,
    /// newest first: in the cluster only the objects labelled with one of
    /// them (runs created before the label existed are not among them), else
    /// every record that names one. Undecodable records are logged, not
    /// counted (the count is the full listing's).
    pub async fn list_for_alerts(&self, fingerprints: &[&str]) -> Result<Vec<RunRecord>, JournalError> {
        let listing = match self {
            Journal::Cluster(j) => j.list_for_alerts(fingerprints).await?,
            Journal::File(j) => j.list()?,
        };
        warn_undecodable(&listing.undecodable);
        Ok(listing.records.into_iter().filter(|r| r.spec.trigger.alert.as_ref().is_some_and(|a| fingerprints.contains(&a.fingerprint.as_str()))).collect())
    }

    /// The readable records (newest first) and the errors of those that are not.
    pub async fn list_all(&self) -> Result<Listing, JournalError> {
        match self {
            Journal::Cluster(j) => j.list().await,
            Journal::File(j) => j.list(),
        }
    }

    /// Replaces the status (never the spec). Returns the record as stored.
    pub async fn update_status(&self, id: &str, status: &RunStatus) -> Result<RunRecord, JournalError> {
        self.update_status_with(id, |_| Some(status.clone())).await
    }

    /// Read-modify-write of the status: `change` sees the current record and
    /// returns the new status, or None to leave it as it is. In the cluster,
    /// a concurrent writer makes the write fail with 409; the record is then
    /// re-read and `change` called again.
    pub async fn update_status_with<F>(&self, id: &str, change: F) -> Result<RunRecord, JournalError>
    where
        F: FnMut(&RunRecord) -> Option<RunStatus>,
    {
        match self {
            Journal::Cluster(j) => j.update_status_with(id, change).await,
            Journal::File(j) => j.update_status_with(id, change),
        }
    }

    /// The newest non-terminal run for `target`, if any: one active run per
    /// target. (Check-then-create is not atomic: only the leader creates runs.)
    /// The unfinished run `plan` would collide with: one for the same
    /// target, or one that changes an object `plan` changes (a node-loss run
    /// and a per-workload run of the same incident).
    pub async fn find_active(&self, plan: &crate::plan::Plan) -> Result<Option<RunRecord>, JournalError> {
        Ok(self.list_unfinished().await?.into_iter().find(|r| r.collides_with(plan)))
    }
}

/// The playbook name reduced to the start of a valid object name.
fn name_prefix(playbook: &str) -> String {
    let playbook: String = playbook.to_lowercase().chars().map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' }).collect();
    let playbook = playbook.trim_matches('-');
    if playbook.is_empty() {
        "run".into()
    } else {
        playbook[..playbook.len().min(200)].into()
    }
}

/// A listing: the records that decode, and one [`JournalError::Corrupt`] per
/// record that does not.
#[derive(Debug, Default)]
pub struct Listing {
    pub records: Vec<RunRecord>,
    pub undecodable: Vec<JournalError>,
}

/// The names of the runs this process created (or found just created by
/// another replica): the Discord notifier reads each by name and posts it at
/// once rather than at its next poll. One per process, like the journal it
/// serves; a receiver that falls behind by more than the buffer is told it
/// lagged (and lists the journal instead).
static RUNS_CREATED: std::sync::LazyLock<tokio::sync::broadcast::Sender<String>> = std::sync::LazyLock::new(|| tokio::sync::broadcast::channel(1024).0);

/// The name of every run this process creates or learns of from now on.
pub fn runs_created() -> tokio::sync::broadcast::Receiver<String> {
    RUNS_CREATED.subscribe()
}

/// The run `id` was just created, here or (a 409 on an alert's run) by another replica.
pub fn announce_run_created(id: &str) {
    // No receiver (no notifier in this process) is not an error.
    let _ = RUNS_CREATED.send(id.to_string());
}

/// Undecodable records at the last listing of each journal location, for
/// `lifeboat_journal_undecodable_runs` (a process serves one namespace).
static UNDECODABLE_RUNS: std::sync::Mutex<std::collections::BTreeMap<String, usize>> = std::sync::Mutex::new(std::collections::BTreeMap::new());

/// How many records the last listings skipped because they could not be decoded.
pub fn undecodable_runs() -> usize {
    UNDECODABLE_RUNS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).values().sum()
}

fn report_undecodable(location: &str, errors: &[JournalError]) {
    UNDECODABLE_RUNS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(location.to_string(), errors.len());
    warn_undecodable(errors);
}

fn warn_undecodable(errors: &[JournalError]) {
    for error in errors {
        tracing::warn!(%error, "skipping an undecodable RemediationRun; every other run goes on");
    }
}

/// Newest first: `spec.requestedAt` descending, then id descending.
pub(crate) fn sort_newest_first(records: &mut [RunRecord]) {
    records.sort_by(|a, b| b.spec.requested_at.cmp(&a.spec.requested_at).then_with(|| b.id.cmp(&a.id)));
}

/// A run id must be a valid object name (DNS-1123 subdomain): it is also a
/// file name, so this keeps paths inside the journal directory.
pub(crate) fn check_id(id: &str) -> Result<(), JournalError> {
    let valid = !id.is_empty()
        && id.len() <= 253
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && id.split('.').all(|part| !part.is_empty() && part.as_bytes()[0].is_ascii_alphanumeric() && part.as_bytes()[part.len() - 1].is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(JournalError::InvalidId { id: id.to_string() })
    }
}

/// A new status's stored JSON plus `null` for every key the current stored
/// status has and the new one lacks, so a merge patch replaces the status.
pub(crate) fn status_merge_patch(current: Option<&Value>, new: &RunStatus) -> Value {
    let mut patch = new.to_stored_json();
    if let (Some(Value::Object(current)), Value::Object(patch)) = (current, &mut patch) {
        for key in current.keys() {
            patch.entry(key.clone()).or_insert(Value::Null);
        }
    }
    patch
}
