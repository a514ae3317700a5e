//! Remediation self-metrics, computed from the journal (the record of every
//! run) and the leader state, refreshed in the background by `serve`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::journal::{Phase, RunRecord};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemediationStats {
    pub leader: bool,
    /// Runs in the journal by (playbook, phase).
    pub runs: BTreeMap<(String, String), usize>,
    /// Steps of all runs by (playbook, state).
    pub steps: BTreeMap<(String, String), usize>,
    /// Runs not yet in a terminal phase.
    pub active: usize,
    /// For runs currently in a non-terminal phase: seconds since they entered
    /// it (awaiting approval since requested, approved since approval,
    /// running since start), summed by (playbook, phase).
    pub time_in_phase: BTreeMap<(String, String), f64>,
}

/// `AwaitingApproval` → `awaiting_approval`.
fn snake_case(debug: &str) -> String {
    let mut out = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

pub fn phase_label(phase: Phase) -> String {
    snake_case(&format!("{phase:?}"))
}

impl RemediationStats {
    pub fn from_records(records: &[RunRecord], leader: bool, now: DateTime<Utc>) -> Self {
        let mut stats = RemediationStats { leader, ..Default::default() };
        for r in records {
            let playbook = r.spec.playbook.clone();
            let phase = phase_label(r.status.phase);
            *stats.runs.entry((playbook.clone(), phase.clone())).or_default() += 1;
            for step in &r.status.steps {
                *stats.steps.entry((playbook.clone(), phase_label_of_step(step.state))).or_default() += 1;
            }
            if !r.status.phase.is_terminal() {
                stats.active += 1;
                let entered = match r.status.phase {
                    Phase::AwaitingApproval => Some(r.spec.requested_at),
                    Phase::Approved => r.status.approved_at,
                    _ => r.status.started_at,
                };
                if let Some(t) = entered {
                    *stats.time_in_phase.entry((playbook, phase)).or_default() += (now - t).num_milliseconds().max(0) as f64 / 1000.0;
                }
            }
        }
        stats
    }
}

fn phase_label_of_step(state: crate::journal::StepState) -> String {
    snake_case(&format!("{state:?}"))
}
