//! Live cache: one kube-rs watcher per kind, feeding a small in-memory map.
//!
//! Optional kinds (CRDs) are looked up through discovery first. While a CRD is
//! absent the kind is reported down (`lifeboat_watch_up{kind}` = 0) with one
//! log line, and discovery is retried until it appears; if it is removed later
//! the watch falls back to waiting. A snapshot is assembled from the maps on
//! demand; no finding ever calls the API.

use std::cmp::Ordering as KeyOrder;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};

use super::resources::*;
use super::ClusterState;
use crate::for_each_kind;

/// Counters and state of one kind's watch, read by the self-metrics.
#[derive(Debug, Default)]
pub struct WatchHealth {
    /// The API is served and the watch is healthy.
    pub up: AtomicBool,
    /// The initial list completed at least once (readiness).
    pub listed: AtomicBool,
    /// The kind's API is not served (CRD not installed).
    pub absent: AtomicBool,
    pub events: AtomicU64,
    pub errors: AtomicU64,
}

/// A cached object, ordered by its (namespace, name), so the cache stores
/// no key beside the object, and hands out its objects in the order a
/// snapshot sorts them in (the sort then only checks it).
struct Keyed<K>(Arc<K>);

impl<K: LeanObject> Keyed<K> {
    fn new(object: K) -> Self {
        Keyed(Arc::new(object))
    }
    fn key(&self) -> (&str, &str) {
        super::key(self.0.metadata())
    }
}
impl<K: LeanObject> PartialEq for Keyed<K> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl<K: LeanObject> Eq for Keyed<K> {}
impl<K: LeanObject> PartialOrd for Keyed<K> {
    fn partial_cmp(&self, other: &Self) -> Option<KeyOrder> {
        Some(self.cmp(other))
    }
}
impl<K: LeanObject> Ord for Keyed<K> {
    fn cmp(&self, other: &Self) -> KeyOrder {
        self.key().cmp(&other.key())
    }
}

/// Objects of one kind, one per (namespace, name), plus the watch's health.
pub struct KindCache<K> {
    objects: RwLock<BTreeSet<Keyed<K>>>,
    pub health: WatchHealth,
}

impl<K> Default for KindCache<K> {
    fn default() -> Self {
        Self { objects: RwLock::new(BTreeSet::new()), health: WatchHealth::default() }
    }
}

impl<K: LeanObject> KindCache<K> {
    fn replace_all(&self, objects: BTreeSet<Keyed<K>>) {
        *self.objects.write().expect("cache lock poisoned") = objects;
    }
    fn apply(&self, object: K) {
        self.objects.write().expect("cache lock poisoned").replace(Keyed::new(object));
    }
    fn delete(&self, object: K) {
        self.objects.write().expect("cache lock poisoned").remove(&Keyed::new(object));
    }
    fn clear(&self) {
        self.objects.write().expect("cache lock poisoned").clear();
    }
    pub fn snapshot(&self) -> Vec<Arc<K>> {
        self.objects.read().expect("cache lock poisoned").iter().map(|keyed| keyed.0.clone()).collect()
    }
}

macro_rules! define_live_cache {
    ($($field:ident: $ty:ident),* $(,)?) => {
        /// Every watched kind's cache. Shared by the watch tasks (writers) and
        /// the snapshot builder (reader).
        #[derive(Default)]
        pub struct LiveCache {
            $(pub $field: KindCache<$ty>,)*
            /// Bumped on every change; lets the snapshot builder skip idle rounds.
            pub generation: AtomicU64,
        }

        impl LiveCache {
            pub fn snapshot(&self) -> ClusterState {
                let mut state = ClusterState { now: Utc::now(), ..Default::default() };
                $(
                    state.$field = self.$field.snapshot();
                    state.listed_kinds.insert(
                        <$ty as LeanObject>::INFO.label(),
                        self.$field.health.listed.load(Ordering::Relaxed) && !self.$field.health.absent.load(Ordering::Relaxed),
                    );
                )*
                state.finish();
                state
            }

            /// (kind label, health) for every kind.
            pub fn health(&self) -> Vec<(String, &WatchHealth)> {
                vec![$((<$ty as LeanObject>::INFO.label(), &self.$field.health),)*]
            }

            /// Installed kinds whose first list `state` does not hold yet. The
            /// caches fill before the served snapshot is rebuilt from them, so
            /// readiness asks the snapshot, not the caches.
            pub fn kinds_missing_from(&self, state: &ClusterState) -> Vec<String> {
                self.health()
                    .into_iter()
                    .filter(|(kind, h)| !h.absent.load(Ordering::Relaxed) && !state.listed_kinds.get(kind).copied().unwrap_or(false))
                    .map(|(kind, _)| kind)
                    .collect()
            }

            /// Starts one watch task per kind.
            pub fn spawn_watches(self: &Arc<Self>, client: Client, discovery_interval: Duration) {
                $(
                    let cache = self.clone();
                    let client_for_kind = client.clone();
                    tokio::spawn(async move {
                        run_watch::<$ty>(client_for_kind, &cache.$field, &cache.generation, discovery_interval).await
                    });
                )*
            }
        }
    };
}
for_each_kind!(define_live_cache);

/// Whether the API server serves `K` (its CRD is installed).
async fn api_served<K: LeanObject>(client: &Client) -> Result<bool, kube::Error> {
    let info = K::INFO;
    let list = if info.group.is_empty() { client.list_core_api_resources(info.version).await } else { client.list_api_group_resources(&info.api_version()).await };
    match list {
        Ok(resources) => Ok(resources.resources.iter().any(|r| r.name == info.plural)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

fn is_not_found(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(s)) | watcher::Error::WatchStartFailed(kube::Error::Api(s)) | watcher::Error::WatchFailed(kube::Error::Api(s)) => {
            s.code == 404
        }
        watcher::Error::WatchError(s) => s.code == 404,
        _ => false,
    }
}

async fn run_watch<K: LeanObject>(client: Client, cache: &KindCache<K>, generation: &AtomicU64, discovery_interval: Duration) {
    let label = K::INFO.label();
    let mut reported_absent = false;
    loop {
        if K::INFO.optional {
            match api_served::<K>(&client).await {
                Ok(true) => {}
                Ok(false) => {
                    if !reported_absent {
                        tracing::info!(kind = %label, "API not served (CRD not installed); skipping this kind until it appears");
                        reported_absent = true;
                    }
                    mark_absent(cache, generation);
                    tokio::time::sleep(discovery_interval).await;
                    continue;
                }
                Err(error) => {
                    cache.health.errors.fetch_add(1, Ordering::Relaxed);
                    cache.health.up.store(false, Ordering::Relaxed);
                    tracing::warn!(kind = %label, %error, "discovery failed; retrying");
                    tokio::time::sleep(discovery_interval).await;
                    continue;
                }
            }
        }
        if reported_absent {
            tracing::info!(kind = %label, "API now served; starting watch");
            reported_absent = false;
        }
        cache.health.absent.store(false, Ordering::Relaxed);
        watch_until_gone(&client, cache, generation).await;
        mark_absent(cache, generation);
    }
}

fn mark_absent<K: LeanObject>(cache: &KindCache<K>, generation: &AtomicU64) {
    if !cache.health.absent.swap(true, Ordering::Relaxed) {
        cache.clear();
        generation.fetch_add(1, Ordering::Relaxed);
    }
    cache.health.up.store(false, Ordering::Relaxed);
}

/// Runs the watch until the API stops being served (404). Other errors are
/// counted and retried with the watcher's backoff.
async fn watch_until_gone<K: LeanObject>(client: &Client, cache: &KindCache<K>, generation: &AtomicU64) {
    let label = K::INFO.label();
    let api: Api<K::Wire> = Api::all(client.clone());
    // Paged lists (500 objects a page) at the most recent version. With
    // `any_semantic()` (resourceVersion=0) the apiserver ignores `limit` and
    // answers the whole kind in one response, all of it in memory at once.
    // The streaming list (sendInitialEvents) would do as well but needs the
    // WatchList gate, on by default only from Kubernetes 1.34.
    let config = watcher::Config::default();
    let mut stream = std::pin::pin!(watcher::watcher(api, config).default_backoff());
    let mut pending: Option<BTreeSet<Keyed<K>>> = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                cache.health.up.store(true, Ordering::Relaxed);
                cache.health.events.fetch_add(1, Ordering::Relaxed);
                match event {
                    Event::Init => pending = Some(BTreeSet::new()),
                    // Each object is converted to its cached form as it
                    // arrives: the decoded one lives only this long.
                    Event::InitApply(object) => {
                        pending.get_or_insert_with(BTreeSet::new).replace(Keyed::new(K::from_wire(object)));
                    }
                    Event::InitDone => {
                        cache.replace_all(pending.take().unwrap_or_default());
                        cache.health.listed.store(true, Ordering::Relaxed);
                    }
                    Event::Apply(object) => cache.apply(K::from_wire(object)),
                    Event::Delete(object) => cache.delete(K::from_wire(object)),
                }
                generation.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                cache.health.errors.fetch_add(1, Ordering::Relaxed);
                cache.health.up.store(false, Ordering::Relaxed);
                if K::INFO.optional && is_not_found(&error) {
                    tracing::warn!(kind = %label, "API no longer served; waiting for the CRD to come back");
                    return;
                }
                tracing::warn!(kind = %label, %error, "watch error; retrying with backoff");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::inspect::garage::GarageProbe;
    use crate::snapshot::{Hub, Snapshot};

    fn list_everything(live: &LiveCache) {
        for (_, health) in live.health() {
            health.listed.store(true, Ordering::Relaxed);
        }
    }

    fn pod(ns: &str, name: &str, phase: &str) -> Pod {
        let wire = serde_json::json!({"metadata": {"namespace": ns, "name": name, "uid": "1"}, "status": {"phase": phase}});
        Pod::from_wire(serde_json::from_value(wire).unwrap())
    }

    #[test]
    fn the_cache_keeps_one_object_per_name_and_hands_them_out_sorted() {
        let cache = KindCache::<Pod>::default();
        cache.apply(pod("b", "x", "Pending"));
        cache.apply(pod("a", "y", "Pending"));
        cache.apply(pod("a", "x", "Pending"));
        cache.apply(pod("b", "x", "Running"));
        cache.delete(pod("a", "y", "Unknown"));
        let held: Vec<(String, String, String)> = cache
            .snapshot()
            .iter()
            .map(|p| (super::super::namespace(&p.metadata).into(), super::super::name(&p.metadata).into(), p.status.phase.as_deref().unwrap_or("").into()))
            .collect();
        let expected = [("a", "x", "Pending"), ("b", "x", "Running")].map(|(n, m, p)| (n.to_string(), m.to_string(), p.to_string()));
        assert_eq!(held, expected);
    }

    #[test]
    fn not_ready_until_the_served_snapshot_holds_every_first_list() {
        let live = Arc::new(LiveCache::default());
        let config = Config::default();
        let first = Snapshot::build(live.snapshot(), &config, &GarageProbe::default());
        let hub = Hub::new(config, first, Some(live.clone()));
        list_everything(&live);
        assert!(!hub.ready(), "caches listed, but the served snapshot predates the lists");
        assert_eq!(hub.kinds_not_served().len(), ClusterState::all_kinds().len());

        hub.publish(Snapshot::build(live.snapshot(), &hub.config, &GarageProbe::default()));
        assert!(hub.ready(), "still waiting for {:?}", hub.kinds_not_served());
    }

    #[test]
    fn an_absent_kind_does_not_hold_readiness_back() {
        let live = Arc::new(LiveCache::default());
        list_everything(&live);
        live.cnpg_clusters.health.listed.store(false, Ordering::Relaxed);
        live.cnpg_clusters.health.absent.store(true, Ordering::Relaxed);
        let config = Config::default();
        let served = Snapshot::build(live.snapshot(), &config, &GarageProbe::default());
        let hub = Hub::new(config, served, Some(live));
        assert!(hub.ready(), "still waiting for {:?}", hub.kinds_not_served());
    }
}
