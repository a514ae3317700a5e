//! Encodes the current snapshot as OpenMetrics at scrape time. A scrape never
//! calls the Kubernetes API: it reads the findings already computed.

pub mod catalog;

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::inspect::nodes::Availability;
use crate::snapshot::Hub;
use catalog::*;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug)]
struct Collector {
    hub: Arc<Hub>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hub")
    }
}

/// Encodes every lifeboat metric; records how long it took for the next scrape.
pub fn render(hub: &Arc<Hub>) -> Result<String, fmt::Error> {
    let started = Instant::now();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Collector { hub: hub.clone() }));
    let mut out = String::with_capacity(64 * 1024);
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    hub.last_scrape_nanos.store(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    Ok(out)
}

type Sample = (Vec<String>, f64);

/// Writes one metric family; label names come from the catalog, so a sample
/// cannot carry labels the catalog does not declare.
fn family(encoder: &mut DescriptorEncoder, def: &MetricDef, samples: Vec<Sample>) -> fmt::Result {
    if samples.is_empty() {
        return Ok(());
    }
    let (name, metric_type) = match def.kind {
        Kind::Gauge => (def.name, MetricType::Gauge),
        Kind::Counter => (def.name.strip_suffix("_total").unwrap_or(def.name), MetricType::Counter),
    };
    let mut metric = encoder.encode_descriptor(name, def.help, None, metric_type)?;
    for (values, value) in samples {
        debug_assert_eq!(values.len(), def.labels.len(), "{}: label count", def.name);
        let labels: Vec<(&str, String)> = def.labels.iter().copied().zip(values).collect();
        let sample = metric.encode_family(&labels)?;
        match def.kind {
            Kind::Gauge => ConstGauge::new(value).encode(sample)?,
            Kind::Counter => ConstCounter::new(value as u64).encode(sample)?,
        }
    }
    Ok(())
}

fn ts(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

fn s(v: &str) -> String {
    v.to_string()
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let hub = &self.hub;
        let snap = hub.snapshot();
        let f = &snap.findings;

        family(&mut enc, &BUILD_INFO, vec![(vec![s(env!("CARGO_PKG_VERSION"))], 1.0)])?;
        if let Some(live) = &hub.live {
            let health = live.health();
            family(&mut enc, &WATCH_UP, health.iter().map(|(k, h)| (vec![k.clone()], flag(h.up.load(Ordering::Relaxed)))).collect())?;
            family(&mut enc, &WATCH_EVENTS, health.iter().map(|(k, h)| (vec![k.clone()], h.events.load(Ordering::Relaxed) as f64)).collect())?;
            family(&mut enc, &WATCH_ERRORS, health.iter().map(|(k, h)| (vec![k.clone()], h.errors.load(Ordering::Relaxed) as f64)).collect())?;
        } else {
            let listed = &snap.state.listed_kinds;
            family(&mut enc, &WATCH_UP, listed.iter().map(|(k, up)| (vec![k.clone()], flag(*up))).collect())?;
        }
        family(&mut enc, &OBJECTS, snap.state.object_counts().into_iter().map(|(k, n)| (vec![k], n as f64)).collect())?;
        family(&mut enc, &SNAPSHOT_AGE, vec![(vec![], snap.built_at.elapsed().as_secs_f64())])?;
        family(&mut enc, &SNAPSHOT_BUILD, vec![(vec![], snap.build_duration.as_secs_f64())])?;
        family(&mut enc, &SCRAPE_DURATION, vec![(vec![], hub.last_scrape_nanos.load(Ordering::Relaxed) as f64 / 1e9)])?;

        // Nodes and pinned volumes.
        let reason = |a: &Availability| match a {
            Availability::Missing => "missing",
            _ => "not_ready",
        };
        family(&mut enc, &NODE_UNAVAILABLE, f.nodes.iter().map(|n| (vec![n.node.clone(), s(reason(&n.availability))], 1.0)).collect())?;
        family(&mut enc, &NODE_UNAVAILABLE_SINCE, f.nodes.iter().filter_map(|n| Some((vec![n.node.clone()], ts(n.since?)))).collect())?;
        family(&mut enc, &NODE_LOST, f.nodes.iter().map(|n| (vec![n.node.clone(), s(reason(&n.availability))], flag(n.lost))).collect())?;
        let pinned_counts = f.nodes.iter().map(|n| {
            let count = f.lost_volumes.iter().filter(|v| v.node == n.node).count();
            (vec![n.node.clone()], count as f64)
        });
        family(&mut enc, &NODE_PINNED_VOLUMES, pinned_counts.collect())?;
        family(
            &mut enc,
            &VOLUME_ON_LOST_NODE,
            f.lost_volumes
                .iter()
                .map(|v| {
                    let labels = vec![
                        v.persistent_volume.clone(),
                        v.node.clone(),
                        v.claim_namespace.clone().unwrap_or_default(),
                        v.claim_name.clone().unwrap_or_default(),
                        v.storage_class.clone().unwrap_or_default(),
                    ];
                    (labels, 1.0)
                })
                .collect(),
        )?;
        family(
            &mut enc,
            &POD_BLOCKED,
            f.blocked_pods.iter().map(|p| (vec![p.namespace.clone(), p.pod.clone(), p.claim.clone(), p.node.clone()], 1.0)).collect(),
        )?;

        // CloudNativePG.
        let id = |ns: &str, n: &str| vec![s(ns), s(n)];
        family(&mut enc, &CNPG_ARCHIVING_OK, f.cnpg.iter().filter_map(|c| Some((id(&c.namespace, &c.cluster), flag(c.archiving_ok?)))).collect())?;
        family(&mut enc, &CNPG_ARCHIVING_SINCE, f.cnpg.iter().filter_map(|c| Some((id(&c.namespace, &c.cluster), ts(c.archiving_since?)))).collect())?;
        let states = f.cnpg.iter().flat_map(|c| {
            crate::inspect::cnpg::BackupState::ALL
                .iter()
                .map(move |st| (vec![c.namespace.clone(), c.cluster.clone(), s(st.as_str())], flag(*st == c.last_backup)))
        });
        family(&mut enc, &CNPG_LAST_BACKUP_STATE, states.collect())?;
        let source = |c: &crate::inspect::cnpg::CnpgFinding| match c.window_source {
            Some(crate::inspect::cnpg::WindowSource::ObjectStore) => "objectstore",
            Some(crate::inspect::cnpg::WindowSource::ClusterStatus) => "cluster_status",
            None => "none",
        };
        family(
            &mut enc,
            &CNPG_LAST_BACKUP,
            f.cnpg.iter().filter_map(|c| Some((vec![c.namespace.clone(), c.cluster.clone(), s(source(c))], ts(c.last_successful_backup?)))).collect(),
        )?;
        family(
            &mut enc,
            &CNPG_FIRST_RECOVERABILITY,
            f.cnpg
                .iter()
                .filter_map(|c| Some((vec![c.namespace.clone(), c.cluster.clone(), s(source(c))], ts(c.first_recoverability_point?))))
                .collect(),
        )?;
        family(&mut enc, &CNPG_BACKUP_STALE, f.cnpg.iter().map(|c| (id(&c.namespace, &c.cluster), flag(c.backup_stale))).collect())?;
        family(&mut enc, &CNPG_BACKUP_MAX_AGE, f.cnpg.iter().map(|c| (id(&c.namespace, &c.cluster), c.max_backup_age_seconds as f64)).collect())?;
        family(
            &mut enc,
            &CNPG_PRIMARY_ON_LOST_NODE,
            f.cnpg
                .iter()
                .filter_map(|c| {
                    let labels = vec![c.namespace.clone(), c.cluster.clone(), c.primary.clone()?, c.primary_node.clone().unwrap_or_default()];
                    Some((labels, flag(c.primary_on_lost_node)))
                })
                .collect(),
        )?;
        family(&mut enc, &CNPG_INSTANCES, f.cnpg.iter().map(|c| (id(&c.namespace, &c.cluster), c.instances as f64)).collect())?;
        family(&mut enc, &CNPG_READY_INSTANCES, f.cnpg.iter().map(|c| (id(&c.namespace, &c.cluster), c.ready_instances as f64)).collect())?;
        family(&mut enc, &CNPG_DANGLING_PVCS, f.cnpg.iter().map(|c| (id(&c.namespace, &c.cluster), c.dangling_pvcs.len() as f64)).collect())?;

        // MariaDB.
        family(&mut enc, &MARIADB_GALERA_READY, f.mariadb.iter().filter_map(|m| Some((id(&m.namespace, &m.name), flag(m.galera_ready?)))).collect())?;
        family(&mut enc, &MARIADB_INSTANCES_LOST, f.mariadb.iter().map(|m| (id(&m.namespace, &m.name), m.instances_on_lost_nodes.len() as f64)).collect())?;
        family(
            &mut enc,
            &MARIADB_FORCE_BOOTSTRAP,
            f.mariadb.iter().filter_map(|m| Some((vec![m.namespace.clone(), m.name.clone(), m.force_bootstrap_pod.clone()?], 1.0))).collect(),
        )?;

        // VolSync.
        let vid = |v: &crate::inspect::volsync::VolsyncFinding| vec![v.namespace.clone(), v.name.clone(), s(v.role.as_str())];
        let sources = || f.volsync.iter().filter(|v| v.role == crate::inspect::volsync::Role::Source);
        family(&mut enc, &VOLSYNC_LAST_SYNC, f.volsync.iter().filter_map(|v| Some((vid(v), ts(v.last_sync?)))).collect())?;
        family(&mut enc, &VOLSYNC_INTERVAL, f.volsync.iter().filter_map(|v| Some((vid(v), v.interval_seconds? as f64))).collect())?;
        family(&mut enc, &VOLSYNC_STALE, sources().map(|v| (id(&v.namespace, &v.name), flag(v.stale))).collect())?;
        family(&mut enc, &VOLSYNC_PAUSED, f.volsync.iter().map(|v| (vid(v), flag(v.paused))).collect())?;
        family(&mut enc, &VOLSYNC_MOVER_FAILED, f.volsync.iter().map(|v| (vid(v), flag(v.mover_failed))).collect())?;
        family(&mut enc, &VOLSYNC_SYNC_STARTED, f.volsync.iter().filter_map(|v| Some((vid(v), ts(v.sync_in_progress_since?)))).collect())?;
        family(&mut enc, &VOLSYNC_SYNC_STUCK, f.volsync.iter().map(|v| (vid(v), flag(v.stuck))).collect())?;
        family(
            &mut enc,
            &VOLSYNC_CACHE_ON_LOST_NODE,
            f.volsync
                .iter()
                .filter_map(|v| {
                    let node = v.cache_pvc_lost_node.clone()?;
                    Some((vec![v.namespace.clone(), v.name.clone(), s(v.role.as_str()), v.cache_pvc.clone(), node], 1.0))
                })
                .collect(),
        )?;
        let destinations = f.volsync.iter().filter(|v| v.role == crate::inspect::volsync::Role::Destination);
        family(&mut enc, &VOLSYNC_ORPHANED, destinations.map(|v| (id(&v.namespace, &v.name), flag(v.orphaned))).collect())?;

        // Garage.
        let g = &f.garage;
        family(&mut enc, &GARAGE_PODS, vec![(vec![hub.config.garage.namespace.clone()], g.pods.len() as f64)])?;
        family(&mut enc, &GARAGE_SIDECAR_PRESENT, g.pods.iter().map(|p| (id(&p.namespace, &p.pod), flag(p.sidecar_present))).collect())?;
        family(&mut enc, &GARAGE_SIDECAR_RUNNING, g.pods.iter().map(|p| (id(&p.namespace, &p.pod), flag(p.sidecar_running))).collect())?;
        family(&mut enc, &GARAGE_SIDECAR_RESTARTS, g.pods.iter().map(|p| (id(&p.namespace, &p.pod), p.sidecar_restarts as f64)).collect())?;
        family(&mut enc, &GARAGE_SNAPSHOT, g.newest_snapshot.map(|t| (vec![], ts(t))).into_iter().collect())?;
        if hub.config.garage.backup_dir.is_some() {
            let ok = g.snapshot_error.is_none() && g.newest_snapshot.is_some();
            family(&mut enc, &GARAGE_SNAPSHOT_PROBE_OK, vec![(vec![], flag(ok))])?;
        }
        family(&mut enc, &GARAGE_ADMIN_HEALTHY, g.admin_healthy.map(|h| (vec![], flag(h))).into_iter().collect())?;

        // Flux.
        let fid = |x: &crate::inspect::flux::FluxFinding| vec![s(x.kind), x.namespace.clone(), x.name.clone()];
        family(&mut enc, &FLUX_SUSPENDED, f.flux.iter().map(|x| (fid(x), flag(x.suspended))).collect())?;
        family(&mut enc, &FLUX_READY, f.flux.iter().map(|x| (fid(x), flag(x.ready == Some(true)))).collect())?;

        // Backup CronJobs.
        let cid = |c: &crate::inspect::cronjobs::CronJobFinding| vec![c.namespace.clone(), c.cronjob.clone()];
        family(&mut enc, &CRONJOB_LAST_SUCCESS, f.backup_cronjobs.iter().filter_map(|c| Some((cid(c), ts(c.last_success?)))).collect())?;
        family(&mut enc, &CRONJOB_INTERVAL, f.backup_cronjobs.iter().filter_map(|c| Some((cid(c), c.interval_seconds? as f64))).collect())?;
        family(&mut enc, &CRONJOB_STALE, f.backup_cronjobs.iter().map(|c| (cid(c), flag(c.stale))).collect())?;

        // Protection coverage.
        family(
            &mut enc,
            &PVC_PROTECTION,
            f.protection
                .iter()
                .map(|p| (vec![p.namespace.clone(), p.pvc.clone(), s(p.source.as_str()), p.pinned_node.clone().unwrap_or_default()], 1.0))
                .collect(),
        )?;
        family(
            &mut enc,
            &PVC_SOURCE_FRESH,
            f.protection.iter().filter_map(|p| Some((vec![p.namespace.clone(), p.pvc.clone(), s(p.source.as_str())], flag(p.fresh?)))).collect(),
        )?;
        family(
            &mut enc,
            &PVC_UNPROTECTED,
            f.protection
                .iter()
                .filter(|p| p.unprotected())
                .map(|p| (vec![p.namespace.clone(), p.pvc.clone(), p.pinned_node.clone().unwrap_or_default()], 1.0))
                .collect(),
        )?;
        family(
            &mut enc,
            &CONFIG_PROBLEM,
            f.config_problems.iter().map(|c| (vec![c.kind.clone(), c.namespace.clone(), c.name.clone(), c.problem.clone()], 1.0)).collect(),
        )?;
        Ok(())
    }
}
