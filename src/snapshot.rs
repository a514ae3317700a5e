//! The current snapshot (cluster state + findings) shared by the HTTP server,
//! the metrics encoder and, later, the planner. Built off the scrape path.

use std::any::{Any, TypeId};
use std::collections::HashMap;
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
    /// What the components above the hub publish for /metrics.
    pub self_metrics: SelfMetrics,
}

/// Self-metrics of the components above the hub (the Alertmanager intake's
/// counters, the remediation statistics), one value per type: the hub holds
/// them for the metrics encoder without knowing what they are.
#[derive(Default)]
pub struct SelfMetrics(RwLock<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>);

impl SelfMetrics {
    /// Replaces the published value of this type.
    pub fn publish<T: Any + Send + Sync>(&self, value: T) {
        self.0.write().expect("self-metrics lock poisoned").insert(TypeId::of::<T>(), Arc::new(value));
    }

    /// The published value of this type, if any.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let value = self.0.read().expect("self-metrics lock poisoned").get(&TypeId::of::<T>()).cloned()?;
        value.downcast::<T>().ok()
    }

    /// The published value of this type, published as its default first if
    /// absent (for shared counters).
    pub fn get_or_default<T: Any + Send + Sync + Default>(&self) -> Arc<T> {
        let mut values = self.0.write().expect("self-metrics lock poisoned");
        let value = values.entry(TypeId::of::<T>()).or_insert_with(|| Arc::new(T::default())).clone();
        value.downcast::<T>().expect("keyed by its own type")
    }
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
            self_metrics: SelfMetrics::default(),
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
