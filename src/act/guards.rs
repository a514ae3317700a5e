//! The limits and stop signals of a run: the blast-radius caps, the kill
//! switch, the hand-over flag and the step guard (the leader's Lease) that a
//! run checks before every step and on every poll of a wait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
