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

fn common(ctx: &Context, ns: &str, object: &str, role: Role, trigger: Option<&VolsyncTrigger>, paused: Option<bool>, status: &VolsyncStatus) -> VolsyncFinding {
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
        mover_failed: status.latest_mover_status.as_ref().and_then(|m| m.result.as_deref()) == Some("Failed") || failing_condition.is_some(),
        sync_in_progress_since: in_progress,
        stuck: in_progress.is_some_and(|t| ctx.state.now - t > ctx.config.volsync.stuck_after.chrono()),
        cache_pvc,
        cache_pvc_lost_node: cache_node,
        orphaned: false,
        error: failing_condition.and_then(|c| c.message.as_deref().map(String::from)),
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
    let has_source = ctx.state.replication_sources.iter().any(|rs| namespace(&rs.metadata) == ns && name(&rs.metadata) == source_name);
    let app_pvc = rd.mover().and_then(|m| m.destination_pvc.as_deref()).or(identity.and_then(|i| i.source_pvc_name.as_deref())).unwrap_or(app);
    !has_source && ctx.state.pvc(ns, app_pvc).is_none()
}

/// The kopia identity (`username@hostname`) snapshots are written under and
/// looked up by, as the perfectra1n/volsync fork derives it
/// (internal/controller/mover/kopia/builder.go, v0.17.11:
/// `generateUsername`, `generateHostname`, `createSourceMover`,
/// `createDestinationMover`). A restore through an identity that no source
/// writes finds "No eligible snapshots found" and restores nothing.
pub mod kopia_identity {
    /// Used by the fork when sanitising leaves nothing.
    const DEFAULT: &str = "volsync-default";
    const MAX_USERNAME: usize = 50;

    /// Letters, digits and `-` are kept; `_` kept (usernames) or turned
    /// into `-` (hostnames); `.` kept only in hostnames; the rest dropped,
    /// then leading/trailing separators trimmed.
    fn sanitize(input: &str, hostname: bool) -> String {
        let kept: String = input
            .chars()
            .filter_map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '-' => Some(c),
                '_' => Some(if hostname { '-' } else { '_' }),
                '.' if hostname => Some('.'),
                _ => None,
            })
            .collect();
        let trim: &[char] = if hostname { &['-', '.'] } else { &['-', '_'] };
        kept.trim_matches(trim).to_string()
    }

    fn explicit(value: Option<&str>) -> Option<&str> {
        value.filter(|v| !v.is_empty())
    }

    fn username(explicit_username: Option<&str>, object_name: &str) -> String {
        if let Some(u) = explicit(explicit_username) {
            return u.to_string();
        }
        match sanitize(object_name, false) {
            s if s.is_empty() => DEFAULT.into(),
            s => s.chars().take(MAX_USERNAME).collect(),
        }
    }

    fn hostname(explicit_hostname: Option<&str>, namespace: &str, object_name: &str) -> String {
        if let Some(h) = explicit(explicit_hostname) {
            return h.to_string();
        }
        [sanitize(namespace, true), sanitize(object_name, true)].into_iter().find(|s| !s.is_empty()).unwrap_or_else(|| DEFAULT.into())
    }

    /// A ReplicationSource writes its snapshots as `username` (else its
    /// name) `@` `hostname` (else its namespace).
    pub fn of_source(name: &str, namespace: &str, explicit_username: Option<&str>, explicit_hostname: Option<&str>) -> String {
        format!("{}@{}", username(explicit_username, name), hostname(explicit_hostname, namespace, name))
    }

    /// A ReplicationDestination reads snapshots as: explicit `username` and
    /// `hostname` first; else `sourceIdentity.sourceName` (and
    /// `sourceNamespace`, default its own); else its *own* name and
    /// namespace — so `app-dst` without `sourceIdentity` looks for
    /// `app-dst@<ns>`, which no source named `app` writes.
    pub fn of_destination(
        name: &str,
        namespace: &str,
        explicit_username: Option<&str>,
        explicit_hostname: Option<&str>,
        source_name: Option<&str>,
        source_namespace: Option<&str>,
    ) -> String {
        let source = explicit(source_name).map(|s| (s, explicit(source_namespace).unwrap_or(namespace)));
        let (user_from, host_ns, host_name) = match source {
            Some((s, ns)) => (s, ns, s),
            None => (name, namespace, name),
        };
        format!("{}@{}", username(explicit_username, user_from), hostname(explicit_hostname, host_ns, host_name))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn sources_write_as_name_at_namespace() {
            assert_eq!(of_source("forgejo", "utils", None, None), "forgejo@utils");
            assert_eq!(of_source("my_app.v2", "team_a", None, None), "my_appv2@team-a");
            assert_eq!(of_source("forgejo", "utils", Some("git"), Some("nas")), "git@nas");
            assert_eq!(of_source(&"x".repeat(60), "utils", None, None), format!("{}@utils", "x".repeat(50)));
        }

        #[test]
        fn destinations_read_as_explicit_then_source_identity_then_themselves() {
            assert_eq!(of_destination("forgejo-dst", "utils", None, None, Some("forgejo"), None), "forgejo@utils");
            assert_eq!(of_destination("forgejo-dst", "utils", None, None, Some("forgejo"), Some("old")), "forgejo@old");
            assert_eq!(of_destination("forgejo-dst", "utils", None, None, None, None), "forgejo-dst@utils");
            assert_eq!(of_destination("forgejo-dst", "utils", None, None, Some(""), None), "forgejo-dst@utils", "an empty sourceName is not used");
            assert_eq!(of_destination("forgejo-dst", "utils", Some("git"), Some("nas"), Some("forgejo"), None), "git@nas");
        }
    }
}
