//! `wal-archive-reset`: ContinuousArchiving fails with barman-cloud's
//! "Expected empty archive" (typically after a forced promotion started a new
//! timeline). The fix: archive under a fresh `serverName`
//! (a new prefix; the old one is kept), restart the instances so the plugin
//! sidecar re-reads it (replicas first, the primary last), wait for
//! archiving, then take a base backup so the new WAL stream has something to
//! apply to. The Cluster's Flux object is suspended first (it would revert
//! the change) and stays suspended until the new name is committed to Git.

use crate::cluster::resources::{CnpgCluster, BARMAN_CLOUD_PLUGIN};
use crate::cluster::{flux_owner, name, namespace, ClusterState};
use crate::inspect::Findings;
use crate::plan::playbooks::PlanError;
use crate::plan::{Action, ObjectRef, Plan, Step, WaitCondition};

/// The archiver error that a new serverName fixes; any other failure
/// (credentials, endpoint, bucket) needs a human, not a new prefix.
pub const EMPTY_ARCHIVE_ERROR: &str = "Expected empty archive";
const RESTART_TIMEOUT: u64 = 600;
const ARCHIVING_TIMEOUT: u64 = 900;
const BACKUP_TIMEOUT: u64 = 3600;

pub fn archive_reset(state: &ClusterState, findings: &Findings, ns: &str, cluster_name: &str) -> Result<Plan, PlanError> {
    let cluster = super::find_named(&state.cnpg_clusters, "Cluster", ns, cluster_name)?;
    let cluster_ref = ObjectRef::cnpg_cluster(ns, cluster_name);
    let mut plan = Plan::new("wal-archive-reset", cluster_ref.to_string());
    let finding = findings.cnpg.iter().find(|c| c.namespace == ns && c.cluster == cluster_name);

    let message = finding.and_then(|f| f.archiving_message.clone()).unwrap_or_default();
    match finding.and_then(|f| f.archiving_ok) {
        Some(false) if message.contains(EMPTY_ARCHIVE_ERROR) => {}
        Some(false) => {
            plan.findings.push(format!(
                "ContinuousArchiving fails with {message:?}, not {EMPTY_ARCHIVE_ERROR:?}: a new serverName would not fix that (check the ObjectStore credentials, endpoint and bucket): nothing to do"
            ));
            return Ok(plan);
        }
        Some(true) => {
            plan.findings.push("ContinuousArchiving is True: nothing to do".into());
            return Ok(plan);
        }
        None => {
            plan.findings.push("the Cluster reports no ContinuousArchiving condition (no WAL archiving configured): nothing to do".into());
            return Ok(plan);
        }
    }
    let Some((store, current)) = cluster.plugin_object_store() else {
        plan.findings.push(format!(
            "the Cluster does not archive through the {BARMAN_CLOUD_PLUGIN} plugin; with in-tree barmanObjectStore set spec.backup.barmanObjectStore.serverName by hand: nothing to do"
        ));
        return Ok(plan);
    };
    let used = used_server_names(state, ns, &store);
    let next = next_server_name(&current, &used);
    let since = finding.and_then(|f| f.archiving_since).map_or("an unknown time".into(), |t| t.to_rfc3339());
    plan.findings.push(format!("WAL archiving has failed since {since}: {message}"));
    plan.findings.push(format!(
        "archive to ObjectStore {store} under serverName {next} instead of {current} (names already in the store: {}); the old prefix is kept",
        if used.is_empty() { "none".to_string() } else { used.join(", ") }
    ));

    let mut last = None::<String>;
    let mut chain = |plan: &mut Plan, id: String, title: String, action: Action| {
        plan.steps.push(Step { id: id.clone(), title, action, needs: last.iter().cloned().collect(), preconditions: vec![], recovery_source: None });
        last = Some(id);
    };
    let flux = flux_owner(&cluster.metadata);
    if let Some(owner) = &flux {
        let object = owner.object_ref();
        chain(
            &mut plan,
            "suspend-flux".into(),
            format!("Suspend {object} so it does not revert the new serverName (stays suspended)"),
            Action::SuspendFlux { object, keep_suspended: true },
        );
    }
    chain(
        &mut plan,
        "set-server-name".into(),
        format!("Set serverName {next} on the {BARMAN_CLOUD_PLUGIN} plugin of {cluster_ref}"),
        Action::SetCnpgPluginParameter { cluster: cluster_ref.clone(), plugin: BARMAN_CLOUD_PLUGIN.into(), parameter: "serverName".into(), value: next.clone() },
    );
    let (restart, not_ready) = restart_order(state, cluster);
    if !not_ready.is_empty() {
        plan.findings.push(format!("not restarted (not Ready, e.g. on a lost node; they read the new serverName when they start): {}", not_ready.join(", ")));
    }
    for pod in restart {
        chain(
            &mut plan,
            format!("restart-{pod}"),
            format!("Restart {pod} so its plugin sidecar reads serverName {next}"),
            Action::RecreatePod { pod: ObjectRef::pod(ns, &pod), timeout_seconds: RESTART_TIMEOUT },
        );
    }
    chain(
        &mut plan,
        "wait-archiving".into(),
        format!("Wait for ContinuousArchiving=True on {cluster_ref}"),
        Action::Wait {
            object: cluster_ref.clone(),
            until: WaitCondition::ConditionIs { condition: "ContinuousArchiving".into(), status: "True".into() },
            timeout_seconds: ARCHIVING_TIMEOUT,
        },
    );
    let backup_name = if next.starts_with(cluster_name) { format!("{next}-base") } else { format!("{cluster_name}-{next}-base") };
    let backup = ObjectRef::namespaced("postgresql.cnpg.io/v1", "Backup", ns, &backup_name);
    chain(
        &mut plan,
        "base-backup".into(),
        format!("Take a base backup for the new WAL stream ({backup})"),
        Action::Apply {
            object: backup.clone(),
            manifest: serde_json::json!({
                "apiVersion": "postgresql.cnpg.io/v1",
                "kind": "Backup",
                "metadata": {"name": backup.name, "namespace": ns},
                "spec": {"cluster": {"name": cluster_name}, "method": "plugin", "pluginConfiguration": {"name": BARMAN_CLOUD_PLUGIN}},
            }),
        },
    );
    chain(
        &mut plan,
        "wait-backup".into(),
        format!("Wait for {backup} to complete"),
        Action::Wait { object: backup, until: WaitCondition::CnpgBackupCompleted, timeout_seconds: BACKUP_TIMEOUT },
    );

    let commit = format!("commit `serverName: {next}` (spec.plugins[{BARMAN_CLOUD_PLUGIN}].parameters of {cluster_ref}) to Git");
    plan.follow_ups.push(match &flux {
        Some(owner) => {
            let q = crate::plan::shell::quote;
            format!("{commit}, then `flux resume {} {} -n {}`", q(&owner.kind.to_lowercase()), q(&owner.name), q(&owner.namespace))
        }
        None => format!("{commit} wherever this Cluster is declared, or the next apply reverts it"),
    });
    Ok(plan)
}

/// serverNames the ObjectStore already holds archives for: never reuse one.
pub(super) fn used_server_names(state: &ClusterState, ns: &str, store: &str) -> Vec<String> {
    state.object_stores.iter().filter(|o| namespace(&o.metadata) == ns && name(&o.metadata) == store).flat_map(|o| o.status.server_recovery_window.keys().cloned()).collect()
}

/// `postgres` → `postgres-r2` → `postgres-r3`, skipping names in `used`.
pub fn next_server_name(current: &str, used: &[String]) -> String {
    let (base, generation) = match current.rsplit_once("-r") {
        Some((base, n)) if !base.is_empty() && !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => (base, n.parse::<u32>().unwrap_or(1)),
        _ => (current, 1),
    };
    (generation + 1..).map(|g| format!("{base}-r{g}")).find(|candidate| !used.iter().any(|u| u == candidate)).expect("an unused generation exists")
}

/// Ready instance pods, replicas first (by name), the primary last; and the
/// instance pods that are not Ready (restarting those would only wait forever).
fn restart_order(state: &ClusterState, cluster: &CnpgCluster) -> (Vec<String>, Vec<String>) {
    let ns = namespace(&cluster.metadata);
    let cluster_name = name(&cluster.metadata);
    let primary = cluster.status.current_primary.clone().unwrap_or_default();
    let mut pods: Vec<String> = state
        .pods
        .iter()
        .filter(|p| namespace(&p.metadata) == ns && crate::cluster::label(&p.metadata, "cnpg.io/cluster") == Some(cluster_name))
        .filter(|p| crate::cluster::label(&p.metadata, "cnpg.io/instanceName").is_some() && p.metadata.deletion_timestamp.is_none())
        .map(|p| name(&p.metadata).to_string())
        .collect();
    pods.sort_by_key(|p| (*p == primary, p.clone()));
    pods.into_iter().partition(|p| super::cnpg::pod_ready(state, ns, p))
}

/// `wal-archive-reset`.
pub struct ArchiveReset;

impl super::Playbook for ArchiveReset {
    fn info(&self) -> super::PlaybookInfo {
        super::PlaybookInfo {
            name: "wal-archive-reset",
            arguments: "-n NAMESPACE --name CLUSTER",
            summary: "move a CNPG cluster's WAL archive to a new serverName after 'Expected empty archive'",
        }
    }

    fn plan(&self, state: &ClusterState, findings: &Findings, trigger: &super::Trigger) -> Result<Plan, super::PlanError> {
        archive_reset(state, findings, trigger.require_namespace(self.name())?, trigger.require_name(self.name(), "--name (the Cluster)")?)
    }
}

#[cfg(test)]
mod tests {
    use super::next_server_name;

    #[test]
    fn server_names_bump_their_generation_and_skip_used_ones() {
        assert_eq!(next_server_name("postgres", &[]), "postgres-r2");
        assert_eq!(next_server_name("postgres-r2", &[]), "postgres-r3");
        assert_eq!(next_server_name("postgres-r9", &["postgres-r10".into()]), "postgres-r11");
        assert_eq!(next_server_name("postgres", &["postgres".into(), "postgres-r2".into()]), "postgres-r3");
        assert_eq!(next_server_name("my-rdb", &[]), "my-rdb-r2", "-r followed by letters is part of the name");
        assert_eq!(next_server_name("x-r", &[]), "x-r-r2");
    }
}
