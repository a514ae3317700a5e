//! Where CloudNativePG's own failover stands for a lost primary, read from
//! what the operator exposes, and which replica it would promote.
//!
//! Upstream (cloudnative-pg v1.30.0): `internal/controller/cluster_controller.go`
//! `handleSwitchover` and `internal/controller/replicas.go`
//! `reconcileTargetPrimaryForNonReplicaCluster` fail over by themselves once
//! the primary stops reporting and its pod is not Ready: after
//! `spec.failoverDelay`, `targetPrimary` becomes `pending`, then, once the
//! replicas' WAL receivers stopped (`wal_receiver_timeout` is 5s,
//! `pkg/postgres/configuration.go`), the most advanced replica; that
//! replica's instance manager promotes itself and sets `currentPrimary`
//! (`internal/management/controller/instance_controller.go` reconcilePrimary).

use chrono::{DateTime, Utc};

use crate::cluster::marks::CNPG_FENCED_INSTANCES_ANNOTATION as FENCED_INSTANCES;
use crate::cluster::resources::{find_condition, CnpgCluster, Pod};
use crate::cluster::{name, namespace, ClusterState};

/// The phase `ensureNoFailoverOnFullDisk` registers (cluster_controller.go).
const PHASE_NO_DISK_SPACE: &str = "Not enough disk space";
/// Beyond `spec.failoverDelay`: the node lifecycle controller marks the pod
/// not Ready (node-monitor-grace-period, 40-50s), the WAL receivers time
/// out (5s), the operator requeues every second. Five minutes later a
/// failover that has not happened is not coming.
pub const FAILOVER_GRACE_SECONDS: i64 = 300;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failover {
    /// `targetPrimary` already differs from `currentPrimary`: CNPG is failing
    /// over (or switching over); lifeboat waits and picks nobody.
    InProgress { current: String, target: String },
    /// CNPG will fail over by itself and has had no time to yet.
    ByOperator { why: String },
    /// CNPG refuses to fail over on purpose; lifeboat does not override it.
    Refused { why: String },
    /// CNPG would have failed over by now and has not (the operator is
    /// stuck); lifeboat promotes.
    Stuck { why: String },
}

/// The situation for `lost` (the lost instance that is current or target
/// primary), whose node has been unavailable since `lost_since`.
pub fn situation(state: &ClusterState, cluster: &CnpgCluster, lost: &str, lost_since: Option<DateTime<Utc>>) -> Failover {
    let current = cluster.status.current_primary.clone().unwrap_or_default();
    let target = cluster.status.target_primary.clone().unwrap_or_default();
    if !target.is_empty() && target != current {
        return Failover::InProgress { current, target };
    }
    if fenced(cluster, lost) {
        return Failover::Refused {
            why: format!("{lost} is fenced ({FENCED_INSTANCES}): CNPG never fails over a fenced primary (cluster_controller.go handleSwitchover); unfence it or promote by hand"),
        };
    }
    if cluster.spec.postgresql.as_ref().and_then(|p| p.synchronous.as_ref()).and_then(|s| s.failover_quorum) == Some(true) {
        return Failover::Refused {
            why: "spec.postgresql.synchronous.failoverQuorum is on: CNPG fails over only when its quorum check proves no synchronously committed data is lost (replicas.go evaluateQuorumCheck); lifeboat never promotes over that check".into(),
        };
    }
    let phase = cluster.status.phase.clone().unwrap_or_default();
    if phase == PHASE_NO_DISK_SPACE {
        return Failover::Refused { why: format!("phase {phase:?}: CNPG halts failover until the PVCs are enlarged (cluster_controller.go ensureNoFailoverOnFullDisk)") };
    }
    let ns = namespace(&cluster.metadata);
    if pod(state, ns, lost).is_some_and(pod_ready_condition) {
        return Failover::ByOperator {
            why: format!("{lost}'s pod is still Ready: CNPG defers the failover until Kubernetes marks it not Ready (cluster_controller.go, IsPodReadyAndNotReporting)"),
        };
    }
    let delay = cluster.spec.failover_delay.unwrap_or(0).max(0);
    let waited = lost_since.map(|t| (state.now - t).num_seconds());
    match waited {
        Some(s) if s > delay + FAILOVER_GRACE_SECONDS => Failover::Stuck {
            why: format!(
                "the node has been unavailable for {s}s (failoverDelay {delay}s + {FAILOVER_GRACE_SECONDS}s) and CNPG still names {lost} as current and target primary (phase {phase:?}): it would have failed over by now (replicas.go), so it is stuck, e.g. its most advanced replica reports no status to it"
            ),
        },
        _ => Failover::ByOperator {
            why: format!("CNPG fails over by itself once {lost}'s pod is not Ready, after failoverDelay {delay}s (replicas.go): lifeboat waits for it"),
        },
    }
}

fn fenced(cluster: &CnpgCluster, instance: &str) -> bool {
    let Some(value) = cluster.metadata.annotations.as_ref().and_then(|a| a.get(FENCED_INSTANCES)) else { return false };
    serde_json::from_str::<Vec<String>>(value).is_ok_and(|list| list.iter().any(|i| i == instance || i == "*"))
}

fn pod<'a>(state: &'a ClusterState, ns: &str, instance: &str) -> Option<&'a Pod> {
    state.pods.iter().map(|p| p.as_ref()).find(|p| namespace(&p.metadata) == ns && name(&p.metadata) == instance)
}

fn pod_ready_condition(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && find_condition(&pod.status.conditions, "Ready").is_some_and(|c| c.status == "True")
}

/// A replica as CNPG's candidate list would rank it, from the Cluster status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub instance: String,
    /// Listed under `status.instancesStatus.healthy`.
    pub healthy: bool,
    /// `status.instancesReportedState[instance].timeLineID` equals `status.timelineID`.
    pub on_timeline: bool,
}

impl Candidate {
    pub fn describe(&self) -> String {
        let health = if self.healthy { "healthy" } else { "not listed healthy" };
        let timeline = if self.on_timeline { "on the cluster's timeline" } else { "timeline unknown or behind" };
        format!("{} ({health}, {timeline})", self.instance)
    }
}

/// The Ready survivors in the order lifeboat would promote them. CNPG ranks
/// candidates (v1.30.0 `pkg/postgres/status.go` PostgresqlStatusList.Less):
/// instances that report status, primaries, then received LSN, replay LSN,
/// and the pod name. The LSNs are only in the instance managers' `/pg/status`,
/// not in the Cluster; what the Cluster exposes stands in for them:
/// `instancesStatus.healthy`, then `instancesReportedState` on the current
/// timeline, then the name.
pub fn rank(cluster: &CnpgCluster, survivors: &[String]) -> Vec<Candidate> {
    let healthy = cluster.status.instances_status.get("healthy");
    let timeline = cluster.status.timeline_id;
    let mut ranked: Vec<Candidate> = survivors
        .iter()
        .map(|s| Candidate {
            instance: s.clone(),
            healthy: healthy.is_some_and(|h| h.contains(s)),
            on_timeline: timeline.is_some() && cluster.status.instances_reported_state.get(s).and_then(|r| r.timeline_id) == timeline,
        })
        .collect();
    ranked.sort_by(|a, b| (!a.healthy, !a.on_timeline, &a.instance).cmp(&(!b.healthy, !b.on_timeline, &b.instance)));
    ranked
}
