//! Playbooks: (ClusterState, findings, trigger) → Plan. Pure and fast.

pub mod cnpg;
pub mod garage_meta;
pub mod kanidm;
pub mod mariadb;
pub mod node_loss;
pub mod s3_restore;
pub mod stale;
pub mod wal_reset;
pub mod volsync;

use serde::{Deserialize, Serialize};

use super::Plan;
use crate::cluster::ClusterState;
use crate::inspect::Findings;

/// What asked for a plan: CLI arguments or an alert's labels. The alert is a
/// hint; playbooks plan from the state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub node: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("unknown playbook {0:?} (known: {known})", known = PLAYBOOKS.join(", "))]
    UnknownPlaybook(String),
    #[error("{playbook} needs {what}")]
    MissingArgument { playbook: &'static str, what: &'static str },
    #[error("{0} not found in the cluster state")]
    NotFound(String),
}

/// The object named `ns/name` among `objects`, or NotFound naming its kind.
pub(crate) fn find_named<'a, T: kube::Resource>(objects: &'a [std::sync::Arc<T>], kind: &str, ns: &str, wanted: &str) -> Result<&'a T, PlanError> {
    objects
        .iter()
        .find(|o| crate::cluster::namespace(o.meta()) == ns && crate::cluster::name(o.meta()) == wanted)
        .map(|o| o.as_ref())
        .ok_or_else(|| PlanError::NotFound(format!("{kind} {ns}/{wanted}")))
}

pub const PLAYBOOKS: &[&str] = &[
    "cnpg-instance-lost",
    "mariadb-instance-lost",
    "stale-cleanup",
    "volsync-restore",
    "wal-archive-reset",
    node_loss::PLAYBOOK,
    s3_restore::PLAYBOOK,
    kanidm::PLAYBOOK,
    garage_meta::PLAYBOOK,
];

/// What `lifeboat playbooks` lists: each playbook's arguments and purpose.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct PlaybookInfo {
    pub name: &'static str,
    pub arguments: &'static str,
    pub summary: &'static str,
}

pub const CATALOGUE: &[PlaybookInfo] = &[
    PlaybookInfo { name: "cnpg-instance-lost", arguments: "-n NAMESPACE --name CLUSTER", summary: "re-create a CloudNativePG instance lost with its node (promoting first if it was the primary)" },
    PlaybookInfo { name: "mariadb-instance-lost", arguments: "-n NAMESPACE --name MARIADB", summary: "re-provision a lost MariaDB Galera member; force a bootstrap when quorum is lost" },
    PlaybookInfo { name: "stale-cleanup", arguments: "[-n NAMESPACE]", summary: "delete what a recovery leaves behind (orphaned ReplicationDestinations and the like)" },
    PlaybookInfo { name: "volsync-restore", arguments: "-n NAMESPACE --name PVC", summary: "re-create an app's PVC from its newest VolSync (Kopia) snapshot" },
    PlaybookInfo { name: "wal-archive-reset", arguments: "-n NAMESPACE --name CLUSTER", summary: "move a CNPG cluster's WAL archive to a new serverName after 'Expected empty archive'" },
    PlaybookInfo { name: node_loss::PLAYBOOK, arguments: "--node NODE", summary: "the whole recovery from one lost node, in phases, as one plan" },
    PlaybookInfo { name: s3_restore::PLAYBOOK, arguments: "-n NAMESPACE --name PVC|WORKLOAD", summary: "restore an app's volume from its S3 backup with the configured restore Job" },
    PlaybookInfo { name: kanidm::PLAYBOOK, arguments: "", summary: "reset Kanidm's admin and idm_admin credentials after a restore and bounce its OIDC clients" },
    PlaybookInfo { name: garage_meta::PLAYBOOK, arguments: "[--name SNAPSHOT]", summary: "restore Garage's metadata database from its newest (or the named) snapshot" },
];

pub fn plan(playbook: &str, state: &ClusterState, findings: &Findings, trigger: &Trigger) -> Result<Plan, PlanError> {
    let plan = match playbook {
        "cnpg-instance-lost" => {
            let ns = trigger.namespace.as_deref().ok_or(PlanError::MissingArgument { playbook: "cnpg-instance-lost", what: "--namespace" })?;
            let name = trigger.name.as_deref().ok_or(PlanError::MissingArgument { playbook: "cnpg-instance-lost", what: "--name (the Cluster)" })?;
            cnpg::instance_lost(state, findings, ns, name)?
        }
        "mariadb-instance-lost" => {
            let ns = trigger.namespace.as_deref().ok_or(PlanError::MissingArgument { playbook: "mariadb-instance-lost", what: "--namespace" })?;
            let name = trigger.name.as_deref().ok_or(PlanError::MissingArgument { playbook: "mariadb-instance-lost", what: "--name (the MariaDB)" })?;
            mariadb::instance_lost(state, findings, ns, name)?
        }
        "wal-archive-reset" => {
            let ns = trigger.namespace.as_deref().ok_or(PlanError::MissingArgument { playbook: "wal-archive-reset", what: "--namespace" })?;
            let name = trigger.name.as_deref().ok_or(PlanError::MissingArgument { playbook: "wal-archive-reset", what: "--name (the Cluster)" })?;
            wal_reset::archive_reset(state, findings, ns, name)?
        }
        node_loss::PLAYBOOK => {
            let node = trigger.node.as_deref().ok_or(PlanError::MissingArgument { playbook: node_loss::PLAYBOOK, what: "--node" })?;
            node_loss::node_loss(state, findings, node, &findings.config.remediation.node_loss)?
        }
        "stale-cleanup" => stale::cleanup(state, findings, trigger.namespace.as_deref()),
        "volsync-restore" => {
            let ns = trigger.namespace.as_deref().ok_or(PlanError::MissingArgument { playbook: "volsync-restore", what: "--namespace" })?;
            let name = trigger.name.as_deref().ok_or(PlanError::MissingArgument { playbook: "volsync-restore", what: "--name (the app PVC)" })?;
            volsync::restore(state, findings, ns, name)?
        }
        s3_restore::PLAYBOOK => {
            let ns = trigger.namespace.as_deref().ok_or(PlanError::MissingArgument { playbook: s3_restore::PLAYBOOK, what: "--namespace" })?;
            let name = trigger.name.as_deref().ok_or(PlanError::MissingArgument { playbook: s3_restore::PLAYBOOK, what: "--name (the PVC or its workload)" })?;
            s3_restore::restore(state, findings, ns, name)?
        }
        kanidm::PLAYBOOK => kanidm::credential_reset(state, findings)?,
        garage_meta::PLAYBOOK => garage_meta::meta_restore(state, findings, trigger.name.as_deref())?,
        other => return Err(PlanError::UnknownPlaybook(other.to_string())),
    };
    debug_assert!(plan.validate().is_ok(), "{:?}", plan.validate());
    Ok(plan)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_catalogue_lists_every_playbook_once() {
        let listed: Vec<&str> = super::CATALOGUE.iter().map(|p| p.name).collect();
        assert_eq!(listed, super::PLAYBOOKS);
    }
}
