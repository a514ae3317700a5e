//! Encodes the current snapshot as OpenMetrics: its findings once per
//! snapshot, the process's own families at each scrape. A scrape never calls
//! the Kubernetes API: it reads the findings already computed.

pub mod catalog;

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use prometheus_client::encoding::{text, DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::inspect::cronjobs::CronJobFinding;
use crate::inspect::flux::FluxFinding;
use crate::inspect::nodes::Availability;
use crate::inspect::volsync::VolsyncFinding;
use crate::snapshot::{Hub, Snapshot};
use catalog::*;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The families a scrape encodes afresh: the process's own counters and
/// the watches' health, which move between two snapshots.
#[derive(Debug)]
struct Live {
    hub: Arc<Hub>,
    snap: Arc<Snapshot>,
}

/// The families made from one snapshot's findings, encoded once per
/// snapshot ([`findings_exposition`]): nearly all of a large cluster's body.
#[derive(Debug)]
struct FindingsFamilies {
    snap: Arc<Snapshot>,
}

/// A scrape's body in two parts: the live families, then the served
/// snapshot's findings families, which end the exposition (`# EOF`).
pub struct Exposition {
    pub live: String,
    pub findings: Bytes,
}

/// Encodes every lifeboat metric; records how long it took for the next scrape.
pub fn render_parts(hub: &Arc<Hub>) -> Result<Exposition, fmt::Error> {
    let started = Instant::now();
    let snap = hub.snapshot();
    let findings = findings_exposition(&snap)?;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Live { hub: hub.clone(), snap }));
    let mut live = String::with_capacity(16 * 1024);
    text::encode_registry(&mut live, &registry)?;
    hub.last_scrape_nanos.store(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    Ok(Exposition { live, findings })
}

/// The whole exposition as one string.
pub fn render(hub: &Arc<Hub>) -> Result<String, fmt::Error> {
    let Exposition { mut live, findings } = render_parts(hub)?;
    live.push_str(std::str::from_utf8(&findings).expect("encoded from a String"));
    Ok(live)
}

/// The findings families of `snap`, encoded on first use and kept with it,
/// so scrapes between two rebuilds share one encoding.
pub fn findings_exposition(snap: &Arc<Snapshot>) -> Result<Bytes, fmt::Error> {
    let encoded = snap.findings_exposition.get_or_init(|| {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(FindingsFamilies { snap: snap.clone() }));
        let mut out = String::with_capacity(64 * 1024);
        text::encode_registry(&mut out, &registry)?;
        text::encode_eof(&mut out)?;
        Ok(Bytes::from(out))
    });
    encoded.clone()
}

/// Label values (in catalog order) and the value. Values borrow from the
/// snapshot; only computed labels allocate.
type Sample<'a> = (Vec<Cow<'a, str>>, f64);

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
        let labels: Vec<(&str, Cow<str>)> = def.labels.iter().copied().zip(values).collect();
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

fn s(v: &str) -> Cow<'_, str> {
    Cow::Borrowed(v)
}

fn owned<'a>(v: String) -> Cow<'a, str> {
    Cow::Owned(v)
}

fn id<'a>(ns: &'a str, name: &'a str) -> Vec<Cow<'a, str>> {
    vec![s(ns), s(name)]
}

fn vid(v: &VolsyncFinding) -> Vec<Cow<'_, str>> {
    vec![s(&v.namespace), s(&v.name), s(v.role.as_str())]
}

fn fid(x: &FluxFinding) -> Vec<Cow<'_, str>> {
    vec![s(x.kind), s(&x.namespace), s(&x.name)]
}

fn cid(c: &CronJobFinding) -> Vec<Cow<'_, str>> {
    vec![s(&c.namespace), s(&c.cronjob)]
}

impl prometheus_client::collector::Collector for Live {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let hub = &self.hub;
        let snap = &self.snap;

        family(&mut enc, &BUILD_INFO, vec![(vec![s(env!("CARGO_PKG_VERSION"))], 1.0)])?;
        if let Some(live) = &hub.live {
            let health = live.health();
            family(&mut enc, &WATCH_UP, health.iter().map(|(k, h)| (vec![s(k)], flag(h.up.load(Ordering::Relaxed)))).collect())?;
            family(&mut enc, &WATCH_EVENTS, health.iter().map(|(k, h)| (vec![s(k)], h.events.load(Ordering::Relaxed) as f64)).collect())?;
            family(&mut enc, &WATCH_ERRORS, health.iter().map(|(k, h)| (vec![s(k)], h.errors.load(Ordering::Relaxed) as f64)).collect())?;
        } else {
            let listed = &snap.state.listed_kinds;
            family(&mut enc, &WATCH_UP, listed.iter().map(|(k, up)| (vec![s(k)], flag(*up))).collect())?;
        }
        family(&mut enc, &OBJECTS, snap.state.object_counts().into_iter().map(|(k, n)| (vec![owned(k)], n as f64)).collect())?;
        family(&mut enc, &SNAPSHOT_AGE, vec![(vec![], snap.built_at.elapsed().as_secs_f64())])?;
        family(&mut enc, &SNAPSHOT_BUILD, vec![(vec![], snap.build_duration.as_secs_f64())])?;
        family(&mut enc, &SCRAPE_DURATION, vec![(vec![], hub.last_scrape_nanos.load(Ordering::Relaxed) as f64 / 1e9)])?;
        let intake = hub.self_metrics.get::<crate::alerts::IntakeCounters>().unwrap_or_default();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed) as f64;
        family(&mut enc, &ALERTMANAGER_REQUESTS, vec![(vec![s("accepted")], load(&intake.accepted)), (vec![s("rejected")], load(&intake.rejected))])?;
        family(
            &mut enc,
            &ALERTMANAGER_ALERTS,
            vec![
                (vec![s("run")], load(&intake.runs_created)),
                (vec![s("duplicate")], load(&intake.duplicates)),
                (vec![s("unrouted")], load(&intake.unrouted)),
                (vec![s("nothing_to_do")], load(&intake.nothing_to_do)),
                (vec![s("resolved")], load(&intake.resolved)),
                (vec![s("cleared")], load(&intake.cleared)),
            ],
        )?;
        family(&mut enc, &JOURNAL_UNDECODABLE, vec![(vec![], crate::journal::undecodable_runs() as f64)])?;
        if let Some(stats) = hub.self_metrics.get::<crate::remediator::stats::RemediationStats>() {
            family(&mut enc, &REMEDIATION_LEADER, vec![(vec![], flag(stats.leader))])?;
            family(&mut enc, &REMEDIATION_ACTIVE, vec![(vec![], stats.active as f64)])?;
            let pairs = |m: &std::collections::BTreeMap<(String, String), usize>| -> Vec<Sample<'static>> {
                m.iter().map(|((a, b), n)| (vec![owned(a.clone()), owned(b.clone())], *n as f64)).collect()
            };
            family(&mut enc, &REMEDIATION_RUNS, pairs(&stats.runs))?;
            family(&mut enc, &REMEDIATION_STEPS, pairs(&stats.steps))?;
            family(&mut enc, &REMEDIATION_TIME_IN_PHASE, stats.time_in_phase.iter().map(|((a, b), secs)| (vec![owned(a.clone()), owned(b.clone())], *secs)).collect())?;
            family(&mut enc, &REMEDIATION_ACTIVE_STEPS, pairs(&stats.active_steps))?;
            family(&mut enc, &REMEDIATION_APPROVAL_WAIT, stats.approval_wait.iter().map(|(p, secs)| (vec![owned(p.clone())], *secs)).collect())?;
            family(&mut enc, &REMEDIATION_APPROVAL_WINDOW, vec![(vec![], hub.config.remediation.approval_ttl.0.as_secs_f64())])?;
            family(&mut enc, &REMEDIATION_LAST_FINISHED, stats.last_finished.iter().map(|((a, b), t)| (vec![owned(a.clone()), owned(b.clone())], ts(*t))).collect())?;
            family(&mut enc, &REMEDIATION_KILL_SWITCH, vec![(vec![], flag(stats.kill_switch))])?;
        }
        Ok(())
    }
}

impl prometheus_client::collector::Collector for FindingsFamilies {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let f = &self.snap.findings;
        let config = &f.config;

        // Nodes and pinned volumes.
        let reason = |a: &Availability| match a {
            Availability::Missing => "missing",
            _ => "not_ready",
        };
        family(&mut enc, &NODE_UNAVAILABLE, f.nodes.iter().map(|n| (vec![s(&n.node), s(reason(&n.availability))], 1.0)).collect())?;
        family(&mut enc, &NODE_UNAVAILABLE_SINCE, f.nodes.iter().filter_map(|n| Some((vec![s(&n.node)], ts(n.since?)))).collect())?;
        family(&mut enc, &NODE_LOST, f.nodes.iter().map(|n| (vec![s(&n.node), s(reason(&n.availability))], flag(n.lost))).collect())?;
        let pinned_counts = f.nodes.iter().map(|n| {
            let count = f.lost_volumes.iter().filter(|v| v.node == n.node).count();
            (vec![s(&n.node)], count as f64)
        });
        family(&mut enc, &NODE_PINNED_VOLUMES, pinned_counts.collect())?;
        family(
            &mut enc,
            &VOLUME_ON_LOST_NODE,
            f.lost_volumes
                .iter()
                .map(|v| {
                    let labels = vec![
                        s(&v.persistent_volume),
                        s(&v.node),
                        s(v.claim_namespace.as_deref().unwrap_or("")),
                        s(v.claim_name.as_deref().unwrap_or("")),
                        s(v.storage_class.as_deref().unwrap_or("")),
                    ];
                    (labels, 1.0)
                })
                .collect(),
        )?;
        family(&mut enc, &POD_BLOCKED, f.blocked_pods.iter().map(|p| (vec![s(&p.namespace), s(&p.pod), s(&p.claim), s(&p.node)], 1.0)).collect())?;

        // CloudNativePG.
        family(&mut enc, &CNPG_ARCHIVING_OK, f.cnpg.iter().filter_map(|c| Some((id(&c.namespace, &c.cluster), flag(c.archiving_ok?)))).collect())?;
        family(&mut enc, &CNPG_ARCHIVING_SINCE, f.cnpg.iter().filter_map(|c| Some((id(&c.namespace, &c.cluster), ts(c.archiving_since?)))).collect())?;
        let states = f
            .cnpg
            .iter()
            .flat_map(|c| crate::inspect::cnpg::BackupState::ALL.iter().map(move |st| (vec![s(&c.namespace), s(&c.cluster), s(st.as_str())], flag(*st == c.last_backup))));
        family(&mut enc, &CNPG_LAST_BACKUP_STATE, states.collect())?;
        let source = |c: &crate::inspect::cnpg::CnpgFinding| match c.window_source {
            Some(crate::inspect::cnpg::WindowSource::ObjectStore) => "objectstore",
            Some(crate::inspect::cnpg::WindowSource::ClusterStatus) => "cluster_status",
            None => "none",
        };
        family(&mut enc, &CNPG_LAST_BACKUP, f.cnpg.iter().filter_map(|c| Some((vec![s(&c.namespace), s(&c.cluster), s(source(c))], ts(c.last_successful_backup?)))).collect())?;
        family(
            &mut enc,
            &CNPG_FIRST_RECOVERABILITY,
            f.cnpg.iter().filter_map(|c| Some((vec![s(&c.namespace), s(&c.cluster), s(source(c))], ts(c.first_recoverability_point?)))).collect(),
        )?;
        family(&mut enc, &CNPG_BACKUP_STALE, f.cnpg.iter().map(|c| (id(&c.namespace, &c.cluster), flag(c.backup_stale))).collect())?;
        family(&mut enc, &CNPG_BACKUP_MAX_AGE, f.cnpg.iter().map(|c| (id(&c.namespace, &c.cluster), c.max_backup_age_seconds as f64)).collect())?;
        family(
            &mut enc,
            &CNPG_PRIMARY_ON_LOST_NODE,
            f.cnpg
                .iter()
                .filter_map(|c| {
                    let labels = vec![s(&c.namespace), s(&c.cluster), s(c.primary.as_deref()?), s(c.primary_node.as_deref().unwrap_or(""))];
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
            f.mariadb.iter().filter_map(|m| Some((vec![s(&m.namespace), s(&m.name), s(m.force_bootstrap_pod.as_deref()?)], 1.0))).collect(),
        )?;

        // VolSync.
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
                    let node = s(v.cache_pvc_lost_node.as_deref()?);
                    Some((vec![s(&v.namespace), s(&v.name), s(v.role.as_str()), s(&v.cache_pvc), node], 1.0))
                })
                .collect(),
        )?;
        let destinations = f.volsync.iter().filter(|v| v.role == crate::inspect::volsync::Role::Destination);
        family(&mut enc, &VOLSYNC_ORPHANED, destinations.map(|v| (id(&v.namespace, &v.name), flag(v.orphaned))).collect())?;

        // Garage.
        let g = &f.garage;
        family(&mut enc, &GARAGE_PODS, vec![(vec![s(&config.garage.namespace)], g.pods.len() as f64)])?;
        family(&mut enc, &GARAGE_SIDECAR_PRESENT, g.pods.iter().map(|p| (id(&p.namespace, &p.pod), flag(p.sidecar_present))).collect())?;
        family(&mut enc, &GARAGE_SIDECAR_RUNNING, g.pods.iter().map(|p| (id(&p.namespace, &p.pod), flag(p.sidecar_running))).collect())?;
        family(&mut enc, &GARAGE_SIDECAR_RESTARTS, g.pods.iter().map(|p| (id(&p.namespace, &p.pod), p.sidecar_restarts as f64)).collect())?;
        family(&mut enc, &GARAGE_SNAPSHOT, g.newest_snapshot.map(|t| (vec![], ts(t))).into_iter().collect())?;
        if config.garage.backup_dir.is_some() {
            let ok = g.snapshot_error.is_none() && g.newest_snapshot.is_some();
            family(&mut enc, &GARAGE_SNAPSHOT_PROBE_OK, vec![(vec![], flag(ok))])?;
        }
        family(&mut enc, &GARAGE_ADMIN_HEALTHY, g.admin_healthy.map(|h| (vec![], flag(h))).into_iter().collect())?;

        // Flux.
        family(&mut enc, &FLUX_SUSPENDED, f.flux.iter().map(|x| (fid(x), flag(x.suspended))).collect())?;
        family(&mut enc, &FLUX_READY, f.flux.iter().map(|x| (fid(x), flag(x.ready == Some(true)))).collect())?;

        // Backup CronJobs.
        family(&mut enc, &CRONJOB_LAST_SUCCESS, f.backup_cronjobs.iter().filter_map(|c| Some((cid(c), ts(c.last_success?)))).collect())?;
        family(&mut enc, &CRONJOB_INTERVAL, f.backup_cronjobs.iter().filter_map(|c| Some((cid(c), c.interval_seconds? as f64))).collect())?;
        family(&mut enc, &CRONJOB_STALE, f.backup_cronjobs.iter().map(|c| (cid(c), flag(c.stale))).collect())?;

        // Protection coverage.
        let mut by_source: std::collections::BTreeMap<(&str, &str, bool), usize> = std::collections::BTreeMap::new();
        for p in &f.protection {
            *by_source.entry((p.namespace.as_str(), p.source.as_str(), p.pinned_node.is_some())).or_default() += 1;
        }
        family(
            &mut enc,
            &PVC_PROTECTION,
            by_source.into_iter().map(|((ns, source, local), n)| (vec![s(ns), s(source), s(if local { "true" } else { "false" })], n as f64)).collect(),
        )?;
        family(
            &mut enc,
            &PVC_SOURCE_STALE,
            f.protection.iter().filter(|p| p.fresh == Some(false)).map(|p| (vec![s(&p.namespace), s(&p.pvc), s(p.source.as_str())], 1.0)).collect(),
        )?;
        family(
            &mut enc,
            &PVC_UNPROTECTED,
            f.protection.iter().filter(|p| p.unprotected()).map(|p| (vec![s(&p.namespace), s(&p.pvc), s(p.pinned_node.as_deref().unwrap_or(""))], 1.0)).collect(),
        )?;
        family(&mut enc, &REMEDIATION_FLUX_KEPT_SUSPENDED, f.flux.iter().filter(|x| x.kept_suspended.is_some()).map(|x| (fid(x), 1.0)).collect())?;
        family(&mut enc, &CONFIG_PROBLEM, f.config_problems.iter().map(|c| (vec![s(&c.kind), s(&c.namespace), s(&c.name), s(&c.problem)], 1.0)).collect())?;
        Ok(())
    }
}
