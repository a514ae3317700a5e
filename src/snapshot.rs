//! The current snapshot (cluster state + findings) shared by the HTTP server,
//! the metrics encoder and, later, the planner. Built off the scrape path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::cluster::watch::LiveCache;
use crate::cluster::ClusterState;
use crate::config::Config;
use crate::inspect::garage::GarageProbe;
use crate::inspect::{self, Findings};

#[derive(Debug)]
pub struct Snapshot {
    pub state: Arc<ClusterState>,
    pub findings: Findings,
    pub built_at: Instant,
    pub build_duration: Duration,
}

impl Snapshot {
    pub fn build(state: ClusterState, config: &Config, probe: &GarageProbe) -> Self {
        let started = Instant::now();
        let findings = inspect::inspect(&state, config, probe);
        Snapshot { state: Arc::new(state), findings, built_at: started, build_duration: started.elapsed() }
    }
}

/// Where the snapshot comes from and who reads it.
pub struct Hub {
    pub config: Config,
    current: RwLock<Arc<Snapshot>>,
    /// Present when serving a live cluster (watch health for self-metrics).
    pub live: Option<Arc<LiveCache>>,
    pub garage_probe: RwLock<GarageProbe>,
    pub last_scrape_nanos: AtomicU64,
    /// Set when `serve` executes remediation runs.
    pub remediation: RwLock<Option<crate::act::stats::RemediationStats>>,
    /// Alertmanager webhook counters (zero while the webhook is off).
    pub intake: Arc<crate::alerts::IntakeCounters>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hub")
    }
}

impl Hub {
    pub fn new(config: Config, first: Snapshot, live: Option<Arc<LiveCache>>) -> Self {
        Hub {
            config,
            current: RwLock::new(Arc::new(first)),
            live,
            garage_probe: RwLock::new(GarageProbe::default()),
            last_scrape_nanos: AtomicU64::new(0),
            remediation: RwLock::new(None),
            intake: Arc::default(),
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().expect("snapshot lock poisoned").clone()
    }

    pub fn publish(&self, snapshot: Snapshot) {
        *self.current.write().expect("snapshot lock poisoned") = Arc::new(snapshot);
    }

    /// Ready once the served snapshot holds every installed kind's first list.
    pub fn ready(&self) -> bool {
        self.kinds_not_served().is_empty()
    }

    /// Installed kinds whose first list the served snapshot lacks.
    pub fn kinds_not_served(&self) -> Vec<String> {
        self.live.as_ref().map(|live| live.kinds_missing_from(&self.snapshot().state)).unwrap_or_default()
    }

    /// Rebuilds from the live cache when it changed, when the probe changed,
    /// and at least every `snapshot_interval` (ages and grace periods move).
    pub async fn run_rebuilds(self: Arc<Self>) {
        let Some(live) = self.live.clone() else { return };
        let mut seen_generation = u64::MAX;
        let mut last_build = Instant::now() - self.config.snapshot_interval.0;
        loop {
            let generation = live.generation.load(Ordering::Relaxed);
            if generation != seen_generation || last_build.elapsed() >= self.config.snapshot_interval.0 {
                seen_generation = generation;
                last_build = Instant::now();
                let probe = self.garage_probe.read().expect("probe lock poisoned").clone();
                let state = live.snapshot();
                self.publish(Snapshot::build(state, &self.config, &probe));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// For a dump: re-inspect the same state with fresh probe results.
    pub fn refresh_findings(&self) {
        let current = self.snapshot();
        let probe = self.garage_probe.read().expect("probe lock poisoned").clone();
        let started = Instant::now();
        let findings = inspect::inspect(&current.state, &self.config, &probe);
        self.publish(Snapshot { state: current.state.clone(), findings, built_at: started, build_duration: started.elapsed() });
    }
}
