//! CloudNativePG clusters: is WAL archiving working, when was the last good
//! base backup (from the barman-cloud ObjectStore when the plugin is used),
//! and is the primary on a lost node.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::{ConfigProblem, Context};
use crate::cluster::resources::*;
use crate::cluster::{name, namespace};
use crate::schedule::{Dialect, Schedule};

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BackupState {
    Succeeded,
    Failed,
    /// `LastBackupSucceeded=False` with reason `BackupStarted`: a backup is running.
    InProgress,
    Unknown,
}

impl BackupState {
    pub const ALL: [BackupState; 4] = [Self::Succeeded, Self::Failed, Self::InProgress, Self::Unknown];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::InProgress => "in_progress",
            Self::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WindowSource {
    /// barman-cloud plugin: `ObjectStore.status.serverRecoveryWindow[serverName]`.
    ObjectStore,
    /// In-tree barman: deprecated Cluster status fields.
    ClusterStatus,
}

#[derive(Clone, Debug, Serialize)]
pub struct CnpgFinding {
    pub namespace: String,
    pub cluster: String,
    /// None when the condition is not reported (no archiving configured).
    pub archiving_ok: Option<bool>,
    pub archiving_since: Option<DateTime<Utc>>,
    pub archiving_message: Option<String>,
    pub last_backup: BackupState,
    pub window_source: Option<WindowSource>,
    pub server_name: Option<String>,
    pub last_successful_backup: Option<DateTime<Utc>>,
    pub first_recoverability_point: Option<DateTime<Utc>>,
    /// No successful backup within the allowed age (from the ScheduledBackup
    /// interval, else `cnpg.maxBackupAge`).
    pub backup_stale: bool,
    pub max_backup_age_seconds: i64,
    pub primary: Option<String>,
    pub primary_node: Option<String>,
    pub primary_on_lost_node: bool,
    pub instances: i32,
    pub ready_instances: i32,
    pub dangling_pvcs: Vec<String>,
    pub phase: Option<String>,
}

pub fn inspect(ctx: &Context, problems: &mut Vec<ConfigProblem>) -> Vec<CnpgFinding> {
    let state = ctx.state;
    for backup in &state.scheduled_backups {
        check_schedule(backup, problems);
    }
    state
        .cnpg_clusters
        .iter()
        .map(|cluster| {
            let ns = namespace(&cluster.metadata);
            let cluster_name = name(&cluster.metadata);
            let conditions = &cluster.status.conditions;
            let archiving = find_condition(conditions, "ContinuousArchiving");
            let (window_source, server_name, first, last) = recovery_window(ctx, cluster, problems);
            let max_age = max_backup_age(ctx, ns, cluster_name);
            let backup_stale = last.is_none_or(|t| state.now - t > max_age);
            let primary = cluster.status.current_primary.clone();
            let primary_node = primary.as_deref().and_then(|p| ctx.instance_node(ns, p));
            CnpgFinding {
                namespace: ns.to_string(),
                cluster: cluster_name.to_string(),
                archiving_ok: archiving.map(|c| c.status == "True"),
                archiving_since: archiving.and_then(|c| c.last_transition_time),
                archiving_message: archiving.filter(|c| c.status != "True").and_then(|c| c.message.as_deref().map(String::from)),
                last_backup: backup_state(find_condition(conditions, "LastBackupSucceeded")),
                window_source,
                server_name,
                last_successful_backup: last,
                first_recoverability_point: first,
                backup_stale,
                max_backup_age_seconds: max_age.num_seconds(),
                primary_on_lost_node: primary_node.as_deref().is_some_and(|n| ctx.is_lost(n)),
                primary,
                primary_node,
                instances: cluster.spec.instances.or(cluster.status.instances).unwrap_or(0),
                ready_instances: cluster.status.ready_instances.unwrap_or(0),
                dangling_pvcs: cluster.status.dangling_pvc.clone(),
                phase: cluster.status.phase.clone(),
            }
        })
        .collect()
}

fn backup_state(condition: Option<&Condition>) -> BackupState {
    match condition {
        None => BackupState::Unknown,
        Some(c) if c.status == "True" => BackupState::Succeeded,
        Some(c) if c.reason.as_deref() == Some("BackupStarted") => BackupState::InProgress,
        Some(c) if c.status == "False" => BackupState::Failed,
        Some(_) => BackupState::Unknown,
    }
}

type Window = (Option<WindowSource>, Option<String>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn recovery_window(ctx: &Context, cluster: &CnpgCluster, problems: &mut Vec<ConfigProblem>) -> Window {
    let ns = namespace(&cluster.metadata);
    if let Some((store_name, server)) = cluster.plugin_object_store() {
        let store = ctx.state.object_stores.iter().find(|s| namespace(&s.metadata) == ns && name(&s.metadata) == store_name);
        let window = store.and_then(|s| s.status.server_recovery_window.get(&server));
        if store.is_none() && ctx.state.kind_listed(&ObjectStore::INFO) {
            problems.push(ConfigProblem::new(
                "Cluster",
                ns,
                name(&cluster.metadata),
                "object_store_missing",
                format!("WAL archiver plugin names ObjectStore {store_name:?}, which does not exist"),
            ));
        }
        return (Some(WindowSource::ObjectStore), Some(server), window.and_then(|w| w.first_recoverability_point), window.and_then(|w| w.last_successful_backup_time));
    }
    if cluster.spec.backup.as_ref().is_some_and(|b| b.barman_object_store.is_some()) {
        return (Some(WindowSource::ClusterStatus), None, cluster.status.first_recoverability_point, cluster.status.last_successful_backup);
    }
    (None, None, None, None)
}

/// Twice the longest ScheduledBackup interval for this cluster plus an hour,
/// or the configured default when nothing schedules backups.
fn max_backup_age(ctx: &Context, ns: &str, cluster: &str) -> Duration {
    ctx.state
        .scheduled_backups
        .iter()
        .filter(|b| namespace(&b.metadata) == ns && b.spec.cluster.name == cluster && b.spec.suspend != Some(true))
        .filter_map(|b| Schedule::parse(&b.spec.schedule, Dialect::SecondsFirst).ok()?.interval(ctx.state.now))
        .min()
        .map(|interval| interval * 2 + Duration::hours(1))
        .unwrap_or_else(|| ctx.config.cnpg.max_backup_age.chrono())
}

fn check_schedule(backup: &ScheduledBackup, problems: &mut Vec<ConfigProblem>) {
    let ns = namespace(&backup.metadata);
    let backup_name = name(&backup.metadata);
    match Schedule::parse(&backup.spec.schedule, Dialect::SecondsFirst) {
        Ok(schedule) if schedule.seconds_field_misread => problems.push(ConfigProblem::new(
            "ScheduledBackup",
            ns,
            backup_name,
            "cron_dialect",
            format!(
                "schedule {:?} has 5 fields, but CloudNativePG reads 6 with seconds first: it runs as `{} *` (sec min hour dom month); write `0 {}` to mean what a Kubernetes CronJob would",
                backup.spec.schedule, backup.spec.schedule, backup.spec.schedule
            ),
        )),
        Ok(_) => {}
        Err(e) => problems.push(ConfigProblem::new("ScheduledBackup", ns, backup_name, "invalid_schedule", e)),
    }
}
