//! Playbooks: (ClusterState, findings, trigger) → Plan. Pure and fast.

pub mod cnpg;
pub mod mariadb;
pub mod node_loss;
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

pub const PLAYBOOKS: &[&str] = &["cnpg-instance-lost", "mariadb-instance-lost", "stale-cleanup", "volsync-restore", "wal-archive-reset", node_loss::PLAYBOOK];

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
            node_loss::node_loss(state, findings, node, &crate::config::NodeLossConfig::default())?
        }
        "stale-cleanup" => stale::cleanup(state, findings, trigger.namespace.as_deref()),
        "volsync-restore" => {
            let ns = trigger.namespace.as_deref().ok_or(PlanError::MissingArgument { playbook: "volsync-restore", what: "--namespace" })?;
            let name = trigger.name.as_deref().ok_or(PlanError::MissingArgument { playbook: "volsync-restore", what: "--name (the app PVC)" })?;
            volsync::restore(state, findings, ns, name)?
        }
        other => return Err(PlanError::UnknownPlaybook(other.to_string())),
    };
    debug_assert!(plan.validate().is_ok(), "{:?}", plan.validate());
    Ok(plan)
}
