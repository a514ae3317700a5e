//! VolSync sources and destinations: freshness against the schedule, paused
//! objects (the kopia fork "completes" paused syncs without running — a paused
//! source is never fresh), failing movers, stuck syncs, cache PVCs on lost
//! nodes, destinations whose app is gone, and sources nothing restores.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::{ConfigProblem, Context};
use crate::cluster::resources::*;
use crate::cluster::{name, namespace};
use crate::schedule::{Dialect, Schedule};

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Source,
    Destination,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Destination => "destination",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct VolsyncFinding {
    pub namespace: String,
    pub name: String,
    pub role: Role,
    /// The app PVC: `sourcePVC` for a source, `destinationPVC` for a destination.
    pub pvc: Option<String>,
    pub last_sync: Option<DateTime<Utc>>,
    pub schedule: Option<String>,
    pub interval_seconds: Option<i64>,
    pub paused: bool,
    /// Sources only: no successful sync within the allowed age, never synced, or paused.
    pub stale: bool,
    pub mover_failed: bool,
    pub sync_in_progress_since: Option<DateTime<Utc>>,
    pub stuck: bool,
    pub cache_pvc: String,
    pub cache_pvc_lost_node: Option<String>,
    /// Destinations only: neither its source nor its app PVC exists any more.
    pub orphaned: bool,
    /// The mover's error (Synchronizing=False/Error message).
    pub error: Option<String>,
    /// The schedule does not parse as VolSync reads it.
    pub schedule_error: Option<String>,
}

pub fn inspect(ctx: &Context, problems: &mut Vec<ConfigProblem>) -> Vec<VolsyncFinding> {
    let mut out = Vec::new();
    for rs in &ctx.state.replication_sources {
        let ns = namespace(&rs.metadata);
        let rs_name = name(&rs.metadata);
        let mut finding = common(ctx, ns, rs_name, Role::Source, rs.spec.trigger.as_ref(), rs.spec.paused, &rs.status);
        finding.pvc = rs.spec.source_pvc.clone();
        finding.stale = source_stale(ctx, &finding, rs);
        if let Some(error) = &finding.schedule_error {
            problems.push(ConfigProblem::new("ReplicationSource", ns, rs_name, "invalid_schedule", error.clone()));
        }
        if destination_for(ctx, rs).is_none() && ctx.state.kind_listed(&ReplicationDestination::INFO) {
            problems.push(ConfigProblem::new(
                "ReplicationSource",
                ns,
                rs_name,
                "no_destination",
                "no ReplicationDestination restores this source (looked for <name>-dst, sourceIdentity.sourceName and destinationPVC)".into(),
            ));
        }
        out.push(finding);
    }
    for rd in &ctx.state.replication_destinations {
        let ns = namespace(&rd.metadata);
        let mut finding = common(ctx, ns, name(&rd.metadata), Role::Destination, rd.spec.trigger.as_ref(), rd.spec.paused, &rd.status);
        finding.pvc = rd.mover().and_then(|m| m.destination_pvc.clone());
        finding.orphaned = destination_orphaned(ctx, rd);
        out.push(finding);
    }
    out
}

fn common(
    ctx: &Context,
    ns: &str,
    object: &str,
    role: Role,
    trigger: Option<&VolsyncTrigger>,
    paused: Option<bool>,
    status: &VolsyncStatus,
) -> VolsyncFinding {
    let manual = trigger.and_then(|t| t.manual.as_deref()).is_some_and(|m| !m.is_empty());
    let schedule = trigger.and_then(|t| t.schedule.clone()).filter(|_| !manual);
    let (interval, schedule_error) = match schedule.as_deref().map(|s| Schedule::parse(s, Dialect::Standard)) {
        Some(Ok(s)) => (s.interval(ctx.state.now), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let in_progress = status.last_sync_start_time;
    let prefix = if role == Role::Source { "volsync-src" } else { "volsync-dst" };
    let cache_pvc = format!("{prefix}-{object}-cache");
    let cache_node = ctx.pvc_node(ns, &cache_pvc).filter(|n| ctx.is_lost(n)).map(str::to_string);
    let failing_condition = find_condition(&status.conditions, "Synchronizing").filter(|c| c.reason.as_deref() == Some("Error"));
    VolsyncFinding {
        namespace: ns.to_string(),
        name: object.to_string(),
        role,
        pvc: None,
        last_sync: status.last_sync_time,
        schedule,
        interval_seconds: interval.map(|i| i.num_seconds()),
        paused: paused.unwrap_or(false),
        stale: false,
        mover_failed: status.latest_mover_status.as_ref().and_then(|m| m.result.as_deref()) == Some("Failed")
            || failing_condition.is_some(),
        sync_in_progress_since: in_progress,
        stuck: in_progress.is_some_and(|t| ctx.state.now - t > ctx.config.volsync.stuck_after.chrono()),
        cache_pvc,
        cache_pvc_lost_node: cache_node,
        orphaned: false,
        error: failing_condition.and_then(|c| c.message.clone()),
        schedule_error,
    }
}

fn source_stale(ctx: &Context, finding: &VolsyncFinding, rs: &ReplicationSource) -> bool {
    if finding.paused {
        return true;
    }
    let Some(interval) = finding.interval_seconds.map(Duration::seconds) else {
        return false; // manual or continuous: no schedule to be late against
    };
    let allowed = interval * ctx.config.volsync.stale_intervals as i32 + ctx.config.volsync.stale_grace.chrono();
    // Never synced: late once a full allowance has passed since creation.
    let reference = finding.last_sync.or_else(|| crate::cluster::created_at(&rs.metadata));
    reference.is_none_or(|t| ctx.state.now - t > allowed)
}

/// The destination a restore of this source goes through.
pub fn destination_for<'a>(ctx: &'a Context, rs: &ReplicationSource) -> Option<&'a std::sync::Arc<ReplicationDestination>> {
    let ns = namespace(&rs.metadata);
    let rs_name = name(&rs.metadata);
    ctx.state.replication_destinations.iter().find(|rd| {
        if namespace(&rd.metadata) != ns {
            return false;
        }
        let identity = rd.mover().and_then(|m| m.source_identity.as_ref());
        name(&rd.metadata) == format!("{rs_name}-dst")
            || identity.and_then(|i| i.source_name.as_deref()) == Some(rs_name)
            || (rs.spec.source_pvc.is_some() && rd.mover().and_then(|m| m.destination_pvc.as_ref()) == rs.spec.source_pvc.as_ref())
    })
}

fn destination_orphaned(ctx: &Context, rd: &ReplicationDestination) -> bool {
    let ns = namespace(&rd.metadata);
    let rd_name = name(&rd.metadata);
    let app = rd_name.strip_suffix("-dst").unwrap_or(rd_name);
    let identity = rd.mover().and_then(|m| m.source_identity.as_ref());
    let source_name = identity.and_then(|i| i.source_name.as_deref()).unwrap_or(app);
    let has_source = ctx
        .state
        .replication_sources
        .iter()
        .any(|rs| namespace(&rs.metadata) == ns && name(&rs.metadata) == source_name);
    let app_pvc = rd
        .mover()
        .and_then(|m| m.destination_pvc.as_deref())
        .or(identity.and_then(|i| i.source_pvc_name.as_deref()))
        .unwrap_or(app);
    !has_source && ctx.state.pvc(ns, app_pvc).is_none()
}
