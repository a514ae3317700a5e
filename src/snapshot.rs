//! The current snapshot (cluster state + findings) shared by the HTTP server,
//! the metrics encoder and, later, the planner. Built off the scrape path.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;

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
    /// This snapshot's findings as OpenMetrics families, encoded once
    /// (`metrics::findings_exposition`).
    pub findings_exposition: OnceLock<Result<Bytes, std::fmt::Error>>,
}

impl Snapshot {
    pub fn build(state: ClusterState, config: &Config, probe: &GarageProbe) -> Self {
        let started = Instant::now();
        let findings = inspect::inspect(&state, config, probe);
        Snapshot { state: Arc::new(state), findings, built_at: started, build_duration: started.elapsed(), findings_exposition: OnceLock::new() }
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

pub type SnapshotHook = dyn Fn(&Arc<Snapshot>) + Send + Sync;

/// What `Hub::run_rebuilds` does around each rebuilt snapshot, on the
/// rebuild's thread (off the async workers). The wiring layer supplies it:
/// the work belongs to layers above the hub (the metrics encoding, the
/// process's allocator).
pub struct RebuildHooks {
    /// On the new snapshot before it is served (e.g. encoding what scrapes
    /// send, so no scrape waits for it).
    pub prepare: Box<SnapshotHook>,
    /// Once it is served and the previous one released (e.g. handing freed
    /// memory back).
    pub published: Box<dyn Fn() + Send + Sync>,
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
        self.publish_shared(Arc::new(snapshot));
    }

    pub fn publish_shared(&self, snapshot: Arc<Snapshot>) {
        let previous = std::mem::replace(&mut *self.current.write().expect("snapshot lock poisoned"), snapshot);
        // Freed after the lock is released: scrapes don't wait for it.
        drop(previous);
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
    /// Under churn a change-driven rebuild waits for [`RebuildPacing`], so a
    /// busy cluster costs a bounded share of a core instead of one full
    /// rebuild per poll.
    pub async fn run_rebuilds(self: Arc<Self>, hooks: RebuildHooks) {
        let Some(live) = self.live.clone() else { return };
        let pacing = RebuildPacing { poll: Duration::from_millis(250), interval: self.config.snapshot_interval.0 };
        let mut seen_generation = u64::MAX;
        let mut last: Option<(Instant, Duration)> = None;
        let hooks = Arc::new(hooks);
        loop {
            let generation = live.generation.load(Ordering::Relaxed);
            let since = last.map(|(started, took)| (started.elapsed(), took));
            if pacing.due(since, generation != seen_generation, self.ready()) {
                seen_generation = generation;
                let started = Instant::now();
                let probe = self.garage_probe.read().expect("probe lock poisoned").clone();
                // Off the async workers: a rebuild takes tens of milliseconds
                // at 40k objects, which a scrape on the same worker would wait for.
                let (hub, live, hooks) = (self.clone(), live.clone(), hooks.clone());
                let rebuilt = tokio::task::spawn_blocking(move || {
                    let snapshot = Arc::new(Snapshot::build(live.snapshot(), &hub.config, &probe));
                    (hooks.prepare)(&snapshot);
                    hub.publish_shared(snapshot);
                    // The previous snapshot is gone unless a scrape still holds it.
                    (hooks.published)();
                })
                .await;
                if let Err(error) = rebuilt {
                    tracing::error!(%error, "snapshot rebuild failed; serving the previous one");
                }
                last = Some((started, started.elapsed()));
            }
            tokio::time::sleep(pacing.poll).await;
        }
    }

    /// For a dump: re-inspect the same state with fresh probe results.
    pub fn refresh_findings(&self) {
        let current = self.snapshot();
        let probe = self.garage_probe.read().expect("probe lock poisoned").clone();
        let started = Instant::now();
        let findings = inspect::inspect(&current.state, &self.config, &probe);
        self.publish(Snapshot { state: current.state.clone(), findings, built_at: started, build_duration: started.elapsed(), findings_exposition: OnceLock::new() });
    }
}

/// When the rebuild loop builds again. A change is picked up at the next poll
/// while the served snapshot still lacks a first list (readiness waits on it)
/// and while rebuilds are cheap; once they are not, a change waits until the
/// previous rebuild's duration is at most [`Self::CHURN_PERCENT`] percent of the time
/// since it started. Nothing waits longer than `interval`, the age refresh.
#[derive(Clone, Copy, Debug)]
pub struct RebuildPacing {
    pub poll: Duration,
    pub interval: Duration,
}

impl RebuildPacing {
    /// Percent of one core that change-driven rebuilds may take under churn.
    pub const CHURN_PERCENT: u32 = 10;

    /// `since`: time since the last rebuild started and how long it took
    /// (`None` before the first).
    pub fn due(&self, since: Option<(Duration, Duration)>, changed: bool, ready: bool) -> bool {
        let Some((elapsed, took)) = since else { return true };
        if elapsed >= self.interval {
            return true;
        }
        changed && (!ready || elapsed >= took * (100 / Self::CHURN_PERCENT))
    }
}

#[cfg(test)]
mod tests {
    use super::RebuildPacing;
    use std::time::Duration;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    const PACING: RebuildPacing = RebuildPacing { poll: Duration::from_millis(250), interval: Duration::from_secs(10) };

    #[test]
    fn the_first_build_and_the_age_refresh_never_wait() {
        assert!(PACING.due(None, false, false));
        assert!(PACING.due(Some((ms(10_000), ms(5_000))), false, true));
        assert!(!PACING.due(Some((ms(9_999), ms(1))), false, true), "no change, no refresh due");
    }

    #[test]
    fn cheap_rebuilds_follow_every_change() {
        assert!(PACING.due(Some((ms(250), ms(20))), true, true));
    }

    #[test]
    fn costly_rebuilds_under_churn_keep_to_their_share_of_a_core() {
        // A 400 ms rebuild is followed by the next one 4 s after it started.
        assert!(!PACING.due(Some((ms(3_999), ms(400))), true, true));
        assert!(PACING.due(Some((ms(4_000), ms(400))), true, true));
    }

    #[test]
    fn until_ready_a_change_is_built_at_once() {
        assert!(PACING.due(Some((ms(250), ms(400))), true, false));
    }
}
