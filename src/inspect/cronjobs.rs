//! App backup CronJobs (the easy-to-miss kind of backup, e.g.
//! `kanidm-backup-sync`): when did one last succeed, and is that too long ago.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::{ConfigProblem, Context};
use crate::cluster::resources::*;
use crate::cluster::{label, name, namespace};
use crate::schedule::{Dialect, Schedule};

#[derive(Clone, Debug, Serialize)]
pub struct CronJobFinding {
    pub namespace: String,
    pub cronjob: String,
    pub schedule: String,
    pub interval_seconds: Option<i64>,
    pub suspended: bool,
    pub last_success: Option<DateTime<Utc>>,
    pub last_schedule: Option<DateTime<Utc>>,
    pub stale: bool,
}

pub fn is_backup_cronjob(ctx: &Context, cronjob: &CronJob) -> bool {
    let config = &ctx.config.backup_cron_jobs;
    let by_name = !config.name_contains.is_empty() && name(&cronjob.metadata).to_ascii_lowercase().contains(&config.name_contains.to_ascii_lowercase());
    let by_labels = !config.match_labels.is_empty() && config.match_labels.iter().all(|(k, v)| label(&cronjob.metadata, k) == Some(v.as_str()));
    by_name || by_labels
}

pub fn inspect(ctx: &Context, problems: &mut Vec<ConfigProblem>) -> Vec<CronJobFinding> {
    let config = &ctx.config.backup_cron_jobs;
    ctx.state
        .cron_jobs
        .iter()
        .filter(|c| is_backup_cronjob(ctx, c))
        .map(|cronjob| {
            let ns = namespace(&cronjob.metadata);
            let cj_name = name(&cronjob.metadata);
            let interval = match Schedule::parse(&cronjob.spec.schedule, Dialect::Standard) {
                Ok(s) => s.interval(ctx.state.now),
                Err(e) => {
                    problems.push(ConfigProblem::new("CronJob", ns, cj_name, "invalid_schedule", e));
                    None
                }
            };
            let suspended = cronjob.spec.suspend.unwrap_or(false);
            let last_success = cronjob.status.last_successful_time;
            let stale = match interval {
                _ if suspended => true,
                Some(interval) => {
                    let allowed = interval * config.stale_intervals as i32 + config.stale_grace.chrono();
                    let reference = last_success.or_else(|| crate::cluster::created_at(&cronjob.metadata));
                    reference.is_none_or(|t| ctx.state.now - t > allowed)
                }
                None => last_success.is_none(),
            };
            CronJobFinding {
                namespace: ns.to_string(),
                cronjob: cj_name.to_string(),
                schedule: cronjob.spec.schedule.clone(),
                interval_seconds: interval.map(|i: Duration| i.num_seconds()),
                suspended,
                last_success,
                last_schedule: cronjob.status.last_schedule_time,
                stale,
            }
        })
        .collect()
}
