//! Remediation self-metrics, computed from the journal (the record of every
//! run), the leader state and the kill switch, refreshed in the background
//! by `serve`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::config::RemediationConfig;
use crate::journal::{Journal, JournalError, Phase, RunRecord};

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
    /// it (awaiting approval since the gate was reached, approved since
    /// approval, running since start), summed by (playbook, phase).
    pub time_in_phase: BTreeMap<(String, String), f64>,
    /// Steps of the runs not yet in a terminal phase by (playbook, state):
    /// the progress of what is under way.
    pub active_steps: BTreeMap<(String, String), usize>,
    /// For each playbook with a run awaiting approval: the longest time one
    /// has been waiting at its approval gate, in seconds.
    pub approval_wait: BTreeMap<String, f64>,
    /// When the newest run that ended in a terminal phase finished, by
    /// (playbook, phase).
    pub last_finished: BTreeMap<(String, String), DateTime<Utc>>,
    /// The kill switch is engaged (config, ConfigMap, or unreadable).
    pub kill_switch: bool,
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

fn seconds_since(t: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    (now - t).num_milliseconds().max(0) as f64 / 1000.0
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
            if r.status.phase.is_terminal() {
                if let Some(finished) = r.status.finished_at {
                    let last = stats.last_finished.entry((playbook, phase)).or_insert(finished);
                    *last = (*last).max(finished);
                }
                continue;
            }
            stats.active += 1;
            for step in &r.status.steps {
                *stats.active_steps.entry((playbook.clone(), phase_label_of_step(step.state))).or_default() += 1;
            }
            let entered = match r.status.phase {
                Phase::AwaitingApproval => Some(r.gate_reached_at()),
                Phase::Approved => r.status.approved_at,
                _ => r.status.started_at,
            };
            if let Some(t) = entered {
                let secs = seconds_since(t, now);
                if r.status.phase == Phase::AwaitingApproval {
                    let longest = stats.approval_wait.entry(playbook.clone()).or_insert(secs);
                    *longest = longest.max(secs);
                }
                *stats.time_in_phase.entry((playbook, phase)).or_default() += secs;
            }
        }
        stats
    }
}

/// Reads the journal and the kill switch once: the stats `serve` exports.
pub async fn refresh(journal: &Journal, client: &kube::Client, config: &RemediationConfig, leader: bool) -> Result<RemediationStats, JournalError> {
    let records = journal.list().await?;
    let mut stats = RemediationStats::from_records(&records, leader, Utc::now());
    stats.kill_switch = config.kill_switch || crate::act::kill_switch::engaged(client, &config.namespace()).await;
    Ok(stats)
}

fn phase_label_of_step(state: crate::journal::StepState) -> String {
    snake_case(&format!("{state:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;
    use crate::journal::{RunTrigger, StepState};
    use crate::plan::{Action, ObjectRef, Plan, Step};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn plan(playbook: &str, steps: usize) -> Plan {
        let steps = (0..steps)
            .map(|i| Step {
                id: format!("s{i}"),
                title: format!("step {i}"),
                action: Action::Delete { object: ObjectRef::namespaced("v1", "ConfigMap", "apps", &format!("cm-{i}")) },
                needs: vec![],
                preconditions: vec![],
                recovery_source: None,
            })
            .collect();
        Plan { steps, ..Plan::new(playbook, "namespace apps") }
    }

    fn run(playbook: &str, requested: &str) -> RunRecord {
        RunRecord::new(&plan(playbook, 3), RunTrigger::default(), Mode::Approve, "test", at(requested))
    }

    fn key(a: &str, b: &str) -> (String, String) {
        (a.into(), b.into())
    }

    #[test]
    fn approval_wait_is_the_longest_wait_per_playbook_from_the_gate() {
        let older = run("stale-cleanup", "2026-11-25T10:00:00Z");
        let newer = run("stale-cleanup", "2026-11-25T11:30:00Z");
        // Paused at a per-phase gate: waiting since its last step finished, not since it was requested.
        let mut paused = run("node-loss", "2026-11-25T08:00:00Z");
        paused.status.awaiting_phase = Some("restore".into());
        paused.status.steps[0].state = StepState::Succeeded;
        paused.status.steps[0].finished_at = Some(at("2026-11-25T11:50:00Z"));
        let stats = RemediationStats::from_records(&[older, newer, paused], false, at("2026-11-25T12:00:00Z"));
        assert_eq!(stats.approval_wait.get("stale-cleanup"), Some(&7200.0));
        assert_eq!(stats.approval_wait.get("node-loss"), Some(&600.0));
        assert_eq!(stats.time_in_phase.get(&key("node-loss", "awaiting_approval")), Some(&600.0), "time in phase counts from the gate too");
    }

    #[test]
    fn active_steps_count_only_unfinished_runs() {
        let mut running = run("stale-cleanup", "2026-11-25T10:00:00Z");
        running.status.phase = Phase::Running;
        running.status.steps[0].state = StepState::Succeeded;
        running.status.steps[1].state = StepState::Running;
        let mut done = run("stale-cleanup", "2026-11-25T09:00:00Z");
        done.status.phase = Phase::Succeeded;
        done.status.finished_at = Some(at("2026-11-25T09:10:00Z"));
        for step in &mut done.status.steps {
            step.state = StepState::Succeeded;
        }
        let stats = RemediationStats::from_records(&[running, done], false, at("2026-11-25T12:00:00Z"));
        assert_eq!(stats.active_steps.get(&key("stale-cleanup", "succeeded")), Some(&1));
        assert_eq!(stats.active_steps.get(&key("stale-cleanup", "running")), Some(&1));
        assert_eq!(stats.active_steps.get(&key("stale-cleanup", "pending")), Some(&1));
        assert_eq!(stats.steps.get(&key("stale-cleanup", "succeeded")), Some(&4), "all runs, finished ones included");
        assert!(stats.approval_wait.is_empty());
    }

    #[test]
    fn last_finished_is_the_newest_end_per_playbook_and_terminal_phase() {
        let failed = |finished: &str| {
            let mut r = run("volsync-restore", "2026-11-25T09:00:00Z");
            r.status.phase = Phase::Failed;
            r.status.finished_at = Some(at(finished));
            r
        };
        let stats = RemediationStats::from_records(
            &[failed("2026-11-25T09:30:00Z"), failed("2026-11-25T11:00:00Z"), run("volsync-restore", "2026-11-25T11:30:00Z")],
            false,
            at("2026-11-25T12:00:00Z"),
        );
        assert_eq!(stats.last_finished.get(&key("volsync-restore", "failed")), Some(&at("2026-11-25T11:00:00Z")));
        assert_eq!(stats.last_finished.len(), 1, "unfinished runs have no end: {:?}", stats.last_finished);
    }
}
