//! Starting the snapshot hub from either source: a dump read once, or a live
//! cluster watched (with its rebuild loop and the Garage probe).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use chrono::{DateTime, Utc};

use crate::cluster::watch::LiveCache;
use crate::cluster::{dump, ClusterState};
use crate::config::Config;
use crate::inspect::garage::GarageProbe;
use crate::snapshot::{Hub, RebuildHooks, Snapshot};

/// Where the cluster's objects come from.
#[derive(Clone, Debug, Default)]
pub struct Source {
    /// `kubectl get -o json|yaml` output (a file or a directory) instead of the API.
    pub from_dump: Option<PathBuf>,
    /// Evaluate a dump at this instant instead of its capture time.
    pub now: Option<DateTime<Utc>>,
}

/// Loads a dump into a snapshot-ready state.
pub fn load_dump(path: &std::path::Path, now: Option<DateTime<Utc>>) -> anyhow::Result<ClusterState> {
    let (mut state, summary) = dump::load(path)?;
    if let Some(now) = now {
        state.now = now;
    }
    tracing::info!(files = summary.files, objects = summary.objects, ignored = ?summary.ignored, evaluated_at = %state.now, "loaded dump");
    Ok(state)
}

/// Builds the hub for either source; for a live cluster, starts the watches
/// on `client` (connected here when None).
pub async fn start_hub(config: Config, source: &Source, client: Option<kube::Client>) -> anyhow::Result<Arc<Hub>> {
    if let Some(path) = &source.from_dump {
        let state = load_dump(path, source.now)?;
        let snapshot = Snapshot::build(state, &config, &GarageProbe::default());
        let hub = Arc::new(Hub::new(config, snapshot, None));
        tokio::spawn(crate::probes::run_garage_probe(hub.clone(), true));
        return Ok(hub);
    }
    if source.now.is_some() {
        bail!("--now only applies with --from-dump (a live cluster is evaluated at the current time)");
    }
    let client = match client {
        Some(c) => c,
        None => crate::cluster::connect::client("(set --kubeconfig/KUBECONFIG, run in a pod, or use --from-dump PATH)").await?,
    };
    Ok(start_live_hub(config, client))
}

pub fn start_live_hub(config: Config, client: kube::Client) -> Arc<Hub> {
    let live = Arc::new(LiveCache::default());
    live.spawn_watches(client, config.discovery_interval.0);
    let first = Snapshot::build(live.snapshot(), &config, &GarageProbe::default());
    let hub = Arc::new(Hub::new(config, first, Some(live)));
    let hooks = RebuildHooks {
        prepare: Box::new(|snapshot| {
            // An error is kept with the snapshot and answered by the scrape.
            let _ = crate::metrics::findings_exposition(snapshot);
        }),
        published: Box::new(crate::runtime::malloc::release_free_memory),
    };
    tokio::spawn(hub.clone().run_rebuilds(hooks));
    tokio::spawn(crate::probes::run_garage_probe(hub.clone(), false));
    hub
}

pub async fn wait_ready(hub: &Hub, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while !hub.ready() {
        if tokio::time::Instant::now() > deadline {
            bail!("the cluster's objects were not all listed within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// A snapshot as current as the source allows: the dump, or a fresh full list.
pub async fn current_snapshot(config: Config, source: &Source) -> anyhow::Result<Arc<Snapshot>> {
    let hub = start_hub(config, source, None).await?;
    if let Some(live) = &hub.live {
        wait_ready(&hub, Duration::from_secs(60)).await?;
        hub.publish(Snapshot::build(live.snapshot(), &hub.config, &GarageProbe::default()));
    }
    Ok(hub.snapshot())
}
