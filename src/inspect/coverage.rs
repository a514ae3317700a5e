//! Protection coverage: for every PVC, what would bring its data back if its
//! node died, and whether that source looks fresh right now.

use serde::Serialize;

use super::cnpg::CnpgFinding;
use super::cronjobs::CronJobFinding;
use super::garage::GarageFinding;
use super::mariadb::{self, MariaDbFinding};
use super::volsync::{Role, VolsyncFinding};
use super::Context;
use crate::cluster::{label, name, namespace};

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// CNPG: the other instances plus the WAL archive.
    Cnpg,
    /// MariaDB Galera: the other members (plus Backup CRs).
    Galera,
    /// A VolSync ReplicationSource backs this claim up.
    Volsync,
    /// The Garage meta PVC, mirrored by the backup-sync sidecar.
    GarageMetaBackup,
    /// An app backup CronJob in the namespace (e.g. Kanidm to S3).
    BackupCronJob,
    /// VolSync mover cache: scratch space, needs no protection.
    Scratch,
    None,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cnpg => "cnpg",
            Source::Galera => "galera",
            Source::Volsync => "volsync",
            Source::GarageMetaBackup => "garage_meta_backup",
            Source::BackupCronJob => "backup_cronjob",
            Source::Scratch => "scratch",
            Source::None => "none",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PvcProtection {
    pub namespace: String,
    pub pvc: String,
    /// The node its volume is pinned to, when it is node-local.
    pub pinned_node: Option<String>,
    pub source: Source,
    /// The object that provides the source (cluster, RS, CronJob...).
    pub provider: Option<String>,
    /// Whether the source looks able to restore now; None for scratch/none.
    pub fresh: Option<bool>,
}

impl PvcProtection {
    /// Node-local data with nothing to restore it from.
    pub fn unprotected(&self) -> bool {
        self.pinned_node.is_some() && self.source == Source::None
    }
}

pub struct Sources<'a> {
    pub cnpg: &'a [CnpgFinding],
    pub mariadb: &'a [MariaDbFinding],
    pub volsync: &'a [VolsyncFinding],
    pub cronjobs: &'a [CronJobFinding],
    pub garage: &'a GarageFinding,
}

/// One entry per claim, sorted by namespace and claim name (see
/// `Findings::protection_of`).
pub fn inspect(ctx: &Context, sources: &Sources) -> Vec<PvcProtection> {
    let mut protection: Vec<PvcProtection> = ctx
        .state
        .persistent_volume_claims
        .iter()
        .map(|pvc| {
            let ns = namespace(&pvc.metadata);
            let pvc_name = name(&pvc.metadata);
            let (source, provider, fresh) = protection_of(ctx, sources, ns, pvc_name, label(&pvc.metadata, "cnpg.io/cluster"));
            PvcProtection { namespace: ns.to_string(), pvc: pvc_name.to_string(), pinned_node: ctx.pvc_node(ns, pvc_name).map(str::to_string), source, provider, fresh }
        })
        .collect();
    protection.sort_by(|a, b| (&a.namespace, &a.pvc).cmp(&(&b.namespace, &b.pvc)));
    protection
}

fn protection_of(ctx: &Context, sources: &Sources, ns: &str, pvc: &str, cnpg_cluster: Option<&str>) -> (Source, Option<String>, Option<bool>) {
    if let Some(cluster) = cnpg_cluster {
        let finding = sources.cnpg.iter().find(|c| c.namespace == ns && c.cluster == cluster);
        let fresh = finding.map(|c| c.archiving_ok == Some(true) && !c.backup_stale && c.instances > 1);
        return (Source::Cnpg, Some(cluster.to_string()), fresh);
    }
    if let Some((mdb, _)) = mariadb::instance_of_pvc(ctx, ns, pvc) {
        let finding = sources.mariadb.iter().find(|m| m.namespace == ns && m.name == mdb);
        let fresh = finding.map(|m| m.galera_ready == Some(true) && m.replicas > 1);
        return (Source::Galera, Some(mdb), fresh);
    }
    if (pvc.starts_with("volsync-src-") || pvc.starts_with("volsync-dst-")) && pvc.ends_with("-cache") {
        return (Source::Scratch, None, None);
    }
    if let Some(rs) = sources.volsync.iter().find(|v| v.role == Role::Source && v.namespace == ns && v.pvc.as_deref() == Some(pvc)) {
        return (Source::Volsync, Some(rs.name.clone()), Some(!rs.stale && !rs.mover_failed));
    }
    let garage_pod = sources.garage.pods.iter().find(|g| g.namespace == ns && ctx.state.pods_using_claim(ns, pvc).any(|p| name(&p.metadata) == g.pod));
    if let Some(pod) = garage_pod {
        return (Source::GarageMetaBackup, Some(pod.pod.clone()), Some(pod.sidecar_present && pod.sidecar_running));
    }
    if let Some(cronjob) = sources.cronjobs.iter().find(|c| c.namespace == ns && pvc.contains(app_of_cronjob(&c.cronjob))) {
        return (Source::BackupCronJob, Some(cronjob.cronjob.clone()), Some(!cronjob.stale));
    }
    (Source::None, None, None)
}

/// `kanidm-backup-sync` → `kanidm`: the app a backup CronJob is named after.
fn app_of_cronjob(cronjob: &str) -> &str {
    let app = cronjob.split("-backup").next().unwrap_or(cronjob);
    if app.is_empty() {
        cronjob
    } else {
        app
    }
}
