//! A node-loss triage checklist as one function: lost nodes, the volumes
//! pinned to them, every affected workload in its recovery
//! category with its recovery source and whether that source looks fresh,
//! and every recovery point that is not what it seems.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cluster::{label, name, namespace, ClusterState};
use crate::inspect::coverage::Source;
use crate::inspect::nodes::{NodeFinding, PinnedVolume, TerminatingPod};
use crate::inspect::Findings;

/// What lifeboat advises when no replica survives (the cnpg-instance-lost plan says the same).
pub const NO_REPLICA_ACTION: &str =
    "no replica survives: recover the Cluster from its object store (bootstrap.recovery, a new serverName); the plan renders the manifest (cnpg-instance-lost)";

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Garage,
    CnpgInstance,
    MariadbInstance,
    VolsyncApp,
    S3BackupApp,
    WaitingOnDatabase,
    Stale,
    Unprotected,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Garage => "garage",
            Category::CnpgInstance => "cnpg_instance",
            Category::MariadbInstance => "mariadb_instance",
            Category::VolsyncApp => "volsync_app",
            Category::S3BackupApp => "s3_backup_app",
            Category::WaitingOnDatabase => "waiting_on_database",
            Category::Stale => "stale",
            Category::Unprotected => "unprotected",
        }
    }

    /// What to do for this category.
    pub fn action(self) -> &'static str {
        match self {
            Category::Garage => "restore the meta PVC from the backup-sync mirror (garage-meta-restore) before anything that needs S3",
            Category::CnpgInstance => {
                "let CNPG fail over if it is the primary (promote only if it is stuck), then delete the PVCs and the pod so CNPG re-creates the instance (cnpg-instance-lost)"
            }
            Category::MariadbInstance => "delete the storage-/galera- PVCs and the pod so the operator re-provisions (mariadb-instance-lost)",
            Category::VolsyncApp => "restore from the VolSync snapshot into a re-created PVC (volsync-restore)",
            Category::S3BackupApp => "restore from the app's S3 backup with its restore Job (s3-restore)",
            Category::WaitingOnDatabase => "leave alone: heals once its database is back",
            Category::Stale => "delete the orphaned resources (stale-cleanup)",
            Category::Unprotected => "no recovery source: the data is gone unless the node comes back",
        }
    }
}

const SINGLE_MARIADB: &str = "a MariaDB without Galera keeps its only copy on this PVC: never delete it";
const SINGLE_MARIADB_ACTION: &str = "do NOT delete its PVCs (no other copy): bring the node back, or restore from its S3 backup (a Restore of its Backup, k8s.mariadb.com)";

#[derive(Clone, Debug, Serialize)]
pub struct AffectedWorkload {
    pub category: Category,
    pub namespace: String,
    /// e.g. `Cluster postgres (instance postgres-1)`, `Deployment forgejo`.
    pub workload: String,
    pub pvcs: Vec<String>,
    pub node: Option<String>,
    pub recovery_source: String,
    pub source_fresh: Option<bool>,
    pub detail: Option<String>,
    pub action: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct TriageReport {
    pub evaluated_at: DateTime<Utc>,
    pub unavailable_nodes: Vec<NodeFinding>,
    pub pinned_volumes: Vec<PinnedVolume>,
    pub workloads: Vec<AffectedWorkload>,
    /// Pods on network storage (volumes not pinned to a node) stuck
    /// Terminating on a lost node: force-delete them, or taint the node
    /// out-of-service, so their claims are released.
    pub terminating_on_lost_nodes: Vec<TerminatingPod>,
    /// Recovery points that are missing, stale or failing, cluster-wide.
    pub warnings: Vec<String>,
    /// Dynamic provisioners whose pod was on a lost node: claims re-created
    /// in their StorageClasses stay Pending until one runs elsewhere.
    pub stranded_provisioners: Vec<crate::inspect::provisioners::StrandedProvisioner>,
}

impl TriageReport {
    pub fn anything_wrong(&self) -> bool {
        !self.unavailable_nodes.is_empty()
            || !self.workloads.is_empty()
            || !self.terminating_on_lost_nodes.is_empty()
            || !self.warnings.is_empty()
            || !self.stranded_provisioners.is_empty()
    }
}

pub fn triage(state: &ClusterState, findings: &Findings, only_node: Option<&str>) -> TriageReport {
    let unavailable_nodes: Vec<NodeFinding> = findings.nodes.iter().filter(|n| only_node.is_none_or(|o| o == n.node)).cloned().collect();
    let pinned_volumes: Vec<PinnedVolume> = findings.lost_volumes.iter().filter(|v| only_node.is_none_or(|o| o == v.node)).cloned().collect();

    let mut grouped: BTreeMap<(Category, String, String), AffectedWorkload> = BTreeMap::new();
    for volume in &pinned_volumes {
        let (Some(ns), Some(pvc)) = (&volume.claim_namespace, &volume.claim_name) else {
            let entry = AffectedWorkload {
                category: Category::Stale,
                namespace: String::new(),
                workload: format!("PersistentVolume {} (no claim)", volume.persistent_volume),
                pvcs: vec![],
                node: Some(volume.node.clone()),
                recovery_source: "none needed".into(),
                source_fresh: None,
                detail: None,
                action: Category::Stale.action(),
            };
            grouped.insert((Category::Stale, String::new(), volume.persistent_volume.clone()), entry);
            continue;
        };
        let affected = classify(state, findings, ns, pvc, &volume.node);
        let key = (affected.category, affected.namespace.clone(), affected.workload.clone());
        grouped.entry(key).and_modify(|w| w.pvcs.push(pvc.clone())).or_insert(affected);
    }
    let database_hit = grouped.keys().any(|(c, _, _)| matches!(c, Category::CnpgInstance | Category::MariadbInstance));
    if database_hit || (only_node.is_none() && databases_degraded(findings)) {
        for waiting in waiting_on_database(state, findings) {
            grouped.entry((waiting.category, waiting.namespace.clone(), waiting.workload.clone())).or_insert(waiting);
        }
    }
    let mut workloads: Vec<AffectedWorkload> = grouped.into_values().collect();
    for w in &mut workloads {
        w.pvcs.sort();
        w.pvcs.dedup();
    }
    let lost: std::collections::BTreeSet<String> = findings.lost_nodes().filter(|n| only_node.is_none_or(|o| o == n.node)).map(|n| n.node.clone()).collect();
    let terminating_on_lost_nodes = crate::inspect::nodes::terminating_on_network_storage(state, &crate::inspect::nodes::pinned_nodes(state), &lost);
    let stranded_provisioners = crate::inspect::provisioners::stranded(state, &lost);
    TriageReport { evaluated_at: state.now, unavailable_nodes, pinned_volumes, workloads, terminating_on_lost_nodes, warnings: warnings(findings), stranded_provisioners }
}

fn classify(state: &ClusterState, findings: &Findings, ns: &str, pvc: &str, node: &str) -> AffectedWorkload {
    let protection = findings.protection_of(ns, pvc);
    let source = protection.map_or(Source::None, |p| p.source);
    let fresh = protection.and_then(|p| p.fresh);
    let provider = protection.and_then(|p| p.provider.clone()).unwrap_or_default();
    let owner = owning_workload(state, ns, pvc);
    let make = |category: Category, workload: String, recovery_source: String, detail: Option<String>| AffectedWorkload {
        category,
        namespace: ns.to_string(),
        workload,
        pvcs: vec![pvc.to_string()],
        node: Some(node.to_string()),
        recovery_source,
        source_fresh: fresh,
        detail,
        action: category.action(),
    };
    match source {
        Source::Cnpg => {
            let cluster = findings.cnpg.iter().find(|c| c.namespace == ns && c.cluster == provider);
            let is_primary = cluster.and_then(|c| c.primary.as_deref()) == Some(pvc);
            let archiving = match cluster.and_then(|c| c.archiving_ok) {
                Some(true) => "WAL archive ok",
                Some(false) => "WAL archive FAILING",
                None => "no WAL archive",
            };
            let ready = cluster.map_or(String::new(), |c| format!("{}/{} instances ready", c.ready_instances, c.instances));
            let object = state.cnpg_clusters.iter().find(|c| namespace(&c.metadata) == ns && name(&c.metadata) == provider);
            // The same survivors the cnpg-instance-lost plan counts, so the two never disagree.
            if object.is_some_and(|c| crate::inspect::cnpg_instances::surviving_replicas(state, findings, c).is_empty()) {
                let mut w = make(
                    Category::CnpgInstance,
                    format!("Cluster {provider} (instance {pvc})"),
                    format!("object store only: no replica survives ({ready}) + {archiving}"),
                    Some("do not delete its PVCs: recover the Cluster from its object store".to_string()),
                );
                w.action = NO_REPLICA_ACTION;
                return w;
            }
            make(
                Category::CnpgInstance,
                format!("Cluster {provider} (instance {pvc})"),
                format!("replicas ({ready}) + {archiving}"),
                is_primary.then(|| "this instance is the current primary: CNPG fails over by itself; cnpg-instance-lost promotes only if it is stuck".to_string()),
            )
        }
        Source::Galera => {
            let pod = pvc.strip_prefix("storage-").or_else(|| pvc.strip_prefix("galera-")).unwrap_or(pvc);
            let mdb = findings.mariadb.iter().find(|m| m.namespace == ns && m.name == provider);
            let quorum = match mdb.and_then(|m| m.galera_ready) {
                Some(true) => "Galera ready on the survivors",
                Some(false) => "Galera NOT ready: quorum may be lost (force bootstrap)",
                None => "Galera state unknown",
            };
            let workload = format!("MariaDB {provider} (instance {pod})");
            if mdb.is_some_and(|m| !m.galera) {
                // No Galera: no other member holds this data (matches mariadb-instance-lost, which deletes nothing here).
                let mut w = make(Category::MariadbInstance, workload, "none in the cluster (single instance, no Galera): its S3 Backup".into(), Some(SINGLE_MARIADB.into()));
                w.action = SINGLE_MARIADB_ACTION;
                return w;
            }
            make(Category::MariadbInstance, workload, format!("Galera peers: {quorum}"), None)
        }
        Source::Volsync => {
            let rs = findings.volsync.iter().find(|v| v.namespace == ns && v.name == provider);
            let last = rs.and_then(|r| r.last_sync).map_or("never".to_string(), |t| t.to_rfc3339());
            let detail = rs.filter(|r| r.paused).map(|_| "source is paused: its last sync time cannot be trusted (kopia fork)".to_string());
            make(Category::VolsyncApp, owner.unwrap_or_else(|| format!("PVC {pvc}")), format!("VolSync ReplicationSource {provider}, last sync {last}"), detail)
        }
        Source::GarageMetaBackup => make(Category::Garage, owner.unwrap_or_else(|| "Garage".into()), "backup-sync sidecar mirror (snapshots/<ts>/data.mdb)".into(), None),
        Source::BackupCronJob => {
            let cron = findings.backup_cronjobs.iter().find(|c| c.namespace == ns && c.cronjob == provider);
            let last = cron.and_then(|c| c.last_success).map_or("never".to_string(), |t| t.to_rfc3339());
            make(Category::S3BackupApp, owner.unwrap_or_else(|| format!("PVC {pvc}")), format!("backup CronJob {provider}, last success {last}"), None)
        }
        Source::Scratch => {
            let rd = pvc.strip_prefix("volsync-dst-").and_then(|r| r.strip_suffix("-cache"));
            let orphaned = rd.is_some_and(|rd| findings.volsync.iter().any(|v| v.namespace == ns && v.name == rd && v.orphaned));
            let rs = pvc.strip_prefix("volsync-src-").and_then(|r| r.strip_suffix("-cache"));
            match (orphaned, rs) {
                (true, _) => make(Category::Stale, format!("ReplicationDestination {}", rd.unwrap_or(pvc)), "none needed".into(), Some("its app is gone".into())),
                (false, Some(rs_name)) => {
                    let app_pvc = findings.volsync.iter().find(|v| v.namespace == ns && v.name == rs_name).and_then(|v| v.pvc.clone());
                    let workload = app_pvc.and_then(|p| owning_workload(state, ns, &p)).unwrap_or_else(|| format!("ReplicationSource {rs_name}"));
                    let mut w = make(Category::VolsyncApp, workload, format!("VolSync ReplicationSource {rs_name} (mover cache on the lost node)"), None);
                    w.source_fresh = None;
                    w
                }
                (false, None) => make(Category::Stale, format!("PVC {pvc}"), "scratch".into(), None),
            }
        }
        Source::None => {
            if owner.is_none() && state.pods_using_claim(ns, pvc).next().is_none() {
                make(Category::Stale, format!("PVC {pvc}"), "none".into(), Some("no pod uses this claim".into()))
            } else {
                make(Category::Unprotected, owner.unwrap_or_else(|| format!("PVC {pvc}")), "none".into(), None)
            }
        }
    }
}

/// `Deployment forgejo` / `StatefulSet kanidm-default` for the pods that
/// mount the claim; long-running controllers win over Jobs (a backup Job
/// mounting the claim is not the app).
fn owning_workload(state: &ClusterState, ns: &str, pvc: &str) -> Option<String> {
    let owners = state.pods_using_claim(ns, pvc).filter_map(|p| state.workload_of(p));
    let w = owners.min_by_key(|w| (w.kind == "Job" || w.kind == "CronJob", w.name.clone()))?;
    Some(format!("{} {}", w.kind, w.name))
}

fn databases_degraded(findings: &Findings) -> bool {
    findings.cnpg.iter().any(|c| c.ready_instances < c.instances || c.primary_on_lost_node)
        || findings.mariadb.iter().any(|m| m.ready == Some(false) || m.galera_ready == Some(false))
}

/// Pods on healthy nodes, without lost volumes, stuck in an init container
/// while a database is degraded: a stateless app stuck on a
/// downstream database's init — watched, never touched.
fn waiting_on_database(state: &ClusterState, findings: &Findings) -> Vec<AffectedWorkload> {
    let mut out = Vec::new();
    for pod in &state.pods {
        let ns = namespace(&pod.metadata);
        if label(&pod.metadata, "cnpg.io/cluster").is_some() {
            continue;
        }
        let on_lost_node = pod.spec.node_name.as_deref().is_some_and(|n| findings.nodes.iter().any(|f| f.lost && f.node == n));
        let blocked = findings.blocked_pods.iter().any(|b| b.namespace == ns && b.pod == name(&pod.metadata));
        let stuck_in_init = pod.status.init_container_statuses.iter().any(|c| c.state.terminated.is_none());
        let phase_active = matches!(pod.status.phase.as_deref(), Some("Pending") | Some("Running"));
        if on_lost_node || blocked || !stuck_in_init || !phase_active {
            continue;
        }
        let workload = state.workload_of(pod).map_or_else(|| format!("Pod {}", name(&pod.metadata)), |w| format!("{} {}", w.kind, w.name));
        out.push(AffectedWorkload {
            category: Category::WaitingOnDatabase,
            namespace: ns.to_string(),
            workload,
            pvcs: vec![],
            node: pod.spec.node_name.clone(),
            recovery_source: "none needed (stateless)".into(),
            source_fresh: None,
            detail: Some(format!("pod {} is still initialising", name(&pod.metadata))),
            action: Category::WaitingOnDatabase.action(),
        });
    }
    out
}

fn warnings(f: &Findings) -> Vec<String> {
    let mut out = Vec::new();
    for c in &f.cnpg {
        let id = format!("CNPG {}/{}", c.namespace, c.cluster);
        if c.archiving_ok == Some(false) {
            let since = c.archiving_since.map_or(String::new(), |t| format!(" since {}", t.to_rfc3339()));
            let why = c.archiving_message.as_deref().map_or(String::new(), |m| format!(": {}", truncate(m, 160)));
            out.push(format!("{id}: WAL archiving failing{since}{why}"));
        }
        if c.last_backup == crate::inspect::cnpg::BackupState::Failed {
            out.push(format!("{id}: last backup failed"));
        }
        if c.backup_stale {
            let last = c.last_successful_backup.map_or("never".to_string(), |t| t.to_rfc3339());
            out.push(format!("{id}: no base backup within {}s (last successful: {last})", c.max_backup_age_seconds));
        }
    }
    for m in &f.mariadb {
        if let Some(pod) = &m.force_bootstrap_pod {
            out.push(format!("MariaDB {}/{}: forceClusterBootstrapInPod={pod} is still set; unset it", m.namespace, m.name));
        }
    }
    for v in &f.volsync {
        let id = format!("VolSync {} {}/{}", v.role.as_str(), v.namespace, v.name);
        if v.paused {
            out.push(format!("{id}: paused"));
        } else if v.stale {
            let last = v.last_sync.map_or("never".to_string(), |t| t.to_rfc3339());
            out.push(format!("{id}: stale (last sync {last})"));
        }
        if v.mover_failed {
            out.push(format!("{id}: mover failing{}", v.error.as_deref().map_or(String::new(), |e| format!(": {}", truncate(e, 160)))));
        }
        if v.stuck {
            out.push(format!("{id}: sync stuck in progress"));
        }
        if let Some(node) = &v.cache_pvc_lost_node {
            out.push(format!("{id}: cache PVC {} is on lost node {node}", v.cache_pvc));
        }
        if v.orphaned {
            out.push(format!("{id}: app is gone (stale destination)"));
        }
    }
    for c in &f.backup_cronjobs {
        if c.stale {
            let last = c.last_success.map_or("never".to_string(), |t| t.to_rfc3339());
            out.push(format!("backup CronJob {}/{}: no recent success (last {last})", c.namespace, c.cronjob));
        }
    }
    if f.garage.pods.is_empty() {
        out.push("Garage: no pods match garage.podSelector".into());
    }
    for p in &f.garage.pods {
        if !p.sidecar_present {
            out.push(format!("Garage {}/{}: metadata-backup sidecar absent", p.namespace, p.pod));
        } else if !p.sidecar_running {
            out.push(format!("Garage {}/{}: metadata-backup sidecar not running", p.namespace, p.pod));
        }
        if p.sidecar_restarts > 0 {
            let exit = p.sidecar_last_exit_code.map_or(String::new(), |c| format!(", last exit code {c}"));
            out.push(format!("Garage {}/{}: metadata-backup sidecar restarted {} times{exit}", p.namespace, p.pod, p.sidecar_restarts));
        }
    }
    for p in f.protection.iter().filter(|p| p.unprotected()) {
        out.push(format!("PVC {}/{}: node-local on {} with no recovery source", p.namespace, p.pvc, p.pinned_node.as_deref().unwrap_or("?")));
    }
    for x in f.flux.iter().filter(|x| x.suspended) {
        out.push(format!("Flux {} {}/{}: suspended", x.kind, x.namespace, x.name));
    }
    for c in &f.config_problems {
        out.push(format!("{} {}/{}: {}", c.kind, c.namespace, c.name, c.message));
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

/// Plain-text rendering for terminals.
pub fn render_text(report: &TriageReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "lifeboat triage at {}", report.evaluated_at.to_rfc3339());
    let _ = writeln!(out, "\nUNAVAILABLE NODES");
    if report.unavailable_nodes.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for n in &report.unavailable_nodes {
        let since = n.since.map_or("-".to_string(), |t| t.to_rfc3339());
        let state = if n.lost { "LOST" } else { "within grace" };
        let _ = writeln!(out, "  {:<24} {:<10} {:<14} since {}", n.node, format!("{:?}", n.availability).to_lowercase(), state, since);
    }
    let _ = writeln!(out, "\nPVs PINNED TO LOST NODES");
    if report.pinned_volumes.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for v in &report.pinned_volumes {
        let claim = format!("{}/{}", v.claim_namespace.as_deref().unwrap_or("-"), v.claim_name.as_deref().unwrap_or("-"));
        let _ = writeln!(out, "  {:<44} {:<42} {}", claim, v.persistent_volume, v.node);
    }
    let _ = writeln!(out, "\nAFFECTED WORKLOADS");
    if report.workloads.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for w in &report.workloads {
        let fresh = match w.source_fresh {
            Some(true) => "fresh",
            Some(false) => "NOT FRESH",
            None => "-",
        };
        let _ = writeln!(out, "  [{}] {}/{}", w.category.as_str(), w.namespace, w.workload);
        if !w.pvcs.is_empty() {
            let _ = writeln!(out, "      pvcs:     {}", w.pvcs.join(", "));
        }
        let _ = writeln!(out, "      recovery: {} ({fresh})", w.recovery_source);
        if let Some(d) = &w.detail {
            let _ = writeln!(out, "      note:     {d}");
        }
        let _ = writeln!(out, "      action:   {}", w.action);
    }
    if !report.terminating_on_lost_nodes.is_empty() {
        let _ = writeln!(out, "\nPODS STUCK TERMINATING ON LOST NODES (network storage)");
        for p in &report.terminating_on_lost_nodes {
            let _ = writeln!(out, "  {}/{} on {} (claims {})", p.namespace, p.pod, p.node, p.claims.join(", "));
        }
        let _ = writeln!(
            out,
            "      action:   force-delete them (node-loss does, once the node is confirmed gone), or taint the node node.kubernetes.io/out-of-service=nodeshutdown:NoExecute"
        );
    }
    render_stranded_provisioners(&mut out, &report.stranded_provisioners);
    let _ = writeln!(out, "\nRECOVERY POINT WARNINGS");
    if report.warnings.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for w in &report.warnings {
        let _ = writeln!(out, "  - {w}");
    }
    out
}

fn render_stranded_provisioners(out: &mut String, stranded: &[crate::inspect::provisioners::StrandedProvisioner]) {
    use std::fmt::Write;
    if stranded.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nVOLUME PROVISIONERS ON LOST NODES");
    for p in stranded {
        let _ = writeln!(out, "  {} pod {}/{} on {}", p.provisioner, p.namespace, p.pod, p.node);
        if p.blocks_provisioning() {
            let _ = writeln!(out, "      note:     no pod of it is Ready elsewhere: every PVC re-created in its StorageClasses stays Pending until it runs on another node");
            let _ = writeln!(out, "      action:   force-delete the pod so its controller re-creates it elsewhere, and wait until it is Ready (+{}s to take over its leader Lease) before re-creating PVCs (node-loss does)", p.takeover_seconds);
        } else {
            let _ = writeln!(out, "      note:     already Ready elsewhere ({}): new claims are provisioned", p.ready_elsewhere.join(", "));
        }
    }
}
