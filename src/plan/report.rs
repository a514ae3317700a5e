//! What a run of a plan reports: each step's status and the run's outcome.
//! Data, shared by the runner that fills it and the journal that keeps it.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Plan, Step};

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepStatus {
    NotRun,
    Succeeded {
        detail: String,
    },
    /// A precondition or a safety invariant did not hold: nothing was done.
    Refused {
        reason: String,
    },
    Failed {
        error: String,
    },
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

pub fn not_run(step: &Step) -> StepReport {
    StepReport { id: step.id.clone(), title: step.title.clone(), command: step.command(), status: StepStatus::NotRun, started: None, finished: None }
}

/// The report of a run before its first step: every step not run.
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
